"""The XMP packet (the ``XMP `` section): read from every format Pillow finds it in, kept
without its orientation, written back by ``nicodec decode``, left out with ``strip``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps, PngImagePlugin, features
from typer.testing import CliRunner

from nicodec import format as nicformat
from nicodec.cli import app

from conftest import opened

XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"{orientation}>'
    "<dc:rights>\u00a9 Ren\u00e9e Test</dc:rights></rdf:Description></rdf:RDF></x:xmpmeta>"
    '<?xpacket end="w"?>'
)
PLAIN = XMP.format(orientation="").encode("utf-8")
ROTATED = XMP.format(orientation=' tiff:Orientation="6"').encode("utf-8")


def with_xmp(photo, fmt: str, xmp: bytes) -> bytes:
    """An image file in ``fmt`` carrying ``xmp`` where that format keeps it."""
    image, buffer = Image.fromarray(photo), io.BytesIO()
    if fmt == "PNG":
        chunks = PngImagePlugin.PngInfo()
        chunks.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        image.save(buffer, "PNG", pnginfo=chunks)
    elif fmt == "TIFF":
        image.save(buffer, "TIFF", tiffinfo={700: xmp})
    else:
        image.save(buffer, fmt, xmp=xmp, **({"quality": 95} if fmt == "JPEG" else {"lossless": True}))
    return buffer.getvalue()


def jpeg(photo, xmp: bytes | None = None, orientation: int | None = None) -> bytes:
    """A JPEG of the photo with an XMP packet and an EXIF orientation, each where given."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=95, exif=exif.tobytes(), **({"xmp": xmp} if xmp else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_the_xmp_packet_is_kept_from_each_format(codec, photo, fmt):
    data = codec.encode(with_xmp(photo, fmt, PLAIN))
    sections = nicformat.unpack(data)[1]
    assert sections[b"XMP "] == PLAIN
    assert b"EXIF" not in sections  # a TIFF's tag 700 is not kept twice
    assert codec.decode(data).info["xmp"] == PLAIN
    assert b"XMP " not in nicformat.unpack(codec.encode(with_xmp(photo, fmt, PLAIN), strip=True))[1]


def test_an_xmp_orientation_is_applied_and_removed(codec, photo):
    """Pillow turns a JPEG by its XMP tiff:Orientation when the EXIF has none; the packet kept
    must not say so any more, or a viewer reading it would turn the upright pixels again."""
    data = codec.encode(with_xmp(photo, "JPEG", ROTATED))
    header, sections = nicformat.unpack(data)
    assert (header.width, header.height) == (photo.shape[0], photo.shape[1])
    assert sections[b"XMP "].replace(b" >", b">") == PLAIN  # Pillow's exif_transpose leaves a space
    image = Image.fromarray(photo)
    image.info["xmp"] = ROTATED  # a caller's image, turned the same way (and left as it was)
    header, sections = nicformat.unpack(codec.encode(image))
    assert (header.width, header.height) == (photo.shape[0], photo.shape[1])
    assert sections[b"XMP "].replace(b" >", b">") == PLAIN and image.info["xmp"] == ROTATED
    # An EXIF orientation of 1 rules over the XMP's (Pillow's getexif), so nothing is turned,
    # and the XMP's is removed all the same.
    header, sections = nicformat.unpack(codec.encode(jpeg(photo, ROTATED, orientation=1)))
    assert (header.width, header.height) == (photo.shape[1], photo.shape[0])
    assert sections[b"XMP "] == PLAIN


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff", *(pytest.param(
    suffix, marks=pytest.mark.skipif(not features.check(module), reason=f"Pillow built without {module}"))
    for suffix, module in ((".webp", "webp"), (".avif", "avif")))])
def test_decode_writes_the_packet_back(codec, photo, tmp_path, suffix):
    source = tmp_path / "source.jpg"
    exif = Image.Exif()
    exif[0x010F] = "nicodec test camera"
    Image.fromarray(photo).save(source, quality=95, xmp=PLAIN, exif=exif.tobytes())
    runner = CliRunner()
    assert runner.invoke(app, ["encode", str(source), "-o", str(tmp_path / "x.nic")]).exit_code == 0
    result = runner.invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / f"back{suffix}")])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    with Image.open(tmp_path / f"back{suffix}") as back:
        assert back.info["xmp"] == PLAIN
        assert back.getexif()[0x010F] == "nicodec test camera"


