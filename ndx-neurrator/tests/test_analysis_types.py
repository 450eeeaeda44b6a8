"""New types (issues 9.5, 10.1, 13.2, 15): constructors, values after a write/read, and bad arguments refused."""

from __future__ import annotations

import numpy as np
import pytest
from pynwb import NWBHDF5IO

import ndx_neurrator as ndx
from ndx_neurrator.testing import (
    mock_compact_PatchPredictions,
    mock_ConceptTuningTable,
    mock_EncoderCheckpoint,
    mock_NarrationsCollection,
    mock_PatchBasis,
    mock_ScalingTable,
    mock_UnitNeurrationTable,
    mock_UnitSubsetsTable,
    mock_Units,
)


@pytest.fixture
def units():
    return mock_Units(n_units=6)


@pytest.fixture
def subsets(units):
    return mock_UnitSubsetsTable(units_table=units)


def test_values_survive_a_write(all_types_file):
    path, _ = all_types_file
    with NWBHDF5IO(path, "r") as io:
        m = io.read().processing["neurrator"]
        un = m["unit_neurration"].to_dataframe(index=True)
        assert list(un["visually_driven"]) == [True, True, False, True, True, False]
        assert list(un["preferred_text"])[2] == "" and list(un["top_frames"][1]) == [3, 4]
        assert list(un["top_frames"][2]) == [] and np.isnan(un["top_concept_r"].iloc[2])
        ct = m["concept_tuning"].to_dataframe(index=True)
        assert len(ct) == 18 and ct["significant"].sum() == int((np.linspace(0.001, 0.9, 18) < 0.05).sum())
        sc = m["scaling"].to_dataframe()
        assert sc[sc.region == "CA1"]["crossing_n"].isna().all() and (sc[sc.region == "VISp"]["crossing_n"] == 20).all()
        assert list(sc.groupby("region")["crossing_note"].first()) == ["never", "not estimable: CI open above",
                                                                       "estimated"]
        assert np.allclose(un["drive_q"], 0.08)
        fid = m["decoding_fidelity"].to_dataframe()
        assert {"ci_lo", "ci_hi", "p_value", "q_value", "beats_null", "null_kind", "null_mean"} <= set(fid.columns)
        assert fid["beats_null"].dtype == bool
        assert list(m["sae"].naming_split[:]) == ["train"] * 6
        val = m["sae_validation_by_subset"].to_dataframe()
        assert list(val["narration_table"][:4]) == ["narrations_all"] * 4 and list(val["narration_row"][:4]) == [0, 1, 2, 3]
        compact = m["predictions_compact"]
        assert compact.is_compact and compact.basis is m["patch_basis"]
        assert compact.coefficients.dtype == np.float32 and compact.get_windows([1, 2]).shape == (2, 4, 8)
        # the documented reconstruction, by hand
        b = m["patch_basis"]
        by_hand = (compact.coefficients[:] @ b.components[:].reshape(3, -1) + b.mean[:].reshape(-1)).reshape(5, 4, 8)
        np.testing.assert_allclose(compact.get_windows(exact=False), by_hand, rtol=1e-6)
        assert not np.array_equal(compact.get_windows([1]), by_hand[[1]])  # window 1 is kept exactly
        np.testing.assert_array_equal(compact.get_windows([1])[0], compact.full_data[0])


def test_full_form_predictions_still_read_by_get_windows(all_types_file):
    path, written = all_types_file
    with NWBHDF5IO(path, "r") as io:
        p = io.read().processing["neurrator"]["predictions"]
        assert not p.is_compact
        np.testing.assert_array_equal(p.get_windows([0, 3]), written.processing["neurrator"]["predictions"].data.data[[0, 3]])


