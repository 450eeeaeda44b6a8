"""Frame activations of SAE latents + texts of those frames -> a concept name per latent (and how).

A latent's frame activation is its mean over the frame's patches (`neurrator.sae.autoencoder.frame_latents`); its
name is the word (or vocabulary phrase) most enriched, by smoothed log-odds, in the texts of its
top-activating frames relative to all frames. The method string is recorded per latent. Which texts name
the concepts matters: naming from the same texts a validation later checks narrations against is
circular, so the pipeline names from training frames only and validates on held-out ones.

Plain numpy: no torch needed to read or name concepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Concepts", "STOPWORDS", "content_words", "name_concepts", "name_concepts_correlation", "pearson_columns",
           "term_occurrence", "top_frames_separated"]


@dataclass
class Concepts:
    """One concept name per latent and how it was obtained.

    Attributes
    ----------
    names
        (n_latents,) the concept word, ``""`` for latents without a clear name (dead or not enriched).
    scores
        (n_latents,) enrichment of the name (smoothed log-odds ratio; 0 where unnamed).
    methods
        (n_latents,) how each name was obtained, e.g. ``caption-enrichment:log-odds:top16-frames``.
    """

    names: list[str]
    scores: list[float]
    methods: list[str]

    def named(self) -> list[int]:
        """Indices of the latents that have a name."""
        return [i for i, n in enumerate(self.names) if n]


STOPWORDS = frozenset("""
a an the and or but of in on at to from by with without into onto over under above below near
is are was were be been being has have had do does did this that these those there here it its
their his her them they he she we you i me my our your as for than then so very some any each one
two three several many few more most other another while where when which who what image picture
photo scene shows showing shown view frame describe describes depicts depicting appears appear
background foreground out off also just like can could would will shall
""".split())

_WORD = re.compile(r"[a-z]+")


def content_words(text: str) -> list[str]:
    """Lower-case alphabetic words of ``text`` without stop words, a trailing plural 's' removed.

    Examples
    --------
    >>> content_words("Two dogs are running on the grass.")
    ['dog', 'running', 'grass']
    """
    out = []
    for w in _WORD.findall(text.lower()):
        if w in STOPWORDS or len(w) < 3:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def top_frames_separated(activation: np.ndarray, *, n: int, min_separation: int) -> np.ndarray:
    """Indices of up to ``n`` active frames (> 0) with the highest activation, greedily keeping only
    frames at least ``min_separation`` frames away from every frame already kept.

    Examples
    --------
    >>> top_frames_separated(np.array([0., 5, 4, 0, 3, 1]), n=3, min_separation=2).tolist()
    [1, 4]
    """
    a = np.asarray(activation, dtype=np.float64)
    order = np.argsort(-a, kind="stable")
    kept: list[int] = []
    for f in order:
        if a[f] <= 0 or len(kept) == n:
            break
        if min_separation <= 1 or all(abs(int(f) - k) >= min_separation for k in kept):
            kept.append(int(f))
    return np.asarray(kept, dtype=np.int64)


def term_occurrence(texts: Sequence[str], vocabulary: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(F, V) 0/1 presence of each term in each text, and the V terms (sorted; only terms that occur).

    ``vocabulary`` terms (words or phrases) are matched as whole words in the lower-cased texts; without
    one the terms are the texts' content words (`content_words`).

    Examples
    --------
    >>> occ, terms = term_occurrence(["a dog on the left", "a cat"], ["dog", "cat", "on the left", "bird"])
    >>> terms, occ.tolist()
    (['cat', 'dog', 'on the left'], [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    """
    if vocabulary is None:
        docs = [set(content_words(t)) for t in texts]
    else:
        pats = {v: re.compile(r"\b" + re.escape(v.lower()) + r"\b") for v in dict.fromkeys(vocabulary)}
        docs = [{v for v, pat in pats.items() if pat.search(t.lower())} for t in texts]
    vocab = sorted(set().union(*docs)) if docs else []
    col = {w: i for i, w in enumerate(vocab)}
    occ = np.zeros((len(docs), len(vocab)), dtype=np.float64)
    for f, d in enumerate(docs):
        for w in d:
            occ[f, col[w]] = 1.0
    return occ, vocab


