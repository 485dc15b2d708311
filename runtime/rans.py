"""Lane-interleaved rANS entropy coding of integer symbols with frozen tables, in numpy.

Each symbol is coded with one of several integer CDF tables (:class:`Tables`).
Symbol ``i`` goes to lane ``i % lanes`` at step ``i // lanes``; the lanes are
independent rANS coders (32-bit states in ``[2**16, 2**32)``, 16-bit
renormalisation words, 16-bit frequencies) advanced together as numpy vectors,
so the Python loop runs once per step, not once per symbol. As in Giesen's
interleaved rANS, the words of all lanes share one stream, ordered so that the
decoder, at each step, reads one word for each lane that renormalises, in lane
order.

A value ``v`` coded with table ``t`` is the symbol ``v - offsets[t]`` when that
lies in ``[0, sizes[t] - 2]``; any other value is coded as the escape symbol
``sizes[t] - 1`` and stored raw in the stream's escape list.

Stream layout (all integers little-endian)::

    offset          size    field
    0               2       u16  K, the number of lanes (0 only when no symbols are coded)
    2               4       u32  E, the number of escaped values
    6               4*E     i32  the escaped values, in symbol order
    6 + 4E          4*K     u32  the encoder's final states, lane 0 first; the decoder
                                 starts from them
    6 + 4E + 4K     2*W     u16  the renormalisation words, to the end of the data, in
                                 decoding order: step 0 first, and within a step the
                                 lanes that renormalise in lane order

The encoder starts every lane at state ``2**16``, so a decoder that ends with
any lane elsewhere, or with words left over, has read a corrupt stream.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import FormatError, OutOfMemoryError

PRECISION = 16
"""Bits of the frequencies: every table's frequencies sum to ``2**PRECISION``."""

TOTAL = 1 << PRECISION
STATE_LOW = 1 << 16
"""Lower end of the coder state interval ``[2**16, 2**32)``; also every lane's initial state."""

WORD_BITS = 16
MAX_SYMBOLS = 256
"""Most symbols a table may have, escape included."""
MAX_TABLES = 1024
"""Most tables a set may hold: each costs 128 KiB of decoding lookup table, so a model folder
cannot make the decoder reserve gigabytes (the shipped model has 64 and 128)."""

MAX_LANES = 0xFFFF
HEADER = struct.Struct("<HI")

_BLOCK = 1 << 18
"""Symbols the coders work on at once: their temporaries are held for a block, not the stream."""

