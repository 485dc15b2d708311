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

import contextlib
import dataclasses
import functools
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import torch.distributed as dist
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from nicodec.console import writes_to_terminal
from nicodec.errors import NicodecError
from nicodec.files import nearest_existing

from .data import CropSampler, center_crops, held_out_copies, list_images, load_images, subfolder_hint
from .checkpoint import CheckpointError, load_model, save_checkpoint, slim_checkpoint
from .integer import calibrate
from .model import MeanScaleHyperprior, ModelConfig, rate_distortion_loss, remap_levels

DEFAULT_DATA = "../shared/data/train/shard-*"
# One line per line in a log file, whatever its width; markup off: a path of "[x]" would be
# taken for a style (and "[/x]" ends in a MarkupError after the run's work is done).
console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)


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


VAL_CROP = 256
"""Side of the centre crop of each held-out image that validation measures; smaller held-out
images are left out, unless none is that large: then every crop is the largest multiple of 64
they all hold (down to ``VAL_MIN_CROP``)."""
VAL_MIN_CROP = 64


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


def parse_probe(text: str) -> list[tuple[int, bool]]:
    """``--probe`` sizes: "16,32e,64" is batch 16, batch 32 eager (not compiled) and batch 64."""
    entries = []
    for item in filter(None, (v.strip() for v in text.split(","))):
        eager = item.endswith("e")
        try:
            size = int(item[:-1] if eager else item)
        except ValueError:
            raise ValueError(f"{item!r} is not a batch size") from None
        if size < 1:
            raise ValueError(f"probe batch sizes must be positive, not {size}")
        entries.append((size, eager))
    return entries


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


def resumed_config(cfg: TrainConfig, saved: dict, inherit: frozenset[str]) -> tuple[TrainConfig, dict]:
    """``cfg`` with the fields named in ``inherit`` taken from a run's saved ``train_config``
    (those the command line left at their defaults: ``--resume`` alone continues the run as it
    was, not with the defaults), and the values taken that differ from ``cfg``'s."""
    names = {f.name for f in fields(TrainConfig)}
    taken = {name: tuple(value) if isinstance(value, list) else value
             for name, value in saved.items() if name in inherit and name in names}
    kept = {name: value for name, value in taken.items() if value != getattr(cfg, name)}
    return dataclasses.replace(cfg, **taken), kept


RUN_OPTIONS = ("data", "val_data", "max_images", "slim")
"""Options of a run, beside its ``TrainConfig``, that ``--resume`` takes from the run when the
command line does not give them: what it trains on, and where its weights-only copy goes."""

CHECKPOINT_SECONDS = 600
"""Wall-clock seconds after which a checkpoint is written even between validations: a slow run
(seconds a step on a CPU) loses at most this much to a crash."""


def run_options(folders: list[str], val_folders: Optional[list[str]], max_images: int,
                slim: Optional[Path], out: Optional[Path] = None) -> dict:
    """The :data:`RUN_OPTIONS` as a checkpoint keeps them: paths made absolute, so a run resumed
    from another folder reads the same images; and the run's folder, ``out``, so that a resumed
    copy of it is told from the run itself (:func:`resumed_slim`)."""
    return {"data": [os.path.abspath(f) for f in folders],
            "val_data": [os.path.abspath(f) for f in val_folders] if val_folders else None,
            "max_images": max_images, "slim": os.path.abspath(slim) if slim is not None else None,
            "out": os.path.abspath(out) if out is not None else None}


def resumed_slim(slim: str, saved_out: Optional[str], out: Path, force: bool) -> str:
    """The ``--slim`` path a resumed run writes: the saved one, unless the run folder was copied
    or moved (``out`` is not the folder it was made in, ``saved_out``). A copy's slim file inside
    the run's folder is the copy's own; one outside it is the original run's, which resuming the
    copy would replace: refused unless ``force``. Checkpoints saved before the folder was kept
    (no ``saved_out``) keep their path."""
    here = os.path.abspath(out)
    if saved_out is None or saved_out == here:
        return slim
    inside = os.path.relpath(slim, saved_out)
    if not inside.startswith(os.pardir + os.sep) and inside != os.pardir:
        return os.path.join(here, inside)
    if force:
        return slim
    raise typer.BadParameter(
        f"the run was made in {saved_out}, and its weights-only copy {slim} lies outside it: resuming {out} would "
        "replace that file, the original run's; give --slim PATH (another file, or that one to replace it)",
        param_hint="--slim")


