"""The runtime API end to end, on the model shipped in the package."""

from __future__ import annotations

import array
import io
import os
import mmap
import re
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nicodec
from nicodec import alpha as alpha_section
from nicodec import format as nicformat
from nicodec.codec import Codec

from conftest import psnr, synthetic_photo
from profiles import cmyk_profile


def test_round_trip_keeps_size_and_quality(codec, photo):
    data = codec.encode(photo)
    out = codec.decode(data, as_array=True)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert psnr(out, photo) > 26
    assert 0 < 8 * len(data) / (photo.shape[0] * photo.shape[1]) < 3


def test_decode_gives_a_pil_image_by_default(codec, photo):
    image = codec.decode(codec.encode(photo))
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB" and image.size == (photo.shape[1], photo.shape[0])


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_a_decoded_image_can_be_drawn_on(codec, photo, channels):
    """As one from Image.open: for L and RGBA, Image.fromarray shares the decoded array and
    makes the image read-only, where writing through load() raised "image is readonly"."""
    source = {1: photo[:, :, 0], 2: np.dstack([photo[:, :, 0], photo[:, :, 1]]), 3: photo,
              4: np.dstack([photo, photo[:, :, :1]])}[channels]
    image = codec.decode(codec.encode(source))
    assert image.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels] and not image.readonly
    white = (255,) * channels if channels > 1 else 255
    image.load()[0, 0] = white
    assert image.getpixel((0, 0)) == white


def test_inputs_path_pil_and_array_give_the_same_bytes(codec, photo, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(photo).save(path)
    from_array = codec.encode(photo)
    assert codec.encode(Image.fromarray(photo)) == from_array
    assert codec.encode(path) == from_array
    assert codec.encode(str(path)) == from_array


def test_encoding_is_deterministic(codec, photo):
    assert codec.encode(photo) == codec.encode(photo.copy())


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (65, 63), (64, 64), (200, 3)])
def test_any_image_size(codec, size):
    h, w = size
    img = synthetic_photo(max(h, 8), max(w, 8))[:h, :w]
    out = codec.decode(codec.encode(img), as_array=True)
    assert out.shape == (h, w, 3)


def test_grayscale_comes_back_grayscale(codec, photo):
    gray = Image.fromarray(photo).convert("L")
    data = codec.encode(gray)
    assert nicformat.read_header(data)[0].flags == nicformat.FLAG_GRAYSCALE
    image = codec.decode(data)
    assert image.mode == "L" and image.size == gray.size
    out = codec.decode(data, as_array=True)
    assert out.shape == photo.shape[:2]
    assert psnr(out, np.asarray(gray)) > 24
    # The luma is Pillow's convert("L") of the decoded colour pixels, which are the same as
    # for the gray image coded as RGB.
    rgb = codec.decode(codec.encode(gray.convert("RGB")), as_array=True)
    assert np.array_equal(out, np.asarray(Image.fromarray(rgb).convert("L")))
    assert codec.encode(np.asarray(gray)) == data  # a 2-D array is grayscale too
    with_alpha = gray.convert("LA")
    with_alpha.putpixel((0, 0), (0, 0))
    la = codec.decode(codec.encode(with_alpha))
    assert la.mode == "LA" and la.getpixel((0, 0))[1] == 0
    assert codec.decode(codec.encode(with_alpha), as_array=True).shape == photo.shape[:2] + (2,)


def test_a_colour_image_of_equal_channels_comes_back_gray_in_colour(codec, photo, tmp_path):
    """A black-and-white photo kept as RGB (a scan, a desaturated export) was coded as colour and
    came back with colour noise (channels up to 13 to 27 levels apart, a review measured); it is
    coded as the gray image is, and comes back in the mode it came in, its channels equal."""
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    as_gray = codec.encode(gray)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    data = codec.encode(rgb)
    assert nicformat.read_header(data)[0].flags == nicformat.FLAG_GRAYSCALE | nicformat.FLAG_GRAY_AS_RGB
    assert len(data) == len(as_gray)  # the same symbols
    out = codec.decode(data, as_array=True)
    assert out.shape == rgb.shape and np.array_equal(out, np.repeat(codec.decode(as_gray, as_array=True)[:, :, None], 3, 2))
    image = codec.decode(data)
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), out)
    Image.fromarray(rgb).save(tmp_path / "bw.png")  # a file, a PIL image: the same
    assert codec.encode(tmp_path / "bw.png") == codec.encode(Image.fromarray(rgb)) == data
    rgba = np.dstack([rgb, np.full(gray.shape, 255, np.uint8)])
    rgba[0, 0, 3] = 0
    with_alpha = codec.decode(codec.encode(rgba), as_array=True)
    assert with_alpha.shape == rgba.shape and with_alpha[0, 0, 3] == 0
    assert np.array_equal(with_alpha[:, :, 0], with_alpha[:, :, 2])
    colour = rgb.copy()
    colour[5, 7, 1] ^= 1  # one sample off: a colour image, coded as one
    assert nicformat.read_header(codec.encode(colour))[0].flags == 0
    # Colour hidden under alpha 0 (a cut-out) is replaced by a fill of what shows, gray: coded as gray,
    # unless it is to be kept (exact).
    rgba = np.dstack([colour, np.full(gray.shape, 255, np.uint8)])
    rgba[:, :20] = (255, 0, 0, 0)
    both = nicformat.FLAG_GRAYSCALE | nicformat.FLAG_GRAY_AS_RGB
    rgba[5, 7, :3] = rgb[5, 7]
    assert nicformat.read_header(codec.encode(rgba))[0].flags == both
    shown = codec.decode(codec.encode(rgba), as_array=True)
    assert np.array_equal(shown[:, :, 0], shown[:, :, 1]) and np.array_equal(shown[:, :, 3], rgba[:, :, 3])
    assert nicformat.read_header(codec.encode(rgba, exact=True))[0].flags == 0


def test_palette_is_coded_as_rgb(codec, photo):
    palette = Image.fromarray(photo).convert("P")
    assert codec.decode(codec.encode(palette), as_array=True).shape == photo.shape


def test_opaque_alpha_is_dropped_and_transparency_kept_losslessly(codec, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    assert codec.encode(rgba) == codec.encode(photo)
    rgba[:40, :60, 3] = 0
    rgba[50, :, 3] = np.arange(photo.shape[1]) % 256
    data = codec.encode(Image.fromarray(rgba, "RGBA"))
    assert alpha_section.find(nicformat.unpack(data)[1])
    out = codec.decode(data, as_array=True)
    assert out.shape == rgba.shape and np.array_equal(out[:, :, 3], rgba[:, :, 3])
    assert codec.decode(data).mode == "RGBA"
    assert np.array_equal(codec.encode(rgba), data)


def test_icc_profile_and_exif_are_kept_unless_stripped(codec, photo):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "nicodec test camera"  # Make
    image = Image.fromarray(photo)
    image.info["icc_profile"] = icc
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, icc_profile=icc, exif=exif)
    data = codec.encode(buffer.getvalue())
    sections = nicformat.unpack(data)[1]
    assert sections[b"ICCP"] == icc
    decoded = codec.decode(data)
    assert decoded.info["icc_profile"] == icc
    assert decoded.getexif()[0x010F] == "nicodec test camera"
    stripped = codec.encode(buffer.getvalue(), strip=True)
    assert set(nicformat.unpack(stripped)[1]) == {b"ZSYM", b"YSYM"}
    assert "icc_profile" not in codec.decode(stripped).info


def test_strip_may_name_the_kinds_of_metadata_it_leaves_out(codec, photo):
    """strip={"exif", "xmp"}, or one kind's name: those left out, the others kept; an unknown
    kind, or another type, is refused before the image is read."""
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F] = "Camera"
    image = Image.fromarray(photo)
    image.info.update(icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
                      exif=exif.tobytes(), dpi=(300, 300), xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    image.text = {"Author": "someone"}  # type: ignore[attr-defined]
    every = {b"ICCP", b"EXIF", b"XMP ", b"TEXT", b"PHYS"}
    assert set(nicformat.unpack(codec.encode(image))[1]) == {b"ZSYM", b"YSYM", *every}
    for strip, left_out in [({"exif", "xmp"}, {b"EXIF", b"XMP "}), ("icc", {b"ICCP"}), (["text", "dpi"], {b"TEXT", b"PHYS"}),
                            (frozenset(), set()), (("icc", "exif", "xmp", "text", "dpi"), every)]:
        sections = set(nicformat.unpack(codec.encode(image, strip=strip))[1])
        assert sections == {b"ZSYM", b"YSYM", *(every - left_out)}, strip
    assert codec.encode(image, strip=("icc", "exif", "xmp", "text", "dpi")) == codec.encode(image, strip=True)
    for strip, said in [({"gps"}, "strip: 'gps' is no kind of metadata; the kinds are icc, exif, xmp, text, dpi"),
                        ("exif,xmp", "strip: 'exif,xmp' is no kind of metadata"),
                        (1, "strip must be True, False or the kinds of metadata to leave out"),
                        ({1}, "strip must be True, False or the kinds of metadata to leave out")]:
        with pytest.raises(nicodec.NicodecError, match=f"^{re.escape(said)}"):
            codec.encode("/nonexistent/photo.png", strip=strip)


def test_a_kind_left_out_does_not_travel_in_another_nor_warn(codec, photo):
    """The resolution left out is cut from the EXIF kept too (a decoder reads the EXIF's as the
    picture's); ImageMagick's raw EXIF and XMP profiles leave the text with the kind they hold;
    and a kind left out is not warned of (a PNG's gamma without a profile, with the profile left
    out)."""
    from PIL import PngImagePlugin

    exif = Image.Exif()
    exif[0x010F] = "Camera"
    exif[0x011A], exif[0x011B], exif[0x0128] = 300.0, 300.0, 2  # XResolution, YResolution, ResolutionUnit
    image = Image.fromarray(photo)
    image.info.update(exif=exif.tobytes(), dpi=(300, 300))
    kept = Image.Exif()
    kept.load(nicformat.unpack(codec.encode(image, strip={"dpi"}))[1][b"EXIF"])
    assert kept[0x010F] == "Camera" and not {0x011A, 0x011B, 0x0128} & set(kept)
    assert set(nicformat.unpack(codec.encode(image))[1]) >= {b"EXIF", b"PHYS"}

    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Raw profile type APP1", "\nexif\n      8\n4578696600004d4d\n")
    chunks.add_text("Raw profile type xmp", "\nxmp\n      2\n3c3f\n")
    chunks.add_text("Author", "someone")
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG", pnginfo=chunks)
    from nicodec import text as text_section

    def text_of(data):
        return set(text_section.unpack(nicformat.unpack(data)[1][text_section.TAG]))

    assert text_of(codec.encode(buffer.getvalue())) == {"Raw profile type APP1", "Raw profile type xmp", "Author"}
    assert text_of(codec.encode(buffer.getvalue(), strip={"exif"})) == {"Raw profile type xmp", "Author"}
    assert text_of(codec.encode(buffer.getvalue(), strip={"exif", "xmp"})) == {"Author"}

    gamma = io.BytesIO()
    linear = PngImagePlugin.PngInfo()
    linear.add(b"gAMA", (100_000).to_bytes(4, "big"))  # gamma 1.0, linear light: the picture is shown as sRGB
    Image.fromarray(photo).save(gamma, format="PNG", pnginfo=linear)
    with pytest.warns(UserWarning, match="its gamma"):
        codec.encode(gamma.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codec.encode(gamma.getvalue(), strip={"icc"})


def opaque(header, sections):
    """A file's header and sections without its alpha section (whichever of the two it is)."""
    return header, {tag: payload for tag, payload in sections.items() if tag not in alpha_section.TAGS}


def test_a_damaged_alpha_section_is_a_format_error(codec, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 9, np.uint8)])
    header, sections = opaque(*nicformat.unpack(codec.encode(rgba)))
    pixels = bytes(photo.shape[0] * photo.shape[1])
    # FORMAT.md: the stream must end with its Adler-32 trailer, and nothing may follow it.
    for payload in (b"not zlib", zlib.compress(b"short"), zlib.compress(pixels + b"\0"), zlib.compress(pixels)[:-4],
                    zlib.compress(pixels) + b"x"):
        with pytest.raises(nicodec.FormatError, match="alpha"):
            codec.decode(nicformat.pack(header, {**sections, b"ALPH": payload}))


