"""Target token maps -> their duplicate structure -> chance levels of the frame-identification metrics.

Many movie frames are pixel-identical (the demo movie: 213 of 900 frames, in groups of up to 37; real
Allen movies have static stretches too), so their target maps are identical and tie exactly. Ties count
in the prediction's favour (`neurrator.decode.fidelity.frame_identification`), so chance is not ``1/F``.

The null: the prediction carries no information about the true frame. It is the exact map of a
uniformly random movie frame ``u`` (so u's group of identical frames ranks first, all tied), and the other
distinct maps follow in a uniformly random order. For a true frame ``f`` in a group of ``g(f)`` identical
frames among ``F``:

* top-1: ``g(f) / F`` (u lands in f's group);
* top-k: ``g(f) / F + sum over other groups b of |b| / F * P(|b| + sizes of the groups between b and
  f's group < k)``, counted exactly over subsets (`rank_chance`);
* within 1 s (a hit when a group tied for the best similarity has a member within +/- ``half`` frames
  of f): ``sum of the sizes of the groups meeting that window / F`` (`window_chance`).

Chance levels are the mean of these over the evaluated predictions: the expected score of the shuffled
control of a perfect decoder when distinct maps are unrelated. Where neighbouring distinct frames are
very similar (slow scenes), a random frame's map ranks its own neighbours high, and the shuffled control
of top-k, k > 1, can differ from this level; the shuffled row is reported next to it.

Examples
--------
>>> groups = duplicate_groups(np.array([[0.], [0.], [1.], [2.]], np.float32))
>>> groups.tolist(), rank_chance(groups, np.array([0, 2]), k=1).tolist()
([0, 0, 1, 2], [0.5, 0.25])
"""

from __future__ import annotations

import hashlib
from math import comb

import numpy as np

from neurrator.stats.nulls import block_permutations

__all__ = ["duplicate_groups", "identification_null", "rank_chance", "window_chance"]


def duplicate_groups(targets: np.ndarray) -> np.ndarray:
    """``(F,) int64`` group id per frame: frames with bit-identical target maps share a group.

    Groups are numbered in order of first appearance (frame 0 is in group 0).

    Parameters
    ----------
    targets
        ``(F, ...)`` target token maps (any trailing shape).
    """
    t = np.ascontiguousarray(targets)
    ids: dict[bytes, int] = {}
    out = np.empty(len(t), dtype=np.int64)
    for i in range(len(t)):
        key = hashlib.blake2b(t[i].tobytes(), digest_size=20).digest()
        out[i] = ids.setdefault(key, len(ids))
    return out


