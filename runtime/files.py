"""Writing outputs safely: atomically, and never over an existing file unless asked."""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import LimitError, NicodecError, OutputExistsError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

FULL = frozenset(number for number in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if number is not None)
"""The errors of a file system (or a quota) with no room left."""


class DiskFullError(NicodecError):
    """An output could not be written for want of room on its file system, or in a quota."""


def _write_error(exc: OSError, text: str) -> NicodecError:
    return (DiskFullError if exc.errno in FULL else NicodecError)(f"{text}: {exc.strerror or exc}")


STALE_AFTER = 60.0
"""Seconds since its last write after which an unlocked temporary file is a killed run's."""


def write_atomic(path: str | os.PathLike, write: Callable[[object], None], *, force: bool = False,
                 created: Callable[[str], None] | None = None) -> None:
    """Create ``path`` through a temporary file in the same folder, renamed into place.

    Args:
        path: the output file.
        write: called with the open binary temporary file; writes the content.
        force: replace an existing file.
        created: called with the temporary file's path once it exists, before ``write`` (a
            batch notes it, to remove it if the batch is given up while it is written); what
            it raises ends the write as ``write``'s would.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is false.
        NicodecError: the folder does not exist or cannot be written.

    On any failure, including KeyboardInterrupt, the temporary file is removed
    and ``path`` is left as it was. A kill (SIGKILL, the kernel's out-of-memory killer) leaves
    it behind: the temporary file, ``.NAME.TOKEN.part``, is locked (``flock``) until it is
    renamed, so that a later run can tell it from one being written
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    check_target(path, force)
    folder = path.parent
    kept = _mode_to_keep(path) if force else None
    fd, tmp = _create_temporary(folder, path.name, private=kept is not None)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                if created is not None:
                    created(tmp)
                write(f)
                f.flush()
                os.fsync(f.fileno())
                if kept is not None:
                    _keep(f.fileno(), *kept)
                if fcntl is not None:  # renamed while open, so still locked (Windows cannot rename an open file)
                    _commit(tmp, path, force)
            if fcntl is None:
                _commit(tmp, path, force)
        except OSError as exc:
            raise _write_error(exc, f"cannot write {path}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _mode_to_keep(path: Path) -> tuple[int, int, int] | None:
    """The permissions, owner and group of the file ``path`` that a replacement keeps, as ``cp``
    onto an existing file keeps them: the umask's were the replacement's, so a private (0600)
    file became readable by everyone. None where ``path`` is no regular file (a link is replaced
    by a new file), or on Windows, whose permissions are a read-only flag. The replacement is
    private (0600) while it is written, so no one opens it in the meantime, and has these just
    before its rename (:func:`_keep`)."""
    if os.name == "nt":
        return None
    try:
        old = os.lstat(path)
    except OSError:  # gone meanwhile: a new file
        return None
    return (stat.S_IMODE(old.st_mode) & 0o777, old.st_uid, old.st_gid) if stat.S_ISREG(old.st_mode) else None


def _keep(fd: int, mode: int, uid: int, gid: int) -> None:
    """Give the file ``fd`` the owner and group (where this process may: root, or a group it is
    in) and then the permissions of the file it replaces. What the file system refuses (FAT has
    no permissions) stays as it is: private."""
    for owner in ((uid, gid), (-1, gid)):
        try:
            os.fchown(fd, *owner)
            break
        except OSError:
            continue
    try:
        os.fchmod(fd, mode)
    except OSError:
        pass


def not_regular(path: str | os.PathLike) -> str:
    """Why an output that is a device or a pipe is never written (``--force`` would replace
    ``/dev/null`` by a PNG)."""
    return f"{path} is not a regular file; nicodec writes regular files only"


def not_a_folder(path: str | os.PathLike) -> str | None:
    """Why ``path``, a name that is there, is no folder to write in (a file, a link to nothing or
    a looping one, one that cannot be looked at), or None if it is one."""
    import errno

    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return None
    except OSError as exc:
        if os.path.islink(path) and exc.errno in (errno.ENOENT, errno.ELOOP):
            try:  # a relative target is relative to the link's folder: shown from here
                target = os.path.join(os.path.dirname(path), os.readlink(path))
            except OSError:
                target = "?"
            if exc.errno == errno.ELOOP:
                return f"{path} is a link in a loop of links (to {target})"
            return f"{path} is a link to {target}, which does not exist"
        return f"{path}: {exc.strerror or exc}"
    except ValueError as exc:  # a NUL in the name
        return f"{path}: {exc}"
    return f"{path} is a file, not a folder"


NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})
"""The errors of a name looked up that Python's ``Path.exists()`` took for "not there" up to 3.13
(with Windows' 21, 123 and 1921 below): every other error it raised."""


def refused_name(path: str | os.PathLike) -> None:
    """Raise the OSError that looking ``path`` up meets, unless it says no more than that the
    name is not there: a name too long for the file system, a folder that may not be searched.
    ``Path.exists()`` and ``is_dir()`` raised those up to Python 3.13 and answer False from 3.14
    on, which moved the refusal of ``-o`` with a name too long from before the work to the write
    after it, and named a folder too long as one that does not exist."""
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno not in NOT_THERE and getattr(exc, "winerror", None) not in (21, 123, 1921):
            raise
    except ValueError:  # a NUL in the name: the checks after this say so
        pass


def check_target(path: str | os.PathLike, force: bool) -> None:
    """Raise unless ``path`` may be written: not a folder, not a device or pipe (``--force``
    would replace ``/dev/null`` by a PNG), not an existing file without ``force``, and in a
    folder that exists.

    Raises:
        OutputExistsError: the file exists and ``force`` is false.
        NicodecError: any of the others.
    """
    path = Path(path)
    try:
        refused_name(path)
        if path.is_dir():
            raise NicodecError(f"{path} is a directory")
        if path.exists() and not path.is_file():
            raise NicodecError(not_regular(path))
        if path.exists() and not force:
            raise OutputExistsError(f"{path} exists; use --force to overwrite it")
        if os.path.lexists(path) and not force:  # found only as the finished file was moved in, after the work
            raise OutputExistsError(f"{path} is a link to a file that does not exist; use --force to replace the link")
        check_output_folder(path)
    except OSError as exc:  # a name too long for the file system, a link loop
        raise NicodecError(f"cannot use the output {path}: {exc.strerror or exc}") from None


def check_output_folder(path: str | os.PathLike) -> None:
    """Raise :class:`NicodecError` unless the folder ``path`` would be written in exists and
    may be written in (called before the work that makes the output, so a typo or a read-only
    folder costs no encoding)."""
    path = Path(path)
    folder = path.parent
    if folder.is_dir():
        check_writable(folder)
        return
    problem = not_a_folder(nearest_existing(folder, follow=False))
    if problem:  # a file, or a link to nothing (-o dl/x.nic)
        raise NicodecError(f"cannot write {path}: {problem}")
    raise NicodecError(f"output folder {folder} does not exist")


ACCESS_KNOWS_FOLDERS = os.name != "nt"
"""Whether ``os.access`` tells a folder files cannot be made in: on Windows it says yes to every
folder (CPython reads only the read-only attribute, which Windows ignores on folders), so a
read-only share or ``C:\\Program Files`` was found only once the work was done. There a file is
made and removed instead."""


def check_writable(folder: Path) -> None:
    """Raise :class:`NicodecError` unless files may be made in the existing ``folder``."""
    if not ACCESS_KNOWS_FOLDERS:
        fd, probe = _create_temporary(folder, "nicodec-check")  # or "cannot write in FOLDER: the reason"
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except (AttributeError, OSError):  # no statvfs (Windows)
            read_only = False
        why = "it is on a read-only file system" if read_only else "it is not writable (permission denied)"
        raise NicodecError(f"cannot write in the folder {folder}: {why}")


def nearest_existing(path: str | os.PathLike, follow: bool = True) -> Path:
    """``path`` if it exists, else the closest of its ancestors that does (for a relative
    path, at worst the current folder); with ``follow`` false, a link to nothing counts as
    there (to name it as what is in the way).

    Raises:
        OSError, ValueError: a name the system refuses (too long, a NUL byte), where ``Path.exists()``
            raises it (up to Python 3.13; :func:`refused_name` asks on every Python).
    """
    path = Path(path)
    return next((p for p in [path, *path.parents] if (p.exists() if follow else os.path.lexists(p))), Path("."))


MAX_PATH = 32_767 if os.name == "nt" else 4_096
"""The longest path the system takes, in characters (Windows' long paths) or bytes (Linux's
PATH_MAX; macOS takes 1,024)."""


def data_as_path(path: str | os.PathLike, what: str) -> str | None:
    """Why ``path``, a str, cannot be a path (longer than any the system takes, or holding a NUL
    character): most likely the file's data, read as text by mistake, given where its path or
    bytes go. The message shows its start, not the whole (a photo's worth of characters in a
    log). None for a str that may be a path, and for anything else."""
    if not isinstance(path, str):
        return None
    if os.name == "nt":
        size = len(path)
    else:
        try:
            size = len(os.fsencode(path))  # a name's undecodable bytes (\udcXX) count one each
        except UnicodeEncodeError:  # a lone surrogate no file system name holds: about its length
            size = len(path.encode("utf-8", "surrogatepass"))
    if size <= MAX_PATH and "\0" not in path:
        return None
    return (f"a str is taken as the path of the {what}, and this one ({len(path):,} characters, starting "
            f"{path[:24]!r}) cannot be one: give the {what}'s bytes (bytes, not str) or its path")


MAX_STREAM_BYTES = 1 << 30
"""The most bytes read from an input that is not a regular file (a pipe, a device):
its size is unknown beforehand, and /dev/zero never ends."""


def read_file(path: str | os.PathLike, what: str = "file",
              check_start: Callable[[bytes], None] | None = None, limit: int | None = None) -> bytes:
    """A whole input file, with errors that name the problem.

    A pipe or another file that is not a regular one (``/dev/stdin``) is read to its end,
    up to :data:`MAX_STREAM_BYTES`. ``check_start``, if given, sees the first
    :data:`START_BYTES` of any input that long and raises to stop reading what is not the
    kind of file expected (a large file of another kind is then refused without being read).
    A regular file larger than ``limit`` bytes, if given, is refused before it is read.

    Raises:
        LimitError: a regular file larger than ``limit``.
        NicodecError: a missing file, a directory, a read error, or an endless stream.
    """
    if not os.fspath(path):  # Path("") is the current folder
        raise NicodecError(f"the path of the {what} is empty")
    problem = data_as_path(path, what)
    if problem:
        raise NicodecError(problem)
    path = Path(path)
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            with open(path, "rb") as f:
                return read_stream(f, f"{path} is not a regular file and", check_start)
        if check_start is None and limit is None:
            return path.read_bytes()
        with open(path, "rb") as f:
            size = bytes_left(f)
            if limit is not None and size is not None and size > limit:
                raise LimitError(f"{path} holds {size:,} bytes, more than the {limit:,} nicodec reads")
            if check_start is None:
                return f.read()
            head = f.read(START_BYTES)
            if len(head) == START_BYTES:
                check_start(head)
            f.seek(0)
            return f.read()
    except FileNotFoundError:
        raise NicodecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NicodecError(f"{path} is a directory, not a {what}") from None
    except OSError as exc:
        raise NicodecError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the name
        raise NicodecError(f"cannot use the path {str(path)!r}: {exc}") from None


def _position(obj) -> int | None:
    """A seekable file object's position, or None. An object with ``tell`` and no ``seekable``
    (Python 3.10's SpooledTemporaryFile, a web framework's upload) is asked its position."""
    try:
        seekable = getattr(obj, "seekable", None)
        return obj.tell() if seekable is None or seekable() else None
    except (AttributeError, OSError, TypeError, ValueError):
        return None


def read_binary_file(obj, what: str, error: type[NicodecError] = NicodecError,
                     check_start: Callable[[bytes], None] | None = None) -> bytes:
    """The rest of a file object's bytes (a file opened with ``"rb"``, a BytesIO, a request's
    stream), with errors that say what is wrong: ``what`` names the content (``".nic file"``),
    ``error`` is raised. It is read in pieces, up to :data:`MAX_STREAM_BYTES`, as a pipe is,
    and ``check_start`` (as :func:`read_stream`'s) refuses one of another kind before the
    rest is read: an endless stream filled the memory. An ``OSError`` of the stream's own (a
    connection reset, a timeout) is the raised error's ``__cause__``.

    Raises:
        LimitError: more than :data:`MAX_STREAM_BYTES`, as a ``.nic`` file too large given by its
            path is (a service tells "too large" by it).
        error: opened as text, closed, not readable, or not giving bytes.
    """
    import io

    if isinstance(obj, io.TextIOBase):
        raise error(f"the {what} was opened as text: open it in binary mode ('rb')")
    source = type(obj).__name__
    left = bytes_left(obj)
    if left is not None and left > MAX_STREAM_BYTES:
        raise LimitError(f"the {what} from {source} holds more than {MAX_STREAM_BYTES:,} bytes ({left:,})")
    pieces, size, sized = [], 0, True
    while True:
        try:
            try:
                piece = obj.read(1 << 20)
            except TypeError:  # a read() that takes no size: the whole rest at once
                if pieces:
                    raise
                piece, sized = obj.read(), False
        except io.UnsupportedOperation:  # opened with "wb" or "ab"
            raise error(f"the {what}'s file object is not open for reading: open it with 'rb'") from None
        except ValueError as exc:  # closed
            raise error(f"cannot read the {what} from {source}: {exc}") from None
        except OSError as exc:  # the stream's own failure, kept for a caller that tells it from bad data
            raise error(f"cannot read the {what} from {source}: {exc}") from exc
        if piece is None:  # a non-blocking stream with nothing to give yet
            raise error(f"the {what}'s file object gave no bytes (None): it is non-blocking and had none ready; "
                        "give a blocking stream or the bytes")
        if isinstance(piece, str):
            raise error("the file object gave str, not bytes: open the file in binary mode ('rb')")
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise error(f"the file object gave {type(piece).__name__}, not bytes")
        if not piece:
            if not pieces and (position := _position(obj)):
                raise error(f"the {what}'s file object is at its end (position {position:,}) and gave no "
                            "bytes: seek(0) first (a file object just written is left at its end)")
            return b"".join(pieces)
        piece = bytes(piece)
        if check_start is not None and size < START_BYTES <= size + len(piece):
            check_start((b"".join(pieces) + piece)[:START_BYTES])
        size += len(piece)
        if size > MAX_STREAM_BYTES:
            raise LimitError(f"the {what} from {source} holds more than {MAX_STREAM_BYTES:,} bytes")
        if not sized:
            return piece
        pieces.append(piece)


def bytes_left(stream) -> int | None:
    """The bytes left to read in ``stream`` where its size is known: a regular file opened by
    Python (standard input redirected from one, ``open(path, "rb")``), judged by ``fstat``, or
    another seekable stream (a BytesIO, a temporary file's wrapper), by seeking to its end and
    back; None for a pipe, a socket, a decompressing reader or anything that cannot tell. A
    long input is then refused unread."""
    raw = stream.raw if isinstance(stream, (io.BufferedReader, io.BufferedRandom)) else stream
    if isinstance(raw, io.FileIO):  # the descriptor is the stream's own
        try:
            info = os.fstat(raw.fileno())
            return info.st_size - stream.tell() if stat.S_ISREG(info.st_mode) else None
        except (OSError, TypeError, ValueError):
            pass
    if _decompressing(stream) or _decompressing(raw):
        # Its descriptor is the compressed file's (whose size is not the stream's), and seeking
        # to its end would decompress all of it (a small file may inflate to gigabytes).
        return None
    try:
        at = stream.tell()
        left = stream.seek(0, os.SEEK_END) - at
        stream.seek(at)
        return left
    except (AttributeError, OSError, TypeError, ValueError):  # no seek, or one that returns nothing
        return None


def _decompressing(stream) -> bool:
    """Whether ``stream`` is a reader of the standard library's compressed files (gzip, bz2,
    lzma, zip members)."""
    return any(kind.__module__ in ("gzip", "bz2", "lzma", "zipfile") for kind in type(stream).__mro__)


START_BYTES = 1 << 16
"""How much of a stream ``check_start`` sees: every header Pillow identifies a format from fits."""


def read_stream(stream, name: str, check_start: Callable[[bytes], None] | None = None) -> bytes:
    """A binary stream read to its end in pieces (no buffer of the cap's size is reserved).

    Args:
        check_start: called once with the first :data:`START_BYTES` (if the stream is that
            long); it raises to refuse the stream before the rest is read (``/dev/zero`` would
            fill :data:`MAX_STREAM_BYTES` of memory before the cap refused it).

    Raises:
        LimitError: more than :data:`MAX_STREAM_BYTES` (``name`` begins the message), as a
            file too large given by its path is.
    """
    left = bytes_left(stream)
    if left is not None and left > MAX_STREAM_BYTES:
        raise LimitError(f"{name} holds more than {MAX_STREAM_BYTES:,} bytes ({left:,})")
    pieces, size = [], 0
    while True:
        piece = stream.read(1 << 20)
        if not piece:
            return b"".join(pieces)
        if check_start is not None and size < START_BYTES <= size + len(piece):
            check_start((b"".join(pieces) + piece)[:START_BYTES])
        size += len(piece)
        if size > MAX_STREAM_BYTES:
            raise LimitError(f"{name} holds more than {MAX_STREAM_BYTES:,} bytes")
        pieces.append(piece)


def _commit(tmp: str, path: Path, force: bool) -> None:
    """Move the finished temporary file into place; without ``force`` never replace a file."""
    if force:
        os.replace(tmp, path)
        return
    try:
        # link() fails if the name exists, so a file created meanwhile is never replaced.
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} exists; use --force to overwrite it") from None
    except OSError:
        # File systems without hard links (FAT and exFAT on SD cards and USB sticks, some
        # network mounts): a rename that refuses to replace, where the system has one; else
        # check, then rename, with a window in which a file made by another process is replaced.
        if not _rename_without_replacing(tmp, path):
            if path.exists():
                raise OutputExistsError(f"{path} exists; use --force to overwrite it") from None
            os.replace(tmp, path)
        return
    os.unlink(tmp)


