"""The shipped model's gain vectors between its trained levels (``ModelFiles.gains``).

A file records its quality, and the decoder multiplies the latent by the inverse gain there:
a file written at a quality between two levels decodes to the same pixels only while the
interpolation (FORMAT.md, "What the symbols mean") gives the same vectors. The values below
were computed by nicodec for the model named; ``exp`` may differ in the last place from
machine to machine, hence a relative tolerance of 1e-6 rather than equality.
"""

from __future__ import annotations

import numpy as np
import pytest

from nicodec.model import QUALITY_MAX, QUALITY_MIN, ModelFiles, check_quality

MODEL_ID = "nicodec-mshp-vr-5f"
COMPONENTS = [0, 100, 191]
PINNED = {
    # quality: (gain[COMPONENTS], sum of gain, inverse_gain[COMPONENTS], sum of inverse_gain)
    1.5: ([0.094374463, 0.0991717577, 0.131357908], 24.6194402, [4.12359715, 3.05726409, 2.41468692], 574.306491),
    30: ([0.270271719, 0.267882913, 0.321354777], 62.262432, [1.57430363, 1.29215884, 1.10869694], 244.846097),
    50.5: ([0.5061571, 0.498918504, 0.588803291], 114.23271, [0.942083001, 0.771020532, 0.647938192], 143.926035),
    60: ([0.665641129, 0.657156467, 0.773958743], 150.060988, [0.747927189, 0.607082844, 0.501761317], 112.509094),
    99.9: ([1.85993016, 1.83561122, 2.19468737], 423.082403, [0.29272157, 0.231344014, 0.181948692], 42.0176779),
}


@pytest.fixture(scope="module")
def model():
    model = ModelFiles.load()
    assert model.model_id == MODEL_ID, f"the shipped model is {model.model_id}: pin its gains here anew"
    return model


@pytest.mark.parametrize("quality", list(PINNED))
def test_gains_between_the_trained_levels_are_those_files_were_written_with(model, quality):
    """At the quality a header holds (float32: 99.9 is 99.9000015...)."""
    gain, inverse = model.gains(check_quality(quality))
    assert gain.dtype == inverse.dtype == np.float32 and gain.shape == inverse.shape == (model.latent_channels,)
    want_gain, gain_sum, want_inverse, inverse_sum = PINNED[quality]
    np.testing.assert_allclose(gain[COMPONENTS], want_gain, rtol=1e-6)
    np.testing.assert_allclose(inverse[COMPONENTS], want_inverse, rtol=1e-6)
    assert gain.astype(np.float64).sum() == pytest.approx(gain_sum, rel=1e-6)
    assert inverse.astype(np.float64).sum() == pytest.approx(inverse_sum, rel=1e-6)


def test_gains_are_the_trained_vectors_at_the_levels(model):
    levels = len(model.log_gain)
    for level in range(levels):
        gain, inverse = model.gains(QUALITY_MIN + (QUALITY_MAX - QUALITY_MIN) * level / (levels - 1))
        np.testing.assert_allclose(gain, np.exp(model.log_gain[level].astype(np.float64)), rtol=1e-6)
        np.testing.assert_allclose(inverse, np.exp(model.log_inverse_gain[level].astype(np.float64)), rtol=1e-6)


def test_every_gain_rises_and_every_inverse_gain_falls_with_the_quality(model):
    """Each channel's trained gains rise from level to level (its inverse gains fall), so between
    two levels every channel's gain moves strictly toward the next level's as the quality rises,
    in steps of a quarter (about 1/45 of the way from one level to the next)."""
    assert np.all(np.diff(model.log_gain, axis=0) > 0) and np.all(np.diff(model.log_inverse_gain, axis=0) < 0)
    qualities = np.arange(4 * QUALITY_MIN, 4 * QUALITY_MAX + 1) / 4
    gains, inverses = zip(*(model.gains(float(q)) for q in qualities))
    assert np.all(np.diff(np.array(gains), axis=0) > 0)
    assert np.all(np.diff(np.array(inverses), axis=0) < 0)
