"""A file encoded under one configuration decodes under every other, symbol for symbol.

Configurations differ in onnxruntime threads, graph optimisation level, the synthesis
precision and (where present) the CUDA provider. The entropy-parameter graph is an
integer network, so the tables and means, hence the symbols, must be identical; the
pixels may differ only by the synthesis's float rounding (within 0.01 dB).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from nicodec.codec import Codec
from nicodec.errors import ExactnessError, ModelError, NicodecError

from conftest import psnr, synthetic_photo

CONFIGS = {
    "1 thread, optimisation off": dict(threads=1, optimization="disable"),
    "2 threads, basic": dict(threads=2, optimization="basic"),
    "8 threads, all": dict(threads=8, optimization="all"),
    "fp16 synthesis": dict(threads=2, optimization="all", precision="fp16"),
}


@pytest.fixture(scope="module")
def codecs():
    return {name: Codec(providers="cpu", **cfg) for name, cfg in CONFIGS.items()}


@pytest.fixture(scope="module")
def photo():
    return synthetic_photo(320, 448, seed=5)


def test_the_default_model_has_the_integer_entropy_graph(codecs):
    assert next(iter(codecs.values())).model.integer_entropy


@pytest.mark.parametrize("quality", [None, 1.0, 100.0])
@pytest.mark.parametrize("encoder_name", list(CONFIGS))
def test_every_configuration_decodes_every_other(codecs, photo, encoder_name, quality):
    """At the default quality and at both ends of the range (the gains scale the latent, so
    the symbols and their tables span the widest and the narrowest ranges there)."""
    data = codecs[encoder_name].encode(photo, quality=quality)
    _, z_ref, symbols_ref, mean_ref = codecs[encoder_name].decode_symbols(data)
    quality = {}
    for name, codec in codecs.items():
        _, z_hat, symbols, mean_q = codec.decode_symbols(data)
        np.testing.assert_array_equal(z_hat, z_ref, err_msg=name)
        np.testing.assert_array_equal(mean_q, mean_ref, err_msg=name)
        np.testing.assert_array_equal(symbols, symbols_ref, err_msg=name)
        quality[name] = psnr(codec.decode(data, as_array=True), photo)
    assert max(quality.values()) - min(quality.values()) <= 0.01, quality
    assert min(quality.values()) > 25, quality


@pytest.mark.parametrize("quality", [None, 1.0, 100.0])
def test_files_are_identical_whatever_encodes_them(codecs, photo, quality):
    """The analysis runs in float, but on one machine every configuration above rounds alike."""
    files = {name: codec.encode(photo, quality=quality) for name, codec in codecs.items()}
    assert len(set(files.values())) == 1, {k: len(v) for k, v in files.items()}


def test_entropy_parameters_ignore_session_settings(codecs):
    """The same z_hat gives the same integers through every configuration's session."""
    rng = np.random.default_rng(3)
    channels = next(iter(codecs.values())).model.hyper_channels
    z_hat = rng.integers(-12, 13, size=(1, channels, 5, 9)).astype(np.int32)
    z_hat.flat[:2] = [-(2**24), 2**24]
    results = [codec._session("entropy_parameters").run(None, {"z_hat": z_hat}) for codec in codecs.values()]
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


def _entropy_sessions_off_by_one(monkeypatch, when=lambda z_hat: True) -> None:
    """Make every Codec's entropy-parameter session add 1 to its last mean for the inputs
    ``when`` picks: a stand-in for a faulty onnxruntime."""
    import nicodec.codec

    real = nicodec.codec.create_session

    class OffByOne:
        def __init__(self, session):
            self.session = session
            self.get_inputs, self.get_outputs = session.get_inputs, session.get_outputs

        def run(self, names, feeds):
            scale_index, mean_q = self.session.run(names, feeds)
            if when(feeds["z_hat"]):
                mean_q = mean_q.copy()
                mean_q.flat[-1] += 1
            return [scale_index, mean_q]

    def faulty(path, *args, **kwargs):
        session = real(path, *args, **kwargs)
        return OffByOne(session) if "entropy_parameters" in str(path) else session

    monkeypatch.setattr(nicodec.codec, "create_session", faulty)


