"""The ``nicodec`` command line's options shared by its commands, the rate options of
``encode`` (:class:`Rate`), and the :class:`nicodec.Codec` the options make.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .arguments import (is_provider_choice, metadata_kept, provider_options, real_number_text, whole_number_text,
                        with_options)
from .sessions import CUDA, MAX_THREADS, PROVIDER_CHOICES


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


def _as_int(text: str | int) -> int | None:
    """An option's text (or its default, given as it is) as a whole number, or None."""
    return text if isinstance(text, int) else whole_number_text(text)


def _whole_number(low: int, high: int | None = None) -> Callable[[str | int], int]:
    """A ``parser`` that reads a whole number from ``low`` to ``high`` and refuses anything else
    saying which value it was. Typer's own type and range checks (0.29) said "Input should be a
    valid integer, unable to parse string as an integer" or "Input should be greater than or
    equal to 1", without it. Click gives it the text, or the default as it is."""
    span = f"from {low:,} to {high:,}" if high is not None else f"of {low:,} or more"

    def integer(text: str | int) -> int:  # the name: Click's metavar for it (INTEGER)
        value = _as_int(text)
        if value is None or not (low <= value and (high is None or value <= high)):
            raise typer.BadParameter(f"{text} is not a whole number {span}")
        return value
    return integer


def _number(what: str, ok: Callable[[float], bool]) -> Callable[[str | float], float]:
    """A ``parser`` that reads a number ``ok`` accepts and refuses anything else as not ``what``
    (``nan`` and ``inf`` read as numbers, for ``ok`` to judge)."""
    def number(text: str | float) -> float:  # Click's metavar: NUMBER
        value = float(text) if isinstance(text, (int, float)) else real_number_text(text)
        if value is None or not ok(value):
            raise typer.BadParameter(f"{text} is not {what}")
        return value
    return number


def _provider(text: str) -> str:  # Click's metavar: PROVIDER
    """``auto``, ``cpu``, ``cuda``, or the name of one of onnxruntime's providers
    (``OpenVINOExecutionProvider``), which :class:`nicodec.Codec` takes as it is."""
    if is_provider_choice(text):
        return text
    raise typer.BadParameter(f"{text!r} is not one of {', '.join(map(repr, PROVIDER_CHOICES))}, nor the name of an "
                             "onnxruntime provider (such as OpenVINOExecutionProvider)")


def provider_choices() -> list[str]:
    """What ``--provider`` completes to: auto, cpu, cuda, and the providers of the onnxruntime
    build installed, known by its name (onnxruntime itself, slow to import, is not asked)."""
    from .sessions import PROVIDERS_BUILDS, installed_builds

    builds = {name for name, _ in installed_builds()}
    return [*PROVIDER_CHOICES, *(p for p, build in PROVIDERS_BUILDS.items() if build in builds and p != CUDA)]


ProviderOpt = Annotated[str, typer.Option(
    parser=_provider, metavar="PROVIDER", autocompletion=provider_choices,
    help="Where the transforms run: auto (CUDA if there, else the CPU), cpu, cuda, or an onnxruntime provider's name "
         "(OpenVINOExecutionProvider, with onnxruntime-openvino).")]


@contextmanager
def usage_errors(param_hint: Optional[str] = None) -> Iterator[None]:
    """A ValueError of a check the command lines share (``nicodec.arguments``'s, ``outputs``')
    raised inside the block, as a usage error of the option being read (``param_hint`` names it
    where Click does not know it: after the options are read)."""
    try:
        yield
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


def _provider_options(values: Optional[list[str]]) -> Optional[list[str]]:
    """Checks ``--provider-option``'s values: each ``KEY=VALUE``, no key twice."""
    with usage_errors():
        provider_options(values or ())
    return values


ProviderOptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--provider-option", callback=_provider_options, metavar="KEY=VALUE",
    help="An option of the provider that --provider names, for onnxruntime as it is (device_type=GPU for OpenVINO's, "
         "device_id=1 for CUDA's); give it again for another.")]


def providers_of(provider: str, options: Optional[list[str]]) -> str | list[tuple[str, dict[str, str]]]:
    """:class:`nicodec.Codec`'s ``providers`` from ``--provider`` and ``--provider-option``."""
    with usage_errors("'--provider-option'"):
        return with_options(provider, provider_options(options or ()))


MAX_JOBS = 64
"""The most files a batch codes at once: beyond a machine's cores more only adds memory."""
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(parser=_whole_number(1, MAX_THREADS),
                 help=f"onnxruntime threads, 1 to {MAX_THREADS} (default: one per physical core)."),
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
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
ReportJsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print JSON on stdout in place of the report: an object for one file, a list for several or a "
    "folder, each file with its status, size and time; errors and warnings stay on stderr.")]
