"""``nicodec decode --thumbnail``: the decoded picture scaled down to fit a square."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from nicodec import outputs
from nicodec.cli import app

from conftest import synthetic_photo

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("size, side, expected", [
    ((4000, 3000), 256, (256, 192)),
    ((3000, 4000), 256, (192, 256)),
    ((500, 500), 128, (128, 128)),
    ((256, 192), 128, (128, 96)),
    ((257, 100), 128, (128, 50)),  # 49.8: to the nearest
    ((300, 101), 128, (128, 43)),  # 43.09
    ((100, 300), 50, (17, 50)),  # 16.67
    ((10_000, 3), 100, (100, 1)),  # 0.03: at least 1
    ((96, 64), 256, (96, 64)),  # fits: never enlarged
    ((128, 50), 128, (128, 50)),
    ((1, 1), 1, (1, 1)),
])
def test_the_thumbnail_fits_the_square_and_keeps_the_shape(size, side, expected):
    assert outputs.thumbnail_size(*size, side) == expected


def test_the_other_side_is_the_nearest_to_the_pictures_shape():
    """Against a search of every length of the shorter side: none is nearer the picture's ratio."""
    rng = np.random.default_rng(3)
    for width, height, side in zip(rng.integers(1, 5000, 300), rng.integers(1, 5000, 300), rng.integers(1, 600, 300)):
        width, height, side = int(width), int(height), int(side)
        w, h = outputs.thumbnail_size(width, height, side)
        if max(width, height) <= side:
            assert (w, h) == (width, height)
            continue
        long, short, ratio = (w, h, height / width) if width >= height else (h, w, width / height)
        assert long == side and 1 <= short <= side
        assert all(abs(short / side - ratio) <= abs(n / side - ratio) + 1e-12 for n in range(1, side + 1))


def test_the_thumbnail_has_the_size_it_was_given():
    for size, side in [((500, 3), 64), ((3, 500), 64), ((1000, 999), 100), ((7, 7), 3)]:
        assert outputs.thumbnail(Image.new("RGB", size), side).size == outputs.thumbnail_size(*size, side)


def _with_metadata(photo) -> Image.Image:
    image = Image.fromarray(photo)
    exif = Image.Exif()
    exif[0x010F] = "Camera"  # Make
    image.info.update(
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        exif=exif.tobytes(), dpi=(300, 300),
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- a --></x:xmpmeta>',
    )
    return image


@pytest.fixture(scope="module")
def nic_file(tmp_path_factory, codec, photo):
    folder = tmp_path_factory.mktemp("thumbnails")
    source = folder / "photo.png"
    image = _with_metadata(photo)
    info = {"Author": "someone"}
    from PIL import PngImagePlugin

    chunks = PngImagePlugin.PngInfo()
    for key, value in info.items():
        chunks.add_text(key, value)
    image.save(source, icc_profile=image.info["icc_profile"], exif=image.info["exif"], dpi=(300, 300),
               pnginfo=chunks)
    nic = folder / "photo.nic"
    nic.write_bytes(codec.encode(source))
    return nic


def test_a_thumbnail_is_the_decoded_picture_scaled_with_its_colour_profile_alone(nic_file, codec, tmp_path):
    full = codec.decode(nic_file.read_bytes())
    assert full.size == (256, 192) and full.info.get("exif") and full.info.get("dpi") and full.text
    out = tmp_path / "small.png"
    result = run("decode", nic_file, "-o", out, "--thumbnail", 64)
    assert result.exit_code == 0, result.output
    assert "photo.nic -> " in result.stdout and ": 64x48 (a thumbnail of 256x192), " in result.stdout
    with Image.open(out) as small:
        assert small.size == (64, 48)
        assert small.info.get("icc_profile") == full.info["icc_profile"]
        assert not small.info.get("exif") and "dpi" not in small.info and not small.text and not small.info.get("xmp")
        expected = full.resize((64, 48), Image.Resampling.LANCZOS, reducing_gap=3.0)
        assert np.array_equal(np.asarray(small), np.asarray(expected))
    # Shrunk 8 times: a box reduction by 2 first (reducing_gap), which changes the pixels.
    result = run("decode", nic_file, "-o", tmp_path / "smaller.png", "--thumbnail", 32)
    assert result.exit_code == 0, result.output
    reduced = full.resize((32, 24), Image.Resampling.LANCZOS, reducing_gap=3.0)
    assert not np.array_equal(np.asarray(reduced), np.asarray(full.resize((32, 24), Image.Resampling.LANCZOS)))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "smaller.png")), np.asarray(reduced))


