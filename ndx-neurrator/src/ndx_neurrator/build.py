"""Build ndx-neurrator containers from numpy arrays and plain Python values.

Each ``create_<thing>`` function checks its arguments (shapes, dtypes, lengths, row indices) and
raises ``ValueError`` naming the container and the problem. Nothing here opens a file. Put the
results in the file's ``neurrator`` processing module: ``get_neurrator_module(nwbfile).add(container)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTable, DynamicTableRegion, VectorData, VectorIndex
from hdmf.data_utils import AbstractDataChunkIterator, DataChunkIterator, DataIO
from pynwb import NWBFile, ProcessingModule

import ndx_neurrator as _ndx
from ndx_neurrator._classes import (
    COEFFICIENT_SPACES,
    EncoderCheckpoint,
    PatchBasis,
    PatchPredictions,
    SafetensorsWeights,
    SparseAutoencoder,
    _dtype_and_shape,
    parse_json_object,
)

MODULE_NAME = "neurrator"
SUBSET_KINDS = ("all", "region", "cell_type", "local_population", "random", "single_unit")
SAE_SCORE_COLUMNS = ("concept_agreement", "latent_profile_similarity", "reconstruction_score")


def get_neurrator_module(nwbfile: NWBFile, *, description: str | None = None) -> ProcessingModule:
    """The file's ``processing/neurrator`` module, created on first use; all ndx-neurrator containers go there."""
    if MODULE_NAME in nwbfile.processing:
        return nwbfile.processing[MODULE_NAME]
    return nwbfile.create_processing_module(
        name=MODULE_NAME,
        description=description
        or "neurrator: spike encoders, predicted patch tokens, unit subsets, narrations and their evaluation",
    )


