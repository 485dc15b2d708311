"""Estimate what a small learned post-filter after the synthesis would add, on frozen latents.

    python training/experiments/postfilter_estimate.py CHECKPOINT --cache CACHE --minutes 25 \\
        --channels 32 --json OUT.json [--out NEW_CHECKPOINT]
    python training/experiments/postfilter_estimate.py CHECKPOINT --weights OUT.pt [--kodak KODAK] [--out NEW]

Written as an experiment; the filter of ``nicodec-mshp-vr-5e`` is its first run, vr-5f's (given the
quality) its second (training/LOG.md).
``decoder_finetune`` retrains ``g_s`` on the codec's own latents and gains a few hundredths of a
dB; this asks whether capacity at full resolution, which ``g_s`` lacks (its last layer is
linear), gives more: a residual filter after ``g_s``, ``x + f(x)``
(:class:`nicodec.training.model.PostFilter`, here with its optional quality plane too), where
``f`` is three 3x3 convolutions (ReLU between) on the picture folded to half resolution (space to
depth, 12 channels), the last one zero-initialised so training starts from the model's pixels.
Only the filter trains; every file keeps its symbols, as with ``decoder_finetune``, so a model
with it is a synthesis change (``nicodec-export --decodes-files-of``). ``--out`` writes the
checkpoint with the filter (``ModelConfig.postfilter``); ``--conditioned`` gives the filter the
quality as a 13th input plane (``ModelConfig.postfilter_quality``; its decoder graphs then take the
header's quality too). With ``--weights`` nothing trains: a filter this program saved is measured
(``--kodak``) or written into the checkpoint (``--out``).

The latents come from ``decoder_finetune``'s ``--cache`` (random 256x256 crops of the training
shards at random qualities, and 320x320 centre crops of the held-out files at the benchmark's 8
qualities, all encoded by the shipped encoder); the model's synthesis decodes them once, and the
filter trains on random 128x128 parts of those pictures (Adam, a 50-step warm-up, a cosine fall
to zero over the time box, the objective the mean over crops of 10 log10 MSE, as
``decoder_finetune``'s). Held-out PSNR is measured on the uint8 pixels a decoder writes. The cost
of the filter, in multiply-adds per pixel, is printed beside it (the synthesis: about 42,000).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from nicodec.training.decoder_finetune import HELD_OUT_QUALITIES
from nicodec.training.model import PostFilter
from nicodec.training.checkpoint import load_model
from torch import nn


@torch.no_grad()
def synthesized(g_s: nn.Module, y_hat: torch.Tensor, qualities: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """The synthesis's pictures of ``y_hat``, in float16 to hold thousands of crops (``qualities``,
    each crop's, reach a post-filter of ``g_s`` that takes them)."""
    return torch.cat([g_s(y_hat[i : i + batch], qualities[i : i + batch]).half() for i in range(0, len(y_hat), batch)])


@torch.no_grad()
def coded_psnr(filt: nn.Module | None, x_hat: torch.Tensor, crops: torch.Tensor, qualities: torch.Tensor,
               batch: int = 16) -> torch.Tensor:
    """PSNR (dB) of each crop as a decoder writes it (uint8), with the filter or without."""
    out = []
    for i in range(0, len(x_hat), batch):
        x = x_hat[i : i + batch].float()
        x = filt(x, qualities[i : i + batch]) if filt is not None else x
        x = torch.round(x.clamp(0, 1) * 255)
        mse = (x - crops[i : i + batch].float()).pow(2).mean(dim=(1, 2, 3))
        out.append(10 * torch.log10(255**2 / mse.clamp_min(1e-10)))
    return torch.cat(out)


