"""Turning what users hand us (paths, PIL images, numpy arrays) into RGB pixels (the metadata kept
beside them is read by :mod:`nicodec.metadata`)."""

from __future__ import annotations

import functools
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
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from . import metadata
from .errors import DAMAGED, LimitError, NicodecError, UnsupportedImageError
from . import files
from . import resolution as resolution_section
from . import text as text_section
from .files import data_as_path, read_file
from .sessions import caller_outside

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")

_INFO: Any = object()
"""As a colour key: the image's own, ``info["transparency"]``."""

SizeCheck = Callable[[int, int], None]
"""Called with an image's width and height before its pixels are decoded; raises to refuse it."""


HEIF_INSTALL = 'pip install "nicodec[heif]" adds pillow-heif, which reads'
"""How to read HEIF: the start of what a refusal (:data:`HEIF_HINT`) and a folder's note say."""
HEIF_HINT = f" (a HEIF/HEIC image: {HEIF_INSTALL} them)"


@functools.cache
def register_plugins() -> None:
    """Register with Pillow the plugins nicodec reads more formats with, where they are installed:
    pillow-heif's opener of HEIF (HEIC, the photos of phones), unless the program registered one
    already (with its own options). Once per process; an install that cannot be used is warned of."""
    if "HEIF" in Image.OPEN:
        return
    try:
        import pillow_heif
    except ImportError:
        return
    try:
        pillow_heif.register_heif_opener()
    except Exception as exc:  # noqa: BLE001 - a broken install of another package: HEIF is not read
        _HEIF_PROBLEM.append(str(exc) or type(exc).__name__)
        warnings.warn(f"pillow-heif is installed but cannot be used ({_HEIF_PROBLEM[0]}); HEIF/HEIC images are not "
                      "read", RuntimeWarning, stacklevel=caller_outside())


_HEIF_PROBLEM: list[str] = []
"""Why pillow-heif, installed, could not be registered (:func:`register_plugins`), if it could not."""


def heif_hint(head: bytes) -> str:
    """What would read a HEIF file whose first bytes are ``head``, where no plugin reads HEIF
    (:data:`HEIF_HINT`, or that pillow-heif cannot be used here); else ``""``."""
    if head[4:8] != b"ftyp" or head[8:12] not in metadata.HEIF_BRANDS or "HEIF" in Image.OPEN:
        return ""
    if _HEIF_PROBLEM:
        return f" (a HEIF/HEIC image: pillow-heif is installed but cannot be used: {_HEIF_PROBLEM[0]})"
    return HEIF_HINT


def readable_suffixes() -> list[str]:
    """The file suffixes of the images Pillow opens and loads (``.png``, ``.jpg``, ...), ``.nic``
    excepted: the images nicodec codes. Formats Pillow only identifies are left out, so that a
    folder's videos and data files are passed over rather than failed: MPEG video, the stubs of
    HDF5, GRIB, BUFR and WMF without a handler registered, and EPS without Ghostscript."""
    register_plugins()
    return sorted(ext for ext, fmt in Image.registered_extensions().items()
                  if ext != ".nic" and _opener(fmt) in Image.OPEN and _loads(_opener(fmt)))


def _opener(fmt: str) -> str:
    """The format whose opener Pillow opens ``fmt`` with: its own, but JPEG's for MPO (a phone's
    or camera's JPEG with previews or a second view as more frames), which has none."""
    return "JPEG" if fmt == "MPO" else fmt


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
        LimitError: a named pipe or a device that gives more than the 1 GiB nicodec reads.
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
    if not stat.S_ISREG(status.st_mode) or status.st_size == 0:
        # A pipe (/dev/stdin) or a device, or a file of /proc, whose size is 0 whatever it holds:
        # its size is known only once read.
        unknown = f"{p} is not an image Pillow can read"
        try:
            data = read_file(p, "image", check_start=lambda head: check_image_start(head, unknown, str(p)))
        except LimitError:  # longer than nicodec reads: "too large", as from a stream or a .nic path
            raise
        except NicodecError as exc:
            raise UnsupportedImageError(str(exc)) from None
        if not data:
            raise UnsupportedImageError(f"{p} is empty")
        return _named(_open_and_load(io.BytesIO(data), p, unknown, check_size), p)
    # Read through a file object of our own, not the path: given a path, Pillow maps raw
    # formats (PGM, PPM, BMP, ...) into memory, and a file cut short meanwhile ended the
    # process with SIGBUS; and the file is looked at before and after, as a batch does, so
    # that rows read before and after another program rewrote it are never one picture.
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below, once the pixels are loaded
    except PermissionError:
        raise UnsupportedImageError(f"cannot read {p}: permission denied") from None
    except OSError as exc:
        raise UnsupportedImageError(f"cannot read {p}: {exc.strerror or exc}") from None
    with f:
        before = _identity(os.fstat(f.fileno()))
        image = _open_and_load(p, p, f"{p} is not an image Pillow can read", check_size, fp=f)
        if _identity(os.fstat(f.fileno())) != before:
            raise UnsupportedImageError(f"{p} changed while it was read (another program writing it?); "
                                        "read it again once it is written")
    return _named(image, p)