def test_a_runtime_that_computes_the_entropy_parameters_wrongly_is_refused(monkeypatch):
    """As onnxruntime 1.21 to 1.31 do on graphs exported before nicodec-mshp-vr-2 (their int64
    Max): the codec is refused when it is made, before it can write a file that decodes to
    garbage elsewhere. Here a wrapper stands in for the faulty runtime, off by one in a single
    mean; .ci/run installs a real faulty one."""
    _entropy_sessions_off_by_one(monkeypatch)
    with pytest.raises(ExactnessError, match=f"onnxruntime {ort.__version__} computes the entropy parameters") as info:
        Codec(providers="cpu")
    # The known fault is named only for the releases that have it.
    from nicodec.exactness import KNOWN_FAULTY

    fault = KNOWN_FAULTY.get(tuple(int(p) for p in ort.__version__.split(".")[:2]), "")
    assert ("has a known fault" in str(info.value)) == ("ConvInteger" in fault)


def test_a_fault_that_a_four_by_four_input_misses_is_caught(monkeypatch):
    """onnxruntime 1.21 to 1.24's ConvInteger fault shows only at some input sizes (5 x 5 and
    3 x 7, not 4 x 4 or 5 x 7): probe 2 runs odd sizes too. Here a wrapper stands in for such
    a runtime, wrong in one mean when the input is 5 x 5; .ci/run installs a real one (1.24.4)."""
    from nicodec import exactness

    _entropy_sessions_off_by_one(monkeypatch, when=lambda z_hat: z_hat.shape[2:] == (5, 5))
    with pytest.raises(ExactnessError, match="computes the entropy parameters"):
        Codec(providers="cpu")
    assert (5, 5) in exactness.PROBE_SHAPES[exactness.PROBE_VERSION]


def test_models_checked_on_probe_1_are_still_checked_on_it(tmp_path, monkeypatch):
    """Models exported before nicodec-mshp-vr-2 carry probe 1 (the 4 x 4 input alone)."""
    import json
    import shutil

    from nicodec import exactness
    from nicodec.model import default_model_dir

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    session = ort.InferenceSession(str(folder / "entropy_parameters.onnx"), providers=["CPUExecutionProvider"])
    right = exactness.digest(session.run(None, {"z_hat": exactness.probe(int(manifest["config"]["Nh"]))})[:2])
    # Where the onnxruntime here is 1.21 to 1.24 (a distribution's build: Debian's
    # python3-onnxruntime is 1.21 or 1.23), the right digest is refused too, by name (below).
    release = tuple(int(part) for part in ort.__version__.split(".")[:2] if part.isdigit())
    by_name = "ConvInteger" in exactness.KNOWN_FAULTY.get(release, "")
    for sha, accepted in ((right, not by_name), ("0" * 64, False)):
        (folder / "manifest.json").write_text(json.dumps({**manifest, "entropy_check": {"probe": 1, "sha256": sha}}))
        if accepted:
            assert Codec(folder, providers="cpu").model.entropy_probe == 1
        else:
            with pytest.raises(ExactnessError):
                Codec(folder, providers="cpu")
    # The 4 x 4 input cannot show onnxruntime 1.21 to 1.24's ConvInteger fault: probe 1 is
    # refused on those releases by name, even when its digest agrees.
    (folder / "manifest.json").write_text(json.dumps({**manifest, "entropy_check": {"probe": 1, "sha256": right}}))
    monkeypatch.setattr(ort, "__version__", "1.24.4")
    with pytest.raises(ExactnessError, match=r"known fault \(ConvInteger and int64 Max\); install onnxruntime 1.32"):
        Codec(folder, providers="cpu")


GENERIC = "Install another onnxruntime version, or check that the model folder is intact"
BOTH = "This release has a known fault (ConvInteger and int64 Max); install onnxruntime"
INT64_MAX = "This release has a known fault (int64 Max); install onnxruntime 1.32 or newer, or 1.17 to 1.20"


