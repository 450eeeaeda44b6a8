"""Predicted vs true patch tokens on held-out repeats -> fidelity metrics with chance levels and CIs.

Metrics (`score_predictions`); the headline is `HEADLINE_METRICS`:

- ``centred_patch_cosine``: mean over samples and patches of the cosine between predicted and true
  tokens after subtracting the TRAINING mean map (the mean token map of the training frames, passed in
  as ``train_mean``; `training_mean_map`) from both. Raw CLIP tokens share a large common component, so
  the raw ``patch_cosine`` (kept, as the narrator reads raw tokens) barely separates decoding from none.
  ``mse``: mean squared error over all entries.
- frame identification: each prediction is compared (cosine of the flattened token map, after
  subtracting a mean map: ``train_mean`` when given, else the mean over all candidate frames) with the
  targets of ALL movie frames. ``rank`` = number of frames strictly more similar than the true one
  (0 = identified); ``top1`` = rank 0, ``top5`` = rank < 5, ``within_1s`` = a frame tied for the best
  similarity lies within +/- ``fps`` frames of the true one (CEBRA's measure). Identical target maps
  (pixel-identical frames) tie exactly and ties count in the prediction's favour, so the chance levels
  come from the duplicate structure of the targets (`neurrator.decode.chance`), not from ``1/F``.
- ``chance_patch_cosine`` / ``chance_centred_patch_cosine``: the exact mean of the cosine over all
  pairings of a prediction with ANOTHER test window's target (the expectation of the shuffled control).
- CIs: ``<metric>_ci_lo`` / ``<metric>_ci_hi``, block bootstrap over test windows grouped into scene
  blocks of ``block_frames`` movie frames (`neurrator.stats.resampling.scene_blocks`; windows of one frame in
  different repeats share a block).

The shuffled-frame control (`shuffled_control`: the encoder's predictions scored against permuted frames)
lives here; the ridge and kNN baselines in `neurrator.decode.baselines`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurrator.stats import resampling as stats
from neurrator.decode.chance import duplicate_groups, identification_null, rank_chance, shift_pairings, window_chance

__all__ = ["FIDELITY_METRICS", "HEADLINE_METRICS", "cosine_shift_null", "fidelity_rows", "frame_identification", "patch_cosines", "score_predictions", "shuffled_control", "training_mean_map"]

#: The decoding headline: centred patch cosine and frame identification, each with chance and a CI.
HEADLINE_METRICS = ("centred_patch_cosine", "top1", "top5", "within_1s")
#: Rows of the fidelity table (`fidelity_rows`): the headline plus the raw patch cosine.
FIDELITY_METRICS = ("patch_cosine", "top1", "top5", "within_1s", "centred_patch_cosine")


def training_mean_map(targets: np.ndarray, train_frames: np.ndarray) -> np.ndarray:
    """``(n_patches, dim)`` float32 mean target map over the (unique) training frames only."""
    frames = np.unique(np.asarray(train_frames, dtype=np.int64))
    if len(frames) == 0:
        raise ValueError("no training frames to average")
    return np.asarray(targets[frames], dtype=np.float64).mean(axis=0).astype(np.float32)


def frame_identification(
    pred: np.ndarray,
    true_frame: np.ndarray,
    targets: np.ndarray,
    *,
    fps: float = 30.0,
    center: bool = True,
    device: str | torch.device = "cpu",
    chunk: int = 256,
    mean_map: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    repeats: np.ndarray | None = None,
    n_perm: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Rank of the true frame among all movie frames, with chance levels from the duplicate structure.

    Parameters
    ----------
    pred
        (P', n_patches, dim) predicted tokens.
    true_frame
        (P',) int movie frame of each prediction.
    targets
        (F, n_patches, dim) true tokens of every movie frame (the candidates).
    fps
        Movie frames per second (within-1-s window = +/- round(fps) frames).
    center
        Subtract a mean map before the cosine: ``mean_map`` when given (the training mean), else the
        mean target map over all F frames.
    groups
        (F,) `neurrator.decode.chance.duplicate_groups` of ``targets`` (computed when omitted).
    blocks, repeats, n_perm, seed
        With ``n_perm > 0``: the null of `neurrator.decode.chance.identification_null` and the one-sided
        p-values ``p_top1``, ``p_top5``, ``p_within_1s``. A movie passes ``repeats`` ((P',) test repeat per
        prediction, each repeat in time order): the frame labels are circularly shifted against the
        predictions within each repeat, by any lag round the circle (the whole rotation group: exact; lags
        under 1 s excluded, the old rule, overclaimed on null sessions). Without ``repeats`` (flashed
        images: independent items) each prediction is scored against the true frame of a window in another
        of the (P',) ``blocks``. Beside each p: ``<metric>_null_mean`` (the null's mean, reported next to the
        analytic ``chance_<metric>``), ``<metric>_null_lo`` / ``<metric>_null_hi`` (its central 95%),
        and ``n_null`` (shifts or permutations scored; fewer than ``n_perm`` when every shift was enumerated).

    Returns
    -------
    dict with ``rank`` (P',) int64 (frames strictly more similar), ``best`` (P',) a most similar frame
    (the one nearest the true frame among ties), per-item ``hit_top1``/``hit_top5``/``hit_within_1s``
    (P',) bool, ``top1``, ``top5``, ``within_1s``, their ``chance_*`` levels, ``median_rank``,
    ``n_groups`` (distinct target maps) and ``naive_chance_top1`` (``1/F``).

    Examples
    --------
    >>> t = np.eye(4, dtype=np.float32).reshape(4, 1, 4)
    >>> r = frame_identification(t[[2, 0]], np.array([2, 1]), t, fps=1, center=False)
    >>> r["rank"].tolist(), r["top1"], r["chance_top1"]
    ([0, 1], 0.5, 0.25)
    """
    device = torch.device(device)
    true_frame = np.asarray(true_frame, dtype=np.int64)
    F_ = targets.shape[0]
    groups = duplicate_groups(targets) if groups is None else np.asarray(groups, dtype=np.int64)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    reps = np.unique(groups, return_index=True)[1]  # first frame of each group
    sizes = torch.from_numpy(np.bincount(groups).astype(np.float32)).to(device)
    T = torch.from_numpy(np.ascontiguousarray(targets[reps], np.float32)).to(device).reshape(n_groups, -1)
    if not center:
        mean = torch.zeros_like(T[:1])
    elif mean_map is not None:
        mean = torch.from_numpy(np.asarray(mean_map, np.float32)).to(device).reshape(1, -1)
    else:
        mean = torch.from_numpy(np.asarray(targets, np.float32).reshape(F_, -1).mean(0)).to(device)[None]
    Tn = torch.nn.functional.normalize(T - mean, dim=1)
    half = int(round(fps))
    offs = np.arange(-half, half + 1)
    n = len(true_frame)
    ranks = np.empty(n, dtype=np.int64)
    best = np.empty(n, dtype=np.int64)
    within = np.empty(n, dtype=bool)
    g_t = torch.from_numpy(groups).to(device)
    if repeats is not None:
        repeats = np.asarray(repeats)
        null_wanted = n_perm > 0 and n >= 2 and np.unique(repeats, return_counts=True)[1].max() >= 2
    else:
        null_wanted = n_perm > 0 and blocks is not None and n >= 2 and len(np.unique(blocks)) >= 2
    group_rank = np.empty((n, n_groups), dtype=np.int32) if null_wanted else None
    best_group = np.empty(n, dtype=np.int64)
    for i in range(0, n, chunk):
        p = torch.from_numpy(np.ascontiguousarray(pred[i : i + chunk], np.float32)).to(device).reshape(-1, T.shape[1])
        sim = torch.nn.functional.normalize(p - mean, dim=1) @ Tn.T  # (c, G)
        tf = true_frame[i : i + chunk]
        s_true = sim.gather(1, g_t[torch.from_numpy(tf).to(device)][:, None])
        ranks[i : i + chunk] = ((sim > s_true).float() @ sizes).round().long().cpu().numpy()
        top = sim.max(1, keepdim=True).values
        win = tf[:, None] + offs[None, :]  # (c, 2 half + 1) frames around the true one
        inside = (win >= 0) & (win < F_)
        win_t = torch.from_numpy(np.clip(win, 0, F_ - 1)).to(device)
        at_best = (sim.gather(1, g_t[win_t]) >= top) & torch.from_numpy(inside).to(device)
        hit = at_best.any(1).cpu().numpy()
        within[i : i + chunk] = hit
        nearest = np.abs(offs)[None, :] + np.where(at_best.cpu().numpy(), 0, 10 * F_ + 10)
        best_group[i : i + chunk] = sim.argmax(1).cpu().numpy()
        best[i : i + chunk] = np.where(hit, win[np.arange(len(tf)), nearest.argmin(1)], reps[best_group[i : i + chunk]])
        if group_rank is not None:  # the rank every group would have: frames strictly more similar
            vals, idx = sim.sort(dim=1, descending=True)
            before = torch.cat([torch.zeros_like(vals[:, :1]), sizes[idx].cumsum(1)], dim=1)
            pos = torch.searchsorted(-vals.contiguous(), -sim.contiguous(), right=False)
            group_rank[i : i + chunk] = before.gather(1, pos).round().int().cpu().numpy()
    hit1, hit5 = ranks == 0, ranks < 5
    mean_or_nan = (lambda v: float(np.mean(v))) if n else (lambda v: float("nan"))
    null: dict[str, Any] = {}
    if group_rank is not None:
        draws = identification_null(group_rank, best_group, groups, true_frame, half=half, blocks=blocks,
                                    repeats=repeats, min_lag=0, n_perm=n_perm, seed=seed)
        observed = {"top1": hit1, "top5": hit5, "within_1s": within}
        for m, d in draws.items():
            null[f"p_{m}"] = float(stats.permutation_pvalue(float(np.mean(observed[m])), d))
            null[f"{m}_null_mean"] = float(np.mean(d))
            null[f"{m}_null_lo"], null[f"{m}_null_hi"] = (float(v) for v in np.quantile(d, [0.025, 0.975]))
        null["n_null"] = len(draws["top1"])
    return {
        **null,
        "rank": ranks,
        "best": best,
        "hit_top1": hit1,
        "hit_top5": hit5,
        "hit_within_1s": within,
        "top1": mean_or_nan(hit1),
        "top5": mean_or_nan(hit5),
        "within_1s": mean_or_nan(within),
        "chance_top1": mean_or_nan(rank_chance(groups, true_frame, k=1)),
        "chance_top5": mean_or_nan(rank_chance(groups, true_frame, k=5)),
        "chance_within_1s": mean_or_nan(window_chance(groups, true_frame, half=half)),
        "naive_chance_top1": 1.0 / F_,
        "n_groups": n_groups,
        "median_rank": float(np.median(ranks)) if n else float("nan"),
    }


