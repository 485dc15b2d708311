"""The resolution (the ``PHYS`` section): the pixel density Pillow reads as ``info["dpi"]``
from PNG, JPEG, TIFF and BMP, kept exactly in the unit it came in, turned with the pixels,
written back by ``nicodec decode`` where the output holds it, read and written by the Pillow
plugin, left out with ``strip``; and the section's rules, each refused with a named error."""

from __future__ import annotations

import io
import json
import math
import struct

import pytest
from PIL import Image
from typer.testing import CliRunner

from nicodec import format as nicformat
from nicodec import resolution
from nicodec.cli import app
from nicodec.errors import FormatError
from nicodec.resolution import PER_INCH, PER_METRE, Resolution

from conftest import synthetic_photo


def saved(photo, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, fmt, **options)
    return buffer.getvalue()


def density(data: bytes) -> Resolution | None:
    payload = nicformat.unpack(data)[1].get(resolution.TAG)
    return None if payload is None else resolution.unpack(payload)


@pytest.mark.parametrize("dpi, kept", [
    ((300, 150), Resolution(PER_INCH, 300, 150)),  # JPEG's JFIF, as Pillow reads it
    ((300.0, 72.0), Resolution(PER_INCH, 300, 72)),  # TIFF's
    ((11811 * 0.0254, 5669 * 0.0254), Resolution(PER_METRE, 11811, 5669)),  # PNG's pHYs (300, 144 dpi)
    ((11811 / 39.3701, 3780 / 39.3701), Resolution(PER_METRE, 11811, 3780)),  # BMP's
    ((118 * 2.54, 118 * 2.54), Resolution(PER_METRE, 11800, 11800)),  # JPEG's per centimetre
    ((72.5, 144), Resolution(PER_METRE, 2854, 5669)),  # to the nearest per metre
    ((5000 * 0.0254, 5000 * 0.0254), Resolution(PER_INCH, 127, 127)),  # a PNG density that is whole per inch
])
def test_a_density_is_kept_in_the_unit_that_holds_it(dpi, kept):
    assert resolution.from_dpi(dpi) == kept
    assert resolution.unpack(resolution.pack(kept)) == kept
    back = kept.dpi
    assert all(math.isclose(a, b, abs_tol=0.0127) for a, b in zip(back, map(float, dpi)))


@pytest.mark.parametrize("dpi", [None, (0, 0), (300, 0), (-72, 72), (math.nan, 72), (math.inf, 72), (300,),
                                 (1, 2, 3), "72", (True, True), (2.0**40, 72), (1e-9, 1e-9), ("a", "b")])
def test_densities_that_mean_nothing_are_not_kept(dpi):
    assert resolution.from_dpi(dpi) is None


def test_the_section_is_nine_bytes():
    assert resolution.pack(Resolution(PER_METRE, 11811, 5669)) == struct.pack("<BII", 2, 11811, 5669)
    with pytest.raises(ValueError, match="unit"):
        resolution.pack(Resolution(3, 1, 1))
    with pytest.raises(ValueError, match="densities"):
        resolution.pack(Resolution(PER_INCH, 0, 1))


@pytest.mark.parametrize("payload, said", [
    (b"", "holds 0 bytes, not 9"),
    (struct.pack("<BII", 1, 300, 300) + b"\0", "holds 10 bytes"),
    (struct.pack("<BII", 0, 300, 300), "unit is 0"),
    (struct.pack("<BII", 3, 300, 300), "unit is 3"),
    (struct.pack("<BII", 1, 0, 300), "density of 0"),
    (struct.pack("<BII", 2, 300, 0), "density of 0"),
])
def test_broken_sections_are_refused(payload, said):
    with pytest.raises(FormatError, match=said):
        resolution.unpack(payload)


@pytest.mark.parametrize("fmt, dpi", [("PNG", (300, 144)), ("JPEG", (300, 150)), ("TIFF", (600, 600)),
                                      ("BMP", (96, 96))])
