"""The integer entropy-parameter graph: ONNX, numpy int64 reference and torch agree exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from nicodec.export.integer import build_graph, parameters_from_graph, reference  # noqa: E402
from nicodec.model import ModelFiles  # noqa: E402
from nicodec.training.integer import SHIFT, calibrate, integer_entropy_parameters, integer_parameters  # noqa: E402
from nicodec.training.model import MeanScaleHyperprior, ModelConfig, scale_table  # noqa: E402

pytestmark = pytest.mark.train

TABLE = scale_table().numpy()
LEVELS = ["disable", "basic", "extended", "all"]


def session(model: onnx.ModelProto | str, threads: int = 1, level: str = "all") -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def random_params(rng: np.random.Generator, nh: int = 6, hidden: tuple[int, int] = (6, 9), m: int = 5, extreme: bool = False):
    """Integer parameters of the graph's shape with small channel counts, drawn over their whole range."""
    shapes = [(4 * hidden[0], nh), (4 * hidden[1], hidden[0]), (2 * m, hidden[1])]
    params = {"shift": np.array(SHIFT, dtype=np.int64), "mean_channels": np.array(m, dtype=np.int64)}
    for i, (out, cin) in enumerate(shapes):
        if extreme:  # every weight at +-127: the largest sums a ConvInteger kernel can see
            w = rng.choice(np.array([-127, 127], dtype=np.int8), size=(out, cin, 3, 3))
        else:
            w = rng.integers(-127, 128, size=(out, cin, 3, 3)).astype(np.int8)
        x_max = 255 if i else 128
        room = (2**52 - 2**SHIFT) // (np.abs(w.astype(np.int64)).sum(axis=(1, 2, 3)) * x_max + 2**20)
        params[f"w{i}"] = w
        params[f"b{i}"] = rng.integers(-(2**20), 2**20, size=out)
        params[f"k{i}"] = np.minimum(rng.integers(1, 2**18, size=out), room)
        if i < 2:
            params[f"lo{i}"], params[f"hi{i}"] = np.zeros(out, np.int64), np.full(out, 255, np.int64)
        else:
            params[f"lo{i}"] = np.concatenate([np.full(m, -(2**20)), np.zeros(m)]).astype(np.int64)
            params[f"hi{i}"] = np.concatenate([np.full(m, 2**20), np.full(m, 2**16 - 1)]).astype(np.int64)
    return params


def random_z(rng: np.random.Generator, shape) -> np.ndarray:
    """Hyper-latents over the whole clipped range and beyond it, with the range's edges included."""
    z = rng.integers(-300, 301, size=shape).astype(np.int32)
    z.flat[:4] = [-128, 127, -(2**24), 2**24]
    return z


def test_the_scale_table_is_the_formula_and_the_shipped_models_own_bits():
    """Kept as numbers (``SCALE_TABLE_HEX``): torch's exp and linspace differ in the last bit
    between processors, which made an export on an AMD EPYC differ from the shipped one."""
    import math

    from nicodec.model import default_model_dir, earlier_models_dir
    from nicodec.training.model import SCALE_LEVELS, SCALE_MAX, SCALE_MIN

    formula = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))
    assert TABLE.dtype == np.float64 and TABLE.shape == (SCALE_LEVELS,) and np.all(np.diff(TABLE) > 0)
    np.testing.assert_array_max_ulp(TABLE, formula, maxulp=4)
    for tables in [default_model_dir() / "tables.npz", *sorted(earlier_models_dir().glob("*/tables.npz"))]:
        with np.load(tables) as npz:
            assert npz["scale_table"].tobytes() == TABLE.tobytes(), tables


@pytest.mark.parametrize("seed", range(6))
def test_graph_equals_numpy_reference_on_random_parameters(seed):
    rng = np.random.default_rng(seed)
    params = random_params(rng, extreme=seed >= 4)
    graph = build_graph(params, TABLE, hyper_channels=6)
    z = random_z(rng, (1, 6, 1 + seed, 7 - seed))
    index, mean_q = session(graph).run(None, {"z_hat": z})
    ref_index, ref_mean_q = reference(params, z, TABLE)
    assert index.dtype == np.int32 and mean_q.dtype == np.int32
    assert index.shape == mean_q.shape == (1, 5, 4 * z.shape[2], 4 * z.shape[3])
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_array_equal(mean_q, ref_mean_q)
    # The cases are not trivial: the clip bounds and many table indices are reached.
    assert len(np.unique(index)) > 3 and len(np.unique(mean_q)) > 100


