"""What the training programs say: nicodec-train's console on stderr (``Stop`` prints through it
for the fine-tuning programs too, which keep consoles of their own), and the lines that end a
run early."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

# One line per line in a log file, whatever its width; markup off: a path of "[x]" would be
# taken for a style (and "[/x]" ends in a MarkupError after the run's work is done).
# force_jupyter off: in a notebook's kernel too, lines on stderr rather than HTML displays.
console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False, force_jupyter=False)


def nothing_to_train(step: int, origin: tuple, steps: int, seconds_before: float, schedule_seconds: float) -> str:
    """What a run whose schedule is complete says instead of training."""
    return (f"nothing to train: the run's schedule is complete (step {step}"
            + (f", {(seconds_before - origin[1]) / 60:.2f} of {schedule_seconds / 60:.2f} schedule minutes"
               if schedule_seconds else f" of {origin[0] + steps}")
            + "); --steps, or --total-minutes for a time-boxed schedule, lengthens it")


def diverged(step: int, last: Path, saved_step: Optional[int] = None) -> None:
    """Stop a run whose loss or weights are no longer finite, leaving its last checkpoint as it was
    (``saved_step``: the step this run last wrote it at, if it did)."""
    if saved_step is not None:
        where = f"{last} keeps the weights of step {saved_step}"
    else:
        where = f"{last} is left as it was" if last.exists() else "no checkpoint was written"
    console.print(f"error: the loss is not finite at step {step}: training diverged ({where}); "
                  "a lower --lr usually helps")
    raise typer.Exit(1)
