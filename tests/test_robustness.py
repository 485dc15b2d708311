"""Robust under bad input: whatever the bytes, decoding ends with an image or a NicodecError.

``Codec.decode``, ``Codec.decode_symbols``, ``nicodec.format.unpack`` and
``nicodec.rans.decode`` read files from anywhere, so for any bytes they may only
return (an image of the header's size, symbols of the header's shapes) or raise a
subclass of :class:`nicodec.NicodecError`: no other exception, no crash, no hang
and no allocation beyond what ``max_pixels`` allows. The CRC catches almost every
accidental change, so most tests here also rebuild damaged files with a *valid*
CRC, which lets the damage reach the section table, the size logic and the rANS
decoder. ``tests/fuzz/fuzz_decode.py`` searches the same space with a fuzzer.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nicodec import Codec, format as nicformat, rans
from nicodec import alpha as alpha_section
from nicodec.errors import FormatError, LimitError, ModelMismatchError, NicodecError

from conftest import synthetic_photo

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers ----------------------------------------------------------------------------


def layout(data: bytes) -> dict[str, int]:
    """Byte offsets of a well-formed file's fields (FORMAT.md), read from its id length and section count."""
    id_len = data[6]
    count = data[27 + id_len]
    return {
        "width": 15 + id_len,
        "height": 19 + id_len,
        "quality": 23 + id_len,
        "count": 27 + id_len,
        "table": 28 + id_len,
        "crc": 28 + id_len + 8 * count,
        "payload": 32 + id_len + 8 * count,
    }


def with_crc(data: bytes | bytearray, crc_at: int) -> bytes:
    """The data with a valid CRC-32 written at ``crc_at`` (where an undamaged file keeps it)."""
    data = bytearray(data)
    if crc_at + 4 <= len(data):
        data[crc_at : crc_at + 4] = struct.pack("<I", zlib.crc32(bytes(data[:crc_at] + data[crc_at + 4 :])))
    return bytes(data)


def flip(data: bytes, bits) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def decode_or_refuse(codec: Codec, data: bytes, *, symbols: bool = False):
    """Decode ``data``; return the pixels, or the NicodecError raised. Any other exception fails the test.

    A successful decode must give an RGB (or, flagged grayscale, a one-channel) uint8 image of the size the header states,
    with an alpha channel more where the file has an alpha section
    (and, with ``symbols``, integers of the shapes the header implies).
    """
    try:
        pixels = codec.decode(data, as_array=True)
    except NicodecError as exc:
        if symbols:
            with pytest.raises(NicodecError):
                codec.decode_symbols(data)
        return exc
    header, sections = nicformat.unpack(data, max_pixels=codec.max_pixels)
    assert pixels.dtype == np.uint8
    channels = len(nicformat.decoded_mode(header.flags, alpha_section.find(sections) is not None))
    assert pixels.shape == (header.height, header.width) + ((channels,) if channels > 1 else ())
    if symbols:
        header2, z_hat, ys, mean_q = codec.decode_symbols(data)
        assert header2 == header
        assert z_hat.dtype == ys.dtype == mean_q.dtype == np.int32
        assert z_hat.shape == codec._z_shape(header.height, header.width)
        latent = codec._y_shape(header.height, header.width, nicformat.padding(header.flags, codec.model.downsampling))
        assert ys.shape == mean_q.shape == (1, codec.model.latent_channels, *latent)
    return pixels


def unpack_or_refuse(data: bytes, max_pixels: int | None = None):
    try:
        header, sections = nicformat.unpack(data, max_pixels=max_pixels)
    except NicodecError as exc:
        return exc
    assert list(sections) == list(nicformat.SECTIONS_V1)
    assert 1 <= header.width <= nicformat.MAX_SIDE and 1 <= header.height <= nicformat.MAX_SIDE
    assert max_pixels is None or header.width * header.height <= max_pixels
    return header, sections


