"""The restoration filter (``nicodec.restoration``, FORMAT.md's ``REST`` section): its payload,
its integer filter against the reader written from FORMAT.md, the encoder's choice, and what
a file with one decodes to."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import spec_reader
from conftest import synthetic_photo
from nicodec import Codec, restoration
from nicodec import format as nicformat
from nicodec.errors import FormatError
from nicodec.model import default_model_dir


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_the_payload_reads_back_and_is_as_short_as_its_codes():
    rng = np.random.default_rng(0)
    coefficients = rng.integers(-40, 41, (3, restoration.PER_CHANNEL)).astype(np.int32)
    coefficients[0, 0], coefficients[2, -1] = restoration.MAX_COEFFICIENT, -restoration.MAX_COEFFICIENT
    payload = restoration.pack(coefficients, 9)
    back, shift = restoration.unpack(payload)
    np.testing.assert_array_equal(back, coefficients)
    assert shift == 9
    # exp-Golomb: 0 takes one bit, +-1 three, +-32767 (code 65533 or 65534) 31
    zeros = restoration.pack(np.zeros((3, restoration.PER_CHANNEL), np.int32), 9)
    assert zeros == bytes([9]) + b"\xff" * 13 + b"\xf0"  # 108 one-bit codes, then four zero bits
    ones = np.zeros((3, restoration.PER_CHANNEL), np.int32)
    ones[0, 0] = -1
    assert restoration.pack(ones, 9)[1] == 0b01111111  # "011" then ones
    assert spec_reader.decode_rest(payload) == (9, coefficients.tolist())


@pytest.mark.parametrize("payload, problem", [
    (b"", "empty"),
    (bytes([1]) + b"\xff" * 14, "shift is 1"),
    (bytes([15]) + b"\xff" * 14, "shift is 15"),
    (bytes([9]) + b"\xff" * 13, "ends inside"),
    (bytes([9]) + b"\xff" * 13 + b"\xf8", "after its coefficients"),
    (bytes([9]) + b"\xff" * 13 + b"\xf0\x00", "after its coefficients"),
    (bytes([9]) + b"\x00" * 3 + b"\xff" * 14, "beyond"),
])
def test_a_damaged_payload_is_refused_by_both_readers(payload, problem):
    with pytest.raises(FormatError, match=problem):
        restoration.unpack(payload)
    with pytest.raises(spec_reader.Refused):
        spec_reader.decode_rest(payload)


def test_coefficients_out_of_range_or_a_wrong_shift_are_not_written():
    too_big = np.zeros((3, restoration.PER_CHANNEL), np.int32)
    too_big[1, 3] = restoration.MAX_COEFFICIENT + 1
    with pytest.raises(ValueError, match="outside"):
        restoration.pack(too_big, 9)
    with pytest.raises(ValueError, match="shift"):
        restoration.pack(np.zeros((3, restoration.PER_CHANNEL), np.int32), 15)


def test_the_filter_is_the_one_format_md_defines_to_the_last_integer():
    """Random pictures and coefficients, the largest allowed among them (every partial sum
    still within 32 bits), on pictures of fewer rows and columns than the window and of more
    rows than a strip, and with most coefficients 0, as the encoder's are where bits are dear
    (the filter skips their terms): nicodec's filter equals the reader's, written term by term
    from FORMAT.md."""
    rng = np.random.default_rng(1)
    for height, width, shift, bound, kept in ((1, 1, 2, 40, 1), (2, 5, 9, 300, 1), (7, 3, 14, restoration.MAX_COEFFICIENT, 1),
                                              (300, 41, 9, 2000, 1), (129, 64, 5, restoration.MAX_COEFFICIENT, 1),
                                              (130, 2100, 7, restoration.MAX_COEFFICIENT, 1), (60, 70, 9, 500, 0.2),
                                              (60, 70, 6, 500, 0.05)):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        coefficients = rng.integers(-bound, bound + 1, (3, restoration.PER_CHANNEL)).astype(np.int32)
        coefficients *= rng.random(coefficients.shape) < kept
        ours = restoration.apply(rgb, coefficients, shift)
        theirs = spec_reader.apply_rest(rgb, shift, coefficients.tolist())
        np.testing.assert_array_equal(ours, theirs)
    flat = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(restoration.apply(flat, np.zeros((3, restoration.PER_CHANNEL), np.int32), 9), flat)


def test_a_fit_undoes_a_blur_and_a_tint():
    """A picture blurred and tinted: the fitted, rounded filter brings it back most of the way,
    and a fit on the pixels that show ignores the others."""
    sharp = synthetic_photo(96, 128, seed=6)
    x = sharp.astype(np.float64)
    blurred = (x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 5
    blurred[..., 0] = blurred[..., 0] * 0.9 + 10
    blurred = np.clip(np.round(blurred), 0, 255).astype(np.uint8)
    coefficients = restoration.fit(blurred, sharp)
    restored = restoration.apply(blurred, coefficients, restoration.FIT_SHIFT)
    assert psnr(restored, sharp) > psnr(blurred, sharp) + 3
    seen = np.zeros(sharp.shape[:2], bool)
    seen[:, :64] = True
    garbage = sharp.copy()
    garbage[:, 64:] = 255 - garbage[:, 64:]  # what the fit must not see
    np.testing.assert_array_equal(restoration.fit(blurred, garbage, seen=seen), restoration.fit(blurred, sharp, seen=seen))
    assert not np.array_equal(restoration.fit(blurred, garbage), coefficients)


def test_small_windows_change_nothing(monkeypatch):
    """The filter and the fit work window by window (rows and columns); windows of 8 x 16
    give the reader's pixels and the same normal equations as the picture whole."""
    blurred, sharp = _blurred_and_sharp()
    gram, moment, energy = restoration.normal_equations(blurred, sharp)
    coefficients = np.random.default_rng(4).integers(-3000, 3001, (3, restoration.PER_CHANNEL)).astype(np.int32)
    monkeypatch.setattr(restoration, "_STRIP", 8)
    monkeypatch.setattr(restoration, "_COLUMNS", 16)
    np.testing.assert_array_equal(restoration.apply(blurred, coefficients, 11),
                                  spec_reader.apply_rest(blurred, 11, coefficients.tolist()))
    for ours, whole in zip(restoration.normal_equations(blurred, sharp), (gram, moment, energy)):
        np.testing.assert_allclose(ours, whole, rtol=1e-6, atol=1e-3)


