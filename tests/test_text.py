"""Text metadata (the ``TEXT`` section): PNG's text chunks and a JPEG's or GIF's comment, kept,
written back by ``nicodec decode`` where the output holds them, warned about where it does not,
left out with ``strip``; and the section's rules, each refused with a named error."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from nicodec import format as nicformat
from nicodec import text as text_section
from nicodec.cli import app
from nicodec.errors import FormatError

ENTRIES = {
    "Author": "Ren\u00e9e Test",
    "Description": "a caption in \u4e2d\u6587 and \U0001f600",  # not Latin-1: PNG's iTXt
    "parameters": "a prompt, steps: 30, seed: 1234\n" * 100,  # long: compressed in PNG
    "Empty": "",
}


def png(photo, entries: dict[str, str], xmp: str | None = None) -> bytes:
    chunks = PngImagePlugin.PngInfo()
    for keyword, value in entries.items():
        chunks.add_text(keyword, value, zip=keyword == "parameters")
    if xmp is not None:
        chunks.add_itxt("XML:com.adobe.xmp", xmp)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=chunks)
    return buffer.getvalue()


def with_comment(photo, fmt: str, comment: bytes) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(photo)
    image = image.quantize(64) if fmt == "GIF" else image
    image.save(buffer, fmt, comment=comment, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def test_sections_round_trip_in_order():
    payload = text_section.pack(ENTRIES)
    assert list(text_section.unpack(payload).items()) == list(ENTRIES.items())
    assert zlib.decompress(payload)[:7] == b"\x06Author"  # the layout FORMAT.md gives
    assert struct.unpack_from("<I", zlib.decompress(payload), 7) == (len("Ren\u00e9e Test".encode()),)


def entry(keyword: bytes, text: bytes) -> bytes:
    return bytes([len(keyword)]) + keyword + struct.pack("<I", len(text)) + text


@pytest.mark.parametrize("payload, said", [
    (b"", "cut short"),
    (b"not zlib", "corrupt"),
    (zlib.compress(entry(b"a", b"b")) + b"x", "bytes after its end"),
    (zlib.compress(entry(b"a", b"b"))[:-3], "cut short"),
    (zlib.compress(b""), "no entry"),
    (zlib.compress(b"\x00" + struct.pack("<I", 0)), "no valid keyword"),
    (zlib.compress(bytes([80]) + b"k" * 80 + struct.pack("<I", 0)), "no valid keyword"),
    (zlib.compress(entry(b"a\0b", b"")), "no valid keyword"),
    (zlib.compress(entry(b"a", b"x") + entry(b"a", b"y")), "twice"),
    (zlib.compress(entry(b"a", b"\xff\xfe")), "not UTF-8"),
    (zlib.compress(entry(b"a", b"xyz")[:-1]), "cut short"),
    (zlib.compress(b"\x03abc\x01"), "cut short"),
    (zlib.compress(entry(b"a", b"x" * text_section.MAX_BYTES)), "more than"),
    (zlib.compress(b"".join(entry(b"k%d" % i, b"") for i in range(1001))), "more than 1,000 entries"),
])
def test_broken_sections_are_refused(payload, said):
    with pytest.raises(FormatError, match=said):
        text_section.unpack(payload)


def test_a_section_holds_at_most_a_thousand_entries():
    """libpng's default keeps 1,000 of a PNG's text chunks; more, a few bytes each, would cost a
    decoder millions of entries from 16 MiB."""
    entries = {f"k{i}": "" for i in range(text_section.MAX_ENTRIES)}
    assert text_section.unpack(text_section.pack(entries)) == entries
    entries["one more"] = ""
    with pytest.raises(ValueError, match="1,001 text entries are more than a TEXT section holds"):
        text_section.pack(entries)


def test_pack_refuses_what_the_section_cannot_hold():
    with pytest.raises(ValueError, match="at least one"):
        text_section.pack({})
    for keyword in ("", "k" * 80, "a\0b", "\u4e2d"):
        with pytest.raises(ValueError, match="keyword"):
            text_section.pack({keyword: "x"})
    with pytest.raises(ValueError, match="Unicode"):
        text_section.pack({"a": "\ud800"})
    with pytest.raises(TypeError):
        text_section.pack({"a": b"bytes"})  # type: ignore[dict-item]


def test_png_text_is_kept_and_the_xmp_chunk_is_not_repeated(codec, photo):
    data = codec.encode(png(photo, ENTRIES, xmp='<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'))
    sections = nicformat.unpack(data)[1]
    assert text_section.unpack(sections[b"TEXT"]) == ENTRIES
    assert b"xmpmeta" in sections[b"XMP "]
    decoded = codec.decode(data)
    assert decoded.text == ENTRIES
    assert codec.decode(codec.encode(decoded)).text == ENTRIES  # a decoded image's text is kept again
    commented = codec.decode(codec.encode(png(photo, {"Comment": "hi", "Author": "me"})))
    assert commented.info["comment"] == b"hi"
    del commented.text["Comment"]  # edited: the text rules, not the comment in info
    assert codec.decode(codec.encode(commented)).text == {"Author": "me"}
    assert b"TEXT" not in nicformat.unpack(codec.encode(png(photo, ENTRIES), strip=True))[1]
    assert b"TEXT" not in nicformat.unpack(codec.encode(png(photo, {})))[1]
    assert codec.decode(codec.encode(photo)).text == {}  # as Pillow's PNG images without text


@pytest.mark.parametrize("fmt", ["JPEG", "GIF"])
def test_a_comment_is_kept_as_comment(codec, photo, fmt):
    data = codec.encode(with_comment(photo, fmt, "caf\u00e9".encode()))
    decoded = codec.decode(data)
    assert decoded.text == {"Comment": "caf\u00e9"}
    assert decoded.info["comment"] == "caf\u00e9".encode()  # where Pillow's JPEG reader and writer have it
    latin = codec.encode(with_comment(photo, fmt, b"caf\xe9\0"))  # not UTF-8, and ended by a NUL
    assert codec.decode(latin).text == {"Comment": "caf\u00e9"}


def test_a_turned_image_keeps_its_text(codec, photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Author", "me")
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=chunks, exif=exif.tobytes())
    data = codec.encode(buffer.getvalue())
    header = nicformat.unpack(data)[0]
    assert (header.width, header.height) == (photo.shape[0], photo.shape[1])  # turned
    assert codec.decode(data).text == {"Author": "me"}


def test_a_png_exif_in_a_text_chunk_is_not_kept_twice(codec, photo, tmp_path):
    """ImageMagick keeps a PNG's EXIF in a text chunk, which Pillow reads as the EXIF: it is the
    EXIF section's, without the orientation applied to the pixels, and not repeated as text
    (decoded, it would turn the picture a second time)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "camera"
    raw = exif.tobytes().hex()
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Raw profile type exif", f"\nexif\n{len(raw) // 2:8d}\n{raw}\n", zip=True)
    chunks.add_text("Author", "me")
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=chunks)
    data = codec.encode(buffer.getvalue())
    header, sections = nicformat.unpack(data)
    assert (header.width, header.height) == (photo.shape[0], photo.shape[1])  # turned once
    assert text_section.unpack(sections[b"TEXT"]) == {"Author": "me"}
    (tmp_path / "x.nic").write_bytes(data)
    assert CliRunner().invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / "back.png")]).exit_code == 0
    with Image.open(tmp_path / "back.png") as back:
        assert back.getexif().get(0x010F) == "camera" and 0x0112 not in back.getexif()
        assert back.text.keys() == {"Author"}
    # ImageMagick's other raw profiles, which Pillow does not read, are kept as text.
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Raw profile type APP1", f"\nexif\n{len(raw) // 2:8d}\n{raw}\n", zip=True)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=chunks)
    assert list(codec.decode(codec.encode(buffer.getvalue())).text) == ["Raw profile type APP1"]
    # A TEXT entry under such a keyword, from another encoder, is not written into PNG either.
    text = text_section.pack({"XML:com.adobe.xmp": "<x/>", "Author": "me"})
    del sections[b"TEXT"]
    sections.update({b"XMP ": b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', b"TEXT": text})
    (tmp_path / "y.nic").write_bytes(nicformat.pack(header, sections))
    result = CliRunner().invoke(app, ["decode", str(tmp_path / "y.nic"), "-o", str(tmp_path / "y.png")])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    assert (tmp_path / "y.png").read_bytes().count(b"XML:com.adobe.xmp") == 1


def test_a_text_longer_than_pillow_inflates_is_written_uncompressed(codec, photo):
    from nicodec import outputs

    long = "workflow " * (1 << 17)  # 1.1 MiB: Pillow refuses compressed chunks beyond 1 MiB
    decoded = codec.decode(codec.encode(png(photo, {"workflow": long, "parameters": "x" * 5000})))
    buffer = io.BytesIO()
    outputs.save(decoded, buffer, "PNG")
    assert b"zTXtparameters" in buffer.getvalue() and b"tEXtworkflow" in buffer.getvalue()
    with Image.open(io.BytesIO(buffer.getvalue())) as back:
        back.load()
        assert back.text["workflow"] == long
    assert codec.decode(codec.encode(buffer.getvalue())).text["workflow"] == long


def test_entries_the_section_cannot_hold_are_left_out_with_a_warning(codec, photo):
    image = Image.fromarray(photo)
    image.text = {"k" * 80: "too long a keyword", "\u4e2d": "not Latin-1", "fine": "kept"}  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="cannot be kept") as caught:
        data = codec.encode(image)
    assert "'kkkk" in str(caught[0].message) and "'\u4e2d'" in str(caught[0].message)
    assert codec.decode(data).text == {"fine": "kept"}
    image.text = {"Author": b"bytes", "n": None, 1: "an int keyword", "fine": "kept"}  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="under 'Author', 'n' and '1' cannot be kept"):
        data = codec.encode(image)
    assert codec.decode(data).text == {"fine": "kept"}
    image.text = {f"k{i}": "\ud800" for i in range(9)}  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="'k5' and 3 more cannot"):
        assert b"TEXT" not in nicformat.unpack(codec.encode(image))[1]
    image.text = {"big": "x" * text_section.MAX_BYTES}  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="none of it is kept"):
        data = codec.encode(image)
    assert b"TEXT" not in nicformat.unpack(data)[1]
    image.text = {f"k{i}": "x" for i in range(1001)}  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="has 1,001 entries, more than a .nic file holds \\(1,000\\); none of it"):
        data = codec.encode(image)
    assert b"TEXT" not in nicformat.unpack(data)[1]
    del image.text["k0"]  # type: ignore[attr-defined]
    assert len(codec.decode(codec.encode(image)).text) == 1000


