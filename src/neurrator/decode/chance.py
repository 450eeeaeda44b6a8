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

__all__ = ["duplicate_groups", "identification_null", "rank_chance", "shift_pairings", "window_chance"]


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


_SHIFT_CACHE: dict[tuple, tuple[np.ndarray, bool]] = {}


def shift_pairings(repeats: np.ndarray, *, min_lag: int = 0, n_perm: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Repeat of each prediction -> ``(n, P)`` partners under circular shifts of the labels within repeats.

    Within each repeat (its predictions in time order) prediction ``i`` is paired with the label of the
    prediction ``(i + lag) mod n_r`` positions later, one lag per repeat, drawn independently and
    uniformly. Both series keep their autocorrelation; only their alignment is broken.

    ``min_lag=0`` (what the pipeline uses) draws every lag ``0 ... n_r - 1``: the whole rotation group, so
    when the predictions carry no stimulus information (their law does not change under a rotation) the
    observed alignment is exchangeable with every shifted one and the p-value is exact, however slowly
    both series drift. Excluding the lags near 0 (``min_lag > 0``, the old rule: ``min_lag ... n_r -
    min_lag``) is NOT calibrated: a slowly drifting statistic has only a few independent values round the
    circle, the excluded ones are those most like the observed one, and the p-value then claims the
    resolution of every shift. With one 300-frame repeat and 1 s excluded, p <= 0.005 came out on 6-10%
    of independent smooth series (benchmarks/bench_null_lags.py, issue 26) instead of 0.5%.

    When every combination of lags fits in ``n_perm`` rows, all of them are enumerated once (an exact
    test), except the identity (all lags 0, the observed pairing itself), so that
    `neurrator.stats.resampling.permutation_pvalue`'s ``(1 + #) / (1 + n)`` is the observed statistic's
    rank among all combinations; otherwise ``n_perm`` combinations are drawn with replacement (the
    identity may be among them; the Monte-Carlo p stays valid).

    Parameters
    ----------
    repeats
        ``(P,)`` repeat of each prediction; the predictions of one repeat are in time order.
    min_lag
        Smallest shift in items: 0 (default) for the exact test; larger values only for diagnostics. A
        repeat shorter than ``2 * min_lag + 1`` items uses ``n_r // 2`` (at least 1); a repeat of one item
        is never shifted.
    n_perm, seed
        Most rows returned, and the seed of the lags drawn.

    Returns
    -------
    partners : (n, P) int64
        ``partners[k, i]``: whose label prediction i is scored against in shift k (``n <= n_perm``).
    exact : bool
        True when the rows are every combination of lags (but the identity).

    The result is read-only and cached per (repeats, min_lag, n_perm, seed).

    Examples
    --------
    >>> pairs, exact = shift_pairings(np.zeros(3, int), min_lag=0, n_perm=10)
    >>> pairs.tolist(), exact
    ([[1, 2, 0], [2, 0, 1]], True)
    >>> pairs, exact = shift_pairings(np.zeros(5, int), min_lag=2, n_perm=10)
    >>> pairs.tolist(), exact
    ([[2, 3, 4, 0, 1], [3, 4, 0, 1, 2]], True)
    """
    repeats = np.asarray(repeats)
    key = (repeats.dtype.str, repeats.tobytes(), int(min_lag), int(n_perm), int(seed))
    if key in _SHIFT_CACHE:  # every subset of a run is scored on the same windows: draw the lags once
        return _SHIFT_CACHE[key]
    segments = [np.flatnonzero(repeats == r) for r in dict.fromkeys(repeats.tolist())]
    options = []
    for seg in segments:
        n_r = len(seg)
        if int(min_lag) <= 0:
            options.append(np.arange(n_r))
            continue
        lo = max(1, min(int(min_lag), n_r // 2))
        options.append(np.arange(lo, n_r - lo + 1) if n_r >= 2 else np.zeros(1, np.int64))
    total = float(np.prod([float(len(o)) for o in options])) if options else 1.0
    exact = total <= n_perm + (1 if int(min_lag) <= 0 else 0)
    if exact:
        grids = np.meshgrid(*options, indexing="ij") if options else []
        lags = np.stack([g.ravel() for g in grids], axis=1) if grids else np.zeros((1, 0), np.int64)
        if int(min_lag) <= 0 and len(lags) > 1:
            lags = lags[np.any(lags != 0, axis=1)]  # the identity is the observed pairing
    else:
        rng = np.random.default_rng(seed)
        lags = np.stack([rng.choice(o, size=n_perm) for o in options], axis=1)
    out = np.empty((len(lags), len(repeats)), dtype=np.int64)
    for s, seg in enumerate(segments):
        pos = (np.arange(len(seg))[None, :] + lags[:, s][:, None]) % len(seg)
        out[:, seg] = seg[pos]
    out.flags.writeable = False
    if len(_SHIFT_CACHE) >= 8:
        _SHIFT_CACHE.clear()
    _SHIFT_CACHE[key] = (out, bool(exact))
    return out, bool(exact)


def identification_null(group_rank: np.ndarray, best_group: np.ndarray, groups: np.ndarray, true_frame: np.ndarray,
                        *, half: int, blocks: np.ndarray, repeats: np.ndarray | None = None, min_lag: int = 0,
                        n_perm: int = 2000, seed: int = 0, chunk: int = 64) -> dict[str, np.ndarray]:
    """The rank metrics when the predictions are scored against the true frames of OTHER windows.

    Two nulls, by what the items are:

    * a movie (``repeats`` given): the frame labels are circularly shifted against the prediction sequence
      within each test repeat, an independent lag per repeat drawn from the whole circle (`shift_pairings`;
      ``min_lag`` 0: an exact test; excluding the lags under 1 s, the old rule, starred ``within_1s`` on
      5 of 47 subsets of three null sessions). A weak decoder's best match drifts slowly, so its hits come
      in runs; the shift keeps those runs (and the movie's slow scenes) in both series and breaks only
      their alignment, so the observed alignment is one draw among the shifts when the spikes carry no
      stimulus information.
      (Pairing each window with a window of another scene block, the old null, scatters the runs: on a
      session with no stimulus information ~20% of subsets got p < 0.05.)
    * flashed images (``repeats`` None): items are independent presentations in random order, so the
      predictions are exchangeable and each is paired with the true frame of a window of another block
      (`neurrator.stats.nulls.block_permutations` of ``blocks``).

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
    repeats, min_lag
        ``(P,)`` test repeat per prediction (each repeat's predictions in time order) and the smallest
        shift in windows (0: the whole circle, exact): the circular-shift null. None: the block
        permutation.
    n_perm, seed
        Shifts (or permutations) drawn and their seed.

    Returns
    -------
    dict ``top1``, ``top5``, ``within_1s`` -> ``(n,)`` the metric under each shift / permutation
    (``n = n_perm``, or fewer when every shift is enumerated).
    """
    groups = np.asarray(groups, dtype=np.int64)
    true_frame = np.asarray(true_frame, dtype=np.int64)
    G = int(groups.max()) + 1
    frames = np.unique(true_frame)
    near = np.zeros((len(frames), G), dtype=bool)  # groups with a member within the window of each frame
    for r, f in enumerate(frames):
        near[r, groups[max(0, f - half): f + half + 1]] = True
    row_of = np.searchsorted(frames, true_frame)
    if repeats is not None:
        perms, _ = shift_pairings(np.asarray(repeats), min_lag=min_lag, n_perm=n_perm, seed=seed)
    else:
        perms = block_permutations(np.asarray(blocks), n_perm=n_perm, seed=seed)
    n = len(perms)
    out = {m: np.empty(n) for m in ("top1", "top5", "within_1s")}
    items = np.arange(len(true_frame))[None, :]
    for s in range(0, n, chunk):
        p = perms[s: s + chunk]  # (c, P): prediction i is scored against the true frame of window p[i]
        rank = group_rank[items, groups[true_frame[p]]]
        out["top1"][s: s + chunk] = (rank == 0).mean(1)
        out["top5"][s: s + chunk] = (rank < 5).mean(1)
        out["within_1s"][s: s + chunk] = near[row_of[p], best_group[items]].mean(1)
    return out
