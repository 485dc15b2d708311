"""Fine-tune the hyper-synthesis alone, in integer (or float) arithmetic, on frozen latents.

    python -m nicodec.training.entropy_finetune runs/mine/last.pt \\
        --out runs/int/int.pt --mode integer --steps 3000

It takes a single-rate checkpoint (a variable-rate model learns its integer ``h_s`` in
training, ``nicodec-train --integer-from``), such as a run's ``last.pt``; the one it was
made for, ``training/checkpoints/nicodec-mshp-default-1.pt``, is no longer in the tree
(training/LOG.md has the run and the commit that holds it).

The analysis (``g_a``, ``h_a``), the synthesis and the hyper-latent's prior stay as
they are; only ``h_s`` learns, so the distortion does not move and the rate of y is
the whole objective. The latents of random training crops are computed once and
kept in memory, which makes this cheap enough for a CPU.

``--mode integer`` calibrates the activation scales, switches the model to the
integer path (``nicodec.training.integer``) and trains through it with
straight-through rounding; ``--mode float`` trains the float ``h_s`` the same way, as
the reference the integer version's cost is measured against.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console

from .data import list_images, load_rgb_or_warn
from .integer import MEAN_BITS, calibrate
from .model import (
    MeanScaleHyperprior,
    float_scale_index,
    gaussian_likelihood,
    scale_table,
    ste_round,
)
from .checkpoint import save_atomically
from .arguments import adam_lr, batch_size, non_negative_int, positive_int, seed_value
from .run_checks import start_finetune
from .stopping import Stop
from .train import DEFAULT_DATA

# Markup off: a path or model id of "[x]" would be taken for a style (and "[/x]" ends in a
# MarkupError); soft wrap: one line per message in a log, whatever its width.
# force_jupyter off: in a notebook's kernel too, lines on stderr rather than HTML displays.
console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False, force_jupyter=False)


@torch.no_grad()
def latents(model: MeanScaleHyperprior, paths: list[str], crop: tuple[int, int], per_image: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``y`` and ``z_hat`` of ``per_image`` random (height, width) crops of each image.

    Portrait images are transposed to landscape first; smaller images are skipped.

    Raises:
        ValueError: no image is large enough for a crop.
    """
    rng = np.random.default_rng(seed)
    ch, cw = crop
    ys, zs, batch = [], [], []

    def flush():
        x = torch.stack(batch).float() / 255.0
        y = model.g_a(x)
        ys.append(y)
        zs.append(torch.round(model.h_a(y)))
        batch.clear()

    for path in paths:
        im = load_rgb_or_warn(path, ch, console.print)
        if im is None:
            continue
        if im.shape[1] > im.shape[2]:
            im = im.transpose(1, 2)
        if im.shape[2] < cw:
            continue
        for _ in range(per_image):
            top = int(rng.integers(0, im.shape[1] - ch + 1))
            left = int(rng.integers(0, im.shape[2] - cw + 1))
            batch.append(im[:, top : top + ch, left : left + cw])
            if len(batch) == 16:
                flush()
    if batch:
        flush()
    if not ys:
        raise ValueError(f"none of the {len(paths)} images is at least {ch} by {cw} pixels (in either orientation)")
    return torch.cat(ys), torch.cat(zs)


