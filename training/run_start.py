"""What a training run starts from: the process and its device (one of several under
``torchrun``), the model (new, a checkpoint's weights, or the run's own ``last.pt`` with the
settings it was made with), the training and held-out images, and the crops on the device."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
import torch.distributed as dist
import typer

from .checkpoint import CheckpointError, load_model
from .data import CropSampler, center_crops, held_out_copies, list_images, load_images, subfolder_hint
from .messages import console
from .model import MeanScaleHyperprior, ModelConfig, remap_levels
from .run_checks import RUN_OPTIONS, check_architecture, check_creatable, resumed_config, resumed_slim

if TYPE_CHECKING:
    from .schedule import TrainConfig

VAL_CROP = 256
"""Side of the centre crop of each held-out image that validation measures; smaller held-out
images are left out, unless none is that large: then every crop is the largest multiple of 64
they all hold (down to ``VAL_MIN_CROP``)."""
VAL_MIN_CROP = 64


@dataclass
class Process:
    """Where this process trains: its device and, under ``torchrun``, its rank among the processes."""

    device: torch.device
    rank: int = 0
    distributed: bool = False

    @property
    def main(self) -> bool:
        """Whether this process speaks, validates and writes the checkpoints (rank 0)."""
        return self.rank == 0

    def autocast(self):
        """bf16 autocast on a GPU; on a CPU a context that changes nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def end(self) -> None:
        """Wait for the other processes of a distributed run and leave their group."""
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()


def start_process(device_name: str, integer_from: float) -> Process:
    """Join the process group of a ``torchrun`` launch (one process per device) and pick the device
    (``device_name`` "auto": a GPU where there is one), set for speed on a GPU. ``--integer-from`` is refused under ``torchrun``: it needs a single
    process."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        if integer_from:
            raise typer.BadParameter("--integer-from needs a single process")
        backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
        dist.init_process_group(backend)
        rank = dist.get_rank()
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Process(device, rank, distributed)


def seed_everything(seed: int) -> None:
    """Seed torch, Python's ``random`` and numpy alike."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


@dataclass
class Start:
    """What a run starts from (:func:`starting_point`)."""

    model: MeanScaleHyperprior
    ckpt: dict  # the checkpoint read (--resume or --init); empty for a new model
    cfg: TrainConfig  # a resumed run's own settings where the command line gave none
    folders: list[str]  # the images to train on, and the rest of RUN_OPTIONS: a resumed run's own
    val_folders: Optional[list[str]]
    max_images: int
    slim: Optional[Path]
    data_unsaved: bool  # a resumed run whose checkpoint did not keep its --data (an older one)


