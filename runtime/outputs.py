"""Decoded pictures written in the format a user names: every pixel kept, or refused before decoding.

Pillow writes many formats, several of them lossy by default (WebP at quality 80, JPEG at 75
with 4:2:0 chroma, GIF cut to 256 colours) and without a word. ``nicodec decode x.nic -o
x.webp`` should give the decoded picture, so decode writes WebP lossless and JPEG and AVIF,
which are lossy by design, at quality 95 with 4:4:4 chroma, and refuses, from the file's
header before any decoding, a format that would lose part of the picture. What a format keeps
is asked of the installed Pillow, by writing and reading back a small test image, so the
answer follows Pillow's version and plugins rather than a list.
"""

from __future__ import annotations

import codecs
import functools
import io
import struct
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from . import alpha as alpha_section
from . import format as nicformat
from . import resolution as resolution_section
from . import text as text_section
from .errors import NicodecError, UnsupportedImageError

ICNS_SIDES = (16, 32, 64, 128, 256, 512, 1024)
"""The square sizes an ICNS file holds; Pillow resamples any other image to all of them."""


LOSSY_OUTPUTS = {"JPEG": {"quality": 95, "subsampling": 0}, "MPO": {"quality": 95, "subsampling": 0},
                 "AVIF": {"quality": 95, "subsampling": "4:4:4"}}
"""Formats that are lossy by design, written when asked for, at these settings (Pillow's own
defaults are quality 75 with 4:2:0 chroma)."""
_ALPHA_IN_PART = {"AVIF": "keeps only approximately",
                  "GIF": "keeps only for pixels fully transparent or opaque (the file's header cannot tell whether "
                         "those are all it has)"}
"""How the formats that keep some of an alpha plane, but not every level, keep it: AVIF codes
it as lossily as the colour, GIF has one transparent palette entry. The refusal comes from the
header, before the plane is decoded."""
LOSSLESS_SETTINGS = {"WEBP": {"lossless": True, "exact": True}, "JXL": {"lossless": True}}
"""Settings that make a format that can be either lossy or lossless keep every pixel (WebP's
default is lossy, quality 80; ``exact`` keeps the colour under transparent pixels)."""
MAX_SIDES = {"JPEG": 65_500, "MPO": 65_500, "WEBP": 16_383, "GIF": 65_535, "TGA": 65_535, "SGI": 65_535,
             "PCX": 65_534, "AVIF": 32_768}
"""The longest side these formats hold, as Pillow 13 writes them (it finds out only after
decoding): 16-bit fields for GIF's, TGA's and SGI's sides and PCX's bytes per line (even,
so 65,534 pixels of width); for AVIF the longest Pillow reads back (libavif 1.4's decoder
refuses more by default, though its encoder writes up to 65,536)."""


def save_options(fmt: str, mode: str | None = None) -> dict:
    """The Pillow save options decode writes ``fmt`` with, for an image of ``mode``: AVIF codes a
    gray (L) picture as gray, 4:0:0 (in 4:4:4 Pillow's writer makes it colour, which the gray
    profile it carries would then describe wrongly)."""
    if fmt == "AVIF" and mode == "L":
        return {**LOSSY_OUTPUTS[fmt], "subsampling": "4:0:0"}
    return LOSSY_OUTPUTS.get(fmt) or LOSSLESS_SETTINGS.get(fmt, {})


def keeps(fmt: str, mode: str, colour: bool = True, gray: bool = False) -> bool:
    """Whether Pillow writes ``fmt`` (with decode's options) and reads it back with a
    photo-like probe of ``mode`` intact: every alpha level, and with ``colour`` every visible
    colour value too (1,024 random values, so a palette format fails on RGB, and a lossy
    setting fails). With ``gray`` the probe's colour channels are equal, as in a gray picture
    kept as RGB (which a palette of 256 entries holds). Probed, so the answer follows the
    installed Pillow and plugins."""
    return _probe(fmt, mode, colour, gray) == "kept"


