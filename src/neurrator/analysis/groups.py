"""Unit groups (regions, cell types, local populations) + per-unit tuning / decoded concepts / narration
embeddings -> group neurration: enriched concepts against size-matched random pools, within- vs
between-group narration similarity, and a cross-validated classifier of the source group from text.

Every p-value here comes from a null built the same way as the statistic:

* Enrichment (`tuning_enrichment`, `decoded_enrichment`): ``effect = stat(group) - mean stat(pools)``,
  the pools being ``n_null`` random sets of the same size drawn from ALL analysed units (a label
  permutation: under the null the group is one such random set); ``p = (1 + #pools >= group) /
  (1 + n_null)``; q = BH over groups x concepts of one call. CI: bootstrap of the group's units (tuning)
  or of scene blocks of the windows (decoded). Pools drawn only from the units outside the group give a
  null that is too narrow (finite-population correction) and shifted against the group: measured
  false-positive rates of 0.17-0.30 at a nominal 0.05 on pure-noise tuning, so they are not used.
  `null_pool_false_positive_rate` measures how often a random pool passes the same test (should be
  <= alpha).
* Narration similarity (`narration_separation`): mean cosine of a group's narrations with each other
  minus with other groups' narrations; null: group labels permuted (within strata, e.g. within each
  test window, when given); CI: bootstrap of strata (or items), pairs of an item with its own copy
  excluded.
* Classifier (`classify_groups`): nearest class centroid by cosine on sentence embeddings, folds by
  strata (all narrations of one window or scene in one fold); chance = mean accuracy over label
  permutations, p from the same permutations.

Rows are returned as NamedTuples of columns named after ndx-neurrator's GroupComparisonTable and
GroupSeparationTable.
"""

from __future__ import annotations

import math

from typing import Callable, NamedTuple, Sequence

import numpy as np

from neurrator.stats.resampling import benjamini_hochberg, block_bootstrap, permutation_pvalue

