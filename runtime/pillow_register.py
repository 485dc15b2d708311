"""Importing this module registers the ``.nic`` Pillow plugin with the default codec.

    >>> import nicodec.pillow_register  # noqa: F401
    >>> from PIL import Image
    >>> Image.open("photo.nic")

The model is loaded on first use, not on import. To use another model or other
providers, call :func:`nicodec.pillow_plugin.register` with a ``Codec`` instead. A
registration made before this module is first imported (an application's own ``Codec``)
stays: a library that imports it to add ``.nic`` support does not replace it.
"""

from PIL import Image

from .pillow_plugin import FORMAT, register

if FORMAT not in Image.OPEN:
    register()
