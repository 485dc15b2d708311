"""Compressing a large image collection with Ray Data: one ``Codec`` per worker, Ray's own I/O.

    import ray
    from nicodec.ray_recipe import compress_collection

    ray.init()                      # RAY_ADDRESS's cluster, this machine's, or a new local one
    summary = compress_collection("s3://bucket/photos", "s3://bucket/archive", workers=8)
    print(summary)

The pipeline::

    ray.data.read_binary_files(source)      file bytes and paths, read by Ray's readers
      .map_batches(Encoder, compute=ActorPoolStrategy(size=workers))
                                            one actor per worker, each holding one Codec
      .write_datasink(NicDatasink(target))  one .nic file per image, the source's tree kept

The files are read as bytes, not with ``read_images``, so ``Codec.encode`` sees what the
CLI sees: every mode Pillow opens, transparency, the ICC profile, EXIF (with its orientation), XMP and text.
Outputs mirror the source tree under the target (``photos/a/b.jpg`` becomes
``archive/a/b.nic``); one that exists is skipped unless ``overwrite`` is given, so a run
that stopped can be run again. One bad image never stops the run: it is counted and
listed in the :class:`Summary`, and so is one that kills its worker, once Ray has tried
its task :data:`RETRIES` more times.

Paths may be local folders or any URI pyarrow opens (``s3://``, ``gs://``, ...). On a
cluster of several machines, both must be storage every node sees (an object store or a
shared file system): a plain local path means each node's own disk.

This module needs Ray Data (from a checkout, ``pip install ".[cpu,ray]"``, or ``".[gpu,ray]"``
on GPU workers; tested with Ray 2.60, while 2.40 hands ``on_write_complete`` another type);
``import nicodec`` never imports it.
"""

from __future__ import annotations

import os
import posixpath
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

try:
    import ray
    import ray.data
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink
except ImportError as exc:  # pragma: no cover - exercised where Ray is absent
    _NEEDS_RAY = (f"nicodec.ray_recipe needs Ray Data ({exc}): pip install \"nicodec[cpu,ray]\" (from a checkout, "
                  "pip install \".[cpu,ray]\")")
    if __name__ == "__main__":  # python -m nicodec.ray_recipe: one line, not two chained tracebacks
        import sys

        print(f"error: {_NEEDS_RAY}", file=sys.stderr)
        raise SystemExit(1) from None
    raise ImportError(_NEEDS_RAY) from exc

from . import format as nicformat
from .errors import NicodecError
from .inputs import Strip
from .settings import Providers
from .ray_files import (as_uri, clashing_sources, clear_stale_temporaries, files_under, filesystem_of,
                        links_to_nowhere, listed_sources, output_name, path_kind, unsafe_output_name, write_output)

IO_CPUS = 0
"""CPUs reserved by each read and write task (they only move bytes)."""
IO_TASKS_PER_WORKER = 1
"""Read tasks, and write tasks, run at once per encoder actor. Reserving no CPU, they were
bounded by nothing (a review counted up to 29 Ray processes, 5.2 GB, on two CPUs): 40 photos
of 0.6 MB on two CPUs and two encoders took 34.8 and 43.8 s, and 13.7 and 19.8 s so bounded."""
RETRIES = 2
"""How many times Ray runs a batch again whose worker died (a crash, or the system ending it for
memory), and makes its actor again: Ray Data's default, without end, ran a batch that killed
its worker again and again, and the run never returned."""


def image_extensions() -> list[str]:
    """The file extensions Pillow can open (without the dot), ``nic`` excepted: what the CLI codes."""
    from .plugins import readable_suffixes

    return [suffix[1:] for suffix in readable_suffixes()]


@dataclass
class Summary:
    """What a run did.

    Attributes:
        done: images compressed and written.
        skipped: images whose output existed (and ``overwrite`` was not given).
        failed: ``(source path, reason)`` for each image that could not be coded or written.
        bytes_in, bytes_out: sizes of the images coded and of their ``.nic`` files.
        pixels: pixels of the images coded.
        seconds: wall-clock time of the whole run.
    """

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    seconds: float = 0.0

    @property
    def bpp(self) -> float:
        return 8 * self.bytes_out / self.pixels if self.pixels else 0.0

    def add(self, other: Summary) -> None:
        self.done += other.done
        self.skipped += other.skipped
        self.failed.extend(other.failed)
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.pixels += other.pixels

    def __str__(self) -> str:
        return (
            f"{self.done} coded, {self.skipped} skipped, {len(self.failed)} failed; "
            f"{self.bytes_in:,} bytes in, {self.bytes_out:,} out ({self.bpp:.3f} bpp); {self.seconds:.1f} s"
        )


