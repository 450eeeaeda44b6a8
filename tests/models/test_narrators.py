"""Narrators: registry, retrieval, tiny LLaVA injection == pixel path, generative path, llava loader errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurrator.errors import NeurratorError
from neurrator.models.narrators import (
    NARRATORS,
    LlavaNarrator,
    RetrievalNarrator,
    load_narrator,
    oracle_references,
)



@pytest.fixture(scope="module")
def tiny() -> LlavaNarrator:
    return load_narrator("tiny", device="cpu", seed=0, max_new_tokens=12, batch_size=4)


def test_registry_is_explicit_and_unknown_names_list_valid_ones():
    assert set(NARRATORS) == {"llava", "tiny", "retrieval"}
    with pytest.raises(NeurratorError, match="llava, tiny, retrieval"):
        load_narrator("gpt", device="cpu", seed=0)
    with pytest.raises(NeurratorError, match="only llava takes an argument"):
        load_narrator("tiny:foo", device="cpu", seed=0)
    with pytest.raises(NeurratorError, match="bank_patches"):
        load_narrator("retrieval", device="cpu", seed=0)


def test_retrieval_returns_the_nearest_frames_text():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(20, 16, 8)).astype(np.float32)
    texts = [f"caption {i}" for i in range(20)]
    for pooling, center in (("flat", True), ("flat", False), ("mean", True), ("mean", False)):
        nar = load_narrator("retrieval", device="cpu", seed=0, bank_patches=bank, bank_texts=texts, pooling=pooling,
                            center=center)
        assert nar.narrate(bank) == texts                                  # exact patches
        q = bank[[5, 17, 2]] + 0.05 * rng.normal(size=(3, 16, 8)).astype(np.float32)
        assert nar.narrate(q) == ["caption 5", "caption 17", "caption 2"]  # near patches
        m = bank.mean(0) if center else 0.0
        assert nar.narrate(m + 3.0 * (bank[[7]] - m)) == ["caption 7"]   # cosine: scale-free
        idx, sim = nar.nearest(bank[[4]])
        assert idx.tolist() == [4] and sim[0] == pytest.approx(1.0, abs=1e-5)
        # leave-frame-out control: never its own frame
        idx, _ = nar.nearest(bank[:6], exclude=np.arange(6))
        assert np.all(idx != np.arange(6))
        assert oracle_references(nar, bank[[3, 9]]) == ["caption 3", "caption 9"]
    # centring: a shrunken prediction (most of the way to the mean frame, as regression predictions are)
    # on top of a large offset shared by all tokens is still matched by its deviation from the mean
    offset = bank + 20.0
    shrunk = offset.mean(0) + 0.2 * (offset[[11]] - offset.mean(0))
    centred = RetrievalNarrator(offset, texts)
    assert centred.narrate(shrunk) == ["caption 11"]
    assert centred.nearest(shrunk)[1][0] == pytest.approx(1.0, abs=1e-4)
    assert centred.model_id == "retrieval:flat-centred-cosine:20-frames"
    # flat cosine sees the layout, mean pooling does not: a patch-permuted frame
    perm = bank[[0]][:, ::-1]
    flat = RetrievalNarrator(bank, texts, pooling="flat", center=False)
    mean = RetrievalNarrator(bank, texts, pooling="mean", center=False)
    assert mean.narrate(perm) == ["caption 0"]
    assert flat.nearest(perm)[1][0] < 0.9
    with pytest.raises(ValueError, match="bank"):
        flat.narrate(np.zeros((1, 16, 4), np.float32))


def test_tiny_injection_equals_pixel_path_token_for_token(tiny):
    from neurrator.models.backbones import build_tiny_vision_tower

    rng = np.random.default_rng(1)
    images = list((rng.random((3, 112, 112, 3)) * 255).astype(np.uint8))
    proc = tiny.processor
    text = tiny.prompt_text(1)  # the template with one image token, as users write it
    inputs = proc(images=images, text=[text] * 3, return_tensors="pt")
    assert torch.equal(inputs["input_ids"], tiny.inputs(3, 64)["input_ids"])  # same prompt ids
    with torch.no_grad():
        pixel = tiny.model.generate(**inputs, max_new_tokens=12, do_sample=False)
        feats = build_tiny_vision_tower(0)(inputs["pixel_values"], output_hidden_states=True).hidden_states[-2][:, 1:]
    pixel_new = pixel[:, inputs["input_ids"].shape[1]:].tolist()
    injected = tiny.generate_ids(feats.numpy())
    assert injected == pixel_new
    assert len(set(map(tuple, injected))) == 3  # the three images give three different outputs
    # perturbed features change the output: the comparison above is not vacuous
    assert tiny.generate_ids(feats.numpy() + rng.normal(size=feats.shape).astype(np.float32))[0] != injected[0]


def test_tiny_generative_path_end_to_end(tiny):
    rng = np.random.default_rng(2)
    patches = rng.normal(size=(5, 64, 64)).astype(np.float32)  # tiny-backbone-shaped predictions
    out = tiny.narrate(patches)
    assert len(out) == 5 and all(isinstance(s, str) and s for s in out)
    assert len(set(out)) > 1
    # batching (left padding, batch_size 4 -> 4 + 1) gives the same text as one frame at a time
    one = load_narrator("tiny", device="cpu", seed=0, max_new_tokens=12, batch_size=1)
    assert one.narrate(patches) == out
    assert tiny.model_id == "tiny:seed0" and tiny.prompt == "Describe this scene in one sentence."
    assert oracle_references(tiny, patches[:2]) == out[:2]
    with pytest.raises(NeurratorError, match="dim 32"):
        tiny.narrate(np.zeros((1, 64, 32), np.float32))


def test_tiny_is_seeded():
    a = load_narrator("tiny", device="cpu", seed=3, max_new_tokens=6)
    b = load_narrator("tiny", device="cpu", seed=3, max_new_tokens=6)
    c = load_narrator("tiny", device="cpu", seed=4, max_new_tokens=6)
    p = np.random.default_rng(0).normal(size=(2, 64, 64)).astype(np.float32)
    assert a.narrate(p) == b.narrate(p)
    assert a.narrate(p) != c.narrate(p)


def test_llava_missing_offline_names_model_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NeurratorError) as err:
        load_narrator("llava", device="cpu", seed=0, local_files_only=True)
    msg = str(err.value)
    assert msg.startswith("llava-hf/llava-1.5-7b-hf:") and "Hugging Face cache" in msg and "hf download" in msg
    empty = tmp_path / "llava"
    empty.mkdir()
    with pytest.raises(NeurratorError, match=str(empty)):
        load_narrator(f"llava:{empty}", device="cpu", seed=0)


def test_llava_loader_reads_a_saved_checkpoint_folder(tiny, tmp_path):
    # the real loader on a local folder: the same narrations as the in-memory tiny model
    folder = tmp_path / "tiny-llava"
    tiny.model.save_pretrained(folder)
    tiny.processor.save_pretrained(folder)
    nar = load_narrator(f"llava:{folder}", device="cpu", seed=0, max_new_tokens=12, dtype="float32")
    assert isinstance(nar, LlavaNarrator) and nar.model_id == str(folder)
    p = np.random.default_rng(5).normal(size=(2, 64, 64)).astype(np.float32)
    assert nar.prompt_text(2) == tiny.prompt_text(2)
    assert nar.narrate(p) == tiny.narrate(p)
