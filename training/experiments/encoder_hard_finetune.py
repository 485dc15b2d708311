"""Fine-tune the encoder alone, with hard rounding, against the shipped decoder and entropy model.

    python training/experiments/encoder_hard_finetune.py training/checkpoints/nicodec-mshp-vr-1wd.pt \\
        --out runs/ga/slim.pt --data '../shared/data/train/shard-[0-4]' --val-data HELD_OUT --minutes 60

An experiment, not a shipped step: on vr-1wd a first run found no gain (2026-11-30, lr 2e-5,
batch 8 of 256x256, 400 steps in 19 minutes on 2 CPU cores, stopped by hand: the mean held-out
objective moved -0.15%, -0.04%, -0.04%, +0.01% at steps 100 to 400; ``training/LOG.md``,
"Experiments"). That mean was dominated by the high qualities, whose objective is largest, and
the learning rate had not annealed; the progress lines now give each quality's relative change
and their mean. A second run (30-minute box, annealed, 657 steps) ended at +1.77% at quality 1
to -0.15% at 100, a mean of +0.31%: it trades low rates for high ones and gains nothing. Kept
so the measurement can be repeated on a model trained further.

Training replaced rounding by additive uniform noise in the rate, so the analysis
learned to send latents whose noisy likelihood is high, not whose rounded symbols
are cheap; and the synthesis it was trained with has since been retrained
(``decoder_finetune``). Guo, Zhang, Feng and Chen ("Soft then hard: rethinking the
quantization in neural image compression", ICML 2021) close that gap by freezing the
decoder and the entropy model and training the encoder on the real, hard-rounded
objective. Here both the rate and the distortion see ``round(y - means) + means``
(straight-through gradients), the rate is the mass of the rounded value under the
tables' Gaussian and the hyper-latent's prior, and the distortion is the frozen
synthesis's. Only ``g_a`` and ``h_a`` learn; the gains, ``h_s``, the prior of z and
``g_s`` stay bit for bit as they are, so the exported decoder, entropy-parameter graph
and tables do not change and the new encoder's files decode with the old model (and
the old files with the new one: export with ``--decodes-files-of``).

Each crop is coded at a quality drawn uniformly from 1 to 100 (the runtime's mapping of
quality to a position between the trained levels, ``nicodec.model.quality_position``),
with the lambda interpolated there as the gains are (exponentially).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console

from nicodec.training.data import CropSampler, center_crops, list_images, load_rgb
from nicodec.training.model import MeanScaleHyperprior, gaussian_likelihood, ste_round
from nicodec.training.checkpoint import load_model, partly_retrained, save_weights
from nicodec.training.train import DEFAULT_DATA

console = Console(stderr=True)
HELD_OUT_QUALITIES = (1.0, 15.0, 29.0, 43.0, 57.0, 72.0, 86.0, 100.0)
"""The qualities of the held-out crops: the benchmark's eight."""
TRAINED = ("g_a.", "h_a.")
"""The parameters that learn; every other tensor is the checkpoint's own."""


@dataclass
class EncoderTuneConfig:
    """Settings of one encoder fine-tune; saved in the checkpoint it writes."""

    data: tuple[str, ...] = (DEFAULT_DATA,)  # training folders (glob patterns allowed)
    val_data: tuple[str, ...] = ()  # held-out folders; empty: the last 8 training images
    crop: int = 256  # side of the random training crops
    val_crop: int = 320  # side of the held-out centre crops
    batch: int = 8
    lr: float = 1e-5  # peak learning rate (Adam), after a 50-step warm-up, cosine to zero
    minutes: float = 60.0  # time box of the training proper
    report_every: int = 100  # steps between held-out measurements
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: torch's default)
    qualities: tuple[float, ...] = field(default=HELD_OUT_QUALITIES)  # of the held-out crops


