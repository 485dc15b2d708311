"""What one training step is made of: a batch of crops at random levels, the forward pass
(compiled or eager: :func:`compiled`), the loss and Adam's update (:func:`make_optimizer`), with
only some levels' gains left to train where asked (:func:`freeze_except_gains`); and the
validation, the switch to the integer hyper-synthesis and the throughput probe built on them."""

from __future__ import annotations

import dataclasses
import functools
import time

import torch

from .data import CropSampler
from .integer import calibrate
from .messages import console
from .model import MeanScaleHyperprior, ModelConfig, rate_distortion_loss


@torch.no_grad()
def validate(model, batch: torch.Tensor, autocast) -> dict:
    """Loss, bpp and PSNR on the held-out batch; per level for a variable-rate model."""
    model.eval()
    cfg = model.config
    metrics: dict = {}
    if cfg.levels:
        per_level = []
        for level, lmbda in enumerate(cfg.lmbdas):
            with autocast():
                out = model(batch, torch.full((len(batch),), float(level), device=batch.device))
            per_level.append({k: float(v) for k, v in rate_distortion_loss(out, batch, lmbda).items()})
        metrics = {k: sum(m[k] for m in per_level) / len(per_level) for k in ("loss", "bpp", "psnr")}
        metrics["levels"] = [{"bpp": round(m["bpp"], 4), "psnr": round(m["psnr"], 2)} for m in per_level]
    else:
        with autocast():
            out = model(batch)
        metrics = {k: float(v) for k, v in rate_distortion_loss(out, batch, cfg.lmbda).items()}
    model.train()
    return metrics


def describe(metrics: dict) -> str:
    """One line of :func:`validate`'s figures: the means, then bpp/PSNR at each level where there are levels."""
    text = f"val loss {metrics['loss']:.4f} bpp {metrics['bpp']:.4f} PSNR {metrics['psnr']:.2f}"
    if "levels" in metrics:
        text += " | " + " ".join(f"{m['bpp']:.3f}/{m['psnr']:.2f}" for m in metrics["levels"])
    return text


@functools.lru_cache(maxsize=8)
def _device_table(values: tuple, device: torch.device) -> torch.Tensor:
    """``values`` (lambdas, levels) as a tensor on ``device``, moved there once (a copy to the GPU waits for it)."""
    return torch.tensor(values, device=device)


def random_levels(model_cfg: ModelConfig, size: int, device,
                  only: tuple[int, ...] = ()) -> tuple[torch.Tensor | None, torch.Tensor | float]:
    """Each image's level (None for a single-rate model), drawn from ``only`` when given, and its lambda."""
    if not model_cfg.levels:
        return None, model_cfg.lmbda
    if only:
        level = _device_table(only, torch.device(device))[torch.randint(0, len(only), (size,), device=device)]
    else:
        level = torch.randint(0, model_cfg.levels, (size,), device=device)
    return level.float(), _device_table(model_cfg.lmbdas, torch.device(device))[level]


