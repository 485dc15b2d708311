"""The ``nicodec`` command line: a thin skin over :class:`nicodec.Codec`.

Exit codes: 0 success, 1 an error nicodec could name (one line on stderr),
2 a usage error (a quality or rate target out of range, several of them, or one given to a
single-rate model included), 130 interrupted (Ctrl-C), 143, 129 and 152 stopped by SIGTERM, SIGHUP and
SIGXCPU, 149 by Ctrl-Break (SIGBREAK, Windows).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from . import arguments, console, stdio, targets
from .cli_batch import (check_input, decode_all, decode_facts, dropped_warnings, encode_all, encode_facts, header_of,
                        items_of, larger_than_source, note_not_files)
from .console import (SHOWN_WARNINGS, STOP_SHOWN, bar, counted_files, naming, note, reporting, stop, writing_report,
                      zero_size)
from .errors import NicodecError, UnsupportedImageError
from .format import DEFAULT_MAX_PIXELS
from .options import (BackgroundOpt, DebugOpt, DecodeJobsOpt, DecodeTileOpt, ForceOpt, FormatOpt, JobsOpt, MaxBytesOpt, MaxPixelsOpt, MetadataOpt, ModelOpt, Precision,
                      PrecisionOpt, ProviderOpt, ProviderOptionOpt, QualityOpt, Rate, RefineOpt, ReportJsonOpt, TargetBppOpt, TargetPsnrOpt,
                      ThreadsOpt, ThumbnailOpt, TileOpt, make_codec, providers_of, quality_text, usage_errors)

if TYPE_CHECKING:
    from .batch_plan import Item


class _PlainFlags:
    """A command whose flags show no metavar in its help: Typer 0.29 shows ``<bool>`` beside
    each flag (``--help``, ``--force``, the completion flags), as if it took a value; and
    whose file arguments show ``<path>...`` rather than Python's ``<list[Path]>``."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            elif getattr(param, "param_type_name", "") == "argument" and hasattr(param, "display_type_rich"):
                shown = param.display_type_rich(ctx)
                if shown and shown.startswith("<list[Path]"):  # the one hook Typer reads for the type column
                    param.display_type_rich = lambda ctx: "<path>..."
        return params


class _Group(_PlainFlags, typer.core.TyperGroup):
    pass


class _Command(_PlainFlags, typer.core.TyperCommand):
    pass


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="nicodec: a learned image codec. Encode photos to .nic files and back.",
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    """The version, and the shipped model's id, which every file records: the version alone does
    not tell which model's files a release makes (``nicodec info`` names a file's)."""
    if value:
        with writing_report():
            from . import __version__
            from .model import shipped_model_id

            model = shipped_model_id()
            console.out.print(f"nicodec {__version__}" + (f", model {model}" if model else ""), markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """nicodec: a learned image codec."""
    SHOWN_WARNINGS.clear()  # a new command line (tests run many in one process)
    if ctx.invoked_subcommand in ("encode", "decode", "verify"):
        _load_extensions()


def _load_extensions() -> None:
    """Import numpy, Pillow with its format plugins (and pillow-heif's), and the codec, with
    Ctrl-C, SIGTERM and SIGHUP held back until they are in (a few tenths of a second): a stop
    inside a C extension's initialisation comes out of the import as an ImportError (numpy's
    "failed to import"), or is swallowed with the format plugin Pillow was loading. onnxruntime
    is held the same way where it is imported (``nicodec.sessions``)."""
    from .stops import signals_held

    with signals_held():
        from PIL import Image

        from . import codec  # noqa: F401 - numpy, and the rest of the work's modules
        from .plugins import register_plugins

        register_plugins()  # pillow-heif's, where it is installed
        Image.init()


def _warn_if_named_like_an_image(target: Path, from_stdin: bool = False) -> None:
    from PIL import Image

    suffix = target.suffix.lower()
    if suffix != ".nic" and suffix in Image.registered_extensions():
        console.err.print(f"warning: {target} will hold a .nic file, whatever its extension says", markup=False)
    elif not suffix and not from_stdin:
        # A shell glob that matched one file, with -o meant as a folder: the next run, with
        # two files, would find a file there.
        console.err.print(f"warning: {target} will be a .nic file, not a folder (end the name with / to write into a "
                          "folder)", markup=False)


def _paragraphs(text: str) -> str:
    """A command's help with each paragraph on one line, for Rich to wrap to the terminal: Typer
    0.29 keeps the single line breaks of the paragraphs after the first, which broke lines
    mid-sentence in a terminal narrower than the source's."""
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text.strip())


