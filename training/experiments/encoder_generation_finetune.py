"""Does an encoder fine-tuned on two generations keep the picture when it is coded again?

    python training/experiments/encoder_generation_finetune.py --out /tmp/encgen/w1.pt [--weight 1]
        [--minutes 45] [--threads 1] [--checkpoint CHECKPOINT]
    python training/experiments/encoder_generation_finetune.py --evaluate [/tmp/encgen/w1.pt]

A one-off estimate, not a training tool. ``generation_finetune.py`` (training/LOG.md,
2026-12-06) fine-tuned the synthesis alone on two generations, the encoder frozen, and found
a ceiling: 0.9 to 1.6 dB more at round 10 of quality 90, far from AVIF's stability. Here the
other half learns: ``g_a`` and ``h_a`` alone, on the hard-rounded objective of
``encoder_hard_finetune.py`` (rate of the rounded symbols under the model's own probabilities
plus lambda times the MSE, at a quality drawn from 1 to 100), plus ``--weight`` times lambda
times the MSE against the crop of the second generation (the first's picture rounded to 8
bits, coded and decoded again by the same encoder and the frozen synthesis). The decoder, the
entropy model and the gains stay bit for bit the shipped ones, so such an encoder would ship
without a new format or decoder: every file made before decodes as it did.

Reports held-out crops (the last 8 photos of shard 5) per quality: bpp and PSNR of the first
generation, PSNR of the second, before and after. Writes the state of g_a and h_a.
``--evaluate [WEIGHTS]`` runs ``--generations`` rounds of a few Kodak images through the torch
model (the shipped encoder, or the one written) at qualities 56 and 90 and prints each round's
PSNR against the original and the first round's bpp.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder_hard_finetune import HELD_OUT_QUALITIES, hard_objective, level_and_lambda  # noqa: E402
from generation_finetune import eight_bits, shipped_checkpoint  # noqa: E402

from nicodec.training.data import CropSampler, center_crops, list_images, load_images, load_rgb  # noqa: E402
from nicodec.training.checkpoint import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
TRAINED = ("g_a.", "h_a.")


def two_generations(model, x: torch.Tensor, quality: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The first generation's objective (:func:`hard_objective`) and the second's MSE against ``x``."""
    first = hard_objective(model, x, quality)
    second = hard_objective(model, eight_bits(first["x_hat"]), quality)
    return first, (second["x_hat"] - x).pow(2).mean(dim=(1, 2, 3))


def psnr(mse: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


@torch.no_grad()
def held_out(model, crops: torch.Tensor) -> list[dict]:
    rows = []
    for quality in HELD_OUT_QUALITIES:
        first, mse2 = two_generations(model, crops, torch.full((len(crops),), quality))
        rows.append({"quality": quality, "bpp": float(first["bpp"].mean()), "psnr1": psnr(first["mse"]),
                     "psnr2": psnr(mse2), "loss": float(first["loss"].mean())})
    return rows


def show(rows: list[dict], title: str) -> None:
    print(title, flush=True)
    for r in rows:
        print(f"  q{r['quality']:g}: {r['bpp']:.4f} bpp, gen1 {r['psnr1']:.3f} dB, gen2 {r['psnr2']:.3f} dB, "
              f"loss {r['loss']:.5f}", flush=True)


@torch.no_grad()
def evaluate(model, names: list[str], generations: int) -> None:
    for quality in (56.0, 90.0):
        q = torch.tensor([quality])
        for name in names:
            x0 = torch.from_numpy(np.asarray(Image.open(SHARED / "kodak" / name).convert("RGB"))).permute(2, 0, 1)[None] / 255
            x, row, bpp = x0, [], None
            for _ in range(generations):
                out = hard_objective(model, x, q)
                bpp = float(out["bpp"]) if bpp is None else bpp
                x = eight_bits(out["x_hat"])
                row.append(psnr(((x - x0) ** 2).mean(dim=(1, 2, 3))))
            print(f"{name} q{quality:g} bpp {bpp:.4f}: " + " ".join(f"{p:.2f}" for p in row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--data", default=str(SHARED / "train" / "shard-[1-4]"))
    parser.add_argument("--val-data", default=str(SHARED / "train" / "shard-5"))
    parser.add_argument("--images", type=int, default=240, help="training photos loaded")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--val-crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: on time alone)")
    parser.add_argument("--weight", type=float, default=1.0, help="of generation 2's term (0: the control)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/encgen/encoder.pt"))
    parser.add_argument("--evaluate", type=Path, nargs="?", const=None, default=False,
                        help="evaluate the weights written (or the shipped encoder), do not train")
    parser.add_argument("--kodak", default="kodim02.png,kodim03.png,kodim05.png")
    parser.add_argument("--generations", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.checkpoint is None:
        args.checkpoint = shipped_checkpoint(parser)
    model, _ = load_model(args.checkpoint)
    model.eval().requires_grad_(False)
    if args.evaluate is not False:
        if args.evaluate is not None:
            model.load_state_dict(torch.load(args.evaluate, weights_only=True), strict=False)
        evaluate(model, args.kodak.split(","), args.generations)
        return
    rng = np.random.default_rng(0)
    paths = list_images([args.data])
    images, _, _ = load_images([paths[i] for i in rng.permutation(len(paths))[:args.images]], args.crop)
    crops = CropSampler(images, args.crop, torch.device("cpu"))
    val_images = [im for im in (load_rgb(p, args.val_crop) for p in list_images([args.val_data])[-8:]) if im is not None]
    val = center_crops(val_images, args.val_crop)
    before = held_out(model, val)
    show(before, f"before ({len(val)} held-out crops of {args.val_crop})")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(TRAINED))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    generator = torch.Generator().manual_seed(0)
    start, step, logged = time.monotonic(), 0, []
    budget = 60 * args.minutes
    while (elapsed := time.monotonic() - start) < budget and not (args.steps and step >= args.steps):
        step += 1
        progress = elapsed / budget if not args.steps else step / args.steps
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        x = crops.batch(args.batch)
        quality = 1 + 99 * torch.rand(args.batch, generator=generator)
        if args.weight:
            first, mse2 = two_generations(model, x, quality)
            _, lmbda = level_and_lambda(model, quality)
            second_term = (lmbda * 255**2 * mse2).mean()
        else:
            first, second_term = hard_objective(model, x, quality), torch.zeros(())
        loss = first["loss"].mean() + args.weight * second_term
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        logged.append((first["loss"].mean().item(), second_term.item()))
        if step % args.report_every == 0:
            recent = np.mean(logged[-args.report_every:], axis=0)
            print(f"step {step} {time.monotonic() - start:.0f}s first {recent[0]:.4f} second {recent[1]:.4f}", flush=True)
    model.eval()
    after = held_out(model, val)
    show(after, f"after {step} steps, {(time.monotonic() - start) / 60:.1f} min")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in model.state_dict().items() if k.startswith(TRAINED)}, args.out)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
