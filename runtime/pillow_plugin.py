"""A Pillow plugin for ``.nic`` files: ``Image.open`` reads them, ``Image.save`` writes them.

    >>> from PIL import Image
    >>> import nicodec.pillow_plugin
    >>> nicodec.pillow_plugin.register()      # or: import nicodec.pillow_register
    >>> Image.open("photo.png").save("photo.nic")              # the model's default quality
    >>> Image.open("photo.png").save("small.nic", quality=20)  # 1 (smallest) to 100 (best)
    >>> image = Image.open("photo.nic")       # reads the header only; info["quality"]
    >>> image.load()                          # runs the decoder

A thin skin over :class:`nicodec.Codec`: ``_open`` parses the header with
:mod:`nicodec.format` (size, model id, quality in ``image.info``) and the pixels
are decoded by a ``PyDecoder`` only when Pillow loads the image. Importing this
module does no work: the default codec (and onnxruntime) is loaded on first use.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from typing import IO, Any, Protocol

from PIL import Image, ImageFile, UnidentifiedImageError

from . import alpha as alpha_section
from . import format as nicformat
from . import resolution as resolution_section
from . import text as text_section
from .errors import LimitError, ModelError, NicodecError, PixelLimitError, QualityError
from .files import bytes_left


class CodecLike(Protocol):
    """What :func:`register` codes with: a :class:`nicodec.Codec`, or an object with its
    ``encode`` and ``decode`` (a wrapper that counts or logs the calls)."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes: ...

    def decode(self, *args: Any, **kwargs: Any) -> Any: ...

FORMAT = "NIC"
EXTENSION = ".nic"
MIME_TYPE = "image/x-nicodec"

# The header's pieces, in the order that decides how much to read next; the sizes come from
# the format module, which owns the layout (see FORMAT.md).
_PREFIX_SIZE = nicformat.PREFIX.size  # magic, version, flags, model id length L
_VERSION_AT = len(nicformat.MAGIC)  # the format version's byte
_FIELDS = nicformat.FIELDS  # after the L-byte model id: hash, width, height, quality, S
_TABLE_ENTRY_SIZE = nicformat.SECTION_ENTRY.size
_CRC_SIZE = nicformat.CRC.size


class _CodecSource:
    """The codec a registration uses: the caller's, or a default one made on first use."""

    def __init__(self, codec=None):
        self._codec = codec
        self._lock = threading.Lock()

    def get(self):
        if self._codec is None:
            with self._lock:
                if self._codec is None:
                    from .codec import Codec  # imports onnxruntime: only when a file is coded

                    self._codec = Codec()
        return self._codec

    def max_pixels(self) -> int:
        """The pixel limit the codec will apply, known without loading a default codec."""
        return getattr(self._codec, "max_pixels", nicformat.DEFAULT_MAX_PIXELS)

    def downsampling(self) -> int:
        """The multiple the codec pads images to, known without loading a default codec (read
        from the default model's manifest)."""
        if self._codec is None:
            return _default_downsampling()
        # A duck-typed codec (encode and decode only) is taken to pad as the default model does.
        return getattr(getattr(self._codec, "model", None), "downsampling", None) or _default_downsampling()


@functools.lru_cache(maxsize=1)
def _default_downsampling() -> int:
    """The default model's padding multiple, from its manifest.

    Raises:
        ModelError: the manifest is missing or unreadable (a package whose data files were
            left out, as a frozen application can be): not the file's fault, and no OSError,
            which Pillow's callers take for an image they cannot read.
    """
    from .model import default_model_dir

    path = default_model_dir() / "manifest.json"
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["downsampling"])
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise ModelError(f"the default model's manifest {path} cannot be read ({type(exc).__name__}: {exc}): "
                         "reinstall nicodec, with its package data") from None


_DEFAULT = _CodecSource()
"""Shared by every ``register()`` without a codec, so the default model is loaded at most once."""


def _lock_anew_after_fork() -> None:
    """In a child process made by fork, a new lock for the default codec: another thread of the
    parent may have held the old one, making the codec, as it forked, and the child, without
    that thread, would have waited for it for ever at its first ``.nic`` file."""
    _DEFAULT._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_lock_anew_after_fork)


