"""PyInstaller's hook for ``nicodec``: the model files shipped in the package (the default
model's graphs, tables and manifest, and the earlier models that still decode their files), and
the distribution's metadata, which ``nicodec.__version__`` and ``nicodec --version`` read."""

from PyInstaller.utils.hooks import collect_data_files, copy_metadata

datas = collect_data_files("nicodec", includes=["models/**/*"]) + copy_metadata("nicodec")
