"""Paired scores of B items -> block-respecting permutation nulls and FDR flags (shared by scoring and validation).

A paired score compares item i (a narration, a predicted map) with its own partner (its frame's
reference, its true map). The null pairs every item with the partner of an item in ANOTHER scene block
(`neurrator.stats.resampling.block_permutation`), so scene-level similarity never counts as decoding. Everything
works on the ``(B, B)`` matrix of all pairings, so thousands of permutations are cheap. Scene blocks:
contiguous stretches of ``block_frames`` movie frames (`neurrator.stats.resampling.scene_blocks`, default 1 s at
30 Hz) unless the caller knows the true scenes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neurrator.stats import resampling as stats

__all__ = ["NULL_BLOCKS", "NULL_SHIFT", "beats_null", "block_permutations", "item_blocks", "off_block_mean",
           "paired_null"]

#: What each narration null is, as recorded next to its p-value (`neurrator.decode.scoring.score_narrations`).
NULL_SHIFT = ("narrations rotated against their references round the movie, one uniform lag per test repeat "
              "(circular shift, exact)")
NULL_BLOCKS = "references permuted across 1-s scene blocks (block permutation)"

_PERM_CACHE: dict[tuple[bytes, int, int], np.ndarray] = {}


def item_blocks(n: int, *, frame_ids: Sequence[int] | np.ndarray | None = None,
                     blocks: Sequence[int] | np.ndarray | None = None, block_frames: int = 30) -> np.ndarray:
    """(n,) int64 scene block per item (narration, window): ``blocks`` if given, else ``frame_ids // block_frames``,
    else every item its own block (no frame information: items treated as independent)."""
    if blocks is not None:
        out = np.asarray(blocks, dtype=np.int64)
    elif frame_ids is not None:
        out = stats.scene_blocks(np.asarray(frame_ids), block_frames=block_frames)
    else:
        out = np.arange(n, dtype=np.int64)
    if len(out) != n:
        raise ValueError(f"{len(out)} block ids for {n} items")
    return out


def _repaired_permutation(blocks: np.ndarray, rng: np.random.Generator, *, max_iter: int = 60) -> np.ndarray:
    """A random permutation whose same-block pairs are re-shuffled, vectorised, until none is left
    (or ``max_iter`` rounds: when one block holds more than half of the items some must remain)."""
    n = len(blocks)
    perm = rng.permutation(n)
    for _ in range(max_iter):
        bad = np.flatnonzero(blocks[perm] == blocks)
        if len(bad) == 0:
            break
        pool = np.union1d(bad, rng.choice(n, size=min(n, 2 * len(bad) + 8), replace=False))
        perm[pool] = perm[rng.permutation(pool)]
    return perm


def block_permutations(blocks: np.ndarray, *, n_perm: int, seed: int) -> np.ndarray:
    """``(n_perm, B)`` int64 seeded permutations of ``range(B)`` pairing items of different blocks.

    Up to 256 items: `neurrator.stats.resampling.block_permutation` (item-by-item swap repair). When one block holds
    more than half of the items no full repair exists (some same-block pairs remain, which makes the null
    conservative) and three vectorised rounds are used instead of the slow search. For more items that
    repair costs milliseconds per permutation (25 s for 2,000 permutations of 1,800 test windows), so a
    vectorised repair is used: same-block pairs plus a random sample of other positions are shuffled
    among themselves until no same-block pair is left. Results are cached per (blocks, n_perm, seed):
    every subset is scored on the same windows.
    """
    blocks = np.asarray(blocks, dtype=np.int64)
    key = (blocks.tobytes(), int(n_perm), int(seed))
    if key in _PERM_CACHE:  # the same narrated windows are scored for every subset: permute once
        return _PERM_CACHE[key]
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**63 - 1, size=n_perm)
    out = np.empty((n_perm, len(blocks)), dtype=np.int64)
    # one block with more than half of the items: no full repair exists, do not keep trying
    possible = len(blocks) == 0 or 2 * np.unique(blocks, return_counts=True)[1].max() <= len(blocks)
    rounds = 60 if possible else 3
    for k, s in enumerate(seeds):
        if len(blocks) <= 256 and possible:
            out[k] = stats.block_permutation(len(blocks), blocks, seed=int(s))
        else:
            out[k] = _repaired_permutation(blocks, np.random.default_rng(int(s)), max_iter=rounds)
    out.flags.writeable = False
    if len(_PERM_CACHE) > 8:
        _PERM_CACHE.clear()
    _PERM_CACHE[key] = out
    return out


def paired_null(pair_scores: np.ndarray, blocks: np.ndarray, *, n_perm: int = 5000, seed: int = 0,
                perms: np.ndarray | None = None) -> np.ndarray:
    """The mean paired score under block-respecting permutations of the partners.

    Parameters
    ----------
    pair_scores
        ``(B, B)`` ``pair_scores[i, j]`` = score of item i paired with item j's partner (for narrations:
        cosine of narration i with reference j); the diagonal is the observed pairing.
    blocks
        ``(B,)`` scene block per item; every permutation pairs items of different blocks where possible.
    n_perm, seed
        Permutations drawn and their seed (ignored when ``perms`` is given).
    perms
        Optional precomputed ``(n_perm, B)`` permutations (`block_permutations`).

    Returns
    -------
    (n_perm,) float64
        ``mean_i pair_scores[i, perm[i]]`` per permutation, NaN rows ignored by ``nanmean``.

    Examples
    --------
    >>> M = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> paired_null(M, np.array([0, 1]), n_perm=3).tolist()
    [0.0, 0.0, 0.0]
    """
    M = np.asarray(pair_scores, dtype=np.float64)
    if perms is None:
        perms = block_permutations(blocks, n_perm=n_perm, seed=seed)
    vals = M[np.arange(M.shape[0])[None, :], perms]
    return np.nanmean(vals, axis=1) if vals.shape[1] else np.full(len(perms), np.nan)


def off_block_mean(pair_scores: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """``(B,)`` mean of ``pair_scores[i, j]`` over partners j in other blocks than i (NaN where none):
    each item's expected score under the paired null."""
    M = np.asarray(pair_scores, dtype=np.float64)
    blocks = np.asarray(blocks)
    other = (blocks[:, None] != blocks[None, :]) & np.isfinite(M)
    n = other.sum(axis=1)
    tot = np.where(other, M, 0.0).sum(axis=1)
    return np.divide(tot, n, out=np.full(len(n), np.nan), where=n > 0)


def beats_null(p_values: Sequence[float] | np.ndarray, *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR over subsets: q-values and a "beats the null" flag per subset.

    Call once, after every subset is scored, with each subset's `NarrationScores.p_value`.

    Parameters
    ----------
    p_values
        (S,) one p-value per subset (NaN: not tested; its q is NaN and its flag False).
    alpha
        The false discovery rate controlled.

    Returns
    -------
    q : (S,) float64
    flags : (S,) bool, ``q <= alpha``

    Examples
    --------
    >>> q, ok = beats_null([0.001, 0.04, 0.2, float("nan")])
    >>> [round(float(v), 3) for v in q[:3]], ok.tolist()
    ([0.003, 0.06, 0.2], [True, False, False, False])
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = stats.benjamini_hochberg(p)
    return q, np.isfinite(q) & (q <= alpha)
