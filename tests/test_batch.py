"""Folders through the CLI: recursion, skipping, one bad file, parallel workers."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from nicodec import format as nicformat
from nicodec.cli import app

from conftest import ended, ended_by, opened, synthetic_photo

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_tree(root):
    (root / "a" / "b").mkdir(parents=True)
    Image.fromarray(synthetic_photo(96, 128, seed=1)).save(root / "a" / "one.png")
    Image.fromarray(synthetic_photo(80, 100, seed=2)).save(root / "a" / "b" / "two.jpg", quality=95)
    Image.fromarray(synthetic_photo(64, 64, seed=3)).save(root / "top.webp")
    (root / "a" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def test_a_terminal_sees_how_many_files_are_done(tmp_path, monkeypatch):
    """The folder's bar counts files ("4/4") with a text column that Rich 10.11, the oldest
    Rich Typer 0.16 takes, has: MofNCompleteColumn (Rich 12) failed to import there, and every
    folder failed with it."""
    import io

    from nicodec import console

    screen = io.StringIO()
    monkeypatch.setattr(console, "err", console._Console(file=screen, force_terminal=True, width=200))
    src = make_tree(tmp_path / "src")
    result = run("encode", src, "-o", tmp_path / "out", "--provider", "cpu")
    assert result.exit_code == 1  # the broken file
    assert "4 files: 3 encoded" in result.stdout
    assert re.search(r"encode .* 4/4 .*files/s", screen.getvalue())
    # A rerun: the files up to date leave the bar, which counts, and times, the files to code.
    Image.fromarray(synthetic_photo(64, 64, seed=9)).save(src / "new.png")
    screen.seek(0)
    screen.truncate()
    result = run("encode", src, "-o", tmp_path / "out", "--provider", "cpu")
    assert "5 files: 1 encoded, 3 up to date, 0 kept, 1 failed" in result.stdout
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert re.search(r"encode .* 2/2 ", shown) and not re.search(r" [1-9]/5 ", shown), shown


def test_encode_tree_keeps_structure_and_reports_the_bad_file(tmp_path):
    """The tree is kept, the bad file named; hidden files and folders (docs/cli.md: skipped) are
    neither coded nor counted."""
    src = make_tree(tmp_path / "src")
    (src / ".d").mkdir()
    Image.fromarray(synthetic_photo(32, 32, seed=5)).save(src / ".x.png")
    Image.fromarray(synthetic_photo(32, 32, seed=6)).save(src / ".d" / "y.png")
    result = run("encode", src, "-o", tmp_path / "out", "--provider", "cpu")
    assert result.exit_code == 1
    assert "4 files: 3 encoded, 0 up to date, 0 kept, 1 failed" in result.stdout
    assert "broken.png" in result.stderr and "failed:" in result.stderr
    made = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert made == ["a/b/two.nic", "a/one.nic", "top.nic"]
    assert all(p.read_bytes()[:4] == b"\x89NIC" for p in (tmp_path / "out").rglob("*.nic"))


def test_files_of_other_kinds_are_counted_by_extension_not_passed_over_in_silence(tmp_path):
    """A camera's raw files or a phone's HEIC photos (without pillow-heif), which Pillow does not
    read, were left out with nothing said: "3 files: 3 encoded" over a folder of 300 photos.
    Encoding names them by their count; hidden files and .nic files (nicodec's own, beside their
    images) are not counted, and decoding, where images beside the .nic files are the rule, says
    nothing."""
    src = make_tree(tmp_path / "src")  # and notes.txt
    for name in ("DSC_1.ARW", "DSC_2.arw", "DSC_3.arw", "clip.mov", "raw.CR2", "README", "a/c.json",
                 ".hidden.arw", "top.nic"):
        (src / name).write_bytes(b"x")
    result = run("encode", src, "-o", tmp_path / "out", "--provider", "cpu")
    assert "4 files: 3 encoded" in result.stdout
    assert ("note: passed over 8 files whose extension is no image's that Pillow reads (3 .arw, 1 without an "
            "extension, 1 .cr2, 1 .json, 1 .mov and 1 more); hidden files are passed over uncounted\n") in result.stderr, result.stderr
    (src / "a" / "c.json").unlink()
    for name in ("DSC_1.ARW", "DSC_2.arw", "DSC_3.arw", "clip.mov", "raw.CR2"):
        (src / name).unlink()
    result = run("encode", src, "-o", tmp_path / "out", "--provider", "cpu")
    assert "passed over 2 files whose extension is no image's that Pillow reads (1 without an extension and 1 .txt)" \
        in result.stderr, result.stderr
    (src / "README").unlink()
    (src / "notes.txt").unlink()
    assert "passed over" not in run("encode", src, "-o", tmp_path / "out", "--provider", "cpu").stderr
    result = run("decode", tmp_path / "out", "-o", tmp_path / "back")
    assert "3 files: 3 decoded" in result.stdout and "passed over" not in result.stderr


def test_a_folders_mpo_photos_are_coded_from_their_first_frame(tmp_path):
    """MPO files (3D cameras, some phones: a JPEG with previews or a second view as more frames)
    were passed over in a folder, where the same file given alone was coded: Pillow opens them
    through JPEG's opener, so MPO has none of its own in Image.OPEN."""
    from nicodec import Codec

    src = tmp_path / "src"
    src.mkdir()
    first, second = (Image.fromarray(synthetic_photo(64, 96, seed=s)) for s in (1, 2))
    first.save(src / "stereo.mpo", save_all=True, append_images=[second])
    with Image.open(src / "stereo.mpo") as im:
        assert im.format == "MPO" and im.n_frames == 2
    result = run("encode", src, "-o", tmp_path / "out", "--provider", "cpu")
    assert result.exit_code == 0 and "1 file: 1 encoded" in result.stdout, result.output
    assert "passed over" not in result.stderr
    codec = Codec()
    with Image.open(src / "stereo.mpo") as im:
        assert (tmp_path / "out" / "stereo.nic").read_bytes() == codec.encode(im.convert("RGB"))


def test_up_to_date_outputs_are_skipped_and_stale_ones_kept_without_force(tmp_path):
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    out = tmp_path / "out"
    assert run("encode", src, "-o", out).exit_code == 0
    result = run("encode", src, "-o", out)
    assert result.exit_code == 0
    assert "0 encoded, 3 up to date" in result.stdout
    stale = out / "top.nic"
    before = stale.read_bytes()
    os.utime(stale, (0, 0))
    result = run("encode", src, "-o", out)
    assert "1 kept" in result.stdout and "--force" in result.stderr
    assert stale.read_bytes() == before and stale.stat().st_mtime == 0
    result = run("encode", src, "-o", out, "--force")
    assert result.exit_code == 0 and "3 encoded" in result.stdout
    assert stale.stat().st_mtime > 0


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_an_output_older_than_its_input_by_nanoseconds_or_through_a_link_is_kept(tmp_path):
    """Found by a review of reruns: an output a few hundred nanoseconds older than its input was
    up to date (the times were compared as floats), and so was one whose input is a link pointed
    since at another, older file. Both are kept now; the same time still counts as newer (times
    kept to the second, by a tar copy or a FAT drive, make outputs equal to their inputs)."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    Image.fromarray(synthetic_photo(32, 48, seed=1)).save(photos / "a.png")
    Image.fromarray(synthetic_photo(32, 48, seed=2)).save(tmp_path / "older.png")
    os.utime(tmp_path / "older.png", ns=(10**18, 10**18))  # 2001
    (photos / "b.png").symlink_to(photos / "a.png")
    assert run("encode", photos, "-o", out).exit_code == 0
    made = (out / "a.nic").stat().st_mtime_ns
    assert "2 up to date" in run("encode", photos, "-o", out).stdout

    os.utime(photos / "a.png", ns=(made, made))  # the same time: newer, as a copy to the second makes it
    assert "2 up to date" in run("encode", photos, "-o", out).stdout
    for later in range(1, 1000):  # a few hundred nanoseconds later: the same float
        os.utime(photos / "a.png", ns=(made + later, made + later))
        now = (photos / "a.png").stat()
        if now.st_mtime_ns == made + later and now.st_mtime == (out / "a.nic").stat().st_mtime:
            break
    else:
        pytest.skip("this file system keeps no times finer than a float tells apart")
    result = run("encode", photos, "-o", out)
    assert "1 up to date, 1 kept" in result.stdout, result.stdout
    assert f"kept: {out / 'a.nic'} exists and is older than {photos / 'a.png'}; --force" in result.stderr

    os.utime(photos / "a.png", ns=(made - 10**9, made - 10**9))
    (photos / "b.png").unlink()  # the link pointed at an older file: a new picture, not an old one
    (photos / "b.png").symlink_to(tmp_path / "older.png")
    result = run("encode", photos, "-o", out)
    assert "1 up to date, 1 kept" in result.stdout, result.stdout
    assert (f"kept: {out / 'b.nic'} exists and is older than the link {photos / 'b.png'}, made or pointed at "
            "another file since; --force replaces it") in result.stderr, result.stderr
    assert "2 encoded" in run("encode", photos, "-o", out, "--force").stdout


def test_parallel_jobs_give_the_same_files(tmp_path):
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    assert run("encode", src, "-o", tmp_path / "serial").exit_code == 0
    assert run("encode", src, "-o", tmp_path / "parallel", "--jobs", "3").exit_code == 0
    for nic in (tmp_path / "serial").rglob("*.nic"):
        assert nic.read_bytes() == (tmp_path / "parallel" / nic.relative_to(tmp_path / "serial")).read_bytes()


def test_decode_tree(tmp_path):
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
    (tmp_path / "nic" / "a" / "corrupt.nic").write_bytes(b"\x89NIC garbage")
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "png", "--jobs", "2")
    assert result.exit_code == 1
    assert "4 files: 3 decoded, 0 up to date, 0 kept, 1 failed" in result.stdout
    assert "corrupt.nic" in result.stderr
    back = opened(tmp_path / "png" / "a" / "one.png")
    assert back.size == (128, 96) and back.format == "PNG"
    assert not (tmp_path / "png" / "a" / "corrupt.png").exists()


def test_a_folder_of_transparent_pictures_decodes_to_jpeg_with_a_background(tmp_path):
    """Each transparent picture of a folder failed to decode to JPEG, and no option helped:
    --background flattens them, and the opaque ones are written as they were."""
    src = tmp_path / "src"
    src.mkdir()
    rgba = np.dstack([synthetic_photo(64, 96, seed=4), np.full((64, 96), 255, np.uint8)])
    rgba[:, :40, 3] = 0
    Image.fromarray(rgba, "RGBA").save(src / "clear.png")
    Image.fromarray(synthetic_photo(64, 96, seed=5)).save(src / "opaque.png")
    assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "refused", "--format", "jpg")
    assert result.exit_code == 1 and "1 failed" in result.stdout and "--background COLOUR" in result.stderr
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "jpg", "--format", "jpg", "--background", "black")
    assert result.exit_code == 0 and "2 files: 2 decoded" in result.stdout, result.output
    with Image.open(tmp_path / "jpg" / "clear.jpg") as flat:
        assert flat.mode == "RGB" and np.asarray(flat)[:, :32].max() <= 10  # alpha 0: the black alone
    assert opened(tmp_path / "jpg" / "opaque.jpg").mode == "RGB"


def test_a_warning_many_files_share_is_listed_for_the_first_few_then_counted(tmp_path):
    """Decoding a folder of PNGs with text to JPEG warned once per file, a thousand lines for a
    thousand files; a warning that differs only by the file's name is now listed for the first
    three, then counted, and a different one is still listed."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(5):
        info = PngImagePlugin.PngInfo()
        info.add_text("source", "scanner")
        Image.fromarray(synthetic_photo(32, 48, seed=n)).save(src / f"p{n}.png", pnginfo=info)
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "me")
    Image.fromarray(synthetic_photo(32, 48, seed=9)).save(src / "other.png", pnginfo=info)
    assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "jpg", "--format", "jpg")
    assert result.exit_code == 0 and "6 files: 6 decoded" in result.stdout, result.output
    assert result.stderr.count('has no text "source": JPEG keeps a Comment alone') == 3
    assert "warning: and 2 more files with the same warning" in result.stderr
    assert 'other.jpg has no text "Author"' in result.stderr
    assert result.stderr.count("warning: ") == 5


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_warning_that_reading_many_inputs_raises_is_listed_for_the_first_few_then_counted(tmp_path, jobs):
    """cli.md promised it of every warning that only the file's name tells apart; those raised
    as each image was read (a PNG's gamma, damaged EXIF) were printed once a file."""
    import struct

    src = tmp_path / "src"
    src.mkdir()
    for n in range(6):
        linear = PngImagePlugin.PngInfo()
        linear.add(b"gAMA", struct.pack(">I", 100000))  # gamma 1.0, not kept
        Image.fromarray(synthetic_photo(32, 48, seed=n)).save(src / f"g{n}.png", pnginfo=linear)
    other = PngImagePlugin.PngInfo()
    other.add(b"gAMA", struct.pack(">I", 50000))
    Image.fromarray(synthetic_photo(32, 48, seed=9)).save(src / "other.png", pnginfo=other)
    result = run("encode", src, "-o", tmp_path / "nic", "--jobs", jobs)
    assert result.exit_code == 0 and "7 files: 7 encoded" in result.stdout, result.output
    lines = result.stderr.splitlines()
    listed = [line for line in lines if re.fullmatch(r"warning: .*g[0-5]\.png: its gamma \(PNG gAMA 1\) is not kept; .*", line)]
    assert len(listed) == 3, result.stderr
    assert lines[-1] == f"warning: and 3 more files with the same warning: {listed[0].split(': ', 2)[2]}"
    assert sum("other.png: its gamma (PNG gAMA 0.5) is not kept" in line for line in lines) == 1
    assert len(lines) == 5
    from nicodec import console

    assert console.BATCH_INPUTS == set()  # nothing of it left in the process for the next command line
    again = run("encode", src, "-o", tmp_path / "again")
    assert again.stderr.splitlines()[-1] == lines[-1] and len(again.stderr.splitlines()) == 5  # counted anew