class Real:
    """A real file and its parts: a 64x90 synthetic photo coded by the shipped model (padded to
    64x96, its latent 4x6, its hyper-latent 1x2)."""

    def __init__(self, codec: Codec, height: int = 64, width: int = 90, seed: int = 1):
        self.data = codec.encode(synthetic_photo(height, width, seed=seed))
        self.header, self.sections = nicformat.unpack(self.data)
        self.at = layout(self.data)


@pytest.fixture(scope="module")
def real(codec) -> Real:
    real = Real(codec)
    assert real.header.flags == nicformat.FLAG_FINE_PADDING
    assert codec.decode(real.data, as_array=True).shape == (64, 90, 3)
    return real


@pytest.fixture(scope="module")
def other(codec) -> Real:
    """A second file on the same 4x6 grid of 16x16 blocks (other pixels, other sizes)."""
    return Real(codec, height=50, width=85, seed=7)


def repack(real: Real, *, header=None, **sections) -> bytes:
    """The real file with some header fields or whole sections replaced, and a valid CRC."""
    head = real.header if header is None else header
    parts = dict(real.sections)
    for tag, payload in sections.items():
        parts[tag.encode()] = payload
    return nicformat.pack(head, parts)


def resized(real: Real, width: int, height: int) -> bytes:
    """The real file claiming another size, valid CRC: written raw so pack's range checks are not in the way."""
    data = bytearray(real.data)
    struct.pack_into("<II", data, real.at["width"], width, height)
    return with_crc(data, real.at["crc"])


# -- random bytes -----------------------------------------------------------------------


@FAST
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_refused(codec, data):
    if data[:4] != nicformat.MAGIC:
        with pytest.raises(FormatError):
            nicformat.unpack(data)
        assert isinstance(decode_or_refuse(codec, data), FormatError)
    else:
        decode_or_refuse(codec, data)


@FAST
@given(cut=st.integers(4, 120), tail=st.binary(max_size=2048), fix_crc=st.booleans())
def test_random_bytes_behind_a_valid_prefix(codec, real, cut, tail, fix_crc):
    """The first ``cut`` bytes of a real file (magic, version, then more and more of the header), then noise."""
    data = real.data[:cut] + tail
    if fix_crc:
        data = with_crc(data, real.at["crc"])
    result = unpack_or_refuse(data)
    outcome = decode_or_refuse(codec, data, symbols=True)
    if isinstance(result, NicodecError):
        assert isinstance(outcome, NicodecError)
    # Any bytes-like object reads the same.
    assert type(decode_or_refuse(codec, memoryview(bytearray(data)))) is type(outcome)


@FAST
@given(tail=st.binary(max_size=512))
def test_magic_and_version_then_noise(codec, tail):
    data = nicformat.MAGIC + bytes([nicformat.FORMAT_VERSION]) + tail
    unpack_or_refuse(data)
    unpack_or_refuse(data, max_pixels=1)
    decode_or_refuse(codec, data)


# -- truncation and bit flips (CRC unchanged) -----------------------------------------


def test_every_truncation_is_refused(codec, real):
    for end in range(len(real.data)):
        assert isinstance(unpack_or_refuse(real.data[:end]), FormatError), end
        assert isinstance(decode_or_refuse(codec, real.data[:end]), FormatError), end
    assert isinstance(decode_or_refuse(codec, real.data + b"\0"), FormatError)


def test_every_single_bit_flip_is_refused(codec, real):
    """CRC-32 catches every one-bit error; the file must never decode or fail otherwise."""
    kinds = set()
    for bit in range(8 * len(real.data)):
        outcome = decode_or_refuse(codec, flip(real.data, [bit]))
        assert isinstance(outcome, NicodecError), bit
        kinds.add(type(outcome))
    assert FormatError in kinds


@FAST
@given(data=st.data())
def test_multiple_bit_flips(codec, real, data):
    n_bits = 8 * len(real.data)
    bits = data.draw(st.sets(st.integers(0, n_bits - 1), min_size=1, max_size=64))
    outcome = decode_or_refuse(codec, flip(real.data, bits))
    if len(bits) <= 3:
        # CRC-32 has Hamming distance >= 4 at this length, so up to three flips are always caught.
        assert isinstance(outcome, NicodecError)


