"""Rate control: encode to a target size, bits per pixel or PSNR by searching the quality.

    >>> import nicodec
    >>> codec = nicodec.Codec()
    >>> result = nicodec.encode_to_target(codec, "photo.png", max_bytes=20_000)
    >>> result.data, result.quality, result.bpp, result.met

A variable-rate model's file grows with its quality (1 to 100, continuous; a photo's
monotonically at whole-number steps, within a few bytes between them, while a small or flat
image's can fall by a few bytes from one step to the next), and so does the decoded PSNR, so each target is met by a one-dimensional search on the
quality: secant steps on log(file size) (or on PSNR), which is close to linear in the
quality, inside a bracket that shrinks by at least a tenth per step, with a bounded number
of encodes. The file returned is one of the files made during the search, so its header
records the quality it was made at, and ``codec.encode(image, quality=result.quality)``
makes it again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import format as nicformat
from .codec import Codec
from .errors import NicodecError, QualityError
from .inputs import ImageSource, Real, Strip, Whole, check_flags, stripped_kinds
from .images import image_bytes, is_binary_file, is_buffer, open_image, open_image_bytes, read_binary_file, read_picture
from .metadata import said_once
from .model import QUALITY_MAX, QUALITY_MIN, is_real_number
from .progress import check_progress

MAX_ENCODES = 8
"""Default bound on the encodes of one search (a PSNR target decodes each file too)."""

BPP_TOLERANCE = 0.01
"""A bits-per-pixel target is met within this fraction of it."""

BYTES_TOLERANCE = 0.01
"""A ``max_bytes`` search stops early at a file this close below the limit (a fraction of it)."""

PSNR_TOLERANCE = 0.05
"""A PSNR search stops early at a file this many dB above the target."""

MAX_BYTES_TARGET = 1 << 62
"""A ``max_bytes`` limit above this is taken as this one: no file comes near it (the format
reads at most ``nicodec.format.MAX_FILE_BYTES``), and the search's logarithms and tolerances
of a larger whole number would leave a float's range (``2**1024`` overflowed)."""

LOW_PROBE_BYTES = 16
"""A ``max_bytes`` limit that quality 1's file misses by at most this many bytes is tried at the
qualities :data:`LOW_PROBES` too, while encodes are left (sizes that close are not monotonic)."""

LOW_PROBES = (2.0, 3.0, 4.0, 6.0, 8.0)

QUALITY_DECIMALS = 2
"""Searched qualities are rounded to this many decimals, so the reported value reproduces the file."""

# Priors for the first step, before two files give a measured slope: on Kodak, log(bpp) grows
# by about 0.018 per quality step (0.235 bpp at 1, 1.35 at 100) and PSNR by 0.03 to 0.09 dB.
_LOG_RATE_SLOPE = 0.018
_PSNR_SLOPE = 0.05
_MIN_STEP = 0.5
_OVERSHOOT = 1.25  # extrapolate a little past the target, so the next file brackets it


@dataclass(frozen=True)
class RateResult:
    """What :func:`encode_to_target` made.

    Attributes:
        data: the ``.nic`` file's bytes.
        quality: the quality it was coded at, with at most ``QUALITY_DECIMALS`` decimals
            (its header records it as a float32; ``codec.encode(image, quality=quality)``,
            with the same ``strip`` and ``exact``, makes the same file).
        bpp: its bits per pixel (the whole file, metadata sections included).
        psnr: its PSNR in dB against the source pixels (the visible ones, unless ``exact``),
            for a PSNR target; else ``None``.
        met: whether the target was met (a ``bpp`` target: within ``BPP_TOLERANCE``).
        encodes: how many encodes the search made.
    """

    data: bytes = field(repr=False)  # a log line need not hold the whole file
    quality: float
    bpp: float
    psnr: float | None
    met: bool
    encodes: int


@dataclass(frozen=True)
class _Trial:
    """One file the search made."""

    quality: float
    data: bytes
    bpp: float
    psnr: float | None