def test_an_input_dated_in_the_future_is_said_to_be(tmp_path):
    """An input dated ahead of the clock (a copy from a machine whose clock runs fast) made its
    output "older" on every run, right after --force wrote it, with advice to use --force: the
    message now says why."""
    import time

    for name in ("now.png", "ahead.png"):
        Image.fromarray(synthetic_photo(32, 48, seed=1)).save(tmp_path / name)
    later = time.time() + 3 * 3600
    os.utime(tmp_path / "ahead.png", (later, later))
    files = [tmp_path / "now.png", tmp_path / "ahead.png"]
    assert run("encode", *files, "-f").exit_code == 0
    result = run("encode", *files)
    assert result.exit_code == 0 and "1 up to date, 1 kept" in result.stdout, result.output
    assert (f"kept: {tmp_path / 'ahead.nic'} exists and is older than {tmp_path / 'ahead.png'}, which is dated about 3 "
            "hours ahead of this machine's clock (a clock skew?)") in result.stderr
    assert "now.nic" not in result.stderr
    from nicodec.batch_plan import duration_text

    assert [duration_text(s) for s in (2.5, 119, 3 * 3600 - 1, 1.99 * 86_400, 1e7)] == [
        "about 2 seconds", "about 2 minutes", "about 3 hours", "about 2 days", "about 116 days"]


def test_the_summary_never_shows_1000_kb():
    from nicodec.console import size_text

    assert [size_text(n) for n in (999, 999_949, 999_950, 999_999, 1_000_000, 12_345_678)] == \
        ["1.0 kB", "999.9 kB", "1.00 MB", "1.00 MB", "1.00 MB", "12.35 MB"]


