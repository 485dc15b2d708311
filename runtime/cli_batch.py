"""The ``nicodec`` command line's batches: a folder's tree, or several files named on the
command line, coded with a progress bar into outputs planned and checked
before any work (:func:`items_of`), then a summary line and the failures listed.

Which outputs are up to date, kept or replaced is :mod:`nicodec.batch`'s; this module adds what
the command line says about them, and how each file is read, coded and written.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from . import console, stdio, targets
from .console import counted_files, note, reporting, size_text, stop, writing_report
from .errors import NicodecError, OutOfMemoryError, OutputExistsError
from .options import Rate, batch_threads, make_codec, quality_text


def check_input(input: Path, wanted: str) -> None:
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


def items_of(inputs: list[Path], output: Optional[str], suffix: str, debug: bool):
    """The files of a batch and their outputs, and the output folder to make before any work
    (None for outputs beside the inputs): a folder's tree (under ``output``, or beside each
    file), or several files named on the command line (into ``output``, or beside each)."""
    from PIL import Image

    from .batch_plan import Item, plan, real_path
    from .files import nearest_existing
    from .plugins import heif_install, readable_suffixes

    with reporting(debug):
        folder = len(inputs) == 1
        what = "a folder input needs" if folder else "several inputs need"
        # Arguments that cannot go together, whatever the files: usage errors (exit code 2).
        if any(stdio.is_stdio(path) for path in inputs):
            raise typer.BadParameter("- (standard input) is an input on its own, not one of several",
                                     param_hint="'INPUT...'")
        if stdio.is_stdio(output):
            raise typer.BadParameter(f"-o - writes one file to standard output; {what} an output folder",
                                     param_hint="'-o'")
        if output == "":
            raise NicodecError("the output name is empty")
        folders = [path for path in inputs if not folder and targets.is_dir(path)]
        if folders:  # named: a wildcard's matches may be hundreds
            more = f" and {len(folders) - 1:,} more" if len(folders) > 1 else ""
            raise NicodecError(f"give one folder, or several files; not folders among several inputs ({folders[0]} is "
                               f"a folder{more})")
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
            # Encoding, the files of other kinds are named by their count: a phone's HEIC photos
            # or a camera's raw files, which Pillow does not read, are not passed over in silence.
            # Decoding, a folder of .nic files beside their images is the rule, not a surprise.
            passed_over: Counter[str] | None = Counter() if suffix == ".nic" else None
            not_files: list[Path] = []
            items = plan(inputs[0], root, kinds, suffix, passed_over, not_files)
            note_not_files(not_files, "an image" if suffix == ".nic" else "a .nic file")
            if passed_over:
                passed_over.pop(".nic", None)  # nicodec's own files, made beside their images
                if passed_over:
                    heif = any(ext in HEIF_SUFFIXES for ext in passed_over)
                    note(f"note: passed over {_kinds_text(passed_over)}; hidden files are passed over uncounted"
                         + (f"; {heif_install()} HEIF/HEIC" if heif else ""))
            if real_path(root).startswith(os.path.join(real_path(inputs[0]), "")):
                console.err.print(f"warning: the output folder {root} lies inside {inputs[0]}; it is not searched for "
                                  f"files to {'encode' if suffix == '.nic' else 'decode'}", markup=False)
            if not items:  # not an error: an inbox folder that is empty today is not a mistake
                console.err.print(f"warning: no files to {'encode' if suffix == '.nic' else 'decode'} in {inputs[0]} (looked for "
                                  + ("files with the extension of an image Pillow reads" if suffix == ".nic" else ".nic files")
                                  + ", hidden ones excepted)",
                                  markup=False)
            return items, root
        unique: dict[str, Path] = {}
        problems: dict[Path, str] = {}
        for path in inputs:
            unique.setdefault(real_path(path), path)  # a file named twice is coded once
            try:  # a missing file (or an empty one, or one of the other kind) fails on its own, found now:
                check_input(path, "image" if suffix == ".nic" else ".nic")  # as an input, it blocked others' outputs
            except NicodecError as exc:
                problems[path] = str(exc)
                continue
            if root is None:
                targets.check_beside(path, several=True)
        items = [Item(path, (path if root is None else root / path.name).with_suffix(suffix), problems.get(path, ""))
                 for path in unique.values()]
        return items, root


def note_not_files(not_files: list[Path], named: str) -> None:
    """The note of the pipes, devices and sockets a folder's listing passed over (named like
    ``named``, ``"an image"``), which reading could block: counted, the first named."""
    if not_files:
        what = ("1 file that is a pipe, device or socket" if len(not_files) == 1
                else f"{len(not_files):,} files that are pipes, devices or sockets")
        note(f"note: passed over {what}, named like {named} ({stdio.display_name(not_files[0])}"
             f"{', ...' if len(not_files) > 1 else ''}): reading one could block the batch; name it alone to read it")


HEIF_SUFFIXES = (".heic", ".heics", ".heif", ".heifs", ".hif")
"""The extensions of HEIF files (a phone's photos: HEIC), which Pillow reads with pillow-heif."""


def _kinds_text(counts: Counter[str], shown: int = 5) -> str:
    """``"1,193 files whose extension is no image's that Pillow reads (1,100 .heic, 90 .mov and 3
    without an extension)"``: the commonest kinds first (alphabetical among equals), ``shown`` of them."""
    kinds = sorted(counts.items(), key=lambda kind: (-kind[1], kind[0]))
    parts = [f"{n:,} {ext.translate(console.CONTROLS) if ext else 'without an extension'}" for ext, n in kinds[:shown]]
    if len(kinds) > shown:
        parts.append(f"{sum(n for _, n in kinds[shown:]):,} more")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{counted_files(sum(counts.values()))} whose extension is no image's that Pillow reads ({listed})"


def header_of(data: bytes):
    from . import format as nicformat

    return nicformat.read_header(data)[0]


def encode_all(items, root, force, provider, threads, jobs, model, max_pixels, debug, options: dict, rate: Rate,
               refine: int = 0, tile: Optional[int] = None, restoration: bool = False, as_json: bool = False) -> None:
    from .batch import unless_abandoned, writing_to
    from .batch_plan import Outcome
    from .files import write_atomic

    full = targets.FullDisks()

    def work(item) -> Outcome:
        check_input(item.source, "image")
        targets.writable_before(item.target, root, root_was)
        full.check(item.target)
        before = targets.as_read(item.source)
        # A pipe or a device (``<(cat a.png)``) is read here, so that its bytes count as read;
        # its size on disk is 0.
        source = item.source if before is not None else stdio.read_input(item.source, "image")
        data, result = rate.encode(codec, source, options)
        targets.unchanged_since(item.source, before)
        targets.still_there(root, root_was)
        targets.make_folder(item.target.parent)
        with _made_meanwhile(item, lambda item: _made_otherwise(item.target, codec, wanted, rate.max_bytes, item.source)) as late, \
                full.noting(item.target):
            write_atomic(item.target, unless_abandoned(lambda f: f.write(data)), force=force, created=writing_to)
        if late:
            return late[0]
        header = header_of(data)
        read = before[2] if before is not None else len(source)
        notes = [note for note in (rate.miss(result), larger_than_source(item.target.name, len(data), read, rate)) if note]
        return Outcome(item, "done", "; ".join(notes), bytes_in=read, bytes_out=len(data),
                       pixels=header.width * header.height,
                       facts=encode_facts(header, len(data), result, codec.model.variable_rate, read, notes) if as_json else {})

    with reporting(debug):
        codec = make_codec(model, provider, batch_threads(threads, jobs), max_pixels, refine=refine, tile=tile,
                           encode=True, decode=rate.psnr is not None, restoration=restoration)
        rate.check_model(codec)
        if root is not None:
            targets.make_folder(root)  # after the checks of the options, before any work
        root_was = targets.identity(root) if root is not None else None
    wanted = None  # the quality every file is coded at, when no rate target searches for one
    if codec.model.variable_rate and not rate.searching:
        from .model import check_quality

        wanted = check_quality(codec.default_quality if rate.quality is None else rate.quality)
    unchecked = [option for option, given in (("--target-psnr", rate.psnr is not None), ("--refine", refine > 0),
                                              ("--restoration", restoration),
                                              ("--strip" if options.get("strip") is True else "--metadata", options.get("strip")),
                                              ("--exact", options.get("exact")))
                 if given]
    _run_tree("encode", items, work, force, jobs, debug,
              differs=lambda item: _made_otherwise(item.target, codec, wanted, rate.max_bytes, item.source), unchecked=unchecked,
              doubtful=lambda item: _far_from_target(item.target, rate), as_json=as_json)


def encode_facts(header, size: int, result, variable_rate: bool, read: Optional[int], warnings: list[str]) -> dict:
    """What ``encode --json`` reports of a file it made, after its names and status and before
    the seconds it took: the image's size (from the file's ``header``), the file's ``size`` in
    bytes and bits per pixel, the quality (None for a single-rate model), a search's PSNR (for
    ``--target-psnr``) and count of encodes, the bytes read (None for a pipe named as a file) and
    its warnings."""
    from .fileinfo import bpp_shown
    from .format import quality_value

    facts = {"width": header.width, "height": header.height, "bytes": size,
             "bpp": bpp_shown(8 * size / (header.width * header.height)),  # as info --json gives it
             "quality": quality_value(result.quality if result else header.quality) if variable_rate else None}
    if result is not None:
        if result.psnr is not None:  # infinite where the picture came back exactly (or has no visible pixel): null
            facts["psnr"] = round(result.psnr, 4) if math.isfinite(result.psnr) else None
        facts["encodes"] = result.encodes
    return facts | {"input_bytes": read, "warnings": warnings}


def decode_facts(image, fmt: str, written: int, read: int, warnings: list[str]) -> dict:
    """What ``decode --json`` reports of an image it wrote, after its names and status and before
    the seconds it took: its size and format, the bytes written and read, and its warnings."""
    return {"width": image.width, "height": image.height, "format": fmt, "bytes": written, "input_bytes": read,
            "warnings": warnings}


_JSON_STATUS = {"skipped": "up_to_date", "kept": "kept", "failed": "failed"}


def json_record(outcome, verb: str) -> dict:
    """One file of a batch's ``--json`` report: its input, output and status ("encoded" or
    "decoded", "up_to_date", "kept" or "failed"), then why ("reason" of one kept, "error" of one
    failed) or, for one coded, its facts (:func:`encode_facts`, :func:`decode_facts`)."""
    record = {"input": stdio.json_name(outcome.item.source), "output": stdio.json_name(outcome.item.target),
              "status": f"{verb}d" if outcome.status == "done" else _JSON_STATUS[outcome.status]}
    if outcome.status in ("kept", "failed"):
        record["reason" if outcome.status == "kept" else "error"] = outcome.message
    if outcome.status == "done":
        record |= outcome.facts | {"seconds": round(outcome.seconds, 3)}
    return record


def larger_than_source(name: str, size: int, source_size: int, rate: Rate, sizes: bool = False) -> Optional[str]:
    """A warning that the ``.nic`` file ``name`` of ``size`` bytes is larger than the image it was
    coded from (``source_size`` bytes), or None. At the model's default quality that is the
    picture's doing: a network trained on photographs spends more on text, line art and
    screenshots than a lossless PNG of them, and blurs them even so; nothing else would tell
    the user. A quality or target the user gave may be the cause instead, and the warning says
    no more than the sizes. With ``sizes``, the two sizes are given (one file's line); a batch
    leaves them out, so that its files' warnings are counted as one."""
    if size <= source_size:
        return None
    said = f"{name} is larger than its source" + (f" ({size:,} bytes against {source_size:,})" if sizes else "")
    if rate.given():
        return said
    return said + (": nicodec is made for photographs (text, drawings and screenshots are often smaller and sharper "
                   "kept as they are)")


@contextmanager
def _made_meanwhile(item, differs=None):
    """An output another process made while this one coded (two runs over one folder, from
    cron): judged as it would have been had it been there at the start, up to date or kept,
    rather than a failure. The outcome, if so, is put in the list yielded."""
    from .batch_plan import triage

    late: list = []
    try:
        yield late
    except OutputExistsError:
        outcome = triage(item, False, differs)
        if outcome is None or outcome.status == "failed":
            raise
        late.append(outcome)


RERUN_TOLERANCE = 0.1
"""How far from ``--target-bpp`` (a fraction of it), or how far under ``--max-bytes``, an
existing file may be before a rerun notes that it may have been made for another target: the
search meets a bpp target within 1% and comes within 1% under a byte budget, but a small or
flat image may end farther (its size moves in steps, or little with the quality)."""


def _made_otherwise(path: Path, codec, quality: Optional[float], max_bytes: Optional[int] = None,
                    source: Optional[Path] = None) -> Optional[str]:
    """How the existing ``path`` differs from the file this run would write at ``quality`` (None:
    any), from its header and size alone: not a nicodec file, cut short, another model, another
    quality, more bytes than ``max_bytes``, or a picture of another size than ``source``'s
    (its header's, either way round: an EXIF orientation may turn it); None if none of these (a
    file made for another rate target, or with ``--refine``, ``--strip`` or ``--exact``, is not
    told apart, nor a damaged payload of the right length: ``verify`` checks that;
    :func:`_far_from_target` notes what a file's size suggests)."""
    from . import format as nicformat

    try:
        header, table, payload_offset, size = _header_and_size(path)
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
        return f"was made at quality {quality_text(header.quality)}, not {quality_text(quality)}"
    if max_bytes is not None and size > max_bytes:
        return f"is {size:,} bytes, more than --max-bytes {max_bytes:,}"
    if source is not None:
        from .images import header_size
        from .outputs import quietly

        with quietly():  # a plugin's own (an ICO's "not the expected size"): coding it says them
            now = header_size(source)  # None: not Pillow's own plugin, or damaged (coding it would say so)
        if now is not None and sorted(now) != sorted((header.width, header.height)):
            return (f"was made from a {header.width}x{header.height} picture, and {source} is {now[0]}x{now[1]} "
                    "(replaced by a copy with an older date?)")
    return None


def _header_and_size(path: Path):
    """An existing ``.nic`` file's header, section table and payload offset
    (``nicodec.format.read_header``), and its size, without reading the rest of it."""
    from . import format as nicformat

    with open(path, "rb") as f:
        return (*nicformat.read_header(f.read(nicformat.MAX_HEADER_BYTES)), os.fstat(f.fileno()).st_size)


def _far_from_target(path: Path, rate: Rate) -> Optional[str]:
    """What suggests that the up-to-date ``path`` was made for another rate target than
    ``rate``'s (the header does not record one): bits per pixel more than ``RERUN_TOLERANCE``
    from ``--target-bpp`` where quality 1 or 100 would not explain it, or a size that far
    under ``--max-bytes`` below quality 100; None if nothing does. A note, not a judgement: a
    small or flat image may end that far from a target it was made for."""
    from .model import QUALITY_MAX, QUALITY_MIN

    if rate.bpp is None and rate.max_bytes is None:
        return None
    try:
        header, _, _, size = _header_and_size(path)
    except (OSError, NicodecError):
        return None  # judged by _made_otherwise already
    made = f"quality {quality_text(header.quality)}"
    if rate.max_bytes is not None and size < (1 - RERUN_TOLERANCE) * rate.max_bytes and header.quality < QUALITY_MAX:
        return f"is {size:,} bytes at {made}, well under --max-bytes {rate.max_bytes:,}"
    if rate.bpp is not None:
        got = 8 * size / (header.width * header.height)
        ends = (got < rate.bpp and header.quality >= QUALITY_MAX) or (got > rate.bpp and header.quality <= QUALITY_MIN)
        if abs(got / rate.bpp - 1) > RERUN_TOLERANCE and not ends:
            return f"is {got:.4f} bpp at {made}, far from --target-bpp {rate.bpp:g}"
    return None


def dropped_warnings(data: bytes, fmt: str, thumbnail: bool = False) -> list[str]:
    """What decoding ``data`` into ``fmt`` will leave out of its metadata, and why, as the ends of
    warnings (``"XMP data: ..."``), from the file's header before anything is decoded; for a
    ``thumbnail``, which keeps the ICC profile alone (:func:`nicodec.outputs.thumbnail`), of
    the profile only."""
    from . import outputs

    dropped = [(what, why) for what, why in outputs.dropped_metadata(data, fmt)
               if not thumbnail or what == "ICC profile"]
    unkept = [what for what, why in dropped if why is None]
    warnings = []
    if unkept:
        named = " or ".join([", ".join(unkept[:-1]), unkept[-1]] if len(unkept) > 2 else unkept)
        warnings.append(f"{named}: {fmt} does not keep {'them' if len(unkept) > 1 else 'it'} "
                        "(.png, .jpg, .webp, .tiff and .avif do)")
    return warnings + [f"{what}: {why}" for what, why in dropped if why is not None]


def decode_all(items, root, force, provider, threads, jobs, model, max_pixels, debug, precision, tile=None,
               suffix=".png", background=None, as_json: bool = False, thumbnail_side: Optional[int] = None) -> None:
    from PIL import Image

    from . import outputs
    from .batch import unless_abandoned, writing_to
    from .batch_plan import Outcome
    from .files import write_atomic

    fmt = Image.registered_extensions()[suffix]
    full = targets.FullDisks()

    def work(item) -> Outcome:
        check_input(item.source, ".nic")
        targets.writable_before(item.target, root, root_was)
        full.check(item.target)
        before = targets.as_read(item.source)
        data = stdio.read_input(item.source)
        outputs.check_format(data, fmt, item.target.name, background, thumbnail_side)  # from the header, before decoding
        image = codec.decode(data)
        if background is not None:
            image = outputs.flatten(image, background)
        pixels = image.width * image.height  # the file's bits per pixel are of the picture, not of its thumbnail
        if thumbnail_side is not None:
            image = outputs.thumbnail(image, thumbnail_side)
        targets.unchanged_since(item.source, before)
        targets.still_there(root, root_was)
        targets.make_folder(item.target.parent)
        with _made_meanwhile(item, differs) as late, full.noting(item.target):
            write_atomic(item.target, unless_abandoned(lambda f: outputs.save(image, f, fmt)), force=force,
                         created=writing_to)
        if late:
            return late[0]
        warnings = [f"{item.target.name} has no {w}" for w in dropped_warnings(data, fmt, thumbnail_side is not None)]
        written = item.target.stat().st_size
        return Outcome(item, "done", "; ".join(warnings), bytes_in=len(data), bytes_out=written,
                       pixels=pixels,
                       facts=decode_facts(image, fmt, written, len(data), warnings) if as_json else {})

    def differs(item) -> Optional[str]:
        return _not_decoded_so(item, thumbnail_side)

    with reporting(debug):
        codec = make_codec(model, provider, batch_threads(threads, jobs), max_pixels, precision, tile=tile,
                           decode=True)
        if root is not None:
            targets.make_folder(root)
        root_was = targets.identity(root) if root is not None else None
    _run_tree("decode", items, work, force, jobs, debug, differs=differs, as_json=as_json)


def _not_decoded_so(item, thumbnail_side: Optional[int]) -> Optional[str]:
    """Why the existing image ``item.target``, newer than its ``.nic`` file, is not what decoding
    it now would write, or None: unreadable or cut short (:func:`_unreadable_image`), or a picture
    of another size than the file's (either way round, as :func:`_made_otherwise` compares), or
    than its thumbnail's with ``--thumbnail`` (``thumbnail_side``): a folder decoded in full is
    not up to date for thumbnails, nor the other way round. A ``.nic`` file whose header cannot
    be read is left for decoding it to report, with ``--force``."""
    from . import outputs
    from .images import header_size

    why = _unreadable_image(item.target)
    if why is not None:
        return why
    try:
        header = _header_and_size(item.source)[0]
    except (OSError, NicodecError):
        return None
    full = (header.width, header.height)
    wanted = full if thumbnail_side is None else outputs.thumbnail_size(*full, thumbnail_side)
    with outputs.quietly():
        now = header_size(item.target)
    if now is None or sorted(now) == sorted(wanted):
        return None
    sizes = (f"is {now[0]}x{now[1]}, and the picture decodes to {full[0]}x{full[1]}" if thumbnail_side is None
             else f"is {now[0]}x{now[1]}, and the picture's --thumbnail {thumbnail_side} is {wanted[0]}x{wanted[1]}")
    if item.target.parent == item.source.parent:  # beside the .nic file: perhaps the original photo
        return f"{sizes} (the original, edited since it was encoded? -o DIR decodes into another folder)"
    if thumbnail_side is None and tuple(now) == outputs.thumbnail_size(*full, max(now)):
        return f"{sizes} (a thumbnail?)"
    return sizes


DECODED_TO_THE_END = frozenset({"JPEG", "MPO", "TIFF", "BMP", "DIB", "AVIF", "GIF", "QOI", "PPM", "TGA", "SGI", "IM",
                                "DDS", "PCX", "JPEG2000"})
"""Formats of which opening and Pillow's ``verify`` find nothing cut short, or not to the end
(AVIF: its boxes, not the last of the picture's bytes): an existing output in one of them is
decoded to its end, unless :func:`_ends_short` tells from its header and size where its data
ends. Of the others, ``verify`` checks a PNG's chunks and their CRCs (a PNG that lacks only
its IEND chunk's CRC passes, its pixels whole), and opening a WebP or an ICO reads it whole."""


def _ends_short(image, path: Path, size: int) -> Optional[str]:
    """Why an image whose header places its pixels beyond the file's ``size`` bytes is cut
    short, "" if it is not, or None where that is not told this cheaply (it is decoded then):
    a JPEG that ends with its end-of-image marker (Pillow writes it last) is whole; an
    uncompressed TIFF's strips or tiles, an uncompressed BMP's rows must end within the file."""
    fmt = image.format
    if fmt in ("JPEG", "MPO"):
        with open(path, "rb") as f:
            f.seek(max(0, size - 2))
            # Else decoded: a camera's trailer, a motion photo's video or padding may follow the marker.
            return "" if f.read(2) == b"\xff\xd9" else None
    if fmt == "TIFF":
        tags = image.tag_v2
        if tags.get(259, 1) != 1:  # compressed (as Pillow writes TIFF, it is not): JPEG's tables may follow the strips
            return None
        offsets, counts = (tags.get(273), tags.get(279)) if 273 in tags else (tags.get(324), tags.get(325))
        if not offsets or not counts or len(offsets) != len(counts):
            return None
        end = max(offset + count for offset, count in zip(offsets, counts))
    elif fmt in ("BMP", "DIB") and len(image.tile) == 1 and image.tile[0][0] == "raw":
        _, extents, offset, args = image.tile[0]
        if not (isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], int) and args[1] > 0):
            return None
        end = offset + args[1] * (extents[3] - extents[1])
    else:
        return None
    return "" if end <= size else f"is cut short ({size:,} bytes where its header places pixels up to {end:,})"


