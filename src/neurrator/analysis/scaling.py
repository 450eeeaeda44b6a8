"""Per-window scores of random unit draws of several sizes in one region + a shuffled baseline ->
fidelity (or narration similarity) vs population size with CIs, and the size at which the region first
exceeds the baseline, with a bootstrap CI of that size.

The random draw of units is the unit of replication: a claim about "10 VISp units" is about any 10 of
them, not about the few drawn, so the variance between draws enters both the test and the CIs.

Definitions
-----------
* For size n, ``diff[d, w]`` = score - baseline of draw d in test window w; ``m_d`` its mean over windows.
* Size n beats the baseline when BOTH one-sided sign-flip tests reject (an intersection-union test, valid
  at level alpha because each is): over draws (the signs of the ``m_d`` flipped, all ``2^D`` patterns
  when that is at most ``n_perm``: with the default 10 draws p can reach 1/1024) and over scene blocks
  of the windows (the signs of every block's draw-mean differences flipped: the movie's blocks are the
  other sample). A size drawn once (the whole pool) has no draw variance: its block test alone. The
  size's p is the larger of the two; BH over the region's sizes gives q, and q <= alpha a beat.
* ``crossing_n`` is the smallest size from which every larger size beats the baseline (a monotone
  crossing: an isolated fluke at a small size does not count); NaN when the largest size does not beat
  it (``crossing_note`` 'never': the hippocampus-style control).
* Its CI: resample the draws (per size, with replacement) and the scene blocks of the windows, recompute
  the tests and the crossing; percentile interval over resamples. When the interval is open at one end
  within the sizes tried (more than (1 - level)/2 of the resamples never cross, or cross already at the
  smallest size tried above 1 unit), the crossing is NOT ESTIMABLE from these sizes: ``crossing_n`` and
  the open end are NaN and ``crossing_note`` says which end is open, never a number for it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

from neurrator.stats.resampling import benjamini_hochberg

__all__ = ["ScalingCurve", "collect_scores", "population_draws", "scaling_curve"]


def population_draws(unit_idx: np.ndarray, sizes: Sequence[int], *, n_draws: int, seed: int) -> dict[int, list[np.ndarray]]:
    """Random subsets of ``unit_idx`` per size (sizes above the pool dropped; the whole pool drawn once)."""
    unit_idx = np.asarray(unit_idx, dtype=np.int64)
    out: dict[int, list[np.ndarray]] = {}
    for n in sorted({int(s) for s in sizes}):
        if n < 1 or n > unit_idx.size:
            continue
        rng = np.random.default_rng([seed, n])
        k = 1 if n == unit_idx.size else n_draws
        out[n] = [np.sort(rng.choice(unit_idx, size=n, replace=False)) for _ in range(k)]
    return out


def collect_scores(draws: dict[int, list[np.ndarray]], score: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``score(unit_idx) -> (W,)`` to every draw: returns (sizes (S,), scores (S, D, W), NaN-padded)."""
    sizes = np.array(sorted(draws), dtype=np.int64)
    D = max(len(v) for v in draws.values())
    cols = [[np.asarray(score(d), dtype=np.float64) for d in draws[int(n)]] for n in sizes]
    W = cols[0][0].shape[0]
    out = np.full((len(sizes), D, W), np.nan)
    for i, c in enumerate(cols):
        out[i, : len(c)] = np.stack(c)
    return sizes, out


class ScalingCurve(NamedTuple):
    """Columns of ScalingTable (one row per size), plus p and q per size."""

    region: np.ndarray
    n_units: np.ndarray
    metric: np.ndarray
    value: np.ndarray  # mean score over draws and windows
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    n_draws: np.ndarray
    baseline: np.ndarray  # mean baseline score
    crossing_n: np.ndarray  # same for every row of a region
    crossing_lo: np.ndarray
    crossing_hi: np.ndarray
    crossing_note: np.ndarray  # 'estimated', 'never' or 'not estimable: <why>' (same for every row)
    p: np.ndarray  # max of the draw and block sign-flip p per size
    q: np.ndarray


