"""The rANS coder: round trips, the exact stream layout, table quantization and corrupt input."""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nicodec import rans
from nicodec.errors import FormatError
from nicodec.rans import MAX_SYMBOLS, MAX_TABLES, TOTAL, Tables, decode, default_lanes, encode, quantize_pmf, tables_from_pmfs


def random_tables(rng: np.random.Generator, n_tables: int = 8, max_size: int = 256) -> Tables:
    """Tables of random sizes with peaked, flat, sparse and near-one-hot pmfs."""
    pmfs = []
    for t in range(n_tables):
        size = int(rng.integers(2, max_size + 1))
        kind = t % 4
        if kind == 0:
            p = rng.random(size) ** 4
        elif kind == 1:
            p = np.ones(size)
        elif kind == 2:
            p = np.where(rng.random(size) < 0.5, 0.0, rng.random(size))
            p[rng.integers(size)] = 1.0
        else:
            p = np.full(size, 1e-12)
            p[rng.integers(size)] = 1.0
        pmfs.append(p)
    return tables_from_pmfs(pmfs, rng.integers(-200, 200, n_tables))


def random_message(rng: np.random.Generator, tables: Tables, n: int, escape_rate: float = 0.02):
    """Values drawn from each table's own frequencies, with some escapes of every kind."""
    ids = rng.integers(0, tables.n_tables, n)
    cdf = tables.cdf.astype(np.int64)
    slot = rng.integers(0, TOTAL, n)
    index = np.array([np.searchsorted(cdf[t], s, side="right") - 1 for t, s in zip(ids, slot)])
    values = tables.offsets[ids].astype(np.int64) + index
    escape = (rng.random(n) < escape_rate) | (index == tables.sizes[ids] - 1)
    far = rng.choice([-(2**31), 2**31 - 1, -1, 0, 10**6], size=n)
    beyond = np.where(rng.random(n) < 0.5, tables.offsets[ids] - 1 - rng.integers(0, 5, n), far)
    values[escape] = np.where(
        rng.random(n) < 0.5, tables.offsets[ids] + tables.sizes[ids] - 1 + rng.integers(0, 5, n), beyond
    )[escape]
    return values.astype(np.int32), ids


def round_trip(values, ids, tables, lanes=None) -> bytes:
    data = encode(values, ids, tables, lanes)
    out = decode(data, ids, tables)
    assert out.dtype == np.int32 and out.shape == (len(ids),)
    np.testing.assert_array_equal(out, values)
    return data


