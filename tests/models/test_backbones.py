"""Backbones: the tiny tower's weights, open_clip == transformers tokens, preprocessing, registry errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _helpers import tiny_open_clip_visual

from neurrator.models.backbones import BACKBONES, Backbone, build_tiny_vision_tower, load_backbone, tiny_vision_config
from neurrator.models.clip_conversion import convert_open_clip_visual
from neurrator.models.preprocessing import preprocess_images
from neurrator.errors import NeurratorError

torch.set_num_threads(1)


@pytest.mark.slow
def test_tiny_weights_are_clip_vision_model_after_manual_seed():
    from transformers import CLIPVisionModel

    torch.manual_seed(3)
    ref = CLIPVisionModel(tiny_vision_config())
    state = torch.random.get_rng_state()
    bb = load_backbone("tiny", seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    ref_sd, sd = ref.state_dict(), bb.module.state_dict()
    assert ref_sd.keys() == sd.keys()
    assert all(torch.equal(ref_sd[k], sd[k]) for k in sd)
    other = build_tiny_vision_tower(4).state_dict()
    assert not torch.equal(other["embeddings.class_embedding"], sd["embeddings.class_embedding"])
    assert bb.spec.n_patches == 64 and bb.spec.dim == 64 and bb.spec.layer == -2
    assert bb.spec.weights == "random:seed=3"


def test_tiny_tokens_are_penultimate_hidden_state_without_cls():
    bb = load_backbone("tiny", seed=0)
    frames = np.random.default_rng(0).integers(0, 256, (2, 30, 60), dtype=np.uint8)
    tokens = bb.embed(frames)
    assert tokens.shape == (2, 64, 64) and tokens.dtype == np.float32
    with torch.no_grad():
        out = build_tiny_vision_tower(0)(pixel_values=bb.preprocess(frames), output_hidden_states=True)
    assert len(out.hidden_states) == 4  # embeddings + 3 layers
    np.testing.assert_allclose(tokens, out.hidden_states[2][:, 1:].numpy(), atol=1e-6)
    # not the last layer, and no post layer norm
    assert not np.allclose(tokens, out.last_hidden_state[:, 1:].numpy(), atol=1e-3)


def test_open_clip_and_transformers_give_the_same_penultimate_patch_tokens():
    visual = tiny_open_clip_visual(0)
    hf = convert_open_clip_visual(visual)
    assert hf.config.hidden_act == "quick_gelu"
    a = Backbone.from_open_clip(visual, backbone_id="open_clip:test", weights="random")
    b = Backbone.from_clip_vision_model(hf, backbone_id="llava:test", weights="random")
    frames = np.random.default_rng(1).integers(0, 256, (3, 304 // 8, 608 // 8), dtype=np.uint8)
    ta, tb = a.embed(frames), b.embed(frames)
    assert ta.shape == tb.shape == (3, 16, 64)
    np.testing.assert_allclose(ta, tb, atol=1e-5)
    # the comparison is sharp: the last layer (what output_tokens would give) differs
    with torch.no_grad():
        last = visual.forward_intermediates(a.preprocess(frames), indices=[-1], output_fmt="NLC",
                                            intermediates_only=True)["image_intermediates"][0]
    assert np.abs(last.numpy() - ta).max() > 1e-2


def test_llava_loader_reads_only_the_vision_tower_of_a_local_checkpoint(tmp_path):
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    llava = LlavaForConditionalGeneration(LlavaConfig(vision_config=tiny_vision_config(), text_config=text,
                                                      image_token_index=63)).eval()
    llava.save_pretrained(tmp_path)
    bb = load_backbone(f"llava:{tmp_path}")
    frames = np.random.default_rng(2).integers(0, 256, (2, 38, 76), dtype=np.uint8)
    with torch.no_grad():
        ref = llava.model.vision_tower(bb.preprocess(frames), output_hidden_states=True).hidden_states[-2][:, 1:]
    np.testing.assert_allclose(bb.embed(frames), ref.numpy(), atol=1e-5)
    assert bb.spec.backbone_id == f"llava:{tmp_path}" and bb.spec.n_patches == 64


def test_preprocessing_pad_and_crop():
    # a 2:1 frame, left half black, right half white
    img = np.zeros((1, 20, 40), np.uint8)
    img[:, :, 20:] = 255
    pad = preprocess_images(img, mode="pad", image_size=40, mean=(0.5,) * 3, std=(0.5,) * 3)
    crop = preprocess_images(img, mode="crop", image_size=40, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert pad.shape == crop.shape == (1, 3, 40, 40)
    # pad: top and bottom quarter are the mean colour (0 after normalisation); the content keeps both halves
    assert torch.allclose(pad[0, :, :8], torch.zeros(3, 8, 40), atol=1e-6)
    assert pad[0, 0, 20, 2] < -0.9 and pad[0, 0, 20, 37] > 0.9
    # crop: centre square of the 2:1 frame -> left half dark, right half bright, no padding rows
    assert crop[0, 0, 0, 2] < -0.9 and crop[0, 0, 0, 37] > 0.9 and crop[0, 0, 39, 37] > 0.9
    rgb = preprocess_images(np.repeat(img[..., None], 3, -1), mode="pad", image_size=40)
    assert torch.allclose(rgb, preprocess_images(img, mode="pad", image_size=40))
    bb_pad, bb_crop = load_backbone("tiny"), load_backbone("tiny", preprocessing="crop")
    assert bb_pad.spec.preprocessing != bb_crop.spec.preprocessing
    assert bb_pad.spec.preprocessing.startswith("pad") and bb_crop.spec.preprocessing.startswith("resize-shortest")


def test_registry_errors_name_the_model_and_the_fix(monkeypatch, tmp_path):
    assert set(BACKBONES) == {"tiny", "llava", "open_clip", "efficientnet_lite0"}
    with pytest.raises(NeurratorError, match="unknown backbone.*tiny.*llava.*open_clip"):
        load_backbone("resnet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(NeurratorError, match=r"llava-hf/llava-1.5-7b-hf.*huggingface-cli download llava-hf/llava-1.5-7b-hf"):
        load_backbone("llava")
    with pytest.raises(NeurratorError, match=r"ViT-B-32-quickgelu:openai.*huggingface-cli download"):
        load_backbone("open_clip:ViT-B-32-quickgelu:openai")
    with pytest.raises(NeurratorError, match="QuickGELU.*ViT-B-32-quickgelu"):
        load_backbone("open_clip:ViT-B-32:openai")
    with pytest.raises(NeurratorError, match="not a known|neither a file nor a pretrained tag"):
        load_backbone("open_clip:ViT-B-32-quickgelu:no-such-tag")
    with pytest.raises(NeurratorError, match="expected open_clip:<model>"):
        load_backbone("open_clip:ViT-B-32")
    bad = tmp_path / "notllava"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(NeurratorError, match="config.json.*no CLIP vision tower"):
        load_backbone(f"llava:{bad}")
