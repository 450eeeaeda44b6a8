"""SAE frame activations + units' trial responses -> concept cards: what an unnamed concept looks like, so a
person can name it.

A latent the SAE could not name (no caption vocabulary, or no term that follows it) is still a direction
of the patch space that the stimulus drives. Its card lists the frames (movie frames or images) where it
is most active on the TRUE patches, and the units whose trial-averaged response follows its activation
most closely over the training frames (Pearson r). The r is descriptive, with no test: the cards are
for looking, the tested claims stay in the named-concept tuning (`neurrator.analysis.single_units`).

Which latents get a card: unnamed latents active (> 0) in at least ``min_active`` frames and in at most
half of them (a latent that is on everywhere says little about any frame), the ones whose activation varies
most over frames first, skipping a latent whose activation follows an already chosen one (|r| > 0.8).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from neurrator.sae.concepts import pearson_columns, top_frames_separated

__all__ = ["ConceptCards", "concept_cards"]


class ConceptCards(NamedTuple):
    """One row per card (columns of the derived file's ``concept_cards`` table)."""

    latent: np.ndarray  # (K,) int64 SAE latent index
    why_unnamed: list[str]  # (K,) the SAE's naming method, e.g. "unnamed:no-correlated-word"
    frames_active: np.ndarray  # (K,) int64 frames where the latent is active on the true patches
    top_frames: list[np.ndarray]  # K arrays of frame indices, strongest first
    top_units: list[np.ndarray]  # K arrays of unit rows (into Session.units), most following first
    top_unit_r: list[np.ndarray]  # K arrays: Pearson r of those units' responses with the activation

    @property
    def n(self) -> int:
        """The number of cards."""
        return int(len(self.latent))


def concept_cards(latents: np.ndarray, names: Sequence[str], methods: Sequence[str], *, mean_response: np.ndarray,
                  frames: np.ndarray, n_cards: int = 8, n_frames: int = 5, n_units: int = 5,
                  min_active: int = 5, max_active: float = 0.5, min_separation: int = 30) -> ConceptCards:
    """Cards of the unnamed latents.

    Parameters
    ----------
    latents
        ``(F, L)`` SAE frame activations of the true patches of every frame of the stimulus.
    names, methods
        ``(L,)`` the SAE's concept names (``""`` = unnamed) and how each was (not) named.
    mean_response
        ``(F', N)`` trial-averaged, baseline-subtracted responses of the N units on the frames ``frames``
        (`neurrator.data.responses.TrialResponses.mean`).
    frames
        ``(F',)`` frame index of each row of ``mean_response``.
    n_cards, n_frames, n_units
        Cards at most; top frames and top units per card.
    min_active, max_active
        Latents active in fewer frames, or in more than this share of the frames, get no card.
    min_separation
        Top frames at least this many frames apart (1 s of a movie; 1 for flashed images).

    Examples
    --------
    >>> lat = np.array([[0., 1, 0], [0, 3, 0], [0, 0, 2], [0, 2, 1], [0, 0, 0], [0, 0, 1]])
    >>> resp = lat[:, [1, 2]] - lat[:, [1, 2]].mean(axis=0)
    >>> cards = concept_cards(lat, ["", "", "car"], ["unnamed:dead", "unnamed:rare", "x"], mean_response=resp,
    ...                       frames=np.arange(6), min_active=2, min_separation=1, n_frames=2, n_units=1)
    >>> cards.latent.tolist(), cards.top_frames[0].tolist(), cards.top_units[0].tolist()
    ([1], [1, 3], [0])
    """
    lat = np.asarray(latents, dtype=np.float64)
    active = (lat > 0).sum(axis=0)
    unnamed = np.array([not str(n) for n in names], dtype=bool)
    spread = lat.std(axis=0)
    eligible = np.flatnonzero(unnamed & (active >= min_active) & (active <= max_active * len(lat)) & (spread > 0))
    chosen: list[int] = []
    for k in eligible[np.argsort(-spread[eligible], kind="stable")]:
        if len(chosen) == n_cards:
            break
        if not chosen or np.max(np.abs(pearson_columns(lat[:, [k]], lat[:, chosen]))) <= 0.8:
            chosen.append(int(k))
    chosen = np.asarray(chosen, dtype=np.int64)
    resp = np.asarray(mean_response, dtype=np.float64)
    rows = np.asarray(frames, dtype=np.int64)
    r = pearson_columns(resp, lat[rows][:, chosen])  # (N, K), 0 where constant
    top_units, top_r = [], []
    for j in range(len(chosen)):
        order = np.argsort(-r[:, j], kind="stable")[:n_units]
        order = order[r[order, j] > 0]
        top_units.append(order.astype(np.int64))
        top_r.append(r[order, j])
    return ConceptCards(
        latent=chosen.astype(np.int64), why_unnamed=[str(methods[k]) for k in chosen],
        frames_active=active[chosen].astype(np.int64),
        top_frames=[top_frames_separated(lat[:, k], n=n_frames, min_separation=min_separation) for k in chosen],
        top_units=top_units, top_unit_r=top_r)