def _unreadable_image(path: Path) -> Optional[str]:
    """Why the existing image ``path`` is no decoded output to keep as up to date (empty, not an
    image, or cut short: ``DECODED_TO_THE_END``'s formats checked by :func:`_ends_short` or
    decoded, the others verified as far as Pillow does), or None."""
    from PIL import Image

    from .outputs import quietly

    try:
        size = path.stat().st_size
        if size == 0:
            return "is empty"
        with quietly(), Image.open(path) as image:  # a plugin's own ("Truncated File Read"): the outcome says it
            if image.format not in DECODED_TO_THE_END:
                image.verify()
                return None
            short = _ends_short(image, path, size)
            if short is None:
                if image.format in ("JPEG", "MPO"):  # at an eighth of its size: every byte of its scans is read
                    image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
            elif short:
                return short
    except Image.DecompressionBombError:  # an image, larger than Pillow opens: for --max-pixels to judge
        return None
    except OSError as exc:
        return f"cannot be read as an image ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001 - what Pillow raises for a damaged file (SyntaxError, ValueError, ...)
        return f"cannot be read as an image ({exc})"
    return None


KEPT_NAMED = 10
"""How many outputs kept for one reason a batch names each of; more are named for the first few
and counted."""


_SIZES = re.compile(r"\b[0-9]+x[0-9]+\b")
"""A picture's width and height in a kept output's reason (``is 64x48, and the picture decodes
to 256x192``): a folder of thumbnails asked for in full gives each file its own sizes, and one
reason."""