def compress_collection(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    workers: int = 2,
    threads: int = 1,
    batch_size: int = 4,
    model: str | os.PathLike | None = None,
    providers: Providers = "cpu",
    num_gpus: float = 0,
    overwrite: bool = False,
    strip: Strip = False,
    exact: bool = False,
    quality: float | None = None,
    extensions: list[str] | None = None,
    max_pixels: int | None = None,
) -> Summary:
    """Compress every image under ``source`` into ``.nic`` files under ``target`` with Ray Data.

    Uses the running Ray instance (Ray Data starts a local one if there is none).

    Args:
        source: a folder (searched recursively), a file, or a URI such as ``s3://bucket/photos``.
        target: the folder the ``.nic`` files go to, in the same tree as under ``source``.
        workers: how many encoder actors (each holds one ``Codec``) run at once.
        threads: onnxruntime threads per actor; each actor reserves this many CPUs.
        batch_size: images handed to an actor at a time.
        model: a model folder, readable at the same path on every node and on the driver
            (which checks it before any work); ``None`` for the shipped model.
        providers: onnxruntime providers of each actor's ``Codec``, as it takes them (``"cuda"``
            with ``num_gpus``; a name paired with its options).
        num_gpus: GPUs each actor reserves.
        overwrite: replace existing outputs instead of skipping them.
        strip: leave out ICC profiles, EXIF data, XMP packets, text and resolutions, or the
            kinds of them named (``{"exif", "xmp"}``), as for ``Codec.encode``.
        exact: keep the colour under fully transparent pixels (``Codec.encode``'s ``exact``).
        quality: from 1 (smallest files) to 100 (best pictures); ``None`` for the model's
            default. A single-rate model refuses it, before any work.
        extensions: which files to read (default: every extension Pillow opens).
        max_pixels: the largest image coded, as ``Codec``'s (``None``: its default, 89,478,485);
            a collection from untrusted sources is better served by a lower one.

    Returns:
        The counts and failures of the run.

    Raises:
        QualityError: ``quality`` is not a number from 1 to 100, or is given to a single-rate
            model (checked before any work).
        ModelError: ``model`` cannot encode: no model folder at that path on the driver, a
            file damaged, or no encoder graph (likewise).
        NicodecError: ``strip`` is neither a bool nor kinds of metadata, ``exact`` is not a
            bool, ``workers``, ``threads`` or ``batch_size`` is not a whole number from 1, or
            ``source`` does not exist
            (likewise). An image of a batch whose worker died :data:`RETRIES` + 1 times (a
            crash, or the memory running out) is listed as failed (:data:`LOST`).
    """
    from .inputs import check_flags, stripped_kinds, whole
    from .sessions import MAX_THREADS

    _check_quality(quality)
    check_flags(exact=exact)
    strip = stripped_kinds(strip)  # a frozenset, which the actors' pickling takes (a dict's keys view it does not)
    if max_pixels is not None:
        whole("max_pixels", max_pixels, 1)  # Codec's own check, on the driver before any work
    whole("workers", workers, 1)
    whole("threads", threads, 1, MAX_THREADS)
    whole("batch_size", batch_size, 1)
    start = time.perf_counter()
    source, target = as_uri(source), as_uri(target)
    _check_source(source)
    _check_model(model, quality)
    _, source_root = filesystem_of(source)
    extensions = extensions or image_extensions()
    listed = listed_sources(source, extensions)
    # Links that lead nowhere, which neither pyarrow's listing nor Ray's reader shows: failed on
    # the driver, as the CLI fails them (they were neither coded nor counted).
    links = [] if listed is None else links_to_nowhere(source, extensions)
    if listed == [] and not links:  # Ray's reader raises a ValueError for a folder of none
        warnings.warn(f"no images in {source} (looked for files with the extensions {', '.join(extensions)}, "
                      "names beginning with '.' or '_' excepted)", UserWarning, stacklevel=2)
        return Summary(seconds=time.perf_counter() - start)
    clashes = clashing_sources(source, extensions, listed)
    # Names Ray's reader passes over (a folder of nothing else made it raise), failed on the driver.
    unread = [] if listed is None else [path for path in listed if "?" in path]
    done_before: set[str] = set()
    if listed is not None and not overwrite:
        # A run again: the outputs there already are found on the driver with one listing of
        # the target, and their sources not read at all (they were read, sent to an encoder
        # and skipped there: 40 photos all done took 8 to 10 s, now none; from an object
        # store, each was downloaded again).
        there = files_under(target)
        done_before = {path for path in listed if path not in clashes and output_name(path, source_root) in there}
    # What this run is to code (a single file: itself), and of it what Ray's reader will read.
    expected = [source_root] if listed is None else [path for path in listed if path not in done_before]
    left = [path for path in expected if "?" not in path]
    if listed is not None and not left:
        return Summary(skipped=len(done_before), failed=links + [(path, UNREAD) for path in unread],
                       seconds=time.perf_counter() - start)
    # The folder itself for Ray to list (an object store's too), unless some are left out:
    # then the paths, in the source's file system's own form (an object store's have no scheme).
    reading, filesystem = source, None
    if listed is not None and len(left) < len(listed):
        reading, filesystem = left, filesystem_of(source)[0] if "://" in source else None
    if "://" not in target:
        clear_stale_temporaries(target, [output_name(path, source_root) for path in left])
    # Reading and writing only move bytes, so they reserve no CPU: the encoders may take
    # every CPU. (Two encoders on a two-CPU instance left a read task that asked for one
    # CPU, or a quarter, waiting for ever.) Nor, then, does a CPU bound their number: as many
    # at once as encoders (:data:`IO_TASKS_PER_WORKER`).
    dataset = ray.data.read_binary_files(reading, filesystem=filesystem, include_paths=True, file_extensions=extensions,
                                         num_cpus=IO_CPUS, concurrency=IO_TASKS_PER_WORKER * workers)
    # A task Ray gave up (its worker died RETRIES + 1 times, or it raised) drops its rows and
    # the run goes on; its images are named below, as failed. The dataset's own context (Ray
    # copies the global one as a dataset is made), so no other job of the process is touched.
    dataset.context.max_errored_blocks = -1
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for an actor's restarts yet, and warns of the keyword
        # arguments it passes to ray.remote as it takes them (Ray's own comment names max_restarts).
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        encoded = _encode_step(dataset, batch_size, workers, threads, num_gpus, {
            "source_root": source_root, "target": target, "model": model, "providers": providers,
            "threads": threads, "overwrite": overwrite, "strip": strip, "exact": exact,
            "quality": quality, "clashes": clashes, "max_pixels": max_pixels,
        })
    encoded.context.max_errored_blocks = -1
    sink = NicDatasink(target, overwrite=overwrite)
    with warnings.catch_warnings():  # bounds above the blocks a small collection makes are no problem of the user's
        warnings.filterwarnings("ignore", message="The (maximum|minimum) number of concurrent")
        encoded.write_datasink(sink, ray_remote_args={"num_cpus": IO_CPUS, "max_retries": RETRIES},
                               concurrency=IO_TASKS_PER_WORKER * workers)
    summary = sink.summary
    summary.skipped += len(done_before)
    summary.failed.extend(links)
    missing = [path for path in expected if path not in sink.seen]
    if len(missing) == len(expected) - len(sink.seen):
        summary.failed.extend((path, UNREAD if "?" in path else LOST) for path in missing)
    elif len(sink.seen) < len(expected):  # the listing's names and Ray's differ in form: counted, not named
        summary.failed.append((source, f"{len(expected) - len(sink.seen):,} of its images never came back: {LOST}"))
    summary.seconds = time.perf_counter() - start
    return summary


