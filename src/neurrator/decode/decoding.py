"""Trained encoder + unit subsets -> per-subset fidelity, narrations and scores, and the all-units baselines.

The analysis over unit subsets: each subset's counts on the held-out repeats are decoded into patch
tokens, scored for fidelity against the true targets, a few windows are narrated and the narrations
scored against their references. Ridge, kNN and the shuffled-frame control are fitted on the same split
with all units. Plain objects in, plain results out; nothing here opens a file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from neurrator.decode import fidelity as evaluation
from neurrator.decode.baselines import knn_baseline, ridge_baseline
from neurrator.decode.chance import duplicate_groups
from neurrator.decode.fidelity import score_predictions, shuffled_control, training_mean_map
from neurrator.decode.scoring import NULL_BLOCKS, NULL_SHIFT, most_frequent_text, score_narrations
from neurrator.models.prediction import predict
from neurrator.stats.nulls import beats_null

log = logging.getLogger(__name__)

#: Fidelity metrics reported per subset, each with its chance level and CI: the headline first
#: (centred patch cosine and frame identification), the raw patch cosine last.
EVAL_METRICS = ("centred_patch_cosine", "top1", "top5", "within_1s", "patch_cosine")
#: Metrics with a paired permutation null (p-value, FDR across subsets).
NULL_TESTED = ("top1", "top5", "within_1s")
#: Metrics with no meaning for independent items (flashed images: "within 1 s" would only mean "a neighbouring
#: image index"): not reported for them.
MOVIE_ONLY = ("within_1s",)
NULL_KINDS = {
    "rank": "frame labels circularly shifted against the predictions within each test repeat (any lag: exact)",
    "rank_items": "test windows paired with true frames of other images (permutation of independent items)",
    "narration": NULL_SHIFT,
    "narration_items": NULL_BLOCKS,
    "ci": "no permutation null: beats_null means the CI's lower end exceeds the chance level",
    "cosine": "targets circularly shifted against the predictions within each test repeat (any lag: exact); BH across subsets",
}


class Metric(NamedTuple):
    """A fidelity figure with its chance level, 95% block-bootstrap CI, permutation p and the mean of that
    permutation null (NaN: none); the analytic ``chance`` and the empirical ``null_mean`` side by side."""

    value: float
    chance: float
    lo: float = float("nan")
    hi: float = float("nan")
    p: float = float("nan")
    null_mean: float = float("nan")


@dataclass
class SubsetResult:
    """What one unit subset gave: fidelity metrics and its narrations."""

    subset: Any  # neurrator.decode.subsets.UnitSubset
    metrics: dict[str, Metric]  # metric -> value, chance, CI, p
    presentations: np.ndarray  # (k,) narrated presentation indices
    frames: np.ndarray  # (k,) their movie frames
    narrations: list[str]
    references: list[str]
    similarity: np.ndarray  # (k,) matched sentence similarity
    shuffled: np.ndarray  # (k,) similarity to a block-shuffled reference
    floor: np.ndarray  # (k,) similarity to word salad
    predicted: np.ndarray  # (k, n_patches, dim) float32 predicted patches of the narrated windows
    scores: Any = None  # neurrator.decode.scoring.NarrationScores (null, p, CIs, constant control)
    q: dict[str, float] = field(default_factory=dict)  # metric -> FDR q across subsets
    beats_null: dict[str, bool] = field(default_factory=dict)  # metric -> significant after FDR
    rank_null: str = NULL_KINDS["rank"]  # what the identification metrics' null is (NULL_KINDS)

    def narration_metric(self) -> Metric:
        """Mean matched narration similarity against its paired null."""
        s = self.scores
        return Metric(float(np.mean(self.similarity)), float(s.null_mean), float(s.ci_lo), float(s.ci_hi),
                      float(s.p_value))


class ScoringContext(NamedTuple):
    """What every fidelity score of a run shares (computed once).

    Attributes
    ----------
    train_mean
        ``(n_patches, dim)`` mean target map of the training frames (centres cosines and identification).
    groups
        ``(F,)`` duplicate groups of the targets (`neurrator.decode.chance.duplicate_groups`): chance levels.
    constant
        The constant-narration control (the most frequent bank text).
    block_frames
        Scene-block length in frames for CIs and nulls (1 s).
    n_boot, n_perm
        Bootstrap resamples and permutations (circular shifts of the identification null: 2,000 gives a
        p resolution of 1/2,001, enough to pass FDR over a few hundred subsets).
    continuous
        The stimulus is a movie: the identification null shifts the frame labels circularly within each
        test repeat (`neurrator.decode.chance.identification_null`); False (flashed images, independent
        items): it permutes them across blocks.
    """

    train_mean: np.ndarray
    groups: np.ndarray
    constant: str
    block_frames: int = 30
    n_boot: int = 500
    n_perm: int = 2000
    continuous: bool = True

    def kwargs(self, seed: int) -> dict[str, Any]:
        return dict(train_mean=self.train_mean, groups=self.groups, block_frames=self.block_frames,
                    n_boot=self.n_boot, n_perm=self.n_perm, seed=seed)


def scoring_context(targets: np.ndarray, train_frames: np.ndarray, *, bank_texts: Sequence[str], fps: float,
                    holdout_frames: np.ndarray | None = None, n_boot: int = 500, n_perm: int = 2000,
                    continuous: bool = True) -> ScoringContext:
    """The run's `ScoringContext` from the targets, the training frames and the retrieval bank
    (``continuous``: the stimulus is a movie, `neurrator.data.stimuli.StimulusKind.continuous`)."""
    tf = np.unique(np.asarray(train_frames, dtype=np.int64))
    if holdout_frames is not None and len(holdout_frames):
        tf = tf[~np.isin(tf, holdout_frames)]
    return ScoringContext(train_mean=training_mean_map(targets, tf), groups=duplicate_groups(targets),
                          constant=most_frequent_text(list(bank_texts)),
                          block_frames=max(1, int(round(fps))), n_boot=n_boot, n_perm=n_perm,
                          continuous=continuous)


def narrated_presentations(binned, split, k: int, *, spread: bool = False) -> np.ndarray:
    """``k`` test presentations to narrate.

    Default (flashed images): spread evenly over the first test repeat, its first and last included.
    ``spread`` (a movie): the k frames ``m * n / k`` (m = 0 .. k-1, n frames in a repeat) taking turns over
    the test repeats, so that each repeat's narrations sit evenly round the whole movie, as the
    narrations' circular-shift null needs (`neurrator.decode.scoring.score_narrations`, ``rotate``), and
    two repeats give it 1 / (k/2)^2 resolution instead of 1 / k. ``k`` is rounded down to a multiple of
    the number of test repeats (at least one narration per repeat).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> b = SimpleNamespace(repeat=np.repeat([0, 1, 2], 10), frame=np.tile(np.arange(10), 3))
    >>> narrated_presentations(b, SimpleNamespace(test=np.arange(20, 30)), 3).tolist()
    [20, 24, 29]
    >>> narrated_presentations(b, SimpleNamespace(test=np.arange(10, 30)), 4, spread=True).tolist()
    [10, 15, 22, 27]
    """
    test = np.asarray(split.test)
    reps = list(dict.fromkeys(binned.repeat[test].tolist()))
    first = test[binned.repeat[test] == reps[0]]
    if not spread:
        return first[np.unique(np.linspace(0, len(first) - 1, num=min(k, len(first))).round().astype(int))]
    per = max(1, min(k // len(reps), len(first) // len(reps)))
    out = []
    for m in range(per * len(reps)):
        in_r = test[binned.repeat[test] == reps[m % len(reps)]]
        out.append(in_r[min(len(in_r) - 1, (m * len(in_r)) // (per * len(reps)))])
    return np.unique(np.asarray(out, dtype=np.int64))


def metric_pairs(scores: dict[str, Any]) -> dict[str, Metric]:
    """`Metric` per fidelity metric from an `evaluation.score_predictions` dict."""
    nan = float("nan")
    return {m: Metric(float(scores[m]), float(scores[f"chance_{m}"]), float(scores.get(f"{m}_ci_lo", nan)),
                      float(scores.get(f"{m}_ci_hi", nan)), float(scores.get(f"p_{m}", nan)),
                      float(scores.get(f"{m}_null_mean", nan))) for m in EVAL_METRICS}


def chance_disagreements(scores: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Metric -> (analytic chance, null mean) where the analytic chance lies outside the central 95% of
    the permutation null (`evaluation.frame_identification`'s ``<metric>_null_lo`` / ``_hi``).

    The analytic chance assumes a prediction is the exact map of a uniformly random frame; the null keeps
    the decoder's own habits (it may favour a few frames, or frames of large duplicate groups), so the two
    can differ. The p-value is against the null; a disagreement is logged so the chance line is not read
    as the null.

    >>> chance_disagreements({"top1": .1, "chance_top1": .01, "top1_null_mean": .05, "top1_null_lo": .03,
    ...                       "top1_null_hi": .07})
    {'top1': (0.01, 0.05)}
    """
    out = {}
    for m in NULL_TESTED:
        lo, hi = scores.get(f"{m}_null_lo", np.nan), scores.get(f"{m}_null_hi", np.nan)
        c = scores.get(f"chance_{m}", np.nan)
        if np.isfinite(lo) and np.isfinite(c) and not lo <= c <= hi:
            out[m] = (float(c), float(scores[f"{m}_null_mean"]))
    return out


