"""A run's settings (:class:`TrainConfig`, saved in its checkpoints) and its learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Optional

from .messages import console


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
