"""How much would a checkerboard context model save? An estimate on a trained model's frozen latents.

    python training/experiments/checkerboard_estimate.py [--checkpoint CHECKPOINT] [--data FOLDER ...]
        [--val-data FOLDER] [--crops 1200] [--minutes 15] [--widths 640,512] [--kodak ../shared/data/kodak]

(the checkpoint defaults to the one in training/checkpoints, the shipped model's).

The checkerboard context model (He, Zheng, Sun, Wang and Qin, "Checkerboard context model for
efficient learned image compression", CVPR 2021) splits y into two halves of a checkerboard:
the anchors are coded with the hyperprior's parameters, as now; the other half then gets
parameters from the hyperprior's features and a 5x5 convolution over the decoded anchors,
so decoding takes two parallel passes instead of one. Before anyone builds that (with an
integer version of the new networks, for exactness), this program measures what it would
buy the shipped model: g_a, h_a, h_s and the latents stay frozen, and only the new context
and parameter networks train, on the latents of random crops computed once (cheap enough
for a CPU). They predict corrections to the hyperprior's mean and log scale, starting from
zero, so training starts from the model as it is.

What this does not measure: a model trained jointly with its context model moves its
latents to suit it, which usually saves more; so this is an estimate from below of the
gain, at the cost of one more network pass on each side. Float arithmetic throughout (the
integer path costs nothing measurable, ``benchmarks/integer_cost.py``); rates are ideal
code lengths of y and z on Kodak, and the distortion is unchanged up to the shift of y_hat
with its mean (reported).

Each crop's latent is computed once at its own random level position (fractional, as the
codec's qualities are); the hyper-synthesis is run again on each batch from the stored z_hat,
which keeps the cache at y's size. With ``--val-data``, the rounded rate of crops of those
images (never trained on) is reported as training goes, to see the context learn the training
crops rather than images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from nicodec.training.data import list_images, load_rgb
from nicodec.training.model import LowerBound, SCALE_MIN, gaussian_likelihood
from nicodec.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[2]


def anchor_mask(height: int, width: int) -> torch.Tensor:
    """1 where (row + column) is even: the half coded first."""
    rows = torch.arange(height)[:, None]
    cols = torch.arange(width)[None, :]
    return ((rows + cols) % 2 == 0).float()[None, None]


class Context(nn.Module):
    """Corrections to the hyperprior's (mean, log scale) of the non-anchors, from the
    hyper-synthesis' last hidden features and a 5x5 convolution over the decoded anchors."""

    def __init__(self, M: int, hidden: int, widths: tuple[int, ...] = (640, 512)):
        super().__init__()
        self.context = nn.Conv2d(M, 2 * M, 5, padding=2)
        layers: list[nn.Module] = []
        width = hidden + 2 * M
        for w in widths:
            layers += [nn.Conv2d(width, w, 1), nn.LeakyReLU()]
            width = w
        self.parameters_net = nn.Sequential(*layers, nn.Conv2d(width, 2 * M, 1))
        nn.init.zeros_(self.parameters_net[-1].weight)
        nn.init.zeros_(self.parameters_net[-1].bias)

    def forward(self, anchors_hat: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``anchors_hat``: y_hat with the non-anchors zeroed."""
        delta = self.parameters_net(torch.cat([features, self.context(anchors_hat)], dim=1))
        return delta.chunk(2, dim=1)


@torch.no_grad()
def analysed(model, image: torch.Tensor, level: torch.Tensor | float) -> dict[str, torch.Tensor]:
    """y (gain applied) and z_hat of images at level positions (one each, or one for all)."""
    gain, _ = model.gains_at(torch.as_tensor(level, dtype=torch.float32).expand(len(image)))
    y = model.g_a(image) * gain[:, :, None, None]
    return {"y": y, "z_hat": torch.round(model.h_a(y))}


@torch.no_grad()
def hyper(model, lat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``lat`` with the float hyperprior's means and scales, h_s's last hidden features and z's bits."""
    z_hat = lat["z_hat"]
    features = model.h_s[:4](z_hat)
    means, scales = model.h_s[4](features).chunk(2, dim=1)
    z_bits = -torch.log2(model.z_prior.likelihood(z_hat).clamp_min(1e-12)).sum(dim=(1, 2, 3))
    return {**lat, "means": means, "scales": scales, "features": features, "z_bits": z_bits}


def frozen_latents(model, image: torch.Tensor, level: float) -> dict[str, torch.Tensor]:
    """y, z_hat, the float hyperprior's means and scales, and h_s's last hidden features."""
    return hyper(model, analysed(model, image, level))


def bits(y_hat: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Ideal bits per image of the positions where ``weight`` is 1."""
    p = gaussian_likelihood(y_hat, means, scales)
    return (-torch.log2(p.clamp_min(1e-12)) * weight).sum(dim=(1, 2, 3))


def context_rate(net: Context, lat: dict[str, torch.Tensor], noisy: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bits per image of the anchors (hyperprior) and of the non-anchors (with context), and y_hat."""
    y, means, scales = lat["y"], lat["means"], lat["scales"]
    mask = anchor_mask(*y.shape[2:])
    anchors_hat = (torch.round(y - means) + means) * mask
    d_mean, d_log_scale = net(anchors_hat, lat["features"])
    ctx_means = means + d_mean
    ctx_scales = LowerBound.apply(scales, SCALE_MIN) * torch.exp(d_log_scale)
    if noisy:
        y_coded = y + torch.empty_like(y).uniform_(-0.5, 0.5)
    else:
        y_coded = torch.round(y - ctx_means) + ctx_means
    anchor_bits = bits(torch.round(y - means) + means, means, scales, mask)
    other_bits = bits(y_coded, ctx_means, ctx_scales, 1 - mask)
    y_hat = anchors_hat + (torch.round(y - ctx_means) + ctx_means) * (1 - mask)
    return anchor_bits, other_bits, y_hat


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "\n").splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--data", nargs="+", default=[str(ROOT.parent / "shared/data/train/shard-1")])
    parser.add_argument("--val-data", default=None, help="held-out images: the rounded rate of their crops as training goes")
    parser.add_argument("--val-crops", type=int, default=64)
    parser.add_argument("--widths", default="640,512", help="the parameter network's hidden 1x1 layers")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--kodak", type=Path, default=ROOT.parent / "shared/data/kodak")
    parser.add_argument("--crops", type=int, default=1200)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--levels", default="0,3,6", help="trained levels to evaluate on Kodak")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    if args.checkpoint is None:
        kept = sorted((ROOT / "training/checkpoints").glob("*.pt"))
        if len(kept) != 1:
            parser.error(f"training/checkpoints holds {len(kept)} checkpoints; name one with --checkpoint")
        args.checkpoint = kept[0]
    model, _ = load_model(args.checkpoint)
    model.eval()
    model.config = dataclasses.replace(model.config, integer_entropy=False)  # the float twin
    levels = model.config.levels
    M, hidden = model.config.M, model.h_s[4].in_channels

    c = args.crop

    def latents(folders: list[str], count: int) -> tuple[dict[str, torch.Tensor], int]:
        """Random crops of the images in ``folders``, each analysed at a random level position."""
        images = [im for im in (load_rgb(p, c) for p in list_images(folders)) if im is not None]
        cache: dict[str, list[torch.Tensor]] = {}
        for start in range(0, count, args.batch):
            crops = []
            for _ in range(min(args.batch, count - start)):
                im = images[rng.integers(len(images))]
                top, left = rng.integers(im.shape[1] - c + 1), rng.integers(im.shape[2] - c + 1)
                crops.append(im[:, top : top + c, left : left + c])
            x = torch.stack(crops).float() / 255
            lat = analysed(model, x, torch.from_numpy(rng.uniform(0, levels - 1, len(crops))).float())
            for k, v in lat.items():
                cache.setdefault(k, []).append(v)
        return {k: torch.cat(v) for k, v in cache.items()}, len(images)

    t0 = time.monotonic()
    data, count = latents(args.data, args.crops)
    print(f"{len(data['y'])} crops of {count} images, latents in {time.monotonic() - t0:.0f} s", flush=True)
    held_out = None
    if args.val_data:
        held_out, count = latents([args.val_data], args.val_crops)
        held_out = hyper(model, held_out)
        print(f"{args.val_crops} held-out crops of {count} images", flush=True)

    net = Context(M, hidden, tuple(int(w) for w in args.widths.split(",")))
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    t0, step, history = time.monotonic(), 0, []
    budget = args.minutes * 60
    pixels = c * c
    while time.monotonic() - t0 < budget:
        idx = torch.from_numpy(rng.integers(0, len(data["y"]), args.batch))
        lat = hyper(model, {k: v[idx] for k, v in data.items()})
        progress = (time.monotonic() - t0) / budget
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (1.0 if progress < 0.8 else 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * (progress - 0.8) / 0.2)))
        anchor_bits, other_bits, _ = context_rate(net, lat, noisy=True)
        loss = (anchor_bits + other_bits).mean() / pixels
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            with torch.no_grad():
                base = bits(torch.round(lat["y"] - lat["means"]) + lat["means"], lat["means"], lat["scales"],
                            torch.ones_like(lat["y"][:1, :1])).mean() / pixels
                anchor_bits, other_bits, _ = context_rate(net, lat, noisy=False)
            # The training loss (noisy y) is not comparable with coded rates; the rounded ones are.
            history.append({"step": step, "seconds": round(time.monotonic() - t0), "y_bpp_noisy": float(loss.detach()),
                            "y_bpp_hyperprior_rounded": float(base),
                            "y_bpp_checkerboard_rounded": float((anchor_bits + other_bits).mean() / pixels)})
            if held_out is not None and step % 500 == 0:
                with torch.no_grad():
                    base = bits(torch.round(held_out["y"] - held_out["means"]) + held_out["means"], held_out["means"],
                                held_out["scales"], torch.ones_like(held_out["y"][:1, :1])).sum()
                    anchor_bits, other_bits, _ = context_rate(net, held_out, noisy=False)
                history[-1]["held_out_rate_change_pct"] = float(100 * ((anchor_bits + other_bits).sum() / base - 1))
            print(history[-1], flush=True)
    print(f"{step} steps in {time.monotonic() - t0:.0f} s", flush=True)

    net.eval()
    results = []
    for level in (int(v) for v in args.levels.split(",")):
        rows = []
        for path in sorted(args.kodak.glob("*.png")):
            with Image.open(path) as img:
                image = np.asarray(img.convert("RGB")).copy()
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                lat = frozen_latents(model, x, float(level))
                y, means, scales = lat["y"], lat["means"], lat["scales"]
                base_y_hat = torch.round(y - means) + means
                base_y = bits(base_y_hat, means, scales, torch.ones_like(y[:, :1]))
                anchor_bits, other_bits, ctx_y_hat = context_rate(net, lat, noisy=False)
                _, inverse = model.gains_at(torch.tensor([float(level)]))
                psnr = []
                for y_hat in (base_y_hat, ctx_y_hat):
                    x_hat = model.g_s(y_hat * inverse[:, :, None, None], model.level_quality(float(level))).clamp(0, 1)
                    mse = float(((x_hat * 255).round() - x * 255).pow(2).mean())
                    psnr.append(10 * np.log10(255**2 / mse))
            n = image.shape[0] * image.shape[1]
            z = float(lat["z_bits"][0])
            rows.append({"base_bpp": (float(base_y[0]) + z) / n, "context_bpp": (float(anchor_bits[0] + other_bits[0]) + z) / n,
                         "base_psnr": psnr[0], "context_psnr": psnr[1]})
        summary = {"level": level, **{k: statistics.fmean(r[k] for r in rows) for k in rows[0]}}
        summary["rate_change_pct"] = 100 * (summary["context_bpp"] / summary["base_bpp"] - 1)
        results.append(summary)
        print(f"level {level}: hyperprior {summary['base_bpp']:.4f} bpp {summary['base_psnr']:.3f} dB, checkerboard "
              f"{summary['context_bpp']:.4f} bpp {summary['context_psnr']:.3f} dB: {summary['rate_change_pct']:+.2f}% rate",
              flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        def shown(path) -> str:  # relative to the repository's root, as the defaults are given
            return os.path.relpath(Path(path).resolve(), ROOT)

        args.json.write_text(json.dumps({"checkpoint": shown(args.checkpoint), "data": [shown(d) for d in args.data],
                                         "val_data": args.val_data and shown(args.val_data), "val_crops": args.val_crops, "crops": args.crops,
                                         "widths": args.widths, "weight_decay": args.weight_decay, "lr": args.lr,
                                         "steps": step, "minutes": args.minutes, "history": history,
                                         "kodak": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
