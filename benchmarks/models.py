"""Two or more nicodec models side by side: the same images, the same qualities, one run.

    python benchmarks/models.py REFERENCE_DIR MODEL_DIR [MODEL_DIR ...]
        [--images ../shared/data/kodak] [--limit N] [--qualities 1 15 ...] [--json PATH]

For comparing a model with the one it is to replace (a retrained synthesis, a tuned
encoder): each model codes every image at each quality into real files (the
default encoder, rate-distortion rounding included), decodes them, and the table
gives the mean bpp and PSNR per quality, the BD-rate (PSNR over RGB) against the
first model and the encoding-time ratio to it (CPU provider, one model after the
other). Variable-rate models only: each one's qualities make its curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nicodec

from common import check_encodes, percent, publish
from rd import NICODEC_QUALITIES, SHARED
from rdo import compare, read_images, span_text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="model folders, the reference first")
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "kodak")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--qualities", type=float, nargs="+", default=NICODEC_QUALITIES)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("give at least two model folders, the reference first")
    try:
        codecs = [nicodec.Codec(m, providers="cpu", threads=args.threads) for m in args.models]
    except nicodec.NicodecError as exc:
        parser.error(str(exc))
    for codec in codecs:
        check_encodes(parser, codec)
    single = [c.model_id for c in codecs if not c.model.variable_rate]
    if single:
        parser.error(f"single-rate models have no curve of their own: {', '.join(single)}")
    images = read_images(parser, args)
    entries = [({"model": c.model_id, "model_hash": c.model.manifest["model_hash"], "folder": str(m)}, c.model_id, c)
               for m, c in zip(args.models, codecs)]
    results = compare(entries, images, args.qualities)
    report = {"images": f"{args.images.name} ({len(images)})", "threads": args.threads, "qualities": args.qualities,
              "results": results}
    rows = [f"| model | BD-rate vs {results[0]['model']} | encode time ratio | "
            "bpp / PSNR at the lowest, middle and highest quality |", "|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['model']} | {percent(r['bd_rate_percent'])} | {r['encode_time_ratio']:.3f} | "
                    f"{span_text(r['points'])} |")
    table = f"nicodec models on {report['images']}, PSNR over RGB\n\n" + "\n".join(rows)
    publish(report, table, args.json)
    return report


if __name__ == "__main__":
    main()
