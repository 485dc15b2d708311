"""Files of the models that earlier releases shipped decode after an upgrade: the package keeps
those models under ``nicodec/models/earlier`` and the default model's codec hands their files on."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import nicodec
from nicodec import format as nicformat
from nicodec import model as nicmodel
from nicodec.cli import app

from conftest import synthetic_photo

EARLIER_ID = "nicodec-test-earlier"


def make_earlier_model(folder: Path, decode_only: bool) -> Path:
    """A model that differs from the shipped one where a test can see it: its synthesis is the
    shipped fp16 graph (other pixels, the same symbols); with ``decode_only``, only the files
    that decoding needs, as a release keeps an earlier model."""
    source = nicmodel.default_model_dir()
    manifest = json.loads((source / nicmodel.MANIFEST).read_text(encoding="utf-8"))
    folder.mkdir(parents=True)
    for name in [*manifest["files"], *manifest.get("encoder_files", {})]:
        if not decode_only or name in nicmodel.DECODING_FILES:
            shutil.copyfile(source / ("decoder_fp16.onnx" if name == "decoder.onnx" else name), folder / name)
    manifest["files"]["decoder.onnx"] = nicmodel.sha256_file(folder / "decoder.onnx")
    manifest["model_id"] = EARLIER_ID
    manifest["model_hash"] = nicmodel.manifest_hash(manifest)  # its decodes_files_of kept: same entropy side
    (folder / nicmodel.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """(the full earlier model's folder, the package's folder of earlier models, a file it made)."""
    root = tmp_path_factory.mktemp("earlier")
    full = make_earlier_model(root / "full", decode_only=False)
    shipped = root / "package-earlier"
    make_earlier_model(shipped / EARLIER_ID, decode_only=True)
    (shipped / "not-a-model").mkdir()  # no manifest: left out
    data = nicodec.Codec(full).encode(Image.fromarray(synthetic_photo(96, 128, seed=4)), quality=30)
    return full, shipped, data


@pytest.fixture
def shipped(earlier, monkeypatch):
    monkeypatch.setattr(nicmodel, "earlier_models_dir", lambda: earlier[1])
    return earlier


def test_without_the_earlier_model_in_the_package_its_files_are_refused(earlier, monkeypatch):
    full, _, data = earlier
    monkeypatch.setattr(nicmodel, "earlier_models_dir", lambda: full.parent / "none")
    with pytest.raises(nicodec.ModelMismatchError, match=f"made by model '{EARLIER_ID}'"):
        nicodec.Codec().decode(data)


def test_the_default_codec_decodes_an_earlier_shipped_models_files_with_that_model(shipped, tmp_path):
    full, folder, data = shipped
    earlier_model = nicodec.Codec(full).model
    assert nicmodel.shipped_earlier_models() == {  # with the models whose files it decodes, as a release keeps them
        key: folder / EARLIER_ID for key in [(EARLIER_ID, earlier_model.model_hash), *earlier_model.decodes_files_of]}
    expected = nicodec.Codec(full).decode(data, as_array=True)
    codec = nicodec.Codec()
    (tmp_path / "old.nic").write_bytes(data)
    for given in (data, bytearray(data), io.BytesIO(data), tmp_path / "old.nic", str(tmp_path / "old.nic")):
        assert np.array_equal(codec.decode(given, as_array=True), expected), type(given)
    # With the earlier model's own synthesis (here its fp16 graph), not the default's.
    header, y_hat = codec.decode_latents(data)
    assert not np.array_equal(codec._synthesize(y_hat, header.quality)[0, :, :96, :128].transpose(1, 2, 0), expected)
    header, _, symbols, _ = codec.decode_symbols(data)
    assert header.model_id == EARLIER_ID and symbols.size
    assert list(codec._earlier) == [(EARLIER_ID, header.model_hash)]  # made once, at the first file
    # The decode-only folder keeps no fp16 synthesis: fp16 asked for decodes with its fp32 one.
    assert np.array_equal(nicodec.Codec(precision="fp16").decode(data, as_array=True), expected)


def test_an_earlier_models_codec_gets_the_providers_and_their_options(shipped):
    """The codec made for an earlier model's file takes the default one's settings, a provider
    paired with its options included."""
    full, _, data = shipped
    asked = [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
    codec = nicodec.Codec(providers=asked)
    assert np.array_equal(codec.decode(data, as_array=True), nicodec.Codec(full).decode(data, as_array=True))
    [earlier_codec] = codec._earlier.values()
    assert earlier_codec._providers == [*asked] and earlier_codec.providers["decoder"] == ["CPUExecutionProvider"]


def test_a_codec_of_a_named_model_folder_decodes_its_own_files_only(shipped):
    _, _, data = shipped
    with pytest.raises(nicodec.ModelMismatchError, match=f"made by model '{EARLIER_ID}'") as info:
        nicodec.Codec(nicmodel.default_model_dir()).decode(data)
    # The codec a model folder makes would not decode it, the one of no folder does: said so.
    assert str(info.value).endswith("; the model nicodec ships decodes it") and info.value.shipped_decodes


def test_threads_sharing_the_default_codec_make_one_codec_of_the_earlier_model(shipped):
    _, _, data = shipped
    codec, results = nicodec.Codec(), []
    threads = [threading.Thread(target=lambda: results.append(codec.decode(data, as_array=True))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(codec._earlier) == 1
    assert all(np.array_equal(r, results[0]) for r in results)


def test_the_command_line_and_the_pillow_plugin_decode_an_earlier_models_files(shipped, tmp_path):
    full, _, data = shipped
    (tmp_path / "old.nic").write_bytes(data)
    expected = nicodec.Codec(full).decode(data, as_array=True)
    runner = CliRunner()
    result = runner.invoke(app, ["decode", str(tmp_path / "old.nic"), "-o", str(tmp_path / "old.png")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "old.png")), expected)
    result = runner.invoke(app, ["verify", str(tmp_path / "old.nic")])
    assert result.exit_code == 0 and "ok" in result.stdout.lower(), result.output
    result = runner.invoke(app, ["decode", "-", "-o", str(tmp_path / "stdin.png")], input=data)
    assert result.exit_code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "stdin.png")), expected)
    from nicodec import pillow_plugin

    pillow_plugin.register(nicodec.Codec())  # taken out again by conftest's _pillow_plugin_as_it_was
    with Image.open(tmp_path / "old.nic") as im:
        assert im.info["model_id"] == EARLIER_ID and np.array_equal(np.asarray(im), expected)


def test_the_wheel_takes_every_file_an_earlier_model_folder_decodes_with():
    """pyproject's package data must cover the folder that ``earlier_models_dir`` names, or a
    release's earlier models stay in the repository and out of the installed package."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("needs the checkout's pyproject.toml beside the tests")
    setuptools = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]
    # Each package's patterns, as paths under nicodec's folder: "nicodec.models.earlier" holds
    # "*/*.onnx" as "models/earlier/*/*.onnx".
    patterns = ["/".join([*name.split(".")[1:], pattern]) for name, listed in setuptools["package-data"].items()
                if name in setuptools["packages"] for pattern in listed]
    package = Path(nicodec.__file__).parent
    folder = nicmodel.earlier_models_dir().relative_to(package) / "nicodec-mshp-vr-3d"
    for name in [nicmodel.MANIFEST, *nicmodel.DECODING_FILES, "decoder_fp16.onnx"]:
        assert any(fnmatch.fnmatch((folder / name).as_posix(), p) for p in patterns), name