def test_parameters_read_back_from_the_graph():
    params = random_params(np.random.default_rng(7))
    back = parameters_from_graph(build_graph(params, TABLE, hyper_channels=6))
    assert set(back) == set(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)


def test_parameters_read_back_from_a_graph_exported_before_vr_2():
    """Those graphs clipped before dividing: low{i} was lo and top{i} (hi - lo + 1) * 2**S - 1."""
    from onnx import helper, numpy_helper

    params = random_params(np.random.default_rng(9))
    shift = int(params["shift"])
    inits = {"divisor0": np.array([1 << shift]), "mean_end": np.array([int(params["mean_channels"])])}
    for i in range(3):
        lo, hi = params[f"lo{i}"], params[f"hi{i}"]
        inits |= {f"weight{i}": (params[f"w{i}"].astype(np.int16) + 128).astype(np.uint8),
                  f"bias{i}": params[f"b{i}"].reshape(-1, 1, 1), f"multiplier{i}": params[f"k{i}"].reshape(-1, 1, 1),
                  f"low{i}": lo.reshape(-1, 1, 1), f"top{i}": ((hi - lo + 1) * (1 << shift) - 1).reshape(-1, 1, 1)}
    graph = helper.make_graph([], "old", [], [], [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    back = parameters_from_graph(helper.make_model(graph))
    for key in params:
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)


def _max_min_inputs(model: onnx.ModelProto, z: np.ndarray) -> dict[str, np.ndarray]:
    """The values that reach the graph's Div, Max and Min nodes (its own outputs, exposed)."""
    names = [n.input[0] for n in model.graph.node if n.op_type in ("Div", "Max", "Min")]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for name in names:
        exposed.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    out = session(exposed, level="disable").run(names, {"z_hat": z})
    ops = {n.input[0]: n.op_type for n in model.graph.node if n.op_type in ("Div", "Max", "Min")}
    return {f"{ops[name]} {name}": value for name, value in zip(names, out)}


@pytest.mark.parametrize("extreme", [False, True])
def test_max_and_min_see_only_values_below_2_31(extreme):
    """onnxruntime 1.21 to 1.31 compute an int64 Max of values of 2**31 and more as 0; the graph
    divides first, so Max and Min never see such values, and Div sees no negative numerator."""
    rng = np.random.default_rng(10)
    params = random_params(rng, extreme=extreme)
    params["k0"] = params["k0"] * 0 + (2**52 - 2**SHIFT) // (127 * 9 * 6 * 128 + 2**20)  # the largest products allowed
    graph = build_graph(params, TABLE, hyper_channels=6)
    z = random_z(rng, (1, 6, 5, 6))
    z[:, ::2, :2] = 127
    z[:, 1::2, :2] = -128
    seen = _max_min_inputs(graph, z)
    assert len(seen) == 9
    assert max(float(np.abs(v).max()) for k, v in seen.items() if k.startswith("Div")) >= 2**31  # the large values exist
    for name, value in seen.items():
        if name.startswith("Div"):
            assert value.min() >= 0, name
        else:
            assert np.abs(value).max() < 2**31, name
    np.testing.assert_array_equal(session(graph).run(None, {"z_hat": z})[1], reference(params, z, TABLE)[1])


def test_parameters_that_break_the_graphs_assumptions_are_refused():
    """The lift bound and the floor-by-truncation need multipliers of at least 1; the uint8
    casts between layers need the hidden layers' clip within 0..255."""
    for key, value, message in (("k1", 0, "multiplier"), ("lo0", -1, "0..255"), ("hi1", 256, "0..255"),
                                ("lo2", 2**21, "ordered")):
        params = random_params(np.random.default_rng(11))
        params[key] = params[key].copy()
        params[key][0] = value
        with pytest.raises(ValueError, match=message):
            build_graph(params, TABLE, hyper_channels=6)


def test_products_that_could_leave_the_exact_range_are_refused():
    params = random_params(np.random.default_rng(8))
    params["k2"] = params["k2"] * 0 + 2**40
    with pytest.raises(ValueError, match="exact range"):
        build_graph(params, TABLE, hyper_channels=6)


@pytest.fixture(scope="module")
def shipped():
    model = ModelFiles.load(None)
    if not model.integer_entropy:
        pytest.skip("the default model's entropy graph is not the integer one")
    path = str(model.graph("entropy_parameters"))
    return path, parameters_from_graph(onnx.load(path))


def test_shipped_graph_equals_reference_under_every_session_setting(shipped):
    path, params = shipped
    rng = np.random.default_rng(1)
    z = random_z(rng, (1, int(params["w0"].shape[1]), 5, 7))
    z[:, :, 2:] = rng.integers(-6, 7, size=z[:, :, 2:].shape)  # and values a photo gives
    ref = reference(params, z, TABLE)
    for threads, level in itertools.product([1, 2, 8], LEVELS):
        out = session(path, threads, level).run(None, {"z_hat": z})
        for got, want, name in zip(out, ref, ["scale_index", "mean_q"]):
            np.testing.assert_array_equal(got, want, err_msg=f"{name} with {threads} threads, optimisation {level}")


def test_the_shipped_entropy_check_is_the_references_digest_on_the_probe(shipped):
    """The digest every Codec checks its onnxruntime against comes from the numpy int64 reference."""
    from nicodec import exactness

    path, params = shipped
    model = ModelFiles.load(None)
    inputs = exactness.probes(model.hyper_channels, model.entropy_probe)
    assert model.entropy_probe == exactness.PROBE_VERSION and len(inputs) == 5
    assert model.entropy_check == exactness.digest(a for z in inputs for a in reference(params, z, TABLE))
    assert exactness.digest(a for z in inputs for a in session(path).run(None, {"z_hat": z})) == model.entropy_check
    # The shipped graph's Max and Min see only values below 2**31 on the probe too.
    for z in inputs:
        seen = _max_min_inputs(onnx.load(path), z)
        assert all(np.abs(v).max() < 2**31 for k, v in seen.items() if not k.startswith("Div"))


def test_torch_integer_path_equals_reference():
    torch.manual_seed(0)
    model = MeanScaleHyperprior(ModelConfig(N=8, M=6, Nh=4, integer_entropy=True))
    z = torch.randint(-20, 21, (1, 4, 3, 5)).float()
    model.hs_act_scale.copy_(calibrate(model.h_s, z))
    params = integer_parameters(model.h_s, model.hs_act_scale)
    out = integer_entropy_parameters(model.h_s, model.hs_act_scale, z, model.table_scales, model.table_lut)
    ref_index, ref_mean_q = reference(params, z.numpy().astype(np.int32), TABLE)
    np.testing.assert_array_equal(out["scale_index"].numpy(), ref_index)
    np.testing.assert_array_equal(out["mean_q"].numpy(), ref_mean_q)
    # The float views are the integers' values, and gradients reach the weights.
    np.testing.assert_array_equal(out["means"].detach().numpy() * 256, ref_mean_q)
    np.testing.assert_allclose(out["scales"].detach().numpy(), TABLE[ref_index])
    (out["means"].sum() + out["scales"].sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.h_s.parameters())


def test_graphs_load_in_the_oldest_onnxruntime_the_package_allows():
    """pyproject allows onnxruntime 1.17, which reads ONNX IR versions up to 9."""
    graph = build_graph(random_params(np.random.default_rng(9)), TABLE, hyper_channels=6)
    assert graph.ir_version <= 9
    model = ModelFiles.load(None)
    for name in ("encoder", "entropy_parameters", "decoder", "decoder_fp16"):
        if model.has_graph(name):
            assert onnx.load(str(model.graph(name))).ir_version <= 9, name