def _accept(prefix: bytes) -> bool:
    return prefix[: len(nicformat.MAGIC)] == nicformat.MAGIC


class NicImageFile(ImageFile.ImageFile):
    """A ``.nic`` file opened by Pillow; the pixels are decoded on ``load()``.

    ``info`` holds ``model_id``, ``model_hash`` (hex) and ``quality`` from the header (the
    float32 as its shortest decimal, 37.3 rather than 37.29999923706055, so saving again with
    ``quality=im.info["quality"]`` codes at the same quality; 0.0 for a single-rate model).
    """

    format = FORMAT
    format_description = "nicodec learned image"

    def __init__(self, fp, filename=None, *, codec_source: _CodecSource | None = None):
        self._codec_source = codec_source or _DEFAULT
        super().__init__(fp, filename)

    def _open(self) -> None:
        head = self.fp.read(_PREFIX_SIZE)
        if not _accept(head):
            raise SyntaxError("not a nicodec file")
        # Read exactly the header: the id length says where the fields end, and the
        # section count where the table ends. Short reads are left to read_header to name.
        if len(head) == _PREFIX_SIZE:
            id_len = head[-1]
            head += self.fp.read(id_len + _FIELDS.size)
            if len(head) == _PREFIX_SIZE + id_len + _FIELDS.size:
                count = _FIELDS.unpack_from(head, _PREFIX_SIZE + id_len)[-1]
                head += self.fp.read(count * _TABLE_ENTRY_SIZE + _CRC_SIZE)
        try:
            # The codec's pixel limit here, before Pillow allocates the image in load(): its own
            # check may be off (Image.MAX_IMAGE_PIXELS = None), and the codec's comes after that.
            header, table, payload_at = nicformat.read_header(head)
            # The count the codec's own check in load() uses, padded size included.
            nicformat.check_pixels(header.width, header.height, self._codec_source.max_pixels(),
                                   nicformat.padding(header.flags, self._codec_source.downsampling()),
                                   has="the file claims")
        except ModelError:
            raise  # the default model's manifest: no fault of the file
        except PixelLimitError as exc:
            raise Image.DecompressionBombError(
                f"{exc} (register a Codec with a larger max_pixels to open it; beyond twice "
                "Image.MAX_IMAGE_PIXELS, Pillow's own limit must be raised too)") from exc
        except NicodecError as exc:  # a file larger than nicodec reads (a LimitError) among them
            # The magic bytes are ours, so no other plugin will read this file: say what is
            # wrong instead of letting Pillow report only "cannot identify image file".
            name = f" {self.filename!r}" if self.filename else ""
            newer = len(head) > _VERSION_AT and nicformat.is_newer_version(head[_VERSION_AT])
            raise UnidentifiedImageError(f"{'unreadable' if newer else 'damaged'} nicodec file{name}: {exc}") from exc
        self._size = (header.width, header.height)
        tags = [tag for tag, _ in table]
        self._mode = nicformat.decoded_mode(header.flags, alpha_section.find(tags) is not None)
        # The metadata sections are small: read them now, so info has them before load().
        # Only where the section lengths add up to the bytes the file holds after its header:
        # one damaged length shifts every later section, whose bytes would be published as a
        # wrong profile or EXIF (and a claimed 4 GiB would be reserved); a truncated or padded
        # file publishes none. load() names the damage.
        left = bytes_left(self.fp)
        whole = left is None or left == sum(length for _, length in table)
        offset = payload_at
        text_section.attach(self, None)
        for tag, length in table if whole else ():
            key = {nicformat.ICC_PROFILE: "icc_profile", nicformat.EXIF: "exif", nicformat.XMP: "xmp",
                   text_section.TAG: "text", resolution_section.TAG: "dpi"}.get(tag)
            if key is not None:
                self.fp.seek(offset)
                data = _read_at_most(self.fp, length)
                if len(data) == length and key in ("text", "dpi"):
                    try:
                        if key == "text":
                            text_section.attach(self, text_section.unpack(data))
                        else:
                            resolution_section.attach(self, resolution_section.unpack(data))
                    except NicodecError:
                        pass  # load() names the damage
                elif len(data) == length:
                    self.info[key] = data
            offset += length
        self.fp.seek(payload_at)
        self.info["model_id"] = header.model_id
        self.info["model_hash"] = header.model_hash.hex()
        self.info["quality"] = nicformat.quality_value(header.quality)
        # One tile for the whole image; the decoder reads the complete file from offset 0.
        self.tile = [ImageFile._Tile(FORMAT, (0, 0) + self.size, 0, (self._codec_source,))]

    def load_seek(self, pos: int) -> None:
        """Seek for ``load()``. Its presence tells ``ImageFile.Parser`` to keep the data it is
        fed and open it whole when it is closed (as for Pillow's AVIF and WebP), since a
        ``.nic`` file is decoded whole."""
        self.fp.seek(pos)

    def verify(self) -> None:
        """Check the container (lengths and CRC-32) without decoding the pixels.

        Raises:
            SyntaxError: the file is truncated, padded or corrupt.
        """
        if self.fp is None:
            raise RuntimeError("verify must be called directly after open")
        self.fp.seek(0)
        try:
            nicformat.unpack(_whole_file(self.fp))
        except NicodecError as exc:
            raise SyntaxError(f"damaged nicodec file: {exc}") from exc
        finally:
            super().verify()  # closes the file, as Pillow's verify does