def test_files_keep_their_density(codec, photo, fmt, dpi):
    source = saved(photo, fmt, dpi=dpi)
    with Image.open(io.BytesIO(source)) as image:
        read = image.info["dpi"]
    data = codec.encode(source)
    decoded = codec.decode(data)
    # What Pillow read from the source (BMP's reader divides by 39.3701, not 1 / 0.0254: 1e-6 apart).
    assert decoded.info["dpi"] == pytest.approx(read, rel=1e-6)
    assert codec.decode(codec.encode(decoded)).info["dpi"] == decoded.info["dpi"]  # and kept again
    assert resolution.TAG not in nicformat.unpack(codec.encode(source, strip=True))[1]
    assert resolution.TAG not in nicformat.unpack(codec.encode(saved(photo, "PNG")))[1]
    assert "dpi" not in codec.decode(codec.encode(photo)).info


def test_a_quarter_turn_swaps_the_axes(codec, photo):
    for orientation, expected in ((6, (150, 300)), (3, (300, 150))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = codec.encode(saved(photo, "JPEG", dpi=(300, 150), exif=exif.tobytes(), quality=95))
        header = nicformat.unpack(data)[0]
        turned = orientation == 6
        assert (header.height, header.width) == (photo.shape[1::-1] if turned else photo.shape[:2])
        assert codec.decode(data).info["dpi"] == expected


def test_the_section_comes_last(codec, photo):
    image = Image.fromarray(photo)
    image.text = {"a": "b"}  # type: ignore[attr-defined]
    image.info["dpi"] = (300, 300)
    header, sections = nicformat.unpack(codec.encode(image))
    assert list(sections)[-2:] == [b"TEXT", resolution.TAG]
    swapped = {k: v for k, v in sections.items() if k not in (b"TEXT", resolution.TAG)}
    swapped.update({resolution.TAG: sections[resolution.TAG], b"TEXT": sections[b"TEXT"]})
    with pytest.raises(FormatError, match="TEXT and PHYS in that order"):
        nicformat.unpack(nicformat.pack(header, swapped))


def test_a_damaged_section_is_found_before_decoding(codec, photo, tmp_path):
    header, sections = nicformat.unpack(codec.encode(saved(photo, "PNG", dpi=(300, 300))))
    sections[resolution.TAG] = struct.pack("<BII", 7, 300, 300)
    data = nicformat.pack(header, sections)  # a valid CRC: an encoder's fault, not the disk's
    with pytest.raises(FormatError, match="unit is 7"):
        codec.decode_symbols(data)  # what nicodec verify runs
    with pytest.raises(FormatError, match="unit is 7"):
        codec.decode(data)
    (tmp_path / "bad.nic").write_bytes(data)
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "bad.nic")])
    assert result.exit_code != 0 and "unit is 7" in result.output + result.stderr


def test_info_shows_the_density(codec, photo, tmp_path):
    (tmp_path / "metre.nic").write_bytes(codec.encode(saved(photo, "PNG", dpi=(300, 144))))
    (tmp_path / "inch.nic").write_bytes(codec.encode(saved(photo, "JPEG", dpi=(300, 150))))
    (tmp_path / "none.nic").write_bytes(codec.encode(saved(photo, "PNG")))
    runner = CliRunner()
    result = runner.invoke(app, ["info", "--json", *(str(tmp_path / f"{n}.nic") for n in ("metre", "inch", "none"))])
    assert result.exit_code == 0, result.output
    shown = [facts["resolution"] for facts in json.loads(result.stdout)]
    assert shown == [{"unit": "metre", "x": 11811, "y": 5669, "dpi": [299.9994, 143.9926]},
                     {"unit": "inch", "x": 300, "y": 150, "dpi": [300.0, 150.0]}, None]
    result = runner.invoke(app, ["info", str(tmp_path / "metre.nic"), str(tmp_path / "inch.nic")])
    assert "resolution: 11811 x 5669 per metre (299.9994 x 143.9926 dpi)" in result.stdout
    assert "resolution: 300 x 150 per inch\n" in result.stdout

    header, sections = nicformat.unpack((tmp_path / "inch.nic").read_bytes())
    sections[resolution.TAG] = struct.pack("<BII", 1, 0, 300)
    (tmp_path / "bad.nic").write_bytes(nicformat.pack(header, sections))
    result = runner.invoke(app, ["info", str(tmp_path / "bad.nic")])
    assert result.exit_code == 1 and "density of 0" in result.stderr


