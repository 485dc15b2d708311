"""nicodec-export's guards: what it refuses before any work, and how it replaces a model folder."""

from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
from typer.testing import CliRunner  # noqa: E402

from nicodec.export.export import _swap_in, app  # noqa: E402

pytestmark = pytest.mark.train
runner = CliRunner()


def export(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def checkpoint(tmp_path):
    """A file where a checkpoint is expected: the guards below act before it is read."""
    path = tmp_path / "ckpt.pt"
    path.write_bytes(os.urandom(256))
    return path


def test_force_replaces_model_folders_only(tmp_path, checkpoint, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"weeks of training")
    result = export(checkpoint, "--out", run, "--force")
    assert result.exit_code == 1 and "not a model folder" in result.output
    assert (run / "last.pt").read_bytes() == b"weeks of training"

    (tmp_path / "manifest.json").write_text("{}")  # even as a model folder: it holds the checkpoint
    result = export(checkpoint, "--out", tmp_path, "--force")
    assert result.exit_code == 1 and "holds the checkpoint" in result.output

    monkeypatch.chdir(run)
    result = export(checkpoint, "--out", ".", "--force")
    assert result.exit_code == 1 and "holds the current folder" in result.output
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]

    (tmp_path / "file").write_text("x")
    result = export(checkpoint, "--out", tmp_path / "file", "--force")
    assert result.exit_code == 1 and "is not a folder" in result.output


@pytest.mark.parametrize("model_id, message", [("", "1 to 64 bytes"), ("x" * 65, "1 to 64 bytes"),
                                               ("\udcff", "not valid UTF-8"), ("a\x1b[2J", "not printable")])
def test_model_ids_the_header_cannot_hold_are_refused_first(tmp_path, checkpoint, model_id, message):
    result = export(checkpoint, "--out", tmp_path / "model", "--model-id", model_id)
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "model").exists()


def test_a_file_that_is_not_a_checkpoint_is_one_error_line(tmp_path, checkpoint):
    result = export(checkpoint, "--out", tmp_path / "model")
    assert result.exit_code == 1 and "not a nicodec checkpoint" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "model").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary folder left


def test_add_encoder_graphs_takes_no_options_it_would_ignore(tmp_path, checkpoint):
    result = export(checkpoint, "--out", tmp_path, "--add-encoder-graphs", "--force")
    assert result.exit_code == 2 and "--add-encoder-graphs" in result.output


