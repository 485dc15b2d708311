"""The Pillow plugins nicodec reads more formats with (pillow-heif's HEIF, where it is
installed), and the file suffixes of the images it codes (:func:`readable_suffixes`)."""

from __future__ import annotations

import functools
import warnings

from PIL import Image

from . import metadata
from .sessions import caller_outside

def heif_install() -> str:
    """How to read HEIF: the start of what a refusal (:func:`heif_hint`) and a folder's note say
    (with pipx's or uv's command where one of them installed nicodec)."""
    from .launch import install_command

    tool, extras = install_command("heif")
    return f'{tool} "nicodec[{extras}]" adds pillow-heif, which reads'


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
    (:func:`heif_install`, or that pillow-heif cannot be used here); else ``""``."""
    if head[4:8] != b"ftyp" or head[8:12] not in metadata.HEIF_BRANDS or "HEIF" in Image.OPEN:
        return ""
    if _HEIF_PROBLEM:
        return f" (a HEIF/HEIC image: pillow-heif is installed but cannot be used: {_HEIF_PROBLEM[0]})"
    return f" (a HEIF/HEIC image: {heif_install()} them)"


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