def _blurred_and_sharp() -> tuple[np.ndarray, np.ndarray]:
    sharp = synthetic_photo(96, 128, seed=7)
    x = sharp.astype(np.float64)
    blurred = (2 * x + np.roll(x, 1, 0) + np.roll(x, 1, 1)) / 4
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8), sharp


def test_the_fits_products_are_small_enough_for_one_thread_and_add_up():
    """The fit multiplies its features in pieces that OpenBLAS computes on the calling thread
    (m x n x k up to 262,144: a larger product it shares among threads, and beside a PyTorch
    training job each took up to 300 times as long); the pieces add up to the whole product, the
    last one padded."""
    assert restoration.PER_CHANNEL * (restoration.PER_CHANNEL + 1) * restoration._PIECE <= 262_144
    rng = np.random.default_rng(5)
    for n in (0, 1, restoration._PIECE, 1000):
        band = rng.integers(-510, 511, (restoration.PER_CHANNEL, n)).astype(np.float32)
        target = rng.integers(-255, 256, n).astype(np.float32)
        whole = band.astype(np.float64)
        want = np.concatenate([whole @ whole.T, (whole @ target)[:, None]], axis=1)
        np.testing.assert_allclose(restoration._products(band, target), want, rtol=1e-6)


def test_the_normal_equations_give_the_squares_a_filter_leaves():
    """``energy - 2 w.moment + w.gram.w`` is the sum of squares that real coefficients leave
    (computed here from the features directly; the encoder reads its choice of shift from it)."""
    blurred, sharp = _blurred_and_sharp()
    seen = np.zeros(sharp.shape[:2], bool)
    seen[10:70, 5:100] = True
    gram, moment, energy = restoration.normal_equations(blurred, sharp, seen)
    w = restoration.solve(gram, moment) * 0.7  # not the optimum: every term counts
    padded = np.pad(blurred.astype(np.int32), ((3, 3), (3, 3), (0, 0)), mode="edge")
    for c in range(3):
        features = [*restoration._features(padded, c), np.ones(sharp.shape[:2], np.int32)]
        correction = sum(weight * feature for weight, feature in zip(w[c], features))
        left = (sharp[..., c] - (blurred[..., c] + correction))[seen]
        want = float(np.sum(left**2))
        assert energy[c] - 2 * w[c] @ moment[c] + w[c] @ gram[c] @ w[c] == pytest.approx(want, rel=1e-6)