def check_outputs(out: Path, resume: bool, force: bool, slim: Optional[Path] = None) -> None:
    """Refuse, before anything is loaded, a run that would overwrite another without being asked,
    or that could not write its first checkpoint.

    Raises:
        typer.BadParameter: ``--resume`` without a run in ``out`` or with ``--force``; a run in
            ``out`` without either; an ``out`` or ``slim`` that cannot be written (or an existing
            ``slim`` file without either).
    """
    last = out / "last.pt"
    if resume and force:
        raise typer.BadParameter("--resume continues the run in --out and --force replaces it: give one of them")
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is not a folder", param_hint="--out")
    if resume and not last.is_file():
        raise typer.BadParameter(f"there is no run to continue: {last} does not exist", param_hint="--resume")
    if last.exists() and not (resume or force):
        raise typer.BadParameter(f"{out} holds a run ({last.name}): --resume continues it, --force replaces it",
                                 param_hint="--out")
    check_creatable(out, "--out")
    if slim is not None:
        if slim.is_dir():
            raise typer.BadParameter(f"{slim} is a folder", param_hint="--slim")
        if os.path.abspath(slim) == os.path.abspath(last) or (slim.exists() and last.exists() and slim.samefile(last)):
            raise typer.BadParameter(f"{slim} is the run's own checkpoint (with the optimizer state that --resume "
                                     "needs): give the weights-only copy another name", param_hint="--slim")
        if slim.exists() and not (resume or force):
            raise typer.BadParameter(f"{slim} exists: --force replaces it (so does --resume, the run's own copy)",
                                     param_hint="--slim")
        check_creatable(slim.parent, "--slim")


MODEL_OPTIONS = {"N": "channels", "M": "latent_channels", "Nh": "hyper_channels", "lmbda": "lmbda"}
"""ModelConfig fields and the parameters that give them (checked against a checkpoint's)."""


def check_architecture(saved: ModelConfig, asked: ModelConfig, given: frozenset[str], source: str) -> None:
    """Refuse architecture options given with a checkpoint (``source``: ``--init`` or ``--resume``)
    that differ from its own, rather than train the checkpoint's in silence; ``--lmbda`` only for
    a variable-rate checkpoint (whose rates ``--lmbdas`` sets) and, resuming, when it differs."""
    for field in ("N", "M", "Nh"):
        option = "--" + MODEL_OPTIONS[field].replace("_", "-")
        if field in given and getattr(asked, field) != getattr(saved, field):
            raise typer.BadParameter(f"{option} {getattr(asked, field)} differs from the checkpoint's "
                                     f"{getattr(saved, field)}: a checkpoint keeps its architecture (leave {option} out)",
                                     param_hint=source)
    if "lmbda" in given and asked.lmbda != saved.lmbda:
        if saved.levels:
            raise typer.BadParameter("the checkpoint is variable-rate: --lmbdas sets its rates, not --lmbda",
                                     param_hint=source)
        if source == "--resume":
            raise typer.BadParameter(f"--lmbda {asked.lmbda} differs from the run's {saved.lmbda} "
                                     "(--init starts a run at another rate from its weights)", param_hint=source)


