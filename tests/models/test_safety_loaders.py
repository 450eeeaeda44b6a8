"""open_clip weights: safetensors only, never unpickled; the one-time conversion of trusted files (issue 14.4)."""

from __future__ import annotations

import os
import pickle
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from neurrator.models.backbones import load_backbone
from neurrator.models.convert_weights import convert_to_safetensors, main
from neurrator.errors import NeurratorError

MODEL = "ViT-B-32-quickgelu"


class _Marker:
    """Unpickling this creates the file named in $NEURRATOR_TEST_MARKER (it must never happen)."""

    def __reduce__(self):
        return (open, (os.environ["NEURRATOR_TEST_MARKER"], "w"))


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    m = tmp_path / "unpickled"
    monkeypatch.setenv("NEURRATOR_TEST_MARKER", str(m))
    return m


@pytest.fixture
def no_create_model(monkeypatch):
    import open_clip

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("open_clip.create_model reached"))


@pytest.mark.parametrize("name", ["open_clip_pytorch_model.bin", "ViT-B-32.pt", "weights"])
def test_pickled_open_clip_weights_are_refused_unread(tmp_path, marker, no_create_model, name):
    f = tmp_path / name
    f.write_bytes(pickle.dumps({"w": _Marker()}))
    with pytest.raises(NeurratorError, match=rf"^{f}: .*only \.safetensors weights are read.*convert_weights"):
        load_backbone(f"open_clip:{MODEL}:{f}")
    assert not marker.exists()


def test_pickle_renamed_to_safetensors_is_refused(tmp_path, marker, no_create_model):
    f = tmp_path / "evil.safetensors"
    f.write_bytes(pickle.dumps({"w": _Marker()}))
    with pytest.raises(NeurratorError, match="not a safetensors file"):
        load_backbone(f"open_clip:{MODEL}:{f}")
    assert not marker.exists()


def test_a_cached_bin_is_never_picked(monkeypatch, no_create_model, tmp_path):
    """Only open_clip_model.safetensors is looked up in the hub cache, never open_clip_pytorch_model.bin."""
    import huggingface_hub

    asked = []

    def fake_download(repo, name, **kw):
        asked.append(name)
        if name.endswith(".bin"):
            return str(tmp_path / name)
        raise FileNotFoundError(name)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(NeurratorError, match="weights not found offline"):
        load_backbone(f"open_clip:{MODEL}:openai")
    assert asked and all(n.endswith(".safetensors") for n in asked)


def test_a_safetensors_file_is_handed_to_open_clip(tmp_path, monkeypatch):
    import open_clip
    from _helpers import tiny_open_clip_visual

    f = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(2)}, str(f))
    got = {}

    def fake_create(name, pretrained=None, **kw):
        got["pretrained"] = pretrained
        return types.SimpleNamespace(visual=tiny_open_clip_visual(0))

    monkeypatch.setattr(open_clip, "create_model", fake_create)
    bb = load_backbone(f"open_clip:{MODEL}:{f}")
    assert got["pretrained"] == str(f) and bb.spec.weights == str(f)


def test_convert_a_trusted_state_dict(tmp_path):
    src, dst = tmp_path / "m.bin", tmp_path / "m.safetensors"
    torch.save({"module.a": torch.arange(3.0), "b": torch.ones(2, 2)}, src)
    assert main([str(src), str(dst)]) == 0
    out = load_file(str(dst))
    assert set(out) == {"a", "b"} and out["a"].tolist() == [0.0, 1.0, 2.0]


def test_convert_refuses_a_malicious_pickle(tmp_path, marker):
    src = tmp_path / "evil.bin"
    src.write_bytes(pickle.dumps(_Marker()))
    with pytest.raises(NeurratorError, match="not a weights-only state dict"):
        convert_to_safetensors(src, tmp_path / "o.safetensors")
    assert not marker.exists()


def test_convert_torchscript_only_when_asked(tmp_path, monkeypatch):
    lin = torch.jit.script(torch.nn.Linear(2, 3))
    src = tmp_path / "ts.pt"
    lin.save(str(src))
    real = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load without --torchscript"))
    with pytest.raises(NeurratorError, match="TorchScript archive; rerun with --torchscript"):
        convert_to_safetensors(src, tmp_path / "o.safetensors")
    monkeypatch.setattr(torch.jit, "load", real)
    out = load_file(str(convert_to_safetensors(src, tmp_path / "o.safetensors", torchscript=True)))
    assert set(out) == {"weight", "bias"}


# ------------------------------------------------------------------------- llava / CLIP folders


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """A tiny CLIP vision checkpoint folder (config.json + model.safetensors)."""
    import json

    from neurrator.models.backbones import TINY_VISION, build_tiny_vision_tower

    folder = tmp_path_factory.mktemp("clip")
    (folder / "config.json").write_text(json.dumps({**TINY_VISION, "model_type": "clip_vision_model"}))
    state = {f"vision_model.{k}": v.contiguous() for k, v in build_tiny_vision_tower(0).state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_clip_folder_loads(clip_folder):
    assert load_backbone(f"llava:{clip_folder}").spec.dim == 64


def test_clip_folder_with_a_pickle_named_safetensors_is_refused(clip_folder, tmp_path, marker):
    import shutil

    folder = tmp_path / "evil"
    shutil.copytree(clip_folder, folder)
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Marker()))
    with pytest.raises(NeurratorError, match=rf"^{folder}/model.safetensors: not a readable safetensors file"):
        load_backbone(f"llava:{folder}")
    assert not marker.exists()


def test_clip_folder_with_a_lying_config_is_refused_before_reading_tensors(clip_folder, tmp_path):
    import json
    import shutil

    folder = tmp_path / "liar"
    shutil.copytree(clip_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"] = 4096  # the weights are 64 wide
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NeurratorError, match=r"model.safetensors: tensor .* has shape \[.*\]; config.json needs"):
        load_backbone(f"llava:{folder}")
