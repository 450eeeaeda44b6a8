"""The closed-form ridge of any unit subset, from the linear path's training statistics (issue 28).

A strict subset S of the units decodes through ``(X_S'X_S + alpha I)^-1 X_S'Y``: the ridge a retraining on
S would start from (X: the linear path's z-scored features, unit-major, T per unit; Y: the centred basis
coefficients). That needs the training Gram matrix G = X'X, (N T)^2 floats: 64 MB at 4,096 features
(`EncoderConfig.subset_ridge`), 400 MB at 2,000 units x 5 pooled bins. Beyond that the encoder keeps a
factored Gram instead (`EncoderConfig.gram_rank`):

    G ~ V diag(s) V' + blockdiag(B_1, ..., B_N)

with V the top ``gram_rank`` eigenvectors of G and B_u each unit's exact (T x T) residual block, so that
every unit's own block of G is exact (a one-unit subset's ridge is exact at any rank) and what is dropped
is the weak part of the units' cross-covariance. A subset's system ``(G_S + alpha I) w = X_S'Y`` is then
solved through the Woodbury identity in O(|S| T r^2) without forming G_S. All units together keep their
exact ridge weights (N T x K floats, 2.5 MB there): the blend's floor on all units is the true ridge's cosine.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["MAX_GRAM_RANK", "FactoredGram", "factor_gram", "gram_rank_plan", "subset_weights"]

#: Most eigenvectors a factored Gram keeps (a subset's solve costs |S| T r^2).
MAX_GRAM_RANK = 1024


class FactoredGram(NamedTuple):
    """G ~ vecs diag(vals) vecs' + blockdiag(blocks): vecs (N T, r), vals (r,), blocks (N, T, T); ``whole``
    (N T, K): the exact ridge weights of all N units."""

    vecs: torch.Tensor
    vals: torch.Tensor
    blocks: torch.Tensor
    whole: torch.Tensor


def gram_rank_plan(n_features: int, n_windows: int, budget: int) -> int:
    """The ``gram_rank`` a training keeps: 0 when the full Gram fits ``budget`` features
    (`EncoderConfig.subset_ridge`; or ``budget`` is 0: no subset ridge), else as many eigenvectors as fit
    the same bytes (``budget^2`` floats), at most `MAX_GRAM_RANK`, ``n_windows`` and ``n_features``."""
    if budget <= 0 or n_features <= budget:
        return 0
    return max(1, min(budget * budget // n_features, MAX_GRAM_RANK, n_windows, n_features))


@torch.no_grad()
def factor_gram(X: torch.Tensor, T: int, rank: int, eig: tuple[torch.Tensor, torch.Tensor],
                whole: torch.Tensor) -> FactoredGram:
    """(n, N T) z-scored features, the eigen-decomposition ``eig`` = (values ascending, vectors) the ridge
    already computed (of X'X when N T <= n, else of XX') and its solution on all units ``whole`` (N T, K) ->
    the factored Gram of ``rank`` components."""
    s, U = eig
    n, d = X.shape
    top = torch.argsort(s, descending=True)[: min(rank, d, n)]
    vals = s[top].clamp_min(0)
    if U.shape[0] == d:
        vecs = U[:, top]
    else:  # eigenvectors of XX' -> of X'X: X'u / sqrt(s)
        vecs = (X.T @ U[:, top]) / vals.clamp_min(1e-12).sqrt()
    Xu = X.view(n, d // T, T)
    Vu = vecs.view(d // T, T, -1)
    blocks = torch.einsum("nut,nus->uts", Xu, Xu) - torch.einsum("utr,r,usr->uts", Vu, vals, Vu)
    return FactoredGram(vecs.float(), vals.float(), blocks.float(), whole.float())


def _block_solve(chol: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Block-diagonal solve: chol (m, T, T) Cholesky factors, rhs (m T, k) -> (m T, k)."""
    m, T, _ = chol.shape
    return torch.cholesky_solve(rhs.reshape(m, T, -1), chol).reshape(m * T, -1)


@torch.no_grad()
def subset_weights(units: torch.Tensor, T: int, xty: torch.Tensor, alpha: float,
                   gram: torch.Tensor | FactoredGram) -> torch.Tensor:
    """(n,) unit rows -> (n T, K) float32 ridge weights ``(G_S + alpha I)^-1 (X'Y)_S`` of that subset, from the
    full Gram (N T, N T) or a `FactoredGram`; computed in float64."""
    idx = (units[:, None] * T + torch.arange(T, device=units.device)).reshape(-1)
    if isinstance(gram, FactoredGram) and len(idx) == len(gram.whole) and len(torch.unique(units)) == len(units):
        return gram.whole.view(len(units), T, -1)[units].reshape(len(idx), -1)  # all units: their exact ridge
    rhs = xty.index_select(0, idx).double()
    if isinstance(gram, FactoredGram):
        D = gram.blocks.index_select(0, units).double()
        D = D + alpha * torch.eye(T, dtype=D.dtype, device=D.device)
        chol, info = torch.linalg.cholesky_ex(D)
        if int(info.max()) != 0:  # a residual block lost positive definiteness to rounding
            D = D + (1e-6 * D.diagonal(dim1=1, dim2=2).mean() + 1e-9) * torch.eye(T, dtype=D.dtype, device=D.device)
            chol = torch.linalg.cholesky(D)
        A = gram.vecs.index_select(0, idx).double() * gram.vals.double().clamp_min(0).sqrt()  # (n T, r)
        DiA = _block_solve(chol, A)
        Dib = _block_solve(chol, rhs)
        M = A.T @ DiA
        M.diagonal().add_(1.0)
        w = Dib - DiA @ torch.linalg.solve(M, A.T @ Dib)  # Woodbury: (D + A A')^-1 b
        return w.float()
    g = gram.index_select(0, idx).index_select(1, idx).double()
    g.diagonal().add_(alpha)
    L, info = torch.linalg.cholesky_ex(g)
    w = torch.cholesky_solve(rhs, L) if int(info) == 0 else torch.linalg.lstsq(g, rhs).solution
    return w.float()
