"""A group's statistic + the same statistic of n random matched pools -> one-sided p-values that fit n.

Group comparisons re-run the whole measurement (encoder, narrator, classifier) on random pools of units
matched to the group, and ask whether the group stands out. Each pool costs an encoder pass, so there are
few of them (tens), and the reference distribution must fit that number:

* `pool_pvalue`: with few pools the group is treated as one more draw from the pools' normal
  distribution: ``t = (x - mean) / (sd * sqrt(1 + 1/n))`` follows Student's t on n - 1 degrees of freedom
  exactly (the prediction interval of a new draw; a z-test that takes the pools' mean and sd as known is
  anti-conservative at n = 25). With ``rank_from`` or more pools the empirical rank p is used instead (no
  normality assumed).
* `fidelity_adjusted_pvalue`: the pools also differ in how well they decode, and a statistic that moves
  with decoding quality must be compared at the group's own fidelity: the pools' statistic is regressed on
  their fidelity and the group's residual is tested against the regression's prediction interval
  (t on n - 2 degrees of freedom; the interval widens when the group's fidelity lies outside the pools').

Both are exact under their normal models, whatever the pools' common component (pools that share units
are correlated; the common part cancels in the differences).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fidelity_adjusted_pvalue", "incomplete_beta", "pool_pvalue", "t_sf"]


def incomplete_beta(a: float | np.ndarray, b: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Regularised incomplete beta I_x(a, b), elementwise, by Lentz's continued fraction (Numerical Recipes 6.4).

    >>> round(float(incomplete_beta(2.0, 3.0, np.array(0.4))), 4)  # 1 - sum_{j<2} C(4,j) .4^j .6^(4-j)
    0.5248
    """
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    a, b = np.broadcast_to(a, x.shape), np.broadcast_to(b, x.shape)
    lg = np.vectorize(math.lgamma, otypes=[np.float64])
    with np.errstate(divide="ignore", invalid="ignore"):
        front = np.exp(lg(a + b) - lg(a) - lg(b) + a * np.log(x) + b * np.log1p(-x))
    swap = x > (a + 1.0) / (a + b + 2.0)
    aa, bb, xx = np.where(swap, b, a), np.where(swap, a, b), np.where(swap, 1.0 - x, x)
    tiny = 1e-300
    c = np.ones_like(xx)
    d = 1.0 - (aa + bb) * xx / (aa + 1.0)
    d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
    h = d.copy()
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (bb - m) * xx / ((aa + m2 - 1) * (aa + m2)),
                    -(aa + m) * (aa + bb + m) * xx / ((aa + m2) * (aa + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
            c = 1.0 + num / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            h = h * d * c
    cf = front * h / aa
    return np.where(x <= 0, 0.0, np.where(x >= 1, 1.0, np.where(swap, 1.0 - cf, cf)))


def t_sf(t: np.ndarray, df: float | np.ndarray) -> np.ndarray:
    """P(T >= t) for Student's t on ``df`` degrees of freedom (elementwise; NaN stays NaN).

    >>> np.round(t_sf(np.array([0.0, 2.093, -2.093]), 19), 3).tolist()
    [0.5, 0.025, 0.975]
    """
    t = np.asarray(t, dtype=np.float64)
    df = np.broadcast_to(np.asarray(df, dtype=np.float64), t.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + np.nan_to_num(t) ** 2))
    return np.where(np.isnan(t), np.nan, np.where(t >= 0, tail, 1.0 - tail))


def pool_pvalue(obs: np.ndarray, null: np.ndarray, *, rank_from: int = 200) -> np.ndarray:
    """(...) group statistic, (n, ...) the pools' -> (...) one-sided p (greater) of the group among the pools.

    Fewer than ``rank_from`` pools: Student's t prediction interval on n - 1 degrees of freedom; otherwise
    the rank p ``(1 + #pools >= obs) / (1 + n)``. A constant pool statistic gives p = 1 where the group is
    not above it and 0 where it is (no spread: any excess is certain). NaN where ``obs`` is NaN.

    >>> float(pool_pvalue(np.array(3.0), np.array([0.0, 1.0, -1.0, 0.5, -0.5])).round(3))
    0.013
    """
    obs = np.asarray(obs, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    n = null.shape[0]
    if n >= rank_from:
        p = (1.0 + np.sum(null >= obs[None] - 1e-12 * np.maximum(1.0, np.abs(obs[None])), axis=0)) / (1.0 + n)
        return np.where(np.isnan(obs), np.nan, p)
    if n < 2:
        return np.full(obs.shape, np.nan)
    mean, sd = null.mean(axis=0), null.std(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (obs - mean) / (sd * math.sqrt(1.0 + 1.0 / n))
    p = np.where(sd > 0, t_sf(np.where(sd > 0, t, 0.0), n - 1), np.where(obs > mean, 0.0, 1.0))
    return np.where(np.isnan(obs), np.nan, p)


def fidelity_adjusted_pvalue(obs: np.ndarray, obs_fidelity: float, null: np.ndarray,
                             null_fidelity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The group's statistic against the pools' regressed on their decoding fidelity.

    Parameters
    ----------
    obs
        (K,) the group's statistic (e.g. one value per concept).
    obs_fidelity
        The group's decoding fidelity.
    null
        (n, K) the pools' statistic.
    null_fidelity
        (n,) the pools' fidelity.

    Returns
    -------
    effect : (K,)
        The group's statistic minus the pools' regression line at the group's fidelity.
    p : (K,)
        One-sided (greater) p of ``effect`` against the regression's prediction interval, Student's t on
        n - 2 degrees of freedom; with pools of (nearly) equal fidelity the slope is dropped and this is
        `pool_pvalue`'s t test.

    Examples
    --------
    Pools whose statistic rises with fidelity; the group decodes better, and its statistic is what its
    fidelity predicts (not enriched), or well above it:

    >>> f = np.linspace(0.1, 0.3, 12); null = (2 * f + 0.01 * np.sin(7 * f * 40))[:, None]
    >>> eff, p = fidelity_adjusted_pvalue(np.array([0.8, 1.2]), 0.4, np.repeat(null, 2, axis=1), f)
    >>> np.round(eff, 2).tolist(), bool(p[0] > 0.2), bool(p[1] < 0.001)
    ([0.0, 0.4], True, True)
    """
    obs = np.asarray(obs, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    f = np.asarray(null_fidelity, dtype=np.float64)
    n = len(f)
    fc = f - f.mean()
    sxx = float(fc @ fc)
    if n < 4 or sxx <= 1e-12 * max(1.0, float(np.abs(f).max()) ** 2):
        return obs - null.mean(axis=0), pool_pvalue(obs, null, rank_from=np.inf)
    slope = fc @ (null - null.mean(axis=0)) / sxx  # (K,)
    pred_null = null.mean(axis=0) + np.outer(fc, slope)
    s = np.sqrt(np.sum((null - pred_null) ** 2, axis=0) / (n - 2))
    at = null.mean(axis=0) + slope * (obs_fidelity - f.mean())
    effect = obs - at
    se = s * math.sqrt(1.0 + 1.0 / n + (obs_fidelity - f.mean()) ** 2 / sxx)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = effect / se
    p = np.where(se > 0, t_sf(np.where(se > 0, t, 0.0), n - 2), np.where(effect > 0, 0.0, 1.0))
    return effect, np.where(np.isnan(obs), np.nan, p)
