"""Running out of memory, named: decorators through which onnxruntime's untyped allocation
failure, or a bare ``MemoryError``, comes out of the API as an :class:`~nicodec.OutOfMemoryError`
that says what needs less."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from .errors import NicodecError, OutOfMemoryError
from .progress import raised_by_callers
from .sessions import loading_failed, out_of_memory

_P = ParamSpec("_P")
_R = TypeVar("_R")


def coding_memory_error(exc: BaseException) -> OutOfMemoryError:
    """What running out of memory inside a coding method is: an error that says what needs less."""
    wanted = re.search(r"buffer of size (\d+)", str(exc))
    detail = (f"onnxruntime could not allocate {int(wanted.group(1)):,} bytes" if wanted
              else "onnxruntime could not allocate memory" if not isinstance(exc, MemoryError)
              else "a numpy array could not be allocated")
    return OutOfMemoryError(
        f"out of memory: {detail}; smaller tiles (tile=256) cut the memory of decoding a large image, "
        "and less that of encoding one"
    )


def naming_memory(error: Callable[[BaseException], OutOfMemoryError],
                   passed: tuple[type[BaseException], ...] = (NicodecError,)
                   ) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A decorator: memory running out inside the function (onnxruntime's untyped error, or a
    bare ``MemoryError`` that an application catching ``NicodecError`` would miss) is raised
    as ``error(exc)``, an :class:`OutOfMemoryError`; the ``passed`` errors go through as they are."""

    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def named(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return function(*args, **kwargs)
            except passed:
                raise
            except Exception as exc:
                if not out_of_memory(exc) or raised_by_callers(exc):  # the caller's progress raised it
                    raise
                raise error(exc) from exc

        return named

    return decorate


coding_named = naming_memory(coding_memory_error)
"""For the coding methods (:class:`~nicodec.Codec`'s ``encode``, ``decode``, ...)."""


loading_named = naming_memory(lambda exc: loading_failed("the model", exc),
                               (NicodecError, TypeError, ValueError))  # and a call's own mistakes (an unknown keyword)
"""For :class:`~nicodec.Codec`'s loading (its tables, its graphs, the check of its entropy parameters)."""
