"""Rate-distortion optimised rounding (``nicodec.quantize``): encoder-side choices the decoder never sees."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from nicodec import NicodecError, rans
from nicodec.codec import Codec
from nicodec.quantize import RDO_SLOPE, rdo_round, round_symbols

from conftest import psnr


def peaked_tables() -> rans.Tables:
    """One table over -2..2 (and its escape) that makes 0 cost almost nothing and +-1 cost 16 bits,
    and one flat table where every step saves nothing."""
    peaked = np.array([1, 1, 65531, 1, 1, 1])
    flat = np.full(6, 65536 // 6)
    flat[2] += 65536 - flat.sum()
    cdf = np.stack([np.concatenate([[0], np.cumsum(f)]) for f in (peaked, flat)])
    return rans.Tables(cdf, np.array([6, 6]), np.array([-2, -2]))


def test_code_lengths_are_minus_log2_of_each_frequency():
    tables = peaked_tables()
    lengths = tables.code_lengths
    assert lengths.shape == (2, 6)
    assert lengths[0, 1] == 16 and lengths[0, 2] == pytest.approx(-np.log2(65531 / 65536))
    assert np.allclose(2.0 ** -lengths[1], (65536 // 6 + np.array([0, 0, 4, 0, 0, 0])) / 65536)


def test_a_step_toward_zero_is_taken_exactly_when_the_bits_saved_pay_for_the_error():
    tables = peaked_tables()
    # 0.6 -> 1 or 0: 0.2 more squared error, 16 bits saved; 0.9: 0.8 more error, the same bits.
    residual = np.array([0.6, -0.6, 0.9, -0.9, 0.2, 1.4, 0.6])
    ids = np.array([0, 0, 0, 0, 0, 0, 1])
    saved = 16 + np.log2(65531 / 65536)
    assert 0.2 < RDO_SLOPE * saved < 0.8  # what the expectations below rest on
    assert rdo_round(residual, ids, tables).tolist() == [0, 0, 1, -1, 0, 1, 1]
    # 1.4 -> 0 adds 1.8: too much at the default slope, not at slope 1; the flat table saves
    # 0.0005 bits from 1 to 0, too little for 0.2 more error at any of these slopes.
    assert rdo_round(residual, ids, tables, slope=0.0).tolist() == [1, -1, 1, -1, 0, 1, 1]
    assert rdo_round(residual, ids, tables, slope=1.0).tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_escaped_values_and_their_neighbours_are_left_alone():
    """A table over -2..2 where 0 and 2 cost 1 bit each, -2, -1, 1 and the escape symbol 16: the
    escape's code alone is 15 bits dearer than 2's, so a step from 3 (escaped) to 2 would pay, as
    1 to 0 does, but an escaped value is never moved (the step is taken only inside the table)."""
    frequencies = np.array([1, 1, 32766, 1, 32766, 1])
    tables = rans.Tables(np.concatenate([[0], np.cumsum(frequencies)])[None], np.array([6]), np.array([-2]))
    lengths = tables.code_lengths[0]
    assert lengths[5] - lengths[4] > 14  # the escape symbol (3 and beyond) against 2
    residual = np.array([3.2, -3.4, 40.0, 2.4, 1.4])
    out = rdo_round(residual, np.zeros(5, dtype=np.int32), tables, slope=100.0)
    # 3 and beyond stay escaped (-3 too); 2 -> 1 would cost 15 more bits; 1 -> 0 is taken.
    assert out.tolist() == [3, -3, 40, 2, 0]


def test_symbols_differ_from_rounding_by_at_most_one_step_toward_zero_and_cost_fewer_bits():
    rng = np.random.default_rng(0)
    codec = Codec(providers="cpu")
    tables = codec.model.y_tables
    # Tables from the narrowest to those of about 30 symbols, residuals that stay inside them.
    ids = rng.integers(0, 30, size=(1, 8, 16, 16))
    low = tables.offsets[ids]
    residual = (rng.standard_normal(ids.shape) * 1.5).clip(low, low + tables.sizes[ids] - 2)
    residual = residual.astype(np.float32)
    plain = round_symbols(residual)
    chosen = rdo_round(residual, ids, tables)
    assert chosen.dtype == np.int32 and chosen.shape == residual.shape
    moved = chosen != plain
    assert moved.any() and (~moved).any()
    assert np.all(np.abs(chosen - plain) <= 1)
    assert np.all(np.abs(chosen[moved]) == np.abs(plain[moved]) - 1)  # always toward zero
    rows = ids.ravel()

    def bits(symbols):
        return tables.code_lengths[rows, symbols.ravel() - tables.offsets[rows]].sum()

    def error(symbols):
        return ((residual.astype(np.float64) - symbols) ** 2).sum()

    assert bits(chosen) < bits(plain)
    assert error(chosen) - error(plain) < RDO_SLOPE * (bits(plain) - bits(chosen))


@pytest.mark.parametrize("chunk", [1, 7, 1000, 2047, 2048])
def test_rounding_in_blocks_changes_no_symbol(monkeypatch, chunk):
    """rdo_round works through blocks of _CHUNK symbols (2**20, more than the latents here): blocks
    of one symbol, a few, a last partial block and exactly the whole give plain rdo_round's result."""
    from nicodec import quantize
    from nicodec.model import ModelFiles

    rng = np.random.default_rng(7)
    tables = ModelFiles.load().y_tables
    ids = rng.integers(0, 30, size=(1, 8, 16, 16))
    residual = (rng.standard_normal(ids.shape) * 2.0).astype(np.float32)
    residual.flat[::97] = 300.25  # escaped, left alone
    residual.flat[1000:1100] = 0.1  # zeros: whole blocks of 1 and 7 with nothing to move
    whole = rdo_round(residual, ids, tables)
    moved = np.flatnonzero(whole != round_symbols(residual))
    assert moved.min() < 1000 and moved.max() >= 2000  # steps in the first block of 1000 and in the last
    monkeypatch.setattr(quantize, "_CHUNK", chunk)
    np.testing.assert_array_equal(rdo_round(residual, ids, tables), whole)