def check_creatable(folder: Path, option: str) -> None:
    """Refuse, as a usage error of ``option``, a ``folder`` that is neither writable nor can be made
    (its nearest existing ancestor must be a writable folder)."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise typer.BadParameter(f"cannot make {folder}: {existing} is not a folder", param_hint=option)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {existing}", param_hint=option)


def start_finetune(checkpoint: Path, out: Path, cache: Optional[Path], force: bool, threads: int,
                   seed: int) -> tuple[MeanScaleHyperprior, dict]:
    """What the fine-tuning commands do first: refuse an ``out`` that exists without ``force`` and
    folders that cannot be written, before any work; set torch's threads (0: its default) and
    seed; load ``checkpoint``, a bad one being a usage error."""
    if out.exists() and not force:
        raise typer.BadParameter(f"{out} exists: --force replaces it", param_hint="--out")
    check_creatable(out.parent, "--out")
    if cache is not None:
        check_creatable(cache.parent, "--cache")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        return load_model(checkpoint)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="CHECKPOINT") from None


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
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        if cfg.integer_from:
            raise typer.BadParameter("--integer-from needs a single process")
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

    last = out / "last.pt"
    step, seconds_before, origin = 0, 0.0, (0, 0.0)
    ckpt: dict = {}
    try:
        if resume:
            model, ckpt = load_model(last)
        elif init is not None:
            model, ckpt = load_model(init)
        else:
            model = MeanScaleHyperprior(model_cfg)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="--resume" if resume else "--init") from None
    if ckpt:
        check_architecture(model.config, model_cfg, given_model, "--resume" if resume else "--init")
    restored: dict = {}
    if ckpt and resume:
        if model_cfg.lmbdas and model_cfg.lmbdas != model.config.lmbdas:
            raise typer.BadParameter("--lmbdas differ from the run being resumed (--init can change them)")
        saved_options = ckpt.get("run_options") or {}
        for name in RUN_OPTIONS:
            if name in inherit_options and saved_options.get(name) is not None:
                restored[name] = saved_options[name]
        folders = restored.get("data", folders)
        val_folders = restored.get("val_data", val_folders)
        max_images = restored.get("max_images", max_images)
        if "slim" in restored and rank == 0:
            restored["slim"] = resumed_slim(restored["slim"], saved_options.get("out"), out, force)
            slim = Path(restored["slim"])
            check_creatable(slim.parent, "--slim")
        elif slim is not None and slim.exists() and "slim" not in inherit_options:
            # A --slim given anew replaces the run's own copy, not any file that happens to be there.
            own = saved_options.get("slim")
            if own is not None:
                own = resumed_slim(own, saved_options.get("out"), out, force=True)
            if own is None or not (os.path.abspath(slim) == os.path.abspath(own)
                                   or (os.path.exists(own) and os.path.samefile(slim, own))):
                raise typer.BadParameter(
                    f"{slim} exists and is not the run's weights-only copy ({own or 'it kept none'}): give another "
                    "file, or remove that one first", param_hint="--slim")
        saved_levels = tuple((ckpt.get("train_config") or {}).get("tune_levels") or ())
        if "tune_levels" not in inherit and cfg.tune_levels != saved_levels:
            # Its optimizer's state is of the weights that run trained: a whole network, or those gains.
            trained = (f"tuned the gains of levels {','.join(map(str, saved_levels))}" if saved_levels
                       else "trained the whole network")
            raise typer.BadParameter(
                f"--resume continues a run as it trained, and this one {trained}: tune gains from its weights in a "
                f"run of their own (--init {last} --tune-gains {','.join(map(str, cfg.tune_levels))} --out ANOTHER "
                "--new-schedule --steps N)", param_hint="--tune-gains")
        cfg, kept = resumed_config(cfg, ckpt.get("train_config") or {}, inherit)
        # The checks and the seeding above saw the command line's settings: again with the run's.
        if distributed and cfg.integer_from:
            raise typer.BadParameter("--integer-from needs a single process (the run being resumed has it)")
        if cfg.tune_levels and cfg.integer_from:
            raise typer.BadParameter("--tune-gains keeps h_s as it is: it takes no --integer-from "
                                     "(the run being resumed has one of them)")
        seed = cfg.seed + 1000 * rank
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        kept.update(restored)
        if main and kept:
            console.print("the run's own settings: " + ", ".join(f"{name} {value}" for name, value in kept.items()))
    elif ckpt and model_cfg.lmbdas and model_cfg.lmbdas != model.config.lmbdas:
        before = model.config.lmbdas
        try:
            model = remap_levels(model, model_cfg.lmbdas)
        except ValueError as exc:
            raise typer.BadParameter(f"--lmbdas with --init: {exc}") from None
        if main:
            console.print(f"levels remapped from {list(before)} to {list(model_cfg.lmbdas)}")
    elif ckpt and "lmbda" in given_model and model_cfg.lmbda != model.config.lmbda:
        if main:  # a single-rate model fine-tuned to another rate (check_architecture refused it for the others)
            console.print(f"lmbda {model.config.lmbda} of the checkpoint replaced by {model_cfg.lmbda}")
        model.config = dataclasses.replace(model.config, lmbda=model_cfg.lmbda)

    try:
        paths = list_images(folders)
    except FileNotFoundError as exc:
        older = resume and "data" in inherit_options and "data" not in restored
        raise typer.BadParameter(str(exc) + (" (the run was saved without its --data: give it)" if older else ""),
                                 param_hint="--data") from None
    try:
        val_paths = list_images(val_folders) if val_folders else []
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--val-data") from None
    if not paths:
        raise typer.BadParameter(f"no images found in {', '.join(folders)}{subfolder_hint(folders)}", param_hint="--data")
    if val_folders and not val_paths:
        raise typer.BadParameter(f"no images found in {', '.join(val_folders)}{subfolder_hint(val_folders)}",
                                 param_hint="--val-data")
    unique: dict[str, str] = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    twice, paths = len(paths) - len(unique), list(unique.values())
    if twice and main:
        console.print(f"warning: {twice} training image{'s' if twice > 1 else ''} listed twice (the same "
                      "folder given twice?) counted once")
    if val_folders:
        shared = held_out_copies(paths, val_paths)
        train_paths = [p for p in paths if p not in shared]
        if not train_paths:
            raise typer.BadParameter(f"every one of the {len(paths)} training images is held out too (or a copy of "
                                     "one): --data and --val-data need other images", param_hint="--val-data")
        if shared and main:  # validation would measure what the model trained on
            console.print(f"warning: {len(shared)} training image{'s are' if len(shared) > 1 else ' is'} held out "
                          "too (or a copy of one): left out of training")
    elif len(paths) <= cfg.val_images:
        raise typer.BadParameter(f"{len(paths)} images found in {', '.join(folders)}: without --val-data the last "
                                 f"{cfg.val_images} are held out, so at least {cfg.val_images + 1} are needed",
                                 param_hint="--data")
    else:
        val_paths, train_paths = paths[-cfg.val_images :], paths[: -cfg.val_images]
    if max_images:
        train_paths = train_paths[:max_images]
    options = run_options(folders, val_folders, max_images, slim, out)
    budget = cfg.minutes * 60
    schedule_seconds = cfg.total_minutes * 60 or budget  # a time-boxed schedule anneals over this

    if ckpt:
        model_cfg = model.config
        step, seconds_before = ckpt.get("step") or 0, ckpt.get("train_seconds", 0.0)
        origin = (step, seconds_before) if new_schedule and not resume else tuple(ckpt.get("schedule_origin", (0, 0.0)))
        complete = step - origin[0] >= cfg.steps or (schedule_seconds and seconds_before - origin[1] >= schedule_seconds)
        if resume and complete:
            # Said before the images are read (a large set takes minutes); the checkpoint is left as it is.
            if main:
                console.print(_nothing_to_train(step, origin, cfg.steps, seconds_before, schedule_seconds))
            if distributed:
                dist.barrier()
                dist.destroy_process_group()
            return dict(ckpt.get("metrics") or {})
        if not resume and complete:
            # It trained no step, and wrote the weights as they were under the new settings' name, as "done".
            raise typer.BadParameter(
                f"the checkpoint's schedule is complete (step {step}, {step - origin[0]} of the {cfg.steps} "
                "--steps" + (f", {(seconds_before - origin[1]) / 60:.2f} of {schedule_seconds / 60:.2f} minutes"
                             if schedule_seconds else "")
                + "): --new-schedule starts a fresh one from its weights, and --steps or --total-minutes lengthens it",
                param_hint="--init")
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.tune_levels:
        try:
            freeze_except_gains(model, cfg.tune_levels)
        except ValueError as exc:
            raise typer.BadParameter(f"--tune-gains: {exc}") from None

    t_load = time.monotonic()
    images, small, problems = load_images(train_paths, cfg.crop)
    val, _, val_problems = load_images(val_paths, VAL_MIN_CROP)
    if main and (problems or val_problems):
        unread = problems + val_problems
        console.print(f"warning: {len(unread)} image{'s' if len(unread) > 1 else ''} could not be read and "
                      f"{'are' if len(unread) > 1 else 'is'} left out: " + "; ".join(unread[:5])
                      + (f"; and {len(unread) - 5} more" if len(unread) > 5 else ""))
    if not images and len(problems) == len(train_paths):  # none read at all: their size is not the matter
        raise typer.BadParameter(f"none of the {len(train_paths)} training images could be read (the warning above "
                                 "names them)", param_hint="--data")
    if not images:
        raise typer.BadParameter(f"none of the {len(train_paths)} training images is at least {cfg.crop} pixels "
                                 "on its shorter side" + (f" ({len(problems)} of them could not be read)" if problems
                                                          else ""), param_hint="--crop")
    if not val:  # validating on training crops instead would report a figure that means nothing
        unread = (f" ({len(val_problems)} of them could not be read"
                  + ("" if val_folders else f": the last {cfg.val_images} files found are held out") + ")"
                  if val_problems else "")
        raise typer.BadParameter(f"none of the {len(val_paths)} held-out images is at least {VAL_MIN_CROP} pixels on "
                                 f"its shorter side (validation uses their centre crops){unread}",
                                 param_hint="--val-data" if val_folders else "--data")
    full = [im for im in val if min(im.shape[1:]) >= VAL_CROP]
    if full:  # the usual crop, comparable with every run before; smaller images are left out
        val, val_side = full, VAL_CROP
    else:  # none holds it: the largest multiple of 64 they all hold
        val_side = min(min(im.shape[1:]) for im in val) // VAL_MIN_CROP * VAL_MIN_CROP
    sampler = CropSampler(images, cfg.crop, device, generator_seed=seed)
    val_batch = center_crops(val, val_side).to(device)
    if ckpt:
        sampler.reseed(seed + step)  # other crops than the run before
    if main:
        dropped = len(val_paths) - len(val_problems) - len(val)  # the unreadable ones are warned of above
        console.print(f"{len(images)} training images"
                      + (f" ({small} smaller than the {cfg.crop}-pixel crop left out)" if small else "")
                      + f", {len(val)} held out"
                      + (f" ({dropped} smaller than {val_side if full else VAL_MIN_CROP} pixels left out)"
                         if dropped else "")
                      + (f" (centre crops of {val_side}, the smallest one's)" if val_side < VAL_CROP else "")
                      + f", device {device} ({time.monotonic() - t_load:.1f} s to load)")

    optimizer = make_optimizer(model, cfg.lr, device)
    if resume and ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    eager = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    net = compiled(eager, compile_mode)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    if probe and main:
        probe_throughput(model, sampler, probe, autocast, compile_mode)

    start_step, t0 = step, time.monotonic()
    metrics: dict = {}
    schedule_seconds, budget, cfg = fitted_to_deadline(cfg, schedule_seconds, budget, seconds_before - origin[1],
                                                       deadline, main)
    # Warm-up from this run's first step when its optimizer starts afresh (a checkpoint of
    # weights only, an --init that carries its schedule on), else from the schedule's.
    warm_from = origin[0] if resume and ckpt and ckpt.get("optimizer") else start_step

    def schedule_progress() -> float:
        progress = (step - origin[0]) / cfg.steps
        if schedule_seconds:
            # A time-boxed schedule anneals by whichever runs out first.
            progress = max(progress, (seconds_before - origin[1] + time.monotonic() - t0) / schedule_seconds)
        return min(progress, 1.0)

    saved_at = [time.monotonic(), None]  # when and at which step this run last wrote its checkpoint

    def checkpoint(wall: Optional[float] = None):
        # ``wall``: the run's training time, for the final checkpoint: taken before the final
        # validation, which the next run of a carried schedule must not count as training.
        # Never over a good checkpoint with weights a step has made NaN or inf (the loss of
        # that step, computed before it, can still be finite).
        if not bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()):
            _diverged(step, last, saved_at[1])
        def unwritten(path: Path, exc: Exception, kept: str) -> None:  # a full disk, a folder made read-only
            console.print(f"error: cannot write {path} at step {step}: {getattr(exc, 'strerror', None) or exc} "
                          f"({kept}; --resume continues from there)")
            raise typer.Exit(1) from None

        try:
            # Complete only when the final checkpoint says so (nicodec-export's advice reads it).
            save_checkpoint(last, model, optimizer, step, model_cfg, cfg, {"schedule_complete": False, **metrics},
                            seconds_before + (time.monotonic() - t0 if wall is None else wall), origin, options)
        except (OSError, NicodecError) as exc:
            unwritten(last, exc, f"{last} keeps step {saved_at[1]}" if saved_at[1] is not None
                      else f"{last} is left as it was")
        saved_at[:] = time.monotonic(), step
        if slim is not None:
            try:
                slim_checkpoint(last, slim)
            except (OSError, NicodecError) as exc:
                unwritten(slim, exc, f"{last} has step {step}")

    def written() -> str:
        return f"{last}" + (f" and {slim}" if slim is not None else "")

    def first_step() -> dict:
        """The first step, where compilation happens: a failure there falls back to eager."""
        nonlocal net
        from torch._dynamo.utils import counters

        graphs = counters["stats"]["unique_graphs"]
        try:
            losses = training_step(net, model, optimizer, sampler, cfg.batch, autocast, cfg.tune_levels)
            if device.type == "cuda":
                torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - any compiler failure; eager then runs the same step
            if not compile_mode:
                raise
            bar.console.print(f"compilation failed ({type(exc).__name__}: {exc}); training eagerly")
            net = eager
            compiled_graphs = 0
            losses = training_step(net, model, optimizer, sampler, cfg.batch, autocast, cfg.tune_levels)
        else:
            compiled_graphs = counters["stats"]["unique_graphs"] - graphs
        note = f" ({compiled_graphs} graphs compiled)" if compile_mode else ""
        if main:
            bar.console.print(f"first step: {time.monotonic() - t0:.1f} s{note}")
        return losses

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("{task.fields[left]}")]

    def shown(step: int) -> dict:
        """The bar's place, count and time left: by the steps, or by the time limit where that ends
        the run first (a --minutes run's default 20,000 steps said hours were left)."""
        elapsed = time.monotonic() - t0
        limits = [budget - elapsed] if budget else []
        if schedule_seconds:
            limits.append(schedule_seconds - (seconds_before - origin[1] + elapsed))
        if deadline:
            limits.append(deadline - time.time())
        ran = step - start_step
        by_steps = (last_step - step) * elapsed / ran if ran else None
        if limits and (by_steps is None or min(limits) < by_steps):
            left: float | None = max(min(limits), 0.0)
            fraction = elapsed / (elapsed + left) if elapsed + left > 0 else 1.0
            count = f"step {step}, {elapsed / 60:.1f} of {(elapsed + left) / 60:.1f} min"
        else:
            left, fraction, count = by_steps, step / max(last_step, 1), f"{step}/{last_step}"
        clock = "-:--:--" if left is None else f"{int(left) // 3600}:{int(left) % 3600 // 60:02d}:{int(left) % 60:02d}"
        return {"completed": round(1000 * min(fraction, 1.0)), "count": count, "left": clock}

    stop = Stop()
    # The handlers stay in place through the final validation and checkpoint: a stop there (the
    # signal of a `timeout` as a time-boxed run ends) waits for the checkpoint, as one in the loop does.
    TRAINING_BEGAN.set()
    with stop.on_signals(enabled=not distributed):
        with Progress(*columns, console=console, disable=not main or not writes_to_terminal(console)) as bar:
            last_step = origin[0] + cfg.steps
            task = bar.add_task("train", total=1000, stats="", **shown(step))
            while step < last_step:
                if stop.signal:
                    break
                if budget and time.monotonic() - t0 >= budget:
                    break
                if deadline and time.time() >= deadline:
                    bar.console.print(f"step {step}: stopping at the deadline")
                    break
                progress = schedule_progress()
                if progress >= 1.0:
                    break
                if cfg.integer_from and progress >= cfg.integer_from and not model_cfg.integer_entropy:
                    scales = switch_to_integer(model, sampler, cfg.batch)
                    model_cfg = model.config
                    metrics = validate(model, val_batch, autocast)
                    bar.console.print(f"step {step}: h_s now integer (activation scales {scales.tolist()}); {describe(metrics)}")
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, progress, step - warm_from)
                if step == start_step:
                    losses = first_step()
                else:
                    losses = training_step(net, model, optimizer, sampler, cfg.batch, autocast, cfg.tune_levels)
                step += 1
                if main and (step % 25 == 0 or step == last_step):
                    # One read of the three numbers: each read waits for the GPU to finish the step.
                    loss, bpp, psnr = torch.stack([losses["loss"].detach(), losses["bpp"], losses["psnr"]]).tolist()
                    if not math.isfinite(loss):
                        _diverged(step, last, saved_at[1])
                    stats = f"loss {loss:.3f} bpp {bpp:.3f} PSNR {psnr:.2f}"
                    bar.update(task, stats=stats, **shown(step))
                    if not writes_to_terminal(console) and step % 250 == 0:  # a log file gets no progress bar
                        elapsed = time.monotonic() - t0
                        bar.console.print(f"step {step} ({elapsed:.0f} s, {(step - start_step) / elapsed:.2f} it/s): {stats}")
                if main and (step % cfg.val_every == 0):
                    metrics = validate(model, val_batch, autocast)
                    if not math.isfinite(metrics["loss"]):
                        _diverged(step, last, saved_at[1])
                    elapsed = time.monotonic() - t0
                    bar.console.print(
                        f"step {step} ({elapsed:.0f} s, {(step - start_step) / elapsed:.2f} it/s, "
                        f"lr {optimizer.param_groups[0]['lr']:.2e}): {describe(metrics)}")
                    checkpoint()
                elif main and time.monotonic() - saved_at[0] >= CHECKPOINT_SECONDS:
                    checkpoint()  # with the last validation's figures: a slow run loses little to a crash
            bar.update(task, **shown(step))  # a stop between the bar's updates, every 25 steps
        wall = time.monotonic() - t0
        complete = step >= last_step or schedule_progress() >= 1.0  # not stopped, nor cut by --minutes or a deadline
        if main and resume and step == start_step:
            # Nothing trained: the weights are the run's own, so its checkpoint is left as it is.
            if complete:
                console.print(_nothing_to_train(step, origin, cfg.steps, seconds_before, schedule_seconds))
            else:
                console.print(f"no step trained (stopped before the first one); {last} is left as it was")
            metrics = dict(ckpt.get("metrics") or {})
        elif main:
            metrics = validate(model, val_batch, autocast)
            if not math.isfinite(metrics["loss"]):
                _diverged(step, last, saved_at[1])
            metrics.update(steps=step, run_steps=step - start_step, seconds=round(wall, 1),
                           it_per_s=round((step - start_step) / max(wall, 1e-9), 3),
                           train_minutes=round((seconds_before + wall) / 60, 2), final_lr=optimizer.param_groups[0]["lr"],
                           schedule_complete=complete)
            checkpoint(wall)
            stopped = stop.signal and step < last_step
            console.print(f"{'stopped by ' + stop.name if stopped else 'done'}: {describe(metrics)}; "
                          f"{metrics['run_steps']} steps in {wall:.0f} s ({metrics['it_per_s']} it/s), {metrics['steps']} "
                          f"in all; wrote {written()}" + ("; --resume continues" if stopped else ""))
            if complete and cfg.integer_from and not model_cfg.integer_entropy:
                # The switch is made at a step's start: a schedule of few (or long) steps can end before it.
                console.print(f"warning: the schedule ended before its --integer-from {cfg.integer_from:g} point, so "
                              "the entropy parameters are still float (files may not decode on other machines): "
                              f"nicodec-train --init {last} --integer-from {cfg.integer_from:g} --new-schedule "
                              "--out ANOTHER --steps N switches them (with this run's --data and other training "
                              "options given again: --init takes the weights only)")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if stop.signal and step < last_step:
        raise typer.Exit(128 + stop.signal)
    return metrics


