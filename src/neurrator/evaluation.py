"""Predicted vs true patch tokens on held-out repeats -> fidelity metrics with chance levels; baselines.

Metrics (`score_predictions`):

- ``patch_cosine``: mean over samples and patches of the cosine between predicted and true tokens
  (raw tokens, as the narrator reads them); ``mse``: mean squared error over all entries.
- frame identification: each prediction is compared (cosine of the flattened token map, after
  subtracting the movie's mean token map, which is known from the targets) with the targets of ALL
  movie frames. ``rank`` = number of frames more similar than the true one (0 = identified);
  ``top1`` = rank 0, ``top5`` = rank < 5, ``within_1s`` = the most similar frame lies within
  +/- ``fps`` frames of the true one (CEBRA's measure). Chance: ``1/F``, ``min(5, F)/F``, and the
  mean over evaluated frames of the number of frames within +/- 1 s (fewer at the movie's edges) / F.
  Ties count in the prediction's favour (duplicate frames are not penalised).

Baselines on the same split and windows: closed-form ridge regression from the flattened windows to
a PCA of the flattened targets (alpha chosen on the validation repeats), kNN on population vectors,
and a shuffled-frame control (the encoder's predictions scored against permuted frames).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "FIDELITY_METRICS",
    "evaluate_encoder",
    "fidelity_rows",
    "frame_identification",
    "knn_baseline",
    "ridge_baseline",
    "score_predictions",
    "shuffled_control",
    "window_features",
]

FIDELITY_METRICS = ("patch_cosine", "top1", "top5", "within_1s")


def frame_identification(
    pred: np.ndarray,
    true_frame: np.ndarray,
    targets: np.ndarray,
    *,
    fps: float = 30.0,
    center: bool = True,
    device: str | torch.device = "cpu",
    chunk: int = 256,
) -> dict[str, Any]:
    """Rank of the true frame among all movie frames.

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
        Subtract the mean target map (over all F frames) before the cosine.

    Returns
    -------
    dict with ``rank`` (P',) int64, ``best`` (P',) most similar frame, ``top1``, ``top5``,
    ``within_1s`` and their ``chance_*`` levels, ``median_rank``.

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
    T = torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(device).reshape(F_, -1)
    mean = T.mean(0, keepdim=True) if center else torch.zeros_like(T[:1])
    Tn = torch.nn.functional.normalize(T - mean, dim=1)
    ranks = np.empty(len(true_frame), dtype=np.int64)
    best = np.empty(len(true_frame), dtype=np.int64)
    for i in range(0, len(true_frame), chunk):
        p = torch.from_numpy(np.ascontiguousarray(pred[i : i + chunk], np.float32)).to(device).reshape(-1, T.shape[1])
        sim = torch.nn.functional.normalize(p - mean, dim=1) @ Tn.T  # (c, F)
        tf = torch.from_numpy(true_frame[i : i + chunk]).to(device)
        s_true = sim.gather(1, tf[:, None])
        ranks[i : i + chunk] = (sim > s_true).sum(1).cpu().numpy()
        best[i : i + chunk] = sim.argmax(1).cpu().numpy()
    half = int(round(fps))
    near = np.minimum(true_frame + half, F_ - 1) - np.maximum(true_frame - half, 0) + 1
    return {
        "rank": ranks,
        "best": best,
        "top1": float(np.mean(ranks == 0)),
        "top5": float(np.mean(ranks < 5)),
        "within_1s": float(np.mean(np.abs(best - true_frame) <= half)),
        "chance_top1": 1.0 / F_,
        "chance_top5": min(5, F_) / F_,
        "chance_within_1s": float(np.mean(near / F_)),
        "median_rank": float(np.median(ranks)),
    }


