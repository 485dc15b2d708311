"""nicodec: a learned image codec with a torch-free runtime.

    >>> import nicodec
    >>> codec = nicodec.Codec()            # the model shipped with the package
    >>> data = codec.encode("photo.png")   # bytes of a .nic file
    >>> image = codec.decode(data)         # a PIL image

``Codec`` is imported on first use, so ``import nicodec`` stays cheap.
"""

from .errors import (
    FormatError,
    LimitError,
    ModelError,
    ModelMismatchError,
    NicodecError,
    OutputExistsError,
    QualityError,
    UnsupportedImageError,
)

__all__ = [
    "Codec",
    "FormatError",
    "LimitError",
    "ModelError",
    "ModelMismatchError",
    "NicodecError",
    "OutputExistsError",
    "QualityError",
    "UnsupportedImageError",
]


def __getattr__(name: str):
    if name == "Codec":
        from .codec import Codec

        return Codec
    raise AttributeError(f"module 'nicodec' has no attribute {name!r}")
