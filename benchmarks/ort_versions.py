"""The same integers under another onnxruntime: the oldest one the package allows against this one.

    python benchmarks/ort_versions.py [--version 1.17.3] [--venv /tmp/nicodec-ort-1.17.3] [--json OUT]

Makes (once) a virtual environment with that onnxruntime (and numpy 1.x, which it was built
for), installs nicodec there from this checkout without its dependencies, and runs the same
worker in both environments:

- the entropy-parameter graph on a fixed hyper-latent with extreme values, under 1, 2 and 8
  threads with optimisation off and on (the six results must agree within each side);
- the encoding of an image (Kodak's kodim23 when present, else a synthetic photo), and the
  decoding of the other side's file.

It reports whether the integers and the files are identical across the two versions, and
how far apart the decoded pixels are (the float synthesis may round differently).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import psnr, write_report  # noqa: E402

KODIM23 = HERE.parent.parent / "shared" / "data" / "kodak" / "kodim23.png"


def worker(out: Path, image: Path | None, other_file: Path | None) -> None:
    """Runs in either environment: writes the integers, the file and the decodes to ``out`` (npz)."""
    import onnxruntime as ort
    from PIL import Image

    from nicodec.codec import Codec
    from nicodec.model import ModelFiles

    model = ModelFiles.load(None)
    path = str(model.graph("entropy_parameters"))
    rng = np.random.default_rng(11)
    z = rng.integers(-20, 21, size=(1, model.hyper_channels, 12, 16)).astype(np.int32)
    z.flat[:4] = [-(2**24), 2**24, -128, 127]
    runs = []
    for threads in (1, 2, 8):
        for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.graph_optimization_level = threads, level
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            runs.append(session.run(None, {"z_hat": z}))
    consistent = all(np.array_equal(a, b) for run in runs for a, b in zip(run, runs[0]))
    codec = Codec(providers="cpu", threads=2)
    if image is not None:
        pixels = np.asarray(Image.open(image).convert("RGB"))
    else:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from photos import synthetic_photo

        pixels = synthetic_photo(512, 768, seed=3)
    data = codec.encode(pixels)
    other = codec.decode(other_file.read_bytes(), as_array=True) if other_file else np.zeros(0, np.uint8)
    np.savez(
        out, index=runs[0][0], mean_q=runs[0][1], consistent=consistent, source=pixels,
        nic=np.frombuffer(data, np.uint8), own_decode=codec.decode(data, as_array=True), other_decode=other,
        onnxruntime=ort.__version__, numpy=np.__version__,
    )


def make_venv(venv: Path, version: str) -> Path:
    """A venv with onnxruntime ``version`` and this checkout's nicodec (installed from a copy of
    the tree, which an in-place build would leave ``build/`` and ``nicodec.egg-info/`` in). Its
    dependencies are installed until a marker says they were: a venv an earlier run left half
    made (pip offline) is completed, not used as it is."""
    from footprint import source_copy

    python, done = venv / "bin" / "python", venv / ".nicodec-dependencies"  # it holds the onnxruntime version

    def pip(*args: str) -> None:
        if subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                          check=False).returncode:
            raise SystemExit(f"pip install {' '.join(args)} into {venv} failed (pip said why above)")

    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not done.is_file() or done.read_text().strip() != version:  # none yet, or another version's
        done.unlink(missing_ok=True)
        pip(f"onnxruntime=={version}", "numpy<2", "pillow>=12", "typer")
        done.write_text(version)
    with tempfile.TemporaryDirectory() as tmp:
        pip("--no-deps", "--force-reinstall", str(source_copy(Path(tmp) / "src")))
    return python


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="1.17.3", help="the other onnxruntime version")
    parser.add_argument("--venv", type=Path, default=None, help="its virtual environment (made if missing)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        out, image, other = args.worker
        worker(Path(out), Path(image) if image != "-" else None, Path(other) if other != "-" else None)
        return {}

    python = make_venv(args.venv or Path(tempfile.gettempdir()) / f"nicodec-ort-{args.version}", args.version)
    image = str(KODIM23) if KODIM23.exists() else "-"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        here, there = tmp / "here.npz", tmp / "there.npz"
        # Each side encodes; each then decodes the other's file.
        subprocess.run([sys.executable, __file__, "--worker", str(here), image, "-"], check=True)
        (tmp / "here.nic").write_bytes(np.load(here)["nic"].tobytes())
        subprocess.run([str(python), __file__, "--worker", str(there), image, str(tmp / "here.nic")], check=True, cwd=tmp)
        (tmp / "there.nic").write_bytes(np.load(there)["nic"].tobytes())
        subprocess.run([sys.executable, __file__, "--worker", str(here), image, str(tmp / "there.nic")], check=True)
        a, b = dict(np.load(here)), dict(np.load(there))
    differing = int((a["own_decode"] != b["other_decode"]).sum())
    report = {
        "versions": {"here": str(a["onnxruntime"]), "there": str(b["onnxruntime"])},
        "numpy": {"here": str(a["numpy"]), "there": str(b["numpy"])},
        "image": Path(image).name if image != "-" else "synthetic 768x512",
        "entropy_consistent_within_each": bool(a["consistent"]) and bool(b["consistent"]),
        "entropy_integers": int(a["index"].size),
        "entropy_identical": bool(np.array_equal(a["index"], b["index"]) and np.array_equal(a["mean_q"], b["mean_q"])),
        "files_identical": bool(np.array_equal(a["nic"], b["nic"])),
        "pixels_differing": differing,
        "pixel_values": int(a["own_decode"].size),
        "psnr_between_db": None if differing == 0 else round(psnr(a["own_decode"], b["other_decode"]), 2),
        "psnr_source_db": {"here": round(psnr(a["own_decode"], a["source"]), 3),
                           "there": round(psnr(b["other_decode"], a["source"]), 3)},
    }
    print(json.dumps(report, indent=1))
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
