"""The benchmark programs keep working: their quick modes, and BD-rate on known curves."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, synthetic_photo


def load(name: str):
    path = REPO / "benchmarks" / f"{name}.py"
    if not path.is_file():
        pytest.skip("the benchmarks folder is not beside these tests (an installed-package run)")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # as when run as a script: they import ``common``
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bd_rate_of_a_curve_against_itself_scaled():
    rd = load("rd")
    reference = [{"bpp": b, "psnr": 25 + 4 * np.log2(b / 0.1)} for b in (0.1, 0.2, 0.4, 0.8, 1.6)]
    cheaper = [{"bpp": p["bpp"] * 0.8, "psnr": p["psnr"]} for p in reference]
    assert rd.bd_rate(cheaper, reference) == pytest.approx(-20.0, abs=0.01)
    assert rd.bd_rate(reference, reference) == pytest.approx(0.0, abs=1e-9)
    assert rd.bd_rate(cheaper[:3], reference) is None
    assert rd.rate_at_equal_psnr(cheaper[2], reference) == pytest.approx(-20.0, abs=0.01)
    assert rd.rate_at_equal_psnr({"bpp": 1.0, "psnr": 99.0}, reference) is None


def test_quick_mode_writes_json_and_markdown(tmp_path):
    rd = load("rd")
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(3):
        Image.fromarray(synthetic_photo(128, 192, seed=seed)).save(folder / f"im{seed}.png")
    result = rd.main(["--quick", "--images", str(folder), "--json", str(tmp_path / "rd.json"),
                      "--markdown", str(tmp_path / "rd.md")])
    assert len(result["images"]) == 2
    assert all(len(curve) == 2 for curve in result["curves"].values())
    assert {"jpeg444", "jpeg420", "webp"} <= set(result["curves"])
    assert result["nicodec"][0]["bpp"] > 0 and 15 < result["nicodec"][0]["psnr"] < 60
    on_disk = json.loads((tmp_path / "rd.json").read_text())
    assert on_disk["comparison"].keys() == result["comparison"].keys()
    assert "| jpeg444 |" in (tmp_path / "rd.md").read_text()
