"""Training and export on tiny data (needs the train extra: torch and onnx)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
typer = pytest.importorskip("typer")
pytest.importorskip("onnx")

from nicodec.training.model import MeanScaleHyperprior, ModelConfig, rate_distortion_loss  # noqa: E402
from nicodec.training.model import remap_levels  # noqa: E402
from nicodec.training.checkpoint import load_model, slim_checkpoint  # noqa: E402
from nicodec.training.train import TrainConfig, train  # noqa: E402

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
    """A port nothing listens on now (a fixed one collides with parallel test runs); the test
    is skipped where nothing can connect to it, as in a build sandbox without a loopback
    device (binding still works there, and torchrun's store would retry for 15 minutes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError as exc:
            pytest.skip(f"no connection to 127.0.0.1 for torchrun's processes: {exc}")
        return port


def test_two_process_distributed_training(folder, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))  # torchrun leaves its log folders there
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
    def not_json(constant):  # Python's json reads Infinity and NaN; JSON itself (and other languages) does not
        raise AssertionError(f"manifest.json holds {constant}, which is not JSON")

    on_disk = json.loads((tmp_path / "model" / "manifest.json").read_text(), parse_constant=not_json)
    assert on_disk["model_id"] == "tiny-test" and on_disk["parity"] == manifest["parity"]

    codec = Codec(tmp_path / "model", providers="cpu")
    image = synthetic_photo(100, 130)
    assert codec.decode(codec.encode(image), as_array=True).shape == image.shape

    # Version 2: the hash covers the manifest's decoding fields, so a hand edit is refused.
    assert on_disk["version"] == 2
    manifest_path = tmp_path / "model" / "manifest.json"
    text = manifest_path.read_text()
    for key, value in (("mean_bits", on_disk["mean_bits"] + 1), ("downsampling", 2 * on_disk["downsampling"])):
        manifest_path.write_text(json.dumps({**on_disk, key: value}))
        with pytest.raises(ModelError, match="decoding fields"):
            Codec(tmp_path / "model", providers="cpu")
    manifest_path.write_text(text)

    # The encoder-only graph: exported beside the others, and added back to a folder without it.
    from nicodec.export.export import add_encoder_graphs

    assert Codec(tmp_path / "model", providers="cpu", refine=2).encode(image)
    without = {k: v for k, v in on_disk.items() if k != "encoder_files"}
    manifest_path.write_text(json.dumps(without))
    (tmp_path / "model" / "synthesis_gradient.onnx").unlink()
    with pytest.raises(ModelError, match="synthesis_gradient"):
        Codec(tmp_path / "model", providers="cpu", refine=2)
    added = add_encoder_graphs(tmp_path / "run" / "last.pt", tmp_path / "model")
    assert added["model_hash"] == on_disk["model_hash"] and added["encoder_files"] == on_disk["encoder_files"]
    assert Codec(tmp_path / "model", providers="cpu", refine=2).encode(image)
    train([str(folder)], tmp_path / "other", TINY, TrainConfig(steps=1, batch=2, crop=64, val_images=2, seed=7))
    with pytest.raises(RuntimeError, match="not the checkpoint"):
        add_encoder_graphs(tmp_path / "other" / "last.pt", tmp_path / "model")
    manifest_path.write_text(text)

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
    # The digest the runtime checks onnxruntime against: the torch integer path's on the probe.
    from nicodec import exactness
    from nicodec.training.integer import integer_entropy_parameters

    outputs = []
    for probe in exactness.probes(model.config.Nh):
        ints = integer_entropy_parameters(model.h_s, model.hs_act_scale, torch.from_numpy(probe).float(),
                                          model.table_scales, model.table_lut)
        outputs += [ints["scale_index"].numpy(), ints["mean_q"].numpy()]
    assert manifest["entropy_check"] == {"probe": 2, "sha256": exactness.digest(outputs)}
    image = synthetic_photo(100, 130)
    assert codec.decode(codec.encode(image), as_array=True).shape == image.shape


TINY_VR = ModelConfig(N=16, M=24, Nh=16, lmbdas=(0.003, 0.01, 0.03))