def _identity(status: os.stat_result) -> tuple[int, int]:
    """A file's size and modification time: either changes as it is written."""
    return status.st_size, status.st_mtime_ns


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
    register_plugins()
    Image.init()
    if any(accept is not None and accept(head) for _, accept in Image.OPEN.values()):
        return
    try:
        Image.open(io.BytesIO(head)).close()  # reads a header only
    except UnidentifiedImageError:
        raise UnsupportedImageError(message + heif_hint(head)) from None
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
                   retry: bool = True, fp=None) -> Image.Image:
    """Pillow's open and load, with every failure turned into one named UnsupportedImageError. A
    PNG whose text Pillow refuses to read (a chunk that inflates past 1 MiB, or more than 64 MiB
    in all: its guards against decompression bombs) is opened again without that text, with a
    warning, rather than refused whole. ``fp``: the file ``source`` names, opened, for Pillow to
    read the image from (the header checks read ``source`` itself)."""
    register_plugins()
    try:
        # Pillow warns of an image above its own limit (DecompressionBombWarning) as it opens
        # it, and refuses one above twice that: the caller's pixel limit judges the size first,
        # from the header, so that only an image the limit lets through meets Pillow's (the
        # warning is then left to the host program's filters, which are one for the whole
        # process and not nicodec's to change).
        if check_size is not None:
            size = header_size(source)
            if size is not None:
                check_size(*size)
        img = Image.open(source if fp is None else fp)
        with img:
            if img.format == "NIC":  # with the Pillow plugin registered, else unidentified below
                raise UnsupportedImageError(_ALREADY_NIC.format(name=name))
            if check_size is not None:
                check_size(*img.size)  # read from the header: nothing decoded yet
            loaded = _load(img, name)
            if img.format in ("PNG", "AVIF", "HEIF"):
                loaded._nicodec_cicp = metadata.signalled_colour(_prefix(source, fp))  # type: ignore[attr-defined]
            return loaded
    except PermissionError:
        raise UnsupportedImageError(f"cannot read {name}: permission denied") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(_ALREADY_NIC.format(name=name) if _starts_like_nic(source)
                                    else unidentified + heif_hint(_prefix(source, fp, 16))) from None
    except Image.DecompressionBombError as exc:
        if _starts_like_nic(source):  # the Pillow plugin's own limit, at its open
            raise UnsupportedImageError(_ALREADY_NIC.format(name=name)) from None
        raise LimitError(f"{name}: {exc} (Pillow opens no larger image, whatever the pixel limit)") from None
    except Image.DecompressionBombWarning as exc:  # the host program's filters make Pillow's warning an error
        raise LimitError(f"{name}: {exc} (Pillow's warning, which this program's warning filters make an "
                         "error)") from exc
    except DAMAGED as exc:
        if retry and isinstance(exc, ValueError) and _PILLOW_TEXT_LIMITS.search(str(exc)):
            image = _open_without_text(source, name, unidentified, check_size)
            if image is not None:
                return image
        raise UnsupportedImageError(f"Pillow could not read the pixels of {name} ({exc})") from None


def _prefix(source, fp=None, size: int = 1 << 16) -> bytes:
    """The first ``size`` bytes of an image file (a path, or a file object, left where it
    stood); nothing where it cannot be read again."""
    stream = fp if fp is not None else source if hasattr(source, "read") else None
    try:
        if stream is None:
            with open(source, "rb") as f:
                return f.read(size)
        at = stream.tell()
        try:
            stream.seek(0)
            return stream.read(size)
        finally:
            stream.seek(at)
    except (OSError, ValueError):  # ValueError: closed
        return b""


