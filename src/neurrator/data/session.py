"""An opened NWB file -> `Session` (units, regions, cell types, movie presentations, frames, subject).

`read_session` takes an already opened `pynwb.NWBFile` (the pipeline or `load_session` opens it
through `neurrator.io.sources`), reads only the tables it needs (units, electrodes, subject, the
presentation table, stimulus templates, opto-tagging pulses) and copies them into numpy arrays, so the
file can be closed afterwards. Every problem a user can cause raises `NeurratorError(path, problem)`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.data.session_checks import check_presentation_columns, names_the_file
from neurrator.data.stimuli import Presentations
from neurrator.data.units_table import (
    ALLEN_QUALITY_FILTER,
    Units,
    is_plain_column,
    read_column,
    read_units,
)
from neurrator.data import optotagging
from neurrator.data.stimuli import STIMULUS_KINDS, stimulus_kind
from neurrator.io import movies
from neurrator.io.httpfile import DEFAULT_TIMEOUT_S
from neurrator.io.sources import open_source, source_label

__all__ = [
    "ALLEN_QUALITY_FILTER",
    "Presentations",
    "Session",
    "Units",
    "file_ids",
    "load_session",
    "read_presentations",
    "read_session",
    "read_units",
]

log = logging.getLogger(__name__)

_FRAME_COLUMNS = ("frame", "movie_frame_index", "frame_index")
_REPEAT_COLUMNS = ("movie_repeat", "repeat", "trial")


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
    frames: np.ndarray | None  # (F, H, W) uint8, or (F, H, W, 3) for a colour template (colour kept)
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
    #: the terms the captions are written in (``processing/*/<stimulus>_caption_terms``, column ``term``),
    #: to which concept names are restricted; None when the file names none (an open vocabulary)
    caption_vocabulary: list[str] | None = None


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
    `neurrator.data.stimuli.stimulus_kind`; natural_scenes is ``flashed_images``, blanks dropped, repeat =
    the image's occurrence count).

    Looks for ``intervals/<stimulus>_presentations`` first, then ``intervals/<stimulus>`` (any table name,
    e.g. a lab's own ``flashes``), then any interval table with a ``stimulus_name`` column containing
    ``stimulus``. Frame column: ``frame`` (Allen Visual Coding) or ``movie_frame_index`` (Visual Behavior);
    repeats from ``movie_repeat``/``repeat`` when present, else counted from frame-index resets in time
    order. Without ``kind``, a stimulus name `neurrator.data.stimuli.KNOWN_STIMULI` does not list takes its
    kind from the table's layout (`neurrator.data.stimuli.kind_from_layout`); the returned
    presentations carry it (``Presentations.kind``).
    """
    tables = _presentation_tables(nwbfile)
    table, tname, rows = None, "", None
    key = f"intervals/{stimulus}_presentations"
    if key in tables:
        table, tname = tables[key], key
    elif f"intervals/{stimulus}" in tables and any(c in tables[f"intervals/{stimulus}"].colnames
                                                    for c in _FRAME_COLUMNS):
        tname = f"intervals/{stimulus}"
        table = tables[tname]
    else:
        for name, t in tables.items():
            if "stimulus_name" in t.colnames and any(c in t.colnames for c in _FRAME_COLUMNS):
                names = read_column(t, "stimulus_name")
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
    start = read_column(table, "start_time").astype(np.float64)
    stop = read_column(table, "stop_time").astype(np.float64)
    frame_f = read_column(table, fcol).astype(np.float64)
    rcol = next((c for c in _REPEAT_COLUMNS if c in table.colnames and is_plain_column(table, c)), None)
    rep = read_column(table, rcol).astype(np.float64) if rcol else None
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

    stim_kind = stimulus_kind(stimulus, kind=kind, frame=frame_f, start=start)
    negative = (frame_f < 0) & ~np.isin(frame_f, stim_kind.blank_values)
    if np.any(negative):
        hint = ("; -1 marks the blanks of flashed images: --stimulus-kind flashed_images"
                if np.all(frame_f[negative] == -1) else "")
        raise NeurratorError(label, f"{tname}.{fcol} has negative frame indices ({int(frame_f[negative].min())}){hint}")
    # the stimulus kind owns blanks, what a repeat is and the order (neurrator.data.stimuli)
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
            caps = read_column(t, "caption").astype(str)
            frame = read_column(t, "frame").astype(np.int64) if "frame" in t.colnames else np.arange(caps.size)
            n = int(frame.max()) + 1 if frame.size else 0
            if "variant" not in t.colnames:
                out = [""] * n
                for f, c in zip(frame.tolist(), caps.tolist(), strict=True):
                    out[f] = c
                return out, None
            variant = read_column(t, "variant").astype(np.int64)
            variants: list[list[str]] = [[] for _ in range(n)]
            for i in np.lexsort((variant, frame)).tolist():
                variants[frame[i]].append(str(caps[i]))
            return [v[0] if v else "" for v in variants], variants
    return None, None


