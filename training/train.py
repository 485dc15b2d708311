"""Train the mean-scale hyperprior from folders of photos.

Single process::

    nicodec-train --out runs/default --minutes 60

Several GPUs or machines (DistributedDataParallel; one process per device)::

    torchrun --nproc-per-node 4 -m nicodec.training --out runs/big

Every run can resume from its own ``last.pt`` (``--resume``) or start from
another checkpoint's weights (``--init``, e.g. the committed weights-only file).
The learning rate is annealed over the last fifth of the run, measured in steps
or in minutes, whichever ends first, so a time-boxed run still ends annealed.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import torch.distributed as dist
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .data import CropSampler, center_crops, list_images, load_rgb
from .model import MeanScaleHyperprior, ModelConfig, rate_distortion_loss

DEFAULT_DATA = "../shared/data/train/shard-*"
console = Console(stderr=True)


@dataclass
class TrainConfig:
    """How one run trains; saved in its checkpoints next to the model config."""

    steps: int = 20000  # optimizer steps of the whole run (the schedule's length)
    minutes: float = 0.0  # wall-clock budget; 0 means no limit
    batch: int = 8  # crops per step on each process
    crop: int = 128  # crop side in pixels (a multiple of 64)
    lr: float = 1e-4  # peak learning rate of Adam
    anneal: float = 0.2  # final fraction of the run over which the LR falls to lr/10
    val_every: int = 500  # steps between validations
    val_images: int = 8  # held-out training images (the last files found)
    seed: int = 0


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    """Constant, then a cosine fall to a tenth over the final ``anneal`` fraction."""
    start = 1.0 - cfg.anneal
    if progress <= start:
        return cfg.lr
    t = min(1.0, (progress - start) / max(cfg.anneal, 1e-9))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def save_checkpoint(path: Path, model, optimizer, step: int, model_cfg: ModelConfig, train_cfg: TrainConfig, metrics: dict):
    """Write atomically: a full checkpoint (with optimizer state) for resuming."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model_config": model_cfg.to_dict(),
            "train_config": asdict(train_cfg),
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "metrics": metrics,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_model(path: str | Path, map_location="cpu") -> tuple[MeanScaleHyperprior, dict]:
    """Rebuild a model from a checkpoint (full or weights-only) and return it with the raw dict."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    known = {f.name for f in fields(ModelConfig)}
    cfg = ModelConfig(**{k: v for k, v in ckpt["model_config"].items() if k in known})
    model = MeanScaleHyperprior(cfg)
    # fp16 storage back to fp32; float64 buffers (integer scales) stay as they are.
    model.load_state_dict({k: v.float() if v.dtype == torch.float16 else v for k, v in ckpt["model"].items()})
    return model, ckpt


def slim_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Weights only, stored in fp16: the form that is committed to the repository."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    slim = {
        "model_config": ckpt["model_config"],
        "train_config": ckpt.get("train_config"),
        "step": ckpt["step"],
        "metrics": ckpt.get("metrics", {}),
        # float64 tensors (the integer path's scales) stay exact; the weights go to fp16.
        "model": {k: v.half() if v.dtype == torch.float32 else v for k, v in ckpt["model"].items()},
    }
    torch.save(slim, dst)


@torch.no_grad()
def validate(model, batch: torch.Tensor, lmbda: float, autocast) -> dict[str, float]:
    model.eval()
    with autocast():
        out = model(batch)
    metrics = rate_distortion_loss(out, batch, lmbda)
    model.train()
    return {k: float(v) for k, v in metrics.items()}


def train(
    folders: list[str],
    out: Path,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    resume: bool = False,
    init: Optional[Path] = None,
    device_name: str = "auto",
    max_images: int = 0,
) -> dict:
    """Run one training session; returns the final validation metrics."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
        dist.init_process_group(backend)
        rank = dist.get_rank()
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    main = rank == 0
    seed = cfg.seed + 1000 * rank
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)

    paths = list_images(folders)
    if not paths:
        raise typer.BadParameter(f"no images found in {folders}")
    val_paths, train_paths = paths[-cfg.val_images :], paths[: -cfg.val_images]
    if max_images:
        train_paths = train_paths[:max_images]
    images = [im for im in (load_rgb(p, cfg.crop) for p in train_paths) if im is not None]
    val = [im for im in (load_rgb(p, 256) for p in val_paths) if im is not None]
    sampler = CropSampler(images, cfg.crop, device, generator_seed=seed)
    val_batch = center_crops(val, 256).to(device) if val else sampler.batch(4)
    if main:
        console.print(f"{len(images)} training images, {len(val)} held out, device {device}")

    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    step = 0
    if resume and last.exists():
        model, ckpt = load_model(last)
        model_cfg = model.config
        step = ckpt["step"]
    elif init is not None:
        model, ckpt = load_model(init)
        model_cfg = model.config
    else:
        model = MeanScaleHyperprior(model_cfg)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if resume and last.exists() and ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    start_step, t0 = step, time.monotonic()
    budget = cfg.minutes * 60
    metrics: dict = {}
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not main) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, stats="")
        while step < cfg.steps:
            elapsed = time.monotonic() - t0
            if budget and elapsed >= budget:
                break
            progress = step / cfg.steps
            if budget:
                # A time-boxed run anneals by whichever runs out first.
                progress = max(progress, elapsed / budget)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, min(progress, 1.0))
            x = sampler.batch(cfg.batch)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                out_ = net(x)
            losses = rate_distortion_loss(out_, x, model_cfg.lmbda)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if main and (step % 10 == 0 or step == cfg.steps):
                bar.update(task, completed=step, stats=(
                    f"loss {losses['loss'].item():.3f} bpp {losses['bpp'].item():.3f} "
                    f"PSNR {losses['psnr'].item():.2f}"))
            if main and (step % cfg.val_every == 0):
                metrics = validate(model, val_batch, model_cfg.lmbda, autocast)
                bar.console.print(
                    f"step {step}: val loss {metrics['loss']:.4f} bpp {metrics['bpp']:.4f} PSNR {metrics['psnr']:.2f}")
                save_checkpoint(last, model, optimizer, step, model_cfg, cfg, metrics)
    wall = time.monotonic() - t0
    if main:
        metrics = validate(model, val_batch, model_cfg.lmbda, autocast)
        metrics.update(steps=step, run_steps=step - start_step, seconds=round(wall, 1),
                       it_per_s=round((step - start_step) / max(wall, 1e-9), 3))
        save_checkpoint(last, model, optimizer, step, model_cfg, cfg, metrics)
        console.print(f"done: {metrics}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


app = typer.Typer(add_completion=False, help="Train nicodec's mean-scale hyperprior.")


@app.command()
def main(
    data: Annotated[list[str], typer.Option(help="Image folders or glob patterns.")] = [DEFAULT_DATA],
    out: Annotated[Path, typer.Option(help="Run folder for checkpoints.")] = Path("runs/default"),
    steps: int = TrainConfig.steps,
    minutes: Annotated[float, typer.Option(help="Stop after this many minutes (0: no limit).")] = 0.0,
    batch: int = TrainConfig.batch,
    crop: int = TrainConfig.crop,
    lr: float = TrainConfig.lr,
    val_every: int = TrainConfig.val_every,
    seed: int = TrainConfig.seed,
    # Long names on purpose: torchrun parses abbreviations, and --n or --m would be ambiguous there.
    channels: Annotated[int, typer.Option(help="N, channels of the transforms.")] = ModelConfig.N,
    latent_channels: Annotated[int, typer.Option(help="M, channels of the latent y.")] = ModelConfig.M,
    hyper_channels: Annotated[int, typer.Option(help="Nh, channels of the hyper-latent z.")] = ModelConfig.Nh,
    lmbda: float = ModelConfig.lmbda,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt when it exists.")] = False,
    init: Annotated[Optional[Path], typer.Option(help="Start from this checkpoint's weights.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    max_images: Annotated[int, typer.Option(help="Use at most this many training images (0: all).")] = 0,
    slim: Annotated[Optional[Path], typer.Option(help="Also write a weights-only fp16 copy here.")] = None,
):
    """Train from image folders, with checkpoints, resume and validation."""
    if crop % 64:
        raise typer.BadParameter("crop must be a multiple of 64")
    cfg = TrainConfig(steps=steps, minutes=minutes, batch=batch, crop=crop, lr=lr, val_every=val_every, seed=seed)
    model_cfg = ModelConfig(N=channels, M=latent_channels, Nh=hyper_channels, lmbda=lmbda)
    train(data, out, model_cfg, cfg, resume=resume, init=init, device_name=device, max_images=max_images)
    if slim is not None and int(os.environ.get("RANK", "0")) == 0:
        slim_checkpoint(out / "last.pt", slim)
