"""An open_clip VisionTransformer -> the equivalent transformers CLIPVisionModel (same weights), for comparing the two paths.
"""

from __future__ import annotations

__all__ = ["convert_open_clip_visual"]


def convert_open_clip_visual(visual):
    """An open_clip ``VisionTransformer`` -> a `transformers.CLIPVisionModel` with the same weights.

    Standard CLIP ViTs only (class token, learnable positions, ln_pre, default blocks). Used by the
    equivalence test and to pair open_clip weights with a transformers LLaVA narrator.
    """
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    tr = visual.transformer
    blk = tr.resblocks[0]
    act = "quick_gelu" if type(blk.mlp.gelu).__name__ == "QuickGELU" else "gelu"
    config = CLIPVisionConfig(
        hidden_size=tr.width, intermediate_size=blk.mlp.c_fc.out_features, num_hidden_layers=len(tr.resblocks),
        num_attention_heads=blk.attn.num_heads, image_size=int(visual.image_size[0]),
        patch_size=int(visual.patch_size[0]), hidden_act=act, layer_norm_eps=float(visual.ln_pre.eps),
    )
    model = CLIPVisionModel(config).eval()
    sd = {
        "embeddings.class_embedding": visual.class_embedding,
        "embeddings.patch_embedding.weight": visual.conv1.weight,
        "embeddings.position_embedding.weight": visual.positional_embedding,
        "pre_layrnorm.weight": visual.ln_pre.weight, "pre_layrnorm.bias": visual.ln_pre.bias,
        "post_layernorm.weight": visual.ln_post.weight, "post_layernorm.bias": visual.ln_post.bias,
    }
    for i, b in enumerate(tr.resblocks):
        p = f"encoder.layers.{i}."
        qw, kw_, vw = b.attn.in_proj_weight.chunk(3, dim=0)
        qb, kb, vb = b.attn.in_proj_bias.chunk(3, dim=0)
        sd.update({
            p + "self_attn.q_proj.weight": qw, p + "self_attn.q_proj.bias": qb,
            p + "self_attn.k_proj.weight": kw_, p + "self_attn.k_proj.bias": kb,
            p + "self_attn.v_proj.weight": vw, p + "self_attn.v_proj.bias": vb,
            p + "self_attn.out_proj.weight": b.attn.out_proj.weight, p + "self_attn.out_proj.bias": b.attn.out_proj.bias,
            p + "layer_norm1.weight": b.ln_1.weight, p + "layer_norm1.bias": b.ln_1.bias,
            p + "layer_norm2.weight": b.ln_2.weight, p + "layer_norm2.bias": b.ln_2.bias,
            p + "mlp.fc1.weight": b.mlp.c_fc.weight, p + "mlp.fc1.bias": b.mlp.c_fc.bias,
            p + "mlp.fc2.weight": b.mlp.c_proj.weight, p + "mlp.fc2.bias": b.mlp.c_proj.bias,
        })
    with torch.no_grad():
        missing, unexpected = model.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    assert not unexpected and set(missing) <= {"embeddings.position_ids"}, (missing, unexpected)
    return model
