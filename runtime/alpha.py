"""The alpha plane's section: lossless, ``width x height`` bytes row by row, compressed two ways.

``ALPH`` holds a zlib stream and ``ALPX`` an .xz stream (LZMA2). The encoder writes whichever
is smaller: on cut-outs of the Kodak photos LZMA2 takes about half of zlib's bytes for a smooth
outline and four fifths for a ragged one (``benchmarks/transparency.py``), while zlib wins on
the smallest images, where the .xz container's 60 bytes weigh most. Both are Python's own
modules; a Python built without ``lzma`` writes ``ALPH`` alone and names the module when asked
to read ``ALPX``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

from .errors import FormatError

try:
    import lzma
except ImportError:  # a Python built without liblzma (pyenv without its headers, say)
    lzma = None  # type: ignore[assignment]

ZLIB = b"ALPH"
XZ = b"ALPX"
TAGS = (ZLIB, XZ)
"""The alpha sections; a file holds at most one of them."""

XZ_SETTINGS = {"preset": 6, "dict_size": 1 << 20, "nice_len": 273, "depth": 4, "lc": 1, "pb": 0}
"""The encoder's LZMA2 options. A 1 MiB dictionary: no larger one gave a smaller file on the
benchmark's cut-outs, and a decoder needs little more memory than this. Matches as long as
LZMA2 has (``nice_len``), looked for in only 4 places (``depth``), and a literal's context its
neighbour's top bit (``lc=1``, ``pb=0``: an alpha plane is mostly runs of 0 and 255). On the 24
Kodak cut-outs of ``benchmarks/transparency.py`` that is 4% more than ``xz -6e`` takes for the
ellipses and 2% less for the ragged blobs, in under half its time; on 6,000 x 4,000 cut-outs, 6%
and 1% more in a third of its time (2 and 5 s, on 2 cores that were busy with other work)."""
XZ_MEMORY_LIMIT = 64 << 20
"""A decoder refuses an ``ALPX`` stream that needs more memory than this (liblzma's count):
a crafted header would otherwise ask for a dictionary of up to 1.5 GiB."""


def find(tags: Iterable[bytes]) -> bytes | None:
    """The alpha section among a file's section tags, or None when the image is opaque."""
    return next((t for t in tags if t in TAGS), None)


def compress(alpha: np.ndarray) -> tuple[bytes, bytes]:
    """The section tag and payload for an alpha plane (uint8, height x width): the smaller."""
    raw = np.ascontiguousarray(alpha, dtype=np.uint8).tobytes()
    best = (ZLIB, zlib.compress(raw, 9))
    if lzma is not None:
        filters = [{"id": lzma.FILTER_LZMA2, **XZ_SETTINGS}]
        packed = lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters)
        if len(packed) < len(best[1]):
            best = (XZ, packed)
    return best


def decompress(tag: bytes, payload: bytes, width: int, height: int) -> np.ndarray:
    """The alpha plane from its section: exactly ``width x height`` bytes, never more read out."""
    size = width * height
    if tag == ZLIB:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, size)
        except zlib.error as exc:
            raise FormatError(f"the alpha section is corrupt ({exc})") from None
        whole = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    elif tag == XZ:
        if lzma is None:
            raise FormatError(
                "the file's alpha plane is LZMA-compressed (an ALPX section) and this Python has no lzma module: "
                "use a Python built with liblzma (python.org's, Debian's and conda's are)"
            )
        unpacker = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMORY_LIMIT)
        try:
            raw = unpacker.decompress(payload, size)
            if not unpacker.eof and len(raw) == size:
                # The image's bytes are out; the stream must end here, with nothing more in it.
                raw += unpacker.decompress(b"", 1)
        except lzma.LZMAError as exc:
            raise FormatError(f"the alpha section is corrupt ({exc})") from None
        whole = unpacker.eof and not unpacker.unused_data
    else:
        raise FormatError(f"{tag!r} is no alpha section")
    if len(raw) != size or not whole:
        raise FormatError(f"the alpha section does not hold exactly {width}x{height} bytes")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
