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
    import io, pathlib, tempfile
    import numpy as np
    import nicodec, nicodec.cli, nicodec.codec, nicodec.format, nicodec.pillow_plugin, nicodec.rans
    from PIL import Image
    from typer.testing import CliRunner

    codec = nicodec.Codec(providers="cpu")
    image = (np.arange(64 * 96 * 3) % 251).astype(np.uint8).reshape(64, 96, 3)
    out = codec.decode(codec.encode(image), as_array=True)
    assert out.shape == image.shape

    # Latent refinement (the synthesis gradient graph) and rate control.
    refining = nicodec.Codec(providers="cpu", refine=2)
    assert codec.decode(refining.encode(image), as_array=True).shape == image.shape
    limit = len(codec.encode(image, quality=50))
    result = nicodec.encode_to_target(codec, image, max_bytes=limit)
    assert len(result.data) <= limit and result.encodes >= 1

    # The Pillow plugin: save, open (the header), load (the pixels).
    nicodec.pillow_plugin.register(codec)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="NIC")
    buffer.seek(0)
    with Image.open(buffer) as opened:
        assert (opened.format, opened.size, opened.mode) == ("NIC", (96, 64), "RGB")
        opened.load()

    # A folder through the command line, with two workers, and back.
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        (folder / "in").mkdir()
        for i in range(3):
            Image.fromarray(np.roll(image, 7 * i, axis=1)).save(folder / "in" / f"{i}.png")
        runner = CliRunner()
        for args in (["encode", folder / "in", "-o", folder / "nic"], ["decode", folder / "nic", "-o", folder / "png"]):
            done = runner.invoke(nicodec.cli.app, [str(a) for a in args] + ["--provider", "cpu", "--jobs", "2"])
            assert done.exit_code == 0, done.output
        assert sorted(p.name for p in (folder / "png").iterdir()) == ["0.png", "1.png", "2.png"]

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "onnx"})
    print("loaded:", loaded)
    """
)


def test_runtime_runs_without_torch():
    """Encode, decode, refinement, rate control, the Pillow plugin and a CLI batch, in a fresh
    interpreter where importing torch or onnx fails."""
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded: []"


def test_the_package_is_typed_and_lists_its_lazy_names():
    """py.typed (PEP 561) goes with the package, so type checkers read its annotations (CI's
    runtime-only run checks it in an installed wheel, not the source tree); dir() shows Codec and
    the rate control, which are imported on first use."""
    from importlib import resources

    import nicodec

    assert resources.files("nicodec").joinpath("py.typed").is_file()
    assert {"Codec", "encode_to_target", "RateResult", "NicodecError"} <= set(dir(nicodec))
    assert "TYPE_CHECKING" not in dir(nicodec)
