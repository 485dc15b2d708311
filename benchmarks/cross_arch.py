"""Across architectures: encode on x86-64, decode on aarch64 under qemu-user, and back.

    python benchmarks/cross_arch.py setup                 # once: the arm64 root (a few minutes)
    python benchmarks/cross_arch.py run [--quick] [--cpu cortex-a72] [--json benchmarks/results/cross_arch.json]

The entropy-parameter graph decides which CDF codes each symbol, so a file decodes
only if the decoder's machine computes the same integers as the encoder's. This
program checks that across instruction sets: it encodes images on this machine
(with ``Codec`` and with the ``nicodec encode`` CLI), decodes them inside an
emulated aarch64 Debian, and compares the integers (``z_hat``, ``symbols``,
``mean_q``: differing elements are counted) and the pixels (PSNR between the two
decodes, and of each against the source). The aarch64 side also encodes the
sources, and this machine decodes those files.

The aarch64 side is a Debian root made by debootstrap (default
``/var/tmp/nicodec-arm64-root``, or ``$NICODEC_ARM64_ROOT``), whose Python runs
under ``qemu-aarch64-static -L ROOT``; numpy, onnxruntime, Pillow and typer are
installed there from their aarch64 wheels, at the versions this machine has, and
nicodec from a wheel built from this checkout at every run (so a rerun after a
code change reinstalls only that). ``setup`` and ``run`` need root (debootstrap,
and writing into the root). Where binfmt_misc runs aarch64 programs (qemu
registered with the F flag), debootstrap's second stage configures the root;
elsewhere ``setup`` only unpacks the packages, which is enough for Python under ``-L``.

Two details of running onnxruntime under qemu-user:

- onnxruntime (through the cpuinfo library) parses ``/proc/cpuinfo`` on import and
  crashes when it describes no ARM processor, which is what qemu 7.2 passes through
  from the x86 host. ``-L ROOT`` makes qemu open ``ROOT/PATH`` instead of ``PATH``
  whenever that file exists, so a plain file ``ROOT/proc/cpuinfo`` that describes
  Arm Neoverse-N1 cores is what the guest reads; no mount is needed.
- ``QEMU_CPU`` (``--cpu``: ``neoverse-n1`` by default, or ``cortex-a72``, a Raspberry Pi 4's
  core) makes the emulated processor the one that file describes (the features onnxruntime's
  kernels pick come from it, through the auxiliary vector, which the guest's report reads:
  ``dot_product``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import psnr, write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KODAK = REPO.parent / "shared" / "data" / "kodak"
DEFAULT_ROOT = Path(os.environ.get("NICODEC_ARM64_ROOT", "/var/tmp/nicodec-arm64-root"))
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
QEMU, QEMU_CPU = "qemu-aarch64-static", "neoverse-n1"  # the default --cpu
ROOT_MARK = ".nicodec-root.json"  # written once debootstrap has finished
DEPS = "opt/nicodec/deps"  # numpy, onnxruntime, pillow, typer and theirs (aarch64 wheels)
PKG = "opt/nicodec/pkg"  # nicodec, reinstalled at every run
WHEEL_PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{n}_aarch64" for n in range(17, 37)]
INTEGERS = ("z_hat", "symbols", "mean_q")
# The emulated processors (--cpu, qemu's model): what each stands for, and one core of it as
# Linux prints it in /proc/cpuinfo ({n}: the processor number), the features qemu's model has.
# onnxruntime's kernels for uint8 products follow the features: with the dot product (asimddp)
# its udot kernels, without it its plain NEON ones.
CPUS = {
    "neoverse-n1": (
        ("Arm Neoverse-N1 (MIDR 0x413fd0c1), with the dot product (onnxruntime's udot kernels), as "
         "Graviton2 and Ampere Altra servers and, among boards, the Cortex-A76 of a Raspberry Pi 5"),
        ("processor\t: {n}\nBogoMIPS\t: 50.00\n"
         "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop"
         " asimddp ssbs\n"
         "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n"),
    ),
    "cortex-a72": (
        ("Arm Cortex-A72 (MIDR 0x410fd083), without the dot product (onnxruntime's plain NEON kernels): the core "
         "of a Raspberry Pi 4 (whose BCM2711 lacks the crypto extension qemu's model has)"),
        ("processor\t: {n}\nBogoMIPS\t: 108.00\n"
         "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
         "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"),
    ),
}
HWCAP_ASIMDDP = 1 << 20  # Linux's arm64 AT_HWCAP bit for the dot product


# -- the arm64 root ---------------------------------------------------------------------


def root_ready(root: Path) -> bool:
    """Whether ``setup`` has finished in ``root`` (the slow test skips otherwise)."""
    made = (root / ROOT_MARK).is_file() and (root / DEPS / ".versions.json").is_file()
    return made and shutil.which(QEMU) is not None


def setup(root: Path) -> float:
    """Make (or top up) the arm64 root: Debian with Python, and the aarch64 wheels. Returns seconds."""
    start = time.perf_counter()
    _host_tools()
    if not (root / ROOT_MARK).is_file():
        _debootstrap(root)
    _deps(root)
    _cpuinfo(root)
    return time.perf_counter() - start


def _host_tools() -> None:
    tools = {QEMU: "qemu-user-static", "debootstrap": "debootstrap"}
    missing = [pkg for tool, pkg in tools.items() if not shutil.which(tool)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"needs {', '.join(missing)}: sudo apt-get install -y {' '.join(missing)} binfmt-support")
    _run(["apt-get", "update", "-q"])
    quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "install", "-y", "-q", *missing, "binfmt-support"], env=quiet)


def _debootstrap(root: Path) -> None:
    """Debian arm64 with python3: both stages where binfmt_misc runs aarch64 binaries, else unpacked only."""
    if os.geteuid() != 0:
        raise SystemExit("making the arm64 root needs root (debootstrap)")
    shutil.rmtree(root, ignore_errors=True)  # a half-made root from an interrupted run
    root.parent.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3",
          SUITE, str(root), MIRROR])
    if _binfmt():
        _run(["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"])
        second_stage = True
    else:
        # No binfmt (a container that may not register one): the second stage cannot run
        # aarch64 programs, so unpack the downloaded packages instead. Nothing gets
        # configured, but python3 needs no configuration to run under ``qemu -L``.
        print("binfmt_misc cannot run aarch64 programs here; unpacking the packages without configuring them")
        for line in (root / "debootstrap" / "debpaths").read_text().split("\n"):
            if line.strip():
                _run(["dpkg-deb", "-x", str(root / line.split()[1].lstrip("/")), str(root)])
        second_stage = False
    if not (root / "usr" / "bin" / "python3").exists():
        raise SystemExit(f"debootstrap finished but {root}/usr/bin/python3 is missing")
    (root / ROOT_MARK).write_text(json.dumps({"suite": SUITE, "second_stage": second_stage}) + "\n")


def _binfmt() -> bool:
    """Whether the kernel runs aarch64 binaries through qemu, also inside a chroot (the F flag)."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not entry.exists():
        if not Path("/proc/sys/fs/binfmt_misc/register").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], check=False)
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=False)
    if not entry.exists():
        return False
    text = entry.read_text()
    flags = re.search(r"^flags: (\S*)", text, re.M)
    return text.startswith("enabled") and flags is not None and "F" in flags.group(1)


