"""Successive compression ("generation loss"): each image coded, decoded, and coded again, N times.

    python benchmarks/generations.py [--images ../shared/data/kodak] [--limit N] [--generations 20]
        [--quality Q] [--classic jpeg444 webp avif444] [--rdo SLOPE] [--restoration]
        [--json benchmarks/results/generations.json]

A picture that is edited and saved again, or passed through a pipeline that compresses what
was already compressed, is coded many times. Learned codecs are known to be unstable under
this (Kim et al., "Instability of Successive Deep Image Compression", ACM Multimedia
2020: some models' quality collapses within a few generations, with growing colour
artifacts), where JPEG settles near a fixed point. For each image this program codes the
picture with nicodec at ``--quality``, decodes it, codes the decoded picture at the same
setting, and so on for ``--generations`` generations, and does the same with the classic
codecs of ``--classic`` through Pillow, at rd.py's options (JPEG 4:4:4, WebP method 4,
AVIF 4:4:4). ``--rdo SLOPE`` and ``--restoration`` code nicodec as ``Codec(rdo=SLOPE)`` and
``Codec(restoration=True)`` do, to see what the encoder's choices do to the loss.

Each classic codec codes an image at one integer quality for all its generations: the one
whose first generation's bits per pixel are nearest nicodec's first generation's on that
image (nearest in log ratio), so that the curves start comparable. It is found by bisection
on the quality (bytes rising with it): the lowest quality whose file reaches nicodec's
size, and the one below it, the nearer kept; a target below the codec's lowest quality or
above its highest gives that end (``matched`` false in the JSON where the first
generation's bpp is off by more than ``MATCH_TOLERANCE``). Where a codec's sizes fall at a
step (WebP's do at a few), the search still ends at a crossing and keeps the nearer of the two
qualities around it, which may not be the nearest of all.

Every generation records the file's bytes, the PSNR over RGB against the original, and the
squared error against the previous generation's picture (the original for generation 1).
The table gives per codec and generation the mean bpp, the mean PSNR against the original,
the drift (the mean of each image's PSNR at that generation minus its PSNR at generation
1), the PSNR against the previous generation (of the mean of the images' mean squared errors;
"same" where every picture came back unchanged), the image that drifted most, and how many
images gave the same file and the same pixels as the generation before (a fixed point:
with a deterministic codec, the same pixels at generation g make the same file at g + 1).

Time: a generation of nicodec is an encode and a decode, about 1.5 s for a Kodak image
with one thread; 20 generations of 8 images at one quality, the classic codecs' searches
and generations included, took 5.5 minutes on 2 busy cores (``--threads 1``; 7.5 with two
such runs at once), nicodec 70% of it, AVIF most of the rest.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

from common import add_image_arguments, add_quality_argument, coding_quality, image_paths, open_codec, psnr
from common import publish, read_rgb, whole_number
from rd import available, classic_code
from refine import LABELS

HERE = Path(__file__).resolve().parent
CLASSIC = ["jpeg444", "webp", "avif444"]
QUALITY_RANGE = {"jpeg444": (1, 100), "jpeg444opt": (1, 100), "jpeg420": (1, 100), "webp": (0, 100),
                 "avif444": (0, 100), "avif420": (0, 100), "jxl": (0, 100)}
"""The integer qualities Pillow takes for each codec (libjpeg reads 0 as 1)."""
MATCH_TOLERANCE = 0.10
"""A classic codec's first generation more than 10% from nicodec's bpp is flagged ``matched`` false."""
REPORTED = (1, 2, 5, 10, 20, 50, 100)
"""The generations the table shows (those run, and the last one)."""


def classic_coder(name: str, quality: int):
    """A function that codes an image with the classic codec ``name`` at ``quality`` and decodes it."""
    return lambda image: classic_code(name, quality, image)


def nicodec_coder(codec, quality: float | None):
    """A function that codes an image with ``codec`` at ``quality`` and decodes it."""
    def code(image: np.ndarray) -> tuple[bytes, np.ndarray]:
        data = codec.encode(image, quality=quality)
        return data, codec.decode(data, as_array=True)

    return code


def matching_quality(name: str, image: np.ndarray, target_bytes: int) -> tuple[int, tuple[bytes, np.ndarray]]:
    """The integer quality of ``name`` whose file of ``image`` is nearest ``target_bytes`` (in
    log ratio), by bisection, and that file with its decoded picture (the first generation)."""
    tried: dict[int, tuple[bytes, np.ndarray]] = {}

    def size(quality: int) -> int:
        if quality not in tried:
            tried[quality] = classic_coder(name, quality)(image)
        return len(tried[quality][0])

    low, high = QUALITY_RANGE[name]
    if size(high) < target_bytes:
        return high, tried[high]
    while low < high:  # the lowest quality whose file reaches the target
        middle = (low + high) // 2
        if size(middle) >= target_bytes:
            high = middle
        else:
            low = middle + 1
    candidates = [q for q in (high - 1, high) if q >= QUALITY_RANGE[name][0]]
    best = min(candidates, key=lambda q: abs(math.log(size(q) / target_bytes)))
    return best, tried[best]


def successive(code, image: np.ndarray, generations: int, first: tuple[bytes, np.ndarray] | None = None) -> dict:
    """Code ``image``, then each decoded picture again, ``generations`` times with ``code``.

    Args:
        first: generation 1's file and picture where they are already made (a quality search's).

    Returns:
        Per generation the bytes, the PSNR against ``image`` and the mean squared error against
        the previous picture; the first generation whose file, and whose pixels, equal the
        previous generation's (None when none does).
    """
    row = {"bytes": [], "psnr": [], "mse_previous": [], "same_file_from": None, "same_pixels_from": None}
    previous_data, previous = None, image
    for generation in range(1, generations + 1):
        data, decoded = first if generation == 1 and first is not None else code(previous)
        row["bytes"].append(len(data))
        row["psnr"].append(round(psnr(decoded, image), 4))
        row["mse_previous"].append(float(np.mean((decoded.astype(np.float64) - previous) ** 2)))
        if row["same_file_from"] is None and data == previous_data:
            row["same_file_from"] = generation
        if row["same_pixels_from"] is None and generation > 1 and row["mse_previous"][-1] == 0:
            row["same_pixels_from"] = generation
        previous_data, previous = data, decoded
    return row


def db(mse: float) -> float | None:
    """PSNR in dB of a mean squared error; None for 0 (the same pixels)."""
    return round(float(10 * np.log10(255 ** 2 / mse)), 4) if mse > 0 else None


def summarise(rows: list[dict], pixels: list[int], generations: int) -> list[dict]:
    """Per generation, over the images: mean bpp and PSNR, drift, the PSNR of the mean squared
    error to the previous picture, the image that drifted most, and how many are at a fixed point."""
    summary = []
    for g in range(generations):
        drift = [r["psnr"][g] - r["psnr"][0] for r in rows]
        worst = min(range(len(rows)), key=lambda i: drift[i])
        summary.append({
            "generation": g + 1,
            "bpp": statistics.mean(8 * r["bytes"][g] / n for r, n in zip(rows, pixels)),
            "psnr": statistics.mean(r["psnr"][g] for r in rows),
            "drift_db": statistics.mean(drift),
            "psnr_previous": db(statistics.mean(r["mse_previous"][g] for r in rows)),
            "worst_image": rows[worst]["image"], "worst_drift_db": drift[worst],
            "same_file": sum(r["same_file_from"] is not None and r["same_file_from"] <= g + 1 for r in rows),
            "same_pixels": sum(r["same_pixels_from"] is not None and r["same_pixels_from"] <= g + 1 for r in rows),
        })
    return summary


def table(report: dict) -> str:
    generations = report["generations"]
    shown = sorted({g for g in REPORTED if g <= generations} | {generations})
    lines = [f"successive compression, {report['model']} at quality {report['quality']:g}, {report['images']}, "
             f"{generations} generations; PSNR over RGB against the original", "",
             "| codec | quality | generation | bpp | PSNR (dB) | drift (dB) | PSNR to the previous (dB) "
             "| worst image (drift) | same file / same pixels as the previous |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["codecs"].items():
        qualities = [r["quality"] for r in entry["images"]]
        setting = f"{min(qualities):g}" + (f" to {max(qualities):g}" if max(qualities) != min(qualities) else "")
        for g in shown:
            s = entry["summary"][g - 1]
            previous = "same" if s["psnr_previous"] is None else f"{s['psnr_previous']:.2f}"
            worst = "-" if g == 1 else f"{s['worst_image']} ({s['worst_drift_db']:+.2f})"  # no drift yet
            lines.append(f"| {LABELS.get(name, name) if g == shown[0] else ''} | {setting if g == shown[0] else ''} "
                         f"| {g} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['drift_db']:+.2f} | {previous} "
                         f"| {worst} | {s['same_file']} / {s['same_pixels']} |")
    unmatched = [f"{LABELS.get(name, name)} on {r['image']} ({r['bpp_ratio']:.2f}x)"
                 for name, entry in report["codecs"].items() for r in entry["images"] if not r.get("matched", True)]
    lines.append("\nEach classic codec at the integer quality whose first generation is nearest nicodec's bpp on each "
                 "image; drift: PSNR at the generation minus PSNR at generation 1, the mean over the images.")
    if unmatched:
        lines.append(f"First generation more than {100 * MATCH_TOLERANCE:.0f}% from nicodec's bpp (ratio to it): "
                     + "; ".join(unmatched) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, HERE.parent.parent / "shared" / "data" / "kodak")
    add_quality_argument(parser)
    parser.add_argument("--generations", type=whole_number(1, 1000), default=20,
                        help="how many times each image is coded (default: %(default)s)")
    parser.add_argument("--classic", nargs="*", default=CLASSIC, choices=sorted(QUALITY_RANGE),
                        help="classic codecs to run beside nicodec (default: %(default)s; none: no codec)")
    parser.add_argument("--rdo", type=float, default=None, help="nicodec's rounding slope (default: the codec's)")
    parser.add_argument("--restoration", action="store_true", help="nicodec with the restoration filter")
    args = parser.parse_args(argv)
    options = {} if args.rdo is None else {"rdo": args.rdo}
    codec = open_codec(parser, args.model, threads=args.threads, restoration=args.restoration, **options)
    try:
        quality = coding_quality(codec, args.quality)
    except ValueError as exc:  # QualityError: out of 1..100, or given to a single-rate model
        parser.error(f"--quality: {exc}")
    paths = image_paths(args.images, args.limit)
    if not paths:
        parser.error(f"no images in {args.images}")
    images = [read_rgb(p) for p in paths]
    classic = [name for name in args.classic if available(name)]
    for name in args.classic:
        if name not in classic:
            print(f"{name}: not measured (Pillow cannot write it here)", flush=True)
    pixels = [image.shape[0] * image.shape[1] for image in images]
    rows: dict[str, list[dict]] = {"nicodec": [], **{name: [] for name in classic}}
    seconds = dict.fromkeys(rows, 0.0)
    for path, image in zip(paths, images):
        start = time.perf_counter()
        ours = {"image": path.name, "quality": quality,
                **successive(nicodec_coder(codec, quality), image, args.generations)}
        seconds["nicodec"] += time.perf_counter() - start
        rows["nicodec"].append(ours)
        for name in classic:
            start = time.perf_counter()
            setting, first = matching_quality(name, image, ours["bytes"][0])
            ratio = len(first[0]) / ours["bytes"][0]
            rows[name].append({"image": path.name, "quality": setting, "bpp_ratio": round(ratio, 4),
                               "matched": abs(ratio - 1) <= MATCH_TOLERANCE,
                               **successive(classic_coder(name, setting), image, args.generations, first)})
            seconds[name] += time.perf_counter() - start
        print(f"{path.name}: " + ", ".join(f"{name} {r[-1]['psnr'][0]:.2f} -> {r[-1]['psnr'][-1]:.2f} dB"
                                           for name, r in rows.items()), flush=True)
    report = {"model": codec.model_id, "quality": quality, "rdo_slope": codec.rdo_slope,
              "restoration": args.restoration, "images": f"{args.images.name} ({len(images)})",
              "threads": args.threads, "generations": args.generations, "match_tolerance": MATCH_TOLERANCE,
              "codecs": {name: {"seconds": round(seconds[name], 1), "summary": summarise(r, pixels, args.generations),
                                "images": r} for name, r in rows.items()}}
    publish(report, table(report), args.json)
    return report


if __name__ == "__main__":
    main()
