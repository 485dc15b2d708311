"""Turning what users hand us (paths, PIL images, numpy arrays) into RGB pixels."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import LimitError, NicodecError, UnsupportedImageError
from . import files
from . import resolution as resolution_section
from . import text as text_section
from .files import data_as_path, read_file
from .sessions import caller_outside

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")

_DAMAGED = (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, RuntimeError,
            struct.error)
"""What Pillow raises for a damaged file: OSError, SyntaxError and ValueError by design, the rest
from checks it lacks (a TIFF without its dimensions is a TypeError when its frames are counted)
and from its AVIF decoder (a RuntimeError)."""

_INFO: Any = object()
"""As a colour key: the image's own, ``info["transparency"]``."""

SizeCheck = Callable[[int, int], None]
"""Called with an image's width and height before its pixels are decoded; raises to refuse it."""


def readable_suffixes() -> list[str]:
    """The file suffixes of the images Pillow opens and loads (``.png``, ``.jpg``, ...), ``.nic``
    excepted: the images nicodec codes. Formats Pillow only identifies are left out, so that a
    folder's videos and data files are passed over rather than failed: MPEG video, the stubs of
    HDF5, GRIB, BUFR and WMF without a handler registered, and EPS without Ghostscript."""
    return sorted(ext for ext, fmt in Image.registered_extensions().items()
                  if fmt in Image.OPEN and ext != ".nic" and _loads(fmt))


def _loads(fmt: str) -> bool:
    """Whether Pillow can load the pixels of an image in ``fmt`` it opens, as far as can be told
    before trying."""
    import sys

    from PIL import ImageFile

    if fmt == "MPEG":  # a video's first header is read for its size; nothing is ever decoded
        return False
    if fmt == "EPS":
        from PIL import EpsImagePlugin

        return bool(getattr(EpsImagePlugin, "has_ghostscript", lambda: True)())
    opener = Image.OPEN[fmt][0]
    if isinstance(opener, type) and issubclass(opener, ImageFile.StubImageFile):
        # The handler an application registered (Pillow has WMF's on Windows): on the class
        # since Pillow 13, in the plugin's module before.
        handler = getattr(opener, "_handler", None) or getattr(sys.modules.get(opener.__module__), "_handler", None)
        return handler is not None
    return True


