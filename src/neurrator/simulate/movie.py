"""Movie seed -> the procedural captioned movie: frames, per-frame features, scenes and caption variants.

Scenes of 15-45 frames show ONE object (``circle``, ``square``, ``bar``, ``grating``, ``car``),
``bright`` or ``dark``, ``still`` or ``moving left``/``moving right``, under ``dim`` or ``sunlit``
lighting (the grey background is darker or lighter); the five values are drawn independently per
scene. The position phrase (``on the left``, ``on the right``, ``at the top``, ``at the bottom``, ``in
the centre``) is recomputed per frame from where the object is. Each frame gets the canonical caption
and paraphrases (`neurrator.simulate.captions`).

The movie is a function of its own seed only, so several simulated sessions (different population
seeds) can watch the same movie, as Allen mice all watch the same ``natural_movie_one``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurrator.simulate.captions import (
    BRIGHTNESS,
    FEATURE_NAMES,
    LIGHTING,
    MOTIONS,
    OBJECTS,
    POSITIONS,
    caption_variants,
)

__all__ = ["Movie", "make_movie", "simulate_movie"]

_LIGHT_LEVEL = {"dim": 92.0, "sunlit": 164.0}  # background grey under each lighting
_ANCHORS = {  # (x, y) in fractions of the frame for the still positions
    "on the left": (1 / 6, 0.5), "on the right": (5 / 6, 0.5), "at the top": (0.5, 0.17),
    "at the bottom": (0.5, 0.83), "in the centre": (0.5, 0.5),
}


@dataclass(frozen=True)
class Movie:
    """A rendered procedural movie.

    Attributes
    ----------
    frames
        (F, H, W) uint8 grayscale frames.
    captions
        F canonical captions (variant 0), with the words of `FEATURE_NAMES`.
    caption_variants
        (F, V) str: column 0 is ``captions``, columns 1.. are paraphrases.
    frame_features
        (F, K) float32 over `FEATURE_NAMES`: 1.0 where the feature is present (one per axis).
    scene
        (F,) int64 scene index (a scene keeps object, brightness, motion and lighting).
    """

    frames: np.ndarray
    captions: list[str]
    caption_variants: np.ndarray
    frame_features: np.ndarray
    scene: np.ndarray


def _position_label(x: float, y: float, w: int, h: int) -> str:
    if x < w / 3:
        return "on the left"
    if x > 2 * w / 3:
        return "on the right"
    if y < h / 3:
        return "at the top"
    if y > 2 * h / 3:
        return "at the bottom"
    return "in the centre"


def _object_pixels(obj: str, bright: str, dx: np.ndarray, dy: np.ndarray, xx: np.ndarray, *, size: float,
                   phase: float, step: int, heading: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, luminance) of one object centred at ``dx = dy = 0``; luminance broadcasts to the frame."""
    lum = np.float32(225 if bright == "bright" else 30)
    if obj == "circle":
        return dx**2 + dy**2 <= size**2, np.broadcast_to(lum, dx.shape)
    if obj == "square":
        return (np.abs(dx) <= size * 0.9) & (np.abs(dy) <= size * 0.9), np.broadcast_to(lum, dx.shape)
    if obj == "bar":
        return (np.abs(dx) <= size * 0.35) & (np.abs(dy) <= size * 1.8), np.broadcast_to(lum, dx.shape)
    if obj == "car":  # body, a cabin set back from the front, two black wheels
        body = (np.abs(dx) <= size * 1.5) & (dy >= -0.05 * size) & (dy <= 0.5 * size)
        cx = dx + heading * 0.25 * size
        cabin = (np.abs(cx) <= size * 0.75) & (dy >= -0.6 * size) & (dy < -0.05 * size)
        wheels = ((np.abs(dx) - 0.9 * size) ** 2 + (dy - 0.55 * size) ** 2) <= (0.32 * size) ** 2
        shade = np.where(wheels, np.float32(12), lum).astype(np.float32)
        return body | cabin | wheels, shade
    # grating: drifting sinusoid inside a disk
    mean, amp = (175.0, 75.0) if bright == "bright" else (75.0, 55.0)
    lum_g = (mean + amp * np.sin(2 * np.pi * xx / (0.45 * size) + phase + 0.4 * step)).astype(np.float32)
    return dx**2 + dy**2 <= (1.3 * size) ** 2, lum_g


