"""Narrations laid out for interval tools: one ``NarrationsTable`` per unit subset in a ``NarrationsCollection``.

Within one subset the narrated windows do not overlap, so pynapple (``nap.load_file``) reads each table as
one ``IntervalSet`` with the text and scores as metadata. ``narrations_dataframe`` gives the tidy view
across subsets in one call.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hdmf.common import DynamicTable
from pynwb import NWBFile, ProcessingModule

import ndx_neurrator as _ndx
from ndx_neurrator.build import MODULE_NAME, create_narrations

COLLECTION_NAME = "narrations"


def table_name_for(label: str) -> str:
    """The NarrationsTable name of a subset label: 'narrations_' + label, ':' and '/' replaced by '_'.

    (HDF5/hdmf names may not hold ':' or '/'.) The exact label stays reachable through the table's
    ``unit_subset`` column; ``narrations_dataframe`` puts it in its ``subset`` column.

    >>> table_name_for("random:50:seed3")
    'narrations_random_50_seed3'
    """
    return "narrations_" + str(label).replace(":", "_").replace("/", "_")


def create_narrations_collection(
    tables: Mapping[str, Mapping[str, Any]] | Sequence[Any],
    *,
    unit_subsets: DynamicTable,
    name: str = COLLECTION_NAME,
    description: str = "narrations, one table per unit subset",
):
    """A ``NarrationsCollection`` with one ``NarrationsTable`` per unit subset.

    ``tables`` maps a subset's row in ``unit_subsets`` (int) or label (str) to the keyword arguments of
    ``create_narrations`` for that subset's windows (``start_time``, ``stop_time``, ``text``, ``frame``,
    ``narrator_model``, ``prompt``, optional ``reference_text``, ``similarity``); ``unit_subsets``,
    ``unit_subset_rows`` and ``subset`` (the label as text) are filled in. Alternatively give ready ``NarrationsTable`` objects. Each table
    is named ``table_name_for(label)``; its windows must not overlap (sorted by start time).
    """
    what = f"NarrationsCollection '{name}'"
    labels = [str(x) for x in unit_subsets["label"][:]]
    built = []
    if isinstance(tables, Mapping):
        for key, kwargs in tables.items():
            if isinstance(key, str):
                if key not in labels:
                    raise ValueError(f"{what}: no unit subset labelled {key!r} in '{unit_subsets.name}'")
                row = labels.index(key)
            else:
                row = int(key)
                if not 0 <= row < len(labels):
                    raise ValueError(f"{what}: subset row {row} outside '{unit_subsets.name}' ({len(labels)} rows)")
            kwargs = dict(kwargs)
            for forbidden in ("unit_subsets", "unit_subset_rows", "name", "subset"):
                if forbidden in kwargs:
                    raise ValueError(f"{what}: do not pass {forbidden!r} per table; it is set from the subset")
            built.append(create_narrations(**kwargs, unit_subsets=unit_subsets, unit_subset_rows=row,
                                           name=table_name_for(labels[row]), subset=labels[row],
                                           description=f"narrations of unit subset {labels[row]!r}"))
    else:
        built = list(tables)
    seen = set()
    for table in built:
        if not isinstance(table, _ndx.NarrationsTable):
            raise ValueError(f"{what}: {table!r} is not a NarrationsTable")
        if table.name in seen:
            raise ValueError(f"{what}: two tables are named {table.name!r}")
        seen.add(table.name)
        start = np.asarray(table["start_time"].data, dtype=np.float64)
        stop = np.asarray(table["stop_time"].data, dtype=np.float64)
        if len(start) > 1 and (np.any(np.diff(start) < 0) or np.any(start[1:] < stop[:-1])):
            bad = int(np.argmax((np.diff(start) < 0) | (start[1:] < stop[:-1]))) + 1
            raise ValueError(
                f"{what}: table {table.name!r} has overlapping or unsorted windows (row {bad} starts at "
                f"{start[bad]} before row {bad - 1} ends at {stop[bad - 1]}); one table per subset, sorted by time"
            )
    with warnings.catch_warnings():
        # hdmf warns that each table's unit_subset region and the subsets table share no ancestor yet;
        # they do once the collection is added to the module next to the subsets table.
        warnings.filterwarnings("ignore", message="The linked table for DynamicTableRegion", category=UserWarning)
        return _ndx.NarrationsCollection(name=name, description=description, narrations_tables=built)


def _find_collection(obj):
    if isinstance(obj, NWBFile):
        if MODULE_NAME not in obj.processing:
            raise ValueError("narrations_dataframe: the file has no processing/neurrator module")
        obj = obj.processing[MODULE_NAME]
    if isinstance(obj, ProcessingModule):
        found = [c for c in obj.data_interfaces.values() if getattr(c, "neurodata_type", None) == "NarrationsCollection"]
        if not found:
            found = [c for c in obj.data_interfaces.values() if getattr(c, "neurodata_type", None) == "NarrationsTable"]
            if not found:
                raise ValueError(f"narrations_dataframe: module '{obj.name}' holds no narrations")
            return found
        return [t for c in found for t in c.narrations_tables.values()]
    if getattr(obj, "neurodata_type", None) == "NarrationsCollection":
        return list(obj.narrations_tables.values())
    if getattr(obj, "neurodata_type", None) == "NarrationsTable":
        return [obj]
    raise ValueError(f"narrations_dataframe: expected an NWBFile, ProcessingModule or narrations, got {type(obj).__name__}")


def narrations_dataframe(obj):
    """All narrations as one tidy pandas DataFrame, one row per (subset, window).

    ``obj`` is an NWBFile, its ``neurrator`` ProcessingModule, a ``NarrationsCollection`` or a single
    ``NarrationsTable`` (also the single-table layout of older files). Columns: ``table``, ``row`` (the
    row within that table: what ``SAEValidationTable.narration_row`` refers to), ``subset`` (the unit
    subset's label), ``subset_kind``, then the table's own columns (``start_time``, ``stop_time``, ``text``,
    ``frame``, ...). Works on files read with pynwb alone.
    """
    import pandas as pd

    frames = []
    for table in _find_collection(obj):
        df = table.to_dataframe(index=True)  # region columns come back as row indices
        region = table["unit_subset"]
        rows = np.asarray(region.data[:], dtype=np.int64)
        subsets = region.table
        labels = np.asarray([str(x) for x in subsets["label"][:]], dtype=object)
        kinds = np.asarray([str(x) for x in subsets["kind"][:]], dtype=object)
        out = pd.DataFrame({"table": table.name, "row": np.arange(len(df)), "subset": labels[rows],
                            "subset_kind": kinds[rows]})
        df = df.reset_index(drop=True)
        out = pd.concat([out, df.drop(columns=[c for c in ("id", "subset") if c in df.columns])], axis=1)
        out["unit_subset"] = rows
        frames.append(out)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


__all__ = ["COLLECTION_NAME", "table_name_for", "create_narrations_collection", "narrations_dataframe"]