# -- damage behind a valid CRC ----------------------------------------------------------


def test_each_header_bit_flipped_with_a_valid_crc(codec, real):
    """Model id, hash, sizes, quality, section table: every bit, the CRC recomputed."""
    outcomes = {}
    for bit in range(8 * 4, 8 * real.at["crc"]):  # everything after the magic, up to the CRC
        data = with_crc(flip(real.data, [bit]), real.at["crc"])
        outcomes[bit] = decode_or_refuse(codec, data)
    width_bit0 = 8 * real.at["width"]
    # 90 -> 91 stays on the same 16-pixel grid: the streams still fit and the image is one column wider.
    assert outcomes[width_bit0].shape == (64, 91, 3)
    assert isinstance(outcomes[8 * 7], ModelMismatchError)  # first byte of the model id
    assert isinstance(outcomes[8 * real.at["table"]], FormatError)  # the ZSYM tag


@pytest.mark.parametrize("tag", ["ZSYM", "YSYM"])
def test_each_payload_byte_damaged_with_a_valid_crc(codec, real, tag):
    """One flipped bit in every byte of a payload, repacked: the damage reaches the rANS decoder."""
    payload = real.sections[tag.encode()]
    refused = decoded = 0
    for i in range(len(payload)):
        bit = 8 * i + (i * 5) % 8
        outcome = decode_or_refuse(codec, repack(real, **{tag: flip(payload, [bit])}), symbols=i % 16 == 0)
        if isinstance(outcome, NicodecError):
            assert isinstance(outcome, FormatError), (i, outcome)
            assert "checksum" not in str(outcome)
            if "rANS" in str(outcome):  # which of the two streams it is (it did not say), and what that means
                assert str(outcome).startswith("the file is damaged: rANS stream "), outcome
                assert str(outcome).endswith(f"(the {tag} section, the {'hyper' if tag == 'ZSYM' else ''}latent's "
                                             "symbols)"), outcome
            refused += 1
        else:
            decoded += 1
    assert refused > len(payload) // 2


def test_extreme_escaped_values_decode_and_codable_ones_are_refused(codec, real):
    """Escapes of any int32 make a valid stream (an image of the header's size).

    An escape of a value its table can code directly is refused.
    """
    _, z_hat, symbols, _ = codec.decode_symbols(real.data)
    scale_index = codec._entropy_parameters(z_hat, symbols.shape[2:])[0].ravel()
    for value in (2**31 - 1, -(2**31), 10**6):
        values = symbols.ravel().copy()
        values[::97] = value
        stream = rans.encode(values, scale_index, codec.model.y_tables)
        assert rans.HEADER.unpack_from(stream)[1] >= len(values[::97])
        data = repack(real, YSYM=stream)
        pixels = decode_or_refuse(codec, data, symbols=True)
        assert not isinstance(pixels, NicodecError), pixels
        assert np.array_equal(codec.decode_symbols(data)[2].ravel(), values)
    # The first escape is symbol 0's; make it a value its table codes directly.
    damaged = bytearray(stream)
    struct.pack_into("<i", damaged, rans.HEADER.size, int(codec.model.y_tables.offsets[scale_index[0]]))
    with pytest.raises(FormatError, match="can code"):
        codec.decode(repack(real, YSYM=bytes(damaged)))


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 16), st.integers(0, 64)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
)


def mutate(payload: bytes, steps) -> bytes:
    out = bytearray(payload)
    for kind, where, arg in steps:
        pos = where % (len(out) + 1)
        if kind == "flip" and out:
            out[pos % len(out)] ^= 1 << arg
        elif kind == "set" and out:
            out[pos % len(out)] = arg
        elif kind == "cut":
            del out[pos : pos + arg]
        elif kind == "insert":
            out[pos:pos] = arg
        elif kind == "truncate":
            del out[pos:]
    return bytes(out)


