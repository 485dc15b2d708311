"""Files move between instruction sets: encoded on x86-64, decoded on aarch64 under qemu-user, and back.

Runs ``benchmarks/cross_arch.py --quick`` where its arm64 root exists (made once by
``python benchmarks/cross_arch.py setup``, as root); skips elsewhere, CI included.
"""

from __future__ import annotations

import platform

import pytest

from test_benchmarks import load


@pytest.mark.slow
def test_x86_64_and_aarch64_decode_the_same_integers_and_pixels(tmp_path):
    cross_arch = load("cross_arch")
    if platform.machine() != "x86_64":
        pytest.skip("the cross-architecture check runs from an x86-64 host")
    if not cross_arch.root_ready(cross_arch.DEFAULT_ROOT):
        pytest.skip(f"no arm64 root at {cross_arch.DEFAULT_ROOT}: run `python benchmarks/cross_arch.py setup` as root")
    report = cross_arch.main(["run", "--quick", "--json", str(tmp_path / "cross_arch.json")])
    assert report["guest"]["machine"] == "aarch64"
    summary = report["summary"]
    assert summary["same_model"]
    assert summary["decode_errors"] == 0
    assert summary["integers_identical"], summary
    for row in report["images"]:
        assert row["cli_equals_api_x86_64"] and row["aarch64_cli_equals_api"]
        for key in ("x86_64_to_aarch64", "aarch64_to_x86_64"):
            assert row[key]["psnr_delta"] <= 0.01, (row["image"], key, row[key])
    assert (tmp_path / "cross_arch.json").is_file()