def test_the_cheapest_shift_follows_the_price_of_bits():
    """Where bits are dear the encoder rounds coarsely (fewer, shorter codes); where squares
    are, finely, and the filter it writes then leaves fewer squares."""
    blurred, sharp = _blurred_and_sharp()
    cheap, coarse = restoration.fit_cheapest(blurred, sharp, 1e-3)
    fine_coefficients, fine = restoration.fit_cheapest(blurred, sharp, 1e2)
    assert coarse < fine
    assert len(restoration.pack(cheap, coarse)) < len(restoration.pack(fine_coefficients, fine))

    def squares(coefficients, shift):
        return np.sum((restoration.apply(blurred, coefficients, shift).astype(np.int64) - sharp) ** 2)

    assert squares(fine_coefficients, fine) < squares(cheap, coarse) < np.sum((blurred.astype(np.int64) - sharp) ** 2)


@pytest.mark.parametrize("bits_per_square", [1e-3, 1e-1, 10.0])
def test_rounding_each_coefficient_for_its_cost_never_costs_more(bits_per_square):
    """The encoder's rounding (each coefficient to the integer that costs least, bits and
    squares) costs no more than plain rounding at any shift, and at some shift less."""
    blurred, sharp = _blurred_and_sharp()
    gram, moment, energy = restoration.normal_equations(blurred, sharp)
    solution = restoration.solve(gram, moment)

    def cost(coefficients, shift):
        w = restoration.dequantize(coefficients, shift)
        squares = sum(energy[c] - 2 * w[c] @ moment[c] + w[c] @ gram[c] @ w[c] for c in range(3))
        return 8 * len(restoration.pack(coefficients, shift)) + bits_per_square * squares

    savings = []
    for shift in restoration.CHOSEN_SHIFTS:
        _, chosen = restoration._rounded(solution, shift, gram, moment, energy, bits_per_square)
        savings.append(cost(restoration.quantize(solution, shift), shift) - cost(chosen, shift))
    assert min(savings) >= -8  # the payload's last byte: the choice counts bits, not whole bytes
    assert max(savings) > 8


@pytest.fixture(scope="module")
def model():
    return spec_reader.Model(str(default_model_dir()))


@pytest.fixture(scope="module")
def restoring():
    return Codec(providers="cpu", threads=2, restoration=True)


def test_an_encoder_writes_the_filter_where_it_pays_and_a_decoder_applies_it(codec, restoring, model):
    photo = synthetic_photo(256, 384, seed=1)
    with_filter = restoring.encode(photo, quality=90)
    without = codec.encode(photo, quality=90)
    assert b"REST" not in nicformat.unpack(without)[1]  # off by default
    _, sections = nicformat.unpack(with_filter)
    assert list(sections) == [b"ZSYM", b"YSYM", b"REST"]
    assert list(nicformat.unpack(without)[1]) == [b"ZSYM", b"YSYM"]
    assert sections[b"YSYM"] == nicformat.unpack(without)[1][b"YSYM"]  # the same symbols
    decoded, unfiltered = codec.decode(with_filter, as_array=True), codec.decode(without, as_array=True)
    np.testing.assert_array_equal(decoded, restoration.apply(unfiltered, *restoration.unpack(sections[b"REST"])))
    # It paid: the cost the encoder weighs is lower with it.
    lmbda = codec.model.lmbda(90)
    cost = lambda data, pixels: 8 * len(data) / photo[..., 0].size + lmbda * np.mean(
        (pixels.astype(np.float64) - photo) ** 2)
    assert cost(with_filter, decoded) < cost(without, unfiltered)
    assert psnr(decoded, photo) > psnr(unfiltered, photo)
    read = spec_reader.read_nic(with_filter, model, check_reference=False)
    np.testing.assert_array_equal(read["pixels"], decoded)
    # Where nothing linear is left to undo, noise at the lowest quality or a flat grey, none is written.
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert b"REST" not in nicformat.unpack(restoring.encode(noise, quality=1))[1]
    assert b"REST" not in nicformat.unpack(restoring.encode(np.full((64, 64, 3), 128, np.uint8), quality=50))[1]


