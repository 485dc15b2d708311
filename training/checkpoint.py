"""Checkpoints: written atomically, read back checked, rebuilt into a model; the weights-only
fp16 form committed to the repository (:func:`slim_checkpoint`), and the edits the fine-tuning
scripts make to one (:func:`partly_retrained`, :func:`with_postfilter`).

A full checkpoint (``last.pt``, with the optimizer's state) resumes a run; every checkpoint holds
its ``model_config`` (and ``train_config``), so the model is rebuilt exactly from the file alone.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from nicodec.errors import ModelError
from nicodec.files import write_atomic

from .model import MeanScaleHyperprior, ModelConfig

if TYPE_CHECKING:
    from .schedule import TrainConfig


def save_atomically(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then renamed over it: a reader (or a
    run killed while writing) sees the old file or the new one, never half of one."""
    write_atomic(path, lambda f: torch.save(obj, f), force=True)


def save_checkpoint(path: Path, model, optimizer, step: int, model_cfg: ModelConfig, train_cfg: TrainConfig,
                    metrics: dict, seconds: float = 0.0, schedule_origin: tuple[int, float] = (0, 0.0),
                    run_options: Optional[dict] = None):
    """Write atomically: a full checkpoint (with optimizer state) for resuming; its folder is made
    at the first one, so a run that fails before training leaves no empty run folder.

    ``schedule_origin`` is the (step, training seconds) at which the current learning-rate
    schedule began: (0, 0) unless a run started a new one (``--new-schedule``).
    ``run_options``: the run's data, held-out data, image count and slim copy (absolute paths),
    which ``--resume`` alone takes up again (:data:`RUN_OPTIONS`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(
        {
            "model_config": model_cfg.to_dict(),
            "train_config": asdict(train_cfg),
            "step": step,
            "train_seconds": seconds,
            "schedule_origin": list(schedule_origin),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "metrics": metrics,
            "run_options": run_options or {},
        },
        path,
    )


class CheckpointError(ModelError):
    """A file that is not a nicodec checkpoint, or not one whose model can be rebuilt from it.

    A :class:`nicodec.ModelError`, so whatever reports a broken model reports this too; the
    message is one line that names the file.
    """


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The dict of a checkpoint file (full or weights-only), checked for what every one holds:
    a ``model_config`` dict and a ``model`` dict of tensors.

    Raises:
        CheckpointError: a missing file, a folder, a file torch cannot load, or another content.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch and pickle raise many kinds for a file that is not one
        raise CheckpointError(f"{path} is not a nicodec checkpoint: torch cannot load it ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a nicodec checkpoint: it holds a {type(ckpt).__name__}, not a dict")
    for key in ("model_config", "model"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path} is not a nicodec checkpoint: it has no {key!r} dict")
    if not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise CheckpointError(f"{path} is not a nicodec checkpoint: its 'model' holds more than tensors")
    return ckpt


def load_model(path: str | Path, map_location="cpu") -> tuple[MeanScaleHyperprior, dict]:
    """Rebuild a model from a checkpoint (full or weights-only) and return it with the raw dict.

    Raises:
        CheckpointError: not a checkpoint (:func:`read_checkpoint`), or one whose ``model_config``
            cannot build a model or does not fit its weights.
    """
    ckpt = read_checkpoint(path, map_location)
    known = {f.name for f in fields(ModelConfig)}
    try:
        cfg = ModelConfig(**{k: v for k, v in ckpt["model_config"].items() if k in known})
        model = MeanScaleHyperprior(cfg)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a nicodec checkpoint: its model_config builds no model ({exc})") from None
    # fp16 storage back to fp32; float64 buffers (integer scales) stay as they are.
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in ckpt["model"].items()}
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        problems = [f"{len(names)} {what} (first {names[0]})" for names, what in
                    ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if names]
        raise CheckpointError(f"{path} is not a nicodec checkpoint: its weights do not fit its model_config "
                              f"({cfg}): {', '.join(problems)}")
    model.load_state_dict(state)
    return model, ckpt


def slim_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Weights only, stored in fp16: the form that is committed to the repository (written atomically)."""
    ckpt = read_checkpoint(src)
    slim = {
        "model_config": ckpt["model_config"],
        "train_config": ckpt.get("train_config"),
        "step": ckpt["step"],
        "train_seconds": ckpt.get("train_seconds", 0.0),
        "schedule_origin": ckpt.get("schedule_origin", [0, 0.0]),
        "metrics": ckpt.get("metrics", {}),
        # float64 tensors (the integer path's scales) stay exact; the weights go to fp16.
        "model": {k: v.half() if v.dtype == torch.float32 else v for k, v in ckpt["model"].items()},
    }
    Path(dst).parent.mkdir(parents=True, exist_ok=True)  # runs/mine/weights.pt before runs/mine exists
    save_atomically(slim, dst)


def partly_retrained(checkpoint: str | Path, ckpt: dict, model: MeanScaleHyperprior,
                     prefixes: tuple[str, ...]) -> tuple[dict, MeanScaleHyperprior]:
    """The weights of ``model`` under ``prefixes`` stored anew (fp16, as committed weights are),
    every other tensor the checkpoint's own, bit for bit (so an export's other graphs stay the
    same files); and a model loaded from that state, to measure what is stored.

    Args:
        checkpoint, ckpt: the checkpoint ``model`` was loaded from, and its dict.
        prefixes: state-dict key prefixes of the retrained parts, such as ``("g_s.",)``.
    """
    state = {k: (v.half() if v.dtype == torch.float32 else v) if k.startswith(prefixes) else ckpt["model"][k]
             for k, v in model.state_dict().items()}
    stored, _ = load_model(checkpoint)
    stored.load_state_dict({k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()})
    return state, stored


def with_postfilter(ckpt: dict, channels: int, weights: dict | None = None, quality_plane: bool = False) -> dict:
    """A checkpoint dict: ``ckpt`` with a :class:`~nicodec.training.model.PostFilter` of
    ``channels`` ending g_s (given the quality too with ``quality_plane``), every other tensor
    its own bit for bit (so an export's other graphs stay the same files); the filter's
    ``weights`` (its state dict) or, without them, a fresh filter, which leaves the pixels as
    they were. Stored in fp16, as committed weights are."""
    if ckpt["model_config"].get("postfilter"):
        raise ValueError("the checkpoint's g_s ends in a post-filter already")
    known = {f.name for f in fields(ModelConfig)}
    config = ModelConfig(**{k: v for k, v in ckpt["model_config"].items()
                            if k in known and k not in ("postfilter", "postfilter_quality")},
                         postfilter=channels, postfilter_quality=quality_plane)
    fresh = MeanScaleHyperprior(config).state_dict()
    added = [k for k in fresh if k not in ckpt["model"]]
    prefix = added[0][: added[0].index("body.")]  # "g_s.7."
    if weights is not None:
        if sorted(prefix + k for k in weights) != sorted(added) or any(
                tuple(v.shape) != tuple(fresh[prefix + k].shape) for k, v in weights.items()):
            raise ValueError(f"the filter's weights are not those of a {channels}-channel post-filter")
        fresh.update({prefix + k: v for k, v in weights.items()})
    model = {**ckpt["model"], **{k: fresh[k].half() for k in added}}
    return {**ckpt, "model_config": config.to_dict(), "model": model}


def save_weights(path: Path, ckpt: dict, metrics: dict, state: dict) -> None:
    """A weights-only checkpoint: ``ckpt``'s fields without its optimizer, with ``metrics`` and the
    weights ``state`` (written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomically({**{k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}, "metrics": metrics, "model": state},
                    path)