def _subset_counts(size_counts: np.ndarray, k: int) -> np.ndarray:
    """``cnt[j, t]``: number of j-subsets of the groups with total size t, for j, t < k."""
    cnt = np.zeros((k, k))
    cnt[0, 0] = 1.0
    for s in range(1, min(k, len(size_counts))):
        n = int(size_counts[s])
        if n == 0:
            continue
        new = np.zeros_like(cnt)
        for i in range(0, min(n, (k - 1) // s) + 1):  # i groups of size s in the subset
            new[i:, s * i:] += comb(n, i) * cnt[: k - i, : k - s * i]
        cnt = new
    return cnt


def _topk_given_size(size_counts: np.ndarray, s_a: int, k: int) -> float:
    """P(rank < k) for a true group of size ``s_a``; ``size_counts[s]`` = number of groups of size s."""
    F = int(np.sum(np.arange(len(size_counts)) * size_counts))
    G = int(np.sum(size_counts))
    p = s_a / F  # the random frame is in the true group: rank 0
    for s_b in range(1, min(k, len(size_counts))):
        n_b = int(size_counts[s_b]) - (s_b == s_a)
        if n_b <= 0:
            continue
        rest = size_counts.copy()
        rest[s_a] -= 1
        rest[s_b] -= 1
        m = k - s_b  # the groups ranked between b and the true group must total < m frames
        cnt = _subset_counts(rest, m)
        # the true group sits at a uniform position among the G - 2 other groups: the j groups before
        # it are a uniformly random j-subset of them
        q = sum(cnt[j, :m].sum() / comb(G - 2, j) for j in range(min(m, G - 1))) / (G - 1)
        p += n_b * s_b / F * q
    return float(p)


def rank_chance(groups: np.ndarray, true_frame: np.ndarray, *, k: int) -> np.ndarray:
    """Chance that the true frame's rank (frames strictly more similar) is below ``k``, per prediction.

    Parameters
    ----------
    groups
        ``(F,)`` `duplicate_groups` of the candidate frames.
    true_frame
        ``(P,)`` true frame of each prediction.
    k
        1 for top-1, 5 for top-5.

    Returns
    -------
    (P,) float64
    """
    groups = np.asarray(groups, dtype=np.int64)
    true_frame = np.asarray(true_frame, dtype=np.int64)
    if k < 1:
        raise ValueError("k must be >= 1")
    sizes = np.bincount(groups)
    size_counts = np.bincount(sizes)
    F = len(groups)
    if k == 1:
        by_size = {int(s): s / F for s in np.unique(sizes)}
    elif k >= F:
        by_size = {int(s): 1.0 for s in np.unique(sizes)}
    else:
        by_size = {int(s): _topk_given_size(size_counts, int(s), k) for s in np.unique(sizes[groups[true_frame]])}
    return np.array([by_size[int(s)] for s in sizes[groups[true_frame]]], dtype=np.float64)


def window_chance(groups: np.ndarray, true_frame: np.ndarray, *, half: int) -> np.ndarray:
    """Chance that the best-matching group has a member within ``+/- half`` frames of the true frame.

    ``sum of the sizes of the groups with a member in [f - half, f + half] / F`` per prediction
    (the window is cut at the movie's edges).

    Returns
    -------
    (P,) float64
    """
    groups = np.asarray(groups, dtype=np.int64)
    true_frame = np.asarray(true_frame, dtype=np.int64)
    sizes = np.bincount(groups)
    F = len(groups)
    per_frame = {}
    for f in np.unique(true_frame):
        g = np.unique(groups[max(0, f - half): f + half + 1])
        per_frame[int(f)] = sizes[g].sum() / F
    return np.array([per_frame[int(f)] for f in true_frame], dtype=np.float64)


def identification_null(group_rank: np.ndarray, best_group: np.ndarray, groups: np.ndarray, true_frame: np.ndarray,
                        *, half: int, blocks: np.ndarray, n_perm: int = 2000, seed: int = 0,
                        chunk: int = 64) -> dict[str, np.ndarray]:
    """Paired null of the rank metrics: predictions paired with the true frames of windows of OTHER blocks.

    Parameters
    ----------
    group_rank
        ``(P, G)`` rank each group of identical maps would have for prediction i (frames strictly more
        similar than that group's map).
    best_group
        ``(P,)`` the group most similar to prediction i.
    groups, true_frame
        `duplicate_groups` of the candidates and ``(P,)`` true frame per prediction.
    half
        Half-width of the within-1-s window in frames.
    blocks
        ``(P,)`` scene block per prediction (`neurrator.stats.resampling.scene_blocks` of the true frames).
    n_perm, seed
        Block permutations (`neurrator.stats.nulls.block_permutations`) and their seed.

    Returns
    -------
    dict ``top1``, ``top5``, ``within_1s`` -> ``(n_perm,)`` the metric under each permutation.
    """
    groups = np.asarray(groups, dtype=np.int64)
    true_frame = np.asarray(true_frame, dtype=np.int64)
    G = int(groups.max()) + 1
    frames = np.unique(true_frame)
    near = np.zeros((len(frames), G), dtype=bool)  # groups with a member within the window of each frame
    for r, f in enumerate(frames):
        near[r, groups[max(0, f - half): f + half + 1]] = True
    row_of = np.searchsorted(frames, true_frame)
    perms = block_permutations(np.asarray(blocks), n_perm=n_perm, seed=seed)
    out = {m: np.empty(n_perm) for m in ("top1", "top5", "within_1s")}
    items = np.arange(len(true_frame))[None, :]
    for s in range(0, n_perm, chunk):
        p = perms[s: s + chunk]  # (c, P): prediction i is scored against the true frame of window p[i]
        rank = group_rank[items, groups[true_frame[p]]]
        out["top1"][s: s + chunk] = (rank == 0).mean(1)
        out["top5"][s: s + chunk] = (rank < 5).mean(1)
        out["within_1s"][s: s + chunk] = near[row_of[p], best_group[items]].mean(1)
    return out
