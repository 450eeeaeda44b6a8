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

    def get_tensors(self, *, verify: bool = True) -> dict[str, np.ndarray]:
        """The weights as numpy arrays by name (safetensors; checksum verified; nothing is unpickled)."""
        from safetensors.numpy import load

        return load(self.get_weights_bytes(verify=verify))

    def readout_basis(self) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's linear readout as a patch basis: components (k, n_patches, dim), mean (n_patches, dim).

        The space of ``PatchPredictions`` with coefficient_space 'encoder_readout' (see `encoder_readout_basis`).
        """
        t = self.get_tensors()
        missing = [k for k in ("lin_basis", "lin_scale", "target_mean", "target_std") if k not in t]
        if missing:
            raise ValueError(f"{_where(self)}: the weights have no linear readout (missing {', '.join(missing)})")
        return encoder_readout_basis(t["lin_basis"], t["lin_scale"], t["target_mean"], t["target_std"])

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


def encoder_readout_basis(
    lin_basis: np.ndarray, lin_scale: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """neurrator's encoder readout as a basis: (components (k, n_patches, dim), mean (n_patches, dim)) float32.

    The encoder maps a coefficient vector c to ``target_mean + target_std * ((c * lin_scale) @
    lin_basis).reshape(n_patches, dim)``; this folds ``lin_scale`` and ``target_std`` into the rows, so
    ``patches = c @ components + mean``. Rows of ``lin_basis`` that are all zero (unused rank) are dropped.
    """
    basis = np.asarray(lin_basis, dtype=np.float64)
    tmean = np.asarray(target_mean, dtype=np.float64)
    std = np.asarray(target_std, dtype=np.float64)
    scale = np.asarray(lin_scale, dtype=np.float64)
    if tmean.ndim != 2 or basis.ndim != 2 or basis.shape[1] != tmean.size or scale.shape != (basis.shape[0],):
        raise ValueError(
            "encoder readout: need lin_basis (k, n_patches*dim), lin_scale (k,), target_mean (n_patches, dim); "
            f"got {basis.shape}, {scale.shape}, {tmean.shape}"
        )
    if std.shape != (tmean.shape[1],):
        raise ValueError(f"encoder readout: target_std must be (dim,) = ({tmean.shape[1]},), got {std.shape}")
    used = np.any(basis != 0, axis=1)
    rows = (basis[used] * scale[used, None]).reshape(-1, *tmean.shape) * std
    return rows.astype(np.float32), tmean.astype(np.float32)


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


_BasisBase = get_class("PatchBasis", NAMESPACE)


@register_class("PatchBasis", NAMESPACE)
class PatchBasis(_BasisBase):
    """A basis (rank, n_patches, dim) float32 plus mean (n_patches, dim); build with ``create_patch_basis``."""

    @docval(*get_docval(_BasisBase.__init__))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        cdtype, cshape = _dtype_and_shape(self.components)
        mdtype, mshape = _dtype_and_shape(self.mean)
        if cdtype != np.float32 or mdtype != np.float32:
            raise ValueError(f"{_where(self)}: components and mean must be float32, got {cdtype} and {mdtype}")
        if cshape is None or len(cshape) != 3 or mshape is None or tuple(mshape) != tuple(cshape[1:]):
            raise ValueError(
                f"{_where(self)}: components must be (rank, n_patches, dim) and mean (n_patches, dim), "
                f"got {cshape} and {mshape}"
            )

    @property
    def rank(self) -> int:
        return int(_dtype_and_shape(self.components)[1][0])

    def reconstruct(self, coefficients) -> np.ndarray:
        """(n, rank) coefficients -> (n, n_patches, dim) float32 patches: coefficients @ components + mean."""
        comps = np.asarray(_unwrap(self.components)[()], dtype=np.float32)
        mean = np.asarray(_unwrap(self.mean)[()], dtype=np.float32)
        coef = np.asarray(coefficients, dtype=np.float32)
        flat = coef @ comps.reshape(comps.shape[0], -1) + mean.reshape(-1)
        return flat.reshape((coef.shape[0],) + mean.shape).astype(np.float32, copy=False)


_PredictionsBase = get_class("PatchPredictions", NAMESPACE)

_COMPACT_FIELDS = ("coefficients", "relative_mse", "cosine")
#: Where compact coefficients live: a linked PatchBasis, or the linked encoder's own linear readout.
COEFFICIENT_SPACES = ("patch_basis", "encoder_readout")


@register_class("PatchPredictions", NAMESPACE)
class PatchPredictions(_PredictionsBase):
    """Predicted patch tokens, full float32 (``data``) or compact (``coefficients`` in a linked ``basis``).

    Build with ``create_patch_predictions``; read any window with ``get_windows``.
    """

    @docval(*get_docval(_PredictionsBase.__init__))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        compact = self.coefficients is not None
        if (self.data is None) == (not compact):
            raise ValueError(
                f"{_where(self)}: give either data (full float32 patches) or coefficients with a basis, not "
                + ("both" if compact else "neither")
            )
        n_windows = int(_dtype_and_shape(self.timestamps)[1][0]) if self.timestamps is not None else None
        if compact:
            shape = self._check_compact(n_windows)
        else:
            shape = self._check_full("data", self.data)
            n_windows = shape[0] if shape[0] is not None else n_windows
        for field in ("timestamps", "frame", "unit_subset") + (_COMPACT_FIELDS if compact else ()):
            _, field_shape = _dtype_and_shape(getattr(self, field))
            if field_shape is None or (field != "coefficients" and len(field_shape) != 1):
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

    def _check_full(self, field: str, data) -> tuple:
        dtype, shape = _dtype_and_shape(data)
        if dtype != np.float32:
            raise ValueError(
                f"{_where(self)}: {field} must be float32 (n_windows, n_patches, dim), got dtype {dtype}"
                + ("; float16 is not allowed in NWB/DANDI" if dtype == np.float16 else "; cast with .astype(np.float32)")
            )
        if shape is None or len(shape) != 3:
            raise ValueError(f"{_where(self)}: {field} must have shape (n_windows, n_patches, dim), got shape {shape}")
        return shape

    @property
    def space(self) -> str:
        """'patch_basis' (coefficients in ``basis``) or 'encoder_readout' (in the linked encoder's readout)."""
        return _text(self.coefficient_space) if self.coefficient_space is not None else "patch_basis"

    def _check_compact(self, n_windows) -> tuple:
        if self.space not in COEFFICIENT_SPACES:
            raise ValueError(
                f"{_where(self)}: coefficient_space must be one of {COEFFICIENT_SPACES}, got {self.space!r}"
            )
        readout = self.space == "encoder_readout"
        if readout and (self.basis is not None or self.encoder is None):
            raise ValueError(f"{_where(self)}: coefficients in the encoder readout need the encoder and no basis")
        if not readout and self.basis is None:
            raise ValueError(f"{_where(self)}: coefficients need a basis (PatchBasis) to be read back")
        missing = [f for f in _COMPACT_FIELDS if getattr(self, f) is None]
        if missing:
            raise ValueError(f"{_where(self)}: the compact form needs {', '.join(missing)} (the measured error)")
        cdtype, cshape = _dtype_and_shape(self.coefficients)
        if cdtype != np.float32 or cshape is None or len(cshape) != 2 or not (readout or cshape[1] == self.basis.rank):
            wanted = "rank" if readout else str(self.basis.rank)
            raise ValueError(
                f"{_where(self)}: coefficients must be float32 (n_windows, {wanted}) for "
                + ("the encoder readout" if readout else f"basis '{self.basis.name}'") + f", got {cdtype} {cshape}"
            )
        shape = (cshape[0],) + ((int(self.encoder.n_patches), int(self.encoder.dim)) if readout
                                else tuple(_dtype_and_shape(self.basis.mean)[1]))
        if (self.full_windows is None) != (self.full_data is None):
            raise ValueError(f"{_where(self)}: full_windows and full_data come together")
        if self.full_data is not None:
            fshape = self._check_full("full_data", self.full_data)
            idx = np.asarray(_unwrap(self.full_windows)[()])
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or len(idx) != fshape[0] or tuple(fshape[1:]) != shape[1:]:
                raise ValueError(
                    f"{_where(self)}: full_windows must be one integer window index per full_data window "
                    f"({fshape}), got {idx.dtype} {idx.shape}"
                )
            if idx.size and (idx.min() < 0 or idx.max() >= cshape[0]):
                raise ValueError(f"{_where(self)}: full_windows holds windows outside 0..{cshape[0] - 1}")
        return shape

    def readout(self) -> tuple[np.ndarray, np.ndarray]:
        """(components, mean) of the encoder readout, read once (coefficient_space 'encoder_readout')."""
        cached = getattr(self, "_readout_cache", None)
        if cached is None:
            cached = self._readout_cache = self.encoder.readout_basis()
        return cached

    @property
    def is_compact(self) -> bool:
        """True when the windows are stored as coefficients in ``basis`` (not full float32 data)."""
        return self.coefficients is not None

    @property
    def n_windows(self) -> int:
        """Number of windows (taken from the timestamps, known even while data is an iterator)."""
        return int(_dtype_and_shape(self.timestamps)[1][0])

    def get_windows(self, windows=None, *, exact: bool = True) -> np.ndarray:
        """(n, n_patches, dim) float32 patches of ``windows`` (indices; default all).

        Full form: read from ``data``. Compact form: reconstructed from the coefficients, except windows kept
        exactly in ``full_data`` (used when ``exact``). The reconstruction error is in ``relative_mse``/``cosine``.
        """
        idx = np.arange(self.n_windows) if windows is None else np.atleast_1d(np.asarray(windows, dtype=np.int64))
        if not self.is_compact:
            data = _unwrap(self.data)
            return np.stack([np.asarray(data[int(i)], dtype=np.float32) for i in idx]) if len(idx) else np.zeros(
                (0,) + tuple(_dtype_and_shape(data)[1][1:]), np.float32)
        coef = np.asarray(_unwrap(self.coefficients)[()], dtype=np.float32)[idx]
        if self.space == "encoder_readout":
            components, mean = self.readout()
            if coef.shape[1] != components.shape[0]:
                raise ValueError(f"{_where(self)}: {coef.shape[1]} coefficients per window but the encoder "
                                 f"'{self.encoder.name}' has a readout of rank {components.shape[0]}")
            flat = coef @ components.reshape(components.shape[0], -1) + mean.reshape(-1)
            out = flat.reshape((len(idx),) + mean.shape)
        else:
            out = self.basis.reconstruct(coef)
        if exact and self.full_windows is not None:
            full = {int(w): j for j, w in enumerate(np.asarray(_unwrap(self.full_windows)[()]))}
            for k, i in enumerate(idx):
                if int(i) in full:
                    out[k] = np.asarray(_unwrap(self.full_data)[full[int(i)]], dtype=np.float32)
        return out
