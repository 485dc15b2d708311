"""nicodec-train and nicodec-export: one line naming the missing extra, not a traceback.

Each case runs in a fresh interpreter, where ``sys.modules[name] = None`` makes a module
unimportable as on a machine without it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import signal
import subprocess
import sys

import pytest

from nicodec.launch import is_missing_extra

from conftest import ended_by


def launch(command: str, blocked: list[str], *args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        f"sys.argv = [{command!r}, *{list(args)!r}]\n"
        "from nicodec import launch\n"
        f"launch.{command.removeprefix('nicodec-')}()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("command", "blocked"),
    [("nicodec-train", ["torch"]), ("nicodec-export", ["torch"]), ("nicodec-export", ["onnx"])],
)
def test_without_the_train_extra_one_line_says_what_to_install(command, blocked):
    result = launch(command, blocked, "--help")
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prefix = (f'error: {command} needs the train extra (torch, onnx) beside onnxruntime: pip install "nicodec[cpu,train]" '
              '(from a checkout, pip install ".[cpu,train]") ')
    assert lines[0].startswith(prefix)
    # The blocked module, or the other one where it is not installed at all (a runtime-only install).
    reason = r"\((import of (torch|onnx) halted; None in sys.modules|No module named '(torch|onnx)')\)"
    assert re.fullmatch(reason, lines[0].removeprefix(prefix)), lines[0]


def test_nicodec_export_without_onnxruntime_says_so_before_any_work(tmp_path):
    """It wrote the graphs, then ended in a traceback where it imported onnxruntime to check them."""
    result = launch("nicodec-export", ["onnxruntime"], str(tmp_path / "weights.pt"), "--out", str(tmp_path / "model"))
    assert result.returncode == 1, result.stderr
    assert result.stderr == ('error: nicodec-export needs onnxruntime (the cpu or gpu extra) beside torch and onnx, to '
                             'check the graphs it writes: pip install "nicodec[cpu,train]" (from a checkout, pip install '
                             '".[cpu,train]")\n')
    assert not (tmp_path / "model").exists()
    if all(importlib.util.find_spec(name) for name in ("torch", "onnx")):  # training itself runs without it
        assert launch("nicodec-train", ["onnxruntime"], "--help").returncode == 0


@pytest.mark.parametrize(("receipt", "tool"), [("pipx_metadata.json", "pipx install --force"),
                                               ("uv-receipt.toml", "uv tool install")])
def test_a_tool_installed_by_pipx_or_uv_is_told_their_command(tmp_path, monkeypatch, receipt, tool):
    """`pipx install nicodec` (or `uv tool install`) without an extra was told `pip install
    'nicodec[cpu]'`, which installs into another Python: the command still lacked onnxruntime."""
    import importlib.metadata as metadata

    from nicodec import plugins, sessions
    from nicodec.errors import NicodecError
    from nicodec.launch import install_command

    assert install_command("heif") == ("pip install", "heif")
    (tmp_path / receipt).write_text("{}")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    real_version = metadata.version
    installed: set[str] = set()

    def version(name):
        if name in installed:
            return "1.0"
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    with pytest.raises(NicodecError, match=rf"not installed: install nicodec with the \[cpu\] or \[gpu\] extra, "
                                           rf"{tool} 'nicodec\[cpu\]' \(from a checkout: {tool} '\.\[cpu\]'\)"):
        sessions._ort()
    installed.update({"onnxruntime-gpu", "torch", "onnx"})
    if tool == "pipx install --force":  # pipx installs into the tool's environment: what it holds stays
        assert plugins.heif_install() == 'pipx install --force "nicodec[heif]" adds pillow-heif, which reads'
        assert install_command("cpu,train") == (tool, "cpu,train")
    else:  # uv makes the environment hold what it names alone: every extra it has is named too
        assert plugins.heif_install() == 'uv tool install "nicodec[gpu,train,heif]" adds pillow-heif, which reads'
        assert install_command("cpu,train") == (tool, "gpu,train")  # the GPU's onnxruntime stays
        installed.clear()
        installed.add("onnxruntime")
        assert install_command("gpu") == (tool, "gpu")  # the GPU's replaces the CPU's
    monkeypatch.setattr(metadata, "version", real_version)
    if tool == "uv tool install":  # an environment uv made, not a tool's: no pip of its own
        (tmp_path / receipt).unlink()
        (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\nuv = 0.13.10\nversion_info = 3.11.7\n")
        assert install_command("heif") == ("uv pip install", "heif")
        (tmp_path / receipt).write_text("{}")
    code = (f"import sys\nsys.prefix = {str(tmp_path)!r}\nsys.modules['torch'] = None\n"
            "sys.argv = ['nicodec-train', '--help']\nfrom nicodec import launch\nlaunch.train()\n")
    blocked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert blocked.returncode == 1 and f'beside onnxruntime: {tool} "nicodec[' in blocked.stderr, blocked.stderr


def test_any_other_missing_module_keeps_its_traceback():
    if importlib.util.find_spec("torch") is None:  # train.py imports torch first: it is what is found missing
        pytest.skip("torch is not installed (a runtime-only install), so the train extra is what is missing")
    result = launch("nicodec-train", ["numpy"], "--help")  # torch there, numpy not: no missing extra
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ModuleNotFoundError" in result.stderr
    assert "needs the train extra" not in result.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [("torch", True), ("torch._C", True), ("onnx", True), ("onnx.numpy_helper", True),
     ("onnxruntime", False), ("torchvision", False), ("numpy", False), (None, False)],
)
def test_only_torch_and_onnx_count_as_the_missing_extra(name, expected):
    assert is_missing_extra(ModuleNotFoundError(f"No module named {name!r}", name=name)) is expected


def test_the_installed_commands_are_the_launchers():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")
               if e.name.startswith("nicodec")}
    assert scripts == {
        "nicodec": "nicodec.launch:nicodec",
        "nicodec-train": "nicodec.launch:train",
        "nicodec-export": "nicodec.launch:export",
    }


@pytest.mark.train
@pytest.mark.parametrize("command", ["nicodec-train", "nicodec-export"])
def test_with_the_train_extra_the_command_runs(command):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    result = launch(command, [], "--help")
    assert result.returncode == 0, result.stderr
    assert f"Usage: {command}" in result.stdout


@pytest.mark.train
@pytest.mark.parametrize(("command", "args", "named", "own"), [
    ("nicodec-train", ["--bogus"], "--bogus", None),
    ("nicodec-train", ["--lr", "-1"], "--lr", ": must be a positive number (at most 1e36), not -1"),
    ("nicodec-export", [], "checkpoint", None),
])
def test_a_usage_error_of_the_training_commands_is_one_line(command, args, named, own):
    """As nicodec's own: the error and where help is, not Click's usage, hint and boxed error.
    Click's sentence (Typer's copy rewords it between versions) is judged by the name it is
    about; nicodec's own reason, where it gives one, word for word."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    result = launch(command, [], *args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Usage" not in result.stderr, result.stderr
    line = result.stderr.rstrip("\n")
    assert line.startswith("error: ") and named in line, line
    assert line.endswith((f"; see {command} --help", f" See {command} --help.")), line
    assert own is None or line.endswith(f"{own}; see {command} --help"), line


