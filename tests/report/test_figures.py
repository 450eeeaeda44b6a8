"""The report's figures: the headline leads, the narration panel draws every control, one effect scale per
axis, no text on the axes that can overlap; the unit cards lead with the interesting units."""

from __future__ import annotations

import numpy as np
import pandas as pd

from _report_fixture import new_tables

from neurrator.report.figures import baselines, group_comparison_figure, scaling_figure
from neurrator.report.html import card_order


def _fidelity() -> pd.DataFrame:
    """A DecodingFidelityTable as `read_derived` gives it: two subsets, the headline, narration and controls."""
    rows = []
    for label, kind, n, shift in (("all", "all", 40, 0.0), ("region:VISp", "region", 20, -0.1)):
        for metric, value, chance in (("centred_patch_cosine", 0.3, 0.0), ("top1", 0.2, 0.01),
                                      ("narration_similarity", 0.6, 0.45), ("narration_shuffled", 0.44, np.nan),
                                      ("narration_constant", 0.55, np.nan), ("narration_floor", 0.05, np.nan)):
            rows.append({"label": label, "kind": kind, "n_units": n, "metric": metric, "value": value + shift,
                         "chance_level": chance, "ci_lo": value + shift - 0.02, "ci_hi": value + shift + 0.02})
    return pd.DataFrame(rows)


def test_the_narration_panel_draws_the_constant_shuffled_and_floor_levels():
    levels = baselines(_fidelity(), "narration_similarity")
    assert levels == {"shuffled": 0.44, "constant": 0.55, "floor": 0.05}  # the all-units subset's levels
    assert baselines(_fidelity(), "top1") == {}


def test_population_size_figure_leads_with_the_headline_and_labels_nothing_on_the_axes():
    scaling = new_tables()["scaling"].replace({"metric": {"top1": "centred_patch_cosine"}})
    fig = scaling_figure(_fidelity(), scaling)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("centred patch cosine")  # per region, from the ScalingTable
    assert titles[1].startswith("frame identification") and "random draws" in titles[1]  # not in the ScalingTable
    assert titles[2].startswith("narration similarity")
    assert all(not ax.texts for ax in fig.axes)  # crossings are in the legend, never as text that can overlap
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "VISp: beats shuffled from n = 4" in legend and "VISl: never beats shuffled" in legend
    narration = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert any(t.startswith("constant narration") for t in narration)
    assert any(t.startswith("word-salad floor") for t in narration)


def test_group_plot_has_one_effect_scale_per_axis():
    fig = group_comparison_figure(new_tables()["group_comparison"])  # sources: tuning and decoded
    assert len(fig.axes) == 2
    xlabels = [ax.get_xlabel() for ax in fig.axes]
    assert "tuning" in xlabels[1] and "decoded" in xlabels[0] and xlabels[0] != xlabels[1]
    ticks = [[t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes]
    assert ticks == [["SST: darkness"], ["VISl: sky", "VISp: stripes"]]


def test_cards_lead_with_driven_units_that_have_a_finding():
    un = pd.DataFrame({"visually_driven": [False, True, True, True],
                       "reliability": [0.9, 0.8, 0.3, 0.5],
                       "top_concept_q": [0.01, 0.5, 0.01, np.nan],
                       "drive_q": [np.nan, np.nan, np.nan, 0.02],
                       "loo_p": [np.nan] * 4, "loo_delta": [np.nan] * 4})
    # driven with a finding (by reliability: row 3, then 2), driven without (1), not driven (0)
    assert card_order(un).tolist() == [3, 2, 1, 0]
