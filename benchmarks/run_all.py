"""Every benchmark in one run: rate-distortion, speed and footprint, into one JSON file, a table and a plot.

    python benchmarks/run_all.py                 # Kodak, full sweeps: writes benchmarks/results/
    python benchmarks/run_all.py --quick --out DIR
    python benchmarks/run_all.py --qualities 1 25 50 75 100 --quality 75 --out DIR   # other nicodec qualities

Writes into ``--out``, by default ``benchmarks/results``, the committed results, but only
for the standard run: without ``--out``, a run whose settings differ from it (another
``--images``, ``--qualities``, ``--quality``, ``--repeats`` or ``--threads``, ``--no-compressai``,
``--venv``, ``--no-install``, ``--anchors``, or the published anchors, a classic codec, CompressAI, matplotlib or
pytorch-msssim missing here) is
refused before it starts, naming what differs (``--out benchmarks/results`` replaces the
committed results all the same); ``--quick`` writes nothing unless ``--out`` is given.
Every file is written whole or not at all (a temporary file renamed into place), and the
last line lists them:

- ``benchmarks.json``: every number, stamped with the date and the machine (CPU
  model, cores, memory, load average), under ``rd``, ``speed`` and ``footprint``;
- ``benchmarks.md``: the tables of the three parts;
- ``rd.png``: PSNR (and MS-SSIM) against bpp for every codec, nicodec's curve and
  the published anchors (needs matplotlib; skipped with a message without it);
- ``rd.json`` and ``rd.md``: the rate-distortion part alone, as ``rd.py`` writes them.

The shipped model is variable-rate: ``rd.py`` sweeps it over ``--qualities`` (by
default 1, 15, 29, 43, 57, 72, 86 and 100) and gives its BD-rate against every curve;
``speed.py`` times it at ``--quality`` (default: the model's default quality).

``--quick`` runs each part's quick mode (two images, two qualities, one run each;
footprint without installing). The parts are ``rd.py``, ``speed.py`` and
``footprint.py``, which also run alone; their ``--help`` says what they measure.
The full run takes about 16 to 21 minutes on two cores (the committed run, of 2026-12-05 at 00:29,
"Seconds per part" in benchmarks/results/benchmarks.md: 8.3 minutes for rd.py, the nicodec
sweep of 24 images x 8 qualities with MS-SSIM and the classic codecs' sweeps, 6.3 for speed.py
and 1.6 for footprint.py, on an Intel Xeon; the run of 2026-12-02 on another Xeon: 11.2, 8.0
and 1.6; on an AMD EPYC on 2026-11-30: 7, 7.5 and 1.5).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import THREADS, load_average, machine, msssim_unavailable, whole_number, write_report, write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
"""The committed results: the standard run's, which a run with other settings does not replace unasked."""
STANDARD_THREADS = [1, 2]
STANDARD_REPEATS = 3


def main(argv: list[str] | None = None) -> dict:
    import footprint
    import rd
    import speed

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=rd.SHARED / "data" / "kodak",
                        help="the folder of the 24 Kodak PNGs (default: ../shared/data/kodak beside the checkout)")
    parser.add_argument("--anchors", type=Path, default=rd.ANCHORS,
                        help="rd.py's published points (default: ../shared/anchors/kodak_published.json)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: benchmarks/results, for the standard run only)")
    parser.add_argument("--quick", action="store_true", help="every part's quick mode")
    parser.add_argument("--repeats", type=whole_number(1), default=STANDARD_REPEATS, help="timed runs per image for speed.py")
    parser.add_argument("--threads", type=THREADS, nargs="+", default=STANDARD_THREADS)
    parser.add_argument("--qualities", type=float, nargs="+", default=None,
                        help="nicodec's qualities for rd.py (default: rd.py's own)")
    parser.add_argument("--quality", type=float, default=None,
                        help="nicodec's quality for speed.py (default: the model's default)")
    parser.add_argument("--no-compressai", action="store_true")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--venv", type=Path, default=None, help="footprint of this venv instead of a fresh install")
    where.add_argument("--no-install", action="store_true", help="footprint of this environment (no network)")
    args = parser.parse_args(argv)
    if args.out is None and not args.quick:
        differs = nonstandard(args)
        if differs:
            parser.error(f"not the standard run ({'; '.join(differs)}), so it does not replace the committed "
                         f"results in {RESULTS}: give --out DIR (--out {RESULTS} to replace them all the same)")
    if not args.images.is_dir():
        parser.error(f"no folder {args.images}: the Kodak images are looked for in ../shared/data/kodak beside the "
                     "checkout; give their folder with --images DIR")
    out = args.out if args.out or args.quick else RESULTS
    if not (args.venv or args.no_install or args.quick):
        problem = footprint.index_unreachable()
        if problem:  # found now, not after rd and speed (15 minutes), whose figures would be lost
            parser.error(f"the footprint's fresh install needs onnxruntime from a package index, which pip cannot get "
                         f"({problem}): give --no-install to measure this environment, or --venv PATH")

    quick = ["--quick"] if args.quick else []
    images = ["--images", str(args.images)]
    report: dict = {"quick": args.quick, "seconds": {}, "load_average_before": {}}
    report["load_average_before"]["rd"] = load_average()
    start = time.perf_counter()
    rd_args = images + quick + ["--anchors", str(args.anchors)]
    rd_args += ["--qualities", *map(str, args.qualities)] if args.qualities else []
    report["rd"] = rd.main(rd_args)
    report["seconds"]["rd"] = round(time.perf_counter() - start, 1)

    report["load_average_before"]["speed"] = load_average()
    start = time.perf_counter()
    speed_args = images + quick + ["--repeats", str(args.repeats), "--threads", *map(str, args.threads)]
    speed_args += [] if args.quality is None else ["--quality", str(args.quality)]
    report["speed"] = speed.main(speed_args + (["--no-compressai"] if args.no_compressai else []))
    report["seconds"]["speed"] = round(time.perf_counter() - start, 1)

    report["load_average_before"]["footprint"] = load_average()
    start = time.perf_counter()
    footprint_args = images + quick + ["--threads", str(max(args.threads))]
    footprint_args += ["--venv", str(args.venv)] if args.venv else ["--no-install"] if args.no_install else []
    report["footprint"] = footprint.main(footprint_args)
    report["seconds"]["footprint"] = round(time.perf_counter() - start, 1)

    report["plot"] = None
    if out is not None:
        written = write_results(out, report)
        print(f"\nwrote {', '.join(map(str, written))}")
    return report


