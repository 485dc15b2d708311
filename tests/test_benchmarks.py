"""The benchmark programs keep working: their quick modes, and BD-rate on known curves."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import statistics
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, features

from nicodec.model import ModelFiles

from conftest import REPO, synthetic_photo


BD_RATE_PROGRAMS = {"rd", "rdo", "refine", "restoration", "models", "run_all", "transparency"}
"""The programs that compute BD-rates, with the bjontegaard package (the dev and bench extras)."""


def load(name: str):
    path = REPO / "benchmarks" / f"{name}.py"
    if not path.is_file():
        pytest.skip("the benchmarks folder is not beside these tests (an installed-package run)")
    if name in BD_RATE_PROGRAMS:
        pytest.importorskip("bjontegaard", reason="BD-rates need the bjontegaard package (the dev extra)")
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
    # Two or three points: a line or a parabola through them (quick mode), over the shared range only.
    assert rd.bd_rate(cheaper[:3], reference) == pytest.approx(-20.0, abs=0.01)
    assert rd.bd_rate(cheaper[3:], reference[:2]) is None  # 37..41 dB against 25..29 dB
    assert rd.overlap(cheaper[1:4], reference) == pytest.approx([29.0, 37.0])
    assert rd.bd_rate(cheaper[:1], reference) is None and rd.overlap(cheaper[:1], reference) is None
    assert rd.rate_at_equal_psnr(cheaper[2], reference) == pytest.approx(-20.0, abs=0.01)
    assert rd.rate_at_equal_psnr({"bpp": 1.0, "psnr": 99.0}, reference) is None


def test_one_nicodec_point_is_compared_at_equal_quality_a_curve_by_bd_rate():
    rd = load("rd")
    reference = [{"bpp": b, "psnr": 25 + 4 * np.log2(b / 0.1), "msssim_db": None} for b in (0.1, 0.4, 1.6)]
    point = {"setting": "old", "model": "old", "quality": None, "bpp": 0.16, "psnr": 29.0, "msssim": None,
             "msssim_db": None}
    row = rd.compare([point], reference)
    assert row["rate_at_equal_psnr_percent"] == pytest.approx(-20.0, abs=0.01) and "bd_rate_percent" not in row
    assert row["rate_at_equal_msssim_percent"] is None
    curve = [{**point, "bpp": 0.8 * p["bpp"], "psnr": p["psnr"], "quality": q} for p, q in zip(reference, (1, 50, 100))]
    row = rd.compare(curve, reference)
    assert row["bd_rate_percent"] == pytest.approx(-20.0, abs=0.01) and row["overlap_psnr_db"] == [25.0, 41.0]
    assert row["bd_rate_msssim_percent"] is None and row["overlap_msssim_db"] is None
    result = {"images": ["a.png"], "images_folder": "x", "msssim_skipped": "not here", "curves": {"jpeg444": reference},
              "anchors_source": "", "nicodec": [point], "comparison": {"jpeg444": rd.compare([point], reference)}}
    assert "| jpeg444 | -20.0% | n/a |" in rd.markdown(result) and "BD-rate" not in rd.markdown(result)
    result.update(nicodec=curve, comparison={"jpeg444": rd.compare(curve, reference)})
    assert "| jpeg444 | -20.0% | 25.00 to 41.00 | n/a |  |" in rd.markdown(result)


def test_rd_flags_short_overlaps_folded_curves_and_missing_codecs():
    rd = load("rd")
    ours = [{"setting": q, "quality": q, "bpp": b, "psnr": 25 + 4 * np.log2(b / 0.1), "msssim": None}
            for q, b in zip((1, 25, 50, 75, 100), (0.1, 0.2, 0.4, 0.8, 1.6))]  # 25..41 dB
    full = [{"bpp": p["bpp"] * 1.2, "psnr": p["psnr"]} for p in ours]
    short = full[3:]  # 37..41 dB: a quarter of nicodec's range
    folded = [full[0], full[2], full[1], *full[3:]]
    folded[1], folded[2] = {**folded[1], "psnr": full[1]["psnr"]}, {**folded[2], "psnr": full[2]["psnr"]}
    assert rd.monotonic(full) and not rd.monotonic(folded)
    assert rd.overlap_share(ours, full) == 1.0 and rd.overlap_share(ours, short) == 0.25
    result = {"images": ["a.png"], "images_folder": "x", "msssim_skipped": "not here", "anchors_source": "",
              "curves": {"full": full, "short": short, "folded": folded}, "nicodec": ours,
              "skipped_codecs": ["jxl"], "anchors_missing": "anchors.json not found"}
    result["comparison"] = {name: rd.compare(ours, curve) for name, curve in result["curves"].items()}
    notes = rd.cautions(result)
    assert notes == ["short: the PSNR BD-rate covers only 25.0% of nicodec's PSNR range",
                     "folded: PSNR does not rise with the rate at every step, so its fit is rough",
                     "not measured (not installed here): jxl", "no published anchors: anchors.json not found"]
    assert "Read with care: " + "; ".join(notes) in rd.markdown(result)


def test_optimised_jpeg_has_the_same_pixels_in_fewer_bytes():
    rd = load("rd")
    image = [synthetic_photo(128, 192, seed=3)]
    plain, optimised = rd.classic_point("jpeg444", 20, image), rd.classic_point("jpeg444opt", 20, image)
    assert optimised["psnr"] == plain["psnr"] and optimised["bpp"] < plain["bpp"]


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
    ours = result["nicodec"]
    assert [p["quality"] for p in ours] == rd.QUICK_NICODEC_QUALITIES and len(ours) >= 2
    shipped = ModelFiles.load().model_id
    assert all(p["model"] == shipped and 15 < p["psnr"] < 60 for p in ours)
    assert 0 < ours[0]["bpp"] < ours[1]["bpp"] and ours[0]["psnr"] < ours[1]["psnr"]
    for name, curve in result["curves"].items():
        row = result["comparison"][name]
        span = rd.overlap(ours, curve)
        assert row["overlap_psnr_db"] == span
        # Finite where the curves share a range of PSNR, None where they do not.
        assert (row["bd_rate_percent"] is not None and np.isfinite(row["bd_rate_percent"])) == (span is not None)
        assert "rate_at_equal_psnr_percent" not in row
    assert any(row["bd_rate_percent"] is not None for row in result["comparison"].values())
    on_disk = json.loads((tmp_path / "rd.json").read_text())
    assert on_disk["comparison"].keys() == result["comparison"].keys()
    assert [p["quality"] for p in on_disk["nicodec"]] == rd.QUICK_NICODEC_QUALITIES
    table = (tmp_path / "rd.md").read_text()
    assert "| jpeg444 |" in table and "BD-rate (PSNR)" in table and f"| {shipped} | 86 |" in table


def test_rd_refuses_bad_qualities_and_a_variable_rate_model_beside_another(tmp_path, capsys):
    """Usage errors (argparse's exit code 2) that name the problem, before any sweep."""
    rd = load("rd")
    folder = photo_folder(tmp_path, 1)
    with pytest.raises(SystemExit) as exit:
        rd.main(["--quick", "--images", str(folder), "--qualities", "0", "50"])
    assert exit.value.code == 2
    assert "--qualities: quality must be from 1 to 100, not 0" in capsys.readouterr().err
    shipped = str(REPO / "runtime" / "models" / "default")
    with pytest.raises(SystemExit) as exit:
        rd.main(["--quick", "--images", str(folder), "--model", shipped, "--model", shipped])
    assert exit.value.code == 2
    assert "is variable-rate: its qualities make the curve, so give it as the only --model" in capsys.readouterr().err


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
    for name, curve in result["curves"].items():
        row, span = result["comparison"][name], rd.overlap(result["nicodec"], curve, "msssim_db")
        assert row["overlap_msssim_db"] == span
        assert (row["bd_rate_msssim_percent"] is not None and np.isfinite(row["bd_rate_msssim_percent"])) == (span is not None)
    assert "BD-rate (MS-SSIM)" in (tmp_path / "rd.md").read_text()


def test_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rd = load("rd")
    curve = [{"bpp": b, "psnr": 25 + 4 * np.log2(b / 0.1), "msssim_db": 8 + 3 * np.log2(b / 0.1)} for b in (0.1, 0.4, 1.6)]
    ours = [{**p, "bpp": 0.8 * p["bpp"], "model": "nicodec-test", "quality": q} for p, q in zip(curve, (1, 50, 100))]
    result = {"images": ["a.png"], "curves": {"jpeg444": curve}, "nicodec": ours,
              "anchors": {"published:vtm": [{"bpp": p["bpp"], "psnr": p["psnr"] + 2} for p in curve]}}
    rd.plot(result, tmp_path / "rd.png")
    data = (tmp_path / "rd.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_speed_quick_mode_times_every_codec_and_nicodecs_stages(images_folder, tmp_path):
    speed = load("speed")
    result = speed.main(["--quick", "--images", str(images_folder), "--threads", "1", "--no-compressai",
                         "--quality", "29", "--json", str(tmp_path / "speed.json")])
    rows = {(r["name"], r.get("threads")): r for r in result["rows"]}
    assert {("nicodec", 1), ("jpeg444", None), ("webp", None)} <= set(rows)
    assert result["nicodec_quality"] == rows[("nicodec", 1)]["quality"] == result["nicodec_stages"]["quality"] == 29.0
    for row in result["rows"]:
        assert row["ratio_against"] == "nicodec cpu 1 threads"  # Pillow's rows too: no thread count of their own
        assert row["encode_ms"] > 0 and row["decode_ms"] > 0 and row["bpp"] > 0
        assert row["encode_ratio"] > 0 and len(row["per_image"]["encode_ms"]) == 2
    stages = result["nicodec_stages"]
    assert stages["matches_codec"], "speed.py's stage replay no longer makes the codec's bytes"
    assert {"analysis", "entropy_parameters", "entropy_coding", "other"} == set(stages["encode"]) - {"total"}
    assert {"synthesis", "entropy_parameters", "entropy_coding", "other"} == set(stages["decode"]) - {"total"}
    assert stages["decode"]["total"] == pytest.approx(sum(v for k, v in stages["decode"].items() if k != "total"))
    assert result["skipped"]["compressai"] == "--no-compressai"
    assert not any("paired_encode_ratio" in row for row in result["rows"])  # nothing to pair nicodec with
    assert set(result["load_average_1min"]) == {"before", "after", "cpus"}
    share = result["other_processes_cpu_share"]
    assert share is None or 0 <= share <= 1
    assert result["load_warning"] == speed.load_warning(share)  # its cases: test_speed_load_warning_*
    on_disk = json.loads((tmp_path / "speed.json").read_text())
    assert {"date", "machine", "rows", "nicodec_stages", "load_average_1min"} <= set(on_disk) and on_disk["machine"]["cpus"] >= 1
    assert on_disk["nicodec_quality"] == 29.0


def test_speed_interleaves_the_coders_and_pairs_their_times():
    speed = load("speed")
    calls = []

    def coder(name: str):
        def encode(image):
            calls.append(name)
            return bytes(10)

        return speed.Coder(name, encode, lambda data: np.zeros((2, 3, 3), np.uint8), {"threads": 1})

    images = [np.zeros((2, 3, 3), np.uint8)] * 2
    rows = speed.measure([coder("a"), coder("b"), coder("c")], images, repeats=2)
    assert calls == list("abc") + list("abccbaabccba")  # the warm-up, then each run the other way round
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert all(len(r["per_image"]["decode_ratio"]) == 2 and r["paired_against"] == "a" for r in rows)
    assert all(set(r[f"paired_{side}_ratio"]) == {"median", "p10", "p90", "min", "max"}
               for r in rows for side in ("encode", "decode"))
    assert speed.spread([1.0, 2.0, 3.0, 4.0]) == {"median": 2.5, "p10": 1.3, "p90": pytest.approx(3.7), "min": 1.0, "max": 4.0}


def test_speed_counts_other_processes_cpu_time_not_its_own():
    """20 s of the machine's busy time in 10 s on 2 cores, 18 s of it this process's: others took
    2 s of 20, 10%, which is still quiet; 6 s of 20 is not."""
    speed = load("speed")
    start = {"machine_busy": 100.0, "own": 50.0, "wall": 0.0}
    assert speed.others_share(start, {"machine_busy": 120.0, "own": 68.0, "wall": 10.0}, 2) == 0.1
    assert speed.others_share(start, {"machine_busy": 120.0, "own": 64.0, "wall": 10.0}, 2) == 0.3
    assert speed.others_share(start, {"machine_busy": 110.0, "own": 62.0, "wall": 10.0}, 2) == 0.0  # rounding
    assert speed.others_share(None, start, 2) is None and speed.others_share(start, start, 2) is None
    assert speed.load_warning(0.1) is None and speed.load_warning(None) is None
    assert "other processes took 30.0% of the machine's CPU time" in speed.load_warning(0.3)
    reading = speed.cpu_seconds()
    assert reading is None or set(reading) == {"machine_busy", "own", "wall"}


def test_speed_uses_the_models_default_quality_and_refuses_a_bad_one(images_folder):
    speed = load("speed")
    from nicodec import Codec, QualityError

    codec = Codec(providers="cpu", threads=1)
    with pytest.raises(QualityError):
        speed.nicodec_rows([], 1, [1], None, 101.0)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(images_folder.glob("*.png"))][:1]
    (row,) = speed.nicodec_rows(images, 1, [1], None, None)
    assert row["quality"] == codec.default_quality and row["setting"].endswith(f"q{codec.default_quality:g}")
    times, streams = speed.split_encode(codec, images[0])
    assert set(times) == {"other", "analysis", "entropy_parameters", "entropy_coding"}
    assert len(streams[1]) < len(speed.split_encode(codec, images[0], 100.0)[1][1])  # the rate grows with the quality


def test_speed_times_compressai_when_importable(images_folder):
    speed = load("speed")
    if speed.import_compressai()[0] is None:
        pytest.skip("CompressAI is not importable here (the bench environment has it)")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(images_folder.glob("*.png"))]
    models, reason, note = speed.compressai_models()
    assert reason is None and "CompressAI" in note
    rows = speed.nicodec_rows(images[:1], 1, [1], None, None, models)
    names = ["compressai mbt2018-mean q3", "compressai msh N64 M128"]
    assert [r["name"] for r in rows if r["provider"] != "cuda"] == ["nicodec", *names]
    assert all(r["bpp"] > 0 and r["decode_ms"] > 0 for r in rows)
    for row in rows[1:len(names) + 1]:  # timed interleaved with nicodec on the CPU, so paired with it
        assert row["threads"] == 1 and row["paired_against"] == "nicodec" and row["paired_decode_ratio"]["median"] > 0


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
    from nicodec.model import ModelFiles

    run_all.main(["--quick", "--images", str(images_folder), "--out", str(tmp_path), "--threads", "1",
                  "--no-compressai"])
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert {"date", "machine", "rd", "speed", "footprint", "seconds"} <= set(report)
    assert report["machine"]["cpu_model"] and report["machine"]["cpus"] >= 1
    assert report["speed"]["rows"][0]["name"] == "nicodec"
    assert [p["quality"] for p in report["rd"]["nicodec"]] == [15.0, 86.0] and report["rd"]["nicodec"][0]["bpp"] > 0
    assert report["speed"]["nicodec_quality"] == ModelFiles.load().default_quality
    assert report["footprint"]["peak_rss_mb"]["kodak_decode"] > 0
    table = (tmp_path / "benchmarks.md").read_text()
    assert "## Rate-distortion" in table and "## Speed" in table and "## Footprint" in table
    assert "BD-rate (PSNR)" in table
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


