"""Training and export on tiny data (needs the train extra: torch and onnx)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from nicodec.training.model import MeanScaleHyperprior, ModelConfig, rate_distortion_loss  # noqa: E402
from nicodec.training.train import TrainConfig, load_model, slim_checkpoint, train  # noqa: E402

from conftest import synthetic_photo  # noqa: E402

pytestmark = pytest.mark.train
TINY = ModelConfig(N=16, M=24, Nh=16, lmbda=0.01)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i in range(12):
        Image.fromarray(synthetic_photo(160, 200, seed=i)).save(root / f"im{i:02d}.jpg", quality=95)
    return root


def test_forward_shapes_and_loss():
    model = MeanScaleHyperprior(TINY)
    x = torch.rand(2, 3, 128, 128)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["y_likelihood"].shape == (2, TINY.M, 8, 8)
    assert out["z_likelihood"].shape == (2, TINY.Nh, 2, 2)
    losses = rate_distortion_loss(out, x, TINY.lmbda)
    assert losses["bpp"] > 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.g_a.parameters())


def test_train_checkpoint_and_resume(folder, tmp_path):
    cfg = TrainConfig(steps=6, batch=2, crop=64, val_every=3, val_images=2)
    metrics = train([str(folder)], tmp_path, TINY, cfg)
    assert metrics["steps"] == 6 and np.isfinite(metrics["loss"])
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["model_config"] == TINY.to_dict() and ckpt["step"] == 6
    cfg.steps = 9
    metrics = train([str(folder)], tmp_path, TINY, cfg, resume=True)
    assert metrics["steps"] == 9 and metrics["run_steps"] == 3
    slim_checkpoint(tmp_path / "last.pt", tmp_path / "slim.pt")
    model, slim = load_model(tmp_path / "slim.pt")
    assert "optimizer" not in slim
    assert all(v.dtype == torch.float16 for v in slim["model"].values() if v.is_floating_point())
    assert model.config == TINY


def free_port() -> int:
    """A port nothing listens on now (a fixed one collides with parallel test runs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_distributed_training(folder, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
        "-m", "nicodec.training", "--data", str(folder), "--out", str(tmp_path / "ddp"), "--steps", "4",
        "--batch", "2", "--crop", "64", "--val-every", "2", "--device", "cpu",
        "--channels", "16", "--latent-channels", "24", "--hyper-channels", "16",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4


def test_export_then_runtime_round_trip(folder, tmp_path):
    from nicodec.codec import Codec
    from nicodec.errors import ModelError
    from nicodec.export.export import export_model

    train([str(folder)], tmp_path / "run", TINY, TrainConfig(steps=3, batch=2, crop=64, val_images=2))
    manifest = export_model(tmp_path / "run" / "last.pt", tmp_path / "model", "tiny-test")
    assert manifest["parity"]["z_symbols_differ"] == 0
    assert manifest["parity"]["scale_index_differ"] == 0
    on_disk = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert on_disk["model_id"] == "tiny-test" and on_disk["parity"] == manifest["parity"]

    codec = Codec(tmp_path / "model", providers="cpu")
    image = synthetic_photo(100, 130)
    assert codec.decode(codec.encode(image), as_array=True).shape == image.shape

    with pytest.raises(FileExistsError):
        export_model(tmp_path / "run" / "last.pt", tmp_path / "model", "tiny-test")
    tables = tmp_path / "model" / "tables.npz"
    tables.write_bytes(tables.read_bytes() + b"x")
    with pytest.raises(ModelError, match="SHA-256"):
        Codec(tmp_path / "model", providers="cpu")


@pytest.mark.parametrize("hyper", [False, True])
def test_integer_finetune_then_export_is_exact(folder, tmp_path, hyper):
    """entropy_finetune's integer mode end to end: what it trains exports to an exact graph."""
    import torch

    from nicodec.codec import Codec
    from nicodec.export.export import export_model
    from nicodec.training.entropy_finetune import finetune, latents, to_integer
    from nicodec.training.data import list_images

    train([str(folder)], tmp_path / "run", TINY, TrainConfig(steps=2, batch=2, crop=64, val_images=2))
    model, _ = load_model(tmp_path / "run" / "last.pt")
    paths = list_images([str(folder)])
    y, z_hat = latents(model, paths[:-2], (128, 192), 1, seed=0)
    val = latents(model, paths[-2:], (128, 192), 1, seed=1)
    model = to_integer(model, z_hat)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = finetune(model, y, z_hat, val, steps=3, batch=2, lr=1e-3, hyper=hyper)
    assert [h["step"] for h in history][-1] == 3 and all(np.isfinite(h["val_bpp"]) for h in history)
    after = model.state_dict()
    assert not torch.equal(before["h_s.4.weight"], after["h_s.4.weight"])
    assert torch.equal(before["h_a.0.weight"], after["h_a.0.weight"]) != hyper  # h_a learns only with hyper
    assert torch.equal(before["g_a.0.weight"], after["g_a.0.weight"])  # the transforms never do

    torch.save({"model_config": model.config.to_dict(), "step": 3, "metrics": {}, "model": model.state_dict()},
               tmp_path / "int.pt")
    manifest = export_model(tmp_path / "int.pt", tmp_path / "model", "tiny-int")
    assert manifest["entropy_parameters"] == "integer"
    assert manifest["parity"]["scale_index_differ"] == manifest["parity"]["mean_q_differ"] == 0
    codec = Codec(tmp_path / "model", providers="cpu")
    assert codec.model.integer_entropy
    image = synthetic_photo(100, 130)
    assert codec.decode(codec.encode(image), as_array=True).shape == image.shape
