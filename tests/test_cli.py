"""The command line, through Typer's runner and as a real process."""

from __future__ import annotations

import io
import json
import shutil
import signal
import os
import re
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, features
from typer.testing import CliRunner

import nicodec
from nicodec import encode_to_target
from nicodec.cli import app
from nicodec import model as nicmodel
from nicodec.errors import NicodecError

from conftest import ended_by, opened, psnr, synthetic_photo, unicode_names

runner = CliRunner()


@pytest.fixture()
def png(tmp_path, photo):
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    return path


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_encode_decode_round_trip(png, photo, tmp_path):
    result = run("encode", png, "--provider", "cpu")
    assert result.exit_code == 0, result.output
    nic = tmp_path / "photo.nic"
    assert nic.exists()
    assert "bpp" in result.stdout and "bytes" in result.stdout
    out = tmp_path / "back.png"
    result = run("decode", nic, "-o", out, "--threads", "1")
    assert result.exit_code == 0, result.output
    back = np.asarray(Image.open(out))
    assert back.shape == photo.shape
    assert psnr(back, photo) > 26


def test_an_onnxruntime_provider_and_its_options_are_given_to_onnxruntime(png, tmp_path, monkeypatch):
    """--provider takes onnxruntime's names too (OpenVINOExecutionProvider, with onnxruntime-
    openvino), and --provider-option that provider's options (device_type=GPU), as Codec's
    providers= does; the CPU's provider stands in for the others here, each build has it."""
    from nicodec import codec as nicodec_codec

    made = []
    real = nicodec_codec.create_session

    def create_session(path, providers, *args, **kwargs):
        made.append((os.path.basename(path), providers))
        return real(path, providers, *args, **kwargs)

    monkeypatch.setattr(nicodec_codec, "create_session", create_session)
    assert run("encode", png, "-o", tmp_path / "plain.nic", "--provider", "cpu").exit_code == 0
    result = run("encode", png, "-o", tmp_path / "named.nic", "--provider", "CPUExecutionProvider",
                 "--provider-option", "a=b=c", "--provider-option", "d=")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "named.nic").read_bytes() == (tmp_path / "plain.nic").read_bytes()
    asked = [("CPUExecutionProvider", {"a": "b=c", "d": ""})]
    assert ("encoder.onnx", asked) in made and ("entropy_parameters.onnx", ["CPUExecutionProvider"]) in made
    result = run("decode", tmp_path / "named.nic", "-o", tmp_path / "back.png", "--provider", "CPUExecutionProvider",
                 "--provider-option", "x=1")
    assert result.exit_code == 0 and ("decoder.onnx", [("CPUExecutionProvider", {"x": "1"})]) in made, result.output
    # CUDA with its options where there is none: the advice of --provider cuda alone.
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        result = run("decode", tmp_path / "named.nic", "-o", tmp_path / "gone.png", "--provider", "cuda",
                     "--provider-option", "device_id=1")
        assert result.exit_code == 1 and not (tmp_path / "gone.png").exists()
        assert "CUDA was asked for, but this onnxruntime has no CUDAExecutionProvider" in result.output
    # A provider this onnxruntime lacks: refused, saying which build has it (one line, exit 1).
    result = run("decode", tmp_path / "named.nic", "-o", tmp_path / "gone.png", "--provider", "MIGraphXExecutionProvider")
    assert result.exit_code == 1 and not (tmp_path / "gone.png").exists()
    assert "has no MIGraphXExecutionProvider" in result.output and "onnxruntime-migraphx brings" in result.output


def test_decode_defaults_to_png_and_honours_the_extension(png, tmp_path):
    assert run("encode", png, "-o", tmp_path / "a.nic").exit_code == 0
    assert run("decode", tmp_path / "a.nic").exit_code == 0
    assert opened(tmp_path / "a.png").format == "PNG"
    assert run("decode", tmp_path / "a.nic", "-o", tmp_path / "a.jpg").exit_code == 0
    assert opened(tmp_path / "a.jpg").format == "JPEG"
    result = run("decode", tmp_path / "a.nic", "-o", tmp_path / "a.unknownext")
    assert result.exit_code == 1
    assert "cannot write images with the extension '.unknownext'" in result.stderr
    assert not (tmp_path / "a.unknownext").exists()
    result = run("decode", tmp_path / "a.nic", "-o", tmp_path / "noext")  # was "the extension ''"
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'noext'} has no extension to tell the image format: add .png" in result.stderr
    assert not (tmp_path / "noext").exists()


def test_decode_shows_and_times_the_writing_of_its_output(png, tmp_path, monkeypatch):
    """A large PNG takes seconds to write after the decode: the bar sat at 100% meanwhile, and
    the time reported left the writing out."""
    import re

    from nicodec import cli, console, outputs

    assert run("encode", png, "-o", tmp_path / "a.nic").exit_code == 0
    save, clock = outputs.save, [0.0]

    def slow_save(*args, **kwargs):
        clock[0] += 100.0  # the command's clock, not the wall's
        return save(*args, **kwargs)

    monkeypatch.setattr(outputs, "save", slow_save)
    monkeypatch.setattr(cli.time, "perf_counter", lambda: clock[0])
    screen = io.StringIO()
    monkeypatch.setattr(console, "err", console._Console(file=screen, force_terminal=True, width=200))
    result = run("decode", tmp_path / "a.nic", "-o", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    assert "writing a.png" in screen.getvalue()
    assert re.search(r"a.png: [0-9]+x[0-9]+, 100.00 s$", result.stdout.strip()), result.stdout


def test_the_progress_bar_fits_its_line_on_a_stream_that_is_not_utf8(monkeypatch):
    """PYTHONIOENCODING=ascii, a Latin-1 locale: Rich laid the bar out with its ellipsis (one
    column) and a CJK name's two columns a character, and the stream wrote them as backslash
    escapes (six columns): the line overflowed the terminal, and each refresh left a row."""
    import re

    from nicodec import console

    for encoding in ("ascii", "latin-1"):
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding=encoding, errors="backslashreplace", write_through=True)
        monkeypatch.setattr(console, "err", console._Console(file=stream, force_terminal=True, width=60))
        with console.bar("encoding", "/photos/" + "\u5199\u771f" * 20 + "caf\u00e9.png") as step:
            step(1, 2)
            step.writing("\u5199\u771f" * 20 + ".nic")
        text = raw.getvalue().decode(encoding)
        lines = re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))
        assert "encoding \\u5199" in text and "writing \\u5199" in text and "..." in text, text
        assert max(map(len, lines)) <= 60, [line for line in lines if len(line) > 60]


def test_existing_output_is_kept_without_force(png, tmp_path):
    target = tmp_path / "photo.nic"
    target.write_bytes(b"precious")
    result = run("encode", png)
    assert result.exit_code == 1
    assert "--force" in result.stderr
    assert target.read_bytes() == b"precious"
    assert run("encode", png, "--force").exit_code == 0
    assert target.read_bytes()[:4] == b"\x89NIC"


def test_the_input_is_checked_before_the_output_and_named_in_errors(png, tmp_path):
    """Found by a review: a missing input was reported as an existing output, a photo given to
    decode as 'photo.png exists', and a damaged file's error did not say which file."""
    from nicodec import format as nicformat

    (tmp_path / "ghost.nic").write_bytes(b"an earlier output")
    result = run("encode", tmp_path / "ghost.png")
    assert result.exit_code == 1 and "ghost.png: no such file" in result.stderr and "exists" not in result.stderr
    assert run("encode", png, "-o", tmp_path / "a.nic").exit_code == 0
    result = run("encode", tmp_path / "a.nic", "-o", tmp_path / "b.nic")
    assert result.exit_code == 1 and "a.nic is a nicodec file already; `nicodec decode`" in result.stderr
    photo = tmp_path / "photo.jpg"
    Image.open(png).save(photo, quality=90)
    (tmp_path / "photo.png").write_bytes(b"the original")
    result = run("decode", photo)
    assert result.exit_code == 1 and "photo.jpg is not a nicodec file" in result.stderr
    assert "`nicodec encode`" in result.stderr and (tmp_path / "photo.png").read_bytes() == b"the original"
    (tmp_path / "empty.nic").write_bytes(b"")
    result = run("decode", tmp_path / "empty.nic")
    assert result.exit_code == 1 and "empty.nic is empty" in result.stderr
    for command in ("info", "verify"):  # not "wrong magic bytes"
        result = run(command, tmp_path / "empty.nic")
        assert result.exit_code == 1 and "empty.nic: empty (0 bytes), not a nicodec file" in result.stderr
    data = (tmp_path / "a.nic").read_bytes()
    (tmp_path / "cut.nic").write_bytes(data[:-10])
    for command in ("decode", "info"):
        result = run(command, tmp_path / "cut.nic")
        assert result.exit_code == 1 and f"error: {tmp_path / 'cut.nic'}: " in result.stderr, command
    result = run("decode", tmp_path / "a.nic", "-o", tmp_path / "small.png", "--max-pixels", "100")
    assert result.exit_code == 1 and "(--max-pixels sets the limit)" in result.stderr
    # A batch's failures and verify's carry the hint too (a single file's alone did).
    for args in (("decode", tmp_path / "a.nic", tmp_path / "a.nic", "-o", tmp_path / "out"), ("verify", tmp_path / "a.nic")):
        result = run(*args, "--max-pixels", "100")
        assert result.exit_code == 1 and "more than the limit of 100 (--max-pixels sets the limit)" in result.stderr, args
    header, sections = nicformat.unpack(data)
    other = nicformat.Header(header.version, "another-model", b"\x01" * 8, header.width, header.height,
                             header.quality, header.flags)
    (tmp_path / "other.nic").write_bytes(nicformat.pack(other, sections))
    result = run("decode", tmp_path / "other.nic")
    assert result.exit_code == 1 and "another-model" in result.stderr
    assert "(--model DIR loads another model folder)" in result.stderr and not (tmp_path / "other.png").exists()
    assert "nicodec ships" not in result.stderr  # no model of the package decodes it
    # A file of the shipped model decoded with another model's folder: the way out is to leave --model out.
    earlier = next(folder for folder in sorted(nicmodel.earlier_models_dir().iterdir()) if folder.is_dir())
    for args in (("decode", tmp_path / "a.nic", "-o", tmp_path / "b.png"), ("verify", tmp_path / "a.nic")):
        result = run(*args, "--model", earlier)
        assert result.exit_code == 1 and result.stderr.rstrip().endswith(
            "; the model nicodec ships decodes it (leave out --model)"), result.stderr
        assert "loads another model folder" not in result.stderr


def test_decode_formats_are_probed_in_the_mode_the_picture_decodes_to(photo, tmp_path):
    """A grayscale picture keeps every value in GIF (256 levels), and so does a gray one kept as
    RGB; a square transparent icon in ICNS (PNG inside); a colour one does not fit GIF."""
    gray = Image.fromarray(photo).convert("L")
    for name, image in (("gray", gray), ("gray-rgb", gray.convert("RGB"))):  # RGB of equal channels: GIF holds it
        image.save(tmp_path / f"{name}.png")
        assert run("encode", tmp_path / f"{name}.png").exit_code == 0
        assert run("decode", tmp_path / f"{name}.nic", "-o", tmp_path / f"{name}-back.png").exit_code == 0
        result = run("decode", tmp_path / f"{name}.nic", "-o", tmp_path / f"{name}.gif")
        assert result.exit_code == 0, result.output
        assert np.array_equal(np.asarray(opened(tmp_path / f"{name}.gif").convert(image.mode)),
                              np.asarray(Image.open(tmp_path / f"{name}-back.png")))
    icon = np.dstack([photo[:64, :64], np.full((64, 64), 255, np.uint8)])
    icon[:8, :8, 3] = 0
    Image.fromarray(icon, "RGBA").save(tmp_path / "icon.png")
    assert run("encode", tmp_path / "icon.png").exit_code == 0
    result = run("decode", tmp_path / "icon.nic", "-o", tmp_path / "icon.icns")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "icon.icns") as back:
        back.size = (64, 64)  # the icon of the picture's own size, among the resampled ones
        assert back.convert("RGBA").getpixel((0, 0))[3] == 0


def test_only_the_pixel_limit_hints_at_max_pixels(tmp_path):
    """A side longer than the format holds is no matter of --max-pixels."""
    Image.new("L", (1_100_000, 1)).save(tmp_path / "line.png")
    result = run("encode", tmp_path / "line.png")
    assert result.exit_code == 1 and "sides of at most 1,048,576 pixels" in result.stderr
    assert "--max-pixels" not in result.stderr
    Image.new("L", (100, 100)).save(tmp_path / "square.png")
    result = run("encode", tmp_path / "square.png", "--max-pixels", "1000")
    assert result.exit_code == 1 and "more than the limit of 1,000 (--max-pixels sets the limit)" in result.stderr


def test_no_folder_advice_for_an_image_from_standard_input(png, tmp_path):
    result = runner.invoke(app, ["encode", "-", "-o", str(tmp_path / "archive")], input=png.read_bytes())
    assert result.exit_code == 0, result.output
    assert "not a folder" not in result.stderr and (tmp_path / "archive").read_bytes()[:4] == b"\x89NIC"


def test_an_input_in_a_folder_that_cannot_be_entered_is_named(png, tmp_path, monkeypatch):
    """Path.is_file raises PermissionError there (Python 3.11): an error naming the file, as
    reading it gives, not an internal error (a review found the regression)."""
    from pathlib import Path

    locked = tmp_path / "locked" / "photo.png"
    real_is_file = Path.is_file

    def is_file(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    for command, out in (("encode", "out.nic"), ("decode", "out.png")):
        result = run(command, locked, "-o", tmp_path / out)
        assert result.exit_code == 1 and "internal error" not in result.stderr, command
        assert str(locked) in result.stderr, command


def test_a_read_only_output_folder_is_refused_before_any_work(png, tmp_path, monkeypatch):
    """Not after a long encode (os.access stands in for a folder this test, run as root, could not
    make read-only with chmod)."""
    import os

    from nicodec import Codec

    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path) == str(read_only)
                        else real_access(path, mode, **kw))

    def no_work(*args, **kwargs):
        raise AssertionError("coded before the output folder was checked")

    monkeypatch.setattr(Codec, "encode", no_work)
    monkeypatch.setattr(Codec, "decode", no_work)
    result = run("encode", png, "-o", read_only / "x.nic")
    assert result.exit_code == 1 and "the folder" in result.stderr and "is not writable" in result.stderr
    nic = tmp_path / "x.nic"
    nic.write_bytes(b"\x89NIC")  # refused for its folder before it is decoded (its first bytes are looked at)
    result = run("decode", nic, "-o", read_only / "x.png")
    assert result.exit_code == 1 and "is not writable" in result.stderr
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_bad_inputs_give_one_line_and_exit_1(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    result = run("encode", bad)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "bad.nic").exists()


