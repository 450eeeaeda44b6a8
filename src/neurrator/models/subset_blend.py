"""The output blend chosen for one unit subset (issue 28.1).

After training, `neurrator.models.readout.fit_blend` chooses the blend (ridge + beta (encoder - ridge), soft
retrieval, kNN over the training windows) once per subset size, on a few random draws of that size. A
subset decoded later goes through its size's row. `calibrate_blend` makes the same choice for exactly the
units to be decoded, on validation presentations of the session: the same grid, rule and windows, no
gradient step, about 2 s at 120 units x 600 windows on one CPU core; at CLIP ViT-L/14-336's 576 x 1024
targets 114 s and a peak of 11.9 GiB (2,000 units, 227 validation windows; benchmarks/RESULTS.md, "The
blend's choice at full size", 21:30 UTC). `predict(..., blend=choice)` decodes with it.

The presentations must be ones the encoder did not train on and that will not be scored: the split's
validation repeats (``split.val``), as in training. Repeats it trained on are refused (the encoder keeps
their ids in ``extra["repeats"]``; encoders trained before it did cannot tell). Frames the encoder held out
(``holdout_frames``) are left out, as in training.

Measured (benchmarks/RESULTS.md, bench_peers.py's subset curve, 10 simulated sessions x 3 draws): against
the same encoder retrained on the subset, within 1 s -0.005 / -0.006 at 10 / 30 of 120 units (the size's
row: -0.008 / -0.011), but -0.014 / -0.018 at 60 / 100 (the row: -0.004 / -0.007), where one subset's
validation windows choose less reliably than the row's pooled draws; and on the demo session's 18
subsets of at most 30 units, within 1 s -0.010 (13 behind, 4 ahead), top-1 +0.001, centred cosine
+0.007. Not a reliable win: a tool to compare with, not the default decode (the pipeline does not use it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from neurrator.models.encoder import BLEND_KEYS
from neurrator.models.prediction import PresentationWindows, columns
from neurrator.models.readout import candidate_rows, fit_subset_blend

__all__ = ["BlendChoice", "calibrate_blend"]


@dataclass(frozen=True)
class BlendChoice:
    """One blend: ``beta`` (share of the encoder against the subset's ridge), ``gamma`` and ``tau`` (share and
    temperature of the soft retrieval), ``knn_k`` and ``knn_w`` (neighbours and share of the windows' kNN);
    with the number of units and validation windows it was chosen on, its validation scores (centred patch
    cosine; identification: the mean of top-1, top-5 and top-30) and the subset's ridge's cosine there (the
    floor of the rule)."""

    beta: float
    gamma: float
    tau: float
    knn_k: int
    knn_w: float
    n_units: int = 0
    n_windows: int = 0
    centred_patch_cosine: float = float("nan")
    identification: float = float("nan")
    ridge_centred_patch_cosine: float = float("nan")

    def params(self) -> dict:
        """Keyword arguments of `neurrator.models.encoder.SpikeEncoder.blend_output`."""
        d = asdict(self)
        return {k: d[k] for k in BLEND_KEYS}


@torch.no_grad()
def calibrate_blend(trained, binned, targets: np.ndarray, presentation_idx: np.ndarray, *,
                    unit_idx: np.ndarray | None = None, device: str | torch.device = "cpu") -> BlendChoice:
    """The blend for exactly the units ``unit_idx`` (columns of ``binned.counts``, default all), chosen on the
    validation presentations ``presentation_idx`` by `fit_blend`'s rule (identification, with the centred
    patch cosine at least the subset's ridge's).

    Parameters
    ----------
    trained
        A `TrainedEncoder` trained with the output blend (``EncoderConfig.blend``).
    binned
        The session's binned counts (the encoder must know the chosen units).
    targets
        (F, n_patches, dim) the movie's target maps (the identification candidates).
    presentation_idx
        Validation presentations (not trained on, not scored).
    """
    if not trained.encoder_config.blend:
        raise ValueError("this encoder was trained without the output blend: there is no blend to choose")
    device = torch.device(device)
    cols = columns(binned, unit_idx)
    pres = np.asarray(presentation_idx, dtype=np.int64).ravel()
    holdout = np.asarray(trained.holdout_frames, dtype=np.int64)
    frames = np.asarray(binned.frame)[pres]
    kept = ~np.isin(frames, holdout)
    pres, frames = pres[kept], frames[kept]
    seen = trained.extra.get("repeats", {})  # encoders trained before this was kept cannot tell
    fitted = np.setdiff1d(seen.get("train", []), seen.get("val", []))
    if np.isin(np.asarray(binned.repeat)[pres], fitted).any():
        raise ValueError(f"presentation_idx holds repeats the encoder trained on (of {fitted.tolist()}): choose the "
                         f"blend on the validation repeats (split.val)")
    if pres.size == 0:
        raise ValueError("no validation presentations to choose the blend on (none given, or all of held-out frames)")
    targets = np.asarray(targets)
    c, last = trained.encoder_config, int(np.max(frames))
    if targets.ndim != 3 or targets.shape[1:] != (c.n_patches, c.dim) or len(targets) <= last:
        raise ValueError(f"targets {targets.shape} are not the maps of this session's frames: need "
                         f"(> {last}, {c.n_patches}, {c.dim})")
    cand, frame = candidate_rows(len(targets), holdout, torch.from_numpy(frames).to(device))
    wins = PresentationWindows(trained, binned, pres, cols, device)
    model = trained.model.to(device).eval()
    out = fit_subset_blend(model, lambda rows: (wins(rows), wins.unit_rows), frame,
                           torch.from_numpy(np.ascontiguousarray(targets[cand.cpu().numpy()], np.float32)).to(device))
    return BlendChoice(beta=float(out["beta"]), gamma=float(out["gamma"]), tau=float(out["tau"]),
                       knn_k=int(out["knn_k"]), knn_w=float(out["knn_w"]), n_units=int(cols.size),
                       n_windows=int(out["n_windows"]), centred_patch_cosine=float(out["centred_patch_cosine"]),
                       identification=float(out["identification"]),
                       ridge_centred_patch_cosine=float("nan") if out["ridge"] is None else float(out["ridge"][0]))