def test_unit_neurration_refuses_text_for_undriven_units(units):
    kwargs = dict(units_table=units, unit_rows=[0, 1], reliability=[0.5, 0.0], reliability_p=[0.01, 0.9],
                  visually_driven=[True, False], preferred_text=["a bar", "a tree"], top_frames=[[1], []],
                  top_concept=["bright", ""], top_concept_r=[0.3, np.nan], top_concept_q=[0.01, np.nan],
                  loo_delta=0.0, loo_ci_lo=0.0, loo_ci_hi=0.0, loo_p=1.0, drive_text="x", baseline_text="y",
                  drive_shift=0.1, drive_p=0.5)
    with pytest.raises(ValueError, match="preferred_text must be '' for units not visually driven"):
        ndx.create_unit_neurration(**kwargs)
    with pytest.raises(ValueError, match="visually_driven must hold booleans"):
        ndx.create_unit_neurration(**kwargs | {"visually_driven": [1, 0], "preferred_text": ["a", ""]})
    with pytest.raises(ValueError, match="top_frames must be one list"):
        ndx.create_unit_neurration(**kwargs | {"preferred_text": ["a", ""], "top_frames": [[1]]})
    with pytest.raises(ValueError, match="outside 'units'"):
        ndx.create_unit_neurration(**kwargs | {"preferred_text": ["a", ""], "unit_rows": [0, 6]})


def test_group_tables_refuse_unknown_kinds_and_sources():
    base = dict(group_kind="cell_type", group=["PV"], source="tuning", concept="bright", effect=0.1, ci_lo=0.0,
                ci_hi=0.2, p=0.01, q=0.02, n_units=30, n_null_draws=200)
    assert len(ndx.create_group_comparison(**base)) == 1
    with pytest.raises(ValueError, match="group_kind holds"):
        ndx.create_group_comparison(**base | {"group_kind": "layer"})
    with pytest.raises(ValueError, match="source holds"):
        ndx.create_group_comparison(**base | {"source": "both"})
    with pytest.raises(ValueError, match="one value per row"):
        ndx.create_group_comparison(**base | {"group": "PV"})
    with pytest.raises(ValueError, match="n_units must hold integers"):
        ndx.create_group_comparison(**base | {"n_units": [30.5]})


def test_group_separation_status_columns_are_optional_and_checked():
    base = dict(analysis=["text_classifier_accuracy"], group_kind="region", group="all", value=0.6, ci_lo=0.5,
                ci_hi=0.7, chance_level=0.33, p=0.01, n=90)
    old = ndx.create_group_separation(**base)  # as files written before the status columns
    assert "status" not in old.colnames and "fidelity" not in old.colnames
    new = ndx.create_group_separation(**base, fidelity=0.5, fidelity_q=0.2, status="not interpretable",
                                      null_kind="re-decoded matched pools (n=10), fidelity-adjusted t on 8 df")
    assert new["status"][0] == "not interpretable" and new["fidelity_q"][0] == 0.2
    with pytest.raises(ValueError, match="status holds"):
        ndx.create_group_separation(**base, status="significant")


def test_scaling_crossing_must_be_constant_per_region_and_metric():
    kwargs = dict(region="VISp", n_units=[5, 20], metric="top1", value=[0.1, 0.2], ci_lo=0.0, ci_hi=0.3, n_draws=5,
                  baseline=0.01, crossing_n=[20.0, 30.0], crossing_lo=10.0, crossing_hi=30.0)
    with pytest.raises(ValueError, match="crossing_n differs between rows of region 'VISp'"):
        ndx.create_scaling(**kwargs)
    assert len(mock_ScalingTable()) == 9
    old = ndx.create_scaling(**kwargs | {"crossing_n": 20.0})  # as files written before crossing_note
    assert "crossing_note" not in old.colnames
    new = ndx.create_scaling(**kwargs | {"crossing_n": np.nan, "crossing_note": "not estimable: CI open above"})
    assert new["crossing_note"][1] == "not estimable: CI open above"


def test_concept_tuning_long_format(units):
    table = mock_ConceptTuningTable(units_table=units, concepts=("a", "b"))
    df = table.to_dataframe(index=True)
    assert list(df["unit"][:4]) == [0, 0, 1, 1] and list(df["concept"][:4]) == ["a", "b", "a", "b"]


