"""Does a synthesis fine-tuned on two generations keep its picture when it is coded again?

    python training/experiments/generation_finetune.py [--checkpoint CHECKPOINT] [--minutes 25]
        [--weight 1.0] [--init G_S] [--out /tmp/genft/g_s.pt] [--data '../shared/data/train/shard-[1-4]']
    python training/experiments/generation_finetune.py --evaluate [G_S]

(the checkpoint defaults to the one in training/checkpoints, the shipped model's; training/LOG.md
has the run of 2026-12-06).

A one-off estimate, not a training tool (benchmarks/generations.py measures the codec: the
shipped model's picture collapses when it is coded again and again at high qualities). The
encoder, the hyperprior and the gains are frozen; only g_s (the post-filter included) learns,
so every file keeps its symbols and the question is the decoder's alone. Each step codes a
batch of training crops at random level positions (rounded as the float twin rounds, straight
through), decodes them (generation 1), rounds that picture to 8 bits, codes and decodes it
again (generation 2, the gradient flowing through the frozen encoder into generation 1), and
minimises the mean over crops of 10 log10 MSE of generation 1 against the crop plus
``--weight`` times that of generation 2 against the crop. ``--weight 0`` is the control: the
same fine-tune without the second generation (the same batches and levels; give both the same
``--steps``, since a step of the control takes a third of the time). Writes g_s's weights;
``--evaluate G_S`` runs ``--generations`` generations of a few Kodak images through the torch
model with the synthesis written (``--evaluate`` alone: the shipped one), at qualities 56 and
90, and prints each generation's PSNR against the original.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nicodec.model import quality_position
from nicodec.training.data import CropSampler, list_images, load_images
from nicodec.training.model import ste_round
from nicodec.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[2]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def generation(model, x: torch.Tensor, position: torch.Tensor, g_s=None) -> torch.Tensor:
    """One coding and decoding of pictures ``x`` in [0, 1] at level ``position`` (B,), the
    symbols rounded straight through; the gradient reaches ``x`` through the frozen encoder."""
    g_s = model.g_s if g_s is None else g_s
    gain, inverse = model.gains_at(position)
    y = model.g_a(x) * gain[:, :, None, None]
    with torch.no_grad():
        z_hat = torch.round(model.h_a(y))
        means, _ = model.entropy_parameters(z_hat)
    y_hat = (ste_round(y - means) + means) * inverse[:, :, None, None]
    return g_s(y_hat, model.level_quality(position))


def eight_bits(x: torch.Tensor) -> torch.Tensor:
    """The picture as a PNG keeps it: clipped and rounded to 1/255, straight through."""
    x = x.clamp(0, 1)
    return x + (torch.round(x * 255) / 255 - x).detach()


def shipped_checkpoint(parser: argparse.ArgumentParser) -> Path:
    """The one checkpoint in training/checkpoints (the shipped model's), or the parser's error."""
    kept = sorted((ROOT / "training" / "checkpoints").glob("*.pt"))
    if len(kept) != 1:
        parser.error(f"training/checkpoints holds {len(kept)} checkpoints; name one with --checkpoint")
    return kept[0]


def log_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(((a - b) ** 2).mean(dim=(1, 2, 3)) + 1e-10).mean()


@torch.no_grad()
def evaluate(model, g_s, names: list[str], generations: int) -> dict:
    levels = model.config.levels
    table = {}
    for quality in (56.0, 90.0):
        position = torch.tensor([quality_position(quality, levels)])
        for name in names:
            x0 = torch.from_numpy(np.asarray(Image.open(KODAK / name).convert("RGB"))).permute(2, 0, 1)[None] / 255
            x, row = x0, []
            for _ in range(generations):
                x = eight_bits(generation(model, x, position, g_s))
                row.append(round(float(10 * torch.log10(1 / ((x - x0) ** 2).mean())), 2))
            table[f"{name} q{quality:g}"] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train" / "shard-[1-4]"))
    parser.add_argument("--images", type=int, default=240, help="training photos loaded")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: on time alone)")
    parser.add_argument("--weight", type=float, default=1.0, help="of generation 2's term (0: the control)")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/genft/g_s.pt"))
    parser.add_argument("--init", type=Path, help="g_s weights to start from (a run before's --out)")
    parser.add_argument("--evaluate", type=Path, nargs="?", const=None, default=False,
                        help="evaluate the weights written (or the shipped synthesis alone), do not train")
    parser.add_argument("--kodak", default="kodim02.png,kodim03.png,kodim05.png")
    parser.add_argument("--generations", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.checkpoint is None:
        args.checkpoint = shipped_checkpoint(parser)
    model, _ = load_model(args.checkpoint)
    model.eval().requires_grad_(False)
    if args.evaluate is not False:
        if args.evaluate is not None:
            model.g_s.load_state_dict(torch.load(args.evaluate, weights_only=True))
        for key, row in evaluate(model, model.g_s, args.kodak.split(","), args.generations).items():
            print(key, " ".join(f"{p:.2f}" for p in row), flush=True)
        return
    paths = list_images([args.data])
    rng = np.random.default_rng(0)
    images, _, _ = load_images([paths[i] for i in rng.permutation(len(paths))[:args.images]], args.crop)
    crops = CropSampler(images, args.crop, torch.device("cpu"))
    if args.init:
        model.g_s.load_state_dict(torch.load(args.init, weights_only=True))
    model.g_s.requires_grad_(True).train()
    optimizer = torch.optim.Adam(model.g_s.parameters(), lr=args.lr)
    levels = model.config.levels
    start, step, logged = time.monotonic(), 0, []
    while time.monotonic() - start < 60 * args.minutes and not (args.steps and step >= args.steps):
        x = crops.batch(args.batch)
        position = torch.rand(args.batch) * (levels - 1)
        first = generation(model, x, position)
        loss = first_term = log_mse(first, x)
        if args.weight:
            second = generation(model, eight_bits(first), position)
            second_term = log_mse(second, x)
            loss = loss + args.weight * second_term
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        logged.append((first_term.item(), second_term.item() if args.weight else 0.0))
        if step % 50 == 0:
            recent = np.mean(logged[-50:], axis=0)
            print(f"step {step} {time.monotonic() - start:.0f}s gen1 {-recent[0]:.3f} dB gen2 {-recent[1]:.3f} dB",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.g_s.state_dict(), args.out)
    print(f"{step} steps; wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