def open_image(path: str | os.PathLike, check_size: SizeCheck | None = None) -> Image.Image:
    """Open and fully load an image file, with clear errors for what is not one.

    Args:
        check_size: called with the width and height from the file's header before the
            pixels are decoded (a size limit refuses a huge image before it is allocated).

    Raises:
        UnsupportedImageError: missing file, a directory, an empty, truncated or unknown file.
    """
    if not os.fspath(path):  # Path("") is the current folder
        raise UnsupportedImageError("the path of the image is empty")
    problem = data_as_path(path, "image")
    if problem:
        raise UnsupportedImageError(problem)
    p = Path(path)
    try:
        status = p.stat()
    except FileNotFoundError:
        raise UnsupportedImageError(f"{p}: no such file") from None
    except ValueError as exc:  # a NUL in the name
        raise UnsupportedImageError(f"cannot use the path {str(p)!r}: {exc}") from None
    except OSError as exc:  # a name too long, a folder on the way that cannot be searched
        raise UnsupportedImageError(f"cannot read {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(status.st_mode):
        raise UnsupportedImageError(f"{p} is a directory, not an image")
    if not stat.S_ISREG(status.st_mode):  # a pipe (/dev/stdin) or a device: its size is known only once read
        unknown = f"{p} is not an image Pillow can read"
        try:
            data = read_file(p, "image", check_start=lambda head: check_image_start(head, unknown, str(p)))
        except NicodecError as exc:
            raise UnsupportedImageError(str(exc)) from None
        if not data:
            raise UnsupportedImageError(f"{p} is empty")
        return _named(_open_and_load(io.BytesIO(data), p, unknown, check_size), p)
    if status.st_size == 0:
        raise UnsupportedImageError(f"{p} is empty")
    return _named(_open_and_load(p, p, f"{p} is not an image Pillow can read", check_size), p)


def _named(image: Image.Image, path: Path) -> Image.Image:
    image.filename = str(path)  # kept through the upright copy: warnings about its pixels name it
    return image


def check_image_start(head: bytes, message: str, name: str) -> None:
    """Refuse a stream whose first bytes no format Pillow reads starts with, before the rest is
    read (``/dev/zero``, a log file): no registered format accepts the prefix, and the formats
    that have no magic bytes to accept (TGA, IM, ...) cannot open it either. A ``.nic`` file is
    refused there too, as one (``name``: the stream's, in that message).

    Raises:
        UnsupportedImageError: with ``message``, or saying the stream is a ``.nic`` file.
    """
    from .format import MAGIC

    if head.startswith(MAGIC):  # named as what it is, before the rest is read
        raise UnsupportedImageError(_ALREADY_NIC.format(name=name))
    Image.init()
    if any(accept is not None and accept(head) for _, accept in Image.OPEN.values()):
        return
    try:
        Image.open(io.BytesIO(head)).close()  # reads a header only
    except UnidentifiedImageError:
        raise UnsupportedImageError(message) from None
    except Exception:  # noqa: BLE001 - identified, and then too large or cut short: the full read decides
        return


def is_binary_file(obj) -> bool:
    """Whether ``obj`` is a file object to read an image from (a file opened with ``"rb"``, a
    BytesIO; a text-mode one too, which :func:`read_binary_file` refuses)."""
    return callable(getattr(obj, "read", None)) and not isinstance(obj, Image.Image)


def is_buffer(obj) -> bool:
    """Whether ``obj`` exposes a buffer (a released memoryview too, which :func:`image_bytes` names)."""
    try:
        memoryview(obj)
    except TypeError:
        return False
    except ValueError:  # a released memoryview: image_bytes says so
        return True
    return True


def image_bytes(data) -> bytes:
    """An encoded image's bytes from bytes or another buffer of bytes (bytearray, memoryview,
    ``array.array("B")``), copied: the caller's buffer may change while it is coded.

    Raises:
        UnsupportedImageError: a released memoryview, or a buffer of wider items.
    """
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except ValueError as exc:  # a released memoryview
        raise UnsupportedImageError(f"cannot read the image bytes from the {type(data).__name__}: {exc}") from None
    if view.itemsize != 1:
        raise UnsupportedImageError(f"encode takes the bytes of an image file, not a buffer of {view.itemsize}-byte "
                                    f"items ({type(data).__name__})")
    return view.tobytes()


def read_binary_file(obj) -> bytes:
    """The rest of a file object's bytes (:func:`nicodec.files.read_binary_file`).

    Raises:
        UnsupportedImageError: opened as text, closed, not readable, or not giving bytes.
    """
    unknown = "the image data is not in a format Pillow can read"  # as open_image_bytes says of it
    return files.read_binary_file(obj, "image file", UnsupportedImageError,
                                  check_start=lambda head: check_image_start(head, unknown, "the image data"))


def open_image_bytes(data: bytes, check_size: SizeCheck | None = None) -> Image.Image:
    """Open and fully load an image held in memory (an upload, a blob from a database).

    Args:
        check_size: as for :func:`open_image`.

    Raises:
        UnsupportedImageError: empty, truncated, unknown or multi-frame data.
    """
    if not data:
        raise UnsupportedImageError("the image data is empty")
    return _open_and_load(io.BytesIO(data), "the image data", "the image data is not in a format Pillow can read",
                          check_size)


def _open_and_load(source, name, unidentified: str, check_size: SizeCheck | None = None,
                   retry: bool = True) -> Image.Image:
    """Pillow's open and load, with every failure turned into one named UnsupportedImageError. A
    PNG whose text Pillow refuses to read (a chunk that inflates past 1 MiB, or more than 64 MiB
    in all: its guards against decompression bombs) is opened again without that text, with a
    warning, rather than refused whole."""
    try:
        # Pillow warns of an image above its own limit (DecompressionBombWarning) as it opens
        # it, and refuses one above twice that: the caller's pixel limit judges the size first,
        # from the header, so that only an image the limit lets through meets Pillow's (the
        # warning is then left to the host program's filters, which are one for the whole
        # process and not nicodec's to change).
        if check_size is not None:
            size = _header_size(source)
            if size is not None:
                check_size(*size)
        img = Image.open(source)
        with img:
            if img.format == "NIC":  # with the Pillow plugin registered, else unidentified below
                raise UnsupportedImageError(_ALREADY_NIC.format(name=name))
            if check_size is not None:
                check_size(*img.size)  # read from the header: nothing decoded yet
            return _load(img, name)
    except PermissionError:
        raise UnsupportedImageError(f"cannot read {name}: permission denied") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(_ALREADY_NIC.format(name=name) if _starts_like_nic(source) else unidentified) from None
    except Image.DecompressionBombError as exc:
        if _starts_like_nic(source):  # the Pillow plugin's own limit, at its open
            raise UnsupportedImageError(_ALREADY_NIC.format(name=name)) from None
        raise LimitError(f"{name}: {exc} (Pillow opens no larger image, whatever the pixel limit)") from None
    except Image.DecompressionBombWarning as exc:  # the host program's filters make Pillow's warning an error
        raise LimitError(f"{name}: {exc} (Pillow's warning, which this program's warning filters make an "
                         "error)") from exc
    except _DAMAGED as exc:
        if retry and isinstance(exc, ValueError) and _PILLOW_TEXT_LIMITS.search(str(exc)):
            image = _open_without_text(source, name, unidentified, check_size)
            if image is not None:
                return image
        raise UnsupportedImageError(f"{name} could not be decoded ({exc})") from None


def _header_size(source) -> tuple[int, int] | None:
    """The size the format plugin that Pillow's ``Image.open`` would pick reads from the header
    (the same plugins tried in the same order), without Pillow's decompression-bomb check; None
    when no plugin identifies it (``Image.open`` then says why) or when the one that does is not
    Pillow's own (the check after ``Image.open`` then judges it)."""
    Image.init()
    try:
        fp = source if hasattr(source, "read") else open(source, "rb")
    except OSError:
        return None
    try:
        prefix = fp.read(16)
        for format_id in list(Image.ID):
            factory, accept = Image.OPEN[format_id]
            result = accept is None or accept(prefix)
            if not result or isinstance(result, str):  # a str: identified, and refused with that message
                continue
            if not getattr(factory, "__module__", "").startswith("PIL."):
                return None  # another package's plugin may decode the pixels as it opens (pillow-jxl-plugin does)
            fp.seek(0)
            try:
                return factory(fp, "").size
            except (SyntaxError, IndexError, TypeError, struct.error):  # not this format: as Image.open, the next
                continue
        return None
    except Exception:  # noqa: BLE001 - damaged or unreadable: Image.open says what is wrong
        return None
    finally:
        if fp is not source:
            fp.close()
        else:
            fp.seek(0)


_PILLOW_TEXT_LIMITS = re.compile(r"MAX_TEXT_CHUNK|MAX_TEXT_MEMORY")
"""Pillow's errors for PNG text beyond its limits (its iCCP chunk shares the first)."""
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _open_without_text(source, name, unidentified: str, check_size: SizeCheck | None) -> Image.Image | None:
    """:func:`_open_and_load` for a PNG without the text chunks Pillow refuses: first those that
    inflate past ``PngImagePlugin.MAX_TEXT_CHUNK``, then, if the rest is still too much, every
    text chunk but the XMP packet's; None when that does not help (the refusal was not the
    text's)."""
    try:
        data = source.getvalue() if isinstance(source, io.BytesIO) else Path(source).read_bytes()
    except OSError:
        return None
    for everything in (False, True):
        stripped, dropped = _png_without_text(data, everything)
        if not dropped:
            continue
        try:
            image = _open_and_load(io.BytesIO(stripped), name, unidentified, check_size, retry=False)
        except UnsupportedImageError as exc:
            if _PILLOW_TEXT_LIMITS.search(str(exc)):
                continue
            raise
        why = ("Pillow reads no text chunk that inflates past 1 MiB" if not everything
               else "Pillow reads at most 64 MiB of text in all")
        warnings.warn(f"{name}: its text {_listed(dropped)} is not kept: {why}", UserWarning, stacklevel=caller_outside())
        return image
    return None


def _png_without_text(data: bytes, everything: bool) -> tuple[bytes, list[str]]:
    """A PNG's bytes without its text chunks that inflate past Pillow's ``MAX_TEXT_CHUNK`` (with
    ``everything``, without any but the XMP packet's), and the keywords of those left out;
    the bytes as they are and no keyword for anything that is not a PNG's chunk list."""
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        return data, []
    kept, dropped, at = [signature], [], len(signature)
    while at + 12 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, end = data[at + 4 : at + 8], at + 12 + length
        if end > len(data):
            break
        if kind in _PNG_TEXT_CHUNKS:
            keyword, _, body = data[at + 8 : end - 4].partition(b"\0")
            name = keyword.decode("latin-1")
            if _inflates_past(kind, body, PngImagePlugin.MAX_TEXT_CHUNK) or (
                    everything and name != text_section.XMP_KEYWORD):
                dropped.append(name)
                at = end
                continue
        kept.append(data[at:end])
        at = end
    kept.append(data[at:])
    return b"".join(kept), dropped


def _inflates_past(kind: bytes, body: bytes, limit: int) -> bool:
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


_ALREADY_NIC = "{name} is a .nic file already: decode it first to code its pixels again (each generation loses quality)"


def _starts_like_nic(source) -> bool:
    """Whether ``source`` (a path or a BytesIO) starts with the ``.nic`` magic bytes."""
    from .format import MAGIC

    try:
        if isinstance(source, io.BytesIO):
            return source.getvalue()[: len(MAGIC)] == MAGIC
        with open(source, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _load(img: Image.Image, name) -> Image.Image:
    frames = getattr(img, "n_frames", 1)
    # MPO (phone and camera JPEGs) keeps previews as extra frames: the first is the photo.
    if frames > 1 and img.format != "MPO":
        raise UnsupportedImageError(
            f"{name} holds {frames} frames ({img.format}); nicodec codes single images: extract one frame first"
        )
    raw = _png_rawmode(img)
    if _tiff_turned(img):  # told by its tag before Pillow's load applies and drops it (a square one by nothing after)
        img._nicodec_turned = True  # type: ignore[attr-defined] - our own image, opened here
    img.load()
    if raw is not None and "transparency" in img.info:
        key = _fitted_png_colour_key(img.info["transparency"], raw, name)
        if key is None:
            del img.info["transparency"]
        else:
            img.info["transparency"] = key
    upright_img = _turn(img, name)
    if _gray_in_colour(img.mode, raw):
        upright_img._nicodec_gray = True  # type: ignore[attr-defined] - our own image, opened here
    return upright_img


def _gray_in_colour(mode: str, raw: str | None) -> bool:
    """A gray image that Pillow gives in a colour mode: a 16-bit gray and alpha PNG (raw
    ``LA;16B``) is RGBA, its samples cut to 8 bits."""
    return mode == "RGBA" and raw is not None and raw.startswith("LA;16")


def _png_rawmode(img: Image.Image) -> str | None:
    """A PNG's raw sample layout (``"L;2"``, ``"RGB;16B"``, ...), known before it is loaded."""
    if img.format != "PNG" or not img.tile:
        return None
    args = img.tile[0].args
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else None)


def _fitted_png_colour_key(key, raw: str, name):
    """A PNG's colour key (tRNS) on the scale of the pixels Pillow gives, or None where it cannot
    be kept: Pillow scales 2- and 4-bit gray samples to 0..255 but not the key (a 1-bit one
    Pillow 13 scales, older ones not: see :func:`_colour_key`), and reads 16-bit RGB as 8-bit
    while the key stays 16-bit, which cannot be matched any more (the transparency is then left
    out, with a warning: matching its top bytes would hide other pixels)."""
    if raw in ("L;2", "L;4") and isinstance(key, int) and key < 1 << int(raw[-1]):
        return key * 255 // ((1 << int(raw[-1])) - 1)
    if raw.startswith("RGB;16") and isinstance(key, tuple):
        warnings.warn(f"{name}: its colour key (PNG tRNS) names a 16-bit colour, and Pillow reads the pixels as "
                      "8-bit, so the transparency it marks cannot be kept; it is coded opaque", UserWarning,
                      stacklevel=caller_outside())
        return None
    return key


_GRAY_MODES = {"1", "L", "LA", "La", "I"} | set(_SIXTEEN_BIT)
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}