def test_variable_rate_forward_needs_levels_and_interpolates_gains():
    model = MeanScaleHyperprior(TINY_VR)
    with torch.no_grad():
        model.log_gain.normal_()
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(ValueError, match="level"):
        model(x)
    out = model(x, torch.tensor([0.0, 1.5]))
    losses = rate_distortion_loss(out, x, torch.tensor([0.003, 0.02]))
    losses["loss"].backward()
    assert model.log_gain.grad[0].abs().sum() > 0 and model.log_gain.grad[2].abs().sum() > 0
    gain, _ = model.gains_at(torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(gain[0], model.log_gain[1].exp())
    torch.testing.assert_close(gain[1], ((model.log_gain[0] + model.log_gain[1]) / 2).exp())
    with pytest.raises(ValueError, match="increasing"):
        ModelConfig(lmbdas=(0.01, 0.003))


def test_variable_rate_run_switches_to_integer_and_exports_exactly(folder, tmp_path):
    """Train a variable-rate model whose h_s turns integer half-way, resume it from the slim
    weights, export it, and code at several qualities through the runtime."""
    from nicodec.codec import Codec
    from nicodec.errors import QualityError
    from nicodec.export.export import PARITY_QUALITIES, export_model
    from nicodec.format import read_header

    config = ModelConfig(**{**TINY_VR.to_dict()})
    cfg = TrainConfig(steps=4, batch=2, crop=64, val_every=2, val_images=2, integer_from=0.5)
    metrics = train([str(folder)], tmp_path / "run", config, cfg)
    assert len(metrics["levels"]) == 3 and not config.integer_entropy  # the caller's config is not mutated
    slim_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "slim.pt")
    model, slim = load_model(tmp_path / "slim.pt")
    assert model.config.integer_entropy and model.config.lmbdas == TINY_VR.lmbdas
    assert slim["step"] == 4 and slim["train_seconds"] > 0

    cfg.steps = 6
    metrics = train([str(folder)], tmp_path / "run2", config, cfg, init=tmp_path / "slim.pt")
    assert metrics["steps"] == 6 and metrics["run_steps"] == 2
    manifest = export_model(tmp_path / "run2" / "last.pt", tmp_path / "model", "tiny-vr", default_quality=40)
    assert manifest["rate"] == {"variable": True, "lmbdas": list(TINY_VR.lmbdas), "default_quality": 40.0}
    assert [p["quality"] for p in manifest["parity"]] == list(PARITY_QUALITIES)
    assert all(p["scale_index_differ"] == p["mean_q_differ"] == p["z_symbols_differ"] == 0 for p in manifest["parity"])

    codec = Codec(tmp_path / "model", providers="cpu")
    image = synthetic_photo(100, 130)
    assert codec.default_quality == 40.0
    for quality in (1, 33.3, 100):
        data = codec.encode(image, quality=quality)
        assert read_header(data)[0].quality == pytest.approx(quality)
        assert codec.decode(data, as_array=True).shape == image.shape

    train([str(folder)], tmp_path / "single", TINY, TrainConfig(steps=1, batch=2, crop=64, val_images=2))
    export_model(tmp_path / "single" / "last.pt", tmp_path / "single-model", "tiny-single")
    single = Codec(tmp_path / "single-model", providers="cpu")
    assert not single.model.variable_rate and single.default_quality is None
    assert read_header(single.encode(image))[0].quality == 0.0
    with pytest.raises(QualityError, match="single-rate"):
        single.encode(image, quality=50)


def _find_window(image: torch.Tensor, crop: torch.Tensor) -> tuple[int, int, bool, bool] | None:
    """Where ``crop`` sits in ``image``: (top, left, rows flipped, columns flipped), or None."""
    c = crop.shape[1]
    for flip_rows in (False, True):
        for flip_cols in (False, True):
            view = crop.flip(1) if flip_rows else crop
            view = view.flip(2) if flip_cols else view
            for top in range(image.shape[1] - c + 1):
                for left in range(image.shape[2] - c + 1):
                    if torch.equal(image[:, top : top + c, left : left + c], view):
                        return top, left, flip_rows, flip_cols
    return None


def test_crop_sampler_draws_flipped_windows_of_every_image_from_corner_to_corner():
    from nicodec.training.data import CropSampler

    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in ((20, 26), (16, 16), (25, 18))]
    sampler = CropSampler(images, 16, torch.device("cpu"), generator_seed=3)
    found = {}
    for _ in range(3):
        batch = sampler.batch(100)
        assert batch.shape == (100, 3, 16, 16) and batch.dtype == torch.float32
        assert 0 <= float(batch.min()) and float(batch.max()) <= 1
        for crop in (batch * 255).round().to(torch.uint8):
            hits = [(k, _find_window(im, crop)) for k, im in enumerate(images)]
            hits = [(k, where) for k, where in hits if where is not None]
            assert hits, "a crop that is no window of any image"
            k, (top, left, flip_rows, flip_cols) = hits[0]
            found.setdefault(k, set()).add((top, left, flip_rows, flip_cols))
    assert sorted(found) == [0, 1, 2]
    tall = found[0]  # 20x26: tops 0..4, lefts 0..10, every flip
    assert {t for t, *_ in tall} == set(range(5)) and {left for _, left, *_ in tall} == set(range(11))
    assert {(fr, fc) for *_, fr, fc in tall} == {(False, False), (False, True), (True, False), (True, True)}

    sampler.reseed(7)
    first = sampler.batch(4)
    sampler.reseed(7)
    torch.testing.assert_close(sampler.batch(4), first)
    with pytest.raises(ValueError, match="smaller than"):
        CropSampler([torch.zeros(3, 15, 40, dtype=torch.uint8)], 16, torch.device("cpu"))


def test_gaussian_likelihoods_of_all_integers_sum_to_one():
    from nicodec.training.model import gaussian_likelihood

    values = torch.arange(-400, 401, dtype=torch.float64)[:, None]
    means = torch.tensor([[0.0, 0.3, -2.7, 5.5, 0.0]], dtype=torch.float64)
    scales = torch.tensor([[0.11, 0.5, 1.0, 7.0, 60.0]], dtype=torch.float64)
    total = gaussian_likelihood(values + means.round(), means, scales).sum(dim=0)
    torch.testing.assert_close(total, torch.ones(5, dtype=torch.float64), atol=1e-9, rtol=0)


def test_probe_sizes_parse_with_an_eager_suffix():
    from nicodec.training.arguments import parse_probe

    assert parse_probe("16, 32e,64") == [(16, False), (32, True), (64, False)]
    assert parse_probe("") == []
    for bad in ("0", "x", "16,-2e"):
        with pytest.raises(ValueError):
            parse_probe(bad)