def _guest_python(root: Path) -> str:
    """The guest's Python version, from its ``python3`` link (``python3.11`` gives ``3.11``)."""
    target = os.readlink(root / "usr" / "bin" / "python3")
    return target.removeprefix("python")


def _host_versions() -> dict[str, str]:
    import onnxruntime  # its distribution may be onnxruntime-gpu: ask the module

    return {
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "pillow": importlib.metadata.version("pillow"),
        "typer": importlib.metadata.version("typer"),
    }


def _deps(root: Path) -> None:
    """The aarch64 wheels of nicodec's dependencies, at this machine's versions, into ``root/DEPS``."""
    versions = _host_versions()
    target, stamp = root / DEPS, root / DEPS / ".versions.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == versions:
        return
    shutil.rmtree(target, ignore_errors=True)
    python = _guest_python(root)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    _run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "--only-binary=:all:",
         "--python-version", python, "--implementation", "cp", "--abi", "cp" + python.replace(".", ""),
         *platforms, *(f"{name}=={version}" for name, version in versions.items())]
    )
    stamp.write_text(json.dumps(versions) + "\n")


def _cpuinfo(root: Path, cpu: str = QEMU_CPU) -> None:
    """``root/proc/cpuinfo``: ``cpu`` cores (:data:`CPUS`), as many as this machine's (see the module docstring)."""
    proc = root / "proc"
    if proc.is_symlink():  # debootstrap's first stage may leave /proc -> /proc (the host's)
        proc.unlink()
    if os.path.ismount(proc):
        raise SystemExit(f"{proc} is mounted (a chroot in use?): unmount it, the fake cpuinfo goes there")
    proc.mkdir(exist_ok=True)
    cpus = _possible_cpus()
    (proc / "cpuinfo").write_text("".join(CPUS[cpu][1].format(n=n) for n in range(cpus)))


