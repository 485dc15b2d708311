"""The codec's graphs run on an image's arrays: the shapes the latents take, tiles sized for
the memory free, the entropy parameters and the synthesis.

:class:`Transforms` is the part of :class:`nicodec.Codec` that both directions share; the
encoder's own steps are in :mod:`nicodec.encoding`, the decoder's in :mod:`nicodec.decoding`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import format as nicformat
from .errors import LimitError, ModelError
from .machine import memory_free, resident_bytes
from .model import ModelFiles
from .sessions import caller_outside, shrinking_run_options
from .tiling import AUTO_TILES, ENTROPY_MARGIN, MEMORY_HEADROOM, growth_bytes, run_tiled

_CALL = threading.local()
"""``kind``: the coding call (``"encode"``, ``"decode"``) the thread is in, the outermost."""


class Transforms:
    """The graphs of a codec's model on arrays, in tiles: the model, the settings and the
    sessions are the codec's."""

    model: ModelFiles
    max_pixels: int
    tile: int
    auto_tile: bool
    margin: int
    release_memory: bool
    _calls: int
    _idle_resident: int | None
    _input_names: dict[str, frozenset[str]]

    def _session(self, graph: str) -> Any:
        """The onnxruntime session of ``graph``, loaded at its first use (:class:`nicodec.Codec`'s)."""
        raise NotImplementedError

    def _check_size(self, width: int, height: int, multiple: int | None = None) -> None:
        """Refuse an image too large to code, padded to multiples of ``multiple`` or not (by
        default the encoder's finest, the latent's stride)."""
        if multiple is None:
            multiple = self.model.downsampling // 4
        if max(width, height) > nicformat.MAX_SIDE:
            raise LimitError(f"the image is {width}x{height}; nicodec codes sides of at most {nicformat.MAX_SIDE:,} pixels")
        nicformat.check_pixels(width, height, self.max_pixels, multiple)

    def _padded(self, header: nicformat.Header) -> tuple[int, int]:
        """The padded height and width the networks work on for this file."""
        return nicformat.padded_size(header.height, header.width,
                                     nicformat.padding(header.flags, self.model.downsampling))

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
