"""The training command lines refuse bad input at once, in one line, and overwrite nothing unasked.

Every case here fails before any training step: tiny synthetic images, tiny models, and the
image loader made to fail the test where a check must come before the images are read.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
typer = pytest.importorskip("typer")
from typer.testing import CliRunner  # noqa: E402

from nicodec.errors import ModelError  # noqa: E402
from nicodec.model import default_model_dir  # noqa: E402
from nicodec.training import data as data_module  # noqa: E402
from nicodec.training import decoder_finetune, entropy_finetune  # noqa: E402
from nicodec.training import loop as loop_module  # noqa: E402
from nicodec.training import run_start  # noqa: E402
from nicodec.training import train as train_module  # noqa: E402
from nicodec.training.model import MeanScaleHyperprior, ModelConfig  # noqa: E402
from nicodec.training.checkpoint import CheckpointError, load_model  # noqa: E402

from conftest import ended, ended_by

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[1]
TINY = ["--channels", "8", "--latent-channels", "8", "--hyper-channels", "8", "--crop", "64", "--device", "cpu"]
runner = CliRunner()


def invoke(command, *args) -> tuple[int, str]:
    """Run a command line; returns its exit code and its output with rich's boxes and line breaks
    removed. A Python exception (a traceback for a person) fails the test."""
    app = command if isinstance(command, typer.Typer) else typer.Typer(add_completion=False)
    if not isinstance(command, typer.Typer):
        app.command()(command)
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def error_line(output: str) -> str:
    """The one line (in the wide terminal of :func:`invoke`) that says what is wrong."""
    return output.split("Invalid value", 1)[1] if "Invalid value" in output else output


def write_images(folder: Path, count: int, side: int = 96) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (side, side + 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i:02d}.png")
    return folder


@pytest.fixture()
def images(tmp_path) -> Path:
    return write_images(tmp_path / "images", 10)


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    """A weights-only checkpoint of a tiny single-rate model."""
    torch.manual_seed(0)
    model = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8))
    path = tmp_path / "tiny.pt"
    torch.save({"model_config": model.config.to_dict(), "step": 3, "metrics": {}, "model": model.state_dict()}, path)
    return path


def refuse_image_loading(monkeypatch):
    """Reading pixels fails the test: what is checked must be checked before."""
    def refuse(*args, **kwargs):
        raise AssertionError("images were loaded before the check")

    for module in (data_module, decoder_finetune):  # (the fine-tunes' crops are read through data's load_rgb_or_warn)
        monkeypatch.setattr(module, "load_rgb", refuse)


@pytest.fixture()
def no_image_loading(monkeypatch):
    refuse_image_loading(monkeypatch)


def bad_checkpoints(folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    files = {"random bytes": folder / "random.pt", "a tensor": folder / "tensor.pt", "an empty config": folder / "empty.pt",
             "a folder": folder / "dir.pt", "no file": folder / "missing.pt"}
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save(torch.zeros(3), files["a tensor"])
    state = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8)).state_dict()
    torch.save({"model_config": {}, "model": state}, files["an empty config"])
    files["a folder"].mkdir()
    return files


# nicodec.training (train.py) ------------------------------------------------------------------------------------------


def test_an_existing_run_is_neither_overwritten_nor_resumed_by_mistake(tmp_path, no_image_loading):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"weeks of training")
    code, said = invoke(train_module.app, "--data", tmp_path / "nowhere", "--out", run, *TINY)
    assert code == 2 and "holds a run (last.pt): --resume continues it, --force replaces it" in error_line(said)
    code, said = invoke(train_module.app, "--out", run, "--resume", "--force", *TINY)
    assert code == 2 and "give one of them" in said
    code, said = invoke(train_module.app, "--out", run, "--resume", "--init", run / "last.pt", *TINY)
    assert code == 2 and "--resume continues the run in --out from its own last.pt and --init starts one" in said
    assert (run / "last.pt").read_bytes() == b"weeks of training"

    # --force gets past the guard (and fails here on the data, before any image is read).
    code, said = invoke(train_module.app, "--data", str(tmp_path / "nowhere-*"), "--out", run, "--force", *TINY)
    assert code == 2 and "no folder matches" in said
    assert (run / "last.pt").read_bytes() == b"weeks of training"

    # A --resume with no run to continue (a typo in --out) does not start one from scratch.
    code, said = invoke(train_module.app, "--data", tmp_path, "--out", tmp_path / "rnu", "--resume", *TINY)
    assert code == 2 and f"no run to continue: {tmp_path / 'rnu' / 'last.pt'} does not exist" in said
    assert not (tmp_path / "rnu").exists()


def test_outputs_that_cannot_be_written_are_refused_before_the_data_is_read(tmp_path, images, no_image_loading):
    (tmp_path / "file.txt").write_text("notes")
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", "--slim",
                        tmp_path / "file.txt" / "s.pt", *TINY)
    assert code == 2 and f"{tmp_path / 'file.txt'} is not a folder" in error_line(said)
    # The run's own checkpoint, which holds the optimizer state --resume needs, is no slim copy.
    for option in ("--force", None):
        extra = [option] if option else []
        code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", "--slim",
                            tmp_path / "run" / "last.pt", *extra, *TINY)
        assert code == 2 and "is the run's own checkpoint" in error_line(said)
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "file.txt" / "run", *TINY)
    assert code == 2 and f"{tmp_path / 'file.txt'} is not a folder" in said
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "file.txt", *TINY)
    assert code == 2 and "is not a folder" in said
    (tmp_path / "slim.pt").write_bytes(b"committed weights")
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", "--slim", tmp_path / "slim.pt", *TINY)
    assert code == 2 and "exists: --force replaces it" in said
    assert (tmp_path / "slim.pt").read_bytes() == b"committed weights" and (tmp_path / "file.txt").read_text() == "notes"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["random bytes", "a tensor", "an empty config", "a folder", "no file"])
def test_a_checkpoint_that_is_none_is_one_error_before_the_images_are_read(tmp_path, images, kind, no_image_loading):
    path = bad_checkpoints(tmp_path / "bad")[kind]
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", "--init", path, *TINY)
    expected = {"no file": f"checkpoint not found: {path}", "a folder": f"{path} is a folder, not a checkpoint file"}
    assert code == 2 and expected.get(kind, f"{path} is not a nicodec checkpoint: ") in error_line(said)
    assert "Missing key" not in said and "Traceback" not in said
    assert not (tmp_path / "run").exists()  # no empty run folder left behind

    # The shared helper says the same with an exception of its own (a ModelError, which nicodec-export reports).
    with pytest.raises(CheckpointError, match="not a nicodec checkpoint|not found|is a folder") as caught:
        load_model(path)
    assert isinstance(caught.value, ModelError) and "\n" not in str(caught.value)


def test_a_bare_resume_continues_with_the_runs_own_settings(tmp_path, images, monkeypatch):
    """--resume without options used to train at the defaults (crop 128, batch 8, lr 1e-4,
    20,000 steps, no --total-minutes) and wrote them into last.pt; an option given still wins.
    The crops are drawn with the run's seed, not the default one."""
    seeds = []
    real_sampler = run_start.CropSampler

    def recording(*args, generator_seed, **kwargs):
        seeds.append(generator_seed)
        return real_sampler(*args, generator_seed=generator_seed, **kwargs)

    monkeypatch.setattr(run_start, "CropSampler", recording)
    run = tmp_path / "run"
    first = ["--data", images, "--out", run, *TINY, "--steps", "3", "--batch", "2", "--lr", "3e-4", "--val-every", "2",
             "--seed", "5"]
    code, said = invoke(train_module.app, *first)
    assert code == 0, said
    code, said = invoke(train_module.app, "--data", images, "--out", run, "--resume", *TINY, "--steps", "5")
    assert code == 0, said
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    config = saved["train_config"]
    assert (config["steps"], config["batch"], config["lr"], config["val_every"], config["seed"]) == (5, 2, 3e-4, 2, 5)
    assert saved["step"] == 5 and "the run's own settings: " in said and "batch 2" in said
    assert seeds == [5, 5]


