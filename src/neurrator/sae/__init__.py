"""Patch tokens -> a TopK sparse autoencoder, named concepts and the validation of narrations.

The face of `neurrator.sae`: every public name of its modules, imported on first use
(`from neurrator.sae import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "autoencoder": (
        "SAEEval", "SparseAutoencoder", "TrainStats", "evaluate_sae", "frame_latents", "load_sae",
        "naming_frames", "sae_from_payload", "sae_payload", "save_sae", "train_named_sae", "train_sae",
    ),
    "concepts": (
        "Concepts", "STOPWORDS", "content_words", "name_concepts", "name_concepts_correlation", "pearson_columns",
        "term_occurrence", "top_frames_separated",
    ),
    "validation": (
        "PAIRED_SCORES", "ValidationRow", "mentions", "validate_narrations", "validation_columns",
        "validation_summary",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
