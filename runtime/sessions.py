"""onnxruntime sessions with an explicit provider list, and a word when it falls back."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from .errors import ModelError, NicodecError, OutOfMemoryError
from .machine import default_threads

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


MAX_THREADS = 256
"""The most onnxruntime threads a session takes: each is a real thread, started when the
session is created (512 of them took 54 s on 2 cores for a 64x64 image), so a larger
number is a mistake rather than a wish."""


TELEMETRY_OPT_OUTS = ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")
"""onnxruntime's telemetry switches (1.31 and later, on Linux too, keep a queue of usage events
and a device id under ``~/.cache/Microsoft``, and warn on every run where ``$HOME`` is read-
only). nicodec sets them to 1 before it imports onnxruntime, unless they are set already: a
codec on an offline board has no business growing a database in the user's home. Set them to 0
to leave onnxruntime's default. They are read when onnxruntime is imported: a program that
imports it before nicodec does sets them itself."""


NO_FOLDER = os.path.join(os.devnull, "nicodec-no-external-data")
"""Where onnxruntime is told a graph's external data lies: a folder that cannot exist (under
the null device), so that a graph with any is refused (see :func:`create_session`)."""


ALLOCATION_FAILURES = ("Failed to allocate memory", "std::bad_alloc", "bad allocation", "Cannot allocate memory")
"""What onnxruntime's own (untyped) errors say when memory runs out: its allocator (the arena's
words; C++'s std::bad_alloc, "bad allocation" on Windows), a thread it could not start (ENOMEM)."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is memory running out (a ``MemoryError``, or onnxruntime's error that
    says so in its own words)."""
    return isinstance(exc, MemoryError) or any(text in str(exc) for text in ALLOCATION_FAILURES)


def loading_failed(what: str, exc: BaseException) -> OutOfMemoryError:
    """The error for memory running out while ``what`` loads: it is not a broken install, and
    smaller tiles do not help (``tiles_help`` false). onnxruntime's own text ("[ONNXRuntimeError]
    : 6 : RUNTIME_EXCEPTION : ... std::bad_alloc") is left to the traceback (``--debug``)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if detail.startswith("[ONNXRuntimeError]") or "std::bad_alloc" in detail:
        detail = "onnxruntime could not allocate memory"
    return OutOfMemoryError.while_loading(what, detail)


def _ort():
    _warn_if_several_builds()
    if "onnxruntime" not in sys.modules:
        for name in TELEMETRY_OPT_OUTS:
            os.environ.setdefault(name, "1")
    from .stops import signals_held

    try:
        # A Ctrl-C inside onnxruntime's extension, as it loads, comes out as an ImportError
        # ("initialization failed"): held back, it is raised after the import, as itself.
        # Once imported, the host program's signal handlers are not touched again.
        with signals_held() if "onnxruntime" not in sys.modules else contextlib.nullcontext():
            import onnxruntime
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        if exc.name != "onnxruntime":
            raise _broken(exc) from exc
        from .launch import install_command

        tool, extras = install_command("cpu")
        raise NicodecError(
            "onnxruntime is not installed: install nicodec with the [cpu] or [gpu] extra, "
            f"{tool} 'nicodec[{extras}]' (from a checkout: {tool} '.[{extras}]')" + _newer_python_than_checked()
        ) from exc
    except Exception as exc:  # installed, but it does not import (say, built for another numpy)
        if isinstance(exc, MemoryError) or (isinstance(exc, ImportError) and "Cannot allocate memory" in str(exc)):
            raise loading_failed("onnxruntime's library", exc) from exc
        if isinstance(exc, ImportError) and "failed to map segment from shared object" in str(exc):
            # glibc's words for a library it cannot map: an address-space limit, or a noexec mount.
            raise NicodecError(f"cannot load onnxruntime's library ({exc}): the process's memory limit (ulimit -v) "
                               "is too low, or its folder is on a file system mounted noexec") from exc
        raise _broken(exc) from exc
    return onnxruntime


