"""Reliability when each image was shown once: split over images (odd against even images), and its null."""

from __future__ import annotations

import logging

import numpy as np

from neurrator.data.binning import Binned
from neurrator.data.responses import image_split_reliability, unit_reliability_for
from neurrator.data.splits import Split


def _images(n_images: int = 120, n_units: int = 40, d: int = 8, seed: int = 0):
    """Responses of units to images shown once: the first 10 units follow a feature, the rest are noise."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_images, d))
    resp = rng.poisson(2.0, size=(n_images, n_units)).astype(np.float64)
    resp[:, :10] += 4.0 * np.maximum(feats[:, [0]] + 0.5 * feats[:, [1]], 0)
    return feats, resp - resp.mean(axis=0)


def test_units_that_follow_the_images_are_reliable_and_noise_units_are_not():
    feats, resp = _images()
    rel = image_split_reliability(resp, feats, n_null=300, seed=1)
    assert rel.driven[:10].all()
    assert rel.driven[10:].sum() <= 1
    assert np.all(rel.value[:10] > 0.3)


def test_noise_units_get_near_uniform_p_values():
    """The permutation null holds: on noise alone about 5% of the units have p < 0.05."""
    feats, resp = _images(n_units=400, seed=3)
    rel = image_split_reliability(resp[:, 10:], feats, n_null=200, seed=2)
    share = float(np.mean(rel.p < 0.05))
    assert 0.01 <= share <= 0.10, share
    assert not rel.driven.any()


def test_one_showing_per_image_uses_the_image_split_and_a_movie_repeat_names_its_options(caplog):
    """Flashed images shown once get a reliability from the images; one movie repeat warns with movie options."""
    feats, resp = _images(n_images=40, n_units=6)
    counts = np.clip(np.round(resp - resp.min()), 0, None).astype(np.uint16)
    binned = Binned(counts=counts, frame=np.arange(40), repeat=np.zeros(40, np.int64), bins_per_frame=1,
                    unit_ids=np.arange(6))
    split = Split(train=np.arange(40), val=np.zeros(0, np.int64), test=np.zeros(0, np.int64))
    tr, rel = unit_reliability_for(binned, split, offset_bins=0, seed=0, flashed=True, features=feats)
    assert tr.values.shape == (1, 40, 6) and rel is not None and rel.value.shape == (6,)
    with caplog.at_level(logging.WARNING):
        _, none = unit_reliability_for(binned, split, offset_bins=0, seed=0, flashed=False)
    assert none is None
    assert "--val-repeats" in caplog.text and "still run" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _, none = unit_reliability_for(binned, split, offset_bins=0, seed=0, flashed=True)
    assert none is None and "--val-repeats" not in caplog.text
