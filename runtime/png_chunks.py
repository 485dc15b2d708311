"""A PNG's chunks, read before Pillow opens it: its text chunks and ICC profile that inflate past
what Pillow reads (``PngImagePlugin.MAX_TEXT_CHUNK``), taken out so that the rest opens
(:func:`without_text`), with zlib bombs bounded."""

from __future__ import annotations

import zlib

from PIL import PngImagePlugin

from . import text as text_section

TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
LARGEST_PNG_PROFILE = 64 * 2**20
"""The most bytes a PNG's ICC profile (``iCCP``) is inflated to where Pillow reads none past
``PngImagePlugin.MAX_TEXT_CHUNK`` (1 MiB; the profiles of printers and scanners that hold
large lookup tables take a few)."""


def without_text(data: bytes, everything: bool) -> tuple[bytes, list[str], bytes | None]:
    """A PNG's bytes without its text chunks that inflate past Pillow's ``MAX_TEXT_CHUNK`` (with
    ``everything``, without any but the XMP packet's) and without an ICC profile that does; the
    keywords of the text left out, and that profile, inflated (``b""`` where it is damaged or
    inflates past ``LARGEST_PNG_PROFILE``; None for none taken out). The bytes as they are, no
    keyword and no profile for anything that is not a PNG's chunk list."""
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        return data, [], None
    kept, dropped, at = [signature], [], len(signature)
    profile = None
    while at + 12 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, end = data[at + 4 : at + 8], at + 12 + length
        if end > len(data):
            break
        if kind in TEXT_CHUNKS:
            keyword, _, body = data[at + 8 : end - 4].partition(b"\0")
            name = keyword.decode("latin-1")
            if inflates_past(kind, body, PngImagePlugin.MAX_TEXT_CHUNK) or (
                    everything and name != text_section.XMP_KEYWORD):
                dropped.append(name)
                at = end
                continue
        elif kind == b"iCCP" and profile is None:
            compressed = data[at + 8 : end - 4].partition(b"\0")[2][1:]  # after the name and the method
            if inflated(compressed, PngImagePlugin.MAX_TEXT_CHUNK) is None:
                profile = inflated(compressed, LARGEST_PNG_PROFILE) or b""
                at = end
                continue
        kept.append(data[at:end])
        at = end
    kept.append(data[at:])
    return b"".join(kept), dropped, profile


def inflated(compressed: bytes, limit: int) -> bytes | None:
    """zlib data inflated, if it inflates to at most ``limit`` bytes; None past that, and
    ``b""`` for data that is not zlib's."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(compressed, limit)
        if inflater.unconsumed_tail or (len(out) == limit and inflater.decompress(b"", 1)):
            return None
        return out if inflater.eof else b""
    except zlib.error:
        return b""


def inflates_past(kind: bytes, body: bytes, limit: int) -> bool:
    """Whether a text chunk's text (after its keyword) inflates past ``limit`` bytes."""
    if kind == b"zTXt":
        compressed = body[1:]  # after the compression method
    elif kind == b"iTXt" and body[:1] == b"\1":  # compressed
        compressed = body[2:].split(b"\0", 2)[-1]  # after the flag, the method, the language and translated keyword
    else:
        return False
    inflater = zlib.decompressobj()
    try:
        inflater.decompress(compressed, limit)
    except zlib.error:
        return False
    return bool(inflater.unconsumed_tail)