def _newest_python_listed() -> tuple[int, ...]:
    """The newest Python version nicodec's classifiers list, the newest this release was tested
    on (pyproject.toml's ``Programming Language :: Python :: 3.N``); () where its metadata is
    not installed (an application frozen without it)."""
    from importlib import metadata

    try:
        classifiers = metadata.metadata("nicodec").get_all("Classifier") or []
    except metadata.PackageNotFoundError:
        return ()
    prefix = "Programming Language :: Python :: 3."
    return max(((3, int(c[len(prefix):])) for c in classifiers if c.startswith(prefix) and c[len(prefix):].isdigit()),
               default=())


def _newer_python_than_checked() -> str:
    """What to add where onnxruntime is missing on a Python newer than this release was tested
    on: there the extra's install may fail for want of an onnxruntime wheel (3.15 had none at 0.7.7)."""
    newest = _newest_python_listed()
    if not newest or sys.version_info[:2] <= newest:
        return ""
    running, newest_text = ".".join(map(str, sys.version_info[:2])), ".".join(map(str, newest))
    return (f"; if pip finds no onnxruntime for Python {running} (PyPI had none for Python versions newer "
            f"than {newest_text} when this nicodec was released), use Python {newest_text} or older")


def _broken(exc: BaseException) -> NicodecError:
    import numpy

    name, found = installed_build()
    advice = ("reinstall it with the [cpu] or [gpu] extra" if name in OWN_BUILDS
              else f"reinstall {name}, or install nicodec with the [cpu] or [gpu] extra in its place")
    # A build made against numpy 1 fails to import under numpy 2 ("_ARRAY_API not found", or
    # "import numpy failed" after it): onnxruntime before 1.18, onnxruntime-cann 1.24.4.
    numpy_1_build = any(text in str(exc) for text in NUMPY_1_BUILD) or (found and found < (1, 18))
    if int(numpy.__version__.split(".")[0]) >= 2 and numpy_1_build:
        release = f"{name} {'.'.join(map(str, found))}" if found else name
        advice = (f"{release} was built for numpy 1 and does not run with numpy {numpy.__version__}: install numpy<2 "
                  f"or a newer {name}")
    return NicodecError(f"onnxruntime is installed but does not import ({type(exc).__name__}: {exc}); {advice}")


NUMPY_1_BUILD = ("_ARRAY_API not found", "import numpy failed", "compiled using NumPy 1.x",
                 "numpy.core.multiarray failed to import")
"""What an extension module built against numpy 1 says as it fails to import under numpy 2."""


PROVIDERS_BUILDS = {
    "CUDAExecutionProvider": "onnxruntime-gpu", "TensorrtExecutionProvider": "onnxruntime-gpu",
    "OpenVINOExecutionProvider": "onnxruntime-openvino", "DmlExecutionProvider": "onnxruntime-directml",
    "ROCMExecutionProvider": "onnxruntime-rocm", "MIGraphXExecutionProvider": "onnxruntime-migraphx",
    "CANNExecutionProvider": "onnxruntime-cann", "WebGpuExecutionProvider": "onnxruntime-webgpu",
    "CoreMLExecutionProvider": "onnxruntime on macOS",
}
"""The build of onnxruntime (or the platform) that brings each provider, for a message that says
where to find one that is missing."""

BUILD_PREFIXES = ("onnxruntime", "ort_nightly", "ort-nightly")
"""How the names of onnxruntime's builds begin: onnxruntime, onnxruntime-gpu, onnxruntime-openvino,
onnxruntime-directml, onnxruntime-rocm, ..., ort-nightly. Each such distribution that holds the
Python package ``onnxruntime`` is a build (onnxruntime-extensions, onnxruntime-qnn from 2.0 and
the onnxruntime-ep-* plug-ins hold packages of their own, and are not)."""


