"""Spike times + presentations -> `Binned` spike counts per bin and the context-window row indices.

Counting uses the sortedness of each unit's spike times: two `np.searchsorted` calls cut out the
unit's spikes inside the presentation span, only those are located among the (time-sorted) bin edges
and counted with `np.bincount`; for overlapping intervals the bin edges are located in the unit's
spikes instead and counts are differences of positions. There is no Python loop over spikes (only
over units). See benchmarks/bench_binning.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurrator.data.stimuli import bin_intervals, stimulus_kind


__all__ = ["Binned", "bin_session", "bin_spikes", "disjoint_spans", "window_index", "window_spans"]

_UINT16_MAX = np.iinfo(np.uint16).max
#: overlaps of consecutive intervals below this (s) are float rounding of frame times: treated as touching
_TOUCH_S = 1e-6


@dataclass(frozen=True)
class Binned:
    """Spike counts aligned to movie presentations.

    Attributes
    ----------
    counts
        (P * bins_per_frame, N) uint16; presentation p's bins are rows ``p*b:(p+1)*b``.
    frame
        (P,) int64 movie frame index of each presentation.
    repeat
        (P,) int64 0-based repeat of each presentation.
    bins_per_frame
        Bins per presentation (4 at 120 Hz for a 30 Hz movie).
    unit_ids
        (N,) int64 unit ids as in the file, one per column of ``counts``.
    """

    counts: np.ndarray
    frame: np.ndarray
    repeat: np.ndarray
    bins_per_frame: int
    unit_ids: np.ndarray

    @property
    def n_presentations(self) -> int:
        return int(self.frame.shape[0])

    @property
    def n_units(self) -> int:
        return int(self.counts.shape[1])


def bin_spikes(
    spike_times: np.ndarray,
    offsets: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    *,
    bins_per_interval: int,
    block_units: int = 64,
    method: str = "auto",
) -> np.ndarray:
    """Count each unit's spikes in equal bins inside every interval.

    Parameters
    ----------
    spike_times
        (S,) float64, all units concatenated; each unit's block sorted ascending.
    offsets
        (N+1,) int64; unit i's spikes are ``spike_times[offsets[i]:offsets[i+1]]``.
    starts, stops
        (P,) float64 interval bounds in seconds, ``stops >= starts``. Intervals may be in any order
        and may overlap (each is counted independently).
    bins_per_interval
        b >= 1 equal bins per interval.
    block_units
        Units counted per block before the block is written into the (row-major) output.
    method
        ``"windows"``: take each unit's spikes between the first start and the last stop (two
        searchsorted calls), locate only those in the sorted bin edges and ``bincount`` them; needs
        non-overlapping intervals. ``"edges"``: locate every bin edge in each unit's spikes (works for
        overlapping intervals). ``"auto"`` (default) picks "windows" when the intervals do not overlap
        (overlaps under 1 us, float rounding of frame times, count as touching: the later interval
        then starts where the earlier one stops).

    Returns
    -------
    counts : (P * b, N) uint16
        Row ``p*b + k`` counts spikes in ``[starts[p] + k*w, starts[p] + (k+1)*w)`` with
        ``w = (stops[p] - starts[p]) / b`` (half-open bins: a spike exactly at ``stops[p]`` is not
        counted in presentation p). Counts above 65535 saturate at 65535.

    Raises
    ------
    ValueError
        On shape mismatches, ``b < 1``, non-finite bounds or ``stops < starts``. Spike-time validity
        (finite, sorted) is the reader's job (`neurrator.data.session`); unsorted blocks give wrong counts.

    Examples
    --------
    >>> t = np.array([0.1, 0.3, 0.6, 0.05, 0.95])
    >>> bin_spikes(t, np.array([0, 3, 5]), np.array([0.0]), np.array([1.0]), bins_per_interval=2)
    array([[2, 1],
           [1, 1]], dtype=uint16)
    """
    spike_times = np.asarray(spike_times, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.float64)
    stops = np.asarray(stops, dtype=np.float64)
    b = int(bins_per_interval)
    if b < 1:
        raise ValueError(f"bins_per_interval must be >= 1, got {bins_per_interval}")
    if starts.ndim != 1 or starts.shape != stops.shape:
        raise ValueError(f"starts and stops must be 1-D of equal length, got {starts.shape} and {stops.shape}")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != spike_times.size:
        raise ValueError("offsets must be 1-D, start at 0 and end at len(spike_times)")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing")
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(stops))):
        raise ValueError("interval bounds must be finite")
    if np.any(stops < starts):
        raise ValueError("every interval needs stop >= start")

    n_units = offsets.size - 1
    n_int = starts.size
    counts = np.zeros((n_int * b, n_units), dtype=np.uint16)
    if n_int == 0 or n_units == 0:
        return counts

    # Edges (P, b+1); searched in time order (cache-friendly), results put back in the caller's order.
    frac = np.arange(b + 1, dtype=np.float64) / b
    edges = starts[:, None] + (stops - starts)[:, None] * frac[None, :]
    edges[:, -1] = stops  # exact right edge, no rounding drift
    order = np.argsort(starts, kind="stable")
    sorted_edges = edges[order].ravel()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n_int)

    block_units = max(1, int(block_units))
    if method not in ("auto", "windows", "edges"):
        raise ValueError(f"unknown method {method!r}; valid: auto, windows, edges")
    step = np.diff(sorted_edges)
    # intervals that overlap by less than _TOUCH_S (float rounding of frame times) count as touching
    disjoint = bool(step.size == 0 or step.min() >= -_TOUCH_S)
    if method == "windows" and not disjoint:
        raise ValueError("method='windows' needs non-overlapping intervals")
    if method != "edges" and disjoint:
        mono = np.maximum.accumulate(sorted_edges) if step.size and step.min() < 0 else sorted_edges
        _count_windows(spike_times, offsets, mono, order, n_int, b, counts, block_units)
        return counts
    for u0 in range(0, n_units, block_units):
        u1 = min(n_units, u0 + block_units)
        block = np.empty((u1 - u0, n_int, b), dtype=np.int64)
        for j, u in enumerate(range(u0, u1)):
            unit = spike_times[offsets[u] : offsets[u + 1]]
            pos = np.searchsorted(unit, sorted_edges, side="left").reshape(n_int, b + 1)
            block[j] = np.diff(pos, axis=1)
        np.minimum(block, _UINT16_MAX, out=block)
        # back to the caller's presentation order; (units, P, b) -> (P*b, units)
        counts[:, u0:u1] = block[:, inverse, :].reshape(u1 - u0, n_int * b).T
    return counts


def _count_windows(
    spike_times: np.ndarray,
    offsets: np.ndarray,
    sorted_edges: np.ndarray,
    order: np.ndarray,
    n_int: int,
    b: int,
    counts: np.ndarray,
    block_units: int,
) -> None:
    """Fill ``counts`` by locating only the spikes inside [first edge, last edge) in the sorted edges."""
    lo_t, hi_t = sorted_edges[0], sorted_edges[-1]
    n_rows = n_int * b
    # flat edge position j -> output row (time-ordered presentation order[j // (b+1)], bin j % (b+1));
    # position k == b is the stop edge: spikes between a stop and the next start are not counted.
    k = np.arange(sorted_edges.size) % (b + 1)
    row_of = np.where(k < b, order[np.arange(sorted_edges.size) // (b + 1)] * b + k, n_rows)
    n_units = offsets.size - 1
    for u0 in range(0, n_units, block_units):
        u1 = min(n_units, u0 + block_units)
        block = np.empty((u1 - u0, n_rows), dtype=np.uint16)
        for j, u in enumerate(range(u0, u1)):
            unit = spike_times[offsets[u] : offsets[u + 1]]
            a, z = np.searchsorted(unit, (lo_t, hi_t), side="left")
            pos = np.searchsorted(sorted_edges, unit[a:z], side="right") - 1
            c = np.bincount(row_of[pos], minlength=n_rows + 1)[:n_rows]
            np.minimum(c, _UINT16_MAX, out=c)
            block[j] = c
        counts[:, u0:u1] = block.T


def bin_session(session, *, bins_per_frame: int = 4, unit_idx: np.ndarray | None = None,
                kind: str | None = None, window_bins: int = 20, window_s: float = 0.25,
                latency_s: float = 0.0) -> Binned:
    """Bin a `neurrator.data.session.Session` at ``bins_per_frame`` bins per presentation.

    Parameters
    ----------
    session
        A `Session` (its units and presentations are used).
    bins_per_frame
        Bins per movie presentation (4 gives 120 Hz for a 30 Hz movie).
    unit_idx
        (n,) int64 rows of ``session.units`` to bin; all units when None.
    kind, window_bins, window_s, latency_s
        Stimulus kind (default from ``session.stimulus``, `neurrator.data.stimuli.stimulus_kind`). Flashed
        images bin the onset-aligned window ``[onset + latency_s, onset + latency_s + window_s)`` of each
        presentation in ``window_bins`` bins (``Binned.bins_per_frame`` is then ``window_bins``: train
        with ``window_bins`` equal to it and ``offset_bins=0``); movies ignore these three.

    Returns
    -------
    Binned
    """
    units = session.units
    pres = session.presentations
    if unit_idx is None:
        spikes, offsets, ids = units.spike_times, units.offsets, units.ids
    else:
        unit_idx = np.asarray(unit_idx, dtype=np.int64)
        lens = units.offsets[unit_idx + 1] - units.offsets[unit_idx]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        spikes = (
            np.concatenate([units.spike_times[units.offsets[i] : units.offsets[i + 1]] for i in unit_idx])
            if unit_idx.size
            else np.zeros(0)
        )
        ids = units.ids[unit_idx]

    starts, stops, b = bin_intervals(pres.start, pres.stop, kind=stimulus_kind(getattr(session, "stimulus", ""), kind=kind),
                                     bins_per_frame=bins_per_frame, window_bins=window_bins, window_s=window_s,
                                     latency_s=latency_s)
    counts = bin_spikes(spikes, offsets, starts, stops, bins_per_interval=b)
    return Binned(
        counts=counts,
        frame=np.asarray(pres.frame, dtype=np.int64).copy(),
        repeat=np.asarray(pres.repeat, dtype=np.int64).copy(),
        bins_per_frame=int(b),
        unit_ids=np.asarray(ids, dtype=np.int64).copy(),
    )


def window_index(
    frame: np.ndarray,
    repeat: np.ndarray,
    *,
    bins_per_frame: int,
    window_bins: int = 20,
    offset_bins: int = 0,
) -> np.ndarray:
    """Rows of `Binned.counts` that make up the context window of each presentation.

    Parameters
    ----------
    frame
        (P,) int64 frame index per presentation (used for its length only; order is by presentation).
    repeat
        (P,) int64 repeat per presentation; presentations of one repeat must be contiguous
        (the `Presentations` order, sorted by (repeat, start)).
    bins_per_frame
        b, bins per presentation.
    window_bins
        W, rows per window.
    offset_bins
        0 centres the window on the presentation's bins (for b=4, W=20: 8 bins before, the 4 bins of
        the frame, 8 after); a positive value shifts it later (visual latency), negative earlier.

    Returns
    -------
    rows : (P, W) int64
        Row indices into ``counts``; -1 where the window leaves the presentation's repeat
        (read those as zeros).

    Examples
    --------
    >>> window_index(np.arange(3), np.zeros(3, int), bins_per_frame=2, window_bins=4)
    array([[-1,  0,  1,  2],
           [ 1,  2,  3,  4],
           [ 3,  4,  5, -1]])
    """
    frame = np.asarray(frame)
    repeat = np.asarray(repeat, dtype=np.int64)
    if frame.shape != repeat.shape or repeat.ndim != 1:
        raise ValueError(f"frame and repeat must be 1-D of equal length, got {frame.shape} and {repeat.shape}")
    b = int(bins_per_frame)
    w = int(window_bins)
    if b < 1 or w < 1:
        raise ValueError("bins_per_frame and window_bins must be >= 1")
    n = repeat.size
    if n == 0:
        return np.zeros((0, w), dtype=np.int64)
    # first/last presentation of each contiguous run of equal repeat values
    change = np.flatnonzero(np.diff(repeat) != 0) + 1
    run_start = np.concatenate([[0], change])
    run_stop = np.concatenate([change, [n]])
    if np.unique(repeat[run_start]).size != run_start.size:
        raise ValueError("presentations of one repeat must be contiguous (sort by repeat, start)")
    run_of = np.repeat(np.arange(run_start.size), run_stop - run_start)
    lo = run_start[run_of] * b  # first valid row of the repeat
    hi = run_stop[run_of] * b  # one past the last valid row
    p = np.arange(n, dtype=np.int64)
    first = p * b + b // 2 - w // 2 + int(offset_bins)
    rows = first[:, None] + np.arange(w, dtype=np.int64)[None, :]
    valid = (rows >= lo[:, None]) & (rows < hi[:, None])
    return np.where(valid, rows, -1)




def window_spans(starts: np.ndarray, stops: np.ndarray, repeat: np.ndarray, *, bins_per_frame: int,
                 window_bins: int, offset_bins: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The time each presentation's context window (`window_index`) spans: (start, stop) seconds per presentation.

    ``starts``/``stops`` are the binned intervals (`neurrator.data.stimuli.bin_intervals`: a movie's
    presentations, or a flashed image's onset-aligned window), each cut in ``bins_per_frame`` equal bins;
    the span runs from the first valid bin of the window to the end of its last (bins outside the repeat,
    read as zeros, are not part of it).

    Examples
    --------
    >>> s, e = window_spans(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]), np.zeros(3, int),
    ...                     bins_per_frame=2, window_bins=4)
    >>> s.tolist(), e.tolist()
    ([0.0, 0.5, 1.5], [1.5, 2.5, 3.0])
    """
    starts = np.asarray(starts, np.float64)
    stops = np.asarray(stops, np.float64)
    b = int(bins_per_frame)
    rows = window_index(np.zeros(len(starts), np.int64), repeat, bins_per_frame=b, window_bins=window_bins,
                        offset_bins=offset_bins)
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    q, k = safe // b, safe % b
    width = (stops[q] - starts[q]) / b
    t0 = np.where(valid, starts[q] + k * width, np.inf).min(axis=1)
    t1 = np.where(valid, starts[q] + (k + 1) * width, -np.inf).max(axis=1)
    return t0, t1


def disjoint_spans(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time-ordered spans made disjoint: where one overlaps the next, both end at the middle of the overlap
    (pynapple would otherwise merge them into one interval and drop their metadata).

    Examples
    --------
    >>> s, e = disjoint_spans(np.array([0.0, 0.5, 3.0]), np.array([1.0, 1.5, 4.0]))
    >>> s.tolist(), e.tolist()
    ([0.0, 0.75, 3.0], [0.75, 1.5, 4.0])
    """
    start, stop = np.array(start, np.float64), np.array(stop, np.float64)
    clash = stop[:-1] > start[1:]
    mid = (stop[:-1] + start[1:]) / 2
    stop[:-1][clash] = mid[clash]
    start[1:][clash] = mid[clash]
    return start, stop
