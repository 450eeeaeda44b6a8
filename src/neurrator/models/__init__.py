"""Frozen and trained models: backbones (targets), narrators, the spike encoder, its training,
prediction and checkpoints, the sentence embedder, and loading every model a run needs.

The face of `neurrator.models`: every public name of its modules, imported on first use
(`from neurrator.models import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "backbones": (
        "BACKBONES", "Backbone", "DEFAULT_LLAVA", "TINY_VISION", "TargetSpec", "build_tiny_vision_tower",
        "load_backbone", "tiny_vision_config",
    ),
    "efficientnet": (
        "EFFICIENTNET_BLOCKS", "IMAGE_SIZE", "LITE_MEAN", "LITE_STD", "WEIGHTS_FILE", "WEIGHTS_SHA256",
        "build_efficientnet_lite0", "efficientnet_lite0_forward", "efficientnet_weights_path",
        "load_efficientnet_lite0",
    ),
    "checkpoint": (
        "ARCHITECTURE", "CheckpointPayload", "FORMAT", "checkpoint_payload", "load_checkpoint",
        "load_encoder_nwb", "save_checkpoint", "trained_from_payload",
    ),
    "checkpoint_checks": (
        "CONFIG_BOUNDS", "MAX_HEADER_BYTES", "MAX_JSON_BYTES", "MAX_PARAMETER_BYTES",
        "check_encoder_config", "check_metadata", "check_safetensors_header", "expected_state",
    ),
    "clip_conversion": (
        "convert_open_clip_visual",
    ),
    "convert_weights": (
        "convert_to_safetensors", "main",
    ),
    "embedder": (
        "MINILM_ID", "MINILM_SHA256", "SentenceEmbedder", "load_sentence_embedder",
    ),
    "encoder": (
        "SpikeEncoder",
    ),
    "loading": (
        "Models", "load_encoder", "load_models", "narrator_dim", "needs_reference",
    ),
    "narrators": (
        "DEFAULT_PROMPT", "LlavaNarrator", "NARRATORS", "Narrator", "RetrievalNarrator", "build_tiny_llava",
        "build_tiny_tokenizer", "load_narrator", "oracle_references",
    ),
    "prediction": (
        "predict", "predict_windows",
    ),
    "readout": (
        "BETAS", "GAMMAS", "MAX_BANK_BYTES", "MAX_WINDOWS", "TAUS", "bank_fits", "fit_blend", "fit_subset_blend",
    ),
    "subset_blend": (
        "BlendChoice", "calibrate_blend",
    ),
    "preprocessing": (
        "CLIP_MEAN", "CLIP_STD", "PREPROCESSING_MODES", "preprocess_images", "preprocessing_string",
    ),
    "targets": (
        "PCABasis", "compute_targets", "fit_pca", "frames_hash", "from_pca", "target_cache_key", "to_pca",
    ),
    "training": (
        "TrainedEncoder", "patch_loss", "train_encoder",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