def installed_builds() -> list[tuple[str, tuple[int, ...]]]:
    """The builds of onnxruntime installed in the folder that ``import onnxruntime`` takes it from
    (:func:`onnxruntime_folder`), each with its release as numbers, by name: two there share
    the package's folder. Read from the distributions' records beside it (``*.dist-info``,
    ``*.egg-info``) whose names begin as a build's; none where the package has no such record
    (a copy on ``PYTHONPATH``) or is not installed."""
    from importlib import metadata

    folder = onnxruntime_folder()
    try:
        entries = os.listdir(folder) if folder is not None else []
    except OSError:  # a folder gone or unreadable
        return []
    found = {}
    for entry in entries:
        stem, _, kind = entry.rpartition(".")
        if kind not in ("dist-info", "egg-info") or not stem.lower().startswith(BUILD_PREFIXES):
            continue
        try:  # a record without its metadata is passed over (Python 3.12 warns of it, 3.15 raises)
            distribution = metadata.PathDistribution(folder / entry)
            fields = distribution.metadata
            name, version = (fields.get("Name"), fields.get("Version")) if fields else (None, None)
            top_level = (distribution.read_text("top_level.txt") or "").split()
            holds = "onnxruntime" in top_level if top_level else any(
                str(file).startswith("onnxruntime/") for file in distribution.files or ())
        except Exception:  # noqa: BLE001 - whatever a damaged record raises, it is no build to name
            continue
        if name and version and holds:
            found[name.lower().replace("_", "-")] = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return sorted(found.items())


def onnxruntime_folder() -> Path | None:
    """The folder holding the ``onnxruntime`` package that ``import onnxruntime`` takes (the one
    imported, or found as the import would, without importing it); None where there is none."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):  # a broken spec
        return None
    return Path(spec.origin).parent.parent if spec is not None and spec.origin else None


def installed_build() -> tuple[str, tuple[int, ...]]:
    """The onnxruntime build installed and its release (``("onnxruntime-openvino", (1, 24))``),
    for advice on which release to install; ``("onnxruntime", ())`` where it cannot tell (none
    found, or several)."""
    builds = installed_builds()
    return builds[0] if len(builds) == 1 else ("onnxruntime", ())


OWN_BUILDS = ("onnxruntime", "onnxruntime-gpu")
"""The builds that nicodec's ``[cpu]`` and ``[gpu]`` extras install."""


@functools.lru_cache(maxsize=1)
def _warn_if_several_builds() -> None:
    """Warn (once: the result is cached) when two onnxruntime builds are installed (``[cpu]`` and
    ``[gpu]``, or ``[cpu]`` and onnxruntime-openvino): they are one Python package, so the one
    installed last overwrote the other's files, and pip cannot prevent it."""
    names = [name for name, _ in installed_builds()]
    if len(names) > 1:
        listed = " and ".join(names) if len(names) == 2 else ", ".join(names[:-1]) + " and " + names[-1]
        warnings.warn(
            f"{listed} are {'both' if len(names) == 2 else 'all'} installed; they share one package folder, so the "
            f"one installed last replaced parts of the {'other' if len(names) == 2 else 'others'}. Run pip uninstall "
            f"-y {' '.join(names)}, then install nicodec with one extra, [cpu] or [gpu] (or with none, and then the "
            "one build you want)",
            RuntimeWarning,
            stacklevel=caller_outside(),
        )


def caller_outside() -> int:
    """The ``stacklevel`` at which ``warnings.warn``, called by the function calling this,
    names the nearest caller outside nicodec and Pillow (the user's line, however deep inside
    nicodec the warning arose, and through Pillow's ``open``, ``load`` and ``save`` for the plugin)."""
    packages = [os.path.dirname(os.path.abspath(__file__)) + os.sep]
    pil = sys.modules.get("PIL")
    if pil is not None and getattr(pil, "__file__", None):
        packages.append(os.path.dirname(os.path.abspath(pil.__file__)) + os.sep)
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(tuple(packages)):
        frame, level = frame.f_back, level + 1
    return level


