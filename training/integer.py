"""The integer hyper-synthesis: the part of the network that picks probability tables.

In a hyperprior codec the decoder recomputes every latent's table and mean from the
hyper-latent. If two machines disagree on one table index, entropy decoding runs
off the rails. Ballé, Johnston and Minnen ("Integer networks for data compression
with latent-variable models", ICLR 2019) cure this by computing that path in
integer arithmetic; nicodec does so for ``h_s`` and everything after it.

The arithmetic, exact in int64 (``nicodec.export.integer`` writes the same as an
ONNX graph and as a numpy reference, and tests hold the three equal)::

    x = clip(z_hat, -128, 127)                      scale 1 (uint8 x + 128 in the graph)
    for each of the three 3x3 convolutions l:
        acc = conv(x, W_l) + B_l                    W_l int8 in [-127, 127], B_l int64
        x   = clip(floor((acc * K_l + 2**(S-1)) / 2**S), lo, hi)
        hidden layers: lo, hi = 0, 255 (the ReLU), then depth-to-space by 2
    last layer, channels [0, M):   mean_q  (mean * 2**MEAN_BITS, +-MEAN_LIMIT)
                channels [M, 2M):  scale_q (scale * 2**SCALE_BITS, 0 .. 2**16 - 1)
    scale_index = LUT[scale_q]                      the first table scale >= scale

The float weights stay the trained parameters (their rounding is simulated with a
straight-through estimator), so training sees exactly the integers the graph
computes. Each weight row is scaled to use the full int8 range; activations have
one scale per layer (``act_scale``), fixed by calibration on training latents.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SHIFT = 24
"""S above: requantisation multipliers are integers over 2**SHIFT."""
ACT_MAX = 255
WEIGHT_MAX = 127
Z_MIN, Z_MAX = -128, 127
MEAN_BITS = 8
MEAN_LIMIT = 4096
SCALE_BITS = 10
SCALE_Q_MAX = (1 << 16) - 1
EXACT_LIMIT = 2**52
"""Every product acc * K stays below this, so float64 training arithmetic is exact too."""


def ste(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (value - x).detach()


def hs_convolutions(h_s: nn.Sequential) -> list[nn.Conv2d]:
    """The three convolutions of the hyper-synthesis (see ``model.MeanScaleHyperprior``)."""
    return [h_s[0][0], h_s[2][0], h_s[4]]


def scale_lut(scale_table: np.ndarray) -> np.ndarray:
    """``LUT[q]``: index of the first table scale at least ``max(q / 2**SCALE_BITS, table[0])``.

    Built once at export in float64 and shipped as data; 2**16 uint8 entries.
    """
    q = np.arange(SCALE_Q_MAX + 1, dtype=np.float64) / (1 << SCALE_BITS)
    lut = np.searchsorted(scale_table, np.maximum(q, scale_table[0]) * (1 - 1e-9), side="left")
    return np.minimum(lut, len(scale_table) - 1).astype(np.uint8)


class IntegerLayer:
    """One convolution's integers, derived from float weights (with straight-through rounding)."""

    def __init__(self, conv: nn.Conv2d, s_in: float | torch.Tensor, s_out: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
        w = conv.weight.double()
        b = conv.bias.double()
        s_w = (w.detach().abs().amax(dim=(1, 2, 3)) / WEIGHT_MAX).clamp_min(1e-12)
        self.weight = ste(w / s_w[:, None, None, None], torch.round(w / s_w[:, None, None, None])).clamp(-WEIGHT_MAX, WEIGHT_MAX)
        self.bias = ste(b / (s_in * s_w), torch.round(b / (s_in * s_w)))
        # K: one integer multiplier per output channel, taking acc to the output's units.
        self.multiplier = torch.round(s_in * s_w / s_out * 2**SHIFT).clamp_min(1)
        self.lo, self.hi = lo, hi

    def __call__(self, x: torch.Tensor, exact_ste: bool = True) -> torch.Tensor:
        acc = F.conv2d(x, self.weight, self.bias, padding=1)
        scaled = acc * self.multiplier[None, :, None, None] / 2**SHIFT
        rounded = torch.floor(scaled + 0.5)
        lo, hi = self.lo[None, :, None, None], self.hi[None, :, None, None]
        return ste(scaled, rounded).clamp(lo, hi) if exact_ste else rounded.clamp(lo, hi)


def integer_layers(h_s: nn.Sequential, act_scale: torch.Tensor, M: int) -> list[IntegerLayer]:
    """The three layers' integers for the current weights and activation scales."""
    convs = hs_convolutions(h_s)
    f64 = {"dtype": torch.float64, "device": convs[0].weight.device}
    # Kept as tensors on the weights' device: reading them as Python numbers would wait for the GPU.
    act = act_scale.to(**f64)
    layers = []
    s_in = 1.0
    for conv, s_out in zip(convs[:2], act):
        c = conv.out_channels
        out = s_out.expand(c)
        layers.append(IntegerLayer(conv, s_in, out, torch.zeros(c, **f64), torch.full((c,), float(ACT_MAX), **f64)))
        s_in = s_out
    last = convs[2]
    out = torch.cat([torch.full((M,), 2.0**-MEAN_BITS, **f64), torch.full((M,), 2.0**-SCALE_BITS, **f64)])
    lo = torch.cat([torch.full((M,), -float(MEAN_LIMIT << MEAN_BITS), **f64), torch.zeros(M, **f64)])
    hi = torch.cat([torch.full((M,), float(MEAN_LIMIT << MEAN_BITS), **f64), torch.full((M,), float(SCALE_Q_MAX), **f64)])
    layers.append(IntegerLayer(last, s_in, out, lo, hi))
    return layers


def integer_entropy_parameters(
    h_s: nn.Sequential, act_scale: torch.Tensor, z_hat: torch.Tensor, scale_table: torch.Tensor, lut: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The integer path in torch, for training and for checking the graph.

    Args:
        scale_table, lut: the table scales (float64) and ``scale_lut`` of them (int64), on
            z_hat's device: the model's ``table_scales`` and ``table_lut`` buffers.

    Returns:
        ``means`` and ``scales`` (float, with straight-through gradients; ``scales`` are
        the table scales the codec uses), and ``mean_q``, ``scale_q`` and
        ``scale_index``, the integers the graph computes.
    """
    M = h_s[4].out_channels // 2
    layers = integer_layers(h_s, act_scale, M)
    x = z_hat.double().clamp(Z_MIN, Z_MAX)
    for layer in layers[:2]:
        x = F.pixel_shuffle(layer(x), 2)
    out = layers[2](x)
    mean_q, scale_q = out[:, :M], out[:, M:]
    # The clamp changes no finite value (scale_q is clipped to the table's range already), but
    # keeps a NaN from a diverged step from indexing out of range (a device-side assert on CUDA).
    index = lut[scale_q.detach().long().clamp(0, SCALE_Q_MAX)]
    scales_cont = scale_q / 2**SCALE_BITS
    return {
        "means": mean_q / 2**MEAN_BITS,
        "scales": ste(scales_cont, scale_table[index]),
        "mean_q": mean_q.detach().long(),
        "scale_q": scale_q.detach().long(),
        "scale_index": index,
    }


@torch.no_grad()
def calibrate(h_s: nn.Sequential, z_hat: torch.Tensor, quantile: float = 0.9999) -> torch.Tensor:
    """Activation scales for the two hidden layers: a high quantile of each ReLU's output over 255."""
    x = z_hat.float().clamp(Z_MIN, Z_MAX)
    scales = []
    for block in (h_s[0], h_s[2]):
        x = torch.relu(block(x))
        flat = x.flatten()
        sample = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
        scales.append(max(float(torch.quantile(sample, quantile)), 1e-6) / ACT_MAX)
    return torch.tensor(scales, dtype=torch.float64)


@torch.no_grad()
def integer_parameters(h_s: nn.Sequential, act_scale: torch.Tensor) -> dict[str, np.ndarray]:
    """The integers that define the graph: per layer weight (int8), bias and multiplier
    (int64) and the clip bounds; checked against the bounds that keep every product exact.

    Raises:
        ValueError: a product could leave the exact range (a broken or exotic model).
    """
    M = h_s[4].out_channels // 2
    params: dict[str, np.ndarray] = {"shift": np.array(SHIFT, dtype=np.int64)}
    for i, layer in enumerate(integer_layers(h_s, act_scale, M)):
        params[f"w{i}"] = layer.weight.detach().round().to(torch.int64).numpy().astype(np.int8)
        params[f"b{i}"] = layer.bias.detach().round().to(torch.int64).numpy()
        params[f"k{i}"] = layer.multiplier.to(torch.int64).numpy()
        params[f"lo{i}"] = layer.lo.to(torch.int64).numpy()
        params[f"hi{i}"] = layer.hi.to(torch.int64).numpy()
    params["mean_channels"] = np.array(M, dtype=np.int64)
    check_exact_range(params)
    return params


def product_bound(params: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Per output channel of layer ``i``, a bound on ``|(acc + b) * k|`` over every input
    (``|z_hat|`` at most 128 into layer 0, activations at most ``ACT_MAX`` after)."""
    x_max = max(abs(Z_MIN), Z_MAX) if i == 0 else ACT_MAX
    w, b, k = (params[f"{n}{i}"].astype(np.int64) for n in "wbk")
    return (np.abs(w).sum(axis=(1, 2, 3)) * x_max + np.abs(b)) * k


def check_exact_range(params: dict[str, np.ndarray]) -> None:
    """Raise ValueError when a product in the integer graph could reach 2**52."""
    for i in range(3):
        bound = product_bound(params, i) + (1 << int(params["shift"]))
        if bound.max() >= EXACT_LIMIT:
            raise ValueError(f"layer {i}: a product reaches {float(bound.max()):.3e}, beyond the exact range")
