"""An opened NWB file -> its outline (repeats, captions, spike-time resolution, ids), read without spike times,
so that the split and the models are checked before any data is read.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from neurrator.data.session import read_presentations

__all__ = ["SessionOutline", "outline_nwbfile"]


class SessionOutline(NamedTuple):
    """What the pipeline must know about a session before loading models, read without its spike times.

    Attributes
    ----------
    n_repeats
        Movie repeats of the stimulus (what the train/validation/test split divides).
    has_captions
        True when the file carries ``processing/<module>/<stimulus>_captions`` with a ``caption`` column
        (simulated sessions): then no reference narrator is needed.
    units_resolution
        The source Units table's spike-time resolution in seconds, or None when it is not set.
    presentation_table
        The table the presentations were read from, e.g. ``intervals/natural_movie_one_presentations``.
    subject_id, session_id
        The file's own ids as written ("" when absent), which ``dandi organize`` names the source file
        from: `neurrator.nwb.derived.derived_file_name` of these puts the derived file beside it.
    kind
        The stimulus kind the presentations were read as (given, by name, or from the table's layout).
    onsets
        ``(P,)`` onset times of the presentations (blanks dropped), for the response-window check.
    """

    n_repeats: int
    has_captions: bool
    units_resolution: float | None
    presentation_table: str
    subject_id: str = ""
    session_id: str = ""
    kind: str = "movie"
    onsets: np.ndarray | None = None


def outline_nwbfile(nwbfile, *, stimulus: str, label: str, kind: str | None = None) -> SessionOutline:
    """The `SessionOutline` of an opened `pynwb.NWBFile`: the presentation table and a few lookups.

    Reads the stimulus' presentation table (with `neurrator.data.session.read_presentations`, so a missing
    table fails here with the tables that exist), looks up the captions table and the Units table's
    ``resolution``; spike times and frames are not read.

    Raises
    ------
    NeurratorError
        No presentation table for ``stimulus`` (or one that cannot be read).
    """
    presentations, table = read_presentations(nwbfile, stimulus=stimulus, label=label, kind=kind)
    name = f"{stimulus}_captions"
    has_captions = any(name in module.data_interfaces and "caption" in module[name].colnames
                       for module in (nwbfile.processing or {}).values())
    resolution = getattr(nwbfile.units, "resolution", None) if nwbfile.units is not None else None
    try:
        resolution = float(resolution) if resolution is not None else None
    except (TypeError, ValueError):
        resolution = None
    if resolution is not None and not (np.isfinite(resolution) and resolution > 0):
        resolution = None  # pynwb writes -1.0 for "unknown"
    subject_id = getattr(nwbfile.subject, "subject_id", None) if nwbfile.subject is not None else None
    return SessionOutline(presentations.n_repeats, bool(has_captions), resolution, table,
                          subject_id=str(subject_id or ""), session_id=str(nwbfile.session_id or ""),
                          kind=presentations.kind, onsets=presentations.start)
