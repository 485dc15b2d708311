"""From a training checkpoint to a model folder the runtime loads.

    nicodec-export runs/mine/last.pt --out models/mine --model-id my-model-1

Writes the ONNX graphs (encoder, entropy parameters, decoder and its fp16 twin, and the
encoder-only synthesis gradient; dynamic height and width), the frozen integer CDF
tables and the manifest (see ``nicodec.model``), runs ``onnx.checker`` on every
graph, then checks parity with torch through the runtime itself: a test image is
coded by the exported folder and by the torch model, and the integers and pixels
are compared. The export fails when parity fails.

This module holds the graphs' writing and the command; the tables and the manifest are
written by ``nicodec.export.manifest``, the parity check is ``nicodec.export.parity``'s.
"""

from __future__ import annotations

import errno
import json
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

from nicodec.stops import Terminated, signals_held, stop_like_ctrl_c
from nicodec.errors import NicodecError
from nicodec.files import nearest_existing
from nicodec.format import model_id_problem
from nicodec.model import (
    DECODES_FILES_OF, ENCODER_GRAPHS, MANIFEST, ModelFiles, default_model_dir, manifest_hash, sha256_file,
)
from nicodec.options import quality_parser
from nicodec.sessions import _ort  # onnxruntime imported with its telemetry turned off, as the runtime does
from nicodec.training.integer import integer_parameters
from nicodec.training.model import MeanScaleHyperprior, scale_table
from nicodec.training.checkpoint import load_model

from .graphs import Decoder, EntropyParameters, Encoder, HalfDecoder, SynthesisGradient
from .integer import build_graph
from .manifest import DEFAULT_QUALITY, as_json, files_decodable, write_manifest, write_tables
from .parity import PARITY_QUALITIES, check_parity, parity_image

OPSET = 17

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
    ort = _ort()

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
    ort = _ort()

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
    training = {"checkpoint_step": as_json(ckpt.get("step")), "metrics": as_json(ckpt.get("metrics", {}))}
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
        parity = []
        for quality in qualities:
            parity.append(check_parity(model, tmp, parity_image(), quality))
            console.print(f"parity: {parity[-1]}")
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