_ENCODE_HELP = _paragraphs("""Compress an image into a .nic file and report its size, bits per pixel, quality and time.

Given a folder, compress every image under it into the same tree under OUTPUT
(default: beside each image), skipping outputs that are up to date.

Given several images, compress them the same way, into OUTPUT or beside each.

A rate target searches the quality, with a few encodes per image, and
reports what it reached. A bpp or PSNR target out of reach gives the
closest file and a warning; a --max-bytes even quality 1 exceeds, an error.
""")


@app.command(cls=_Command, help=_ENCODE_HELP)
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
    provider: ProviderOpt = "auto",
    provider_option: ProviderOptionOpt = None,
    threads: ThreadsOpt = None,
    jobs: JobsOpt = 1,
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    tile: TileOpt = None,
    strip: Annotated[bool, typer.Option(
        "--strip", help="Leave out the ICC profile, EXIF data, XMP packet, text and resolution (dpi).")] = False,
    keep: MetadataOpt = None,
    exact: Annotated[bool, typer.Option(
        "--exact", help="Keep the colour under fully transparent pixels; by default it is replaced by a smooth fill "
        "from the visible pixels, which costs fewer bits.")] = False,
    quality: QualityOpt = None,
    target_bpp: TargetBppOpt = None,
    target_psnr: TargetPsnrOpt = None,
    max_bytes: MaxBytesOpt = None,
    refine: RefineOpt = 0,
    restoration: Annotated[bool, typer.Option(
        "--restoration", help="Also decode each image and write a linear filter fitted to it where it "
        "pays: about 1.7% fewer bits at the same PSNR on Kodak, for an encode about 3 times as long; such files "
        "need nicodec 0.6.0 or later to decode.")] = False,
    as_json: ReportJsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    rate = Rate(quality, target_bpp, target_psnr, max_bytes)
    rate.check_options()
    provider = providers_of(provider, provider_option)
    with usage_errors("'--metadata'"):
        options = {"strip": arguments.stripped_by(keep, strip), "exact": exact}
    if len(inputs) > 1 or targets.is_dir(inputs[0]):
        items, root = items_of(inputs, output, ".nic", debug)
        encode_all(items, root, force, provider, threads, jobs, model, max_pixels, debug, options, rate, refine, tile,
                   restoration=restoration, as_json=as_json)
        return
    [input] = inputs
    to_stdout = stdio.is_stdio(output)
    _json_beside_stdout(as_json, to_stdout)
    with reporting(debug):
        check_input(input, "image")
        if to_stdout:
            stdio.check_stdout(input)
        else:
            target, new_folder = targets.output_for(input, output, ".nic", force, note)
            _warn_if_named_like_an_image(target, stdio.is_stdio(input))
        before = None if stdio.is_stdio(input) else targets.as_read(input)
        source = stdio.read_input(input, "image") if stdio.is_stdio(input) else input
        codec = make_codec(model, provider, threads, max_pixels, refine=refine, tile=tile, encode=True,
                           decode=rate.psnr is not None, restoration=restoration)
        rate.check_model(codec)
        start = time.perf_counter()
        doing = "searching a quality for" if rate.searching else "encoding"
        with bar(doing, stdio.display_name(input), rate.searching) as step, naming(input):
            data, result = rate.encode(codec, source, options, step)
        with naming(input):  # a photo saved again as it was coded: not written as up to date
            targets.unchanged_since(input, before)
        if to_stdout:
            stdio.write_stdout(data)
        else:
            targets.write(target, lambda f: f.write(data), force, new_folder)
        seconds = time.perf_counter() - start
    header = header_of(data)
    facts = [f"{header.width}x{header.height}", f"{len(data):,} bytes",
             f"{8 * len(data) / (header.width * header.height):.4f} bpp"]
    if codec.model.variable_rate:
        facts.append(f"quality {quality_text(result.quality if result else header.quality)}")
    if result is not None and result.psnr is not None:
        facts.append(f"{result.psnr:.2f} dB")
    if result is not None:
        facts.append(f"{result.encodes} encode{'s' * (result.encodes != 1)}")
    read = len(source) if isinstance(source, (bytes, bytearray)) else before[2] if before is not None else None
    larger = None if read is None else larger_than_source("the output" if to_stdout else target.name, len(data), read,
                                                          rate, sizes=True)
    warnings = [warning for warning in (rate.miss(result), larger) if warning]
    # With the file on standard output, the report goes to stderr.
    with writing_report():
        if as_json:
            console.print_json({"input": stdio.json_name(input), "output": stdio.json_name(target), "status": "encoded",
                                **encode_facts(header, len(data), result, codec.model.variable_rate, read, warnings),
                                "seconds": round(seconds, 3)})
        else:
            (console.err if to_stdout else console.out).print(
                f"{stdio.display_name(input)} -> {stdio.display_name(output, 'stdout') if to_stdout else target}: {', '.join(facts)}, {seconds:.2f} s",
                markup=False,
            )
    for warning in warnings:
        console.err.print(f"warning: {warning}", markup=False)


