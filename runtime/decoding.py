"""The decoder's own steps of :class:`nicodec.Codec`: a file's sections checked and its
streams entropy-decoded, or handed to the codec of the earlier shipped model that made it."""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from . import alpha as alpha_section
from . import format as nicformat
from . import rans, restoration
from . import resolution as resolution_section
from . import text as text_section
from .errors import FormatError, LimitError, ModelMismatchError, NicodecError
from .inputs import nic_bytes
from .model import QUALITY_MAX, QUALITY_MIN, package_model_for, shipped_earlier_models
from .progress import ENTROPY_PARAMETERS_PART
from .sessions import caller_outside
from .settings import PRECISIONS, CodecSettings
from .transforms import Transforms

if TYPE_CHECKING:
    from .codec import Codec

_R = TypeVar("_R")


class DecodingSteps(Transforms):
    """What :meth:`nicodec.Codec.decode` and the entropy-decoding calls run before the synthesis."""

    _earlier_settings: CodecSettings | None  # None but for the default model's codec
    _earlier: dict[tuple[str, bytes], Codec]
    _earlier_lock: threading.Lock

    def _earlier_codec(self, header: nicformat.Header) -> Codec | None:
        """For the default model's codec, the codec of the earlier shipped model that made the
        file (:func:`nicodec.model.shipped_earlier_models`), made at its first file with this
        codec's settings; ``None`` otherwise."""
        key = (header.model_id, header.model_hash)
        if self._earlier_settings is None or key == (self.model.model_id, self.model.model_hash) \
                or key in self.model.decodes_files_of:
            return None
        made = self._earlier.get(key)
        if made is not None:
            return made
        folder = shipped_earlier_models().get(key)
        if folder is None:
            return None
        with self._earlier_lock:
            if key not in self._earlier:
                settings = self._earlier_settings
                if not (folder / f"{PRECISIONS[settings.precision]}.onnx").is_file():
                    settings = dataclasses.replace(settings, precision="fp32")  # the reference, where it kept no other
                from .codec import Codec  # the module that imports this one

                self._earlier[key] = Codec(folder, **settings.arguments())
            return self._earlier[key]

    def _entropy_decode(self, data, started: Callable[[nicformat.Header, dict], None] | None = None,
                        done: Callable[[float], None] | None = None):
        """The file's parts, entropy-decoded and checked; ``started`` is called with the header
        (and the sections)
        once it is checked, before the costly part, and ``done`` with the part of the entropy
        decoding done since it was last called (after each tile of the entropy parameters, then
        after the latent's symbols), adding up to 1. A file given by its path is named in the
        errors about it (``decode("photo.png")``), as encode names its images."""
        try:
            return self._entropy_decode_data(data, started, done)
        except (FormatError, ModelMismatchError, LimitError) as exc:
            if not isinstance(data, (str, os.PathLike)):
                raise
            raise _named(exc, data) from None

    def _entropy_decode_data(self, data, started, done):
        content = nic_bytes(data)
        header, sections = nicformat.unpack(content, max_pixels=self.max_pixels)
        earlier = self._earlier_codec(header)
        if earlier is not None:
            raise _MadeByEarlier(earlier, content, data if isinstance(data, (str, os.PathLike)) else None)
        # The same limit as encode: the graphs work on the padded size, up to 16 (or 64) times the pixels.
        multiple = nicformat.padding(header.flags, self.model.downsampling)
        self._check_size(header.width, header.height, multiple)
        try:
            nicformat.check_model(header, self.model.model_id, self.model.model_hash, self.model.decodes_files_of)
        except ModelMismatchError as exc:
            if self._earlier_settings is not None or package_model_for(header.model_id, header.model_hash) is None:
                raise
            mismatch = ModelMismatchError(f"{exc}; the model nicodec ships decodes it")
            mismatch.shipped_decodes = True
            raise mismatch from None
        if self.model.variable_rate and not QUALITY_MIN <= header.quality <= QUALITY_MAX:
            raise FormatError(f"the header's quality {header.quality} is outside {QUALITY_MIN:g}..{QUALITY_MAX:g}")
        if started is not None:
            started(header, sections)
        # Before the costly part: a damaged alpha plane, text or resolution found after the
        # synthesis wasted it all.
        tag = alpha_section.find(sections)
        alpha = alpha_section.decompress(tag, sections[tag], header.width, header.height) if tag else None
        try:
            text = text_section.unpack(sections[text_section.TAG]) if text_section.TAG in sections else None
        except text_section.TooManyEntries as exc:
            warnings.warn(f"{exc} (as nicodec builds before 2026-12-03 wrote); its text is left out",
                          UserWarning, stacklevel=caller_outside())
            text = None
        density = sections.get(resolution_section.TAG)
        density = resolution_section.unpack(density) if density is not None else None
        if nicformat.RESTORATION in sections:
            restoration.unpack(sections[nicformat.RESTORATION])
        z_shape = self._z_shape(header.height, header.width)
        z_hat = _decode_stream(sections, nicformat.HYPERLATENT, self._z_table_ids(z_shape),
                               self.model.z_tables).reshape(z_shape)
        scale_index, mean_q = self._entropy_parameters(
            z_hat, self._y_shape(header.height, header.width, multiple),
            done=None if done is None else lambda part: done(part * ENTROPY_PARAMETERS_PART))
        symbols = _decode_stream(sections, nicformat.LATENT, scale_index.ravel(), self.model.y_tables)
        if done is not None:
            done(1 - ENTROPY_PARAMETERS_PART)
        return header, sections, alpha, (text, density), z_hat, symbols.reshape(mean_q.shape), mean_q


_STREAMS = {nicformat.HYPERLATENT: "the hyperlatent's", nicformat.LATENT: "the latent's"}


class _MadeByEarlier(Exception):
    """Raised inside a decode when the file is one for :meth:`DecodingSteps._earlier_codec`'s codec:
    the decode starts again there, with the bytes already read (a path is not read twice: a
    pipe has nothing left the second time, and a file may have changed), and its errors name
    the path the file was given by, as :meth:`DecodingSteps._entropy_decode` names them."""

    def __init__(self, codec: Codec, content: bytes, path) -> None:
        super().__init__(codec.model_id)
        self.codec, self.content, self.path = codec, content, path

    def hand_on(self, call: Callable[[Codec, bytes], _R]) -> _R:
        try:
            return call(self.codec, self.content)
        except (FormatError, ModelMismatchError) as exc:
            if self.path is None:
                raise
            raise _named(exc, self.path) from None


def _named(exc: NicodecError, path) -> NicodecError:
    """``exc`` again, its message led by the path of the file it is about."""
    named = type(exc)(f"{os.fsdecode(path)}: {exc}")
    named.__dict__.update(exc.__dict__)  # what it says beside its message (ModelMismatchError.shipped_decodes)
    return named


def _decode_stream(sections: dict[bytes, bytes], tag: bytes, table_ids: np.ndarray, tables) -> np.ndarray:
    """A section's rANS stream decoded; its damage named with the section."""
    try:
        return rans.decode(sections[tag], table_ids, tables)
    except FormatError as exc:
        raise FormatError(f"the file is damaged: {exc} (the {tag.decode('ascii')} section, {_STREAMS[tag]} "
                          "symbols)") from None
