"""What a decoded picture lost: the luma of a grayscale file and the squared error against the
source, in exact integers (so that the encoder's choices between candidates do not depend on
floating-point summation order)."""

from __future__ import annotations

import numpy as np


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma in 16-bit fixed point, as FORMAT.md defines it (the same as Pillow's convert("L"))."""
    r, g, b = (rgb[:, :, i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def squared_error(decoded: np.ndarray, source: np.ndarray, gray: bool = False, seen: np.ndarray | None = None) -> int:
    """The sum of squared differences between ``decoded`` ((H, W, 3) uint8, as the synthesis
    made it) and ``source`` ((H, W, C) uint8): over the three channels, or for a grayscale file
    (``gray``) between the luma a decoder returns and the source's first channel; only where
    ``seen`` ((H, W) bool) is true when given. One plane at a time, in int64."""
    planes = [(luma(decoded), source[:, :, 0])] if gray else [(decoded[:, :, c], source[:, :, c]) for c in range(3)]
    total = 0
    for got, want in planes:
        difference = got.astype(np.int32) - want
        if seen is not None:
            difference[~seen] = 0
        total += int(np.einsum("ij,ij->", difference, difference, dtype=np.int64))
    return total
