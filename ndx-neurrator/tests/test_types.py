"""Per type: constructor, write/read round trip with equality, and bad arguments refused clearly."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTableRegion
from hdmf.data_utils import DataChunkIterator
from pynwb import NWBHDF5IO
from pynwb.testing import TestCase

import ndx_neurrator as ndx
from ndx_neurrator.testing import (
    MOCK_CONTAINERS,
    mock_DecodingFidelityTable,
    mock_EncoderCheckpoint,
    mock_NarrationsTable,
    mock_NWBFile,
    mock_PatchPredictions,
    mock_SAEValidationTable,
    mock_SafetensorsWeights,
    mock_SparseAutoencoder,
    mock_UnitSubsetsTable,
    mock_Units,
    safetensors_bytes,
)


def _assert_container_equal(a, b):
    TestCase().assertContainerEqual(a, b, ignore_hdmf_attrs=True)


@pytest.fixture
def units():
    return mock_Units(n_units=6)


@pytest.fixture
def subsets(units):
    return mock_UnitSubsetsTable(units_table=units)


# --- constructors -------------------------------------------------------------------------------


def test_weights_from_bytes_records_sha256():
    raw = safetensors_bytes({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    w = ndx.weights_from_bytes(raw)
    assert w.sha256 == hashlib.sha256(raw).hexdigest()
    assert w.format == "safetensors"
    assert w.data.dtype == np.uint8 and w.get_bytes() == raw


def test_encoder_checkpoint_constructor(units):
    ckpt = mock_EncoderCheckpoint(units_table=units, n_patches=4, dim=8)
    assert isinstance(ckpt, ndx.EncoderCheckpoint)
    assert ckpt.target_space == {
        "backbone_id": "tiny", "layer": -2, "n_patches": 4, "dim": 8,
        "preprocessing": "resize 32, centre crop 32, CLIP normalization",
    }
    assert ckpt.get_config() == {"d_model": 16, "n_layers": 1, "window_bins": 20}
    assert ckpt.get_training_metrics()["patch_cosine"] == 0.4
    assert ckpt.get_validation_metrics()["loss"] == 0.6
    assert ckpt.get_software_versions()["torch"] == "2.5.0"
    np.testing.assert_array_equal(ckpt.units.data, np.arange(6))
    assert ckpt.units.table is units
    assert ckpt.get_weights_bytes() == mock_SafetensorsWeights().get_bytes()


def test_json_fields_are_strict_json(units):
    kwargs = _encoder_kwargs(units) | {
        "training_metrics": {"loss": np.float32(0.5), "best": float("nan"), "curve": np.array([1, 2])}
    }
    ckpt = ndx.create_encoder_checkpoint(safetensors_bytes({"w": np.zeros(2, np.float32)}), **kwargs)
    assert "NaN" not in ckpt.training_metrics
    assert ckpt.get_training_metrics() == {"loss": 0.5, "best": None, "curve": [1, 2]}


def test_patch_predictions_constructor(units, subsets):
    enc = mock_EncoderCheckpoint(units_table=units)
    preds = mock_PatchPredictions(n_windows=5, encoder=enc, unit_subsets=subsets)
    assert isinstance(preds, ndx.PatchPredictions)
    assert preds.n_windows == 5
    assert isinstance(preds.data, H5DataIO)
    assert preds.data.io_settings["chunks"] == (1, 4, 8)
    assert preds.data.io_settings["compression"] == "gzip" and preds.data.io_settings["shuffle"] is True
    assert preds.encoder is enc and preds.unit_subset.table is subsets
    np.testing.assert_array_equal(preds.frame, np.arange(5))
    np.testing.assert_array_equal(preds.unit_subset.data, [0, 1, 2, 0, 1])


def test_unit_subsets_constructor(units):
    table = mock_UnitSubsetsTable(units_table=units)
    assert isinstance(table, ndx.UnitSubsetsTable)
    assert list(table["label"][:]) == ["all", "random:2:seed3", "unit:0"]
    assert list(table["kind"][:]) == ["all", "random", "single_unit"]
    assert list(table["seed"][:]) == [-1, 3, -1]
    assert table["units"].target.table is units
    assert len(table["units"][1]) == 2 and list(table["units"][1].index) == [1, 5]


def test_unit_subsets_accept_dataclass_like_objects(units):
    class Subset:  # the shape of neurrator.decode.subsets.UnitSubset
        def __init__(self, label, kind, unit_idx, seed):
            self.label, self.kind, self.unit_idx, self.seed = label, kind, unit_idx, seed

    table = ndx.create_unit_subsets([Subset("region:VISp", "region", np.array([2, 3]), None)], units_table=units)
    assert table["label"][0] == "region:VISp" and table["seed"][0] == -1


def test_narrations_constructor(subsets):
    table = mock_NarrationsTable(n_rows=4, unit_subsets=subsets)
    assert isinstance(table, ndx.NarrationsTable)
    from pynwb.epoch import TimeIntervals

    assert isinstance(table, TimeIntervals)
    df = table.to_dataframe(index=True)
    assert list(df["text"]) == [f"a mouse watches scene {i}" for i in range(4)]
    assert list(df["frame"]) == [0, 1, 2, 3] and list(df["unit_subset"]) == [0, 1, 2, 0]
    np.testing.assert_allclose(df["stop_time"] - df["start_time"], 1 / 6)
    assert set(df["narrator_model"]) == {"tiny"}
    np.testing.assert_allclose(df["similarity"], np.linspace(0.1, 0.4, 4))


def test_narrations_without_reference_have_no_optional_columns(subsets):
    table = ndx.create_narrations(
        start_time=[0.0, 1.0], stop_time=[0.5, 1.5], text=["a", "b"], frame=[3, 4], unit_subsets=subsets,
        unit_subset_rows=0, narrator_model="tiny", prompt="Describe.",
    )
    assert "reference_text" not in table.colnames and "similarity" not in table.colnames
    assert list(table["unit_subset"].data) == [0, 0]


def test_sae_validation_constructor_with_extra_score(subsets):
    narr = mock_NarrationsTable(n_rows=3, unit_subsets=subsets)
    table = ndx.create_sae_validation(
        narrations=narr, narration_rows=[0, 1, 2],
        scores={"concept_agreement": [0.1, 0.2, 0.3], "latent_profile_similarity": [0.4, 0.5, 0.6],
                "reconstruction_score": [0.7, 0.8, 0.9], "caption_overlap": [1, 0, 1]},
        supporting_concepts=[["tree"], [], ["sky", "grass"]],
    )
    assert isinstance(table, ndx.SAEValidationTable)
    assert list(table["supporting_concepts"][2]) == ["sky", "grass"] and list(table["supporting_concepts"][1]) == []
    assert list(table["caption_overlap"][:]) == [1.0, 0.0, 1.0]
    assert table["narration"].table is narr


def test_sae_validation_without_any_supporting_concept_has_no_empty_column(tmp_path):
    """An SAE that names no concept supports no narration: the ragged column is left out, not written empty."""
    nwbfile = mock_NWBFile()
    narr = mock_NarrationsTable(n_rows=2, nwbfile=nwbfile)
    table = ndx.create_sae_validation(
        narrations=narr, narration_rows=[0, 1], supporting_concepts=[[], []],
        scores={"concept_agreement": [0.0, 0.0], "latent_profile_similarity": [0.4, 0.5],
                "reconstruction_score": [0.7, 0.8]})
    assert "supporting_concepts" not in table.colnames
    nwbfile.processing["neurrator"].add(table)
    path = tmp_path / "no_concepts.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    with NWBHDF5IO(str(path), "r") as io:
        back = io.read().processing["neurrator"]["sae_validation"]
        assert "supporting_concepts" not in back.colnames
        assert list(back["latent_profile_similarity"][:]) == [0.4, 0.5]


def test_sparse_autoencoder_constructor():
    sae = mock_SparseAutoencoder(n_latents=6)
    assert isinstance(sae, ndx.SparseAutoencoder)
    assert sae.concept_labels == [f"concept {i}" for i in range(6)]
    assert sae.concept_label_sources == ["oracle narrations of top-activating frames"] * 6
    assert sae.get_config()["k"] == 2
    assert sae.get_weights_bytes() == mock_SafetensorsWeights(seed=1).get_bytes()


def test_decoding_fidelity_constructor(subsets):
    table = mock_DecodingFidelityTable(unit_subsets=subsets)
    assert isinstance(table, ndx.DecodingFidelityTable)
    df = table.to_dataframe(index=True)
    assert len(df) == 6
    assert list(df["n_units"]) == [6, 6, 2, 2, 1, 1]
    assert list(df["seed"]) == [-1, -1, 3, 3, -1, -1]
    assert list(df["metric"][:2]) == ["patch_cosine", "top1"]
    assert np.isnan(df["chance_level"].iloc[0]) and df["chance_level"].iloc[1] == pytest.approx(1 / 900)


def test_mock_names_are_honoured(units, subsets):
    assert mock_EncoderCheckpoint(name="enc2", units_table=units).name == "enc2"
    assert mock_NarrationsTable(name="narr2", unit_subsets=subsets).name == "narr2"
    assert mock_SafetensorsWeights(name="w2").name == "w2"


# --- round trip ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def read_back(all_types_file):
    path, written = all_types_file
    io = NWBHDF5IO(path, "r")
    read = io.read()
    yield written, read
    io.close()


@pytest.mark.parametrize("name", sorted(MOCK_CONTAINERS))
def test_round_trip_equal(read_back, name):
    written, read = read_back
    original = written.processing["neurrator"][name]
    back = read.processing["neurrator"][name]
    assert back.neurodata_type == MOCK_CONTAINERS[name]
    assert type(back).__name__ == MOCK_CONTAINERS[name]
    assert type(back) is type(original)
    _assert_container_equal(original, back)


def test_round_trip_details(read_back):
    written, read = read_back
    mod_w, mod_r = written.processing["neurrator"], read.processing["neurrator"]
    # weights bytes and checksum
    assert mod_r["encoder"].get_weights_bytes() == mod_w["encoder"].get_weights_bytes()
    assert mod_r["encoder"].get_config() == mod_w["encoder"].get_config() == {"d_model": 16, "n_layers": 1, "window_bins": 20}
    assert mod_r["encoder"].target_space == mod_w["encoder"].target_space
    assert mod_r["encoder"].get_validation_metrics() == {"loss": 0.6, "patch_cosine": 0.35}
    assert mod_r["sae"].get_config() == mod_w["sae"].get_config()
    assert mod_r["predictions"].n_windows == 5
    assert mod_r["sae"].get_weights_bytes() == mod_w["sae"].get_weights_bytes()
    # predictions: dtype, chunking, compression, link and region survive
    dset = mod_r["predictions"].data
    assert dset.dtype == np.float32 and dset.chunks == (1, 4, 8)
    assert dset.compression == "gzip" and dset.shuffle
    np.testing.assert_array_equal(dset[:], mod_w["predictions"].data.data)
    assert mod_r["predictions"].encoder is mod_r["encoder"]
    assert mod_r["predictions"].unit_subset.table is mod_r["unit_subsets"]
    assert mod_r["encoder"].units.table is read.units
    assert mod_r["narrations"]["unit_subset"].table is mod_r["unit_subsets"]
    assert mod_r["sae_validation"]["narration"].table is mod_r["narrations"]
    assert list(mod_r["sae_validation"]["supporting_concepts"][2]) == ["tree", "sky"]


def test_no_float16_in_written_file(all_types_file):
    path, _ = all_types_file
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype == np.float16:
            found.append(name)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    assert found == []


# --- large predictions from an iterator ---------------------------------------------------------


def test_predictions_from_iterator_are_written_lazily(tmp_path):
    nwbfile = mock_NWBFile()
    mock_Units(nwbfile=nwbfile)
    subsets = mock_UnitSubsetsTable(nwbfile=nwbfile)
    enc = mock_EncoderCheckpoint(nwbfile=nwbfile)
    rng = np.random.default_rng(1)
    windows = rng.standard_normal((7, 4, 8)).astype(np.float32)
    pulled = []

    def generate():
        for i, window in enumerate(windows):
            pulled.append(i)
            yield window

    preds = ndx.create_patch_predictions(
        ndx.iter_windows(generate(), n_windows=7, n_patches=4, dim=8), name="predictions",
        timestamps=np.arange(7) / 30, frame=np.arange(7), unit_subsets=subsets, unit_subset_rows=0, encoder=enc,
    )
    assert pulled in ([], [0])  # DataChunkIterator may pre-read one window; nothing else before write
    ndx.get_neurrator_module(nwbfile).add(preds)
    path = tmp_path / "iter.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    assert pulled == list(range(7))
    with NWBHDF5IO(path, "r") as io:
        back = io.read().processing["neurrator"]["predictions"]
        np.testing.assert_array_equal(back.data[:], windows)
        assert back.data.chunks == (1, 4, 8) and back.data.compression == "gzip"


def _write_lazy(tmp_path, windows, *, n_windows):
    nwbfile = mock_NWBFile()
    mock_Units(nwbfile=nwbfile)
    subsets = mock_UnitSubsetsTable(nwbfile=nwbfile)
    enc = mock_EncoderCheckpoint(nwbfile=nwbfile)
    preds = ndx.create_patch_predictions(
        ndx.iter_windows(iter(windows), n_windows=n_windows, n_patches=4, dim=8), name="predictions",
        timestamps=np.arange(n_windows) / 30, frame=np.arange(n_windows), unit_subsets=subsets,
        unit_subset_rows=0, encoder=enc,
    )
    ndx.get_neurrator_module(nwbfile).add(preds)
    with NWBHDF5IO(tmp_path / "lazy.nwb", "w") as io:
        io.write(nwbfile)


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([np.zeros((4, 8), np.float32)] * 2, "got 2 windows, expected 3"),
        ([np.zeros((4, 8), np.float32)] * 4, "more than the 3 windows announced"),
        ([np.zeros((4, 8), np.float32), np.zeros((4, 9), np.float32)], r"window 1 has dtype float32 and shape \(4, 9\)"),
        ([np.zeros((4, 8), np.float64)], "window 0 has dtype float64"),
    ],
)
def test_iterator_windows_are_checked_while_writing(tmp_path, windows, message):
    with pytest.raises(ValueError, match=message):
        _write_lazy(tmp_path, windows, n_windows=3)


def test_iterator_length_must_match_timestamps(units, subsets):
    enc = mock_EncoderCheckpoint(units_table=units)
    it = ndx.iter_windows(iter([]), n_windows=4, n_patches=4, dim=8)
    with pytest.raises(ValueError, match="timestamps has 3 entries but data has 4 windows"):
        ndx.create_patch_predictions(it, **_predictions_kwargs(enc, subsets))


def test_predictions_from_user_wrapped_iterator(tmp_path):
    nwbfile = mock_NWBFile()
    mock_Units(nwbfile=nwbfile)
    subsets = mock_UnitSubsetsTable(nwbfile=nwbfile)
    enc = mock_EncoderCheckpoint(nwbfile=nwbfile)
    windows = np.ones((3, 4, 8), dtype=np.float32) * np.arange(3, dtype=np.float32)[:, None, None]
    data = H5DataIO(
        DataChunkIterator(data=iter(windows), maxshape=(None, 4, 8), dtype=np.dtype(np.float32), buffer_size=2),
        chunks=(1, 4, 8), compression="gzip", shuffle=True,
    )
    preds = ndx.create_patch_predictions(
        data, name="predictions", timestamps=[0.1, 0.2, 0.3], frame=[0, 1, 2], unit_subsets=subsets,
        unit_subset_rows=[0, 1, 2], encoder=enc,
    )
    ndx.get_neurrator_module(nwbfile).add(preds)
    path = tmp_path / "wrapped.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    with NWBHDF5IO(path, "r") as io:
        np.testing.assert_array_equal(io.read().processing["neurrator"]["predictions"].data[:], windows)


# --- checksum -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["encoder", "sae"])
def test_tampered_weights_are_refused_on_load(tmp_path, all_types_file, name):
    src, _ = all_types_file
    path = tmp_path / "tampered.nwb"
    path.write_bytes(src.read_bytes())
    with h5py.File(path, "r+") as f:
        dset = f[f"processing/neurrator/{name}/weights"]
        dset[10] = dset[10] ^ 0xFF
    with NWBHDF5IO(path, "r") as io:
        container = io.read().processing["neurrator"][name]
        with pytest.raises(ValueError, match=rf"'{name}'.*fail their checksum") as info:
            container.get_weights_bytes()
        assert isinstance(info.value, ndx.WeightsChecksumError)
        assert container.weights.sha256 in str(info.value)
        assert str(path) in str(info.value)
        raw = container.get_weights_bytes(verify=False)
        assert hashlib.sha256(raw).hexdigest() in str(info.value)


# --- bad arguments ------------------------------------------------------------------------------


def test_weights_bad_arguments():
    with pytest.raises(ValueError, match="1-D uint8"):
        ndx.weights_from_bytes(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D uint8"):
        ndx.weights_from_bytes(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty"):
        ndx.weights_from_bytes(b"")
    with pytest.raises(ValueError, match="64 lower-case hex"):
        ndx.SafetensorsWeights(name="weights", data=np.zeros(3, np.uint8), sha256="abc", format="safetensors")
    with pytest.raises(ValueError, match="1-D uint8"):
        ndx.SafetensorsWeights(name="weights", data=np.zeros(3, np.int64), sha256="0" * 64, format="safetensors")


def _encoder_kwargs(units):
    return dict(
        name="enc", units_table=units, unit_rows=[0, 1], architecture="a", config={"x": 1}, backbone_id="tiny",
        backbone_layer=-2, n_patches=4, dim=8, preprocessing="p", stimulus="s", training_metrics={},
        validation_metrics={},
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_patches": 0}, "n_patches must be a positive integer"),
        ({"dim": 8.0}, "dim must be an int"),
        ({"config": "{not json"}, "config is not valid JSON"),
        ({"config": "[1, 2]"}, "config must be a JSON object"),
        ({"training_metrics": {"when": object()}}, "training_metrics is not JSON-serializable"),
        ({"unit_rows": [0, 6]}, "row 6, outside 'units' which has 6 rows"),
        ({"unit_rows": [0.5]}, "integer row indices"),
        ({"unit_rows": []}, "unit_rows is empty"),
    ],
)
def test_encoder_bad_arguments(units, change, message):
    kwargs = _encoder_kwargs(units) | change
    with pytest.raises(ValueError, match=message):
        ndx.create_encoder_checkpoint(safetensors_bytes({"w": np.zeros(2, np.float32)}), **kwargs)


def test_encoder_bad_weights(units):
    with pytest.raises(ValueError, match="weights must be bytes or a uint8 array"):
        ndx.create_encoder_checkpoint([1, 2, 3], **_encoder_kwargs(units))


def _predictions_kwargs(enc, subsets, n=3):
    return dict(
        name="preds", timestamps=np.arange(n) / 30, frame=np.arange(n), unit_subsets=subsets, unit_subset_rows=0,
        encoder=enc,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((3, 4, 8), np.float64), "must be float32.*got dtype float64"),
        (np.zeros((3, 4, 8), np.float16), "float16 is not allowed"),
        (np.zeros((3, 32), np.float32), r"shape \(n_windows, n_patches, dim\), got shape \(3, 32\)"),
        (np.zeros((2, 4, 8), np.float32), "timestamps has 3 entries but data has 2 windows"),
        (np.zeros((3, 5, 8), np.float32), "data has 5 patches x 8 dims but encoder 'encoder' predicts 4 x 8"),
    ],
)
def test_predictions_bad_arguments(units, subsets, data, message):
    enc = mock_EncoderCheckpoint(units_table=units)
    with pytest.raises(ValueError, match=message):
        ndx.create_patch_predictions(data, **_predictions_kwargs(enc, subsets))


def test_predictions_bad_rows_and_frames(units, subsets):
    enc = mock_EncoderCheckpoint(units_table=units)
    data = np.zeros((3, 4, 8), np.float32)
    with pytest.raises(ValueError, match="row 3, outside 'unit_subsets' which has 3 rows"):
        ndx.create_patch_predictions(data, **_predictions_kwargs(enc, subsets) | {"unit_subset_rows": [0, 1, 3]})
    with pytest.raises(ValueError, match="frame must hold integers"):
        ndx.create_patch_predictions(data, **_predictions_kwargs(enc, subsets) | {"frame": [0.0, 1.5, 2.0]})
    with pytest.raises(ValueError, match="iterator|float32"):
        ndx.create_patch_predictions(
            DataChunkIterator(data=iter(data.astype(np.float64)), maxshape=(None, 4, 8), dtype=np.dtype("float64")),
            **_predictions_kwargs(enc, subsets),
        )


def test_raw_predictions_constructor_checks_dtype(units, subsets):
    """The registered class itself (not only create_patch_predictions) refuses non-float32 data."""
    enc = mock_EncoderCheckpoint(units_table=units)
    region = DynamicTableRegion(name="unit_subset", description="d", data=[0, 0], table=subsets)
    with pytest.raises(ValueError, match="must be float32"):
        ndx.PatchPredictions(
            name="p", description="d", data=np.zeros((2, 4, 8), np.float64), timestamps=[0.0, 0.1], frame=[0, 1],
            unit_subset=region, encoder=enc,
        )
    with pytest.raises(ValueError, match="frame has 3 entries but data has 2 windows"):
        ndx.PatchPredictions(
            name="p", description="d", data=np.zeros((2, 4, 8), np.float32), timestamps=[0.0, 0.1], frame=[0, 1, 2],
            unit_subset=region, encoder=enc,
        )


@pytest.mark.parametrize(
    ("subsets_arg", "message"),
    [
        ([{"label": "x", "kind": "galaxy", "unit_idx": [0], "seed": None}], "kind 'galaxy'; valid kinds: all, region"),
        ([{"label": "x", "kind": "all", "unit_idx": [0], "seed": None}] * 2, "label 'x' appears twice"),
        ([{"label": "x", "kind": "all", "unit_idx": [0, 9], "seed": None}], "row 9, outside 'units'"),
        ([{"label": "x", "kind": "all", "unit_idx": [], "seed": None}], "subset 'x' has no units"),
        ([{"label": "x", "kind": "all", "unit_idx": [[0, 1]], "seed": None}], "1-D array of integer row indices"),
    ],
)
def test_unit_subsets_bad_arguments(units, subsets_arg, message):
    with pytest.raises(ValueError, match=message):
        ndx.create_unit_subsets(subsets_arg, units_table=units)


def _narration_kwargs(subsets):
    return dict(
        start_time=[0.0, 1.0], stop_time=[0.5, 1.5], text=["a", "b"], frame=[0, 1], unit_subsets=subsets,
        unit_subset_rows=[0, 1], narrator_model="tiny", prompt="Describe.",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text": ["a", "b", "c"]}, "start_time must have shape \\(3,\\), got \\(2,\\)"),
        ({"text": "ab"}, "text must be a sequence of strings"),
        ({"stop_time": [0.5, 0.9]}, "stop_time is before start_time in row 1"),
        ({"frame": [0.0, 1.0]}, "frame must hold integers"),
        ({"frame": np.zeros((2, 2), int)}, "frame must have shape \\(2,\\)"),
        ({"narrator_model": ["a"]}, "narrator_model has 1 entries, expected 2"),
        ({"similarity": [0.1, 0.2]}, "similarity was given without reference_text"),
        ({"reference_text": ["a"], "similarity": [0.1, 0.2]}, "reference_text has 1 entries"),
        ({"unit_subset_rows": [0, -1]}, "row -1, outside 'unit_subsets'"),
    ],
)
def test_narrations_bad_arguments(subsets, change, message):
    with pytest.raises(ValueError, match=message):
        ndx.create_narrations(**_narration_kwargs(subsets) | change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scores": {"concept_agreement": [0.1, 0.2]}}, "scores lacks latent_profile_similarity, reconstruction_score"),
        ({"supporting_concepts": [["a"]]}, "one list of labels per row \\(2 rows\\)"),
        ({"supporting_concepts": ["ab", "cd"]}, "not a string"),
        ({"narration_rows": [0, 5]}, "row 5, outside 'narrations'"),
        ({"scores": {s: [0.1, 0.2] for s in ndx.SAE_SCORE_COLUMNS} | {"narration": [1, 2]}}, "clash"),
        ({"scores": {s: [0.1, 0.2] for s in ndx.SAE_SCORE_COLUMNS} | {"extra": ["x", "y"]}}, "must hold numbers"),
        ({"scores": {s: [0.1, 0.2] for s in ndx.SAE_SCORE_COLUMNS} | {"description": [1, 2]}}, "clash"),
        ({"scores": {s: [0.1, 0.2] for s in ndx.SAE_SCORE_COLUMNS} | {"a/b": [1, 2]}}, "not usable column names"),
        ({"scores": {s: [0.1, 0.2] for s in ndx.SAE_SCORE_COLUMNS} | {"x_index": [1, 2]}}, "not usable column names"),
        ({"scores": {s: [0.1] for s in ndx.SAE_SCORE_COLUMNS}}, "must have shape \\(2,\\)"),
    ],
)
def test_sae_validation_bad_arguments(subsets, change, message):
    narr = mock_NarrationsTable(n_rows=3, unit_subsets=subsets)
    kwargs = dict(
        narrations=narr, narration_rows=[0, 1], scores={s: [0.1, 0.2] for s in ndx.SAE_SCORE_COLUMNS},
        supporting_concepts=[["a"], []],
    ) | change
    with pytest.raises(ValueError, match=message):
        ndx.create_sae_validation(**kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concept_label_sources": ["a", "b", "c"]}, "concept_label_sources has 3 entries, expected 2"),
        ({"concept_labels": "ab"}, "concept_labels must be a sequence"),
        ({"concept_labels": []}, "concept_labels is empty"),
        ({"config": "nope"}, "config is not valid JSON"),
    ],
)
def test_sparse_autoencoder_bad_arguments(change, message):
    kwargs = dict(
        name="sae", architecture="topk", config={"k": 1}, concept_labels=["a", "b"], concept_label_sources="manual"
    ) | change
    with pytest.raises(ValueError, match=message):
        ndx.create_sparse_autoencoder(safetensors_bytes({"w": np.zeros(2, np.float32)}), **kwargs)


def test_raw_sparse_autoencoder_checks_label_count():
    with pytest.raises(ValueError, match="concept_labels has 2 entries but concept_label_sources has 1"):
        ndx.SparseAutoencoder(
            name="sae", description="d", architecture="topk", config=json.dumps({}), weights=mock_SafetensorsWeights(),
            concept_labels=["a", "b"], concept_label_sources=["manual"],
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"value": [0.1]}, "value must have shape \\(2,\\), got \\(1,\\)"),
        ({"n_units": [1.5, 2.0]}, "n_units must hold integers"),
        ({"metric": ["a", "b", "c"]}, "metric has 3 entries, expected 2"),
        ({"unit_subset_rows": [0, 7]}, "row 7, outside 'unit_subsets'"),
        ({"chance_level": ["x", "y"]}, "chance_level must hold numbers"),
    ],
)
def test_decoding_fidelity_bad_arguments(subsets, change, message):
    kwargs = dict(
        unit_subsets=subsets, unit_subset_rows=[0, 1], n_units=[6, 2], region="VISp", cell_type="all", seed=[-1, 3],
        split="test", metric="top1", value=[0.5, 0.2], chance_level=1 / 900,
    ) | change
    with pytest.raises(ValueError, match=message):
        ndx.create_decoding_fidelity(**kwargs)


def test_neurrator_module_is_created_once():
    nwbfile = mock_NWBFile()
    module = ndx.get_neurrator_module(nwbfile)
    assert ndx.get_neurrator_module(nwbfile) is module and module.name == "neurrator"
