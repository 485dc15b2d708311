"""From a training checkpoint to a model folder the runtime loads.

    nicodec-export runs/mine/last.pt --out models/mine --model-id my-model-1

Writes the ONNX graphs (encoder, entropy parameters, decoder and its fp16 twin, and the
encoder-only synthesis gradient; dynamic height and width), the frozen integer CDF
tables and the manifest (see ``nicodec.model``), runs ``onnx.checker`` on every
graph, then checks parity with torch through the runtime itself: a test image is
coded by the exported folder and by the torch model, and the integers and pixels
are compared. The export fails when parity fails.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import typer
from rich.console import Console
from rich.text import Text

from nicodec import exactness
from nicodec.stops import Terminated, signals_held, stop_like_ctrl_c
from nicodec.errors import NicodecError
from nicodec.files import nearest_existing
from nicodec.format import FORMAT_VERSION, model_id_problem
from nicodec.model import (
    DECODES_FILES_OF, ENCODER_GRAPHS, GRAPHS, MANIFEST, MODEL_FORMAT, MODEL_FORMAT_VERSION, OPTIONAL_GRAPHS, TABLES,
    ModelFiles, decoding_fields, default_model_dir, earlier_model_problem, manifest_hash, quality_position, sha256_file,
)
from nicodec.options import quality_parser
from nicodec.training.integer import MEAN_BITS, integer_parameters
from nicodec.training.model import SCALE_LEVELS, SCALE_MAX, MeanScaleHyperprior, scale_table
from nicodec.training.checkpoint import load_model

from .graphs import Decoder, EntropyParameters, Encoder, HalfDecoder, SynthesisGradient
from .integer import build_graph, parameters_from_graph, reference
from .tables import factorized_tables, gaussian_tables

OPSET = 17
DEFAULT_QUALITY = 75.0
"""The quality a variable-rate model codes at when none is asked for (``--default-quality``)."""
PIXEL_TOLERANCE_DB = 45.0
"""Decoded pixels from onnxruntime and from torch must agree to this PSNR at least."""
SYMBOL_MISMATCH_TOLERANCE = 1e-4
"""Fraction of latent symbols that may round the other way between torch and onnxruntime."""

# One message, one line, however narrow the terminal; markup off: a folder or model id of
# "[x]" would be taken for a style (and "[/x]" ends in a MarkupError after the export is done).
# force_jupyter off: in a notebook's kernel too, lines on stderr rather than HTML displays.
console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False, force_jupyter=False)


def export_graphs(model: MeanScaleHyperprior, folder: Path) -> None:
    """Write encoder.onnx, entropy_parameters.onnx, decoder.onnx and decoder_fp16.onnx and check them."""
    cfg = model.config
    image = torch.randint(0, 256, (1, 3, 128, 192), dtype=torch.uint8)
    z_hat = torch.randint(-3, 4, (1, cfg.Nh, 2, 3), dtype=torch.int32)
    y_hat = torch.randn(1, cfg.M, 8, 12)
    if cfg.levels:
        encoder = (Encoder(model), (image, torch.ones(1, cfg.M, 1, 1)), ["image", "gain"], ["y", "z"])
    else:
        encoder = (Encoder(model), (image,), ["image"], ["y", "z"])
    # A post-filter that sees the quality makes it the decoders' second input.
    synthesis_args, synthesis_inputs = ((y_hat, torch.full((1, 1, 1, 1), 60.0)), ["y_hat", "quality"]) \
        if model.g_s.takes_quality else ((y_hat,), ["y_hat"])
    specs = {
        "encoder": encoder,
        "entropy_parameters": (EntropyParameters(model), (z_hat,), ["z_hat"], ["scale_index", "mean_q"]),
        "decoder": (Decoder(model), synthesis_args, synthesis_inputs, ["image"]),
        "decoder_fp16": (HalfDecoder(model), synthesis_args, synthesis_inputs, ["image"]),
    }
    if cfg.integer_entropy:
        params = integer_parameters(model.h_s, model.hs_act_scale)
        graph = build_graph(params, scale_table().numpy(), cfg.Nh, opset=OPSET)
        onnx.save(graph, str(folder / "entropy_parameters.onnx"))
        del specs["entropy_parameters"]
    for name, (module, args, inputs, outputs) in specs.items():
        path = folder / f"{name}.onnx"
        axes = {n: {2: "height", 3: "width"} for n in inputs + outputs if n not in ("gain", "quality")}
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but still the one that writes plain
            # opset-17 graphs with named dynamic axes from these small modules.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )
        if name in ("encoder", "decoder"):
            store_weights_in_half(path)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)


GRADIENT_TOLERANCE = 1e-3
"""Largest error of the exported synthesis gradient against torch's autograd, relative to
the gradient's largest magnitude."""