def _possible_cpus() -> int:
    """Processors numbered in /sys/devices/system/cpu/possible ("0-1" is 2), which the guest also reads."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def install_nicodec(root: Path) -> None:
    """A wheel of this checkout (built from a clean copy) into ``root/PKG``, replacing the last one."""
    target = root / PKG
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "checkpoints")
        for folder in ("runtime", "training", "export"):
            shutil.copytree(REPO / folder, source / folder, ignore=ignore)
        for name in ("pyproject.toml", "README.md", "LICENSE"):  # the wheel's license-files
            shutil.copy2(REPO / name, source / name)
        isolation = ["--no-build-isolation"] if _setuptools_here() else []
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation,
              "-w", str(Path(tmp) / "wheel"), str(source)])
        (wheel,) = (Path(tmp) / "wheel").glob("nicodec-*.whl")
        shutil.rmtree(target, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
              "--target", str(target), str(wheel)])


def _setuptools_here() -> bool:
    """Whether this environment has the setuptools pyproject.toml asks for (else pip fetches it)."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 69
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def guest_run(root: Path, args: list[str], timeout: float = 3600, cpu: str = QEMU_CPU) -> subprocess.CompletedProcess:
    """Run the guest's Python with ``args`` under qemu-user as ``cpu``, with a clean environment."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "QEMU_CPU": cpu,
        "PYTHONPATH": f"{root / PKG}:{root / DEPS}",
        "PYTHONNOUSERSITE": "1",
    }
    command = [QEMU, "-L", str(root), str(root / "usr" / "bin" / "python3"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise SystemExit(f"the aarch64 side failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return result


# -- both sides -------------------------------------------------------------------------


def side_info(codec) -> dict:
    import platform

    import onnxruntime
    import PIL

    return {
        "machine": os.uname().machine,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "model_id": codec.model_id,
        "model_hash": codec.model.model_hash.hex(),
        **({"dot_product": _has_dot_product()} if os.uname().machine == "aarch64" else {}),
    }


def _has_dot_product() -> bool | None:
    """Whether the kernel (or qemu-user, which emulates the file) tells this aarch64 process it
    has the dot product: ``AT_HWCAP`` of ``/proc/self/auxv``, which onnxruntime's choice of
    kernels reads too (through ``getauxval``); None where the file cannot be read."""
    try:
        words = np.frombuffer(Path("/proc/self/auxv").read_bytes(), dtype=np.uint64).reshape(-1, 2)
    except (OSError, ValueError):
        return None
    hwcap = [int(value) for key, value in words if key == 16]  # AT_HWCAP
    return bool(hwcap[0] & HWCAP_ASIMDDP) if hwcap else None


def dump(codec, data: bytes, path: Path) -> float:
    """Decode ``data`` into its integers and pixels, saved to ``path`` (.npz); returns the decode's ms."""
    _, z_hat, symbols, mean_q = codec.decode_symbols(data)
    start = time.perf_counter()
    pixels = codec.decode(data, as_array=True)
    ms = 1000 * (time.perf_counter() - start)
    np.savez(path, z_hat=z_hat, symbols=symbols, mean_q=mean_q, pixels=pixels)
    return ms


def code_all(work: Path, side: str, codec, other: str | None = None, floats: bool = True) -> dict:
    """One side's work: encode every source into ``side/``, and decode the ``other`` side's files
    too (by default the other architecture's).

    Writes ``side/NAME.nic`` (unless the CLI already did), ``side/own-NAME.npz`` (this side's
    decode of its own file), ``side/other-NAME.npz`` (of the other side's file, if present)
    and, with ``floats``, ``side/y-NAME.npy`` (the encoder's float latent).
    A file that fails to decode is recorded as an error, not raised.
    """
    from nicodec.sessions import CPU, create_session

    other = other or ("aarch64" if side == "x86_64" else "x86_64")
    encoder = create_session(codec.model.graph("encoder"), [CPU], data=codec.model.graph_bytes("encoder")) if floats else None
    report = {"info": side_info(codec), "images": {}}
    for source in sorted((work / "src").glob("*.png")):
        name, row = source.stem, {}
        start = time.perf_counter()
        data = codec.encode(source)
        row["encode_ms"] = 1000 * (time.perf_counter() - start)
        own = work / side / f"{name}.nic"
        if own.exists():
            row["cli_equals_api"] = own.read_bytes() == data
        else:
            own.write_bytes(data)
        row["decode_ms"] = dump(codec, data, work / side / f"own-{name}.npz")
        if floats:
            np.save(work / side / f"y-{name}.npy", encoder_floats(encoder, source, codec))
        theirs = work / other / f"{name}.nic"
        if theirs.exists():
            try:
                row["other_decode_ms"] = dump(codec, theirs.read_bytes(), work / side / f"other-{name}.npz")
            except Exception as exc:  # noqa: BLE001 - a desynchronised decode is a result to report
                row["other_error"] = f"{type(exc).__name__}: {exc}"
        report["images"][name] = row
    return report


