"""Registered subclasses of the generated classes for the types that need behaviour.

Each subclass keeps the generated constructor signature (so pynwb's default ObjectMapper builds it on
read) and adds argument checks and accessors only. A file written with these classes reads back with
pynwb alone as the generated classes, with the same fields.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
from hdmf.container import Data
from hdmf.data_utils import AbstractDataChunkIterator, DataIO
from hdmf.utils import docval, get_docval
from pynwb import get_class, register_class

from ndx_neurrator import NAMESPACE

_SHA256 = re.compile(r"[0-9a-f]{64}")


class WeightsChecksumError(ValueError):
    """Stored weight bytes do not hash to the SHA-256 recorded next to them."""


def _where(container) -> str:
    """'EncoderCheckpoint 'enc' in /path/file.nwb' for error messages."""
    label = f"{type(container).__name__} '{container.name}'"
    source = getattr(container, "container_source", None)
    return f"{label} in {source}" if source else label


def _unwrap(data):
    """The array-like or iterator inside an H5DataIO/DataIO wrapper or a Data container."""
    while isinstance(data, (DataIO, Data)):
        data = data.data
    return data


def _dtype_and_shape(data) -> tuple[np.dtype | None, tuple | None]:
    """dtype and shape of an array, h5py dataset or data chunk iterator (None when unknown)."""
    data = _unwrap(data)
    if isinstance(data, AbstractDataChunkIterator):
        dtype = data.dtype
        return (np.dtype(dtype) if dtype is not None else None), tuple(data.maxshape)
    if hasattr(data, "dtype") and hasattr(data, "shape"):
        return np.dtype(data.dtype), tuple(data.shape)
    arr = np.asarray(data)
    return arr.dtype, arr.shape


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "shape") and not isinstance(value, str):  # an h5py scalar dataset
        value = value[()]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return str(value)


def parse_json_object(what: str, field: str, raw: str) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or a ValueError naming ``what`` and ``field``."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: {field} is not valid JSON text ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: {field} must be a JSON object, got {type(value).__name__}")
    return value


def _json_object(container, field: str) -> dict[str, Any]:
    return parse_json_object(_where(container), field, _text(getattr(container, field)))


_WeightsBase = get_class("SafetensorsWeights", NAMESPACE)


@register_class("SafetensorsWeights", NAMESPACE)
class SafetensorsWeights(_WeightsBase):
    """Weights as safetensors bytes (uint8, 1-D) with their SHA-256; build with ``weights_from_bytes``."""

    @docval(*get_docval(_WeightsBase.__init__))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise ValueError(
                f"SafetensorsWeights '{self.name}': sha256 must be 64 lower-case hex digits, got {self.sha256!r}"
            )
        dtype, shape = _dtype_and_shape(self.data)
        if dtype != np.uint8 or shape is None or len(shape) != 1:
            raise ValueError(
                f"SafetensorsWeights '{self.name}': data must be a 1-D uint8 array of bytes, "
                f"got dtype {dtype} with shape {shape}"
            )

    def get_bytes(self, *, verify: bool = True) -> bytes:
        """The stored bytes; with ``verify`` (default) raise ``WeightsChecksumError`` unless they match sha256."""
        raw = np.asarray(_unwrap(self.data)[:], dtype=np.uint8).tobytes()
        if verify:
            actual = hashlib.sha256(raw).hexdigest()
            if actual != self.sha256:
                owner = _where(self.parent) if self.parent is not None else _where(self)
                raise WeightsChecksumError(
                    f"{owner}: weights '{self.name}' fail their checksum: the sha256 attribute says "
                    f"{self.sha256} but the {len(raw)} stored bytes hash to {actual}; "
                    "the weights are corrupt or were changed after writing"
                )
        return raw


class _HasWeights:
    """Accessors shared by EncoderCheckpoint and SparseAutoencoder."""

    def get_weights_bytes(self, *, verify: bool = True) -> bytes:
        """Safetensors bytes of the weights, checked against their SHA-256 unless ``verify=False``.

        Raises ``WeightsChecksumError`` (a ValueError) naming this container when the bytes do not match.
        Load the tensors with ``safetensors.numpy.load(...)`` or ``safetensors.torch.load(...)``.
        """
        weights = self.weights
        if isinstance(weights, SafetensorsWeights):
            return weights.get_bytes(verify=verify)
        # Read without the registered class (should not happen once the package is imported).
        return SafetensorsWeights.get_bytes(weights, verify=verify)

    def get_config(self) -> dict[str, Any]:
        """The configuration as a dict (parsed from its JSON text)."""
        return _json_object(self, "config")


_EncoderBase = get_class("EncoderCheckpoint", NAMESPACE)


@register_class("EncoderCheckpoint", NAMESPACE)
class EncoderCheckpoint(_HasWeights, _EncoderBase):
    """A trained encoder; build with ``create_encoder_checkpoint``, read weights with ``get_weights_bytes()``."""

    @docval(*get_docval(_EncoderBase.__init__))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for field in ("n_patches", "dim"):
            value = getattr(self, field)
            if int(value) <= 0:
                raise ValueError(f"{_where(self)}: {field} must be a positive integer, got {value!r}")
        for field in ("config", "training_metrics", "validation_metrics", "software_versions"):
            _json_object(self, field)

    def get_training_metrics(self) -> dict[str, Any]:
        return _json_object(self, "training_metrics")

    def get_validation_metrics(self) -> dict[str, Any]:
        return _json_object(self, "validation_metrics")

    def get_software_versions(self) -> dict[str, Any]:
        return _json_object(self, "software_versions")

    @property
    def target_space(self) -> dict[str, Any]:
        """backbone_id, layer, n_patches, dim, preprocessing (the fields of neurrator's TargetSpec)."""
        return {
            "backbone_id": _text(self.backbone_id),
            "layer": int(self.backbone_layer),
            "n_patches": int(self.n_patches),
            "dim": int(self.dim),
            "preprocessing": _text(self.preprocessing),
        }


_SAEBase = get_class("SparseAutoencoder", NAMESPACE)


@register_class("SparseAutoencoder", NAMESPACE)
class SparseAutoencoder(_HasWeights, _SAEBase):
    """A sparse autoencoder with a concept label per latent; build with ``create_sparse_autoencoder``."""

    @docval(*get_docval(_SAEBase.__init__))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _json_object(self, "config")
        n_labels, n_sources = len(self.concept_labels), len(self.concept_label_sources)
        if n_labels != n_sources:
            raise ValueError(
                f"{_where(self)}: concept_labels has {n_labels} entries but concept_label_sources has {n_sources}; "
                "give one source per latent"
            )


_PredictionsBase = get_class("PatchPredictions", NAMESPACE)


@register_class("PatchPredictions", NAMESPACE)
class PatchPredictions(_PredictionsBase):
    """Predicted patch tokens (n_windows, n_patches, dim) float32; build with ``create_patch_predictions``."""

    @docval(*get_docval(_PredictionsBase.__init__))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        dtype, shape = _dtype_and_shape(self.data)
        if dtype != np.float32:
            raise ValueError(
                f"{_where(self)}: data must be float32 (n_windows, n_patches, dim), got dtype {dtype}"
                + ("; float16 is not allowed in NWB/DANDI" if dtype == np.float16 else "; cast with .astype(np.float32)")
            )
        if shape is None or len(shape) != 3:
            raise ValueError(f"{_where(self)}: data must have shape (n_windows, n_patches, dim), got shape {shape}")
        n_windows = shape[0]
        for field in ("timestamps", "frame", "unit_subset"):
            _, field_shape = _dtype_and_shape(getattr(self, field))
            if field_shape is None or len(field_shape) != 1:
                raise ValueError(f"{_where(self)}: {field} must be 1-D (n_windows,), got shape {field_shape}")
            if n_windows is not None and field_shape[0] != n_windows:
                raise ValueError(
                    f"{_where(self)}: {field} has {field_shape[0]} entries but data has {n_windows} windows"
                )
        if self.encoder is not None and (int(self.encoder.n_patches), int(self.encoder.dim)) != tuple(shape[1:]):
            raise ValueError(
                f"{_where(self)}: data has {shape[1]} patches x {shape[2]} dims but encoder '{self.encoder.name}' "
                f"predicts {int(self.encoder.n_patches)} x {int(self.encoder.dim)}"
            )

    @property
    def n_windows(self) -> int:
        """Number of windows (taken from the timestamps, known even while data is an iterator)."""
        return int(_dtype_and_shape(self.timestamps)[1][0])