def test_slim_copy_goes_into_a_folder_made_for_it(tmp_path, images):
    """README's command: --slim runs/mine/weights.pt before runs/mine exists."""
    slim = tmp_path / "runs" / "mine" / "weights.pt"
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "runs" / "mine", "--slim", slim,
                        "--steps", "2", "--batch", "2", *TINY)
    assert code == 0, said
    assert "optimizer" not in torch.load(slim, map_location="cpu", weights_only=False)


def test_held_out_images_too_small_to_validate_on_are_an_error_not_training_crops(tmp_path, images):
    """With no held-out image large enough, validation used to measure 4 random training crops
    and call it "val loss" in silence."""
    small = write_images(tmp_path / "small", 3, side=40)
    code, said = invoke(train_module.app, "--data", images, "--val-data", small, "--out", tmp_path / "run",
                        "--steps", "1", "--batch", "2", *TINY)
    assert code == 2 and "none of the 3 held-out images is at least 64 pixels" in error_line(said)
    assert not (tmp_path / "run").exists()
    write_images(small, 2, side=96)  # im00, im01 replaced by 96 x 112 images; im02 stays 40 x 56
    code, said = invoke(train_module.app, "--data", images, "--val-data", small, "--out", tmp_path / "run",
                        "--steps", "1", "--batch", "2", *TINY)
    assert code == 0, said
    assert "2 held out (1 smaller than 64 pixels left out) (centre crops of 64, the smallest one's)" in said
    # One image that holds the usual 256-pixel crop: it alone is validated on, at 256, as always.
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (300, 320, 3), dtype=np.uint8)).save(small / "big.png")
    code, said = invoke(train_module.app, "--data", images, "--val-data", small, "--out", tmp_path / "run2",
                        "--steps", "1", "--batch", "2", *TINY)
    assert code == 0, said
    assert "1 held out (3 smaller than 256 pixels left out)," in said and "centre crops of" not in said


def test_a_deadline_in_the_past_is_refused_before_a_run_folder_is_made(tmp_path, images, no_image_loading):
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", "--deadline", "1", *TINY)
    assert code == 2 and "1.0 is past (it is a Unix time" in error_line(said)
    assert not (tmp_path / "run").exists()


def test_resuming_a_damaged_run_is_one_error(tmp_path, images, no_image_loading):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"\x00" * 100)
    code, said = invoke(train_module.app, "--data", images, "--out", run, "--resume", *TINY)
    assert code == 2 and "--resume" in said and "is not a nicodec checkpoint: torch cannot load it" in said
    assert (run / "last.pt").read_bytes() == b"\x00" * 100


@pytest.mark.parametrize("args, option, message", [
    (["--val-every", "0"], "--val-every", "must be a positive integer, not 0"),
    (["--batch", "0"], "--batch", "must be a whole number from 1 to 65,536, not 0"),
    (["--batch", "100000000000000000000"], "--batch", "must be a whole number from 1 to 65,536"),  # torch overflowed
    (["--crop", "0"], "--crop", "must be a positive multiple of 64, not 0"),
    (["--crop", "100"], "--crop", "must be a positive multiple of 64"),
    (["--lr", "-1"], "--lr", "must be a positive number (at most 1e36), not -1"),
    (["--lr", "1e38"], "--lr", "must be a positive number (at most 1e36), not 1e38"),
    (["--lr", "nan"], "--lr", "must be a positive number"),
    (["--steps", "-5"], "--steps", "must be a positive integer"),
    (["--minutes", "-1"], "--minutes", "must be a non-negative number"),
    (["--warmup", "-1"], "--warmup", "must be a non-negative integer"),
    (["--max-images", "-1"], "--max-images", "must be a non-negative integer"),
    (["--lmbda", "-0.1"], "--lmbda", "must be a positive number"),
    (["--channels", "-8"], "--channels", "must be a positive integer"),
    (["--latent-channels", "0"], "--latent-channels", "must be a positive integer"),
    (["--seed", "-1"], "--seed", "must be an integer from 0"),
    (["--device", "bogus"], "--device", "must be auto, cpu or cuda, not bogus"),
    (["--lmbdas=-1,0"], None, "Invalid value for --lmbdas: must be positive numbers separated by commas, lowest first, "
                               "not -1,0"),
    (["--lmbdas", "0.02,x"], None, "Invalid value for --lmbdas: must be positive numbers"),
    (["--lmbdas", "0.02,0.01"], None, "Invalid value for --lmbdas: lmbdas must be increasing"),
    (["--probe", "x"], None, "Invalid value for --probe: 'x' is not a batch size"),
    (["--probe", "0"], None, "Invalid value for --probe: probe batch sizes must be positive"),
    (["--tune-gains", "a", "--init", "x.pt"], None, "Invalid value for --tune-gains: must be comma-separated level"),
    (["--threads", "-1"], "--threads", "must be a non-negative integer"),
])
def test_bad_numbers_are_usage_errors_at_once(tmp_path, args, option, message, monkeypatch):
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("train() was reached"))
    code, said = invoke(train_module.app, "--out", tmp_path / "run", *TINY, *args)
    assert code == 2 and message in said and "Usage:" in said
    if option:
        assert f"Invalid value for '{option}'" in said


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_cuda_without_one_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("train() was reached"))
    code, said = invoke(train_module.app, "--out", tmp_path / "run", "--device", "cuda")
    assert code == 2 and "torch finds no CUDA device here" in said


def test_data_problems_are_named(tmp_path, no_image_loading):
    out = tmp_path / "run"
    code, said = invoke(train_module.app, "--data", "/nonexistent/shard-*", "--out", out, *TINY)
    assert code == 2 and "no folder matches /nonexistent/shard-*" in said
    few = write_images(tmp_path / "few", 8)
    code, said = invoke(train_module.app, "--data", few, "--out", out, *TINY)
    assert code == 2 and "8 images found" in said and "without --val-data the last 8 are held out, so at least 9" in said
    code, said = invoke(train_module.app, "--data", few, "--val-data", tmp_path / "empty-*", "--out", out, *TINY)
    assert code == 2 and "Invalid value for --val-data: no folder matches" in said
    assert not out.exists()


