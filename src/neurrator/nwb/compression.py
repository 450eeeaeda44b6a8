"""Compact patch predictions: coefficients in a shared linear basis, with the error measured per window.

At real dimensions (576 patches x 1024) one window of float32 patches is 2.4 MB, and 32 subsets x 30
windows are 2.3 GB; gzip does not help float32 noise. Predictions of one encoder live close to a
low-dimensional space (the encoder's linear readout, or the top principal components of the predictions
themselves), so a window is stored as ``rank`` float32 coefficients in a basis that is stored once:

    patches = (coefficients @ components.reshape(rank, -1) + mean.reshape(-1)).reshape(n, n_patches, dim)

This module does the arithmetic on plain arrays (no files, no NWB): fit a basis (``fit_pca_basis``) or
take the encoder's own (``encoder_readout_basis``), encode windows (``compress_windows``, which also
measures the reconstruction error of every window), and decode (``reconstruct``). The NWB container is
``ndx_neurrator.PatchBasis`` plus ``create_patch_predictions(coefficients=..., basis=...)``. Everything
stays float32 or float64 (never float16, DESIGN.md).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = (rng.standard_normal((10, 2)) @ rng.standard_normal((2, 12))).reshape(10, 3, 4).astype(np.float32)
>>> components, mean = fit_pca_basis(x, rank=2)
>>> packed = compress_windows(x, components=components, mean=mean)
>>> packed.coefficients.shape, bool(packed.relative_mse.max() < 1e-9)
((10, 2), True)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from ndx_neurrator import encoder_readout_basis as ndx_encoder_readout_basis

from neurrator.errors import NeurratorError

_WHAT = "compression"


class CompressedPatches(NamedTuple):
    """Windows as coefficients in a basis, with the measured error of each window's reconstruction.

    coefficients : (n_windows, rank) float32
    relative_mse : (n_windows,) float64, sum((recon - x)^2) / sum((x - mean)^2) (0 = lossless; NaN when
        the window equals the mean)
    cosine : (n_windows,) float64, cosine of the flattened reconstruction with the flattened window
    """

    coefficients: np.ndarray
    relative_mse: np.ndarray
    cosine: np.ndarray


def _flat(patches: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(patches)
    if arr.ndim < 2:
        raise NeurratorError(_WHAT, f"{what} must be (n_windows, n_patches, dim) or (n_windows, features), got {arr.shape}")
    if arr.dtype == np.float16:
        raise NeurratorError(_WHAT, f"{what} is float16; use float32 (float16 is not allowed, DESIGN.md)")
    return arr.reshape(arr.shape[0], -1)


def _check_basis(components: np.ndarray, mean: np.ndarray, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    comps = np.asarray(components)
    mean = np.asarray(mean)
    flat_c = comps.reshape(comps.shape[0], -1) if comps.ndim >= 2 else None
    if flat_c is None or flat_c.shape[1] != mean.size or flat_c.shape[0] == 0:
        raise NeurratorError(
            _WHAT, f"components {comps.shape} must be (rank >= 1, ...) with one value per feature of mean {mean.shape}"
        )
    if n_features is not None and mean.size != n_features:
        raise NeurratorError(_WHAT, f"the basis has {mean.size} features per window but the windows have {n_features}")
    return flat_c, mean.reshape(-1)


def fit_pca_basis(
    patches: np.ndarray, *, rank: int, chunk_features: int = 1 << 16
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` principal components of windows, via the (n_windows x n_windows) Gram matrix.

    Parameters
    ----------
    patches
        (n_windows, n_patches, dim) or (n_windows, features), any float dtype but float16 (a memmap
        works: features are read ``chunk_features`` at a time, so memory is O(n_windows^2 + rank x features)).
    rank
        Number of components, 1 <= rank <= n_windows - 1 (with the mean removed, n_windows - 1
        components already reproduce the windows exactly).

    Returns
    -------
    components : (rank, *patches.shape[1:]) float32, orthonormal rows when flattened; the sign of each
        is fixed so that its largest-magnitude entry is positive (deterministic).
    mean : patches.shape[1:] float32, the mean window.
    """
    x = _flat(patches, "patches")
    n, m = x.shape
    rank = int(rank)
    if not 1 <= rank <= max(n - 1, 1):
        raise NeurratorError(_WHAT, f"rank must be between 1 and n_windows - 1 = {n - 1}, got {rank}")
    mean = np.zeros(m, np.float64)
    for s in range(0, m, chunk_features):
        mean[s:s + chunk_features] = x[:, s:s + chunk_features].mean(0, dtype=np.float64)
    gram = np.zeros((n, n), np.float64)
    for s in range(0, m, chunk_features):
        block = x[:, s:s + chunk_features].astype(np.float64) - mean[s:s + chunk_features]
        gram += block @ block.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:rank]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    scale = np.where(evals > evals.max(initial=0.0) * 1e-12, 1.0 / np.sqrt(np.maximum(evals, 1e-300)), 0.0)
    comps = np.zeros((rank, m), np.float32)
    for s in range(0, m, chunk_features):
        block = x[:, s:s + chunk_features].astype(np.float64) - mean[s:s + chunk_features]
        comps[:, s:s + chunk_features] = ((evecs.T @ block) * scale[:, None]).astype(np.float32)
    peak = comps[np.arange(rank), np.abs(comps).argmax(1)]
    comps *= np.where(peak < 0, -1.0, 1.0).astype(np.float32)[:, None]
    shape = np.asarray(patches).shape[1:]
    return comps.reshape((rank, *shape)), mean.astype(np.float32).reshape(shape)


