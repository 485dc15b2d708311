"""FORMAT.md against the code: files nicodec writes, read by a decoder written from FORMAT.md
alone (``spec_reader``), give nicodec's own pixels and metadata, and what one of them refuses
the other refuses too."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from nicodec import Codec
from nicodec import format as nicformat
from nicodec import text as text_section
from nicodec.errors import FormatError
from nicodec.model import default_model_dir

import spec_reader
from conftest import padded_to_64, synthetic_photo


@pytest.fixture(scope="module")
def model():
    return spec_reader.Model(str(default_model_dir()))


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def everything() -> bytes:
    """A picture that fills every section but the alpha: ICC profile, EXIF, XMP, text, density."""
    image = Image.fromarray(synthetic_photo(80, 112, seed=3))
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Someone")
    text.add_itxt("Description", "caf\u00e9 \u2603")
    text.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>')
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return png(image, pnginfo=text, icc_profile=profile, exif=exif.tobytes(), dpi=(300, 144))


def gray_alpha() -> bytes:
    photo = synthetic_photo(48, 72, seed=4)
    alpha = np.zeros(photo.shape[:2], np.uint8)
    alpha[8:40, 10:60] = 255
    alpha[20:30, 30:40] = 128
    return png(Image.fromarray(np.dstack([photo[..., 0], alpha]), "LA"))


def rgba() -> bytes:
    photo = synthetic_photo(64, 96, seed=5)
    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[:, :20] = 0
    alpha[30:, 40:] = np.arange(56, dtype=np.uint8) * 4
    return png(Image.fromarray(np.dstack([photo, alpha]), "RGBA"))


CASES = {
    "rgb": (lambda: png(Image.fromarray(synthetic_photo(64, 96))), {}),
    "quality 1": (lambda: png(Image.fromarray(synthetic_photo(64, 96))), {"quality": 1}),
    "quality 37.3": (lambda: png(Image.fromarray(synthetic_photo(64, 96))), {"quality": 37.3}),
    "quality 100": (lambda: png(Image.fromarray(synthetic_photo(64, 96))), {"quality": 100}),
    "gray": (lambda: png(Image.fromarray(synthetic_photo(64, 96)[..., 1])), {}),
    "gray and alpha": (gray_alpha, {}),
    "gray kept as RGB": (lambda: png(Image.fromarray(synthetic_photo(64, 96)[..., 1]).convert("RGB")), {}),
    "gray kept as RGBA": (lambda: png(Image.open(io.BytesIO(gray_alpha())).convert("RGBA")), {}),
    "rgba": (rgba, {}),
    "rgba, exact": (rgba, {"exact": True}),
    "every section": (everything, {}),
    "1x1": (lambda: png(Image.new("RGB", (1, 1), (200, 40, 90))), {}),
    "130x3": (lambda: png(Image.fromarray(synthetic_photo(3, 130))), {}),
}


def assert_same(read: dict, decoded: Image.Image) -> None:
    """The reader's picture and metadata are nicodec's."""
    np.testing.assert_array_equal(read["pixels"], np.asarray(decoded))
    assert read.get("text") == (getattr(decoded, "text", None) or None)
    assert read.get("ICCP") == decoded.info.get("icc_profile")
    assert read.get("EXIF") == decoded.info.get("exif")
    assert read.get("XMP") == decoded.info.get("xmp")
    if "phys" in read:
        unit, x, y = read["phys"]
        scale = 1.0 if unit == 1 else 0.0254
        assert decoded.info["dpi"] == (x * scale, y * scale)
    else:
        assert "dpi" not in decoded.info


@pytest.mark.parametrize("case", list(CASES))
def test_a_reader_written_from_format_md_decodes_nicodecs_files(codec, model, case):
    source, options = CASES[case]
    data = codec.encode(source(), **options)
    read = spec_reader.read_nic(data, model, check_reference=False)
    assert_same(read, codec.decode(data))
    if case == "every section":
        assert [tag for tag, _ in read["info"]["sections"]] == ["ZSYM", "YSYM", "ICCP", "EXIF", "XMP ", "TEXT", "PHYS"]


def test_a_tiled_encode_reads_as_the_whole_one(model):
    """Tiles are the encoder's business: the file of a tiled run is read without knowing them."""
    image = png(Image.fromarray(synthetic_photo(150, 520, seed=6)))  # the analysis in 1 x 3 windows
    data = Codec(providers="cpu", tile=64).encode(image)
    read = spec_reader.read_nic(data, model, check_reference=False)
    assert read["pixels"].shape == (150, 520, 3)
    assert data == Codec(providers="cpu").encode(image)


def test_the_integer_graph_as_format_md_describes_it_gives_the_models_probe(model):
    pytest.importorskip("onnx")
    expected = model.m["entropy_check"]["sha256"]
    assert spec_reader.probe_digest(model) == expected
    assert spec_reader.probe_digest(model, use_reference=True) == expected