def _rename_without_replacing(tmp: str, path: Path) -> bool:
    """Rename ``tmp`` to ``path`` unless ``path`` exists, in one step: Linux's ``renameat2`` with
    ``RENAME_NOREPLACE`` (glibc 2.28 and later; vfat, exFAT, ext4, tmpfs and most others take it),
    macOS's ``renamex_np`` with ``RENAME_EXCL``, Windows' own rename (which never replaces).
    False where none is at hand, or the file system refuses the flag.

    Raises:
        OutputExistsError: ``path`` exists.
    """
    import ctypes
    import errno
    import sys

    if os.name == "nt":
        try:
            os.rename(tmp, path)
        except FileExistsError:
            raise OutputExistsError(f"{path} exists; use --force to overwrite it") from None
        return True
    if not sys.platform.startswith("linux") and sys.platform != "darwin":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            rename = libc.renameat2
            args = (-100, os.fsencode(tmp), -100, os.fsencode(path), 1)  # AT_FDCWD, RENAME_NOREPLACE
        else:
            rename = libc.renamex_np
            args = (os.fsencode(tmp), os.fsencode(path), 0x4)  # RENAME_EXCL
    except (AttributeError, OSError):  # an older C library (or none to load)
        return False
    if rename(*args) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise OutputExistsError(f"{path} exists; use --force to overwrite it")
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False  # the flag (or the call) not supported here: the check, then the rename
    raise OSError(code, os.strerror(code), str(path))