def _reported(metrics: dict, context: ScoringContext) -> dict:
    """The metrics that mean something for the stimulus kind (flashed images: without `MOVIE_ONLY`)."""
    return metrics if context.continuous else {k: v for k, v in metrics.items() if k not in MOVIE_ONLY}


def apply_fdr(results: Sequence[SubsetResult], *, alpha: float = 0.05) -> None:
    """Benjamini-Hochberg across subsets, per null-tested metric and for narration similarity; sets
    ``q`` and ``beats_null`` of every result. The cosines of a movie have a circular-shift null too (their
    p comes from `neurrator.decode.fidelity.cosine_shift_null`; the CI alone was too narrow for two
    autocorrelated series: on a global-null session the all-units centred cosine "beat" chance); without a
    p (flashed images, independent items) a cosine beats chance when its CI's lower end exceeds it.

    A value at or below its chance level (or below its null's mean) never beats the null, whatever its q:
    a one-sided test that a run of lucky shifts makes "significant" below chance is not a finding; nor
    does a narration that does not beat the constant narration (`NarrationScores.beats_constant`)."""
    for name in (*NULL_TESTED, "narration_similarity"):
        if name != "narration_similarity" and any(name not in r.metrics for r in results):
            continue  # not reported for this stimulus kind (MOVIE_ONLY)
        if name == "narration_similarity":
            p = [r.narration_metric().p for r in results]
        else:
            p = [r.metrics[name].p for r in results]
        q, flags = beats_null(np.asarray(p, dtype=np.float64), alpha=alpha)
        for r, qi, fi in zip(results, q, flags):
            m = r.narration_metric() if name == "narration_similarity" else r.metrics[name]
            above = m.value > m.chance if np.isfinite(m.chance) else True
            above = above and (m.value > m.null_mean if np.isfinite(m.null_mean) else True)
            if name == "narration_similarity" and r.scores is not None:  # and above the constant narration
                above = above and r.scores.beats_constant
            r.q[name], r.beats_null[name] = float(qi), bool(fi and above)
    for name in EVAL_METRICS:
        if name in NULL_TESTED or any(name not in r.metrics for r in results):
            continue
        p = np.asarray([r.metrics[name].p for r in results], dtype=np.float64)
        if np.isfinite(p).any():  # a movie: the cosines' circular-shift null (fidelity.cosine_shift_null), BH
            q, flags = beats_null(p, alpha=alpha)
            for r, qi, fi in zip(results, q, flags):
                m = r.metrics[name]
                above = m.value > m.chance and (m.value > m.null_mean if np.isfinite(m.null_mean) else True)
                r.q[name], r.beats_null[name] = float(qi), bool(fi and above)
        else:  # flashed images (independent items): the block-bootstrap CI against chance
            for r in results:
                m = r.metrics[name]
                r.beats_null[name] = bool(np.isfinite(m.lo) and m.lo > m.chance)


