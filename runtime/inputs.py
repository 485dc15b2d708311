"""What the API takes: the types of its arguments, their checks, and a ``.nic`` file's bytes
from any of its sources.

The type aliases are those of :class:`nicodec.Codec`'s signatures (``ImageSource``,
``NicSource``, ``Real``, ``Whole``, ``Pixels``); the checks refuse, with a
:class:`~nicodec.NicodecError`, values Python would take for something else (a string given as a
flag, a float as a count). Nothing here loads onnxruntime, so the Pillow plugin and the Ray
recipe check their options before a codec is made.
"""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image

from . import format as nicformat
from .errors import NicodecError
from .files import read_binary_file, read_file

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
elif TYPE_CHECKING:
    from typing_extensions import Buffer  # type checkers ship it
else:  # what typing.get_type_hints finds where the ABC is missing
    Buffer = bytes | bytearray | memoryview | mmap.mmap


class BinaryReader(Protocol):
    """A binary file object, or anything with its ``read`` (a socket's, a gzip file's)."""

    def read(self, size: int = ..., /) -> bytes: ...


ImageSource: TypeAlias = str | os.PathLike[str] | Buffer | BinaryReader | Image.Image | np.ndarray
"""What :meth:`~nicodec.Codec.encode` codes: a path, an image file's bytes (or any buffer of them, a
one-dimensional uint8 array too), a binary file object, a PIL image or a uint8 array of pixels."""

NicSource: TypeAlias = Buffer | np.ndarray | BinaryReader | str | os.PathLike[str]
"""What :meth:`~nicodec.Codec.decode` decodes: a ``.nic`` file's bytes (or a buffer of them, a uint8 array
included), a binary file object or a path."""

Real: TypeAlias = float | np.floating[Any]
"""A number the API takes for a quality or a rate target: a float (an int is one to type
checkers) or a numpy float, which ``np.float32(50)`` is and Python's float is not."""

Whole: TypeAlias = int | np.integer[Any]
"""A whole number the API takes for a count or a size: an int or a numpy integer (``np.int64(2)``)."""

Pixels: TypeAlias = npt.NDArray[np.uint8]
"""A decoded image as an array: (H, W, 3), (H, W, 4) with alpha, (H, W) or (H, W, 2) for gray."""


METADATA_KINDS = ("icc", "exif", "xmp", "text", "dpi")
"""The kinds of metadata a ``.nic`` file keeps, as ``strip`` names them: the ICC profile, EXIF
data, the XMP packet, text (PNG's text chunks, a comment) and the resolution."""

Strip: TypeAlias = bool | np.bool_ | str | Collection[str]
"""What ``strip`` takes: True (every kind of :data:`METADATA_KINDS`), False (none), or the kinds
to leave out (``{"exif", "xmp"}``, or one kind's name)."""


def stripped_kinds(strip: Strip) -> frozenset[str]:
    """The kinds of metadata ``strip`` leaves out (:data:`Strip`).

    Raises:
        NicodecError: another type, or a name that is no kind of metadata.
    """
    if isinstance(strip, (bool, np.bool_)):
        return frozenset(METADATA_KINDS) if strip else frozenset()
    kinds = (strip,) if isinstance(strip, str) else strip
    named = ", ".join(METADATA_KINDS)
    if (not isinstance(kinds, Collection) or isinstance(kinds, (Mapping, bytes, bytearray))
            or not all(isinstance(kind, str) for kind in kinds)):
        raise NicodecError(f"strip must be True, False or the kinds of metadata to leave out ({named}), not {strip!r}")
    unknown = [kind for kind in kinds if kind not in METADATA_KINDS]
    if unknown:
        raise NicodecError(f"strip: {unknown[0]!r} is no kind of metadata; the kinds are {named}")
    return frozenset(str(kind) for kind in kinds)  # numpy's strings as str


def check_flags(**flags) -> None:
    """Refuse an option meant as True or False that is neither (``strip="no"`` would be true).

    Raises:
        NicodecError: a value of ``flags`` (named by its keyword) that is not a bool or numpy bool.
    """
    for name, flag in flags.items():
        if not isinstance(flag, (bool, np.bool_)):
            raise NicodecError(f"{name} must be True or False, not {flag!r}")


def whole(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value``, an argument called ``name`` that must be a whole number (numpy integers too,
    bools not), as an int, from ``low`` to ``high`` where given.

    Raises:
        NicodecError: not a whole number, or outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (low is not None and value < low) or (
        high is not None and value > high
    ):
        span = f" from {low} to {high}" if high is not None else f" of {low} or more" if low is not None else ""
        raise NicodecError(f"{name} must be a whole number{span}, not {value!r}")
    return int(value)


def nic_bytes(data, taker: str = "decode") -> bytes:
    """The bytes of a ``.nic`` file given as :data:`NicSource` (a copy of a buffer, which may
    change while it decodes), for :meth:`~nicodec.Codec.decode` (``taker``: the function named
    in the errors).

    Raises:
        NicodecError: data of another type, a buffer of items wider than a byte, or a path or
            file object that cannot be read.
        FormatError: a path or stream whose first bytes are no ``.nic`` header.
        LimitError: a file longer than the format allows.
    """
    if isinstance(data, bytes):
        return data
    if isinstance(data, (str, os.PathLike)):
        # A device that is no .nic refused from its first bytes; a file longer than nicodec reads, unread.
        return read_file(data, ".nic file", nicformat.read_header, limit=nicformat.MAX_FILE_BYTES)
    try:
        view = memoryview(data)  # bytearray, memoryview, mmap, array.array("B"), a uint8 numpy array
    except TypeError:
        view = None
    except ValueError as exc:  # a released memoryview
        raise NicodecError(f"cannot read the .nic file's bytes from the {type(data).__name__}: {exc}") from None
    if view is not None:
        if view.itemsize != 1:
            raise NicodecError(
                f"{taker} takes the bytes of a .nic file, not a buffer of {view.itemsize}-byte items ({type(data).__name__})"
            )
        return view.tobytes()  # a copy: the caller's buffer may change while it decodes
    if callable(getattr(data, "read", None)):  # a file opened in binary mode, a BytesIO
        return read_binary_file(data, ".nic file", check_start=nicformat.read_header)  # an endless stream refused early
    raise NicodecError(
        f"{taker} takes the bytes of a .nic file, a binary file object or the file's path, not {type(data).__name__}"
    )
