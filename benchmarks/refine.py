"""What refining the latent gains: the default encoder beside ``Codec(refine=N)``, side by side.

    python benchmarks/refine.py [--images ../shared/data/kodak] [--limit N] [--steps 20 60]
        [--rdo SLOPE] [--restoration] [--qualities 1 15 ...] [--classic avif444 jxl webp]
        [--json benchmarks/results/refine.json]

``Codec(refine=N)`` takes N gradient steps on the latent before coding it (see
``nicodec.refine``); the decoder is the same. For the default encoder (the reference)
and each step count, this program codes every image at rd.py's qualities into real
files, decodes them, and reports the mean bpp and PSNR per quality, the BD-rate (PSNR
over RGB) against the default, and the total encoding time as a ratio to the default's
(measured in the same run, on the CPU provider). The refined codecs are built as
``nicodec encode --refine N`` builds them: the refined latent rounded to the nearest integer
(the refinement already weighs the rate), and kept only where it costs no more than the
default encoder's file (``nicodec.Codec``); ``--rdo SLOPE`` rounds the refined latent, and the
fallback coded beside it, with that slope instead (the reference, step count 0, keeps the default).
``--restoration`` measures every step count, 0 included, a second time with the restoration
filter (``nicodec encode --refine N --restoration``: the filter fitted to the picture the kept
latent decodes to), still against the default encoder without it.

On the same images, in the same run, it also sweeps the classic codecs named by
``--classic`` (by default AVIF 4:4:4, JPEG XL and WebP, those Pillow can write here, at
rd.py's settings) and gives every nicodec curve's BD-rate against each, so that a refined
encoder can be set beside the codecs the default is measured against on all of Kodak.
A step costs about 1.5 to 2 decodes of the image: the whole of Kodak at 60 steps takes
about 2 hours on 2 cores (35 s an encode in results/refine.json, 8 qualities an image), so ``--limit`` picks the first N images.
"""

from __future__ import annotations

import argparse

from common import add_image_arguments, open_codec, percent, publish
from rd import NICODEC_QUALITIES, QUALITIES, SHARED, available, bd_rate, classic_point
from rdo import compare, read_images, span_text

CLASSIC = ["avif444", "jxl", "webp"]
LABELS = {"avif444": "AVIF 4:4:4", "avif420": "AVIF 4:2:0", "jxl": "JPEG XL", "webp": "WebP", "jpeg444": "JPEG 4:4:4",
          "jpeg444opt": "JPEG 4:4:4 (optimised Huffman)", "jpeg420": "JPEG 4:2:0"}


def against_classic(results: list[dict], names: list[str], images: list) -> dict:
    """Sweep the classic codecs ``names`` on ``images`` at rd.py's settings (those Pillow can
    write here) and give each nicodec result its BD-rates against them
    (``bd_rate_vs_percent``); returns the codecs' curves."""
    classic = {}
    for name in names:
        if available(name):
            classic[name] = [classic_point(name, q, images) for q in QUALITIES[name]]
        else:
            print(f"{name}: not measured (Pillow cannot write it here)", flush=True)
    for result in results:
        result["bd_rate_vs_percent"] = {name: bd_rate(result["points"], curve) for name, curve in classic.items()}
    return classic


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, SHARED / "data" / "kodak")
    parser.add_argument("--steps", type=int, nargs="+", default=[60], help="refinement step counts to compare (default: 60)")
    parser.add_argument("--rdo", type=float, default=None,
                        help="the refined codecs' rounding slope (default: the codec's own choice, as the CLI's)")
    parser.add_argument("--qualities", type=float, nargs="+", default=NICODEC_QUALITIES)
    parser.add_argument("--restoration", action="store_true",
                        help="also measure each step count with the restoration filter")
    parser.add_argument("--classic", nargs="*", default=CLASSIC, choices=sorted(QUALITIES),
                        help="classic codecs to sweep on the same images (default: %(default)s; none: no codec)")
    args = parser.parse_args(argv)
    entries = []
    for restoration in [False, True] if args.restoration else [False]:
        for steps in [0] + [n for n in args.steps if n > 0]:
            options = {"refine": steps} if steps else {}
            if steps and args.rdo is not None:
                options["rdo"] = args.rdo
            codec = open_codec(parser, args.model, threads=args.threads, restoration=restoration, **options)
            entries.append(({"steps": steps, "rdo_slope": codec.rdo_slope, "restoration": restoration},
                            f"refine {steps}{' with restoration' if restoration else ''}", codec))
    images = read_images(parser, args)
    results = compare(entries, images, args.qualities)
    classic = against_classic(results, args.classic, images)
    report = {"model": codec.model_id, "images": f"{args.images.name} ({len(images)})", "threads": args.threads,
              "qualities": args.qualities, "results": results,
              "classic": {name: [{k: p[k] for k in ("setting", "bpp", "psnr")} for p in curve]
                          for name, curve in classic.items()}}
    rows = ["| refinement steps | restoration filter | rounding slope | BD-rate vs the default encoder | "
            + "".join(f"vs {LABELS[name]} | " for name in classic)
            + "encode time ratio | bpp / PSNR at the lowest, middle and highest quality |",
            "|---|---|---|---|" + "---|" * len(classic) + "---|---|"]
    for r in results:
        versus = "".join(f"{percent(v)} | " for v in r["bd_rate_vs_percent"].values())
        default = r["steps"] == 0 and not r["restoration"]
        rows.append(f"| {r['steps']}{' (default)' if default else ''} | {'on' if r['restoration'] else 'off'} | "
                    f"{r['rdo_slope']:g} | "
                    f"{percent(r['bd_rate_percent'])} | {versus}{r['encode_time_ratio']:.1f} | {span_text(r['points'])} |")
    table = f"latent refinement, {report['model']}, {report['images']}, PSNR over RGB\n\n" + "\n".join(rows)
    publish(report, table, args.json)
    return report


if __name__ == "__main__":
    main()
