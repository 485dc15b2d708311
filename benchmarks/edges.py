"""The picture at an image's edges, and the bits a size just past a multiple of 64 costs.

    python benchmarks/edges.py [--images ../shared/data/kodak] [--json benchmarks/results/edges.json]

The networks work on the image padded to a multiple of 16 pixels a side (the last row and
column repeated; 64 before nicodec 0.7.0). For each image (portrait ones turned to landscape)
this program codes the whole image, then two crops of it from (32, 32): the largest whose sides
are multiples of 64 (704x448 of a Kodak image), which the networks' borders meet unpadded, and
that crop with one more row and column (705x449), which the padding takes to the next multiple
of 16 (720x464). The crops' edges are the image's edges when
coded alone, and inner pixels of the whole image: the difference in PSNR over the outer
``BAND`` pixels of each side is what being an edge costs those pixels, the same pixels in
both codings. The bytes of the two crops give what one more row and column cost.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from common import add_image_arguments, add_quality_argument, coding_quality, image_paths, open_codec, publish, read_rgb

HERE = Path(__file__).resolve().parent
OFFSET = 32
"""Where the crops start in the whole image: their left and top edges are inner pixels there too."""
BAND = 4
"""The pixels along each side whose PSNR is measured."""
SIDES = {"left": (slice(None), slice(0, BAND)), "right": (slice(None), slice(-BAND, None)),
         "top": (slice(0, BAND), slice(None)), "bottom": (slice(-BAND, None), slice(None)),
         "inner": (slice(16, -16), slice(16, -16)), "all": (slice(None), slice(None))}


def squared_errors(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The mean squared error of each of :data:`SIDES`."""
    error = (a.astype(np.float64) - b) ** 2
    return {side: float(error[region].mean()) for side, region in SIDES.items()}


def measure(codec, quality, name: str, rgb: np.ndarray) -> dict:
    if rgb.shape[0] > rgb.shape[1]:
        rgb = np.ascontiguousarray(rgb.transpose(1, 0, 2))
    whole = codec.decode(codec.encode(rgb, quality=quality), as_array=True)
    height, width = ((side - OFFSET - 1) // 64 * 64 for side in rgb.shape[:2])
    row = {"image": name}
    for label, (h, w) in (("multiple", (height, width)), ("one_more", (height + 1, width + 1))):
        crop = np.ascontiguousarray(rgb[OFFSET:OFFSET + h, OFFSET:OFFSET + w])
        data = codec.encode(crop, quality=quality)
        row[label] = {"size": f"{w}x{h}", "bytes": len(data),
                      "alone": squared_errors(codec.decode(data, as_array=True), crop),
                      "inside": squared_errors(whole[OFFSET:OFFSET + h, OFFSET:OFFSET + w], crop)}
    return row


def db(mse: float) -> float:
    return 10 * np.log10(255 ** 2 / mse) if mse > 0 else float("inf")


def summarise(rows: list[dict]) -> dict:
    summary: dict = {"images": len(rows)}
    for label in ("multiple", "one_more"):
        summary[label] = {
            "mean_bytes": statistics.mean(r[label]["bytes"] for r in rows),
            # The errors pooled over the images, then in dB: coded alone, and inside the whole image.
            **{f"{side}_db": [round(db(statistics.mean(r[label][where][side] for r in rows)), 2)
                              for where in ("alone", "inside")] for side in SIDES}}
    summary["one_more_extra_bytes_percent"] = 100 * statistics.mean(
        r["one_more"]["bytes"] / r["multiple"]["bytes"] - 1 for r in rows)
    return summary


def table(summary: dict, sizes: tuple[str, str]) -> str:
    lines = ["| crop | bytes (mean) | " + " | ".join(SIDES) + " |", "|---" * (len(SIDES) + 2) + "|"]
    for label, size in zip(("multiple", "one_more"), sizes):
        s = summary[label]
        cells = [f"{s[f'{side}_db'][0]:.2f} ({s[f'{side}_db'][0] - s[f'{side}_db'][1]:+.2f})" for side in SIDES]
        lines.append(f"| {size} | {s['mean_bytes']:,.0f} | " + " | ".join(cells) + " |")
    lines.append(f"\nPSNR in dB of the outer {BAND} pixels of each side coded alone (in brackets: against the same "
                 "pixels inside the whole image); one more row and column: "
                 f"{summary['one_more_extra_bytes_percent']:+.1f}% bytes.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, HERE.parent.parent / "shared" / "data" / "kodak")
    add_quality_argument(parser)
    args = parser.parse_args(argv)
    codec = open_codec(parser, args.model, threads=args.threads)
    quality = coding_quality(codec, args.quality)
    paths = image_paths(args.images, args.limit)
    if not paths:
        parser.error(f"no images in {args.images}")
    rows = []
    for path in paths:
        rows.append(measure(codec, quality, path.name, read_rgb(path)))
        print(f"{path.name}: {rows[-1]['multiple']['size']} {rows[-1]['multiple']['bytes']:,} bytes, "
              f"{rows[-1]['one_more']['size']} {rows[-1]['one_more']['bytes']:,} bytes", flush=True)
    summary = summarise(rows)
    report = {"quality": quality, "band": BAND, "offset": OFFSET, "summary": summary, "images": rows}
    publish(report, table(summary, (rows[0]["multiple"]["size"], rows[0]["one_more"]["size"])), args.json)
    return report


if __name__ == "__main__":
    main()
