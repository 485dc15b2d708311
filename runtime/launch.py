"""Console entry points: nicodec, nicodec-train and nicodec-export.

Every install gets the last two commands, but they need torch and onnx (the ``train`` extra),
which a runtime-only install lacks. Loaded there directly, they would end in a traceback; these
launchers say in one line which extra is missing instead. Each launcher gives a Ctrl-C that
comes while the command's modules load (a tenth of a second or two for ``nicodec``, a second
or two while torch imports for the others) the line and exit code of any other Ctrl-C, not a
traceback. They import nothing heavy themselves.
"""

from __future__ import annotations

import os
import sys

# Only these missing modules mean "the train extra is not installed"; any other ImportError
# (one of ours, or a broken dependency) is a real error and keeps its traceback.
EXTRA_MODULES = ("torch", "onnx")


def is_missing_extra(error: ModuleNotFoundError) -> bool:
    """Whether ``error`` is about torch or onnx (or a submodule of them), not another module.

    Args:
        error: The error raised while importing a command's module.

    Returns:
        True when the missing module is torch, onnx or one of their submodules
        (``onnxruntime`` is not onnx).
    """
    name = error.name or ""
    return any(name == module or name.startswith(module + ".") for module in EXTRA_MODULES)


def install_command(extras: str) -> tuple[str, str]:
    """The command that installs nicodec again with ``extras`` (``"cpu,train"``), and the extras
    to name to it, where this nicodec was installed:

    - by pip (or anything else): ``pip install`` and ``extras``;
    - by pipx, a tool in an environment of its own (where ``pip install`` would install into
      another Python): ``pipx install --force``, which installs into that environment and keeps
      what it holds, and ``extras``;
    - by ``uv tool install``: that command, and every extra the tool has now beside ``extras``,
      since uv makes the environment hold what it names and nothing else (naming ``heif`` alone
      would take a GPU's onnxruntime or torch out). ``gpu`` wins over ``cpu``: asked for, it
      replaces the CPU's; installed, it stays where ``cpu`` is named only as the default;
    - into an environment uv made (``uv venv``, a ``uv run`` project), which has no pip of its
      own: ``uv pip install`` and ``extras``.
    """
    from pathlib import Path

    prefix = Path(sys.prefix)
    if (prefix / "pipx_metadata.json").is_file():
        return "pipx install --force", extras
    if not (prefix / "uv-receipt.toml").is_file():
        return ("uv pip install" if _made_by_uv(prefix) else "pip install"), extras
    named = _extras_installed()
    named += [extra for extra in extras.split(",") if extra not in named]
    if "gpu" in named and "cpu" in named:
        named.remove("cpu")
    return "uv tool install", ",".join(named)


def _made_by_uv(prefix) -> bool:
    """Whether the environment at ``prefix`` was made by uv (its pyvenv.cfg names uv's version)."""
    try:
        lines = (prefix / "pyvenv.cfg").read_text("utf-8", errors="replace").splitlines()
    except OSError:  # not a virtual environment
        return False
    return any(line.split("=")[0].strip() == "uv" for line in lines)


def _extras_installed() -> list[str]:
    """nicodec's extras whose every distribution is installed, as its metadata lists them
    (``Requires-Dist: onnxruntime>=1.17,...; extra == "cpu"``); none where it has none."""
    import re
    from importlib import metadata

    try:
        requirements = metadata.requires("nicodec") or []
    except metadata.PackageNotFoundError:  # an application frozen without it
        return []
    needs: dict[str, list[str]] = {}
    for requirement in requirements:
        name, extra = re.match(r"[A-Za-z0-9._-]*", requirement), re.search(r"extra\s*==\s*['\"]([^'\"]+)", requirement)
        if name and name.group(0) and extra:
            needs.setdefault(extra.group(1), []).append(name.group(0))

    def installed(name: str) -> bool:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            return False
        return True

    return [extra for extra, names in needs.items() if all(installed(name) for name in names)]


def _say(line: str) -> None:
    """A line on stderr where it can be written: a closed stderr (``2>&-``) would make print()
    write to stdout, perhaps a ``-o -`` pipe, and one that cannot be written (``2>/dev/full``)
    must not change how the process ends (a Ctrl-C's signal)."""
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        from .stdio import drop

        drop(sys.stderr)  # else the line left in its buffer fails again at exit (code 120)


