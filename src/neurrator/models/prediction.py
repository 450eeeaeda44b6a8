"""A trained encoder + binned counts (or ready windows) of any unit subset -> predicted patch tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from neurrator.models.training import TrainedEncoder, autocast
from neurrator.data.binning import window_index

__all__ = ["predict", "predict_windows"]


@torch.no_grad()
def predict(
    trained: TrainedEncoder,
    binned,
    presentation_idx: np.ndarray,
    *,
    unit_idx: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """Predicted patch tokens of the given presentations from the given units.

    Parameters
    ----------
    trained
        From `train_encoder` or `neurrator.models.checkpoint.load_checkpoint`.
    binned
        Binned counts (its ``unit_ids`` must be known to the encoder for the chosen columns).
    presentation_idx
        (P',) int64 presentations to decode.
    unit_idx
        (n,) int64 columns of ``binned.counts`` to decode from (default: all); n >= 1.
    device, batch_size

    Returns
    -------
    tokens : (P', n_patches, dim) float32
    """
    device = torch.device(device)
    cols = np.arange(binned.counts.shape[1]) if unit_idx is None else np.asarray(unit_idx, dtype=np.int64).ravel()
    if cols.size == 0:
        raise ValueError("unit_idx is empty: decode from at least one unit")
    rows = trained.unit_rows(np.asarray(binned.unit_ids)[cols])
    model = trained.model.to(device).eval()
    cfg = trained.train_config
    # only the count rows of the requested windows, and only the chosen columns, travel to the device

    pres_idx = np.asarray(presentation_idx, dtype=np.int64)
    widx = window_index(binned.frame, binned.repeat, bins_per_frame=binned.bins_per_frame,
                        window_bins=cfg.window_bins, offset_bins=cfg.offset_bins)[pres_idx]  # (P', W)
    need = np.unique(widx[widx >= 0])
    sub = np.zeros((len(need) + 1, cols.size), dtype=np.float32)  # last row: zeros, read outside a repeat
    sub[: len(need)] = np.asarray(binned.counts)[need][:, cols]
    local_rows = np.where(widx >= 0, np.searchsorted(need, np.maximum(widx, 0)), len(need))
    counts = torch.from_numpy(sub).to(device)
    rows_t = torch.from_numpy(local_rows).to(device)
    table = torch.from_numpy(rows).to(device)
    out = np.empty((len(pres_idx), trained.encoder_config.n_patches, trained.encoder_config.dim), dtype=np.float32)
    for i in range(0, len(pres_idx), batch_size):
        r = rows_t[i : i + batch_size]
        x = counts.index_select(0, r.reshape(-1)).view(len(r), cfg.window_bins, cols.size)
        with autocast(device, cfg.precision):
            pred = model(x, table)
        out[i : i + len(r)] = pred.float().cpu().numpy()
    return out


@torch.no_grad()
def predict_windows(
    trained: TrainedEncoder,
    windows: np.ndarray,
    unit_ids: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """Predicted patch tokens for arbitrary count windows (e.g. a unit driven above its baseline).

    `predict` decodes recorded presentations; this decodes any input the caller builds, which is how
    the model is probed causally (`neurrator.analysis.contribution.drive_narrations`).

    Parameters
    ----------
    trained
        From `train_encoder` or `neurrator.models.checkpoint.load_checkpoint`.
    windows
        (B, T, n) float32 spike counts per bin, T = the encoder's ``window_bins``, one column per unit.
    unit_ids
        (n,) int64 unit ids (as in ``Binned.unit_ids``) of the columns; each must be a training unit.
    device, batch_size

    Returns
    -------
    tokens : (B, n_patches, dim) float32
    """
    device = torch.device(device)
    x = np.asarray(windows, dtype=np.float32)
    ids = np.asarray(unit_ids).ravel()
    if x.ndim != 3 or x.shape[2] != ids.size or ids.size == 0:
        raise ValueError(f"windows must be (B, T, n) with n = {ids.size} >= 1 unit ids, got {x.shape}")
    T = trained.train_config.window_bins
    if x.shape[1] != T:
        raise ValueError(f"windows have {x.shape[1]} bins but the encoder reads {T}")
    table = torch.from_numpy(trained.unit_rows(ids)).to(device)
    model = trained.model.to(device).eval()
    cfg = trained.train_config
    out = np.empty((x.shape[0], trained.encoder_config.n_patches, trained.encoder_config.dim), dtype=np.float32)
    for i in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(x[i : i + batch_size]).to(device)
        with autocast(device, cfg.precision):
            pred = model(xb, table)
        out[i : i + len(xb)] = pred.float().cpu().numpy()
    return out
