"""docs/desktop.md: its commands, run in a temporary home folder, teach the shared MIME database,
``file(1)`` and the file managers' thumbnailers the ``.nic`` format. Each check needs the tool
it checks (update-mime-database, gio, file, sh) and is skipped without it."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nicodec import format as nicformat

from conftest import synthetic_photo

PAGE = Path(__file__).resolve().parent.parent / "docs" / "desktop.md"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the freedesktop.org desktop's files")


def _install_block() -> str:
    """The ```sh block under "For one user"."""
    if not PAGE.is_file():
        pytest.skip("needs the checkout's (or the sdist's) docs/desktop.md beside the tests")
    text = PAGE.read_text(encoding="utf-8")
    section = text[text.index("## For one user"):]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def _needs(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def _environment(home: Path, **more: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    environment.update(HOME=str(home), **more)
    return environment


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home folder with the page's files installed (its commands run twice, over a ~/.magic
    that held an entry of its own, its last line without a newline)."""
    _needs("sh", "update-mime-database")
    home = tmp_path_factory.mktemp("home")
    (home / ".magic").write_text("0\tstring\tMYFORMAT\tmy own format")
    for _ in range(2):
        done = subprocess.run(["sh", "-c", _install_block()], env=_environment(home), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    return home


@pytest.fixture(scope="module")
def nic(tmp_path_factory, codec) -> Path:
    folder = tmp_path_factory.mktemp("nic")
    Image.fromarray(synthetic_photo(192, 256)).save(folder / "photo.png")
    path = folder / "photo.nic"
    path.write_bytes(codec.encode(folder / "photo.png", quality=37.5))
    return path


def test_the_commands_install_three_files_and_once(home):
    assert (home / ".local/share/mime/packages/nicodec.xml").is_file()
    assert (home / ".local/share/mime/mime.cache").is_file()
    assert (home / ".local/share/thumbnailers/nicodec.thumbnailer").is_file()
    magic = (home / ".magic").read_text()
    assert magic.startswith("0\tstring\tMYFORMAT\tmy own format\n# nicodec") and magic.count("nicodec image data") == 1


def test_the_mime_type_is_known_by_the_name_and_by_the_first_bytes(home, nic, tmp_path):
    _needs("gio")
    (tmp_path / "no_extension").write_bytes(nic.read_bytes())
    Image.new("RGB", (8, 8)).save(tmp_path / "other.png")

    def content_type(path: Path) -> str:
        done = subprocess.run(["gio", "info", "-a", "standard::content-type", str(path)], env=_environment(home),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return re.search(r"standard::content-type: (\S+)", done.stdout).group(1)

    assert content_type(nic) == "image/x-nicodec"
    assert content_type(tmp_path / "no_extension") == "image/x-nicodec"
    assert content_type(tmp_path / "other.png") == "image/png"


def test_file_describes_a_nic_file_and_every_other_as_before(home, nic, tmp_path, codec):
    _needs("file")
    header = nicformat.read_header(nic.read_bytes())[0]
    others = [tmp_path / "other.png", tmp_path / "other.jpg", Path(__file__)]
    Image.new("RGB", (8, 8)).save(others[0])
    Image.new("RGB", (8, 8)).save(others[1])

    def described(path: Path, *options: str, home_folder: Path = home) -> str:
        done = subprocess.run(["file", "-b", *options, str(path)], env=_environment(home_folder), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert described(nic) == (f"nicodec image data, format version 1, 256 x 192, quality 37.5, model "
                              f"{header.model_id}")
    assert header.model_id == codec.model_id and header.quality == 37.5
    assert described(nic, "--mime-type") == "image/x-nicodec"
    assert described(nic, "--extension") == "nic"
    for other in others:
        assert described(other) == described(other, home_folder=tmp_path)
    (tmp_path / "mine").write_bytes(b"MYFORMAT and the rest")
    assert described(tmp_path / "mine") == "my own format"  # the entry that was there before
    single_rate = bytearray(nic.read_bytes())  # a single-rate model's file records quality 0.0
    offset = 23 + single_rate[6]
    single_rate[offset:offset + 4] = bytes(4)
    (tmp_path / "single.nic").write_bytes(bytes(single_rate))
    assert described(tmp_path / "single.nic") == f"nicodec image data, format version 1, 256 x 192, model {header.model_id}"


def _thumbnailer(home: Path) -> configparser.SectionProxy:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # the keys' case kept
    entry.read(home / ".local/share/thumbnailers/nicodec.thumbnailer", encoding="utf-8")
    return entry["Thumbnailer Entry"]


def _exec_line(entry, size: int, source: Path, output: Path) -> list[str]:
    """The Exec line as tumbler and GNOME turn it into a command: split as a shell would, each
    %s, %i and %o replaced."""
    values = {"%s": str(size), "%i": str(source), "%o": str(output)}
    return [re.sub(r"%[sio]", lambda m: values[m.group(0)], arg) for arg in shlex.split(entry["Exec"])]


@pytest.fixture()
def on_path(tmp_path) -> str:
    """A PATH whose ``nicodec`` is this Python's nicodec, as the console script would be."""
    _needs("sh")
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nicodec"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m nicodec "$@"\n')
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def test_the_thumbnailer_is_for_the_mime_type_and_runs_nicodec(home):
    entry = _thumbnailer(home)
    assert entry["TryExec"] == "nicodec"
    assert "image/x-nicodec" in entry["MimeType"].split(";")


ODD_NAME = "-a b's \"c\" $(touch x) %s.nic"
"""A name with a leading dash, spaces, quotes, a command substitution and a placeholder, which
the Exec line must pass on as one argument, as it is."""


def test_the_thumbnail_is_written_into_the_file_tumbler_holds_open(home, nic, tmp_path, on_path, codec):
    """Tumbler makes %o (tumbler-XXXXXXX.png), keeps it open, and reads the thumbnail through
    the file it opened: an output renamed over %o would leave it the empty one."""
    descriptor, output = tempfile.mkstemp(prefix="tumbler-", suffix=".png", dir=tmp_path)
    source = tmp_path / ODD_NAME
    source.write_bytes(nic.read_bytes())
    try:
        done = subprocess.run(_exec_line(_thumbnailer(home), 128, source, Path(output)),
                              env=_environment(home, PATH=on_path), cwd=tmp_path, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        with os.fdopen(os.dup(descriptor), "rb") as held:
            held.seek(0)
            data = held.read()
    finally:
        os.close(descriptor)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and not (tmp_path / "x").exists()
    with Image.open(Path(output)) as thumbnail:
        assert thumbnail.size == (128, 96)
        expected = codec.decode(nic.read_bytes()).resize((128, 96), Image.Resampling.LANCZOS, reducing_gap=3.0)
        assert np.array_equal(np.asarray(thumbnail.convert("RGB")), np.asarray(expected))


def test_the_thumbnail_is_made_as_gnome_asks_for_it(home, nic, tmp_path, on_path):
    """GNOME names an output that does not exist yet, runs the command from /, and its sandbox
    shows no home folder."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    source = sandbox / ODD_NAME
    source.write_bytes(nic.read_bytes())
    output = sandbox / "gnome-desktop-thumbnailer.png"
    done = subprocess.run(_exec_line(_thumbnailer(home), 256, source, output),
                          env=_environment(tmp_path / "no_home", PATH=on_path), cwd="/", capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(output) as thumbnail:
        assert thumbnail.size == (256, 192) and thumbnail.format == "PNG"


def test_a_file_that_does_not_decode_leaves_the_output_empty_and_fails(home, nic, tmp_path, on_path):
    damaged = tmp_path / "damaged.nic"
    data = bytearray(nic.read_bytes())
    data[-20] ^= 0xFF
    damaged.write_bytes(bytes(data))
    output = tmp_path / "tumbler-abcdefg.png"
    output.touch()
    done = subprocess.run(_exec_line(_thumbnailer(home), 128, damaged, output), env=_environment(home, PATH=on_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "damaged.nic" in done.stderr and "checksum" in done.stderr, done.stderr
    assert output.stat().st_size == 0