def test_compiled_training_matches_eager_and_switches_to_integer(folder, tmp_path):
    """``--compile``: the same first losses as eager (the same crops and levels), then the
    switch to the integer h_s recompiles and training carries on."""
    from nicodec.training.data import CropSampler
    from nicodec.training.steps import compiled, make_optimizer, training_step

    def autocast():
        return torch.autocast("cpu", enabled=False)

    images = [torch.from_numpy(synthetic_photo(96, 96, seed=i)).permute(2, 0, 1).contiguous() for i in range(3)]
    losses = {}
    for mode in ("", "default"):
        torch.manual_seed(0)
        model = MeanScaleHyperprior(TINY_VR)
        sampler = CropSampler(images, 64, torch.device("cpu"), generator_seed=1)
        optimizer = make_optimizer(model, 1e-4, torch.device("cpu"))
        net = compiled(model, mode)
        torch.manual_seed(1)  # the same levels and noise
        losses[mode] = [float(training_step(net, model, optimizer, sampler, 2, autocast)["loss"].detach()) for _ in range(3)]
    assert np.allclose(losses[""], losses["default"], rtol=1e-3), losses

    cfg = TrainConfig(steps=4, batch=2, crop=64, val_every=100, val_images=2, integer_from=0.5)
    metrics = train([str(folder)], tmp_path, TINY_VR, cfg, compile_mode="default")
    assert metrics["steps"] == 4 and np.isfinite(metrics["loss"])
    model, _ = load_model(tmp_path / "last.pt")
    assert model.config.integer_entropy


def test_new_schedule_restarts_the_learning_rate_schedule_at_the_checkpoint(folder, tmp_path):
    cfg = TrainConfig(steps=4, batch=2, crop=64, val_every=100, val_images=2)
    train([str(folder)], tmp_path / "first", TINY, cfg)
    slim_checkpoint(tmp_path / "first" / "last.pt", tmp_path / "slim.pt")
    cfg = TrainConfig(steps=3, batch=2, crop=64, val_every=100, val_images=2, warmup=2)
    # Step 4 is already past the old schedule's 3 steps: refused (it trained none and said "done").
    with pytest.raises(typer.BadParameter, match="schedule is complete .step 4, 4 of the 3 --steps"):
        train([str(folder)], tmp_path / "carried", TINY, cfg, init=tmp_path / "slim.pt")
    assert not (tmp_path / "carried" / "last.pt").exists()
    fresh = train([str(folder)], tmp_path / "fresh", TINY, cfg, init=tmp_path / "slim.pt", new_schedule=True)
    assert fresh["steps"] == 7 and fresh["run_steps"] == 3
    ckpt = torch.load(tmp_path / "fresh" / "last.pt", weights_only=True)
    assert ckpt["schedule_origin"][0] == 4 and ckpt["schedule_origin"][1] > 0
    cfg.steps = 5  # resuming keeps the new origin (even asked for a new schedule again): two more steps
    resumed = train([str(folder)], tmp_path / "fresh", TINY, cfg, resume=True, new_schedule=True)
    assert resumed["steps"] == 9 and resumed["run_steps"] == 2


def test_a_schedule_that_ends_in_this_run_is_fitted_to_its_deadline(monkeypatch):
    """A deadline only stops the loop: a time-boxed run whose loading or compilation took longer
    than planned was cut before it annealed (gpu_run.sh's MINUTES=8.8 under a 600 s limit). A
    schedule that goes on in later runs is cut there, not shortened."""
    import types

    from nicodec.training import schedule
    from nicodec.training.schedule import fitted_to_deadline

    now = 1_800_000_000.0  # the clock stands still: the figures are exact on a loaded machine too
    monkeypatch.setattr(schedule, "time", types.SimpleNamespace(time=lambda: now))
    time = schedule.time

    cfg = TrainConfig(minutes=8.8, total_minutes=8.8)
    seconds, budget, fitted = fitted_to_deadline(cfg, 528.0, 528.0, 0.0, time.time() + 300)
    assert seconds == 300 and budget == seconds
    assert fitted.minutes == fitted.total_minutes == seconds / 60 and cfg.minutes == 8.8  # saved with the checkpoint
    # Its end in this run, after 4 minutes trained in an earlier one: the remaining 4.8 become 5 - 0.
    seconds, budget, _ = fitted_to_deadline(TrainConfig(minutes=8.8, total_minutes=12.8), 768.0, 528.0, 240.0,
                                            time.time() + 200)
    assert seconds == 440 and budget == 200
    # A schedule as long as its run's --minutes (no --total-minutes), resumed with 4 minutes done:
    # its fitted length is saved as such, so that a --resume after a stop carries that one on.
    seconds, budget, fitted = fitted_to_deadline(TrainConfig(minutes=10.0), 600.0, 600.0, 240.0, time.time() + 180)
    assert seconds == 420 and fitted.total_minutes == seconds / 60 and fitted.minutes == budget / 60
    for args in ((768.0, 528.0, 0.0, time.time() + 300),  # a schedule that goes on in a later run
                 (528.0, 528.0, 0.0, time.time() + 900),  # a deadline after the schedule's end
                 (528.0, 528.0, 0.0, None),
                 (528.0, 528.0, 0.0, time.time() - 1)):  # past: the loop stops at once
        assert fitted_to_deadline(cfg, *args, say=False) == (args[0], args[1], cfg)


