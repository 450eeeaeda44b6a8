"""The encoder's linear path: its closed-form start (ridge on all units' pooled counts, the penalty kept
while training, the Gram matrix the subset ridge reads) and the principal basis of the target maps it
outputs in. Used by `neurrator.models.training.train_encoder` before the first gradient step.

``data`` below is the training loop's device data (``counts``, ``frame``, ``targets`` tensors and
``windows(presentations, units) -> (B, W, k)`` counts).
"""

from __future__ import annotations

import torch

from neurrator.component_config import TrainConfig
from neurrator.models.encoder import SpikeEncoder
from neurrator.models.subset_ridge import factor_gram

__all__ = ["RIDGE_ALPHAS", "flat_pca", "init_linear", "linear_penalty"]


def flat_pca(y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, n_patches, dim) centred maps -> top-k principal directions of the flattened maps (k', D)
    and the std of each coefficient (k',), via the (F x F) Gram matrix; k' = min(k, F - 1)."""
    Y = y.reshape(len(y), -1).double()
    k = max(1, min(k, len(Y) - 1))
    evals, evecs = torch.linalg.eigh(Y @ Y.T)
    top = torch.argsort(evals, descending=True)[:k]
    ev = evals[top].clamp_min(1e-12)
    V = (Y.T @ evecs[:, top]) / ev.sqrt()  # (D, k) orthonormal columns
    return V.T.float().contiguous(), (ev / max(1, len(Y))).sqrt().float()


def linear_penalty(model: SpikeEncoder, cfg: TrainConfig, l2: float) -> torch.Tensor:
    w2 = model.lin_weight.pow(2).sum((0, 1))  # (K,)
    return cfg.mse_weight * l2 * (w2 * model.lin_scale.pow(2)).sum() / model.lin_basis.shape[1]


RIDGE_ALPHAS = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5)


@torch.no_grad()
def init_linear(model: SpikeEncoder, data, tr: torch.Tensor, va: torch.Tensor,
                 cfg: TrainConfig, chunk: int = 1024) -> float:
    """Feature statistics of the linear path and (``cfg.linear_init``) its closed-form ridge solution
    on all units. Returns the ridge penalty per training window to keep while training (alpha / n)."""
    N = data.counts.shape[1]
    units = torch.arange(N, device=tr.device)

    def feats(pres):
        return torch.cat([model.linear_features(data.windows(pres[i : i + chunk], units)).double()
                          for i in range(0, len(pres), chunk)])  # (P', N, T)

    X = feats(tr)
    mu, sd = X.mean(0), X.std(0).clamp_min(1e-3)
    model.set_linear_stats(mu.float(), sd.float())
    if not cfg.linear_init:
        return 1.0
    T, K = X.shape[2], model.config.linear_rank
    X = ((X - mu) / sd).reshape(len(X), -1)
    Xv = ((feats(va) - mu) / sd).reshape(len(va), -1)
    basis, scale = model.lin_basis.double(), model.lin_scale.double()
    tmean, tstd = model.target_mean.double(), model.target_std.double()

    def coef(pres):  # (P', K) coefficients the linear path must output for these presentations
        y = ((data.targets[data.frame[pres]].double() - tmean) / tstd).flatten(1)
        return (y @ basis.T) / scale

    Y = torch.cat([coef(tr[i : i + chunk]) for i in range(0, len(tr), chunk)])
    Yv = torch.cat([coef(va[i : i + chunk]) for i in range(0, len(va), chunk)])
    ym = Y.mean(0)
    Y = Y - ym
    n, d = X.shape
    w2 = scale.pow(2) * (basis.abs().sum(1) > 0)  # error weight of each coefficient in token space
    if d <= n:
        s, U = torch.linalg.eigh(X.T @ X)
        UtXtY = U.T @ (X.T @ Y)
        solve = lambda a: U @ (UtXtY / (s + a)[:, None])  # noqa: E731
    else:
        s, U = torch.linalg.eigh(X @ X.T)
        UtY = U.T @ Y
        solve = lambda a: X.T @ (U @ (UtY / (s + a)[:, None]))  # noqa: E731
    best = None
    for a in RIDGE_ALPHAS:
        W = solve(a)
        err = float((((Xv @ W + ym - Yv) ** 2) * w2).sum(1).mean())
        if best is None or err < best[0]:
            best = (err, a, W)
    _, alpha, W = best
    model.lin_weight.copy_(W.reshape(N, T, K).float())
    model.lin_bias.copy_(ym.float())
    if model.has_subset_ridge:
        r = model.lin_gvec.shape[1] if hasattr(model, "lin_gvec") else 0
        model.set_subset_ridge(factor_gram(X, T, r, (s, U), W) if r else (X.T @ X).float(), (X.T @ Y).float(), alpha)
    return float(alpha) / n
