"""The three graphs the runtime runs, as torch modules ready for ONNX export.

Their signatures are the contract with the runtime (``nicodec.model``):

- ``encoder``: ``image`` uint8 (1, 3, H, W) -> ``y`` float32 (1, M, H/16, W/16),
  ``z`` float32 (1, Nh, H/64, W/64). H and W are multiples of 64 (the runtime pads).
  A variable-rate model's encoder takes a second input, ``gain`` float32 (1, M, 1, 1),
  and ``y`` is the gained latent; its decoder takes ``y_hat`` already multiplied by the
  inverse gain (the runtime does that, as it computes both vectors from the quality).
- ``entropy_parameters``: ``z_hat`` int32 (1, Nh, h, w) -> ``scale_index`` int32 and
  ``mean_q`` int32 (1, M, 4h, 4w): which Gaussian table codes each latent, and its
  mean in fixed point (``mean = mean_q / 2**MEAN_BITS``).
- ``decoder``: ``y_hat`` float32 (1, M, h, w) -> ``image`` uint8 (1, 3, 16h, 16w);
  ``decoder_fp16`` is the same computed in fp16. A model whose post-filter sees the quality
  (``ModelConfig.postfilter_quality``) has decoders that take a second input, ``quality``
  float32 (1, 1, 1, 1): the file header's quality, 1 to 100.
- ``synthesis_gradient`` (encoder side only): ``y_hat`` float32 (1, M, h, w) and ``image``
  float32 (1, 3, 16h, 16w, values 0..255) -> ``gradient`` float32 (1, M, h, w), the
  gradient with respect to ``y_hat`` of the synthesis's squared error
  ``sum((255 * g_s(y_hat) - image)**2)`` (before the clamp and rounding); the
  ``quality`` too, after ``weight``, where the decoder takes it.

As in tensorflow/compression, scaling to [0, 1], clipping and rounding to uint8 are
inside the graphs, so the runtime never guesses a convention.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from nicodec.training.integer import MEAN_BITS, MEAN_LIMIT, integer_entropy_parameters
from nicodec.training.model import GDN, MeanScaleHyperprior, PostFilter, Synthesis, float_scale_index

__all__ = ["Encoder", "EntropyParameters", "Decoder", "HalfDecoder", "SynthesisGradient", "SubpixelConvTranspose",
           "fast_synthesis_layers"]


class Encoder(nn.Module):
    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        self.g_a, self.h_a = model.g_a, model.h_a

    def forward(self, image: torch.Tensor, gain: torch.Tensor | None = None):
        y = self.g_a(image.float() / 255.0)
        if gain is not None:
            y = y * gain
        return y, self.h_a(y)


class EntropyParameters(nn.Module):
    """h_s, then the scale is rounded up to the next table entry.

    A model with ``integer_entropy`` is exported by ``nicodec.export.integer`` instead;
    this module then computes the same integers in torch, for the parity check.
    """

    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        self.model = model

    def forward(self, z_hat: torch.Tensor):
        if self.model.config.integer_entropy:
            out = integer_entropy_parameters(self.model.h_s, self.model.hs_act_scale, z_hat,
                                             self.model.table_scales, self.model.table_lut)
            return out["scale_index"].to(torch.int32), out["mean_q"].to(torch.int32)
        means, scales = self.model.entropy_parameters(z_hat.float())
        index = float_scale_index(scales).to(torch.int32)
        # Bounded before the cast: an out-of-range float-to-int cast differs between machines.
        mean_q = torch.round(means.clamp(-MEAN_LIMIT, MEAN_LIMIT) * 2**MEAN_BITS).to(torch.int32)
        return index, mean_q


class SubpixelConvTranspose(nn.Module):
    """A stride-2 transposed convolution computed as a convolution to 4x the channels, then
    depth-to-space: the same function, in the form onnxruntime's CPU kernels run fastest.

    Output pixel ``(2m + a, 2n + b)`` of a transposed convolution (kernel k, padding k // 2,
    output padding 1) sums input pixels ``(m - t, n - u)`` times kernel taps ``(2t + a + k//2,
    2u + b + k//2)``, so each of the four phases ``(a, b)`` is an ordinary convolution of the
    input with the taps it uses (the others zero), and the phases interleave by depth-to-space.
    For 5x5 kernels that is a 3x3 convolution: 36 multiplications per 4 outputs instead of 25,
    but on 2 Xeon cores onnxruntime ran the 128-channel layers of a Kodak-size synthesis 1.4 to
    1.6 times faster this way (a one-off timing; the 3-channel output layer ran slower, so
    ``Decoder`` keeps it as it is).
    """

    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        k = layer.kernel_size[0]
        if (layer.stride != (2, 2) or layer.kernel_size != (k, k) or k % 2 == 0 or layer.padding != (k // 2, k // 2)
                or layer.output_padding != (1, 1) or layer.groups != 1 or layer.dilation != (1, 1)):
            raise ValueError(f"not a stride-2 transposed convolution of an odd kernel with 'same' padding: {layer}")
        p = k // 2
        taps = {a: range(-((a + p) // 2), (k - 1 - a - p) // 2 + 1) for a in (0, 1)}
        reach = max(abs(t) for a in (0, 1) for t in taps[a])
        weight = layer.weight.detach()  # (in, out, k, k)
        cin, cout = weight.shape[:2]
        kernel = torch.zeros(cout * 4, cin, 2 * reach + 1, 2 * reach + 1, dtype=weight.dtype)
        for a in (0, 1):
            for b in (0, 1):
                phase = kernel[a * 2 + b :: 4]  # depth-to-space takes channel 4c + 2a + b to (a, b) of c
                for t in taps[a]:
                    for u in taps[b]:
                        phase[:, :, reach - t, reach - u] = weight[:, :, 2 * t + a + p, 2 * u + b + p].T
        self.reach = reach
        self.register_buffer("weight", kernel)
        bias = layer.bias.detach() if layer.bias is not None else torch.zeros(cout, dtype=weight.dtype)
        self.register_buffer("bias", bias.repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=self.reach), 2)


def fast_synthesis_layers(g_s: nn.Sequential) -> list[nn.Module]:
    """``g_s``'s layers, each transposed convolution to more than 3 channels as a
    :class:`SubpixelConvTranspose` (the others as they are, shared, not copied)."""
    return [SubpixelConvTranspose(m) if isinstance(m, nn.ConvTranspose2d) and m.out_channels > 3 else m for m in g_s]


class Decoder(nn.Module):
    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        self.g_s = Synthesis(*fast_synthesis_layers(model.g_s))

    def forward(self, y_hat: torch.Tensor, quality: torch.Tensor | None = None):
        x = self.g_s(y_hat, quality).clamp(0.0, 1.0)
        return torch.round(x * 255.0).to(torch.uint8)


class HalfDecoder(nn.Module):
    """The synthesis in fp16 (weights and arithmetic), same inputs and outputs as ``Decoder``.

    Native speed on CPUs with fp16 arithmetic (ARMv8.2 and later);
    onnxruntime runs it through casts elsewhere. The symbols, and so the file, do not
    depend on it: only the synthesis's rounding differs.
    """

    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        layers = [_FixedGDN(m) if isinstance(m, GDN) else copy.deepcopy(m) for m in fast_synthesis_layers(model.g_s)]
        self.g_s = Synthesis(*layers).half()

    def forward(self, y_hat: torch.Tensor, quality: torch.Tensor | None = None):
        x = self.g_s(y_hat.half(), quality).float().clamp(0.0, 1.0)
        return torch.round(x * 255.0).to(torch.uint8)


class _FixedGDN(nn.Module):
    """A GDN with its effective beta and gamma computed once, so the graph holds them as
    constants: onnxruntime has no fp16 Pow kernel on the CPU to fold them at load time."""

    def __init__(self, gdn: GDN):
        super().__init__()
        beta, gamma = gdn.params()
        self.inverse = gdn.inverse
        self.register_buffer("beta", beta.detach().clone())
        self.register_buffer("gamma", gamma.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt(F.conv2d(x * x, self.gamma, self.beta))
        return x * norm if self.inverse else x / norm


class SynthesisGradient(nn.Module):
    """The gradient of the synthesis's squared error with respect to its input, as a plain
    forward graph (the ONNX exporter records no backward pass, so it is written out).

    g_s alternates transposed convolutions and inverse GDNs. The transposed convolution's
    adjoint is the convolution with the same weight tensor and stride; for the inverse GDN
    ``y_i = x_i * n_i`` with ``n_i = sqrt(beta_i + sum_j gamma_ij x_j**2)``, the
    vector-Jacobian product is ``g_j * n_j + x_j * sum_i gamma_ij g_i x_i / n_i``. A
    :class:`PostFilter` (``x + shuffle(f(unshuffle(x)))``) passes the gradient on plus its
    body's: back through depth-to-space (space-to-depth, its adjoint), each 3x3 convolution (the
    convolution with the weights flipped and their channels swapped) and ReLU (its mask); a
    quality plane, an input and not a function of ``y_hat``, gets none of it. The
    encoder uses it to refine its latent (``nicodec.refine``); decoding never runs it.

    The squared error is ``sum(weight * (255 * g_s(y_hat) - image)**2)``: ``weight`` (1, 1,
    H, W) is 1 on the image's pixels and 0 on the padding the encoder adds to reach a
    multiple of the latent's stride (of the downsampling before nicodec 0.7.0), which the
    decoder crops away.
    """

    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        self.layers = nn.ModuleList(
            _FixedGDN(m) if isinstance(m, GDN) else copy.deepcopy(m) for m in model.g_s
        )
        for layer in self.layers:
            if not isinstance(layer, (_FixedGDN, nn.ConvTranspose2d, PostFilter)):
                raise TypeError(f"SynthesisGradient cannot differentiate a {type(layer).__name__} layer")
            if isinstance(layer, PostFilter):  # its convolutions' adjoints, last first, as constants of the graph
                layer.adjoints = [m.weight.detach().transpose(0, 1).flip(2, 3).contiguous() for m in layer.body[::-1]
                                  if isinstance(m, nn.Conv2d)]
                # Not towards the quality plane: the picture's planes only.
                layer.adjoints[-1] = layer.adjoints[-1][: layer.body[0].in_channels - layer.quality_plane]

    def forward(self, y_hat: torch.Tensor, image: torch.Tensor, weight: torch.Tensor,
                quality: torch.Tensor | None = None):
        inputs, norms = [], []
        x = y_hat
        for layer in self.layers:
            inputs.append(x)
            if isinstance(layer, _FixedGDN):
                norm = torch.sqrt(F.conv2d(x * x, layer.gamma, layer.beta))
                norms.append(norm)
                x = x * norm if layer.inverse else x / norm
            elif isinstance(layer, PostFilter):
                first, _, second, _, third = layer.body
                before_relu = [first(layer.folded(x, quality))]
                before_relu.append(second(F.relu(before_relu[0])))
                norms.append(before_relu)  # what its backward pass needs
                x = x + F.pixel_shuffle(third(F.relu(before_relu[1])), 2)
            else:
                norms.append(None)
                x = layer(x)
        grad = 2.0 * 255.0 * (255.0 * x - image) * weight
        for layer, x, norm in zip(reversed(self.layers), reversed(inputs), reversed(norms)):
            if isinstance(layer, _FixedGDN):
                if not layer.inverse:
                    raise TypeError("SynthesisGradient differentiates the inverse GDN only")
                grad = grad * norm + x * F.conv2d(grad * x / norm, layer.gamma.transpose(0, 1))
            elif isinstance(layer, PostFilter):
                inner = F.pixel_unshuffle(grad, 2)
                for adjoint, before_relu in zip(layer.adjoints, (norm[1], norm[0], None)):
                    inner = F.conv2d(inner, adjoint, padding=1)
                    if before_relu is not None:
                        inner = inner * (before_relu > 0).to(inner.dtype)
                grad = grad + F.pixel_shuffle(inner, 2)
            else:
                grad = F.conv2d(grad, layer.weight, stride=layer.stride, padding=layer.padding)
        return grad
