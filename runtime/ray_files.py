"""The files of a Ray run (:mod:`nicodec.ray_recipe`): the source listed as Ray's readers list
it, the outputs named and checked, what earlier runs left, and each output written. pyarrow's
file systems (which Ray Data brings) serve local folders and URIs alike; this module imports
neither Ray nor pyarrow until a function needs it."""

from __future__ import annotations

import os
import posixpath
import unicodedata

from .errors import NicodecError

NIC_SUFFIX = ".nic"


def clashing_sources(source: str, extensions: list[str], listed: list[str] | None = None) -> dict[str, list[str]]:
    """Sources under the folder ``source`` whose output another would write too (``a.png`` and
    ``a.jpg`` both make ``a.nic``; names that differ only in case or Unicode normal form are
    one file on macOS, Windows and FAT drives), each with the others; as the CLI does, none of
    them is coded, rather than one replacing another in silence. The folder is listed on the
    driver with Ray's own rules (extensions in any case; paths whose first part begins with
    ``.`` or ``_`` left out), so the paths are those Ray reads. Empty for a single file.
    ``listed``: :func:`listed_sources`'s list, where the caller has it already."""
    _, root = filesystem_of(source)
    groups: dict[str, list[str]] = {}
    for path in (listed_sources(source, extensions) if listed is None else listed) or []:
        key = unicodedata.normalize("NFC", output_name(path, root)).lower()
        groups.setdefault(key, []).append(path)
    return {path: [other for other in group if other != path] for group in groups.values() if len(group) > 1
            for path in group}


def listed_sources(source: str, extensions: list[str]) -> list[str] | None:
    """The files under the folder ``source`` that Ray reads (extensions in any case; paths
    whose first part begins with ``.`` or ``_`` left out, as Ray leaves them), listed on the
    driver; ``None`` for a single file."""
    import pyarrow.fs

    filesystem, root = filesystem_of(source)
    if filesystem.get_file_info(root).type != pyarrow.fs.FileType.Directory:
        return None
    wanted = {"." + ext.lower().lstrip(".") for ext in extensions}
    return [entry.path for entry in filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
            if entry.type == pyarrow.fs.FileType.File and not entry.path[len(root):].lstrip("/").startswith((".", "_"))
            and posixpath.splitext(entry.path)[1].lower() in wanted]


def output_name(path: str, source_root: str) -> str:
    """The output's path relative to the target: the source's path under ``source_root``, as ``.nic``.

    A path outside ``source_root`` (a single file given as the source) keeps only its name.
    """
    root = source_root.rstrip("/")
    relative = path[len(root) + 1 :] if path.startswith(root + "/") else posixpath.basename(path)
    return posixpath.splitext(relative)[0] + NIC_SUFFIX


def unsafe_output_name(relative: str) -> str | None:
    """Why the output path ``relative`` (from :func:`output_name`) would leave the target
    folder, or None: an object store's key may hold ``..`` or ``//`` (``photos/../x.png``,
    ``photos//etc/x.png``), which a local target's join took as a step up or an absolute path."""
    parts = relative.split("/")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return (f"its path under the source names the output {relative!r}, which has an empty, '.' or '..' part: "
                "it would be written outside the target or under another name; rename it")
    return None


def links_to_nowhere(source: str, extensions: list[str]) -> list[tuple[str, str]]:
    """``(path, reason)`` of the links under the local (or ``file://``) folder ``source`` that
    lead to no file, among the names Ray would read (:func:`listed_sources`'s rules; links to
    folders followed, as pyarrow's listing follows them); none on an object store."""
    if "://" in source and not source.startswith("file://"):
        return []
    _, root = filesystem_of(source)
    wanted = {"." + ext.lower().lstrip(".") for ext in extensions}
    found, seen, folders = [], set(), [root]
    while folders:
        folder = folders.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:  # a link back up the tree
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as entries:
                listed = sorted(entries, key=lambda entry: entry.name)
        except OSError:  # unreadable: Ray's reader says so, or passes over it
            continue
        for entry in listed:
            if folder == root and entry.name.startswith((".", "_")):
                continue
            if entry.is_dir():  # a link to a folder too
                folders.append(entry.path)
            elif entry.is_symlink() and posixpath.splitext(entry.name)[1].lower() in wanted \
                    and not os.path.exists(entry.path):
                try:
                    found.append((entry.path, f"it is a link to {os.readlink(entry.path)}, which leads to no file"))
                except OSError:  # gone since the listing
                    pass
    return sorted(found)