def baseline_metrics(binned, targets: np.ndarray, split, trained, pred_all: np.ndarray, *, fps: float,
                     device: str, context: ScoringContext, seed: int) -> dict[str, dict[str, Metric]]:
    """Ridge, kNN and the shuffled-frame control on the same test repeats as the encoder (all units).

    Parameters
    ----------
    binned, split
        `neurrator.data.binning.Binned` and its train/val/test `Split`.
    targets
        ``(F, n_patches, dim)`` float32 true patch tokens per movie frame.
    trained
        The `TrainedEncoder` (its window and held-out frames are reused).
    pred_all
        ``(len(split.test), n_patches, dim)`` the encoder's all-units predictions (for the shuffled control).
    context
        The run's `ScoringContext` (baselines get CIs, no permutation null).
    """
    tc = trained.train_config
    kw = dict(window_bins=tc.window_bins, offset_bins=tc.offset_bins, holdout_frames=trained.holdout_frames,
              device=device)
    frames = binned.frame[split.test]
    out = {}
    score_kw = {**context.kwargs(seed), "n_perm": 0}
    # ridge on bins summed per frame is the stronger ridge (it beat the unpooled one in the benchmark)
    pool = binned.bins_per_frame if tc.window_bins % binned.bins_per_frame == 0 else 1
    fits = (("ridge", ridge_baseline, {"temporal_pool": pool}), ("knn", knn_baseline, {}))
    for name, fit, extra in fits:
        pred, _info = fit(binned, targets, split, **kw, **extra)
        out[name] = metric_pairs(score_predictions(pred, frames, targets, fps=fps, device=device, **score_kw))
    out["shuffled"] = metric_pairs(shuffled_control(pred_all, frames, targets, fps=fps, device=device, **score_kw))
    return out


