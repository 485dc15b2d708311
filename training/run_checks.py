"""What a training run checks before it loads its images: the run folder and the weights-only copy
it writes, the checkpoint it starts from against the options given, and the settings a resumed
run takes from its own checkpoint (so that a run on a lent GPU does not fail late); and the
fine-tuning programs' first steps (:func:`start_finetune`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
import typer

from nicodec.files import nearest_existing

from .checkpoint import CheckpointError, load_model
from .model import MeanScaleHyperprior, ModelConfig

if TYPE_CHECKING:
    from .schedule import TrainConfig


def resumed_config(cfg: TrainConfig, saved: dict, inherit: frozenset[str]) -> tuple[TrainConfig, dict]:
    """``cfg`` with the fields named in ``inherit`` taken from a run's saved ``train_config``
    (those the command line left at their defaults: ``--resume`` alone continues the run as it
    was, not with the defaults), and the values taken that differ from ``cfg``'s."""
    names = {f.name for f in dataclasses.fields(cfg)}
    taken = {name: tuple(value) if isinstance(value, list) else value
             for name, value in saved.items() if name in inherit and name in names}
    kept = {name: value for name, value in taken.items() if value != getattr(cfg, name)}
    return dataclasses.replace(cfg, **taken), kept


RUN_OPTIONS = ("data", "val_data", "max_images", "slim")
"""Options of a run, beside its ``TrainConfig``, that ``--resume`` takes from the run when the
command line does not give them: what it trains on, and where its weights-only copy goes."""


def run_options(folders: list[str], val_folders: Optional[list[str]], max_images: int,
                slim: Optional[Path], out: Optional[Path] = None) -> dict:
    """The :data:`RUN_OPTIONS` as a checkpoint keeps them: paths made absolute, so a run resumed
    from another folder reads the same images; and the run's folder, ``out``, so that a resumed
    copy of it is told from the run itself (:func:`resumed_slim`)."""
    return {"data": [os.path.abspath(f) for f in folders],
            "val_data": [os.path.abspath(f) for f in val_folders] if val_folders else None,
            "max_images": max_images, "slim": os.path.abspath(slim) if slim is not None else None,
            "out": os.path.abspath(out) if out is not None else None}


def resumed_slim(slim: str, saved_out: Optional[str], out: Path, force: bool) -> str:
    """The ``--slim`` path a resumed run writes: the saved one, unless the run folder was copied
    or moved (``out`` is not the folder it was made in, ``saved_out``). A copy's slim file inside
    the run's folder is the copy's own; one outside it is the original run's, which resuming the
    copy would replace: refused unless ``force``. Checkpoints saved before the folder was kept
    (no ``saved_out``) keep their path."""
    here = os.path.abspath(out)
    if saved_out is None or saved_out == here:
        return slim
    inside = os.path.relpath(slim, saved_out)
    if not inside.startswith(os.pardir + os.sep) and inside != os.pardir:
        return os.path.join(here, inside)
    if force:
        return slim
    raise typer.BadParameter(
        f"the run was made in {saved_out}, and its weights-only copy {slim} lies outside it: resuming {out} would "
        "replace that file, the original run's; give --slim PATH (another file, or that one to replace it)",
        param_hint="--slim")


def check_outputs(out: Path, resume: bool, force: bool, slim: Optional[Path] = None) -> None:
    """Refuse, before anything is loaded, a run that would overwrite another without being asked,
    or that could not write its first checkpoint.

    Raises:
        typer.BadParameter: ``--resume`` without a run in ``out`` or with ``--force``; a run in
            ``out`` without either; an ``out`` or ``slim`` that cannot be written (or an existing
            ``slim`` file without either).
    """
    last = out / "last.pt"
    if resume and force:
        raise typer.BadParameter("--resume continues the run in --out and --force replaces it: give one of them")
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is not a folder", param_hint="--out")
    if resume and not last.is_file():
        raise typer.BadParameter(f"there is no run to continue: {last} does not exist", param_hint="--resume")
    if last.exists() and not (resume or force):
        raise typer.BadParameter(f"{out} holds a run ({last.name}): --resume continues it, --force replaces it",
                                 param_hint="--out")
    check_creatable(out, "--out")
    if slim is not None:
        if slim.is_dir():
            raise typer.BadParameter(f"{slim} is a folder", param_hint="--slim")
        if os.path.abspath(slim) == os.path.abspath(last) or (slim.exists() and last.exists() and slim.samefile(last)):
            raise typer.BadParameter(f"{slim} is the run's own checkpoint (with the optimizer state that --resume "
                                     "needs): give the weights-only copy another name", param_hint="--slim")
        if slim.exists() and not (resume or force):
            raise typer.BadParameter(f"{slim} exists: --force replaces it (so does --resume, the run's own copy)",
                                     param_hint="--slim")
        check_creatable(slim.parent, "--slim")


MODEL_OPTIONS = {"N": "channels", "M": "latent_channels", "Nh": "hyper_channels", "lmbda": "lmbda"}
"""ModelConfig fields and the parameters that give them (checked against a checkpoint's)."""


def check_architecture(saved: ModelConfig, asked: ModelConfig, given: frozenset[str], source: str) -> None:
    """Refuse architecture options given with a checkpoint (``source``: ``--init`` or ``--resume``)
    that differ from its own, rather than train the checkpoint's in silence; a ``--lmbda`` that
    differs is refused for a variable-rate checkpoint (whose rates ``--lmbdas`` sets) and when
    resuming."""
    for field in ("N", "M", "Nh"):
        option = "--" + MODEL_OPTIONS[field].replace("_", "-")
        if field in given and getattr(asked, field) != getattr(saved, field):
            raise typer.BadParameter(f"{option} {getattr(asked, field)} differs from the checkpoint's "
                                     f"{getattr(saved, field)}: a checkpoint keeps its architecture (leave {option} out)",
                                     param_hint=source)
    if "lmbda" in given and asked.lmbda != saved.lmbda:
        if saved.levels:
            raise typer.BadParameter("the checkpoint is variable-rate: --lmbdas sets its rates, not --lmbda",
                                     param_hint=source)
        if source == "--resume":
            raise typer.BadParameter(f"--lmbda {asked.lmbda} differs from the run's {saved.lmbda} "
                                     "(--init starts a run at another rate from its weights)", param_hint=source)


def check_creatable(folder: Path, option: str) -> None:
    """Refuse, as a usage error of ``option``, a ``folder`` that is neither writable nor can be made
    (its nearest existing ancestor must be a writable folder)."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise typer.BadParameter(f"cannot make {folder}: {existing} is not a folder", param_hint=option)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {existing}", param_hint=option)


def start_finetune(checkpoint: Path, out: Path, cache: Optional[Path], force: bool, threads: int,
                   seed: int) -> tuple[MeanScaleHyperprior, dict]:
    """What the fine-tuning commands do first: refuse an ``out`` that exists without ``force`` and
    folders that cannot be written, before any work; set torch's threads (0: its default) and
    seed; load ``checkpoint``, a bad one being a usage error."""
    if out.exists() and not force:
        raise typer.BadParameter(f"{out} exists: --force replaces it", param_hint="--out")
    check_creatable(out.parent, "--out")
    if cache is not None:
        check_creatable(cache.parent, "--cache")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        return load_model(checkpoint)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="CHECKPOINT") from None