def export_synthesis_gradient(model: MeanScaleHyperprior, folder: Path, put_in_place: bool = True) -> dict[str, str]:
    """Write synthesis_gradient.onnx, check it against torch's autograd, and return its
    ``encoder_files`` entry (name: SHA-256). ``put_in_place`` false leaves it checked under
    its temporary name (:data:`GRADIENT_TMP`), for the caller to rename with the manifest."""
    path = folder / GRADIENT_TMP
    try:
        _synthesis_gradient(model, path)
        if not put_in_place:
            return {"synthesis_gradient.onnx": sha256_file(path)}
        final = path.replace(folder / "synthesis_gradient.onnx")
        return {final.name: sha256_file(final)}
    except BaseException:  # a failed check, Ctrl-C, SIGTERM: no half-made graph is left in the folder
        path.unlink(missing_ok=True)
        raise


GRADIENT_TMP = ".synthesis_gradient.onnx.tmp"
"""The name the synthesis gradient is written and checked under, in the model folder."""


def _synthesis_gradient(model: MeanScaleHyperprior, path: Path) -> None:
    import onnxruntime as ort

    y_hat = torch.randn(1, model.config.M, 4, 6) * 3
    image = torch.rand(1, 3, 64, 96) * 255
    weight = (torch.rand(1, 1, 64, 96) < 0.8).float()
    args, names = (y_hat, image, weight), ["y_hat", "image", "weight"]
    quality = None
    if model.g_s.takes_quality:
        quality = torch.full((1, 1, 1, 1), 60.0)
        args, names = (*args, quality), [*names, "quality"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            SynthesisGradient(model).eval(), args, str(path), input_names=names,
            output_names=["gradient"],
            dynamic_axes={n: {2: "height", 3: "width"} for n in ("y_hat", "image", "weight", "gradient")},
            opset_version=OPSET, dynamo=False,
        )
    store_weights_in_half(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    y = y_hat.clone().requires_grad_(True)
    (weight * (255 * model.g_s(y, quality) - image) ** 2).sum().backward()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {name: value.numpy() for name, value in zip(names, args)})
    error = float(np.abs(got - y.grad.numpy()).max() / np.abs(y.grad.numpy()).max())
    if not error < GRADIENT_TOLERANCE:
        raise RuntimeError(f"the exported synthesis gradient is off by {error:.2e} of its magnitude")


