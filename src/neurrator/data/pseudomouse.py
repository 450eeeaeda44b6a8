"""Several sessions of one stimulus -> one pseudo-population (a "pseudo-mouse") and back.

Opto-tagged interneurons are few per session (a handful of PV, SST or VIP units per Cre line), so the
cell-type analyses pool units of several sessions that showed the same stimulus. The pooled population
is aligned by (repeat, frame): row p of the pooled counts holds, for every session, that session's
response to the same repeat and frame of the same stimulus. Units of different sessions were never
recorded together, so the pooled rows share the stimulus but not the trial-to-trial (noise)
fluctuations of one brain; the encoder is told each unit's session (`unit_session`, its per-session
embedding), and no analysis here reads correlations between units of different sessions.

`check_same_stimulus` refuses sessions that did not see the same stimulus (name, kind, frames);
`pool_binned` and `pool_units` build the pooled counts and unit annotations; `member_units` gives the
rows of one session in the pool. Plain numpy; no file is opened here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from neurrator.data.binning import Binned
from neurrator.errors import NeurratorError
from neurrator.data.units_table import Units
from neurrator.data.stimuli import Presentations

__all__ = ["Pooled", "check_same_stimulus", "frames_digest", "member_units", "member_view", "pool_binned",
           "pool_sessions", "pool_units"]


def frames_digest(frames: np.ndarray | None) -> str:
    """sha256 of the frames' shape, dtype and bytes ("" without frames)."""
    if frames is None:
        return ""
    a = np.ascontiguousarray(frames)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def check_same_stimulus(sessions: Sequence, labels: Sequence[str] | None = None) -> None:
    """Every session showed the same stimulus with the same frames; else `NeurratorError` naming the
    first session that differs from the first one.

    Compares the stimulus name, the number and content (sha256) of the frames and the frame rate (when
    both are finite), and refuses one session given twice (same identifier) or unit ids shared by two
    sessions (the pool must tell every unit apart).
    """
    if len(sessions) < 2:
        raise ValueError("a pseudo-mouse needs at least 2 sessions")
    labels = [s.path_label for s in sessions] if labels is None else list(labels)
    first = sessions[0]
    digest0 = frames_digest(first.frames)
    seen_ids: dict[int, str] = {}
    seen_sessions: dict[str, str] = {}
    for s, label in zip(sessions, labels, strict=True):
        if s.stimulus != first.stimulus:
            raise NeurratorError(label, f"stimulus {s.stimulus!r} differs from {first.stimulus!r} of {labels[0]}: "
                                 "a pseudo-mouse pools sessions of one stimulus")
        if s is not first:
            n0 = None if first.frames is None else len(first.frames)
            n = None if s.frames is None else len(s.frames)
            if n != n0:
                raise NeurratorError(label, f"{n} frames of {s.stimulus} where {labels[0]} has {n0}")
            if frames_digest(s.frames) != digest0:
                raise NeurratorError(label, f"the frames of {s.stimulus} differ from those of {labels[0]} "
                                     "(same name, other content)")
            r0, r = float(first.frame_rate), float(s.frame_rate)
            if np.isfinite(r0) and np.isfinite(r) and abs(r - r0) > 1e-3 * max(r0, 1.0):
                raise NeurratorError(label, f"frame rate {r:g} Hz differs from {r0:g} Hz of {labels[0]}")
        key = f"{s.identifier}|{s.session_id}"
        if key in seen_sessions:
            raise NeurratorError(label, f"the same session as {seen_sessions[key]} (identifier {s.identifier})")
        seen_sessions[key] = label
        for u in np.asarray(s.units.ids).tolist():
            if u in seen_ids and seen_ids[u] != label:
                raise NeurratorError(label, f"unit id {u} is also a unit of {seen_ids[u]}: pooled units need "
                                     "ids unique across sessions")
            seen_ids[u] = label


@dataclass(frozen=True)
class Pooled:
    """A pooled population.

    Attributes
    ----------
    binned
        `Binned` over the (repeat, frame) presentations every session has, units of all sessions as
        columns (session 0's first, then session 1's, ...).
    unit_session
        (N,) int64 session index of each column.
    rows
        (S, P) int64: pooled presentation p is row ``rows[s, p]`` of session s's own presentations
        (its times, for writing that session's file).
    """

    binned: Binned
    unit_session: np.ndarray
    rows: np.ndarray

    @property
    def n_sessions(self) -> int:
        return int(self.rows.shape[0])