@pytest.mark.parametrize("suffix, expected", [(".png", (300, 144)), (".jpg", (300, 144)), (".tif", (300, 144)),
                                              (".bmp", (300, 144)), (".webp", None)])
def test_decode_writes_the_density_where_the_format_holds_it(codec, photo, tmp_path, suffix, expected):
    (tmp_path / "x.png").write_bytes(saved(photo, "PNG", dpi=(300, 144)))
    runner = CliRunner()
    assert runner.invoke(app, ["encode", str(tmp_path / "x.png"), "-o", str(tmp_path / "x.nic")]).exit_code == 0
    result = runner.invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / f"back{suffix}")])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    with Image.open(tmp_path / f"back{suffix}") as back:
        got = back.info.get("dpi")
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=0.013)  # PNG keeps whole pixels per metre
    if suffix == ".png":  # PNG's own unit: the very pixels per metre
        with Image.open(tmp_path / f"back{suffix}") as back, Image.open(tmp_path / "x.png") as source:
            assert back.info["dpi"] == source.info["dpi"]
    result = runner.invoke(app, ["encode", str(tmp_path / "x.png"), "-o", str(tmp_path / "s.nic"), "--strip"])
    assert result.exit_code == 0 and density((tmp_path / "s.nic").read_bytes()) is None


def test_the_pillow_plugin_reads_and_writes_the_density(codec, photo, tmp_path):
    from nicodec import pillow_plugin

    pillow_plugin.register(codec)
    with Image.open(io.BytesIO(saved(photo, "PNG", dpi=(300, 144)))) as source:
        source.save(tmp_path / "x.nic")
    with Image.open(tmp_path / "x.nic") as opened:
        assert opened.info["dpi"] == pytest.approx((300, 144), abs=0.013)  # from the header, before decoding
        opened.load()
        buffer = io.BytesIO()
        opened.save(buffer, "NIC")
    assert density(buffer.getvalue()) == Resolution(PER_METRE, 11811, 5669)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "NIC", dpi=(600, 600))
    assert density(buffer.getvalue()) == Resolution(PER_INCH, 600, 600)
    with Image.open(tmp_path / "x.nic") as opened:
        buffer = io.BytesIO()
        opened.save(buffer, "NIC", dpi=None)  # given as None: left out
    assert density(buffer.getvalue()) is None
    for bad in ((0, 72), "300", (300,), (1e-9, 1e-9), (0.0127, 0.0127), (2**32, 1), (1.1e8 + 0.5, 1)):
        with pytest.raises(ValueError, match="dpi must be two numbers of dots per inch: whole ones from 1 to "
                                             "4,294,967,295, others above 0.0127 and up to about 109 million"):
            Image.fromarray(photo).save(io.BytesIO(), "NIC", dpi=bad)
    for good in ((2**32 - 1, 1), (0.0128, 1.0909e8 + 0.5)):  # the limits the message gives
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, "NIC", dpi=good)
        assert density(buffer.getvalue()) is not None


