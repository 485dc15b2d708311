"""How the ``nicodec`` command line speaks: its consoles on stdout and stderr, one line per
error or warning (never a traceback unless ``--debug``), how a stop is told, and the progress
bar of one file.

Every message may hold a file name, so the consoles show control characters escaped and
characters the stream cannot encode as backslash escapes (:class:`_Console`).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from . import stdio
from .errors import ModelMismatchError, NicodecError, OutOfMemoryError, PixelLimitError


# One message is one line: a newline in a file name is shown as \n, and a tab as \t (Rich would
# print it as spaces, a name that does not exist). A byte of a name that is not UTF-8, which
# Python reads as a surrogate escape (U+DC80 to U+DCFF), is shown as that byte, \xff: stdout
# had written the raw byte and stderr Python's \udcff. Not on Windows, whose names are UTF-16:
# a lone surrogate there is one the name holds, which the streams show as \udcff. The
# bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069) are
# shown as \u202e: printed, they reorder the rest of the line on a terminal, so that a name
# reads as another ("photo\u202egnp.exe" as "photoexe.png").
CONTROLS = ({c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
            | {ord("\n"): "\\n", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}  # these two: line breaks to Python
            | {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
            | ({c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)} if os.name != "nt" else {}))


def zero_size(name: str) -> bool:
    """Whether the environment variable ``name`` (COLUMNS, LINES) is 0, which Rich takes for a
    console 0 wide (or high) and prints nothing into, errors included; it is ignored, as other
    settings that are not sizes are."""
    value = os.environ.get(name, "")
    return value.isdigit() and int(value) == 0


def writes_to_terminal(console: Console) -> bool:
    """Whether a console's stream is a terminal, whatever FORCE_COLOR or TTY_COMPATIBLE say."""
    try:
        return console.file.isatty()
    except (AttributeError, ValueError, OSError):  # no stream, or a closed one
        return False


class _Nowhere(io.TextIOBase):
    """Where a console writes when its stream is closed (``2>&-``: ``sys.stderr`` is None), as
    newer Rich does by itself; Rich 10.11 wrote to None, an AttributeError."""

    def write(self, text: str) -> int:
        return len(text)


