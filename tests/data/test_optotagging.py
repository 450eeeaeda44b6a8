"""Opto-tagging: the short-latency test on hand-made spike trains, Cre lines from genotypes."""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.data.optotagging import _poisson_sf, cre_cell_type, tag_units


def _pack(units):
    times = np.concatenate([np.sort(np.asarray(u, float)) for u in units])
    offsets = np.concatenate([[0], np.cumsum([len(u) for u in units])]).astype(np.int64)
    return times, offsets


@pytest.fixture
def trains():
    rng = np.random.default_rng(0)
    onsets = 10.0 + np.arange(50) * 1.5
    base = lambda rate: rng.uniform(0, 90, size=rng.poisson(rate * 90))  # noqa: E731
    responder = np.concatenate([base(5), onsets + rng.uniform(0.002, 0.006, onsets.size)])
    late = np.concatenate([base(5), onsets + 0.030])  # responds, but outside 1-10 ms (polysynaptic)
    artefact = np.concatenate([base(5), onsets + 0.0003])  # within 1 ms: photoelectric artefact window
    weak = np.concatenate([base(5), onsets[:3] + 0.004])  # 3 of 50 pulses
    fast_baseline = base(120)  # high rate, no response
    silent_but_reliable = onsets[::2] + 0.005  # no baseline at all, fires on half the pulses
    return onsets, [responder, late, artefact, weak, fast_baseline, silent_but_reliable]


def test_tag_units_hand_made(trains):
    onsets, units = trains
    times, off = _pack(units)
    res = tag_units(times, off, onsets)
    assert res.tagged.tolist() == [True, False, False, False, False, True]
    assert res.ratio[0] > 10 and res.p_value[0] < 1e-10
    assert res.reliability[0] == 1.0 and res.reliability[5] == 0.5
    assert res.thresholds["window_s"] == [0.001, 0.01] and res.thresholds["n_pulses"] == 50


def test_thresholds_are_applied(trains):
    onsets, units = trains
    times, off = _pack(units)
    # a late window catches the polysynaptic unit
    assert tag_units(times, off, onsets, window=(0.025, 0.035)).tagged[1]
    # demanding reliability above 0.5 drops the half-reliable unit
    assert not tag_units(times, off, onsets, min_reliability=0.6).tagged[5]


def test_no_pulses_tags_nothing(trains):
    _, units = trains
    times, off = _pack(units)
    res = tag_units(times, off, np.zeros(0))
    assert not res.tagged.any() and res.tagged.shape == (6,)


def test_poisson_tail_matches_closed_forms():
    assert _poisson_sf(0, 3.0) == 1.0
    assert _poisson_sf(1, 2.0) == pytest.approx(1 - np.exp(-2.0))
    assert _poisson_sf(3, 1.0) == pytest.approx(1 - np.exp(-1) * (1 + 1 + 0.5))
    assert _poisson_sf(5, 0.0) == 0.0


@pytest.mark.parametrize(
    ("genotype", "expected"),
    [
        ("Sst-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt", "SST"),
        ("Pvalb-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt", "PV"),
        ("Vip-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt", "VIP"),
        ("wt/wt", None),
        ("", None),
        (None, None),
        ("Sst-IRES-Cre/wt;Vip-IRES-Cre/wt", None),  # two lines: ambiguous
    ],
)
def test_cre_cell_type(genotype, expected):
    assert cre_cell_type(genotype)[0] == expected
