"""Which graphs a Codec loads, and when; a model folder copied without what decoding does not need."""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import nicodec
from nicodec import Codec, ModelError
from nicodec import codec as codec_module
from nicodec.cli import app
from nicodec.model import default_model_dir

from conftest import opened

runner = CliRunner()


@pytest.fixture()
def loaded(monkeypatch):
    """The names of the graphs sessions are created for, in order, from now on (but the entropy
    parameters', which every Codec loads and checks as it is made)."""
    names = []
    real = codec_module.create_session

    def recording(path, *args, **kwargs):
        if path.stem != "entropy_parameters":
            names.append(path.stem)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(codec_module, "create_session", recording)
    return names


def _copy(tmp_path, leaving_out=("encoder.onnx", "synthesis_gradient.onnx", "decoder_fp16.onnx")):
    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    for name in leaving_out:
        (folder / name).unlink()
    return folder


def test_each_graph_loads_at_its_first_use_only(photo, loaded):
    """A codec that only decodes never loads the analysis (14 to 17 MB of memory, 0.03 s, on
    the shipped model), one that only encodes never loads the synthesis."""
    data = Codec(providers="cpu").encode(photo)
    loaded.clear()
    decoding = Codec(providers="cpu")
    assert loaded == []
    decoding.decode(data)
    decoding.decode(data)
    assert loaded == ["decoder"]
    header, *_ = decoding.decode_symbols(data)
    assert loaded == ["decoder"] and header.width == photo.shape[1]
    loaded.clear()
    encoding = Codec(providers="cpu")
    encoding.encode(photo, quality=30)
    encoding.encode(photo, quality=60)
    assert loaded == ["encoder"]
    assert Codec(providers="cpu", precision="fp16").prepare(encode=False) is not None
    assert loaded == ["encoder", "decoder_fp16"]
    loaded.clear()
    Codec(providers="cpu", refine=2).prepare(decode=False)
    assert loaded == ["encoder", "synthesis_gradient", "decoder"]  # refining decodes to choose its latent


