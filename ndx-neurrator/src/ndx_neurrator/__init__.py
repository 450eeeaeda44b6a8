"""ndx-neurrator: NWB types for neurrator's encoders, patch predictions, unit subsets, narrations and SAE scores.

Importing the package loads the namespace from the YAML shipped inside the wheel (``ndx_neurrator/spec``),
or from the repository's top-level ``spec/`` when running from a source checkout, and exposes every type.
Types without behaviour come from ``pynwb.get_class``; ``SafetensorsWeights``, ``EncoderCheckpoint``,
``SparseAutoencoder`` and ``PatchPredictions`` are registered subclasses of the generated classes that add
checks and accessors only (no custom ObjectMapper), so files stay readable with pynwb alone.
"""

from __future__ import annotations

from pathlib import Path

from pynwb import get_class, load_namespaces

NAMESPACE = "ndx-neurrator"
__version__ = "0.1.0"


def namespace_path() -> Path:
    """Path of the ndx-neurrator namespace YAML this package loaded (installed copy first, then source)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "spec", here.parents[2] / "spec"):
        path = candidate / f"{NAMESPACE}.namespace.yaml"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"ndx-neurrator: namespace file {NAMESPACE}.namespace.yaml not found in {here / 'spec'} "
        f"(installed wheel) or {here.parents[2] / 'spec'} (source checkout); reinstall ndx-neurrator"
    )


load_namespaces(str(namespace_path()))

UnitSubsetsTable = get_class("UnitSubsetsTable", NAMESPACE)
NarrationsTable = get_class("NarrationsTable", NAMESPACE)
SAEValidationTable = get_class("SAEValidationTable", NAMESPACE)
DecodingFidelityTable = get_class("DecodingFidelityTable", NAMESPACE)
NarrationsCollection = get_class("NarrationsCollection", NAMESPACE)
UnitNeurrationTable = get_class("UnitNeurrationTable", NAMESPACE)
ConceptTuningTable = get_class("ConceptTuningTable", NAMESPACE)
GroupComparisonTable = get_class("GroupComparisonTable", NAMESPACE)
GroupSeparationTable = get_class("GroupSeparationTable", NAMESPACE)
ScalingTable = get_class("ScalingTable", NAMESPACE)

from ndx_neurrator._classes import (  # noqa: E402  (needs the namespace loaded first)
    COEFFICIENT_SPACES,
    EncoderCheckpoint,
    PatchBasis,
    PatchPredictions,
    SafetensorsWeights,
    SparseAutoencoder,
    WeightsChecksumError,
    encoder_readout_basis,
)
from ndx_neurrator.build import (  # noqa: E402
    SAE_SCORE_COLUMNS,
    create_decoding_fidelity,
    create_encoder_checkpoint,
    create_narrations,
    create_patch_basis,
    create_patch_predictions,
    create_sae_validation,
    create_sparse_autoencoder,
    create_unit_subsets,
    get_neurrator_module,
    iter_windows,
    weights_from_bytes,
)
from ndx_neurrator.analysis import (  # noqa: E402
    create_concept_tuning,
    create_group_comparison,
    create_group_separation,
    create_scaling,
    create_unit_neurration,
)
from ndx_neurrator.narrations import (  # noqa: E402
    create_narrations_collection,
    narrations_dataframe,
    table_name_for,
)

__all__ = [
    "NAMESPACE",
    "namespace_path",
    "SafetensorsWeights",
    "EncoderCheckpoint",
    "PatchPredictions",
    "UnitSubsetsTable",
    "NarrationsTable",
    "SAEValidationTable",
    "SparseAutoencoder",
    "DecodingFidelityTable",
    "PatchBasis",
    "NarrationsCollection",
    "UnitNeurrationTable",
    "ConceptTuningTable",
    "GroupComparisonTable",
    "GroupSeparationTable",
    "ScalingTable",
    "create_patch_basis",
    "COEFFICIENT_SPACES",
    "encoder_readout_basis",
    "create_narrations_collection",
    "narrations_dataframe",
    "table_name_for",
    "create_unit_neurration",
    "create_concept_tuning",
    "create_group_comparison",
    "create_group_separation",
    "create_scaling",
    "WeightsChecksumError",
    "SAE_SCORE_COLUMNS",
    "weights_from_bytes",
    "create_encoder_checkpoint",
    "create_patch_predictions",
    "create_unit_subsets",
    "create_narrations",
    "create_sae_validation",
    "create_sparse_autoencoder",
    "create_decoding_fidelity",
    "get_neurrator_module",
    "iter_windows",
]

del get_class, load_namespaces