def freeze_except_gains(model: MeanScaleHyperprior, levels: tuple[int, ...]) -> None:
    """Leave only the gain and inverse-gain vectors of ``levels`` to train.

    Every other parameter stops needing gradients, and a hook zeroes the gradient of the
    other levels' rows, so Adam leaves them bit for bit as they were (its update of a
    parameter whose gradients have all been zero is zero).
    """
    if not model.config.levels:
        raise ValueError("only a variable-rate model has gain vectors to tune")
    if not levels or any(not 0 <= level < model.config.levels for level in levels):
        raise ValueError(f"levels to tune must lie in 0..{model.config.levels - 1}, not {list(levels)}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    mask = torch.zeros(model.config.levels, 1, device=model.log_gain.device)
    mask[list(levels)] = 1
    for parameter in (model.log_gain, model.log_inverse_gain):
        parameter.requires_grad_(True)
        parameter.register_hook(lambda grad: grad * mask)


@torch.no_grad()
def switch_to_integer(model: MeanScaleHyperprior, sampler: CropSampler, batch: int, batches: int = 8) -> torch.Tensor:
    """Calibrate the integer hyper-synthesis on hyper-latents of training crops and turn it on.

    The model keeps its parameters (so an optimizer over them carries on); it gains the
    activation-scale buffer and ``config.integer_entropy``.
    """
    model.eval()
    zs = []
    for _ in range(batches):
        x = sampler.batch(batch)
        level, _ = random_levels(model.config, batch, x.device)
        y = model.g_a(x)
        if level is not None:
            y = y * model.gains_at(level)[0][:, :, None, None]
        zs.append(torch.round(model.h_a(y)))
    scales = calibrate(model.h_s, torch.cat(zs))
    model.config = dataclasses.replace(model.config, integer_entropy=True)
    model.register_buffer("hs_act_scale", scales.to(zs[0].device))
    model.train()
    return scales


def training_step(net, model: MeanScaleHyperprior, optimizer, sampler: CropSampler, size: int, autocast,
                  only: tuple[int, ...] = ()) -> dict:
    """One optimizer step on a fresh batch of ``size`` crops (each at a random level, of ``only``
    when given); returns the losses.

    ``net`` is the module that runs the forward pass (the model, or its DDP wrapper).
    """
    x = sampler.batch(size)
    if x.is_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    level, lmbda = random_levels(model.config, size, x.device, only)
    with autocast():
        out = net(x, level)
    losses = rate_distortion_loss(out, x, lmbda)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return losses


COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compiled(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``module`` under ``torch.compile`` with ``mode`` (static shapes), or itself for mode "".

    A compiler failure falls back to running the module eagerly (dynamo's ``suppress_errors``)
    rather than ending a run on a GPU lent for minutes.
    """
    if not mode:
        return module
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    try:
        # Compile the backward with the forward, where suppress_errors covers it, not at the first
        # backward() (a flag of recent torch versions; without it the run's first step,
        # Run.first_step in .loop, catches the failure).
        import torch._functorch.config

        torch._functorch.config.force_non_lazy_backward_lowering = True
    except (ImportError, AttributeError):
        pass
    return torch.compile(module, mode=None if mode == "default" else mode, dynamic=False)


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam; on the GPU its fused form, one kernel for all parameters instead of a few per tensor."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, fused=device.type == "cuda")


def probe_throughput(model, sampler: CropSampler, batches: list[tuple[int, bool]], autocast, compile_mode: str = "",
                     seconds: float = 4.0) -> dict[str, float]:
    """Images per second of full training steps at each batch size, on a copy of the model.

    ``batches`` holds (size, eager) pairs; eager ones run without ``compile_mode``.
    """
    import copy

    rates = {}
    for size, eager in batches:
        trial = copy.deepcopy(model)
        runner = compiled(trial, "" if eager else compile_mode)
        opt = make_optimizer(trial, 1e-5, sampler.device)
        done, t0, t_first = 0, None, time.monotonic()
        while True:
            try:
                training_step(runner, trial, opt, sampler, size, autocast)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not end the run
                if runner is trial:
                    raise
                console.print(f"probe: batch {size} failed to compile ({type(exc).__name__}: {exc}); measuring eager")
                runner, done, t0, t_first = trial, 0, None, time.monotonic()
                continue
            if sampler.device.type == "cuda":
                torch.cuda.synchronize()
            done += 1
            if done == 5:  # after cuDNN's autotuning and the compiler
                t0, counted = time.monotonic(), 0
                warm = t0 - t_first
            elif t0 is not None:
                counted += 1
                if time.monotonic() - t0 >= seconds:
                    break
        name = f"{size}{'e' if runner is trial else ''}"
        rates[name] = round(counted * size / (time.monotonic() - t0), 1)
        mode = "eager" if runner is trial else f"compiled ({compile_mode})"
        console.print(f"probe: batch {size}, {mode}: {rates[name]} images/s, {rates[name] / size:.2f} steps/s "
                      f"(first 5 steps {warm:.1f} s)")
        del trial, runner, opt
    return rates