def score_predictions(pred: np.ndarray, true_frame: np.ndarray, targets: np.ndarray, *, fps: float = 30.0,
                      device: str | torch.device = "cpu") -> dict[str, Any]:
    """Patch cosine, MSE and frame identification of predictions against their true frames.

    ``chance_patch_cosine`` is the patch cosine of the same predictions against frames drawn at
    random (a fixed permutation of the true frames, seed 0): what cosine is worth without decoding.
    """
    true_frame = np.asarray(true_frame, dtype=np.int64)
    y = targets[true_frame]
    out = {"patch_cosine": _patch_cos(pred, y), "mse": float(np.mean((pred - y) ** 2)), "n": int(len(true_frame))}
    out.update(frame_identification(pred, true_frame, targets, fps=fps, device=device))
    perm = np.random.default_rng(0).permutation(len(true_frame))
    out["chance_patch_cosine"] = _patch_cos(pred, targets[true_frame[perm]])
    out["chance_mse"] = float(np.mean((pred - targets[true_frame[perm]]) ** 2))
    return out


def _patch_cos(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def shuffled_control(pred: np.ndarray, true_frame: np.ndarray, targets: np.ndarray, *, seed: int = 0,
                     fps: float = 30.0, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Score predictions against a random permutation of their true frames (should sit at chance)."""
    perm = np.random.default_rng(seed).permutation(len(true_frame))
    return score_predictions(pred, np.asarray(true_frame)[perm], targets, fps=fps, device=device)


def fidelity_rows(scores: dict[str, Any], *, split: str = "test", **fields: Any) -> list[dict[str, Any]]:
    """Rows for ndx-neurrator's decoding-fidelity table: one per metric, each with its chance level.

    ``fields`` (e.g. ``method="encoder"``, ``subset="all"``, ``n_units=2000``) are copied into each row.

    >>> fidelity_rows({"patch_cosine": .5, "chance_patch_cosine": .1, "top1": .2, "chance_top1": .01,
    ...                "top5": .4, "chance_top5": .05, "within_1s": .9, "chance_within_1s": .06, "n": 3})[1]
    {'metric': 'top1', 'value': 0.2, 'chance': 0.01, 'split': 'test', 'n': 3}
    """
    return [{"metric": m, "value": float(scores[m]), "chance": float(scores[f"chance_{m}"]), "split": split,
             "n": int(scores.get("n", 0)), **fields} for m in FIDELITY_METRICS]


# ------------------------------------------------------------------------------------- baselines


def window_features(binned, presentation_idx: np.ndarray, *, window_bins: int = 20, offset_bins: int = 0,
                    temporal_pool: int = 1, unit_idx: np.ndarray | None = None) -> np.ndarray:
    """The encoder's input windows, flattened: (P', (W / temporal_pool) * n) float32 of log1p counts.

    ``temporal_pool`` sums groups of adjacent bins (1 = the exact windows the encoder sees).
    """
    from neurrator.binning import window_index

    if window_bins % temporal_pool:
        raise ValueError(f"temporal_pool ({temporal_pool}) must divide window_bins ({window_bins})")
    cols = np.arange(binned.counts.shape[1]) if unit_idx is None else np.asarray(unit_idx, np.int64)
    widx = window_index(binned.frame, binned.repeat, bins_per_frame=binned.bins_per_frame,
                        window_bins=window_bins, offset_bins=offset_bins)[np.asarray(presentation_idx, np.int64)]
    counts = np.asarray(binned.counts)[:, cols].astype(np.float32)
    counts = np.concatenate([counts, np.zeros((1, len(cols)), np.float32)])
    x = counts[np.where(widx < 0, len(counts) - 1, widx)]  # (P', W, n)
    x = x.reshape(len(x), window_bins // temporal_pool, temporal_pool, len(cols)).sum(2)
    return np.log1p(x).reshape(len(x), -1)


def ridge_baseline(
    binned,
    targets: np.ndarray,
    split,
    *,
    window_bins: int = 20,
    offset_bins: int = 0,
    temporal_pool: int = 1,
    n_components: int = 256,
    alphas: tuple[float, ...] = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5),
    holdout_frames: np.ndarray | None = None,
    unit_idx: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Closed-form ridge regression from flattened windows to PCA'd flattened targets.

    Features are z-scored with training statistics; targets are projected on the top
    ``n_components`` principal components of the training frames' flattened token maps and expanded
    back. Alpha is chosen by validation MSE in that space (one eigendecomposition for all alphas).

    Returns
    -------
    pred : (len(split.test), n_patches, dim) float32 predictions for the test presentations
    info : dict with ``alpha``, ``n_features``, ``n_components``, ``val_mse`` per alpha
    """
    device = torch.device(device)
    tr, va, te = (np.asarray(s, np.int64) for s in split)
    if holdout_frames is not None and len(holdout_frames):
        tr = tr[~np.isin(binned.frame[tr], holdout_frames)]
        va = va[~np.isin(binned.frame[va], holdout_frames)]
    kw = dict(window_bins=window_bins, offset_bins=offset_bins, temporal_pool=temporal_pool, unit_idx=unit_idx)
    feats = {k: torch.from_numpy(window_features(binned, idx, **kw)).to(device, torch.float64)
             for k, idx in (("tr", tr), ("va", va), ("te", te))}
    mu, sd = feats["tr"].mean(0), feats["tr"].std(0).clamp_min(1e-3)
    X, Xv, Xt = ((feats[k] - mu) / sd for k in ("tr", "va", "te"))
    F_, n_patches, dim = targets.shape
    flat = torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(device, torch.float64).reshape(F_, -1)
    train_frames = np.unique(binned.frame[tr])
    ym = flat[train_frames].mean(0)
    # PCA of the training frames' maps via the (frames x frames) Gram matrix
    Yc = flat[train_frames] - ym
    k = int(min(n_components, len(train_frames) - 1))
    evals, evecs = torch.linalg.eigh(Yc @ Yc.T)
    top = torch.argsort(evals, descending=True)[:k]
    V = (Yc.T @ evecs[:, top]) / evals[top].clamp_min(1e-12).sqrt()  # (D, k) orthonormal columns
    coef = (flat - ym) @ V  # (F, k)
    frame_t = torch.from_numpy(np.asarray(binned.frame, np.int64)).to(device)
    Y, Yv = coef[frame_t[torch.from_numpy(tr).to(device)]], coef[frame_t[torch.from_numpy(va).to(device)]]
    Ymean = Y.mean(0)
    Y = Y - Ymean
    n, d = X.shape
    if d <= n:  # primal: (X'X + aI) w = X'Y
        s, U = torch.linalg.eigh(X.T @ X)
        XtY = U.T @ (X.T @ Y)

        def solve(a):
            return U @ (XtY / (s + a)[:, None])

        def apply(W, Z):
            return Z @ W
    else:  # dual: w = X' (XX' + aI)^-1 Y
        s, U = torch.linalg.eigh(X @ X.T)
        UtY = U.T @ Y

        def solve(a):
            return U @ (UtY / (s + a)[:, None])

        def apply(A, Z):
            return (Z @ X.T) @ A
    val = {}
    for a in alphas:
        val[a] = float(((apply(solve(a), Xv) + Ymean - Yv) ** 2).mean())
    alpha = min(val, key=val.get)
    pred = (apply(solve(alpha), Xt) + Ymean) @ V.T + ym
    info = {"alpha": alpha, "n_features": d, "n_components": k, "val_mse": val}
    return pred.reshape(len(te), n_patches, dim).float().cpu().numpy(), info


def knn_baseline(
    binned,
    targets: np.ndarray,
    split,
    *,
    window_bins: int = 20,
    offset_bins: int = 0,
    ks: tuple[int, ...] = (1, 5, 10, 20),
    holdout_frames: np.ndarray | None = None,
    unit_idx: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, dict[str, Any]]:
    """kNN on population vectors: each test window's summed counts per unit (log1p, z-scored) is
    matched by cosine to the training windows; the prediction is the mean target of the k nearest.
    k is chosen by validation MSE. Returns (pred for split.test, info)."""
    device = torch.device(device)
    tr, va, te = (np.asarray(s, np.int64) for s in split)
    if holdout_frames is not None and len(holdout_frames):
        tr = tr[~np.isin(binned.frame[tr], holdout_frames)]
        va = va[~np.isin(binned.frame[va], holdout_frames)]
    kw = dict(window_bins=window_bins, offset_bins=offset_bins, temporal_pool=window_bins, unit_idx=unit_idx)
    pv = {k: torch.from_numpy(window_features(binned, idx, **kw)).to(device) for k, idx in (("tr", tr), ("va", va), ("te", te))}
    mu, sd = pv["tr"].mean(0), pv["tr"].std(0).clamp_min(1e-3)
    norm = {k: torch.nn.functional.normalize((v - mu) / sd, dim=1) for k, v in pv.items()}
    T = torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(device)
    frame_tr = torch.from_numpy(binned.frame[tr]).to(device)
    kmax = min(max(ks), len(tr))

    def neighbours(q):
        return (q @ norm["tr"].T).topk(kmax, dim=1).indices  # (q, kmax)

    nv = neighbours(norm["va"])
    yv = T[torch.from_numpy(binned.frame[va]).to(device)]
    val = {}
    for k in ks:
        k = min(k, kmax)
        val[k] = float(((T[frame_tr[nv[:, :k]]].mean(1) - yv) ** 2).mean())
    best_k = min(val, key=val.get)
    nt = neighbours(norm["te"])[:, :best_k]
    pred = T[frame_tr[nt]].mean(1)
    return pred.cpu().numpy(), {"k": best_k, "val_mse": val}


def evaluate_encoder(
    trained,
    binned,
    targets: np.ndarray,
    split,
    *,
    fps: float = 30.0,
    device: str | torch.device = "cpu",
    baselines: bool = True,
    unit_idx: np.ndarray | None = None,
    ridge_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score a trained encoder and the baselines on the test repeats.

    Returns ``{"encoder": scores, "ridge": ..., "knn": ..., "shuffled": ..., "unseen": {...}}`` where
    ``unseen`` (present when the encoder was trained with ``holdout_frames``) holds the same methods
    scored on test presentations of the held-out frames only, and the main entries use the other
    test presentations. Scores are `score_predictions` dicts (``rank``/``best`` arrays removed).
    """
    from neurrator.training import predict

    te = np.asarray(split.test, np.int64)
    tc = trained.train_config
    hold = np.asarray(trained.holdout_frames, np.int64)
    preds = {"encoder": predict(trained, binned, te, unit_idx=unit_idx, device=device)}
    info: dict[str, Any] = {}
    if baselines:
        kw = dict(window_bins=tc.window_bins, offset_bins=tc.offset_bins, holdout_frames=hold, unit_idx=unit_idx,
                  device=device)
        preds["ridge"], info["ridge"] = ridge_baseline(binned, targets, split, **kw, **(ridge_kwargs or {}))
        preds["knn"], info["knn"] = knn_baseline(binned, targets, split, **kw)
    frames = binned.frame[te]
    unseen = np.isin(frames, hold)
    out: dict[str, Any] = {"info": info}
    for label, mask in (("seen", ~unseen), ("unseen", unseen)):
        if not mask.any():
            continue
        block = {}
        for name, p in preds.items():
            block[name] = _strip(score_predictions(p[mask], frames[mask], targets, fps=fps, device=device))
        block["shuffled"] = _strip(shuffled_control(preds["encoder"][mask], frames[mask], targets, fps=fps,
                                                    device=device))
        if label == "seen":
            out.update(block)
        else:
            out["unseen"] = block
    return out


def _strip(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if not isinstance(v, np.ndarray)}