def resolve_providers(choice: str | Sequence[str | tuple[str, dict[str, str]]] = "auto") -> list:
    """The provider list to ask onnxruntime for, always ending with the CPU.

    Args:
        choice: ``"auto"`` (CUDA when the installed onnxruntime has it, then CPU),
            ``"cpu"``, ``"cuda"``, or an explicit list of onnxruntime provider names, each
            alone or paired with a dict of its options (strings, as
            :meth:`~nicodec.settings.CodecSettings.given_providers` gives them).

    Raises:
        NicodecError: an unknown choice, or CUDA asked for where it is not available.
    """
    available = _ort().get_available_providers()
    if not isinstance(choice, str):
        names = [provider_name(p) for p in choice]
        short = [p for p in names if p.lower() in PROVIDER_CHOICES]
        if short:  # ["cpu"], ["cuda", "cpu"]: nicodec's names, which a list does not take
            raise NicodecError(f"{short[0]!r} in a list is no onnxruntime provider name: pass providers={short[0].lower()!r} "
                               f"alone, or a list of onnxruntime's names ({', '.join(available)} here)")
        unknown = [p for p in names if p not in available]
        if unknown == [CUDA]:  # CUDA with its options (--provider cuda --provider-option device_id=1)
            raise _no_cuda()
        if unknown:
            here = " and ".join(name for name, _ in installed_builds()) or "onnxruntime"
            brought = "".join(f"; {PROVIDERS_BUILDS[p]} brings {p} (installed in place of {here}, not beside it)"
                              for p in unknown if p in PROVIDERS_BUILDS)
            raise NicodecError(f"this onnxruntime has no {', '.join(map(str, unknown))} (it has {', '.join(available)})"
                               f"{brought}: see \"Other builds of onnxruntime\" in docs/install.md")
        return list(choice) + ([CPU] if CPU not in names else [])
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if CUDA not in available:
            raise _no_cuda()
        return [CUDA, CPU]
    if choice == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise NicodecError(f"unknown provider {choice!r}: choose one of {', '.join(PROVIDER_CHOICES)}")


def _no_cuda() -> NicodecError:
    """The error for CUDA asked for where this onnxruntime has none, with the commands that install
    the build that has it. A build left in place beside onnxruntime-gpu (the CPU's, OpenVINO's)
    would overwrite parts of it, so pip's and pipx's commands take it out first (uv does that itself)."""
    from .launch import install_command

    tool, extras = install_command("gpu")
    uninstall = {"pip install": "pip uninstall", "pipx install --force": "pipx runpip nicodec uninstall"}.get(tool)
    others = [name for name, _ in installed_builds()]
    first = f"{uninstall} -y {' '.join(others)}, then " if uninstall and others and "onnxruntime-gpu" not in others else ""
    return NicodecError(
        "CUDA was asked for, but this onnxruntime has no CUDAExecutionProvider (on a machine with CUDA: "
        f'{first}{tool} "nicodec[{extras}]"; docs/install.md says which release suits CUDA 12)'
    )


def provider_name(entry) -> str:
    """The name of an entry of a providers list: the entry itself, or a pair's first item (a
    name and its options, as onnxruntime takes them)."""
    return entry if isinstance(entry, str) else entry[0]


def shrinking_run_options():
    """Run options that hand onnxruntime's CPU arena back after the run. The arena keeps what a
    run allocated, in blocks that double, to reuse in the next: that saves time on images of
    one tile, but over the tiles of a large image it held 3.8 GB where one tile needs 1.3
    (a 4000x3000 encode; the decode 2.0 GB against 1.8), for about 10 to 20% of the time."""
    ort = _ort()
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def _without_fallback(ort):
    """onnxruntime's InferenceSession with its own fallback off: the keyword ``enable_fallback=0``
    does that from onnxruntime 1.18, and 1.17 ignores it and sets ``_enable_fallback`` itself as
    it makes the session, so a subclass holds that flag at False."""
    base = ort.InferenceSession
    if not isinstance(base, type):  # a stand-in's function (tests)
        return base
    made = _QUIET.get(base)
    if made is None:
        made = _QUIET[base] = type("QuietInferenceSession", (base,), {
            "_enable_fallback": property(lambda self: False, lambda self, value: None),
            "run": _run_until_exit(ort, base.run)})
    return made


_QUIET: dict = {}
"""The subclass of :func:`_without_fallback`, by the InferenceSession class it derives from."""