def _nothing_to_train(step: int, origin: tuple, steps: int, seconds_before: float, schedule_seconds: float) -> str:
    return (f"nothing to train: the run's schedule is complete (step {step}"
            + (f", {(seconds_before - origin[1]) / 60:.2f} of {schedule_seconds / 60:.2f} schedule minutes"
               if schedule_seconds else f" of {origin[0] + steps}")
            + "); --steps, or --total-minutes for a time-boxed schedule, lengthens it")


def _out_of_memory(exc: RuntimeError) -> bool:
    """Whether torch raised ``exc`` for want of memory: its CPU allocator's "can't allocate
    memory" is a plain RuntimeError, CUDA's a ``torch.OutOfMemoryError``."""
    return isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or any(
        text in str(exc) for text in ("can't allocate memory", "out of memory"))


def _diverged(step: int, last: Path, saved_step: Optional[int] = None) -> None:
    """Stop a run whose loss or weights are no longer finite, leaving its last checkpoint as it was
    (``saved_step``: the step this run last wrote it at, if it did)."""
    if saved_step is not None:
        where = f"{last} keeps the weights of step {saved_step}"
    else:
        where = f"{last} is left as it was" if last.exists() else "no checkpoint was written"
    console.print(f"error: the loss is not finite at step {step}: training diverged ({where}); "
                  "a lower --lr usually helps")
    raise typer.Exit(1)


