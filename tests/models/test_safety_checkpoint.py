"""Hostile `--encoder` checkpoints: pickles, lying or huge safetensors headers, absurd configs, lying metadata.

Every case must be refused with one line naming the file, before any large allocation (the tensor
loader is replaced by one that fails the test if reached) and without unpickling anything (a pickle
whose unpickling would create a marker file never does).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from neurrator.models import checkpoint_checks
from neurrator.models.backbones import TargetSpec
from neurrator.models.preprocessing import preprocessing_string
from neurrator.models.checkpoint import load_checkpoint, load_encoder_nwb, save_checkpoint
from neurrator.config import EncoderConfig
from neurrator.models.encoder import SpikeEncoder
from neurrator.errors import NeurratorError
from neurrator.models.training import TrainConfig, TrainedEncoder

N_UNITS = 6
SPEC = TargetSpec("tiny", -2, 64, 64, preprocessing_string("pad", 112), "random:seed=0")  # no model built


def make_trained() -> TrainedEncoder:
    enc = EncoderConfig(n_units=N_UNITS, n_patches=64, dim=64, window_bins=8, d_model=8, n_heads=2, n_latents=2,
                        depth=1, linear_rank=4)
    return TrainedEncoder(model=SpikeEncoder(config=enc).eval(), encoder_config=enc, train_config=TrainConfig(),
                          history=[], unit_ids=np.arange(N_UNITS, dtype=np.int64) + 10,
                          target_spec=SPEC, stimulus="natural_movie_one")


@pytest.fixture(scope="module")
def trained() -> TrainedEncoder:
    return make_trained()


@pytest.fixture
def folder(trained, tmp_path) -> Path:
    return save_checkpoint(trained, tmp_path / "ckpt")


@pytest.fixture
def no_tensor_load(monkeypatch):
    """Fail the test if the tensors are ever loaded."""
    import safetensors.torch

    def boom(*a, **k):
        raise AssertionError("safetensors.torch.load reached: the checks did not stop this file")

    monkeypatch.setattr(safetensors.torch, "load", boom)


def _rewrite(folder: Path, *, weights: bytes | None = None, config=None, meta=None) -> None:
    """Replace the folder's files, recomputing the recorded sha256 as an attacker would."""
    if weights is not None:
        (folder / "weights.safetensors").write_bytes(weights)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    m = json.loads((folder / "metadata.json").read_text()) if meta is None else meta
    m["weights_sha256"] = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(m))


def refused(folder: Path, *words: str) -> str:
    with pytest.raises(NeurratorError) as ei:
        load_checkpoint(folder)
    msg = str(ei.value)
    assert msg.startswith(str(folder)), msg
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


class _Marker:
    """Unpickling this creates the file named in MARKER (it must never happen)."""

    def __reduce__(self):
        return (open, (os.environ["NEURRATOR_TEST_MARKER"], "w"))


def test_valid_checkpoint_loads(folder, trained):
    got = load_checkpoint(folder)
    assert got.unit_ids.tolist() == trained.unit_ids.tolist()


def test_pickle_as_weights_is_refused_and_never_unpickled(folder, tmp_path, monkeypatch, no_tensor_load):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("NEURRATOR_TEST_MARKER", str(marker))
    _rewrite(folder, weights=pickle.dumps(_Marker()))
    refused(folder, "weights.safetensors" if False else "safetensors")
    assert not marker.exists()


