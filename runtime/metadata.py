"""The metadata nicodec keeps beside an image's pixels, and the orientation it applies to them.

A ``.nic`` file keeps an image's ICC profile, EXIF, XMP, text and pixel density (FORMAT.md's
optional sections). What is read here is what the decoded image gets back: the EXIF and XMP
without an orientation (the pixels are turned upright as they are read), a TIFF's own directory
cut to what a camera's EXIF holds, a profile only where it describes the pixels coded (RGB, or
gray for a grayscale image). What a file cannot keep and a user may miss is warned of.
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from . import resolution as resolution_section
from . import text as text_section
from .errors import DAMAGED
from .sessions import caller_outside

_SAID: ContextVar[set[str] | None] = ContextVar("nicodec_said", default=None)
"""The warnings given within :func:`said_once` in this thread (or task); None outside it."""


def image_warning(message: str) -> None:
    """Warn (a ``UserWarning``, at the caller's line outside nicodec) of what an image loses, or
    of what cannot be read as it is; within :func:`said_once`, a message already given is not
    given again."""
    said = _SAID.get()
    if said is not None:
        if message in said:
            return
        said.add(message)
    warnings.warn(message, UserWarning, stacklevel=caller_outside())


@contextmanager
def said_once(said: set[str] | None = None):
    """Each of :func:`image_warning`'s messages once within the block, or within every block given the same
    ``said`` (a rate search reads its image at every encode: one warning, not one an encode). Per
    thread, as contextvars are: a service's other threads warn as they would."""
    token = _SAID.set(set() if said is None else said)
    try:
        yield
    finally:
        _SAID.reset(token)


class Metadata(NamedTuple):
    """What :func:`kept` reads, as :class:`nicodec.images.Picture` holds it."""

    icc_profile: bytes | None
    exif: bytes | None
    xmp: bytes | None
    text: dict[str, str] | None
    resolution: resolution_section.Resolution | None


def kept(image: Image.Image, name: str, *, grayscale: bool, turned: bool,
         leave_out: frozenset[str] = frozenset()) -> Metadata:
    """The metadata of a loaded image, turned upright already, that a ``.nic`` file keeps.

    Args:
        image: the upright image whose pixels are coded.
        name: the image's name in warnings.
        grayscale: its pixels are coded as gray (a colour profile must then be a gray one).
        turned: Pillow turned a TIFF a quarter as it loaded it (:func:`tiff_turned`, asked
            before the load); its resolution follows.
        leave_out: the kinds of metadata (``nicodec.inputs.METADATA_KINDS``) the caller leaves
            out (``strip``): not read, and not warned of, but for what travels in another kind
            kept: a resolution left out is cut from the EXIF too (its ``XResolution``,
            ``YResolution`` and ``ResolutionUnit``, which decoders read as one), and ImageMagick's
            raw profiles of EXIF or XMP from the text (``Raw profile type APP1``, ``... xmp``).
    """
    icc = image.info.get("icc_profile") or None
    if not isinstance(icc, (bytes, bytearray)):
        icc = None  # not a profile (an application's own value in info)
    elif icc_space(icc) not in (None, b"GRAY" if grayscale else b"RGB "):
        # A CMYK (or Lab, ...) profile describes pixels that are RGB now: written back
        # onto the decoded image, it would be rejected or misapplied by colour-managed viewers.
        icc = None
    tags = _exif_copy(image, name, warn="exif" not in leave_out)  # its orientation is read either way
    turned = turned or tiff_turned(image)  # turned by Pillow as it loaded: its density follows
    if turned:
        _swap_resolution_tags(tags)
    orientation = tags.get(ExifTags.Base.Orientation) is not None  # 1, or one turn() could not apply
    own = 273 in tags or 324 in tags  # strips or tiles: a TIFF's own directory, not a camera's EXIF
    iptc = own and _IPTC_TAG in tags and _iptc_has_data(_raw_tag(tags[_IPTC_TAG]))
    _warn_unkept(image, name, icc is not None, iptc=iptc, leave_out=leave_out)  # the tag is cut below
    if own:
        for tag in set(tags) - _TIFF_KEPT:
            del tags[tag]
    for tag in _TIFF_LAYOUT:
        tags.pop(tag, None)
    tags.pop(ExifTags.Base.Orientation, None)  # the pixels are upright now
    if "dpi" in leave_out:
        for tag in _RESOLUTION_TAGS:
            tags.pop(tag, None)
    exif = None
    if len(tags) and "exif" not in leave_out:  # an EXIF of its orientation alone leaves none
        try:
            exif = tags.tobytes()
        except _EXIF_ERRORS:
            image_warning(f"{name}: its EXIF data is damaged and is not kept")
    text = None
    if "text" not in leave_out:
        text = read_text(image, name)
        carried = {kind for kind in ("exif", "xmp") if kind in leave_out}
        if text and carried:
            text = {key: value for key, value in text.items()
                    if not any(key == raw for kind in carried for raw in _RAW_PROFILES[kind])} or None
    return Metadata(None if "icc" in leave_out else icc, exif,
                    None if "xmp" in leave_out else _xmp(image.info, orientation), text,
                    None if "dpi" in leave_out else density_of(image, turned))


_RESOLUTION_TAGS = (ExifTags.Base.XResolution, ExifTags.Base.YResolution, ExifTags.Base.ResolutionUnit)
"""The EXIF's resolution, which decoders read as the picture's (Pillow's JPEG reader does)."""
_RAW_PROFILES = {"exif": ("Raw profile type APP1",), "xmp": ("Raw profile type xmp",)}
"""ImageMagick's text chunks that hold a kind of metadata (in hexadecimal), kept as text (its
``Raw profile type exif`` is read as the EXIF, and never kept as text)."""


def icc_space(icc: bytes) -> bytes | None:
    """An ICC profile's data colour space (``b"RGB "``, ``b"GRAY"``, ``b"CMYK"``, ...), from
    bytes 16 to 19 of its 128-byte header; None when it is too short to have one."""
    return bytes(icc[16:20]) if len(icc) >= 128 else None

_TIFF_LAYOUT = frozenset({
    256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339, 347, 530, 532,
    700,  # XMLPacket: kept as XMP
    34675,  # InterColorProfile: kept as the ICC profile
})
"""Tags that describe a TIFF's own pixel layout (sizes, compression, strips and tiles, samples,
colour map, YCbCr) or hold what other sections keep: left out of the EXIF kept, since the
decoded image is laid out anew (writers add their own)."""
_TIFF_KEPT = frozenset({
    270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 316, 318, 319, 33432, 34665, 34853,
    18246, 18249, 40091, 40092, 40093, 40094, 40095,  # Windows' rating and XP title, comment, author, ...
})
"""What a TIFF's own first directory (the EXIF Pillow gives for a TIFF) keeps: the tags a
camera's EXIF has there (description, make, model, resolution, software, date, artist,
copyright, the EXIF and GPS directories). The rest is the file's own (layout, Photoshop's layer
data and resources, which can be megabytes, page names)."""
# tiff:Orientation as an attribute (after white space, either quote, spaces around "=") or as an
# element: the forms XMP's RDF/XML allows, of which Pillow reads ="N" and >N<. A match starts at a
# run of white space's first character only: tried from each one, a packet of spaces (a 1 KB PNG
# holds a megabyte of them, compressed) took time as the square of its length, minutes.
_XMP_ORIENTATION = re.compile(
    rb"""(?<!\s)\s+tiff:Orientation\s*=\s*(?:"[^"<>]*"|'[^'<>]*')"""
    rb"|<tiff:Orientation\s*>[^<]*</tiff:Orientation\s*>|<tiff:Orientation\s*/>"
)
_TURNS = frozenset(range(2, 9))  # the EXIF orientations that turn or mirror the pixels
_QUARTER_TURNS = frozenset(range(5, 9))  # those that swap the picture's width and height
_TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
"""What each orientation asks of the stored picture to show it upright (as ``exif_transpose``)."""
_EXIF_ERRORS = (*DAMAGED, AttributeError, OverflowError)
"""What Pillow raises reading or writing damaged EXIF (a value of the wrong type or size, an
offset past the end, a count that does not fit)."""


def read_xmp(info: dict) -> bytes | None:
    """The XMP packet Pillow read: ``info["xmp"]`` (JPEG, PNG's iTXt, WebP, TIFF, AVIF), else a
    PNG text chunk by its key (``tEXt`` and ``zTXt`` are Latin-1, which gives their bytes back)."""
    xmp = info.get("xmp") or info.get(text_section.XMP_KEYWORD)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8" if isinstance(xmp, PngImagePlugin.iTXt) else "latin-1", "replace")
    if not isinstance(xmp, (bytes, bytearray)) or not xmp.strip(b"\0 \t\r\n"):
        return None
    return bytes(xmp)


def _xmp(info: dict, orientation: bool) -> bytes | None:
    """The XMP packet to keep; with ``orientation`` (the image had one, which the pixels follow
    now and whose EXIF tag is dropped), without any ``tiff:Orientation``, which would turn them
    again in viewers that read it. Without one, the packet is kept as it is: an orientation in a
    form Pillow does not read is neither applied nor removed, so that the picture looks as the
    source did, in Pillow and in viewers that read that form."""
    xmp = read_xmp(info)
    return _XMP_ORIENTATION.sub(b"", xmp) if xmp is not None and orientation else xmp


def read_text(img: Image.Image, name: str = "the image", *, warn: bool = True) -> dict[str, str] | None:
    """An image's text metadata, keyword to text: PNG's text chunks (Pillow's ``img.text``, which
    images decoded by nicodec have too) but those other sections keep (``nicodec.text.RESERVED``:
    XMP, EXIF), and a JPEG's or GIF's comment (``info["comment"]``, UTF-8 or else Latin-1, read
    only from images without ``text``) as ``Comment``; None for none. Entries that a ``TEXT``
    section cannot hold (a keyword that is not 1 to 79 Latin-1 characters, text that is not a
    string of Unicode) are left out, and none is kept where there are more than 1,000 entries or
    16 MiB in all, with a warning unless ``warn`` is false."""
    chunks = getattr(img, "text", None)
    entries = {k: v for k, v in chunks.items() if k not in text_section.RESERVED} if isinstance(chunks, dict) else {}
    # A comment in info only where the image has no text of its own (JPEG, GIF): nicodec's
    # decoded images have both, and their text, which the caller may have edited, rules.
    comment = img.info.get("comment") if not isinstance(chunks, dict) else None
    if isinstance(comment, (bytes, bytearray)):
        comment = comment_text(comment)
    if isinstance(comment, str) and comment and "Comment" not in entries:
        entries["Comment"] = comment
    unusable = [keyword for keyword, value in entries.items()
                if not (isinstance(keyword, str) and text_section.usable_keyword(keyword) and is_unicode(value))]
    for keyword in unusable:
        del entries[keyword]
    if unusable and warn:
        image_warning(f"{name}: its text {listed(unusable)} cannot be kept (a keyword is 1 to 79 Latin-1 "
                      "characters, the text Unicode)")
    if len(entries) > text_section.MAX_ENTRIES:
        if warn:
            image_warning(f"{name}: its text has {len(entries):,} entries, more than a .nic file holds "
                          f"({text_section.MAX_ENTRIES:,}); none of it is kept")
        return None
    size = sum(5 + len(k) + len(v.encode("utf-8")) for k, v in entries.items())
    if size > text_section.MAX_BYTES:
        if warn:
            image_warning(f"{name}: its text takes {size:,} bytes, more than a .nic file holds "
                          f"({text_section.MAX_BYTES:,}); none of it is kept")
        return None
    return entries or None


def comment_text(raw: bytes | bytearray) -> str:
    """A JPEG's or GIF's comment as text: UTF-8, or else Latin-1, without a closing NUL."""
    raw = bytes(raw).rstrip(b"\0")  # some writers end the comment with a NUL
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def is_unicode(value) -> bool:
    """Whether ``value`` is a string UTF-8 can hold (no lone surrogate)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_tag(value):
    """A TIFF tag's value as bytes where Pillow gives it as bytes or as a tuple of byte values;
    anything else as it is (which :func:`_iptc_has_data` counts as data)."""
    if isinstance(value, tuple) and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        return bytes(value)
    return value


def _iptc_has_data(block) -> bool:
    """Whether IPTC-IIM data (datasets: 0x1C, record, number, a 2-byte length or an extended
    one) holds anything beyond the envelope record (1) and the record version (2:00), which
    Photoshop writes on every save; data that does not parse counts as something."""
    if not isinstance(block, (bytes, bytearray)):
        return block is not None
    at = 0
    while at + 5 <= len(block):
        if block[at] != 0x1C:
            return True
        record, number, size = block[at + 1], block[at + 2], int.from_bytes(block[at + 3 : at + 5], "big")
        at += 5
        if size & 0x8000:  # extended: the low bits count the bytes of the length that follows
            count = size & 0x7FFF
            size, at = int.from_bytes(block[at : at + count], "big"), at + count
        if record != 1 and (record, number) != (2, 0):
            return True
        at += size
    return False


def listed(keywords) -> str:
    """``under 'a', 'b' and 3 more``: keywords for a warning, each cut to 40 characters."""
    shown = [repr(k if len(k) <= 40 else k[:40] + "...") for k in (str(k) for k in keywords[:6])]
    if len(keywords) > 6:
        return "under " + ", ".join(shown) + f" and {len(keywords) - 6} more"
    return f"under {shown[0]}" if len(shown) == 1 else "under " + ", ".join(shown[:-1]) + " and " + shown[-1]


_IPTC_RESOURCE = 0x0404
"""The Photoshop image resource (in a JPEG's APP13 segment) that holds IPTC-IIM data."""
_IPTC_TAG = 33723
"""A TIFF's IPTC-IIM tag."""


_SRGB_CHROMATICITY = (0.3127, 0.3290, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
"""sRGB's white point (D65) and red, green and blue primaries, as CIE x, y (IEC 61966-2-1), in
the order of PNG's cHRM chunk."""


def _warn_unkept(img: Image.Image, name: str, has_profile: bool, iptc: bool,
                 leave_out: frozenset[str] = frozenset()) -> None:
    """Warn of metadata a ``.nic`` file does not keep and a user may miss: IPTC data (captions,
    keywords, credits; most editors write the same fields into the XMP, which is kept), and a PNG's
    gamma and chromaticities without a colour profile or sRGB chunk (decoders show the picture as
    sRGB, which only a gamma near 1/2.2 and sRGB's primaries and white match). ``iptc``: a TIFF's
    own directory holds an IPTC tag. Nothing is said of IPTC data, nor of an Ultra HDR gain map
    named in the XMP, where the XMP is left out (``leave_out``), nor of the colour where the
    profile is: the caller chose to leave them."""
    resources = img.info.get("photoshop")
    if "xmp" not in leave_out and (iptc or (isinstance(resources, dict)
                                            and _iptc_has_data(resources.get(_IPTC_RESOURCE)))):
        image_warning(f"{name}: its IPTC data is not kept (editors mostly write the same fields into the XMP, "
                      "which is)")
    xmp = None if "xmp" in leave_out else read_xmp(img.info)
    if xmp is not None and b"hdrgm:Version" in xmp:
        # An Ultra HDR JPEG (Adobe's gain map): Pillow opens it as a plain JPEG, the gain map in
        # its MPF part left out.
        image_warning(f"{name}: its HDR gain map (Ultra HDR) is not kept: the picture coded is its standard "
                      "range rendition, whose XMP still names the gain map")
    if "icc" in leave_out:
        return
    gamma = img.info.get("gamma")
    if (isinstance(gamma, (int, float)) and not has_profile and "srgb" not in img.info  # PNG's reader sets them
            and gamma > 0 and abs(gamma * 2.2 - 1) > 0.01):
        image_warning(f"{name}: its gamma (PNG gAMA {gamma:g}) is not kept; the decoded picture is shown as "
                      "sRGB, whose gamma is about 1/2.2")
    cicp = getattr(img, "_nicodec_cicp", None) or _nclx_of(img.info)
    if cicp is not None:  # (cICP rules over PNG's sRGB chunk, and over its colour profile)
        source, primaries, transfer = cicp
        shown = ("by its colour profile, which is kept" if has_profile and source == "PNG cICP" else
                 "as sRGB" if not has_profile else None)  # an AVIF's or HEIF's profile describes the pixels
        if shown is not None:
            image_warning(f"{name}: its colour space ({source}: {primaries}, {transfer}) is not kept; the decoded "
                          f"picture is shown {shown}")
    chromaticity = img.info.get("chromaticity")  # white x, y, then red, green and blue x, y
    if (isinstance(chromaticity, tuple) and len(chromaticity) == 8 and not has_profile and "srgb" not in img.info
            and all(isinstance(v, (int, float)) for v in chromaticity)
            and max(abs(a - b) for a, b in zip(chromaticity, _SRGB_CHROMATICITY)) > 0.01):
        image_warning(f"{name}: its primaries and white point (PNG cHRM) are not kept; the decoded picture is "
                      "shown with sRGB's")


_PRIMARIES = {4: "BT.470 M primaries", 5: "BT.601 625-line primaries", 6: "BT.601 525-line primaries",
              7: "SMPTE 240M primaries", 8: "generic film primaries", 9: "BT.2020 primaries",
              10: "CIE XYZ", 11: "DCI-P3 primaries", 12: "Display P3 primaries", 22: "EBU 3213 primaries"}
"""Colour primaries of ITU-T H.273 other than sRGB's (1, BT.709) and "unspecified" (2)."""
_TRANSFERS = {4: "gamma 2.2", 5: "gamma 2.8", 7: "SMPTE 240M transfer", 8: "linear light",
              9: "log transfer", 10: "log transfer", 11: "IEC 61966-2-4 transfer", 12: "BT.1361 transfer",
              14: "BT.2020 transfer", 15: "BT.2020 transfer", 16: "PQ (HDR) transfer",
              17: "SMPTE 428 transfer", 18: "HLG (HDR) transfer"}
"""Transfer characteristics of ITU-T H.273 other than sRGB's (13) and those close to it (1 and
6, BT.709's and BT.601's; 2, "unspecified")."""


HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
"""The major brands of HEIF files (HEIC: a phone's photos), in their ``ftyp`` box."""


def _nclx_of(info: dict) -> tuple[str, str, str] | None:
    """The colour space pillow-heif read from a HEIF's ``nclx`` box (``info["nclx_profile"]``),
    as :func:`signalled_colour` gives it; None for sRGB, for none. (A PIL image of a HEIF file,
    handed to ``Codec.encode``, has no file bytes to read it from.)"""
    nclx = info.get("nclx_profile")
    if not isinstance(nclx, dict):
        return None
    primaries, transfer = nclx.get("color_primaries"), nclx.get("transfer_characteristics")
    if not isinstance(primaries, int) or not isinstance(transfer, int):
        return None
    return _colour_words("HEIF nclx", primaries, transfer)


def signalled_colour(head: bytes) -> tuple[str, str, str] | None:
    """The colour space a PNG's ``cICP`` chunk or an AVIF's or HEIF's ``nclx`` colour box signals,
    from the file's first bytes (both come before the pixels; of a PNG, its signature and the
    chunk, which :func:`nicodec.images._png_cicp_head` finds), where it is not sRGB: where it is
    found (``"PNG cICP"``, ``"AVIF nclx"``, ``"HEIF nclx"``), its primaries and its transfer, in
    words; None for sRGB, for none, and for other files. Pillow reads neither: the pixels are
    decoded as they are, in that space, and a file written without it is shown as sRGB."""
    found = None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        at = 8
        while at + 12 <= len(head):
            length, kind = int.from_bytes(head[at : at + 4], "big"), head[at + 4 : at + 8]
            if kind in (b"IDAT", b"IEND"):
                break
            if kind == b"cICP" and length == 4 and at + 12 <= len(head):
                found = ("PNG cICP", head[at + 8], head[at + 9])
                break
            at += 12 + length
    elif head[4:8] == b"ftyp":
        at = head.find(b"colrnclx")
        if at >= 0 and at + 12 <= len(head):
            found = ("HEIF nclx" if head[8:12] in HEIF_BRANDS else "AVIF nclx",
                     int.from_bytes(head[at + 8 : at + 10], "big"),
                     int.from_bytes(head[at + 10 : at + 12], "big"))
    return None if found is None else _colour_words(*found)


def _colour_words(source: str, primaries: int, transfer: int) -> tuple[str, str, str] | None:
    """``(source, primaries, transfer)`` in words, of H.273's codes; None where both are sRGB's."""
    if primaries not in _PRIMARIES and transfer not in _TRANSFERS:
        return None
    return (source, _PRIMARIES.get(primaries, "sRGB primaries" if primaries in (1, 2) else f"primaries {primaries}"),
            _TRANSFERS.get(transfer, "sRGB transfer" if transfer in (1, 2, 6, 13) else f"transfer {transfer}"))


def density_of(img: Image.Image, turned: bool = False) -> resolution_section.Resolution | None:
    """The image's density: ``info["dpi"]``, but for a JPEG whose JFIF segment gives none, its
    EXIF's ``XResolution`` and ``YResolution`` in the EXIF's ``ResolutionUnit`` (inches when it
    is absent, as the EXIF standard says). Pillow reads that density for one axis and only with
    the unit given, and puts 72 dpi where it finds none, as it puts 1 dpi for a TIFF without
    one (and for a missing axis): defaults, not the image's (1 dpi is taken for one in copies of
    a TIFF, which no longer say their format, by the compression Pillow's TIFF reader puts in
    their info; a JPEG's 72 cannot be told from a real one there). A
    TIFF Pillow turned a quarter as it loaded (``turned``, or told by :func:`tiff_turned`) has
    its axes swapped. A BMP's pixels per metre are taken as Pillow's reader had them (it divides
    by 39.3701)."""
    dpi = img.info.get("dpi")
    if img.format == "TIFF":
        tags = getattr(img, "tag_v2", {})
        given = [axis for axis, tag in enumerate((ExifTags.Base.XResolution, ExifTags.Base.YResolution)) if tag in tags]
        if not given or resolution_section.from_dpi(dpi) is None:
            return None
        if len(given) == 1:  # Pillow puts 1 for the missing one
            dpi = (dpi[given[0]], dpi[given[0]])
        density = resolution_section.from_dpi(dpi)
        return density.turned() if density is not None and (turned or tiff_turned(img)) else density
    if img.format is None and dpi in ((1, 1), (1.0, 1.0)) and "compression" in img.info:
        return None  # a copy (convert, crop) of a TIFF without a density: Pillow's stand-in
    if img.format in ("BMP", "DIB") and resolution_section.from_dpi(dpi) is not None:
        return resolution_section.from_pixels_per_metre(*(round(float(v) * 39.3701) for v in dpi))
    if img.format not in ("JPEG", "MPO") or img.info.get("jfif_unit") in (1, 2):
        return resolution_section.from_dpi(dpi)
    try:
        tags = img.getexif()
    except _EXIF_ERRORS:
        return None
    x = tags.get(ExifTags.Base.XResolution)
    y = tags.get(ExifTags.Base.YResolution, x)
    scale = {2: 1.0, 3: 2.54}.get(tags.get(ExifTags.Base.ResolutionUnit, 2))  # inches, centimetres
    if x is None or scale is None:
        return None
    try:
        return resolution_section.from_dpi((float(x) * scale, float(y) * scale))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):  # not a number
        return None


def detached_copy(img: Image.Image) -> Image.Image:
    """A copy of a caller's image (turned upright) that :func:`nicodec.images.read_picture` reads as it reads
    the image: Pillow's ``copy()`` keeps the pixels and ``info`` but leaves behind the text
    (``text``), a TIFF's EXIF (its own tags) and the format that tells Pillow's stand-in
    densities from real ones, so the text, that EXIF (as ``info["exif"]``) and the density as
    read (as ``info["dpi"]``) go with it."""
    density = density_of(img)  # while the format is known
    copy = img.copy()
    text_section.carry(img, copy)
    own = _tiff_exif(img)
    if own is not None and "exif" not in copy.info:
        copy.info["exif"] = own
    copy.info.pop("dpi", None)
    if density is not None:
        copy.info["dpi"] = density.dpi
    return copy


def _exif_copy(img: Image.Image, name: str, warn: bool = True) -> Image.Exif:
    """A copy of the image's EXIF (the caller's image keeps its own); empty, with a warning
    (unless not ``warn``), when it is damaged: when Pillow cannot read it or cannot write it
    back. The raw EXIF is parsed afresh, since Pillow keeps its own parse, a failed one too."""
    raw = img.info.get("exif")
    try:
        if isinstance(raw, (bytes, bytearray)) and raw:
            Image.Exif().load(bytes(raw))
        tags = Image.Exif()
        tags.load(img.getexif().tobytes())
        return tags
    except _EXIF_ERRORS:
        if warn:
            image_warning(f"{name}: its EXIF data is damaged and is not kept")
        return Image.Exif()


def quarter_turned(img: Image.Image) -> bool:
    """Whether :func:`nicodec.pil_pixels.upright` turns this image a quarter, by its own EXIF orientation (5 to 8)."""
    try:
        return img.getexif().get(ExifTags.Base.Orientation) in _QUARTER_TURNS
    except _EXIF_ERRORS:
        return False


def without_orientation(key: str, value: bytes, turned: bool = False) -> bytes | None:
    """An ``exif`` or ``xmp`` value given for an image already turned upright, without the
    orientation it may hold (so that it does not turn the picture a second time); as given when
    it holds none, and None, with a warning, for EXIF too damaged to rewrite. ``turned``: the
    image was turned a quarter by its own orientation; an EXIF whose orientation turns a quarter
    too is then the image's own, or a copy of it, which describes the picture before the turn:
    its resolution is swapped, as the image's own EXIF is (else it describes the upright
    picture, as given)."""
    if key == "xmp":
        return _XMP_ORIENTATION.sub(b"", bytes(value))
    try:
        tags = Image.Exif()
        tags.load(bytes(value))
        if ExifTags.Base.Orientation not in tags:
            return bytes(value)
        if tags.pop(ExifTags.Base.Orientation) in _QUARTER_TURNS and turned:
            _swap_resolution_tags(tags)
        return tags.tobytes()
    except _EXIF_ERRORS:
        image_warning("the EXIF data given to save is damaged and is not kept")
        return None


def tiff_turned(img: Image.Image) -> bool:
    """Whether Pillow turned (or, not loaded yet, will turn) this TIFF a quarter: its reader
    applies an orientation of 5 to 8 as it loads and removes the tag, so afterwards only the
    size tells it, the directory's width and height swapped (not for a square image, which
    nicodec's own opening marks before the load; a caller's square TIFF loaded already is
    taken as it is)."""
    tags = getattr(img, "tag_v2", None) if img.format == "TIFF" else None
    if tags is None:
        return False
    if getattr(img, "_nicodec_turned", False) or tags.get(ExifTags.Base.Orientation) in _QUARTER_TURNS:
        return True
    width, height = tags.get(256), tags.get(257)
    return width != height and img.size == (height, width)


def _tiff_exif(img: Image.Image) -> bytes | None:
    """A TIFF's EXIF, which Pillow holds in its own tags and a copy loses, as bytes for the
    copy's ``info["exif"]`` (its resolution swapped where Pillow turned the TIFF as it loaded;
    :func:`nicodec.images.read_picture` keeps of it what a camera's EXIF has); None for other images, and for
    tags Pillow cannot write."""
    if img.format != "TIFF":
        return None
    try:
        tags = Image.Exif()
        tags.load(img.getexif().tobytes())
        if tiff_turned(img):
            _swap_resolution_tags(tags)
        return tags.tobytes()
    except _EXIF_ERRORS:
        return None


def _swap_resolution_tags(tags: Image.Exif) -> None:
    """Swap an EXIF's ``XResolution`` and ``YResolution``, in place, for a picture turned a quarter."""
    x, y = tags.get(ExifTags.Base.XResolution), tags.get(ExifTags.Base.YResolution)
    for tag, value in ((ExifTags.Base.XResolution, y), (ExifTags.Base.YResolution, x)):
        if value is None:
            tags.pop(tag, None)
        else:
            tags[tag] = value


def turn(img: Image.Image, name: str = "the image") -> Image.Image:
    """The image turned upright by the orientation Pillow reads (the EXIF's, or without one the
    XMP's, in its two forms) with Pillow's ``exif_transpose``; the copy's EXIF and XMP lose it,
    in every form, so that turning it again does nothing. The copy keeps the image's text
    chunks (``text``, which Pillow's copies leave behind), and its density (``info["dpi"]``
    and the EXIF's) follows a quarter turn, which Pillow's leaves as it was. EXIF that cannot
    be read turns nothing; EXIF whose orientation can be read but which Pillow cannot write
    back is left out, with a warning, and the picture turned all the same."""
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation)
    except _EXIF_ERRORS:
        return img  # EXIF that cannot be read has no orientation to apply (read_picture warns of it)
    if orientation not in _TURNS:
        return img
    try:
        turned = ImageOps.exif_transpose(img)
        # exif_transpose reads the EXIF again from the image's bytes, so the copy's is the file's:
        # the caller's edits of img.getexif() (its GPS location deleted) were lost. The copy gets
        # the caller's EXIF instead, without its orientation.
        tags = Image.Exif()
        tags.load(img.getexif().tobytes())
        tags.pop(ExifTags.Base.Orientation, None)
        if orientation in _QUARTER_TURNS:
            _swap_resolution_tags(tags)
        data = tags.tobytes() if len(tags) else b""
        turned.getexif().load(data)
        turned.info.pop("Raw profile type exif", None)  # PNG's other form of it, the file's
        turned.info.pop("exif", None)
        if data:
            turned.info["exif"] = data
    except _EXIF_ERRORS:
        turned = img.transpose(_TRANSPOSES[orientation])
        turned.info = {key: value for key, value in img.info.items()
                       if key not in ("exif", "Raw profile type exif")}  # PNG's two forms of it
        image_warning(f"{name}: its EXIF data is damaged and is not kept (its orientation is applied)")
    text_section.carry(img, turned)
    density = density_of(img)
    if density is None:
        turned.info.pop("dpi", None)
    else:
        turned.info["dpi"] = (density.turned() if orientation in _QUARTER_TURNS else density).dpi
    xmp = read_xmp(turned.info)
    if xmp is not None:
        turned.info.pop(text_section.XMP_KEYWORD, None)
        turned.info["xmp"] = _XMP_ORIENTATION.sub(b"", xmp)
    return turned
