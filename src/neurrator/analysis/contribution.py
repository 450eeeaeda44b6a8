"""A trained encoder (as callables) + units -> each unit's contribution in the decoder: leave-one-out
change of fidelity within its region, and the narration of the encoder driven by the unit alone.

Both views are CAUSAL IN THE MODEL: they intervene on the encoder's input and read its output, so they
say what the trained encoder uses the unit for, not what the neuron does in the brain (that needs an
intervention on the neuron). The correlational views (tuning, preferred stimulus) are in
`neurrator.analysis.single_units`.

Leave-one-out (`leave_one_out`)
    ``delta = fidelity(group) - fidelity(group without the unit)`` per test window, averaged; a positive
    delta means the region's prediction gets worse without the unit. CI: block bootstrap over scene
    blocks of the windows; p: two-sided block sign-flip test (the sign of every block's deltas flipped
    at random), which respects that windows inside one scene are not independent.

Drive (`drive_narrations`)
    The baseline input is every unit of the region at its mean count per bin over the training bins;
    the drive input is the same with one unit raised by ``drive_sd`` standard deviations of its count
    per bin (at least ``min_drive`` spikes per bin) in every bin of the window. Both go through the
    encoder and the narrator; ``drive_shift = 1 - cos(embed(drive_text), embed(baseline_text))``.
    Null: the shift that spontaneous variability alone causes, i.e. noise inputs with every unit's
    counts drawn from Poisson(its mean per bin), narrated and compared with the baseline text the same
    way. ``drive_p = (1 + #null_shift >= drive_shift) / (1 + n)`` over the ``n`` noise inputs of the
    unit's group; a unit whose drive changes the words more than spiking noise does is significant, and
    ``drive_q`` is its Benjamini-Hochberg q over all units tested. (Driving random other units would
    instead rank units against each other and make ~5% significant by construction.)

    Cost and resolution: one pool of noise inputs per group, narrated once and shared by every unit of
    the group, so the null costs narrations per group, not per unit. Up to ``n_null`` (default 1,000)
    inputs give p down to 1/1,001, fine enough to pass FDR over hundreds of units (50 inputs, the old
    default, floored p at 1/51: no unit could survive correction). The pool grows in rounds of
    ``null_round`` inputs and stops early once every unit of the group has at least ``null_exceed``
    noise shifts at least as large as its own (Besag & Clifford's sequential Monte-Carlo p-value: a unit
    can then only have p >= null_exceed / draws, so a group in which nothing stands out costs
    ``null_round`` narrations, and only groups with a candidate pay for the full pool). Identical texts
    are embedded once (a retrieval narrator repeats its bank's texts).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

from neurrator.stats.resampling import benjamini_hochberg, block_bootstrap, permutation_pvalue

__all__ = ["Drive", "LeaveOneOut", "drive_narrations", "leave_one_out", "unit_table"]


class LeaveOneOut(NamedTuple):
    """Leave-one-out change of fidelity per unit (UnitNeurrationTable's loo_* columns)."""

    unit_idx: np.ndarray  # (n,) the units tested
    loo_delta: np.ndarray  # (n,) mean over windows of fidelity(group) - fidelity(group - unit)
    loo_ci_lo: np.ndarray  # (n,)
    loo_ci_hi: np.ndarray  # (n,)
    loo_p: np.ndarray  # (n,) two-sided block sign-flip p
    loo_q: np.ndarray  # (n,) BH over the units tested


def _sign_flip_p(delta: np.ndarray, blocks: np.ndarray, *, n_perm: int, rng: np.random.Generator) -> float:
    ids, inv = np.unique(blocks, return_inverse=True)
    sums = np.bincount(inv, weights=delta, minlength=len(ids))
    obs = sums.sum() / len(delta)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, len(ids)))
    null = signs @ sums / len(delta)
    return float(permutation_pvalue(obs, null, alternative="two-sided"))