def _create_temporary(folder: Path, name: str, private: bool = False) -> tuple[int, str]:
    """A new hidden file beside the output, with the permissions the umask gives any new file,
    or 0600 if ``private`` (``write_atomic`` then gives it those of the file it replaces)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        token = secrets.token_hex(4)
        tmp_name = f".{name}.{token}.part"
        if len(os.fsencode(tmp_name)) > 255:  # the usual limit on a name: the output's own may be close to it
            tmp_name = f".nicodec.{token}.part"
        tmp = str(folder / tmp_name)
        try:
            fd = os.open(tmp, flags, 0o600 if private else 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _write_error(exc, f"cannot write in {folder}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another run looking at it, for a moment (its age keeps it)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks: such files are never removed as stale
                pass
        return fd, tmp
    raise NicodecError(f"cannot create a temporary file in {folder}")


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Remove the temporary files that runs killed while writing one of ``names`` (outputs in
    ``folder``) left there, and return their names.

    Only ``.NAME.TOKEN.part`` files (``write_atomic``'s, TOKEN 8 hexadecimal digits) for a NAME
    among ``names`` count, and only when no process holds their lock (the writer holds it from
    creation to rename) and nothing wrote them for ``STALE_AFTER`` seconds. Nothing is removed
    on Windows or on a file system without ``flock``, where that cannot be told; nor the
    ``.nicodec.TOKEN.part`` files of outputs with names too long to prefix, whose output is unknown.
    One listing of the folder; any error reading it or a file leaves things as they are.
    """
    if fcntl is None:
        return []
    wanted = set(names)
    removed = []
    try:
        with os.scandir(folder) as entries:
            found = [(entry.name, entry.path) for entry in entries if entry.name.endswith(".part")]
    except OSError:
        return []
    for name, path in found:
        match = _TEMPORARY.fullmatch(name)
        if match is None or match.group(1) not in wanted:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released as fd closes
            held = os.fstat(fd)
            now = os.lstat(path)
            if (stat.S_ISREG(held.st_mode) and (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
                    and time.time() - held.st_mtime > STALE_AFTER):
                os.unlink(path)
                removed.append(name)
        except OSError:  # locked: being written; or gone meanwhile
            pass
        finally:
            os.close(fd)
    return removed


_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{8}\.part", re.DOTALL)
