"""benchmarks/grayscale.py keeps working: its figures on a few synthetic images."""

from __future__ import annotations

import json

from PIL import Image

from conftest import synthetic_photo
from test_benchmarks import load


def test_grayscale_benchmark_reports_gray_and_colour(tmp_path):
    grayscale = load("grayscale")
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(2):
        Image.fromarray(synthetic_photo(128, 192, seed=seed)).save(folder / f"im{seed}.png")
    report = grayscale.main(["--images", str(folder), "--threads", "1", "--json", str(tmp_path / "g.json")])
    assert [row["image"] for row in report["images"]] == ["im0.png", "im1.png"]
    for row in report["images"]:
        assert row["gray_bpp"] > 0 and 20 < row["gray_psnr"] < 60
        assert row["jpeg_gray_same_size_bpp"] <= row["gray_bpp"]
    assert json.loads((tmp_path / "g.json").read_text())["summary"]["images"] == 2
