"""Narration embeddings of unit groups (+ the same of matched random pools) -> how distinct each group's
narrations are: within- minus between-group similarity, and a cross-validated classifier of the source
group from text alone, each with a p-value and a status.

What the nulls test
-------------------
Permuting the group labels of the narrations asks whether narrations are exchangeable between groups.
They are not, even without any stimulus information: every unit set drives the encoder to its own habits,
and a group that decodes badly collapses onto a few captions, which makes it "separate" best (on a session
whose spikes were circularly shifted within each repeat, the region classifier got p = 0.045, and the
preferred-stimulus classifier of permuted cell-type labels p = 0.015). So the statistic is compared with
the SAME statistic of random pools of units put through the same encoder, narrator and classifier:

* ``pools``: one (M, d) embedding array per draw, item for item the narrations of pools that stand for the
  groups (same size; cell types: from the same regions as their units; pools of one draw are disjoint,
  `disjoint_pools`), so a group is distinctive only where it beats what any such set of units gives.
* ``item_fidelity`` / ``pool_item_fidelity``: each narration's similarity with its frame's reference. The
  pools' statistic is regressed on their mean fidelity and the group is tested at its own
  (`neurrator.stats.pools.fidelity_adjusted_pvalue`, t on n - 2 df); without fidelities, the t prediction
  interval on n - 1 df (`neurrator.stats.pools.pool_pvalue`), or the rank p from ``rank_from`` pools.
* ``interpretable``: whether each group's decoding beats its own fidelity null (the decoded subsets'
  narration similarity after FDR). A group that does not is reported ``not interpretable``, whatever its
  separation: its words are not about the stimulus. A row over all groups is not interpretable when any
  of its groups is not. Otherwise ``distinctive`` where BH q <= alpha over the rows of the call, else
  ``not distinctive``.

Without ``pools`` the old label-permutation null is used (``null_kind`` says which).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from neurrator.stats.pools import fidelity_adjusted_pvalue, pool_pvalue
from neurrator.stats.resampling import benjamini_hochberg, block_bootstrap, permutation_pvalue

__all__ = ["GroupSeparation", "STATUSES", "classify_groups", "disjoint_pools", "narration_separation"]

STATUSES = ("distinctive", "not distinctive", "not interpretable")


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
    fidelity: np.ndarray | None = None  # the group's narration similarity with the references (NaN: n/a)
    fidelity_q: np.ndarray | None = None  # its FDR q against its own null (NaN: not tested)
    status: np.ndarray | None = None  # one of STATUSES
    null_kind: np.ndarray | None = None  # how p was computed


def disjoint_pools(groups: dict[str, np.ndarray], *, n_units: int, strata: np.ndarray | None = None,
                   eligible: np.ndarray | None = None, seed: int | np.random.Generator = 0) -> dict[str, np.ndarray]:
    """One random pool per group, as large as the group (and with as many units of each stratum), no unit in two.

    Within each stratum (e.g. region; None: all units) the eligible units are shuffled and handed out in
    chunks, so the draw is a stratified relabelling of the eligible units, unlabelled ones included: what
    the groups would be if group membership carried nothing beyond the strata.

    >>> p = disjoint_pools({"a": np.array([0, 1]), "b": np.array([2])}, n_units=6, seed=0)
    >>> sorted(len(v) for v in p.values()), len(set(np.concatenate(list(p.values()))))
    ([1, 2], 3)
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    st = np.zeros(n_units, np.int64) if strata is None else np.asarray(strata)
    ok = np.ones(n_units, bool) if eligible is None else np.asarray(eligible, bool)
    out: dict[str, list] = {g: [] for g in groups}
    for s_ in np.unique(np.concatenate([st[np.asarray(i, np.int64)] for i in groups.values()])):
        members = rng.permutation(np.flatnonzero(ok & (st == s_)))
        start = 0
        for g, idx in groups.items():
            k = int(np.sum(st[np.asarray(idx, np.int64)] == s_))
            if start + k > len(members):
                raise ValueError(f"stratum {s_!r} has {len(members)} eligible units, the groups need more")
            out[g].append(members[start:start + k])
            start += k
    return {g: np.sort(np.concatenate(v)).astype(np.int64) for g, v in out.items()}


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


def _pooled_p(obs: np.ndarray, null: np.ndarray, fid: np.ndarray | None, null_fid: np.ndarray | None,
              rank_from: int) -> tuple[np.ndarray, str]:
    """Per row: p of ``obs`` (R,) against the pools' ``null`` (n, R), fidelity-adjusted when given."""
    n = len(null)
    if fid is None:
        how = "rank" if n >= rank_from else f"t on {n - 1} df"
        return pool_pvalue(obs, null, rank_from=rank_from), f"re-decoded matched pools (n={n}), {how}"
    p = np.array([fidelity_adjusted_pvalue(obs[j:j + 1], float(fid[j]), null[:, j:j + 1], null_fid[:, j])[1][0]
                  for j in range(len(obs))])
    return p, f"re-decoded matched pools (n={n}), fidelity-adjusted t on {n - 2} df"