def test_decoding_to_a_format_without_xmp_says_so(codec, photo, tmp_path):
    (tmp_path / "x.nic").write_bytes(codec.encode(with_xmp(photo, "JPEG", PLAIN)))
    result = CliRunner().invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / "x.bmp")])
    assert result.exit_code == 0
    assert "warning: x.bmp will have no XMP data: BMP does not keep it" in result.stderr


def test_a_utf16_packet_goes_into_png_as_utf8_and_bytes_elsewhere(codec, photo, tmp_path):
    """PNG keeps XMP as UTF-8 text; a UTF-16 packet (which the XMP standard allows) is turned into
    it there, and goes as it is into the formats that take bytes."""
    utf16 = PLAIN.decode("utf-8").encode("utf-16")
    image = Image.fromarray(photo)
    image.info["xmp"] = utf16
    (tmp_path / "x.nic").write_bytes(codec.encode(image))
    for suffix, kept in ((".png", PLAIN), (".webp", utf16)):
        result = CliRunner().invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / f"x{suffix}")])
        assert result.exit_code == 0 and "warning" not in result.stderr
        with Image.open(tmp_path / f"x{suffix}") as back:
            assert back.info.get("xmp") == kept


def test_a_packet_that_does_not_fit_is_left_out_with_a_warning(codec, photo, tmp_path):
    long = PLAIN.replace(b"</rdf:RDF>", b"<!--" + b"x" * 70_000 + b"--></rdf:RDF>")  # Photoshop's histories grow so
    latin1 = b"\xff\xfe\xfd not Unicode"
    cases = (("long", long, ".jpg", "XMP data: its 70,"), ("odd", latin1, ".png", "XMP data: PNG holds it as Unicode text"))
    for name, packet, suffix, said in cases:
        image = Image.fromarray(photo)
        image.info["xmp"] = packet
        (tmp_path / f"{name}.nic").write_bytes(codec.encode(image))
        target = tmp_path / f"{name}{suffix}"
        result = CliRunner().invoke(app, ["decode", str(tmp_path / f"{name}.nic"), "-o", str(target)])
        assert result.exit_code == 0 and f"warning: {target.name} will have no {said}" in result.stderr
        with Image.open(target) as back:
            assert "xmp" not in back.info
    assert CliRunner().invoke(app, ["decode", str(tmp_path / "long.nic"), "-o", str(tmp_path / "long.webp")]).exit_code == 0
    assert opened(tmp_path / "long.webp").info["xmp"] == long


@pytest.mark.parametrize("form", [
    " tiff:Orientation='6'", ' tiff:Orientation = "6"', ' tiff:Orientation=" 6 "',
    "><tiff:Orientation>\n 6\n</tiff:Orientation></rdf:Description><rdf:Description rdf:about=''",
])
def test_xmp_orientations_pillow_does_not_read_are_kept_as_they_are(codec, photo, form):
    """Pillow applies an XMP orientation written as ="6" or >6< only; nicodec applies what Pillow
    does, so the picture looks as the source does, and keeps the other forms for the viewers
    that read them (turning them would turn twice where Pillow or the caller already had)."""
    packet = XMP.format(orientation=form).encode()
    header, sections = nicformat.unpack(codec.encode(jpeg(photo, packet)))
    assert (header.width, header.height) == (photo.shape[1], photo.shape[0])
    assert sections[b"XMP "] == packet
    # With an EXIF orientation, which is applied, every form of the XMP's goes.
    source = jpeg(photo, packet, orientation=6)
    header, sections = nicformat.unpack(codec.encode(source))
    assert (header.width, header.height) == (photo.shape[0], photo.shape[1])
    assert b"Orientation" not in sections[b"XMP "]
    # A caller's image already turned by Pillow's exif_transpose, which left this form in its
    # XMP: not turned again (what stays in the XMP, nicodec cannot tell from an unturned one).
    turned = ImageOps.exif_transpose(Image.open(io.BytesIO(source)))
    header = nicformat.unpack(codec.encode(turned))[0]
    assert (header.width, header.height) == (photo.shape[0], photo.shape[1])


