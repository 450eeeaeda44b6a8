"""Movie frames (B, H, W[, 3]) uint8 -> the backbone's pixels: pad to square (or centre-crop), resize, normalise;
and the string that records the choice in every target spec.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLIP_MEAN", "CLIP_STD", "PREPROCESSING_MODES", "preprocess_images", "preprocessing_string"]


#: OpenAI CLIP normalisation (also LLaVA-1.5's processor's).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)


CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


PREPROCESSING_MODES = ("pad", "crop")


def preprocessing_string(mode: str, image_size: int, mean=CLIP_MEAN, std=CLIP_STD) -> str:
    """One-line description of the preprocessing, stored in `TargetSpec` and target cache keys.

    >>> preprocessing_string("pad", 112)
    'pad-to-square(mean)|resize=112:bicubic-antialias|gray->rgb|norm=mean(0.4815,0.4578,0.4082),std(0.2686,0.2613,0.2758)'
    """
    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}, not {mode!r}")
    geometry = "pad-to-square(mean)" if mode == "pad" else "resize-shortest+center-crop"
    m = ",".join(f"{v:.4f}" for v in mean)
    s = ",".join(f"{v:.4f}" for v in std)
    return f"{geometry}|resize={image_size}:bicubic-antialias|gray->rgb|norm=mean({m}),std({s})"


def preprocess_images(images: np.ndarray, *, mode: str, image_size: int, mean=CLIP_MEAN, std=CLIP_STD):
    """uint8 frames -> normalised pixel tensor for a CLIP tower.

    Parameters
    ----------
    images
        (B, H, W) grayscale or (B, H, W, 3) RGB, uint8.
    mode
        ``pad``: pad to a square with the mean colour, then resize (LLaVA-1.5's ``expand2square``);
        ``crop``: resize the shortest side, then centre-crop (the llava-hf processor; the sides of
        a 304 x 608 Allen frame are lost).
    image_size
        The tower's input size S.

    Returns
    -------
    pixels : (B, 3, S, S) float32 torch tensor, ``(x / 255 - mean) / std``.
    """
    import torch
    import torch.nn.functional as F

    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}, not {mode!r}")
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {a.dtype}")
    if a.ndim == 3:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W) or (B, H, W, 3), got {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    _, _, h, w = x.shape
    if mode == "pad":
        side = max(h, w)
        canvas = mean_t.expand(x.shape[0], 3, side, side).clone()
        top, left = (side - h) // 2, (side - w) // 2
        canvas[:, :, top : top + h, left : left + w] = x
        x = F.interpolate(canvas, size=(image_size, image_size), mode="bicubic", antialias=True,
                          align_corners=False)
    else:
        scale = image_size / min(h, w)
        nh, nw = max(image_size, round(h * scale)), max(image_size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = (nh - image_size) // 2, (nw - image_size) // 2
        x = x[:, :, top : top + image_size, left : left + image_size]
    x = x.clamp(0.0, 1.0)
    return ((x - mean_t) / std_t).contiguous()
