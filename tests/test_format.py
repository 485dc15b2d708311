"""The .nic container: round trips, and a named refusal for every kind of damage."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nicodec import format as nicformat
from nicodec.errors import FormatError, LimitError, ModelMismatchError

HEADER = nicformat.Header(
    version=1, model_id="test-model", model_hash=bytes(range(8)), width=768, height=512, quality=0.0
)
SECTIONS = {b"ZSYM": b"\x01\x02\x03", b"YSYM": bytes(range(200))}


def packed() -> bytes:
    return nicformat.pack(HEADER, SECTIONS)


def test_round_trip():
    header, sections = nicformat.unpack(packed())
    assert header == HEADER
    assert sections == SECTIONS


def test_layout_matches_format_md():
    data = packed()
    assert data[:4] == b"\x89NIC"
    assert data[4] == 1 and data[5] == 0 and data[6] == len("test-model")
    pos = 7 + len("test-model")
    assert data[pos : pos + 8] == bytes(range(8))
    width, height, quality, count = struct.unpack_from("<IIfB", data, pos + 8)
    assert (width, height, quality, count) == (768, 512, 0.0, 2)
    pos += 8 + 13
    assert struct.unpack_from("<4sI4sI", data, pos) == (b"ZSYM", 3, b"YSYM", 200)
    pos += 16
    (crc,) = struct.unpack_from("<I", data, pos)
    assert crc == zlib.crc32(data[:pos] + data[pos + 4 :])
    assert data[pos + 4 :] == SECTIONS[b"ZSYM"] + SECTIONS[b"YSYM"]


@settings(max_examples=60, deadline=None)
@given(
    model_id=st.text(min_size=1, max_size=16).filter(lambda s: len(s.encode()) <= 64 and s.isprintable()),
    width=st.integers(1, 1 << 20),
    height=st.integers(1, 1 << 20),
    quality=st.floats(-1e6, 1e6, width=32),
    z=st.binary(max_size=64),
    y=st.binary(max_size=256),
)
def test_round_trip_any_header(model_id, width, height, quality, z, y):
    header = nicformat.Header(1, model_id, b"\xff" * 8, width, height, quality)
    sections = {b"ZSYM": z, b"YSYM": y}
    assert nicformat.unpack(nicformat.pack(header, sections)) == (header, sections)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty .0 bytes., not a nicodec file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "magic"),
        (b"\x89NI", "magic"),
    ],
)
def test_not_a_nicodec_file(data, message):
    with pytest.raises(FormatError, match=message):
        nicformat.unpack(data)


def test_unknown_version_is_named():
    data = bytearray(packed())
    data[4] = 2
    with pytest.raises(FormatError, match="version 2"):
        nicformat.unpack(bytes(data))


@pytest.mark.parametrize("flags", [0x02, 0x80, 0xFF])
def test_unknown_flags_are_refused(flags):
    data = bytearray(packed())
    data[5] = flags
    with pytest.raises(FormatError, match="flags"):
        nicformat.read_header(bytes(data))


def test_the_grayscale_flags_are_read():
    for flags in (nicformat.FLAG_GRAYSCALE, nicformat.FLAG_GRAYSCALE | nicformat.FLAG_GRAY_AS_RGB):
        data = bytearray(packed())
        data[5] = flags
        header, _, _ = nicformat.read_header(bytes(data))
        assert header.flags == flags
    data[5] = nicformat.FLAG_GRAY_AS_RGB  # alone: the flag says how a gray picture is returned
    with pytest.raises(FormatError, match=r"flags 0x02: gray as RGB \(0x02\) without grayscale \(0x01\)"):
        nicformat.read_header(bytes(data))


def test_every_truncation_is_a_format_error():
    data = packed()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            nicformat.unpack(data[:n])


def test_trailing_bytes_are_refused():
    with pytest.raises(FormatError, match="lengths"):
        nicformat.unpack(packed() + b"\x00")


def test_every_flipped_payload_or_header_byte_is_caught():
    data = packed()
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x10
        with pytest.raises((FormatError, LimitError)):
            nicformat.unpack(bytes(damaged))


def test_checksum_failure_is_named():
    data = bytearray(packed())
    data[-1] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        nicformat.unpack(bytes(data))


def test_inconsistent_lengths_are_named_before_slicing():
    data = bytearray(packed())
    pos = 7 + len("test-model") + 8 + 13 + 4  # the ZSYM length
    struct.pack_into("<I", data, pos, 0x0FFFFFF0)
    with pytest.raises(FormatError, match="lengths add up"):
        nicformat.unpack(bytes(data))
    # Lengths that make the file larger than nicodec reads (1 GiB): that is named instead.
    struct.pack_into("<I", data, pos, 0xFFFFFFF0)
    with pytest.raises(LimitError, match="declares 4,294,967,.* bytes, more than the 1,073,741,824 nicodec reads"):
        nicformat.unpack(bytes(data))


@pytest.mark.parametrize(
    "sections",
    [
        {b"YSYM": b"", b"ZSYM": b""},
        {b"ZSYM": b""},
        [(b"ZSYM", b""), (b"YSYM", b""), (b"YSYM", b"")],
        {b"ZSYM": b"", b"XTRA": b"", b"YSYM": b""},
        {b"ZSYM": b"", b"YSYM": b"", b"EXIF": b"", b"ICCP": b""},
        [(b"ZSYM", b""), (b"YSYM", b""), (b"ALPH", b""), (b"ALPH", b"")],
        {b"ZSYM": b"", b"YSYM": b"", b"ALPH": b"", b"ALPL": b""},
        {b"ZSYM": b"", b"YSYM": b"", b"ALPL": b"", b"ALPH": b""},
        {b"ZSYM": b"", b"YSYM": b"", b"ICCP": b"", b"ALPL": b""},
        {b"ZSYM": b"", b"YSYM": b"", b"XMP ": b"", b"EXIF": b""},
        {b"ZSYM": b"", b"YSYM": b"", b"XMP": b""},
        {b"ZSYM": b"", b"YSYM": b"", b"XTRA": b""},
    ],
)
def test_sections_other_than_zsym_then_ysym_are_refused(sections):
    with pytest.raises(FormatError, match="ZSYM then YSYM"):
        nicformat.pack(HEADER, sections)


def test_optional_sections_round_trip_in_order():
    sections = {**SECTIONS, b"ALPH": b"a", b"ICCP": b"icc", b"EXIF": b"Exif\x00\x00"}
    assert nicformat.unpack(nicformat.pack(HEADER, sections)) == (HEADER, sections)
    every = {**sections, b"XMP ": b"<x:xmpmeta/>"}
    assert nicformat.unpack(nicformat.pack(HEADER, every)) == (HEADER, every)
    lzma_alpha = {**SECTIONS, b"ALPL": b"x", b"ICCP": b"icc"}
    assert nicformat.unpack(nicformat.pack(HEADER, lzma_alpha))[1] == lzma_alpha
    only_exif = {**SECTIONS, b"EXIF": b"e"}
    assert nicformat.unpack(nicformat.pack(HEADER, only_exif))[1] == only_exif


def test_unknown_tag_in_a_file_is_refused():
    data = bytearray(packed())
    pos = 7 + len("test-model") + 8 + 13 + 8  # the second tag
    data[pos : pos + 4] = b"QQQQ"
    with pytest.raises(FormatError, match="QQQQ"):
        nicformat.unpack(bytes(data))


@pytest.mark.parametrize(
    "field, value",
    [("width", 0), ("height", 0), ("width", (1 << 20) + 1), ("model_id", ""), ("model_id", "x" * 65),
     ("model_hash", b"short"), ("flags", 2), ("flags", 8), ("version", 9), ("quality", float("nan"))],
)
def test_pack_refuses_bad_headers(field, value):
    fields = dict(HEADER.__dict__, **{field: value})
    with pytest.raises(FormatError):
        nicformat.pack(nicformat.Header(**fields), SECTIONS)


def test_zero_size_in_a_file_is_refused():
    data = bytearray(packed())
    struct.pack_into("<I", data, 7 + len("test-model") + 8, 0)
    with pytest.raises(FormatError, match="width 0"):
        nicformat.unpack(bytes(data))


def test_pixel_limit_is_checked_from_the_header():
    with pytest.raises(LimitError, match="393,216 pixels"):
        nicformat.unpack(packed(), max_pixels=1000)
    header, _, _ = nicformat.read_header(packed()[:60])
    assert (header.width, header.height) == (768, 512)


def test_model_mismatch_names_both_models():
    nicformat.check_model(HEADER, "test-model", bytes(range(8)))
    with pytest.raises(ModelMismatchError, match="'test-model'.*'other'"):
        nicformat.check_model(HEADER, "other", bytes(range(8)))
    with pytest.raises(ModelMismatchError, match="hash"):
        nicformat.check_model(HEADER, "test-model", bytes(8))


def test_a_model_decodes_the_files_of_the_models_it_lists():
    nicformat.check_model(HEADER, "newer", bytes(8), also=[("older", bytes(8)), ("test-model", bytes(range(8)))])
    with pytest.raises(ModelMismatchError, match="'newer'.*besides its own"):
        nicformat.check_model(HEADER, "newer", bytes(8), also=[("test-model", bytes(8))])


@pytest.mark.parametrize("character", ["\x1b", "\x07", "\r", "\u202e", "\u2028", "\x85"])
def test_a_model_id_that_is_not_printable_is_refused(character):
    """Tools print the id: one from a hostile file must not drive the terminal (ESC ] title, ESC [2J)."""
    data = packed().replace(b"test-model", f"test{character}".encode().ljust(10, b"x"), 1)
    with pytest.raises(FormatError, match="not printable"):
        nicformat.read_header(data)
    with pytest.raises(FormatError, match="not printable"):
        nicformat.pack(nicformat.Header(1, f"x{character}", bytes(8), 4, 4, 1.0), SECTIONS)
    assert nicformat.model_id_problem("nicodec-mshp-vr-1 (ß, 日本)") is None


def test_invalid_utf8_model_id_is_refused():
    data = bytearray(packed())
    data[7] = 0xFF
    with pytest.raises(FormatError, match="UTF-8"):
        nicformat.read_header(bytes(data))


def test_format_md_names_the_shipped_model_and_the_files_it_decodes():
    """FORMAT.md's paragraph on the shipped model names its id and hash, each model whose files it
    decodes, as the packaged manifest has them (it went stale once when a model changed), and each
    earlier model the package keeps, with the models whose files that one decodes."""
    import json
    import re
    from pathlib import Path

    from nicodec.model import default_model_dir, shipped_earlier_models

    spec = Path(__file__).resolve().parents[1] / "FORMAT.md"
    if not spec.exists():
        pytest.skip("FORMAT.md is not beside the tests (an installed copy)")
    text = " ".join(spec.read_text(encoding="utf-8").split())
    manifest = json.loads((default_model_dir() / "manifest.json").read_text())
    shipped = re.search(r"The shipped `([^`]+)` \(manifest version (\d), model hash `([0-9a-f]+)…`\)", text)
    assert shipped, "FORMAT.md has no 'The shipped `ID` (manifest version N, model hash `HEX…`)' sentence"
    assert shipped.group(1) == manifest["model_id"]
    assert int(shipped.group(2)) == manifest["version"]
    assert manifest["model_hash"].startswith(shipped.group(3)) and len(shipped.group(3)) >= 8
    for entry in manifest.get("decodes_files_of", []):
        assert f"`{entry['model_id']}` (hash `{entry['model_hash'][:8]}…`" in text
    # and the models the package keeps for their files (models/earlier), with theirs
    for model_id, model_hash in shipped_earlier_models():
        assert f"`{model_id}` (hash `{model_hash.hex()[:8]}…`" in text, model_id


def test_the_pixel_limit_takes_an_image_of_exactly_the_limit():
    assert nicformat.unpack(packed(), max_pixels=768 * 512)[0] == HEADER
    with pytest.raises(LimitError):
        nicformat.unpack(packed(), max_pixels=768 * 512 - 1)


def test_the_pixel_limit_takes_an_image_whose_padded_size_is_exactly_the_limit():
    """100 x 30 pixels are padded to 128 x 64 = 8,192 for a model that downsamples by 64."""
    nicformat.check_pixels(100, 30, 8192, 64)
    with pytest.raises(LimitError, match=r"padded to multiples of 64, 128x64 = 8,192 pixels, more than the limit of 8,191, which counts the padded size$"):
        nicformat.check_pixels(100, 30, 8191, 64)
    nicformat.check_pixels(128, 64, 8192, 64)  # no padding: the one count is the limit
    with pytest.raises(LimitError, match=r"has 8,192 pixels \(128x64\), more than the limit of 8,191$"):
        nicformat.check_pixels(128, 64, 8191, 64)