class _Forgiving:
    """Standard error as the ``err`` console writes it: a write that fails (a full disk, a
    terminal closed under a running batch, a reader gone) drops the text, and the work goes on
    to the end its exit code tells; there is nowhere left to say more. The stream's other
    attributes (``isatty``, ``fileno``, ``encoding``) are its own."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):  # ValueError: a stream closed meanwhile
            stdio.flush_or_drop(self.stream)  # else what stays in its buffer fails again at exit
            return len(text)

    def flush(self) -> None:
        stdio.flush_or_drop(self.stream)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class _Console(Console):
    """Rich's console, for text that may hold file names: control characters in them (an
    escape sequence, a carriage return, a newline) are shown escaped rather than sent to the terminal,
    characters the stream's encoding lacks (``PYTHONIOENCODING=ascii``, a name that is not
    UTF-8) as backslash escapes rather than a UnicodeEncodeError, and a reader gone (``| head
    -1``) is a BrokenPipeError for :func:`writing_report` rather than Rich's silent exit, as
    is a standard output that is closed (``>&-``), which Rich would write to nowhere."""

    def __init__(self, **kwargs) -> None:
        for name, size, default in (("COLUMNS", "width", 80), ("LINES", "height", 25)):
            if zero_size(name):
                kwargs.setdefault(size, default)
        self._told_terminal = kwargs.get("force_terminal")
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def file(self):
        stream = Console.file.fget(self)  # type: ignore[attr-defined]
        if stream is None:
            return _Nowhere()
        return _Forgiving(stream) if self.stderr else stream

    @file.setter
    def file(self, new_file) -> None:
        Console.file.fset(self, new_file)  # type: ignore[attr-defined]

    @property
    def on_terminal(self) -> bool:
        """Whether the stream is a terminal (or the console was made with ``force_terminal``),
        whatever FORCE_COLOR says (Rich's is_terminal follows it): progress is drawn for a
        person, not into a CI job's log. Nor on a terminal Rich does not redraw (``TERM=dumb``,
        an Emacs shell; ``TTY_COMPATIBLE=0`` or ``TTY_INTERACTIVE=0``), where its bar left a
        blank line before the report."""
        if self._told_terminal is not None:
            return bool(self._told_terminal)
        if "0" in (os.environ.get("TTY_COMPATIBLE"), os.environ.get("TTY_INTERACTIVE")):
            return False  # read here too: Rich reads them only from 14.0, and nicodec takes 13.8
        return writes_to_terminal(self) and self.is_interactive

    def print(self, *objects, **kwargs) -> None:
        if not self.stderr and self._file is None and sys.stdout is None:
            raise OSError(errno.EBADF, "standard output is closed")
        stream = self.file
        escaping(stream.stream if isinstance(stream, _Forgiving) else stream)
        depth = getattr(self, "_buffer_index", None)
        try:
            super().print(*(o.translate(CONTROLS) if isinstance(o, str) else o for o in objects), **kwargs)
        except BaseException:
            # A stop (Ctrl-C, SIGTERM) raised inside Rich's print, or a failed write, can leave
            # its buffer as it was mid-line. Raised as Rich entered the buffer (after counting
            # one level more, before its exit could count it back), every later line of this
            # thread was held back for good (the "interrupted" line after it never came); raised
            # as the flush returned (Rich 12 and later empty the buffer only after it), the line
            # written stayed there, and the next one wrote it again.
            if depth is not None:
                self._buffer_index = depth
                if depth == 0:
                    del self._buffer[:]
            raise

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe (the reader stopped)")


# soft_wrap: one message is one line, however narrow the terminal or pipe. emoji off: a name
# such as x:cat:.png is shown as it is, not with Rich's emoji for :cat:. force_jupyter off:
# nicodec.cli.main() run in a notebook's kernel writes its report to stdout and its messages to
# stderr, as anywhere else, rather than as HTML displays that neither stream holds (an error
# then looked like output, and contextlib.redirect_stderr caught nothing).
err = _Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, force_jupyter=False)
out = _Console(highlight=False, soft_wrap=True, emoji=False, force_jupyter=False)

SHOWN_WARNINGS: set[str] = set()
"""Warnings printed by this command line: a rate search reads its image more than once, and
says what it has to say about it once."""

SAME_WARNINGS_SHOWN = 3
"""How many files' warnings of one kind a batch lists, before it counts the rest."""

BATCH_INPUTS: set[str] = set()
"""The names of a running batch's inputs: a warning that begins with one (``a.png: its gamma
...``) is of the kind the rest of it says (:func:`batch_warnings`)."""

WARNING_KINDS: dict[str, int] = {}
"""How many files of the running batch warned of each kind, listed or not."""

_WARNINGS_LOCK = threading.Lock()  # a batch's files are read on --jobs threads


def click_error(exc: Exception, args: list[str], command, prog: str) -> int:
    """What a command line run by Click (Typer's copy of it, or Click itself) without its
    standalone mode makes of an exception Click raises rather than shows: a usage error as one
    ``error:`` line and its exit code (2), an end of input at a prompt as Click's "Aborted!"
    (1), nothing after a group's name as its help (printed by Typer as it raised, when it lays
    help out with Rich; else by Click's own ``show``); anything else is raised again.

    Args:
        exc: the exception.
        args: the command line, whose subcommand a usage error without Click's context names
            for its help.
        command: the Click command run (a group's subcommands are the names looked for in ``args``).
        prog: the program's name (``nicodec``, ``nicodec-train``).

    Returns:
        The exit code.
    """
    name = type(exc).__name__
    if name == "NoArgsIsHelpError":  # a group with nothing after it: the help
        if str(exc.format_message()).strip() and callable(getattr(exc, "show", None)):
            exc.show()
        return getattr(exc, "exit_code", 2)
    if name == "Abort":
        err.print("Aborted!", markup=False)
        return 1
    code, message = getattr(exc, "exit_code", None), getattr(exc, "format_message", None)
    if not isinstance(code, int) or not callable(message):
        raise exc
    # Typer 0.29 checks an Enum option's value through pydantic, whose message begins "Value error, ".
    text = " ".join(str(message()).split()).replace(": Value error, ", ": ")
    if code == 2:  # a usage error (one missing an option's value has no context: the subcommand's from args)
        context = getattr(exc, "ctx", None)
        subcommand = next((arg for arg in args if not arg.startswith("-")), None)
        known = getattr(command, "commands", {}) if context is None else {}
        path = context.command_path if context is not None else prog + (f" {subcommand}" if subcommand in known else "")
        help = f"{path} --help"
        text = f"{text} See {help}." if text.endswith("?") else f"{text.rstrip('.')}; see {help}"
    err.print(f"error: {text}", markup=False)
    return code