def _render(n_frames: int, h: int, w: int, rng: np.random.Generator, n_variants: int) -> Movie:
    if n_frames < 1 or h < 8 or w < 8:
        raise ValueError(f"need n_frames >= 1 and frames of at least 8 x 8 pixels, not {n_frames} x {h} x {w}")
    cap_rng = np.random.default_rng(int(rng.integers(2**63 - 1)))  # captions never shift the pixels' draws
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    texture = rng.normal(0.0, 5.0, size=(h, w)).astype(np.float32)
    frames = np.empty((n_frames, h, w), dtype=np.uint8)
    feats = np.zeros((n_frames, len(FEATURE_NAMES)), dtype=np.float32)
    scene = np.empty(n_frames, dtype=np.int64)
    variants: list[list[str]] = []
    col = {name: k for k, name in enumerate(FEATURE_NAMES)}
    size = 0.17 * h
    f, s = 0, 0
    while f < n_frames:
        length = int(min(n_frames - f, rng.integers(15, 46)))
        obj = OBJECTS[rng.integers(len(OBJECTS))]
        bright = BRIGHTNESS[rng.integers(len(BRIGHTNESS))]
        motion = MOTIONS[rng.integers(len(MOTIONS))]
        light = LIGHTING[rng.integers(len(LIGHTING))]
        ax, ay = _ANCHORS[POSITIONS[rng.integers(len(POSITIONS))]]
        x0, y0 = ax * w, ay * h
        speed, heading = 0.0, float(rng.choice((-1.0, 1.0)))
        if motion != "still":
            heading = -1.0 if motion == "moving left" else 1.0
            speed = heading * rng.uniform(0.8, 1.6) * w / 90.0  # pixels per frame
            x0 = (0.8 if heading < 0 else 0.2) * w + rng.uniform(-0.1, 0.1) * w
        phase = rng.uniform(0, 2 * np.pi)
        background = _LIGHT_LEVEL[light] + texture
        for i in range(length):
            x = float(np.clip(x0 + speed * i, 0.05 * w, 0.95 * w))
            mask, lum = _object_pixels(obj, bright, xx - x, yy - y0, xx, size=size, phase=phase, step=i,
                                       heading=heading)
            frames[f + i] = np.clip(np.where(mask, lum, background), 0, 255).astype(np.uint8)
            pos = _position_label(x, y0, w, h)
            for name in (obj, pos, bright, motion, light):
                feats[f + i, col[name]] = 1.0
            scene[f + i] = s
            variants.append(caption_variants(obj, pos, bright, motion, light, n_variants=n_variants, rng=cap_rng))
        f += length
        s += 1
    table = np.asarray(variants, dtype=str).reshape(n_frames, n_variants)
    return Movie(frames=frames, captions=[str(c) for c in table[:, 0]], caption_variants=table,
                 frame_features=feats, scene=scene)


def make_movie(*, n_frames: int = 900, height: int = 64, width: int = 128, seed: int = 0,
               n_variants: int = 5) -> Movie:
    """Render the procedural movie of a movie seed.

    Parameters
    ----------
    n_frames, height, width
        Frames and frame size (default: 900 x 64 x 128, the aspect of Allen's 304 x 608 movies).
    seed
        Movie seed (`numpy.random.default_rng`); the same seed and sizes give the same movie and captions.
    n_variants
        Captions per frame: the canonical one plus ``n_variants - 1`` paraphrases.

    Examples
    --------
    >>> m = make_movie(n_frames=30, seed=0, n_variants=3)
    >>> m.frames.shape, m.caption_variants.shape, m.frame_features.sum(axis=1).max()
    ((30, 64, 128), (30, 3), np.float32(5.0))
    """
    return _render(int(n_frames), int(height), int(width), np.random.default_rng(seed), int(n_variants))


def simulate_movie(
    *, n_frames: int = 900, height: int = 64, width: int = 128, rng: np.random.Generator
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Render the procedural movie from a generator (the canonical captions only; see `make_movie`).

    Returns
    -------
    frames : (F, H, W) uint8
    captions : list of F str (variant 0)
    frame_features : (F, K) float32 over `FEATURE_NAMES`
    """
    m = _render(int(n_frames), int(height), int(width), rng, 1)
    return m.frames, m.captions, m.frame_features
