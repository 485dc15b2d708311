"""Every kind of input Pillow opens: coded as RGB, or refused with a clear message."""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import nicodec
from nicodec.cli import app
from typer.testing import CliRunner

from conftest import ended, psnr, synthetic_photo
from profiles import cmyk_profile

runner = CliRunner()


def save(image: Image.Image, path, **params):
    image.save(path, **params)
    return path


def test_cmyk_jpeg(codec, photo, tmp_path):
    path = save(Image.fromarray(photo).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
        expected = np.asarray(im.convert("RGB"))
    out = codec.decode(codec.encode(path), as_array=True)
    assert out.shape == photo.shape
    assert psnr(out, expected) > 24



def _through_profile(image: Image.Image, profile: bytes) -> np.ndarray:
    from PIL import ImageCms

    return np.asarray(ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                                ImageCms.createProfile("sRGB"), outputMode="RGB"))


@pytest.mark.parametrize("source", ["jpg", "tif", "pil"])
def test_a_cmyk_image_is_coloured_through_the_profile_it_carries(codec, photo, tmp_path, source):
    """docs/cli.md: a CMYK image with a CMYK profile (a stock photo, a print job) is converted to
    sRGB through it, as colour-managed viewers show it, not by Pillow's formula, which takes the
    inks for ideal ones; the CMYK profile itself is not kept."""
    from nicodec.images import read_picture

    profile = cmyk_profile()
    image = Image.fromarray(photo).convert("CMYK")
    if source == "pil":
        image.info["icc_profile"] = profile
    else:
        image = Image.open(save(image, tmp_path / f"press.{source}", icc_profile=profile))
        assert image.info["icc_profile"] == profile
    expected, formula = _through_profile(image, profile), np.asarray(image.convert("RGB"))
    assert np.abs(expected.astype(int) - formula).mean() > 10  # the profile's inks are far duller
    picture = read_picture(image if source == "pil" else image.filename)
    assert np.array_equal(picture.rgb, expected)
    assert picture.icc_profile is None
    out = codec.decode(codec.encode(image if source == "pil" else image.filename), as_array=True)
    assert psnr(out, expected) > psnr(out, formula) + 6
    image.close()



def test_a_cmyk_profile_asking_for_absolute_colorimetry_is_shown_relative(photo):
    """A profile whose header names absolute colorimetric (a proof's simulation of the paper)
    tinted the whole picture with its paper's white, which no viewer shows: the blank paper
    comes out white, as in relative colorimetric, which it is converted in instead."""
    from nicodec.images import read_picture
    from PIL import ImageCms

    profile = cmyk_profile(intent=3, paper=(0.87, 0.9, 0.68))  # a yellowish newsprint
    image = Image.fromarray(photo).convert("CMYK")
    image.paste((0, 0, 0, 0), (0, 0, 16, 16))  # no ink at all
    image.info["icc_profile"] = profile
    rgb = read_picture(image).rgb
    assert (rgb[:16, :16] == 255).all()
    relative = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                         ImageCms.createProfile("sRGB"), outputMode="RGB", renderingIntent=1)
    assert np.array_equal(rgb, np.asarray(relative))

def test_a_cmyk_profile_that_cannot_be_applied_leaves_the_formula_with_a_warning(photo, tmp_path):
    image = Image.fromarray(photo[:48, :64]).convert("CMYK")
    whole = cmyk_profile()
    for damaged in (whole[:200], whole[:128] + b"\xff" * (len(whole) - 128)):
        path = save(image, tmp_path / "press.jpg", icc_profile=damaged)
        result = runner.invoke(app, ["encode", str(path), "-o", str(tmp_path / "press.nic"), "--force"])
        assert result.exit_code == 0, result.output
        assert f"warning: {path}: its CMYK colour profile cannot be applied (" in result.stderr
        assert "converted by Pillow's plain formula" in result.stderr
        result = runner.invoke(app, ["decode", str(tmp_path / "press.nic"), "-o", str(tmp_path / "back.png"),
                                     "--force"])
        assert result.exit_code == 0, result.output
        with Image.open(path) as im, Image.open(tmp_path / "back.png") as back:
            assert psnr(np.asarray(back), np.asarray(im.convert("RGB"))) > 24

def test_sixteen_bit_png_keeps_the_top_eight_bits(codec, tmp_path):
    gray16 = (synthetic_photo()[:, :, 0].astype(np.uint16) * 257) + 3
    path = save(Image.fromarray(gray16), tmp_path / "deep.png")
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    from nicodec.images import read_picture

    pixels = read_picture(path, strip=True).rgb
    assert np.array_equal(pixels[:, :, 0], (gray16 >> 8).astype(np.uint8))
    assert codec.decode(codec.encode(path), as_array=True).shape == pixels.shape[:2]  # grayscale comes back gray


