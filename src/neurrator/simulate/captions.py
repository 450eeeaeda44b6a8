"""Scene features -> captions: the simulator's feature vocabulary, its synonyms, and a small caption grammar.

Every frame of the simulated movie has exactly one value on each of five independent axes
(`FEATURE_GROUPS`): the object, its position, its brightness, its motion and the scene's lighting. The
canonical words of those values are `FEATURE_NAMES`; each has a synonym set (`FEATURE_SYNONYMS`,
canonical word first) and `mentions_feature` tells whether a text names a feature by any of them
(whole words, case-insensitive). The grammar writes, per frame, the canonical caption (variant 0, a
fixed template with the canonical words, e.g. ``"a bright car on the left, moving right, in a sunlit
scene"``) and paraphrases (variants 1, 2, ...: other sentence frames, word orders and synonyms, e.g.
``"In daylight, a white vehicle heads right at the left edge."``). Every caption names each of the
frame's five features exactly once and no other feature, so ``mentions_feature(f, caption)`` is the
frame's ground truth for every feature ``f``.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

__all__ = [
    "FEATURE_GROUPS",
    "FEATURE_NAMES",
    "FEATURE_SYNONYMS",
    "STATIC_FEATURES",
    "caption_variants",
    "canonical_caption",
    "mentioned_features",
    "mentions_feature",
]

OBJECTS = ("circle", "square", "bar", "grating", "car")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the centre")
BRIGHTNESS = ("bright", "dark")
MOTIONS = ("moving left", "moving right", "still")
LIGHTING = ("dim", "sunlit")
#: The five independent axes of a scene and their values (one value per axis in every frame).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "object": OBJECTS, "position": POSITIONS, "brightness": BRIGHTNESS, "motion": MOTIONS, "lighting": LIGHTING,
}
#: The caption features as canonical words/phrases; column order of `SimulationTruth.frame_features`.
FEATURE_NAMES: tuple[str, ...] = OBJECTS + POSITIONS + BRIGHTNESS + MOTIONS + LIGHTING
#: Features visible in a single frame (motion is not: it needs two frames).
STATIC_FEATURES: tuple[str, ...] = OBJECTS + POSITIONS + BRIGHTNESS + LIGHTING

#: Per feature, the words and phrases that name it (canonical first); no phrase names two features.
FEATURE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "circles", "disc", "discs", "disk", "disks", "ball", "round shape"),
    "square": ("square", "squares", "box", "boxes", "block", "blocks", "square shape"),
    "bar": ("bar", "bars", "rod", "rods", "pole", "poles", "post", "vertical bar"),
    "grating": ("grating", "gratings", "stripes", "striped", "stripy", "striped patch", "banded pattern"),
    "car": ("car", "cars", "vehicle", "vehicles", "automobile", "automobiles", "sedan"),
    "on the left": ("on the left", "left side", "left edge", "left part", "left half", "left-hand side"),
    "on the right": ("on the right", "right side", "right edge", "right part", "right half", "right-hand side"),
    "at the top": ("at the top", "near the top", "top edge", "upper part", "upper half", "top of the frame"),
    "at the bottom": ("at the bottom", "near the bottom", "bottom edge", "lower part", "lower half",
                      "bottom of the frame"),
    "in the centre": ("in the centre", "in the center", "in the middle", "centre of the frame",
                      "center of the frame", "centred", "centered"),
    "bright": ("bright", "white", "pale", "light-coloured", "light-colored", "luminous"),
    "dark": ("dark", "black", "dark-coloured", "dark-colored", "shadowy"),
    "moving left": ("moving left", "moves left", "moving to the left", "moves to the left", "heading left",
                    "heads left", "leftward", "leftwards", "sliding to the left", "slides to the left",
                    "travelling left", "travels left", "traveling left"),
    "moving right": ("moving right", "moves right", "moving to the right", "moves to the right", "heading right",
                     "heads right", "rightward", "rightwards", "sliding to the right", "slides to the right",
                     "travelling right", "travels right", "traveling right"),
    "still": ("still", "motionless", "stationary", "at rest", "unmoving", "not moving", "does not move"),
    "dim": ("dim", "dimly lit", "low light", "murky", "gloom", "gloomy", "dusky", "dusk"),
    "sunlit": ("sunlit", "sunny", "sunshine", "sunlight", "daylight", "daylit", "sun-drenched"),
}


@lru_cache(maxsize=None)
def _pattern(feature: str) -> re.Pattern[str]:
    if feature not in FEATURE_SYNONYMS:
        raise ValueError(f"unknown feature {feature!r}; valid: {list(FEATURE_NAMES)}")
    alts = sorted(FEATURE_SYNONYMS[feature], key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(a) for a in alts) + r")\b")


def mentions_feature(feature: str, text: str) -> bool:
    """Whether ``text`` names ``feature`` by one of its `FEATURE_SYNONYMS` (whole words, any case).

    Examples
    --------
    >>> mentions_feature("car", "A white vehicle heads left.")
    True
    >>> mentions_feature("on the left", "A white vehicle heads left.")
    False
    """
    return _pattern(feature).search(text.lower()) is not None


def mentioned_features(text: str) -> list[str]:
    """The features (canonical names, in `FEATURE_NAMES` order) that ``text`` mentions."""
    return [f for f in FEATURE_NAMES if mentions_feature(f, text)]


# ------------------------------------------------------------------------------------------ grammar

# the surface forms the grammar uses, per feature and slot (each is matched by FEATURE_SYNONYMS)
_NOUN = {
    "circle": ("circle", "round disc", "round disk", "ball", "circular disc"),
    "square": ("square", "square box", "square block", "boxy square"),
    "bar": ("bar", "upright bar", "vertical rod", "tall pole", "upright post"),
    "grating": ("grating", "striped grating", "patch of stripes", "striped patch", "banded pattern"),
    "car": ("car", "small car", "vehicle", "automobile", "sedan car"),
}
_ADJ = {"bright": ("bright", "white", "pale", "light-coloured", "luminous"),
        "dark": ("dark", "black", "dark-coloured", "shadowy", "jet black")}
_WHERE = {  # prepositional phrases
    "on the left": ("on the left", "on the left side", "at the left edge", "in the left part of the frame",
                    "on the left-hand side"),
    "on the right": ("on the right", "on the right side", "at the right edge", "in the right part of the frame",
                     "on the right-hand side"),
    "at the top": ("at the top", "near the top", "along the top edge", "in the upper part of the frame"),
    "at the bottom": ("at the bottom", "near the bottom", "along the bottom edge", "in the lower part of the frame"),
    "in the centre": ("in the centre", "in the middle", "in the center", "at the centre of the frame"),
}
_PARTICIPLE = {
    "moving left": ("moving left", "heading left", "drifting leftward", "sliding to the left", "travelling left"),
    "moving right": ("moving right", "heading right", "drifting rightward", "sliding to the right",
                     "travelling right"),
    "still": ("still", "motionless", "stationary", "at rest", "standing still"),
}
_VERB = {
    "moving left": ("moves left", "heads left", "drifts leftward", "slides to the left", "travels left"),
    "moving right": ("moves right", "heads right", "drifts rightward", "slides to the right", "travels right"),
    "still": ("stays still", "rests motionless", "sits still", "is stationary", "does not move"),
}
_LIGHT_PP = {"dim": ("in dim evening light", "in murky low light", "in the gloom of dusk", "at dusk",
                     "in a dimly lit scene"),
             "sunlit": ("in warm sunshine", "in midday daylight", "in sunlight", "in a sunlit scene",
                        "in a sunny scene")}
_LIGHT_ADJ = {"dim": ("dim", "dimly lit", "gloomy", "dusky"), "sunlit": ("sunlit", "sunny", "daylit", "sun-drenched")}

_TEMPLATES = (
    "{NP} {where}, {part}, {light_pp}.",
    "{Light_pp}, {np} {verb} {where}.",
    "{Light_adj} scene: {np} {where}, {part}.",
    "There is {np} {where}; it is {part}. The scene is {light_adj}.",
    "{Where}, {np} {verb}, {light_pp}.",
    "{NP} {verb} {where}; the frame is {light_adj}.",
    "A {light_adj} view of {np} {part} {where}.",
    "We see {np} {where}, {part}, {light_pp}.",
    "{NP}, {part}, appears {where} {light_pp}.",
)


def canonical_caption(obj: str, position: str, brightness: str, motion: str, lighting: str) -> str:
    """The fixed-template caption (variant 0) with the canonical words, e.g.
    ``"a bright car on the left, moving right, in a sunlit scene"``."""
    return f"a {brightness} {obj} {position}, {motion}, in a {lighting} scene"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def paraphrase(obj: str, position: str, brightness: str, motion: str, lighting: str, *,
               rng: np.random.Generator) -> str:
    """One paraphrase: a random sentence frame of `_TEMPLATES` with a random surface form per feature."""
    def pick(options: tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    template = pick(_TEMPLATES)
    np_ = f"a {pick(_ADJ[brightness])} {pick(_NOUN[obj])}"
    where, light_pp, light_adj = pick(_WHERE[position]), pick(_LIGHT_PP[lighting]), pick(_LIGHT_ADJ[lighting])
    return template.format(
        np=np_, NP=_cap(np_), where=where, Where=_cap(where), part=pick(_PARTICIPLE[motion]),
        verb=pick(_VERB[motion]), light_pp=light_pp, Light_pp=_cap(light_pp), light_adj=light_adj,
        Light_adj=_cap(light_adj),
    )


def caption_variants(obj: str, position: str, brightness: str, motion: str, lighting: str, *,
                     n_variants: int, rng: np.random.Generator) -> list[str]:
    """``n_variants`` captions of one frame: the canonical caption, then ``n_variants - 1`` paraphrases
    (drawn with ``rng``; a paraphrase may repeat when the grammar offers few distinct ones)."""
    if n_variants < 1:
        raise ValueError(f"n_variants must be >= 1, not {n_variants}")
    feats = (obj, position, brightness, motion, lighting)
    return [canonical_caption(*feats)] + [paraphrase(*feats, rng=rng) for _ in range(n_variants - 1)]
