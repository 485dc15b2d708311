"""Shared fixtures: synthetic photos (tests make their own images) and the shipped codec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from nicodec.sessions import TELEMETRY_OPT_OUTS
from photos import psnr, synthetic_photo  # noqa: F401 - the tests import them from here


def ended_by(signum: int) -> int:
    """The return code of a process of the nicodec commands (their launchers) that a stop by
    ``signum`` (SIGINT, SIGTERM, SIGHUP) ended: on POSIX the signal itself, sent again once the
    clean-up is done, so that a shell loop or xargs stops too (a shell's ``$?`` reads
    128 + ``signum``); elsewhere the exit code 128 + ``signum``."""
    return -signum if os.name == "posix" else 128 + signum

# The tests read the plain text a log gets, at Rich's default width: settings of the shell
# they run from (a CI workflow's FORCE_COLOR, an exported COLUMNS) coloured or wrapped it, and
# failed 73 tests (one hung). Taken out before any module makes a console, and COLUMNS set to
# that width (Rich reads a terminal's own width where pytest -s leaves it the streams: 18 tests
# failed in 60 columns); a test that needs another sets it itself. PYTHONUNBUFFERED too, which
# CI machines set (this one does): the commands the tests start then had no buffer for a failed
# write to leave behind, and exited 120 with "Exception ignored while flushing sys.stdout"
# wherever it is not set, as in a user's shell.
for _name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE", "COLUMNS", "LINES",
              "PYTHONUNBUFFERED"):
    os.environ.pop(_name, None)
os.environ["COLUMNS"] = "80"


def _share_the_cores_among_workers() -> None:
    """Under pytest-xdist (``-n auto``), each worker keeps its own share of the cores, for the
    processes it starts too: onnxruntime and PyTorch start a thread per core they may use, and
    with every core in every worker those threads outnumbered the cores (threads that wait by
    spinning, PyTorch's and those of the sessions the tests make themselves, then cost the most). Nothing changes where the workers outnumber
    the cores, or off Linux."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.isdigit() and workers.isdigit() and hasattr(os, "sched_setaffinity")):
        return
    cores = sorted(os.sched_getaffinity(0))
    if 1 < int(workers) <= len(cores) and int(worker) < int(workers):
        os.sched_setaffinity(0, cores[int(worker)::int(workers)])


_share_the_cores_among_workers()

# onnxruntime's telemetry (a device id and a queue of events under ~/.cache/Microsoft): nicodec
# turns it off before its own first import of onnxruntime, but test files that import
# onnxruntime themselves come first, and the suite wrote them into the home folder.
for _name in TELEMETRY_OPT_OUTS:
    os.environ.setdefault(_name, "1")


def pytest_configure(config) -> None:
    """The markers, here rather than in pyproject.toml: a packager runs a copy of tests/ alone,
    where an unknown marker is a warning (an error under ``--strict-markers``)."""
    for marker in ("slow: long-running tests (deselect with -m 'not slow')", "train: needs torch (the train extra)",
                   "gpu: needs a CUDA GPU"):
        config.addinivalue_line("markers", marker)


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NICODEC_SHARED", REPO.parent / "shared"))
KODAK = SHARED / "data" / "kodak"


@pytest.fixture(autouse=True)
def _pillow_plugin_as_it_was():
    """Pillow has no unregister: a test that registered the .nic plugin (or took it out) left it so
    for the tests after it in the same process, which then passed or failed by the order
    pytest-xdist gave them (a CI run failed so). Its entries are put back as they were."""
    from nicodec.pillow_plugin import EXTENSION, FORMAT
    from PIL import Image

    registries = (Image.OPEN, Image.SAVE, Image.SAVE_ALL, Image.DECODERS, Image.MIME)
    entries = [registry.get(FORMAT) for registry in registries]
    extension = Image.EXTENSION.get(EXTENSION)
    listed = FORMAT in Image.ID
    yield
    for registry, entry in zip(registries, entries):
        if entry is None:
            registry.pop(FORMAT, None)
        else:
            registry[FORMAT] = entry
    if extension is None:
        Image.EXTENSION.pop(EXTENSION, None)
    else:
        Image.EXTENSION[EXTENSION] = extension
    if listed and FORMAT not in Image.ID:
        Image.ID.append(FORMAT)
    elif not listed:
        while FORMAT in Image.ID:
            Image.ID.remove(FORMAT)


def _names_can_hold(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


unicode_names = pytest.mark.skipif(
    not _names_can_hold("caf\u00e9 \u5199\u771f \u202e \u2028"),
    reason="file names here are ASCII (the C locale without UTF-8 mode: PYTHONUTF8=0 PYTHONCOERCECLOCALE=0)")
"""For a test that makes files whose names are not ASCII."""


def ended(process) -> None:
    """Wait for a killed process and close its pipes (left to the collector, each was a
    ResourceWarning)."""
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def opened(path) -> Image.Image:
    """The image file at ``path``, its pixels read and the file closed: ``Image.open`` alone
    leaves the file open until the object is collected (a ResourceWarning, an error under
    ``-W error``)."""
    with Image.open(path) as image:
        image.load()
    return image


def single_rate_model(folder: Path) -> Path:
    """The shipped model with its gain vectors taken out, made in the new ``folder``: a
    single-rate model (its graphs linked, not copied)."""
    import json

    import numpy as np

    from nicodec.model import default_model_dir, manifest_hash, sha256_file

    folder.mkdir()
    for path in default_model_dir().iterdir():
        if path.suffix == ".onnx":
            (folder / path.name).symlink_to(path)
    with np.load(default_model_dir() / "tables.npz") as tables:
        np.savez(folder / "tables.npz", **{k: tables[k] for k in tables.files if "gain" not in k})
    manifest = json.loads((default_model_dir() / "manifest.json").read_text())
    del manifest["rate"]
    manifest.pop("decodes_files_of", None)  # its tables differ: it decodes no earlier model's files
    manifest["model_id"] = "test-single-rate"
    manifest["files"]["tables.npz"] = sha256_file(folder / "tables.npz")
    manifest["model_hash"] = manifest_hash(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def padded_to_64(codec, image, **options) -> bytes:
    """The file nicodec before 0.7.0 wrote of ``image``: padded to multiples of 64, not 16."""
    codec._fine_padding = False
    try:
        return codec.encode(image, **options)
    finally:
        del codec._fine_padding  # back to the class's default


@pytest.fixture(scope="session")
def codec():
    from nicodec import Codec

    return Codec(providers="cpu")


@pytest.fixture(scope="session")
def photo():
    return synthetic_photo()


@pytest.fixture()
def no_gpu(monkeypatch):
    """onnxruntime as on a machine whose CUDA provider is installed but finds no GPU: it lists
    CUDA, and runs every session on the CPU (so that asking for CUDA falls back)."""
    import onnxruntime

    from nicodec import sessions

    class NoGpu:
        def __getattr__(self, name):
            return getattr(onnxruntime, name)

        @staticmethod
        def get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        @staticmethod
        def InferenceSession(path, sess_options, providers, **kwargs):
            return onnxruntime.InferenceSession(path, sess_options=sess_options, providers=["CPUExecutionProvider"],
                                                **kwargs)

    monkeypatch.setattr(sessions, "_ort", NoGpu)


@pytest.fixture()
def kodak() -> Path:
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak is not present")
    return KODAK


@pytest.fixture()
def signal_once_training(monkeypatch):
    """``signal_once_training(module, name, times=1)``: ``module.name`` sends this process SIGTERM
    the first time (the first ``times`` times) it is called with a training loop's handler of the
    signals in place (a scheduler's or ``timeout``'s signal arriving mid-training), and fails the
    test if it is called 200 times without one (the default handler would end pytest itself)."""
    import signal

    from nicodec.training.stopping import Stop

    def install(module, name: str, times: int = 1) -> None:
        wrapped, calls = getattr(module, name), []

        def sending(*args, **kwargs):
            calls.append(isinstance(getattr(signal.getsignal(signal.SIGTERM), "__self__", None), Stop))
            if calls[-1] and sum(calls) <= times:
                os.kill(os.getpid(), signal.SIGTERM)
            elif not any(calls) and len(calls) > 200:
                raise AssertionError(f"{name} ran 200 times with no handler of the signals in place")
            return wrapped(*args, **kwargs)

        monkeypatch.setattr(module, name, sending)

    return install
