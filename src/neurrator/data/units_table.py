"""The Units table of an opened NWB file -> `Units` (sorted spike times, regions, probes, depths, cell types).

`read_units` copies the spike times, the electrode regions, probes and depths, the cell-type column and
the quality metrics into numpy arrays, applies AllenSDK's default unit filter (`ALLEN_QUALITY_FILTER`)
where its columns exist, and drops units without spikes. Problems raise `NeurratorError(path, problem)`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.data.session_checks import check_spike_columns, check_unit_ids

__all__ = ["ALLEN_QUALITY_FILTER", "Units", "is_plain_column", "read_column", "read_units"]

log = logging.getLogger(__name__)

#: AllenSDK's default unit filter; each condition applies when its column exists (``quality`` only when it
#: uses the good/mua/noise labels of Allen and Kilosort/phy curation). NaN metrics fail the filter.
ALLEN_QUALITY_FILTER = {
    "amplitude_cutoff": ("<=", 0.1),
    "presence_ratio": (">=", 0.95),
    "isi_violations": ("<=", 0.5),
    "quality": ("==", "good"),
}
#: the quality labels of Allen/Kilosort/phy curation; other vocabularies are not filtered on
_SORTER_LABELS = {"good", "mua", "noise", ""}
_CELL_TYPE_COLUMNS = ("cell_type", "celltype", "cell_class", "cell_type_label", "putative_cell_type")


@dataclass(frozen=True)
class Units:
    """Sorted spike times and per-unit annotations (see DEVELOPING.md)."""

    ids: np.ndarray  # (N,) int64
    spike_times: np.ndarray  # (S,) float64, concatenated, each unit's block sorted
    offsets: np.ndarray  # (N+1,) int64
    region: np.ndarray  # (N,) str
    cell_type: np.ndarray  # (N,) str
    probe: np.ndarray  # (N,) str
    depth: np.ndarray  # (N,) float64
    metrics: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.ids.size)

    def spikes(self, i: int) -> np.ndarray:
        """Sorted spike times of the unit in row ``i``."""
        return self.spike_times[self.offsets[i] : self.offsets[i + 1]]

    def n_spikes(self) -> np.ndarray:
        """(N,) int64 spike count per unit."""
        return np.diff(self.offsets)


# ---------------------------------------------------------------------------------------- helpers


def read_column(table, name: str) -> np.ndarray:
    """Read a 1-D column fully into numpy (strings decoded to str)."""
    data = table[name].data
    arr = np.asarray(data[:] if hasattr(data, "shape") else data)
    if arr.dtype.kind in ("S", "O"):
        arr = np.asarray([v.decode() if isinstance(v, bytes) else ("" if v is None else str(v)) for v in arr])
    return arr


def is_plain_column(table, name: str) -> bool:
    from hdmf.common import DynamicTableRegion, VectorIndex

    col = table[name]
    if isinstance(col, (VectorIndex, DynamicTableRegion)):
        return False
    shape = getattr(col.data, "shape", None)
    if shape is None:
        try:
            shape = np.shape(col.data)
        except Exception:  # noqa: BLE001 - anything odd is not a plain column
            return False
    return len(shape) == 1


def _spike_arrays(units, label: str) -> tuple[np.ndarray, np.ndarray]:
    if "spike_times" not in units.colnames:
        raise NeurratorError(label, "the Units table has no spike_times column")
    check_spike_columns(units, label=label)  # numbers, not strings: checked before reading
    idx = units["spike_times"]
    from hdmf.common import VectorIndex

    if isinstance(idx, VectorIndex):
        ends = np.asarray(idx.data[:], dtype=np.int64)
        times = np.asarray(idx.target.data[:], dtype=np.float64)
    else:  # a non-ragged column (one spike per unit): unusual but legal
        times = np.asarray(idx.data[:], dtype=np.float64).ravel()
        ends = np.arange(1, times.size + 1, dtype=np.int64)
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    if offsets[-1] > times.size or np.any(np.diff(offsets) < 0):
        raise NeurratorError(label, "the Units spike_times index is inconsistent with its data (corrupt file?)")
    return times, offsets


def _check_spikes(times: np.ndarray, offsets: np.ndarray, ids: np.ndarray, label: str) -> None:
    """Raise on NaN/inf, negative or unsorted spike times (naming the first bad unit)."""

    def unit_of(pos: int) -> int:
        return int(ids[np.searchsorted(offsets, pos, side="right") - 1])

    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise NeurratorError(label, f"unit {unit_of(bad[0])} has non-finite (NaN or inf) spike times")
    bad = np.flatnonzero(times < 0)
    if bad.size:
        raise NeurratorError(label, f"unit {unit_of(bad[0])} has negative spike times ({times[bad[0]]:g} s)")
    if times.size > 1:
        dec = np.flatnonzero(np.diff(times) < 0) + 1  # positions where time decreases
        starts = np.zeros(times.size, dtype=bool)
        starts[offsets[:-1][offsets[:-1] < times.size]] = True
        dec = dec[~starts[dec]]
        if dec.size:
            raise NeurratorError(label, f"unit {unit_of(dec[0])} has unsorted spike times")


def _regions_and_probes(nwbfile, units, n: int, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region, probe and depth per unit row of the full table."""
    region = np.full(n, "unknown", dtype=object)
    probe = np.full(n, "", dtype=object)
    depth = np.full(n, np.nan)
    elec = nwbfile.electrodes
    row = None  # electrode table row per unit
    if "electrodes" in units.colnames and elec is not None and len(elec):
        idx = units["electrodes"]
        ends = np.asarray(idx.data[:], dtype=np.int64)
        flat = np.asarray(idx.target.data[:], dtype=np.int64)
        firsts = np.concatenate([[0], ends[:-1]])
        row = np.where(ends > firsts, flat[np.minimum(firsts, max(flat.size - 1, 0))], -1) if flat.size else None
    elif "peak_channel_id" in units.colnames and elec is not None and len(elec):
        peak = read_column(units, "peak_channel_id").astype(np.int64)
        eids = np.asarray(elec.id.data[:], dtype=np.int64)
        order = np.argsort(eids)
        pos = np.searchsorted(eids[order], peak)
        pos = np.minimum(pos, eids.size - 1)
        found = eids[order][pos] == peak
        row = np.where(found, order[pos], -1)
    if row is not None:
        ok = row >= 0
        if "location" in elec.colnames:
            loc = read_column(elec, "location")
            region[ok] = loc[row[ok]]
        if "group_name" in elec.colnames:
            probe[ok] = read_column(elec, "group_name")[row[ok]]
        elif "group" in elec.colnames:
            names = np.asarray([g.name for g in elec["group"].data[:]])
            probe[ok] = names[row[ok]]
        for c in ("probe_vertical_position", "rel_y", "y"):
            if c in elec.colnames:
                d = read_column(elec, c).astype(np.float64)
                depth[ok] = d[row[ok]]
                break
    if "location" in units.colnames and is_plain_column(units, "location"):
        loc = read_column(units, "location")
        region = np.where(loc != "", loc, region)
    if "depth" in units.colnames and is_plain_column(units, "depth"):
        depth = read_column(units, "depth").astype(np.float64)
    region = np.asarray([r if r and r.strip() else "unknown" for r in region.astype(str)])
    return region, probe.astype(str), depth


