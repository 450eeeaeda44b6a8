"""Folders and paths -> checked: created folders recorded (a failed run removes the empty ones it made), paths
built from untrusted metadata kept inside their folder, outputs never written over an input or an NWB file,
and files of a folder opened only when they are regular files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from neurrator.errors import NeurratorError, escape_controls

__all__ = ["MAX_NAME_BYTES", "MAX_PATH_BYTES", "CreatedDirs", "check_name_length", "check_output_file",
           "open_regular_file", "path_inside"]

#: Longest file or folder name accepted (bytes of UTF-8; Linux and macOS refuse longer names).
MAX_NAME_BYTES = 255
#: Longest whole path accepted (bytes; Linux's PATH_MAX less the terminating NUL).
MAX_PATH_BYTES = 4095


class CreatedDirs:
    """The folders a run creates below (and including) some output folders, to remove them if it fails.

    `watch` records, before the run, which of a folder and its ancestors are missing and which
    sub-folders already exist; `remove_empty` (after a failure) removes the EMPTY folders that did not
    exist then, deepest first. It never removes a file or a non-empty folder.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> dirs = CreatedDirs()
    >>> dirs.watch(root / "out" / "sub-1")
    >>> (root / "out" / "sub-1").mkdir(parents=True)
    >>> [p.name for p in dirs.remove_empty()]
    ['sub-1', 'out']
    >>> sorted(p.name for p in root.iterdir())
    []
    """

    def __init__(self) -> None:
        self._new_roots: list[Path] = []  # topmost folders that did not exist (everything below is new)
        self._existing: dict[Path, set[Path]] = {}  # existing watched folder -> its sub-folders then

    def watch(self, folder: str | Path) -> None:
        """Record the state of ``folder`` (call before the run creates anything there)."""
        folder = Path(os.path.abspath(folder))
        if folder.is_dir():
            self._existing[folder] = {Path(d) for d, _, _ in os.walk(folder)}
            return
        top = folder
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        if not top.exists():
            self._new_roots.append(top)

    def remove_empty(self) -> list[Path]:
        """Remove the empty folders created since `watch`, deepest first; returns the removed folders."""
        removed: list[Path] = []
        for root in self._new_roots:
            removed += _rmdir_empty(root, keep=set())
        for folder, before in self._existing.items():
            removed += _rmdir_empty(folder, keep=before)
        return removed


def _rmdir_empty(root: Path, *, keep: set[Path]) -> list[Path]:
    if not root.is_dir():
        return []
    removed = []
    for d, _, _ in sorted(os.walk(root), key=lambda entry: -len(Path(entry[0]).parts)):
        path = Path(d)
        if path in keep:
            continue
        try:
            path.rmdir()  # only succeeds when empty
            removed.append(path)
        except OSError:
            pass
    return removed


def check_name_length(name: str, *, label: str) -> None:
    """Raise `NeurratorError` (naming ``label``) when a path component of ``name`` passes `MAX_NAME_BYTES`.

    Examples
    --------
    >>> check_name_length("sub-1/sub-1_ses-2.nwb", label="x")
    >>> check_name_length("a" * 300 + ".nwb", label="x")
    Traceback (most recent call last):
    ...
    neurrator.errors.NeurratorError: x: the name aaaaaaaaaaaaaaaaaaaaaaaa... is 304 bytes, more than the 255 a file system accepts; shorten the identifier it is made from
    """
    for part in PurePosixPath(name).parts:
        n = len(os.fsencode(part))
        if n > MAX_NAME_BYTES:
            raise NeurratorError(label, f"the name {part[:24]}... is {n} bytes, more than the {MAX_NAME_BYTES} a file "
                                 "system accepts; shorten the identifier it is made from")


def path_inside(folder: str | Path, relative: str, *, label: str) -> Path:
    """``folder`` and a relative path from untrusted metadata (a DANDI asset path, a derived file name) -> their
    join, or `NeurratorError` when it would leave ``folder``.

    Refused: an absolute path, a ``..`` component, a backslash, a control character, a name longer than
    `MAX_NAME_BYTES` or a path longer than `MAX_PATH_BYTES`, an existing folder on the way that is a symbolic
    link leading out of ``folder``, and a symbolic link at the path itself. ``.`` components and repeated
    slashes are normalised away.

    Examples
    --------
    >>> str(path_inside("out", "sub-1//./sub-1_ses-2.nwb", label="a"))
    'out/sub-1/sub-1_ses-2.nwb'
    >>> path_inside("out", "../etc/passwd.nwb", label="a")
    Traceback (most recent call last):
    ...
    neurrator.errors.NeurratorError: a: the path ../etc/passwd.nwb leads out of the output folder out (a '..' component); refusing it
    """
    folder = Path(folder)
    text = str(relative)
    where = f"the path {text} leads out of the output folder {folder}"
    if escape_controls(text) != text:
        raise NeurratorError(label, f"the path {text} holds control characters; refusing it")
    if "\\" in text:
        raise NeurratorError(label, f"the path {text} holds a backslash; refusing it")
    rel = PurePosixPath(text)
    if rel.is_absolute():
        raise NeurratorError(label, f"{where} (an absolute path); refusing it")
    if ".." in rel.parts:
        raise NeurratorError(label, f"{where} (a '..' component); refusing it")
    if not rel.parts:
        raise NeurratorError(label, f"the path {text!r} names no file; refusing it")
    check_name_length(text, label=label)
    target = folder.joinpath(*rel.parts)
    if len(os.fsencode(os.path.abspath(target))) > MAX_PATH_BYTES:
        raise NeurratorError(label, f"the output path for {text} is longer than {MAX_PATH_BYTES} bytes; refusing it")
    root = os.path.realpath(folder)
    parent = os.path.realpath(target.parent)
    if os.path.commonpath([root, parent]) != root:
        raise NeurratorError(label, f"{where} (a symbolic link on the way leads to {parent}); refusing it")
    if target.is_symlink():
        raise NeurratorError(label, f"the output path {target} is a symbolic link; refusing to write through it")
    return target


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """True when ``path`` holds an HDF5 signature at one of the offsets HDF5 allows (0, 512, 1024, ...)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                if f.read(8) == _HDF5_MAGIC:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def check_output_file(out: str | Path, *, inputs: Sequence[str | Path], what: str) -> None:
    """Raise `NeurratorError` (naming ``out``) unless writing ``what`` to ``out`` spares every input and NWB file.

    Refused: ``out`` is one of ``inputs`` (the same file, however named: links resolved), ends in ``.nwb``,
    is an existing HDF5/NWB file, or is a folder.
    """
    out = Path(out)
    for source in inputs:
        source = Path(source)
        same = os.path.realpath(out) == os.path.realpath(source)
        if not same and out.exists() and source.exists():
            try:
                same = os.path.samefile(out, source)
            except OSError:
                same = False
        if same:
            raise NeurratorError(out, f"is the input file {source}; refusing to write the {what} over it (choose "
                                 "another output)")
    if out.suffix.lower() == ".nwb":
        raise NeurratorError(out, f"ends in .nwb; refusing to write the {what} to an NWB file name")
    if out.is_dir():
        raise NeurratorError(out, f"is a folder; give a file name for the {what}")
    if out.exists() and _is_hdf5(out):
        raise NeurratorError(out, f"is an HDF5/NWB file; refusing to write the {what} over it")


def open_regular_file(path: str | Path, *, label: str | None = None) -> BinaryIO:
    """``path`` -> opened for reading, only when it is a regular file (not a symbolic link, device, FIFO or socket).

    The check and the open are one step (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``): a FIFO never blocks,
    a device is never read, a link planted in the folder is never followed.
    """
    path = Path(path)
    label = str(path) if label is None else label
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NeurratorError(label, "not found") from None
    except OSError as err:
        if path.is_symlink():
            raise NeurratorError(label, "is a symbolic link; only regular files are read from this folder") from None
        raise NeurratorError(label, f"cannot open ({err.strerror or err})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode)
                or stat.S_ISBLK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file")
        raise NeurratorError(label, f"is {kind}; only regular files are read from this folder")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
