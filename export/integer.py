"""The integer entropy-parameter graph, as ONNX and as a numpy int64 reference.

``nicodec.training.integer`` defines the arithmetic and trains through it; this module
writes it with ONNX operators whose results are exact by definition, and evaluates
it a second, independent way in numpy, so tests can hold the two equal.

Operators and why each is exact on every provider, thread count and optimisation level:

- ``ConvInteger`` (uint8 activations with their zero point, uint8 weights with zero
  point 128, int32 sums): the spec defines an integer sum of products; the largest
  possible sum, 255 * 255 * 864, is far below 2**31. Weights are stored as uint8 with
  a zero point rather than as int8 because onnxruntime's x86 kernels for uint8 x int8
  use an instruction (VPMADDUBSW) whose 16-bit pair sums can saturate, while
  uint8 x uint8 cannot (onnxruntime's quantization docs say so).
- ``Pad`` with the zero point, explicit, so no padding convention is assumed.
- ``Cast``, ``Add``, ``Sub``, ``Mul``, ``Max``, ``Min`` and ``Div`` on int64: integer ops;
  every product is checked below 2**52 at export (``check_exact_range``), ``Div`` only
  ever sees non-negative numerators, where truncation and floor agree, and ``Max`` and
  ``Min`` only values below 2**31 (onnxruntime 1.21 to 1.31 get larger ones wrong).
- ``Clip`` of the int32 ``z_hat`` to ``Z_MIN..Z_MAX`` (and an int32 ``Add`` of the zero
  point) before the ``Cast`` to the first layer's uint8; every ``Cast`` is between integer
  types, of values the target type holds.
- ``Reshape``/``Transpose`` (depth-to-space), ``Slice`` and ``Gather`` (the scale
  lookup table) move integers without arithmetic; ``Shape``/``Slice``/``Concat``/``Mul``
  compute the depth-to-space shapes.

ConvInteger runs on the CPU provider only, so the runtime keeps this small graph
on the CPU whatever provider runs the transforms.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nicodec.training.integer import Z_MAX, Z_MIN, check_exact_range, product_bound, scale_lut

WEIGHT_ZERO_POINT = 128
IR_VERSION = 8


# -- numpy reference ------------------------------------------------------------------


def _conv3x3(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Zero-padded 3x3 convolution in int64: x (1, C, H, W), w (O, C, 3, 3) -> (1, O, H, W)."""
    padded = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # 1, C, H, W, 3, 3
    return np.einsum("bchwij,ocij->bohw", windows, w.astype(np.int64), dtype=np.int64)


