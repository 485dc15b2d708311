"""Rate-distortion on a folder of images: nicodec against Pillow's codecs and published anchors.

    python benchmarks/rd.py [--images ../shared/data/kodak] [--model DIR ...] [--json PATH] [--markdown PATH]
    python benchmarks/rd.py --quick      # two images, two qualities: keeps the harness working

JPEG XL is measured when pillow-jxl-plugin is installed (``pip install ".[bench]"``).

Each classic codec is swept over its quality setting; each setting gives one point,
the mean of the per-image bits per pixel (from real file sizes) and of the per-image
PSNR over RGB. nicodec gives one point per model folder (``--model``, repeatable;
the shipped model by default) until the variable-rate model lands.

BD-rate (Bjøntegaard, VCEG-M33: log10 rate fitted as a cubic polynomial of PSNR,
averaged over the overlapping PSNR range) compares curves of four points or more.
With fewer nicodec points, the table gives the rate difference at equal PSNR
instead: each other curve is interpolated (log rate, linearly in PSNR) at nicodec's
PSNR. Negative means nicodec needs fewer bits.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, features

from common import psnr, write_report

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"

QUALITIES = {
    "jpeg444": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "jpeg420": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "webp": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif444": [10, 20, 30, 40, 50, 60, 70, 80, 90],
    "avif420": [10, 20, 30, 40, 50, 60, 70, 80, 90],
    "jxl": [10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
}
QUICK_QUALITIES = [30, 80]


def save_options(codec: str, quality: int) -> tuple[str, dict]:
    if codec.startswith("jpeg"):
        return "JPEG", {"quality": quality, "subsampling": 0 if codec == "jpeg444" else 2}
    if codec == "webp":
        return "WEBP", {"quality": quality, "method": 4}
    if codec.startswith("avif"):
        return "AVIF", {"quality": quality, "subsampling": "4:4:4" if codec == "avif444" else "4:2:0"}
    if codec == "jxl":
        return "JXL", {"quality": quality}  # libjxl's default effort (7)
    raise ValueError(codec)


def classic_point(codec: str, quality: int, images: list[np.ndarray]) -> dict:
    fmt, options = save_options(codec, quality)
    bpp, quality_db = [], []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, **options)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        bpp.append(8 * buffer.tell() / (image.shape[0] * image.shape[1]))
        quality_db.append(psnr(decoded, image))
    return {"setting": quality, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(quality_db))}


def nicodec_point(model: Path | None, images: list[np.ndarray]) -> dict:
    from nicodec import Codec

    codec = Codec(model, providers="cpu")
    bpp, quality_db = [], []
    for image in images:
        data = codec.encode(image)
        bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
        quality_db.append(psnr(codec.decode(data, as_array=True), image))
    return {"setting": codec.model_id, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(quality_db))}


def bd_rate(test: list[dict], reference: list[dict]) -> float | None:
    """Bjøntegaard delta rate of ``test`` against ``reference`` in percent (None without overlap)."""
    if len(test) < 4 or len(reference) < 4:
        return None
    lo = max(min(p["psnr"] for p in test), min(p["psnr"] for p in reference))
    hi = min(max(p["psnr"] for p in test), max(p["psnr"] for p in reference))
    if hi <= lo:
        return None
    integrals = []
    for curve in (test, reference):
        d = np.array([p["psnr"] for p in curve])
        r = np.log10([p["bpp"] for p in curve])
        poly = np.polyint(np.polyfit(d, r, 3))
        integrals.append((np.polyval(poly, hi) - np.polyval(poly, lo)) / (hi - lo))
    return float((10 ** (integrals[0] - integrals[1]) - 1) * 100)


def rate_at_equal_psnr(point: dict, reference: list[dict]) -> float | None:
    """Percent rate difference of one point against a curve at the point's PSNR (None outside it)."""
    ordered = sorted(reference, key=lambda p: p["psnr"])
    d = [p["psnr"] for p in ordered]
    if not d[0] <= point["psnr"] <= d[-1]:
        return None
    log_rate = np.interp(point["psnr"], d, np.log10([p["bpp"] for p in ordered]))
    return float((point["bpp"] / 10**log_rate - 1) * 100)


def load_anchors(path: Path) -> tuple[dict[str, list[dict]], str]:
    if not path.is_file():
        return {}, ""
    data = json.loads(path.read_text())
    curves = {
        f"published:{name}": [{"bpp": b, "psnr": q} for b, q in zip(entry["bpp"], entry["psnr_rgb"])]
        for name, entry in data["codecs"].items()
    }
    return curves, data.get("source", "")


def available(codec: str) -> bool:
    """AVIF needs a Pillow built with libavif; JPEG XL needs pillow-jxl-plugin (the bench extra)."""
    if codec.startswith("avif"):
        return features.check("avif")
    if codec == "jxl":
        try:
            import pillow_jxl  # noqa: F401 - registers the JXL format with Pillow
        except ImportError:
            return False
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "kodak")
    parser.add_argument("--model", type=Path, action="append", default=None, help="nicodec model folder (repeatable)")
    parser.add_argument("--anchors", type=Path, default=SHARED / "anchors" / "kodak_published.json")
    parser.add_argument("--quick", action="store_true", help="two images, two qualities per codec")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    paths = sorted(p for p in args.images.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"))
    if args.quick:
        paths = paths[:2]
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    codecs = [c for c in QUALITIES if available(c)]
    missing = [c for c in QUALITIES if c not in codecs]
    if missing:
        print(f"skipped (not installed): {', '.join(missing)}")
    curves: dict[str, list[dict]] = {}
    for codec in codecs:
        curves[codec] = [classic_point(codec, q, images) for q in (QUICK_QUALITIES if args.quick else QUALITIES[codec])]
        print(f"{codec:>8}: " + ", ".join(f"q{p['setting']} {p['bpp']:.3f} bpp {p['psnr']:.2f} dB" for p in curves[codec]))
    ours = [nicodec_point(m, images) for m in (args.model or [None])]
    for p in ours:
        print(f" nicodec: {p['setting']} {p['bpp']:.4f} bpp {p['psnr']:.2f} dB")
    anchors, anchor_source = ({}, "") if args.quick else load_anchors(args.anchors)
    comparison = {}
    for name, curve in {**curves, **anchors}.items():
        bd = bd_rate(ours, curve)
        single = rate_at_equal_psnr(ours[0], curve) if len(ours) == 1 else None
        comparison[name] = {"bd_rate_percent": bd, "rate_at_equal_psnr_percent": single}
    lines = [
        f"nicodec on {len(images)} images from {args.images} (mean per-image bpp and RGB PSNR)",
        "",
        "| against | BD-rate | rate at nicodec's PSNR |",
        "|---|---|---|",
    ]
    for name, row in comparison.items():
        bd = "n/a" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.1f}%"
        single = "outside its range" if row["rate_at_equal_psnr_percent"] is None else f"{row['rate_at_equal_psnr_percent']:+.1f}%"
        lines.append(f"| {name} | {bd} | {single} |")
    if anchors:
        lines += ["", f"Published anchors: {anchor_source}"]
    table = "\n".join(lines)
    print("\n" + table)
    result = {
        "images": [p.name for p in paths],
        "nicodec": ours,
        "curves": curves,
        "skipped_codecs": missing,
        "anchors_source": anchor_source,
        "comparison": comparison,
    }
    write_report(args.json, result)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    return result


if __name__ == "__main__":
    main()
