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
    band = np.full(shape, 255, np.uint8)  # holes in a few rows only: the other strips are skipped
    band[shape[0] // 2 : shape[0] // 2 + 3, : shape[1] // 2] = 0
    wholes = [fill_transparent(rgb, alpha), fill_transparent(rgb, band)]
    monkeypatch.setattr(transparency, "_STRIP_ROWS", 2)
    assert np.array_equal(fill_transparent(rgb, alpha), wholes[0])
    assert np.array_equal(fill_transparent(rgb, band), wholes[1])


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 5), (8, 7), (17, 40)])
def test_the_fill_at_the_holes_alone_is_the_full_upsample_there(shape):
    """The full size is computed at the holes only (a few transparent pixels of a large image
    cost an upsample of every strip they were in), with the same float32 arithmetic: equal to
    the bit at every pixel, edges included, so the files are those made before."""
    coarse = np.random.default_rng(sum(shape)).random((*shape, 3), dtype=np.float32) * 255
    ys, xs = np.indices((2 * shape[0], 2 * shape[1])).reshape(2, -1)
    full = transparency._upsample(coarse)
    assert np.array_equal(transparency._upsampled_at(coarse, ys, xs), full[ys, xs])


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


def test_the_fill_of_a_row_worked_by_hand():
    """One row: two black visible pixels, two of 201, four holes. The blocks of 2 average to
    0, 201 and two holes; of 4, to 100.5 and a hole; the hole blocks take the coarser level
    (100.5), and the holes at full size the bilinear mix of their block and the nearer
    neighbour: 3/4 * 100.5 + 1/4 * 201 = 125.625 (126), then 100.5 (100, half to even)."""
    row = np.array([0, 0, 201, 201, 9, 9, 9, 9], np.uint8)
    rgb = np.repeat(row[None, :, None], 3, axis=2)
    alpha = np.array([[255, 255, 255, 255, 0, 0, 0, 0]], np.uint8)
    assert fill_transparent(rgb, alpha)[0, :, 0].tolist() == [0, 0, 201, 201, 126, 100, 100, 100]
    # Partly transparent pixels are visible: their colour counts, alpha 1 as much as 255.
    alpha[0, 2:4] = 1
    assert fill_transparent(rgb, alpha)[0, :, 0].tolist() == [0, 0, 201, 201, 126, 100, 100, 100]


def test_the_refinement_leaves_the_transparent_pixels_out_unless_exact(photo, monkeypatch):
    from nicodec import Codec

    refining = Codec(providers="cpu", refine=1)
    if not refining._gradient_weighted:
        pytest.skip("this model's synthesis gradient takes no pixel weight")
    rgb, alpha = cut_out(photo)
    weights = []
    real = refining._synthesis_gradient
    monkeypatch.setattr(refining, "_synthesis_gradient",
                        lambda y_hat, image, weight=None, quality=None: weights.append(weight)
                        or real(y_hat, image, weight, quality))
    refining.encode(np.dstack([rgb, alpha]))
    height, width = alpha.shape
    assert np.array_equal(weights[-1][0, 0, :height, :width], (alpha > 0).astype(np.float32))
    refining.encode(np.dstack([rgb, alpha]), exact=True)
    assert (weights[-1][0, 0, :height, :width] == 1).all()
    # The check that keeps the refined file only if it costs no more counts the same pixels.
    symbols, stream, mean_q = np.zeros((1, 1, 1, 1), np.int32), b"", None
    costs = []
    monkeypatch.setattr(refining, "_synthesize", lambda y_hat, quality: np.zeros((1, 3, height, width), np.uint8))
    monkeypatch.setattr(refining, "_synthesis_input", lambda quality, symbols, mean_q: None)
    for seen in (None, alpha > 0):
        costs.append(refining._cost(symbols, stream, mean_q, 56.0, rgb, False, seen))
    visible = rgb[alpha > 0].astype(float)
    assert costs[1] == pytest.approx(refining._lmbda(56.0) * (visible**2).mean())
    assert costs[0] == pytest.approx(refining._lmbda(56.0) * (rgb.astype(float) ** 2).mean())


def test_strip_and_exact_are_checked_before_the_image_is_read(codec):
    for flags in ({"exact": "yes"}, {"strip": 0}, {"strip": {"gps"}}):
        with pytest.raises(NicodecError, match="must be True or False|must be True, False or the kinds|no kind of"):
            encode_to_target(codec, "/nonexistent/photo.png", bpp=1, **flags)
