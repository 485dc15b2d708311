"""Rate control: a target size, bits per pixel or PSNR met by searching the quality, in the API and the CLI."""

from __future__ import annotations

import io
import json
import math
import re
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import nicodec
from nicodec import console
from nicodec import format as nicformat
from nicodec.cli import app
from nicodec.ratecontrol import BPP_TOLERANCE, MAX_ENCODES, encode_to_target

from conftest import opened, psnr, synthetic_photo
from conftest import single_rate_model as make_single_rate_model  # the fixture below takes its name

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def said(result) -> str:
    """stderr as one line: usage errors come in a box that wraps long messages."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_photo(64, 96, seed=5)


@pytest.fixture(scope="module")
def single_rate_model(tmp_path_factory):
    """A single-rate model (refused before any coding)."""
    return make_single_rate_model(tmp_path_factory.mktemp("models") / "single-rate")


def at(codec, image, quality) -> bytes:
    return codec.encode(image, quality=quality)


# -- the API ------------------------------------------------------------------------------


def test_a_bpp_target_within_reach_is_met_with_a_file_that_reproduces(codec, image):
    target = 8 * len(at(codec, image, 71)) / image[:, :, 0].size
    result = encode_to_target(codec, image, bpp=target)
    assert result.met and abs(result.bpp / target - 1) <= BPP_TOLERANCE
    assert 1 <= result.encodes <= MAX_ENCODES
    assert result.bpp == 8 * len(result.data) / image[:, :, 0].size and result.psnr is None
    assert nicformat.read_header(result.data)[0].quality == np.float32(result.quality)
    assert at(codec, image, result.quality) == result.data
    assert round(result.quality, 2) == result.quality


def test_a_psnr_target_is_reached_with_a_smaller_file_than_the_best(codec, image):
    best = at(codec, image, 100)
    target = psnr(codec.decode(at(codec, image, 70), as_array=True), image)
    result = encode_to_target(codec, image, psnr=target)
    assert result.met and result.psnr >= target
    assert result.psnr == psnr(codec.decode(result.data, as_array=True), image)
    assert len(result.data) < len(best) and result.quality < 100


def test_max_bytes_gives_the_highest_quality_that_fits(codec, image):
    limit = len(at(codec, image, 60)) + 5
    result = encode_to_target(codec, image, max_bytes=limit)
    assert result.met and 0.9 * limit <= len(result.data) <= limit
    assert result.quality > 40
    everything = encode_to_target(codec, image, max_bytes=10**9)
    assert everything.quality == 100 and everything.met


@pytest.mark.parametrize("target", [{"bpp": np.float64(1.0)}, {"bpp": np.float32(0.02)}, {"psnr": np.float32(30)},
                                    {"max_bytes": np.int64(3000)}, {"bpp": Decimal("0.5")}, {"psnr": Fraction(61, 2)}])
def test_numpy_targets_give_python_numbers(codec, image, target):
    """A target from numpy or pandas: the result holds Python's bool and numbers, as its
    annotations say (json.dumps takes them; numpy's bool it does not)."""
    result = encode_to_target(codec, image, **target)
    facts = {"met": result.met, "quality": result.quality, "bpp": result.bpp, "psnr": result.psnr}
    assert type(result.met) is bool and type(result.quality) is float and type(result.bpp) is float
    assert json.loads(json.dumps(facts)) == facts


def test_targets_out_of_reach_give_the_nearest_file_or_an_error(codec, image):
    low = encode_to_target(codec, image, bpp=0.001)
    assert (low.met, low.quality, low.data) == (False, 1, at(codec, image, 1))
    high = encode_to_target(codec, image, bpp=50)
    assert (high.met, high.quality) == (False, 100)
    sharp = encode_to_target(codec, image, psnr=90)
    assert (sharp.met, sharp.quality) == (False, 100) and sharp.psnr < 90
    blurry = encode_to_target(codec, image, psnr=5)
    assert (blurry.met, blurry.quality) == (True, 1)
    with pytest.raises(nicodec.QualityError, match=r"at most 20 bytes.*quality 1 this image takes") as info:
        encode_to_target(codec, image, max_bytes=20)
    assert isinstance(info.value, ValueError)


def test_targets_past_any_file_give_the_best_one(codec, image):
    """A limit of 2**1024 bytes overflowed the search's float logarithm (an internal error), and
    a bpp target of 1e16 or more tied quality 56's file with quality 100's and gave the first."""
    best = at(codec, image, 100)
    for result in (encode_to_target(codec, image, max_bytes=2**1024), encode_to_target(codec, image, max_bytes=10**400)):
        assert (result.met, result.quality, result.data) == (True, 100, best)
    for bpp in (1e16, 1e300):
        result = encode_to_target(codec, image, bpp=bpp)
        assert (result.met, result.quality, result.data) == (False, 100, best)


def test_a_target_that_metadata_puts_out_of_reach_says_that_strip_leaves_it_out(codec, image, tmp_path):
    """Camera JPEGs carry tens of kilobytes of EXIF, which the whole file's size counts."""
    exif = Image.Exif()
    exif[0x927C] = bytes(20_000)  # a maker note
    path = tmp_path / "camera.png"
    Image.fromarray(image).save(path, exif=exif.tobytes())
    stripped = encode_to_target(codec, path, max_bytes=2_000, strip=True)
    assert stripped.met and len(stripped.data) <= 2_000
    with pytest.raises(nicodec.QualityError, match=r"at most 2,000 bytes.*; 20,0\d\d of them are its metadata "
                                                  r"\(.*\), which strip \(--strip\) leaves out$"):
        encode_to_target(codec, path, max_bytes=2_000)
    with pytest.raises(nicodec.QualityError) as far:  # out of reach without it too: nothing said of it
        encode_to_target(codec, path, max_bytes=20)
    assert "metadata" not in str(far.value)
    result = run("encode", path, "-o", tmp_path / "camera.nic", "--target-bpp", "0.5")
    assert result.exit_code == 0 and result.stderr.startswith("warning: the target of 0.5 bpp was not met")
    assert re.search(r"; 20,0\d\d of its 2\d,\d{3} bytes are metadata, which --strip leaves out\n$", result.stderr)
    result = run("encode", path, "-o", tmp_path / "low.nic", "--target-bpp", "0.001", "--strip")
    assert result.exit_code == 0 and "metadata" not in result.stderr
    result = run("encode", path, "-o", tmp_path / "lower.nic", "--target-bpp", "0.001")  # out of reach without it too
    assert result.exit_code == 0 and "was not met" in result.stderr and "metadata" not in result.stderr


def test_a_bpp_file_within_the_tolerance_is_chosen_over_a_closer_one_on_the_log_scale(codec, tmp_path, monkeypatch):
    """The closest file is judged on the log scale, the tolerance as a ratio: one just past the
    target (1.01004) beat one that met it (0.990008), and the search reported a miss."""
    Image.fromarray(np.zeros((1000, 1000, 3), np.uint8)).save(tmp_path / "flat.png")
    start = codec.default_quality
    header, sections = nicformat.unpack(codec.encode(tmp_path / "flat.png"))  # a real header: the search reads its size

    def sized(length: int) -> bytes:
        data = nicformat.pack(header, {**sections, b"YSYM": b""})
        return nicformat.pack(header, {**sections, b"YSYM": b"x" * (length - len(data))})

    monkeypatch.setattr(codec, "encode", lambda source, quality, **options: sized(126_255 if quality == start
                                                                                  else 123_751))
    result = encode_to_target(codec, tmp_path / "flat.png", bpp=1.0)
    assert result.met and result.bpp == pytest.approx(0.990008) and result.quality != start


def test_the_number_of_encodes_is_bounded(codec, image, monkeypatch):
    calls = []
    real = codec.encode
    monkeypatch.setattr(codec, "encode", lambda *a, **k: calls.append(k["quality"]) or real(*a, **k))
    result = encode_to_target(codec, image, bpp=0.001, max_encodes=np.int64(2))
    # The search starts at the model's default quality; the last encode goes to the end of the range.
    assert calls == [codec.default_quality, 1] and result.encodes == 2
    assert "data" not in repr(result) and "bpp=" in repr(result)  # a log line, not the file
    calls.clear()
    target = 8 * len(real(image, quality=33.3)) / image[:, :, 0].size
    result = encode_to_target(codec, image, bpp=target * 1.003, max_encodes=3)
    assert len(calls) == result.encodes <= 3


def test_paths_and_bytes_are_read_once_and_coded_as_encode_codes_them(codec, image, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(image).save(path)
    by_path = encode_to_target(codec, path, max_bytes=400)
    assert by_path.data == codec.encode(path, quality=by_path.quality)
    assert encode_to_target(codec, path.read_bytes(), max_bytes=400).data == by_path.data


def test_what_the_image_loses_is_said_once_a_search(codec, image, tmp_path):
    """Each encode of the search reads the image again: its warnings came once an encode (3 for
    one search under the "always" filter docs/python-api.md suggests to a service), where the
    command line, which drops repeats itself, said it once."""
    import warnings

    from PIL import PngImagePlugin

    path = tmp_path / "gamma.png"
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", (100000).to_bytes(4, "big"))  # linear light (sRGB's 0.45455 is not warned of)
    Image.fromarray(image).save(path, pnginfo=info)
    for target in ({"bpp": 1.5}, {"psnr": 30.0}, {"max_bytes": 400}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = encode_to_target(codec, path, **target)
        assert result.encodes > 1 and [str(w.message) for w in caught] == [
            f"{path}: its gamma (PNG gAMA 1) is not kept; the decoded picture is shown as sRGB, whose gamma "
            "is about 1/2.2"], (target, [str(w.message) for w in caught])
        assert caught[0].filename == __file__  # the caller's line, as encode's own warnings name it
    with warnings.catch_warnings(record=True) as caught:  # encodes of their own each say it, as before
        warnings.simplefilter("always")
        codec.encode(path)
        codec.encode(path)
    assert len(caught) == 2
    # A warning about the pixels, which strip does not silence: psnr reads the picture once more
    # for its reference, before the search, and said it twice.
    dark = tmp_path / "dark16.png"
    Image.fromarray((image[:, :, 0].astype(np.uint16) // 2).astype(np.uint16)).save(dark)
    assert opened(dark).mode in ("I;16", "I")
    for target in ({"bpp": 1.5}, {"psnr": 30.0}, {"max_bytes": 400}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encode_to_target(codec, dark, **target)
        said = [str(w.message) for w in caught]
        assert len(said) == 1 and "every 16-bit sample is below 256" in said[0], (target, said)


def test_psnr_leaves_alpha_out_and_measures_gray_in_its_one_channel(codec, image):
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    rgba[:8, :8, 3] = 0
    result = encode_to_target(codec, rgba, psnr=30, exact=True)
    decoded = codec.decode(result.data, as_array=True)
    assert decoded.shape[2] == 4 and result.psnr == psnr(decoded[:, :, :3], image)
    # Without exact, the transparent pixels' colour is the encoder's to choose: left out too.
    result = encode_to_target(codec, rgba, psnr=30)
    visible = rgba[:, :, 3] > 0
    assert result.psnr == psnr(codec.decode(result.data, as_array=True)[visible][:, :3], image[visible])
    gray = image[:, :, 1]
    result = encode_to_target(codec, gray, psnr=30)
    assert result.met and result.psnr == psnr(codec.decode(result.data, as_array=True), gray)


@pytest.mark.parametrize(
    "targets, error",
    [
        ({}, nicodec.QualityError),
        ({"bpp": 1, "psnr": 30}, nicodec.QualityError),
        ({"bpp": 1, "max_encodes": 0}, nicodec.QualityError),
        ({"bpp": 1, "max_encodes": 2.0}, nicodec.QualityError),
        ({"bpp": 0}, nicodec.QualityError),
        ({"bpp": float("nan")}, nicodec.QualityError),
        ({"psnr": -3}, nicodec.QualityError),
        ({"psnr": math.inf}, nicodec.QualityError),
        ({"bpp": "1"}, nicodec.QualityError),
        ({"max_bytes": 0}, nicodec.QualityError),
        ({"max_bytes": 100.5}, nicodec.QualityError),
        ({"max_bytes": True}, nicodec.QualityError),
        ({"bpp": Decimal("sNaN")}, nicodec.QualityError),  # float() of it: a ValueError
        ({"psnr": Decimal("-30")}, nicodec.QualityError),
    ],
)
def test_bad_targets_are_refused_before_any_work(codec, image, targets, error, monkeypatch):
    monkeypatch.setattr(codec, "encode", None)  # would fail if called
    with pytest.raises(error):
        encode_to_target(codec, image, **targets)


def test_exported_from_nicodec():
    assert nicodec.encode_to_target is encode_to_target
    assert nicodec.RateResult.__name__ == "RateResult"


def test_a_single_rate_model_has_no_rate_to_control(single_rate_model, image):
    codec = nicodec.Codec(single_rate_model, providers="cpu")
    assert not codec.model.variable_rate
    with pytest.raises(nicodec.QualityError, match="single-rate"):
        encode_to_target(codec, image, bpp=0.5)


# -- the command line ---------------------------------------------------------------------


@pytest.fixture()
def png(tmp_path, image):
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    return path


def header_quality(path) -> float:
    return nicformat.read_header(path.read_bytes())[0].quality


def test_each_target_on_the_command_line_reports_what_it_reached(png, tmp_path):
    result = run("encode", png, "-o", tmp_path / "bpp.nic", "--target-bpp", "0.6")
    assert result.exit_code == 0, result.output
    assert "quality " in result.stdout and "encodes" in result.stdout and " dB" not in result.stdout
    assert result.stderr == ""
    result = run("encode", png, "-o", tmp_path / "psnr.nic", "--target-psnr", "31")
    assert result.exit_code == 0, result.output
    assert " dB" in result.stdout
    result = run("encode", png, "-o", tmp_path / "bytes.nic", "--max-bytes", "400")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bytes.nic").stat().st_size <= 400
    quality = result.stdout.split("quality ")[1].split(",")[0]
    assert np.float32(float(quality)) == header_quality(tmp_path / "bytes.nic")


def test_targets_out_of_reach_on_the_command_line(png, tmp_path):
    result = run("encode", png, "-o", tmp_path / "tiny.nic", "--target-bpp", "0.001")
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: the target of 0.001 bpp was not met") and "quality 1)" in result.stderr
    assert header_quality(tmp_path / "tiny.nic") == 1
    result = run("encode", png, "-o", tmp_path / "none.nic", "--max-bytes", "20")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {png}: no file of at most 20 bytes") and "Traceback" not in result.output
    assert not (tmp_path / "none.nic").exists()


@pytest.mark.parametrize(
    "options",
    [
        ["--quality", "50", "--target-bpp", "0.5"],
        ["--target-bpp", "0.5", "--target-psnr", "30"],
        ["--target-psnr", "30", "--max-bytes", "1000"],
        ["--quality", "50", "--max-bytes", "1000", "--target-bpp", "1"],
    ],
)
def test_quality_and_targets_exclude_each_other(png, tmp_path, options):
    result = run("encode", png, "-o", tmp_path / "x.nic", *options)
    assert result.exit_code == 2
    assert "exclude each other" in said(result) and "Traceback" not in result.output
    assert not (tmp_path / "x.nic").exists()


@pytest.mark.parametrize(
    "options",
    [["--target-bpp", "0"], ["--target-bpp", "nan"], ["--target-psnr", "-1"], ["--target-psnr", "inf"],
     ["--max-bytes", "0"], ["--max-bytes", "1.5"]],
)
def test_bad_targets_are_usage_errors(png, tmp_path, options):
    result = run("encode", png, "-o", tmp_path / "x.nic", *options)
    assert result.exit_code == 2
    assert f"Invalid value for '{options[0]}'" in said(result)
    assert not (tmp_path / "x.nic").exists()


@pytest.mark.parametrize("options", [["--quality", "50"], ["--target-bpp", "0.5"], ["--max-bytes", "900"]])
def test_a_single_rate_model_refuses_quality_and_targets_on_the_command_line(single_rate_model, png, tmp_path, options):
    for source, output in ((png, "out.nic"), (png.parent, "out")):  # one file, and a folder
        result = run("encode", source, "-o", tmp_path / output, "--model", single_rate_model, *options)
        assert result.exit_code == 2, result.output
        assert "single-rate" in said(result) and f"'{options[0]}'" in said(result)
        assert "Traceback" not in result.output
        assert not (tmp_path / output).exists()  # not even the output folder


def test_a_refined_search_reports_each_encodes_steps(image, tmp_path, monkeypatch):
    codec = nicodec.Codec(providers="cpu", refine=2)
    calls = []
    result = encode_to_target(codec, image, bpp=1.0, max_encodes=3, progress=lambda *a: calls.append(a))
    # Each encode's own progress: the start, the analysis, the entropy parameters, the entropy
    # coding, 2 steps, perhaps the choice.
    assert [encode for _, _, encode in calls] == sorted(encode for _, _, encode in calls)
    for encode in range(1, result.encodes + 1):
        own = [(done, total) for done, total, e in calls if e == encode]
        assert 6 <= len(own) <= 7 and own[0][0] == 0 and own[-1][0] == own[-1][1]
        assert all(a[0] < b[0] for a, b in zip(own, own[1:]))
    assert result.data == codec.encode(image, quality=result.quality)

    # The command line shows it on a terminal, each encode of the search as it starts.
    screen = io.StringIO()
    monkeypatch.setattr(console, "err", console._Console(file=screen, force_terminal=True, width=400))
    png = tmp_path / "photo.png"
    Image.fromarray(image).save(png)
    outcome = run("encode", png, "--provider", "cpu", "--refine", 2, "--target-bpp", 1.0)
    assert outcome.exit_code == 0, outcome.output
    encodes = encode_to_target(codec, image, bpp=1.0).encodes
    assert encodes > 1
    for encode in range(1, encodes + 1):
        assert re.search(rf"searching a quality for photo.png +encode {encode} ", screen.getvalue())


def test_a_psnr_search_counts_each_decode_in_its_progress(codec, image):
    """The decode that measures each file's PSNR took as long as the encode, or longer, with the
    bar at 100%: a large image's search seemed to hang after each encode."""
    calls = []
    result = encode_to_target(codec, image, psnr=31.0, max_encodes=3, progress=lambda *a: calls.append(a))
    assert result.encodes > 1
    for encode in range(1, result.encodes + 1):
        own = [(done, total) for done, total, e in calls if e == encode]
        # The encode's steps, then the decode's, done running on: only the last call is complete.
        assert len(own) >= 6 and own[0][0] == 0 and own[-1][0] == own[-1][1]
        assert all(done < total for done, total in own[:-1])
        if encode == 1:  # the decode's start corrects the total, at the encode's end
            assert all(a[0] <= b[0] for a, b in zip(own, own[1:]))
            assert len({total for _, total in own}) <= 2
        else:  # the decode's length known: one total throughout
            assert all(a[0] < b[0] for a, b in zip(own, own[1:]))
            assert len({total for _, total in own}) == 1
    # The total is the encode's and the decode's, as each alone tells them, and the encode's end is told.
    encoded, decoded = [], []
    codec.decode(codec.encode(image, quality=result.quality, progress=lambda *a: encoded.append(a)), as_array=True,
                 progress=lambda *a: decoded.append(a))
    last = [(done, total) for done, total, e in calls if e == result.encodes]
    assert last[-1][1] == encoded[-1][1] + decoded[-1][1]
    assert (encoded[-1][1], last[-1][1]) in last


def test_a_byte_limit_missed_for_want_of_encodes_says_so(codec, photo):
    """With max_encodes=1 the search stops at the default quality: the error said the image takes
    that many bytes, as if quality 1 had been tried."""
    from nicodec.ratecontrol import encode_to_target

    smallest = len(codec.encode(photo, quality=1))
    with pytest.raises(nicodec.QualityError, match=r"within 1 encode \(max_encodes\).*allow more encodes"):
        encode_to_target(codec, photo, max_bytes=smallest + 10, max_encodes=1)
    assert len(encode_to_target(codec, photo, max_bytes=smallest + 10).data) <= smallest + 10


@pytest.mark.parametrize("shape", [(8, 8), (64, 64)])
def test_a_byte_limit_no_quality_meets_on_a_flat_image_says_so(codec, shape):
    """A flat image's file is as large at quality 1 as higher up, or a byte or two larger: the
    search tried quality 1, yet the error said it had stopped for want of encodes."""
    flat = np.full((*shape, 3), 0 if shape == (8, 8) else 128, np.uint8)
    lowest = len(at(codec, flat, 1))
    with pytest.raises(nicodec.QualityError) as info:
        encode_to_target(codec, flat, max_bytes=lowest - 10)
    assert f"no file of at most {lowest - 10:,} bytes: at quality 1 this image takes {lowest:,} bytes" in str(info.value)
    assert "encodes" not in str(info.value)


def test_a_file_of_exactly_max_bytes_fits(codec, image):
    """max_bytes is a limit the file may reach: quality 1's own size is met, not refused."""
    limit = len(at(codec, image, 1))
    result = encode_to_target(codec, image, max_bytes=limit)
    assert result.met and len(result.data) <= limit


def test_swapped_arguments_and_a_progress_that_is_no_function_are_named(codec, image):
    with pytest.raises(nicodec.NicodecError, match="takes a nicodec.Codec first and the image second, not ndarray"):
        nicodec.encode_to_target(image, codec, bpp=0.5)
    with pytest.raises(nicodec.NicodecError, match="not str"):
        nicodec.encode_to_target("photo.png", codec, bpp=0.5)
    with pytest.raises(nicodec.NicodecError, match="progress must be a function"):
        nicodec.encode_to_target(codec, image, bpp=0.5, progress=3)
    # Codec.encode's (done, total) shape failed only once the search had begun
    with pytest.raises(nicodec.NicodecError, match=r"progress must be a function of \(done, total, encode\), called "
                                                   r"with 3 arguments"):
        nicodec.encode_to_target(codec, image, bpp=0.5, progress=lambda done, total: None)


def test_a_byte_limit_below_quality_1_but_met_a_little_higher_is_met(codec):
    """Near its smallest a small image's file need not shrink with the quality (a 64x64 photo:
    146 bytes at quality 1, 144 at 3.75): a limit quality 1 misses by a few bytes is tried at
    a few qualities above it before the search says no file fits."""
    from nicodec.ratecontrol import LOW_PROBE_BYTES, LOW_PROBES

    cases = [synthetic_photo(64, 64, seed=seed) for seed in range(6)]
    cases += [np.full((1, 1, 3), value, np.uint8) for value in (0, 128, 255)]
    for small in cases:
        lowest = len(at(codec, small, 1))
        below = [size for size in (len(at(codec, small, q)) for q in LOW_PROBES) if lowest - LOW_PROBE_BYTES <= size < lowest]
        if below:
            break
    else:
        pytest.fail("no small image whose file is smaller a little above quality 1: the case is not tested")
    limit = max(below)
    result = encode_to_target(codec, small, max_bytes=limit, max_encodes=20)
    assert result.met and len(result.data) <= limit and result.quality > 1


def test_the_psnr_of_a_search_is_summed_by_bands_exactly():
    """Over the whole images in float64 it took 1.1 GiB beside a 24-megapixel encode; by bands of
    rows in integers, the same figure in a bounded few megabytes."""
    import tracemalloc

    from nicodec.ratecontrol import PSNR_ROWS, _psnr

    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 256, (3 * PSNR_ROWS + 5, 700, 3), dtype=np.uint8) for _ in range(2))
    seen = rng.random(a.shape[:2]) > 0.4

    def reference(a, b, where=None):
        if where is not None:
            a, b = a[where], b[where]
        return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))

    assert _psnr(a, b) == pytest.approx(reference(a, b), rel=1e-12)
    assert _psnr(a, b, seen) == pytest.approx(reference(a, b, seen), rel=1e-12)
    assert _psnr(a[:, :, 0], b[:, :, 0]) == pytest.approx(reference(a[:, :, 0], b[:, :, 0]), rel=1e-12)
    assert _psnr(a, a) == math.inf and _psnr(a, b, np.zeros_like(seen)) == math.inf
    band = PSNR_ROWS * a.shape[1] * 3 * 8  # a band's errors in int64
    for where in (None, seen):
        tracemalloc.start()
        try:
            _psnr(a, b, where)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * band, (peak, band)  # in float64 at once: 9 bands and more


def test_a_search_of_one_encode_says_encode(tmp_path, codec, image):
    png = tmp_path / "one.png"
    Image.fromarray(image).save(png)
    limit = len(codec.encode(png))  # the default quality's file, within the tolerance: the first is kept
    result = run("encode", png, "-o", tmp_path / "one.nic", "--max-bytes", limit)
    assert result.exit_code == 0, result.output
    assert ", 1 encode, " in result.stdout


def test_a_size_target_does_not_decode_the_source_beside_the_encodes(codec, tmp_path, monkeypatch):
    """Only a PSNR target needs the source's pixels; a size target decoded the source once more
    than its encodes do, only to count them: the header of the first file counts them."""
    from nicodec import ratecontrol

    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(64, 96, seed=5)).save(path)
    expected = encode_to_target(codec, path, max_bytes=600)
    def decoded(*args, **kwargs):
        raise RuntimeError("the source was decoded")

    monkeypatch.setattr(ratecontrol, "read_picture", decoded)
    for target in ({"max_bytes": 600}, {"bpp": 0.5}):
        result = encode_to_target(codec, path, **target)
        assert result.bpp == 8 * len(result.data) / (64 * 96)
    assert encode_to_target(codec, path, max_bytes=600).data == expected.data
    with pytest.raises(RuntimeError, match="decoded"):  # a PSNR target needs them
        encode_to_target(codec, path, psnr=30)
