"""Unit groups (regions, cell types, local populations) + per-unit tuning / decoded concepts -> concepts
enriched in each group against matched random pools of units.

Every p-value here comes from a null built the same way as the statistic:

* Tuning enrichment (`tuning_enrichment`): ``effect = mean tuning r(group) - mean over pools``, the pools
  being ``n_null`` random sets of the same size drawn from ALL analysed units, or with as many units of
  each region as the group (``strata``; cell types); ``p = (1 + #pools >= group) / (1 + n_null)`` (a
  label permutation: under the null the group is one such random set), intersected with a one-sided test
  that the group's mean r is positive; q = BH over groups x concepts of one call; CI: bootstrap of the
  group's units. Pools drawn only from the units outside the group give a null that is too narrow
  (finite-population correction) and shifted against the group: measured false-positive rates of
  0.17-0.30 at a nominal 0.05 on pure-noise tuning, so they are not used.
  `null_pool_false_positive_rate` measures how often a random pool passes the same test (<= alpha).
* Decoded enrichment (`decoded_enrichment`): the correlation of a concept's activation in the patches
  decoded from the group with its activation in the true patches, against re-decoded pools of the same
  size (and regions, for cell types) regressed on their decoding fidelity; Student's t on n - 2 df, since
  each pool is one encoder pass and there are few (`neurrator.stats.pools`).

Narration separation and the text classifier live in `neurrator.analysis.separation`. Rows are returned
as NamedTuples of columns named after ndx-neurrator's GroupComparisonTable.
"""

from __future__ import annotations

import math
import warnings

from typing import Callable, NamedTuple, Sequence

import numpy as np

from neurrator.analysis.single_units import paired_correlation_p
from neurrator.stats.pools import fidelity_adjusted_pvalue
from neurrator.stats.resampling import benjamini_hochberg, permutation_pvalue

__all__ = [
    "GroupComparison",
    "decoded_enrichment",
    "matched_pools",
    "null_pool_false_positive_rate",
    "tuning_enrichment",
]


class GroupComparison(NamedTuple):
    """Columns of GroupComparisonTable (one row per group x concept)."""

    group_kind: np.ndarray
    group: np.ndarray
    source: np.ndarray  # "tuning" or "decoded"
    concept: np.ndarray
    effect: np.ndarray
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    p: np.ndarray
    q: np.ndarray
    n_units: np.ndarray
    n_null_draws: np.ndarray

    def enriched(self, group: str, *, alpha: float = 0.05) -> list[str]:
        """Concepts of ``group`` with q <= alpha and a positive effect, strongest first."""
        m = (self.group == group) & (np.nan_to_num(self.q, nan=1.0) <= alpha) & (self.effect > 0)
        order = np.argsort(-self.effect[m], kind="stable")
        return [str(c) for c in self.concept[m][order]]


