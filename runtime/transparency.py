"""The colour under fully transparent pixels, which nobody sees, made cheap to code.

A cut-out's transparent area usually holds black, white or leftovers of the photo; the
networks spend bits on that colour and on the hard edge where it meets the visible pixels.
The encoder replaces it (``Codec.encode(exact=False)``, the default, as ``cwebp`` does without
``-exact``) by a smooth continuation of the visible pixels, filled from coarse to fine as in a
pull-push pyramid (Gortler, Grzeszczuk, Szeliski and Cohen, "The Lumigraph", SIGGRAPH 1996):
averages of the visible pixels over blocks of 2, 4, 8, ... pixels a side, each hole taking the
bilinear interpolation of the next coarser level. Visible pixels (alpha above 0) are left
exactly as they are; the alpha plane is coded losslessly either way.
"""

from __future__ import annotations

import numpy as np

_STRIP_ROWS = 256
"""Rows of the full-size image filled at a time, so its float temporaries stay small."""

_SPARSE = 3
"""A strip whose holes are fewer than 1 pixel in this many is filled at the holes alone (about
100 bytes a hole), the others upsampled whole: 24 megapixels with 10% holes took 0.9 s at the
holes against 1.4 s whole, with 90% 2.8 s against 2.3 (a review's measures, under load)."""


def fill_transparent(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` with the colour of every pixel whose ``alpha`` is 0 replaced by a smooth fill
    from the visible ones; ``rgb`` itself is not changed. Without a transparent pixel, ``rgb``
    is returned; without a visible one, mid-gray everywhere. Channels are filled alike, so
    equal channels (a grayscale picture) stay equal."""
    holes = alpha == 0
    if not holes.any():
        return rgb
    filled = rgb.copy()
    if holes.all():
        filled[...] = 128
        return filled
    levels = [_first_level(rgb, ~holes)]
    while levels[-1][1].shape != (1, 1):
        sums, counts = levels[-1]
        levels.append((_block_sums(sums), _block_sums(counts)))
    colour = None
    while levels:  # coarse to fine, each level let go once used
        mean, counts = levels.pop()
        mean /= np.maximum(counts, 1)[..., None]  # in place: the sums become the mean
        if colour is not None:
            coarse = _upsample(colour)[: mean.shape[0], : mean.shape[1]]
            np.copyto(mean, coarse, where=(counts == 0)[..., None])
            del coarse
        colour = mean
        del mean, counts
    # The full size, strip by strip: a strip of few holes at those pixels alone (an upsample of
    # the whole strip for a few of them took 1.4 s of a 24-megapixel cut-out's encode, 0.7 s
    # so), one of many upsampled whole (faster then, and without an index a hole).
    height = rgb.shape[0]
    for top in range(0, height, _STRIP_ROWS):
        bottom = min(top + _STRIP_ROWS, height)
        strip = holes[top:bottom]
        found = np.count_nonzero(strip)
        if not found:
            continue
        if found < strip.size // _SPARSE:
            ys, xs = np.nonzero(strip)
            ys += top
            filled[ys, xs] = np.clip(np.rint(_upsampled_at(colour, ys, xs)), 0, 255).astype(np.uint8)
            continue
        first = max(top // 2 - 1, 0)  # a strip of 2k rows comes from k coarse rows and one on either side
        rows = _upsample(colour[first : (bottom + 1) // 2 + 1])
        estimate = rows[top - 2 * first : bottom - 2 * first, : rgb.shape[1]]
        filled[top:bottom][strip] = np.clip(np.rint(estimate[strip]), 0, 255).astype(np.uint8)
    return filled


def _first_level(rgb: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums of the visible pixels' colours and their counts over 2x2 blocks, in float32
    (exact: at most 4 x 255), made from quarter-size slices rather than a masked full-size copy."""
    height, width = visible.shape
    shape = ((height + 1) // 2, (width + 1) // 2)
    sums = np.zeros((*shape, rgb.shape[2]), np.float32)
    counts = np.zeros(shape, np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            seen = visible[dy::2, dx::2]
            sums[: seen.shape[0], : seen.shape[1]] += rgb[dy::2, dx::2] * seen[..., None]
            counts[: seen.shape[0], : seen.shape[1]] += seen
    return sums, counts


def _block_sums(a: np.ndarray) -> np.ndarray:
    """Sums over 2x2 blocks (an odd last row or column on its own)."""
    height, width = a.shape[:2]
    if height % 2 or width % 2:
        a = np.pad(a, ((0, height % 2), (0, width % 2)) + ((0, 0),) * (a.ndim - 2))
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def _upsampled_at(a: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``_upsample(a)[ys, xs]``, the same float32 arithmetic in the same order, computed at those
    pixels only: rows first (3/4 of the pixel's coarse row, 1/4 of the nearer one's), then columns."""
    def nearer(fine: np.ndarray, length: int) -> np.ndarray:  # the coarse neighbour a fine pixel leans to
        coarse = fine // 2
        return np.where(fine % 2 == 0, np.maximum(coarse - 1, 0), np.minimum(coarse + 1, length - 1))

    rows, other_rows = ys // 2, nearer(ys, a.shape[0])
    columns = xs // 2, nearer(xs, a.shape[1])
    across = []
    for column in columns:
        value = a[rows, column] * np.float32(0.75)
        value += a[other_rows, column] * np.float32(0.25)
        across.append(value)
    out = across[0] * np.float32(0.75)
    out += across[1] * np.float32(0.25)
    return out


def _upsample(a: np.ndarray) -> np.ndarray:
    """Twice the size on both axes, bilinear, with pixel centres at half steps (a fine pixel
    takes 3/4 of its coarse pixel and 1/4 of the nearer neighbour) and the edges held."""
    for axis in (0, 1):
        a = np.moveaxis(a, axis, 0)
        out = np.empty((2 * a.shape[0],) + a.shape[1:], np.float32)
        even, odd = out[0::2], out[1::2]
        np.multiply(a, 0.75, out=even)
        even[1:] += 0.25 * a[:-1]
        even[:1] += 0.25 * a[:1]
        np.multiply(a, 0.75, out=odd)
        odd[:-1] += 0.25 * a[1:]
        odd[-1:] += 0.25 * a[-1:]
        a = np.moveaxis(out, 0, axis)
    return a