LOST = (f"Ray gave up the task that held it, with the images read with it (each fails alike): its worker died "
        f"{RETRIES + 1} times on them (a crash, or the system ending it for want of memory; one of them alone as the "
        "source tells which it was, and a lower max_pixels refuses large images before they are decoded), or the "
        "task raised an error, which Ray's log shows")
"""The reason given for an image whose result never came back (:data:`RETRIES`)."""
UNREAD = "Ray's reader passes over a name with '?' (a URI's query): rename it, or code it with nicodec encode"
"""The reason given for an image Ray never read."""


def _encode_step(dataset, batch_size: int, workers: int, threads: int, num_gpus: float, arguments: dict):
    """``dataset.map_batches(Encoder, ...)`` on ``workers`` actors, a batch whose worker died run
    again at most :data:`RETRIES` times."""
    return dataset.map_batches(
        Encoder,
        fn_constructor_kwargs=arguments,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads,
        num_gpus=num_gpus,
        max_restarts=-1,  # Ray Data's default, said here: an actor that died is made again (at most RETRIES times a batch)
        max_task_retries=RETRIES,
    )


class Encoder:
    """The ``map_batches`` step: one ``Codec`` per actor, made once and reused for every batch.

    Takes batches with ``bytes`` and ``path`` columns (``read_binary_files(include_paths=True)``)
    and returns one row per image: ``source``, ``target`` (the output path, relative to the
    target folder), ``status`` (``done``, ``skipped`` or ``failed``), ``message``, ``nic``
    (the file's bytes, empty unless done), ``bytes_in`` and ``pixels``.

    Args:
        source_root: the source folder as Ray resolves it (no scheme), to make paths relative.
        target: the target folder or URI, to skip outputs that exist.
        model, providers, threads, max_pixels, strip, exact, quality: as for ``Codec`` and
            ``Codec.encode``.
        overwrite: code images whose output exists instead of skipping them.
        clashes: source paths whose output another source would write too
            (:func:`clashing_sources`), each with the others: failed, not coded.
    """

    def __init__(
        self,
        source_root: str,
        target: str,
        *,
        model: str | os.PathLike | None = None,
        providers: Providers = "cpu",
        threads: int = 1,
        overwrite: bool = False,
        strip: Strip = False,
        exact: bool = False,
        quality: float | None = None,
        clashes: dict[str, list[str]] | None = None,
        max_pixels: int | None = None,
    ):
        from .codec import Codec

        # Loaded now: a model that cannot encode, or a provider the worker lacks, stops the actor
        # as it starts rather than failing each image.
        limit = {} if max_pixels is None else {"max_pixels": max_pixels}
        self.codec = Codec(model, providers=providers, threads=threads, **limit).prepare(decode=False)
        self.source_root = source_root
        self.filesystem, self.target_root = filesystem_of(target)
        self.overwrite = overwrite
        self.strip = strip
        self.exact = exact
        self.quality = quality
        self.clashes = clashes or {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self._encode(bytes(data), str(path)) for data, path in zip(batch["bytes"], batch["path"])]
        columns = ("source", "target", "status", "message", "nic", "bytes_in", "pixels")
        out = {name: np.array([row[i] for row in rows], dtype=object) for i, name in enumerate(columns)}
        for name in ("bytes_in", "pixels"):
            out[name] = out[name].astype(np.int64)
        return out

    def _encode(self, data: bytes, path: str) -> tuple:
        relative = output_name(path, self.source_root)
        problem = unsafe_output_name(relative)
        if problem:
            return path, relative, "failed", problem, b"", 0, 0
        if path in self.clashes:
            others = ", ".join(self.clashes[path])
            return (path, relative, "failed", f"{others} would be written to {relative} too (or to a name that differs "
                    "only in case or Unicode normal form, one file on macOS, Windows and FAT drives); rename one of them",
                    b"", 0, 0)
        try:
            kind = path_kind(self.filesystem, posixpath.join(self.target_root, relative))
        except OSError as exc:  # one image's failure, not the batch's (Ray would drop them all)
            return path, relative, "failed", f"cannot tell whether the output {relative} exists: {exc}", b"", 0, 0
        if kind == "directory":  # skipped as done, or (overwrite) failed as the write's error, once coded
            return path, relative, "failed", f"the output {relative} is a folder", b"", 0, 0
        if not self.overwrite and kind is not None:
            return path, relative, "skipped", "", b"", 0, 0
        try:
            nic = self.codec.encode(data, quality=self.quality, strip=self.strip, exact=self.exact)
        except NicodecError as exc:
            return path, relative, "failed", str(exc), b"", 0, 0
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
            return path, relative, "failed", f"internal error: {type(exc).__name__}: {exc}", b"", 0, 0
        header, _, _ = nicformat.read_header(nic)
        return path, relative, "done", "", nic, len(data), header.width * header.height


