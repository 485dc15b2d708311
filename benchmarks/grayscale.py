"""What a grayscale image costs: nicodec on Kodak in gray beside the colour originals and gray JPEG.

    python benchmarks/grayscale.py [--images ../shared/data/kodak] [--json benchmarks/results/grayscale.json]

nicodec's networks code three channels: an "L" image is coded as RGB with three equal
channels and flagged grayscale, and decodes to one channel (the luma of the decoded
RGB). For each image this program codes the colour original and its grayscale
version (Pillow's ``convert("L")``), and measures the gray result against the gray
source. The yardstick is Pillow's JPEG, which codes "L" images
with a single component:

- JPEG on the gray image at the highest quality whose file is no larger than
  nicodec's: PSNR at (at most) equal size;
- the smallest JPEG reaching nicodec's PSNR: the rate each needs for equal quality,
  in gray and, for comparison, in colour (JPEG 4:4:4 on the original).

If nicodec's gap to JPEG is wider in gray than in colour, the difference is what
coding three equal channels costs it.
"""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

from nicodec import Codec

from common import add_image_arguments, open_codec, psnr, read_rgb, write_report

HERE = Path(__file__).resolve().parent


def jpeg(image: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    """``image`` ((H, W) gray or (H, W, 3) RGB) as a JPEG (4:4:4 for colour, optimised Huffman
    tables, as a careful JPEG user writes it), and its decoding."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
    data = buf.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)))


def jpeg_at_most(image: np.ndarray, budget: int) -> dict:
    """The best JPEG quality whose file fits ``budget`` bytes: bytes, PSNR and quality (0 if none fits)."""
    best = {"bytes": 0, "psnr": float("nan"), "quality": 0}
    lo, hi = 1, 100
    while lo <= hi:
        q = (lo + hi) // 2
        data, decoded = jpeg(image, q)
        if len(data) <= budget:
            best, lo = {"bytes": len(data), "psnr": psnr(decoded, image), "quality": q}, q + 1
        else:
            hi = q - 1
    return best


def jpeg_reaching(image: np.ndarray, target_psnr: float) -> dict | None:
    """The smallest JPEG quality whose PSNR reaches ``target_psnr``: bytes, PSNR and quality, or None."""
    found = None
    lo, hi = 1, 100
    while lo <= hi:
        q = (lo + hi) // 2
        data, decoded = jpeg(image, q)
        quality_psnr = psnr(decoded, image)
        if quality_psnr >= target_psnr:
            found, hi = {"bytes": len(data), "psnr": quality_psnr, "quality": q}, q - 1
        else:
            lo = q + 1
    return found


def measure(codec: Codec, name: str, rgb: np.ndarray) -> dict:
    """Every figure of one image, ``name`` (see the module's docstring)."""
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    pixels = gray.size

    rgb_data = codec.encode(rgb)
    rgb_psnr = psnr(codec.decode(rgb_data, as_array=True), rgb)
    gray_data = codec.encode(Image.fromarray(gray))
    decoded_gray = codec.decode(gray_data, as_array=True)  # flagged grayscale: (H, W)
    assert decoded_gray.shape == gray.shape
    gray_psnr = psnr(decoded_gray, gray)
    # The colour pixels behind that luma, before the decoder takes it (the synthesis's output):
    # what the file would show without the flag. (A colour image of three equal channels is
    # flagged too since 2026-12-03, so decoding it no longer shows them.)
    header, y_hat = codec.decode_latents(gray_data)
    decoded = codec._synthesize(y_hat, header.quality)[0, :, : header.height, : header.width].transpose(1, 2, 0)
    spread = decoded.max(axis=2).astype(np.int16) - decoded.min(axis=2)

    same_size = jpeg_at_most(gray, len(gray_data))
    equal_gray = jpeg_reaching(gray, gray_psnr)
    equal_rgb = jpeg_reaching(rgb, rgb_psnr)
    return {
        "image": name,
        "rgb_bpp": 8 * len(rgb_data) / pixels,
        "rgb_psnr": rgb_psnr,
        "gray_bpp": 8 * len(gray_data) / pixels,
        "gray_psnr": gray_psnr,
        "gray_decoded_channel_spread_mean": float(spread.mean()),
        "gray_decoded_channel_spread_max": int(spread.max()),
        "jpeg_gray_same_size_bpp": 8 * same_size["bytes"] / pixels,
        "jpeg_gray_same_size_psnr": same_size["psnr"],
        "jpeg_gray_same_size_quality": same_size["quality"],
        "jpeg_gray_equal_psnr_bpp": 8 * equal_gray["bytes"] / pixels if equal_gray else None,
        "jpeg444_rgb_equal_psnr_bpp": 8 * equal_rgb["bytes"] / pixels if equal_rgb else None,
    }


def summarise(rows: list[dict]) -> dict:
    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None and r[key] == r[key]]  # no None, no NaN
        return statistics.mean(values) if values else None

    def extra(ours: str, theirs: str) -> float | None:
        """nicodec's rate over JPEG's at equal PSNR, in percent: mean of per-image ratios."""
        ratios = [r[ours] / r[theirs] for r in rows if r[theirs]]
        return 100 * (statistics.mean(ratios) - 1) if ratios else None

    # A rough figure for the cost: the gray rate nicodec would need if its gap to JPEG
    # were the one it has in colour (JPEG's gray rate at nicodec's PSNR times nicodec's
    # colour-rate ratio), per image.
    at_colour_gap = [
        r["jpeg_gray_equal_psnr_bpp"] * r["rgb_bpp"] / r["jpeg444_rgb_equal_psnr_bpp"]
        for r in rows if r["jpeg_gray_equal_psnr_bpp"] and r["jpeg444_rgb_equal_psnr_bpp"]
    ]
    return {
        "images": len(rows),
        "rgb_mean_bpp": mean("rgb_bpp"),
        "rgb_mean_psnr": mean("rgb_psnr"),
        "gray_mean_bpp": mean("gray_bpp"),
        "gray_mean_psnr": mean("gray_psnr"),
        "gray_bpp_over_rgb_bpp": statistics.mean(r["gray_bpp"] / r["rgb_bpp"] for r in rows),
        "gray_decoded_channel_spread_mean": mean("gray_decoded_channel_spread_mean"),
        "jpeg_gray_same_size_mean_bpp": mean("jpeg_gray_same_size_bpp"),
        "jpeg_gray_same_size_mean_psnr": mean("jpeg_gray_same_size_psnr"),
        "gray_extra_rate_over_jpeg_percent": extra("gray_bpp", "jpeg_gray_equal_psnr_bpp"),
        "rgb_extra_rate_over_jpeg444_percent": extra("rgb_bpp", "jpeg444_rgb_equal_psnr_bpp"),
        "gray_mean_bpp_at_colour_gap": statistics.mean(at_colour_gap) if at_colour_gap else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_arguments(parser, HERE.parent.parent / "shared" / "data" / "kodak")
    args = parser.parse_args(argv)

    paths = sorted(args.images.glob("*.png"))[: args.limit or None]
    if not paths:
        raise SystemExit(f"no PNG images in {args.images}")
    codec = open_codec(parser, args.model, threads=args.threads)
    images = [read_rgb(p) for p in paths]  # every one before the first is coded
    print(f"{'image':<10} {'RGB bpp':>8} {'RGB dB':>7} {'L bpp':>7} {'L dB':>6} {'spread':>6} "
          f"{'JPEG-L dB':>9} {'JPEG-L bpp @=dB':>15}")
    rows = []
    for path, rgb in zip(paths, images):
        row = measure(codec, path.name, rgb)
        rows.append(row)
        print(f"{path.stem:<10} {row['rgb_bpp']:8.3f} {row['rgb_psnr']:7.2f} {row['gray_bpp']:7.3f} "
              f"{row['gray_psnr']:6.2f} {row['gray_decoded_channel_spread_mean']:6.2f} "
              f"{row['jpeg_gray_same_size_psnr']:9.2f} {_show(row['jpeg_gray_equal_psnr_bpp']):>15}")
    summary = summarise(rows)
    s = {key: _show(value) for key, value in summary.items()}
    print(
        f"\nnicodec ({codec.model_id}), means over {len(rows)} images:\n"
        f"  colour original: {s['rgb_mean_bpp']} bpp, {s['rgb_mean_psnr']} dB (RGB PSNR)\n"
        f"  grayscale:       {s['gray_mean_bpp']} bpp ({s['gray_bpp_over_rgb_bpp']} times the colour file), "
        f"{s['gray_mean_psnr']} dB (gray PSNR); decoded channels differ by "
        f"{s['gray_decoded_channel_spread_mean']} levels on average\n"
        f"  JPEG (1 component) at no more bytes: {s['jpeg_gray_same_size_mean_bpp']} bpp, "
        f"{s['jpeg_gray_same_size_mean_psnr']} dB\n"
        f"  rate over JPEG at equal PSNR: {s['gray_extra_rate_over_jpeg_percent']}% in gray, "
        f"{s['rgb_extra_rate_over_jpeg444_percent']}% in colour (JPEG 4:4:4)\n"
        f"  with its colour gap to JPEG, gray would take about {s['gray_mean_bpp_at_colour_gap']} bpp"
    )
    report = {"model_id": codec.model_id, "threads": args.threads, "summary": summary, "images": rows}
    write_report(args.json, report)
    return report


def _show(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
