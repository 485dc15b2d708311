"""Fine-tune the synthesis alone on the latents the shipped encoder really writes.

    python -m nicodec.training.decoder_finetune training/checkpoints/MODEL.pt \\
        --model runtime/models/default --out runs/gs/slim.pt --minutes 60

Training sees the synthesis input through a straight-through rounding of ``y - means``
and never sees the encoder's rate-distortion rounding (``nicodec.quantize.rdo_round``),
which moves some symbols one step towards zero; nor the fp32 arithmetic of the exported
graphs (training runs under bf16 autocast). Here the codec itself (onnxruntime, the
default encoder) encodes random training crops at random qualities, each file is
entropy-decoded back to the synthesis input ``y_hat`` (inverse gain applied), and only
``g_s`` learns to map those inputs to the crops. The encoder, the entropy model and the
gains stay as they are, so every file keeps its symbols (its size changes only with the
length of the model id in the header): the rate does not move and the objective is
distortion alone, the mean over crops of ``10 log10 MSE`` (minus the mean PSNR, so each
crop's relative error counts alike, as in a BD-rate over qualities).

``--model`` must be the export of ``checkpoint`` (checked, before any encoding, on a crop of
the first held-out image large enough for a held-out crop: the torch synthesis must reproduce
the exported decoder's pixels).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console

from nicodec.console import writes_to_terminal

from .data import held_out_copies, list_images, load_rgb, load_rgb_or_warn, shorter_side
from .checkpoint import partly_retrained, save_atomically, save_weights
from .arguments import adam_lr, batch_size, crop_side, non_negative_float, non_negative_int, seed_value
from .run_checks import start_finetune
from .stopping import Stop
from .train import DEFAULT_DATA

# Markup off: a path or model id of "[x]" would be taken for a style (and "[/x]" ends in a
# MarkupError); soft wrap: one line per message in a log, whatever its width.
# force_jupyter off: in a notebook's kernel too, lines on stderr rather than HTML displays.
console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False, force_jupyter=False)
HELD_OUT_QUALITIES = (1.0, 15.0, 29.0, 43.0, 57.0, 72.0, 86.0, 100.0)
"""The qualities of the held-out crops (a variable-rate model): the benchmark's eight."""


@dataclass
class DecoderTuneConfig:
    """Settings of one synthesis fine-tune; saved in the checkpoint it writes."""

    data: tuple[str, ...] = (DEFAULT_DATA,)  # training folders (glob patterns allowed)
    val_data: tuple[str, ...] = ()  # held-out folders; empty: the last 8 training images
    crop: int = 256  # side of the random training crops (a multiple of 64)
    per_image: int = 6  # random crops per training image, each at a random quality
    val_crop: int = 320  # side of the held-out centre crops, one per held-out quality
    minutes: float = 60.0  # time box of the training proper
    batch: int = 8
    lr: float = 2e-5  # peak learning rate (Adam), after a 50-step warm-up, cosine to zero
    threads: int = 0  # torch CPU threads (0: torch's default)
    seed: int = 0