TRAINING_BEGAN = threading.Event()
"""Set as :func:`train` starts its loop: a Ctrl-C the command catches before then wrote nothing
(under ``torchrun`` the loop has no handler of its own, and one may come later)."""


class Stop:
    """Ctrl-C and SIGTERM (``timeout``, a scheduler) end a training loop after the step in hand,
    so that the program writes its checkpoint; ``signal`` is the number of the one received (0: none).
    The fine-tuning programs (``decoder_finetune``, ``entropy_finetune``) stop the same way."""

    def __init__(self):
        self.signal = 0
        self.name = ""

    def _handle(self, number, frame) -> None:
        if self.signal:  # a second one: stop now, without the checkpoint, with its own exit code
            console.print(f"{signal.Signals(number).name} again: stopped at once, writing nothing more")
            raise SystemExit(128 + number)
        self.signal, self.name = number, signal.Signals(number).name
        console.print(f"{self.name}: stopping after this step and writing a checkpoint (again to stop at once)")

    @contextlib.contextmanager
    def on_signals(self, enabled: bool = True):
        """Stop on the signals within the block (``enabled`` false, or off the main thread: as before;
        several processes of a run would each stop at another step and wait on the others)."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                if handler is not None:  # None: set outside Python (an embedding program), which cannot be put back
                    signal.signal(number, handler)


def _bounded(kind: type, what: str, value, ok) -> int | float:
    """``value`` as ``kind`` if it converts and ``ok`` says yes, else a usage error naming ``what``."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise typer.BadParameter(f"must be {what}, not {value}") from None
    if not ((kind is not float or math.isfinite(number)) and ok(number)):
        raise typer.BadParameter(f"must be {what}, not {value}")
    return number