JobsOpt = Annotated[int, typer.Option(parser=_whole_number(1, MAX_JOBS), help=f"Files coded at once, 1 to {MAX_JOBS}, for "
                                      "a folder or several files (each holds its image in memory: up to 1.2 GiB for a "
                                      "24-megapixel photo, 1.4 GiB with --restoration; --tile 512 needs less).")]
DecodeJobsOpt = Annotated[int, typer.Option(parser=_whole_number(1, MAX_JOBS), help=f"Files decoded at once, 1 to "
                                            f"{MAX_JOBS}, for a folder or several files (each holds its image in "
                                            "memory: up to 1.2 GiB for a 24-megapixel photo; --tile 512 needs less).")]
MaxPixelsOpt = Annotated[
    int,
    typer.Option(parser=_whole_number(1), help="Refuse images with more pixels (default: Pillow's decompression-bomb "
                 "threshold)."),
]


def _image_format(value: Optional[str]) -> Optional[str]:
    """``--format``'s value as the outputs' extension (``.jpg``), one Pillow writes here."""
    if value is None:
        return None
    from PIL import Image

    suffix = "." + value.strip().lower().lstrip(".")
    fmt = Image.registered_extensions().get(suffix)
    if suffix == ".nic":
        raise typer.BadParameter("decode writes images; .nic files are what it reads")
    if fmt is None or fmt not in Image.SAVE:
        raise typer.BadParameter(f"{value!r} is no image format Pillow writes here: give an extension such as png, "
                                 "jpg, webp, tiff or avif")
    from .outputs import usable_output

    if not usable_output(fmt):  # each file would fail the same way
        raise typer.BadParameter(f"{value!r}: Pillow cannot write {fmt} here, or read it back, for any picture decode "
                                 "makes (colour or gray, with or without transparency); give png, jpg, webp, tiff "
                                 "or avif")
    return suffix


FormatOpt = Annotated[
    Optional[str],
    typer.Option(
        "--format", metavar="EXT", callback=_image_format,
        help="The decoded images' format, by extension (png, jpg, webp, tiff, avif, ...), for a folder, several "
        "files or standard output (default: png); -o FILE's extension says it for one file.",
    ),
]


def _background(value: Optional[str]) -> Optional[str]:
    """``--background``'s value, checked to be an opaque colour."""
    if value is None:
        return None
    from .outputs import check_background

    with usage_errors():
        return check_background(value)


BackgroundOpt = Annotated[
    Optional[str],
    typer.Option(
        "--background", metavar="COLOUR", callback=_background,
        help="Flatten transparent images onto this colour (white, black, #rrggbb, ...), for a format "
        "without transparency such as JPEG; a grayscale image onto its gray level. Default: keep "
        "the transparency.",
    ),
]


def _metadata_kinds(text: str) -> str:  # Click's metavar: KINDS
    """``--metadata``'s value (:func:`nicodec.arguments.metadata_kept`), or a usage error."""
    with usage_errors():
        return metadata_kept(text)


MetadataOpt = Annotated[
    Optional[str],
    typer.Option(
        "--metadata", metavar="KINDS", parser=_metadata_kinds,
        help="The metadata to keep: icc (the colour profile), exif, xmp, text and dpi (the resolution), with "
        "commas between them; all (the default) or none (as --strip). --metadata icc keeps the colours right "
        "and leaves out the rest: a camera's serial number, a GPS location, edits.",
    ),
]


ThumbnailOpt = Annotated[
    Optional[int],
    typer.Option(
        "--thumbnail", metavar="SIZE", parser=_whole_number(1),
        help="Write a thumbnail: the picture scaled down to fit SIZE x SIZE pixels (never enlarged), with its "
        "colour profile and no other metadata; for previews, galleries and a file manager's thumbnailer.",
    ),
]


def _tile_size() -> Callable[[str | int], int]:
    """``--tile``'s parser: a whole number of pixels, 64 or more, a multiple of 64."""
    def integer(text: str | int) -> int:
        value = _as_int(text)
        if value is None:
            raise typer.BadParameter(f"{text} is not a whole number")
        if value < 64:
            raise typer.BadParameter(f"{value} is less than 64, the smallest tile")
        if value % 64:
            raise typer.BadParameter(f"{value} is not a multiple of 64")
        return value
    return integer


def _tile_option(same: str) -> typer.models.OptionInfo:
    return typer.Option(parser=_tile_size(), show_default=False, help="Run the networks on tiles of this many pixels "
                        f"a side (a multiple of 64): {same}; smaller tiles take more time and less memory (a "
                        "24-megapixel image: 1.05 GiB to encode and 1.11 GiB to decode at 1024, 0.69 and 0.64 GiB at 512). "
                        "Default: 1024, or 512 or 256 for an image that would need more memory than is free.")