def test_threads_sharing_a_new_codec_load_each_graph_once(photo, monkeypatch):
    codec = Codec(providers="cpu")
    made = []
    real = codec_module.create_session

    def slow(path, *args, **kwargs):
        made.append(path.stem)
        time.sleep(0.2)  # long enough for every thread to find the graph not loaded yet
        return real(path, *args, **kwargs)

    monkeypatch.setattr(codec_module, "create_session", slow)
    results, start = [], threading.Barrier(4)

    def encode():
        start.wait()
        results.append(codec.encode(photo))

    threads = [threading.Thread(target=encode) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["encoder"]
    assert len(results) == 4 and len(set(results)) == 1


def test_prepare_loads_what_it_is_asked_for_and_checks_its_arguments(loaded):
    codec = Codec(providers="cpu")
    assert codec.prepare(encode=False, decode=False) is codec and loaded == []
    codec.prepare()
    assert loaded == ["encoder", "decoder"]
    codec.prepare()
    assert loaded == ["encoder", "decoder"]
    for bad in ({"encode": 1}, {"decode": "no"}):
        with pytest.raises(nicodec.NicodecError, match="must be True or False"):
            codec.prepare(**bad)
    assert set(codec.providers) == {"encoder", "entropy_parameters", "decoder"}


def test_a_copy_without_the_other_graphs_decodes_the_same_and_says_why_it_cannot_encode(tmp_path, photo):
    """An edge board that only shows images needs the manifest, the tables and two graphs
    (6.8 of the shipped model's 19.5 MB): the same model, so the same files and pixels."""
    folder = _copy(tmp_path)
    full = Codec(providers="cpu")
    data = full.encode(photo, quality=40)
    decoder = Codec(folder, providers="cpu")
    assert decoder.model_id == full.model_id and decoder.model.model_hash == full.model.model_hash
    assert np.array_equal(decoder.decode(data, as_array=True), full.decode(data, as_array=True))
    assert set(decoder.model.unavailable) == {"encoder.onnx", "synthesis_gradient.onnx", "decoder_fp16.onnx"}
    assert "encoder" not in decoder.providers
    missing = f"cannot encode: {folder / 'encoder.onnx'} is missing"
    with pytest.raises(ModelError, match=f"^the model {full.model_id} {missing}"):
        decoder.encode(photo)
    with pytest.raises(ModelError, match=missing):
        decoder.prepare()
    assert decoder.prepare(encode=False) is decoder
    with pytest.raises(ModelError, match=missing):
        Codec(folder, providers="cpu", refine=5)
    with pytest.raises(ModelError, match=f"no usable fp16 synthesis: {folder / 'decoder_fp16.onnx'} is missing"):
        Codec(folder, providers="cpu", precision="fp16")


def test_a_damaged_encoder_graph_stops_encoding_only(tmp_path, photo):
    folder = _copy(tmp_path, leaving_out=())
    with open(folder / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    data = Codec(providers="cpu").encode(photo)
    codec = Codec(folder, providers="cpu")
    assert codec.decode(data, as_array=True).shape == photo.shape
    with pytest.raises(ModelError, match="cannot encode: .*encoder.onnx does not match its SHA-256 in the manifest"):
        codec.encode(photo)


@pytest.mark.parametrize("name", ["decoder.onnx", "entropy_parameters.onnx", "tables.npz"])
def test_a_folder_without_what_decoding_needs_does_not_load(tmp_path, name):
    folder = _copy(tmp_path, leaving_out=(name,))
    with pytest.raises(ModelError, match=f"^model file {folder / name} is missing$"):
        Codec(folder, providers="cpu")


def test_a_folder_without_a_manifest_says_what_it_is_where_that_helps(tmp_path):
    """A training run's folder given as a model, or a folder that is not there, said only "no
    manifest.json"; the first is told to export a checkpoint, the second that it is missing."""
    import re

    run = tmp_path / "run"
    run.mkdir()
    (run / "weights.pt").write_bytes(b"weights")
    (run / "last.pt").write_bytes(b"weights and optimizer")
    with pytest.raises(ModelError, match=re.escape(f"not a nicodec model folder (no manifest.json): {run} (it holds a "
                                                   "training checkpoint, last.pt: nicodec-export CHECKPOINT --out DIR "
                                                   "makes a model folder from one)")):
        Codec(run, providers="cpu")
    with pytest.raises(ModelError, match=re.escape(f"(no manifest.json): {tmp_path / 'gone'} (no such folder)") + "$"):
        Codec(tmp_path / "gone", providers="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=re.escape(f"(no manifest.json): {tmp_path / 'empty'}") + "$"):
        Codec(tmp_path / "empty", providers="cpu")


def test_a_package_imported_from_a_zip_says_its_models_must_be_on_disk(tmp_path):
    """A wheel or zipapp on sys.path (PEX, shiv) imports nicodec, but its models are no folder on
    disk: that said only "no such folder" of a path inside the archive."""
    import subprocess
    import zipfile

    package = Path(nicodec.__file__).parent
    archive = tmp_path / "nicodec.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for source in package.glob("*.py"):
            zipped.write(source, f"nicodec/{source.name}")
    code = ("import nicodec, nicodec.model as m\n"
            "assert nicodec.__file__.startswith(%r), nicodec.__file__\n"
            "for folder in (None, %r):\n"
            "    try:\n        m.ModelFiles.load(folder)\n    except nicodec.ModelError as e:\n        print(e)\n"
            ) % (str(archive), str(tmp_path / "typo"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(archive)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shipped, given = done.stdout.splitlines()
    assert shipped.startswith("not a nicodec model folder (no manifest.json): ")
    assert shipped.endswith("(nicodec is imported from a zip archive, and its models must be files on "
                            "disk: install it with pip, or use a model folder on disk: --model, model=)")
    assert given == f"not a nicodec model folder (no manifest.json): {tmp_path / 'typo'} (no such folder)"  # a user's own


def test_the_command_line_loads_what_each_command_runs(tmp_path, photo, loaded):
    png = tmp_path / "photo.png"
    Image.fromarray(photo).save(png)
    assert runner.invoke(app, ["encode", str(png), "--provider", "cpu"]).exit_code == 0
    assert loaded == ["encoder"]
    loaded.clear()
    decoding = ["decode", str(tmp_path / "photo.nic"), "-o", str(tmp_path / "back.png"), "--provider", "cpu"]
    assert runner.invoke(app, decoding).exit_code == 0
    assert loaded == ["decoder"]
    loaded.clear()
    assert runner.invoke(app, ["verify", str(tmp_path / "photo.nic")]).exit_code == 0
    assert loaded == ["decoder"]  # not run, but loaded: a file that verifies here decodes here
    loaded.clear()
    result = runner.invoke(app, ["encode", str(png), "-o", str(tmp_path / "psnr.nic"), "--target-psnr", "30"])
    assert result.exit_code == 0, result.output
    assert loaded == ["encoder", "decoder"]  # the search decodes each try


def test_the_command_line_with_a_copy_that_only_decodes(tmp_path, photo):
    folder = _copy(tmp_path)
    png = tmp_path / "in" / "photo.png"
    png.parent.mkdir()
    Image.fromarray(photo).save(png)
    Image.fromarray(photo[::-1]).save(png.with_name("other.png"))
    for args in (["encode", str(png)], ["encode", str(png.parent), "-o", str(tmp_path / "out")]):
        result = runner.invoke(app, [*args, "--model", str(folder)])
        assert result.exit_code == 1
        assert result.stderr.startswith("error: the model ") and result.stderr.count("\n") == 1
        assert f"cannot encode: {folder / 'encoder.onnx'} is missing" in result.stderr
    assert sorted(p.name for p in png.parent.iterdir()) == ["other.png", "photo.png"]
    assert not (tmp_path / "out").exists()
    assert runner.invoke(app, ["encode", str(png)]).exit_code == 0
    nic = png.with_suffix(".nic")
    for args in (["decode", str(nic), "-o", str(tmp_path / "back.png")], ["verify", str(nic)]):
        result = runner.invoke(app, [*args, "--model", str(folder)])
        assert result.exit_code == 0, result.output
    assert opened(tmp_path / "back.png").size == (photo.shape[1], photo.shape[0])


def test_a_provider_that_falls_back_is_named_at_the_users_line_or_refused_when_asked_for(photo, no_gpu):
    """Loading at first use put onnxruntime's fallback warning two or three frames deeper, and
    the fixed stacklevel then named nicodec's own code, not the line that made or used the codec."""
    data = Codec(providers="cpu").encode(photo)  # "cpu" asks no fallback
    codec = Codec(providers="auto")
    with pytest.warns(RuntimeWarning, match="could not use CUDAExecutionProvider for decoder.onnx") as caught:
        codec.decode(data)
    assert [w.filename for w in caught] == [__file__]
    with pytest.warns(RuntimeWarning, match="for encoder.onnx") as caught:
        codec.prepare()
    assert [w.filename for w in caught] == [__file__]
    strict = Codec(providers="cuda")
    with pytest.raises(nicodec.NicodecError, match="could not use CUDAExecutionProvider for encoder.onnx"):
        strict.encode(photo)


def test_onnxruntimes_own_fallback_which_prints_to_stdout_is_replaced(photo, monkeypatch, capfd):
    """A provider that fails as its session is made, or as it runs, made onnxruntime print "EP
    Error ... Falling back" to standard output (into the .nic stream of `-o -`) and go on on the
    CPU without nicodec's warning. nicodec now falls back itself, with its warning or error. Here
    onnxruntime's own library, told CUDA is there, fails to start it, as on a machine without a
    GPU (its Python side, whose fallback this is, is the real one: 1.17 ignored the keyword
    that turns it off)."""
    import onnxruntime
    from onnxruntime.capi import onnxruntime_inference_collection as collection

    real = collection.C.InferenceSession

    class NoCuda:
        def __init__(self, *args):
            self.session = real(*args)

        def initialize_session(self, providers, *args):
            if "CUDAExecutionProvider" in providers:  # onnxruntime's own reasons may end in a newline
                raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected\n")
            return self.session.initialize_session(providers, *args)

        def __getattr__(self, name):
            return getattr(self.session, name)

    data = Codec(providers="cpu").encode(photo)
    monkeypatch.setattr(collection.C, "InferenceSession", NoCuda)
    for module in (onnxruntime, collection.C):
        monkeypatch.setattr(module, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.warns(RuntimeWarning, match="could not use CUDAExecutionProvider for decoder.onnx "
                                            r"\(CUDA failure 100: no CUDA-capable device is detected\); running on CPU"):
        codec = Codec(providers="auto")
        assert codec.decode(data, as_array=True).shape == photo.shape
    with pytest.raises(nicodec.NicodecError, match="could not use CUDAExecutionProvider for encoder.onnx .CUDA failure 100") as info:
        Codec(providers="cuda").encode(photo)
    assert "\n" not in str(info.value)  # one line, as every error of the command line
    assert capfd.readouterr().out == ""
    fallen = codec._sessions["decoder"].get_session_options()  # the CPU's settings (sessions._for_the_cpu)
    assert fallen.get_session_config_entry("session.force_spinning_stop") == "1" and not fallen.enable_mem_pattern
    assert not codec._sessions["decoder"]._enable_fallback  # nor as it runs
    codec._sessions["decoder"]._enable_fallback = True  # as onnxruntime sets it while it makes a session
    assert not codec._sessions["decoder"]._enable_fallback


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_sigmask"), reason="POSIX signal masks")
def test_the_host_programs_signal_mask_and_handlers_are_left_alone():
    """Each tiled run unblocked the SIGINT its host program had blocked (for a thread that waits on
    it with sigwait) and swapped its handler back and forth; so did each new Codec."""
    import subprocess
    import sys

    script = (
        "import signal\n"
        "import numpy as np\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
        "import nicodec\n"
        "codec = nicodec.Codec(providers='cpu', threads=1, tile=64).prepare()  # onnxruntime imported\n"
        "assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == {signal.SIGINT}\n"
        "real, calls = signal.signal, []\n"
        "signal.signal = lambda *args: calls.append(args) or real(*args)\n"
        "data = codec.encode(np.zeros((200, 200, 3), np.uint8))  # in tiles\n"
        "codec.decode(data)\n"
        "nicodec.Codec(providers='cpu', threads=1).prepare()\n"
        "assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == {signal.SIGINT}\n"
        "assert not calls, calls\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="file names that are not UTF-8")
def test_a_model_folder_whose_name_is_not_utf8_loads(tmp_path, photo):
    """A folder name in Latin-1 (a memory stick): onnxruntime takes paths as UTF-8, and refused
    it with a dump of its constructor's signatures."""
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/mod\xe8le"))
    _copy(tmp_path).rename(folder)
    data = nicodec.Codec(providers="cpu", threads=1).encode(photo)
    assert np.array_equal(Codec(folder, providers="cpu", threads=1).decode(data, as_array=True),
                          nicodec.Codec(providers="cpu", threads=1).decode(data, as_array=True))


def _rehashed(folder: Path) -> Path:
    """The manifest's SHA-256s and model hash written anew, as a developer who swapped a graph
    in would."""
    import json

    from nicodec.model import manifest_hash, sha256_file

    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("files", "encoder_files"):
        for name in manifest.get(key, {}):
            manifest[key][name] = sha256_file(folder / name)
    manifest["model_hash"] = manifest_hash(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_graph_that_does_not_fit_the_manifest_is_refused_as_it_loads(tmp_path, photo):
    """A graph of another model, its hashes written anew, loaded and verified, and failed at the
    first image as onnxruntime's internal error ("Got invalid dimensions for input: y_hat")."""
    folder = _copy(tmp_path, leaving_out=())
    shutil.copyfile(folder / "synthesis_gradient.onnx", folder / "decoder.onnx")  # another graph's inputs and outputs
    codec = Codec(_rehashed(folder), providers="cpu")
    data = codec.encode(photo)
    with pytest.raises(ModelError, match=f"^decoder.onnx does not fit the model {re.escape(codec.model_id)}: it takes "
                                         "an input image that nicodec does not give; .*its outputs are gradient, not image"):
        codec.decode(data)
    nic = tmp_path / "photo.nic"
    nic.write_bytes(data)
    for command in ("verify", "decode"):  # verify loads the decoder: a file that verifies decodes
        result = runner.invoke(app, [command, str(nic), "--model", str(folder)])
        assert result.exit_code == 1, result.output
        assert "decoder.onnx does not fit the model" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "photo.png").exists()
    other = _copy(tmp_path / "other", leaving_out=())
    shutil.copyfile(other / "decoder.onnx", other / "encoder.onnx")
    with pytest.raises(ModelError, match="^encoder.onnx does not fit .*: it has no input image; it has no input gain"):
        Codec(_rehashed(other), providers="cpu").encode(photo)



def test_a_graph_whose_output_is_of_another_type_is_refused(tmp_path, photo):
    """A decoder giving float pixels loaded, and decode returned a float array (as_array) or
    failed as an internal error (a PIL image)."""
    onnx = pytest.importorskip("onnx")
    folder = _copy(tmp_path, leaving_out=())
    graph = onnx.load(folder / "decoder.onnx")
    output = graph.graph.output[0]
    graph.graph.node[-1].output[0] = "image_uint8"
    graph.graph.node.append(onnx.helper.make_node("Cast", ["image_uint8"], [output.name], to=onnx.TensorProto.FLOAT))
    output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.save(graph, folder / "decoder.onnx")
    codec = Codec(_rehashed(folder), providers="cpu")
    with pytest.raises(ModelError, match="^decoder.onnx does not fit .*: its output image is a tensor.float., not a "
                                         "tensor.uint8."):
        codec.decode(codec.encode(photo), as_array=True)


def test_a_graph_replaced_after_the_model_was_loaded_is_refused_at_its_first_use(tmp_path, photo):
    """Graphs load at their first use (and again in a child process fork made), so each is
    checked against its SHA-256 then too: a package upgraded under a running server put another
    synthesis beside this model's tables, and files decoded to its pixels in silence."""
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    codec = Codec(model, providers="cpu", threads=1)  # the entropy parameters' graph loads now
    data = codec.encode(photo)
    (model / "decoder.onnx").write_bytes((model / "decoder_fp16.onnx").read_bytes())  # it fits the decoder's place
    with pytest.raises(ModelError, match="decoder.onnx changed after the model was loaded"):
        codec.decode(data)
    (model / "decoder.onnx").unlink()
    with pytest.raises(ModelError, match="cannot read .*decoder.onnx"):
        codec.decode(data)
    shutil.copy(default_model_dir() / "decoder.onnx", model / "decoder.onnx")
    assert codec.decode(data, as_array=True).shape == photo.shape  # the file it was: no error held over


def test_the_shipped_model_stays_within_the_size_a_shipped_model_may_take():
    """Issue 4: the shipped model's files take at most 25 MB (weights in fp16 where the graphs
    compute in fp32); the README gives the figure."""
    from nicodec.model import default_model_dir

    files = [p for p in default_model_dir().rglob("*") if p.is_file()]
    assert files and sum(p.stat().st_size for p in files) <= 25_000_000


def _field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint, or bytes (length-delimited)."""
    def varint(value: int) -> bytes:
        out = b""
        while value >= 0x80:
            out, value = out + bytes([value & 0x7F | 0x80]), value >> 7
        return out + bytes([value])
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_a_graph_with_data_in_another_file_is_refused(tmp_path, photo, monkeypatch):
    """onnxruntime reads a tensor's "external data" for a graph given as bytes from the current
    folder (before 1.21, whatever the session options say): a model folder could put any file
    there into the decoded pixels (a security review did), and what decodes depended on a file
    the model's hash does not cover. The graph is refused as it loads, on every onnxruntime.
    The tensor is appended the way protobuf merges messages (no onnx package needed): the
    decoder's graph gains an initializer whose data is in secret.txt."""
    tensor = (_field(1, 26) + _field(2, 2) + _field(8, b"S") + _field(14, 1)
              + _field(13, _field(1, b"location") + _field(2, b"secret.txt")))
    folder = _copy(tmp_path, leaving_out=())
    with open(folder / "decoder.onnx", "ab") as graph:
        graph.write(_field(7, _field(5, tensor)))
    codec = Codec(_rehashed(folder), providers="cpu")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.txt").write_bytes(b"TOPSECRET-0123456789abcdef")
    data = codec.encode(photo)  # the analysis is the shipped one
    with pytest.raises(ModelError, match=r"decoder.onnx keeps the data of its tensor 'S' in another file"):
        codec.decode(data)
    result = runner.invoke(app, ["decode", "-", "-o", str(tmp_path / "out.png"), "--model", str(folder)], input=data)
    assert result.exit_code == 1 and "keeps the data of its tensor 'S' in another file" in result.stderr
    assert not (tmp_path / "out.png").exists()
    # The same behind an empty group, which protobuf skips (a review's way past the walk; onnxruntime
    # before 1.21 then read the file): a graph the walk cannot read to its end is refused.
    shutil.copyfile(default_model_dir() / "decoder.onnx", folder / "decoder.onnx")
    with open(folder / "decoder.onnx", "ab") as graph:
        graph.write(bytes([0x9B, 0x06, 0x9C, 0x06]) + _field(7, _field(5, tensor)))  # field 99, start and end
    grouped = Codec(_rehashed(folder), providers="cpu")
    with pytest.raises(ModelError, match=r"decoder.onnx is no ONNX model nicodec can check: field 99 is a group"):
        grouped.decode(grouped.encode(photo))


def test_external_data_is_found_wherever_onnx_keeps_a_tensor():
    """The walk follows every path from a model to a tensor in onnx.proto: initializers, sparse
    ones, node attributes (one tensor or several), subgraphs of If and Loop, functions and
    training information; a model without external data is left alone."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from nicodec.onnx_external import _TENSOR_FIELDS, external_tensor

    # The field numbers are onnx's own.
    messages = {"model": onnx.ModelProto, "training": onnx.TrainingInfoProto, "graph": onnx.GraphProto,
                "function": onnx.FunctionProto, "node": onnx.NodeProto, "attribute": onnx.AttributeProto,
                "sparse": onnx.SparseTensorProto}
    names = {message.DESCRIPTOR.full_name: kind for kind, message in messages.items()}
    names["onnx.TensorProto"] = "tensor"
    for kind, message in messages.items():
        leading = {field.number: names[field.message_type.full_name] for field in message.DESCRIPTOR.fields
                   if field.message_type is not None and field.message_type.full_name in names}
        assert _TENSOR_FIELDS[kind] == leading, kind
    fields = {field.name: field.number for field in onnx.TensorProto.DESCRIPTOR.fields}
    assert (fields["name"], fields["external_data"], fields["data_location"]) == (8, 13, 14)

    def tensor(name, outside):
        made = numpy_helper.from_array(np.arange(4, dtype=np.float32), name)
        if outside:
            made.ClearField("raw_data")
            made.data_location = TensorProto.EXTERNAL
            made.external_data.add(key="location", value="elsewhere.bin")
        return made

    def graph(name, outside, where):
        const = helper.make_node("Constant", [], ["c"], value=tensor("in_constant", outside and where == "attribute"))
        nodes = [const, helper.make_node("Add", ["x", "c"], ["y"])]
        initializers = [tensor("in_initializer", outside and where == "initializer")]
        sparse = []
        if where == "sparse":
            sparse = [helper.make_sparse_tensor(tensor("in_sparse", outside), numpy_helper.from_array(
                np.arange(4, dtype=np.int64), "indices"), [4])]
        if where == "tensors":
            nodes.append(helper.make_node("Identity", ["y"], ["z"], extra=[tensor("in_tensors", outside)]))
        return helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializers,
                                 sparse_initializer=sparse)

    def model(outside, where):
        if where == "subgraph":  # an If's branch, within a Loop's body
            inner = helper.make_node("If", ["cond"], ["y"], then_branch=graph("then", outside, "attribute"),
                                     else_branch=graph("else", False, "attribute"))
            body = helper.make_graph([inner], "body", [], [])
            main = graph("main", False, "")
            main.node.append(helper.make_node("Loop", ["", "cond"], [], body=body))
            return helper.make_model(main)
        made = helper.make_model(graph("main", outside, where))
        if where == "function":
            made.functions.append(helper.make_function("local", "f", ["x"], ["c"], [
                helper.make_node("Constant", [], ["c"], value=tensor("in_function", outside))],
                [helper.make_opsetid("", 17)]))
        if where == "training":
            made.training_info.add().initialization.CopyFrom(graph("init", outside, "initializer"))
        return made

    expected = {"initializer": "'in_initializer'", "attribute": "'in_constant'", "sparse": "'in_sparse'",
                "tensors": "'in_tensors'", "subgraph": "'in_constant'", "function": "'in_function'",
                "training": "'in_initializer'"}
    for where, name in expected.items():
        assert external_tensor(model(True, where).SerializeToString()) == name, where
        assert external_tensor(model(False, where).SerializeToString()) is None, where
    # data_location alone, or external_data alone, is enough (the enum read as protobuf reads it: its low 32 bits).
    only_location = model(True, "initializer")
    del only_location.graph.initializer[0].external_data[:]
    assert external_tensor(only_location.SerializeToString()) == "'in_initializer'"
    only_entries = model(True, "initializer")
    only_entries.graph.initializer[0].data_location = TensorProto.DEFAULT
    assert external_tensor(only_entries.SerializeToString()) == "'in_initializer'"
    only_location.graph.initializer[0].data_location = TensorProto.DEFAULT
    assert external_tensor(only_location.SerializeToString()) is None
    hidden = only_location.SerializeToString() + _field(7, _field(5, _field(8, b"late") + _field(14, (1 << 32) + 1)))
    assert external_tensor(hidden) == "'late'"
    # What the walk cannot read to its end is refused, not passed on: protobuf skips a group and
    # drops a tag's bits above 32, and could find a tensor there that the walk did not.
    for junk in (b"\xff" * 20, b"\x0a\x80", b"\x0b\x00", b"not a model", bytes([0x9B, 0x06, 0x9C, 0x06]) + hidden,
                 bytes([0xBA, 0x80, 0x80, 0x80, 0x10]) + hidden[1:], b"\x00\x00", b"\x0d\x00"):
        with pytest.raises(ValueError):
            external_tensor(junk)


def test_onnxruntime_is_told_no_folder_holds_external_data(tmp_path, monkeypatch):
    """The session options point external data at a folder that cannot exist, so that where the
    walk above missed a tensor, onnxruntime 1.21 and later refuse the graph instead of reading
    the current folder (its default for a graph given as bytes)."""
    pytest.importorskip("onnx")
    import onnxruntime
    from onnx import TensorProto, helper

    from nicodec.sessions import create_session

    if tuple(int(part) for part in onnxruntime.__version__.split(".")[:2]) < (1, 21):
        pytest.skip("onnxruntime before 1.21 ignores the option: the walk alone refuses such graphs there")
    secret = helper.make_tensor("S", TensorProto.UINT8, [4], bytes(4), raw=True)
    secret.ClearField("raw_data")
    secret.data_location = TensorProto.EXTERNAL
    secret.external_data.add(key="location", value="secret.bin")
    graph = helper.make_graph([helper.make_node("Add", ["x", "S"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [4])], [secret])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"\x01\x02\x03\x04")
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])  # onnxruntime's default
    assert session.run(None, {"x": np.zeros(4, np.uint8)})[0].tolist() == [1, 2, 3, 4]
    # nicodec's words only: onnxruntime's own reason after them has changed between its versions.
    with pytest.raises(ModelError, match=r"^cannot load g\.onnx: "):
        create_session(Path("g.onnx"), ["CPUExecutionProvider"], data=data)


def test_asking_for_cuda_from_the_cpu_wheel_says_to_take_it_out_first(monkeypatch):
    """Told only to install the [gpu] extra, a user left onnxruntime (or another build, such as
    onnxruntime-openvino) beside onnxruntime-gpu, the state nicodec warns about (they share one
    package folder)."""
    import onnxruntime
    from nicodec import sessions

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    for installed, first in ((("onnxruntime",), "onnxruntime"), (("onnxruntime", "onnxruntime-gpu"), None), ((), None),
                             (("onnxruntime-openvino",), "onnxruntime-openvino")):
        monkeypatch.setattr(sessions, "installed_builds", lambda there=installed: [(name, (1, 20)) for name in there])
        with pytest.raises(nicodec.NicodecError, match="no CUDAExecutionProvider") as refused:
            nicodec.Codec(providers="cuda")
        said = str(refused.value)
        assert ("uninstall" not in said if first is None else f"pip uninstall -y {first}, then pip install" in said), said
        assert 'pip install "nicodec[gpu]"' in said


def test_asking_for_cuda_in_a_pipx_tool_says_pipx_s_commands(monkeypatch, tmp_path):
    """pipx's install --force keeps what the tool's environment holds: the CPU's wheel is taken
    out by pipx's own pip first."""
    import onnxruntime
    from nicodec import sessions

    (tmp_path / "pipx_metadata.json").write_text("{}")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(sessions, "installed_builds", lambda: [("onnxruntime", (1, 20))])
    with pytest.raises(nicodec.NicodecError, match="no CUDAExecutionProvider") as refused:
        nicodec.Codec(providers="cuda")
    assert ('pipx runpip nicodec uninstall -y onnxruntime, then pipx install --force "nicodec[gpu]"'
            in str(refused.value)), str(refused.value)


def test_a_synthesis_that_takes_the_quality_is_checked_as_it_loads():
    """A decoder (or synthesis gradient) graph may take the header's quality (vr-5f's post-filter
    sees it): one float (1, 1, 1, 1), and only in a variable-rate model, whose files hold one."""
    from types import SimpleNamespace

    from nicodec.graphs import check_graph

    def node(name, shape, kind="tensor(float)"):
        return SimpleNamespace(name=name, shape=shape, type=kind)

    def session(quality):
        return SimpleNamespace(get_inputs=lambda: [node("y_hat", [1, 8, "h", "w"]), quality],
                               get_outputs=lambda: [node("image", [1, 3, "H", "W"], "tensor(uint8)")])

    model = SimpleNamespace(latent_channels=8, hyper_channels=4, variable_rate=True, model_id="tiny",
                            manifest={"config": {"postfilter": 4, "postfilter_quality": True}})
    check_graph(session(node("quality", [1, 1, 1, 1])), "decoder", model)
    check_graph(session(node("quality", [1, 1, 1, 1])), "decoder_fp16", model)
    with pytest.raises(ModelError, match="its input quality has 3 channels where nicodec gives 1"):
        check_graph(session(node("quality", [1, 3, 1, 1])), "decoder", model)
    with pytest.raises(ModelError, match=r"its input quality has the shape \[1, 1, 2, 2\], not one value per channel"):
        check_graph(session(node("quality", [1, 1, 2, 2])), "decoder", model)
    with pytest.raises(ModelError, match="its input quality is a tensor.int32., not a tensor.float."):
        check_graph(session(node("quality", [1, 1, 1, 1], "tensor(int32)")), "decoder", model)
    lacking = SimpleNamespace(get_inputs=lambda: [node("y_hat", [1, 8, "h", "w"])],
                              get_outputs=lambda: [node("image", [1, 3, "H", "W"], "tensor(uint8)")])
    with pytest.raises(ModelError, match="it has no input quality"):  # a graph of the filter that does not see it
        check_graph(lacking, "decoder", model)
    plain = SimpleNamespace(**{**vars(model), "manifest": {"config": {"postfilter": 4}}})
    check_graph(lacking, "decoder", plain)
    with pytest.raises(ModelError, match="it takes a quality, and the manifest's synthesis does not see one"):
        check_graph(session(node("quality", [1, 1, 1, 1])), "decoder", plain)
    single = SimpleNamespace(**{**vars(model), "variable_rate": False})
    with pytest.raises(ModelError, match="^decoder.onnx does not fit the model tiny: it takes a quality, and the model "
                                         "is single-rate"):
        check_graph(session(node("quality", [1, 1, 1, 1])), "decoder", single)
