"""Trial responses of single units + true patch tokens + SAE concept activations -> per-unit neurration:
reliability gate, preferred stimulus (in words), top frames and concept tuning with FDR-controlled p-values.

What each view means
--------------------
* **Reliability** (`unit_reliability`): split-half reliability of the unit's response over training
  repeats (Spearman-Brown corrected), with a circular-shift null p and BH q over units. A unit whose
  reliability is not significant (q > alpha) or below ``min_reliability`` is "not visually driven" and
  gets no words (empty preferred text, no top concept). Descriptive of the data.
* **Preferred stimulus** (`preferred_stimuli`): the average of the TRUE patch tokens of the training
  frames weighted by the positive part of the unit's trial-averaged, baseline-subtracted response,
  narrated by the frozen narrator; plus the top frames (separated in time). CORRELATIONAL: a
  spike-triggered average in token space; it says what the unit responds to in this movie, not what it
  causes, and it inherits the movie's feature co-occurrences.
* **Concept tuning** (`concept_tuning`): Pearson r of the trial-averaged response with each named SAE
  concept's activation over frames; two-sided circular-shift p (`neurrator.stats.resampling.circular_shift_corr`,
  keeps the response's autocorrelation; p from the Gaussian tail of the shifts' spread, see
  `concept_tuning`) and FDR over units x concepts. CORRELATIONAL. The FDR is
  hierarchical (Benjamini & Bogomolov 2014, `hierarchical_fdr`): units are selected first (by the
  reliability gate in `neurrate_units`; by the Simes p of their own tuning in `concept_tuning`), then
  concepts are tested by BH inside each selected unit at level alpha x (selected / units). A flat BH over all units x concepts controls the share of false
  discoveries among all discoveries, so with many tuned units it lets through concepts of untuned units
  (measured on the simulator: 17% of CA1 units got a "significant" concept with flat BH; see
  benchmarks/RESULTS.md for the hierarchical numbers). Both q's are kept (``q``, ``q_flat``).
* **Decoder contribution** (`neurrator.analysis.contribution`): leave-one-out loss of fidelity and the narration
  of the encoder driven by the unit alone. CAUSAL, but in the MODEL only: they say what the trained
  encoder does with the unit, not what the unit does in the brain.

Responses (`trial_responses`) are spike counts in a response window of each presentation (the frame's
own bins, lagged by ``offset_bins`` for the visual latency), minus the unit's mean window count over the
given (training) presentations, arranged as (repeats, frames, units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np

from neurrator.sae.concepts import top_frames_separated
from neurrator.data.responses import TrialResponses, undefined_reliability, unit_reliability
from neurrator.stats.pools import incomplete_beta
from neurrator.stats.resampling import benjamini_hochberg, circular_shift_corr

__all__ = ["ConceptTuning", "UnitNeurration", "concept_tuning", "hierarchical_fdr", "neurrate_units",
           "paired_correlation_p", "preferred_stimuli", "shot_rotations"]


def hierarchical_fdr(p: np.ndarray, *, alpha: float = 0.05, unit_q: np.ndarray | None = None,
                     selected: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Bogomolov FDR for (N units, K concepts) p-values: (q (N, K), unit q (N,)).

    Units are selected first: by default those whose Simes p (``min_k K p_(k) / k``) has BH q <= alpha
    over units; or the given ``selected`` units with their ``unit_q`` (e.g. the reliability gate: concepts
    are then tested only in visually driven units). Inside a selected unit (R of N selected) concept k is
    significant at level alpha when its within-unit BH q is <= alpha R / N. The returned
    ``q[i, k] = max(unit_q[i], min(1, q_within[i, k] N / R))`` is <= alpha exactly where the procedure at
    ``alpha`` rejects (R depends on alpha: for another level, rerun); units not selected get q > alpha.
    NaN p-values are ignored (a row of NaN stays NaN).

    Examples
    --------
    >>> q, uq = hierarchical_fdr(np.array([[0.001, 0.5], [0.04, 0.9], [0.6, 0.7]]))
    >>> (q <= 0.05).tolist()
    [[True, False], [False, False], [False, False]]
    """
    p = np.asarray(p, dtype=np.float64)
    N, K = p.shape
    q_within = np.stack([benjamini_hochberg(row) for row in p]) if N else p.copy()
    if selected is None:
        with np.errstate(invalid="ignore"):
            simes = np.nanmin(np.where(np.isnan(q_within), np.inf, q_within), axis=1) if K else np.full(N, np.inf)
        unit_q = benjamini_hochberg(np.where(np.isfinite(simes), simes, np.nan))
        selected = np.nan_to_num(unit_q, nan=1.0) <= alpha
    else:
        selected = np.asarray(selected, dtype=bool)
        unit_q = np.asarray(unit_q, dtype=np.float64) if unit_q is not None else np.where(selected, 0.0, 1.0)
    R = int(selected.sum())
    scale = N / max(R, 1)
    q = np.maximum(np.nan_to_num(unit_q, nan=1.0)[:, None], np.minimum(1.0, q_within * scale))
    q = np.where(selected[:, None], q, np.maximum(q, np.nextafter(alpha, 1.0)))
    return np.where(np.isnan(p), np.nan, q), unit_q


