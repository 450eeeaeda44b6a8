"""Concept cards of unnamed SAE latents: top frames and the units that follow them, on planted data."""

from __future__ import annotations

import numpy as np

from neurrator.analysis.concept_cards import concept_cards


def _planted(seed: int = 0):
    """60 frames, 4 latents: 0 dead, 1 a sparse 'bump' latent, 2 a copy of 1 (scaled), 3 named; 6 units, of which
    units 2 and 4 follow latent 1."""
    rng = np.random.default_rng(seed)
    F = 60
    lat = np.zeros((F, 4))
    bumps = [5, 25, 45]
    for b in bumps:
        lat[b - 1:b + 2, 1] = [1.0, 3.0, 1.0]
    lat[:, 2] = 0.5 * lat[:, 1]
    lat[::3, 3] = 1.0
    resp = rng.normal(size=(F, 6)) * 0.3
    resp[:, 2] += lat[:, 1]
    resp[:, 4] += 0.5 * lat[:, 1]
    return lat, resp - resp.mean(axis=0), bumps


def test_cards_show_the_unnamed_latent_its_frames_and_the_units_that_follow_it():
    lat, resp, bumps = _planted()
    cards = concept_cards(lat, ["", "", "", "car"], ["unnamed:dead", "unnamed:no-correlated-word",
                                                     "unnamed:no-correlated-word", "caption-correlation"],
                          mean_response=resp, frames=np.arange(60), min_active=3, min_separation=10, n_units=2)
    # the dead latent and the named one get no card; the copy of latent 1 is not shown twice
    assert cards.latent.tolist() == [1]
    assert cards.why_unnamed == ["unnamed:no-correlated-word"]
    assert cards.frames_active.tolist() == [9]
    assert sorted(cards.top_frames[0].tolist()) == bumps
    assert cards.top_units[0].tolist() == [2, 4]
    assert np.all(cards.top_unit_r[0] > 0.5)


def test_cards_use_only_the_frames_with_responses_and_skip_units_that_do_not_follow():
    lat, resp, _ = _planted()
    frames = np.arange(0, 60, 2)  # responses on every other frame only (e.g. the training frames)
    flat = np.zeros((len(frames), 3))  # no unit varies
    cards = concept_cards(lat, ["", "", "", ""], ["unnamed:rare"] * 4, mean_response=flat, frames=frames,
                          min_active=3, min_separation=10)
    assert cards.n >= 1
    assert all(len(u) == 0 and len(r) == 0 for u, r in zip(cards.top_units, cards.top_unit_r))


def test_no_card_when_every_latent_is_named_or_silent():
    lat, resp, _ = _planted()
    cards = concept_cards(lat[:, [0, 3]], ["", "car"], ["unnamed:dead", "x"], mean_response=resp,
                          frames=np.arange(60))
    assert cards.n == 0 and cards.top_frames == []
