"""The three graphs the runtime runs, as torch modules ready for ONNX export.

Their signatures are the contract with the runtime (``nicodec.model``):

- ``encoder``: ``image`` uint8 (1, 3, H, W) -> ``y`` float32 (1, M, H/16, W/16),
  ``z`` float32 (1, Nh, H/64, W/64). H and W are multiples of 64 (the runtime pads).
- ``entropy_parameters``: ``z_hat`` int32 (1, Nh, h, w) -> ``scale_index`` int32 and
  ``mean_q`` int32 (1, M, 4h, 4w): which Gaussian table codes each latent, and its
  mean in fixed point (``mean = mean_q / 2**MEAN_BITS``).
- ``decoder``: ``y_hat`` float32 (1, M, h, w) -> ``image`` uint8 (1, 3, 16h, 16w).

As in tensorflow/compression, scaling to [0, 1], clipping and rounding to uint8 are
inside the graphs, so the runtime never guesses a convention.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nicodec.training.model import SCALE_MIN, MeanScaleHyperprior

MEAN_BITS = 8
"""Fractional bits of the fixed-point means."""

MEAN_LIMIT = 4096.0
"""Means are clipped to +-MEAN_LIMIT, far beyond any latent a trained model makes."""

SCALE_LEVELS = 64
SCALE_MAX = 64.0


def scale_table() -> torch.Tensor:
    """The Gaussian scales that have tables: log-spaced from SCALE_MIN to SCALE_MAX (float64)."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS, dtype=torch.float64))


class Encoder(nn.Module):
    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        self.g_a, self.h_a = model.g_a, model.h_a

    def forward(self, image: torch.Tensor):
        y = self.g_a(image.float() / 255.0)
        return y, self.h_a(y)


class EntropyParameters(nn.Module):
    """h_s, then the scale is rounded up to the next table entry."""

    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        self.model = model
        self.log_min = math.log(SCALE_MIN)
        self.log_step = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)

    def forward(self, z_hat: torch.Tensor):
        means, scales = self.model.entropy_parameters(z_hat.float())
        log_scale = torch.log(scales.clamp_min(SCALE_MIN))
        index = torch.ceil((log_scale - self.log_min) / self.log_step - 1e-4)
        index = index.clamp(0, SCALE_LEVELS - 1).to(torch.int32)
        # Bounded before the cast: an out-of-range float-to-int cast differs between machines.
        mean_q = torch.round(means.clamp(-MEAN_LIMIT, MEAN_LIMIT) * 2**MEAN_BITS).to(torch.int32)
        return index, mean_q


class Decoder(nn.Module):
    def __init__(self, model: MeanScaleHyperprior):
        super().__init__()
        self.g_s = model.g_s

    def forward(self, y_hat: torch.Tensor):
        x = self.g_s(y_hat).clamp(0.0, 1.0)
        return torch.round(x * 255.0).to(torch.uint8)