def files_under(folder: str) -> set[str]:
    """The paths of the files under ``folder`` (local, or a URI), relative to it, with ``/``:
    empty if it does not exist. A link that leads nowhere is no file (as pyarrow, which the
    encoders ask, says)."""
    if "://" in folder:
        import pyarrow.fs

        filesystem, root = filesystem_of(folder)
        try:
            entries = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
        except OSError:  # a file where the folder should be: each output's write says so
            return set()
        return {entry.path[len(root) + 1:] for entry in entries
                if entry.type == pyarrow.fs.FileType.File and entry.path.startswith(root + "/")}
    found = set()
    for parent, _, names in os.walk(folder):
        relative = os.path.relpath(parent, folder)
        for name in names:
            if os.path.exists(os.path.join(parent, name)):
                found.add(name if relative == "." else posixpath.join(relative.replace(os.sep, "/"), name))
    return found


def clear_stale_temporaries(target: str, names: list[str]) -> None:
    """Remove what runs killed as they wrote these outputs (paths relative to the local
    ``target``) left beside them: the CLI's clean-up (:func:`nicodec.files.remove_stale_temporaries`),
    one listing a folder, on the driver before the run."""
    from .files import remove_stale_temporaries

    folders: dict[str, list[str]] = {}
    for name in names:
        folder, base = posixpath.split(posixpath.join(target, name))
        folders.setdefault(folder, []).append(base)
    for folder, wanted in folders.items():
        remove_stale_temporaries(folder, wanted)


def as_uri(path: str | os.PathLike) -> str:
    """A URI stays as it is; a local path becomes absolute (Ray and pyarrow want that)."""
    text = os.fspath(path)
    return text if "://" in text else os.path.abspath(os.path.expanduser(text))


def filesystem_of(uri: str):
    """``(pyarrow filesystem, path on it)`` for a local path or a URI, as Ray resolves them."""
    import pyarrow.fs

    if "://" not in uri:
        return pyarrow.fs.LocalFileSystem(), uri.rstrip("/") or "/"
    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    return filesystem, path.rstrip("/")


def exists(filesystem, path: str) -> bool:
    return path_kind(filesystem, path) is not None


def path_kind(filesystem, path: str) -> str | None:
    """``"file"``, ``"directory"`` (a folder, or an object store's prefix) or ``None`` (nothing there)."""
    import pyarrow.fs

    found = filesystem.get_file_info(path).type
    if found == pyarrow.fs.FileType.NotFound:
        return None
    return "directory" if found == pyarrow.fs.FileType.Directory else "file"


def write_output(filesystem, local: bool, path: str, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path``; an existing file is replaced only with ``overwrite``, and
    one that holds ``data`` already counts as written (a write task run again after its worker
    died finds the files it wrote: the same image makes the same file)."""
    if not overwrite and exists(filesystem, path):
        if holds(filesystem, path, data):
            return
        raise NicodecError(f"{path} exists (overwrite=True, --overwrite, replaces it)")
    if local:
        from .files import write_atomic

        os.makedirs(posixpath.dirname(path), exist_ok=True)
        write_atomic(path, lambda f: f.write(data), force=overwrite)
        return
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def holds(filesystem, path: str, data: bytes) -> bool:
    """Whether the file at ``path`` holds ``data`` (false if it cannot be read)."""
    try:
        if filesystem.get_file_info(path).size != len(data):
            return False
        with filesystem.open_input_stream(path) as stream:
            return stream.read() == data
    except OSError:
        return False
