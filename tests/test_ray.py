"""The Ray Data recipe: a folder compressed by two encoder actors on a local two-CPU Ray instance.

Needs the ``ray`` extra; skipped where Ray Data is not installed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from conftest import psnr, single_rate_model, synthetic_photo


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_folder_becomes_nic_files_in_the_same_tree(ray_instance, tmp_path):
    from nicodec import Codec
    from nicodec import format as nicformat
    from nicodec.ray_recipe import compress_collection

    source, target = tmp_path / "photos", tmp_path / "archive"
    (source / "trip").mkdir(parents=True)
    images = {}
    for seed in range(6):
        name = f"trip/im{seed}.png" if seed % 2 else f"im{seed}.png"
        images[name] = synthetic_photo(96 + 16 * seed, 128 + 8 * seed, seed=seed)
        Image.fromarray(images[name]).save(source / name)
    (source / "broken.png").write_bytes(b"not an image")
    (source / "notes.txt").write_text("not read: not an image extension")

    summary = compress_collection(source, target, workers=2, quality=30)

    assert summary.done == 6 and summary.skipped == 0
    assert [(path.rsplit("/", 1)[-1], "not in a format" in reason) for path, reason in summary.failed] == [
        ("broken.png", True)
    ]
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert written == sorted(name.replace(".png", ".nic") for name in images)
    codec = Codec(providers="cpu", threads=1)
    for name, pixels in images.items():
        data = (target / name.replace(".png", ".nic")).read_bytes()
        header, _, _ = nicformat.read_header(data)
        assert header.model_id == codec.model_id and header.quality == 30
        decoded = codec.decode(data, as_array=True)
        assert decoded.shape == pixels.shape
        assert psnr(decoded, pixels) > 26
    assert summary.bytes_out == sum(p.stat().st_size for p in target.rglob("*.nic"))
    assert summary.pixels == sum(p.shape[0] * p.shape[1] for p in images.values())

    again = compress_collection(source, target, workers=2)
    assert (again.done, again.skipped, len(again.failed)) == (0, 6, 1)


def test_sources_that_would_make_the_same_file_both_fail_even_with_overwrite(ray_instance, tmp_path):
    """docs/ray.md: each file is coded as nicodec encode codes it; the CLI refuses a.png and a.JPG
    (both a.nic) rather than let one replace the other, and so does the recipe."""
    from nicodec.ray_files import clashing_sources
    from nicodec.ray_recipe import compress_collection, image_extensions

    source, target = tmp_path / "photos", tmp_path / "archive"
    (source / "_drafts").mkdir(parents=True)
    for seed, name in enumerate(["a.png", "a.JPG", "b.png", "_drafts/b.png"]):
        Image.fromarray(synthetic_photo(64, 64, seed=seed)).save(source / name)
    clashes = clashing_sources(str(source), image_extensions())
    assert clashes == {str(source / "a.png"): [str(source / "a.JPG")], str(source / "a.JPG"): [str(source / "a.png")]}

    summary = compress_collection(source, target, workers=2, overwrite=True)

    assert summary.done == 1 and (target / "b.nic").is_file() and not (target / "a.nic").exists()
    failed = dict(summary.failed)
    assert sorted(failed) == sorted(clashes)
    assert "would be written to a.nic too" in failed[str(source / "a.png")] and "a.JPG" in failed[str(source / "a.png")]


def test_output_names_keep_the_tree():
    pytest.importorskip("ray.data")
    from nicodec.ray_files import output_name

    assert output_name("/data/photos/a/b.jpeg", "/data/photos") == "a/b.nic"
    assert output_name("/data/photos/b.PNG", "/data/photos/") == "b.nic"
    assert output_name("bucket/photos/x.png", "bucket/photos") == "x.nic"
    assert output_name("/data/one.png", "/data/one.png") == "one.nic"  # a single file as the source
    assert output_name("/data/photos2/c.png", "/data/photos") == "c.nic"  # not a prefix match


def test_without_ray_the_import_says_what_to_install():
    code = "import sys; sys.modules['ray'] = None; import nicodec.ray_recipe"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: nicodec.ray_recipe needs Ray Data") and 'pip install ".[cpu,ray]"' in last
    # Run as a command, one line (it was two chained tracebacks).
    code = "import runpy, sys; sys.modules['ray'] = None; runpy.run_module('nicodec.ray_recipe', run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: nicodec.ray_recipe needs Ray Data") and result.stderr.count("\n") == 1
    assert 'pip install "nicodec[cpu,ray]" (from a checkout, pip install ".[cpu,ray]")' in result.stderr


def test_quality_reaches_the_encoder_and_bad_values_are_refused_before_any_work(tmp_path, capsys):
    pytest.importorskip("ray.data")
    import numpy as np

    import nicodec
    from nicodec import format as nicformat
    from nicodec.ray_recipe import Encoder, compress_collection, main

    png = tmp_path / "photos" / "im.png"
    png.parent.mkdir()
    Image.fromarray(synthetic_photo(64, 96, seed=7)).save(png)
    batch = {"bytes": np.array([png.read_bytes()], dtype=object), "path": np.array([str(png)], dtype=object)}
    files = {}
    for quality in (10, 90):
        rows = Encoder(str(png.parent), str(tmp_path / "out"), quality=quality)(batch)
        assert list(rows["status"]) == ["done"]
        files[quality] = rows["nic"][0]
        assert nicformat.read_header(files[quality])[0].quality == quality
    assert len(files[10]) < len(files[90])
    for quality in (0, 100.5, float("nan"), "high"):
        with pytest.raises(nicodec.QualityError, match="quality"):
            compress_collection(png.parent, tmp_path / "out", quality=quality)  # no Ray instance needed
    for flags in ({"strip": "no"}, {"strip": 1}, {"exact": 1}):
        with pytest.raises(nicodec.NicodecError, match="must be True or False|must be True, False or|no kind of"):
            compress_collection(png.parent, tmp_path / "out", **flags)
    for counts in ({"workers": 0}, {"threads": 0}, {"threads": 257}, {"batch_size": -1}, {"workers": 1.5}):
        with pytest.raises(nicodec.NicodecError, match=next(iter(counts))):
            compress_collection(png.parent, tmp_path / "out", **counts)
    with pytest.raises(nicodec.NicodecError, match="no such file or folder"):
        compress_collection(tmp_path / "nothing", tmp_path / "out")
    for bad in (["--quality", "101"], ["--quality", "5_0"], ["--num-gpus", "-1"], ["--num-gpus", "nan"],
                ["--num-gpus", "1_0"], ["--providers", "gpu"], ["--workers", "0"], ["--threads", "-1"],
                ["--batch-size", "0"], ["--workers", "1.5"]):
        with pytest.raises(SystemExit) as info:
            main([str(png.parent), str(tmp_path / "out"), *bad])
        assert info.value.code == 2, bad
    for bad, said in ((["--provider-option", "device_id=1"], "--providers is cpu: name the provider the options are for"),
                      (["--providers", "cuda", "--provider-option", "device_id"], "'device_id' is not KEY=VALUE"),
                      (["--providers", "cuda", "--provider-option", "a=1", "--provider-option", "a=2"],
                       "a is given twice")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main([str(png.parent), str(tmp_path / "out"), *bad])
        assert info.value.code == 2 and f"argument --provider-option: {said}" in capsys.readouterr().err, bad
    for bad, said in ((["--metadata", "gps"], "'gps' is no kind of metadata"),
                      (["--strip", "--metadata", "icc"], "--strip leaves out every kind of metadata, and --metadata "
                                                         "icc keeps some")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main([str(png.parent), str(tmp_path / "out"), *bad])
        assert info.value.code == 2 and f"argument --metadata: {said}" in capsys.readouterr().err, bad
    assert not (tmp_path / "out").exists()


def test_the_shell_form_passes_providers_and_gpus_on(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from nicodec import ray_recipe

    asked = {}
    monkeypatch.setattr(ray, "init", lambda **kwargs: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray_recipe, "compress_collection",
                        lambda source, target, **kwargs: asked.update(kwargs) or ray_recipe.Summary())
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out"), "--providers", "cuda", "--num-gpus", "0.5"]) == 0
    assert asked["providers"] == "cuda" and asked["num_gpus"] == 0.5
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out"), "--providers", "OpenVINOExecutionProvider"]) == 0
    assert asked["providers"] == "OpenVINOExecutionProvider"
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out"), "--providers", "OpenVINOExecutionProvider",
                            "--provider-option", "device_type=GPU", "--provider-option", "num_of_threads=2"]) == 0
    assert asked["providers"] == [("OpenVINOExecutionProvider", {"device_type": "GPU", "num_of_threads": "2"})]
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out")]) == 0
    assert asked["providers"] == "cpu" and asked["num_gpus"] == 0
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out"), "--workers", "3", "--batch-size", "1"]) == 0
    assert (asked["workers"], asked["batch_size"], asked["threads"]) == (3, 1, 1)
    assert asked["strip"] == frozenset()
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out"), "--metadata", "icc"]) == 0
    assert asked["strip"] == {"exif", "xmp", "text", "dpi"}
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out"), "--strip"]) == 0
    assert asked["strip"] is True


def test_the_shell_form_says_an_error_in_one_line(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from nicodec import ray_recipe

    assert ray_recipe.main([str(tmp_path / "nothing"), str(tmp_path / "out")]) == 1  # before Ray starts
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'nothing'}: no such file or folder") and "Traceback" not in err

    def waiting(**kwargs):  # Ctrl-C while Ray tries to reach a cluster (minutes, where none answers)
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", waiting)
    assert ray_recipe.main([str(tmp_path), str(tmp_path / "out"), "--address", "10.0.0.1:1"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_exact_reaches_the_encoder(tmp_path):
    pytest.importorskip("ray.data")
    import numpy as np

    from nicodec import Codec
    from nicodec.ray_recipe import Encoder

    rgba = np.dstack([synthetic_photo(64, 96, seed=7), np.full((64, 96), 255, np.uint8)])
    rgba[:, :40, 3] = 0
    png = tmp_path / "photos" / "im.png"
    png.parent.mkdir()
    Image.fromarray(rgba, "RGBA").save(png)
    batch = {"bytes": np.array([png.read_bytes()], dtype=object), "path": np.array([str(png)], dtype=object)}
    codec = Codec(providers="cpu")
    for exact in (False, True):
        rows = Encoder(str(png.parent), str(tmp_path / "out"), exact=exact)(batch)
        assert list(rows["status"]) == ["done"] and rows["nic"][0] == codec.encode(png, exact=exact)
    assert codec.encode(png, exact=True) != codec.encode(png)


def test_an_encoder_actor_whose_model_cannot_encode_stops_as_it_starts(tmp_path):
    """With graphs loaded at first use, an actor on a decode-only copy of the model started and
    then failed each image alone, loading the graph again each time: it is loaded as the actor starts."""
    pytest.importorskip("ray.data")
    import shutil

    import nicodec
    from nicodec.model import default_model_dir
    from nicodec.ray_recipe import Encoder

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    (model / "encoder.onnx").unlink()
    with pytest.raises(nicodec.ModelError, match="cannot encode: .*encoder.onnx is missing"):
        Encoder(str(tmp_path), str(tmp_path / "out"), model=str(model))


def test_a_model_that_cannot_encode_or_a_quality_it_does_not_take_is_refused_on_the_driver(tmp_path, capsys):
    """A model folder that was not there made every encoder actor die (a traceback of Ray's), and
    a quality given to a single-rate model failed every image: both are refused before Ray starts."""
    pytest.importorskip("ray.data")
    import shutil

    import nicodec
    from nicodec.model import default_model_dir
    from nicodec.ray_recipe import compress_collection, main

    source = _photos(tmp_path / "photos", 1)
    decode_only = tmp_path / "decode-only"
    shutil.copytree(default_model_dir(), decode_only)
    (decode_only / "encoder.onnx").unlink()
    single = single_rate_model(tmp_path / "single")
    with pytest.raises(nicodec.ModelError, match="not a nicodec model folder"):
        compress_collection(source, tmp_path / "out", model=tmp_path / "nothing")
    with pytest.raises(nicodec.ModelError, match="cannot encode: .*encoder.onnx is missing"):
        compress_collection(source, tmp_path / "out", model=decode_only)
    with pytest.raises(nicodec.QualityError, match="single-rate"):
        compress_collection(source, tmp_path / "out", model=single, quality=50)
    assert main([str(source), str(tmp_path / "out"), "--model", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: not a nicodec model folder") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    # The model's files are read, not run: a driver without onnxruntime checks it all the same.
    code = ("import sys; sys.modules['onnxruntime'] = None; from nicodec.ray_recipe import _check_model; "
            f"_check_model(None, 50); _check_model({str(decode_only)!r}, None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and done.stderr.strip().endswith("encoder.onnx is missing"), done.stderr


def test_a_link_to_nowhere_is_listed_as_failed(ray_instance, tmp_path):
    """Neither pyarrow's listing nor Ray's reader shows a link that leads nowhere: it was neither
    coded nor counted (``nicodec encode FOLDER`` fails it, with the reason). A link under a
    folder Ray leaves out is left out too."""
    from nicodec.ray_recipe import compress_collection

    source = _photos(tmp_path / "photos", 1)
    (source / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (source / "_drafts").mkdir()
    (source / "_drafts" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    reason = f"it is a link to {tmp_path / 'nowhere.png'}, which leads to no file"
    summary = compress_collection(source, tmp_path / "out")
    assert (summary.done, summary.failed) == (1, [(str(source / "gone.png"), reason)])
    again = compress_collection(source, tmp_path / "out")  # nothing left to read
    assert (again.done, again.skipped, again.failed) == (0, 1, [(str(source / "gone.png"), reason)])
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert compress_collection(alone, tmp_path / "out2").failed == [(str(alone / "gone.png"), reason)]
    # Under a linked folder (pyarrow's listing follows it, and Ray reads what is there), and from a file:// URI.
    (source / "linked").symlink_to(alone)
    (alone / "loop").symlink_to(source)  # a link back up the tree is not followed for ever
    expected = [(str(source / "gone.png"), reason), (str(source / "linked" / "gone.png"), reason)]
    assert sorted(compress_collection(source, tmp_path / "out").failed) == expected
    assert sorted(compress_collection(f"file://{source}", tmp_path / "out").failed) == expected


def test_an_object_key_with_dot_dot_or_an_empty_part_is_not_written_outside_the_target(tmp_path):
    """An object store's key may hold ``..`` or ``//``: bucket/photos/../x.png was written to
    x.nic beside the target folder, and bucket/photos//tmp/abs.png to /tmp/abs.nic (a security
    review's, with Ray stubbed). Such an image fails, with the reason; the others are coded."""
    pytest.importorskip("ray.data")
    import numpy as np

    from nicodec.ray_files import unsafe_output_name
    from nicodec.ray_recipe import Encoder

    png = Image.fromarray(synthetic_photo(32, 48, seed=3))
    buffer = __import__("io").BytesIO()
    png.save(buffer, "PNG")
    root = "bucket/photos"
    paths = [f"{root}/../x.png", f"{root}//tmp/abs.png", f"{root}/a/./b.png", f"{root}/a/ok.png"]
    batch = {"bytes": np.array([buffer.getvalue()] * len(paths), dtype=object), "path": np.array(paths, dtype=object)}
    rows = Encoder(root, str(tmp_path / "out"))(batch)
    assert list(rows["target"]) == ["../x.nic", "/tmp/abs.nic", "a/./b.nic", "a/ok.nic"]
    assert list(rows["status"]) == ["failed", "failed", "failed", "done"]
    assert all("would be written outside the target" in message for message in rows["message"][:3])
    assert unsafe_output_name("a/b/c.nic") is None and unsafe_output_name("..nic") is None


def test_max_pixels_reaches_the_encoder_and_a_bad_one_is_refused_before_any_work(tmp_path, monkeypatch):
    """docs/robustness.md tells services with untrusted inputs to lower the pixel limit; the
    recipe had no way to (its Codec took the default)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    import numpy as np

    import nicodec
    from nicodec import ray_recipe

    png = tmp_path / "photos" / "im.png"
    png.parent.mkdir()
    Image.fromarray(synthetic_photo(64, 96, seed=7)).save(png)
    batch = {"bytes": np.array([png.read_bytes()], dtype=object), "path": np.array([str(png)], dtype=object)}
    rows = ray_recipe.Encoder(str(png.parent), str(tmp_path / "out"), max_pixels=64 * 96 - 1)(batch)
    assert list(rows["status"]) == ["failed"] and "more than the limit of 6,143" in rows["message"][0]
    assert list(ray_recipe.Encoder(str(png.parent), str(tmp_path / "out"), max_pixels=10**6)(batch)["status"]) == ["done"]
    for bad in (0, 2.5, True, "many"):
        with pytest.raises(nicodec.NicodecError, match="max_pixels must be a whole number of 1 or more"):
            ray_recipe.compress_collection(png.parent, tmp_path / "out", max_pixels=bad)  # no Ray instance needed
    asked = {}
    monkeypatch.setattr(ray, "init", lambda **kwargs: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray_recipe, "compress_collection",
                        lambda source, target, **kwargs: asked.update(kwargs) or ray_recipe.Summary())
    assert ray_recipe.main([str(png.parent), str(tmp_path / "out"), "--max-pixels", "1000000"]) == 0
    assert asked["max_pixels"] == 1_000_000
    for bad in ("0", "1e6", "x", "1_000_000", "\u0661\u0660\u0660"):
        with pytest.raises(SystemExit) as info:
            ray_recipe.main([str(png.parent), str(tmp_path / "out"), "--max-pixels", bad])
        assert info.value.code == 2
    assert not (tmp_path / "out").exists()


def _photos(folder, count):
    """``count`` small photos, im0.png, im1.png, ..., in a new ``folder``."""
    folder.mkdir()
    for i in range(count):
        Image.fromarray(synthetic_photo(48, 64, seed=i)).save(folder / f"im{i}.png")
    return folder


def test_an_image_that_kills_its_worker_fails_and_the_run_goes_on(ray_instance, tmp_path, monkeypatch):
    """A crash (or the system ending a worker for memory) while one image is coded: Ray Data ran
    the batch again without end, and the run never returned. Now it gives the images up after
    RETRIES more tries, names them as failed, and codes the rest."""
    import os
    import signal

    from nicodec import ray_recipe

    source = _photos(tmp_path / "photos", 4)
    deaths = tmp_path / "deaths"
    real = ray_recipe.Encoder

    class Crashing(real):  # defined here: Ray sends it to the workers by value
        def __call__(self, batch):
            if any(str(path).endswith("im2.png") for path in batch["path"]):
                with open(deaths, "a") as f:
                    f.write("x")
                os.kill(os.getpid(), signal.SIGSEGV)  # stands for an image whose decode crashes
            return super().__call__(batch)

    monkeypatch.setattr(ray_recipe, "Encoder", Crashing)
    import ray.data

    errored_blocks = ray.data.DataContext.get_current().max_errored_blocks
    summary = ray_recipe.compress_collection(source, tmp_path / "out", workers=1, batch_size=1)
    assert ray.data.DataContext.get_current().max_errored_blocks == errored_blocks  # the run's alone
    failed = dict(summary.failed)
    assert failed[str(source / "im2.png")] == ray_recipe.LOST
    assert deaths.read_text() == "x" * (ray_recipe.RETRIES + 1)
    written = {p.stem for p in (tmp_path / "out").rglob("*.nic")}
    assert summary.done == len(written) >= 1 and "im2" not in written
    assert summary.done + len(summary.failed) == 4  # every image accounted for, the lost ones included


def test_a_write_run_again_after_its_worker_died_counts_the_files_it_wrote(ray_instance, tmp_path, monkeypatch):
    """Ray runs a write task again when its worker dies: the files it had written were then
    "failed" ("exists; use --force", an option the recipe does not have) while they lay there,
    whole, and the run exited 1."""
    import os

    from nicodec import ray_recipe

    source = _photos(tmp_path / "photos", 3)
    mark = tmp_path / "died"
    real = ray_recipe.NicDatasink

    class DyingOnce(real):
        def write(self, blocks, ctx):
            # The worker's own module: the class and write_output as it imported them (the test's class
            # was sent by value, with a copy of the module's names, as the driver's is patched).
            from nicodec import ray_recipe as inner

            write = inner.write_output

            def once(*args):
                write(*args)
                if not mark.exists():  # the worker dies after its first file (preempted, killed)
                    mark.touch()
                    os._exit(1)

            inner.write_output = once
            try:
                return inner.NicDatasink.write(self, blocks, ctx)
            finally:
                inner.write_output = write

    monkeypatch.setattr(ray_recipe, "NicDatasink", DyingOnce)
    summary = ray_recipe.compress_collection(source, tmp_path / "out", workers=1, batch_size=8)
    assert mark.exists()
    assert (summary.done, summary.failed) == (3, []), summary.failed
    assert len(list((tmp_path / "out").rglob("*.nic"))) == 3


def test_an_output_that_exists_is_written_only_if_it_holds_the_same_bytes(tmp_path):
    pytest.importorskip("ray.data")
    import pyarrow.fs

    import nicodec
    from nicodec.ray_files import write_output

    local = pyarrow.fs.LocalFileSystem()
    path = str(tmp_path / "a.nic")
    write_output(local, True, path, b"same", False)
    write_output(local, True, path, b"same", False)  # the same file: written
    with pytest.raises(nicodec.NicodecError, match=r"exists \(overwrite=True, --overwrite, replaces it\)"):
        write_output(local, True, path, b"other", False)
    assert (tmp_path / "a.nic").read_bytes() == b"same"
    write_output(local, True, path, b"other", True)
    assert (tmp_path / "a.nic").read_bytes() == b"other"


def test_a_folder_without_images_gives_an_empty_summary_and_a_warning(ray_instance, tmp_path):
    from nicodec.ray_recipe import compress_collection

    (tmp_path / "empty" / "_drafts").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no image")
    (tmp_path / "empty" / "_drafts" / "x.png").write_bytes(b"left out by Ray's reader")
    with pytest.warns(UserWarning, match="no images in"):
        summary = compress_collection(tmp_path / "empty", tmp_path / "out")
    assert (summary.done, summary.skipped, summary.failed) == (0, 0, [])
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_folder_fails(tmp_path):
    pytest.importorskip("ray.data")
    import numpy as np

    from nicodec.ray_recipe import Encoder

    source, target = tmp_path / "photos", tmp_path / "out"
    source.mkdir()
    png = source / "im.png"
    Image.fromarray(synthetic_photo(48, 64, seed=3)).save(png)
    (target / "im.nic").mkdir(parents=True)
    batch = {"bytes": np.array([png.read_bytes()], dtype=object), "path": np.array([str(png)], dtype=object)}
    for overwrite in (False, True):
        rows = Encoder(str(source), str(target), overwrite=overwrite)(batch)
        assert (rows["status"][0], rows["message"][0]) == ("failed", "the output im.nic is a folder")


def test_a_killed_runs_temporary_beside_an_output_to_write_goes(ray_instance, tmp_path):
    import os
    import time

    from nicodec.ray_recipe import compress_collection

    source, target = _photos(tmp_path / "photos", 2), tmp_path / "out"
    target.mkdir()
    stale, fresh = target / ".im0.nic.0123abcd.part", target / ".other.nic.89abcdef.part"
    for part in (stale, fresh):
        part.write_bytes(b"cut short")
    os.utime(stale, (time.time() - 600, time.time() - 600))
    summary = compress_collection(source, target)
    assert (summary.done, summary.failed) == (2, [])
    assert not stale.exists() and fresh.exists()  # another output's, and written a moment ago


def test_a_name_rays_reader_passes_over_is_listed_as_failed(ray_instance, tmp_path):
    """Ray's reader passes over 'q?.png' (a URI's query): it was neither coded nor counted."""
    from nicodec.ray_recipe import UNREAD, compress_collection

    source = tmp_path / "photos"
    source.mkdir()
    for name in ("a.png", "q?.png", "b[1].png"):
        Image.fromarray(synthetic_photo(32, 32, seed=1)).save(source / name)
    summary = compress_collection(source, tmp_path / "out")
    assert summary.done == 2 and summary.failed == [(str(source / "q?.png"), UNREAD)]
    again = compress_collection(source, tmp_path / "out")  # only q?.png left to read: Ray's reader raised
    assert (again.done, again.skipped, again.failed) == (0, 2, [(str(source / "q?.png"), UNREAD)])
    alone = tmp_path / "alone"
    alone.mkdir()
    (source / "q?.png").rename(alone / "q?.png")
    assert compress_collection(alone, tmp_path / "out2").failed == [(str(alone / "q?.png"), UNREAD)]


@pytest.mark.parametrize("target_uri", [False, True])
def test_a_uri_source_run_again_reads_only_the_sources_whose_outputs_are_missing(ray_instance, tmp_path, monkeypatch,
                                                                                  target_uri):
    """The driver's listing of a URI has no scheme: its paths were handed to Ray's reader as
    local files (an s3:// source into a local target failed on its second run). And a run
    again from or to an object store read every source (downloaded the collection again)."""
    import ray.data

    from nicodec.ray_recipe import compress_collection

    source = _photos(tmp_path / "photos", 3)
    target = f"file://{tmp_path / 'out'}" if target_uri else tmp_path / "out"
    assert compress_collection(f"file://{source}", target).done == 3
    (tmp_path / "out" / "im1.nic").unlink()
    read, real = [], ray.data.read_binary_files
    monkeypatch.setattr(ray.data, "read_binary_files", lambda paths, **kwargs: read.append(paths) or real(paths, **kwargs))
    again = compress_collection(f"file://{source}", target)
    assert (again.done, again.skipped, again.failed) == (1, 2, [])
    assert read == [[str(source / "im1.png")]]
    done = compress_collection(f"file://{source}", target)
    assert (done.done, done.skipped, done.failed) == (0, 3, []) and len(read) == 1


def test_a_run_again_reads_only_the_sources_whose_outputs_are_missing(ray_instance, tmp_path, monkeypatch):
    """A run again read every source, sent it to an encoder and skipped it there (40 photos all
    done: 8 to 10 s); a local target's outputs are now found on the driver, and their sources not read."""
    import ray.data

    from nicodec.ray_recipe import compress_collection

    source = _photos(tmp_path / "photos", 4)
    assert compress_collection(source, tmp_path / "out").done == 4
    (tmp_path / "out" / "im1.nic").unlink()
    read, real = [], ray.data.read_binary_files
    monkeypatch.setattr(ray.data, "read_binary_files", lambda paths, **kwargs: read.append(paths) or real(paths, **kwargs))
    again = compress_collection(source, tmp_path / "out")
    assert (again.done, again.skipped, again.failed) == (1, 3, [])
    assert read == [[str(source / "im1.png")]]
    done = compress_collection(source, tmp_path / "out")
    assert (done.done, done.skipped, done.failed) == (0, 4, []) and len(read) == 1  # nothing read at all
