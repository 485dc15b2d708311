"""Turning what users hand us (paths, PIL images, numpy arrays) into RGB pixels."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UnsupportedImageError

ImageLike = "str | os.PathLike | Image.Image | np.ndarray"

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully load an image file, with clear errors for what is not one.

    Raises:
        UnsupportedImageError: missing file, a directory, an empty, truncated or unknown file.
    """
    p = Path(path)
    if p.is_dir():
        raise UnsupportedImageError(f"{p} is a directory, not an image")
    if not p.exists():
        raise UnsupportedImageError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise UnsupportedImageError(f"{p} is empty")
    try:
        with Image.open(p) as img:
            return _load(img, p)
    except PermissionError:
        raise UnsupportedImageError(f"cannot read {p}: permission denied") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{p} is not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise UnsupportedImageError(f"{p}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedImageError(f"{p} could not be decoded ({exc})") from None


def open_image_bytes(data: bytes) -> Image.Image:
    """Open and fully load an image held in memory (an upload, a blob from a database).

    Raises:
        UnsupportedImageError: empty, truncated, unknown or multi-frame data.
    """
    if not data:
        raise UnsupportedImageError("the image data is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return _load(img, "the image data")
    except UnidentifiedImageError:
        raise UnsupportedImageError("the image data is not in a format Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise UnsupportedImageError(f"the image data: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedImageError(f"the image data could not be decoded ({exc})") from None


def _load(img: Image.Image, name) -> Image.Image:
    frames = getattr(img, "n_frames", 1)
    # MPO (phone and camera JPEGs) keeps previews as extra frames: the first is the photo.
    if frames > 1 and img.format != "MPO":
        raise UnsupportedImageError(
            f"{name} holds {frames} frames ({img.format}); nicodec codes single images: extract one frame first"
        )
    img.load()
    return ImageOps.exif_transpose(img) or img


def _from_pil(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        # 16-bit grayscale: keep the top 8 bits rather than Pillow's clipping convert().
        arr = np.asarray(img).astype(np.int64)
        arr = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "F":
        raise UnsupportedImageError("floating-point images (mode F) are not supported; convert to 8-bit first")
    if "A" in mode or (mode == "P" and "transparency" in img.info):
        try:
            rgba = np.asarray(img.convert("RGBA"))
        except ValueError as exc:
            raise UnsupportedImageError(f"cannot convert an image of mode {mode} to RGB ({exc})") from None
        if (rgba[:, :, 3] != 255).any():
            raise UnsupportedImageError(
                f"the image has transparency (mode {mode}); nicodec codes RGB only: "
                "flatten it onto a background or drop the alpha channel first"
            )
        return np.ascontiguousarray(rgba[:, :, :3])
    try:
        return np.asarray(img.convert("RGB"))
    except ValueError as exc:  # modes Pillow opens but cannot convert, such as "La"
        raise UnsupportedImageError(f"cannot convert an image of mode {mode} to RGB ({exc})") from None


def to_rgb(image) -> np.ndarray:
    """An (H, W, 3) uint8 array from a path, encoded image bytes, a PIL image or a numpy array.

    Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB; an
    alpha channel is accepted only when fully opaque. EXIF orientation is applied
    to files opened from a path.

    Raises:
        UnsupportedImageError: anything that cannot be read as an RGB photo.
    """
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        image = open_image_bytes(bytes(image))
    if isinstance(image, Image.Image):
        arr = _from_pil(image)
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise UnsupportedImageError(f"numpy images must be uint8, not {arr.dtype}")
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = _from_pil(Image.fromarray(arr, "RGBA"))
        elif arr.ndim != 3 or arr.shape[2] != 3:
            raise UnsupportedImageError(f"numpy images must be (H, W), (H, W, 3) or (H, W, 4), not {arr.shape}")
    else:
        raise UnsupportedImageError(f"cannot encode a {type(image).__name__}: give a path, image bytes, a PIL image or a numpy array")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UnsupportedImageError(f"the image is empty ({arr.shape[1]}x{arr.shape[0]})")
    return np.ascontiguousarray(arr)