def patch_cosines(a: np.ndarray, b: np.ndarray, *, mean_map: np.ndarray | None = None) -> np.ndarray:
    """(P',) mean over patches of the cosine between ``a[i]`` and ``b[i]`` ((P', n_patches, dim) each),
    after subtracting ``mean_map`` ((n_patches, dim)) from both when given."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if mean_map is not None:
        a = a - mean_map
        b = b - mean_map
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (num / np.maximum(den, 1e-12)).mean(-1).astype(np.float64)


def cosine_shift_null(pred: np.ndarray, y: np.ndarray, partners: np.ndarray, repeats: np.ndarray, *,
                      mean_map: np.ndarray | None = None, device: str | torch.device = "cpu") -> np.ndarray:
    """(n,) mean patch cosine of each prediction with the target of its partner under each circular shift.

    ``partners`` ((n, P') from `neurrator.decode.chance.shift_pairings`) pairs prediction i with the target
    of the window one lag per repeat later; the shift keeps both series' autocorrelation (slow scenes, a weak
    decoder's slowly drifting output) and breaks only their alignment, so on data without stimulus
    information the observed mean cosine is one draw of this null. The within-repeat cosine matrix is one
    matrix product per repeat (``G[i, j]`` = patch cosine of prediction i with target j); each lag's value
    is a wrapped diagonal sum of it.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 6, 3, 4))
    >>> from neurrator.decode.chance import shift_pairings
    >>> pairs, _ = shift_pairings(np.zeros(6, int), min_lag=2, n_perm=10)
    >>> null = cosine_shift_null(a, b, pairs, np.zeros(6, int))
    >>> bool(np.allclose(null, [patch_cosines(a, b[p]).mean() for p in pairs]))
    True
    """
    a = torch.as_tensor(np.asarray(pred, dtype=np.float32), device=device)
    b = torch.as_tensor(np.asarray(y, dtype=np.float32), device=device)
    if mean_map is not None:
        m = torch.as_tensor(np.asarray(mean_map, dtype=np.float32), device=device)
        a, b = a - m, b - m
    n_patches = a.shape[1]
    a = (a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)).reshape(len(a), -1)
    b = (b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)).reshape(len(b), -1)
    repeats = np.asarray(repeats)
    partners = np.asarray(partners, dtype=np.int64)
    total = np.zeros(len(partners), dtype=np.float64)
    for r in dict.fromkeys(repeats.tolist()):
        seg = np.flatnonzero(repeats == r)
        n_r = len(seg)
        idx = torch.as_tensor(seg, device=device)
        G = (a[idx] @ b[idx].T).double().cpu().numpy() / n_patches
        wrap = (np.arange(n_r)[None, :] + np.arange(n_r)[:, None]) % n_r  # wrap[L, i] = (i + L) mod n_r
        by_lag = G[np.arange(n_r)[None, :], wrap].sum(axis=1)  # (n_r,) sum over i of G[i, (i + L) mod n_r]
        lags = np.searchsorted(seg, partners[:, seg[0]])
        total += by_lag[lags]
    return total / max(len(repeats), 1)


def _chance_cosine(a: np.ndarray, b: np.ndarray, *, mean_map: np.ndarray | None = None) -> float:
    """Exact mean over i != j of the patch cosine of a[i] with b[j] (all pairings of distinct windows)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if mean_map is not None:
        a = a - mean_map
        b = b - mean_map
    n = len(a)
    if n < 2:
        return float("nan")
    an = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    total = float(np.sum(an.sum(0, dtype=np.float64) * bn.sum(0, dtype=np.float64)))  # sum over all (i, j, patch)
    diag = float(np.sum(an.astype(np.float64) * bn))
    return (total - diag) / (n * (n - 1) * a.shape[1])