def test_a_damaged_alpha_section_is_found_before_the_entropy_decoding(codec, photo, monkeypatch):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 9, np.uint8)])
    header, sections = opaque(*nicformat.unpack(codec.encode(rgba)))

    def costly(*args, **kwargs):
        raise AssertionError("the latents were decoded before the alpha plane was checked")

    monkeypatch.setattr(nicodec.codec.rans, "decode", costly)
    for decode in (codec.decode, codec.decode_symbols):
        with pytest.raises(nicodec.FormatError, match="alpha"):
            decode(nicformat.pack(header, {**sections, b"ALPH": b"not zlib"}))


def test_bad_arrays_are_refused(codec):
    with pytest.raises(nicodec.UnsupportedImageError, match="uint8"):
        codec.encode(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(nicodec.UnsupportedImageError, match="shape|\\(H, W"):
        codec.encode(np.zeros((8, 8, 5), np.uint8))  # (8, 8, 2) is gray and alpha now
    with pytest.raises(nicodec.UnsupportedImageError, match="empty"):
        codec.encode(np.zeros((0, 8, 3), np.uint8))
    with pytest.raises(nicodec.UnsupportedImageError):
        codec.encode(12)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "I;16B", "I"])
def test_an_empty_pil_image_is_refused_in_every_mode(codec, mode):
    """The 16- and 32-bit modes took the brightest sample before the emptiness check: a bare
    numpy ValueError (zero-size array to reduction operation) rather than this."""
    with pytest.raises(nicodec.UnsupportedImageError, match=r"the image is empty \(0x3\)"):
        codec.encode(Image.new(mode, (0, 3)))


def test_pixel_limit_is_checked_before_work(photo):
    small = Codec(providers="cpu", max_pixels=1000)
    with pytest.raises(nicodec.LimitError, match="limit"):
        small.encode(photo)


@pytest.mark.parametrize("name, made_by, made_hash, decoded_by, digest", [
    # The shipped model's own file.
    ("made-by-vr-5f.nic", "nicodec-mshp-vr-5f", "c8af2a3152f0a2d6", "default",
     "486e8a7dd79a5c87f441dfd92d898aac9dfb13b43921178fc1829f88769ccfed"),
    # The same model's file of the same picture made by nicodec 0.7.0, padded to 16 rows, not 64
    # (FLAG_FINE_PADDING): a latent of 6 rows where the file above has 8, 418 bytes against 464.
    ("made-by-0.7.0-fine-padding.nic", "nicodec-mshp-vr-5f", "c8af2a3152f0a2d6", "default",
     "290e9ff3f2489924f5c9304426459b2e65cd9557b07027411d3159353059da4c"),
    # Files of nicodec-mshp-vr-5e and vr-5d, the two models shipped before: vr-5f is vr-5d with
    # a post-filter that sees the quality ending its synthesis (vr-5e's did not see it), the same
    # encoder and entropy side, and lists both (its decodes_files_of), so the shipped model
    # decodes their files itself: the same integers (the digest above), its pixels.
    ("made-by-vr-5e.nic", "nicodec-mshp-vr-5e", "0a52e4ca728b575a", "default",
     "486e8a7dd79a5c87f441dfd92d898aac9dfb13b43921178fc1829f88769ccfed"),
    ("made-by-vr-5d.nic", "nicodec-mshp-vr-5d", "341dcd5015adbce9", "default",
     "486e8a7dd79a5c87f441dfd92d898aac9dfb13b43921178fc1829f88769ccfed"),
    # A file of nicodec-mshp-vr-4d, the model shipped before vr-5d: the package keeps it under
    # models/earlier (it lists no earlier model of its own), and Codec() hands the file on to it.
    ("made-by-vr-4d.nic", "nicodec-mshp-vr-4d", "ab8c5bb889abe006", "nicodec-mshp-vr-4d",
     "bdf6612e06d0a613c30084a84f897718a84923b9cd3e98e011c117106365338c"),
    # A file of nicodec-mshp-vr-3 (the network vr-3d fine-tuned), which nicodec-mshp-vr-3d, the
    # model shipped before vr-4d, decodes (its decodes_files_of): the package keeps vr-3d under
    # models/earlier too, and Codec() hands the file on to it.
    ("made-by-vr-3.nic", "nicodec-mshp-vr-3", "7e111a2ca9349805", "nicodec-mshp-vr-3d",
     "a5f9fa17317cd110295b90db6d828dab989b5df64e527179d8c8042f1700fea0"),
])
def test_a_file_of_a_model_this_nicodec_keeps_decodes_to_the_integers_it_was_made_of(
        codec, name, made_by, made_hash, decoded_by, digest):
    """tests/data/made-by-*.nic: synthetic_photo(96, 128, seed=7) coded at quality 56 by the model
    named (``Codec().encode(Image.fromarray(synthetic_photo(96, 128, seed=7)), quality=56)`` with
    that model shipped); the digest is of the integers it decoded then (z_hat, symbols, mean_q as
    little-endian int32), so the entropy side of the model that reads it now is that model's."""
    import hashlib

    from nicodec.model import default_model_dir, earlier_models_dir, package_model_for

    data = (Path(__file__).parent / "data" / name).read_bytes()
    header = nicformat.unpack(data)[0]
    assert (header.model_id, header.model_hash.hex()) == (made_by, made_hash)
    folder = default_model_dir() if decoded_by == "default" else earlier_models_dir() / decoded_by
    assert package_model_for(made_by, header.model_hash) == (
        codec.model_id if decoded_by == "default" else decoded_by, folder)
    _, z_hat, symbols, mean_q = codec.decode_symbols(data)
    integers = b"".join(np.ascontiguousarray(a, dtype="<i4").tobytes() for a in (z_hat, symbols, mean_q))
    assert hashlib.sha256(integers).hexdigest() == digest
    assert psnr(codec.decode(data, as_array=True), synthetic_photo(96, 128, seed=7)) > 33


@pytest.mark.parametrize("name, mode, metadata", [
    # Commit 7d8ff08 (2026-12-01), before ALPL: transparency as a zlib ALPH section, ICC and EXIF.
    ("made-by-7d8ff08-rgba.nic", "RGBA", {"icc_profile": 588, "exif": 84}),
    # Commit 335e46f (2026-12-01): a grayscale source with text and a resolution (TEXT, PHYS).
    ("made-by-335e46f-gray.nic", "L", {"dpi": (299.9994, 299.9994)}),
])
def test_a_file_of_an_earlier_build_decodes_as_that_build_decoded_it(codec, name, mode, metadata):
    """The promise that a file made once decodes the same later: the decoder's handling around
    the networks (cropping, luma, alpha, flags, metadata) changes from build to build, and only
    round trips of today's own files were tested. The references are the PNGs the build that
    made each file decoded; the float synthesis may differ by a level on another machine."""
    data = (Path(__file__).parent / "data" / name).read_bytes()
    image = codec.decode(data)
    reference = Image.open(Path(__file__).parent / "data" / name.replace(".nic", ".decoded.png"))
    assert image.mode == reference.mode == mode and image.size == reference.size
    got, want = np.asarray(image).astype(int), np.asarray(reference).astype(int)
    if mode == "RGBA":
        assert np.array_equal(got[:, :, 3], want[:, :, 3])  # lossless
    assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.99
    assert {key: len(value) if isinstance(value, bytes) else value for key, value in image.info.items()} == metadata
    assert image.info.get("icc_profile") == reference.info.get("icc_profile")
    assert image.info.get("exif") == reference.info.get("exif")
    if mode == "L":
        assert image.text == {"Description": "a gray test picture", "Author": "nicodec"} == reference.text


@pytest.mark.parametrize("name, made_by", [
    ("made-by-vr-1w.nic", "nicodec-mshp-vr-1w"),
    ("made-by-vr-1wd-first-export.nic", "nicodec-mshp-vr-1wd"),
    ("made-by-vr-2.nic", "nicodec-mshp-vr-2"),
])
def test_files_of_models_with_another_entropy_model_are_refused_by_name(codec, name, made_by):
    """Files of models whose entropy model was retrained since (vr-2 after vr-1wd, vr-3 after
    vr-2d, vr-4 after vr-3d) and that no earlier model the package keeps decodes: their tables
    are not this model's, so they are refused, naming the model that made them."""
    data = (Path(__file__).parent / "data" / name).read_bytes()
    assert nicformat.unpack(data)[0].model_id == made_by
    with pytest.raises(nicodec.ModelMismatchError, match=made_by):
        codec.decode(data)


