"""neurrator.stats.resampling: hand-computed values and brute-force checks of the fast paths."""

import numpy as np
import pytest

from neurrator.stats import resampling as stats


def test_benjamini_hochberg_by_hand_and_nan():
    q = stats.benjamini_hochberg(np.array([0.01, np.nan, 0.04, 0.03, 0.5]))
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3, 4]], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])


def test_permutation_pvalue_counts_ties_and_never_zero():
    null = np.array([0.0, 1.0, 2.0, 3.0])
    assert stats.permutation_pvalue(2.0, null) == pytest.approx(3 / 5)
    assert stats.permutation_pvalue(10.0, null) == pytest.approx(1 / 5)
    assert stats.permutation_pvalue(-2.5, null, alternative="two-sided") == pytest.approx(2 / 5)


def test_block_bootstrap_resamples_blocks_not_items():
    # two blocks with constant values 0 and 1: every resample's mean is 0, 0.5 or 1
    values = np.array([0.0] * 5 + [1.0] * 5)
    est = stats.block_bootstrap(values, np.array([0] * 5 + [1] * 5), n_boot=300, seed=1)
    assert est.value == 0.5 and est.lo == 0.0 and est.hi == 1.0
    single = stats.block_bootstrap(values, np.zeros(10), n_boot=300, seed=1)
    assert np.isnan(single.lo) and single.n_boot == 0


def test_block_permutation_leaves_every_block():
    blocks = np.repeat(np.arange(6), 4)
    perm = stats.block_permutation(len(blocks), blocks, seed=3)
    assert sorted(perm) == list(range(len(blocks)))
    assert np.all(blocks[perm] != blocks)


def test_circular_shift_corr_matches_brute_force_and_finds_planted_tuning():
    rng = np.random.default_rng(0)
    F = 120
    Y = rng.normal(size=(F, 3))
    x = 2 * Y[:, 1] + rng.normal(scale=0.5, size=F)
    r, p = stats.circular_shift_corr(x, Y, n_perm=400, min_shift=10, seed=0)
    np.testing.assert_allclose(r, [np.corrcoef(x, Y[:, k])[0, 1] for k in range(3)], atol=1e-12)
    assert p[1] == pytest.approx(1 / 401) and p[0] > 0.05 and p[2] > 0.05
    # the FFT null equals the brute-force shifted correlations
    zx = (x - x.mean()) / x.std()
    for s in (10, 57, 110):
        brute = np.corrcoef(np.roll(x, s), Y[:, 0])[0, 1]
        zy = (Y[:, 0] - Y[:, 0].mean()) / Y[:, 0].std()
        cc = np.fft.irfft(np.conj(np.fft.rfft(zx)) * np.fft.rfft(zy), n=F) / F
        assert cc[s] == pytest.approx(brute)


def test_circular_shift_null_is_calibrated_for_autocorrelated_noise():
    rng = np.random.default_rng(1)
    F, K = 300, 40
    smooth = np.ones(15) / 15
    Y = np.stack([np.convolve(rng.normal(size=F + 14), smooth, "valid") for _ in range(K)], axis=1)
    x = np.convolve(rng.normal(size=F + 14), smooth, "valid")
    _, p = stats.circular_shift_corr(x, Y, n_perm=300, min_shift=30, seed=2)
    assert np.mean(p < 0.05) < 0.2  # smooth series correlate by chance often; the shift null absorbs it


def test_split_half_reliability_separates_driven_from_noise():
    rng = np.random.default_rng(2)
    signal = np.sin(np.linspace(0, 12, 200))
    driven = signal[None] + rng.normal(scale=0.5, size=(10, 200))
    noise = rng.normal(size=(10, 200))
    rel, p = stats.split_half_reliability(driven, seed=0)
    rel0, p0 = stats.split_half_reliability(noise, seed=0)
    assert rel > 0.8 and p < 0.01
    assert abs(rel0) < 0.3 and p0 > 0.01
    assert np.isnan(stats.split_half_reliability(np.ones((4, 50)))[0])


def test_split_half_reliability_null_is_calibrated_on_noise():
    """iid Poisson noise (no stimulus locking): about 5% of units below p 0.05. The old null (one half's
    mean shifted, the halvings averaged) gave 12-16% here, because halvings share repeats."""
    rng = np.random.default_rng(0)
    for F, min_shift in ((300, 30), (60, 1)):
        p = np.array([stats.split_half_reliability(rng.poisson(2.0, size=(12, F)).astype(float), n_null=500,
                                                   min_shift=min_shift, seed=i)[1] for i in range(300)])
        assert 0.02 <= np.mean(p < 0.05) <= 0.085, (F, np.mean(p < 0.05))
