"""Concept tuning on a movie with shot cuts: a response locked to the shots but independent of the concepts.

The concepts of a movie change at its cuts, and so does a response that follows anything about the shot
(its brightness, its novelty). Such a response is NOT tuned to the concepts, yet a circular shift by
frames moves its jumps off the cuts, so each shifted copy correlates with the concepts less than the
unshifted response does by chance: the shifts' spread is too narrow and the old null called 11-13% of
these units tuned at p < 0.05. The shot-aware null (`concept_tuning(shots=...)`) also rotates whole shots
(`shot_rotations`), keeping every jump on a cut, and is calibrated (about 5%).
"""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.analysis.single_units import concept_tuning, neurrate_units, shot_rotations
from neurrator.data.responses import TrialResponses


def _shot_world(seed: int, *, F: int = 900, N: int = 200, K: int = 5, gain: float = 0.0):
    """Shots of 15-45 frames (like the simulator's scenes), concepts present or absent per shot, and N
    responses = a random level per shot (independent of the concepts) + AR(1) noise; ``gain`` adds the
    unit's own concept (unit i: concept i % K) to make tuned units."""
    rng = np.random.default_rng(seed)
    lengths = []
    while sum(lengths) < F:
        lengths.append(int(rng.integers(15, 46)))
    shots = np.repeat(np.arange(len(lengths)), lengths)[:F]
    S = int(shots.max()) + 1
    acts = (rng.random((S, K)) < 0.4).astype(float)[shots] + 0.05 * rng.normal(size=(F, K))
    x = rng.normal(size=(S, N))[shots]
    e = rng.normal(size=(F, N))
    ar = np.zeros((F, N))
    for t in range(1, F):
        ar[t] = 0.8 * ar[t - 1] + e[t]
    x = x + 0.3 * ar + gain * acts[:, np.arange(N) % K]
    return x, acts, shots


def _own_concept_p(tun, N, K=5):
    return tun.p[np.arange(N), np.arange(N) % K]


def test_shot_locked_responses_are_not_tuned_under_the_shot_aware_null():
    """Monte Carlo over 3 movies x 200 units (each tested against one concept): the shot-aware null gives
    p < 0.05 in at most 6% of the units; the frame-shift null alone fails (>= 9%)."""
    old_rate, new_rate, new_sig = [], [], 0
    for seed in range(3):
        x, acts, shots = _shot_world(seed)
        old = concept_tuning(x, acts, n_perm=100, min_shift=30, seed=0)
        new = concept_tuning(x, acts, n_perm=100, min_shift=30, shots=shots, seed=0)
        old_rate.append(np.mean(_own_concept_p(old, x.shape[1]) < 0.05))
        new_rate.append(np.mean(_own_concept_p(new, x.shape[1]) < 0.05))
        new_sig += int(new.significant(0.05).sum())
    assert np.mean(new_rate) <= 0.06, new_rate
    assert np.mean(old_rate) >= 0.09, old_rate  # the frame-shift null alone is anti-conservative here
    assert new_sig <= 2  # FDR findings on responses that carry no concept


def test_shot_aware_null_keeps_the_power_for_tuned_units():
    """Units tuned to their concept (gain 2: r ~ 0.7 over ~30 shots) are all found. The cost of the
    calibration shows at weak tuning: at gain 1 (r ~ 0.45) 65% are found instead of the frame-shift null's
    78% (whose extra finds are partly the false ones of the test above)."""
    x, acts, shots = _shot_world(5, N=60, gain=2.0)
    new = concept_tuning(x, acts, n_perm=100, min_shift=30, shots=shots, seed=0)
    assert np.mean(_own_concept_p(new, 60) < 0.05) >= 0.95
    weak = concept_tuning(*_shot_world(5, N=60, gain=1.0)[:2], n_perm=100, min_shift=30, shots=shots, seed=0)
    assert 0.5 <= np.mean(_own_concept_p(weak, 60) < 0.05) < 0.95


def test_shot_aware_null_is_still_calibrated_for_autocorrelated_noise():
    """AR(1) noise (rho 0.9) unrelated to shots: the frame shifts keep guarding the autocorrelation."""
    rng = np.random.default_rng(3)
    F = 300
    shots = np.repeat(np.arange(F // 10), 10)
    acts = np.repeat(rng.random((F // 10, 3)), 10, axis=0)
    x = np.zeros((F, 40))
    e = rng.normal(size=(F, 40))
    for t in range(1, F):
        x[t] = 0.9 * x[t - 1] + e[t]
    tun = concept_tuning(x, acts, n_perm=300, min_shift=30, shots=shots, seed=0)
    assert np.mean(tun.p < 0.05) < 0.15 and not tun.significant(0.05).any()


def test_shot_rotations_keep_every_jump_on_a_cut():
    shots = np.repeat([0, 1, 2, 3, 4], [3, 5, 2, 4, 6])
    rot = shot_rotations(shots)
    assert len(rot) == 4  # k = 1..4
    level = np.array([10.0, 20.0, 30.0, 40.0, 50.0])[shots]
    for idx in rot:
        moved = level[idx]
        assert set(np.flatnonzero(np.diff(moved))) == set(np.flatnonzero(np.diff(shots)))
        assert sorted(np.unique(moved)) == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert shot_rotations(np.zeros(10, np.int64)).shape == (0, 10)  # one shot: no rotation
    with pytest.raises(ValueError, match="shots has 9 frames"):
        concept_tuning(np.zeros((10, 2)), np.zeros((10, 1)), shots=np.zeros(9, np.int64))


def test_neurrate_units_passes_the_movie_shots_to_the_tuning_null():
    x, acts, shots = _shot_world(1, F=600, N=12)
    R = 4
    resp = np.repeat(x[None], R, axis=0) + np.random.default_rng(0).normal(0, 0.3, size=(R, *x.shape))
    tr = TrialResponses(resp.astype(np.float32), np.arange(600), np.arange(R), np.zeros(12), np.ones(12), np.ones(12))
    kw = dict(n_perm=100, n_null=100, min_shift=30, seed=0)
    plain = neurrate_units(tr, np.zeros((600, 1, 2), np.float32), acts, list("abcde"), **kw)
    aware = neurrate_units(tr, np.zeros((600, 1, 2), np.float32), acts, list("abcde"), shots=shots, **kw)
    assert np.all(aware.tuning.p >= plain.tuning.p - 1e-12)  # the shot rotations only widen the null here
    assert not np.array_equal(aware.tuning.p, plain.tuning.p)