def test_warnings_are_grouped_by_what_follows_the_file_name_only(monkeypatch):
    """The grouping took out every occurrence of the output's name, so two files whose texts were
    keyed by their own names counted as one kind of warning and the second went unnamed."""
    import io

    from nicodec import console
    from nicodec.batch import Item, Outcome
    from nicodec.cli_batch import _list_outcomes

    screen = io.StringIO()
    monkeypatch.setattr(console, "err", console._Console(file=screen, width=300))
    outcomes = [Outcome(Item(Path(f"{n}.nic"), Path(f"{n}.jpg")), "done", f'{n}.jpg has no text "{n}.jpg": why')
                for n in "abcd"]
    outcomes += [Outcome(Item(Path(f"{n}.nic"), Path(f"{n}.jpg")), "done", f'{n}.jpg has no XMP data: why')
                 for n in "efghi"]
    _list_outcomes(outcomes)
    lines = screen.getvalue().splitlines()
    assert [line.split(":")[1].strip() for line in lines[:4]] == ["a.nic", "b.nic", "c.nic", "d.nic"]
    assert lines[4:] == [f"warning: {n}.nic: {n}.jpg has no XMP data: why" for n in "efg"] + [
        "warning: and 2 more files with the same warning"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_named_like_an_image_in_a_folder_is_passed_over_with_a_note(tmp_path):
    """A named pipe called pipe.png in a folder was passed over in silence (reading it could
    block the batch for ever); the note names it, for encoding and decoding alike."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(32, 48, seed=1)).save(src / "a.png")
    os.mkfifo(src / "pipe.png")
    result = run("encode", src, "-o", tmp_path / "nic")
    assert result.exit_code == 0 and "1 file: 1 encoded" in result.stdout, result.output
    assert (f"note: passed over 1 file that is a pipe, device or socket, named like an image ({src / 'pipe.png'}): "
            "reading one could block the batch; name it alone to read it") in result.stderr
    os.mkfifo(tmp_path / "nic" / "p.nic")
    os.mkfifo(tmp_path / "nic" / "q.nic")
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "png")
    assert result.exit_code == 0 and "1 file: 1 decoded" in result.stdout, result.output
    assert "note: passed over 2 files that are pipes, devices or sockets, named like a .nic file (" in result.stderr
    for command in ("verify", "info"):  # which search folders too
        result = run(command, tmp_path / "nic")
        assert result.exit_code == 0, result.output
        assert "note: passed over 2 files that are pipes, devices or sockets, named like a .nic file (" in result.stderr


def test_decode_writes_the_format_asked_for(tmp_path):
    """A folder, several files and standard output decoded only to PNG: --format picks another
    (by extension, with or without the dot); its files are what later runs find up to date; a
    format that would lose part of the picture fails each file, from its header; a single -o
    FILE that names another format than --format is a usage error, before any work."""
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "web", "--format", ".WebP")
    assert result.exit_code == 0 and "3 files: 3 decoded" in result.stdout, result.output
    with Image.open(tmp_path / "web" / "a" / "one.webp") as back:
        assert back.format == "WEBP" and back.size == (128, 96)
    assert not list((tmp_path / "web").rglob("*.png"))
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "web", "--format", "webp")
    assert "3 files: 0 decoded, 3 up to date" in result.stdout
    one = tmp_path / "nic" / "a" / "one.nic"
    result = run("decode", one, tmp_path / "nic" / "top.nic", "-o", tmp_path / "jpg", "--format", "jpg")
    assert result.exit_code == 0 and opened(tmp_path / "jpg" / "one.jpg").format == "JPEG"
    result = run("decode", tmp_path / "nic", "-o", tmp_path / "gif", "--format", "gif")  # colour: GIF loses some
    assert result.exit_code == 1 and "3 failed" in result.stdout and "GIF" in result.stderr
    assert not list((tmp_path / "gif").rglob("*.gif"))
    result = run("decode", one, "-o", "-", "--format", "tiff")
    assert result.exit_code == 0 and result.stdout_bytes[:4] in (b"II*\0", b"MM\0*")
    result = run("decode", one, "--format", "bmp")
    assert result.exit_code == 0 and opened(one.with_suffix(".bmp")).format == "BMP"
    result = run("decode", one, "-o", tmp_path / "x.png", "--format", "jpg")
    assert result.exit_code == 2 and "x.png is PNG" in result.stderr and not (tmp_path / "x.png").exists()
    (tmp_path / "x.png").write_bytes(b"")  # the conflict is named first, not the existing file
    result = run("decode", one, "-o", tmp_path / "x.png", "--format", "jpg")
    assert result.exit_code == 2 and "x.png is PNG" in result.stderr
    result = run("decode", one, "-o", tmp_path / "noext", "--format", "jpg")
    assert result.exit_code == 2 and "the output noext has no" in result.stderr
    assert run("decode", one, "-o", tmp_path / "x.jpeg", "--format", "jpg").exit_code == 0  # the same format
    for wrong in ("nic", "foo", "", "pdf", "xbm"):  # PDF: not read back; XBM: 1-bit pictures only
        result = run("decode", tmp_path / "nic", "-o", tmp_path / "none", "--format", wrong)
        assert result.exit_code == 2 and "--format" in result.stderr and not (tmp_path / "none").exists(), wrong


def test_encode_tree_beside_the_images_by_default(tmp_path):
    src = make_tree(tmp_path / "src")
    result = run("encode", src)
    assert result.exit_code == 1
    assert (src / "a" / "one.nic").exists() and (src / "top.nic").exists()
    assert np.asarray(Image.open(src / "a" / "one.png")).shape == (96, 128, 3)


def test_empty_folder(tmp_path):
    result = run("encode", tmp_path)
    assert result.exit_code == 0
    assert "0 files" in result.stdout and f"warning: no files to encode in {tmp_path} (" in result.stderr
    result = run("decode", tmp_path)
    assert result.exit_code == 0 and f"warning: no files to decode in {tmp_path} (looked for .nic files" in result.stderr


def test_encode_tree_at_a_quality(tmp_path):
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    for quality in ("15", "85"):
        result = run("encode", src, "-o", tmp_path / quality, "--quality", quality, "--jobs", "2")
        assert result.exit_code == 0, result.output
        assert "3 encoded" in result.stdout
    for low in (tmp_path / "15").rglob("*.nic"):
        high = tmp_path / "85" / low.relative_to(tmp_path / "15")
        assert nicformat.read_header(low.read_bytes())[0].quality == 15
        assert nicformat.read_header(high.read_bytes())[0].quality == 85
        assert low.stat().st_size < high.stat().st_size
    result = run("encode", src, "-o", tmp_path / "bad", "--quality", "101")
    assert result.exit_code == 2 and not (tmp_path / "bad").exists()


def test_a_photo_replaced_by_an_older_dated_copy_of_another_size_is_not_up_to_date(tmp_path):
    """cp -p, rsync -t or a tool that dates files by their EXIF gave the new photo an older date
    than its .nic, which counted up to date; the header's size tells a photo of another size.
    An EXIF orientation that turns the picture is no change."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(64, 96, seed=1)).save(src / "x.png")
    turned = Image.fromarray(synthetic_photo(64, 96, seed=2))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 96 wide, shown 64 wide
    turned.save(src / "y.jpg", exif=exif, quality=95)
    out = tmp_path / "out"
    assert run("encode", src, "-o", out).exit_code == 0
    assert nicformat.read_header((out / "y.nic").read_bytes())[0].width == 64
    made = (out / "x.nic").read_bytes()
    assert "0 encoded, 2 up to date, 0 kept" in run("encode", src, "-o", out).stdout
    Image.fromarray(synthetic_photo(80, 96, seed=3)).save(src / "x.png")
    before = (out / "x.nic").stat().st_mtime_ns - 10**10
    os.utime(src / "x.png", ns=(before, before))
    result = run("encode", src, "-o", out)
    assert result.exit_code == 0 and "0 encoded, 1 up to date, 1 kept" in result.stdout, result.output
    assert (f"kept: {out / 'x.nic'} was made from a 96x64 picture, and {src / 'x.png'} is 96x80 (replaced by a copy "
            "with an older date?); --force replaces it") in result.stderr
    assert (out / "x.nic").read_bytes() == made
    assert run("encode", src / "x.png", "-o", out / "x.nic", "--force").exit_code == 0
    assert nicformat.read_header((out / "x.nic").read_bytes())[0].height == 80


def test_a_newer_output_made_otherwise_is_kept_not_counted_up_to_date(tmp_path):
    """Another quality, another model or a file that is no .nic: listed as kept (not skipped
    as up to date), left as it is; --force re-encodes it at the settings asked for."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(64, 96, seed=1)).save(src / "x.png")
    Image.fromarray(synthetic_photo(64, 96, seed=2)).save(src / "y.png")
    out = tmp_path / "out"
    assert run("encode", src, "-o", out, "--quality", "10").exit_code == 0
    made = (out / "x.nic").read_bytes()
    result = run("encode", src, "-o", out, "--quality", "10")
    assert "0 encoded, 2 up to date, 0 kept" in result.stdout
    result = run("encode", src, "-o", out, "--quality", "90")
    assert result.exit_code == 0
    assert "0 encoded, 0 up to date, 2 kept" in result.stdout
    assert f"{out / 'x.nic'} was made at quality 10, not 90; --force replaces it" in result.stderr
    assert (out / "x.nic").read_bytes() == made
    result = run("encode", src, "-o", out)  # the model's default quality, 56
    assert "2 kept" in result.stdout and "not 56" in result.stderr
    # What the file holds, not its name, counts: another model's header, or no header at all.
    header, sections = nicformat.unpack(made)
    other = nicformat.Header(header.version, "another-model", b"\x01" * 8, header.width, header.height,
                             header.quality, header.flags)
    (out / "x.nic").write_bytes(nicformat.pack(other, sections))
    (out / "y.nic").write_bytes(b"my notes, not a nicodec file")
    result = run("encode", src, "-o", out, "--quality", "10")
    assert "0 up to date, 2 kept" in result.stdout
    assert "was made by another model (another-model, not " in result.stderr
    assert f"{out / 'y.nic'} cannot be read as a nicodec file: not a nicodec file (wrong magic bytes)" in result.stderr
    assert (out / "y.nic").read_bytes() == b"my notes, not a nicodec file"
    result = run("encode", src, "-o", out, "--quality", "90", "--force")
    assert result.exit_code == 0 and "2 encoded" in result.stdout
    assert all(nicformat.read_header(p.read_bytes())[0].quality == 90 for p in out.glob("*.nic"))



def test_an_output_cut_short_or_of_another_export_or_a_near_quality_is_not_up_to_date(tmp_path):
    """A .nic cut short (a full disk, a broken copy), one of a re-export under the same model id
    (another hash), and one made at 37.6 when 37.5 is asked for: each is kept and listed, none
    counted up to date."""
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate("xyz"):
        Image.fromarray(synthetic_photo(64, 96, seed=i)).save(src / f"{name}.png")
    out = tmp_path / "out"
    assert run("encode", src, "-o", out, "--quality", "37.6").exit_code == 0
    made = (out / "x.nic").read_bytes()
    (out / "x.nic").write_bytes(made[:-10])
    header, sections = nicformat.unpack((out / "y.nic").read_bytes())
    other = nicformat.Header(**{**header.__dict__, "model_hash": bytes(8)})
    (out / "y.nic").write_bytes(nicformat.pack(other, sections))
    result = run("encode", src, "-o", out, "--quality", "37.6")
    assert "0 encoded, 1 up to date, 2 kept" in result.stdout, result.stdout + result.stderr
    assert f"{out / 'x.nic'} is {len(made) - 10:,} bytes where its header gives {len(made):,} (truncated or damaged)" \
        in result.stderr
    assert f"{out / 'y.nic'} was made by another export of {header.model_id} (model hash 0000000000000000, not " \
        in result.stderr
    result = run("encode", src, "-o", out, "--quality", "37.5")
    assert "0 up to date, 3 kept" in result.stdout and "was made at quality 37.6, not 37.5" in result.stderr
    assert (out / "x.nic").read_bytes() == made[:-10]

def test_encode_tree_to_a_rate_target(tmp_path):
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    result = run("encode", src, "-o", tmp_path / "out", "--target-bpp", "0.001")
    assert result.exit_code == 0, result.output
    assert "3 encoded" in result.stdout
    assert result.stderr.count("warning: ") == 3 and "0.001 bpp was not met" in result.stderr
    assert all(nicformat.read_header(p.read_bytes())[0].quality == 1 for p in (tmp_path / "out").rglob("*.nic"))
    result = run("encode", src, "-o", tmp_path / "small", "--max-bytes", "30")
    assert result.exit_code == 1
    assert "3 failed" in result.stdout and result.stderr.count("no file of at most 30 bytes") == 3
    assert not list((tmp_path / "small").rglob("*.nic"))


def test_outputs_that_differ_only_in_case_are_refused(tmp_path):
    # One file on macOS, Windows and FAT drives: with --force one would silently replace the other.
    src = tmp_path / "src"
    (src / "A").mkdir(parents=True)
    (src / "a").mkdir()
    Image.fromarray(synthetic_photo(48, 48, seed=1)).save(src / "Photo.png")
    Image.fromarray(synthetic_photo(48, 48, seed=2)).save(src / "photo.jpg", quality=95)
    Image.fromarray(synthetic_photo(48, 48, seed=3)).save(src / "A" / "x.png")
    Image.fromarray(synthetic_photo(48, 48, seed=4)).save(src / "a" / "x.png")
    Image.fromarray(synthetic_photo(48, 48, seed=5)).save(src / "other.png")
    result = run("encode", src, "-o", tmp_path / "out", "--force")
    assert result.exit_code == 1
    assert "4 failed" in result.stdout and result.stderr.count("ignore case or Unicode normal form") == 4
    assert f"{src / 'photo.jpg'} would be written to {tmp_path / 'out' / 'photo.nic'}" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.nic")) == ["other.nic"]


def test_inputs_that_would_share_an_output_are_both_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(64, 64, seed=1)).save(src / "a.png")
    Image.fromarray(synthetic_photo(64, 64, seed=2)).save(src / "a.jpg", quality=95)
    Image.fromarray(synthetic_photo(64, 64, seed=3)).save(src / "b.png")
    for extra in ([], ["--force"]):
        result = run("encode", src, "-o", tmp_path / "out", *extra)
        assert result.exit_code == 1
        assert "would be written to" in result.stderr and "rename one" in result.stderr
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.nic"]
    assert "ignore case" not in result.stderr
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        result = run("encode", src, "-o", out)
        assert result.exit_code == 1 and "a file" in result.stderr and "internal error" not in result.stderr


def test_several_files_named_on_the_command_line(tmp_path):
    """``nicodec encode *.png -o out/``: a batch of the files given, into OUTPUT or beside each."""
    src = make_tree(tmp_path / "src")
    one, two, top = src / "a" / "one.png", src / "a" / "b" / "two.jpg", src / "top.webp"
    missing, text = src / "missing.png", src / "notes.txt"
    result = run("encode", one, two, one, top, missing, text, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "5 files: 3 encoded, 0 up to date, 0 kept, 2 failed" in result.stdout  # one.png named twice, coded once
    assert f"failed: {missing}" in result.stderr and f"failed: {text}" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.nic", "top.nic", "two.nic"]
    direct = run("encode", one, "-o", tmp_path / "direct.nic")
    assert direct.exit_code == 0 and (tmp_path / "direct.nic").read_bytes() == (tmp_path / "out" / "one.nic").read_bytes()
    # Again: the outputs are up to date; the missing input still fails, now seen before any work.
    result = run("encode", one, two, missing, "-o", tmp_path / "out")
    assert "3 files: 0 encoded, 2 up to date, 0 kept, 1 failed" in result.stdout
    # Without -o, beside each input; then decoded the same way.
    result = run("encode", one, top)
    assert result.exit_code == 0 and (src / "a" / "one.nic").exists() and (src / "top.nic").exists()
    result = run("decode", src / "a" / "one.nic", src / "top.nic", "-o", tmp_path / "back")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["one.png", "top.png"]


def test_a_missing_file_named_blocks_no_other_files_output(tmp_path):
    """``nicodec encode a/x.png a/x.jpg`` with no a/x.jpg: both failed, as outputs colliding in
    a/x.nic (and with a/x.nic named, as an output replacing an input), hiding "no such file"."""
    (tmp_path / "a").mkdir()
    Image.fromarray(synthetic_photo(48, 48, seed=2)).save(tmp_path / "a" / "x.png")
    for other in ("x.jpg", "x.nic"):
        (tmp_path / "a" / "x.nic").unlink(missing_ok=True)
        result = run("encode", tmp_path / "a" / "x.png", tmp_path / "a" / other)
        assert result.exit_code == 1 and "2 files: 1 encoded, 0 up to date, 0 kept, 1 failed" in result.stdout
        assert result.stderr == f"failed: {tmp_path / 'a' / other}: no such file\n", result.stderr
        assert (tmp_path / "a" / "x.nic").is_file()
    # One that is there is an input all the same: no output may replace it, --force or not.
    result = run("encode", tmp_path / "a" / "x.png", tmp_path / "a" / "x.nic", "--force")
    assert result.exit_code == 1 and "would replace" in result.stderr and "0 encoded" in result.stdout


@pytest.mark.parametrize(
    "extra, message, code",
    [(["-"], "an input on its own", 2), (["FOLDER"], "give one folder, or several files", 1),
     (["-o", "OUT/x.nic"], "is named like a file", 1), (["-o", "FILE"], "is a file", 1),
     (["-o", "-"], "one file to standard", 2)],  # 2: arguments that cannot go together, whatever the files
)
def test_several_inputs_mistakes_are_refused_before_any_work(tmp_path, extra, message, code):
    src = make_tree(tmp_path / "src")
    (tmp_path / "file").write_text("x")
    swap = {"FOLDER": str(src / "a"), "OUT/x.nic": str(tmp_path / "x.nic"), "FILE": str(tmp_path / "file")}
    result = run("encode", src / "a" / "one.png", src / "top.webp", *[swap.get(e, e) for e in extra])
    said = " ".join(result.stderr.replace("│", " ").split())
    assert result.exit_code == code and message in said
    if extra == ["FOLDER"]:  # named: a wildcard's matches may be hundreds
        assert f"({src / 'a'} is a folder)" in said
    assert not list(tmp_path.rglob("*.nic")) and not (tmp_path / "x.nic").exists()


def test_one_file_however_it_is_named(tmp_path, monkeypatch):
    """Duplicates and collisions are found by the file, not by how its path is written."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(synthetic_photo(48, 48, seed=1)).save("a.png")
    Image.fromarray(synthetic_photo(48, 48, seed=2)).save("a.jpg", quality=95)
    result = run("encode", "a.png", tmp_path / "a.png", "./a.png")
    assert result.exit_code == 0 and "1 file: 1 encoded" in result.stdout
    result = run("encode", "a.png", tmp_path / "a.jpg", "--force")  # both would make a.nic
    assert result.exit_code == 1 and "2 failed" in result.stdout and "rename one" in result.stderr
    result = run("encode", "a.nic", "a.png", "--force")  # a.nic would be written over itself
    assert "failed: a.nic is a nicodec file already" in result.stderr  # what it is, found first, as for one file
    assert "a.png: the output a.nic would replace a.nic, an input of this run" in result.stderr
    Path("b.nic").write_bytes(Path("a.png").read_bytes())  # an image named .nic: its own output
    result = run("encode", "b.nic", "a.png", "--force")
    assert "the output b.nic would be the input" in result.stderr


def test_an_output_that_is_another_input_is_never_written(tmp_path, monkeypatch):
    """An image named x.nic is refused as its own output; x.png's output is that input too, and
    --force replaced it (a review, 2026-12-04). Now both fail, with or without --force."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(synthetic_photo(48, 48, seed=1)).save("x.png")
    Image.fromarray(synthetic_photo(48, 48, seed=2)).save("x.nic", format="JPEG")
    os.utime("x.nic", (1, 1))  # older than x.png: without the check, kept without --force, replaced with it
    before = Path("x.nic").read_bytes()
    for force in ([], ["--force"], ["-f", "--jobs", "2"]):
        result = run("encode", "x.png", "./x.nic", *force)
        assert result.exit_code == 1 and "0 encoded" in result.stdout and "2 failed" in result.stdout
        assert "x.png: the output x.nic would replace x.nic, an input of this run" in result.stderr
        assert Path("x.nic").read_bytes() == before and sorted(os.listdir()) == ["x.nic", "x.png"]
    # Decoding: p.png, a .nic file of another name, is an input, and p.nic's output.
    assert run("encode", "x.png", "-o", "p.nic").exit_code == 0
    Path("p.png").write_bytes(Path("p.nic").read_bytes())
    os.utime("p.png", (1, 1))
    result = run("decode", "p.nic", "p.png", "--force")
    assert "p.nic: the output p.png would replace p.png, an input of this run" in result.stderr
    assert Path("p.png").read_bytes() == Path("p.nic").read_bytes()


def test_unicode_forms_collide_but_distinct_letters_do_not():
    from nicodec.batch_plan import Item, collisions

    nfc, nfd = "caf\u00e9.nic", "cafe\u0301.nic"
    items = [Item(Path(f"src/{i}.png"), Path("out") / name)
             for i, name in enumerate([nfc, nfd, "Stra\u00dfe.nic", "Strasse.nic"])]
    assert set(collisions(items)) == set(items[:2])


def test_batch_messages_name_each_file_once_and_say_what_a_kept_file_may_be(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(48, 48, seed=1)).save(src / "a.png")
    missing = src / "missing.png"
    too_long = src / ("x" * 300 + ".png")
    result = run("encode", src / "a.png", missing, too_long)
    assert "3 files: 1 encoded, 0 up to date, 0 kept, 2 failed" in result.stdout  # the long name fails alone
    assert f"failed: {missing}: no such file" in result.stderr and f"{missing}: {missing}" not in result.stderr
    # Decoding beside the originals: the PNG that is there is the photo itself.
    result = run("decode", src / "a.nic")
    assert result.exit_code == 1 and "exists" in result.stderr
    os.utime(src / "a.png", (1, 1))
    result = run("decode", src / "a.nic", src / "a.nic")
    assert "kept" in result.stdout and "if it is an original rather than an earlier output" in result.stderr
    assert f"older than {src / 'a.nic'}" in result.stderr  # the input with its folder
    # Encoding: the image may have been decoded from the .nic, and --force would code that copy.
    os.utime(src / "a.nic", (1, 1))
    os.utime(src / "a.png", None)
    result = run("encode", src / "a.png", src / "a.png")
    assert (f"kept: {src / 'a.nic'} exists and is older than {src / 'a.png'}; --force replaces it (if the image "
            "was decoded from it, --force codes that copy again, losing more; use -o)\n") in result.stderr
    # Into another folder (-o given): no advice to use -o.
    out = tmp_path / "out"
    assert run("encode", src / "a.png", src / "a.png", "-o", out).exit_code == 0
    os.utime(out / "a.nic", (1, 1))
    result = run("encode", src / "a.png", src / "a.png", "-o", out)
    assert f"kept: {out / 'a.nic'} exists and is older than {src / 'a.png'}; --force replaces it\n" in result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_output_that_is_a_pipe_or_a_link_to_nothing_is_found_before_the_work(tmp_path):
    """A named pipe where an output goes hung the batch for good, before any file was coded
    (what an existing output holds was read to compare it, and opening a pipe waits for a
    writer); a link to nothing was found only as the finished file was moved in, after the
    work, and so again on every run."""
    import subprocess

    src = tmp_path / "src"
    src.mkdir()
    for name in "abc":
        Image.fromarray(synthetic_photo(48, 48, seed=1)).save(src / f"{name}.png")
    os.mkfifo(src / "a.nic")
    os.symlink("nowhere.nic", src / "b.nic")
    done = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(src)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "3 files: 1 encoded, 0 up to date, 1 kept, 1 failed" in done.stdout, done.stdout
    assert f"{src / 'a.nic'} is not a regular file; nicodec writes regular files only" in done.stderr
    assert f"kept: {src / 'b.nic'} is a link to a file that does not exist; --force replaces the link" in done.stderr
    assert (src / "c.nic").is_file() and os.path.islink(src / "b.nic")
    single = run("encode", src / "b.png")
    assert single.exit_code == 1
    assert f"{src / 'b.nic'} is a link to a file that does not exist; use --force to replace the link" in single.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_input_that_is_a_pipe_counts_the_bytes_read_from_it(tmp_path):
    """A pipe among a batch's inputs (``<(cat a.png)``) counted its size on disk, 0, in the
    summary's "kB in"; it counts what was read from it now, and codes as the file would."""
    import threading

    Image.fromarray(synthetic_photo(48, 64, seed=2)).save(tmp_path / "a.png")
    Image.fromarray(synthetic_photo(48, 64, seed=3)).save(tmp_path / "b.png")
    os.mkfifo(tmp_path / "piped")
    content = (tmp_path / "a.png").read_bytes()

    def feed():
        with open(tmp_path / "piped", "wb") as pipe:
            pipe.write(content)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = run("encode", tmp_path / "piped", tmp_path / "b.png", "-o", tmp_path / "out", "--jobs", "1")
    writer.join(timeout=60)
    assert result.exit_code == 0, result.output
    kb = (len(content) + (tmp_path / "b.png").stat().st_size) / 1e3
    assert f"2 files: 2 encoded, 0 up to date, 0 kept, 0 failed; {kb:.1f} kB in" in result.stdout
    from_file = run("encode", tmp_path / "a.png", "-o", tmp_path / "a.nic")
    assert from_file.exit_code == 0
    assert (tmp_path / "out" / "piped.nic").read_bytes() == (tmp_path / "a.nic").read_bytes()


def test_an_interrupted_batch_says_how_many_files_it_wrote(tmp_path, monkeypatch):
    import nicodec.batch as batch

    src = make_tree(tmp_path / "src")

    def interrupted(items, work, *, force, jobs, on_outcome, differs=None, on_stop=None):
        on_outcome(work(items[0]))
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run", interrupted)
    result = run("encode", src, "-o", tmp_path / "out")
    assert result.exit_code == 130
    assert "interrupted after 1 file encoded; no file was left half-written" in result.stderr


def _encode_failing_on_the_second_call(monkeypatch, fail):
    """Patch ``Codec.encode`` so that its second call (the second file of a batch) runs ``fail``
    first; every call's image is recorded, in order."""
    import threading

    from nicodec.codec import Codec

    real, calls, lock = Codec.encode, [], threading.Lock()

    def encode(self, image, **options):
        with lock:
            calls.append(image)
            second = len(calls) == 2
        if second:
            fail()
        return real(self, image, **options)

    monkeypatch.setattr(Codec, "encode", encode)
    return calls


def _raise(error):
    def fail():
        raise error

    return fail


@pytest.mark.parametrize("jobs", [1, 3])
def test_memory_running_out_in_a_batch_names_the_options_that_need_less(tmp_path, monkeypatch, jobs):
    """A file's out-of-memory failure names --tile, as a single file's does, and with several
    jobs the jobs too: each file coded at once holds its image in memory."""
    from nicodec.errors import OutOfMemoryError

    src = _six_images(tmp_path / "src")
    _encode_failing_on_the_second_call(monkeypatch, _raise(OutOfMemoryError("out of memory: onnxruntime could not "
                                                                            "allocate 8 bytes")))
    result = run("encode", src, "-o", tmp_path / "out", "--jobs", jobs)
    assert result.exit_code == 1, result.output
    [failed] = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert failed.endswith("could not allocate 8 bytes (--tile 256 sets the tile size)"
                           + (" (3 files are coded at once, each with its image in memory: fewer --jobs need less)"
                              if jobs > 1 else "")), failed
    assert len(list((tmp_path / "out").rglob("*.nic"))) == 5


def _temporaries(folder):
    """What write_atomic writes before its rename: hidden ``.NAME.TOKEN.part`` files."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")]


def _six_images(root):
    root.mkdir()
    for i in range(6):
        Image.fromarray(synthetic_photo(48, 64, seed=i)).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_an_output_folder_gone_mid_batch_is_not_made_again(tmp_path, monkeypatch, command):
    """A drive unmounted (or the output folder removed) while a batch ran: the folder was made
    again on the disk beneath and the rest of the batch written there, reported as written."""
    import shutil

    from nicodec.codec import Codec

    src = _six_images(tmp_path / "src")
    if command == "decode":
        for png in list(src.iterdir()):
            png.with_suffix(".nic").write_bytes(Codec().encode(png))
            png.unlink()
    out = tmp_path / "drive" / "archive"
    real, calls = getattr(Codec, command), []

    def unmounted_after_the_second(self, source, **options):
        done = real(self, source, **options)
        calls.append(source)
        if len(calls) == 2:
            shutil.rmtree(tmp_path / "drive")
        return done

    monkeypatch.setattr(Codec, command, unmounted_after_the_second)
    result = run(command, src, "-o", out)
    assert result.exit_code == 1
    assert f"6 files: 1 {command}d, 0 up to date, 0 kept, 5 failed" in result.stdout
    gone = f"the output folder {out} is no longer there (removed, or its drive unmounted, since the run began); " \
           "nothing was written for it"
    assert result.stderr.count(gone) == 4  # 3 files named, then "and 2 more files for the same reason"
    assert f"failed: and 2 more files for the same reason: {gone}" in result.stderr
    assert len(calls) == 2  # the files after it are refused before they are coded
    assert not (tmp_path / "drive").exists()


def test_a_batch_logs_its_progress_where_stderr_is_no_terminal(tmp_path, monkeypatch):
    """A cron job's log, CI or nohup saw nothing for the whole run (9 min 52 s for 20,000
    files), a hang and progress alike: a line every LOG_EVERY seconds now."""
    from nicodec import cli_batch

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        Image.fromarray(synthetic_photo(32, 48, seed=i)).save(src / f"{i}.png")
    assert run("encode", src, "-o", tmp_path / "quiet").stderr == ""  # quicker than a line
    monkeypatch.setattr(cli_batch, "LOG_EVERY", 0.0)
    result = run("encode", src, "-o", tmp_path / "out")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert [int(re.fullmatch(r"encode: (\d) of 4 files, [\d.]+ files/s(, about \d+ seconds? left)?", line)[1])
            for line in lines] == [1, 2, 3, 4]
    assert "left" not in lines[-1]


def test_a_batch_counts_its_failures_as_they_come(tmp_path, monkeypatch):
    """Failures are listed at the end, so a long run in which file after file failed showed
    nothing of it until then, on the bar or in a log: each now says how many have failed."""
    import io

    from nicodec import cli_batch, console

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_photo(32, 48, seed=i)).save(src / f"{i}.png")
    (src / "1a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # the third of four
    monkeypatch.setattr(cli_batch, "LOG_EVERY", 0.0)
    result = run("encode", src, "-o", tmp_path / "log", "--jobs", "1")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith("failed: ")]
    assert [re.fullmatch(r"encode: \d of 4 files, [\d.]+ files/s(, 1 failed)?(, about \d+ seconds? left)?", line)[1]
            for line in lines] == [None, None, ", 1 failed", ", 1 failed"], result.stderr
    screen = io.StringIO()
    monkeypatch.setattr(console, "err", console._Console(file=screen, force_terminal=True, width=200))
    assert run("encode", src, "-o", tmp_path / "bar", "--jobs", "1").exit_code == 1
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert re.search(r" 4/4 [\d.]+ files/s, [\d.]+ MB/s, 1 failed ", shown), shown


def test_the_progress_lines_of_a_batch_come_a_minute_apart(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from nicodec import cli_batch

    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        Image.fromarray(synthetic_photo(32, 48, seed=i)).save(src / f"{i}.png")
    clock = iter(range(0, 10_000, 25))  # each file seen 25 s after the last
    monkeypatch.setattr(cli_batch, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    result = run("encode", src, "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == ["encode: 3 of 8 files, 0.0 files/s, about 2 minutes left",
                                          "encode: 6 of 8 files, 0.0 files/s, about 50 seconds left"]


@pytest.mark.parametrize("freed", [False, True])
def test_a_full_disk_fails_the_files_still_to_write_before_they_are_coded(tmp_path, monkeypatch, freed):
    """A disk full after the first 100 files of 1,000 had every other file coded, to fail at
    its write, each with its own line: the rest now fail before they are coded, while no room
    is made, and the lines of that cause are listed for the first few files, then counted."""
    import errno

    from nicodec import targets
    from nicodec.codec import Codec

    looked = []

    def free(folder):  # the disk's free bytes as the batch sees them: at the failed write, then after
        looked.append(folder)
        return 5_000_000 if freed and len(looked) > 1 else 1_000  # another program's files removed: room again

    monkeypatch.setattr(targets.FullDisks, "_free", staticmethod(free))

    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        Image.fromarray(synthetic_photo(32, 48, seed=i)).save(src / f"{i}.png")
    real_encode, real_fsync, coded, synced = Codec.encode, os.fsync, [], []

    def encode(self, image, **options):
        coded.append(image)
        return real_encode(self, image, **options)

    def fsync(fd):
        synced.append(fd)
        if len(synced) == 3 or len(synced) > 2 and not freed:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(Codec, "encode", encode)
    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out"
    result = run("encode", src, "-o", out)
    monkeypatch.undo()
    assert result.exit_code == 1
    if freed:
        assert "8 files: 7 encoded, 0 up to date, 0 kept, 1 failed" in result.stdout and len(coded) == 8
        return
    assert "8 files: 2 encoded, 0 up to date, 0 kept, 6 failed" in result.stdout
    assert len(coded) == 3 and sorted(path.name for path in out.iterdir()) == ["0.nic", "1.nic"]
    lines = result.stderr.splitlines()
    assert lines[0] == f"failed: {src / '2.png'}: cannot write {out / '2.nic'}: No space left on device"
    why = f"not coded: the disk of {out} was full (cannot write {out / '2.nic'}: No space left on device); free " \
          "some space and run again to code the rest"
    assert lines[1:] == [f"failed: {src / f'{i}.png'}: {why}" for i in (3, 4, 5)] + \
        [f"failed: and 2 more files for the same reason: {why}"]
    assert run("encode", src, "-o", out).stdout.startswith("8 files: 6 encoded, 2 up to date")  # room again


def test_files_that_fail_alike_of_their_own_are_each_named(tmp_path):
    """Only a cause that is the output's place (a full disk) is counted after a few files: five
    damaged files with one message are five files to find."""
    from nicodec.codec import Codec

    src = tmp_path / "src"
    src.mkdir()
    data = Codec().encode(Image.fromarray(synthetic_photo(32, 48, seed=1)))
    for i in range(5):
        (src / f"cut{i}.nic").write_bytes(data[:-20])
    result = run("decode", src, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "5 files: 0 decoded, 0 up to date, 0 kept, 5 failed" in result.stdout
    assert [line.split(":")[0:2] for line in result.stderr.splitlines()] == \
        [["failed", f" {src / f'cut{i}.nic'}"] for i in range(5)]


def test_an_output_that_is_a_link_to_its_own_input_is_refused(tmp_path):
    """The batch's setup resolves a link among the outputs (out/a.nic leading to the .nic file
    being decoded... or here to the image being encoded) to the file it leads to."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(32, 48, seed=1)).save(src / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.nic").symlink_to(src / "a.png")
    result = run("encode", src, "-o", out, "--force")
    assert result.exit_code == 1
    assert f"failed: {src / 'a.png'}: the output {out / 'a.nic'} would be the input; write elsewhere with -o" \
        in result.stderr
    assert (src / "a.png").stat().st_size > 0 and opened(src / "a.png").size == (48, 32)


