"""Turning what users hand us (paths, PIL images, numpy arrays) into RGB pixels (the metadata kept
beside them is read by :mod:`nicodec.metadata`)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import files, metadata, png_chunks
from . import resolution as resolution_section
from .errors import DAMAGED, LimitError, NicodecError, UnsupportedImageError
from .files import data_as_path, read_file
from .inputs import METADATA_KINDS, Strip, stripped_kinds
from .pil_pixels import (GRAY_MODES, INFO, fitted_png_colour_key, from_pil, gray_in_colour, load_pixels, png_rawmode,
                         upright)
from .plugins import heif_hint, register_plugins

SizeCheck = Callable[[int, int], None]
"""Called with an image's width and height before its pixels are decoded; raises to refuse it."""


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
                head = _png_cicp_head(source, fp) if img.format == "PNG" else _prefix(source, fp)
                loaded._nicodec_cicp = metadata.signalled_colour(head)  # type: ignore[attr-defined]
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


PNG_CHUNKS_WALKED = 10_000
"""The most chunks before a PNG's pixels :func:`_png_cicp_head` steps over."""


def _png_cicp_head(source, fp=None) -> bytes:
    """A PNG's signature and its ``cICP`` chunk, where one comes before the pixels, wherever it
    is: what :func:`nicodec.metadata.signalled_colour` reads (the first 64 KiB missed one after a
    large text or XMP chunk). The chunks are stepped over, not read; the file object is left
    where it stood; nothing where it cannot be read again."""
    try:
        with _from_the_start(source, fp) as stream:
            signature = stream.read(8)
            for _ in range(PNG_CHUNKS_WALKED):
                header = stream.read(8)
                if len(header) < 8 or header[4:] in (b"IDAT", b"IEND"):
                    break
                length = int.from_bytes(header[:4], "big")
                if header[4:] == b"cICP" and length == 4:
                    return signature + header + stream.read(8)  # its data and CRC
                stream.seek(length + 4, os.SEEK_CUR)
            return signature
    except (OSError, ValueError):  # ValueError: closed
        return b""


def _prefix(source, fp=None, size: int = 1 << 16) -> bytes:
    """The first ``size`` bytes of an image file (a path, or a file object, left where it
    stood); nothing where it cannot be read again."""
    try:
        with _from_the_start(source, fp) as stream:
            return stream.read(size)
    except (OSError, ValueError):  # ValueError: closed
        return b""


@contextlib.contextmanager
def _from_the_start(source, fp=None):
    """An image file's stream at its start: ``fp``, or ``source`` if it is a file object, each left
    where it stood afterwards; else ``source`` opened, and closed afterwards."""
    stream = fp if fp is not None else source if hasattr(source, "read") else None
    with contextlib.ExitStack() as closing:
        if stream is None:
            stream = closing.enter_context(open(source, "rb"))
        else:
            closing.callback(stream.seek, stream.tell())
        stream.seek(0)
        yield stream


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
        stripped, dropped, profile = png_chunks.without_text(data, everything)
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
            metadata.image_warning(f"{name}: its text {metadata.listed(dropped)} is not kept: {why}")
        if profile:
            image.info["icc_profile"] = profile
        elif profile is not None:
            metadata.image_warning(f"{name}: its ICC colour profile is not kept: it is damaged, or inflates past "
                                   f"{png_chunks.LARGEST_PNG_PROFILE // 2**20} MiB")
        return image
    return None


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
    raw = png_rawmode(img)
    if metadata.tiff_turned(img):  # told by its tag before Pillow's load applies and drops it (a square one by nothing after)
        img._nicodec_turned = True  # type: ignore[attr-defined] - our own image, opened here
    img.load()
    if raw is not None and "transparency" in img.info:
        key = fitted_png_colour_key(img.info["transparency"], raw, name)
        if key is None:
            del img.info["transparency"]
        else:
            img.info["transparency"] = key
    upright_img = metadata.turn(img, name)
    if gray_in_colour(img.mode, raw):
        upright_img._nicodec_gray = True  # type: ignore[attr-defined] - our own image, opened here
    return upright_img


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


def read_picture(image, *, strip: Strip = False, check_size: SizeCheck | None = None) -> Picture:
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


def _read_picture(image, *, strip: Strip = False, check_size: SizeCheck | None = None) -> Picture:
    """Pixels, alpha and metadata from a path, encoded image bytes (a one-dimensional uint8
    array too), a binary file object (read from where it stands to its end), a PIL image or a
    numpy array of pixels.

    Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB (CMYK through its
    CMYK profile where it carries one); an alpha channel is kept when it is not fully opaque.
    EXIF orientation is applied to the pixels (of files and of PIL images; the caller's image is
    not changed) and removed from the EXIF and XMP kept. ``strip`` drops the ICC profile, EXIF,
    XMP, text and resolution, or the kinds of them it names (``nicodec.inputs.Strip``).
    ``check_size`` is called with the width and height before any pixel is decoded or
    converted.

    Raises:
        UnsupportedImageError: anything that cannot be read as a photo.
    """
    icc = exif = xmp = text = density = None
    stripped = stripped_kinds(strip)
    key: Any = INFO
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
        raw = png_rawmode(image)  # before a load drops the tiles that tell it
        gray = gray_in_colour(image.mode, raw) or getattr(image, "_nicodec_gray", False)
        if gray:  # noted on the caller's image, whose tiles the load below drops: its next encode is the same
            image._nicodec_gray = True  # type: ignore[attr-defined]
        load_pixels(image)
        if raw is not None and "transparency" in image.info:  # fitted as a file's is, the caller's image unchanged
            key = fitted_png_colour_key(image.info["transparency"], raw, name)
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
        grayscale = image.mode in GRAY_MODES or gray or getattr(image, "_nicodec_gray", False)
        arr, alpha = from_pil(image, name, key)
        if stripped != frozenset(METADATA_KINDS):
            icc, exif, xmp, text, density = metadata.kept(image, name, grayscale=grayscale, turned=turned,
                                                          leave_out=stripped)
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
            arr, alpha = from_pil(Image.fromarray(np.ascontiguousarray(arr), "LA"))
            grayscale = True
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr, alpha = from_pil(Image.fromarray(arr, "RGBA"))
        elif arr.ndim != 3 or arr.shape[2] != 3:
            raise UnsupportedImageError(
                f"numpy images must be (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4), not {arr.shape}")
    else:
        raise UnsupportedImageError(
            f"cannot encode an object of type {type(image).__name__}: give a path, image bytes, a binary file, a PIL "
            "image or a numpy array"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UnsupportedImageError(f"the image is empty ({arr.shape[1]}x{arr.shape[0]})")
    return Picture(np.ascontiguousarray(arr), alpha, icc, exif, grayscale, xmp, text, density)