class ConceptTuning(NamedTuple):
    """Correlation of each unit's trial-averaged response with each concept over frames."""

    r: np.ndarray  # (N, K) Pearson r
    p: np.ndarray  # (N, K) two-sided circular-shift p
    q: np.ndarray  # (N, K) hierarchical FDR q (`hierarchical_fdr`): significant where q <= 0.05
    q_flat: np.ndarray  # (N, K) BH q over all units x concepts (for reference)
    unit_q: np.ndarray  # (N,) BH q of the unit's Simes p: does it follow any concept?
    p_shift: np.ndarray  # (N, K) empirical circular-shift rank p (`neurrator.stats.resampling.circular_shift_corr`)

    def significant(self, alpha: float = 0.05) -> np.ndarray:
        """(N, K) bool: q <= alpha."""
        return np.nan_to_num(self.q, nan=1.0) <= alpha


def _shift_sd(x: np.ndarray, Y: np.ndarray, min_shift: int) -> np.ndarray:
    """(K,) root-mean-square r of ``x`` circularly shifted by every lag in [min_shift, F - min_shift] with Y."""
    F = len(x)
    zx = (x - x.mean()) / (x.std() or 1.0)
    sy = Y.std(axis=0)
    zy = (Y - Y.mean(axis=0)) / np.where(sy > 0, sy, 1.0)
    cc = np.fft.irfft(np.conj(np.fft.rfft(zx))[:, None] * np.fft.rfft(zy, axis=0), n=F, axis=0) / F
    lo, hi = min(min_shift, F // 2), max(F - min_shift, F // 2)
    return np.sqrt(np.mean(cc[lo:hi + 1] ** 2, axis=0))


def shot_rotations(shots: np.ndarray, *, min_shift: int = 1) -> np.ndarray:
    """(F,) shot id per frame -> (n_rot, F) frame indices of the series with its SHOTS rotated.

    Rotation by k moves the content of shot ``s + k`` onto the span of shot ``s`` (mod S shots), stretched
    or squeezed to its length (nearest frame), for every k from ``k_lo`` to ``S - k_lo``, where ``k_lo`` is
    the number of median-length shots spanning ``min_shift`` frames (at least 1). Unlike a circular shift
    by frames, every rotated copy changes exactly where the original changes: a response that jumps at
    the cuts keeps its jumps aligned with the concepts' jumps, so the null keeps what the data keep. A
    shot is a run of equal ids; fewer than 3 shots give no rotation (an empty array).

    >>> shot_rotations(np.array([0, 0, 1, 2, 2, 2])).tolist()
    [[2, 2, 4, 0, 1, 1], [3, 5, 1, 2, 2, 2]]
    """
    shots = np.asarray(shots)
    F = len(shots)
    starts = np.flatnonzero(np.r_[True, shots[1:] != shots[:-1]]) if F else np.zeros(0, np.int64)
    S = len(starts)
    if S < 3:
        return np.zeros((0, F), np.int64)
    lengths = np.diff(np.r_[starts, F])
    k_lo = max(1, min(S // 2, int(np.ceil(min_shift / max(np.median(lengths), 1)))))
    out = []
    for k in range(k_lo, S - k_lo + 1):
        idx = np.empty(F, np.int64)
        for s_ in range(S):
            src = (s_ + k) % S
            pos = (np.arange(lengths[s_]) + 0.5) * lengths[src] / lengths[s_]
            idx[starts[s_]:starts[s_] + lengths[s_]] = starts[src] + np.minimum(pos.astype(np.int64), lengths[src] - 1)
        out.append(idx)
    return np.stack(out)


def _rotation_r(x: np.ndarray, Y: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """(n_rot, N, K) Pearson r of every shot-rotated response column with every concept."""
    xr = x[rot]  # (n_rot, F, N)
    zx = xr - xr.mean(axis=1, keepdims=True)
    zx /= np.where((sx := zx.std(axis=1, keepdims=True)) > 0, sx, 1.0)
    sy = Y.std(axis=0)
    zy = (Y - Y.mean(axis=0)) / np.where(sy > 0, sy, 1.0)
    return np.einsum("rfn,fk->rnk", zx, zy, optimize=True) / x.shape[0]


def _t_pvalue(r: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Two-sided p of Pearson r with the effective sample size ``n_eff = 1 + 1 / sd**2`` (t test on n_eff - 2 df)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.maximum(1.0 / sd**2 - 1.0, 1.0)
        t2 = r**2 * df / np.maximum(1.0 - r**2, 1e-12)
        return incomplete_beta(df / 2.0, 0.5, df / (df + t2))


def paired_correlation_p(x: np.ndarray, Y: np.ndarray, *, min_shift: int = 30,
                         shots: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(W, K) series, (W, K) series -> (K,) Pearson r of each column with its partner and its two-sided p.

    The null is `concept_tuning`'s for each pair: the spread of r over all circular shifts of ``x`` by at
    least ``min_shift`` steps (and over rotations of whole ``shots``, the wider spread) gives the
    effective sample size of the two autocorrelated series, and p is the t test on it. Used to ask whether
    the patches decoded from a group follow a concept in time at all (`neurrator.analysis.groups`).

    >>> t = np.repeat(np.random.default_rng(1).random(20) < 0.5, 15).astype(float)[:, None]  # 20 scenes
    >>> r, p = paired_correlation_p(t + np.random.default_rng(0).normal(0, 0.3, t.shape), t, min_shift=15)
    >>> bool(r[0] > 0.8), bool(p[0] < 0.001)
    (True, True)
    """
    x = np.asarray(x, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    K = Y.shape[1]
    r, sd = np.full(K, np.nan), np.full(K, np.nan)
    rot = shot_rotations(shots, min_shift=min_shift) if shots is not None else np.zeros((0, 0), np.int64)
    for k in range(K):
        if x[:, k].std() > 0 and Y[:, k].std() > 0:
            r[k] = np.corrcoef(x[:, k], Y[:, k])[0, 1]
            sd[k] = _shift_sd(x[:, k], Y[:, k:k + 1], min_shift)[0]
            if len(rot):
                sd[k] = max(sd[k], float(np.sqrt(np.mean(_rotation_r(x[:, k:k + 1], Y[:, k:k + 1], rot) ** 2))))
    ok = np.isfinite(r) & (np.nan_to_num(sd) > 0)
    return r, np.where(ok, _t_pvalue(np.nan_to_num(r), np.where(ok, sd, 1.0)), np.nan)


def concept_tuning(mean_response: np.ndarray, concept_acts: np.ndarray, *, n_perm: int = 2000,
                   min_shift: int = 30, alpha: float = 0.05, tail: str = "gaussian", shots: np.ndarray | None = None,
                   seed: int = 0) -> ConceptTuning:
    """Concept tuning of every unit with circular-shift p-values and hierarchical FDR over units x concepts.

    ``tail="gaussian"`` (default): ``sd`` = the spread of r over ALL circular shifts of at least
    ``min_shift`` frames gives the effective sample size ``n_eff = 1 + 1 / sd**2`` of two autocorrelated
    series (Bartlett 1935; Pyper & Peterman 1998) and p is the Pearson t test on ``n_eff - 2`` degrees of
    freedom (Gaussian series; heavier-tailed than the normal approximation, which was still 6% at 0.05). ``tail="empirical"``: the rank p of
    `neurrator.stats.resampling.circular_shift_corr`. Why the Gaussian tail: a response with a 1.5 s autocorrelation
    has only ~20 effectively independent shifts in a 30 s movie, so "larger than all 2000 shifts" happens
    far more often than 1/2001 and the empirical p is anti-conservative exactly where FDR looks (measured on
    the simulator's CA1 units: 0.5% of tests at the floor p = 0.0005 instead of 0.05%; with the Gaussian
    tail the small-p fractions match their nominal rates). Both are kept (``p``, ``p_shift``).

    With ``shots`` (the movie's shot of each frame, `neurrator.data.shots.detect_shots`) the null also
    rotates whole shots (`shot_rotations`) and ``sd`` is the larger of the two spreads. A frame shift
    misaligns the cuts: a response that merely changes at cuts, independent of the concepts (which change
    at cuts too), then correlates with each shifted copy less than with the concepts, the shifts' spread is
    too narrow and 14% of such units got p < 0.05 (tests/analysis/test_shots_null.py); rotating shots keeps
    every jump on a cut (about 5%). The frame shifts still guard against autocorrelation that spans shots.
    ``p_shift`` is then the rank p over the shot rotations (few: coarse).

    Parameters
    ----------
    mean_response
        (F, N) trial-averaged response (`TrialResponses.mean`).
    concept_acts
        (F, K) activation of each named concept on the TRUE patches of the same frames.
    n_perm, min_shift, seed
        Circular shifts per unit, smallest shift in frames (>= the movie's scene length), seed.
    alpha
        The FDR level the hierarchical q is computed for (`hierarchical_fdr`).
    tail
        "gaussian" or "empirical" (see above).
    shots
        (F,) shot id of each response frame, or None (frame shifts only; also for flashed images).
    """
    if tail not in ("gaussian", "empirical"):
        raise ValueError(f"tail must be gaussian or empirical, not {tail!r}")
    x = np.asarray(mean_response, dtype=np.float64)
    Y = np.asarray(concept_acts, dtype=np.float64)
    if x.ndim != 2 or Y.ndim != 2 or x.shape[0] != Y.shape[0]:
        raise ValueError(f"mean_response (F, N) and concept_acts (F, K) must share F, got {x.shape}, {Y.shape}")
    N, K = x.shape[1], Y.shape[1]
    r = np.full((N, K), np.nan)
    p_shift = np.full((N, K), np.nan)
    sd = np.full((N, K), np.nan)
    for i in range(N):
        r[i], p_shift[i] = circular_shift_corr(x[:, i], Y, n_perm=n_perm, min_shift=min_shift, seed=seed + i)
        if tail == "gaussian":
            sd[i] = _shift_sd(x[:, i], Y, min_shift)
    rot = shot_rotations(shots, min_shift=min_shift) if shots is not None else np.zeros((0, 0), np.int64)
    if shots is not None and len(shots) != x.shape[0]:
        raise ValueError(f"shots has {len(shots)} frames but mean_response has {x.shape[0]}")
    if len(rot):
        rr = _rotation_r(x, Y, rot)  # (n_rot, N, K)
        sd = np.fmax(sd, np.sqrt(np.mean(rr**2, axis=0)))
        with np.errstate(invalid="ignore"):
            p_shift = np.where(np.isfinite(r), (1 + np.sum(np.abs(rr) >= np.abs(r)[None] - 1e-12, axis=0))
                               / (1 + len(rot)), np.nan)
    if tail == "gaussian":
        ok = np.isfinite(r) & (np.nan_to_num(sd) > 0)
        p = np.where(ok, _t_pvalue(np.nan_to_num(r), np.where(ok, sd, 1.0)), np.nan)
    else:
        p = p_shift.copy()
    q, unit_q = hierarchical_fdr(p, alpha=alpha)
    return ConceptTuning(r, p, q, benjamini_hochberg(p), unit_q, p_shift)


def preferred_stimuli(mean_response: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Response-weighted average of true patch tokens: (F, B) responses, (F, P, D) tokens -> (B, P, D).

    The weights are the positive part of each unit's trial-averaged baseline-subtracted response,
    normalised to sum 1; a unit that never exceeds its baseline gets the plain mean of the frames.
    """
    w = np.clip(np.asarray(mean_response, dtype=np.float64), 0.0, None)
    t = np.asarray(targets, dtype=np.float32)
    if w.shape[0] != t.shape[0]:
        raise ValueError(f"{w.shape[0]} response frames but {t.shape[0]} target frames")
    s = w.sum(axis=0)
    w = np.where(s > 0, w / np.where(s > 0, s, 1.0), 1.0 / w.shape[0]).astype(np.float32)
    return np.einsum("fb,fpd->bpd", w, t, optimize=True)


@dataclass(frozen=True)
class UnitNeurration:
    """Per-unit neurration; fields named after the columns of ndx-neurrator's UnitNeurrationTable.

    ``top_concept`` is the significant (q <= alpha) concept with the largest positive r, "" when there
    is none or the unit is not visually driven (then ``top_concept_r`` / ``top_concept_q`` are NaN).
    ``preferred_text`` is "" for units that are not visually driven. ``top_frames`` are movie frames.
    """

    unit: np.ndarray  # (N,) int64 unit ids
    reliability: np.ndarray  # (N,)
    reliability_p: np.ndarray  # (N,)
    reliability_q: np.ndarray  # (N,)
    visually_driven: np.ndarray  # (N,) bool
    preferred_text: list[str]
    top_frames: list[np.ndarray]
    top_concept: list[str]
    top_concept_r: np.ndarray
    top_concept_q: np.ndarray
    tuning: ConceptTuning
    concept_names: list[str]

    def tuning_rows(self, alpha: float = 0.05) -> dict[str, np.ndarray]:
        """Columns of ConceptTuningTable (unit, concept, r, p, q, significant): every unit x concept."""
        N, K = self.tuning.r.shape
        return {
            "unit": np.repeat(self.unit, K),
            "concept": np.tile(np.asarray(self.concept_names, dtype=str), N),
            "r": self.tuning.r.ravel(),
            "p": self.tuning.p.ravel(),
            "q": self.tuning.q.ravel(),
            "significant": self.tuning.significant(alpha).ravel(),
        }


def neurrate_units(responses: TrialResponses, targets: np.ndarray, concept_acts: np.ndarray,
                   concept_names: Sequence[str], *, narrate: Callable[[np.ndarray], list[str]] | None = None,
                   unit_ids: np.ndarray | None = None, alpha: float = 0.05, min_reliability: float = 0.1,
                   n_perm: int = 2000, n_null: int = 1000, min_shift: int = 30, n_top: int = 5,
                   min_separation: int = 30, batch_size: int = 16, gate_concepts: bool = True,
                   shots: np.ndarray | None = None, reliability=None, seed: int = 0) -> UnitNeurration:
    """Reliability, preferred stimulus (narrated), top frames and concept tuning of every unit.

    Parameters
    ----------
    responses
        From `trial_responses` on the training presentations.
    targets
        (F_movie, P, D) TRUE patch tokens per movie frame (indexed by ``responses.frames``).
    concept_acts
        (F_movie, K) or (F, K) concept activations of the true patches per movie frame (same indexing).
    concept_names
        K concept names.
    narrate
        ``narrate(patches (B, P, D)) -> list[str]``, called on batches of driven units' preferred
        stimuli; None leaves every preferred text "".
    unit_ids
        (N,) ids for the ``unit`` column (default 0..N-1).
    alpha, min_reliability
        FDR level of the tuning and reliability tests; reliability floor of the gate.
    n_perm, n_null, min_shift, seed
        Circular shifts for tuning, null draws for reliability, smallest shift, seed.
    n_top, min_separation
        Top frames per unit, at least ``min_separation`` frames apart.
    batch_size
        Units per ``narrate`` call.
    gate_concepts
        True (default): the hierarchical FDR selects units by the reliability gate (concepts are tested
        in visually driven units only; ``tuning.unit_q`` is then the reliability q). False: by the
        Simes p of their own tuning (`concept_tuning`'s default).
    shots
        (F_movie,) or (F,) shot id per movie frame (same indexing as ``concept_acts``): the tuning null
        then rotates whole shots too (`concept_tuning`). None for flashed images.
    reliability
        A `neurrator.data.responses.Reliability` computed elsewhere (e.g. split over images when each image
        was shown once, `neurrator.data.responses.image_split_reliability`); None: split-half over the
        repeats of ``responses`` (at least 2).
    """
    frames = responses.frames
    mean = responses.mean  # (F, N)
    F, N = mean.shape
    acts = np.asarray(concept_acts, dtype=np.float64)
    acts = acts[frames] if acts.shape[0] != F else acts
    names = [str(c) for c in concept_names]
    if acts.shape[1] != len(names):
        raise ValueError(f"{acts.shape[1]} concepts but {len(names)} names")
    if reliability is not None:
        rel = reliability
    elif responses.values.shape[0] < 2:  # one repeat: undefined, no unit passes the gate
        rel = undefined_reliability(N)
    else:
        rel = unit_reliability(responses.values, min_reliability=min_reliability, alpha=alpha, n_null=n_null,
                               min_shift=min_shift, seed=seed)
    if shots is not None:
        shots = np.asarray(shots)
        shots = shots[frames] if shots.shape[0] != F else shots
    tun = concept_tuning(mean, acts, n_perm=n_perm, min_shift=min_shift, alpha=alpha, shots=shots, seed=seed + 7919)
    if gate_concepts:  # the reliability gate selects the units whose concepts are tested
        q, unit_q = hierarchical_fdr(tun.p, alpha=alpha, unit_q=rel.q, selected=rel.driven)
        tun = tun._replace(q=q, unit_q=unit_q)
    sig = tun.significant(alpha) & (tun.r > 0)
    top_concept, top_r, top_q = [], np.full(N, np.nan), np.full(N, np.nan)
    for i in range(N):
        if rel.driven[i] and sig[i].any():
            k = int(np.argmax(np.where(sig[i], tun.r[i], -np.inf)))
            top_concept.append(names[k])
            top_r[i], top_q[i] = tun.r[i, k], tun.q[i, k]
        else:
            top_concept.append("")
    tops = [frames[top_frames_separated(mean[:, i], n=n_top, min_separation=min_separation)] for i in range(N)]
    texts = [""] * N
    driven = np.flatnonzero(rel.driven)
    if narrate is not None and driven.size:
        tgt = np.asarray(targets)
        tgt = tgt[frames] if tgt.shape[0] != F else tgt
        for s in range(0, driven.size, batch_size):
            idx = driven[s:s + batch_size]
            for i, t in zip(idx, narrate(preferred_stimuli(mean[:, idx], tgt))):
                texts[i] = str(t)
    ids = np.arange(N, dtype=np.int64) if unit_ids is None else np.asarray(unit_ids, dtype=np.int64)
    return UnitNeurration(ids, rel.value, rel.p, rel.q, rel.driven, texts, tops, top_concept, top_r, top_q, tun,
                          names)
