"""Stimulus registry: movie and flashed-image presentations, onset-aligned binning, the split by image."""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.data.binning import bin_session, window_index
from neurrator.data.splits import split_by_image
from neurrator.errors import NeurratorError
from neurrator.data.stimuli import (
    FLASHED_IMAGES,
    MOVIE,
    bin_intervals,
    occurrence_repeats,
    stimulus_kind,
)


def test_kinds_by_name():
    assert stimulus_kind("natural_scenes") is FLASHED_IMAGES
    assert stimulus_kind("natural_movie_three") is MOVIE and stimulus_kind("my_movie") is MOVIE
    assert stimulus_kind("x", kind="flashed_images") is FLASHED_IMAGES
    with pytest.raises(NeurratorError, match="unknown stimulus kind 'gratings'"):
        stimulus_kind("x", kind="gratings")


def test_occurrence_repeats_by_hand():
    frame = np.array([5, 2, 5, -1, 2, 5, 7])
    np.testing.assert_array_equal(occurrence_repeats(frame, np.arange(7.0)), [0, 0, 1, 0, 1, 2, 0])
    # time order, not row order, defines the occurrence
    np.testing.assert_array_equal(occurrence_repeats(np.array([1, 1]), np.array([2.0, 1.0])), [1, 0])


def test_flashed_images_drop_blanks_and_sort_by_occurrence():
    start = np.arange(7) * 0.25
    frame = np.array([5, 2, 5, -1, 2, 5, 7])
    p = FLASHED_IMAGES.presentations(start, start + 0.25, frame, None, label="f")
    # occurrence 0: 5 @0.0, 2 @0.25, 7 @1.5; occurrence 1: 5 @0.5, 2 @1.0; occurrence 2: 5 @1.25
    np.testing.assert_array_equal(p.frame, [5, 2, 7, 5, 2, 5])
    np.testing.assert_array_equal(p.repeat, [0, 0, 0, 1, 1, 2])
    np.testing.assert_allclose(p.start, [0.0, 0.25, 1.5, 0.5, 1.0, 1.25])
    with pytest.raises(NeurratorError, match="all blanks"):
        FLASHED_IMAGES.presentations(start[:2], start[:2] + 0.25, np.array([-1, -1]), None, label="f")
    with pytest.raises(NeurratorError, match="negative frame indices"):
        MOVIE.presentations(start[:2], start[:2], np.array([0, -1]), None, label="f")


def test_movie_repeats_from_frame_resets():
    start = np.arange(6) / 30
    p = MOVIE.presentations(start, start + 1 / 30, np.array([0, 1, 2, 0, 1, 2]), None, label="f")
    np.testing.assert_array_equal(p.repeat, [0, 0, 0, 1, 1, 1])


def test_bin_intervals_are_onset_aligned_for_images_only():
    start, stop = np.array([1.0, 2.0]), np.array([1.25, 2.25])
    s, e, b = bin_intervals(start, stop, kind=MOVIE, bins_per_frame=4, window_bins=20)
    assert b == 4 and s is not None and np.array_equal(e, stop)
    s, e, b = bin_intervals(start, stop, kind=FLASHED_IMAGES, bins_per_frame=4, window_bins=5, window_s=0.5,
                            latency_s=0.05)
    np.testing.assert_allclose(s, [1.05, 2.05])
    np.testing.assert_allclose(e, [1.55, 2.55])
    assert b == 5


def test_natural_scenes_session_is_binned_on_image_onsets(tmp_path):
    from _nwbfiles import make_nwb

    from neurrator.data.session import load_session

    start = np.arange(6) * 0.25
    frame = np.array([0, 1, -1, 1, 0, 1])
    # unit 100 fires 60 ms after every onset; unit 101 only 0.3 s after the last onset
    spikes = [list(start + 0.06), [start[-1] + 0.30]]
    p = make_nwb(tmp_path / "scenes.nwb", stimulus="natural_scenes", spikes=spikes,
                 pres=(start, start + 0.25, frame))
    ses = load_session(p, stimulus="natural_scenes", fetch_movie=False)
    np.testing.assert_array_equal(ses.presentations.frame, [0, 1, 1, 0, 1])  # blank dropped
    np.testing.assert_array_equal(ses.presentations.repeat, [0, 0, 1, 1, 2])
    binned = bin_session(ses, window_bins=4, window_s=0.4, latency_s=0.0)  # 100-ms bins from each onset
    assert binned.bins_per_frame == 4 and binned.counts.shape == (5 * 4, 2)
    c = binned.counts.reshape(5, 4, 2)
    # unit 100: one spike in bin 0 of each window; the next onset's spike (at +0.31 s) falls in bin 3
    np.testing.assert_array_equal(c[:, 0, 0], [1, 1, 1, 1, 1])
    # the window of the last image (0.75 + ... = onset 1.25) holds unit 101's spike at +0.30 s in bin 3
    last = int(np.flatnonzero(np.isclose(ses.presentations.start, 1.25))[0])
    assert c[last, 3, 1] == 1 and c[:, :, 1].sum() == 1
    # with bins_per_frame = window_bins and offset 0, each window is exactly its presentation's own bins
    rows = window_index(binned.frame, binned.repeat, bins_per_frame=4, window_bins=4)
    np.testing.assert_array_equal(rows, np.arange(20).reshape(5, 4))


def test_split_by_image_holds_whole_images_out():
    rng = np.random.default_rng(0)
    frame = rng.permutation(np.repeat(np.arange(118), 50))
    sp = split_by_image(frame, n_val_images=10, n_test_images=20, seed=3)
    assert len(sp.train) + len(sp.val) + len(sp.test) == frame.size
    test_imgs, val_imgs, train_imgs = (set(frame[i].tolist()) for i in (sp.test, sp.val, sp.train))
    assert len(test_imgs) == 20 and len(val_imgs) == 10 and len(train_imgs) == 88
    assert not test_imgs & train_imgs and not val_imgs & train_imgs and not test_imgs & val_imgs
    assert len(sp.test) == 20 * 50
    again = split_by_image(frame, n_val_images=10, n_test_images=20, seed=3)
    np.testing.assert_array_equal(again.test, sp.test)
    with pytest.raises(NeurratorError, match="cannot hold out"):
        split_by_image(frame, n_val_images=60, n_test_images=58, seed=0)
