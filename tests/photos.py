"""Test images made on the spot (no files needed) and PSNR; numpy only, so scripts can use them too."""

from __future__ import annotations

import numpy as np


def synthetic_photo(height: int = 192, width: int = 256, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 (H, W, 3) image: smooth shading, edges, texture and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [
            120 + 70 * np.sin(xx / 29.0 + seed) * np.cos(yy / 37.0),
            110 + 60 * np.cos((xx + 2 * yy) / 53.0),
            90 + 80 * (xx + yy > (width + height) / 2) + 15 * np.sin(yy / 7.0),
        ],
        axis=2,
    )
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