def _pools(units: np.ndarray, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size) random pools of ``units``, each without replacement."""
    return units[np.argsort(rng.random((n, units.size)), axis=1)[:, :size]]


def _null_pools(idx: np.ndarray, N: int, strata: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    return matched_pools(idx, n, n_units=N, strata=strata, seed=rng)


def matched_pools(idx: np.ndarray, n: int, *, n_units: int, strata: np.ndarray | None = None,
                  eligible: np.ndarray | None = None, seed: int | np.random.Generator = 0) -> np.ndarray:
    """(n_g,) a group's unit indices -> (n, n_g) random pools of as many units, each without replacement.

    ``strata`` (N,) e.g. each unit's region: every pool holds as many units of each stratum as the group
    (size- and region-matched). ``eligible`` (N,) bool: pools are drawn only from these units (the group's
    own units must be eligible). None: all of ``range(n_units)``.

    >>> matched_pools(np.array([0, 1, 5]), 2, n_units=8, strata=np.array(list("aaaabbbb")), seed=0).shape
    (2, 3)
    """
    idx = np.asarray(idx, dtype=np.int64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ok = np.ones(n_units, bool) if eligible is None else np.asarray(eligible, bool)
    units = np.flatnonzero(ok)
    if strata is None:
        return _pools(units, idx.size, n, rng)
    st = np.asarray(strata)
    parts = []
    for s_ in np.unique(st[idx]):
        members = units[st[units] == s_]
        parts.append(_pools(members, int(np.sum(st[idx] == s_)), n, rng))
    return np.concatenate(parts, axis=1)


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _comparison(rows: list[tuple], kind: str, source: str) -> GroupComparison:
    if not rows:
        e = np.zeros(0)
        return GroupComparison(*(np.zeros(0, dtype=str),) * 4, e, e, e, e, e, np.zeros(0, np.int64),
                               np.zeros(0, np.int64))
    g, c, eff, lo, hi, p, n, nn = (np.asarray(x) for x in zip(*rows))
    m = len(rows)
    return GroupComparison(np.full(m, kind), g.astype(str), np.full(m, source), c.astype(str), eff.astype(float),
                           lo.astype(float), hi.astype(float), p.astype(float), benjamini_hochberg(p.astype(float)),
                           n.astype(np.int64), nn.astype(np.int64))


def _enrichment_test(r: np.ndarray, idx: np.ndarray, strata: np.ndarray | None, *, n_null: int, n_boot: int,
                     rng: np.random.Generator, level: float = 0.95) -> tuple[np.ndarray, ...]:
    obs = r[idx].mean(axis=0)
    null = r[_null_pools(idx, r.shape[0], strata, n_null, rng)].mean(axis=1)  # (n_null, K)
    null_mean = null.mean(axis=0)
    boots = np.stack([r[rng.choice(idx, size=idx.size, replace=True)].mean(axis=0) for _ in range(n_boot)])
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a], axis=0) - null_mean
    p_pool = permutation_pvalue(obs, null, alternative="greater")
    # intersection-union test: enriched means above the pools AND tuned at all (mean r > 0, one-sided
    # normal test over the group's units), so a group of untuned units is never "enriched" only because
    # the pools are negatively tuned to a concept
    sd = r[idx].std(axis=0, ddof=1) if idx.size > 1 else np.zeros_like(obs)
    z = np.divide(obs * math.sqrt(idx.size), sd, out=np.zeros_like(obs), where=sd > 0)
    p_positive = 0.5 * _erfc(z / math.sqrt(2.0))
    return obs - null_mean, lo, hi, np.maximum(p_pool, p_positive)


def tuning_enrichment(r: np.ndarray, groups: dict[str, np.ndarray], concept_names: Sequence[str], *,
                      group_kind: str, strata: np.ndarray | None = None, n_null: int = 1000, n_boot: int = 200,
                      seed: int = 0) -> GroupComparison:
    """Concepts enriched in the tuning of each group's units vs size-matched pools of other units.

    A concept is enriched when the group's mean tuning r exceeds that of size-matched random pools AND is
    above zero (intersection-union test: p is the larger of the pool permutation p and the one-sided
    normal p of the group's mean r), so untuned groups (hippocampus) are not called enriched where the
    pools are merely negatively tuned.

    Parameters
    ----------
    r
        (N, K) tuning correlations (`neurrator.analysis.single_units.ConceptTuning.r`; NaN, a silent unit, counts as 0).
    groups
        Group name -> (n_g,) unit indices.
    concept_names
        K names.
    group_kind
        "region", "cell_type", "local_population", ...
    strata
        (N,) e.g. each unit's region: the pools then hold as many units of each stratum as the group
        (region-matched as well as size-matched), so a cell type is compared with other units of the
        SAME regions, not with a population that includes CA1 and LGd. Use it for cell types; None
        (pools from all units) for regions themselves.
    n_null, n_boot, seed
        Null pools per group, bootstrap resamples of the group's units (>= 200 recommended), seed.
    """
    r = np.nan_to_num(np.asarray(r, dtype=np.float64), nan=0.0)
    N = r.shape[0]
    rng = np.random.default_rng(seed)
    rows = []
    for g, idx in groups.items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0 or idx.size >= N:
            continue
        eff, lo, hi, p = _enrichment_test(r, idx, None if strata is None else np.asarray(strata), n_null=n_null,
                                          n_boot=n_boot, rng=rng)
        rows += [(g, c, eff[k], lo[k], hi[k], p[k], idx.size, n_null) for k, c in enumerate(concept_names)]
    return _comparison(rows, group_kind, "tuning")


def null_pool_false_positive_rate(r: np.ndarray, size: int, *, n_draws: int = 200, n_null: int = 1000,
                                  alpha: float = 0.05, exclude: np.ndarray | None = None,
                                  strata: np.ndarray | None = None, seed: int = 0) -> tuple[float, int]:
    """Fraction of random pools of ``size`` units that show any enriched concept (q <= alpha over K).

    Each draw picks a random pool (from all units not in ``exclude``, e.g. the tagged classes) and runs
    exactly the test of `tuning_enrichment` on it (size-matched pools from all units, or also matched
    over ``strata`` as in `tuning_enrichment`).

    Returns
    -------
    (false_positive_rate, n_draws)
    """
    r = np.nan_to_num(np.asarray(r, dtype=np.float64), nan=0.0)
    N = r.shape[0]
    rng = np.random.default_rng(seed)
    pool_from = np.setdiff1d(np.arange(N), [] if exclude is None else np.asarray(exclude, dtype=np.int64))
    hits = 0
    for _ in range(n_draws):
        idx = rng.choice(pool_from, size=size, replace=False)
        obs = r[idx].mean(axis=0)
        null = r[_null_pools(idx, N, None if strata is None else np.asarray(strata), n_null, rng)].mean(axis=1)
        q = benjamini_hochberg(permutation_pvalue(obs, null, alternative="greater"))
        hits += bool(np.any(q <= alpha))
    return hits / max(1, n_draws), int(n_draws)


def _corr(acts: np.ndarray, truth: np.ndarray, *, undefined: float = 0.0) -> np.ndarray:
    """(W, K), (W, K) -> (K,) Pearson r of each decoded column with the true one (``undefined`` where the
    truth is constant; 0 where the decoded column is)."""
    def z(x):
        x = np.asarray(x, dtype=np.float64)
        sd = x.std(axis=0)
        return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0) * (sd > 0)
    return np.where(np.asarray(truth).std(axis=0) > 0, (z(acts) * z(truth)).mean(axis=0), undefined)


def _block_boot_r(acts: np.ndarray, truth: np.ndarray, blocks: np.ndarray, n_boot: int, rng: np.random.Generator,
                  level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(K,) percentile CI of `_corr` over resamples of whole blocks of windows (r recomputed each time)."""
    ids, inv = np.unique(blocks, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(ids))]
    if len(ids) < 2 or n_boot < 1:
        return np.full(acts.shape[1], np.nan), np.full(acts.shape[1], np.nan)
    boots = np.stack([_corr(acts[i], truth[i], undefined=np.nan) for i in
                      (np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))]) for _ in range(n_boot))])
    a = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a concept absent from every resample: NaN
        return np.nanquantile(boots, a, axis=0), np.nanquantile(boots, 1 - a, axis=0)


