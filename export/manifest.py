"""What an exported model folder holds besides its graphs: the frozen CDF tables, and the manifest
that names, hashes and describes the files (``nicodec.model`` reads both).

The manifest records the model's id and configuration, the trained rates, the checkpoint's
step and metrics, the digest its integer entropy graph must give on the exactness probes
(computed here with the numpy reference, not with onnxruntime, which it checks), and, for a
model whose synthesis alone was retrained, the earlier models whose files it decodes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import torch

from nicodec import exactness
from nicodec.format import FORMAT_VERSION
from nicodec.model import (
    DECODES_FILES_OF, ENCODER_GRAPHS, GRAPHS, MANIFEST, MODEL_FORMAT, MODEL_FORMAT_VERSION, OPTIONAL_GRAPHS, TABLES,
    ModelFiles, decoding_fields, earlier_model_problem, manifest_hash, sha256_file,
)
from nicodec.training.integer import MEAN_BITS
from nicodec.training.model import SCALE_LEVELS, SCALE_MAX, MeanScaleHyperprior, scale_table

from .integer import parameters_from_graph, reference
from .tables import factorized_tables, gaussian_tables

DEFAULT_QUALITY = 75.0
"""The quality a variable-rate model codes at when none is asked for (``--default-quality``)."""


def as_json(value):
    """A checkpoint's record for the manifest, which is strict JSON: a number that is not finite
    becomes None, a tensor or numpy scalar its number, anything else of no JSON type its text
    (a checkpoint's metrics of NaN, or holding a tensor, failed the export with a traceback)."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        value = value.item() if np.prod(value.shape) == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)


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
