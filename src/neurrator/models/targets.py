"""Movie frames + a frozen backbone -> patch-token targets per unique frame (cached); optional PCA basis.

Each byte-identical frame is embedded once, in batches, on the backbone's device. The result is
cached as a safetensors file whose name is derived from the frames' content hash, the backbone id,
its weights and the preprocessing string, so a second call with the same inputs computes nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from neurrator.io.progress import progress_iter
from neurrator.models.backbones import Backbone, TargetSpec

__all__ = ["PCABasis", "compute_targets", "fit_pca", "frames_hash", "from_pca", "target_cache_key", "to_pca"]

CACHE_FORMAT = "neurrator-targets-1"


def _frame_digests(frames: np.ndarray) -> list[bytes]:
    return [hashlib.sha256(np.ascontiguousarray(f).tobytes()).digest() for f in frames]


def _combine(frames: np.ndarray, digests: list[bytes]) -> str:
    h = hashlib.sha256(f"{frames.shape}|{frames.dtype}".encode())
    for d in digests:
        h.update(d)
    return h.hexdigest()


def frames_hash(frames: np.ndarray) -> str:
    """sha256 hex digest of a frame stack's shape, dtype and bytes (frame by frame)."""
    frames = np.asarray(frames)
    return _combine(frames, _frame_digests(frames))


def target_cache_key(frames_sha256: str, spec: TargetSpec) -> str:
    """Cache key: content hash of the frames + backbone id + weights + layer + preprocessing."""
    h = hashlib.sha256("\n".join([CACHE_FORMAT, frames_sha256, spec.backbone_id, spec.weights, str(spec.layer),
                                  spec.preprocessing]).encode())
    return h.hexdigest()[:32]


def compute_targets(
    frames: np.ndarray,
    backbone: Backbone,
    *,
    batch_size: int = 32,
    device=None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Penultimate patch tokens of every frame, computed once per unique frame and cached.

    Parameters
    ----------
    frames
        (F, H, W) or (F, H, W, 3) uint8 movie frames (one per movie frame index).
    backbone
        From `neurrator.models.backbones.load_backbone`.
    batch_size
        Frames per forward pass.
    device
        Move the backbone there first (default: where it is).
    cache_dir
        Folder for ``targets-<key>.safetensors``; None disables caching.
    progress
        tqdm bar over batches (False: heartbeat log lines, `neurrator.io.progress`).

    Returns
    -------
    targets : (F, n_patches, dim) float32

    Examples
    --------
    >>> from neurrator.models.backbones import load_backbone
    >>> compute_targets(np.zeros((3, 8, 16), np.uint8), load_backbone("tiny")).shape
    (3, 64, 64)
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
        raise ValueError(f"frames must be (F, H, W[, 3]) uint8, got {frames.shape} {frames.dtype}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if device is not None:
        backbone.to(device)
    spec = backbone.spec
    digests = _frame_digests(frames)
    frames_sha = _combine(frames, digests)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir).expanduser() / f"targets-{target_cache_key(frames_sha, spec)}.safetensors"
        if path.is_file():
            cached = _read_cache(path, frames_sha, spec, len(frames))
            if cached is not None:
                return cached

    # one forward pass per byte-identical frame: order[u] = first frame with unique content u
    first: dict[bytes, int] = {}
    inverse = np.empty(len(frames), dtype=np.int64)
    order_list: list[int] = []
    for i, d in enumerate(digests):
        u = first.setdefault(d, len(first))
        if u == len(order_list):
            order_list.append(i)
        inverse[i] = u
    order = np.asarray(order_list, dtype=np.int64)
    out = np.empty((len(first), spec.n_patches, spec.dim), dtype=np.float32)
    starts = progress_iter(range(0, len(order), batch_size), desc=f"targets ({spec.backbone_id})", bars=progress,
                           unit="batches")
    for s in starts:
        out[s : s + batch_size] = backbone.embed(frames[order[s : s + batch_size]])
    targets = out[inverse]
    if path is not None:
        _write_cache(path, targets, frames_sha, spec)
    return targets


def _write_cache(path: Path, targets: np.ndarray, frames_sha: str, spec: TargetSpec) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": CACHE_FORMAT, "frames_sha256": frames_sha, **{k: str(v) for k, v in spec.to_dict().items()}}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({"targets": np.ascontiguousarray(targets)}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _read_cache(path: Path, frames_sha: str, spec: TargetSpec, n_frames: int) -> np.ndarray | None:
    """The cached targets, or None when the file is unreadable or was written for other inputs."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as h:
            meta = h.metadata() or {}
            arr = h.get_tensor("targets")
    except Exception:
        return None  # corrupt/partial cache: recompute and overwrite
    ok = (meta.get("frames_sha256") == frames_sha and meta.get("backbone_id") == spec.backbone_id
          and meta.get("preprocessing") == spec.preprocessing and meta.get("weights") == spec.weights
          and arr.shape == (n_frames, spec.n_patches, spec.dim) and arr.dtype == np.float32)
    return arr if ok else None


# ---------------------------------------------------------------------------------------------- PCA


class PCABasis(NamedTuple):
    """Per-token PCA of the patch space: ``x ~ mean + coeffs @ components``.

    mean : (dim,) float32; components : (k, dim) float32 orthonormal rows; explained : (k,) float32
    fraction of variance per component.
    """

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray


def fit_pca(targets: np.ndarray, *, n_components: int) -> PCABasis:
    """Fit a PCA basis over all tokens of all frames (one basis shared by every patch position).

    Parameters
    ----------
    targets
        (F, n_patches, dim) float32.
    n_components
        k <= dim.
    """
    x = np.asarray(targets, dtype=np.float64).reshape(-1, targets.shape[-1])
    if not 1 <= n_components <= x.shape[1]:
        raise ValueError(f"n_components must be in 1..{x.shape[1]}, got {n_components}")
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(1, x.shape[0] - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:n_components]
    comps = evecs[:, order].T
    # deterministic sign: largest-magnitude entry of each component positive
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])
    comps = comps * signs[:, None]
    explained = evals[order] / max(evals.sum(), 1e-30)
    return PCABasis(mean.astype(np.float32), comps.astype(np.float32), explained.astype(np.float32))


def to_pca(targets: np.ndarray, basis: PCABasis) -> np.ndarray:
    """(..., dim) tokens -> (..., k) coefficients."""
    return ((np.asarray(targets, np.float32) - basis.mean) @ basis.components.T).astype(np.float32)


def from_pca(coeffs: np.ndarray, basis: PCABasis) -> np.ndarray:
    """(..., k) coefficients -> (..., dim) full tokens (what the narrator reads)."""
    return (np.asarray(coeffs, np.float32) @ basis.components + basis.mean).astype(np.float32)