def test_edges_benchmark_compares_each_edge_alone_with_the_same_pixels_inside(tmp_path):
    edges = load("edges")
    folder = photo_folder(tmp_path, 2)  # 192x128: crops of 128x64 and 129x65 from (32, 32)
    report = edges.main(["--images", str(folder), "--threads", "1", "--json", str(tmp_path / "e.json")])
    for row in report["images"]:
        assert (row["multiple"]["size"], row["one_more"]["size"]) == ("128x64", "129x65")
        for label in ("multiple", "one_more"):
            alone, inside = row[label]["alone"], row[label]["inside"]
            assert set(alone) == set(inside) == set(edges.SIDES) and all(v > 0 for v in alone.values())
            # the inner pixels are coded alike either way: far from the crop's edges, within the margins
            assert alone["inner"] == pytest.approx(inside["inner"], rel=0.2)
    summary = json.loads((tmp_path / "e.json").read_text())["summary"]
    assert summary["images"] == 2 and summary["one_more"]["mean_bytes"] > summary["multiple"]["mean_bytes"]
    assert summary["one_more_extra_bytes_percent"] == pytest.approx(100 * statistics.mean(
        r["one_more"]["bytes"] / r["multiple"]["bytes"] - 1 for r in report["images"]))


def test_padding_codes_each_crop_padded_to_16_and_to_64_at_each_quality(tmp_path):
    pytest.importorskip("bjontegaard")
    padding = load("padding")
    folder = photo_folder(tmp_path, 2)  # 192x128: crops 65..192 wide, 1..128 high
    report = padding.main(["--images", str(folder), "--threads", "1", "--sizes", "3", "--qualities", "10", "80",
                           "--json", str(tmp_path / "p.json")])
    assert report["qualities"] == [10, 80] and len(report["crops"]) == 6
    for row in report["crops"]:
        width, height = map(int, row["size"].split("x"))
        assert 65 <= width <= 192 and 1 <= height <= 128 and row["pixels"] == width * height
        off_grid = (-(-height // 16) * 16, -(-width // 16) * 16) != (-(-height // 64) * 64, -(-width // 64) * 64)
        for fine, coarse in zip(row["fine"], row["coarse"]):
            assert fine["flags"] & 4 == (4 if off_grid else 0) and not coarse["flags"] & 4
            assert (fine["bytes"] == coarse["bytes"]) or off_grid
    summary = json.loads((tmp_path / "p.json").read_text())["summary"]
    for way in ("fine", "coarse"):
        for i, point in enumerate(summary["curves"][way]):
            assert point["bpp"] == pytest.approx(statistics.mean(8 * r[way][i]["bytes"] / r["pixels"]
                                                                 for r in report["crops"]))
    assert summary["bytes_ratio"][0] == pytest.approx(statistics.mean(
        r["fine"][0]["bytes"] / r["coarse"][0]["bytes"] for r in report["crops"]))
    assert summary["bytes_ratio"][0] < 1 and summary["bd_rate_percent"] < 0  # the seed's crops are off the grid


def test_padding_crop_sizes_keep_to_the_image():
    padding = load("padding")
    rng = np.random.default_rng(0)
    sizes = padding.crop_sizes(5, 300, 2000, rng)  # every value drawn, but for a chance of about 1e-7
    assert {h for h, _ in sizes} == {1, 2, 3, 4, 5}
    assert {w for _, w in sizes} == set(range(300 - padding.SPAN + 1, 301))


def test_generations_codes_each_decoded_picture_again_beside_a_classic_codec_at_its_rate(tmp_path):
    generations = load("generations")
    folder = photo_folder(tmp_path, 2)
    report = generations.main(["--images", str(folder), "--threads", "1", "--generations", "3",
                               "--classic", "jpeg444", "--json", str(tmp_path / "g.json")])
    assert set(report["codecs"]) == {"nicodec", "jpeg444"} and report["quality"] == 56
    for entry in report["codecs"].values():
        assert [s["generation"] for s in entry["summary"]] == [1, 2, 3]
        for row in entry["images"]:
            assert len(row["bytes"]) == len(row["psnr"]) == len(row["mse_previous"]) == 3
            # generation 1's previous picture is the original itself
            assert 10 * np.log10(255 ** 2 / row["mse_previous"][0]) == pytest.approx(row["psnr"][0], abs=1e-3)
    ours, jpeg = (report["codecs"][name]["images"] for name in ("nicodec", "jpeg444"))
    for mine, theirs in zip(ours, jpeg):
        image = np.asarray(Image.open(folder / mine["image"]).convert("RGB"))
        sizes = {q: len(generations.classic_coder("jpeg444", q)(image)[0]) for q in range(1, 101)}
        nearest = min(abs(np.log(size / mine["bytes"][0])) for size in sizes.values())
        assert abs(np.log(sizes[theirs["quality"]] / mine["bytes"][0])) == pytest.approx(nearest, abs=0.02)
    assert all(row["same_file_from"] is not None for row in jpeg)  # JPEG settles at once on these
    assert json.loads((tmp_path / "g.json").read_text())["generations"] == 3


def test_successive_coding_finds_the_fixed_point_a_coder_settles_in():
    """A coder that halves each picture (its file the pixels): 7, 3, 1, 0, 0, ...: errors 16, 4, 1,
    then the same picture and file again from round 4."""
    row = load("generations").successive(lambda image: ((image // 2).tobytes(), image // 2),
                                         np.full((8, 8, 3), 7, np.uint8), 6)
    assert row["mse_previous"] == [16.0, 4.0, 1.0, 0.0, 0.0, 0.0]
    assert row["same_pixels_from"] == row["same_file_from"] == 4


@pytest.mark.parametrize(("codec", "target", "quality"), [
    ("jpeg444", 260, 2), ("jpeg444", 450, 4), ("jpeg444", 50, 1), ("jpeg444", 10 ** 6, 100),
    ("webp", 50, 0), ("webp", 140, 1), ("webp", 10 ** 6, 100)])
def test_the_classic_quality_is_the_one_whose_size_is_nearest(monkeypatch, codec, target, quality):
    """Sizes 100 q + 50: 260 lies between q 2 (250) and 3 (350), nearer 2; ends clamp."""
    generations = load("generations")
    monkeypatch.setattr(generations, "classic_coder", lambda name, q: lambda image: (bytes(100 * q + 50), image))
    chosen, (data, _) = generations.matching_quality(codec, np.zeros((2, 2, 3), np.uint8), target)
    assert chosen == quality and len(data) == 100 * quality + 50


def test_transparency_benchmark_compares_the_fill_with_exact_and_webp(tmp_path):
    transparency = load("transparency")
    if not features.check("webp"):
        pytest.skip("this Pillow has no WebP")
    folder = photo_folder(tmp_path, 1)
    report = transparency.main(["--images", str(folder), "--threads", "1", "--qualities", "10", "90",
                                "--webp-qualities", "10", "50", "95", "--json", str(tmp_path / "t.json")])
    for background in ("black", "photo"):
        result = report["results"][background]
        assert [len(result["curves"][coder]) for coder in ("nicodec", "nicodec exact", "WebP", "WebP exact")] == [2, 2, 3, 3]
        assert set(result["bd_rate_percent"]) == {"nicodec_fill_vs_exact", "webp_fill_vs_exact", "nicodec_fill_vs_webp_fill",
                                                   "nicodec_fill_vs_webp_fill_colour_alone"}
        assert result["alpha_bytes_nicodec_over_webp"] > 0
    # The photo left under the transparent pixels costs the exact files most; the fill removes it.
    photo = report["results"]["photo"]["curves"]
    assert photo["nicodec"][0]["bpp"] < photo["nicodec exact"][0]["bpp"]
    assert json.loads((tmp_path / "t.json").read_text())["images"] == 1
    blobs = transparency.main(["--images", str(folder), "--threads", "1", "--qualities", "10", "90", "--shape", "blobs",
                               "--webp-qualities", "10", "95"])
    assert blobs["shape"] == "blobs" and blobs["results"]["black"]["curves"]["nicodec"][0]["alpha_bpp"] > 0


def test_rdo_compares_the_rounding_with_plain_rounding_in_one_run(images_folder, tmp_path):
    rdo = load("rdo")
    report = rdo.main(["--images", str(images_folder), "--limit", "1", "--qualities", "20", "80",
                       "--slopes", "0.02", "--json", str(tmp_path / "rdo.json")])
    plain, chosen = report["results"]
    assert plain["slope"] == 0 and chosen["slope"] == 0.02
    # Both rows carry the table's columns; the times are measured, so only their presence is checked.
    assert all(np.isfinite(r["bd_rate_percent"]) and r["encode_time_ratio"] > 0 for r in (plain, chosen))
    assert [p["quality"] for p in chosen["points"]] == [20, 80]
    # Stepping toward zero shortens the files and moves PSNR a little at each quality.
    for a, b in zip(plain["points"], chosen["points"]):
        assert b["bpp"] < a["bpp"] and abs(a["psnr"] - b["psnr"]) < 1
    assert json.loads((tmp_path / "rdo.json").read_text())["results"][1]["slope"] == 0.02


def test_a_bd_rate_the_curves_cannot_give_is_na_and_the_results_are_still_written(images_folder, tmp_path, capsys):
    """rdo.py, refine.py and models.py ended their whole run in a TypeError, writing nothing, when a
    BD-rate was None (one quality, or curves that share no range: a retrained model judged)."""
    report = load("rdo").main(["--images", str(images_folder), "--limit", "1", "--qualities", "50",
                               "--json", str(tmp_path / "rdo.json")])
    assert [r["bd_rate_percent"] for r in report["results"]] == [None, None]
    assert json.loads((tmp_path / "rdo.json").read_text())["results"][1]["bd_rate_percent"] is None
    assert "| n/a |" in capsys.readouterr().out


def test_restoration_compares_files_with_the_filter_with_the_default_encoders_in_one_run(images_folder, tmp_path):
    report = load("restoration").main(["--images", str(images_folder), "--limit", "1", "--qualities", "60", "95",
                                       "--classic", "jpeg444", "--json", str(tmp_path / "restoration.json")])
    default, restored = report["results"]
    assert not default["restoration"] and restored["restoration"]
    assert default["bd_rate_percent"] == 0 and restored["encode_time_ratio"] > 0
    assert default["decode_time_ratio"] == 1 and restored["decode_time_ratio"] > 0
    assert default["bd_rate_vs_percent"]["jpeg444"] < -20 and restored["bd_rate_vs_percent"]["jpeg444"] < -20
    assert [p["quality"] for p in restored["points"]] == [60, 95]
    assert json.loads((tmp_path / "restoration.json").read_text())["results"][1]["restoration"] is True


def _cost(point: dict, model: ModelFiles) -> float:
    """A sweep point's bits per pixel plus ``model``'s lambda at its quality times its MSE (from
    the PSNR): what the encoder's choices (refined latent, restoration filter) minimise."""
    return point["bpp"] + model.lmbda(point["quality"]) * 255**2 / 10 ** (point["psnr"] / 10)


def test_refine_compares_refined_files_with_the_default_encoder_in_one_run(images_folder, tmp_path):
    refine = load("refine")
    report = refine.main(["--images", str(images_folder), "--limit", "1", "--qualities", "20", "80",
                          "--steps", "10", "--classic", "jpeg444", "--json", str(tmp_path / "refine.json")])
    default, refined = report["results"]
    # JPEG on the same image, side by side: nicodec is far below it, refined or not.
    assert len(report["classic"]["jpeg444"]) == 11
    assert default["bd_rate_vs_percent"]["jpeg444"] < -20 and refined["bd_rate_vs_percent"]["jpeg444"] < -20
    assert default["steps"] == 0 and refined["steps"] == 10 and refined["rdo_slope"] == 0
    # Both rows carry the table's columns; the times are measured, so only their presence is checked.
    assert all(np.isfinite(r["bd_rate_percent"]) and r["encode_time_ratio"] > 0 for r in (default, refined))
    assert [p["quality"] for p in refined["points"]] == [20, 80]
    # Built as `--refine 10` builds it: a refined file is kept only where it costs no more than the
    # default encoder's (bits per pixel plus lambda times the MSE; both share z and the header),
    # so no point costs more, and the refinement changed at least one of them.
    model = ModelFiles.load(None)
    for a, b in zip(default["points"], refined["points"]):
        assert _cost(b, model) <= _cost(a, model) * (1 + 1e-9) and abs(a["psnr"] - b["psnr"]) < 1
    # With --rdo 0 the refined latent's fallback is plainly rounded too, which the refinement
    # beats here: the points move (on this small image the default's RDO rounding is not beaten
    # in 10 steps, so the run above kept the default files).
    plain = refine.main(["--images", str(images_folder), "--limit", "1", "--qualities", "20", "80",
                         "--steps", "10", "--rdo", "0", "--classic"])["results"][1]
    assert plain["rdo_slope"] == 0
    assert all((a["bpp"], a["psnr"]) != (b["bpp"], b["psnr"]) and abs(a["psnr"] - b["psnr"]) < 1
               for a, b in zip(default["points"], plain["points"]))
    assert json.loads((tmp_path / "refine.json").read_text())["results"][1]["steps"] == 10


def test_refine_with_restoration_measures_each_step_count_with_the_filter_too(images_folder):
    report = load("refine").main(["--images", str(images_folder), "--limit", "1", "--qualities", "60", "95",
                                  "--steps", "4", "--restoration", "--classic"])
    results = report["results"]
    assert [(r["steps"], r["restoration"]) for r in results] == [(0, False), (4, False), (0, True), (4, True)]
    assert results[0]["bd_rate_percent"] == 0 and all(np.isfinite(r["bd_rate_percent"]) for r in results)
    # The filter is written only where it lowers bits per pixel plus lambda times the MSE of the
    # picture the kept latent decodes to: with it, no point costs more than its twin without it,
    # and on this image it is written at least once (a point moves).
    model = ModelFiles.load(None)
    for without, with_filter in ((results[0], results[2]), (results[1], results[3])):
        pairs = list(zip(without["points"], with_filter["points"]))
        assert all(_cost(b, model) <= _cost(a, model) * (1 + 1e-9) for a, b in pairs)
        assert any((a["bpp"], a["psnr"]) != (b["bpp"], b["psnr"]) for a, b in pairs)


def test_models_compares_models_at_the_same_qualities_in_one_run(images_folder, tmp_path, capsys):
    models = load("models")
    shipped = ModelFiles.load(None).path
    report = models.main([str(shipped), str(shipped), "--images", str(images_folder), "--limit", "1",
                          "--qualities", "20", "80", "--json", str(tmp_path / "models.json")])
    first, second = report["results"]
    assert all(r["encode_time_ratio"] > 0 for r in (first, second))  # measured: its presence only
    # The same model twice: the same files, so the same points and no BD-rate between them.
    assert second["points"] == first["points"] and abs(second["bd_rate_percent"]) < 1e-9
    assert [p["quality"] for p in second["points"]] == [20, 80] and second["model_hash"] == first["model_hash"]
    assert json.loads((tmp_path / "models.json").read_text())["results"][0]["model"] == first["model"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        models.main([str(shipped)])
    assert exit.value.code == 2 and "give at least two model folders" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        models.main([str(shipped), str(tmp_path / "no such model")])
    assert exit.value.code == 2
    assert f"not a nicodec model folder (no manifest.json): {tmp_path / 'no such model'}" in capsys.readouterr().err


def test_large_image_benchmark_with_alpha_checks_the_plane_and_names_its_section(tmp_path):
    large_image = load("large_image")
    report = large_image.main(["--size", "200x136", "--tiled-only", "--alpha", "--json", str(tmp_path / "l.json")])
    assert report["alpha"] is True and set(report["results"]) == {"tiled"}
    assert list(report["alpha_section_bytes"]) in (["ALPL"], ["ALPH"])
    assert report["results"]["tiled"]["encode"]["peak_rss_mb"] > 0 and 20 < report["psnr_db"]["tiled"] < 60
    assert json.loads((tmp_path / "l.json").read_text())["size"] == [200, 136]


def test_large_image_benchmark_passes_a_margin_to_the_codec(tmp_path):
    large_image = load("large_image")
    report = large_image.main(["--size", "200x136", "--tiled-only", "--margin", "256"])
    assert report["margin"] == 256 and report["results"]["tiled"]["decode"]["seconds"] > 0
    with pytest.raises(subprocess.CalledProcessError):  # the child's Codec refuses a margin off the 64 grid
        large_image.main(["--size", "200x136", "--tiled-only", "--margin", "100"])


# -- Refusals before the work, and results written whole or not at all ------------------------


def never(*args, **kwargs):
    raise AssertionError("the work started before the check that refuses it")


def stub_parts(monkeypatch) -> None:
    """run_all's three parts, each a canned result at once (the modules run_all imports by name)."""
    import common
    import footprint
    import rd
    import speed

    for module, result in ((rd, {"nicodec": []}), (speed, {"rows": []}), (footprint, {"disk": {}})):
        monkeypatch.setattr(module, "main", lambda argv, result=result: result)
        monkeypatch.setattr(module, "markdown", lambda result, name=module.__name__: f"{name} table")
    monkeypatch.setattr(rd, "plot", lambda result, path: common.write_file(path, b"\x89PNG"))
    monkeypatch.setattr(footprint, "index_unreachable", lambda: None)  # no fresh install made: no index asked


def test_run_all_replaces_the_committed_results_with_the_standard_run_only(tmp_path, monkeypatch, capsys):
    """A run with other settings (here: one image, two qualities, fewer repeats, parts skipped)
    replaced benchmarks/results unasked; now it is refused before any part runs, naming what
    differs, unless --out says where; and the last line lists every file written (rd.json and
    rd.md were left out)."""
    run_all = load("run_all")
    import footprint
    import rd
    import speed

    for module in (rd, speed, footprint):
        monkeypatch.setattr(module, "main", never)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(rd, "SHARED", tmp_path / "shared")
    monkeypatch.setattr(rd, "ANCHORS", tmp_path / "shared" / "anchors" / "kodak_published.json")
    monkeypatch.setattr(rd, "available", lambda codec: True)
    monkeypatch.setattr(run_all, "missing_parts", lambda no_compressai: [])  # CompressAI, matplotlib, pytorch-msssim
    folder = photo_folder(tmp_path, 1)
    with pytest.raises(SystemExit) as exit:
        run_all.main(["--images", str(folder), "--repeats", "1", "--threads", "1", "--no-compressai", "--no-install",
                      "--qualities", "15", "86"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and f"--images {folder}; --qualities 15 86; --repeats 1; --threads 1" in err
    assert "--no-compressai; --no-install; no published anchors" in err and "give --out DIR" in err
    monkeypatch.setattr(rd, "available", lambda codec: codec != "jxl")
    with pytest.raises(SystemExit) as exit:  # the standard options, but parts missing here
        run_all.main([])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "no published anchors" in err and "codecs not installed: jxl" in err
    assert not (tmp_path / "results").exists()
    with pytest.raises(SystemExit) as exit:  # a checkout without ../shared beside it: the folder is named
        run_all.main(["--quick", "--out", str(tmp_path / "quick")])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and f"no folder {tmp_path / 'shared' / 'data' / 'kodak'}: the Kodak images" in err
    assert "give their folder with --images DIR" in err and not (tmp_path / "quick").exists()

    stub_parts(monkeypatch)
    run_all.main(["--images", str(folder), "--repeats", "1", "--out", str(tmp_path / "mine")])  # said so: written
    wrote = capsys.readouterr().out.splitlines()[-1]
    names = ["rd.png", "rd.json", "rd.md", "benchmarks.json", "benchmarks.md"]
    assert wrote == "wrote " + ", ".join(str(tmp_path / "mine" / name) for name in names)
    rd.ANCHORS.parent.mkdir(parents=True)
    rd.ANCHORS.write_text('{"codecs": {}}')
    (rd.SHARED / "data" / "kodak").mkdir(parents=True)  # the stand-in parts read no image
    monkeypatch.setattr(rd, "available", lambda codec: True)
    run_all.main(["--qualities", *map(str, rd.NICODEC_QUALITIES), "--threads", "2", "1"])  # the standard run
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(names)
    assert "## Rate-distortion" in (tmp_path / "results" / "benchmarks.md").read_text()


@pytest.mark.parametrize("program", ["edges", "padding", "kodak", "rdo", "generations"])
def test_a_folder_without_images_is_one_line(tmp_path, capsys, program):
    """edges.py and padding.py ended in statistics' traceback ("mean requires at least one data
    point") where the others said there were no images."""
    module = load(program)
    with pytest.raises(SystemExit) as exit:
        module.main(["--images", str(tmp_path)])
    said = capsys.readouterr().err + str(exit.value.code)
    assert re.search(f"no (PNG )?images in {re.escape(str(tmp_path))}", said) and "Traceback" not in said


def test_a_decode_only_model_folder_is_refused_before_any_image(capsys):
    """A model folder without encoder.onnx (the earlier models the package keeps) was a ModelError
    traceback at the first encode."""
    from nicodec import model as nicmodel

    earlier = next(folder for folder in sorted(nicmodel.earlier_models_dir().iterdir()) if folder.is_dir())
    for program, args in (("kodak", ["--model", str(earlier)]), ("rd", ["--quick", "--model", str(earlier)]),
                          ("models", [str(nicmodel.default_model_dir()), str(earlier)])):
        with pytest.raises(SystemExit) as exit:
            load(program).main(args)
        assert exit.value.code == 2, program
        err = capsys.readouterr().err
        assert "cannot encode: " in err and "encoder.onnx is missing (a decode-only model folder); this program " \
            "encodes" in err, err


def test_run_all_asks_for_a_package_index_before_its_parts_when_footprint_installs(tmp_path, monkeypatch, capsys):
    """Offline, footprint's fresh install failed at the end, after rd and speed (15 minutes), and
    their figures were lost: the index is asked for first, and its absence is a usage error."""
    run_all = load("run_all")
    import footprint

    stub_parts(monkeypatch)
    import rd

    monkeypatch.setattr(rd, "main", never)
    monkeypatch.setattr(footprint, "index_unreachable", lambda: "ERROR: No matching distribution found for onnxruntime")
    folder = photo_folder(tmp_path, 1)
    with pytest.raises(SystemExit) as exit:
        run_all.main(["--images", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "the footprint's fresh install needs onnxruntime from a package index, which " \
        "pip cannot get (ERROR: No matching distribution found for onnxruntime): give --no-install" in err
    monkeypatch.setattr(footprint, "index_unreachable", never)  # not asked where no install is made
    monkeypatch.setattr(rd, "main", lambda argv: {"nicodec": []})
    run_all.main(["--images", str(folder), "--out", str(tmp_path / "out"), "--no-install"])


def test_a_run_without_compressai_matplotlib_or_pytorch_msssim_is_not_the_standard_run(monkeypatch):
    """The committed results have CompressAI's rows, the plot and MS-SSIM: a run without them
    (README's recipe does not install CompressAI) replaced them with results that lacked them."""
    run_all = load("run_all")
    for name in ("compressai", "matplotlib", "pytorch_msssim"):
        monkeypatch.setitem(sys.modules, name, None)  # as where it is not installed
    assert run_all.missing_parts(no_compressai=False) == [
        "CompressAI not installed (the speed table's rival)", "matplotlib not installed (the plot)",
        "no MS-SSIM: pytorch-msssim is not installed (import of pytorch_msssim halted; None in sys.modules)"]
    assert "CompressAI" not in " ".join(run_all.missing_parts(no_compressai=True))  # said once, as --no-compressai


@pytest.mark.parametrize(("program", "args", "said"), [
    ("run_all", ["--threads", "0"], "argument --threads: must be a whole number from 1 to 256, not 0"),
    ("run_all", ["--repeats", "0"], "argument --repeats: must be a whole number of 1 or more, not 0"),
    ("speed", ["--threads", "300"], "argument --threads: must be a whole number from 1 to 256, not 300"),
    ("speed", ["--repeats", "0"], "argument --repeats: must be a whole number of 1 or more, not 0"),
    ("speed", ["--limit", "x"], "argument --limit: not a whole number: 'x'"),
    ("footprint", ["--large", "abc"], "argument --large: not WIDTHxHEIGHT: 'abc'"),
    ("footprint", ["--large", "0x10"], "argument --large: WIDTH and HEIGHT must be positive, not '0x10'"),
    ("generations", ["--generations", "0"], "argument --generations: must be a whole number from 1 to 1000, not 0"),
])
def test_bad_numbers_are_usage_errors_before_any_work(monkeypatch, capsys, program, args, said):
    """run_all --threads 0 ran the whole rd sweep, then ended in nicodec's traceback; speed.py
    --repeats 0 was an IndexError; footprint --large abc a ValueError."""
    module = load(program)
    with pytest.raises(SystemExit) as exit:
        module.main(args + ["--out", "/nonexistent/never"] if program == "run_all" else args)
    assert exit.value.code == 2 and said in capsys.readouterr().err


def test_published_curves_with_points_that_are_no_points_are_refused_before_the_sweeps(tmp_path):
    """A NaN or a bpp of 0 ended the sweep in the BD-rate's ValueError; lists of two lengths were cut short in silence."""
    rd = load("rd")
    anchors = tmp_path / "anchors.json"
    for curve, said in (({"bpp": [1, 2], "psnr_rgb": [30]}, "vtm has 2 bpp values and 1 PSNRs"),
                        ({"bpp": [1, float("nan")], "psnr_rgb": [30, 32]}, "vtm has a bpp that is not a positive number"),
                        ({"bpp": [0, 1], "psnr_rgb": [30, 32]}, "vtm has a bpp that is not a positive number"),
                        ({"bpp": [1, 2], "psnr_rgb": [30, float("inf")]}, "vtm has a bpp .* or a PSNR that is not finite")):
        anchors.write_text(json.dumps({"codecs": {"vtm": curve}}))
        with pytest.raises(ValueError, match=f"not a file of published curves \\({said}"):
            rd.load_anchors(anchors)


WRITES = {
    "write_report": "common.write_report(out / 'rd.json', {'rows': ['x' * 100] * 1000})",
    "publish": "common.publish({}, 'x' * 40000, None, out / 'rd.md')",
    "run_all": "rd.markdown = lambda result: 'x' * 40000\n"
               "run_all.main(['--out', str(out), '--images', str(out)])",
}


@pytest.mark.parametrize("writer", sorted(WRITES))
def test_a_result_that_cannot_be_written_whole_leaves_the_previous_file(tmp_path, writer):
    """A write that failed midway (a full disk; here a file size limit of 16 KiB, which Python
    meets as EFBIG) left a truncated file in place of the last good one: now the file is
    written beside it and renamed, and the program ends in one line naming it."""
    load("run_all" if writer == "run_all" else "common")
    out = tmp_path / "results"
    out.mkdir()
    previous = {name: f'{{"previous": "{name}"}}\n' for name in ("rd.json", "rd.md")}
    for name, text in previous.items():
        (out / name).write_text(text)
    script = "\n".join([
        "import resource, sys",
        f"sys.path.insert(0, {str(REPO / 'benchmarks')!r})",
        "from pathlib import Path",
        "import common, footprint, rd, run_all, speed",
        "out = Path(sys.argv[1])",
        "for module in (rd, speed, footprint):",
        "    module.main = lambda argv: {}",
        "    module.markdown = lambda result: 'table'",
        "rd.plot = lambda result, path: None",
        "footprint.index_unreachable = lambda: None",
        "resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))",
        WRITES[writer],
    ])
    run = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120, check=False)
    written = "rd.json" if writer == "write_report" else "rd.md"
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip() == f"cannot write {out / written}: File too large"
    assert (out / written).read_text() == previous[written]
    assert sorted(p.name for p in out.iterdir()) == sorted(previous)  # no temporary file left


@pytest.mark.parametrize("problem", ["anchors", "bjontegaard"])
def test_rd_checks_the_anchors_and_the_bd_rate_package_before_the_sweeps(tmp_path, monkeypatch, capsys, problem):
    """A broken --anchors file and a missing bjontegaard package ended the whole sweep (11
    minutes on Kodak) in a traceback, writing nothing."""
    rd = load("rd")
    monkeypatch.setattr(rd, "classic_point", never)
    monkeypatch.setattr(rd, "nicodec_point", never)
    folder = photo_folder(tmp_path, 1)
    args = ["--images", str(folder), "--qualities", "20", "80", "--json", str(tmp_path / "rd.json")]
    if problem == "anchors":
        (tmp_path / "anchors.json").write_text("{")
        args += ["--anchors", str(tmp_path / "anchors.json")]
    else:
        monkeypatch.setitem(sys.modules, "bjontegaard", None)  # its import fails, as where it is not installed
    with pytest.raises(SystemExit) as exit:
        rd.main(args)
    if problem == "anchors":
        assert exit.value.code == 2
        err = capsys.readouterr().err
        assert f"--anchors: {tmp_path / 'anchors.json'} is not a file of published curves (Expecting" in err
    else:
        assert exit.value.code.startswith("BD-rates need the bjontegaard package")
    assert not (tmp_path / "rd.json").exists()
    (tmp_path / "anchors.json").write_text('{"codecs": {"vtm": {"bpp": [0.1]}}}')
    with pytest.raises(ValueError, match="not a file of published curves \\(no 'psnr_rgb' entry\\)"):
        rd.load_anchors(tmp_path / "anchors.json")


@pytest.mark.parametrize("program", ["rdo", "refine", "models", "transparency"])
def test_the_other_bd_rate_programs_check_the_package_before_coding(images_folder, monkeypatch, program):
    module = load(program)
    import nicodec

    monkeypatch.setitem(sys.modules, "bjontegaard", None)
    monkeypatch.setattr(nicodec.Codec, "encode", never)
    shipped = str(ModelFiles.load(None).path)
    args = [shipped, shipped] if program == "models" else []
    with pytest.raises(SystemExit) as exit:
        module.main(args + ["--images", str(images_folder), "--limit", "1", "--qualities", "20", "80"])
    assert str(exit.value.code).startswith("BD-rates need the bjontegaard package")


IMAGE_PROGRAMS = ["rd", "kodak", "speed", "grayscale", "transparency", "rdo", "refine", "edges", "generations",
                  "padding"]


@pytest.mark.parametrize("program", IMAGE_PROGRAMS)
def test_a_folder_that_is_no_model_is_one_line(tmp_path, capsys, program):
    """``--model /tmp/nonexistent`` ended in ModelError's traceback (models.py alone said it in one line)."""
    module = load(program)
    folder = photo_folder(tmp_path, 1)
    with pytest.raises(SystemExit) as exit:
        module.main(["--images", str(folder), "--model", str(tmp_path / "no such model")])
    assert exit.value.code == 2
    assert f"not a nicodec model folder (no manifest.json): {tmp_path / 'no such model'}" in capsys.readouterr().err


@pytest.mark.parametrize("program", [*IMAGE_PROGRAMS, "footprint"])
def test_an_unreadable_image_is_one_line_before_any_coding(tmp_path, monkeypatch, program):
    """An image Pillow cannot read ended rd.py in PIL.UnidentifiedImageError's traceback (the
    per-image programs met it only when its turn came, after coding the others)."""
    if program == "footprint":
        pytest.importorskip("packaging")
    module = load(program)
    import nicodec

    monkeypatch.setattr(nicodec.Codec, "encode", never)
    folder = photo_folder(tmp_path, 1)
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SystemExit) as exit:
        module.main(["--images", str(folder), *(["--quick", "--no-install"] if program == "footprint" else [])])
    assert str(exit.value.code).startswith(f"cannot read the image {folder / 'broken.png'}: cannot identify image file")


def test_a_png_with_a_broken_chunk_is_one_line(tmp_path):
    """Pillow says so with a SyntaxError, which read_rgb let through as a traceback."""
    common = load("common")
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(png, "PNG")
    data = png.getvalue()
    second = data.index(b"IDAT", data.index(b"IDAT") + 4)  # met as the pixels are read, not as the file opens
    (tmp_path / "broken.png").write_bytes(data[:second] + b"\0ID\0" + data[second + 4:])
    with pytest.raises(SystemExit) as exit:
        common.read_rgb(tmp_path / "broken.png")
    assert str(exit.value.code).startswith(f"cannot read the image {tmp_path / 'broken.png'}: broken PNG file")


def test_batch_speed_benchmark_reports_the_command_lines_cost_per_file_beside_the_apis(tmp_path):
    batch_speed = load("batch_speed")
    report = batch_speed.main(["--files", "3", "--side", "64", "--images", str(tmp_path / "none"),
                               "--json", str(tmp_path / "b.json")])
    assert report["files"] == 3 and report["images"] == "synthetic"
    assert all(report["api_seconds_per_file"][step] > 0 for step in ("encode", "decode"))
    assert set(report["ratio_command_to_api"]) == {"encode", "decode"}
    assert json.loads((tmp_path / "b.json").read_text())["command_seconds"]["encode_one"] > 0
    crops = batch_speed.crops(None, 5, 64)
    assert len(crops) == 5 and all(c.shape == (64, 64, 3) for c in crops)