_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True, eq=False)
class Tables:
    """Frozen integer CDF tables, one per distribution a symbol may be coded with.

    The arrays are converted to the dtypes below, made read-only and validated on
    construction. The lookup tables the coder needs are derived on first use and
    cached on the object.

    Attributes:
        cdf: (n_tables, max_size + 1) uint32; ``cdf[t, 0] == 0``, strictly increasing
            up to ``cdf[t, sizes[t]] == 2**16``, padded with ``2**16`` after that.
        sizes: (n_tables,) int32, symbols per table including the final escape
            symbol, each in ``[2, 256]``.
        offsets: (n_tables,) int32, the integer value coded by symbol 0 of each table.

    Raises:
        ValueError: the arrays are malformed.
    """

    cdf: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in (("cdf", np.uint32), ("sizes", np.int32), ("offsets", np.int32)):
            array = np.asarray(getattr(self, name))
            if array.dtype.kind not in "iu":
                raise ValueError(f"Tables.{name} must hold integers, not {array.dtype}")
            if array.size and (array.min() < np.iinfo(dtype).min or array.max() > np.iinfo(dtype).max):
                raise ValueError(f"Tables.{name} has values outside the {np.dtype(dtype).name} range")
            array = np.array(array, dtype=dtype, order="C")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        self.validate()

    def validate(self) -> None:
        """Check the shapes and the CDFs.

        Raises:
            ValueError: naming the first problem found.
        """
        cdf, sizes, offsets = self.cdf, self.sizes, self.offsets
        if cdf.ndim != 2 or cdf.shape[0] < 1:
            raise ValueError(f"Tables.cdf must have shape (n_tables >= 1, max_size + 1), not {cdf.shape}")
        n = cdf.shape[0]
        if sizes.shape != (n,) or offsets.shape != (n,):
            raise ValueError(f"Tables.sizes and Tables.offsets must have shape ({n},)")
        if sizes.min() < 2 or sizes.max() > MAX_SYMBOLS:
            raise ValueError(f"table sizes must lie in [2, {MAX_SYMBOLS}]")
        if n > MAX_TABLES:
            raise ValueError(f"{n} tables, more than {MAX_TABLES}")
        if cdf.shape[1] > MAX_SYMBOLS + 1:
            raise ValueError(f"Tables.cdf has {cdf.shape[1]} columns, more than {MAX_SYMBOLS + 1}")
        if cdf.shape[1] < sizes.max() + 1:
            raise ValueError(f"Tables.cdf has {cdf.shape[1]} columns, too few for {sizes.max()} symbols")
        if np.any(offsets.astype(np.int64) + sizes - 2 > _INT32.max):
            raise ValueError("a table's values run past the int32 range")
        if np.any(cdf[:, 0] != 0):
            raise ValueError("every CDF must start at 0")
        if np.any(cdf[np.arange(n), sizes] != TOTAL):
            raise ValueError(f"every CDF must reach 2**{PRECISION} at its size")
        inside = np.arange(cdf.shape[1]) <= sizes[:, None]
        if np.any(cdf[~inside] != TOTAL):
            raise ValueError(f"every CDF must be padded with 2**{PRECISION} after its size")
        if np.any((np.diff(cdf.astype(np.int64), axis=1) <= 0) & inside[:, 1:]):
            raise ValueError("every symbol of a table must have a frequency of at least 1")

    @property
    def n_tables(self) -> int:
        return self.cdf.shape[0]

    @property
    def code_lengths(self) -> np.ndarray:
        """(n_tables, max_size) float64: the ideal code length in bits of each symbol
        (``-log2(frequency / 2**16)``; ``inf`` in the padding after a table's size)."""

        def lengths() -> np.ndarray:
            freq = np.diff(self.cdf.astype(np.int64), axis=1)
            with np.errstate(divide="ignore"):
                result = PRECISION - np.log2(freq)
            result.setflags(write=False)
            return result

        return self._derived("code_lengths", lengths)

    @property
    def _coding(self) -> _Coding:
        return self._derived("coding", lambda: _Coding(self))

    def _derived(self, name: str, make: Callable[[], Any]) -> Any:
        """What ``make`` derives from the tables, made at its first use and kept on the object.
        Without a lock, unlike ``functools.cached_property`` before Python 3.12: a child process
        that fork made while another thread held that lock (one lock for every instance) would
        wait for it for ever. Two threads that ask at once both make it, the same, and one is kept."""
        cache = self.__dict__.setdefault("_cache", {})
        value = cache.get(name)
        if value is None:
            try:
                made = make()
            except MemoryError as exc:  # part of loading the model, which smaller tiles do not change
                raise OutOfMemoryError.while_loading("the model's coding tables", str(exc)) from exc
            value = cache.setdefault(name, made)
        return value