def starting_point(process: Process, out: Path, model_cfg: ModelConfig, cfg: TrainConfig, resume: bool,
                   init: Optional[Path], folders: list[str], val_folders: Optional[list[str]], max_images: int,
                   slim: Optional[Path], force: bool, inherit: frozenset[str], inherit_options: frozenset[str],
                   given_model: frozenset[str]) -> Start:
    """The model a run trains, from its own ``last.pt`` (``resume``), from ``init``'s weights or new,
    and the settings it trains with: a resumed run takes its own for those the command line did not
    give (``inherit``, ``inherit_options``), an ``init`` run remaps the checkpoint's levels to
    ``model_cfg.lmbdas`` or its single rate to ``model_cfg.lmbda``. See
    :func:`nicodec.training.train.train`."""
    last = out / "last.pt"
    ckpt: dict = {}
    try:
        if resume:
            model, ckpt = load_model(last)
        elif init is not None:
            model, ckpt = load_model(init)
        else:
            model = MeanScaleHyperprior(model_cfg)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="--resume" if resume else "--init") from None
    if ckpt:
        check_architecture(model.config, model_cfg, given_model, "--resume" if resume else "--init")
    restored: dict = {}
    if ckpt and resume:
        if model_cfg.lmbdas and model_cfg.lmbdas != model.config.lmbdas:
            raise typer.BadParameter("--lmbdas differ from the run being resumed (--init can change them)")
        saved_options = ckpt.get("run_options") or {}
        for name in RUN_OPTIONS:
            if name in inherit_options and saved_options.get(name) is not None:
                restored[name] = saved_options[name]
        folders = restored.get("data", folders)
        val_folders = restored.get("val_data", val_folders)
        max_images = restored.get("max_images", max_images)
        if "slim" in restored and process.main:
            restored["slim"] = resumed_slim(restored["slim"], saved_options.get("out"), out, force)
            slim = Path(restored["slim"])
            check_creatable(slim.parent, "--slim")
        elif slim is not None and slim.exists() and "slim" not in inherit_options:
            # A --slim given anew replaces the run's own copy, not any file that happens to be there.
            own = saved_options.get("slim")
            if own is not None:
                own = resumed_slim(own, saved_options.get("out"), out, force=True)
            if own is None or not (os.path.abspath(slim) == os.path.abspath(own)
                                   or (os.path.exists(own) and os.path.samefile(slim, own))):
                raise typer.BadParameter(
                    f"{slim} exists and is not the run's weights-only copy ({own or 'it kept none'}): give another "
                    "file, or remove that one first", param_hint="--slim")
        saved_levels = tuple((ckpt.get("train_config") or {}).get("tune_levels") or ())
        if "tune_levels" not in inherit and cfg.tune_levels != saved_levels:
            # Its optimizer's state is of the weights that run trained: a whole network, or those gains.
            trained = (f"tuned the gains of levels {','.join(map(str, saved_levels))}" if saved_levels
                       else "trained the whole network")
            raise typer.BadParameter(
                f"--resume continues a run as it trained, and this one {trained}: tune gains from its weights in a "
                f"run of their own (--init {last} --tune-gains {','.join(map(str, cfg.tune_levels))} --out ANOTHER "
                "--new-schedule --steps N)", param_hint="--tune-gains")
        cfg, kept = resumed_config(cfg, ckpt.get("train_config") or {}, inherit)
        # The checks and the seeding before saw the command line's settings: again with the run's.
        if process.distributed and cfg.integer_from:
            raise typer.BadParameter("--integer-from needs a single process (the run being resumed has it)")
        if cfg.tune_levels and cfg.integer_from:
            raise typer.BadParameter("--tune-gains keeps h_s as it is: it takes no --integer-from "
                                     "(the run being resumed has one of them)")
        seed_everything(cfg.seed + 1000 * process.rank)
        kept.update(restored)
        if process.main and kept:
            console.print("the run's own settings: " + ", ".join(f"{name} {value}" for name, value in kept.items()))
    elif ckpt and model_cfg.lmbdas and model_cfg.lmbdas != model.config.lmbdas:
        before = model.config.lmbdas
        try:
            model = remap_levels(model, model_cfg.lmbdas)
        except ValueError as exc:
            raise typer.BadParameter(f"--lmbdas with --init: {exc}") from None
        if process.main:
            console.print(f"levels remapped from {list(before)} to {list(model_cfg.lmbdas)}")
    elif ckpt and "lmbda" in given_model and model_cfg.lmbda != model.config.lmbda:
        if process.main:  # a single-rate model fine-tuned to another rate (check_architecture refused it for the others)
            console.print(f"lmbda {model.config.lmbda} of the checkpoint replaced by {model_cfg.lmbda}")
        model.config = dataclasses.replace(model.config, lmbda=model_cfg.lmbda)
    data_unsaved = resume and "data" in inherit_options and "data" not in restored
    return Start(model, ckpt, cfg, folders, val_folders, max_images, slim, data_unsaved)


def image_lists(folders: list[str], val_folders: Optional[list[str]], cfg: TrainConfig, max_images: int,
                main: bool, data_unsaved: bool = False) -> tuple[list[str], list[str]]:
    """The training and held-out images' paths: each file once, none of the held-out ones (or
    their copies) trained on; without ``val_folders`` the last ``cfg.val_images`` files are held
    out. ``data_unsaved``: the run was resumed from a checkpoint that did not keep its --data."""
    try:
        paths = list_images(folders)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc) + (" (the run was saved without its --data: give it)" if data_unsaved
                                             else ""), param_hint="--data") from None
    try:
        val_paths = list_images(val_folders) if val_folders else []
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--val-data") from None
    if not paths:
        raise typer.BadParameter(f"no images found in {', '.join(folders)}{subfolder_hint(folders)}", param_hint="--data")
    if val_folders and not val_paths:
        raise typer.BadParameter(f"no images found in {', '.join(val_folders)}{subfolder_hint(val_folders)}",
                                 param_hint="--val-data")
    unique: dict[str, str] = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    twice, paths = len(paths) - len(unique), list(unique.values())
    if twice and main:
        console.print(f"warning: {twice} training image{'s' if twice > 1 else ''} listed twice (the same "
                      "folder given twice?) counted once")
    if val_folders:
        shared = held_out_copies(paths, val_paths)
        train_paths = [p for p in paths if p not in shared]
        if not train_paths:
            raise typer.BadParameter(f"every one of the {len(paths)} training images is held out too (or a copy of "
                                     "one): --data and --val-data need other images", param_hint="--val-data")
        if shared and main:  # validation would measure what the model trained on
            console.print(f"warning: {len(shared)} training image{'s are' if len(shared) > 1 else ' is'} held out "
                          "too (or a copy of one): left out of training")
    elif len(paths) <= cfg.val_images:
        raise typer.BadParameter(f"{len(paths)} images found in {', '.join(folders)}: without --val-data the last "
                                 f"{cfg.val_images} are held out, so at least {cfg.val_images + 1} are needed",
                                 param_hint="--data")
    else:
        val_paths, train_paths = paths[-cfg.val_images :], paths[: -cfg.val_images]
    if max_images:
        train_paths = train_paths[:max_images]
    return train_paths, val_paths


