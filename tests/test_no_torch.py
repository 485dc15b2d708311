"""The runtime never imports torch or onnx, and works where importing torch fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys

    class Block:
        # Make torch and onnx unimportable, as on a machine without them.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "onnx"}:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    import nicodec, nicodec.cli, nicodec.codec, nicodec.format, nicodec.rans

    codec = nicodec.Codec(providers="cpu")
    image = (np.arange(64 * 96 * 3) % 251).astype(np.uint8).reshape(64, 96, 3)
    out = codec.decode(codec.encode(image), as_array=True)
    assert out.shape == image.shape
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "onnx"})
    print("loaded:", loaded)
    """
)


def test_runtime_runs_without_torch():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded: []"