class _Coding:
    """Flat per-symbol arrays and lookup tables derived from :class:`Tables`.

    The symbols of all tables are numbered globally (``base[t] + s``); one more,
    the last, is a padding symbol of frequency ``2**16`` that leaves a state
    unchanged, used to fill the lanes of the final, partial step.
    """

    def __init__(self, tables: Tables):
        sizes = tables.sizes.astype(np.int64)
        n_tables, n_symbols = len(sizes), int(sizes.sum())
        base = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        table = np.repeat(np.arange(n_tables), sizes)
        symbol = np.arange(n_symbols) - base[table]
        cdf = tables.cdf.astype(np.int64)
        self.pad = n_symbols
        self.pad_table = n_tables
        self.sizes = sizes
        self.offsets = tables.offsets.astype(np.int64)
        self.start = np.append(cdf[table, symbol], 0)
        self.freq = np.append(cdf[table, symbol + 1] - cdf[table, symbol], TOTAL)
        # The encoder works in uint32, where these all fit (the padding symbol included).
        self.encode_params = tuple(a.astype(np.uint32) for a in (self.freq, TOTAL - self.freq, self.start))
        self.escape = np.append(symbol == sizes[table] - 1, False)
        value = np.where(self.escape[:-1], 0, self.offsets[table] + symbol)
        self.value = np.append(value, 0).astype(np.int32)
        # Encoding: row t, column j + 1 holds the global symbol coding index j (clipped
        # to [-1, MAX_SYMBOLS - 1]), so out-of-range indices land on the escape.
        columns = np.arange(-1, MAX_SYMBOLS)
        inside = (columns >= 0) & (columns <= sizes[:, None] - 2)
        self.gid_of = np.where(inside, base[:, None] + columns, (base + sizes - 1)[:, None]).ravel().astype(np.int32)
        self.row_of = np.arange(n_tables) * (MAX_SYMBOLS + 1) + 1
        # Decoding: row t maps each slot in [0, 2**16) to the global symbol whose interval
        # holds it (128 KiB a table); row n_tables serves the padding symbol. Each table's
        # frequencies sum to 2**16, so one repeat fills all rows.
        dtype = np.uint16 if n_symbols + 1 <= 1 << 16 else np.uint32
        self.lut = np.repeat(np.arange(n_symbols + 1, dtype=dtype), self.freq)
        for array in vars(self).values():
            if isinstance(array, np.ndarray):
                array.setflags(write=False)


