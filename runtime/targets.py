"""Where the command line's outputs go: each checked before any work, written atomically.

A name is refused before an image is read or coded when its file could not or must not be
written: a folder of devices or descriptors (``/dev``, ``/dev/fd``), the input itself, an
existing file without ``--force``, a folder that cannot be made. What a killed run left beside
an output is removed first, and a file that changes while it is coded is not written.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from . import stdio
from .errors import NicodecError, OutputExistsError


def _in_devices(path: Path) -> str | None:
    """The folder ``path`` lies in when it is ``/dev`` itself (``/dev/stdin``, whose link resolves
    to the file it reads) or a folder of open file descriptors (``/dev/fd/63``,
    ``/proc/self/fd/1``): no folder to write a file in, though ``os.access`` calls them writable
    for root; else None."""
    return device_folder(path.parent)


NAMES_IN_UTF16 = os.name == "nt"
"""Whether names are measured in UTF-16 units (Windows: NTFS and exFAT take 255 of them, 94
Japanese characters being 282 bytes of UTF-8) rather than the bytes of the file system's encoding."""
_DEVICE_FOLDER = re.compile(r"/dev|/dev/fd|/proc/(self|thread-self|[0-9]+)(/task/[0-9]+)?/fd")


def device_folder(folder: Path) -> str | None:
    """``folder``, as named or with its links resolved, when that is ``/dev`` or a folder of open
    file descriptors; else None."""
    try:
        names = (os.path.abspath(folder), os.path.realpath(folder))
    except (OSError, ValueError):
        return None  # the output's own check names it
    return next((name for name in names if _DEVICE_FOLDER.fullmatch(name)), None)


def check_beside(input: Path, several: bool = False) -> None:
    """Refuse, before any work, an output beside an input that lies in no folder to write in: a
    process substitution's ``/dev/fd/63``, or ``/dev/stdin`` (the write failed only after the
    work, as root saying that /dev/fd did not exist, or wrote into /dev)."""
    if _in_devices(input):
        raise NicodecError(f"{input} names an open file descriptor or a device (a process substitution, <(...), or "
                           f"/dev/stdin), in no folder to write an output beside; give -o {'DIR' if several else 'FILE'}")


def _check_not_devices(output: Path) -> None:
    """Refuse an output in ``/dev`` or a folder of open file descriptors (as root, ``-o /dev/stdout
    --force`` replaced the link with a file, and ``-o /dev/`` wrote files into /dev)."""
    folder = _in_devices(output)
    if folder:
        raise NicodecError(f"the output {output} lies in {folder}, a folder of devices or open file descriptors, not "
                           "of files to write; -o - writes to standard output")


