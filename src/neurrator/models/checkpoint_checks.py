"""Checks of an untrusted encoder checkpoint before anything large is allocated; nothing is ever unpickled.

Order (`neurrator.models.checkpoint` calls these): regular files inside the folder only (a symbolic link, FIFO
or device is refused by `neurrator.io.folders.open_regular_file` before any read) -> file sizes (`MAX_JSON_BYTES`) -> the config's types and
sizes (`check_encoder_config`: every size within `CONFIG_BOUNDS`, then the model built on PyTorch's
``meta`` device, which allocates nothing, must stay under `MAX_PARAMETER_BYTES`) -> the weights file's
size against what that config needs -> sha256 -> the safetensors header (`check_safetensors_header`:
length, JSON, exactly the expected tensor names, dtypes, shapes and contiguous offsets) -> the
metadata's claims against the config (`check_metadata`) -> only then the tensors are read.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from neurrator.errors import NeurratorError
from neurrator.models.encoder import EncoderConfig, SpikeEncoder
from neurrator.models.training import TrainConfig

__all__ = ["CONFIG_BOUNDS", "MAX_HEADER_BYTES", "MAX_JSON_BYTES", "MAX_PARAMETER_BYTES", "check_encoder_config",
           "check_metadata", "check_safetensors_header", "expected_state"]

#: Largest config.json / metadata.json accepted.
MAX_JSON_BYTES = 64 * 2**20
#: Largest safetensors header accepted (safetensors itself allows 100 MB).
MAX_HEADER_BYTES = 16 * 2**20
#: Largest encoder accepted, parameters and buffers together (the default encoder is a few MB).
MAX_PARAMETER_BYTES = 8 * 2**30
#: Upper bounds of the EncoderConfig sizes (far above any real encoder).
CONFIG_BOUNDS: dict[str, int] = {
    "n_units": 300_000, "n_patches": 16_384, "dim": 16_384, "window_bins": 10_000, "n_sessions": 100_000,
    "d_model": 16_384, "n_heads": 1_024, "n_latents": 16_384, "depth": 256, "out_components": 16_384,
    "linear_rank": 65_536, "linear_pool": 10_000, "subset_ridge": 65_536, "bank_frames": 1_000_000,
    "bank_rank": 65_536, "gram_rank": 65_536,
    "window_bank": 100_000_000,
}
_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _sizes(enc: dict, source: str) -> None:
    for name, bound in CONFIG_BOUNDS.items():
        v = enc.get(name)
        if v is None and name in ("out_components", "n_units", "n_patches", "dim"):
            continue
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise NeurratorError(source, f"encoder config {name}={v!r} is not an integer")
        if not 0 <= v <= bound:
            raise NeurratorError(source, f"encoder config {name}={v} is outside 0..{bound}; refusing an "
                                 "encoder this large (a hostile or corrupt checkpoint?)")
    for name in ("mlp_ratio", "dropout"):
        v = enc.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 64):
            raise NeurratorError(source, f"encoder config {name}={v!r} is not a number in 0..64")


def expected_state(enc_config) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, safetensors dtype) of the state dict a `SpikeEncoder(config=enc_config)` has (no allocation)."""
    import torch


    names = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
    with torch.device("meta"):
        model = SpikeEncoder(config=enc_config)
    out = {}
    for k, v in model.state_dict().items():
        dt = names.get(v.dtype, str(v.dtype))
        if v.is_floating_point():
            dt = "F32"  # checkpoint_payload stores every float tensor as float32
        out[k] = (tuple(v.shape), dt)
    return out


def _state_bytes(state: dict[str, tuple[tuple[int, ...], str]]) -> int:
    total = 0
    for shape, dt in state.values():
        n = 1
        for s in shape:
            n *= int(s)
        total += n * _DTYPES.get(dt, 8)
    return total


def check_encoder_config(config: Any, *, source: str):
    """config.json's content -> (EncoderConfig, TrainConfig, expected state, expected weight bytes), or NeurratorError."""
    if not isinstance(config, dict) or not isinstance(config.get("encoder"), dict) \
            or not isinstance(config.get("train"), dict):
        raise NeurratorError(source, "encoder config is not {'architecture', 'encoder': {...}, 'train': {...}}")
    _sizes(config["encoder"], source)
    # fields added after a checkpoint was written: their old behaviour (no extra buffers)
    for key, old_default in (("subset_ridge", 0), ("blend", False), ("window_dtype", "int16")):
        config["encoder"].setdefault(key, old_default)
    try:
        enc = EncoderConfig(**config["encoder"])
        tcfg = TrainConfig(**config["train"])
    except (ValueError, KeyError, TypeError) as e:
        raise NeurratorError(source, f"unreadable encoder config: {e}") from None
    if enc.n_units is None or enc.n_patches is None or enc.dim is None:
        raise NeurratorError(source, "encoder config lacks n_units, n_patches or dim")
    try:
        state = expected_state(enc)
    except Exception as e:  # noqa: BLE001 - a config the model cannot be built from
        raise NeurratorError(source, f"encoder config cannot build a SpikeEncoder ({type(e).__name__}: {e})") from None
    nbytes = _state_bytes(state)
    if nbytes > MAX_PARAMETER_BYTES:
        raise NeurratorError(source, f"encoder config describes {nbytes / 2**30:.3g} GiB of weights, more than "
                             f"the {MAX_PARAMETER_BYTES / 2**30:.3g} GiB limit; refusing it")
    return enc, tcfg, state, nbytes


