"""The training loop of one run (:class:`Run`): the schedule's steps, validations,
checkpoints, the progress bar, and the stop at a signal, a time limit or a deadline."""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from nicodec.console import writes_to_terminal
from nicodec.errors import NicodecError

from .checkpoint import save_checkpoint, slim_checkpoint
from .data import CropSampler
from .messages import console, diverged, nothing_to_train
from .model import MeanScaleHyperprior
from .run_start import Process
from .schedule import TrainConfig, learning_rate
from .steps import describe, switch_to_integer, training_step, validate
from .stopping import TRAINING_BEGAN, Stop

CHECKPOINT_SECONDS = 600
"""Wall-clock seconds after which a checkpoint is written even between validations: a slow run
(seconds a step on a CPU) loses at most this much to a crash."""


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
