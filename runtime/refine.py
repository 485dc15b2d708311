"""Refining the latent before it is coded: gradient steps on the encoder's side only.

The analysis transform is a single feed-forward guess at the latent; the best latent
for one image is the one that minimises the training objective for that image. As in
Campos et al. ("Content adaptive optimization for neural image compression", CVPR
Workshops 2019) and Yang et al. ("Improving inference for neural image compression",
NeurIPS 2020), the encoder can get closer to it by gradient descent on the latent
itself, with the networks fixed, so the decoder and the format are untouched.

:func:`refine` takes Adam steps on ``y`` (the gained latent) against
``bits / pixels + lmbda * 255**2 * MSE``, the objective the model was trained with at
that quality: the rate as the training measured it (each value plus uniform noise under
its Gaussian), the distortion through the synthesis with ``y`` rounded around its means
(straight-through). The hyper-latent, and so every mean and scale, stays as the
analysis made it: refining ``y`` alone got most of the gain in our trials, and keeps the
integer entropy parameters out of the loop. The synthesis's gradient comes from the
model's ``synthesis_gradient`` graph (``nicodec.export.graphs.SynthesisGradient``); the
rate's is written out below.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

REFINE_LR = 0.003
"""Adam's step size for ``REFINE_LR_STEPS`` or more iterations, annealed to 0 over them by a
half cosine."""

REFINE_LR_STEPS = 60
"""Below this many iterations the step size grows with the square root of ``REFINE_LR_STEPS /
iterations``, up to its value at ``REFINE_FEWEST_STEPS`` (0.0052), the fewest measured. In one-off
trials (3 Kodak images, qualities 10, 56 and 90, the objective on real files) 0.005 beat 0.003
at 20 steps in all 9 cases, by 0.3 to 0.7%, and at 60 steps neither 0.005 nor 0.01 beat 0.003
overall (0.01 lost 1 to 3% at quality 56); fewer than 20 steps were not tried. Those trials
used Kodak images, which are for evaluation; the choice was checked on 5 of the training set's
held-out photos instead (its last 8 files; 768x512 crops of the large ones), at 20 steps and
the same qualities: the larger step gave a lower objective in 15 of 15 cases, by 0.65% on
average."""

REFINE_FEWEST_STEPS = 20
"""The fewest iterations whose step size was measured; fewer take the same step size."""

_LN2 = math.log(2.0)
_PROBABILITY_FLOOR = 1e-9
"""Below this probability the rate has no gradient, as in training (its likelihood clamp)."""


def step_size(iterations: int) -> float:
    """The starting step size for a refinement of ``iterations`` steps."""
    return REFINE_LR * math.sqrt(REFINE_LR_STEPS / min(max(iterations, REFINE_FEWEST_STEPS), REFINE_LR_STEPS))


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF, with small relative error in the lower tail (float64).

    numpy has no erf. This uses the Chebyshev fit of erfc in Press et al., Numerical
    Recipes (2nd ed., section 6.2, ``erfcc``: fractional error below 1.2e-7 everywhere).
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    with np.errstate(under="ignore"):  # far in the tail the mass is 0 (a caller's seterr(all="raise") aside)
        tail = 0.5 * t * np.exp(-z * z + poly)  # P(N > |x|)
    return np.where(x < 0, tail, 1.0 - tail)


def rate_gradient(value: np.ndarray, means: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """d/d value of ``-log2 P(value)``, P the mass of the unit bin around ``value`` under
    N(means, scales**2), the model's rate for one latent value (float64, same shape)."""
    offset = value.astype(np.float64) - means
    magnitude = np.abs(offset)
    scales = scales.astype(np.float64)
    upper = (0.5 - magnitude) / scales
    lower = (-0.5 - magnitude) / scales
    probability = normal_cdf(upper) - normal_cdf(lower)
    with np.errstate(under="ignore"):
        density = (np.exp(-0.5 * upper * upper) - np.exp(-0.5 * lower * lower)) / math.sqrt(2 * math.pi)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        slope = density / (scales * np.maximum(probability, _PROBABILITY_FLOOR) * _LN2)
    return np.where(probability > _PROBABILITY_FLOOR, np.sign(offset) * slope, 0.0)


def refine(
    y: np.ndarray,
    means: np.ndarray,
    scales: np.ndarray,
    synthesis_gradient: Callable[[np.ndarray], np.ndarray],
    inverse_gain: np.ndarray | float,
    lmbda: float,
    pixels: int,
    iterations: int,
    lr: float | None = None,
    seed: int = 0,
    progress: Callable[[int, int], object] | None = None,
) -> np.ndarray:
    """Adam steps on the latent ``y`` against the rate-distortion objective.

    Args:
        y: float32 (1, M, h, w), the analysis's (gained) latent.
        means, scales: its Gaussians' parameters, the same shape.
        synthesis_gradient: maps the synthesis input (float32, ``y``'s shape) to the
            gradient of ``sum((255 * g_s(input) - image)**2)`` with respect to it, summed
            over the pixels that count (the codec leaves out its padding).
        inverse_gain: what multiplies the rounded latent before the synthesis (1 for a
            single-rate model), broadcastable to ``y``.
        lmbda: the trade-off at this quality.
        pixels: how many pixels that sum counts; the rate is per pixel of the same count.
        iterations: Adam steps; 0 returns ``y`` unchanged.
        lr: the step size at the start, annealed to 0 by a half cosine (``None``:
            :func:`step_size`).
        seed: the rate's noise; the same inputs and seed give the same latent.
        progress: called after each step with ``(steps done, iterations)``.

    Returns:
        The refined latent, float32, ``y``'s shape.
    """
    if iterations <= 0:
        return y
    if lr is None:
        lr = step_size(iterations)
    rng = np.random.default_rng(seed)
    current = y.astype(np.float64)
    means = means.astype(np.float64)
    first = np.zeros_like(current)
    second = np.zeros_like(current)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    distortion_weight = lmbda / (3.0 * pixels)
    for step in range(1, iterations + 1):
        y_hat = np.rint(current - means) + means
        grad = synthesis_gradient((y_hat * inverse_gain).astype(np.float32)).astype(np.float64)
        grad *= inverse_gain
        grad *= distortion_weight
        noisy = current + rng.uniform(-0.5, 0.5, size=current.shape)
        grad += rate_gradient(noisy, means, scales) / pixels
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad * grad
        size = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / iterations))
        current -= size * (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + eps)
        if progress is not None:
            progress(step, iterations)
    return current.astype(np.float32)
