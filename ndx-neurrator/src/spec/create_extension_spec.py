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


def _index(name: str, doc: str, *, required: bool = True) -> NWBDatasetSpec:
    return NWBDatasetSpec(name=name, doc=doc, neurodata_type_inc="VectorIndex", quantity=1 if required else "?")


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
        attributes=[
            _text_attr("description", "Free-text description of these predictions."),
            NWBAttributeSpec(
                name="coefficient_space", dtype="text", required=False,
                doc=(
                    "Compact form: the space of the coefficients. 'patch_basis' (the default when absent): "
                    "the linked PatchBasis. 'encoder_readout': the linear readout of the linked "
                    "EncoderCheckpoint, stored once in its safetensors weights (tensors lin_basis (K, "
                    "num_patches*dim), lin_scale (K,), target_mean (num_patches, dim), target_std (dim,)); "
                    "the coefficients belong to the rows of lin_basis that are not all zero, in order, and "
                    "patches[i] = target_mean + target_std * ((coefficients[i] * lin_scale[used]) @ "
                    "lin_basis[used]).reshape(num_patches, dim)."
                ),
            ),
        ],
        datasets=[
            NWBDatasetSpec(
                name="data", dtype="float32", shape=[None, None, None], dims=["num_windows", "num_patches", "dim"],
                doc=(
                    "Predicted patch tokens of every window, chunked one window per chunk and compressed "
                    "(gzip + shuffle). Absent in the compact form (coefficients + basis)."
                ),
                quantity="?",
            ),
            NWBDatasetSpec(
                name="coefficients", dtype="float32", shape=[None, None], dims=["num_windows", "rank"],
                doc=(
                    "Compact form: coefficients of each window in the linked PatchBasis (or in the encoder's "
                    "readout, see coefficient_space). Reconstruction in a PatchBasis: "
                    "patches[i] = (coefficients[i] @ basis.components.reshape(rank, -1) "
                    "+ basis.mean.reshape(-1)).reshape(num_patches, dim)."
                ),
                quantity="?",
            ),
            NWBDatasetSpec(
                name="relative_mse", dtype="float64", shape=[None], dims=["num_windows"],
                doc=(
                    "Compact form: measured error of each window's reconstruction, "
                    "sum((recon - original)^2) / sum((original - mean)^2), mean being the basis mean "
                    "(basis.mean, or the encoder's target_mean)."
                ),
                quantity="?",
            ),
            NWBDatasetSpec(
                name="cosine", dtype="float64", shape=[None], dims=["num_windows"],
                doc="Compact form: cosine similarity of each window's flattened reconstruction with the original.",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="full_windows", dtype="int64", shape=[None], dims=["num_full"],
                doc="Compact form: indices of the windows whose exact float32 patches are kept in full_data.",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="full_data", dtype="float32", shape=[None, None, None], dims=["num_full", "num_patches", "dim"],
                doc="Compact form: exact predicted patches of the windows listed in full_windows (gzip + shuffle).",
                quantity="?",
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
        links=[
            NWBLinkSpec(name="encoder", target_type="EncoderCheckpoint", doc="The encoder that made these."),
            NWBLinkSpec(
                name="basis", target_type="PatchBasis", quantity="?",
                doc="Compact form with coefficient_space 'patch_basis': the basis the coefficients are expressed in.",
            ),
        ],
    )

    basis = NWBGroupSpec(
        neurodata_type_def="PatchBasis",
        neurodata_type_inc="NWBDataInterface",
        doc=(
            "A linear basis of patch-token maps shared by compact PatchPredictions: a window's patches are "
            "coefficients @ components.reshape(rank, -1) + mean.reshape(-1), reshaped to (num_patches, dim)."
        ),
        attributes=[
            _text_attr("description", "Free-text description of this basis."),
            _text_attr("kind", "Where the basis comes from: 'pca' (of the predictions) or 'encoder_readout'."),
        ],
        datasets=[
            NWBDatasetSpec(
                name="components", dtype="float32", shape=[None, None, None], dims=["rank", "num_patches", "dim"],
                doc="Basis vectors as token maps, one chunk per component.",
            ),
            NWBDatasetSpec(
                name="mean", dtype="float32", shape=[None, None], dims=["num_patches", "dim"],
                doc="Offset added to every reconstruction (the mean of the fitted predictions).",
            ),
        ],
    )

    narrations_collection = NWBGroupSpec(
        neurodata_type_def="NarrationsCollection",
        neurodata_type_inc="NWBDataInterface",
        default_name="narrations",
        doc=(
            "Narrations, one NarrationsTable per unit subset (named by the subset's label), so the intervals "
            "of each table do not overlap and tools such as pynapple read each as one IntervalSet."
        ),
        attributes=[_text_attr("description", "Free-text description of these narrations.")],
        groups=[
            NWBGroupSpec(
                neurodata_type_inc="NarrationsTable", quantity="*",
                doc="Narrations of one unit subset.",
            )
        ],
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
                "subset", "Label of the unit subset (the unit_subset row's label, as plain text for tools that do "
                "not follow table references, e.g. pynapple metadata).", "text", required=False,
            ),
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
            _region_column(
                "narration", "Row of the NarrationsTable that was validated (single-table layout).", required=False
            ),
            _column(
                "narration_table",
                "Name of the NarrationsTable (inside the NarrationsCollection) holding the validated narration.",
                "text", required=False,
            ),
            _column("narration_row", "Row index of the validated narration within narration_table.", "int64",
                    required=False),
            _column("concept_agreement", "Agreement between narration text and SAE concepts.", "float64"),
            _column(
                "latent_profile_similarity",
                "Similarity of the SAE latent profiles of predicted and true patches.", "float64",
            ),
            _column("reconstruction_score", "How well the SAE reconstructs the predicted patches.", "float64"),
            _column("supporting_concepts", "SAE concept labels that support the narration (ragged); absent when no "
                    "narration has one (e.g. the SAE named no concept).", "text", required=False),
            _index("supporting_concepts_index", "Index into supporting_concepts.", required=False),
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
            NWBDatasetSpec(
                name="naming_split", dtype="text", shape=[None], dims=["num_latents"], quantity="?",
                doc="Which frames each latent's label was named from, e.g. 'train' (validation uses held-out frames).",
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
            _column("ci_lo", "Lower end of the confidence interval of value (NaN when not computed).", "float64",
                    required=False),
            _column("ci_hi", "Upper end of the confidence interval of value (NaN when not computed).", "float64",
                    required=False),
            _column("p_value", "Permutation p-value of value against the null (NaN when not computed).", "float64",
                    required=False),
            _column("q_value", "Benjamini-Hochberg q-value across subsets (NaN when not computed).", "float64",
                    required=False),
            _column("beats_null", "True when q_value < 0.05: the subset beats the null.", "bool", required=False),
            _column("null_kind", "What the null is, e.g. 'scene-block permutation of references'.", "text",
                    required=False),
            _column("null_mean", "Mean of the metric under its permutation null, beside the analytic chance_level "
                    "(NaN when not computed).", "float64", required=False),
        ],
    )
    return [weights, encoder, predictions, basis, unit_subsets, narrations, narrations_collection,
            sae_validation, sae, fidelity, *build_analysis_types()]


