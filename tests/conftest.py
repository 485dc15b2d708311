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
def no_gpu(monkeypatch):
    """onnxruntime as on a machine whose CUDA provider is installed but finds no GPU: it lists
    CUDA, and runs every session on the CPU (so that asking for CUDA falls back)."""
    import onnxruntime

    from nicodec import sessions

    class NoGpu:
        def __getattr__(self, name):
            return getattr(onnxruntime, name)

        @staticmethod
        def get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        @staticmethod
        def InferenceSession(path, sess_options, providers):
            return onnxruntime.InferenceSession(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(sessions, "_ort", NoGpu)


@pytest.fixture()
def kodak() -> Path:
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak is not present")
    return KODAK