def _first_rows(frame: np.ndarray, repeat: np.ndarray) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(repeat.tolist(), frame.tolist())):
        out.setdefault(key, i)
    return out


def pool_binned(binned: Sequence[Binned], labels: Sequence[str] | None = None) -> Pooled:
    """Align the sessions' binned counts by (repeat, frame) and put their units side by side.

    Only the (repeat, frame) pairs that every session has are kept (a session with fewer repeats bounds
    the pool); a pair a session shows twice uses its first showing. The pooled order is session 0's.
    """
    if len(binned) < 2:
        raise ValueError("a pseudo-mouse needs at least 2 sessions")
    labels = [f"session {i}" for i in range(len(binned))] if labels is None else list(labels)
    b0 = binned[0]
    for b, label in zip(binned, labels, strict=True):
        if b.bins_per_frame != b0.bins_per_frame:
            raise NeurratorError(label, f"{b.bins_per_frame} bins per presentation where {labels[0]} has "
                                 f"{b0.bins_per_frame}")
    maps = [_first_rows(np.asarray(b.frame), np.asarray(b.repeat)) for b in binned]
    order = sorted(maps[0].values())
    keys = [(int(b0.repeat[i]), int(b0.frame[i])) for i in order]
    common = [k for k in keys if all(k in m for m in maps[1:])]
    if not common:
        raise NeurratorError(labels[1], f"no (repeat, frame) presentation in common with {labels[0]}")
    rows = np.asarray([[m[k] for k in common] for m in maps], dtype=np.int64)  # (S, P)
    bpf = b0.bins_per_frame
    bins = rows[:, :, None] * bpf + np.arange(bpf)[None, None]  # (S, P, bpf)
    counts = np.concatenate([np.asarray(b.counts)[bins[s].ravel()] for s, b in enumerate(binned)], axis=1)
    repeat = np.asarray([k[0] for k in common], dtype=np.int64)
    _, repeat = np.unique(repeat, return_inverse=True)  # 0-based and dense again
    pooled = Binned(counts=counts, frame=np.asarray([k[1] for k in common], dtype=np.int64),
                    repeat=repeat.astype(np.int64), bins_per_frame=bpf,
                    unit_ids=np.concatenate([np.asarray(b.unit_ids, dtype=np.int64) for b in binned]))
    unit_session = np.concatenate([np.full(b.n_units, s, dtype=np.int64) for s, b in enumerate(binned)])
    return Pooled(binned=pooled, unit_session=unit_session, rows=rows)


def pool_units(units: Sequence[Units], session_tags: Sequence[str]) -> Units:
    """The sessions' `Units` one after the other (as `pool_binned` orders the columns).

    Probes are prefixed with the session tag (``"<tag>/probeA"``), so local populations stay within one
    recording; region and cell type are shared names and pool across sessions. Metrics present in every
    session are kept.
    """
    if len(units) != len(session_tags):
        raise ValueError(f"{len(units)} unit tables but {len(session_tags)} session tags")
    offsets, total = [np.zeros(1, np.int64)], 0
    for u in units:
        offsets.append(np.asarray(u.offsets[1:], np.int64) + total)
        total += int(u.offsets[-1])
    metrics = {k: np.concatenate([np.asarray(u.metrics[k]) for u in units])
               for k in units[0].metrics if all(k in u.metrics for u in units)}
    return Units(ids=np.concatenate([np.asarray(u.ids, np.int64) for u in units]),
                 spike_times=np.concatenate([np.asarray(u.spike_times, np.float64) for u in units]),
                 offsets=np.concatenate(offsets),
                 region=np.concatenate([np.asarray(u.region, str) for u in units]),
                 cell_type=np.concatenate([np.asarray(u.cell_type, str) for u in units]),
                 probe=np.concatenate([np.char.add(f"{t}/", np.asarray(u.probe, str)) for u, t in
                                       zip(units, session_tags, strict=True)]),
                 depth=np.concatenate([np.asarray(u.depth, np.float64) for u in units]),
                 metrics=metrics)


def member_units(pooled: Pooled, session: int) -> np.ndarray:
    """(n_s,) int64 pooled columns that are units of ``session``, in that session's order."""
    return np.flatnonzero(pooled.unit_session == int(session)).astype(np.int64)


