"""Across x86-64 instruction sets: the same integers where onnxruntime runs other kernels.

    python benchmarks/cross_isa.py [--quick] [--levels x86-64-v2,avx,x86-64-v3] [--json benchmarks/results/cross_isa.json]

onnxruntime picks its x86 kernels (MLAS: SSE, AVX2, AVX-512, VNNI) by what the processor says
it has (CPUID), so the integer ``ConvInteger`` arithmetic that decides every table runs on
other code on an Atom-class edge box (SSE4.2, no AVX: Celeron J and N before the N100,
Pentium Silver, Atom C3000), an old desktop (AVX without AVX2), a laptop (AVX2) or a server
(AVX-512). Under qemu-user, ``-cpu MODEL`` makes this machine's Python see such a processor:
qemu answers CPUID for that model, so onnxruntime, numpy and glibc choose that model's code
(qemu 7.2 emulates up to AVX2, no AVX-512). Each level:

- the entropy-parameter graph on random hyper-latents of every size from 1x1 to 8x8 and
  12x16 (values from the quantiser's extremes to small ones), with 1 and 2 threads, against
  this machine's integers;
- images encoded there and decoded here, and encoded here and decoded there: the integers
  (``z_hat``, the latent symbols, ``mean_q``) must be identical; the float synthesis may round
  a pixel the other way; whether both machines wrote the same file;
- evidence that the emulated process ran that level's code: every instruction qemu translated
  (``-d in_asm``) in a process that starts Python, makes a Codec and runs the entropy-parameter
  graph (so glibc's, numpy's and onnxruntime's choices of code all count), by the registers it
  names (``xmm``: SSE, ``ymm``: AVX, ``zmm``: AVX-512). x86-64-v2 must show no ymm or zmm, as
  the processor it emulates would fault on them (qemu 7.2 runs them all the same).

Needs ``qemu-x86_64-static`` (Debian's qemu-user-static) on an x86-64 machine; the emulated
side is this same environment, so nothing is installed. ``cross_arch.py`` does the same
between x86-64 and aarch64.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import write_report
from cross_arch import INTEGERS, KODAK, _checkout, _qemu_version, code_all, compare, dump, sources

QEMU = "qemu-x86_64-static"
LEVELS = {
    # level: (qemu -cpu model, what it stands for)
    "x86-64-v2": ("Nehalem", "SSE4.2, no AVX: Atom-class edge boxes (Celeron J/N before the N100, Pentium Silver)"),
    "avx": ("SandyBridge", "AVX without AVX2 or FMA: Sandy and Ivy Bridge (2011-2012)"),
    "x86-64-v3": ("Haswell-noTSX", "AVX2 and FMA, no AVX-512: most desktop and laptop processors"),
}
SWEEP = [(h, w) for h in range(1, 9) for w in range(1, 9)] + [(12, 16)]
SWEEP_THREADS = (1, 2)
FEATURES = ("SSE41", "SSE42", "AVX", "FMA3", "AVX2", "AVX512F", "AVX512_SKX", "AVX512VNNI")
# qemu's notes on features of the model it does not emulate (Haswell's TSX, invpcid): not errors.
QEMU_NOTE = re.compile(r"^qemu-x86_64(-static)?: warning: TCG doesn't support requested feature")


def available() -> str | None:
    """Why the check cannot run here, or None when it can."""
    if platform.machine() != "x86_64":
        return f"runs on an x86-64 machine, not {platform.machine()}"
    if shutil.which(QEMU) is None:
        return f"needs {QEMU} (Debian: apt-get install qemu-user-static)"
    return None


# -- both sides -------------------------------------------------------------------------


def features() -> list[str]:
    """The instruction sets numpy found on this (perhaps emulated) processor, from CPUID."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__

    return [name for name in FEATURES if __cpu_features__.get(name)]


def side(work: Path, name: str, other: str, quick_sweep: bool) -> dict:
    """One side's work in ``work/name``: the sweep, and :func:`cross_arch.code_all`'s files and dumps."""
    from nicodec import Codec

    arrays = {}
    for threads in SWEEP_THREADS:
        codec = Codec(providers="cpu", threads=threads)
        rng = np.random.default_rng(5)
        for h, w in SWEEP[:8] if quick_sweep else SWEEP:
            z = rng.integers(-40, 41, size=(1, codec.model.hyper_channels, h, w)).astype(np.int32)
            z.flat[: min(4, z.size)] = [-(2**24), 2**24, -128, 127][: min(4, z.size)]
            scale_index, mean_q = codec._entropy_parameters(z)
            arrays[f"t{threads}-{h}x{w}-scale_index"], arrays[f"t{threads}-{h}x{w}-mean_q"] = scale_index, mean_q
    np.savez(work / name / "sweep.npz", **arrays)
    report = code_all(work, name, Codec(providers="cpu", threads=1), other=other, floats=False)
    report["info"]["features"] = features()  # side_info has the versions
    return report