def usable_output(fmt: str) -> bool:
    """Whether decode can write some picture as ``fmt`` here (probed as :func:`keeps` is): one of
    the modes a decoded image has kept, or for a format lossy by design, written and read back."""
    modes = ("RGB", "L", "RGBA", "LA")
    if fmt in LOSSY_OUTPUTS:
        return any(_probe(fmt, mode, True) in ("kept", "changed") for mode in modes)
    return any(_probe(fmt, mode, True) == "kept" for mode in modes)


@functools.lru_cache(maxsize=None)
def _probe(fmt: str, mode: str, colour: bool, gray: bool = False) -> str:
    """:func:`keeps`'s probe: ``"kept"``, ``"unwritable"`` (Pillow cannot write ``fmt`` here),
    ``"unreadable"`` (it cannot read it back) or ``"changed"``."""
    import numpy as np
    from PIL import Image

    values = np.random.default_rng(0).integers(0, 256, (32, 32, len(mode)), dtype=np.uint8)
    if gray and len(mode) >= 3:
        values[:, :, 1:3] = values[:, :, :1]
    if "A" in mode:
        values[0, :6, -1] = (0, 1, 77, 128, 254, 255)
    probe = Image.fromarray(values[:, :, 0] if len(mode) == 1 else values, mode)
    buffer = io.BytesIO()
    try:
        probe.save(buffer, format=fmt, **save_options(fmt, mode))
    except Exception:  # noqa: BLE001 - a format that cannot store the image does not keep it
        return "unwritable"
    try:
        buffer.seek(0)
        with Image.open(buffer) as back:
            got = np.asarray(back.convert(mode)).reshape(values.shape)
    except Exception:  # noqa: BLE001 - nor one whose file Pillow cannot read back
        return "unreadable"
    if "A" in mode:
        visible = values[:, :, -1] > 0
        same_colour = np.array_equal(got[visible][:, :-1], values[visible][:, :-1])
        kept = np.array_equal(got[:, :, -1], values[:, :, -1]) and (same_colour or not colour)
    else:
        kept = np.array_equal(got, values) or not colour
    return "kept" if kept else "changed"


@functools.lru_cache(maxsize=None)
def kept_metadata(fmt: str) -> frozenset[str]:
    """Which of ``"icc_profile"``, ``"exif"``, ``"xmp"``, ``"text"`` (every text entry) and
    ``"comment"`` (the ``Comment`` entry alone, as JPEG's comment) Pillow writes into ``fmt`` (as
    :func:`save` asks it to) and reads back (BMP, TGA, QOI and PPM keep none); probed, as
    :func:`keeps` is."""
    from .metadata import read_text, read_xmp

    import numpy as np
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "nicodec probe"  # Make
    try:
        from PIL import ImageCms

        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except ImportError:  # a Pillow built without LittleCMS: writers store the bytes as they are
        icc = bytes(range(128)) * 4
    probe = Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8))
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- nicodec probe --></x:xmpmeta>'
    probe.info.update(icc_profile=icc, exif=exif.tobytes(), xmp=xmp)
    text = {"Comment": "nicodec probe \u00e9\u4e2d", "Author": "nicodec"}
    probe.text = dict(text)  # type: ignore[attr-defined]
    probe.info["comment"] = text_section.comment(text)  # as decoded images have it (GIF's writer takes it)
    try:
        buffer = io.BytesIO()
        save(probe, buffer, fmt)
        buffer.seek(0)
        with Image.open(buffer) as back:
            back.load()
            kept = {"icc_profile"} if back.info.get("icc_profile") == icc else set()
            if back.getexif().get(0x010F) == "nicodec probe":
                kept.add("exif")
            if read_xmp(back.info) == xmp:
                kept.add("xmp")
            got = read_text(back, warn=False) or {}
            if got == text:
                kept.add("text")
            elif got.get("Comment") == text["Comment"]:
                kept.add("comment")
    except Exception:  # noqa: BLE001 - a format that cannot store the probe keeps nothing of it
        return frozenset()
    return frozenset(kept)