class NicDatasink(Datasink):
    """Writes the ``nic`` column of rows with status ``done``, one file each, under ``target``.

    Local folders are written as the CLI writes: through a temporary file renamed into
    place, never over an existing file unless ``overwrite``. Other file systems get
    pyarrow's output streams (an object store shows a file only once it is complete).
    After the write, :attr:`summary` holds the counts of every row, written or not.
    """

    def __init__(self, target: str, *, overwrite: bool = False):
        self.target = target
        self.overwrite = overwrite
        self.summary = Summary()
        self.seen: set[str] = set()
        """The source of every row written, skipped or failed: those of a batch given up are not."""

    def write(self, blocks, ctx) -> tuple[Summary, list[str]]:
        filesystem, root = filesystem_of(self.target)
        local = filesystem.type_name == "local"
        part, seen = Summary(), []
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            for row in table.to_pylist():
                seen.append(row["source"])
                if row["status"] == "skipped":
                    part.skipped += 1
                    continue
                if row["status"] != "done":
                    part.failed.append((row["source"], row["message"]))
                    continue
                path = posixpath.join(root, row["target"])
                try:
                    write_output(filesystem, local, path, row["nic"], self.overwrite)
                except (NicodecError, OSError) as exc:
                    part.failed.append((row["source"], f"cannot write {path}: {exc}"))
                    continue
                except Exception as exc:  # noqa: BLE001 - one file's failure, not the task's (Ray would drop them all)
                    part.failed.append((row["source"], f"cannot write {path}: internal error: {type(exc).__name__}: {exc}"))
                    continue
                part.done += 1
                part.bytes_in += row["bytes_in"]
                part.bytes_out += len(row["nic"])
                part.pixels += row["pixels"]
        return part, seen

    def on_write_complete(self, write_result) -> None:
        for part, seen in write_result.write_returns:
            self.summary.add(part)
            self.seen.update(seen)