def _read_caption_terms(nwbfile, stimulus: str) -> list[str] | None:
    """The captions' vocabulary from ``processing/*/<stimulus>_caption_terms`` (column ``term``), or None."""
    name = f"{stimulus}_caption_terms"
    for mod in (nwbfile.processing or {}).values():
        if name in mod.data_interfaces and "term" in mod[name].colnames:
            terms = [str(t) for t in read_column(mod[name], "term").astype(str) if str(t)]
            return terms or None
    return None


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


def file_ids(nwbfile) -> tuple[str, str]:
    """An opened NWB file -> (subject_id, session_id) as `read_session` puts them in the `Session` ("" when the
    file has no subject id), read without touching the data: the derived file's name is checked before any work."""
    return _subject(nwbfile).get("subject_id", ""), _safe_session_id(nwbfile)


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
    timeout: float | None = None,
    kind: str | None = None,
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
        (see `neurrator.io.movies.load_movie_file`).
    quality_filter
        Apply the Allen default unit filter (`ALLEN_QUALITY_FILTER`) where the columns exist.
    path_label
        Name used in error messages (default: ``source``).
    fetch_movie
        For the known Allen movies without a template or ``movie``, fetch the frames from the
        registry (`neurrator.io.movies.KNOWN_MOVIES`); False leaves ``frames`` None.
    movie_cache_dir
        Cache folder for registry downloads.
    timeout
        Seconds to wait for a server (registry downloads); default `neurrator.io.httpfile.DEFAULT_TIMEOUT_S`.
    opto_tagging
        Classify units by their response to opto-tagging pulses when the file has them and the
        genotype names a known Cre line (only units without a cell-type column value are labelled).
    kind
        The stimulus kind (`neurrator.data.stimuli.STIMULUS_KINDS`); None: by name, else the table's layout.

    Raises
    ------
    NeurratorError
        No Units table, bad spike times, no presentation table for ``stimulus`` (the message lists the
        tables that exist), stop before start, frames inconsistent with the presentations.
    """
    label = path_label or str(source)
    units, dropped = read_units(nwbfile, label=label, quality_filter=quality_filter)
    pres, tname = read_presentations(nwbfile, stimulus=stimulus, label=label, kind=kind)
    ptable = _presentation_tables(nwbfile).get(tname)
    if ptable is not None:  # numbers, not strings (read_presentations converts what it can)
        check_presentation_columns(ptable, tname=tname, frame_columns=_FRAME_COLUMNS, label=label)

    frames, frames_source, template_rate = movies.resolve_frames(
        nwbfile, stimulus=stimulus, movie=movie, label=label, fetch=fetch_movie, cache_dir=movie_cache_dir,
        timeout=timeout,
    )
    if frames is not None:
        movies.check_frames(frames, pres.frame, label=label, frames_source=frames_source)
        if template_rate and not frames_source.startswith("template:") and STIMULUS_KINDS[pres.kind].continuous:
            movies.check_frame_rate(template_rate, pres.start, pres.stop, label=frames_source)  # a video file
    if template_rate:
        frame_rate = float(template_rate)
    else:
        med = float(np.median(pres.stop - pres.start)) if len(pres) else 0.0
        frame_rate = round(1.0 / med, 2) if med > 0 else float("nan")
    captions, caption_variants = _read_captions(nwbfile, stimulus, None if frames is None else frames.shape[0])
    caption_vocabulary = _read_caption_terms(nwbfile, stimulus) if captions else None

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
        caption_vocabulary=caption_vocabulary,
    )


def load_session(
    source: str | Path,
    *,
    cache_dir: str | Path | None = None,
    api_url: str | None = None,
    retries: int = 4,
    backoff: float = 0.25,
    timeout: float | None = None,
    **kwargs,
) -> Session:
    """Open ``source`` (path, https URL or ``dandi://``) with `neurrator.io.sources.open_source` and read it.

    ``cache_dir``/``api_url``/``retries``/``backoff``/``timeout`` go to `open_source` (``timeout`` also to
    movie downloads); other keyword arguments to
    `read_session`. The arrays are copied out; the file is closed on return.

    Examples
    --------
    >>> s = load_session("sim.nwb")  # doctest: +SKIP
    >>> s.units.ids.shape, s.presentations.frame.shape  # doctest: +SKIP
    """
    movie_cache = kwargs.pop("movie_cache_dir", None)
    if movie_cache is None and cache_dir is not None:
        movie_cache = Path(cache_dir) / "movies"
    timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
    with open_source(str(source), cache_dir=cache_dir, api_url=api_url, retries=retries, backoff=backoff,
                     timeout=timeout) as nwbfile:
        return read_session(
            nwbfile, source=str(source), path_label=source_label(str(source)), movie_cache_dir=movie_cache,
            timeout=timeout, **kwargs
        )
