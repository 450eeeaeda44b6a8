"""Arrays of scores -> uncertainty and significance: block bootstrap CIs, permutation p-values, FDR.

The one home of neurrator's statistics; every analysis stage calls these instead of writing its own.
Movie frames are not independent samples (scenes last many frames, Allen movies have static stretches),
so resampling and permutation respect contiguous blocks of frames:

* `scene_blocks` assigns each item (a test window, a frame) to a block of ``block_frames`` contiguous
  movie frames (default 1 s at 30 Hz). Real scene boundaries are unknown on real data; fixed blocks of
  at least the autocorrelation length are the conservative stand-in.
* `block_bootstrap` resamples whole blocks with replacement and reports a percentile interval.
* `block_permutation` pairs every item with an item of another block (a paired null that never pairs an
  item with its own scene).
* `circular_shift_corr` tests a correlation over frames against circular shifts of one series, which keep
  its autocorrelation (the standard null for tuning to a continuous movie).
* `permutation_pvalue` uses the (1 + count) / (1 + n) rule, so p is never 0.
* `benjamini_hochberg` turns p-values into q-values (FDR).

Examples
--------
>>> import numpy as np
>>> q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5]))
>>> [round(float(v), 3) for v in q]
[0.04, 0.053, 0.053, 0.5]
>>> est = block_bootstrap(np.arange(10.0), scene_blocks(np.arange(10), block_frames=2), n_boot=200, seed=0)
>>> est.lo < est.value < est.hi
True
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

__all__ = [
    "Estimate",
    "benjamini_hochberg",
    "block_bootstrap",
    "block_permutation",
    "circular_shift_corr",
    "permutation_pvalue",
    "scene_blocks",
    "split_half_reliability",
]


class Estimate(NamedTuple):
    """A statistic with its percentile bootstrap interval."""

    value: float  # the statistic on the data as observed
    lo: float  # lower end of the ``level`` interval
    hi: float  # upper end
    n_boot: int  # bootstrap resamples used (0: no interval, lo = hi = NaN)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of ``p`` (any shape); NaN entries stay NaN and are not counted.

    Parameters
    ----------
    p
        p-values in [0, 1].

    Returns
    -------
    np.ndarray
        q-values, same shape as ``p``: reject at FDR ``alpha`` where ``q <= alpha``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(np.isfinite(flat))
    m = len(ok)
    if m == 0:
        return q
    order = ok[np.argsort(flat[ok], kind="stable")]
    ranked = flat[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = q.ravel()
    out[order] = np.minimum(ranked, 1.0)
    return out.reshape(p.shape)


def permutation_pvalue(observed: float | np.ndarray, null: np.ndarray, *, alternative: str = "greater") -> np.ndarray | float:
    """p-value of ``observed`` against ``null`` draws (axis 0): ``(1 + #extreme) / (1 + n)``.

    Parameters
    ----------
    observed
        Statistic(s) on the data, scalar or shape ``S``.
    null
        ``(n, *S)`` the statistic under the null.
    alternative
        ``greater`` (null >= observed), ``less`` or ``two-sided`` (|null| >= |observed|).

    Values within ``1e-12 * max(1, |observed|)`` of the observed one count as ties (extreme): a
    permutation that only reorders the same sum (a constant narrator's scores) differs from the
    observed value by rounding alone, and its sign must not decide the p-value.
    """
    null = np.asarray(null, dtype=np.float64)
    obs = np.asarray(observed, dtype=np.float64)
    tol = 1e-12 * np.maximum(1.0, np.abs(obs))
    if alternative == "greater":
        extreme = null >= obs - tol
    elif alternative == "less":
        extreme = null <= obs + tol
    elif alternative == "two-sided":
        extreme = np.abs(null) >= np.abs(obs) - tol
    else:
        raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")
    p = (1.0 + np.sum(extreme, axis=0)) / (1.0 + null.shape[0])
    p = np.where(np.isfinite(obs), p, np.nan)
    return float(p) if np.ndim(p) == 0 else p


def scene_blocks(frame: np.ndarray, *, block_frames: int = 30) -> np.ndarray:
    """Block id per item: ``frame // block_frames`` (contiguous stretches of the movie).

    Parameters
    ----------
    frame
        ``(n,) int`` movie frame of each item (windows of the same frame in different repeats share a block).
    block_frames
        Block length in frames (30 = 1 s of a 30 Hz movie).
    """
    if block_frames < 1:
        raise ValueError("block_frames must be >= 1")
    return np.asarray(frame, dtype=np.int64) // int(block_frames)


def block_bootstrap(values: np.ndarray, blocks: np.ndarray, *, stat: Callable[[np.ndarray], float] = np.mean,
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Estimate:
    """``stat(values)`` with a percentile CI from resampling whole blocks with replacement.

    Parameters
    ----------
    values
        ``(n, ...)`` per-item values (axis 0 is resampled).
    blocks
        ``(n,)`` block id per item (`scene_blocks`).
    stat
        Maps a ``(m, ...)`` resample to a scalar (default: the mean over axis 0 of a 1-d array).
    n_boot, seed, level
        Resamples, their seed and the interval's coverage.

    Notes
    -----
    With a single block there is nothing to resample: lo = hi = NaN and ``n_boot`` is 0.
    """
    values = np.asarray(values)
    blocks = np.asarray(blocks)
    if len(values) != len(blocks):
        raise ValueError(f"{len(values)} values but {len(blocks)} block ids")
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    value = float(stat(values))
    ids, inverse = np.unique(blocks, return_inverse=True)
    if len(ids) < 2 or n_boot < 1:
        return Estimate(value, float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    if stat is np.mean and values.ndim == 1:
        # the mean of a block resample is (sum of the drawn blocks' sums) / (their sizes): one matrix product
        counts = np.zeros((n_boot, len(ids)))
        np.add.at(counts, (np.repeat(np.arange(n_boot), len(ids)), pick.ravel()), 1.0)
        sums = np.bincount(inverse, weights=values.astype(np.float64), minlength=len(ids))
        sizes = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
        draws = (counts @ sums) / (counts @ sizes)
    else:
        members = [np.flatnonzero(inverse == b) for b in range(len(ids))]
        draws = np.empty(n_boot)
        for i in range(n_boot):
            draws[i] = stat(values[np.concatenate([members[b] for b in pick[i]])])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(draws, [alpha, 1.0 - alpha])
    return Estimate(value, float(lo), float(hi), int(n_boot))


def block_permutation(n: int, blocks: np.ndarray, *, seed: int) -> np.ndarray:
    """A permutation ``p`` of ``range(n)`` with ``blocks[p[i]] != blocks[i]`` wherever possible.

    A random permutation repaired by swaps; when one block holds more than half of the items no such
    permutation exists and some same-block pairs remain.
    """
    blocks = np.asarray(blocks)
    if len(blocks) != n:
        raise ValueError(f"{len(blocks)} block ids for {n} items")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    if n < 2:
        return perm.astype(np.int64)
    for _ in range(20):
        bad = np.flatnonzero(blocks[perm] == blocks)
        if len(bad) == 0:
            break
        for i in bad:
            if blocks[perm[i]] != blocks[i]:
                continue
            cand = rng.permutation(n)
            ok = cand[(blocks[perm[cand]] != blocks[i]) & (blocks[cand] != blocks[perm[i]])]
            if len(ok):
                j = ok[0]
                perm[i], perm[j] = perm[j], perm[i]
    return perm.astype(np.int64)


def _zscore_cols(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0, keepdims=True)
    sd = np.sqrt((a ** 2).mean(axis=0, keepdims=True))
    return np.divide(a, sd, out=np.zeros_like(a), where=sd > 0)


def circular_shift_corr(x: np.ndarray, Y: np.ndarray, *, n_perm: int = 1000, min_shift: int = 30,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of ``x`` with every column of ``Y`` and two-sided circular-shift p-values.

    The null shifts ``x`` circularly by a random lag in ``[min_shift, F - min_shift]``: each shifted copy
    keeps the autocorrelation of ``x`` but breaks its alignment with ``Y``.

    Parameters
    ----------
    x
        ``(F,)`` a unit's trial-averaged response per frame.
    Y
        ``(F, K)`` activations of K concepts per frame.
    n_perm, min_shift, seed
        Shifts drawn, the smallest lag in frames, and their seed.

    Returns
    -------
    r : (K,) float64
        NaN for a constant column or a constant ``x``.
    p : (K,) float64
        ``(1 + #|r_null| >= |r|) / (1 + n_perm)``; NaN where r is NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    F = len(x)
    if Y.shape[0] != F:
        raise ValueError(f"x has {F} frames but Y has {Y.shape[0]}")
    zx = _zscore_cols(x[:, None])[:, 0]
    zy = _zscore_cols(Y)
    valid = (zy.std(axis=0) > 0) & (zx.std() > 0)
    r = np.where(valid, zx @ zy / F, np.nan)
    lo, hi = min(min_shift, F // 2), max(F - min_shift, F // 2)
    if F < 3 or hi <= lo or n_perm < 1:
        return r, np.full(r.shape, np.nan)
    rng = np.random.default_rng(seed)
    shifts = rng.integers(lo, hi + 1, size=n_perm)
    # r of every shift at once through the FFT cross-correlation: c[s] = sum_t zx[t - s] zy[t]
    fx = np.fft.rfft(zx)
    fy = np.fft.rfft(zy, axis=0)
    cc = np.fft.irfft(np.conj(fx)[:, None] * fy, n=F, axis=0) / F  # cc[s, k] = sum_t zx[t] zy[t + s] / F
    null = cc[shifts]  # x shifted by s: sum_t zx[t - s] zy[t] = cc[s]
    p = permutation_pvalue(r, null, alternative="two-sided")
    return r, np.where(valid, p, np.nan)


def split_half_reliability(resp: np.ndarray, *, n_splits: int = 20, n_null: int = 200, min_shift: int = 30,
                           seed: int = 0) -> tuple[float, float]:
    """Spearman-Brown corrected split-half reliability of a response over repeats, and its null p.

    Parameters
    ----------
    resp
        ``(R, F)`` one unit's response per repeat and frame (R >= 2).
    n_splits
        Random halvings of the repeats averaged over.
    n_null, min_shift
        The null shifts EACH repeat circularly over frames by its own random lag in ``[min_shift,
        F - min_shift]`` (keeps every repeat's autocorrelation, breaks its alignment with the stimulus and
        so with the other repeats) and recomputes the same statistic over the same halvings, ``n_null``
        times. (Shifting one half's mean instead is anti-conservative when the statistic averages over
        halvings: the halvings share repeats, which makes the unshifted average vary more than the
        shifted ones; on iid Poisson noise 12-16 % of units had p < 0.05.)
    seed
        Seeds the halvings and the shifts.

    Returns
    -------
    reliability : float
        Mean over halvings of ``2 r / (1 + r)`` with r the correlation of the two halves' means (NaN for
        a unit that never varies).
    p : float
        One-sided p of the mean half-correlation against the shifted null.

    Notes
    -----
    Every statistic is a function of the repeats' Gram matrix over frames, so the null needs no shifted
    copies: with ``C[i, j, t] = sum_f x_i(f) x_j(f + t)`` (one FFT), shifting repeat i by ``l_i`` gives
    ``G_ij = C[i, j, l_j - l_i]``, and each halving's means, variances and covariance follow from ``G``.
    """
    resp = np.asarray(resp, dtype=np.float64)
    R, F = resp.shape
    if R < 2:
        raise ValueError("split-half reliability needs at least 2 repeats")
    rng = np.random.default_rng(seed)
    wa = np.zeros((n_splits, R))
    wb = np.zeros((n_splits, R))
    for s in range(n_splits):
        perm = rng.permutation(R)
        wa[s, perm[: R // 2]] = 1.0 / (R // 2)
        wb[s, perm[R // 2:]] = 1.0 / (R - R // 2)
    spec = np.fft.rfft(resp, axis=1)
    cross = np.fft.irfft(np.conj(spec)[:, None, :] * spec[None, :, :], n=F, axis=2)  # (R, R, F)
    sums = resp.sum(axis=1)

    def mean_corr(gram: np.ndarray) -> np.ndarray:
        """(..., R, R) Gram matrices -> (...,) mean over halvings of the halves' correlation over frames."""
        ma, mb = wa @ sums / F, wb @ sums / F  # (S,) the halves' means (shift-invariant)
        aa = np.einsum("sr,...rq,sq->...s", wa, gram, wa) / F - ma ** 2
        bb = np.einsum("sr,...rq,sq->...s", wb, gram, wb) / F - mb ** 2
        ab = np.einsum("sr,...rq,sq->...s", wa, gram, wb) / F - ma * mb
        ok = (aa > 1e-12 * (ma ** 2 + 1.0)) & (bb > 1e-12 * (mb ** 2 + 1.0))  # rounding, not variance
        corr = np.divide(ab, np.sqrt(np.where(ok, aa * bb, 1.0)), out=np.zeros_like(ab), where=ok)
        return corr.mean(axis=-1), ok.any(axis=-1)

    r, varies = mean_corr(cross[:, :, 0])
    if not varies:
        return float("nan"), float("nan")
    r = float(r)
    rel = 2 * r / (1 + r) if r > -1 else float("nan")
    lo, hi = min(min_shift, F // 2), max(F - min_shift, F // 2)
    if F < 3 or hi <= lo or n_null < 1:
        return float(rel), float("nan")
    lags = rng.integers(lo, hi + 1, size=(n_null, R))
    rows = np.arange(R)
    gram = cross[rows[:, None], rows[None, :], (lags[:, None, :] - lags[:, :, None]) % F]  # (n_null, R, R)
    null, _ = mean_corr(gram)
    return float(rel), float(permutation_pvalue(r, null, alternative="greater"))
