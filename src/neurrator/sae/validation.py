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

Chance (issue 14.5), the same paired null as the narration scores (`neurrator.stats.nulls`): each score that
pairs two things is recomputed for every pairing of item i with an item j of ANOTHER scene block (and
the same ``group``, e.g. the same unit subset): concept agreement of prediction i's active concepts with
narration j's mentions, latent-profile similarity of prediction i with true frame j. A row's
``*_chance`` is the mean over those pairings; `validation_summary` adds the mean, its block-bootstrap CI
and a permutation p-value per group. ``reconstruction_score`` pairs nothing (its reference level is
``reconstruction_score_true``), so its chance is NaN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from neurrator.stats import resampling as stats
from neurrator.sae.concepts import Concepts, content_words
from neurrator.decode.chance import shift_pairings
from neurrator.stats.nulls import item_blocks, off_block_mean, paired_null
from neurrator.sae.autoencoder import SparseAutoencoder
from neurrator.sae.autoencoder import frame_latents

#: Scores with a paired null (``<score>_chance`` columns).
PAIRED_SCORES = ("concept_agreement", "latent_profile_similarity")


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
    concept_agreement_chance: float = float("nan")
    latent_profile_similarity_chance: float = float("nan")
    block: int = -1
    group: int = 0


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


def _pair_scores(active: list[list[str]], mentioned: list[list[str]], lp: np.ndarray, lt: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """``(B, B)`` score of prediction i paired with narration / true frame j, per paired score."""
    vocab = {c: k for k, c in enumerate(dict.fromkeys([*(c for a in active for c in a),
                                                        *(c for m in mentioned for c in m)]))}
    A = np.zeros((len(active), len(vocab)))
    M = np.zeros((len(mentioned), len(vocab)))
    for i, a in enumerate(active):
        A[i, [vocab[c] for c in set(a)]] = 1.0
    for j, m in enumerate(mentioned):
        M[j, [vocab[c] for c in set(m)]] = 1.0
    hits = A @ M.T
    size = A.sum(1)[:, None] + M.sum(1)[None, :]
    # F1 = 2 PR / (P + R) = 2 hits / (|active| + |mentioned|); NaN without an active named concept
    f1 = np.divide(2 * hits, size, out=np.zeros_like(hits), where=hits > 0)
    f1[A.sum(1) == 0] = np.nan
    na = np.linalg.norm(lp, axis=1)
    nt = np.linalg.norm(lt, axis=1)
    den = na[:, None] * nt[None, :]
    sim = np.divide(lp @ lt.T, den, out=np.zeros((len(lp), len(lt))), where=den > 0)
    return {"concept_agreement": f1, "latent_profile_similarity": sim}


def _within_groups(M: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.where(groups[:, None] == groups[None, :], M, np.nan)


def _validate(narrations, predicted, true, *, sae, concepts, top_concepts, device, frame_ids, blocks, groups,
              block_frames):
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
    n = len(narrations)
    blk = item_blocks(n, frame_ids=frame_ids, blocks=blocks, block_frames=block_frames)
    grp = np.zeros(n, np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if len(grp) != n:
        raise ValueError(f"{len(grp)} group labels for {n} narrations")
    vocab = list(dict.fromkeys(n for n in concepts.names if n))
    lp = frame_latents(sae, pred, device=device)
    lt = frame_latents(sae, tru, device=device)
    rec_p = _recon_scores(sae, pred, device=device)
    rec_t = _recon_scores(sae, tru, device=device)
    actives, mentions_ = [], []
    for i, text in enumerate(narrations):
        order = np.argsort(-lp[i], kind="stable")
        active: list[str] = []
        for j in order:
            if lp[i, j] <= 0 or len(active) == top_concepts:
                break
            if names[j] and names[j] not in active:
                active.append(str(names[j]))
        actives.append(active)
        mentions_.append([c for c in vocab if mentions(c, text)])
    pairs = {k: _within_groups(v, grp) for k, v in _pair_scores(actives, mentions_, np.asarray(lp, np.float64),
                                                                 np.asarray(lt, np.float64)).items()}
    chance = {k: off_block_mean(v, blk) for k, v in pairs.items()}
    rows = []
    for i in range(n):
        active, mentioned = actives[i], mentions_[i]
        rows.append(ValidationRow(
            concept_agreement=_f1(active, mentioned),
            latent_profile_similarity=float(pairs["latent_profile_similarity"][i, i]),
            reconstruction_score=float(rec_p[i]), reconstruction_score_true=float(rec_t[i]),
            supporting_concepts=[c for c in active if c in mentioned], active_concepts=active,
            mentioned_concepts=mentioned, concept_agreement_chance=float(chance["concept_agreement"][i]),
            latent_profile_similarity_chance=float(chance["latent_profile_similarity"][i]),
            block=int(blk[i]), group=int(grp[i])))
    return rows, pairs, blk, grp


def validate_narrations(narrations: Sequence[str], predicted: np.ndarray, true: np.ndarray, *,
                        sae: SparseAutoencoder, concepts: Concepts | None = None, top_concepts: int = 8,
                        device: str = "cpu", frame_ids: np.ndarray | None = None, blocks: np.ndarray | None = None,
                        groups: np.ndarray | None = None, block_frames: int = 30) -> list[ValidationRow]:
    """Validate each narration against the SAE, with the paired-null chance level of each paired score.

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
    frame_ids, blocks, block_frames
        Scene blocks of the null: ``blocks`` ((B,)) if given, else ``frame_ids // block_frames``, else
        every narration its own block.
    groups
        (B,) label per narration (e.g. the unit subset): null pairings stay inside a group.

    Returns
    -------
    list of B `ValidationRow`
    """
    return _validate(narrations, predicted, true, sae=sae, concepts=concepts, top_concepts=top_concepts,
                     device=device, frame_ids=frame_ids, blocks=blocks, groups=groups, block_frames=block_frames)[0]


def validation_summary(narrations: Sequence[str], predicted: np.ndarray, true: np.ndarray, *,
                       sae: SparseAutoencoder, concepts: Concepts | None = None, top_concepts: int = 8,
                       device: str = "cpu", frame_ids: np.ndarray | None = None, blocks: np.ndarray | None = None,
                       groups: np.ndarray | None = None, block_frames: int = 30, n_perm: int = 2000,
                       n_boot: int = 1000, seed: int = 0, rotate: np.ndarray | None = None,
                       ) -> tuple[list[ValidationRow], dict[int, dict[str, dict]]]:
    """`validate_narrations` plus, per group and paired score, the mean with its null and CI.

    ``rotate``: (B,) test repeat of each narration of a movie whose narrated windows sit evenly round it in
    each repeat (`neurrator.decode.decoding.narrated_presentations` with ``spread``). The null is then the
    circular shift of the partners within each repeat of each group (exact, as the narration score's;
    `neurrator.decode.chance.shift_pairings`), rows without a score left out of each mean. None: the block
    permutation (flashed images; items exchangeable).

    Returns
    -------
    rows : list of B `ValidationRow`
    summary : dict
        group index (``np.unique(groups)`` order; 0 without groups) -> score -> ``{"mean", "chance",
        "p_value", "ci_lo", "ci_hi", "n", "n_perm"}``: the mean over rows with a finite score, the mean
        of the null, the one-sided permutation p-value (block permutations of the partners) and the
        block-bootstrap CI of the mean.
    """
    rows, pairs, blk, grp = _validate(narrations, predicted, true, sae=sae, concepts=concepts,
                                      top_concepts=top_concepts, device=device, frame_ids=frame_ids, blocks=blocks,
                                      groups=groups, block_frames=block_frames)
    nan = float("nan")
    summary: dict[int, dict[str, dict]] = {}
    for g in np.unique(grp):
        idx = np.flatnonzero(grp == g)
        summary[int(g)] = {}
        for k, M in pairs.items():
            sub = M[np.ix_(idx, idx)]
            diag = np.diag(sub)
            ok = np.isfinite(diag)
            entry = {"mean": float(np.mean(diag[ok])) if ok.any() else nan, "chance": nan, "p_value": nan,
                     "ci_lo": nan, "ci_hi": nan, "n": int(ok.sum()), "n_perm": 0}
            b = blk[idx][ok]
            if rotate is not None and ok.sum() >= 1 and len(idx) >= 2:
                partners, _ = shift_pairings(np.asarray(rotate)[idx], min_lag=0, n_perm=n_perm, seed=seed)
                vals = sub[np.arange(len(idx))[None, :], partners]
                with np.errstate(all="ignore"):  # a row with no finite partner score is left out
                    null = np.nanmean(np.where(np.isfinite(vals), vals, np.nan), axis=1)
                null = null[np.isfinite(null)]
                if len(null):
                    entry.update(chance=float(np.mean(null)), n_perm=int(len(null)),
                                 p_value=float(stats.permutation_pvalue(entry["mean"], null)))
                if len(np.unique(b)) >= 2:
                    est = stats.block_bootstrap(diag[ok], b, n_boot=n_boot, seed=seed)
                    entry.update(ci_lo=est.lo, ci_hi=est.hi)
            elif ok.sum() >= 2 and len(np.unique(b)) >= 2:
                null = paired_null(sub[np.ix_(ok, ok)], b, n_perm=n_perm, seed=seed)
                null = null[np.isfinite(null)]
                if len(null):
                    entry.update(chance=float(np.mean(null)), n_perm=int(len(null)),
                                 p_value=float(stats.permutation_pvalue(entry["mean"], null)))
                est = stats.block_bootstrap(diag[ok], b, n_boot=n_boot, seed=seed)
                entry.update(ci_lo=est.lo, ci_hi=est.hi)
            summary[int(g)][k] = entry
    return rows, summary


def validation_columns(rows: Sequence[ValidationRow]) -> dict[str, list]:
    """Rows -> columns for ndx-neurrator's SAEValidationTable (``supporting_concepts`` ragged) and extras."""
    return {
        "concept_agreement": [r.concept_agreement for r in rows],
        "latent_profile_similarity": [r.latent_profile_similarity for r in rows],
        "reconstruction_score": [r.reconstruction_score for r in rows],
        "supporting_concepts": [list(r.supporting_concepts) for r in rows],
        "reconstruction_score_true": [r.reconstruction_score_true for r in rows],
        "concept_agreement_chance": [r.concept_agreement_chance for r in rows],
        "latent_profile_similarity_chance": [r.latent_profile_similarity_chance for r in rows],
        "reconstruction_score_chance": [float("nan")] * len(rows),
    }


__all__ = ["PAIRED_SCORES", "ValidationRow", "mentions", "validate_narrations", "validation_columns",
           "validation_summary"]


def validate_results(results: Sequence, targets: np.ndarray, *, sae: SparseAutoencoder, concepts: Concepts,
                     device: str, block_frames: int, seed: int,
                     rotate: np.ndarray | None = None) -> tuple[dict[str, list], dict]:
    """Validate every narration of every subset result (`neurrator.decode.decoding.SubsetResult`) against its
    predicted and true patches: the file's columns and, per subset, each score against its paired null
    (``rotate``: the test repeat of each narrated window of a movie, the same for every subset: the
    circular-shift null; None: the block permutation)."""
    frames = np.concatenate([r.frames for r in results])
    rows, summary = validation_summary(
        [t for r in results for t in r.narrations], np.concatenate([r.predicted for r in results]), targets[frames],
        sae=sae, concepts=concepts, device=device, frame_ids=frames, block_frames=block_frames,
        groups=np.repeat(np.arange(len(results)), [len(r.frames) for r in results]), seed=seed,
        rotate=None if rotate is None else np.concatenate([np.asarray(rotate)] * len(results)))
    return validation_columns(rows), summary
