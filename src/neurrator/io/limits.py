"""Declared shape and dtype of an array in an untrusted file -> refused or passed, before anything is read or decoded.

One limit, `MAX_ARRAY_BYTES` (override: ``$NEURRATOR_MAX_ARRAY_BYTES``, in bytes), bounds every array that
neurrator decodes whole into memory from a file it does not trust: a ``--movie`` file of every format
(``.npy`` header, ``.npz`` member, ``.h5`` dataset, TIFF pages, PNG/JPEG headers), the thumbnails and the
tables that ``report`` and ``show`` read from a derived file. The check reads only headers; the error names
the file that declares the array. (`neurrator.io.h5safety.MAX_DATASET_BYTES` is the separate, larger bound
of the structural scan of session files, whose large datasets are read in parts.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from neurrator.errors import NeurratorError

__all__ = ["MAX_ARRAY_BYTES", "check_array_size", "max_array_bytes", "memory_guard"]

#: Largest array decoded whole from an untrusted file, in bytes (natural_movie_three is 0.67 GB as uint8).
MAX_ARRAY_BYTES = 4 * 2**30
_ENV = "NEURRATOR_MAX_ARRAY_BYTES"


def max_array_bytes() -> int:
    """`MAX_ARRAY_BYTES`, or ``$NEURRATOR_MAX_ARRAY_BYTES`` when set to a positive integer.

    Examples
    --------
    >>> max_array_bytes() == MAX_ARRAY_BYTES or "NEURRATOR_MAX_ARRAY_BYTES" in os.environ
    True
    """
    text = os.environ.get(_ENV, "").strip()
    if text:
        try:
            value = int(float(text))
        except ValueError:
            value = 0
        if value > 0:
            return value
    return MAX_ARRAY_BYTES


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_array_size(shape: Sequence[int], itemsize: int, *, label: str, what: str,
                     limit: int | None = None) -> int:
    """Declared ``shape`` and ``itemsize`` -> the bytes a full read would allocate, or `NeurratorError`.

    Parameters
    ----------
    shape, itemsize
        As the file's header declares them (Python ints: no overflow).
    label
        The file that declares the array (named first in the error).
    what
        The array, e.g. ``"dataset data"`` or ``"thumbnail frame_3"``.
    limit
        Bytes accepted (default `max_array_bytes`).

    Examples
    --------
    >>> check_array_size((2, 3), 4, label="m.npy", what="array")
    24
    >>> check_array_size((10**6, 10**6), 1, label="m.npy", what="array", limit=10**9)
    Traceback (most recent call last):
    ...
    neurrator.errors.NeurratorError: m.npy: array declares shape (1000000, 1000000) x 1 bytes = 931 GiB, more than the 954 MiB limit (NEURRATOR_MAX_ARRAY_BYTES); refusing to read it
    """
    limit = max_array_bytes() if limit is None else int(limit)
    dims = tuple(int(s) for s in shape)
    if any(d < 0 for d in dims) or int(itemsize) < 0:
        raise NeurratorError(label, f"{what} declares an impossible shape {dims}")
    n = int(itemsize)
    for d in dims:
        n *= d
    if n > limit:
        raise NeurratorError(label, f"{what} declares shape {dims} x {int(itemsize)} bytes = {_size(n)}, more than "
                             f"the {_size(limit)} limit ({_ENV}); refusing to read it")
    return n


@contextlib.contextmanager
def memory_guard(label: str, what: str) -> Iterator[None]:
    """Inside: a `MemoryError` becomes a one-line `NeurratorError` naming ``label`` (the file being decoded)."""
    try:
        yield
    except MemoryError:
        raise NeurratorError(label, f"out of memory while reading {what}; lower ${_ENV} to refuse such files "
                             "before reading them") from None