def leave_one_out(groups: dict[str, np.ndarray], fidelity: Callable[[np.ndarray], np.ndarray], *,
                  blocks: np.ndarray, n_boot: int = 1000, n_perm: int = 2000, seed: int = 0) -> LeaveOneOut:
    """Leave-one-out change of fidelity for every unit of every group (a unit in its own region).

    Parameters
    ----------
    groups
        Group name -> (n_g,) unit indices (e.g. each region's units); every unit of a group is tested
        against that group. Groups of one unit are skipped (nothing is left to decode from).
    fidelity
        ``fidelity(unit_idx (n,)) -> (W,)`` per-window score of the prediction from those units on the
        test windows (e.g. centred patch cosine with the true tokens).
    blocks
        (W,) scene block of each window (`neurrator.stats.resampling.scene_blocks` of the windows' frames).
    n_boot, n_perm, seed
        Bootstrap resamples, sign flips, seed.
    """
    blocks = np.asarray(blocks)
    rng = np.random.default_rng(seed)
    units, delta, lo, hi, p = [], [], [], [], []
    for g, idx in groups.items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size < 2:
            continue
        full = np.asarray(fidelity(idx), dtype=np.float64)
        if full.shape != blocks.shape:
            raise ValueError(f"fidelity returned {full.shape} scores for {blocks.shape} windows")
        for j, u in enumerate(idx):
            d = full - np.asarray(fidelity(np.delete(idx, j)), dtype=np.float64)
            est = block_bootstrap(d, blocks, n_boot=n_boot, seed=int(rng.integers(2**31)))
            units.append(int(u))
            delta.append(est.value)
            lo.append(est.lo)
            hi.append(est.hi)
            p.append(_sign_flip_p(d, blocks, n_perm=n_perm, rng=rng))
    p_arr = np.asarray(p, dtype=np.float64)
    return LeaveOneOut(np.asarray(units, dtype=np.int64), np.asarray(delta), np.asarray(lo), np.asarray(hi), p_arr,
                       benjamini_hochberg(p_arr))


class Drive(NamedTuple):
    """Narration of the encoder driven by one unit vs its baseline input (drive_* columns)."""

    unit_idx: np.ndarray  # (n,)
    drive_text: list[str]
    baseline_text: list[str]  # the baseline narration of the unit's group
    drive_shift: np.ndarray  # (n,) 1 - cosine of the sentence embeddings
    drive_p: np.ndarray  # (n,) against the spiking-noise null of the group
    drive_q: np.ndarray  # (n,) BH over the units tested
    null_shift: dict[str, np.ndarray]  # group -> (n,) shifts of the noise inputs drawn (n <= n_null)


