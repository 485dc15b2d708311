"""An ICC profile of a CMYK press, built here: tests need one and none ships with Pillow."""

from __future__ import annotations

import itertools
import struct


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def press_lab(c: float, m: float, y: float, k: float) -> tuple[float, float, float]:
    """The CIELAB colour (D50) the profile gives CMYK ink amounts (0 to 1) at its grid's corners:
    an off-white paper and inks far duller than Pillow's formula makes them."""
    lightness = max(95 * (1 - 0.35 * c - 0.45 * m - 0.1 * y) * (1 - 0.8 * k), 5)
    return lightness, (-35 * c + 60 * m - 5 * y) * (1 - k), (-45 * c - 5 * m + 70 * y) * (1 - k) + 3


D50 = (0.9642, 1.0, 0.8249)


def cmyk_profile(description: str = "nicodec test press", *, intent: int = 0,
                 paper: tuple[float, float, float] = D50) -> bytes:
    """An ICC v2 output profile of CMYK data and a Lab connection space with one lookup table
    (``A2B0``, lut8: identity curves around a 2-point grid of :func:`press_lab`), the rendering
    intent ``intent`` in its header and ``paper`` (CIE XYZ) as its media white point."""
    grid = b"".join(
        bytes(round(v) for v in (lab[0] / 100 * 255, lab[1] + 128, lab[2] + 128))
        for lab in (press_lab(*corner) for corner in itertools.product((0, 1), repeat=4)))
    identity = bytes(range(256))
    a2b0 = (b"mft1" + b"\0" * 4 + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
            + identity * 4 + grid + identity * 3)
    text = description.encode("ascii")
    desc = (b"desc" + b"\0" * 4 + struct.pack(">I", len(text) + 1) + text + b"\0" + struct.pack(">IIHB", 0, 0, 0, 0)
            + b"\0" * 67)
    cprt = b"text" + b"\0" * 4 + b"No copyright: made by nicodec's tests\0"
    wtpt = b"XYZ " + b"\0" * 4 + b"".join(_s15(v) for v in paper)
    tags = [(b"desc", desc), (b"cprt", cprt), (b"wtpt", wtpt), (b"A2B0", a2b0)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += _padded(body)
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"prtr" + b"CMYK" + b"Lab "
              + b"\0" * 12 + b"acsp" + b"\0" * 4 * 4 + b"\0" * 8 + struct.pack(">I", intent)
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 4)
    header += b"\0" * (128 - len(header))
    return header + table + data