def test_pickles_next_to_the_weights_are_ignored(folder, tmp_path, monkeypatch, trained):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("NEURRATOR_TEST_MARKER", str(marker))
    for name in ("pytorch_model.bin", "model.pt", "weights.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Marker()))
    assert load_checkpoint(folder).unit_ids.size == N_UNITS
    assert not marker.exists()


def test_huge_header_length_is_refused(folder, no_tensor_load):
    _rewrite(folder, weights=struct.pack("<Q", 2**62) + b"{}")
    refused(folder, "header claims")


def _header_and_data(folder: Path) -> tuple[dict, bytes]:
    raw = (folder / "weights.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _pack(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def test_header_lying_about_a_shape_is_refused(folder, no_tensor_load):
    header, data = _header_and_data(folder)
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10**6, 10**6]
    _rewrite(folder, weights=_pack(header, data))
    refused(folder, name, "the encoder config needs")


def test_header_with_overlapping_offsets_is_refused(folder, no_tensor_load):
    header, data = _header_and_data(folder)
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    a, b = names[0], names[1]
    if header[a]["data_offsets"][1] - header[a]["data_offsets"][0] == header[b]["data_offsets"][1] - header[b]["data_offsets"][0]:
        header[b]["data_offsets"] = list(header[a]["data_offsets"])  # same size: alias the first tensor
    else:
        header[b]["data_offsets"][0] += 4
    _rewrite(folder, weights=_pack(header, data))
    refused(folder)


def test_header_with_extra_tensors_is_refused(folder, no_tensor_load):
    header, data = _header_and_data(folder)
    header["evil"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
    _rewrite(folder, weights=_pack(header, data + b"\0\0\0\0"))
    refused(folder, "unexpected tensors", "evil")


def test_absurd_config_sizes_are_refused_without_building_the_model(folder, monkeypatch, no_tensor_load):
    import neurrator.models.checkpoint_checks as cc

    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["d_model"] = 10**9
    _rewrite(folder, config=config)
    monkeypatch.setattr(cc, "expected_state", lambda *a, **k: pytest.fail("model built for an absurd config"))
    refused(folder, "config.json", "d_model=1000000000 is outside")


def test_config_within_bounds_but_too_large_in_total_is_refused(folder, no_tensor_load):
    config = json.loads((folder / "config.json").read_text())
    config["encoder"].update(n_units=300_000, window_bins=10_000, linear_pool=1, linear_rank=65_536)
    _rewrite(folder, config=config)
    refused(folder, "GiB of weights, more than")


def test_config_with_wrong_types_is_refused(folder, no_tensor_load):
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["depth"] = "2"
    _rewrite(folder, config=config)
    refused(folder, "depth='2' is not an integer")


def test_weights_file_larger_than_the_config_needs_is_not_read(folder, monkeypatch):
    w = folder / "weights.safetensors"
    os.truncate(w, 50 * 2**30)  # a sparse 50 GiB file: refused by its size, never read
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self}") if self == w else real(self))
    refused(folder, "weights.safetensors", "the encoder config needs")


def test_huge_json_is_refused_before_reading(folder, monkeypatch):
    os.truncate(folder / "metadata.json", checkpoint_checks.MAX_JSON_BYTES + 1)
    refused(folder, "metadata.json", "more than")


@pytest.mark.parametrize("change, words", [
    (lambda m: m.update(unit_ids=m["unit_ids"][:-1]), ("unit ids", "units")),
    (lambda m: m.update(unit_ids=[1] * N_UNITS), ("duplicates",)),
    (lambda m: m["target_spec"].update(dim=1024), ("target_spec", "does not match")),
    (lambda m: m.update(holdout_frames=[-1]), ("holdout_frames",)),
    (lambda m: m.update(seed="0; rm -rf"), ("seed",)),
    (lambda m: m.update(unit_ids=[]), ("0 unit ids",)),
    (lambda m: m.pop("target_spec"), ("no target_spec",)),
    (lambda m: m.update(target_spec=None), ("no target_spec",)),
    (lambda m: m["target_spec"].update(layer="-2"), ("target_spec layer", "not an integer")),
    (lambda m: m["target_spec"].update(layer=10**9), ("not a hidden-state index",)),
    (lambda m: m["target_spec"].update(backbone_id=["tiny"]), ("backbone_id", "not a string")),
    (lambda m: m["target_spec"].update(weights=7), ("weights", "not a string")),
    (lambda m: m["target_spec"].pop("preprocessing"), ("preprocessing",)),
    (lambda m: m.update(stimulus={"x": 1}), ("stimulus",)),
    (lambda m: m["extra"].update(repeats="0,1"), ("extra.repeats",)),
    (lambda m: m["extra"].update(repeats={"train": [0, -1], "val": [2]}), ("extra.repeats",)),
    (lambda m: m["extra"].update(repeats={"train": [0, 1]}), ("extra.repeats",)),
])
def test_lying_metadata_is_refused(folder, change, words, no_tensor_load):
    meta = json.loads((folder / "metadata.json").read_text())
    change(meta)
    _rewrite(folder, meta=meta)
    refused(folder, *words)


def test_tampered_weights_without_new_sha_are_refused(folder):
    w = folder / "weights.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 1
    w.write_bytes(bytes(raw))
    refused(folder, "does not match")


# ------------------------------------------------------------------------------ NWB EncoderCheckpoint


def _encoder_nwb(path: Path, trained: TrainedEncoder) -> Path:
    from pynwb import NWBHDF5IO, NWBFile

    from neurrator.nwb.results import add_encoder_to_nwbfile

    nwb = NWBFile(session_description="t", identifier="t", session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    for u in trained.unit_ids:
        nwb.add_unit(id=int(u), spike_times=np.array([0.5]))
    add_encoder_to_nwbfile(nwb, trained, units_table=nwb.units, unit_rows=np.arange(N_UNITS),
                           stimulus="natural_movie_one")
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_nwb_encoder_round_trip(trained, tmp_path):
    p = _encoder_nwb(tmp_path / "derived.nwb", trained)
    assert load_encoder_nwb(p).unit_ids.tolist() == trained.unit_ids.tolist()


def test_nwb_encoder_with_an_external_link_is_refused(trained, tmp_path):
    import h5py

    p = _encoder_nwb(tmp_path / "derived.nwb", trained)
    with h5py.File(p, "r+") as f:
        f["acquisition/x"] = h5py.ExternalLink("/etc/passwd", "/")
    with pytest.raises(NeurratorError, match=f"^{p}: /acquisition/x is an external link"):
        load_encoder_nwb(p)


def test_nwb_encoder_with_lying_config_is_refused(trained, tmp_path, no_tensor_load):
    import h5py

    p = _encoder_nwb(tmp_path / "derived.nwb", trained)
    with h5py.File(p, "r+") as f:
        (name,) = [k for k in f["processing/neurrator"] if f["processing/neurrator"][k].attrs.get("neurodata_type")
                   == "EncoderCheckpoint"]
        group = f["processing/neurrator"][name]
        config = json.loads(group["config"][()])
        config["encoder"]["n_latents"] = 10**7
        del group["config"]
        group.create_dataset("config", data=json.dumps(config), dtype=h5py.string_dtype())
    with pytest.raises(NeurratorError, match=f"^{p}: encoder config n_latents=10000000 is outside"):
        load_encoder_nwb(p)


@pytest.mark.parametrize("attr, value", [("backbone_layer", -1), ("backbone_id", "llava"), ("dim", 1024)])
def test_nwb_encoder_whose_attributes_disagree_with_its_metadata_is_refused(trained, tmp_path, no_tensor_load,
                                                                           attr, value):
    import h5py

    p = _encoder_nwb(tmp_path / "derived.nwb", trained)
    with h5py.File(p, "r+") as f:
        (name,) = [k for k in f["processing/neurrator"] if f["processing/neurrator"][k].attrs.get("neurodata_type")
                   == "EncoderCheckpoint"]
        f["processing/neurrator"][name].attrs[attr] = value
    with pytest.raises(NeurratorError, match=f"^{p}: EncoderCheckpoint {attr}=.* disagrees with its metadata"):
        load_encoder_nwb(p)


# -- regular files inside the folder only (issue 29) --------------------------------------------------


@pytest.mark.parametrize("name", ["config.json", "weights.safetensors", "metadata.json"])
def test_a_link_out_of_the_folder_is_refused(folder, tmp_path, name, no_tensor_load):
    """Even a link to the genuine file elsewhere: only regular files inside the folder are read."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / name).rename(elsewhere / name)
    (folder / name).symlink_to(elsewhere / name)
    msg = refused(folder, name, "symbolic link")
    assert msg.startswith(str(folder / name))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["config.json", "weights.safetensors"])
def test_a_fifo_in_the_folder_is_refused_without_blocking(folder, name, no_tensor_load):
    (folder / name).unlink()
    os.mkfifo(folder / name)  # opening it for reading the usual way would wait for a writer forever
    refused(folder, name, "FIFO")


def test_a_device_in_the_folder_is_refused(folder, no_tensor_load):
    (folder / "weights.safetensors").unlink()
    (folder / "weights.safetensors").symlink_to("/dev/zero")
    refused(folder, "weights.safetensors", "symbolic link")


@pytest.mark.slow
def test_cli_refuses_a_hostile_encoder_folder_in_one_line(folder, tmp_path, small_sim):
    from _helpers import FAST_FLAGS, assert_one_line_error, run_cli, sha256

    (folder / "metadata.json").unlink()
    os.mkfifo(folder / "metadata.json")
    before = sha256(small_sim)
    out = tmp_path / "out"
    proc = run_cli("narrate", str(small_sim), "--out", str(out), "--encoder", str(folder), *FAST_FLAGS)
    assert_one_line_error(proc, f"Error: {folder / 'metadata.json'}: is a FIFO")
    assert "internal error" not in proc.stderr
    assert sha256(small_sim) == before and not (out.exists() and any(out.rglob("*")))



def test_bank_rank_beyond_the_linear_rank_is_refused(folder, no_tensor_load):
    """``bank_rank`` (issue 28: a blend bank kept as basis coefficients) is checked like every size."""
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["bank_rank"] = config["encoder"]["linear_rank"] + 1
    _rewrite(folder, config=config)
    refused(folder, "config.json", "bank_rank must be in 0..linear_rank")


@pytest.mark.parametrize("key, value, words", [("gram_rank", 10**9, "gram_rank=1000000000 is outside"),
                                               ("window_dtype", "float64", "window_dtype must be one of")])
def test_a_bad_gram_rank_or_window_dtype_is_refused(folder, no_tensor_load, key, value, words):
    """The factored Gram's rank and the window bank's dtype (issue 28) are checked like every field."""
    config = json.loads((folder / "config.json").read_text())
    config["encoder"][key] = value
    _rewrite(folder, config=config)
    refused(folder, "config.json", words)
