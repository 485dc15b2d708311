"""A batch's plan: which files of a folder to code, where each result goes, and which are
skipped before any work (an output up to date, two inputs writing one output, an output that
would replace an input). :func:`nicodec.batch.run` codes what is left.
"""

from __future__ import annotations

import os
import stat
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .files import not_regular


@dataclass(frozen=True)
class Item:
    """One file of a batch and where its result goes."""

    source: Path
    target: Path
    problem: str = ""
    """Why the item cannot be coded, found while planning (a folder or file that cannot be
    read); such an item is a ``failed`` outcome without work."""


@dataclass
class Outcome:
    """What happened to one item.

    Attributes:
        status: ``"done"``, ``"skipped"`` (the output is up to date), ``"kept"`` (the
            output exists but is older than its input; ``force`` redoes it) or ``"failed"``.
        message: the reason, for ``failed`` and ``kept``; for ``done``, a note worth a
            warning (a rate target the file did not meet) or empty.
        bytes_in, bytes_out: file sizes, for ``done``.
        pixels: the image's pixel count, for ``done``.
        shared: for ``failed``, a cause that is the output's place rather than the file's (a
            full disk): the list names the first few files that failed of it, then counts them.
        facts: for ``done``, what ``--json`` reports of the file (its size, quality, ...).
        seconds: the time its work took (:func:`nicodec.batch.run` measures it).
    """

    item: Item
    status: str
    message: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    shared: bool = False
    facts: dict = field(default_factory=dict)
    seconds: float = 0.0


def plan(root: Path, out_root: Path, suffixes: Iterable[str], new_suffix: str,
         passed_over: Counter[str] | None = None, not_files: list[Path] | None = None) -> list[Item]:
    """Every file under ``root`` (recursively, hidden ones excepted: :func:`_hidden`) whose suffix is in
    ``suffixes``, mapped to the same relative path under ``out_root`` with ``new_suffix``.
    ``passed_over``, when given, counts the other files by their suffix (lower case; ``""``
    for none), hidden ones excepted; ``not_files`` gets the pipes, devices and sockets of
    those suffixes, which are passed over too (reading one could block the batch).

    A folder or file that cannot be looked at (no permission), and a link to nothing, is an
    item with a ``problem``, so that it fails in the batch rather than being passed over in
    silence. An output folder
    inside ``root`` (``encode photos -o photos/archive``) is not searched: a second run would
    code the first run's outputs. Links to folders are not followed (a link loop would never end)."""
    wanted = {s.lower() for s in suffixes}
    items = []
    skip = _identity(out_root) if _identity(out_root) != _identity(root) else None

    def unreadable(exc: OSError) -> None:
        folder = Path(exc.filename) if exc.filename else root
        try:
            target = out_root / folder.relative_to(root)
        except ValueError:
            target = out_root
        items.append(Item(folder, target, f"cannot read the folder: {exc.strerror or exc}"))

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not _hidden(Path(folder) / d, folder=True)
                         and (skip is None or _identity(Path(folder) / d) != skip))
        for name in sorted(files):
            path = Path(folder) / name
            suffix = path.suffix.lower()
            if suffix not in wanted:  # another kind
                if passed_over is not None and not _hidden(path):
                    passed_over[suffix] += 1
                continue
            if _hidden(path):
                continue
            target = (out_root / path.relative_to(root)).with_suffix(new_suffix)
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)  # Path.is_file() hides errors from Python 3.13 on
            except FileNotFoundError:
                try:  # a file gone since the listing is passed over; a link to nothing is not
                    items.append(Item(path, target, f"it is a link to {os.readlink(path)}, which leads to no file"))
                except OSError:
                    pass
                continue
            except OSError as exc:  # a folder that can be listed but not entered
                items.append(Item(path, target, f"cannot read it: {exc.strerror or exc}"))
                continue
            if not regular:  # a pipe or device (which could block the batch), or a link to a folder
                if not_files is not None and not path.is_dir():
                    not_files.append(path)
                continue
            items.append(Item(path, target))
    return items


