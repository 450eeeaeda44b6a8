"""``mock_<Type>(*, name=None, ...)`` factories: small, valid, deterministic instances of every type.

Each factory builds what it depends on (Units, unit subsets, narrations, an encoder) when not given.
With ``nwbfile=...`` the result and anything it created are added to that file (units to
``nwbfile.units``, the rest to the ``neurrator`` processing module), ready to write.
"""

from __future__ import annotations

import json
import struct
from datetime import datetime, timezone

import numpy as np
from hdmf.common import DynamicTable
from pynwb import NWBFile
from pynwb.file import Subject
from pynwb.misc import Units

from ndx_neurrator.build import (
    create_decoding_fidelity,
    create_encoder_checkpoint,
    create_narrations,
    create_patch_predictions,
    create_sae_validation,
    create_sparse_autoencoder,
    create_unit_subsets,
    get_neurrator_module,
    weights_from_bytes,
)

# Containers that mock_neurrator_nwbfile puts in processing/neurrator: name -> neurodata type.
MOCK_CONTAINERS = {
    "encoder": "EncoderCheckpoint",
    "predictions": "PatchPredictions",
    "unit_subsets": "UnitSubsetsTable",
    "narrations": "NarrationsTable",
    "sae_validation": "SAEValidationTable",
    "sae": "SparseAutoencoder",
    "decoding_fidelity": "DecodingFidelityTable",
}

_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """Serialize arrays in the safetensors format (8-byte header length, JSON header, raw little-endian data).

    Enough for tests without the ``safetensors`` package; ``safetensors.numpy.load`` reads the result.
    """
    header, chunks, offset = {}, [], 0
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[key] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _add(nwbfile: NWBFile | None, container):
    if nwbfile is not None:
        get_neurrator_module(nwbfile).add(container)
    return container


def _get(nwbfile: NWBFile | None, name: str):
    if nwbfile is not None and "neurrator" in nwbfile.processing:
        return nwbfile.processing["neurrator"].data_interfaces.get(name)
    return None


def mock_NWBFile(
    *, subject_id: str = "mouse1", session_id: str = "session1", species: str | None = "Mus musculus"
) -> NWBFile:
    """An empty NWBFile with the subject and session metadata that ``dandi validate`` requires."""
    return NWBFile(
        session_description="neurrator mock session",
        identifier=f"neurrator-mock-{subject_id}-{session_id}",
        session_start_time=datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc),
        session_id=session_id,
        institution="neurrator",
        lab="neurrator",
        experimenter=["Doe, Jane"],
        experiment_description="mock data for ndx-neurrator tests",
        keywords=["neurrator"],
        subject=Subject(
            subject_id=subject_id, species=species, sex="M", age="P90D", description="mock mouse"
        ),
    )


def mock_Units(*, n_units: int = 6, nwbfile: NWBFile | None = None, seed: int = 0) -> Units:
    """A Units table with ``n_units`` units, each with a few spike times; becomes ``nwbfile.units``."""
    if nwbfile is not None and nwbfile.units is not None:
        return nwbfile.units
    rng = np.random.default_rng(seed)
    units = Units(name="units", description="mock units", resolution=1 / 30000)
    for _ in range(n_units):
        units.add_unit(spike_times=np.sort(rng.uniform(0.0, 10.0, size=20)))
    if nwbfile is not None:
        nwbfile.units = units
    return units


def mock_SafetensorsWeights(*, name: str | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = safetensors_bytes({"w": rng.standard_normal((4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)})
    return weights_from_bytes(raw, name=name or "weights")


def mock_EncoderCheckpoint(
    *,
    name: str | None = None,
    units_table: DynamicTable | None = None,
    n_patches: int = 4,
    dim: int = 8,
    nwbfile: NWBFile | None = None,
):
    units_table = units_table if units_table is not None else mock_Units(nwbfile=nwbfile)
    ckpt = create_encoder_checkpoint(
        mock_SafetensorsWeights().get_bytes(),
        name=name or "encoder",
        units_table=units_table,
        unit_rows=np.arange(len(units_table)),
        architecture="set_pool_transformer",
        config={"d_model": 16, "n_layers": 1, "window_bins": 20},
        backbone_id="tiny",
        backbone_layer=-2,
        n_patches=n_patches,
        dim=dim,
        preprocessing="resize 32, centre crop 32, CLIP normalization",
        stimulus="natural_movie_one",
        training_metrics={"loss": 0.5, "patch_cosine": 0.4},
        validation_metrics={"loss": 0.6, "patch_cosine": 0.35},
        software_versions={"neurrator": "0.1.0", "torch": "2.5.0"},
    )
    return _add(nwbfile, ckpt)


def mock_UnitSubsetsTable(
    *, name: str | None = None, units_table: DynamicTable | None = None, nwbfile: NWBFile | None = None
):
    units_table = units_table if units_table is not None else mock_Units(nwbfile=nwbfile)
    n = len(units_table)
    subsets = [
        {"label": "all", "kind": "all", "unit_idx": np.arange(n), "seed": None},
        {"label": "random:2:seed3", "kind": "random", "unit_idx": np.array([1, n - 1]), "seed": 3},
        {"label": "unit:0", "kind": "single_unit", "unit_idx": np.array([0]), "seed": None},
    ]
    return _add(nwbfile, create_unit_subsets(subsets, units_table=units_table, name=name or "unit_subsets"))


def _subsets(unit_subsets, nwbfile):
    if unit_subsets is not None:
        return unit_subsets
    return _get(nwbfile, "unit_subsets") or mock_UnitSubsetsTable(nwbfile=nwbfile)


def mock_PatchPredictions(
    *,
    name: str | None = None,
    n_windows: int = 5,
    encoder=None,
    unit_subsets=None,
    nwbfile: NWBFile | None = None,
    seed: int = 0,
):
    encoder = encoder if encoder is not None else (_get(nwbfile, "encoder") or mock_EncoderCheckpoint(nwbfile=nwbfile))
    unit_subsets = _subsets(unit_subsets, nwbfile)
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n_windows, int(encoder.n_patches), int(encoder.dim))).astype(np.float32)
    preds = create_patch_predictions(
        data,
        name=name or "predictions",
        timestamps=0.5 + np.arange(n_windows) / 30.0,
        frame=np.arange(n_windows),
        unit_subsets=unit_subsets,
        unit_subset_rows=np.arange(n_windows) % len(unit_subsets),
        encoder=encoder,
    )
    return _add(nwbfile, preds)