def test_running_out_of_memory_is_one_line(tmp_path, images, monkeypatch):
    """--batch 65536 (accepted) ended in a 70-line traceback from torch's CPU allocator."""
    def too_big(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 51539607552 bytes. Error code 12 (Cannot allocate memory)")

    with monkeypatch.context() as patched:
        patched.setattr(run_start, "list_images", too_big)
        code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY)
    assert code == 1 and said == ("error: out of memory: a smaller --batch or --crop (or fewer channels) needs less; "
                                  "no checkpoint was written"), said
    with monkeypatch.context() as patched:  # any other RuntimeError is a bug to show whole
        patched.setattr(run_start, "list_images", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
        result = runner.invoke(train_module.app, ["--data", str(images), "--out", str(tmp_path / "run"), *TINY])
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "a bug"


def test_ctrl_c_before_the_training_loop_is_one_line(tmp_path, images, monkeypatch):
    """Ctrl-C while the options were checked or the images read (minutes, for a large set)
    ended with exit code 130 and not a word; the loop's own handler says what it wrote."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(run_start, "list_images", interrupted)
        code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY)
    assert code == 130 and said == "interrupted before training began: no checkpoint was written", said
    assert not (tmp_path / "run" / "last.pt").exists()

    # Under torchrun the loop sets no handler: a Ctrl-C in it comes here too, after checkpoints.
    import contextlib

    real_step, steps = loop_module.training_step, []

    def step_then_stop(*args, **kwargs):
        steps.append(1)
        if len(steps) == 4:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop_module.Stop, "on_signals", lambda self, enabled=True: contextlib.nullcontext())
    monkeypatch.setattr(loop_module, "training_step", step_then_stop)
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY, "--steps", "10",
                        "--batch", "2", "--val-every", "2")
    assert code == 130 and said.endswith("interrupted: --resume continues from the last checkpoint written"), said
    assert (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("limit", ["steps", "minutes", "deadline"])
def test_the_progress_bar_counts_by_the_limit_that_ends_the_run(tmp_path, images, monkeypatch, limit):
    """A --minutes run with the default 20,000 steps showed "93/20000" and hours left; it shows
    the minutes, and the time left to the limit."""
    seen = []

    class Recording(loop_module.Progress):
        def update(self, task, **fields):
            seen.append(fields)
            super().update(task, **fields)

    monkeypatch.setattr(loop_module, "Progress", Recording)
    import time

    length = {"steps": ["--steps", "3"], "minutes": ["--minutes", "0.03"], "deadline": ["--deadline", time.time() + 6]}[limit]
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY, *length, "--batch", "2",
                        "--val-every", "1000")
    assert code == 0, said
    final = seen[-1]
    if limit == "steps":
        assert final["count"] == "3/3" and final["completed"] == 1000 and final["left"] == "0:00:00"
    else:
        assert re.fullmatch(r"step \d+, 0\.\d of 0\.\d min", final["count"]), final
        assert final["left"] == "0:00:00" and final["completed"] == 1000  # the time limit, not 20,000 steps, ended it


def test_training_images_none_of_which_reads_are_named_so_not_too_small(tmp_path):
    """It said none was at least --crop pixels, of files that were no images at all."""
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(12):
        (folder / f"f{i:02d}.png").write_text("not an image")
    code, said = invoke(train_module.app, "--data", folder, "--out", tmp_path / "run", *TINY, "--steps", "2")
    assert code == 2 and "none of the 4 training images could be read (the warning above names them)" in said, said
    assert "pixels on its shorter side" not in said and not (tmp_path / "run").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_among_the_images_is_passed_over_not_read(tmp_path):
    """A FIFO named like an image hung nicodec-train for ever: the loader read it to its end."""
    folder = tmp_path / "photos"
    write_images(folder, 3)
    os.mkfifo(folder / "pipe.png")
    (folder / "dir.png").mkdir()
    os.symlink(folder / "gone.png", folder / "broken.png")  # kept: the loader names it
    listed = [os.path.basename(p) for p in data_module.list_images([str(folder)])]
    assert "pipe.png" not in listed and "dir.png" not in listed and "broken.png" in listed and len(listed) == 4


def test_folder_layout_mistakes_are_named_with_the_way_out(tmp_path, no_image_loading):
    """A pattern that also matched a README refused the run; a parent folder of image folders
    said only "no images found"; a file given as --data said "not a folder"."""
    sets = tmp_path / "sets"
    write_images(sets / "a", 6)
    write_images(sets / "b", 6)
    (sets / "README.txt").write_text("where the photos come from")
    out = tmp_path / "run"
    assert len(data_module.list_images([f"{sets}/*"])) == 12  # the two folders, the README passed over
    code, said = invoke(train_module.app, "--data", sets, "--out", out, *TINY)
    assert code == 2 and f"no images found in {sets} (images in subfolders are not read: --data '{sets}/*' reads each" in said
    code, said = invoke(train_module.app, "--data", sets / "README.txt", "--out", out, *TINY)
    assert code == 2 and f"not a folder: {sets / 'README.txt'} (give the folder that holds it)" in said
    code, said = invoke(train_module.app, "--data", f"{sets}/*.txt", "--out", out, *TINY)
    assert code == 2 and f"no folder matches {sets}/*.txt (it matches 1 file: give the folder that holds them)" in said
    nested = tmp_path / "nested"
    write_images(nested / "x" / "deep", 6)
    write_images(nested / "y" / "deep", 6)
    code, said = invoke(train_module.app, "--data", f"{nested}/*", "--out", out, *TINY)  # one level too high
    assert code == 2 and f"no images found in {nested}/* (images in subfolders are not read: --data '{nested}/*/*'" in said
    write_images(sets, 2)  # photos of their own beside the folders: named, not passed over
    code, said = invoke(train_module.app, "--data", f"{sets}/*", "--out", out, *TINY)
    assert code == 2 and f"{sets}/* matches images ({sets / 'im00.png'} and 1 more) beside folders" in said, said


def test_a_crop_larger_than_every_image_is_named(tmp_path, images):
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY, "--crop", "128")
    assert code == 2 and "none of the 2 training images is at least 128 pixels on its shorter side" in said
    assert not (tmp_path / "run").exists()


# nicodec.training.entropy_finetune -------------------------------------------------------------------------------------


def entropy(*args):
    return invoke(entropy_finetune.main, *args)


def test_entropy_finetune_needs_images_and_sound_settings(tmp_path, checkpoint, no_image_loading):
    out = tmp_path / "int.pt"
    (tmp_path / "file.txt").write_text("notes")
    for args, message in (
        (["--out", tmp_path / "file.txt" / "int.pt"], f"{tmp_path / 'file.txt'} is not a folder"),
        (["--crop", "100", "100"], "crop sides must be positive multiples of 64, not 100 100"),
        (["--batch", "0"], "Invalid value for '--batch': must be a whole number from 1 to 65,536"),
        (["--lr", "1e38"], "Invalid value for '--lr': must be a positive number (at most 1e36)"),
        (["--threads", "-1"], "Invalid value for '--threads': must be a non-negative integer"),
        (["--data", tmp_path / "empty-*"], "no folder matches"),
        (["--data", write_images(tmp_path / "few", 8)], "8 images found"),
    ):
        code, said = entropy(checkpoint, "--out", out, "--crop", "64", "64", *args)
        assert code == 2 and message in said, said
    (tmp_path / "bad.pt").write_bytes(b"x")
    code, said = entropy(tmp_path / "bad.pt", "--out", out)
    assert code == 2 and "is not a nicodec checkpoint" in said and not out.exists()


def test_entropy_finetune_refuses_to_overwrite_even_its_input(tmp_path, checkpoint):
    before = checkpoint.read_bytes()
    code, said = entropy(checkpoint, "--out", checkpoint, "--data", tmp_path / "nowhere")
    assert code == 2 and f"{checkpoint} exists: --force replaces it" in said
    assert checkpoint.read_bytes() == before


def test_entropy_finetune_keeps_its_settings_with_its_cache(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setattr(entropy_finetune, "finetune", lambda *a, **k: [{"step": 0, "val_bpp": 1.0}])  # no training
    images = write_images(tmp_path / "images", 10, side=64)
    cache, out = tmp_path / "latents.pt", tmp_path / "int.pt"
    settings = ["--crop", "64", "64", "--per-image", "1", "--cache", cache, "--mode", "float"]
    code, said = entropy(checkpoint, "--out", out, "--data", images, *settings)
    assert code == 0 and cache.exists() and out.exists(), said
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".part"))]  # no temporary file left
    written = out.read_bytes()

    code, said = entropy(checkpoint, "--out", out, "--data", images, *settings, "--per-image", "2", "--force")
    assert code == 2 and "holds latents made with other settings or another model" in said
    assert out.read_bytes() == written
    code, said = entropy(checkpoint, "--out", out, *settings, "--force")  # the default --data is not read:
    assert code == 2 and "other settings" in said  # a cache is tied to the data it was given
    images.rename(tmp_path / "gone")
    code, said = entropy(checkpoint, "--out", out, "--data", images, *settings, "--force")
    assert code == 0, said  # the cache stands in for images that are no longer there

    torch.save([torch.zeros(1)] * 4, cache)  # a cache of the version that recorded no settings
    code, said = entropy(checkpoint, "--out", tmp_path / "other.pt", "--data", images, *settings)
    assert code == 2 and "delete it or give another --cache" in said and not (tmp_path / "other.pt").exists()


def test_entropy_finetune_that_diverges_writes_nothing(tmp_path, checkpoint):
    """It wrote weights that were not finite, and exited 0 (nicodec-export refused them later)."""
    images = write_images(tmp_path / "images", 10, side=64)
    code, said = entropy(checkpoint, "--out", tmp_path / "int.pt", "--data", images, "--crop", "64", "64",
                         "--per-image", "1", "--mode", "float", "--steps", "3", "--batch", "2", "--lr", "1e30")
    assert code == 1 and "training diverged" in said and "was not written" in said, said
    assert not (tmp_path / "int.pt").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_entropy_finetune_stopped_by_a_signal_writes_the_step_reached(tmp_path, checkpoint, signal_once_training):
    """SIGTERM or Ctrl-C lost the whole fine-tune, silently."""
    import signal

    signal_once_training(entropy_finetune, "gaussian_likelihood")
    images = write_images(tmp_path / "images", 10, side=64)
    out = tmp_path / "int.pt"
    code, said = entropy(checkpoint, "--out", out, "--data", images, "--crop", "64", "64", "--per-image", "1",
                         "--mode", "float", "--steps", "100000", "--batch", "2")
    assert code == 128 + signal.SIGTERM, said
    assert "SIGTERM: stopping after this step" in said and "stopped by SIGTERM at step 1 of 100000; wrote" in said
    report = torch.load(out, weights_only=True)["metrics"]["entropy_finetune"]
    assert report["stopped_by"] == "SIGTERM" and report["history"][-1]["step"] == 1
    assert not isinstance(getattr(signal.getsignal(signal.SIGTERM), "__self__", None), loop_module.Stop)  # put back

    # A second one stops at once, writing nothing, with SIGTERM's exit code (it was Ctrl-C's 130).
    signal_once_training(entropy_finetune, "gaussian_likelihood", times=2)
    code, said = entropy(checkpoint, "--out", tmp_path / "again.pt", "--data", images, "--crop", "64", "64",
                         "--per-image", "1", "--mode", "float", "--steps", "100000", "--batch", "2")
    assert code == 128 + signal.SIGTERM and "SIGTERM again: stopped at once, writing nothing more" in said, said
    assert not (tmp_path / "again.pt").exists()


# nicodec.training.decoder_finetune -------------------------------------------------------------------------------------


def decoder(*args):
    return invoke(decoder_finetune.main, *args)


def test_decoder_finetune_refuses_bad_settings_and_an_existing_out(tmp_path, checkpoint, images, no_image_loading):
    (tmp_path / "emptydir").mkdir()
    out = tmp_path / "gs.pt"
    for args, message in (
        (["--threads", "-1"], "Invalid value for '--threads': must be a non-negative integer"),
        (["--lr", "-1"], "Invalid value for '--lr': must be a positive number"),
        (["--crop", "100"], "Invalid value for '--crop': must be a positive multiple of 64"),
        (["--minutes", "inf"], "Invalid value for '--minutes': must be a non-negative number"),  # it was taken
        (["--minutes", "1e308"], "Invalid value for --minutes: must be a number of minutes a clock can count to"),
        ([], "Invalid value for --model: not a nicodec model folder"),
    ):
        code, said = decoder(checkpoint, "--out", out, "--model", tmp_path / "emptydir", "--data", images, *args)
        assert code == 2 and message in said, said
    out.write_bytes(b"an earlier fine-tune")
    code, said = decoder(checkpoint, "--out", out, "--model", tmp_path / "emptydir", "--data", images)
    assert code == 2 and f"{out} exists: --force replaces it" in said
    assert out.read_bytes() == b"an earlier fine-tune"


@pytest.mark.skipif(not (default_model_dir() / "manifest.json").exists(), reason="no shipped model")
def test_decoder_finetune_names_a_model_of_another_checkpoint(tmp_path, checkpoint, images, no_image_loading):
    code, said = decoder(checkpoint, "--out", tmp_path / "gs.pt", "--model", default_model_dir(), "--data", images)
    assert code == 2 and f"--model is not the export of {checkpoint}" in said
    assert not (tmp_path / "gs.pt").exists()


@pytest.mark.skipif(not (default_model_dir() / "manifest.json").exists(), reason="no shipped model")
def test_decoder_finetune_refuses_a_copy_of_the_model_that_cannot_encode(tmp_path, checkpoint, images,
                                                                        no_image_loading):
    """Such a copy loads (it decodes), and the first encode of the fine-tune was a traceback."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    (model / "encoder.onnx").unlink()
    code, said = decoder(checkpoint, "--out", tmp_path / "gs.pt", "--model", model, "--data", images)
    assert code == 2 and "Invalid value for --model: the model" in said and "cannot encode" in said, said
    assert not (tmp_path / "gs.pt").exists()


def _shipped_checkpoint() -> Path:
    """The checkpoint the shipped model was exported from: training/checkpoints/MODEL_ID.pt."""
    manifest = REPO / "runtime" / "models" / "default" / "manifest.json"
    model_id = json.loads(manifest.read_text())["model_id"] if manifest.exists() else "none"
    return REPO / "training" / "checkpoints" / f"{model_id}.pt"


SHIPPED = _shipped_checkpoint()


@pytest.mark.skipif(not SHIPPED.exists() or not (REPO / "runtime" / "models" / "default").is_dir(),
                    reason="needs the shipped checkpoint and model")
def test_decoder_finetune_names_held_out_images_too_small_before_encoding(tmp_path, images, no_image_loading):
    small = write_images(tmp_path / "small", 2, side=32)
    code, said = decoder(SHIPPED, "--out", tmp_path / "gs.pt", "--model", REPO / "runtime" / "models" / "default",
                         "--data", images, "--val-data", small, "--crop", "64", "--val-crop", "64")
    assert code == 2 and "no held-out image is at least 64 pixels on both sides" in said
    assert not (tmp_path / "gs.pt").exists()


@pytest.mark.skipif(not SHIPPED.exists() or not (REPO / "runtime" / "models" / "default").is_dir(),
                    reason="needs the shipped checkpoint and model")
def test_decoder_finetune_names_a_model_whose_gains_are_not_the_checkpoints(tmp_path, images, no_image_loading):
    """The synthesis's agreement, on one quality, passed an export of other gain vectors (the
    same g_s after --tune-gains), and g_s was tuned on latents of other rates."""
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    ckpt["model"]["log_gain"] = ckpt["model"]["log_gain"] + 0.1
    tuned = tmp_path / "tuned.pt"
    torch.save(ckpt, tuned)
    code, said = decoder(tuned, "--out", tmp_path / "gs.pt", "--model", REPO / "runtime" / "models" / "default",
                         "--data", images)
    assert code == 2 and f"--model is not the export of {tuned}: its 10 levels' gain vectors differ" in said, said
    assert not (tmp_path / "gs.pt").exists()


# training/prepare_gpu_data.py and training/gpu_run.sh -----------------------------------------------------------------


@pytest.fixture()
def prepare(tmp_path, monkeypatch):
    if not (REPO / "training" / "prepare_gpu_data.py").is_file():
        pytest.skip("needs the checkout's training/ folder (the tests run from a copy of tests/)")
    spec = importlib.util.spec_from_file_location("prepare_gpu_data", REPO / "training" / "prepare_gpu_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path / "checkout")
    monkeypatch.setattr(module, "travelling_bytes", lambda root, leave_out: 0)
    for shard in (1, 5):
        folder = tmp_path / "shared" / "train" / f"shard-{shard}"
        folder.mkdir(parents=True)
        for i in range(10):
            (folder / f"photo{i}.jpg").write_bytes(b"p" * 1000)
    return module


def test_prepare_gpu_data_checks_its_budget_and_counts_a_shard_once(prepare, tmp_path, capsys):
    data, out = tmp_path / "shared", tmp_path / "checkout" / "data" / "gpu"
    with pytest.raises(SystemExit) as caught:
        prepare.main(["--data", str(data), "--out", str(out), "--budget-mib", "-5"])
    assert caught.value.code == 2 and "--budget-mib: must be a positive number of MiB, not -5" in capsys.readouterr().err
    assert not out.exists()
    assert prepare.main(["--data", str(data), "--out", str(out), "--shards", "1", "1"]) == 0
    assert "10 of 10 training photos (shards 1, 0.0 MiB)" in capsys.readouterr().out


def test_gpu_run_replaces_its_own_scratch_run(tmp_path, checkpoint, images):
    """The script's training command carries --force: runs/gpu is left by a CPU try-out."""
    if not (REPO / "training" / "gpu_run.sh").is_file():
        pytest.skip("needs the checkout's training/gpu_run.sh (an sdist has none)")
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PY="echo", DEVICE="cpu", INIT=str(checkpoint), DATA=str(images), VAL=str(images))
    subprocess.run(["bash", str(REPO / "training" / "gpu_run.sh")], cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=60)
    command = (out / "command.txt").read_text()
    assert "--out runs/gpu --force " in command and "--resume" not in command


def test_gpu_run_starts_from_the_checkpoint_of_the_shipped_model_unless_told(tmp_path, images):
    """Without INIT the script takes the one checkpoint the tree keeps, and that is the shipped
    model's, named by its id (as test_refine and these tests find it): a model swap that left the
    old default in the script, or a second checkpoint, failed only on the GPU machine, after its
    start had cost minutes of device time."""
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout (an sdist keeps no training/checkpoints)")
    from nicodec.model import ModelFiles

    kept = sorted((REPO / "training" / "checkpoints").glob("*.pt"))
    assert [p.name for p in kept] == [f"{ModelFiles.load().model_id}.pt"]
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PY="echo", DEVICE="cpu", DATA=str(images), VAL=str(images))
    env.pop("INIT", None)
    subprocess.run(["bash", str(REPO / "training" / "gpu_run.sh")], cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=60)
    assert f"--init training/checkpoints/{kept[0].name} " in (out / "command.txt").read_text()