def _launch(command: str, module: str, needs_onnxruntime: bool = False) -> None:
    import importlib.util

    if needs_onnxruntime and importlib.util.find_spec("onnxruntime") is None:
        # Found missing only once the graphs were written (to check them), as a traceback.
        tool, extras = install_command("cpu,train")
        _say(f'error: {command} needs onnxruntime (the cpu or gpu extra) beside torch and onnx, to check the graphs '
             f'it writes: {tool} "nicodec[{extras}]" (from a checkout, {tool} ".[{extras}]")')
        raise SystemExit(1)
    try:
        app = importlib.import_module(module).app
    except KeyboardInterrupt:  # while torch imports (a second or two): the line and exit code of any other Ctrl-C
        _say("interrupted")
        end_by_the_signal(130)
        raise SystemExit(130) from None
    except ModuleNotFoundError as error:
        if not is_missing_extra(error):
            raise
        tool, extras = install_command("cpu,train")
        _say(f'error: {command} needs the train extra (torch, onnx) beside onnxruntime: {tool} "nicodec[{extras}]" '
             f'(from a checkout, {tool} ".[{extras}]") ({error})')
        raise SystemExit(1) from None
    run_app(app, command)


def run_app(app, command: str) -> None:
    """Run a Typer ``app`` (or a function, as ``typer.run`` takes one) as the program
    ``command``, and end the process with its exit code. Not in Click's standalone mode, as
    nicodec's own command line: a usage error is one line, not Click's usage, hint and box."""
    import typer

    from .console import click_error, escaping

    if not isinstance(app, typer.Typer):
        function, app = app, typer.Typer(add_completion=False)
        app.command()(function)
    for stream in (sys.stdout, sys.stderr):  # Typer's help too: Rich's "…" in an ASCII locale was a traceback
        escaping(stream)
    try:
        code = app(prog_name=command, standalone_mode=False)
    except SystemExit as ended:  # the command's own exit (a stop's, from the training loop's handlers), as it is
        end_by_the_signal(ended.code)
        raise
    except Exception as exc:  # noqa: BLE001 - Click's exceptions; click_error raises anything else again
        code = click_error(exc, sys.argv[1:], typer.main.get_command(app), command)
    end_by_the_signal(code)
    raise SystemExit(code if isinstance(code, int) else 0)


def end_by_the_signal(code: object) -> None:
    """End the process by the signal that stopped it, once its clean-up is done, when ``code`` is
    the exit code of a stop by SIGINT, SIGTERM or SIGHUP (130, 143, 129), on POSIX systems: a
    shell running nicodec in a loop, or xargs, goes on after a child that merely exited with
    130, and stops after one that the signal ended (bash's "wait and cooperative exit"; Python
    ends so after an uncaught KeyboardInterrupt). The shell's ``$?`` reads the same 130, 143 or
    129; a program that waits for the process sees the signal. SIGXCPU's 152 stays an exit code
    (its default action dumps core). Returns where the signal cannot be sent."""
    import signal

    if os.name != "posix" or not isinstance(code, int) or isinstance(code, bool):
        return
    signum = {130: signal.SIGINT, 143: signal.SIGTERM, 129: signal.SIGHUP}.get(code)
    if signum is None:
        return
    for stream in (sys.stdout, sys.stderr):  # nothing written after this
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
    except (OSError, ValueError):  # not the main thread, or no such call here: the exit code then
        return


def standard_descriptors() -> None:
    """Open the null device on whichever of file descriptors 0, 1 and 2 are closed (``2>&-``),
    as daemons do: else the next file opened, perhaps an output being written, would get the
    number, and what C libraries write to "stderr" (libtiff's warnings, onnxruntime's log)
    would land inside it. Python's ``sys.stderr`` stays None, so nicodec still knows it was
    closed."""
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:  # no null device (a bare chroot): as before
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def nicodec() -> None:
    """Run ``nicodec`` (:func:`nicodec.cli.main`, as the process itself)."""
    standard_descriptors()
    try:
        from .cli import _main

        _main(None, command=True)
    except SystemExit as ended:
        end_by_the_signal(ended.code)
        batch = sys.modules.get("nicodec.batch")
        if batch is not None and batch.ABANDONED:
            # A batch stopped twice left files being coded on threads that cannot be stopped
            # (one may wait for a pipe that nothing writes): end now, not when they end.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (AttributeError, OSError, ValueError):
                    pass
            os._exit(ended.code if isinstance(ended.code, int) else 1)
        raise
    except KeyboardInterrupt as exc:  # before main() runs the app (SIGTERM then ends the process, as always)
        import signal

        signum = getattr(exc, "signum", signal.SIGINT)  # a Terminated (SIGTERM, SIGHUP, SIGXCPU) as main() ends
        _say("interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}")
        end_by_the_signal(128 + signum)
        raise SystemExit(128 + signum) from None
    except MemoryError:  # while the command line's modules load (numpy, Pillow), under a memory limit
        _say("error: out of memory while nicodec starts; free some memory, or raise this process's limit (ulimit -v)")
        raise SystemExit(1) from None


def train() -> None:
    """Run ``nicodec-train`` (``nicodec.training.train``'s Typer app)."""
    _launch("nicodec-train", "nicodec.training.train")


def export() -> None:
    """Run ``nicodec-export`` (``nicodec.export.export``'s Typer app)."""
    _launch("nicodec-export", "nicodec.export.export", needs_onnxruntime=True)
