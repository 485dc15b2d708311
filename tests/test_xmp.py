"""The XMP packet (the ``XMP `` section): read from every format Pillow finds it in, kept
without its orientation, written back by ``nicodec decode``, left out with ``strip``."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from nicodec import format as nicformat
from nicodec.cli import app

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
    exif = Image.Exif()
    exif[0x0112] = 1
    source = io.BytesIO()
    Image.fromarray(photo).save(source, "JPEG", quality=95, xmp=ROTATED, exif=exif.tobytes())
    header, sections = nicformat.unpack(codec.encode(source.getvalue()))
    assert (header.width, header.height) == (photo.shape[1], photo.shape[0])
    assert sections[b"XMP "] == PLAIN


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tiff", ".avif"])
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


def test_a_packet_that_is_not_utf8_is_left_out_of_png_only(codec, photo, tmp_path):
    """PNG keeps XMP as UTF-8 text; a UTF-16 packet (which the XMP standard allows) goes into
    the formats that take bytes."""
    utf16 = PLAIN.decode("utf-8").encode("utf-16")
    image = Image.fromarray(photo)
    image.info["xmp"] = utf16
    (tmp_path / "x.nic").write_bytes(codec.encode(image))
    for suffix, kept in ((".png", None), (".webp", utf16)):
        result = CliRunner().invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / f"x{suffix}")])
        assert result.exit_code == 0
        with Image.open(tmp_path / f"x{suffix}") as back:
            assert back.info.get("xmp") == kept