def encoder_floats(session, source: Path, codec) -> np.ndarray:
    """The encoder graph's float latent ``y`` of an image, before any rounding, padded as
    ``codec`` pads it.

    The two machines' float arithmetic differs (other kernels, other instruction sets);
    how much shows how far a value must sit from a rounding boundary to round alike.
    """
    padded = codec._pad(np.asarray(Image.open(source).convert("RGB")))
    feed = {"image": np.ascontiguousarray(padded.transpose(2, 0, 1)[None])}
    if "gain" in {i.name for i in session.get_inputs()}:
        feed["gain"] = np.ones((1, session.get_inputs()[1].shape[1], 1, 1), dtype=np.float32)
    y, _ = session.run(None, feed)
    return y


def guest_main(argv: list[str]) -> None:
    """Inside the emulated aarch64: ``cross_arch.py guest WORK [MODEL]``; prints its report as JSON."""
    from nicodec import Codec

    work, model = Path(argv[0]), (argv[1] if len(argv) > 1 else None)
    report = code_all(work, "aarch64", Codec(model, providers="cpu"))
    print(json.dumps(report))


# -- comparing --------------------------------------------------------------------------


def compare(a: Path, b: Path, source: np.ndarray) -> dict:
    """Two decodes of one file (``a`` on the machine that encoded it, ``b`` on the other).

    Returns:
        Differing elements of each integer array (all of them when the shapes differ),
        pixels that differ, the PSNR between the two decodes and of each against the source.
    """
    x, y = np.load(a), np.load(b)
    result = {}
    for key in INTEGERS:
        same_shape = x[key].shape == y[key].shape
        result[f"{key}_differ"] = int(np.count_nonzero(x[key] != y[key])) if same_shape else int(x[key].size)
    result["integers_total"] = int(sum(x[key].size for key in INTEGERS))
    pa, pb = x["pixels"], y["pixels"]
    same_shape = pa.shape == pb.shape
    result["pixels_differ"] = int(np.count_nonzero(pa != pb)) if same_shape else int(pa.size)
    result["max_abs_diff"] = int(np.abs(pa.astype(np.int16) - pb.astype(np.int16)).max()) if same_shape else 255
    between = psnr(pa, pb) if same_shape else 0.0
    result["psnr_between"] = None if between == float("inf") else between  # None: identical pixels (JSON has no inf)
    result["psnr_encoder_machine"] = psnr(pa, source)
    result["psnr_decoder_machine"] = psnr(pb, source) if pb.shape == source.shape else 0.0
    result["psnr_delta"] = abs(result["psnr_encoder_machine"] - result["psnr_decoder_machine"])
    return result


def direction(work: Path, name: str, encoder: str, decoder: str, source: np.ndarray, errors: dict) -> dict:
    """Files made by ``encoder``, decoded by both sides: its own decode against the other's."""
    if name in errors:
        return {"error": errors[name]}
    own = work / encoder / f"own-{name}.npz"
    other = work / decoder / f"other-{name}.npz"
    return compare(own, other, source)


def sources(quick: bool, kodak: Path) -> dict[str, np.ndarray]:
    """The test images: 256x256 synthetic photos, and one Kodak photo when it is there."""
    sys.path.insert(0, str(REPO / "tests"))
    from photos import synthetic_photo

    images = {f"synthetic{seed}": synthetic_photo(256, 256, seed=seed) for seed in (0, 1)[: 1 if quick else 2]}
    if not quick and (kodak / "kodim23.png").is_file():
        images["kodim23"] = np.asarray(Image.open(kodak / "kodim23.png").convert("RGB"))
    return images