def test_narrations_collection_refuses_overlap_and_unknown_subsets(subsets):
    row = dict(start_time=[0.0, 0.1], stop_time=[0.2, 0.3], text=["a", "b"], frame=[0, 3], narrator_model="m",
               prompt="p")
    with pytest.raises(ValueError, match="overlapping or unsorted windows"):
        ndx.create_narrations_collection({0: row}, unit_subsets=subsets)
    ok = row | {"start_time": [0.0, 0.3], "stop_time": [0.2, 0.5]}
    with pytest.raises(ValueError, match="no unit subset labelled 'nope'"):
        ndx.create_narrations_collection({"nope": ok}, unit_subsets=subsets)
    with pytest.raises(ValueError, match="do not pass 'unit_subset_rows'"):
        ndx.create_narrations_collection({0: ok | {"unit_subset_rows": 0}}, unit_subsets=subsets)
    coll = ndx.create_narrations_collection({"random:2:seed3": ok}, unit_subsets=subsets)
    assert list(coll.narrations_tables) == ["narrations_random_2_seed3"]
    assert list(coll.narrations_tables["narrations_random_2_seed3"]["subset"].data) == ["random:2:seed3"] * 2


def test_sae_validation_rows_into_a_collection_are_checked(subsets):
    coll = mock_NarrationsCollection(unit_subsets=subsets)
    scores = {k: [0.1] for k in ndx.SAE_SCORE_COLUMNS}
    with pytest.raises(ValueError, match="names table 'narrations_x'"):
        ndx.create_sae_validation(narrations=coll, narration_rows=[("narrations_x", 0)], scores=scores,
                                  supporting_concepts=[[]])
    with pytest.raises(ValueError, match="outside 'narrations_all'"):
        ndx.create_sae_validation(narrations=coll, narration_rows=[("narrations_all", 4)], scores=scores,
                                  supporting_concepts=[[]])
    with pytest.raises(ValueError, match="pair"):
        ndx.create_sae_validation(narrations=coll, narration_rows=[0], scores=scores, supporting_concepts=[[]])


def test_compact_predictions_bad_arguments(units, subsets):
    enc = mock_EncoderCheckpoint(units_table=units)
    basis = mock_PatchBasis(encoder=enc)
    common = dict(name="p", timestamps=[0.0, 0.1], frame=[0, 1], unit_subsets=subsets, unit_subset_rows=0, encoder=enc)
    coef = np.zeros((2, 3), np.float32)
    err = dict(relative_mse=[0.0, 0.0], cosine=[1.0, 1.0])
    with pytest.raises(ValueError, match="not both"):
        ndx.create_patch_predictions(np.zeros((2, 4, 8), np.float32), coefficients=coef, basis=basis, **common, **err)
    with pytest.raises(ValueError, match="not neither"):
        ndx.create_patch_predictions(**common)
    with pytest.raises(ValueError, match="float16 is not allowed"):
        ndx.create_patch_predictions(coefficients=coef.astype(np.float16), basis=basis, **common, **err)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        ndx.create_patch_predictions(coefficients=np.zeros((2, 2), np.float32), basis=basis, **common, **err)
    with pytest.raises(ValueError, match="measured error"):
        ndx.create_patch_predictions(coefficients=coef, basis=basis, **common)
    with pytest.raises(ValueError, match="need basis"):
        ndx.create_patch_predictions(coefficients=coef, **common, **err)
    with pytest.raises(ValueError, match="outside 0..1"):
        ndx.create_patch_predictions(coefficients=coef, basis=basis, full_windows=[2],
                                     full_data=np.zeros((1, 4, 8), np.float32), **common, **err)
    with pytest.raises(ValueError, match="belong to the compact form"):
        ndx.create_patch_predictions(np.zeros((2, 4, 8), np.float32), basis=basis, **common)
    with pytest.raises(ValueError, match="float16"):
        ndx.create_patch_basis(np.zeros((1, 4, 8), np.float16), mean=np.zeros((4, 8), np.float32))
    with pytest.raises(ValueError, match="components"):
        ndx.create_patch_basis(np.zeros((1, 4, 8), np.float32), mean=np.zeros((4, 7), np.float32))
    assert mock_compact_PatchPredictions(encoder=enc, basis=basis, unit_subsets=subsets).is_compact