def add_encoder_graphs(checkpoint: Path, folder: Path) -> dict:
    """Add the encoder-only graphs to an existing model folder made from ``checkpoint``.

    The folder's synthesis must be the checkpoint's (checked on a random latent); the model
    hash, and so every file already made, is unchanged. The manifest is replaced atomically.
    """
    import onnxruntime as ort

    files = ModelFiles.load(folder)
    model, _ = load_model(checkpoint)  # a CheckpointError (a ModelError) names a file that is not one
    model.eval()
    if (model.config.M, model.config.Nh) != (files.latent_channels, files.hyper_channels):
        raise RuntimeError(f"{checkpoint} is not the checkpoint {folder} was exported from (other channel counts)")

    y_hat = torch.randn(1, model.config.M, 4, 6) * 3
    session = ort.InferenceSession(str(files.graph("decoder")), providers=["CPUExecutionProvider"])
    quality = torch.full((1, 1, 1, 1), 60.0) if model.g_s.takes_quality else None
    if (quality is not None) != any(i.name == "quality" for i in session.get_inputs()):
        raise RuntimeError(f"{checkpoint} is not the checkpoint {folder} was exported from (one synthesis takes the "
                           "quality, the other not)")
    (theirs,) = session.run(None, {"y_hat": y_hat.numpy(), **({} if quality is None else {"quality": quality.numpy()})})
    with torch.no_grad():
        ours = Decoder(model)(y_hat, quality).numpy()
    if np.abs(theirs.astype(np.int16) - ours.astype(np.int16)).max() > 1:
        raise RuntimeError(f"{checkpoint} is not the checkpoint {folder} was exported from (the syntheses differ)")
    manifest = dict(files.manifest)
    manifest["encoder_files"] = export_synthesis_gradient(model, folder, put_in_place=False)
    graph, tmp = folder / GRADIENT_TMP, folder / f".{MANIFEST}.tmp"
    try:
        tmp.write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        # The graph and the manifest that names its hash go in together: a stop between the two
        # renames would leave a graph the manifest's hash refuses.
        with signals_held(raise_after=False) as held:
            graph.replace(folder / "synthesis_gradient.onnx")
            tmp.replace(folder / MANIFEST)
        DEFERRED.extend(held)
    except BaseException:
        graph.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        raise
    ModelFiles.load(folder)
    return manifest