@torch.no_grad()
def kodak_effect(net, filt: nn.Module, folder: str, qualities: tuple[float, ...] = HELD_OUT_QUALITIES) -> dict:
    """Real files of each image of ``folder`` at each quality (the shipped encoder), decoded by the
    torch synthesis with and without the filter: mean bpp and RGB PSNR of the uint8 pixels per
    quality, and the BD-rate of the filtered curve against the plain one (the rates are the same)."""
    import bjontegaard
    import numpy as np
    from nicodec import Codec
    from nicodec.training.data import list_images
    from PIL import Image

    codec = Codec()
    points = {q: {"bpp": [], "plain": [], "filtered": []} for q in qualities}
    for path in list_images([folder]):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        h, w = pixels.shape[:2]
        target = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
        for q in qualities:
            data = codec.encode(pixels, quality=q)
            _, y_hat = codec.decode_latents(data)
            x = net.g_s(torch.from_numpy(y_hat))  # padded: the filter sees the padding, as a decoder's would
            filtered = filt(x, torch.tensor([q]))
            for name, picture in (("plain", x[..., :h, :w]), ("filtered", filtered[..., :h, :w])):
                mse = (torch.round(picture.clamp(0, 1) * 255) - target).pow(2).mean()
                points[q][name].append(float(10 * torch.log10(255**2 / mse)))
            points[q]["bpp"].append(8 * len(data) / (h * w))
        print(f"{path}: done", flush=True)
    curve = {name: [float(np.mean(points[q][name])) for q in qualities] for name in ("bpp", "plain", "filtered")}
    bd = bjontegaard.bd_rate(curve["bpp"], curve["plain"], curve["bpp"], curve["filtered"], method="pchip")
    return {"qualities": list(qualities), **curve, "bd_rate_percent": float(bd)}


