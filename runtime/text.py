"""The ``TEXT`` section: an image's text metadata, as keyword and text pairs.

PNG keeps free text in ``tEXt``, ``zTXt`` and ``iTXt`` chunks, each under a keyword: Author,
Copyright, Description, Software, and the prompts and settings that image generators write
(``parameters``, ``prompt``, ``workflow``). JPEG and GIF keep a comment. Each becomes one entry
of this section: a PNG chunk under its keyword, a JPEG's or GIF's comment under ``Comment``
(PNG's own keyword for one). The chunks that hold what other sections keep (:data:`RESERVED`:
the XMP packet, and the EXIF data ImageMagick writes in hexadecimal as ``Raw profile type
exif``, which Pillow reads as the image's EXIF) are not repeated here, and are not written back
from here either: EXIF whose orientation the encoder applied to the pixels would turn them a
second time. (ImageMagick's other raw profiles, ``APP1`` and ``iptc`` among them, Pillow does
not read: they are kept as text, as they came.)

The payload is a zlib stream (RFC 1950) and nothing after it; the stream holds at most
:data:`MAX_BYTES` bytes, the entries one after another, each:

- the keyword's length in one byte (1 to 79, PNG's bounds) and the keyword, in Latin-1 (as
  PNG's are), with no zero byte;
- the text's length in four bytes (u32, little-endian, as the container's integers are) and the
  text, in UTF-8.

A section has at least one entry and at most :data:`MAX_ENTRIES`, and no keyword twice.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

from . import format as nicformat
from .errors import FormatError

TAG = nicformat.TEXT
MAX_KEYWORD = 79
"""The longest keyword, in bytes (PNG's limit)."""
MAX_BYTES = 16 << 20
"""The most the section's zlib stream may inflate to: 16 MiB, which bounds a decoder's memory
(a few bytes of zlib could otherwise ask for gigabytes)."""
MAX_ENTRIES = 1000
"""The most entries a section holds: libpng's default for the ancillary chunks it keeps of one
PNG (``PNG_USER_CHUNK_CACHE_MAX``), so no image that libpng reads whole is refused; without it,
16 MiB of entries of a few bytes each would hold millions, each costing a decoder a dictionary
entry and, written back as PNG, a chunk."""
_LENGTH = struct.Struct("<I")
XMP_KEYWORD = "XML:com.adobe.xmp"
"""The keyword of the PNG text chunk that holds an XMP packet."""
RESERVED = frozenset({XMP_KEYWORD, "Raw profile type exif"})
"""Keywords of PNG text chunks whose data other sections keep (``XMP ``, ``EXIF``): the encoder
leaves them out, and ``nicodec decode`` does not write them from a ``TEXT`` section."""


COMMENT_LIMIT = 65_533
"""The longest comment nicodec writes as one, in bytes of UTF-8: what one JPEG COM segment holds."""


def comment(entries: dict[str, str]) -> bytes | None:
    """The ``Comment`` entry as a JPEG's or GIF's comment (UTF-8 bytes), or None when there is
    none or it is longer than :data:`COMMENT_LIMIT`."""
    raw = entries.get("Comment", "").encode("utf-8")
    return raw if 0 < len(raw) <= COMMENT_LIMIT else None


def attach(image, entries: dict[str, str] | None) -> None:
    """Give a decoded PIL image its text as Pillow's readers give theirs: ``image.text`` (a dict,
    empty for none, as PNG's), and a ``Comment`` as ``info["comment"]`` (JPEG's and GIF's)."""
    image.text = dict(entries or {})
    raw = comment(image.text)
    if raw is not None:
        image.info["comment"] = raw


def carry(source, target) -> None:
    """Give ``target``, a copy of the PIL image ``source``, the text Pillow's copies leave behind
    (``source.text``)."""
    chunks = getattr(source, "text", None)
    if isinstance(chunks, dict) and chunks:
        target.text = dict(chunks)


def usable_keyword(keyword: str) -> bool:
    """Whether ``keyword`` can head an entry: 1 to 79 Latin-1 characters, none of them NUL."""
    try:
        raw = keyword.encode("latin-1")
    except (UnicodeEncodeError, AttributeError):
        return False
    return 0 < len(raw) <= MAX_KEYWORD and b"\0" not in raw


def pack(entries: Mapping[str, str]) -> bytes:
    """The section's payload for ``entries`` (keyword to text, in their order).

    Raises:
        ValueError: no entries or more than :data:`MAX_ENTRIES`, a keyword :func:`usable_keyword`
            refuses, a text that is not valid Unicode, or more than :data:`MAX_BYTES` in all.
        TypeError: a text that is not a string.
    """
    if not entries:
        raise ValueError("a TEXT section holds at least one entry")
    if len(entries) > MAX_ENTRIES:
        raise ValueError(f"{len(entries):,} text entries are more than a TEXT section holds ({MAX_ENTRIES:,})")
    parts = []
    for keyword, text in entries.items():
        if not usable_keyword(keyword):
            raise ValueError(f"{keyword!r} is no keyword a TEXT section holds (1 to 79 Latin-1 characters, no NUL)")
        if not isinstance(text, str):
            raise TypeError(f"the text under {keyword!r} is of type {type(text).__name__}, not a string")
        try:
            raw_text = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, which UTF-8 cannot hold
            raise ValueError(f"the text under {keyword!r} is not valid Unicode") from None
        raw_keyword = keyword.encode("latin-1")
        parts += [bytes([len(raw_keyword)]), raw_keyword, _LENGTH.pack(len(raw_text)), raw_text]
    raw = b"".join(parts)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"the text entries take {len(raw):,} bytes, more than a TEXT section holds ({MAX_BYTES:,})")
    return zlib.compress(raw, 9)