def _as_json(value):
    """A checkpoint's record for the manifest, which is strict JSON: a number that is not finite
    becomes None, a tensor or numpy scalar its number, anything else of no JSON type its text
    (a checkpoint's metrics of NaN, or holding a tensor, failed the export with a traceback)."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        value = value.item() if np.prod(value.shape) == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(key): _as_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)


def store_weights_in_half(path: Path, min_size: int = 1024) -> int:
    """Store float32 weights that are exactly representable in fp16 as fp16, each followed by
    a Cast back to float32; returns how many were converted.

    The graph still computes in float32 with the very same values (checkpoints keep their
    weights in fp16, so convolution weights convert exactly; folded constants such as GDN's
    squared parameters do not, and stay float32). onnxruntime folds the casts when it
    loads the graph, so only the file shrinks, by about half.
    """
    model = onnx.load(str(path))
    graph = model.graph
    inputs = {i.name for i in graph.input}
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.name in inputs or np.prod(init.dims) < min_size:
            continue
        values = onnx.numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            continue
        name = init.name
        init.CopyFrom(onnx.numpy_helper.from_array(half, f"{name}.fp16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}.fp16"], [name], to=onnx.TensorProto.FLOAT, name=f"{name}.cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))
    return len(casts)


def write_tables(model: MeanScaleHyperprior, folder: Path) -> None:
    z = factorized_tables(model.z_prior)
    y = gaussian_tables(scale_table())
    gains = {}
    if model.config.levels:
        # The trained levels' gain vectors; the runtime interpolates between them (FORMAT.md).
        gains = {
            "log_gain": model.log_gain.detach().float().numpy(),
            "log_inverse_gain": model.log_inverse_gain.detach().float().numpy(),
        }
    np.savez(
        folder / TABLES,
        z_cdf=z.cdf, z_sizes=z.sizes, z_offsets=z.offsets,
        y_cdf=y.cdf, y_sizes=y.sizes, y_offsets=y.offsets,
        scale_table=scale_table().numpy(), **gains,
    )


def write_manifest(folder: Path, model: MeanScaleHyperprior, model_id: str, training: dict,
                   default_quality: float | None = None) -> dict:
    files = {name: sha256_file(folder / name) for name in [f"{g}.onnx" for g in GRAPHS + OPTIONAL_GRAPHS] + [TABLES]}
    manifest = {
        "format": MODEL_FORMAT,
        "version": MODEL_FORMAT_VERSION,
        "model_id": model_id,
        "bitstream_version": FORMAT_VERSION,
        "architecture": "mean-scale-hyperprior",
        "entropy_parameters": "integer" if model.config.integer_entropy else "float",
        "config": model.config.to_dict(),
        "downsampling": model.config.downsampling,
        "mean_bits": MEAN_BITS,
        "scale_levels": SCALE_LEVELS,
        "scale_max": SCALE_MAX,
        "training": training,
        "rate": rate_section(model, default_quality),
        "files": files,
        "encoder_files": {f"{g}.onnx": sha256_file(folder / f"{g}.onnx") for g in ENCODER_GRAPHS},
    }
    if model.config.integer_entropy:
        manifest["entropy_check"] = entropy_check(folder, model.config.Nh)
    manifest["model_hash"] = manifest_hash(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return manifest


def entropy_check(folder: Path, hyper_channels: int) -> dict:
    """The manifest's ``entropy_check``: the digest of the integers the written integer graph
    must give on :func:`nicodec.exactness.probes`, computed with the numpy int64 reference from
    the parameters read back out of the graph (not with onnxruntime, which it is to check)."""
    params = parameters_from_graph(onnx.load(str(folder / "entropy_parameters.onnx")))
    table = scale_table().numpy()
    outputs = [a for z_hat in exactness.probes(hyper_channels) for a in reference(params, z_hat, table)]
    return {"probe": exactness.PROBE_VERSION, "sha256": exactness.digest(outputs)}


def files_decodable(earlier: list[ModelFiles], manifest: dict) -> list[dict]:
    """The ``decodes_files_of`` list of a new model that is to decode ``earlier`` models' files.

    Args:
        earlier: the earlier models' loaded folders.
        manifest: the new model's manifest, without the list.

    Returns:
        One entry per earlier model (``nicodec.model.DECODES_FILES_OF``), followed by the entries
        of the models those decoded, each once.

    Raises:
        RuntimeError: an earlier model's entropy side (entropy-parameter graph, tables, decoding
            fields) is not the new model's, byte for byte (``earlier_model_problem``).
    """
    entries = []
    for old in earlier:
        entry = {"model_id": old.model_id, "model_hash": old.manifest["model_hash"], "version": old.manifest["version"],
                 "files": old.manifest["files"], "decoding": decoding_fields(old.manifest)}
        for item in [entry, *old.manifest.get(DECODES_FILES_OF, [])]:
            problem = earlier_model_problem(item, manifest)
            if problem:
                raise RuntimeError(
                    f"the new model cannot decode the files of {item['model_id']} (listed by {old.path}): {problem}; "
                    "only a model whose synthesis alone was retrained decodes an earlier model's files"
                )
            if item not in entries:
                entries.append(item)
    return entries


def rate_section(model: MeanScaleHyperprior, default_quality: float | None) -> dict:
    """What the runtime needs to know about rates: fixed, or the trained lambdas and the default quality."""
    cfg = model.config
    if not cfg.levels:
        return {"variable": False, "lmbda": cfg.lmbda}
    return {
        "variable": True,
        "lmbdas": list(cfg.lmbdas),
        "default_quality": float(DEFAULT_QUALITY if default_quality is None else default_quality),
    }


def parity_image(height: int = 230, width: int = 300, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like test image (gradients, edges and mild noise), uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([
        128 + 90 * np.sin(xx / 23.0) * np.cos(yy / 31.0),
        128 + 80 * np.cos((xx + yy) / 40.0),
        100 + 100 * (xx > width / 2) + 20 * np.sin(yy / 9.0),
    ], axis=2)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@torch.no_grad()
def check_parity(model: MeanScaleHyperprior, folder: Path, image: np.ndarray, quality: float | None = None) -> dict:
    """Code ``image`` with the exported folder (at ``quality`` for a variable-rate model) and compare with torch.

    Returns:
        Counts of differing integers and the PSNR between the two decodes.

    Raises:
        RuntimeError: when the integers or pixels disagree beyond the tolerances.
    """
    from nicodec import format as nicformat
    from nicodec.codec import Codec

    codec = Codec(folder, providers="cpu", rdo=False)  # torch rounds to nearest
    data = codec.encode(image, quality=quality)
    header, z_hat, symbols, mean_q = codec.decode_symbols(data)
    pixels = codec.decode(data, as_array=True)

    # Padded as the file says (to 16 where that differs from 64: the parity image's sides are
    # off the 64-pixel grid, so z's last row and column see part of a block, and the entropy
    # parameters are cut to the latent's size, as in every such file).
    h, w = image.shape[:2]
    padded = codec._pad(image, nicformat.padding(header.flags, model.config.downsampling))
    x = torch.from_numpy(padded).permute(2, 0, 1)[None]
    gain = inverse_gain = torch.ones(1, model.config.M, 1, 1)
    if quality is not None:
        position = quality_position(quality, model.config.levels)
        gain, inverse_gain = (g.reshape(1, -1, 1, 1) for g in model.gains_at(position))
    y, z = Encoder(model)(x, gain)
    torch_z_hat = torch.round(z).to(torch.int32)
    rows, cols = symbols.shape[2:]
    index, torch_mean_q = (t[:, :, :rows, :cols] for t in EntropyParameters(model)(torch.from_numpy(z_hat)))
    onnx_index = codec._session("entropy_parameters").run(None, {"z_hat": z_hat})[0][:, :, :rows, :cols]
    torch_symbols = torch.round(y - torch.from_numpy(mean_q).float() / 2**MEAN_BITS).to(torch.int32)
    # Against the trained synthesis itself, not Decoder's rewritten form (SubpixelConvTranspose).
    y_hat = (torch.from_numpy(symbols).float() + torch.from_numpy(mean_q).float() / 2**MEAN_BITS) * inverse_gain
    torch_pixels = torch.round(model.g_s(y_hat, header.quality).clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    torch_pixels = torch_pixels[0, :, :h, :w].permute(1, 2, 0).numpy()

    half = Codec(folder, providers="cpu", precision="fp16").decode(data, as_array=True)
    half_mse = np.mean((pixels.astype(np.float64) - half.astype(np.float64)) ** 2)
    mse = np.mean((pixels.astype(np.float64) - torch_pixels.astype(np.float64)) ** 2)
    report = {
        "image": f"{w}x{h} synthetic",
        "quality": quality,
        "bytes": len(data),
        "z_symbols_differ": int((torch_z_hat.numpy() != z_hat).sum()),
        "scale_index_differ": int((index.numpy() != onnx_index).sum()),
        "mean_q_differ": int((torch_mean_q.numpy() != mean_q).sum()),
        "y_symbols_differ": int((torch_symbols.numpy() != symbols).sum()),
        "y_symbols": int(symbols.size),
        # null where the pixels are identical: JSON has no infinity (a manifest must parse anywhere).
        "pixel_psnr_db": round(float(10 * np.log10(255**2 / mse)), 2) if mse > 0 else None,
        "fp16_pixel_psnr_db": round(float(10 * np.log10(255**2 / half_mse)), 2) if half_mse > 0 else None,
    }
    console.print(f"parity: {report}")
    if model.config.integer_entropy and (report["scale_index_differ"] or report["mean_q_differ"]):
        raise RuntimeError(f"the integer entropy graph differs from its torch definition: {report}")
    if report["y_symbols_differ"] > SYMBOL_MISMATCH_TOLERANCE * symbols.size or report["z_symbols_differ"]:
        raise RuntimeError(f"symbols differ between torch and onnxruntime: {report}")
    if any(report[key] is not None and report[key] < PIXEL_TOLERANCE_DB for key in ("pixel_psnr_db", "fp16_pixel_psnr_db")):
        raise RuntimeError(f"pixels differ between torch and onnxruntime: {report}")
    return report


PARITY_QUALITIES = (1.0, 37.5, 75.0, 100.0)
"""The qualities a variable-rate model's parity is checked at (the ends, and between levels)."""