def test_missing_inputs(tmp_path):
    for args in (("encode", tmp_path / "nope.png"), ("decode", tmp_path / "nope.nic")):
        result = run(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: ")


def test_corrupt_nic_is_refused_and_nothing_written(png, tmp_path):
    assert run("encode", png).exit_code == 0
    nic = tmp_path / "photo.nic"
    data = bytearray(nic.read_bytes())
    data[-3] ^= 0x40
    nic.write_bytes(bytes(data))
    result = run("decode", nic, "-o", tmp_path / "out.png")
    assert result.exit_code == 1
    assert "checksum" in result.stderr
    assert not (tmp_path / "out.png").exists()
    assert list(tmp_path.glob(".*part")) == []


def test_info_json(png, tmp_path):
    assert run("encode", png).exit_code == 0
    result = run("info", tmp_path / "photo.nic", "--json")
    assert result.exit_code == 0
    facts = json.loads(result.stdout)
    assert (facts["width"], facts["height"]) == (256, 192)
    assert set(facts["sections"]) == {"ZSYM", "YSYM"}
    assert facts["bytes"] == (tmp_path / "photo.nic").stat().st_size
    assert facts["grayscale"] is facts["gray_as_rgb"] is False
    assert facts["fine_padding"] is False  # 256x192: the same padded either way, so no flag


def test_describe_gives_what_info_json_prints_from_a_path_bytes_or_a_file(png, tmp_path):
    """``nicodec.describe``: the facts ``info --json`` prints, for an application (which had to
    unpack the header itself); its errors are nicodec's."""
    assert run("encode", png).exit_code == 0
    nic = tmp_path / "photo.nic"
    printed = json.loads(run("info", nic, "--json").stdout)
    assert printed.pop("file") == str(nic)
    with open(nic, "rb") as file:
        assert nicodec.describe(nic) == nicodec.describe(nic.read_bytes()) == nicodec.describe(file) == printed
    assert printed["decoded_by"] == nicodec.Codec(providers="cpu").model_id
    damaged = bytearray(nic.read_bytes())
    damaged[-1] ^= 1
    with pytest.raises(nicodec.FormatError, match="checksum"):
        nicodec.describe(bytes(damaged))
    with pytest.raises(nicodec.NicodecError, match="^describe takes the bytes of a .nic file, a binary file object or "
                                                    "the file's path, not int$"):
        nicodec.describe(3)


def test_info_says_which_files_are_padded_to_16(tmp_path):
    """Files of sides off the 64-pixel grid need nicodec 0.7.0 or later: info says which."""
    Image.fromarray(synthetic_photo(70, 90)).save(tmp_path / "odd.png")
    assert run("encode", tmp_path / "odd.png").exit_code == 0
    assert json.loads(run("info", tmp_path / "odd.nic", "--json").stdout)["fine_padding"] is True
    said = run("info", tmp_path / "odd.nic").stdout
    assert "   fine_padding: yes (padded to multiples of 16, not 64: nicodec 0.7.0 or later decodes it)\n" in said



def test_info_names_the_colour_profile_kept(png, tmp_path):
    """info showed a profile's size only (ICCP 588 bytes): which one a file keeps (a phone's
    Display P3, a camera's Adobe RGB, or sRGB) is what decides how its colours are shown."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with Image.open(png) as image:
        image.save(tmp_path / "tagged.png", icc_profile=srgb)
        image.save(tmp_path / "odd.png", icc_profile=srgb[:128] + b"not the rest of a profile")
    assert run("encode", png, tmp_path / "tagged.png", tmp_path / "odd.png").exit_code == 0
    said = run("info", tmp_path / "tagged.nic", tmp_path / "photo.nic", tmp_path / "odd.nic").stdout
    assert said.count(" colour_profile: ") == 3
    assert " colour_profile: sRGB built-in (RGB)\n" in said and " colour_profile: none\n" in said
    assert " colour_profile: 153 bytes that LittleCMS cannot read\n" in said
    facts = json.loads(run("info", tmp_path / "tagged.nic", tmp_path / "photo.nic", "--json").stdout)
    assert [f["colour_profile"] for f in facts] == ["sRGB built-in (RGB)", None]

def test_info_says_how_a_gray_file_decodes(tmp_path):
    """A colour image of equal channels is coded as gray and decodes to RGB: info says which."""
    from conftest import synthetic_photo

    gray = synthetic_photo(64, 96)[..., 1]
    Image.fromarray(gray).save(tmp_path / "l.png")
    Image.fromarray(gray).convert("RGB").save(tmp_path / "rgb.png")
    assert run("encode", tmp_path / "l.png", tmp_path / "rgb.png").exit_code == 0
    assert "grayscale: yes\n" in run("info", tmp_path / "l.nic").stdout
    said = run("info", tmp_path / "rgb.nic").stdout
    assert "grayscale: yes (a colour image of equal channels: decoded as RGB)\n" in said and "gray_as_rgb" not in said
    facts = json.loads(run("info", tmp_path / "rgb.nic", "--json").stdout)
    assert facts["grayscale"] is facts["gray_as_rgb"] is True
    assert run("decode", tmp_path / "rgb.nic", "-o", tmp_path / "back.png").exit_code == 0
    with Image.open(tmp_path / "back.png") as back:
        assert back.mode == "RGB"


def test_info_never_prints_control_characters_from_a_file(png, tmp_path):
    assert run("encode", png).exit_code == 0
    data = (tmp_path / "photo.nic").read_bytes()
    model_id = data[7:7 + data[6]]
    hostile = data.replace(model_id, b"\x1b]0;x\x07\x1b[2J".ljust(len(model_id), b"x"), 1)
    (tmp_path / "hostile.nic").write_bytes(hostile)
    result = run("info", tmp_path / "hostile.nic")
    assert result.exit_code == 1 and "not printable" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr


def test_info_on_several_files(png, tmp_path):
    assert run("encode", png).exit_code == 0
    assert run("encode", png, "-o", tmp_path / "low.nic", "--quality", "5").exit_code == 0
    (tmp_path / "bad.nic").write_bytes(b"not a nicodec file")
    files = [tmp_path / "photo.nic", tmp_path / "bad.nic", tmp_path / "low.nic"]
    result = run("info", *files, "--json")
    assert result.exit_code == 1  # the bad file is named on stderr; the others are shown
    facts = json.loads(result.stdout)
    assert [f["file"] for f in facts] == [str(files[0]), str(files[2])] and facts[1]["quality"] == 5
    assert f"error: {files[1]}: not a nicodec file" in result.stderr
    result = run("info", files[0], files[2])
    assert result.exit_code == 0 and result.stdout.count("model_id: ") == 2
    assert result.stdout.count("\n\n") == 1 and result.stdout.endswith("(the shipped model)\n")  # a blank line between


def test_info_reads_the_package_models_once_not_once_a_file(png, tmp_path, monkeypatch):
    """Each file re-read and parsed every manifest the package keeps: a quarter of the time of
    ``info`` on a folder of small files (0.9 s for 576, 0.45 now, with a file's lines printed at once)."""
    from nicodec import model

    asked = []
    looked_up = model.package_model_for
    monkeypatch.setattr(model, "package_model_for", lambda *key: asked.append(key) or looked_up(*key))
    for name in ("a", "b", "c"):
        assert run("encode", png, "-o", tmp_path / f"{name}.nic").exit_code == 0
    result = run("info", tmp_path)
    assert result.exit_code == 0 and result.stdout.count("(the shipped model)") == 3 and len(asked) == 1


def test_info_takes_folders_as_verify_does(png, tmp_path):
    """``info`` refused a folder ("is a directory, not a .nic file") where ``verify`` searched
    it: it now shows every .nic file under it, each once, as a JSON list even for one file."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "empty").mkdir()
    assert run("encode", png, "-o", tree / "a.nic").exit_code == 0
    assert run("encode", png, "-o", tree / "sub" / "b.nic", "--quality", "5").exit_code == 0
    (tree / "sub" / "notes.txt").write_text("not a .nic file")
    result = run("info", tree, tree / "a.nic", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(f["file"] for f in json.loads(result.stdout)) == [str(tree / "a.nic"), str(tree / "sub" / "b.nic")]
    result = run("info", tree / "sub", "--json")
    assert result.exit_code == 0 and [f["quality"] for f in json.loads(result.stdout)] == [5]
    result = run("info", tree / "sub")
    assert result.exit_code == 0 and "quality: 5\n" in result.stdout
    result = run("info", tree / "empty")
    assert result.exit_code == 1 and f"no .nic files under {tree / 'empty'}: nothing to show" in result.stderr
    result = run("info", tree / "empty", tree / "a.nic")
    assert result.exit_code == 0 and f"warning: no .nic files under {tree / 'empty'}" in result.stderr


@pytest.mark.parametrize(("command", "option", "value", "said"), [
    ("encode", "--threads", "0", "0 is not a whole number from 1 to 256"),
    ("decode", "--threads", "300", "300 is not a whole number from 1 to 256"),
    ("encode", "--jobs", "65", "65 is not a whole number from 1 to 64"),
    ("encode", "--max-pixels", "0", "0 is not a whole number of 1 or more"),
    ("encode", "--max-bytes", "-5", "-5 is not a whole number of 1 or more"),
    ("encode", "--refine", "1001", "1001 is not a whole number from 0 to 1,000"),
    ("encode", "--tile", "0", "0 is less than 64, the smallest tile"),
    ("decode", "--tile", "100", "100 is not a multiple of 64"),
    ("encode", "--threads", "x", "x is not a whole number from 1 to 256"),
    ("encode", "--max-bytes", "1.5", "1.5 is not a whole number of 1 or more"),
    ("decode", "--tile", "big", "big is not a whole number"),
    ("encode", "--quality", "high", "high is not a quality from 1 to 100"),
    ("encode", "--quality", "nan", "nan is not a quality from 1 to 100"),
    ("encode", "--target-bpp", "0.5bpp", "0.5bpp is not a positive number"),
    ("encode", "--target-psnr", "-3", "-3 is not a positive number"),
    # Python's int() and float() read these; a command line's numbers are ASCII digits
    ("encode", "--quality", "4_0", "4_0 is not a quality from 1 to 100"),
    ("encode", "--quality", "\u0664\u0660", "\u0664\u0660 is not a quality from 1 to 100"),
    ("encode", "--threads", "1_6", "1_6 is not a whole number from 1 to 256"),
    ("encode", "--max-bytes", "\uff11\uff10\uff10\uff10", "\uff11\uff10\uff10\uff10 is not a whole number of 1 or more"),
    ("encode", "--target-bpp", "0_5", "0_5 is not a positive number"),
])
def test_a_number_out_of_its_range_is_named(png, command, option, value, said):
    """Typer 0.29 said "Input should be greater than or equal to 1", without the number given,
    and "Input should be a valid integer, unable to parse string as an integer" for a word."""
    result = run(command, png if command == "encode" else "x.nic", option, value)
    assert result.exit_code == 2 and f"'{option}': {said}" in result.stderr, result.stderr


def test_usage_errors_exit_2(png):
    assert run("encode", png, "--threads", "0").exit_code == 2
    assert run("encode", png, "--provider", "tpu").exit_code == 2
    assert run("frobnicate").exit_code == 2


def test_threads_takes_1_to_256(png, monkeypatch):
    """docs/cli.md: --threads takes 1 to 256. onnxruntime starts every thread with the session (256 of
    them in three sessions take about 20 s on 2 cores), so its sessions are not started here: the
    number is checked to reach them."""
    import onnxruntime

    from nicodec import sessions

    asked = []

    class NoSessions:
        def __getattr__(self, name):
            return getattr(onnxruntime, name)

        @staticmethod
        def InferenceSession(path, sess_options, providers, **kwargs):
            asked.append(sess_options.intra_op_num_threads)
            raise RuntimeError("not started in this test")

    monkeypatch.setattr(sessions, "_ort", NoSessions)
    result = run("encode", png, "--threads", "256", "--provider", "cpu")
    assert result.exit_code == 1 and "not started in this test" in result.stderr, result.output
    assert asked == [256]
    asked.clear()
    result = run("encode", png, "--threads", "257", "--provider", "cpu")
    assert result.exit_code == 2
    assert result.stdout == "" and "--threads" in result.stderr and "256" in result.stderr
    assert asked == []


def test_names_that_begin_with_a_dash(png, tmp_path, monkeypatch):
    """docs/cli.md: a name that begins with - is given after -- or as ./-x.png (alone it is an option)."""
    monkeypatch.chdir(tmp_path)
    png.rename("-x.png")
    result = run("encode", "--", "-x.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("-x.png -> -x.nic: ") and result.stderr == ""
    first = (tmp_path / "-x.nic").read_bytes()
    result = run("encode", "./-x.png", "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "-x.nic").read_bytes() == first
    result = run("decode", "-o", "back.png", "--", "-x.nic")
    assert result.exit_code == 0, result.output
    assert opened(tmp_path / "back.png").size == opened(tmp_path / "-x.png").size
    result = run("encode", "-x.png")
    assert result.exit_code == 2 and result.stdout == "" and "-x" in result.stderr


def test_version_and_module_entry_point():
    import importlib.metadata

    result = subprocess.run([sys.executable, "-m", "nicodec", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    shipped = nicodec.Codec().model_id
    assert result.stdout == f"nicodec {importlib.metadata.version('nicodec')}, model {shipped}\n"
    assert nicodec.__version__ == importlib.metadata.version("nicodec") and "__version__" in dir(nicodec)


def test_the_commands_help_survives_python_without_docstrings():
    """Under ``python -OO`` (PYTHONOPTIMIZE=2 in some images) docstrings are gone: each command's
    help comes from its own text, not its function's docstring."""
    listing = subprocess.run([sys.executable, "-OO", "-m", "nicodec", "--help"], capture_output=True, text=True,
                             env={**os.environ, "COLUMNS": "200"})
    assert listing.returncode == 0, listing.stderr
    for line in ("Compress an image into a .nic file", "Decompress a .nic file into an image",
                 "Check .nic files without writing anything", "Show .nic files' headers"):
        assert line in listing.stdout, listing.stdout
    encode = subprocess.run([sys.executable, "-OO", "-m", "nicodec", "encode", "--help"], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    assert encode.returncode == 0 and "Given a folder, compress every image under it" in encode.stdout


@pytest.mark.parametrize("setting", [{"PYTHONIOENCODING": "ascii"},
                                     {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}])
def test_help_in_an_ascii_locale_escapes_what_the_encoding_lacks(setting):
    """PYTHONIOENCODING=ascii, or the C locale without UTF-8 mode (whose streams Python sets to
    surrogateescape), in 60 columns: Typer's help, laid out by Rich with its ellipsis, ended in a
    UnicodeEncodeError traceback, exit code 1."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONIOENCODING", "LANG", "LC_CTYPE")}
    env.update(setting, COLUMNS="60")
    result = subprocess.run([sys.executable, "-m", "nicodec", "encode", "--help"], capture_output=True, env=env)
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode(errors="replace")[-2000:]
    assert b"--quality" in result.stdout and b"\\u2026" in result.stdout  # the ellipsis, escaped


def test_main_called_by_a_program_gives_its_streams_back_as_they_were():
    """main() escapes what the encoding lacks while it runs; the program's own writes after it
    (an undecodable name's surrogates, in the C locale) are written as they were before."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONIOENCODING", "LANG", "LC_CTYPE")}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    script = ("import sys\nfrom nicodec.cli import main\nbefore = sys.stdout.errors\n"
              "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
              "print(before, sys.stdout.errors, sys.stderr.errors, 'caf\\udcc3\\udca9')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == b"surrogateescape surrogateescape backslashreplace caf\xc3\xa9"


@pytest.mark.parametrize("command", [[], ["encode"], ["decode"], ["verify"], ["info"]])
def test_help_shows_no_value_beside_a_flag(command):
    """A flag takes no value, so its help row shows no type: Typer 0.29 shows ``<bool>`` beside
    ``--help`` and every other flag unless told otherwise."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = [line for line in result.output.splitlines() if "--help" in line or "--force" in line]
    assert rows and "<bool>" not in result.output, result.output
    # nor Python's type of the file arguments (Typer 0.29's <list[Path]>; 0.16 shows none)
    assert "list[" not in result.output


@pytest.mark.parametrize("command", ["encode", "decode", "verify", "info"])
def test_the_commands_description_is_wrapped_to_the_terminal(command):
    """Typer 0.29 kept the line breaks of the description's later paragraphs as written, so in
    80 columns a sentence broke after "in the" and went on, on a line of its own."""
    from nicodec import cli

    described = {"encode": cli._ENCODE_HELP, "decode": cli._DECODE_HELP, "verify": cli._VERIFY_HELP,
                 "info": cli._INFO_HELP}[command]
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for paragraph in described.split("\n\n"):
        assert paragraph.strip() and "\n" not in paragraph.strip()
        assert any(line.strip() == paragraph.strip() for line in result.output.splitlines()), paragraph


def test_output_equal_to_input_is_refused_even_with_force(png):
    before = png.read_bytes()
    result = run("encode", png, "-o", png, "--force")
    assert result.exit_code == 1
    assert "is the input" in result.stderr
    assert png.read_bytes() == before


def test_directory_as_output_of_one_file_is_one_line(png, tmp_path):
    assert run("encode", png).exit_code == 0
    for args in (("encode", png, "-o", tmp_path), ("decode", tmp_path / "photo.nic", "-o", tmp_path)):
        result = run(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


def test_long_messages_and_brackets_in_names_are_not_wrapped_or_eaten(tmp_path, photo):
    name = tmp_path / ("a-long-folder-name-" * 4) / "img[red].png"
    name.parent.mkdir()
    Image.fromarray(photo).save(name)
    result = run("encode", name)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and "img[red].nic" in result.stdout
    result = run("encode", name.parent / "missing[bold].png")
    assert result.stderr.count("\n") == 1 and "missing[bold].png" in result.stderr


def test_max_pixels_option(png):
    result = run("encode", png, "--max-pixels", "1000")
    assert result.exit_code == 1
    assert "limit of 1,000" in result.stderr


def test_an_image_above_pillows_limit_but_within_max_pixels_is_not_warned_of(png, photo, monkeypatch):
    """--max-pixels judges the size on the command line. In the library Pillow's warning reaches
    the host program's filters: nicodec does not change them while it reads an image."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", photo.shape[0] * photo.shape[1] - 1)  # Pillow warns, no more
    result = run("encode", png, "--max-pixels", "100000000")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    with pytest.warns(Image.DecompressionBombWarning):
        nicodec.Codec(providers="cpu", max_pixels=10**8).encode(png)


def test_warnings_turned_into_errors_by_the_host_are_still_warnings_on_the_command_line(photo, tmp_path):
    """PYTHONWARNINGS=error (or -W error), set for a developer's tests, made nicodec's note of a
    PNG gamma it does not keep an "internal error" that wrote nothing; "ignore" still hides it."""
    linear = PngImagePlugin.PngInfo()
    linear.add(b"gAMA", struct.pack(">I", 100000))  # gamma 1.0: a warning that it is not kept
    Image.fromarray(photo).save(tmp_path / "linear.png", pnginfo=linear)
    said = "warning: " + str(tmp_path / "linear.png") + ": its gamma (PNG gAMA 1) is not kept"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run("encode", tmp_path / "linear.png", "-o", tmp_path / "a.nic")
        assert result.exit_code == 0 and said in result.stderr, result.stderr
        assert warnings.filters[0][0] == "error"  # the host's filters are given back
        warnings.filterwarnings("ignore", message=".*: its gamma", category=UserWarning)
        shutil.copy(tmp_path / "linear.png", tmp_path / "other.png")  # a warning not shown before
        result = run("encode", tmp_path / "other.png", "-o", tmp_path / "b.nic")
        assert result.exit_code == 0 and "gamma" not in result.stderr, result.stderr
    assert (tmp_path / "a.nic").exists() and (tmp_path / "b.nic").exists()


def test_the_warning_filters_read_are_those_in_force_where_warnings_follow_the_context():
    """Python 3.14's -X context_aware_warnings (the free-threaded build's default): the filters a
    program sets in catch_warnings are the context's, and warnings.filters, which the command
    line read, is the global list: a warning the program had turned off was shown."""
    flags = ["-X", "context_aware_warnings=1"] if sys.version_info >= (3, 14) else []
    script = ("import io, warnings\nfrom nicodec import console\n"
              "console.err = console._Console(file=io.StringIO(), stderr=True, width=200)\n"
              "with warnings.catch_warnings():\n    warnings.simplefilter('ignore')\n    with console.reporting(False):\n"
              "        warnings.warn('hidden by the program')\n"
              "with warnings.catch_warnings():\n    warnings.simplefilter('error')\n    with console.reporting(False):\n"
              "        warnings.warn('shown, not raised')\n"
              "print(repr(console.err.file.getvalue()))\n")
    done = subprocess.run([sys.executable, *flags, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == repr("warning: shown, not raised\n") + "\n", done.stdout + done.stderr


def test_decode_honours_max_pixels_and_writes_nothing(png, tmp_path):
    """The limit is read from the .nic header before any work, for a file and for a folder."""
    (tmp_path / "nic").mkdir()
    assert run("encode", png, "-o", tmp_path / "nic" / "photo.nic").exit_code == 0
    result = run("decode", tmp_path / "nic" / "photo.nic", "-o", tmp_path / "back.png", "--max-pixels", "1000")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "limit of 1,000" in result.stderr
    assert not (tmp_path / "back.png").exists()
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "out", "--max-pixels", "1000")
    assert result.exit_code == 1
    assert "1 file: 0 decoded, 0 up to date, 0 kept, 1 failed" in result.stdout
    assert "photo.nic" in result.stderr and "limit of 1,000" in result.stderr
    assert not list((tmp_path / "out").rglob("*.png"))


def test_default_limit_is_pillows_decompression_bomb_threshold():
    from nicodec import cli, codec

    assert cli.DEFAULT_MAX_PIXELS == codec.DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS


def test_missing_output_folder_is_one_line(png, tmp_path):
    result = run("encode", png, "-o", tmp_path / "no" / "such" / "x.nic")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_a_folder_for_an_output_is_made_only_when_the_output_is_written(png, tmp_path):
    """``-o NEW/`` made NEW (and its parents) before the work, and a failure after that left them
    behind, empty; removing them then removed a folder another run had just found there too."""
    import shutil

    from nicodec.model import default_model_dir

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    (model / "encoder.onnx").unlink()
    result = run("encode", png, "-o", f"{tmp_path / 'new' / 'deeper'}/", "--model", model)
    assert result.exit_code == 1 and "cannot encode" in result.stderr
    assert not (tmp_path / "new").exists()
    assert run("encode", png, "-o", tmp_path / "a.nic").exit_code == 0
    (tmp_path / "cut.nic").write_bytes((tmp_path / "a.nic").read_bytes()[:-40])
    (tmp_path / "kept").mkdir()
    for output in (tmp_path / "kept" / "new", tmp_path / "new"):
        result = run("decode", tmp_path / "cut.nic", "-o", f"{output}/")
        assert result.exit_code == 1 and result.stderr.startswith("error: ")
        assert not output.exists()
    assert (tmp_path / "kept").is_dir()
    (tmp_path / "theirs").mkdir()  # as another run into the same folder would make it
    assert run("decode", tmp_path / "cut.nic", "-o", f"{tmp_path / 'theirs'}/").exit_code == 1
    assert (tmp_path / "theirs").is_dir()
    (tmp_path / "file").write_bytes(b"in the way")
    result = run("decode", tmp_path / "a.nic", "-o", f"{tmp_path / 'file' / 'new'}/")
    assert result.exit_code == 1 and "is a file, not a folder" in result.stderr
    assert run("decode", tmp_path / "a.nic", "-o", f"{tmp_path / 'new' / 'deeper'}/").exit_code == 0
    assert [p.name for p in (tmp_path / "new" / "deeper").iterdir()] == ["a.png"]
    # Checked before any work, as the output itself is (found by a review: after the encode, a
    # traceback for the long name, with the folder made).
    long = tmp_path / ("b" * 253 + ".x")  # 255 bytes, and its .nic 257
    shutil.copy(png, long)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "relative").symlink_to("nowhere")  # relative to the link's folder: shown from here
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    # A link to nothing is named so, whichever way it is reached: it was "No such file or
    # directory" after the name, "a file is in the way" for a folder's output, and "output folder
    # dangling does not exist" for a file in it.
    dangling = f"{tmp_path / 'dangling'} is a link to {tmp_path / 'nowhere'}, which does not exist"
    (tmp_path / "photos").mkdir()
    shutil.copy(png, tmp_path / "photos")
    for args, said in (([long, "-o", f"{tmp_path / 'n1'}/"], "is longer than the 255 bytes"),
                       ([png, "-o", f"{tmp_path / 'dangling'}/"], dangling),
                       ([png, "-o", tmp_path / "dangling" / "x.nic"], dangling),
                       ([png, "-o", f"{tmp_path / 'relative'}/"], dangling.replace("dangling", "relative")),
                       ([png, "-o", f"{tmp_path / 'loop' / 'x'}/"],
                        f"{tmp_path / 'loop'} is a link in a loop of links (to {tmp_path / 'loop'})")):
        result = run("encode", *args, "--model", model)  # a model that cannot encode: the -o check comes first
        assert result.exit_code == 1 and said in result.stderr and "cannot encode" not in result.stderr, result.stderr
    for output in (tmp_path / "dangling", tmp_path / "dangling" / "deeper"):  # a folder's output folder
        result = run("encode", tmp_path / "photos", "-o", output)
        assert result.exit_code == 1 and dangling in result.stderr, result.stderr
    assert not (tmp_path / "n1").exists() and not (tmp_path / "nowhere").exists()
    result = run("encode", png, "-o", tmp_path / ("d" * 300) / "x.nic")  # an existing folder's name could not be
    assert result.exit_code == 1 and "cannot use the output" in result.stderr and "File name too long" in result.stderr


def test_a_single_files_folder_that_went_away_is_not_made_again(tmp_path):
    """Only the folder -o NEW/ asked for is made at the write: one that disappeared meanwhile (a
    mount gone) is an error, not a new folder on the disk beneath."""
    from nicodec.targets import write

    gone = tmp_path / "mount" / "x.nic"
    with pytest.raises(NicodecError, match="does not exist"):
        write(gone, lambda f: f.write(b"x"), False, False)
    assert not gone.parent.exists()
    write(gone, lambda f: f.write(b"x"), False, True)
    assert gone.read_bytes() == b"x"


def test_threads_one_and_two_decode_to_the_same_png(png, tmp_path):
    assert run("encode", png).exit_code == 0
    nic = tmp_path / "photo.nic"
    assert run("decode", nic, "-o", tmp_path / "t1.png", "--threads", "1").exit_code == 0
    assert run("decode", nic, "-o", tmp_path / "t2.png", "--threads", "2").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "t1.png")), np.asarray(Image.open(tmp_path / "t2.png")))


def test_verify_files_and_folders(png, tmp_path):
    assert run("encode", png).exit_code == 0
    good = tmp_path / "photo.nic"
    sub = tmp_path / "sub"
    sub.mkdir()
    damaged = bytearray(good.read_bytes())
    damaged[-5] ^= 0x01
    (sub / "bad.nic").write_bytes(bytes(damaged))
    result = run("verify", good)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"ok {good}: 256x192")
    result = run("verify", tmp_path)
    assert result.exit_code == 1
    assert "2 files: 1 ok, 1 failed" in result.stdout
    assert "FAILED" in result.stderr and "bad.nic" in result.stderr and "checksum" in result.stderr
    assert run("verify", tmp_path / "missing.nic").exit_code == 1
    # A file named twice, or again under a folder, is verified once.
    result = run("verify", good, f"{tmp_path}/./photo.nic", tmp_path)
    assert "2 files: 1 ok, 1 failed" in result.stdout
    # An empty folder: one error (nothing verified is no pass); beside other files, a warning.
    (tmp_path / "empty").mkdir()
    result = run("verify", tmp_path / "empty")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"no .nic files under {tmp_path / 'empty'}: nothing to verify" in result.stderr
    result = run("verify", tmp_path / "empty", good)
    assert result.exit_code == 0 and f"warning: no .nic files under {tmp_path / 'empty'}" in result.stderr