def test_decode_writes_text_into_png_and_the_comment_into_jpeg(codec, photo, tmp_path):
    (tmp_path / "x.png").write_bytes(png(photo, {**ENTRIES, "Comment": "hello"}))
    runner = CliRunner()
    assert runner.invoke(app, ["encode", str(tmp_path / "x.png"), "-o", str(tmp_path / "x.nic")]).exit_code == 0
    result = runner.invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / "back.png")])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    with Image.open(tmp_path / "back.png") as back:
        assert back.text == {**ENTRIES, "Comment": "hello"}
    result = runner.invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / "back.jpg")])
    assert result.exit_code == 0
    assert ('warning: back.jpg will have no text "Author", "Description", "parameters" and "Empty": JPEG keeps a '
            "Comment alone") in result.stderr, result.stderr
    with Image.open(tmp_path / "back.jpg") as back:
        assert back.info["comment"] == b"hello"
    result = runner.invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / "back.webp")])
    assert result.exit_code == 0
    assert ('warning: back.webp will have no text "Author", "Description", "parameters", "Empty" and "Comment": '
            "WEBP keeps no text") in result.stderr, result.stderr
    result = runner.invoke(app, ["encode", str(tmp_path / "x.png"), "-o", str(tmp_path / "s.nic"), "--strip"])
    assert result.exit_code == 0 and b"TEXT" not in nicformat.unpack((tmp_path / "s.nic").read_bytes())[1]