def test_outputs_kept_for_one_reason_are_listed_for_the_first_few_then_counted(tmp_path, monkeypatch):
    """A rerun after ``touch photos/*`` listed every output kept, 20,000 lines for 20,000 files;
    a few (photos edited since) are each named."""
    from nicodec import cli_batch

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        Image.fromarray(synthetic_photo(32, 48, seed=i)).save(src / f"{i}.png")
    Image.fromarray(synthetic_photo(32, 48, seed=9)).save(src / "x.png")
    out = tmp_path / "out"
    assert run("encode", src, "-o", out).exit_code == 0
    for path in out.iterdir():
        os.utime(path, (1, 1))
    (out / "x.nic").write_bytes(b"not a nic file")
    result = run("encode", src, "-o", out)
    assert result.exit_code == 0 and "6 files: 0 encoded, 0 up to date, 6 kept" in result.stdout
    older = [f"kept: {out / f'{i}.nic'} exists and is older than {src / f'{i}.png'}; --force replaces it"
             for i in range(5)]
    lines = result.stderr.splitlines()
    assert lines[:5] == older and lines[5].startswith(f"kept: {out / 'x.nic'} ") and len(lines) == 6
    monkeypatch.setattr(cli_batch, "KEPT_NAMED", 4)
    lines = run("encode", src, "-o", out).stderr.splitlines()
    assert lines[:3] == older[:3]
    assert lines[3:] == [f"kept: and 2 more outputs for the same reason as {out / '0.nic'}",
                         lines[4]] and lines[4].startswith(f"kept: {out / 'x.nic'} ")


