"""Rate-distortion optimised rounding of the latent, on the encoder's side only.

The file stores integer symbols and the decoder reads them back as they are, so the
encoder is free to choose them. Rounding each residual ``r = y - mean`` to the nearest
integer ``s`` gives the least error; one step toward zero, ``s - sign(s)``, adds
``1 + 2 * sign(s) * (r - s)`` (between 0 and 2) to the squared error in the latent and
usually shortens the code, because every table is a discretised zero-mean Gaussian.
:func:`rdo_round` takes that step wherever the bits it saves, times ``slope``, exceed
the error it adds.

The latent error is a proxy for the picture's error: its weight in pixels differs from
channel to channel, but weighting the decision by a measured per-channel weight gained
nothing over this plain rule on Kodak. ``RDO_SLOPE`` was chosen by a sweep on Kodak and
checked on the training set's held-out photos: ``benchmarks/rdo.py`` measures the gain
(BD-rate against plain rounding).
"""

from __future__ import annotations

import numpy as np

from .rans import Tables

SYMBOL_LIMIT = 1 << 24
"""Residuals are clipped to +-2**24 before rounding (beyond it the coder escapes anyway)."""

RDO_SLOPE = 0.02
"""Squared latent error accepted per bit saved (a sweep of 0.01 to 0.07 on Kodak found the
best BD-rate at 0.02; 0.05 gains about half as much, 0.07 loses). Kodak is for evaluation: on
the 8 held-out photos of the training set, with vr-5f, 0.02 was best again (-0.90% against
-0.73% and -0.74% for 0.01 and 0.03, +0.14% for 0.05; ``benchmarks/results/rdo-heldout.json``)."""

_CHUNK = 1 << 20


def round_symbols(residual: np.ndarray) -> np.ndarray:
    """Nearest-integer rounding (int32, same shape): z always, y as the networks were trained."""
    clipped = np.clip(residual, -SYMBOL_LIMIT, SYMBOL_LIMIT)
    if clipped.dtype.kind == "f":
        np.rint(clipped, out=clipped)  # in place: one temporary of the latent's size, not two
    return clipped.astype(np.int32)


def rdo_round(residual: np.ndarray, table_ids: np.ndarray, tables: Tables, slope: float = RDO_SLOPE) -> np.ndarray:
    """Round ``residual`` to symbols, moving one step toward zero where it pays.

    Args:
        residual: float array, the latent minus its means.
        table_ids: integer array of the same shape, the table that codes each symbol.
        tables: the tables ``table_ids`` refers to.
        slope: squared latent error accepted per bit saved; 0 gives plain rounding.

    Returns:
        int32 symbols of ``residual``'s shape. Each differs from the nearest integer by at
        most one, toward zero, and only where both values lie inside the table (escaped
        values are left alone).
    """
    symbols = round_symbols(residual)
    if slope <= 0:
        return symbols
    if table_ids.shape != residual.shape:
        raise ValueError(f"table_ids has shape {table_ids.shape}, not the residual's {residual.shape}")
    flat = symbols.reshape(-1)
    values = residual.reshape(-1)
    ids = table_ids.reshape(-1)
    lengths = tables.code_lengths
    cols = lengths.shape[1] - 1
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        where = np.flatnonzero(part)
        s = part[where].astype(np.int64)
        t = ids[start : start + _CHUNK][where].astype(np.int64)
        step = np.sign(s)
        near = s - tables.offsets[t]
        toward = near - step
        inside = (np.minimum(near, toward) >= 0) & (np.maximum(near, toward) <= tables.sizes[t] - 2)
        with np.errstate(invalid="ignore"):  # inf - inf in a table's padding, masked by `inside`
            saved = lengths[t, np.clip(near, 0, cols)] - lengths[t, np.clip(toward, 0, cols)]
        extra = 1.0 + 2.0 * step * (values[start : start + _CHUNK][where].astype(np.float64) - s)
        take = inside & (extra < slope * saved)
        part[where[take]] = (s - step)[take]
    return symbols