def test_verify_names_a_file_from_another_model(png, tmp_path):
    from nicodec import format as nicformat

    assert run("encode", png).exit_code == 0
    header, sections = nicformat.unpack((tmp_path / "photo.nic").read_bytes())
    other = nicformat.Header(1, "another-model", bytes(8), header.width, header.height, 0.0)
    (tmp_path / "photo.nic").write_bytes(nicformat.pack(other, sections))
    result = run("verify", tmp_path / "photo.nic")
    assert result.exit_code == 1
    assert "another-model" in result.stderr


def test_shell_completion_is_offered():
    result = run("--help")
    assert "--install-completion" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="bash's start-up file")
def test_a_completion_that_cannot_be_installed_names_the_file(tmp_path):
    """A read-only home folder was "cannot write the output". Typer looks for the shell among
    the process's parents, and takes ``bash`` for a stray argument: a test run with no shell
    among its parents (one started in the background by a shell that has ended) got "Shell None
    is not supported." and exit code 1. Typer's switch for tests makes the option take the
    shell it is given."""
    import subprocess

    (tmp_path / ".bashrc").mkdir()  # (root writes read-only files: a folder in its place fails for anyone)
    env = {**os.environ, "HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run([sys.executable, "-c", "from nicodec.cli import main; main()", "--install-completion", "bash"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr == f"error: cannot write {tmp_path / '.bashrc'}: Is a directory\n"


def test_metadata_and_alpha_survive_the_command_line(tmp_path, photo):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    exif = Image.Exif()
    exif[0x010F] = "camera"
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png", icc_profile=icc, exif=exif)
    assert run("encode", tmp_path / "in.png").exit_code == 0
    assert run("decode", tmp_path / "in.nic", "-o", tmp_path / "out.png").exit_code == 0
    out = opened(tmp_path / "out.png")
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0
    assert out.info.get("icc_profile") == icc and out.getexif()[0x010F] == "camera"
    result = run("decode", tmp_path / "in.nic", "-o", tmp_path / "out.jpg")
    assert result.exit_code == 1 and "transparency, which JPEG does not keep" in result.stderr
    assert not (tmp_path / "out.jpg").exists()
    Image.init()
    if "AVIF" in Image.SAVE:  # AVIF keeps an alpha plane, not every level of it: it said "does not keep" it
        result = run("decode", tmp_path / "in.nic", "-o", tmp_path / "out.avif")
        assert result.exit_code == 1 and "transparency, which AVIF keeps only approximately" in result.stderr
    result = run("decode", tmp_path / "in.nic", "-o", tmp_path / "out.gif")  # one transparent palette entry
    assert result.exit_code == 1
    assert "transparency, which GIF keeps only for pixels fully transparent or opaque (the file's header cannot tell " \
           "whether those are all it has)" in result.stderr
    assert run("encode", tmp_path / "in.png", "-o", tmp_path / "bare.nic", "--strip").exit_code == 0
    assert run("decode", tmp_path / "bare.nic", "-o", tmp_path / "bare.png").exit_code == 0
    assert "icc_profile" not in opened(tmp_path / "bare.png").info


def test_exact_keeps_the_colour_under_transparency_from_the_command_line(tmp_path, photo, codec):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, :100, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    assert run("encode", tmp_path / "in.png", "-o", tmp_path / "filled.nic").exit_code == 0
    assert run("encode", tmp_path / "in.png", "-o", tmp_path / "exact.nic", "--exact").exit_code == 0
    assert (tmp_path / "filled.nic").read_bytes() == codec.encode(rgba)
    assert (tmp_path / "exact.nic").read_bytes() == codec.encode(rgba, exact=True) != codec.encode(rgba)
    (tmp_path / "many").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "many" / "a.png")
    assert run("encode", tmp_path / "many", "--exact", "--target-bpp", "2").exit_code == 0
    assert (tmp_path / "many" / "a.nic").read_bytes() == encode_to_target(codec, rgba, bpp=2, exact=True).data


def test_background_flattens_transparency_onto_a_colour(tmp_path, photo):
    """A transparent picture was refused for JPEG with no way to get one: --background
    composites it onto an opaque colour, each value rounded from value x alpha + colour x
    (255 - alpha) over 255, and keeps its metadata."""
    rgba = np.dstack([photo, np.tile(np.linspace(0, 255, photo.shape[1]).astype(np.uint8), (photo.shape[0], 1))])
    exif = Image.Exif()
    exif[0x010F] = "camera"
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png", exif=exif)
    assert run("encode", tmp_path / "in.png").exit_code == 0
    assert run("decode", tmp_path / "in.nic", "-o", tmp_path / "kept.png").exit_code == 0
    kept = np.asarray(Image.open(tmp_path / "kept.png")).astype(np.int64)
    expected = (kept[..., :3] * kept[..., 3:] + np.array([10, 200, 30]) * (255 - kept[..., 3:]) + 127) // 255
    result = run("decode", tmp_path / "in.nic", "-o", tmp_path / "flat.png", "--background", "#0ac81e")
    assert result.exit_code == 0, result.output
    flat = opened(tmp_path / "flat.png")
    assert flat.mode == "RGB" and np.array_equal(np.asarray(flat), expected)
    assert flat.getexif()[0x010F] == "camera"
    result = run("decode", tmp_path / "in.nic", "-o", tmp_path / "flat.jpg", "--background", "white")
    assert result.exit_code == 0, result.output
    jpeg = opened(tmp_path / "flat.jpg")
    assert jpeg.mode == "RGB" and jpeg.getexif()[0x010F] == "camera"
    assert np.asarray(jpeg)[:, 0].min() >= 245  # alpha 0 there: the white alone
    refused = run("decode", tmp_path / "in.nic", "-o", tmp_path / "refused.jpg")
    assert refused.exit_code == 1 and "or --background COLOUR to flatten it onto a colour" in refused.stderr
    for colour, said in (("#ff000080", "'#ff000080' is not opaque"), ("nocolour", "'nocolour' is not a colour")):
        result = run("decode", tmp_path / "in.nic", "-o", tmp_path / "bad.jpg", "--background", colour)
        assert result.exit_code == 2 and said in result.stderr and not (tmp_path / "bad.jpg").exists()


def test_background_keeps_a_gray_picture_gray_and_leaves_opaque_ones_alone(tmp_path, photo):
    """A gray picture goes onto the colour's gray level (Pillow's own conversion to L), so that
    it stays gray and its profile for gray data still describes it; an image without
    transparency is written as it would be without --background."""
    from PIL import ImageColor

    from nicodec import outputs

    gray = photo[..., 1]
    alpha = np.tile(np.linspace(0, 255, photo.shape[1]).astype(np.uint8), (photo.shape[0], 1))
    image = Image.fromarray(np.dstack([gray, alpha]), "LA")
    image.info["dpi"] = (300, 300)
    image.text = {"Author": "me"}
    flat = outputs.flatten(image, "red")
    level = ImageColor.getcolor("red", "L")
    expected = (gray.astype(np.int64) * alpha + level * (255 - alpha.astype(np.int64)) + 127) // 255
    assert flat.mode == "L" and np.array_equal(np.asarray(flat), expected)
    assert flat.info["dpi"] == (300, 300) and flat.text == {"Author": "me"}
    opaque = Image.fromarray(photo)
    assert outputs.flatten(opaque, "red") is opaque
    image.save(tmp_path / "gray.png")
    assert run("encode", tmp_path / "gray.png").exit_code == 0
    result = run("decode", tmp_path / "gray.nic", "-o", tmp_path / "gray.jpg", "--background", "red")
    assert result.exit_code == 0, result.output
    assert opened(tmp_path / "gray.jpg").mode == "L"
    # A colour picture of equal channels with transparency, flattened: onto white it is still
    # gray, which GIF's palette holds; onto red it is colour, which GIF loses
    rgba = np.dstack([gray, gray, gray, alpha])
    data = nicodec.Codec(providers="cpu").encode(rgba)
    outputs.check_format(data, "GIF", "out.gif", "white")
    with pytest.raises(NicodecError, match="GIF, as Pillow writes it here, does not give back every pixel"):
        outputs.check_format(data, "GIF", "out.gif", "red")
    with pytest.raises(NicodecError, match="transparency, which GIF keeps only"):
        outputs.check_format(data, "GIF", "out.gif")
    Image.fromarray(photo).save(tmp_path / "opaque.png")
    assert run("encode", tmp_path / "opaque.png").exit_code == 0
    assert run("decode", tmp_path / "opaque.nic", "-o", tmp_path / "plain.png").exit_code == 0
    assert run("decode", tmp_path / "opaque.nic", "-o", tmp_path / "flat.png", "--background", "red").exit_code == 0
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "flat.png").read_bytes()


def test_decode_with_the_fp16_synthesis(png, photo, tmp_path):
    assert run("encode", png, "--provider", "cpu").exit_code == 0
    nic = tmp_path / "photo.nic"
    full, half = tmp_path / "full.png", tmp_path / "half.png"
    assert run("decode", nic, "-o", full, "--provider", "cpu").exit_code == 0
    result = run("decode", nic, "-o", half, "--provider", "cpu", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    a, b = np.asarray(Image.open(full)), np.asarray(Image.open(half))
    assert a.shape == b.shape == photo.shape
    assert abs(psnr(a, photo) - psnr(b, photo)) <= 0.01
    bad = run("decode", nic, "-o", tmp_path / "x.png", "--precision", "int4")
    assert bad.exit_code == 2 and not (tmp_path / "x.png").exists()


def test_quality_is_recorded_and_raises_the_rate(png, tmp_path):
    sizes = {}
    for quality in ("10", "37.3", "90"):
        nic = tmp_path / f"q{quality}.nic"
        result = run("encode", png, "-o", nic, "--quality", quality)
        assert result.exit_code == 0, result.output
        assert f"quality {quality}," in result.stdout
        facts = json.loads(run("info", nic, "--json").stdout)
        assert facts["quality"] == float(quality)  # 37.3, not the float32's 37.29999923706055
        sizes[quality] = nic.stat().st_size
    assert sizes["10"] < sizes["37.3"] < sizes["90"]
    assert "quality: 37.3\n" in run("info", tmp_path / "q37.3.nic").stdout


def test_the_default_quality_is_the_models(png, tmp_path, codec):
    result = run("encode", png)
    assert result.exit_code == 0
    assert f"quality {codec.default_quality:g}," in result.stdout
    assert json.loads(run("info", tmp_path / "photo.nic", "--json").stdout)["quality"] == codec.default_quality


@pytest.mark.parametrize("quality", ["0", "0.5", "100.01", "-3", "nan", "inf", "high", ""])
def test_quality_out_of_range_is_a_usage_error(png, tmp_path, quality):
    result = run("encode", png, "--quality", quality)
    assert result.exit_code == 2
    assert "'--quality'" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "photo.nic").exists()


def test_info_names_a_file_from_a_single_rate_model(png, tmp_path):
    import dataclasses

    from nicodec import format as nicformat

    assert run("encode", png).exit_code == 0
    header, sections = nicformat.unpack((tmp_path / "photo.nic").read_bytes())
    (tmp_path / "old.nic").write_bytes(nicformat.pack(dataclasses.replace(header, quality=0.0), sections))
    assert "quality: 0 (single-rate model)\n" in run("info", tmp_path / "old.nic").stdout
    assert json.loads(run("info", tmp_path / "old.nic", "--json").stdout)["quality"] == 0


def test_info_speaks_plainly_and_flags_what_no_model_decodes(png, tmp_path):
    """It printed Python's reprs (False, a dict of sections), gave a 1,048,576-pixel-square header
    0.0 bpp, and a quality of 1.6e-37 as if it were one."""
    import dataclasses

    from nicodec import format as nicformat

    assert run("encode", png).exit_code == 0
    header, sections = nicformat.unpack((tmp_path / "photo.nic").read_bytes())
    said = run("info", tmp_path / "photo.nic").stdout
    assert "grayscale: no\n" in said
    assert f"sections: ZSYM {len(sections[b'ZSYM']):,} bytes, YSYM {len(sections[b'YSYM']):,} bytes\n" in said
    (tmp_path / "odd.nic").write_bytes(nicformat.pack(dataclasses.replace(header, quality=1.6e-37), sections))
    assert "(outside 1 to 100: a variable-rate model refuses it)\n" in run("info", tmp_path / "odd.nic").stdout
    (tmp_path / "huge.nic").write_bytes(
        nicformat.pack(dataclasses.replace(header, width=1 << 20, height=1 << 20), sections))
    shown = json.loads(run("info", tmp_path / "huge.nic", "--json").stdout)
    assert shown["bpp"] == float(f"{8 * shown['bytes'] / 2**40:.6g}") > 0
    plain = json.loads(run("info", tmp_path / "photo.nic", "--json").stdout)  # 6 decimals, as before
    assert plain["bpp"] == round(8 * plain["bytes"] / (header.width * header.height), 6)


def test_info_gives_sizes_as_encode_does(tmp_path):
    from conftest import synthetic_photo

    Image.fromarray(synthetic_photo(256, 384, seed=3)).save(tmp_path / "big.png")
    assert run("encode", tmp_path / "big.png", "--quality", "90").exit_code == 0
    size = (tmp_path / "big.nic").stat().st_size
    assert size >= 1000 and f"bytes: {size:,}\n" in run("info", tmp_path / "big.nic").stdout


def test_encode_refine_makes_another_file_that_decodes(png, photo, tmp_path):
    plain, refined = tmp_path / "plain.nic", tmp_path / "refined.nic"
    assert run("encode", png, "-o", plain, "--provider", "cpu").exit_code == 0
    # 20 steps: fewer can lose to the default encoder's rounding on this image (10 do with
    # nicodec-mshp-vr-4d, vr-5d, vr-5e and vr-5f, 15 do not), and the encoder then keeps the unrefined file
    # (tests/test_refine.py).
    result = run("encode", png, "-o", refined, "--provider", "cpu", "--refine", 20)
    assert result.exit_code == 0, result.output
    assert refined.read_bytes() != plain.read_bytes()
    out = tmp_path / "back.png"
    assert run("decode", refined, "-o", out).exit_code == 0
    assert psnr(np.asarray(Image.open(out)), photo) > 25
    for bad in ("-1", "1001", "two"):
        result = run("encode", png, "-o", tmp_path / "bad.nic", "--refine", bad)
        assert result.exit_code == 2 and not (tmp_path / "bad.nic").exists()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG of that size whose pixel data is cut short: Pillow opens it (the size is in the
    header) and fails only when the pixels are decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x78\x9c\x00\x00")


def test_huge_images_are_refused_from_the_header_with_one_clear_line(tmp_path):
    (tmp_path / "big.png").write_bytes(_png_header_only(12_000, 10_000))  # 120 MP: Pillow would warn
    result = run("encode", tmp_path / "big.png")
    assert result.exit_code == 1 and "more than the limit of 89,478,485" in result.stderr
    assert "warning" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "bigger.png").write_bytes(_png_header_only(15_000, 15_000))  # beyond Pillow's own refusal
    result = run("encode", tmp_path / "bigger.png", "--max-pixels", 300_000_000)
    assert result.exit_code == 1 and "Pillow opens no larger image" in result.stderr
    assert not list(tmp_path.glob("*.nic"))