def escaping(stream) -> str | None:
    """Characters the stream's encoding lacks written as backslash escapes from now on (``é``
    as ``\\xe9`` under ``PYTHONIOENCODING=ascii``) rather than raising UnicodeEncodeError;
    Python's own choice in the C locale without UTF-8 mode, surrogateescape, raised it too.

    Returns:
        The stream's error handler before, to put back; None where it was left as it was (not
        a text file, escaping already, or one that cannot be reconfigured: its buffered text
        fails to flush, on a full disk, or it is closed).
    """
    if not isinstance(stream, io.TextIOWrapper) or stream.errors not in ("strict", "surrogateescape"):
        return None
    before = stream.errors
    try:
        stream.reconfigure(errors="backslashreplace")
    except (OSError, ValueError):
        return None
    return before


@contextmanager
def reporting(debug: bool):
    """Turn every failure inside the block into one line on stderr and an exit code."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            _warnings_never_fail()
            # Pillow's warning of an image above its own pixel limit: --max-pixels judges it here
            # (the library leaves it to its host program's filters).
            warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
            yield
    except (typer.Exit, SystemExit, typer.BadParameter):
        raise
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt included, on purpose
        _fail(exc, debug)


def _warnings_never_fail() -> None:
    """The host's warning filters, in their order, with "error" read as "default": a warning is
    a note for the person at the command line, never a failure of the command, whatever
    ``PYTHONWARNINGS`` or ``-W`` a Python developer's environment sets; "ignore" still hides it.
    With Python 3.14's context-aware warnings (the free-threaded build's default) the filters in
    force are the context's, which ``warnings.filters`` (the global list) is not."""
    filters = list(getattr(warnings, "_get_filters", lambda: warnings.filters)())
    warnings.resetwarnings()
    for action, message, category, module, lineno in filters:
        warnings.filterwarnings("default" if action == "error" else action, _pattern(message), category,
                                _pattern(module), lineno, append=True)


def _pattern(match) -> str:
    """A warning filter's message or module as ``filterwarnings`` takes it: a compiled pattern's
    text, or a plain string (Python's own default filters name ``__main__`` so) matched whole."""
    if match is None:
        return ""
    return match.pattern if hasattr(match, "pattern") else re.escape(match) + r"\Z"


@contextmanager
def writing_report():
    """Report lines that cannot be written (stdout on a full disk, a reader gone) are one error
    line on stderr and exit code 1, not a traceback."""
    try:
        yield
    except OSError as exc:
        stdio.flush_or_drop(sys.stdout)
        err.print(f"error: cannot write the report: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None


JSON_PIECE = 4096
"""The most characters of JSON :func:`print_json` writes at once (POSIX's PIPE_BUF): a longer
write, with an unbuffered standard output (PYTHONUNBUFFERED, whose text layer hands each write
to the file itself), could be cut short by a reader that stopped, without a word."""


def print_json(value) -> None:
    """``value`` as indented JSON on stdout (``--json``), in ASCII, every other character
    escaped: valid JSON in any locale, a name that is not UTF-8 included (its bytes as Python's
    surrogate escapes, \\udcff for 0xff). Whole lines, up to :data:`JSON_PIECE` characters a
    write, to the stream itself: through Rich, line by line, a million files' list took some
    nine minutes. Infinity and NaN, which are not JSON, are refused (a ValueError): the caller
    gives null. Called within :func:`writing_report`, to which a closed standard output
    (``>&-``) is an error, as it is to the console's print."""
    if out._file is None and sys.stdout is None:
        raise OSError(errno.EBADF, "standard output is closed")
    stream = out.file
    piece: list[str] = []
    size = 0
    try:
        for line in json.dumps(value, indent=2, allow_nan=False).split("\n"):
            if piece and size + len(line) + 1 > JSON_PIECE:
                stream.write("".join(piece))
                piece, size = [], 0
            piece.append(line + "\n")
            size += len(line) + 1
        stream.write("".join(piece))
        stream.flush()
    except BrokenPipeError:
        out.on_broken_pipe()  # said as the console says it


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message)
    with _WARNINGS_LOCK:
        if text in SHOWN_WARNINGS:
            return
        SHOWN_WARNINGS.add(text)
        kind = _kind(text)
        if kind is not None:
            WARNING_KINDS[kind] = WARNING_KINDS.get(kind, 0) + 1
            if WARNING_KINDS[kind] > SAME_WARNINGS_SHOWN:
                return
    err.print(f"warning: {text}", markup=False)


