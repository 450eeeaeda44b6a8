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

from ndx_neurrator.analysis import (
    create_concept_tuning,
    create_group_comparison,
    create_group_separation,
    create_scaling,
    create_unit_neurration,
)
from ndx_neurrator.build import (
    create_decoding_fidelity,
    create_encoder_checkpoint,
    create_narrations,
    create_patch_basis,
    create_patch_predictions,
    create_sae_validation,
    create_sparse_autoencoder,
    create_unit_subsets,
    get_neurrator_module,
    weights_from_bytes,
)
from ndx_neurrator.narrations import create_narrations_collection

# Containers that mock_neurrator_nwbfile puts in processing/neurrator: name -> neurodata type.
MOCK_CONTAINERS = {
    "encoder": "EncoderCheckpoint",
    "predictions": "PatchPredictions",
    "unit_subsets": "UnitSubsetsTable",
    "narrations": "NarrationsTable",
    "sae_validation": "SAEValidationTable",
    "sae": "SparseAutoencoder",
    "decoding_fidelity": "DecodingFidelityTable",
    "patch_basis": "PatchBasis",
    "predictions_compact": "PatchPredictions",
    "narrations_by_subset": "NarrationsCollection",
    "sae_validation_by_subset": "SAEValidationTable",
    "unit_neurration": "UnitNeurrationTable",
    "concept_tuning": "ConceptTuningTable",
    "group_comparison": "GroupComparisonTable",
    "group_separation": "GroupSeparationTable",
    "scaling": "ScalingTable",
}
# What mock_neurrator_nwbfile(legacy=False) holds: the layout the pipeline writes (issue 15, 10.1).
MOCK_DERIVED_CONTAINERS = {
    "encoder": "EncoderCheckpoint",
    "unit_subsets": "UnitSubsetsTable",
    "patch_basis": "PatchBasis",
    "predictions": "PatchPredictions",
    "narrations": "NarrationsCollection",
    "sae_validation": "SAEValidationTable",
    "sae": "SparseAutoencoder",
    "decoding_fidelity": "DecodingFidelityTable",
    "unit_neurration": "UnitNeurrationTable",
    "concept_tuning": "ConceptTuningTable",
    "group_comparison": "GroupComparisonTable",
    "group_separation": "GroupSeparationTable",
    "scaling": "ScalingTable",
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
    units.add_column(name="region", description="brain region of the unit")
    units.add_column(name="cell_type", description="opto-tagged cell type ('unknown' when untagged)")
    regions, types = ("VISp", "VISl", "CA1"), ("PV", "SST", "unknown")
    for i in range(n_units):
        units.add_unit(spike_times=np.sort(rng.uniform(0.0, 10.0, size=20)), region=regions[i % 3],
                       cell_type=types[(i // 3) % 3])
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


def mock_PatchBasis(
    *, name: str | None = None, rank: int = 3, encoder=None, nwbfile: NWBFile | None = None, seed: int = 0
):
    """An orthonormal (rank, n_patches, dim) basis with a mean, shaped like the encoder's target space."""
    encoder = encoder if encoder is not None else (_get(nwbfile, "encoder") or mock_EncoderCheckpoint(nwbfile=nwbfile))
    p, d = int(encoder.n_patches), int(encoder.dim)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((p * d, rank)))
    basis = create_patch_basis(
        q.T.reshape(rank, p, d).astype(np.float32), mean=rng.standard_normal((p, d)).astype(np.float32),
        name=name or "patch_basis", kind="pca",
    )
    return _add(nwbfile, basis)


def mock_compact_PatchPredictions(
    *,
    name: str | None = None,
    n_windows: int = 5,
    encoder=None,
    basis=None,
    unit_subsets=None,
    nwbfile: NWBFile | None = None,
    seed: int = 0,
):
    """Compact predictions: coefficients in ``basis`` (made when absent), error measured, window 1 kept exact."""
    encoder = encoder if encoder is not None else (_get(nwbfile, "encoder") or mock_EncoderCheckpoint(nwbfile=nwbfile))
    basis = basis if basis is not None else (_get(nwbfile, "patch_basis") or mock_PatchBasis(encoder=encoder, nwbfile=nwbfile))
    unit_subsets = _subsets(unit_subsets, nwbfile)
    rng = np.random.default_rng(seed)
    coef = rng.standard_normal((n_windows, basis.rank)).astype(np.float32)
    recon = basis.reconstruct(coef)
    original = recon + np.float32(0.01) * rng.standard_normal(recon.shape).astype(np.float32)
    mean = np.asarray(basis.mean)
    err = ((recon - original) ** 2).reshape(n_windows, -1).sum(1) / ((original - mean) ** 2).reshape(n_windows, -1).sum(1)
    a, b = recon.reshape(n_windows, -1), original.reshape(n_windows, -1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    preds = create_patch_predictions(
        name=name or "predictions_compact",
        timestamps=0.5 + np.arange(n_windows) / 30.0,
        frame=np.arange(n_windows),
        unit_subsets=unit_subsets,
        unit_subset_rows=np.arange(n_windows) % len(unit_subsets),
        encoder=encoder,
        coefficients=coef, basis=basis, relative_mse=err, cosine=cos,
        full_windows=[1], full_data=original[[1]],
    )
    return _add(nwbfile, preds)


def mock_NarrationsCollection(
    *, name: str | None = None, n_windows: int = 4, unit_subsets=None, nwbfile: NWBFile | None = None
):
    """One NarrationsTable per unit subset, the same non-overlapping windows in each (0.5 s apart, 0.25 s long)."""
    unit_subsets = _subsets(unit_subsets, nwbfile)
    start = 1.0 + 0.5 * np.arange(n_windows)
    tables = {}
    for row, label in enumerate(unit_subsets["label"][:]):
        tables[row] = dict(
            start_time=start, stop_time=start + 0.25,
            text=[f"{label} sees a tree in scene {i}" for i in range(n_windows)],
            frame=np.arange(n_windows) * 15, narrator_model="tiny", prompt="Describe this scene in one sentence.",
            reference_text=[f"a tree in scene {i}" for i in range(n_windows)],
            similarity=np.linspace(0.2, 0.8, n_windows) / (row + 1),
        )
    return _add(nwbfile, create_narrations_collection(tables, unit_subsets=unit_subsets, name=name or "narrations"))


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
    """Validation of every narration of ``narrations`` (a NarrationsTable or a NarrationsCollection)."""
    if narrations is None:
        narrations = _get(nwbfile, "narrations") or mock_NarrationsTable(nwbfile=nwbfile)
    if narrations.neurodata_type == "NarrationsCollection":
        rows = [(t, i) for t, table in sorted(narrations.narrations_tables.items()) for i in range(len(table))]
    else:
        rows = np.arange(len(narrations))
    n = len(rows)
    table = create_sae_validation(
        narrations=narrations,
        narration_rows=rows,
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
        naming_split="train",
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
        ci_lo=np.linspace(0.05, 0.55, 2 * n), ci_hi=np.linspace(0.15, 0.65, 2 * n),
        p_value=np.linspace(0.001, 0.2, 2 * n), q_value=np.linspace(0.002, 0.3, 2 * n),
        beats_null=np.linspace(0.002, 0.3, 2 * n) < 0.05, null_kind="scene-block permutation of references",
        null_mean=[np.nan, 1.2 / 900] * n, name=name or "decoding_fidelity",
    )
    return _add(nwbfile, table)


def mock_UnitNeurrationTable(*, name: str | None = None, units_table=None, nwbfile: NWBFile | None = None):
    """One row per unit; units 2 and 5 (CA1) are not visually driven."""
    units_table = units_table if units_table is not None else mock_Units(nwbfile=nwbfile)
    n = len(units_table)
    driven = np.array([i % 3 != 2 for i in range(n)])
    table = create_unit_neurration(
        units_table=units_table, unit_rows=np.arange(n),
        reliability=np.where(driven, 0.6, 0.02), reliability_p=np.where(driven, 0.001, 0.6),
        visually_driven=driven, preferred_text=["a bright moving bar" if d else "" for d in driven],
        top_frames=[[3 * i, 3 * i + 1] if d else [] for i, d in enumerate(driven)],
        top_concept=["bright" if d else "" for d in driven], top_concept_r=np.where(driven, 0.4, np.nan),
        top_concept_q=np.where(driven, 0.01, np.nan), loo_delta=np.linspace(0.0, 0.01, n),
        loo_ci_lo=np.linspace(-0.01, 0.0, n), loo_ci_hi=np.linspace(0.01, 0.02, n), loo_p=np.full(n, 0.3),
        drive_text=["a bright scene"] * n, baseline_text=["a grey scene"] * n, drive_shift=np.full(n, 0.3),
        drive_p=np.full(n, 0.04), drive_q=np.full(n, 0.08), name=name or "unit_neurration",
    )
    return _add(nwbfile, table)


def mock_ConceptTuningTable(
    *, name: str | None = None, units_table=None, concepts=("bright", "moving", "vehicle"), nwbfile: NWBFile | None = None
):
    units_table = units_table if units_table is not None else mock_Units(nwbfile=nwbfile)
    n, k = len(units_table), len(concepts)
    q = np.linspace(0.001, 0.9, n * k)
    table = create_concept_tuning(
        units_table=units_table, unit_rows=np.repeat(np.arange(n), k), concept=list(concepts) * n,
        r=np.linspace(-0.5, 0.5, n * k), p=q / 2, q=q, significant=q < 0.05, name=name or "concept_tuning",
    )
    return _add(nwbfile, table)


def mock_GroupComparisonTable(*, name: str | None = None, nwbfile: NWBFile | None = None):
    table = create_group_comparison(
        group_kind=["cell_type", "cell_type", "region"], group=["PV", "SST", "VISp"],
        source=["tuning", "decoded", "tuning"], concept=["bright", "still", "vehicle"],
        effect=[0.3, 0.1, 0.0], ci_lo=[0.2, 0.0, -0.1], ci_hi=[0.4, 0.2, 0.1], p=[0.001, 0.04, 0.6],
        q=[0.003, 0.06, 0.6], n_units=[30, 30, 100], n_null_draws=200, name=name or "group_comparison",
    )
    return _add(nwbfile, table)


def mock_GroupSeparationTable(*, name: str | None = None, nwbfile: NWBFile | None = None):
    table = create_group_separation(
        analysis=["narration_similarity_within", "narration_similarity_between", "text_classifier"],
        group_kind="cell_type", group=["PV", "", ""], value=[0.8, 0.6, 0.7], ci_lo=[0.75, 0.55, 0.6],
        ci_hi=[0.85, 0.65, 0.8], chance_level=[np.nan, np.nan, 1 / 3], p=[np.nan, np.nan, 0.002], n=[435, 900, 90],
        fidelity=[0.55, np.nan, 0.5], fidelity_q=[0.01, np.nan, 0.02], status=["", "", "distinctive"],
        null_kind="re-decoded matched pools (n=10), fidelity-adjusted t on 8 df", name=name or "group_separation",
    )
    return _add(nwbfile, table)


def mock_ScalingTable(*, name: str | None = None, nwbfile: NWBFile | None = None):
    """VISp crosses the baseline at 20 units; CA1 never does (NaN crossing); LGd's crossing is not estimable."""
    sizes = np.array([5, 20, 80])
    table = create_scaling(
        region=["VISp"] * 3 + ["CA1"] * 3 + ["LGd"] * 3, n_units=np.tile(sizes, 3), metric="top1",
        value=[0.01, 0.05, 0.2, 0.001, 0.001, 0.002, 0.002, 0.004, 0.01],
        ci_lo=[0.0, 0.03, 0.15, 0.0, 0.0, 0.0, 0.0, 0.001, 0.004],
        ci_hi=[0.02, 0.07, 0.25, 0.003, 0.003, 0.004, 0.004, 0.007, 0.016], n_draws=10, baseline=1 / 900,
        crossing_n=[20.0] * 3 + [np.nan] * 6, crossing_lo=[5.0] * 3 + [np.nan] * 3 + [20.0] * 3,
        crossing_hi=[20.0] * 3 + [np.nan] * 6,
        crossing_note=["estimated"] * 3 + ["never"] * 3 + ["not estimable: CI open above"] * 3, name=name or "scaling",
    )
    return _add(nwbfile, table)


def mock_neurrator_nwbfile(
    *, subject_id: str = "mouse1", session_id: str = "session1", species: str | None = "Mus musculus",
    legacy: bool = True,
) -> NWBFile:
    """An NWBFile holding one of each ndx-neurrator type (plus Units), ready to write.

    ``legacy=True`` (default): every type, including the single-table narrations and full-float32
    predictions of older files next to the new layout (names in MOCK_CONTAINERS). ``legacy=False``: the
    layout the pipeline writes (MOCK_DERIVED_CONTAINERS): narrations as a NarrationsCollection named
    'narrations', compact predictions named 'predictions' in 'patch_basis', and the analysis tables.
    """
    nwbfile = mock_NWBFile(subject_id=subject_id, session_id=session_id, species=species)
    mock_Units(nwbfile=nwbfile)
    mock_UnitSubsetsTable(nwbfile=nwbfile)
    mock_EncoderCheckpoint(nwbfile=nwbfile)
    mock_PatchBasis(nwbfile=nwbfile)
    if legacy:
        mock_PatchPredictions(nwbfile=nwbfile)
        mock_compact_PatchPredictions(nwbfile=nwbfile)
        mock_NarrationsTable(nwbfile=nwbfile)
        mock_SAEValidationTable(nwbfile=nwbfile)
        collection = mock_NarrationsCollection(nwbfile=nwbfile, name="narrations_by_subset")
        mock_SAEValidationTable(nwbfile=nwbfile, narrations=collection, name="sae_validation_by_subset")
    else:
        mock_compact_PatchPredictions(nwbfile=nwbfile, name="predictions")
        mock_NarrationsCollection(nwbfile=nwbfile)
        mock_SAEValidationTable(nwbfile=nwbfile)
    mock_SparseAutoencoder(nwbfile=nwbfile)
    mock_DecodingFidelityTable(nwbfile=nwbfile)
    mock_UnitNeurrationTable(nwbfile=nwbfile)
    mock_ConceptTuningTable(nwbfile=nwbfile)
    mock_GroupComparisonTable(nwbfile=nwbfile)
    mock_GroupSeparationTable(nwbfile=nwbfile)
    mock_ScalingTable(nwbfile=nwbfile)
    return nwbfile