def test_manifest_versions_and_the_list_of_earlier_models_are_checked(tmp_path):
    import json
    import shutil

    from nicodec.model import ModelFiles, content_hash, decoding_fields, default_model_dir, manifest_hash

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    shipped = json.loads((folder / "manifest.json").read_text())
    base = {k: v for k, v in shipped.items() if k != "decodes_files_of"}
    decoding = decoding_fields(base)
    # Two earlier models whose synthesis alone differed (another decoder.onnx), manifest versions 2 and 1.
    files = {**base["files"], "decoder.onnx": "cd" * 32}
    entries = [
        {"model_id": "earlier-v2", "model_hash": content_hash(files, decoding), "version": 2, "files": files,
         "decoding": decoding},
        {"model_id": "earlier-v1", "model_hash": content_hash(files), "version": 1, "files": files, "decoding": decoding},
    ]
    listed = {**base, "version": 2, "decodes_files_of": entries}

    def load(manifest, rehash=True):
        if rehash:
            manifest["model_hash"] = manifest_hash(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return ModelFiles.load(folder)

    # Version 1 hashes the file list alone, and cannot carry the list (its hash would not cover it).
    v1 = {**base, "version": 1}
    assert load(json.loads(json.dumps(v1))).model_hash == bytes.fromhex(content_hash(base["files"]))[:8]
    with pytest.raises(nicodec.ModelError, match="file list$"):
        load({**v1, "model_hash": content_hash(base["files"], decoding)}, rehash=False)
    with pytest.raises(nicodec.ModelError, match="needs manifest version 2"):
        load({**v1, "decodes_files_of": entries})
    for bad in ({"model_id": "x", "model_hash": "0" * 64}, "vr-1w", [1]):
        with pytest.raises(nicodec.ModelError, match="must list objects") as refused:
            load({**listed, "decodes_files_of": [bad]})
        # The first exports' form (an id and a hash alone) is named as such.
        assert ("the form of the first exports of 2026-11-30" in str(refused.value)) is isinstance(bad, dict)
    # Malformed manifests are ModelErrors, not AttributeError or RecursionError.
    with pytest.raises(nicodec.ModelError, match="rate must be an object"):
        load({**base, "rate": [1]})
    for text in ("[1, 2]", "[" * 100_000 + "]" * 100_000):
        (folder / "manifest.json").write_text(text)
        with pytest.raises(nicodec.ModelError):
            ModelFiles.load(folder)

    # Hand-edited entries are refused even with the manifest's hash recomputed: an entry must
    # hash to its model hash, and its entropy side must be this model's.
    entry = entries[1]  # a version-1 entry
    with pytest.raises(nicodec.ModelError, match="do not give its model hash"):
        load({**listed, "decodes_files_of": [{**entry, "model_hash": "ab" * 32}]})
    other = {**entry, "version": 2, "decoding": {**entry["decoding"], "mean_bits": 9}}
    other["model_hash"] = content_hash(other["files"], other["decoding"])
    with pytest.raises(nicodec.ModelError, match="differs in mean_bits"):
        load({**listed, "decodes_files_of": [other]})
    other = {**entry, "files": {**entry["files"], "tables.npz": "0" * 64}}
    other["model_hash"] = content_hash(other["files"])
    with pytest.raises(nicodec.ModelError, match="differs in tables.npz"):
        load({**listed, "decodes_files_of": [other]})
    assert load(json.loads(json.dumps(listed))).decodes_files_of == tuple(
        (e["model_id"], bytes.fromhex(e["model_hash"])[:8]) for e in entries)
    assert decoding_fields(listed)["decodes_files_of"] == entries
    # The shipped manifest loads as it is, its own list (if any) included.
    assert load(json.loads(json.dumps(shipped)), rehash=False).model_id == shipped["model_id"]


def test_decode_refuses_a_file_from_another_model(codec, photo):
    data = codec.encode(photo)
    header, sections = nicformat.unpack(data)
    other = nicformat.Header(
        version=header.version, model_id="someone-else", model_hash=b"\x00" * 8,
        width=header.width, height=header.height, quality=header.quality, flags=0,
    )
    with pytest.raises(nicodec.ModelMismatchError, match="someone-else"):
        codec.decode(nicformat.pack(other, sections))


def test_decode_refuses_garbage(codec):
    with pytest.raises(nicodec.FormatError):
        codec.decode(b"hello world, not an image")


def test_threads_one_and_two_decode_identically(photo):
    one = Codec(providers="cpu", threads=1)
    two = Codec(providers="cpu", threads=2)
    data = one.encode(photo)
    assert two.encode(photo) == data
    assert np.array_equal(one.decode(data, as_array=True), two.decode(data, as_array=True))


def test_providers_are_reported(codec):
    providers = codec.providers
    assert set(providers) == {"encoder", "entropy_parameters", "decoder"}
    assert providers["entropy_parameters"] == ["CPUExecutionProvider"]
    refining = Codec(providers="cpu", refine=1).providers
    assert set(refining) == set(providers) | {"synthesis_gradient"}
    assert refining["synthesis_gradient"] == ["CPUExecutionProvider"]



def test_one_onnxruntime_provider_name_is_taken_as_a_list_of_one():
    assert Codec(providers="CPUExecutionProvider").providers["decoder"] == ["CPUExecutionProvider"]
    with pytest.raises(nicodec.NicodecError, match="this onnxruntime has no NoSuchExecutionProvider "
                                                   r"\(it has .*CPUExecutionProvider\): see"):
        Codec(providers="NoSuchExecutionProvider")
    # A provider of another build of onnxruntime says which, where that build is not the one installed.
    import onnxruntime

    if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-openvino is the build installed")
    with pytest.raises(nicodec.NicodecError, match=r"has no OpenVINOExecutionProvider \(it has .*\); "
                                                   r"onnxruntime-openvino brings OpenVINOExecutionProvider \(installed "
                                                   r"in place of .*, not beside it\): see "):
        Codec(providers=["OpenVINOExecutionProvider"])


def test_a_provider_may_come_with_its_options_as_onnxruntime_takes_them():
    """A pair of a name and a dict of options (OpenVINO's device_type, CUDA's device_id), in a
    tuple or a list; the values are given to onnxruntime as strings, its own type for them."""
    for entry, given in ((("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"}),
                          {"arena_extend_strategy": "kSameAsRequested"}),
                         (["CPUExecutionProvider", {"use_arena": 1, "a": np.int64(3), "b": np.float32(0.5),
                                                    "c": np.bool_(True)}],
                          {"use_arena": "1", "a": "3", "b": "0.5", "c": "True"})):
        codec = Codec(providers=[entry])
        assert codec._providers == [(entry[0], given)]
        assert codec.providers["decoder"] == ["CPUExecutionProvider"]
        hash(codec._settings)  # settings stay hashable and cannot be changed through the caller's dict
        entry[1]["a"] = "changed"
        assert codec._settings.arguments()["providers"] == [(entry[0], given)]
    for wrong in ([("CPUExecutionProvider",)], [("CPUExecutionProvider", {1: "a"})], [("CPUExecutionProvider", "a=b")],
                  [("CPUExecutionProvider", {"a": None})], [{"CPUExecutionProvider": {}}],
                  ("CPUExecutionProvider", {"a": "b"})):
        with pytest.raises(nicodec.NicodecError, match="providers must be a name or a list of onnxruntime provider "
                                                       r"names \(each alone, or paired with a dict of its options: "
                                                       r"strings, numbers or flags\)") as info:
            Codec(providers=wrong)
        assert str(info.value).endswith("; put the pair in a list: providers=[(name, options)]") == (
            wrong == ("CPUExecutionProvider", {"a": "b"}))


@pytest.mark.parametrize("providers", [["cpu"], ["cuda", "cpu"], ["CPU"]])
def test_nicodecs_short_names_in_a_list_are_named_as_such(providers):
    """["cuda", "cpu"], a likely try at a fallback, said that the CPU was not available."""
    with pytest.raises(nicodec.NicodecError, match=f"'{providers[0]}' in a list is no onnxruntime provider name: "
                                                   f"pass providers='{providers[0].lower()}' alone"):
        Codec(providers=providers)