def test_an_input_replaced_while_it_is_coded_is_not_written_as_up_to_date(tmp_path, monkeypatch):
    """A folder filled as the batch runs (rsync, a camera): the file replaced while it was coded
    got an output of its old content, newer than the new file, which every later run then took
    as up to date; the report counted the new file's size. It fails now, and the next run codes it."""
    import os

    import threading

    from nicodec.codec import Codec

    src = _six_images(tmp_path / "src")
    sizes = {path.name: path.stat().st_size for path in src.iterdir()}
    real, calls, lock = Codec.encode, [], threading.Lock()

    def encode(self, image, **options):  # the second file is replaced by a larger image once it is read
        with lock:
            calls.append(image)
            second = len(calls) == 2
        data = real(self, image, **options)
        if second:
            path = Path(image)
            Image.fromarray(synthetic_photo(96, 128, seed=9)).save(path.with_suffix(".new.png"))
            os.replace(path.with_suffix(".new.png"), path)
        return data

    monkeypatch.setattr(Codec, "encode", encode)
    result = run("encode", src, "-o", tmp_path / "out")
    assert result.exit_code == 1
    changed = Path(calls[1])
    assert f"failed: {changed}: it changed while it was being coded; nothing was written for it" in result.stderr
    assert not (tmp_path / "out" / changed.with_suffix(".nic").name).exists()
    assert _temporaries(tmp_path / "out") == []
    done = [c for c in map(Path, calls) if c != changed]
    assert "6 files: 5 encoded, 0 up to date, 0 kept, 1 failed" in result.stdout
    kb = sum(sizes[c.name] for c in done) / 1e3
    assert f"{kb:.1f} kB in" in result.stdout  # the five files coded

    monkeypatch.undo()
    again = run("encode", src, "-o", tmp_path / "out")
    assert again.exit_code == 0 and "6 files: 1 encoded, 5 up to date" in again.stdout
    assert nicformat.read_header((tmp_path / "out" / changed.with_suffix(".nic").name).read_bytes())[0].width == 128


def test_a_rerun_with_a_smaller_max_bytes_keeps_the_files_above_it(tmp_path):
    """They were "up to date": a size limit the file provably breaks, from its size alone. One
    it is well under, below the top quality, is up to date with a note (a budget raised since:
    a higher quality may fit; or a small image whose search ended there)."""
    src = _six_images(tmp_path / "src")
    assert run("encode", src, "-o", tmp_path / "out", "--quality", "90").exit_code == 0
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "out").iterdir()}
    limit = sorted(sizes.values())[2]  # the files above it break it; one of its size does not
    big = sorted(name for name, size in sizes.items() if size > limit)
    assert 0 < len(big) < 6, sizes  # up to three (the model's sizes may tie)
    result = run("encode", src, "-o", tmp_path / "out", "--max-bytes", limit)
    assert result.exit_code == 0, result.output
    assert f"6 files: 0 encoded, {6 - len(big)} up to date, {len(big)} kept, 0 failed" in result.stdout
    kept = sorted(line for line in result.stderr.splitlines() if line.startswith("kept: "))
    assert kept == [f"kept: {tmp_path / 'out' / name} is {sizes[name]:,} bytes, more than --max-bytes {limit:,}; "
                    "--force replaces it" for name in big]
    small = sorted(name for name, size in sizes.items() if size < 0.9 * limit)
    noted = sorted(line for line in result.stderr.splitlines() if line.startswith("note: "))
    assert noted == [f"note: {tmp_path / 'out' / name} is {sizes[name]:,} bytes at quality 90, well under --max-bytes "
                     f"{limit:,}: counted up to date, but perhaps made for another target (--force codes it anew)"
                     for name in small]
    # Made for that budget, a rerun finds them up to date and says nothing more.
    assert run("encode", src, "-o", tmp_path / "fit", "--max-bytes", limit).exit_code == 0
    again = run("encode", src, "-o", tmp_path / "fit", "--max-bytes", limit)
    assert "6 files: 0 encoded, 6 up to date, 0 kept" in again.stdout and "note:" not in again.stderr, again.stderr