def dropped_metadata(data: bytes, fmt: str) -> list[tuple[str, str | None]]:
    """What a ``.nic`` file carries that ``fmt`` would leave out, of ``"ICC
    profile"``, ``"EXIF data"``, ``"XMP data"`` and its text (``"text (Author, ...)"``): each with
    why, where the format keeps such data but not this one (too long for a JPEG segment, not
    Unicode text for PNG, text but a comment), else None. A damaged file has none: decoding
    names the damage, and a warning about its metadata before that error would be noise."""
    try:
        header, sections = nicformat.unpack(data)  # the checksum too
    except NicodecError:
        return []
    lengths = {tag: len(section) for tag, section in sections.items() if section}
    gray = bool(header.flags & nicformat.FLAG_GRAYSCALE) and not header.flags & nicformat.FLAG_GRAY_AS_RGB
    kept = kept_metadata(fmt)

    known = ((nicformat.ICC_PROFILE, "icc_profile", "ICC profile"), (nicformat.EXIF, "exif", "EXIF data"),
             (nicformat.XMP, "xmp", "XMP data"))
    dropped: list[tuple[str, str | None]] = []
    for tag, key, what in known:
        if tag not in lengths:
            continue
        limit = _SEGMENT_LIMITS.get(fmt, {}).get(key)
        if key not in kept:
            dropped.append((what, None))
        elif limit is not None and lengths[tag] > limit:
            too_long = _TOO_LONG.get((fmt, key), "its {n:,} bytes are more than one {fmt} segment holds ({limit:,})")
            dropped.append((what, too_long.format(n=lengths[tag], limit=limit, fmt=fmt)))
        elif key == "icc_profile" and gray and fmt in _GRAY_AS_COLOUR:
            if _gray_profile(sections[tag]):
                dropped.append((what, f"{fmt} stores a gray picture as colour, which a gray profile does not describe"))
        elif key == "exif" and fmt in _EXIF_READERS:
            if not _tiff_structure(sections[tag], fmt):
                dropped.append((what, (f"{fmt} reads it as a TIFF structure (after Exif\\0\\0), and it is not one "
                                       "Pillow can write")))
        elif key == "xmp" and fmt == "PNG":
            if _xmp_text(sections[tag]) is None:
                dropped.append((what, "PNG holds it as Unicode text, and this packet is not"))
    if text_section.TAG in lengths:
        dropped += _dropped_text(sections, fmt, kept)
    if resolution_section.TAG in lengths:
        try:
            density = resolution_section.unpack(sections[resolution_section.TAG])
        except NicodecError:
            return dropped  # decoding names the damage
        why = _written_dpi(density, fmt)[1]
        if why is not None:
            dropped.append(("resolution", why))
    return dropped


_MAX_PIXELS_PER_METRE = 2**31 - 1
"""The densest pHYs PNG allows (its four-byte integers stop at 2^31 - 1) and BMP holds (a signed
32-bit count)."""
_MAX_JFIF = 65_535
"""The densest JFIF segment: two bytes a side."""


def _written_dpi(density: resolution_section.Resolution, fmt: str) -> tuple[tuple[float, float] | None, str | None]:
    """The ``dpi=`` that makes ``fmt``'s writer store ``density`` as exactly as it can, and None
    with why where the density is outside what the format holds; None and None for formats that
    keep no density (WebP, AVIF, GIF, ...), and for which no warning is given. PNG and BMP
    store whole pixels per metre, computed by their writers from ``dpi=`` (``dpi / 0.0254`` and
    ``dpi * 39.3701``, rounded), JPEG whole dots per inch, TIFF a fraction."""
    if fmt in ("JPEG", "MPO"):
        x, y = (round(value) for value in density.dpi)
        if not (1 <= x <= _MAX_JFIF and 1 <= y <= _MAX_JFIF):
            return None, f"its {_shown(density)} is outside what {fmt} holds (1 to {_MAX_JFIF:,} dpi)"
        return density.dpi, None
    if fmt in ("PNG", "BMP", "DIB"):
        x, y = resolution_section.pixels_per_metre(density)
        if max(x, y) > _MAX_PIXELS_PER_METRE or min(x, y) < 1:
            return None, (f"its {_shown(density)} is outside what {fmt} holds "
                          f"(1 to {_MAX_PIXELS_PER_METRE:,} pixels per metre)")
        factor = 1 / 39.3701 if fmt in ("BMP", "DIB") else resolution_section.INCH
        return (x * factor, y * factor), None
    if fmt == "TIFF":
        return density.dpi, None
    return None, None


