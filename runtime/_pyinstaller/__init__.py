"""PyInstaller's hooks for nicodec, found through the ``pyinstaller40`` entry point that
pyproject.toml declares, so that an application frozen with PyInstaller carries the model files.

PyInstaller follows imports, not data: without these hooks a frozen application lacked the
shipped model (``models/default``, ``models/earlier``) and every ``Codec()`` failed with "not a
nicodec model folder". The hook files are read by PyInstaller only, at build time; nothing here
is imported by nicodec itself.
"""

import os


def get_hook_dirs() -> list[str]:
    """The folders of hook files (``hook-MODULE.py``) that PyInstaller reads beside its own."""
    return [os.path.dirname(__file__)]