def nonstandard(args: argparse.Namespace) -> list[str]:
    """How this run differs from the standard one, whose figures README quotes and ``benchmarks/results``
    holds: each option given another value, and each part missing here; empty for the standard run."""
    import rd

    differs = []
    if args.images.resolve() != (rd.SHARED / "data" / "kodak").resolve():
        differs.append(f"--images {args.images}")
    if args.qualities and sorted(set(args.qualities)) != rd.NICODEC_QUALITIES:
        differs.append("--qualities " + " ".join(f"{q:g}" for q in args.qualities))
    if args.quality is not None:
        differs.append(f"--quality {args.quality:g}")
    if args.repeats != STANDARD_REPEATS:
        differs.append(f"--repeats {args.repeats}")
    if sorted(set(args.threads)) != STANDARD_THREADS:
        differs.append("--threads " + " ".join(map(str, args.threads)))
    differs += [option for option, given in (("--no-compressai", args.no_compressai), ("--venv", args.venv),
                                              ("--no-install", args.no_install)) if given]
    if args.anchors.resolve() != rd.ANCHORS.resolve():
        differs.append(f"--anchors {args.anchors}")
    elif not args.anchors.is_file():
        differs.append(f"no published anchors ({args.anchors} not found)")
    missing = [c for c in rd.QUALITIES if not rd.available(c)]
    if missing:
        differs.append(f"codecs not installed: {', '.join(missing)}")
    return differs + missing_parts(args.no_compressai)


def missing_parts(no_compressai: bool) -> list[str]:
    """What else the committed results hold that this environment cannot measure: CompressAI's
    rows in the speed table (optional, and not in the bench extra), the plot, the MS-SSIM columns."""
    import importlib.util

    missing = []
    if not no_compressai and importlib.util.find_spec("compressai") is None:
        missing.append("CompressAI not installed (the speed table's rival)")
    if importlib.util.find_spec("matplotlib") is None:
        missing.append("matplotlib not installed (the plot)")
    unmeasured = msssim_unavailable()
    if unmeasured:
        missing.append(f"no MS-SSIM: {unmeasured}")
    return missing


def write_results(out: Path, report: dict) -> list[Path]:
    """Write the plot, ``rd.json``, ``rd.md``, ``benchmarks.json`` and ``benchmarks.md`` into ``out``, each
    whole or not at all; return the files written."""
    import rd

    written = []
    try:
        rd.plot(report["rd"], out / "rd.png")
        report["plot"] = "rd.png"
        written.append(out / "rd.png")
    except ImportError as exc:
        print(f"no plot: matplotlib is not installed ({exc})")
    # Every file at the end, so that a part that fails leaves the last complete set as it was.
    write_report(out / "rd.json", report["rd"])
    write_text(out / "rd.md", rd.markdown(report["rd"]) + "\n")
    write_report(out / "benchmarks.json", report)
    write_text(out / "benchmarks.md", markdown(report) + "\n")
    return written + [out / name for name in ("rd.json", "rd.md", "benchmarks.json", "benchmarks.md")]


def markdown(report: dict) -> str:
    import footprint
    import rd
    import speed

    m = machine()
    parts = [
        "# nicodec benchmarks" + (" (quick mode: not representative)" if report["quick"] else ""),
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['memory_gb']} GB; {m['platform']}; "
        f"load average before each part {json.dumps(report.get('load_average_before'))} and at the end "
        f"{m['load_average']} (the times are only as good as the machine was quiet). "
        f"Seconds per part: {json.dumps(report['seconds'])}.",
        "",
        "## Rate-distortion",
        "",
        rd.markdown(report["rd"]),
    ]
    if report["plot"]:
        parts += ["", f"![PSNR against bpp]({report['plot']})"]
    parts += ["", "## Speed", "", speed.markdown(report["speed"]), "", "## Footprint", "",
              footprint.markdown(report["footprint"])]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