def test_a_jpeg_without_a_jfif_density_keeps_its_exif_one(codec, photo):
    def kept(tags: dict[int, object]) -> Resolution | None:
        exif = Image.Exif()
        exif[0x010F] = "a camera"  # Make
        for tag, value in tags.items():
            exif[tag] = value
        return density(codec.encode(saved(photo, "JPEG", exif=exif.tobytes(), quality=95)))

    assert kept({}) is None  # not the 72 dpi Pillow's reader puts in
    assert kept({0x011A: 300.0, 0x011B: 150.0}) == Resolution(PER_INCH, 300, 150)  # inches by default
    assert kept({0x011A: 300.0, 0x011B: 150.0, 0x0128: 2}) == Resolution(PER_INCH, 300, 150)
    assert kept({0x011A: 118.0, 0x0128: 3}) == Resolution(PER_METRE, 11800, 11800)  # per centimetre
    assert kept({0x011A: 300.0, 0x0128: 1}) is None  # no absolute unit


def test_a_tiff_without_a_density_has_none(codec, photo):
    with Image.open(io.BytesIO(saved(photo, "TIFF"))) as image:
        assert image.info["dpi"] == (1, 1)  # Pillow's stand-in for no resolution tags
    assert density(codec.encode(saved(photo, "TIFF"))) is None
    assert density(codec.encode(saved(photo, "TIFF", dpi=(1, 1)))) == Resolution(PER_INCH, 1, 1)  # written, kept


def test_the_density_and_the_exif_resolution_follow_a_quarter_turn(codec, photo):
    exif = Image.Exif()
    exif[0x0112], exif[0x011A], exif[0x011B], exif[0x0128] = 6, 300.0, 150.0, 2
    jpeg = saved(photo, "JPEG", exif=exif.tobytes(), quality=95)  # an EXIF density only
    tiff = saved(photo, "TIFF", dpi=(300, 150), tiffinfo={0x0112: 6})  # turned by Pillow as it loads
    for source in (jpeg, tiff, Image.open(io.BytesIO(tiff))):
        decoded = codec.decode(codec.encode(source))
        assert decoded.size == photo.shape[:2]  # turned
        assert decoded.info["dpi"] == (150, 300)
        tags = Image.Exif()
        tags.load(decoded.info["exif"])
        assert (tags[0x011A], tags[0x011B]) == (150, 300)


def test_a_bmp_density_is_kept_exactly_however_dense(codec, photo):
    from nicodec import outputs

    source = saved(photo, "BMP", dpi=(1_000_000 / 39.3701, 3780 / 39.3701))
    kept = density(codec.encode(source))
    assert kept == Resolution(PER_METRE, 1_000_000, 3780)
    decoded = codec.decode(codec.encode(source))
    for fmt, expected in (("BMP", source), ("PNG", None)):
        buffer = io.BytesIO()
        outputs.save(decoded, buffer, fmt)
        if expected is not None:
            assert buffer.getvalue()[38:46] == expected[38:46]  # the header's pixels per metre, as they were
        assert density(codec.encode(buffer.getvalue())) == kept


