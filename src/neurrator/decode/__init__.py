"""A trained encoder + unit subsets -> predictions, fidelity with chance levels, narrations, references,
narration scores and baselines.

The face of `neurrator.decode`: every public name of its modules, imported on first use
(`from neurrator.decode import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "baselines": (
        "evaluate_encoder", "knn_baseline", "knn_predict", "ridge_baseline", "window_features",
    ),
    "chance": (
        "duplicate_groups", "identification_null", "rank_chance", "shift_pairings", "window_chance",
    ),
    "decoding": (
        "EVAL_METRICS", "MOVIE_ONLY", "Metric", "NULL_KINDS", "NULL_TESTED", "ScoringContext", "SubsetResult",
        "apply_fdr", "baseline_metrics", "chance_disagreements", "decode_subsets", "metric_pairs",
        "narrated_presentations", "scoring_context",
    ),
    "fidelity": (
        "FIDELITY_METRICS", "HEADLINE_METRICS", "cosine_shift_null", "fidelity_rows", "frame_identification", "patch_cosines",
        "score_predictions", "shuffled_control", "training_mean_map",
    ),
    "references": (
        "ORACLE_BANK_FRAMES", "References", "bank_frames", "caption_references", "oracle_references",
        "session_references",
    ),
    "scoring": (
        "GENERIC_NARRATION", "N_BOOT", "N_PERM", "NULL_BLOCKS", "NULL_SHIFT", "NarrationScores",
        "WORD_SALAD", "clip_cosines",
        "clip_scores", "most_frequent_text", "score_narrations", "shuffled_index",
    ),
    "subsets": (
        "KINDS", "Skipped", "UnitSubset", "build_subsets", "pick_single_units",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