def encode_to_target(
    codec: Codec,
    image: ImageSource,
    *,
    bpp: Real | None = None,
    psnr: Real | None = None,
    max_bytes: Whole | None = None,
    strip: Strip = False,
    exact: bool = False,
    max_encodes: Whole = MAX_ENCODES,
    progress: Callable[[int, int, int], object] | None = None,
) -> RateResult:
    """Encode an image at the quality that meets one target; give exactly one of them.

    Args:
        codec: a :class:`nicodec.Codec` with a variable-rate model.
        image: as for ``Codec.encode``; a path or bytes is read once.
        bpp: the bits per pixel to come closest to (the whole file, as ``8 * bytes /
            pixels``). Outside the model's reach for this image, the closest file found is
            returned, with ``met`` false: that of quality 1 or 100, unless the image is so
            small or flat that its size hardly changes with the quality.
        psnr: the PSNR in dB to reach with the smallest file: the lowest quality whose
            decoded picture has at least this PSNR against the source's RGB pixels (for a
            grayscale source, its one channel against the decoded luma; alpha is lossless
            and left out, and so are the fully transparent pixels unless ``exact``).
            Each file is decoded to measure it. Out of reach, the best file found is
            returned, with ``met`` false.
        max_bytes: the largest file allowed: the highest quality whose file has at most
            this many bytes.
        strip, exact: as for ``Codec.encode``.
        max_encodes: the most encodes (and, for ``psnr``, decodes) the search makes; 8 by
            default. A target is usually met in 2 to 6; the search also stops when the
            target lies beyond quality 1 or 100, or the quality is pinned down to 0.02.
        progress: called as each encode of the search goes with ``(done, total, encode)``:
            ``Codec.encode``'s ``progress`` (``done`` starts again with each encode) and the
            encode of the search, counted from 1. For ``psnr`` each encode's decode is counted
            too, after it: ``done`` runs on through the decode and ``total`` counts both (at the
            first encode it counts the decode as long as the encode until the decode starts and
            tells its own length).

    Returns:
        The file and what it reached.

    Raises:
        QualityError: not exactly one target, a target that is not a positive finite number,
            a ``max_encodes`` that is not a positive whole number, a single-rate model, a
            ``max_bytes`` that even quality 1 does not fit in, or a ``max_bytes`` that no file
            of the ``max_encodes`` made fits in.
        UnsupportedImageError, LimitError: as ``Codec.encode`` raises them.
        NicodecError: ``codec`` is not a ``Codec`` (the arguments swapped), ``progress`` is
            not callable, ``strip`` is neither a bool nor kinds of metadata, or ``exact`` is not
            a bool.
    """
    if not isinstance(codec, Codec):
        raise NicodecError(
            f"encode_to_target takes a nicodec.Codec first and the image second, not {type(codec).__name__}: "
            "encode_to_target(codec, image, bpp=...)"
        )
    check_progress(progress, ("done", "total", "encode"))
    check_flags(exact=exact)
    stripped_kinds(strip)
    given = {name: value for name, value in (("bpp", bpp), ("psnr", psnr), ("max_bytes", max_bytes)) if value is not None}
    if len(given) != 1:
        raise QualityError(f"encode_to_target takes exactly one of bpp, psnr and max_bytes, not {len(given)}")
    [(name, target)] = given.items()
    _check_target(name, target)
    # numpy's scalars too, so that met is a bool
    target = min(int(target), MAX_BYTES_TARGET) if name == "max_bytes" else float(target)
    if not codec.model.variable_rate:
        raise QualityError(
            f"the model {codec.model_id} is single-rate: it codes every image at the one rate it was "
            "trained for, so there is no rate to control"
        )
    if isinstance(max_encodes, bool) or not isinstance(max_encodes, (int, np.integer)) or max_encodes < 1:
        raise QualityError(f"max_encodes must be a positive whole number, not {max_encodes!r}")
    max_encodes = int(max_encodes)

    source = _load(image, codec._check_size)
    reference = seen = None
    grayscale = False
    said: set[str] = set()  # what the image loses, said once a search (each encode reads it again)
    if name == "psnr":  # the pixels each decode is measured against (a size target needs none)
        with said_once(said):
            picture = read_picture(source, strip=True, check_size=codec._check_size)
        grayscale = picture.grayscale
        reference = picture.rgb[:, :, 0] if grayscale else picture.rgb
        # The colour under transparent pixels is replaced (not exact) or kept (exact): the PSNR is
        # taken over the pixels whose colour the encoder was asked to keep.
        seen = None if picture.alpha is None or exact else picture.alpha > 0
        del picture

    encodes = 0
    decoding = [0]  # a decode's units of work, once the first has told them: the same image each time

    def evaluate(quality: float) -> _Trial:
        nonlocal encodes
        encodes += 1
        encode_step = decode_step = None
        if progress is not None and name != "psnr":
            def encode_step(done: int, total: int, encode: int = encodes) -> None:
                progress(done, total, encode)
        elif progress is not None:
            # The decode that measures the PSNR is the trial's second part, as long as the encode
            # or longer: done runs on through it. Until a decode has told its units, the encode's
            # stand in for them.
            encoding = [0]

            def encode_step(done: int, total: int, encode: int = encodes) -> None:
                encoding[0] = total
                progress(done, total + (decoding[0] or total), encode)

            def decode_step(done: int, total: int, encode: int = encodes) -> None:
                if done or total != decoding[0]:  # the decode's start is the encode's end, told already
                    decoding[0] = total
                    progress(encoding[0] + done, encoding[0] + total, encode)
        with said_once(said):
            data = codec.encode(source, quality=quality, strip=strip, exact=exact, progress=encode_step)
        measured = None
        if name == "psnr":
            decoded = codec.decode(data, as_array=True, progress=decode_step)
            measured = _psnr(reference, _rgb(decoded, grayscale), seen)
        header = nicformat.read_header(data)[0]  # the upright picture's size, as read_picture gives it
        return _Trial(quality, data, 8 * len(data) / (header.width * header.height), measured)

    start = codec.default_quality
    if name == "bpp":
        def within(t: _Trial) -> bool:
            return abs(t.bpp / target - 1) <= BPP_TOLERANCE

        trials = _search(evaluate, lambda t: math.log(t.bpp), math.log(target), _LOG_RATE_SLOPE, start, max_encodes,
                         within)
        # Closest on the log scale the search works on: differences of a huge target's size were
        # equal floats, and the tie gave the start's file rather than quality 100's.
        # A file within the tolerance first (the search stops at one), however the log scale ranks it.
        best = min(trials, key=lambda t: (not within(t), abs(math.log(t.bpp) - math.log(target)), t.quality))
        met = within(best)
    elif name == "psnr":
        # Aimed at the middle of the window a file is taken from (at its edge, half the steps
        # near the end landed just outside it).
        trials = _search(evaluate, lambda t: t.psnr, target + PSNR_TOLERANCE / 2, _PSNR_SLOPE, start, max_encodes,
                         lambda t: target <= t.psnr <= target + PSNR_TOLERANCE)
        reached = [t for t in trials if t.psnr >= target]
        best = min(reached, key=lambda t: t.quality) if reached else max(trials, key=lambda t: t.psnr)
        met = bool(reached)
    else:
        # Aimed at the middle of the window a file is taken from, as for PSNR.
        trials = _search(evaluate, lambda t: math.log(len(t.data)), math.log((1 - BYTES_TOLERANCE / 2) * target),
                         _LOG_RATE_SLOPE, start, max_encodes, lambda t: (1 - BYTES_TOLERANCE) * target <= len(t.data) <= target)
        fitting = [t for t in trials if len(t.data) <= target]
        lowest = next((t for t in trials if t.quality == QUALITY_MIN), None)
        if not fitting and lowest is not None and len(lowest.data) - target <= LOW_PROBE_BYTES:
            # A small or flat image's size is not monotonic in the quality near its smallest
            # (a 64x64 photo: 146 bytes at quality 1, 144 at 3.75): qualities a little above 1,
            # while encodes are left, before saying that no file fits (those the search came near
            # already passed over).
            for quality in LOW_PROBES:
                if len(trials) >= max_encodes:
                    break
                if all(abs(t.quality - quality) >= 0.5 for t in trials):
                    trials.append(evaluate(quality))
                    if len(trials[-1].data) <= target:
                        break
            fitting = [t for t in trials if len(t.data) <= target]
        if not fitting:
            smallest = min(trials, key=lambda t: (len(t.data), t.quality))
            if lowest is None:  # the search stopped at max_encodes before the lowest quality
                raise QualityError(
                    f"no file of at most {target:,} bytes within {len(trials)} encode{'s' * (len(trials) != 1)} (max_encodes): the smallest, "
                    f"at quality {smallest.quality:g}, takes {len(smallest.data):,} bytes; allow more encodes"
                )
            # A tiny or flat image's size hardly falls with the quality: another may be a byte or two smaller.
            other = "" if len(smallest.data) == len(lowest.data) else (
                f" (the smallest file found, at quality {smallest.quality:g}, {len(smallest.data):,} bytes)")
            meta = metadata_out_of_reach(lowest.data, target)
            stripped = (f"; {meta:,} of them are its metadata (ICC profile, EXIF, XMP, text, resolution), which "
                        "strip (--strip) leaves out") if meta else ""
            raise QualityError(
                f"no file of at most {target:,} bytes: at quality {QUALITY_MIN:g} this image takes "
                f"{len(lowest.data):,} bytes{other}{stripped}"
            )
        best = max(fitting, key=lambda t: t.quality)
        met = True
    return RateResult(best.data, best.quality, best.bpp, best.psnr, met, len(trials))


