"""What refining the latent gains: the default encoder beside ``Codec(refine=N)``, side by side.

    python benchmarks/refine.py [--images ../shared/data/kodak] [--limit N] [--steps 20 60]
        [--rdo SLOPE] [--qualities 1 15 ...] [--json results/refine.json]

``Codec(refine=N)`` takes N gradient steps on the latent before coding it (see
``nicodec.refine``); the decoder is the same. For the default encoder (the reference)
and each step count, this program codes every image at rd.py's qualities into real
files, decodes them, and reports the mean bpp and PSNR per quality, the BD-rate (PSNR
over RGB) against the default, and the total encoding time as a ratio to the default's
(measured in the same run, on the CPU provider). Refinement already weighs the rate, so
the refined codecs round to the nearest integer unless ``--rdo`` gives a slope.
A step costs about 1.2 decodes of the image: the whole of Kodak at 60 steps takes
about 2 hours on 2 cores, so ``--limit`` picks the first N images.
"""

from __future__ import annotations

import argparse

import nicodec

from common import add_image_arguments, publish
from rd import NICODEC_QUALITIES, SHARED
from rdo import compare, read_images


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, SHARED / "data" / "kodak")
    parser.add_argument("--steps", type=int, nargs="+", default=[60], help="refinement step counts to compare (default: 60)")
    parser.add_argument("--rdo", type=float, default=0.0,
                        help="the refined codecs' rounding slope (default 0: nearest integer)")
    parser.add_argument("--qualities", type=float, nargs="+", default=NICODEC_QUALITIES)
    args = parser.parse_args(argv)
    images = read_images(parser, args)
    entries = []
    for steps in [0] + [n for n in args.steps if n > 0]:
        options = {"refine": steps, "rdo": args.rdo} if steps else {}
        codec = nicodec.Codec(args.model, providers="cpu", threads=args.threads, **options)
        entries.append(({"steps": steps, "rdo_slope": codec.rdo_slope}, f"refine {steps}", codec))
    results = compare(entries, images, args.qualities)
    report = {"model": codec.model_id, "images": f"{args.images.name} ({len(images)})", "threads": args.threads,
              "qualities": args.qualities, "results": results}
    rows = ["| refinement steps | rounding slope | BD-rate vs the default encoder | encode time ratio | "
            "bpp / PSNR at the lowest, middle and highest quality |", "|---|---|---|---|---|"]
    for r in results:
        pts = r["points"]
        picks = [pts[0], pts[len(pts) // 2], pts[-1]]
        rows.append(f"| {r['steps']}{' (default)' if r['steps'] == 0 else ''} | {r['rdo_slope']:g} | "
                    f"{r['bd_rate_percent']:+.2f}% | {r['encode_time_ratio']:.1f} | "
                    + ", ".join(f"{p['bpp']:.4f} / {p['psnr']:.2f}" for p in picks) + " |")
    table = f"latent refinement, {report['model']}, {report['images']}, PSNR over RGB\n\n" + "\n".join(rows)
    publish(report, table, args.json)
    return report


if __name__ == "__main__":
    main()
