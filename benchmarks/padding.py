"""What padding to 16 pixels instead of 64 saves on images whose sides are not multiples of 64, side by side.

    python benchmarks/padding.py [--images ../shared/data/kodak] [--sizes 3] [--json benchmarks/results/padding.json]

About 14 minutes for Kodak on 2 cores with the default 3 sizes an image.

The networks see an image padded at its right and bottom edges (the last row and column
repeated). nicodec before 0.7.0 padded each side to a multiple of 64, the hyper-latent's
stride, so up to three rows and columns of the latent (stride 16) coded padding alone; since
0.7.0 it pads to a multiple of 16 where that differs (``FLAG_FINE_PADDING``, FORMAT.md). This
program codes crops of each image (portrait ones turned to landscape) from its top-left
corner, of sizes drawn uniformly from the last 128 rows and columns (641 to 768 wide and 385 to
512 high for Kodak: any remainder modulo 64 equally likely), both ways with the same codec
at each quality, and reports the bits a pixel, the PSNR, the BD-rate of the new padding
against the old over the pooled curves, and the time of an encode and a decode.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from common import add_image_arguments, image_paths, open_codec, psnr, publish, read_rgb, whole_number
from rd import NICODEC_QUALITIES, bd_rate

HERE = Path(__file__).resolve().parent
SPAN = 128
"""Crop sides are drawn from the image's last ``SPAN`` rows and columns."""
WAYS = {"fine": True, "coarse": False}
"""Each coding: ``Codec._fine_padding``'s value (16 where it differs, and 64 as before 0.7.0)."""


def crop_sizes(height: int, width: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` (height, width) pairs, each side uniform over its last ``SPAN`` values (at least 1)."""
    return [(int(rng.integers(max(1, height - SPAN + 1), height + 1)),
             int(rng.integers(max(1, width - SPAN + 1), width + 1))) for _ in range(count)]


def code(codec, fine: bool, image: np.ndarray, quality: float) -> dict:
    """One coding of ``image``, padded the ``fine`` way or not: its bytes, PSNR, times and flags."""
    codec._fine_padding = fine
    try:
        start = time.perf_counter()
        data = codec.encode(image, quality=quality)
        encoded = time.perf_counter()
        decoded = codec.decode(data, as_array=True)
        finished = time.perf_counter()
    finally:
        del codec._fine_padding  # back to the class's default
    return {"bytes": len(data), "psnr": psnr(decoded, image), "encode_s": encoded - start,
            "decode_s": finished - encoded, "flags": data[5]}


def summarise(rows: list[dict], qualities: list[float]) -> dict:
    """The pooled curve of each way (mean bpp and PSNR over the crops at each quality), the
    BD-rate of fine against coarse, the mean byte ratio at each quality, and the time ratios."""
    curves = {way: [{"quality": q,
                     "bpp": statistics.mean(8 * r[way][i]["bytes"] / r["pixels"] for r in rows),
                     "psnr": statistics.mean(r[way][i]["psnr"] for r in rows)}
                    for i, q in enumerate(qualities)] for way in WAYS}
    ratios = [statistics.mean(r["fine"][i]["bytes"] / r["coarse"][i]["bytes"] for r in rows)
              for i in range(len(qualities))]
    times = {kind: sum(c[kind] for r in rows for c in r["fine"]) / sum(c[kind] for r in rows for c in r["coarse"])
             for kind in ("encode_s", "decode_s")}
    same = [r["size"] for r in rows if all(f["bytes"] == c["bytes"] and f["psnr"] == c["psnr"]
                                           for f, c in zip(r["fine"], r["coarse"]))]
    return {"crops": len(rows), "curves": curves, "bytes_ratio": ratios,
            "bd_rate_percent": bd_rate(curves["fine"], curves["coarse"]),
            "time_ratio": times, "unchanged": same}


def table(summary: dict) -> str:
    lines = ["| quality | bpp, padded to 64 | bpp, to 16 | bytes, 16 against 64 | PSNR to 64 | PSNR to 16 |",
             "|---|---|---|---|---|---|"]
    for coarse, fine, ratio in zip(summary["curves"]["coarse"], summary["curves"]["fine"], summary["bytes_ratio"]):
        lines.append(f"| {coarse['quality']:g} | {coarse['bpp']:.4f} | {fine['bpp']:.4f} | {100 * (ratio - 1):+.2f}% "
                     f"| {coarse['psnr']:.3f} | {fine['psnr']:.3f} |")
    bd = summary["bd_rate_percent"]
    lines.append(f"\n{summary['crops']} crops; BD-rate of the padding to 16 against 64: "
                 + ("n/a" if bd is None else f"{bd:+.2f}%")
                 + f"; time, 16 against 64: encode {summary['time_ratio']['encode_s']:.3f}x, "
                 f"decode {summary['time_ratio']['decode_s']:.3f}x; "
                 f"{len(summary['unchanged'])} crops padded alike either way (each side within 16 of the next "
                 "multiple of 64 or on it) coded the same both ways.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, HERE.parent.parent / "shared" / "data" / "kodak")
    parser.add_argument("--sizes", type=whole_number(1), default=3, help="crop sizes per image (default 3)")
    parser.add_argument("--qualities", type=float, nargs="+", default=NICODEC_QUALITIES,
                        help="nicodec's qualities (default: rd.py's 8)")
    parser.add_argument("--seed", type=int, default=0, help="the crop sizes' random seed (default 0)")
    args = parser.parse_args(argv)
    codec = open_codec(parser, args.model, threads=args.threads)
    if not codec.model.variable_rate:
        parser.error("this program sweeps qualities: give a variable-rate model")
    codec.prepare()  # the graphs load now, not inside the first coding's time
    qualities = [codec._encoder_gain(q)[0] for q in args.qualities]
    rng = np.random.default_rng(args.seed)
    paths = image_paths(args.images, args.limit)
    if not paths:
        parser.error(f"no images in {args.images}")
    rows = []
    for path in paths:
        rgb = read_rgb(path)
        if rgb.shape[0] > rgb.shape[1]:
            rgb = np.ascontiguousarray(rgb.transpose(1, 0, 2))
        for height, width in crop_sizes(*rgb.shape[:2], args.sizes, rng):
            crop = np.ascontiguousarray(rgb[:height, :width])
            row = {"image": path.name, "size": f"{width}x{height}", "pixels": width * height}
            # The two ways in turn, the first alternating from crop to crop, so that neither
            # has the machine's warmer state to itself.
            ways = list(WAYS.items()) if len(rows) % 2 == 0 else list(WAYS.items())[::-1]
            for way, fine in ways:
                row[way] = [code(codec, fine, crop, q) for q in qualities]
            rows.append(row)
            ratio = statistics.mean(f["bytes"] / c["bytes"] for f, c in zip(row["fine"], row["coarse"]))
            print(f"{path.name} {row['size']}: bytes {100 * (ratio - 1):+.2f}% (mean over the qualities)", flush=True)
    summary = summarise(rows, qualities)
    report = {"qualities": qualities, "span": SPAN, "seed": args.seed, "summary": summary, "crops": rows}
    publish(report, table(summary), args.json)
    return report


if __name__ == "__main__":
    main()