def _whole_file(fp) -> bytes:
    """The rest of ``fp``, a ``.nic`` file, up to the 1 GiB nicodec reads (bytes past the end its
    header declares, a sparse file's hole, are not read without end).

    Raises:
        LimitError: more than :data:`nicodec.format.MAX_FILE_BYTES`.
    """
    left = bytes_left(fp) or 0  # judged from its size where it has one, before it is read
    data = b"" if left > nicformat.MAX_FILE_BYTES else _read_at_most(fp, nicformat.MAX_FILE_BYTES + 1)
    if left > nicformat.MAX_FILE_BYTES or len(data) > nicformat.MAX_FILE_BYTES:
        raise LimitError(f"the file holds more than the {nicformat.MAX_FILE_BYTES:,} bytes nicodec reads")
    return data


def _read_at_most(fp, length: int, block: int = 1 << 20) -> bytes:
    """Up to ``length`` bytes, read a block at a time: a length from a damaged header costs no
    more memory than the file holds (``read(length)`` reserves it all first)."""
    pieces, left = [], length
    while left:
        piece = fp.read(min(left, block))
        if not piece:
            break
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


class NicDecoder(ImageFile.PyDecoder):
    """Decodes a whole ``.nic`` file with the registered codec (tile args: its codec source)."""

    _pulls_fd = True

    def decode(self, buffer) -> tuple[int, int]:
        (source,) = self.args
        if self.fd is None:  # fed in pieces (ImageFile.Parser keeps them and opens them whole instead)
            raise OSError("a .nic file is decoded whole: open it from a file or io.BytesIO")
        # A missing model or runtime, or a graph that does not load, is not the file's fault: not wrapped.
        codec = source.get()
        if hasattr(codec, "prepare"):  # not a duck-typed codec (encode and decode only)
            codec.prepare(encode=False)
        try:
            pixels = codec.decode(_whole_file(self.fd), as_array=True)
        except NicodecError as exc:
            # Pillow's callers expect OSError from load(); the nicodec error stays as __cause__.
            raise OSError(str(exc)) from exc
        if pixels.shape[:2] != (self.state.ysize, self.state.xsize):
            raise OSError(
                f"decoded {pixels.shape[1]}x{pixels.shape[0]} pixels, "
                f"the header says {self.state.xsize}x{self.state.ysize}"
            )
        self.set_as_raw(pixels.tobytes())
        return -1, 0


_KINDS = {"exif": "exif", "icc_profile": "icc", "xmp": "xmp", "dpi": "dpi", "comment": "text"}
"""The kind of metadata (``strip``'s name for it) that each of ``save``'s keywords gives."""