def is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; ``-`` and names the system refuses (too long, a NUL) are not."""
    try:
        return not stdio.is_stdio(path) and path.is_dir()
    except (OSError, ValueError):
        return False


def make_folder(folder: Path) -> None:
    """Create an output folder (and its parents), or name why it cannot be."""
    from .files import check_writable, nearest_existing, not_a_folder

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        problem = not_a_folder(nearest_existing(folder, follow=False)) or "a file is in the way"
        raise NicodecError(f"cannot create the output folder {folder}: {problem}") from None
    except OSError as exc:
        raise NicodecError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    check_writable(folder)


class SharedCauseError(NicodecError):
    """A batch's file failed for a cause that is the output's place, not the file (a full disk,
    the output folder gone or not writable): every file still to write there fails the same
    way, and the list names the first few (``Outcome.shared``)."""

    shared = True


def identity(folder: Path) -> int | None:
    """The device (file system) that the folder ``folder`` is on, or None where there is no
    folder to look at. Not its inode: FAT and exFAT drives and some FUSE mounts give a folder
    another inode number each time the system reads it again."""
    try:
        st = folder.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev if stat.S_ISDIR(st.st_mode) else None


def still_there(root: Path | None, was: int | None) -> None:
    """Refuse a batch's file when its output folder ``root`` is no longer on the file system
    the run began with (``was``, its :func:`identity` then): removed, or its drive unmounted.
    Making it again would put the rest of the batch on the disk beneath, reported as written."""
    if root is not None and identity(root) != was:
        raise SharedCauseError(f"the output folder {root} is no longer there (removed, or its drive unmounted, since "
                               "the run began); nothing was written for it")


class FullDisks:
    """The file systems a batch found full: a file still to write on one fails before it is
    coded (a disk full after the first 100 files of 1,000 had every other file coded, to fail
    at its write), until ``ROOM`` more bytes are free than just after the failed write."""

    ROOM = 1 << 20
    """Bytes freed that count as room made: less is what the other --jobs' temporary files
    take and give back (with 2 jobs, 22 more files of 1,000 were coded to fail at the write)."""

    def __init__(self) -> None:
        self._full: dict[int, tuple[int, str]] = {}  # device -> its free bytes after the failed write, why

    @staticmethod
    def _nearest(folder: Path) -> Path | None:
        from .files import nearest_existing

        try:
            return nearest_existing(folder)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _device(place: Path | None) -> int | None:
        try:
            return place.stat().st_dev if place is not None else None
        except (OSError, ValueError):
            return None

    @staticmethod
    def _free(place: Path | None) -> int:
        try:
            return shutil.disk_usage(place).free if place is not None else 0
        except (OSError, ValueError):
            return 0

    def check(self, target: Path) -> None:
        """Refuse ``target`` when its file system was found full and has no more room since (the
        failed write's temporary file is gone, so the room it took is free again: a smaller
        output might fit in it, but a folder's files are mostly alike)."""
        if self._full:
            place = self._nearest(target.parent)  # the folder, or the nearest above it still to make it in
            device = self._device(place)
            full = self._full.get(device) if device is not None else None
            if full is not None:
                if self._free(place) < full[0] + self.ROOM:
                    raise SharedCauseError(full[1])
                self._full.pop(device, None)  # room was made meanwhile

    @contextmanager
    def noting(self, target: Path):
        """Note the file system of ``target`` as full when writing it fails for want of room."""
        from .files import DiskFullError

        try:
            yield
        except DiskFullError as exc:
            place = self._nearest(target.parent)
            device = self._device(place)
            if device is not None:
                why = f"not coded: the disk of {target.parent} was full ({exc}); free some space and run again to code " \
                      "the rest"
                self._full.setdefault(device, (self._free(place), why))  # --jobs: the first failed write says it
            raise


def write(path: Path, writer: Callable, force: bool, new_folder: bool) -> None:
    """A single file's output, written atomically by ``writer`` (given the open file);
    ``new_folder``: into the folder ``-o NEW/`` asked for, made now (:func:`output_for` only
    checked it). Any other missing folder is an error, not made again (a mount that went away
    must not become a folder on the disk beneath)."""
    from .files import write_atomic

    made = _missing(path.parent)[0] if new_folder else []
    try:
        if new_folder:
            make_folder(path.parent)
        write_atomic(path, writer, force=force)
    except BaseException:
        for folder in made:  # innermost first; one that another program has put a file in stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _missing(folder: Path) -> tuple[list[Path], Path]:
    """The folders of ``folder``'s path that do not exist, innermost first, and the nearest that
    does (or whatever is there in its place: a file, a link to nothing)."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing, folder


def _check_can_make(folder: Path, name: str) -> None:
    """Refuse, before any work, an output folder still to be made, or the name ``name`` in it,
    that could not be: something not a folder in the way (a file, a dangling or looping link),
    the nearest folder that exists not writable, or a name too long for its file system."""
    from .files import check_writable, not_a_folder

    to_make, probe = _missing(folder)
    missing = [name, *(part.name for part in to_make)]
    problem = not_a_folder(probe)  # a file, a link to nowhere, a loop
    if problem:
        raise NicodecError(f"cannot create the output folder {folder}: {problem}")
    check_writable(probe)
    try:
        longest = os.pathconf(probe, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # Windows; a file system that does not say
        longest = 255
    unit = "UTF-16 units" if NAMES_IN_UTF16 else "bytes"
    for part in missing:
        size = len(part.encode("utf-16-le", "surrogatepass")) // 2 if NAMES_IN_UTF16 else len(os.fsencode(part))
        if size > longest:
            raise NicodecError(f"cannot use the output {folder / name}: the name {part[:40]}... is longer than "
                               f"the {longest} {unit} its file system takes")


def as_read(source: Path):
    """What identifies the file at ``source`` now (device, inode, size, modification time), or
    None where it is no regular file or cannot be looked at: :func:`unchanged_since` compares
    it after the coding."""
    try:
        st = source.stat()
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):  # a pipe's times change as it is read
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def unchanged_since(source: Path, before) -> None:
    """Refuse to write what was coded from ``source`` when the file was replaced or changed
    while it was coded (a folder that rsync or a camera fills as the batch runs): the output,
    newer than the new file, would be taken as up to date by every later run."""
    if before is None:
        return
    now = as_read(source)
    if now is None and not os.path.lexists(source):
        raise NicodecError("it was removed while it was being coded; nothing was written for it")
    if now != before:
        raise NicodecError("it changed while it was being coded; nothing was written for it: run again to code it "
                           "as it is now")


def writable_before(target: Path, root: Path | None = None, was: int | None = None) -> None:
    """Refuse a batch's file before coding it when the folder it goes to exists and cannot be
    written (made read-only while the batch runs), or its output folder ``root`` is gone
    (:func:`still_there`): the coding would be lost at the write. A folder still to be made is
    made after the coding, so an input that fails leaves none."""
    from .files import check_writable

    still_there(root, was)
    if target.parent.is_dir():
        try:
            check_writable(target.parent)
        except NicodecError as exc:
            raise SharedCauseError(str(exc)) from None


def output_for(input: Path, output: Optional[str], suffix: str, force: bool, note: Callable[[str], None],
               check: Callable[[Path], None] = lambda target: None) -> tuple[Path, bool]:
    """The output path, refused early (before any work) when it cannot or must not be written,
    and whether its folder is still to be made: one ``-o NEW/`` asks for is checked here and
    made when the output is written (by :func:`write`), so a run that fails first leaves none.
    ``check`` refuses a target by its name alone (an extension no image format has), first.
    What a killed run left of an earlier write of it is removed then (:func:`remove_stale`,
    which tells ``note``)."""
    from .files import check_target

    # Decoding beside the input, or into a folder under its name: an image there may be the original.
    beside = suffix != ".nic" and output is None
    if output == "":
        raise NicodecError("the output name is empty")
    if output is None and stdio.is_stdio(input):
        # Arguments that cannot go together, whatever the files: a usage error (exit code 2).
        raise typer.BadParameter("with standard input as INPUT, give -o FILE (or -o - for standard output)",
                                 param_hint="'-o'")
    if output is None:
        if not input.name or is_dir(input):
            raise NicodecError(f"{input} is a directory, not a file")
        check_beside(input)
        output = input.with_suffix(suffix)
    else:
        try:
            folder = Path(output).is_dir()
        except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL
            raise NicodecError(f"cannot use the output {output}: {getattr(exc, 'strerror', None) or exc}") from None
        if output.endswith(("/", os.sep)) or folder:
            # Into that folder, under the input's name, as cp does (a shell glob may match one file).
            if stdio.is_stdio(input):
                raise typer.BadParameter(f"with standard input as INPUT, -o names the file, not a folder ({output})",
                                         param_hint="'-o'")
            if not folder:
                target = Path(output) / input.with_suffix(suffix).name
                check(target)
                _check_can_make(Path(output), target.name)
                return target, True  # nothing there yet to clash with
            output = Path(output) / input.with_suffix(suffix).name
            beside = suffix != ".nic"
    output = Path(output)
    _check_not_devices(output)  # before check: -o /dev/stdout has no extension, and -o - is what it means
    check(output)
    try:
        if output.parent.is_dir():
            remove_stale([output], note)  # even when the output exists and is refused: nothing else would
        if output.is_file() and not stdio.is_stdio(input) and input.exists() and os.path.samefile(input, output):
            raise NicodecError(f"the output {output} is the input; choose another name")
        if stdio.is_stdio(input) and stdio.stdin_is(output):  # < photo.png: --force would replace the photo
            raise NicodecError(f"the output {output} is the input, read from standard input; choose another name")
        check_target(output, force)  # what write_atomic will check, checked before the work
    except OutputExistsError as exc:
        if not beside:
            raise
        # That image may be the original photo, which --force would replace.
        raise OutputExistsError(f"{exc} (if it is an original rather than an earlier output, write elsewhere "
                                "with -o)") from None
    except (OSError, ValueError) as exc:  # INPUT's name with .nic added is too long for the file system
        raise NicodecError(f"cannot use the output {output}: {getattr(exc, 'strerror', None) or exc}") from None
    return output, False


def remove_stale(outputs: Iterable[Path], note: Callable[[str], None]) -> None:
    """Remove the temporary files that killed runs left beside these outputs
    (:func:`nicodec.files.remove_stale_temporaries`), and tell ``note`` what was removed."""
    from .files import remove_stale_temporaries

    names: dict[Path, set[str]] = {}
    for output in outputs:
        names.setdefault(output.parent, set()).add(output.name)
    removed = [folder / name for folder, wanted in names.items() for name in remove_stale_temporaries(folder, wanted)]
    if removed:
        shown = ", ".join(str(path) for path in removed[:3]) + (", ..." if len(removed) > 3 else "")
        count = f"{len(removed):,} temporary file" + ("" if len(removed) == 1 else "s")
        note(f"note: removed {count} that a killed run left unfinished: {shown}")
