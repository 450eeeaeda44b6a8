"""Unit subsets: which groups are built, skipped, and how random draws behave."""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.decode.subsets import UnitSubset, build_subsets, pick_single_units
from neurrator.component_config import SubsetPlan


def _units():
    region = np.array(["VISp"] * 12 + ["LGd"] * 4 + ["unknown"] * 4)
    cell_type = np.array(["SST"] * 10 + ["unknown"] * 10)
    probe = np.array(["probeA"] * 20)
    depth = np.array([100.0] * 5 + [150.0] * 5 + [450.0] * 10)
    spikes = np.arange(20) * 10
    return region, cell_type, probe, depth, spikes


def test_groups_and_skips_by_hand():
    region, cell_type, probe, depth, spikes = _units()
    subsets, skipped = build_subsets(region, cell_type, probe, depth, spikes, unit_ids=np.arange(100, 120),
                                     plan=SubsetPlan(min_units=5, local_span_um=200, population_sizes=(2, 50),
                                                     draws_per_size=2, single_units=2))
    by_label = {s.label: s for s in subsets}
    assert by_label["all"].n_units == 20
    assert by_label["region:VISp"].unit_idx.tolist() == list(range(12))
    assert by_label["cell_type:SST"].unit_idx.tolist() == list(range(10))
    # depths 100 and 150 fall in [0, 200); 450 in [400, 600)
    assert by_label["local:probeA:0-200um"].unit_idx.tolist() == list(range(10))
    assert by_label["local:probeA:400-600um"].unit_idx.tolist() == list(range(10, 20))
    # LGd has 4 < 5 units: skipped with the reason; "unknown" is never a group
    assert [s[0] for s in skipped] == ["region:LGd"] and skipped[0][1] == 4
    assert "region:unknown" not in by_label
    # size 50 > 20 units is dropped; size 2 gets two seeded draws
    assert [s.label for s in subsets if s.kind == "random"] == ["random:2:seed0", "random:2:seed1"]
    # single units without reliability: the most active unit of each (region, cell type) group in turn
    # (unknown/unknown has unit 19, LGd/unknown unit 15), labelled with the file's ids
    assert [s.label for s in subsets if s.kind == "single_unit"] == ["unit:119", "unit:115"]


def test_random_draws_are_deterministic_and_distinct():
    region, cell_type, probe, depth, spikes = _units()
    plan = SubsetPlan(population_sizes=(5,), draws_per_size=3, single_units=0)
    a, _ = build_subsets(region, cell_type, probe, depth, spikes, plan=plan)
    b, _ = build_subsets(region, cell_type, probe, depth, spikes, plan=plan)
    draws_a = [s.unit_idx.tolist() for s in a if s.kind == "random"]
    assert draws_a == [s.unit_idx.tolist() for s in b if s.kind == "random"]
    assert len({tuple(d) for d in draws_a}) == 3
    assert all(len(set(d)) == 5 for d in draws_a)


def test_no_depth_means_no_local_populations():
    region, cell_type, probe, _, spikes = _units()
    subsets, _ = build_subsets(region, cell_type, probe, np.full(20, np.nan), spikes, plan=SubsetPlan())
    assert not [s for s in subsets if s.kind == "local_population"]


def test_bad_subset_and_plan_rejected():
    with pytest.raises(ValueError, match="unknown subset kind"):
        UnitSubset("x", "galaxy", np.arange(3))
    with pytest.raises(ValueError, match="no units"):
        UnitSubset("x", "all", np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="min_units"):
        SubsetPlan(min_units=0)


def test_single_units_by_reliability_spread_over_regions_and_cell_types():
    region, cell_type, probe, depth, spikes = _units()
    rel = np.full(20, 0.05)
    rel[[0, 1, 2]] = [0.9, 0.85, 0.8]  # three reliable VISp SST units
    rel[12] = 0.6  # the best LGd unit
    rel[19] = np.nan  # cannot be assessed: never picked
    rel[18] = -0.2  # anti-reliable: never picked
    subsets, _ = build_subsets(region, cell_type, probe, depth, spikes, plan=SubsetPlan(
        population_sizes=(), single_units=4), reliability=rel)
    # round robin over groups ordered by their best unit: VISp|SST, LGd|unknown, VISp|unknown, unknown|unknown
    assert [s.label for s in subsets if s.kind == "single_unit"] == ["unit:0", "unit:12", "unit:10", "unit:16"]
    # spike count plays no part once reliability is given: the most active unit (19) is not picked
    assert "unit:19" not in [s.label for s in subsets]


def test_pick_single_units_takes_the_next_best_of_each_group_in_turn():
    region = np.array(["V1"] * 4 + ["LGd"] * 2)
    cell = np.array(["PV", "PV", "SST", "SST", "PV", "PV"])
    score = np.array([0.9, 0.7, 0.5, 0.4, 0.8, 0.1])
    assert pick_single_units(region, cell, score, n=5).tolist() == [0, 4, 2, 1, 5]
    assert pick_single_units(region, cell, score, n=0).tolist() == []
