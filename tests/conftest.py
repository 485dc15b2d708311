"""Shared fixtures: synthetic photos (tests make their own images) and the shipped codec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from photos import psnr, synthetic_photo  # noqa: F401 - the tests import them from here

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NICODEC_SHARED", REPO.parent / "shared"))
KODAK = SHARED / "data" / "kodak"


@pytest.fixture(scope="session")
def codec():
    from nicodec import Codec

    return Codec(providers="cpu")


@pytest.fixture(scope="session")
def photo():
    return synthetic_photo()


@pytest.fixture()
def kodak() -> Path:
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak is not present")
    return KODAK
