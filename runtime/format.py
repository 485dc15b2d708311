"""The ``.nic`` container: a fixed header, a section table, a CRC-32, then the payloads.

This module is the only code that reads or writes the container; ``FORMAT.md``
describes it byte by byte. All integers are little-endian::

    offset  size  field
    0       4     magic  89 4E 49 43  ("\\x89NIC")
    4       1     u8   format version (1)
    5       1     u8   flags (bit 0: grayscale source; bit 1, with bit 0: returned as RGB; bit 2: padded to the
                           latent's stride; any other bit is refused)
    6       1     u8   L, length of the model id in bytes (1..64)
    7       L     model id, UTF-8
    7+L     8     model hash (first 8 bytes of the model's content hash)
    15+L    4     u32  width in pixels (1..2**20)
    19+L    4     u32  height in pixels (1..2**20)
    23+L    4     f32  quality (1..100 for a variable-rate model; 0 for a single-rate one)
    27+L    1     u8   S, the number of sections
    28+L    8*S   S times: 4-byte tag, u32 payload length
    28+L+8S 4     u32  CRC-32 (zlib's) of every byte of the file except these four
    32+L+8S ...   the payloads, in table order, filling the rest of the file exactly

Version 1 files start with two sections, ``ZSYM`` (the hyper-latent's rANS
stream) then ``YSYM`` (the latent's), optionally followed by the restoration filter
(``REST``), the alpha plane (``ALPH`` or ``ALPL``), ``ICCP``, ``EXIF``, ``XMP ``, ``TEXT`` and ``PHYS`` (each at most once, in that
order).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import FormatError, LimitError, ModelMismatchError, PixelLimitError

MAGIC = b"\x89NIC"
FORMAT_VERSION = 1
MAX_MODEL_ID_BYTES = 64
MAX_SIDE = 1 << 20
DEFAULT_MAX_PIXELS = 89_478_485
"""The pixel limit the runtime applies by default: Pillow's decompression-bomb threshold
(``Image.MAX_IMAGE_PIXELS``). With tiled transforms a 24-megapixel image peaks near 1.06 GiB
to encode and 1.18 GiB to decode at the default tiles, 0.69 and 0.50 GiB at tiles of 256
(``benchmarks/large_image.py``, the shipped vr-5f)."""
MAX_FILE_BYTES = 1 << 30
"""The largest file nicodec reads (1 GiB, as from a stream: ``nicodec.files.MAX_STREAM_BYTES``),
judged from the lengths its header declares, and a path's from its size, before the rest is
read. No image within the pixel limit makes one near it; a crafted header (a sparse file with a
1.5 GiB "profile") cost twice its length in memory to ``nicodec info``, which reads no pixels."""
HYPERLATENT, LATENT = b"ZSYM", b"YSYM"
"""The tags of the two rANS streams: the hyper-latent's symbols and the latent's."""
RESTORATION = b"REST"
"""The restoration filter's section (``nicodec.restoration``)."""
ALPHA_ZLIB, ALPHA_LZMA2 = b"ALPH", b"ALPL"
"""The alpha plane's sections, by compression (``nicodec.alpha``)."""
ICC_PROFILE, EXIF, XMP, TEXT, RESOLUTION = b"ICCP", b"EXIF", b"XMP ", b"TEXT", b"PHYS"
"""The metadata's sections: the ICC colour profile, the EXIF data, the XMP packet (the tag ends
in a space, as WebP's chunk does), text metadata (``nicodec.text``) and the resolution
(``nicodec.resolution``)."""
SECTIONS_V1 = (HYPERLATENT, LATENT)
"""The sections every version-1 file starts with, in this order."""
OPTIONAL_SECTIONS = ((RESTORATION,), (ALPHA_ZLIB, ALPHA_LZMA2), (ICC_PROFILE,), (EXIF,), (XMP,), (TEXT,), (RESOLUTION,))
"""Sections that may follow, in this order and at most one from each group: the restoration
filter the encoder fitted to the picture (``nicodec.restoration``), the alpha plane
(lossless; zlib- or LZMA2-compressed, ``nicodec.alpha``), the ICC colour profile, the EXIF
data, the XMP packet (the tag ends in a space, as WebP's chunk does), text metadata
(keyword and text pairs, zlib-compressed, ``nicodec.text``) and the resolution (the pixel
density, ``nicodec.resolution``)."""
METADATA_SECTIONS = (ICC_PROFILE, EXIF, XMP, TEXT, RESOLUTION)
"""The optional sections that hold the source's metadata, which ``strip`` leaves out."""


