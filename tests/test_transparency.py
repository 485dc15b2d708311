"""The colour under fully transparent pixels: filled smoothly before coding unless exact."""

from __future__ import annotations

import numpy as np
import pytest

from nicodec import NicodecError, encode_to_target, transparency
from nicodec.transparency import fill_transparent
from photos import psnr, synthetic_photo


def cut_out(photo: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A photo with an elliptical cut-out: noise around it, transparent, and a soft rim."""
    height, width = photo.shape[:2]
    yy, xx = np.mgrid[:height, :width]
    r = ((yy - height / 2) / (height * 0.4)) ** 2 + ((xx - width / 2) / (width * 0.35)) ** 2
    alpha = np.clip((1.1 - r) * 10 * 255, 0, 255).astype(np.uint8)  # 0 outside, partial on the rim
    rgb = photo.copy()
    rgb[alpha == 0] = np.random.default_rng(seed).integers(0, 256, (int((alpha == 0).sum()), 3), dtype=np.uint8)
    return rgb, alpha


def test_the_fill_keeps_visible_pixels_and_the_input_and_stays_within_their_colours(photo):
    rgb, alpha = cut_out(photo)
    before = rgb.copy(), alpha.copy()
    filled = fill_transparent(rgb, alpha)
    assert np.array_equal(rgb, before[0]) and np.array_equal(alpha, before[1])
    assert filled.dtype == np.uint8 and filled.shape == rgb.shape
    visible = alpha > 0
    assert np.array_equal(filled[visible], rgb[visible])  # partly transparent pixels included
    assert not np.array_equal(filled[~visible], rgb[~visible])
    # Averages of visible colours, interpolated: never outside their range.
    low, high = rgb[visible].min(axis=0), rgb[visible].max(axis=0)
    assert (filled[~visible] >= low).all() and (filled[~visible] <= high).all()
    assert np.array_equal(fill_transparent(rgb, alpha), filled)


def test_the_fill_continues_the_visible_pixels_smoothly():
    """A horizontal ramp with a hole in its middle: the hole is filled with nearly the ramp,
    not a flat colour or the hole's old black."""
    ramp = np.broadcast_to(np.linspace(20, 230, 200)[None, :, None], (120, 200, 3)).round().astype(np.uint8).copy()
    alpha = np.full(ramp.shape[:2], 255, np.uint8)
    alpha[30:90, 60:140] = 0
    hole = ramp.copy()
    hole[alpha == 0] = 0
    filled = fill_transparent(hole, alpha)
    error = np.abs(filled.astype(int) - ramp)[alpha == 0]
    assert error.mean() < 6 and error.max() < 25, (error.mean(), error.max())
    # Neighbours in the fill differ by little: no hard edge for the networks to pay for.
    assert np.abs(np.diff(filled[30:90, 58:142].astype(int), axis=1)).max() <= 8


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 3), (33, 65), (300, 130)])
def test_filling_the_full_size_in_strips_changes_nothing(shape, monkeypatch):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    alpha = np.where(rng.random(shape) < 0.3, 255, 0).astype(np.uint8)
    alpha.flat[0] = 255
    whole = fill_transparent(rgb, alpha)
    monkeypatch.setattr(transparency, "_STRIP_ROWS", 2)
    assert np.array_equal(fill_transparent(rgb, alpha), whole)


def test_no_hole_all_holes_and_gray():
    rgb = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    opaque = np.full((40, 50), 7, np.uint8)  # partly transparent everywhere: nothing to fill
    assert fill_transparent(rgb, opaque) is rgb
    empty = fill_transparent(rgb, np.zeros((40, 50), np.uint8))
    assert (empty == 128).all() and (rgb != 128).any()
    gray = np.repeat(rgb[:, :, :1], 3, axis=2)
    alpha = np.where(np.arange(50) < 20, 255, 0).astype(np.uint8)[None].repeat(40, 0)
    filled = fill_transparent(gray, alpha)
    assert np.array_equal(filled[:, :, 0], filled[:, :, 1]) and np.array_equal(filled[:, :, 0], filled[:, :, 2])


def test_the_encoder_fills_unless_exact(codec, photo):
    rgb, alpha = cut_out(photo)
    rgba = np.dstack([rgb, alpha])
    kept = rgba.copy()
    filled = codec.encode(rgba)
    exact = codec.encode(rgba, exact=True)
    assert np.array_equal(rgba, kept)
    assert codec.encode(rgba, exact=False) == filled
    assert codec.encode(np.dstack([fill_transparent(rgb, alpha), alpha]), exact=True) == filled
    assert len(filled) < 0.8 * len(exact), (len(filled), len(exact))  # the noise costs many bits
    back, back_exact = codec.decode(filled, as_array=True), codec.decode(exact, as_array=True)
    assert np.array_equal(back[:, :, 3], alpha) and np.array_equal(back_exact[:, :, 3], alpha)
    visible, hidden = alpha > 0, alpha == 0
    assert psnr(back[visible][:, :3], rgb[visible]) > psnr(back_exact[visible][:, :3], rgb[visible])
    # exact keeps the hidden colour (lossily, as the rest); the fill does not try to.
    other = synthetic_photo(*photo.shape[:2], seed=2)
    rgb[hidden] = other[hidden]
    back = codec.decode(codec.encode(np.dstack([rgb, alpha])), as_array=True)
    back_exact = codec.decode(codec.encode(np.dstack([rgb, alpha]), exact=True), as_array=True)
    assert psnr(back_exact[hidden][:, :3], rgb[hidden]) > 28 > psnr(back[hidden][:, :3], rgb[hidden]) + 10
    # Without transparency there is nothing to fill.
    assert codec.encode(photo, exact=True) == codec.encode(photo)


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_exact_must_be_a_bool(codec, photo, flag):
    with pytest.raises(NicodecError, match="exact must be True or False"):
        codec.encode(photo, exact=flag)


def test_a_psnr_target_counts_the_visible_pixels_unless_exact(codec, photo):
    rgb, alpha = cut_out(photo)
    rgba = np.dstack([rgb, alpha])
    visible = alpha > 0
    for exact, pixels in ((False, visible), (True, np.ones_like(visible))):
        result = encode_to_target(codec, rgba, psnr=30, exact=exact, max_encodes=3)
        assert result.data == codec.encode(rgba, quality=result.quality, exact=exact)
        back = codec.decode(result.data, as_array=True)[:, :, :3]
        assert result.psnr == pytest.approx(psnr(back[pixels], rgb[pixels]), abs=1e-9)
    hidden = np.dstack([rgb, np.zeros_like(alpha)])
    assert encode_to_target(codec, hidden, psnr=40, max_encodes=2).quality == 1  # nothing visible to keep
