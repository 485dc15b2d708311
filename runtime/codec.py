"""The ``Codec``: images to ``.nic`` bytes and back, through three graphs and the rANS coder.

Encoding::

    pixels ─pad─> encoder.onnx ─> y, z
    z_hat = round(z) ─> entropy_parameters.onnx ─> scale_index, mean_q
    symbols = round(y - mean_q / 2**MEAN_BITS), a step toward zero where it pays (``rdo``)
    rANS(z_hat | per-channel tables) + rANS(symbols | table scale_index) ─> file

Decoding runs the same entropy-parameter graph on the decoded z_hat, so the
tables and means are the encoder's as long as that graph gives the same integers
on both machines: it is an integer network (ConvInteger and int64 arithmetic, see
``nicodec.export.integer``), exact on every machine, thread count and optimisation
level, and it runs on the CPU provider, the one that has ConvInteger. A runtime can still
be faulty: each Codec checks its own on a fixed input first (``nicodec.exactness``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Literal, ParamSpec, TypeVar, cast, overload

import numpy as np
from PIL import Image

from . import alpha as alpha_section
from . import exactness, rans, restoration
from . import format as nicformat
from . import resolution as resolution_section
from . import text as text_section
from .distortion import luma, squared_error
from .errors import FormatError, LimitError, ModelError, ModelMismatchError, NicodecError
from .graphs import check_graph
from .images import read_picture
from .inputs import ImageSource, NicSource, Pixels, Real, Whole, check_flags, nic_bytes
from .memory import coding_named, loading_named
from .model import QUALITY_MAX, QUALITY_MIN, ModelFiles, check_quality, package_model_for, shipped_earlier_models
from .pil_pixels import equal_channels
from .progress import (ALPHA_SHARE, ENTROPY_DECODING_SHARE, ENTROPY_ENCODING_SHARE, ENTROPY_PARAMETERS_PART,
                       REFINEMENT_CHOICE_SHARE, REFINEMENT_STEP_SHARE, RESTORATION_APPLY_SHARE, RESTORATION_SHARE,
                       RESTORATION_SYNTHESIS_PART, Work, check_progress)
from .quantize import rdo_round, round_symbols
from .refine import refine
from .machine import memory_free, resident_bytes
from .sessions import CPU, caller_outside, create_session, resolve_providers, shrinking_run_options
from .settings import PRECISIONS, CodecSettings
from .tiling import AUTO_TILES, ENTROPY_MARGIN, MEMORY_HEADROOM, growth_bytes, run_tiled
from .transparency import fill_transparent

__all__ = ["AUTO_TILES", "DEFAULT_MAX_PIXELS", "Codec", "ImageSource", "NicSource", "Pixels", "Real", "Whole"]

DEFAULT_MAX_PIXELS = nicformat.DEFAULT_MAX_PIXELS


_P = ParamSpec("_P")
_R = TypeVar("_R")

_CALL = threading.local()
"""``kind``: the coding call (``"encode"``, ``"decode"``) the thread is in, the outermost."""


def _counted(kind: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A decorator for ``encode`` and ``decode``: the calls of a codec in progress at once (the
    threads of ``--jobs``), what the process held as the first of them began, and the kind of
    call each thread is in, for :meth:`Codec._tile_for`."""

    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def counted(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            codec = cast("Codec", args[0])
            with codec._calls_lock:
                if codec._calls == 0:  # the least the process held as a call began (its arena aside)
                    now, least = resident_bytes(), codec._idle_resident
                    codec._idle_resident = now if least is None or now is None else min(now, least)
                codec._calls += 1
            outer = getattr(_CALL, "kind", None)
            _CALL.kind = outer or kind
            try:
                return function(*args, **kwargs)
            finally:
                _CALL.kind = outer
                with codec._calls_lock:
                    codec._calls = max(0, codec._calls - 1)  # a child forked meanwhile starts at 0

        return counted

    return decorate


FLOAT_ENTROPY_SESSION = {"threads": 1, "optimization": "basic"}
"""Fixed settings for a model whose entropy-parameter graph computes in float (models
exported before the integer graph): pinned so its integers do not depend on options
(``basic`` does no layout rewrites). An integer graph is exact under any settings."""


_LIVE: "weakref.WeakSet[Codec]" = weakref.WeakSet()
"""Every Codec of this process, for :func:`_forget_sessions_after_fork`."""


def _forget_sessions_after_fork() -> None:
    """In a child process made by fork, set aside the onnxruntime sessions every Codec
    inherited: they load again at their first use there. A session holds its thread pool's
    state, and the child has none of the parent's threads: one that another thread of the
    parent was running as it forked could wait for ever in the child (a review saw 3 of 300
    forks hang while a thread coded; a Codec made in the child, none of 250). Nor are the
    inherited sessions ever freed there: freeing one waits for those threads too, so a child
    that ended normally (``sys.exit``, not ``os._exit``) hung as it ended. The locks a loading
    thread may have held (a graph's, or an earlier model's codec being made) are made anew."""
    for codec in list(_LIVE):
        for session in codec._sessions.values():
            _never_freed(session)
        codec._sessions = {}
        codec._loading = threading.Lock()
        codec._earlier_lock = threading.Lock()
        codec._calls_lock, codec._calls = threading.Lock(), 0


def _never_freed(obj) -> None:
    """Hold one more reference to ``obj`` that nothing lets go of, not even the interpreter
    as it ends (a child's copy of a parent's session: its memory is the parent's pages)."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_sessions_after_fork)


class Codec:
    """Encodes and decodes images with one model; safe to share between threads.

    The analysis, synthesis and gradient graphs are loaded at their first use (or by
    :meth:`prepare`), so a codec that only decodes never holds the encoder's, and one that only
    entropy-decodes (``decode_symbols``) holds neither; the entropy-parameter graph is loaded,
    and checked, at once.

    Args:
        model: a model folder; ``None`` for the default model shipped in the package, which
            also decodes the files of the models that earlier releases shipped, where the
            package keeps them (``nicodec/models/earlier``; each loaded at its first file).
        providers: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            or onnxruntime provider names (a list, or one name such as
            ``"CPUExecutionProvider"``). The entropy-parameter graph
            always runs on the CPU provider.
        threads: onnxruntime intra-op threads, 1 to 256 (``None``: one per physical core the
            process may use, under ``taskset``, a cpuset or a cgroup's CPU quota too; given to
            onnxruntime explicitly, which then does not pin its threads to cores).
        max_pixels: largest image (width x height) that ``encode`` and ``decode``
            accept, checked from the header (padding included) before any work.
        optimization: onnxruntime graph optimisation level (``"disable"`` to ``"all"``).
        tile: the transforms run on tiles of this many pixels a side (a multiple of 64; those
            at the image's edges keep the margin of context they have no use for), so memory is
            bounded for large images; smaller images run whole. ``None`` (the default): 1024, or
            512 or 256 for an image whose work at 1024 would need more memory than is free
            (:data:`AUTO_TILES`; on Linux, where the memory free can be read: a machine or a
            container's limit). The file and the pixels are the same whatever the tile.
        margin: pixels of context around each tile of the analysis (a multiple of 64;
            the synthesis uses half, at least 64). The default, 192, covers the analysis's
            receptive field (142 pixels for the shipped model's y and z) as 64 covers the
            synthesis's (37 pixels), so tiles give the same file and pixels as a whole-image run.
            Less is faster, but shows at the tiles' edges: ``margin=0`` with ``tile=256`` cost a
            2048x1536 image 3.5% more bytes and 1.3 dB, with errors twice as large along the edges.
        precision: ``"fp32"``, or ``"fp16"`` for the model's half-precision synthesis
            (faster on CPUs with fp16 arithmetic; pixels may differ slightly, symbols never,
            so files decode either way).
        rdo: rate-distortion optimised rounding of the latent when encoding (see
            ``nicodec.quantize``): about 1.4% fewer bits for the same PSNR on Kodak, with
            the decoder unchanged. ``True`` uses ``RDO_SLOPE``, a positive number another
            slope; ``False`` (or 0) rounds to the nearest integer, as the networks were trained.
            ``None`` (the default): ``True`` without refinement, ``False`` with it (the
            refinement weighs the bits itself: rounding toward zero after it, even at a quarter of
            the slope, lost 4 to 8% on two Kodak images).
        refine: gradient steps on the latent before it is coded (see ``nicodec.refine``):
            0 (the default) codes the analysis's latent as it is; about 60 make files a few
            percent smaller at the same PSNR, each step costing about 1.5 to 2 decodes of the
            image. The analysis's latent is coded too (with ``rdo`` as the default encoder
            uses it, unless ``rdo`` is given) and the refined one is kept only if its file
            costs no more (y's bits per pixel plus lambda times the decoded image's MSE on the
            0..255 scale), which takes two more decodes; with ``precision="fp16"`` that
            judgement uses the fp16 synthesis, so on a near tie the two precisions may keep
            different latents. Needs the model's ``synthesis_gradient`` graph. The decoder
            is the same.
        restoration: when encoding, also decode the picture, fit a linear filter that brings it
            closer to the source (``nicodec.restoration``) and write it into the file where it
            lowers the cost (bits per pixel plus lambda times the MSE, its own bits counted):
            1.7% fewer bits for the same PSNR on Kodak (``benchmarks/restoration.py``), for an
            encode that also runs the synthesis and the fit (3.2 times as long there).
            Off by default for now (files with the filter need nicodec 0.6.0 or later to
            decode; decoders of today apply the filter of any file that has one). A model whose
            manifest gives no lambda writes none.
        release_memory: hand onnxruntime's CPU memory arena back after every run of a graph,
            as it is after each tile of an image larger than one tile. By default an image of
            one tile leaves its run's memory in the arena for the next, once for each call
            running at the same time: a process holding 153 MiB once loaded held 535 after a
            Kodak image, 1,263 after a 1024x1024 one and 2,688 after three of those at once;
            with True 222, 288 and 433 MiB, for encodes and decodes 5 to 35% longer (two runs,
            2 threads on 2 cores, 2026-12-05; ``docs/python-api.md``). The CUDA provider's
            memory on the GPU is not handed back.

    Raises:
        ModelError: the model folder is missing or damaged (what decoding needs), or has no
            usable fp16 synthesis for ``precision="fp16"``; with ``refine``, it has no usable
            encoder, synthesis_gradient graph or lambda.
        ExactnessError: the installed onnxruntime computes the model's entropy parameters
            wrongly (see :mod:`nicodec.exactness`).
        NicodecError: an unavailable provider, an unknown precision, or an argument of the
            wrong type or out of its range. A provider asked for by name (``"cuda"``, a list)
            that onnxruntime cannot use for a graph is refused as that graph loads: at its
            first use, or by :meth:`prepare` (which the command line calls); with ``"auto"``,
            a warning then.
    """

    _fine_padding = True
    """Pad images to multiples of the latent's stride (16) where that differs from the
    hyper-latent's (64), with ``FLAG_FINE_PADDING``; ``False`` (for comparisons, such as
    ``benchmarks/padding.py``) pads to 64 as nicodec before 0.7.0 did."""

    @loading_named
    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        providers: str | Sequence[str] = "auto",
        threads: Whole | None = None,
        max_pixels: Whole = DEFAULT_MAX_PIXELS,
        optimization: str = "all",
        tile: Whole | None = None,
        margin: Whole = 192,
        precision: str = "fp32",
        rdo: bool | float | None = None,
        refine: Whole = 0,
        restoration: bool = False,
        release_memory: bool = False,
    ):
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise NicodecError(f"model must be a model folder's path or None, not {model!r}")
        settings = CodecSettings.checked(providers, threads, max_pixels, optimization, tile, margin, precision, rdo,
                                         refine, restoration, release_memory)
        self.model = ModelFiles.load(model)
        # The shipped default model decodes the files of the earlier shipped ones, each by a
        # codec of its own made at its first file, with these settings.
        self._earlier_settings = None if model is not None else settings.for_decoding()
        self._earlier: dict[tuple[str, bytes], Codec] = {}
        chosen = resolve_providers(settings.providers)
        self.max_pixels = settings.max_pixels
        d = self.model.downsampling
        if settings.tile is not None and (settings.tile < d or settings.tile % d):
            raise NicodecError(f"tile must be a positive multiple of {d} pixels, not {settings.tile}")
        if settings.margin < 0 or settings.margin % d:
            raise NicodecError(f"margin must be a multiple of {d} pixels, 0 or more, not {settings.margin}")
        self.auto_tile = settings.tile is None
        self.tile, self.margin = settings.tile or AUTO_TILES[0], settings.margin
        decoder = PRECISIONS[settings.precision]
        if not self.model.has_graph(decoder):
            problem = self.model.unavailable.get(f"{decoder}.onnx", f"it has no {decoder}.onnx")
            raise ModelError(f"the model {self.model.model_id} has no usable {settings.precision} synthesis: {problem}")
        self.precision = settings.precision
        self.refine = settings.refine
        self.restoration = settings.restoration and _has_lambda(self.model)
        self.release_memory = settings.release_memory
        self.rdo_slope = settings.slope
        self._unrefined_slope = settings.unrefined_slope
        self._graphs = {"entropy_parameters": "entropy_parameters", "encoder": "encoder", "decoder": decoder,
                        "synthesis_gradient": "synthesis_gradient"}
        self._settings, self._providers = settings, chosen
        self._sessions: dict = {}
        self._input_names: dict[str, frozenset[str]] = {}  # each loaded graph's, as check_graph passed them
        self._loading = threading.Lock()
        self._earlier_lock = threading.Lock()
        self._calls_lock, self._calls = threading.Lock(), 0
        self._idle_resident: int | None = None
        # First, so that a runtime that computes it wrongly is refused before the other graphs load.
        self._session("entropy_parameters")
        _LIVE.add(self)
        if self.refine:
            self._check_available("encoder")
            problem = self.model.unavailable.get("synthesis_gradient.onnx")
            if problem is None and not self.model.has_graph("synthesis_gradient"):
                problem = "it has no synthesis_gradient graph (nicodec-export --add-encoder-graphs adds it)"
            if problem is None and self.model.scale_table is None:
                problem = "its tables file has no scale_table"
            if problem is not None:
                raise ModelError(f"the model {self.model.model_id} cannot refine its latent: {problem}")
            self.model.lmbda()  # a ModelError now rather than after the analysis

    def _check_available(self, graph: str) -> None:
        """A ModelError if the model's file for ``graph`` (a key of ``_graphs``) is missing or damaged."""
        doing = {"encoder": "encode", "decoder": "decode", "synthesis_gradient": "refine its latent"}[graph]
        self.model.check_available(f"{self._graphs[graph]}.onnx", doing)

    def _session(self, graph: str):
        """The onnxruntime session of ``graph`` (a key of ``_graphs``), loaded at its first use,
        once, whichever thread asks (the entropy parameters' as the codec is made, and again
        in a child process that fork made: :func:`_forget_sessions_after_fork`)."""
        session = self._sessions.get(graph)
        if session is not None:
            return session
        with self._loading:
            if graph not in self._sessions:
                name = self._graphs[graph]
                chosen = {"threads": self._settings.threads, "optimization": self._settings.optimization}
                if graph == "entropy_parameters":  # ConvInteger exists on the CPU provider only; the graph is small
                    providers, options = [CPU], chosen if self.model.integer_entropy else FLOAT_ENTROPY_SESSION
                else:
                    self._check_available(graph)
                    providers, options = self._providers, {**chosen, "strict": self._settings.strict}
                session = create_session(self.model.graph(name), providers, **options,
                                         data=self.model.graph_bytes(name))
                check_graph(session, name, self.model)
                self._input_names[graph] = frozenset(i.name for i in session.get_inputs())
                if graph == "entropy_parameters" and self.model.entropy_check is not None:
                    exactness.check(session, self.model.entropy_check, self.model.hyper_channels, self.model.model_id,
                                    self.model.entropy_probe)
                self._sessions[graph] = session
            return self._sessions[graph]

    @property
    def _gradient_weighted(self) -> bool:
        """Whether the synthesis gradient graph takes a pixel weight (graphs exported before it
        count the padding too)."""
        self._session("synthesis_gradient")
        return "weight" in self._input_names["synthesis_gradient"]

    @loading_named
    def prepare(self, *, encode: bool = True, decode: bool = True) -> "Codec":
        """Load now the graphs that encoding (with ``refine``, its gradient and synthesis too; with
        ``restoration``, the synthesis)
        and decoding run, rather than at their first use: for a first image as fast as the
        next, or a model's or provider's problem raised here rather than by the first image.

        Args:
            encode: load the graphs that encoding runs.
            decode: load the synthesis graph that decoding runs (the entropy parameters'
                graph, which both run, is loaded when the codec is made).

        Returns:
            The codec itself.

        Raises:
            ModelError: ``encode`` and the model cannot encode (its ``encoder.onnx`` is missing,
                as in a copy made to decode only, or damaged), or a graph does not load.
            OutOfMemoryError: memory ran out while a graph loaded.
            NicodecError: an explicitly chosen provider could not run a graph.
        """
        for name, value in (("encode", encode), ("decode", decode)):
            if not isinstance(value, (bool, np.bool_)):
                raise NicodecError(f"{name} must be True or False, not {value!r}")
        graphs = (["encoder"] + (["synthesis_gradient"] if self.refine else [])
                  + (["decoder"] if self.refine or self.restoration else [])) if encode else []
        for graph in graphs + (["decoder"] if decode else []):
            self._session(graph)
        return self

    def __reduce__(self):
        # Without this, pickle fails deep inside onnxruntime ("cannot pickle InferenceSession").
        raise TypeError(
            "a nicodec.Codec holds onnxruntime sessions and cannot be pickled or copied: make one in each "
            "process (at module level, or in a multiprocessing Pool's initializer) and pass images and bytes"
        )

    @property
    def model_id(self) -> str:
        """The model's id, as every file it makes records it (``nicodec info`` shows it)."""
        return self.model.model_id

    @property
    def providers(self) -> dict[str, list[str]]:
        """The providers each graph actually runs on, as onnxruntime reports them (with
        ``refine``, the synthesis gradient's too; without ``encoder`` for a model that cannot
        encode). Asking loads the graphs not loaded yet."""
        graphs = ["encoder"] * self.model.has_graph("encoder") + ["entropy_parameters", "decoder"]
        graphs += ["synthesis_gradient"] * bool(self.refine)
        return {graph: self._session(graph).get_providers() for graph in graphs}

    # -- encoding ---------------------------------------------------------------------

    @property
    def default_quality(self) -> float | None:
        """The quality ``encode`` uses when none is given; ``None`` for a single-rate model."""
        return self.model.default_quality

    @coding_named
    @_counted("encode")
    def encode(self, image: ImageSource, *, quality: Real | None = None, strip: bool = False, exact: bool = False,
               progress: Callable[[int, int], object] | None = None) -> bytes:
        """Compress an image.

        Args:
            image: a path, the bytes of an image file (PNG, JPEG, ...; or a one-dimensional
                uint8 array of them, as ``decode`` takes a file's), a file object opened in
                binary mode (read to its end), a PIL image or a uint8 numpy array of pixels
                (H, W), (H, W, 1), (H, W, 2) (gray and alpha), (H, W, 3) or (H, W, 4).
            quality: from 1 (smallest file) to 100 (best picture), any number between;
                ``None`` for the model's default (``default_quality``). The rate grows with
                it. The header records the value used (as a float32).
            strip: leave out the ICC profile, EXIF data, XMP packet, text and resolution.
            exact: keep the colour under fully transparent pixels (alpha 0) as it is. By
                default it is replaced by a smooth fill from the visible pixels, which costs
                fewer bits (as ``cwebp`` does without ``-exact``); the visible pixels are
                coded as they are, and the alpha plane losslessly, either way.
            progress: called from the calling thread as the work goes, with ``(done,
                total)`` in whole units of work (about a pixel through the analysis each; the
                entropy coding, each refinement step and the alpha plane count for their share
                of the time): ``(0, total)`` as it starts, then after each tile of the
                analysis and of the entropy parameters, the entropy coding, each refinement
                step and the alpha plane, ``done`` growing to ``total``, which stays the same.

        Transparency is kept losslessly (an ``ALPH`` or ``ALPL`` section); the ICC profile, EXIF
        data and XMP packet of files and PIL images are kept as they are (``ICCP``, ``EXIF``,
        ``XMP ``), but a profile of another colour space than the coded pixels' (a CMYK image's
        converts its pixels to sRGB instead), with the EXIF orientation applied to the pixels and
        removed (from the XMP too),
        and so are their text (``TEXT``: PNG's text chunks, a JPEG's or GIF's comment as
        ``Comment``) and resolution (``PHYS``: the density Pillow reads as ``info["dpi"]``, but
        for a JPEG file without a JFIF density its EXIF's resolution, each axis its own, which
        Pillow reads for one axis only and a copy of the image no longer has; its axes swapped by
        a quarter turn).

        Returns:
            The ``.nic`` file's bytes.

        Raises:
            UnsupportedImageError: the input is not an image nicodec can code.
            LimitError: the image has more than ``max_pixels`` pixels (``PixelLimitError``) or a
                side longer than the format holds.
            QualityError: ``quality`` is outside 1..100, or given to a single-rate model.
            ModelError: the model cannot encode (its ``encoder.onnx`` is missing, as in a copy
                made to decode only, or damaged), or a graph does not load (the first use
                loads it; :meth:`prepare` does so before any image).
            OutOfMemoryError: memory ran out (while a graph loaded, or for the image).
            NicodecError: ``strip`` or ``exact`` is not a bool, or ``progress`` is not callable.
        """
        check_flags(strip=strip, exact=exact)
        check_progress(progress)
        quality, gain = self._encoder_gain(quality)
        encoder = self._session("encoder")
        picture = read_picture(image, strip=strip, check_size=self._check_size)
        # Under pixels of alpha 0 the colour is ours to choose (unless exact): a smooth fill,
        # which the refinement leaves out of its distortion too. One copy of the pixels is kept.
        chosen = picture.alpha is not None and not exact
        if chosen:
            picture = dataclasses.replace(picture, rgb=fill_transparent(picture.rgb, picture.alpha))
        if not picture.grayscale and equal_channels(picture.rgb):
            # A black-and-white photo kept as RGB (a scan, a desaturated export), whatever colour
            # hid under alpha 0 (the fill, made of what shows, is gray too): coded as colour, it came
            # back tinted; coded as gray (its profile, an RGB one, kept), it comes back as three
            # equal channels.
            picture = dataclasses.replace(picture, grayscale=True, gray_as_rgb=True)
        pixels = picture.rgb
        height, width = pixels.shape[:2]
        d = self.model.downsampling
        padding_flag = self._padding_flag(height, width)
        multiple = nicformat.padding(padding_flag, d)
        self._check_size(width, height, multiple)
        padded = self._pad(pixels, multiple)
        fixed = {} if gain is None else {"gain": gain.reshape(1, -1, 1, 1)}
        refining = REFINEMENT_STEP_SHARE * self.refine + REFINEMENT_CHOICE_SHARE if self.refine else 0.0
        alpha = ALPHA_SHARE if picture.alpha is not None else 0.0
        restoring = RESTORATION_SHARE if self.restoration else 0.0
        work = Work(progress)
        work.start(padded.shape[0] * padded.shape[1], 1 + ENTROPY_ENCODING_SHARE + refining + alpha + restoring)
        self._tile_for(padded.shape[0], padded.shape[1], warn=True)
        y, z = self._run_tiled(encoder, "image", padded.transpose(2, 0, 1)[None], d, (4, 1), self.margin, fixed,
                               done=work.advance)
        y_shape = self._y_shape(height, width, multiple)
        if z.shape != self._z_shape(height, width) or y.shape[2:] != y_shape:
            # The decoder rebuilds these shapes from the header and the manifest.
            raise ModelError(
                f"the encoder made a hyper-latent of shape {z.shape} and a latent of {y.shape}, "
                f"not the {self._z_shape(height, width)} and (..., {y_shape[0]}, {y_shape[1]}) its manifest implies"
            )
        z_hat = round_symbols(z)
        scale_index, mean_q = self._entropy_parameters(
            z_hat, y_shape, done=lambda part: work.advance(part * ENTROPY_PARAMETERS_PART * ENTROPY_ENCODING_SHARE))
        means = self._means(mean_q)
        tables = self.model.y_tables
        # The rdo slope itself without refine; with it, what the default encoder codes (a fallback).
        # Without refine the latent is not needed again: its residual takes its memory.
        residual = y - means if self.refine else np.subtract(y, means, out=y)
        symbols = rdo_round(residual, scale_index, tables, slope=self._unrefined_slope)
        del residual
        if not self.refine:
            del y, means, padded  # the refinement alone needs them: memory for the entropy coding
        if not self.refine and not self.restoration:
            del mean_q  # the restoration's synthesis needs it too
        y_stream = rans.encode(symbols.ravel(), scale_index.ravel(), tables)
        work.advance((1 - ENTROPY_PARAMETERS_PART) * ENTROPY_ENCODING_SHARE)
        if self.refine:
            # The refinement descends a proxy, so it can end a little worse than the analysis's
            # latent: the refined file is kept only if it costs no more.
            seen = picture.alpha > 0 if chosen else None
            step = lambda done, steps: work.advance(REFINEMENT_STEP_SHARE)  # noqa: E731
            latent = self._refine(y, mean_q, scale_index, padded, height, width, quality, step, seen)
            refined = rdo_round(latent - means, scale_index, tables, slope=self.rdo_slope)
            if not np.array_equal(refined, symbols):
                refined_stream = rans.encode(refined.ravel(), scale_index.ravel(), tables)
                if (self._cost(refined, refined_stream, mean_q, quality, pixels, picture.grayscale, seen)
                        <= self._cost(symbols, y_stream, mean_q, quality, pixels, picture.grayscale, seen)):
                    symbols, y_stream = refined, refined_stream
        if self.restoration:
            restoring = self._restoration(symbols, mean_q, quality, pixels, picture, chosen,
                                          lambda part: work.advance(part * RESTORATION_SYNTHESIS_PART * RESTORATION_SHARE))
            work.advance((1 - RESTORATION_SYNTHESIS_PART) * RESTORATION_SHARE)
        else:
            restoring = None
        header = nicformat.Header(
            version=nicformat.FORMAT_VERSION,
            model_id=self.model.model_id,
            model_hash=self.model.model_hash,
            width=width,
            height=height,
            quality=quality,
            flags=(nicformat.FLAG_GRAYSCALE if picture.grayscale else 0)
            | (nicformat.FLAG_GRAY_AS_RGB if picture.gray_as_rgb else 0)
            | padding_flag,
        )
        sections = {
            nicformat.HYPERLATENT: rans.encode(z_hat.ravel(), self._z_table_ids(z_hat.shape), self.model.z_tables),
            nicformat.LATENT: y_stream,
        }
        if restoring is not None:
            sections[nicformat.RESTORATION] = restoring
        if picture.alpha is not None:
            tag, payload = alpha_section.compress(picture.alpha)
            sections[tag] = payload
            work.advance(ALPHA_SHARE)
        if picture.icc_profile:
            sections[nicformat.ICC_PROFILE] = picture.icc_profile
        if picture.exif:
            sections[nicformat.EXIF] = picture.exif
        if picture.xmp:
            sections[nicformat.XMP] = picture.xmp
        if picture.text:
            sections[text_section.TAG] = text_section.pack(picture.text)
        if picture.resolution is not None:
            sections[resolution_section.TAG] = resolution_section.pack(picture.resolution)
        data = nicformat.pack(header, sections)
        work.finish()
        return data

    # -- decoding ---------------------------------------------------------------------

    @overload
    def decode(self, data: NicSource, *, as_array: Literal[False] = False,
               progress: Callable[[int, int], object] | None = None) -> Image.Image: ...

    @overload
    def decode(self, data: NicSource, *, as_array: Literal[True],
               progress: Callable[[int, int], object] | None = None) -> Pixels: ...

    @overload
    def decode(self, data: NicSource, *, as_array: bool,
               progress: Callable[[int, int], object] | None = None) -> Image.Image | Pixels: ...

    @coding_named
    @_counted("decode")
    def decode(self, data: NicSource, *, as_array: bool = False,
               progress: Callable[[int, int], object] | None = None) -> Image.Image | Pixels:
        """Decompress a ``.nic`` file.

        Args:
            data: the file's bytes (``bytes`` or any buffer of bytes: ``bytearray``,
                ``memoryview``, ``mmap``, a uint8 array), a binary file object (read to its
                end), or its path.
            as_array: return a uint8 array instead of a PIL image: (H, W, 3), or (H, W, 4)
                with alpha; (H, W) or (H, W, 2) for a grayscale source.
            progress: called from the calling thread as the work goes, with ``(done,
                total)`` in whole units of work (about a pixel through the synthesis each; the
                entropy decoding counts for its share of the time): ``(0, total)`` after the
                header is read, then after each tile of the entropy parameters, the latent's
                decoding and each tile of the synthesis, ``done`` growing to ``total``.

        Returns:
            An RGB or RGBA PIL image (L or LA for a grayscale source, whose arrays are
            (H, W) or (H, W, 2); a colour source of three equal channels comes back as RGB or
            RGBA, its channels equal), with ``info["icc_profile"]``, ``info["exif"]`` and
            ``info["xmp"]`` and its resolution as ``info["dpi"]`` (dots per inch, two floats)
            when the file keeps them, and its text as ``image.text`` (a dict,
            keyword to text, empty for none, as Pillow's PNG images have it; a ``Comment`` is
            also in ``info["comment"]``, in UTF-8, as Pillow's JPEG reader gives one, when a
            JPEG segment holds it). Pillow's ``save()`` writes the ICC profile along, but EXIF
            and XMP only when given: ``image.save(f, exif=image.info.get("exif", b""))``, and
            ``xmp=`` for JPEG, WebP and AVIF, and the resolution only as ``dpi=``; text goes
            into PNG through ``pnginfo=``
            (``nicodec decode`` writes them all into the formats that hold them).

        Raises:
            FormatError: the data is not a valid nicodec file.
            ModelMismatchError: the file was made by another model, and not by one whose files
                this model also decodes (``ModelFiles.decodes_files_of``), nor, for the default
                model's codec, by an earlier model the package ships.
            PixelLimitError: the header claims more than ``max_pixels`` pixels (a ``LimitError``).
            ModelError: the synthesis graph does not load (the first decode loads it).
            OutOfMemoryError: memory ran out (while the synthesis loaded, or for the image).
            NicodecError: a path that cannot be read (no such file, no permission; not a
                ``FormatError``: the file was never read), data of another type, ``as_array``
                not a bool or ``progress`` not callable.
        """
        if not isinstance(as_array, (bool, np.bool_)):
            raise NicodecError(f"as_array must be True or False, not {as_array!r}")
        check_progress(progress)
        work = Work(progress)  # started once the header tells the size: (0, total) before the entropy decoding
        try:
            header, sections, alpha, (text, density), _, symbols, mean_q = self._entropy_decode(
                data, lambda header, sections: work.start(
                    int(np.prod(self._padded(header))),
                    1 + ENTROPY_DECODING_SHARE + (RESTORATION_APPLY_SHARE if nicformat.RESTORATION in sections else 0)),
                done=lambda part: work.advance(part * ENTROPY_DECODING_SHARE))
        except _MadeByEarlier as made:
            return made.hand_on(lambda codec, content: codec.decode(content, as_array=as_array, progress=progress))
        self._tile_for(*self._padded(header), warn=True)
        image = self._synthesize(self._y_hat(header, symbols, mean_q), header.quality, done=work.advance)
        pixels = image[0, :, : header.height, : header.width].transpose(1, 2, 0)
        if nicformat.RESTORATION in sections:  # the filter the encoder fitted (checked with the other sections)
            pixels = restoration.apply(pixels, *restoration.unpack(sections[nicformat.RESTORATION]))
            work.advance(RESTORATION_APPLY_SHARE)
        gray = bool(header.flags & nicformat.FLAG_GRAYSCALE)
        if gray:
            pixels = luma(pixels)[:, :, None]
            if header.flags & nicformat.FLAG_GRAY_AS_RGB:  # a colour source of equal channels: as it came
                pixels = np.repeat(pixels, 3, axis=2)
        if alpha is not None:
            pixels = np.dstack([pixels, alpha])
        pixels = np.ascontiguousarray(pixels)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
        if gray and mode == "L":
            pixels = pixels[:, :, 0]
        if as_array:
            work.finish()
            return pixels
        picture = Image.fromarray(pixels, mode)
        if picture.readonly:  # L and RGBA share the array, read-only; a decoded image is the caller's to draw on
            picture = picture.copy()
        if nicformat.ICC_PROFILE in sections:
            picture.info["icc_profile"] = sections[nicformat.ICC_PROFILE]
        if nicformat.EXIF in sections:
            picture.info["exif"] = sections[nicformat.EXIF]
        if nicformat.XMP in sections:
            picture.info["xmp"] = sections[nicformat.XMP]
        text_section.attach(picture, text)
        resolution_section.attach(picture, density)
        work.finish()
        return picture

    @coding_named
    def decode_latents(self, data: NicSource) -> tuple[nicformat.Header, np.ndarray]:
        """Entropy-decode a file up to the synthesis input (for tools that study the latent).

        Args:
            data: the file, as :meth:`decode` takes it.

        Returns:
            ``(header, y_hat)``: the file's header and the synthesis input, float32
            (1, M, H / 16, W / 16) for an image padded to H x W (the inverse gain at the
            header's quality applied, for a variable-rate model).

        Raises:
            FormatError, ModelMismatchError, PixelLimitError, OutOfMemoryError, NicodecError: as
                :meth:`decode`'s.
        """
        try:
            header, _, _, _, _, symbols, mean_q = self._entropy_decode(data)
        except _MadeByEarlier as made:
            return made.hand_on(lambda codec, content: codec.decode_latents(content))
        return header, self._y_hat(header, symbols, mean_q)

    @coding_named
    def decode_symbols(self, data: NicSource) -> tuple[nicformat.Header, np.ndarray, np.ndarray, np.ndarray]:
        """Entropy-decode a file into its integers, and check its alpha section, so that a
        file this accepts is one ``decode`` decodes (``nicodec verify`` relies on it).

        Args:
            data: the file, as :meth:`decode` takes it.

        Returns:
            ``(header, z_hat, symbols, mean_q)``: the hyper-latent symbols, the
            latent's symbols and its fixed-point means, all int32.

        Raises:
            FormatError, ModelMismatchError, PixelLimitError, OutOfMemoryError, NicodecError: as
                :meth:`decode`'s (the synthesis is not loaded).
        """
        try:
            header, _, _, _, z_hat, symbols, mean_q = self._entropy_decode(data)  # alpha, text, resolution checked too
        except _MadeByEarlier as made:
            return made.hand_on(lambda codec, content: codec.decode_symbols(content))
        return header, z_hat, symbols, mean_q

    def _earlier_codec(self, header: nicformat.Header) -> Codec | None:
        """For the default model's codec, the codec of the earlier shipped model that made the
        file (:func:`nicodec.model.shipped_earlier_models`), made at its first file with this
        codec's settings; ``None`` otherwise."""
        key = (header.model_id, header.model_hash)
        if self._earlier_settings is None or key == (self.model.model_id, self.model.model_hash) \
                or key in self.model.decodes_files_of:
            return None
        made = self._earlier.get(key)
        if made is not None:
            return made
        folder = shipped_earlier_models().get(key)
        if folder is None:
            return None
        with self._earlier_lock:
            if key not in self._earlier:
                settings = self._earlier_settings
                if not (folder / f"{PRECISIONS[settings.precision]}.onnx").is_file():
                    settings = dataclasses.replace(settings, precision="fp32")  # the reference, where it kept no other
                self._earlier[key] = Codec(folder, **dataclasses.asdict(settings))
            return self._earlier[key]

    def _entropy_decode(self, data, started: Callable[[nicformat.Header, dict], None] | None = None,
                        done: Callable[[float], None] | None = None):
        """The file's parts, entropy-decoded and checked; ``started`` is called with the header
        (and the sections)
        once it is checked, before the costly part, and ``done`` with the part of the entropy
        decoding done since it was last called (after each tile of the entropy parameters, then
        after the latent's symbols), adding up to 1. A file given by its path is named in the
        errors about it (``decode("photo.png")``), as encode names its images."""
        try:
            return self._entropy_decode_data(data, started, done)
        except (FormatError, ModelMismatchError, LimitError) as exc:
            if not isinstance(data, (str, os.PathLike)):
                raise
            raise _named(exc, data) from None

    def _entropy_decode_data(self, data, started, done):
        content = nic_bytes(data)
        header, sections = nicformat.unpack(content, max_pixels=self.max_pixels)
        earlier = self._earlier_codec(header)
        if earlier is not None:
            raise _MadeByEarlier(earlier, content, data if isinstance(data, (str, os.PathLike)) else None)
        # The same limit as encode: the graphs work on the padded size, up to 16 (or 64) times the pixels.
        multiple = nicformat.padding(header.flags, self.model.downsampling)
        self._check_size(header.width, header.height, multiple)
        try:
            nicformat.check_model(header, self.model.model_id, self.model.model_hash, self.model.decodes_files_of)
        except ModelMismatchError as exc:
            if self._earlier_settings is not None or package_model_for(header.model_id, header.model_hash) is None:
                raise
            mismatch = ModelMismatchError(f"{exc}; the model nicodec ships decodes it")
            mismatch.shipped_decodes = True
            raise mismatch from None
        if self.model.variable_rate and not QUALITY_MIN <= header.quality <= QUALITY_MAX:
            raise FormatError(f"the header's quality {header.quality} is outside {QUALITY_MIN:g}..{QUALITY_MAX:g}")
        if started is not None:
            started(header, sections)
        # Before the costly part: a damaged alpha plane, text or resolution found after the
        # synthesis wasted it all.
        tag = alpha_section.find(sections)
        alpha = alpha_section.decompress(tag, sections[tag], header.width, header.height) if tag else None
        try:
            text = text_section.unpack(sections[text_section.TAG]) if text_section.TAG in sections else None
        except text_section.TooManyEntries as exc:
            warnings.warn(f"{exc} (as nicodec builds before 2026-12-03 wrote); its text is left out",
                          UserWarning, stacklevel=caller_outside())
            text = None
        density = sections.get(resolution_section.TAG)
        density = resolution_section.unpack(density) if density is not None else None
        if nicformat.RESTORATION in sections:
            restoration.unpack(sections[nicformat.RESTORATION])
        z_shape = self._z_shape(header.height, header.width)
        z_hat = _decode_stream(sections, nicformat.HYPERLATENT, self._z_table_ids(z_shape),
                               self.model.z_tables).reshape(z_shape)
        scale_index, mean_q = self._entropy_parameters(
            z_hat, self._y_shape(header.height, header.width, multiple),
            done=None if done is None else lambda part: done(part * ENTROPY_PARAMETERS_PART))
        symbols = _decode_stream(sections, nicformat.LATENT, scale_index.ravel(), self.model.y_tables)
        if done is not None:
            done(1 - ENTROPY_PARAMETERS_PART)
        return header, sections, alpha, (text, density), z_hat, symbols.reshape(mean_q.shape), mean_q

    # -- helpers ----------------------------------------------------------------------

    def _check_size(self, width: int, height: int, multiple: int | None = None) -> None:
        """Refuse an image too large to code, padded to multiples of ``multiple`` or not (by
        default the encoder's finest, the latent's stride)."""
        if multiple is None:
            multiple = self.model.downsampling // 4
        if max(width, height) > nicformat.MAX_SIDE:
            raise LimitError(f"the image is {width}x{height}; nicodec codes sides of at most {nicformat.MAX_SIDE:,} pixels")
        nicformat.check_pixels(width, height, self.max_pixels, multiple)

    def _padding_flag(self, height: int, width: int) -> int:
        """The padding flag the encoder writes for an image of this size: ``FLAG_FINE_PADDING``
        (padded to the latent's stride, 16, not the hyper-latent's, 64: the latent then codes
        no rows or columns of padding alone) where the two paddings differ, else 0, a file
        that nicodec builds from before the flag decode too."""
        d = self.model.downsampling
        if self._fine_padding and nicformat.padded_size(height, width, d // 4) != nicformat.padded_size(height, width, d):
            return nicformat.FLAG_FINE_PADDING
        return 0

    def _pad(self, pixels: np.ndarray, multiple: int | None = None) -> np.ndarray:
        """``pixels`` (H, W, C) padded at the right and bottom edges, by repeating the last
        column and row, to multiples of ``multiple`` (by default the encoder's, as
        :meth:`_padding_flag` chooses it)."""
        height, width = pixels.shape[:2]
        if multiple is None:
            multiple = nicformat.padding(self._padding_flag(height, width), self.model.downsampling)
        return np.pad(pixels, ((0, -height % multiple), (0, -width % multiple), (0, 0)), mode="edge")

    def _padded(self, header: nicformat.Header) -> tuple[int, int]:
        """The padded height and width the networks work on for this file."""
        return nicformat.padded_size(header.height, header.width,
                                     nicformat.padding(header.flags, self.model.downsampling))

    def _encoder_gain(self, quality) -> tuple[float, np.ndarray | None]:
        """The quality to record in the header and the encoder's gain vector (None: single-rate)."""
        self.model.check_takes(quality)
        if not self.model.variable_rate:
            return 0.0, None
        quality = check_quality(self.model.default_quality if quality is None else quality)
        return quality, self.model.gains(quality)[0]

    def _cost(self, symbols: np.ndarray, y_stream: bytes, mean_q: np.ndarray, quality: float,
              pixels: np.ndarray, gray: bool = False, seen: np.ndarray | None = None) -> float:
        """What a file of these y symbols really costs, by the objective the refinement lowers
        on a proxy: the y stream's bits per pixel plus lambda times the mean squared error
        (0..255 scale) of the decoded image against ``pixels`` (the source, unpadded; for a
        grayscale file the decoded luma against the gray). The z stream is left out: both
        candidates share it. The synthesis is the codec's own (fp16 with ``precision="fp16"``).
        ``seen`` (H, W) bool: the pixels whose error counts (None: all)."""
        height, width = pixels.shape[:2]
        decoded = self._synthesize(self._synthesis_input(quality, symbols, mean_q), quality)[0, :, :height, :width]
        counted = height * width if seen is None else int(np.count_nonzero(seen))
        squares = squared_error(decoded.transpose(1, 2, 0), pixels, gray, seen)
        mse = squares / ((1 if gray else 3) * max(counted, 1))
        return 8 * len(y_stream) / (height * width) + self._lmbda(quality) * mse

    def _restoration(self, symbols: np.ndarray, mean_q: np.ndarray, quality: float, pixels: np.ndarray,
                     picture, chosen: bool, done: Callable[[float], None] | None = None) -> bytes | None:
        """The ``REST`` payload of a restoration filter fitted to this file's picture, or None
        where it would not lower the file's cost (:func:`nicodec.restoration.payload_if_it_pays`),
        over the pixels that show (``chosen``: the colour under alpha 0 was the encoder's fill).
        ``done``: as :meth:`_synthesize`'s."""
        height, width = pixels.shape[:2]
        decoded = self._synthesize(self._synthesis_input(quality, symbols, mean_q), quality, done=done)
        decoded = np.ascontiguousarray(decoded[0, :, :height, :width].transpose(1, 2, 0))
        source = pixels if pixels.shape[2] == 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
        seen = picture.alpha > 0 if chosen else None
        return restoration.payload_if_it_pays(decoded, source, self._lmbda(quality), picture.grayscale, seen,
                                              nicformat.SECTION_ENTRY.size)

    def _lmbda(self, quality: float) -> float:
        """The rate-distortion trade-off at ``quality`` (a single-rate model has one)."""
        return self.model.lmbda(quality if self.model.variable_rate else None)

    def _refine(self, y: np.ndarray, mean_q: np.ndarray, scale_index: np.ndarray, padded: np.ndarray,
                height: int, width: int, quality: float, progress=None, seen: np.ndarray | None = None) -> np.ndarray:
        """``y`` after ``self.refine`` gradient steps (``nicodec.refine``), the distortion
        counted on the image's ``height`` x ``width`` pixels, not the padding beyond them
        (which the decoder crops away), and only where ``seen`` (H, W) is true when given,
        where the gradient graph takes a weight."""
        image = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32)
        weight = None
        pixels = image.shape[2] * image.shape[3]
        if self._gradient_weighted:
            weight = np.zeros((1, 1, *image.shape[2:]), dtype=np.float32)
            weight[:, :, :height, :width] = 1.0 if seen is None else seen
            pixels = height * width if seen is None else max(int(np.count_nonzero(seen)), 1)
        inverse = self.model.gains(quality)[1].reshape(1, -1, 1, 1) if self.model.variable_rate else 1.0
        return refine(
            y, self._means(mean_q), self.model.scale_table[scale_index],
            lambda y_hat: self._synthesis_gradient(y_hat, image, weight, quality),
            inverse, self._lmbda(quality), pixels,
            self.refine, progress=progress,
        )

    def _synthesis_gradient(self, y_hat: np.ndarray, image: np.ndarray, weight: np.ndarray | None = None,
                            quality: float | None = None) -> np.ndarray:
        """The synthesis gradient graph on tiles like the transforms, with twice the synthesis's
        context (the gradient reaches as far back as the synthesis reaches forward).
        ``weight`` (1, 1, H, W) weighs each pixel's squared error (``None``: all 1); ``quality``
        is the file's, for a synthesis that takes it (:meth:`_quality_input`)."""
        d = self.model.downsampling
        margin = 2 * max(d, self.margin // 2 // d * d)
        spatial = {"image": (image, d)}
        if self._gradient_weighted:
            if weight is None:
                weight = np.ones((1, 1, *image.shape[2:]), dtype=np.float32)
            spatial["weight"] = (weight, d)
        elif weight is not None:
            raise ValueError("this synthesis gradient graph takes no pixel weight")
        graph = self._session("synthesis_gradient")
        (gradient,) = self._run_tiled(graph, "y_hat", y_hat, 4, (4,), margin,
                                      self._quality_input("synthesis_gradient", quality), spatial=spatial)
        return gradient

    def _quality_input(self, graph: str, quality: float | None) -> dict[str, np.ndarray]:
        """The ``quality`` input of a synthesis graph (loaded) that takes one (a post-filter that
        sees the quality, vr-5f's): the file header's, float32 (1, 1, 1, 1); none for one that does not."""
        if "quality" not in self._input_names[graph]:
            return {}
        if quality is None:
            raise ValueError("this synthesis takes the quality")
        return {"quality": np.full((1, 1, 1, 1), quality, dtype=np.float32)}

    def _run_tiled(self, session, name: str, array: np.ndarray, unit_in: int, unit_out: tuple[int, ...], margin: int,
                   fixed: dict[str, np.ndarray] | None = None, spatial: dict[str, tuple[np.ndarray, int]] | None = None,
                   done: Callable[[float], None] | None = None, size: tuple[int, int] | None = None):
        """:func:`nicodec.tiling.run_tiled` with this codec's tiles (:meth:`_tile_for`) and
        its ``release_memory``. With the default margins the files and pixels are those of a
        whole-image run: the margins cover the receptive fields (192 and 64 pixels against the
        shipped model's 142 and 37), and the floating point came out identical too where
        measured (``tests/test_codec.py``, ``benchmarks/large_image.py``)."""
        return run_tiled(session, name, array, unit_in, unit_out, margin, self.model.downsampling, self._tile_for,
                         fixed, spatial, done, size, self.release_memory)

    def _tile_for(self, height: int, width: int, warn: bool = False) -> int:
        """The tile to run an image of ``height`` x ``width`` pixels (padded) on: ``tile``'s, or
        with ``tile=None`` the largest of :data:`AUTO_TILES` whose estimated growth fits in the
        memory free now; with ``warn``, a warning where none does (Linux then ends the process
        without a word)."""
        if not self.auto_tile:
            return self.tile
        free, resident = memory_free(), resident_bytes()
        if free is None or resident is None:
            return self.tile
        # What the process grew by since it held least as a call began (the calls in progress,
        # and the arena earlier calls left) is used again; calls at once (--jobs) each need room.
        calls = max(1, self._calls)
        held = 0 if self._idle_resident is None else max(0, resident - self._idle_resident)
        kind = getattr(_CALL, "kind", None) or "encode"  # outside a call, the larger
        d = self.model.downsampling
        margin = self.margin if kind == "encode" else max(d, self.margin // 2 // d * d)
        for tile in AUTO_TILES:
            if MEMORY_HEADROOM * growth_bytes(kind, tile, height, width, margin, d) * calls <= free + held:
                return tile
        if warn:
            warnings.warn("this image may need more memory than is free, even on tiles of 256 pixels: the system may "
                          "end the process (Linux prints 'Killed'); close other programs, or code a smaller image"
                          + (", or fewer at once (--jobs)" if calls > 1 else ""), UserWarning,
                          stacklevel=caller_outside())
        return AUTO_TILES[-1]

    def _entropy_parameters(self, z_hat: np.ndarray, shape: tuple[int, int] | None = None,
                            done: Callable[[float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``scale_index`` and ``mean_q`` for ``z_hat``, on tiles like the transforms (``done``:
        as :meth:`_run_tiled`'s), cut to the latent's ``shape`` where given (its height and
        width: four times z's, less the rows and columns a finely padded image has not).

        Tiled, the integers are exactly those of a whole-image run: h_s sees at most 1.75
        z positions either side (a 3x3 convolution at each of z's, twice z's and four times
        z's resolution), the margin is ``ENTROPY_MARGIN`` positions, and integer arithmetic
        has no rounding that could depend on the tile.
        """
        if not self.model.integer_entropy:
            results = self._session("entropy_parameters").run(
                None, {"z_hat": z_hat}, shrinking_run_options() if self.release_memory else None)
            if done is not None:
                done(1.0)
        else:
            margin = ENTROPY_MARGIN * self.model.downsampling
            results = self._run_tiled(self._session("entropy_parameters"), "z_hat", z_hat, 1, (4, 4), margin, done=done,
                                      size=shape)
        if shape is None:
            return results
        rows, cols = shape
        if any(r.shape[2] < rows or r.shape[3] < cols for r in results):
            raise ModelError(f"the entropy-parameter graph gave outputs of shapes {[r.shape for r in results]}, "
                             f"smaller than the latent's {rows}x{cols}")
        return tuple(r if r.shape[2:] == (rows, cols) else np.ascontiguousarray(r[:, :, :rows, :cols])
                     for r in results)

    def _z_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        d = self.model.downsampling
        return (1, self.model.hyper_channels, -(-height // d), -(-width // d))

    def _y_shape(self, height: int, width: int, multiple: int) -> tuple[int, int]:
        """The latent's height and width for an image padded to multiples of ``multiple``."""
        stride = self.model.downsampling // 4
        padded_height, padded_width = nicformat.padded_size(height, width, multiple)
        return padded_height // stride, padded_width // stride

    def _y_hat(self, header: nicformat.Header, symbols: np.ndarray, mean_q: np.ndarray) -> np.ndarray:
        """The synthesis input of a file (:meth:`_synthesis_input` at the header's quality)."""
        return self._synthesis_input(header.quality, symbols, mean_q)

    def _synthesis_input(self, quality: float, symbols: np.ndarray, mean_q: np.ndarray) -> np.ndarray:
        """Each symbol plus its mean, in float32 (as FORMAT.md defines), times the inverse
        gain at ``quality`` for a variable-rate model."""
        y_hat = symbols.astype(np.float32) + self._means(mean_q)
        if self.model.variable_rate:
            y_hat *= self.model.gains(quality)[1].reshape(1, -1, 1, 1)
        return y_hat

    def _synthesize(self, y_hat: np.ndarray, quality: float, done: Callable[[float], None] | None = None) -> np.ndarray:
        """The decoder graph on ``y_hat``, in tiles: (1, 3, H, W) uint8 of the padded size
        (``quality``: the file's, given to a graph that takes it; ``done``: as :meth:`_run_tiled`'s)."""
        d = self.model.downsampling
        # The synthesis needs less context than the analysis: its receptive field reaches 30
        # pixels (three 3x3 convolutions at 1/16, 1/8 and 1/4 of the size, then a 5x5
        # transposed one at 1/2), 37 with a post-filter (vr-5e's, vr-5f's: three 3x3 ones at 1/2 on 2x2 blocks), so 64,
        # half the default analysis margin, covers it.
        margin = max(d, self.margin // 2 // d * d)
        graph = self._session("decoder")
        (image,) = self._run_tiled(graph, "y_hat", y_hat, 4, (d,), margin, self._quality_input("decoder", quality),
                                   done=done)
        return image

    def _means(self, mean_q: np.ndarray) -> np.ndarray:
        # Exact in float32: |mean_q| < 2**24 and the divisor is a power of two.
        return mean_q.astype(np.float32) / np.float32(1 << self.model.mean_bits)

    @staticmethod
    def _z_table_ids(shape) -> np.ndarray:
        _, channels, h, w = shape
        return np.repeat(np.arange(channels, dtype=np.int32), h * w)


_STREAMS = {nicformat.HYPERLATENT: "the hyperlatent's", nicformat.LATENT: "the latent's"}


class _MadeByEarlier(Exception):
    """Raised inside a decode when the file is one for :meth:`Codec._earlier_codec`'s codec:
    the decode starts again there, with the bytes already read (a path is not read twice: a
    pipe has nothing left the second time, and a file may have changed), and its errors name
    the path the file was given by, as :meth:`Codec._entropy_decode` names them."""

    def __init__(self, codec: Codec, content: bytes, path) -> None:
        super().__init__(codec.model_id)
        self.codec, self.content, self.path = codec, content, path

    def hand_on(self, call: Callable[[Codec, bytes], _R]) -> _R:
        try:
            return call(self.codec, self.content)
        except (FormatError, ModelMismatchError) as exc:
            if self.path is None:
                raise
            raise _named(exc, self.path) from None


def _named(exc: NicodecError, path) -> NicodecError:
    """``exc`` again, its message led by the path of the file it is about."""
    named = type(exc)(f"{os.fsdecode(path)}: {exc}")
    named.__dict__.update(exc.__dict__)  # what it says beside its message (ModelMismatchError.shipped_decodes)
    return named


def _decode_stream(sections: dict[bytes, bytes], tag: bytes, table_ids: np.ndarray, tables) -> np.ndarray:
    """A section's rANS stream decoded; its damage named with the section."""
    try:
        return rans.decode(sections[tag], table_ids, tables)
    except FormatError as exc:
        raise FormatError(f"the file is damaged: {exc} (the {tag.decode('ascii')} section, {_STREAMS[tag]} "
                          "symbols)") from None


def _has_lambda(model: ModelFiles) -> bool:
    """Whether the model's manifest gives the rate-distortion trade-off its files were made for."""
    try:
        model.lmbda()
    except ModelError:
        return False
    return True