def upright(img: Image.Image) -> Image.Image:
    """A PIL image from the caller with its EXIF (or XMP) orientation applied (a copy when one is
    needed; the tag is removed from the copy's EXIF), as files opened by nicodec are."""
    try:
        return _turn(img, getattr(img, "filename", "") or "the image")
    except _DAMAGED as exc:
        raise UnsupportedImageError(f"the image could not be decoded ({exc})") from None


def _load_pixels(img: Image.Image) -> None:
    """Decode a caller's lazily opened PIL image now, so that a damaged or closed file is
    one named error rather than Pillow's own from somewhere inside the conversion."""
    try:
        img.load()
    except _DAMAGED as exc:
        raise UnsupportedImageError(f"the PIL image could not be decoded ({exc})") from None
    except (AssertionError, AttributeError) as exc:  # Pillow 13's check that the image still has its file
        if isinstance(exc, AttributeError) and getattr(img, "fp", True) is not None:
            raise  # not the closed file that Pillow before 13 fails on (its fp is None)
        raise UnsupportedImageError("the PIL image could not be decoded: its file was closed before it was loaded") from None


def _from_pil(img: Image.Image, name: str = "the image", key: Any = _INFO) -> tuple[np.ndarray, np.ndarray | None]:
    """The RGB pixels and alpha (None if opaque) of a PIL image; ``key``: its colour key where
    it is not ``info["transparency"]`` (:func:`_fitted_png_colour_key`; None for none)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        # 16-bit grayscale: keep the top 8 bits rather than Pillow's clipping convert().
        raw = np.asarray(img).astype(np.int64)
        outside = int(np.count_nonzero((raw < 0) | (raw > 65535)))
        if outside:  # only mode I (32-bit signed) can hold them
            warnings.warn(
                f"{name}: {outside:,} of its 32-bit samples lie outside 0 to 65,535 (from {int(raw.min()):,} "
                f"to {int(raw.max()):,}) and were clipped to that range, which is read as 16-bit",
                UserWarning,
                stacklevel=caller_outside(),
            )
        arr = np.clip(raw, 0, 65535)
        brightest = int(arr.max())
        if 0 < brightest < 256:
            # Most likely 8-bit values in a 16- or 32-bit container (a numpy int array made
            # into a PIL image): nothing of them survives the top 8 bits.
            warnings.warn(
                f"{name}: every 16-bit sample is below 256 (the brightest is {brightest} of 65,535), so it codes "
                "as black; if these are 8-bit values, convert the image to mode L first",
                UserWarning,
                stacklevel=caller_outside(),
            )
        alpha = None
        key = img.info.get("transparency") if key is _INFO else key
        if isinstance(key, int) and not isinstance(key, bool) and (arr == key).any():
            alpha = np.where(arr == key, 0, 255).astype(np.uint8)  # a PNG colour key (tRNS), which convert() drops
        arr = (arr >> 8).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2), alpha
    if mode == "F":
        raise UnsupportedImageError("floating-point images (mode F) are not supported; convert to 8-bit first")
    if mode in _PREMULTIPLIED:
        img = img.convert(_PREMULTIPLIED[mode])  # Pillow converts these to straight alpha only
    key = _colour_key(img, img.info.get("transparency") if key is _INFO else key)
    if key is not None:  # computed here: Pillow's convert() ignores a key in some modes ("1")
        rgb = np.asarray(img.convert("RGB"))
        hidden = (np.asarray(img.convert("L")) == key) if mode in ("1", "L") else (rgb == np.array(key)).all(axis=-1)
        return rgb, (np.where(hidden, 0, 255).astype(np.uint8) if hidden.any() else None)
    # An alpha band, or a palette with alpha (Pillow's convert("P") and quantize() of RGBA) or a
    # transparency key; not "A" in the mode's name, which LAB has too (its fourth byte is padding).
    # Other modes' keys were read above (_colour_key): one it refused is not transparency.
    if img.mode in ("LA", "PA", "RGBA") or (img.mode == "P" and img.has_transparency_data):
        try:
            rgba = np.asarray(img.convert("RGBA"))
        except (ValueError, TypeError) as exc:  # TypeError: a malformed key in info
            raise UnsupportedImageError(f"cannot convert an image of mode {mode} to RGB ({exc})") from None
        alpha = rgba[:, :, 3]
        return np.ascontiguousarray(rgba[:, :, :3]), (np.ascontiguousarray(alpha) if (alpha != 255).any() else None)
    if mode == "L":  # as convert("RGB") makes it, without reading a key _colour_key refused (a tuple: a TypeError)
        return np.repeat(np.asarray(img)[:, :, None], 3, axis=2), None
    try:
        return np.asarray(img.convert("RGB")), None
    except (ValueError, TypeError) as exc:  # modes Pillow opens but cannot convert, such as "La"; a malformed key
        raise UnsupportedImageError(f"cannot convert an image of mode {mode} to RGB ({exc})") from None


def _icc_space(icc: bytes) -> bytes | None:
    """An ICC profile's data colour space (``b"RGB "``, ``b"GRAY"``, ``b"CMYK"``, ...), from
    bytes 16 to 19 of its 128-byte header; None when it is too short to have one."""
    return bytes(icc[16:20]) if len(icc) >= 128 else None


def _colour_key(img: Image.Image, key) -> int | tuple[int, int, int] | None:
    """An L, 1 or RGB image's colour key ``key`` (a PNG's tRNS: one gray value, or one RGB triple,
    that stands for transparent), on the 0..255 scale of its pixels; None if it has none."""
    if img.mode in ("L", "1"):
        if img.mode == "1" and key == 1 and not isinstance(key, bool):
            return 255  # a 1-bit PNG's white as Pillow before 13 gives it (13 scales it to 255)
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 255:
            return key
    elif img.mode == "RGB":
        if isinstance(key, tuple) and len(key) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in key):
            return key
    return None


@dataclass(frozen=True)
class Picture:
    """What nicodec codes from an image.

    Attributes:
        rgb: (H, W, 3) uint8, coded by the networks.
        alpha: (H, W) uint8 when the image has transparency (kept losslessly), else None.
        icc_profile: the ICC colour profile's bytes, or None.
        exif: EXIF bytes (orientation already applied to the pixels and reset), or None.
        grayscale: the source had one colour channel (``rgb`` then has three equal ones).
        xmp: the XMP packet's bytes (its ``tiff:Orientation`` removed, as the EXIF tag is), or None.
        text: text metadata, keyword to text (PNG's text chunks, a JPEG's or GIF's comment as
            ``Comment``; :mod:`nicodec.text`), or None.
        resolution: the pixel density (Pillow's ``info["dpi"]``; :mod:`nicodec.resolution`),
            or None.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    grayscale: bool = False
    xmp: bytes | None = None
    text: dict[str, str] | None = None
    resolution: resolution_section.Resolution | None = None


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
# element: the forms XMP's RDF/XML allows, of which Pillow reads ="N" and >N<.
_XMP_ORIENTATION = re.compile(
    rb"""\s+tiff:Orientation\s*=\s*(?:"[^"<>]*"|'[^'<>]*')"""
    rb"|<tiff:Orientation\s*>[^<]*</tiff:Orientation\s*>|<tiff:Orientation\s*/>"
)
_TURNS = frozenset(range(2, 9))  # the EXIF orientations that turn or mirror the pixels
_QUARTER_TURNS = frozenset(range(5, 9))  # those that swap the picture's width and height
_TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
"""What each orientation asks of the stored picture to show it upright (as ``exif_transpose``)."""
_EXIF_ERRORS = (*_DAMAGED, AttributeError, OverflowError)
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
    string of Unicode, more than 16 MiB in all) are left out, with a warning unless ``warn`` is
    false."""
    chunks = getattr(img, "text", None)
    entries = {k: v for k, v in chunks.items() if k not in text_section.RESERVED} if isinstance(chunks, dict) else {}
    # A comment in info only where the image has no text of its own (JPEG, GIF): nicodec's
    # decoded images have both, and their text, which the caller may have edited, rules.
    comment = img.info.get("comment") if not isinstance(chunks, dict) else None
    if isinstance(comment, (bytes, bytearray)):
        comment = bytes(comment).rstrip(b"\0")  # some writers end the comment with a NUL
        try:
            comment = comment.decode("utf-8")
        except UnicodeDecodeError:
            comment = comment.decode("latin-1")
    if isinstance(comment, str) and comment and "Comment" not in entries:
        entries["Comment"] = comment
    unusable = [keyword for keyword, value in entries.items()
                if not (isinstance(keyword, str) and text_section.usable_keyword(keyword) and _unicode(value))]
    for keyword in unusable:
        del entries[keyword]
    if unusable and warn:
        warnings.warn(f"{name}: its text {_listed(unusable)} cannot be kept (a keyword is 1 to 79 Latin-1 "
                      "characters, the text Unicode)", UserWarning, stacklevel=caller_outside())
    size = sum(5 + len(k) + len(v.encode("utf-8")) for k, v in entries.items())
    if size > text_section.MAX_BYTES:
        if warn:
            warnings.warn(f"{name}: its text takes {size:,} bytes, more than a .nic file holds "
                          f"({text_section.MAX_BYTES:,}); none of it is kept", UserWarning, stacklevel=caller_outside())
        return None
    return entries or None


def _unicode(value) -> bool:
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


def _listed(keywords) -> str:
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


def _warn_unkept(img: Image.Image, name: str, has_profile: bool, iptc: bool) -> None:
    """Warn of metadata a ``.nic`` file does not keep and a user may miss: IPTC data (captions,
    keywords, credits; most editors write the same fields into the XMP, which is kept), and a PNG's
    gamma and chromaticities without a colour profile or sRGB chunk (decoders show the picture as
    sRGB, which only a gamma near 1/2.2 and sRGB's primaries and white match). ``iptc``: a TIFF's
    own directory holds an IPTC tag."""
    resources = img.info.get("photoshop")
    if iptc or (isinstance(resources, dict) and _iptc_has_data(resources.get(_IPTC_RESOURCE))):
        warnings.warn(f"{name}: its IPTC data is not kept (editors mostly write the same fields into the XMP, "
                      "which is)", UserWarning, stacklevel=caller_outside())
    gamma = img.info.get("gamma")
    if (isinstance(gamma, (int, float)) and not has_profile and "srgb" not in img.info  # PNG's reader sets them
            and gamma > 0 and abs(gamma * 2.2 - 1) > 0.01):
        warnings.warn(f"{name}: its gamma (PNG gAMA {gamma:g}) is not kept; the decoded picture is shown as "
                      "sRGB, whose gamma is about 1/2.2", UserWarning, stacklevel=caller_outside())
    chromaticity = img.info.get("chromaticity")  # white x, y, then red, green and blue x, y
    if (isinstance(chromaticity, tuple) and len(chromaticity) == 8 and not has_profile and "srgb" not in img.info
            and all(isinstance(v, (int, float)) for v in chromaticity)
            and max(abs(a - b) for a, b in zip(chromaticity, _SRGB_CHROMATICITY)) > 0.01):
        warnings.warn(f"{name}: its primaries and white point (PNG cHRM) are not kept; the decoded picture is "
                      "shown with sRGB's", UserWarning, stacklevel=caller_outside())


def _density_of(img: Image.Image, turned: bool = False) -> resolution_section.Resolution | None:
    """The image's density: ``info["dpi"]``, but for a JPEG whose JFIF segment gives none, its
    EXIF's ``XResolution`` and ``YResolution`` in the EXIF's ``ResolutionUnit`` (inches when it
    is absent, as the EXIF standard says). Pillow reads that density for one axis and only with
    the unit given, and puts 72 dpi where it finds none, as it puts 1 dpi for a TIFF without
    one (and for a missing axis): defaults, not the image's (1 dpi is taken for one in copies of
    a TIFF, which no longer say their format, by the compression Pillow's TIFF reader puts in
    their info; a JPEG's 72 cannot be told from a real one there). A
    TIFF Pillow turned a quarter as it loaded (``turned``, or told by :func:`_tiff_turned`) has
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
        return density.turned() if density is not None and (turned or _tiff_turned(img)) else density
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
    """A copy of a caller's image (turned upright) that :func:`read_picture` reads as it reads
    the image: Pillow's ``copy()`` keeps the pixels and ``info`` but leaves behind the text
    (``text``), a TIFF's EXIF (its own tags) and the format that tells Pillow's stand-in
    densities from real ones, so the text, that EXIF (as ``info["exif"]``) and the density as
    read (as ``info["dpi"]``) go with it."""
    density = _density_of(img)  # while the format is known
    copy = img.copy()
    text_section.carry(img, copy)
    own = _tiff_exif(img)
    if own is not None and "exif" not in copy.info:
        copy.info["exif"] = own
    copy.info.pop("dpi", None)
    if density is not None:
        copy.info["dpi"] = density.dpi
    return copy


def _exif_copy(img: Image.Image, name: str) -> Image.Exif:
    """A copy of the image's EXIF (the caller's image keeps its own); empty, with a warning, when
    it is damaged: when Pillow cannot read it or cannot write it back. The raw EXIF is parsed
    afresh, since Pillow keeps its own parse, a failed one too."""
    raw = img.info.get("exif")
    try:
        if isinstance(raw, (bytes, bytearray)) and raw:
            Image.Exif().load(bytes(raw))
        tags = Image.Exif()
        tags.load(img.getexif().tobytes())
        return tags
    except _EXIF_ERRORS:
        warnings.warn(f"{name}: its EXIF data is damaged and is not kept", UserWarning, stacklevel=caller_outside())
        return Image.Exif()


def quarter_turned(img: Image.Image) -> bool:
    """Whether :func:`upright` turns this image a quarter, by its own EXIF orientation (5 to 8)."""
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
        warnings.warn("the EXIF data given to save is damaged and is not kept", UserWarning, stacklevel=caller_outside())
        return None


def _tiff_turned(img: Image.Image) -> bool:
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
    :func:`read_picture` keeps of it what a camera's EXIF has); None for other images, and for
    tags Pillow cannot write."""
    if img.format != "TIFF":
        return None
    try:
        tags = Image.Exif()
        tags.load(img.getexif().tobytes())
        if _tiff_turned(img):
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


def _turn(img: Image.Image, name: str = "the image") -> Image.Image:
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
        tags = turned.getexif()
        if orientation in _QUARTER_TURNS and (ExifTags.Base.XResolution in tags or ExifTags.Base.YResolution in tags):
            _swap_resolution_tags(tags)
            turned.info["exif"] = tags.tobytes()
    except _EXIF_ERRORS:
        turned = img.transpose(_TRANSPOSES[orientation])
        turned.info = {key: value for key, value in img.info.items()
                       if key not in ("exif", "Raw profile type exif")}  # PNG's two forms of it
        warnings.warn(f"{name}: its EXIF data is damaged and is not kept (its orientation is applied)",
                      UserWarning, stacklevel=caller_outside())
    text_section.carry(img, turned)
    density = _density_of(img)
    if density is None:
        turned.info.pop("dpi", None)
    else:
        turned.info["dpi"] = (density.turned() if orientation in _QUARTER_TURNS else density).dpi
    xmp = read_xmp(turned.info)
    if xmp is not None:
        turned.info.pop(text_section.XMP_KEYWORD, None)
        turned.info["xmp"] = _XMP_ORIENTATION.sub(b"", xmp)
    return turned


def read_picture(image, *, strip: bool = False, check_size: SizeCheck | None = None) -> Picture:
    """Pixels, alpha and metadata from a path, encoded image bytes, a binary file object (read
    from where it stands to its end), a PIL image or a numpy array.

    Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB; an alpha
    channel is kept when it is not fully opaque. EXIF orientation is applied to the
    pixels (of files and of PIL images; the caller's image is not changed) and removed
    from the EXIF and XMP kept. ``strip`` drops the ICC profile, EXIF, XMP, text and
    resolution. ``check_size`` is called with the width and height before any pixel is decoded
    or converted.

    Raises:
        UnsupportedImageError: anything that cannot be read as a photo.
    """
    icc = exif = xmp = text = density = None
    key: Any = _INFO
    turned = gray = False
    grayscale = False
    name = "the image"
    if isinstance(image, (str, os.PathLike)):
        name = str(image)
        image = open_image(image, check_size)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        image = open_image_bytes(image_bytes(image), check_size)
    elif isinstance(image, Image.Image):
        name = getattr(image, "filename", "") or name
        if check_size is not None:
            check_size(*image.size)
        turned = _tiff_turned(image)  # before a load turns it and drops the tag
        raw = _png_rawmode(image)  # before a load drops the tiles that tell it
        gray = _gray_in_colour(image.mode, raw) or getattr(image, "_nicodec_gray", False)
        if gray:  # noted on the caller's image, whose tiles the load below drops: its next encode is the same
            image._nicodec_gray = True  # type: ignore[attr-defined]
        _load_pixels(image)
        if raw is not None and "transparency" in image.info:  # fitted as a file's is, the caller's image unchanged
            key = _fitted_png_colour_key(image.info["transparency"], raw, name)
        image = upright(image)
    elif isinstance(image, np.ndarray):
        image = np.asarray(image)  # a subclass (np.matrix) as a plain array
        if check_size is not None and image.ndim in (2, 3):
            check_size(image.shape[1], image.shape[0])
    elif is_binary_file(image):
        name = image.name if isinstance(getattr(image, "name", None), str) else name
        image = open_image_bytes(read_binary_file(image), check_size)
    elif is_buffer(image):  # array.array("B"), another object holding the file's bytes
        image = open_image_bytes(image_bytes(image), check_size)
    if isinstance(image, Image.Image):
        grayscale = image.mode in _GRAY_MODES or gray or getattr(image, "_nicodec_gray", False)
        arr, alpha = _from_pil(image, name, key)
        if not strip:
            icc = image.info.get("icc_profile") or None
            if not isinstance(icc, (bytes, bytearray)):
                icc = None  # not a profile (an application's own value in info)
            elif _icc_space(icc) not in (None, b"GRAY" if grayscale else b"RGB "):
                # A CMYK (or Lab, ...) profile describes pixels that are RGB now: written back
                # onto the decoded image, it would be rejected or misapplied by colour-managed viewers.
                icc = None
            tags = _exif_copy(image, name)
            turned = turned or _tiff_turned(image)  # turned by Pillow as it loaded: its density follows
            if turned:
                _swap_resolution_tags(tags)
            orientation = tags.get(ExifTags.Base.Orientation) is not None  # 1, or one _turn could not apply
            own = 273 in tags or 324 in tags  # strips or tiles: a TIFF's own directory, not a camera's EXIF
            iptc = own and _IPTC_TAG in tags and _iptc_has_data(_raw_tag(tags[_IPTC_TAG]))
            _warn_unkept(image, name, icc is not None, iptc=iptc)  # the tag is cut below
            if own:
                for tag in set(tags) - _TIFF_KEPT:
                    del tags[tag]
            for tag in _TIFF_LAYOUT:
                tags.pop(tag, None)
            tags.pop(ExifTags.Base.Orientation, None)  # the pixels are upright now
            if len(tags):  # an EXIF of its orientation alone leaves none
                try:
                    exif = tags.tobytes()
                except _EXIF_ERRORS:
                    warnings.warn(f"{name}: its EXIF data is damaged and is not kept", UserWarning, stacklevel=caller_outside())
            xmp = _xmp(image.info, orientation)
            text = read_text(image, name)
            density = _density_of(image, turned)
    elif isinstance(image, np.ndarray):
        arr, alpha = image, None
        if arr.dtype != np.uint8:
            hint = (" (floats from 0 to 1: np.round(image * 255).astype(np.uint8))"
                    if arr.dtype.kind == "f" else "")
            raise UnsupportedImageError(f"numpy images must be uint8, not {arr.dtype}{hint}")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 2:
            arr, grayscale = np.repeat(arr[:, :, None], 3, axis=2), True
        elif arr.ndim == 3 and arr.shape[2] == 2:  # gray and alpha, as decode gives them back
            arr, alpha = _from_pil(Image.fromarray(np.ascontiguousarray(arr), "LA"))
            grayscale = True
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr, alpha = _from_pil(Image.fromarray(arr, "RGBA"))
        elif arr.ndim != 3 or arr.shape[2] != 3:
            raise UnsupportedImageError(
                f"numpy images must be (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4), not {arr.shape}")
    else:
        raise UnsupportedImageError(
            f"cannot encode a {type(image).__name__}: give a path, image bytes, a binary file, a PIL image or a "
            "numpy array"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UnsupportedImageError(f"the image is empty ({arr.shape[1]}x{arr.shape[0]})")
    return Picture(np.ascontiguousarray(arr), alpha, icc, exif, grayscale, xmp, text, density)


def to_rgb(image) -> np.ndarray:
    """Only the (H, W, 3) uint8 pixels of :func:`read_picture` (alpha and metadata dropped)."""
    return read_picture(image, strip=True).rgb