def pool_sessions(sessions: Sequence, binned: Sequence[Binned], *, tags: Sequence[str] | None = None):
    """(pooled session, `Pooled`): the first session with the pooled units and the pooled presentations
    (session 0's times), for `neurrator.pipeline.analyse`, which reads the units' annotations, the
    frames and the captions from it. Spike times in the pooled units stay on their own session's clock:
    bin each session, never the pool.
    """
    import dataclasses


    labels = [s.path_label for s in sessions]
    check_same_stimulus(sessions, labels)
    pooled = pool_binned(binned, labels)
    tags = [f"s{i}" for i in range(len(sessions))] if tags is None else list(tags)
    p0, r0 = sessions[0].presentations, pooled.rows[0]
    pres = Presentations(frame=pooled.binned.frame, start=np.asarray(p0.start)[r0], stop=np.asarray(p0.stop)[r0],
                         repeat=pooled.binned.repeat)
    session = dataclasses.replace(sessions[0], units=pool_units([s.units for s in sessions], tags), presentations=pres,
                                  path_label=" + ".join(labels))
    return session, pooled


def member_view(analysis, pooled: Pooled, index: int, session):
    """The pooled run's results as session ``index``'s own derived file sees them: (session, analysis).

    - presentations: that session's own presentations in pooled order (its times), so the results'
      presentation indices stay valid;
    - units: the session's units; each subset keeps only its units of this session (``decoded_units``
      records how many it was decoded from), and subsets with none of them are left out (with their
      narrations and SAE validation rows);
    - per-unit analyses (unit neurration, concept tuning): this session's units;
    - group comparisons, separations and scaling: the pooled ones, unchanged (they name groups, not units).

    ``analysis`` is a `neurrator.pipeline.SessionAnalysis` (any object with its fields; copied, not changed).
    """
    import dataclasses


    cols = member_units(pooled, index)
    if len(cols) != len(session.units):
        raise ValueError(f"session {index} has {len(session.units)} units but the pool holds {len(cols)} of it")
    to_member = np.full(pooled.binned.n_units, -1, dtype=np.int64)
    to_member[cols] = np.arange(len(cols))
    rows = pooled.rows[index]
    p = session.presentations
    pres = Presentations(frame=pooled.binned.frame, start=np.asarray(p.start)[rows], stop=np.asarray(p.stop)[rows],
                         repeat=pooled.binned.repeat)
    view_session = dataclasses.replace(session, presentations=pres)

    results, keep = [], []
    for r in analysis.results:
        mine = to_member[np.asarray(r.subset.unit_idx, dtype=np.int64)]
        mine = mine[mine >= 0]
        keep.append(mine.size > 0)
        if mine.size:
            sub = dataclasses.replace(r.subset, unit_idx=mine, decoded_units=r.subset.n_units)
            results.append(dataclasses.replace(r, subset=sub))
    narration_keep = np.repeat(np.asarray(keep, bool), [len(r.narrations) for r in analysis.results])
    validation = {k: [v for v, ok in zip(vals, narration_keep, strict=True) if ok]
                  for k, vals in analysis.validation.items()}
    neurration = analysis.neurration
    if neurration is not None:
        units = {}
        for k, v in neurration.units.items():
            units[k] = np.asarray(v)[cols] if isinstance(v, np.ndarray) else [v[int(i)] for i in cols]
        units["unit"] = np.arange(len(cols), dtype=np.int64)
        t = neurration.tuning
        mine = to_member[np.asarray(t["unit"], dtype=np.int64)] >= 0
        tuning = {k: (np.asarray(v)[mine] if isinstance(v, np.ndarray) else [x for x, ok in zip(v, mine) if ok])
                  for k, v in t.items()}
        tuning["unit"] = to_member[np.asarray(t["unit"], dtype=np.int64)[mine]]
        cards = neurration.cards
        if cards is not None:  # the top units of this member only (rows of its own units)
            tu = [to_member[np.asarray(u, dtype=np.int64)] for u in cards.top_units]
            cards = cards._replace(top_units=[u[u >= 0] for u in tu],
                                   top_unit_r=[np.asarray(r)[u >= 0] for u, r in zip(tu, cards.top_unit_r)])
        neurration = dataclasses.replace(neurration, units=units, tuning=tuning, cards=cards)
    view = dataclasses.replace(analysis, results=results, validation=validation, neurration=neurration)
    return view_session, view
