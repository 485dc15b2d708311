"""Importing this module registers the ``.nic`` Pillow plugin with the default codec.

    >>> import nicodec.pillow_register  # noqa: F401
    >>> from PIL import Image
    >>> Image.open("photo.nic")

The model is loaded on first use, not on import. To use another model or other
providers, call :func:`nicodec.pillow_plugin.register` with a ``Codec`` instead.
"""

from .pillow_plugin import register

register()