_DECODE_HELP = _paragraphs("""Decompress a .nic file into an image (PNG unless the output's extension says otherwise).

Given a folder, decompress every .nic file under it into PNGs (or --format's) in the
same tree under OUTPUT (default: beside each file), skipping outputs that are up to date.

Given several .nic files, decompress them the same way, into OUTPUT or beside each.
""")


@app.command(cls=_Command, help=_DECODE_HELP)
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
            help="Output image; its extension picks the format (default: INPUT with .png, or --format's); - writes "
            "a PNG (or --format's) to standard output; for a folder or several files, the output folder.",
        ),
    ] = None,
    force: ForceOpt = False,
    provider: ProviderOpt = "auto",
    provider_option: ProviderOptionOpt = None,
    threads: ThreadsOpt = None,
    jobs: DecodeJobsOpt = 1,
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    tile: DecodeTileOpt = None,
    precision: PrecisionOpt = Precision.fp32,
    image_format: FormatOpt = None,
    background: BackgroundOpt = None,
    thumbnail_side: ThumbnailOpt = None,
    as_json: ReportJsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    from PIL import Image

    from . import outputs

    suffix = image_format or ".png"
    provider = providers_of(provider, provider_option)
    if len(inputs) > 1 or targets.is_dir(inputs[0]):
        items, root = items_of(inputs, output, suffix, debug)
        decode_all(items, root, force, provider, threads, jobs, model, max_pixels, debug, precision, tile, suffix,
                   background, as_json=as_json, thumbnail_side=thumbnail_side)
        return
    [input] = inputs
    to_stdout = stdio.is_stdio(output)
    _json_beside_stdout(as_json, to_stdout)
    with reporting(debug):
        check_input(input, ".nic")
        if to_stdout:
            stdio.check_stdout(input)
            target, fmt = None, Image.registered_extensions()[suffix]
        else:
            def writable(target: Path) -> None:  # by the name alone, before any other check of the output
                fmt = Image.registered_extensions().get(target.suffix.lower())
                asked = Image.registered_extensions()[image_format] if image_format is not None else None
                if asked is not None and fmt != asked:
                    what = f"is {fmt} by its extension" if fmt is not None else "has no image format's extension"
                    raise typer.BadParameter(f"the output {target.name} {what}, and --format asks for {asked}: "
                                             "give one of them", param_hint="'--format'")
                if not target.suffix:
                    raise UnsupportedImageError(f"{target} has no extension to tell the image format: add .png, "
                                                ".jpg, .webp, ...")
                if fmt is None or fmt not in Image.SAVE:
                    raise UnsupportedImageError(
                        f"cannot write images with the extension {target.suffix!r}; use .png, .jpg, .webp, ..."
                    )

            target, new_folder = targets.output_for(input, output, suffix, force, note, writable)
            fmt = Image.registered_extensions()[target.suffix.lower()]
        before = None if stdio.is_stdio(input) else targets.as_read(input)
        with naming(input):
            data = stdio.read_input(input)
        outputs.check_format(data, fmt, target.name if target is not None else "standard output", background,
                             thumbnail_side)
        warnings = [f"{target.name if target is not None else 'the output'} will have no {warning}"
                    for warning in dropped_warnings(data, fmt, thumbnail_side is not None)]
        for warning in warnings:
            console.err.print(f"warning: {warning}", markup=False)
        codec = make_codec(model, provider, threads, max_pixels, precision, tile=tile, decode=True)
        start = time.perf_counter()
        with bar("decoding", stdio.display_name(input)) as step:
            with naming(input):
                image = codec.decode(data, progress=None if step is None else lambda done, total: step(done, total))
            if background is not None:
                image = outputs.flatten(image, background)
            full = image.size
            if thumbnail_side is not None:
                image = outputs.thumbnail(image, thumbnail_side)
            with naming(input):
                targets.unchanged_since(input, before)
            if step is not None:
                step.writing("stdout" if target is None else str(target))
            if to_stdout:
                buffer = io.BytesIO()
                outputs.save(image, buffer, fmt)
                stdio.write_stdout(buffer.getvalue())
            else:
                targets.write(target, lambda f: outputs.save(image, f, fmt), force, new_folder)
        seconds = time.perf_counter() - start  # the output's writing too: a large PNG takes seconds
        report = {"input": stdio.json_name(input), "output": stdio.json_name(target), "status": "decoded",
                  **decode_facts(image, fmt, target.stat().st_size, len(data), warnings),
                  "seconds": round(seconds, 3)} if as_json else None
    with writing_report():
        if report is not None:
            console.print_json(report)
        else:
            (console.err if to_stdout else console.out).print(
                f"{stdio.display_name(input)} -> {stdio.display_name(output, 'stdout') if to_stdout else target}: {image.width}x{image.height}"
                f"{f' (a thumbnail of {full[0]}x{full[1]})' if image.size != full else ''}, {seconds:.2f} s",
                markup=False,
            )


