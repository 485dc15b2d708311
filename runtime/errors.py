"""The exceptions nicodec raises for every problem it can name.

Everything the runtime refuses on purpose is a :class:`NicodecError`, so an
application can catch one family and show its message to a person.
"""

import struct


class NicodecError(Exception):
    """Base class of every error nicodec raises on purpose."""


class FormatError(NicodecError):
    """A ``.nic`` file is malformed: bad magic, unknown version, bad lengths or checksum."""


class ModelMismatchError(NicodecError):
    """A file was made by a model other than the one loaded.

    ``shipped_decodes`` is true where the models nicodec ships decode the file (a model folder
    was given, and it is not the one that made the file)."""

    shipped_decodes = False


class ModelError(NicodecError):
    """A model folder is missing, incomplete or corrupted."""


class ExactnessError(NicodecError):
    """The installed onnxruntime computes a model's entropy parameters wrongly: files made with
    it would not decode elsewhere (see :mod:`nicodec.exactness`)."""


class LimitError(NicodecError):
    """An input exceeds a limit (the pixel count, a side's length, Pillow's own bound)."""


class PixelLimitError(LimitError):
    """An image (or a file's header) has more pixels than the ``max_pixels`` limit in force,
    which the caller may raise."""


class OutOfMemoryError(LimitError, MemoryError):
    """Coding an image ran out of memory (onnxruntime's allocator or numpy's); smaller tiles
    (``Codec(tile=256)``) need less, decoding especially. Also a ``MemoryError``.

    ``tiles_help`` is false where smaller tiles would not need less: memory that ran out while
    onnxruntime, a graph or the model's coding tables loaded."""

    tiles_help = True

    @classmethod
    def while_loading(cls, what: str, detail: str) -> "OutOfMemoryError":
        """The error for memory that ran out while ``what`` loaded (``detail``: what failed to
        allocate): not a broken install, and not helped by smaller tiles (``tiles_help`` false)."""
        error = cls(f"out of memory while loading {what} ({detail}); free some memory, or raise this process's "
                    "limit (ulimit -v): smaller tiles do not change what loading needs")
        error.tiles_help = False
        return error


class UnsupportedImageError(NicodecError):
    """An input image cannot be read or has a mode nicodec does not code."""


class OutputExistsError(NicodecError):
    """An output file exists and overwriting was not asked for."""


class QualityError(NicodecError, ValueError):
    """A quality or rate target that the model cannot code at (out of range, or a single-rate model)."""


DAMAGED = (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, RuntimeError,
           struct.error, EOFError)
"""What Pillow raises for a damaged file: OSError, SyntaxError and ValueError by design, the rest
from checks it lacks (a TIFF without its dimensions is a TypeError when its frames are counted),
from its AVIF decoder (a RuntimeError) and from pillow-heif's (an EOFError for a file cut
short). Caught where an image is read, and told as an :class:`UnsupportedImageError` or a
warning."""