def test_decoding_beside_the_original_says_it_may_be_the_original(png, tmp_path):
    original = png.read_bytes()
    assert run("encode", png).exit_code == 0
    result = run("decode", tmp_path / "photo.nic")
    assert result.exit_code == 1, result.output
    assert (f"{png} exists; use --force to overwrite it (if it is an original rather than an earlier output, "
            "write elsewhere with -o)") in result.stderr
    result = run("decode", tmp_path / "photo.nic", "-o", f"{tmp_path}/")  # into a folder, under the input's name
    assert result.exit_code == 1 and "if it is an original rather than an earlier output" in result.stderr
    for args in (["decode", tmp_path / "photo.nic", "-o", png], ["encode", png, "-o", png.with_suffix(".nic")]):
        result = run(*args)  # an output named: no word of originals
        assert result.exit_code == 1 and "exists; use --force to overwrite it" in result.stderr, result.output
        assert "original" not in result.stderr
    assert png.read_bytes() == original


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs named pipes")
def test_outputs_that_cannot_be_files_are_refused_before_any_work(png, tmp_path):
    import os

    # A folder output takes the input's name, as cp does (a shell glob may match one file).
    result = run("encode", png, "-o", f"{tmp_path / 'newdir'}/")
    assert result.exit_code == 0 and (tmp_path / "newdir" / "photo.nic").is_file()
    result = run("decode", tmp_path / "newdir" / "photo.nic", "-o", tmp_path / "newdir")
    assert result.exit_code == 0 and (tmp_path / "newdir" / "photo.png").is_file()
    result = run("encode", png, "-o", tmp_path / "newdir")
    assert result.exit_code == 1 and "exists; use --force" in result.stderr
    shutil.rmtree(tmp_path / "newdir")
    result = run("encode", png, "-o", png / "x.nic")  # the "folder" is a file
    assert result.exit_code == 1 and f"{png} is a file, not a folder" in result.stderr
    fifo = tmp_path / "pipe.nic"
    os.mkfifo(fifo)
    for extra in ([], ["--force"]):
        result = run("encode", png, "-o", fifo, *extra)
        assert result.exit_code == 1 and "not a regular file" in result.stderr
    assert fifo.is_fifo()
    result = run("encode", png, "-o", tmp_path / ("y" * 300 + ".nic"))  # longer than a name may be
    assert result.exit_code == 1 and "cannot use the output" in result.stderr
    long_name = tmp_path / ("x" * 240 + ".nic")  # a legal name, with no room for a suffix on the temporary file
    assert run("encode", png, "-o", long_name).exit_code == 0 and long_name.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    result = run("encode", png, "--threads", 100_000)
    assert result.exit_code == 2 and "threads" in result.output


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs named pipes")
def test_an_image_can_come_through_a_pipe_but_a_pipe_in_a_folder_is_skipped(png, tmp_path):
    import os
    import threading

    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(png.read_bytes()), daemon=True)
    writer.start()
    result = run("encode", fifo, "-o", tmp_path / "piped.nic")
    writer.join(timeout=60)
    assert not writer.is_alive(), "the command never read the pipe"
    assert result.exit_code == 0, result.output
    assert run("encode", png, "-o", tmp_path / "direct.nic").exit_code == 0
    assert (tmp_path / "piped.nic").read_bytes() == (tmp_path / "direct.nic").read_bytes()
    # In a folder, a pipe named like an image is not an image file: it would block the batch.
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "waiting.png")
    (folder / "photo.png").write_bytes(png.read_bytes())
    result = run("encode", folder, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "1 file: 1 encoded" in result.stdout


def test_decode_refuses_formats_that_would_lose_part_of_the_image(tmp_path, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert run("encode", tmp_path / "alpha.png").exit_code == 0
    for name in ("a.ppm", "a.pdf", "a.gif", "a.jpg"):
        result = run("decode", tmp_path / "alpha.nic", "-o", tmp_path / name)
        assert result.exit_code == 1 and "transparency" in result.stderr, name
        assert not (tmp_path / name).exists()
    keeping = ["a.tiff", "a.webp"]  # formats that keep every alpha level, as Pillow says when probed
    Image.init()
    if ".qoi" in Image.registered_extensions() and "QOI" in Image.SAVE:
        keeping.append("a.qoi")  # Pillow writes QOI from 11.3 on; 11.0-11.2 only read it
    for name in keeping:
        assert run("decode", tmp_path / "alpha.nic", "-o", tmp_path / name).exit_code == 0, name
        assert opened(tmp_path / name).convert("RGBA").getchannel("A").getextrema() == (128, 128)
    Image.fromarray(photo).resize((300, 200)).save(tmp_path / "wide.png")
    assert run("encode", tmp_path / "wide.png").exit_code == 0
    result = run("decode", tmp_path / "wide.nic", "-o", tmp_path / "wide.ico")
    assert result.exit_code == 1 and "256x256" in result.stderr
    result = run("decode", tmp_path / "wide.nic", "-o", tmp_path / "wide.icns")
    assert result.exit_code == 1 and "square" in result.stderr
    Image.fromarray(photo).resize((200, 100)).save(tmp_path / "small.png")
    assert run("encode", tmp_path / "small.png").exit_code == 0
    assert run("decode", tmp_path / "small.nic", "-o", tmp_path / "small.ico").exit_code == 0
    assert opened(tmp_path / "small.ico").size == (200, 100)  # not Pillow's default 64x32
    result = run("decode", tmp_path / "wide.nic", "-o", tmp_path / "wide.blp")  # Pillow's BLP takes palettes only
    assert result.exit_code == 1 and "internal error" not in result.stderr and "BLP" in result.stderr


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "GIF", "TGA", "SGI", "PCX", "AVIF"])
def test_a_side_longer_than_the_output_format_holds_is_refused_from_the_header(codec, photo, fmt):
    """TGA, SGI and PCX (and GIF) keep their sides in 16-bit fields: a 66,000-pixel-wide picture
    failed as an "internal error" (OverflowError, struct.error) after the whole decode."""
    import dataclasses
    from nicodec import format as nicformat
    from nicodec import outputs

    header, sections = nicformat.unpack(codec.encode(photo[:8, :8, 0]))  # gray: GIF keeps it (refuses colour)
    limit = outputs.MAX_SIDES[fmt]
    for width, height in ((limit + 1, 1), (1, limit + 1)):
        data = nicformat.pack(dataclasses.replace(header, width=width, height=height), sections)
        with pytest.raises(nicodec.UnsupportedImageError, match=f"{fmt} holds images of at most {limit:,} pixels a side"):
            outputs.check_format(data, fmt, "out")
    Image.init()
    if fmt in Image.SAVE:  # and Pillow writes, and reads back, the longest side the table gives
        written = io.BytesIO()
        outputs.save(Image.new("L", (limit, 1)), written, fmt)
        with Image.open(io.BytesIO(written.getvalue())) as back:
            assert back.size == (limit, 1)


def test_what_a_writer_cannot_pack_is_an_error_naming_the_format(tmp_path):
    from nicodec import outputs

    with pytest.raises(nicodec.UnsupportedImageError, match="Pillow cannot write this image as TGA"):
        outputs.save(Image.new("RGB", (70_000, 1)), io.BytesIO(), "TGA")  # OverflowError inside Pillow


def test_decode_writes_webp_losslessly_jpeg_at_quality_95_and_refuses_gif(png, tmp_path, codec):
    """Pillow's defaults would write WebP lossy (quality 80), JPEG at quality 75 with 4:2:0 chroma,
    and GIF cut to 256 colours, all without a word."""
    assert run("encode", png, "-o", tmp_path / "a.nic").exit_code == 0
    assert run("decode", tmp_path / "a.nic", "-o", tmp_path / "a.png").exit_code == 0
    decoded = opened(tmp_path / "a.png")
    assert run("decode", tmp_path / "a.nic", "-o", tmp_path / "a.webp").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.webp").convert("RGB")), np.asarray(decoded))
    assert run("decode", tmp_path / "a.nic", "-o", tmp_path / "a.jpg").exit_code == 0
    expected = io.BytesIO()
    decoded.save(expected, format="JPEG", quality=95, subsampling=0)
    assert (tmp_path / "a.jpg").read_bytes() == expected.getvalue()
    (tmp_path / "g.nic").write_bytes(codec.encode(np.full((16, 16), 100, np.uint8)))  # grayscale
    gray_alpha = np.dstack([np.full((16, 16), 100, np.uint8), np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))])
    (tmp_path / "la.nic").write_bytes(codec.encode(gray_alpha))  # QOI keeps alpha, but Pillow writes no LA as QOI
    for nic, name, said in (("a.nic", "a.gif", "GIF, as Pillow writes it here, does not give back every pixel"),
                            ("a.nic", "a.pdf", "Pillow cannot read PDF back here"),
                            ("a.nic", "a.h5", "Pillow cannot write HDF5 here"),
                            ("a.nic", "a.xbm", "Pillow writes XBM for black and white (1-bit) images, not a mode RGB one"),
                            ("g.nic", "g.msp", "Pillow writes MSP for black and white (1-bit) images, not a mode L one"),
                            ("g.nic", "g.qoi", "Pillow cannot write a mode L image as QOI here"),
                            ("la.nic", "la.qoi", "Pillow cannot write a mode LA image as QOI here")):
        result = run("decode", tmp_path / nic, "-o", tmp_path / name)
        assert result.exit_code == 1 and said in result.stderr, (name, result.stderr)
        assert not (tmp_path / name).exists()


def test_verify_checks_the_alpha_section_and_reports_each_path(tmp_path, photo, codec):
    import zlib

    from nicodec import format as nicformat

    rgba = np.dstack([photo, np.full(photo.shape[:2], 100, np.uint8)])
    good = codec.encode(rgba)
    header, sections = nicformat.unpack(good)
    short = {**{t: p for t, p in sections.items() if t not in (b"ALPH", b"ALPL")}, b"ALPH": zlib.compress(b"\x00" * 100)}
    (tmp_path / "good.nic").write_bytes(good)
    (tmp_path / "short.nic").write_bytes(nicformat.pack(header, short))
    result = run("verify", tmp_path / "good.nic", tmp_path / "short.nic", tmp_path / "missing.nic")
    assert result.exit_code == 1
    assert "ok " in result.stdout and "3 files: 1 ok, 2 failed" in result.stdout
    assert "FAILED" in result.stderr and "alpha section" in result.stderr and "missing.nic" in result.stderr
    assert run("decode", tmp_path / "short.nic").exit_code == 1  # what verify now predicts


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_terminal_sees_a_progress_bar_while_one_file_is_coded(png, tmp_path):
    """Work on one file (a large image, a rate search) shows what it is doing and how far it is,
    tile by tile."""
    import os
    import pty

    def on_terminal(*args) -> str:
        # The CLI with a terminal on stdin, stdout and stderr; started by subprocess, not
        # pty.fork(), which forks this process and its onnxruntime threads (Python 3.12 warns:
        # the child may deadlock).
        leader, follower = pty.openpty()
        try:
            child = subprocess.Popen([sys.executable, "-m", "nicodec", *map(str, args)], stdin=follower,
                                     stdout=follower, stderr=follower)
        finally:
            os.close(follower)
        chunks = []
        try:
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child has exited, and the terminal's other end is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(leader)
        assert child.wait(timeout=300) == 0
        return b"".join(chunks).decode(errors="replace")

    text = on_terminal("encode", png, "-o", tmp_path / "a.nic", "--provider", "cpu", "--target-bpp", "1")
    assert "searching a quality for photo.png" in text and "encode 1" in text and "encodes" in text
    odd = tmp_path / "x[red] [b].png"  # a name that is rich markup is shown as it is
    odd.write_bytes(png.read_bytes())
    text = on_terminal("encode", odd, "-o", tmp_path / "b.nic", "--provider", "cpu", "--tile", "64")
    assert "encoding x[red] [b].png" in text and "%" in text  # window by window: the bar moves
    text = on_terminal("decode", tmp_path / "b.nic", "-o", tmp_path / "b.png", "--provider", "cpu", "--tile", "64")
    assert "decoding b.nic" in text and "%" in text
    text = on_terminal("decode", tmp_path / "a.nic", "-o", tmp_path / "a.png", "--provider", "cpu")
    assert "decoding" in text and "a.png" in text


def test_settings_that_fool_rich_neither_hide_messages_nor_draw_a_bar_into_a_log(png, tmp_path):
    """COLUMNS=0 made Rich's consoles 0 wide, and nothing was printed, errors and reports
    included; FORCE_COLOR and TTY_COMPATIBLE made Rich call a log file a terminal, and the
    progress bar was drawn into it (and a stderr that could not be written lost the batch)."""
    import os
    import subprocess

    def nicodec(*args, **env):
        return subprocess.run([sys.executable, "-m", "nicodec", *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, **env})

    gone = nicodec("encode", tmp_path / "missing.png", COLUMNS="0", LINES="0")
    assert gone.returncode == 1 and gone.stderr.startswith("error: ") and "missing.png" in gone.stderr
    made = nicodec("encode", png, "-o", tmp_path / "a.nic", COLUMNS="0")
    assert made.returncode == 0 and "a.nic: " in made.stdout and " bpp, " in made.stdout, made
    shown = nicodec("info", "--json", tmp_path / "a.nic", COLUMNS="0")
    assert shown.returncode == 0 and json.loads(shown.stdout)["width"] > 0
    helped = nicodec("encode", "--help", COLUMNS="0")  # Typer's own console
    assert helped.returncode == 0 and "Usage: nicodec encode" in helped.stdout and "--quality" in helped.stdout
    for env in ({"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}):
        coded = nicodec("encode", png, "-o", tmp_path / "b.nic", "--force", "--tile", "64", **env)
        assert coded.returncode == 0 and coded.stderr == "", (env, coded.stderr)  # no bar, no escape codes
        folder = nicodec("encode", tmp_path, "-o", tmp_path / "out", "--force", **env)
        assert "\x1b" not in folder.stderr and "files/s" not in folder.stderr, (env, folder.stderr)


def test_standard_input_and_output(png, tmp_path):
    """``-`` as INPUT reads standard input and ``-o -`` writes standard output, for pipelines;
    the report then goes to stderr, so stdout holds only the file."""
    assert run("encode", png, "-o", tmp_path / "direct.nic").exit_code == 0
    direct = (tmp_path / "direct.nic").read_bytes()
    result = runner.invoke(app, ["encode", "-", "-o", "-"], input=png.read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == direct
    assert result.stderr.startswith("<stdin> -> <stdout>: ")

    result = runner.invoke(app, ["decode", "-", "-o", "-"], input=direct)
    assert result.exit_code == 0, result.output
    assert run("decode", tmp_path / "direct.nic", "-o", tmp_path / "direct.png").exit_code == 0
    assert result.stdout_bytes == (tmp_path / "direct.png").read_bytes()
    assert Image.open(io.BytesIO(result.stdout_bytes)).format == "PNG"

    result = runner.invoke(app, ["encode", "-", "-o", tmp_path / "piped.nic"], input=png.read_bytes())
    assert result.exit_code == 0 and (tmp_path / "piped.nic").read_bytes() == direct
    result = runner.invoke(app, ["info", "-", "--json"], input=direct)
    assert result.exit_code == 0 and json.loads(result.stdout)["file"] == "<stdin>"
    result = runner.invoke(app, ["verify", "-"], input=direct)
    assert result.exit_code == 0 and "ok <stdin>" in result.stdout


def test_standard_input_mistakes_are_named_and_write_nothing(png, tmp_path):
    result = runner.invoke(app, ["encode", "-"], input=png.read_bytes())  # arguments that cannot go together: usage
    said = " ".join(result.stderr.replace("│", " ").split())  # Click's box here; main() makes it one line
    assert result.exit_code == 2 and "give -o FILE (or -o - for standard output)" in said
    for command, out in (("encode", "out.nic"), ("decode", "out.png")):
        result = runner.invoke(app, [command, "-", "-o", str(tmp_path / out)], input=b"")
        assert result.exit_code == 1 and "standard input is empty" in result.stderr
        assert "<stdin>: standard input" not in result.stderr  # named once
    result = runner.invoke(app, ["encode", "-", "-o", "-"], input=b"not an image")
    assert result.exit_code == 1 and "not in a format Pillow can read" in result.stderr
    assert result.stdout_bytes == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_arguments_that_cannot_go_together_are_a_usage_error_of_one_line(png, tmp_path):
    """Exit code 1 (a file's error) made a wrapper that retries failed files retry these for ever."""
    for args, said in ((["encode", png, png, "-o", "-"], ("Invalid value for '-o': -o - writes one file to standard "
                                                           "output; several inputs need an output folder")),
                       (["encode", png, "-"], "Invalid value for 'INPUT...': - (standard input) is an input on its own"),
                       (["decode", "-"], "Invalid value for '-o': with standard input as INPUT, give -o FILE"),
                       (["verify", "-", "-"], "Invalid value for 'INPUT...': - (standard input) can be read once"),
                       (["info", "-", "-"], "Invalid value for 'INPUT...': - (standard input) can be read once")):
        done = subprocess.run([sys.executable, "-m", "nicodec", *map(str, args)], capture_output=True, text=True,
                              timeout=120, check=False, stdin=subprocess.DEVNULL)
        assert done.returncode == 2 and done.stdout == "" and done.stderr.startswith(f"error: {said}"), done.stderr
        assert done.stderr.endswith(f"; see nicodec {args[0]} --help\n") and done.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_a_closed_standard_output_is_one_error_line(png, monkeypatch):
    from nicodec import stdio

    class Closed(io.RawIOBase):
        broken = True

        def writable(self):
            return True

        def write(self, data):
            if self.broken:
                raise BrokenPipeError(32, "Broken pipe")
            return len(data)

    closed = Closed()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(closed)))
    with pytest.raises(NicodecError, match="stopped before the end"):
        stdio.write_stdout(b"x" * 100_000)
    closed.broken = False  # what it holds is flushed as the wrapper goes (Python 3.14 warns of a failure)


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pseudo-terminal")
def test_binary_output_to_a_terminal_is_refused_before_any_work(png, tmp_path):
    pty = pytest.importorskip("pty")
    import os

    leader, follower = pty.openpty()
    try:
        process = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(png), "-o", "-"], stdout=follower,
                                 stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert process.returncode == 1
    assert "standard output is a terminal" in process.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pseudo-terminal")
@pytest.mark.parametrize("setting", ["TERM=dumb", "TTY_COMPATIBLE=0", "TTY_INTERACTIVE=0"])
def test_a_terminal_rich_does_not_redraw_gets_no_progress_bar(png, setting):
    """An Emacs shell (TERM=dumb), TTY_COMPATIBLE=0, TTY_INTERACTIVE=0: Rich does not redraw
    there, and the bar it would have drawn was a blank line before every report. (Rich reads the
    last two only from 14.0: with an older one, nicodec drew its bar; IPython's `!` runs a
    command on a terminal whose redraws pile up in a notebook's output, where they are the way
    to turn it off.)"""
    pty = pytest.importorskip("pty")
    import os

    name, value = setting.split("=")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(png)], stdout=subprocess.PIPE,
                              stderr=follower, env={**os.environ, name: value}, timeout=120, check=False)
    finally:
        os.close(follower)
    try:
        os.set_blocking(leader, False)
        try:
            shown = os.read(leader, 10_000)
        except (BlockingIOError, OSError):  # nothing written (EIO: the terminal's other end is closed)
            shown = b""
    finally:
        os.close(leader)
    assert done.returncode == 0 and b"photo.png -> " in done.stdout
    assert shown == b""


