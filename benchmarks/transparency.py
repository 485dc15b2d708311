"""What the colour under transparent pixels costs: nicodec's fill against ``exact``, beside WebP.

    python benchmarks/transparency.py [--images ../shared/data/kodak] [--json benchmarks/results/transparency.json]

Slow: about half a minute an image on 2 cores (a quarter of an hour for Kodak); ``--limit N`` takes
the first N images.

Each image is cut out (``--shape ellipse``, the default: by an ellipse 0.8 of its height and
0.7 of its width across, with an anti-aliased rim about three pixels wide: alpha between 0
and 255 there; ``--shape blobs``: where the image, blurred, is brighter than its median, with
a rim of one or two pixels, a ragged shape with a long outline) and coded with two kinds of
colour under the transparent pixels:

- ``black``: what exporters that clear hidden pixels leave (RGBA 0, 0, 0, 0);
- ``photo``: the photo itself, as a layer mask leaves it.

nicodec codes each at the same qualities by default (the hidden colour replaced by a smooth
fill from the visible pixels) and with ``exact=True`` (kept); Pillow's WebP (lossy, with its
alpha lossless too: ``alpha_quality=100``) likewise with ``exact=False`` (its default) and
``exact=True``. The rate counts the whole file (the alpha plane included); the PSNR is taken
over the visible pixels (alpha above 0), the only ones a viewer shows. The BD-rates (PCHIP)
compare each fill with its ``exact``, and nicodec's fill with WebP's: whole files, and the
colour alone (without nicodec's alpha section and WebP's ``ALPH`` chunk, both lossless
here: zlib or LZMA2, whichever is smaller, for nicodec (``nicodec.alpha``), WebP's own
lossless coding for WebP).
"""

from __future__ import annotations

import argparse
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from nicodec import alpha as alpha_section
from nicodec import format as nicformat

from common import add_image_arguments, open_codec, psnr, read_rgb, write_report
from rd import bd_rate, bd_rate_unavailable

HERE = Path(__file__).resolve().parent
QUALITIES = [1, 20, 56, 80, 100]
WEBP_QUALITIES = [0, 10, 25, 40, 55, 70, 85, 95, 100]
BACKGROUNDS = ("black", "photo")


def cut_out(rgb: np.ndarray, background: str, shape: str = "ellipse") -> tuple[np.ndarray, np.ndarray]:
    """``(rgb, alpha)``: the cut-out of ``rgb`` (``shape``: see the module's docstring) with
    ``background`` under its transparent pixels."""
    height, width = rgb.shape[:2]
    if shape == "ellipse":
        yy, xx = np.mgrid[:height, :width]
        radius = np.sqrt(((yy + 0.5 - height / 2) / (0.4 * height)) ** 2
                         + ((xx + 0.5 - width / 2) / (0.35 * width)) ** 2)
        rim = 3 / (0.4 * height)  # about three pixels of partial alpha
        alpha = np.clip((1 - radius) / rim * 255, 0, 255).round().astype(np.uint8)
    else:
        blurred = np.asarray(Image.fromarray(rgb).convert("L").filter(ImageFilter.GaussianBlur(6)), np.float64)
        alpha = np.clip(128 + (blurred - np.median(blurred)) * 255, 0, 255).round().astype(np.uint8)
    if background == "black":
        rgb = np.where(alpha[..., None] > 0, rgb, 0).astype(np.uint8)
    return rgb, alpha


def webp(rgba: np.ndarray, quality: int, exact: bool) -> tuple[bytes, np.ndarray]:
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="WEBP", quality=quality, alpha_quality=100, exact=exact,
                                       method=4)
    return buffer.getvalue(), np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA"))


def webp_alpha_bytes(data: bytes) -> int:
    """The payload size of a WebP file's ``ALPH`` chunk (RIFF, RFC 9649), as nicodec's alpha
    section is counted: neither's header."""
    offset, size = 12, 0
    while offset + 8 <= len(data):
        fourcc, length = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        if fourcc == b"ALPH":
            size += length
        offset += 8 + length + length % 2
    return size