_VERIFY_HELP = _paragraphs("""Check .nic files without writing anything: container, checksum, model and every entropy-coded symbol.

For files moved between machines: a file that verifies here decodes here.
Exit code 1 if any file fails.
""")


@app.command(cls=_Command, help=_VERIFY_HELP)
def verify(
    inputs: Annotated[list[Path], typer.Argument(readable=False, metavar="INPUT",
                                                 help=".nic files, folders searched for them recursively, or - for standard input.")],
    model: ModelOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    debug: DebugOpt = False,
) -> None:
    with reporting(debug):
        _stdin_once(inputs)
        items = _nic_files(inputs, "verify")
        codec = make_codec(model, "cpu", None, max_pixels, decode=True)  # loaded, not run: it decodes here
    failed = 0
    with reporting(debug), writing_report():  # Ctrl-C: "interrupted", exit code 130
        for item in items:
            path = item.source
            if item.problem:  # a folder or file that cannot be read: not verified, so not passed
                failed += 1
                console.err.print(f"FAILED {stdio.about(path, item.problem)}", markup=False)
                continue
            try:
                header, z_hat, symbols, _ = codec.decode_symbols(stdio.read_input(path))
            except NicodecError as exc:
                failed += 1
                hint = console.hinted(exc, ("--max-pixels", "--model"))  # verify has no --tile
                console.err.print(f"FAILED {stdio.about(path, hint)}", markup=False)
                continue
            except Exception as exc:  # noqa: BLE001 - report and go on with the other files
                failed += 1
                console.err.print(f"FAILED {stdio.display_name(path)}: internal error: {type(exc).__name__}: {exc}", markup=False)
                continue
            console.out.print(f"ok {stdio.display_name(path)}: {header.width}x{header.height}, {z_hat.size + symbols.size:,} symbols",
                              markup=False)
        console.out.print(f"{counted_files(len(items))}: {len(items) - failed:,} ok, {failed:,} failed", markup=False)
    if failed:
        raise typer.Exit(1)


