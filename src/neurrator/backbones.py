"""Backbone registry: a backbone id -> a frozen vision model whose penultimate patch tokens are targets.

(Skeleton: the registry, loaders and `Backbone` are filled in by the targets/encoder work. The tiny
vision config below is shared with the tiny LLaVA narrator and must stay the single definition.)
"""

from __future__ import annotations

from typing import Any

#: The `tiny` CLIP ViT: the same transformers class as LLaVA-1.5's vision tower, a few layers,
#: random weights. 112 px / 14 px patches -> 8 x 8 = 64 patch tokens of dim 64.
TINY_VISION: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "image_size": 112,
    "patch_size": 14,
    "projection_dim": 64,
    "hidden_act": "quick_gelu",
}


def tiny_vision_config():
    """The `tiny` backbone's `transformers.CLIPVisionConfig` (also the tiny LLaVA's vision tower)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**TINY_VISION)
