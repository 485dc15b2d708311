"""The encoder's own steps of :class:`nicodec.Codec`: padding, the quality's gain, the
refinement of the latent and the restoration filter, with the cost that judges them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import format as nicformat
from . import restoration
from .distortion import squared_error
from .model import check_quality
from .refine import refine
from .transforms import Transforms


class EncodingSteps(Transforms):
    """What :meth:`nicodec.Codec.encode` runs beside the graphs the decoder shares."""

    refine: int  # gradient steps on the latent (Codec(refine=...)); refine() is nicodec.refine's

    _fine_padding = True
    """Pad images to multiples of the latent's stride (16) where that differs from the
    hyper-latent's (64), with ``FLAG_FINE_PADDING``; ``False`` (for comparisons, such as
    ``benchmarks/padding.py``) pads to 64 as nicodec before 0.7.0 did."""

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

    def _encoder_gain(self, quality) -> tuple[float, np.ndarray | None]:
        """The quality to record in the header and the encoder's gain vector (None: single-rate)."""
        self.model.check_takes(quality)
        if not self.model.variable_rate:
            return 0.0, None
        quality = check_quality(self.model.default_quality if quality is None else quality)
        return quality, self.model.gains(quality)[0]

    def _lmbda(self, quality: float) -> float:
        """The rate-distortion trade-off at ``quality`` (a single-rate model has one)."""
        return self.model.lmbda(quality if self.model.variable_rate else None)

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

    @property
    def _gradient_weighted(self) -> bool:
        """Whether the synthesis gradient graph takes a pixel weight (graphs exported before it
        count the padding too)."""
        self._session("synthesis_gradient")
        return "weight" in self._input_names["synthesis_gradient"]

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