def check_safetensors_header(head: bytes, total_size: int, state: dict, *, source: str) -> None:
    """Validate a safetensors file's header (``head``: at least its first 8 + header bytes) against ``state``.

    ``total_size`` is the whole file's length. Refuses a header that is too long, not JSON, or whose tensors
    differ in name, dtype or shape from ``state`` or whose offsets do not tile the data exactly.
    """
    if total_size < 8 or len(head) < 8:
        raise NeurratorError(source, "weights are not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES or n > total_size - 8:
        raise NeurratorError(source, f"weights' safetensors header claims {n} bytes (file {total_size} bytes, limit "
                             f"{MAX_HEADER_BYTES}): not a safetensors file, or a hostile one")
    if len(head) < 8 + n:
        raise NeurratorError(source, "weights' safetensors header is truncated")
    try:
        header = json.loads(head[8 : 8 + n])
    except ValueError:
        raise NeurratorError(source, "weights are not a safetensors file (header is not JSON; a pickle?)") from None
    if not isinstance(header, dict):
        raise NeurratorError(source, "weights' safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    if set(header) != set(state):
        extra, missing = sorted(set(header) - set(state)), sorted(set(state) - set(header))
        raise NeurratorError(source, f"weights do not fit the encoder config: unexpected tensors {extra[:3]}, "
                             f"missing {missing[:3]}")
    spans = []
    for name, info in header.items():
        shape, dt = state[name]
        try:
            got_shape = tuple(int(s) for s in info["shape"])
            got_dt, (a, b) = info["dtype"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise NeurratorError(source, f"weights' header entry {name!r} is malformed") from None
        if got_shape != shape or got_dt != dt:
            raise NeurratorError(source, f"weights tensor {name!r} is {got_dt}{list(got_shape)}; the encoder config "
                                 f"needs {dt}{list(shape)}")
        size = _DTYPES[dt]
        for s in shape:
            size *= s
        if not (isinstance(a, int) and isinstance(b, int)) or b - a != size:
            raise NeurratorError(source, f"weights tensor {name!r} has offsets {a}..{b} for {size} bytes")
        spans.append((a, b))
    spans.sort()
    pos = 0
    for a, b in spans:
        if a != pos:
            raise NeurratorError(source, "weights' tensors overlap or leave gaps (a hostile or corrupt file)")
        pos = b
    if 8 + n + pos != total_size:
        raise NeurratorError(source, f"weights file is {total_size} bytes; its header describes {8 + n + pos}")


_SPEC_TYPES = {"backbone_id": str, "layer": int, "n_patches": int, "dim": int, "preprocessing": str, "weights": str}


def _check_target_spec(spec: Any, enc, *, source: str) -> None:
    if spec is None:
        raise NeurratorError(source, "checkpoint metadata has no target_spec: which backbone's patch tokens the "
                             "encoder predicts is unknown, so it cannot be checked or written back; retrain it")
    if not isinstance(spec, dict):
        raise NeurratorError(source, "metadata target_spec is not a JSON object")
    for key, kind in _SPEC_TYPES.items():
        v = spec.get(key, "" if key == "weights" else None)
        if isinstance(v, bool) or not isinstance(v, kind):
            what = "an integer" if kind is int else "a string"
            raise NeurratorError(source, f"metadata target_spec {key}={v!r} is not {what}")
    if not spec["backbone_id"].strip():
        raise NeurratorError(source, "metadata target_spec backbone_id is empty")
    if not -1024 <= spec["layer"] <= 1024:
        raise NeurratorError(source, f"metadata target_spec layer={spec['layer']} is not a hidden-state index")
    if spec["n_patches"] != enc.n_patches or spec["dim"] != enc.dim:
        raise NeurratorError(source, f"metadata target_spec ({spec['n_patches']} x {spec['dim']}) does "
                             f"not match the encoder config ({enc.n_patches} x {enc.dim})")


def check_metadata(meta: Any, enc, *, source: str) -> None:
    """metadata.json's claims must agree with the config: unit ids, target spec, holdout frames, types.

    The unit ids and the target spec are required: without them an encoder cannot be matched to a
    session's units or to a backbone (`neurrator.models.loading.check_encoder_session` does that next).
    """
    if not isinstance(meta, dict):
        raise NeurratorError(source, "checkpoint metadata is not a JSON object")
    ids = meta.get("unit_ids", [])
    if not isinstance(ids, list) or not all(isinstance(u, int) and not isinstance(u, bool) for u in ids):
        raise NeurratorError(source, "metadata unit_ids is not a list of integers")
    if len(ids) != enc.n_units:
        raise NeurratorError(source, f"metadata lists {len(ids)} unit ids; the encoder config has {enc.n_units} units")
    if len(set(ids)) != len(ids):
        raise NeurratorError(source, "metadata unit_ids has duplicates")
    _check_target_spec(meta.get("target_spec"), enc, source=source)
    if not _counts(meta.get("holdout_frames", [])):
        raise NeurratorError(source, "metadata holdout_frames is not a list of non-negative integers")
    for key in ("seed", "best_step"):
        v = meta.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int):
            raise NeurratorError(source, f"metadata {key}={v!r} is not an integer")
    stim = meta.get("stimulus")
    if stim is not None and not isinstance(stim, str):
        raise NeurratorError(source, f"metadata stimulus={stim!r} is not a string")
    if not isinstance(meta.get("history", []), list) or not isinstance(meta.get("extra", {}), dict):
        raise NeurratorError(source, "metadata history must be a list and extra an object")
    reps = meta.get("extra", {}).get("repeats", {"train": [], "val": []})  # read by `calibrate_blend`
    if not (isinstance(reps, dict) and _counts(reps.get("train")) and _counts(reps.get("val"))):
        raise NeurratorError(source, "metadata extra.repeats is not {train, val} lists of non-negative integers")


def _counts(v: Any) -> bool:
    """True for a list of non-negative integers (not booleans)."""
    return isinstance(v, list) and all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in v)