# The encoder readout's folding (``lin_scale`` and ``target_std`` into the rows) lives once, in the
# extension, which reads compact predictions in that space with pynwb alone.
encoder_readout_basis = ndx_encoder_readout_basis


def reconstruct(coefficients: np.ndarray, *, components: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(n, rank) coefficients -> (n, *mean.shape) float32 windows: ``coefficients @ components + mean``."""
    flat_c, flat_m = _check_basis(components, mean)
    coef = np.asarray(coefficients, dtype=np.float32)
    if coef.ndim != 2 or coef.shape[1] != flat_c.shape[0]:
        raise NeurratorError(_WHAT, f"coefficients must be (n, {flat_c.shape[0]}), got {coef.shape}")
    out = coef @ flat_c.astype(np.float32, copy=False) + flat_m.astype(np.float32, copy=False)
    return out.reshape((coef.shape[0], *np.asarray(mean).shape))


def reconstruction_error(
    original: np.ndarray, reconstructed: np.ndarray, *, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per window: (relative_mse, cosine) of ``reconstructed`` against ``original`` (both (n, ...)).

    relative_mse = sum((reconstructed - original)^2) / sum((original - mean)^2), NaN when the window
    equals the mean; cosine of the flattened windows, NaN when either is all zeros.
    """
    a = _flat(original, "original").astype(np.float64)
    b = _flat(reconstructed, "reconstructed").astype(np.float64)
    if a.shape != b.shape:
        raise NeurratorError(_WHAT, f"original {a.shape} and reconstructed {b.shape} differ in shape")
    m = np.asarray(mean, dtype=np.float64).reshape(-1)
    err = ((b - a) ** 2).sum(1)
    spread = ((a - m) ** 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(spread > 0, err / spread, np.nan)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return rel, cos


def compress_windows(
    patches: np.ndarray, *, components: np.ndarray, mean: np.ndarray, batch: int = 16
) -> CompressedPatches:
    """Least-squares coefficients of each window in the basis, and the measured error of each window.

    ``components`` need not be orthonormal (an encoder readout is not): coefficients solve
    ``min ||c @ components + mean - x||``. ``batch`` windows are processed at a time (memory
    O(batch x features)); ``patches`` may be a memmap.
    """
    x = _flat(patches, "patches")
    flat_c, flat_m = _check_basis(components, mean, x.shape[1])
    c64 = flat_c.astype(np.float64)
    # solve on unit-norm rows (an encoder readout's rows carry coefficient scales spanning many orders of
    # magnitude: orthogonal, but their raw Gram matrix looks singular), then undo the norms
    norms = np.linalg.norm(c64, axis=1)
    if not np.all(norms > 0):
        raise NeurratorError(_WHAT, "the basis has zero components; drop them")
    unit = c64 / norms[:, None]
    gram = unit @ unit.T
    ev = np.linalg.eigvalsh(gram)
    if ev[0] <= ev[-1] * 1e-10:
        raise NeurratorError(_WHAT, "the basis components are linearly dependent; drop repeated or zero rows")
    chol = np.linalg.cholesky(gram)
    n = x.shape[0]
    coef = np.zeros((n, flat_c.shape[0]), np.float32)
    rel = np.zeros(n, np.float64)
    cos = np.zeros(n, np.float64)
    for s in range(0, n, batch):
        block = x[s:s + batch].astype(np.float64)
        rhs = (block - flat_m) @ unit.T
        c = (np.linalg.solve(chol.T, np.linalg.solve(chol, rhs.T)).T / norms).astype(np.float32)
        coef[s:s + batch] = c
        recon = c @ flat_c.astype(np.float32, copy=False) + flat_m.astype(np.float32, copy=False)
        rel[s:s + batch], cos[s:s + batch] = reconstruction_error(block, recon, mean=flat_m)
    return CompressedPatches(coef, rel, cos)


__all__ = [
    "CompressedPatches",
    "fit_pca_basis",
    "encoder_readout_basis",
    "reconstruct",
    "reconstruction_error",
    "compress_windows",
]