def test_cli_warns_when_a_16_bit_png_holds_8_bit_values(tmp_path):
    gray = synthetic_photo(64, 48)[:, :, 0].astype(np.uint16)  # 8-bit values, 16-bit file
    path = save(Image.fromarray(gray), tmp_path / "dark.png")
    result = runner.invoke(app, ["encode", str(path)])
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: every 16-bit sample is below 256" in result.stderr
    assert (tmp_path / "dark.nic").exists()
    # A rate search reads the image several times, a folder run from worker threads: once, named.
    for args in (["encode", str(path), "-o", str(tmp_path / "t.nic"), "--target-bpp", "2"],
                 ["encode", str(tmp_path), "-o", str(tmp_path / "out"), "--max-bytes", "5000"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stderr.count("every 16-bit sample is below 256") == 1, result.stderr
        assert f"warning: {path}: every 16-bit sample" in result.stderr


def test_exif_orientation_is_applied(codec, tmp_path):
    photo = synthetic_photo(96, 160)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(Image.fromarray(photo), tmp_path / "rotated.jpg", quality=95, exif=exif)
    out = codec.decode(codec.encode(path), as_array=True)
    assert out.shape == (160, 96, 3)
    with Image.open(path) as im:
        upright = np.asarray(im.transpose(Image.Transpose.ROTATE_270).convert("RGB"))
    assert psnr(out, upright) > 24

    # A PIL image handed over directly is coded upright too; the caller's image keeps its
    # pixels and its tag.
    with Image.open(path) as im:
        out = codec.decode(codec.encode(im), as_array=True)
        assert im.size == (160, 96) and im.getexif()[0x0112] == 6
    assert out.shape == (160, 96, 3) and psnr(out, upright) > 24


def damaged_exif(*entries: tuple[int, int, int, bytes], count: int | None = None) -> bytes:
    """EXIF with these IFD entries (tag, type, count, four value bytes), little-endian; ``count``
    claims another number of them."""
    import struct

    body = b"".join(struct.pack("<HHI", *entry[:3]) + entry[3] for entry in entries)
    ifd = struct.pack("<H", len(entries) if count is None else count) + body + struct.pack("<I", 0)
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd


ORIENTATION_6 = (0x0112, 3, 1, b"\6\0\0\0")  # a SHORT, 6: turn a quarter to show


@pytest.mark.parametrize("exif, turned", [
    (damaged_exif(ORIENTATION_6, (0x011A, 2, 4, b"abc\0")), True),  # XResolution as text: Pillow cannot write it back
    (damaged_exif(ORIENTATION_6, (0x0128, 2, 2, b"x\0\0\0")), True),  # ResolutionUnit as text: a struct.error
    (b"Exif\0\0MM\0*\0\0\0", False),  # a TIFF header cut short: nothing to read
], ids=["unwritable rational", "unwritable short", "unreadable"])
def test_damaged_exif_is_left_out_with_a_warning_and_the_picture_still_turned(codec, tmp_path, exif, turned):
    photo = synthetic_photo(48, 80)
    path = save(Image.fromarray(photo), tmp_path / "damaged.jpg", quality=95, exif=exif)
    for source in (path, path.read_bytes(), Image.open(path)):
        with pytest.warns(UserWarning, match="its EXIF data is damaged and is not kept"):
            data = codec.encode(source)
        decoded = codec.decode(data)
        assert decoded.size == ((48, 80) if turned else (80, 48)) and "exif" not in decoded.info
    result = runner.invoke(app, ["encode", str(path), "-o", str(tmp_path / "damaged.nic")])
    assert result.exit_code == 0 and "its EXIF data is damaged" in result.stderr, result.output


def test_a_tiff_with_a_damaged_second_directory_is_refused_with_a_message(codec, tmp_path):
    """Pillow counts a TIFF's frames by reading each directory, and raises a TypeError for one
    without the image's dimensions: an error naming the file, not an internal error."""
    import struct

    buffer = io.BytesIO()
    Image.fromarray(synthetic_photo(24, 32)).save(buffer, "TIFF")
    tiff = bytearray(buffer.getvalue())  # little-endian: II, then the first directory's offset
    first = struct.unpack_from("<I", tiff, 4)[0]
    entries = struct.unpack_from("<H", tiff, first)[0]
    struct.pack_into("<I", tiff, first + 2 + 12 * entries, len(tiff))  # the next directory: at the end
    tiff += struct.pack("<HHHII", 1, 262, 3, 1, 2) + struct.pack("<I", 0)  # one entry, no dimensions
    (tmp_path / "two.tif").write_bytes(tiff)
    with pytest.raises(nicodec.UnsupportedImageError, match=r"could not read the pixels of .*two\.tif \(.+\)"):
        codec.encode(tmp_path / "two.tif")  # Pillow's reason in brackets ("Missing dimensions" in Pillow 13)
    result = runner.invoke(app, ["encode", str(tmp_path / "two.tif")])
    assert result.exit_code == 1 and "internal error" not in result.stderr and "two.tif" in result.stderr


def test_an_avif_pillow_fails_on_with_a_runtime_error_is_refused_with_a_message(codec):
    """Pillow's AVIF decoder raises RuntimeError for some damage (where its other readers raise
    OSError or SyntaxError): a named error, not an internal one."""
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    buffer = io.BytesIO()
    Image.fromarray(synthetic_photo(24, 32)).save(buffer, "AVIF", quality=90)
    for at in range(len(buffer.getvalue())):  # the first byte whose zeroing Pillow fails on so
        damaged = bytearray(buffer.getvalue())
        damaged[at] = 0
        try:
            with Image.open(io.BytesIO(damaged)) as image:
                image.load()
        except RuntimeError:
            break
        except Exception:  # noqa: BLE001 - damage Pillow reports otherwise
            continue
    else:
        pytest.skip("no single zeroed byte makes this Pillow's AVIF decoder raise RuntimeError")
    with pytest.raises(nicodec.UnsupportedImageError, match="could not read the pixels|not an image"):
        codec.encode(bytes(damaged))


@pytest.mark.parametrize("source", ["path", "bytes", "truncated bytes", "pil", "array"])
def test_pixel_limit_is_checked_before_the_pixels_are_decoded(tmp_path, source):
    """A huge image is refused from its header's size: a truncated file gives the size error,
    not a decoding error, so no pixel was decoded (nor, for a path, allocated)."""
    from nicodec.ratecontrol import encode_to_target

    small = nicodec.Codec(providers="cpu", max_pixels=100_000)
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), (10, 20, 30)).save(buffer, format="PNG")
    data = buffer.getvalue()
    (tmp_path / "big.png").write_bytes(data[: len(data) // 2])
    inputs = {"path": tmp_path / "big.png", "bytes": data, "truncated bytes": data[: len(data) // 2],
              "pil": Image.open(io.BytesIO(data[: len(data) // 2])),  # opened lazily: its pixels cannot be decoded
              "array": np.zeros((2000, 3000, 3), np.uint8)}
    with pytest.raises(nicodec.LimitError, match="6,000,000 pixels"):
        small.encode(inputs[source])
    with pytest.raises(nicodec.LimitError, match="6,000,000 pixels"):
        encode_to_target(small, inputs[source], bpp=0.5)


@pytest.mark.parametrize("premultiplied, straight", [("RGBa", "RGBA"), ("La", "LA")])
def test_premultiplied_alpha_keeps_its_transparency(codec, photo, premultiplied, straight):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 120, np.uint8)])
    image = Image.fromarray(rgba, "RGBA").convert(straight).convert(premultiplied)
    out = codec.decode(codec.encode(image), as_array=True)
    assert out.shape[2] == len(straight) and (out[:, :, -1] == np.asarray(image.convert(straight))[:, :, -1]).all()



def test_a_palette_with_alpha_keeps_its_transparency_and_lab_has_none(codec, photo):
    """Pillow's convert("P") and quantize() of an RGBA image give a palette with alpha and no
    transparency key; LAB has an "A" in its name but no alpha (its fourth byte is padding, 0 in
    an image made in memory)."""
    rgba = np.dstack([photo, np.where(np.arange(photo.shape[1]) < photo.shape[1] // 2, 0, 255)[None, :]
                      .repeat(photo.shape[0], 0).astype(np.uint8)])
    for paletted in (Image.fromarray(rgba, "RGBA").convert("P"), Image.fromarray(rgba, "RGBA").quantize(64)):
        assert paletted.palette.mode == "RGBA" and "transparency" not in paletted.info
        out = codec.decode(codec.encode(paletted), as_array=True)
        assert out.shape[2] == 4
        np.testing.assert_array_equal(out[:, :, 3], np.asarray(paletted.convert("RGBA"))[:, :, 3])
    lab = Image.merge("LAB", Image.fromarray(photo).convert("LAB").split())
    assert np.asarray(lab.convert("RGBA"))[:, :, 3].max() == 0  # the padding, taken for alpha
    out = codec.decode(codec.encode(lab), as_array=True)
    assert out.shape == photo.shape and psnr(out, np.asarray(lab.convert("RGB"))) > 25

def test_a_pil_image_that_cannot_be_loaded_is_a_named_error(codec, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(nicodec.UnsupportedImageError, match=r"^Pillow could not read the pixels of the PIL image \(.+\)$"):
        with Image.open(tmp_path / "cut.png") as cut:  # opened lazily: the pixels are read by encode
            codec.encode(cut)
    with Image.open(tmp_path / "a.png") as closed:
        pass
    with pytest.raises(nicodec.UnsupportedImageError, match="closed"):
        codec.encode(closed)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")  # numpy's, of np.asmatrix
def test_odd_inputs_from_applications(codec, photo):
    # A numpy matrix is coded as the plain array it holds (numpy's repeat crashed on a strided one).
    gray = np.ascontiguousarray(photo[:, :, 0])
    assert codec.encode(np.asmatrix(gray)) == codec.encode(gray)
    assert codec.encode(np.asmatrix(photo[:, :, 0])) == codec.encode(gray)
    # Values in info that are not metadata bytes are left out, not an error.
    image = Image.fromarray(photo)
    image.info.update(icc_profile="not bytes", exif="not bytes")
    assert codec.encode(image) == codec.encode(photo)


def test_opening_images_on_many_threads_leaves_the_warning_filters_alone():
    """Quieting Pillow's size warning changes process-wide filters; threads (``--jobs``) that
    interleaved those changes used to leave a filter behind, silencing the warning for the caller."""
    import sys
    import threading
    import warnings

    from nicodec.images import open_image_bytes

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    before = list(warnings.filters)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        def work():
            for _ in range(300):
                open_image_bytes(buffer.getvalue(), check_size=lambda width, height: None)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert warnings.filters == before


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1)])
def test_extreme_shapes_from_files(codec, tmp_path, size):
    h, w = size
    image = np.full((h, w, 3), 128, np.uint8)
    image[..., 0] = np.linspace(0, 255, h * w).reshape(h, w).astype(np.uint8)
    path = save(Image.fromarray(image), tmp_path / "thin.png")
    assert codec.decode(codec.encode(path), as_array=True).shape == (h, w, 3)


def test_truncated_jpeg_is_refused(codec, photo, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: buffer.tell() // 2])
    with pytest.raises(nicodec.UnsupportedImageError, match="cut.jpg"):
        codec.encode(path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("just some text\n"), "not an image"),
        (lambda p: p.mkdir(), "directory"),
        (lambda p: None, "no such file"),
    ],
)
def test_files_that_are_not_images(codec, tmp_path, make, message):
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(nicodec.UnsupportedImageError, match=message):
        codec.encode(path)


def test_alpha_is_kept_unless_opaque(codec, photo, tmp_path):
    opaque = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    path = save(Image.fromarray(opaque, "RGBA"), tmp_path / "opaque.png")
    assert codec.encode(path) == codec.encode(photo)
    opaque[5, 5, 3] = 0
    path = save(Image.fromarray(opaque, "RGBA"), tmp_path / "hole.png")
    assert codec.decode(codec.encode(path), as_array=True)[5, 5, 3] == 0


def test_inputs_are_never_modified(tmp_path, photo):
    path = save(Image.fromarray(photo), tmp_path / "in.png")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    assert runner.invoke(app, ["encode", str(path), "--provider", "cpu"]).exit_code == 0
    assert runner.invoke(app, ["decode", str(tmp_path / "in.nic"), "-o", str(tmp_path / "out.png")]).exit_code == 0
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_interrupted_encode_leaves_nothing(tmp_path, photo, monkeypatch):
    from nicodec import codec as codec_module

    path = save(Image.fromarray(photo), tmp_path / "in.png")

    def interrupted(self, image, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(codec_module.Codec, "encode", interrupted)
    result = runner.invoke(app, ["encode", str(path)])
    assert result.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_interrupted_write_removes_the_temporary_file(tmp_path):
    from nicodec.files import write_atomic

    def half_then_interrupt(f):
        f.write(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "out.nic", half_then_interrupt)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep.nic").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "keep.nic", half_then_interrupt, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nic"]
    assert (tmp_path / "keep.nic").read_bytes() == b"old"


def test_a_file_made_by_someone_else_while_writing_is_not_replaced(tmp_path):
    """The check before the work is not enough: another program may create the output while
    nicodec writes it. Without force that file is kept, the write fails, and no temporary is left;
    with force it is replaced."""
    from nicodec.errors import OutputExistsError
    from nicodec.files import write_atomic

    target = tmp_path / "out.nic"

    def write_while_someone_else_creates_the_target(f):
        f.write(b"ours")
        target.write_bytes(b"theirs")

    with pytest.raises(OutputExistsError, match="exists"):
        write_atomic(target, write_while_someone_else_creates_the_target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nic"]
    assert target.read_bytes() == b"theirs"
    target.unlink()
    write_atomic(target, write_while_someone_else_creates_the_target, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nic"]
    assert target.read_bytes() == b"ours"


@pytest.mark.parametrize("mode", ["RGB", "L", "I;16"])
def test_a_png_colour_key_is_kept_as_transparency(codec, mode, tmp_path):
    """docs/cli.md: transparency is kept losslessly; a PNG's tRNS colour key (one value or RGB triple
    meaning transparent, in an RGB, L or 16-bit image) is transparency too."""
    photo = synthetic_photo(48, 64)
    pixels = {"RGB": photo, "L": photo[:, :, 0], "I;16": photo[:, :, 0].astype(np.uint16) * 257}[mode]
    key = tuple(int(v) for v in pixels[5, 7]) if mode == "RGB" else int(pixels[5, 7])
    path = save(Image.fromarray(pixels), tmp_path / "keyed.png", transparency=key)
    with Image.open(path) as im:
        assert im.mode == mode and im.info["transparency"] == key
    hidden = (pixels == np.array(key)).all(-1) if mode == "RGB" else pixels == key
    assert 0 < hidden.sum() < hidden.size
    data = codec.encode(path)
    out = np.asarray(codec.decode(data))
    assert out.shape[-1] == (4 if mode == "RGB" else 2)  # RGBA, or LA for the grayscale ones
    assert np.array_equal(out[:, :, -1], np.where(hidden, 0, 255))


def _png(path, width, height, bit_depth, colour_type, rows, trns):
    """A PNG written by hand (Pillow writes no 2-bit gray or 16-bit RGB with a colour key)."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\0" + row for row in rows)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
                     + chunk(b"tRNS", trns) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_colour_keys_of_low_bit_gray_pngs_are_scaled_like_their_pixels(codec, tmp_path):
    """Pillow scales 1-, 2- and 4-bit gray samples to 0..255 but not the key: the key is scaled too."""
    import struct

    for bits, key in ((1, 1), (2, 1), (4, 9)):
        values = np.arange(64 * 48).reshape(48, 64) % (1 << bits)
        rows = []
        for row in values:
            packed = 0
            for v in row:
                packed = (packed << bits) | int(v)
            rows.append(packed.to_bytes(64 * bits // 8, "big"))
        path = _png(tmp_path / f"gray{bits}.png", 64, 48, bits, 0, rows, struct.pack(">H", key))
        out = np.asarray(codec.decode(codec.encode(path)))
        assert out.shape == (48, 64, 2), bits  # LA
        assert np.array_equal(out[:, :, 1] == 0, values == key), bits
        # A PIL image opened by the caller (not loaded yet) is coded the same, and left as it was.
        with Image.open(path) as opened:
            given = opened.info["transparency"]
            assert codec.encode(opened) == codec.encode(path), bits
            assert opened.info["transparency"] == given, bits


def test_a_16_bit_rgb_colour_key_is_left_out_with_a_warning(codec, tmp_path):
    """Pillow reads 16-bit RGB as 8-bit but keeps the 16-bit key: matching its top bytes would hide
    pixels that are not the key, so the key is left out, and the user told."""
    import struct

    pixels = np.full((8, 8, 3), 40000, dtype=">u2")
    pixels[:, :4] = (2600, 5200, 7800)  # top bytes (10, 20, 30), not the key
    pixels[0, 0] = (10, 20, 30)  # the key: almost black
    path = _png(tmp_path / "rgb16.png", 8, 8, 16, 2, [row.tobytes() for row in pixels], struct.pack(">HHH", 10, 20, 30))
    with pytest.warns(UserWarning, match="rgb16.png: its colour key .* 16-bit"):
        data = codec.encode(path)
    assert np.asarray(codec.decode(data)).shape == (8, 8, 3)  # opaque, nothing hidden
    with Image.open(path) as opened, pytest.warns(UserWarning, match="rgb16.png: its colour key .* 16-bit"):
        assert codec.encode(opened) == data  # a PIL image the caller opened: the same warning


def test_write_atomic_syncs_before_the_rename_and_keeps_a_newcomer_without_hard_links(tmp_path, monkeypatch):
    """The data reach the disk (fsync) before the name appears, so a crash cannot leave a named,
    empty output; on a file system without hard links (FAT, some network mounts) a file made
    meanwhile is still not replaced."""
    import os

    from nicodec.errors import OutputExistsError
    from nicodec.files import write_atomic

    order = []
    real_fsync, real_link = os.fsync, os.link
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "link", lambda *a, **k: (order.append("link"), real_link(*a, **k))[1])
    write_atomic(tmp_path / "a.nic", lambda f: f.write(b"ours"))
    assert order == ["fsync", "link"] and (tmp_path / "a.nic").read_bytes() == b"ours"

    def no_hard_links(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    target = tmp_path / "b.nic"
    write_atomic(target, lambda f: f.write(b"ours"))  # the fallback: a rename
    assert target.read_bytes() == b"ours"
    newcomer = tmp_path / "c.nic"
    with pytest.raises(OutputExistsError):
        write_atomic(newcomer, lambda f: (f.write(b"ours"), newcomer.write_bytes(b"theirs")))
    assert newcomer.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nic", "b.nic", "c.nic"]
    # Where the system has no rename that refuses to replace: the check, then the rename.
    from nicodec import files

    monkeypatch.setattr(files, "_rename_without_replacing", lambda tmp, path: False)
    write_atomic(tmp_path / "d.nic", lambda f: f.write(b"ours"))
    assert (tmp_path / "d.nic").read_bytes() == b"ours"
    with pytest.raises(OutputExistsError):
        write_atomic(newcomer, lambda f: f.write(b"ours"))
    assert newcomer.read_bytes() == b"theirs"


def _has_renameat2() -> bool:
    import ctypes

    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "renameat2")
    except OSError:
        return False


def test_windows_takes_the_name_by_its_own_rename_which_never_replaces(tmp_path, monkeypatch):
    """Loading the C library by None is a TypeError on Windows (an internal error on a FAT drive);
    its own rename refuses an existing name."""
    from nicodec import files
    from nicodec.errors import OutputExistsError

    def windows_rename(source, target):
        if os.path.exists(target):
            raise FileExistsError(183, "Cannot create a file when that file already exists", str(target))
        os.replace(source, target)

    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(os, "rename", windows_rename)
    (tmp_path / "a.part").write_bytes(b"ours")
    assert files._rename_without_replacing(str(tmp_path / "a.part"), tmp_path / "a.nic")
    (tmp_path / "b.part").write_bytes(b"ours")
    with pytest.raises(OutputExistsError, match="a.nic exists"):
        files._rename_without_replacing(str(tmp_path / "b.part"), tmp_path / "a.nic")
    assert (tmp_path / "a.nic").read_bytes() == b"ours" and (tmp_path / "b.part").exists()


@pytest.mark.skipif(not _has_renameat2(), reason="Linux's renameat2 (glibc 2.28 and later)")
def test_without_hard_links_a_file_made_after_the_check_is_not_replaced(tmp_path, monkeypatch):
    """Without hard links the output was checked, then renamed over: a file another process made
    between the two was replaced (a review saw it in 3 to 7 of 200 tries of 8 processes). The
    rename itself now refuses to replace (RENAME_NOREPLACE)."""
    from pathlib import Path

    from nicodec.errors import OutputExistsError
    from nicodec.files import write_atomic

    def no_hard_links(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    target = tmp_path / "a.nic"
    real_exists = Path.exists
    monkeypatch.setattr(os, "link", no_hard_links)
    # The other process makes the file just after the check would have looked.
    monkeypatch.setattr(Path, "exists", lambda self, *a, **k: False if self == target else real_exists(self, *a, **k))
    with pytest.raises(OutputExistsError, match="a.nic exists; use --force to overwrite it"):
        write_atomic(target, lambda f: (f.write(b"ours"), target.write_bytes(b"theirs")))
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["a.nic"]


@pytest.mark.skipif(sys.platform == "win32", reason="Windows' permissions are a read-only flag")
def test_a_replaced_file_keeps_its_permissions(photo, tmp_path):
    """--force gave the replacement the umask's permissions: a private (0600) file became
    readable by everyone, and its temporary file was so while it was written. It keeps the
    file's own, as cp onto an existing file does, and is private (0600) while written, so that
    no one opens it meanwhile, even where the file it replaces is not; a new file still has the
    umask's."""
    import stat

    from nicodec.files import write_atomic

    def mode(path):
        return stat.S_IMODE(os.stat(path).st_mode)

    private, seen = tmp_path / "private.nic", []
    private.write_bytes(b"old")
    private.chmod(0o600)
    write_atomic(private, lambda f: (seen.append(stat.S_IMODE(os.fstat(f.fileno()).st_mode)), f.write(b"new")),
                 force=True)
    assert private.read_bytes() == b"new" and mode(private) == 0o600 and seen == [0o600]
    for kept in (0o664, 0o000, 0o444):  # no one's: a killed run's 0600 .part is still removable
        shared = tmp_path / f"shared-{kept:o}.nic"
        shared.write_bytes(b"old")
        shared.chmod(kept)
        seen.clear()
        write_atomic(shared, lambda f: (seen.append(stat.S_IMODE(os.fstat(f.fileno()).st_mode)), f.write(b"new")),
                     force=True)
        assert mode(shared) == kept and seen == [0o600]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root replacing another user's file keeps it theirs
        theirs = tmp_path / "theirs.nic"
        theirs.write_bytes(b"old")
        os.chown(theirs, 65534, 65534)
        theirs.chmod(0o640)
        write_atomic(theirs, lambda f: f.write(b"new"), force=True)
        assert (theirs.stat().st_uid, theirs.stat().st_gid, mode(theirs)) == (65534, 65534, 0o640)
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.nic", lambda f: f.write(b"new"))
    finally:
        os.umask(umask)
    assert mode(tmp_path / "new.nic") == 0o644
    # The command line goes through it: an encode with --force over a private file.
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert CliRunner().invoke(app, ["encode", str(tmp_path / "photo.png"), "-o", str(private), "--force"]).exit_code == 0
    assert mode(private) == 0o600 and private.read_bytes()[:4] != b"new"


def test_a_file_system_without_permissions_still_takes_the_replacement(tmp_path, monkeypatch):
    """FAT and exFAT (SD cards) refuse fchown and fchmod (EPERM): the replacement is written all
    the same, with the permissions its temporary file had (0600 where the file system keeps any),
    and nothing is left beside it."""
    import stat

    from nicodec import files

    asked = []

    def refused(call):
        def refuse(fd, *args):
            asked.append(call)
            raise PermissionError(1, "Operation not permitted")
        return refuse

    monkeypatch.setattr(os, "fchown", refused("fchown"))
    monkeypatch.setattr(os, "fchmod", refused("fchmod"))
    shared = tmp_path / "shared.nic"
    shared.write_bytes(b"old")
    shared.chmod(0o644)
    files.write_atomic(shared, lambda f: f.write(b"new"), force=True)
    assert shared.read_bytes() == b"new" and stat.S_IMODE(shared.stat().st_mode) == 0o600
    assert asked == ["fchown", "fchown", "fchmod"]  # the owner with its group, the group alone, the mode
    assert [p.name for p in tmp_path.iterdir()] == ["shared.nic"]


def test_write_atomic_names_an_output_the_file_system_cannot_hold(tmp_path):
    """Its name too long was a bare OSError from a Path check, not the NicodecError documented."""
    from nicodec.errors import NicodecError
    from nicodec.files import write_atomic

    with pytest.raises(NicodecError, match="cannot use the output .*: File name too long"):
        write_atomic(tmp_path / ("c" * 300 + ".nic"), lambda f: f.write(b"x"))
    assert list(tmp_path.iterdir()) == []


def test_a_name_too_long_is_refused_before_the_work_where_pathlib_says_false(tmp_path, monkeypatch):
    """Python 3.14's Path.exists(), is_dir() and is_file() answer False to a name too long,
    where 3.13's raised: the output was refused only at the write, after the work, and a folder
    name too long was called a folder that does not exist. Here pathlib answers as 3.14's does."""
    from nicodec.errors import NicodecError
    from nicodec.files import check_target

    def quiet(method):
        def answer(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except OSError:
                return False
        return answer

    for name in ("exists", "is_dir", "is_file"):
        monkeypatch.setattr(Path, name, quiet(getattr(Path, name)))
    for target in (tmp_path / ("c" * 300 + ".nic"), tmp_path / ("d" * 300) / "x.nic"):
        with pytest.raises(NicodecError, match="cannot use the output .*: File name too long"):
            check_target(target, force=False)
    check_target(tmp_path / "fine.nic", force=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="no flock: nothing is removed on Windows")
def test_what_a_killed_writer_left_is_removed_later_and_what_a_live_one_writes_is_not(tmp_path):
    """A SIGKILL (the out-of-memory killer) while an output is written left its
    ``.NAME.TOKEN.part`` for good. The writer locks it until the rename, so a later run removes
    it once nothing holds it, and never a file still being written, however old."""
    import os
    import signal
    import subprocess
    import time

    from nicodec.files import remove_stale_temporaries

    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom nicodec.files import write_atomic\n"
         "def write(f):\n    f.write(b'half'); f.flush(); print('ready', flush=True); time.sleep(120)\n"
         f"write_atomic({str(tmp_path / 'big.png')!r}, write)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "ready\n"
        [part] = [p for p in tmp_path.iterdir() if p.name.startswith(".big.png.")]
        old = time.time() - 3600
        os.utime(part, (old, old))
        assert remove_stale_temporaries(tmp_path, ["big.png"]) == [] and part.exists()  # still being written
    finally:
        writer.send_signal(signal.SIGKILL)
        ended(writer)
    others = {".other.png.0123abcd.part": old, ".big.png.0123abcd.part": time.time(),  # another output; fresh
              ".big.png.0123abcg.part": old, "big.png.0123abcd.part": old}  # not a token; not hidden
    for name, when in others.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (when, when))
    (tmp_path / "kept").write_bytes(b"someone's")
    os.symlink(tmp_path / "kept", tmp_path / ".big.png.0123abce.part")
    (tmp_path / ".big.png.0123abcf.part").mkdir()
    assert remove_stale_temporaries(tmp_path, ["big.png", "a.png"]) == [part.name]
    assert not part.exists() and not (tmp_path / "big.png").exists()
    assert all((tmp_path / name).exists() for name in others) and (tmp_path / "kept").read_bytes() == b"someone's"
    assert remove_stale_temporaries(tmp_path / "missing", ["big.png"]) == []


def test_the_command_line_removes_what_a_killed_run_left_beside_its_outputs(tmp_path, photo):
    import os
    import time

    runner = CliRunner()
    Image.fromarray(photo).save(tmp_path / "a.png")
    old = time.time() - 3600
    for name in (".a.nic.0123abcd.part", ".a.png.0123abcd.part"):
        (tmp_path / name).write_bytes(b"half")
        os.utime(tmp_path / name, (old, old))
    result = runner.invoke(app, ["encode", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert "note: removed 1 temporary file that a killed run left unfinished: " in result.stderr
    assert not (tmp_path / ".a.nic.0123abcd.part").exists() and (tmp_path / ".a.png.0123abcd.part").exists()
    out = tmp_path / "out"
    out.mkdir()
    for name in (".a.png.0123abcd.part", ".a.png.0123abce.part"):
        (out / name).write_bytes(b"half")
        os.utime(out / name, (old, old))
    (tmp_path / "a.png").rename(tmp_path / "b.png")
    result = runner.invoke(app, ["decode", str(tmp_path), "-o", str(out)])  # a folder: the batch
    assert result.exit_code == 0, result.output
    assert "note: removed 2 temporary files" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert (tmp_path / ".a.png.0123abcd.part").exists()  # not beside an output of this run
    # A run refused because its output exists removes it too (nothing else would, without --force).
    (tmp_path / "b.png").rename(tmp_path / "a.png")
    (tmp_path / ".a.nic.0123abcd.part").write_bytes(b"half")
    os.utime(tmp_path / ".a.nic.0123abcd.part", (old, old))
    result = runner.invoke(app, ["encode", str(tmp_path / "a.png")])
    assert result.exit_code == 1 and "exists" in result.stderr and "note: removed 1 temporary file" in result.stderr
    assert not (tmp_path / ".a.nic.0123abcd.part").exists()
    # An output no image format is named by is refused first, on its own: the note came before it.
    (tmp_path / ".a.xyz.0123abcd.part").write_bytes(b"half")
    os.utime(tmp_path / ".a.xyz.0123abcd.part", (old, old))
    for output in (tmp_path / "a.xyz", out / "new" / "a.xyz"):
        result = runner.invoke(app, ["decode", str(tmp_path / "a.nic"), "-o", str(output)])
        assert result.exit_code == 1 and result.stderr.startswith("error: cannot write images with the extension")
        assert "note" not in result.stderr and not (out / "new").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="no flock: nothing is removed on Windows")
def test_a_note_that_cannot_be_printed_does_not_stop_the_write(tmp_path, photo):
    import os
    import subprocess
    import time

    Image.fromarray(photo).save(tmp_path / "a.png")
    old = time.time() - 3600
    (tmp_path / ".a.nic.0123abcd.part").write_bytes(b"half")
    os.utime(tmp_path / ".a.nic.0123abcd.part", (old, old))
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(tmp_path / "a.png")], stderr=full,
                              stdout=subprocess.PIPE)
    assert done.returncode == 0 and (tmp_path / "a.nic").exists()
    assert not (tmp_path / ".a.nic.0123abcd.part").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_writer_that_finds_its_new_file_looked_at_waits_for_the_lock(tmp_path, monkeypatch):
    """Another run's cleanup holds a new temporary file's lock for a moment: the writer went on
    without one, so a later cleanup could remove the file under it."""
    import fcntl
    import os

    from nicodec import files

    real, calls = fcntl.flock, []

    def busy_once(fd, operation):
        calls.append(operation)
        if len(calls) == 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real(fd, operation)

    monkeypatch.setattr(files.fcntl, "flock", busy_once)
    fd, tmp = files._create_temporary(tmp_path, "a.nic")
    monkeypatch.setattr(files.fcntl, "flock", real)
    try:
        assert calls == [fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_EX]
        other = os.open(tmp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the writer
        finally:
            os.close(other)
    finally:
        os.close(fd)


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_file_system_without_locks_is_written_and_its_temporaries_kept(tmp_path, monkeypatch):
    """Where flock fails (ENOLCK: some network mounts), outputs are written as anywhere, and a
    killed run's temporary file is left alone: without locks, one being written cannot be told
    from one left behind."""
    import errno
    import os
    import time

    from nicodec import files

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(files.fcntl, "flock", no_locks)
    left = tmp_path / ".a.nic.0123abcd.part"
    left.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(left, (old, old))
    files.write_atomic(tmp_path / "a.nic", lambda f: f.write(b"new"))
    assert (tmp_path / "a.nic").read_bytes() == b"new"
    assert files.remove_stale_temporaries(tmp_path, ["a.nic"]) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.nic.0123abcd.part", "a.nic"]
    monkeypatch.undo()
    assert files.remove_stale_temporaries(tmp_path, ["a.nic"]) == [".a.nic.0123abcd.part"]  # with locks, it goes


def test_a_nic_file_given_to_encode_is_named_whether_or_not_the_pillow_plugin_is_registered(codec, photo, tmp_path):
    """Without the plugin it was "not in a format Pillow can read"; with it, the file was decoded
    and coded again in silence, a generation's loss. A PIL image opened from one is taken."""
    from nicodec import pillow_plugin

    data = codec.encode(photo)
    path = tmp_path / "a.nic"
    path.write_bytes(data)
    # A plugin with a stricter pixel limit refuses the file as Pillow opens it: a LimitError was
    # raised, that "Pillow opens no larger image".
    for plugin in (codec, nicodec.Codec(providers="cpu", max_pixels=100), codec):
        for source in (data, path, io.BytesIO(data)):
            with pytest.raises(nicodec.UnsupportedImageError, match="is a .nic file already: decode it first"):
                codec.encode(source)
        pillow_plugin.register(plugin)  # taken out again by conftest's _pillow_plugin_as_it_was
    assert len(codec.encode(Image.fromarray(codec.decode(data, as_array=True)))) > 0


@pytest.mark.parametrize("mode, key", [("RGB", (1, 2)), ("RGB", "x"), ("RGB", b"\0"), ("L", b"\0\0"), ("L", 300),
                                       ("L", (255, 255, 255)), ("L", "x")])
def test_a_malformed_transparency_key_of_an_application_is_ignored(codec, photo, mode, key):
    """A key that is no colour of the image (the wrong length or type) was ignored before
    transparency was read through has_transparency_data; then convert("RGBA") raised a TypeError.
    An L image with an RGB key (Pillow leaves one there: convert("1").convert("L") of a keyed
    RGB PNG) raised it from convert("RGB")."""
    image = Image.fromarray(photo).convert(mode)
    plain = codec.encode(image)
    image.info["transparency"] = key
    data = codec.encode(image)
    assert data == plain and image.info["transparency"] == key
    out = codec.decode(data, as_array=True)
    assert out.shape[:2] == photo.shape[:2] and out.ndim == (3 if mode == "RGB" else 2)


def test_damaged_files_of_every_kind_are_read_or_refused_by_name():
    """A short run of ``tests/fuzz/fuzz_inputs.py``: damaged PNG, JPEG, TIFF, WebP, AVIF, GIF,
    BMP, ... files give a picture or a NicodecError, never another exception."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "fuzz" / "fuzz_inputs.py"
    spec = importlib.util.spec_from_file_location("fuzz_inputs", path)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    result = fuzz.run(2000, seed=1)
    assert not result["findings"], result["findings"]
    assert result["outcomes"].get("read", 0) > 50 and result["outcomes"].get("UnsupportedImageError", 0) > 50


def test_reading_an_image_leaves_the_host_programs_warning_filters_alone(codec, photo, monkeypatch):
    """Each encode of bytes, a path or a file object saved the process's warning filters and put
    the saved list back after Pillow's open: a filter another thread of the application added
    meanwhile was lost (one in about 250, in a review's service loop)."""
    import warnings

    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG")
    real_open = Image.open

    def open_while_the_app_adds_a_filter(*args, **kwargs):
        warnings.filterwarnings("ignore", message="the application's own filter")  # another thread, meanwhile
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", open_while_the_app_adds_a_filter)
    with warnings.catch_warnings():  # (the test's own, put back after it)
        codec.encode(buffer.getvalue())
        assert any(f[1] is not None and f[1].pattern == "the application's own filter" for f in warnings.filters)



def test_a_float_array_is_refused_with_the_conversion_to_make(codec):
    with pytest.raises(nicodec.UnsupportedImageError, match=r"must be uint8, not float32 \(floats from 0 to 1: "
                                                            r"np\.round\(image \* 255\)\.astype\(np\.uint8\)\)"):
        codec.encode(np.full((16, 16, 3), 0.5, np.float32))
    with pytest.raises(nicodec.UnsupportedImageError, match="must be uint8, not int16$"):
        codec.encode(np.zeros((16, 16, 3), np.int16))


def _gray_alpha_png(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_sixteen_bit_gray_and_alpha_png_comes_back_gray(codec):
    """Pillow reads it as RGBA (LA;16B cut to 8 bits): it came back in colour, where 8-bit LA and
    16-bit L come back gray."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 1 << 16, (30, 40)).astype(">u2")
    alpha = np.where(rng.random((30, 40)) > 0.5, 65535, 0).astype(">u2")
    data = _gray_alpha_png(40, 30, 16, 4, b"".join(b"\0" + np.stack([gray[y], alpha[y]], -1).tobytes() for y in range(30)))
    opened = Image.open(io.BytesIO(data))
    for source in (data, io.BytesIO(data), opened, opened):  # the second time loaded (its tiles that tell it gone)
        back = codec.decode(codec.encode(source))
        assert back.mode == "LA" and np.array_equal(np.asarray(back)[:, :, 1], (alpha >> 8).astype(np.uint8))


def test_an_exif_of_its_orientation_alone_leaves_no_section(codec):
    """Orientation 1 left an empty EXIF section (FORMAT.md: a section is left out, not written empty),
    and the decoded PNG an empty eXIf chunk; orientations 2 to 8 left none."""
    from nicodec import format as nicformat

    exif = Image.Exif()
    exif[274] = 1
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (100, 50, 20)).save(buffer, "JPEG", exif=exif.tobytes())
    _, sections = nicformat.unpack(codec.encode(buffer.getvalue()))
    assert list(sections) == [b"ZSYM", b"YSYM"]


def _header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, with a few bytes of pixels: a decompression bomb's size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(10))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(12000, 9000), (100000, 100000)])  # above Pillow's warning; above its refusal
@pytest.mark.parametrize("as_error", [False, True])
def test_an_image_the_pixel_limit_refuses_meets_no_pillow_warning(codec, tmp_path, size, as_error):
    """Pillow's DecompressionBombWarning was raised for an image the default limit then refused
    (escaping encode as Pillow's own exception where the host makes warnings errors), and a
    larger one was a LimitError of Pillow's, not the PixelLimitError of the limit."""
    import warnings

    data = _header_only_png(*size)
    (tmp_path / "big.png").write_bytes(data)
    pixels = f"{size[0] * size[1]:,} pixels \\({size[0]}x{size[1]}\\), more than the limit of 89,478,485"
    for source in (data, io.BytesIO(data), tmp_path / "big.png"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("error" if as_error else "always")
            with pytest.raises(nicodec.PixelLimitError, match=pixels):
                codec.encode(source)
        assert not caught, [str(w.message) for w in caught]


def test_pillows_warning_made_an_error_by_the_host_is_a_limit_error(tmp_path):
    """Within a raised max_pixels Pillow warns (the host's filters decide); made an error there, it is named."""
    import warnings

    raised = nicodec.Codec(providers="cpu", max_pixels=200_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(nicodec.LimitError, match=r"^the image data: .+ \(Pillow's warning, which this "
                                                     r"program's warning filters make an error\)$"):
            raised.encode(_header_only_png(12000, 9000))


class _Endless:
    """A stream that never ends (a socket fed by /dev/zero), counting what was read of it."""

    def __init__(self, start: bytes = b""):
        self.start, self.given = start, 0

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "an endless stream read whole"
        piece = (self.start[self.given:] + bytes(size))[:size]
        self.given += len(piece)
        return piece


def test_a_file_object_is_read_with_the_limits_of_a_pipe(codec, photo, monkeypatch, tmp_path):
    """A file object was read whole: an endless one filled the memory, and a 400 MB one of
    another kind was read before it was refused. It is now refused from its first 64 KiB, and
    read to at most MAX_STREAM_BYTES; past that, a LimitError, from a named pipe's path too (an
    image's was an UnsupportedImageError)."""
    from nicodec import files

    for encode, message in ((codec.encode, "the image data is not in a format Pillow can read"),
                            (codec.decode, "not a nicodec file")):
        stream = _Endless()
        with pytest.raises(nicodec.NicodecError, match=message):
            encode(stream)
        assert stream.given <= files.START_BYTES + (1 << 20)
    monkeypatch.setattr(files, "MAX_STREAM_BYTES", 3 << 20)
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    nic = codec.encode(photo)
    for encode, start, what in ((codec.encode, png.getvalue(), "image file"), (codec.decode, nic, ".nic file")):
        stream = _Endless(start)
        # A LimitError, as a file too large given by its path is (a service tells "too large" by it).
        with pytest.raises(nicodec.LimitError, match=f"the {what} from _Endless holds more than 3,145,728 bytes"):
            encode(stream)
        assert stream.given <= (4 << 20)
        if hasattr(os, "mkfifo"):  # a named pipe given by its path (<(cat huge.ppm)): a LimitError too
            fifo = tmp_path / f"pipe{len(start)}"
            os.mkfifo(fifo)
            writer = threading.Thread(target=_write_ignoring_the_close, args=(fifo, start + bytes(5 << 20)),
                                      daemon=True)  # never opened by a failing encode: the worker still ends
            writer.start()
            with pytest.raises(nicodec.LimitError, match=f"{fifo} is not a regular file and holds more than 3,145,728"):
                encode(fifo)
            writer.join(timeout=60)
            assert not writer.is_alive()


def _write_ignoring_the_close(path, data: bytes) -> None:
    """Write ``data`` into the named pipe ``path`` until its reader closes it."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except BrokenPipeError:
        pass


def test_a_file_objects_own_failure_is_kept_as_the_cause(codec):
    """A service tells a client that hung up from a bad image by the cause (it was dropped)."""

    class Reset:
        def read(self, size=-1):
            raise ConnectionResetError(104, "Connection reset by peer")

    class NonBlocking:
        def read(self, size=-1):
            return None

    for coding, what in ((codec.encode, "image file"), (codec.decode, ".nic file")):
        with pytest.raises(nicodec.NicodecError, match=f"cannot read the {what} from Reset: .*reset by peer") as info:
            coding(Reset())
        assert isinstance(info.value.__cause__, ConnectionResetError)
        with pytest.raises(nicodec.NicodecError, match="gave no bytes \\(None\\): it is non-blocking"):
            coding(NonBlocking())


def test_byte_buffers_of_every_kind_and_a_released_one(codec, photo):
    """encode refused an array.array of bytes that decode took, and took a one-dimensional uint8
    array of a file's bytes (np.fromfile's) for pixels; a released memoryview was a bare ValueError."""
    import array

    from nicodec.ratecontrol import encode_to_target

    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG")
    png = buffer.getvalue()
    nic = codec.encode(png)
    assert codec.encode(array.array("B", png)) == nic
    assert encode_to_target(codec, array.array("B", png), max_bytes=len(nic)) == encode_to_target(codec, png, max_bytes=len(nic))
    assert codec.encode(np.frombuffer(png, np.uint8)) == nic
    assert encode_to_target(codec, np.frombuffer(png, np.uint8), max_bytes=len(nic)) == encode_to_target(codec, png, max_bytes=len(nic))
    with pytest.raises(nicodec.PixelLimitError, match=r"\(256x192\), more than the limit of 100$"):
        nicodec.Codec(providers="cpu", max_pixels=100).encode(np.frombuffer(png, np.uint8))
    with pytest.raises(nicodec.UnsupportedImageError, match=r"^the image data is not in a format Pillow can read \(a "
                       r"one-dimensional uint8 array is read as an image file's bytes; numpy images of pixels are \(H, W\)"):
        codec.encode(photo.ravel())  # pixels flattened: told what a 1-D array is read as, and what pixels are
    with pytest.raises(nicodec.UnsupportedImageError, match=r"numpy images must be uint8, not int32 \(a one-dimensional "
                       r"array is read as an image file's bytes: np.fromfile\(path, dtype=np.uint8\)\)"):
        codec.encode(np.frombuffer(png[:len(png) // 4 * 4], np.int32))
    with pytest.raises(nicodec.UnsupportedImageError, match=r"not float64 \(a one-dimensional"):
        codec.encode(np.zeros(100))  # np.fromfile's default dtype

    class Whole:  # a read() that takes no size
        def __init__(self, data):
            self.data = data

        def read(self):
            data, self.data = self.data, b""
            return data

    assert codec.encode(Whole(png)) == nic
    assert np.array_equal(codec.decode(Whole(nic), as_array=True), codec.decode(nic, as_array=True))
    with pytest.raises(nicodec.UnsupportedImageError, match="not a buffer of 4-byte items \\(array\\)"):
        codec.encode(array.array("i", [1, 2, 3]))
    for data, coding, kind in ((png, codec.encode, nicodec.UnsupportedImageError), (nic, codec.decode, nicodec.NicodecError)):
        view = memoryview(data)
        view.release()
        with pytest.raises(kind, match="from the memoryview: operation forbidden on released memoryview"):
            coding(view)


def test_the_size_is_read_ahead_from_pillows_own_plugins_only(monkeypatch):
    """pillow-jxl-plugin decodes the whole image as it opens one: reading its size ahead
    decoded a JPEG XL twice. Another package's plugin is left to the check after Image.open."""
    from PIL import ImageFile

    from nicodec.images import header_size

    opened = []

    class ThirdParty(ImageFile.ImageFile):
        format = "THIRD"

        def _open(self):
            opened.append(True)
            self._size, self._mode = (7, 5), "RGB"

    ThirdParty.__module__ = "some_pillow_plugin"
    Image.init()
    monkeypatch.setitem(Image.OPEN, "THIRD", (ThirdParty, lambda prefix: prefix.startswith(b"THIRD")))
    monkeypatch.setattr(Image, "ID", [*Image.ID, "THIRD"])
    assert header_size(io.BytesIO(b"THIRD" + bytes(100))) is None and not opened
    monkeypatch.setattr(ThirdParty, "__module__", "PIL.ThirdPartyImagePlugin")
    assert header_size(io.BytesIO(b"THIRD" + bytes(100))) == (7, 5) and opened
    assert header_size(io.BytesIO(_header_only_png(12000, 9000))) == (12000, 9000)


def test_a_nic_file_given_as_a_file_object_is_named_as_one(codec, photo):
    """The first 64 KiB of a file object are checked to be an image: a .nic file larger than
    that was "not in a format Pillow can read" (as bytes or a path, it was named)."""
    nic = codec.encode(np.tile(photo, (8, 8, 1)), quality=100)
    assert len(nic) > (1 << 16)
    with pytest.raises(nicodec.UnsupportedImageError, match="is a .nic file already: decode it first"):
        codec.encode(io.BytesIO(nic))
    from nicodec import files
    from nicodec.format import MAGIC

    stream = _Endless(MAGIC)  # refused as one from its start, not read to the cap (1 GiB)
    with pytest.raises(nicodec.UnsupportedImageError, match="the image data is a .nic file already"):
        codec.encode(stream)
    assert stream.given <= files.START_BYTES + (1 << 20)


def test_where_os_access_cannot_tell_a_folder_is_read_only_a_file_is_made_to_know(photo, tmp_path, monkeypatch):
    """On Windows os.access says yes to every folder: an output in a read-only share was found
    only once the work was done (a target-PSNR search: every encode). There the folder is tried
    by making a file, before any work. Simulated (a portability review's finding): as root, or
    on Linux, a folder's permissions would not stop the file."""
    from nicodec import files

    Image.fromarray(photo).save(tmp_path / "photo.png")
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(files, "ACCESS_KNOWS_FOLDERS", False)
    files.check_writable(tmp_path / "ro")
    assert list((tmp_path / "ro").iterdir()) == []  # the probe is gone
    real_open, opened = os.open, []

    def refusing(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == str(tmp_path / "ro"):
            opened.append(path)
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    encodes = []
    monkeypatch.setattr(nicodec.Codec, "encode", lambda *args, **kwargs: encodes.append(1))
    result = CliRunner().invoke(app, ["encode", str(tmp_path / "photo.png"), "-o", str(tmp_path / "ro" / "x.nic"),
                                      "--target-psnr", "33"])
    assert result.exit_code == 1 and f"cannot write in {tmp_path / 'ro'}: Permission denied" in result.stderr
    assert opened and encodes == []


def test_an_image_file_is_read_through_a_file_object_not_a_memory_map(tmp_path, monkeypatch):
    """Given the path, Pillow mapped a raw format (PGM) into memory, and another program cutting
    the file short meanwhile ended the process with SIGBUS (exit 135, nothing said)."""
    import mmap

    mapped = []

    class NoMap(mmap.mmap):  # a type still, as annotations that name mmap.mmap need
        def __new__(cls, *args, **kwargs):
            mapped.append(args)
            raise OSError("no map in this test")

    path = tmp_path / "gray.pgm"
    Image.fromarray(synthetic_photo(64, 96)[:, :, 0]).save(path)
    monkeypatch.setattr(mmap, "mmap", NoMap)
    data = nicodec.Codec().encode(path)
    assert mapped == [] and nicodec.Codec().decode(data, as_array=True).shape == (64, 96)


def test_an_image_rewritten_while_it_is_read_is_refused(tmp_path, monkeypatch):
    """Rows read before and after another program rewrote the file were coded as one picture,
    reported as a success (a batch checked its inputs; a single file and the API did not)."""
    from nicodec import images

    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(64, 96)).save(path)
    before = path.read_bytes()
    load = images._load

    def rewritten_meanwhile(image, name):
        loaded = load(image, name)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # as a write leaves it
        return loaded

    monkeypatch.setattr(images, "_load", rewritten_meanwhile)
    with pytest.raises(nicodec.UnsupportedImageError, match=r"photo.png changed while it was read \(another program "
                                                           r"writing it\?\); read it again once it is written"):
        nicodec.Codec().encode(path)
    result = CliRunner().invoke(app, ["encode", str(path), "-o", str(tmp_path / "photo.nic")])
    assert result.exit_code == 1 and "changed while it was read" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "photo.nic").exists() and path.read_bytes() == before


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_single_file_replaced_while_it_is_coded_gets_no_output(tmp_path, monkeypatch, command):
    """An editor saves through a new file and a rename: a single file's encode (or decode) went
    on coding the old picture from its open file and wrote it, newer than the new file, so every
    later batch took it as up to date (a batch compared the file again before writing; one file
    did not)."""
    from nicodec.codec import Codec

    path = tmp_path / ("photo.png" if command == "encode" else "photo.nic")
    Image.fromarray(synthetic_photo(48, 64, seed=1)).save(tmp_path / "photo.png")
    if command == "decode":
        path.write_bytes(nicodec.Codec().encode(tmp_path / "photo.png"))
    real = getattr(Codec, command)

    def replaced_meanwhile(self, source, **options):
        done = real(self, source, **options)
        new = path.with_name("new" + path.suffix)
        new.write_bytes(path.read_bytes() + (b"" if command == "decode" else b"\0"))  # another file, same picture
        os.replace(new, path)
        return done

    monkeypatch.setattr(Codec, command, replaced_meanwhile)
    result = CliRunner().invoke(app, [command, str(path), "-o", str(tmp_path / "out") + "/"])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {path}: it changed while it was being coded; nothing was written for it: run " \
                            "again to code it as it is now\n"
    assert not (tmp_path / "out").exists()  # nor the folder -o out/... was to make


def test_a_single_file_removed_while_it_is_coded_is_said_to_be(tmp_path, monkeypatch):
    from nicodec.codec import Codec

    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(48, 64, seed=1)).save(path)
    real = Codec.encode

    def removed_meanwhile(self, source, **options):
        done = real(self, source, **options)
        path.unlink()
        return done

    monkeypatch.setattr(Codec, "encode", removed_meanwhile)
    result = CliRunner().invoke(app, ["encode", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}: it was removed while it was being coded; nothing was written for it\n"
    assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_no_folder_that_o_dir_made(tmp_path, monkeypatch):
    """cli.md: a new ``-o DIR/`` is made only when the output is written, so a run that fails
    leaves none; a write that failed (a full disk, Ctrl-C) left the new folders empty."""
    from nicodec import files

    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(48, 64, seed=1)).save(path)
    (tmp_path / "kept").mkdir()

    def full(target, writer, **options):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "write_atomic", full)
    result = CliRunner().invoke(app, ["encode", str(path), "-o", str(tmp_path / "kept" / "new" / "deeper") + "/"])
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert os.listdir(tmp_path / "kept") == []


def test_every_error_of_an_image_given_by_its_path_names_it_once(codec, photo, tmp_path, monkeypatch):
    """Some errors of ``Codec.encode(path)`` named the file (a cut-off file, several frames) and
    others did not (mode F, the pixel limit), as the command line's did: a service coding many
    files could not tell which one failed (found by a review of real-world photo inputs)."""
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "float.tif")
    Image.fromarray(photo).save(tmp_path / "photo.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "photo.png").read_bytes()[:200])
    cases = [(codec, tmp_path / "float.tif", "mode F"), (codec, str(tmp_path / "cut.png"), "truncated|could not"),
             (nicodec.Codec(max_pixels=100), tmp_path / "photo.png", "more than the limit of 100")]
    for coder, path, match in cases:
        with pytest.raises(nicodec.NicodecError, match=match) as caught:
            coder.encode(path)
        assert str(caught.value).count(os.fspath(path)) == 1, caught.value
    with pytest.raises(nicodec.UnsupportedImageError) as caught:  # a PIL image of the same file: no path to name
        codec.encode(Image.open(tmp_path / "float.tif"))
    assert str(caught.value).startswith("floating-point images (mode F)")
    (tmp_path / "-").write_bytes((tmp_path / "float.tif").read_bytes())  # a file named -, not standard input
    monkeypatch.chdir(tmp_path)
    with pytest.raises(nicodec.UnsupportedImageError, match=r"^-: floating-point images \(mode F\)"):
        codec.encode("-")


def _png_with_cicp(image: Image.Image, primaries: int, transfer: int, before_pixels: bool = False, **params) -> bytes:
    """The PNG of ``image`` with a cICP chunk after its header (``before_pixels``: just before its
    first IDAT, after every chunk Pillow writes there)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    data = buffer.getvalue()
    at = data.index(b"IDAT") - 4 if before_pixels else 8 + 12 + 13
    body = b"cICP" + bytes([primaries, transfer, 0, 1])
    return data[:at] + struct.pack(">I", 4) + body + struct.pack(">I", zlib.crc32(body)) + data[at:]


def _avif_with_nclx(image: Image.Image, primaries: int, transfer: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "AVIF", quality=90)
    data = bytearray(buffer.getvalue())
    at = data.find(b"colrnclx")
    assert at > 0, "Pillow's AVIF writer wrote no nclx colour box"
    data[at + 8 : at + 12] = primaries.to_bytes(2, "big") + transfer.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("kind", ["png", "avif"])
def test_a_colour_space_signalled_without_a_profile_is_warned_of(codec, photo, tmp_path, kind):
    """A PNG's cICP chunk and an AVIF's nclx box can say the pixels are Display P3, BT.2020 or
    HDR without an ICC profile (phones', browsers' and HDR tools' files). Pillow reads neither,
    and nicodec kept nothing of it, without a word: the decoded picture was shown as sRGB, its
    colours duller (or an HDR picture's all wrong). It is warned of, as a PNG's gAMA and cHRM
    are; sRGB signalled so is not, nor anything with a profile or under --strip."""
    from PIL import ImageCms, features

    if kind == "avif" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    made = _png_with_cicp if kind == "png" else _avif_with_nclx
    image = Image.fromarray(photo)
    where = "PNG cICP" if kind == "png" else "AVIF nclx"
    path = tmp_path / f"p3.{kind}"
    path.write_bytes(made(image, 12, 16))
    for source in (path, path.read_bytes()):
        shown = str(path) if source is path else "the image"
        with pytest.warns(UserWarning, match=rf"{shown}: its colour space \({where}: Display P3 primaries, PQ \(HDR\) "
                                             r"transfer\) is not kept; the decoded picture is shown as sRGB"):
            codec.encode(source)
    result = runner.invoke(app, ["encode", str(path), "-o", str(tmp_path / "p3.nic")])
    assert result.exit_code == 0 and f"warning: {path}: its colour space ({where}: " in result.stderr, result.stderr
    quiet = [made(image, 1, 13), made(image, 2, 2)]
    if kind == "png":
        # cICP rules over a PNG's colour profile (PNG's third edition): the profile kept, the
        # picture is shown by it, not as cICP said
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        with pytest.warns(UserWarning, match=r"the image: its colour space \(PNG cICP: BT.2020 primaries, HLG \(HDR\) "
                                             r"transfer\) is not kept; the decoded picture is shown by its colour "
                                             r"profile, which is kept"):
            codec.encode(_png_with_cicp(image, 9, 18, icc_profile=srgb))
        # after a large text chunk: past the first 64 KiB, which were all that was read of the file
        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", "x" * 70_000)
        late = tmp_path / "late.png"
        late.write_bytes(_png_with_cicp(image, 9, 16, before_pixels=True, pnginfo=text))
        assert late.read_bytes().index(b"cICP") > 1 << 16
        with pytest.warns(UserWarning, match=rf"{late}: its colour space \(PNG cICP: BT.2020 primaries, PQ"):
            codec.encode(late)
    for data in quiet:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            codec.encode(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codec.encode(path, strip=True)


def test_heif_photos_are_read_where_pillow_heif_is_installed(codec, tmp_path):
    """A phone's photos are HEIC: with pillow-heif installed (the [heif] extra) they are read,
    turned upright once (libheif applies the file's rotation and pillow-heif resets the EXIF
    orientation), their profile kept, in a folder too."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from nicodec import format as nicformat
    from PIL import ImageCms

    pillow_heif.register_heif_opener()  # to write one here; nicodec's own registration: the test below
    photo = synthetic_photo(96, 160)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter clockwise to be seen upright
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    folder = tmp_path / "phone"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "IMG_0001.HEIC", quality=95, exif=exif.tobytes(), icc_profile=srgb)
    upright = np.rot90(photo, -1)
    data = codec.encode(folder / "IMG_0001.HEIC")
    assert nicformat.unpack(data)[1][b"ICCP"] == srgb
    out = codec.decode(data, as_array=True)
    assert out.shape == upright.shape and psnr(out, upright) > 28
    result = runner.invoke(app, ["encode", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0 and "1 file: 1 encoded" in result.stdout, result.output
    assert "passed over" not in result.stderr and (tmp_path / "out" / "IMG_0001.nic").exists()
    damaged = Path(__file__).parent / "data" / "damaged-eof.heic"  # found by tests/fuzz/fuzz_inputs.py
    # libheif's own words for the damage change between its versions ("Unexpected end of file",
    # then "a NAL unit size is invalid"): nicodec's sentence, with libheif's in brackets.
    try:  # pillow-heif's error, not a traceback; a libheif that reads past the damage may code it
        codec.encode(damaged)
    except nicodec.UnsupportedImageError as exc:
        assert re.search(r"could not read the pixels of .*damaged-eof\.heic \(.+\)", str(exc)), exc


def test_without_pillow_heif_a_heif_photo_is_named_with_the_way_to_read_it(codec, tmp_path, monkeypatch):
    """Without pillow-heif, Pillow does not know HEIF: a phone's photo was "not an image Pillow
    can read", with nothing to say what would read it."""
    from nicodec import images, plugins

    Image.init()  # before the registry is changed: what it registers would go into the stand-ins
    monkeypatch.setattr(images, "register_plugins", lambda: None)
    monkeypatch.setattr(plugins, "register_plugins", lambda: None)
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    monkeypatch.setattr(Image, "ID", [format_id for format_id in Image.ID if format_id != "HEIF"])
    monkeypatch.setattr(Image, "EXTENSION", {ext: fmt for ext, fmt in Image.EXTENSION.items() if fmt != "HEIF"})
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(200)
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(heic)
    hint = '(a HEIF/HEIC image: pip install "nicodec[heif]" adds pillow-heif, which reads them)'
    for source, said in ((folder / "IMG_0001.HEIC", f"{folder / 'IMG_0001.HEIC'} is not an image Pillow can read"),
                         (heic, "the image data is not in a format Pillow can read")):
        with pytest.raises(nicodec.UnsupportedImageError) as caught:
            codec.encode(source)
        assert str(caught.value) == f"{said} {hint}"
    result = runner.invoke(app, ["encode", str(folder / "IMG_0001.HEIC")])
    assert result.exit_code == 1 and hint in result.stderr, result.output
    Image.fromarray(synthetic_photo(32, 32)).save(folder / "other.png")
    result = runner.invoke(app, ["encode", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert ("(1 .heic); hidden files are passed over uncounted; pip install \"nicodec[heif]\" adds pillow-heif, which "
            "reads HEIF/HEIC") in result.stderr, result.stderr


_HEIF_IN_A_FRESH_PROCESS = """
import sys, warnings
import pillow_heif
if sys.argv[2] == "registered":  # by the program, with its own options: nicodec leaves them
    pillow_heif.register_heif_opener(thumbnails=False)
    pillow_heif.register_heif_opener = lambda **options: sys.exit("registered again")
elif sys.argv[2] == "broken":
    def broken(**options):
        raise RuntimeError("libheif is missing")
    pillow_heif.register_heif_opener = broken
from nicodec import Codec, UnsupportedImageError
warnings.simplefilter("always")
try:
    print(len(Codec(providers="cpu").encode(sys.argv[1])))
except UnsupportedImageError as exc:
    print(exc)
"""


@pytest.mark.parametrize("program", ["plain", "registered", "broken"])
def test_nicodec_registers_pillow_heif_itself_unless_the_program_did(tmp_path, program):
    """In a program that never registered pillow-heif, Codec.encode reads a HEIC (the test above
    registers it to write one); one that registered it with its own options keeps them; an
    install that cannot register is warned of, and the HEIC refused by name."""
    import subprocess

    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    path = tmp_path / "IMG_0002.heic"
    Image.fromarray(synthetic_photo(64, 96)).save(path, quality=90)
    process = subprocess.run([sys.executable, "-c", _HEIF_IN_A_FRESH_PROCESS, str(path), program],
                             capture_output=True, text=True, timeout=300, check=False)
    assert process.returncode == 0, process.stderr
    if program == "broken":
        assert "pillow-heif is installed but cannot be used (libheif is missing); HEIF/HEIC images are not read" \
            in process.stderr
        assert process.stdout == (f"{path} is not an image Pillow can read (a HEIF/HEIC image: pillow-heif is "
                                  "installed but cannot be used: libheif is missing)\n"), process.stdout
    else:
        assert int(process.stdout) > 100 and process.stderr == "", (process.stdout, process.stderr)


def test_an_image_that_cannot_be_opened_is_named_with_the_reason(codec, tmp_path, monkeypatch):
    """A file the user may not read (another user's, an ACL: root reads any, so the refusal is
    made here) and a name too long for the file system: one line each, naming the file and why,
    from the library and from the command line."""
    from nicodec import images

    path = tmp_path / "locked.png"
    Image.fromarray(synthetic_photo(48, 64, seed=2)).save(path)

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", refused, raising=False)  # the module's open(), not Pillow's
    with pytest.raises(nicodec.UnsupportedImageError, match=f"^cannot read {re.escape(str(path))}: permission denied$"):
        codec.encode(path)
    result = CliRunner().invoke(app, ["encode", str(path), "-o", str(tmp_path / "locked.nic")])
    assert result.exit_code == 1 and f"cannot read {path}: permission denied" in result.stderr, result.stderr
    assert not (tmp_path / "locked.nic").exists()
    monkeypatch.undo()
    long = tmp_path / ("x" * 300 + ".png")  # most file systems take 255 bytes a name
    with pytest.raises(nicodec.UnsupportedImageError, match=f"^cannot read {re.escape(str(long))}: File name too long$"):
        codec.encode(long)


def test_hdr_a_file_signals_outside_its_pixels_is_warned_of(codec, photo):
    """An Ultra HDR JPEG (a phone's HDR photo: the gain map an MPF image after the picture, named
    by hdrgm XMP), which Pillow opens as a plain JPEG, kept only its standard range picture
    without a word; a PIL image of a HEIF photo, whose nclx colour space pillow-heif puts in
    ``info``, was coded without the warning its file gets."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/" hdrgm:Version="1.0"/>'
           b'</rdf:RDF></x:xmpmeta>')
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=95, xmp=xmp)
    with pytest.warns(UserWarning, match=r"^the image: its HDR gain map \(Ultra HDR\) is not kept: the picture coded "
                                         r"is its standard range rendition, whose XMP still names the gain map$"):
        codec.encode(buffer.getvalue())
    image = Image.fromarray(photo)
    image.info["nclx_profile"] = {"color_primaries": 9, "transfer_characteristics": 16, "matrix_coefficients": 9,
                                  "full_range_flag": 1}
    with pytest.warns(UserWarning, match=r"its colour space \(HEIF nclx: BT.2020 primaries, PQ \(HDR\) transfer\) is "
                                         r"not kept; the decoded picture is shown as sRGB"):
        codec.encode(image)
    image.info["nclx_profile"] = {"color_primaries": 1, "transfer_characteristics": 13}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codec.encode(image)