def test_a_tiffs_photoshop_data_stays_out_of_the_exif_and_long_exif_skips_jpeg(codec, photo, tmp_path):
    """A TIFF's own directory holds Photoshop's layers and resources (megabytes, at times): the
    EXIF kept has a camera's tags only. EXIF too long for a JPEG segment is left out of a .jpg
    with a warning, not a failed decode."""
    buffer = io.BytesIO()
    layers = bytes(300_000)
    Image.fromarray(photo).save(buffer, "TIFF", tiffinfo={271: "nicodec test camera", 37724: layers, 34377: bytes(2000)})
    exif = Image.Exif()
    exif.load(nicformat.unpack(codec.encode(buffer.getvalue()))[1][b"EXIF"])
    assert dict(exif) == {271: "nicodec test camera"}
    image = Image.fromarray(photo)
    long = Image.Exif()
    long[0x010E] = "x" * 70_000  # ImageDescription
    image.info["exif"] = long.tobytes()
    (tmp_path / "long.nic").write_bytes(codec.encode(image))
    result = CliRunner().invoke(app, ["decode", str(tmp_path / "long.nic"), "-o", str(tmp_path / "long.jpg")])
    assert result.exit_code == 0 and "will have no EXIF data: its 70," in result.stderr, result.stderr
    assert (tmp_path / "long.jpg").is_file()


def test_xmp_from_a_png_text_chunk_keeps_its_bytes(codec, photo):
    """tEXt and zTXt hold Latin-1, which Pillow decodes to text: its bytes come back as they were."""
    for chunk in ("add_text", "add_ztxt"):
        chunks = PngImagePlugin.PngInfo()
        if chunk == "add_text":
            chunks.add_text("XML:com.adobe.xmp", PLAIN.decode("latin-1"))
        else:
            chunks.add_text("XML:com.adobe.xmp", PLAIN.decode("latin-1"), zip=True)
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, "PNG", pnginfo=chunks)
        assert nicformat.unpack(codec.encode(buffer.getvalue()))[1][b"XMP "] == PLAIN


def test_a_tiffs_exif_keeps_its_camera_tags_and_not_its_layout(codec, photo):
    """getexif() of a TIFF gives its own layout tags (sizes, strips, ...) beside the camera's:
    only the camera's are kept, from a path or bytes as from a PIL image."""
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "TIFF", tiffinfo={271: "nicodec test camera", 700: PLAIN})
    for source in (buffer.getvalue(), Image.open(io.BytesIO(buffer.getvalue()))):
        sections = nicformat.unpack(codec.encode(source))[1]
        exif = Image.Exif()
        exif.load(sections[b"EXIF"])
        assert dict(exif) == {271: "nicodec test camera"} and sections[b"XMP "] == PLAIN


