"""What a ``.nic`` file says about itself, read from its header and sections without decoding:
what ``nicodec info`` shows, as a dict (:func:`describe`, ``nicodec.describe``)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from . import format as nicformat
from . import model, resolution
from .inputs import NicSource, nic_bytes

Decoder = tuple[str, Path] | None
"""The package's model that decodes a file, as ``(its id, its folder)``; None for none."""

Density = TypedDict("Density", {"unit": str, "x": int, "y": int, "dpi": list[float]})
"""A file's resolution: its unit (``"inch"`` or ``"metre"``), the densities in it, and in dots per inch."""

ExifFacts = TypedDict("ExifFacts", {"readable": bool, "camera": str | None, "taken": str | None, "location": bool})
"""What a file's EXIF says of the photo: the camera, when it was taken, and whether it holds a
GPS location (:func:`exif_of`)."""

FileFacts = TypedDict("FileFacts", {
    "bytes": int, "format_version": int, "model_id": str, "model_hash": str, "width": int, "height": int,
    "quality": float, "grayscale": bool, "gray_as_rgb": bool, "fine_padding": bool, "bpp": float,
    "resolution": Density | None, "colour_profile": str | None, "exif": ExifFacts | None, "sections": dict[str, int],
    "decoded_by": str | None,
})
"""What :func:`describe` returns (a TypedDict: a plain dict to the program)."""


def describe(data: NicSource, *, decoder_of: Callable[[str, bytes], Decoder] | None = None) -> FileFacts:
    """A ``.nic`` file's facts, as ``nicodec info --json`` prints them (but the file's name).

    Args:
        data: the file, as :meth:`nicodec.Codec.decode` takes it (its bytes, a binary file
            object or its path).
        decoder_of: how the package's model that decodes the file is found, from its model id and
            hash (``None``: ``nicodec.model.package_model_for``; the command line reads the
            package's models once, not once a file).

    Returns:
        ``bytes`` (the file's length), ``format_version``, ``model_id``, ``model_hash`` (hex),
        ``width``, ``height``, ``quality`` (0 for a single-rate model's file), ``grayscale``,
        ``gray_as_rgb`` (a colour image of equal channels, decoded as RGB), ``fine_padding``,
        ``bpp`` (to 6 decimals), ``resolution`` (None, or its ``unit``, ``"inch"`` or ``"metre"``,
        the densities ``x`` and ``y`` in it and ``dpi``), ``colour_profile`` (the ICC profile's
        description and colour space, None for none), ``exif`` (None for none, or what
        :func:`exif_of` reads of it: the camera, the date taken, a GPS location), ``sections``
        (tag to length, in file order)
        and ``decoded_by`` (the id of the model of this nicodec that decodes it, None for none).

    Raises:
        FormatError: not a valid nicodec file (its header, its sections' table, its checksum or
            its resolution section). The entropy-coded streams are not read: ``nicodec verify``
            (``Codec.decode_symbols``) checks those.
        NicodecError: a path or file object that cannot be read, or data of another type.
    """
    content = nic_bytes(data, "describe")
    header, sections = nicformat.unpack(content)
    decoder = (decoder_of or model.package_model_for)(header.model_id, header.model_hash)
    return {
        "bytes": len(content),
        "format_version": header.version,
        "model_id": header.model_id,
        "model_hash": header.model_hash.hex(),
        "width": header.width,
        "height": header.height,
        "quality": nicformat.quality_value(header.quality),
        "grayscale": bool(header.flags & nicformat.FLAG_GRAYSCALE),
        "gray_as_rgb": bool(header.flags & nicformat.FLAG_GRAY_AS_RGB),
        "fine_padding": bool(header.flags & nicformat.FLAG_FINE_PADDING),
        "bpp": bpp_shown(8 * len(content) / (header.width * header.height)),
        "resolution": resolution_of(sections),
        "colour_profile": profile_named(sections.get(nicformat.ICC_PROFILE)),
        "exif": exif_of(sections.get(nicformat.EXIF)),
        "sections": {tag.decode("ascii"): len(payload) for tag, payload in sections.items()},
        "decoded_by": None if decoder is None else decoder[0],
    }


def profile_named(icc: bytes | None) -> str | None:
    """An ICC profile's description and colour space, as LittleCMS (Pillow's ImageCms) reads
    them (``"Display P3 (RGB)"``); None for none."""
    if not icc:
        return None
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile
        return f"{(profile.profile_description or '').strip() or 'unnamed'} ({profile.xcolor_space.strip()})"
    except (ImageCms.PyCMSError, ImportError, OSError, ValueError, TypeError):  # damaged, or no LittleCMS here
        return f"{len(icc):,} bytes that LittleCMS cannot read"