def test_a_bare_resume_takes_the_runs_data_held_out_images_and_slim_copy_from_anywhere(tmp_path, images, monkeypatch):
    """--resume alone used to drop --data, --val-data, --max-images and --slim: it trained on the
    default data set (relative to wherever it ran) and left the slim copy at the first run's step."""
    held_out = write_images(tmp_path / "held", 2)
    monkeypatch.chdir(tmp_path)
    code, said = invoke(train_module.app, "--data", "images", "--val-data", "held", "--max-images", "3", "--out", "run",
                        "--slim", "run/weights.pt", *TINY, "--steps", "2", "--batch", "2", "--val-every", "1")
    assert code == 0, said
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, said = invoke(train_module.app, "--out", "../run", "--resume", "--steps", "4")
    assert code == 0, said
    assert f"data {[str(images)]}" in said and f"val_data {[str(held_out)]}" in said and "max_images 3" in said
    assert "3 training images, 2 held out" in said
    slim = torch.load(tmp_path / "run" / "weights.pt", map_location="cpu", weights_only=False)
    assert slim["step"] == 4 and "wrote ../run/last.pt and " in said
    # Given again, an option wins over the run's.
    code, said = invoke(train_module.app, "--out", "../run", "--resume", "--steps", "5", "--max-images", "2")
    assert code == 0, said
    assert "2 training images" in said and "max_images" not in said.split("training images")[0]