def _hidden(path: Path, folder: bool = False) -> bool:
    """Whether a batch passes ``path`` over: a name that begins with ``.``; on Windows also the
    hidden and system attributes (``$RECYCLE.BIN`` and its deleted photos, ``System Volume
    Information``, which no one may list) and, for a folder, a junction (Windows' older kind of
    folder link, which ``os.walk`` follows: ``Documents\\My Pictures``, which no one may list
    either, or a loop)."""
    if path.name.startswith("."):
        return True
    attributes, reparse_tag = _windows_attributes(path)
    return bool(attributes & _HIDDEN_OR_SYSTEM) or (folder and reparse_tag == _JUNCTION)


_HIDDEN_OR_SYSTEM = stat.FILE_ATTRIBUTE_HIDDEN | stat.FILE_ATTRIBUTE_SYSTEM
_JUNCTION = getattr(stat, "IO_REPARSE_TAG_MOUNT_POINT", 0xA0000003)  # the constant exists on Windows only


def _windows_attributes(path: Path) -> tuple[int, int]:
    """A path's Windows file attributes and reparse tag, not following a link; (0, 0) elsewhere
    or when they cannot be read (the walk then names the problem)."""
    if os.name != "nt":
        return 0, 0
    try:
        info = os.lstat(path)
    except OSError:
        return 0, 0
    return getattr(info, "st_file_attributes", 0), getattr(info, "st_reparse_tag", 0)


def _identity(path: Path) -> tuple[int, int] | None:
    """A folder as the file system knows it (device and inode), however its name is written or
    cased; None if it does not exist (yet)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def collisions(items: list[Item], fold: Callable[[Path], str] | None = None) -> dict[Item, list[Item]]:
    """Items whose target more than one item would write (``a.png`` and ``a.jpg`` both make
    ``a.nic``), each with the others: none is coded, or one would silently replace another.

    Names that differ only in case or in Unicode normal form (``Photo.nic`` and ``photo.nic``)
    count as one: they are one file on the usual file systems of macOS and Windows, and on
    FAT and exFAT drives anywhere. ``fold``: how paths are made one (default :func:`_fold`).
    """
    fold = fold or _fold
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(fold(item.target), []).append(item)
    return {
        item: [other for other in group if other is not item]
        for group in groups.values() if len(group) > 1 for item in group
    }


def real_path(path: Path) -> str:
    """One name for every way of writing a path (``a.png``, ``./a.png``, ``$PWD/a.png``, a link)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return str(path)


def _fold(path: Path) -> str:
    """A path as a file system that ignores case and Unicode normal form sees it, however it
    is written. ``lower``, not ``casefold``: ``Straße`` and ``Strasse`` are two names on those
    systems too."""
    return unicodedata.normalize("NFC", real_path(path)).lower()


class Resolved:
    """:func:`real_path` and :func:`_fold` over a batch's files, each folder resolved once: a
    path's resolution looks at every folder above it, and a batch's setup resolves each file's
    input and output several times (10,000 files 26 folders deep took 870,000 looks and 4 s
    before the first file was coded; 100,000 of them, 42 s)."""

    def __init__(self) -> None:
        self._folders: dict[Path, str] = {}

    def real(self, path: Path) -> str:
        if path.name in ("", ".", ".."):
            return real_path(path)
        folder = self._folders.get(path.parent)
        if folder is None:
            folder = self._folders[path.parent] = real_path(path.parent)
        joined = os.path.join(folder, path.name)
        return real_path(Path(joined)) if os.path.islink(joined) else joined

    def fold(self, path: Path) -> str:
        return unicodedata.normalize("NFC", self.real(path)).lower()


FUTURE_TOLERANCE = 2.0
"""Seconds an input may be dated ahead of this machine's clock before an output older than it is
said to be so because of the date (a copy from a machine whose clock runs fast, a network file
system's server): FAT's and zip's 2-second times round up."""


def duration_text(seconds: float) -> str:
    """``seconds`` rounded to the nearest whole number of the largest unit it holds one of:
    ``about 3 hours`` for 2 hours 59 minutes."""
    unit, size = next(((unit, size) for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60))
                       if seconds >= size), ("second", 1))
    count = round(seconds / size)
    return f"about {count:,} {unit}{'' if count == 1 else 's'}"


