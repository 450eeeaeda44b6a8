"""Trained encoder + unit subsets -> per-subset fidelity, narrations and scores, and the all-units baselines.

The analysis over unit subsets: each subset's counts on the held-out repeats are decoded into patch
tokens, scored for fidelity against the true targets, a few windows are narrated and the narrations
scored against their references. Ridge, kNN and the shuffled-frame control are fitted on the same split
with all units. Plain objects in, plain results out; nothing here opens a file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Fidelity metrics reported per subset, each with its chance level.
EVAL_METRICS = ("patch_cosine", "top1", "top5", "within_1s")


@dataclass
class SubsetResult:
    """What one unit subset gave: fidelity metrics and its narrations."""

    subset: Any  # neurrator.subsets.UnitSubset
    metrics: dict[str, tuple[float, float]]  # metric -> (value, chance)
    presentations: np.ndarray  # (k,) narrated presentation indices
    frames: np.ndarray  # (k,) their movie frames
    narrations: list[str]
    references: list[str]
    similarity: np.ndarray  # (k,) matched sentence similarity
    shuffled: np.ndarray  # (k,) similarity to a shuffled reference
    floor: np.ndarray  # (k,) similarity to word salad
    predicted: np.ndarray  # (k, n_patches, dim) float32 predicted patches of the narrated windows


def narrated_presentations(binned, split, k: int) -> np.ndarray:
    """``k`` presentations spread evenly over the first test repeat.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> b = SimpleNamespace(repeat=np.repeat([0, 1, 2], 10))
    >>> narrated_presentations(b, SimpleNamespace(test=np.arange(20, 30)), 3).tolist()
    [20, 24, 29]
    """
    test = split.test
    first = binned.repeat[test[0]]
    in_repeat = test[binned.repeat[test] == first]
    pick = np.unique(np.linspace(0, len(in_repeat) - 1, num=min(k, len(in_repeat))).round().astype(int))
    return in_repeat[pick]


def metric_pairs(scores: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """(value, chance) per fidelity metric from an `evaluation.score_predictions` dict."""
    return {m: (float(scores[m]), float(scores[f"chance_{m}"])) for m in EVAL_METRICS}


def baseline_metrics(binned, targets: np.ndarray, split, trained, pred_all: np.ndarray, *, fps: float,
                     device: str) -> dict[str, dict[str, tuple[float, float]]]:
    """Ridge, kNN and the shuffled-frame control on the same test repeats as the encoder (all units).

    Parameters
    ----------
    binned, split
        `neurrator.binning.Binned` and its train/val/test `Split`.
    targets
        ``(F, n_patches, dim)`` float32 true patch tokens per movie frame.
    trained
        The `TrainedEncoder` (its window and held-out frames are reused).
    pred_all
        ``(len(split.test), n_patches, dim)`` the encoder's all-units predictions (for the shuffled control).
    """
    from neurrator.evaluation import knn_baseline, ridge_baseline, score_predictions, shuffled_control

    tc = trained.train_config
    kw = dict(window_bins=tc.window_bins, offset_bins=tc.offset_bins, holdout_frames=trained.holdout_frames,
              device=device)
    frames = binned.frame[split.test]
    out = {}
    # ridge on bins summed per frame is the stronger ridge (it beat the unpooled one in the benchmark)
    pool = binned.bins_per_frame if tc.window_bins % binned.bins_per_frame == 0 else 1
    fits = (("ridge", ridge_baseline, {"temporal_pool": pool}), ("knn", knn_baseline, {}))
    for name, fit, extra in fits:
        pred, _info = fit(binned, targets, split, **kw, **extra)
        out[name] = metric_pairs(score_predictions(pred, frames, targets, fps=fps, device=device))
    out["shuffled"] = metric_pairs(shuffled_control(pred_all, frames, targets, fps=fps, device=device))
    return out


def decode_subsets(subsets: Sequence, *, trained, binned, split, targets: np.ndarray, narrated: np.ndarray,
                   narrate: Callable[[np.ndarray], list[str]], references: dict[int, str], embedder, fps: float,
                   device: str, seed: int, progress: Callable = lambda items: items,
                   ) -> tuple[list[SubsetResult], dict[str, dict[str, tuple[float, float]]]]:
    """Decode, score and narrate every subset; baselines come with the ``all`` subset.

    Parameters
    ----------
    subsets
        `neurrator.subsets.UnitSubset` s.
    trained, binned, split, targets
        The encoder, the binned counts with their split, and ``(F, n_patches, dim)`` true tokens.
    narrated
        ``(k,)`` test presentation indices (sorted, inside ``split.test``) that are narrated per subset.
    narrate
        ``(k, n_patches, dim) -> k`` texts (the narrator).
    references
        Movie frame -> reference text for every narrated frame.
    embedder
        The sentence embedder for `neurrator.scoring.score_narrations`.
    progress
        Wraps the subset iterable (e.g. a tqdm bar).

    Returns
    -------
    results : list[SubsetResult]
        In the order of ``subsets``.
    baselines : dict
        Baseline name -> metric -> (value, chance); empty when no subset is ``all``.
    """
    from neurrator import evaluation
    from neurrator.scoring import score_narrations
    from neurrator.training import predict

    results: list[SubsetResult] = []
    baselines: dict[str, dict[str, tuple[float, float]]] = {}
    test_frames = binned.frame[split.test]
    narrated_frames = binned.frame[narrated]
    pos = np.searchsorted(split.test, narrated)
    refs = [references[int(f)] for f in narrated_frames]
    for subset in progress(subsets):
        pred = predict(trained, binned, split.test, unit_idx=subset.unit_idx, device=device)
        metrics = metric_pairs(evaluation.score_predictions(pred, test_frames, targets, fps=fps, device=device))
        if subset.kind == "all":
            baselines = baseline_metrics(binned, targets, split, trained, pred, fps=fps, device=device)
        texts = narrate(pred[pos])
        scores = score_narrations(texts, refs, embedder=embedder, seed=seed, frame_ids=narrated_frames)
        results.append(SubsetResult(subset, metrics, narrated, narrated_frames, list(texts), list(refs),
                                    scores.matched, scores.shuffled, scores.floor, pred[pos].copy()))
        del pred
    return results, baselines


__all__ = ["EVAL_METRICS", "SubsetResult", "baseline_metrics", "decode_subsets", "metric_pairs",
           "narrated_presentations"]
