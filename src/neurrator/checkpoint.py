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

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from neurrator.backbones import TargetSpec
from neurrator.encoder import EncoderConfig, SpikeEncoder
from neurrator.errors import NeurratorError
from neurrator.training import TrainConfig, TrainedEncoder

__all__ = ["ARCHITECTURE", "FORMAT", "CheckpointPayload", "checkpoint_payload", "load_checkpoint",
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
    """Rebuild a `TrainedEncoder`, verifying the weights' sha256; ``source`` names it in errors."""
    from safetensors.torch import load

    if payload.architecture != ARCHITECTURE:
        raise NeurratorError(source, f"architecture {payload.architecture!r} is not {ARCHITECTURE!r}")
    sha = hashlib.sha256(payload.weights).hexdigest()
    if sha != payload.sha256:
        raise NeurratorError(source, f"weights sha256 {sha[:16]}... does not match the recorded "
                             f"{payload.sha256[:16]}...: the weights are corrupt or were modified")
    try:
        config = json.loads(payload.config_json)
        meta = json.loads(payload.metadata_json)
        enc = EncoderConfig(**config["encoder"])
        tcfg = TrainConfig(**config["train"])
    except (ValueError, KeyError, TypeError) as e:
        raise NeurratorError(source, f"unreadable encoder config or metadata: {e}") from None
    if meta.get("weights_sha256", sha) != sha:
        raise NeurratorError(source, "metadata's weights_sha256 does not match the weights")
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
    return TrainedEncoder(
        model=model, encoder_config=enc, train_config=tcfg, history=list(meta.get("history", [])),
        unit_ids=np.asarray(meta.get("unit_ids", []), dtype=np.int64),
        target_spec=None if spec is None else TargetSpec.from_dict(spec), stimulus=meta.get("stimulus"),
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
    """Read a checkpoint folder; NeurratorError naming the file when one is missing, corrupt or altered."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NeurratorError(folder, "encoder checkpoint folder not found")
    files = {}
    for name in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE):
        f = folder / name
        if not f.is_file():
            raise NeurratorError(f, "missing from the encoder checkpoint folder")
        files[name] = f.read_bytes()
    try:
        config = json.loads(files[CONFIG_FILE])
    except ValueError as e:
        raise NeurratorError(folder / CONFIG_FILE, f"not valid JSON: {e}") from None
    try:
        meta = json.loads(files[METADATA_FILE])
    except ValueError as e:
        raise NeurratorError(folder / METADATA_FILE, f"not valid JSON: {e}") from None
    recorded = meta.get("weights_sha256")
    if not recorded:
        raise NeurratorError(folder / METADATA_FILE, "no weights_sha256 recorded")
    actual = hashlib.sha256(files[WEIGHTS_FILE]).hexdigest()
    if actual != recorded:
        raise NeurratorError(folder / WEIGHTS_FILE, f"sha256 {actual[:16]}... does not match metadata.json's "
                             f"{recorded[:16]}...: the file is corrupt or was modified")
    payload = CheckpointPayload(str(config.get("architecture", "")), files[CONFIG_FILE].decode(),
                                files[WEIGHTS_FILE], recorded, files[METADATA_FILE].decode())
    return trained_from_payload(payload, device=device, source=str(folder))
