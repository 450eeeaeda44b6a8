"""`TrainedEncoder` <-> checkpoint folder (config.json + weights.safetensors + metadata.json), or bytes for NWB.

A folder holds:

- ``config.json``: ``{"architecture": "SpikeEncoder", "encoder": EncoderConfig, "train": TrainConfig}``
- ``weights.safetensors``: the model's state dict (parameters and buffers), float32
- ``metadata.json``: format, versions (neurrator, torch, numpy, python), sha256 of the weights file,
  target spec, stimulus, unit ids, seed, best step, held-out frames, metrics history, extra

The same three pieces, as bytes/strings, are the `CheckpointPayload` that the NWB writer stores in
ndx-neurrator. Never pickle: weights are safetensors only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from neurrator.models.backbones import TargetSpec
from neurrator.models.checkpoint_checks import (
    MAX_HEADER_BYTES,
    MAX_JSON_BYTES,
    check_encoder_config,
    check_metadata,
    check_safetensors_header,
)
from neurrator.models.encoder import EncoderConfig, SpikeEncoder
from neurrator.errors import NeurratorError
from neurrator.models.training import TrainConfig, TrainedEncoder
from neurrator.io.folders import open_regular_file
from neurrator.io.sources import open_source

__all__ = ["ARCHITECTURE", "FORMAT", "CheckpointPayload", "checkpoint_payload", "load_checkpoint", "load_encoder_nwb",
           "save_checkpoint", "trained_from_payload"]

ARCHITECTURE = "SpikeEncoder"
FORMAT = "neurrator-encoder-1"
CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE = "config.json", "weights.safetensors", "metadata.json"


class CheckpointPayload(NamedTuple):
    """A checkpoint as bytes/strings (what ndx-neurrator stores).

    architecture : str; config_json : str; weights : bytes (a safetensors file);
    sha256 : str (hex digest of ``weights``); metadata_json : str.
    """

    architecture: str
    config_json: str
    weights: bytes
    sha256: str
    metadata_json: str


def _versions() -> dict[str, str]:
    import neurrator

    return {"neurrator": neurrator.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def checkpoint_payload(trained: TrainedEncoder) -> CheckpointPayload:
    """Serialise a trained encoder to bytes/strings (no files)."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in trained.model.state_dict().items()}
    weights = save(state, metadata={"format": FORMAT, "architecture": ARCHITECTURE})
    sha = hashlib.sha256(weights).hexdigest()
    config = {"architecture": ARCHITECTURE, "encoder": trained.encoder_config.to_dict(),
              "train": trained.train_config.to_dict()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "architecture": ARCHITECTURE,
        "versions": _versions(),
        "weights_sha256": sha,
        "n_parameters": int(trained.model.n_parameters()),
        "target_spec": None if trained.target_spec is None else trained.target_spec.to_dict(),
        "stimulus": trained.stimulus,
        "unit_ids": [int(u) for u in trained.unit_ids],
        "seed": int(trained.seed),
        "best_step": int(trained.best_step),
        "holdout_frames": [int(f) for f in trained.holdout_frames],
        "history": trained.history,
        "extra": trained.extra,
    }
    return CheckpointPayload(ARCHITECTURE, json.dumps(config, indent=2, sort_keys=True), weights, sha,
                             json.dumps(meta, indent=2, sort_keys=True))