def header_size(source) -> tuple[int, int] | None:
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
    """:func:`_open_and_load` for a PNG without the chunks Pillow refuses: first the text chunks
    that inflate past ``PngImagePlugin.MAX_TEXT_CHUNK`` and an ICC profile that does (read here
    instead, and kept), then, if the rest is still too much, every text chunk but the XMP
    packet's; None when that does not help (the refusal was not the text's)."""
    try:
        data = source.getvalue() if isinstance(source, io.BytesIO) else Path(source).read_bytes()
    except OSError:
        return None
    for everything in (False, True):
        stripped, dropped, profile = _png_without_text(data, everything)
        if not dropped and profile is None:
            continue
        try:
            image = _open_and_load(io.BytesIO(stripped), name, unidentified, check_size, retry=False)
        except UnsupportedImageError as exc:
            if _PILLOW_TEXT_LIMITS.search(str(exc)):
                continue
            raise
        if dropped:
            why = ("Pillow reads no text chunk that inflates past 1 MiB" if not everything
                   else "Pillow reads at most 64 MiB of text in all")
            warnings.warn(f"{name}: its text {metadata.listed(dropped)} is not kept: {why}", UserWarning,
                          stacklevel=caller_outside())
        if profile:
            image.info["icc_profile"] = profile
        elif profile is not None:
            warnings.warn(f"{name}: its ICC colour profile is not kept: it is damaged, or inflates past "
                          f"{LARGEST_PNG_PROFILE // 2**20} MiB", UserWarning, stacklevel=caller_outside())
        return image
    return None


LARGEST_PNG_PROFILE = 64 * 2**20
"""The most bytes a PNG's ICC profile (``iCCP``) is inflated to where Pillow reads none past
``PngImagePlugin.MAX_TEXT_CHUNK`` (1 MiB; the profiles of printers and scanners that hold
large lookup tables take a few)."""


def _png_without_text(data: bytes, everything: bool) -> tuple[bytes, list[str], bytes | None]:
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
        if kind in _PNG_TEXT_CHUNKS:
            keyword, _, body = data[at + 8 : end - 4].partition(b"\0")
            name = keyword.decode("latin-1")
            if _inflates_past(kind, body, PngImagePlugin.MAX_TEXT_CHUNK) or (
                    everything and name != text_section.XMP_KEYWORD):
                dropped.append(name)
                at = end
                continue
        elif kind == b"iCCP" and profile is None:
            compressed = data[at + 8 : end - 4].partition(b"\0")[2][1:]  # after the name and the method
            if _inflated(compressed, PngImagePlugin.MAX_TEXT_CHUNK) is None:
                profile = _inflated(compressed, LARGEST_PNG_PROFILE) or b""
                at = end
                continue
        kept.append(data[at:end])
        at = end
    kept.append(data[at:])
    return b"".join(kept), dropped, profile


def _inflated(compressed: bytes, limit: int) -> bytes | None:
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
    if metadata.tiff_turned(img):  # told by its tag before Pillow's load applies and drops it (a square one by nothing after)
        img._nicodec_turned = True  # type: ignore[attr-defined] - our own image, opened here
    img.load()
    if raw is not None and "transparency" in img.info:
        key = _fitted_png_colour_key(img.info["transparency"], raw, name)
        if key is None:
            del img.info["transparency"]
        else:
            img.info["transparency"] = key
    upright_img = metadata.turn(img, name)
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
        return metadata.turn(img, getattr(img, "filename", "") or "the image")
    except DAMAGED as exc:
        raise UnsupportedImageError(f"Pillow could not read the pixels of the image ({exc})") from None


def _load_pixels(img: Image.Image) -> None:
    """Decode a caller's lazily opened PIL image now, so that a damaged or closed file is
    one named error rather than Pillow's own from somewhere inside the conversion."""
    try:
        img.load()
    except DAMAGED as exc:
        raise UnsupportedImageError(f"Pillow could not read the pixels of the PIL image ({exc})") from None
    except (AssertionError, AttributeError) as exc:  # Pillow 13's check that the image still has its file
        if isinstance(exc, AttributeError) and getattr(img, "fp", True) is not None:
            raise  # not the closed file that Pillow before 13 fails on (its fp is None)
        raise UnsupportedImageError("Pillow could not read the pixels of the PIL image: its file was closed before it was loaded") from None


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
        brightest = int(arr.max(initial=0))  # initial: an empty image is refused below, not here
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
    if mode == "CMYK":
        managed = _cmyk_through_profile(img, name)
        if managed is not None:
            return managed, None
    try:
        return np.asarray(img.convert("RGB")), None
    except (ValueError, TypeError) as exc:  # modes Pillow opens but cannot convert, such as "La"; a malformed key
        raise UnsupportedImageError(f"cannot convert an image of mode {mode} to RGB ({exc})") from None


_INTENT_SHOWN = {0: 0, 1: 1, 2: 2, 3: 1}
"""The rendering intent a CMYK image is converted in, by the one its profile's header names
(perceptual, relative colorimetric, saturation, absolute colorimetric; another value:
perceptual). Absolute colorimetric would tint the whole picture with the paper's white (a
proof's simulation, which viewers do not show): relative colorimetric instead."""


