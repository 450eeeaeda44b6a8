"""Predicted + true patch tokens, narrations and a named SAE -> one validation row per narration.

Three scores per narration (the columns of ndx-neurrator's ``SAEValidationTable``):

* ``concept_agreement``: F1 between the concepts active in the PREDICTED patches (the names of the
  ``top_concepts`` most active named latents of the patch-mean latent profile) and the concepts the
  narration mentions (any concept name of the SAE found in the text: whole-phrase match, or for
  one-word names the word among the narration's content words, plural 's' removed). NaN when no
  named latent is active; 0 when the narration mentions none of the active concepts.
* ``latent_profile_similarity``: cosine between the patch-mean latent profiles of the predicted and
  the true patches (0 when either is all zero).
* ``reconstruction_score``: ``clip(1 - FVU, 0, 1)`` of the SAE on the predicted patches, the FVU taken
  relative to the SAE's pre-bias ``b_dec`` (its learned data centre): how much of the predicted tokens
  lies on the manifold the SAE learnt from real frames. The same score on the true patches is
  returned alongside (``reconstruction_score_true``) as the reference level.

``supporting_concepts`` are the active concepts the narration mentions (ordered by activation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from neurrator.sae import Concepts, SparseAutoencoder, content_words


@dataclass(frozen=True)
class ValidationRow:
    """SAE validation of one narration (see the module docstring for the scores)."""

    concept_agreement: float
    latent_profile_similarity: float
    reconstruction_score: float
    reconstruction_score_true: float
    supporting_concepts: list[str] = field(default_factory=list)
    active_concepts: list[str] = field(default_factory=list)
    mentioned_concepts: list[str] = field(default_factory=list)


def mentions(concept: str, text: str) -> bool:
    """Whether ``text`` mentions ``concept`` (whole phrase, or a one-word concept among its content words).

    Examples
    --------
    >>> mentions("on the left", "A dark circle on the left, still"), mentions("dog", "Two dogs run")
    (True, True)
    >>> mentions("moving left", "a bar on the left")
    False
    """
    c = concept.lower().strip()
    if not c:
        return False
    if re.search(r"\b" + re.escape(c) + r"\b", text.lower()):
        return True
    words = content_words(c)
    return len(c.split()) == 1 and len(words) == 1 and words[0] in content_words(text)


def _f1(active: Sequence[str], mentioned: Sequence[str]) -> float:
    if not active:
        return float("nan")
    hit = len(set(active) & set(mentioned))
    if hit == 0:
        return 0.0
    p, r = hit / len(set(mentioned)), hit / len(set(active))
    return 2 * p * r / (p + r)


def _recon_scores(sae: SparseAutoencoder, patches: Any, *, device: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        x = torch.as_tensor(np.asarray(patches, dtype=np.float32)).to(device)
        f, n, d = x.shape
        flat = x.reshape(-1, d)
        err = (flat - sae.to(device)(flat)).pow(2).sum(-1).reshape(f, n).sum(1)
        tot = (flat - sae.b_dec).pow(2).sum(-1).reshape(f, n).sum(1).clamp_min(1e-12)
        return (1.0 - err / tot).clamp(0.0, 1.0).cpu().numpy().astype(np.float64)


def validate_narrations(narrations: Sequence[str], predicted: np.ndarray, true: np.ndarray, *,
                        sae: SparseAutoencoder, concepts: Concepts | None = None, top_concepts: int = 8,
                        device: str = "cpu") -> list[ValidationRow]:
    """Validate each narration against the SAE.

    Parameters
    ----------
    narrations
        B narrations, ``narrations[i]`` decoded from ``predicted[i]``.
    predicted, true
        (B, n_patches, dim) float32 predicted and true patch tokens of the same frames.
    sae
        A trained SAE; its ``concepts`` are used unless ``concepts`` is given.
    top_concepts
        How many of the most active named latents make up the active concept set.
    device
        Torch device for the SAE.

    Returns
    -------
    list of B `ValidationRow`
    """
    from neurrator.sae import frame_latents

    concepts = concepts if concepts is not None else sae.concepts
    if concepts is None:
        raise ValueError("the SAE has no concept names: run sae.name_concepts and set sae.concepts first")
    pred = np.asarray(predicted, dtype=np.float32)
    tru = np.asarray(true, dtype=np.float32)
    if pred.shape != tru.shape or pred.ndim != 3 or len(pred) != len(narrations):
        raise ValueError(f"need predicted and true of the same (B, n_patches, dim) shape and B narrations: "
                         f"{pred.shape}, {tru.shape}, {len(narrations)}")
    names = np.asarray(concepts.names, dtype=object)
    if len(names) != sae.config.n_latents:
        raise ValueError(f"{len(names)} concept names for {sae.config.n_latents} latents")
    vocab = list(dict.fromkeys(n for n in concepts.names if n))
    lp = frame_latents(sae, pred, device=device)
    lt = frame_latents(sae, tru, device=device)
    rec_p = _recon_scores(sae, pred, device=device)
    rec_t = _recon_scores(sae, tru, device=device)
    rows = []
    for i, text in enumerate(narrations):
        order = np.argsort(-lp[i], kind="stable")
        active: list[str] = []
        for j in order:
            if lp[i, j] <= 0 or len(active) == top_concepts:
                break
            if names[j] and names[j] not in active:
                active.append(str(names[j]))
        mentioned = [c for c in vocab if mentions(c, text)]
        supporting = [c for c in active if c in mentioned]
        na, nt = np.linalg.norm(lp[i]), np.linalg.norm(lt[i])
        sim = float(lp[i] @ lt[i] / (na * nt)) if na > 0 and nt > 0 else 0.0
        rows.append(ValidationRow(concept_agreement=_f1(active, mentioned), latent_profile_similarity=sim,
                                  reconstruction_score=float(rec_p[i]), reconstruction_score_true=float(rec_t[i]),
                                  supporting_concepts=supporting, active_concepts=active,
                                  mentioned_concepts=mentioned))
    return rows


def validation_columns(rows: Sequence[ValidationRow]) -> dict[str, list]:
    """Rows -> columns for ndx-neurrator's SAEValidationTable (``supporting_concepts`` ragged) and extras."""
    return {
        "concept_agreement": [r.concept_agreement for r in rows],
        "latent_profile_similarity": [r.latent_profile_similarity for r in rows],
        "reconstruction_score": [r.reconstruction_score for r in rows],
        "supporting_concepts": [list(r.supporting_concepts) for r in rows],
        "reconstruction_score_true": [r.reconstruction_score_true for r in rows],
    }


__all__ = ["ValidationRow", "validate_narrations", "validation_columns", "mentions"]