def load_data(train_paths: list[str], val_paths: list[str], cfg: TrainConfig, val_folders: Optional[list[str]],
              process: Process, seed: int, resumed_at: Optional[int]) -> tuple[CropSampler, torch.Tensor]:
    """Read the images onto the device: a sampler of random training crops (seeded ``seed``, or
    ``seed`` plus ``resumed_at``, the checkpoint's step, for other crops than the run before)
    and the held-out batch of centre crops that validation measures."""
    t_load = time.monotonic()
    images, small, problems = load_images(train_paths, cfg.crop)
    val, _, val_problems = load_images(val_paths, VAL_MIN_CROP)
    if process.main and (problems or val_problems):
        unread = problems + val_problems
        console.print(f"warning: {len(unread)} image{'s' if len(unread) > 1 else ''} could not be read and "
                      f"{'are' if len(unread) > 1 else 'is'} left out: " + "; ".join(unread[:5])
                      + (f"; and {len(unread) - 5} more" if len(unread) > 5 else ""))
    if not images and len(problems) == len(train_paths):  # none read at all: their size is not the matter
        raise typer.BadParameter(f"none of the {len(train_paths)} training images could be read (the warning above "
                                 "names them)", param_hint="--data")
    if not images:
        raise typer.BadParameter(f"none of the {len(train_paths)} training images is at least {cfg.crop} pixels "
                                 "on its shorter side" + (f" ({len(problems)} of them could not be read)" if problems
                                                          else ""), param_hint="--crop")
    if not val:  # validating on training crops instead would report a figure that means nothing
        unread = (f" ({len(val_problems)} of them could not be read"
                  + ("" if val_folders else f": the last {cfg.val_images} files found are held out") + ")"
                  if val_problems else "")
        raise typer.BadParameter(f"none of the {len(val_paths)} held-out images is at least {VAL_MIN_CROP} pixels on "
                                 f"its shorter side (validation uses their centre crops){unread}",
                                 param_hint="--val-data" if val_folders else "--data")
    full = [im for im in val if min(im.shape[1:]) >= VAL_CROP]
    if full:  # the usual crop, comparable with every run before; smaller images are left out
        val, val_side = full, VAL_CROP
    else:  # none holds it: the largest multiple of 64 they all hold
        val_side = min(min(im.shape[1:]) for im in val) // VAL_MIN_CROP * VAL_MIN_CROP
    sampler = CropSampler(images, cfg.crop, process.device, generator_seed=seed)
    val_batch = center_crops(val, val_side).to(process.device)
    if resumed_at is not None:
        sampler.reseed(seed + resumed_at)
    if process.main:
        dropped = len(val_paths) - len(val_problems) - len(val)  # the unreadable ones are warned of above
        console.print(f"{len(images)} training images"
                      + (f" ({small} smaller than the {cfg.crop}-pixel crop left out)" if small else "")
                      + f", {len(val)} held out"
                      + (f" ({dropped} smaller than {val_side if full else VAL_MIN_CROP} pixels left out)"
                         if dropped else "")
                      + (f" (centre crops of {val_side}, the smallest one's)" if val_side < VAL_CROP else "")
                      + f", device {process.device} ({time.monotonic() - t_load:.1f} s to load)")
    return sampler, val_batch
