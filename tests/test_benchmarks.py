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


def photo_folder(tmp_path, count: int):
    """A folder of ``count`` synthetic photos, im0.png, im1.png, ..."""
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(count):
        Image.fromarray(synthetic_photo(128, 192, seed=seed)).save(folder / f"im{seed}.png")
    return folder


def test_quick_mode_writes_json_and_markdown(tmp_path):
    rd = load("rd")
    folder = photo_folder(tmp_path, 3)
    result = rd.main(["--quick", "--images", str(folder), "--json", str(tmp_path / "rd.json"),
                      "--markdown", str(tmp_path / "rd.md")])
    assert len(result["images"]) == 2
    assert all(len(curve) == 2 for curve in result["curves"].values())
    assert {"jpeg444", "jpeg420", "webp"} <= set(result["curves"])
    assert result["nicodec"][0]["bpp"] > 0 and 15 < result["nicodec"][0]["psnr"] < 60
    on_disk = json.loads((tmp_path / "rd.json").read_text())
    assert on_disk["comparison"].keys() == result["comparison"].keys()
    assert "| jpeg444 |" in (tmp_path / "rd.md").read_text()


# -- MS-SSIM, the plot, speed, footprint and the one command (their quick modes) -------------


@pytest.fixture(scope="module")
def images_folder(tmp_path_factory):
    """Two photo-like images large enough for MS-SSIM's five scales (more than 160 pixels a side)."""
    folder = tmp_path_factory.mktemp("images")
    for seed in range(2):
        Image.fromarray(synthetic_photo(192, 256, seed=seed)).save(folder / f"im{seed}.png")
    return folder


def test_msssim_of_equal_and_degraded_images():
    pytest.importorskip("pytorch_msssim")
    common = load("common")
    image = synthetic_photo(192, 256, seed=3)
    rng = np.random.default_rng(0)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (2, 8, 24)]
    values = [common.msssim(image, n) for n in noisy]
    assert common.msssim(image, image) == pytest.approx(1.0, abs=1e-6)
    assert 0 < values[2] < values[1] < values[0] < 1
    assert common.msssim(image[:128], image[:128]) is None  # too small for five scales
    assert common.msssim_db(0.99) == pytest.approx(20.0)


def test_rd_quick_mode_measures_msssim_per_image(images_folder, tmp_path):
    pytest.importorskip("pytorch_msssim")
    rd = load("rd")
    result = rd.main(["--quick", "--images", str(images_folder), "--markdown", str(tmp_path / "rd.md")])
    assert result["msssim_skipped"] is None
    for point in [*result["nicodec"], *(p for curve in result["curves"].values() for p in curve)]:
        assert 0.5 < point["msssim"] <= 1 and len(point["per_image"]["msssim"]) == 2
        assert point["msssim"] == pytest.approx(np.mean(point["per_image"]["msssim"]))
    assert {"bd_rate_msssim_percent", "rate_at_equal_msssim_percent"} <= set(result["comparison"]["jpeg444"])
    assert "MS-SSIM" in (tmp_path / "rd.md").read_text()


