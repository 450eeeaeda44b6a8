"""Spike times + opto-tagging light pulses -> tagged units (short-latency response well above baseline).

The test (in the spirit of Allen Visual Coding's opto-tagging analysis): for each unit, spikes are
counted in a short window after the onset of every brief light pulse (default 1-10 ms, which excludes
the photoelectric artefact at 0-1 ms and most polysynaptic responses) and in a baseline window before
each pulse (default the 100 ms before onset). A unit is tagged when all of:

* evoked rate / baseline rate >= ``min_ratio`` (default 2; baseline rate floored at 0.5 Hz so silent
  units need a real response),
* the total evoked count is improbable under the baseline rate: one-sided Poisson upper tail
  ``P(X >= n_evoked | baseline_rate * total_window) < alpha`` (default 1e-5, a Bonferroni-style level
  for hundreds of units per session),
* it fires in the window on at least ``min_reliability`` of the pulses (default 0.1).

Only brief pulses (duration <= ``max_pulse_s``, default 20 ms: Allen's 5 ms and 10 ms square pulses)
enter the test; 1 s raised-cosine pulses are ignored. The cell class comes from the Cre line in
``subject.genotype`` (Pvalb -> PV, Sst -> SST, Vip -> VIP).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from neurrator.data.binning import bin_spikes

__all__ = ["CRE_TO_CELL_TYPE", "OptoTagResult", "cre_cell_type", "read_pulses", "tag_session_units", "tag_units"]

#: Cre driver gene -> cell class label.
CRE_TO_CELL_TYPE = {"Pvalb": "PV", "Sst": "SST", "Vip": "VIP"}


@dataclass(frozen=True)
class OptoTagResult:
    """Per-unit opto-tagging statistics, (N,) each, and the thresholds used."""

    tagged: np.ndarray  # bool
    evoked_rate: np.ndarray  # Hz in the response window
    baseline_rate: np.ndarray  # Hz in the baseline window
    ratio: np.ndarray
    p_value: np.ndarray
    reliability: np.ndarray  # fraction of pulses with >= 1 spike in the window
    thresholds: dict = field(default_factory=dict)


def _poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    i = np.arange(k, dtype=np.float64)
    logpmf = -lam + i * math.log(lam) - np.asarray([math.lgamma(v + 1.0) for v in i])
    cdf = float(np.exp(np.logaddexp.reduce(logpmf)))
    return max(0.0, 1.0 - cdf)


def tag_units(
    spike_times: np.ndarray,
    offsets: np.ndarray,
    pulse_onsets: np.ndarray,
    *,
    window: tuple[float, float] = (0.001, 0.010),
    baseline: tuple[float, float] = (-0.100, 0.0),
    min_ratio: float = 2.0,
    alpha: float = 1e-5,
    min_reliability: float = 0.1,
    baseline_floor_hz: float = 0.5,
) -> OptoTagResult:
    """Classify units as light-responsive.

    Parameters
    ----------
    spike_times, offsets
        Concatenated sorted spike times (S,) and (N+1,) offsets, as in `neurrator.data.units_table.Units`.
    pulse_onsets
        (n_pulses,) onset times of the brief pulses, seconds.
    window, baseline
        Response and baseline windows relative to onset, seconds.
    min_ratio, alpha, min_reliability, baseline_floor_hz
        Thresholds (see the module docstring).

    Returns
    -------
    OptoTagResult

    Examples
    --------
    >>> on = np.arange(20) * 1.0 + 10
    >>> t = np.sort(np.concatenate([on + 0.004, np.arange(0, 40, 0.5) + 0.25]))
    >>> bool(tag_units(t, np.array([0, t.size]), on).tagged[0])
    True
    """
    onsets = np.sort(np.asarray(pulse_onsets, dtype=np.float64))
    n_units = np.asarray(offsets).size - 1
    thresholds = dict(
        window_s=list(window), baseline_s=list(baseline), min_ratio=min_ratio, alpha=alpha,
        min_reliability=min_reliability, baseline_floor_hz=baseline_floor_hz, n_pulses=int(onsets.size),
        test="Poisson upper tail of the total evoked count under the baseline rate",
    )
    if onsets.size == 0 or n_units == 0:
        z = np.zeros(n_units)
        return OptoTagResult(np.zeros(n_units, bool), z, z, z, np.ones(n_units), z, thresholds)
    ev = bin_spikes(spike_times, offsets, onsets + window[0], onsets + window[1], bins_per_interval=1)
    bl = bin_spikes(spike_times, offsets, onsets + baseline[0], onsets + baseline[1], bins_per_interval=1)
    ev_n = ev.sum(axis=0, dtype=np.int64)
    bl_n = bl.sum(axis=0, dtype=np.int64)
    t_ev = onsets.size * (window[1] - window[0])
    t_bl = onsets.size * (baseline[1] - baseline[0])
    ev_rate = ev_n / t_ev
    bl_rate = bl_n / t_bl
    bl_used = np.maximum(bl_rate, baseline_floor_hz)
    ratio = ev_rate / bl_used
    reliability = (ev > 0).mean(axis=0)
    p = np.asarray([_poisson_sf(int(k), float(r * t_ev)) for k, r in zip(ev_n, bl_used, strict=True)])
    tagged = (ratio >= min_ratio) & (p < alpha) & (reliability >= min_reliability)
    return OptoTagResult(tagged, ev_rate, bl_rate, ratio, p, reliability, thresholds)


def cre_cell_type(genotype: str | None) -> tuple[str | None, str | None]:
    """The (cell class, Cre allele) named in a genotype string, e.g. "Sst-IRES-Cre/wt;Ai32..." -> ("SST", ...)."""
    if not genotype:
        return None, None
    hits = []
    for part in re.split(r"[;,]", genotype):
        m = re.match(r"\s*(Pvalb|Sst|Vip)\b[-\w]*Cre", part)
        if m:
            hits.append((CRE_TO_CELL_TYPE[m.group(1)], part.strip().split("/")[0]))
    if len({h[0] for h in hits}) != 1:
        return None, None
    return hits[0]


def read_pulses(nwbfile, *, max_pulse_s: float = 0.02) -> tuple[np.ndarray, np.ndarray] | None:
    """Onsets of the brief pulses and all durations from ``processing/optotagging/optogenetic_stimulation``."""
    table = None
    mod = (nwbfile.processing or {}).get("optotagging")
    if mod is not None and "optogenetic_stimulation" in mod.data_interfaces:
        table = mod["optogenetic_stimulation"]
    elif nwbfile.intervals and "optogenetic_stimulation" in nwbfile.intervals:
        table = nwbfile.intervals["optogenetic_stimulation"]
    if table is None or len(table) == 0:
        return None
    start = np.asarray(table["start_time"].data[:], dtype=np.float64)
    if "duration" in table.colnames:
        dur = np.asarray(table["duration"].data[:], dtype=np.float64)
    else:
        dur = np.asarray(table["stop_time"].data[:], dtype=np.float64) - start
    brief = np.isfinite(start) & (dur <= max_pulse_s)
    return start[brief], dur


def tag_session_units(nwbfile, units, *, label: str, **kwargs) -> dict | None:
    """Run `tag_units` on a file's pulses; None when the file has no opto-tagging pulses.

    Returns a JSON-able dict: cell_type (or None when the genotype names no single known Cre line),
    cre_line, tagged_ids, n_tagged, thresholds, and per-unit ``ratio``/``p_value``/``reliability``
    lists aligned with ``units.ids``.
    """
    pulses = read_pulses(nwbfile)
    if pulses is None or pulses[0].size == 0:
        return None
    onsets, _ = pulses
    genotype = getattr(nwbfile.subject, "genotype", None) if nwbfile.subject is not None else None
    cell_type, cre = cre_cell_type(genotype)
    res = tag_units(units.spike_times, units.offsets, onsets, **kwargs)
    return {
        "cell_type": cell_type,
        "cre_line": cre,
        "genotype": genotype or "",
        "tagged_ids": units.ids[res.tagged].tolist(),
        "n_tagged": int(res.tagged.sum()),
        "thresholds": res.thresholds,
        "unit_ids": units.ids.tolist(),
        "ratio": np.round(res.ratio, 4).tolist(),
        "p_value": res.p_value.tolist(),
        "reliability": np.round(res.reliability, 4).tolist(),
    }