def trained_from_payload(payload: CheckpointPayload, *, device: str | torch.device = "cpu",
                         source: str = "checkpoint") -> TrainedEncoder:
    """Rebuild a `TrainedEncoder`, verifying the weights' sha256; ``source`` names it in errors.

    Nothing large is allocated before the config's sizes, the safetensors header and the metadata are
    checked against each other (`neurrator.models.checkpoint_checks`); nothing is unpickled.
    """
    from safetensors.torch import load

    if payload.architecture != ARCHITECTURE:
        raise NeurratorError(source, f"architecture {payload.architecture!r} is not {ARCHITECTURE!r}")
    for what, text in (("config", payload.config_json), ("metadata", payload.metadata_json)):
        if len(text) > MAX_JSON_BYTES:
            raise NeurratorError(source, f"encoder {what} is {len(text)} bytes, more than {MAX_JSON_BYTES}")
    try:
        config = json.loads(payload.config_json)
        meta = json.loads(payload.metadata_json)
    except (ValueError, RecursionError) as e:
        raise NeurratorError(source, f"unreadable encoder config or metadata: {type(e).__name__}: {e}") from None
    enc, tcfg, state_spec, _ = check_encoder_config(config, source=source)
    check_metadata(meta, enc, source=source)
    sha = hashlib.sha256(payload.weights).hexdigest()
    if sha != payload.sha256:
        raise NeurratorError(source, f"weights sha256 {sha[:16]}... does not match the recorded "
                             f"{payload.sha256[:16]}...: the weights are corrupt or were modified")
    if meta.get("weights_sha256", sha) != sha:
        raise NeurratorError(source, "metadata's weights_sha256 does not match the weights")
    check_safetensors_header(payload.weights[: 8 + MAX_HEADER_BYTES], len(payload.weights), state_spec,
                             source=source)
    try:
        state = load(payload.weights)
    except Exception as e:
        raise NeurratorError(source, f"weights are not a readable safetensors file: {e}") from None
    model = SpikeEncoder(config=enc)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise NeurratorError(source, f"weights do not fit the encoder config: {str(e).splitlines()[0]}") from None
    model = model.to(device).eval()
    spec = meta.get("target_spec")
    try:
        target_spec = None if spec is None else TargetSpec.from_dict(spec)
    except (KeyError, TypeError) as e:
        raise NeurratorError(source, f"metadata target_spec is incomplete: {e}") from None
    return TrainedEncoder(
        model=model, encoder_config=enc, train_config=tcfg, history=list(meta.get("history", [])),
        unit_ids=np.asarray(meta.get("unit_ids", []), dtype=np.int64),
        target_spec=target_spec, stimulus=meta.get("stimulus"),
        seed=int(meta.get("seed", 0)), best_step=int(meta.get("best_step", 0)),
        holdout_frames=np.asarray(meta.get("holdout_frames", []), dtype=np.int64), extra=dict(meta.get("extra", {})),
    )


def save_checkpoint(trained: TrainedEncoder, folder: str | os.PathLike) -> Path:
    """Write the checkpoint folder (created if needed; files replaced atomically). Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = checkpoint_payload(trained)
    for name, data in ((WEIGHTS_FILE, p.weights), (CONFIG_FILE, p.config_json.encode()),
                       (METADATA_FILE, p.metadata_json.encode())):
        tmp = folder / f".{name}.tmp{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)
    return folder


def load_checkpoint(folder: str | os.PathLike, *, device: str | torch.device = "cpu") -> TrainedEncoder:
    """Read a checkpoint folder; NeurratorError naming the file when one is missing, corrupt, altered or hostile.

    Only regular files inside the folder are read (a symbolic link, FIFO or device in their place is refused
    before anything is read). File sizes are checked before reading: config.json and metadata.json at most
    `MAX_JSON_BYTES`, the weights exactly what the (bounded) config needs plus a bounded header. Only ``weights.safetensors``
    is read as weights; any other file in the folder (``*.pt``, ``*.bin``, pickles) is ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NeurratorError(folder, "encoder checkpoint folder not found")
    paths = {name: folder / name for name in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)}
    for f in paths.values():
        if not os.path.lexists(f):
            raise NeurratorError(f, "missing from the encoder checkpoint folder")
    with contextlib.ExitStack() as stack:
        # regular files inside the folder only: a symbolic link, FIFO or device is refused before any read
        files = {name: stack.enter_context(open_regular_file(path)) for name, path in paths.items()}
        sizes = {name: os.fstat(fh.fileno()).st_size for name, fh in files.items()}
        texts = {}
        for name in (CONFIG_FILE, METADATA_FILE):
            if sizes[name] > MAX_JSON_BYTES:
                raise NeurratorError(paths[name], f"is {sizes[name]} bytes, more than the {MAX_JSON_BYTES} accepted")
            try:
                texts[name] = files[name].read(MAX_JSON_BYTES + 1).decode()
                json.loads(texts[name])
            except (ValueError, RecursionError) as e:
                raise NeurratorError(paths[name], f"not valid JSON: {e}") from None
        config = json.loads(texts[CONFIG_FILE])
        _, _, _, nbytes = check_encoder_config(config, source=str(paths[CONFIG_FILE]))
        size = sizes[WEIGHTS_FILE]
        if size > nbytes + 8 + MAX_HEADER_BYTES:
            raise NeurratorError(paths[WEIGHTS_FILE], f"is {size} bytes; the encoder config needs {nbytes} bytes of "
                                 "weights: not this encoder's weights (refusing to read it)")
        meta = json.loads(texts[METADATA_FILE])
        recorded = meta.get("weights_sha256") if isinstance(meta, dict) else None
        if not recorded or not isinstance(recorded, str):
            raise NeurratorError(paths[METADATA_FILE], "no weights_sha256 recorded")
        weights = files[WEIGHTS_FILE].read(nbytes + 8 + MAX_HEADER_BYTES + 1)
    actual = hashlib.sha256(weights).hexdigest()
    if actual != recorded:
        raise NeurratorError(paths[WEIGHTS_FILE], f"sha256 {actual[:16]}... does not match metadata.json's "
                             f"{recorded[:16]}...: the file is corrupt or was modified")
    payload = CheckpointPayload(str(config.get("architecture", "")), texts[CONFIG_FILE], weights, recorded,
                                texts[METADATA_FILE])
    return trained_from_payload(payload, device=device, source=str(folder))


