"""Binned counts on the training repeats -> ridge and kNN baseline predictions; an encoder and its baselines scored.

The baselines run on the same split and windows as the encoder: closed-form ridge regression from the
flattened windows to a PCA of the flattened targets (alpha chosen on the validation repeats), kNN on
population vectors, and a shuffled-frame control (`neurrator.decode.fidelity.shuffled_control`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurrator.decode.chance import duplicate_groups
from neurrator.decode.fidelity import score_predictions, shuffled_control, training_mean_map
from neurrator.data.binning import window_index
from neurrator.models.prediction import predict

__all__ = ["evaluate_encoder", "knn_baseline", "knn_predict", "ridge_baseline", "window_features"]


def window_features(binned, presentation_idx: np.ndarray, *, window_bins: int = 20, offset_bins: int = 0,
                    temporal_pool: int = 1, unit_idx: np.ndarray | None = None) -> np.ndarray:
    """The encoder's input windows, flattened: (P', (W / temporal_pool) * n) float32 of log1p counts.

    ``temporal_pool`` sums groups of adjacent bins (1 = the exact windows the encoder sees).
    """
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
    temporal_pool: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """kNN on population vectors: each test window's summed counts per unit (log1p, z-scored) is
    matched by cosine to the training windows; the prediction is the mean target of the k nearest.
    k is chosen by validation MSE. ``temporal_pool`` (None: the whole window, a population vector)
    keeps the window's time course in groups of that many bins instead. Returns (pred for split.test, info)."""
    device = torch.device(device)
    tr, va, te = (np.asarray(s, np.int64) for s in split)
    if holdout_frames is not None and len(holdout_frames):
        tr = tr[~np.isin(binned.frame[tr], holdout_frames)]
        va = va[~np.isin(binned.frame[va], holdout_frames)]
    kw = dict(window_bins=window_bins, offset_bins=offset_bins, temporal_pool=temporal_pool or window_bins,
              unit_idx=unit_idx)
    pv = {k: torch.from_numpy(window_features(binned, idx, **kw)).to(device) for k, idx in (("tr", tr), ("va", va), ("te", te))}
    mu, sd = pv["tr"].mean(0), pv["tr"].std(0).clamp_min(1e-3)
    feats = {k: (v - mu) / sd for k, v in pv.items()}
    return knn_predict(feats, binned.frame[tr], binned.frame[va], targets, ks=ks, device=device)


def knn_predict(feats: dict[str, torch.Tensor], frame_tr: np.ndarray, frame_va: np.ndarray, targets: np.ndarray, *,
                ks: tuple[int, ...] = (1, 5, 10, 20),
                device: str | torch.device = "cpu") -> tuple[np.ndarray, dict[str, Any]]:
    """kNN regression of target maps in any feature space: ``feats`` {"tr", "va", "te"} (n, d) are matched
    by cosine to the training rows; the prediction is the mean target of the k nearest training rows'
    frames, k in ``ks`` by validation MSE. Returns (pred for the "te" rows, info)."""
    device = torch.device(device)
    norm = {k: torch.nn.functional.normalize(torch.as_tensor(v, dtype=torch.float32).to(device), dim=1)
            for k, v in feats.items()}
    T = torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(device)
    frame_tr = torch.from_numpy(np.asarray(frame_tr, np.int64)).to(device)
    kmax = min(max(ks), len(frame_tr))

    def neighbours(q):
        return (q @ norm["tr"].T).topk(kmax, dim=1).indices  # (q, kmax)

    nv = neighbours(norm["va"])
    yv = T[torch.from_numpy(np.asarray(frame_va, np.int64)).to(device)]
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
    block_frames: int = 30,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a trained encoder and the baselines on the test repeats.

    Returns ``{"encoder": scores, "ridge": ..., "knn": ..., "shuffled": ..., "unseen": {...}}`` where
    ``unseen`` (present when the encoder was trained with ``holdout_frames``) holds the same methods
    scored on test presentations of the held-out frames only, and the main entries use the other
    test presentations. Scores are `score_predictions` dicts (per-item arrays removed), centred on the
    mean map of the training frames (held-out frames excluded), with block-bootstrap CIs
    (``block_frames``, ``n_boot``, ``seed``).
    """
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
    train_frames = np.unique(binned.frame[np.asarray(split.train, np.int64)])
    sk = dict(train_mean=training_mean_map(targets, train_frames[~np.isin(train_frames, hold)]),
              groups=duplicate_groups(targets), block_frames=block_frames, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {"info": info}
    for label, mask in (("seen", ~unseen), ("unseen", unseen)):
        if not mask.any():
            continue
        block = {}
        for name, p in preds.items():
            block[name] = _strip(score_predictions(p[mask], frames[mask], targets, fps=fps, device=device, **sk))
        block["shuffled"] = _strip(shuffled_control(preds["encoder"][mask], frames[mask], targets, fps=fps,
                                                    device=device, **sk))
        if label == "seen":
            out.update(block)
        else:
            out["unseen"] = block
    return out


def _strip(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if not isinstance(v, np.ndarray)}
