"""Checks of the tables `neurrator.data.session` reads from an untrusted file: dtypes, unit ids, table sizes.

Each check raises `NeurratorError(file, problem)` naming the file and the column; `names_the_file`
turns any other exception raised while a file is read (HDF5 read errors, MemoryError, numpy
conversion errors) into one such line, so no file can cause an "internal error".

Handled explicitly (not refused):

- units without spikes are dropped with a warning (`neurrator.data.units_table.read_units`), as long as the table
  has at most `MAX_UNITS` rows; a table declaring more rows is refused before its columns are read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.io.h5safety import check_numeric_dataset

__all__ = ["MAX_UNITS", "check_presentation_columns", "check_spike_columns", "check_unit_ids", "names_the_file"]

#: Most rows accepted in a Units table (Allen Neuropixels sessions have about 3,000; 100x that is refused).
MAX_UNITS = 300_000

F = TypeVar("F", bound=Callable[..., Any])


def _data(col) -> Any:
    return getattr(col, "data", col)


def check_unit_ids(units, *, label: str) -> np.ndarray:
    """The Units table's ids as int64: at most `MAX_UNITS`, integer dtype, no duplicates."""
    n = len(units)
    if n > MAX_UNITS:
        raise NeurratorError(label, f"the Units table has {n} rows, more than the {MAX_UNITS} neurrator accepts "
                             "(a hostile or corrupt file?)")
    data = _data(units.id)
    check_numeric_dataset(data, label=label, what="units/id", kinds="iu")
    ids = np.asarray(data[:], dtype=np.int64)
    values, counts = np.unique(ids, return_counts=True)
    dup = np.flatnonzero(counts > 1)
    if dup.size:
        raise NeurratorError(label, f"duplicate unit ids in the Units table: {dup.size} id(s) repeat, e.g. id "
                             f"{int(values[dup[0]])} appears {int(counts[dup[0]])} times; unit ids must be unique")
    return ids


def check_spike_columns(units, *, label: str) -> None:
    """spike_times must hold numbers (float or integer), its index integers; checked before either is read."""
    from hdmf.common import VectorIndex

    col = units["spike_times"]
    if isinstance(col, VectorIndex):
        check_numeric_dataset(_data(col), label=label, what="units/spike_times_index", kinds="iu")
        check_numeric_dataset(_data(col.target), label=label, what="units/spike_times", kinds="fiu")
    else:
        check_numeric_dataset(_data(col), label=label, what="units/spike_times", kinds="fiu")


def check_presentation_columns(table, *, tname: str, frame_columns: tuple[str, ...], label: str) -> None:
    """start/stop times and the frame column of a presentation table must hold numbers, not strings."""
    for c in ("start_time", "stop_time"):
        if c in table.colnames:
            check_numeric_dataset(_data(table[c]), label=label, what=f"{tname}.{c}", kinds="fiu")
    fcol = next((c for c in frame_columns if c in table.colnames), None)
    if fcol is not None:
        check_numeric_dataset(_data(table[fcol]), label=label, what=f"{tname}.{fcol} (frame indices)", kinds="fiu")


def names_the_file(func: F) -> F:
    """Decorator for readers taking ``source=``/``path_label=``: any non-NeurratorError becomes one line naming the file."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        label = kwargs.get("path_label") or kwargs.get("label") or kwargs.get("source") or "input file"
        try:
            return func(*args, **kwargs)
        except NeurratorError:
            raise
        except MemoryError as err:
            raise NeurratorError(label, f"ran out of memory while reading the file ({err or 'MemoryError'}); "
                                 "its tables are larger than this machine can hold") from err
        except Exception as err:  # noqa: BLE001 - anything a file's content makes fail is that file's problem
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise NeurratorError(label, f"cannot read the file: {type(err).__name__}"
                                 f"{': ' + text if text else ''}") from err

    return wrapper  # type: ignore[return-value]