@FAST
@given(tag=st.sampled_from(["ZSYM", "YSYM"]), steps=st.lists(mutation, min_size=1, max_size=6))
def test_damaged_payload_with_a_valid_crc(codec, real, tag, steps):
    damaged = mutate(real.sections[tag.encode()], steps)
    outcome = decode_or_refuse(codec, repack(real, **{tag: damaged}))
    if damaged == real.sections[tag.encode()]:
        assert not isinstance(outcome, NicodecError)


@pytest.fixture(scope="module")
def transparent(codec) -> Real:
    """Real files with an alpha plane in each kind of section (a soft-edged 128x96 cut-out:
    ALPL; a 9x5 one: ALPH, since zlib is the smaller there)."""
    files = []
    for height, width in ((96, 128), (5, 9)):
        y, x = np.mgrid[:height, :width]
        plane = np.clip((1.1 - np.hypot(y / height - 0.5, x / width - 0.5) / 0.4) * 2550, 0, 255).astype(np.uint8)
        real = Real(codec, height, width)
        real.data = codec.encode(np.dstack([synthetic_photo(height, width, seed=1), plane]))
        real.header, real.sections = nicformat.unpack(real.data)
        real.at = layout(real.data)
        assert codec.decode(real.data, as_array=True).shape == (height, width, 4)
        files.append(real)
    assert [alpha_section.find(f.sections) for f in files] == [b"ALPL", b"ALPH"]
    return files


@FAST
@given(which=st.integers(0, 1), steps=st.lists(mutation, min_size=1, max_size=6))
def test_damaged_alpha_section_with_a_valid_crc(codec, transparent, which, steps):
    """Damage that reaches the zlib or LZMA decoder: the plane decodes (LZMA2 and zlib's data
    carry no check of their own, the file's CRC-32 is what catches accidents) or a FormatError
    names the alpha section."""
    real = transparent[which]
    tag = alpha_section.find(real.sections)
    damaged = mutate(real.sections[tag], steps)
    outcome = decode_or_refuse(codec, repack(real, **{tag.decode(): damaged}))
    if isinstance(outcome, NicodecError):
        assert isinstance(outcome, FormatError) and "alpha section" in str(outcome), outcome
    elif damaged == real.sections[tag]:
        assert np.array_equal(outcome, codec.decode(real.data, as_array=True))


@FAST
@given(z=st.binary(max_size=128), y=st.binary(max_size=1024))
def test_random_payloads_with_a_valid_crc(codec, real, z, y):
    decode_or_refuse(codec, repack(real, ZSYM=z, YSYM=y))


def test_splices_of_two_files(codec, real, other):
    """Header of one file, sections of the other, mixed, each with a valid CRC."""
    z1, y1 = real.sections[b"ZSYM"], real.sections[b"YSYM"]
    z2, y2 = other.sections[b"ZSYM"], other.sections[b"YSYM"]
    # Same grid: the other file's streams decode under this header, at this header's size.
    pixels = decode_or_refuse(codec, repack(real, ZSYM=z2, YSYM=y2), symbols=True)
    assert pixels.shape == (64, 90, 3)
    for z, y in ((z1, y2), (z2, y1)):
        assert isinstance(decode_or_refuse(codec, repack(real, ZSYM=z, YSYM=y)), FormatError)
    for cut in range(0, len(y1), 37):
        decode_or_refuse(codec, repack(real, YSYM=y1[:cut] + y2[cut:]))
        decode_or_refuse(codec, repack(real, YSYM=y2[:cut] + y1[cut:]))
    # Splices at the byte level, with the CRC put right where it would be.
    for cut in range(0, len(real.data), 29):
        decode_or_refuse(codec, with_crc(real.data[:cut] + other.data[cut:], real.at["crc"]))