def test_a_run_fitted_to_its_deadline_anneals_before_it(folder, tmp_path):
    import time

    cfg = TrainConfig(steps=10**6, minutes=2.0, batch=2, crop=64, val_every=10**6, val_images=2, lr=1e-4, anneal=0.5)
    metrics = train([str(folder)], tmp_path / "run", TINY, cfg, deadline=time.time() + 10)
    # Cut at 10 of its 120 s it would end at the peak rate; fitted, its second half anneals to a
    # tenth (half the peak is passed halfway through the fall: steps shorter than a quarter of the run).
    assert metrics["run_steps"] > 0 and metrics["final_lr"] <= 0.5e-4, metrics
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["train_config"]["minutes"] < 0.2


def test_the_warm_up_scales_the_scheduled_rate_not_the_peak():
    """A carried schedule that warms up again inside its anneal climbed to the peak rate, then fell."""
    from nicodec.training.schedule import learning_rate

    cfg = TrainConfig(lr=1e-4, anneal=0.5, warmup=200)
    scheduled = learning_rate(cfg, 0.95, 10**6)
    assert scheduled == pytest.approx(1.22e-5, rel=0.01)
    assert learning_rate(cfg, 0.95, 199) == pytest.approx(scheduled)
    assert learning_rate(cfg, 0.95, 99) == pytest.approx(scheduled / 2)
    # A fresh schedule's warm-up, as before where it ends before the anneal starts (one that runs
    # into the anneal, --anneal 1.0 say, now follows the falling rate instead of the peak).
    assert learning_rate(cfg, 0.0, 99) == pytest.approx(0.5e-4)


def test_a_carried_schedule_warms_up_again_with_a_fresh_optimizer(folder, tmp_path):
    """A checkpoint of weights only (an --init without --new-schedule) carries its schedule on,
    but Adam's state starts afresh: the warm-up counts from the run's first step, not the
    schedule's (which had passed it, so the fresh optimizer started at the peak rate)."""
    cfg = TrainConfig(steps=4, batch=2, crop=64, val_every=100, val_images=2, anneal=0.0, warmup=2)
    first = train([str(folder)], tmp_path / "first", TINY, cfg)
    assert first["final_lr"] == pytest.approx(1e-4)
    slim_checkpoint(tmp_path / "first" / "last.pt", tmp_path / "slim.pt")
    cfg.steps = 5  # one more step of the same schedule
    carried = train([str(folder)], tmp_path / "carried", TINY, cfg, init=tmp_path / "slim.pt")
    assert carried["run_steps"] == 1 and carried["final_lr"] == pytest.approx(0.5e-4)


def test_the_final_checkpoint_counts_the_training_time_not_the_final_validation(folder, tmp_path, monkeypatch):
    """The next run of a schedule carries on from the saved seconds: the final validation (slow
    on a CPU) counted in them moved it on by as much."""
    import time

    import nicodec.training.loop as loop_module

    validate = loop_module.validate

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return validate(*args, **kwargs)

    monkeypatch.setattr(loop_module, "validate", slow)
    cfg = TrainConfig(steps=2, batch=2, crop=64, val_every=100, val_images=2)
    metrics = train([str(folder)], tmp_path / "run", TINY, cfg)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["train_seconds"] == pytest.approx(metrics["seconds"], abs=0.1)


def test_remapped_levels_keep_trained_gains_and_extend_them_in_log_lambda(folder, tmp_path):
    model = MeanScaleHyperprior(TINY_VR)  # lambdas 0.003, 0.01, 0.03
    with torch.no_grad():
        model.log_gain.normal_()
        model.log_inverse_gain.normal_()
    wider = remap_levels(model, (0.001, 0.003, 0.0055, 0.01, 0.03, 0.09))
    assert wider.config.lmbdas == (0.001, 0.003, 0.0055, 0.01, 0.03, 0.09) and wider.config.N == TINY_VR.N
    torch.testing.assert_close(wider.log_gain[[1, 3, 4]], model.log_gain)
    torch.testing.assert_close(wider.log_inverse_gain[[1, 3, 4]], model.log_inverse_gain)
    ln = np.log
    t = (ln(0.0055) - ln(0.003)) / (ln(0.01) - ln(0.003))
    torch.testing.assert_close(wider.log_gain[2], model.log_gain[0] + (model.log_gain[1] - model.log_gain[0]) * t)
    below = (ln(0.001) - ln(0.003)) / (ln(0.01) - ln(0.003))  # negative: extended below the first level
    torch.testing.assert_close(wider.log_gain[0], model.log_gain[0] + (model.log_gain[1] - model.log_gain[0]) * below)
    above = (ln(0.09) - ln(0.01)) / (ln(0.03) - ln(0.01))
    torch.testing.assert_close(wider.log_inverse_gain[5],
                               model.log_inverse_gain[1] + (model.log_inverse_gain[2] - model.log_inverse_gain[1]) * above)
    for name, value in model.state_dict().items():
        if name not in ("log_gain", "log_inverse_gain"):
            torch.testing.assert_close(wider.state_dict()[name], value)
    with pytest.raises(ValueError, match="variable-rate"):
        remap_levels(MeanScaleHyperprior(TINY), (0.01, 0.02))

    cfg = TrainConfig(steps=2, batch=2, crop=64, val_every=100, val_images=2)
    train([str(folder)], tmp_path / "first", TINY_VR, cfg)
    slim_checkpoint(tmp_path / "first" / "last.pt", tmp_path / "slim.pt")
    four = ModelConfig(**{**TINY_VR.to_dict(), "lmbdas": (0.001, 0.003, 0.01, 0.03)})
    metrics = train([str(folder)], tmp_path / "second", four, TrainConfig(steps=2, batch=2, crop=64, val_images=2),
                    init=tmp_path / "slim.pt", new_schedule=True)
    assert len(metrics["levels"]) == 4
    assert load_model(tmp_path / "second" / "last.pt")[0].config.lmbdas == four.lmbdas


