"""The ``nicodec`` command line: a thin skin over :class:`nicodec.Codec`.

Exit codes: 0 success, 1 an error nicodec could name (one line on stderr),
2 a usage error (a quality or rate target out of range, several of them, or one given to a
single-rate model included), 130 interrupted (Ctrl-C), 143, 129 and 152 stopped by SIGTERM, SIGHUP and
SIGXCPU.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import signal
import sys
import time
import warnings
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from . import arguments, stdio, targets
from .errors import (ModelMismatchError, NicodecError, OutOfMemoryError, OutputExistsError, PixelLimitError,
                     UnsupportedImageError)
from .format import DEFAULT_MAX_PIXELS
from .sessions import MAX_THREADS

app = typer.Typer(
    no_args_is_help=True,
    help="nicodec: a learned image codec. Encode photos to .nic files and back.",
    pretty_exceptions_enable=False,
)
# One message is one line: a newline in a file name is shown as \n (a tab is left as it is).
_CONTROLS = ({c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) != "\t"}
             | {ord("\n"): "\\n", 0x2028: "\\u2028", 0x2029: "\\u2029"})  # the last two: line breaks to Python


def _zero_size(name: str) -> bool:
    """Whether the environment variable ``name`` (COLUMNS, LINES) is 0, which Rich takes for a
    console 0 wide (or high) and prints nothing into, errors included; it is ignored, as other
    settings that are not sizes are."""
    value = os.environ.get(name, "")
    return value.isdigit() and int(value) == 0


class _Nowhere(io.TextIOBase):
    """Where a console writes when its stream is closed (``2>&-``: ``sys.stderr`` is None), as
    newer Rich does by itself; Rich 10.11 wrote to None, an AttributeError."""

    def write(self, text: str) -> int:
        return len(text)


class _Console(Console):
    """Rich's console, for text that may hold file names: control characters in them (an
    escape sequence, a carriage return, a newline) are shown escaped rather than sent to the terminal,
    characters the stream's encoding lacks (``PYTHONIOENCODING=ascii``, a name that is not
    UTF-8) as backslash escapes rather than a UnicodeEncodeError, and a reader gone (``| head
    -1``) is a BrokenPipeError for :func:`_writing_report` rather than Rich's silent exit, as
    is a standard output that is closed (``>&-``), which Rich would write to nowhere."""

    def __init__(self, **kwargs) -> None:
        for name, size, default in (("COLUMNS", "width", 80), ("LINES", "height", 25)):
            if _zero_size(name):
                kwargs.setdefault(size, default)
        self._told_terminal = kwargs.get("force_terminal")
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def file(self):
        stream = Console.file.fget(self)  # type: ignore[attr-defined]
        return _Nowhere() if stream is None else stream

    @file.setter
    def file(self, new_file) -> None:
        Console.file.fset(self, new_file)  # type: ignore[attr-defined]

    @property
    def on_terminal(self) -> bool:
        """Whether the stream is a terminal (or the console was made with ``force_terminal``),
        whatever FORCE_COLOR or TTY_COMPATIBLE say (Rich's is_terminal follows them): progress
        is drawn for a person, not into a CI job's log."""
        if self._told_terminal is not None:
            return bool(self._told_terminal)
        try:
            return self.file.isatty()
        except (AttributeError, ValueError, OSError):  # no stream, or a closed one
            return False

    def print(self, *objects, **kwargs) -> None:
        if not self.stderr and self._file is None and sys.stdout is None:
            raise OSError(errno.EBADF, "standard output is closed")
        stream = self.file
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
        super().print(*(o.translate(_CONTROLS) if isinstance(o, str) else o for o in objects), **kwargs)

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe (the reader stopped)")


# soft_wrap: one message is one line, however narrow the terminal or pipe. emoji off: a name
# such as x:cat:.png is shown as it is, not with Rich's emoji for :cat:.
err = _Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
out = _Console(highlight=False, soft_wrap=True, emoji=False)

_SHOWN_WARNINGS: set[str] = set()
"""Warnings printed by this command line: a rate search reads its image more than once, and
says what it has to say about it once."""


class Provider(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


ProviderOpt = Annotated[Provider, typer.Option(help="onnxruntime provider for the transforms.")]
MAX_JOBS = 64
"""The most files a batch codes at once: beyond a machine's cores more only adds memory."""
ThreadsOpt = Annotated[
    Optional[int], typer.Option(min=1, max=MAX_THREADS, help="onnxruntime threads (default: one per core).")
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(help="Synthesis precision: fp16 is faster on CPUs with fp16 arithmetic; pixels may differ slightly."),
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")]
ModelOpt = Annotated[
    Optional[Path],
    typer.Option(exists=True, file_okay=False, help="Model folder (default: the model shipped with nicodec)."),
]
DebugOpt = Annotated[bool, typer.Option(help="Show the full traceback on errors.")]
JobsOpt = Annotated[int, typer.Option(min=1, max=MAX_JOBS, help="Files coded at once, for a folder or several files "
                                      "(each holds its image in memory: up to 1.4 GB for a 24-megapixel photo; --tile 512 needs less).")]
MaxPixelsOpt = Annotated[
    int,
    typer.Option(min=1, help="Refuse images with more pixels (default: Pillow's decompression-bomb threshold)."),
]


def _tile_size(value: int) -> int:
    if value % 64:
        raise typer.BadParameter(f"{value} is not a multiple of 64")
    return value


TileOpt = Annotated[
    int,
    typer.Option(min=64, callback=_tile_size, help="Run the networks on tiles of this many pixels a side (a multiple "
                 "of 64): the same file; smaller tiles take more time and less memory (a 24-megapixel image: "
                 "1.3 GB to encode and 1.1 GB to decode at 1024, 0.9 and 0.7 GB at 512)."),
]
_RATE_PANEL = "Quality and rate control (one at most; variable-rate models)"


def _quality_range(value: Optional[float]) -> Optional[float]:
    from .model import QUALITY_MAX, QUALITY_MIN

    if value is not None and not QUALITY_MIN <= value <= QUALITY_MAX:  # NaN fails too
        raise typer.BadParameter(f"{value} is not a quality from {QUALITY_MIN:g} to {QUALITY_MAX:g}")
    return value


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a positive number")
    return value


QualityOpt = Annotated[
    Optional[float],
    typer.Option(
        callback=_quality_range, rich_help_panel=_RATE_PANEL,
        help="From 1 (smallest file) to 100 (best picture), any number between (default: the model's, 56 for the shipped one).",
    ),
]
RefineOpt = Annotated[
    int,
    typer.Option(
        min=0, max=1000, rich_help_panel=_RATE_PANEL,
        help="Gradient steps on the latent before coding: much slower (each about 1.2 decodes' work), about 2% "
        "fewer bits for the same PSNR at 60 steps (first 6 Kodak images); 0 codes the network's first guess.",
    ),
]
TargetBppOpt = Annotated[
    Optional[float],
    typer.Option(
        callback=_positive, rich_help_panel=_RATE_PANEL,
        help="Search the quality for the file closest to this many bits per pixel (the closest reachable if out of reach).",
    ),
]
TargetPsnrOpt = Annotated[
    Optional[float],
    typer.Option(
        callback=_positive, rich_help_panel=_RATE_PANEL,
        help="Search the lowest quality whose decoded picture reaches this PSNR in dB (the best reachable if out of "
        "reach); over the visible pixels of a transparent image, unless --exact.",
    ),
]
MaxBytesOpt = Annotated[
    Optional[int],
    typer.Option(
        min=1, rich_help_panel=_RATE_PANEL,
        help="Search the highest quality whose file has at most this many bytes (an error if even quality 1 is larger).",
    ),
]


@dataclass(frozen=True)
class _Rate:
    """The encode command's rate options: a quality, one target, or none (the model's default quality)."""

    quality: Optional[float] = None
    bpp: Optional[float] = None
    psnr: Optional[float] = None
    max_bytes: Optional[int] = None

    def given(self) -> list[str]:
        options = ("--quality", "--target-bpp", "--target-psnr", "--max-bytes")
        values = (self.quality, self.bpp, self.psnr, self.max_bytes)
        return [option for option, value in zip(options, values) if value is not None]

    def check_options(self) -> None:
        """A usage error (exit 2) for more than one of the options."""
        given = self.given()
        if len(given) > 1:
            raise typer.BadParameter("these options exclude each other: give one of them", param_hint=given)

    def check_model(self, codec) -> None:
        """A usage error (exit 2) for a quality or target given to a single-rate model."""
        given = self.given()
        if given and not codec.model.variable_rate:
            raise typer.BadParameter(
                f"the model {codec.model_id} is single-rate: it codes every image at the one rate it was "
                "trained for and takes no quality or rate target",
                param_hint=given,
            )

    @property
    def searching(self) -> bool:
        """Whether a target is given, so the quality is searched."""
        return self.bpp is not None or self.psnr is not None or self.max_bytes is not None

    def encode(self, codec, source, options: dict, progress=None):
        """``(file bytes, RateResult or None)``: a search for a target, else one encode at the quality.

        ``options``: ``Codec.encode``'s ``strip`` and ``exact``.

        ``progress`` is called as each encode goes with ``(done, total, encode)`` (``Codec.encode``'s
        ``progress``), the encode of the search counted from 1 (always 1 without a target).
        """
        if not self.searching:
            step = None if progress is None else lambda done, total: progress(done, total, 1)
            return codec.encode(source, quality=self.quality, progress=step, **options), None
        from .ratecontrol import encode_to_target

        result = encode_to_target(codec, source, bpp=self.bpp, psnr=self.psnr, max_bytes=self.max_bytes, **options,
                                  progress=progress)
        return result.data, result

    def miss(self, result) -> Optional[str]:
        """What a search that did not meet its target reached, or None."""
        if result is None or result.met:
            return None
        if self.bpp is not None:
            return (f"the target of {self.bpp:g} bpp was not met: the closest file found is {result.bpp:.4f} bpp "
                    f"(quality {_quality_text(result.quality)})")
        return (f"the target of {self.psnr:g} dB was not met: the best file found is {result.psnr:.2f} dB "
                f"(quality {_quality_text(result.quality)})")


def _version_callback(value: bool) -> None:
    if value:
        with _writing_report():
            from . import __version__

            out.print(f"nicodec {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """nicodec: a learned image codec."""
    _SHOWN_WARNINGS.clear()  # a new command line (tests run many in one process)
    if ctx.invoked_subcommand in ("encode", "decode", "verify"):
        _load_extensions()


def _load_extensions() -> None:
    """Import numpy, Pillow with its format plugins, and the codec, with Ctrl-C, SIGTERM and
    SIGHUP held back until they are in (a few tenths of a second): a stop inside a C
    extension's initialisation comes out of the import as an ImportError (numpy's "failed to
    import"), or is swallowed with the format plugin Pillow was loading. onnxruntime is held
    the same way where it is imported (``nicodec.sessions``)."""
    from .batch import signals_held

    with signals_held():
        from PIL import Image

        from . import codec  # noqa: F401 - numpy, and the rest of the work's modules

        Image.init()


@contextmanager
def _reporting(debug: bool):
    """Turn every failure inside the block into one line on stderr and an exit code."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # Pillow's warning of an image above its own pixel limit: --max-pixels judges it here
            # (the library leaves it to its host program's filters).
            warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
            yield
    except (typer.Exit, SystemExit, typer.BadParameter):
        raise
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt included, on purpose
        _fail(exc, debug)


@contextmanager
def _writing_report():
    """Report lines that cannot be written (stdout on a full disk, a reader gone) are one error
    line on stderr and exit code 1, not a traceback."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            stdio.drop_stdout()
        err.print(f"error: cannot write the report: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message)
    if text not in _SHOWN_WARNINGS:
        _SHOWN_WARNINGS.add(text)
        err.print(f"warning: {text}", markup=False)


@contextmanager
def _naming(path):
    """Errors about one input (a damaged file, an image nicodec cannot code) name it, as a
    batch's messages do."""
    try:
        yield
    except NicodecError as exc:
        exc.args = (stdio.about(path, str(exc)),)
        raise


def _check_input(input: Path, wanted: str) -> None:
    """Refuse a missing input, or one of the other kind (``wanted``: ``"image"`` or ``".nic"``),
    before the output is looked at: its message would point at the wrong file."""
    from .files import read_file
    from .format import MAGIC

    if stdio.is_stdio(input):
        return  # read later, where its errors are named
    try:
        if not input.is_file():
            if not input.exists():
                read_file(input)  # a missing file (or a broken link) named as read_file names it
            return  # a pipe or a device: read later
        with open(input, "rb") as f:
            head = f.read(len(MAGIC))
    except (OSError, ValueError):  # a folder that cannot be entered, a NUL in the name
        return  # left to the read that follows, which names the error
    if not head:
        raise NicodecError(f"{input} is empty")
    nic = head == MAGIC
    if wanted == "image" and nic:
        raise NicodecError(f"{input} is a nicodec file already; `nicodec decode` turns it back into an image")
    if wanted == ".nic" and not nic:
        raise NicodecError(f"{input} is not a nicodec file (wrong magic bytes); `nicodec encode` compresses an image")


HINTS = (
    (PixelLimitError, "--max-pixels", "--max-pixels sets the limit"),
    (ModelMismatchError, "--model", "--model DIR loads another model folder"),
    (OutOfMemoryError, "--tile", "--tile 256 sets the tile size"),
)
"""What an error of these classes adds on the command line, unless its message names the option."""


def _stopped(exc: KeyboardInterrupt) -> str:
    """How a command was stopped: Ctrl-C, or the signal of a ``Terminated``."""
    signum = getattr(exc, "signum", None)
    return "interrupted" if signum in (None, signal.SIGINT) else f"stopped by {signal.Signals(signum).name}"


def _stop_code(exc: KeyboardInterrupt) -> int:
    """The shell's convention: 128 plus the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


_STOP_SHOWN = [False]
"""Whether this command line's stop has been shown (:func:`_stop`); :func:`main` shows one that
Typer caught first."""


def _stop(exc: KeyboardInterrupt, detail: str = "") -> typer.Exit:
    """Show how the command was stopped, ``detail`` after it, and give the exit to raise."""
    err.print(_stopped(exc) + detail, markup=False)
    _STOP_SHOWN[0] = True
    return typer.Exit(_stop_code(exc))


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        for chunk in traceback.format_exception(exc):
            # A frame's lines are lines; the exception's message (which may hold a file name) is one.
            chunk = chunk.strip("\n")
            for line in chunk.split("\n") if chunk.startswith(("  File ", "Traceback ")) else [chunk]:
                err.print(line, markup=False)
    if isinstance(exc, KeyboardInterrupt):
        raise _stop(exc, "; nothing was written")
    if isinstance(exc, NicodecError):
        message = str(exc)
        for kind, option, hint in HINTS:
            if isinstance(exc, kind) and option not in message:
                message += f" ({hint})"
        err.print(f"error: {message}", markup=False)
    elif isinstance(exc, MemoryError):  # outside the codec's own naming of it (Python's, while a file is read)
        detail = f" ({exc})" if str(exc).strip() else ""
        err.print(f"error: out of memory{detail}; free some memory, or raise this process's limit (ulimit -v)",
                  markup=False)
    else:
        err.print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", markup=False)
    raise typer.Exit(1)


@contextmanager
def _bar(doing: str, name: str, searching: bool = False):
    """A progress bar on stderr while one file is coded (a large image takes a minute, a rate
    search several encodes), with the time left; nothing when stderr is not a terminal.
    Yields the function to give the work's progress, ``(done, total, encode)`` as
    ``encode_to_target`` gives it, or None off a terminal."""
    if not err.on_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Column

    name = Path(name).name or name  # the file's name: a long path would push the rest out of the line
    # markup off: a path is not markup. The description gives way (an ellipsis) to the bar, the
    # percentage and the time left, which is that of the encode under way in a search.
    room = Column(no_wrap=True, overflow="ellipsis", max_width=max(12, err.width - (46 if searching else 36)))
    columns = [TextColumn("{task.description}", markup=False, table_column=room)]
    if searching:
        columns.append(TextColumn("encode {task.fields[encode]}"))
    # Columns that Rich 10.11, the oldest Typer 0.16 takes, has too; the first progress comes at once.
    columns += [BarColumn(bar_width=20), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"{doing} {name}".translate(_CONTROLS), total=1, encode=1)
        shown = [0]

        def step(done: int, total: int, encode: int = 1) -> None:
            if encode != shown[0]:  # a new encode of the search: a bar of its own, shown at once
                shown[0] = encode
                bar.reset(task, total=total, completed=done, encode=encode)
                bar.refresh()
            else:
                bar.update(task, completed=done, total=total)

        yield step


def _codec(model: Optional[Path], provider: Provider, threads: Optional[int], max_pixels: int,
           precision: Precision = Precision.fp32, refine: int = 0, tile: int = 1024, *, encode: bool = False,
           decode: bool = False):
    """The Codec, with the graphs the command runs loaded (so that a model that cannot encode, or a
    graph that does not load, stops the command before any work); the others are never loaded."""
    from .codec import Codec

    codec = Codec(model, providers=provider.value, threads=threads, max_pixels=max_pixels, precision=precision.value,
                  refine=refine, tile=tile)
    return codec.prepare(encode=encode, decode=decode)


def _batch_items(inputs: list[Path], output: Optional[str], suffix: str, debug: bool):
    """The files of a batch and their outputs, and the output folder to make before any work
    (None for outputs beside the inputs): a folder's tree (under ``output``, or beside each
    file), or several files named on the command line (into ``output``, or beside each)."""
    from PIL import Image

    from .batch import Item, plan, real_path
    from .files import nearest_existing
    from .images import readable_suffixes

    with _reporting(debug):
        folder = len(inputs) == 1
        what = "a folder input needs" if folder else "several inputs need"
        if any(stdio.is_stdio(path) for path in inputs):
            raise NicodecError("- (standard input) is an input on its own, not one of several")
        if stdio.is_stdio(output):
            raise NicodecError(f"-o - writes one file to standard output; {what} an output folder")
        if output == "":
            raise NicodecError("the output name is empty")
        if not folder and any(targets.is_dir(path) for path in inputs):
            raise NicodecError("give one folder, or several files; not folders among several inputs")
        root = (inputs[0] if folder else None) if output is None else Path(output)
        if root is not None:
            devices = targets.device_folder(root)
            if devices:  # as root, -o /dev/ wrote files into /dev
                named = "" if os.fspath(root).rstrip("/") == devices else f" ({devices})"
                raise NicodecError(f"the output folder {root}{named} holds devices or open file descriptors, not files "
                                   "to write")
            try:
                above = nearest_existing(root)
            except (OSError, ValueError) as exc:
                raise NicodecError(f"cannot use the output {root}: {getattr(exc, 'strerror', None) or exc}") from None
            if not above.is_dir():
                where = "is a file" if above == root else f"lies under a file ({above})"
                raise NicodecError(f"the output {root} {where}; {what} an output folder")
            if not root.exists() and (root.suffix.lower() == ".nic" or root.suffix.lower() in Image.registered_extensions()):
                raise NicodecError(f"{what} an output folder, and {root} is named like a file")
        if folder:
            kinds = readable_suffixes() if suffix == ".nic" else [".nic"]
            items = plan(inputs[0], root, kinds, suffix)
            if real_path(root).startswith(os.path.join(real_path(inputs[0]), "")):
                err.print(f"warning: the output folder {root} lies inside {inputs[0]}; it is not searched for "
                          f"files to {'encode' if suffix == '.nic' else 'decode'}", markup=False)
            if not items:  # not an error: an inbox folder that is empty today is not a mistake
                err.print(f"warning: no files to {'encode' if suffix == '.nic' else 'decode'} in {inputs[0]} (looked for "
                          + ("files with the extension of an image Pillow reads" if suffix == ".nic" else ".nic files")
                          + ", hidden ones excepted)",
                          markup=False)
            return items, root
        unique: dict[str, Path] = {}
        for path in inputs:
            unique.setdefault(real_path(path), path)  # a file named twice is coded once
            if root is None:
                targets.check_beside(path, several=True)
        items = [Item(path, (path if root is None else root / path.name).with_suffix(suffix)) for path in unique.values()]
        return items, root


def _warn_if_named_like_an_image(target: Path, from_stdin: bool = False) -> None:
    from PIL import Image

    suffix = target.suffix.lower()
    if suffix != ".nic" and suffix in Image.registered_extensions():
        err.print(f"warning: {target} will hold a .nic file, whatever its extension says", markup=False)
    elif not suffix and not from_stdin:
        # A shell glob that matched one file, with -o meant as a folder: the next run, with
        # two files, would find a file there.
        err.print(f"warning: {target} will be a .nic file, not a folder (end the name with / to write into a "
                  "folder)", markup=False)


_ENCODE_HELP = """Compress an image into a .nic file and report its size, bits per pixel, quality and time.

Given a folder, compress every image under it into the same tree under OUTPUT
(default: beside each image), skipping outputs that are up to date.

Given several images, compress them the same way, into OUTPUT or beside each.

A rate target searches the quality, with a few encodes per image, and
reports what it reached. A bpp or PSNR target out of reach gives the
closest file and a warning; a --max-bytes even quality 1 exceeds, an error.
"""


@app.command(help=_ENCODE_HELP)
def encode(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            readable=False, metavar="INPUT",
            help="Image to compress (any format Pillow reads), a folder of them, or - for standard input; "
            "or several images.",
        ),
    ],
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output", "-o",
            help="Output file (default: INPUT with .nic), or - for standard output; for a folder or several images, "
            "the output folder.",
        ),
    ] = None,
    force: ForceOpt = False,
    provider: ProviderOpt = Provider.auto,
    threads: ThreadsOpt = None,
    jobs: JobsOpt = 1,
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    tile: TileOpt = 1024,
    strip: Annotated[bool, typer.Option(
        "--strip", help="Leave out the ICC profile, EXIF data, XMP packet, text and resolution (dpi).")] = False,
    exact: Annotated[bool, typer.Option(
        "--exact", help="Keep the colour under fully transparent pixels; by default it is replaced by a smooth fill "
        "from the visible pixels, which costs fewer bits.")] = False,
    quality: QualityOpt = None,
    target_bpp: TargetBppOpt = None,
    target_psnr: TargetPsnrOpt = None,
    max_bytes: MaxBytesOpt = None,
    refine: RefineOpt = 0,
    debug: DebugOpt = False,
) -> None:
    rate = _Rate(quality, target_bpp, target_psnr, max_bytes)
    rate.check_options()
    options = {"strip": strip, "exact": exact}
    if len(inputs) > 1 or targets.is_dir(inputs[0]):
        items, root = _batch_items(inputs, output, ".nic", debug)
        _encode_batch(items, root, force, provider, threads, jobs, model, max_pixels, debug, options, rate, refine, tile)
        return
    [input] = inputs
    to_stdout = stdio.is_stdio(output)
    with _reporting(debug):
        _check_input(input, "image")
        if to_stdout:
            stdio.check_stdout(input)
        else:
            target, new_folder = targets.output_for(input, output, ".nic", force, _note)
            _warn_if_named_like_an_image(target, stdio.is_stdio(input))
        source = stdio.read_input(input, "image") if stdio.is_stdio(input) else input
        codec = _codec(model, provider, threads, max_pixels, refine=refine, tile=tile, encode=True,
                       decode=rate.psnr is not None)
        rate.check_model(codec)
        start = time.perf_counter()
        doing = "searching a quality for" if rate.searching else "encoding"
        with _bar(doing, stdio.display_name(input), rate.searching) as step, _naming(input):
            data, result = rate.encode(codec, source, options, step)
        seconds = time.perf_counter() - start
        if to_stdout:
            stdio.write_stdout(data)
        else:
            targets.write(target, lambda f: f.write(data), force, new_folder)
    header = _header(data)
    facts = [f"{header.width}x{header.height}", f"{len(data):,} bytes",
             f"{8 * len(data) / (header.width * header.height):.4f} bpp"]
    if codec.model.variable_rate:
        facts.append(f"quality {_quality_text(result.quality if result else header.quality)}")
    if result is not None and result.psnr is not None:
        facts.append(f"{result.psnr:.2f} dB")
    if result is not None:
        facts.append(f"{result.encodes} encodes")
    # With the file on standard output, the report goes to stderr.
    with _writing_report():
        (err if to_stdout else out).print(
            f"{stdio.display_name(input)} -> {stdio.display_name(output, 'stdout') if to_stdout else target}: {', '.join(facts)}, {seconds:.2f} s",
            markup=False,
        )
    miss = rate.miss(result)
    if miss:
        err.print(f"warning: {miss}", markup=False)


_DECODE_HELP = """Decompress a .nic file into an image (PNG unless the output's extension says otherwise).

Given a folder, decompress every .nic file under it into PNGs in the same tree
under OUTPUT (default: beside each file), skipping outputs that are up to date.

Given several .nic files, decompress them the same way, into OUTPUT or beside each.
"""


@app.command(help=_DECODE_HELP)
def decode(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            readable=False, metavar="INPUT",
            help="A .nic file, a folder of them, or - for standard input; or several .nic files.",
        ),
    ],
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output", "-o",
            help="Output image; its extension picks the format (default: INPUT with .png); - writes a PNG to "
            "standard output; for a folder or several files, the output folder.",
        ),
    ] = None,
    force: ForceOpt = False,
    provider: ProviderOpt = Provider.auto,
    threads: ThreadsOpt = None,
    jobs: JobsOpt = 1,
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    tile: TileOpt = 1024,
    precision: PrecisionOpt = Precision.fp32,
    debug: DebugOpt = False,
) -> None:
    from PIL import Image

    from . import outputs

    if len(inputs) > 1 or targets.is_dir(inputs[0]):
        items, root = _batch_items(inputs, output, ".png", debug)
        _decode_batch(items, root, force, provider, threads, jobs, model, max_pixels, debug, precision, tile)
        return
    [input] = inputs
    to_stdout = stdio.is_stdio(output)
    with _reporting(debug):
        _check_input(input, ".nic")
        if to_stdout:
            stdio.check_stdout(input)
            target, fmt = None, "PNG"
        else:
            def writable(target: Path) -> None:
                fmt = Image.registered_extensions().get(target.suffix.lower())
                if fmt is None or fmt not in Image.SAVE:
                    raise UnsupportedImageError(
                        f"cannot write images with the extension {target.suffix!r}; use .png, .jpg, .webp, ..."
                    )

            target, new_folder = targets.output_for(input, output, ".png", force, _note, writable)
            fmt = Image.registered_extensions()[target.suffix.lower()]
        with _naming(input):
            data = stdio.read_input(input)
        if target is not None:
            outputs.check_format(data, fmt, target.name)
        for warning in _dropped_warnings(data, fmt):
            err.print(f"warning: {target.name if target is not None else 'the output'} will have no {warning}",
                      markup=False)
        codec = _codec(model, provider, threads, max_pixels, precision, tile=tile, decode=True)
        start = time.perf_counter()
        with _bar("decoding", stdio.display_name(input)) as step, _naming(input):
            image = codec.decode(data, progress=None if step is None else lambda done, total: step(done, total))
        seconds = time.perf_counter() - start
        if to_stdout:
            buffer = io.BytesIO()
            outputs.save(image, buffer, fmt)
            stdio.write_stdout(buffer.getvalue())
        else:
            targets.write(target, lambda f: outputs.save(image, f, fmt), force, new_folder)
    with _writing_report():
        (err if to_stdout else out).print(
            f"{stdio.display_name(input)} -> {stdio.display_name(output, 'stdout') if to_stdout else target}: {image.width}x{image.height}, "
            f"{seconds:.2f} s",
            markup=False,
        )


_VERIFY_HELP = """Check .nic files without writing anything: container, checksum, model and every entropy-coded symbol.

For files moved between machines: a file that verifies here decodes here.
Exit code 1 if any file fails.
"""


@app.command(help=_VERIFY_HELP)
def verify(
    inputs: Annotated[list[Path], typer.Argument(readable=False, metavar="INPUT",
                                                 help=".nic files, folders searched for them recursively, or - for standard input.")],
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    debug: DebugOpt = False,
) -> None:
    from .batch import Item, plan, real_path

    with _reporting(debug):
        stdio.stdin_once(inputs)
        found: list[Item] = []
        empty = []
        for path in inputs:
            under = plan(path, path, [".nic"], ".nic") if targets.is_dir(path) else [Item(path, path)]
            if not under:
                empty.append(path)
            found += under
        if not found:  # unlike a folder to code, verifying nothing is no pass: a wrong path?
            raise NicodecError(f"no .nic files under {', '.join(map(str, empty))}: nothing to verify")
        for path in empty:
            err.print(f"warning: no .nic files under {path}", markup=False)
        unique: dict[str, Item] = {}
        for item in found:  # a file named twice (or found again under a folder) is verified once
            unique.setdefault(stdio.STDIO if stdio.is_stdio(item.source) else real_path(item.source), item)
        items = list(unique.values())
        codec = _codec(model, Provider.cpu, None, max_pixels, decode=True)  # loaded, not run: it decodes here
    failed = 0
    with _reporting(debug), _writing_report():  # Ctrl-C: "interrupted", exit code 130
        for item in items:
            path = item.source
            if item.problem:  # a folder or file that cannot be read: not verified, so not passed
                failed += 1
                err.print(f"FAILED {stdio.about(path, item.problem)}", markup=False)
                continue
            try:
                header, z_hat, symbols, _ = codec.decode_symbols(stdio.read_input(path))
            except NicodecError as exc:
                failed += 1
                err.print(f"FAILED {stdio.about(path, str(exc))}", markup=False)
                continue
            except Exception as exc:  # noqa: BLE001 - report and go on with the other files
                failed += 1
                err.print(f"FAILED {stdio.display_name(path)}: internal error: {type(exc).__name__}: {exc}", markup=False)
                continue
            out.print(f"ok {stdio.display_name(path)}: {header.width}x{header.height}, {z_hat.size + symbols.size:,} symbols",
                      markup=False)
        out.print(f"{_files(len(items))}: {len(items) - failed} ok, {failed} failed", markup=False)
    if failed:
        raise typer.Exit(1)


_INFO_HELP = """Show .nic files' headers: model, size, quality, resolution and sections (no decoding).

A file that cannot be read is reported on stderr and the others are shown.
Exit code 1 if any failed.
"""


@app.command(help=_INFO_HELP)
def info(
    inputs: Annotated[
        list[Path], typer.Argument(readable=False, metavar="INPUT", help=".nic files, or - for standard input.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (a list for several files).")] = False,
    debug: DebugOpt = False,
) -> None:
    from . import format as nicformat
    from .model import QUALITY_MAX, QUALITY_MIN

    with _reporting(debug):
        stdio.stdin_once(inputs)
    shown, failed = [], 0
    for input in inputs:
        try:
            data = stdio.read_input(input)
            header, sections = nicformat.unpack(data)
            density = _resolution_of(sections)
        except NicodecError as exc:
            if len(inputs) == 1:
                with _reporting(debug), _naming(input):
                    raise
            failed += 1
            err.print(f"error: {stdio.about(input, str(exc))}", markup=False)
            continue
        shown.append({
            "file": stdio.display_name(input),
            "bytes": len(data),
            "format_version": header.version,
            "model_id": header.model_id,
            "model_hash": header.model_hash.hex(),
            "width": header.width,
            "height": header.height,
            "quality": nicformat.quality_value(header.quality),
            "grayscale": bool(header.flags & nicformat.FLAG_GRAYSCALE),
            "bpp": _bpp_shown(8 * len(data) / (header.width * header.height)),
            "resolution": density,
            "sections": {tag.decode("ascii"): len(payload) for tag, payload in sections.items()},
        })
    with _writing_report():
        if as_json:
            # ASCII, every other character escaped: valid JSON in any locale, a name that is not
            # UTF-8 included (its bytes as Python's surrogate escapes, \udcff for 0xff).
            for line in json.dumps(shown[0] if len(inputs) == 1 else shown, indent=2).split("\n"):
                out.print(line, markup=False)
        else:
            for number, facts in enumerate(shown):
                if number:
                    out.print()
                for key, value in facts.items():
                    if key == "quality":
                        value = _quality_text(value) + (" (single-rate model)" if value == 0 else "" if
                                                        QUALITY_MIN <= value <= QUALITY_MAX else
                                                        " (outside 1 to 100: a variable-rate model refuses it)")
                    elif key in ("grayscale", "sections"):
                        value = {True: "yes", False: "no"}[value] if key == "grayscale" else ", ".join(
                            f"{tag} {size:,} bytes" for tag, size in value.items())
                    elif key == "resolution":
                        value = _resolution_text(value)
                    out.print(f"{key:>15}: {value}", markup=False)
    if failed:
        raise typer.Exit(1)


def _bpp_shown(bpp: float) -> float:
    """Bits per pixel to 6 decimals, or to 6 significant digits where that would be 0 (a header
    that claims a huge image)."""
    return round(bpp, 6) or float(f"{bpp:.6g}")


def _resolution_of(sections: dict) -> dict | None:
    """What a file's ``PHYS`` section holds: its unit (``"inch"`` or ``"metre"``), the two
    densities in it, and the same in dots per inch (Pillow's ``info["dpi"]``); None without one.

    Raises:
        FormatError: the section is damaged (``decode`` refuses such a file too).
    """
    from . import resolution

    payload = sections.get(resolution.TAG)
    if payload is None:
        return None
    density = resolution.unpack(payload)
    return {"unit": "inch" if density.unit == resolution.PER_INCH else "metre", "x": density.x, "y": density.y,
            "dpi": [round(value, 4) for value in density.dpi]}


def _resolution_text(density: dict | None) -> str:
    """A resolution for people: "300 x 300 per inch", "2835 x 2835 per metre (72.009 x 72.009 dpi)"."""
    if density is None:
        return "none"
    text = f"{density['x']} x {density['y']} per {density['unit']}"
    if density["unit"] != "inch":
        text += " ({:.10g} x {:.10g} dpi)".format(*density["dpi"])
    return text


def _header(data: bytes):
    from . import format as nicformat

    return nicformat.read_header(data)[0]


def _quality_text(quality: float) -> str:
    """A quality for people: 50, 37.24."""
    from . import format as nicformat

    return f"{nicformat.quality_value(quality):.10g}"


def _encode_batch(items, root, force, provider, threads, jobs, model, max_pixels, debug, options: dict, rate: _Rate,
                  refine: int = 0, tile: int = 1024) -> None:
    from .batch import Outcome, unless_abandoned
    from .files import write_atomic

    def work(item) -> Outcome:
        _check_input(item.source, "image")
        targets.writable_before(item.target)
        before = targets.as_read(item.source)
        data, result = rate.encode(codec, item.source, options)
        targets.unchanged_since(item.source, before)
        targets.make_folder(item.target.parent)
        with _made_meanwhile(item, lambda item: _made_otherwise(item.target, codec, wanted, rate.max_bytes)) as late:
            write_atomic(item.target, unless_abandoned(lambda f: f.write(data)), force=force)
        if late:
            return late[0]
        header = _header(data)
        read = before[2] if before else item.source.stat().st_size  # a pipe's size, as before
        return Outcome(item, "done", rate.miss(result) or "", bytes_in=read, bytes_out=len(data),
                       pixels=header.width * header.height)

    with _reporting(debug):
        codec = _codec(model, provider, _batch_threads(threads, jobs), max_pixels, refine=refine, tile=tile,
                       encode=True, decode=rate.psnr is not None)
        rate.check_model(codec)
        if root is not None:
            targets.make_folder(root)  # after the checks of the options, before any work
    wanted = None  # the quality every file is coded at, when no rate target searches for one
    if codec.model.variable_rate and not rate.searching:
        from .model import check_quality

        wanted = check_quality(codec.default_quality if rate.quality is None else rate.quality)
    _run_tree("encode", items, work, force, jobs, debug,
              differs=lambda item: _made_otherwise(item.target, codec, wanted, rate.max_bytes))


@contextmanager
def _made_meanwhile(item, differs=None):
    """An output another process made while this one coded (two runs over one folder, from
    cron): judged as it would have been had it been there at the start, up to date or kept,
    rather than a failure. The outcome, if so, is put in the list yielded."""
    from .batch import triage

    late: list = []
    try:
        yield late
    except OutputExistsError:
        outcome = triage(item, False, differs)
        if outcome is None or outcome.status == "failed":
            raise
        late.append(outcome)


def _made_otherwise(path: Path, codec, quality: Optional[float], max_bytes: Optional[int] = None) -> Optional[str]:
    """How the existing ``path`` differs from the file this run would write at ``quality`` (None:
    any), from its header and size alone: not a nicodec file, cut short, another model, another
    quality, more bytes than ``max_bytes``; None if none of these (a file made with another rate
    target, ``--refine``, ``--strip`` or ``--exact`` is not told apart, nor a damaged payload of
    the right length: ``verify`` checks that)."""
    from . import format as nicformat

    try:
        with open(path, "rb") as f:
            header, table, payload_offset = nicformat.read_header(f.read(nicformat.MAX_HEADER_BYTES))
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except NicodecError as exc:
        return f"cannot be read as a nicodec file: {exc}"
    expected = payload_offset + sum(length for _, length in table)
    if size != expected:  # a copy cut short (a full disk, an interrupted transfer): not up to date
        return f"is {size:,} bytes where its header gives {expected:,} (truncated or damaged)"
    if header.model_id != codec.model_id:
        return f"was made by another model ({header.model_id}, not {codec.model_id})"
    if header.model_hash != codec.model.model_hash:
        return (f"was made by another export of {header.model_id} (model hash {header.model_hash.hex()}, "
                f"not {codec.model.model_hash.hex()})")
    if quality is not None and nicformat.quality_value(header.quality) != nicformat.quality_value(quality):
        return f"was made at quality {_quality_text(header.quality)}, not {_quality_text(quality)}"
    if max_bytes is not None and size > max_bytes:
        return f"is {size:,} bytes, more than --max-bytes {max_bytes:,}"
    return None


def _dropped_warnings(data: bytes, fmt: str) -> list[str]:
    """What decoding ``data`` into ``fmt`` will leave out of its metadata, and why, as the ends of
    warnings (``"XMP data: ..."``), from the file's header before anything is decoded."""
    from . import outputs

    dropped = outputs.dropped_metadata(data, fmt)
    unkept = [what for what, why in dropped if why is None]
    warnings = []
    if unkept:
        named = " or ".join([", ".join(unkept[:-1]), unkept[-1]] if len(unkept) > 2 else unkept)
        warnings.append(f"{named}: {fmt} does not keep {'them' if len(unkept) > 1 else 'it'} "
                        "(.png, .jpg, .webp, .tiff and .avif do)")
    return warnings + [f"{what}: {why}" for what, why in dropped if why is not None]


def _decode_batch(items, root, force, provider, threads, jobs, model, max_pixels, debug, precision, tile=1024) -> None:
    from . import outputs
    from .batch import Outcome, unless_abandoned
    from .files import write_atomic

    def work(item) -> Outcome:
        _check_input(item.source, ".nic")
        targets.writable_before(item.target)
        before = targets.as_read(item.source)
        data = stdio.read_input(item.source)
        image = codec.decode(data)
        targets.unchanged_since(item.source, before)
        targets.make_folder(item.target.parent)
        with _made_meanwhile(item, lambda item: _unreadable_image(item.target)) as late:
            write_atomic(item.target, unless_abandoned(lambda f: outputs.save(image, f, "PNG")), force=force)
        if late:
            return late[0]
        return Outcome(item, "done", "; ".join(f"{item.target.name} has no {w}" for w in _dropped_warnings(data, "PNG")),
                       bytes_in=len(data), bytes_out=item.target.stat().st_size, pixels=image.width * image.height)

    with _reporting(debug):
        codec = _codec(model, provider, _batch_threads(threads, jobs), max_pixels, precision, tile=tile,
                       decode=True)
        if root is not None:
            targets.make_folder(root)
    _run_tree("decode", items, work, force, jobs, debug, differs=lambda item: _unreadable_image(item.target))


def _unreadable_image(path: Path) -> Optional[str]:
    """Why the existing image ``path`` is no decoded output to keep as up to date (empty, not an
    image, or cut short where its format can tell: a PNG's chunks are checked to their end), or
    None. Its pixels are not decoded."""
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return "is empty"
        with Image.open(path) as image:
            image.verify()
    except Image.DecompressionBombError:  # an image, larger than Pillow opens: for --max-pixels to judge
        return None
    except OSError as exc:
        return f"cannot be read as an image ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001 - what Pillow raises for a damaged file (SyntaxError, ValueError, ...)
        return f"cannot be read as an image ({exc})"
    return None


def _files(n: int) -> str:
    return f"{n:,} file" + ("" if n == 1 else "s")


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _batch_threads(threads: Optional[int], jobs: int) -> Optional[int]:
    """onnxruntime threads per file, so that jobs x threads does not oversubscribe the cores."""
    if threads is not None or jobs == 1:
        return threads
    from .sessions import usable_cores

    return min(MAX_THREADS, max(1, usable_cores() // jobs))


def _note(text: str) -> None:
    """A note on stderr that does not stop the work when stderr cannot be written."""
    try:
        err.print(text, markup=False)
    except (OSError, ValueError):
        pass


def _list_outcomes(outcomes) -> None:
    """A batch's failures, the outputs it kept, and the warnings of the files it coded, on stderr."""
    for failure in (o for o in outcomes if o.status == "failed"):
        err.print(f"failed: {stdio.about(failure.item.source, failure.message)}", markup=False)
    for kept in (o for o in outcomes if o.status == "kept"):
        err.print(f"kept: {kept.message}", markup=False)
    for noted in (o for o in outcomes if o.status == "done" and o.message):
        err.print(f"warning: {noted.item.source}: {noted.message}", markup=False)


def _run_tree(verb: str, items, work, force: bool, jobs: int, debug: bool, differs=None) -> None:
    """Code a batch's items with a bar and a summary (and, decoding beside the ``.nic`` files,
    a note that an image there newer than its file, taken as an earlier output, may be an
    original)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .batch import Abandoned, run

    targets.remove_stale((item.target for item in items), _note)
    start = time.perf_counter()
    done_bytes, written = [0], [0]
    # "3/24" as a text column: MofNCompleteColumn is Rich 12's, and Typer 0.16 takes Rich 10.11.
    # The bar, its count, the rate and the time left are the files to code: those up to date or
    # kept leave it as they are found (counted, they made a rerun's rate thousands of files/s
    # and its time left a second for the whole run).
    seen = []  # the outcomes as they come: an interrupted batch still lists its failures
    width = len(str(len(items)))
    count = TextColumn(f"{{task.completed:>{width}.0f}}/{{task.total:.0f}}")
    columns = [TextColumn(verb), BarColumn(), count, TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("left")]
    with _reporting(debug), Progress(*columns, console=err, transient=True, disable=not err.on_terminal) as progress:
        task = progress.add_task(verb, total=len(items), rate="")

        def advance(outcome) -> None:
            seen.append(outcome)
            if outcome.status in ("skipped", "kept"):  # nothing coded
                progress.update(task, total=progress.tasks[0].total - 1)
                return
            written[0] += outcome.status == "done"
            done_bytes[0] += outcome.bytes_in
            elapsed = max(time.perf_counter() - start, 1e-9)
            coded = progress.tasks[0].completed + 1
            progress.update(task, advance=1,
                            rate=f"{coded / elapsed:.1f} files/s, {done_bytes[0] / elapsed / 1e6:.2f} MB/s")

        def stopping(stop: BaseException) -> None:
            progress.stop()
            doing = "the file being coded is" if jobs == 1 else f"the files being coded (at most {jobs}) are"
            signum = getattr(stop, "signum", signal.SIGINT)  # a Terminated's, or Ctrl-C's
            again = "Ctrl-C" if signum == signal.SIGINT else f"{signal.Signals(signum).name} or Ctrl-C"
            err.print(f"stopping: {doing} finished and written first ({again} again stops at once, leaving "
                      f"{'it' if jobs == 1 else 'them'} unfinished)", markup=False)

        try:
            summary = run(items, work, force=force, jobs=jobs, on_outcome=advance, differs=differs, on_stop=stopping)
        except KeyboardInterrupt as exc:
            progress.stop()
            _list_outcomes(seen)
            detail = f" after {_files(written[0])} {verb}d; no file was left half-written"
            if isinstance(exc, Abandoned) and exc.unfinished:
                detail += (f" ({_files(exc.unfinished)} being coded {'was' if exc.unfinished == 1 else 'were'} "
                           "left unfinished)")
            raise _stop(exc, detail) from None
    _list_outcomes(summary.outcomes)
    skipped = sum(o.status == "skipped" and o.item.target.parent == o.item.source.parent for o in summary.outcomes)
    if verb == "decode" and skipped:
        err.print(f"note: {_files(skipped)} up to date: {'an image' if skipped == 1 else 'images'} newer than "
                  f"{'its .nic file' if skipped == 1 else 'their .nic files'} beside {'it' if skipped == 1 else 'them'}, "
                  "taken for earlier output (an original edited since it was encoded would be too; -o DIR decodes "
                  "into another folder)", markup=False)
    bytes_in, bytes_out, pixels = summary.totals()
    bpp = f"{8 * (bytes_out if verb == 'encode' else bytes_in) / pixels:.4f} bpp, " if pixels else ""
    with _writing_report():
        out.print(
            f"{_files(len(items))}: {summary.count('done'):,} {verb}d, {summary.count('skipped'):,} up to date, "
            f"{summary.count('kept'):,} kept, {summary.count('failed'):,} failed; "
            f"{_size(bytes_in)} in, {_size(bytes_out)} out, {bpp}{summary.seconds:.1f} s",
            markup=False,
        )
    if summary.failures:
        raise typer.Exit(1)


def main(args: Optional[list[str]] = None) -> None:
    """Entry point of the ``nicodec`` console script (``args``: the command line, default ``sys.argv[1:]``).

    An empty argument, or an empty value written ``--name=`` (before ``--``), is refused before
    anything else: no option or name of nicodec's takes one, and the path ``""`` would be read
    as ``.``, so ``nicodec encode "$f"`` with ``$f`` unset would code every image under the
    current folder; so is ``-o=x.nic``, which Click reads as ``-o`` with the value ``=x.nic``
    (:func:`nicodec.arguments.empty_value`). Called from a program, it puts the
    signal handlers it sets back as it returns, but SIGXCPU's when a CPU-time limit stopped
    the run: that one stays ignored (the kernel sends it again every CPU second), for the
    program and the processes it starts. A batch stopped twice returns at once, leaving the
    threads of the files it was coding to end by themselves (they write nothing more); the
    ``nicodec`` command ends its process instead.
    """
    _main(args, command=False)


def _main(args: Optional[list[str]], command: bool) -> None:
    """:func:`main`; ``command``: run as the ``nicodec`` process itself (``nicodec.launch``),
    which ends with it: the environment may be changed, and SIGXCPU stays ignored as it ends."""
    given = sys.argv[1:] if args is None else list(args)
    empty = next((number for number, arg in enumerate(given, 1) if arg == ""), None)
    valued = arguments.empty_value(given)
    if empty is not None or valued is not None:
        what = (f"argument {empty} is empty{arguments.UNSET}" if valued is None or (empty is not None and empty < valued[0])
                else valued[1])
        err.print(f"error: {what}; see nicodec --help", markup=False)
        raise SystemExit(2)
    import logging

    from .batch import STOPS, XCPU, Terminated, stop_like_ctrl_c

    # Pillow logs one error (a TIFF with more samples per pixel than it decodes) before raising
    # it; with no handler anywhere, Python would print it as a stray line beside nicodec's own.
    logging.getLogger("PIL").addHandler(logging.NullHandler())
    previous = stop_like_ctrl_c()  # SIGTERM, SIGHUP, SIGXCPU: Ctrl-C's clean-up and message, exit code 143, 129, 152
    # Without args Typer reads sys.argv itself, expanding wildcards (*.jpg) on Windows, whose shells do not.
    # Not standalone: a usage error comes back here, to be one line as every other message is,
    # rather than Click's usage, hint and boxed error.
    _STOP_SHOWN[0] = False
    STOPS.clear()
    if command:  # Typer's own consoles (help, usage), made later, read them too
        for name in ("COLUMNS", "LINES"):
            if _zero_size(name):
                del os.environ[name]
    try:
        try:
            code = (app(prog_name="nicodec", standalone_mode=False) if args is None
                    else app(args=given, prog_name="nicodec", standalone_mode=False))
            if code == 130 and not _STOP_SHOWN[0]:
                # Typer (0.16 to 0.29 at least) turns a stop outside a command's own reporting (while
                # it reads the command line, while a command's modules load) into exit code 130 and
                # nothing else; the stop is the last signal the handlers saw.
                last = STOPS[-1] if STOPS else signal.SIGINT
                code = _stop(KeyboardInterrupt() if last == signal.SIGINT else Terminated(last)).exit_code
        except OSError:
            raise
        except KeyboardInterrupt as exc:  # while Typer makes its commands of nicodec's functions
            code = _stop(exc).exit_code
        except Exception as exc:  # noqa: BLE001 - Click's exceptions (Typer's own copy of Click, or Click's)
            code = _click_error(exc, given)
    except OSError as exc:  # Click's own writes (--help, usage) to a full disk; --install-completion's file
        what = exc.filename if exc.filename is not None else "the output"
        err.print(f"error: cannot write {what}: {exc.strerror or exc}", markup=False)
        raise SystemExit(1) from None
    finally:
        for signum, handler in previous.items():  # main() called from a program: its handlers back
            if signum == XCPU and (signum in STOPS or command):
                # Past (or near) its CPU limit, a SIGXCPU as the process ends would dump core by
                # the default action: ignored (batch._raise_terminated did so at the first).
                signal.signal(signum, signal.SIG_IGN)
                continue
            signal.signal(signum, handler)
    raise SystemExit(code if isinstance(code, int) else 0)  # as a standalone Click app ends


def _click_error(exc: Exception, args: list[str]) -> int:
    """What :func:`main` makes of an exception from a run of the app that is not standalone,
    which Click (Typer's copy of it, or Click itself) raises rather than shows: a usage error as
    one ``error:`` line and its exit code (2), an end of input at a prompt as Click's "Aborted!"
    (1), nothing after ``nicodec`` as its help (printed by Typer as it raised, when it lays help
    out with Rich; else by Click's own ``show``); anything else is raised again. ``args``: the
    command line, whose command a usage error without Click's context names for its help."""
    name = type(exc).__name__
    if name == "NoArgsIsHelpError":  # nicodec with nothing after it: the help
        if str(exc.format_message()).strip() and callable(getattr(exc, "show", None)):
            exc.show()
        return getattr(exc, "exit_code", 2)
    if name == "Abort":
        err.print("Aborted!", markup=False)
        return 1
    code, message = getattr(exc, "exit_code", None), getattr(exc, "format_message", None)
    if not isinstance(code, int) or not callable(message):
        raise exc
    text = " ".join(str(message()).split())
    if code == 2:  # a usage error (one missing an option's value has no context: the command's from args)
        context = getattr(exc, "ctx", None)
        command = next((arg for arg in args if not arg.startswith("-")), None)
        known = typer.main.get_command(app).commands if context is None else {}
        path = context.command_path if context is not None else "nicodec" + (f" {command}" if command in known else "")
        help = f"{path} --help"
        text = f"{text} See {help}." if text.endswith("?") else f"{text.rstrip('.')}; see {help}"
    err.print(f"error: {text}", markup=False)
    return code