@pytest.mark.parametrize("release, probe_1_wrong, probe_1_right, probe_2_wrong", [
    ("1.20.1", GENERIC, None, GENERIC),
    ("1.21.0", f"{BOTH} 1.32 or newer, or 1.17 to 1.20", f"{BOTH} 1.32 or newer, or 1.17 to 1.20",
     f"{BOTH} 1.25 or newer, or 1.17 to 1.20"),
    ("1.24.4", f"{BOTH} 1.32 or newer, or 1.17 to 1.20", f"{BOTH} 1.32 or newer, or 1.17 to 1.20",
     f"{BOTH} 1.25 or newer, or 1.17 to 1.20"),
    ("1.25.0", INT64_MAX, None, GENERIC),
    ("1.31.1", INT64_MAX, None, GENERIC),
    ("1.32.0", GENERIC, None, GENERIC),
])
def test_the_advice_names_the_fault_of_each_release_at_the_edges_of_the_faulty_ranges(
        monkeypatch, release, probe_1_wrong, probe_1_right, probe_2_wrong):
    """1.21 to 1.24 have the ConvInteger fault, which probe 1 cannot show (refused by name even when
    its digest agrees) and probe 2 can; 1.21 to 1.31 have the int64 Max fault of graphs exported
    before nicodec-mshp-vr-2, which carry probe 1. A digest that differs on probe 2 outside 1.21 to
    1.24 names no fault: the shipped graph has none known there. None: the session is accepted."""
    from nicodec import exactness
    from nicodec.model import ModelFiles

    model = ModelFiles.load()
    session = ort.InferenceSession(str(model.graph("entropy_parameters")), providers=["CPUExecutionProvider"])
    channels = model.hyper_channels
    assert model.entropy_probe == exactness.PROBE_VERSION == 2
    right_1 = exactness.digest(session.run(None, {"z_hat": exactness.probe(channels)})[:2])
    monkeypatch.setattr(ort, "__version__", release)
    for expected, probe, advice in (("0" * 64, 1, probe_1_wrong), (right_1, 1, probe_1_right),
                                    ("0" * 64, 2, probe_2_wrong), (model.entropy_check, 2, None)):
        if advice is None:
            exactness.check(session, expected, channels, "a-model", probe)
            continue
        with pytest.raises(ExactnessError) as info:
            exactness.check(session, expected, channels, "a-model", probe)
        assert str(info.value).startswith(f"onnxruntime {release} computes the entropy parameters of a-model wrongly")
        assert str(info.value).endswith(f"nor theirs here. {advice}"), (probe, str(info.value))


def test_the_advice_for_another_build_names_its_releases(monkeypatch):
    """onnxruntime-openvino's newest release (1.24.1 on 2026-12-07) has the ConvInteger fault and
    none from 1.25 exists: its users are sent to its own 1.17 to 1.20, or to onnxruntime itself."""
    from nicodec import exactness, sessions
    from nicodec.model import ModelFiles

    model = ModelFiles.load()
    session = ort.InferenceSession(str(model.graph("entropy_parameters")), providers=["CPUExecutionProvider"])
    monkeypatch.setattr(ort, "__version__", "1.24.1")
    monkeypatch.setattr(sessions, "installed_builds", lambda: [("onnxruntime-openvino", (1, 24))])
    with pytest.raises(ExactnessError) as info:
        exactness.check(session, "0" * 64, model.hyper_channels, "a-model", 2)
    assert str(info.value).endswith(
        "This release has a known fault (ConvInteger and int64 Max); install onnxruntime-openvino 1.17 to 1.20 (or "
        "1.25 or newer, once it has one), or onnxruntime with nicodec's [cpu] extra in its place"), str(info.value)