def test_resume_with_tune_gains_continues_only_a_run_that_tuned_those_gains(tmp_path, images, monkeypatch):
    """--resume --tune-gains on a run that trained the whole network was refused for an
    --integer-from the user had not given, and with --integer-from 0 it ended in a traceback
    (the run's optimizer state, of every weight, loaded into one of the gains). It is refused
    before any image is read, naming the run of its own that tunes them."""
    run, tuned = tmp_path / "run", tmp_path / "tuned"
    common = [*TINY, "--lmbdas", "0.01,0.04", "--batch", "2", "--val-every", "2"]
    code, said = invoke(train_module.app, "--data", images, "--out", run, *common, "--steps", "2",
                        "--integer-from", "0.5")
    assert code == 0, said
    with monkeypatch.context() as patched:
        refuse_image_loading(patched)
        for extra in ([], ["--integer-from", "0"]):
            code, said = invoke(train_module.app, "--out", run, "--resume", "--steps", "4", "--tune-gains", "1", *extra)
            assert code == 2 and "Traceback" not in said, said
            assert ("--resume continues a run as it trained, and this one trained the whole network: tune gains from "
                    f"its weights in a run of their own (--init {run / 'last.pt'} --tune-gains 1 --out ANOTHER") in said
    # As it says: a run of their own, which --resume then continues, with those levels only.
    code, said = invoke(train_module.app, "--data", images, "--out", tuned, "--init", run / "last.pt", *common,
                        "--tune-gains", "1", "--new-schedule", "--steps", "2")
    assert code == 0, said
    before = torch.load(tuned / "last.pt", map_location="cpu", weights_only=False)["step"]
    code, said = invoke(train_module.app, "--out", tuned, "--resume", "--steps", "3", "--tune-gains", "1")
    assert code == 0, said
    resumed = torch.load(tuned / "last.pt", map_location="cpu", weights_only=False)
    assert tuple(resumed["train_config"]["tune_levels"]) == (1,) and resumed["step"] == before + 1
    code, said = invoke(train_module.app, "--out", tuned, "--resume", "--steps", "4", "--tune-gains", "0")
    assert code == 2 and "this one tuned the gains of levels 1: tune gains from its weights" in said, said


