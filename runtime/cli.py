"""The ``nicodec`` command line: a thin skin over :class:`nicodec.Codec`.

Exit codes: 0 success, 1 an error nicodec could name (one line on stderr),
2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import time
import warnings
import traceback
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .errors import NicodecError, OutputExistsError, UnsupportedImageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="nicodec: a learned image codec. Encode photos to .nic files and back.",
    pretty_exceptions_enable=False,
)
# soft_wrap: one message is one line, however narrow the terminal or pipe.
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class Provider(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


ProviderOpt = Annotated[Provider, typer.Option(help="onnxruntime provider for the transforms.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(min=1, help="onnxruntime threads (default: one per core).")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")]
ModelOpt = Annotated[
    Optional[Path],
    typer.Option(exists=True, file_okay=False, help="Model folder (default: the model shipped with nicodec)."),
]
DebugOpt = Annotated[bool, typer.Option(help="Show the full traceback on errors.")]
DEFAULT_MAX_PIXELS = 50_000_000  # the same as nicodec.codec.DEFAULT_MAX_PIXELS, without importing numpy
MaxPixelsOpt = Annotated[
    int,
    typer.Option(min=1, help="Refuse images with more pixels (memory grows about 0.5 KB a pixel)."),
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nicodec")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"nicodec {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """nicodec: a learned image codec."""


@contextmanager
def _reporting(debug: bool):
    """Turn every failure inside the block into one line on stderr and an exit code."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    except (typer.Exit, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt included, on purpose
        _fail(exc, debug)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"warning: {message}", markup=False)


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        err.print(traceback.format_exc(), markup=False)
    if isinstance(exc, KeyboardInterrupt):
        err.print("interrupted; nothing was written", markup=False)
        raise typer.Exit(130)
    if isinstance(exc, NicodecError):
        err.print(f"error: {exc}", markup=False)
    else:
        err.print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", markup=False)
    raise typer.Exit(1)


def _codec(model: Optional[Path], provider: Provider, threads: Optional[int], max_pixels: int):
    from .codec import Codec

    return Codec(model, providers=provider.value, threads=threads, max_pixels=max_pixels)


def _target(input: Path, output: Optional[Path], suffix: str, force: bool) -> Path:
    """The output path, refused early when it cannot or must not be written."""
    if output is None:
        if not input.name or input.is_dir():
            raise NicodecError(f"{input} is a directory, not a file")
        output = input.with_suffix(suffix)
    if output.is_dir():
        raise NicodecError(f"the output {output} is a directory; give a file name")
    if output.exists():
        if input.exists() and os.path.samefile(input, output):
            raise NicodecError(f"the output {output} is the input; choose another name")
        if not force:
            raise OutputExistsError(f"{output} exists; use --force to overwrite it")
    return output


@app.command()
def encode(
    input: Annotated[Path, typer.Argument(help="Image to compress (any format Pillow reads).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (default: INPUT with .nic).")] = None,
    force: ForceOpt = False,
    provider: ProviderOpt = Provider.auto,
    threads: ThreadsOpt = None,
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    debug: DebugOpt = False,
) -> None:
    """Compress an image into a .nic file and report its size, bits per pixel and time."""
    from .files import write_atomic

    with _reporting(debug):
        target = _target(input, output, ".nic", force)
        codec = _codec(model, provider, threads, max_pixels)
        start = time.perf_counter()
        from .images import to_rgb

        pixels = to_rgb(input)
        data = codec.encode(pixels)
        seconds = time.perf_counter() - start
        write_atomic(target, lambda f: f.write(data), force=force)
    height, width = pixels.shape[:2]
    bpp = 8 * len(data) / (width * height)
    out.print(f"{input} -> {target}: {width}x{height}, {len(data):,} bytes, {bpp:.4f} bpp, {seconds:.2f} s", markup=False)


@app.command()
def decode(
    input: Annotated[Path, typer.Argument(help="A .nic file.")],
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Output image; its extension picks the format (default: INPUT with .png)."),
    ] = None,
    force: ForceOpt = False,
    provider: ProviderOpt = Provider.auto,
    threads: ThreadsOpt = None,
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    debug: DebugOpt = False,
) -> None:
    """Decompress a .nic file into an image (PNG unless the output's extension says otherwise)."""
    from PIL import Image

    from .files import write_atomic

    with _reporting(debug):
        target = _target(input, output, ".png", force)
        fmt = Image.registered_extensions().get(target.suffix.lower())
        if fmt is None or fmt not in Image.SAVE:
            raise UnsupportedImageError(
                f"cannot write images with the extension {target.suffix!r}; use .png, .jpg, .webp, ..."
            )
        data = _read(input)
        codec = _codec(model, provider, threads, max_pixels)
        start = time.perf_counter()
        image = codec.decode(data)
        seconds = time.perf_counter() - start
        write_atomic(target, lambda f: image.save(f, format=fmt), force=force)
    out.print(f"{input} -> {target}: {image.width}x{image.height}, {seconds:.2f} s", markup=False)


@app.command()
def info(
    input: Annotated[Path, typer.Argument(help="A .nic file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Show a .nic file's header: model, size, quality and sections (no decoding)."""
    from . import format as nicformat

    with _reporting(debug):
        data = _read(input)
        header, sections = nicformat.unpack(data)
    facts = {
        "file": str(input),
        "bytes": len(data),
        "format_version": header.version,
        "model_id": header.model_id,
        "model_hash": header.model_hash.hex(),
        "width": header.width,
        "height": header.height,
        "quality": header.quality,
        "bpp": round(8 * len(data) / (header.width * header.height), 6),
        "sections": {tag.decode("ascii"): len(payload) for tag, payload in sections.items()},
    }
    if as_json:
        out.print_json(json.dumps(facts))
        return
    for key, value in facts.items():
        out.print(f"{key:>15}: {value}", markup=False)


def _read(path: Path) -> bytes:
    if path.is_dir():
        raise NicodecError(f"{path} is a directory, not a .nic file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NicodecError(f"{path}: no such file") from None
    except OSError as exc:
        raise NicodecError(f"cannot read {path}: {exc.strerror}") from None


def main() -> None:
    """Entry point of the ``nicodec`` console script."""
    app(prog_name="nicodec")