def _run_until_exit(ort, run):
    """``InferenceSession.run`` that lets the program exit while a daemon thread runs a graph.

    The interpreter does not wait for daemon threads: it exits while one is inside onnxruntime,
    whose objects are then destroyed under the running graph, and the process ends in
    "terminate called without an active exception" and SIGABRT (exit status 134, a core dump)
    rather than its own exit status, one time in two in a service that encodes on a daemon
    thread. At exit (:func:`_stop_runs_at_exit`), the graphs running are told to stop where they
    stand (``RunOptions.terminate``) and are waited for; a daemon thread whose run stops so, or
    that starts one after, is parked there until the process ends, as a daemon thread's work is
    cut off at exit anyway. Other threads' runs are untouched: the interpreter waits for them
    before it exits. Sessions being made are waited for the same way (:func:`inside_onnxruntime`)."""

    @functools.wraps(run)
    def run_until_exit(self, output_names, input_feed, run_options=None):
        options = ort.RunOptions() if run_options is None else run_options
        with inside_onnxruntime(options):
            return run(self, output_names, input_feed, options)

    return run_until_exit


@contextlib.contextmanager
def inside_onnxruntime(options=None):
    """Mark the calling thread as inside onnxruntime, for the exit to wait for it: running a graph
    with ``options`` (its ``RunOptions``, which the exit tells to stop), or making a session
    (None: it cannot be stopped, and is waited for). A daemon thread that gets here once the exit
    began, or whose run the exit stopped, is parked (:func:`_park`)."""
    daemon = threading.current_thread().daemon
    entry = options if options is not None else object()
    with _RUNNING_LOCK:
        _RUNNING.append(entry)
    if daemon and _EXITING.is_set():  # after the entry is in: either the exit saw it, or this sees the exit
        _ended(entry)
        _park()
    try:
        yield
    except Exception:
        if daemon and _EXITING.is_set():
            _ended(entry)
            _park()
        raise
    finally:
        _ended(entry)


_RUNNING: list = []
"""What daemon and other threads are doing inside onnxruntime now, one entry each: the
``RunOptions`` of a graph running, a plain object for a session being made."""
_RUNNING_LOCK = threading.Lock()
_EXITING = threading.Event()

EXIT_WAIT = 10.0
"""The most seconds the exit waits for the running graphs to stop (each stops at the end of the
operator it is in) and the sessions being made to be made."""


def _ended(entry) -> None:
    with _RUNNING_LOCK, contextlib.suppress(ValueError):  # taken out already (a daemon thread parked)
        _RUNNING.remove(entry)


def _park() -> None:
    """Hold a daemon thread until the process ends, outside onnxruntime."""
    threading.Event().wait()


def _stop_runs_at_exit() -> None:
    _EXITING.set()
    with _RUNNING_LOCK:
        for entry in _RUNNING:
            if hasattr(entry, "terminate"):  # a graph running, not a session being made
                entry.terminate = True
    deadline = time.monotonic() + EXIT_WAIT
    while time.monotonic() < deadline:
        with _RUNNING_LOCK:
            if not _RUNNING:
                return
        time.sleep(0.002)


def _forget_runs_after_fork() -> None:
    """A child that fork made has the parent's list but none of its threads."""
    global _RUNNING_LOCK
    _RUNNING.clear()
    _RUNNING_LOCK = threading.Lock()


atexit.register(_stop_runs_at_exit)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_runs_after_fork)


def _for_the_cpu(options) -> None:
    """Settings of a session on the CPU provider, which onnxruntime's defaults get wrong for a
    codec's few graphs run one after another (measured in docs/benchmarks.md, 2 cores, 2 threads).

    - No memory pattern: it plans, after a shape's first run, one block for all of that run's
      tensors and takes it from the arena at the next run, beside the blocks the first run left
      there. Over Kodak's 24 images a process peaked at 877 MiB against 560 without it, and in
      some runs took twice as long for its second image (480 + 600 ms to encode and decode,
      against 215 + 260).
    - A pool's threads stop spinning when its run returns (they still spin between a run's
      operators): a codec keeps a session, and so a pool, per graph, and one that went on
      spinning took the cores from the next graph and from the rANS coder. A Kodak image encoded
      in 179 to 189 ms against 215 to 222 (the entropy parameters' graph, run just after the
      encoder's, 19 ms against 34), a 256x256 one in 36 + 47 ms against 67 + 70.
    """
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.force_spinning_stop", "1")