def _depth_to_space(x: np.ndarray) -> np.ndarray:
    """PixelShuffle by 2: channel 4c + 2i + j goes to (c, 2h + i, 2w + j)."""
    b, c, h, w = x.shape
    return x.reshape(b, c // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)


def reference(params: dict[str, np.ndarray], z_hat: np.ndarray, scale_table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scale_index, mean_q)`` as int32 for z_hat (1, Nh, h, w), computed in int64 with numpy.

    Written from the definition in ``nicodec.training.integer`` (floor division of the
    rounded product, then the clip), not from the graph's rearrangement of it.
    """
    shift = int(params["shift"])
    x = np.clip(z_hat.astype(np.int64), Z_MIN, Z_MAX)
    for i in range(3):
        acc = _conv3x3(x, params[f"w{i}"]) + params[f"b{i}"][None, :, None, None]
        k = params[f"k{i}"][None, :, None, None]
        x = (acc * k + (1 << (shift - 1))) // (1 << shift)
        x = np.clip(x, params[f"lo{i}"][None, :, None, None], params[f"hi{i}"][None, :, None, None])
        if i < 2:
            x = _depth_to_space(x)
    m = int(params["mean_channels"])
    lut = scale_lut(scale_table)
    return lut[x[:, m:]].astype(np.int32), x[:, :m].astype(np.int32)


# -- ONNX graph -----------------------------------------------------------------------


class _Graph:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _lift(params: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Per channel, a whole number L with ``(acc + b) * k + 2**(S-1) + L * 2**S >= 0`` for every input."""
    return -(-product_bound(params, i) // (1 << int(params["shift"])))  # ceil(bound / 2**S)


def _requantize(g: _Graph, acc_i32: str, i: int, params: dict[str, np.ndarray]) -> str:
    """``clip(floor((acc + b) * k / 2**S + 1/2), lo, hi)`` in int64, as graph nodes.

    Rearranged so that the division sees only non-negative numerators and the clip only
    small numbers: with L from ``_lift``,
    ``min(max(((acc + b) * k + 2**(S-1) + L * 2**S) / 2**S, L + lo), L + hi) - L``.
    onnxruntime 1.21 to 1.31 compute int64 ``Max`` wrongly for values of 2**31 and more
    (0 instead); after the division every value here is below 2**31 (checked).
    """
    shift = int(params["shift"])
    lo, hi = params[f"lo{i}"].astype(np.int64), params[f"hi{i}"].astype(np.int64)
    lift = _lift(params, i)
    if int(np.max(2 * lift + np.abs(lo) + np.abs(hi) + 1)) >= 1 << 31:
        raise ValueError(f"layer {i}: a requantised value could reach 2**31")
    col = (-1, 1, 1)
    v = g.op("Cast", [acc_i32], to=TensorProto.INT64)
    v = g.op("Add", [v, g.const(f"bias{i}", params[f"b{i}"].astype(np.int64).reshape(col))])
    v = g.op("Mul", [v, g.const(f"multiplier{i}", params[f"k{i}"].astype(np.int64).reshape(col))])
    v = g.op("Add", [v, g.const(f"offset{i}", ((1 << (shift - 1)) + lift * (1 << shift)).reshape(col))])
    v = g.op("Div", [v, g.const(f"divisor{i}", np.array([1 << shift], dtype=np.int64))])
    v = g.op("Max", [v, g.const(f"low{i}", (lift + lo).reshape(col))])
    v = g.op("Min", [v, g.const(f"high{i}", (lift + hi).reshape(col))])
    return g.op("Sub", [v, g.const(f"lift{i}", lift.reshape(col))])


def _depth_to_space_nodes(g: _Graph, x: str, i: int) -> str:
    """PixelShuffle by 2 with Shape/Reshape/Transpose (type-agnostic, no arithmetic on values)."""
    shape = g.op("Shape", [x])
    h = g.op("Slice", [shape, g.const(f"s2_{i}", np.array([2])), g.const(f"s3_{i}", np.array([3]))])
    w = g.op("Slice", [shape, g.const(f"s3b_{i}", np.array([3])), g.const(f"s4_{i}", np.array([4]))])
    split = g.op("Concat", [g.const(f"head{i}", np.array([1, -1, 2, 2])), h, w], axis=0)
    x = g.op("Reshape", [x, split])
    x = g.op("Transpose", [x], perm=[0, 1, 4, 2, 5, 3])
    two = g.const(f"two{i}", np.array([2]))
    merged = g.op("Concat", [g.const(f"head2_{i}", np.array([1, -1])), g.op("Mul", [h, two]), g.op("Mul", [w, two])], axis=0)
    return g.op("Reshape", [x, merged])


def build_graph(params: dict[str, np.ndarray], scale_table: np.ndarray, hyper_channels: int, opset: int = 17) -> onnx.ModelProto:
    """The ``entropy_parameters`` graph: ``z_hat`` int32 (1, Nh, h, w) -> ``scale_index``, ``mean_q`` int32.

    Raises:
        ValueError: the parameters could overflow the exact range, or break the graph's
            assumptions (multipliers of at least 1, the hidden layers' clip within 0..255).
    """
    check_exact_range(params)
    for i in range(3):
        if int(np.min(params[f"k{i}"])) < 1:
            raise ValueError(f"layer {i}: every multiplier must be at least 1")
        lo, hi = params[f"lo{i}"], params[f"hi{i}"]
        if np.any(lo > hi) or (i < 2 and (int(np.min(lo)) < 0 or int(np.max(hi)) > 255)):
            raise ValueError(f"layer {i}: the clip bounds must be ordered{', within 0..255' if i < 2 else ''}")
    g = _Graph()
    m = int(params["mean_channels"])
    x = g.op("Clip", ["z_hat", g.const("z_min", np.array(Z_MIN, np.int32)), g.const("z_max", np.array(Z_MAX, np.int32))])
    x = g.op("Add", [x, g.const("z_zero_point_i32", np.array(-Z_MIN, np.int32))])
    x = g.op("Cast", [x], to=TensorProto.UINT8)
    zero_point = -Z_MIN
    for i in range(3):
        pads = g.const(f"pads{i}", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))
        x_zp = g.const(f"x_zero_point{i}", np.array(zero_point, dtype=np.uint8))
        x = g.op("Pad", [x, pads, x_zp], mode="constant")
        weight = (params[f"w{i}"].astype(np.int16) + WEIGHT_ZERO_POINT).astype(np.uint8)
        acc = g.op(
            "ConvInteger",
            [x, g.const(f"weight{i}", weight), x_zp, g.const(f"w_zero_point{i}", np.array(WEIGHT_ZERO_POINT, np.uint8))],
            kernel_shape=[3, 3],
        )
        x = _requantize(g, acc, i, params)
        if i < 2:
            x = g.op("Cast", [x], to=TensorProto.UINT8)
            x = _depth_to_space_nodes(g, x, i)
            zero_point = 0
    axis = g.const("channel_axis", np.array([1]))
    mean = g.op("Slice", [x, g.const("mean_start", np.array([0])), g.const("mean_end", np.array([m])), axis])
    scale_q = g.op("Slice", [x, g.const("scale_start", np.array([m])), g.const("scale_end", np.array([2 * m])), axis])
    index = g.op("Gather", [g.const("scale_lut", scale_lut(scale_table)), scale_q], axis=0)
    g.nodes.append(helper.make_node("Cast", [index], ["scale_index"], to=TensorProto.INT32, name="scale_index"))
    g.nodes.append(helper.make_node("Cast", [mean], ["mean_q"], to=TensorProto.INT32, name="mean_q"))
    graph = helper.make_graph(
        g.nodes, "nicodec_integer_entropy_parameters",
        [helper.make_tensor_value_info("z_hat", TensorProto.INT32, [1, hyper_channels, "height", "width"])],
        [
            helper.make_tensor_value_info("scale_index", TensorProto.INT32, [1, m, "out_height", "out_width"]),
            helper.make_tensor_value_info("mean_q", TensorProto.INT32, [1, m, "out_height", "out_width"]),
        ],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="nicodec-export")
    # onnx writes its own newest IR version by default, which older onnxruntime refuses to
    # load (1.17 reads up to 9); opset 17 needs no more than IR 8, as torch's exporter writes.
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def parameters_from_graph(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Read the integer parameters back out of a graph written by ``build_graph``."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    params = {"shift": np.array(int(np.log2(int(inits["divisor0"][0]))), dtype=np.int64)}
    for i in range(3):
        params[f"w{i}"] = (inits[f"weight{i}"].astype(np.int16) - WEIGHT_ZERO_POINT).astype(np.int8)
        params[f"b{i}"] = inits[f"bias{i}"].reshape(-1)
        params[f"k{i}"] = inits[f"multiplier{i}"].reshape(-1)
        if f"lift{i}" in inits:
            lift = inits[f"lift{i}"].reshape(-1)
            lo, hi = inits[f"low{i}"].reshape(-1) - lift, inits[f"high{i}"].reshape(-1) - lift
        else:  # graphs exported before nicodec-mshp-vr-2: the clip before the division
            lo = inits[f"low{i}"].reshape(-1)
            hi = (inits[f"top{i}"].reshape(-1) + 1) // (1 << int(params["shift"])) + lo - 1
        params[f"lo{i}"] = np.broadcast_to(lo, params[f"b{i}"].shape).copy()
        params[f"hi{i}"] = np.broadcast_to(hi, params[f"b{i}"].shape).copy()
    params["mean_channels"] = np.array(int(inits["mean_end"][0]), dtype=np.int64)
    return params


__all__ = ["build_graph", "parameters_from_graph", "reference"]