def test_a_rerun_with_another_bpp_target_notes_the_files_made_for_the_first(tmp_path):
    """They were "up to date" whatever the target, without a word: a file's bits per pixel, from
    its size and header, suggests one made for a target far from this one, unless this one is
    out of reach that way (quality 100 gives less, quality 1 more); what the header does not
    record is noted too. Notes, not "kept": a small or flat image may end far from its target."""
    src = _six_images(tmp_path / "src")
    for i in range(6, 13):
        Image.fromarray(synthetic_photo(48, 64, seed=i)).save(src / f"{i}.png")
    assert run("encode", src, "-o", tmp_path / "out", "--target-bpp", "0.8").exit_code == 0
    same = run("encode", src, "-o", tmp_path / "out", "--target-bpp", "0.8")
    assert "13 files: 0 encoded, 13 up to date, 0 kept" in same.stdout and "note:" not in same.stderr
    other = run("encode", src, "-o", tmp_path / "out", "--target-bpp", "2")
    assert "13 files: 0 encoded, 13 up to date, 0 kept" in other.stdout
    notes = [line for line in other.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 6 and notes[-1] == "note: and 8 files more like them", other.stderr
    assert all("far from --target-bpp 2: counted up to date, but perhaps made for another target" in n for n in notes[:5])
    # Out of reach: quality 100 gives less than 30 bpp, so those files are what --target-bpp 30 would make.
    assert run("encode", src, "-o", tmp_path / "top", "--quality", "100").exit_code == 0
    top = run("encode", src, "-o", tmp_path / "top", "--target-bpp", "30", "--strip")
    assert "13 files: 0 encoded, 13 up to date, 0 kept" in top.stdout, top.stdout + top.stderr
    assert top.stderr.strip() == ("note: 13 files up to date by their dates and headers, which do not record --strip "
                                  "(--force codes every file anew)")
    # --restoration is not recorded either (its section is written only where it pays): it was not named.
    restored = run("encode", src, "-o", tmp_path / "top", "--quality", "100", "--restoration")
    assert "13 files: 0 encoded, 13 up to date, 0 kept" in restored.stdout
    assert restored.stderr.strip() == ("note: 13 files up to date by their dates and headers, which do not record "
                                       "--restoration (--force codes every file anew)")


def test_a_decode_rerun_keeps_outputs_that_are_empty_or_damaged(tmp_path):
    """They were up to date, being newer than their .nic files; encoding's rerun keeps a cut-short .nic."""
    src = _six_images(tmp_path / "src")
    assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
    assert run("decode", tmp_path / "nic", "-o", tmp_path / "back").exit_code == 0
    back = tmp_path / "back"
    (back / "0.png").write_bytes(b"")
    (back / "1.png").write_text("notes")
    whole = (back / "2.png").read_bytes()
    (back / "2.png").write_bytes(whole[: len(whole) // 2])
    result = run("decode", tmp_path / "nic", "-o", back)
    assert result.exit_code == 0, result.output
    assert "6 files: 0 decoded, 3 up to date, 3 kept, 0 failed" in result.stdout
    kept = sorted(line for line in result.stderr.splitlines() if line.startswith("kept: "))
    assert kept[0] == f"kept: {back / '0.png'} is empty; --force replaces it"
    assert kept[1].startswith(f"kept: {back / '1.png'} cannot be read as an image (")
    assert kept[2].startswith(f"kept: {back / '2.png'} cannot be read as an image (")
    assert (back / "1.png").read_text() == "notes"  # kept as it was
    assert run("decode", tmp_path / "nic", "-o", back, "--force").exit_code == 0
    assert (back / "2.png").read_bytes() == whole


@pytest.mark.parametrize(("suffix", "said"), [
    (".jpg", "cannot be read as an image (image file is truncated"),
    (".tiff", "is cut short ({size:,} bytes where its header places pixels up to {whole:,})"),
    (".bmp", "is cut short ({size:,} bytes where its header places pixels up to {whole:,})"),
    (".avif", "cannot be read as an image ("),
])
def test_a_decode_rerun_keeps_outputs_cut_short_in_formats_verify_does_not_check(tmp_path, suffix, said):
    """Pillow's verify checks a PNG's chunks and nothing of these (of an AVIF, its boxes): a
    JPEG, TIFF, BMP or AVIF output cut short (a copy that stopped) was up to date, its missing
    rows never written again. TIFF and BMP are told from their headers and size, JPEG decoded
    when it does not end with its end-of-image marker."""
    src = _six_images(tmp_path / "src")
    assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
    back = tmp_path / "back"
    assert run("decode", tmp_path / "nic", "-o", back, "--format", suffix).exit_code == 0
    whole = (back / f"0{suffix}").read_bytes()
    (back / f"0{suffix}").write_bytes(whole[:-10])
    result = run("decode", tmp_path / "nic", "-o", back, "--format", suffix)
    assert result.exit_code == 0, result.output
    assert "6 files: 0 decoded, 5 up to date, 1 kept, 0 failed" in result.stdout, result.stdout
    kept = [line for line in result.stderr.splitlines() if line.startswith("kept: ")]
    assert len(kept) == 1, result.stderr
    assert kept[0].startswith(f"kept: {back / f'0{suffix}'} {said.format(size=len(whole) - 10, whole=len(whole))}")
    assert kept[0].endswith("; --force replaces it")
    assert (back / f"0{suffix}").read_bytes() == whole[:-10]  # kept as it was
    assert run("decode", tmp_path / "nic", "-o", back, "--format", suffix, "--force").exit_code == 0
    assert (back / f"0{suffix}").read_bytes() == whole


def test_an_interrupted_batch_lists_the_failures_before_it(tmp_path, monkeypatch):
    """They were listed only at a batch's end, which an interrupted batch never reaches."""
    from nicodec.codec import Codec

    src = _six_images(tmp_path / "src")
    (src / "0b.png").write_text("notes, not an image")  # coded second, in name order
    real = Codec.encode

    def encode(self, image, **options):
        if Path(image).name == "2.png":
            raise KeyboardInterrupt
        return real(self, image, **options)

    monkeypatch.setattr(Codec, "encode", encode)
    result = run("encode", src, "-o", tmp_path / "out", "--jobs", "1")
    assert result.exit_code == 130, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and str(src / "0b.png") in failed[0], result.stderr
    assert result.stderr.index("failed: ") < result.stderr.index("interrupted after ")


def test_a_failure_line_names_its_own_file_not_another_whose_name_holds_it(tmp_path):
    """a.png's collision with sub/a.png was "failed: sub/a.png would be written ..." (its own name
    was taken as said already, being part of sub/a.png); a three-way clash listed a target twice."""
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/a.png", "sub/A.jpg"):
        Image.fromarray(synthetic_photo(16, 16)).save(tmp_path / name)
    result = run("encode", tmp_path / "a.png", tmp_path / "sub" / "a.png", tmp_path / "sub" / "A.jpg",
                 "-o", tmp_path / "out")
    assert result.exit_code == 1
    failed = sorted(line for line in result.stderr.splitlines() if line.startswith("failed: "))
    out = tmp_path / "out"
    assert failed[0] == (f"failed: {tmp_path / 'a.png'}: {tmp_path / 'sub' / 'a.png'} would be written to {out / 'a.nic'} "
                         f"too; {tmp_path / 'sub' / 'A.jpg'} would be written to {out / 'A.nic'}, the same file as "
                         f"{out / 'a.nic'} on file systems that ignore case or Unicode normal form (macOS, Windows, "
                         "FAT drives), or by another path; rename one of them")
    assert f"{tmp_path / 'a.png'}, {tmp_path / 'sub' / 'a.png'} would be written to {out / 'a.nic'}, the same" in failed[1]


def _interrupted_count(stderr) -> int:
    import re

    said = re.search(r"interrupted after (\d+) files? encoded; no file was left half-written", stderr)
    assert said, stderr
    return int(said.group(1))


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_in_a_real_batch_stops_it_and_leaves_no_temporary(tmp_path, monkeypatch, jobs):
    """The batch runner itself, not a stand-in for it: KeyboardInterrupt while the second file is
    encoded ends the batch with exit code 130, the files not yet started are dropped, and no file
    is left half-written."""
    src = _six_images(tmp_path / "src")
    calls = _encode_failing_on_the_second_call(monkeypatch, _raise(KeyboardInterrupt()))
    result = run("encode", src, "-o", tmp_path / "out", "--jobs", jobs)
    assert result.exit_code == 130, result.output
    written = sorted((tmp_path / "out").rglob("*.nic"))
    # A worker may take one more file before the others are cancelled; never the whole folder.
    assert len(calls) <= 2 + jobs < 6
    assert _interrupted_count(result.stderr) <= len(written) < len(calls)
    assert _temporaries(tmp_path / "out") == []
    assert all(nicformat.read_header(p.read_bytes())[0].width == 64 for p in written)
    assert " failed;" not in result.stdout  # no summary line: the batch did not finish


@pytest.fixture
def ctrl_c_raises():
    """Python's own Ctrl-C handler, as in a terminal, for the test's duration: a process that a
    shell without job control starts in the background (`nohup pytest &`) inherits SIGINT
    ignored, Python then installs no handler, and the signal would never arrive."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_in_a_batch_counts_every_file_it_wrote(tmp_path, monkeypatch, jobs, ctrl_c_raises):
    """docs/cli.md: "Ctrl-C says how many files were written". Ctrl-C reaches the main thread while a
    worker encodes the second file; that file (and, with two jobs, the other one in flight) is
    finished and written before the command exits, so it must be in the count."""
    import signal
    import threading

    main = threading.main_thread().ident
    src = _six_images(tmp_path / "src")
    _encode_failing_on_the_second_call(monkeypatch, lambda: signal.pthread_kill(main, signal.SIGINT))
    result = run("encode", src, "-o", tmp_path / "out", "--jobs", jobs)
    assert result.exit_code == 130, result.output
    written = sorted((tmp_path / "out").rglob("*.nic"))
    assert _interrupted_count(result.stderr) == len(written), (result.stderr, written)
    assert _temporaries(tmp_path / "out") == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_unexpected_error_on_one_file_does_not_stop_the_batch(tmp_path, monkeypatch, jobs):
    """Not only NicodecError: any exception from one file (a bug, a library's own error) is
    that file's failure, named with its reason, and the others are still written."""
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    (src / "notes.txt").unlink()  # which a note would count
    calls = _encode_failing_on_the_second_call(monkeypatch, _raise(RuntimeError("boom")))
    result = run("encode", src, "-o", tmp_path / "out", "--jobs", jobs)
    assert result.exit_code == 1, result.output
    assert "3 files: 2 encoded, 0 up to date, 0 kept, 1 failed" in result.stdout
    assert result.stderr == f"failed: {calls[1]}: internal error: RuntimeError: boom\n"
    assert len(list((tmp_path / "out").rglob("*.nic"))) == 2
    assert not (tmp_path / "out" / Path(calls[1]).relative_to(src)).with_suffix(".nic").exists()
    assert _temporaries(tmp_path / "out") == []


def test_folders_that_cannot_be_read_fail_rather_than_pass_unseen(tmp_path, monkeypatch):
    """A folder that cannot be listed, or listed but not entered (no permission), is a failure
    of encode, decode, verify and info, not a part of the tree passed over with exit code 0. (The
    permission errors are stood in for: this test may run as root.)"""
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    assert run("encode", src, "-o", tmp_path / "arch").exit_code == 0
    real_scandir, real_stat = os.scandir, os.stat
    locked, unenterable = {src / "a" / "b", tmp_path / "arch" / "a" / "b"}, {src / "top.webp", tmp_path / "arch" / "top.nic"}

    def scandir(path="."):
        if Path(path) in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def stat(path, *args, **kwargs):
        if Path(path) in unenterable:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)
    for args in (("encode", src, "-o", tmp_path / "again"), ("decode", tmp_path / "arch", "-o", tmp_path / "back"),
                 ("verify", tmp_path / "arch"), ("info", tmp_path / "arch")):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "internal error" not in result.stderr, args
        unread = Path(args[1]) / "a" / "b"
        assert f"{unread}: cannot read the folder: Permission denied" in result.stderr, args
        assert sum("Permission denied" in line for line in result.stderr.splitlines()) == 2, (args, result.stderr)
    assert (tmp_path / "again" / "a" / "one.nic").is_file()  # the readable rest is coded


def test_an_output_folder_inside_the_input_is_not_searched(tmp_path):
    """encode photos -o photos/archive, run twice, does not code the archive into itself."""
    src = make_tree(tmp_path / "src")
    (src / "a" / "b" / "broken.png").unlink()
    for _ in range(2):
        result = run("encode", src, "-o", src / "archive")
        assert result.exit_code == 0 and "it is not searched" in result.stderr
    assert not (src / "archive" / "archive").exists()
    result = run("decode", src / "archive", "-o", src / "archive" / "back")
    assert result.exit_code == 0 and "3 files: 3 decoded" in result.stdout
    result = run("decode", src / "archive", "-o", src / "archive" / "back")
    assert result.exit_code == 0 and "3 files: 0 decoded, 3 up to date" in result.stdout
    assert not (src / "archive" / "back" / "back").exists()


@pytest.fixture
def sigterm_raises():
    """SIGTERM and SIGHUP raising as ``nicodec.cli.main`` makes them, for the test's duration."""
    import signal

    from nicodec.stops import TERMINATING, stop_like_ctrl_c

    previous = {signum: signal.signal(signum, signal.SIG_DFL) for signum in TERMINATING}
    replaced = stop_like_ctrl_c()
    yield
    for signum, handler in [*replaced.items(), *previous.items()]:
        signal.signal(signum, handler)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGXCPU", 152)])
def test_sigterm_in_a_batch_stops_it_at_once(tmp_path, monkeypatch, jobs, name, code, sigterm_raises):
    """`timeout`, systemd and a closed terminal stop with SIGTERM or SIGHUP, a soft CPU-time
    limit with SIGXCPU (which ended the process at once, leaving temporaries): the files being
    coded are given up, never left as hidden temporaries, the count is the true one, and the
    exit code is 128 plus the signal's number."""
    import re
    import signal
    import threading
    import time

    from nicodec import batch

    main = threading.main_thread().ident
    src = _six_images(tmp_path / "src")

    def stop():
        # The second file is still being coded when the batch takes the stop: on a loaded machine
        # the main thread ran the handler only after that file ended (CI: "after 2 files encoded",
        # none unfinished, a true count but not the case this test is for).
        signal.pthread_kill(main, getattr(signal, name))
        deadline = time.monotonic() + 60
        while not batch.ABANDONED and time.monotonic() < deadline:
            time.sleep(0.01)

    _encode_failing_on_the_second_call(monkeypatch, stop)
    result = run("encode", src, "-o", tmp_path / "out", "--jobs", jobs)
    assert result.exit_code == code, result.output
    said = re.search(rf"stopped by {name} after (\d+) files? encoded; no file was left half-written "
                     r"\((1 file|2 files) being coded (was|were) left unfinished\)", result.stderr)
    assert said, result.stderr
    assert "stopping:" not in result.stderr  # no wait for the file being coded
    for thread in threading.enumerate():  # the worker given up on ends its file, and writes nothing
        if thread.name.startswith("ThreadPoolExecutor"):
            thread.join(timeout=60)
    assert int(said.group(1)) == len(list((tmp_path / "out").rglob("*.nic")))
    assert _temporaries(tmp_path / "out") == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_file_renamed_into_place_as_the_batch_is_given_up_is_counted_as_written(tmp_path, sigterm_raises):
    """A stop between a file's rename and its outcome's count said the file was left
    unfinished (and counted one written file fewer) while it lay there, whole."""
    import signal
    import threading
    import time

    from nicodec import batch
    from nicodec.files import write_atomic

    main = threading.main_thread().ident
    items = []
    for name in "abc":
        (tmp_path / f"{name}.png").write_bytes(b"source")
        items.append(batch.Item(tmp_path / f"{name}.png", tmp_path / f"{name}.nic"))
    reported, coded = [], []

    def work(item):
        coded.append(item.source.name)
        if item.source.name != "a.png":
            time.sleep(3)
        write_atomic(item.target, batch.unless_abandoned(lambda f: f.write(b"coded")))
        signal.pthread_kill(main, signal.SIGTERM)  # renamed into place, not yet counted
        time.sleep(0.5)
        return batch.Outcome(item, "done", bytes_out=5)

    with pytest.raises(batch.Abandoned) as stopped:
        batch.run(items, work, force=False, on_outcome=reported.append)
    assert stopped.value.unfinished == 0
    assert [outcome.status for outcome in reported] == ["done"] and (tmp_path / "a.nic").read_bytes() == b"coded"
    time.sleep(0.5)
    assert coded == ["a.png"]  # the next file was not started as the worker ended its own (and counted unfinished)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_batch_given_up_writes_nothing_once_a_later_batch_has_begun(tmp_path, sigterm_raises):
    """A program that runs the command line in-process again after a stop (a notebook's next
    cell): the new batch cleared the flag that the first one's threads checked, and a file still
    being coded when the first was given up was put in place afterwards (made at the first
    run's settings, so the second called it up to date or kept it)."""
    import signal
    import threading

    from nicodec import batch
    from nicodec.files import write_atomic

    main = threading.main_thread().ident
    (tmp_path / "out").mkdir()
    release, workers = threading.Event(), []

    def stuck(item):  # the first batch: given up (SIGTERM) while this file is still being coded
        workers.append(threading.current_thread())
        signal.pthread_kill(main, signal.SIGTERM)
        release.wait(60)
        write_atomic(item.target, batch.unless_abandoned(lambda f: f.write(b"first")), created=batch.writing_to)
        return batch.Outcome(item, "done", bytes_out=5)

    def quick(item):
        write_atomic(item.target, batch.unless_abandoned(lambda f: f.write(b"second")), created=batch.writing_to)
        return batch.Outcome(item, "done", bytes_out=6)

    first = [batch.Item(tmp_path / "a.png", tmp_path / "out" / "a.nic")]
    with pytest.raises(batch.Abandoned) as stopped:
        batch.run(first, stuck, force=True)
    assert stopped.value.unfinished == 1
    later = batch.run([batch.Item(tmp_path / "b.png", tmp_path / "out" / "b.nic")], quick, force=True)
    assert [outcome.status for outcome in later.outcomes] == ["done"] and not batch.ABANDONED
    release.set()  # the first batch's file ends now, while the later batch's books are clean
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["b.nic"]
    assert (tmp_path / "out" / "b.nic").read_bytes() == b"second"


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGXCPU"), reason="POSIX signals")
def test_a_cpu_limit_that_keeps_signalling_stops_once_and_is_not_a_core_dump(tmp_path):
    """Past a soft CPU-time limit the kernel sends SIGXCPU again every CPU second: the first
    stops the batch, and the later ones, after main() put the handlers back, killed the process
    by the default action (a core dump, exit -24) or printed a second stop."""
    import subprocess

    src = _six_images(tmp_path / "src")
    code = (
        "import os, signal, sys, threading, time\n"
        "from nicodec.cli import main\n"
        "started = threading.Event()\n"
        "def limit():\n"
        "    started.wait()  # the batch is coding its first file\n"
        "    while True:\n"
        "        os.kill(os.getpid(), signal.SIGXCPU)\n"
        "        time.sleep(0.05)\n"
        "from nicodec import codec\n"
        "real = codec.Codec.encode\n"
        "def slow(self, *args, **kwargs):\n"
        "    started.set()\n"
        "    time.sleep(0.5)\n"
        "    return real(self, *args, **kwargs)\n"
        "codec.Codec.encode = slow\n"
        "threading.Thread(target=limit, daemon=True).start()\n"
        "try:\n"
        f"    main(['encode', {str(src)!r}, '-o', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit as stopped:\n"
        "    time.sleep(0.5)  # the limit still signals\n"
        "    print('survived', stopped.code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["survived", "152"], (done.returncode, done.stderr)
    said = re.search(r"stopped by SIGXCPU after (\d+) files? encoded; no file was left half-written", done.stderr)
    assert said and done.stderr.count("stopped by SIGXCPU") == 1, done.stderr
    assert int(said.group(1)) == len(list((tmp_path / "out").rglob("*.nic")))
    assert _temporaries(tmp_path / "out") == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_stop_the_kernel_hands_to_a_worker_thread_still_stops_the_batch(ctrl_c_raises):
    """The kernel may deliver a signal to any thread (a worker, one of onnxruntime's); Python runs
    its handler in the main thread once that wakes, and the main thread waited for the workers
    without a timeout: the stop waited for the files in flight, or for ever (a batch's second
    stop hung so about one time in eight)."""
    import signal
    import threading

    from nicodec import batch

    stopped, seen = threading.Event(), []

    def work(item):
        if item.source.name == "1":
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not the main one
            seen.append(stopped.wait(60))  # the stop is seen while this file is still being coded
        return batch.Outcome(item, "done")

    items = [batch.Item(Path(f"/nonexistent/{i}"), Path(f"/nonexistent/out/{i}")) for i in range(3)]
    with pytest.raises(KeyboardInterrupt):
        batch.run(items, work, force=True, jobs=1, on_stop=lambda stop: stopped.set())
    assert seen == [True]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_second_ctrl_c_while_the_batch_winds_down_stops_it_at_once(tmp_path, monkeypatch, jobs, ctrl_c_raises):
    """The second stop was held back until the files in flight were written: a file on a pipe
    that nothing writes, or a slow refinement, kept the batch waiting, and only SIGKILL ended it.
    Now it leaves them unfinished, says so, and they are not written later (a program calling
    the command line in-process goes on; the nicodec command ends its process)."""
    import signal
    import threading
    import time

    from nicodec import batch
    from nicodec.codec import Codec

    monkeypatch.setattr(batch, "ABANDONED", [])
    main = threading.main_thread().ident
    started, release, ended = threading.Barrier(jobs), threading.Event(), threading.Semaphore(0)
    real, calls, lock = Codec.encode, [], threading.Lock()

    def encode(self, image, **options):  # every file is stuck until the test lets it go
        with lock:
            calls.append(image)
            first = len(calls) == 1
        started.wait(60)  # each worker has its file
        if first:
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.3)  # the main thread now waits for the workers
            signal.pthread_kill(main, signal.SIGINT)
        release.wait(60)
        return real(self, image, **options)  # then finished, too late to be written

    given_up, noted = batch.unless_abandoned, batch.writing_to

    def writer(write):  # released once each file's writer has run (and refused to be renamed into place)
        inner = given_up(write)

        def writing(f):
            try:
                inner(f)
            finally:
                ended.release()

        return writing

    def created(temporary):  # or once its temporary file was refused, the batch given up (its writer never runs)
        try:
            noted(temporary)
        except batch.Abandoned:
            ended.release()
            raise

    monkeypatch.setattr(Codec, "encode", encode)
    monkeypatch.setattr(batch, "unless_abandoned", writer)
    monkeypatch.setattr(batch, "writing_to", created)
    src = _six_images(tmp_path / "src")
    result = run("encode", src, "-o", tmp_path / "out", "--jobs", jobs)
    try:
        assert result.exit_code == 130, result.output
        left = "1 file being coded was" if jobs == 1 else f"{jobs} files being coded were"
        assert f"interrupted after 0 files encoded; no file was left half-written ({left} left unfinished)" in result.stderr
        assert "finished and written first (Ctrl-C again stops at once" in result.stderr
    finally:
        release.set()
        released = [ended.acquire(timeout=60) for _ in range(jobs)]
    assert released == [True] * jobs  # each worker ended its file, refused
    assert list((tmp_path / "out").rglob("*.nic")) == [] and batch.ABANDONED == [jobs]
    for _ in range(100):  # write_atomic removes the temporary file just after the writer raised
        if not _temporaries(tmp_path / "out"):
            break
        time.sleep(0.05)
    assert _temporaries(tmp_path / "out") == []


def _stop_the_script(process, stops):
    """Sends ``stops`` (signal names) to a running nicodec script; a first of two is Ctrl-C,
    whose "stopping:" line must come before the second is sent. Returns the exit code and the
    rest of standard error."""
    import signal

    if len(stops) == 2:
        process.send_signal(signal.SIGINT)
        stopping = process.stderr.readline()
        assert stopping.startswith("stopping: ") and "(Ctrl-C again stops at once" in stopping, stopping
    process.send_signal(getattr(signal, stops[-1]))
    return process.wait(timeout=60), process.stderr.read()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("stops, shown", [
    (["SIGINT", "SIGINT"], "interrupted"),
    (["SIGINT", "SIGTERM"], "stopped by SIGTERM"),
    (["SIGTERM"], "stopped by SIGTERM"),  # a supervisor's (docker stop's) first: no wait for the files
    (["SIGHUP"], "stopped by SIGHUP"),
])
def test_the_console_script_ends_at_the_second_stop_whatever_its_threads_do(tmp_path, jobs, stops, shown):
    """The process itself ends: the abandoned thread, which cannot be stopped, would keep it
    alive at exit. Ctrl-C waits for the files being coded, and a second stop ends the wait;
    SIGTERM and SIGHUP do not wait (a supervisor's grace period, Docker's 10 s, ended in SIGKILL
    while a large file was finished). (SIGINT is set to raise, and SIGHUP to its default: a test
    run in the background, or under nohup, has them ignored, and nicodec leaves an ignored stop
    ignored.)"""
    import signal
    import subprocess
    import sys

    src = _six_images(tmp_path / "src")
    script = (
        "import signal, sys, threading\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
        "from nicodec.codec import Codec\n"
        "real = Codec.encode\n"
        "def encode(self, image, **options):\n"
        "    if not str(image).endswith('0.png'):\n"
        "        print('stuck', file=sys.stderr, flush=True)\n"
        "        threading.Event().wait()  # a pipe that nothing writes\n"
        "    return real(self, image, **options)\n"
        "Codec.encode = encode\n"
        "sys.argv = ['nicodec', 'encode', sys.argv[1], '-o', sys.argv[2], '--jobs', sys.argv[3]]\n"
        "from nicodec.launch import nicodec\n"
        "nicodec()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(src), str(tmp_path / "out"), str(jobs)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert [process.stderr.readline() for _ in range(jobs)] == ["stuck\n"] * jobs  # 1.png (and 2.png)
        code, rest = _stop_the_script(process, stops)
    finally:
        process.kill()
        ended(process)
    assert code == ended_by(getattr(signal, stops[-1])), rest
    left = "1 file being coded was" if jobs == 1 else "2 files being coded were"
    assert rest == f"{shown} after 1 file encoded; no file was left half-written ({left} left unfinished)\n"
    assert [p.name for p in (tmp_path / "out").rglob("*.nic")] == ["0.nic"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_stop_whose_line_cannot_be_written_still_ends_by_its_signal(tmp_path):
    """SIGHUP to a batch whose standard error is gone (a closed terminal, a full disk): the
    stop's line could not be written, and that error made the exit code 1, which a shell loop
    or xargs reads as a failed file rather than a hang-up."""
    import signal
    import subprocess

    src = _six_images(tmp_path / "src")
    script = (
        "import os, signal, sys, threading\n"
        "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
        "from nicodec.codec import Codec\n"
        "real = Codec.encode\n"
        "def encode(self, image, **options):\n"
        "    if not str(image).endswith('0.png'):\n"
        "        os.write(1, b'stuck\\n')\n"
        "        threading.Event().wait()\n"
        "    return real(self, image, **options)\n"
        "Codec.encode = encode\n"
        "sys.argv = ['nicodec', 'encode', sys.argv[1], '-o', sys.argv[2], '--jobs', '1']\n"
        "from nicodec.launch import nicodec\n"
        "nicodec()\n"
    )
    with open("/dev/full", "w") as full:
        process = subprocess.Popen([sys.executable, "-c", script, str(src), str(tmp_path / "out")],
                                   stdout=subprocess.PIPE, stderr=full)
    try:
        assert process.stdout.readline() == b"stuck\n"
        process.send_signal(signal.SIGHUP)
        code = process.wait(timeout=60)
    finally:
        process.kill()
        ended(process)
    assert code == ended_by(signal.SIGHUP)
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["0.nic"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("jobs, stops, shown", [
    (2, ["SIGTERM"], "stopped by SIGTERM"),
    (1, ["SIGINT", "SIGINT"], "interrupted"),
])
def test_a_decode_given_up_while_it_writes_an_image_leaves_no_temporary_file(tmp_path, jobs, stops, shown):
    """A batch given up while a worker was writing its image (a large PNG takes seconds) ended
    the process with the worker's hidden temporary file left in the output folder, under "no
    file was left half-written": only the worker removed it, once its write ended."""
    import signal
    import subprocess

    src = _six_images(tmp_path / "src")
    assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
    script = (
        "import os, signal, sys, threading\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from nicodec import outputs\n"
        "def save(image, f, fmt):\n"
        "    f.write(b'part of an image')\n"
        "    f.flush()\n"
        "    os.write(2, b'writing\\n')  # one write: the two threads' lines never mix\n"
        "    threading.Event().wait()  # a write that takes long\n"
        "outputs.save = save\n"
        "sys.argv = ['nicodec', 'decode', sys.argv[1], '-o', sys.argv[2], '--jobs', sys.argv[3]]\n"
        "from nicodec.launch import nicodec\n"
        "nicodec()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "nic"), str(tmp_path / "out"), str(jobs)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert [process.stderr.readline() for _ in range(jobs)] == ["writing\n"] * jobs
        assert len(_temporaries(tmp_path / "out")) == jobs  # the images being written
        code, rest = _stop_the_script(process, stops)
    finally:
        process.kill()
        ended(process)
    assert code == ended_by(getattr(signal, stops[-1])), rest
    left = "1 file being coded was" if jobs == 1 else f"{jobs} files being coded were"
    assert rest == f"{shown} after 0 files decoded; no file was left half-written ({left} left unfinished)\n"
    assert list((tmp_path / "out").rglob("*")) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_console_script_stops_on_sigterm_like_ctrl_c(tmp_path):
    """main() itself installs the SIGTERM handler (a library import does not)."""
    import subprocess
    import sys

    src = _six_images(tmp_path / "src")
    script = (
        "import os, signal, sys\n"
        "from nicodec.codec import Codec\n"
        "from nicodec.cli import main\n"
        "assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # importing changes nothing\n"
        "real, calls = Codec.encode, []\n"
        "def encode(self, image, **options):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(self, image, **options)\n"
        "Codec.encode = encode\n"
        "sys.argv = ['nicodec', 'encode', sys.argv[1], '-o', sys.argv[2]]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(src), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 143, done.stderr
    assert "stopped by SIGTERM after" in done.stderr and "Traceback" not in done.stderr
    assert _temporaries(tmp_path / "out") == []


def test_an_output_made_meanwhile_by_another_run_is_judged_not_failed(tmp_path, monkeypatch):
    """Two runs over one folder (cron jobs that overlap): a file the other run wrote while this
    one coded it is up to date (or kept, when made otherwise), never replaced, not a failure."""
    from nicodec.codec import Codec

    src = _six_images(tmp_path / "src")
    out = tmp_path / "out"
    real = Codec.encode
    theirs = {"1.png": None, "2.png": b"their notes"}

    def encode(self, image, **options):
        data = real(self, image, **options)
        name = Path(str(image)).name
        if name in theirs:  # the other run commits first
            out.mkdir(exist_ok=True)
            (out / name).with_suffix(".nic").write_bytes(data if theirs[name] is None else theirs[name])
        return data

    monkeypatch.setattr(Codec, "encode", encode)
    result = run("encode", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert "6 files: 4 encoded, 1 up to date, 1 kept, 0 failed" in result.stdout
    assert (out / "2.nic").read_bytes() == b"their notes"
    assert f"kept: {out / '2.nic'} cannot be read as a nicodec file" in result.stderr


def test_outcomes_come_in_the_order_of_the_items_whatever_the_jobs(tmp_path):
    """With several jobs the files end in any order; the summary (and so the report's failed:,
    kept: and warning: lines) keeps the order of the items, the same from run to run."""
    import threading

    from nicodec.batch import Item, Outcome
    from nicodec.batch import run as run_batch

    items = [Item(tmp_path / f"{n}.png", tmp_path / "out" / f"{n}.nic") for n in range(4)]
    second_done = threading.Event()

    def work(item):
        if item is items[0]:
            assert second_done.wait(30)  # the first item ends after the second
        if item is items[1]:
            second_done.set()
        return Outcome(Item(item.source, item.target), "failed", f"bad {item.source.name}")  # an equal item

    summary = run_batch(items, work, force=False, jobs=2)
    assert [outcome.item for outcome in summary.failures] == items


@pytest.mark.parametrize("verb", ["encode", "decode"])
def test_a_folder_made_read_only_during_a_batch_costs_no_coding(tmp_path, monkeypatch, verb):
    """The output folder turns read-only after the first file: the others fail before they are
    coded, not at the write after it (as root, whom permissions do not stop, the check is faked)."""
    import os as os_module

    from nicodec.codec import Codec

    src = _six_images(tmp_path / "src")
    if verb == "decode":
        assert run("encode", src, "-o", tmp_path / "nic").exit_code == 0
        src = tmp_path / "nic"
    out = tmp_path / "out"
    coded = []
    real_code, real_access = getattr(Codec, verb), os_module.access

    def code(self, *args, **kwargs):
        coded.append(1)
        return real_code(self, *args, **kwargs)

    def access(path, mode, **kwargs):
        if Path(path) == out and mode & os_module.W_OK and any(out.iterdir()):  # after the first file
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(Codec, verb, code)
    monkeypatch.setattr(os_module, "access", access)
    result = run(verb, src, "-o", out)
    assert result.exit_code == 1
    assert len(coded) == 1 and len(list(out.iterdir())) == 1
    assert result.stderr.count(f"cannot write in the folder {out}: it is not writable") == 4  # 3, then counted
    assert "failed: and 2 more files for the same reason: cannot write in the folder" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_a_link_to_nothing_fails_rather_than_being_passed_over(tmp_path):
    """A photo that was moved away leaves its link behind: encoding the folder says so, and so
    does verifying one whose .nic link points nowhere; a link to a folder is still not followed."""
    src = _six_images(tmp_path / "src")
    (src / "gone.png").symlink_to("moved-away.png")
    (src / "folder.png").symlink_to(tmp_path, target_is_directory=True)
    result = run("encode", src, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert f"failed: {src / 'gone.png'}: it is a link to moved-away.png, which leads to no file" in result.stderr
    assert "folder.png" not in result.stderr and result.stdout.startswith("7 files: 6 encoded, 0 up to date, 0 kept, 1 failed")
    (tmp_path / "out" / "z.nic").symlink_to(tmp_path / "nothing.nic")
    result = run("verify", tmp_path / "out")
    assert result.exit_code == 1 and "FAILED" in result.stderr and "z.nic: it is a link to" in result.stderr
    assert "7 files: 6 ok, 1 failed" in result.stdout


def test_a_folders_videos_and_data_files_are_passed_over(tmp_path):
    """Pillow identifies MPEG video and HDF5, GRIB and BUFR data without loading them: a camera
    folder's .MPG clips failed one by one and the whole run ended with exit code 1."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(64, 64, seed=1)).save(src / "photo.png")
    (src / "clip.MPG").write_bytes(b"\0\0\1\xb3\x14\0\xf0\x13\xff\xff\xe0\x18" + bytes(3000))
    (src / "data.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    (src / "field.grib").write_bytes(b"GRIB" + bytes(100))
    result = run("encode", src, "-o", tmp_path / "out", "--provider", "cpu")
    assert result.exit_code == 0, result.output
    assert "1 file: 1 encoded" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.nic"]
    # A stub with a handler an application registered is loaded (the handler was looked for in
    # the plugin's module, where Pillow 13 no longer keeps it).
    from PIL import Hdf5StubImagePlugin, ImageFile

    from nicodec.plugins import readable_suffixes

    class Handler(ImageFile.StubHandler):
        def open(self, im):
            pass

        def load(self, im):
            return Image.new("L", im.size)

    assert ".h5" not in readable_suffixes()
    Hdf5StubImagePlugin.register_handler(Handler())
    try:
        assert ".h5" in readable_suffixes()
    finally:
        Hdf5StubImagePlugin.register_handler(None)
    # Named on the command line, such a file is tried, and refused by name.
    named = run("encode", src / "clip.MPG", "-o", tmp_path / "clip.nic")
    assert named.exit_code == 1 and "clip.MPG" in named.stderr and not (tmp_path / "clip.nic").exists()


def test_decoding_a_folder_beside_its_originals_says_an_image_up_to_date_may_be_one(tmp_path):
    """A photo edited after it was encoded is newer than its .nic file: decoding the folder
    beside it called it up to date, and decoded nothing, without a word of what it might be."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(synthetic_photo(48, 48, seed=1)).save(src / "a.png")
    assert run("encode", src).exit_code == 0
    os.utime(src / "a.nic", (1, 1))  # the photo, edited since
    before = (src / "a.png").read_bytes()
    result = run("decode", src)
    assert result.exit_code == 0 and "1 file: 0 decoded, 1 up to date" in result.stdout
    assert "note: 1 file up to date: an image newer than its .nic file beside it, taken for earlier output (an " \
           "original edited since it was encoded would be too; -o DIR decodes into another folder)" in result.stderr
    assert (src / "a.png").read_bytes() == before
    elsewhere = run("decode", src, "-o", tmp_path / "out")  # decoded there; a rerun is up to date, no note
    again = run("decode", src, "-o", tmp_path / "out")
    assert elsewhere.exit_code == again.exit_code == 0 and "1 up to date" in again.stdout
    assert "note" not in elsewhere.stderr + again.stderr


def test_waiting_for_the_workers_costs_the_same_for_every_file(monkeypatch):
    """The main thread waited with concurrent.futures.wait, which takes every pending future's
    lock in turn each time it wakes: a batch of n files took n² lock turns (5,000 tiny files:
    12.5 s where 1.6 s do), and a stop raised while it held some of them left a worker waiting
    for one for ever (a single Ctrl-C hung a batch of 20,000). Counted here: the locks of the
    futures the main thread takes, per file."""
    import concurrent.futures._base as futures_base
    import threading
    import time

    from nicodec import batch

    main, taken = threading.main_thread(), [0]

    class Counting:
        def __init__(self, condition):
            self.condition = condition

        def __getattr__(self, name):
            return getattr(self.condition, name)

        def acquire(self, *args):
            taken[0] += threading.current_thread() is main
            return self.condition.acquire(*args)

        def __enter__(self):
            taken[0] += threading.current_thread() is main
            return self.condition.__enter__()

        def __exit__(self, *exc):
            return self.condition.__exit__(*exc)

    real_init = futures_base.Future.__init__

    def init(self):
        real_init(self)
        self._condition = Counting(self._condition)

    monkeypatch.setattr(futures_base.Future, "__init__", init)
    items = [batch.Item(Path(f"/nonexistent/{i}"), Path(f"/nonexistent/out/{i}")) for i in range(2000)]

    def work(item):
        time.sleep(0.0003)  # the files end one by one, the main thread waking for each
        return batch.Outcome(item, "done")

    summary = batch.run(items, work, force=True, jobs=2)
    assert [o.status for o in summary.outcomes] == ["done"] * len(items)
    assert taken[0] <= 5 * len(items), taken[0]


def test_windows_hidden_and_system_entries_and_junctions_are_passed_over(tmp_path, monkeypatch):
    """On Windows a leading dot hides nothing: a drive's $RECYCLE.BIN (its deleted photos),
    System Volume Information (which no one may list: the batch failed) and junctions (folder
    links os.walk follows: Documents' My Pictures, which no one may list either, or a loop) were
    walked. They are passed over by their attributes, as dot-names are elsewhere. Simulated
    here (a portability review's finding): the attributes Windows would report are given."""
    from nicodec import batch_plan

    photos = tmp_path / "drive"
    for relative in ("DCIM/IMG_0001.png", "$RECYCLE.BIN/S-1-5-21/$R4QX2L1.png", "System Volume Information/x.png",
                     "My Pictures/y.png", "DCIM/desktop.png", "DCIM/.thumb.png"):
        (photos / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_photo(16, 16, seed=1)).save(photos / relative)
    attributes = {"$RECYCLE.BIN": (0x2 | 0x4, 0), "System Volume Information": (0x2 | 0x4, 0),
                  "My Pictures": (0x10 | 0x400, 0xA0000003), "desktop.png": (0x2, 0)}
    monkeypatch.setattr(batch_plan, "_windows_attributes", lambda path: attributes.get(path.name, (0x20, 0)))
    planned = batch_plan.plan(photos, tmp_path / "archive", [".png"], ".nic")
    assert [item.source.relative_to(photos).as_posix() for item in planned] == ["DCIM/IMG_0001.png"]
    # A junction is passed over as a folder only (the attribute alone hides a file).
    attributes["IMG_0001.png"] = (0x20, 0xA0000003)
    assert len(batch_plan.plan(photos, tmp_path / "archive", [".png"], ".nic")) == 1
    # Elsewhere no attributes are read: dot-names alone are hidden.
    monkeypatch.undo()
    if os.name != "nt":
        assert batch_plan._windows_attributes(photos / "$RECYCLE.BIN") == (0, 0)
        assert len(batch_plan.plan(photos, tmp_path / "archive", [".png"], ".nic")) == 5


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_batch_keeps_a_few_items_submitted_at_a_time(monkeypatch, jobs):
    """A future and the pool's work item for every file at once held about 1.8 kB a file until
    the batch ended; now a few per thread are submitted as others end, and every item is still
    coded, reported in order."""
    from concurrent.futures import ThreadPoolExecutor

    from nicodec import batch

    submitted, coded = [], []

    class Counting(ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            submitted.append(args[0])
            assert len(submitted) - len(coded) <= batch.WINDOW_PER_JOB * jobs
            return super().submit(fn, *args, **kwargs)

    def work(item):
        coded.append(item)
        return batch.Outcome(item, "done", bytes_in=1)

    monkeypatch.setattr(batch, "ThreadPoolExecutor", Counting)
    items = [batch.Item(Path(f"/nonexistent/{i}"), Path(f"/nonexistent/out/{i}")) for i in range(200)]
    summary = batch.run(items, work, force=True, jobs=jobs)
    assert len(submitted) == len(coded) == 200
    assert [outcome.item for outcome in summary.outcomes] == items and summary.count("done") == 200


def test_quietly_leaves_the_warning_filters_alone_off_the_main_thread():
    """catch_warnings swaps the process's filters and restores them after: two workers' blocks
    that overlapped could restore each other's "ignore" and silence every later warning."""
    import threading
    import warnings

    from nicodec.outputs import quietly

    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quietly():
            warnings.warn("on the main thread", UserWarning)
        worker_saw = []

        def worker():
            with quietly():
                worker_saw.append(list(warnings.filters))
                warnings.warn("on a worker", UserWarning)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert worker_saw and worker_saw[0][0][0] == "always"  # the filters the worker found, untouched
        assert [str(w.message) for w in seen] == ["on a worker"]
    assert warnings.filters == before


def test_a_whole_jpeg_with_bytes_after_its_end_marker_counts_as_readable(tmp_path):
    """A camera's trailer, a motion photo's video or padding after the end-of-image marker: such
    a JPEG is decoded (at an eighth of its size) rather than called cut short by its last bytes."""
    from nicodec.cli_batch import _unreadable_image

    path = tmp_path / "x.jpg"
    Image.fromarray(synthetic_photo(64, 96, seed=4)).save(path, quality=90)
    whole = path.read_bytes()
    path.write_bytes(whole + b"\0\0trailer")
    assert _unreadable_image(path) is None
    path.write_bytes(whole[:-40])
    assert _unreadable_image(path).startswith("cannot be read as an image (image file is truncated")


def test_an_output_folder_that_cannot_be_made_is_named_with_the_reason(tmp_path, monkeypatch):
    """A folder's outputs under a folder the user may not create (a read-only mount, another
    user's folder: root may make any, so the refusal is made here): one line, the folder and why,
    and nothing coded."""
    source = tmp_path / "photos"
    source.mkdir()
    Image.fromarray(synthetic_photo(48, 64, seed=4)).save(source / "a.png")
    real = Path.mkdir

    def refused(self, *args, **kwargs):
        if self.name == "out":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refused)
    result = run("encode", source, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.stderr
    assert f"cannot create the output folder {tmp_path / 'out'}: Permission denied" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and sorted(os.listdir(tmp_path)) == ["photos"]


def test_json_lists_each_file_of_a_batch_with_its_status(tmp_path, monkeypatch):
    """``--json``: a list in the order of the files, in place of the summary line; what it says of
    each file is what is on disk; stderr says what it says without it."""
    src = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    result = run("encode", src, "-o", out, "--json")
    assert result.exit_code == 1  # the broken file
    records = json.loads(result.stdout)
    assert [(r["input"], r["output"], r["status"]) for r in records] == [  # a folder's files before its subfolders'
        (str(src / "top.webp"), str(out / "top.nic"), "encoded"),
        (str(src / "a" / "one.png"), str(out / "a" / "one.nic"), "encoded"),
        (str(src / "a" / "b" / "broken.png"), str(out / "a" / "b" / "broken.nic"), "failed"),
        (str(src / "a" / "b" / "two.jpg"), str(out / "a" / "b" / "two.nic"), "encoded"),
    ]
    assert "broken.png" in records[2]["error"] and "failed: " in result.stderr
    for record in records[:2] + records[3:]:
        header = nicformat.read_header(Path(record["output"]).read_bytes())[0]
        assert record["bytes"] == Path(record["output"]).stat().st_size
        assert (record["width"], record["height"]) == (header.width, header.height)
        assert record["bpp"] == round(8 * record["bytes"] / (header.width * header.height), 6)  # as info --json
        assert record["quality"] == 56.0 and record["input_bytes"] == Path(record["input"]).stat().st_size
        assert record["seconds"] >= 0 and record["warnings"] == []
        assert "psnr" not in record and "encodes" not in record
    # A rerun: up to date; at another quality, kept (with why).
    again = json.loads(run("encode", src, "-o", out, "--json").stdout)
    assert [r["status"] for r in again] == ["up_to_date", "up_to_date", "failed", "up_to_date"]
    assert set(again[0]) == {"input", "output", "status"}
    kept = run("encode", src, "-o", out, "--json", "--quality", "30")
    assert [r["status"] for r in json.loads(kept.stdout)] == ["kept", "kept", "failed", "kept"]
    assert json.loads(kept.stdout)[0]["reason"] == f"{out / 'top.nic'} was made at quality 56, not 30; --force replaces it"
    assert "kept: " in kept.stderr and "files:" not in kept.stdout
    decoded = run("decode", out, "-o", tmp_path / "back", "--format", ".webp", "--json")
    assert decoded.exit_code == 0, decoded.output
    records = json.loads(decoded.stdout)
    assert [r["status"] for r in records] == ["decoded"] * 3
    for record in records:
        image = opened(record["output"])
        assert (record["width"], record["height"], record["format"]) == (*image.size, "WEBP")
        assert record["bytes"] == Path(record["output"]).stat().st_size
        assert record["input_bytes"] == Path(record["input"]).stat().st_size

    # Stopped: the files coded so far, then the stop's line on stderr.
    import nicodec.batch as batch

    def interrupted(items, work, *, force, jobs, on_outcome, differs=None, on_stop=None):
        on_outcome(work(items[3]))
        on_outcome(work(items[1]))
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run", interrupted)
    stopped = run("encode", src, "-o", tmp_path / "stopped", "--json")
    assert stopped.exit_code == 130
    assert [(r["status"], r["output"]) for r in json.loads(stopped.stdout)] == [  # in the files' order
        ("encoded", str(tmp_path / "stopped" / "a" / "one.nic")), ("encoded", str(tmp_path / "stopped" / "a" / "b" / "two.nic"))]
    assert "interrupted after 2 files encoded" in stopped.stderr


def test_json_of_a_batch_names_files_that_are_not_utf8_by_their_bytes(tmp_path):
    """As ``info --json`` does: ASCII, a byte that is not UTF-8 as Python's surrogate escape."""
    if sys.platform != "linux":
        pytest.skip("a name's bytes that are not UTF-8: Linux file systems take them")
    folder = tmp_path / "src"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")
    Image.fromarray(synthetic_photo(32, 32)).save(folder / name, format="PNG")
    result = run("encode", folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.isascii() and "caf\\udce9.png" in result.stdout
    assert json.loads(result.stdout)[0]["input"] == str(folder) + "/caf\udce9.png"


@pytest.mark.parametrize("width", [45, 60, 80, 120])
def test_a_narrow_terminal_sees_the_count_and_times_whole(tmp_path, monkeypatch, width):
    """A phone's SSH app or a split pane: the bar and then the rate give way, and the count, the
    time taken and the time left stay whole (at 60 columns Rich had cut both times to "…")."""
    import io

    from nicodec import console

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_photo(32, 48, seed=i)).save(src / f"{i}.png")
    (src / "1a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    screen = io.StringIO()
    monkeypatch.setattr(console, "err", console._Console(file=screen, force_terminal=True, width=width))
    assert run("encode", src, "-o", tmp_path / "out", "--jobs", "1").exit_code == 1
    lines = re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()))
    bars = [line for line in lines if line.startswith("encode ")]
    assert bars and all(len(line) <= width for line in bars), bars
    time = r"(\d+:\d\d:\d\d|-:--:--)"
    assert all(re.search(rf" [ \d]\d?/4 .*{time} {time} left$", line.rstrip()) for line in bars), bars
    if width >= 80:
        assert any(re.search(r" [\d.]+ files/s, [\d.]+ MB/s, 1 failed ", line) for line in bars), bars