def test_a_schedule_that_ends_before_its_integer_point_says_so(tmp_path, images):
    """The switch to the integer hyper-synthesis comes at a step's start: 2 steps never reach 90%.
    The run ended "done" with float entropy parameters, and nicodec-export then said to resume
    it, which had nothing to train; it says so and how to switch, and its checkpoint says it is complete."""
    run = tmp_path / "run"
    code, said = invoke(train_module.app, "--data", images, "--out", run, *TINY, "--lmbdas", "0.01,0.04", "--steps", "2",
                        "--batch", "2", "--integer-from", "0.9")
    assert code == 0, said
    assert (f"warning: the schedule ended before its --integer-from 0.9 point, so the entropy parameters are still "
            f"float (files may not decode on other machines): nicodec-train --init {run / 'last.pt'} --integer-from 0.9 "
            "--new-schedule --out ANOTHER --steps N switches them") in said
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert saved["metrics"]["schedule_complete"] is True and not saved["model_config"]["integer_entropy"]
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "switched", *TINY, "--lmbdas",
                        "0.01,0.04", "--steps", "2", "--batch", "2", "--integer-from", "0.5")
    assert code == 0 and "warning" not in said, said


def test_architecture_options_that_differ_from_the_checkpoint_are_refused_and_lmbda_fine_tunes(tmp_path, checkpoint,
                                                                                              images):
    """With --init or --resume the checkpoint's architecture and lmbda were used in silence, whatever
    the command line said; now a different architecture is refused, and --init with --lmbda trains
    the single-rate model at the new rate."""
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "a", "--init", checkpoint,
                        "--channels", "16", "--device", "cpu", "--crop", "64")
    assert code == 2 and "--channels 16 differs from the checkpoint's 8" in error_line(said)
    assert not (tmp_path / "a").exists()
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "b", "--init", checkpoint, "--lmbda",
                        "0.2", "--steps", "5", "--batch", "2", "--device", "cpu", "--crop", "64")
    assert code == 0, said
    assert "lmbda 0.013 of the checkpoint replaced by 0.2" in said
    assert torch.load(tmp_path / "b" / "last.pt", map_location="cpu", weights_only=False)["model_config"]["lmbda"] == 0.2
    code, said = invoke(train_module.app, "--out", tmp_path / "b", "--resume", "--lmbda", "0.3", "--steps", "6")
    assert code == 2 and "--lmbda 0.3 differs from the run's 0.2" in error_line(said)
    code, said = invoke(train_module.app, "--out", tmp_path / "b", "--resume", "--channels", "8", "--steps", "6")
    assert code == 0, said  # the same as the checkpoint's: nothing to refuse


def test_unreadable_training_images_are_named_and_left_out_and_16_bit_ones_keep_their_top_bits(tmp_path, images):
    """One bad file in --data ended the run with a long traceback (a truncated one unnamed), and
    16-bit images were clipped to white by convert("RGB")."""
    from nicodec.training.data import load_rgb

    (images / "notes.jpg").write_text("not an image")
    whole = (images / "im00.png").read_bytes()
    (images / "cut.png").write_bytes(whole[: len(whole) // 2])
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY, "--steps", "1",
                        "--batch", "2")
    assert code == 0, said
    assert "warning: 2 images could not be read and are left out:" in said
    assert "notes.jpg" in said and "cut.png" in said
    ramp = (np.arange(64 * 96, dtype=np.uint32).reshape(64, 96) * 10).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    loaded = load_rgb(str(tmp_path / "deep.png"), 64)
    assert loaded.shape == (3, 64, 96)
    np.testing.assert_array_equal(loaded[0].numpy(), (ramp >> 8).astype(np.uint8))


@pytest.mark.parametrize("timed", [False, True])
def test_resuming_a_finished_run_trains_nothing_and_leaves_its_checkpoint(tmp_path, images, monkeypatch, timed):
    """Said before the images are read (it read them all first). timed: a schedule of --minutes."""
    run = tmp_path / "run"
    length = ["--steps", "100000", "--minutes", "0.02"] if timed else ["--steps", "2"]
    code, said = invoke(train_module.app, "--data", images, "--out", run, *TINY, *length, "--batch", "2")
    assert code == 0, said
    before = (run / "last.pt").read_bytes()
    refuse_image_loading(monkeypatch)
    code, said = invoke(train_module.app, "--out", run, "--resume")
    assert code == 0, said
    if timed:
        assert re.search(r"nothing to train: the run's schedule is complete \(step \d+, [\d.]+ of 0.02 schedule minutes\)", said)
    else:
        assert "nothing to train: the run's schedule is complete (step 2 of 2)" in said
    assert (run / "last.pt").read_bytes() == before


@pytest.mark.parametrize("timed", [False, True])
def test_a_diverging_run_stops_without_writing_over_its_checkpoint(tmp_path, images, monkeypatch, timed):
    """timed: the checkpoint written every CHECKPOINT_SECONDS between validations (0 here: after
    every step) wrote NaN weights when it fell between the loss checks, every 25 steps."""
    run = tmp_path / "run"
    code, said = invoke(train_module.app, "--data", images, "--out", run, *TINY, "--steps", "2", "--batch", "2")
    assert code == 0, said
    before = (run / "last.pt").read_bytes()
    if timed:
        monkeypatch.setattr(loop_module, "CHECKPOINT_SECONDS", 0)
    code, said = invoke(train_module.app, "--out", run, "--resume", "--lr", "1e6", "--steps", "200", "--val-every", "30")
    assert code == 1
    assert "the loss is not finite at step" in said
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(value).all() for value in saved["model"].values() if value.is_floating_point())
    if timed:  # written after every finite step, up to the one that diverged
        stopped = int(re.search(r"not finite at step (\d+)", said).group(1))
        assert f"last.pt keeps the weights of step {saved['step']}" in said and 2 < saved["step"] < stopped
    else:
        assert "last.pt is left as it was" in said and (run / "last.pt").read_bytes() == before