def test_tuning_gains_changes_only_the_chosen_levels_gain_vectors(folder, tmp_path):
    cfg = TrainConfig(steps=2, batch=2, crop=64, val_every=100, val_images=2)
    train([str(folder)], tmp_path / "first", TINY_VR, cfg)
    slim_checkpoint(tmp_path / "first" / "last.pt", tmp_path / "slim.pt")
    before, _ = load_model(tmp_path / "slim.pt")
    four = ModelConfig(**{**TINY_VR.to_dict(), "lmbdas": (0.001, 0.003, 0.01, 0.03)})
    cfg = TrainConfig(steps=3, batch=2, crop=64, val_every=100, val_images=2, lr=1e-2, tune_levels=(0,))
    train([str(folder)], tmp_path / "tuned", four, cfg, init=tmp_path / "slim.pt", new_schedule=True)
    after, ckpt = load_model(tmp_path / "tuned" / "last.pt")
    assert tuple(ckpt["train_config"]["tune_levels"]) == (0,)
    for name, value in before.state_dict().items():
        if name not in ("log_gain", "log_inverse_gain"):
            assert torch.equal(after.state_dict()[name], value), name
    for name in ("log_gain", "log_inverse_gain"):
        # Levels 1 to 3 are the old levels, carried over exactly; level 0 (new) trained.
        assert torch.equal(getattr(after, name)[1:], getattr(before, name)), name
    remapped = remap_levels(before, four.lmbdas)
    assert not torch.equal(after.log_gain[0], remapped.log_gain[0])
    with pytest.raises(typer.BadParameter, match="levels to tune"):
        train([str(folder)], tmp_path / "bad", four, dataclasses.replace(cfg, tune_levels=(4,)), init=tmp_path / "slim.pt")
    with pytest.raises(typer.BadParameter, match="variable-rate"):
        train([str(folder)], tmp_path / "single", TINY, cfg)