def test_damage_to_the_filter_is_refused_or_read_alike_by_both(codec, restoring, model):
    data = restoring.encode(synthetic_photo(256, 384, seed=1), quality=90)
    _, sections = nicformat.unpack(data)
    start = len(data) - len(sections[b"REST"])
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(12):
        damaged = bytearray(data)
        damaged[int(rng.integers(start, len(data)))] ^= 1 << int(rng.integers(0, 8))
        table_end = 28 + damaged[6] + 8 * damaged[27 + damaged[6]]
        crc = zlib.crc32(bytes(damaged[:table_end]) + bytes(damaged[table_end + 4 :]))
        damaged[table_end : table_end + 4] = crc.to_bytes(4, "little")
        damaged = bytes(damaged)
        try:
            ours = codec.decode(damaged, as_array=True)
        except FormatError as exc:
            ours = exc
        try:
            theirs = spec_reader.read_nic(damaged, model, check_reference=False)["pixels"]
        except spec_reader.Refused as exc:
            theirs = exc
        assert isinstance(ours, Exception) == isinstance(theirs, Exception), (ours, theirs)
        if not isinstance(ours, Exception):
            np.testing.assert_array_equal(ours, theirs)
        outcomes.add(isinstance(ours, Exception))
    assert outcomes == {True, False}  # both a refusal and a changed filter were compared


def test_the_command_line_writes_the_filter_when_asked(tmp_path):
    from nicodec.cli import app
    from PIL import Image
    from typer.testing import CliRunner

    Image.fromarray(synthetic_photo(256, 384, seed=1)).save(tmp_path / "a.png")
    runner = CliRunner()
    plain = runner.invoke(app, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "plain.nic"), "--quality", "90"])
    asked = runner.invoke(app, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "asked.nic"), "--quality", "90",
                                "--restoration"])
    assert plain.exit_code == 0 and asked.exit_code == 0, (plain.output, asked.output)
    assert list(nicformat.unpack((tmp_path / "plain.nic").read_bytes())[1]) == [b"ZSYM", b"YSYM"]
    assert list(nicformat.unpack((tmp_path / "asked.nic").read_bytes())[1]) == [b"ZSYM", b"YSYM", b"REST"]
    info = runner.invoke(app, ["info", str(tmp_path / "asked.nic")])
    assert info.exit_code == 0 and "REST" in info.output
    (tmp_path / "folder").mkdir()
    Image.fromarray(synthetic_photo(256, 384, seed=1)).save(tmp_path / "folder" / "b.png")
    batch = runner.invoke(app, ["encode", str(tmp_path / "folder"), "-o", str(tmp_path / "out"), "--quality", "90",
                                "--restoration"])
    assert batch.exit_code == 0, batch.output
    assert list(nicformat.unpack((tmp_path / "out" / "b.nic").read_bytes())[1]) == [b"ZSYM", b"YSYM", b"REST"]


def test_a_refined_file_gets_its_filter_fitted_to_the_latent_it_keeps():
    photo = synthetic_photo(256, 384, seed=1)
    refined = Codec(providers="cpu", threads=2, refine=3)
    both = Codec(providers="cpu", threads=2, refine=3, restoration=True)
    plain, filtered = refined.encode(photo, quality=90), both.encode(photo, quality=90)
    sections = nicformat.unpack(filtered)[1]
    assert sections[b"YSYM"] == nicformat.unpack(plain)[1][b"YSYM"]  # the same choice of latent
    np.testing.assert_array_equal(both.decode(filtered, as_array=True),
                                  restoration.apply(refined.decode(plain, as_array=True),
                                                    *restoration.unpack(sections[b"REST"])))
