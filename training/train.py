"""Train the mean-scale hyperprior from folders of photos.

Single process::

    nicodec-train --out runs/default --minutes 60

Several GPUs or machines (DistributedDataParallel; one process per device)::

    torchrun --nproc-per-node 4 -m nicodec.training --out runs/big

A run folder that holds a run (its ``last.pt``) is refused unless ``--resume`` continues
it or ``--force`` replaces it; settings, outputs and the checkpoint to start from are all
checked before any image is read, so a run on a lent GPU does not fail late.

Every run can resume from its own ``last.pt`` (``--resume``) or start from
another checkpoint's weights (``--init``, e.g. the committed weights-only file;
its step count and training time carry on, its optimizer state does not; with
``--new-schedule`` a fresh learning-rate schedule, warm-up included, starts there).
The learning rate is annealed over the last fifth of the schedule, measured in
steps or in training minutes, whichever ends first, so a time-boxed run still
ends annealed. ``--total-minutes`` spreads one schedule over several time-boxed
runs (``--minutes`` each), as on a GPU lent for ten minutes at a time.

A variable-rate model (``--lmbdas``) trains every image of a batch at a random one
of its lambdas; ``--integer-from`` switches the hyper-synthesis to the integer path
(``nicodec.training.integer``) for the end of the schedule, after calibrating it.

On a GPU the step is kept free of waits for the device (crops, lambdas and lookup tables are
made or kept there; losses are read every 25 steps), Adam is fused, and ``--compile`` runs the
forward pass through ``torch.compile``, so more of a time-boxed run is spent computing.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from nicodec.console import writes_to_terminal
from nicodec.errors import NicodecError

from .arguments import (
    adam_lr,
    batch_size,
    crop_side,
    device_option,
    non_negative_float,
    non_negative_int,
    parse_probe,
    positive_float,
    positive_int,
    seed_value,
)
from .checkpoint import save_checkpoint, slim_checkpoint
from .data import CropSampler
from .integer import calibrate
from .messages import console, diverged, nothing_to_train
from .model import MeanScaleHyperprior, ModelConfig, rate_distortion_loss
from .run_checks import MODEL_OPTIONS, RUN_OPTIONS, check_outputs, run_options
from .run_start import Process, image_lists, load_data, seed_everything, start_process, starting_point
from .stopping import TRAINING_BEGAN, Stop

DEFAULT_DATA = "../shared/data/train/shard-*"


@dataclass
class TrainConfig:
    """How one run trains; saved in its checkpoints next to the model config."""

    steps: int = 20000  # optimizer steps of the whole run (the schedule's length)
    minutes: float = 0.0  # wall-clock budget; 0 means no limit
    batch: int = 8  # crops per step on each process
    crop: int = 128  # crop side in pixels (a multiple of 64)
    lr: float = 1e-4  # peak learning rate of Adam
    anneal: float = 0.2  # final fraction of the run over which the LR falls to lr/10
    warmup: int = 0  # steps of linear learning-rate warm-up at the start of the schedule
    val_every: int = 500  # steps between validations
    val_images: int = 8  # held-out training images (the last files found), unless val_data is given
    seed: int = 0
    total_minutes: float = 0.0  # the schedule's length in training minutes over all runs (0: this run's minutes)
    integer_from: float = 0.0  # schedule progress from which h_s computes in integers (0: never)
    tune_levels: tuple[int, ...] = ()  # train only these levels' gain vectors, at these levels (all else frozen)


def learning_rate(cfg: TrainConfig, progress: float, step: int = 1 << 62) -> float:
    """Constant, then a cosine fall to a tenth over the final ``anneal`` fraction; a linear
    warm-up over the first ``warmup`` steps always scales that rate, not the peak (a carried
    schedule warms up again where it stands, already falling perhaps; a warm-up that runs into
    the anneal follows the falling rate)."""
    start = 1.0 - cfg.anneal
    rate = cfg.lr
    if progress > start:
        t = min(1.0, (progress - start) / max(cfg.anneal, 1e-9))
        rate = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
    return rate * (step + 1) / cfg.warmup if step < cfg.warmup else rate


def fitted_to_deadline(cfg: TrainConfig, schedule_seconds: float, budget: float, done_seconds: float,
                       deadline: Optional[float], say: bool = True) -> tuple[float, float, TrainConfig]:
    """A time-boxed schedule that is to end in this run, shortened to end at ``deadline`` where
    that comes first, so that the run still anneals (a deadline only stops the loop: a run cut
    there ended at the learning rate it had reached). ``done_seconds``: the schedule's seconds
    trained before this run. A schedule that goes on in later runs is left as it is: the
    deadline cuts it, and the next run carries it on. Returns the schedule's seconds, this run's
    budget, and the config with them (saved in its checkpoints)."""
    if not deadline or not schedule_seconds:
        return schedule_seconds, budget, cfg
    remaining, left = schedule_seconds - done_seconds, deadline - time.time()
    if (budget and remaining > budget + 1e-6) or not 0 < left < remaining:
        return schedule_seconds, budget, cfg
    if say:
        console.print(f"the deadline leaves {left / 60:.2f} minutes: the schedule's last "
                      f"{remaining / 60:.2f} are fitted into them, so that the run still anneals")
    schedule_seconds -= remaining - left
    budget = min(budget, left) if budget else budget
    # The schedule's length saved as such: a --resume (which takes this run's minutes as its
    # own budget) carries on the schedule that was fitted, not one as long as its budget.
    fitted = dataclasses.replace(cfg, minutes=budget / 60 if budget else cfg.minutes,
                                 total_minutes=schedule_seconds / 60)
    return schedule_seconds, budget, fitted


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


CHECKPOINT_SECONDS = 600
"""Wall-clock seconds after which a checkpoint is written even between validations: a slow run
(seconds a step on a CPU) loses at most this much to a crash."""


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
        # backward() (a flag of recent torch versions; without it train() catches the failure).
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


def train(
    folders: list[str],
    out: Path,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    resume: bool = False,
    init: Optional[Path] = None,
    device_name: str = "auto",
    max_images: int = 0,
    val_folders: Optional[list[str]] = None,
    probe: Optional[list[tuple[int, bool]]] = None,
    compile_mode: str = "",
    new_schedule: bool = False,
    slim: Optional[Path] = None,
    deadline: Optional[float] = None,
    force: bool = False,
    inherit: frozenset[str] = frozenset(),
    inherit_options: frozenset[str] = frozenset(),
    given_model: frozenset[str] = frozenset(),
) -> dict:
    """Run one training session; returns the final validation metrics.

    ``new_schedule``: with ``init``, start a fresh learning-rate schedule (warm-up, constant
    rate, anneal; ``cfg.steps`` and ``cfg.total_minutes`` long) at the checkpoint's step and
    time, instead of carrying on the schedule it was trained with (ignored when resuming).
    ``slim``: also write the weights-only fp16 copy there at every checkpoint, so a run
    that is killed still leaves its last weights. ``deadline``: a Unix time by which
    training stops whatever ``cfg.minutes`` says (loading and the probe count against it).
    ``force``: replace the run in ``out`` (its ``last.pt``) rather than refuse to.
    ``inherit``: names of ``cfg``'s fields that, when resuming, come from the run's own saved
    ``train_config`` instead (the options the command line did not give); ``inherit_options``
    the same for :data:`RUN_OPTIONS` (``folders`` is ``data``, ``val_folders`` ``val_data``).
    ``given_model``: the fields of ``model_cfg`` the command line gave (``N``, ``M``, ``Nh``,
    ``lmbda``): with a checkpoint, an architecture that differs from its own is refused, and a
    single-rate model's ``lmbda`` is replaced (fine-tuning it to another rate).

    Ctrl-C or SIGTERM writes a checkpoint at the step reached before it stops; so does every
    :data:`CHECKPOINT_SECONDS` of training between validations. A loss that is no longer finite
    stops the run without writing over the last checkpoint.

    Whatever can be checked is checked before the images are loaded (:func:`check_outputs`,
    the image lists, the checkpoint to start from), so a run on a lent GPU does not fail late.

    Raises:
        typer.BadParameter: a run that would overwrite another, an output that cannot be
            written, a checkpoint that is none (:class:`CheckpointError`), too few or too small images.
    """
    check_outputs(out, resume, force, slim)
    process = start_process(device_name, cfg.integer_from)
    seed_everything(cfg.seed + 1000 * process.rank)
    start = starting_point(process, out, model_cfg, cfg, resume, init, folders, val_folders, max_images, slim, force,
                           inherit, inherit_options, given_model)
    model, ckpt, cfg = start.model, start.ckpt, start.cfg
    train_paths, val_paths = image_lists(start.folders, start.val_folders, cfg, start.max_images, process.main,
                                         start.data_unsaved)
    options = run_options(start.folders, start.val_folders, start.max_images, start.slim, out)
    budget = cfg.minutes * 60
    schedule_seconds = cfg.total_minutes * 60 or budget  # a time-boxed schedule anneals over this

    step, seconds_before, origin = 0, 0.0, (0, 0.0)
    if ckpt:
        step, seconds_before = ckpt.get("step") or 0, ckpt.get("train_seconds", 0.0)
        origin = (step, seconds_before) if new_schedule and not resume else tuple(ckpt.get("schedule_origin", (0, 0.0)))
        complete = step - origin[0] >= cfg.steps or (schedule_seconds and seconds_before - origin[1] >= schedule_seconds)
        if resume and complete:
            # Said before the images are read (a large set takes minutes); the checkpoint is left as it is.
            if process.main:
                console.print(nothing_to_train(step, origin, cfg.steps, seconds_before, schedule_seconds))
            process.end()
            return dict(ckpt.get("metrics") or {})
        if not resume and complete:
            # It trained no step, and wrote the weights as they were under the new settings' name, as "done".
            raise typer.BadParameter(
                f"the checkpoint's schedule is complete (step {step}, {step - origin[0]} of the {cfg.steps} "
                "--steps" + (f", {(seconds_before - origin[1]) / 60:.2f} of {schedule_seconds / 60:.2f} minutes"
                             if schedule_seconds else "")
                + "): --new-schedule starts a fresh one from its weights, and --steps or --total-minutes lengthens it",
                param_hint="--init")
    model.to(process.device)
    if process.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.tune_levels:
        try:
            freeze_except_gains(model, cfg.tune_levels)
        except ValueError as exc:
            raise typer.BadParameter(f"--tune-gains: {exc}") from None
    seed = cfg.seed + 1000 * process.rank
    sampler, val_batch = load_data(train_paths, val_paths, cfg, start.val_folders, process, seed,
                                   step if ckpt else None)

    optimizer = make_optimizer(model, cfg.lr, process.device)
    if resume and ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    eager = torch.nn.parallel.DistributedDataParallel(model) if process.distributed else model
    if probe and process.main:
        probe_throughput(model, sampler, probe, process.autocast, compile_mode)
    schedule_seconds, budget, cfg = fitted_to_deadline(cfg, schedule_seconds, budget, seconds_before - origin[1],
                                                       deadline, process.main)
    run = Run(process=process, model=model, cfg=cfg, optimizer=optimizer, eager=eager,
              net=compiled(eager, compile_mode), compile_mode=compile_mode, sampler=sampler, val_batch=val_batch,
              last=out / "last.pt", slim=start.slim, options=options, step=step, seconds_before=seconds_before,
              origin=origin, schedule_seconds=schedule_seconds, budget=budget, deadline=deadline,
              # Warm-up from this run's first step when its optimizer starts afresh (a checkpoint of
              # weights only, an --init that carries its schedule on), else from the schedule's.
              warm_from=origin[0] if resume and ckpt and ckpt.get("optimizer") else step,
              resumed_metrics=dict(ckpt.get("metrics") or {}) if resume else None)
    return run.train()


@dataclass
class Run:
    """One run of the training loop (:meth:`train`), and what it keeps from step to step: the
    schedule's place, the last validation's figures, when it last wrote its checkpoint."""

    process: Process
    model: MeanScaleHyperprior
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    eager: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    net: torch.nn.Module  # what the steps run: ``eager`` compiled, or ``eager`` itself
    compile_mode: str
    sampler: CropSampler
    val_batch: torch.Tensor
    last: Path  # the run's checkpoint, last.pt
    slim: Optional[Path]  # its weights-only copy, written beside it
    options: dict  # RUN_OPTIONS as the checkpoint keeps them (run_options)
    step: int  # steps trained, by this run and the runs before it
    seconds_before: float  # training time of the runs before
    origin: tuple  # the step and training time at which the schedule began
    schedule_seconds: float  # the schedule's length in training time (0: steps alone)
    budget: float  # this run's time limit in seconds (0: none)
    deadline: Optional[float]  # a Unix time by which the run stops
    warm_from: int  # the step the learning-rate warm-up counts from
    resumed_metrics: Optional[dict] = None  # a resumed run's figures, kept if it trains no step
    metrics: dict = dataclasses.field(default_factory=dict)  # the last validation's

    def __post_init__(self):
        self.start_step, self.t0 = self.step, time.monotonic()
        self.last_step = self.origin[0] + self.cfg.steps
        self.saved_at: tuple[float, Optional[int]] = (time.monotonic(), None)  # when, and at which step

    def progress(self) -> float:
        """How far the schedule is, 0 to 1: by steps, or by training time where that is further."""
        progress = (self.step - self.origin[0]) / self.cfg.steps
        if self.schedule_seconds:
            # A time-boxed schedule anneals by whichever runs out first.
            trained = self.seconds_before - self.origin[1] + time.monotonic() - self.t0
            progress = max(progress, trained / self.schedule_seconds)
        return min(progress, 1.0)

    def checkpoint(self, wall: Optional[float] = None) -> None:
        """Write last.pt (and the slim copy): the weights, the optimizer and the schedule's place.

        ``wall``: the run's training time, for the final checkpoint: taken before the final
        validation, which the next run of a carried schedule must not count as training. Never
        written over a good checkpoint with weights a step has made NaN or inf (the loss of that
        step, computed before it, can still be finite).
        """
        step, last = self.step, self.last
        if not bool(torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all()):
            diverged(step, last, self.saved_at[1])

        def unwritten(path: Path, exc: Exception, kept: str) -> None:  # a full disk, a folder made read-only
            console.print(f"error: cannot write {path} at step {step}: {getattr(exc, 'strerror', None) or exc} "
                          f"({kept}; --resume continues from there)")
            raise typer.Exit(1) from None

        try:
            # Complete only when the final checkpoint says so (nicodec-export's advice reads it).
            save_checkpoint(last, self.model, self.optimizer, step, self.model.config, self.cfg,
                            {"schedule_complete": False, **self.metrics},
                            self.seconds_before + (time.monotonic() - self.t0 if wall is None else wall), self.origin,
                            self.options)
        except (OSError, NicodecError) as exc:
            unwritten(last, exc, f"{last} keeps step {self.saved_at[1]}" if self.saved_at[1] is not None
                      else f"{last} is left as it was")
        self.saved_at = (time.monotonic(), step)
        if self.slim is not None:
            try:
                slim_checkpoint(last, self.slim)
            except (OSError, NicodecError) as exc:
                unwritten(self.slim, exc, f"{last} has step {step}")

    def step_once(self) -> dict:
        """One optimizer step on a fresh batch; returns its losses."""
        return training_step(self.net, self.model, self.optimizer, self.sampler, self.cfg.batch,
                             self.process.autocast, self.cfg.tune_levels)

    def first_step(self, bar: Progress) -> dict:
        """The first step, where compilation happens: a failure there falls back to eager."""
        from torch._dynamo.utils import counters

        graphs = counters["stats"]["unique_graphs"]
        try:
            losses = self.step_once()
            if self.process.device.type == "cuda":
                torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - any compiler failure; eager then runs the same step
            if not self.compile_mode:
                raise
            bar.console.print(f"compilation failed ({type(exc).__name__}: {exc}); training eagerly")
            self.net = self.eager
            compiled_graphs = 0
            losses = self.step_once()
        else:
            compiled_graphs = counters["stats"]["unique_graphs"] - graphs
        note = f" ({compiled_graphs} graphs compiled)" if self.compile_mode else ""
        if self.process.main:
            bar.console.print(f"first step: {time.monotonic() - self.t0:.1f} s{note}")
        return losses

    def shown(self) -> dict:
        """The bar's place, count and time left: by the steps, or by the time limit where that ends
        the run first (a --minutes run's default 20,000 steps said hours were left)."""
        step, last_step = self.step, self.last_step
        elapsed = time.monotonic() - self.t0
        limits = [self.budget - elapsed] if self.budget else []
        if self.schedule_seconds:
            limits.append(self.schedule_seconds - (self.seconds_before - self.origin[1] + elapsed))
        if self.deadline:
            limits.append(self.deadline - time.time())
        ran = step - self.start_step
        by_steps = (last_step - step) * elapsed / ran if ran else None
        if limits and (by_steps is None or min(limits) < by_steps):
            left: float | None = max(min(limits), 0.0)
            fraction = elapsed / (elapsed + left) if elapsed + left > 0 else 1.0
            count = f"step {step}, {elapsed / 60:.1f} of {(elapsed + left) / 60:.1f} min"
        else:
            left, fraction, count = by_steps, step / max(last_step, 1), f"{step}/{last_step}"
        clock = "-:--:--" if left is None else f"{int(left) // 3600}:{int(left) % 3600 // 60:02d}:{int(left) % 60:02d}"
        return {"completed": round(1000 * min(fraction, 1.0)), "count": count, "left": clock}

    def should_stop(self, stop: Stop, bar: Progress) -> bool:
        """Whether the loop ends before the next step: a signal, the run's time or the deadline."""
        if stop.signal or (self.budget and time.monotonic() - self.t0 >= self.budget):
            return True
        if self.deadline and time.time() >= self.deadline:
            bar.console.print(f"step {self.step}: stopping at the deadline")
            return True
        return False

    def validate_and_save(self, bar: Progress) -> None:
        """Validate on the held-out batch, say the figures, write the checkpoint."""
        self.metrics = validate(self.model, self.val_batch, self.process.autocast)
        if not math.isfinite(self.metrics["loss"]):
            diverged(self.step, self.last, self.saved_at[1])
        elapsed = time.monotonic() - self.t0
        bar.console.print(
            f"step {self.step} ({elapsed:.0f} s, {(self.step - self.start_step) / elapsed:.2f} it/s, "
            f"lr {self.optimizer.param_groups[0]['lr']:.2e}): {describe(self.metrics)}")
        self.checkpoint()

    def loop(self, stop: Stop, bar: Progress) -> None:
        """Train until the schedule ends, the run's time runs out, the deadline or a signal."""
        main, cfg = self.process.main, self.cfg
        task = bar.add_task("train", total=1000, stats="", **self.shown())
        while self.step < self.last_step and not self.should_stop(stop, bar):
            progress = self.progress()
            if progress >= 1.0:
                break
            if cfg.integer_from and progress >= cfg.integer_from and not self.model.config.integer_entropy:
                scales = switch_to_integer(self.model, self.sampler, cfg.batch)
                self.metrics = validate(self.model, self.val_batch, self.process.autocast)
                bar.console.print(f"step {self.step}: h_s now integer (activation scales {scales.tolist()}); "
                                  f"{describe(self.metrics)}")
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, progress, self.step - self.warm_from)
            losses = self.first_step(bar) if self.step == self.start_step else self.step_once()
            self.step += 1
            if main and (self.step % 25 == 0 or self.step == self.last_step):
                # One read of the three numbers: each read waits for the GPU to finish the step.
                loss, bpp, psnr = torch.stack([losses["loss"].detach(), losses["bpp"], losses["psnr"]]).tolist()
                if not math.isfinite(loss):
                    diverged(self.step, self.last, self.saved_at[1])
                stats = f"loss {loss:.3f} bpp {bpp:.3f} PSNR {psnr:.2f}"
                bar.update(task, stats=stats, **self.shown())
                if not writes_to_terminal(console) and self.step % 250 == 0:  # a log file gets no progress bar
                    elapsed = time.monotonic() - self.t0
                    bar.console.print(f"step {self.step} ({elapsed:.0f} s, "
                                      f"{(self.step - self.start_step) / elapsed:.2f} it/s): {stats}")
            if main and (self.step % cfg.val_every == 0):
                self.validate_and_save(bar)
            elif main and time.monotonic() - self.saved_at[0] >= CHECKPOINT_SECONDS:
                self.checkpoint()  # with the last validation's figures: a slow run loses little to a crash
        bar.update(task, **self.shown())  # a stop between the bar's updates, every 25 steps

    def finish(self, stop: Stop, wall: float) -> None:
        """The final validation and checkpoint, and the run's last words (the main process's)."""
        cfg, step = self.cfg, self.step
        complete = step >= self.last_step or self.progress() >= 1.0  # not stopped, nor cut by --minutes or a deadline
        if self.resumed_metrics is not None and step == self.start_step:
            # Nothing trained: the weights are the run's own, so its checkpoint is left as it is.
            if complete:
                console.print(nothing_to_train(step, self.origin, cfg.steps, self.seconds_before,
                                                self.schedule_seconds))
            else:
                console.print(f"no step trained (stopped before the first one); {self.last} is left as it was")
            self.metrics = self.resumed_metrics
            return
        self.metrics = validate(self.model, self.val_batch, self.process.autocast)
        if not math.isfinite(self.metrics["loss"]):
            diverged(step, self.last, self.saved_at[1])
        run_steps = step - self.start_step
        self.metrics.update(steps=step, run_steps=run_steps, seconds=round(wall, 1),
                            it_per_s=round(run_steps / max(wall, 1e-9), 3),
                            train_minutes=round((self.seconds_before + wall) / 60, 2),
                            final_lr=self.optimizer.param_groups[0]["lr"], schedule_complete=complete)
        self.checkpoint(wall)
        stopped = stop.signal and step < self.last_step
        written = f"{self.last}" + (f" and {self.slim}" if self.slim is not None else "")
        console.print(f"{'stopped by ' + stop.name if stopped else 'done'}: {describe(self.metrics)}; "
                      f"{run_steps} steps in {wall:.0f} s ({self.metrics['it_per_s']} it/s), {step} "
                      f"in all; wrote {written}" + ("; --resume continues" if stopped else ""))
        if complete and cfg.integer_from and not self.model.config.integer_entropy:
            # The switch is made at a step's start: a schedule of few (or long) steps can end before it.
            console.print(f"warning: the schedule ended before its --integer-from {cfg.integer_from:g} point, so "
                          "the entropy parameters are still float (files may not decode on other machines): "
                          f"nicodec-train --init {self.last} --integer-from {cfg.integer_from:g} --new-schedule "
                          "--out ANOTHER --steps N switches them (with this run's --data and other training "
                          "options given again: --init takes the weights only)")

    def train(self) -> dict:
        """Run the loop, then finish; returns the final validation metrics."""
        main = self.process.main
        columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                   TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("{task.fields[left]}")]
        stop = Stop()
        # The handlers stay in place through the final validation and checkpoint: a stop there (the
        # signal of a `timeout` as a time-boxed run ends) waits for the checkpoint, as one in the loop does.
        TRAINING_BEGAN.set()
        with stop.on_signals(enabled=not self.process.distributed):
            with Progress(*columns, console=console, disable=not main or not writes_to_terminal(console)) as bar:
                self.loop(stop, bar)
            wall = time.monotonic() - self.t0
            if main:
                self.finish(stop, wall)
        if self.process.distributed:
            # DistributedDataParallel's reducer holds the process group, and reference cycles kept
            # it to the interpreter's end: gloo's threads were then torn down during finalisation,
            # and a process ended in "terminate called without an active exception" (SIGABRT) after
            # its run had finished (one CI run in about ten). Let go of it while the group is alive.
            self.eager = self.net = self.model
            gc.collect()
        self.process.end()
        if stop.signal and self.step < self.last_step:
            raise typer.Exit(128 + stop.signal)
        return self.metrics


