"""Integer CDF tables, computed once from a trained model and frozen beside the graphs."""

from __future__ import annotations

import numpy as np
import torch

from nicodec.rans import Tables, tables_from_pmfs
from nicodec.training.model import FactorizedPrior

TAIL_MASS = 1e-9
"""Probability left outside a table's range (coded through its escape symbol)."""

MAX_HALF_WIDTH = 127
"""Tables hold at most 255 values plus the escape, so a uint8 lookup table decodes them."""


def gaussian_tables(scales: torch.Tensor) -> Tables:
    """One table per scale for ``round(y - mean)`` under N(0, scale**2).

    Each covers the integers within the ``TAIL_MASS`` quantiles (at most
    ``MAX_HALF_WIDTH`` either side); the rest of the mass goes to the escape.
    """
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    pmfs, offsets = [], []
    for s in scales.to(torch.float64):
        half = int(torch.ceil(-normal.icdf(torch.tensor(TAIL_MASS / 2, dtype=torch.float64)) * s))
        half = max(1, min(half, MAX_HALF_WIDTH))
        v = torch.arange(-half, half + 1, dtype=torch.float64)
        # Upper minus lower CDF, both on the negative side for accuracy.
        upper = normal.cdf((0.5 - v.abs()) / s)
        lower = normal.cdf((-0.5 - v.abs()) / s)
        pmf = (upper - lower).numpy()
        pmfs.append(np.append(pmf, max(0.0, 1.0 - pmf.sum())))
        offsets.append(-half)
    return tables_from_pmfs(pmfs, np.array(offsets, dtype=np.int32))


@torch.no_grad()
def factorized_tables(prior: FactorizedPrior, search: int = 512) -> Tables:
    """One table per channel of z, over the integers holding all but ``TAIL_MASS`` of its mass."""
    grid = torch.arange(-search, search + 1, dtype=torch.float32)
    channels = prior.matrices[0].shape[0]
    cdf = prior.cdf(grid[None, :].repeat(channels, 1) + 0.5).double()  # P(Z <= v + 0.5)
    pmfs, offsets = [], []
    for c in range(channels):
        below = torch.nonzero(cdf[c] < TAIL_MASS / 2)
        above = torch.nonzero(cdf[c] > 1 - TAIL_MASS / 2)
        lo = int(below[-1]) + 1 if len(below) else 0
        hi = int(above[0]) if len(above) else len(grid) - 1
        centre = (lo + hi) // 2
        lo = max(lo, centre - MAX_HALF_WIDTH)
        hi = min(hi, centre + MAX_HALF_WIDTH)
        upper = cdf[c, lo : hi + 1]
        lower = torch.cat([cdf[c, lo - 1 : lo] if lo > 0 else torch.zeros(1, dtype=torch.float64), cdf[c, lo:hi]])
        pmf = (upper - lower).clamp_min(0).numpy()
        pmfs.append(np.append(pmf, max(0.0, 1.0 - pmf.sum())))
        offsets.append(int(grid[lo]))
    return tables_from_pmfs(pmfs, np.array(offsets, dtype=np.int32))