def tables_from_pmfs(pmfs: list[np.ndarray], offsets) -> Tables:
    """Quantize probability vectors to integer CDF tables.

    Each vector is normalised, scaled to ``2**16`` and rounded; then single counts
    are moved between symbols, those losing the fewest (or gaining the most) bits
    first, until the frequencies sum to ``2**16`` with none below 1. Only IEEE
    float64 arithmetic (+, -, *, /, rint) and stable sorts are used, so the
    result is the same on every machine.

    Args:
        pmfs: one float vector per table, 2 to 256 entries, whose last entry is the
            escape (tail) probability. Entries must be finite and non-negative with a
            positive sum; they need not sum to 1.
        offsets: (n_tables,) integers, the value coded by symbol 0 of each table.

    Returns:
        The frozen tables.

    Raises:
        ValueError: a vector or the offsets are malformed.
    """
    if len(pmfs) == 0:
        raise ValueError("tables_from_pmfs needs at least one pmf")
    offsets = np.asarray(offsets)
    if offsets.shape != (len(pmfs),):
        raise ValueError(f"offsets must have shape ({len(pmfs)},), not {offsets.shape}")
    sizes = np.array([np.size(p) for p in pmfs])
    if sizes.min() < 2 or sizes.max() > MAX_SYMBOLS:
        raise ValueError(f"every pmf must have 2 to {MAX_SYMBOLS} entries")
    cdf = np.full((len(pmfs), sizes.max() + 1), TOTAL, dtype=np.uint32)
    cdf[:, 0] = 0
    for t, pmf in enumerate(pmfs):
        cdf[t, 1 : sizes[t] + 1] = np.cumsum(quantize_pmf(pmf))
    return Tables(cdf, sizes, offsets)


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Integer frequencies for one probability vector (see :func:`tables_from_pmfs`).

    Args:
        pmf: 2 to 256 finite, non-negative floats with a positive sum.

    Returns:
        int64 frequencies, each at least 1, summing to ``2**16``.

    Raises:
        ValueError: the vector is malformed.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 1 or not 2 <= p.size <= MAX_SYMBOLS:
        raise ValueError(f"a pmf must be a vector of 2 to {MAX_SYMBOLS} entries, not shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("a pmf must hold finite, non-negative probabilities")
    try:
        total = math.fsum(p.tolist())  # exactly rounded, unlike np.sum's platform-tuned order
    except OverflowError:
        total = math.inf
    if not 0 < total < math.inf:
        raise ValueError("a pmf must have a positive, finite sum")
    p = p / total
    freq = np.maximum(np.rint(p * TOTAL), 1).astype(np.int64)
    excess = int(freq.sum()) - TOTAL
    # p / (f - 1/2) and p / (f + 1/2) are proportional to the bits p * log2(f / (f - 1))
    # lost by a decrement and p * log2((f + 1) / f) gained by an increment, within 4% at
    # f = 2 and 0.1% from f = 10; unlike np.log2 they round the same on every CPU.
    while excess > 0:
        cost = np.where(freq > 1, p / (freq - 0.5), np.inf)
        pick = np.argsort(cost, kind="stable")[:excess]
        pick = pick[freq[pick] > 1]
        freq[pick] -= 1
        excess -= len(pick)
    while excess < 0:
        pick = np.argsort(-(p / (freq + 0.5)), kind="stable")[:-excess]
        freq[pick] += 1
        excess += len(pick)
    return freq


def default_lanes(count: int) -> int:
    """The lane count :func:`encode` picks for ``count`` symbols.

    Each lane adds about 3 bytes (its 32-bit final state, of which some 8 bits on
    average carry information) and each step about 5 microseconds of numpy calls
    (encode plus decode). Valuing a byte at about 120 microseconds, their sum is
    least near ``sqrt(count / 72)`` lanes: 64 for the shipped model's latent of a 768x512
    image (48x32x192, 294,912 symbols), at most 1024.
    """
    return int(min(max(round(math.sqrt(count / 72)), 1), 1024, max(count, 1)))


def min_lanes(count: int) -> int:
    """The fewest lanes a stream of ``count`` symbols may use: an eighth of :func:`default_lanes`.

    Decoding costs about one numpy step per symbol of the longest lane, so a stream
    with very few lanes for many symbols (a tiny crafted file) could take minutes;
    this bound keeps every valid stream within 8 times the steps of the default.
    """
    return -(-default_lanes(count) // 8)


def encode(values: np.ndarray, table_ids: np.ndarray, tables: Tables, lanes: int | None = None) -> bytes:
    """Entropy-code integers, each with its own table.

    Args:
        values: (n,) integers within the int32 range.
        table_ids: (n,) integers in ``[0, tables.n_tables)``, the table of each value.
        tables: the frozen tables.
        lanes: interleaved coders, 1 to 65535 (at most ``n`` are used); ``None``
            picks :func:`default_lanes`.

    Returns:
        The stream (see the module docstring); 6 bytes when ``n == 0``.

    Raises:
        ValueError: the arguments are malformed.
    """
    values = _integer_vector(values, "values")
    ids = _table_ids(table_ids, tables)
    n = len(values)
    if len(ids) != n:
        raise ValueError(f"{n} values but {len(ids)} table ids")
    if n and not np.can_cast(values.dtype, np.int32):
        if values.min() < _INT32.min or values.max() > _INT32.max:
            raise ValueError("values must lie in the int32 range")
    if lanes is None:
        lanes = default_lanes(n)
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or not 1 <= lanes <= MAX_LANES:
        raise ValueError(f"lanes must be an integer in [1, {MAX_LANES}], not {lanes!r}")
    if n == 0:
        return HEADER.pack(0, 0)
    k = min(int(lanes), n)
    if k < min_lanes(n):
        raise ValueError(f"{n} symbols need at least {min_lanes(n)} lanes, not {k}")
    steps = -(-n // k)
    code = tables._coding

    # The global symbol of each value, a chunk at a time so that the int64 temporaries stay small.
    gid = np.full(steps * k, code.pad, dtype=np.int32)
    for first in range(0, n, _BLOCK):
        part = slice(first, min(first + _BLOCK, n))
        index = code.offsets.take(ids[part])
        np.subtract(values[part], index, out=index)
        np.clip(index, -1, MAX_SYMBOLS - 1, out=index)
        index += code.row_of.take(ids[part])
        code.gid_of.take(index, out=gid[part], mode="clip")  # in range; "clip" skips a buffered copy
    escapes = values[code.escape.take(gid[:n])].astype("<i4")
    gid = gid.reshape(steps, k)

    # The steps are coded from the last to the first, in blocks of about _BLOCK symbols: the
    # frequencies and states of one block at a time are held, not those of the whole stream.
    rows = max(_BLOCK // k, 1)
    state = np.full(k, STATE_LOW, dtype=np.uint32)
    blocks = []
    keep = np.empty(k, dtype=bool)
    x = np.empty(k, dtype=np.uint32)
    q = np.empty(k, dtype=np.uint32)
    shift = np.full(k, WORD_BITS, dtype=np.uint32)
    less, right_shift, putmask, floor_divide, multiply, add = (
        np.less, np.right_shift, np.putmask, np.floor_divide, np.multiply, np.add
    )
    for end in range(steps, 0, -rows):
        block = gid[max(end - rows, 0) : end]
        freq, gap, start = (param.take(block) for param in code.encode_params)
        # states[s + 1] is the state before step s of the block, so its words can be read off afterwards.
        states = np.empty((len(block) + 1, k), dtype=np.uint32)
        states[-1] = state
        for before, after, freq_s, gap_s, start_s in zip(
            states[:0:-1], states[-2::-1], freq[::-1], gap[::-1], start[::-1]
        ):
            # A state x >= f << 16 would leave [2**16, 2**32) after coding, so its low word goes
            # out first; one is always enough since x < 2**32. The padding symbol never does.
            right_shift(before, shift, x)
            less(x, freq_s, keep)
            putmask(x, keep, before)
            # C(x) = (x // f) << 16 + x % f + start  ==  x + (x // f) * (2**16 - f) + start < 2**32
            floor_divide(x, freq_s, q)
            multiply(q, gap_s, after)
            add(after, x, after)
            add(after, start_s, after)
        before = states[1:]
        blocks.append(before[(before >> WORD_BITS) >= freq].astype("<u2"))  # the low 16 bits
        state = states[0]
    return b"".join(
        [HEADER.pack(k, len(escapes)), escapes.tobytes(), state.astype("<u4").tobytes(), *(w.tobytes() for w in blocks[::-1])]
    )


def decode(data: bytes, table_ids: np.ndarray, tables: Tables) -> np.ndarray:
    """Decode a stream made by :func:`encode` with the same table ids and tables.

    Args:
        data: the stream (bytes, bytearray or memoryview).
        table_ids: (n,) integers in ``[0, tables.n_tables)``, the table of each value.
        tables: the frozen tables.

    Returns:
        (n,) int32 values.

    Raises:
        FormatError: the stream is truncated, corrupt or does not match the table ids.
        ValueError: the table ids are malformed.
        TypeError: ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
    data = bytes(data)
    ids = _table_ids(table_ids, tables)
    n = len(ids)
    if len(data) < HEADER.size:
        raise FormatError(f"rANS stream of {len(data)} bytes is shorter than its {HEADER.size}-byte header")
    k, n_escapes = HEADER.unpack_from(data)
    if n == 0:
        if k != 0 or n_escapes != 0 or len(data) != HEADER.size:
            raise FormatError("rANS stream for 0 symbols must be a bare header with 0 lanes and 0 escapes")
        return np.zeros(0, dtype=np.int32)
    if not min_lanes(n) <= k <= n:
        raise FormatError(f"rANS stream claims {k} lanes for {n} symbols (allowed: {min_lanes(n)} to {n})")
    if n_escapes > n:
        raise FormatError(f"rANS stream claims {n_escapes} escapes for {n} symbols")
    words_at = HEADER.size + 4 * n_escapes + 4 * k
    if words_at > len(data):
        raise FormatError(f"rANS stream of {len(data)} bytes is truncated: escapes and states need {words_at}")
    if (len(data) - words_at) % 2:
        raise FormatError("rANS stream has an odd number of bytes after its states")
    escapes = _read(data, "<i4", HEADER.size, n_escapes)
    x = _read(data, "<u4", HEADER.size + 4 * n_escapes, k).astype(np.int64)
    if np.any(x < STATE_LOW):
        raise FormatError("rANS stream has a lane state below 2**16")
    n_words = (len(data) - words_at) // 2
    words = _read(data, "<u2", words_at, n_words)
    code = tables._coding
    steps = -(-n // k)

    # A lane's state is kept as hi = x >> 16 and slot = x & 0xFFFF: reading a word is then
    # hi = x, slot = word, and the state x = (x << 16) | word is never formed.
    hi, slot = x >> WORD_BITS, x & (TOTAL - 1)
    lut, freq, start = code.lut, code.freq, code.start
    index = np.empty(k, dtype=np.int64)
    renorm = np.empty(k, dtype=bool)
    low_bits = np.full(k, TOTAL - 1, dtype=np.int64)
    shift = np.full(k, WORD_BITS, dtype=np.int64)
    low = np.full(k, STATE_LOW, dtype=np.int64)
    add, subtract, multiply, right_shift = np.add, np.subtract, np.multiply, np.right_shift
    bitwise_and, less, count_nonzero, putmask = np.bitwise_and, np.less, np.count_nonzero, np.putmask
    values = np.empty(steps * k, dtype=np.int32)
    escaped = np.empty(steps * k, dtype=bool)
    used = 0
    # Blocks of about _BLOCK symbols: the table rows and global symbols of one block are held at a time.
    rows = max(_BLOCK // k, 1)
    for first in range(0, steps, rows):
        span = slice(first * k, min(first + rows, steps) * k)
        row = np.full(span.stop - span.start, code.pad_table, dtype=np.int64)
        row[: max(min(span.stop, n) - span.start, 0)] = ids[span]
        row = (row << PRECISION).reshape(-1, k)
        gids = np.empty(row.shape, dtype=np.int64)
        for row_s, gid in zip(row, gids):
            add(slot, row_s, index)
            gid[:] = lut[index]
            # D(x) = f * (x >> 16) + slot - start lies in [f * hi, f * hi + f), so in
            # [1, 2**32) whatever the data.
            multiply(hi, freq[gid], x)
            add(x, slot, x)
            subtract(x, start[gid], x)
            right_shift(x, shift, hi)
            bitwise_and(x, low_bits, slot)
            less(x, low, renorm)
            r = count_nonzero(renorm)
            if r:
                if used + r > n_words:
                    raise FormatError("rANS stream ends before its last symbol")
                putmask(hi, renorm, x)
                slot[renorm] = words[used : used + r]
                used += r
        code.value.take(gids, out=values[span].reshape(gids.shape))
        code.escape.take(gids, out=escaped[span].reshape(gids.shape))
    if used != n_words:
        raise FormatError(f"rANS stream has {n_words - used} words left after its last symbol")
    if np.any((hi << WORD_BITS) + slot != STATE_LOW):
        raise FormatError("rANS stream is corrupt: a lane did not end in its initial state")

    values, escaped = values[:n], escaped[:n]
    found = np.count_nonzero(escaped)
    if found != n_escapes:
        raise FormatError(f"rANS stream lists {n_escapes} escaped values but codes {found} escape symbols")
    if found:
        symbol = escapes - code.offsets[ids[escaped]]
        if np.any((symbol >= 0) & (symbol <= code.sizes[ids[escaped]] - 2)):
            raise FormatError("rANS stream escapes a value its table can code")
        values[escaped] = escapes
    return values


def _read(data: bytes, dtype: str, offset: int, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset)


def _integer_vector(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, not of shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, not {array.dtype}")
    if array.dtype == np.uint64:
        # Mixing uint64 with int64 would promote to float64.
        if array.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has values beyond the int64 range")
        return array.astype(np.int64)
    return array


def _table_ids(table_ids, tables: Tables) -> np.ndarray:
    ids = _integer_vector(table_ids, "table_ids")
    if ids.size and (ids.min() < 0 or ids.max() >= tables.n_tables):
        raise ValueError(f"table ids must lie in [0, {tables.n_tables})")
    return ids if np.can_cast(ids.dtype, np.intp) else ids.astype(np.intp)