def score_predictions(pred: np.ndarray, true_frame: np.ndarray, targets: np.ndarray, *, fps: float = 30.0,
                      device: str | torch.device = "cpu", train_mean: np.ndarray | None = None,
                      block_frames: int = 30, blocks: np.ndarray | None = None, n_boot: int = 1000,
                      seed: int = 0, level: float = 0.95, groups: np.ndarray | None = None,
                      n_perm: int = 2000, repeats: np.ndarray | None = None) -> dict[str, Any]:
    """Patch cosines, MSE and frame identification of predictions against their true frames.

    Parameters
    ----------
    pred
        (P', n_patches, dim) predicted tokens.
    true_frame
        (P',) movie frame of each prediction.
    targets
        (F, n_patches, dim) true tokens of every movie frame.
    train_mean
        (n_patches, dim) mean target map of the TRAINING frames (`training_mean_map`); it centres the
        centred patch cosine and the frame identification. Without it ``centred_patch_cosine`` is NaN
        and identification centres on the mean of all candidate frames.
    block_frames, blocks
        Scene blocks for the CIs: ``true_frame // block_frames`` unless ``blocks`` ((P',)) is given.
    n_boot, seed, level
        Block-bootstrap resamples (0: no CIs), their seed and the CIs' coverage.
    n_perm, repeats
        Shifts (movie: ``repeats`` given, (P',) test repeat per prediction in time order) or block
        permutations (flashed images) of the rank metrics' null (``n_perm`` 0: no ``p_*``); see
        `frame_identification`.
    groups
        (F,) `neurrator.decode.chance.duplicate_groups` of ``targets`` (pass it when scoring many subsets).

    Returns
    -------
    dict
        ``patch_cosine``, ``centred_patch_cosine``, ``mse``, ``n``, the `frame_identification` keys
        (with ``p_top1``, ``p_top5``, ``p_within_1s`` when ``n_perm > 0``), a ``chance_<metric>`` per metric, ``<metric>_ci_lo`` / ``<metric>_ci_hi`` per metric of
        `FIDELITY_METRICS`, ``n_blocks`` and ``block_frames``.
    """
    true_frame = np.asarray(true_frame, dtype=np.int64)
    y = targets[true_frame]
    cos = patch_cosines(pred, y)
    ccos = patch_cosines(pred, y, mean_map=train_mean) if train_mean is not None else np.full(len(y), np.nan)
    nan = float("nan")
    out: dict[str, Any] = {"patch_cosine": float(np.mean(cos)) if len(cos) else nan,
                           "centred_patch_cosine": float(np.mean(ccos)) if len(ccos) else nan,
                           "mse": float(np.mean((pred - y) ** 2)), "n": int(len(true_frame))}
    blk = stats.scene_blocks(true_frame, block_frames=block_frames) if blocks is None else np.asarray(blocks)
    out.update(frame_identification(pred, true_frame, targets, fps=fps, device=device, groups=groups,
                                    mean_map=train_mean, blocks=blk, repeats=repeats, n_perm=n_perm, seed=seed))
    out["chance_patch_cosine"] = _chance_cosine(pred, y)
    out["chance_centred_patch_cosine"] = _chance_cosine(pred, y, mean_map=train_mean) if train_mean is not None else nan
    if repeats is not None and n_perm > 0 and len(true_frame) >= 2:  # a movie: the cosines' circular-shift null
        reps = np.asarray(repeats)
        if np.unique(reps, return_counts=True)[1].max() >= 2:
            partners, _ = shift_pairings(reps, min_lag=0, n_perm=n_perm, seed=seed)
            for m, mm, v in (("patch_cosine", None, cos), ("centred_patch_cosine", train_mean, ccos)):
                if m == "centred_patch_cosine" and train_mean is None:
                    continue
                d = cosine_shift_null(pred, y, partners, reps, mean_map=mm, device=device)
                out[f"p_{m}"] = float(stats.permutation_pvalue(float(np.mean(v)), d))
                out[f"{m}_null_mean"] = float(np.mean(d))
    perm = np.random.default_rng(0).permutation(len(true_frame))
    out["chance_mse"] = float(np.mean((pred - targets[true_frame[perm]]) ** 2))
    per_item = {"patch_cosine": cos, "centred_patch_cosine": ccos, "top1": out["hit_top1"],
                "top5": out["hit_top5"], "within_1s": out["hit_within_1s"]}
    for m in FIDELITY_METRICS:
        v = np.asarray(per_item[m], dtype=np.float64)
        est = (stats.block_bootstrap(v, blk, n_boot=n_boot, seed=seed, level=level)
               if len(v) and np.all(np.isfinite(v)) else stats.Estimate(nan, nan, nan, 0))
        out[f"{m}_ci_lo"], out[f"{m}_ci_hi"] = est.lo, est.hi
    out["n_blocks"] = int(len(np.unique(blk)))
    out["block_frames"] = int(block_frames)
    return out


