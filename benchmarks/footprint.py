"""Footprint of the runtime: disk, import time, model load, first-image latency and peak memory.

    python benchmarks/footprint.py [--venv PATH | --no-install] [--json PATH] [--markdown PATH]
    python benchmarks/footprint.py --quick      # no install, a small "large" image, one run

Disk: by default ``pip install "<repo>[cpu]"`` goes into a fresh temporary venv (from
PyPI, or pip's cache), and the size of its site-packages is measured before and after,
with each distribution's share (the files of its RECORD). The package is built from a
copy of the source tree, so the working tree gets no ``build/`` folder. ``--venv PATH``
measures an existing venv instead; ``--no-install`` sums the files of the installed
distributions that ``nicodec[cpu]`` requires, in the environment running this script
(no network; the nicodec folder itself is measured for an editable install).

Every time and memory figure comes from a fresh process of that environment's Python
(the temporary venv, ``--venv``, or this interpreter with ``--no-install``):

- ``import nicodec`` and ``from nicodec.codec import Codec`` (which loads onnxruntime),
  the first run (cold file cache, possibly) and the median of ``--repeats``;
- model load (``Codec(providers="cpu", threads=2).prepare()``: every graph that encoding and
  decoding run), and the encode and decode of the first Kodak image right after it
  (first-image latency) against the same image again;
- peak resident memory for encoding and for decoding a Kodak image and a 24-megapixel
  synthetic image (6000x4000), each operation in its own process (which loads only the
  graphs it runs), beside the peak after loading the whole model alone: ``VmHWM`` on Linux
  (a child's ``ru_maxrss`` starts from its parent's, through fork and exec), ``ru_maxrss``
  on macOS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import numpy as np

from common import THREADS, image_size, image_paths, publish, read_rgb, whole_number

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KODAK = REPO.parent / "shared" / "data" / "kodak"

DIST_SIZES = r"""
import importlib.metadata as md, json
out = {}
for dist in md.distributions():
    size = 0
    for f in dist.files or []:
        try:
            size += dist.locate_file(f).stat().st_size
        except OSError:
            pass
    out[dist.metadata["Name"]] = {"bytes": size, "requires": dist.requires or []}
print(json.dumps(out))
"""

TIMES = r"""
import json, sys, time
t0 = time.perf_counter()
import nicodec
t1 = time.perf_counter()
from nicodec.codec import Codec
t2 = time.perf_counter()
codec = Codec(providers="cpu", threads=int(sys.argv[2])).prepare()
t3 = time.perf_counter()
out = {"import_nicodec_ms": 1000 * (t1 - t0), "import_codec_ms": 1000 * (t2 - t1), "model_load_ms": 1000 * (t3 - t2),
       "nicodec_file": nicodec.__file__}
if sys.argv[1] != "-":
    import numpy as np
    image = np.load(sys.argv[1])
    for run in ("first", "second"):
        t4 = time.perf_counter()
        data = codec.encode(image)
        t5 = time.perf_counter()
        codec.decode(data, as_array=True)
        t6 = time.perf_counter()
        out[f"{run}_encode_ms"], out[f"{run}_decode_ms"] = 1000 * (t5 - t4), 1000 * (t6 - t5)
print(json.dumps(out))
"""

PEAK = r"""
import resource, sys
import numpy as np
from nicodec.codec import Codec
op, image_path, nic_path = sys.argv[1:4]
codec = Codec(providers="cpu", threads=int(sys.argv[4]))
if op == "encode":
    open(nic_path, "wb").write(codec.encode(np.load(image_path)))
elif op == "decode":
    codec.decode(open(nic_path, "rb").read(), as_array=True)
else:
    codec.prepare()
try:  # this process's own peak: ru_maxrss keeps the parent's after fork and exec
    status = open("/proc/self/status").read()
    print(int(status.split("VmHWM:")[1].split()[0]) / 2**10)