def test_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rd = load("rd")
    curve = [{"bpp": b, "psnr": 25 + 4 * np.log2(b / 0.1), "msssim_db": 8 + 3 * np.log2(b / 0.1)} for b in (0.1, 0.4, 1.6)]
    result = {"images": ["a.png"], "curves": {"jpeg444": curve}, "nicodec": [{**curve[1], "bpp": 0.3}],
              "anchors": {"published:vtm": [{"bpp": p["bpp"], "psnr": p["psnr"] + 2} for p in curve]}}
    rd.plot(result, tmp_path / "rd.png")
    data = (tmp_path / "rd.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_speed_quick_mode_times_every_codec_and_nicodecs_stages(images_folder, tmp_path):
    speed = load("speed")
    result = speed.main(["--quick", "--images", str(images_folder), "--threads", "1", "--no-compressai",
                         "--json", str(tmp_path / "speed.json")])
    rows = {(r["name"], r.get("threads")): r for r in result["rows"]}
    assert {("nicodec", 1), ("jpeg444", None), ("webp", None)} <= set(rows)
    assert rows[("nicodec", 1)]["encode_ratio"] == 1.0 and rows[("nicodec", 1)]["decode_ratio"] == 1.0
    for row in result["rows"]:
        assert row["encode_ms"] > 0 and row["decode_ms"] > 0 and row["bpp"] > 0
        assert row["encode_ratio"] > 0 and len(row["per_image"]["encode_ms"]) == 2
    stages = result["nicodec_stages"]
    assert stages["matches_codec"], "speed.py's stage replay no longer makes the codec's bytes"
    assert {"analysis", "entropy_parameters", "entropy_coding", "other"} == set(stages["encode"]) - {"total"}
    assert {"synthesis", "entropy_parameters", "entropy_coding", "other"} == set(stages["decode"]) - {"total"}
    assert stages["decode"]["total"] == pytest.approx(sum(v for k, v in stages["decode"].items() if k != "total"))
    assert result["skipped"]["compressai"] == "--no-compressai"
    on_disk = json.loads((tmp_path / "speed.json").read_text())
    assert {"date", "machine", "rows", "nicodec_stages"} <= set(on_disk) and on_disk["machine"]["cpus"] >= 1


def test_speed_times_compressai_when_importable(images_folder):
    speed = load("speed")
    if speed.import_compressai()[0] is None:
        pytest.skip("CompressAI is not importable here (the bench environment has it)")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(images_folder.glob("*.png"))]
    rows, reason, note = speed.compressai_rows(images[:1], 1, [1])
    assert reason is None and "CompressAI" in note
    assert [r["name"] for r in rows] == ["compressai mbt2018-mean q3", "compressai msh N64 M128"]
    assert all(r["bpp"] > 0 and r["decode_ms"] > 0 for r in rows)


def test_footprint_quick_mode(images_folder, tmp_path):
    pytest.importorskip("packaging")
    footprint = load("footprint")
    result = footprint.main(["--quick", "--images", str(images_folder), "--json", str(tmp_path / "footprint.json")])
    sizes = result["disk"]["distributions_bytes"]
    assert {"nicodec", "numpy", "onnxruntime", "pillow"} <= set(sizes) and "torch" not in sizes
    assert result["disk"]["site_packages_bytes"] == sum(sizes.values()) > 20 * 2**20
    assert result["disk"]["model_files_bytes"] > 0
    times = result["times_ms"]
    assert {"import_nicodec_ms", "import_codec_ms", "model_load_ms", "first_encode_ms", "first_decode_ms"} <= set(times)
    assert all(v["median"] > 0 for v in times.values())
    peaks = result["peak_rss_mb"]
    assert 10 < peaks["model_only"] < peaks["large_decode"]
    assert peaks["kodak_encode"] >= peaks["model_only"] and peaks["large_encode"] >= peaks["model_only"]
    assert json.loads((tmp_path / "footprint.json").read_text())["peak_rss_mb"] == peaks


def test_run_all_quick_writes_one_json_a_table_and_a_plot(images_folder, tmp_path):
    pytest.importorskip("packaging")
    run_all = load("run_all")
    run_all.main(["--quick", "--images", str(images_folder), "--out", str(tmp_path), "--threads", "1",
                  "--no-compressai"])
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert {"date", "machine", "rd", "speed", "footprint", "seconds"} <= set(report)
    assert report["machine"]["cpu_model"] and report["machine"]["cpus"] >= 1
    assert report["rd"]["nicodec"][0]["bpp"] > 0 and report["speed"]["rows"][0]["name"] == "nicodec"
    assert report["footprint"]["peak_rss_mb"]["kodak_decode"] > 0
    table = (tmp_path / "benchmarks.md").read_text()
    assert "## Rate-distortion" in table and "## Speed" in table and "## Footprint" in table
    assert (tmp_path / "rd.json").is_file()
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (tmp_path / "rd.png").is_file() == has_matplotlib == (report["plot"] == "rd.png")


def test_grayscale_benchmark_reports_gray_and_colour(tmp_path):
    grayscale = load("grayscale")
    folder = photo_folder(tmp_path, 2)
    report = grayscale.main(["--images", str(folder), "--threads", "1", "--json", str(tmp_path / "g.json")])
    assert [row["image"] for row in report["images"]] == ["im0.png", "im1.png"]
    for row in report["images"]:
        assert row["gray_bpp"] > 0 and 20 < row["gray_psnr"] < 60
        assert row["jpeg_gray_same_size_bpp"] <= row["gray_bpp"]
    assert json.loads((tmp_path / "g.json").read_text())["summary"]["images"] == 2