def _check_source(source: str) -> None:
    """Refuse a source that does not exist, on the driver (Ray's reader raised a traceback)."""
    import pyarrow.fs

    filesystem, path = filesystem_of(source)
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        raise NicodecError(f"{source}: no such file or folder")


def _check_model(model, quality) -> None:
    """Refuse, on the driver, a model that cannot encode (no folder there, a damaged file, no
    encoder graph) or a quality a single-rate model does not take: on the workers the first
    made every encoder actor die, a traceback of Ray's, and the second failed every image. Its
    files are read and hashed, not run: the driver needs no onnxruntime."""
    from .model import ModelFiles

    files = ModelFiles.load(model)
    files.check_available("encoder.onnx", "encode")
    files.check_takes(quality)


def _check_quality(quality) -> None:
    """Refuse a quality no model takes on the driver, rather than failing every image on the workers."""
    from .model import check_quality

    if quality is not None:
        check_quality(quality)


def _quality_argument(text: str) -> float:
    """argparse type of ``--quality``: a number from 1 to 100."""
    import argparse

    from .arguments import real_number_text

    quality = real_number_text(text)
    try:
        if quality is None:
            raise ValueError(text)
        _check_quality(quality)
    except ValueError:  # not a number, or _check_quality's (a QualityError is a ValueError)
        raise argparse.ArgumentTypeError(f"{text!r} is not a quality from 1 to 100") from None
    return quality


def _max_pixels_argument(text: str) -> int:
    """argparse type of ``--max-pixels``: a whole number, 1 or more."""
    import argparse

    from .arguments import whole_number_text

    pixels = whole_number_text(text)
    if pixels is None or pixels < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of pixels (a whole number, 1 or more)")
    return pixels


def _count_argument(text: str) -> int:
    """argparse type of ``--workers``, ``--threads`` and ``--batch-size``: a whole number, 1 or more."""
    import argparse

    from .arguments import whole_number_text

    count = whole_number_text(text)
    if count is None or count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, 1 or more")
    return count


