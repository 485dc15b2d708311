"""The Pillow plugin: Image.open and Image.save on .nic files, lazily and with clear errors."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

import nicodec
from nicodec import FormatError, ModelMismatchError
from nicodec import format as nicformat
from nicodec import pillow_plugin

from conftest import padded_to_64, psnr, synthetic_photo
from profiles import cmyk_profile


@pytest.fixture(autouse=True)
def registered(codec):
    """Every test starts with the plugin registered on the shared CPU codec (conftest's
    _pillow_plugin_as_it_was takes it out again afterwards)."""
    pillow_plugin.register(codec)


@pytest.fixture(scope="module")
def photo_image() -> Image.Image:
    return Image.fromarray(synthetic_photo(48, 80, seed=3))


@pytest.fixture(scope="module")
def nic(codec, photo_image) -> bytes:
    return codec.encode(photo_image)


def payload_offset(data: bytes) -> int:
    return nicformat.read_header(data)[2]


def repacked(data: bytes, **header_fields) -> bytes:
    """The same file with some header fields changed and a valid CRC."""
    header, sections = nicformat.unpack(data)
    return nicformat.pack(dataclasses.replace(header, **header_fields), sections)


# -- round trips --------------------------------------------------------------------------


def test_round_trip_through_a_path(codec, photo_image, tmp_path):
    path = tmp_path / "photo.nic"
    photo_image.save(path)
    assert path.read_bytes()[:4] == nicformat.MAGIC
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("NIC", "RGB", photo_image.size)
        pixels = np.asarray(im)
    assert np.array_equal(pixels, codec.decode(path, as_array=True))
    assert psnr(pixels, np.asarray(photo_image)) > 26


def test_round_trip_through_a_file_object(codec, photo_image):
    buf = io.BytesIO()
    photo_image.save(buf, format="NIC")
    data = buf.getvalue()
    assert data[:4] == nicformat.MAGIC
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "NIC" and im.size == photo_image.size
        assert np.array_equal(np.asarray(im), codec.decode(data, as_array=True))


def test_save_all_writes_one_frame_and_refuses_more(photo_image):
    """save_all=True raised a bare KeyError: 'NIC' before (no all-frames handler was registered)."""
    one, plain = io.BytesIO(), io.BytesIO()
    photo_image.save(one, format="NIC", save_all=True)
    photo_image.save(plain, format="NIC")
    assert one.getvalue() == plain.getvalue()
    with pytest.raises(OSError, match="holds one picture; save_all was given 2 frames"):
        photo_image.save(io.BytesIO(), format="NIC", save_all=True, append_images=[photo_image])
    with pytest.raises(OSError, match="save_all was given 3 frames"):
        photo_image.save(io.BytesIO(), format="NIC", save_all=True, append_images=iter([photo_image] * 2))
    none_appended = io.BytesIO()
    photo_image.save(none_appended, format="NIC", save_all=True, append_images=iter([]))
    assert none_appended.getvalue() == plain.getvalue()


def test_an_opened_nic_image_saves_again(nic, tmp_path):
    # Its info holds the header's "quality": saving takes only the options given to save().
    with Image.open(io.BytesIO(nic)) as im:
        im.save(tmp_path / "again.nic")
        im.save(tmp_path / "again.png")
    with Image.open(tmp_path / "again.nic") as again, Image.open(tmp_path / "again.png") as png:
        assert again.format == "NIC" and again.size == png.size
        assert psnr(np.asarray(again), np.asarray(png)) > 26


@pytest.mark.parametrize("mode", ["L", "P", "CMYK"])
def test_other_modes_are_converted_like_the_codec_does(codec, photo_image, mode):
    other = photo_image.convert(mode)
    buf = io.BytesIO()
    other.save(buf, format="NIC")
    assert buf.getvalue() == codec.encode(other)
    with Image.open(buf) as im:
        assert im.mode == ("L" if mode == "L" else "RGB")
        out = np.asarray(im)
    assert psnr(out, np.asarray(other.convert(im.mode))) > 18  # dithered palettes code worse



@pytest.mark.parametrize("profile", [None, b"", "srgb"])
def test_a_cmyk_image_saved_with_another_profile_keeps_the_colours_of_its_own(photo_image, profile):
    """save(icc_profile=...) replaces the profile the file keeps; a CMYK image's own CMYK profile
    still converts its pixels, as a plain save and strip=True do (it was left out first, and
    Pillow's formula converted them). The caller's image is not changed."""
    from PIL import ImageCms

    own = cmyk_profile()
    cmyk = photo_image.convert("CMYK")
    cmyk.info["icc_profile"] = own
    expected = np.asarray(ImageCms.profileToProfile(cmyk, ImageCms.ImageCmsProfile(io.BytesIO(own)),
                                                    ImageCms.createProfile("sRGB"), outputMode="RGB"))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    given = srgb if profile == "srgb" else profile
    buf = io.BytesIO()
    cmyk.save(buf, format="NIC", icc_profile=given)
    with Image.open(buf) as im:
        out = np.asarray(im)
        assert im.info.get("icc_profile") == (given or None)
    assert psnr(out, expected) > psnr(out, np.asarray(cmyk.convert("RGB"))) + 6
    assert cmyk.info["icc_profile"] == own and not hasattr(cmyk, "_nicodec_cmyk_profile")

def test_transparency_and_metadata_round_trip(photo_image, tmp_path):
    rgba = photo_image.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.info["icc_profile"] = b"not really an ICC profile"
    path = tmp_path / "clear.nic"
    rgba.save(path)
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        assert im.info["icc_profile"] == b"not really an ICC profile"
        assert im.getpixel((0, 0))[3] == 0 and im.getpixel((1, 1))[3] == 255
    rgba.save(path, strip=True)
    with Image.open(path) as im:
        assert "icc_profile" not in im.info
    # Pillow's own save options replace the image's metadata, as for its other formats.
    exif = Image.Exif()
    exif[0x0110] = "Model X"
    rgba.save(path, exif=exif, icc_profile=b"another profile")
    with Image.open(path) as im:
        assert im.info["icc_profile"] == b"another profile" and dict(im.getexif()) == {0x0110: "Model X"}
    assert rgba.info["icc_profile"] == b"not really an ICC profile"  # the caller's image is unchanged
    # strip=True and a replacement contradict each other: neither wins silently, and nothing is
    # written (to a buffer: Pillow empties a path before the plugin runs, docs/pillow.md).
    for given in ({"dpi": (300, 300)}, {"comment": "c", "exif": exif}, {"icc_profile": b"p"}):
        buffer = io.BytesIO()
        with pytest.raises(ValueError, match=r"strip=True leaves out the metadata, and .*= would add it back"):
            rgba.save(buffer, format="NIC", strip=True, **given)
        assert buffer.getvalue() == b""
    rgba.save(path, strip=True, exif=None, comment=None, icc_profile=b"")  # leaving out is what strip does
    with Image.open(path) as im:
        assert "icc_profile" not in im.info and "exif" not in im.info


# -- registration -------------------------------------------------------------------------


def test_extension_and_mime_type(nic):
    assert Image.registered_extensions()[".nic"] == "NIC"
    assert Image.MIME["NIC"] == "image/x-nicodec"
    with Image.open(io.BytesIO(nic)) as im:
        assert im.get_format_mimetype() == "image/x-nicodec"


def test_register_is_idempotent(codec, nic):
    for _ in range(3):
        pillow_plugin.register(codec)
    assert Image.ID.count("NIC") == 1
    assert Image.registered_extensions()[".nic"] == "NIC"
    assert Image.MIME["NIC"] == "image/x-nicodec"
    with Image.open(io.BytesIO(nic)) as im:
        assert np.array_equal(np.asarray(im), codec.decode(nic, as_array=True))


def test_register_uses_the_codec_it_is_given(codec, photo_image):
    calls = []

    class Counting:
        def encode(self, image, **kwargs):
            calls.append("encode")
            return codec.encode(image, **kwargs)

        def decode(self, data, **kwargs):
            calls.append("decode")
            return codec.decode(data, **kwargs)

    pillow_plugin.register(Counting())
    buf = io.BytesIO()
    photo_image.save(buf, format="NIC")
    with Image.open(buf) as im:
        im.load()
    assert calls == ["encode", "decode"]


def test_a_codec_that_cannot_load_what_it_runs_is_not_the_files_fault(tmp_path, nic, photo_image, monkeypatch):
    """Graphs load at first use, inside the decode that the plugin wraps in OSError (as Pillow's
    callers expect of a damaged file): a copy of the model without the encoder, or a decoder graph
    that does not load (out of memory), came out as OSError. They are raised as themselves."""
    import shutil

    from nicodec import codec as codec_module
    from nicodec.model import default_model_dir

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    (model / "encoder.onnx").unlink()
    pillow_plugin.register(nicodec.Codec(model, providers="cpu"))
    with pytest.raises(nicodec.ModelError, match="cannot encode"):
        photo_image.save(io.BytesIO(), format="NIC")
    with Image.open(io.BytesIO(nic)) as im:
        assert im.load() is not None  # it decodes

    def starved(path, *args, **kwargs):
        raise nicodec.OutOfMemoryError(f"out of memory while loading {path.name}")

    fresh = nicodec.Codec(model, providers="cpu")  # its entropy graph loads now, the decoder at first use
    monkeypatch.setattr(codec_module, "create_session", starved)
    pillow_plugin.register(fresh)
    with Image.open(io.BytesIO(nic)) as im, pytest.raises(nicodec.OutOfMemoryError, match="decoder.onnx"):
        im.load()


def test_register_refuses_what_is_not_a_codec():
    with pytest.raises(nicodec.NicodecError, match="Codec"):
        pillow_plugin.register("models/other")
    # The class has encode and decode too (unbound): it failed only at the first save, as a TypeError.
    with pytest.raises(nicodec.NicodecError, match=r"not the class Codec: give an instance, such as Codec\(\)"):
        pillow_plugin.register(nicodec.Codec)


def test_importing_pillow_register_keeps_a_codec_the_application_registered(monkeypatch):
    """A library that imports nicodec.pillow_register to add .nic support replaced the
    application's own Codec (its pixel limit, providers, model) without a word."""
    import importlib

    from nicodec import pillow_register

    mine = nicodec.Codec(max_pixels=1000)
    for table in ("OPEN", "SAVE", "SAVE_ALL", "EXTENSION", "MIME", "DECODERS"):  # the registration is put back after
        monkeypatch.setattr(Image, table, dict(getattr(Image, table)))
    monkeypatch.setattr(Image, "ID", list(Image.ID))
    pillow_plugin.register(mine)
    importlib.reload(pillow_register)  # as its first import, after the application's register()
    assert Image.OPEN[pillow_plugin.FORMAT][0].keywords["codec_source"]._codec is mine
    del Image.OPEN[pillow_plugin.FORMAT]
    importlib.reload(pillow_register)  # nothing registered yet: the default codec
    assert Image.OPEN[pillow_plugin.FORMAT][0].keywords["codec_source"] is pillow_plugin._DEFAULT


LAZY_SCRIPT = textwrap.dedent(
    """
    import io, json, sys
    import nicodec.pillow_register
    from nicodec import pillow_plugin
    from PIL import Image

    heavy = lambda: sorted(m for m in ("onnxruntime", "nicodec.codec") if m in sys.modules)
    report = {"after_import": heavy()}
    report["extension"] = Image.registered_extensions().get(".nic")
    im = Image.open(sys.argv[1])
    report["size"] = list(im.size)
    report["after_open"] = heavy()
    report["codec_before_load"] = pillow_plugin._DEFAULT._codec is not None
    im.load()
    report["after_load"] = heavy()
    report["codec_after_load"] = pillow_plugin._DEFAULT._codec is not None

    from nicodec.codec import Codec
    made = []
    real_init = Codec.__init__
    Codec.__init__ = lambda self, *a, **k: made.append(1) or real_init(self, *a, **k)
    pillow_plugin.register()  # again, without a codec: the default one is kept
    im.save(io.BytesIO(), format="NIC")
    Image.open(sys.argv[1]).load()
    report["codecs_made_later"] = len(made)
    print(json.dumps(report))
    """
)


def test_default_codec_is_made_on_first_use_and_reused(nic, tmp_path):
    path = tmp_path / "photo.nic"
    path.write_bytes(nic)
    result = subprocess.run(
        [sys.executable, "-c", LAZY_SCRIPT, str(path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["after_import"] == [] and report["extension"] == "NIC"
    assert report["after_open"] == [] and report["codec_before_load"] is False
    assert report["size"] == [80, 48]
    assert report["after_load"] == ["nicodec.codec", "onnxruntime"]
    assert report["codec_after_load"] is True and report["codecs_made_later"] == 0


# -- lazy decoding ------------------------------------------------------------------------


def test_open_reads_only_the_header(codec, nic, monkeypatch):
    decoded = []
    real_decode = codec.decode
    monkeypatch.setattr(codec, "decode", lambda data, **kw: decoded.append(1) or real_decode(data, **kw))
    buf = io.BytesIO(nic)
    im = Image.open(buf)
    assert buf.tell() == payload_offset(nic)  # not a byte of the payloads read
    assert (im.size, im.mode) == ((80, 48), "RGB")
    header = nicformat.read_header(nic)[0]
    assert im.info == {"model_id": header.model_id, "model_hash": header.model_hash.hex(), "quality": header.quality}
    assert decoded == []
    im.load()
    assert decoded == [1]


def test_header_facts_are_in_info(codec, nic):
    with Image.open(io.BytesIO(repacked(nic, quality=0.25))) as im:
        assert im.info["model_id"] == codec.model_id
        assert im.info["quality"] == 0.25


def test_file_from_another_model_opens_but_fails_on_load(codec, nic):
    other = repacked(nic, model_id="other-model")
    im = Image.open(io.BytesIO(other))
    assert im.size == (80, 48) and im.info["model_id"] == "other-model"
    with pytest.raises(OSError) as info:
        im.load()
    assert isinstance(info.value.__cause__, ModelMismatchError)
    assert str(info.value) == str(info.value.__cause__)
    assert "made by model 'other-model'" in str(info.value)


def test_corrupt_payload_opens_but_fails_on_load(nic):
    data = bytearray(nic)
    data[payload_offset(nic) + 5] ^= 0x10
    im = Image.open(io.BytesIO(bytes(data)))
    assert im.size == (80, 48)
    with pytest.raises(OSError, match="checksum mismatch") as info:
        im.load()
    assert isinstance(info.value.__cause__, FormatError)


def test_a_damaged_text_section_opens_without_its_text_and_fails_on_load(codec, photo_image):
    """open() reads the header and the small sections; a TEXT section that does not unpack gives
    the image no text (rather than text read from damaged bytes), and load() names the damage."""
    from nicodec import text as text_section

    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Author", "someone")
    buffer = io.BytesIO()
    photo_image.save(buffer, "PNG", pnginfo=chunks)
    with Image.open(buffer) as source:
        data = bytearray(codec.encode(source))
    _, table, at = nicformat.read_header(bytes(data))
    lengths = dict(table)
    at += sum(length for tag, length in table[: [tag for tag, _ in table].index(text_section.TAG)])
    with Image.open(io.BytesIO(bytes(data))) as im:
        assert im.text == {"Author": "someone"}
    data[at + lengths[text_section.TAG] - 1] ^= 0xFF  # the zlib stream's own checksum
    with Image.open(io.BytesIO(bytes(data))) as im:
        assert im.size == photo_image.size and im.text == {}
        with pytest.raises(OSError, match="checksum mismatch"):
            im.load()


def test_a_truncated_file_keeps_no_partial_profile(codec, photo_image):
    image = photo_image.copy()
    image.info["icc_profile"] = bytes(range(256)) * 4
    data = codec.encode(image)
    for cut in range(payload_offset(data), len(data), 97):
        im = Image.open(io.BytesIO(data[:cut]))
        assert im.info.get("icc_profile", image.info["icc_profile"]) == image.info["icc_profile"]


def test_a_claimed_metadata_length_beyond_the_file_is_not_read(codec, photo_image, monkeypatch):
    """A damaged header's 768 MiB ICC length must not make Image.open reserve 768 MiB (a
    MemoryError under an address-space limit): only sections the file holds in full are read.
    (One of 4 GiB is refused at once: more than nicodec reads.)"""
    image = photo_image.copy()
    image.info["icc_profile"] = b"profile"
    data = bytearray(codec.encode(image))
    _, table, payload_at = nicformat.read_header(bytes(data))
    entry = payload_at - nicformat.CRC.size - nicformat.SECTION_ENTRY.size * (len(table) - [t for t, _ in table].index(b"ICCP"))
    data[entry + 4: entry + 8] = (0x30000000).to_bytes(4, "little")
    reads = []
    real_read = io.BytesIO.read

    class Watched(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return real_read(self, size)

    im = Image.open(Watched(bytes(data)), formats=["NIC"])  # other plugins' reads are theirs
    assert "icc_profile" not in im.info and max(reads) <= 1 << 20  # read a block at a time, not 768 MiB at once
    with pytest.raises(OSError):
        im.load()
    # A length that makes the file larger than nicodec reads (1 GiB): refused at once, as damage.
    data[entry + 4: entry + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    reads.clear()
    with pytest.raises(UnidentifiedImageError, match="damaged nicodec file: .*declares 4,294,967,"):
        Image.open(Watched(bytes(data)), formats=["NIC"])
    assert max(reads) <= 1 << 20


def test_a_damaged_section_length_publishes_no_metadata_read_from_the_wrong_place(codec, photo_image):
    """One damaged length in the section table shifts every later section: Image.open published
    the bytes found there as the ICC profile and EXIF (getexif then raised SyntaxError), which
    code that reads metadata without decoding took for the file's own."""
    from PIL import ImageCms

    image = photo_image.copy()
    image.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    image.info["exif"] = exif.tobytes()
    data = bytearray(codec.encode(image))
    _, table, payload_at = nicformat.read_header(bytes(data))
    first = payload_at - nicformat.CRC.size - nicformat.SECTION_ENTRY.size * len(table)  # ZSYM's entry
    length = int.from_bytes(data[first + 4: first + 8], "little")
    data[first + 4: first + 8] = (length + 2).to_bytes(4, "little")
    im = Image.open(io.BytesIO(bytes(data)))
    assert "icc_profile" not in im.info and "exif" not in im.info
    with pytest.raises(OSError, match="section lengths add up to"):
        im.load()
    whole = Image.open(io.BytesIO(codec.encode(image)))
    assert whole.info["icc_profile"] == image.info["icc_profile"] and whole.getexif()[0x010F] == "Camera"


def test_the_codecs_pixel_limit_applies_at_open_before_pillow_allocates(codec, nic, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as applications that open big images do
    huge = repacked(nic, width=1 << 15, height=1 << 15)  # 1.07 G pixels: Pillow would reserve 3 GB
    with pytest.raises(Image.DecompressionBombError, match="^the file claims 1,073,741,824 pixels .*more than the "
                       "limit of 89,478,485 .register a Codec"):  # as decode words it
        Image.open(io.BytesIO(huge))
    pillow_plugin.register(nicodec.Codec(providers="cpu", max_pixels=80 * 47))
    with pytest.raises(Image.DecompressionBombError, match="3,840 pixels .* limit of 3,760"):
        Image.open(io.BytesIO(nic))
    # The codec counts the padding too (70x41 is coded as 80x48), and so does open, before load.
    padded = codec.encode(Image.fromarray(synthetic_photo(41, 70, seed=3)))
    pillow_plugin.register(nicodec.Codec(providers="cpu", max_pixels=70 * 41))
    with pytest.raises(Image.DecompressionBombError, match="2,870 pixels .*padded .* 80x48 = 3,840 pixels"):
        Image.open(io.BytesIO(padded))
    pillow_plugin.register(nicodec.Codec(providers="cpu", max_pixels=80 * 48))
    assert Image.open(io.BytesIO(padded)).load() is not None
    # A file made before nicodec 0.7.0 was padded to multiples of 64: 70x41 as 128x64.
    older = padded_to_64(nicodec.Codec(providers="cpu"), Image.fromarray(synthetic_photo(41, 70, seed=3)))
    with pytest.raises(Image.DecompressionBombError, match="2,870 pixels .*padded .* 128x64 = 8,192 pixels"):
        Image.open(io.BytesIO(older))


def test_truncated_payload_opens_but_fails_on_load(nic, tmp_path):
    path = tmp_path / "cut.nic"
    path.write_bytes(nic[:-7])
    with Image.open(path) as im:
        assert im.size == (80, 48)
        with pytest.raises(OSError, match="truncated"):
            im.load()


def test_verify_checks_the_container_without_decoding(codec, nic, monkeypatch):
    monkeypatch.setattr(codec, "decode", None)  # would fail if called
    with Image.open(io.BytesIO(nic)) as im:
        im.verify()
    damaged = nic[:-1] + bytes([nic[-1] ^ 1])
    with Image.open(io.BytesIO(damaged)) as im, pytest.raises(SyntaxError, match="checksum"):
        im.verify()


def test_pillow_bomb_check_applies_from_the_header(nic):
    huge = repacked(nic, width=1 << 20, height=1 << 20)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(huge))


# -- files that are not (whole) .nic files -----------------------------------------------


def test_accept_checks_the_magic_bytes(nic, photo_image):
    accept = Image.OPEN["NIC"][1]
    png = io.BytesIO()
    photo_image.save(png, format="PNG")
    assert accept(nic[:16]) and accept(nic[:4])
    assert not accept(png.getvalue()[:16]) and not accept(b"") and not accept(nic[:3])


def test_empty_files_are_not_identified(tmp_path):
    path = tmp_path / "empty.nic"
    path.write_bytes(b"")
    with pytest.raises(UnidentifiedImageError, match="cannot identify image file"):
        Image.open(path)
    with pytest.raises(UnidentifiedImageError, match="cannot identify image file"):
        Image.open(io.BytesIO(b""))


@pytest.mark.parametrize("keep", [4, 6, 7, 30, -1])
def test_truncated_headers_are_refused_by_name(nic, keep):
    cut = nic[: keep if keep > 0 else payload_offset(nic) + keep]
    with pytest.raises(UnidentifiedImageError, match="damaged nicodec file: truncated file"):
        Image.open(io.BytesIO(cut))


def test_damaged_header_is_refused_by_name(nic, tmp_path):
    path = tmp_path / "v2.nic"
    path.write_bytes(nic[:4] + b"\x02" + nic[5:])
    with pytest.raises(UnidentifiedImageError, match="unreadable nicodec file .*v2.nic.*: format version 2, newer "
                       "than this nicodec reads .version 1.: a later release of nicodec may decode it"):
        Image.open(path)  # not called damaged: a later release's file, most likely
    for version in (0, 0xC7):  # a byte no release wrote or is likely to: damage
        path.write_bytes(nic[:4] + bytes([version]) + nic[5:])
        with pytest.raises(UnidentifiedImageError, match=f"damaged nicodec file .*v2.nic.*unsupported format version "
                           f"{version} "):
            Image.open(path)


def test_other_files_are_left_to_other_plugins(photo_image, nic, tmp_path):
    png = tmp_path / "really_a_png.nic"
    photo_image.save(png, format="PNG")
    with Image.open(png) as im:
        assert im.format == "PNG"
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(UnidentifiedImageError, match="cannot identify image file"):
        Image.open(io.BytesIO(noise))
    with pytest.raises(UnidentifiedImageError, match="cannot identify image file"):
        Image.open(io.BytesIO(b"\x89PNG" + nic[4:]))


# -- save options -------------------------------------------------------------------------


def test_quality_keyword_is_recorded_and_raises_the_rate(codec, photo_image, tmp_path):
    sizes = {}
    for quality in (5, 37.3, 95):
        path = tmp_path / f"q{quality}.nic"
        photo_image.save(path, quality=quality)
        assert path.read_bytes() == codec.encode(photo_image, quality=quality)
        with Image.open(path) as im:
            assert im.info["quality"] == quality  # 37.3, not the float32's 37.29999923706055
        sizes[quality] = path.stat().st_size
    assert sizes[5] < sizes[37.3] < sizes[95]
    buf = io.BytesIO()
    photo_image.save(buf, format="NIC", quality=None)  # the model's default
    assert buf.getvalue() == codec.encode(photo_image)
    assert Image.open(buf).info["quality"] == codec.default_quality


@pytest.mark.parametrize("quality", [0, 100.5, -1, float("nan"), "high", "keep", True])
def test_bad_qualities_are_refused_and_nothing_is_written(photo_image, tmp_path, quality):
    path = tmp_path / "q.nic"
    with pytest.raises(ValueError, match="quality") as info:
        photo_image.save(path, quality=quality)
    assert isinstance(info.value, nicodec.QualityError)
    assert not path.exists()
    buf = io.BytesIO()
    with pytest.raises(ValueError, match="quality"):
        photo_image.save(buf, format="NIC", quality=quality)
    assert buf.getvalue() == b""


@pytest.mark.parametrize("orientation", [None, 1, 3, 6])
def test_exif_edited_through_getexif_is_what_is_kept_whatever_the_orientation(codec, orientation):
    """Pillow's way to drop a photo's GPS location and keep the rest (``del im.getexif()[0x8825]``)
    was undone for a photo with an orientation to apply (most phones'): exif_transpose read the
    EXIF again from the file's bytes, and the location was kept, in the .nic file and the plugin's."""
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    if orientation is not None:
        exif[0x0112] = orientation
    exif.get_ifd(0x8825)[1] = "N"  # GPSLatitudeRef
    buffer = io.BytesIO()
    Image.fromarray(synthetic_photo(40, 56)).save(buffer, "JPEG", exif=exif.tobytes())
    with Image.open(buffer) as im:
        edited = im.getexif()
        del edited[0x8825]
        edited[0x010F] = "Edited"
        saved = io.BytesIO()
        im.save(saved, "NIC")
        for data in (codec.encode(im), saved.getvalue()):
            kept = codec.decode(data).getexif()
            assert kept.get(0x010F) == "Edited" and 0x8825 not in kept and kept.get(0x0112) is None
        assert im.getexif().get(0x0112) == orientation and im.getexif().get(0x010F) == "Edited"  # the caller's, as it was


def test_saving_an_image_with_an_exif_orientation_stores_it_upright(tmp_path):
    photo = synthetic_photo(48, 80, seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(photo).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    with Image.open(tmp_path / "rotated.jpg") as im:
        im.save(tmp_path / "rotated.nic")
        upright = np.asarray(im.transpose(Image.Transpose.ROTATE_270).convert("RGB"))
    with Image.open(tmp_path / "rotated.nic") as im:
        assert im.size == (48, 80) and 0x0112 not in im.getexif()
        assert psnr(np.asarray(im.convert("RGB")), upright) > 24
    # The image's own EXIF, or an edited copy of it, given back as exif=: turned once, not twice.
    with Image.open(tmp_path / "rotated.jpg") as im:
        edited = im.getexif()
        edited[0x010E] = "edited"  # ImageDescription
        for given in (im.info["exif"], edited, edited.tobytes()):
            buffer = io.BytesIO()
            im.save(buffer, "NIC", exif=given)
            with Image.open(buffer) as back:
                assert back.size == (48, 80) and 0x0112 not in back.getexif()
                assert psnr(np.asarray(back.convert("RGB")), upright) > 24
        buffer = io.BytesIO()
        im.save(buffer, "NIC", xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="8"/>'
                                   b'</x:xmpmeta>')
        with Image.open(buffer) as back:
            assert back.size == (48, 80) and b"Orientation" not in back.info["xmp"]
            assert psnr(np.asarray(back.convert("RGB")), upright) > 24


def test_an_exif_given_to_save_with_a_quarter_turn_has_its_resolution_turned_too(tmp_path):
    """The orientation was left out of exif=, its X and Y resolution kept as they were: the
    file's EXIF then said 300 x 72 dpi where its density (and a plain save's EXIF) said 72 x 300."""
    tags = Image.Exif()
    tags[0x0112], tags[0x011A], tags[0x011B], tags[0x0128] = 6, 300.0, 72.0, 2
    Image.fromarray(synthetic_photo(48, 80, seed=4)).save(tmp_path / "r.jpg", exif=tags, dpi=(300, 72))
    with Image.open(tmp_path / "r.jpg") as im:
        saved = []
        for given in ({}, {"exif": im.info["exif"]}):
            buffer = io.BytesIO()
            im.save(buffer, "NIC", **given)
            with Image.open(buffer) as back:
                exif = back.getexif()
                saved.append((back.info["dpi"], exif[0x011A], exif[0x011B]))
                assert 0x0112 not in exif
    assert saved[0] == saved[1] == ((72, 300), 72, 300)
    # An image nicodec does not turn (turned already, or without an orientation): exif= describes
    # it as it is, its quarter turn's orientation notwithstanding (the swap made the file's EXIF
    # say 72 x 300 where its density said 300 x 72).
    with Image.open(tmp_path / "r.jpg") as im:
        given = im.info["exif"]
        for image, dpi in ((ImageOps.exif_transpose(im), None), (Image.fromarray(synthetic_photo(48, 80)), (300, 72))):
            buffer = io.BytesIO()
            image.save(buffer, "NIC", exif=given, **({"dpi": dpi} if dpi else {}))
            with Image.open(buffer) as back:
                exif = back.getexif()
                assert (exif[0x011A], exif[0x011B]) == (300, 72) and 0x0112 not in exif
                if dpi:
                    assert back.info["dpi"] == (300, 72)



def test_save_metadata_arguments_are_checked_and_none_leaves_the_images_own_out(photo_image):
    """exif=123 or icc_profile="abc" used to be dropped in silence; icc_profile=None (as Pillow's PNG
    writer reads it) now leaves the image's own profile out, as an explicit argument should."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = photo_image.copy()
    image.info["icc_profile"] = icc
    for bad in ({"exif": 123}, {"exif": "abc"}, {"icc_profile": "abc"}):
        with pytest.raises(ValueError, match="must be bytes"):
            image.save(io.BytesIO(), format="NIC", **bad)
    kept, dropped = io.BytesIO(), io.BytesIO()
    image.save(kept, format="NIC")
    image.save(dropped, format="NIC", icc_profile=None)
    assert Image.open(kept).info.get("icc_profile") == icc
    assert "icc_profile" not in Image.open(dropped).info
    assert image.info["icc_profile"] == icc  # the caller's image keeps it


def test_the_xmp_packet_is_saved_opened_and_replaced(photo_image):
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- nicodec test --></x:xmpmeta>'
    image = photo_image.copy()
    image.info["xmp"] = packet  # as Pillow's JPEG, PNG, WebP and TIFF readers put it
    kept, replaced, dropped = io.BytesIO(), io.BytesIO(), io.BytesIO()
    image.save(kept, format="NIC")
    image.save(replaced, format="NIC", xmp=b"<x:xmpmeta/>")
    image.save(dropped, format="NIC", xmp=None)
    opened = Image.open(io.BytesIO(kept.getvalue()))
    assert opened.info["xmp"] == packet  # before any decoding
    assert Image.open(replaced).info["xmp"] == b"<x:xmpmeta/>"
    assert "xmp" not in Image.open(dropped).info and image.info["xmp"] == packet
    with pytest.raises(ValueError, match="xmp must be bytes"):
        image.save(io.BytesIO(), format="NIC", xmp="<x:xmpmeta/>")


def test_exact_keeps_the_colour_under_transparency_when_saving(codec, photo_image):
    rgba = photo_image.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size).point(lambda v: 0 if v < 128 else 255))
    for exact in (False, True):
        saved = io.BytesIO()
        rgba.save(saved, format="NIC", exact=exact)
        assert saved.getvalue() == codec.encode(rgba, exact=exact)
    assert codec.encode(rgba, exact=True) != codec.encode(rgba)


def test_strip_must_be_a_bool_or_kinds_of_metadata(photo_image):
    with pytest.raises(ValueError, match="strip: 'yes' is no kind of metadata; the kinds are icc, exif, xmp, text, dpi"):
        photo_image.save(io.BytesIO(), format="NIC", strip="yes")
    with pytest.raises(ValueError, match="strip must be True, False or the kinds of metadata to leave out"):
        photo_image.save(io.BytesIO(), format="NIC", strip=1)
    with pytest.raises(ValueError, match="exact must be True or False"):
        photo_image.save(io.BytesIO(), format="NIC", exact="yes")
    stripped = io.BytesIO()
    photo_image.save(stripped, format="NIC", strip=np.bool_(True))
    assert stripped.getvalue()


def test_bad_save_options_are_refused_before_the_codec_loads(photo_image, monkeypatch):
    """The codec (onnxruntime, the model) loaded before the options were checked: without
    onnxruntime, quality=0 was refused as "onnxruntime is not installed"."""
    source = pillow_plugin._CodecSource()
    monkeypatch.setattr(source, "get", lambda: pytest.fail("the codec was loaded"))
    pillow_plugin.register()
    monkeypatch.setattr(pillow_plugin, "_DEFAULT", source)
    Image.register_save(pillow_plugin.FORMAT, lambda im, fp, filename: pillow_plugin._save(
        im, fp, filename, codec_source=source))
    for options, match in (({"quality": 0}, "quality"), ({"strip": "yes"}, "strip"), ({"dpi": (0, 0)}, "dpi"),
                           ({"strip": True, "comment": "c"}, "strip=True")):
        with pytest.raises(ValueError, match=match):
            photo_image.save(io.BytesIO(), format="NIC", **options)


@pytest.mark.parametrize("pieces", [1, 97])
def test_imagefile_parser_decodes_a_file_fed_in_pieces(codec, photo_image, nic, pieces):
    """Fed to ImageFile.Parser (web uploads), a .nic file failed even when given whole: the
    parser now keeps the data and opens it whole, as it does for Pillow's AVIF and WebP."""
    with_icc = photo_image.copy()
    with_icc.info["icc_profile"] = b"a profile"
    data = codec.encode(with_icc)
    parser = ImageFile.Parser()
    step = -(-len(data) // pieces)
    for start in range(0, len(data), step):
        parser.feed(data[start:start + step])
    with parser.close() as im, Image.open(io.BytesIO(data)) as opened:
        assert im.format == "NIC" and im.info["icc_profile"] == b"a profile"
        assert np.array_equal(np.asarray(im), np.asarray(opened))


@pytest.mark.parametrize("module", ["gzip", "bz2", "lzma"])
def test_a_file_opened_through_a_decompressing_reader_keeps_its_metadata(photo_image, module, tmp_path):
    """A gzip, bz2 or lzma reader's fileno() is the compressed file's: its size, taken for the
    stream's, made the plugin judge the file padded and publish no profile, EXIF or resolution."""
    from nicodec.files import bytes_left

    compression = __import__(module)
    with_icc = photo_image.copy()
    with_icc.info["icc_profile"] = b"a profile"
    exif = Image.Exif()
    exif[0x0110] = "Model X"
    buffer = io.BytesIO()
    with_icc.save(buffer, format="NIC", exif=exif, dpi=(300, 300))
    path = tmp_path / f"photo.nic.{module}"
    path.write_bytes(compression.compress(buffer.getvalue()))
    with compression.open(path) as stream:
        assert bytes_left(stream) is None  # not the compressed file's size, nor a decompression to the end
    with compression.open(path) as stream, Image.open(stream) as im:
        assert im.info["icc_profile"] == b"a profile" and dict(im.getexif()) == {0x0110: "Model X"}
        assert im.info["dpi"] == (300, 300)
        im.load()


def test_a_missing_default_manifest_is_a_model_error_at_open(nic, tmp_path, monkeypatch):
    """A package whose data files were left out (a frozen application): Image.open raised
    FileNotFoundError, an OSError, which callers take for an image they cannot read."""
    from nicodec import model as model_module

    monkeypatch.setattr(pillow_plugin, "_DEFAULT", pillow_plugin._CodecSource())  # no default codec loaded yet
    pillow_plugin.register()
    monkeypatch.setattr(model_module, "default_model_dir", lambda: tmp_path)
    pillow_plugin._default_downsampling.cache_clear()
    try:
        for content in (None, "{"):
            if content is not None:
                (tmp_path / "manifest.json").write_text(content)
            with pytest.raises(nicodec.ModelError, match="default model's manifest .* cannot be read"):
                Image.open(io.BytesIO(nic))
    finally:
        pillow_plugin._default_downsampling.cache_clear()


def test_an_exif_pillow_cannot_write_given_to_save_is_a_value_error(photo_image):
    exif = Image.Exif()
    exif[0x011A] = "not a number"  # XResolution: Pillow's writer fails on it
    with pytest.raises(ValueError, match="the exif given cannot be written"):
        photo_image.save(io.BytesIO(), format="NIC", exif=exif)


def test_damaged_exif_in_a_png_raw_profile_turns_the_picture_once_through_the_plugin(tmp_path):
    """ImageMagick's PNG keeps EXIF as hexadecimal text (Raw profile type exif), which Pillow reads
    as the image's EXIF: when it cannot be written back, the picture is turned by its
    orientation once, through the plugin's copy too."""
    import struct

    body = struct.pack("<HHI", 0x0112, 3, 1) + b"\6\0\0\0" + struct.pack("<HHI", 0x011A, 2, 4) + b"abc\0"
    raw = b"Exif\0\0II*\0" + struct.pack("<I", 8) + struct.pack("<H", 2) + body + struct.pack("<I", 0)
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{raw.hex()}\n")
    Image.fromarray(synthetic_photo(24, 40)).save(tmp_path / "magick.png", pnginfo=chunks)
    for options in ({}, {"icc_profile": None}):
        buffer = io.BytesIO()
        with Image.open(tmp_path / "magick.png") as image, pytest.warns(UserWarning, match="EXIF data is damaged"):
            image.save(buffer, "NIC", **options)
        with Image.open(buffer) as back:
            assert back.size == (24, 40), options  # turned a quarter, once


def test_a_tiffs_exif_is_kept_when_save_copies_it(photo_image):
    """A TIFF's EXIF is its own tags, which a copy loses: saving with a replacement (which
    copies the image) keeps the camera's tags, as saving without one does."""
    buffer = io.BytesIO()
    photo_image.save(buffer, "TIFF", tiffinfo={271: "a camera maker", 272: "a camera"})  # Make, Model
    for options in ({}, {"icc_profile": None}, {"xmp": b"<x:xmpmeta/>"}):
        saved = io.BytesIO()
        with Image.open(io.BytesIO(buffer.getvalue())) as image:
            image.save(saved, "NIC", **options)
        with Image.open(saved) as back:
            tags = back.getexif()
            assert (tags.get(271), tags.get(272)) == ("a camera maker", "a camera"), options
            assert 273 not in tags and 256 not in tags  # the TIFF's own layout is not kept


def test_onnxruntime_falling_back_is_named_at_the_line_that_called_pillow(nic, photo_image, no_gpu):
    """The warning named Pillow's own ImageFile.py or Image.py, inside which the plugin loads the graphs."""
    pillow_plugin.register(nicodec.Codec(providers="auto"))
    with Image.open(io.BytesIO(nic)) as im, pytest.warns(RuntimeWarning, match="decoder.onnx") as caught:
        im.load()
    assert [w.filename for w in caught] == [__file__]
    with pytest.warns(RuntimeWarning, match="encoder.onnx") as caught:
        photo_image.save(io.BytesIO(), format="NIC")
    assert [w.filename for w in caught] == [__file__]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_made_by_fork_while_the_default_codec_was_being_made_can_make_it():
    """The default codec is made under a lock: a child process that fork made while another
    thread held it (making the codec) has a lock of its own, not one no thread will release."""
    import warnings

    assert pillow_plugin._DEFAULT._lock.acquire(timeout=30)  # as a thread making the codec holds it
    try:
        with warnings.catch_warnings():  # Python 3.12+: "this process is multi-threaded"
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os._exit(0 if pillow_plugin._DEFAULT._lock.acquire(timeout=5) else 3)
        _, status = os.waitpid(pid, 0)
    finally:
        pillow_plugin._DEFAULT._lock.release()
    assert os.waitstatus_to_exitcode(status) == 0


def test_damaged_exif_given_to_save_is_left_out_with_a_warning(photo_image, tmp_path):
    """``save(..., exif=...)`` with bytes that are not EXIF: the file is written without them,
    and the warning says so (nicodec reads a given EXIF to take its orientation out)."""
    with pytest.warns(UserWarning, match="the EXIF data given to save is damaged and is not kept"):
        photo_image.save(tmp_path / "x.nic", exif=b"junk")
    with Image.open(tmp_path / "x.nic") as im:
        assert "exif" not in im.info and im.size == photo_image.size


def test_strip_may_name_the_kinds_it_leaves_out_and_refuses_one_given_too(photo_image):
    """save(strip={"exif"}): the EXIF left out, the rest kept; an exif= given with it is refused,
    as with strip=True, and an icc_profile= is not."""
    from PIL import ImageCms

    image = photo_image.copy()
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.info.update(exif=exif.tobytes(), icc_profile=icc)
    out = io.BytesIO()
    image.save(out, format="NIC", strip={"exif"})
    assert set(nicformat.unpack(out.getvalue())[1]) == {b"ZSYM", b"YSYM", b"ICCP"}
    with pytest.raises(ValueError, match=r"^strip=\{'exif'\} leaves out exif, and exif= would add it back"):
        image.save(io.BytesIO(), format="NIC", strip={"exif"}, exif=exif.tobytes())
    with pytest.raises(ValueError, match=r"^strip=True leaves out the metadata, and icc_profile= would add it back"):
        image.save(io.BytesIO(), format="NIC", strip=True, icc_profile=icc)
    out = io.BytesIO()
    image.save(out, format="NIC", strip={"exif"}, icc_profile=icc, comment="a")
    assert set(nicformat.unpack(out.getvalue())[1]) == {b"ZSYM", b"YSYM", b"ICCP", b"TEXT"}
