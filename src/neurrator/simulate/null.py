"""A session (in memory or an NWB file) -> its global null: every unit's spikes circularly shifted by its
own random lag within every stimulus repeat.

The global null keeps what a test must not mistake for stimulus information -- each unit's spike count in
every repeat (so its rate), its inter-spike intervals (so its bursting and autocorrelation, except at the
one wrap per repeat) -- and destroys what the stimulus put there: the locking of the spikes to the frames
and, because every (unit, repeat) has its own lag, the agreement between repeats and the correlations
between units. Spikes outside the repeats (spontaneous activity, opto-tagging pulses, other stimuli) are
left where they are, so opto-tagging still finds the tagged units and every group keeps its members.

Every statistical test of neurrator must pass on such a session: nothing significant after FDR, p-values
near uniform (DESIGN.md, "Statistics: how a test earns its star"). `global_null_session` transforms a
`neurrator.data.session.Session`; `write_global_null` writes an NWB copy of a file with the shifted spike
times, which the CLI pipeline runs on unchanged.

A repeat is the span from the first presentation's start to the last presentation's stop of one repeat.
When repeats interleave (flashed images, whose "repeat" is the image's occurrence count), the whole
stimulus block is one span.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path

import numpy as np

from neurrator.data.session import Session, read_presentations
from neurrator.data.stimuli import Presentations
from neurrator.errors import NeurratorError
from neurrator.io.sources import open_source

__all__ = ["circular_shift_spikes", "global_null_session", "repeat_spans", "write_global_null"]


def repeat_spans(presentations: Presentations) -> np.ndarray:
    """Presentations -> ``(R, 2)`` float64 [start, stop) of each repeat, sorted by start.

    Repeats that overlap in time by more than half a presentation (flashed images) give one span over the
    whole block; back-to-back repeats that overlap by rounding end where the next one starts.

    Examples
    --------
    >>> p = Presentations(frame=np.array([0, 1, 0, 1]), start=np.array([0.0, 1.0, 2.0, 3.0]),
    ...                   stop=np.array([1.0, 2.0, 3.0, 4.0]), repeat=np.array([0, 0, 1, 1]))
    >>> repeat_spans(p).tolist()
    [[0.0, 2.0], [2.0, 4.0]]
    """
    rep = np.asarray(presentations.repeat)
    reps = np.unique(rep)
    spans = np.array([[presentations.start[rep == r].min(), presentations.stop[rep == r].max()] for r in reps],
                     dtype=np.float64).reshape(-1, 2)
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    if len(spans) > 1:
        tol = 0.5 * float(np.median(presentations.stop - presentations.start))  # back-to-back rounding
        if np.any(spans[1:, 0] < spans[:-1, 1] - tol):
            return np.array([[spans[:, 0].min(), spans[:, 1].max()]])
        spans[:-1, 1] = np.minimum(spans[:-1, 1], spans[1:, 0])
    return spans


def circular_shift_spikes(spike_times: np.ndarray, offsets: np.ndarray, spans: np.ndarray, *, seed: int,
                          unit_ids: np.ndarray | None = None, min_lag_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated spike times -> the same spikes, each unit circularly shifted within each span by its
    own lag, and the lags.

    Parameters
    ----------
    spike_times
        ``(S,)`` float64, all units concatenated, each unit's block sorted.
    offsets
        ``(N + 1,)`` int64; unit ``i``'s spikes are ``spike_times[offsets[i]:offsets[i + 1]]``.
    spans
        ``(R, 2)`` non-overlapping [start, stop) intervals (`repeat_spans`).
    seed
        Seed of the lags.
    unit_ids
        ``(N,)`` int ids: each unit's lags are drawn from ``(seed, its id)``, so a unit gets the same null
        whichever other units are shifted with it (a file's null read through a quality filter equals the
        null of the filtered session). None: one stream for all units, in row order.
    min_lag_s
        Every lag lies in [``min_lag_s``, span length - ``min_lag_s``] (uniform). Keep the default 0: only
        lags uniform over the whole span make each (unit, repeat) a uniformly random rotation, independent
        of the frames. Lags kept away from 0 avoid the same arc in every repeat, so the repeats stay
        partly aligned with each other and a decoder trained on some repeats decodes the others (issue 26:
        with 1 s on 10 s repeats a ridge decoder's centred cosine beat its shift null on 25% of 20 null
        sessions, 10% with 0; `benchmarks/bench_null_lags.py`). Larger values are for diagnostics only.

    Returns
    -------
    shifted : (S,) float64
        A spike at ``t`` in span [a, b) moves to ``a + (t - a + lag) mod (b - a)``; spikes outside every span
        keep their time. Each unit's block is sorted again (its count per span is unchanged).
    lags : (N, R) float64
        The lag of every unit in every span.

    Examples
    --------
    >>> t, lags = circular_shift_spikes(np.array([0.5, 1.0, 9.5, 12.0]), np.array([0, 4]),
    ...                                 np.array([[0.0, 10.0]]), seed=0, min_lag_s=4.5)
    >>> lags.round(2).tolist(), t.round(2).tolist()
    ([[5.14]], [4.64, 5.64, 6.14, 12.0])
    """
    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    offsets = np.asarray(offsets, dtype=np.int64)
    length = spans[:, 1] - spans[:, 0]
    if len(spans) and np.any(length < 2 * min_lag_s):
        raise ValueError(f"a repeat of {length.min():g} s is shorter than twice the minimum lag ({min_lag_s:g} s)")
    n = len(offsets) - 1
    if unit_ids is None:
        u01 = np.random.default_rng(seed).random((n, len(spans)))
    else:
        u01 = np.stack([np.random.default_rng([int(seed), int(u) % 2**63]).random(len(spans))
                        for u in np.asarray(unit_ids)]).reshape(n, len(spans))
    lags = min_lag_s + u01 * (length - 2 * min_lag_s)[None, :]
    out = np.array(spike_times, dtype=np.float64, copy=True)
    for i in range(n):
        s = out[offsets[i]:offsets[i + 1]]
        if s.size == 0 or len(spans) == 0:
            continue
        k = np.searchsorted(spans[:, 0], s, side="right") - 1
        inside = k >= 0
        inside[inside] = s[inside] < spans[k[inside], 1]
        kk = k[inside]
        a, b = spans[kk, 0], spans[kk, 1]
        moved = a + np.mod(s[inside] - a + lags[i, kk], length[kk])
        s[inside] = np.minimum(moved, np.nextafter(b, a))  # rounding must not carry a spike onto the stop
        s.sort()
    return out, lags