def encoded_latents(codec, paths: list[str], crop: int, per_image: int, seed: int,
                    qualities: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthesis inputs of random ``crop``-sided crops, as the codec's files hold them.

    Args:
        codec: a ``nicodec.Codec`` of the model being fine-tuned.
        paths: images; those with a side shorter than ``crop`` are skipped.
        per_image: random crops per image (with ``qualities``, one centre crop per quality).
        qualities: fixed qualities (held-out sets); None draws one uniformly in 1..100 per crop
            (a single-rate model codes every crop at its one rate: the qualities are then ignored).

    Returns:
        ``(y_hat, crops, qualities)``: float32 (n, M, crop/16, crop/16), uint8 (n, 3, crop, crop)
        and float32 (n,) (NaN for a single-rate model).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    rng = np.random.default_rng(seed)
    y_hats, crops, used = [], [], []
    columns = [TextColumn("encoding crops"), BarColumn(), TextColumn("{task.completed}/{task.total} images"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True, disable=not writes_to_terminal(console)) as bar:  # minutes
        task = bar.add_task("encode", total=len(paths))
        for number, path in enumerate(paths, 1):
            _encode_crops(codec, path, crop, per_image, rng, qualities, y_hats, crops, used)
            bar.update(task, completed=number)
            if not writes_to_terminal(console) and number % max(1, len(paths) // 10) == 0:  # a log file gets no bar
                console.print(f"encoding crops: {number}/{len(paths)} images")
    return torch.stack(y_hats), torch.stack(crops), torch.tensor(used, dtype=torch.float32)


def _encode_crops(codec, path: str, crop: int, per_image: int, rng, qualities, y_hats: list, crops: list,
                  used: list) -> None:
    """:func:`encoded_latents` for one image, appending to its lists."""
    im = load_rgb_or_warn(path, crop, console.print)
    if im is None:
        return
    pixels = im.permute(1, 2, 0).numpy()
    h, w = pixels.shape[:2]
    if qualities is None:
        spots = [(int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1)), float(rng.uniform(1, 100)))
                 for _ in range(per_image)]
    else:
        spots = [((h - crop) // 2, (w - crop) // 2, float(q)) for q in qualities]
    for top, left, quality in spots:
        part = np.ascontiguousarray(pixels[top : top + crop, left : left + crop])
        if not codec.model.variable_rate:
            quality = math.nan
        _, y_hat = codec.decode_latents(codec.encode(part, quality=None if math.isnan(quality) else quality))
        y_hats.append(torch.from_numpy(y_hat[0]))
        crops.append(torch.from_numpy(part).permute(2, 0, 1).contiguous())
        used.append(quality)


def per_crop_mse(g_s: torch.nn.Module, y_hat: torch.Tensor, crops: torch.Tensor, qualities: torch.Tensor,
                 coded: bool = False) -> torch.Tensor:
    """Mean squared error of each crop on the [0, 1] scale; ``coded``: of the uint8 pixels the decoder writes.
    ``qualities``: each crop's, for a post-filter that sees it (``nicodec.training.model.Synthesis``)."""
    x_hat = g_s(y_hat, qualities)
    if coded:
        x_hat = torch.round(x_hat.clamp(0, 1) * 255) / 255
    return (x_hat - crops.float() / 255).pow(2).mean(dim=(1, 2, 3))


@torch.no_grad()
def held_out_psnr(g_s: torch.nn.Module, y_hat: torch.Tensor, crops: torch.Tensor, qualities: torch.Tensor,
                  batch: int = 8) -> torch.Tensor:
    """PSNR (dB) of each held-out crop as the exported decoder would write it."""
    mse = torch.cat([per_crop_mse(g_s, y_hat[i : i + batch], crops[i : i + batch], qualities[i : i + batch], coded=True)
                     for i in range(0, len(y_hat), batch)])
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def finetune(g_s: torch.nn.Module, train_set: tuple[torch.Tensor, ...], val: tuple[torch.Tensor, ...],
             minutes: float, batch: int, lr: float, seed: int = 0, report_every: int = 100,
             base: torch.Tensor | None = None, stop: Stop | None = None) -> list[dict]:
    """Adam on ``g_s`` for ``minutes``: a 50-step warm-up, then a cosine fall to zero over the time box.

    Args:
        g_s: the synthesis, trained in place.
        train_set, val: ``(y_hat, crops, qualities)`` as :func:`encoded_latents` returns them.
        minutes: the time box; at least one step is taken.
        batch, lr, seed: crops per step, peak learning rate, seed of the crop draws.
        report_every: steps between held-out measurements.
        base: the held-out PSNR of each crop before training (:func:`held_out_psnr`), if known.
        stop: ends the training after the step in hand once it has caught a signal.

    Returns:
        The held-out figures at the start, every ``report_every`` steps and at the last step.
    """
    y_hat, crops, qualities = train_set
    opt = torch.optim.Adam(g_s.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    base = held_out_psnr(g_s, *val) if base is None else base
    history = [{"step": 0, "seconds": 0.0, "held_out_psnr": float(base.mean())}]
    console.print(f"step 0: held-out PSNR {float(base.mean()):.4f} dB")
    start, step, budget = time.monotonic(), 0, minutes * 60
    while (elapsed := time.monotonic() - start) < budget or step == 0:
        step += 1
        progress = min(elapsed / budget, 1.0) if budget > 0 else 0.0
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * progress))
        pick = torch.randint(0, len(y_hat), (batch,), generator=gen)
        loss = 10 * torch.log10(per_crop_mse(g_s, y_hat[pick], crops[pick], qualities[pick]).clamp_min(1e-10)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stopping = stop is not None and stop.signal
        if step % report_every == 0 or time.monotonic() - start >= budget or stopping:
            psnr = held_out_psnr(g_s, *val)
            history.append({"step": step, "seconds": round(time.monotonic() - start, 1), "train_psnr": -float(loss.detach()),
                            "held_out_psnr": float(psnr.mean()), "held_out_gain_db": float((psnr - base).mean())})
            console.print(f"step {step}: train {-float(loss.detach()):.3f} dB, held-out {float(psnr.mean()):.4f} dB "
                          f"({float((psnr - base).mean()):+.4f}) at {history[-1]['seconds']:.0f} s")
        if stopping:
            history[-1]["stopped_by"] = stop.name  # (a signal during the last step's report stops nothing)
            break
    return history


@torch.no_grad()
def export_agreement(net, codec, path: str) -> float:
    """PSNR (dB) between the exported decoder's pixels and the torch synthesis's, on a crop of ``path``
    coded at the default quality: about 95 dB when ``codec`` is ``net``'s export, far less otherwise."""
    image = load_rgb(path, 64)
    side = min(256, image.shape[1] // 64 * 64, image.shape[2] // 64 * 64)
    pixels = np.ascontiguousarray(image[:, :side, :side].permute(1, 2, 0).numpy())
    encoded = codec.encode(pixels)
    exported = torch.from_numpy(codec.decode(encoded, as_array=True)).permute(2, 0, 1).float()
    header, latent = codec.decode_latents(encoded)
    mine = torch.round(net.g_s(torch.from_numpy(latent), header.quality).clamp(0, 1) * 255)[0]
    return 10 * math.log10(255**2 / max(float((mine - exported).pow(2).mean()), 1e-10))


def main(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The training checkpoint whose synthesis to retrain (the shipped model's, or your own).")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="Weights-only checkpoint to write (fp16 weights).")],
    model: Annotated[Path, typer.Option(exists=True, file_okay=False, help="The exported model folder of CHECKPOINT.")],
    data: Annotated[list[str], typer.Option(help="Training folders (glob patterns allowed).")] = list(DecoderTuneConfig.data),
    val_data: Annotated[list[str], typer.Option(help="Held-out folders; default: the last 8 training images.")] = [],
    crop: Annotated[int, typer.Option(parser=crop_side, help="Crop side (a multiple of 64).")] = DecoderTuneConfig.crop,
    per_image: Annotated[int, typer.Option(min=1, help="Random crops per training image.")] = DecoderTuneConfig.per_image,
    val_crop: Annotated[int, typer.Option(
        parser=crop_side, help="Side of the held-out centre crops (a multiple of 64).")] = DecoderTuneConfig.val_crop,
    minutes: Annotated[float, typer.Option(parser=non_negative_float, help="Time box of the training proper (at least one step is taken: "
                                                      "0 is one step, not nicodec-train's no limit).")] = DecoderTuneConfig.minutes,
    batch: Annotated[int, typer.Option(parser=batch_size)] = DecoderTuneConfig.batch,
    lr: Annotated[float, typer.Option(parser=adam_lr)] = DecoderTuneConfig.lr,
    cache: Annotated[Path | None, typer.Option(dir_okay=False, help="Keep the encoded latents in this file and reuse them "
                                               "(refused when it was made with other settings or another model).")] = None,
    threads: Annotated[int, typer.Option(
        parser=non_negative_int, help="torch CPU threads (0: torch's default).")] = DecoderTuneConfig.threads,
    seed: Annotated[int, typer.Option(parser=seed_value)] = DecoderTuneConfig.seed,
    force: Annotated[bool, typer.Option(metavar="", help="Replace OUT if it exists.")] = False,
):
    """Fine-tune g_s on the codec's own latents and write a weights-only checkpoint."""
    from nicodec import Codec, NicodecError

    if not math.isfinite(minutes * 60):  # 1e308 minutes: a time box that never ends
        raise typer.BadParameter(f"must be a number of minutes a clock can count to, not {minutes:g}",
                                 param_hint="--minutes")

    cfg = DecoderTuneConfig(data=tuple(data), val_data=tuple(val_data), crop=crop, per_image=per_image, val_crop=val_crop,
                            minutes=minutes, batch=batch, lr=lr, threads=threads, seed=seed)
    net, ckpt = start_finetune(checkpoint, out, cache, force, threads, seed)
    net.eval()
    try:
        codec = Codec(model).prepare()  # it encodes and decodes: a copy that cannot encode is refused here
    except NicodecError as exc:  # ModelError, ExactnessError
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    exported = (codec.model.latent_channels, codec.model.hyper_channels, codec.model.variable_rate)
    if exported != (net.config.M, net.config.Nh, bool(net.config.levels)):
        raise typer.BadParameter(f"--model is not the export of {checkpoint}: its latent channels, hyper-latent "
                                 f"channels and variable rate are {exported}, the checkpoint's "
                                 f"{(net.config.M, net.config.Nh, bool(net.config.levels))}")
    if codec.model.variable_rate:
        # The synthesis's agreement below is on one quality: another export's levels or gains
        # (the same g_s, say, after --tune-gains) pass it and give latents of other rates.
        mine = [getattr(net, name).detach().float().numpy() for name in ("log_gain", "log_inverse_gain")]
        theirs = [codec.model.log_gain, codec.model.log_inverse_gain]
        if any(a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-3) for a, b in zip(mine, theirs)):
            raise typer.BadParameter(f"--model is not the export of {checkpoint}: its {len(theirs[0])} levels' gain "
                                     f"vectors differ from the checkpoint's {len(mine[0])}")
    try:
        paths = list_images(cfg.data)
        val_paths = list_images(cfg.val_data) if cfg.val_data else paths[-8:]
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None
    shared = held_out_copies(paths, val_paths)  # copies too: data/gpu/val holds those of shard 5's last files
    train_paths = [p for p in paths if p not in shared]
    if shared and cfg.val_data:
        console.print(f"note: {len(shared)} training image{'s are' if len(shared) > 1 else ' is'} held out too (or "
                      "a copy of one): left out of training")
    if not train_paths or not val_paths:
        raise typer.BadParameter(
            f"{len(train_paths)} training and {len(val_paths)} held-out images found; both are needed "
            "(without --val-data the last 8 training images are held out)")
    # Sizes from the files' headers: a set without one large enough image is refused before any encoding.
    usable_val = [p for p in val_paths if shorter_side(p) >= val_crop]
    if not usable_val:
        raise typer.BadParameter(f"no held-out image is at least {val_crop} pixels on both sides", param_hint="--val-crop")
    if not any(shorter_side(p) >= crop for p in train_paths):
        raise typer.BadParameter(f"no training image is at least {crop} pixels on both sides", param_hint="--crop")
    try:
        agreement = export_agreement(net, codec, usable_val[0])
    except RuntimeError as exc:  # the synthesis cannot take the exported model's latents
        raise typer.BadParameter(f"--model is not the export of {checkpoint}: {str(exc).splitlines()[0]}") from None
    if agreement < 50:
        raise typer.BadParameter(f"--model is not the export of {checkpoint}: their pixels agree to {agreement:.1f} dB only")
    val_qualities = list(HELD_OUT_QUALITIES) if codec.model.variable_rate else [math.nan]
    key = {"model_hash": codec.model.manifest["model_hash"], "train": train_paths, "val": val_paths, "crop": crop,
           "per_image": per_image, "val_crop": val_crop, "seed": seed,
           "val_qualities": val_qualities if codec.model.variable_rate else None}
    started = time.monotonic()
    if cache is not None and cache.exists():
        try:
            items = torch.load(cache, weights_only=True)
            cached_key = json.loads(items[-1])
        except Exception:  # noqa: BLE001 - a file of anything else
            items = None
        if items is not None and len(items) == 5:  # y_hat, crops, the held-out pair, the key: no qualities
            raise typer.BadParameter(f"{cache} is a latent cache of a nicodec before 0.5.0, which kept no qualities; "
                                     "delete it or give another --cache", param_hint="--cache")
        if items is None or len(items) != 7:
            raise typer.BadParameter(f"{cache} is not a latent cache of this program; delete it or give another --cache",
                                     param_hint="--cache")
        y_hat, crops, qualities, *val, _ = items
        if cached_key != json.loads(json.dumps(key)):
            raise typer.BadParameter(f"{cache} holds latents made with other settings, images or model; "
                                     "delete it or give another --cache")
    else:
        y_hat, crops, qualities = encoded_latents(codec, train_paths, crop, per_image, seed)
        val = list(encoded_latents(codec, val_paths, val_crop, 1, seed + 1, qualities=val_qualities))
        if cache is not None:  # since 0.5.0 with each crop's quality, which a post-filter may see
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_atomically([y_hat, crops, qualities, *val, json.dumps(key)], cache)
    if not len(y_hat) or not len(val[0]):
        raise typer.BadParameter(f"no training image is at least {crop} pixels on both sides, "
                                 f"or no held-out image at least {val_crop}")
    console.print(f"{len(y_hat)} training crops, {len(val[0])} held-out crops ({time.monotonic() - started:.0f} s)")
    for p in net.parameters():
        p.requires_grad_(False)
    for p in net.g_s.parameters():
        p.requires_grad_(True)
    before = held_out_psnr(net.g_s, *val)
    net.g_s.train()
    stop = Stop()
    with stop.on_signals():
        history = finetune(net.g_s, (y_hat, crops, qualities), val, minutes, batch, lr, seed, base=before, stop=stop)
    # Only g_s is stored anew: the export's entropy side stays the same files.
    state, stored = partly_retrained(checkpoint, ckpt, net, ("g_s.",))
    after = held_out_psnr(stored.g_s, *val)  # measured again as stored
    finite = all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
    if not (finite and bool(torch.isfinite(after).all())):
        console.print(f"error: the {'held-out PSNR' if finite else 'weights'} as stored (fp16) are not finite at step "
                      f"{history[-1]['step']}: training diverged ({out} was not written); a lower --lr usually helps")
        raise typer.Exit(1)
    per_quality = (after - before).reshape(-1, len(val_qualities)).mean(0).tolist()
    metrics = dict(ckpt.get("metrics", {}))
    if "decoder_finetune" in metrics:
        metrics["decoder_finetune_earlier"] = [*metrics.get("decoder_finetune_earlier", []), metrics["decoder_finetune"]]
    metrics["decoder_finetune"] = {
        "model_hash": key["model_hash"], "config": asdict(cfg), "training_crops": len(y_hat),
        "steps": history[-1]["step"], "history": history,
        "held_out_psnr_before": float(before.mean()), "held_out_psnr_after": float(after.mean()),
        "held_out_qualities": val_qualities if codec.model.variable_rate else None,
        "held_out_gain_db_per_quality": [round(v, 4) for v in per_quality],
        "total_minutes": round((time.monotonic() - started) / 60, 1),
    }
    stopped_by = history[-1].get("stopped_by")
    if stopped_by:
        metrics["decoder_finetune"]["stopped_by"] = stopped_by
    save_weights(out, ckpt, metrics, state)
    stopped = f"stopped by {stopped_by} at step {history[-1]['step']}, before the learning rate fell to zero; " if stopped_by else ""
    console.print(f"{stopped}wrote {out}: held-out PSNR {float(before.mean()):.4f} -> {float(after.mean()):.4f} dB "
                  f"(per held-out quality: {', '.join(f'{v:+.3f}' for v in per_quality)})")
    if stopped_by:
        raise typer.Exit(128 + stop.signal)


if __name__ == "__main__":
    from nicodec.launch import run_app

    run_app(main, "python -m nicodec.training.decoder_finetune")