def test_a_model_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out, new = tmp_path / "model", tmp_path / ".model-new"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    with pytest.raises(FileNotFoundError):
        _swap_in(new, out)  # the new folder cannot be moved in: the old one stays
    assert (out / "manifest.json").read_text() == "old"
    new.mkdir()
    (new / "manifest.json").write_text("new")
    _swap_in(new, out)
    assert (out / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_shipped_model_is_replaced_only_when_asked_and_with_an_id(checkpoint, tmp_path, monkeypatch):
    """--force over the package's own model folder changed what every user decodes with, under
    the id nicodec-default made from the folder's name; now refused before any work."""
    from nicodec.export import export as export_module
    from nicodec.model import default_model_dir

    shipped = default_model_dir()
    before = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    result = export(checkpoint, "--out", shipped, "--force")
    assert result.exit_code == 1 and "ships inside the installed nicodec package" in result.output
    assert "--replace-shipped-model" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == before
    # The calls that pass the guard go to a stand-in for the shipped folder, never the real one.
    stand_in = tmp_path / "site-packages" / "nicodec" / "models" / "default"
    stand_in.mkdir(parents=True)
    (stand_in / "manifest.json").write_text("{}")
    monkeypatch.setattr(export_module, "default_model_dir", lambda: stand_in)
    result = export(checkpoint, "--out", stand_in, "--force")
    assert result.exit_code == 1 and "ships inside the installed nicodec package" in result.output
    result = export(checkpoint, "--out", stand_in, "--force", "--replace-shipped-model")
    assert result.exit_code == 2 and "needs its own id" in " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    # Asked for, and with an id: the guards pass and the checkpoint (random bytes here) is what fails.
    result = export(checkpoint, "--out", stand_in, "--force", "--replace-shipped-model", "--model-id", "mine-1")
    assert result.exit_code == 1 and "ships inside" not in result.output
    assert (stand_in / "manifest.json").read_text() == "{}"


def test_a_folder_that_cannot_be_written_is_refused_before_the_checkpoint_is_read(tmp_path, checkpoint, monkeypatch):
    """A read-only output folder was an OSError traceback after the checkpoint had been loaded
    (root passes every permission check, so os.access answers for a read-only mount here)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real_access(path, mode))
    for out in (tmp_path / "model", tmp_path / "a" / "b"):
        result = export(checkpoint, "--out", out)
        assert result.exit_code == 1 and f"the folder {tmp_path} is not writable" in result.output, result.output
        assert "Traceback" not in result.output and not out.exists()


def test_a_checkpoint_with_weights_that_are_not_finite_is_named(tmp_path):
    import torch

    from nicodec.training.model import MeanScaleHyperprior, ModelConfig

    model = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8))
    state = model.state_dict()
    state["g_s.0.weight"] = torch.full_like(state["g_s.0.weight"], float("nan"))
    path = tmp_path / "diverged.pt"
    torch.save({"model_config": model.config.to_dict(), "model": state}, path)
    result = export(path, "--out", tmp_path / "model")
    assert result.exit_code == 1 and "weights that are not finite (NaN or inf, in g_s.0.weight)" in result.output
    assert "its training diverged" in result.output and not (tmp_path / "model").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_signals_wait_while_the_finished_folder_is_put_in_place(tmp_path, monkeypatch):
    """Stopped half-way through the swap, OUT was missing (the old folder renamed aside) or the old
    folder half removed, and the export said it wrote nothing: the swap now finishes, and the
    signal is reported."""
    import signal

    import torch

    from nicodec.export import export as export_module
    from nicodec.training.model import MeanScaleHyperprior, ModelConfig

    torch.manual_seed(0)
    model = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8))
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict()}, checkpoint)
    monkeypatch.setattr(export_module, "DEFERRED", [])
    real_swap = export_module._swap_in

    def interrupted_swap(new, out, force):
        os.kill(os.getpid(), signal.SIGTERM)  # as if it came during the swap
        real_swap(new, out, force)

    monkeypatch.setattr(export_module, "_swap_in", interrupted_swap)
    before = signal.getsignal(signal.SIGTERM)
    result = export(checkpoint, "--out", tmp_path / "model")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "SIGTERM came while the finished folder was being put in place" in result.output
    assert (tmp_path / "model" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "tiny.pt"]
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_during_an_export_is_a_stop_like_ctrl_c(tmp_path, checkpoint, monkeypatch):
    """SIGTERM left the half-made hidden folder beside OUT; it now ends the export as Ctrl-C does
    (export_model removes its folder on any exception), with exit code 143."""
    import signal

    from nicodec.export import export as export_module

    made = []

    def interrupted(*args, **kwargs):
        folder = tmp_path / ".model-half"
        folder.mkdir()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            made.append("not interrupted")
        except BaseException:
            folder.rmdir()  # what export_model does with its temporary folder
            raise

    monkeypatch.setattr(export_module, "export_model", interrupted)
    before = signal.getsignal(signal.SIGTERM)
    result = export(checkpoint, "--out", tmp_path / "model")
    assert result.exit_code == 143 and "stopped by SIGTERM" in result.output and not made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_float_checkpoint_of_a_run_stopped_before_its_integer_point_says_to_finish_the_run(tmp_path):
    """weights.pt is written at every validation, and a stopped run's too: one exported before
    the run reached its --integer-from was told to train again with --integer-from, which the
    run had; it is told to resume the run."""
    import torch

    from nicodec.training.model import MeanScaleHyperprior, ModelConfig

    model = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8, lmbdas=(0.01, 0.04)))
    saved = {"model_config": model.config.to_dict(), "model": model.state_dict(), "step": 414}
    stopped = {**saved, "train_config": {"integer_from": 0.9, "steps": 5000}, "metrics": {"schedule_complete": False}}
    torch.save(stopped, tmp_path / "stopped.pt")
    torch.save(saved, tmp_path / "float.pt")
    result = export(tmp_path / "stopped.pt", "--out", tmp_path / "a")
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert ("files may not decode on other machines; its run stopped at step 414, before it reached its "
            "--integer-from 0.9 (90% of its schedule): nicodec-train --out RUN --resume continues it (a run "
            "stopped by its --minutes, again until one passes that point)") in said
    assert "a build before" not in said
    # In its run's folder, beside the run's last.pt, the folder is named; and named as it is, brackets and all
    # (the console took "[/x]" for markup: a MarkupError, exit code 1, after the model folder was written).
    run = tmp_path / "run[x]"
    run.mkdir()
    torch.save(stopped, run / "last.pt")
    result = export(run / "last.pt", "--out", tmp_path / "m[bold]", "--model-id", "a[/b]c")
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and f"nicodec-train --out {run} --resume continues it" in said, result.output
    assert f"wrote {tmp_path / 'm[bold]'} (model a[/b]c, hash " in said
    # A checkpoint of an older build does not say whether its schedule was complete: both ways are named.
    torch.save({**stopped, "metrics": {}}, tmp_path / "older.pt")
    said = " ".join(export(tmp_path / "older.pt", "--out", tmp_path / "d").output.split())
    assert "point) (a run of a build before 2026-12-03 whose schedule is complete: --init" in said
    # A run whose schedule ended before its switch (few steps): --resume has nothing to train.
    torch.save({**stopped, "metrics": {"schedule_complete": True}}, tmp_path / "ended.pt")
    said = " ".join(export(tmp_path / "ended.pt", "--out", tmp_path / "c").output.split())
    assert "--resume" not in said and "train it with nicodec-train --integer-from (or --init this checkpoint" in said
    result = export(tmp_path / "float.pt", "--out", tmp_path / "b")
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and "train it with nicodec-train --integer-from (or --init this checkpoint" in said


def test_ctrl_c_during_an_export_is_one_line(tmp_path, checkpoint, monkeypatch):
    """Ctrl-C ended an export with exit code 130 and not a word (Typer's way), where SIGTERM said what it left."""
    from nicodec.export import export as export_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "export_model", interrupted)
    result = export(checkpoint, "--out", tmp_path / "model")
    assert result.exit_code == 130 and result.output == f"interrupted: {tmp_path / 'model'} was not written\n"


def test_the_shipped_checkpoint_exports_to_the_shipped_entropy_side_and_may_claim_its_files(tmp_path):
    """``nicodec-export CKPT --decodes-files-of runtime/models/default`` (the documented step after a
    decoder fine-tune) refused the checkpoint the shipped model came from, on an AMD EPYC: torch's
    exp gave the scale table other last bits there, so tables.npz differed. The entropy side,
    which decides every file's integers, must come out the same wherever the export runs."""
    import json
    from pathlib import Path

    from nicodec.model import ENTROPY_SIDE, default_model_dir

    shipped = default_model_dir()
    model_id = json.loads((shipped / "manifest.json").read_text())["model_id"]
    checkpoint = Path(__file__).resolve().parents[1] / "training" / "checkpoints" / f"{model_id}.pt"
    if not checkpoint.is_file():
        pytest.skip("needs the checkpoint the shipped model was exported from (a checkout's training/checkpoints)")
    result = export(checkpoint, "--out", tmp_path / "again", "--model-id", "again-1", "--decodes-files-of", shipped)
    assert result.exit_code == 0, result.output
    for name in ENTROPY_SIDE:
        assert (tmp_path / "again" / name).read_bytes() == (shipped / name).read_bytes(), name
    claimed = json.loads((tmp_path / "again" / "manifest.json").read_text())["decodes_files_of"]
    assert model_id in [entry["model_id"] for entry in claimed]


def test_ctrl_c_while_adding_the_encoder_graphs_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    """It ended with exit code 130 and not a word, and at times left a 3 MB
    .synthesis_gradient.onnx.tmp in the model folder."""
    import json
    import shutil
    from pathlib import Path

    from nicodec.export import export as export_module
    from nicodec.model import default_model_dir

    shipped = default_model_dir()
    model_id = json.loads((shipped / "manifest.json").read_text())["model_id"]
    checkpoint = Path(__file__).resolve().parents[1] / "training" / "checkpoints" / f"{model_id}.pt"
    if not checkpoint.is_file():
        pytest.skip("needs the checkpoint the shipped model was exported from (a checkout's training/checkpoints)")
    folder = tmp_path / "model"
    shutil.copytree(shipped, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def interrupted(path, *args, **kwargs):
        assert Path(path).is_file()  # the graph is written: the interrupt comes with it in the folder
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "store_weights_in_half", interrupted)
    result = export(checkpoint, "--out", folder, "--add-encoder-graphs")
    assert result.exit_code == 130, result.output
    assert result.output == f"interrupted: {folder} is as it was, without the encoder graphs\n"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_metrics_of_no_json_type_are_written_as_json_can_hold_them(tmp_path):
    """A checkpoint whose metrics held NaN or a tensor failed the export with a 120-line
    traceback (the manifest is strict JSON)."""
    import json

    import torch

    from nicodec.training.model import MeanScaleHyperprior, ModelConfig

    model = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8, lmbdas=(0.01, 0.04)))
    metrics = {"loss": float("nan"), "bpp": torch.tensor(0.5), "psnr": [28.5, float("inf")], "shape": torch.Size([2])}
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(), "step": torch.tensor(7),
                "metrics": metrics}, tmp_path / "odd.pt")
    result = export(tmp_path / "odd.pt", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "m" / "manifest.json").read_text())["training"]
    assert training["checkpoint_step"] == 7 and training["metrics"]["loss"] is None
    assert training["metrics"]["bpp"] == 0.5 and training["metrics"]["psnr"] == [28.5, None]
    assert training["metrics"]["shape"] == [2]