def metadata_out_of_reach(data: bytes, limit: float) -> int:
    """The bytes of metadata in a file larger than ``limit`` bytes, when leaving them out
    (``strip``) would bring it within the limit, else 0: what a missed target says of them
    (camera JPEGs carry 10 to 60 kB of EXIF)."""
    meta = nicformat.metadata_bytes(data)
    return meta if meta and len(data) - meta <= limit else 0


def _search(
    evaluate: Callable[[float], _Trial],
    score: Callable[[_Trial], float],
    target: float,
    slope: float,
    start: float,
    budget: int,
    good: Callable[[_Trial], bool],
) -> list[_Trial]:
    """Files at the qualities a safeguarded secant search visits, for a score that grows with quality.

    Stops at a ``good`` file, when the target lies beyond quality 1 or 100, when the bracket
    is down to the quality's resolution, or after ``budget`` files. The last file of the
    budget goes to the extreme quality on a side not yet seen, so a miss is known to be one.
    """
    trials: dict[float, _Trial] = {}
    below: _Trial | None = None  # the highest quality scoring below the target
    above: _Trial | None = None  # the lowest quality scoring at or above it
    last: _Trial | None = None
    quality: float | None = _round(start)
    while quality is not None and quality not in trials and len(trials) < budget:
        trial = trials[quality] = evaluate(quality)
        if good(trial):
            break
        if score(trial) < target:
            below = trial if below is None or trial.quality > below.quality else below
        else:
            above = trial if above is None or trial.quality < above.quality else above
        quality = _next(below, above, last, trial, score, target, slope)
        last = trial
        if len(trials) == budget - 1 and (below is None or above is None):
            extreme = QUALITY_MAX if above is None else QUALITY_MIN
            quality = extreme if extreme not in trials else quality
    return list(trials.values())


