"""Output folders a run creates -> recorded, so that a failed run removes the (empty) folders it made and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CreatedDirs"]


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
