"""The restoration filter: a linear filter that the encoder fits to each image, knowing its
source, and the decoder applies to the synthesis's picture, in integers (the ``REST`` section of
FORMAT.md).

The synthesis is the same network for every picture; what it gets wrong in one picture (a
little blur, a tint in the shadows) is partly linear and particular to that picture, which a
filter fitted by least squares on the picture itself undoes, for the bits of its
coefficients. It is AV1's Wiener "loop restoration" in kind (Mukherjee et al., "A switchable
loop restoration with side-information framework for the emerging AV1 video codec", ICIP 2017),
one filter per picture and colour channel, in the difference form of adaptive loop filters
(each tap weighs a neighbour's difference from the centre, so that rounding the coefficients
costs in proportion to the picture's local differences, not to its values). Each output
channel sees a 7x7 window of its own channel and a 3x3 window of each other channel, both
point-symmetric (a tap and its mirror share a coefficient), the other channels' centre
difference, its own centre less 128 (a gain) and an offset: 36 integers a channel, in steps of
2^-``shift``. The encoder chooses the shift for each picture and rounds each coefficient to
whichever integer near it costs least, its code's bits against the squares it leaves
(:func:`fit_cheapest`), and keeps the filter only where it lowers the file's rate-distortion
cost, bits per pixel plus lambda times the MSE, its section's bits counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from .distortion import squared_error
from .errors import FormatError

OWN_RADIUS = 3
CROSS_RADIUS = 1


def _half_window(radius: int) -> tuple[tuple[int, int], ...]:
    """One offset of each point-symmetric pair of a (2r+1)^2 window, centre excluded, row by row."""
    return tuple((dy, dx) for dy in range(radius + 1) for dx in range(-radius, radius + 1)
                 if dy > 0 or dx > 0)


OWN_TAPS = _half_window(OWN_RADIUS)  # 24
CROSS_TAPS = _half_window(CROSS_RADIUS)  # 4
PER_CHANNEL = len(OWN_TAPS) + 2 * (len(CROSS_TAPS) + 1) + 2  # 36
COEFFICIENTS = 3 * PER_CHANNEL  # 108
MAX_COEFFICIENT = 2**15 - 1
SHIFTS = range(2, 15)
"""Allowed shifts: the offset is in steps of 2^(shift - 2), a quarter of a level."""
FIT_SHIFT = 9
"""The shift :func:`fit` rounds at by default (of 7 to 10 on 6 Kodak images, 9 and 10 cost the least)."""
CHOSEN_SHIFTS = range(3, 12)
"""The shifts the encoder chooses among, image by image (:func:`fit_cheapest`)."""
_STRIP = 128
_COLUMNS = 2048
"""Windows of up to ``_STRIP`` rows (16 for the fit) by ``_COLUMNS`` columns are filtered or
fitted at a time: the temporaries are a window's, not the picture's, however wide it is."""
_BAND = 16
_PIECE = 128
"""Columns of the fit's features multiplied at a time (:func:`_products`): OpenBLAS computes a
product of m x n x k up to 262,144 multiply-adds on the calling thread (36 x 37 x 128 is 170,496)."""
FIT_PIXELS = 2_097_152
"""A picture of twice this many pixels or more is fitted on bands of 16 rows, one in
``pixels // FIT_PIXELS``, spread evenly (a fit costs about 0.38 microseconds a pixel on 2 cores).
Smaller ones are fitted on every pixel: on Kodak, one band in three lost 0.004 to 0.016 dB on
5 images and turned kodim23's gain into a loss (which the encoder's check would then refuse)."""


def _channel_terms(c: int) -> tuple[tuple[int, int, int] | None, ...]:
    """Channel ``c``'s terms in coefficient order (FORMAT.md): ``(o, dy, dx)``, a tap of
    channel ``o``, ``P[o](y + dy, x + dx) + P[o](y - dy, x - dx) - 2P[o](y, x)``; ``(o, 0, 0)``,
    ``P[o](y, x) - C``; ``None``, ``C - 128``."""
    terms: list[tuple[int, int, int] | None] = [(c, dy, dx) for dy, dx in OWN_TAPS]
    for o in range(3):
        if o != c:
            terms += [(o, dy, dx) for dy, dx in CROSS_TAPS] + [(o, 0, 0)]
    return tuple(terms + [None])


_TERMS = tuple(_channel_terms(c) for c in range(3))
"""Each channel's terms (:func:`_channel_terms`), built once."""