TileOpt = Annotated[Optional[int], _tile_option("the same file")]
DecodeTileOpt = Annotated[Optional[int], _tile_option("the same pixels")]
_RATE_PANEL = "Quality and rate control (one at most; variable-rate models)"


def quality_parser() -> Callable[[str | float], float]:
    """``--quality``'s parser, and ``nicodec-export --default-quality``'s (the model module, which
    loads numpy, imported at its first use)."""
    def number(text: str | float) -> float:
        from .model import QUALITY_MAX, QUALITY_MIN

        return _number(f"a quality from {QUALITY_MIN:g} to {QUALITY_MAX:g}", lambda v: QUALITY_MIN <= v <= QUALITY_MAX)(text)
    return number


_positive = _number("a positive number", lambda v: math.isfinite(v) and v > 0)


QualityOpt = Annotated[
    Optional[float],
    typer.Option(
        parser=quality_parser(), rich_help_panel=_RATE_PANEL,
        help="From 1 (smallest file) to 100 (best picture), any number between (default: the model's, 56 for the shipped one).",
    ),
]
RefineOpt = Annotated[
    int,
    typer.Option(
        parser=_whole_number(0, 1000), rich_help_panel=_RATE_PANEL,
        help="Gradient steps on the latent before coding, 0 to 1,000: much slower (each about 1.5 to 2 decodes' work), about 3% "
        "fewer bits for the same PSNR at 60 steps (first 6 Kodak images); 0 codes the network's first guess.",
    ),
]
TargetBppOpt = Annotated[
    Optional[float],
    typer.Option(
        parser=_positive, rich_help_panel=_RATE_PANEL,
        help="Search the quality for the file closest to this many bits per pixel (the closest reachable if out of reach).",
    ),
]
TargetPsnrOpt = Annotated[
    Optional[float],
    typer.Option(
        parser=_positive, rich_help_panel=_RATE_PANEL,
        help="Search the lowest quality whose decoded picture reaches this PSNR in dB (the best reachable if out of "
        "reach); over the visible pixels of a transparent image, unless --exact.",
    ),
]
MaxBytesOpt = Annotated[
    Optional[int],
    typer.Option(
        parser=_whole_number(1), rich_help_panel=_RATE_PANEL,
        help="Search the highest quality whose file has at most this many bytes (an error if even quality 1 is larger).",
    ),
]


@dataclass(frozen=True)
class Rate:
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
            said = (f"the target of {self.bpp:g} bpp was not met: the closest file found is {result.bpp:.4f} bpp "
                    f"(quality {quality_text(result.quality)})")
            if result.bpp > self.bpp:  # too large even so: its metadata may be what puts the target out of reach
                from .ratecontrol import BPP_TOLERANCE, metadata_out_of_reach

                # The target in bytes, with the tolerance within which it is met.
                limit = len(result.data) * self.bpp * (1 + BPP_TOLERANCE) / result.bpp
                meta = metadata_out_of_reach(result.data, limit)
                if meta:
                    said += f"; {meta:,} of its {len(result.data):,} bytes are metadata, which --strip leaves out"
            return said
        return (f"the target of {self.psnr:g} dB was not met: the best file found is {result.psnr:.2f} dB "
                f"(quality {quality_text(result.quality)})")


def make_codec(model: Optional[Path], provider: str | list, threads: Optional[int], max_pixels: int,
               precision: Precision = Precision.fp32, refine: int = 0, tile: Optional[int] = None, *, encode: bool = False,
               decode: bool = False, restoration: bool = False):
    """The Codec, with the graphs the command runs loaded (so that a model that cannot encode, or a
    graph that does not load, stops the command before any work); the others are never loaded."""
    from .codec import Codec

    codec = Codec(model, providers=provider, threads=threads, max_pixels=max_pixels, precision=precision.value,
                  refine=refine, tile=tile, restoration=restoration)
    return codec.prepare(encode=encode, decode=decode)


def quality_text(quality: float) -> str:
    """A quality for people: 50, 37.24."""
    from . import format as nicformat

    return f"{nicformat.quality_value(quality):.10g}"


def batch_threads(threads: Optional[int], jobs: int) -> Optional[int]:
    """onnxruntime threads per file, so that jobs x threads does not oversubscribe the cores: the
    default count (one per physical core the process may use) shared among the jobs."""
    if threads is not None or jobs == 1:
        return threads
    from .machine import default_threads, usable_cores

    return min(MAX_THREADS, max(1, (default_threads() or usable_cores()) // jobs))