def run(root: Path, quick: bool, kodak: Path, model: str | None, keep: Path | None, cpu: str = QEMU_CPU) -> dict:
    """Encode here, decode there (on qemu's ``cpu``), and the reverse; the comparison as a report."""
    from nicodec import Codec

    if not root_ready(root):
        raise SystemExit(f"no arm64 root at {root}: run `python benchmarks/{Path(__file__).name} setup` first (as root)")
    timings = {}
    start = time.perf_counter()
    _deps(root)  # a no-op unless this machine's numpy, onnxruntime, pillow or typer changed
    _cpuinfo(root, cpu)
    install_nicodec(root)
    timings["install_s"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="nicodec-cross-arch-") as tmp:
        work = keep or Path(tmp)
        for folder in ("src", "x86_64", "aarch64", "aarch64-cli"):
            (work / folder).mkdir(parents=True, exist_ok=True)
        images = sources(quick, kodak)
        for name, pixels in images.items():
            Image.fromarray(pixels).save(work / "src" / f"{name}.png")
        model_args = [] if model is None else ["--model", model]

        start = time.perf_counter()
        _run([sys.executable, "-m", "nicodec", "encode", str(work / "src"), "-o", str(work / "x86_64"),
              "--provider", "cpu", *model_args], quiet=True)
        codec = Codec(model, providers="cpu")
        host = code_all(work, "x86_64", codec)
        timings["host_s"] = time.perf_counter() - start

        start = time.perf_counter()
        out = guest_run(root, [__file__, "guest", str(work), *([model] if model else [])], cpu=cpu).stdout
        guest = json.loads(out.strip().splitlines()[-1])
        guest_run(root, ["-m", "nicodec", "decode", str(work / "x86_64"), "-o", str(work / "aarch64-cli"),
                         "--provider", "cpu", *model_args], cpu=cpu)
        timings["guest_s"] = time.perf_counter() - start

        start = time.perf_counter()
        host_errors = {}
        for name in images:  # this side's decode of the aarch64 files
            try:
                data = (work / "aarch64" / f"{name}.nic").read_bytes()
                host["images"][name]["other_decode_ms"] = dump(codec, data, work / "x86_64" / f"other-{name}.npz")
            except Exception as exc:  # noqa: BLE001
                host_errors[name] = f"{type(exc).__name__}: {exc}"
        timings["host_s"] += time.perf_counter() - start
        guest_errors = {n: r["other_error"] for n, r in guest["images"].items() if "other_error" in r}

        rows = [
            image_row(work, name, pixels, host["images"][name], guest["images"][name], host_errors, guest_errors)
            for name, pixels in images.items()
        ]

    report = {
        "host": {**host["info"], "qemu": _qemu_version(), "checkout": _checkout()},
        "guest": {**guest["info"], "qemu_cpu": cpu, "cpuinfo": CPUS[cpu][0] + " (root/proc/cpuinfo)",
                  "debian": SUITE, "root": str(root)},
        "images": rows,
        "summary": _summary(rows, host["info"], guest["info"]),
        "seconds": timings,
    }
    return report


def image_row(work: Path, name: str, source: np.ndarray, host: dict, guest: dict, host_errors: dict,
              guest_errors: dict) -> dict:
    """One image's line of the report, from the files and dumps both sides left in ``work``."""

    def load(side: str, kind: str):
        return np.load(work / side / f"{kind}-{name}.{'npy' if kind == 'y' else 'npz'}")

    x86_file, arm_file = (work / side / f"{name}.nic" for side in ("x86_64", "aarch64"))
    x86_arm = direction(work, name, "x86_64", "aarch64", source, guest_errors)
    cli = np.asarray(Image.open(work / "aarch64-cli" / f"{name}.png").convert("RGB"))
    cli_same = "error" not in x86_arm and bool(np.array_equal(cli, load("aarch64", "other")["pixels"]))
    encoded_x86, encoded_arm = load("x86_64", "own"), load("aarch64", "own")
    y_x86, y_arm = load("x86_64", "y"), load("aarch64", "y")
    return {
        "image": name,
        "size": f"{source.shape[1]}x{source.shape[0]}",
        "bytes": x86_file.stat().st_size,
        "cli_equals_api_x86_64": host.get("cli_equals_api"),
        "x86_64_to_aarch64": x86_arm,
        "aarch64_cli_equals_api": cli_same,
        "aarch64_to_x86_64": direction(work, name, "aarch64", "x86_64", source, host_errors),
        "files_identical": x86_file.read_bytes() == arm_file.read_bytes(),
        "encoder_y_max_abs_diff": float(np.abs(y_x86 - y_arm).max()),
        "encoder_y_differ_fraction": float(np.mean(y_x86 != y_arm)),
        "encode_symbols_differ": {
            key: int(np.count_nonzero(encoded_x86[key] != encoded_arm[key]))
            if encoded_x86[key].shape == encoded_arm[key].shape else -1
            for key in INTEGERS
        },
        "ms": {
            "x86_64_encode": host["encode_ms"], "x86_64_decode": host["decode_ms"],
            "aarch64_encode": guest["encode_ms"], "aarch64_decode": guest["decode_ms"],
        },
    }


