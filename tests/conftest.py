"""Shared fixtures: synthetic photos (tests make their own images) and the shipped codec."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NICODEC_SHARED", REPO.parent / "shared"))
KODAK = SHARED / "data" / "kodak"


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


@pytest.fixture(scope="session")
def codec():
    from nicodec import Codec

    return Codec(providers="cpu")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    return synthetic_photo()


@pytest.fixture()
def kodak() -> Path:
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak is not present")
    return KODAK
