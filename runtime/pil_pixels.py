"""A PIL image's pixels as the networks code them: RGB uint8 and an alpha plane, from every mode
Pillow gives (16-bit gray's top bits, premultiplied alpha, colour keys, CMYK through its
profile), with what cannot be kept warned of."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from . import metadata
from .errors import DAMAGED, UnsupportedImageError

SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")

INFO: Any = object()
"""As a colour key: the image's own, ``info["transparency"]``."""

def gray_in_colour(mode: str, raw: str | None) -> bool:
    """A gray image that Pillow gives in a colour mode: a 16-bit gray and alpha PNG (raw
    ``LA;16B``) is RGBA, its samples cut to 8 bits."""
    return mode == "RGBA" and raw is not None and raw.startswith("LA;16")


def png_rawmode(img: Image.Image) -> str | None:
    """A PNG's raw sample layout (``"L;2"``, ``"RGB;16B"``, ...), known before it is loaded."""
    if img.format != "PNG" or not img.tile:
        return None
    args = img.tile[0].args
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else None)


def fitted_png_colour_key(key, raw: str, name):
    """A PNG's colour key (tRNS) on the scale of the pixels Pillow gives, or None where it cannot
    be kept: Pillow scales 2- and 4-bit gray samples to 0..255 but not the key (a 1-bit one
    Pillow 13 scales, older ones not: see :func:`_colour_key`), and reads 16-bit RGB as 8-bit
    while the key stays 16-bit, which cannot be matched any more (the transparency is then left
    out, with a warning: matching its top bytes would hide other pixels)."""
    if raw in ("L;2", "L;4") and isinstance(key, int) and key < 1 << int(raw[-1]):
        return key * 255 // ((1 << int(raw[-1])) - 1)
    if raw.startswith("RGB;16") and isinstance(key, tuple):
        metadata.image_warning(f"{name}: its colour key (PNG tRNS) names a 16-bit colour, and Pillow reads the "
                               "pixels as 8-bit, so the transparency it marks cannot be kept; it is coded opaque")
        return None
    return key


GRAY_MODES = {"1", "L", "LA", "La", "I"} | set(SIXTEEN_BIT)
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}


def upright(img: Image.Image) -> Image.Image:
    """A PIL image from the caller with its EXIF (or XMP) orientation applied (a copy when one is
    needed; the tag is removed from the copy's EXIF), as files opened by nicodec are."""
    try:
        return metadata.turn(img, getattr(img, "filename", "") or "the image")
    except DAMAGED as exc:
        raise UnsupportedImageError(f"Pillow could not read the pixels of the image ({exc})") from None


def load_pixels(img: Image.Image) -> None:
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


def from_pil(img: Image.Image, name: str = "the image", key: Any = INFO) -> tuple[np.ndarray, np.ndarray | None]:
    """The RGB pixels and alpha (None if opaque) of a PIL image; ``key``: its colour key where
    it is not ``info["transparency"]`` (:func:`fitted_png_colour_key`; None for none)."""
    mode = img.mode
    if mode in SIXTEEN_BIT:
        # 16-bit grayscale: keep the top 8 bits rather than Pillow's clipping convert().
        raw = np.asarray(img).astype(np.int64)
        outside = int(np.count_nonzero((raw < 0) | (raw > 65535)))
        if outside:  # only mode I (32-bit signed) can hold them
            metadata.image_warning(f"{name}: {outside:,} of its 32-bit samples lie outside 0 to 65,535 (from "
                                   f"{int(raw.min()):,} to {int(raw.max()):,}) and were clipped to that range, "
                                   "which is read as 16-bit")
        arr = np.clip(raw, 0, 65535)
        brightest = int(arr.max(initial=0))  # initial: an empty image is refused below, not here
        if 0 < brightest < 256:
            # Most likely 8-bit values in a 16- or 32-bit container (a numpy int array made
            # into a PIL image): nothing of them survives the top 8 bits.
            metadata.image_warning(f"{name}: every 16-bit sample is below 256 (the brightest is {brightest} of "
                                   "65,535), so it codes as black; if these are 8-bit values, convert the image "
                                   "to mode L first")
        alpha = None
        key = img.info.get("transparency") if key is INFO else key
        if isinstance(key, int) and not isinstance(key, bool) and (arr == key).any():
            alpha = np.where(arr == key, 0, 255).astype(np.uint8)  # a PNG colour key (tRNS), which convert() drops
        arr = (arr >> 8).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2), alpha
    if mode == "F":
        raise UnsupportedImageError("floating-point images (mode F) are not supported; convert to 8-bit first")
    if mode in _PREMULTIPLIED:
        img = img.convert(_PREMULTIPLIED[mode])  # Pillow converts these to straight alpha only
    key = _colour_key(img, img.info.get("transparency") if key is INFO else key)
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
        metadata.image_warning(f"{name}: its CMYK colour profile cannot be applied ({why}), so its colours are "
                               "converted by Pillow's plain formula")
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


def equal_channels(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) image's three channels are equal everywhere (a sparse sample first:
    a colour photo differs there, and is not compared whole)."""
    for rows in (rgb[::61, ::59], rgb):
        if not (np.array_equal(rows[:, :, 0], rows[:, :, 1]) and np.array_equal(rows[:, :, 1], rows[:, :, 2])):
            return False
    return True