def test_a_thumbnail_warns_of_its_colour_profile_alone(nic_file, tmp_path):
    """BMP keeps no metadata: a full decode warns of the profile, EXIF and text it loses; a
    thumbnail, which leaves the rest out on purpose, of the profile."""
    result = run("decode", nic_file, "-o", tmp_path / "full.bmp")
    assert result.exit_code == 0 and "no ICC profile or EXIF data" in result.output, result.output
    assert 'no text "Author"' in result.output
    result = run("decode", nic_file, "-o", tmp_path / "small.bmp", "--thumbnail", 64)
    assert result.exit_code == 0, result.output
    assert "warning: small.bmp will have no ICC profile: BMP does not keep it" in result.output, result.output
    assert "EXIF" not in result.output and "text" not in result.output and "resolution" not in result.output
    folder = tmp_path / "nic"
    folder.mkdir()
    (folder / "a.nic").write_bytes(nic_file.read_bytes())
    result = run("decode", folder, "-o", tmp_path / "bmp", "--format", "bmp", "--thumbnail", 64)
    assert result.exit_code == 0, result.output
    assert "a.bmp has no ICC profile: BMP does not keep it" in result.output and "EXIF" not in result.output


def test_a_picture_that_fits_is_written_at_its_size_without_the_other_metadata(nic_file, codec, tmp_path):
    out = tmp_path / "same.png"
    result = run("decode", nic_file, "-o", out, "--thumbnail", 1000)
    assert result.exit_code == 0, result.output
    assert ": 256x192, " in result.stdout and "thumbnail of" not in result.stdout
    with Image.open(out) as same:
        assert np.array_equal(np.asarray(same), np.asarray(codec.decode(nic_file.read_bytes())))
        assert same.info.get("icc_profile") and not same.info.get("exif") and not same.text


def test_a_transparent_pictures_thumbnail_weighs_colour_by_alpha(codec, tmp_path):
    """Premultiplied as it is scaled: the colour under transparent pixels (red, kept with
    --exact) does not bleed into the visible (green) half."""
    rgba = np.zeros((64, 128, 4), dtype=np.uint8)
    rgba[:, :64] = (255, 0, 0, 0)
    rgba[:, 64:] = (0, 200, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "half.png")
    assert run("encode", tmp_path / "half.png", "--exact").exit_code == 0
    result = run("decode", tmp_path / "half.nic", "-o", tmp_path / "small.png", "--thumbnail", 32)
    assert result.exit_code == 0, result.output
    small = np.asarray(Image.open(tmp_path / "small.png"))
    assert small.shape == (16, 32, 4)
    edge = small[:, 16:18]  # the first visible columns, next to the transparent half
    assert edge[..., 3].min() > 0 and edge[..., 0].max() < 40


def test_to_standard_output_and_as_json(nic_file, tmp_path):
    result = run("decode", nic_file, "-o", "-", "--thumbnail", 100)
    assert result.exit_code == 0, result.output
    assert Image.open(io.BytesIO(result.stdout_bytes)).size == (100, 75)
    result = run("decode", nic_file, "-o", tmp_path / "t.jpg", "--thumbnail", 100, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["width"], report["height"], report["format"]) == (100, 75, "JPEG") and report["warnings"] == []


def test_the_formats_limits_are_the_thumbnails(codec, tmp_path):
    """An ICO holds 256x256 at most: a larger picture's thumbnail fits it, the picture does not."""
    Image.fromarray(synthetic_photo(300, 400)).save(tmp_path / "big.png")
    assert run("encode", tmp_path / "big.png").exit_code == 0
    result = run("decode", tmp_path / "big.nic", "-o", tmp_path / "big.ico")
    assert result.exit_code == 1 and "ICO holds icons of at most 256x256" in result.output
    result = run("decode", tmp_path / "big.nic", "-o", tmp_path / "big.ico", "--thumbnail", 256)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "big.ico") as icon:
        assert icon.size == (256, 192)


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "big", ""])
def test_a_size_that_is_no_whole_number_of_1_or_more_is_a_usage_error(nic_file, tmp_path, value):
    result = run("decode", nic_file, "-o", tmp_path / "x.png", "--thumbnail", value)
    assert result.exit_code == 2 and "--thumbnail" in result.output
    assert not (tmp_path / "x.png").exists()


