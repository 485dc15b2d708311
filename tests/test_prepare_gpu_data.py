"""training/prepare_gpu_data.py: the data for a GPU run, filled up to what the device tool carries."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "prepare_gpu_data.py"
SIZES = [1000 + 100 * i for i in range(20)]


@pytest.fixture
def prepare(tmp_path, monkeypatch):
    """The program, run on a checkout of its own: 3,000 bytes tracked, 500 untracked, 700 ignored."""
    if not SCRIPT.exists():
        pytest.skip("needs the checkout's training/ folder (the runtime-only tests run from a copy of tests/)")
    if shutil.which("git") is None:
        pytest.skip("needs git")
    spec = importlib.util.spec_from_file_location("prepare_gpu_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path / "checkout"
    (root / "models").mkdir(parents=True)
    (root / "models" / "weights.onnx").write_bytes(b"w" * 3000)
    (root / ".gitignore").write_text("/data/\n/ignored\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "models", ".gitignore"], cwd=root, check=True)
    (root / "notes.txt").write_bytes(b"n" * 500)
    (root / "ignored").write_bytes(b"i" * 700)
    monkeypatch.setattr(module, "ROOT", root)
    return module


@pytest.fixture
def data(tmp_path):
    for shard in (1, 5):
        folder = tmp_path / "shared" / "train" / f"shard-{shard}"
        folder.mkdir(parents=True)
        for i, size in enumerate(SIZES):
            (folder / f"photo{i:02d}.jpg").write_bytes(bytes([shard]) * size)
    return tmp_path / "shared"


def test_it_fills_the_room_left_and_keeps_the_held_out_files_apart(prepare, data, capsys):
    fixed = 3000 + len("/data/\n/ignored\n") + 500
    assert prepare.travelling_bytes(prepare.ROOT, []) == fixed
    held_out, room = sum(SIZES[12:]), 10_000
    budget = (fixed + held_out + room) / prepare.MIB + 0.5
    out = prepare.ROOT / "data" / "gpu"
    assert prepare.main(["--shards", "1", "5", "--data", str(data), "--out", str(out), "--budget-mib", repr(budget)]) == 0
    assert sorted(p.name for p in (out / "val").iterdir()) == [f"photo{i:02d}.jpg" for i in range(12, 20)]
    taken = {p.name: p.stat().st_size for p in (out / "train").iterdir()}
    used = sum(taken.values())
    assert used <= room
    left = [size for shard in (1, 5) for i, size in enumerate(SIZES[: 12 if shard == 5 else 20])
            if f"shard-{shard}-photo{i:02d}.jpg" not in taken]
    assert left and all(size > room - used for size in left)  # nothing more would fit
    assert not any(name.startswith("shard-5-") and int(name[-6:-4]) >= 12 for name in taken)
    assert f"{len(taken)} of 32 training photos" in capsys.readouterr().out

    # Leaving the model folder out of the count leaves room for more.
    assert prepare.main(["--shards", "1", "5", "--data", str(data), "--out", str(out), "--budget-mib", repr(budget),
                         "--without", "models"]) == 0
    assert sum(p.stat().st_size for p in (out / "train").iterdir()) > used + 2000
    assert "mv " in capsys.readouterr().out


def test_bad_requests_are_refused_and_touch_nothing(prepare, data, tmp_path, capsys):
    out = prepare.ROOT / "data" / "gpu"
    assert prepare.main(["--data", str(data), "--out", str(out)]) == 0
    before = sorted(p.name for p in (out / "train").iterdir())
    for args, code, said in (
        (["--budget-mib", "0.5"], 1, "no room"),
        (["--shards", "9"], 2, "no such shard"),
        (["--without", "nowhere"], 2, "not a folder of the checkout"),
    ):
        assert prepare.main(["--data", str(data), "--out", str(out), *args]) == code
        assert said in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal
        prepare.main(["--data", str(data), "--out", str(out), "--shards", "-1"])
    assert refused.value.code == 2 and "must be a shard number" in capsys.readouterr().err
    assert prepare.shard_number("0") == 0  # shard-0 is a training shard like the others
    for outside in (prepare.ROOT, prepare.ROOT / "data", tmp_path / "elsewhere"):
        assert prepare.main(["--data", str(data), "--out", str(outside)]) == 2
        assert "must lie under" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "train").iterdir()) == before
    assert (prepare.ROOT / "models" / "weights.onnx").exists()
