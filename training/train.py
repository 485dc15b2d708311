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

This module starts a run (:func:`train`, and the command's options in :func:`main`); the run's
settings and learning-rate schedule are in :mod:`.schedule`, a step and the validation in
:mod:`.steps`, and the loop itself (:class:`.loop.Run`) in :mod:`.loop`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

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
from .loop import Run
from .messages import console, nothing_to_train
from .model import ModelConfig
from .run_checks import MODEL_OPTIONS, RUN_OPTIONS, check_outputs, run_options
from .run_start import image_lists, load_data, seed_everything, start_process, starting_point
from .schedule import TrainConfig, fitted_to_deadline
from .steps import COMPILE_MODES, compiled, freeze_except_gains, make_optimizer, probe_throughput
from .stopping import TRAINING_BEGAN

DEFAULT_DATA = "../shared/data/train/shard-*"


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
    :data:`.loop.CHECKPOINT_SECONDS` of training between validations. A loss that is no longer finite
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