def _nic_files(inputs: list[Path], doing: str) -> list[Item]:
    """The ``.nic`` files that ``verify`` or ``info`` (``doing``) reads: the files named, and those
    under the folders named (recursively), each once however it was found, as
    :class:`nicodec.batch_plan.Item` (a folder or file that cannot be read has its ``problem``).

    Raises:
        NicodecError: no file at all (a wrong path?); a folder without any only warns.
    """
    from .batch_plan import Item, plan, real_path

    found: list[Item] = []
    empty = []
    not_files: list[Path] = []
    for path in inputs:
        under = plan(path, path, [".nic"], ".nic", not_files=not_files) if targets.is_dir(path) else [Item(path, path)]
        if not under:
            empty.append(path)
        found += under
    note_not_files(not_files, "a .nic file")
    if not found:  # unlike a folder to code, nothing to read is no pass: a wrong path?
        raise NicodecError(f"no .nic files under {', '.join(map(str, empty))}: nothing to {doing}")
    for path in empty:
        console.err.print(f"warning: no .nic files under {path}", markup=False)
    unique: dict[str, Item] = {}
    for item in found:  # a file named twice (or found again under a folder) is read once
        unique.setdefault(stdio.STDIO if stdio.is_stdio(item.source) else real_path(item.source), item)
    return list(unique.values())


_INFO_HELP = _paragraphs("""Show .nic files' headers: model, size, quality, resolution, camera and date taken, sections (no decoding).

A file that cannot be read is reported on stderr and the others are shown.
Exit code 1 if any failed.
""")


@app.command(cls=_Command, help=_INFO_HELP)
def info(
    inputs: Annotated[
        list[Path], typer.Argument(readable=False, metavar="INPUT",
                                   help=".nic files, folders searched for them recursively, or - for standard input.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (a list for several files or a folder).")] = False,
    debug: DebugOpt = False,
) -> None:
    from .fileinfo import Decoder, describe
    from .model import QUALITY_MAX, QUALITY_MIN, default_model_dir, package_model_for

    with reporting(debug):
        _stdin_once(inputs)
        items = _nic_files(inputs, "show")
    one = len(inputs) == 1 and not targets.is_dir(inputs[0])  # a folder's files are a list, however many
    shown, decoders, failed = [], [], 0
    known: dict[tuple[str, bytes], Decoder] = {}  # the package's models read once, not once a file

    def decoder_of(model_id: str, model_hash: bytes) -> Decoder:
        if (model_id, model_hash) not in known:
            known[model_id, model_hash] = package_model_for(model_id, model_hash)
        return known[model_id, model_hash]

    for item in items:
        input = item.source
        try:
            if item.problem:  # a folder or file that cannot be read
                raise NicodecError(item.problem)
            facts = describe(stdio.read_input(input), decoder_of=decoder_of)
        except NicodecError as exc:
            if one:
                with reporting(debug), naming(input):
                    raise
            failed += 1
            console.err.print(f"error: {stdio.about(input, str(exc))}", markup=False)
            continue
        decoders.append(decoder_of(facts["model_id"], bytes.fromhex(facts["model_hash"])))
        shown.append({"file": stdio.json_name(input), **facts})
    with writing_report():
        if as_json:
            console.print_json(shown[0] if one else shown)
        else:
            shipped = default_model_dir()
            for number, (facts, decoder) in enumerate(zip(shown, decoders)):
                lines = [""] if number else []
                for key, value in facts.items():
                    if key == "gray_as_rgb":  # said with grayscale's line
                        continue
                    if key == "quality":
                        value = quality_text(value) + (" (single-rate model)" if value == 0 else "" if
                                                        QUALITY_MIN <= value <= QUALITY_MAX else
                                                        " (outside 1 to 100: a variable-rate model refuses it)")
                    elif key == "grayscale":
                        value = ("yes (a colour image of equal channels: decoded as RGB)" if facts["gray_as_rgb"]
                                 else {True: "yes", False: "no"}[value])
                    elif key == "fine_padding":
                        value = ("yes (padded to multiples of 16, not 64: nicodec 0.7.0 or later decodes it)"
                                 if value else "no")
                    elif key == "sections":
                        value = ", ".join(f"{tag} {size:,} bytes" for tag, size in value.items())
                    elif key == "resolution":
                        value = _resolution_text(value)
                    elif key == "colour_profile":
                        value = "none" if value is None else value
                    elif key == "exif":
                        value = _exif_text(value, facts["sections"].get("EXIF", 0))
                    elif key == "bytes":
                        value = f"{value:,}"  # as encode and the sections give sizes
                    elif key == "decoded_by":
                        value = ("no model of this nicodec: decode with --model and that model's folder"
                                 if decoder is None else f"{value} (the shipped model)"
                                 if decoder[1] == shipped else f"{value} (an earlier model this nicodec keeps)")
                    lines.append(f"{key:>15}: {value}")
                # A file's block at once (16 prints took most of the time): a few hundred bytes,
                # a write a pipe takes whole.
                console.out.print(*lines, sep="\n", markup=False)
    if failed:
        raise typer.Exit(1)