def triage(item: Item, force: bool, differs: Callable[[Item], str | None] | None = None) -> Outcome | None:
    """An outcome without work when the target exists and ``force`` is not given.

    A target newer than its source is up to date (``skipped``) unless ``differs`` names how it
    differs from what would be written now (another model, another quality): it is then
    ``kept``, as an older one is. One of the same time counts as newer: times kept to the second
    or to 2 s (FAT, HFS+, a tar or zip copy) make an output coded within that tick equal to its
    input. Times are compared in nanoseconds (compared as floats, a source up to about 200 ns
    newer was equal), and a source that is a link counts the later of its own time and its
    file's (a link pointed at an older file is a change)."""
    try:
        if force or not os.path.lexists(item.target):
            return None
        if item.target.is_dir():
            return Outcome(item, "failed", f"the output {item.target} is a directory")
        if not item.target.exists():  # found only as the finished file was moved in, after the work
            return Outcome(item, "kept", f"{item.target} is a link to a file that does not exist; --force replaces "
                                         "the link")
        if not item.target.is_file():  # a pipe: reading its header to compare waited for a writer, for ever
            return Outcome(item, "failed", not_regular(item.target))
    except (OSError, ValueError) as exc:  # a name longer than the file system takes
        return Outcome(item, "failed", f"cannot use the output {item.target}: {getattr(exc, 'strerror', None) or exc}")
    try:
        made = item.target.stat().st_mtime_ns
        link = os.lstat(item.source)
        picture = item.source.stat() if stat.S_ISLNK(link.st_mode) else link
    except OSError as exc:  # an input named on the command line that is not there
        return Outcome(item, "failed", f"cannot read {item.source}: {exc.strerror or exc}")
    if made >= max(picture.st_mtime_ns, link.st_mtime_ns):
        reason = differs(item) if differs is not None else None
        if reason is None:
            return Outcome(item, "skipped")
        return Outcome(item, "kept", f"{item.target} {reason}; --force replaces it")
    if made >= picture.st_mtime_ns:  # the link's own time
        message = (f"{item.target} exists and is older than the link {item.source}, made or pointed at another file "
                   "since; --force replaces it")
    else:
        message = f"{item.target} exists and is older than {item.source}; --force replaces it"
    ahead = (max(picture.st_mtime_ns, link.st_mtime_ns) - time.time_ns()) / 1e9
    if ahead > FUTURE_TOLERANCE:  # every output made before that date is older: --force does not help for long
        return Outcome(item, "kept", f"{item.target} exists and is older than {item.source}, which is dated "
                                     f"{duration_text(ahead)} ahead of this machine's clock (a clock skew?): an output made "
                                     "before then counts as older on every run, one --force replaces too (touch "
                                     "the input to date it now)")
    if item.target.parent != item.source.parent:  # -o DIR: the hints below are of outputs beside their inputs
        pass
    elif item.target.suffix.lower() != ".nic":  # decoding beside the photos: that image may be the original
        message += " (if it is an original rather than an earlier output, write elsewhere with -o)"
    else:  # encoding beside images decoded from the .nic files: coding them again loses more
        message += " (if the image was decoded from it, --force codes that copy again, losing more; use -o)"
    return Outcome(item, "kept", message)


def collision_text(item: Item, others: list[Item]) -> str:
    """What ``item`` shares its target with: the same name, then names that are the same file
    only where case or Unicode normal form is ignored."""
    same = [other for other in others if other.target == item.target]
    folded = [other for other in others if other.target != item.target]
    parts = []
    if same:
        parts.append(f"{', '.join(str(other.source) for other in same)} would be written to {item.target} too")
    if folded:
        targets = ", ".join(dict.fromkeys(str(other.target) for other in folded))
        parts.append(f"{', '.join(str(other.source) for other in folded)} would be written to {targets}, the same "
                     f"file as {item.target} on file systems that ignore case or Unicode normal form (macOS, "
                     "Windows, FAT drives), or by another path")
    return "; ".join(parts) + "; rename one of them"
