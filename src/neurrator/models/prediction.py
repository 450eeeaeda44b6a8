"""A trained encoder + binned counts (or ready windows) of any unit subset -> predicted patch tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from neurrator.models.training import TrainedEncoder, autocast
from neurrator.data.binning import window_index

__all__ = ["PresentationWindows", "columns", "predict", "predict_windows"]


class PresentationWindows:
    """The count windows of some presentations on some columns of ``binned.counts``, on the device: only the
    count rows the windows read, and only the chosen columns, travel there (a window leaving its repeat reads
    zeros). ``self(rows)`` -> (len(rows), window_bins, n) float32 counts of those presentations (positions in
    ``presentation_idx``); ``unit_rows`` (n,) long, the encoder's row of each column."""

    def __init__(self, trained: TrainedEncoder, binned, presentation_idx: np.ndarray, cols: np.ndarray,
                 device: torch.device) -> None:
        cfg = trained.train_config
        self.unit_rows = torch.from_numpy(trained.unit_rows(np.asarray(binned.unit_ids)[cols])).to(device)
        pres_idx = np.asarray(presentation_idx, dtype=np.int64)
        widx = window_index(binned.frame, binned.repeat, bins_per_frame=binned.bins_per_frame,
                            window_bins=cfg.window_bins, offset_bins=cfg.offset_bins)[pres_idx]  # (P', W)
        need = np.unique(widx[widx >= 0])
        sub = np.zeros((len(need) + 1, cols.size), dtype=np.float32)  # last row: zeros, read outside a repeat
        sub[: len(need)] = np.asarray(binned.counts)[need][:, cols]
        local_rows = np.where(widx >= 0, np.searchsorted(need, np.maximum(widx, 0)), len(need))
        self.counts = torch.from_numpy(sub).to(device)
        self.rows = torch.from_numpy(local_rows).to(device)
        self.shape = (cfg.window_bins, cols.size)

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        r = self.rows[rows]
        return self.counts.index_select(0, r.reshape(-1)).view(len(r), *self.shape)


def columns(binned, unit_idx: np.ndarray | None) -> np.ndarray:
    """(n,) int64 columns of ``binned.counts`` (default all); refuses an empty subset."""
    cols = np.arange(binned.counts.shape[1]) if unit_idx is None else np.asarray(unit_idx, dtype=np.int64).ravel()
    if cols.size == 0:
        raise ValueError("unit_idx is empty: decode from at least one unit")
    return cols


@torch.no_grad()
def predict(
    trained: TrainedEncoder,
    binned,
    presentation_idx: np.ndarray,
    *,
    unit_idx: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    blend=None,
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
    blend
        None: the blend the encoder chose for subsets of this size (`neurrator.models.readout.fit_blend`);
        or a `neurrator.models.subset_blend.BlendChoice` (e.g. `calibrate_blend` of these very units).

    Returns
    -------
    tokens : (P', n_patches, dim) float32
    """
    device = torch.device(device)
    cols = columns(binned, unit_idx)
    model = trained.model.to(device).eval()
    wins = PresentationWindows(trained, binned, presentation_idx, cols, device)
    choice = True if blend is None else blend.params()  # the forward pass refuses a choice it cannot apply
    out = np.empty((len(wins), trained.encoder_config.n_patches, trained.encoder_config.dim), dtype=np.float32)
    for i in range(0, len(wins), batch_size):
        rows = torch.arange(i, min(i + batch_size, len(wins)), device=device)
        x = wins(rows)
        with autocast(device, trained.train_config.precision):
            pred = model(x, wins.unit_rows, blend=choice)
        out[i : i + len(rows)] = pred.float().cpu().numpy()
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