def test_a_comment_longer_than_a_jpeg_segment_is_left_out_with_a_warning(codec, photo, tmp_path):
    image = Image.fromarray(photo)
    image.text = {"Comment": "c" * 70_000}  # type: ignore[attr-defined]
    (tmp_path / "x.nic").write_bytes(codec.encode(image))
    result = CliRunner().invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / "x.jpg")])
    assert result.exit_code == 0 and "will have no text \"Comment\": its 70,000 bytes" in result.stderr, result.stderr
    with Image.open(tmp_path / "x.jpg") as back:
        assert "comment" not in back.info


def test_the_pillow_plugin_reads_and_keeps_text(codec, photo, tmp_path):
    from nicodec import pillow_plugin

    pillow_plugin.register(codec)
    with Image.open(io.BytesIO(png(photo, ENTRIES))) as source:
        source.save(tmp_path / "x.nic")
    with Image.open(tmp_path / "x.nic") as opened:
        assert opened.text == ENTRIES  # from the header, before decoding
        opened.load()
        buffer = io.BytesIO()
        opened.save(buffer, "NIC")
    assert codec.decode(buffer.getvalue()).text == ENTRIES
    with Image.open(io.BytesIO(codec.encode(photo))) as plain:
        assert plain.text == {}
    with Image.open(io.BytesIO(png(photo, {"Author": "me", "Comment": "hi"}))) as source:
        buffer = io.BytesIO()
        source.save(buffer, "NIC", xmp=None, exif=b"")  # replacing metadata copies the image: text stays
    assert codec.decode(buffer.getvalue()).text == {"Author": "me", "Comment": "hi"}
    with Image.open(buffer) as opened:
        assert opened.info["comment"] == b"hi"  # as Pillow's JPEG reader has it


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_the_pillow_plugin_takes_a_comment_as_pillows_jpeg_writer_does(codec, photo, fmt):
    """save(..., comment=...) was ignored, where Pillow's JPEG writer takes it (a reviewer of the
    plugin against Pillow's conventions): it replaces the image's comment, None removes it, and
    the rest of the text stays."""
    from nicodec import pillow_plugin

    pillow_plugin.register(codec)
    source = png(photo, {"Author": "me", "Comment": "old"}) if fmt == "PNG" else with_comment(photo, fmt, b"old")
    kept = {"Author": "me"} if fmt == "PNG" else {}
    for given, comment in (("new", "new"), ("caf\u00e9".encode(), "caf\u00e9"), (b"caf\xe9", "caf\u00e9"), (None, None)):
        buffer = io.BytesIO()
        with Image.open(io.BytesIO(source)) as image:
            image.save(buffer, "NIC", comment=given)
        decoded = codec.decode(buffer.getvalue())
        assert decoded.text == {**kept, **({"Comment": comment} if comment else {})}, given
        assert decoded.info.get("comment") == (comment.encode() if comment else None)
    with Image.open(io.BytesIO(source)) as image, pytest.raises(ValueError, match="comment must be str or bytes"):
        image.save(io.BytesIO(), "NIC", comment=3)
    with Image.open(io.BytesIO(source)) as image, pytest.raises(ValueError, match="comment must be text UTF-8"):
        image.save(io.BytesIO(), "NIC", comment="\udcff")