def _list_outcomes(outcomes) -> None:
    """A batch's failures, the outputs it kept, and the warnings of the files it coded, on
    stderr. A warning that only the file's name tells apart from another's (a thousand PNGs
    with text chunks decoded to JPEG) is listed for the first few files, then counted."""
    shared: Counter[str] = Counter()  # a cause not the file's own (a full disk): the first few files named
    for failure in (o for o in outcomes if o.status == "failed"):
        if failure.shared:
            shared[failure.message] += 1
            if shared[failure.message] > console.SAME_WARNINGS_SHOWN:
                continue
        console.err.print(f"failed: {stdio.about(failure.item.source, failure.message)}", markup=False)
    for message, n in shared.items():
        if n > console.SAME_WARNINGS_SHOWN:
            console.err.print(f"failed: {console.more_files(n - console.SAME_WARNINGS_SHOWN)} for the same reason: "
                              f"{message}", markup=False)
    reasons: dict[str, list] = {}  # what is said of an output but its own and its input's names and sizes
    for kept in (o for o in outcomes if o.status == "kept"):
        reason = kept.message.replace(str(kept.item.target), "\0").replace(str(kept.item.source), "\1")
        reasons.setdefault(_SIZES.sub("\2", reason), []).append(kept)
    for alike in reasons.values():
        # Each named, as a few photos edited since their outputs were made are; the thousands
        # that a `touch` or a copy without its dates leaves, the first few and a count.
        named = alike if len(alike) <= KEPT_NAMED else alike[:console.SAME_WARNINGS_SHOWN]
        for kept in named:
            console.err.print(f"kept: {kept.message}", markup=False)
        if len(alike) > len(named):
            console.err.print(f"kept: {console.more_files(len(alike) - len(named), 'output')} for the same reason as "
                              f"{alike[0].item.target}", markup=False)
    kinds: dict[str, list] = {}  # in the order of their first files
    for noted in (o for o in outcomes if o.status == "done" and o.message):
        name = noted.item.target.name  # each of the file's warnings begins with it: the kind is the rest
        kind = "; ".join("\0" + part[len(name):] if part.startswith(name + " ") else part
                         for part in noted.message.split("; "))
        kinds.setdefault(kind, []).append(noted)
    for noted in kinds.values():
        for one in noted[:console.SAME_WARNINGS_SHOWN]:
            console.err.print(f"warning: {one.item.source}: {one.message}", markup=False)
        more = len(noted) - console.SAME_WARNINGS_SHOWN
        if more > 0:
            console.err.print(f"warning: {console.more_files(more)} with the same warning", markup=False)
    console.more_warnings()  # those that reading the inputs raised