def load_encoder_nwb(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> TrainedEncoder:
    """The encoder stored in a neurrator NWB file's ``EncoderCheckpoint``, opened like any untrusted input.

    The file goes through `neurrator.io.sources.open_source` (so `neurrator.io.h5safety.check_hdf5_file` refuses
    external links, virtual/external data and memory bombs before pynwb reads it); the weights' sha256
    is verified; then `trained_from_payload` checks config, header and metadata before allocating.
    """
    import ndx_neurrator  # noqa: F401 - registers the classes with the checksum-verifying accessors


    path = Path(path)
    with open_source(str(path)) as nwbfile:
        module = nwbfile.processing.get("neurrator")
        found = [c for c in (module.data_interfaces.values() if module else []) if type(c).__name__ == "EncoderCheckpoint"]
        if not found:
            raise NeurratorError(path, "holds no neurrator EncoderCheckpoint (processing/neurrator)")
        ckpt = found[0]
        try:
            weights = ckpt.get_weights_bytes(verify=True)
            config = json.loads(ckpt.config)
        except ValueError as err:
            raise NeurratorError(path, f"EncoderCheckpoint: {err}") from None
        if not isinstance(config, dict):
            raise NeurratorError(path, "EncoderCheckpoint config is not a JSON object")
        meta = config.pop("metadata", {})
        _check_nwb_attributes(ckpt, meta, source=str(path))
        payload = CheckpointPayload(str(ckpt.architecture), json.dumps(config), weights, str(ckpt.weights.sha256),
                                    json.dumps(meta))
        return trained_from_payload(payload, device=device, source=str(path))


def _check_nwb_attributes(ckpt, meta: Any, *, source: str) -> None:
    """The EncoderCheckpoint's typed attributes (what pynwb users read) must say what its metadata says."""
    spec = meta.get("target_spec") if isinstance(meta, dict) else None
    if not isinstance(spec, dict):
        return  # check_metadata refuses it with the reason
    pairs = {"backbone_id": ckpt.backbone_id, "layer": ckpt.backbone_layer, "n_patches": ckpt.n_patches,
             "dim": ckpt.dim, "preprocessing": ckpt.preprocessing}
    for key, attr in pairs.items():
        want = spec.get(key)
        got = attr.item() if hasattr(attr, "item") else attr
        if isinstance(got, bytes):
            got = got.decode()
        if want is not None and got != want:
            attr_name = "backbone_layer" if key == "layer" else key
            raise NeurratorError(source, f"EncoderCheckpoint {attr_name}={got!r} disagrees with its metadata's "
                                 f"target_spec {key}={want!r}: the file is inconsistent (edited?)")
