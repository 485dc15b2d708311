"""The ``PHYS`` section: the image's resolution, the pixel density that says how large it prints.

A scan at 300 dots per inch, a print layout, a screenshot taken on a display of twice the usual
density (144 dpi, which viewers show at half its pixel size): the density is part of what the
image means. PNG keeps it in pixels per metre (``pHYs``), JPEG in dots per inch or per
centimetre (JFIF), TIFF in either, BMP in pixels per metre; Pillow reads them all as
``info["dpi"]``, a pair of numbers. This section keeps the density in the unit that gives it
exactly: whole dots per inch as they are, anything else in whole pixels per metre (exact for
PNG's, BMP's and per-centimetre densities, and within 0.013 dpi of any other). Pillow's readers
put a default where a file gives no density (72 dpi for a JPEG, 1 for a TIFF), and the reading
of images (``nicodec.metadata.density_of``) leaves those out.

The payload is nine bytes: the unit (1: per inch, 2: per metre), then the horizontal and the
vertical density, each a u32 (little-endian, as the container's integers are) from 1 up.
"""

from __future__ import annotations

import math
import numbers
import struct
from dataclasses import dataclass

from . import format as nicformat
from .errors import FormatError

TAG = nicformat.RESOLUTION
PER_INCH = 1
PER_METRE = 2
INCH = 0.0254
"""An inch in metres (PNG's and Pillow's factor between the two units)."""
_PAYLOAD = struct.Struct("<BII")
_MAX = 2**32 - 1
_WHOLE = 1e-6
"""How near a whole number of dots per inch a density must be to be kept per inch. A PNG's
density read as dots per inch (pixels per metre times 0.0254) is either whole or at least
1/5000 away from whole, so this keeps its densities per metre, exactly (a BMP's are taken per
metre as they are: ``nicodec.metadata.density_of``)."""


@dataclass(frozen=True)
class Resolution:
    """A pixel density: ``unit`` (:data:`PER_INCH` or :data:`PER_METRE`), ``x`` and ``y``
    (horizontal and vertical, whole numbers from 1 up)."""

    unit: int
    x: int
    y: int

    @property
    def dpi(self) -> tuple[float, float]:
        """The density in dots per inch, as Pillow's ``info["dpi"]`` and ``save(dpi=)`` take it
        (Pillow's PNG writer turns ``x * 0.0254`` back into ``x`` pixels per metre)."""
        scale = 1.0 if self.unit == PER_INCH else INCH
        return (self.x * scale, self.y * scale)

    def turned(self) -> Resolution:
        """The density of the picture turned a quarter: the two axes swap."""
        return Resolution(self.unit, self.y, self.x)


def from_dpi(dpi) -> Resolution | None:
    """The :class:`Resolution` of Pillow's ``info["dpi"]`` (two numbers: ints, floats, or TIFF's
    rationals), or None when it is not a pair of finite numbers that round to densities from 1
    up to 2^32 - 1 in the unit chosen (0, which some writers put for "unknown", among them)."""
    if not (isinstance(dpi, (tuple, list)) and len(dpi) == 2
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in dpi)):
        return None
    try:
        x, y = (float(value) for value in dpi)
    except (ValueError, ZeroDivisionError, OverflowError):  # a TIFF rational over 0, say
        return None
    if not (math.isfinite(x) and math.isfinite(y)) or x <= 0 or y <= 0:
        return None
    if abs(x - round(x)) <= _WHOLE and abs(y - round(y)) <= _WHOLE:
        unit, x, y = PER_INCH, round(x), round(y)
    else:
        unit, x, y = PER_METRE, round(x / INCH), round(y / INCH)
    return Resolution(unit, x, y) if 0 < x <= _MAX and 0 < y <= _MAX else None


def from_pixels_per_metre(x: int, y: int) -> Resolution | None:
    """The :class:`Resolution` of a density given in pixels per metre (BMP's unit), or None
    when one is outside 1..2^32 - 1."""
    return Resolution(PER_METRE, x, y) if 0 < x <= _MAX and 0 < y <= _MAX else None


def pixels_per_metre(resolution: Resolution) -> tuple[int, int]:
    """The density in whole pixels per metre, as PNG's and BMP's writers store it."""
    if resolution.unit == PER_METRE:
        return (resolution.x, resolution.y)
    return (round(resolution.x / INCH), round(resolution.y / INCH))


def pack(resolution: Resolution) -> bytes:
    """The section's payload.

    Raises:
        ValueError: a unit other than the two, or a density outside 1..2^32 - 1.
    """
    if resolution.unit not in (PER_INCH, PER_METRE):
        raise ValueError(f"a PHYS section's unit is {PER_INCH} (inch) or {PER_METRE} (metre), not {resolution.unit!r}")
    if not (0 < resolution.x <= _MAX and 0 < resolution.y <= _MAX):
        raise ValueError(f"a PHYS section's densities are 1 to {_MAX:,}, not {resolution.x} and {resolution.y}")
    return _PAYLOAD.pack(resolution.unit, resolution.x, resolution.y)


def unpack(payload: bytes) -> Resolution:
    """The resolution a ``PHYS`` section holds.

    Raises:
        FormatError: the section breaks a rule of the module's docstring.
    """
    if len(payload) != _PAYLOAD.size:
        raise FormatError(f"the PHYS section holds {len(payload)} bytes, not {_PAYLOAD.size}")
    unit, x, y = _PAYLOAD.unpack(payload)
    if unit not in (PER_INCH, PER_METRE):
        raise FormatError(f"the PHYS section's unit is {unit}, not {PER_INCH} (inch) or {PER_METRE} (metre)")
    if x == 0 or y == 0:
        raise FormatError("the PHYS section holds a density of 0")
    return Resolution(unit, x, y)


def attach(image, resolution: Resolution | None) -> None:
    """Give a decoded PIL image its density as ``info["dpi"]``, as Pillow's readers give theirs."""
    if resolution is not None:
        image.info["dpi"] = resolution.dpi