def test_unit_neurration_mock(units):
    table = mock_UnitNeurrationTable(units_table=units)
    assert len(table) == 6 and table["unit"].table is units


def test_compact_predictions_in_the_encoder_readout(units, subsets, tmp_path):
    """coefficient_space 'encoder_readout': no PatchBasis; the windows come back from the linked encoder's
    own weights (lin_basis with an unused zero row, lin_scale, target_mean, target_std), after a write."""
    from ndx_neurrator.testing import mock_NWBFile, safetensors_bytes

    rng = np.random.default_rng(4)
    p, d, k = 4, 8, 3
    tensors = {"lin_basis": np.vstack([rng.standard_normal((k, p * d)), np.zeros((1, p * d))]).astype(np.float32),
               "lin_scale": rng.uniform(0.5, 2, k + 1).astype(np.float32),
               "target_mean": rng.standard_normal((p, d)).astype(np.float32),
               "target_std": rng.uniform(0.5, 2, d).astype(np.float32),
               "w": np.zeros(2, np.float32)}
    nwbfile = mock_NWBFile()
    nwbfile.units = units
    enc = mock_EncoderCheckpoint(units_table=units)
    enc = ndx.create_encoder_checkpoint(
        safetensors_bytes(tensors), **{f: getattr(enc, f) for f in (
            "name", "architecture", "backbone_id", "backbone_layer", "n_patches", "dim", "preprocessing", "stimulus")},
        units_table=units, unit_rows=np.arange(len(units)), config=enc.get_config(),
        training_metrics={}, validation_metrics={}, software_versions={})
    coef = rng.standard_normal((5, k)).astype(np.float32)
    expected = tensors["target_mean"] + tensors["target_std"] * (
        (coef * tensors["lin_scale"][:k]) @ tensors["lin_basis"][:k]).reshape(5, p, d)
    common = dict(name="predictions", timestamps=np.arange(5) / 30.0, frame=np.arange(5), unit_subsets=subsets,
                  unit_subset_rows=0, encoder=enc, relative_mse=np.zeros(5), cosine=np.ones(5))
    module = ndx.get_neurrator_module(nwbfile)
    module.add(enc)
    module.add(subsets)
    module.add(ndx.create_patch_predictions(coefficients=coef, coefficient_space="encoder_readout", **common))
    path = tmp_path / "readout.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    with NWBHDF5IO(str(path), "r") as io:
        pp = io.read().processing["neurrator"]["predictions"]
        assert pp.space == "encoder_readout" and pp.basis is None
        np.testing.assert_allclose(pp.get_windows(), expected, rtol=1e-5, atol=1e-5)
    short = ndx.create_patch_predictions(coefficients=coef[:, :2], coefficient_space="encoder_readout", **common)
    with pytest.raises(ValueError, match="2 coefficients per window but .* readout of rank 3"):
        short.get_windows()
    with pytest.raises(ValueError, match="take no basis"):
        ndx.create_patch_predictions(coefficients=coef, coefficient_space="encoder_readout",
                                     basis=mock_PatchBasis(encoder=enc), **common)
    with pytest.raises(ValueError, match="coefficient_space must be one of"):
        ndx.create_patch_predictions(coefficients=coef, coefficient_space="pixels", **common)
    with pytest.raises(ValueError, match="no linear readout"):
        mock_EncoderCheckpoint(units_table=units).readout_basis()


def test_no_window_kept_in_full_leaves_the_optional_datasets_out(units, subsets, tmp_path):
    enc = mock_EncoderCheckpoint(units_table=units)
    basis = mock_PatchBasis(encoder=enc)
    pp = ndx.create_patch_predictions(
        name="p", timestamps=[0.0, 0.1], frame=[0, 1], unit_subsets=subsets, unit_subset_rows=0, encoder=enc,
        coefficients=np.zeros((2, 3), np.float32), basis=basis, relative_mse=[0.0, 0.0], cosine=[1.0, 1.0],
        full_windows=np.zeros(0, np.int64), full_data=np.zeros((0, 4, 8), np.float32))
    assert pp.full_windows is None and pp.full_data is None and pp.get_windows().shape == (2, 4, 8)