def _save(im: Image.Image, fp: IO[bytes], filename, *, codec_source: _CodecSource) -> None:
    """``save(..., quality=Q, strip=True, exact=True, exif=..., icc_profile=..., xmp=...,
    dpi=..., comment=...)``: Q from 1 to 100 (default: the model's); ``strip`` and ``exact`` as
    for ``Codec.encode`` (``strip={"exif", "xmp"}`` leaves those out; ``exact`` as for Pillow's
    WebP: keep the colour under fully transparent pixels); ``exif`` (bytes or an ``Image.Exif``), ``icc_profile`` and ``xmp`` (bytes), ``dpi``
    (two positive numbers) and ``comment`` (str or bytes, as for Pillow's JPEG), as for Pillow's
    own formats, replace the image's, and an explicit None (or empty bytes) leaves it out;
    another type or value is a ValueError. Unlike Pillow's own formats, a plain ``save`` keeps
    the image's EXIF (a location included), XMP, text and resolution, as ``nicodec encode``
    does: ``strip=True`` leaves them out (the orientation is applied either way), and with a
    replacement of a kind it leaves out given too (not None or empty) is a ValueError. The
    image's EXIF orientation is applied to the pixels, as ``encode`` does, and the replacements
    describe the picture turned upright: an orientation in ``exif`` or ``xmp`` is left out
    (``save(f, exif=im.info["exif"])`` turns the picture once, not twice)."""
    quality, strip = im.encoderinfo.get("quality"), im.encoderinfo.get("strip", False)
    exact = im.encoderinfo.get("exact", False)
    from .inputs import check_flags, stripped_kinds  # imports no onnxruntime: the options are checked before the codec loads
    from .pil_pixels import upright
    from .metadata import detached_copy, is_unicode, quarter_turned, without_orientation
    from .model import check_quality

    try:
        check_flags(exact=exact)
        stripped = stripped_kinds(strip)
    except NicodecError as exc:
        raise ValueError(str(exc)) from None  # a ValueError, as Pillow's own plugins raise for bad options
    if quality is not None:
        check_quality(quality)  # a QualityError, a ValueError (a single-rate model's refusal comes at encode)
    metadata = {key: im.encoderinfo[key] for key in ("exif", "icc_profile", "xmp", "dpi", "comment")
                if key in im.encoderinfo}
    if isinstance(metadata.get("exif"), Image.Exif):
        try:
            metadata["exif"] = metadata["exif"].tobytes()
        except Exception as exc:  # noqa: BLE001 - what Pillow raises for a tag it cannot write (a struct.error, ...)
            kind = type(exc).__qualname__
            kind = kind if type(exc).__module__ == "builtins" else f"{type(exc).__module__}.{kind}"  # struct.error
            raise ValueError(f"the exif given cannot be written: {kind}: {exc}") from None
    for key, value in metadata.items():
        if key == "dpi":
            if value is not None and resolution_section.from_dpi(value) is None:
                raise ValueError("dpi must be two numbers of dots per inch: whole ones from 1 to 4,294,967,295, others "
                                 "above 0.0127 and up to about 109 million (1 to 2^32 - 1 pixels per metre), "
                                 f"not {value!r}")
        elif key == "comment":
            if value is not None and not isinstance(value, (str, bytes, bytearray)):
                raise ValueError(f"comment must be str or bytes, not {type(value).__name__}")
            if isinstance(value, str) and not is_unicode(value):
                raise ValueError("comment must be text UTF-8 can hold (it has a lone surrogate)")
        elif value is not None and not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"{key} must be bytes" + (" or an Image.Exif" if key == "exif" else "")
                             + f", not {type(value).__name__}")
    given = [key for key, value in metadata.items() if value and _KINDS[key] in stripped]
    if given:  # which would win is no clearer to a reader than to us: neither does, silently
        said = "strip=True leaves out the metadata" if strip is True else \
            f"strip={strip!r} leaves out {', '.join(sorted(_KINDS[key] for key in given))}"
        raise ValueError(f"{said}, and {'=, '.join(given)}= would add it back: give one or the other (None, or empty "
                         "bytes, leaves a key out with or without strip)")
    codec = codec_source.get()
    if hasattr(codec, "prepare"):  # a model that cannot encode, or a graph that does not load: not wrapped
        codec.prepare(decode=False)
    if metadata:
        # Upright by the image's own orientation first, which the replacements must not change;
        # then a copy, which keeps the caller's image as it is and reads its EXIF afresh from
        # info (a turned image holds the EXIF it was turned by), and keeps what Pillow's copies
        # leave behind (text, a TIFF's EXIF, the density).
        turned = quarter_turned(im)
        try:
            im = detached_copy(upright(im))
        except NicodecError as exc:
            raise OSError(str(exc)) from exc
        if im.mode == "CMYK" and "icc_profile" in metadata:  # its own profile still gives its colours
            im._nicodec_cmyk_profile = im.info.get("icc_profile")  # type: ignore[attr-defined]
        for key, value in metadata.items():  # given, as None or b"" too: that, not the image's own
            if key == "xmp":
                im.info.pop(text_section.XMP_KEYWORD, None)  # the key PNG's reader also fills
            if key == "comment":
                _replace_comment(im, value)
                continue
            if value and key in ("exif", "xmp"):
                value = without_orientation(key, value, turned)
            if value:
                im.info[key] = value
            else:
                im.info.pop(key, None)
    try:
        data = codec.encode(im, quality=quality, strip=strip, exact=exact)
    except QualityError:
        raise  # a ValueError, as Pillow's own plugins raise for bad options
    except NicodecError as exc:
        raise OSError(str(exc)) from exc
    fp.write(data)


