"""The alpha plane's two section kinds (``nicodec.alpha``): zlib (``ALPH``) and LZMA2 (``ALPL``)."""

from __future__ import annotations

import lzma
import zlib

import numpy as np
import pytest

import nicodec
from nicodec import alpha as alpha_section
from nicodec import format as nicformat


def cut_out(height: int, width: int) -> np.ndarray:
    """An alpha plane like a cut-out's: an opaque ellipse, a soft edge, transparency around it."""
    y, x = np.mgrid[:height, :width]
    r = np.hypot((y - height / 2) / (0.4 * height), (x - width / 2) / (0.4 * width))
    return np.clip((1.1 - r) * 10 * 255, 0, 255).astype(np.uint8)


def lzma2(raw: bytes, dictionary: int = 16, **options) -> bytes:
    """An ALPL payload: the dictionary byte, then a raw LZMA2 stream."""
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": alpha_section.dictionary_size(dictionary), **options}]
    return bytes([dictionary]) + lzma.compress(raw, format=lzma.FORMAT_RAW, filters=filters)


def test_the_smaller_section_is_written_and_read_back_exactly():
    large = cut_out(300, 400)
    tag, payload = alpha_section.compress(large)
    assert tag == b"ALPL" and len(payload) < len(zlib.compress(large.tobytes(), 9))
    assert payload == lzma2(large.tobytes(), **alpha_section.LZMA2_SETTINGS)
    assert np.array_equal(alpha_section.decompress(tag, payload, 400, 300), large)
    tiny = cut_out(6, 7)  # zlib's and LZMA2's overheads decide here
    tag, payload = alpha_section.compress(tiny)
    assert tag == b"ALPH" and payload == zlib.compress(tiny.tobytes(), 9)
    assert np.array_equal(alpha_section.decompress(tag, payload, 7, 6), tiny)


def test_without_lzma_the_encoder_writes_zlib_and_the_decoder_names_the_module(monkeypatch):
    plane = cut_out(300, 400)
    tag, payload = alpha_section.compress(plane)
    assert tag == b"ALPL"
    monkeypatch.setattr(alpha_section, "lzma", None)
    assert alpha_section.compress(plane)[0] == b"ALPH"
    with pytest.raises(nicodec.FormatError, match="no lzma module"):
        alpha_section.decompress(tag, payload, 400, 300)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        bytes([16]),  # no stream
        bytes([16]) + b"not lzma2",
        lzma2(bytes(99)),  # one byte short
        lzma2(bytes(101)),  # one byte too many
        lzma2(bytes(100))[:-1],  # no end marker
        lzma2(bytes(100)) + b"\0",  # a byte after it
        lzma2(bytes(100)) + lzma2(bytes(100))[1:],  # a second stream
        bytes([16]) + lzma.compress(bytes(100), format=lzma.FORMAT_XZ),  # a container
        bytes([16]) + lzma.compress(bytes(100), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1}]),
    ],
)
def test_an_lzma2_section_that_is_not_exactly_the_plane_is_refused(payload):
    with pytest.raises(nicodec.FormatError, match="alpha section"):
        alpha_section.decompress(b"ALPL", payload, 10, 10)
    assert alpha_section.decompress(b"ALPL", lzma2(bytes(100)), 10, 10).shape == (10, 10)


def test_the_dictionary_byte_bounds_the_memory_a_decoder_needs():
    """Byte 22 (8 MiB) decodes; above it, up to 40 (4 GiB), the section is refused unread. A
    stream that needs a larger dictionary than its byte says is refused by LZMA2 itself."""
    assert alpha_section.dictionary_size(16) == 1 << 20 and alpha_section.dictionary_size(22) == 8 << 20
    assert alpha_section.decompress(b"ALPL", lzma2(bytes(100), 22), 10, 10).shape == (10, 10)
    for byte in (23, 39, 40, 255):
        with pytest.raises(nicodec.FormatError, match="larger than the format allows"):
            alpha_section.decompress(b"ALPL", bytes([byte]) + lzma2(bytes(100))[1:], 10, 10)
    noise = np.random.default_rng(0).integers(0, 256, 300_000, np.uint8).tobytes()
    far = lzma2(noise + noise, 22)  # the repeat lies 300,000 bytes back
    assert alpha_section.decompress(b"ALPL", far, 1000, 600).tobytes() == noise + noise
    with pytest.raises(nicodec.FormatError, match="alpha section"):
        alpha_section.decompress(b"ALPL", bytes([0]) + far[1:], 1000, 600)  # a 4 KiB dictionary


def test_an_lzma2_bomb_is_cut_off_at_the_plane_size():
    bomb = lzma2(bytes(200_000_000))  # 200 MB of zeros in about 30 KB
    with pytest.raises(nicodec.FormatError, match="holds more than the image's 100x100 bytes"):
        alpha_section.decompress(b"ALPL", bomb, 100, 100)


@pytest.mark.parametrize("kind", ["zlib", "lzma2"])
def test_an_alpha_section_that_is_not_the_plane_names_its_fault(kind):
    """One message covered a stream with too few bytes, too many, no end (a zlib stream without
    its Adler-32 trailer) and bytes after its end; FORMAT.md lists them apart."""
    pack = zlib.compress if kind == "zlib" else lzma2
    tag = alpha_section.ZLIB if kind == "zlib" else alpha_section.LZMA2
    whole = pack(bytes(100))
    faults = {
        "holds 99 bytes, not the image's 10x10": pack(bytes(99)),
        "holds more than the image's 10x10 bytes": pack(bytes(101)),
        "cut short: it has no end": whole[:-4] if kind == "zlib" else whole[:-1],
        "has 1 byte after the end of its stream": whole + b"\0",
    }
    for said, payload in faults.items():
        with pytest.raises(nicodec.FormatError, match=f"alpha section.*{said}"):
            alpha_section.decompress(tag, payload, 10, 10)
    assert alpha_section.decompress(tag, whole, 10, 10).shape == (10, 10)
    # A stream whose end (the final block, the trailer) comes in bytes after the plane's: whole.
    spread = zlib.compressobj()
    late = spread.compress(bytes(100)) + spread.flush(zlib.Z_FULL_FLUSH) + spread.flush()
    if kind == "zlib":
        assert alpha_section.decompress(tag, late, 10, 10).shape == (10, 10)


def test_a_codec_reads_and_writes_both_kinds(codec, photo):
    height, width = photo.shape[:2]
    plane = cut_out(height, width)
    data = codec.encode(np.dstack([photo, plane]))
    header, sections = nicformat.unpack(data)
    assert alpha_section.find(sections) == b"ALPL"
    assert np.array_equal(codec.decode(data, as_array=True)[:, :, 3], plane)
    # A file with the same plane as zlib (what nicodec wrote before ALPL, and writes without
    # lzma) decodes to the same image.
    old = {**{t: p for t, p in sections.items() if t != b"ALPL"}, b"ALPH": zlib.compress(plane.tobytes())}
    old = dict(sorted(old.items(), key=lambda item: [b"ZSYM", b"YSYM", b"ALPH", b"ICCP", b"EXIF"].index(item[0])))
    assert np.array_equal(codec.decode(nicformat.pack(header, old), as_array=True), codec.decode(data, as_array=True))