def metadata_bytes(data: bytes) -> int:
    """How many bytes of a ``.nic`` file its metadata sections (:data:`METADATA_SECTIONS`) take,
    their section-table entries included: what ``strip`` would save. From the section table
    alone (a file the encoder just made: no CRC to check)."""
    _, table, _ = read_header(data)
    return sum(length + SECTION_ENTRY.size for tag, length in table if tag in METADATA_SECTIONS)


# The header's pieces (public: the Pillow plugin reads a header piece by piece).
PREFIX = struct.Struct("<4sBBB")  # magic, version, flags, id length

FLAG_GRAYSCALE = 0x01
"""The source image was grayscale: decoders return one channel (the luma of the decoded RGB)."""
FLAG_GRAY_AS_RGB = 0x02
"""Beside ``FLAG_GRAYSCALE`` only: the source was a colour image whose three channels were equal
everywhere (a black-and-white photo kept as RGB); decoders return the luma in three equal channels."""
FLAG_FINE_PADDING = 0x04
"""The image is padded to multiples of the latent's stride (a quarter of the model's
``downsampling``: 16 pixels), not of the downsampling itself (64): the latent has no rows or
columns that only code padding. A decoder honours it whatever the size (where both paddings
agree it changes nothing); nicodec's encoder sets it only where it changes the padded size."""
KNOWN_FLAGS = FLAG_GRAYSCALE | FLAG_GRAY_AS_RGB | FLAG_FINE_PADDING


def padding(flags: int, downsampling: int) -> int:
    """The multiple each side of a file's image is padded to: a quarter of ``downsampling``
    (the latent's stride) with ``FLAG_FINE_PADDING``, ``downsampling`` without."""
    return downsampling // 4 if flags & FLAG_FINE_PADDING else downsampling


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """``height`` and ``width`` each rounded up to a multiple of ``multiple``."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def flags_problem(flags: int) -> str | None:
    """What is wrong with a header's flags byte, or None."""
    if flags & ~KNOWN_FLAGS:
        return f"unknown flags 0x{flags:02x} (version {FORMAT_VERSION} defines 0x{KNOWN_FLAGS:02x})"
    if flags & FLAG_GRAY_AS_RGB and not flags & FLAG_GRAYSCALE:
        return f"flags 0x{flags:02x}: gray as RGB (0x02) without grayscale (0x01)"
    return None


def decoded_mode(flags: int, alpha: bool) -> str:
    """The Pillow mode a file of these flags decodes to: L or LA for a grayscale source, else RGB or RGBA."""
    gray = flags & FLAG_GRAYSCALE and not flags & FLAG_GRAY_AS_RGB
    return ("L" if gray else "RGB") + ("A" if alpha else "")


FIELDS = struct.Struct("<8sIIfB")  # hash, width, height, quality, section count
SECTION_ENTRY = struct.Struct("<4sI")
CRC = struct.Struct("<I")
MAX_HEADER_BYTES = PREFIX.size + MAX_MODEL_ID_BYTES + FIELDS.size + 255 * SECTION_ENTRY.size + CRC.size
"""The longest header a file can have: reading this many bytes is always enough for :func:`read_header`."""


@dataclass(frozen=True)
class Header:
    """What a ``.nic`` file says about itself before its payloads.

    Attributes:
        version: the format version.
        model_id: the id of the model that made the file.
        model_hash: 8 bytes of that model's content hash.
        width, height: the image size in pixels.
        quality: the quality the encoder used (1..100), or 0 from a single-rate model.
        flags: ``FLAG_GRAYSCALE`` (with ``FLAG_GRAY_AS_RGB`` or not), ``FLAG_FINE_PADDING``, or 0;
            other bits are reserved.
    """

    version: int
    model_id: str
    model_hash: bytes
    width: int
    height: int
    quality: float
    flags: int = 0

    def validate(self) -> None:
        """Raise :class:`FormatError` naming the first field that cannot be written or read."""
        if self.version != FORMAT_VERSION:
            raise FormatError(
                f"unsupported format version {self.version} (this nicodec reads version {FORMAT_VERSION})"
            )
        problem = flags_problem(self.flags)
        if problem:
            raise FormatError(problem)
        problem = model_id_problem(self.model_id)
        if problem:
            raise FormatError(problem)
        if len(self.model_hash) != 8:
            raise FormatError(f"model hash must be 8 bytes, got {len(self.model_hash)}")
        for name, side in (("width", self.width), ("height", self.height)):
            if not 1 <= side <= MAX_SIDE:
                raise FormatError(f"{name} {side} is outside 1..{MAX_SIDE}")
        if not math.isfinite(self.quality):
            raise FormatError(f"quality {self.quality} is not a finite number")