def test_info_says_which_model_of_this_nicodec_decodes_a_file(shipped, tmp_path):
    """A file of another model gave no hint in `nicodec info` that this nicodec cannot decode it
    (found by a rehearsal of a model swap)."""
    _, _, data = shipped
    shipped_id = nicodec.Codec().model_id
    (tmp_path / "old.nic").write_bytes(data)
    (tmp_path / "new.nic").write_bytes(nicodec.Codec().encode(Image.fromarray(synthetic_photo(64, 64, seed=2))))
    header, sections = nicformat.unpack(data)
    (tmp_path / "other.nic").write_bytes(nicformat.pack(dataclasses.replace(header, model_id="gone"), sections))
    runner = CliRunner()
    said = runner.invoke(app, ["info", *(str(tmp_path / f"{n}.nic") for n in ("new", "old", "other"))]).stdout
    assert f"decoded_by: {shipped_id} (the shipped model)\n" in said
    assert f"decoded_by: {EARLIER_ID} (an earlier model this nicodec keeps)\n" in said
    assert "decoded_by: no model of this nicodec: decode with --model and that model's folder\n" in said
    facts = json.loads(runner.invoke(app, ["info", "--json", *(str(tmp_path / f"{n}.nic") for n in
                                                               ("new", "old", "other"))]).stdout)
    assert [f["decoded_by"] for f in facts] == [shipped_id, EARLIER_ID, None]


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
def test_an_earlier_models_file_on_a_pipe_is_read_once(shipped):
    """The hand-off read a path again: a pipe (bash's <(...)) had nothing left, "empty (0
    bytes)", and a named pipe waited for a second writer (found by a review of the diff)."""
    full, _, data = shipped
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, data), os.close(write)))
    writer.start()
    try:
        decoded = nicodec.Codec().decode(f"/dev/fd/{read}", as_array=True)
    finally:
        writer.join()
        os.close(read)
    assert np.array_equal(decoded, nicodec.Codec(full).decode(data, as_array=True))