def _out_of_memory(exc: RuntimeError) -> bool:
    """Whether torch raised ``exc`` for want of memory: its CPU allocator's "can't allocate
    memory" is a plain RuntimeError, CUDA's a ``torch.OutOfMemoryError``."""
    return isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or any(
        text in str(exc) for text in ("can't allocate memory", "out of memory"))


app = typer.Typer(add_completion=False, help="Train nicodec's mean-scale hyperprior.")


OPTION_OF_FIELD = {"tune_levels": "tune_gains"}
"""TrainConfig fields whose command-line parameter has another name; the others have their own."""


@app.command()
def main(
    ctx: typer.Context,
    data: Annotated[list[str], typer.Option(help="Image folders or glob patterns.")] = [DEFAULT_DATA],
    out: Annotated[Path, typer.Option(help="Run folder for checkpoints.")] = Path("runs/default"),
    steps: Annotated[int, typer.Option(parser=positive_int, help="Optimizer steps of the whole schedule (over all runs).")] = TrainConfig.steps,
    minutes: Annotated[float, typer.Option(parser=non_negative_float, help="Stop after this many minutes (0: no limit).")] = 0.0,
    batch: Annotated[int, typer.Option(parser=batch_size, help="Crops per step (on each process).")] = TrainConfig.batch,
    crop: Annotated[int, typer.Option(parser=crop_side, help="Crop side (a multiple of 64).")] = TrainConfig.crop,
    lr: Annotated[float, typer.Option(parser=adam_lr, help="Peak learning rate of Adam.")] = TrainConfig.lr,
    val_every: Annotated[int, typer.Option(parser=positive_int, help="Steps between validations (and checkpoints).")] = TrainConfig.val_every,
    seed: Annotated[int, typer.Option(parser=seed_value, help="Random seed (each process adds 1000 times its rank).")] = TrainConfig.seed,
    # Long names on purpose: torchrun parses abbreviations, and --n or --m would be ambiguous there.
    channels: Annotated[int, typer.Option(parser=positive_int, help="N, channels of the transforms.")] = ModelConfig.N,
    latent_channels: Annotated[int, typer.Option(parser=positive_int, help="M, channels of the latent y.")] = ModelConfig.M,
    hyper_channels: Annotated[int, typer.Option(
        parser=positive_int, help="Nh, channels of the hyper-latent z.")] = ModelConfig.Nh,
    lmbda: Annotated[float, typer.Option(parser=positive_float, help="Single-rate models: the rate-distortion trade-off (loss = bpp + lmbda * 255^2 * MSE).")] = ModelConfig.lmbda,
    lmbdas: Annotated[str, typer.Option(help="Variable rate: comma-separated lambdas, lowest first.")] = "",
    total_minutes: Annotated[float, typer.Option(
        parser=non_negative_float, help="The schedule's length in training minutes over all runs.")] = 0.0,
    integer_from: Annotated[float, typer.Option(help="Schedule progress (0-1) from which h_s is integer (0: never).")] = 0.0,
    warmup: Annotated[int, typer.Option(parser=non_negative_int, help="Steps of learning-rate warm-up.")] = 0,
    val_data: Annotated[Optional[list[str]], typer.Option(help="Held-out folders (default: the last training files).")] = None,
    probe: Annotated[str, typer.Option(
        help="Comma-separated batch sizes whose throughput to measure first; a trailing e (32e) measures it eager.")] = "",
    deadline: Annotated[Optional[float], typer.Option(
        help="Unix time by which training stops, whatever --minutes says (for a command with a hard time limit).")] = None,
    compile_mode: Annotated[str, typer.Option(
        "--compile", help="torch.compile the training forward pass with this mode (default, reduce-overhead, "
             "max-autotune or max-autotune-no-cudagraphs); empty: eager.")] = "",
    resume: Annotated[bool, typer.Option(metavar="", help="Continue the run in OUT (its last.pt, which must exist).")] = False,
    force: Annotated[bool, typer.Option(metavar="",
        help="Replace the run in OUT (its last.pt) and an existing --slim file; without it they are refused.")] = False,
    init: Annotated[Optional[Path], typer.Option(help="Start from this checkpoint's weights.")] = None,
    new_schedule: Annotated[bool, typer.Option(metavar="",
        help="With --init: a fresh learning-rate schedule (--warmup, --steps, --total-minutes) from its step and time.")] = False,
    device: Annotated[str, typer.Option(parser=device_option, help="auto, cpu or cuda.")] = "auto",
    max_images: Annotated[int, typer.Option(
        parser=non_negative_int, help="Use at most this many training images (0: all).")] = 0,
    slim: Annotated[Optional[Path], typer.Option(help="Also write a weights-only fp16 copy here (its folder is made if need be).")] = None,
    threads: Annotated[int, typer.Option(
        parser=non_negative_int, help="torch's CPU threads (0: its default, one per core).")] = 0,
    tune_gains: Annotated[str, typer.Option(
        help="Comma-separated levels (0-based, after --lmbdas): train only their gain vectors, drawing crops at "
             "them only; every other weight stays as it is (needs --init, or --resume of a run that did so).")] = "",
):
    """Train from image folders, with checkpoints, resume and validation."""
    if not 0 <= integer_from < 1:
        raise typer.BadParameter("--integer-from must be in [0, 1)")
    if deadline is not None and not (math.isfinite(deadline) and deadline > time.time()):
        raise typer.BadParameter(f"{deadline} is past (it is a Unix time: seconds since 1970; now is {time.time():.0f})",
                                 param_hint="--deadline")
    if resume and init is not None:
        raise typer.BadParameter("--resume continues the run in --out from its own last.pt and --init starts one "
                                 "from other weights: give one of them")
    if new_schedule and init is None:
        raise typer.BadParameter("--new-schedule needs --init")
    if tune_gains and init is None and not resume:
        raise typer.BadParameter("--tune-gains needs --init (or --resume of a run that tuned those gains)")
    if tune_gains and integer_from:
        raise typer.BadParameter("--tune-gains keeps h_s as it is: it takes no --integer-from")
    if compile_mode not in COMPILE_MODES:
        raise typer.BadParameter(f"--compile must be one of {', '.join(m for m in COMPILE_MODES if m)}")
    try:
        levels = tuple(float(v) for v in lmbdas.split(",")) if lmbdas else ()
        if not all(math.isfinite(v) and v > 0 for v in levels):
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"must be positive numbers separated by commas, lowest first, not {lmbdas}",
                                 param_hint="--lmbdas") from None
    try:
        model_cfg = ModelConfig(N=channels, M=latent_channels, Nh=hyper_channels, lmbda=lmbda, lmbdas=levels)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lmbdas") from None
    try:
        batches = parse_probe(probe)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc} (comma-separated batch sizes, 32e for eager), not {probe}",
                                 param_hint="--probe") from None
    try:
        tune_levels = tuple(sorted({int(v) for v in tune_gains.split(",")})) if tune_gains else ()
    except ValueError:
        raise typer.BadParameter(f"must be comma-separated level numbers (0-based), not {tune_gains}",
                                 param_hint="--tune-gains") from None
    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(steps=steps, minutes=minutes, batch=batch, crop=crop, lr=lr, val_every=val_every, seed=seed,
                      total_minutes=total_minutes, integer_from=integer_from, warmup=warmup, tune_levels=tune_levels)
    # With --resume, what the command line does not give comes from the run (not the defaults).
    given = {name for name in ctx.params
             if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") in ("COMMANDLINE", "ENVIRONMENT")}
    inherit = frozenset(f.name for f in fields(TrainConfig) if OPTION_OF_FIELD.get(f.name, f.name) not in given)
    inherit_options = frozenset(name for name in RUN_OPTIONS if name not in given)
    given_model = frozenset(field for field, name in MODEL_OPTIONS.items() if name in given)
    TRAINING_BEGAN.clear()
    started = time.time()
    try:
        train(data, out, model_cfg, cfg, resume=resume, init=init, device_name=device, max_images=max_images,
              val_folders=val_data, probe=batches, compile_mode=compile_mode, new_schedule=new_schedule,
              slim=slim if int(os.environ.get("RANK", "0")) == 0 else None, deadline=deadline, force=force,
              inherit=inherit, inherit_options=inherit_options, given_model=given_model)
    except KeyboardInterrupt:  # before the training loop's own handler (options, images, set-up): Typer said nothing
        console.print("interrupted: --resume continues from the last checkpoint written" if TRAINING_BEGAN.is_set()
                      else "interrupted before training began: no checkpoint was written")
        raise typer.Exit(130) from None
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError (CUDA's) is a RuntimeError
        if not isinstance(exc, MemoryError) and not _out_of_memory(exc):
            raise
        where = "the GPU" if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) else "memory"
        last = out / "last.pt"  # this run's, not one that --force was to replace
        left = (f"--resume continues from {last}" if last.is_file() and last.stat().st_mtime >= started
                else "no checkpoint was written")
        console.print(f"error: out of {where}: a smaller --batch or --crop (or fewer channels) needs less; {left}")
        raise typer.Exit(1) from None


if __name__ == "__main__":  # python -m nicodec.training.train: as nicodec-train (python -m nicodec.training too)
    from nicodec.launch import train as _run

    _run()