def test_a_training_step_never_reads_a_tensor_back_to_the_host():
    """On a GPU every read of a tensor's value (``.item()``, ``float()``, ``bool()``) waits for
    the device; a step must have none, in float and in the integer path. Checked on the CPU by
    watching for the operator every such read goes through."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from nicodec.training.data import CropSampler
    from nicodec.training.steps import switch_to_integer, training_step

    class Reads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.reads = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            # Reads of values, and tensors made from Python data (on a GPU, a copy that waits).
            if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
                        torch.ops.aten.lift_fresh.default):
                self.reads.append(str(func))
            return func(*args, **(kwargs or {}))

    def autocast():
        return torch.autocast("cpu", enabled=False)

    sampler = CropSampler([torch.randint(0, 256, (3, 80, 90), dtype=torch.uint8)], 64, torch.device("cpu"))
    for config in (TINY, TINY_VR):
        model = MeanScaleHyperprior(config)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)  # reads no step counter, unlike Adam on the CPU
        for integer in (False, True):
            if integer:
                switch_to_integer(model, sampler, 2, batches=1)
            training_step(model, model, optimizer, sampler, 2, autocast)  # first calls build caches
            with Reads() as watch:
                training_step(model, model, optimizer, sampler, 2, autocast)
            assert watch.reads == [], f"{config.lmbdas}, integer={integer}: {watch.reads}"


def test_a_run_keeps_its_weights_when_stopped_and_survives_a_failed_compilation(folder, tmp_path, monkeypatch):
    """--slim is refreshed at every checkpoint and written atomically; a deadline stops the run
    with its checkpoint written; a compiler failure at the first step falls back to eager."""
    import time

    import nicodec.training.train as train_module

    cfg = TrainConfig(steps=4, batch=2, crop=64, val_every=2, val_images=2)
    train([str(folder)], tmp_path / "run", TINY_VR, cfg, slim=tmp_path / "slim.pt")
    assert torch.load(tmp_path / "slim.pt", weights_only=True)["step"] == 4
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".part"))]  # no temporary file left

    stopped = train([str(folder)], tmp_path / "late", TINY_VR, cfg, deadline=time.time(), slim=tmp_path / "late.pt")
    assert stopped["run_steps"] == 0 and torch.load(tmp_path / "late.pt", weights_only=True)["step"] == 0

    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("the compiler fell over")

    monkeypatch.setattr(train_module, "compiled", lambda module, mode: Broken() if mode else module)
    metrics = train([str(folder)], tmp_path / "eager", TINY_VR, cfg, compile_mode="default")
    assert metrics["run_steps"] == 4 and np.isfinite(metrics["loss"])


def test_a_retrained_synthesis_decodes_the_earlier_models_files(folder, tmp_path, signal_once_training, capsys):
    """decoder_finetune changes g_s alone; exported with --decodes-files-of, the new model reads
    the earlier model's files into the same latents, while a changed entropy side is refused."""
    from nicodec.codec import Codec
    from nicodec.errors import ModelError, ModelMismatchError
    from nicodec.export.export import export_model
    from nicodec.training import decoder_finetune

    train([str(folder)], tmp_path / "run", TINY_VR, TrainConfig(steps=2, batch=2, crop=64, val_images=2, integer_from=0.5))
    slim_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "a.pt")
    export_model(tmp_path / "a.pt", tmp_path / "a", "tiny-a", default_quality=50)
    settings = dict(model=tmp_path / "a", data=[str(folder)], val_data=[], crop=64, per_image=1, val_crop=64, minutes=0.0,
                    batch=2, lr=1e-3, cache=tmp_path / "latents.pt", threads=0, seed=0)
    decoder_finetune.main(tmp_path / "a.pt", out=tmp_path / "b.pt", **settings)
    assert "encoding crops: " in capsys.readouterr().err  # it said nothing for minutes (5,000 crops: 17)
    with pytest.raises(typer.BadParameter, match="other settings"):  # the cache knows what it was made from
        decoder_finetune.main(tmp_path / "a.pt", out=tmp_path / "x.pt", **{**settings, "per_image": 2})
    before, after = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in "ab")
    changed = {k for k in before["model"] if not torch.equal(before["model"][k], after["model"][k])}
    assert changed and all(k.startswith("g_s.") for k in changed)
    report = after["metrics"]["decoder_finetune"]
    assert report["steps"] >= 1 and report["training_crops"] == 4 and len(report["held_out_gain_db_per_quality"]) == 8
    assert report["config"]["per_image"] == 1 and list(report["config"]["data"]) == [str(folder)]

    # A fine-tune that diverges writes nothing (it wrote weights that were not finite, exit code 0).
    with pytest.raises(typer.Exit) as diverged:
        decoder_finetune.main(tmp_path / "a.pt", out=tmp_path / "nan.pt", **{**settings, "lr": 1e30})
    assert diverged.value.exit_code == 1 and not (tmp_path / "nan.pt").exists()

    # SIGTERM or Ctrl-C mid-training (it lost the whole run) writes the weights reached and says so.
    signal_once_training(decoder_finetune, "per_crop_mse")
    with pytest.raises(typer.Exit) as stopped:
        decoder_finetune.main(tmp_path / "a.pt", out=tmp_path / "stopped.pt", **{**settings, "minutes": 60.0})
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert torch.load(tmp_path / "stopped.pt", weights_only=True)["metrics"]["decoder_finetune"]["stopped_by"] == "SIGTERM"

    manifest = export_model(tmp_path / "b.pt", tmp_path / "b", "tiny-b", default_quality=50, decodes_files_of=[tmp_path / "a"])
    a, b = Codec(tmp_path / "a", providers="cpu"), Codec(tmp_path / "b", providers="cpu")
    assert [(e["model_id"], e["model_hash"]) for e in manifest["decodes_files_of"]] == [("tiny-a", a.model.manifest["model_hash"])]
    image = synthetic_photo(70, 90, seed=3)
    old_file = a.encode(image, quality=30)
    assert np.array_equal(a.decode_latents(old_file)[1], b.decode_latents(old_file)[1])
    assert b.decode(old_file, as_array=True).shape == image.shape
    with pytest.raises(ModelMismatchError, match="'tiny-b'"):
        a.decode(b.encode(image, quality=30))

    # The list is transitive, and a model whose entropy side changed cannot take it.
    c = export_model(tmp_path / "b.pt", tmp_path / "c", "tiny-c", decodes_files_of=[tmp_path / "b"])
    assert Codec(tmp_path / "c", providers="cpu").decode(old_file, as_array=True).shape == image.shape
    assert c["rate"]["default_quality"] == 50  # b's, not the exporter's 75: a re-export keeps its model's default
    model, _ = load_model(tmp_path / "b.pt")
    with torch.no_grad():
        model.h_s[0][0].weight.mul_(1.5)
    torch.save({**after, "model": {k: v.half() if v.dtype == torch.float32 else v for k, v in model.state_dict().items()}},
               tmp_path / "d.pt")
    with pytest.raises(RuntimeError, match="entropy side differs in entropy_parameters.onnx"):
        export_model(tmp_path / "d.pt", tmp_path / "d", "tiny-d", decodes_files_of=[tmp_path / "a"])
    assert not (tmp_path / "d").exists()
    from typer.testing import CliRunner

    from nicodec.export.export import app

    runner = CliRunner()
    result = runner.invoke(app, [str(tmp_path / "d.pt"), "--out", str(tmp_path / "d"), "--decodes-files-of", str(tmp_path / "a")])
    assert result.exit_code == 1 and "cannot decode the files of tiny-a" in " ".join(result.output.split())
    result = runner.invoke(app, [str(tmp_path / "b.pt"), "--out", str(tmp_path / "b"), "--add-encoder-graphs",
                                 "--decodes-files-of", str(tmp_path / "a")])
    assert result.exit_code == 2 and "--add-encoder-graphs" in result.output

    # Hand-editing the list makes a model no file names.
    edited = json.loads((tmp_path / "b" / "manifest.json").read_text())
    edited["decodes_files_of"][0]["model_hash"] = "0" * 64
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(ModelError, match="model hash"):
        Codec(tmp_path / "b", providers="cpu")


def _reads_the_earlier_models_file(earlier: Path, later: Path) -> tuple[np.ndarray, bytes, np.ndarray]:
    """A file of the model in ``earlier``, at quality 30, decoded by the model in ``later``, whose
    synthesis alone differs: the same symbols as its own file's, other pixels. Returns the image,
    the file and ``later``'s pixels."""
    from nicodec.codec import Codec

    a, b = Codec(earlier, providers="cpu"), Codec(later, providers="cpu")
    image = synthetic_photo(150, 200, seed=3)
    old_file = a.encode(image, quality=30)
    mine, theirs = b.decode_symbols(b.encode(image, quality=30))[1:], a.decode_symbols(old_file)[1:]
    assert all(np.array_equal(x, y) for x, y in zip(mine, theirs))  # the encoder and entropy side are a's
    before, after = a.decode(old_file, as_array=True), b.decode(old_file, as_array=True)
    assert after.shape == image.shape and not np.array_equal(before, after)
    return image, old_file, after