# -- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "width, height",
    [(90, 64), (96, 64), (81, 49), (97, 64), (80, 64), (128, 1), (1, 1), (1, 2), (2, 1), (2, 2), (65, 64), (192, 128),
     (1 << 20, 1), (1, 1 << 20)],
)
def test_sizes_within_the_limit_with_a_valid_crc(codec, real, width, height):
    outcome = decode_or_refuse(codec, resized(real, width, height), symbols=True)
    if (-(-width // 16), -(-height // 16)) == (6, 4):
        assert outcome.shape == (height, width, 3)  # same latent grid: the streams still fit
    else:
        assert isinstance(outcome, NicodecError)


@pytest.mark.parametrize(
    "width, height",
    [
        (1 << 20, 1 << 20),
        (7072, 7072),  # 50,013,184 pixels
        (1 << 20, 48),
        (1 << 20, 47),  # 49,283,072 pixels, but 50,331,648 once padded (to 48 rows)
        (40, 1 << 20),  # 41,943,040 pixels, 50,331,648 once padded (to 48 columns)
    ],
)
def test_sizes_beyond_the_limit_are_refused_from_the_header(limited, real, width, height):
    codec = limited
    assert codec.max_pixels == 50_000_000
    # Zero payloads too: the limit is checked before any section is read.
    for data in (resized(real, width, height), repack(real, header=_header(real, width, height), ZSYM=b"", YSYM=b"")):
        with pytest.raises(LimitError, match="limit"):
            codec.decode(data)
        with pytest.raises(LimitError):
            codec.decode_symbols(data)


@pytest.fixture(scope="module")
def limited():
    """A codec with a 50-million-pixel limit (the cases above are built around it)."""
    return Codec(providers="cpu", max_pixels=50_000_000)


@pytest.mark.parametrize(
    "width, height", [(0, 64), (96, 0), ((1 << 20) + 1, 1), (1, (1 << 20) + 1), (2**32 - 1, 2**32 - 1)]
)
def test_sizes_outside_the_format_are_refused(codec, real, width, height):
    data = resized(real, width, height)
    with pytest.raises(FormatError, match="outside"):
        nicformat.unpack(data)
    with pytest.raises(FormatError, match="outside"):
        codec.decode(data)


def _header(real: Real, width: int, height: int) -> nicformat.Header:
    h = real.header
    return nicformat.Header(h.version, h.model_id, h.model_hash, width, height, h.quality, h.flags)


def test_decode_counts_the_padding_towards_the_pixel_limit(codec):
    """Regression: decode allowed 64 times the limit for a one-pixel-wide image (encode refused it)."""
    data = codec.encode(synthetic_photo(2000, 8)[:, :1])
    narrow = Codec(providers="cpu", max_pixels=20_000)  # 2,000 pixels, 32,000 once padded (to 2000x16)
    with pytest.raises(LimitError, match="padded"):
        narrow.encode(synthetic_photo(2000, 8)[:, :1])
    with pytest.raises(LimitError, match="padded"):
        narrow.decode(data)
    with pytest.raises(LimitError, match="padded"):
        narrow.decode_symbols(data)
    assert codec.decode(data, as_array=True).shape == (2000, 1, 3)


# -- rANS streams with extreme lane and escape counts ----------------------------------

LANES = st.one_of(st.sampled_from([0, 1, 2, 127, 128, 129, 4096, 4097, 65535]), st.integers(0, 65535))
ESCAPES = st.one_of(st.sampled_from([0, 1, 128, 129, 4096, 4097, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))


def z_ids(codec: Codec, real: Real) -> np.ndarray:
    return codec._z_table_ids(codec._z_shape(real.header.height, real.header.width))


def rans_decode_or_refuse(data: bytes, ids: np.ndarray, tables: rans.Tables):
    try:
        values = rans.decode(data, ids, tables)
    except FormatError as exc:
        return exc
    assert values.dtype == np.int32 and values.shape == ids.shape
    return values


@FAST
@given(k=LANES, e=ESCAPES, body=st.binary(max_size=1024), keep=st.integers(0, 2048))
def test_rans_headers_with_extreme_counts(codec, real, k, e, body, keep):
    """Lane and escape counts anywhere in their u16 and u32 ranges, before noise or the real stream's tail."""
    ids = z_ids(codec, real)  # 128 symbols
    tail = real.sections[b"ZSYM"][rans.HEADER.size :]
    for rest in (body, tail[:keep] + body, tail):
        stream = rans.HEADER.pack(k, e) + rest
        outcome = rans_decode_or_refuse(stream, ids, codec.model.z_tables)
        if not 1 <= k <= len(ids) or e > len(ids):
            assert isinstance(outcome, FormatError)
        decode_or_refuse(codec, repack(real, ZSYM=stream))
        decode_or_refuse(codec, repack(real, YSYM=stream))


@FAST
@given(k=LANES, e=ESCAPES)
def test_rans_counts_larger_than_the_data_allocate_nothing(codec, real, k, e):
    """Huge counts in a 6-byte stream are refused from the header, not read or allocated."""
    ids = z_ids(codec, real)
    stream = rans.HEADER.pack(k, e)
    assert isinstance(rans_decode_or_refuse(stream, ids, codec.model.z_tables), FormatError)
    # 4096 symbols (a 4 x 8 x 128 latent): the largest lane counts are still refused for want of data.
    ids = np.zeros(4096, dtype=np.int32)
    outcome = rans_decode_or_refuse(stream + bytes(4 * min(k, 64)), ids, codec.model.y_tables)
    assert isinstance(outcome, FormatError)


@pytest.fixture(scope="module")
def wide_stream():
    """A valid stream with 65,535 lanes and thousands of escapes (values far outside the table)."""
    tables = rans.tables_from_pmfs([np.array([8.0, 4.0, 2.0, 1.0, 1.0]), np.array([1.0, 1.0])], [0, -3])
    rng = np.random.default_rng(5)
    n = 70_000
    ids = rng.integers(0, 2, n)
    values = np.where(ids == 0, rng.integers(0, 4, n), -3)  # what each table codes directly
    escape = rng.random(n) < 0.05
    values[escape] = rng.choice([-(2**31), 2**31 - 1, 4, -4, 10**9], escape.sum())
    data = rans.encode(values, ids, tables, lanes=65535)
    assert rans.HEADER.unpack_from(data) == (65535, int(escape.sum()))
    np.testing.assert_array_equal(rans.decode(data, ids, tables), values)
    return data, ids, tables


@FAST
@given(steps=st.lists(mutation, min_size=1, max_size=4), k=st.none() | LANES, e=st.none() | ESCAPES)
def test_damaged_stream_with_65535_lanes(wide_stream, steps, k, e):
    data, ids, tables = wide_stream
    damaged = bytearray(mutate(data, steps))
    if len(damaged) >= rans.HEADER.size and (k is not None or e is not None):
        old_k, old_e = rans.HEADER.unpack_from(damaged)
        rans.HEADER.pack_into(damaged, 0, old_k if k is None else k, old_e if e is None else e)
    outcome = rans_decode_or_refuse(bytes(damaged), ids, tables)
    if bytes(damaged) != data and len(damaged) != len(data):
        assert isinstance(outcome, FormatError)  # words are never optional: lengths must agree exactly


# -- longer runs ------------------------------------------------------------------------


@pytest.mark.slow
def test_every_payload_bit_flipped_with_a_valid_crc(codec, real):
    for tag in ("ZSYM", "YSYM"):
        payload = real.sections[tag.encode()]
        for bit in range(8 * len(payload)):
            decode_or_refuse(codec, repack(real, **{tag: flip(payload, [bit])}))


@pytest.mark.slow
@SLOW
@given(tag=st.sampled_from(["ZSYM", "YSYM"]), steps=st.lists(mutation, min_size=1, max_size=12))
def test_damaged_payload_with_a_valid_crc_long(codec, real, tag, steps):
    decode_or_refuse(codec, repack(real, **{tag: mutate(real.sections[tag.encode()], steps)}))


def test_too_few_lanes_for_many_symbols_are_refused():
    """A tiny crafted stream with one lane for 200,000 symbols would take about a second per
    200,000 symbols to decode; the format requires at least min_lanes(n) lanes instead."""
    tables = rans.tables_from_pmfs([np.array([0.97, 0.02, 0.01])], [0])
    n = 200_000
    ids = np.zeros(n, dtype=np.int32)
    stream = struct.pack("<HI", 1, 0) + struct.pack("<I", rans.STATE_LOW)
    with pytest.raises(FormatError, match="lanes"):
        rans.decode(stream, ids, tables)
    with pytest.raises(ValueError, match="lanes"):
        rans.encode(np.zeros(n, dtype=np.int32), ids, tables, lanes=1)
    fewest = rans.min_lanes(n)
    assert fewest == -(-rans.default_lanes(n) // 8) > 1
    values = np.zeros(n, dtype=np.int32)
    assert np.array_equal(rans.decode(rans.encode(values, ids, tables, lanes=fewest), ids, tables), values)


@pytest.mark.parametrize("start", [b"\0" * 8, b"NIC"])
def test_a_large_file_that_is_no_nic_file_is_refused_from_its_first_bytes(codec, tmp_path, start):
    """Decoding a path read the whole file before its first bytes were checked: a large file of
    another kind (a sparse 256 MiB one here) cost its size in memory before the error."""
    import tracemalloc

    path = tmp_path / "large.bin"
    with open(path, "wb") as f:
        f.write(start)
        f.truncate(256 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="not a nicodec file"):
            codec.decode(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    # A real file longer than the first bytes checked still decodes through the same reading, and
    # one cut short is still refused.
    real = codec.encode(np.random.default_rng(9).integers(0, 256, (448, 512, 3), dtype=np.uint8), quality=100)
    assert len(real) > 1 << 16
    (tmp_path / "real.nic").write_bytes(real)
    assert np.array_equal(codec.decode(tmp_path / "real.nic", as_array=True), codec.decode(real, as_array=True))
    (tmp_path / "cut.nic").write_bytes(real[:-1])
    with pytest.raises(FormatError):
        codec.decode(tmp_path / "cut.nic")


def test_a_file_larger_than_nicodec_reads_is_refused_from_its_header(codec, real, tmp_path):
    """A path was read whole, however large, where a stream stops at 1 GiB: a sparse file of a
    few KB on disk whose header declares a 1.5 GiB ICC profile (a security review's) cost
    `nicodec info`, which decodes nothing, 12 s and 3.2 GB, and opening it with Pillow as much.
    The lengths the header declares are judged before the rest is read."""
    from PIL import Image, UnidentifiedImageError
    from typer.testing import CliRunner

    from nicodec import pillow_plugin
    from nicodec.cli import app

    # Registered here, not by importing nicodec.pillow_register: that registers once per process,
    # and a test before this one in the same worker may have taken the plugin out again.
    pillow_plugin.register(codec)

    claimed = 3 << 29  # 1.5 GiB
    data = bytearray(repack(real, ICCP=b"x"))
    entry = data.index(b"ICCP" + struct.pack("<I", 1))
    struct.pack_into("<I", data, entry + 4, claimed)
    sparse = tmp_path / "sparse.nic"
    with open(sparse, "wb") as f:
        f.write(data[:-1])
        f.truncate(len(data) - 1 + claimed)  # a hole: nothing written
    said = f"declares {len(data) - 1 + claimed:,} bytes, more than the 1,073,741,824 nicodec reads"
    with pytest.raises(LimitError, match=said):
        nicformat.read_header(bytes(data))
    # Readers of a path judge the file's size first (below), the same number here.
    with pytest.raises(LimitError, match=said.replace("declares", "holds")):
        codec.decode(sparse)
    for command in ("info", "verify", "decode"):
        result = CliRunner().invoke(app, [command, str(sparse)] + (["-o", str(tmp_path / "x.png")] if command == "decode" else []))
        assert result.exit_code == 1 and said.replace("declares", "holds") in result.stderr, (command, result.stderr)
    class Unsized:  # a stream that cannot tell its size (a request's): its header, from the first 64 KiB
        def __init__(self, f):
            self.read = f.read

    with open(sparse, "rb") as stream:
        with pytest.raises(LimitError, match=said):
            codec.decode(Unsized(stream))
        assert stream.tell() == 1 << 20  # one piece read, not the 1.5 GiB
    with pytest.raises(UnidentifiedImageError, match=f"damaged nicodec file .*{said}"):  # as Pillow's formats say
        Image.open(sparse)
    # Within the limit, a file is read as before.
    assert nicformat.read_header(bytes(repack(real, ICCP=b"x")))[1][-1] == (b"ICCP", 1)
    # A true header with a hole after the end it declares (a review of the fix): the file's own
    # size is judged before it is read, by every reader.
    padded = tmp_path / "padded.nic"
    with open(padded, "wb") as f:
        f.write(real.data)
        f.truncate(len(real.data) + claimed)
    said = f"holds {len(real.data) + claimed:,} bytes, more than the 1,073,741,824 nicodec reads"
    with pytest.raises(LimitError, match=said):
        codec.decode(padded)
    for command in ("info", "verify", "decode"):
        result = CliRunner().invoke(app, [command, str(padded)] + (["-o", str(tmp_path / "x.png")] if command == "decode" else []))
        assert result.exit_code == 1 and said in result.stderr, (command, result.stderr)
    with Image.open(padded) as opened:  # the header is whole: the pixels are refused
        with pytest.raises(OSError, match="the file holds more than the 1,073,741,824 bytes nicodec reads"):
            opened.load()
    with Image.open(padded) as opened, pytest.raises(SyntaxError, match="more than the 1,073,741,824 bytes"):
        opened.verify()
    # A file object of a regular file, and standard input redirected from one, are judged by
    # their size too (they were read up to the 1 GiB cap first).
    import tempfile

    for opened in (lambda: open(padded, "rb"), lambda: open(padded, "rb", buffering=0)):
        with opened() as stream:
            with pytest.raises(NicodecError, match=f"holds more than 1,073,741,824 bytes .{len(real.data) + claimed:,}."):
                codec.decode(stream)
            assert stream.tell() == 0  # nothing read
    # So are a temporary file's wrappers (an upload a web framework keeps on disk), by seeking
    # (their descriptors are not theirs: a gzip reader's is the compressed file's).
    for kept in (tempfile.NamedTemporaryFile(), tempfile.SpooledTemporaryFile(max_size=1 << 10)):
        with kept as stream:
            stream.write(real.data)
            stream.truncate(len(real.data) + claimed)
            stream.seek(0)
            with pytest.raises(NicodecError, match="holds more than 1,073,741,824 bytes"):
                codec.decode(stream)
            assert stream.tell() == 0
    import subprocess
    import sys
    with open(padded, "rb") as stdin:
        done = subprocess.run([sys.executable, "-m", "nicodec", "info", "-"], stdin=stdin, capture_output=True,
                              text=True, check=False)
    assert done.returncode == 1 and "standard input holds more than 1,073,741,824 bytes" in done.stderr, done.stderr


def test_the_fuzz_harness_takes_every_kind_of_file_nicodec_writes(codec, monkeypatch):
    """tests/fuzz/fuzz_decode.py works out the decoded shape from the header: a file of a colour
    image of equal channels (flags 0x03, three channels back) was a finding to it."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fuzz"))
    import fuzz_decode

    monkeypatch.setattr(fuzz_decode, "CODEC", codec)
    photo = synthetic_photo(40, 48)
    alpha = np.full((40, 48, 1), 255, np.uint8)
    alpha[0, 0] = 0
    gray = photo[..., 1:2]
    for image in (photo, gray[..., 0], np.repeat(gray, 3, axis=2), np.dstack([photo, alpha]),
                  np.dstack([np.repeat(gray, 3, axis=2), alpha])):
        assert fuzz_decode.TestOneInput(codec.encode(image)) == "decoded"
