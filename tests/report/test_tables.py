"""Every results table of a derived file reaches pynapple: units keyed by unit id, narrations as IntervalSets
spanning their windows, the results tables as DataFrames with unit ids and subset labels (no row numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from _report_fixture import SUBSETS, make_derived, new_tables

nap = pytest.importorskip("pynapple", reason="pynapple is in the test extra")

import neurrator as nr  # noqa: E402

UNIT_IDS = [100, 101, 102, 103, 104, 105]  # the fixture's unit ids (rows 0-5)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return nr.to_pynapple(make_derived(tmp_path_factory.mktemp("nap") / "typed.nwb", new_types=True))


def test_every_table_of_the_file_is_there(tables):
    assert {"units", "narrations", "subsets", "fidelity", "unit_neurration", "concept_tuning", "scaling",
            "group_comparison", "group_separation"} <= set(tables)


def test_units_are_a_tsgroup_keyed_by_unit_id(tables):
    units = tables["units"]
    assert isinstance(units, nap.TsGroup)
    assert list(units.keys()) == UNIT_IDS
    assert list(units["region"]) == ["VISp"] * 3 + ["VISl"] * 3
    assert len(units[103].t) == 20


def test_unit_tables_are_keyed_by_unit_id_not_row(tables):
    truth = new_tables()
    u = tables["unit_neurration"]
    assert list(u.index) == [UNIT_IDS[r] for r in truth["unit_neurration"]["unit"]]  # rows 0, 1, 3
    assert u.loc[103, "top_concept"] == "darkness"
    assert "unit" not in u.columns
    t = tables["concept_tuning"]
    assert t["unit_id"].tolist() == [100, 100, 103]
    assert t.loc[t["unit_id"] == 103, "concept"].tolist() == ["darkness"]


def test_subset_references_are_labels(tables):
    fid = tables["fidelity"]
    assert "unit_subset" not in fid.columns
    assert set(fid["subset"]) == {s[0] for s in SUBSETS}
    assert fid["subset"].map(type).eq(str).all()
    subsets = tables["subsets"]
    assert subsets.loc["region:VISl", "unit_ids"] == [103, 104, 105]


def test_narrations_are_interval_sets_per_subset_with_text(tables):
    narr = tables["narrations"]
    assert set(narr) == {s[0] for s in SUBSETS if s[1] != "random"}
    iset = narr["region:VISp"]
    assert isinstance(iset, nap.IntervalSet) and len(iset) == 5  # one per narration, none merged
    # the fixture's windows (1/6 s from each frame onset, 1/30 s apart) overlap: neighbours meet midway
    onset = np.arange(5) / 30
    np.testing.assert_allclose(iset.start, [0, *((onset[:-1] + 1 / 6 + onset[1:]) / 2)])
    np.testing.assert_allclose(iset.end, [*((onset[:-1] + 1 / 6 + onset[1:]) / 2), onset[-1] + 1 / 6], atol=2e-6)
    assert list(iset["text"]) == [f"region:VISp sees thing {f}" for f in range(5)]
    assert set(iset["subset"]) == {"region:VISp"}


def test_a_file_without_results_is_one_clear_error(tmp_path):
    from pynwb import NWBHDF5IO
    from pynwb.testing.mock.file import mock_NWBFile

    path = tmp_path / "plain.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(mock_NWBFile())
    with pytest.raises(nr.NeurratorError, match="plain.nwb.*no neurrator results"):
        nr.to_pynapple(path)