def guest_main(argv: list[str]) -> None:
    """Under qemu: ``cross_isa.py guest WORK LEVEL [quick]``; prints its report as JSON."""
    work, level = Path(argv[0]), argv[1]
    print(json.dumps(side(work, level, "host", quick_sweep=argv[2:] == ["quick"])))


def probe_main() -> None:
    """Under qemu with ``-d in_asm``: make a Codec (its exactness check) and run the entropy graph once."""
    from nicodec import Codec

    codec = Codec(providers="cpu", threads=1)
    z = np.arange(codec.model.hyper_channels * 36, dtype=np.int32).reshape(1, -1, 6, 6) % 41 - 20
    codec._entropy_parameters(z)
    print(json.dumps(features()))


# -- the emulated side ------------------------------------------------------------------


def guest(model: str, args: list[str], log: Path | None = None, timeout: float = 3600) -> str:
    """This environment's Python under ``qemu -cpu model`` with ``args``; its stdout."""
    trace = ["-d", "in_asm", "-D", str(log)] if log is not None else []
    command = [QEMU, "-cpu", model, *trace, sys.executable, __file__, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    errors = "\n".join(line for line in result.stderr.splitlines() if not QEMU_NOTE.match(line))
    if result.returncode:
        raise SystemExit(f"the emulated {model} side failed (exit {result.returncode}):\n{result.stdout}{errors}")
    return result.stdout


def dispatch(model: str, folder: Path) -> dict:
    """The instructions qemu translated for a process on ``model`` that made a Codec and ran its
    entropy graph (:func:`probe_main`), counted by the vector registers they name (``xmm`` a
    check that the log shows registers at all)."""
    log = folder / f"in_asm-{model}.log"
    seen = json.loads(guest(model, ["probe"], log).strip().splitlines()[-1])
    counts = {"instructions": 0, "xmm": 0, "ymm": 0, "zmm": 0}
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("0x"):
                counts["instructions"] += 1
                for register in ("xmm", "ymm", "zmm"):
                    counts[register] += register in line
    log.unlink()
    return {"features": seen, **counts}


# -- comparing --------------------------------------------------------------------------


def compare_sweeps(a: Path, b: Path) -> dict:
    """Differing elements between two sweeps: an array of either missing in the other, or of
    another shape, counts whole."""
    x, y = np.load(a), np.load(b)
    differ = sum(int(np.count_nonzero(x[k] != y[k])) if k in y and x[k].shape == y[k].shape else int(x[k].size)
                 for k in x.files)
    differ += sum(int(y[k].size) for k in y.files if k not in x)
    return {"arrays": len(x.files), "elements": int(sum(x[k].size for k in x.files)), "differ": differ,
            "missing": sorted(set(x.files) ^ set(y.files))}


def run_level(level: str, quick: bool, kodak: Path, work: Path) -> dict:
    """One level: the sweep and the files both ways, and the dispatch evidence."""
    from nicodec import Codec

    model, meaning = LEVELS[level]
    images = sources(quick, kodak)
    if quick:  # a quarter of the emulated work: 128x128 (a test's size)
        images = {name: pixels[64:192, 64:192] for name, pixels in images.items()}
    for folder in ("src", "host", level):
        (work / folder).mkdir(parents=True, exist_ok=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(work / "src" / f"{name}.png")
    start = time.perf_counter()
    host = side(work, "host", level, quick)
    host_s = time.perf_counter() - start
    start = time.perf_counter()
    emulated = json.loads(guest(model, ["guest", str(work), level, *(["quick"] if quick else [])]).strip().splitlines()[-1])
    guest_s = time.perf_counter() - start
    host_errors = {}
    codec = Codec(providers="cpu", threads=1)
    for name in images:  # this side's decode of the emulated side's files
        try:
            dump(codec, (work / level / f"{name}.nic").read_bytes(), work / "host" / f"other-{name}.npz")
        except Exception as exc:  # noqa: BLE001 - a desynchronised decode is a result to report
            host_errors[name] = f"{type(exc).__name__}: {exc}"
    guest_errors = {n: r["other_error"] for n, r in emulated["images"].items() if "other_error" in r}
    rows = []
    for name, pixels in images.items():
        row = {"image": name, "size": f"{pixels.shape[1]}x{pixels.shape[0]}",
               "bytes": (work / "host" / f"{name}.nic").stat().st_size,
               "files_identical": (work / "host" / f"{name}.nic").read_bytes() == (work / level / f"{name}.nic").read_bytes()}
        for key, (encoder, decoder, errors) in {"host_to_" + level: ("host", level, guest_errors),
                                                level + "_to_host": (level, "host", host_errors)}.items():
            row[key] = ({"error": errors[name]} if name in errors
                        else compare(work / encoder / f"own-{name}.npz", work / decoder / f"other-{name}.npz", pixels))
        row["ms"] = {"host_encode": host["images"][name]["encode_ms"], "emulated_encode": emulated["images"][name]["encode_ms"]}
        rows.append(row)
    start = time.perf_counter()
    evidence = dispatch(model, work)
    decodes = [row[k] for row in rows for k in row if k.startswith(("host_to_", level + "_to_"))]
    ok = [d for d in decodes if "error" not in d]
    sweep_result = compare_sweeps(work / "host" / "sweep.npz", work / level / "sweep.npz")
    return {
        "level": level,
        "qemu_cpu": model,
        "stands_for": meaning,
        "emulated": {**emulated["info"], "dispatch": evidence},
        "sweep": sweep_result,
        "images": rows,
        "summary": {
            "decode_errors": len(decodes) - len(ok),
            "integers_identical": sweep_result["differ"] == 0 and not sweep_result["missing"] and len(ok) == len(decodes)
            and all(d[f"{k}_differ"] == 0 for d in ok for k in INTEGERS),
            "max_psnr_delta": max((d["psnr_delta"] for d in ok), default=None),
            "pixels_differing": sum(d["pixels_differ"] for d in ok),
            "files_identical": sum(row["files_identical"] for row in rows),
            "images": len(rows),
        },
        "seconds": {"host_s": host_s, "emulated_s": guest_s, "dispatch_s": time.perf_counter() - start},
        "host_features": host["info"]["features"],
    }


def print_level(result: dict) -> None:
    e, s = result["emulated"], result["summary"]
    print(f"{result['level']} (qemu -cpu {result['qemu_cpu']}: {result['stands_for']})")
    d = e["dispatch"]
    print(f"  the emulated process saw {', '.join(e['features'])}; translated {d['instructions']:,} instructions, "
          f"{d.get('xmm', 'n/a')} naming xmm, {d['ymm']:,} ymm and {d['zmm']:,} zmm registers")
    sw = result["sweep"]
    print(f"  entropy parameters, {sw['arrays']} arrays of {sw['elements']:,} integers: {sw['differ']} differ")
    for row in result["images"]:
        for key in (k for k in row if k.endswith("_host") or k.startswith("host_to_")):
            d = row[key]
            if "error" in d:
                print(f"  {row['image']:<12} {key:<22} ERROR {d['error']}")
                continue
            diffs = sum(d[f"{k}_differ"] for k in INTEGERS)
            between = "inf" if d["psnr_between"] is None else f"{d['psnr_between']:.2f}"
            print(f"  {row['image']:<12} {key:<22} {diffs} of {d['integers_total']:,} integers differ, "
                  f"{d['pixels_differ']} pixel values, decodes {between} dB apart; same file: {row['files_identical']}")
    print("  " + json.dumps(s))


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["guest"]:
        guest_main(argv[1:])
        return None
    if argv[:1] == ["probe"]:
        probe_main()
        return None
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one 128x128 synthetic photo, the first 8 sweep sizes")
    parser.add_argument("--levels", default=",".join(LEVELS), help=f"comma-separated, of {', '.join(LEVELS)}")
    parser.add_argument("--images", type=Path, default=KODAK, help="the Kodak folder (kodim23.png is used)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    problem = available()
    if problem:
        raise SystemExit(problem)
    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        parser.error(f"--levels: {', '.join(unknown) or 'none given'}; known: {', '.join(LEVELS)}")
    start = time.perf_counter()
    report = {"host": {"machine": platform.machine(), "features": features(), "checkout": _checkout(),
                       "qemu": _qemu_version(QEMU)},
              "levels": []}
    for level in levels:
        with tempfile.TemporaryDirectory(prefix="nicodec-cross-isa-") as tmp:
            result = run_level(level, args.quick, args.images, Path(tmp))
        print_level(result)
        report["levels"].append(result)
    report["seconds"] = time.perf_counter() - start
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