def shuffled_control(pred: np.ndarray, true_frame: np.ndarray, targets: np.ndarray, *, seed: int = 0,
                     fps: float = 30.0, device: str | torch.device = "cpu", **kwargs: Any) -> dict[str, Any]:
    """Score predictions against a uniformly random permutation of their true frames (should sit at
    chance); ``kwargs`` go to `score_predictions` (``train_mean``, ``block_frames``, ``n_boot``, ...).
    The CIs' blocks are those of the frames the predictions were decoded from. A control: it is reported
    beside the subsets and never flagged as beating a null."""
    true_frame = np.asarray(true_frame, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(true_frame))
    if kwargs.get("blocks") is None:
        kwargs["blocks"] = stats.scene_blocks(true_frame, block_frames=kwargs.get("block_frames", 30))
    return score_predictions(pred, true_frame[perm], targets, fps=fps, device=device, **kwargs)


def fidelity_rows(scores: dict[str, Any], *, split: str = "test", **fields: Any) -> list[dict[str, Any]]:
    """Rows for ndx-neurrator's decoding-fidelity table: one per metric with its chance level and CI.

    Metrics of `FIDELITY_METRICS` present (and not NaN, for the centred cosine) in ``scores``;
    ``fields`` (e.g. ``method="encoder"``, ``subset="all"``, ``n_units=2000``) are copied into each row.

    >>> fidelity_rows({"patch_cosine": .5, "chance_patch_cosine": .1, "top1": .2, "chance_top1": .01,
    ...                "top5": .4, "chance_top5": .05, "within_1s": .9, "chance_within_1s": .06, "n": 3})[1]
    {'metric': 'top1', 'value': 0.2, 'chance': 0.01, 'split': 'test', 'n': 3, 'ci_lo': nan, 'ci_hi': nan}
    """
    rows = []
    for m in FIDELITY_METRICS:
        if m not in scores or (m == "centred_patch_cosine" and not np.isfinite(scores[m])):
            continue
        rows.append({"metric": m, "value": float(scores[m]), "chance": float(scores[f"chance_{m}"]), "split": split,
                     "n": int(scores.get("n", 0)), "ci_lo": float(scores.get(f"{m}_ci_lo", np.nan)),
                     "ci_hi": float(scores.get(f"{m}_ci_hi", np.nan)), **fields})
    return rows


# ------------------------------------------------------------------------------------- baselines