def _at(padded: np.ndarray, channel: int, dy: int, dx: int) -> np.ndarray:
    """Channel ``channel`` of the window ``padded`` (as :func:`_window` gives it) moved by
    ``(dy, dx)``: the value at ``(y + dy, x + dx)`` for each pixel ``(y, x)`` of the window."""
    r = OWN_RADIUS
    rows, columns = padded.shape[0] - 2 * r, padded.shape[1] - 2 * r
    return padded[r + dy : r + dy + rows, r + dx : r + dx + columns, channel]


def _features(padded: np.ndarray, c: int) -> Iterator[np.ndarray]:
    """Channel ``c``'s features for a window of the picture, one at a time in coefficient order
    (int32, each ``(rows, columns)``); ``padded`` is the window as :func:`_window` gives it."""
    centre = _at(padded, c, 0, 0)
    for term in _TERMS[c]:
        if term is None:
            yield centre - 128
            continue
        o, dy, dx = term
        if dy == dx == 0:
            yield _at(padded, o, 0, 0) - centre
        else:
            yield _at(padded, o, dy, dx) + _at(padded, o, -dy, -dx) - 2 * _at(padded, o, 0, 0)


def _window(rgb: np.ndarray, top: int, rows: int, left: int, columns: int) -> np.ndarray:
    """``rows`` x ``columns`` of the picture from ``(top, left)`` as int32, with ``OWN_RADIUS``
    rows and columns more on each side, those beyond the picture's edges repeating its nearest
    (FORMAT.md's clamping)."""
    r = OWN_RADIUS
    height, width = rgb.shape[:2]
    row_index = np.clip(np.arange(top - r, top + rows + r), 0, height - 1)
    column_index = np.clip(np.arange(left - r, left + columns + r), 0, width - 1)
    return np.take(rgb[row_index], column_index, axis=1).astype(np.int32)  # rows outermost, as rgb