def reference_encode(values, ids, tables: Tables, lanes: int) -> bytes:
    """A plain-Python interleaved rANS encoder, one symbol at a time, to pin the layout down."""
    cdf, sizes, offsets = tables.cdf.tolist(), tables.sizes.tolist(), tables.offsets.tolist()
    n, k = len(values), min(lanes, len(values))
    coded, escapes = [], []
    for v, t in zip(values.tolist(), ids.tolist()):
        s = v - offsets[t]
        if not 0 <= s <= sizes[t] - 2:
            escapes.append(v)
            s = sizes[t] - 1
        coded.append((cdf[t][s], cdf[t][s + 1] - cdf[t][s]))
    states, steps = [1 << 16] * k, []
    for step in reversed(range(-(-n // k))):
        words = []
        for lane in range(min(k, n - step * k)):
            start, freq = coded[step * k + lane]
            x = states[lane]
            if x >= freq << 16:
                words.append(x & 0xFFFF)
                x >>= 16
            states[lane] = ((x // freq) << 16) + x % freq + start
        steps.append(words)
    words = [w for step in reversed(steps) for w in step]
    return b"".join(
        [
            struct.pack("<HI", k, len(escapes)),
            struct.pack(f"<{len(escapes)}i", *escapes),
            struct.pack(f"<{k}I", *states),
            struct.pack(f"<{len(words)}H", *words),
        ]
    )


# -- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 1000, 5000])
def test_round_trip_random_tables_and_values(seed, n):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng)
    values, ids = random_message(rng, tables, n)
    for lanes in (None, 1, 3, 64):
        round_trip(values, ids, tables, lanes)


def test_every_lane_count_from_1_to_64():
    rng = np.random.default_rng(10)
    tables = random_tables(rng, 5, 40)
    values, ids = random_message(rng, tables, 301)
    for lanes in range(1, 65):
        data = round_trip(values, ids, tables, lanes)
        assert struct.unpack_from("<H", data)[0] == lanes


def test_stream_matches_a_plain_python_encoder_byte_for_byte():
    rng = np.random.default_rng(11)
    tables = random_tables(rng, 6, 30)
    for n, lanes in [(1, 1), (7, 3), (200, 1), (200, 5), (333, 16), (64, 64)]:
        values, ids = random_message(rng, tables, n, escape_rate=0.05)
        assert encode(values, ids, tables, lanes) == reference_encode(values, ids, tables, lanes)



@pytest.mark.parametrize("block", [1, 5, 12, 64])
def test_coding_in_blocks_of_steps_changes_no_byte(monkeypatch, block):
    """The coders hold one block of about _BLOCK symbols at a time; blocks smaller than a
    step, a step, several steps and a last partial block all give the reference's stream."""
    monkeypatch.setattr(rans, "_BLOCK", block)
    rng = np.random.default_rng(12)
    tables = random_tables(rng, 6, 30)
    for n, lanes in [(1, 1), (7, 3), (200, 1), (200, 5), (333, 16), (64, 64), (1000, 7)]:
        values, ids = random_message(rng, tables, n, escape_rate=0.05)
        data = encode(values, ids, tables, lanes)
        assert data == reference_encode(values, ids, tables, lanes)
        np.testing.assert_array_equal(decode(data, ids, tables), values)
        assert decode(data, ids.astype(np.int32), tables).tolist() == values.tolist()

def test_layout_header_escapes_states_words():
    rng = np.random.default_rng(12)
    tables = random_tables(rng, 3, 20)
    values, ids = random_message(rng, tables, 500, escape_rate=0.1)
    data = round_trip(values, ids, tables, 8)
    lanes, n_escapes = struct.unpack_from("<HI", data)
    symbol = values.astype(np.int64) - tables.offsets[ids]
    escaped = (symbol < 0) | (symbol > tables.sizes[ids] - 2)
    assert lanes == 8 and n_escapes == np.count_nonzero(escaped) > 0
    np.testing.assert_array_equal(np.frombuffer(data, "<i4", n_escapes, 6), values[escaped])
    states = np.frombuffer(data, "<u4", lanes, 6 + 4 * n_escapes)
    assert np.all(states >= 1 << 16)
    assert (len(data) - 6 - 4 * n_escapes - 4 * lanes) % 2 == 0


def test_size_two_tables_code_one_value_and_escapes():
    tables = tables_from_pmfs([np.array([0.9, 0.1]), np.array([1e-9, 1.0])], [5, -3])
    rng = np.random.default_rng(13)
    ids = rng.integers(0, 2, 2000)
    values = np.where(rng.random(2000) < 0.8, tables.offsets[ids], rng.integers(-(2**31), 2**31, 2000))
    round_trip(values.astype(np.int32), ids, tables)


def test_zero_symbols_give_a_bare_header():
    tables = random_tables(np.random.default_rng(14), 2)
    empty = np.zeros(0, dtype=np.int32)
    data = encode(empty, empty, tables)
    assert data == struct.pack("<HI", 0, 0)
    assert decode(data, empty, tables).shape == (0,)
    for bad in (b"", data + b"\0\0", struct.pack("<HI", 1, 0), struct.pack("<HI", 0, 1)):
        with pytest.raises(FormatError):
            decode(bad, empty, tables)


def test_one_symbol_in_every_table():
    rng = np.random.default_rng(15)
    tables = random_tables(rng, 16)
    for t in range(tables.n_tables):
        first, last = tables.offsets[t], tables.offsets[t] + tables.sizes[t] - 2
        for v in (first, last, first - 1, last + 1, 2**31 - 1):
            round_trip(np.array([v], dtype=np.int64), np.array([t]), tables)


def test_extreme_frequencies():
    # One symbol holds 2**16 - 255 counts and 255 others hold 1 each: the rare symbols
    # renormalise at every step, the common one almost never.
    tables = tables_from_pmfs([np.r_[1.0, np.zeros(255)], np.r_[np.zeros(255), 1.0]], [0, 0])
    freq = np.diff(tables.cdf.astype(np.int64), axis=1)
    assert freq[0, 0] == TOTAL - 255 and np.all(freq[0, 1:] == 1)
    rng = np.random.default_rng(16)
    for values in (np.zeros(3000), rng.integers(1, 255, 3000), rng.integers(0, 255, 3000)):
        for t in (0, 1):
            round_trip(values.astype(np.int32), np.full(3000, t), tables)
    rare = encode(np.ones(1000, np.int32), np.zeros(1000, np.int32), tables, 1)
    assert len(rare) > 1000 * 16 / 8  # 16 bits each


def test_more_than_65535_symbols_use_a_wide_lookup_table():
    rng = np.random.default_rng(17)
    pmfs = [rng.random(256) for _ in range(256)]
    tables = tables_from_pmfs(pmfs, np.zeros(256, dtype=np.int32))
    values, ids = random_message(rng, tables, 3000)
    round_trip(values, ids, tables)
    assert tables._coding.lut.dtype == np.uint32


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_property(data):
    n_tables = data.draw(st.integers(1, 4))
    pmfs = [
        np.array(data.draw(st.lists(st.floats(0, 1), min_size=2, max_size=24).filter(lambda p: sum(p) > 0)))
        for _ in range(n_tables)
    ]
    offsets = data.draw(st.lists(st.integers(-100, 100), min_size=n_tables, max_size=n_tables))
    tables = tables_from_pmfs(pmfs, offsets)
    n = data.draw(st.integers(0, 300))
    ids = np.array(data.draw(st.lists(st.integers(0, n_tables - 1), min_size=n, max_size=n)), dtype=np.int64)
    values = np.array(
        data.draw(
            st.lists(
                st.one_of(st.integers(-110, 130), st.integers(-(2**31), 2**31 - 1)), min_size=n, max_size=n
            )
        ),
        dtype=np.int64,
    )
    lanes = data.draw(st.one_of(st.none(), st.integers(1, 70)))
    round_trip(values, ids, tables, lanes)


def test_same_input_gives_identical_bytes_whatever_the_dtypes():
    rng = np.random.default_rng(18)
    tables = random_tables(rng)
    values, ids = random_message(rng, tables, 4000)
    first = encode(values, ids, tables)
    assert encode(values.astype(np.int64), ids.astype(np.int32), tables) == first
    assert encode(values, ids.astype(np.uint8), Tables(tables.cdf, tables.sizes, tables.offsets)) == first
    assert decode(bytearray(first), ids, tables).tolist() == values.tolist()
    assert decode(memoryview(first), ids, tables).tolist() == values.tolist()


def test_default_lanes():
    assert default_lanes(0) == 1 and default_lanes(1) == 1 and default_lanes(100) == 1
    assert default_lanes(48 * 32 * 192) == 64
    assert all(1 <= default_lanes(n) <= min(max(n, 1), 1024) for n in range(0, 100000, 997))


def test_encode_rejects_bad_arguments():
    tables = random_tables(np.random.default_rng(19), 3)
    ok = np.zeros(4, dtype=np.int32)
    for (values, ids, lanes), message in [
        ((ok, np.zeros(3, np.int32), None), "4 values but 3 table ids"),
        ((ok, np.full(4, 3), None), r"table ids must lie in \[0, 3\)"),
        ((ok, np.full(4, -1), None), r"table ids must lie in \[0, 3\)"),
        ((np.full(4, 2**31), ok, None), "values must lie in the int32 range"),
        ((np.full(4, 0.5), ok, None), "values must hold integers, not float64"),
        ((ok.reshape(2, 2), ok.reshape(2, 2), None), r"values must be 1-D, not of shape \(2, 2\)"),
        ((ok, ok, 0), r"lanes must be an integer in \[1, 65535\], not 0$"),
        ((ok, ok, 65536), r"lanes must be an integer in \[1, 65535\], not 65536"),
        ((ok, ok, 2.0), r"lanes must be an integer in \[1, 65535\], not 2.0"),
    ]:
        with pytest.raises(ValueError, match=message):
            encode(values, ids, tables, lanes)
    assert struct.unpack_from("<H", encode(ok, ok, tables, 1000))[0] == 4
    with pytest.raises(TypeError):
        decode("not bytes", ok, tables)


# -- tables --------------------------------------------------------------------------


def test_quantized_pmfs_sum_to_two_to_the_16_and_cost_little():
    rng = np.random.default_rng(20)
    for _ in range(200):
        size = int(rng.integers(2, 257))
        p = rng.random(size) ** rng.uniform(0.5, 8)
        p[rng.random(size) < 0.2] = 0.0
        if p.sum() == 0:
            p[0] = 1.0
        freq = quantize_pmf(p)
        assert freq.sum() == TOTAL and freq.min() >= 1
        p = p / p.sum()
        live = p > 0
        ideal = -np.sum(p[live] * np.log2(p[live]))
        cost = -np.sum(p[live] * np.log2(freq[live] / TOTAL))
        assert cost - ideal < 0.002 + 0.01 * ideal


def test_quantization_is_deterministic_and_scale_free():
    rng = np.random.default_rng(21)
    pmfs = [rng.random(int(rng.integers(2, 257))) for _ in range(20)]
    a = tables_from_pmfs(pmfs, np.arange(20))
    b = tables_from_pmfs([p * 2.0 for p in pmfs], np.arange(20))
    np.testing.assert_array_equal(a.cdf, b.cdf)
    assert a.cdf.dtype == np.uint32 and a.sizes.dtype == np.int32 and a.offsets.dtype == np.int32


@pytest.mark.parametrize("pmf, message", [
    ([1.0], "2 to 256 entries"),
    (np.ones(257), "2 to 256 entries"),
    ([0.0, 0.0], "positive, finite sum"),
    ([0.5, -0.1, 0.6], "finite, non-negative probabilities"),
    ([0.5, np.nan], "finite, non-negative probabilities"),
    ([np.inf, 1.0], "finite, non-negative probabilities"),
    ([1e308, 1e308], "positive, finite sum"),  # each finite, their sum not
    (np.ones((2, 2)), r"a vector of 2 to 256 entries, not shape \(2, 2\)"),
])
def test_bad_pmfs_are_refused(pmf, message):
    with pytest.raises(ValueError, match=message):
        tables_from_pmfs([np.asarray(pmf, dtype=np.float64)], [0])


def test_tables_validate_their_arrays():
    good = tables_from_pmfs([np.ones(3), np.ones(5)], [0, 0])
    cdf, sizes, offsets = good.cdf.copy(), good.sizes.copy(), good.offsets.copy()

    def bad_cdf(edit):
        c = cdf.copy()
        edit(c)
        return c

    cases = [
        ((cdf.astype(np.float64), sizes, offsets), "cdf must hold integers, not float64"),
        ((cdf[0], sizes, offsets), r"cdf must have shape \(n_tables >= 1, max_size \+ 1\), not \(6,\)"),
        ((cdf, sizes[:1], offsets), r"sizes and Tables.offsets must have shape \(2,\)"),
        ((cdf, np.array([1, 5]), offsets), r"table sizes must lie in \[2, 256\]"),
        ((cdf, np.array([3, 6]), offsets), "6 columns, too few for 6 symbols"),
        ((cdf, sizes, np.array([0, 2**31 - 2])), "values run past the int32 range"),
        ((bad_cdf(lambda c: c.__setitem__((0, 0), 1)), sizes, offsets), "must start at 0"),
        ((bad_cdf(lambda c: c.__setitem__((0, 3), TOTAL - 1)), sizes, offsets), "must reach 2..16 at its size"),
        ((bad_cdf(lambda c: c.__setitem__((0, 4), 7)), sizes, offsets), "must be padded with 2..16 after its size"),
        # A symbol of frequency zero, then one of a negative frequency.
        ((bad_cdf(lambda c: c.__setitem__((1, 2), c[1, 1])), sizes, offsets), "frequency of at least 1"),
        ((bad_cdf(lambda c: c.__setitem__((1, 2), c[1, 3] + 1)), sizes, offsets), "frequency of at least 1"),
        ((np.zeros((0, 3), np.uint32), np.zeros(0, np.int32), np.zeros(0, np.int32)), r"not \(0, 3\)"),
        ((cdf.astype(np.int64) - 2**40, sizes, offsets), "values outside the uint32 range"),
    ]
    for (c, s, o), message in cases:
        with pytest.raises(ValueError, match=message):
            Tables(c, s, o)
    # Limits that keep a hostile model folder from making the decoder reserve gigabytes.
    padded = np.hstack([cdf, np.full((2, MAX_SYMBOLS + 1 - cdf.shape[1] + 1), TOTAL, cdf.dtype)])
    with pytest.raises(ValueError, match="columns, more than 257"):
        Tables(padded, sizes, offsets)
    n = MAX_TABLES + 1
    with pytest.raises(ValueError, match=f"{n} tables, more than {MAX_TABLES}"):
        Tables(np.tile(cdf[:1], (n, 1)), np.full(n, sizes[0]), np.zeros(n, offsets.dtype))
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.cdf = cdf
    with pytest.raises(ValueError):
        good.cdf[0, 0] = 1


# -- corrupt streams -----------------------------------------------------------------


def decode_strictly(data, ids, tables):
    """Decode with every numpy and Python warning raised as an error."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        return decode(data, ids, tables)


def small_stream():
    rng = np.random.default_rng(22)
    pmfs = [np.append(rng.random(size) ** 2, 1e-3) for size in (2, 8, 16, 30)]
    tables = tables_from_pmfs(pmfs, [-1, -4, -8, -15])
    values, ids = random_message(rng, tables, 80, escape_rate=0)
    values[[5, 40]] = [-(2**31), 99]
    return values, ids, tables, encode(values, ids, tables, 5)


def test_every_truncation_is_a_format_error():
    values, ids, tables, data = small_stream()
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            decode_strictly(data[:cut], ids, tables)


def test_extra_bytes_and_bad_headers_are_format_errors():
    values, ids, tables, data = small_stream()
    k, e = struct.unpack_from("<HI", data)
    rest = data[6:]
    for bad in [
        data + b"\0\0",
        data + b"\0",
        struct.pack("<HI", 0, e) + rest,
        struct.pack("<HI", len(ids) + 1, e) + rest,
        struct.pack("<HI", 0xFFFF, e) + rest,
        struct.pack("<HI", k, 2**32 - 1) + rest,
        struct.pack("<HI", k, e + 1) + rest,
        struct.pack("<HI", k, e - 1) + rest,
        struct.pack("<HI", k, e + 1) + struct.pack("<i", 10**6) + rest,  # one escape too many
        struct.pack("<HI", k, e - 1) + rest[4:],  # one too few
        data[:6] + struct.pack("<i", 0) + data[10:],  # an escape its table could code
        data[: 6 + 4 * e] + struct.pack("<I", 5) + data[10 + 4 * e :],
    ]:
        with pytest.raises(FormatError):
            decode_strictly(bad, ids, tables)



def test_the_edges_of_the_stream_checks():
    """Each bound at its edge (FORMAT.md): a lane state of 2**16 - 1 is refused, one of 2**16 is
    not refused for its state; an escape of the highest value its table codes (offset + size - 2)
    is refused, one just beyond it is not refused for that."""
    values, ids, tables, data = small_stream()
    k, e = struct.unpack_from("<HI", data)
    states_at = 6 + 4 * e
    with pytest.raises(FormatError, match=r"lane state below 2\*\*16"):
        decode_strictly(data[:states_at] + struct.pack("<I", 0xFFFF) + data[states_at + 4:], ids, tables)
    with pytest.raises(FormatError) as caught:
        decode_strictly(data[:states_at] + struct.pack("<I", 0x10000) + data[states_at + 4:], ids, tables)
    assert "below 2**16" not in str(caught.value)
    table = int(ids[5])  # the first escaped value, -2**31, is the first in the list
    top = int(tables.offsets[table] + tables.sizes[table] - 2)
    with pytest.raises(FormatError, match="escapes a value its table can code"):
        decode_strictly(data[:6] + struct.pack("<i", top) + data[10:], ids, tables)
    beyond = values.copy()
    beyond[5] = top + 1
    assert np.array_equal(decode_strictly(data[:6] + struct.pack("<i", top + 1) + data[10:], ids, tables), beyond)


def test_default_lanes_is_pinned_as_format_md_gives_it():
    """The lane count is part of what the encoder writes (and min_lanes of what a decoder takes):
    round(sqrt(count / 72)), not floor."""
    assert default_lanes(934) == 4  # sqrt(12.97) = 3.6
    assert default_lanes(48 * 32 * 192) == 64 and default_lanes(10**9) == 1024

def test_bit_flips_never_crash_and_are_caught_outside_the_escapes():
    values, ids, tables, data = small_stream()
    n_escapes = struct.unpack_from("<I", data, 2)[0]
    escapes = range(6, 6 + 4 * n_escapes)  # raw values: a flip there may go unnoticed
    rng = np.random.default_rng(23)
    outside = caught = 0
    for _ in range(400):
        corrupt = bytearray(data)
        flips = rng.choice(8 * len(data), size=int(rng.integers(1, 4)), replace=False)
        for bit in flips:
            corrupt[bit // 8] ^= 1 << (bit % 8)
        counts = all(bit // 8 not in escapes for bit in flips)
        outside += counts
        try:
            out = decode_strictly(bytes(corrupt), ids, tables)
        except FormatError:
            caught += counts
        else:
            assert out.shape == values.shape and out.dtype == np.int32
    assert outside > 200
    assert caught >= 0.98 * outside


def test_wrong_table_ids_never_crash():
    values, ids, tables, data = small_stream()
    rng = np.random.default_rng(24)
    for _ in range(50):
        other = rng.integers(0, tables.n_tables, len(ids))
        try:
            decode_strictly(data, other, tables)
        except FormatError:
            pass
    with pytest.raises(FormatError):
        decode_strictly(data, ids[:-1], tables)


# -- size against the information content --------------------------------------------


def gaussian_tables(scales: np.ndarray) -> tuple[Tables, list[np.ndarray]]:
    """Tables of round(N(0, s**2)) for each scale, as export builds them (at most +-127)."""
    phi = np.vectorize(lambda t: 0.5 * math.erfc(-t / math.sqrt(2)))
    pmfs, offsets = [], []
    for s in scales:
        half = min(max(1, math.ceil(6.109 * s)), 127)  # 6.109: the normal quantile of a 1e-9 tail / 2
        v = np.abs(np.arange(-half, half + 1, dtype=np.float64))
        pmf = phi((0.5 - v) / s) - phi((-0.5 - v) / s)
        pmfs.append(np.append(pmf, max(0.0, 1.0 - math.fsum(pmf))))
        offsets.append(-half)
    return tables_from_pmfs(pmfs, offsets), pmfs


def test_kodak_size_latent_is_within_one_percent_of_its_information(record_property):
    rng = np.random.default_rng(25)
    table_scales = np.exp(np.linspace(math.log(0.11), math.log(64), 64))
    tables, pmfs = gaussian_tables(table_scales)
    n = 48 * 32 * 192
    scales = np.exp(rng.uniform(math.log(0.11), math.log(8), n))
    ids = np.minimum(np.searchsorted(table_scales, scales), 63)
    index = np.empty(n, dtype=np.int64)
    for t in np.unique(ids):
        where = np.flatnonzero(ids == t)
        index[where] = rng.choice(len(pmfs[t]), size=len(where), p=pmfs[t] / math.fsum(pmfs[t]))
    values = np.where(index == tables.sizes[ids] - 1, tables.offsets[ids] - 1, tables.offsets[ids] + index)

    data = round_trip(values.astype(np.int32), ids, tables)
    cdf = tables.cdf.astype(np.int64)
    escapes = 32 * np.count_nonzero(index == tables.sizes[ids] - 1)
    quantized = np.sum(16 - np.log2(cdf[ids, index + 1] - cdf[ids, index])) + escapes
    probs = np.zeros((64, 256))
    for t, p in enumerate(pmfs):
        probs[t, : len(p)] = p / math.fsum(p)
    floating = -np.sum(np.log2(probs[ids, index])) + escapes
    over_q, over_f = 8 * len(data) / quantized - 1, 8 * len(data) / floating - 1
    record_property("overhead_vs_quantized", float(over_q))  # plain floats: a report crosses processes (xdist)
    record_property("overhead_vs_float", float(over_f))
    print(f"{len(data)} bytes: {100 * over_q:+.3f}% vs quantized, {100 * over_f:+.3f}% vs float pmfs")
    assert 0 < over_q < 0.01
    assert 0 < over_f < 0.01


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_tables_derive_their_lookups_without_a_lock_a_forked_child_would_inherit(monkeypatch):
    """A child process made by fork while another thread derived some tables' lookups must
    derive its own: functools.cached_property (before Python 3.12) held one lock for every
    instance while it derived, and the child, which has that lock but not the thread, waited
    for it for ever."""
    import threading
    import time

    rng = np.random.default_rng(3)
    tables, other = random_tables(rng), random_tables(rng)
    started, release = threading.Event(), threading.Event()
    derive = rans._Coding.__init__

    def slowly(self, of):
        if of is other:
            started.set()
            release.wait(30)
        derive(self, of)

    monkeypatch.setattr(rans._Coding, "__init__", slowly)
    thread = threading.Thread(target=lambda: other._coding)
    thread.start()
    try:
        assert started.wait(30)
        with warnings.catch_warnings():  # Python 3.12+: "this process is multi-threaded" (the point here)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os._exit(0 if decode(encode(np.array([1, 2]), np.array([0, 1]), tables), np.array([0, 1]), tables)
                     .tolist() == [1, 2] else 3)
        for _ in range(600):  # a minute
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = None
    finally:
        release.set()
        thread.join()
    assert status is not None and os.waitstatus_to_exitcode(status) == 0
    assert tables._coding is tables._coding and other._coding is other._coding
    assert tables.code_lengths is tables.code_lengths
