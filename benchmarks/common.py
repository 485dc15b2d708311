"""What every benchmark program shares: PSNR, and JSON reports stamped with the date and machine.

The programs run as scripts (``python benchmarks/NAME.py``), so this folder is on their
import path and they import this module as ``common``.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over all channels; inf when they are equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def machine() -> dict:
    return {
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def write_report(path: Path | None, report: dict) -> None:
    """Write ``report`` as JSON to ``path`` (if given), after the date and the machine."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), **report}
    path.write_text(json.dumps(stamped, indent=1) + "\n")