def test_a_signal_while_the_loop_writes_its_progress_is_said_and_raises_nothing(monkeypatch):
    """A SIGTERM that came while the loop wrote to standard error found the stream's buffer in use:
    the handler's line raised "reentrant call inside BufferedWriter" into the loop (exit code 1,
    no checkpoint). Here the signal comes from inside the write itself."""
    import io
    import signal

    from rich.console import Console

    from nicodec.training import stopping

    stop = stopping.Stop()
    read_end, write_end = os.pipe()

    class SignalledMidWrite(io.FileIO):
        signalled = False

        def write(self, data):
            if not self.signalled:
                self.signalled = True
                stop._handle(signal.SIGTERM, None)
            return super().write(data)

    stream = io.TextIOWrapper(io.BufferedWriter(SignalledMidWrite(write_end, "w")), encoding="utf-8")
    monkeypatch.setattr(stopping, "console", Console(file=stream, soft_wrap=True, markup=False, highlight=False))
    stopping.console.print("step 7/100")
    stream.close()
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read().decode()
    assert stop.signal == signal.SIGTERM
    assert "SIGTERM: stopping after this step" in said and "step 7/100" in said, said


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_writes_a_checkpoint_at_the_step_reached(tmp_path, images):
    """Ctrl-C or SIGTERM ended a run with nothing saved since its last validation (on a CPU at the
    README's sizes, a whole 60-minute run)."""
    import signal
    import sys
    import threading

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "nicodec.training", "--data", str(images), "--out", str(run), *TINY, "--steps",
         "1000000", "--val-every", "1000000", "--batch", "2"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path)
    watchdog = threading.Timer(240, process.kill)  # a line never found: the test fails, it does not hang
    watchdog.start()
    try:
        for line in process.stderr:
            if line.startswith("first step"):
                break
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        code = process.wait(timeout=120)
    finally:
        watchdog.cancel()
        process.kill()
        ended(process)
    assert code == ended_by(signal.SIGTERM), rest
    assert "SIGTERM: stopping after this step" in rest and "stopped by SIGTERM" in rest and "--resume continues" in rest
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert saved["step"] >= 1


def test_a_log_gets_no_progress_bar_whatever_force_color_says(tmp_path, images):
    """FORCE_COLOR (set by many CI workflows) made Rich draw the bar into a piped stderr: a dozen
    redraws before each line, which also hid "first step" from a reader of the log."""
    import sys

    env = {**os.environ, "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "nicodec.training", "--data", str(images), "--out", str(tmp_path / "run"), *TINY,
         "--steps", "3", "--batch", "2"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b[2K" not in done.stderr and "━" not in done.stderr, done.stderr
    assert any(line.startswith("first step") for line in done.stderr.splitlines()), done.stderr


def test_an_unreadable_held_out_image_is_not_counted_as_a_small_one(tmp_path, images):
    (images / "zz.png").write_text("notes, not an image")  # the last file found: held out
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY, "--steps", "1",
                        "--batch", "2")
    assert code == 0, said
    assert "warning: 1 image could not be read" in said and "7 held out (centre" in said and "smaller than" not in said


def test_a_checkpoint_that_cannot_be_written_is_one_line_naming_what_is_kept(tmp_path, images, monkeypatch):
    """A full disk, or a folder made read-only, at a mid-run checkpoint ended in a traceback."""
    real, calls = loop_module.save_checkpoint, []

    def save_checkpoint(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "save_checkpoint", save_checkpoint)
    run = tmp_path / "run"
    code, said = invoke(train_module.app, "--data", images, "--out", run, *TINY, "--steps", "3", "--batch", "2",
                        "--val-every", "1")
    assert code == 1, said
    assert (f"error: cannot write {run / 'last.pt'} at step 2: No space left on device ({run / 'last.pt'} keeps "
            "step 1; --resume continues from there)") in said
    assert torch.load(run / "last.pt", map_location="cpu", weights_only=False)["step"] == 1

    # The weights-only copy alone: last.pt is written, and the message says so and names the copy.
    def slim_checkpoint(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop_module, "save_checkpoint", real)
    monkeypatch.setattr(loop_module, "slim_checkpoint", slim_checkpoint)
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run2", *TINY, "--steps", "1",
                        "--batch", "2", "--slim", tmp_path / "w.pt")
    assert code == 1, said
    assert (f"error: cannot write {tmp_path / 'w.pt'} at step 1: No space left on device "
            f"({tmp_path / 'run2' / 'last.pt'} has step 1; --resume continues from there)") in said


def test_a_stop_during_the_final_validation_waits_for_the_checkpoint(tmp_path, images, monkeypatch):
    """The handlers covered the loop only: SIGTERM during the final validation (a `timeout` as a
    time-boxed run ends) killed the run with nothing written."""
    import signal

    handlers, real = [], loop_module.validate

    def validate(*args, **kwargs):
        handlers.append(type(getattr(signal.getsignal(signal.SIGTERM), "__self__", None)))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "validate", validate)
    code, said = invoke(train_module.app, "--data", images, "--out", tmp_path / "run", *TINY, "--steps", "2",
                        "--batch", "2")
    assert code == 0, said
    assert handlers[-1] is loop_module.Stop and (tmp_path / "run" / "last.pt").exists()


def test_a_folder_given_twice_is_counted_once_and_held_out_images_are_not_trained_on(tmp_path, images):
    """Held-out images among the training ones are left out of training, copies of them too
    (data/gpu/val holds copies of shard 5's last files, which comparing paths missed)."""
    import shutil

    code, said = invoke(train_module.app, "--data", images, "--data", images, "--out", tmp_path / "run", *TINY,
                        "--steps", "1", "--batch", "2")
    assert code == 0, said
    assert "warning: 10 training images listed twice" in said and "2 training images, 8 held out" in said
    code, said = invoke(train_module.app, "--data", images, "--val-data", images, "--out", tmp_path / "run2", *TINY,
                        "--steps", "1", "--batch", "2")
    assert code == 2 and "every one of the 10 training images is held out too" in said, said
    held_out = tmp_path / "held-out"
    held_out.mkdir()
    for path in sorted(images.iterdir())[-3:]:
        shutil.copy(path, held_out / f"copy-{path.name}")
    code, said = invoke(train_module.app, "--data", images, "--val-data", held_out, "--out", tmp_path / "run3", *TINY,
                        "--steps", "1", "--batch", "2")
    assert code == 0, said
    assert "warning: 3 training images are held out too (or a copy of one): left out of training" in said
    assert "7 training images, 3 held out" in said