def _exif_text(exif, size: int) -> str:
    """``info``'s line for a file's EXIF (:func:`nicodec.fileinfo.exif_of`): the camera, the
    date taken, and whether it holds a GPS location."""
    if exif is None:
        return "none"
    if not exif["readable"]:
        return f"{size:,} bytes, of which Pillow reads no tag"
    parts = [exif["camera"] or "no camera", f"taken {exif['taken']}" if exif["taken"] else "no date"]
    parts.append("a GPS location (encode --metadata icc leaves the EXIF out)" if exif["location"] else "no location")
    return ", ".join(parts)


def _json_beside_stdout(as_json: bool, to_stdout: bool) -> None:
    """``--json`` with ``-o -``: a usage error (exit code 2), the two wanting standard output."""
    if as_json and to_stdout:
        raise typer.BadParameter("the report and -o - would both be on standard output: give -o a file",
                                 param_hint="'--json'")


def _stdin_once(inputs: list[Path]) -> None:
    """``verify - -``, ``info - -``: a usage error (exit code 2), as ``-`` among several inputs
    to encode or decode is."""
    if sum(stdio.is_stdio(path) for path in inputs) > 1:
        raise typer.BadParameter("- (standard input) can be read once", param_hint="'INPUT...'")


def _resolution_text(density: dict | None) -> str:
    """A resolution for people: "300 x 300 per inch", "2835 x 2835 per metre (72.009 x 72.009 dpi)"."""
    if density is None:
        return "none"
    text = f"{density['x']} x {density['y']} per {density['unit']}"
    if density["unit"] != "inch":
        text += " ({:.10g} x {:.10g} dpi)".format(*density["dpi"])
    return text


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
    # ./- is the file named -, not standard input. (On Windows Click expands wildcards only in
    # the arguments it reads itself: a command line with any is left to it.)
    if args is not None or os.name != "nt" or not any(set(arg) & set("*?[") for arg in given):
        try:
            named = arguments.dash_files(given)
        except ValueError as exc:
            console.err.print(f"error: {exc}", markup=False)
            raise SystemExit(1) from None
        if named != given:
            args = given = named
    empty = next((number for number, arg in enumerate(given, 1) if arg == ""), None)
    valued = arguments.empty_value(given)
    if empty is not None or valued is not None:
        what = (arguments.empty_argument(given, empty) if valued is None or (empty is not None and empty < valued[0])
                else valued[1])
        command = next((arg for arg in given if arg and not arg.startswith("-")), None)
        where = f"nicodec {command}" if command in typer.main.get_command(app).commands else "nicodec"
        console.err.print(f"error: {what}; see {where} --help", markup=False)
        raise SystemExit(2)
    if sys.stdout is None and arguments.asks_for_help(given):  # >&-: Typer's console would write it to nowhere
        console.err.print("error: cannot write the help: standard output is closed", markup=False)
        raise SystemExit(1)
    import logging

    from .stops import STOPS, XCPU, Terminated, stop_like_ctrl_c

    # Pillow logs one error (a TIFF with more samples per pixel than it decodes) before raising
    # it; with no handler anywhere, Python would print it as a stray line beside nicodec's own.
    # One, however often a program calls main(): each call added another.
    pil_log = logging.getLogger("PIL")
    if not any(isinstance(handler, logging.NullHandler) for handler in pil_log.handlers):
        pil_log.addHandler(logging.NullHandler())
    previous = stop_like_ctrl_c()  # SIGTERM, SIGHUP, SIGXCPU, SIGBREAK: Ctrl-C's clean-up and message, exit code 143, 129, 152, 149
    # Without args Typer reads sys.argv itself, expanding wildcards (*.jpg) on Windows, whose shells do not.
    # Not standalone: a usage error comes back here, to be one line as every other message is,
    # rather than Click's usage, hint and boxed error.
    STOP_SHOWN[0] = False
    STOPS.clear()
    if command:  # Typer's own consoles (help, usage), made later, read them too
        for name in ("COLUMNS", "LINES"):
            if zero_size(name):
                del os.environ[name]
    # Typer's help too: Rich's "…" in an ASCII locale was a traceback. Put back as main() returns
    # to a program, whose own writes (of undecodable names, say) are its business.
    escaped = [(stream, console.escaping(stream)) for stream in (sys.stdout, sys.stderr)]
    try:
        try:
            code = (app(prog_name="nicodec", standalone_mode=False) if args is None
                    else app(args=given, prog_name="nicodec", standalone_mode=False))
            if code == 130 and not STOP_SHOWN[0]:
                # Typer (0.16 to 0.29 at least) turns a stop outside a command's own reporting (while
                # it reads the command line, while a command's modules load) into exit code 130 and
                # nothing else; the stop is the last signal the handlers saw.
                last = STOPS[-1] if STOPS else signal.SIGINT
                code = stop(KeyboardInterrupt() if last == signal.SIGINT else Terminated(last)).exit_code
        except OSError:
            raise
        except KeyboardInterrupt as exc:  # while Typer makes its commands of nicodec's functions
            code = stop(exc).exit_code
        except Exception as exc:  # noqa: BLE001 - Click's exceptions (Typer's own copy of Click, or Click's)
            code = console.click_error(exc, given, typer.main.get_command(app), "nicodec")
    except OSError as exc:  # Click's own writes (--help, usage) to a full disk; --install-completion's file
        what = exc.filename if exc.filename is not None else "the output"
        console.err.print(f"error: cannot write {what}: {exc.strerror or exc}", markup=False)
        stdio.flush_or_drop(sys.stdout)
        raise SystemExit(1) from None
    finally:
        for signum, handler in previous.items():  # main() called from a program: its handlers back
            if signum == XCPU and (signum in STOPS or command):
                # Past (or near) its CPU limit, a SIGXCPU as the process ends would dump core by
                # the default action: ignored (stops._raise_terminated did so at the first).
                signal.signal(signum, signal.SIG_IGN)
                continue
            signal.signal(signum, handler)
        for stream, errors in escaped if not command else ():
            if errors is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.reconfigure(errors=errors)
    raise SystemExit(code if isinstance(code, int) else 0)  # as a standalone Click app ends