def test_the_plugins_xmp_option_does_not_change_how_the_picture_is_turned(codec, photo):
    """The picture is turned upright by its own orientation before xmp= (or exif=) replaces the
    metadata it came from."""
    from nicodec import pillow_plugin

    pillow_plugin.register(codec)  # conftest's _pillow_plugin_as_it_was takes it out afterwards

    def saved_size(source: bytes, **options) -> tuple[int, int]:
        saved = io.BytesIO()
        Image.open(io.BytesIO(source)).save(saved, format="NIC", **options)
        header = nicformat.unpack(saved.getvalue())[0]
        return header.width, header.height

    for options in ({}, {"xmp": None}, {"xmp": PLAIN}, {"exif": b""}):
        assert saved_size(jpeg(photo, ROTATED), **options) == (photo.shape[0], photo.shape[1]), options
    # An orientation Pillow does not read turns nothing, whatever option is given; an EXIF
    # given replaces the image's own, which it was turned by.
    unread = jpeg(photo, XMP.format(orientation=" tiff:Orientation='6'").encode())
    for options in ({}, {"exif": Image.Exif()}, {"icc_profile": None}):
        assert saved_size(unread, **options) == (photo.shape[1], photo.shape[0]), options
    exif, replaced = Image.Exif(), Image.Exif()
    exif[0x0112], exif[0x010F], replaced[0x010F] = 6, "camera", "replaced"
    source = io.BytesIO()
    Image.fromarray(photo).save(source, "JPEG", quality=95, exif=exif.tobytes())
    saved = io.BytesIO()
    Image.open(io.BytesIO(source.getvalue())).save(saved, format="NIC", exif=replaced)
    header, sections = nicformat.unpack(saved.getvalue())
    kept = Image.Exif()
    kept.load(sections[b"EXIF"])
    assert (header.width, header.height) == (photo.shape[0], photo.shape[1]) and dict(kept) == {0x010F: "replaced"}