def positive_int(value) -> int:
    """A whole number of at least 1 (a typer ``parser``: a bad one is a usage error at once)."""
    return _bounded(int, "a positive integer", value, lambda v: v >= 1)


def non_negative_int(value) -> int:
    """A whole number of at least 0 (a typer ``parser``)."""
    return _bounded(int, "a non-negative integer", value, lambda v: v >= 0)


def positive_float(value) -> float:
    """A finite number above 0 (a typer ``parser``)."""
    return _bounded(float, "a positive number", value, lambda v: v > 0)


MAX_LR = 1e36
"""The largest learning rate taken: Adam's first step is ten times it (its bias correction), in
float32, whose largest is 3.4e38; a larger one failed in torch with a traceback."""


def adam_lr(value) -> float:
    """A learning rate for Adam: above 0, at most :data:`MAX_LR` (a typer ``parser``)."""
    return _bounded(float, "a positive number (at most 1e36)", value, lambda v: 0 < v <= MAX_LR)


MAX_BATCH = 1 << 16
"""The most crops a step takes (a larger batch overflowed in torch with a traceback)."""


def batch_size(value) -> int:
    """Crops per step: 1 to :data:`MAX_BATCH` (a typer ``parser``)."""
    return _bounded(int, f"a whole number from 1 to {MAX_BATCH:,}", value, lambda v: 1 <= v <= MAX_BATCH)


def non_negative_float(value) -> float:
    """A finite number of at least 0 (a typer ``parser``)."""
    return _bounded(float, "a non-negative number", value, lambda v: v >= 0)


def seed_value(value) -> int:
    """A random seed: numpy takes 0 to 2**32 - 1, and each process of a run adds 1000 times its rank."""
    return _bounded(int, "an integer from 0 to 2**31 - 1", value, lambda v: 0 <= v < 2**31)


def crop_side(value) -> int:
    """A crop side: a positive multiple of 64 (the model downsamples by 64 in all)."""
    return _bounded(int, "a positive multiple of 64", value, lambda v: v >= 64 and v % 64 == 0)


DEVICES = ("auto", "cpu", "cuda")


def device_option(value: str) -> str:
    """``auto``, ``cpu``, or ``cuda`` where torch finds a CUDA device (a run asked to use one fails at once)."""
    if value not in DEVICES:
        raise typer.BadParameter(f"must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, not {value}")
    if value == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(f"torch finds no CUDA device here (torch {torch.__version__}, CUDA {torch.version.cuda})")
    return value


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