def test_a_folder_of_thumbnails_and_its_reruns(nic_file, tmp_path):
    """A folder decoded in full is not up to date for thumbnails, nor the other way round: each
    existing image is kept with a line giving both sizes, until --force; the summary's bits
    per pixel are the file's, over the full picture."""
    folder = tmp_path / "nic"
    folder.mkdir()
    (folder / "a.nic").write_bytes(nic_file.read_bytes())
    result = run("decode", folder, "-o", tmp_path / "thumbs", "--thumbnail", 64)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "thumbs" / "a.png").size == (64, 48)
    bpp = 8 * nic_file.stat().st_size / (256 * 192)
    assert f"{bpp:.4f} bpp" in result.stdout and "1 decoded" in result.stdout
    result = run("decode", folder, "-o", tmp_path / "thumbs", "--thumbnail", 64)
    assert result.exit_code == 0 and "1 up to date" in result.stdout, result.output
    result = run("decode", folder, "-o", tmp_path / "thumbs")
    assert result.exit_code == 0 and "1 kept" in result.stdout, result.output
    assert "a.png is 64x48, and the picture decodes to 256x192 (a thumbnail?); --force replaces it" in result.output
    result = run("decode", folder, "-o", tmp_path / "thumbs", "--thumbnail", 32)
    assert "a.png is 64x48, and the picture's --thumbnail 32 is 32x24; --force replaces it" in result.output
    assert Image.open(tmp_path / "thumbs" / "a.png").size == (64, 48)
    result = run("decode", folder, "-o", tmp_path / "thumbs", "--force")
    assert result.exit_code == 0 and "1 decoded" in result.stdout, result.output
    assert Image.open(tmp_path / "thumbs" / "a.png").size == (256, 192)
    result = run("decode", folder, "-o", tmp_path / "thumbs", "--thumbnail", 64)
    assert "a.png is 256x192, and the picture's --thumbnail 64 is 64x48; --force replaces it" in result.output
    result = run("decode", folder, "-o", tmp_path / "thumbs")
    assert result.exit_code == 0 and "1 up to date" in result.stdout, result.output


def test_a_full_decode_written_meanwhile_is_judged_as_one_there_at_the_start(nic_file, tmp_path, monkeypatch):
    """Another run's full decode, written while this one made the thumbnail: kept, as it would
    have been had it been there at the start, not counted up to date."""
    from nicodec import codec as nicodec_codec

    folder = tmp_path / "nic"
    folder.mkdir()
    (folder / "a.nic").write_bytes(nic_file.read_bytes())
    (tmp_path / "out").mkdir()
    real = nicodec_codec.Codec.decode

    def decode(self, data, *args, **kwargs):
        picture = real(self, data, *args, **kwargs)
        picture.save(tmp_path / "out" / "a.png")
        return picture

    monkeypatch.setattr(nicodec_codec.Codec, "decode", decode)
    result = run("decode", folder, "-o", tmp_path / "out", "--thumbnail", 32)
    assert result.exit_code == 0 and "1 kept" in result.stdout, result.output
    assert "a.png is 256x192, and the picture's --thumbnail 32 is 32x24; --force replaces it" in result.output