def name_concepts_correlation(latents: np.ndarray, texts: Sequence[str], *, min_r: float = 0.2,
                              min_active: int = 5, vocabulary: Sequence[str] | None = None) -> Concepts:
    """Name each latent by the term whose presence in the frames' texts correlates best with its activation.

    The correlation is Pearson's r over ALL named frames between the latent's frame activation and the
    term's 0/1 presence (a point-biserial r), so it weighs how strongly the latent is active with the term
    against how active it is without it; the top-frame enrichment of `name_concepts` looks only at the
    latent's most active frames, which in a movie come from a few shots that share every term.

    Parameters
    ----------
    latents
        (F, n_latents) frame activations of the TRUE patches of the named frames.
    texts
        F captions or reference narrations, one per frame.
    min_r
        A term names a latent only when r >= ``min_r``.
    min_active
        Latents active (> 0) in fewer frames stay unnamed (``unnamed:rare``): their r rests on a handful
        of frames.
    vocabulary
        As in `name_concepts`.

    Returns
    -------
    Concepts with method ``caption-correlation:pearson:r>={min_r}``, ``unnamed:dead``, ``unnamed:rare``
    or ``unnamed:no-correlated-word``; ``scores`` hold r.
    """
    lat = np.asarray(latents, dtype=np.float64)
    if lat.ndim != 2 or lat.shape[0] != len(texts):
        raise ValueError(f"latents must be (F, n_latents) with F = {len(texts)} texts, not {lat.shape}")
    occ, vocab = term_occurrence(texts, vocabulary)
    n_active = (lat > 0).sum(0)
    r = pearson_columns(lat, occ)  # (n_latents, V)
    method = f"caption-correlation:pearson:r>={min_r:g}"
    names, scores, methods = [], [], []
    for j in range(lat.shape[1]):
        best = int(np.argmax(r[j])) if vocab else -1
        if n_active[j] == 0:
            why = "unnamed:dead"
        elif n_active[j] < min_active:
            why = "unnamed:rare"
        elif best < 0 or not np.isfinite(r[j, best]) or r[j, best] < min_r:
            why = "unnamed:no-correlated-word"
        else:
            names.append(vocab[best]), scores.append(float(r[j, best])), methods.append(method)
            continue
        names.append(""), scores.append(0.0), methods.append(why)
    return Concepts(names=names, scores=scores, methods=methods)


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) Pearson r between the columns of ``a`` (F, A) and ``b`` (F, B); 0 where a column is constant."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.sqrt((a * a).sum(0)), np.sqrt((b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a.T @ b) / np.outer(na, nb)
    return np.where(np.isfinite(r), r, 0.0)


def name_concepts(latents: np.ndarray, texts: Sequence[str], *, top_frames: int = 16, min_separation: int = 30,
                  alpha: float = 1.0, min_log_odds: float = 1.0, min_top_fraction: float = 0.6,
                  vocabulary: Sequence[str] | None = None) -> Concepts:
    """Name each latent by the word most enriched in the texts of its top-activating frames.

    Parameters
    ----------
    latents
        (F, n_latents) frame activations (`frame_latents` of the TRUE patches of the named frames).
    texts
        F captions or reference narrations, one per frame.
    top_frames
        Frames per latent taken as its top-activating set (only frames where it is active).
    min_separation
        Frames are in movie order; the top frames are kept at least this many frames apart (30 = 1 s at
        30 Hz) so that they come from different moments rather than one shot, whose frames share every
        feature and would make any of its words look enriched. 0 or 1: no constraint.
    alpha
        Additive smoothing of the document frequencies.
    min_log_odds, min_top_fraction
        A word names a latent only when its smoothed log-odds ratio (top frames vs all frames) is at
        least ``min_log_odds`` and it appears in at least ``min_top_fraction`` of the top frames.
    vocabulary
        Name with these terms only (words or phrases, e.g. the simulator's caption vocabulary
        ``"on the left"``), matched as whole words in the lower-cased texts; default: the texts'
        content words (`content_words`).

    Returns
    -------
    Concepts with method ``caption-enrichment:log-odds:top{top_frames}-frames[-sep{min_separation}]``,
    ``unnamed:dead`` (never active), or ``unnamed:no-enriched-word``.
    """
    lat = np.asarray(latents, dtype=np.float64)
    if lat.ndim != 2 or lat.shape[0] != len(texts):
        raise ValueError(f"latents must be (F, n_latents) with F = {len(texts)} texts, not {lat.shape}")
    n_frames, n_lat = lat.shape
    occ, vocab = term_occurrence(texts, vocabulary)
    df_all = occ.sum(0)
    p_all = (df_all + alpha) / (n_frames + 2 * alpha)
    method = f"caption-enrichment:log-odds:top{top_frames}-frames" + (
        f"-sep{min_separation}" if min_separation > 1 else "")
    names, scores, methods = [], [], []
    for j in range(n_lat):
        a = lat[:, j]
        active = np.flatnonzero(a > 0)
        if len(active) == 0 or not vocab:
            names.append(""), scores.append(0.0), methods.append("unnamed:dead" if len(active) == 0
                                                                  else "unnamed:no-enriched-word")
            continue
        top = top_frames_separated(a, n=top_frames, min_separation=min_separation)
        df_top = occ[top].sum(0)
        p_top = (df_top + alpha) / (len(top) + 2 * alpha)
        lo = np.log(p_top / (1 - p_top)) - np.log(p_all / (1 - p_all))
        ok = (lo >= min_log_odds) & (df_top >= min_top_fraction * len(top))
        if not ok.any():
            names.append(""), scores.append(0.0), methods.append("unnamed:no-enriched-word")
            continue
        best = int(np.argmax(np.where(ok, lo, -np.inf)))
        names.append(vocab[best]), scores.append(float(lo[best])), methods.append(method)
    return Concepts(names=names, scores=scores, methods=methods)