def _status(groups: Sequence[str], p: np.ndarray, interpretable: dict[str, bool] | None, *, alpha: float,
            all_row: str = "all") -> np.ndarray:
    q = benjamini_hochberg(np.asarray(p, dtype=np.float64))
    ok = {g: True for g in groups} if interpretable is None else interpretable
    every = all(ok.get(g, True) for g in groups if g != all_row)
    out = []
    for g, qi in zip(groups, q):
        good = every if g == all_row else ok.get(g, True)
        out.append("not interpretable" if not good else
                   "distinctive" if np.nan_to_num(qi, nan=1.0) <= alpha else "not distinctive")
    return np.asarray(out)


def _fidelity_cols(names: Sequence[str], fidelity: dict[str, tuple[float, float]] | None):
    f = np.array([np.nan if fidelity is None or g not in fidelity else fidelity[g][0] for g in names], float)
    q = np.array([np.nan if fidelity is None or g not in fidelity else fidelity[g][1] for g in names], float)
    return f, q


def narration_separation(emb: np.ndarray, labels: np.ndarray, *, group_kind: str, strata: np.ndarray | None = None,
                         pools: Sequence[np.ndarray] | None = None, item_fidelity: np.ndarray | None = None,
                         pool_item_fidelity: np.ndarray | None = None,
                         fidelity: dict[str, tuple[float, float]] | None = None,
                         interpretable: dict[str, bool] | None = None, n_perm: int = 1000, n_boot: int = 200,
                         rank_from: int = 200, alpha: float = 0.05, seed: int = 0) -> GroupSeparation:
    """Within- minus between-group similarity of narrations, per group and overall, with CI, p and status.

    Parameters
    ----------
    emb
        (M, d) sentence embeddings of the narrations (normalised here).
    labels
        (M,) the group each narration was decoded from.
    group_kind
        Recorded in the rows.
    strata
        (M,) e.g. the test window of each narration: the bootstrap resamples whole strata (and the label
        permutations stay within a stratum). None: items are exchangeable.
    pools
        Per draw, (M, d) embeddings of the matched pools' narrations, item for item (see the module
        docstring); None: the label-permutation null (``n_perm`` permutations).
    item_fidelity, pool_item_fidelity
        (M,) and (n, M) each narration's similarity with its reference: the pools' statistic is then
        regressed on their fidelity and each group tested at its own.
    fidelity
        Group -> (decoding fidelity, its FDR q), reported in the rows.
    interpretable
        Group -> whether it beats its fidelity null (sets ``status``); None: every group is.
    n_perm, n_boot, rank_from, alpha, seed
        Label permutations (without pools), bootstrap resamples, pools from which the rank p is used, the
        FDR level of ``status``, seed.

    Returns
    -------
    GroupSeparation
        analysis "within_minus_between_similarity", one row per group plus group "all" (the mean over
        groups); chance_level: the pools' mean (0 with label permutations); p one-sided (greater).
    """
    labels = np.asarray(labels).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    C, M = len(names), len(labels)
    perm_strata = np.zeros(M, np.int64) if strata is None else np.asarray(strata)  # None: permute all labels
    strata = np.arange(M) if strata is None else np.asarray(strata)
    off = ~np.eye(M, dtype=bool)
    rng = np.random.default_rng(seed)

    def with_all(v: np.ndarray) -> np.ndarray:
        return np.append(v, np.nanmean(v))

    def stat(e: np.ndarray) -> np.ndarray:
        return with_all(_within_between(_unit(e) @ _unit(e).T, codes, C, off))

    obs = stat(emb)
    S = _unit(emb) @ _unit(emb).T
    if pools is not None:
        null = np.stack([stat(e) for e in pools])  # (n, C + 1)
        fid = null_fid = None
        if item_fidelity is not None and pool_item_fidelity is not None:
            G = np.eye(C)[codes]
            per = lambda x: np.append(x @ G / G.sum(axis=0), np.mean(x))  # noqa: E731 group means + all
            fid = per(np.asarray(item_fidelity, float))
            null_fid = np.stack([per(np.asarray(x, float)) for x in pool_item_fidelity])
        p, how = _pooled_p(obs, null, fid, null_fid, rank_from)
        chance = np.nanmean(null, axis=0)
    else:
        null = np.stack([with_all(_within_between(S, _permute_within(codes, perm_strata, rng), C, off))
                         for _ in range(n_perm)])
        p = np.append(permutation_pvalue(obs[:C], null[:, :C]), permutation_pvalue(obs[C], null[:, C]))
        how, chance = f"label permutation (n={n_perm})", np.zeros(C + 1)
    sid, sinv = np.unique(strata, return_inverse=True)
    members = [np.flatnonzero(sinv == k) for k in range(len(sid))]
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(sid), size=len(sid))
        idx = np.concatenate([members[k] for k in pick])
        mask = idx[:, None] != idx[None, :]  # never pair an item with its own copy
        boots.append(with_all(_within_between(S[np.ix_(idx, idx)], codes[idx], C, mask)))
    boots = np.asarray(boots)
    rows = [*names, "all"]
    k = C + 1
    f, fq = _fidelity_cols(rows, fidelity)
    return GroupSeparation(np.full(k, "within_minus_between_similarity"), np.full(k, group_kind), np.asarray(rows),
                           obs, np.nanquantile(boots, 0.025, axis=0), np.nanquantile(boots, 0.975, axis=0), chance,
                           p, np.append(np.bincount(codes, minlength=C), M).astype(np.int64), f, fq,
                           _status(rows, p, interpretable, alpha=alpha), np.full(k, how))


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
                    pools: Sequence[np.ndarray] | None = None, item_fidelity: np.ndarray | None = None,
                    pool_item_fidelity: np.ndarray | None = None,
                    fidelity: dict[str, tuple[float, float]] | None = None,
                    interpretable: dict[str, bool] | None = None, n_folds: int = 5, n_perm: int = 200,
                    n_boot: int = 1000, rank_from: int = 200, alpha: float = 0.05, seed: int = 0,
                    analysis: str = "text_classifier_accuracy") -> GroupSeparation:
    """Cross-validated nearest-centroid identification of the source group from narration embeddings.

    Parameters
    ----------
    emb
        (M, d) sentence embeddings of narrations.
    labels
        (M,) source group of each narration.
    strata
        (M,) items that must share a fold (e.g. the window or scene block a narration is of); label
        permutations stay within strata. None: every item is its own stratum.
    pools, item_fidelity, pool_item_fidelity, fidelity, interpretable, rank_from, alpha
        As in `narration_separation`: the same classifier (same folds) on each draw of matched pools; the
        accuracy's fidelity is the mean over all items. Without ``pools``: ``n_perm`` label permutations.
    n_folds, n_perm, n_boot, seed
        Folds (strata assigned to folds at random), label permutations, bootstrap resamples of strata.
    analysis
        The row's analysis name (which narrations were classified).

    Returns
    -------
    GroupSeparation
        One row, analysis ``analysis``, group "all": value = accuracy, CI = bootstrap over strata,
        chance_level = the mean accuracy of the pools (or of permuted labels), p one-sided (greater).
    """
    labels = np.asarray(labels).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    C, M = len(names), len(labels)
    perm_strata = np.zeros(M, np.int64) if strata is None else np.asarray(strata)  # None: permute all labels
    strata = np.arange(M) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    sid, sinv = np.unique(strata, return_inverse=True)
    folds = rng.permutation(np.arange(len(sid)) % max(2, min(n_folds, len(sid))))[sinv]
    correct = _cv_accuracy(_unit(emb), codes, C, folds)
    acc = float(correct.mean())
    if pools is not None:
        null = np.array([_cv_accuracy(_unit(e), codes, C, folds).mean() for e in pools])
        fid = null_fid = None
        if item_fidelity is not None and pool_item_fidelity is not None:
            fid = np.array([np.mean(item_fidelity)])
            null_fid = np.asarray(pool_item_fidelity, float).mean(axis=1)[:, None]
        p, how = _pooled_p(np.array([acc]), null[:, None], fid, null_fid, rank_from)
        p = float(p[0])
    else:
        null = np.array([_cv_accuracy(_unit(emb), _permute_within(codes, perm_strata, rng), C, folds).mean()
                         for _ in range(n_perm)])
        p = float(permutation_pvalue(acc, null)) if n_perm else np.nan
        how = f"label permutation (n={n_perm})"
    est = block_bootstrap(correct.astype(np.float64), strata, n_boot=n_boot, seed=seed)
    every = {"all": all((interpretable or {}).get(g, True) for g in names)}
    f, fq = _fidelity_cols(["all"], fidelity)
    return GroupSeparation(np.array([analysis]), np.array([group_kind]), np.array(["all"]),
                           np.array([acc]), np.array([est.lo]), np.array([est.hi]),
                           np.array([float(null.mean()) if len(null) else 1.0 / C]), np.array([p]),
                           np.array([M], dtype=np.int64), f, fq, _status(["all"], np.array([p]), every, alpha=alpha,
                                                                         all_row=""), np.array([how]))