def _summary(rows: list[dict], host: dict, guest: dict) -> dict:
    decodes = [row[key] for row in rows for key in ("x86_64_to_aarch64", "aarch64_to_x86_64")]
    ok = [d for d in decodes if "error" not in d]
    return {
        "same_model": (host["model_id"], host["model_hash"]) == (guest["model_id"], guest["model_hash"]),
        "decode_errors": len(decodes) - len(ok),
        "integers_identical": len(ok) == len(decodes) and all(d[f"{k}_differ"] == 0 for d in ok for k in INTEGERS),
        "integers_differing": sum(d[f"{k}_differ"] for d in ok for k in INTEGERS),
        "min_psnr_between": min((d["psnr_between"] for d in ok if d["psnr_between"] is not None), default=None),
        "max_psnr_delta": max((d["psnr_delta"] for d in ok), default=None),
        "pixels_identical": all(d["pixels_differ"] == 0 for d in ok),
        "files_identical": sum(row["files_identical"] for row in rows),
        "images": len(rows),
    }


def _checkout() -> str:
    """The commit nicodec was built from, ``+dirty`` when tracked files have changed since."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    status = [*git, "status", "--porcelain", "--untracked-files=no"]
    dirty = subprocess.run(status, capture_output=True, text=True).stdout
    return (head or "unknown") + ("+dirty" if dirty.strip() else "")


def _qemu_version(qemu: str = QEMU) -> str:
    """The first line ``qemu --version`` prints, or "unknown"."""
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def _run(command: list[str], *, quiet: bool = False, env: dict | None = None) -> None:
    print("+", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL if quiet else None)


def print_table(report: dict) -> None:
    print(f"host {report['host']['machine']} (onnxruntime {report['host']['onnxruntime']}) -> "
          f"guest {report['guest']['machine']} under {report['host']['qemu']}, -cpu {report['guest']['qemu_cpu']} "
          f"(onnxruntime {report['guest']['onnxruntime']})")
    print(f"{'image':<12} {'direction':<17} {'int diffs':>9} {'px diffs':>8} {'PSNR a/b':>9} "
          f"{'PSNR enc':>9} {'PSNR dec':>10} {'same file':>9} {'max |dy|':>9}")
    for row in report["images"]:
        for key in ("x86_64_to_aarch64", "aarch64_to_x86_64"):
            d = row[key]
            if "error" in d:
                print(f"{row['image']:<12} {key:<17} ERROR {d['error']}")
                continue
            diffs = sum(d[f"{k}_differ"] for k in INTEGERS)
            print(f"{row['image']:<12} {key:<17} {diffs:>9} {d['pixels_differ']:>8} {_db(d['psnr_between']):>9} "
                  f"{d['psnr_encoder_machine']:>9.3f} {d['psnr_decoder_machine']:>10.3f} "
                  f"{str(row['files_identical']):>9} {row['encoder_y_max_abs_diff']:>9.1e}")
    print(json.dumps(report["summary"]))
    print(json.dumps(report["seconds"]))


def _db(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["guest"]:
        guest_main(argv[1:])
        return None
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("setup", "run"), help="setup: make the arm64 root; run: compare")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the arm64 Debian root (made by setup)")
    parser.add_argument("--quick", action="store_true", help="one 256x256 synthetic photo only")
    parser.add_argument("--cpu", choices=sorted(CPUS), default=QEMU_CPU,
                        help="the emulated processor (qemu's model; its kernels in onnxruntime differ)")
    parser.add_argument("--images", type=Path, default=KODAK, help="the Kodak folder (kodim23.png is used)")
    parser.add_argument("--model", default=None, help="model folder (default: the one shipped in the wheel)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the files and dumps in this folder")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "setup":
        print(f"arm64 root ready at {args.root} in {setup(args.root):.0f} s")
        return None
    start = time.perf_counter()
    report = run(args.root, args.quick, args.images, args.model, args.keep, args.cpu)
    report["seconds"]["total_s"] = time.perf_counter() - start
    print_table(report)
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