def model_id_problem(model_id) -> str | None:
    """Why ``model_id`` cannot name a model, or None: it must be 1 to ``MAX_MODEL_ID_BYTES``
    bytes of UTF-8, all of it printable (no control, format or separator character but the
    space), since tools print it: an id from a hostile file could otherwise drive the terminal."""
    if not isinstance(model_id, str):
        return f"the model id must be a string, not {type(model_id).__name__}"
    try:
        size = len(model_id.encode("utf-8"))
    except UnicodeEncodeError:
        return f"the model id {model_id!r} is not valid UTF-8"
    if not 1 <= size <= MAX_MODEL_ID_BYTES:
        return f"the model id must be 1 to {MAX_MODEL_ID_BYTES} bytes of UTF-8, not {size}"
    if not model_id.isprintable():
        return f"the model id {model_id!r} holds a character that is not printable"
    return None


def quality_value(quality: float) -> float:
    """A header's float32 quality as the shortest decimal that is the same float32
    (37.3, not 37.29999923706055): what people are shown, and what reproduces the file."""
    import numpy as np

    return float(str(np.float32(quality)))


def pack(header: Header, sections: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> bytes:
    """Serialise a header and its sections into a complete file.

    Raises:
        FormatError: a header field is out of range, or the sections are not the
            ones this version defines.
    """
    header.validate()
    items = list(sections.items() if isinstance(sections, Mapping) else sections)
    _check_tags([tag for tag, _ in items])
    id_bytes = header.model_id.encode("utf-8")
    head = bytearray()
    head += PREFIX.pack(MAGIC, header.version, header.flags, len(id_bytes))
    head += id_bytes
    head += FIELDS.pack(header.model_hash, header.width, header.height, header.quality, len(items))
    for tag, payload in items:
        if len(payload) > 0xFFFFFFFF:
            raise FormatError(f"section {tag!r} is too long for a u32 length")
        head += SECTION_ENTRY.pack(tag, len(payload))
    crc = zlib.crc32(head)
    for _, payload in items:
        crc = zlib.crc32(payload, crc)
    return bytes(head) + CRC.pack(crc) + b"".join(bytes(p) for _, p in items)


def _pixels(count: int) -> str:
    """``1 pixel``, ``1,024 pixels``."""
    return f"{count:,} pixel" + ("" if count == 1 else "s")


def check_pixels(width: int, height: int, max_pixels: int, multiple: int = 1, has: str = "the image has") -> None:
    """Refuse an image whose pixels, or pixels once padded to multiples of ``multiple`` (what
    the networks work on, up to 16 or 64 times as many for a thin image), exceed ``max_pixels``;
    ``has`` leads the message ("the file claims" for a ``.nic`` file's header, as :func:`unpack`
    words it).

    Raises:
        PixelLimitError: with both counts when the padding is what exceeds the limit.
    """
    padded_height, padded_width = padded_size(height, width, multiple)
    if width * height > max_pixels:
        raise PixelLimitError(
            f"{has} {_pixels(width * height)} ({width}x{height}), more than the limit of {max_pixels:,}"
        )
    if padded_width * padded_height > max_pixels:
        raise PixelLimitError(
            f"{has} {_pixels(width * height)} ({width}x{height}), but the networks work on it padded to "
            f"multiples of {multiple}, {padded_width}x{padded_height} = {padded_width * padded_height:,} pixels, "
            f"more than the limit of {max_pixels:,}, which counts the padded size"
        )


def read_header(data: bytes, *, max_pixels: int | None = None) -> tuple[Header, list[tuple[bytes, int]], int]:
    """Parse the header and section table without checking the CRC.

    Returns:
        ``(header, [(tag, length), ...], payload_offset)``.

    Raises:
        FormatError: the bytes are not a version-1 nicodec header.
        PixelLimitError: the image is larger than ``max_pixels`` (a ``LimitError``).
        LimitError: the header declares a file of more than :data:`MAX_FILE_BYTES`.
    """
    data = memoryview(data)
    if not len(data):
        raise FormatError("empty (0 bytes), not a nicodec file")
    if len(data) < len(MAGIC) or bytes(data[:4]) != MAGIC:
        raise FormatError("not a nicodec file (wrong magic bytes)")
    need = PREFIX.size
    _need(data, need, "header")
    _, version, flags, id_len = PREFIX.unpack_from(data, 0)
    if version != FORMAT_VERSION:
        if is_newer_version(version):
            raise FormatError(f"format version {version}, newer than this nicodec reads (version {FORMAT_VERSION}): "
                              "a later release of nicodec may decode it")
        raise FormatError(f"unsupported format version {version} (this nicodec reads version {FORMAT_VERSION})")
    problem = flags_problem(flags)
    if problem:
        raise FormatError(problem)
    if not 1 <= id_len <= MAX_MODEL_ID_BYTES:
        raise FormatError(f"model id length {id_len} is outside 1..{MAX_MODEL_ID_BYTES}")
    _need(data, need + id_len + FIELDS.size, "header")
    try:
        model_id = bytes(data[need : need + id_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("the model id is not valid UTF-8") from None
    pos = need + id_len
    model_hash, width, height, quality, count = FIELDS.unpack_from(data, pos)
    pos += FIELDS.size
    header = Header(FORMAT_VERSION, model_id, model_hash, width, height, quality, flags)
    header.validate()
    if max_pixels is not None and width * height > max_pixels:
        raise PixelLimitError(
            f"the file claims {_pixels(width * height)} ({width}x{height}), more than the limit of {max_pixels:,}"
        )
    _need(data, pos + count * SECTION_ENTRY.size + CRC.size, "section table")
    table = [SECTION_ENTRY.unpack_from(data, pos + i * SECTION_ENTRY.size) for i in range(count)]
    _check_tags([tag for tag, _ in table])
    pos += count * SECTION_ENTRY.size + CRC.size
    size = pos + sum(length for _, length in table)
    if size > MAX_FILE_BYTES:
        raise LimitError(f"the file's header declares {size:,} bytes, more than the {MAX_FILE_BYTES:,} nicodec reads")
    return header, table, pos


def unpack(data: bytes, *, max_pixels: int | None = None) -> tuple[Header, dict[bytes, bytes]]:
    """Parse and check a complete file.

    Returns:
        ``(header, {tag: payload})``.

    Raises:
        FormatError: wrong magic, unknown version, inconsistent lengths or a failed
            CRC; the message names which.
        PixelLimitError: the image is larger than ``max_pixels`` (a ``LimitError``).
        LimitError: the header declares a file of more than :data:`MAX_FILE_BYTES`.
    """
    data = bytes(data)
    header, table, pos = read_header(data, max_pixels=max_pixels)
    total = sum(length for _, length in table)
    if pos + total != len(data):
        raise FormatError(
            f"section lengths add up to {total} bytes but {len(data) - pos} follow the header "
            f"(truncated or padded file)"
        )
    crc_pos = pos - CRC.size
    (stored,) = CRC.unpack_from(data, crc_pos)
    actual = zlib.crc32(data[crc_pos + CRC.size :], zlib.crc32(data[:crc_pos]))
    if stored != actual:
        raise FormatError(f"checksum mismatch (CRC-32 stored {stored:08x}, computed {actual:08x}): the file is corrupt")
    sections = {}
    for tag, length in table:
        sections[tag] = data[pos : pos + length]
        pos += length
    return header, sections


NEWER_VERSIONS = FORMAT_VERSION + 8
"""The highest format version taken for a later release's rather than for a damaged byte."""


def is_newer_version(version: int) -> bool:
    """Whether a file's format version is most likely a later release's (not damage)."""
    return FORMAT_VERSION < version <= NEWER_VERSIONS


def check_model(header: Header, model_id: str, model_hash: bytes, also: Iterable[tuple[str, bytes]] = ()) -> None:
    """Raise :class:`ModelMismatchError` unless the file was made by this model, or by one
    of the models in ``also`` ((model id, 8-byte hash) pairs) whose files it decodes."""
    also = list(also)
    if (header.model_id, header.model_hash) not in [(model_id, model_hash), *also]:
        others = ", ".join(f"{i!r} (hash {h.hex()})" for i, h in also)
        raise ModelMismatchError(
            f"the file was made by model {header.model_id!r} (hash {header.model_hash.hex()}), "
            f"but the loaded model is {model_id!r} (hash {model_hash.hex()})"
            + (f", which decodes the files of {others} besides its own" if others else "")
        )


def _need(data: memoryview, size: int, what: str) -> None:
    if len(data) < size:
        raise FormatError(f"truncated file: the {what} needs {size} bytes, the file has {len(data)}")


def _check_tags(tags: list[bytes]) -> None:
    tags = [bytes(t) for t in tags]
    head, rest = tuple(tags[: len(SECTIONS_V1)]), tags[len(SECTIONS_V1) :]
    order = [next((i for i, group in enumerate(OPTIONAL_SECTIONS) if t in group), -1) for t in rest]
    if head != SECTIONS_V1 or -1 in order or order != sorted(set(order)):
        shown = ", ".join(repr(t) for t in tags) or "none"
        raise FormatError(
            f"version {FORMAT_VERSION} files hold sections ZSYM then YSYM, then optionally REST, ALPH or ALPL, "
            f"ICCP, EXIF, 'XMP ', TEXT and PHYS in that order; found {shown}"
        )