@pytest.mark.train
@pytest.mark.parametrize("module", ["decoder_finetune", "entropy_finetune"])
def test_a_usage_error_of_the_fine_tunes_is_one_line(module):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    result = subprocess.run([sys.executable, "-m", f"nicodec.training.{module}", "--bogus"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.rstrip("\n")  # Click's sentence: what it is about, and where help is (as above)
    assert line.startswith("error: ") and "--bogus" in line, line
    assert line.endswith((f"; see python -m nicodec.training.{module} --help",
                          f" See python -m nicodec.training.{module} --help.")), line


def test_onnxruntime_writes_nothing_in_the_home_folder(tmp_path):
    """onnxruntime 1.31 and later keep telemetry (a database, a device id) under ~/.cache; nicodec
    opts out before importing it, unless the switch is set already (0 leaves onnxruntime's way)."""
    import os

    script = ("import numpy, nicodec\n"
              "codec = nicodec.Codec(providers='cpu')\n"
              "codec.decode(codec.encode(numpy.zeros((64, 64, 3), numpy.uint8)))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")}
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", script], env={**env, "HOME": str(home)}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(home.rglob("*")) == [] and "telemetry" not in done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptors")
def test_closed_standard_descriptors_are_not_given_to_outputs(tmp_path):
    """Started with stderr closed (``2>&-``), the next file opened got descriptor 2, and what C
    libraries write to stderr (libtiff's warnings) landed inside an output being written. The
    launcher opens the null device there first; Python's own ``sys.stderr`` stays None."""
    import os

    code = (
        "import os, sys\n"
        "from nicodec import launch\n"
        "sys.argv = ['nicodec', 'decode', 'nothing.nic']\n"
        "try:\n"
        "    launch.nicodec()\n"
        "except SystemExit:\n"
        "    pass\n"
        "with open('made', 'wb') as f:\n"
        "    os.write(2, b'from C')  # a library's complaint\n"
        "    f.write(b'data')\n"
        "    print(f.fileno(), sys.stderr is None, file=open('seen', 'w'))\n"
    )
    script = tmp_path / "probe.py"
    script.write_text(code)
    done = subprocess.run(["sh", "-c", f'exec 2>&-; exec "{sys.executable}" probe.py'], cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0
    fileno, closed = (tmp_path / "seen").read_text().split()
    assert int(fileno) > 2 and closed == "True"
    assert (tmp_path / "made").read_bytes() == b"data"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptors")
def test_a_usage_error_with_stderr_closed_keeps_its_exit_code():
    """With stderr closed Rich 10.11 (the oldest Typer 0.16 takes) wrote to None: an
    AttributeError, exit code 1 for a usage error (CI ran this under Rich 10.11 until nicodec 0.7.12)."""
    done = subprocess.run(["sh", "-c", f'exec 2>&-; exec "{sys.executable}" -m nicodec encode --bogus'],
                          capture_output=False, stdout=subprocess.PIPE, timeout=120)
    assert done.returncode == 2 and done.stdout == b""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGXCPU"), reason="POSIX signals")
def test_the_command_ends_with_sigxcpu_ignored():
    """A CPU-time limit's SIGXCPU that comes as the finished command ends would dump core by
    its default action: the nicodec process leaves it ignored (main() from a program puts the
    default back when it was not stopped by it)."""
    code = (
        "import signal, sys\n"
        "from nicodec import launch\n"
        "from nicodec.cli import main\n"
        "for run in (lambda: main(['--version']), launch.nicodec):\n"
        "    sys.argv = ['nicodec', '--version']\n"
        "    try:\n"
        "        run()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print(signal.getsignal(signal.SIGXCPU) == signal.SIG_IGN, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr.split() == ["False", "True"], done.stderr


@pytest.mark.parametrize("command", ["nicodec-train", "nicodec-export"])
def test_ctrl_c_while_the_command_loads_is_one_line(command):
    """Ctrl-C in the second or two torch takes to import gave a traceback through torch's modules."""
    code = (
        "import sys\n"
        "class Interrupting:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('torch', 'onnx'):\n"  # whichever the command imports first, installed or not
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupting())\n"
        f"sys.argv = [{command!r}, '--help']\n"
        "from nicodec import launch\n"
        f"launch.{command.removeprefix('nicodec-')}()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (ended_by(signal.SIGINT), "", "interrupted\n")
    if os.path.exists("/dev/full"):  # a line that cannot be written leaves the stop's own end (it was exit code 1)
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=full, text=True,
                                    timeout=120, check=False)
        assert (result.returncode, result.stdout) == (ended_by(signal.SIGINT), "")


@pytest.mark.skipif(sys.platform == "win32", reason="a closed descriptor")
def test_without_the_train_extra_and_with_stderr_closed_nothing_goes_to_stdout():
    """2>&-: print() with sys.stderr None wrote the missing extra's line to standard output."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.argv = ['nicodec-train', '--help']\n"
        "from nicodec import launch\n"
        "launch.train()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, timeout=120,
                            check=False, preexec_fn=lambda: os.close(2))
    assert (result.returncode, result.stdout) == (1, "")


def test_run_app_keeps_a_commands_own_exit(monkeypatch):
    """A SystemExit of the command's own (a message, a code) ends the program as it says; a
    command that returns ends it with 0."""
    from nicodec.launch import run_app

    def failing():
        raise SystemExit("error: the command's own message")

    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(SystemExit) as ended:
        run_app(failing, "prog")
    assert ended.value.code == "error: the command's own message"
    with pytest.raises(SystemExit) as ended:
        run_app(lambda: None, "prog")
    assert ended.value.code == 0


def test_no_docstring_holds_a_lone_surrogate():
    r"""Python 3.13 and newer cannot import a module whose docstring holds a lone surrogate (a
    ``"\udcc3"`` written without its backslash doubled): they clean docstrings as they compile,
    through UTF-8, and ``import nicodec.cli`` failed there with UnicodeEncodeError. The
    escape a docstring shows is written ``\\udcc3``."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    found = []
    for folder in ("runtime", "export", "training", "tests", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    text = ast.get_docstring(node, clean=False) or ""
                    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
                        found.append(f"{path.relative_to(root)}: {getattr(node, 'name', 'the module')}")
    assert not found, found