def _json_text(what: str, field: str, value: Mapping[str, Any] | str) -> str:
    if isinstance(value, str):
        parse_json_object(what, field, value)
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: {field} must be a mapping or JSON text, got {type(value).__name__}")
    try:
        return json.dumps(_plain(dict(value)), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {field} is not JSON-serializable ({exc})") from None


def _plain(value):
    """numpy scalars/arrays -> Python values, non-finite floats -> None (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _rows(what: str, field: str, table: DynamicTable, rows, n: int | None = None) -> np.ndarray:
    """Row indices into ``table`` as int64, checked against its length (and broadcast when scalar)."""
    arr = np.asarray(rows)
    if arr.ndim == 0 and n is not None:
        arr = np.full(n, arr)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{what}: {field} must be a 1-D array of integer row indices, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if n is not None and len(arr) != n:
        raise ValueError(f"{what}: {field} has {len(arr)} entries, expected {n}")
    if arr.size and (arr.min() < 0 or arr.max() >= len(table)):
        raise ValueError(
            f"{what}: {field} holds row {int(arr.min() if arr.min() < 0 else arr.max())}, outside "
            f"'{table.name}' which has {len(table)} rows (give row indices, not ids)"
        )
    return arr


def _column(what: str, field: str, values, n: int, kind: str) -> np.ndarray | list[str]:
    """A table column of length n: kind 'text' (str broadcast allowed), 'int' or 'float'."""
    if kind == "text":
        if isinstance(values, str):
            return [values] * n
        out = [str(v) for v in values]
        if len(out) != n:
            raise ValueError(f"{what}: {field} has {len(out)} entries, expected {n}")
        return out
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{what}: {field} must have shape ({n},), got {arr.shape}")
    if kind == "bool":
        if arr.size and arr.dtype.kind != "b":
            raise ValueError(f"{what}: {field} must hold booleans, got dtype {arr.dtype}")
        return arr.astype(bool)
    if kind == "int":
        if arr.size and arr.dtype.kind not in "iu":
            raise ValueError(f"{what}: {field} must hold integers, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    if arr.size and arr.dtype.kind not in "iuf":
        raise ValueError(f"{what}: {field} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _ragged(name: str, description: str, items: Sequence[Sequence], *, region_table: DynamicTable | None = None):
    """A ragged column from a list of lists: (VectorIndex, data column), the order hdmf reads them back in."""
    flat = [x for item in items for x in item]
    ends = np.cumsum([len(item) for item in items]).astype(np.int64) if len(items) else np.zeros(0, np.int64)
    if region_table is not None:
        target = DynamicTableRegion(
            name=name, description=description, data=np.asarray(flat, dtype=np.int64), table=region_table
        )
    else:
        target = VectorData(name=name, description=description, data=[str(x) for x in flat])
    return VectorIndex(name=f"{name}_index", data=ends, target=target), target


def _descriptions(cls) -> dict[str, str]:
    return {c["name"]: c["description"] for c in getattr(cls, "__columns__", ())}


def _ids(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def weights_from_bytes(
    data: bytes | bytearray | memoryview | np.ndarray, *, name: str = "weights", format: str = "safetensors"
) -> SafetensorsWeights:
    """Wrap serialized weights (normally a safetensors file's bytes) with their SHA-256.

    Examples
    --------
    >>> w = weights_from_bytes(b"\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\x00{}      ")
    >>> len(w.sha256)
    64
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ValueError(f"SafetensorsWeights '{name}': array weights must be 1-D uint8, got {data.dtype} {data.shape}")
        arr = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(bytes(data), dtype=np.uint8)
    else:
        raise ValueError(f"SafetensorsWeights '{name}': weights must be bytes or a uint8 array, got {type(data).__name__}")
    if arr.size == 0:
        raise ValueError(f"SafetensorsWeights '{name}': weights are empty")
    return SafetensorsWeights(name=name, data=arr, sha256=hashlib.sha256(arr.tobytes()).hexdigest(), format=format)


def _default_versions() -> dict[str, str]:
    out = {}
    for pkg in ("ndx-neurrator", "pynwb", "hdmf", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def create_encoder_checkpoint(
    weights: bytes | np.ndarray | SafetensorsWeights,
    *,
    name: str,
    units_table: DynamicTable,
    unit_rows: Sequence[int] | np.ndarray,
    architecture: str,
    config: Mapping[str, Any] | str,
    backbone_id: str,
    backbone_layer: int,
    n_patches: int,
    dim: int,
    preprocessing: str,
    stimulus: str,
    training_metrics: Mapping[str, Any] | str,
    validation_metrics: Mapping[str, Any] | str,
    software_versions: Mapping[str, str] | str | None = None,
    description: str = "spike encoder trained by neurrator",
) -> EncoderCheckpoint:
    """An ``EncoderCheckpoint`` from safetensors bytes and plain values.

    Mappings are stored as strict JSON text: numpy values become Python values, NaN/inf become null.

    ``unit_rows`` are row indices of ``units_table`` (normally ``nwbfile.units``) the encoder was trained on.
    ``software_versions`` defaults to the versions of ndx-neurrator, pynwb, hdmf and numpy.
    """
    what = f"EncoderCheckpoint '{name}'"
    if not isinstance(weights, SafetensorsWeights):
        weights = weights_from_bytes(weights)
    rows = _rows(what, "unit_rows", units_table, unit_rows)
    if rows.size == 0:
        raise ValueError(f"{what}: unit_rows is empty; an encoder is trained on at least one unit")
    for field, value in (("backbone_layer", backbone_layer), ("n_patches", n_patches), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{what}: {field} must be an int, got {value!r}")
    return EncoderCheckpoint(
        name=name,
        description=description,
        architecture=architecture,
        stimulus=stimulus,
        backbone_id=backbone_id,
        backbone_layer=np.int32(backbone_layer),
        n_patches=np.int32(n_patches),
        dim=np.int32(dim),
        preprocessing=preprocessing,
        config=_json_text(what, "config", config),
        weights=weights,
        training_metrics=_json_text(what, "training_metrics", training_metrics),
        validation_metrics=_json_text(what, "validation_metrics", validation_metrics),
        software_versions=_json_text(what, "software_versions", software_versions or _default_versions()),
        units=DynamicTableRegion(
            name="units", description="units the encoder was trained on", data=rows, table=units_table
        ),
    )


def iter_windows(
    windows: Iterable[np.ndarray], *, n_windows: int, n_patches: int, dim: int
) -> DataChunkIterator:
    """A ``DataChunkIterator`` over (n_patches, dim) float32 windows, for predictions larger than memory.

    Pass the result as ``data`` to ``create_patch_predictions``; windows are pulled one at a time while
    the file is written. Each window is checked as it arrives, and the write fails with ``ValueError``
    when a window has the wrong shape or dtype or when there are not exactly ``n_windows`` of them.

    Examples
    --------
    >>> it = iter_windows((np.zeros((2, 3), np.float32) for _ in range(4)), n_windows=4, n_patches=2, dim=3)
    >>> it.maxshape
    (4, 2, 3)
    """
    if int(n_windows) < 0 or int(n_patches) <= 0 or int(dim) <= 0:
        raise ValueError(f"iter_windows: need n_windows >= 0, n_patches > 0, dim > 0; got {n_windows}, {n_patches}, {dim}")

    def checked():
        count = 0
        for window in windows:
            arr = np.asarray(window)
            if arr.dtype != np.float32 or arr.shape != (n_patches, dim):
                raise ValueError(
                    f"iter_windows: window {count} has dtype {arr.dtype} and shape {arr.shape}; "
                    f"expected float32 ({n_patches}, {dim})"
                )
            count += 1
            if count > n_windows:
                raise ValueError(f"iter_windows: more than the {n_windows} windows announced")
            yield arr
        if count != n_windows:
            raise ValueError(f"iter_windows: got {count} windows, expected {n_windows}")

    return DataChunkIterator(
        data=checked(), maxshape=(int(n_windows), int(n_patches), int(dim)), dtype=np.dtype(np.float32),
        buffer_size=1,
    )


def create_patch_basis(
    components: np.ndarray,
    *,
    mean: np.ndarray,
    name: str = "patch_basis",
    kind: str = "pca",
    description: str = "linear basis of predicted patch-token maps",
) -> PatchBasis:
    """A ``PatchBasis``: ``components`` float32 (rank, n_patches, dim) and ``mean`` float32 (n_patches, dim).

    Compact ``PatchPredictions`` link to it; ``kind`` is 'pca' (fitted to the predictions) or
    'encoder_readout' (the encoder's own linear basis). One chunk per component, gzip + shuffle.
    """
    what = f"PatchBasis '{name}'"
    components, mean = np.asarray(components), np.asarray(mean)
    for field, arr, ndim in (("components", components, 3), ("mean", mean, 2)):
        if arr.dtype != np.float32:
            hint = "float16 is not allowed in NWB/DANDI" if arr.dtype == np.float16 else "cast with .astype(np.float32)"
            raise ValueError(f"{what}: {field} must be float32, got {arr.dtype}; {hint}")
        if arr.ndim != ndim:
            raise ValueError(f"{what}: {field} must have {ndim} dimensions, got shape {arr.shape}")
    if components.shape[1:] != mean.shape or components.shape[0] == 0:
        raise ValueError(
            f"{what}: components {components.shape} must be (rank >= 1, n_patches, dim) with mean (n_patches, dim), "
            f"got mean {mean.shape}"
        )
    return PatchBasis(
        name=name, description=description, kind=kind,
        components=H5DataIO(np.ascontiguousarray(components), chunks=(1,) + components.shape[1:],
                            compression="gzip", compression_opts=1, shuffle=True),
        mean=np.ascontiguousarray(mean),
    )


def create_patch_predictions(
    data: np.ndarray | AbstractDataChunkIterator | DataIO | None = None,
    *,
    name: str,
    timestamps: np.ndarray | Sequence[float],
    frame: np.ndarray | Sequence[int],
    unit_subsets: DynamicTable,
    unit_subset_rows: int | np.ndarray | Sequence[int],
    encoder: EncoderCheckpoint,
    coefficients: np.ndarray | None = None,
    basis: PatchBasis | None = None,
    relative_mse: np.ndarray | Sequence[float] | None = None,
    cosine: np.ndarray | Sequence[float] | None = None,
    full_windows: np.ndarray | Sequence[int] | None = None,
    full_data: np.ndarray | None = None,
    coefficient_space: str = "patch_basis",
    description: str = "patch tokens predicted from spikes",
    compression_opts: int = 4,
) -> PatchPredictions:
    """``PatchPredictions``, full (``data``) or compact (``coefficients`` in ``basis``).

    Full form: ``data`` is float32 (n_windows, n_patches, dim): a numpy array, a ``DataChunkIterator``
    (see ``iter_windows``) or an ``H5DataIO`` you configured yourself; arrays and bare iterators are
    wrapped in ``H5DataIO`` with one chunk per window, gzip and shuffle.

    Compact form (``data=None``): ``coefficients`` float32 (n_windows, rank) in the ``PatchBasis``
    ``basis`` with the measured reconstruction error per window (``relative_mse``, ``cosine``; see
    ``neurrator.nwb.compression.compress_windows``), and optionally the exact patches of a few windows
    (``full_windows`` indices, ``full_data`` float32 (n_full, n_patches, dim)).
    Reconstruction with pynwb alone: ``coefficients @ basis.components.reshape(rank, -1) +
    basis.mean.reshape(-1)``, reshaped to (n_windows, n_patches, dim).
    With ``coefficient_space='encoder_readout'`` (and no ``basis``) the coefficients are in the linked
    encoder's own linear readout, which its weights already hold, so nothing is stored twice
    (`EncoderCheckpoint.readout_basis`, ``encoder_readout_basis``).

    ``unit_subset_rows`` (one per window, or one int for all) are rows of ``unit_subsets``.
    """
    what = f"PatchPredictions '{name}'"
    compact = coefficients is not None
    if (data is None) == (not compact):
        raise ValueError(f"{what}: give either data or coefficients (with basis), not {'both' if compact else 'neither'}")
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 1:
        raise ValueError(f"{what}: timestamps must be 1-D (n_windows,), got shape {timestamps.shape}")
    n = len(timestamps)
    extra: dict[str, Any] = {}
    if coefficient_space not in COEFFICIENT_SPACES:
        raise ValueError(f"{what}: coefficient_space must be one of {COEFFICIENT_SPACES}, got {coefficient_space!r}")
    readout = coefficient_space == "encoder_readout"
    if compact:
        if readout and basis is not None:
            raise ValueError(f"{what}: coefficients in the encoder readout take no basis")
        if not readout and not isinstance(basis, PatchBasis):
            raise ValueError(f"{what}: coefficients need basis=PatchBasis (see create_patch_basis)")
        coef = np.asarray(coefficients)
        if coef.dtype != np.float32:
            hint = "float16 is not allowed in NWB/DANDI" if coef.dtype == np.float16 else "cast with .astype(np.float32)"
            raise ValueError(f"{what}: coefficients must be float32, got {coef.dtype}; {hint}")
        if readout and (coef.ndim != 2 or coef.shape[0] != n or coef.shape[1] < 1):
            raise ValueError(f"{what}: coefficients must have shape ({n}, rank >= 1), got {coef.shape}")
        if not readout and coef.shape != (n, basis.rank):
            raise ValueError(f"{what}: coefficients must have shape ({n}, {basis.rank}), got {coef.shape}")
        if relative_mse is None or cosine is None:
            raise ValueError(f"{what}: the compact form needs relative_mse and cosine (the measured error)")
        extra = {
            "coefficients": coef, "basis": basis,
            **({"coefficient_space": coefficient_space} if readout else {}),
            "relative_mse": _column(what, "relative_mse", relative_mse, n, "float"),
            "cosine": _column(what, "cosine", cosine, n, "float"),
        }
        if (full_windows is None) != (full_data is None):
            raise ValueError(f"{what}: full_windows and full_data come together")
        if full_data is not None and len(full_data) == 0 and len(full_windows) == 0:
            full_windows = full_data = None  # no window kept exactly: the optional datasets are left out
        if full_data is not None:
            fw = np.asarray(full_windows)
            fd = np.asarray(full_data)
            window_shape = (int(encoder.n_patches), int(encoder.dim)) if readout else tuple(basis.mean.shape)
            if fd.dtype != np.float32 or fd.ndim != 3 or fd.shape[1:] != window_shape:
                raise ValueError(f"{what}: full_data must be float32 (n_full, n_patches, dim), got {fd.dtype} {fd.shape}")
            fw = _column(what, "full_windows", fw, fd.shape[0], "int")
            if fw.size and (fw.min() < 0 or fw.max() >= n):
                raise ValueError(f"{what}: full_windows holds windows outside 0..{n - 1}")
            extra["full_windows"] = fw
            extra["full_data"] = H5DataIO(np.ascontiguousarray(fd), chunks=(1,) + fd.shape[1:], compression="gzip",
                                          compression_opts=compression_opts, shuffle=True)
    else:
        if readout or basis is not None or any(v is not None for v in (relative_mse, cosine, full_windows, full_data)):
            raise ValueError(f"{what}: basis, relative_mse, cosine, full_windows, full_data belong to the compact form")
        dtype, shape = _dtype_and_shape(data)
        if dtype != np.float32:
            hint = "float16 is not allowed in NWB/DANDI" if dtype == np.float16 else "cast with .astype(np.float32)"
            raise ValueError(f"{what}: data must be float32 (n_windows, n_patches, dim), got dtype {dtype}; {hint}")
        if shape is None or len(shape) != 3 or any(s is None for s in shape[1:]):
            raise ValueError(f"{what}: data must have shape (n_windows, n_patches, dim), got shape {shape}")
        if shape[0] is not None and n != shape[0]:
            raise ValueError(f"{what}: timestamps has {n} entries but data has {shape[0]} windows")
        if not isinstance(data, DataIO):
            if isinstance(data, np.ndarray):
                data = np.ascontiguousarray(data)
            data = H5DataIO(
                data, chunks=(1, shape[1], shape[2]), compression="gzip",
                compression_opts=compression_opts, shuffle=True,
            )
        extra = {"data": data}
    frame = _column(what, "frame", frame, n, "int")
    rows = _rows(what, "unit_subset_rows", unit_subsets, unit_subset_rows, n)
    return PatchPredictions(
        name=name,
        description=description,
        timestamps=timestamps,
        frame=frame,
        unit_subset=DynamicTableRegion(
            name="unit_subset", description="unit subset that produced each window", data=rows, table=unit_subsets
        ),
        encoder=encoder,
        **extra,
    )


def _field(subset, key: str):
    return subset[key] if isinstance(subset, Mapping) else getattr(subset, key)


def create_unit_subsets(
    subsets: Iterable[Any],
    *,
    units_table: DynamicTable,
    name: str = "unit_subsets",
    description: str = "groups of units that predictions and narrations come from",
):
    """A ``UnitSubsetsTable`` from objects or mappings with ``label``, ``kind``, ``unit_idx`` and ``seed``.

    neurrator's ``UnitSubset`` dataclasses fit as they are. ``unit_idx`` are rows of ``units_table``;
    ``seed`` None is stored as -1. ``kind`` is one of SUBSET_KINDS.
    """
    what = f"UnitSubsetsTable '{name}'"
    subsets = list(subsets)
    labels, kinds, seeds, members = [], [], [], []
    for i, subset in enumerate(subsets):
        label, kind = str(_field(subset, "label")), str(_field(subset, "kind"))
        if kind not in SUBSET_KINDS:
            raise ValueError(f"{what}: subset {i} ({label!r}) has kind {kind!r}; valid kinds: {', '.join(SUBSET_KINDS)}")
        if label in labels:
            raise ValueError(f"{what}: label {label!r} appears twice; labels must be unique")
        idx = _rows(what, f"unit_idx of subset {label!r}", units_table, _field(subset, "unit_idx"))
        if idx.size == 0:
            raise ValueError(f"{what}: subset {label!r} has no units")
        seed = _field(subset, "seed")
        labels.append(label)
        kinds.append(kind)
        seeds.append(-1 if seed is None else int(seed))
        members.append(idx)
    desc = _descriptions(_ndx.UnitSubsetsTable)
    units_index, units = _ragged("units", desc["units"], members, region_table=units_table)
    return _ndx.UnitSubsetsTable(
        name=name,
        description=description,
        id=_ids(len(subsets)),
        columns=[
            VectorData(name="label", description=desc["label"], data=labels),
            VectorData(name="kind", description=desc["kind"], data=kinds),
            units_index,
            units,
            VectorData(name="seed", description=desc["seed"], data=np.asarray(seeds, dtype=np.int64)),
        ],
    )


def create_narrations(
    *,
    start_time: np.ndarray | Sequence[float],
    stop_time: np.ndarray | Sequence[float],
    text: Sequence[str],
    frame: np.ndarray | Sequence[int],
    unit_subsets: DynamicTable,
    unit_subset_rows: int | np.ndarray | Sequence[int],
    narrator_model: str | Sequence[str],
    prompt: str | Sequence[str],
    reference_text: Sequence[str] | None = None,
    similarity: np.ndarray | Sequence[float] | None = None,
    subset: str | Sequence[str] | None = None,
    name: str = "narrations",
    description: str = "narrations written from predicted patch tokens",
):
    """A ``NarrationsTable`` (a TimeIntervals) with one row per narrated window.

    ``narrator_model`` and ``prompt`` may be one string for all rows. ``reference_text`` (the narration
    of the true frame) and ``similarity`` are optional; ``similarity`` needs ``reference_text``.
    ``subset`` (optional) stores the subset labels as plain text (``create_narrations_collection`` fills it).
    """
    what = f"NarrationsTable '{name}'"
    if isinstance(text, str):
        raise ValueError(f"{what}: text must be a sequence of strings, one per row, not one string")
    n = len(text)
    desc = _descriptions(_ndx.NarrationsTable)
    start = _column(what, "start_time", start_time, n, "float")
    stop = _column(what, "stop_time", stop_time, n, "float")
    if np.any(stop < start):
        raise ValueError(f"{what}: stop_time is before start_time in row {int(np.argmax(stop < start))}")
    columns = [
        VectorData(name="start_time", description="start of the narrated window, in seconds", data=start),
        VectorData(name="stop_time", description="end of the narrated window, in seconds", data=stop),
        VectorData(name="text", description=desc["text"], data=_column(what, "text", text, n, "text")),
        VectorData(name="frame", description=desc["frame"], data=_column(what, "frame", frame, n, "int")),
        DynamicTableRegion(
            name="unit_subset", description=desc["unit_subset"], table=unit_subsets,
            data=_rows(what, "unit_subset_rows", unit_subsets, unit_subset_rows, n),
        ),
        VectorData(
            name="narrator_model", description=desc["narrator_model"],
            data=_column(what, "narrator_model", narrator_model, n, "text"),
        ),
        VectorData(name="prompt", description=desc["prompt"], data=_column(what, "prompt", prompt, n, "text")),
    ]
    if subset is not None:
        columns.append(VectorData(name="subset", description=desc["subset"], data=_column(what, "subset", subset, n, "text")))
    if similarity is not None and reference_text is None:
        raise ValueError(f"{what}: similarity was given without reference_text")
    if reference_text is not None:
        if isinstance(reference_text, str):
            raise ValueError(f"{what}: reference_text must be a sequence of strings, one per row")
        columns.append(
            VectorData(
                name="reference_text", description=desc["reference_text"],
                data=_column(what, "reference_text", reference_text, n, "text"),
            )
        )
    if similarity is not None:
        columns.append(
            VectorData(
                name="similarity", description=desc["similarity"],
                data=_column(what, "similarity", similarity, n, "float"),
            )
        )
    return _ndx.NarrationsTable(name=name, description=description, id=_ids(n), columns=columns)


def _collection_rows(what: str, collection, narration_rows) -> tuple[list[str], np.ndarray]:
    """(table name, row) pairs into a NarrationsCollection, checked: names must exist, rows be in range."""
    pairs = list(narration_rows)
    names, rows = [], []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{what}: narration_rows[{i}] must be a (table name, row) pair for a NarrationsCollection")
        table_name, row = str(pair[0]), pair[1]
        if table_name not in collection.narrations_tables:
            raise ValueError(
                f"{what}: narration_rows[{i}] names table {table_name!r}, not in '{collection.name}' "
                f"(tables: {', '.join(sorted(collection.narrations_tables))})"
            )
        rows.append(int(_rows(what, f"narration_rows[{i}]", collection.narrations_tables[table_name], [row])[0]))
        names.append(table_name)
    return names, np.asarray(rows, dtype=np.int64)


def create_sae_validation(
    *,
    narrations: DynamicTable,
    narration_rows: np.ndarray | Sequence[int] | Sequence[tuple[str, int]],
    scores: Mapping[str, np.ndarray | Sequence[float]],
    supporting_concepts: Sequence[Sequence[str]],
    name: str = "sae_validation",
    description: str = "sparse-autoencoder validation of narrations",
):
    """A ``SAEValidationTable``: one row per validated narration.

    ``scores`` must hold the three SAE_SCORE_COLUMNS; any further name becomes an extra float column.
    ``supporting_concepts`` is one list of concept labels per row (may be empty); when every list is empty
    (e.g. the SAE named no concept) the column is left out (an empty ragged column trips readers).

    ``narrations`` is a ``NarrationsTable`` (``narration_rows`` are its row indices, stored as the region
    ``narration``) or a ``NarrationsCollection`` (``narration_rows`` are (table name, row) pairs, stored
    as the columns ``narration_table`` and ``narration_row``).
    """
    what = f"SAEValidationTable '{name}'"
    collection = isinstance(narrations, _ndx.NarrationsCollection)
    if collection:
        table_names, rows = _collection_rows(what, narrations, narration_rows)
    else:
        rows = _rows(what, "narration_rows", narrations, narration_rows)
    n = len(rows)
    missing = [s for s in SAE_SCORE_COLUMNS if s not in scores]
    if missing:
        raise ValueError(f"{what}: scores lacks {', '.join(missing)}; required: {', '.join(SAE_SCORE_COLUMNS)}")
    reserved = {"narration", "narration_table", "narration_row", "supporting_concepts", "supporting_concepts_index", "id", "name", "description",
                "colnames", "columns"}
    clash = sorted(set(scores) & reserved)
    if clash:
        raise ValueError(f"{what}: score names {clash} clash with the table's own columns or attributes")
    bad = sorted(s for s in scores if not s or "/" in s or s.endswith("_index"))
    if bad:
        raise ValueError(f"{what}: score names {bad} are not usable column names (empty, '/', or ending in '_index')")
    if isinstance(supporting_concepts, str) or len(supporting_concepts) != n:
        raise ValueError(f"{what}: supporting_concepts must be one list of labels per row ({n} rows)")
    if any(isinstance(item, str) for item in supporting_concepts):
        raise ValueError(f"{what}: each supporting_concepts entry must be a list of labels, not a string")
    desc = _descriptions(_ndx.SAEValidationTable)
    if collection:
        columns = [
            VectorData(name="narration_table", description=desc["narration_table"], data=table_names),
            VectorData(name="narration_row", description=desc["narration_row"], data=rows),
        ]
    else:
        columns = [DynamicTableRegion(name="narration", description=desc["narration"], data=rows, table=narrations)]
    for score, values in scores.items():
        columns.append(
            VectorData(
                name=score, description=desc.get(score, f"validator score '{score}'"),
                data=_column(what, f"scores[{score!r}]", values, n, "float"),
            )
        )
    if any(len(item) for item in supporting_concepts):
        columns.extend(_ragged("supporting_concepts", desc["supporting_concepts"], supporting_concepts))
    return _ndx.SAEValidationTable(name=name, description=description, id=_ids(n), columns=columns)


def create_sparse_autoencoder(
    weights: bytes | np.ndarray | SafetensorsWeights,
    *,
    name: str,
    architecture: str,
    config: Mapping[str, Any] | str,
    concept_labels: Sequence[str],
    concept_label_sources: str | Sequence[str],
    naming_split: str | Sequence[str] | None = None,
    description: str = "sparse autoencoder over the patch-token space",
) -> SparseAutoencoder:
    """A ``SparseAutoencoder``: one label per latent; ``concept_label_sources`` may be one string for all.

    ``naming_split`` (optional, one string for all or one per latent) says which frames named each
    latent, e.g. 'train' when validation uses held-out frames.
    """
    what = f"SparseAutoencoder '{name}'"
    if not isinstance(weights, SafetensorsWeights):
        weights = weights_from_bytes(weights)
    if isinstance(concept_labels, str):
        raise ValueError(f"{what}: concept_labels must be a sequence of labels, one per latent")
    labels = [str(x) for x in concept_labels]
    if not labels:
        raise ValueError(f"{what}: concept_labels is empty")
    return SparseAutoencoder(
        name=name,
        description=description,
        architecture=architecture,
        config=_json_text(what, "config", config),
        weights=weights,
        concept_labels=labels,
        concept_label_sources=_column(what, "concept_label_sources", concept_label_sources, len(labels), "text"),
        naming_split=None if naming_split is None else _column(what, "naming_split", naming_split, len(labels), "text"),
    )


def create_decoding_fidelity(
    *,
    unit_subsets: DynamicTable,
    unit_subset_rows: np.ndarray | Sequence[int],
    n_units: np.ndarray | Sequence[int],
    region: str | Sequence[str],
    cell_type: str | Sequence[str],
    seed: int | np.ndarray | Sequence[int],
    split: str | Sequence[str],
    metric: str | Sequence[str],
    value: np.ndarray | Sequence[float],
    chance_level: float | np.ndarray | Sequence[float],
    ci_lo: float | np.ndarray | Sequence[float] | None = None,
    ci_hi: float | np.ndarray | Sequence[float] | None = None,
    p_value: float | np.ndarray | Sequence[float] | None = None,
    q_value: float | np.ndarray | Sequence[float] | None = None,
    beats_null: bool | np.ndarray | Sequence[bool] | None = None,
    null_kind: str | Sequence[str] | None = None,
    null_mean: float | np.ndarray | Sequence[float] | None = None,
    name: str = "decoding_fidelity",
    description: str = "decoding fidelity per unit subset and metric",
):
    """A ``DecodingFidelityTable``, one row per (unit subset, metric); scalars broadcast to all rows.

    ``seed`` is -1 for subsets not drawn at random; ``chance_level`` is NaN when undefined.
    Optional statistics (each becomes a column when given): ``ci_lo``/``ci_hi`` (confidence interval),
    ``p_value``, ``q_value`` (FDR across subsets), ``beats_null`` (bool), ``null_kind`` (text) and
    ``null_mean`` (the metric's mean under its permutation null, beside ``chance_level``).
    """
    what = f"DecodingFidelityTable '{name}'"
    rows = _rows(what, "unit_subset_rows", unit_subsets, unit_subset_rows)
    n = len(rows)
    desc = _descriptions(_ndx.DecodingFidelityTable)
    kinds = {"n_units": "int", "region": "text", "cell_type": "text", "seed": "int", "split": "text",
             "metric": "text", "value": "float", "chance_level": "float"}
    given = {"n_units": n_units, "region": region, "cell_type": cell_type, "seed": seed, "split": split,
             "metric": metric, "value": value, "chance_level": chance_level}
    columns = [DynamicTableRegion(name="unit_subset", description=desc["unit_subset"], data=rows, table=unit_subsets)]
    for col, kind in kinds.items():
        columns.append(VectorData(name=col, description=desc[col], data=_column(what, col, given[col], n, kind)))
    optional = {"ci_lo": (ci_lo, "float"), "ci_hi": (ci_hi, "float"), "p_value": (p_value, "float"),
                "q_value": (q_value, "float"), "beats_null": (beats_null, "bool"), "null_kind": (null_kind, "text"),
                "null_mean": (null_mean, "float")}
    for col, (values, kind) in optional.items():
        if values is not None:
            columns.append(VectorData(name=col, description=desc[col], data=_column(what, col, values, n, kind)))
    return _ndx.DecodingFidelityTable(name=name, description=description, id=_ids(n), columns=columns)


__all__ = [
    "MODULE_NAME",
    "SUBSET_KINDS",
    "SAE_SCORE_COLUMNS",
    "get_neurrator_module",
    "weights_from_bytes",
    "create_encoder_checkpoint",
    "iter_windows",
    "create_patch_basis",
    "create_patch_predictions",
    "create_unit_subsets",
    "create_narrations",
    "create_sae_validation",
    "create_sparse_autoencoder",
    "create_decoding_fidelity",
]