def test_a_damaged_text_section_is_found_before_decoding(codec, photo, tmp_path):
    header, sections = nicformat.unpack(codec.encode(png(photo, {"a": "b"})))
    sections[b"TEXT"] = zlib.compress(entry(b"a", b"x") + entry(b"a", b"y"))
    data = nicformat.pack(header, sections)  # a valid CRC: an encoder's fault, not the disk's
    with pytest.raises(FormatError, match="twice"):
        codec.decode_symbols(data)  # what nicodec verify runs
    (tmp_path / "bad.nic").write_bytes(data)
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "bad.nic")])
    assert result.exit_code != 0 and "twice" in result.output + result.stderr


def test_text_comes_after_xmp_in_the_section_table(codec, photo):
    header, sections = nicformat.unpack(codec.encode(png(photo, {"a": "b"}, xmp="<x/>")))
    assert list(sections)[-2:] == [b"XMP ", b"TEXT"]
    swapped = {k: v for k, v in sections.items() if k not in (b"XMP ", b"TEXT")}
    swapped.update({b"TEXT": sections[b"TEXT"], b"XMP ": sections[b"XMP "]})
    with pytest.raises(FormatError, match="TEXT and PHYS in that order"):
        nicformat.unpack(nicformat.pack(header, swapped))


def test_the_probe_of_what_formats_keep():
    from nicodec import outputs

    outputs.kept_metadata.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the probe warns of nothing
        filters = list(warnings.filters)
        assert "text" in outputs.kept_metadata("PNG")
        assert "comment" in outputs.kept_metadata("JPEG") and "text" not in outputs.kept_metadata("JPEG")
        assert not {"text", "comment"} & outputs.kept_metadata("BMP")
        assert "comment" in outputs.kept_metadata("GIF")  # Pillow's writer takes info["comment"]
        assert warnings.filters == filters  # the process's filters, which threads share, untouched