def test_held_out_copies_are_found_by_their_bytes_not_their_names(tmp_path):
    """What train and decoder_finetune leave out of training for a held-out folder."""
    from nicodec.training.data import held_out_copies

    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    for name, data in (("a.jpg", b"A" * 100), ("b.jpg", b"B" * 100), ("c.jpg", b"C" * 50)):
        (tmp_path / "train" / name).write_bytes(data)
    (tmp_path / "val" / "renamed.jpg").write_bytes(b"A" * 100)  # a copy under another name
    (tmp_path / "val" / "same-size.jpg").write_bytes(b"D" * 100)  # the size of a and b, other bytes
    (tmp_path / "val" / "c.jpg").symlink_to(tmp_path / "train" / "c.jpg")  # the same file
    train = sorted(str(p) for p in (tmp_path / "train").iterdir())
    val = sorted(str(p) for p in (tmp_path / "val").iterdir()) + [str(tmp_path / "val" / "gone.jpg")]
    assert held_out_copies(train, val) == {str(tmp_path / "train" / "a.jpg"), str(tmp_path / "train" / "c.jpg")}
    assert held_out_copies(train, []) == set()


def test_resuming_a_copied_run_writes_its_own_slim_copy_not_the_originals(tmp_path, images, monkeypatch):
    """The slim path was kept absolute: resuming a copy of a run folder (a branch, or a run
    fetched from another machine) replaced the original run's weights-only file."""
    import shutil

    monkeypatch.chdir(tmp_path)
    args = ("--data", "images", *TINY, "--batch", "2", "--val-every", "1")
    code, said = invoke(train_module.app, *args, "--out", "run", "--slim", "run/weights.pt", "--steps", "2")
    assert code == 0, said
    shutil.copytree("run", "copy")
    code, said = invoke(train_module.app, "--out", "copy", "--resume", "--steps", "4")
    assert code == 0, said
    step = {name: torch.load(tmp_path / name / "weights.pt", map_location="cpu", weights_only=False)["step"]
            for name in ("run", "copy")}
    assert step == {"run": 2, "copy": 4} and str(tmp_path / "copy" / "weights.pt") in said
    # A slim file outside the run's folder is the original's: refused, unless --slim says.
    code, said = invoke(train_module.app, *args, "--out", "outside", "--slim", "outside.pt", "--steps", "2")
    assert code == 0, said
    shutil.copytree("outside", "outside-copy")
    code, said = invoke(train_module.app, "--out", "outside-copy", "--resume", "--steps", "4")
    assert code == 2 and "its weights-only copy" in error_line(said) and "give --slim PATH" in error_line(said)
    assert torch.load("outside.pt", map_location="cpu", weights_only=False)["step"] == 2
    code, said = invoke(train_module.app, "--out", "outside-copy", "--resume", "--steps", "4", "--slim", "mine.pt")
    assert code == 0, said
    assert torch.load("mine.pt", map_location="cpu", weights_only=False)["step"] == 4
    # A --slim given anew that names an existing file other than the run's own copy: refused (it
    # replaced a photo). The run's own copy may be named.
    Path("photo.png").write_bytes(b"a photo")
    code, said = invoke(train_module.app, "--out", "outside-copy", "--resume", "--steps", "5", "--slim", "photo.png")
    assert code == 2 and "photo.png exists and is not the run's weights-only copy" in error_line(said), said
    assert Path("photo.png").read_bytes() == b"a photo"
    code, said = invoke(train_module.app, "--out", "outside-copy", "--resume", "--steps", "5", "--slim", "mine.pt")
    assert code == 0, said
    os.symlink(".", "here")  # the run's own copy by another path
    code, said = invoke(train_module.app, "--out", "outside-copy", "--resume", "--steps", "6", "--slim", "here/mine.pt")
    assert code == 0, said


def test_init_from_a_checkpoint_whose_schedule_is_complete_is_refused(tmp_path, images):
    """It trained no step, said "done" and wrote the checkpoint's weights under the new settings
    (a single-rate model relabelled with another lmbda)."""
    code, said = invoke(train_module.app, "--data", images, *TINY, "--batch", "2", "--out", tmp_path / "a", "--steps", "2",
                        "--val-every", "1")
    assert code == 0, said
    for extra in ((), ("--lmbda", "0.05")):
        code, said = invoke(train_module.app, "--data", images, *TINY, "--batch", "2", "--out", tmp_path / "b",
                            "--init", tmp_path / "a" / "last.pt", "--steps", "2", *extra)
        assert code == 2 and "the checkpoint's schedule is complete (step 2, 2 of the 2 --steps" in error_line(said)
        assert not (tmp_path / "b" / "last.pt").exists()
    code, said = invoke(train_module.app, "--data", images, *TINY, "--batch", "2", "--out", tmp_path / "b",
                        "--init", tmp_path / "a" / "last.pt", "--steps", "2", "--new-schedule", "--lmbda", "0.05")
    assert code == 0 and "2 steps in" in said, said


def test_held_out_files_that_cannot_be_read_are_named_as_such(tmp_path, images):
    """The last files found are held out before any is read: when none of them could be read,
    the error said none was large enough."""
    for i in range(8):
        (images / f"zz{i}.jpg").write_text("not an image")
    code, said = invoke(train_module.app, "--data", images, *TINY, "--batch", "2", "--out", tmp_path / "a", "--steps", "1")
    assert code == 2 and "(8 of them could not be read: the last 8 files found are held out)" in error_line(said)


def test_a_run_folder_with_brackets_is_named_as_it_is(tmp_path, images):
    """The console read its messages as Rich markup: "[x]" in a path vanished from them, and
    "x[/b]/last.pt" (a folder "x[" holding "b]") ended a finished run in a MarkupError, exit 1."""
    out = tmp_path / "x[" / "b]"
    code, said = invoke(train_module.app, "--data", images, "--out", out, *TINY, "--steps", "2", "--batch", "2")
    assert code == 0, said
    assert f"wrote {out / 'last.pt'}" in said and (out / "last.pt").is_file()


@pytest.mark.parametrize("module", ["nicodec.training.train", "nicodec.training.decoder_finetune",
                                    "nicodec.training.entropy_finetune", "nicodec.export.export"])
def test_the_training_consoles_print_a_message_as_one_line_as_it_is(module):
    """Names with [x] or [/x] (markup) or :cat: (an emoji code) and lines past 80 columns (the
    fine-tunes wrapped theirs in logs)."""
    import importlib

    console = importlib.import_module(module).console
    text = "wrote runs/x[/b]/a[bold]/:cat:/" + "long_name_" * 20 + "last.pt: held-out 0.1234 -> 0.1200"
    with console.capture() as captured:
        console.print(text)
    assert captured.get() == text + "\n"
