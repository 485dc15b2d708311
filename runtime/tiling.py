"""Graphs run on overlapping tiles, so that memory is bounded by the tile, and the tiles
chosen by the memory a run needs.

A convolutional graph's output at a position depends on its input within the receptive field
only, so an image can run in windows: each tile's core with a margin of context on each side,
of which only the core's output is kept (:func:`spans`, :func:`run_tiled`). With margins that
cover the receptive fields the tiles give the output of a whole-image run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ModelError
from .sessions import shrinking_run_options

AUTO_TILES = (1024, 512, 256)
"""The tiles ``tile=None`` (the default) chooses among for each image: the largest whose
estimated growth (:data:`GROWTH_MIB`) the memory free holds (``machine.memory_free``); the
smallest where none does, or 1024 where the memory free cannot be told (off Linux)."""

GROWTH_MIB = {"encode": {1024: (580, 17), 512: (450, 13.5), 256: (390, 18.5)},
              "decode": {1024: (590, 19), 512: (820, 12.5), 256: (760, 13)}}
"""How much a process's resident memory grows to encode or decode an image with each tile, in
MiB: per megapixel of the largest window a graph runs on (the analysis's, with its margin of
192 pixels, to encode; the synthesis's, with 64, to decode), and per megapixel of the image
(the picture, its latent, the output). Drawn above what was measured (2 threads, vr-5f,
2026-12-05 and 06): the peaks of ``benchmarks/results/large_image.json``,
``large_image_12mp.json`` and ``large_image_24mp.json`` (4, 12 and 24 megapixels) less the
110 MiB a process holds before it codes (Python, numpy, onnxruntime and the model's graphs:
114 MiB with the encoder's loaded, 139 with both), and the growth of fresh processes coding
mosaics of 768x512, 1024x1024 and 1408x1408, images of one window (to encode 193, 617 and
830 MiB at 1024; 156, 197 and 357 at 512; 111, 164 and 180 at 256; to decode 225, 581, 373;
145, 228, 238; 91, 116, 129). onnxruntime's arena grows in blocks, so the growth is not
proportional: the estimate is above every point, by up to half at 1408x1408."""

MEMORY_HEADROOM = 1.1
"""How much more than the estimated growth (:data:`GROWTH_MIB`) the memory free must be for a
tile to be chosen: the estimate's error, and other processes'."""

ENTROPY_MARGIN = 2
"""Hyper-latent positions of context around each tile of the entropy-parameter graph."""


def spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Cut ``range(length)`` into tiles ``(start, end, low, high)``: each keeps ``start:end`` of
    a run on ``low:high``, its core with ``margin`` of context on each side within the length.

    No window is longer than ``tile + 2 * margin``, an inner tile's, and there are as few as
    that allows, of about equal windows: a tile at an edge has no context to take on that side,
    so it keeps up to ``tile + margin`` (a length up to ``tile + 2 * margin`` is one window).
    Tiles of ``tile`` from 0 cut 1,088 pixels into 1,024 and a sliver of 64 that took 192 of
    context, and ran the analysis on 1.53 times the image's area (a 1088x1088 image encoded in
    1.18 s, now 0.81; 1920x1080, 1.48 times the area, now 1.2).
    """
    if length <= tile + 2 * margin:
        return [(0, length, 0, length)]
    count = -(-(length - 2 * margin) // tile)  # edges keep tile + margin, inner tiles tile
    total = length + 2 * margin * (count - 1)  # the windows' lengths together
    cores, start = [], 0
    for number in range(count - 1):
        window = total // count + (number < total % count)  # windows within one of each other
        end = max(start - margin, 0) + window - margin
        cores.append((start, end))
        start = end
    cores.append((start, length))
    return [(start, end, max(start - margin, 0), min(end + margin, length)) for start, end in cores]


def growth_bytes(kind: str, tile: int, height: int, width: int, margin: int, unit: int) -> float:
    """The estimated growth (:data:`GROWTH_MIB`) of a process that runs a ``kind`` of call
    (``"encode"``, ``"decode"``) on an image of ``height`` x ``width`` pixels (padded) in tiles
    of ``tile`` with ``margin`` pixels of context, both multiples of ``unit`` (one z position)."""
    window = 1
    for side in (height, width):
        window *= max(high - low for _, _, low, high in spans(-(-side // unit), tile // unit, margin // unit)) * unit
    per_window, per_megapixel = GROWTH_MIB[kind][tile]
    return (per_window * window + per_megapixel * height * width) / 1e6 * 2 ** 20


def run_tiled(session, name: str, array: np.ndarray, unit_in: int, unit_out: tuple[int, ...], margin: int,
              unit: int, tile_for: Callable[[int, int], int], fixed: dict[str, np.ndarray] | None = None,
              spatial: dict[str, tuple[np.ndarray, int]] | None = None, done: Callable[[float], None] | None = None,
              size: tuple[int, int] | None = None, release_memory: bool = False) -> list[np.ndarray]:
    """Run a convolutional graph (an onnxruntime session) on overlapping tiles of ``array``
    (1, C, H, W), its input ``name``.

    The image is cut into a grid of units (one z position, ``unit`` pixels: ``unit_in``
    elements of ``array``, ``unit_out[k]`` elements of output ``k``); each tile of
    ``tile_for(height, width)`` pixels (given the image's size in pixels, whole units) is run
    with ``margin`` pixels of context on each side, and only its centre is kept, so memory is
    bounded by the tile (:func:`spans`: a window is at most ``tile + 2 * margin`` a side, a
    tile at the image's edge keeping more). Images that fit in one tile run whole, with the
    run options that hand the arena's memory back after the run where ``release_memory``;
    those that fit in one window as one tile (the memory handed back after the run).

    ``fixed`` holds further inputs given whole to every tile (the encoder's gain, the
    synthesis's quality); ``size``, the height and width every output is cut to (the
    entropy parameters of a finely padded image: its latent's), written at that size rather
    than cut after; ``spatial`` further inputs cut into the same tiles, each ``(array,
    elements per unit)`` (the image beside the latent, for the synthesis gradient). ``done``,
    if given, is called after each tile with the part of the image it covered (1.0 for a
    whole run).

    Returns:
        The graph's outputs, in its order.

    Raises:
        ModelError: the graph gave an output too small for its part of the image.
    """
    # In units, the last one partial for a finely padded image (its outputs then cut to
    # their elements: a tile reaching the image's end runs on that partial unit, as a whole-image run does).
    rows, cols = -(-array.shape[2] // unit_in), -(-array.shape[3] // unit_in)
    tile, margin = tile_for(rows * unit, cols * unit) // unit, margin // unit
    fixed = fixed or {}
    inputs = {name: (array, unit_in), **(spatial or {})}
    if rows <= tile and cols <= tile:
        results = session.run(None, {**{k: a for k, (a, _) in inputs.items()}, **fixed},
                              shrinking_run_options() if release_memory else None)
        if done is not None:
            done(1.0)
        return results
    shrinking = shrinking_run_options()  # memory for one tile at a time, not the sum of their shapes
    outputs = None
    for r0, r1, rlo, rhi in spans(rows, tile, margin):
        for c0, c1, clo, chi in spans(cols, tile, margin):
            parts = {k: np.ascontiguousarray(a[:, :, rlo * u : rhi * u, clo * u : chi * u]) for k, (a, u) in inputs.items()}
            results = session.run(None, {**parts, **fixed}, shrinking)
            if outputs is None:
                outputs = [
                    np.empty((1, r.shape[1], *(size or (-(-array.shape[2] * u // unit_in),
                                                        -(-array.shape[3] * u // unit_in)))),
                             dtype=r.dtype) for r, u in zip(results, unit_out)
                ]
            for out, result, u in zip(outputs, results, unit_out):
                # The image's last unit may be partial, or cut (``size``): the slice ends there.
                into = out[:, :, r0 * u : r1 * u, c0 * u : c1 * u]
                part = result[:, :, (r0 - rlo) * u :, (c0 - clo) * u :][:, :, : into.shape[2], : into.shape[3]]
                if part.shape != into.shape:
                    raise ModelError(f"the graph gave an output of shape {result.shape} for a window of "
                                     f"{rhi - rlo}x{chi - clo} units, too small for its part {into.shape}")
                into[...] = part
            if done is not None:
                done((r1 - r0) * (c1 - c0) / (rows * cols))
    return outputs