def test_one_codec_shared_by_threads_gives_serial_results(codec):
    images = [synthetic_photo(96 + 16 * i, 128, seed=i) for i in range(8)]
    serial = [codec.encode(im) for im in images]
    results: list = [None] * len(images)
    decoded: list = [None] * len(images)

    def work(i):
        results[i] = codec.encode(images[i])
        decoded[i] = codec.decode(results[i], as_array=True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial
    for data, pixels in zip(serial, decoded):
        assert np.array_equal(pixels, codec.decode(data, as_array=True))


def test_rate_grows_with_quality_and_the_header_records_it(codec, photo):
    assert codec.model.variable_rate and 1 <= codec.default_quality <= 100
    sizes, scores = [], []
    for quality in (1, 12.5, 37, 50, 63.25, 88, 100):
        data = codec.encode(photo, quality=quality)
        assert nicformat.read_header(data)[0].quality == pytest.approx(quality)
        sizes.append(len(data))
        scores.append(psnr(codec.decode(data, as_array=True), photo))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
    assert scores == sorted(scores) and scores[-1] > scores[0] + 2, scores
    assert nicformat.read_header(codec.encode(photo))[0].quality == codec.default_quality


@pytest.mark.parametrize("quality", [0, 0.999, 100.01, 1e9, float("nan"), float("inf"), "high", True, None])
def test_qualities_outside_1_to_100_are_refused(codec, photo, quality):
    if quality is None:  # the default, for contrast
        assert nicformat.read_header(codec.encode(photo, quality=quality))[0].quality == codec.default_quality
        return
    with pytest.raises(nicodec.QualityError, match="quality"):
        codec.encode(photo, quality=quality)



@pytest.mark.parametrize("quality, shown", [
    (1e-300, "1e-300"),  # float32 would round it to 0; the message names what was given
    (100.0000001, "100.0000001"),
    (100.00000001, "100.00000001"),  # not "100", which would contradict "from 1 to 100"
    pytest.param(10**400, "a number that large", id="10**400"),  # beyond any float: no OverflowError
    pytest.param(-(10**400), "a number that large", id="-10**400"),
])
def test_a_refused_quality_is_named_as_given(codec, photo, quality, shown):
    with pytest.raises(nicodec.QualityError, match=f"from 1 to 100, not {re.escape(shown)}$"):
        codec.encode(photo, quality=quality)

def test_fractions_and_decimals_are_qualities_too(codec, photo):
    """A quality from a config file read with Decimal, or a Fraction, was refused as "not a number"."""
    from decimal import Decimal
    from fractions import Fraction

    data = codec.encode(photo, quality=50.5)
    assert codec.encode(photo, quality=Decimal("50.5")) == data == codec.encode(photo, quality=Fraction(101, 2))
    for bad, shown in ((Decimal("sNaN"), "Decimal('sNaN')"), (Decimal("NaN"), "nan"), (Decimal("-1"), "-1"),
                       (1 + 0j, "(1+0j)"), (np.bool_(True), repr(np.bool_(True))),  # np.True_ in numpy 2
                       (Decimal("1e1000"), "a number that large")):  # float() of it: inf, not an OverflowError
        with pytest.raises(nicodec.QualityError, match=f"from 1 to 100, not {re.escape(shown)}$"):
            codec.encode(photo, quality=bad)


def test_a_header_quality_outside_the_range_is_a_format_error(codec, photo):
    header, sections = nicformat.unpack(codec.encode(photo))
    bad = nicformat.pack(nicformat.Header(**{**header.__dict__, "quality": 150.0}), sections)
    with pytest.raises(nicodec.FormatError, match="quality"):
        codec.decode(bad)



@pytest.mark.parametrize("quality", [100.0001, 0.9999, 0.0])
def test_a_header_quality_just_outside_the_range_is_a_format_error(codec, photo, quality):
    header, sections = nicformat.unpack(codec.encode(photo))
    bad = nicformat.pack(nicformat.Header(**{**header.__dict__, "quality": quality}), sections)
    with pytest.raises(nicodec.FormatError, match="quality"):
        codec.decode(bad)


def test_the_quality_is_taken_as_the_float32_the_header_records(codec, photo):
    """FORMAT.md: the encoder rounds the quality to float32 first and computes its gain from that
    value, the one the decoder reads; a float64 gain would differ from the decoder's."""
    from nicodec.model import check_quality

    assert check_quality(37.3) == float(np.float32(37.3)) != 37.3
    data = codec.encode(photo, quality=37.3)
    assert nicformat.read_header(data)[0].quality == float(np.float32(37.3))
    assert data == codec.encode(photo, quality=float(np.float32(37.3)))


def test_a_model_file_that_does_not_match_its_sha256_is_refused(tmp_path):
    """Checked without torch: a damaged copy of the model (here its tables) is a ModelError
    naming the file, not integers that silently differ from the encoder's."""
    import shutil

    from nicodec.model import default_model_dir

    copy = tmp_path / "model"
    shutil.copytree(default_model_dir(), copy)
    with open(copy / "tables.npz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(nicodec.ModelError, match="tables.npz does not match its SHA-256"):
        Codec(copy, providers="cpu")

def test_interpolated_gains_lie_between_the_trained_levels(codec):
    model = codec.model
    levels = len(model.log_gain)
    for level in range(levels):
        quality = 1 + 99 * level / (levels - 1)
        gain, inverse = model.gains(quality)
        np.testing.assert_allclose(gain, np.exp(model.log_gain[level]), rtol=1e-6)
        np.testing.assert_allclose(inverse, np.exp(model.log_inverse_gain[level]), rtol=1e-6)
    half = 1 + 99 * 0.5 / (levels - 1)
    np.testing.assert_allclose(model.gains(half)[0], np.exp((model.log_gain[0] + model.log_gain[1]) / 2), rtol=1e-6)


def test_a_model_folder_with_bad_rate_data_is_refused(tmp_path):
    import json
    import shutil

    from nicodec.model import default_model_dir, manifest_hash

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["rate"]["default_quality"] = 500
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(nicodec.ModelError, match="gain"):
        Codec(folder, providers="cpu")
    del manifest["rate"]
    manifest.pop("decodes_files_of", None)  # vr-1w was variable-rate: kept, the list would be refused first
    (folder / "manifest.json").write_text(json.dumps(manifest))
    # A version 2 hash covers whether the model is variable-rate: this edit alone is caught there.
    with pytest.raises(nicodec.ModelError, match="model hash"):
        Codec(folder, providers="cpu")
    manifest["model_hash"] = manifest_hash(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(nicodec.ModelError, match="gain"):
        Codec(folder, providers="cpu")


def test_kodim23_quality(codec, kodak):
    image = np.asarray(Image.open(kodak / "kodim23.png").convert("RGB"))
    data = codec.encode(image)
    out = codec.decode(data, as_array=True)
    assert out.shape == image.shape
    assert psnr(out, image) > 28
    assert 8 * len(data) / (image.shape[0] * image.shape[1]) < 2.0


def test_decode_takes_a_path_and_refuses_other_types(codec, photo, tmp_path):
    data = codec.encode(photo)
    (tmp_path / "a.nic").write_bytes(data)
    assert np.array_equal(codec.decode(tmp_path / "a.nic", as_array=True), codec.decode(data, as_array=True))
    with pytest.raises(nicodec.NicodecError, match="no such file"):
        codec.decode(tmp_path / "missing.nic")
    with pytest.raises(nicodec.NicodecError, match="bytes"):
        codec.decode(10**9)
    with open(tmp_path / "a.nic", "rb") as f:  # a binary file object is read to its end
        assert np.array_equal(codec.decode(f, as_array=True), codec.decode(data, as_array=True))
    with open(tmp_path / "a.nic") as f, pytest.raises(nicodec.NicodecError, match="binary mode"):
        codec.decode(f)
    expected = codec.decode(data, as_array=True)
    with open(tmp_path / "a.nic", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        for buffer in (array.array("B", data), np.frombuffer(data, np.uint8), mapped, memoryview(bytearray(data))):
            assert np.array_equal(codec.decode(buffer, as_array=True), expected), type(buffer)
    with pytest.raises(nicodec.NicodecError, match="not a buffer of 4-byte items"):
        codec.decode(np.zeros(len(data), np.int32))
    for bad in ("a\0b.nic", "x" * 5000):  # a NUL, a name too long for the file system
        with pytest.raises(nicodec.NicodecError):
            codec.decode(bad)
        with pytest.raises(nicodec.UnsupportedImageError):
            codec.encode(bad)

def test_a_files_data_given_as_a_str_is_named_as_such_not_repeated(codec, photo):
    """request.text for request.data: the str is taken as a path, and the message says what it
    is likely to be, in a line that shows its start, not the whole upload."""
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG")
    image = buffer.getvalue().decode("latin-1")
    nic = codec.encode(buffer.getvalue()).decode("latin-1")
    for call, data, what in ((codec.encode, image, "image"), (codec.decode, nic, ".nic file"),
                             (codec.encode, "x" * 50_000, "image")):
        with pytest.raises(nicodec.NicodecError) as caught:
            call(data)
        message = str(caught.value)
        assert len(message) < 250 and f"{len(data):,} characters" in message and "(bytes, not str)" in message
        assert f"the path of the {what}" in message

    from nicodec.files import MAX_PATH, data_as_path

    if os.name != "nt":  # a name's undecodable bytes, as os.listdir gives them, count one byte each
        assert data_as_path(os.fsdecode(b"/" + b"\xe9" * (MAX_PATH - 100)), "image") is None
        assert data_as_path("\ud800x.png", "image") is None  # no path, but no data either: named later


@pytest.mark.parametrize(
    "arguments",
    [{"max_pixels": None}, {"max_pixels": 0}, {"tile": 1024.0}, {"tile": "auto"}, {"margin": 256.0},
     {"threads": "2"}, {"threads": 2.5}, {"threads": True}, {"threads": 0}, {"providers": None}, {"providers": []},
     {"providers": [1]}, {"model": 123}, {"refine": 1.0}],
)
def test_bad_constructor_arguments_are_named_at_once(arguments):
    """Not later, on the first image larger than a tile, nor as a TypeError from onnxruntime."""
    name = next(iter(arguments))
    with pytest.raises(nicodec.NicodecError, match=name):
        Codec(**arguments)


def test_a_tile_or_margin_out_of_range_is_named_alone_with_its_value():
    """Codec(tile=100) said "tile must be ... and margin a multiple of 64", naming a margin never given."""
    with pytest.raises(nicodec.NicodecError) as tile:
        Codec(providers="cpu", tile=100)
    assert str(tile.value) == "tile must be a positive multiple of 64 pixels, not 100"
    with pytest.raises(nicodec.NicodecError) as margin:
        Codec(providers="cpu", margin=10)
    assert str(margin.value) == "margin must be a multiple of 64 pixels, 0 or more, not 10"


@pytest.fixture()
def png_path(tmp_path, photo):
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    return path


def test_a_path_that_is_no_nicodec_file_is_named_by_decode(codec, png_path, photo, tmp_path):
    """As encode names its images; small files too (the check of a file's start takes 64 KiB)."""
    small = tmp_path / "small.png"
    Image.fromarray(photo[:8, :8]).save(small)
    half = tmp_path / "half.nic"
    data = codec.encode(photo)
    half.write_bytes(data[: len(data) // 2])
    for path, said in ((png_path, "not a nicodec file (wrong magic bytes)"),
                       (small, "not a nicodec file (wrong magic bytes)"), (half, "")):
        for decode in (codec.decode, codec.decode_symbols):
            with pytest.raises(nicodec.FormatError) as refused:
                decode(str(path))
            assert str(refused.value).startswith(f"{path}: {said}"), refused.value
    with pytest.raises(nicodec.FormatError) as in_memory:
        codec.decode(data[: len(data) // 2])
    assert not str(in_memory.value).startswith(str(tmp_path))
    # A file over the decoder's pixel limit is named too (it was not: a LimitError went out as it was).
    whole = tmp_path / "whole.nic"
    whole.write_bytes(data)
    small_limit = Codec(providers="cpu", max_pixels=100)
    for decode in (small_limit.decode, small_limit.decode_symbols):
        with pytest.raises(nicodec.PixelLimitError) as refused:
            decode(whole)
        assert str(refused.value).startswith(f"{whole}: the file claims "), refused.value


def test_numpy_integers_are_whole_numbers_for_the_constructor():
    codec = Codec(providers="cpu", threads=np.int64(1), max_pixels=np.int32(10**6), tile=np.int64(512))
    assert codec.max_pixels == 10**6 and codec.tile == 512


def test_padding_counts_towards_the_pixel_limit():
    narrow = Codec(providers="cpu", max_pixels=10_000)
    with pytest.raises(nicodec.LimitError, match="padded"):
        narrow.encode(np.zeros((1, 5000, 3), np.uint8))
    with pytest.raises(nicodec.LimitError) as one:
        Codec(providers="cpu", max_pixels=100).encode(np.zeros((1, 1, 3), np.uint8))
    assert str(one.value) == ("the image has 1 pixel (1x1), but the networks work on it padded to multiples of 16, "
                              "16x16 = 256 pixels, more than the limit of 100, which counts the padded size")


@pytest.mark.parametrize("mode, decoded", [
    ("1", "L"), ("L", "L"), ("LA", "LA"), ("La", "LA"), ("I;16", "L"), ("I", "L"),
    ("P", "RGB"), ("PA", "RGBA"), ("RGBA", "RGBA"), ("RGBa", "RGBA"), ("CMYK", "RGB"), ("YCbCr", "RGB"), ("HSV", "RGB"),
])
def test_every_pillow_mode_but_float_encodes_and_decodes_to_the_documented_mode(codec, photo, mode, decoded):
    """docs/cli.md: single images Pillow reads are accepted; grayscale ones (16-bit included) come back
    L or LA, the others RGB, and transparency comes back losslessly as alpha."""
    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[:20, :30] = 100
    if mode == "La":
        image = Image.fromarray(np.dstack([photo, alpha])).convert("LA").convert("La")  # Pillow's RGBA to La drops it
    elif "A" in mode.upper():
        image = Image.fromarray(np.dstack([photo, alpha])).convert(mode)
    else:
        image = Image.fromarray(photo).convert(mode)
    assert image.mode == mode
    if mode in ("I;16", "I"):  # 8-bit values in a 16-bit mode: said, as they code as black
        with pytest.warns(UserWarning, match="so it codes as black"):
            out = codec.decode(codec.encode(image))
    else:
        out = codec.decode(codec.encode(image))
    assert (out.mode, out.size) == (decoded, image.size)
    if decoded.endswith("A"):
        assert np.array_equal(np.asarray(out)[:, :, -1], alpha)


def test_mode_i_and_16_bit_images_are_read_as_16_bit_samples(codec, photo):
    """docs/cli.md: 16-bit samples keep their top 8 bits, and Pillow's 32-bit mode I is read as 16-bit
    samples too: v * 256 (+ 255 below the top byte) codes exactly as the 8-bit value v."""
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    eight_bit = codec.encode(Image.fromarray(gray))
    assert codec.encode(Image.fromarray(gray.astype(np.int32) * 256, "I")) == eight_bit
    sixteen = Image.fromarray(gray.astype(np.uint16) * 256 + 255)
    assert sixteen.mode == "I;16" and codec.encode(sixteen) == eight_bit
    assert codec.encode(Image.fromarray(gray.astype(np.int32) * 256 + 255, "I")) == eight_bit


def test_16_bit_images_with_8_bit_values_warn_that_they_code_as_black(codec, photo, tmp_path):
    """Values all below 256 in a 16- or 32-bit image (8-bit values in an int array) keep nothing
    in their top 8 bits: the encoder says so, naming the file, rather than coding black in silence."""
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    save = tmp_path / "dark.png"
    Image.fromarray(gray.astype(np.uint16)).save(save)
    for source, name in ((Image.fromarray(gray.astype(np.int32), "I"), "the image"), (save, str(save))):
        with pytest.warns(UserWarning, match="below 256") as caught:
            codec.encode(source)
        assert str(caught[0].message).startswith(f"{name}: ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real 16-bit samples, and an all-black image, say nothing
        codec.encode(Image.fromarray(gray.astype(np.uint16) * 256))
        codec.encode(Image.fromarray(np.zeros((32, 32), np.uint16)))



def test_mode_i_samples_beyond_16_bits_are_clipped_with_a_warning(codec, photo):
    """Mode I holds 32-bit signed samples; those outside 0 to 65,535 are clipped to the 16-bit
    range it is read as, and the encoder says how many, rather than clipping in silence."""
    gray = np.asarray(Image.fromarray(photo).convert("L")).astype(np.int32) * 256
    wide = gray.copy()
    wide[:2, :3] = 70000
    wide[5, 5] = -4
    with pytest.warns(UserWarning, match=r"7 of its 32-bit samples lie outside 0 to 65,535 \(from -4 to 70,000\)"):
        clipped = codec.encode(Image.fromarray(wide, "I"))
    expected = gray.copy()
    expected[:2, :3] = 65535
    expected[5, 5] = 0
    assert clipped == codec.encode(Image.fromarray(expected, "I"))

def test_an_icc_profile_of_another_colour_space_than_the_output_is_dropped(codec, photo):
    """A CMYK profile (or an RGB one on a grayscale image) describes pixels that are no longer
    coded that way: written back on the decoded RGB (or L) image it would be misapplied."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert srgb[16:20] == b"RGB "
    gray, cmyk = srgb[:16] + b"GRAY" + srgb[20:], cmyk_profile()  # a real CMYK one: it converts the pixels
    for image, icc, kept in (
        (Image.fromarray(photo).convert("CMYK"), cmyk, False),
        (Image.fromarray(photo).convert("L"), srgb, False),
        (Image.fromarray(photo).convert("L"), gray, True),
        (Image.fromarray(photo), srgb, True),
    ):
        image.info["icc_profile"] = icc
        sections = nicformat.unpack(codec.encode(image))[1]
        assert (sections.get(b"ICCP") == icc) if kept else b"ICCP" not in sections, (image.mode, icc[16:20])


def test_floating_point_images_are_refused_by_name(codec, photo, tmp_path):
    """docs/cli.md: mode F images are refused with a message saying so (not clipped to 8 bits)."""
    image = Image.fromarray(photo).convert("F")
    image.save(tmp_path / "float.tiff")
    for source in (image, tmp_path / "float.tiff"):
        with pytest.raises(nicodec.UnsupportedImageError, match="mode F"):
            codec.encode(source)


def test_multi_frame_files_are_refused(codec, photo, tmp_path):
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1].copy())]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(nicodec.UnsupportedImageError, match="2 frames"):
        codec.encode(tmp_path / "anim.gif")


def test_tiled_transforms_match_the_whole_image():
    """Tiles of 64 pixels with the default margins (192 pixels for the analysis, 64 for the
    synthesis), which cover the receptive fields: the same file, the same pixels. The analysis
    runs on 4 x 2 windows, the synthesis on 8 x 6 (:func:`nicodec.tiling.spans`)."""
    from nicodec.tiling import spans

    image = np.concatenate([synthetic_photo(320, 512, seed=s) for s in (4, 5)], axis=0)  # 640 x 512
    assert [len(spans(units, 1, 3)) for units in (10, 8)] == [4, 2]
    assert [len(spans(units, 1, 1)) for units in (10, 8)] == [8, 6]
    whole = Codec(providers="cpu", tile=4096)
    tiled = Codec(providers="cpu", tile=64)
    data = whole.encode(image)
    assert tiled.encode(image) == data
    assert np.array_equal(tiled.decode(data, as_array=True), whole.decode(data, as_array=True))


def test_tiles_cover_the_image_with_windows_no_longer_than_an_inner_tiles():
    """Each window is at most tile + 2 x margin, each core has its margin of context but at the
    edges, the cores cut the length without gap or overlap, there are as few tiles as that
    allows, and their windows are within one of each other: a length just over a tile is one window (1,088 pixels were a tile of 1,024 and a
    sliver of 64 with 192 pixels of context, the analysis run on 1.53 times the area)."""
    import itertools

    from nicodec.tiling import spans

    for tile in range(1, 20):
        for margin in range(5):
            for length in range(1, 200):
                cut = spans(length, tile, margin)
                assert cut[0][0] == 0 and cut[-1][1] == length
                assert all(a[1] == b[0] for a, b in itertools.pairwise(cut))
                for start, end, low, high in cut:
                    assert start < end and (low, high) == (max(start - margin, 0), min(end + margin, length))
                    assert high - low <= tile + 2 * margin
                fewer = len(cut) - 1  # what fewer windows could cover: edges keep tile + margin, inner ones tile
                assert fewer == 0 or length > (tile + 2 * margin if fewer == 1 else 2 * (tile + margin) + (fewer - 2) * tile)
                if len(cut) > 1:  # about equal: no sliver at the end
                    assert max(high - low for *_, low, high in cut) - min(high - low for *_, low, high in cut) <= 1
    assert spans(17, 16, 3) == [(0, 17, 0, 17)]  # 1,088 pixels: 17 z positions, tile 1024, analysis margin 192
    # 1920x1080: windows of 18 and 18 across, one of 17 down, 1.2 times the area (0.6.5: 19 and 17
    # across, 17 and 4 down, 1.48 times)
    assert [high - low for *_, low, high in spans(30, 16, 3)] == [18, 18] and len(spans(17, 16, 3)) == 1
    assert [high - low for *_, low, high in spans(52, 8, 1)] == [10] + [9] * 6  # --tile 512, the synthesis


def test_tiles_with_little_margin_stay_close():
    image = np.concatenate([synthetic_photo(320, 448, seed=s) for s in (6, 7)], axis=1)  # 320 x 896
    whole = Codec(providers="cpu", tile=4096)
    tiled = Codec(providers="cpu", tile=128, margin=64)
    a = whole.decode(whole.encode(image), as_array=True)
    b = tiled.decode(tiled.encode(image), as_array=True)
    assert abs(psnr(a, image) - psnr(b, image)) < 0.05


@pytest.mark.parametrize("tile, margin", [(0, 0), (100, 64), (256, 32), (256, -64)])
def test_bad_tile_settings_are_refused(tile, margin):
    with pytest.raises(nicodec.NicodecError, match="multiple of 64"):
        Codec(providers="cpu", tile=tile, margin=margin)


def test_encoded_image_bytes_are_accepted(codec, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "in.png")
    assert codec.encode((tmp_path / "in.png").read_bytes()) == codec.encode(photo)
    for bad, message in [(b"", "empty"), (b"garbage", "not in a format"), (b"\x89PNG\r\n\x1a\n\x00", "image data")]:
        with pytest.raises(nicodec.UnsupportedImageError, match=message):
            codec.encode(bad)


def test_what_decode_gives_back_encodes_again_and_file_objects_are_read(codec, photo, tmp_path):
    """decode(as_array=True) gives (H, W, 2) for gray with alpha: encode takes it (and (H, W, 1)),
    and a file opened in binary mode, as decode and Pillow's open take one."""
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    alpha = np.full_like(gray, 255)
    alpha[:8, :8] = 0
    la = codec.decode(codec.encode(np.dstack([gray, alpha])), as_array=True)
    assert la.shape == gray.shape + (2,) and np.array_equal(la[:, :, 1], alpha)
    assert codec.decode(codec.encode(la), as_array=True).shape == la.shape
    assert codec.encode(gray[:, :, None]) == codec.encode(gray)
    Image.fromarray(photo).save(tmp_path / "p.png")
    with open(tmp_path / "p.png", "rb") as f:
        assert codec.encode(f) == codec.encode(tmp_path / "p.png")
    assert codec.encode(io.BytesIO((tmp_path / "p.png").read_bytes())) == codec.encode(tmp_path / "p.png")
    with open(tmp_path / "p.png", encoding="latin-1") as f, pytest.raises(nicodec.UnsupportedImageError, match="binary"):
        codec.encode(f)
    from nicodec.ratecontrol import encode_to_target

    with open(tmp_path / "p.png", "rb") as f:  # a search encodes several times: the file is read once
        assert encode_to_target(codec, f, bpp=1.0).data


@pytest.mark.parametrize("tile", [1024, 64])
def test_progress_goes_tile_by_tile_to_its_total(tile):
    """encode and decode tell their progress as they start, after each tile of the networks
    and of the entropy parameters, and after the entropy coding, done growing to a total that
    stays the same; the bytes and pixels are those made without it."""
    from nicodec.tiling import ENTROPY_MARGIN, spans

    photo = synthetic_photo(448, 576)  # 7 x 9 z positions: 1 x 3 windows of the analysis, 3 x 5 of the entropy
    codec = Codec(providers="cpu", tile=tile)
    rows, cols = -(-photo.shape[0] // 64), -(-photo.shape[1] // 64)

    def windows(margin: int) -> int:  # of a graph whose context is margin z positions
        return 1 if tile == 1024 else len(spans(rows, 1, margin)) * len(spans(cols, 1, margin))

    runs = {"encode": windows(3) + windows(ENTROPY_MARGIN), "decode": windows(ENTROPY_MARGIN) + windows(1)}
    assert tile == 1024 or runs == {"encode": 3 + 15, "decode": 15 + 35}
    for run in ("encode", "decode"):
        calls = []
        if run == "encode":
            made = codec.encode(photo, progress=lambda *a: calls.append(a))
            assert made == codec.encode(photo)
        else:
            back = codec.decode(made, progress=lambda *a: calls.append(a), as_array=True)
            assert np.array_equal(back, codec.decode(made, as_array=True))
        total = calls[-1][1]
        assert calls[0] == (0, total) and calls[-1] == (total, total) and {t for _, t in calls} == {total}
        assert len(calls) == runs[run] + 2 and all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
    with pytest.raises(nicodec.NicodecError, match="progress must be a function"):
        codec.decode(made, progress="no")


def test_encode_checks_its_switches(codec, photo):
    with pytest.raises(nicodec.NicodecError, match="strip: 'no' is no kind of metadata"):
        codec.encode(photo, strip="no")
    with pytest.raises(nicodec.NicodecError, match="progress must be a function"):
        codec.encode(photo, progress=5)
    assert codec.encode(photo, strip=np.bool_(True)) == codec.encode(photo, strip=True)


def test_a_progress_that_cannot_take_done_and_total_is_refused_before_any_work(codec, photo):
    """Before: refused only when the first tile reported (a TypeError from inside the codec)."""
    for wrong in (lambda done: None, lambda done, total, encode: None):
        with pytest.raises(nicodec.NicodecError, match=r"progress must be a function of \(done, total\), called "
                                                       r"with 2 arguments; .* takes \(done"):
            codec.decode(b"not even a file", progress=wrong)  # refused before the bytes are read
        with pytest.raises(nicodec.NicodecError, match=r"progress must be a function of \(done, total\)"):
            codec.encode(photo, progress=wrong)
    seen = []
    codec.encode(photo, progress=lambda *told: seen.append(told))  # any callable that takes two is fine
    codec.encode(photo, progress=lambda done, total, extra=None: None)
    codec.encode(photo, progress=max)  # a builtin: no signature to read, taken as it is
    assert seen and all(len(told) == 2 for told in seen)
    import functools

    def logged(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return None  # takes any arguments, whatever the function it wraps declares
        return wrapper

    codec.encode(photo, progress=logged(lambda done: None))  # judged by the wrapper, not by what it wraps


def test_session_options_reach_onnxruntime_and_a_float_entropy_graph_is_pinned(monkeypatch):
    """threads= and optimization= reach every session; a model whose entropy graph computes in
    float (exported before the integer graph) gets 1 thread and basic optimisation there whatever
    is asked, so that its integers do not depend on the options."""
    import onnxruntime

    from nicodec import sessions
    from nicodec.model import ModelFiles

    made = []

    class Recording:
        def __getattr__(self, name):
            return getattr(onnxruntime, name)

        @staticmethod
        def InferenceSession(source, sess_options, providers, **kwargs):  # source: the graph's bytes
            session = onnxruntime.InferenceSession(source, sess_options=sess_options, providers=providers, **kwargs)
            name = {"scale_index": "entropy_parameters", "y": "encoder", "image": "decoder",
                    "gradient": "synthesis_gradient"}[session.get_outputs()[0].name]
            made.append((name, sess_options.intra_op_num_threads, sess_options.graph_optimization_level))
            return session

    monkeypatch.setattr(sessions, "_ort", Recording)
    basic, every = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC, onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    Codec(providers="cpu", threads=2, optimization="basic").prepare()
    assert {name for name, _, _ in made} >= {"encoder", "entropy_parameters", "decoder"}
    assert all(options == [2, basic] for _, *options in made), made
    made.clear()
    monkeypatch.setattr(ModelFiles, "integer_entropy", property(lambda self: False))
    Codec(providers="cpu", threads=2, optimization="all").prepare()
    assert [options for name, *options in made if name == "entropy_parameters"] == [[1, basic]], made
    assert all(options == [2, every] for name, *options in made if name != "entropy_parameters"), made


def test_images_run_in_tiles_hand_the_memory_arena_back_after_each_tile(photo):
    """onnxruntime's arena keeps each run's allocations to reuse, in doubling blocks: over the
    tiles of a 4000x3000 encode it held 3.8 GB where one tile needs 1.3. Runs of images larger
    than a tile ask it to shrink after each window (the same outputs), also where one window
    holds the whole image; images of one tile keep it, as it saves time."""
    class Recording:
        def __init__(self, session):
            self.session, self.asked = session, []

        def run(self, names, feeds, options=None):
            self.asked.append(None if options is None else options.get_run_config_entry(
                "memory.enable_memory_arena_shrinkage"))
            return self.session.run(names, feeds, options)

    whole = Codec(providers="cpu", threads=1)
    tiled = Codec(providers="cpu", threads=1, tile=64)  # the default margins, 192 and 64 pixels
    for codec in (whole, tiled):
        for graph in ("encoder", "decoder"):
            codec._sessions[graph] = Recording(codec._session(graph))
    assert photo.shape[0] > 64
    data = whole.encode(photo)
    assert tiled.encode(photo) == data
    assert np.array_equal(whole.decode(data, as_array=True), tiled.decode(data, as_array=True))
    assert whole._sessions["encoder"].asked == whole._sessions["decoder"].asked == [None]
    encoder, decoder = tiled._sessions["encoder"], tiled._sessions["decoder"]
    # The analysis runs on one window (3 x 4 z positions are within 64 + 2 x 192 pixels a side),
    # the synthesis on 1 x 2 (64 + 2 x 64 pixels).
    assert len(encoder.asked) == 1 and len(decoder.asked) == 2
    assert set(encoder.asked) == set(decoder.asked) == {"cpu:0"}


def test_running_out_of_memory_is_a_named_error(codec, photo, monkeypatch):
    """onnxruntime's allocator failing (its own untyped error) or numpy's MemoryError: an
    OutOfMemoryError, which is a NicodecError (docs/python-api.md's service code catches it) and a
    MemoryError, saying what needs less."""
    class Fail(Exception):  # stands in for onnxruntime.capi.onnxruntime_pybind11_state.Fail
        pass

    class Starved:
        def __init__(self, session, error):
            self.session, self.error = session, error

        def run(self, *args, **kwargs):
            raise self.error

    data = codec.encode(photo)
    for error in (Fail("[ONNXRuntimeError] : 1 : FAIL : BFCArena::AllocateRawInternal Failed to allocate memory "
                       "for requested buffer of size 301989888"), MemoryError()):
        monkeypatch.setitem(codec._sessions, "decoder", Starved(codec._session("decoder"), error))
        expected = ("onnxruntime could not allocate 301,989,888 bytes" if isinstance(error, Fail)
                    else "a numpy array could not be allocated")
        with pytest.raises(nicodec.OutOfMemoryError, match=f"^out of memory: {expected}; smaller tiles") as caught:
            codec.decode(data)
        assert isinstance(caught.value, nicodec.NicodecError) and isinstance(caught.value, MemoryError)
    monkeypatch.setitem(codec._sessions, "encoder", Starved(codec._session("encoder"), Fail("some other failure")))
    with pytest.raises(Fail):  # not every onnxruntime error is about memory
        codec.encode(photo)


def test_running_out_of_memory_while_loading_is_named_as_such(monkeypatch, capsys):
    """Under a memory limit (ulimit -v on an edge board) loading failed as "onnxruntime is
    installed but does not import ...; reinstall it", "cannot load encoder.onnx: ...
    std::bad_alloc", an internal error for the entropy check's arena failure, or a traceback
    while numpy loaded: each is now an OutOfMemoryError (or one line) saying memory ran out."""
    import builtins
    import sys
    import types

    import onnxruntime

    from nicodec import launch, sessions

    class Fail(Exception):  # stands in for onnxruntime's own error classes
        pass

    loading = r"^out of memory while loading {}.*free some memory, or raise this process's limit \(ulimit -v\)"
    monkeypatch.delitem(sys.modules, "onnxruntime")
    real_import = builtins.__import__

    said = []

    def unimportable(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(said[-1])
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", unimportable)
    said.append("/x/onnxruntime_pybind11_state.so: cannot map zero-fill pages: Cannot allocate memory")
    with pytest.raises(nicodec.OutOfMemoryError, match=loading.format("onnxruntime's library")):
        sessions._ort()
    # glibc says this for an address-space limit and for a noexec mount alike: both are named.
    said.append("/x/onnxruntime_pybind11_state.so: failed to map segment from shared object")
    with pytest.raises(nicodec.NicodecError, match=r"the process's memory limit \(ulimit -v\) is too low, or its "
                                                   "folder is on a file system mounted noexec") as caught:
        sessions._ort()
    assert not isinstance(caught.value, nicodec.OutOfMemoryError)
    said.append("/tmp/bad_alloc_site/onnxruntime_pybind11_state.so: invalid ELF header")  # a name is not the error
    with pytest.raises(nicodec.NicodecError, match="installed but does not import .*invalid ELF header"):
        sessions._ort()
    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.setitem(sys.modules, "onnxruntime", onnxruntime)

    def starved(*args, **kwargs):
        raise Fail("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: std::bad_alloc")

    with monkeypatch.context() as patched:
        patched.setattr(onnxruntime, "InferenceSession", starved)
        with pytest.raises(nicodec.OutOfMemoryError, match=loading.format("entropy_parameters.onnx")):
            Codec(providers="cpu")

    def arena(*args, **kwargs):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : BFCArena::AllocateRawInternal Failed to allocate memory for "
                   "requested buffer of size 4096")

    with monkeypatch.context() as patched:
        patched.setattr(nicodec.exactness, "check", arena)
        with pytest.raises(nicodec.OutOfMemoryError, match=loading.format("the model")):
            Codec(providers="cpu")

    def broken(*args, **kwargs):  # not memory: still the error it was
        raise Fail("some other failure in /models/bad_alloc/entropy_parameters.onnx")

    with monkeypatch.context() as patched:
        patched.setattr(onnxruntime, "InferenceSession", broken)
        with pytest.raises(nicodec.ModelError, match="cannot load entropy_parameters.onnx: some other failure"):
            Codec(providers="cpu")
    with pytest.raises(TypeError, match="bogus_bad_alloc"):  # a call's own mistake stays one
        Codec(bogus_bad_alloc=1)

    def hungry():
        raise MemoryError

    monkeypatch.setitem(sys.modules, "nicodec.cli", types.SimpleNamespace(_main=lambda args, command: hungry()))
    with pytest.raises(SystemExit) as stopped:
        launch.nicodec()
    assert stopped.value.code == 1
    assert capsys.readouterr().err == ("error: out of memory while nicodec starts; free some memory, or raise this "
                                       "process's limit (ulimit -v)\n")


def _topology(root, cores: list[list[int]], old_kernel: bool = False):
    """A sysfs CPU tree of ``cores``, each a list of its logical CPUs (hyperthreads)."""
    name = "thread_siblings_list" if old_kernel else "core_cpus_list"
    for siblings in cores:
        for cpu in siblings:
            folder = root / f"cpu{cpu}" / "topology"
            folder.mkdir(parents=True)
            (folder / name).write_text(",".join(map(str, siblings)) + "\n")
    return root


def test_physical_cores_count_a_cores_hyperthreads_once(tmp_path):
    from nicodec import machine

    tree = _topology(tmp_path / "new", [[0, 4], [1, 5], [2, 6], [3, 7]])
    assert machine.physical_cores(range(8), tree) == 4
    assert machine.physical_cores([0, 4, 1], tree) == 2
    assert machine.physical_cores([0, 1, 2, 3], tree) == 4
    assert machine.physical_cores(range(2), _topology(tmp_path / "old", [[0, 1]], old_kernel=True)) == 1
    assert machine.physical_cores(range(9), tree) is None  # a CPU it cannot tell
    assert machine.physical_cores([], tree) is None


def test_default_threads_are_given_explicitly_one_per_physical_core_the_process_may_use(monkeypatch, tmp_path):
    """onnxruntime pins the threads of a count it picks itself to cores, and a calling thread
    that the scheduler moved onto a pinned core shared it while another core stayed idle (a
    command-line batch of small images took twice as long): the default count is onnxruntime's
    own, one per physical core, but given, of the cores the process may use (taskset, a cpuset,
    a cgroup's quota)."""
    import os

    from nicodec import machine

    def threads(**given) -> int:
        return Codec(providers="cpu", **given)._session("encoder").get_session_options().intra_op_num_threads

    monkeypatch.setattr(machine, "CPU_TOPOLOGY", _topology(tmp_path, [[cpu, cpu + 8] for cpu in range(8)]))
    monkeypatch.setattr(machine, "cpu_quota", lambda: None)  # whatever this machine's cgroup says
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert machine.default_threads() == 8 == threads()  # 0, onnxruntime's own pinned default, before
    assert threads(threads=2) == 2
    from nicodec.options import batch_threads

    assert [batch_threads(None, jobs) for jobs in (1, 2, 3, 16)] == [None, 4, 2, 1]  # 8 physical cores shared
    assert batch_threads(5, 2) == 5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 8, 1, 9}, raising=False)  # taskset -c 0,1,8,9
    assert machine.default_threads() == 2 == threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert machine.default_threads() == 1 == threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(machine, "cpu_quota", lambda: 3)  # docker run --cpus=2.5
    assert machine.default_threads() == 3 == threads()
    monkeypatch.setattr(machine, "CPU_TOPOLOGY", tmp_path / "none")  # no sysfs: the CPUs allowed
    monkeypatch.setattr(machine, "cpu_quota", lambda: None)
    assert machine.default_threads() == 16
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows: onnxruntime's default
    assert machine.default_threads() is None
    assert threads() == 0


def _cgroup_tree(tmp_path, membership: str, files: dict[str, str]):
    """A new folder under ``tmp_path`` holding ``files`` (the cgroup mount under ``fs/``) and a
    ``cgroup`` file of ``membership`` (as /proc/self/cgroup)."""
    root = tmp_path / f"tree{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "cgroup").write_text(membership)
    return root


def test_a_cgroup_cpu_quota_is_read_as_containers_write_it(tmp_path):
    """docker run --cpus and a Kubernetes CPU limit leave every core in the affinity mask and
    limit the time instead: onnxruntime's default then ran a thread per core of the host."""
    from nicodec import machine

    def tree(membership: str, files: dict[str, str]):
        root = _cgroup_tree(tmp_path, membership, files)
        return machine.cpu_quota(root / "fs", str(root / "cgroup"))

    # cgroup v2 in a container's own namespace: the container's cgroup is the mount's root
    assert tree("0::/\n", {"fs/cpu.max": "200000 100000\n"}) == 2
    assert tree("0::/\n", {"fs/cpu.max": "150000 100000\n"}) == 2  # 1.5 CPUs: rounded up
    assert tree("0::/\n", {"fs/cpu.max": "20000 100000\n"}) == 1
    assert tree("0::/\n", {"fs/cpu.max": "max 100000\n"}) is None
    # the least along the path: a pod's limit above a container without one
    assert tree("0::/kubepods/pod1/c1\n", {"fs/kubepods/cpu.max": "max 100000", "fs/kubepods/pod1/cpu.max":
                                          "400000 100000", "fs/kubepods/pod1/c1/cpu.max": "max 100000"}) == 4
    # cgroup v1, the host's name for the cgroup, which the container has mounted as the root
    v1 = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"
    assert tree(v1, {"fs/cpu,cpuacct/cpu.cfs_quota_us": "300000\n", "fs/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}) == 3
    assert tree(v1, {"fs/cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "fs/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}) is None
    assert tree("3:cpu:/a\n", {"fs/cpu/a/cpu.cfs_quota_us": "50000", "fs/cpu/a/cpu.cfs_period_us": "100000"}) == 1
    # nothing to read, or nothing readable: no quota
    assert tree("0::/\n", {}) is None
    assert tree("0::/\n", {"fs/cpu.max": "garbage"}) is None
    assert tree("not a cgroup line\n", {"fs/cpu.max": "100000 100000"}) is None
    assert machine.cpu_quota(tmp_path, str(tmp_path / "missing")) is None


def test_the_memory_free_is_read_as_linux_and_cgroups_give_it(tmp_path):
    """A 1 GB board, or a container with --memory 1g, killed a decode of a phone's photo that
    smaller tiles would have fitted: what is free is read to choose them."""
    from nicodec import machine

    def tree(membership: str, files: dict[str, str], meminfo: str = "MemTotal: 4000000 kB\nMemAvailable: 3000000 kB\n"):
        root = _cgroup_tree(tmp_path, membership, files)
        (root / "meminfo").write_text(meminfo)
        return machine.memory_free(root / "fs", str(root / "cgroup"), str(root / "meminfo"))

    assert tree("0::/\n", {}) == 3000000 * 1024  # no limit: the kernel's MemAvailable
    assert tree("0::/\n", {"fs/memory.max": "max\n", "fs/memory.current": "5000\n"}) == 3000000 * 1024
    assert tree("0::/\n", {"fs/memory.max": "1073741824\n", "fs/memory.current": "73741824\n"}) == 10 ** 9
    assert tree("0::/\n", {"fs/memory.max": "1000\n", "fs/memory.current": "2000\n"}) == 0  # over: none left
    # the files' pages in the cache that are inactive count as free, as the kernel takes them back first
    assert tree("0::/\n", {"fs/memory.max": "1073741824\n", "fs/memory.current": "173741824\n",
                           "fs/memory.stat": "anon 50000000\nfile 120000000\ninactive_file 100000000\n"}) == 10 ** 9
    # the least along the path: a pod's limit above a container without one
    assert tree("0::/kubepods/pod1/c1\n", {"fs/kubepods/pod1/memory.max": "600000000",
                                           "fs/kubepods/pod1/memory.current": "100000000",
                                           "fs/kubepods/pod1/c1/memory.max": "max"}) == 500000000
    v1 = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"
    assert tree(v1, {"fs/memory/memory.limit_in_bytes": "536870912\n", "fs/memory/memory.usage_in_bytes": "36870912\n"}
                ) == 500000000
    assert tree(v1, {"fs/memory/memory.limit_in_bytes": "536870912\n", "fs/memory/memory.usage_in_bytes": "136870912\n",
                     "fs/memory/memory.stat": "cache 100000000\ninactive_file 7\ntotal_inactive_file 100000000\n"}
                ) == 500000000
    assert tree(v1, {"fs/memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
                     "fs/memory/memory.usage_in_bytes": "36870912\n"}) == 3000000 * 1024
    assert tree("0::/\n", {}, meminfo="MemTotal: 4000000 kB\n") is None  # a kernel before 3.14
    assert tree("0::/\n", {"fs/memory.max": "garbage", "fs/memory.current": "1"}, meminfo="") is None
    assert machine.memory_free(tmp_path, str(tmp_path / "missing"), str(tmp_path / "missing")) is None
    assert machine.resident_bytes(str(tmp_path / "missing")) is None
    if sys.platform == "linux":
        assert machine.memory_free() > 0 and machine.resident_bytes() > 10 * 2 ** 20


def test_tiles_are_chosen_by_the_memory_free_unless_given(monkeypatch, photo):
    """By default an image whose estimated growth at tiles of 1024 the memory free does not hold
    runs on smaller tiles, for the same file and pixels; a tile given is kept whatever is free."""
    from nicodec import transforms

    MiB = 2 ** 20
    auto, given = Codec(providers="cpu", threads=1), Codec(providers="cpu", threads=1, tile=1024)
    assert auto.tile == 1024 and auto.auto_tile and not given.auto_tile
    resident = 2 * 2 ** 30  # an application's own memory counts for nothing: only the growth
    monkeypatch.setattr(transforms, "resident_bytes", lambda: resident)

    def tile(height, width, free, kind=None, calls=0, idle=None):
        monkeypatch.setattr(transforms, "memory_free", lambda: free)
        monkeypatch.setattr(transforms._CALL, "kind", kind, raising=False)
        auto._calls, auto._idle_resident = calls, idle
        assert given._tile_for(height, width) == 1024
        return auto._tile_for(height, width)

    # Less free, smaller tiles, never larger: a 24-megapixel photo goes through all three
    for kind in ("encode", "decode"):
        chosen = [tile(4032, 6016, free * 16 * MiB, kind) for free in range(256, -1, -1)]
        assert chosen == sorted(chosen, reverse=True) and set(chosen) == {1024, 512, 256}, kind
    # What was measured (growth of a fresh process; in cgroups): each estimate is above it
    assert tile(1408, 1408, 859 * 10 ** 6, "encode") < 1024  # 830 MiB at 1024: killed where 1024 was chosen
    assert tile(3008, 4032, 560 * MiB, "decode") == 512  # 4000x3000 in 700 MB: killed at 1024, 531 MiB at 512
    # A small image is not split where a large one would be: the estimate goes by its window
    assert tile(512, 768, 400 * MiB, "decode") == tile(512, 768, 400 * MiB, "encode") == 1024  # 225, 193 MiB
    assert tile(4032, 6016, 400 * MiB, "decode") == 256
    # The arena an earlier call left (the process above the least it held as a call began) is used again
    assert tile(1024, 1024, 100 * MiB, "encode") == 256
    assert tile(1024, 1024, 100 * MiB, "encode", idle=resident - 700 * MiB) == 1024
    # Two calls at once (--jobs 2) each need room
    free_for_one = next(free * MiB for free in range(4096) if tile(4032, 6016, free * MiB, "decode") == 1024)
    assert tile(4032, 6016, free_for_one, "decode", calls=2, idle=resident) < 1024
    monkeypatch.setattr(transforms, "memory_free", lambda: 0)
    with pytest.warns(UserWarning, match="may need more memory than is free, even on tiles of 256 pixels: the system "
                                         "may end the process .*, or fewer at once"):
        auto._tile_for(4032, 6016, warn=True)
    auto._calls, auto._idle_resident = 0, None
    monkeypatch.setattr(transforms, "memory_free", lambda: None)  # off Linux
    assert auto._tile_for(4032, 6016) == 1024
    monkeypatch.undo()

    # 320 x 704: wider than one window at tiles of 256 (256 + 2 x 192), one tile at 1024
    image = np.ascontiguousarray(np.tile(photo, (4, 8, 1))[:320, :704])
    runs = []

    def counted(codec):
        runs.clear()
        return codec.encode(image, progress=lambda done, total: runs.append(done))

    monkeypatch.setattr(transforms, "memory_free", lambda: 2 ** 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # room enough: no word of it
        whole = counted(Codec(providers="cpu", threads=1))
    whole_runs = len(runs)
    monkeypatch.setattr(transforms, "memory_free", lambda: 0)  # nothing free: the smallest tiles, and a warning
    killed = "may need more memory than is free, even on tiles of 256 pixels: the system may end the process"
    with pytest.warns(UserWarning, match=killed):
        tiled = counted(Codec(providers="cpu", threads=1))
    tiled_runs = len(runs)
    assert tiled == whole and tiled_runs > whole_runs  # the same file, in more steps (one per tile)
    assert counted(Codec(providers="cpu", threads=1, tile=256)) == whole and len(runs) == tiled_runs
    with pytest.warns(UserWarning, match=killed):
        on_small_tiles = Codec(providers="cpu", threads=1).decode(whole, as_array=True)
    assert np.array_equal(on_small_tiles, Codec(providers="cpu", threads=1, tile=1024).decode(whole, as_array=True))


def test_argument_types_are_checked_alike(codec, photo):
    """decode's as_array was only truth-tested ("no" gave an array) while encode's strip was
    checked; a numpy float slope was refused as rdo while numpy numbers pass everywhere else."""
    data = codec.encode(photo)
    for bad in ("no", 1, None):
        with pytest.raises(nicodec.NicodecError, match="as_array must be True or False"):
            codec.decode(data, as_array=bad)
    assert codec.decode(data, as_array=np.bool_(True)).shape == photo.shape
    assert Codec(providers="cpu", threads=1, rdo=np.float32(0.02)).rdo_slope == pytest.approx(0.02)
    assert Codec(providers="cpu", threads=1, rdo=np.bool_(False)).rdo_slope == 0.0


def test_a_codec_cannot_be_pickled_and_says_what_to_do_instead(codec):
    import copy
    import pickle

    with pytest.raises(TypeError, match="make one in each process"):
        pickle.dumps(codec)
    with pytest.raises(TypeError, match="make one in each process"):
        pickle.dumps(codec.encode)  # what a process pool sends for pool.map(codec.encode, ...)
    with pytest.raises(TypeError, match="cannot be pickled or copied"):
        copy.copy(codec)


_FORKED_CHILD = """
import os, sys, warnings
import numpy as np
from nicodec import Codec

photo = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
codec = Codec(providers="cpu", threads=2)
data = codec.encode(photo)
inherited = {graph: id(session) for graph, session in codec._sessions.items()}
assert set(inherited) == {"entropy_parameters", "encoder"}, inherited
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "this process is multi-threaded" (the point here)
pid = os.fork()
if pid == 0:
    forgotten = codec._sessions == {}
    # prepare() in the child (a preforking server's worker) loads every graph the encode runs,
    # the entropy parameters' too, which the codec loads when it is made (before: left to the first image)
    prepared = set(codec.prepare(decode=False)._sessions) == {"entropy_parameters", "encoder"}
    same = codec.encode(photo) == data
    fresh = all(id(codec._sessions[graph]) != inherited[graph] for graph in inherited)
    sys.exit(0 if forgotten and prepared and same and fresh else 3)  # a normal end: the interpreter's own clean-up runs
_, status = os.waitpid(pid, 0)
kept = {graph: id(session) for graph, session in codec._sessions.items()} == inherited
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {kept}")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_made_by_fork_loads_its_own_sessions_and_ends(tmp_path):
    """A Codec inherited through fork (a process pool's default on Linux, a preforking server)
    runs sessions of its own in the child: an inherited one that another thread of the parent
    was running as it forked could wait for ever there (its thread pool's workers are not in
    the child), and so did freeing one, as a child that ended with sys.exit did."""
    import contextlib
    import signal
    import subprocess
    import sys

    told = tmp_path / "told"
    process = subprocess.Popen([sys.executable, "-c", _FORKED_CHILD, str(told)], stdout=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a child still waiting, if any
        process.wait()
    assert process.returncode == 0 and told.read_text() == "0 True"



_EXITING_WITH_A_DAEMON_THREAD = """
import sys, threading, time
import numpy as np
from nicodec import Codec

phase, into = sys.argv[1], float(sys.argv[2])
codec = Codec(providers="cpu", threads=2)
photo = np.random.default_rng(0).integers(0, 256, (512, 768, 3), dtype=np.uint8)
timed = threading.Event()
took = []

def serve():
    while True:
        start = time.perf_counter()
        codec.encode(photo)
        took.append(time.perf_counter() - start)
        if len(took) == 2:  # the first loaded the encoder too
            timed.set()

threading.Thread(target=serve, daemon=True).start()
if phase == "loading":
    time.sleep(into)  # while the thread's first image loads the encoder's graph
else:
    if not timed.wait(120):
        sys.exit(5)
    time.sleep(took[1] * into)  # into the next encode's graphs
"""


@pytest.mark.parametrize(("phase", "into"), [("loading", 0.03), ("loading", 0.08), ("running", 0.2),
                                             ("running", 0.4), ("running", 0.6), ("running", 0.8)])
def test_a_program_exits_cleanly_while_a_daemon_thread_runs_a_graph(phase, into):
    """A service that encodes on a daemon thread ended, one time in two, in onnxruntime's
    "terminate called without an active exception" and SIGABRT (exit status 134 and a core
    dump) where it exited while the thread was inside a graph, or loading one (its first
    image): the interpreter does not wait for daemon threads, and tore onnxruntime down under
    it. Several points of the run, since an exit between graphs was always clean."""
    import subprocess
    import sys

    process = subprocess.run([sys.executable, "-c", _EXITING_WITH_A_DAEMON_THREAD, phase, str(into)],
                             capture_output=True, text=True, timeout=300, check=False)
    assert process.returncode == 0 and process.stderr == "", (process.returncode, process.stderr)

def test_an_empty_path_and_a_file_open_for_writing_are_named(codec, photo, tmp_path):
    """Path("") is the current folder: ". is a directory" named the wrong thing. (The message
    was ": the path of the image is empty", the empty path put before it as a name.) A file of
    /proc is 0 bytes long by its size, whatever it holds: not "empty"."""
    with pytest.raises(nicodec.UnsupportedImageError, match="^the path of the image is empty$"):
        codec.encode("")
    if os.path.exists("/proc/self/status"):
        with pytest.raises(nicodec.UnsupportedImageError, match="^/proc/self/status is not an image Pillow can read"):
            codec.encode("/proc/self/status")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(nicodec.UnsupportedImageError, match="empty.png is empty$"):
        codec.encode(tmp_path / "empty.png")
    with pytest.raises(nicodec.NicodecError, match="the path of the .nic file is empty"):
        codec.decode("")
    with open(tmp_path / "w.nic", "wb") as f, pytest.raises(nicodec.NicodecError, match="not open for reading"):
        codec.decode(f)
    with open(tmp_path / "w.png", "wb") as f, pytest.raises(nicodec.UnsupportedImageError, match="not open for reading"):
        codec.encode(f)


def test_a_folder_or_a_closed_file_object_given_to_decode_is_named_so(codec, photo, tmp_path):
    """Codec.decode of a folder's path and of a file object already closed: what is wrong, in
    one line, not "not a nicodec file" or a ValueError of io's."""
    with pytest.raises(nicodec.NicodecError, match=f"^{re.escape(str(tmp_path))} is a directory, not a .nic file"):
        codec.decode(tmp_path)
    stream = io.BytesIO(codec.encode(photo))
    stream.close()
    with pytest.raises(nicodec.NicodecError, match="^cannot read the .nic file from BytesIO: I/O operation on closed file"):
        codec.decode(stream)


def test_a_file_object_left_at_its_end_is_named_so(codec, photo):
    """A BytesIO (or a web framework's SpooledTemporaryFile upload) written and not rewound was
    "the image data is empty", and to decode "empty (0 bytes), not a nicodec file": a service
    would call the upload damaged. Python 3.10's SpooledTemporaryFile has tell() but no
    seekable(), as the upload below."""
    import tempfile

    class Upload:  # read, write, tell and seek, but no seekable()
        def __init__(self):
            self._file = io.BytesIO()
            self.read, self.write, self.tell, self.seek = (self._file.read, self._file.write,
                                                           self._file.tell, self._file.seek)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

    data = codec.encode(photo)
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    for content, code, error in ((png.getvalue(), codec.encode, nicodec.UnsupportedImageError),
                                 (data, codec.decode, nicodec.NicodecError)):
        for kind in (io.BytesIO, tempfile.SpooledTemporaryFile, Upload):
            with kind() as stream:
                stream.write(content)
                with pytest.raises(error, match=f"file object is at its end \\(position {len(content):,}\\) and "
                                                "gave no bytes: seek\\(0\\) first"):
                    code(stream)
                stream.seek(0)
                code(stream)
    with pytest.raises(nicodec.FormatError, match="empty"):  # empty from its start: no position to name
        codec.decode(io.BytesIO())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status: Linux")
def test_a_node_that_runs_out_of_memory_leaves_no_log_of_onnxruntime_on_stderr(tmp_path):
    """onnxruntime logged the failed node in colour on stderr before nicodec's own message; the
    exception carries the same text. Under a real memory limit, in a process of its own."""
    import subprocess

    big = tmp_path / "big.nic"
    big.write_bytes(Codec(providers="cpu").encode(synthetic_photo(1024, 1024, seed=3), quality=20))
    script = f"""
import resource, sys
import numpy as np
import nicodec
codec = nicodec.Codec(providers="cpu", tile=1024)
codec.decode(codec.encode(np.zeros((64, 64, 3), np.uint8)))  # the graphs loaded before the limit
size = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, ((size + 150_000) * 1024,) * 2)  # 150 MB more: not the decoder's tensors
try:
    codec.decode(open({str(big)!r}, "rb").read())
except nicodec.OutOfMemoryError as exc:
    print("out of memory:", exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.startswith("out of memory:"), (done.stdout, done.stderr)
    assert "onnxruntime" not in done.stderr and "\x1b[" not in done.stderr, done.stderr


def test_cpu_sessions_plan_no_memory_pattern():
    """onnxruntime's memory pattern takes one block per shape from the arena at a shape's second
    run, beside what the first run left there: a process coding many images held about 1.6
    times the memory (877 against 560 MiB over Kodak), and in some runs coded the second image at half speed.
    Every graph the codec runs on the CPU provider has it off."""
    codec = Codec(providers="cpu", threads=1).prepare()
    names = ("encoder", "entropy_parameters", "decoder")
    assert all(not codec._session(name).get_session_options().enable_mem_pattern for name in names)


def test_cpu_sessions_threads_do_not_spin_after_a_run():
    """A pool that went on spinning after its run took the cores from the next session's run
    and from the rANS coder: on 2 cores a Kodak image encoded in about 220 ms, not 185, and a
    256x256 image took twice as long."""
    codec = Codec(providers="cpu", threads=2).prepare()
    for name in ("encoder", "entropy_parameters", "decoder"):
        options = codec._session(name).get_session_options()
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_release_memory_hands_the_arena_back_after_every_run(photo, monkeypatch):
    """A service's Codec kept each one-tile image's run memory in onnxruntime's arena, once for
    each call running at once (2.7 GB after three 1024x1024 images): ``release_memory=True``
    runs every graph with the run options that shrink the arena, as the tiles of a large image
    are run; the files and pixels are the same."""
    from nicodec import sessions

    made = []

    def shrinking():
        options = original()
        made.append(options)
        return options

    original = sessions.shrinking_run_options
    monkeypatch.setattr("nicodec.tiling.shrinking_run_options", shrinking)
    monkeypatch.setattr("nicodec.transforms.shrinking_run_options", shrinking)  # a float entropy-parameter graph's
    plain, released = Codec(providers="cpu"), Codec(providers="cpu", release_memory=True)
    data = plain.encode(photo)
    assert not made and np.array_equal(plain.decode(data, as_array=True), plain.decode(data, as_array=True))
    assert not made  # the default keeps the arena
    assert released.encode(photo) == data
    assert len(made) >= 2  # the analysis's run and the entropy parameters'
    assert np.array_equal(released.decode(data, as_array=True), plain.decode(data, as_array=True))
    runs = len(made)
    released.decode(data)
    assert len(made) > runs
    for options in made:
        assert options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    released.decode((Path(__file__).parent / "data" / "made-by-vr-4d.nic").read_bytes())  # an earlier model's
    assert released._earlier and all(codec.release_memory for codec in released._earlier.values())
    with pytest.raises(nicodec.NicodecError, match="release_memory must be True or False, not 'yes'"):
        Codec(providers="cpu", release_memory="yes")
    assert Codec(providers="cpu", release_memory=np.bool_(True)).release_memory is True


def test_what_a_progress_callback_raises_goes_through_as_it_is(photo):
    """A callback's ``MemoryError``, or an error whose message read like onnxruntime's out of
    memory, came out as nicodec's OutOfMemoryError advising smaller tiles; a callback raises to
    cancel a call, and its exception now comes out as it was raised, for encode, decode and
    encode_to_target."""
    codec = Codec(providers="cpu")
    data = codec.encode(photo)
    for raised in (MemoryError("the caller's"), RuntimeError("Failed to allocate memory for the upload quota")):
        def stop(*args, raised=raised):
            raise raised

        calls = (lambda: codec.encode(photo, progress=stop), lambda: codec.decode(data, progress=stop),
                 lambda: nicodec.encode_to_target(codec, photo, bpp=0.5, progress=stop))
        for call in calls:
            with pytest.raises(type(raised)) as caught:
                call()
            assert caught.value is raised and not isinstance(caught.value, nicodec.OutOfMemoryError)
    assert codec.decode(data, as_array=True).shape == photo.shape  # the codec goes on working


def test_memory_that_runs_out_as_the_coding_tables_are_made_is_named_as_loading(photo, monkeypatch):
    """The coding tables are made at the first file coded: memory that ran out there was named as
    coding, with advice to use smaller tiles, which do not change what the tables need."""
    from nicodec import console, rans, sessions

    codec = Codec(providers="cpu")
    data = codec.encode(photo)
    for tables in (codec.model.y_tables, codec.model.z_tables):
        monkeypatch.setitem(tables.__dict__, "_cache", {})  # made anew at their next use

    def no_memory(tables):
        raise MemoryError("Unable to allocate 16.1 MiB for an array with shape (8454144,) and data type uint16")

    monkeypatch.setattr(rans, "_Coding", no_memory)
    for work in (lambda: codec.encode(photo), lambda: codec.decode(data)):
        with pytest.raises(nicodec.OutOfMemoryError, match="^out of memory while loading the model's coding tables "
                           r"\(Unable to allocate 16.1 MiB.*\); free some memory") as caught:
            work()
        assert not caught.value.tiles_help and "--tile" not in console.hinted(caught.value)
    # onnxruntime's own text of a failed allocation is left to the traceback; no tile advice either.
    failed = sessions.loading_failed("decoder.onnx", RuntimeError(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: std::bad_alloc"))
    assert str(failed).startswith("out of memory while loading decoder.onnx (onnxruntime could not allocate memory);")
    assert not failed.tiles_help and "--tile" not in console.hinted(failed)
    # Memory that runs out while an image is coded keeps its advice.
    assert "(--tile 256 sets the tile size)" in console.hinted(nicodec.OutOfMemoryError("out of memory: ..."))
