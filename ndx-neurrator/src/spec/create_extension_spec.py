"""Generate the ndx-neurrator YAML schema (spec/*.yaml at the repository root).

Run from anywhere: ``python ndx-neurrator/src/spec/create_extension_spec.py [OUTDIR]``.
OUTDIR defaults to the repository's top-level ``spec/`` folder, the single copy of the schema,
which the wheel of ndx-neurrator ships inside the package. The committed YAML must equal what this
script writes (ndx-neurrator/tests/test_spec.py checks it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pynwb.spec import (
    NWBAttributeSpec,
    NWBDatasetSpec,
    NWBGroupSpec,
    NWBLinkSpec,
    NWBNamespaceBuilder,
)

NAMESPACE = "ndx-neurrator"
VERSION = "0.1.0"
DEFAULT_OUTDIR = Path(__file__).resolve().parents[3] / "spec"

# Types from core (and hdmf-common, re-exported by core) that the new types build on.
CORE_TYPES = [
    "NWBData",
    "NWBDataInterface",
    "DynamicTable",
    "DynamicTableRegion",
    "VectorData",
    "VectorIndex",
    "TimeIntervals",
]


def _text_attr(name: str, doc: str) -> NWBAttributeSpec:
    return NWBAttributeSpec(name=name, doc=doc, dtype="text")


def _json_dataset(name: str, doc: str, *, required: bool = True) -> NWBDatasetSpec:
    return NWBDatasetSpec(name=name, doc=doc + " (JSON text).", dtype="text", quantity=1 if required else "?")


def _column(name: str, doc: str, dtype: str, *, required: bool = True) -> NWBDatasetSpec:
    return NWBDatasetSpec(
        name=name, doc=doc, dtype=dtype, shape=[None], dims=["num_rows"],
        neurodata_type_inc="VectorData", quantity=1 if required else "?",
    )


def _region_column(name: str, doc: str, *, required: bool = True) -> NWBDatasetSpec:
    return NWBDatasetSpec(
        name=name, doc=doc, dtype="int", shape=[None], dims=["num_rows"],
        neurodata_type_inc="DynamicTableRegion", quantity=1 if required else "?",
    )


def _index(name: str, doc: str) -> NWBDatasetSpec:
    return NWBDatasetSpec(name=name, doc=doc, neurodata_type_inc="VectorIndex")


def build_types() -> list:
    """Return the new data type specs, in the order they are written to the YAML."""
    weights = NWBDatasetSpec(
        neurodata_type_def="SafetensorsWeights",
        neurodata_type_inc="NWBData",
        doc=(
            "Model weights serialized as one safetensors file, stored byte for byte as uint8. "
            "Write the bytes to disk and load them with safetensors to get the tensors back."
        ),
        dtype="uint8",
        shape=[None],
        dims=["num_bytes"],
        attributes=[
            _text_attr("sha256", "Lower-case hexadecimal SHA-256 digest of the bytes; readers verify it."),
            _text_attr("format", "Serialization format of the bytes, e.g. 'safetensors'."),
        ],
    )

    encoder = NWBGroupSpec(
        neurodata_type_def="EncoderCheckpoint",
        neurodata_type_inc="NWBDataInterface",
        doc=(
            "A trained spike encoder: maps binned spike counts of any subset of units to the patch tokens "
            "a frozen vision backbone produces for the stimulus frame (the target space)."
        ),
        attributes=[
            _text_attr("description", "Free-text description of this encoder."),
            _text_attr("architecture", "Name of the encoder architecture."),
            _text_attr("stimulus", "Name of the stimulus the encoder was trained on, e.g. 'natural_movie_one'."),
            _text_attr("backbone_id", "Target space: identifier of the frozen vision backbone."),
            NWBAttributeSpec(
                name="backbone_layer", dtype="int32",
                doc="Target space: backbone layer whose output is predicted (Python-style index, e.g. -2).",
            ),
            NWBAttributeSpec(name="n_patches", dtype="int32", doc="Target space: number of patch tokens per frame."),
            NWBAttributeSpec(name="dim", dtype="int32", doc="Target space: dimension of one patch token."),
            _text_attr("preprocessing", "Target space: image preprocessing applied to frames before the backbone."),
        ],
        datasets=[
            _json_dataset("config", "Encoder configuration"),
            NWBDatasetSpec(name="weights", neurodata_type_inc="SafetensorsWeights", doc="Encoder weights."),
            _json_dataset("training_metrics", "Summary metrics on the training split"),
            _json_dataset("validation_metrics", "Summary metrics on the validation split"),
            _json_dataset("software_versions", "Versions of the software that trained the encoder, name -> version"),
            NWBDatasetSpec(
                name="units", neurodata_type_inc="DynamicTableRegion", dtype="int", shape=[None], dims=["num_units"],
                doc="Rows of the Units table the encoder was trained on.",
            ),
        ],
    )

    predictions = NWBGroupSpec(
        neurodata_type_def="PatchPredictions",
        neurodata_type_inc="NWBDataInterface",
        doc=(
            "Patch tokens predicted by an encoder from spikes, one [n_patches, dim] block per window. "
            "Not a TimeSeries on purpose: the patch and dim axes are usually longer than the window axis, "
            "which nwbinspector's TimeSeries orientation check reports as CRITICAL."
        ),
        attributes=[_text_attr("description", "Free-text description of these predictions.")],
        datasets=[
            NWBDatasetSpec(
                name="data", dtype="float32", shape=[None, None, None], dims=["num_windows", "num_patches", "dim"],
                doc="Predicted patch tokens, chunked one window per chunk and compressed (gzip + shuffle).",
            ),
            NWBDatasetSpec(
                name="timestamps", dtype="float64", shape=[None], dims=["num_windows"],
                doc="Centre of each spike-count window, in seconds.",
                attributes=[NWBAttributeSpec(name="unit", dtype="text", value="seconds", doc="Always 'seconds'.")],
            ),
            NWBDatasetSpec(
                name="frame", dtype="int64", shape=[None], dims=["num_windows"],
                doc="Stimulus frame index each window is centred on.",
            ),
            NWBDatasetSpec(
                name="unit_subset", neurodata_type_inc="DynamicTableRegion", dtype="int", shape=[None],
                dims=["num_windows"], doc="Row of the UnitSubsetsTable whose units produced each window.",
            ),
        ],
        links=[NWBLinkSpec(name="encoder", target_type="EncoderCheckpoint", doc="The encoder that made these.")],
    )

    unit_subsets = NWBGroupSpec(
        neurodata_type_def="UnitSubsetsTable",
        neurodata_type_inc="DynamicTable",
        default_name="unit_subsets",
        doc="Groups of units that predictions and narrations come from, one row per group.",
        datasets=[
            _column("label", "Unique label, e.g. 'all', 'region:VISp', 'random:50:seed3', 'unit:951'.", "text"),
            _column(
                "kind",
                "Kind of group: all, region, cell_type, local_population, random or single_unit.",
                "text",
            ),
            _region_column("units", "Rows of the Units table in this group (ragged, see units_index)."),
            _index("units_index", "Index into units: the end of each group's rows."),
            _column("seed", "Random seed that drew the group; -1 when not random.", "int64"),
        ],
    )

    narrations = NWBGroupSpec(
        neurodata_type_def="NarrationsTable",
        neurodata_type_inc="TimeIntervals",
        default_name="narrations",
        doc="Natural-language narrations written from predicted patch tokens, one row per narrated window.",
        datasets=[
            _column("text", "The narration.", "text"),
            _column("frame", "Stimulus frame index of the narrated window.", "int64"),
            _region_column("unit_subset", "Row of the UnitSubsetsTable whose units produced the narration."),
            _column("narrator_model", "Identifier of the narrator model.", "text"),
            _column("prompt", "Prompt given to the narrator.", "text"),
            _column(
                "reference_text", "Narration of the true frame by the same narrator (oracle).", "text",
                required=False,
            ),
            _column(
                "similarity",
                "Sentence-embedding cosine similarity between text and reference_text (NaN when absent).",
                "float64", required=False,
            ),
        ],
    )

    sae_validation = NWBGroupSpec(
        neurodata_type_def="SAEValidationTable",
        neurodata_type_inc="DynamicTable",
        default_name="sae_validation",
        doc=(
            "Scores of the sparse-autoencoder validator, one row per narration. Further score columns "
            "(VectorData, float) may be added."
        ),
        datasets=[
            _region_column("narration", "Row of the NarrationsTable that was validated."),
            _column("concept_agreement", "Agreement between narration text and SAE concepts.", "float64"),
            _column(
                "latent_profile_similarity",
                "Similarity of the SAE latent profiles of predicted and true patches.", "float64",
            ),
            _column("reconstruction_score", "How well the SAE reconstructs the predicted patches.", "float64"),
            _column("supporting_concepts", "SAE concept labels that support the narration (ragged).", "text"),
            _index("supporting_concepts_index", "Index into supporting_concepts."),
        ],
    )

    sae = NWBGroupSpec(
        neurodata_type_def="SparseAutoencoder",
        neurodata_type_inc="NWBDataInterface",
        doc="A sparse autoencoder over the patch-token space, with a concept label per latent.",
        attributes=[
            _text_attr("description", "Free-text description of this sparse autoencoder."),
            _text_attr("architecture", "Name of the SAE architecture, e.g. 'topk'."),
        ],
        datasets=[
            _json_dataset("config", "SAE configuration"),
            NWBDatasetSpec(name="weights", neurodata_type_inc="SafetensorsWeights", doc="SAE weights."),
            NWBDatasetSpec(
                name="concept_labels", dtype="text", shape=[None], dims=["num_latents"],
                doc="Concept label of each latent.",
            ),
            NWBDatasetSpec(
                name="concept_label_sources", dtype="text", shape=[None], dims=["num_latents"],
                doc="How each latent's label was obtained, e.g. 'oracle captions of top-activating frames'.",
            ),
        ],
    )

    fidelity = NWBGroupSpec(
        neurodata_type_def="DecodingFidelityTable",
        neurodata_type_inc="DynamicTable",
        default_name="decoding_fidelity",
        doc="Decoding evaluation results, one row per (unit subset, metric).",
        datasets=[
            _region_column("unit_subset", "Row of the UnitSubsetsTable that was evaluated."),
            _column("n_units", "Number of units in the subset.", "int64"),
            _column("region", "Brain region of the subset ('all' when not restricted).", "text"),
            _column("cell_type", "Cell type of the subset ('all' when not restricted).", "text"),
            _column("seed", "Random seed of the subset draw; -1 when not random.", "int64"),
            _column("split", "Data split evaluated: train, val or test.", "text"),
            _column("metric", "Metric name, e.g. 'patch_cosine', 'top1', 'narration_similarity'.", "text"),
            _column("value", "Metric value.", "float64"),
            _column("chance_level", "Chance level of the metric (NaN when undefined).", "float64"),
        ],
    )
    return [weights, encoder, predictions, unit_subsets, narrations, sae_validation, sae, fidelity]


def write_spec(outdir: Path = DEFAULT_OUTDIR) -> tuple[Path, Path]:
    """Write ndx-neurrator.namespace.yaml and ndx-neurrator.extensions.yaml into ``outdir``."""
    from hdmf.spec.write import export_spec

    builder = NWBNamespaceBuilder(
        name=NAMESPACE,
        version=VERSION,
        doc="neurrator: encoders, patch predictions, unit subsets, narrations and SAE scores decoded from spikes",
        author=["neurrator developers"],
        contact=["neurrator@example.org"],
    )
    for type_name in CORE_TYPES:
        builder.include_type(type_name, namespace="core")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    export_spec(builder, build_types(), str(outdir))
    return outdir / f"{NAMESPACE}.namespace.yaml", outdir / f"{NAMESPACE}.extensions.yaml"


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTDIR
    for path in write_spec(out):
        print(path)