def decoded_enrichment(groups: dict[str, np.ndarray],
                       decode: Callable[[np.ndarray], tuple[np.ndarray, float]], concept_names: Sequence[str], *,
                       truth: np.ndarray, n_units: int, blocks: np.ndarray, group_kind: str,
                       strata: np.ndarray | None = None, min_shift: int = 30, shots: np.ndarray | None = None,
                       n_pools: int = 25, n_boot: int = 200, seed: int = 0) -> GroupComparison:
    """Concepts that the patches decoded from each group carry more than matched pools of the same fidelity.

    The statistic is the correlation, over the W windows, of a concept's activation in the patches decoded
    from the group with its activation in the TRUE patches: how much of the concept's coming and going
    reaches the decoded patches. (Its mean activation, used before, moves with what the encoder makes of
    any unit set's rates, stimulus or not: on a session without stimulus locking CA1 and LGd got
    "enriched" concepts.) The null re-decodes ``n_pools`` random pools of the group's size, drawn from the
    same strata (cell types: from the same regions as their units, so CA1 and LGd never enter a cortical
    class's pools; regions: from all units), regresses the pools' correlations on their decoding fidelity
    and tests the group's residual at its own fidelity (`neurrator.stats.pools.fidelity_adjusted_pvalue`:
    Student's t on n_pools - 2 df), so a group is not "enriched" merely because it decodes better or worse
    than the pools. The pools alone are not enough: they overlap each other far more than they overlap the
    group, so on a global-null session their correlations cluster while a homogeneous group's decoded time
    course wanders off with the movie's few shots (LGd got "dark" at q = 0.004). So the group's r must also
    beat its own temporal null (`neurrator.analysis.single_units.paired_correlation_p`: shifts of the
    decoded series and rotations of whole shots, one-sided), and p is the larger of the two p-values
    (intersection-union). ``effect`` = the group's r minus the pools' regression line at the group's
    fidelity; p = 1 where the group's own r is not positive; q = BH over groups x concepts. CI: block bootstrap of the windows, r recomputed (the regression line held
    fixed).

    Parameters
    ----------
    groups
        Group name -> (n_g,) unit indices.
    decode
        ``decode(unit_idx (n,)) -> (acts (W, K), fidelity)``: the concept activations (SAE) of the patches
        the encoder predicts from those units on the W windows, and their decoding fidelity (e.g. the
        mean centred patch cosine on the same windows).
    concept_names
        K names.
    truth
        (W, K) the concepts' activations on the true patches of the same windows.
    n_units
        N; pools are drawn from ``range(N)`` (within ``strata``).
    blocks
        (W,) scene block of each window, for the bootstrap CI.
    strata
        (N,) e.g. each unit's region: pools hold as many units of each stratum as the group. None: from all.
    min_shift, shots
        The temporal null: the smallest circular shift of the windows (1 s of them) and the (W,) shot id of
        each window (None: shifts only).
    n_pools, n_boot, seed
        Null pools per group (each one encoder pass; at least 4), bootstrap resamples, and seed. With
        pools of (nearly) equal fidelity the slope is dropped: t on n_pools - 1 df against the pools.
    """
    truth = np.asarray(truth, dtype=np.float64)
    strata = None if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    rows = []
    for g, idx in groups.items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0 or idx.size >= n_units:
            continue
        acts, fid = decode(idx)
        acts = np.asarray(acts, dtype=np.float64)
        r_g = _corr(acts, truth)
        null_r, null_f = [], []
        for pool in _null_pools(idx, n_units, strata, n_pools, rng):
            a, f = decode(np.sort(pool))
            null_r.append(_corr(a, truth))
            null_f.append(float(f))
        effect, p = fidelity_adjusted_pvalue(r_g, float(fid), np.asarray(null_r), np.asarray(null_f))
        _, p_time = paired_correlation_p(acts, truth, min_shift=min_shift, shots=shots)
        p = np.where(r_g > 0, np.fmax(p, np.nan_to_num(p_time, nan=1.0) / 2), 1.0)
        lo, hi = _block_boot_r(acts, truth, np.asarray(blocks), n_boot, rng)
        line = r_g - effect
        rows += [(g, c, effect[k], lo[k] - line[k], hi[k] - line[k], p[k], idx.size, n_pools)
                 for k, c in enumerate(concept_names)]
    return _comparison(rows, group_kind, "decoded")
