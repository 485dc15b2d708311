"""nicodec: a learned image codec with a torch-free runtime.

    >>> import nicodec
    >>> codec = nicodec.Codec()            # the model shipped with the package
    >>> data = codec.encode("photo.png")   # bytes of a .nic file
    >>> image = codec.decode(data)         # a PIL image
    >>> data = codec.encode("photo.png", quality=80)  # 1 (smallest) to 100 (best); default 56
    >>> result = nicodec.encode_to_target(codec, "photo.png", max_bytes=20_000)  # rate control
    >>> nicodec.describe(data)["quality"]  # a file's header and sections, as nicodec info shows them

``Codec``, the rate control and ``describe`` are imported on first use, so ``import nicodec`` stays cheap.
"""

import typing as _typing

from .errors import (
    ExactnessError,
    FormatError,
    LimitError,
    ModelError,
    ModelMismatchError,
    NicodecError,
    OutOfMemoryError,
    OutputExistsError,
    PixelLimitError,
    QualityError,
    UnsupportedImageError,
)

__all__ = [
    "Codec",
    "ExactnessError",
    "FormatError",
    "LimitError",
    "ModelError",
    "ModelMismatchError",
    "NicodecError",
    "OutOfMemoryError",
    "OutputExistsError",
    "PixelLimitError",
    "QualityError",
    "RateResult",
    "UnsupportedImageError",
    "describe",
    "encode_to_target",
]


if _typing.TYPE_CHECKING:  # imported lazily below; named here for type checkers and editors
    from .codec import Codec
    from .fileinfo import describe
    from .ratecontrol import RateResult, encode_to_target

    __version__: str


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


if not _typing.TYPE_CHECKING:  # hidden from type checkers, which would take any nicodec.X as Any through it

    def __getattr__(name: str):
        if name == "Codec":
            from .codec import Codec

            return Codec
        if name == "__version__":  # the installed distribution's, read when asked
            from importlib.metadata import PackageNotFoundError, version

            try:
                return version("nicodec")
            except PackageNotFoundError:  # a source tree that was never installed
                return "0+unknown"
        if name == "describe":
            from .fileinfo import describe

            return describe
        if name in ("encode_to_target", "RateResult"):
            from . import ratecontrol

            return getattr(ratecontrol, name)
        raise AttributeError(f"module 'nicodec' has no attribute {name!r}")