CAPTION = b"\x1c\x02\x78\x00\x07caption"  # record 2, dataset 120 (caption)
ENVELOPE = b"\x1c\x01\x5a\x00\x03\x1b%G" + b"\x1c\x02\x00\x00\x02\x00\x04"  # character set, record version


def jpeg_with_iptc(photo, iptc: bytes = CAPTION) -> bytes:
    """A JPEG with an APP13 segment holding IPTC data, as Photoshop writes one."""
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(iptc)) + iptc + b"\0" * (len(iptc) % 2)
    body = b"Photoshop 3.0\0" + resource
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    return data[:2] + b"\xff\xed" + struct.pack(">H", len(body) + 2) + body + data[2:]


def test_iptc_data_and_a_png_gamma_and_chromaticities_are_warned_of(codec, photo):
    with pytest.warns(UserWarning, match="its IPTC data is not kept"):
        codec.encode(jpeg_with_iptc(photo))
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "TIFF", tiffinfo={33723: b"\x1c\x02\x78\x00\x07caption"})
    with pytest.warns(UserWarning, match="its IPTC data"):
        codec.encode(buffer.getvalue())
    linear = PngImagePlugin.PngInfo()
    linear.add(b"gAMA", struct.pack(">I", 100000))  # gamma 1.0
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=linear)
    with pytest.warns(UserWarning, match=r"its gamma \(PNG gAMA 1\) is not kept"):
        codec.encode(buffer.getvalue())
    wide = PngImagePlugin.PngInfo()  # Adobe RGB (1998)'s primaries, sRGB's white
    wide.add(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 21000, 71000, 15000, 6000))
    chromaticities = io.BytesIO()
    Image.fromarray(photo).save(chromaticities, "PNG", pnginfo=wide)
    with pytest.warns(UserWarning, match=r"its primaries and white point \(PNG cHRM\) are not kept"):
        codec.encode(chromaticities.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none for the rest: nothing is lost
        codec.encode(jpeg_with_iptc(photo, ENVELOPE))  # what Photoshop writes on every save
        codec.encode(jpeg_with_iptc(photo, b""))
        codec.encode(buffer.getvalue(), strip=True)
        srgb = PngImagePlugin.PngInfo()
        srgb.add(b"gAMA", struct.pack(">I", 45455))
        srgb.add(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))  # libpng's
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, "PNG", pnginfo=srgb)
        codec.encode(buffer.getvalue())
        codec.encode(png(photo, ENTRIES))


def test_warnings_of_what_is_not_kept_name_the_callers_line(codec, photo):
    """They named lines of nicodec's images.py and codec.py: an application could neither filter
    them by its own module nor find in its logs where they came from."""
    linear = PngImagePlugin.PngInfo()
    linear.add(b"gAMA", struct.pack(">I", 100000))
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=linear)
    low = Image.fromarray(np.full((32, 48), 200, np.uint16))  # 16-bit, every sample below 256
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codec.encode(buffer.getvalue())
        codec.encode(jpeg_with_iptc(photo))
        codec.encode(low)
    assert len(caught) >= 3 and [w.filename for w in caught] == [__file__] * len(caught), \
        [(w.filename, w.lineno, str(w.message)[:40]) for w in caught]