def test_a_density_more_than_the_output_holds_is_left_out_with_a_warning(codec, photo, tmp_path):
    image = Image.fromarray(photo)
    image.info["dpi"] = (101_600, 101_600)  # 0.25 micrometre pixels: more than JFIF's 65,535
    (tmp_path / "x.nic").write_bytes(codec.encode(image))
    image.info["dpi"] = (2.54e8, 2.54e8)  # 0.1 micrometre: more than PNG's and BMP's 2^31 - 1 per metre
    (tmp_path / "y.nic").write_bytes(codec.encode(image))
    runner = CliRunner()
    for name, suffix, said in (("x", ".jpg", "outside what JPEG holds (1 to 65,535 dpi)"),
                               ("y", ".png", "outside what PNG holds (1 to 2,147,483,647 pixels per metre)"),
                               ("y", ".bmp", "outside what BMP holds")):
        result = runner.invoke(app, ["decode", str(tmp_path / f"{name}.nic"), "-o", str(tmp_path / f"{name}{suffix}")])
        assert result.exit_code == 0 and "will have no resolution: its " in result.stderr, result.stderr
        assert said in result.stderr, result.stderr
        with Image.open(tmp_path / f"{name}{suffix}") as back:
            got = back.info.get("dpi")
        assert got is None or max(got) < 100  # none, or the writer's default (BMP's 96 dpi)
    result = runner.invoke(app, ["decode", str(tmp_path / "y.nic"), "-o", str(tmp_path / "y.tif")])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    with Image.open(tmp_path / "y.tif") as back:
        assert back.info["dpi"] == pytest.approx((2.54e8, 2.54e8))
    result = runner.invoke(app, ["decode", str(tmp_path / "x.nic"), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr


def test_the_plugin_keeps_no_stand_in_density_when_it_copies(codec, photo):
    from nicodec import pillow_plugin

    pillow_plugin.register(codec)
    exif = Image.Exif()
    exif[0x010F] = "a camera"
    with Image.open(io.BytesIO(saved(photo, "JPEG", exif=exif.tobytes()))) as source:
        assert source.info["dpi"] == (72, 72)  # Pillow's stand-in
        buffer = io.BytesIO()
        source.save(buffer, "NIC", icc_profile=None)  # a replacement: the image is copied
    assert density(buffer.getvalue()) is None
    exif[0x011A], exif[0x011B], exif[0x0128] = 300.0, 150.0, 3  # per centimetre, two axes
    with Image.open(io.BytesIO(saved(photo, "JPEG", exif=exif.tobytes()))) as source:
        buffer = io.BytesIO()
        source.save(buffer, "NIC", xmp=None)
    assert density(buffer.getvalue()) == Resolution(PER_INCH, 762, 381)  # 2.54 times: whole dots per inch


def test_a_tiff_turned_by_pillow_is_turned_however_it_comes(codec, photo):
    """Pillow turns a TIFF with an orientation of 5 to 8 as it loads it and drops the tag: the
    density follows whether the image comes as a file, loaded or not, or through the plugin
    (whose save loads it first)."""
    from nicodec import pillow_plugin

    pillow_plugin.register(codec)
    tiff = saved(photo, "TIFF", dpi=(300, 150), tiffinfo={0x0112: 6})
    loaded = Image.open(io.BytesIO(tiff))
    loaded.load()
    through_plugin, copied = io.BytesIO(), io.BytesIO()
    Image.open(io.BytesIO(tiff)).save(through_plugin, "NIC")
    Image.open(io.BytesIO(tiff)).save(copied, "NIC", icc_profile=None)  # a replacement: the plugin copies it
    for data in (codec.encode(loaded), through_plugin.getvalue(), copied.getvalue()):
        decoded = codec.decode(data)
        assert decoded.info["dpi"] == (150, 300)
        tags = Image.Exif()
        tags.load(decoded.info["exif"])
        assert (tags[0x011A], tags[0x011B]) == (150, 300)


def test_a_square_tiff_turned_by_pillow_is_turned_too(codec):
    square = synthetic_photo(32, 32)
    tiff = saved(square, "TIFF", dpi=(300, 150), tiffinfo={0x0112: 6})
    for source in (tiff, Image.open(io.BytesIO(tiff))):  # told by the tag before the load drops it
        assert codec.decode(codec.encode(source)).info["dpi"] == (150, 300)


def test_pillows_stand_ins_for_a_missing_tiff_density_are_not_kept(codec, photo):
    from nicodec import pillow_plugin

    for tag in (0x011A, 0x011B):  # one axis only: Pillow reads the other as 1
        one_axis = saved(photo, "TIFF", tiffinfo={tag: 300.0, 0x0128: 2})
        assert density(codec.encode(one_axis)) == Resolution(PER_INCH, 300, 300)
    pillow_plugin.register(codec)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "NIC", dpi=(1, 1))  # asked for: kept
    assert density(buffer.getvalue()) == Resolution(PER_INCH, 1, 1)
    with Image.open(io.BytesIO(saved(photo, "TIFF"))) as image:
        copy = image.convert("RGB")  # a copy says no format, but keeps Pillow's 1 dpi
    assert copy.info["dpi"] == (1, 1) and density(codec.encode(copy)) is None