def _windows(height: int, width: int, rows: int, row_stride: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """``(top, rows, left, columns)`` of windows of at most ``rows`` x ``_COLUMNS`` covering the
    picture (every ``row_stride``-th band of rows only), so that a very wide picture's
    temporaries stay a window's."""
    for top in range(0, height, rows * row_stride):
        for left in range(0, width, _COLUMNS):
            yield top, min(rows, height - top), left, min(_COLUMNS, width - left)


def apply(rgb: np.ndarray, coefficients: np.ndarray, shift: int) -> np.ndarray:
    """The filtered picture: ``rgb`` (H, W, 3) uint8, ``coefficients`` (3, 36) integers, as
    FORMAT.md's ``REST`` section defines it (every sum fits in 32 bits).

    Each tap's pair of neighbours is weighed as it comes, and what the terms take of each
    channel's centre (``-2C``, ``P[o](y, x) - C``, ``C - 128``) is gathered into one weight a
    plane: fewer passes over the picture than the terms one by one (:func:`_features`), the
    same integers (int32 arithmetic wraps, so the order of the additions cannot change a
    total that fits)."""
    coefficients = np.asarray(coefficients, dtype=np.int64).reshape(3, PER_CHANNEL)
    out = np.empty_like(rgb)
    for top, rows, left, columns in _windows(*rgb.shape[:2], _STRIP):
        padded = _window(rgb, top, rows, left, columns)
        acc = np.empty((rows, columns), dtype=np.int32)
        pair = np.empty((rows, columns), dtype=np.int32)
        for c in range(3):
            a = [int(v) for v in coefficients[c]]
            acc.fill((1 << (shift - 1)) + (a[-1] << (shift - 2)) - 128 * a[-2])  # the offset, -128 of C - 128
            centres = [0, 0, 0]  # the weight of each channel's own value at (y, x)
            for weight, term in zip(a, _TERMS[c]):
                if not weight:
                    continue
                if term is None:  # C - 128
                    centres[c] += weight
                    continue
                o, dy, dx = term
                if dy == dx == 0:  # P[o](y, x) - C
                    centres[o] += weight
                    centres[c] -= weight
                    continue
                np.add(_at(padded, o, dy, dx), _at(padded, o, -dy, -dx), out=pair)
                pair *= np.int32(weight)
                acc += pair
                centres[o] -= 2 * weight
            for o, weight in enumerate(centres):
                if weight:
                    np.multiply(_at(padded, o, 0, 0), np.int32(weight), out=pair)
                    acc += pair
            acc >>= shift
            acc += _at(padded, c, 0, 0)
            out[top : top + rows, left : left + columns, c] = np.clip(acc, 0, 255)
    return out


def normal_equations(decoded: np.ndarray, source: np.ndarray, seen: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The least-squares problem of bringing ``decoded`` closest to ``source`` (both (H, W, 3)
    uint8; ``seen``: (H, W) bool, the pixels that count, None for all), per channel: the
    features' Gram matrix (3, 36, 36), their moments with the error to undo (3, 36) and that
    error's sum of squares (3,), all float64. A filter with real coefficients ``w`` (a
    channel's, the offset in levels) leaves ``energy - 2 w.moment + w.gram.w`` of squares."""
    height, width = decoded.shape[:2]
    gram = np.zeros((3, PER_CHANNEL, PER_CHANNEL))
    moment = np.zeros((3, PER_CHANNEL))
    energy = np.zeros(3)
    stride = max(1, height * width // FIT_PIXELS)
    x = np.empty((PER_CHANNEL, _BAND * min(width, _COLUMNS)), dtype=np.float32)  # exact: integers within +-510
    for top, rows, left, columns in _windows(height, width, _BAND, stride):
        part = (slice(top, top + rows), slice(left, left + columns))
        mask = None if seen is None else seen[part].ravel()
        padded = _window(decoded, top, rows, left, columns)
        for c in range(3):
            band = x[:, : rows * columns]
            for i, feature in enumerate(_features(padded, c)):
                band[i].reshape(rows, columns)[...] = feature
            band[-1] = 1.0
            target = (source[part][:, :, c].astype(np.int32) - decoded[part][:, :, c]).ravel()
            if mask is not None:
                band, target = band[:, mask], target[mask]
            products = _products(band, target.astype(np.float32))
            gram[c] += products[:, :-1]
            moment[c] += products[:, -1]
            energy[c] += float(np.einsum("i,i->", target, target, dtype=np.int64))
    return gram, moment, energy


def _products(band: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``band @ band.T`` beside ``band @ target`` ((36, n) and (n,) float32) as (36, 37) float64:
    sums over pieces of ``_PIECE`` columns in float32 (relative errors of about 1e-7), of the
    pieces in float64. A product that small OpenBLAS computes on the calling thread; a larger
    one it shares among its threads, which beside a PyTorch training job on the same 2 cores
    made each take up to 300 times as long (a Kodak fit 0.14 s -> 22 s)."""
    n = band.shape[1]
    pieces = -(-n // _PIECE)
    both = np.zeros((PER_CHANNEL + 1, pieces * _PIECE), dtype=np.float32)
    both[:-1, :n] = band
    both[-1, :n] = target
    split = both.reshape(PER_CHANNEL + 1, pieces, _PIECE).transpose(1, 0, 2)
    return np.matmul(split[:, :-1], split.transpose(0, 2, 1)).sum(axis=0, dtype=np.float64)


def solve(gram: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """The real coefficients (3, 36) of the least-squares filter (the offset in levels)."""
    out = np.zeros((3, PER_CHANNEL))
    for c in range(3):
        # A little ridge: a flat picture gives features that are all 0 (a singular system).
        scale = max(float(np.trace(gram[c])) / PER_CHANNEL, 1.0)
        out[c] = np.linalg.solve(gram[c] + 1e-9 * scale * np.eye(PER_CHANNEL), moment[c])
    return out


def quantize(solution: np.ndarray, shift: int) -> np.ndarray:
    """``solution``'s integers at ``shift``: the taps in steps of 2^-shift, the offset in quarter levels."""
    steps = np.concatenate([solution[:, :-1] * 2.0**shift, solution[:, -1:] * 4.0], axis=1)
    return np.clip(np.round(steps), -MAX_COEFFICIENT, MAX_COEFFICIENT).astype(np.int32)


def dequantize(coefficients: np.ndarray, shift: int) -> np.ndarray:
    """What ``coefficients`` at ``shift`` weigh each feature by (the offset in levels)."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    return np.concatenate([coefficients[:, :-1] / 2.0**shift, coefficients[:, -1:] / 4.0], axis=1)


def fit(decoded: np.ndarray, source: np.ndarray, shift: int = FIT_SHIFT,
        seen: np.ndarray | None = None) -> np.ndarray:
    """The least-squares coefficients, rounded to steps of 2^-``shift``, that bring
    ``decoded`` closest to ``source`` (both (H, W, 3) uint8; ``seen``: (H, W) bool, the pixels
    that count, None for all): (3, 36) int32."""
    return quantize(solve(*normal_equations(decoded, source, seen)[:2]), shift)


def fit_cheapest(decoded: np.ndarray, source: np.ndarray, bits_per_square: float,
                 seen: np.ndarray | None = None, shifts: Iterable[int] = CHOSEN_SHIFTS) -> tuple[np.ndarray, int]:
    """``(coefficients, shift)``: the least-squares filter at whichever of ``shifts`` gives
    the lowest cost, its payload's bits plus ``bits_per_square`` times the squares it leaves,
    each coefficient rounded to the integer (its nearest two or 0) that costs least. The
    squares are read from the normal equations, without the rounding of the filtered pixels to
    integers, which is about the same at every shift."""
    gram, moment, energy = normal_equations(decoded, source, seen)
    solution = solve(gram, moment)
    costs = {shift: _rounded(solution, shift, gram, moment, energy, bits_per_square) for shift in shifts}
    shift = min(costs, key=lambda s: costs[s][0])
    return costs[shift][1], shift


def payload_if_it_pays(decoded: np.ndarray, source: np.ndarray, lmbda: float, gray: bool = False,
                       seen: np.ndarray | None = None, overhead: int = 0) -> bytes | None:
    """The payload of the filter :func:`fit_cheapest` fits to bring ``decoded`` closer to
    ``source`` (both (H, W, 3) uint8), or None where it would not lower the file's cost: bits
    per pixel (its payload's and ``overhead`` bytes more, the section's entry in the file) plus
    ``lmbda`` times the MSE (0..255 scale) of what a decoder returns (for a grayscale file,
    ``gray``, the luma), over the pixels where ``seen`` ((H, W) bool) is true when given."""
    height, width = decoded.shape[:2]
    counted = height * width if seen is None else int(np.count_nonzero(seen))
    if counted == 0:
        return None
    coefficients, shift = fit_cheapest(decoded, source, lmbda * height * width / (3 * counted), seen)
    if not coefficients.any():
        return None
    payload = pack(coefficients, shift)
    filtered = apply(decoded, coefficients, shift)
    values = (1 if gray else 3) * counted
    saved = lmbda * (squared_error(decoded, source, gray, seen) - squared_error(filtered, source, gray, seen)) / values
    spent = 8 * (len(payload) + overhead) / (height * width)
    return payload if saved > spent else None


def _code_number(value: int) -> int:
    """The signed exp-Golomb code number of ``value``: 0, 1, -1, 2, -2 ... -> 0, 1, 2, 3, 4 ..."""
    return 2 * value - 1 if value > 0 else -2 * value


def _code_bits(value: int) -> int:
    """The bits of ``value``'s signed exp-Golomb code."""
    return 2 * (_code_number(value) + 1).bit_length() - 1


def _rounded(solution: np.ndarray, shift: int, gram: np.ndarray, moment: np.ndarray, energy: np.ndarray,
             bits_per_square: float) -> tuple[float, np.ndarray]:
    """``(cost, coefficients)``: ``solution`` at ``shift``, each coefficient in turn (two
    passes, the others held) set to whichever of the two integers nearest it, 0, or its value
    so far costs least: its code's bits plus ``bits_per_square`` times the squares left."""
    coefficients = quantize(solution, shift)
    unit = dequantize(np.ones((1, PER_CHANNEL)), shift)[0]
    cost = 8.0  # the shift byte
    for c in range(3):
        w = coefficients[c] * unit
        leaning = gram[c] @ w - moment[c]  # half the gradient of the squares in w
        for _ in range(2):
            for k in range(PER_CHANNEL):
                now = int(coefficients[c, k])
                near = int(np.floor(solution[c, k] / unit[k]))
                best, best_change = now, 0.0
                for value in (near, near + 1, 0):
                    if value == now or abs(value) > MAX_COEFFICIENT:
                        continue
                    delta = (value - now) * unit[k]
                    squares = 2 * delta * leaning[k] + delta * delta * gram[c, k, k]
                    change = _code_bits(value) - _code_bits(now) + bits_per_square * squares
                    if change < best_change:
                        best, best_change = value, change
                if best != now:
                    delta = (best - now) * unit[k]
                    leaning += delta * gram[c, :, k]
                    w[k] += delta
                    coefficients[c, k] = best
        cost += sum(_code_bits(int(v)) for v in coefficients[c])
        cost += bits_per_square * (energy[c] - 2 * w @ moment[c] + w @ gram[c] @ w)
    return cost, coefficients


# -- the section's payload: the shift, then the coefficients as signed exp-Golomb codes --------


def pack(coefficients: np.ndarray, shift: int) -> bytes:
    """The ``REST`` payload of ``coefficients`` (3, 36) at ``shift``."""
    if shift not in SHIFTS:
        raise ValueError(f"shift {shift} outside {SHIFTS.start}..{SHIFTS.stop - 1}")
    bits = []
    for value in np.asarray(coefficients, dtype=np.int64).ravel():
        value = int(value)
        if abs(value) > MAX_COEFFICIENT:
            raise ValueError(f"coefficient {value} outside +-{MAX_COEFFICIENT}")
        code = _code_number(value)
        length = (code + 1).bit_length()
        bits.append("0" * (length - 1) + format(code + 1, "b"))
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return bytes([shift]) + int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else bytes([shift])


def unpack(payload: bytes) -> tuple[np.ndarray, int]:
    """``(coefficients (3, 36) int32, shift)`` of a ``REST`` payload; a payload that breaks
    FORMAT.md's rules is refused (FormatError)."""
    if not payload:
        raise FormatError("the REST section is empty")
    shift = payload[0]
    if shift not in SHIFTS:
        raise FormatError(f"the REST section's shift is {shift}, not {SHIFTS.start} to {SHIFTS.stop - 1}")
    total = 8 * (len(payload) - 1)
    number = int.from_bytes(payload[1:], "big")
    pos, values = 0, []

    def bit(i: int) -> int:
        return (number >> (total - 1 - i)) & 1

    for _ in range(COEFFICIENTS):
        zeros = 0
        while pos + zeros < total and bit(pos + zeros) == 0:
            zeros += 1
            if zeros > 16:
                raise FormatError("the REST section holds a coefficient beyond the allowed range")
        if pos + 2 * zeros + 1 > total:
            raise FormatError("the REST section ends inside its coefficients")
        code = 0
        for i in range(pos + zeros, pos + 2 * zeros + 1):
            code = 2 * code + bit(i)
        code -= 1
        value = (code + 1) // 2 if code % 2 else -(code // 2)
        if abs(value) > MAX_COEFFICIENT:
            raise FormatError(f"the REST section holds the coefficient {value}, beyond +-{MAX_COEFFICIENT}")
        values.append(value)
        pos += 2 * zeros + 1
    if total - pos >= 8 or (total > pos and number & ((1 << (total - pos)) - 1)):
        raise FormatError("the REST section has bytes or bits after its coefficients")
    return np.array(values, dtype=np.int32).reshape(3, PER_CHANNEL), shift