def decode_subsets(subsets: Sequence, *, trained, binned, split, targets: np.ndarray, narrated: np.ndarray,
                   narrate: Callable[[np.ndarray], list[str]], references: dict[int, str], embedder, fps: float,
                   device: str, seed: int, context: ScoringContext, progress: Callable = lambda items: items,
                   ) -> tuple[list[SubsetResult], dict[str, dict[str, Metric]]]:
    """Decode, score and narrate every subset; baselines come with the ``all`` subset.

    Parameters
    ----------
    subsets
        `neurrator.decode.subsets.UnitSubset` s.
    trained, binned, split, targets
        The encoder, the binned counts with their split, and ``(F, n_patches, dim)`` true tokens.
    narrated
        ``(k,)`` test presentation indices (sorted, inside ``split.test``) that are narrated per subset; for
        a movie (``context.continuous``) each repeat's must sit evenly round it (`narrated_presentations`
        with ``spread``): their narrations are tested with the circular-shift null.
    narrate
        ``(k, n_patches, dim) -> k`` texts (the narrator).
    references
        Movie frame -> reference text for every narrated frame.
    embedder
        The sentence embedder for `neurrator.decode.scoring.score_narrations`.
    context
        The run's `ScoringContext` (training mean map, duplicate groups, constant control, blocks).
    progress
        Wraps the subset iterable (e.g. a tqdm bar).

    Returns
    -------
    results : list[SubsetResult]
        In the order of ``subsets``.
    baselines : dict
        Baseline name -> metric -> `Metric`; empty when no subset is ``all``.

    FDR across subsets (`apply_fdr`) is applied before returning.
    """
    results: list[SubsetResult] = []
    baselines: dict[str, dict[str, tuple[float, float]]] = {}
    test_frames = binned.frame[split.test]
    test_repeats = binned.repeat[split.test] if context.continuous else None  # split.test is in time order
    narrated_frames = binned.frame[narrated]
    pos = np.searchsorted(split.test, narrated)
    refs = [references[int(f)] for f in narrated_frames]
    rotate = binned.repeat[narrated] if context.continuous else None  # a movie: the circular-shift null
    for subset in progress(subsets):
        pred = predict(trained, binned, split.test, unit_idx=subset.unit_idx, device=device)
        fid = evaluation.score_predictions(pred, test_frames, targets, fps=fps, device=device,
                                           repeats=test_repeats, **context.kwargs(seed))
        metrics = _reported(metric_pairs(fid), context)
        if subset.kind == "all":
            baselines = {name: _reported(m, context) for name, m in baseline_metrics(
                binned, targets, split, trained, pred, fps=fps, device=device, context=context, seed=seed).items()}
        for m, (c, nm) in chance_disagreements(fid).items():
            log.info("%s %s: the analytic chance %.4f lies outside the central 95%% of its null (mean %.4f); "
                     "the p-value is against the null", subset.label, m, c, nm)
        texts = narrate(pred[pos])
        scores = score_narrations(texts, refs, embedder=embedder, seed=seed, frame_ids=narrated_frames,
                                  constant=context.constant, block_frames=context.block_frames,
                                  n_perm=max(context.n_perm, 1000), n_boot=context.n_boot, rotate=rotate)
        results.append(SubsetResult(subset, metrics, narrated, narrated_frames, list(texts), list(refs),
                                    scores.matched, scores.shuffled, scores.floor, pred[pos].copy(), scores,
                                    rank_null=NULL_KINDS["rank" if context.continuous else "rank_items"]))
        del pred
    apply_fdr(results)
    return results, baselines


__all__ = ["EVAL_METRICS", "MOVIE_ONLY", "Metric", "NULL_KINDS", "NULL_TESTED", "ScoringContext", "SubsetResult", "apply_fdr",
           "baseline_metrics", "chance_disagreements", "decode_subsets", "metric_pairs", "narrated_presentations", "scoring_context"]