def test_text_pillow_refuses_to_read_is_left_out_and_the_image_kept(codec, photo, tmp_path):
    """Pillow reads no PNG text chunk that inflates past 1 MiB, nor more than 64 MiB of text in
    all (its guards against decompression bombs), and refused the whole image; it is opened
    again without that text, with a warning."""
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Author", "me")
    chunks.add_text("workflow", "a node graph\n" * 200_000, zip=True)  # 2.6 MB
    chunks.add_itxt(text_section.XMP_KEYWORD, '<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=chunks)
    (tmp_path / "big.png").write_bytes(buffer.getvalue())
    for source in (tmp_path / "big.png", buffer.getvalue()):
        with pytest.warns(UserWarning, match=r"its text under 'workflow' is not kept: Pillow reads no text chunk "
                                             r"that inflates past 1 MiB"):
            decoded = codec.decode(codec.encode(source))
        assert decoded.text == {"Author": "me"} and decoded.info["xmp"] == b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    many = PngImagePlugin.PngInfo()
    many.add_text("Author", "me")
    for number in range(70):  # 70 MB in all (more than 64 MiB), each under 1 MiB
        many.add_text(f"part {number}", "x" * 1_000_000, zip=True)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG", pnginfo=many)
    with pytest.warns(UserWarning, match=r"its text .* is not kept: Pillow reads at most 64 MiB of text in all"):
        decoded = codec.decode(codec.encode(buffer.getvalue()))
    assert decoded.text == {}
    result = CliRunner().invoke(app, ["encode", str(tmp_path / "big.png"), "-o", str(tmp_path / "big.nic")])
    assert result.exit_code == 0 and "is not kept: Pillow reads no text chunk" in result.stderr, result.stderr


def test_a_png_profile_pillow_refuses_to_inflate_is_read_and_kept(codec, photo, tmp_path):
    """Pillow inflates no iCCP chunk past 1 MiB either (its text limit), and refused the whole
    image with a message about text, though the profiles of printers and scanners with large
    lookup tables take a few: nicodec reads it itself, and keeps it, as JPEG's, TIFF's and
    WebP's are kept. Decoded to TIFF it is written back; to PNG it is left out, with a warning,
    since Pillow would refuse the PNG (and so do programs built on it)."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    large = srgb + np.random.default_rng(0).integers(0, 256, 1_500_000, dtype=np.uint8).tobytes()  # a private tag's
    path = tmp_path / "large-profile.png"
    Image.fromarray(photo).save(path, icc_profile=large)
    with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"), Image.open(path) as refused:
        refused.load()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = codec.encode(path)
    assert nicformat.unpack(data)[1][b"ICCP"] == large
    result = CliRunner().invoke(app, ["decode", "-", "-o", str(tmp_path / "back.tiff")], input=data)
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    with Image.open(tmp_path / "back.tiff") as back:
        assert back.info["icc_profile"] == large
    result = CliRunner().invoke(app, ["decode", "-", "-o", str(tmp_path / "back.png")], input=data)
    assert result.exit_code == 0, result.output
    assert (f"warning: back.png will have no ICC profile: its {len(large):,} bytes are more than the 1,048,576 "
            "Pillow reads in a PNG (it refuses the whole file); .tiff and .webp keep it") in result.stderr
    with Image.open(tmp_path / "back.png") as back:
        assert "icc_profile" not in back.info


def test_a_profile_longer_than_a_jpeg_holds_is_left_out_with_a_warning(codec, photo, tmp_path):
    """A JPEG holds a profile in at most 255 segments (a one-byte count) of 65,519 bytes: Pillow
    wrote a longer one with its count wrapped, and no reader took it. It is left out, with a
    warning, as a too long EXIF or XMP is."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.fromarray(photo)
    image.info["icc_profile"] = srgb + bytes(255 * 65_519 + 1 - len(srgb))  # an RGB profile's header
    data = codec.encode(image)
    result = CliRunner().invoke(app, ["decode", "-", "-o", str(tmp_path / "back.jpg")], input=data)
    assert result.exit_code == 0, result.output
    assert ("warning: back.jpg will have no ICC profile: its 16,707,346 bytes are more than a JPEG's 255 profile "
            "segments hold (16,707,345)") in result.stderr, result.stderr
    with Image.open(tmp_path / "back.jpg") as back:
        assert "icc_profile" not in back.info