LOG_EVERY = 60.0
"""Seconds between a batch's lines of progress on a stderr that is no terminal (a cron job's
log, CI, nohup), where no bar is drawn: a long run is seen to be alive, and how far it got."""


def progress_columns(verb: str, digits: int, width: Callable[[], int]) -> list:
    """A batch bar's columns: the verb, the bar, the count (``digits`` wide), the rate, the time
    taken and the time left, on a line ``width()`` columns wide (read at each refresh: a
    terminal may be resized). On a narrow terminal (a phone's SSH app, a split pane) the bar
    gives way first, down to ``MIN_BAR`` columns, then the rate, cut with an ellipsis; the
    rest stays whole down to about 45 columns. Rich narrows the columns that may wrap, and its
    time columns were such: at 60 columns both times were cut to "…"."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Column
    from rich.text import Text

    # Besides the bar and the rate: the verb, the count, two times of up to 8 characters
    # ("10:00:00"), "left", and a space between each two of the seven columns.
    others = len(verb) + 2 * digits + 1 + 8 + 8 + len("left") + 6

    class Rate(TextColumn):
        def render(self, task):
            text = super().render(task)
            room = width() - others - MIN_BAR
            if room <= 0:  # Rich's truncate leaves a text whole at 0
                return Text("")
            text.truncate(room, overflow="ellipsis")
            return text

    def whole() -> Column:
        return Column(no_wrap=True)

    return [TextColumn(verb, table_column=whole()), BarColumn(table_column=Column(no_wrap=False)),
            TextColumn(f"{{task.completed:>{digits}.0f}}/{{task.total:.0f}}", table_column=whole()),
            Rate("{task.fields[rate]}", table_column=whole()), TimeElapsedColumn(table_column=whole()),
            TimeRemainingColumn(table_column=whole()), TextColumn("left", table_column=whole())]


MIN_BAR = 10
"""The narrowest a batch's bar gets before its rate is cut to make room."""


