"""The command-line values of the training programs (``nicodec-train``, ``decoder_finetune``,
``entropy_finetune``): typer ``parser`` functions, each a usage error at once for a bad value; ``parse_probe`` raises
ValueError, which ``nicodec-train``'s main turns into one."""

from __future__ import annotations

import math

import torch
import typer


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
    """A random seed from 0 to 2**31 - 1: numpy takes up to 2**32 - 1, and each process of a run
    adds 1000 times its rank."""
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