def _table(type_name: str, default_name: str, doc: str, datasets: list) -> NWBGroupSpec:
    return NWBGroupSpec(
        neurodata_type_def=type_name, neurodata_type_inc="DynamicTable", default_name=default_name, doc=doc,
        datasets=datasets,
    )


def build_analysis_types() -> list:
    """Tables of the neurration analyses: per unit, per (unit, concept), per group, separation, scaling."""
    unit = _table(
        "UnitNeurrationTable", "unit_neurration",
        "Single-neuron neurration, one row per analysed unit: reliability gate, preferred stimulus in words, "
        "concept tuning summary and the unit's contribution in the decoder.",
        [
            _region_column("unit", "Row of the Units table."),
            _column("reliability", "Split-half reliability of the response across repeats (Spearman-Brown).", "float64"),
            _column("reliability_p", "Null-based p-value of the reliability (circular shift of one half).", "float64"),
            _column("visually_driven", "True when the unit passes the reliability gate.", "bool"),
            _column("preferred_text", "Narration of the response-weighted average of the true patch tokens "
                    "(correlational); '' when not visually driven.", "text"),
            _column("top_frames", "Stimulus frames with the strongest response, strongest first (ragged).", "int64"),
            _index("top_frames_index", "Index into top_frames."),
            _column("top_concept", "SAE concept with the strongest significant tuning ('' when none).", "text"),
            _column("top_concept_r", "Correlation of the response with top_concept's activation.", "float64"),
            _column("top_concept_q", "FDR q-value of top_concept_r over units x concepts.", "float64"),
            _column("loo_delta", "Fidelity lost without the unit within its region (leave-one-out).", "float64"),
            _column("loo_ci_lo", "Lower end of the confidence interval of loo_delta.", "float64"),
            _column("loo_ci_hi", "Upper end of the confidence interval of loo_delta.", "float64"),
            _column("loo_p", "p-value of loo_delta.", "float64"),
            _column("drive_text", "Narration of the encoder's response to driving the unit alone above baseline "
                    "(causal within the model).", "text"),
            _column("baseline_text", "Narration of the encoder's response to the baseline input.", "text"),
            _column("drive_shift", "1 - sentence similarity of drive_text and baseline_text.", "float64"),
            _column("drive_p", "p-value of drive_shift against the shifts of spiking-noise inputs.", "float64"),
            _column("drive_q", "Benjamini-Hochberg q-value of drive_p over the units tested.", "float64",
                    required=False),
        ],
    )
    tuning = _table(
        "ConceptTuningTable", "concept_tuning",
        "Concept tuning in long format, one row per (unit, SAE concept): correlation of the unit's response with "
        "the concept's activation over frames, circular-shift permutation p and FDR q over units x concepts.",
        [
            _region_column("unit", "Row of the Units table."),
            _column("concept", "SAE concept label.", "text"),
            _column("r", "Pearson correlation of response and concept activation over frames.", "float64"),
            _column("p", "Two-sided circular-shift permutation p-value.", "float64"),
            _column("q", "Benjamini-Hochberg q-value over units x concepts.", "float64"),
            _column("significant", "True when q < 0.05.", "bool"),
        ],
    )
    groups = _table(
        "GroupComparisonTable", "group_comparison",
        "Concepts enriched in a group of units against size-matched random pools of other units, one row per "
        "(group, source, concept).",
        [
            _column("group_kind", "Kind of group: region, cell_type or local_population.", "text"),
            _column("group", "Group name, e.g. 'VISp' or 'SST'.", "text"),
            _column("source", "What was compared: 'tuning' (units' concept tuning) or 'decoded' (decoded patches).",
                    "text"),
            _column("concept", "SAE concept label.", "text"),
            _column("effect", "Group statistic minus the mean of the size-matched random pools.", "float64"),
            _column("ci_lo", "Lower end of the bootstrap confidence interval of effect.", "float64"),
            _column("ci_hi", "Upper end of the bootstrap confidence interval of effect.", "float64"),
            _column("p", "Permutation p-value against the random pools.", "float64"),
            _column("q", "Benjamini-Hochberg q-value over concepts and groups.", "float64"),
            _column("n_units", "Number of units in the group.", "int64"),
            _column("n_null_draws", "Number of size-matched random pools drawn.", "int64"),
        ],
    )
    separation = _table(
        "GroupSeparationTable", "group_separation",
        "How well narrations separate groups: pairwise narration similarity within and between groups, and a "
        "cross-validated classifier of the source group from narration text, with chance and p-value.",
        [
            _column("analysis", "e.g. 'narration_similarity_within', 'narration_similarity_between', "
                    "'text_classifier'.", "text"),
            _column("group_kind", "Kind of group: region, cell_type or local_population.", "text"),
            _column("group", "Group name; '' when the row covers all groups.", "text"),
            _column("value", "Statistic value.", "float64"),
            _column("ci_lo", "Lower end of the confidence interval of value.", "float64"),
            _column("ci_hi", "Upper end of the confidence interval of value.", "float64"),
            _column("chance_level", "Chance level of value (NaN when undefined).", "float64"),
            _column("p", "One-sided p-value of value against its null (NaN when not computed).", "float64"),
            _column("n", "Number of items the statistic was computed over.", "int64"),
            _column("fidelity", "Decoding fidelity of the group (its narrations' similarity with the references; NaN "
                    "when not applicable).", "float64", required=False),
            _column("fidelity_q", "FDR q-value of the group's fidelity against its own null (NaN when not tested).",
                    "float64", required=False),
            _column("status", "'distinctive' (beats the matched pools after FDR), 'not distinctive', or 'not "
                    "interpretable' (the group, or one of the groups of a row over all, does not beat its fidelity "
                    "null: its words are not about the stimulus).", "text", required=False),
            _column("null_kind", "How p was computed, e.g. 're-decoded matched pools (n=10), fidelity-adjusted t on 8 "
                    "df' or 'label permutation (n=1000)'.", "text", required=False),
        ],
    )
    scaling = _table(
        "ScalingTable", "scaling",
        "Fidelity versus population size per region, one row per (region, metric, population size); the "
        "population size at which the region first exceeds the shuffled baseline is repeated on every row of "
        "that (region, metric) (NaN where the region never exceeds it).",
        [
            _column("region", "Brain region the units were drawn from.", "text"),
            _column("n_units", "Population size.", "int64"),
            _column("metric", "Metric name, e.g. 'top1', 'narration_similarity'.", "text"),
            _column("value", "Mean over random draws of this size.", "float64"),
            _column("ci_lo", "Lower end of the bootstrap confidence interval of value.", "float64"),
            _column("ci_hi", "Upper end of the bootstrap confidence interval of value.", "float64"),
            _column("n_draws", "Number of random draws of this size.", "int64"),
            _column("baseline", "Shuffled-baseline level of the metric.", "float64"),
            _column("crossing_n", "Population size from which value exceeds baseline at every larger size tried (NaN: "
                    "never, or not estimable; see crossing_note).", "float64"),
            _column("crossing_lo", "Lower end of the confidence interval of crossing_n.", "float64"),
            _column("crossing_hi", "Upper end of the confidence interval of crossing_n.", "float64"),
            _column("crossing_note", "'estimated'; 'never' (the largest size does not beat the baseline); or "
                    "'not estimable: ...' when the confidence interval is open at one end within the sizes tried "
                    "(crossing_n and that end are then NaN).", "text", required=False),
        ],
    )
    return [unit, tuning, groups, separation, scaling]


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