def _metadata_argument(text: str) -> str:
    """argparse type of ``--metadata``: :func:`nicodec.arguments.metadata_kept`'s value."""
    import argparse

    from .arguments import metadata_kept

    try:
        return metadata_kept(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _providers_argument(text: str) -> str:
    """argparse type of ``--providers``: cpu, cuda, auto, or an onnxruntime provider's name."""
    import argparse

    from .arguments import is_provider_choice

    if is_provider_choice(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not cpu, cuda, auto, nor an onnxruntime provider's name "
                                     "(such as OpenVINOExecutionProvider)")


def _gpus_argument(text: str) -> float:
    """argparse type of ``--num-gpus``: a number of GPUs, 0 or more."""
    import argparse

    from .arguments import real_number_text

    gpus = real_number_text(text)
    if gpus is None or not 0 <= gpus < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GPUs (0 or more)")
    return gpus


def main(argv: list[str] | None = None) -> int:
    """``python -m nicodec.ray_recipe SOURCE TARGET [--address auto] [--workers N] ...``

    Prints the summary on stdout and each failure on stderr; exits 1 if any image failed.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m nicodec.ray_recipe",
        description="Compress every image under SOURCE into .nic files under TARGET, with Ray Data.",
    )
    parser.add_argument("source", help="folder, file or URI (s3://..., gs://...) of the images")
    parser.add_argument("target", help="folder or URI for the .nic files")
    parser.add_argument(
        "--address", default=None,
        help="Ray cluster to join (auto: the one this node is in); default: Ray's own choice, RAY_ADDRESS if set, "
             "else the cluster this machine started (ray start), else a new local one",
    )
    parser.add_argument("--workers", type=_count_argument, default=2, help="encoder actors (default 2)")
    parser.add_argument("--threads", type=_count_argument, default=1,
                        help="onnxruntime threads (and CPUs) per actor (default 1)")
    parser.add_argument("--batch-size", type=_count_argument, default=4, help="images handed to an actor at a time")
    parser.add_argument("--model", default=None, help="model folder, the same path on every node (default: shipped)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing .nic files instead of skipping them")
    parser.add_argument("--strip", action="store_true",
                        help="leave out ICC profiles, EXIF data, XMP packets, text and resolutions")
    parser.add_argument("--metadata", type=_metadata_argument, default=None, metavar="KINDS",
                        help="the metadata to keep: icc, exif, xmp, text and dpi, with commas between them; all "
                             "(the default) or none (as --strip)")
    parser.add_argument("--exact", action="store_true", help="keep the colour under fully transparent pixels")
    parser.add_argument(
        "--quality", type=_quality_argument, default=None,
        help="from 1 (smallest files) to 100 (best pictures); default: the model's (56 for the shipped one)",
    )
    parser.add_argument("--providers", default="cpu", type=_providers_argument,
                        help="onnxruntime providers of each actor: cpu (the default), cuda, auto, or an onnxruntime "
                             "provider's name")
    parser.add_argument("--provider-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the provider --providers names, for onnxruntime as it is (device_type=GPU "
                             "for OpenVINO's); again for another")
    parser.add_argument("--max-pixels", type=_max_pixels_argument, default=None,
                        help="the largest image coded (default 89,478,485, Pillow's decompression-bomb threshold)")
    parser.add_argument("--num-gpus", type=_gpus_argument, default=0,
                        help="GPUs each actor reserves, with --providers cuda (e.g. 1, or 0.5 for two actors a GPU)")
    args = parser.parse_args(argv)
    from .arguments import provider_options, stripped_by, with_options

    try:
        providers = with_options(args.providers, provider_options(args.provider_option), "--providers")
    except ValueError as exc:
        parser.error(f"argument --provider-option: {exc}")
    try:
        strip = stripped_by(args.metadata, args.strip)
    except ValueError as exc:
        parser.error(f"argument --metadata: {exc}")
    try:
        _check_source(as_uri(args.source))  # before Ray starts
        _check_model(args.model, args.quality)
    except NicodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    try:
        ray.init(address=args.address)
        try:
            summary = compress_collection(
                args.source, args.target, workers=args.workers, threads=args.threads, batch_size=args.batch_size,
                model=args.model, overwrite=args.overwrite, strip=strip, exact=args.exact,
                quality=args.quality, providers=providers, num_gpus=args.num_gpus, max_pixels=args.max_pixels,
            )
        finally:
            ray.shutdown()
    except NicodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, waiting for a cluster or a run: what was written stays, whole
        print("interrupted", file=sys.stderr)
        return 130
    for path, reason in summary.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
