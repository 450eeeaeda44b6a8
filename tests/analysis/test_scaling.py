"""Scaling: fidelity vs population size and the shuffled-baseline crossing on planted curves."""

from __future__ import annotations

import numpy as np

from neurrator.analysis.scaling import collect_scores, population_draws, scaling_curve
from neurrator.stats.resampling import scene_blocks


def test_population_draws():
    draws = population_draws(np.arange(10, 30), [1, 5, 20, 50], n_draws=3, seed=0)
    assert sorted(draws) == [1, 5, 20]  # 50 > 20 units dropped
    assert len(draws[5]) == 3 and len(draws[20]) == 1  # the whole pool once
    assert all(len(set(d.tolist())) == 5 and set(d.tolist()) <= set(range(10, 30)) for d in draws[5])
    sizes, scores = collect_scores(draws, lambda idx: np.full(4, float(len(idx))))
    assert sizes.tolist() == [1, 5, 20] and scores.shape == (3, 3, 4)
    assert np.isnan(scores[2, 1:]).all() and (scores[1] == 5).all()


def _curve(gain, seed=0, W=120, D=4):
    rng = np.random.default_rng(seed)
    sizes = np.array([1, 3, 10, 30, 100])
    scene = rng.normal(0, 0.05, size=W // 10).repeat(10)  # shared per-scene fluctuation
    mean = 0.3 + gain * np.log10(sizes) / 2
    scores = mean[:, None, None] + scene[None, None, :] + rng.normal(0, 0.05, size=(5, D, W))
    return sizes, scores, 0.3 + scene * 0 + rng.normal(0, 0.01, size=W)


def test_visual_region_crosses_with_a_finite_ci():
    sizes, scores, base = _curve(gain=0.1)
    out = scaling_curve(scores, base, sizes=sizes, blocks=scene_blocks(np.arange(120), block_frames=10),
                        region="VISp", metric="centred_cosine", n_boot=200, n_perm=500)
    c = out.crossing_n[0]
    assert c in (3, 10, 30)
    assert np.isfinite(out.crossing_lo[0]) and np.isfinite(out.crossing_hi[0])
    assert out.crossing_lo[0] <= c <= out.crossing_hi[0]
    assert out.q[-1] < 0.05 and out.q[0] > 0.05
    assert (out.ci_lo <= out.value).all() and (out.value <= out.ci_hi).all()
    assert out.n_draws.tolist() == [4] * 5


def test_control_region_never_crosses():
    sizes, scores, base = _curve(gain=0.0, seed=1)
    out = scaling_curve(scores, base, sizes=sizes, blocks=scene_blocks(np.arange(120), block_frames=10),
                        region="CA1", metric="centred_cosine", n_boot=200, n_perm=500)
    assert np.isnan(out.crossing_n).all()
    assert (out.q > 0.05).all()