def create_session(
    path: Path,
    providers: list,
    threads: int | None = None,
    optimization: str = "all",
    *,
    strict: bool = False,
    data: bytes,
):
    """An InferenceSession for one graph.

    Args:
        path: the ``.onnx`` file, named in messages.
        providers: from :func:`resolve_providers` (names, or pairs of a name and its options).
        threads: intra-op threads (``None``: :func:`default_threads`, one per physical core this
            process may use).
        optimization: graph optimisation level, one of ``OPTIMIZATION_LEVELS``.
        strict: the first provider was asked for explicitly: failing to use it is an
            error rather than a warning.
        data: the file's bytes, read (and checked: :meth:`nicodec.model.ModelFiles.graph_bytes`)
            by the caller. onnxruntime is given them, not the path, which it would take as
            UTF-8 whatever the locale (a folder named in Latin-1 would be a file that "doesn't exist").

    Raises:
        ModelError: the graph cannot be loaded.
        NicodecError: ``strict`` and onnxruntime fell back from the first provider.
    """
    ort = _ort()
    if optimization not in OPTIMIZATION_LEVELS:
        raise NicodecError(f"unknown optimization level {optimization!r}: choose one of {', '.join(OPTIMIZATION_LEVELS)}")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise NicodecError(f"threads must be from 1 to {MAX_THREADS}, not {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads is None:
        threads = default_threads()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    first = provider_name(providers[0])
    if first == CPU:
        _for_the_cpu(options)
    # Fatal messages only: a node that fails (out of memory, under a ulimit) was also logged on
    # stderr, in colour, before nicodec's own message; the exception carries the same text, and
    # nicodec reports it (--debug in full).
    options.log_severity_level = 4
    # A graph's tensors with their data in another file ("external data") would be read from the
    # current folder (a graph given as bytes has no folder of its own): a model folder could copy
    # any file there into the pixels decoded. ModelFiles.graph_bytes refuses such graphs; should
    # one pass it, its data is looked for in a folder that cannot exist (onnxruntime 1.21 and
    # later; earlier ones ignore the entry).
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", NO_FOLDER)
    failure = ""
    try:
        # onnxruntime's own fallback to the CPU provider, when another fails as the session is
        # made or as it runs, prints to standard output (the stream of `-o -`) and tells a
        # program nothing: it is turned off (enable_fallback, from onnxruntime 1.18, and
        # disable_fallback for the runs) and done here, with the warning or error below.
        making = _without_fallback(ort)
        with inside_onnxruntime():  # a program's exit waits for it (a daemon thread's first image)
            try:
                session = making(data, sess_options=options, providers=providers, enable_fallback=0)
            except Exception as exc:
                if first == CPU or out_of_memory(exc):
                    raise
                failure = f" ({' '.join(str(exc).split())})"  # one line: onnxruntime's text may end in a newline
                _for_the_cpu(options)
                session = making(data, sess_options=options, providers=[CPU], enable_fallback=0)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        if out_of_memory(exc):
            raise loading_failed(path.name, exc) from exc
        raise ModelError(f"cannot load {path.name}: {exc}") from exc
    session.disable_fallback()
    in_use = session.get_providers()
    if first not in in_use:
        if strict:
            question = (" (is CUDA installed and a GPU visible?)" if first == CUDA else "" if failure else
                        " (onnxruntime's log above may say why: a device, library or option it does not have)")
            raise NicodecError(
                f"onnxruntime could not use {first} for {path.name}{failure}{question}; choose the cpu or auto "
                f"provider (--provider of nicodec's commands, --providers of the Ray "
                f"recipe's, providers= in Python) to run on {', '.join(in_use)}"
            )
        warnings.warn(
            f"onnxruntime could not use {first} for {path.name}{failure}; running on {', '.join(in_use)}",
            RuntimeWarning,
            stacklevel=caller_outside(),
        )
    return session