def test_an_empty_folder_made_for_the_model_is_written_without_force(tmp_path, monkeypatch):
    """It was refused as existing, and with --force as "not a model folder": no way to use it."""
    import torch

    from nicodec.model import ModelFiles
    from nicodec.training.model import MeanScaleHyperprior, ModelConfig

    model = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8, lmbdas=(0.01, 0.04)))
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(), "step": 1}, tmp_path / "m.pt")
    (tmp_path / "made").mkdir()
    result = export(tmp_path / "m.pt", "--out", tmp_path / "made", "--model-id", "made-1")
    assert result.exit_code == 0, result.output
    assert ModelFiles.load(tmp_path / "made").model_id == "made-1"
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    result = export(tmp_path / "m.pt", "--out", ".", "--model-id", "here-1")
    assert result.exit_code == 1 and "the export would replace ., which holds the current folder" in result.output
    assert list((tmp_path / "here").iterdir()) == []


def test_an_id_made_from_a_long_folder_name_names_the_folder_not_model_id(tmp_path, checkpoint):
    """It said "... not 70 (--model-id)", an option the command line did not have."""
    out = tmp_path / ("m_" + "x" * 60)
    result = runner.invoke(app, [str(checkpoint), "--out", str(out)], env={"COLUMNS": "1000"})
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    assert result.exit_code == 2 and f"the model id made from its name, nicodec-{out.name}, cannot be one" in said
    assert "give --model-id" in said and not out.exists()


