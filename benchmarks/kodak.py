"""The default model on Kodak: bits per pixel, PSNR and time per image, beside JPEG at the same size.

    python benchmarks/kodak.py [--images ../shared/data/kodak] [--quality Q] [--json benchmarks/results/kodak.json]

nicodec codes at ``--quality`` (1 to 100; default: the model's default quality; a
single-rate model, ``--model DIR``, takes none); the JSON records the quality used.

For each image, nicodec's file size sets the budget and Pillow's JPEG (4:4:4
chroma, optimised Huffman tables: what a careful JPEG user gets; Pillow's default fixed
tables cost up to 40% more bytes for the same pixels) is searched for the highest quality
whose file is no larger, so the two PSNR columns compare the codecs at (at most) the same
number of bytes.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nicodec import QualityError

from common import add_image_arguments, add_quality_argument, coding_quality, psnr, write_report
from common import open_codec, read_rgb

HERE = Path(__file__).resolve().parent


def jpeg_at_most(image: np.ndarray, budget: int) -> tuple[int, float, int]:
    """The best JPEG 4:4:4 quality whose size fits ``budget`` bytes: (bytes, PSNR, quality)."""
    best = None
    lo, hi = 1, 100
    while lo <= hi:
        q = (lo + hi) // 2
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=q, subsampling=0, optimize=True)
        if buf.tell() <= budget:
            best, lo = (q, buf.getvalue()), q + 1
        else:
            hi = q - 1
    if best is None:
        return 0, float("nan"), 0
    q, data = best
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return len(data), psnr(decoded, image), q


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, HERE.parent.parent / "shared" / "data" / "kodak")
    add_quality_argument(parser)
    args = parser.parse_args(argv)

    paths = sorted(args.images.glob("*.png"))[: args.limit or None]
    if not paths:
        raise SystemExit(f"no PNG images in {args.images}")
    codec = open_codec(parser, args.model, threads=args.threads)
    try:
        quality = coding_quality(codec, args.quality)
    except QualityError as exc:
        parser.error(str(exc))
    images = [read_rgb(p) for p in paths]  # every one before the first is coded
    rows = []
    print(f"{'image':<12} {'bpp':>7} {'PSNR':>7} {'enc ms':>7} {'dec ms':>7} {'JPEG PSNR':>10} {'JPEG q':>6}")
    for path, image in zip(paths, images):
        pixels = image.shape[0] * image.shape[1]
        t0 = time.perf_counter()
        data = codec.encode(image, quality=quality)
        t1 = time.perf_counter()
        decoded = codec.decode(data, as_array=True)
        t2 = time.perf_counter()
        jpeg_bytes, jpeg_psnr, jpeg_q = jpeg_at_most(image, len(data))
        row = {
            "image": path.name, "bytes": len(data), "bpp": 8 * len(data) / pixels, "psnr": psnr(decoded, image),
            "encode_ms": 1000 * (t1 - t0), "decode_ms": 1000 * (t2 - t1),
            "jpeg444_bytes": jpeg_bytes, "jpeg444_bpp": 8 * jpeg_bytes / pixels, "jpeg444_psnr": jpeg_psnr,
            "jpeg444_quality": jpeg_q,
        }
        rows.append(row)
        print(f"{path.stem:<12} {row['bpp']:7.4f} {row['psnr']:7.2f} {row['encode_ms']:7.0f} {row['decode_ms']:7.0f} "
              f"{jpeg_psnr:10.2f} {jpeg_q:6d}")
    summary = {
        "images": len(rows),
        "mean_bpp": statistics.mean(r["bpp"] for r in rows),
        "mean_psnr": statistics.mean(r["psnr"] for r in rows),
        "median_encode_ms": statistics.median(r["encode_ms"] for r in rows),
        "median_decode_ms": statistics.median(r["decode_ms"] for r in rows),
    }
    fitted = [r for r in rows if r["jpeg444_bytes"]]  # JPEG at quality 1 can still be larger than nicodec's file
    summary.update({
        "jpeg444_images": len(fitted),
        "jpeg444_mean_bpp": statistics.mean(r["jpeg444_bpp"] for r in fitted) if fitted else None,
        "jpeg444_mean_psnr": statistics.mean(r["jpeg444_psnr"] for r in fitted) if fitted else None,
    })
    if not fitted:
        jpeg = "none: no JPEG is as small as nicodec's files"
    else:
        jpeg = f"mean {summary['jpeg444_mean_bpp']:.4f} bpp, {summary['jpeg444_mean_psnr']:.2f} dB"
    if fitted and len(fitted) < len(rows):
        jpeg += (f" over the {len(fitted)} of {len(rows)} images where one is as small "
                 f"(nicodec's mean there: {statistics.mean(r['psnr'] for r in fitted):.2f} dB)")
    print(
        f"\nnicodec ({codec.model_id}{'' if quality is None else f', quality {quality:g}'}): mean {summary['mean_bpp']:.4f} bpp, {summary['mean_psnr']:.2f} dB PSNR (RGB); "
        f"median encode {summary['median_encode_ms']:.0f} ms, decode {summary['median_decode_ms']:.0f} ms "
        f"(CPU provider, {args.threads} threads)\n"
        f"JPEG 4:4:4 at no more bytes: {jpeg}"
    )
    write_report(args.json, {"model_id": codec.model_id, "quality": quality, "threads": args.threads, "summary": summary,
                             "images": rows})


if __name__ == "__main__":
    main()
