"""Peak memory across a long batch: does one Codec's footprint grow with the number of images?

    python benchmarks/batch_memory.py [--images 1000] [--json benchmarks/results/batch_memory.json]

Encodes and decodes synthetic photo-like images of mixed sizes (64 to 512 pixels a
side) through one ``Codec`` and reports the process's peak resident memory after
each checkpoint of the batch. A leak shows as a peak that keeps rising after the
largest size has been seen; a flat peak means memory does not grow with the batch.
Linux and macOS only (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

from nicodec import Codec

from common import whole_number, write_report

SIDES = (64, 96, 128, 200, 256, 320, 384, 448, 512)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def photo(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.3, 3)
    img = np.stack([120 + 70 * np.sin(xx / rng.uniform(10, 40) + p) * np.cos(yy / 37.0) for p in phase], axis=2)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=whole_number(1), default=1000,
                        help="how many synthetic images the batch codes (a count: this program reads no folder)")
    parser.add_argument("--threads", type=whole_number(1, 256), default=2, help="onnxruntime threads (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    codec = Codec(providers="cpu", threads=args.threads)
    marks = sorted({m for m in (1, 10, 100, args.images // 4, args.images // 2, args.images) if 0 < m <= args.images})
    pairs = [(h, w) for h in SIDES for w in SIDES]
    rows, start, pixels, coded = [], time.perf_counter(), 0, 0
    for i in range(1, args.images + 1):
        # The first 81 images cover every pair of sides, so the peak after them is the
        # batch's working set; the rest are drawn at random.
        h, w = pairs[i - 1] if i <= len(pairs) else (int(rng.choice(SIDES)), int(rng.choice(SIDES)))
        image = photo(h, w, rng)
        data = codec.encode(image)
        out = codec.decode(data, as_array=True)
        assert out.shape == image.shape
        pixels += h * w
        coded += len(data)
        if i in marks:
            rows.append({"images": i, "peak_rss_mb": round(peak_rss_mb(), 1), "seconds": round(time.perf_counter() - start, 1)})
            print(f"{i:>6} images: peak RSS {rows[-1]['peak_rss_mb']:8.1f} MiB, {rows[-1]['seconds']:7.1f} s", flush=True)
    after_sizes = [r["peak_rss_mb"] for r in rows if r["images"] >= 100]
    growth = after_sizes[-1] - after_sizes[0] if len(after_sizes) > 1 else 0.0
    if len(after_sizes) > 1:
        print(f"peak RSS growth from image 100 to image {args.images}: {growth:+.1f} MiB "
              f"({pixels / 1e6:.1f} Mpixels, {coded / 1e6:.2f} MB coded)")
    else:  # the first 81 images are the working set: growth is measured from the 100th on
        print(f"{args.images} images are too few to measure growth (it is measured from image 100 on)")
    write_report(args.json, {
        "model_id": codec.model_id, "threads": args.threads, "images": args.images,
        "checkpoints": rows, "growth_mb_after_100": round(growth, 1),
    })


if __name__ == "__main__":
    main()
