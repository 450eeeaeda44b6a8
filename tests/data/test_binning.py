"""Binning: hand-computed counts, edge conventions, window rows and repeat splits."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from neurrator.data.binning import Binned, bin_session, bin_spikes, window_index
from neurrator.data.splits import split_repeats


def _concat(units: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    times = np.concatenate([np.asarray(u, dtype=np.float64) for u in units]) if units else np.zeros(0)
    offsets = np.concatenate([[0], np.cumsum([len(u) for u in units])]).astype(np.int64)
    return times, offsets


def test_bin_spikes_hand_computed():
    # two intervals [0, 1) and [2, 3), 2 bins each; unit 0 and unit 1
    times, off = _concat([[0.1, 0.4, 0.6, 2.0, 2.99, 5.0], [0.5, 1.0, 2.5]])
    counts = bin_spikes(times, off, np.array([0.0, 2.0]), np.array([1.0, 3.0]), bins_per_interval=2)
    expected = np.array(
        [
            [2, 0],  # [0, .5): 0.1, 0.4 | unit1: 0.5 is on the edge -> next bin
            [1, 1],  # [.5, 1): 0.6 | 0.5 ; 1.0 is the stop -> not counted
            [1, 0],  # [2, 2.5): 2.0 (start included)
            [1, 1],  # [2.5, 3): 2.99 | 2.5
        ],
        dtype=np.uint16,
    )
    assert counts.dtype == np.uint16
    np.testing.assert_array_equal(counts, expected)


def test_bin_spikes_keeps_caller_order_and_overlaps():
    times, off = _concat([[0.2, 0.7, 1.2]])
    starts = np.array([1.0, 0.0, 0.5])  # unsorted, overlapping
    stops = np.array([1.5, 1.0, 1.0])
    counts = bin_spikes(times, off, starts, stops, bins_per_interval=1)
    np.testing.assert_array_equal(counts[:, 0], [1, 2, 1])


def test_bin_spikes_empty_units_and_intervals():
    times, off = _concat([[], [0.5], []])
    counts = bin_spikes(times, off, np.array([0.0]), np.array([1.0]), bins_per_interval=4)
    np.testing.assert_array_equal(counts, [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert bin_spikes(times, off, np.zeros(0), np.zeros(0), bins_per_interval=4).shape == (0, 3)


def test_bin_spikes_matches_histogram_on_random_data():
    rng = np.random.default_rng(1)
    units = [np.sort(rng.uniform(0, 20, size=rng.integers(0, 400))) for _ in range(7)]
    times, off = _concat([u.tolist() for u in units])
    starts = np.arange(0, 19, 1 / 30)[:500]
    stops = starts + 1 / 30
    b = 4
    counts = bin_spikes(times, off, starts, stops, bins_per_interval=b)
    for j, u in enumerate(units):
        for p in (0, 7, 123, 499):
            edges = starts[p] + (stops[p] - starts[p]) * np.arange(b + 1) / b
            edges[-1] = stops[p]
            # half-open bins [e_k, e_k+1) like ours: histogram's last bin is closed, so drop spikes at stop
            h, _ = np.histogram(u[u < stops[p]], bins=edges)
            np.testing.assert_array_equal(counts[p * b : (p + 1) * b, j], h)


def test_bin_spikes_saturates_at_uint16_max():
    times, off = _concat([np.linspace(0, 0.999, 70_000).tolist()])
    counts = bin_spikes(times, off, np.array([0.0]), np.array([1.0]), bins_per_interval=1)
    assert counts[0, 0] == 65535


@pytest.mark.parametrize(
    ("starts", "stops", "b"),
    [([1.0], [0.5], 1), ([0.0], [1.0], 0), ([0.0, 1.0], [1.0], 1), ([np.nan], [1.0], 1)],
)
def test_bin_spikes_rejects_bad_intervals(starts, stops, b):
    times, off = _concat([[0.1]])
    with pytest.raises(ValueError):
        bin_spikes(times, off, np.array(starts), np.array(stops), bins_per_interval=b)


def test_bin_spikes_rejects_bad_offsets():
    with pytest.raises(ValueError):
        bin_spikes(np.array([0.1, 0.2]), np.array([0, 1]), np.array([0.0]), np.array([1.0]), bins_per_interval=1)


def test_window_index_centres_and_clips_at_repeat_edges():
    frame = np.array([0, 1, 2, 0, 1, 2])
    repeat = np.array([0, 0, 0, 1, 1, 1])
    rows = window_index(frame, repeat, bins_per_frame=2, window_bins=4)
    expected = np.array(
        [
            [-1, 0, 1, 2],
            [1, 2, 3, 4],
            [3, 4, 5, -1],  # row 6 belongs to repeat 1
            [-1, 6, 7, 8],  # row 5 belongs to repeat 0
            [7, 8, 9, 10],
            [9, 10, 11, -1],
        ]
    )
    np.testing.assert_array_equal(rows, expected)


def test_window_index_offset_lags_the_window():
    rows = window_index(np.arange(5), np.zeros(5, int), bins_per_frame=4, window_bins=4, offset_bins=2)
    # centred 4-bin window of frame 1 is its own rows 4..7; lagged by 2 -> 6..9
    np.testing.assert_array_equal(rows[1], [6, 7, 8, 9])
    np.testing.assert_array_equal(rows[4], [18, 19, -1, -1])  # rows 20, 21 are past the repeat (last row 19)
    rows20 = window_index(np.arange(10), np.zeros(10, int), bins_per_frame=4)
    np.testing.assert_array_equal(rows20[5], np.arange(12, 32))  # 8 before, 4 own (20..23), 8 after


def test_window_spans_are_the_times_of_the_window_bins():
    """A 30 Hz movie at 4 bins per frame, 20-bin windows: 5 frames (1/6 s) centred on the frame, cut at the
    repeat's edges; a lag moves the span, not its length (the narrations' intervals, issue 31.2)."""
    from neurrator.data.binning import window_spans

    start = np.concatenate([np.arange(10) / 30, 100 + np.arange(10) / 30])  # two repeats of 10 frames
    repeat = np.repeat([0, 1], 10)
    s, e = window_spans(start, start + 1 / 30, repeat, bins_per_frame=4, window_bins=20)
    np.testing.assert_allclose((s[5], e[5]), (start[5] - 2 / 30, start[5] + 3 / 30))
    np.testing.assert_allclose((s[0], e[0]), (start[0], start[0] + 3 / 30))  # cut at the repeat's start
    np.testing.assert_allclose((s[10], e[9]), (100.0, start[9] + 1 / 30))  # never into the other repeat
    s2, e2 = window_spans(start, start + 1 / 30, repeat, bins_per_frame=4, window_bins=20, offset_bins=4)
    np.testing.assert_allclose((s2[5], e2[5]), (s[5] + 1 / 30, e[5] + 1 / 30))


def test_window_index_rejects_interleaved_repeats():
    with pytest.raises(ValueError):
        window_index(np.arange(4), np.array([0, 1, 0, 1]), bins_per_frame=4)


def test_split_repeats_default_and_seeded():
    repeat = np.repeat(np.arange(6), 3)
    s = split_repeats(repeat)
    assert s.train.tolist() == list(range(6))
    assert s.val.tolist() == list(range(6, 12))
    assert s.test.tolist() == list(range(12, 18))
    a = split_repeats(repeat, n_val=1, n_test=2, seed=3)
    b = split_repeats(repeat, n_val=1, n_test=2, seed=3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    allidx = np.concatenate(a)
    assert sorted(allidx.tolist()) == list(range(18))
    # whole repeats only
    for part in a:
        reps = np.unique(repeat[part])
        assert np.isin(np.flatnonzero(np.isin(repeat, reps)), part).all()
    assert len(np.unique(repeat[a.test])) == 2


def test_split_repeats_needs_a_training_repeat():
    with pytest.raises(ValueError, match="repeats"):
        split_repeats(np.repeat(np.arange(4), 2))  # 2 val + 2 test leaves none


def test_bin_session_with_unit_subset():
    times, off = _concat([[0.01, 0.02], [0.03], [0.04, 0.05, 0.06]])
    units = SimpleNamespace(spike_times=times, offsets=off, ids=np.array([10, 11, 12]))
    pres = SimpleNamespace(
        start=np.array([0.0, 0.035]), stop=np.array([0.035, 0.07]), frame=np.array([0, 1]), repeat=np.array([0, 0])
    )
    session = SimpleNamespace(units=units, presentations=pres)
    full = bin_session(session, bins_per_frame=1)
    assert isinstance(full, Binned)
    np.testing.assert_array_equal(full.counts, [[2, 1, 0], [0, 0, 3]])
    sub = bin_session(session, bins_per_frame=1, unit_idx=np.array([2, 0]))
    np.testing.assert_array_equal(sub.counts, [[0, 2], [3, 0]])
    assert sub.unit_ids.tolist() == [12, 10]


@pytest.mark.parametrize("b", [1, 4])
def test_both_counting_methods_agree(b):
    """'windows' (spikes inside the span) and 'edges' (edges into spikes) give identical counts,
    with gaps between presentations, shared edges, spikes exactly on edges and a zero-length interval."""
    rng = np.random.default_rng(2)
    starts = np.cumsum(rng.choice([1 / 30, 1 / 30, 0.05], size=300))
    stops = starts + 1 / 30
    stops[10] = starts[10]  # zero length
    perm = rng.permutation(starts.size)  # caller order need not be time order
    starts, stops = starts[perm], stops[perm]
    units = [np.sort(np.concatenate([rng.uniform(-1, 12, 800), starts[:50], stops[50:80]])) for _ in range(5)]
    units.append(np.zeros(0))
    times, off = _concat([u.tolist() for u in units])
    a = bin_spikes(times, off, starts, stops, bins_per_interval=b, method="windows")
    e = bin_spikes(times, off, starts, stops, bins_per_interval=b, method="edges", block_units=2)
    np.testing.assert_array_equal(a, e)
    assert a[:, :5].sum() > 1000


def test_windows_method_refuses_overlaps():
    times, off = _concat([[0.2]])
    with pytest.raises(ValueError, match="non-overlapping"):
        bin_spikes(times, off, np.array([0.0, 0.5]), np.array([1.0, 1.5]), bins_per_interval=1, method="windows")
    with pytest.raises(ValueError, match="unknown method"):
        bin_spikes(times, off, np.array([0.0]), np.array([1.0]), bins_per_interval=1, method="fast")


def test_rounding_overlaps_count_as_touching():
    """stop_p a few ulps after start_{p+1} (frame times in float) still uses the windows path, same counts."""
    starts = 1000.0 + np.arange(90) / 30
    stops = starts + 1 / 30 + 1e-9  # overlaps the next start by ~1 ns
    assert np.all(stops[:-1] > starts[1:])
    rng = np.random.default_rng(0)
    times, off = _concat([np.sort(rng.uniform(999, 1004, 500)).tolist()])
    a = bin_spikes(times, off, starts, stops, bins_per_interval=4)
    e = bin_spikes(times, off, starts, stops, bins_per_interval=4, method="edges")
    w = bin_spikes(times, off, starts, stops, bins_per_interval=4, method="windows")  # not refused
    np.testing.assert_array_equal(a, e)
    np.testing.assert_array_equal(w, e)