except (OSError, IndexError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(peak / 2**20 if sys.platform == "darwin" else peak / 2**10)
"""


def run_python(python: Path, code: str, *args: str) -> str:
    result = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{python} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def site_packages(prefix: Path) -> Path:
    found = sorted(prefix.glob("lib/python3*/site-packages")) or sorted(prefix.glob("Lib/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {prefix}")
    return found[0]


def venv_python(prefix: Path) -> Path:
    return prefix / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def source_copy(target: Path) -> Path:
    """The source tree without what a wheel leaves out (VCS, runs, checkpoints, caches, builds)."""
    skip = shutil.ignore_patterns(".git", "runs", "data", "carry", "checkpoints", "build", "dist", "*.egg-info",
                                  "__pycache__", "*.pt", "*.nic", ".venv", ".pytest_cache", ".hypothesis")
    shutil.copytree(REPO, target, ignore=skip)
    return target


def index_unreachable() -> str | None:
    """Why pip cannot get onnxruntime from a package index (an offline machine, ``PIP_NO_INDEX``,
    no wheel for this Python), or None; None too where this interpreter has no pip to ask (the
    fresh venv has its own)."""
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        return None
    try:
        found = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "onnxruntime",
                                "--disable-pip-version-check"], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if found.returncode == 0:
        return None
    lines = [line for line in found.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    return lines[-1].strip() if lines else f"pip exited with {found.returncode}"


def install_fresh(folder: Path) -> tuple[Path, dict]:
    """Make a venv in ``folder``, install ``nicodec[cpu]`` into it; its prefix and the disk figures."""
    prefix = folder / "venv"
    venv.EnvBuilder(with_pip=True).create(prefix)
    empty = folder_bytes(site_packages(prefix))
    source = source_copy(folder / "src")
    print(f"pip install '{REPO}[cpu]' into a fresh venv ...", flush=True)
    installed = subprocess.run([str(venv_python(prefix)), "-m", "pip", "install", "--quiet",
                                "--disable-pip-version-check", f"{source}[cpu]"], check=False)
    if installed.returncode:  # pip said why above
        raise SystemExit(f"pip install '{REPO}[cpu]' into a fresh venv failed (exit code {installed.returncode}); "
                         "offline, --no-install measures this environment and --venv PATH an existing one")
    return prefix, {"method": "fresh venv, pip install .[cpu]", "empty_venv_bytes": empty}


def disk(prefix: Path | None, python: Path, method: dict) -> dict:
    """Site-packages figures of a venv (``prefix``), or of nicodec[cpu]'s closure in ``python``'s environment."""
    from packaging.requirements import Requirement

    sizes = {name.lower().replace("_", "-"): v for name, v in json.loads(run_python(python, DIST_SIZES)).items()}
    wanted, todo = {}, [("nicodec", {"cpu"})]
    while todo:
        name, extras = todo.pop()
        key = name.lower().replace("_", "-")
        if key in wanted or key not in sizes:
            continue
        wanted[key] = sizes[key]["bytes"]
        for line in sizes[key]["requires"]:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((req.name, set(req.extras)))
    result = dict(method)
    if prefix is not None:
        site = site_packages(prefix)
        result["site_packages_bytes"] = folder_bytes(site)
        if "empty_venv_bytes" in result:
            result["added_bytes"] = result["site_packages_bytes"] - result["empty_venv_bytes"]
    else:
        package = Path(json.loads(run_python(python, TIMES, "-", "1"))["nicodec_file"]).parent
        wanted["nicodec"] = max(wanted.get("nicodec", 0), folder_bytes(package))  # an editable install's files
        result["site_packages_bytes"] = sum(wanted.values())
    result["distributions_bytes"] = dict(sorted(wanted.items(), key=lambda kv: -kv[1]))
    result["model_files_bytes"] = folder_bytes(REPO / "runtime" / "models")
    return result


def synthetic(height: int, width: int) -> np.ndarray:
    """A photo-like test image: smooth colour waves, edges and noise (no Kodak needed)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([128 + 80 * np.sin(xx / (53 + 17 * c)) * np.cos(yy / (71.0 - 9 * c)) for c in range(3)], axis=2)
    img[(xx // 400 + yy // 300) % 2 == 0] += 30
    img += np.random.default_rng(0).normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--venv", type=Path, default=None, help="measure this existing venv instead of a fresh one")
    where.add_argument("--no-install", action="store_true", help="measure this environment (no network)")
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--large", type=image_size, default=(6000, 4000), help="WIDTHxHEIGHT of the synthetic large image")
    parser.add_argument("--threads", type=THREADS, default=2)
    parser.add_argument("--repeats", type=whole_number(1), default=5, help="fresh processes for the import and load times")
    parser.add_argument("--quick", action="store_true", help="--no-install, a 1024x768 large image, one run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.no_install, args.large, args.repeats = True, (1024, 768), 1
    width, height = args.large
    paths = image_paths(args.images, 1)
    kodak = read_rgb(paths[0]) if paths else synthetic(512, 768)  # before a fresh install: an unreadable one is said first

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.venv:
            prefix, python, method = args.venv, venv_python(args.venv), {"method": f"existing venv {args.venv}"}
        elif args.no_install:
            prefix, python, method = None, Path(sys.executable), {"method": f"installed closure in {sys.prefix}"}
        else:
            prefix, method = install_fresh(folder)
            python = venv_python(prefix)
        footprint = {"disk": disk(prefix, python, method), "python": str(python)}
        d = footprint["disk"]
        print(f"disk: {d['site_packages_bytes'] / 2**20:.1f} MiB ({d['method']})", flush=True)

        np.save(folder / "kodak.npy", kodak)
        runs = [json.loads(run_python(python, TIMES, str(folder / "kodak.npy"), str(args.threads)))
                for _ in range(args.repeats)]
        times = {key: {"first_process": runs[0][key], "median": statistics.median(r[key] for r in runs)}
                 for key in runs[0] if key.endswith("_ms")}
        footprint["times_ms"] = times
        footprint["kodak_image"] = paths[0].name if paths else "synthetic 768x512"
        print("times (ms, median of fresh processes): " + ", ".join(f"{k} {v['median']:.1f}" for k, v in times.items()),
              flush=True)

        np.save(folder / "large.npy", synthetic(height, width))
        peaks = {"model_only": float(run_python(python, PEAK, "load", "-", "-", str(args.threads)))}
        for name in ("kodak", "large"):
            for op in ("encode", "decode"):
                peaks[f"{name}_{op}"] = float(run_python(python, PEAK, op, str(folder / f"{name}.npy"),
                                                         str(folder / f"{name}.nic"), str(args.threads)))
                print(f"peak RSS {name} {op}: {peaks[f'{name}_{op}']:.0f} MiB", flush=True)
        footprint["peak_rss_mb"] = peaks
        footprint["large_image"] = [width, height]
        footprint["threads"] = args.threads
    table = markdown(footprint)
    publish(footprint, table, args.json, args.markdown)
    return footprint


def markdown(f: dict) -> str:
    d, t, p = f["disk"], f["times_ms"], f["peak_rss_mb"]
    mib = 2**20
    top = ", ".join(f"{name} {size / mib:.1f}" for name, size in list(d["distributions_bytes"].items())[:6])
    w, h = f["large_image"]
    lines = [
        f"Footprint of the runtime ({d['method']}; times: first fresh process and median of fresh processes; "
        f"CPU provider, {f['threads']} threads)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| site-packages | {d['site_packages_bytes'] / mib:.1f} MiB |",
    ]
    if "added_bytes" in d:
        lines.append(f"| added by nicodec[cpu] to an empty venv | {d['added_bytes'] / mib:.1f} MiB |")
    lines += [
        f"| largest distributions (MiB) | {top} |",
        f"| model files | {d['model_files_bytes'] / mib:.1f} MiB |",
        f"| `import nicodec` | {t['import_nicodec_ms']['first_process']:.1f} ms first, "
        f"{t['import_nicodec_ms']['median']:.1f} ms median |",
        f"| then `from nicodec.codec import Codec` (onnxruntime) | {t['import_codec_ms']['first_process']:.0f} ms first, "
        f"{t['import_codec_ms']['median']:.0f} ms median |",
        f"| model load (`Codec(...).prepare()`) | {t['model_load_ms']['median']:.0f} ms |",
        f"| first image after load ({f['kodak_image']}): encode + decode | "
        f"{t['first_encode_ms']['median']:.0f} + {t['first_decode_ms']['median']:.0f} ms |",
        f"| same image again | {t['second_encode_ms']['median']:.0f} + {t['second_decode_ms']['median']:.0f} ms |",
        f"| peak RSS, model loaded only | {p['model_only']:.0f} MiB |",
        f"| peak RSS, {f['kodak_image']}: encode / decode | {p['kodak_encode']:.0f} / {p['kodak_decode']:.0f} MiB |",
        f"| peak RSS, {w}x{h} synthetic ({w * h / 1e6:.1f} MP): encode / decode | "
        f"{p['large_encode']:.0f} / {p['large_decode']:.0f} MiB |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
