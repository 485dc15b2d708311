"""The public API as a type checker sees it: the package ships ``py.typed``, so an application
that embeds nicodec gets its mistakes named by mypy, and the documented code type-checks.

A decorator without a return annotation once made the whole ``Codec`` class ``Any`` under mypy:
every misuse passed and ``codec.encode(...)`` returned ``Any`` (``--strict``'s no-any-return
in the service example of docs/python-api.md). Runs where mypy is installed (``pip install
mypy``); it reads the package from its source folder, so an editable install works too.
"""

import re
import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

# docs/python-api.md's examples, with the types a program relies on written out.
RIGHT = '''
import array
import gzip
import io

from PIL import Image

import nicodec
import nicodec.pillow_plugin

codec: nicodec.Codec = nicodec.Codec(providers="cpu", threads=2).prepare()
gpu = nicodec.Codec(providers=[("OpenVINOExecutionProvider", {"device_type": "GPU"})])  # a provider with its options
named = nicodec.Codec(providers=["OpenVINOExecutionProvider", ("CUDAExecutionProvider", {"device_id": 1})])
version: str = nicodec.__version__
quality: float | None = codec.default_quality
data: bytes = codec.encode("photo.png", quality=80)
data = codec.encode(b"...", progress=lambda done, total: print(done / total))
image: Image.Image = codec.decode(data)
pixels = codec.decode(data, as_array=True)
width: int = pixels.shape[1]
result = nicodec.encode_to_target(codec, "photo.png", max_bytes=20_000,
                                  progress=lambda done, total, encode: done < total)  # a bar's update returns a bool
best: bytes = result.data
nicodec.pillow_plugin.register(codec)
model_id: str = nicodec.describe(data)["model_id"]
data = codec.encode("photo.png", strip={"exif", "xmp"})  # the kinds of metadata to leave out
data = codec.encode("photo.png", strip="exif")

# numpy's numbers, which the runtime takes (np.float32 is no float, np.int64 no int).
import numpy as np

data = codec.encode("photo.png", quality=np.float32(50))
sized: nicodec.Codec = nicodec.Codec(threads=np.int64(2), tile=np.int64(512), max_pixels=np.int32(10**6))
targeted = nicodec.encode_to_target(codec, "photo.png", bpp=np.float32(0.5), max_encodes=np.int64(4))
numbered = nicodec.Codec(providers=[("CUDAExecutionProvider", {"device_id": np.int64(1), "use_tf32": np.True_})])

# Any buffer and any binary reader, as the docs say (not only bytes and IO[bytes]).
data = codec.encode(array.array("B", b"..."))
data = codec.encode(gzip.open("photo.png.gz"))
image = codec.decode(array.array("B", data))


def from_stream(stream: io.BufferedIOBase) -> bytes:
    return codec.encode(stream)


class Counting:  # a duck-typed codec, which register takes
    def __init__(self) -> None:
        self.calls = 0

    def encode(self, image: object, **options: object) -> bytes:
        self.calls += 1
        return codec.encode(b"...")

    def decode(self, data: bytes, **options: object) -> Image.Image:
        return codec.decode(data)


nicodec.pillow_plugin.register(Counting())


def compress(upload: bytes) -> bytes:
    try:
        return codec.encode(upload)
    except nicodec.NicodecError as exc:
        raise ValueError(str(exc)) from exc


def restore_png(blob: bytes) -> bytes:
    image = codec.decode(blob)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=image.info.get("exif", b""))
    return buffer.getvalue()
'''

# Each line marked "# wrong" is a mistake a type checker should name.
WRONG = '''
import nicodec
import nicodec.pillow_plugin

codec = nicodec.Codec()
codec_typo = nicodec.Codec(thread=2)  # wrong
encode_typo = codec.encode("photo.png", qualty=80)  # wrong
quality_text = codec.encode("photo.png", quality="high")  # wrong
prepare_typo = codec.prepare(encoder=False)  # wrong
decode_typo = codec.decode(b"", as_arr=True)  # wrong
swapped = nicodec.encode_to_target("photo.png", codec, bpp=0.5)  # wrong
nicodec.pillow_plugin.register(3)  # wrong
not_bytes: str = codec.encode("photo.png")  # wrong
described = nicodec.describe(3)  # wrong
options_as_text = nicodec.Codec(providers=[("OpenVINOExecutionProvider", "device_type=GPU")])  # wrong
misspelt = nicodec.describe(b"")["modelid"]  # wrong
strip_count = codec.encode("photo.png", strip=3)  # wrong
'''


def _mypy(tmp_path: Path, program: str) -> list[str]:
    """mypy --strict's errors in ``program``, with nicodec read from its source folder."""
    import nicodec

    source = tmp_path / "source"
    source.mkdir()
    (source / "nicodec").symlink_to(Path(nicodec.__file__).parent, target_is_directory=True)
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {source}\n", encoding="utf-8")
    user = tmp_path / "user.py"
    user.write_text(textwrap.dedent(program), encoding="utf-8")
    # --follow-imports=silent: nicodec is checked for its types, but its own findings are not the user's
    out, err, _ = mypy_api.run(["--config-file", str(config), "--strict", "--follow-imports=silent",
                                "--ignore-missing-imports", "--no-error-summary",
                                "--cache-dir", str(tmp_path / "cache"), str(user)])
    assert not err, err
    return [line for line in out.splitlines() if line.strip()]


def test_the_documented_api_type_checks_under_mypy_strict(tmp_path):
    assert _mypy(tmp_path, RIGHT) == []


def test_mypy_names_each_misuse_of_the_api(tmp_path):
    said = _mypy(tmp_path, WRONG)
    flagged = {int(m.group(1)) for line in said if (m := re.match(r".*user\.py:(\d+): error", line))}
    wrong = {number for number, line in enumerate(textwrap.dedent(WRONG).splitlines(), 1) if line.endswith("# wrong")}
    assert flagged == wrong, said


def test_the_public_annotations_resolve_at_run_time():
    """Tools that evaluate annotations (Sphinx, pydantic, inspect.signature(eval_str=True)) read
    them with typing.get_type_hints; a name imported for type checkers alone broke it."""
    import typing

    import nicodec
    from nicodec import pillow_plugin

    for function in (nicodec.Codec.__init__, nicodec.Codec.encode, nicodec.Codec.decode, nicodec.Codec.prepare,
                     nicodec.Codec.decode_symbols, nicodec.encode_to_target, nicodec.describe, pillow_plugin.register):
        assert typing.get_type_hints(function), function