def _next(below, above, last, trial, score, target, slope) -> float | None:
    """The next quality to try, or ``None`` when nothing is left to learn."""
    if below is not None and above is not None:
        width = above.quality - below.quality
        if width <= 2 * 10**-QUALITY_DECIMALS:
            return None  # resolved (or, below < above not holding, the score is flat noise here)
        lo, hi = score(below), score(above)
        step = (target - lo) / (hi - lo) * width if hi > lo else width / 2
        return _round(below.quality + min(max(step, width / 10), width * 9 / 10))
    if last is not None and trial.quality != last.quality:
        measured = (score(trial) - score(last)) / (trial.quality - last.quality)
        if measured > 0 and math.isfinite(measured):
            slope = measured
    if above is None:
        if below.quality >= QUALITY_MAX:
            return None
        step = max(_MIN_STEP, _OVERSHOOT * (target - score(below)) / slope)
        return _round(min(below.quality + step, QUALITY_MAX))
    if above.quality <= QUALITY_MIN:
        return None
    step = max(_MIN_STEP, _OVERSHOOT * (score(above) - target) / slope)
    return _round(max(above.quality - step, QUALITY_MIN))


def _round(quality: float) -> float:
    return round(float(quality), QUALITY_DECIMALS)


def _check_target(name: str, value) -> None:
    if name == "max_bytes":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise QualityError(f"max_bytes must be a positive whole number of bytes, not {value!r}")
        return
    unit = "bits per pixel" if name == "bpp" else "dB"
    if not is_real_number(value):
        raise QualityError(f"the {name} target must be a number of {unit}, not {value!r}")
    try:
        number = float(value)
    except (OverflowError, ValueError):  # a whole number past the float range, Decimal("sNaN")
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise QualityError(f"the {name} target must be a positive finite number of {unit}, not {value!r}")


def _load(image, check_size):
    """A path or bytes opened once (as ``Codec.encode`` opens them, ``check_size`` before the
    pixels are decoded), so the search does not reread it."""
    if isinstance(image, (str, os.PathLike)):
        return open_image(image, check_size)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return open_image_bytes(image_bytes(image), check_size)
    if is_binary_file(image):  # read once: every encode of the search would find it at its end
        return open_image_bytes(read_binary_file(image), check_size)
    if not isinstance(image, np.ndarray) and is_buffer(image):  # array.array("B")
        return open_image_bytes(image_bytes(image), check_size)
    return image


def _rgb(decoded: np.ndarray, grayscale: bool) -> np.ndarray:
    """The decoded colour (or gray) channels, alpha dropped."""
    if grayscale:
        return decoded if decoded.ndim == 2 else decoded[:, :, 0]
    return decoded[:, :, :3]


PSNR_ROWS = 256
"""Rows of the images :func:`_psnr` takes at a time: its temporaries are of that many rows (the
whole images in float64 took 1.1 GiB beside a 24-megapixel encode, at each encode of a search)."""


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR of ``b`` against ``a`` (8-bit), over the pixels ``where`` is true (all if None);
    the squared errors summed exactly, in integers, a band of rows at a time."""
    squares = count = 0
    for top in range(0, a.shape[0], PSNR_ROWS):
        error = np.subtract(a[top : top + PSNR_ROWS], b[top : top + PSNR_ROWS], dtype=np.int64)
        if where is not None:
            error = error[where[top : top + PSNR_ROWS]]
        squares += int(np.vdot(error, error))
        count += error.size
    if count == 0:
        return math.inf  # nothing visible: any file is exact where it matters
    return math.inf if squares == 0 else float(10 * np.log10(255.0**2 * count / squares))
