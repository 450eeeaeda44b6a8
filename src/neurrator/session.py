"""An opened NWB file -> `Session` (units, regions, cell types, movie presentations, frames, subject).

`read_session` takes an already opened `pynwb.NWBFile` (the pipeline or `load_session` opens it
through `neurrator.sources`), reads only the tables it needs (units, electrodes, subject, the
presentation table, stimulus templates, opto-tagging pulses) and copies them into numpy arrays, so the
file can be closed afterwards. Every problem a user can cause raises `NeurratorError(path, problem)`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.stimuli import Presentations
from neurrator.session_checks import (
    check_presentation_columns,
    check_spike_columns,
    check_unit_ids,
    names_the_file,
)

__all__ = [
    "ALLEN_QUALITY_FILTER",
    "Presentations",
    "Session",
    "Units",
    "load_session",
    "read_presentations",
    "read_session",
    "read_units",
]

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
_FRAME_COLUMNS = ("frame", "movie_frame_index", "frame_index")
_REPEAT_COLUMNS = ("movie_repeat", "repeat", "trial")


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


@dataclass(frozen=True)
class Session:
    """Everything neurrator needs from one recording session (see DEVELOPING.md)."""

    source: str
    path_label: str
    identifier: str
    session_id: str
    session_description: str
    session_start_time: datetime
    subject: dict[str, str]
    stimulus: str
    units: Units
    presentations: Presentations
    frames: np.ndarray | None
    frame_rate: float
    captions: list[str] | None
    opto: dict | None
    #: where the frames came from ("template:<name>", a file path, "registry:<name>", or "" when None)
    frames_source: str = ""
    #: units dropped by the quality filter / for having no spikes (ids)
    dropped_units: dict[str, np.ndarray] = field(default_factory=dict)
    #: the presentation table used, e.g. "intervals/natural_movie_one_presentations"
    presentation_table: str = ""
    #: all caption variants per movie frame (``caption_variants[f][0] == captions[f]``, the canonical one;
    #: then paraphrases), when the captions table has a ``variant`` column; else None
    caption_variants: list[list[str]] | None = None


# ---------------------------------------------------------------------------------------- helpers


def _col(table, name: str) -> np.ndarray:
    """Read a 1-D column fully into numpy (strings decoded to str)."""
    data = table[name].data
    arr = np.asarray(data[:] if hasattr(data, "shape") else data)
    if arr.dtype.kind in ("S", "O"):
        arr = np.asarray([v.decode() if isinstance(v, bytes) else ("" if v is None else str(v)) for v in arr])
    return arr


def _is_plain_column(table, name: str) -> bool:
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
        peak = _col(units, "peak_channel_id").astype(np.int64)
        eids = np.asarray(elec.id.data[:], dtype=np.int64)
        order = np.argsort(eids)
        pos = np.searchsorted(eids[order], peak)
        pos = np.minimum(pos, eids.size - 1)
        found = eids[order][pos] == peak
        row = np.where(found, order[pos], -1)
    if row is not None:
        ok = row >= 0
        if "location" in elec.colnames:
            loc = _col(elec, "location")
            region[ok] = loc[row[ok]]
        if "group_name" in elec.colnames:
            probe[ok] = _col(elec, "group_name")[row[ok]]
        elif "group" in elec.colnames:
            names = np.asarray([g.name for g in elec["group"].data[:]])
            probe[ok] = names[row[ok]]
        for c in ("probe_vertical_position", "rel_y", "y"):
            if c in elec.colnames:
                d = _col(elec, c).astype(np.float64)
                depth[ok] = d[row[ok]]
                break
    if "location" in units.colnames and _is_plain_column(units, "location"):
        loc = _col(units, "location")
        region = np.where(loc != "", loc, region)
    if "depth" in units.colnames and _is_plain_column(units, "depth"):
        depth = _col(units, "depth").astype(np.float64)
    region = np.asarray([r if r and r.strip() else "unknown" for r in region.astype(str)])
    return region, probe.astype(str), depth


def _passes_filter(metrics: dict[str, np.ndarray], n: int) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    for name, (op, value) in ALLEN_QUALITY_FILTER.items():
        if name not in metrics:
            continue
        col = metrics[name]
        if op == "==":
            labels = set(np.char.lower(col.astype(str)).tolist())
            if not labels <= _SORTER_LABELS:  # e.g. "Excellent"/"Fair": not the good/mua/noise vocabulary
                log.info("quality column uses labels %s, not good/mua/noise: not filtering on it", sorted(labels))
                continue
            keep &= np.char.lower(col.astype(str)) == value
        else:
            x = col.astype(np.float64)
            with np.errstate(invalid="ignore"):
                keep &= (x <= value) if op == "<=" else (x >= value)
    return keep


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
        if c in skip or not _is_plain_column(units, c):
            continue
        try:
            arr = _col(units, c)
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
        vals = _col(units, cell_col).astype(str)
        cell_type = np.where(np.char.strip(vals) != "", vals, "unknown")

    keep = _passes_filter(metrics, n) if quality_filter else np.ones(n, dtype=bool)
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


def _presentation_tables(nwbfile) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name, t in (nwbfile.intervals or {}).items():
        tables[f"intervals/{name}"] = t
    if nwbfile.trials is not None:
        tables.setdefault("intervals/trials", nwbfile.trials)
    return tables


def read_presentations(nwbfile, *, stimulus: str, label: str, kind: str | None = None
                       ) -> tuple[Presentations, str]:
    """Find and read the presentation table of ``stimulus`` (of stimulus kind ``kind``, default by name:
    `neurrator.stimuli.stimulus_kind`; natural_scenes is ``flashed_images``, blanks dropped, repeat =
    the image's occurrence count).

    Looks for ``intervals/<stimulus>_presentations`` first, then any interval table with a
    ``stimulus_name`` column containing ``stimulus``. Frame column: ``frame`` (Allen Visual Coding) or
    ``movie_frame_index`` (Visual Behavior); repeats from ``movie_repeat``/``repeat`` when present, else
    counted from frame-index resets in time order.
    """
    tables = _presentation_tables(nwbfile)
    table, tname, rows = None, "", None
    key = f"intervals/{stimulus}_presentations"
    if key in tables:
        table, tname = tables[key], key
    else:
        for name, t in tables.items():
            if "stimulus_name" in t.colnames and any(c in t.colnames for c in _FRAME_COLUMNS):
                names = _col(t, "stimulus_name")
                hit = names == stimulus
                if hit.any():
                    table, tname, rows = t, name, np.flatnonzero(hit)
                    break
    if table is None:
        have = sorted(n.split("/", 1)[1] for n in tables) or ["none"]
        raise NeurratorError(
            label,
            f"no presentation table for stimulus '{stimulus}' (expected intervals/{stimulus}_presentations); "
            f"interval tables in the file: {', '.join(have)}",
        )
    fcol = next((c for c in _FRAME_COLUMNS if c in table.colnames), None)
    if fcol is None:
        raise NeurratorError(label, f"{tname} has no frame column (looked for {', '.join(_FRAME_COLUMNS)})")
    start = _col(table, "start_time").astype(np.float64)
    stop = _col(table, "stop_time").astype(np.float64)
    frame_f = _col(table, fcol).astype(np.float64)
    rcol = next((c for c in _REPEAT_COLUMNS if c in table.colnames and _is_plain_column(table, c)), None)
    rep = _col(table, rcol).astype(np.float64) if rcol else None
    if rows is not None:
        start, stop, frame_f = start[rows], stop[rows], frame_f[rows]
        rep = rep[rows] if rep is not None else None
    if start.size == 0:
        raise NeurratorError(label, f"{tname} has no rows for stimulus '{stimulus}'")
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(stop))):
        raise NeurratorError(label, f"{tname} has non-finite start/stop times")
    bad = np.flatnonzero(stop < start)
    if bad.size:
        raise NeurratorError(
            label, f"{tname} row {int(bad[0])}: stop_time {stop[bad[0]]:g} is before start_time {start[bad[0]]:g}"
        )
    if not np.all(np.isfinite(frame_f)) or np.any(frame_f != np.round(frame_f)):
        raise NeurratorError(label, f"{tname}.{fcol} has non-integer frame indices")
    from neurrator.stimuli import stimulus_kind

    stim_kind = stimulus_kind(stimulus, kind=kind)
    negative = (frame_f < 0) & ~np.isin(frame_f, stim_kind.blank_values)
    if np.any(negative):
        raise NeurratorError(label, f"{tname}.{fcol} has negative frame indices ({int(frame_f[negative].min())})")
    # the stimulus kind owns blanks, what a repeat is and the order (neurrator.stimuli)
    return stim_kind.presentations(start, stop, frame_f.astype(np.int64), rep, label=label), tname


def _read_captions(nwbfile, stimulus: str, n_frames: int | None
                   ) -> tuple[list[str] | None, list[list[str]] | None]:
    """(canonical caption per frame, all variants per frame) from ``processing/*/<stimulus>_captions``.

    Columns ``caption`` and optionally ``frame`` and ``variant`` (one row per frame and variant, variant
    0 canonical; each frame's variants are returned in variant order). Without a ``variant`` column a
    frame's last row is its caption and the variants are None.
    """
    name = f"{stimulus}_captions"
    for mod in (nwbfile.processing or {}).values():
        if name in mod.data_interfaces:
            t = mod[name]
            if "caption" not in t.colnames:
                return None, None
            caps = _col(t, "caption").astype(str)
            frame = _col(t, "frame").astype(np.int64) if "frame" in t.colnames else np.arange(caps.size)
            n = int(frame.max()) + 1 if frame.size else 0
            if "variant" not in t.colnames:
                out = [""] * n
                for f, c in zip(frame.tolist(), caps.tolist(), strict=True):
                    out[f] = c
                return out, None
            variant = _col(t, "variant").astype(np.int64)
            variants: list[list[str]] = [[] for _ in range(n)]
            for i in np.lexsort((variant, frame)).tolist():
                variants[frame[i]].append(str(caps[i]))
            return [v[0] if v else "" for v in variants], variants
    return None, None


def _subject(nwbfile) -> dict[str, str]:
    s = nwbfile.subject
    if s is None:
        return {}
    out = {}
    for k in ("subject_id", "species", "sex", "age", "genotype", "strain", "description", "date_of_birth"):
        v = getattr(s, k, None)
        if v is None:
            continue
        v = v.isoformat() if hasattr(v, "isoformat") else str(v)
        if v.strip():
            out[k] = v
    return out


def _safe_session_id(nwbfile) -> str:
    sid = nwbfile.session_id or nwbfile.identifier or "session"
    return re.sub(r"[^A-Za-z0-9-]+", "-", str(sid)).strip("-") or "session"


@names_the_file
def read_session(
    nwbfile,
    *,
    source: str,
    stimulus: str = "natural_movie_one",
    movie: str | Path | np.ndarray | None = None,
    quality_filter: bool = True,
    path_label: str | None = None,
    fetch_movie: bool = True,
    movie_cache_dir: str | Path | None = None,
    opto_tagging: bool = True,
) -> Session:
    """Read a `Session` from an opened NWB file.

    Parameters
    ----------
    nwbfile
        An opened `pynwb.NWBFile`.
    source
        What the user passed (path, URL, ``dandi://...``); kept in the Session.
    stimulus
        Movie stimulus name; its presentation table must exist.
    movie
        Frames when the file has no stimulus template: an (F, H, W) uint8 array or a file
        (see `neurrator.movies.load_movie_file`).
    quality_filter
        Apply the Allen default unit filter (`ALLEN_QUALITY_FILTER`) where the columns exist.
    path_label
        Name used in error messages (default: ``source``).
    fetch_movie
        For the known Allen movies without a template or ``movie``, fetch the frames from the
        registry (`neurrator.movies.KNOWN_MOVIES`); False leaves ``frames`` None.
    movie_cache_dir
        Cache folder for registry downloads.
    opto_tagging
        Classify units by their response to opto-tagging pulses when the file has them and the
        genotype names a known Cre line (only units without a cell-type column value are labelled).

    Raises
    ------
    NeurratorError
        No Units table, bad spike times, no presentation table for ``stimulus`` (the message lists the
        tables that exist), stop before start, frames inconsistent with the presentations.
    """
    from neurrator import movies, optotagging

    label = path_label or str(source)
    units, dropped = read_units(nwbfile, label=label, quality_filter=quality_filter)
    pres, tname = read_presentations(nwbfile, stimulus=stimulus, label=label)
    ptable = _presentation_tables(nwbfile).get(tname)
    if ptable is not None:  # numbers, not strings (read_presentations converts what it can)
        check_presentation_columns(ptable, tname=tname, frame_columns=_FRAME_COLUMNS, label=label)

    frames, frames_source, template_rate = movies.resolve_frames(
        nwbfile, stimulus=stimulus, movie=movie, label=label, fetch=fetch_movie, cache_dir=movie_cache_dir
    )
    if frames is not None:
        movies.check_frames(frames, pres.frame, label=label, frames_source=frames_source)
    if template_rate:
        frame_rate = float(template_rate)
    else:
        med = float(np.median(pres.stop - pres.start)) if len(pres) else 0.0
        frame_rate = round(1.0 / med, 2) if med > 0 else float("nan")
    captions, caption_variants = _read_captions(nwbfile, stimulus, None if frames is None else frames.shape[0])

    opto = None
    if opto_tagging:
        opto = optotagging.tag_session_units(nwbfile, units, label=label)
        if opto is not None and opto.get("cell_type"):
            tagged = np.isin(units.ids, opto["tagged_ids"])
            fill = tagged & (units.cell_type == "unknown")
            if fill.any():
                ct = units.cell_type.astype(object)
                ct[fill] = opto["cell_type"]
                units = dataclasses.replace(units, cell_type=ct.astype(str))

    return Session(
        source=str(source),
        path_label=label,
        identifier=str(nwbfile.identifier),
        session_id=_safe_session_id(nwbfile),
        session_description=str(nwbfile.session_description or ""),
        session_start_time=nwbfile.session_start_time,
        subject=_subject(nwbfile),
        stimulus=stimulus,
        units=units,
        presentations=pres,
        frames=frames,
        frame_rate=frame_rate,
        captions=captions,
        opto=opto,
        frames_source=frames_source,
        dropped_units=dropped,
        presentation_table=tname,
        caption_variants=caption_variants,
    )


def load_session(
    source: str | Path,
    *,
    cache_dir: str | Path | None = None,
    api_url: str | None = None,
    retries: int = 4,
    backoff: float = 0.25,
    **kwargs,
) -> Session:
    """Open ``source`` (path, https URL or ``dandi://``) with `neurrator.sources.open_source` and read it.

    ``cache_dir``/``api_url``/``retries``/``backoff`` go to `open_source`; other keyword arguments to
    `read_session`. The arrays are copied out; the file is closed on return.

    Examples
    --------
    >>> s = load_session("sim.nwb")  # doctest: +SKIP
    >>> s.units.ids.shape, s.presentations.frame.shape  # doctest: +SKIP
    """
    from neurrator.sources import open_source, source_label

    movie_cache = kwargs.pop("movie_cache_dir", None)
    if movie_cache is None and cache_dir is not None:
        movie_cache = Path(cache_dir) / "movies"
    with open_source(str(source), cache_dir=cache_dir, api_url=api_url, retries=retries, backoff=backoff) as nwbfile:
        return read_session(
            nwbfile, source=str(source), path_label=source_label(str(source)), movie_cache_dir=movie_cache, **kwargs
        )