def _shown(density: resolution_section.Resolution) -> str:
    """``300 x 150 dpi``: a density for a warning."""
    return " x ".join(f"{value:,.6g}" for value in density.dpi) + " dpi"


def _dropped_text(sections: Mapping[bytes, bytes], fmt: str, kept: frozenset[str]) -> list[tuple[str, str | None]]:
    """:func:`dropped_metadata`'s entries for a file's text (``sections``: the file's, by tag)."""
    if "text" in kept:
        return []
    try:
        entries = text_section.unpack(sections[text_section.TAG])
    except NicodecError:
        return []  # decoding names the damage
    entries = {k: v for k, v in entries.items() if k not in text_section.RESERVED}  # never written
    if not entries:
        return []
    if "comment" not in kept:
        return [(_text_named(entries), f"{fmt} keeps no text (.png keeps it all, .jpg a Comment)")]
    dropped = []
    others = [keyword for keyword in entries if keyword != "Comment"]
    if others:
        dropped.append((_text_named(others), f"{fmt} keeps a Comment alone"))
    size = len(entries.get("Comment", "").encode("utf-8"))
    if size > text_section.COMMENT_LIMIT:
        dropped.append(('text "Comment"', f"its {size:,} bytes are more than nicodec writes as a comment "
                                           f"({text_section.COMMENT_LIMIT:,}, one JPEG segment)"))
    return dropped


def _text_named(keywords) -> str:
    """``text "Author" and "Comment"``: the keywords of text entries, for a warning."""
    shown = [f'"{k if len(k) <= 40 else k[:40] + "..."}"' for k in list(keywords)[:6]]
    more = len(list(keywords)) - len(shown)
    if more > 0:
        return f"text {', '.join(shown)} and {more} more"
    return "text " + (shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1])


@functools.lru_cache(maxsize=None)
def _bilevel_only(fmt: str) -> bool:
    """Whether Pillow writes ``fmt`` for a mode 1 image (XBM, MSP, PALM), as it does for no
    image nicodec decodes (RGB, L)."""
    from PIL import Image

    try:
        Image.new("1", (8, 8)).save(io.BytesIO(), format=fmt, **save_options(fmt))
    except Exception:  # noqa: BLE001 - nor for this one
        return False
    return True


