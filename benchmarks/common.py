"""What every benchmark program shares: PSNR, MS-SSIM, images, and JSON reports stamped with the date and machine.

The programs run as scripts (``python benchmarks/NAME.py``), so this folder is on their
import path and they import this module as ``common``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over all channels; inf when they are equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


MSSSIM_MIN_SIDE = 161
"""Smallest side MS-SSIM takes: five scales of an 11-tap window need (11 - 1) * 2**4 < side."""


def msssim_unavailable() -> str | None:
    """Why MS-SSIM cannot be measured here (pytorch-msssim missing), or None when it can."""
    try:
        importlib.import_module("pytorch_msssim")
    except ImportError as exc:
        return f"pytorch-msssim is not installed ({exc})"
    return None


def msssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two uint8 RGB images: the mean over R, G and B of each channel's MS-SSIM.

    The definition of Wang, Simoncelli and Bovik (2003): five scales, an 11-tap Gaussian
    window of sigma 1.5, K1 = 0.01, K2 = 0.03 and their scale weights, as computed by
    pytorch-msssim (the library CompressAI's evaluation uses) with a data range of 255.

    Returns:
        The value in [0, 1], or None when pytorch-msssim is not installed or a side is
        shorter than ``MSSSIM_MIN_SIDE`` pixels.
    """
    if min(a.shape[:2]) < MSSSIM_MIN_SIDE or msssim_unavailable():
        return None
    import torch
    from pytorch_msssim import ms_ssim

    x, y = (torch.from_numpy(np.array(v, dtype=np.float32).transpose(2, 0, 1)[None]) for v in (a, b))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # measured 5x faster than 2 threads on a busy 2-core machine
    try:
        with torch.no_grad():
            return float(ms_ssim(x, y, data_range=255, size_average=True))
    finally:
        torch.set_num_threads(threads)


def msssim_db(value: float | None) -> float | None:
    """MS-SSIM on a decibel scale, -10 log10(1 - MS-SSIM), as rate-distortion plots show it."""
    if value is None:
        return None
    return float("inf") if value >= 1 else float(-10 * np.log10(1 - value))


def percent(value: float | None) -> str:
    """A BD-rate for a table: ``n/a`` where the curves share no range (:func:`bd_rate` gave None)."""
    return "n/a" if value is None else f"{value:+.2f}%"


def image_paths(folder: Path, limit: int = 0) -> list[Path]:
    """The images of a folder (PNG, JPEG, PPM) in name order; the first ``limit`` when it is set."""
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"))
    return paths[: limit or None]


def read_rgb(path: Path) -> np.ndarray:
    """The RGB pixels of an image file.

    Raises:
        SystemExit: the file is no image Pillow reads (not one, cut short, too large): one line
            naming it, where Pillow's own error was a traceback from the middle of a program.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # SyntaxError: a broken PNG chunk
        raise SystemExit(f"cannot read the image {path}: {exc}") from None


def whole_number(low: int, high: int | None = None):
    """An argparse type: a whole number from ``low`` (to ``high``), refused at the command line
    rather than as a traceback after the images are read (``--threads 0``, ``--repeats 0``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of {low} or more"
            raise argparse.ArgumentTypeError(f"must be a whole number {span}, not {value}")
        return value

    return parse


THREADS = whole_number(1, 256)
"""``--threads``: what ``nicodec.Codec`` takes."""


def image_size(text: str) -> tuple[int, int]:
    """An argparse type: ``WIDTHxHEIGHT`` of positive whole numbers."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not WIDTHxHEIGHT: {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"WIDTH and HEIGHT must be positive, not {text!r}")
    return width, height


def open_codec(parser, model: Path | None, **options):
    """``nicodec.Codec(model, providers="cpu", **options)``, or a usage error naming what is wrong
    (``--model`` a folder that is no model: one line, not the ModelError's traceback)."""
    from nicodec import Codec, NicodecError

    try:
        codec = Codec(model, providers="cpu", **options)
    except NicodecError as exc:
        parser.error(str(exc))
    check_encodes(parser, codec)
    return codec


def check_encodes(parser, codec) -> None:
    """A usage error for a model folder that cannot encode (a decode-only copy, as the earlier
    models under ``nicodec/models/earlier`` are), before any image is read; its ModelError came
    as a traceback at the first encode."""
    from nicodec import NicodecError

    try:
        codec.model.check_available("encoder.onnx", "encode")
    except NicodecError as exc:
        parser.error(f"{exc} (a decode-only model folder); this program encodes")


def cpu_model() -> str:
    """The processor's name as the OS gives it (``/proc/cpuinfo`` on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none): other work on the
    machine skews every time, and this program's own threads count in them too."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine() -> dict:
    return {
        "cpu_model": cpu_model(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        if hasattr(os, "sysconf") else None,
        "load_average": load_average(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def default_model() -> dict:
    """The id and hash of the model nicodec uses by default here (the shipped one), read from
    its manifest: every report names it, whichever models the benchmark itself ran."""
    from nicodec.model import default_model_dir

    manifest = json.loads((default_model_dir() / "manifest.json").read_text())
    return {"model_id": manifest["model_id"], "model_hash": manifest["model_hash"]}


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: through a temporary file in the same folder,
    renamed into place (``nicodec.files.write_atomic``), so that a write that fails midway (a full
    disk) leaves the previous results as they were, not a truncated file.

    Raises:
        SystemExit: the file cannot be written (one line naming it and why).
    """
    from nicodec import NicodecError
    from nicodec.files import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: f.write(data), force=True)
    except (OSError, NicodecError) as exc:
        raise SystemExit(f"cannot write {path}: {exc}" if isinstance(exc, OSError) else str(exc)) from None


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (:func:`write_file`)."""
    write_file(path, text.encode())


def write_report(path: Path | None, report: dict) -> None:
    """Write ``report`` as JSON to ``path`` (if given), after the date, the machine and the default model."""
    if path is None:
        return
    stamped = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
               "default_model": default_model(), **report}
    write_text(path, json.dumps(stamped, indent=1) + "\n")


def publish(report: dict, table: str, json_path: Path | None, markdown_path: Path | None = None) -> None:
    """Print a benchmark's table, and write its JSON report and Markdown table where asked."""
    print("\n" + table)
    write_report(json_path, report)
    if markdown_path:
        write_text(markdown_path, table + "\n")


def add_quality_argument(parser) -> None:
    """``--quality``: the quality nicodec codes at (default: the model's; a single-rate model takes none)."""
    parser.add_argument("--quality", type=float, default=None,
                        help="nicodec's quality, 1 to 100 (default: the model's default; not for a single-rate model)")


def coding_quality(codec, quality: float | None) -> float | None:
    """The quality ``codec.encode(image, quality=quality)`` codes at, as its header records it.

    Returns:
        ``quality`` rounded to float32 as the header stores it, the model's default for
        None, or None for a single-rate model.

    Raises:
        QualityError: what ``encode`` would raise: out of 1..100, or given to a single-rate model.
    """
    if quality is None and not codec.model.variable_rate:
        return None
    return codec._encoder_gain(quality)[0]  # the codec's own check and rounding


def add_image_arguments(parser, default_images: Path) -> None:
    """The options of the per-image Kodak programs: --images, --model, --threads, --limit, --json."""
    parser.add_argument("--images", type=Path, default=default_images,
                        help=f"the folder of the Kodak PNGs (default: {default_images})")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--json", type=Path, default=None)
