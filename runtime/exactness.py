"""A check, when a codec is made, that this onnxruntime computes the entropy parameters exactly.

The integer entropy-parameter graph is exact by construction on a correct runtime, but a
runtime can be wrong, and its faults can depend on the input's shape:

- onnxruntime 1.21 to 1.31 compute an int64 ``Max`` of values of 2**31 and more as 0 on
  x86-64 (measured with 1.31.1: a Kodak image coded at 21 bpp instead of 0.3, and its file
  refused by every other version). Graphs exported since nicodec-mshp-vr-2 give ``Max`` and
  ``Min`` only smaller values, which those versions get right.
- onnxruntime 1.21 to 1.24 compute some outputs of ``ConvInteger`` wrongly on some x86-64
  CPUs (seen on an Intel Xeon: the last channel of each block of 32, at positions past the
  16th, garbage in the millions) for about half the input sizes, whatever the graph: of the
  hyper-latents from 1 x 1 to 8 x 8, 30 of 64, 5 x 5, 3 x 7, 2 x 3 and 1 x 6 among them;
  4 x 4, 5 x 7, or a Kodak image, not. On an AMD EPYC (AVX-512 VNNI) 1.24.4 computed all 64
  sizes right: the fault follows the CPU's kernels, which is why the check runs the graph.

A file coded with wrong tables decodes to garbage on every correct machine, so the check runs
the graph on fixed inputs, chosen to reach the accumulators' extremes and blocks that end
part-way, and compares the integers with the digest the exporter computed from a numpy int64
reference (the manifest's ``entropy_check``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from .errors import ExactnessError

PROBE_VERSION = 2
"""The probe that ``nicodec-export`` writes; earlier models carry probe 1, which is still checked."""
PROBE_SHAPES = {1: ((4, 4),), 2: ((4, 4), (5, 5), (3, 7), (2, 3), (1, 6))}
"""The probe inputs' (height, width), in order, per probe version."""
KNOWN_FAULTY = {(1, minor): "ConvInteger and int64 Max" for minor in range(21, 25)}
KNOWN_FAULTY.update({(1, minor): "int64 Max" for minor in range(25, 32)})
"""onnxruntime releases (major, minor) with a known fault in the graph's operators on x86-64."""


def probe(channels: int, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """One fixed input, int32 (1, ``channels``, height, width): values spread over -128..127 by a
    multiplicative hash of the flat index (integer arithmetic only, the same on every machine),
    then 127 in row 0 and -128 in row 1, and where row and column are both in 2..3 (a block of
    up to 2 x 2) 127 in even channels and -128 in odd ones."""
    height, width = shape
    i = np.arange(channels * height * width, dtype=np.uint64)
    z = ((i * np.uint64(2654435761) + np.uint64(40503)) >> np.uint64(9)) % np.uint64(256)
    z = (z.astype(np.int64) - 128).reshape(1, channels, height, width)
    z[:, :, 0, :] = 127
    z[:, :, 1:2, :] = -128
    z[:, ::2, 2:4, 2:4] = 127
    z[:, 1::2, 2:4, 2:4] = -128
    return z.astype(np.int32)


def probes(channels: int, version: int = PROBE_VERSION) -> list[np.ndarray]:
    """The inputs of probe ``version``, in order (probe 1 is the 4 x 4 input alone)."""
    return [probe(channels, shape) for shape in PROBE_SHAPES[version]]


def digest(arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 of the arrays as little-endian int32 in C order, one after another: for each
    probe input in turn, its ``scale_index`` then its ``mean_q``."""
    return hashlib.sha256(b"".join(np.ascontiguousarray(a, "<i4").tobytes() for a in arrays)).hexdigest()


def check(session, expected: str, channels: int, model_id: str, version: int = PROBE_VERSION) -> None:
    """Run the entropy-parameter ``session`` on the inputs of probe ``version`` and compare the
    digest of its outputs with ``expected``.

    Raises:
        ExactnessError: the integers differ: this runtime would code with the wrong tables.
    """
    import onnxruntime

    release = onnxruntime.__version__
    fault = KNOWN_FAULTY.get(tuple(int(part) for part in release.split(".")[:2] if part.isdigit()))
    outputs = []
    for z_hat in probes(channels, version):
        outputs.extend(session.run(None, {"z_hat": z_hat})[:2])
    # Probe 1, a 4 x 4 input alone, cannot show the ConvInteger fault: such releases are refused by name.
    convinteger = fault is not None and "ConvInteger" in fault
    if digest(outputs) != expected or (version == 1 and convinteger):
        if fault and (version == 1 or convinteger):
            from .sessions import OWN_BUILDS, installed_build

            build, fixed = installed_build()[0], "1.32" if version == 1 else "1.25"
            if build in OWN_BUILDS:
                advice = f"This release has a known fault ({fault}); install {build} {fixed} or newer, or 1.17 to 1.20"
            else:  # another build (onnxruntime-openvino's newest was 1.24.1 on 2026-12-07)
                advice = (f"This release has a known fault ({fault}); install {build} 1.17 to 1.20 (or {fixed} or "
                          "newer, once it has one), or onnxruntime with nicodec's [cpu] extra in its place")
        else:
            advice = "Install another onnxruntime version, or check that the model folder is intact"
        raise ExactnessError(
            f"onnxruntime {release} computes the entropy parameters of {model_id} wrongly (its integers differ "
            "from the model's reference on fixed test inputs, or it has a fault they cannot show), so its files "
            f"would not decode on other machines, nor theirs here. {advice}"
        )