def _kind(text: str) -> str | None:
    """What a warning says of a batch's input it begins by naming, or None."""
    at = text.find(": ") if BATCH_INPUTS else -1
    while at > 0:
        if text[:at] in BATCH_INPUTS:
            return text[at + 2:]
        at = text.find(": ", at + 1)
    return None


@contextmanager
def batch_warnings(names: Iterable[str]):
    """While a batch codes the inputs of these names, the warnings that reading them raises (a
    gamma, damaged EXIF: one a file, as they are read) are listed for the first few files of
    each kind; :func:`more_warnings` then counts the rest."""
    with _WARNINGS_LOCK:
        BATCH_INPUTS.update(names)
        WARNING_KINDS.clear()
    try:
        yield
    finally:
        with _WARNINGS_LOCK:
            BATCH_INPUTS.clear()


def more_warnings() -> None:
    """The count of each kind of warning a batch listed for its first few files only."""
    with _WARNINGS_LOCK:
        counts = [(kind, n - SAME_WARNINGS_SHOWN) for kind, n in WARNING_KINDS.items() if n > SAME_WARNINGS_SHOWN]
        WARNING_KINDS.clear()
    for kind, more in counts:
        err.print(f"warning: {more_files(more)} with the same warning: {kind}", markup=False)


def more_files(n: int, what: str = "file") -> str:
    """``and 997 more files``, where a list named the first few."""
    return f"and {n:,} more {what}{'' if n == 1 else 's'}"


@contextmanager
def naming(path):
    """Errors about one input (a damaged file, an image nicodec cannot code) name it, as a
    batch's messages do."""
    try:
        yield
    except NicodecError as exc:
        exc.args = (stdio.about(path, str(exc)),)
        raise


HINTS = (
    (PixelLimitError, "--max-pixels", "--max-pixels sets the limit"),
    (ModelMismatchError, "--model", "--model DIR loads another model folder"),
    (OutOfMemoryError, "--tile", "--tile 256 sets the tile size"),
)
"""What an error of these classes adds on the command line, unless its message names the option."""


def hinted(exc: NicodecError, options: tuple[str, ...] = tuple(option for _, option, _ in HINTS)) -> str:
    """The message of ``exc`` with the hint (:data:`HINTS`) of the option that helps, where the
    command has that option (``options``) and the message does not name it."""
    message = str(exc)
    if isinstance(exc, ModelMismatchError) and exc.shipped_decodes and "--model" in options:
        return message + " (leave out --model)"
    if isinstance(exc, OutOfMemoryError) and not exc.tiles_help:
        return message
    for kind, option, hint in HINTS:
        if isinstance(exc, kind) and option in options and option not in message:
            message += f" ({hint})"
    return message


def _stopped(exc: KeyboardInterrupt) -> str:
    """How a command was stopped: Ctrl-C, or the signal of a ``Terminated``."""
    signum = getattr(exc, "signum", None)
    return "interrupted" if signum in (None, signal.SIGINT) else f"stopped by {signal.Signals(signum).name}"


