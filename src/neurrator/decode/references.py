"""Session + true patch tokens -> reference texts per frame and the retrieval narrator's bank.

References are what narrations are scored against: the simulator's captions when the session has them,
else the oracle, i.e. a generative narrator's narration of the TRUE patch tokens of each frame. The
retrieval narrator's bank (patches -> texts it may return) is chosen from the training frames ALONE,
independently of which test windows are narrated, so the bank never depends on the test set.

When a frame has several caption variants (paraphrases), the bank holds variant 0 and the reference is
another variant, so a retrieved caption is never the reference word for word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurrator.errors import NeurratorError

#: Bank size used without captions (oracle texts cost one generation per bank frame).
ORACLE_BANK_FRAMES = 200


@dataclass(frozen=True)
class References:
    """Reference texts and the retrieval bank of a run.

    Attributes
    ----------
    by_frame
        Movie frame -> reference text, for every frame a narration may be scored on.
    bank_frames
        ``(B,) int64`` training frames whose true patches form the retrieval bank.
    bank_texts
        B texts the retrieval narrator returns for those frames.
    naming_texts
        Movie frame -> text used to NAME concepts (captions variant 0 / oracle texts of bank frames).
    kind
        How references were made, recorded in the provenance.
    """

    by_frame: dict[int, str]
    bank_frames: np.ndarray
    bank_texts: list[str]
    naming_texts: dict[int, str]
    kind: str


def bank_frames(train_frames: np.ndarray, *, max_frames: int = ORACLE_BANK_FRAMES) -> np.ndarray:
    """Every k-th training frame so that at most about ``max_frames`` remain (test-set independent).

    Examples
    --------
    >>> bank_frames(np.arange(10), max_frames=4).tolist()
    [0, 2, 4, 6, 8]
    """
    frames = np.unique(np.asarray(train_frames, dtype=np.int64))
    return frames[:: max(1, len(frames) // max_frames)]


def caption_references(captions: list[str], train_frames: np.ndarray,
                       variants: list[list[str]] | None = None) -> References:
    """References from the simulator's captions; the bank is every training frame's caption.

    Parameters
    ----------
    captions
        One caption per movie frame (variant 0).
    train_frames
        Frames of the training presentations.
    variants
        Optional paraphrases per frame (``variants[f][0] == captions[f]``); with two or more, the
        reference of frame f is ``variants[f][1]`` and the bank keeps variant 0.
    """
    train = np.unique(np.asarray(train_frames, dtype=np.int64))
    paraphrased = variants is not None and all(len(v) >= 2 for v in variants)
    by_frame = {f: (variants[f][1] if paraphrased else captions[f]) for f in range(len(captions))}
    kind = "simulator captions" + (" (reference: paraphrase 1; bank and concept names: variant 0)"
                                   if paraphrased else "")
    return References(by_frame=by_frame, bank_frames=train, bank_texts=[captions[int(f)] for f in train],
                      naming_texts={int(f): captions[int(f)] for f in train}, kind=kind)


def oracle_references(generator, targets: np.ndarray, train_frames: np.ndarray, narrated_frames: np.ndarray,
                      ) -> References:
    """References written by ``generator`` on the true patches of the bank and the narrated frames.

    The bank is `bank_frames` of the training frames; the narrated frames get references (they must be
    scored) but are not added to the bank.

    Parameters
    ----------
    generator
        A generative narrator with ``narrate(patches) -> texts`` and ``model_id``.
    targets
        ``(F, n_patches, dim)`` true patch tokens.
    train_frames, narrated_frames
        Frames of the training presentations and of the narrated test windows.
    """
    bank = bank_frames(train_frames)
    needed = np.unique(np.concatenate([bank, np.asarray(narrated_frames, dtype=np.int64)]))
    texts = generator.narrate(targets[needed])
    by_frame = {int(f): t for f, t in zip(needed, texts)}
    return References(by_frame=by_frame, bank_frames=bank, bank_texts=[by_frame[int(f)] for f in bank],
                      naming_texts={int(f): by_frame[int(f)] for f in bank},
                      kind=f"oracle narrations by {generator.model_id} on the true patches")


def session_references(session, targets: np.ndarray, train_frames: np.ndarray, narrated_frames: np.ndarray, *,
                       generator) -> References:
    """Captions of a simulated session (with their paraphrases), else the oracle narrations of the true
    frames by ``generator`` (the generative narrator, or the reference narrator when narrating by retrieval)."""
    if session.captions:
        return caption_references(session.captions, train_frames, getattr(session, "caption_variants", None))
    if generator is None:
        raise NeurratorError(session.path_label, "the session has no captions and no reference narrator was loaded")
    return oracle_references(generator, targets, train_frames, narrated_frames)


__all__ = ["ORACLE_BANK_FRAMES", "References", "bank_frames", "caption_references", "oracle_references",
           "session_references"]