def curve(points: list[tuple[float, float, float]], colour_only: bool = False) -> list[dict]:
    """Per-quality means over the images, ``[{"bpp", "psnr"}]``, from each image's list of (bpp,
    PSNR, alpha bpp); with ``colour_only``, the alpha plane's bits left out of the rate."""
    return [{"bpp": float(np.mean([p[0] - colour_only * p[2] for p in row])), "psnr": float(np.mean([p[1] for p in row])),
             "alpha_bpp": float(np.mean([p[2] for p in row]))}
            for row in zip(*points)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, HERE.parent.parent / "shared" / "data" / "kodak")
    parser.add_argument("--qualities", type=float, nargs="+", default=QUALITIES)
    parser.add_argument("--webp-qualities", type=int, nargs="+", default=WEBP_QUALITIES)
    parser.add_argument("--shape", choices=("ellipse", "blobs"), default="ellipse")
    args = parser.parse_args(argv)

    paths = sorted(args.images.glob("*.png"))[: args.limit or None]
    if not paths:
        raise SystemExit(f"no PNG images in {args.images}")
    codec = open_codec(parser, args.model, threads=args.threads)
    no_bd_rate = bd_rate_unavailable()
    if no_bd_rate:  # before the sweeps, which the BD-rates end
        raise SystemExit(no_bd_rate)
    photos = [read_rgb(p) for p in paths]  # every one before the first is coded
    # curves[background][coder] = one list per image of (bpp, visible PSNR) per quality
    curves: dict = {b: {"nicodec": [], "nicodec exact": [], "WebP": [], "WebP exact": []} for b in BACKGROUNDS}
    for path, photo in zip(paths, photos):
        pixels = photo.shape[0] * photo.shape[1]
        for background in BACKGROUNDS:
            rgb, alpha = cut_out(photo, background, args.shape)
            rgba, visible = np.dstack([rgb, alpha]), alpha > 0
            for exact in (False, True):
                points = []
                for quality in args.qualities:
                    data = codec.encode(rgba, quality=quality, exact=exact)
                    decoded = codec.decode(data, as_array=True)
                    assert np.array_equal(decoded[:, :, 3], alpha)
                    sections = nicformat.unpack(data)[1]
                    alpha_bytes = len(sections[alpha_section.find(sections)])
                    points.append((8 * len(data) / pixels, psnr(decoded[visible][:, :3], photo[visible]),
                                   8 * alpha_bytes / pixels))
                curves[background]["nicodec exact" if exact else "nicodec"].append(points)
                points = []
                for quality in args.webp_qualities:
                    data, decoded = webp(rgba, quality, exact)
                    assert np.array_equal(decoded[:, :, 3], alpha)
                    points.append((8 * len(data) / pixels, psnr(decoded[visible][:, :3], photo[visible]),
                                   8 * webp_alpha_bytes(data) / pixels))
                curves[background]["WebP exact" if exact else "WebP"].append(points)
        print(f"{path.stem}: done", flush=True)

    results = {}
    lines = ["| colour under the transparent pixels | nicodec fill vs exact | WebP fill vs exact "
             "| nicodec fill vs WebP fill | the same, colour alone | alpha plane, nicodec / WebP |",
             "|---|---|---|---|---|---|"]
    for background in BACKGROUNDS:
        means = {coder: curve(points) for coder, points in curves[background].items()}
        colour = {coder: curve(curves[background][coder], colour_only=True) for coder in ("nicodec", "WebP")}
        bd = {
            "nicodec_fill_vs_exact": bd_rate(means["nicodec"], means["nicodec exact"]),
            "webp_fill_vs_exact": bd_rate(means["WebP"], means["WebP exact"]),
            "nicodec_fill_vs_webp_fill": bd_rate(means["nicodec"], means["WebP"]),
            "nicodec_fill_vs_webp_fill_colour_alone": bd_rate(colour["nicodec"], colour["WebP"]),
        }
        alpha_ratio = np.mean([p["alpha_bpp"] for p in means["nicodec"]]) / np.mean([p["alpha_bpp"] for p in means["WebP"]])
        results[background] = {"curves": means, "bd_rate_percent": bd, "alpha_bytes_nicodec_over_webp": alpha_ratio}
        shown = [f"{value:+.1f}%" if value is not None else "n/a" for value in bd.values()]
        lines.append(f"| {background} | " + " | ".join(shown) + f" | {alpha_ratio:.2f} |")
        for coder, points in means.items():
            print(f"{background:>5} {coder:<13} " + "  ".join(f"{p['bpp']:.3f}/{p['psnr']:.2f}" for p in points))
    table = "\n".join(lines)
    print(f"\nBD-rate over the visible pixels' PSNR, {len(paths)} images cut out ({args.shape}; negative: fewer bits)\n"
          + table)
    report = {"model_id": codec.model_id, "threads": args.threads, "images": len(paths), "shape": args.shape,
              "qualities": args.qualities, "webp_qualities": args.webp_qualities, "results": results}
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