def check_format(data: bytes, fmt: str, name: str, background: str | None = None,
                 thumbnail_side: int | None = None) -> None:
    """Refuse, from a ``.nic`` file's header and before decoding, an output format that would
    lose part of the picture (its transparency, pixel values, or size); a damaged file is left
    for decoding to report. The formats lossy by design (``LOSSY_OUTPUTS``: JPEG, AVIF) are
    written when asked for.

    Args:
        data: the ``.nic`` file's bytes.
        fmt: the Pillow format name (``"PNG"``, ``"WEBP"``, ...).
        name: the output's name, for the messages.
        background: the colour the picture will be flattened onto (:func:`flatten`), if any: the
            picture then has no transparency to lose.
        thumbnail_side: the side of the square a thumbnail of the picture will fit (:func:`thumbnail`),
            if any: the size that the formats' limits are checked against.

    Raises:
        UnsupportedImageError: the format would lose part of the picture.
    """
    try:
        header, sections = nicformat.unpack(data)
    except NicodecError:
        return
    # The mode the decoded image will have; ICNS is left to its own check below: Pillow writes
    # the picture at its size (as PNG) beside copies resampled to the other icon sizes, and
    # reads back the largest.
    mode = nicformat.decoded_mode(header.flags, alpha_section.find(sections) is not None)
    gray = bool(header.flags & nicformat.FLAG_GRAY_AS_RGB)  # RGB of equal channels: a palette holds it
    if background is not None and "A" in mode:
        mode = mode[:-1]
        gray = gray and len(set(_opaque(background))) == 1
    if fmt != "ICNS" and "A" in mode and not keeps(fmt, mode, colour=False):
        if _probe(fmt, mode, False) == "unwritable" and keeps(fmt, "RGBA", colour=False):  # QOI has no LA
            raise UnsupportedImageError(f"Pillow cannot write a mode {mode} image as {fmt} here ({name}); use .png or .webp")
        kept = _ALPHA_IN_PART.get(fmt, "does not keep")
        raise UnsupportedImageError(f"the image has transparency, which {fmt} {kept} ({name}); use .png or .webp, "
                                    "or --background COLOUR to flatten it onto a colour")
    if fmt != "ICNS" and fmt not in LOSSY_OUTPUTS and not keeps(fmt, mode, gray=gray):
        other_modes = any(_probe(fmt, other, True) != "unwritable" for other in ("RGB", "L") if other != mode)
        why = {"unwritable": (f"Pillow cannot write a mode {mode} image as {fmt} here" if other_modes
                              else f"Pillow writes {fmt} for black and white (1-bit) images, not a mode {mode} one"
                              if _bilevel_only(fmt)
                              else f"Pillow cannot write {fmt} here"),
               "unreadable": f"Pillow cannot read {fmt} back here, so whether it keeps every pixel is unknown",
               }.get(_probe(fmt, mode, True, gray), f"{fmt}, as Pillow writes it here, does not give back every pixel "
                                              "of the picture")
        raise UnsupportedImageError(
            f"{why} (tried on a test image; {name}); use .png, .webp or .tiff, or .jpg for a lossy copy")
    size = (header.width, header.height) if thumbnail_side is None else \
        thumbnail_size(header.width, header.height, thumbnail_side)
    if fmt in MAX_SIDES and max(size) > MAX_SIDES[fmt]:
        raise UnsupportedImageError(
            f"{fmt} holds images of at most {MAX_SIDES[fmt]:,} pixels a side; the image is {size[0]}x{size[1]}; use .png"
        )
    if fmt == "ICO" and max(size) > 256:
        raise UnsupportedImageError(f"ICO holds icons of at most 256x256 pixels; the image is {size[0]}x{size[1]}")
    if fmt == "ICNS" and (size[0] != size[1] or size[0] not in ICNS_SIDES):
        raise UnsupportedImageError(
            f"ICNS holds square icons of {', '.join(map(str, ICNS_SIDES))} pixels; the image is {size[0]}x{size[1]}"
        )


def _opaque(colour: str) -> tuple[int, int, int]:
    """``colour`` (a name or a notation :func:`PIL.ImageColor.getrgb` reads) as red, green and
    blue, if it is opaque.

    Raises:
        ValueError: not a colour, or one not opaque, saying so.
    """
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(colour.strip())
    except ValueError:
        raise ValueError(f"{colour!r} is not a colour: give a name such as white or black, or #rrggbb") from None
    if len(rgb) == 4 and rgb[3] != 255:
        raise ValueError(f"{colour!r} is not opaque: a background has no transparency; give #rrggbb")
    return rgb[0], rgb[1], rgb[2]


def check_background(colour: str) -> str:
    """``--background``'s value, refused (:class:`ValueError`) unless an opaque colour."""
    _opaque(colour)
    return colour


def flatten(image, colour: str):
    """The decoded ``image`` composited onto an opaque ``colour`` (``--background``), for an
    output without transparency: each value becomes (value x alpha + background x (255 - alpha))
    / 255, rounded to the nearest (Pillow's ``paste`` through the alpha as a mask, which rounds
    so: checked for every value, alpha and background level). A grayscale image stays
    grayscale, on the colour's gray level (Pillow's conversion of it to mode L), so that its
    ICC profile, one for gray data, still describes it. An image without transparency is
    returned as it is; the metadata and text go with the flattened one."""
    if image.mode not in ("RGBA", "LA"):
        return image
    from PIL import Image, ImageColor

    rgb = _opaque(colour)
    base = image.mode[:-1]
    result = Image.new(base, image.size, ImageColor.getcolor(colour.strip(), "L") if base == "L" else rgb)
    result.paste(image.getchannel("L") if base == "L" else image, (0, 0), image.getchannel("A"))
    result.info = dict(image.info)
    text_section.carry(image, result)
    return result