def test_the_codec_files_are_smaller_and_decode_like_any_file(photo):
    plain_codec, rdo_codec = Codec(providers="cpu", rdo=False), Codec(providers="cpu")
    assert rdo_codec.rdo_slope == RDO_SLOPE and plain_codec.rdo_slope == 0
    plain, chosen = plain_codec.encode(photo, quality=30), rdo_codec.encode(photo, quality=30)
    assert len(chosen) < len(plain)
    _, z_plain, y_plain, mean_plain = plain_codec.decode_symbols(plain)
    _, z_chosen, y_chosen, mean_chosen = plain_codec.decode_symbols(chosen)
    # The analysis, the hyper-latent and the means are the same; only some symbols step toward zero.
    assert np.array_equal(z_plain, z_chosen) and np.array_equal(mean_plain, mean_chosen)
    moved = y_plain != y_chosen
    assert moved.any() and np.all(np.abs(y_chosen[moved]) == np.abs(y_plain[moved]) - 1)
    # Either codec decodes either file, to the same pixels.
    pixels = rdo_codec.decode(chosen, as_array=True)
    assert np.array_equal(pixels, plain_codec.decode(chosen, as_array=True))
    assert psnr(pixels, photo) > psnr(plain_codec.decode(plain, as_array=True), photo) - 0.5


def test_an_rdo_slope_may_be_a_fraction_or_a_decimal():
    assert Codec(providers="cpu", rdo=Fraction(1, 50)).rdo_slope == Codec(providers="cpu", rdo=Decimal("0.02")).rdo_slope == 0.02


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "yes", [0.02], pytest.param(10**400, id="10**400"),
                                 Decimal("sNaN")])  # float() of it: a ValueError
def test_a_bad_rdo_setting_is_refused(bad):
    with pytest.raises(NicodecError, match="rdo must be"):  # 10**400: an OverflowError in float()
        Codec(providers="cpu", rdo=bad)


@pytest.mark.parametrize("bad", ["fp64", None, ["fp16"], {}, b"fp16"])
def test_a_bad_precision_is_refused(bad):
    with pytest.raises(NicodecError, match="precision must be one of fp32, fp16"):  # a list: unhashable, a TypeError
        Codec(providers="cpu", precision=bad)


def test_the_default_rounding_steps_toward_zero_unless_the_latent_is_refined():
    assert Codec(providers="cpu").rdo_slope == RDO_SLOPE
    assert Codec(providers="cpu", refine=5).rdo_slope == 0
    assert Codec(providers="cpu", refine=5, rdo=True).rdo_slope == RDO_SLOPE