def crop_qualities(key: dict, crops: torch.Tensor) -> torch.Tensor:
    """The quality of each training crop of a ``decoder_finetune`` cache made before nicodec 0.5.0,
    which keeps its crops and latents but not their qualities: its random draws replayed (its ``_encode_crops``), each crop
    checked against the cache's pixels."""
    import numpy as np
    from nicodec.training.data import load_rgb

    rng = np.random.default_rng(key["seed"])
    side, used = key["crop"], []
    for path in key["train"]:
        image = load_rgb(path, side)
        if image is None:
            continue
        h, w = image.shape[1:]
        for _ in range(key["per_image"]):
            top, left, quality = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), float(rng.uniform(1, 100))
            if not torch.equal(image[:, top : top + side, left : left + side], crops[len(used)]):
                raise ValueError(f"crop {len(used)} of the cache is not the replayed one of {path}")
            used.append(quality)
    if len(used) != len(crops):
        raise ValueError(f"{len(used)} crops replayed, {len(crops)} in the cache")
    return torch.tensor(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--cache", required=True, help="decoder_finetune's --cache of this model's encoder")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--steps", type=int, default=0,
                        help="train this many steps instead, the schedule over them (a busy machine then takes longer)")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--part", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    parser.add_argument("--out", help="also write CHECKPOINT with the trained filter ending its g_s (with_postfilter)")
    parser.add_argument("--weights", help="a filter this program wrote (its .pt): no training, only --kodak and --out")
    parser.add_argument("--kodak", help="also measure the filter on the images of this folder (evaluation only)")
    parser.add_argument("--conditioned", action="store_true", help="give the filter the quality (a 13th input plane)")
    parser.add_argument("--second", action="store_true",
                        help="CHECKPOINT ends in a filter already: train a second one after it (measured only)")
    parser.add_argument("--trained-json", help="with --weights and --out: the --json this program wrote as it trained "
                                               "them, whose figures go into the checkpoint's metrics")
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    net, ckpt = load_model(args.checkpoint)
    net.eval()
    if args.second:
        if not ckpt["model_config"].get("postfilter"):
            raise SystemExit(f"--second: {args.checkpoint}'s g_s ends in no post-filter")
        if args.out or args.weights:
            raise SystemExit("--second measures a second filter only: no --out, no --weights")
    elif ckpt["model_config"].get("postfilter"):  # said before the training, not after
        raise SystemExit(f"{args.checkpoint}'s g_s ends in a post-filter already: give the checkpoint it was added to")
    if args.weights:
        filt = PostFilter(args.channels, args.conditioned)
        filt.load_state_dict(torch.load(args.weights, weights_only=True))
        if args.kodak:
            result = kodak_effect(net, filt.eval(), args.kodak)
            print(json.dumps(result, indent=1))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"args": vars(args), "kodak": result}, f, indent=1)
        if args.out:
            figures = {"weights": args.weights}
            if args.trained_json:
                with open(args.trained_json) as f:
                    trained = json.load(f)
                figures.update({"trained_with": trained["args"],
                                **{k: v for k, v in trained.items() if k not in ("args", "history")}})
            write_checkpoint(args, filt, figures)
        return
    items = torch.load(args.cache, weights_only=True)
    started = time.monotonic()
    if len(items) == 7:  # a cache of nicodec 0.5.0 on keeps each crop's quality
        y_hat, crops, qualities, val_y, val_crops, val_q, key = items
    else:
        y_hat, crops, val_y, val_crops, key = items
        qualities = crop_qualities(json.loads(key), crops)
        val_q = torch.tensor(HELD_OUT_QUALITIES).repeat(len(val_y) // len(HELD_OUT_QUALITIES))
    x_hat = synthesized(net.g_s, y_hat, qualities)
    val_x = synthesized(net.g_s, val_y, val_q)
    print(f"{len(x_hat)} training and {len(val_x)} held-out crops synthesised in {time.monotonic() - started:.0f} s",
          flush=True)
    base = coded_psnr(None, val_x, val_crops, val_q)
    filt = PostFilter(args.channels, args.conditioned)
    print(f"held-out PSNR without the filter {float(base.mean()):.4f} dB; filter: {filt.macs_per_pixel():,.0f} "
          "multiply-adds a pixel", flush=True)

    opt = torch.optim.Adam(filt.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    side, part = x_hat.shape[-1], args.part
    history = []
    start, step, budget = time.monotonic(), 0, args.minutes * 60
    while (step < args.steps) if args.steps else ((elapsed := time.monotonic() - start) < budget):
        step += 1
        progress = (step - 1) / args.steps if args.steps else min(elapsed / budget, 1.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * progress))
        pick = torch.randint(0, len(x_hat), (args.batch,), generator=gen)
        top, left = (int(v) for v in torch.randint(0, side - part + 1, (2,), generator=gen))
        x = x_hat[pick, :, top : top + part, left : left + part].float()
        target = crops[pick, :, top : top + part, left : left + part].float() / 255
        loss = 10 * torch.log10((filt(x, qualities[pick]) - target).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0:
            gain = coded_psnr(filt, val_x, val_crops, val_q) - base
            history.append({"step": step, "seconds": round(time.monotonic() - start), "held_out_gain_db": float(gain.mean())})
            print(f"step {step}: held-out {float(gain.mean()):+.4f} dB at {history[-1]['seconds']} s", flush=True)
    gain = coded_psnr(filt, val_x, val_crops, val_q) - base
    per_quality = gain.reshape(-1, len(HELD_OUT_QUALITIES)).mean(0).tolist()
    print(f"after {step} steps: held-out {float(base.mean()):.4f} -> {float((base + gain).mean()):.4f} dB "
          f"({float(gain.mean()):+.4f}); per quality {', '.join(f'{v:+.3f}' for v in per_quality)}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "steps": step, "macs_per_pixel": filt.macs_per_pixel(),
                       "held_out_psnr_before": float(base.mean()), "held_out_gain_db": float(gain.mean()),
                       "held_out_qualities": list(HELD_OUT_QUALITIES), "per_quality_gain_db": per_quality,
                       "history": history}, f, indent=1)
        torch.save(filt.state_dict(), args.json.removesuffix(".json") + ".pt")
    if args.out:
        write_checkpoint(args, filt, {
            "steps": step, "training_crops": len(x_hat), "held_out_psnr_before": float(base.mean()),
            "held_out_gain_db": float(gain.mean()), "held_out_gain_db_per_quality": [round(v, 4) for v in per_quality]})


def write_checkpoint(args, filt: nn.Module, figures: dict) -> None:
    """``args.out``: ``args.checkpoint`` with ``filt`` ending its g_s, ``figures`` in its metrics."""
    from nicodec.training.checkpoint import save_atomically, with_postfilter

    ckpt = torch.load(args.checkpoint, weights_only=True)
    new = with_postfilter(ckpt, args.channels, filt.state_dict(), quality_plane=args.conditioned)
    new["metrics"] = {**ckpt.get("metrics", {}), "postfilter": {
        "program": "training/experiments/postfilter_estimate.py", "args": vars(args), **figures}}
    save_atomically(new, args.out)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
