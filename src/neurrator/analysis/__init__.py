"""What single units, regions and cell types encode: per-unit neurration, decoder contributions,
group comparisons and scaling with population size.

The face of `neurrator.analysis`: every public name of its modules, imported on first use
(`from neurrator.analysis import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "concept_cards": (
        "ConceptCards", "concept_cards",
    ),
    "contribution": (
        "Drive", "LeaveOneOut", "drive_narrations", "leave_one_out", "unit_table",
    ),
    "groups": (
        "GroupComparison", "decoded_enrichment", "matched_pools", "null_pool_false_positive_rate",
        "tuning_enrichment",
    ),
    "run": (
        "AnalysisInputs", "NeurrationResult", "PredictionCache", "UNNAMED_REASON", "concept_activations",
        "evaluation_windows", "group_analyses", "neurrate_session", "scaling_analyses", "unit_analyses",
    ),
    "scaling": (
        "ScalingCurve", "collect_scores", "population_draws", "scaling_curve",
    ),
    "separation": (
        "GroupSeparation", "STATUSES", "classify_groups", "disjoint_pools", "narration_separation",
    ),
    "single_units": (
        "ConceptTuning", "UnitNeurration", "concept_tuning", "hierarchical_fdr", "neurrate_units",
        "paired_correlation_p", "preferred_stimuli", "shot_rotations",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
