"""A :class:`~nicodec.Codec`'s settings: the arguments it takes besides its model, checked and
made plain (whole numbers as ``int``, flags as ``bool``, providers as a tuple, ``rdo`` as a
slope). The checks that need the model (a tile's multiple, the graphs a precision or the
refinement runs) are the Codec's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Union, get_args

import numpy as np

from .errors import NicodecError
from .format import DEFAULT_MAX_PIXELS
from .inputs import check_flags, whole
from .model import is_real_number
from .quantize import RDO_SLOPE
from .sessions import MAX_THREADS

PRECISIONS = {"fp32": "decoder", "fp16": "decoder_fp16"}
"""Synthesis graphs by the precision they compute in."""

MAX_REFINE = 1000
"""The most refinement steps ``Codec`` accepts."""


OptionValue = Union[str, int, float, np.integer, np.floating, np.bool_]
"""A provider option's value as :class:`~nicodec.Codec` takes it; onnxruntime is given its text."""
Providers = Union[str, Sequence[Union[str, tuple[str, Mapping[str, OptionValue]]]]]
"""``providers=`` of :class:`~nicodec.Codec` (and of the Ray recipe): ``"auto"``, ``"cpu"``,
``"cuda"``, or onnxruntime's provider names, each alone or paired with a mapping of its options."""
OPTION_TYPES = get_args(OptionValue)
"""The types of :data:`OptionValue`, as ``isinstance`` takes them."""


@dataclasses.dataclass(frozen=True)
class CodecSettings:
    """The settings of one codec, as :class:`~nicodec.Codec`'s arguments of the same names
    document them; made by :meth:`checked`, which refuses what they cannot be."""

    # "auto", "cpu", "cuda", or onnxruntime's provider names, each alone or paired with its options
    # as (key, value) pairs of strings (a tuple, not a dict: the settings stay hashable and unchanged)
    providers: str | tuple[str | tuple[str, tuple[tuple[str, str], ...]], ...] = "auto"
    threads: int | None = None  # onnxruntime's intra-op threads; None: one per physical core usable
    max_pixels: int = DEFAULT_MAX_PIXELS  # the largest image encode and decode take
    optimization: str = "all"  # onnxruntime's graph optimisation level
    tile: int | None = None  # pixels a side of the tiles the transforms run on; None: by the memory free
    margin: int = 192  # pixels of context around the analysis's tiles (the synthesis's: half, 64 at least)
    precision: str = "fp32"  # the synthesis's, a key of PRECISIONS
    rdo: float | None = None  # the rate-distortion rounding's slope; None: the default encoder's (see slope)
    refine: int = 0  # gradient steps on the latent before it is coded
    restoration: bool = False  # fit and write the restoration filter when encoding
    release_memory: bool = False  # hand onnxruntime's arena back after every run of a graph

    @classmethod
    def checked(cls, providers: Providers = "auto", threads=None,
                max_pixels=DEFAULT_MAX_PIXELS, optimization: str = "all", tile=None, margin=192,
                precision: str = "fp32", rdo=None, refine=0, restoration=False,
                release_memory=False) -> CodecSettings:
        """Settings from a Codec's arguments, as the API takes them (numpy's numbers and bools too).

        Raises:
            NicodecError: an argument of the wrong type or out of its range.
        """
        if not isinstance(providers, str) and not (
            isinstance(providers, Sequence) and providers and all(map(_provider_entry, providers))
        ):
            bare = isinstance(providers, (tuple, list)) and len(providers) == 2 and isinstance(providers[1], Mapping)
            raise NicodecError("providers must be a name or a list of onnxruntime provider names (each alone, or "
                               "paired with a dict of its options: strings, numbers or flags), not "
                               f"{providers!r}" + ("; put the pair in a list: providers=[(name, options)]" if bare else ""))
        if isinstance(providers, str) and providers.endswith("ExecutionProvider"):
            providers = (providers,)  # one onnxruntime name, as onnxruntime itself would take it in a list
        elif not isinstance(providers, str):  # the options as strings, onnxruntime's own type for them
            providers = tuple(p if isinstance(p, str) else (p[0], tuple((k, str(v)) for k, v in p[1].items()))
                              for p in providers)
        threads = None if threads is None else whole("threads", threads, 1, MAX_THREADS)
        max_pixels = whole("max_pixels", max_pixels, 1)
        tile, margin = None if tile is None else whole("tile", tile), whole("margin", margin)
        if not isinstance(precision, str) or precision not in PRECISIONS:  # a list: unhashable
            raise NicodecError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        refine = whole("refine", refine, 0, MAX_REFINE)
        check_flags(restoration=restoration, release_memory=release_memory)
        if rdo is not None:
            if isinstance(rdo, (bool, np.bool_)):
                rdo = RDO_SLOPE if rdo else 0.0
            try:  # float() of a whole number past the float range: an OverflowError
                slope = float(rdo) if is_real_number(rdo) else None
            except (OverflowError, ValueError):  # ValueError: Decimal("sNaN")
                slope = None
            if slope is None or not 0 <= slope < float("inf"):
                raise NicodecError(f"rdo must be True, False, None or a slope of 0 or more, not {rdo!r}")
            rdo = slope
        return cls(providers if isinstance(providers, str) else tuple(providers), threads, max_pixels, optimization,
                   tile, margin, precision, rdo, refine, bool(restoration), bool(release_memory))

    @property
    def strict(self) -> bool:
        """Whether a provider that cannot run a graph is refused (one asked for by name) rather
        than warned about (``"auto"``, ``"cpu"``)."""
        return not isinstance(self.providers, str) or self.providers == "cuda"

    @property
    def slope(self) -> float:
        """The rate-distortion rounding's slope: ``rdo``'s, or without it :data:`RDO_SLOPE`
        without refinement and 0 with it (the refinement weighs the bits itself)."""
        if self.rdo is not None:
            return self.rdo
        return 0.0 if self.refine else RDO_SLOPE

    @property
    def unrefined_slope(self) -> float:
        """The slope the analysis's own latent is rounded with where the refinement codes it
        too, as a fallback: the default encoder's, unless ``rdo`` was chosen."""
        return RDO_SLOPE if self.rdo is None else self.rdo

    def given_providers(self) -> str | list:
        """``providers`` as :class:`~nicodec.Codec` and onnxruntime take them (options as dicts again)."""
        if isinstance(self.providers, str):
            return self.providers
        return [p if isinstance(p, str) else (p[0], dict(p[1])) for p in self.providers]

    def arguments(self) -> dict:
        """These settings as :class:`~nicodec.Codec`'s keyword arguments."""
        given = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**given, "providers": self.given_providers()}

    def for_decoding(self) -> CodecSettings:
        """These settings without the encoder's (for the codecs of earlier shipped models, which
        only decode)."""
        return dataclasses.replace(self, rdo=None, refine=0, restoration=False)


def _provider_entry(entry) -> bool:
    """Whether ``entry`` of a providers list is one: a name, or a pair of a name and a mapping of
    its options (``("OpenVINOExecutionProvider", {"device_type": "GPU"})``), keys as strings and
    values as :data:`OptionValue` (numpy's numbers too), as onnxruntime's own ``providers=`` takes them."""
    if isinstance(entry, str):
        return True
    return (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], Mapping)
            and all(isinstance(k, str) and isinstance(v, OPTION_TYPES) for k, v in entry[1].items()))