def _null_labels(identifier: str, session_id: str, description: str, *, seed: int) -> tuple[str, str, str]:
    """(identifier, session id, description) of the null of a session: a new identifier (another file's
    data), the session id tagged, the description saying what was done."""
    new_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"neurrator-global-null:{identifier}:{seed}"))
    note = (f" GLOBAL NULL (neurrator.simulate.null, seed {seed}): every unit's spikes circularly shifted by "
            "its own random lag within every stimulus repeat; stimulus locking removed, rates and "
            "autocorrelation kept.")
    return new_id, f"{session_id}-globalnull{seed}", description + note


def global_null_session(session: Session, *, seed: int, min_lag_s: float = 0.0) -> Session:
    """A `Session` -> its global null: each unit's spikes circularly shifted within every repeat of the
    session's stimulus by its own lag (`circular_shift_spikes`, lags drawn from ``seed`` and the unit's id);
    everything else untouched.

    Parameters
    ----------
    session
        A session read by `neurrator.data.session.read_session` (any stimulus kind).
    seed
        Seed of the lags.
    min_lag_s
        Smallest lag (s), 0 for a true null (see `circular_shift_spikes`); a repeat must last at least
        twice this.

    Returns
    -------
    Session
        Same units, presentations, frames, captions and opto-tagging; the spike times shifted; a new
        identifier, the session id tagged ``-globalnull<seed>``, the description saying so.

    Examples
    --------
    >>> null = global_null_session(session, seed=1)  # doctest: +SKIP
    >>> (null.units.n_spikes() == session.units.n_spikes()).all()  # doctest: +SKIP
    True
    """
    spans = repeat_spans(session.presentations)
    try:
        shifted, _ = circular_shift_spikes(session.units.spike_times, session.units.offsets, spans, seed=seed,
                                           unit_ids=session.units.ids, min_lag_s=min_lag_s)
    except ValueError as err:
        raise NeurratorError(session.path_label, f"cannot build the global null: {err}") from None
    ident, sid, desc = _null_labels(session.identifier, session.session_id, session.session_description, seed=seed)
    units = dataclasses.replace(session.units, spike_times=shifted)
    return dataclasses.replace(session, units=units, identifier=ident, session_id=sid, session_description=desc)