def test_an_empty_folder_that_filled_during_the_export_is_not_replaced(tmp_path):
    """Accepted as empty without --force, it was renamed aside and removed at the end with
    whatever had come into it (a second export's model, a file of the user's)."""
    out, new = tmp_path / "model", tmp_path / ".model-new"
    out.mkdir()
    new.mkdir()
    (new / "manifest.json").write_text("new")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is no longer empty"):
        _swap_in(new, out, force=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (new / "manifest.json").is_file()
    (out / "notes.txt").unlink()
    _swap_in(new, out, force=False)  # still empty: the rename replaces it
    assert (out / "manifest.json").read_text() == "new" and not new.exists()


def test_an_export_writes_nothing_in_the_home_folder(tmp_path):
    """nicodec-export imported onnxruntime itself, before the runtime's opt-out from its telemetry,
    so an export left a device id and a database under ~/.cache/Microsoft (docs/install.md says
    nicodec turns that off)."""
    import subprocess
    import sys

    import torch

    from nicodec.training.model import MeanScaleHyperprior, ModelConfig

    model = MeanScaleHyperprior(ModelConfig(N=8, M=8, Nh=8, lmbdas=(0.01, 0.04)))
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(), "step": 1}, tmp_path / "m.pt")
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")}
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, "-m", "nicodec.export", str(tmp_path / "m.pt"), "--out", str(tmp_path / "model"),
                           "--model-id", "t-1"], env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert list(home.rglob("*")) == [] and "telemetry" not in done.stderr
