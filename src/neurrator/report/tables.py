"""A derived file -> every results table for pynapple: the units as a ``TsGroup`` keyed by unit id, each
subset's narrations as an ``IntervalSet`` spanning its decoding windows, the other tables as DataFrames.

``nap.load_file`` on a derived file gives the units, the stimulus epochs and one IntervalSet per narration
table; the results tables (fidelity, per-unit neurration, tuning, groups, scaling, SAE validation) are plain
DynamicTables that pynapple does not convert. `to_pynapple` gives them all, read through the same checked
reader as the report (`neurrator.report.data.read_derived`), with unit-indexed tables keyed by unit id and
every reference to a unit subset as its label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurrator.data.binning import disjoint_spans
from neurrator.errors import NeurratorError
from neurrator.io.limits import check_array_size
from neurrator.report.data import DerivedFile, open_nwb, read_derived

__all__ = ["NARRATION_COLUMNS", "to_pynapple", "unit_id_tables"]

#: The narration columns kept as IntervalSet metadata (besides ``start``/``end``).
NARRATION_COLUMNS = ("subset", "subset_kind", "frame", "text", "reference_text", "similarity", "narrator_model")


def unit_id_tables(data: DerivedFile) -> dict[str, pd.DataFrame]:
    """The results tables of ``data`` as DataFrames a person can join: ``unit_neurration`` indexed by
    ``unit_id``, ``concept_tuning`` with a ``unit_id`` column (one row per unit and concept), ``subsets``
    with their members' ``unit_ids``, and every ``unit_subset`` row number replaced by the subset's label
    (``subset``) and kind (``subset_kind``). Tables the file lacks are absent."""
    ids = np.asarray(data.units.index if data.units is not None else [], dtype=np.int64)

    def to_id(rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return ids[rows] if len(ids) else rows

    out: dict[str, pd.DataFrame] = {}
    for name in data:
        if name in ("units", "narrations"):
            continue
        df = data[name].drop(columns=[c for c in ("id", "index") if c in data[name].columns])  # table row ids
        if "unit" in df.columns:
            df.insert(0, "unit_id", to_id(df["unit"]))
            df = df.drop(columns=["unit"])
        if "unit_subset" in df.columns:
            df = _labelled(df.drop(columns=["unit_subset"]))
        if name == "subsets":
            df["unit_ids"] = [to_id(rows).tolist() for rows in df["units"]]
            df = df.drop(columns=["units"]).set_index("label")
        if name == "unit_neurration":
            df = df.set_index("unit_id")
        out[name] = df
    return out


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    """``label``/``kind`` (the subset's, resolved by `read_derived`) as ``subset``/``subset_kind``, replacing the
    plain-text ``subset`` column a NarrationsTable may carry (the same label)."""
    return df.drop(columns=[c for c in ("subset", "subset_kind") if c in df.columns]).rename(
        columns={"label": "subset", "kind": "subset_kind"})


def _narration_sets(narrations: pd.DataFrame) -> dict[str, Any]:
    """One IntervalSet per unit subset (its label), the narration's text and scores as metadata; intervals
    that overlap (a file whose narrations are closer than their windows) meet at the middle of the overlap,
    so that pynapple keeps one interval, and its metadata, per narration."""
    import pynapple as nap

    df = _labelled(narrations)
    sets = {}
    for label, part in df.groupby("subset", sort=False):
        part = part.sort_values("start_time")
        meta = {c: part[c].to_numpy() for c in NARRATION_COLUMNS if c in part.columns}
        start, end = disjoint_spans(part["start_time"].to_numpy(), part["stop_time"].to_numpy())
        end[:-1] = np.minimum(end[:-1], start[1:] - 1e-6)  # pynapple's time precision: touching is overlapping
        sets[str(label)] = nap.IntervalSet(start=start, end=end, metadata=meta)
    return sets


def _units_group(path: Path, units: pd.DataFrame) -> Any:
    """The Units table as a TsGroup keyed by unit id, its annotations (region, cell type, metrics) as metadata."""
    import pynapple as nap

    io, nwbfile = open_nwb(path)
    try:
        table = nwbfile.units
        if table is None or "spike_times" not in table.colnames:
            return None
        times = table["spike_times"]
        check_array_size(*((tuple(times.target.data.shape), times.target.data.dtype.itemsize)), label=str(path),
                         what="Units spike_times")
        flat = np.asarray(times.target.data[:], dtype=np.float64)
        ends = np.asarray(times.data[:], dtype=np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        if len(ends) != len(units) or (len(ends) and (ends[-1] > len(flat) or np.any(np.diff(ends) < 0))):
            raise NeurratorError(path, "the Units table's spike_times index does not match its rows")
        ids = np.asarray(units.index, dtype=np.int64)
        group = {int(u): nap.Ts(t=flat[s:e]) for u, s, e in zip(ids, starts, ends)}
    finally:
        io.close()
    meta = units.drop(columns=[c for c in units.columns if c.startswith("_")])
    meta = meta[[c for c in meta.columns if meta[c].map(np.isscalar).all()]]
    meta = meta.rename(columns={c: f"{c}_" for c in meta.columns if c in ("rate", "start", "end")})
    return nap.TsGroup(group, metadata=meta.set_axis(ids))


def to_pynapple(path: str | Path) -> dict[str, Any]:
    """Every results table of a derived neurrator file, for pynapple.

    Parameters
    ----------
    path
        A derived file written by ``neurrator narrate`` / ``demo``.

    Returns
    -------
    dict
        ``"units"``: ``nap.TsGroup`` keyed by unit id (region, cell type and quality metrics as metadata);
        ``"narrations"``: subset label -> ``nap.IntervalSet``, one interval per narration spanning the
        decoding window it was narrated from (text, frame, reference and similarity as metadata); and a
        ``pandas.DataFrame`` per results table of the file (`unit_id_tables`): ``subsets`` (by label, with
        the members' unit ids), ``fidelity``, ``unit_neurration`` (indexed by unit id), ``concept_tuning``,
        ``group_comparison``, ``group_separation``, ``scaling``, ``sae_validation``.

    Examples
    --------
    >>> tables = nr.to_pynapple("derived/sub-sim0/sub-sim0_ses-sim0_desc-neurrator.nwb")  # doctest: +SKIP
    >>> tables["narrations"]["all"]["text"][:2]                                            # doctest: +SKIP
    """
    try:
        import pynapple  # noqa: F401 - fail early with the fix
    except ImportError as err:
        raise ImportError("neurrator.to_pynapple needs pynapple: pip install 'neurrator[pynapple]'") from err
    path = Path(path)
    data = read_derived(path)
    out: dict[str, Any] = {}
    if data.units is not None:
        group = _units_group(path, data.units)
        if group is not None:
            out["units"] = group
    if data.narrations is not None:
        out["narrations"] = _narration_sets(data.narrations)
    out.update(unit_id_tables(data))
    return out
