"""A tiny trained run built in code for the decoding and analysis tests (import with `from _tiny_run import ...`).

Twelve units of three regions read a 3-d latent that drifts over a 48-frame movie shown 4 times; the
targets are a fixed function of the same latent, so an encoder decodes them well from all units and
worse from fewer. The narrator and the sentence embedder are small stand-ins with known outputs.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from neurrator.data.binning import Binned
from neurrator.data.splits import split_repeats
from neurrator.data.units_table import Units

#: Frames, repeats, units, bins per frame, patches, width, latent dimensions, frames per second.
F, R, N, B, P, D, L, FPS = 48, 4, 12, 2, 4, 6, 3, 4.0
REGIONS = np.array(["VISp"] * 6 + ["LGd"] * 4 + ["CA1"] * 2)
CELL_TYPES = np.array(["PV", "SST"] * 6)


def tiny_session(seed: int = 0) -> tuple[Binned, np.ndarray]:
    """(binned, targets): Poisson counts ``exp(z A)`` per bin and targets ``tanh(z B)`` per frame."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.normal(size=(F, L)), axis=0)
    z = (z - z.mean(0)) / z.std(0)
    rates = np.exp(0.9 * z @ rng.normal(size=(L, N)) / np.sqrt(L))
    counts = rng.poisson(np.repeat(np.tile(rates, (R, 1)), B, axis=0)).astype(np.uint16)
    targets = np.tanh(z @ rng.normal(size=(L, P * D))).reshape(F, P, D).astype(np.float32)
    binned = Binned(counts=counts, frame=np.tile(np.arange(F), R), repeat=np.repeat(np.arange(R), F),
                    bins_per_frame=B, unit_ids=np.arange(N, dtype=np.int64) + 500)
    return binned, targets


def tiny_split(binned: Binned):
    """Repeats 0-1 train, 2 validation, 3 test."""
    return split_repeats(binned.repeat, n_val=1, n_test=1, seed=None)


def tiny_trained(binned: Binned, targets: np.ndarray, split, *, seed: int = 0):
    """A `TrainedEncoder` trained for one epoch (its linear path starts at the closed-form ridge fit)."""
    from neurrator.models.encoder import EncoderConfig
    from neurrator.models.training import TrainConfig, train_encoder

    cfg = TrainConfig(window_bins=4, max_epochs=1, batch_size=32, warmup_steps=1)
    enc = EncoderConfig(n_units=N, n_patches=P, dim=D, window_bins=4, d_model=8, n_heads=2, n_latents=2, depth=0,
                        linear_rank=8)
    return train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=seed, progress=False)


def tiny_units() -> Units:
    """`Units` annotations for the 12 columns (no spikes needed by the analyses)."""
    return Units(ids=np.arange(N, dtype=np.int64) + 500, spike_times=np.zeros(0), offsets=np.zeros(N + 1, np.int64),
                 region=REGIONS.copy(), cell_type=CELL_TYPES.copy(), probe=np.array(["probeA"] * N),
                 depth=np.linspace(100.0, 1200.0, N), metrics={})


class Narrator:
    """Patches -> one text per window naming the sign of its mean token value; records every call."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, patches: np.ndarray) -> list[str]:
        patches = np.asarray(patches)
        self.calls.append(patches.copy())
        return ["a bright scene" if p.mean() > 0 else "a dark scene" for p in patches]


class Embedder:
    """Texts -> unit-norm bag-of-words rows over a fixed vocabulary (unknown words share one slot)."""

    model_id = "test:bag-of-words"
    VOCAB = ("a", "bright", "dark", "scene", "the", "cat")

    def encode(self, texts) -> np.ndarray:
        rows = np.zeros((len(texts), len(self.VOCAB) + 1), np.float32)
        for i, text in enumerate(texts):
            for word in str(text).lower().split():
                rows[i, self.VOCAB.index(word) if word in self.VOCAB else len(self.VOCAB)] += 1
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1)


def references() -> dict[int, str]:
    """Movie frame -> reference text: the narrator's own text of the true frame would be "a bright/dark scene"."""
    return {f: ("a bright scene" if f % 2 else "a dark scene") for f in range(F)}


def fake_subset_result(label: str, kind: str, unit_idx, *, group: str = "", p: float = 0.5, value: float = 0.5,
                       chance: float = 0.1, lo: float = 0.2, hi: float = 0.8, narration_p: float = 0.5,
                       cosine_p: float = float("nan"), beats_constant: bool = True):
    """A `SubsetResult` with every rank metric's p at ``p``, the cosines' at ``cosine_p`` (NaN: no shift
    null, as for flashed images), the narration's null at ``narration_p`` and whether its narrations beat
    the constant narration."""
    from neurrator.decode.decoding import EVAL_METRICS, Metric, SubsetResult
    from neurrator.decode.subsets import UnitSubset

    subset = UnitSubset(label, kind, np.asarray(unit_idx, dtype=np.int64), group=group)
    metrics = {m: Metric(value, chance, lo, hi, p if m in ("top1", "top5", "within_1s") else cosine_p)
               for m in EVAL_METRICS}
    scores = SimpleNamespace(null_mean=0.1, ci_lo=0.3, ci_hi=0.7, p_value=narration_p, beats_constant=beats_constant)
    k = 3
    return SubsetResult(subset=subset, metrics=metrics, presentations=np.arange(k), frames=np.arange(k),
                        narrations=["a scene"] * k, references=["a scene"] * k, similarity=np.full(k, 0.5),
                        shuffled=np.full(k, 0.1), floor=np.zeros(k), predicted=np.zeros((k, P, D), np.float32),
                        scores=scores)