def _replace_comment(im: Image.Image, value: str | bytes | bytearray | None) -> None:
    """Give the copy ``im`` the comment ``value`` (none for None or empty) where encoding reads
    it: its text's ``Comment`` where it has text (a PNG's, a decoded ``.nic``'s), which rules,
    and ``info["comment"]`` (a JPEG's, a GIF's)."""
    if isinstance(value, (bytes, bytearray)):
        from .metadata import comment_text

        value = comment_text(value)  # as a JPEG's comment is read
    chunks = getattr(im, "text", None)
    if isinstance(chunks, dict):
        im.text = {keyword: text for keyword, text in chunks.items() if keyword != "Comment"}  # type: ignore[attr-defined]
        if value:
            im.text["Comment"] = value  # type: ignore[attr-defined]
    im.info.pop("comment", None)
    if value:
        im.info["comment"] = value.encode("utf-8")


def _save_all(im: Image.Image, fp: IO[bytes], filename, *, codec_source: _CodecSource) -> None:
    """``save(..., save_all=True)``: a ``.nic`` file holds one picture, so this is ``save`` for
    an image of one frame, and an error for more (frames of its own or ``append_images``)."""
    frames = getattr(im, "n_frames", 1) + len(list(im.encoderinfo.get("append_images") or ()))  # any iterable
    if frames > 1:
        raise OSError(f"a .nic file holds one picture; save_all was given {frames} frames")
    _save(im, fp, filename, codec_source=codec_source)


def register(codec: CodecLike | None = None) -> None:
    """Register the ``NIC`` format with Pillow: open, save, ``.nic`` and ``image/x-nicodec``.

    Calling it again replaces the earlier registration, so it is safe to call more than once.

    Args:
        codec: the :class:`nicodec.Codec` to code with (another model, other providers).
            ``None``: a default ``Codec()``, created on first use and shared by every
            registration without a codec.

    Raises:
        NicodecError: ``codec`` has no ``encode`` and ``decode`` methods.
    """
    if isinstance(codec, type):  # nicodec.Codec itself: its methods are there, unbound
        raise NicodecError(f"register takes a nicodec.Codec or None, not the class {codec.__name__}: "
                           f"give an instance, such as {codec.__name__}()")
    if codec is not None and not all(callable(getattr(codec, m, None)) for m in ("encode", "decode")):
        raise NicodecError(f"register takes a nicodec.Codec or None, not {codec!r}")
    source = _DEFAULT if codec is None else _CodecSource(codec)
    Image.register_open(FORMAT, functools.partial(NicImageFile, codec_source=source), _accept)
    Image.register_save(FORMAT, functools.partial(_save, codec_source=source))
    Image.register_save_all(FORMAT, functools.partial(_save_all, codec_source=source))
    Image.register_decoder(FORMAT, NicDecoder)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME_TYPE)
