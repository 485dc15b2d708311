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

This module holds the ``Codec``'s calls and the loading of its graphs; the steps behind them
are in ``nicodec.transforms`` (the graphs on tiles), ``nicodec.encoding`` and ``nicodec.decoding``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar, cast, overload

import numpy as np
from PIL import Image

from . import alpha as alpha_section
from . import exactness, rans, restoration
from . import format as nicformat
from . import resolution as resolution_section
from . import text as text_section
from .decoding import DecodingSteps, _MadeByEarlier
from .distortion import luma
from .encoding import EncodingSteps
from .errors import ModelError, NicodecError
from .graphs import check_graph
from .images import read_picture
from .inputs import ImageSource, NicSource, Pixels, Real, Strip, Whole, check_flags, stripped_kinds
from .memory import coding_named, loading_named
from .model import ModelFiles
from .pil_pixels import equal_channels
from .progress import (ALPHA_SHARE, ENTROPY_DECODING_SHARE, ENTROPY_ENCODING_SHARE, ENTROPY_PARAMETERS_PART,
                       REFINEMENT_CHOICE_SHARE, REFINEMENT_STEP_SHARE, RESTORATION_APPLY_SHARE, RESTORATION_SHARE,
                       RESTORATION_SYNTHESIS_PART, Work, check_progress)
from .quantize import rdo_round, round_symbols
from .machine import resident_bytes
from .sessions import CPU, create_session, resolve_providers
from .settings import PRECISIONS, CodecSettings, Providers
from .tiling import AUTO_TILES
from .transforms import _CALL
from .transparency import fill_transparent

__all__ = ["AUTO_TILES", "DEFAULT_MAX_PIXELS", "Codec", "ImageSource", "NicSource", "Pixels", "Real", "Whole"]

DEFAULT_MAX_PIXELS = nicformat.DEFAULT_MAX_PIXELS


_P = ParamSpec("_P")
_R = TypeVar("_R")


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


class Codec(EncodingSteps, DecodingSteps):
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
            ``"OpenVINOExecutionProvider"``), each alone or, as onnxruntime takes them, paired
            with a dict of its options (``[("OpenVINOExecutionProvider", {"device_type":
            "GPU"})]``). The entropy-parameter graph always runs on the CPU provider.
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

    @loading_named
    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        providers: Providers = "auto",
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
        chosen = resolve_providers(settings.given_providers())
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

    @loading_named
    def prepare(self, *, encode: bool = True, decode: bool = True) -> "Codec":
        """Load now the graphs that encoding (with ``refine``, its gradient and synthesis too; with
        ``restoration``, the synthesis)
        and decoding run, rather than at their first use: for a first image as fast as the
        next, or a model's or provider's problem raised here rather than by the first image.

        The entropy parameters' graph, which both run, is loaded when the codec is made, and
        again here in a process forked from one that had it (a web server's worker started
        with ``--preload``), which drops every graph: its exactness check runs here, not at the
        first image.

        Args:
            encode: load the graphs that encoding runs.
            decode: load the synthesis graph that decoding runs.

        Returns:
            The codec itself.

        Raises:
            ModelError: ``encode`` and the model cannot encode (its ``encoder.onnx`` is missing,
                as in a copy made to decode only, or damaged), or a graph does not load.
            OutOfMemoryError: memory ran out while a graph loaded.
            ExactnessError: this onnxruntime computes the entropy parameters wrongly (in a
                forked process, where the graph is loaded and checked anew).
            NicodecError: an explicitly chosen provider could not run a graph.
        """
        for name, value in (("encode", encode), ("decode", decode)):
            if not isinstance(value, (bool, np.bool_)):
                raise NicodecError(f"{name} must be True or False, not {value!r}")
        graphs = (["encoder"] + (["synthesis_gradient"] if self.refine else [])
                  + (["decoder"] if self.refine or self.restoration else [])) if encode else []
        for graph in ["entropy_parameters"] + graphs + (["decoder"] if decode else []):
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
    def encode(self, image: ImageSource, *, quality: Real | None = None, strip: Strip = False, exact: bool = False,
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
            strip: True leaves out the ICC profile, EXIF data, XMP packet, text and
                resolution; the names of some of them (``{"exif", "xmp"}``; the kinds are
                ``"icc"``, ``"exif"``, ``"xmp"``, ``"text"`` and ``"dpi"``) leave out those.
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
            NicodecError: ``strip`` is neither a bool nor kinds of metadata, ``exact`` is not a
                bool, or ``progress`` is not callable.
        """
        check_flags(exact=exact)
        stripped_kinds(strip)
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


def _has_lambda(model: ModelFiles) -> bool:
    """Whether the model's manifest gives the rate-distortion trade-off its files were made for."""
    try:
        model.lmbda()
    except ModelError:
        return False
    return True