__all__ = [
    "GroupComparison",
    "GroupSeparation",
    "classify_groups",
    "decoded_enrichment",
    "narration_separation",
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


class GroupSeparation(NamedTuple):
    """Columns of GroupSeparationTable (one row per analysis x group)."""

    analysis: np.ndarray
    group_kind: np.ndarray
    group: np.ndarray
    value: np.ndarray
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    chance_level: np.ndarray
    p: np.ndarray
    n: np.ndarray


def _pools(units: np.ndarray, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size) random pools of ``units``, each without replacement."""
    return units[np.argsort(rng.random((n, units.size)), axis=1)[:, :size]]


def _matched_pools(idx: np.ndarray, strata: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, len(idx)) random pools with as many units of each stratum (e.g. region) as ``idx`` has."""
    parts = []
    for s_ in np.unique(strata[idx]):
        members = np.flatnonzero(strata == s_)
        parts.append(_pools(members, int(np.sum(strata[idx] == s_)), n, rng))
    return np.concatenate(parts, axis=1)


def _null_pools(idx: np.ndarray, N: int, strata: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    return _pools(np.arange(N), idx.size, n, rng) if strata is None else _matched_pools(idx, strata, n, rng)


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


def decoded_enrichment(groups: dict[str, np.ndarray], decoded_concepts: Callable[[np.ndarray], np.ndarray],
                       concept_names: Sequence[str], *, n_units: int, blocks: np.ndarray, group_kind: str,
                       n_pools: int = 100, n_boot: int = 200, tail: str = "gaussian", seed: int = 0) -> GroupComparison:
    """Concepts enriched in the patches decoded from each group vs patches decoded from size-matched pools.

    Parameters
    ----------
    groups
        Group name -> (n_g,) unit indices.
    decoded_concepts
        ``decoded_concepts(unit_idx (n,)) -> (W, K)`` concept activations (SAE) of the patches the
        encoder predicts from those units on the W test windows.
    concept_names
        K names.
    n_units
        N, the pools are drawn from ``range(N)``.
    blocks
        (W,) scene block of each window, for the bootstrap CI.
    n_pools, n_boot, seed
        Null pools per group, bootstrap resamples, seed.
    tail
        ``gaussian`` (default): one-sided p of the group's mean activation as a z-score against the
        pools' mean and standard deviation (a mean over many windows: close to normal), so a few dozen
        pools suffice, each pool costing one encoder pass; ``empirical``: the rank p, at least
        ``1 / (1 + n_pools)``, which needs n_pools >> K / alpha to survive FDR over K concepts.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for g, idx in groups.items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0 or idx.size >= n_units:
            continue
        acts = np.asarray(decoded_concepts(idx), dtype=np.float64)  # (W, K)
        pools = np.stack([np.asarray(decoded_concepts(np.sort(pl)), dtype=np.float64)
                          for pl in _pools(np.arange(n_units), idx.size, n_pools, rng)])  # (n_pools, W, K)
        obs, null = acts.mean(axis=0), pools.mean(axis=1)
        if tail == "gaussian":
            sd = null.std(axis=0, ddof=1)
            z = np.divide(obs - null.mean(axis=0), sd, out=np.zeros_like(obs), where=sd > 0)
            p = 0.5 * _erfc(z / math.sqrt(2.0))
        elif tail == "empirical":
            p = permutation_pvalue(obs, null, alternative="greater")
        else:
            raise ValueError(f"tail must be gaussian or empirical, not {tail!r}")
        diff = acts - pools.mean(axis=0)  # (W, K)
        for k, c in enumerate(concept_names):
            est = block_bootstrap(diff[:, k], blocks, n_boot=n_boot, seed=int(rng.integers(2**31)))
            rows.append((g, c, est.value, est.lo, est.hi, p[k], idx.size, n_pools))
    return _comparison(rows, group_kind, "decoded")


def _unit(emb: np.ndarray) -> np.ndarray:
    e = np.asarray(emb, dtype=np.float64)
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.where(n > 0, n, 1.0)


def _within_between(S: np.ndarray, codes: np.ndarray, C: int, mask: np.ndarray) -> np.ndarray:
    """(C,) mean within-group minus mean between-group similarity over the pairs allowed by ``mask``."""
    G = np.eye(C)[codes]  # (M, C)
    Sm, Mm = S * mask, mask.astype(np.float64)
    ws, wn = np.einsum("ic,ij,jc->c", G, Sm, G), np.einsum("ic,ij,jc->c", G, Mm, G)
    rs, rn = G.T @ Sm.sum(axis=1), G.T @ Mm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ws / wn - (rs - ws) / (rn - wn)


def _permute_within(codes: np.ndarray, strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = codes.copy()
    for s in np.unique(strata):
        m = np.flatnonzero(strata == s)
        out[m] = codes[rng.permutation(m)]
    return out


def narration_separation(emb: np.ndarray, labels: np.ndarray, *, group_kind: str, strata: np.ndarray | None = None,
                         n_perm: int = 1000, n_boot: int = 200, seed: int = 0) -> GroupSeparation:
    """Within- minus between-group similarity of narrations, per group and overall, with CI and p.

    Parameters
    ----------
    emb
        (M, d) sentence embeddings of the narrations (normalised here).
    labels
        (M,) the group each narration was decoded from.
    group_kind
        Recorded in the rows.
    strata
        (M,) e.g. the test window of each narration: labels are permuted within a stratum and the
        bootstrap resamples whole strata. None: items are exchangeable.
    n_perm, n_boot, seed

    Returns
    -------
    GroupSeparation
        analysis "within_minus_between_similarity", one row per group plus group "all" (the mean over
        groups); chance_level 0; p one-sided (greater).
    """
    labels = np.asarray(labels).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    C, M = len(names), len(labels)
    perm_strata = np.zeros(M, np.int64) if strata is None else np.asarray(strata)  # None: permute all labels
    strata = np.arange(M) if strata is None else np.asarray(strata)
    S = _unit(emb) @ _unit(emb).T
    off = ~np.eye(M, dtype=bool)
    rng = np.random.default_rng(seed)
    obs = _within_between(S, codes, C, off)
    null = np.stack([_within_between(S, _permute_within(codes, perm_strata, rng), C, off) for _ in range(n_perm)])
    sid, sinv = np.unique(strata, return_inverse=True)
    members = [np.flatnonzero(sinv == k) for k in range(len(sid))]
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(sid), size=len(sid))
        idx = np.concatenate([members[k] for k in pick])
        mask = idx[:, None] != idx[None, :]  # never pair an item with its own copy
        boots.append(_within_between(S[np.ix_(idx, idx)], codes[idx], C, mask))
    boots = np.asarray(boots)
    obs_all, null_all, boot_all = np.nanmean(obs), np.nanmean(null, axis=1), np.nanmean(boots, axis=1)
    val = np.append(obs, obs_all)
    lo = np.append(np.nanquantile(boots, 0.025, axis=0), np.nanquantile(boot_all, 0.025))
    hi = np.append(np.nanquantile(boots, 0.975, axis=0), np.nanquantile(boot_all, 0.975))
    p = np.append(permutation_pvalue(obs, null), permutation_pvalue(obs_all, null_all))
    n = np.append(np.bincount(codes, minlength=C), M)
    k = C + 1
    return GroupSeparation(np.full(k, "within_minus_between_similarity"), np.full(k, group_kind),
                           np.append(names, "all"), val, lo, hi, np.zeros(k), p, n.astype(np.int64))


def _cv_accuracy(E: np.ndarray, codes: np.ndarray, C: int, folds: np.ndarray) -> np.ndarray:
    """(M,) bool correct per item of nearest-centroid (cosine) classification, cross-validated over folds."""
    correct = np.zeros(len(codes), dtype=bool)
    for f in np.unique(folds):
        test = folds == f
        tr = ~test
        cent = np.zeros((C, E.shape[1]))
        np.add.at(cent, codes[tr], E[tr])
        cent = _unit(cent)
        have = np.bincount(codes[tr], minlength=C) > 0
        sims = np.where(have[None, :], E[test] @ cent.T, -np.inf)
        correct[test] = np.argmax(sims, axis=1) == codes[test]
    return correct


def classify_groups(emb: np.ndarray, labels: np.ndarray, *, group_kind: str, strata: np.ndarray | None = None,
                    n_folds: int = 5, n_perm: int = 200, n_boot: int = 1000, seed: int = 0,
                    analysis: str = "text_classifier_accuracy") -> GroupSeparation:
    """Cross-validated nearest-centroid identification of the source group from narration embeddings.

    Parameters
    ----------
    emb
        (M, d) sentence embeddings of narrations.
    labels
        (M,) source group of each narration.
    strata
        (M,) items that must share a fold (e.g. the window or scene block a narration is of); labels are
        permuted within strata for the null. None: every item is its own stratum.
    n_folds, n_perm, n_boot, seed
        Folds (strata assigned to folds at random), label permutations, bootstrap resamples of strata.
    analysis
        The row's analysis name (which narrations were classified).

    Returns
    -------
    GroupSeparation
        One row, analysis ``analysis``, group "all": value = accuracy, CI = bootstrap over
        strata, chance_level = mean accuracy with permuted labels, p = permutation p.
    """
    labels = np.asarray(labels).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    C, M = len(names), len(labels)
    perm_strata = np.zeros(M, np.int64) if strata is None else np.asarray(strata)  # None: permute all labels
    strata = np.arange(M) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    sid, sinv = np.unique(strata, return_inverse=True)
    folds = rng.permutation(np.arange(len(sid)) % max(2, min(n_folds, len(sid))))[sinv]
    E = _unit(emb)
    correct = _cv_accuracy(E, codes, C, folds)
    acc = float(correct.mean())
    null = np.array([_cv_accuracy(E, _permute_within(codes, perm_strata, rng), C, folds).mean()
                     for _ in range(n_perm)])
    est = block_bootstrap(correct.astype(np.float64), strata, n_boot=n_boot, seed=seed)
    return GroupSeparation(np.array([analysis]), np.array([group_kind]), np.array(["all"]),
                           np.array([acc]), np.array([est.lo]), np.array([est.hi]),
                           np.array([float(null.mean()) if n_perm else 1.0 / C]),
                           np.array([float(permutation_pvalue(acc, null)) if n_perm else np.nan]),
                           np.array([M], dtype=np.int64))
