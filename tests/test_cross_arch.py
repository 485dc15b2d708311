"""Files move between instruction sets: encoded on x86-64, decoded on aarch64 under qemu-user, and back;
and between x86-64 levels, where onnxruntime runs other kernels.

Runs ``benchmarks/cross_arch.py --quick`` (as a Neoverse-N1 and as a Raspberry Pi 4's
Cortex-A72) where its arm64 root exists (made once by ``python benchmarks/cross_arch.py setup``,
as root), and ``benchmarks/cross_isa.py --quick`` where ``qemu-x86_64-static`` is installed
(``.ci/run`` installs it); each skips elsewhere.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

from test_benchmarks import load


@pytest.mark.slow
def test_x86_64_and_aarch64_decode_the_same_integers_and_pixels(tmp_path):
    """On an Arm core with the dot product (onnxruntime's udot kernels) and on one without (its
    plain NEON ones, a Raspberry Pi 4's), as the guest's auxiliary vector says; one after the
    other, as both use the one arm64 root."""
    cross_arch = load("cross_arch")
    if platform.machine() != "x86_64":
        pytest.skip("the cross-architecture check runs from an x86-64 host")
    if not cross_arch.root_ready(cross_arch.DEFAULT_ROOT):
        pytest.skip(f"no arm64 root at {cross_arch.DEFAULT_ROOT}: run `python benchmarks/cross_arch.py setup` as root")
    for cpu in ("neoverse-n1", "cortex-a72"):
        report = cross_arch.main(["run", "--quick", "--cpu", cpu, "--json", str(tmp_path / f"{cpu}.json")])
        assert report["guest"]["machine"] == "aarch64"
        assert report["guest"]["qemu_cpu"] == cpu and report["guest"]["dot_product"] is (cpu == "neoverse-n1")
        summary = report["summary"]
        assert summary["same_model"]
        assert summary["decode_errors"] == 0
        assert summary["integers_identical"], (cpu, summary)
        for row in report["images"]:
            assert row["cli_equals_api_x86_64"] and row["aarch64_cli_equals_api"]
            for key in ("x86_64_to_aarch64", "aarch64_to_x86_64"):
                assert row[key]["psnr_delta"] <= 0.01, (cpu, row["image"], key, row[key])
        assert (tmp_path / f"{cpu}.json").is_file()


@pytest.mark.slow
def test_x86_64_without_avx_computes_the_same_integers(tmp_path):
    """onnxruntime picks its x86 kernels by CPUID: under qemu's Nehalem (x86-64-v2: SSE4.2, no
    AVX, as Atom-class edge boxes) it runs its SSE kernels, and the entropy parameters, and the
    files both ways, must hold the integers this machine's kernels compute (``cross_isa.py``)."""
    cross_isa = load("cross_isa")
    problem = cross_isa.available()
    if problem:
        pytest.skip(problem)
    report = cross_isa.main(["--quick", "--levels", "x86-64-v2", "--json", str(tmp_path / "cross_isa.json")])
    (level,) = report["levels"]
    emulated = level["emulated"]
    # The emulated process saw no AVX and ran none: not one ymm or zmm instruction translated.
    assert "SSE42" in emulated["features"] and "AVX" not in emulated["features"], emulated["features"]
    dispatch = emulated["dispatch"]
    assert dispatch["instructions"] > 100_000 and dispatch["xmm"] > 1_000, dispatch  # the log names registers
    assert dispatch["ymm"] == 0 and dispatch["zmm"] == 0, dispatch
    assert level["sweep"]["arrays"] == 2 * 8 * len(cross_isa.SWEEP_THREADS) and level["sweep"]["differ"] == 0
    summary = level["summary"]
    assert summary["decode_errors"] == 0 and summary["integers_identical"], summary
    assert summary["max_psnr_delta"] <= 0.01, summary
    assert (tmp_path / "cross_isa.json").is_file()


def test_cross_isa_counts_every_differing_or_missing_integer(tmp_path):
    """The comparison of two sweeps, without qemu: a changed element, a changed shape and a
    missing array all count."""
    cross_isa = load("cross_isa")
    a = {"t1-1x1-mean_q": np.arange(6).reshape(1, 6, 1, 1), "t1-1x2-mean_q": np.zeros((1, 6, 1, 2), int)}
    np.savez(tmp_path / "a.npz", **a)
    np.savez(tmp_path / "same.npz", **a)
    assert cross_isa.compare_sweeps(tmp_path / "a.npz", tmp_path / "same.npz") == {
        "arrays": 2, "elements": 18, "differ": 0, "missing": []}
    changed = {**a, "t1-1x1-mean_q": a["t1-1x1-mean_q"] + np.eye(1, 6, 2, dtype=int).reshape(1, 6, 1, 1)}
    np.savez(tmp_path / "changed.npz", **changed)
    assert cross_isa.compare_sweeps(tmp_path / "a.npz", tmp_path / "changed.npz")["differ"] == 1
    np.savez(tmp_path / "reshaped.npz", **{**a, "t1-1x2-mean_q": np.zeros((1, 6, 2, 1), int)})
    assert cross_isa.compare_sweeps(tmp_path / "a.npz", tmp_path / "reshaped.npz")["differ"] == 12
    np.savez(tmp_path / "short.npz", **{"t1-1x1-mean_q": a["t1-1x1-mean_q"]})
    for first, second in (("a", "short"), ("short", "a")):
        short = cross_isa.compare_sweeps(tmp_path / f"{first}.npz", tmp_path / f"{second}.npz")
        assert short["differ"] == 12 and short["missing"] == ["t1-1x2-mean_q"]
