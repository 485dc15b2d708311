"""A check, when a codec is made, that this onnxruntime computes the entropy parameters exactly.

The integer entropy-parameter graph is exact by construction on a correct runtime, but a
runtime can be wrong: onnxruntime 1.21 to 1.31 compute an int64 ``Max`` of values of 2**31
and more as 0 on x86-64 (measured with 1.31.1: a Kodak image coded at 21 bpp instead of 0.3,
and its file refused by every other version). A file coded with wrong tables decodes to
garbage on every correct machine, so the check runs the graph once on a fixed input, chosen
to reach the accumulators' extremes, and compares the integers with the digest the exporter
computed from a numpy int64 reference (the manifest's ``entropy_check``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .errors import ExactnessError

PROBE_VERSION = 1
PROBE_SIDE = 4
KNOWN_FAULTY = {(1, minor) for minor in range(21, 32)}
"""onnxruntime releases (major, minor) whose int64 Max is wrong on x86-64 (1.21.0 to 1.31.1)."""


def probe(channels: int) -> np.ndarray:
    """The fixed input, int32 (1, ``channels``, 4, 4): values spread over -128..127 by a
    multiplicative hash (integer arithmetic only, the same on every machine), a row of 127 and
    one of -128 at the top, and a 2 x 2 block of each extreme in alternate channels."""
    i = np.arange(channels * PROBE_SIDE * PROBE_SIDE, dtype=np.uint64)
    z = ((i * np.uint64(2654435761) + np.uint64(40503)) >> np.uint64(9)) % np.uint64(256)
    z = (z.astype(np.int64) - 128).reshape(1, channels, PROBE_SIDE, PROBE_SIDE)
    z[:, :, 0, :] = 127
    z[:, :, 1, :] = -128
    z[:, ::2, 2:4, 2:4] = 127
    z[:, 1::2, 2:4, 2:4] = -128
    return z.astype(np.int32)


def digest(scale_index: np.ndarray, mean_q: np.ndarray) -> str:
    """SHA-256 of the two outputs as little-endian int32, scale indices first."""
    return hashlib.sha256(b"".join(np.ascontiguousarray(a, "<i4").tobytes() for a in (scale_index, mean_q))).hexdigest()


def check(session, expected: str, channels: int, model_id: str) -> None:
    """Run the entropy-parameter ``session`` on :func:`probe` and compare with ``expected``.

    Raises:
        ExactnessError: the integers differ: this runtime would code with the wrong tables.
    """
    scale_index, mean_q = session.run(None, {"z_hat": probe(channels)})[:2]
    if digest(scale_index, mean_q) != expected:
        import onnxruntime

        version = onnxruntime.__version__
        known = tuple(int(part) for part in version.split(".")[:2] if part.isdigit()) in KNOWN_FAULTY
        raise ExactnessError(
            f"onnxruntime {version} computes the entropy parameters of {model_id} wrongly (its integers differ "
            "from the model's reference on a fixed test input), so its files would not decode on other machines, "
            "nor theirs here. " + ("onnxruntime 1.21 to 1.31 have this fault (their int64 Max); install onnxruntime "
                                   "1.32 or newer, or 1.17 to 1.20" if known else
                                   "Install another onnxruntime version, or check that the model folder is intact")
        )