def _filter_failures(metrics: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Criterion (e.g. ``"isi_violations > 0.5"``) -> (n,) bool, the units that fail it (NaN fails)."""
    failures: dict[str, np.ndarray] = {}
    for name, (op, value) in ALLEN_QUALITY_FILTER.items():
        if name not in metrics:
            continue
        col = metrics[name]
        if op == "==":
            labels = set(np.char.lower(col.astype(str)).tolist())
            if not labels <= _SORTER_LABELS:  # e.g. "Excellent"/"Fair": not the good/mua/noise vocabulary
                log.info("quality column uses labels %s, not good/mua/noise: not filtering on it", sorted(labels))
                continue
            failures[f"{name} != {value}"] = np.char.lower(col.astype(str)) != value
        else:
            x = col.astype(np.float64)
            with np.errstate(invalid="ignore"):
                ok = (x <= value) if op == "<=" else (x >= value)
            failures[f"{name} {'>' if op == '<=' else '<'} {value} or NaN"] = ~ok
    return failures


def _describe_exclusions(failures: dict[str, np.ndarray], n: int) -> str:
    """One line accounting for every unit the quality filter excludes, with the count per failed criterion
    (a unit failing several counts under each), e.g.
    ``"the quality filter excludes 37 of 300 units: isi_violations > 0.5 or NaN 20, ..."``."""
    if not failures:
        return f"the quality filter excludes none of {n} units (none of its columns is in the file)"
    bad = np.logical_or.reduce(list(failures.values()))
    if not bad.any():
        return f"the quality filter excludes none of {n} units"
    parts = [f"{why}: {int(fail.sum())}" for why, fail in failures.items() if fail.any()]
    several = int((np.sum(list(failures.values()), axis=0) > 1).sum())
    note = f" ({several} fail several)" if several else ""
    return f"the quality filter excludes {int(bad.sum())} of {n} units{note}; " + ", ".join(parts)


def read_units(nwbfile, *, label: str, quality_filter: bool = True) -> tuple[Units, dict[str, np.ndarray]]:
    """Read the Units table: checked spike times, regions, probes, depths, metrics, cell-type column.

    Returns the `Units` (quality-filtered, empty units dropped with a warning) and the ids dropped,
    ``{"quality": ..., "no_spikes": ...}``. Spike times of the units kept must be finite, >= 0 and
    sorted per unit (else NeurratorError naming the unit). ``cell_type`` holds the file's cell-type column or
    "unknown"; opto-tagging is applied by `read_session`.
    """
    units = nwbfile.units
    if units is None:
        raise NeurratorError(label, "no Units table (nwbfile.units is missing); neurrator needs sorted spikes")
    n = len(units)
    if n == 0:
        raise NeurratorError(label, "the Units table is empty")
    ids = check_unit_ids(units, label=label)  # at most MAX_UNITS rows, integers, unique
    times, offsets = _spike_arrays(units, label)
    skip = {"spike_times", "electrodes", "location", "depth", "electrode_group", "group"}
    metrics: dict[str, np.ndarray] = {}
    cell_col = None
    for c in units.colnames:
        if c in skip or not is_plain_column(units, c):
            continue
        try:
            arr = read_column(units, c)
        except Exception:  # noqa: BLE001 - columns of object references etc. are not metrics
            continue
        if arr.shape != (n,):
            continue
        if c in _CELL_TYPE_COLUMNS:
            cell_col = cell_col or c
            continue
        if arr.dtype.kind in "biufU":
            metrics[c] = arr
    region, probe, depth = _regions_and_probes(nwbfile, units, n, label)
    cell_type = np.full(n, "unknown", dtype=object)
    if cell_col is not None:
        vals = read_column(units, cell_col).astype(str)
        cell_type = np.where(np.char.strip(vals) != "", vals, "unknown")

    keep = np.ones(n, dtype=bool)
    if quality_filter:
        failures = _filter_failures(metrics, n)
        keep = ~np.logical_or.reduce([np.zeros(n, dtype=bool), *failures.values()])
        log.info("%s: %s", label, _describe_exclusions(failures, n))
        for row in np.flatnonzero(~keep):  # --debug: each unit and what it failed
            log.debug("%s: unit %d excluded (%s)", label, ids[row], ", ".join(w for w, f in failures.items() if f[row]))
    n_spk = np.diff(offsets)
    empty = keep & (n_spk == 0)
    if empty.any():
        msg = f"{label}: skipping {int(empty.sum())} unit(s) without spikes (ids {ids[empty][:10].tolist()})"
        warnings.warn(msg, stacklevel=3)
        log.warning(msg)
    dropped = {"quality": ids[~keep], "no_spikes": ids[empty]}
    keep &= n_spk > 0
    if not keep.any():
        why = "after the Allen quality filter (pass quality_filter=False to keep all)" if quality_filter else ""
        raise NeurratorError(label, f"no units with spikes remain {why}".strip())
    rows = np.flatnonzero(keep)
    lens = n_spk[rows]
    new_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    if rows.size == n:
        new_times = times[: offsets[-1]].copy()
    else:
        sel = np.repeat(offsets[rows] - new_off[:-1], lens) + np.arange(new_off[-1])
        new_times = times[sel]
    _check_spikes(new_times, new_off, ids[rows], label)
    return (
        Units(
            ids=ids[rows],
            spike_times=new_times,
            offsets=new_off,
            region=np.asarray(region[rows], dtype=str),
            cell_type=np.asarray(cell_type[rows], dtype=str),
            probe=np.asarray(probe[rows], dtype=str),
            depth=np.asarray(depth[rows], dtype=np.float64),
            metrics={k: v[rows] for k, v in metrics.items()},
        ),
        dropped,
    )
