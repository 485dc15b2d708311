"""training/prepare_gpu_data.py: the data for a GPU run, filled up to what the device tool carries."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "prepare_gpu_data.py"


@pytest.fixture(scope="module")
def prepare():
    if shutil.which("git") is None or not (SCRIPT.parents[1] / ".git").exists():
        pytest.skip("needs the git checkout")
    spec = importlib.util.spec_from_file_location("prepare_gpu_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_fills_the_room_left_and_keeps_the_held_out_files_apart(prepare, tmp_path, capsys):
    data = tmp_path / "data"
    for shard in (1, 5):
        folder = data / "train" / f"shard-{shard}"
        folder.mkdir(parents=True)
        for i in range(20):
            (folder / f"photo{i:02d}.jpg").write_bytes(bytes([shard]) * (1000 + 100 * i))
    out = tmp_path / "gpu"
    fixed = prepare.travelling_bytes(prepare.ROOT, [out])
    held_out = sum(1000 + 100 * i for i in range(12, 20))
    room = 10_000
    budget = (fixed + held_out + room) / prepare.MIB + 0.5
    assert prepare.main(["--shards", "1", "5", "--data", str(data), "--out", str(out),
                         "--budget-mib", repr(budget)]) == 0
    val = sorted(p.name for p in (out / "val").iterdir())
    assert val == [f"photo{i:02d}.jpg" for i in range(12, 20)]
    train = list((out / "train").iterdir())
    used = sum(p.stat().st_size for p in train)
    assert room - 1000 < used <= room  # nothing more would fit: the smallest photo is 1,000 bytes
    assert not any(p.name in {f"shard-5-{v}" for v in val} for p in train)
    assert "training photos" in capsys.readouterr().out

    # A checkout with no room left is refused, and the old folder is kept.
    assert prepare.main(["--data", str(data), "--out", str(out), "--budget-mib", "1"]) == 1
    assert (out / "train").exists()
    assert "no room" in capsys.readouterr().err