def _run_tree(verb: str, items, work, force: bool, jobs: int, debug: bool, differs=None,
              unchecked: tuple[str, ...] | list[str] = (), doubtful=None, as_json: bool = False) -> None:
    """Code a batch's items with a bar and a summary (and, decoding beside the ``.nic`` files,
    a note that an image there newer than its file, taken as an earlier output, may be an
    original; with ``unchecked``, the options an output up to date was not compared with; with
    ``doubtful``, a note for each of the first few outputs up to date of which it says why
    they may have been made otherwise). With ``as_json``, a JSON list of the files
    (:func:`json_record`) takes the summary's place on stdout, that of the files coded so far
    when the batch is stopped; stderr says what it says without."""
    from rich.progress import Progress

    from .batch import Abandoned, run
    from .batch_plan import duration_text

    class Bar(Progress):  # here, where Rich is imported: not at the command line's start
        """Rich's progress, which says nothing at its end where it was off (no terminal): Rich
        13.8 to 14 wrote an empty line there, a blank line in a log after every batch."""

        def stop(self) -> None:
            if not self.disable:
                super().stop()

    targets.remove_stale((item.target for item in items), note)
    start = time.perf_counter()
    done_bytes, written, failed = [0], [0], [0]
    # "3/24" as a text column: MofNCompleteColumn is Rich 12's, and nicodec took Rich 10.11 before 0.7.12.
    # The bar, its count, the rate and the time left are the files to code: those up to date or
    # kept leave it as they are found (counted, they made a rerun's rate thousands of files/s
    # and its time left a second for the whole run).
    seen = []  # the outcomes as they come: an interrupted batch still lists its failures
    logged = [0.0]  # when the last line of progress went to a stderr that is no terminal
    columns = progress_columns(verb, len(str(len(items))), lambda: console.err.width)
    with reporting(debug), console.batch_warnings(str(item.source) for item in items), \
            Bar(*columns, console=console.err, transient=True, disable=not console.err.on_terminal) as progress:
        task = progress.add_task(verb, total=len(items), rate="")

        def advance(outcome) -> None:
            seen.append(outcome)
            if outcome.status in ("skipped", "kept"):  # nothing coded
                progress.update(task, total=progress.tasks[0].total - 1)
                return
            written[0] += outcome.status == "done"
            failed[0] += outcome.status == "failed"
            done_bytes[0] += outcome.bytes_in
            elapsed = max(time.perf_counter() - start, 1e-9)
            coded = progress.tasks[0].completed + 1
            # Failures are listed at the end, in the order of the files; a long run counts them as
            # they come, so that one failing file after file is seen (and stopped) early.
            so_far = f", {failed[0]:,} failed" if failed[0] else ""
            progress.update(task, advance=1,
                            rate=f"{coded / elapsed:.1f} files/s, {done_bytes[0] / elapsed / 1e6:.2f} MB/s{so_far}")
            if not console.err.on_terminal and elapsed - logged[0] >= LOG_EVERY:
                logged[0] = elapsed
                total = progress.tasks[0].total or coded
                remaining = (total - coded) * elapsed / coded
                left = f", {duration_text(remaining)} left" if remaining >= 1 else ""
                note(f"{verb}: {coded:,} of {counted_files(int(total))}, {coded / elapsed:.1f} files/s{so_far}{left}")

        def stopping(stop: BaseException) -> None:  # Ctrl-C's (SIGTERM and the like stop at once)
            progress.stop()
            doing = "the file being coded is" if jobs == 1 else f"the files being coded (at most {jobs}) are"
            console.err.print(f"stopping: {doing} finished and written first (Ctrl-C again stops at once, leaving "
                              f"{'it' if jobs == 1 else 'them'} unfinished)", markup=False)

        def hinted_work(item):
            try:
                return work(item)
            except NicodecError as exc:  # listed as the file's failure: with its option, as a single file's is
                message = console.hinted(exc)
                if jobs > 1 and isinstance(exc, OutOfMemoryError):
                    message += f" ({jobs} files are coded at once, each with its image in memory: fewer --jobs need less)"
                exc.args = (message,)
                raise

        try:
            summary = run(items, hinted_work, force=force, jobs=jobs, on_outcome=advance, differs=differs,
                          on_stop=stopping)
        except KeyboardInterrupt as exc:
            progress.stop()
            _list_outcomes(seen)
            if as_json:
                order = {id(item): n for n, item in enumerate(items)}
                with writing_report():
                    console.print_json([json_record(o, verb) for o in
                                        sorted(seen, key=lambda o: order.get(id(o.item), len(items)))])
            detail = f" after {counted_files(written[0])} {verb}d; no file was left half-written"
            if isinstance(exc, Abandoned) and exc.unfinished:
                detail += (f" ({counted_files(exc.unfinished)} being coded {'was' if exc.unfinished == 1 else 'were'} "
                           "left unfinished)")
            raise stop(exc, detail) from None
    _list_outcomes(summary.outcomes)
    skipped = sum(o.status == "skipped" and o.item.target.parent == o.item.source.parent for o in summary.outcomes)
    if verb == "decode" and skipped:
        console.err.print(f"note: {counted_files(skipped)} up to date: {'an image' if skipped == 1 else 'images'} newer than "
                          f"{'its .nic file' if skipped == 1 else 'their .nic files'} beside {'it' if skipped == 1 else 'them'}, "
                          "taken for earlier output (an original edited since it was encoded would be too; -o DIR decodes "
                          "into another folder)", markup=False)
    up_to_date = summary.count("skipped")
    if unchecked and up_to_date:
        options = " or ".join([", ".join(unchecked[:-1]), unchecked[-1]] if len(unchecked) > 2 else unchecked)
        its = "its date and header" if up_to_date == 1 else "their dates and headers"
        console.err.print(f"note: {counted_files(up_to_date)} up to date by {its}, which do not record {options} "
                          "(--force codes every file anew)", markup=False)
    doubts = [(o.item, why) for o in summary.outcomes if o.status == "skipped" and doubtful is not None
              and (why := doubtful(o.item))]
    for item, why in doubts[:5]:
        console.err.print(f"note: {item.target} {why}: counted up to date, but perhaps made for another target "
                          "(--force codes it anew)", markup=False)
    if len(doubts) > 5:
        console.err.print(f"note: and {counted_files(len(doubts) - 5)} more like them", markup=False)
    bytes_in, bytes_out, pixels = summary.totals()
    bpp = f"{8 * (bytes_out if verb == 'encode' else bytes_in) / pixels:.4f} bpp, " if pixels else ""
    with writing_report():
        if as_json:
            console.print_json([json_record(outcome, verb) for outcome in summary.outcomes])
        else:
            console.out.print(
                f"{counted_files(len(items))}: {summary.count('done'):,} {verb}d, {summary.count('skipped'):,} up to date, "
                f"{summary.count('kept'):,} kept, {summary.count('failed'):,} failed; "
                f"{size_text(bytes_in)} in, {size_text(bytes_out)} out, {bpp}{summary.seconds:.1f} s",
                markup=False,
            )
    if summary.failures:
        raise typer.Exit(1)