def test_in_a_notebook_the_command_line_writes_to_its_streams_not_html(png, tmp_path):
    """nicodec.cli.main() run in a Jupyter kernel: Rich took the kernel for a notebook to render
    in, and the report and every message, errors too, became HTML displays that neither stdout
    nor stderr held (contextlib.redirect_stderr caught nothing). Rich's test for a notebook is
    a get_ipython() that returns a ZMQInteractiveShell; without IPython here, a display would fail."""
    import ast

    code = (
        "import builtins, contextlib, io, sys\n"
        "class ZMQInteractiveShell:\n"
        "    pass\n"
        "builtins.get_ipython = ZMQInteractiveShell\n"
        "from nicodec.cli import main\n"
        "said = []\n"
        "for args in ([sys.argv[1], '-o', sys.argv[2]], [sys.argv[3]]):\n"
        "    out, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            main(['encode', *args])\n"
        "        except SystemExit as ended:\n"
        "            said.append((ended.code, out.getvalue(), err.getvalue()))\n"
        "print(repr(said))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(png), str(tmp_path / "x.nic"), str(tmp_path / "nothere.png")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (coded, report, _), (failed, nothing, error) = ast.literal_eval(done.stdout)
    assert coded == 0 and "photo.png -> " in report and (tmp_path / "x.nic").is_file()
    assert failed == 1 and nothing == "" and error.startswith("error: ") and "nothere.png" in error


def _nicodec(*args, stdout=subprocess.PIPE):
    return subprocess.run([sys.executable, "-m", "nicodec", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=300)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_reader_that_stops_early_is_an_error_not_a_short_file(tmp_path):
    import os

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    assert run("encode", tmp_path / "noise.png").exit_code == 0
    read_end, write_end = os.pipe()
    process = subprocess.Popen([sys.executable, "-m", "nicodec", "decode", str(tmp_path / "noise.nic"), "-o", "-"],
                               stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert len(os.read(read_end, 10)) > 0  # the PNG (about 440 kB) has begun; stop reading
    os.close(read_end)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and "stopped before the end" in stderr and "Traceback" not in stderr


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_a_report_that_cannot_be_written_is_one_error_line(png, tmp_path):
    assert run("encode", png).exit_code == 0
    with open("/dev/full", "w") as full:
        result = _nicodec("info", tmp_path / "photo.nic", stdout=full)
    assert result.returncode == 1 and "cannot write the report" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_a_standard_error_that_cannot_be_written_does_not_stop_the_work(png, tmp_path):
    """`decode x.nic -o x.bmp 2>/dev/full`: the warning that BMP keeps no colour profile could
    not be written, and that write's error ended the decode with no image (exit code 1). A
    usage error is still exit code 2."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(png).save(png, icc_profile=icc)  # BMP keeps no profile: a warning
    assert run("encode", png).exit_code == 0
    assert "BMP" in run("decode", tmp_path / "photo.nic", "-o", tmp_path / "shown.bmp").stderr
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "nicodec", "decode", str(tmp_path / "photo.nic"), "-o",
                               str(tmp_path / "photo.bmp")], stdout=subprocess.PIPE, stderr=full, text=True,
                              timeout=300, check=False)
        usage = subprocess.run([sys.executable, "-m", "nicodec", "decode", "--no-such-option"],
                               stdout=subprocess.PIPE, stderr=full, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "photo.nic -> " in done.stdout and "photo.bmp: " in done.stdout, done.stdout
    with Image.open(tmp_path / "photo.bmp") as image:
        assert image.size == opened(png).size
    assert usage.returncode == 2


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pseudo-terminal")
def test_a_terminal_closed_under_a_batch_does_not_turn_it_into_an_error(tmp_path):
    """A batch run under setsid or nohup whose terminal closes: every file was written, but the
    progress bar's last write to the gone terminal (EIO) made it an internal error, exit code 1,
    and the summary on standard output was lost."""
    pty = pytest.importorskip("pty")
    import os

    (tmp_path / "src").mkdir()
    for i in range(3):
        Image.fromarray(synthetic_photo_small()).save(tmp_path / "src" / f"{i}.png")
    script = (
        "import sys\n"
        "from nicodec.codec import Codec\n"
        "real = Codec.encode\n"
        "def encode(self, image, **options):\n"
        "    sys.stdin.readline()  # until the terminal is gone\n"
        "    return real(self, image, **options)\n"
        "Codec.encode = encode\n"
        "sys.argv = ['nicodec', 'encode', sys.argv[1], '-o', sys.argv[2], '--jobs', '1']\n"
        "from nicodec.launch import nicodec\n"
        "nicodec()\n"
    )
    import select

    leader, follower = pty.openpty()
    try:
        # A terminal Rich redraws (the test run's may be an Emacs shell's, TERM=dumb: no bar).
        process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "src"), str(tmp_path / "out")],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=follower, text=True,
                                   env={**os.environ, "TERM": "xterm"})
        os.close(follower)
        assert select.select([leader], [], [], 120)[0] and os.read(leader, 100)  # the bar has begun
    finally:
        os.close(leader)
    try:
        out, _ = process.communicate("\n" * 3, timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0 and out.startswith("3 files: 3 encoded, "), out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.nic", "1.nic", "2.nic"]


def test_a_file_named_dash_given_as_a_path_is_that_file_not_standard_input(tmp_path, photo):
    """Paths make ./- into -: `nicodec encode ./*` in a folder holding a file named - refused
    the batch (- among several inputs), and `encode ./- -o one.nic < other.png` coded the other
    image."""
    Image.fromarray(photo).save(tmp_path / "-", format="PNG")
    Image.fromarray(photo[::2, ::2]).save(tmp_path / "other.png")

    def nicodec(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "nicodec", *args], cwd=tmp_path, stdin=stdin,
                              capture_output=True, timeout=300, check=False)

    with open(tmp_path / "other.png", "rb") as other:
        one = nicodec("encode", "./-", "-o", "one.nic", stdin=other)
    assert one.returncode == 0, one.stderr
    assert json.loads(run("info", "--json", tmp_path / "one.nic").stdout)["width"] == photo.shape[1]
    both = nicodec("encode", "./-", "other.png", "-o", "out")
    assert both.returncode == 0, both.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["-.nic", "other.nic"]
    (tmp_path / "-").unlink()
    into = nicodec("encode", "other.png", "-o", "./-/")  # a folder named -, as the final / says
    assert into.returncode == 0 and b"warning" not in into.stderr, into.stderr
    assert [p.name for p in (tmp_path / "-").iterdir()] == ["other.nic"]
    gone = tmp_path / "gone"
    gone.mkdir()
    # (nicodec imported first: Rich 10.11, the oldest Typer 0.16 takes, reads the current folder as it loads.)
    script = f"import os; from nicodec.cli import main; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); main()"
    with open(tmp_path / "other.png", "rb") as other:
        lost = subprocess.run([sys.executable, "-c", script, "encode", "./-", "-o", str(tmp_path / "lost.nic")],
                              stdin=other, capture_output=True, text=True, timeout=300, check=False)
    assert lost.returncode == 1 and lost.stderr.startswith("error: ./- names a file in the current folder, which is gone")
    assert not (tmp_path / "lost.nic").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="shell redirection")
def test_standard_output_cannot_be_the_input(png, tmp_path):
    assert run("encode", png).exit_code == 0
    nic = tmp_path / "photo.nic"
    before = nic.read_bytes()
    with open(nic, "ab") as same:
        result = _nicodec("decode", nic, "-o", "-", stdout=same)
    assert result.returncode == 1 and "standard output is the input file" in result.stderr
    assert nic.read_bytes() == before


@pytest.mark.skipif(sys.platform == "win32", reason="shell redirection")
def test_standard_output_cannot_be_the_file_standard_input_reads(png, tmp_path):
    """``encode - -o - < photo.png 1<>photo.png`` wrote the .nic file over the photo, and
    ``decode - -o - < x.nic >> x.nic`` left x.nic undecodable: the check of standard output
    against the input left ``-`` out. A pipe in and out still works."""
    assert run("encode", png).exit_code == 0
    nic = tmp_path / "photo.nic"
    before = {path: path.read_bytes() for path in (png, nic)}
    for command, source, mode in (("encode", png, "r+b"), ("decode", nic, "ab")):
        with open(source, "rb") as stdin, open(source, mode) as same:
            result = subprocess.run([sys.executable, "-m", "nicodec", command, "-", "-o", "-"], stdin=stdin,
                                    stdout=same, stderr=subprocess.PIPE, text=True, timeout=300, check=False)
        assert result.returncode == 1, result.stderr
        assert result.stderr == "error: standard output is the file standard input reads; choose another output\n"
    assert all(path.read_bytes() == data for path, data in before.items())
    with open(nic, "rb") as stdin:
        piped = subprocess.run([sys.executable, "-m", "nicodec", "decode", "-", "-o", "-"], stdin=stdin,
                               capture_output=True, timeout=300, check=False)
    assert piped.returncode == 0 and piped.stdout.startswith(b"\x89PNG"), piped.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="shell redirection")
def test_the_output_cannot_be_the_file_standard_input_reads(png, tmp_path):
    """encode - -o photo.png --force < photo.png replaced the photo with its own .nic file; with
    the photo named as INPUT, that is refused."""
    assert run("encode", png).exit_code == 0
    disguised = tmp_path / "nic.png"  # a .nic file by another name: decode writes no .nic
    disguised.write_bytes((tmp_path / "photo.nic").read_bytes())
    before = {path: path.read_bytes() for path in (png, disguised)}
    for command, source, output in (("encode", png, png), ("decode", disguised, disguised)):
        with open(source, "rb") as stdin:
            result = subprocess.run([sys.executable, "-m", "nicodec", command, "-", "-o", str(output), "--force"],
                                    stdin=stdin, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"error: the output {output} is the input, read from standard input; choose another name\n"
    assert all(path.read_bytes() == data for path, data in before.items())
    with open(png, "rb") as stdin:  # another output: as before
        assert subprocess.run([sys.executable, "-m", "nicodec", "encode", "-", "-o", str(tmp_path / "other.nic")],
                              stdin=stdin, capture_output=True, timeout=300).returncode == 0


@pytest.mark.skipif(not __import__("os").path.isdir("/dev/fd"), reason="needs /dev/fd")
@pytest.mark.parametrize("several", [False, True])
def test_an_input_from_a_process_substitution_needs_an_output_named(png, tmp_path, several):
    """encode <(cat photo.png) wrote beside /dev/fd/63: as root, the folder passed the check and
    the write failed after the whole encode, saying /dev/fd did not exist."""
    import os

    read_end, write_end = os.pipe()
    buffer = io.BytesIO()
    Image.open(png).crop((0, 0, 64, 48)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 60_000  # all of it in the pipe's buffer
    os.write(write_end, buffer.getvalue())
    os.close(write_end)
    try:
        name = f"/dev/fd/{read_end}"
        result = subprocess.run([sys.executable, "-m", "nicodec", "encode", name, *([name] if several else [])],
                                pass_fds=(read_end,), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        os.close(read_end)
    assert result.returncode == 1
    assert result.stderr == (f"error: {name} names an open file descriptor or a device (a process substitution, "
                             f"<(...), or /dev/stdin), in no folder to write an output beside; give -o "
                             f"{'DIR' if several else 'FILE'}\n")


@pytest.mark.skipif(not __import__("os").path.exists("/dev/stdout"), reason="needs /dev/stdin and /dev/stdout")
def test_dev_stdin_and_dev_stdout_are_no_folder_to_write_in(png, tmp_path):
    """As root, encode /dev/stdin < photo.png wrote /dev/stdin.nic, and -o /dev/stdout --force
    replaced the link /dev/stdout with a file."""
    import os

    before = sorted(os.listdir("/dev"))
    with open(png, "rb") as stdin:
        beside = subprocess.run([sys.executable, "-m", "nicodec", "encode", "/dev/stdin"], stdin=stdin,
                                capture_output=True, text=True, timeout=300)
    assert beside.returncode == 1 and "/dev/stdin names an open file descriptor or a device" in beside.stderr
    # Standard output a regular file, as > out.png makes it (a pipe was refused already, as no regular file).
    for output, folder in (("/dev/stdout", "/dev"), ("/dev/fd/1", "/dev/fd"), ("/dev/", "/dev")):
        with open(tmp_path / "redirected", "wb") as stdout:
            result = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(png), "-o", output, "--force"],
                                    stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
        target = "/dev/photo.nic" if output == "/dev/" else output
        assert result.returncode == 1 and (tmp_path / "redirected").read_bytes() == b""
        assert result.stderr == (f"error: the output {target} lies in {folder}, a folder of devices or open file "
                                 "descriptors, not of files to write; -o - writes to standard output\n")
    nic = tmp_path / "photo.nic"
    assert run("encode", png, "-o", nic).exit_code == 0
    with open(tmp_path / "redirected", "wb") as stdout:  # not "cannot write images with the extension ''"
        result = subprocess.run([sys.executable, "-m", "nicodec", "decode", str(nic), "-o", "/dev/stdout"],
                                stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 1 and "-o - writes to standard output" in result.stderr
    # A batch's output folder (-o /dev/ wrote files into /dev).
    second = tmp_path / "second.png"
    second.write_bytes(png.read_bytes())
    for output in ("/dev/", "/dev/fd/"):
        result = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(png), str(second), "-o", output],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 1
        assert result.stderr == (f"error: the output folder {output.rstrip('/')} holds devices or open file "
                                 "descriptors, not files to write\n")
    assert sorted(os.listdir("/dev")) == before and os.path.islink("/dev/stdout")


@pytest.mark.skipif(sys.platform == "win32", reason="a closed descriptor")
def test_a_closed_standard_input_is_named_so(png, tmp_path):
    """`encode - -o x.nic <&-` said that nothing is piped in, as for a terminal."""
    import os

    assert run("encode", png).exit_code == 0
    for args, what in ((["encode", "-", "-o", tmp_path / "x.nic"], "an image"),
                       (["decode", "-", "-o", tmp_path / "x.png"], "a .nic file")):
        done = subprocess.run([sys.executable, "-m", "nicodec", *map(str, args)], capture_output=True, text=True,
                              timeout=120, check=False, preexec_fn=lambda: os.close(0))
        assert done.returncode == 1
        assert done.stderr == f"error: '-' reads {what} from standard input, which is closed\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.nic", "photo.png"]


def test_standard_input_is_read_once_and_in_pieces(png, tmp_path, monkeypatch):
    import nicodec.files as files

    assert run("encode", png).exit_code == 0
    data = (tmp_path / "photo.nic").read_bytes()
    for command in ("verify", "info"):
        result = runner.invoke(app, [command, "-", "-"], input=data)
        assert result.exit_code == 2 and "can be read once" in result.stderr
    assert files.read_stream(io.BytesIO(b"x" * (3 << 20)), "it") == b"x" * (3 << 20)  # more than one piece
    monkeypatch.setattr(files, "MAX_STREAM_BYTES", len(data) - 1)
    result = runner.invoke(app, ["info", "-"], input=data)
    assert result.exit_code == 1 and f"standard input holds more than {len(data) - 1:,} bytes" in result.stderr


def test_an_image_extension_on_an_encode_output_is_warned_about(png, tmp_path):
    result = run("encode", png, "-o", tmp_path / "photo.jpg")
    assert result.exit_code == 0 and "photo.jpg will hold a .nic file" in result.stderr


def test_an_output_without_extension_is_warned_to_be_a_file_not_a_folder(png, tmp_path):
    """`nicodec encode *.png -o archive` with a glob that matched one file."""
    result = run("encode", png, "-o", tmp_path / "archive")
    assert result.exit_code == 0 and "archive will be a .nic file, not a folder" in result.stderr
    assert (tmp_path / "archive").read_bytes()[:4] == b"\x89NIC"
    result = run("encode", png, "-o", f"{tmp_path / 'folder'}/")
    assert result.exit_code == 0 and "warning" not in result.stderr and (tmp_path / "folder" / "photo.nic").is_file()


def test_an_empty_output_name_is_refused(png, tmp_path):
    for inputs in ([png], [png, png.parent / "missing.png"], [png.parent]):
        result = run("encode", *inputs, "-o", "")
        assert result.exit_code == 1 and "the output name is empty" in result.stderr
    assert not list(tmp_path.rglob("*.nic"))


def test_an_empty_argument_is_refused_not_read_as_the_current_folder(png, tmp_path):
    """``nicodec encode "$f"`` with ``$f`` unset: the path "" would be ".", and every image under
    the current folder would be coded; any empty argument is a usage error before any work."""
    (tmp_path / "second.png").write_bytes(png.read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (["encode", ""], ["decode", "", "-o", "out"], ["verify", ""], ["encode", str(png), "--model", ""]):
        result = subprocess.run([sys.executable, "-m", "nicodec", *args], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 2, (args, result.stderr)
        number = args.index("") + 1
        # An option's value is named as such, and the command's help is pointed to.
        said = f"the value of --model (argument {number}) is empty" if "--model" in args else f"argument {number} is empty"
        assert f"error: {said} (a shell variable that was not set?); see nicodec {args[0]} --help" in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    # Written as --name= with the variable unset: --model= read the current folder as the model,
    # and -o= (or -fo=) wrote a file named "=".
    for args in (["encode", str(png), "--output="], ["decode", "x.nic", "--model="], ["encode", str(png), "--model="],
                 ["encode", str(png), "-o="], ["encode", str(png), "-fo="]):
        result = subprocess.run([sys.executable, "-m", "nicodec", *args], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 2, (args, result.stderr)
        assert (f"argument 3 ({args[2]}) has an empty value" if args[2].startswith("--") else
                f"argument 3 ({args[2]}) gives -o the value '='") in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("args", [["-o", "-f"], ["--output", "--force"], ["-fo", "--quality"], ["-o", "--strip", "-f"],
                                  ["-o", "--help"], ["-o", "-h"]])
def test_an_output_named_like_an_option_is_refused(tmp_path, png, args):
    """``-o $OUT -f`` with ``$OUT`` unset wrote a file called ``-f``, unforced; ./-f names one.
    ``-o --help`` was taken for a request for help, so not checked, and Click wrote a file
    called ``--help``."""
    result = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(png), *args], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and os.listdir(tmp_path) == [png.name]  # nothing written
    assert f"is the value of {args[0] if args[0] != '-fo' else '-o'}, and it is an option" in result.stderr
    assert f"or write ./{args[1]} for a file of that name" in result.stderr
    written = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(png), "-o", "./-f"], cwd=tmp_path,
                             capture_output=True, text=True, check=False)
    assert written.returncode == 0 and (tmp_path / "-f").is_file()


@pytest.mark.parametrize("command", [[], ["encode"], ["decode"], ["verify"], ["info"]])
def test_dash_h_is_help(command):
    """``-h`` is the short form of ``--help``, as in most command lines (it was "No such option")."""
    from nicodec.arguments import asks_for_help

    short, long = (runner.invoke(app, [*command, flag], env={"COLUMNS": "200"}) for flag in ("-h", "--help"))
    assert short.exit_code == long.exit_code == 0 and short.output == long.output
    assert "Usage: " in short.output and "--help" in short.output
    assert asks_for_help([*command, "a.nic", "-h"]) and not asks_for_help([*command, "-o", "-h"])
    assert not asks_for_help([*command, "--", "-h"]) and not asks_for_help([*command, "-fo", "--help"])
    assert asks_for_help([*command, "-fh"]) and asks_for_help([*command, "-hf"]) and not asks_for_help([*command, "-fo"])


def test_an_options_own_value_that_ends_in_an_equals_sign_is_not_anempty_value():
    """-o --x= names an output "--x=": the check for --name= refused it as an empty value."""
    from nicodec.arguments import empty_value

    assert empty_value(["encode", "a.png", "-o", "--x=", "-f"]) is None
    assert empty_value(["encode", "a.png", "--model", "--m=", "--quality="])[0] == 5
    assert empty_value(["encode", "--", "--x="]) is None and empty_value(["encode", "-o", "--", "--x="])[0] == 4
    # Clusters of short options, as Click reads them: -fo takes the next argument, -fox.nic the rest.
    assert empty_value(["encode", "a.png", "-fo", "--x="]) is None
    assert empty_value(["encode", "a.png", "-fo", "--", "--model="])[0] == 5
    assert empty_value(["encode", "a.png", "-fox.nic", "--model="])[0] == 4
    assert empty_value(["encode", "a.png", "-fo="]) == (
        3, "argument 3 (-fo=) gives -o the value '='; a short option takes its value without = (-o VALUE)")
    assert empty_value(["encode", "a.png", "-o=x.nic"]) == (
        3, "argument 3 (-o=x.nic) gives -o the value '=x.nic'; a short option takes its value without = (-o x.nic)")
    # Letters a command lacks, and a command without -o, are Click's to name; --help is shown.
    assert empty_value(["encode", "a.png", "-xo=x.nic"]) is None and empty_value(["info", "-o=x", "a.nic"]) is None
    assert empty_value(["encode", "a.png", "-o=x", "--help"]) is None
    assert empty_value(["verify", "--model=", "a.nic"])[0] == 2


def test_the_options_that_take_a_value_are_the_commands_own():
    """The empty-value check skips the values of these options: it must know each of them."""
    import typer.main

    from nicodec.arguments import VALUE_OPTIONS
    from nicodec.cli import app

    from nicodec.arguments import SHORT_OPTIONS

    group = typer.main.get_command(app)  # Click's classes, or Typer's own copy of them
    taking = {name for command in group.commands.values() for param in command.params
              if param.param_type_name == "option" and not param.is_flag and not param.count for name in param.opts}
    assert taking == VALUE_OPTIONS
    short = {name: tuple(sorted(opt for param in command.params for opt in param.opts + param.secondary_opts
                                if param.param_type_name == "option" and len(opt) == 2))
             for name, command in group.commands.items()}
    assert {name: opts for name, opts in short.items() if opts} == SHORT_OPTIONS


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_an_endless_pipe_that_is_no_image_or_nic_file_is_refused_from_its_first_bytes(command, photo, tmp_path):
    """A pipe or device (/dev/zero) holding no image was read up to the 1 GiB cap, in memory,
    before it was refused; its first 64 KiB now decide. A TGA, which has no magic bytes, still
    comes through a pipe."""
    import os
    import threading

    fifo = tmp_path / ("zeros.png" if command == "encode" else "zeros.nic")
    os.mkfifo(fifo)
    sent = [0]

    def endless():
        try:
            with open(fifo, "wb") as f:
                while sent[0] < 256 << 20:  # far beyond the first bytes, bounded if the check fails
                    f.write(bytes(1 << 16))
                    sent[0] += 1 << 16
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=endless, daemon=True)
    writer.start()
    result = run(command, fifo, "-o", tmp_path / ("out.nic" if command == "encode" else "out.png"))
    writer.join(timeout=60)
    assert result.exit_code == 1
    assert ("is not an image Pillow can read" if command == "encode" else "not a nicodec file") in result.stderr
    assert sent[0] <= 4 << 20, sent[0]  # what the pipe holds beyond the first read
    if command == "encode":
        tga = tmp_path / "in.tga"
        Image.fromarray(photo).save(tga)
        os.remove(fifo)
        os.mkfifo(fifo)
        feeder = threading.Thread(target=lambda: fifo.write_bytes(tga.read_bytes()), daemon=True)
        feeder.start()
        assert run("encode", fifo, "-o", tmp_path / "piped.nic").exit_code == 0
        feeder.join(timeout=60)
        assert run("encode", tga, "-o", tmp_path / "direct.nic").exit_code == 0
        assert (tmp_path / "piped.nic").read_bytes() == (tmp_path / "direct.nic").read_bytes()


def test_decoding_to_a_format_that_keeps_no_metadata_says_so(photo, tmp_path):
    """docs/cli.md: decode writes the ICC profile and EXIF back; BMP (TGA, QOI, PPM) keeps neither,
    and the user is told before the file is written without them."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "nicodec test camera"
    Image.fromarray(photo).save(tmp_path / "meta.png", icc_profile=icc, exif=exif.tobytes())
    Image.fromarray(photo).save(tmp_path / "plain.png")
    for name in ("meta", "plain"):
        assert run("encode", tmp_path / f"{name}.png").exit_code == 0
    result = run("decode", tmp_path / "meta.nic", "-o", tmp_path / "meta.bmp")
    assert result.exit_code == 0 and (tmp_path / "meta.bmp").is_file()
    assert "warning: meta.bmp will have no ICC profile or EXIF data: BMP does not keep them" in result.stderr
    for source, target in (("meta", "back.tiff"), ("plain", "plain.bmp")):
        result = run("decode", tmp_path / f"{source}.nic", "-o", tmp_path / target)
        assert result.exit_code == 0 and "warning" not in result.stderr
    with Image.open(tmp_path / "back.tiff") as back:
        assert back.info["icc_profile"] == icc and back.getexif()[0x010F] == "nicodec test camera"
    # A damaged file is named damaged, with no warning first about metadata it will not write.
    damaged = bytearray((tmp_path / "meta.nic").read_bytes())
    damaged[-1] ^= 0xFF
    (tmp_path / "damaged.nic").write_bytes(bytes(damaged))
    result = run("decode", tmp_path / "damaged.nic", "-o", tmp_path / "damaged.bmp")
    assert result.exit_code == 1 and "checksum mismatch" in result.stderr and "warning" not in result.stderr, result.stderr
    assert not (tmp_path / "damaged.bmp").exists()


def test_a_gray_picture_decoded_to_webp_leaves_its_gray_profile_out(photo, tmp_path):
    """WebP has no gray images: Pillow's writer turns L into RGB, and a gray ICC profile written
    along described an RGB file that colour-managed readers refuse (LittleCMS: "cannot build
    transform"). It is left out, with a warning; formats that keep the picture gray keep it, and
    an RGB profile goes into WebP as before."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gray_profile = srgb[:16] + b"GRAY" + srgb[20:]
    Image.fromarray(photo[:, :, 1]).save(tmp_path / "gray.png", icc_profile=gray_profile)
    Image.fromarray(photo).save(tmp_path / "colour.png", icc_profile=srgb)
    for name in ("gray", "colour"):
        assert run("encode", tmp_path / f"{name}.png").exit_code == 0
    result = run("decode", tmp_path / "gray.nic", "-o", tmp_path / "gray.webp")
    assert result.exit_code == 0, result.output
    assert ("warning: gray.webp will have no ICC profile: WEBP stores a gray picture as colour, which a gray "
            "profile does not describe") in result.stderr, result.stderr
    with Image.open(tmp_path / "gray.webp") as back:
        assert back.mode == "RGB" and "icc_profile" not in back.info
    for name, target, profile in (("gray", "gray.tiff", gray_profile), ("colour", "colour.webp", srgb)):
        result = run("decode", tmp_path / f"{name}.nic", "-o", tmp_path / target)
        assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
        with Image.open(tmp_path / target) as back:
            assert back.info["icc_profile"] == profile


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF")
def test_a_gray_picture_decoded_to_avif_stays_gray_with_its_gray_profile(photo, tmp_path):
    """decode wrote AVIF in 4:4:4, in which Pillow's writer turns a gray picture into colour,
    and the gray ICC profile written along described an RGB file that colour-managed readers
    refuse (as WebP's did); it is written in 4:0:0 now, gray like the picture."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gray_profile = srgb[:16] + b"GRAY" + srgb[20:]
    Image.fromarray(photo[:, :, 1]).save(tmp_path / "gray.png", icc_profile=gray_profile)
    assert run("encode", tmp_path / "gray.png").exit_code == 0
    result = run("decode", tmp_path / "gray.nic", "-o", tmp_path / "gray.avif")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    coded = (tmp_path / "gray.avif").read_bytes()
    config = coded.index(b"av1C") + 4  # the AV1 configuration: marker and version, profile and level, flags
    assert coded[config + 2] & 0x10, "not monochrome"  # (Pillow before 13 reads a monochrome AVIF as RGB)
    with Image.open(tmp_path / "gray.avif") as back:
        assert back.info["icc_profile"] == gray_profile
        assert psnr(np.asarray(back.convert("L")), photo[:, :, 1]) > 28


def _fake_build(folder, name, version, top_level="onnxruntime"):
    """A distribution's record, as pip leaves it in site-packages, for ``importlib.metadata`` to find."""
    record = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    record.mkdir()
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (record / "top_level.txt").write_text(f"{top_level}\n")


def test_two_onnxruntime_builds_installed_is_a_warning(monkeypatch, recwarn, tmp_path):
    """[cpu] and [gpu] together, or [cpu] and onnxruntime-openvino: pip installs both, and the one
    installed last overwrites the other's files (they are one Python package); nicodec says so
    once. Distributions named onnxruntime-* that hold a package of their own (onnxruntime-qnn
    from 2.0, onnxruntime-extensions) are not builds, nor is a damaged record."""
    import warnings as warnings_module
    from pathlib import Path

    from nicodec import sessions

    assert sessions.onnxruntime_folder() == Path(onnxruntime_module().__file__).parent.parent
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.setattr(sessions, "onnxruntime_folder", lambda: folder)
    _fake_build(folder, "onnxruntime", "1.32.0")
    _fake_build(folder, "onnxruntime-gpu", "1.31.1")
    _fake_build(folder, "onnxruntime-qnn", "2.7.0", top_level="onnxruntime_qnn")
    _fake_build(folder, "onnxruntime_extensions", "0.15.2", top_level="onnxruntime_extensions")
    (folder / "onnxruntime_rocm-1.22.2.dist-info").mkdir()  # no METADATA: Python 3.12 warns, 3.15 raises
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error")
        assert sessions.installed_builds() == [("onnxruntime", (1, 32)), ("onnxruntime-gpu", (1, 31))]
    sessions._warn_if_several_builds.cache_clear()
    try:
        sessions._ort()
        sessions._ort()
    finally:
        sessions._warn_if_several_builds.cache_clear()
    said = [str(w.message) for w in recwarn if "installed; they share one package folder" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("onnxruntime and onnxruntime-gpu are both installed"), said
    assert "replaced parts of the other. Run pip uninstall -y onnxruntime onnxruntime-gpu, then" in said[0]
    assert sessions.installed_build() == ("onnxruntime", ())  # two: which one is in the folder cannot be told

    _fake_build(folder, "onnxruntime-openvino", "1.24.1")
    sessions._warn_if_several_builds()
    said = [str(w.message) for w in recwarn if "installed; they share one package folder" in str(w.message)]
    assert len(said) == 2 and said[1].startswith(
        "onnxruntime, onnxruntime-gpu and onnxruntime-openvino are all installed"), said
    sessions._warn_if_several_builds.cache_clear()
    for name in ("onnxruntime", "onnxruntime-gpu"):
        shutil.rmtree(next(folder.glob(f"{name.replace('-', '_')}-*.dist-info")))
    assert sessions.installed_build() == ("onnxruntime-openvino", (1, 24))


def onnxruntime_module():
    import onnxruntime

    return onnxruntime


def test_the_build_is_read_beside_the_onnxruntime_that_is_imported(tmp_path):
    """A copy of the package on PYTHONPATH (vendored, or a build from source) is what Python
    imports: the build installed in site-packages, hidden behind it, is not named."""
    vendored = tmp_path / "vendored" / "onnxruntime"
    vendored.mkdir(parents=True)
    (vendored / "__init__.py").write_text("")
    found = subprocess.run([sys.executable, "-c", "from nicodec import sessions; print(sessions.installed_builds(), "
                            "sessions.onnxruntime_folder())"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(vendored.parent)}, check=True).stdout.split()
    assert found == ["[]", str(vendored.parent)], found


def test_an_onnxruntime_built_for_numpy_1_says_what_to_install(monkeypatch):
    """onnxruntime 1.17 (allowed by [cpu]'s floor) fails to import under numpy 2 with
    'AttributeError: _ARRAY_API not found'; reinstalling with [cpu] would not change it."""
    import numpy

    from nicodec import sessions

    monkeypatch.setattr(numpy, "__version__", "2.4.6")
    monkeypatch.setattr(sessions, "installed_builds", lambda: [("onnxruntime", (1, 17))])
    message = str(sessions._broken(AttributeError("_ARRAY_API not found")))
    assert "onnxruntime 1.17 was built for numpy 1 and does not run with numpy 2.4.6: install numpy<2 or a newer " \
           "onnxruntime" in message
    assert "built for numpy 1" in str(sessions._broken(ImportError("some other failure")))  # by its release
    # onnxruntime-cann 1.24.4 (PyPI, 2026-12-07) was built for numpy 1 too: "import numpy failed".
    monkeypatch.setattr(sessions, "installed_builds", lambda: [("onnxruntime-cann", (1, 24))])
    message = str(sessions._broken(ImportError("import numpy failed")))
    assert "onnxruntime-cann 1.24 was built for numpy 1 and does not run with numpy 2.4.6: install numpy<2 or a " \
           "newer onnxruntime-cann" in message
    assert "reinstall onnxruntime-cann, or install nicodec with the [cpu] or [gpu] extra in its place" in str(
        sessions._broken(ImportError("libascendcl.so: cannot open shared object file")))
    monkeypatch.setattr(sessions, "installed_builds", lambda: [("onnxruntime", (1, 32))])
    assert "reinstall it with the [cpu] or [gpu] extra" in str(sessions._broken(ImportError("x")))
    monkeypatch.setattr(sessions, "installed_builds", lambda: [])  # a build nicodec does not know of
    assert "reinstall it with the [cpu] or [gpu] extra" in str(sessions._broken(ImportError("x")))
    monkeypatch.setattr(numpy, "__version__", "1.26.4")  # numpy 1: that is not it
    assert "numpy<2" not in str(sessions._broken(AttributeError("_ARRAY_API not found")))


def test_a_line_cut_short_by_a_stop_is_not_written_again():
    """A batch's second stop, raised as its "stopping: ..." line was flushed, left the line in
    Rich's buffer (Rich 12 and later), and the "stopped by SIGTERM" line after it wrote it again."""
    import io

    from nicodec import console

    class Stream(io.StringIO):
        stops = 1

        def flush(self):
            if self.stops:
                self.stops -= 1
                raise KeyboardInterrupt

    stream = Stream()
    err = console._Console(file=stream, highlight=False, soft_wrap=True)
    with pytest.raises(KeyboardInterrupt):
        err.print("stopping", markup=False)
    err.print("stopped", markup=False)
    assert stream.getvalue() == "stopping\nstopped\n"


def test_a_stop_as_rich_enters_its_buffer_does_not_hold_back_every_later_line():
    """Rich counts a level into its buffer as a print starts, and back as it ends: a stop raised
    between the two left the count one high, and nothing printed after it was ever written."""
    import io

    from nicodec import console

    stream = io.StringIO()
    err = console._Console(file=stream, highlight=False, soft_wrap=True)
    enter = err._enter_buffer

    def stopped_there() -> None:
        enter()
        raise KeyboardInterrupt

    err._enter_buffer = stopped_there  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        err.print("cut short", markup=False)
    del err._enter_buffer
    err.print("interrupted", markup=False)
    assert stream.getvalue() == "interrupted\n"


def test_the_console_script_lets_typer_read_the_command_line(monkeypatch):
    """main() hands Typer no args of its own when called as the console script: Typer then reads
    sys.argv itself, which is where it expands wildcards on Windows (whose shells do not)."""
    from nicodec import cli

    calls = []
    monkeypatch.setattr(cli, "app", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(sys, "argv", ["nicodec", "encode", "*.jpg"])
    for args in (None, ["info", "x.nic"]):
        with pytest.raises(SystemExit):
            cli.main(args)
    # Not standalone: Click's usage errors come back to main(), which gives them as one line.
    assert calls == [{"prog_name": "nicodec", "standalone_mode": False},
                     {"args": ["info", "x.nic"], "prog_name": "nicodec", "standalone_mode": False}]


@unicode_names
def test_names_the_output_encoding_lacks_are_escaped_not_a_crash(tmp_path):
    """PYTHONIOENCODING=ascii (or latin-1), and names that are not UTF-8: the report shows
    backslash escapes, and verify goes on to its last file, where it used to stop with a
    UnicodeEncodeError after the first such name."""
    import os

    pixels = synthetic_photo_small()
    names = ["café.png", "z.png"] + ([os.fsdecode(b"x\xff.png")] if sys.platform.startswith("linux") else [])
    for name in names:
        Image.fromarray(pixels).save(tmp_path / name)
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for args in (["encode", tmp_path / "café.png", "-o", tmp_path / "café.nic"], ["info", tmp_path / "café.nic"],
                 ["encode", tmp_path, "-o", tmp_path / "out"], ["verify", tmp_path / "out"]):
        done = subprocess.run([sys.executable, "-m", "nicodec", *map(str, args)], capture_output=True, env=env,
                              timeout=300)
        assert done.returncode == 0 and b"Error" not in done.stderr, (args, done.stderr)
        if args[0] != "encode" or len(args) == 4 and str(args[3]).endswith(".nic"):
            assert b"caf\\xe9.nic" in done.stdout, (args, done.stdout)
        if args[0] == "verify":
            assert done.stdout.count(b"ok ") == len(names), done.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a file name that is not UTF-8")
def test_a_name_that_is_not_utf8_is_shown_alike_on_both_streams(tmp_path):
    """The byte 0xff of a name went to stdout as it was and to stderr as Python's \\udcff: both
    now show \\xff, as the other bytes nicodec escapes."""
    import os

    name = os.fsdecode(os.fsencode(tmp_path) + b"/x\xff.png")
    Image.fromarray(synthetic_photo_small()).save(name)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONIOENCODING"}
    for expected_code, stream in ((0, "stdout"), (1, "stderr")):  # the second run: the output exists
        done = subprocess.run([sys.executable, "-m", "nicodec", "encode", name], capture_output=True, env=env,
                              timeout=300)
        assert done.returncode == expected_code, done.stderr
        shown = getattr(done, stream)
        assert b"x\\xff.nic" in shown and b"\xff" not in shown and b"udcff" not in shown, shown


def synthetic_photo_small():
    return np.random.default_rng(5).integers(0, 256, (32, 48, 3), dtype=np.uint8)


@unicode_names
def test_control_characters_in_names_are_shown_escaped(tmp_path):
    """An escape sequence in a file name is shown as \\x1b, not sent to the terminal."""
    name = "e\x1b]0;title\x07.png"
    Image.fromarray(synthetic_photo_small()).save(tmp_path / name)
    result = run("encode", tmp_path / name, "-o", tmp_path / "e.nic")
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout and "e\\x1b]0;title\\x07.png" in result.stdout
    if sys.platform != "win32":  # a tab was printed as spaces: a name that does not exist
        Image.fromarray(synthetic_photo_small()).save(tmp_path / "t\tab.png")
        result = run("encode", tmp_path / "t\tab.png", "-o", tmp_path / "t.nic")
        assert result.exit_code == 0 and "t\\tab.png -> " in result.stdout and "\t" not in result.stdout
    # a right-to-left override in a name reordered the rest of the line on a terminal
    Image.fromarray(synthetic_photo_small()).save(tmp_path / "photo\u202egnp.png")
    result = run("encode", tmp_path / "photo\u202egnp.png", "-o", tmp_path / "p.nic")
    assert result.exit_code == 0 and "photo\\u202egnp.png -> " in result.stdout and "\u202e" not in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="newlines in file names are POSIX")
def test_a_newline_in_a_name_does_not_split_a_message(tmp_path):
    """Every message is one line, so a newline in a file name is shown as \\n: a report read
    line by line (``nicodec verify DIR | grep FAILED``) keeps each file on its line."""
    Image.fromarray(synthetic_photo_small()).save(tmp_path / "a\nb.png")
    (tmp_path / "bad\nc.png").write_bytes(b"not an image")
    one = run("encode", tmp_path / "a\nb.png", "-o", tmp_path / "o\nut.nic")
    assert one.exit_code == 0 and one.stdout.count("\n") == 1 and "a\\nb.png -> " in one.stdout
    bad = run("encode", tmp_path / "bad\nc.png", "-o", tmp_path / "c.nic")
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "bad\\nc.png is not an image" in bad.stderr
    folder = run("encode", tmp_path, "-o", tmp_path / "out")
    failed = [line for line in folder.stderr.splitlines() if line.startswith("failed: ")]
    assert folder.exit_code == 1 and len(failed) == 1 and "bad\\nc.png" in failed[0]
    checked = run("verify", tmp_path / "out")
    assert checked.exit_code == 0 and checked.stdout.splitlines()[0].endswith("a\\nb.nic: 48x32, 1,280 symbols")
    shown = run("info", tmp_path / "o\nut.nic")
    assert shown.stdout.splitlines()[0].strip() == "file: " + str(tmp_path / "o\\nut.nic")
    # --debug's traceback: its frames line by line, the exception's message (the name) as one line.
    traced = run("encode", tmp_path / "bad\nc.png", "-o", tmp_path / "c.nic", "--debug")
    lines = traced.stderr.splitlines()
    assert traced.exit_code == 1 and lines[0] == "Traceback (most recent call last):"
    assert any(line.startswith("  File ") for line in lines) and not any(line.startswith("c.png") for line in lines)
    assert lines[-2].startswith("nicodec.errors.UnsupportedImageError: ") and "bad\\nc.png" in lines[-2]
    assert lines[-1].startswith("error: ") and "bad\\nc.png" in lines[-1]


@unicode_names
def test_a_line_separator_in_a_name_does_not_split_a_message(tmp_path):
    paragraph = run("encode", tmp_path / "p\u2028q.png")
    assert paragraph.exit_code == 1 and "p\\u2028q.png" in paragraph.stderr and len(paragraph.stderr.splitlines()) == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_full_disk_under_the_output_or_the_report_ends_as_it_says_buffered_or_not(png, tmp_path, unbuffered):
    """What a failed write left in Python's buffer failed again as the process ended ("Exception
    ignored while flushing sys.stdout", exit code 120) wherever PYTHONUNBUFFERED is not set, as
    in a user's shell; the tests ran where it was (CI machines set it), and did not see it."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "nicodec"]
    with open("/dev/full", "w") as full:
        for args, code in ((["--version"], 1), (["encode", "--help"], 1), (["encode", str(png), "-o", "-"], 1)):
            ended = subprocess.run(command + args, stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
            assert ended.returncode == code and "No space left on device" in ended.stderr, (args, ended.stderr)
            assert "Exception ignored" not in ended.stderr and "Traceback" not in ended.stderr, (args, ended.stderr)
        # Both to a full disk: the file is written, its report is not (exit code 1), nothing fails at exit.
        ended = subprocess.run(command + ["encode", str(png), "-o", str(tmp_path / "x.nic")], stdout=full,
                               stderr=full, env=env, timeout=120)
    assert ended.returncode == 1 and (tmp_path / "x.nic").stat().st_size > 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and /dev/full")
def test_a_report_reader_that_stops_or_a_full_disk_is_one_error_line(tmp_path):
    """`nicodec verify DIR | head -1`: the reader goes, and nicodec says it could not write its
    report (exit code 1), rather than exiting 1 in silence as if a file had failed; --version
    and --help to a full disk give one line, not a traceback."""
    import os

    for i in range(30):
        Image.fromarray(synthetic_photo_small()).save(tmp_path / f"{i:02d}.png")
    assert run("encode", tmp_path, "-o", tmp_path / "out").exit_code == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = subprocess.run([sys.executable, "-m", "nicodec", "verify", str(tmp_path / "out")], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write_end)
    assert process.returncode == 1 and "cannot write the report: Broken pipe" in process.stderr, process.stderr
    if os.path.exists("/dev/full"):
        for args in (["--version"], ["encode", "--help"]):
            with open("/dev/full", "w") as full:
                process = subprocess.run([sys.executable, "-m", "nicodec", *args], stdout=full, stderr=subprocess.PIPE,
                                         text=True, timeout=120)
            assert process.returncode == 1 and "No space left on device" in process.stderr, (args, process.stderr)
            assert "Traceback" not in process.stderr


def test_single_file_commands_write_through_a_temporary_and_never_over_a_newcomer(png, tmp_path, monkeypatch):
    """encode and decode of one file go through write_atomic: a save that fails half-way leaves
    the old output as it was (with --force) and nothing else behind; a file another program
    creates at the output while nicodec codes is not replaced."""
    from nicodec import outputs
    from nicodec.codec import Codec

    assert run("encode", png, "-o", tmp_path / "a.nic").exit_code == 0
    folder = tmp_path / "restored"
    folder.mkdir()
    (folder / "out.png").write_bytes(b"old")

    def half_then_fail(image, f, *args, **kwargs):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "save", half_then_fail)
    result = run("decode", tmp_path / "a.nic", "-o", folder / "out.png", "--force")
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert [p.name for p in folder.iterdir()] == ["out.png"] and (folder / "out.png").read_bytes() == b"old"
    monkeypatch.undo()

    real = Codec.encode
    target = tmp_path / "theirs.nic"

    def encode_while_another_writes(self, image, **options):
        data = real(self, image, **options)
        target.write_bytes(b"theirs")
        return data

    monkeypatch.setattr(Codec, "encode", encode_while_another_writes)
    result = run("encode", png, "-o", target)
    assert result.exit_code == 1 and "exists" in result.stderr
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_running_out_of_memory_is_one_line_that_names_the_tile_option(png, tmp_path, monkeypatch):
    from nicodec.codec import Codec
    from nicodec.errors import OutOfMemoryError

    def starved(self, image, **options):
        raise OutOfMemoryError("out of memory: onnxruntime could not allocate 8 bytes; smaller tiles (tile=512 or "
                               "256) or a lower pixel limit need less")

    monkeypatch.setattr(Codec, "encode", starved)
    result = run("encode", png, "-o", tmp_path / "x.nic")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "out of memory" in result.stderr and "(--tile 256 sets the tile size)" in result.stderr
    assert not (tmp_path / "x.nic").exists()
    assert run("encode", png, "-o", tmp_path / "y.nic", "--tile", "96").exit_code == 2  # not a multiple of 64
    assert run("encode", png, "-o", tmp_path / "y.nic", "--tile", "0").exit_code == 2

    # Python's own MemoryError outside the codec (a large file read) was an "internal error".
    from nicodec import stdio

    monkeypatch.undo()
    assert run("encode", png, "-o", tmp_path / "z.nic").exit_code == 0

    def hungry(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(stdio, "read_input", hungry)
    result = run("decode", tmp_path / "z.nic", "-o", tmp_path / "z.png")
    assert result.exit_code == 1
    assert result.stderr == "error: out of memory; free some memory, or raise this process's limit (ulimit -v)\n"


@pytest.mark.skipif(sys.platform == "win32", reason="a 255-byte name limit")
def test_an_output_name_too_long_for_the_file_system_is_one_error_line(tmp_path):
    """A 255-byte image name gains .nic and no longer fits: named, not an internal error."""
    long = tmp_path / ("B" * 255)
    Image.fromarray(synthetic_photo_small()).save(long, format="PNG")
    result = run("encode", long)
    assert result.exit_code == 1 and "internal error" not in result.stderr
    assert "cannot use the output" in result.stderr and "File name too long" in result.stderr



def _stopped_run(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter with Ctrl-C's default handler: one started in the
    background by a shell (``nohup ... &``, as CI may run the tests) inherits SIGINT ignored."""
    prelude = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
    return subprocess.run([sys.executable, "-c", prelude + script, *args], capture_output=True, text=True, timeout=120)


def _launch_stopped_at(module: str) -> str:
    """A program that runs the console script's launcher (``nicodec --version``) with a Ctrl-C
    as ``module`` is imported."""
    return (
        "import importlib.abc, sys\n"
        "class Stop(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name == {module!r}:\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "from nicodec.launch import nicodec\n"
        "sys.argv = ['nicodec', '--version']\n"
        "nicodec()\n"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("name, code, shown", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "stopped by SIGTERM")])
def test_a_stop_while_the_command_line_is_read_is_shown_with_its_exit_code(png, name, code, shown):
    """Typer turns a stop that comes before a command runs (while it reads the command line)
    into exit code 130 and nothing else; main() says what stopped it, with the signal's code."""
    script = (
        "import os, signal, sys\n"
        "from typer.core import TyperGroup\n"
        "from nicodec.cli import main\n"
        "real = TyperGroup.parse_args\n"
        "def parse_args(self, ctx, args):\n"
        f"    os.kill(os.getpid(), signal.{name})\n"
        "    return real(self, ctx, args)\n"
        "TyperGroup.parse_args = parse_args\n"
        "main(['encode', sys.argv[1]])\n"
    )
    done = _stopped_run(script, str(png))
    assert (done.returncode, done.stderr, done.stdout) == (code, shown + "\n", "")
    assert not png.with_suffix(".nic").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("module", ["nicodec.cli", "nicodec.stops"])
def test_ctrl_c_while_the_command_lines_modules_load_is_one_line(module):
    """The console script's launcher: a Ctrl-C while nicodec.cli is imported (typer, rich: a
    tenth of a second), or the module main() imports before it sets its handlers, is
    "interrupted" and 130, not a traceback."""
    done = _stopped_run(_launch_stopped_at(module))
    assert (done.returncode, done.stderr, done.stdout) == (ended_by(signal.SIGINT), "interrupted\n", "")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_stop_swallowed_earlier_does_not_name_a_later_one():
    """A SIGTERM whose exception something swallowed (an "Exception ignored" in a destructor),
    then a Ctrl-C while Typer reads the command line: the Ctrl-C is the stop shown."""
    script = (
        "import os, signal, time\n"
        "from typer.core import TyperGroup\n"
        "from nicodec.cli import main\n"
        "real = TyperGroup.parse_args\n"
        "def parse_args(self, ctx, args):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(1)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(self, ctx, args)\n"
        "TyperGroup.parse_args = parse_args\n"
        "main(['--version'])\n"
    )
    done = _stopped_run(script)
    assert (done.returncode, done.stderr) == (130, "interrupted\n")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_numpy_loads_is_a_stop_not_an_import_error(png):
    """As for onnxruntime: a Ctrl-C inside numpy's extensions as they load would come out as
    numpy's ImportError ("failed to import"); the work's modules load with it held. The loader
    below stands in for the extension, turning an interrupt that reaches it into that error."""
    script = (
        "import importlib.abc, importlib.machinery, os, signal, sys, time\n"
        "class Extension(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name != 'numpy':\n"
        "            return None\n"
        "        spec = importlib.machinery.PathFinder.find_spec(name, path)\n"
        "        real = spec.loader.exec_module\n"
        "        def exec_module(module):\n"
        "            try:\n"
        "                os.kill(os.getpid(), signal.SIGINT)\n"
        "                time.sleep(0.5)\n"
        "            except KeyboardInterrupt:\n"
        "                raise ImportError('numpy.core.multiarray failed to import') from None\n"
        "            real(module)\n"
        "        spec.loader.exec_module = exec_module\n"
        "        return spec\n"
        "sys.meta_path.insert(0, Extension())\n"
        "from nicodec.cli import main\n"
        "assert 'numpy' not in sys.modules\n"
        "main(['encode', sys.argv[1]])\n"
    )
    done = _stopped_run(script, str(png))
    assert (done.returncode, done.stderr) == (130, "interrupted\n")
    assert not png.with_suffix(".nic").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptors")
def test_a_stop_at_start_with_stderr_closed_writes_nothing_to_stdout():
    """print(file=sys.stderr) writes to stdout when stderr is closed: not into a -o - pipe."""
    import os

    done = subprocess.run([sys.executable, "-c", _launch_stopped_at("nicodec.cli")], stdout=subprocess.PIPE, timeout=120,
                          preexec_fn=lambda: os.close(2))
    assert (done.returncode, done.stdout) == (ended_by(signal.SIGINT), b"")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptors")
@pytest.mark.parametrize("command", ["info", "verify", "decode", "info --json", "decode --json"])
def test_a_report_to_a_closed_standard_output_is_an_error(png, tmp_path, command):
    """nicodec ... >&-: Rich would write the report to nowhere and exit 0; for info and verify
    the report is the whole of the work. JSON too (its first writer wrote it nowhere)."""
    import os

    assert run("encode", png).exit_code == 0
    command, *flags = command.split()
    args = [str(png.with_suffix(".nic")), *flags] + (["-o", str(tmp_path / "back.png")] if command == "decode" else [])
    done = subprocess.run([sys.executable, "-m", "nicodec", command, *args], capture_output=False,
                          stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert (done.returncode, done.stderr) == (1, "error: cannot write the report: standard output is closed\n")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptors")
def test_help_to_a_closed_standard_output_is_an_error():
    """`nicodec --help >&-` exited 0, its help written nowhere by Typer's console, where
    `nicodec --version >&-` is an error."""
    import os
    import re

    for args in ([], ["--help"], ["encode", "--help"], ["--version"]):
        done = subprocess.run([sys.executable, "-m", "nicodec", *args], stderr=subprocess.PIPE, text=True,
                              timeout=120, check=False, preexec_fn=lambda: os.close(1))
        assert done.returncode == 1, (args, done.stderr)
        assert re.fullmatch(r"error: cannot write the (help|report): standard output is closed\n", done.stderr), args


@pytest.mark.skipif(sys.platform != "linux", reason="a file name that is not UTF-8")
@unicode_names
def test_info_json_is_ascii_whatever_the_names(png, tmp_path):
    """A name that is not UTF-8 (bytes 0xff 0xfe) and one that is not ASCII: valid JSON in any
    locale, the names read as UTF-8 and the undecodable bytes as Python's surrogate escapes. In
    a locale Python reads as ASCII (C, without its coercion to C.UTF-8) or Latin-1, café was
    caf\\udcc3\\udca9 or caf\\u00c3\\u00a9."""
    import os

    assert run("encode", png).exit_code == 0
    data = png.with_suffix(".nic").read_bytes()
    odd, accented = os.fsencode(tmp_path) + b"/bad\xff\xfe.nic", os.fsencode(tmp_path / "caf\u00e9.nic")
    for name in (odd, accented):
        with open(name, "wb") as f:
            f.write(data)
    for env in ({"LC_ALL": "C.UTF-8"}, {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}):
        done = subprocess.run([sys.executable, "-m", "nicodec", "info", "--json", odd, accented],
                              capture_output=True, timeout=120, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        files = [facts["file"] for facts in json.loads(done.stdout.decode("ascii"))]
        assert files == [name.decode("utf-8", "surrogateescape") for name in (odd, accented)], env


def test_a_name_with_colons_is_shown_as_it_is(photo, tmp_path):
    """Rich would show x:cat:.png with its emoji for :cat:."""
    source = tmp_path / "x:cat:.png"
    Image.fromarray(photo).save(source)
    result = run("encode", source)
    assert result.exit_code == 0 and "x:cat:.png -> " in result.stdout and "x:cat:.nic" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_onnxruntime_loads_is_a_stop_not_a_broken_install():
    """A Ctrl-C inside an extension module's initialisation comes out of the import as an
    ImportError ("initialization failed"), which nicodec would call a broken onnxruntime; it is
    held back while onnxruntime loads and raised after, as itself. The finder below stands in
    for onnxruntime's extension, turning the interrupt into that ImportError."""
    script = (
        "import importlib.abc, importlib.util, os, signal, sys, time, types\n"
        "class Extension(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        return importlib.util.spec_from_loader(name, self) if name == 'onnxruntime' else None\n"
        "    def create_module(self, spec):\n"
        "        return types.ModuleType(spec.name)\n"
        "    def exec_module(self, module):\n"
        "        try:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            time.sleep(0.5)\n"
        "        except KeyboardInterrupt:\n"
        "            raise ImportError('initialization failed') from None\n"
        "sys.meta_path.insert(0, Extension())\n"
        "from nicodec import sessions\n"
        "try:\n"
        "    sessions._ort()\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped', 'onnxruntime' in sys.modules)\n"
    )
    done = _stopped_run(script)
    assert (done.returncode, done.stdout, done.stderr) == (0, "stopped True\n", "")


def test_main_runs_off_the_main_thread_and_gives_a_program_its_signal_handlers_back():
    """nicodec.cli.main called from a program: no handler can be set off the main thread, so
    none is, and on the main thread the SIGTERM handler it sets is taken down again; nor does
    each call add a handler to Pillow's logger (one more every call, a review found)."""
    import logging
    import signal
    import threading

    from nicodec.cli import main

    codes = []

    def version():
        try:
            main(["--version"])
        except SystemExit as exc:
            codes.append(exc.code)

    worker = threading.Thread(target=version)
    worker.start()
    worker.join()
    assert codes in ([0], [None])
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(SystemExit):
            main(["--version"])
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        handlers = len(logging.getLogger("PIL").handlers)
        for _ in range(3):
            with pytest.raises(SystemExit):
                main(["--version"])
        assert len(logging.getLogger("PIL").handlers) == handlers
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_usage_error_is_one_line_from_the_console_script(tmp_path):
    """Click's usage, hint and boxed error become one ``error:`` line (exit code 2), as every
    other message is; help still comes as help."""
    import subprocess
    import sys

    def nicodec(*args):
        return subprocess.run([sys.executable, "-m", "nicodec", *args], capture_output=True, text=True,
                              cwd=tmp_path, env={**__import__("os").environ, "COLUMNS": "60"})

    # Click writes the sentence (Typer's own copy of it rewords it between versions: "No such
    # option: --qualty (Possible options: --quality)", then "No such option '--qualty'. Did you
    # mean '--quality'?"): the line names what it is about, and where help is; nicodec's own
    # reason, where it gives one, is there word for word.
    for args, command, named, own in (
            (["encode", "x.png", "--quality", "50", "--target-bpp", "1"], "encode", "--target-bpp",
             ": these options exclude each other: give one of them; see nicodec encode --help"),
            (["encode", "x.png", "--qualty", "50"], "encode", "--qualty", None),
            (["verify"], "verify", "INPUT", None),
            (["encode", "x.png", "--quality"], "encode", "--quality", None),
            # Typer checks these through pydantic, whose messages began "Value error, "
            (["encode", "x.png", "--provider", "tpu"], "encode", "--provider",
             ": 'tpu' is not one of 'auto', 'cpu', 'cuda', nor the name of an onnxruntime provider (such as "
             "OpenVINOExecutionProvider); see nicodec encode --help"),
            (["decode", "x.nic", "--provider-option", "device_id"], "decode", "--provider-option",
             ": 'device_id' is not KEY=VALUE (such as device_type=GPU); see nicodec decode --help"),
            (["decode", "x.nic", "--provider", "cuda", "--provider-option", "device_id=1", "--provider-option",
              "device_id=0"], "decode", "--provider-option", ": device_id is given twice; see nicodec decode --help"),
            (["decode", "x.nic", "--provider-option", "device_id=1"], "decode", "--provider-option",
             ": --provider is auto: name the provider the options are for (cuda, or an onnxruntime provider's "
             "name); see nicodec decode --help"),
            (["decode", "x.nic", "--precision", "fp8"], "decode", "--precision",
             ": 'fp8' is not one of 'fp32', 'fp16'; see nicodec decode --help")):
        result = nicodec(*args)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        line = result.stderr.splitlines()[0]
        assert line.startswith("error: ") and named in line and "Usage" not in line, line
        assert line.endswith((f"; see nicodec {command} --help", f" See nicodec {command} --help.")), line
        assert own is None or line.endswith(own), line
        assert result.stdout == ""
    result = nicodec()
    assert result.returncode == 2 and (result.stdout + result.stderr).count("Usage: nicodec [OPTIONS] COMMAND") == 1
    plain = subprocess.run([sys.executable, "-m", "nicodec"], capture_output=True, text=True, cwd=tmp_path,
                           env={**__import__("os").environ, "TYPER_USE_RICH": "0"})  # Click's own help
    shown = plain.stdout + plain.stderr  # Typer 0.16 knows no TYPER_USE_RICH: Rich's help, on stdout
    assert plain.returncode == 2 and shown.count("Usage: nicodec [OPTIONS] COMMAND") == 1
    assert "\\n" not in shown and len(shown.splitlines()) > 5
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "TIFF")
    tiff = bytearray(buffer.getvalue())  # little-endian: II, then the first directory's offset
    at = int.from_bytes(tiff[4:8], "little")
    for entry in range(int.from_bytes(tiff[at : at + 2], "little")):
        if tiff[at + 2 + 12 * entry : at + 4 + 12 * entry] == (277).to_bytes(2, "little"):  # SamplesPerPixel
            tiff[at + 10 + 12 * entry : at + 12 + 12 * entry] = (100).to_bytes(2, "little")
    (tmp_path / "many.tif").write_bytes(tiff)
    result = nicodec("encode", "many.tif")  # Pillow logs an error of its own before it raises it
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    result = nicodec("encode", "--help")
    assert result.returncode == 0 and "--quality" in result.stdout


@unicode_names
def test_names_are_measured_in_utf16_units_where_windows_measures_them(tmp_path, monkeypatch):
    """NTFS takes 255 UTF-16 units a name: a photo named with 94 Japanese characters (282 bytes
    of UTF-8) exists there, but its output in a folder still to be made was refused as longer
    than 255 bytes. Simulated (a portability review's finding): Windows has no os.pathconf."""
    from nicodec import targets
    from nicodec.errors import NicodecError

    monkeypatch.setattr(targets, "NAMES_IN_UTF16", True)
    monkeypatch.delattr(os, "pathconf")
    targets._check_can_make(tmp_path / "new", "写真" * 47 + ".nic")  # 98 units, 286 bytes of UTF-8
    with pytest.raises(NicodecError, match="is longer than the 255 UTF-16 units its file system takes"):
        targets._check_can_make(tmp_path / "new", "写" * 252 + ".nic")
    monkeypatch.setattr(targets, "NAMES_IN_UTF16", False)
    with pytest.raises(NicodecError, match="is longer than the 255 bytes its file system takes"):
        targets._check_can_make(tmp_path / "new", "写真" * 47 + ".nic")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and shells")
def test_ctrl_c_stops_a_shell_loop_that_runs_nicodec(tmp_path):
    """nicodec cleaned up after Ctrl-C and exited 130, and bash (and xargs) went on with the next
    command: they stop only after a child that the signal itself ended."""
    import shutil
    import time

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    Image.fromarray(synthetic_photo(256, 256, seed=4)).save(tmp_path / "a.png")
    loop = (f'for i in 1 2; do "{sys.executable}" -m nicodec encode a.png -o "$i.nic" --refine 1000; '
            'echo "after $i: $?"; done; echo "loop finished"')
    # Ctrl-C's default action for the shell, whatever this test inherited (a job a script started
    # in the background has it ignored, and a shell cannot take an ignored signal back).
    start = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "os.execvp('bash', ['bash', '-c', sys.argv[1]])")
    process = subprocess.Popen([sys.executable, "-c", start, loop], cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)  # past the start: nicodec's own handler has the stop
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert (process.returncode, out) == (-signal.SIGINT, ""), (out, err)
    assert err.startswith("interrupted") and err.count("\n") == 1 and not list(tmp_path.glob("*.nic")), err


def _line_art(path):
    """Black lines and text on white: a PNG of about a kilobyte that the photo-trained networks
    code in more bytes than that."""
    from PIL import ImageDraw

    image = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(image)
    for x in range(0, 160, 12):
        draw.line([(x, 0), (x, 119)], fill="black")
    draw.text((10, 50), "Hello nicodec", fill="black")
    image.save(path)
    return path


def test_a_file_larger_than_its_source_is_warned_of(png, tmp_path):
    """Text, drawings and screenshots came out larger than their lossless PNGs (and blurred)
    without a word: the user kept the worse file of the two. The output is still written."""
    art = _line_art(tmp_path / "art.png")
    result = run("encode", art, "--threads", "1")
    assert result.exit_code == 0, result.output
    size, source = (tmp_path / "art.nic").stat().st_size, art.stat().st_size
    assert size > source
    assert result.stderr == (f"warning: art.nic is larger than its source ({size:,} bytes against {source:,}): nicodec "
                             "is made for photographs (text, drawings and screenshots are often smaller and sharper "
                             "kept as they are)\n")
    # A quality the user gave may be the cause: the sizes alone
    asked = run("encode", art, "-o", tmp_path / "q.nic", "--quality", "90", "--threads", "1")
    size = (tmp_path / "q.nic").stat().st_size
    assert asked.exit_code == 0 and asked.stderr == f"warning: q.nic is larger than its source ({size:,} bytes against {source:,})\n"
    piped = runner.invoke(app, ["encode", "-", "-o", "-", "--threads", "1"], input=art.read_bytes())
    assert piped.exit_code == 0 and "warning: the output is larger than its source" in piped.stderr, piped.output
    photo = run("encode", png, "--threads", "1")
    assert photo.exit_code == 0 and photo.stderr == "", photo.output  # a photo's PNG: several times the .nic


def test_a_batch_counts_the_files_larger_than_their_sources_as_one_warning(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for n in range(5):
        _line_art(src / f"art{n}.png")
    result = run("encode", src, "-o", tmp_path / "out", "--threads", "1")
    assert result.exit_code == 0 and "5 encoded" in result.stdout, result.output
    lines = result.stderr.splitlines()
    assert lines[:3] == [f"warning: {src / f'art{n}.png'}: art{n}.nic is larger than its source: nicodec is made for "
                         "photographs (text, drawings and screenshots are often smaller and sharper kept as they are)"
                         for n in range(3)]
    assert lines[3:] == ["warning: and 2 more files with the same warning"]


def test_json_reports_one_file_encoded_or_decoded(png, tmp_path):
    """``--json`` in place of the line: what it says is what ``info --json`` and the files say;
    a warning is in it and on stderr; with ``-o -`` it is a usage error."""
    result = run("encode", png, "--json", "--target-bpp", "0.01")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    nic = tmp_path / "photo.nic"
    facts = json.loads(run("info", nic, "--json").stdout)
    assert report["input"] == str(png) and report["output"] == str(nic) and report["status"] == "encoded"
    assert {key: report[key] for key in ("width", "height", "bytes", "bpp", "quality")} == \
        {key: facts[key] for key in ("width", "height", "bytes", "bpp", "quality")}
    assert report["input_bytes"] == png.stat().st_size and report["encodes"] >= 2 and "psnr" not in report
    [warning] = report["warnings"]
    assert warning.startswith("the target of 0.01 bpp was not met") and f"warning: {warning}" in result.stderr
    result = run("encode", png, "-o", tmp_path / "p.nic", "--json", "--target-psnr", "28")
    report = json.loads(result.stdout)
    assert report["psnr"] >= 28 and report["encodes"] >= 1 and report["warnings"] == []
    result = run("decode", nic, "-o", tmp_path / "back.jpg", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == {"input": str(nic), "output": str(tmp_path / "back.jpg"), "status": "decoded", "width": 256,
                      "height": 192, "format": "JPEG", "bytes": (tmp_path / "back.jpg").stat().st_size,
                      "input_bytes": nic.stat().st_size, "warnings": [], "seconds": report["seconds"]}
    for command, source in (("encode", png), ("decode", nic)):
        result = subprocess.run([sys.executable, "-m", "nicodec", command, source, "-o", "-", "--json"],
                                capture_output=True, text=True)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr == ("error: Invalid value for '--json': the report and -o - would both be on standard "
                                 f"output: give -o a file; see nicodec {command} --help\n")


def test_json_never_holds_infinity_and_is_written_in_pieces(tmp_path, monkeypatch):
    """A PSNR target on a picture without a visible pixel reaches an infinite PSNR: JSON has no
    Infinity (JavaScript's and Go's parsers refuse it), so it is null. The report is written
    whole lines at a time, at most ``JSON_PIECE`` characters a write (it went through Rich line
    by line: 5 s for 10,000 files)."""
    from nicodec import console

    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    result = run("encode", tmp_path / "clear.png", "--target-psnr", "40", "--json")
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    assert json.loads(result.stdout, parse_constant=refuse)["psnr"] is None
    writes = []

    class Recorder(io.StringIO):
        def write(self, text):
            writes.append(text)
            return len(text)

    monkeypatch.setattr(console, "out", console._Console(file=Recorder()))
    report = [{"input": f"photos/{n:05d}.png", "status": "encoded", "warnings": []} for n in range(2000)]
    console.print_json(report)
    assert "".join(writes) == json.dumps(report, indent=2) + "\n"
    assert len(writes) > 10 and max(map(len, writes)) <= console.JSON_PIECE
    with pytest.raises(ValueError):
        console.print_json({"psnr": float("inf")})


def test_help_in_plain_text():
    """For a screen reader or a log: Typer's TYPER_USE_RICH=0 (read as Typer is imported, so in
    a process of its own) prints help without Rich's boxes, nicodec's options in it."""
    done = subprocess.run([sys.executable, "-m", "nicodec", "decode", "--help"], capture_output=True, text=True,
                          env={**os.environ, "TYPER_USE_RICH": "0"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: nicodec decode [OPTIONS]") and "--thumbnail SIZE" in done.stdout
    assert not any(box in done.stdout for box in "╭│╰─"), done.stdout


def _with_exif(codec, photo, make=None, model=None, taken=None, offset=None, dated=None, gps=False) -> bytes:
    image = Image.fromarray(photo[:64, :96])
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if dated:
        exif[0x0132] = dated
    photo_ifd = exif.get_ifd(0x8769)
    if taken:
        photo_ifd[0x9003] = taken
    if offset:
        photo_ifd[0x9011] = offset
    if gps:
        location = exif.get_ifd(0x8825)
        location.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    image.info["exif"] = exif.tobytes()
    return codec.encode(image)


def test_info_says_what_the_exif_holds_without_decoding(codec, photo, tmp_path):
    """No other tool reads a .nic file's EXIF: info gives the camera, the date taken and whether
    it holds a GPS location (which encode --strip leaves out)."""
    files = {
        "phone.nic": _with_exif(codec, photo, "Apple", "iPhone 15 Pro", "2024:07:14 18:03:11", "+02:00", gps=True),
        "camera.nic": _with_exif(codec, photo, "Canon", "Canon EOS R5\0\0", dated="2023:01:02 03:04:05"),
        "bare.nic": _with_exif(codec, photo, make="  "),
        "none.nic": codec.encode(Image.fromarray(photo[:64, :96])),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    facts = {name: nicodec.describe(data)["exif"] for name, data in files.items()}
    assert facts == {
        "phone.nic": {"readable": True, "camera": "Apple iPhone 15 Pro", "taken": "2024-07-14 18:03:11 +02:00",
                      "location": True},
        "camera.nic": {"readable": True, "camera": "Canon EOS R5", "taken": "2023-01-02 03:04:05", "location": False},
        "bare.nic": {"readable": True, "camera": None, "taken": None, "location": False},
        "none.nic": None,
    }
    result = run("info", tmp_path)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith(("file:", "exif:"))]
    assert lines == [
        "file: " + str(tmp_path / "bare.nic"), "exif: no camera, no date, no location",
        "file: " + str(tmp_path / "camera.nic"), "exif: Canon EOS R5, taken 2023-01-02 03:04:05, no location",
        "file: " + str(tmp_path / "none.nic"), "exif: none",
        "file: " + str(tmp_path / "phone.nic"),
        "exif: Apple iPhone 15 Pro, taken 2024-07-14 18:03:11 +02:00, a GPS location (encode --metadata icc leaves "
        "the EXIF out)",
    ], result.stdout
    assert json.loads(run("info", tmp_path / "phone.nic", "--json").stdout)["exif"] == facts["phone.nic"]


def test_info_says_when_pillow_reads_no_tag_of_the_exif(codec, photo):
    from nicodec import format as nicformat

    header, sections = nicformat.unpack(_with_exif(codec, photo, "Canon"))
    sections[nicformat.EXIF] = b"Exif\0\0II*\0\x08\0\0\0\xff\xff"
    data = nicformat.pack(header, sections)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's "Corrupt EXIF data" warnings are not let out
        assert nicodec.describe(data)["exif"] == {"readable": False, "camera": None, "taken": None, "location": False}
    result = runner.invoke(app, ["info", "-"], input=data)
    assert result.exit_code == 0 and "exif: 16 bytes, of which Pillow reads no tag\n" in result.stdout, result.output


@pytest.fixture()
def photo_with_metadata(tmp_path, photo):
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F] = "Camera"
    path = tmp_path / "meta.jpg"
    Image.fromarray(photo).save(path, exif=exif.tobytes(), icc_profile=ImageCms.ImageCmsProfile(
        ImageCms.createProfile("sRGB")).tobytes(), dpi=(300, 300), comment=b"hello",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', quality=95)
    return path


@pytest.mark.parametrize("keep, sections", [
    ("all", {"ICCP", "EXIF", "XMP ", "TEXT", "PHYS"}),
    ("none", set()),
    ("icc", {"ICCP"}),
    (" ICC , exif", {"ICCP", "EXIF"}),
    ("dpi,text,xmp,exif,icc", {"ICCP", "EXIF", "XMP ", "TEXT", "PHYS"}),
])
def test_metadata_keeps_the_kinds_it_names(photo_with_metadata, tmp_path, keep, sections):
    """--metadata icc keeps the colours right and leaves out the rest (cwebp's -metadata):
    --strip left out the colour profile too, shifting a wide-gamut photo's colours."""
    result = run("encode", photo_with_metadata, "-o", tmp_path / "out.nic", "--metadata", keep)
    assert result.exit_code == 0, result.output
    assert set(nicodec.describe(tmp_path / "out.nic")["sections"]) == {"ZSYM", "YSYM", *sections}
    if keep == "none":
        assert run("encode", photo_with_metadata, "-o", tmp_path / "stripped.nic", "--strip").exit_code == 0
        assert (tmp_path / "out.nic").read_bytes() == (tmp_path / "stripped.nic").read_bytes()


@pytest.mark.parametrize("arguments, said", [
    (["--metadata", "gps"], "'gps' is no kind of metadata: give icc, exif, xmp, text or dpi (several with commas: "
                            "icc,exif), all or none"),
    (["--metadata", "icc,,exif"], "an empty name is no kind of metadata"),
    (["--metadata", "icc,all"], "all stands alone: give it, or kinds of metadata with commas (icc,exif)"),
    (["--strip", "--metadata", "all"], "--metadata all keeps them all: give one of them"),
    (["--strip", "--metadata", "icc"], "--strip leaves out every kind of metadata, and --metadata icc keeps some: give "
                                       "one of them"),
])
def test_metadata_that_names_no_kind_or_fights_strip_is_a_usage_error(photo_with_metadata, tmp_path, arguments, said):
    result = run("encode", photo_with_metadata, "-o", tmp_path / "out.nic", *arguments)
    shown = " ".join(re.sub("[│╭╰─╮╯]", " ", result.output).split())  # Click's box, as the runner shows it
    assert result.exit_code == 2 and said in shown, result.output
    assert not (tmp_path / "out.nic").exists()


def test_a_folder_up_to_date_notes_that_metadata_was_not_compared(photo_with_metadata, tmp_path):
    assert run("encode", photo_with_metadata.parent, "-o", tmp_path / "out").exit_code == 0
    result = run("encode", photo_with_metadata.parent, "-o", tmp_path / "out", "--metadata", "icc")
    assert result.exit_code == 0 and "1 up to date" in result.stdout, result.output
    assert "which do not record --metadata (--force codes every file anew)" in result.output, result.output


def test_info_leaves_out_placeholders_and_says_a_camera_once(codec, photo):
    """The EXIF standard's unknown date (blanks and colons) and zeros are no dates; an offset is
    given only as one (+02:00); a model that begins with the make's first word is the camera."""
    def exif_facts(**fields):
        return nicodec.describe(_with_exif(codec, photo, **fields))["exif"]

    assert exif_facts(make="NIKON CORPORATION", model="NIKON D850", taken="    :  :     :  :  ", offset="   ") == \
        {"readable": True, "camera": "NIKON D850", "taken": None, "location": False}
    assert exif_facts(make="Canon", model="EOS R5", taken="0000:00:00 00:00:00", dated="2020-02-03 04:05:06")["taken"] \
        == "2020-02-03 04:05:06"
    assert exif_facts(taken="2021:01:01 00:00:00", offset=" :")["taken"] == "2021-01-01 00:00:00"


def test_info_keeps_pillows_warnings_of_a_damaged_value_in(codec, photo):
    """Pillow warns of a damaged value as it is first read (a Make of two numbers): none comes
    out, and under -W error describe neither raises nor loses what it read."""
    import struct as structs

    from nicodec import format as nicformat

    header, sections = nicformat.unpack(_with_exif(codec, photo, "Canon"))
    entries = [(0x010F, 3, 2, 0x00050004), (0x0110, 2, 4, int.from_bytes(b"R5\0\0", "little"))]
    ifd = structs.pack("<H", len(entries)) + b"".join(structs.pack("<HHII", *entry) for entry in entries)
    sections[nicformat.EXIF] = b"II*\0\x08\0\0\0" + ifd + bytes(4)
    data = nicformat.pack(header, sections)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        facts = nicodec.describe(data)["exif"]
    assert facts == {"readable": True, "camera": "R5", "taken": None, "location": False}