def test_a_post_filter_added_to_a_model_exports_decodes_its_files_and_refines(folder, tmp_path):
    """A PostFilter ending g_s (ModelConfig.postfilter): added to a trained model it starts from
    its pixels; with weights it changes them, and its export passes the parity and gradient
    checks, decodes the earlier model's files (--decodes-files-of: the entropy side is the same
    files), tiles as the whole picture does, and refines."""
    from nicodec.codec import Codec
    from nicodec.export.export import export_model
    from nicodec.training.model import PostFilter
    from nicodec.training.checkpoint import with_postfilter

    train([str(folder)], tmp_path / "run", TINY_VR, TrainConfig(steps=2, batch=2, crop=64, val_images=2, integer_from=0.5))
    slim_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "a.pt")
    export_model(tmp_path / "a.pt", tmp_path / "a", "tiny-a", default_quality=50)
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    fresh = with_postfilter(ckpt, 6)
    torch.save(fresh, tmp_path / "fresh.pt")
    plain, _ = load_model(tmp_path / "a.pt")
    filtered, _ = load_model(tmp_path / "fresh.pt")
    assert isinstance(filtered.g_s[-1], PostFilter) and filtered.config.postfilter == 6
    y_hat = torch.randn(1, TINY_VR.M, 4, 4)
    with torch.no_grad():
        assert torch.equal(plain.g_s(y_hat), filtered.g_s(y_hat))  # a fresh filter leaves the pixels as they were
    weights = {k: torch.randn_like(v) * 0.2 for k, v in PostFilter(6).state_dict().items()}
    torch.save(with_postfilter(ckpt, 6, weights), tmp_path / "b.pt")
    with pytest.raises(ValueError, match="post-filter already"):
        with_postfilter(torch.load(tmp_path / "b.pt", weights_only=True), 6)
    with pytest.raises(ValueError, match="not those of a 8-channel"):
        with_postfilter(ckpt, 8, weights)

    manifest = export_model(tmp_path / "b.pt", tmp_path / "b", "tiny-b", default_quality=50, decodes_files_of=[tmp_path / "a"])
    assert manifest["config"]["postfilter"] == 6 and [e["model_id"] for e in manifest["decodes_files_of"]] == ["tiny-a"]
    image, old_file, after = _reads_the_earlier_models_file(tmp_path / "a", tmp_path / "b")
    tiled = Codec(tmp_path / "b", providers="cpu", tile=64).decode(old_file, as_array=True)
    assert np.array_equal(tiled, after)
    half = Codec(tmp_path / "b", providers="cpu", precision="fp16").decode(old_file, as_array=True)
    assert np.abs(half.astype(int) - after).max() <= 2
    assert Codec(tmp_path / "b", providers="cpu", refine=2).encode(image, quality=30)
    # A model with a filter trains as any other (the GPU recipe continues from the committed one).
    config = ModelConfig(**{**TINY_VR.to_dict(), "postfilter": 4})
    metrics = train([str(folder)], tmp_path / "pf", config, TrainConfig(steps=2, batch=2, crop=64, val_images=2,
                                                                         integer_from=0.5))
    assert metrics["run_steps"] == 2 and np.isfinite(metrics["loss"])