def mock_NarrationsTable(
    *, name: str | None = None, n_rows: int = 4, unit_subsets=None, nwbfile: NWBFile | None = None
):
    unit_subsets = _subsets(unit_subsets, nwbfile)
    start = 0.5 + np.arange(n_rows) / 30.0
    table = create_narrations(
        start_time=start,
        stop_time=start + 1 / 6,
        text=[f"a mouse watches scene {i}" for i in range(n_rows)],
        frame=np.arange(n_rows),
        unit_subsets=unit_subsets,
        unit_subset_rows=np.arange(n_rows) % len(unit_subsets),
        narrator_model="tiny",
        prompt="Describe this scene in one sentence.",
        reference_text=[f"a person walks past scene {i}" for i in range(n_rows)],
        similarity=np.linspace(0.1, 0.4, n_rows),
        name=name or "narrations",
    )
    return _add(nwbfile, table)


def mock_SAEValidationTable(*, name: str | None = None, narrations=None, nwbfile: NWBFile | None = None):
    if narrations is None:
        narrations = _get(nwbfile, "narrations") or mock_NarrationsTable(nwbfile=nwbfile)
    n = len(narrations)
    table = create_sae_validation(
        narrations=narrations,
        narration_rows=np.arange(n),
        scores={
            "concept_agreement": np.linspace(0.2, 0.8, n),
            "latent_profile_similarity": np.linspace(0.1, 0.5, n),
            "reconstruction_score": np.full(n, 0.9),
        },
        supporting_concepts=[["tree", "sky"][: i % 3] for i in range(n)],
        name=name or "sae_validation",
    )
    return _add(nwbfile, table)


def mock_SparseAutoencoder(*, name: str | None = None, n_latents: int = 6, nwbfile: NWBFile | None = None):
    sae = create_sparse_autoencoder(
        mock_SafetensorsWeights(seed=1).get_bytes(),
        name=name or "sae",
        architecture="topk",
        config={"n_latents": n_latents, "k": 2, "d_in": 8},
        concept_labels=[f"concept {i}" for i in range(n_latents)],
        concept_label_sources="oracle narrations of top-activating frames",
    )
    return _add(nwbfile, sae)


def mock_DecodingFidelityTable(*, name: str | None = None, unit_subsets=None, nwbfile: NWBFile | None = None):
    unit_subsets = _subsets(unit_subsets, nwbfile)
    n = len(unit_subsets)
    rows = np.repeat(np.arange(n), 2)
    table = create_decoding_fidelity(
        unit_subsets=unit_subsets,
        unit_subset_rows=rows,
        n_units=[len(unit_subsets["units"][int(r)]) for r in rows],
        region="VISp",
        cell_type="all",
        seed=[int(unit_subsets["seed"][int(r)]) for r in rows],
        split="test",
        metric=["patch_cosine", "top1"] * n,
        value=np.linspace(0.1, 0.6, 2 * n),
        chance_level=[np.nan, 1 / 900] * n,
        name=name or "decoding_fidelity",
    )
    return _add(nwbfile, table)


def mock_neurrator_nwbfile(
    *, subject_id: str = "mouse1", session_id: str = "session1", species: str | None = "Mus musculus"
) -> NWBFile:
    """An NWBFile holding one of each ndx-neurrator type (plus Units), ready to write."""
    nwbfile = mock_NWBFile(subject_id=subject_id, session_id=session_id, species=species)
    mock_Units(nwbfile=nwbfile)
    mock_UnitSubsetsTable(nwbfile=nwbfile)
    mock_EncoderCheckpoint(nwbfile=nwbfile)
    mock_PatchPredictions(nwbfile=nwbfile)
    mock_NarrationsTable(nwbfile=nwbfile)
    mock_SAEValidationTable(nwbfile=nwbfile)
    mock_SparseAutoencoder(nwbfile=nwbfile)
    mock_DecodingFidelityTable(nwbfile=nwbfile)
    return nwbfile
