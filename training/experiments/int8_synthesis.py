"""Post-training int8 quantisation of the shipped synthesis graph: how much faster, at what cost.

    python training/experiments/int8_synthesis.py [--calibration '../shared/data/train/shard-5/*.jpg']

An experiment, not a shipped step. onnxruntime's ``quantize_static`` (QDQ, int8 weights per
output channel, uint8 activations, the Conv and ConvTranspose nodes only; the IGDN's Pow and Sqrt
stay fp32) on the shipped ``decoder.onnx``, its fp16 weights folded to fp32 first, calibrated on
the latents of 24 random 256x256 crops of held-out training photos coded at random qualities.
Measured on 6 Kodak images (1, 4, 7, 13, 19, 23) at qualities 15, 56 and 90 (evaluation only:
nothing is chosen from it): the synthesis alone, CPU provider, 2 threads, the best of 3 runs.

2026-12-02, 2-core Xeon, nicodec-mshp-vr-3d, onnxruntime 1.32.0: PSNR -0.43 dB at quality 15,
-1.93 dB at 56, -4.11 dB at 90 (mean -2.16 dB), for a synthesis 1.26x and 1.37x faster in two
runs (medians of 405 against 325 ms, 402 against 293). Not viable: the activations' range grows with the quality, and one uint8 scale per
tensor loses the detail the high qualities pay for. A quantisation-aware fine-tune (a GPU job)
would be the way; ``precision="fp16"`` stays the only reduced-precision synthesis.
"""

from __future__ import annotations

import argparse
import glob
import random
import tempfile
import time
from pathlib import Path

import nicodec
import numpy as np
import onnx
import onnxruntime as ort
from nicodec.model import default_model_dir
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kodak"


def fp32_weights(source: Path, target: Path) -> None:
    """The graph with each fp16 weight behind a Cast stored as the fp32 weight it casts to."""
    model = onnx.load(source)
    weights = {w.name: w for w in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        weight = weights.get(node.input[0]) if node.op_type == "Cast" else None
        if weight is not None and weight.data_type == onnx.TensorProto.FLOAT16:
            model.graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(weight).astype(np.float32), node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {name for node in model.graph.node for name in node.input}
    unused = [w for w in model.graph.initializer if w.name not in used]
    for weight in unused:
        model.graph.initializer.remove(weight)
    onnx.save(model, target)


class Latents(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._next = iter(feeds)

    def get_next(self):
        return next(self._next, None)


def feeds(graph_inputs: set[str], y_hat: np.ndarray, quality: float) -> dict[str, np.ndarray]:
    """The decoder's inputs: the latent, and the quality where it takes one (vr-5f's post-filter)."""
    given = {"y_hat": y_hat}
    if "quality" in graph_inputs:
        given["quality"] = np.full((1, 1, 1, 1), quality, dtype=np.float32)
    return given


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calibration", default="../shared/data/train/shard-5/*.jpg")
    parser.add_argument("--kodak", type=Path, default=KODAK)
    args = parser.parse_args()
    codec = nicodec.Codec(providers="cpu", threads=2)
    rng = random.Random(0)
    paths = sorted(glob.glob(args.calibration))
    rng.shuffle(paths)
    shipped = default_model_dir() / "decoder.onnx"
    inputs = {i.name for i in session(shipped).get_inputs()}
    latents = []
    for path in paths[:24]:
        with Image.open(path) as image:
            image = image.convert("RGB")
            x, y = rng.randrange(max(1, image.width - 256)), rng.randrange(max(1, image.height - 256))
            crop = np.asarray(image.crop((x, y, x + 256, y + 256)))
        header, latent = codec.decode_latents(codec.encode(crop, quality=rng.uniform(1, 100)))
        latents.append(feeds(inputs, latent.astype(np.float32), header.quality))
    work = Path(tempfile.mkdtemp())
    fp32_weights(shipped, work / "fp32.onnx")
    quantize_static(str(work / "fp32.onnx"), str(work / "int8.onnx"), Latents(latents), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    op_types_to_quantize=["Conv", "ConvTranspose"])
    sessions = {"fp32": session(shipped), "int8": session(work / "int8.onnx")}
    rows = []
    for number in (1, 4, 7, 13, 19, 23):
        with Image.open(args.kodak / f"kodim{number:02d}.png") as image:
            photo = np.asarray(image.convert("RGB"))
        for quality in (15, 56, 90):
            y_hat = codec.decode_latents(codec.encode(photo, quality=quality))[1].astype(np.float32)
            given = feeds(inputs, y_hat, quality)
            row = {"image": number, "quality": quality}
            for name, graph in sessions.items():
                graph.run(None, given)
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    out = graph.run(None, given)[0]
                    times.append(time.perf_counter() - start)
                pixels = np.clip(np.round(out[0].transpose(1, 2, 0)), 0, 255).astype(np.uint8)
                row[name] = (psnr(pixels[: photo.shape[0], : photo.shape[1]], photo), 1e3 * min(times))
            rows.append(row)
            print(row, flush=True)
    for quality in (15, 56, 90):
        change = np.mean([r["int8"][0] - r["fp32"][0] for r in rows if r["quality"] == quality])
        print(f"quality {quality}: int8 PSNR {change:+.2f} dB against fp32")
    fp32, int8 = (np.median([r[name][1] for r in rows]) for name in ("fp32", "int8"))
    print(f"synthesis: fp32 {fp32:.0f} ms, int8 {int8:.0f} ms ({fp32 / int8:.2f}x)")


if __name__ == "__main__":
    main()
