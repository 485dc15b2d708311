"""Rate-distortion on a folder of images: nicodec against Pillow's codecs and published anchors.

    python benchmarks/rd.py [--images ../shared/data/kodak] [--model DIR ...] [--qualities Q ...]
                            [--json PATH] [--markdown PATH] [--plot PATH]
    python benchmarks/rd.py --quick      # two images, two qualities: keeps the harness working

JPEG XL is measured when pillow-jxl-plugin is installed (``pip install ".[bench]"``).

Each codec is swept over its quality setting; each setting gives one point, the
mean of the per-image bits per pixel (from real file sizes) and of the per-image
PSNR over RGB. A variable-rate nicodec model (the shipped one) is swept the same
way over ``--qualities`` (1 to 100; by default ``NICODEC_QUALITIES``), and each
point records its quality. A single-rate model (an older one, ``--model DIR``)
gives one point, its quality None; the points of several single-rate models
(``--model`` is repeatable) form one curve, as a set of models trained at
different rates does. A variable-rate model makes its curve alone.

BD-rate (Bjøntegaard, VCEG-M33) with piecewise cubic Hermite interpolation (PCHIP) of
each curve's log10 rate as a function of PSNR, the method of the JCT-VC and JVET common test
conditions' spreadsheets, computed by the ``bjontegaard`` package (FAU-LMS, the bench and dev
extras): the mean difference of the two interpolants over the PSNR range both curves cover
gives the rate difference in percent; negative means nicodec needs fewer bits. (Until
2026-11-30 this program fitted one least-squares cubic through all of a curve's points, far
outside the overlap too: the figures moved by up to 0.8 points, none of the bars' verdicts.)
Curves that share no range of PSNR have none (None, "no
overlap"); the range used is in the JSON, with the share of nicodec's range it is, and
the table's notes flag a BD-rate over less than 80% of that range or against a curve
whose PSNR does not rise with its rate at every step (both make the figure rough). A one-point nicodec curve (a single
single-rate model) has no BD-rate: the table gives the rate difference at equal
PSNR instead, each other curve interpolated (log rate, linearly in PSNR) at
nicodec's PSNR.

MS-SSIM (RGB: the mean over R, G and B of each channel's 5-scale MS-SSIM, Wang et
al. 2003, computed by pytorch-msssim) is measured beside PSNR for every image when
pytorch-msssim is installed (the bench extra), and the same comparisons are made on
its decibel scale, -10 log10(1 - MS-SSIM); the published anchors carry PSNR only
(each anchor's description, from the anchors file, is in the JSON and the table).
Every point keeps its per-image values (``per_image``, in the order of ``images``).
``--plot`` draws PSNR and MS-SSIM against bpp, anchors included (matplotlib).

Time: one encode and decode of a Kodak image takes about 0.5 s on 2 cores with the
shipped model, so its 8 qualities on the 24 images take 2 to 3 minutes, MS-SSIM included;
with the classic codecs' sweeps the whole run took 8.3 minutes (run_all.py of 2026-12-05).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, features

from common import MSSSIM_MIN_SIDE, coding_quality, image_paths, msssim, msssim_db, msssim_unavailable, psnr, publish
from common import check_encodes, read_rgb, write_file

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
ANCHORS = SHARED / "anchors" / "kodak_published.json"
"""The published Kodak curves (``--anchors``'s default)."""

QUALITIES = {
    "jpeg444": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "jpeg444opt": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "jpeg420": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "webp": [0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif444": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
    "avif420": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
    "jxl": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
}
"""Each codec's sweep, reaching below nicodec's lowest PSNR (25.9 to 26.2 dB on Kodak at quality 1 with vr-3d to vr-5f)
where the codec can: a sweep that stops above it leaves nicodec's cheapest points out of the
BD-rate. ``jpeg444opt`` is ``jpeg444`` with optimised Huffman tables (the same pixels in files 40%
smaller at quality 5 on Kodak, 2% at 95), what a careful JPEG user gets; Pillow's default is off."""
QUICK_QUALITIES = [30, 80]
NICODEC_QUALITIES = [1.0, 15.0, 29.0, 43.0, 57.0, 72.0, 86.0, 100.0]
"""Eight qualities spread over 1..100, the whole range of a variable-rate model."""
QUICK_NICODEC_QUALITIES = [15.0, 86.0]


def save_options(codec: str, quality: int) -> tuple[str, dict]:
    if codec.startswith("jpeg"):
        return "JPEG", {"quality": quality, "subsampling": 2 if codec == "jpeg420" else 0,
                        "optimize": codec == "jpeg444opt"}
    if codec == "webp":
        return "WEBP", {"quality": quality, "method": 4}
    if codec.startswith("avif"):
        return "AVIF", {"quality": quality, "subsampling": "4:4:4" if codec == "avif444" else "4:2:0"}
    if codec == "jxl":
        return "JXL", {"quality": quality}  # libjxl's default effort (7)
    raise ValueError(codec)


def summarize(setting, bpp: list[float], quality_db: list[float], ms: list[float | None], **info) -> dict:
    """One rate-distortion point: the means over the images, and the per-image values (``info`` after the setting)."""
    mean_ms = None if None in ms else float(np.mean(ms))
    return {
        "setting": setting,
        **info,
        "bpp": float(np.mean(bpp)),
        "psnr": float(np.mean(quality_db)),
        "msssim": mean_ms,
        "msssim_db": msssim_db(mean_ms),
        "per_image": {"bpp": bpp, "psnr": quality_db, "msssim": ms},
    }


def classic_code(codec: str, quality: int, image: np.ndarray) -> tuple[bytes, np.ndarray]:
    """``image`` coded by Pillow as ``codec`` at ``quality`` (:func:`save_options`): the file and its decoded pixels."""
    fmt, options = save_options(codec, quality)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return buffer.getvalue(), np.asarray(decoded.convert("RGB"))


def classic_point(codec: str, quality: int, images: list[np.ndarray]) -> dict:
    bpp, quality_db, ms = [], [], []
    for image in images:
        data, decoded = classic_code(codec, quality, image)
        bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
        quality_db.append(psnr(decoded, image))
        ms.append(msssim(decoded, image))
    return summarize(quality, bpp, quality_db, ms)


def nicodec_point(codec, quality: float | None, images: list[np.ndarray]) -> dict:
    """One point of nicodec: ``codec`` at ``quality`` (None for a single-rate model) on every image."""
    bpp, quality_db, ms = [], [], []
    for image in images:
        data = codec.encode(image, quality=quality)
        decoded = codec.decode(data, as_array=True)
        bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
        quality_db.append(psnr(decoded, image))
        ms.append(msssim(decoded, image))
    setting = codec.model_id if quality is None else f"{codec.model_id} q{quality:g}"
    return summarize(setting, bpp, quality_db, ms, model=codec.model_id, quality=quality)


def compare(ours: list[dict], curve: list[dict]) -> dict:
    """nicodec's curve against another: BD-rate on PSNR and on MS-SSIM (dB), with the range each
    is taken over; for a one-point nicodec curve, the rate difference at its PSNR and MS-SSIM."""
    if len(ours) == 1:
        return {
            "rate_at_equal_psnr_percent": rate_at_equal_psnr(ours[0], curve),
            "rate_at_equal_msssim_percent": rate_at_equal_psnr(ours[0], curve, "msssim_db"),
        }
    return {
        "bd_rate_percent": bd_rate(ours, curve),
        "overlap_psnr_db": overlap(ours, curve),
        "overlap_share_of_nicodec_psnr": overlap_share(ours, curve),
        "monotonic_psnr": monotonic(curve),
        "bd_rate_msssim_percent": bd_rate(ours, curve, "msssim_db"),
        "overlap_msssim_db": overlap(ours, curve, "msssim_db"),
    }


SHORT_OVERLAP = 0.8
"""A BD-rate over less than this share of nicodec's PSNR range is flagged: it speaks for part of the curve only."""


def overlap_share(ours: list[dict], curve: list[dict], metric: str = "psnr") -> float | None:
    """The share of nicodec's range of ``metric`` that the BD-rate against ``curve`` is taken over."""
    span, points = overlap(ours, curve, metric), [p[metric] for p in _with(ours, metric)]
    if span is None or max(points) == min(points):
        return None
    return round((span[1] - span[0]) / (max(points) - min(points)), 3)


def monotonic(curve: list[dict], metric: str = "psnr") -> bool:
    """Whether ``metric`` rises with the rate from point to point (a cubic fit of a curve that
    folds back on itself is not what Bjøntegaard's method assumes)."""
    ordered = sorted(_with(curve, metric), key=lambda p: p["bpp"])
    return all(a[metric] < b[metric] for a, b in zip(ordered, ordered[1:]))


def cautions(result: dict) -> list[str]:
    """The comparisons to read with care: BD-rates over a short part of nicodec's range, curves
    that are not monotonic, codecs not installed, anchors not found."""
    notes = []
    for name, row in result["comparison"].items():
        share = row.get("overlap_share_of_nicodec_psnr")
        if share is not None and share < SHORT_OVERLAP:
            notes.append(f"{name}: the PSNR BD-rate covers only {100 * share:.1f}% of nicodec's PSNR range")
        if row.get("monotonic_psnr") is False:
            notes.append(f"{name}: PSNR does not rise with the rate at every step, so its fit is rough")
    if result.get("skipped_codecs"):
        notes.append(f"not measured (not installed here): {', '.join(result['skipped_codecs'])}")
    if result.get("anchors_missing"):
        notes.append(f"no published anchors: {result['anchors_missing']}")
    return notes


BD_METHOD = "pchip"
"""The ``bjontegaard`` package's interpolation: piecewise cubic Hermite, as in the JCT-VC and
JVET common test conditions."""


def bd_rate(test: list[dict], reference: list[dict], metric: str = "psnr") -> float | None:
    """Bjøntegaard delta rate of ``test`` against ``reference`` in percent.

    Each curve's log10 rate is interpolated as a function of ``metric`` piecewise (PCHIP,
    :data:`BD_METHOD`; a line between two points), its points sorted by ``metric`` and a
    repeated value of it kept once. The difference of the interpolants' means over the range
    both curves cover (:func:`overlap`) is the log of the rate ratio.

    Args:
        metric: the points' quality key: ``psnr`` or ``msssim_db``.

    Returns:
        The percentage (negative: ``test`` needs fewer bits), or None when a curve has
        fewer than two points with the metric or the curves share no range of it.
    """
    if overlap(test, reference, metric) is None:
        return None
    import bjontegaard

    ours, theirs = (_increasing(curve, metric) for curve in (test, reference))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its own note on a small overlap: overlap_share reports ours
        value = bjontegaard.bd_rate([p["bpp"] for p in theirs], [p[metric] for p in theirs],
                                    [p["bpp"] for p in ours], [p[metric] for p in ours],
                                    method=BD_METHOD, require_matching_points=False, min_overlap=0)
    return float(value)


def bd_rate_unavailable() -> str | None:
    """Why :func:`bd_rate` cannot run here (the bjontegaard package missing), or None when it can:
    checked before the sweeps, which it would otherwise end in an ImportError."""
    try:
        importlib.import_module("bjontegaard")
    except ImportError as exc:
        return f"BD-rates need the bjontegaard package (the bench and dev extras: pip install -e \".[bench]\"): {exc}"
    return None


def _increasing(curve: list[dict], metric: str) -> list[dict]:
    """The points with ``metric``, sorted by it, each value once, the cheapest of equals (an
    interpolant needs x to rise)."""
    points, seen = [], set()
    for p in sorted(_with(curve, metric), key=lambda p: (p[metric], p["bpp"])):
        if p[metric] not in seen:
            seen.add(p[metric])
            points.append(p)
    return points


def overlap(test: list[dict], reference: list[dict], metric: str = "psnr") -> list[float] | None:
    """``[lo, hi]``: the range of ``metric`` both curves cover, or None (fewer than two points, or disjoint)."""
    test, reference = _with(test, metric), _with(reference, metric)
    if len(test) < 2 or len(reference) < 2:
        return None
    lo = max(min(p[metric] for p in test), min(p[metric] for p in reference))
    hi = min(max(p[metric] for p in test), max(p[metric] for p in reference))
    return [float(lo), float(hi)] if hi > lo else None


def rate_at_equal_psnr(point: dict, reference: list[dict], metric: str = "psnr") -> float | None:
    """Percent rate difference of one point against a curve at the point's quality (None outside it).

    ``metric`` is the quality key, as for :func:`bd_rate`: despite the name, ``msssim_db``
    compares at equal MS-SSIM.
    """
    ordered = sorted(_with(reference, metric), key=lambda p: p[metric])
    if not _with([point], metric) or not ordered:
        return None
    d = [p[metric] for p in ordered]
    if not d[0] <= point[metric] <= d[-1]:
        return None
    log_rate = np.interp(point[metric], d, np.log10([p["bpp"] for p in ordered]))
    return float((point["bpp"] / 10**log_rate - 1) * 100)


def _with(curve: list[dict], metric: str) -> list[dict]:
    """The points of a curve that carry a finite value of ``metric``."""
    return [p for p in curve if p.get(metric) is not None and np.isfinite(p[metric])]


def plot(result: dict, path: Path, max_bpp: float = 2.0) -> None:
    """Draw PSNR (and MS-SSIM, when measured) against bpp: every curve, anchors dashed, nicodec's
    curve in black with each point's quality beside it.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("psnr", "PSNR over RGB (dB)")]
    if _with(result["nicodec"], "msssim_db"):
        panels.append(("msssim_db", "MS-SSIM over RGB (dB: -10 log10(1 - MS-SSIM))"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 6.5), squeeze=False)
    colours = plt.get_cmap("tab20")
    models = ", ".join(dict.fromkeys(p.get("model") or p.get("setting", "") for p in result["nicodec"]))
    for ax, (metric, label) in zip(axes[0], panels):
        curves = {**result["curves"], **(result.get("anchors", {}) if metric == "psnr" else {})}
        shown = []
        for i, (name, curve) in enumerate(curves.items()):
            points = sorted(_with(curve, metric), key=lambda p: p["bpp"])
            anchor = name.startswith("published:")
            ax.plot([p["bpp"] for p in points], [p[metric] for p in points], "--" if anchor else "-",
                    marker="." if anchor else "o", markersize=4, linewidth=1 if anchor else 1.6,
                    color=colours(i % 20), label=name)
            shown += [p[metric] for p in points if p["bpp"] <= max_bpp]
        ours = sorted(_with(result["nicodec"], metric), key=lambda p: p["bpp"])
        ax.plot([p["bpp"] for p in ours], [p[metric] for p in ours], "k-*", markersize=9, linewidth=2,
                label=f"nicodec ({models})" if models else "nicodec", zorder=5)
        for p in ours:
            if p.get("quality") is not None:
                ax.annotate(f"q{p['quality']:g}", (p["bpp"], p[metric]), textcoords="offset points", xytext=(-6, 7),
                            ha="right", fontsize=7, zorder=6)
        shown += [p[metric] for p in ours]
        ax.set_xlim(0, max_bpp)
        ax.set_ylim(min(shown) - 0.5, max(shown) + 0.5)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle(f"Rate-distortion on {len(result['images'])} images (means of per-image bpp and quality)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_file(path, buffer.getvalue())


def load_anchors(path: Path) -> tuple[dict[str, list[dict]], str, dict[str, str]]:
    """The published curves (``published:NAME``), the file's source, and each curve's description
    (none when there is no file).

    Raises:
        ValueError: the file is not JSON of that shape (``{"codecs": {NAME: {"bpp": [...],
            "psnr_rgb": [...]}}}``), in one line naming it.
    """
    if not path.is_file():
        return {}, "", {}
    try:
        data = json.loads(path.read_text())
        curves = {}
        for name, entry in data["codecs"].items():
            bpp, psnr = entry["bpp"], entry["psnr_rgb"]
            if len(bpp) != len(psnr):  # zip cut the longer short, in silence
                raise ValueError(f"{name} has {len(bpp)} bpp values and {len(psnr)} PSNRs")
            points = [{"bpp": float(b), "psnr": float(q)} for b, q in zip(bpp, psnr)]
            if not all(0 < p["bpp"] < math.inf and math.isfinite(p["psnr"]) for p in points):
                raise ValueError(f"{name} has a bpp that is not a positive number or a PSNR that is not finite")
            curves[f"published:{name}"] = points
        descriptions = {f"published:{name}": entry.get("description", "") for name, entry in data["codecs"].items()}
        return curves, data.get("source", ""), descriptions
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        why = f"no {exc} entry" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{path} is not a file of published curves ({why})") from None


def available(codec: str) -> bool:
    """AVIF needs a Pillow built with libavif; JPEG XL needs pillow-jxl-plugin (the bench extra)."""
    if codec.startswith("avif"):
        return features.check("avif")
    if codec == "jxl":
        try:
            importlib.import_module("pillow_jxl")  # registers the JXL format with Pillow
        except ImportError:
            return False
    return True


def markdown(result: dict) -> str:
    """nicodec's points, then the comparison table: BD-rate for a curve, the rate at equal quality for one point."""
    ours = result["nicodec"]
    lines = [
        f"nicodec on {len(result['images'])} images from {result['images_folder']} (mean per-image bpp, RGB PSNR, RGB MS-SSIM)",
        "",
        "| nicodec model | quality | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for p in ours:
        ms = "n/a | n/a" if p["msssim"] is None else f"{p['msssim']:.4f} | {p['msssim_db']:.2f}"
        quality = "single-rate" if p.get("quality") is None else f"{p['quality']:g}"
        lines.append(f"| {p.get('model', p['setting'])} | {quality} | {p['bpp']:.4f} | {p['psnr']:.2f} | {ms} |")

    def cell(value: float | None, missing: str) -> str:
        return missing if value is None else f"{value:+.1f}%"

    def span(value: list[float] | None) -> str:
        return "" if value is None else f"{value[0]:.2f} to {value[1]:.2f}"

    def missing(name: str, metric: str) -> str:
        """Why a comparison is empty: no data on one side, or curves that do not meet."""
        if metric == "msssim" and (result["msssim_skipped"] or name not in result["curves"]):
            return "n/a"  # not measured here, or an anchor (PSNR only)
        return "no overlap" if len(ours) > 1 else "outside its range"

    if len(ours) > 1:
        lines += [
            "",
            "BD-rate of nicodec's curve against each curve (Bjøntegaard: the mean rate difference over the range of "
            "PSNR, or of MS-SSIM in dB, that both curves cover; negative: nicodec needs fewer bits)",
            "",
            "| against | BD-rate (PSNR) | over PSNR (dB) | BD-rate (MS-SSIM) | over MS-SSIM (dB) |",
            "|---|---|---|---|---|",
        ]
        for name, row in result["comparison"].items():
            lines.append(
                f"| {name} | {cell(row['bd_rate_percent'], missing(name, 'psnr'))} | {span(row['overlap_psnr_db'])} "
                f"| {cell(row['bd_rate_msssim_percent'], missing(name, 'msssim'))} | {span(row['overlap_msssim_db'])} |"
            )
    else:
        lines += [
            "",
            "Rate difference at nicodec's one point (each curve interpolated at its PSNR or MS-SSIM; negative: nicodec "
            "needs fewer bits)",
            "",
            "| against | rate at nicodec's PSNR | rate at nicodec's MS-SSIM |",
            "|---|---|---|",
        ]
        for name, row in result["comparison"].items():
            lines.append(
                f"| {name} | {cell(row['rate_at_equal_psnr_percent'], missing(name, 'psnr'))} "
                f"| {cell(row['rate_at_equal_msssim_percent'], missing(name, 'msssim'))} |"
            )
    if result["anchors_source"]:
        lines += ["", f"Published anchors: {result['anchors_source']}"]
        described = [f"{name.removeprefix('published:')}: {text}"
                     for name, text in result.get("anchors_descriptions", {}).items() if text]
        if described:
            lines += ["", "Each anchor, as the file describes it: " + "; ".join(described) + "."]
    if result["msssim_skipped"]:
        lines += ["", f"MS-SSIM not measured: {result['msssim_skipped']}"]
    notes = cautions(result)
    if notes:
        lines += ["", "Read with care: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from nicodec import Codec, NicodecError, QualityError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "kodak")
    parser.add_argument("--model", type=Path, action="append", default=None,
                        help="nicodec model folder (repeatable for single-rate models; default: the shipped one)")
    parser.add_argument("--qualities", type=float, nargs="+", default=None,
                        help="qualities of a variable-rate model, 1 to 100 (default: "
                             f"{' '.join(f'{q:g}' for q in NICODEC_QUALITIES)}; with --quick, "
                             f"{' '.join(f'{q:g}' for q in QUICK_NICODEC_QUALITIES)})")
    parser.add_argument("--anchors", type=Path, default=ANCHORS)
    parser.add_argument("--quick", action="store_true",
                        help="two images, two qualities per codec; the published anchors are left out")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="PNG of quality against bpp (needs matplotlib)")
    args = parser.parse_args(argv)

    # The models first, so that a wrong --model or --qualities fails before the sweeps.
    try:
        models = [Codec(m, providers="cpu") for m in (args.model or [None])]
    except NicodecError as exc:  # a folder that is no model
        parser.error(str(exc))
    for codec in models:
        check_encodes(parser, codec)
    variable = [c for c in models if c.model.variable_rate]
    if variable and len(models) > 1:
        parser.error(f"{variable[0].model_id} is variable-rate: its qualities make the curve, so give it as the only --model")
    if args.qualities and not variable:
        parser.error(f"{models[0].model_id} is single-rate: it codes at one rate and takes no --qualities")
    qualities = sorted(set(args.qualities or (QUICK_NICODEC_QUALITIES if args.quick else NICODEC_QUALITIES)))
    try:  # each quality checked, and rounded to float32 as the files' headers record it
        settings = [(c, coding_quality(c, q)) for c in variable for q in qualities] or [(c, None) for c in models]
    except QualityError as exc:
        parser.error(f"--qualities: {exc}")
    # What the end needs, before the sweeps (11 minutes on Kodak) that it would otherwise end.
    no_bd_rate = bd_rate_unavailable() if len(settings) > 1 else None  # one point: rates at equal PSNR
    if no_bd_rate:
        raise SystemExit(no_bd_rate)
    try:
        anchors, anchor_source, anchor_descriptions = ({}, "", {}) if args.quick else load_anchors(args.anchors)
    except ValueError as exc:
        parser.error(f"--anchors: {exc}")

    paths = image_paths(args.images, 2 if args.quick else 0)
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    images = [read_rgb(p) for p in paths]
    codecs = [c for c in QUALITIES if available(c)]
    missing = [c for c in QUALITIES if c not in codecs]
    if missing:
        print(f"skipped (not installed): {', '.join(missing)}")
    no_msssim = msssim_unavailable()
    if no_msssim is None and min(min(i.shape[:2]) for i in images) < MSSSIM_MIN_SIDE:
        no_msssim = f"an image has a side shorter than {MSSSIM_MIN_SIDE} pixels"
    if no_msssim:
        print(f"MS-SSIM not measured: {no_msssim}")
    curves: dict[str, list[dict]] = {}
    for codec in codecs:
        curves[codec] = [classic_point(codec, q, images) for q in (QUICK_QUALITIES if args.quick else QUALITIES[codec])]
        print(f"{codec:>8}: " + ", ".join(f"q{p['setting']} {p['bpp']:.3f} bpp {p['psnr']:.2f} dB" for p in curves[codec]),
              flush=True)
    ours = []
    for codec, quality in settings:
        ours.append(nicodec_point(codec, quality, images))
        p = ours[-1]
        ms = "" if p["msssim"] is None else f", MS-SSIM {p['msssim']:.4f} ({p['msssim_db']:.2f} dB)"
        print(f" nicodec: {p['setting']} {p['bpp']:.4f} bpp {p['psnr']:.2f} dB{ms}", flush=True)
    anchors_missing = None if args.quick or anchors else f"{args.anchors} not found"
    if anchors_missing:
        print(f"warning: no published anchors: {anchors_missing}")
    result = {
        "images_folder": str(args.images),
        "images": [p.name for p in paths],
        "msssim_definition": "mean over R, G, B of the per-channel 5-scale MS-SSIM (Wang et al. 2003; pytorch-msssim, "
                             "11-tap Gaussian window, sigma 1.5, data range 255)",
        "msssim_skipped": no_msssim,
        "nicodec": ours,
        "curves": curves,
        "skipped_codecs": missing,
        "anchors_source": anchor_source,
        "anchors_descriptions": anchor_descriptions,
        "anchors": anchors,
        "anchors_missing": anchors_missing,
        "comparison": {name: compare(ours, curve) for name, curve in {**curves, **anchors}.items()},
    }
    for note in cautions(result):
        print(f"warning: {note}")
    table = markdown(result)
    publish(result, table, args.json, args.markdown)
    if args.plot:
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    return result


if __name__ == "__main__":
    main()