def _cmyk_through_profile(img: Image.Image, name: str) -> np.ndarray | None:
    """The sRGB pixels of a CMYK image through the CMYK colour profile it carries, by LittleCMS
    (Pillow's ImageCms), in the rendering intent the profile's header names (``_INTENT_SHOWN``),
    as colour-managed viewers show it; None when it carries none, or one that cannot be applied
    (warned): Pillow's formula then converts it. The formula takes the inks for ideal ones (255 -
    C, 255 - M and 255 - Y, darkened by K), which makes a press's CMYK (a stock photo's, a print
    job's) garish."""
    # The Pillow plugin's first, where save(icc_profile=...) replaced the profile kept:
    icc = getattr(img, "_nicodec_cmyk_profile", None) or img.info.get("icc_profile")
    if not isinstance(icc, (bytes, bytearray)) or metadata.icc_space(icc) != b"CMYK":
        return None
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc)))
        intent = profile.profile.rendering_intent
        rgb = ImageCms.profileToProfile(img, profile, ImageCms.createProfile("sRGB"), outputMode="RGB",
                                        renderingIntent=_INTENT_SHOWN.get(intent, 0))
    except (ImageCms.PyCMSError, ImportError, OSError, ValueError, TypeError) as exc:  # ImportError: Pillow built
        # without LittleCMS; OSError, ValueError: a damaged profile
        why = str(exc).rstrip(".") or type(exc).__name__
        warnings.warn(f"{name}: its CMYK colour profile cannot be applied ({why}), so its colours are converted by "
                      "Pillow's plain formula", UserWarning, stacklevel=caller_outside())
        return None
    return np.asarray(rgb)


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
        gray_as_rgb: the source was a colour image whose three channels are equal everywhere
            (``grayscale`` is then true too): coded as gray, and decoded back to three channels
            (:meth:`nicodec.Codec.encode` finds it, after the fill under transparent pixels).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    grayscale: bool = False
    xmp: bytes | None = None
    text: dict[str, str] | None = None
    resolution: resolution_section.Resolution | None = None
    gray_as_rgb: bool = False


def read_picture(image, *, strip: bool = False, check_size: SizeCheck | None = None) -> Picture:
    """:func:`_read_picture`, whose errors name the image given by its path (some named it,
    others, such as a mode it cannot code or the pixel limit, did not), as ``decode`` names a
    ``.nic`` file and the command line every input."""
    if not isinstance(image, (str, os.PathLike)) or data_as_path(image, "image") is not None:
        return _read_picture(image, strip=strip, check_size=check_size)  # no path to name (a str of data: its own error)
    try:
        return _read_picture(image, strip=strip, check_size=check_size)
    except NicodecError as exc:
        from .stdio import names

        shown = os.fsdecode(image)  # "-" too: the API reads a file of that name, not standard input
        if shown and not names(str(exc), shown):  # (an empty path is named so by the error)
            exc.args = (f"{shown}: {exc}",)
        raise


def _read_picture(image, *, strip: bool = False, check_size: SizeCheck | None = None) -> Picture:
    """Pixels, alpha and metadata from a path, encoded image bytes (a one-dimensional uint8
    array too), a binary file object (read from where it stands to its end), a PIL image or a
    numpy array of pixels.

    Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB (CMYK through its
    CMYK profile where it carries one); an alpha channel is kept when it is not fully opaque.
    EXIF orientation is applied to the pixels (of files and of PIL images; the caller's image is
    not changed) and removed from the EXIF and XMP kept. ``strip`` drops the ICC profile, EXIF,
    XMP, text and resolution. ``check_size`` is called with the width and height before any
    pixel is decoded or converted.

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
        turned = metadata.tiff_turned(image)  # before a load turns it and drops the tag
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
        if image.ndim == 1 and image.dtype == np.uint8:  # a file's bytes (np.fromfile), as decode takes them: never pixels
            try:
                image = open_image_bytes(image.tobytes(), check_size)
            except UnsupportedImageError as exc:  # pixels flattened, perhaps
                raise UnsupportedImageError(
                    f"{exc} (a one-dimensional uint8 array is read as an image file's bytes; numpy images of pixels "
                    "are (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4))") from None
        elif check_size is not None and image.ndim in (2, 3):
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
            icc, exif, xmp, text, density = metadata.kept(image, name, grayscale=grayscale, turned=turned)
    elif isinstance(image, np.ndarray):
        arr, alpha = image, None
        if arr.dtype != np.uint8:
            hint = (" (a one-dimensional array is read as an image file's bytes: np.fromfile(path, dtype=np.uint8))"
                    if arr.ndim == 1 else " (floats from 0 to 1: np.round(image * 255).astype(np.uint8))"
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


def equal_channels(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) image's three channels are equal everywhere (a sparse sample first:
    a colour photo differs there, and is not compared whole)."""
    for rows in (rgb[::61, ::59], rgb):
        if not (np.array_equal(rows[:, :, 0], rows[:, :, 1]) and np.array_equal(rows[:, :, 1], rows[:, :, 2])):
            return False
    return True

