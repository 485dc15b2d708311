"""What the restoration filter gains: the default encoder beside ``Codec(restoration=True)``, side by side.

    python benchmarks/restoration.py [--images ../shared/data/kodak] [--limit N] [--qualities 1 15 ...]
        [--classic avif444 jxl webp] [--json benchmarks/results/restoration.json]

``Codec(restoration=True)`` (``nicodec encode --restoration``) also decodes each image, fits a
linear filter that brings the decoded picture closer to the source, and writes it into the
file (FORMAT.md's ``REST`` section) where it lowers the cost the model was trained for; a
decoder applies it (``nicodec.restoration``). For the default encoder (the reference) and the
restoring one, this program codes every image at rd.py's qualities into real files, decodes
them, and reports the mean bpp and PSNR per quality, the BD-rate (PSNR over RGB) against the
default, and the total encoding and decoding times as ratios to the default's (the same run,
CPU provider; a decode applies the filter where a file has one).
On the same images it sweeps the classic codecs named by ``--classic`` (by default AVIF 4:4:4,
JPEG XL and WebP, at rd.py's settings) and gives both nicodec curves' BD-rates against each.
"""

from __future__ import annotations

import argparse

from common import add_image_arguments, open_codec, percent, publish
from rd import NICODEC_QUALITIES, QUALITIES, SHARED
from rdo import compare, read_images, span_text
from refine import CLASSIC, LABELS, against_classic


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, SHARED / "data" / "kodak")
    parser.add_argument("--qualities", type=float, nargs="+", default=NICODEC_QUALITIES)
    parser.add_argument("--classic", nargs="*", default=CLASSIC, choices=sorted(QUALITIES),
                        help="classic codecs to sweep on the same images (default: %(default)s; none: no codec)")
    args = parser.parse_args(argv)
    entries = [({"restoration": on}, f"restoration {'on' if on else 'off'}",
                open_codec(parser, args.model, threads=args.threads, restoration=on)) for on in (False, True)]
    images = read_images(parser, args)
    results = compare(entries, images, args.qualities)
    classic = against_classic(results, args.classic, images)
    report = {"model": entries[0][2].model.model_id, "images": f"{args.images.name} ({len(images)})",
              "threads": args.threads, "qualities": args.qualities, "results": results,
              "classic": {name: [{k: p[k] for k in ("setting", "bpp", "psnr")} for p in curve]
                          for name, curve in classic.items()}}
    rows = ["| encoder | BD-rate vs the default encoder | " + "".join(f"vs {LABELS[name]} | " for name in classic)
            + "encode time ratio | decode time ratio | bpp / PSNR at the lowest, middle and highest quality |",
            "|---|---|" + "---|" * len(classic) + "---|---|---|"]
    for r in results:
        versus = "".join(f"{percent(v)} | " for v in r["bd_rate_vs_percent"].values())
        rows.append(f"| {'restoration filter' if r['restoration'] else 'default'} | {percent(r['bd_rate_percent'])} | "
                    f"{versus}{r['encode_time_ratio']:.1f} | {r['decode_time_ratio']:.2f} | {span_text(r['points'])} |")
    table = f"restoration filter, {report['model']}, {report['images']}, PSNR over RGB\n\n" + "\n".join(rows)
    publish(report, table, args.json)
    return report


if __name__ == "__main__":
    main()