def _crossing(sizes: np.ndarray, sig: np.ndarray) -> float:
    """Smallest size from which all larger sizes are significant; NaN if the largest is not."""
    if not sig[-1]:
        return float("nan")
    i = len(sig) - 1
    while i > 0 and sig[i - 1]:
        i -= 1
    return float(sizes[i])


def _block_sums(diff_w: np.ndarray, inv: np.ndarray, nb: int) -> np.ndarray:
    """(S, W) per-window differences -> (S, nb) sums per scene block."""
    return np.stack([np.bincount(inv, weights=np.nan_to_num(d), minlength=nb) for d in diff_w])


def _tests(sums: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """One-sided sign-flip p per size from (S, B) block sums and (n_perm, B) random signs -> (S,)."""
    obs = sums.sum(axis=1)
    null = sums @ signs.T  # (S, n_perm)
    return (1.0 + (null >= obs[:, None] - 1e-12).sum(axis=1)) / (1.0 + signs.shape[0])


def _draw_signs(D: int, *, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """(n, D) sign patterns over D draws: all ``2^D`` but the observed one when that fits in ``n_perm``
    (an exact test: p = (1 + #patterns at least as extreme) / 2^D), else ``n_perm`` random ones."""
    if 2 ** D <= n_perm + 1:
        codes = np.arange(1, 2 ** D)  # pattern 0 is the observed sign (+1 everywhere)
        return np.where((codes[:, None] >> np.arange(D)[None, :]) & 1, -1.0, 1.0)
    return rng.choice(np.array([-1.0, 1.0]), size=(n_perm, D))


def _draw_test(means: np.ndarray, signs: np.ndarray) -> float:
    """One-sided sign-flip p of ``sum(means) > 0`` over the (D,) draw means; NaN with fewer than 2 draws."""
    if len(means) < 2:
        return float("nan")
    return float(_tests(means[None, :], signs)[0])


def _crossing_note(cross: float, boot_cross: np.ndarray, sizes: np.ndarray, *, level: float
                   ) -> tuple[float, float, float, str]:
    """(crossing_n, lo, hi, note) from the observed crossing and its resamples (+inf: never crossed)."""
    nan = float("nan")
    if not np.isfinite(cross):
        return nan, nan, nan, "never"
    a = (1 - level) / 2
    lo = float(np.quantile(boot_cross, a, method="lower"))
    hi = float(np.quantile(boot_cross, 1 - a, method="higher"))
    open_hi = not np.isfinite(hi)
    open_lo = lo <= sizes[0] and sizes[0] > 1
    if not (open_hi or open_lo):
        return cross, lo, hi, "estimated"
    why = []
    if open_lo:
        why.append(f"CI open below: {np.mean(boot_cross <= sizes[0]):.0%} of resamples cross at the smallest size "
                   f"tried ({int(sizes[0])})")
    if open_hi:
        why.append(f"CI open above: {np.mean(~np.isfinite(boot_cross)):.0%} of resamples never cross within the "
                   f"sizes tried")
    return nan, (nan if open_lo else lo), (nan if open_hi else hi), "not estimable: " + "; ".join(why)


def scaling_curve(scores: np.ndarray, baseline: np.ndarray, *, sizes: np.ndarray, blocks: np.ndarray, region: str,
                  metric: str, alpha: float = 0.05, n_boot: int = 1000, n_perm: int = 1000, level: float = 0.95,
                  seed: int = 0) -> ScalingCurve:
    """Score vs population size with CIs, per-size tests against the baseline and the crossing size.

    Parameters
    ----------
    scores
        (S, D, W) score of draw d of size s in test window w (NaN for missing draws), `collect_scores`.
    baseline
        Shuffled-baseline scores broadcastable to (S, D, W): e.g. (W,) or the same predictions scored
        against block-permuted targets (S, D, W).
    sizes
        (S,) ascending population sizes.
    blocks
        (W,) scene block of each window.
    region, metric
        Recorded in the rows.
    alpha, n_boot, n_perm, level, seed
        FDR level, bootstrap resamples (over draws and blocks), sign flips per test, CI coverage, seed.

    Examples
    --------
    A region whose draws all beat the baseline from 10 units on, over 30 windows in 10 blocks:

    >>> rng = np.random.default_rng(0)
    >>> gain = np.array([0.0, 0.0, 0.3, 0.6])[:, None, None]
    >>> x = gain + 0.05 * rng.normal(size=(4, 10, 30))
    >>> c = scaling_curve(x, 0.0, sizes=np.array([1, 3, 10, 30]), blocks=np.arange(30) // 3, region="VISp",
    ...                   metric="cos", n_boot=100)
    >>> float(c.crossing_n[0]), str(c.crossing_note[0])
    (10.0, 'estimated')
    """
    x = np.asarray(scores, dtype=np.float64)
    S, D, W = x.shape
    sizes = np.asarray(sizes, dtype=np.int64)
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float64), x.shape)
    diff = x - base
    valid = np.isfinite(x).all(axis=2)  # (S, D) which draws exist
    n_draws = valid.sum(axis=1)
    _, inv = np.unique(np.asarray(blocks), return_inverse=True)
    nb = int(inv.max()) + 1
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, nb))
    draw_signs = {int(k): _draw_signs(int(k), n_perm=n_perm, rng=rng) for k in set(n_draws.tolist()) if k >= 2}

    def rows_of(s: int, pick: np.ndarray | None) -> np.ndarray:
        rows = np.flatnonzero(valid[s])
        return rows if pick is None else rows[pick[s, : len(rows)] % len(rows)]

    def tested(dw: np.ndarray, blk: np.ndarray | None, pick: np.ndarray | None, b_signs: np.ndarray) -> np.ndarray:
        """p per size: the larger of the block test on the draw-mean differences and the draw test
        (``blk``: the resampled blocks, ``pick``: the resampled draws; None: as observed)."""
        sums = _block_sums(np.stack([dw[s, rows_of(s, pick)].mean(axis=0) for s in range(S)]), inv, nb)
        if blk is not None:
            sums = sums[:, blk]
        p_block = _tests(sums, b_signs)
        w = np.ones(W) if blk is None else np.bincount(blk, minlength=nb).astype(np.float64)[inv]
        p = np.empty(S)
        for s in range(S):
            rows = rows_of(s, pick)
            means = (dw[s, rows] * w).sum(axis=1) / w.sum()
            pd_ = _draw_test(means, draw_signs[len(rows)]) if len(rows) >= 2 else float("nan")
            p[s] = p_block[s] if not np.isfinite(pd_) else max(p_block[s], pd_)
        return p

    p = tested(diff, None, None, signs)
    q = benjamini_hochberg(p)
    cross = _crossing(sizes, q <= alpha)
    value = np.array([np.nanmean(x[s][valid[s]]) for s in range(S)])
    base_val = np.array([np.nanmean(base[s][valid[s]]) for s in range(S)])

    boot_val = np.empty((n_boot, S))
    boot_cross = np.empty(n_boot)
    b_signs = signs[: min(n_perm, 200)]
    for b in range(n_boot):
        pick = rng.integers(0, D, size=(S, D))
        blk = rng.integers(0, nb, size=nb)  # resampled scene blocks; each drawn copy flips on its own
        wts = np.bincount(blk, minlength=nb).astype(np.float64)[inv]
        sv = np.stack([x[s, rows_of(s, pick)].mean(axis=0) for s in range(S)])
        boot_val[b] = (sv * wts).sum(axis=1) / wts.sum()
        boot_cross[b] = _crossing(sizes, benjamini_hochberg(tested(diff, blk, pick, b_signs)) <= alpha)
    a = (1 - level) / 2
    lo, hi = np.quantile(boot_val, [a, 1 - a], axis=0)
    bc = np.where(np.isfinite(boot_cross), boot_cross, np.inf)
    c_n, c_lo, c_hi, note = _crossing_note(cross, bc, sizes, level=level)
    return ScalingCurve(np.full(S, region), sizes, np.full(S, metric), value, lo, hi, n_draws.astype(np.int64),
                        base_val, np.full(S, c_n), np.full(S, c_lo), np.full(S, c_hi), np.full(S, note, dtype=object),
                        p, q)
