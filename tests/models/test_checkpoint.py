"""Checkpoint folder and bytes payload: exact round trip, sha256 verification, no pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurrator.models.backbones import load_backbone
from neurrator.data.binning import Binned
from neurrator.data.splits import split_repeats
from neurrator.models.checkpoint import checkpoint_payload, load_checkpoint, save_checkpoint, trained_from_payload
from neurrator.models.encoder import EncoderConfig
from neurrator.errors import NeurratorError
from neurrator.models.training import TrainConfig, train_encoder
from neurrator.models.prediction import predict

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained_and_data():
    rng = np.random.default_rng(0)
    F, R, N = 20, 4, 12
    counts = rng.poisson(1.0, size=(F * R * 4, N)).astype(np.uint16)
    binned = Binned(counts=counts, frame=np.tile(np.arange(F), R), repeat=np.repeat(np.arange(R), F),
                    bins_per_frame=4, unit_ids=np.arange(N, dtype=np.int64) * 7)
    targets = rng.normal(size=(F, 64, 64)).astype(np.float32)
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    enc = EncoderConfig(n_units=N, n_patches=64, dim=64, window_bins=20, d_model=16, n_heads=2, n_latents=4,
                        depth=1, n_sessions=2)
    tr = train_encoder(binned, targets, split, config=TrainConfig(max_epochs=2, batch_size=16, warmup_steps=1),
                       encoder=enc, seed=0, progress=False, target_spec=load_backbone("tiny").spec,
                       stimulus="natural_movie_one", holdout_frames=np.array([3, 4]),
                       unit_session=np.arange(N) % 2)
    tr.extra["session_ids"] = ["a", "b"]
    return tr, binned, split


def test_folder_round_trip_is_exact(trained_and_data, tmp_path):
    tr, binned, split = trained_and_data
    folder = save_checkpoint(tr, tmp_path / "enc")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metadata.json", "weights.safetensors"]
    meta = json.loads((folder / "metadata.json").read_text())
    assert set(meta["versions"]) == {"neurrator", "torch", "numpy", "python"}
    assert meta["target_spec"]["backbone_id"] == "tiny" and meta["stimulus"] == "natural_movie_one"
    assert meta["unit_ids"] == [int(u) for u in tr.unit_ids] and len(meta["history"]) == len(tr.history)
    back = load_checkpoint(folder)
    s0, s1 = tr.model.state_dict(), back.model.state_dict()
    assert s0.keys() == s1.keys() and all(torch.equal(s0[k], s1[k]) for k in s0)
    assert back.encoder_config == tr.encoder_config and back.train_config == tr.train_config
    assert back.target_spec == tr.target_spec and back.history == tr.history and back.best_step == tr.best_step
    np.testing.assert_array_equal(back.unit_ids, tr.unit_ids)
    np.testing.assert_array_equal(back.holdout_frames, [3, 4])
    assert back.extra == tr.extra and back.extra["session_ids"] == ["a", "b"] and "blend" in back.extra
    np.testing.assert_array_equal(predict(back, binned, split.test), predict(tr, binned, split.test))


def test_payload_round_trip_and_tamper_detection(trained_and_data):
    tr, binned, split = trained_and_data
    p = checkpoint_payload(tr)
    assert p.architecture == "SpikeEncoder" and isinstance(p.weights, bytes) and len(p.sha256) == 64
    assert p.weights[8:9] == b"{"  # a safetensors header, not a pickle (which starts with 0x80)
    back = trained_from_payload(p)
    np.testing.assert_array_equal(predict(back, binned, split.test[:5]), predict(tr, binned, split.test[:5]))
    flipped = bytearray(p.weights)
    flipped[-1] ^= 0xFF
    with pytest.raises(NeurratorError, match="sha256"):
        trained_from_payload(p._replace(weights=bytes(flipped)), source="x.nwb")
    with pytest.raises(NeurratorError, match="architecture"):
        trained_from_payload(p._replace(architecture="Other"))


def test_corrupt_or_missing_files_name_the_file(trained_and_data, tmp_path):
    tr, _, _ = trained_and_data
    folder = save_checkpoint(tr, tmp_path / "enc")
    w = folder / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(NeurratorError, match=r"weights\.safetensors: sha256"):
        load_checkpoint(folder)
    folder2 = save_checkpoint(tr, tmp_path / "enc2")
    (folder2 / "metadata.json").write_text("{not json")
    with pytest.raises(NeurratorError, match=r"metadata\.json: not valid JSON"):
        load_checkpoint(folder2)
    (folder2 / "config.json").unlink()
    with pytest.raises(NeurratorError, match=r"config\.json: missing"):
        load_checkpoint(folder2)
    with pytest.raises(NeurratorError, match="not found"):
        load_checkpoint(tmp_path / "nope")
