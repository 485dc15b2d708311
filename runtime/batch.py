"""Whole folders: plan which files to code, run them on worker threads, count the outcomes.

The CLI's ``encode DIR`` and ``decode DIR`` are built on this. One bad file never
stops a batch: its error becomes a ``failed`` outcome with the reason.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NicodecError
from .files import not_regular


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP, SIGXCPU or (Windows) SIGBREAK (``timeout``, systemd, a closed terminal, a CPU-time limit), raised where Ctrl-C's
    KeyboardInterrupt would be, so that a file being written is cleaned up the same way.

    Attributes:
        signum: the signal's number (the exit code is 128 plus it).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Abandoned(KeyboardInterrupt):
    """A second stop while a batch's files in flight finish: those still being coded are left
    unfinished. Their threads cannot be stopped, so the process is to end at once, as the
    ``nicodec`` command does (:func:`nicodec.launch.nicodec`), rather than wait for them at exit.

    Attributes:
        signum: the second stop's signal (the exit code is 128 plus it).
        unfinished: how many files were still being coded.
    """

    def __init__(self, signum: int, unfinished: int):
        super().__init__(signum, unfinished)
        self.signum, self.unfinished = signum, unfinished


ABANDONED: list[int] = []
"""The count of files a batch left unfinished (:class:`Abandoned`), once one has: their threads
may still run, and only ending the process at once ends them."""

STOPS: list[int] = []
"""The signals that stopped work in this process while :func:`stop_like_ctrl_c`'s handlers were
in place, in order (SIGINT, SIGTERM, SIGHUP, SIGXCPU): the command line reads the last for a stop that
reached Typer, which keeps nothing of it but exit code 130."""


def _raise_terminated(signum, frame):
    STOPS.append(signum)
    if signum == XCPU:
        # Sent again every CPU second past the soft limit: once stops the work, and the next ones,
        # through the clean-up and the interpreter's exit, must neither stop it again nor (by the
        # default action) end the process with a core dump.
        signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


def _raise_interrupted(signum, frame):
    STOPS.append(signum)
    raise KeyboardInterrupt


# SIGXCPU: a soft CPU-time limit reached (ulimit -S -t, a batch scheduler's s_cpu), whose default
# action ends the process at once, leaving its temporary files; SIGBREAK: Ctrl-Break in a
# Windows console, likewise (and there no later run removes what it left).
XCPU = getattr(signal, "SIGXCPU", None)
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGXCPU", "SIGBREAK")
                    if hasattr(signal, name))


def stop_like_ctrl_c() -> dict:
    """Make SIGTERM, SIGHUP, SIGXCPU and (Windows) SIGBREAK raise :class:`Terminated` in the main thread (the command line
    does this; a library leaves its host's signals alone), and note each stop, Ctrl-C's too,
    in :data:`STOPS`. Ones set to anything but the default, such as ignored by ``nohup``, are
    left as they are, and so is everything off the main thread, where no handler can be set.
    Returns the handlers replaced, to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    replaced = {}
    for signum in TERMINATING:
        if signal.getsignal(signum) == signal.SIG_DFL:
            replaced[signum] = signal.signal(signum, _raise_terminated)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        replaced[signal.SIGINT] = signal.signal(signal.SIGINT, _raise_interrupted)
    return replaced


def _interrupting(handler) -> bool:
    return handler in (signal.default_int_handler, _raise_terminated, _raise_interrupted)


_COMMIT = threading.Lock()
"""Taken for :func:`unless_abandoned`'s check, and by :func:`run` as it gives a batch up: a file
is either renamed into place before the batch is given up (and waited for, to be counted as
written) or never renamed."""
_RENAMING: dict[int, object] = {}
"""The items past :func:`unless_abandoned`'s check, by the thread that codes them."""
_WRITING: dict[int, str] = {}
"""The temporary file each thread coding an item writes (:func:`writing_to`), until its item ends."""
_CODING = threading.local()


def unless_abandoned(write: Callable) -> Callable:
    """``write`` (a writer for :func:`nicodec.files.write_atomic`, in a work function that
    :func:`run` calls), which raises :class:`Abandoned` once it has written if the batch was
    given up meanwhile: the file being written is then removed, not renamed into place after
    the batch said it was left unfinished."""

    def writing(f) -> None:
        write(f)
        with _COMMIT:
            if ABANDONED:
                raise Abandoned(signal.SIGINT, 0)
            item = getattr(_CODING, "item", None)
            if item is not None:
                _RENAMING[threading.get_ident()] = item

    return writing


def writing_to(temporary: str) -> None:
    """``created`` for :func:`nicodec.files.write_atomic` beside :func:`unless_abandoned`: notes
    the temporary file an item is written to, so that a batch given up removes it, since the
    nicodec command then ends its process while the file may still be written (a large PNG
    takes seconds); raises :class:`Abandoned` if the batch was given up already."""
    with _COMMIT:
        if ABANDONED:
            raise Abandoned(signal.SIGINT, 0)
        if getattr(_CODING, "item", None) is not None:
            _WRITING[threading.get_ident()] = temporary


def _remove_unrenamed() -> None:
    """Remove the temporary files of the items being written and not past
    :func:`unless_abandoned`'s check (with ``_COMMIT`` held, as a batch is given up): they are
    never renamed into place, and their threads may be cut short before they remove them.
    Where an open file cannot be removed (Windows), its thread removes it as its writer raises."""
    for ident, temporary in list(_WRITING.items()):
        if ident not in _RENAMING:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            del _WRITING[ident]


@contextmanager
def _abandoning():
    """Inside the block, Ctrl-C, SIGTERM, SIGHUP, SIGXCPU and SIGBREAK raise :class:`Abandoned` (on the main
    thread, and only where they would raise), so that a stop while a batch waits for its files in
    flight (a file on a pipe that nothing writes, a slow refinement) ends the wait."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def again(signum, frame):
        raise Abandoned(signum, 0)

    saved = {}
    for signum in (signal.SIGINT, *TERMINATING):
        handler = signal.getsignal(signum)
        if _interrupting(handler):
            saved[signum] = handler
            signal.signal(signum, again)
    try:
        yield
    finally:
        _put_back(saved)


def _put_back(handlers: dict) -> None:
    """Set the signals' handlers back, with the signals blocked meanwhile: one arriving between two
    of them would raise there, leaving the others in place for good. The mask is then the one
    found (signals the host program had blocked stay blocked); one that came meanwhile, and was
    not blocked before, is raised now."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, handlers) if hasattr(signal, "pthread_sigmask") else None
    try:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    finally:
        if before is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextmanager
def signals_held(raise_after: bool = True):
    """Hold Ctrl-C, SIGTERM, SIGHUP, SIGXCPU and SIGBREAK back inside the block (on the main thread, where they
    are delivered, and only where they would raise), then raise the first one held: the
    block's work is not cut short and still ends, and the stop is not lost.

    With ``raise_after`` false nothing is raised: the block's value, a list, holds the numbers
    of the signals that came (for work that, once done, is to be reported as done)."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    saved = {}
    for signum in (signal.SIGINT, *TERMINATING):
        handler = signal.getsignal(signum)
        if _interrupting(handler):
            saved[signum] = handler
            signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        _put_back(saved)
        if held and raise_after:
            signal.raise_signal(held[0])  # its exception, now


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
    """

    item: Item
    status: str
    message: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    shared: bool = False


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


class _Resolved:
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


def _span(seconds: float) -> str:
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
                                     f"{_span(ahead)} ahead of this machine's clock (a clock skew?): an output made "
                                     "before then counts as older on every run, one --force replaces too (touch "
                                     "the input to date it now)")
    if item.target.parent != item.source.parent:  # -o DIR: the hints below are of outputs beside their inputs
        pass
    elif item.target.suffix.lower() != ".nic":  # decoding beside the photos: that image may be the original
        message += " (if it is an original rather than an earlier output, write elsewhere with -o)"
    else:  # encoding beside images decoded from the .nic files: coding them again loses more
        message += " (if the image was decoded from it, --force codes that copy again, losing more; use -o)"
    return Outcome(item, "kept", message)