def thumbnail_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size of a ``width`` x ``height`` picture scaled down to fit ``side`` x ``side`` pixels
    (``--thumbnail``): its longer side becomes ``side``, the other keeps the shape, rounded to the
    nearest pixel (half up) and at least 1. A picture that fits already keeps its size: a
    thumbnail is never enlarged."""
    if width <= side and height <= side:
        return width, height
    if width >= height:
        return side, max(1, (2 * height * side + width) // (2 * width))
    return max(1, (2 * width * side + height) // (2 * height)), side


def thumbnail(image, side: int):
    """The decoded ``image`` scaled down to :func:`thumbnail_size` (``--thumbnail``) with Pillow's
    Lanczos filter, after a box reduction by a whole factor where it shrinks 6 times or more
    (Pillow's ``reducing_gap`` of 3 leaves the filter at least 3 times: a 24-megapixel picture
    to 256 pixels in a fraction of a second, as sharp);
    Pillow weighs the colour of transparent pixels by their alpha as it resizes. The thumbnail
    keeps the ICC profile, which its colours need, and none of the other metadata: EXIF (a
    camera's serial number, a location), XMP, text and a resolution (which would give the
    small picture its large one's print size) stay with the full picture."""
    from PIL import Image

    size = thumbnail_size(image.width, image.height, side)
    small = image.copy() if size == image.size else image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    small.info = {"icc_profile": image.info["icc_profile"]} if image.info.get("icc_profile") else {}
    return small


def save(image, f, fmt: str) -> None:
    """``image.save`` in ``fmt`` with decode's options and the decoded ICC profile, EXIF, XMP, text
    and resolution; what Pillow refuses (a mode the format lacks) becomes a clear error.

    Raises:
        UnsupportedImageError: Pillow cannot write the image in ``fmt``.
        OSError: the write itself failed.
    """
    sizes = {"sizes": [image.size]} if fmt == "ICO" else {}  # ICO's default set would shrink the picture
    try:
        image.save(f, format=fmt, **_metadata(image, fmt), **sizes, **save_options(fmt, image.mode))
    except OSError:
        raise  # the write itself failed: write_atomic names the file
    except (ValueError, SyntaxError, KeyError, TypeError, RuntimeError, OverflowError, struct.error) as exc:
        # RuntimeError: AVIF's encoder; OverflowError and struct.error: a value a writer packs into too few bytes
        raise UnsupportedImageError(f"Pillow cannot write this image as {fmt} ({exc}); try .png") from None


_SEGMENT_LIMITS = {**{fmt: {"exif": 65_533, "xmp": 65_504, "icc_profile": 255 * 65_519} for fmt in ("JPEG", "MPO")},
                   "PNG": {"icc_profile": 1 << 20}}
"""The longest EXIF, XMP and ICC profile a format holds as Pillow writes and reads it: one JPEG
APP1 segment, less the XMP's namespace (Adobe's ExtendedXMP, which splits longer packets, is not
written by Pillow); 255 APP2 segments of a profile's parts (a one-byte count); and the 1 MiB a
PNG's profile may inflate to for Pillow's reader, which refuses the whole file past that
(``PngImagePlugin.MAX_TEXT_CHUNK``). Longer ones are left out, with a warning
(``_TOO_LONG``), rather than failing the whole decode or making a file Pillow cannot open."""
_TOO_LONG = {**{(fmt, "icc_profile"): "its {n:,} bytes are more than a JPEG's 255 profile segments hold ({limit:,})"
                for fmt in ("JPEG", "MPO")},
             ("PNG", "icc_profile"): "its {n:,} bytes are more than the {limit:,} Pillow reads in a PNG (it refuses "
                                     "the whole file); .tiff and .webp keep it"}


_GRAY_AS_COLOUR = frozenset({"WEBP"})
"""The formats whose writers turn a gray picture into colour (WebP has no gray images): a gray
ICC profile (one for a single channel) would describe the file wrongly, and colour-managed
readers (LittleCMS: "cannot build transform") refuse it. It is left out, with a warning."""


def _gray_profile(profile: bytes) -> bool:
    """Whether an ICC profile is one for gray data: its colour space signature (bytes 16 to 19
    of the header) says ``GRAY``."""
    return profile[16:20] == b"GRAY"


_EXIF_READERS = frozenset({"TIFF", "AVIF"})
"""The formats whose writers read the EXIF they are given rather than copy its bytes (Pillow's
TIFF writer takes its tags, libavif checks its TIFF header): an EXIF section that is not a TIFF
structure, which a ``.nic`` file may carry as its source had it, fails them. It is left out of
these, with a warning, and kept as it is by the others."""


@contextmanager
def quietly() -> Iterator[None]:
    """Pillow's warnings inside the block ignored, on the main thread: ``catch_warnings`` swaps
    the process's filters and puts them back after, so two threads' blocks that overlap could
    leave them ignoring every warning for good. On another thread (a batch's workers) the
    block's warnings go through, to nicodec's one-line ``warning:`` where the CLI reports."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@functools.lru_cache(maxsize=4)  # asked twice a decode: what is dropped, then what is written
def _tiff_structure(exif: bytes, fmt: str) -> bool:
    """Whether an EXIF packet is a TIFF structure, after ``Exif\\0\\0`` when it starts so, that
    Pillow reads (damaged entries inside it are its own warnings, not a failure) and that its
    ``fmt`` writer takes: a tag whose value the reader keeps but the TIFF writer cannot pack
    (a damaged entry's) failed the whole decode, so a 1x1 image is written with it first."""
    from PIL import Image

    body = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    if not body.startswith((b"II*\0", b"MM\0*")):
        return False
    try:
        with quietly():
            Image.Exif().load(bytes(exif))
            Image.new("RGB", (1, 1)).save(io.BytesIO(), format=fmt, exif=_written_exif(exif, fmt))
    except Exception:  # noqa: BLE001 - whatever Pillow raises on it, it is not one the writer takes
        return False
    return True


_TIFF_LAYOUT_TAGS = (254, 255, 256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338,
                     339, 530, 532)
"""TIFF tags that describe how an image's own data is laid out (its size, samples, strips,
tiles, compression): Pillow's TIFF writer takes the EXIF's into the file's IFD, where an
ImageWidth or SamplesPerPixel of another image made a corrupt TIFF or failed the write. The
writer sets them for the picture it writes."""


def _written_exif(exif: bytes, fmt: str) -> bytes:
    """The EXIF given to ``fmt``'s writer: for TIFF, without the layout tags of whatever image
    it came from (written again by Pillow, whose TIFF writer reads the packet into tags anyway);
    for the others as it is."""
    if fmt != "TIFF":
        return bytes(exif)
    from PIL import Image

    tags = Image.Exif()
    with quietly():
        tags.load(bytes(exif))
    if not any(tag in tags for tag in _TIFF_LAYOUT_TAGS):
        return bytes(exif)
    for tag in _TIFF_LAYOUT_TAGS:
        tags.pop(tag, None)
    return tags.tobytes()


def _xmp_text(packet: bytes) -> str | None:
    """An XMP packet as text for PNG's iTXt (UTF-8 there): the XMP standard allows UTF-8, 16 and
    32, told apart by a byte-order mark or, as XML's are, by the first ``<``'s bytes; None for
    bytes that are none of them."""
    starts = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
              (codecs.BOM_UTF16_BE, "utf-16"), (b"<\0\0\0", "utf-32-le"), (b"\0\0\0<", "utf-32-be"),
              (b"<\0", "utf-16-le"), (b"\0<", "utf-16-be"), (b"", "utf-8"))
    encoding = next(encoding for start, encoding in starts if packet.startswith(start))
    try:
        return packet.decode(encoding)
    except UnicodeDecodeError:
        return None


def _metadata(image, fmt: str) -> dict:
    """Pillow save options that carry the decoded ICC profile, EXIF data, XMP packet, text and
    resolution into the output. Pillow's writers take the XMP packet as ``xmp=`` (JPEG, WebP, AVIF), and PNG's and
    TIFF's in their own places: an iTXt chunk named ``XML:com.adobe.xmp`` (UTF-8 text, which
    the XMP standard's packets are, or are turned into) and the XMLPacket tag, 700, beside the
    EXIF's. Text (``image.text``) goes into PNG as text chunks (``tEXt`` for Latin-1, ``iTXt``
    for the rest, compressed from 1 kB up to what Pillow's reader inflates), but for the keywords
    whose data other sections keep (``nicodec.text.RESERVED``), and its ``Comment`` into JPEG as
    a comment. EXIF, XMP or a comment too long for a JPEG segment, XMP that is not Unicode
    text for PNG, or EXIF that is not a TIFF structure for TIFF and AVIF, is left out. The
    resolution (``info["dpi"]``) goes to the writers that keep it as ``dpi=``
    (:func:`_written_dpi`), unless it is outside what the format holds."""
    limits = _SEGMENT_LIMITS.get(fmt, {})
    options = {key: image.info[key] for key in ("icc_profile", "exif")
               if image.info.get(key) and len(image.info[key]) <= limits.get(key, len(image.info[key]))}
    if "exif" in options and fmt in _EXIF_READERS and not _tiff_structure(bytes(options["exif"]), fmt):
        del options["exif"]  # dropped_metadata warns
    elif "exif" in options:
        options["exif"] = _written_exif(options["exif"], fmt)
    if "icc_profile" in options and image.mode in ("L", "LA") and fmt in _GRAY_AS_COLOUR \
            and _gray_profile(bytes(options["icc_profile"])):
        del options["icc_profile"]  # dropped_metadata warns
    if image.info.get("icc_profile") and "icc_profile" not in options:
        options["icc_profile"] = None  # left out: PNG's, TIFF's and AVIF's writers would take info's
    density = resolution_section.from_dpi(image.info.get("dpi"))
    dpi = _written_dpi(density, fmt)[0] if density is not None else None
    if dpi is not None:
        options["dpi"] = dpi
    entries = getattr(image, "text", None)
    entries = entries if isinstance(entries, dict) else {}
    if fmt in ("JPEG", "MPO"):
        # This comment and not the one Pillow would take from info (none: b"").
        options["comment"] = text_section.comment(entries) or b""
    if fmt == "PNG":
        from PIL import PngImagePlugin

        chunks = PngImagePlugin.PngInfo()
        for keyword, value in entries.items():
            if keyword not in text_section.RESERVED and text_section.usable_keyword(keyword) and isinstance(value, str):
                # Compressed from 1 kB, but not beyond what Pillow's reader inflates (1 MiB,
                # PngImagePlugin.MAX_TEXT_CHUNK): a longer text is written as it is.
                size = len(value.encode("utf-8"))
                chunks.add_text(keyword, value, zip=1024 <= size < PngImagePlugin.MAX_TEXT_CHUNK)
        options["pnginfo"] = chunks
    xmp = image.info.get("xmp")
    if not xmp or len(xmp) > limits.get("xmp", len(xmp)):
        return options  # none, or too long for one segment (dropped_metadata warns)
    if fmt == "PNG":
        text = _xmp_text(bytes(xmp))
        if text is None:
            return options  # not Unicode text (dropped_metadata warns)
        options["pnginfo"].add_itxt(text_section.XMP_KEYWORD, text)
    elif fmt == "TIFF":  # in the EXIF's tags, which Pillow writes into the TIFF's own (tiffinfo would replace them)
        from PIL import Image

        tags = Image.Exif()
        if options.get("exif"):
            tags.load(options["exif"])
        tags[700] = bytes(xmp)
        options["exif"] = tags
    else:
        options["xmp"] = bytes(xmp)
    return options
