"""What the exact integer entropy parameters cost in rate: a checkpoint's integer h_s beside its float twin.

    python benchmarks/integer_cost.py [--checkpoint training/checkpoints/SHIPPED_MODEL_ID.pt]
        [--images ../shared/data/kodak] [--limit N] [--json benchmarks/results/integer_cost.json]

The shipped model computes the means and scales of y with the integer hyper-synthesis
(``nicodec.training.integer``), so every machine picks the same probability tables. Its
float twin is the same weights evaluated in float32, as a codec without the exactness
promise would run them. For each image and each trained level this program codes y and z
with rounding, as the codec does, and measures the ideal code length (the sum of
-log2 of each symbol's probability) under three sets of entropy parameters:

- ``integer``: the integer path (means in steps of 1/256, scales from the 64-entry table);
- ``float-table``: float h_s, each scale rounded up to the same table (what a float
  codec with the same tables would use);
- ``float``: float h_s with continuous scales (the training objective's rate, no tables).

It also decodes each y_hat to report PSNR, which moves only through the means. The
rates are estimates from the probabilities (real files add the range coder's few
hundred bytes of tables and headers, the same for all three); the comparison is on the
same latents, so it isolates the arithmetic of the entropy parameters. The integer
path's weights were trained through it, so the float twin is evaluated with weights that
were not tuned for float: the figure is the cost of the integer arithmetic for these
weights, not of a separately trained float model.

Needs the training extras (torch). Slow: about 100 s an image on 2 cores (10 levels, three
sets of parameters), 40 minutes for the 24 Kodak images; ``--limit N`` takes the first N.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import torch
except ModuleNotFoundError as exc:  # the runtime's install has no torch
    raise SystemExit(f"integer_cost.py needs torch, which is not installed ({exc}): install the training "
                     "extras, pip install -e '.[cpu,dev]'") from None

from nicodec.model import shipped_model_id
from nicodec.training.model import SCALE_LEVELS, float_scale_index, gaussian_likelihood, scale_table
from nicodec.training.checkpoint import load_model

from common import image_paths, psnr, write_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def bits(likelihood: torch.Tensor) -> float:
    return float(-torch.log2(likelihood.double().clamp_min(1e-12)).sum())


@torch.no_grad()
def measure(model, image: np.ndarray, level: float) -> dict[str, float]:
    """Ideal bits of y and z and PSNR under each set of entropy parameters, for one image at one level."""
    h, w = image.shape[:2]
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    y = model.g_a(x)
    gain, inverse = model.gains_at(torch.tensor([level]))
    y = y * gain[:, :, None, None]
    z_hat = torch.round(model.h_a(y))
    z_bits = bits(model.z_prior.likelihood(z_hat))
    integer_cfg = model.config
    table = scale_table()
    results = {}
    for name in ("integer", "float-table", "float"):
        model.config = dataclasses.replace(integer_cfg, integer_entropy=name == "integer")
        means, scales = model.entropy_parameters(z_hat)
        means, scales = means.float(), scales.float()
        if name == "float-table":
            scales = table[float_scale_index(scales).long()].float()
        y_hat = torch.round(y - means) + means
        x_hat = model.g_s(y_hat * inverse[:, :, None, None], model.level_quality(level)).clamp(0, 1)
        decoded = (x_hat[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        results[name] = {"bpp": (bits(gaussian_likelihood(y_hat, means, scales)) + z_bits) / (h * w),
                         "psnr": psnr(image, decoded)}
    model.config = integer_cfg
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model's checkpoint")
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared/data/kodak")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.checkpoint is None:  # read only then: the model folder may be moved aside (prepare_gpu_data --without)
        args.checkpoint = ROOT / f"training/checkpoints/{shipped_model_id()}.pt"
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.checkpoint)
    model.eval()
    if not model.config.integer_entropy:
        parser.error(f"{args.checkpoint} has no integer h_s to compare")
    levels = list(range(model.config.levels)) if model.config.levels else [None]
    paths = image_paths(args.images, args.limit)
    if not paths:
        parser.error(f"no images in {args.images}")
    per_level = []
    for level in levels:
        rows = []
        for path in paths:
            with Image.open(path) as img:
                image = np.asarray(img.convert("RGB"))
            side = model.config.downsampling
            image = image[: image.shape[0] // side * side, : image.shape[1] // side * side]
            rows.append(measure(model, image, 0.0 if level is None else float(level)))
        summary = {"level": level, "lambda": model.config.lmbdas[level] if level is not None else model.config.lmbda}
        for name in ("integer", "float-table", "float"):
            summary[name] = {k: statistics.fmean(r[name][k] for r in rows) for k in ("bpp", "psnr")}
        for name in ("float-table", "float"):
            summary[f"integer_vs_{name}_rate_pct"] = 100 * (summary["integer"]["bpp"] / summary[name]["bpp"] - 1)
        per_level.append(summary)
        print(f"level {level}: integer {summary['integer']['bpp']:.4f} bpp {summary['integer']['psnr']:.3f} dB | "
              f"float-table {summary['float-table']['bpp']:.4f} {summary['float-table']['psnr']:.3f} | "
              f"float {summary['float']['bpp']:.4f} {summary['float']['psnr']:.3f} | integer vs float-table "
              f"{summary['integer_vs_float-table_rate_pct']:+.2f}%, vs float {summary['integer_vs_float_rate_pct']:+.2f}%",
              flush=True)
    mean = {f"integer_vs_{n}_rate_pct": statistics.fmean(s[f"integer_vs_{n}_rate_pct"] for s in per_level)
            for n in ("float-table", "float")}
    print(f"mean over levels: integer vs float-table {mean['integer_vs_float-table_rate_pct']:+.2f}%, "
          f"vs float {mean['integer_vs_float_rate_pct']:+.2f}% (table scales: {SCALE_LEVELS})")
    write_report(args.json, {"checkpoint": str(args.checkpoint.relative_to(ROOT) if args.checkpoint.is_relative_to(ROOT)
                                                  else args.checkpoint),
                             "images": len(paths), "levels": per_level, "mean": mean})


if __name__ == "__main__":
    main()