def drive_narrations(groups: dict[str, np.ndarray], bin_mean: np.ndarray, bin_sd: np.ndarray, *,
                     predict_windows: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     narrate: Callable[[np.ndarray], list[str]],
                     embed: Callable[[Sequence[str]], np.ndarray], window_bins: int, drive_sd: float = 3.0,
                     min_drive: float = 1.0, n_null: int = 1000, null_round: int = 100, null_exceed: int = 10,
                     batch_size: int = 16, seed: int = 0) -> Drive:
    """Narrate the encoder's response to each unit driven alone above its group's baseline input.

    Parameters
    ----------
    groups
        Group name -> (n_g,) unit indices decoded together (e.g. each region's units).
    bin_mean, bin_sd
        (N,) mean and std of each unit's count per bin over the training bins (`TrialResponses`).
    predict_windows
        ``predict_windows(windows (B, T, n) float32, unit_idx (n,)) -> (B, P, D)`` predicted tokens.
    narrate
        ``narrate(patches (B, P, D)) -> list[str]``.
    embed
        ``embed(texts) -> (B, d)`` unit-norm sentence embeddings.
    window_bins
        T, the encoder's window.
    drive_sd, min_drive
        The driven unit gets ``bin_mean + max(drive_sd * bin_sd, min_drive)`` spikes in every bin.
    n_null, null_round, null_exceed
        Most Poisson noise inputs per group (0: no null, p NaN), inputs added per round, and the
        exceedances every unit needs before the pool stops growing early (see the module docstring).
    batch_size, seed
        Windows per encoder/narrator call, seed.
    """
    rng = np.random.default_rng(seed)
    mean = np.asarray(bin_mean, dtype=np.float64)
    sd = np.asarray(bin_sd, dtype=np.float64)
    T = int(window_bins)
    units, texts, base_texts, shift, p, nulls = [], [], [], [], [], {}

    def run(x: np.ndarray, idx: np.ndarray) -> list[str]:
        out: list[str] = []
        for s in range(0, len(x), batch_size):
            out += [str(t) for t in narrate(predict_windows(x[s:s + batch_size].astype(np.float32), idx))]
        return out

    def shifts_from(ref: np.ndarray, said: list[str]) -> np.ndarray:
        """1 - cosine of each text's embedding with ``ref``; identical texts embedded once."""
        if not said:
            return np.zeros(0)
        uniq, inv = np.unique(np.asarray(said, dtype=object).astype(str), return_inverse=True)
        sims = np.asarray(embed(list(uniq)), dtype=np.float64) @ ref
        return np.round(np.clip(1.0 - sims, 0.0, 2.0), 6)[inv]  # identical texts: exactly 0 despite float error

    for g, idx in groups.items():
        idx = np.asarray(idx, dtype=np.int64)
        n = idx.size
        base = np.broadcast_to(mean[idx], (T, n)).astype(np.float32)
        base_text = run(base[None], idx)[0]
        ref = np.asarray(embed([base_text]), dtype=np.float64)[0]
        drive = np.repeat(base[None], n, axis=0)  # (n, T, n): window j drives unit j
        amp = np.maximum(drive_sd * sd[idx], min_drive)
        drive[np.arange(n), :, np.arange(n)] += amp[:, None].astype(np.float32)
        drive_texts = run(drive, idx)
        obs = shifts_from(ref, drive_texts)
        null = np.zeros(0)
        while len(null) < n_null:  # the noise pool, in rounds, until every unit is clearly not extreme
            k = min(max(1, null_round), n_null - len(null))
            noise = rng.poisson(np.broadcast_to(mean[idx], (k, T, n))).astype(np.float32)
            null = np.concatenate([null, shifts_from(ref, run(noise, idx))])
            if np.all((null[:, None] >= obs[None, :] - 1e-9).sum(axis=0) >= null_exceed):
                break
        nulls[g] = null
        units += [int(u) for u in idx]
        texts += drive_texts
        base_texts += [base_text] * n
        shift += list(obs)
        p += list(permutation_pvalue(obs, null[:, None], alternative="greater")) if len(null) else [np.nan] * n
    p_arr = np.atleast_1d(np.asarray(p, dtype=np.float64))
    return Drive(np.asarray(units, dtype=np.int64), texts, base_texts, np.asarray(shift), p_arr,
                 benjamini_hochberg(p_arr), nulls)


def unit_table(neurration, *, loo: LeaveOneOut | None = None, drive: Drive | None = None) -> dict[str, object]:
    """Columns of ndx-neurrator's UnitNeurrationTable from a `neurrator.analysis.single_units.UnitNeurration` and
    the contributions (their ``unit_idx`` index the same N units; units not tested get NaN / "").

    Returns
    -------
    dict
        unit, reliability, reliability_p, visually_driven, preferred_text, top_frames (list of int64
        arrays), top_concept, top_concept_r, top_concept_q, loo_delta, loo_ci_lo, loo_ci_hi, loo_p,
        drive_text, baseline_text, drive_shift, drive_p, drive_q (BH over the units tested).
    """
    N = len(neurration.unit)
    cols: dict[str, object] = {
        "unit": neurration.unit, "reliability": neurration.reliability, "reliability_p": neurration.reliability_p,
        "visually_driven": neurration.visually_driven, "preferred_text": list(neurration.preferred_text),
        "top_frames": list(neurration.top_frames), "top_concept": list(neurration.top_concept),
        "top_concept_r": neurration.top_concept_r, "top_concept_q": neurration.top_concept_q,
    }
    for name in ("loo_delta", "loo_ci_lo", "loo_ci_hi", "loo_p"):
        col = np.full(N, np.nan)
        if loo is not None:
            col[loo.unit_idx] = getattr(loo, name)
        cols[name] = col
    shift, p, q = np.full(N, np.nan), np.full(N, np.nan), np.full(N, np.nan)
    texts, base = [""] * N, [""] * N
    if drive is not None:
        shift[drive.unit_idx], p[drive.unit_idx], q[drive.unit_idx] = drive.drive_shift, drive.drive_p, drive.drive_q
        for j, u in enumerate(drive.unit_idx):
            texts[u], base[u] = drive.drive_text[j], drive.baseline_text[j]
    cols.update(drive_text=texts, baseline_text=base, drive_shift=shift, drive_p=p, drive_q=q)
    return cols
