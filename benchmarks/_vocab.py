"""Open-vocabulary concept words -> the simulator feature each stands for (shared by the concept benchmarks).

With an open vocabulary (``vocabulary=None``) a concept is named by a content word of the captions
(`neurrator.sae.concepts.content_words`: ``"car"``, ``"top"``, ``"left"``, ``"moving"``, ...), not by a
feature of the simulator. To score recovery against the truth, each word is mapped to the feature whose
per-frame presence its own per-frame presence in the captions follows, when the two agree closely
(Pearson r >= ``min_r``): ``car`` -> car, ``top`` -> at the top, ``sunlit`` -> sunlit. Words that stand for
no single feature (``left``: "on the left" or "moving left"; ``moving``: either direction) map to "" and
count as misses: such a name does not say which feature the unit follows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neurrator.sae.concepts import term_occurrence


def open_term_features(captions: Sequence[str], frame_features: np.ndarray, feature_names: Sequence[str], *,
                       min_r: float = 0.8) -> dict[str, str]:
    """Content word of the captions -> the feature it stands for ("" when none fits at ``min_r``)."""
    occ, words = term_occurrence(list(captions), None)
    x = occ - occ.mean(0)
    y = np.asarray(frame_features, np.float64)
    y = y - y.mean(0)
    den = np.outer(np.sqrt((x * x).sum(0)), np.sqrt((y * y).sum(0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, (x.T @ y) / np.where(den > 0, den, 1), 0.0)
    best = r.argmax(axis=1)
    return {w: (str(feature_names[best[i]]) if r[i, best[i]] >= min_r else "") for i, w in enumerate(words)}


def as_features(top_concepts: Sequence[str], word_feature: dict[str, str] | None) -> np.ndarray:
    """Top concept per unit -> the feature it names (closed vocabulary: the name itself)."""
    if word_feature is None:
        return np.asarray(top_concepts, dtype=str)
    return np.asarray([word_feature.get(str(c), "") for c in top_concepts], dtype=str)