def test_a_text_section_of_more_than_a_thousand_entries_is_left_out_by_both(codec, model):
    """Builds before 2026-12-03 wrote such sections: their pictures still decode, without the text."""
    entries = b"".join(bytes([len(b"k%d" % i)]) + b"k%d" % i + struct.pack("<I", 0) for i in range(1001))
    with pytest.raises(FormatError, match="more than 1,000 entries"):
        text_section.unpack(zlib.compress(entries))
    assert spec_reader.decode_text(zlib.compress(entries)) is None
    last = entries.rindex(b"\x05k1000")
    assert len(spec_reader.decode_text(zlib.compress(entries[:last]))) == 1000
    data = codec.encode(Image.fromarray(synthetic_photo(32, 48, seed=2)))
    header, sections = nicformat.unpack(data)
    older = nicformat.pack(header, {**sections, b"TEXT": zlib.compress(entries)})
    with pytest.warns(UserWarning, match="more than 1,000 entries .*; its text is left out"):
        decoded = codec.decode(older)
    assert decoded.text == {} and decoded.tobytes() == codec.decode(data).tobytes()
    read = spec_reader.read_nic(older, model, check_reference=False)
    assert not read.get("text") and np.array_equal(read["pixels"], np.asarray(decoded))


def recrc(data: bytes) -> bytes:
    """The file with its CRC made right again (a writer's fault, not the disk's)."""
    length = data[6]
    count = data[27 + length]
    table_end = 28 + length + 8 * count
    crc = zlib.crc32(data[:table_end] + data[table_end + 4:])
    return data[:table_end] + struct.pack("<I", crc) + data[table_end + 4:]


def test_what_one_refuses_the_other_refuses(codec, model):
    """Damage anywhere after the header, its CRC made right: nicodec and the reader from
    FORMAT.md both refuse the file, or both decode it to the same pixels and metadata."""
    data = codec.encode(everything(), quality=20)
    body = 32 + data[6] + 8 * data[27 + data[6]]
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(60):
        damaged = bytearray(data)
        at = int(rng.integers(body, len(data)))
        damaged[at] ^= 1 << int(rng.integers(0, 8))
        damaged = recrc(bytes(damaged))
        try:
            ours = codec.decode(damaged)
        except Exception as exc:  # noqa: BLE001 - any refusal, named or not, is compared below
            ours = exc
        try:
            theirs = spec_reader.read_nic(damaged, model, check_reference=False)
        except spec_reader.Refused as exc:
            theirs = exc
        assert isinstance(ours, Exception) == isinstance(theirs, Exception), (at, ours, theirs)
        if isinstance(ours, Exception):
            refused += 1
        else:
            assert_same(theirs, ours)
    assert 0 < refused < 60  # both kinds of outcome were compared


def test_the_flags_mean_the_same_to_both(codec, model):
    """Bit 1 (gray returned as RGB) beside bit 0 gives three equal channels, bit 0 alone one,
    bit 1 alone and any unknown bit a refusal, to nicodec and to the reader from FORMAT.md alike;
    bit 2 (padded to 16) on an image whose sides are multiples of 64 changes nothing."""
    data = codec.encode(np.repeat(synthetic_photo(64, 128)[..., 1:2], 3, axis=2))
    assert data[5] == 3
    for flags, mode in ((3, "RGB"), (1, "L"), (0, "RGB"), (7, "RGB"), (5, "L"), (4, "RGB"),
                        (2, None), (6, None), (8, None), (11, None), (0x80, None)):
        changed = bytearray(data)
        changed[5] = flags
        changed = recrc(bytes(changed))
        if mode is None:
            with pytest.raises(FormatError, match="flags"):
                codec.decode(changed)
            with pytest.raises(spec_reader.Refused):
                spec_reader.read_nic(changed, model, check_reference=False)
        else:
            decoded = codec.decode(changed)
            assert decoded.mode == mode
            assert_same(spec_reader.read_nic(changed, model, check_reference=False), decoded)
            if flags & 4:
                assert decoded.tobytes() == codec.decode(recrc(bytes([*changed[:5], flags & 3, *changed[6:]]))).tobytes()


def test_both_read_a_file_padded_to_64_and_one_padded_to_16(codec, model):
    """The same image coded both ways (nicodec before 0.7.0 padded to 64): each reads alike in both."""
    photo = synthetic_photo(70, 100, seed=8)
    fine = codec.encode(photo)
    coarse = padded_to_64(codec, photo)
    assert fine[5] == 4 and coarse[5] == 0 and len(fine) < len(coarse)
    for data, latent in ((fine, (5, 7)), (coarse, (8, 8))):
        read = spec_reader.read_nic(data, model, check_reference=False)
        assert read["y_sym"].shape[2:] == latent
        assert_same(read, codec.decode(data))