def level_and_lambda(model: MeanScaleHyperprior, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The level position of each quality (as ``nicodec.model.quality_position``) and its lambda,
    ``log lambda`` mixed linearly between the neighbouring trained levels, as the gains are."""
    levels = model.config.levels
    position = (quality - 1.0) / 99.0 * (levels - 1)
    low = position.floor().long().clamp(0, levels - 2)
    frac = position - low
    log_lmbda = torch.log(torch.tensor(model.config.lmbdas, dtype=torch.float64))
    lmbda = torch.exp(log_lmbda[low] * (1 - frac.double()) + log_lmbda[low + 1] * frac.double())
    return position, lmbda.float()


def hard_objective(model: MeanScaleHyperprior, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rate and distortion of each image as the codec codes it, with plain rounding.

    Args:
        model: a variable-rate model with the integer entropy parameters.
        x: images in [0, 1] (B, 3, H, W).
        quality: each image's quality (B,), 1 to 100.

    Returns:
        Per image: ``bpp`` (of y's and z's symbols under the model's own probabilities),
        ``mse`` (of the synthesis's output ``x_hat``, not rounded to 8 bits) and ``loss``
        (``lambda * 255**2 * mse + bpp``); and ``x_hat``.
    """
    position, lmbda = level_and_lambda(model, quality)
    gain, inverse_gain = model.gains_at(position)
    y = model.g_a(x) * gain[:, :, None, None]
    z_hat = ste_round(model.h_a(y))
    means, scales = model.entropy_parameters(z_hat)
    y_hat = ste_round(y - means) + means
    bits = -torch.log2(gaussian_likelihood(y_hat, means, scales).clamp_min(1e-9)).sum(dim=(1, 2, 3))
    bits = bits - torch.log2(model.z_prior.likelihood(z_hat).clamp_min(1e-9)).sum(dim=(1, 2, 3))
    x_hat = model.g_s(y_hat * inverse_gain[:, :, None, None], model.level_quality(position))
    bpp = bits / (x.shape[2] * x.shape[3])
    mse = (x_hat - x).pow(2).mean(dim=(1, 2, 3))
    return {"bpp": bpp, "mse": mse, "loss": lmbda * 255**2 * mse + bpp, "x_hat": x_hat}


@torch.no_grad()
def held_out(model: MeanScaleHyperprior, crops: torch.Tensor, qualities: tuple[float, ...]) -> dict:
    """The mean loss over held-out crops at each of ``qualities``, and bpp and PSNR per quality
    (PSNR of the synthesis's output as it is, neither clamped nor rounded to 8 bits)."""
    per_quality = []
    for quality in qualities:
        q = torch.full((len(crops),), quality)
        out = hard_objective(model, crops, q)
        per_quality.append({"quality": quality, "loss": float(out["loss"].mean()), "bpp": float(out["bpp"].mean()),
                            "psnr": float((10 * torch.log10(1 / out["mse"].clamp_min(1e-10))).mean())})
    return {"loss": sum(p["loss"] for p in per_quality) / len(per_quality), "per_quality": per_quality}


def finetune(model: MeanScaleHyperprior, sampler: CropSampler, val: torch.Tensor, cfg: EncoderTuneConfig) -> list[dict]:
    """Adam on g_a and h_a for ``cfg.minutes``: a 50-step warm-up, then a cosine fall to zero.

    Returns:
        The held-out figures at the start, every ``cfg.report_every`` steps and at the last step.
    """
    params = [p for name, p in model.named_parameters() if name.startswith(TRAINED)]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    base = held_out(model, val, cfg.qualities)
    history = [{"step": 0, "seconds": 0.0, "held_out_loss": base["loss"]}]
    console.print(f"step 0: held-out loss {base['loss']:.5f}")
    start, step, budget = time.monotonic(), 0, cfg.minutes * 60
    while (elapsed := time.monotonic() - start) < budget or step == 0:
        step += 1
        progress = min(elapsed / budget, 1.0) if budget > 0 else 0.0
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * progress))
        quality = 1 + 99 * torch.rand(cfg.batch, generator=gen)
        out = hard_objective(model, sampler.batch(cfg.batch), quality)
        loss = out["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.report_every == 0 or time.monotonic() - start >= budget:
            now = held_out(model, val, cfg.qualities)
            changes = [a["loss"] / b["loss"] - 1 for a, b in zip(now["per_quality"], base["per_quality"])]
            history.append({"step": step, "seconds": round(time.monotonic() - start, 1), "train_loss": float(loss.detach()),
                            "held_out_loss": now["loss"], "held_out_change": sum(changes) / len(changes),
                            "held_out_change_per_quality": changes})
            console.print(f"step {step}: train {float(loss.detach()):.5f}, held-out {now['loss']:.5f}, mean change per "
                          f"quality {100 * history[-1]['held_out_change']:+.3f}% "
                          f"({', '.join(f'{100 * c:+.2f}' for c in changes)}) at {history[-1]['seconds']:.0f} s")
    return history


def main(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Checkpoint of the shipped model.")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="Weights-only checkpoint to write (fp16 weights).")],
    data: Annotated[list[str], typer.Option(help="Training folders (glob patterns allowed).")] = [DEFAULT_DATA],
    val_data: Annotated[list[str], typer.Option(help="Held-out folders; default: the last 8 training images.")] = [],
    crop: Annotated[int, typer.Option(help="Crop side (a multiple of 64).")] = EncoderTuneConfig.crop,
    val_crop: Annotated[int, typer.Option(help="Side of the held-out centre crops (a multiple of 64).")] = EncoderTuneConfig.val_crop,
    minutes: Annotated[float, typer.Option(min=0, help="Time box of the training proper.")] = EncoderTuneConfig.minutes,
    batch: Annotated[int, typer.Option(min=1)] = EncoderTuneConfig.batch,
    lr: Annotated[float, typer.Option(min=0)] = EncoderTuneConfig.lr,
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: torch's default).")] = 0,
    seed: int = 0,
):
    """Fine-tune g_a and h_a on the hard-rounded objective and write a weights-only checkpoint."""
    cfg = EncoderTuneConfig(data=tuple(data), val_data=tuple(val_data), crop=crop, val_crop=val_crop, batch=batch,
                            lr=lr, minutes=minutes, seed=seed, threads=threads)
    if crop <= 0 or val_crop <= 0 or crop % 64 or val_crop % 64:
        raise typer.BadParameter("crop sides must be positive multiples of 64")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, ckpt = load_model(checkpoint)
    if not model.config.levels or not model.config.integer_entropy:
        raise typer.BadParameter(f"{checkpoint} is not a variable-rate model with integer entropy parameters")
    model.eval()  # no layer behaves differently in training; eval keeps it explicit
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(TRAINED))
    paths = list_images(cfg.data)
    val_paths = list_images(cfg.val_data) if cfg.val_data else paths[-8:]
    train_paths = [p for p in paths if p not in set(val_paths)]
    started = time.monotonic()
    images = [im for im in (load_rgb(p, crop) for p in train_paths) if im is not None]
    val_images = [im for im in (load_rgb(p, val_crop) for p in val_paths) if im is not None]
    if not images or not val_images:
        raise typer.BadParameter(f"{len(images)} training images of at least {crop} pixels and {len(val_images)} "
                                 f"held-out images of at least {val_crop}; both are needed")
    sampler = CropSampler(images, crop, torch.device("cpu"), generator_seed=seed)
    val = center_crops(val_images, val_crop)
    console.print(f"{len(images)} training images, {len(val)} held-out crops ({time.monotonic() - started:.0f} s)")
    before = held_out(model, val, cfg.qualities)
    history = finetune(model, sampler, val, cfg)
    # Only g_a and h_a are stored anew: the export's decoder and entropy side stay the same files.
    state, stored = partly_retrained(checkpoint, ckpt, model, TRAINED)
    after = held_out(stored.eval(), val, cfg.qualities)  # measured again as stored
    metrics = dict(ckpt.get("metrics", {}))
    metrics["encoder_finetune"] = {
        "config": asdict(cfg), "training_images": len(images), "steps": history[-1]["step"], "history": history,
        "held_out_before": before, "held_out_after": after,
        "total_minutes": round((time.monotonic() - started) / 60, 1),
    }
    save_weights(out, ckpt, metrics, state)
    console.print(f"wrote {out}: held-out loss {before['loss']:.5f} -> {after['loss']:.5f} "
                  f"({100 * (after['loss'] / before['loss'] - 1):+.3f}%)")
    for b, a in zip(before["per_quality"], after["per_quality"]):
        console.print(f"  quality {b['quality']:g}: {b['bpp']:.4f} bpp {b['psnr']:.3f} dB -> {a['bpp']:.4f} bpp {a['psnr']:.3f} dB")


if __name__ == "__main__":
    typer.run(main)