def test_folder_and_stdout_decodes_warn_of_what_png_leaves_out(codec, photo, tmp_path):
    image = Image.fromarray(photo)
    image.info["xmp"] = b"\xff\xfe\xfd not Unicode"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "odd.nic").write_bytes(codec.encode(image))
    (tmp_path / "in" / "plain.nic").write_bytes(codec.encode(photo))
    result = CliRunner().invoke(app, ["decode", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0 and (tmp_path / "out" / "odd.png").is_file()
    assert "odd.png has no XMP data: PNG holds it as Unicode text" in result.stderr
    assert "plain" not in result.stderr
    result = CliRunner().invoke(app, ["decode", str(tmp_path / "in" / "odd.nic"), "-o", "-"])
    assert result.exit_code == 0 and "warning: the output will have no XMP data: PNG holds it" in result.stderr


@pytest.mark.parametrize("exif", [b"garbage exif", b"Exif\0\0", b"Exif\0\0garbage"])
def test_exif_that_is_no_tiff_structure_is_left_out_of_formats_that_read_it(codec, photo, tmp_path, exif):
    """Another encoder's .nic file may carry EXIF that is not the TIFF structure FORMAT.md names
    (nicodec's own encoder leaves such EXIF out): it verified and decoded to PNG, but decoding to
    TIFF or AVIF failed after the whole decode. It is left out of those, with a warning first,
    and kept as it is by PNG."""
    header, sections = nicformat.unpack(codec.encode(photo))
    (tmp_path / "odd.nic").write_bytes(nicformat.pack(header, {**sections, b"EXIF": exif}))
    Image.init()
    runner = CliRunner()
    for suffix in (".tiff", ".avif", ".png"):
        if suffix == ".avif" and "AVIF" not in Image.SAVE:
            continue
        target = tmp_path / f"odd{suffix}"
        result = runner.invoke(app, ["decode", str(tmp_path / "odd.nic"), "-o", str(target)])
        assert result.exit_code == 0, result.output
        with Image.open(target) as back:
            if suffix == ".png":
                assert "warning" not in result.stderr
                assert back.info["exif"].removeprefix(b"Exif\0\0") == exif.removeprefix(b"Exif\0\0")
            else:
                assert result.stderr.startswith(f"warning: odd{suffix} will have no EXIF data: {back.format} reads it "
                                                "as a TIFF structure (after Exif\\0\\0), and it is not one")
                assert not back.info.get("exif")


def test_a_packet_of_white_space_costs_time_in_proportion_to_its_length(photo, tmp_path):
    """The orientation's pattern was tried from each character of a run of white space, which
    took time as the square of its length: a 1 KB PNG (an EXIF orientation and a megabyte of
    spaces in a compressed XMP chunk) kept an encode busy for about a quarter of an hour. Run in
    a process of its own with a generous limit, so that a regression fails instead of hanging:
    the encode takes about a second."""
    import subprocess
    import sys

    exif = Image.Exif()
    exif[0x0112] = 6
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("XML:com.adobe.xmp", "<x:xmpmeta>" + " " * 1_000_000 + "</x:xmpmeta>", zip=True)
    source = tmp_path / "spaces.png"
    Image.fromarray(photo[:8, :16]).save(source, pnginfo=chunks, exif=exif.tobytes())
    assert source.stat().st_size < 3000
    done = subprocess.run([sys.executable, "-m", "nicodec", "encode", str(source)], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    header, sections = nicformat.unpack((tmp_path / "spaces.nic").read_bytes())
    assert (header.width, header.height) == (8, 16)  # turned by the orientation
    assert len(sections[b"XMP "]) == 1_000_000 + len("<x:xmpmeta></x:xmpmeta>")


def test_exif_the_tiff_writer_cannot_pack_is_left_out_of_tiff(codec, photo, tmp_path):
    """A TIFF structure Pillow reads, with an entry whose value its TIFF writer cannot pack
    (CellLength, a number, given as text): the file verified, decoded to PNG, and failed as an
    "internal error" (struct.error) decoding to TIFF. It is left out of TIFF with a warning."""
    import struct

    exif = (b"Exif\0\0MM\0*" + struct.pack(">IH", 8, 1) + struct.pack(">HHI4s", 0x0109, 2, 3, b"sw\0\0")
            + struct.pack(">I", 0))
    header, sections = nicformat.unpack(codec.encode(photo))
    (tmp_path / "odd.nic").write_bytes(nicformat.pack(header, {**sections, b"EXIF": exif}))
    runner = CliRunner()
    assert runner.invoke(app, ["verify", str(tmp_path / "odd.nic")]).exit_code == 0
    result = runner.invoke(app, ["decode", str(tmp_path / "odd.nic"), "-o", str(tmp_path / "odd.tiff")])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: odd.tiff will have no EXIF data: TIFF reads it as a TIFF structure "
                                    "(after Exif\\0\\0), and it is not one Pillow can write")
    with Image.open(tmp_path / "odd.tiff") as back:
        assert not back.info.get("exif") and back.size == (photo.shape[1], photo.shape[0])
    result = runner.invoke(app, ["decode", str(tmp_path / "odd.nic"), "-o", str(tmp_path / "odd.png")])
    assert result.exit_code == 0 and "warning" not in result.stderr
    with Image.open(tmp_path / "odd.png") as back:
        assert back.info["exif"].removeprefix(b"Exif\0\0") == exif.removeprefix(b"Exif\0\0")


@pytest.mark.parametrize("gray", [False, True])
def test_exif_layout_tags_of_another_image_do_not_reach_the_tiff(codec, photo, tmp_path, gray):
    """An EXIF ImageWidth (256) of 5 failed the write ("codec configuration error"), a larger
    one wrote a truncated TIFF, a SamplesPerPixel (277) given as text failed a gray decode; the
    writer takes such tags from the EXIF into the TIFF's own IFD. They are left out of it."""
    import struct

    def ifd(entries):
        body = struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHI4s", *entry) for entry in entries)
        return b"Exif\0\0MM\0*" + struct.pack(">I", 8) + body + struct.pack(">I", 0)

    exif = ifd([(256, 3, 1, struct.pack(">HH", 5, 0)), (257, 4, 1, struct.pack(">I", 3000)),
                (271, 2, 4, b"Cam\0"), (277, 2, 2, b"x\0\0\0")])
    source = photo[:, :, 0] if gray else photo
    header, sections = nicformat.unpack(codec.encode(source))
    (tmp_path / "odd.nic").write_bytes(nicformat.pack(header, {**sections, b"EXIF": exif}))
    result = CliRunner().invoke(app, ["decode", str(tmp_path / "odd.nic"), "-o", str(tmp_path / "odd.tiff")])
    assert result.exit_code == 0 and result.stderr == "", result.output
    with Image.open(tmp_path / "odd.tiff") as back:
        back.load()
        assert back.size == (photo.shape[1], photo.shape[0]) and back.mode == ("L" if gray else "RGB")
        assert back.getexif().get(271) == "Cam"
        assert np.array_equal(np.asarray(back), codec.decode(tmp_path / "odd.nic", as_array=True))
