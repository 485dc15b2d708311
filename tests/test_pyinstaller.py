"""An application frozen with PyInstaller carries nicodec's model: the hook that pyproject.toml
declares (``pyinstaller40`` entry point, ``nicodec/_pyinstaller``).

PyInstaller follows imports, not data files: a frozen application had nicodec's modules but not
``models/``, and every ``Codec()`` failed with "not a nicodec model folder". These tests run where
PyInstaller is installed (the ``dev`` extra has it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nicodec
from nicodec.model import default_model_dir

from conftest import opened

pytestmark = pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None,
                                reason="PyInstaller is not installed (the dev extra has it)")

PACKAGE = Path(nicodec.__file__).parent


def _hook_dirs() -> list[str]:
    points = importlib.metadata.entry_points(group="pyinstaller40", name="hook-dirs")
    ours = [point for point in points if point.value.startswith("nicodec.")]
    assert len(ours) == 1, "nicodec's pyinstaller40 entry point is not installed (reinstall nicodec)"
    return ours[0].load()()


def _import_path(tmp_path: Path) -> list[str]:
    """Where PyInstaller finds the package ``nicodec``: where it is installed (nothing to add),
    or, for an editable install (``runtime/`` of a checkout), whose finder PyInstaller does not
    see, a folder that links it in under its import name."""
    if PACKAGE.name == "nicodec":
        return []
    (tmp_path / "paths").mkdir()
    (tmp_path / "paths" / "nicodec").symlink_to(PACKAGE, target_is_directory=True)
    return [str(tmp_path / "paths")]


@pytest.mark.skipif(sys.platform == "win32", reason="a checkout is linked in by a symbolic link")
def test_the_hook_collects_every_model_file_and_the_version(tmp_path):
    """Each file of the shipped models goes to the same place under ``nicodec/``, and the
    distribution's metadata goes too (``nicodec.__version__`` and ``--version`` read it)."""
    (folder,) = _hook_dirs()
    # Run as PyInstaller runs it: in a process of its own, with --paths first on sys.path.
    hooked = subprocess.run(
        [sys.executable, "-c", ("import json, runpy, sys; sys.path[:0] = json.loads(sys.argv[1]); "
                                "print(json.dumps(runpy.run_path(sys.argv[2])['datas']))"),
         json.dumps(_import_path(tmp_path)), os.path.join(folder, "hook-nicodec.py")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)  # not a checkout's nicodec.egg-info
    assert hooked.returncode == 0, hooked.stderr
    collected = {(Path(source).resolve(), Path(destination)) for source, destination in json.loads(hooked.stdout)}
    models = PACKAGE / "models"
    shipped = [path for path in models.rglob("*") if path.is_file()]
    assert default_model_dir().is_relative_to(models) and len(shipped) >= 7
    expected = {(path.resolve(), Path("nicodec") / path.parent.relative_to(PACKAGE)) for path in shipped}
    assert expected <= collected
    version = importlib.metadata.version("nicodec")
    assert any(destination.name == f"nicodec-{version}.dist-info" for _, destination in collected)
    assert all(source.suffix != ".py" for source, _ in collected)  # modules go by their imports


@pytest.mark.skipif(sys.platform == "win32", reason="a checkout is linked in by a symbolic link")
def test_a_frozen_application_codes_decodes_and_runs_the_command_line(tmp_path):
    """A one-folder build of an application that uses ``Codec``, the Pillow plugin and the
    ``nicodec`` command: its files are the ones this process makes."""
    script = tmp_path / "app.py"
    script.write_text(
        "import sys\n"
        "from PIL import Image\n"
        "import nicodec\n"
        "from nicodec import pillow_plugin\n"
        "if sys.argv[1] == 'cli':\n"
        "    from nicodec.launch import nicodec as command\n"
        "    sys.argv = ['nicodec', *sys.argv[2:]]\n"
        "    command()\n"
        "codec = nicodec.Codec()\n"
        "data = codec.encode(sys.argv[1])\n"
        "open(sys.argv[2], 'wb').write(data)\n"
        "pillow_plugin.register(codec)\n"
        "print(Image.open(sys.argv[2]).size, nicodec.__version__, codec.model_id)\n",
        encoding="utf-8")
    paths = [option for folder in _import_path(tmp_path) for option in ("--paths", folder)]
    # torch and onnx: onnxruntime's optional tools import them where they are installed (the dev
    # extra), which would put a gigabyte of torch into the application; docs/install.md says so.
    # The others are the dev extra's test tools, which pydantic's plugins import (a third of the
    # build's time).
    left_out = ["torch", "onnx", "hypothesis", "mypy", "pytest", "_pytest", "sympy", "pydantic.mypy", "pydantic.v1"]
    built = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--onedir", "--log-level", "WARN", *paths,
         *[option for name in left_out for option in ("--exclude-module", name)], "--distpath", str(tmp_path / "dist"),
         "--workpath", str(tmp_path / "build"), "--specpath", str(tmp_path), str(script)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    app = tmp_path / "dist" / "app" / "app"
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (48, 80, 3), np.uint8)).save(photo)
    codec = nicodec.Codec(providers="cpu")
    expected = codec.encode(photo)
    env = {key: value for key, value in os.environ.items() if not key.startswith("NICODEC_")}

    def run(*args):
        done = subprocess.run([str(app), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    version = importlib.metadata.version("nicodec")
    assert run(str(photo), "api.nic") == f"(80, 48) {version} {codec.model_id}\n"
    assert (tmp_path / "api.nic").read_bytes() == expected
    run("cli", "encode", str(photo), "-o", "cli.nic")
    assert (tmp_path / "cli.nic").read_bytes() == expected
    run("cli", "decode", "cli.nic", "-o", "back.png")
    assert opened(tmp_path / "back.png").size == (80, 48)
    assert run("cli", "--version").startswith(f"nicodec {version}, model ")