_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DATE_TIME = 0x010F, 0x0110, 0x0132
_DATE_TIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_GPS_LATITUDE, _GPS_LONGITUDE = 2, 4
_EXIF_DATE = re.compile(r"([0-9]{4})[:-]([0-9]{2})[:-]([0-9]{2})[ T]([0-9]{2}:[0-9]{2}:[0-9]{2})", re.ASCII)
_UTC_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}", re.ASCII)


def exif_of(exif: bytes | None) -> ExifFacts | None:
    """What a ``.nic`` file's EXIF says of the photo, as Pillow reads it, so that an archive can
    be looked through without decoding (no other tool reads ``.nic`` files): ``camera`` (its
    make and model, the make left out where the model begins with its first word: ``NIKON
    D850``, not ``NIKON CORPORATION NIKON D850``), ``taken`` (the original date and time,
    ``2024-05-01 09:59:58``, with its offset from UTC where the EXIF gives one; else the file's
    date and time), each None where the EXIF has none or a placeholder (blanks, zeros), and
    ``location``: whether it holds a GPS position (latitude and longitude), which ``encode
    --metadata icc`` leaves out. EXIF of which Pillow reads no tag (damaged: Pillow warns and
    reads what it can) gives ``readable`` False and nothing else; None for none. Pillow's
    warnings of a damaged value are not let out on the main thread (``nicodec.outputs.quietly``);
    on another, they go to the host's filters, and one raised as an error leaves ``readable``
    False."""
    if not exif:
        return None
    from PIL import Image

    from .outputs import quietly

    try:
        with quietly():  # Pillow's own warnings, which come as a value is first read: "readable" says enough
            tags = Image.Exif()
            tags.load(bytes(exif))
            photo = tags.get_ifd(_EXIF_IFD)
            gps = tags.get_ifd(_GPS_IFD)
            values = {tag: tags.get(tag) for tag in (_MAKE, _MODEL, _DATE_TIME)}
            values.update({tag: photo.get(tag) for tag in (_DATE_TIME_ORIGINAL, _OFFSET_TIME_ORIGINAL)})
            location = _GPS_LATITUDE in gps and _GPS_LONGITUDE in gps
    except Exception:  # noqa: BLE001 - what Pillow raises for damaged EXIF (SyntaxError, struct.error, ...)
        tags = None
    if not tags:
        return {"readable": False, "camera": None, "taken": None, "location": False}
    make, model = _exif_text(values[_MAKE]), _exif_text(values[_MODEL])
    brand = make.split()[0].lower() if make else ""
    camera = model if brand and model and model.lower().startswith(brand) else \
        " ".join(part for part in (make, model) if part) or None
    taken = _date(values[_DATE_TIME_ORIGINAL])
    offset = _exif_text(values[_OFFSET_TIME_ORIGINAL]) if taken else None
    if taken and offset and _UTC_OFFSET.fullmatch(offset):
        taken = f"{taken} {offset}"
    return {"readable": True, "camera": camera, "taken": taken or _date(values[_DATE_TIME]), "location": location}


def _date(value) -> str | None:
    """An EXIF date and time (``2024:05:01 09:59:58``) as ``2024-05-01 09:59:58``; None for
    none, and for the standard's placeholders of an unknown one (blanks and colons, or zeros)."""
    text = _exif_text(value)
    date = _EXIF_DATE.fullmatch(text or "")
    if date is None or not date[1].strip("0"):
        return None
    return f"{date[1]}-{date[2]}-{date[3]} {date[4]}"


def _exif_text(value) -> str | None:
    """An EXIF ASCII value as text: NULs and the spaces around it dropped (cameras pad their
    fields), None for none or a value that is not text."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    return value.replace("\0", " ").strip() or None


def bpp_shown(bpp: float) -> float:
    """Bits per pixel to 6 decimals, or to 6 significant digits where that would be 0 (a header
    that claims a huge image)."""
    return round(bpp, 6) or float(f"{bpp:.6g}")


def resolution_of(sections: dict) -> Density | None:
    """What a file's ``PHYS`` section holds: its unit (``"inch"`` or ``"metre"``), the two
    densities in it, and the same in dots per inch (Pillow's ``info["dpi"]``); None without one.

    Raises:
        FormatError: the section is damaged (``decode`` refuses such a file too).
    """
    payload = sections.get(resolution.TAG)
    if payload is None:
        return None
    density = resolution.unpack(payload)
    return {"unit": "inch" if density.unit == resolution.PER_INCH else "metre", "x": density.x, "y": density.y,
            "dpi": [round(value, 4) for value in density.dpi]}