def test_a_post_filter_given_the_quality_exports_decodes_its_files_and_refines(folder, tmp_path):
    """A PostFilter that also sees the quality (ModelConfig.postfilter_quality, vr-5f's): its
    decoder and synthesis-gradient graphs take the header's quality as a second input, so the
    same latent decodes to other pixels at another quality; the export passes the parity checks
    at four qualities and the gradient check, decodes the earlier model's files, tiles as the
    whole picture does, refines, and the model trains with each crop's quality."""
    from nicodec.codec import Codec
    from nicodec.export.export import export_model
    from nicodec.training.model import PostFilter
    from nicodec.training.checkpoint import with_postfilter

    train([str(folder)], tmp_path / "run", TINY_VR, TrainConfig(steps=2, batch=2, crop=64, val_images=2, integer_from=0.5))
    slim_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "a.pt")
    export_model(tmp_path / "a.pt", tmp_path / "a", "tiny-a", default_quality=50)
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    torch.manual_seed(5)
    weights = {k: torch.randn_like(v) * 0.2 for k, v in PostFilter(6, quality_plane=True).state_dict().items()}
    with pytest.raises(ValueError, match="not those of a 6-channel"):  # a plain filter's weights lack the plane
        with_postfilter(ckpt, 6, {k: torch.randn_like(v) for k, v in PostFilter(6).state_dict().items()},
                        quality_plane=True)
    torch.save(with_postfilter(ckpt, 6, weights, quality_plane=True), tmp_path / "b.pt")
    model, _ = load_model(tmp_path / "b.pt")
    assert model.config.postfilter_quality and model.g_s.takes_quality
    y_hat = torch.randn(1, TINY_VR.M, 4, 4)
    with torch.no_grad(), pytest.raises(ValueError, match="takes the quality"):
        model.g_s(y_hat)
    with pytest.raises(ValueError, match="variable-rate"):
        ModelConfig(**{**TINY.to_dict(), "postfilter": 4, "postfilter_quality": True})

    manifest = export_model(tmp_path / "b.pt", tmp_path / "b", "tiny-b", default_quality=50, decodes_files_of=[tmp_path / "a"])
    assert manifest["config"]["postfilter_quality"] is True and len(manifest["parity"]) == 4
    a, b = Codec(tmp_path / "a", providers="cpu"), Codec(tmp_path / "b", providers="cpu")
    for graph in ("decoder", "synthesis_gradient"):
        assert [i.name for i in b._session(graph).get_inputs()][-1] == "quality"
    assert [i.name for i in a._session("decoder").get_inputs()] == ["y_hat"]
    image, old_file, after = _reads_the_earlier_models_file(tmp_path / "a", tmp_path / "b")
    header, latent = b.decode_latents(old_file)
    assert header.quality == 30
    at_30 = b._synthesize(latent, 30.0)
    assert np.array_equal(at_30[0, :, :150, :200].transpose(1, 2, 0), after)
    assert not np.array_equal(b._synthesize(latent, 90.0), at_30)  # the filter sees the quality it is given
    with torch.no_grad():  # the graph is the torch synthesis given the header's quality
        expected = torch.round(model.g_s(torch.from_numpy(latent), 30.0).clamp(0, 1) * 255).to(torch.uint8).numpy()
    assert np.abs(expected.astype(int) - at_30).max() <= 1
    with pytest.raises(ValueError, match="takes the quality"):
        b._synthesize(latent, None)
    tiled = Codec(tmp_path / "b", providers="cpu", tile=64).decode(old_file, as_array=True)
    assert np.array_equal(tiled, after)
    half = Codec(tmp_path / "b", providers="cpu", precision="fp16").decode(old_file, as_array=True)
    assert np.abs(half.astype(int) - after).max() <= 2
    assert Codec(tmp_path / "b", providers="cpu", refine=2).encode(image, quality=30)
    # The gradient graph is given the quality too: another quality, another gradient.
    padding = ((0, 16 * latent.shape[2] - image.shape[0]), (0, 16 * latent.shape[3] - image.shape[1]), (0, 0))
    pixels = np.ascontiguousarray(np.pad(image, padding, mode="edge").transpose(2, 0, 1)[None], dtype=np.float32)
    assert not np.allclose(b._synthesis_gradient(latent, pixels, quality=30.0),
                           b._synthesis_gradient(latent, pixels, quality=90.0))
    # decoder_finetune retrains g_s, the filter with it, giving each crop the quality it was coded at.
    from nicodec.training import decoder_finetune

    settings = dict(model=tmp_path / "b", data=[str(folder)], val_data=[], crop=64, per_image=1, val_crop=64, minutes=0.0,
                    batch=2, lr=1e-3, cache=tmp_path / "latents.pt", threads=0, seed=0)
    decoder_finetune.main(tmp_path / "b.pt", out=tmp_path / "c.pt", **settings)
    y, crops, qualities, val_y, val_crops, val_qualities, _ = torch.load(tmp_path / "latents.pt", weights_only=True)
    assert len(qualities) == len(y) and ((qualities >= 1) & (qualities <= 100)).all()
    assert sorted(set(val_qualities.tolist())) == [1.0, 15.0, 29.0, 43.0, 57.0, 72.0, 86.0, 100.0]
    changed = {k for k, v in torch.load(tmp_path / "c.pt", weights_only=True)["model"].items()
               if not torch.equal(v, torch.load(tmp_path / "b.pt", weights_only=True)["model"][k])}
    assert any(k.startswith("g_s.7.body.0.") for k in changed) and all(k.startswith("g_s.") for k in changed)
    torch.save([y, crops, val_y, val_crops, "{}"], tmp_path / "old.pt")  # a cache of 0.4.0: no qualities
    with pytest.raises(typer.BadParameter, match="before 0.5.0"):
        decoder_finetune.main(tmp_path / "b.pt", out=tmp_path / "x.pt", **{**settings, "cache": tmp_path / "old.pt"})

    config = ModelConfig(**{**TINY_VR.to_dict(), "postfilter": 4, "postfilter_quality": True})
    metrics = train([str(folder)], tmp_path / "pf", config, TrainConfig(steps=2, batch=2, crop=64, val_images=2,
                                                                         integer_from=0.5))
    assert metrics["run_steps"] == 2 and np.isfinite(metrics["loss"])


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_subpixel_form_of_a_transposed_convolution_computes_the_same(kernel):
    """The decoder graphs write g_s's transposed convolutions as convolutions and depth-to-space."""
    from nicodec.export.graphs import SubpixelConvTranspose, fast_synthesis_layers

    torch.manual_seed(kernel)
    layer = torch.nn.ConvTranspose2d(6, 5, kernel, stride=2, padding=kernel // 2, output_padding=1)
    x = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        assert torch.allclose(SubpixelConvTranspose(layer)(x), layer(x), atol=1e-5)
    with pytest.raises(ValueError, match="stride-2"):
        SubpixelConvTranspose(torch.nn.ConvTranspose2d(6, 5, kernel, stride=1, padding=kernel // 2))
    model = MeanScaleHyperprior(TINY)
    kinds = [type(m).__name__ for m in fast_synthesis_layers(model.g_s)]
    assert kinds == ["SubpixelConvTranspose", "GDN", "SubpixelConvTranspose", "GDN", "SubpixelConvTranspose", "GDN",
                     "ConvTranspose2d"]