def _collision_text(item: Item, others: list[Item]) -> str:
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


@dataclass
class Summary:
    """Counts over a batch's outcomes."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def totals(self) -> tuple[int, int, int]:
        done = [o for o in self.outcomes if o.status == "done"]
        return sum(o.bytes_in for o in done), sum(o.bytes_out for o in done), sum(o.pixels for o in done)


def run(
    items: list[Item],
    work: Callable[[Item], Outcome],
    *,
    force: bool,
    jobs: int = 1,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    differs: Callable[[Item], str | None] | None = None,
    on_stop: Callable[[BaseException], None] = lambda stop: None,
) -> Summary:
    """Code every item with ``work`` on ``jobs`` threads; errors become ``failed`` outcomes,
    and the summary's outcomes are in the order of ``items``.

    ``on_outcome`` is called from the calling thread as each item finishes (for progress), and
    ``on_stop`` once, with the interrupt, when it starts the wait for the items in flight;
    ``differs`` tells an existing newer output made with other settings (see :func:`triage`).
    KeyboardInterrupt (Ctrl-C: a person, who may press it again) stops the batch: items not
    started are dropped; those being coded (at most ``jobs``) finish, are written and reported
    through ``on_outcome``, and then the interrupt is raised again. A second stop during that
    wait raises :class:`Abandoned` at once instead, after reporting the items finished by then
    (on the main thread; elsewhere the wait is not cut short). A :class:`Terminated` (SIGTERM
    and the like: a supervisor, which kills the process after a grace period, Docker's 10 s,
    that a file being coded can outlast) is such a second stop from the first: no wait, and no
    ``on_stop``. A file interrupted while written is removed by
    :func:`nicodec.files.write_atomic`.
    """
    summary = Summary()
    start = time.perf_counter()
    ABANDONED.clear()

    finished: list[Outcome] = []  # every item coded, in the order they ended (list.append is atomic)
    started: list[Item] = []

    def guarded(item: Item) -> Outcome:
        started.append(item)
        _CODING.item = item
        try:
            try:
                outcome = work(item)
            except NicodecError as exc:
                outcome = Outcome(item, "failed", str(exc), shared=getattr(exc, "shared", False))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                outcome = Outcome(item, "failed", f"internal error: {type(exc).__name__}: {exc}")
            finished.append(outcome)
        finally:
            _CODING.item = None
            with _COMMIT:
                _RENAMING.pop(threading.get_ident(), None)
                _WRITING.pop(threading.get_ident(), None)
        return outcome

    pending = []
    resolved = _Resolved()
    itself = {item for item in items if not item.problem and resolved.real(item.source) == resolved.real(item.target)}
    # A file named that does not exist is no input an output could replace (it fails on its own).
    inputs = {resolved.fold(item.source): item for item in items if not item.problem or os.path.lexists(item.source)}
    # An output that is another input of the batch (an image named x.nic beside x.png): --force
    # would replace an input, which nothing may.
    other_input = {item: inputs[folded] for item in items
                   if not item.problem and item not in itself and (folded := resolved.fold(item.target)) in inputs}
    shared = collisions([item for item in items if item not in itself and item not in other_input and not item.problem],
                        resolved.fold)
    for item in items:
        if item.problem:
            early = Outcome(item, "failed", item.problem)
        elif item in itself:
            early = Outcome(item, "failed", f"the output {item.target} would be the input; write elsewhere with -o")
        elif item in other_input:
            early = Outcome(item, "failed", f"the output {item.target} would replace {other_input[item].source}, an "
                                            "input of this run; write elsewhere with -o")
        elif item in shared:
            early = Outcome(item, "failed", _collision_text(item, shared[item]))
        else:
            early = triage(item, force, differs)
        if early is None:
            pending.append(item)
        else:
            summary.outcomes.append(early)
            on_outcome(early)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    reported: set[int] = set()
    # Submitted a few at a time as others end, not all at once: a future and the pool's work
    # item for every file of a large batch held about 1.8 kB each until the batch ended.
    ahead = iter(pending)
    in_flight: dict = {}  # future -> item: submitted, and not reported yet
    ended = _Ended()
    try:
        _submit_more(pool, guarded, ahead, in_flight, ended, WINDOW_PER_JOB * max(1, jobs))
        for future in ended:
            outcome = future.result()
            with signals_held():  # reported once: a stop amid it reported it again after (2 files counted for 1)
                summary.outcomes.append(outcome)
                on_outcome(outcome)
                reported.add(id(outcome))
                del in_flight[future]
            _submit_more(pool, guarded, ahead, in_flight, ended, WINDOW_PER_JOB * max(1, jobs))
    except BaseException as stop:
        # Items not started are dropped. Threads cannot be stopped: the items being coded
        # finish and are written, so wait for them and report them too (the count of files
        # written is then the true one), and only then let the interrupt go on. A second stop
        # during the wait gives up on the items still being coded (a file on a pipe that nothing
        # writes, a slow refinement): Abandoned, at once. Their threads write nothing after
        # that (:func:`unless_abandoned`), and the nicodec command ends its process rather
        # than wait for them at exit.
        abandoned = stop if isinstance(stop, Terminated) else None
        if abandoned is None:
            try:
                with _abandoning():
                    on_stop(stop)
                    pool.shutdown(wait=False, cancel_futures=True)
                    for _ in _completed(list(in_flight)):  # the items being coded end (the others were cancelled)
                        pass
            except Abandoned as again:
                abandoned = again
            except KeyboardInterrupt:  # one more, as the handlers were put back: the wait had ended
                pass
        if abandoned is not None:
            with signals_held(raise_after=False):  # marked, waited for and counted, before another stop
                with _COMMIT:
                    ABANDONED.append(0)  # no file is renamed into place after this
                    pool.shutdown(wait=False, cancel_futures=True)  # and none started (as a worker ends its file)
                    begun = list(started)
                    past = {id(item) for item in _RENAMING.values()}  # this batch's items (an earlier one's threads may run)
                    _remove_unrenamed()
                    renaming = [future for future, item in in_flight.items() if id(item) in past]
                # Those past the check are renaming their files: counted as written, once they are
                wait_for(renaming, timeout=RENAMING_SECONDS)
                done = {id(outcome.item) for outcome in finished}
                ABANDONED[-1] = sum(id(item) not in done for item in begun)
        try:
            with signals_held():
                for outcome in list(finished):
                    if id(outcome) not in reported:
                        on_outcome(outcome)
        except KeyboardInterrupt:
            pass
        if abandoned is not None:
            raise Abandoned(abandoned.signum, ABANDONED[-1]) from stop
        raise stop
    finally:
        if not ABANDONED:
            pool.shutdown(wait=True)
    # In the order of the items, not the order their threads ended: the report's lines are the
    # same from run to run whatever --jobs.
    position: dict[Item, int] = {}
    for number, item in enumerate(items):
        position.setdefault(item, number)
    summary.outcomes.sort(key=lambda outcome: position.get(outcome.item, len(items)))
    summary.seconds = time.perf_counter() - start
    return summary


WINDOW_PER_JOB = 4
"""How many items a batch keeps submitted to its pool per thread: enough that a thread ending a
file finds the next one waiting, few enough that the books of a batch of millions stay small."""


def _submit_more(pool: ThreadPoolExecutor, fn: Callable, ahead: Iterator, in_flight: dict, ended: _Ended,
                 window: int) -> None:
    """``pool.submit(fn, item)`` for the next items of ``ahead`` until ``window`` are in flight
    (``in_flight``: future to item), each watched by ``ended``, with Ctrl-C (and SIGTERM, SIGHUP,
    SIGXCPU) held back until they are in: an interrupt while the pool starts a thread leaves that
    thread out of the pool's books, so shutting down would not wait for it, and it would go on
    writing files after the batch reported its count."""
    with signals_held():
        while len(in_flight) < window:
            item = next(ahead, None)
            if item is None:
                return
            future = pool.submit(fn, item)
            in_flight[future] = item
            ended.watch(future)


RENAMING_SECONDS = 2.0
"""The longest a batch given up waits for the files its workers are putting into place (the
temporary file's sync and rename, and the outcome's few details), to count them as written:
short beside a supervisor's grace period (Docker's 10 s); one slower is counted unfinished."""

POLL_SECONDS = 0.1
"""The longest the main thread blocks at a time while it waits for a batch's workers. The kernel
may hand a signal to any thread that does not block it (a worker, one of onnxruntime's), and
Python runs its handler only in the main thread, once that thread wakes: blocked without a
timeout, it would miss a Ctrl-C or SIGTERM until the files in flight end, or for ever."""


class _Ended:
    """Futures as they complete (those that end together in no set order), iterated until every
    future watched has ended, the main thread waking every :data:`POLL_SECONDS` meanwhile;
    futures watched during the iteration are waited for too, and one the pool's shutdown
    cancelled counts as ended. Each future says it ended through its done-callback, which wakes
    the main thread by a plain lock: ``concurrent.futures.wait`` took every pending future's
    lock in turn, each time the main thread woke, so a batch of n files cost n² (5,000 tiny
    files: 12.5 s, now 1.6 s), and a stop raised while it held some of those locks left a
    worker waiting for one for ever (a single Ctrl-C or SIGTERM hung a large batch). A stop
    raised while the main thread waits on the plain lock leaves nothing held."""

    def __init__(self) -> None:
        self._ended: deque = deque()
        self._wake = threading.Lock()
        self._wake.acquire()
        self._left = 0

    def watch(self, future) -> None:
        """Wait for ``future`` too (a future's lock is taken to add the callback: call it with
        stops held, :func:`signals_held`)."""
        self._left += 1
        future.add_done_callback(self._note)

    def _note(self, future) -> None:
        self._ended.append(future)
        try:
            self._wake.release()
        except RuntimeError:  # released already: the main thread has not looked since
            pass

    def __iter__(self):
        while self._left:
            self._wake.acquire(timeout=POLL_SECONDS)
            while self._ended:
                self._left -= 1
                yield self._ended.popleft()


def _completed(futures: list):
    """``futures`` as they complete (:class:`_Ended`)."""
    ended = _Ended()
    with signals_held():
        for future in futures:
            ended.watch(future)
    return iter(ended)