def test_outputs_of_other_sizes_are_listed_as_one_reason(codec, tmp_path):
    """Twelve pictures of twelve sizes, decoded in full, then asked for as thumbnails: three
    named and a count, as other reasons are, not a line each."""
    folder = tmp_path / "nic"
    folder.mkdir()
    for n in range(12):
        Image.fromarray(synthetic_photo(32 + 4 * n, 48, seed=n)).save(tmp_path / f"{n:02}.png")
        (folder / f"{n:02}.nic").write_bytes(codec.encode(tmp_path / f"{n:02}.png"))
    assert run("decode", folder, "-o", tmp_path / "out").exit_code == 0
    result = run("decode", folder, "-o", tmp_path / "out", "--thumbnail", 16)
    assert result.exit_code == 0 and "12 kept" in result.stdout, result.output
    kept = [line for line in result.output.splitlines() if line.startswith("kept: ")]
    assert len(kept) == 4 and "9 more outputs for the same reason as " in kept[-1], kept
    assert kept[0].endswith("00.png is 48x32, and the picture's --thumbnail 16 is 16x11; --force replaces it")


def test_an_original_beside_its_file_cropped_since_is_kept_and_said_to_be_one(codec, tmp_path):
    """Decoding beside the .nic files, an image of the output's name and another size is likely
    the original photo, edited since it was encoded: so said, not taken for a thumbnail."""
    Image.fromarray(synthetic_photo(64, 96)).save(tmp_path / "a.png")
    (tmp_path / "a.nic").write_bytes(codec.encode(tmp_path / "a.png"))
    Image.fromarray(synthetic_photo(64, 96)[:48, :64]).save(tmp_path / "a.png")  # cropped, later
    later = time.time() + 5
    os.utime(tmp_path / "a.png", (later, later))
    result = run("decode", tmp_path)
    assert result.exit_code == 0 and "1 kept" in result.stdout, result.output
    assert ("a.png is 64x48, and the picture decodes to 96x64 (the original, edited since it was encoded? -o DIR "
            "decodes into another folder); --force replaces it") in result.output
    # Elsewhere, a thumbnail is guessed only where the image has a thumbnail's shape.
    (tmp_path / "out").mkdir()
    folder = tmp_path / "nic"
    folder.mkdir()
    (folder / "a.nic").write_bytes((tmp_path / "a.nic").read_bytes())
    Image.new("RGB", (48, 32)).save(tmp_path / "out" / "a.png")
    os.utime(tmp_path / "out" / "a.png", (later, later))
    result = run("decode", folder, "-o", tmp_path / "out")
    assert "a.png is 48x32, and the picture decodes to 96x64 (a thumbnail?); --force" in result.output, result.output
    Image.new("RGB", (64, 48)).save(tmp_path / "out" / "a.png")
    os.utime(tmp_path / "out" / "a.png", (later, later))
    result = run("decode", folder, "-o", tmp_path / "out")
    assert "a.png is 64x48, and the picture decodes to 96x64; --force replaces it" in result.output, result.output


def test_a_file_whose_header_cannot_be_read_is_not_compared(nic_file, tmp_path):
    """Its newer output counts as up to date, as before --thumbnail; --force decodes it and says
    what is wrong."""
    folder = tmp_path / "nic"
    folder.mkdir()
    (folder / "a.nic").write_bytes(b"\x89NIC\x01" + bytes(40))
    (tmp_path / "out").mkdir()
    Image.new("RGB", (5, 5)).save(tmp_path / "out" / "a.png")
    later = time.time() + 5
    os.utime(tmp_path / "out" / "a.png", (later, later))
    result = run("decode", folder, "-o", tmp_path / "out", "--thumbnail", 64)
    assert result.exit_code == 0 and "1 up to date" in result.stdout, result.output
    result = run("decode", folder, "-o", tmp_path / "out", "--thumbnail", 64, "--force")
    assert result.exit_code == 1 and "a.nic" in result.output, result.output


def test_an_image_beside_its_file_of_the_same_size_turned_is_still_up_to_date(codec, tmp_path):
    """As before --thumbnail: the sizes are compared either way round (an original beside its
    .nic file, turned by its EXIF orientation, is counted up to date, not kept)."""
    picture = synthetic_photo(64, 96)
    Image.fromarray(picture).save(tmp_path / "a.png")
    (tmp_path / "a.nic").write_bytes(codec.encode(tmp_path / "a.png"))
    Image.fromarray(np.ascontiguousarray(picture.transpose(1, 0, 2))).save(tmp_path / "a.png")
    later = time.time() + 5
    os.utime(tmp_path / "a.png", (later, later))
    result = run("decode", tmp_path)
    assert "1 up to date" in result.stdout, result.output