def test_an_entropy_check_of_the_wrong_form_is_a_model_error(tmp_path):
    import json
    import shutil

    from nicodec.model import ModelFiles, default_model_dir

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    sha = manifest["entropy_check"]["sha256"]
    for bad in ({"probe": 3, "sha256": sha}, {"probe": True, "sha256": sha}, {"probe": 1, "sha256": "x"}, "5f4c"):
        (folder / "manifest.json").write_text(json.dumps({**manifest, "entropy_check": bad}))
        with pytest.raises(ModelError, match="entropy_check must be"):
            ModelFiles.load(folder)


def test_unknown_precision_is_refused():
    with pytest.raises(NicodecError, match="precision"):
        Codec(providers="cpu", precision="int4")


@pytest.mark.gpu
def test_cuda_encoded_files_decode_on_the_cpu(photo):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    gpu, cpu = Codec(providers="cuda"), Codec(providers="cpu", threads=1)
    for encoder, decoder in itertools.permutations([gpu, cpu]):
        data = encoder.encode(photo)
        for got, want in zip(decoder.decode_symbols(data)[1:], encoder.decode_symbols(data)[1:]):
            np.testing.assert_array_equal(got, want)
        assert abs(psnr(decoder.decode(data, as_array=True), photo) - psnr(encoder.decode(data, as_array=True), photo)) <= 0.01


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_loading_the_model_prints_no_onnxruntime_warnings(precision):
    """onnxruntime writes warnings straight to stderr (a graph it cannot fold, say): none may appear."""
    import subprocess
    import sys

    code = f"from nicodec.codec import Codec; Codec(providers='cpu', precision='{precision}')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "onnxruntime" not in result.stderr, result.stderr[:500]


@pytest.mark.parametrize("tile", [64, 128, 192])
def test_tiled_entropy_parameters_equal_the_whole_run(tile):
    """The entropy-parameter graph runs on tiles of large images; its integers must not notice."""
    whole = Codec(providers="cpu", threads=1)
    tiled = Codec(providers="cpu", threads=1, tile=tile)
    rng = np.random.default_rng(tile)
    z_hat = rng.integers(-15, 16, size=(1, whole.model.hyper_channels, 9, 11)).astype(np.int32)  # 2 tiles a side or more
    z_hat.flat[:2] = [-(2**24), 2**24]
    expected = whole._session("entropy_parameters").run(None, {"z_hat": z_hat})
    for got, want in zip(tiled._entropy_parameters(z_hat), expected):
        np.testing.assert_array_equal(got, want)


def test_a_missing_or_broken_onnxruntime_is_one_clear_error(monkeypatch):
    import builtins
    import sys

    from nicodec import sessions

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    with pytest.raises(NicodecError, match=r"onnxruntime is not installed: .*pip install '\.\[cpu\]'\)$"):
        sessions._ort()
    # On a Python newer than the release knew (3.15 had no onnxruntime wheel on PyPI), where the
    # extra's install itself fails, the message says which Python to use instead.
    # The newest Python this release was tested on is the newest its classifiers list.
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"  # CI copies it beside the tests
    if pyproject.is_file():  # a packager's copy of tests/ alone has none
        listed = re.findall(r'"Programming Language :: Python :: 3\.(\d+)"', pyproject.read_text("utf-8"))
        assert listed and sessions._newest_python_listed() == (3, max(map(int, listed)))
    major, minor = sys.version_info[:2]
    with monkeypatch.context() as patch, pytest.raises(
            NicodecError, match=rf"pip install '\.\[cpu\]'\); if pip finds no onnxruntime for Python {major}\.{minor} "
                                rf"\(.*\), use Python {major}\.{minor - 1} or older$"):
        patch.setattr(sessions, "_newest_python_listed", lambda: (major, minor - 1))
        sessions._ort()
    monkeypatch.delitem(sys.modules, "onnxruntime")
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):  # what onnxruntime 1.17 does under numpy 2
        if name == "onnxruntime":
            raise AttributeError("_ARRAY_API not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(NicodecError, match=r"installed but does not import \(AttributeError: _ARRAY_API not found\)"):
        sessions._ort()
