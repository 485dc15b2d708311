"""Standard input and output as the command line's ``-``: reading all of stdin, writing a
whole file to stdout, and refusing the cases that would lose data (a terminal, the input file
itself, a reader that stops early)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Optional

from .errors import NicodecError

STDIO = "-"
"""The name that stands for standard input (as INPUT) or standard output (as -o)."""


def is_stdio(path) -> bool:
    return str(path) == STDIO


def display_name(path, stream: str = "stdin") -> str:
    """A path for messages; ``-`` is named for the stream it stands for."""
    return f"<{stream}>" if is_stdio(path) else str(path)


def json_name(path) -> str:
    """A file's name for ``--json``: its bytes read as UTF-8, whatever the locale, those that
    are not UTF-8 as Python's surrogate escapes. Python reads a command line in the locale's
    encoding: in a Latin-1 or C locale ``café`` was ``caf\\u00c3\\u00a9`` or
    ``caf\\udcc3\\udca9``."""
    name = display_name(path)
    return os.fsencode(name).decode("utf-8", "surrogateescape") if os.name == "posix" else name


def about(path, message: str) -> str:
    """``path: message``, or the message alone when it names the path already (for ``-``, when
    it speaks of standard input)."""
    shown = display_name(path)
    named = names(message, shown) or (is_stdio(path) and ("standard input" in message or message.startswith("'-'")))
    return message if named else f"{shown}: {message}"


def names(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as a whole, not as a part of another name (a.png in
    sub/a.png, a.png.bak)."""
    if name not in message:  # most messages: no pattern to make (each name's is new, in a batch of 100,000)
        return False
    return re.search(rf"(?<![^\s'\"(]){re.escape(name)}(?=$|[\s'\",:;)]|\.(?:\s|$))", message) is not None


def read_input(path: Path, what: str = ".nic file") -> bytes:
    """The bytes of an input named on the command line (``-``: standard input); a stream (a pipe,
    a device) that does not start like ``what`` (``"image"`` or ``".nic file"``) is refused
    from its first bytes."""
    from .files import read_file
    from .format import MAX_FILE_BYTES

    check = start_check(what, "standard input" if is_stdio(path) else str(path))
    if is_stdio(path):
        return read_stdin(f"an {what}" if what[0] in "aeiou" else f"a {what}", check)
    return read_file(path, what, check, limit=MAX_FILE_BYTES if what == ".nic file" else None)


def start_check(what: str, name: str):
    """The ``check_start`` of :func:`nicodec.files.read_stream` for a stream of ``what`` called ``name``."""
    if what == "image":
        from .images import check_image_start

        return lambda head: check_image_start(head, f"{name} is not an image Pillow can read", name)
    from . import format as nicformat

    return nicformat.read_header  # the header lies within the first bytes; a FormatError names the fault


def read_stdin(what: str, check_start=None) -> bytes:
    """All of standard input (``-`` as INPUT), up to the cap on streams."""
    import sys

    from .files import read_stream

    if sys.stdin is None:  # <&-
        raise NicodecError(f"'-' reads {what} from standard input, which is closed")
    if sys.stdin.isatty():
        raise NicodecError(f"'-' reads {what} from standard input, and nothing is piped in")
    data = read_stream(sys.stdin.buffer, "standard input", check_start)
    if not data:
        raise NicodecError("standard input is empty")
    return data


def stdout_fd() -> Optional[int]:
    import sys

    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or a stream in memory (tests)
        return None


def check_stdout(input: Optional[Path] = None) -> None:
    """Refuse ``-o -`` before any work when standard output is closed, a terminal (binary data
    would garble it) or the input file itself (``>> photo.nic`` would damage it)."""
    import sys

    if sys.stdout is None:
        raise NicodecError("standard output is closed; give -o FILE")
    if sys.stdout.isatty():
        raise NicodecError("standard output is a terminal; redirect it (> file or | program) or give -o FILE")
    fd = stdout_fd()
    if fd is None or input is None:
        return
    if is_stdio(input):  # < photo.png 1<>photo.png, or >> x.nic reading x.nic: a file read and written at once
        try:
            read, written = os.fstat(0), os.fstat(fd)
        except (OSError, ValueError):
            return
        if stat.S_ISREG(read.st_mode) and os.path.samestat(read, written):  # (a socket may be both, rightly)
            raise NicodecError("standard output is the file standard input reads; choose another output")
        return
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(input))
    except (OSError, ValueError):
        same = False
    if same:
        raise NicodecError(f"standard output is the input file {input}; choose another output")


def stdin_is(path: Path) -> bool:
    """Whether standard input reads the file ``path`` (``< photo.png``): as an output, it is the
    input, whatever its name."""
    try:
        return os.path.samestat(os.fstat(0), os.stat(path))
    except (OSError, ValueError):  # no stdin (closed), no such file, a name too long or with a NUL
        return False


def drop(stream) -> None:
    """After a write to ``stream`` failed (a reader gone, a full disk, a terminal closed), point
    its file descriptor at the null device. What could not be written stays in Python's buffer,
    and its flush at exit would fail again: "Exception ignored while flushing sys.stdout" and
    exit code 120, whatever the work did. (Hidden where PYTHONUNBUFFERED is set, as on many CI
    machines: there is no buffer then.) A stream with no descriptor (in memory) is left alone."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def flush_or_drop(stream) -> None:
    """Flush ``stream``, or :func:`drop` it where what it holds cannot be written (after a failed
    write: the failure was perhaps this stream's); a stream that is merely slow (a non-blocking
    pipe that is full) keeps its text."""
    try:
        stream.flush()
    except BlockingIOError:
        pass
    except (AttributeError, OSError, ValueError):
        drop(stream)


def drop_stdout() -> None:
    """:func:`drop` for standard output (nobody reads the rest, or there is no room for it)."""
    import sys

    drop(sys.stdout)


def write_stdout(data: bytes) -> None:
    """The whole output on standard output, once it is complete (``-o -``); a reader that
    stops early is an error, not a file cut short in silence."""
    import sys

    fd = stdout_fd()
    try:
        if fd is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        sys.stdout.flush()
        view = memoryview(data)
        while view:  # os.write may write part, and says how much
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        drop_stdout()
        raise NicodecError("the program reading standard output stopped before the end") from None
    except OSError as exc:
        drop_stdout()
        raise NicodecError(f"cannot write to standard output: {exc.strerror or exc}") from None
