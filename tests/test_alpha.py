"""The alpha plane's two section kinds (``nicodec.alpha``): zlib (``ALPH``) and .xz (``ALPX``)."""

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


def xz(raw: bytes, **options) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, **options)


def test_the_smaller_section_is_written_and_read_back_exactly():
    large = cut_out(300, 400)
    tag, payload = alpha_section.compress(large)
    assert tag == b"ALPX" and len(payload) < len(zlib.compress(large.tobytes(), 9))
    assert np.array_equal(alpha_section.decompress(tag, payload, 400, 300), large)
    tiny = cut_out(6, 7)  # the .xz container's own bytes outweigh what LZMA2 saves
    tag, payload = alpha_section.compress(tiny)
    assert tag == b"ALPH" and payload == zlib.compress(tiny.tobytes(), 9)
    assert np.array_equal(alpha_section.decompress(tag, payload, 7, 6), tiny)


def test_without_lzma_the_encoder_writes_zlib_and_the_decoder_names_the_module(monkeypatch):
    plane = cut_out(300, 400)
    tag, payload = alpha_section.compress(plane)
    assert tag == b"ALPX"
    monkeypatch.setattr(alpha_section, "lzma", None)
    assert alpha_section.compress(plane)[0] == b"ALPH"
    with pytest.raises(nicodec.FormatError, match="no lzma module"):
        alpha_section.decompress(tag, payload, 400, 300)


@pytest.mark.parametrize(
    "payload",
    [
        b"not xz",
        xz(bytes(99)),  # one byte short
        xz(bytes(101)),  # one byte too many
        xz(bytes(100))[:-1],  # truncated
        xz(bytes(100)) + bytes(4),  # stream padding, which nicodec never writes
        xz(bytes(100)) + xz(b""),  # a second stream
        lzma.compress(bytes(100), format=lzma.FORMAT_ALONE),  # another container
    ],
)
def test_an_xz_section_that_is_not_exactly_the_plane_is_refused(payload):
    with pytest.raises(nicodec.FormatError, match="alpha section"):
        alpha_section.decompress(b"ALPX", payload, 10, 10)
    assert alpha_section.decompress(b"ALPX", xz(bytes(100)), 10, 10).shape == (10, 10)


def test_an_xz_stream_that_would_need_a_large_dictionary_is_refused():
    """The dictionary size is in the stream's header: a crafted one must not reserve 1.5 GiB."""
    big = xz(bytes(100), filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1536 << 20}])
    with pytest.raises(nicodec.FormatError, match="alpha section is corrupt"):
        alpha_section.decompress(b"ALPX", big, 10, 10)
    fits = xz(bytes(100), filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 32 << 20}])
    assert alpha_section.decompress(b"ALPX", fits, 10, 10).shape == (10, 10)


def test_an_xz_bomb_is_cut_off_at_the_plane_size():
    bomb = xz(bytes(200_000_000))  # 200 MB of zeros in about 30 KB
    with pytest.raises(nicodec.FormatError, match="exactly 100x100 bytes"):
        alpha_section.decompress(b"ALPX", bomb, 100, 100)


def test_a_codec_reads_and_writes_both_kinds(codec, photo):
    height, width = photo.shape[:2]
    plane = cut_out(height, width)
    data = codec.encode(np.dstack([photo, plane]))
    header, sections = nicformat.unpack(data)
    assert alpha_section.find(sections) == b"ALPX"
    assert np.array_equal(codec.decode(data, as_array=True)[:, :, 3], plane)
    # A file with the same plane as zlib (what nicodec wrote before ALPX, and writes without
    # lzma) decodes to the same image.
    old = {**{t: p for t, p in sections.items() if t != b"ALPX"}, b"ALPH": zlib.compress(plane.tobytes())}
    old = dict(sorted(old.items(), key=lambda item: [b"ZSYM", b"YSYM", b"ALPH", b"ICCP", b"EXIF"].index(item[0])))
    assert np.array_equal(codec.decode(nicformat.pack(header, old), as_array=True), codec.decode(data, as_array=True))