def export_model(checkpoint: Path, out: Path, model_id: str, force: bool = False,
                 default_quality: float | None = None, decodes_files_of: Sequence[Path] = (),
                 replace_shipped: bool = False) -> dict:
    """Export a checkpoint to a model folder, atomically; returns the manifest.

    ``decodes_files_of``: earlier model folders whose files the new model is to decode too
    (:func:`files_decodable`); read before anything is written, so one of them may be ``out``.
    The first one's default quality is the new model's when ``default_quality`` is None (a
    re-exported synthesis keeps its model's default). ``replace_shipped``: ``out`` may be the
    model that ships inside the installed package.
    """
    check_model_id(model_id)
    check_output(out, checkpoint, force, replace_shipped)
    earlier = [ModelFiles.load(folder) for folder in decodes_files_of]
    model, ckpt = load_model(checkpoint)
    model.eval()
    broken = [name for name, tensor in model.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise RuntimeError(f"the checkpoint holds weights that are not finite (NaN or inf, in {broken[0]}"
                           f"{f' and {len(broken) - 1} more' if len(broken) > 1 else ''}): its training diverged")
    if default_quality is None and earlier and model.config.levels and earlier[0].variable_rate:
        default_quality = earlier[0].default_quality
    if default_quality is not None and not model.config.levels:
        raise RuntimeError("--default-quality is for variable-rate models; this checkpoint is single-rate")
    if not model.config.integer_entropy:
        # entropy_finetune takes single-rate models only; a variable-rate one switches in training.
        route = ("train it with nicodec-train --integer-from (or --init this checkpoint with --integer-from and "
                 "--new-schedule)" if model.config.levels else "run nicodec.training.entropy_finetune --mode integer first")
        planned = (ckpt.get("train_config") or {}).get("integer_from")
        complete = (ckpt.get("metrics") or {}).get("schedule_complete")
        if planned and not complete:  # a run stopped (or a checkpoint written) before the point it was to switch at
            # Named when the checkpoint lies in its run's folder (beside the run's last.pt).
            run = checkpoint.parent if (checkpoint.parent / "last.pt").is_file() else "RUN"
            route = (f"its run stopped at step {ckpt.get('step')}, before it reached its --integer-from {planned:g} "
                     f"({planned:.0%} of its schedule): nicodec-train --out {run} --resume continues it (a run "
                     "stopped by its --minutes, again until one passes that point)"
                     + ("" if complete is False else " (a run of a build before 2026-12-03 whose schedule is complete: "
                        "--init this checkpoint with --integer-from and --new-schedule)"))
        console.print(Text.assemble(("warning:", "yellow"), " this model's entropy parameters are computed in float, "
                                    f"so files may not decode on other machines; {route}"))
    training = {"checkpoint_step": _as_json(ckpt.get("step")), "metrics": _as_json(ckpt.get("metrics", {}))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
    try:
        export_graphs(model, tmp)
        export_synthesis_gradient(model, tmp)
        write_tables(model, tmp)
        manifest = write_manifest(tmp, model, model_id, training, default_quality)
        if earlier:
            # The list joins the hash; written before the parity check, whose load verifies it.
            manifest[DECODES_FILES_OF] = files_decodable(earlier, manifest)
            manifest["model_hash"] = manifest_hash(manifest)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        qualities = PARITY_QUALITIES if model.config.levels else (None,)
        parity = [check_parity(model, tmp, parity_image(), q) for q in qualities]
        manifest["parity"] = parity if model.config.levels else parity[0]
        # The manifest is not among the hashed files, so the parity report can join it.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        # Stopped half-way, the swap would leave OUT missing or the old folder half removed.
        with signals_held(raise_after=False) as held:
            _swap_in(tmp, out, force)
        DEFERRED.extend(held)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def check_model_id(model_id: str) -> None:
    """The id goes into every file's header: 1 to ``MAX_MODEL_ID_BYTES`` printable bytes of UTF-8 (FORMAT.md)."""
    problem = model_id_problem(model_id)
    if problem:
        raise RuntimeError(f"{problem} (--model-id)")


def check_output(out: Path, checkpoint: Path, force: bool, replace_shipped: bool = False) -> None:
    """Refuse, before any work, an OUT that is not a model folder to write or replace.

    ``--force`` replaces a model folder (one with a manifest) and nothing else: not a file, a
    training run, the current folder or one above it, nor a folder holding the checkpoint;
    the model that ships inside the installed package only with ``replace_shipped`` too.
    """
    if out.resolve() == default_model_dir().resolve() and not replace_shipped:
        raise RuntimeError(
            f"{out} is the model that ships inside the installed nicodec package: replacing it changes what "
            "`nicodec` and `import nicodec` use by default, and the files made with it decode only if the new "
            "model lists it with --decodes-files-of; give --replace-shipped-model (with --force and --model-id NEW-ID) to mean it, or "
            "write elsewhere and use --model DIR"
        )
    above = nearest_existing(out.parent)
    if not above.is_dir():
        raise RuntimeError(f"cannot make {out}: {above} is not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise RuntimeError(f"cannot write {out}: the folder {above} is not writable")
    if not out.exists():
        return
    if not out.is_dir():
        raise RuntimeError(f"{out} exists and is not a folder")
    empty = not any(out.iterdir())  # a folder made for the model: nothing in it to lose, no --force needed
    if not force and not empty:
        raise FileExistsError(f"{out} exists (use --force to replace it)")
    here, target = Path.cwd().resolve(), out.resolve()
    replacing = "--force would replace" if force else "the export would replace"
    if target == here or target in here.parents:
        raise RuntimeError(f"{replacing} {out}, which holds the current folder")
    if target in checkpoint.resolve().parents:
        raise RuntimeError(f"{replacing} {out}, which holds the checkpoint {checkpoint}")
    if empty:
        return
    if not (out / MANIFEST).is_file():
        raise RuntimeError(f"{out} is not a model folder (it has no {MANIFEST}); --force replaces model folders only")


DEFERRED: list[int] = []
"""Signals that came while a finished folder was being put in place, and waited for it."""


def _swap_in(new: Path, out: Path, force: bool = True) -> None:
    """Put the finished folder ``new`` at ``out``: the old folder is renamed aside first and
    removed only once the new one is in place, so a failure leaves the old model whole.
    Without ``force`` ``out`` may only be an empty folder (made for the model), which the
    rename replaces as one step, and only while it is still empty: what was put into it
    during the export is not removed."""
    if not out.exists():
        new.rename(out)
        return
    if not force:
        try:
            os.rename(new, out)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise FileExistsError(f"{out} is no longer empty (something was put into it during the export): "
                                      "nothing was replaced; --force replaces a model folder") from None
            raise
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
    old.rmdir()  # a free name beside out, for the rename
    out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


app = typer.Typer(add_completion=False, help="Export a nicodec checkpoint to a model folder.")


@app.command()
def main(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A training checkpoint (.pt).")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("model"),
    model_id: Annotated[Optional[str], typer.Option(help="Identity written into every file (default: from the folder name).")] = None,
    force: Annotated[bool, typer.Option(metavar="", help="Replace OUT if it is a model folder (the old one stays whole until the new one is in place).")] = False,
    default_quality: Annotated[Optional[float], typer.Option(
        parser=quality_parser(), help="Variable-rate models: the quality used when none is asked for (default: the first "
        f"--decodes-files-of model's, else {DEFAULT_QUALITY:g}).")] = None,
    decodes_files_of: Annotated[Optional[list[Path]], typer.Option(
        exists=True, file_okay=False, help="An earlier model folder whose files the new model is to decode too: "
        "its entropy side (entropy_parameters.onnx, tables.npz, decoding fields) must be the new model's, byte "
        "for byte, as when only the synthesis was retrained. Repeat for several.")] = None,
    add_encoder_graphs_only: Annotated[bool, typer.Option(
        "--add-encoder-graphs", metavar="", help="Only add the encoder-only graphs (synthesis_gradient.onnx) to the existing "
        "model folder OUT made from CHECKPOINT; its model hash and files stay as they are.")] = False,
    replace_shipped_model: Annotated[bool, typer.Option(metavar="",
        help="OUT may be the model that ships inside the installed package (with --force, and a --model-id), "
        "as a release does.")] = False,
):
    """Write ONNX graphs, integer tables and a manifest, then check parity with torch."""
    DEFERRED.clear()  # a program calling the command again: the last call's signals are told
    if add_encoder_graphs_only:
        given = [name for name, value in (("--decodes-files-of", decodes_files_of), ("--model-id", model_id),
                                          ("--force", force), ("--default-quality", default_quality)) if value]
        if given:
            raise typer.BadParameter("--add-encoder-graphs leaves the model's files, id and hash as they are",
                                     param_hint=given)
        with _stops_told(f"{out} is as it was, without the encoder graphs"):
            try:
                add_encoder_graphs(checkpoint, out)
            except (RuntimeError, NicodecError) as exc:  # NicodecError: ModelError, ExactnessError
                console.print(Text.assemble(("error:", "red"), f" {exc}"))
                raise typer.Exit(1) from None
        console.print(f"added {', '.join(f'{g}.onnx' for g in ENCODER_GRAPHS)} to {out}")
        if DEFERRED:
            console.print(f"({_deferred_names()} came while they were being put in place: they were added)")
        return
    if replace_shipped_model and model_id is None:
        raise typer.BadParameter("a model that replaces the shipped one needs its own id, not one made from the "
                                 "folder's name", param_hint="--model-id")
    if model_id is None:  # made from the folder's name, which the user may not have thought of as an id
        model_id = f"nicodec-{out.resolve().name}"
        problem = model_id_problem(model_id)
        if problem:
            raise typer.BadParameter(f"the model id made from its name, {model_id}, cannot be one: {problem}; give "
                                     "--model-id", param_hint="--out")
    with _stops_told(f"{out} was not written"):  # the half-made folder is removed
        try:
            manifest = export_model(checkpoint, out, model_id, force=force, default_quality=default_quality,
                                    decodes_files_of=decodes_files_of or (), replace_shipped=replace_shipped_model)
        except (FileExistsError, RuntimeError, NicodecError) as exc:
            console.print(Text.assemble(("error:", "red"), f" {exc}"))
            raise typer.Exit(1) from None
        except OSError as exc:  # a full disk, a folder made read-only meanwhile, a file that cannot be read
            where = f" ({exc.filename})" if exc.filename else ""
            console.print(Text.assemble(("error:", "red"),
                                        f" the export failed: {exc.strerror or exc}{where}; {out} was not written"))
            raise typer.Exit(1) from None
    console.print(f"wrote {out} (model {manifest['model_id']}, hash {manifest['model_hash'][:16]})")
    if DEFERRED:
        console.print(f"({_deferred_names()} came while the finished folder was being put in place: the export is "
                      "complete)")


@contextmanager
def _stops_told(left: str) -> Iterator[None]:
    """SIGTERM and SIGHUP stop the work inside as Ctrl-C does (``stop_like_ctrl_c``), and a stop
    is one line, ``left`` saying what it left, with exit code 128 + the signal's number: Typer
    ended a KeyboardInterrupt without a word."""
    replaced = stop_like_ctrl_c()
    try:
        yield
    except KeyboardInterrupt as exc:  # Ctrl-C, or a Terminated (SIGTERM, SIGHUP)
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        stopped = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        console.print(f"{stopped}: {left}")
        raise typer.Exit(128 + signum) from None
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)


def _deferred_names() -> str:
    """The signals that came while a finished result was put in place (:data:`DEFERRED`)."""
    return ", ".join(sorted({signal.Signals(n).name for n in DEFERRED}))


if __name__ == "__main__":  # python -m nicodec.export.export: as nicodec-export (python -m nicodec.export too)
    from nicodec.launch import export as _run

    _run()