def _stop_code(exc: KeyboardInterrupt) -> int:
    """The shell's convention: 128 plus the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


STOP_SHOWN = [False]
"""Whether this command line's stop has been shown (:func:`stop`); :func:`nicodec.cli.main` shows one that
Typer caught first."""


def stop(exc: KeyboardInterrupt, detail: str = "") -> typer.Exit:
    """Show how the command was stopped, ``detail`` after it, and give the exit to raise."""
    err.print(_stopped(exc) + detail, markup=False)
    STOP_SHOWN[0] = True
    return typer.Exit(_stop_code(exc))


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        for chunk in traceback.format_exception(exc):
            # A frame's lines are lines; the exception's message (which may hold a file name) is one.
            chunk = chunk.strip("\n")
            for line in chunk.split("\n") if chunk.startswith(("  File ", "Traceback ")) else [chunk]:
                err.print(line, markup=False)
    if isinstance(exc, KeyboardInterrupt):
        raise stop(exc, "; nothing was written")
    if isinstance(exc, NicodecError):
        err.print(f"error: {hinted(exc)}", markup=False)
    elif isinstance(exc, MemoryError):  # outside the codec's own naming of it (Python's, while a file is read)
        detail = f" ({exc})" if str(exc).strip() else ""
        err.print(f"error: out of memory{detail}; free some memory, or raise this process's limit (ulimit -v)",
                  markup=False)
    else:
        err.print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", markup=False)
    raise typer.Exit(1)


@contextmanager
def bar(doing: str, name: str, searching: bool = False):
    """A progress bar on stderr while one file is coded (a large image takes a minute, a rate
    search several encodes), with the time left; nothing when stderr is not a terminal.
    Yields the function to give the work's progress, ``(done, total, encode)`` as
    ``encode_to_target`` gives it, or None off a terminal; ``step.writing(name)`` says the output
    is being written (a large PNG takes seconds, after the bar has reached its end)."""
    if not err.on_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Column

    name = Path(name).name or name  # the file's name: a long path would push the rest out of the line
    # markup off: a path is not markup. The description gives way (an ellipsis) to the bar, the
    # percentage and the time left, which is that of the encode under way in a search.
    # The other columns: " encode 12" (searching), " " and a bar of 20, " 100%", " 0:00:00".
    width = max(12, err.width - (44 if searching else 34))
    # A stream that is not UTF-8 (PYTHONIOENCODING=ascii, a Latin-1 locale) writes what it lacks
    # as backslash escapes, 6 columns where Rich counted 1 or 2 (its ellipsis, a CJK name): the
    # line overflowed the terminal and each refresh left a row. The description is escaped for
    # the stream first, and cut with "..." there.
    encoding = err.encoding
    plain = not encoding.startswith("utf")
    room = Column(no_wrap=True, overflow="crop" if plain else "ellipsis", max_width=width)

    def described(text: str) -> str:
        text = text.translate(CONTROLS)
        if not plain:
            return text
        text = text.encode(encoding, "backslashreplace").decode(encoding)
        return text if len(text) <= width else text[:width - 3] + "..."

    columns = [TextColumn("{task.description}", markup=False, table_column=room)]
    if searching:
        columns.append(TextColumn("encode {task.fields[encode]}"))
    # Columns that Rich 10.11 had too (the oldest nicodec took before 0.7.12); the first progress comes at once.
    columns += [BarColumn(bar_width=20), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(described(f"{doing} {name}"), total=1, encode=1)
        shown = [0]

        def step(done: int, total: int, encode: int = 1) -> None:
            if encode != shown[0]:  # a new encode of the search: a bar of its own, shown at once
                shown[0] = encode
                bar.reset(task, total=total, completed=done, encode=encode)
                bar.refresh()
            else:
                bar.update(task, completed=done, total=total)

        def writing(target: str) -> None:
            target = Path(target).name or target
            bar.update(task, description=described(f"writing {target}"), completed=0, total=1)
            bar.refresh()

        step.writing = writing  # type: ignore[attr-defined]
        yield step


def counted_files(n: int) -> str:
    return f"{n:,} file" + ("" if n == 1 else "s")


def size_text(n: int) -> str:
    """``n`` bytes in kB to one decimal, MB or GB to two: the largest unit that does not read
    1000 or more once rounded."""
    if f"{n / 1e3:.1f}" != "1000.0" and n < 1e6:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.2f} MB" if f"{n / 1e6:.2f}" != "1000.00" and n < 1e9 else f"{n / 1e9:.2f} GB"


def note(text: str) -> None:
    """A note on stderr that does not stop the work when stderr cannot be written."""
    try:
        err.print(text, markup=False)
    except (OSError, ValueError):
        pass
