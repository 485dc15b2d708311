"""What rate-distortion optimised rounding gains: the same model with and without it, side by side.

    python benchmarks/rdo.py [--images ../shared/data/kodak] [--limit N] [--slopes 0.01 0.02 0.03]
        [--qualities 1 15 ...] [--json benchmarks/results/rdo.json]

``Codec(rdo=...)`` chooses how the encoder turns the latent into symbols (see
``nicodec.quantize``): plain rounding, as the networks were trained, or a step toward
zero wherever the bits saved times the slope exceed the squared error added. The
decoder is the same for both. For each slope (0 is plain rounding, the reference) this
program codes every image at rd.py's qualities into real files, decodes them, and
reports the mean bpp and PSNR per quality, the BD-rate (PSNR over RGB) against plain
rounding, and the total encoding time of each setting as a ratio to plain rounding's
(measured in the same run, one after the other, on the CPU provider).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nicodec
from nicodec.quantize import RDO_SLOPE

from common import add_image_arguments, image_paths, percent, publish, psnr
from common import open_codec, read_rgb
from rd import NICODEC_QUALITIES, SHARED, bd_rate, bd_rate_unavailable


def sweep(codec, images: list[np.ndarray], qualities: list[float]) -> tuple[list[dict], float, float]:
    """Mean bpp and PSNR of ``codec`` at each quality, and the seconds spent encoding and decoding."""
    points, encoding, decoding = [], 0.0, 0.0
    for quality in qualities:
        bpp, db = [], []
        for image in images:
            start = time.perf_counter()
            data = codec.encode(image, quality=quality)
            encoding += time.perf_counter() - start
            bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
            start = time.perf_counter()
            decoded = codec.decode(data, as_array=True)
            decoding += time.perf_counter() - start
            db.append(psnr(decoded, image))
        points.append({"quality": quality, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(db))})
    return points, encoding, decoding


def span_text(points: list[dict]) -> str:
    """``bpp / PSNR`` at the lowest, middle and highest quality of a curve, for a table cell."""
    picks = [points[0], points[len(points) // 2], points[-1]]
    return ", ".join(f"{p['bpp']:.4f} / {p['psnr']:.2f}" for p in picks)


def read_images(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[np.ndarray]:
    """The RGB pixels of ``--images`` (the first ``--limit``), or a usage error if there are none.

    Also checked here, before the sweeps that would otherwise end in them: the BD-rates'
    package (one line: :func:`rd.bd_rate_unavailable`) and every image (:func:`common.read_rgb`).
    """
    no_bd_rate = bd_rate_unavailable()
    if no_bd_rate:
        raise SystemExit(no_bd_rate)
    paths = image_paths(args.images, args.limit)
    if not paths:
        parser.error(f"no images in {args.images}")
    return [read_rgb(p) for p in paths]


def compare(entries: list[tuple[dict, str, nicodec.Codec]], images: list[np.ndarray], qualities: list[float]) -> list[dict]:
    """Sweep each ``(fields, label, codec)`` over the images and qualities, one after the other.

    Returns one result per entry: its ``fields``, the points, the encoding and decoding seconds,
    and the BD-rate and the time ratios against the first entry (the reference).
    """
    results = []
    for fields, label, codec in entries:
        codec.encode(images[0][:64, :64], quality=qualities[0])  # warm-up, untimed
        points, encoding, decoding = sweep(codec, images, qualities)
        results.append({**fields, "points": points, "encode_seconds": round(encoding, 2),
                        "decode_seconds": round(decoding, 2)})
        print(f"{label}: " + ", ".join(f"q{p['quality']:g} {p['bpp']:.4f} bpp {p['psnr']:.2f} dB" for p in points),
              flush=True)
    reference = results[0]
    for result in results:
        result["bd_rate_percent"] = bd_rate(result["points"], reference["points"])
        result["encode_time_ratio"] = round(result["encode_seconds"] / reference["encode_seconds"], 3)
        result["decode_time_ratio"] = round(result["decode_seconds"] / reference["decode_seconds"], 3)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, SHARED / "data" / "kodak")
    parser.add_argument("--slopes", type=float, nargs="+", default=[RDO_SLOPE],
                        help=f"slopes to compare with plain rounding (default: the codec's {RDO_SLOPE})")
    parser.add_argument("--qualities", type=float, nargs="+", default=NICODEC_QUALITIES)
    args = parser.parse_args(argv)
    entries = [({"slope": slope}, f"slope {slope:g}", open_codec(parser, args.model, threads=args.threads, rdo=slope))
               for slope in [0.0] + [s for s in args.slopes if s > 0]]
    images = read_images(parser, args)
    results = compare(entries, images, args.qualities)
    codec = entries[0][2]
    report = {"model": codec.model_id, "images": f"{args.images.name} ({len(images)})", "threads": args.threads,
              "qualities": args.qualities, "results": results}
    rows = ["| slope | BD-rate vs plain rounding | encode time ratio | bpp / PSNR at the lowest, middle and highest quality |",
            "|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['slope']:g}{' (plain)' if r['slope'] == 0 else ''} | {percent(r['bd_rate_percent'])} | "
                    f"{r['encode_time_ratio']:.3f} | {span_text(r['points'])} |")
    table = f"rate-distortion optimised rounding, {report['model']}, {report['images']}, PSNR over RGB\n\n" + "\n".join(rows)
    publish(report, table, args.json)
    return report


if __name__ == "__main__":
    main()
