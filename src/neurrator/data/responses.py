"""Binned counts of the training presentations -> per-unit trial responses and split-half reliability.

Responses (`trial_responses`) are spike counts in a response window of each presentation (the frame's
own bins, lagged by ``offset_bins`` for the visual latency), minus the unit's mean window count over the
given (training) presentations, arranged as (repeats, frames, units). Reliability (`unit_reliability`):
split-half reliability of each unit's response over training repeats (Spearman-Brown corrected), with a
circular-shift null p and BH q over units; a unit whose reliability is not significant or below
``min_reliability`` is "not visually driven". Needed before the unit subsets are built (single units are
picked by reliability), so it lives in the data stage.

Images shown once each (no second repeat to split) are split over images instead
(`image_split_reliability`): the unit's response-weighted average of the image features on the odd images
against the same on the even images. With one training repeat of a movie, reliability is undefined
(`undefined_reliability`: no unit passes the gate) and says so.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from neurrator.stats.resampling import benjamini_hochberg, permutation_pvalue, split_half_reliability

__all__ = ["Reliability", "TrialResponses", "image_split_reliability", "trial_responses", "undefined_reliability",
           "unit_reliability", "unit_reliability_for"]

log = logging.getLogger(__name__)


class TrialResponses(NamedTuple):
    """Baseline-subtracted window counts per repeat, frame and unit, plus the per-bin baseline."""

    values: np.ndarray  # (R, F, N) float32: window count minus the unit's mean window count
    frames: np.ndarray  # (F,) int64 movie frame of each column (ascending; frames shown in every repeat)
    repeats: np.ndarray  # (R,) int64 repeat of each row
    baseline: np.ndarray  # (N,) float64 mean window count over the presentations used
    bin_mean: np.ndarray  # (N,) float64 mean count per bin (the baseline input of the drive probe)
    bin_sd: np.ndarray  # (N,) float64 std of the count per bin

    @property
    def mean(self) -> np.ndarray:
        """(F, N) trial-averaged baseline-subtracted response."""
        return self.values.mean(axis=0)


def trial_responses(binned, presentation_idx: np.ndarray, *, window_bins: int | None = None,
                    offset_bins: int | None = None) -> TrialResponses:
    """Spike counts in each presentation's response window, baseline-subtracted, as (R, F, N).

    Parameters
    ----------
    binned
        `neurrator.data.binning.Binned` (counts (P*b, N) uint16, frame, repeat, bins_per_frame).
    presentation_idx
        (P',) presentations to use (the TRAINING repeats, ``split.train``).
    window_bins
        Bins summed per presentation (default ``bins_per_frame``: the frame's own bins).
    offset_bins
        Lag of the window in bins (default ``bins_per_frame``: one frame, ~33 ms at 30 Hz, about the
        visual latency of cortex). Bins outside the repeat count as 0.

    Returns
    -------
    TrialResponses
        Only frames shown in every used repeat are kept (each repeat then has one value per frame).
    """
    b = int(binned.bins_per_frame)
    w = b if window_bins is None else int(window_bins)
    off = b if offset_bins is None else int(offset_bins)
    pres = np.asarray(presentation_idx, dtype=np.int64)
    if pres.size == 0:
        raise ValueError("no presentations to compute responses from")
    counts = np.asarray(binned.counts)
    n_rows, N = counts.shape
    rep_all = np.asarray(binned.repeat)
    # first row of the window; rows must stay inside the presentation's repeat (contiguous presentations)
    first = pres * b + b // 2 - w // 2 + off
    change = np.flatnonzero(np.diff(rep_all) != 0) + 1
    run_start = np.concatenate([[0], change])
    run_stop = np.concatenate([change, [len(rep_all)]])
    run_of = np.searchsorted(run_start, pres, side="right") - 1
    lo, hi = run_start[run_of] * b, run_stop[run_of] * b
    resp = np.zeros((pres.size, N), dtype=np.float64)
    for j in range(w):
        rows = first + j
        ok = (rows >= lo) & (rows < hi)
        resp[ok] += counts[rows[ok]]
    bins = (pres[:, None] * b + np.arange(b)[None, :]).ravel()
    bc = counts[bins].astype(np.float64)
    bin_mean, bin_sd = bc.mean(axis=0), bc.std(axis=0)
    frame = np.asarray(binned.frame)[pres]
    rep = rep_all[pres]
    repeats = np.unique(rep)
    frames = np.unique(frame)
    shown = np.zeros((repeats.size, frames.size), dtype=bool)
    ri = np.searchsorted(repeats, rep)
    fi = np.searchsorted(frames, frame)
    shown[ri, fi] = True
    keep = shown.all(axis=0)
    whole = shown.all(axis=1)  # repeats that show every frame
    # drop the frames missing from some repeat, or (when that keeps more) the repeats missing some frame:
    # e.g. flashed images shown 49 or 50 times, whose 50th "repeat" holds only some images
    rows = np.ones(repeats.size, dtype=bool)
    if whole.sum() >= 2 and whole.sum() * frames.size > repeats.size * keep.sum():
        rows, keep = whole, np.ones(frames.size, dtype=bool)
    if not keep.any():
        raise ValueError("no movie frame is shown in every repeat used")
    out = np.zeros((repeats.size, frames.size, N), dtype=np.float64)
    out[ri, fi] = resp  # the last presentation wins if a frame repeats inside one repeat
    baseline = resp.mean(axis=0)
    out = (out[rows][:, keep] - baseline).astype(np.float32)
    return TrialResponses(out, frames[keep].astype(np.int64), repeats[rows].astype(np.int64), baseline, bin_mean,
                          bin_sd)


class Reliability(NamedTuple):
    """Split-half reliability per unit and the gate."""

    value: np.ndarray  # (N,) Spearman-Brown corrected split-half reliability (NaN: silent unit)
    p: np.ndarray  # (N,) one-sided circular-shift null p
    q: np.ndarray  # (N,) BH q over units
    driven: np.ndarray  # (N,) bool: q <= alpha and value >= min_reliability


def unit_reliability(responses: np.ndarray, *, min_reliability: float = 0.1, alpha: float = 0.05,
                     n_splits: int = 20, n_null: int = 1000, min_shift: int = 30, seed: int = 0) -> Reliability:
    """Split-half reliability of each unit over repeats, its null p, and the "visually driven" gate.

    Parameters
    ----------
    responses
        (R, F, N) trial responses (`TrialResponses.values`), R >= 2.
    min_reliability, alpha
        A unit is visually driven when its BH q (over units) is <= ``alpha`` and its reliability is at
        least ``min_reliability``.
    n_splits, n_null, min_shift, seed
        Passed to `neurrator.stats.resampling.split_half_reliability` (seed + unit index per unit).
    """
    x = np.asarray(responses, dtype=np.float64)
    R, F, N = x.shape
    rel = np.full(N, np.nan)
    p = np.full(N, np.nan)
    for i in range(N):
        rel[i], p[i] = split_half_reliability(x[:, :, i], n_splits=n_splits, n_null=n_null, min_shift=min_shift,
                                              seed=seed + i)
    return _gate(rel, p, alpha=alpha, min_reliability=min_reliability)


def _gate(rel: np.ndarray, p: np.ndarray, *, alpha: float, min_reliability: float) -> Reliability:
    q = benjamini_hochberg(p)
    driven = np.nan_to_num(q, nan=1.0) <= alpha
    driven &= np.nan_to_num(rel, nan=-np.inf) >= min_reliability
    return Reliability(rel, p, q, driven)


def undefined_reliability(n_units: int) -> Reliability:
    """No reliability (NaN) and no unit driven: what one training repeat of a movie gives."""
    nan = np.full(int(n_units), np.nan)
    return Reliability(nan, nan.copy(), nan.copy(), np.zeros(int(n_units), dtype=bool))


def image_split_reliability(values: np.ndarray, features: np.ndarray, *, min_reliability: float = 0.1,
                            alpha: float = 0.05, n_null: int = 1000, n_components: int = 32,
                            seed: int = 0) -> Reliability:
    """Reliability of units over IMAGES shown once each: odd images against even images.

    On each half of the images (odd / even positions of the image order) a unit's response-weighted
    average of the image features (a spike-triggered average in feature space) is computed and predicts
    the unit's response to the images of the OTHER half (their features projected on it); the reliability
    is the mean of the two cross-predicted Pearson r: a unit whose response follows the same image features
    on two disjoint sets of images is reliable. The features are reduced to their ``n_components`` leading
    principal components first. Null: the responses permuted over the images (images are independent
    items), ``n_null`` times, the same statistic recomputed; one-sided p, BH q over units and the gate of
    `unit_reliability`.

    Parameters
    ----------
    values
        ``(F, N)`` baseline-subtracted response of N units to F images (one showing each).
    features
        ``(F, D)`` features of the same images (e.g. the backbone's patch tokens averaged over patches).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(80, 6))
    >>> resp = np.stack([x[:, 0] + 0.3 * rng.normal(size=80), rng.normal(size=80)], axis=1)
    >>> rel = image_split_reliability(resp, x, n_null=200)
    >>> rel.driven.tolist(), bool(rel.value[0] > 0.5)
    ([True, False], True)
    """
    y = np.asarray(values, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    F, N = y.shape
    if F < 4:
        raise ValueError("image-split reliability needs at least 4 images")
    x = x - x.mean(axis=0)
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    k = max(1, min(int(n_components), int(np.sum(sv > sv[0] * 1e-9)) if sv.size else 1))
    x = u[:, :k] * sv[:k]  # (F, k) principal-component scores
    odd = np.arange(F) % 2 == 1

    def cross(resp: np.ndarray, fit: np.ndarray, test: np.ndarray) -> np.ndarray:  # (..., N) r on ``test``
        w = np.einsum("...fn,fk->...kn", resp[..., fit, :], x[fit])  # STA per unit
        pred = np.einsum("fk,...kn->...fn", x[test], w)
        y_t = resp[..., test, :] - resp[..., test, :].mean(axis=-2, keepdims=True)
        pred = pred - pred.mean(axis=-2, keepdims=True)
        den = np.sqrt((pred * pred).sum(axis=-2) * (y_t * y_t).sum(axis=-2))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (pred * y_t).sum(axis=-2) / den, np.nan)

    def corr(resp: np.ndarray) -> np.ndarray:  # (..., F, N) -> (..., N)
        return (cross(resp, odd, ~odd) + cross(resp, ~odd, odd)) / 2

    y = y - y.mean(axis=0)
    r = corr(y)
    rng = np.random.default_rng(seed)
    null = np.empty((n_null, N))
    for s in range(0, n_null, 50):
        perms = np.stack([rng.permutation(F) for _ in range(min(50, n_null - s))])
        null[s:s + len(perms)] = corr(y[perms])
    p = np.asarray(permutation_pvalue(r, np.nan_to_num(null, nan=-np.inf), alternative="greater"), dtype=np.float64)
    p = np.where(np.isnan(r), np.nan, p)
    return _gate(r, p, alpha=alpha, min_reliability=min_reliability)


def unit_reliability_for(binned, split, *, offset_bins: int, seed: int, flashed: bool = False,
                         min_shift: int = 30, features: np.ndarray | None = None):
    """Trial responses on the training repeats and each unit's reliability (for picking single units).

    Movies: each frame's own bins, lagged by ``offset_bins`` (0: one frame, about the visual latency).
    Flashed images (``flashed``): the whole onset-aligned window of each presentation, which already
    starts at the latency (a lag would reach into the next presentation). ``min_shift``: the smallest
    circular shift of the reliability null (1 s of movie frames; 1 for independent images).

    With fewer than 2 training repeats, split-half reliability over repeats is undefined: flashed images
    with ``features`` (``(F, D)`` per image index) are split over images instead (`image_split_reliability`);
    otherwise ``(responses, None)`` (single units are then picked by spike count, and no unit passes the
    reliability gate of the per-unit analyses).
    """
    if flashed:
        tr = trial_responses(binned, split.train, window_bins=int(binned.bins_per_frame), offset_bins=0)
    else:
        tr = trial_responses(binned, split.train, offset_bins=offset_bins or None)
    if tr.values.shape[0] >= 2:
        return tr, unit_reliability(tr.values, seed=seed, min_shift=min_shift)
    if flashed and features is not None and tr.values.shape[1] >= 4:
        log.info("each training image was shown once: reliability is split over images (odd against even images)")
        return tr, image_split_reliability(tr.values[0], np.asarray(features)[tr.frames], seed=seed)
    what = "too few training images" if flashed else "one training repeat of the movie"
    fix = "" if flashed else " (train on >= 2 repeats: lower --val-repeats / --test-repeats)"
    log.warning("%s: reliability is undefined, so single units are picked by spike count and no unit gets a "
                "preferred stimulus or concept; the decoding, leave-one-out, drive, group and scaling analyses "
                "still run%s", what, fix)
    return tr, None