class TooManyEntries(FormatError):
    """A ``TEXT`` section of more than :data:`MAX_ENTRIES` entries, which nicodec builds before
    2026-12-03 wrote: its text is left out, with a warning, and the picture decoded."""


def unpack(payload: bytes) -> dict[str, str]:
    """The entries of a ``TEXT`` section, in their order.

    Raises:
        TooManyEntries: more than :data:`MAX_ENTRIES` entries (found at the first too many,
            before the rest is read).
        FormatError: the section breaks another rule of the module's docstring.
    """
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, MAX_BYTES)
        if not inflater.eof and len(raw) == MAX_BYTES:
            raw += inflater.decompress(inflater.unconsumed_tail, 1)  # the stream must end here
    except zlib.error as exc:
        raise FormatError(f"the TEXT section is corrupt ({exc})") from None
    if len(raw) > MAX_BYTES:
        raise FormatError(f"the TEXT section inflates to more than {MAX_BYTES:,} bytes")
    if not inflater.eof or inflater.unused_data:
        raise FormatError("the TEXT section's zlib stream " + ("is cut short" if not inflater.eof else
                                                               "has bytes after its end"))
    entries: dict[str, str] = {}
    at = 0
    while at < len(raw):
        size = raw[at]
        keyword = raw[at + 1 : at + 1 + size]
        if not 0 < size <= MAX_KEYWORD or len(keyword) < size or b"\0" in keyword:
            raise FormatError(f"the TEXT section's entry {len(entries) + 1} has no valid keyword")
        at += 1 + size
        if at + _LENGTH.size > len(raw):
            raise FormatError(f"the TEXT section's entry {len(entries) + 1} is cut short")
        (length,) = _LENGTH.unpack_from(raw, at)
        at += _LENGTH.size
        if at + length > len(raw):
            raise FormatError(f"the TEXT section's entry {len(entries) + 1} is cut short")
        name = keyword.decode("latin-1")
        if len(entries) == MAX_ENTRIES:
            raise TooManyEntries(f"the TEXT section holds more than {MAX_ENTRIES:,} entries")
        if name in entries:
            raise FormatError(f"the TEXT section holds the keyword {name!r} twice")
        try:
            entries[name] = raw[at : at + length].decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"the text under {name!r} in the TEXT section is not UTF-8") from None
        at += length
    if not entries:
        raise FormatError("the TEXT section holds no entry")
    return entries
