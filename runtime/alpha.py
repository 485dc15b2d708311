"""The alpha plane's section: lossless, ``width x height`` bytes row by row, compressed two ways.

``ALPH`` holds a zlib stream; ``ALPL`` holds one byte, the LZMA2 dictionary size as 7-Zip's and
liblzma's LZMA2 coder give it, then a raw LZMA2 stream (no .xz or .7z container). The encoder
writes whichever is smaller: on cut-outs of the Kodak photos LZMA2 takes about half of zlib's
bytes for a smooth outline and four fifths for a ragged one (``benchmarks/transparency.py``),
while zlib wins on the smallest images. Both are Python's own modules; a Python built without
``lzma`` writes ``ALPH`` alone and names the module when asked to read ``ALPL``.

Raw LZMA2 rather than an .xz stream: .xz admits several blocks (empty ones too, each costing a
decoder time but no output), other filters before LZMA2 and integrity checks that depend on the
liblzma at hand, so that which files decode would depend on the machine. A raw LZMA2 stream
has one decoder everywhere, each of its chunks gives at least one byte, and its end marker lets
a decoder refuse anything after it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

from . import format as nicformat
from .errors import FormatError

try:
    import lzma
except ImportError:  # a Python built without liblzma (pyenv without its headers, say)
    lzma = None  # type: ignore[assignment]

ZLIB, LZMA2 = nicformat.ALPHA_ZLIB, nicformat.ALPHA_LZMA2
TAGS = (ZLIB, LZMA2)
"""The alpha sections; a file holds at most one of them."""

DICTIONARY = 16
"""The encoder's dictionary-size byte: 1 MiB. No larger one gave a smaller file on the
benchmark's cut-outs, and a decoder needs little more memory than this."""
MAX_DICTIONARY = 22
"""The largest dictionary-size byte a file may have: 8 MiB, which bounds a decoder's memory
(the byte could otherwise ask for up to 4 GiB)."""
LZMA2_SETTINGS = {"preset": 6, "nice_len": 273, "depth": 4, "lc": 1, "pb": 0}
"""The encoder's LZMA2 options: matches as long as LZMA2 has (``nice_len``), looked for in only
4 places (``depth``), and a literal's context its neighbour's top bit (``lc=1``, ``pb=0``: an
alpha plane is mostly runs of 0 and 255). On the 24 Kodak cut-outs of
``benchmarks/transparency.py`` that is 4% more than ``xz -6e`` takes for the ellipses and 2%
less for the ragged blobs, in under half its time; on 6,000 x 4,000 cut-outs, 6% and 1% more in
a third of its time (2 and 5 s, on 2 cores that were busy with other work)."""


def dictionary_size(byte: int) -> int:
    """The dictionary size an LZMA2 dictionary-size byte stands for (0 to 39: 4 KiB to 3 GiB)."""
    return (2 | (byte & 1)) << (byte // 2 + 11)


def find(tags: Iterable[bytes]) -> bytes | None:
    """The alpha section among a file's section tags, or None when the image is opaque."""
    return next((t for t in tags if t in TAGS), None)


def compress(alpha: np.ndarray) -> tuple[bytes, bytes]:
    """The section tag and payload for an alpha plane (uint8, height x width): the smaller."""
    raw = np.ascontiguousarray(alpha, dtype=np.uint8).tobytes()
    best = (ZLIB, zlib.compress(raw, 9))
    if lzma is not None:
        filters = [{"id": lzma.FILTER_LZMA2, "dict_size": dictionary_size(DICTIONARY), **LZMA2_SETTINGS}]
        packed = bytes([DICTIONARY]) + lzma.compress(raw, format=lzma.FORMAT_RAW, filters=filters)
        if len(packed) < len(best[1]):
            best = (LZMA2, packed)
    return best


def decompress(tag: bytes, payload: bytes, width: int, height: int) -> np.ndarray:
    """The alpha plane from its section: exactly ``width x height`` bytes, never more read out."""
    size = width * height
    if tag == ZLIB:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, size)
            if not inflater.eof and len(raw) == size:
                # The image's bytes are out; the stream must end here, with nothing more in it.
                raw += inflater.decompress(inflater.unconsumed_tail, 1)
        except zlib.error as exc:
            raise FormatError(f"the alpha section is corrupt ({exc})") from None
        ended, after = inflater.eof, inflater.unused_data
    elif tag == LZMA2:
        if lzma is None:
            raise FormatError(
                "the file's alpha plane is LZMA2-compressed (an ALPL section) and this Python has no lzma module: "
                "use a Python built with liblzma (python.org's, Debian's and conda's are)"
            )
        if not payload:
            raise FormatError("the alpha section is empty")
        if payload[0] > MAX_DICTIONARY:
            shown = f"{dictionary_size(payload[0]) >> 20:,} MiB" if payload[0] < 40 else f"byte {payload[0]}, no size"
            raise FormatError(
                f"the alpha section's LZMA2 dictionary ({shown}) is larger than the format allows "
                f"({dictionary_size(MAX_DICTIONARY) >> 20} MiB)"
            )
        filters = [{"id": lzma.FILTER_LZMA2, "dict_size": dictionary_size(payload[0])}]
        unpacker = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=filters)
        try:
            raw = unpacker.decompress(memoryview(payload)[1:], size)
            if not unpacker.eof and len(raw) == size:
                # The image's bytes are out; the stream must end here, with nothing more in it.
                raw += unpacker.decompress(b"", 1)
        except lzma.LZMAError as exc:
            raise FormatError(f"the alpha section is corrupt ({exc})") from None
        ended, after = unpacker.eof, unpacker.unused_data
    else:
        raise FormatError(f"{tag!r} is no alpha section")
    if len(raw) > size:
        raise FormatError(f"the alpha section holds more than the image's {width}x{height} bytes")
    if not ended:
        raise FormatError(f"the alpha section's stream is cut short: it has no end ({len(raw):,} of the image's "
                          f"{width}x{height} bytes out)")
    if len(raw) < size:
        raise FormatError(f"the alpha section holds {len(raw):,} bytes, not the image's {width}x{height}")
    if after:
        raise FormatError(f"the alpha section has {len(after):,} byte{'' if len(after) == 1 else 's'} after the end "
                          "of its stream")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