def coded_parameters(model: MeanScaleHyperprior, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and table scales as the codec uses them (fixed-point means, scales rounded up to the table)."""
    means, scales = model.entropy_parameters(z_hat)
    if model.config.integer_entropy:
        return means, scales  # already exactly the codec's values
    if not bool(torch.isfinite(scales).all()):  # a run that diverged: no table index to take
        return means, torch.full_like(scales, float("nan"))
    table = scale_table().to(scales.device)
    return torch.round(means * 2**MEAN_BITS) / 2**MEAN_BITS, table[float_scale_index(scales).long()].float()


@torch.no_grad()
def coded_bpp(model: MeanScaleHyperprior, y: torch.Tensor, z_hat: torch.Tensor | None, pixels_per_latent: int = 256) -> float:
    """Bits per pixel of y's symbols under the discretized Gaussians the codec codes with.

    With ``z_hat`` None, z is recomputed by ``h_a`` and its bits under the prior are added.
    """
    bits = 0.0
    for i in range(0, len(y), 16):
        if z_hat is None:
            zb = torch.round(model.h_a(y[i : i + 16]))
            bits += float(-torch.log2(model.z_prior.likelihood(zb).clamp_min(1e-9)).sum())
        else:
            zb = z_hat[i : i + 16]
        means, scales = coded_parameters(model, zb)
        symbols = torch.round(y[i : i + 16] - means)
        p = gaussian_likelihood(symbols, torch.zeros_like(symbols), scales.float())
        bits += float(-torch.log2(p.clamp_min(1e-9)).sum())
    return bits / (y.numel() / y.shape[1] * pixels_per_latent)


def finetune(
    model: MeanScaleHyperprior, y: torch.Tensor, z_hat: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor],
    steps: int, batch: int, lr: float, seed: int = 0, hyper: bool = False, stop: Stop | None = None,
) -> list[dict]:
    """Adam on h_s alone, minimizing y's rate; cosine learning-rate decay to zero.

    With ``hyper``, ``h_a`` and the prior of z learn too, and the rate of z joins the
    objective (y, hence the distortion, still does not move). ``stop`` ends the training
    after the step in hand once it has caught a signal.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.h_s.parameters())
    if hyper:
        params += list(model.h_a.parameters()) + list(model.z_prior.parameters())
        val = (val[0], None)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = [{"step": 0, "val_bpp": coded_bpp(model, *val)}]
    console.print(f"step 0: held-out coded bpp {history[-1]['val_bpp']:.4f}")
    start = time.monotonic()
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        pick = torch.randint(0, len(y), (batch,), generator=gen)
        yb, zb = y[pick], z_hat[pick]
        if torch.rand((), generator=gen) < 0.5:
            yb, zb = yb.flip(3), zb.flip(3)
        pixels = yb.numel() / yb.shape[1] * 256
        z_bits = 0.0
        if hyper:
            z = model.h_a(yb)
            z_noisy = z + torch.rand(z.shape, generator=gen) - 0.5
            z_bits = -torch.log2(model.z_prior.likelihood(z_noisy).clamp_min(1e-9)).sum()
            zb = ste_round(z)
        means, scales = model.entropy_parameters(zb)
        noisy = yb + torch.rand(yb.shape, generator=gen) - 0.5
        y_bits = -torch.log2(gaussian_likelihood(noisy, means.float(), scales.float()).clamp_min(1e-9)).sum()
        bpp = (y_bits + z_bits) / pixels
        opt.zero_grad(set_to_none=True)
        bpp.backward()
        opt.step()
        stopping = stop is not None and stop.signal
        if not (torch.isfinite(bpp.detach()) and all(bool(torch.isfinite(p).all()) for p in params)):
            history.append({"step": step, "diverged": True})  # (the held-out measure cannot index its tables)
            break
        if step % max(1, steps // 10) == 0 or step == steps or stopping:
            history.append({"step": step, "train_bpp": float(bpp.detach()), "val_bpp": coded_bpp(model, *val), "seconds": round(time.monotonic() - start, 1)})
            console.print(f"step {step}: train {float(bpp.detach()):.4f}, held-out coded bpp {history[-1]['val_bpp']:.4f} ({history[-1]['seconds']} s)")
        if stopping:
            history[-1]["stopped_by"] = stop.name  # (a signal during the last step's report stops nothing)
            break
    for p in model.parameters():
        p.requires_grad_(True)
    return history


def to_integer(model: MeanScaleHyperprior, z_hat: torch.Tensor) -> MeanScaleHyperprior:
    """The same weights with the integer hyper-synthesis switched on, its scales calibrated."""
    cfg = type(model.config)(**{**model.config.to_dict(), "integer_entropy": True})
    out = MeanScaleHyperprior(cfg)
    out.load_state_dict(model.state_dict(), strict=False)
    out.hs_act_scale.copy_(calibrate(model.h_s, z_hat))
    return out


def model_fingerprint(model: MeanScaleHyperprior) -> str:
    """SHA-256 of the weights the latents depend on (``g_a`` and ``h_a``)."""
    digest = hashlib.sha256()
    for name, value in sorted({**model.g_a.state_dict(prefix="g_a."), **model.h_a.state_dict(prefix="h_a.")}.items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_latents(cache: Path, key: dict) -> list[torch.Tensor]:
    """The latents kept in ``cache``: training ``y``, ``z_hat``, then the held-out pair.

    Raises:
        typer.BadParameter: the file is no cache of this program, or one made with other settings.
    """
    try:
        *tensors, cached_key = torch.load(cache, weights_only=True)
        same = json.loads(cached_key) == json.loads(json.dumps(key))
    except Exception:  # noqa: BLE001 - a file of anything else, or a cache of an older version without its settings
        raise typer.BadParameter(f"{cache} is not a latent cache of this program (or one of an older version "
                                 "that did not record its settings); delete it or give another --cache") from None
    if not same or len(tensors) != 4:
        raise typer.BadParameter(f"{cache} holds latents made with other settings or another model; "
                                 "delete it or give another --cache")
    return tensors


def main(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Checkpoint to start from.")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="Weights-only checkpoint to write (fp16 weights).")],
    mode: Annotated[str, typer.Option(help="'integer' or 'float' hyper-synthesis.")] = "integer",
    data: Annotated[list[str], typer.Option(help="Training folders (glob patterns allowed).")] = [DEFAULT_DATA],
    crop: Annotated[tuple[int, int], typer.Option(help="Crop height and width (multiples of 64).")] = (256, 384),
    cache: Annotated[Path | None, typer.Option(dir_okay=False, help="Keep the computed latents in this file and reuse "
                                               "them (refused when made with other settings or another model).")] = None,
    per_image: Annotated[int, typer.Option(parser=positive_int, help="Crops per training image.")] = 2,
    steps: Annotated[int, typer.Option(parser=positive_int)] = 3000,
    batch: Annotated[int, typer.Option(parser=batch_size)] = 16,
    lr: Annotated[float, typer.Option(parser=adam_lr)] = 5e-5,
    threads: Annotated[int, typer.Option(parser=non_negative_int, help="torch CPU threads (0: torch's default).")] = 0,
    hyper: Annotated[bool, typer.Option(metavar="", help="Train h_a and the prior of z too (rate of y and z).")] = False,
    force: Annotated[bool, typer.Option(metavar="", help="Replace OUT if it exists.")] = False,
    seed: Annotated[int, typer.Option(parser=seed_value)] = 0,
):
    """Fine-tune h_s on frozen latents and write a weights-only checkpoint."""
    if mode not in ("integer", "float"):
        raise typer.BadParameter("mode must be 'integer' or 'float'")
    if not all(side >= 64 and side % 64 == 0 for side in crop):
        raise typer.BadParameter(f"crop sides must be positive multiples of 64, not {crop[0]} {crop[1]}", param_hint="--crop")
    model, ckpt = start_finetune(checkpoint, out, cache, force, threads, seed)
    if model.config.levels:
        raise typer.BadParameter(
            "this is a variable-rate model: its latents depend on the quality, so train its integer h_s "
            "with the rest of it (nicodec-train --integer-from)"
        )
    model.eval()
    key = {"model": model_fingerprint(model), "data": list(data), "crop": list(crop), "per_image": per_image, "seed": seed}
    started = time.monotonic()
    if cache is not None and cache.exists():
        y, z_hat, *val = cached_latents(cache, key)
    else:
        try:
            paths = list_images(data)
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--data") from None
        if len(paths) <= 8:
            raise typer.BadParameter(f"{len(paths)} images found in {', '.join(data)}: the last 8 are held out, "
                                     "so at least 9 are needed", param_hint="--data")
        try:
            y, z_hat = latents(model, paths[:-8], crop, per_image, seed)
        except ValueError as exc:
            raise typer.BadParameter(f"training images: {exc}", param_hint="--crop") from None
        try:
            val = latents(model, paths[-8:], crop, 4, seed + 1)
        except ValueError as exc:
            raise typer.BadParameter(f"held-out images (the last 8): {exc}", param_hint="--crop") from None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_atomically([y, z_hat, *val, json.dumps(key)], cache)
    console.print(f"{len(y)} training crops, {len(val[0])} held-out crops ({time.monotonic() - started:.0f} s)")
    base_bpp = coded_bpp(model, val[0], None if hyper else val[1])
    if mode == "integer" and not model.config.integer_entropy:
        model = to_integer(model, z_hat)
        console.print(f"activation scales: {model.hs_act_scale.tolist()}")
    stop = Stop()
    with stop.on_signals():
        history = finetune(model, y, z_hat, val, steps, batch, lr, seed, hyper=hyper, stop=stop)
    if history[-1].get("diverged") or not math.isfinite(history[-1].get("val_bpp", math.nan)) or not all(
            bool(torch.isfinite(p.half() if p.dtype == torch.float32 else p).all()) for p in model.parameters()):
        console.print(f"error: the weights are not finite at step {history[-1]['step']}: training diverged "
                      f"({out} was not written); a lower --lr usually helps")
        raise typer.Exit(1)
    metrics = {
        **ckpt.get("metrics", {}),
        "entropy_finetune": {
            "mode": mode, "hyper": hyper, "steps": steps, "steps_trained": history[-1]["step"], "batch": batch,
            "lr": lr, "crop": list(crop),
            "start_val_y_bpp": base_bpp, "history": history,
            "minutes": round((time.monotonic() - started) / 60, 1),
            **({"stopped_by": history[-1]["stopped_by"]} if "stopped_by" in history[-1] else {}),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.dtype == torch.float32 else v for k, v in model.state_dict().items()}
    save_atomically(
        {"model_config": model.config.to_dict(), "train_config": ckpt.get("train_config"), "step": ckpt.get("step"),
         "metrics": metrics, "model": state},
        out,
    )
    stopped = f"stopped by {stop.name} at step {history[-1]['step']} of {steps}; " if "stopped_by" in history[-1] else ""
    console.print(f"{stopped}wrote {out}: held-out coded y bpp {base_bpp:.4f} (start, float) -> {history[-1]['val_bpp']:.4f}")
    if stopped:
        raise typer.Exit(128 + stop.signal)


if __name__ == "__main__":
    from nicodec.launch import run_app

    run_app(main, "python -m nicodec.training.entropy_finetune")