def test_errors_of_a_handed_on_file_name_its_path(shipped, tmp_path):
    _, _, data = shipped
    header, sections = nicformat.unpack(data)
    sections[b"YSYM"] = sections[b"YSYM"][:-4]  # a damaged stream under a valid checksum
    (tmp_path / "damaged.nic").write_bytes(nicformat.pack(header, sections))
    with pytest.raises(nicodec.FormatError) as caught:
        nicodec.Codec().decode(tmp_path / "damaged.nic")
    assert str(caught.value).startswith(f"{tmp_path / 'damaged.nic'}: ") and str(caught.value).count("damaged.nic") == 1


def test_the_lock_of_an_earlier_models_codec_is_made_anew_after_fork(shipped):
    """A thread that forked while another made an earlier model's codec left its lock taken in
    the child, whose decodes of that model's files then waited for ever."""
    from nicodec import codec as codec_module

    codec = nicodec.Codec()
    codec._earlier_lock.acquire()  # as the thread making it holds it
    codec_module._forget_sessions_after_fork()  # what the child runs after fork
    assert not codec._earlier_lock.locked()
    assert codec.decode(shipped[2], as_array=True).size


def test_a_damaged_manifest_among_the_earlier_models_is_passed_over(shipped, tmp_path, monkeypatch):
    """A manifest whose model id is a list made every decode of another model's file an internal
    error (unhashable type), and nicodec info a traceback."""
    full, folder, data = shipped
    root = tmp_path / "earlier"
    shutil.copytree(folder, root)
    (root / "damaged").mkdir()
    (root / "damaged" / nicmodel.MANIFEST).write_text('{"model_id": ["x"], "model_hash": "00"}', encoding="utf-8")
    monkeypatch.setattr(nicmodel, "earlier_models_dir", lambda: root)
    assert np.array_equal(nicodec.Codec().decode(data, as_array=True), nicodec.Codec(full).decode(data, as_array=True))
    header, sections = nicformat.unpack(data)
    other = nicformat.pack(dataclasses.replace(header, model_id="gone"), sections)
    with pytest.raises(nicodec.ModelMismatchError):
        nicodec.Codec().decode(other)
    (tmp_path / "other.nic").write_bytes(other)
    result = CliRunner().invoke(app, ["info", str(tmp_path / "other.nic")])
    assert result.exit_code == 0 and "decoded_by: no model of this nicodec" in result.stdout, result.output