def _stimulus_of(nwbfile, label: str) -> str:
    """The one stimulus with a ``<stimulus>_presentations`` table that has a frame column."""
    names = [name[: -len("_presentations")] for name, table in (nwbfile.intervals or {}).items()
             if name.endswith("_presentations") and "frame" in table.colnames]
    if len(names) != 1:
        raise NeurratorError(label, f"name the stimulus to shift within (presentation tables with frames: "
                             f"{', '.join(sorted(names)) or 'none'})")
    return names[0]


def _replace_string(h5, name: str, value: str) -> None:
    import h5py

    if name in h5:
        del h5[name]
    h5.create_dataset(name, data=value, dtype=h5py.string_dtype())


def write_global_null(source_path: str | Path, out_path: str | Path, *, seed: int, stimulus: str | None = None,
                      min_lag_s: float = 0.0) -> Path:
    """An NWB session file -> a copy at ``out_path`` whose spike times are its global null.

    The copy is the source byte for byte except ``/units/spike_times`` (rewritten in place, each unit's
    block shifted as in `global_null_session` and sorted), ``/identifier``, ``/general/session_id`` and
    ``/session_description``. Every unit of the file is shifted (no quality filter). A ground-truth file
    next to a simulated source is not copied: the null has none.

    Parameters
    ----------
    source_path, out_path
        Local NWB file and where to write its null (overwritten; written atomically).
    seed
        Seed of the lags.
    stimulus
        The stimulus whose repeats bound the shifts (``intervals/<stimulus>_presentations``); None: the
        file's only presentation table with a frame column.
    min_lag_s
        Smallest lag (s), 0 for a true null (see `circular_shift_spikes`).

    Returns
    -------
    Path
        ``out_path``.

    Examples
    --------
    >>> write_global_null("sim.nwb", "sim-null.nwb", seed=1)  # doctest: +SKIP
    PosixPath('sim-null.nwb')
    """
    import h5py

    source_path, out_path = Path(source_path), Path(out_path)
    label = str(source_path)
    if out_path.resolve() == source_path.resolve():
        raise NeurratorError(out_path, "the null's output path is the source file; choose another output")
    with open_source(str(source_path)) as nwbfile:
        stim = stimulus or _stimulus_of(nwbfile, label)
        presentations, _ = read_presentations(nwbfile, stimulus=stim, label=label)
        if nwbfile.units is None or "spike_times" not in nwbfile.units.colnames:
            raise NeurratorError(label, "the file has no Units table with spike_times")
        ident, sid, desc = _null_labels(nwbfile.identifier, nwbfile.session_id or "", nwbfile.session_description,
                                        seed=seed)
    spans = repeat_spans(presentations)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.part.nwb")
    shutil.copyfile(source_path, tmp)
    try:
        with h5py.File(tmp, "r+") as h5:
            times = h5["units/spike_times"]
            ends = np.asarray(h5["units/spike_times_index"][()], dtype=np.int64)
            offsets = np.concatenate([[0], ends])
            ids = np.asarray(h5["units/id"][()], dtype=np.int64)
            try:
                shifted, _ = circular_shift_spikes(times[()], offsets, spans, seed=seed, unit_ids=ids,
                                                   min_lag_s=min_lag_s)
            except ValueError as err:
                raise NeurratorError(label, f"cannot build the global null: {err}") from None
            times[...] = shifted.astype(times.dtype)
            _replace_string(h5, "identifier", ident)
            _replace_string(h5, "general/session_id", sid)
            _replace_string(h5, "session_description", desc)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
