"""The progress an encode or a decode reports: whole units of work, a pixel of the padded image
through the networks each, with the other stages (entropy coding, refinement, the alpha plane)
weighed against the networks' work by the shares measured below.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .errors import NicodecError


ENTROPY_PARAMETERS_PART = 0.5
"""The entropy-parameter graph's part of the entropy coding's and decoding's time (43 of 72 ms
encoding a Kodak image, 35 of 70 decoding it, ``benchmarks/speed.py``): told tile by tile."""
ENTROPY_ENCODING_SHARE = 0.2
ENTROPY_DECODING_SHARE = 0.15
REFINEMENT_STEP_SHARE = 2.6
REFINEMENT_CHOICE_SHARE = 2.0
ALPHA_SHARE = 0.3
RESTORATION_SHARE = 3.5
RESTORATION_SYNTHESIS_PART = 0.45
RESTORATION_APPLY_SHARE = 0.4
"""The restoration filter's (``nicodec.restoration``): the encoder's synthesis, fit and check
take about 3.5 times its analysis, the synthesis 0.45 of that (told tile by tile); a decoder's
filter about 0.4 of its synthesis (Kodak, 2 cores: 206 ms synthesis, 190 ms fit, 80 ms filter,
against 126 ms of analysis)."""
"""The time the entropy coding, the entropy decoding, one refinement step, the choice between
the refined latent and the analysis's (both coded and decoded) and the alpha plane's compression
take, each against the analysis's (or the synthesis's) on the same image, for the units of
``progress``: measured on 2 cores in tiles of 1024 (the images a bar is for), 1.2 s against 6.0
to encode a 3072x2048 image and 0.95 against 6.7 to decode it; a refinement step of a 2048x1024
one 5.5 to 6.3 s against 2.1, its choice 4 s; a soft mask's LZMA2 at 3072x2048 2.8 s (a
cut-out's far less)."""


class Work:
    """An encode's or a decode's progress, told to ``progress`` as ``(done, total)`` whole units
    of work, a pixel of the padded image through the networks each, only when ``done`` grows:
    ``(0, total)`` first, as the work starts (a search's bar turns to its next encode at once),
    and ``(total, total)`` last, once."""

    def __init__(self, progress: Callable[[int, int], object] | None):
        self._progress = progress
        self._area = 0
        self._total = 1
        self._done = 0.0
        self._told = -1

    def start(self, area: int, shares: float) -> None:
        """The work is ``shares`` times the networks' on ``area`` pixels."""
        self._area, self._total = area, max(int(area * shares), 1)
        self._tell(0)

    def advance(self, share: float) -> None:
        """``share`` of the networks' work on the whole image is done (a tile's part of it,
        or a stage's share from the table above)."""
        self._done += share * self._area
        self._tell(min(round(self._done), self._total))

    def finish(self) -> None:
        self._tell(self._total)

    def _tell(self, done: int) -> None:
        if self._progress is not None and done > self._told:
            self._told = done
            try:
                self._progress(done, self._total)
            except BaseException as exc:
                mark_as_callers(exc)
                raise


CALLERS = "_nicodec_raised_by_progress"
"""The attribute that marks an exception raised by the caller's ``progress`` (:func:`mark_as_callers`)."""


def mark_as_callers(exc: BaseException) -> None:
    """Mark ``exc`` as raised by the caller's ``progress``: it goes through nicodec as it is
    (``raise Cancelled`` from a callback stops the call), never taken for nicodec's own (a
    ``MemoryError``, or a message that reads like onnxruntime's out of memory, had been turned
    into an :class:`OutOfMemoryError` that advised smaller tiles)."""
    try:
        setattr(exc, CALLERS, True)
    except Exception:  # noqa: BLE001 - a type that takes no attributes (or refuses them its own way): not marked
        pass


def raised_by_callers(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by the caller's ``progress`` (:func:`mark_as_callers`)."""
    return getattr(exc, CALLERS, False) is True


def check_progress(progress, arguments: tuple[str, ...] = ("done", "total")) -> None:
    """Refuse, before any work, a ``progress`` that is not a function or cannot take these
    arguments (a call with the wrong count would fail only when the work first reports)."""
    shape = f"a function of ({', '.join(arguments)})"
    if progress is None:
        return
    if not callable(progress):
        raise NicodecError(f"progress must be {shape}, not {progress!r}")
    try:
        signature = inspect.signature(progress, follow_wrapped=False)  # a wrapper takes what it declares
    except (TypeError, ValueError):  # some builtins and extension callables have none to read
        return
    try:
        signature.bind(*range(len(arguments)))
    except TypeError:
        raise NicodecError(f"progress must be {shape}, called with {len(arguments)} arguments; "
                           f"{progress!r} takes {signature}") from None
