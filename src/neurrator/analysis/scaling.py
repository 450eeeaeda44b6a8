"""Per-window scores of random unit draws of several sizes in one region + a shuffled baseline ->
fidelity (or narration similarity) vs population size with CIs, and the size at which the region first
exceeds the baseline, with a bootstrap CI of that size.

Definitions
-----------
* For size n, ``d_w`` = mean over the draws of (score - baseline) in test window w.
* Size n beats the baseline when the one-sided block sign-flip p of ``mean_w d_w > 0`` (signs flipped per
  scene block) has BH q <= alpha over the region's sizes.
* ``crossing_n`` is the smallest size from which every larger size beats the baseline (a monotone
  crossing: an isolated fluke at a small size does not count); NaN when the largest size does not beat
  it (the hippocampus-style control).
* Its CI: resample the draws (per size, with replacement) and the scene blocks of the windows, recompute
  ``d_w``, the tests and the crossing; percentile interval over resamples, a resample without a
  crossing counting as +inf (so ``crossing_hi`` is NaN when more than (1 - level)/2 of them never cross).
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
    p: np.ndarray
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
        FDR level, bootstrap resamples, sign flips, CI coverage, seed.
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

    def draw_mean(a: np.ndarray, pick: np.ndarray | None) -> np.ndarray:  # (S, D, W) -> (S, W)
        out = np.empty((S, W))
        for s in range(S):
            rows = np.flatnonzero(valid[s])
            rows = rows if pick is None else rows[pick[s] % len(rows)]
            out[s] = a[s, rows].mean(axis=0)
        return out

    d_w = draw_mean(diff, None)
    p = _tests(_block_sums(d_w, inv, nb), signs)
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
        sv = draw_mean(x, pick)
        boot_val[b] = (sv * wts).sum(axis=1) / wts.sum()
        pb = _tests(_block_sums(draw_mean(diff, pick), inv, nb)[:, blk], b_signs)
        boot_cross[b] = _crossing(sizes, benjamini_hochberg(pb) <= alpha)
    a = (1 - level) / 2
    lo, hi = np.quantile(boot_val, [a, 1 - a], axis=0)
    bc = np.where(np.isfinite(boot_cross), boot_cross, np.inf)
    c_lo, c_hi = np.quantile(bc, [a, 1 - a], method="lower"), np.quantile(bc, [a, 1 - a], method="higher")[1]
    c_lo = c_lo[0]
    c_lo = float(c_lo) if np.isfinite(c_lo) else float("nan")
    c_hi = float(c_hi) if np.isfinite(c_hi) else float("nan")
    return ScalingCurve(np.full(S, region), sizes, np.full(S, metric), value, lo, hi, n_draws.astype(np.int64), base_val,
                        np.full(S, cross), np.full(S, c_lo), np.full(S, c_hi), p, q)
