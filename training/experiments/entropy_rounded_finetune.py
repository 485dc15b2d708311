"""Fine-tune the entropy model of a variable-rate model on the real, rounded rate of frozen latents.

    python training/experiments/entropy_rounded_finetune.py training/checkpoints/nicodec-mshp-vr-3d.pt \\
        --data '../shared/data/train/shard-[1-2]' --val-data HELD_OUT --minutes 20

An experiment, not a shipped step. The GPU runs train ``h_s`` (through the integer path), ``h_a``
and the prior of z on the noisy-rate proxy (y plus uniform noise) of 256x256 crops at the trained
levels; the codec codes ``round(y - means)`` of whole images at any quality between them. This asks
whether the entropy model has a gap there: ``g_a``, the gains and ``g_s`` stay frozen (so y, and the
distortion but for the rounding offsets the means set, do not move), and ``h_a``, the prior of z and
the integer ``h_s`` train on the rate of y's rounded symbols (straight-through rounding) plus z's
noisy rate, each crop at a uniform random level position, as the runtime's qualities 1 to 100 map
onto them. The held-out figure is the ideal code length of y's rounded symbols and z's, at 8 level
positions evenly spaced from 0 to the last (``nicodec.model.quality_position`` of rd.py's 8
qualities, near enough).

On vr-3d (2026-11-30, 2 CPU cores; 880 crops of 256x384 from shards 1 and 2, 32 of the last 8
files of shard-5 held out, batch 16, Adam 2e-5 with a cosine over a 20-minute box, stopped by hand
at 1,000 steps in 619 s): the held-out rate moved -0.62%, -0.14%, -0.11%, -0.02%, +0.02%, +0.02%,
+0.04%, +0.05% from the lowest to the highest position, a mean of -0.09% (-0.03% at step 200):
the entropy model has no gap worth a model change (``training/LOG.md``, "Experiments").
"""

from __future__ import annotations

import argparse
import math
import time
import types

import numpy as np
import torch

from nicodec.training.data import list_images
from nicodec.training.entropy_finetune import latents
from nicodec.training.model import gaussian_likelihood, ste_round
from nicodec.training.checkpoint import load_model

POSITIONS = 8


@torch.no_grad()
def held_out_bpp(model, y0: torch.Tensor) -> np.ndarray:
    """Ideal bits per pixel of y's rounded symbols and z's, at ``POSITIONS`` level positions."""
    out = []
    for position in torch.linspace(0, model.config.levels - 1, POSITIONS):
        gain, _ = model.gains_at(position)
        y = y0 * gain[None, :, None, None]
        z = torch.round(model.h_a(y))
        z_bits = -torch.log2(model.z_prior.likelihood(z).clamp_min(1e-9)).sum()
        means, scales = model.entropy_parameters(z)
        symbols = torch.round(y - means)
        y_bits = -torch.log2(gaussian_likelihood(symbols, torch.zeros_like(symbols), scales.float()).clamp_min(1e-9)).sum()
        out.append(float((y_bits + z_bits) / (y.shape[0] * y.shape[2] * y.shape[3] * 256)))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", nargs="+", required=True, help="training folders (glob patterns allowed)")
    parser.add_argument("--val-data", nargs="+", required=True, help="held-out folders (their last 8 images)")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.checkpoint)
    model.eval()
    levels = model.config.levels
    if not levels:
        parser.error("the checkpoint is not a variable-rate model")
    started = time.monotonic()
    analysis = types.SimpleNamespace(g_a=model.g_a, h_a=lambda v: v[:, :1])  # y before the gains; no z
    y0, _ = latents(analysis, list_images(args.data), (256, 384), 2, 0)
    val, _ = latents(analysis, list_images(args.val_data)[-8:], (256, 384), 4, 1)
    print(f"latents of {len(y0)} training and {len(val)} held-out crops in {time.monotonic() - started:.0f} s", flush=True)
    base = held_out_bpp(model, val)
    print("held-out bpp at the start:", np.round(base, 4), flush=True)

    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.h_s.parameters(), *model.h_a.parameters(), *model.z_prior.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(0)
    start, budget, step = time.monotonic(), args.minutes * 60, 0
    while (elapsed := time.monotonic() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
        pick = torch.randint(0, len(y0), (args.batch,), generator=gen)
        gain, _ = model.gains_at(torch.rand(args.batch, generator=gen) * (levels - 1))
        y = y0[pick] * gain[:, :, None, None]
        z = model.h_a(y)
        z_bits = -torch.log2(model.z_prior.likelihood(z + torch.rand(z.shape, generator=gen) - 0.5).clamp_min(1e-9)).sum()
        means, scales = model.entropy_parameters(ste_round(z))
        symbols = ste_round(y - means.float())
        y_bits = -torch.log2(gaussian_likelihood(symbols, torch.zeros_like(symbols), scales.float()).clamp_min(1e-9)).sum()
        bpp = (y_bits + z_bits) / (args.batch * y.shape[2] * y.shape[3] * 256)
        opt.zero_grad()
        bpp.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            change = 100 * (held_out_bpp(model, val) / base - 1)
            print(f"step {step} ({elapsed:.0f} s): train {float(bpp.detach()):.4f} bpp; held-out change per position "
                  f"{np.round(change, 2)} %, mean {change.mean():+.3f}%", flush=True)


if __name__ == "__main__":
    main()
