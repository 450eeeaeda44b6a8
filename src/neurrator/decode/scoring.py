"""Narrations + reference narrations -> sentence-embedding fidelity scores with a paired null and CIs.

The paper's protocol: each narration is compared with its own frame's reference narration by the
cosine of all-MiniLM-L6-v2 sentence embeddings (``matched``), with the reference of a different scene
block (``shuffled``: one seeded block permutation of the references) and with a fixed set of word-salad
sentences (``floor``). Optionally a CLIP-score-style image-text similarity (Hessel et al. 2021:
``2.5 * max(cos(image, text), 0)``) where a CLIP model with a text tower is available; it only means
something with real CLIP weights.

Uncertainty and significance (issue 13):

* Scene blocks. Windows inside one scene are not independent. The simulator's scenes last 15-45 frames;
  on real data scene boundaries are unknown, so items are grouped into contiguous blocks of
  ``block_frames`` movie frames (`neurrator.stats.resampling.scene_blocks`, default 30 = 1 s at 30 Hz), or into
  the caller's ``blocks`` (e.g. the simulator's true scene ids).
* Paired permutation null. The statistic is the mean matched cosine. Under the null the references are
  permuted across scene blocks (`neurrator.stats.resampling.block_permutation`: every narration is paired with the
  reference of an item in another block) ``n_perm`` times; only the ``(B, B)`` cosine matrix between
  narration and reference embeddings is permuted, so thousands of permutations cost milliseconds.
  ``p_value`` = ``(1 + #null >= observed) / (1 + n_perm)``; ``null_mean`` is the null's mean. This null
  treats the narrations as exchangeable across blocks, which holds for flashed images shown in random
  order but NOT for a movie: a decoder without stimulus information can still follow the movie at some
  unknown lag (a unit whose lags in the test and a training repeat happen to agree), and a rotated copy
  of the movie beats random pairings far more often than alpha (issue 28: with the window kNN on,
  and the window kNN of issue 28 on or off, 5 of 10 global-null sessions each had a narration q <= 0.01).
* Circular-shift null (movies; ``rotate``). The narrated windows of each test repeat sit evenly round
  the movie (`neurrator.decode.decoding.narrated_presentations`), so rotating the test repeat's spikes by
  one spacing moves every narration to the next narrated frame. The null pairs each repeat's narrations
  with its own references rotated by a lag drawn uniformly from every position (lag 0 included), one lag
  per repeat (`neurrator.decode.chance.shift_pairings`). When the narrations carry no stimulus
  information their law does not change under a rotation, so the observed alignment is exchangeable with
  every rotated one: the p-value is exact (up to rounding of the spacing), with the same narrations and
  the same references in every pairing. Its resolution is 1 / (items per repeat)^(test repeats): 15
  narrations in each of 2 repeats give 225 alignments (p >= 0.0044).
* Block bootstrap CI of the mean matched cosine (`neurrator.stats.resampling.block_bootstrap`, whole blocks
  resampled): ``ci_lo``, ``ci_hi``; intervals of the other scores and of the paired differences are in
  ``intervals``.
* Constant-narration control (``constant``): one fixed sentence scored against every reference, i.e.
  what a narrator that ignores the brain and always says the same thing gets. The pipeline should pass
  the most frequent TRAINING reference (`most_frequent_text`; the best prior-only narrator it could
  learn without test labels); without one, the fixed `GENERIC_NARRATION` is used.
* FDR across subsets happens once all subsets are scored: `beats_null` (Benjamini-Hochberg); a subset's
  narration beats its null only when it also beats the constant narration (`NarrationScores.beats_constant`).

Examples
--------
>>> emb = load_sentence_embedder(device="cpu")                       # doctest: +SKIP
>>> s = score_narrations(["a dog runs"], ["a dog is running"], embedder=emb, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from neurrator.stats import resampling as stats
from neurrator.models.embedder import SentenceEmbedder
from neurrator.decode.chance import shift_pairings
from neurrator.stats.nulls import NULL_BLOCKS, NULL_SHIFT, block_permutations, item_blocks, off_block_mean, paired_null

__all__ = ["GENERIC_NARRATION", "N_BOOT", "N_PERM", "NULL_BLOCKS", "NULL_SHIFT", "NarrationScores", "WORD_SALAD", "clip_cosines", "clip_scores", "most_frequent_text", "score_narrations", "shuffled_index"]

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

#: The constant narration used when the caller gives none: a generic scene description with no content
#: specific to any frame (prefer `most_frequent_text` of the training references).
GENERIC_NARRATION = "A scene with some objects in front of a background."

#: Default number of permutations of the paired null and of bootstrap resamples.
N_PERM = 5000
N_BOOT = 1000



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
    constant
        (B,) float32 cosine between the constant narration ``constant_text`` and reference i.
    constant_text
        The constant narration.
    null_mean, null_std
        Mean and standard deviation of the mean matched cosine under the paired null.
    p_value
        One-sided permutation p-value of the mean matched cosine against the null (NaN when B < 2 or
        when no permutation can pair items of different blocks).
    ci_lo, ci_hi
        Block-bootstrap percentile CI of the mean matched cosine (NaN with fewer than 2 blocks).
    n_perm, n_boot
        Permutations and bootstrap resamples used.
    blocks
        (B,) int64 scene block of each narration.
    null_kind
        `NULL_SHIFT` (with ``rotate``) or `NULL_BLOCKS`.
    intervals
        Score name -> `neurrator.stats.resampling.Estimate` (mean and block-bootstrap CI) for ``matched``,
        ``shuffled``, ``constant``, ``floor``, ``matched_minus_null`` (per item: matched minus the mean
        cosine to the references of other blocks) and ``matched_minus_constant``.
    """

    matched: np.ndarray
    shuffled: np.ndarray
    floor: np.ndarray
    shuffle_index: np.ndarray
    clip_score: np.ndarray | None
    model_id: str
    constant: np.ndarray | None = None
    constant_text: str = ""
    null_mean: float = float("nan")
    null_std: float = float("nan")
    p_value: float = float("nan")
    ci_lo: float = float("nan")
    ci_hi: float = float("nan")
    n_perm: int = 0
    n_boot: int = 0
    blocks: np.ndarray | None = None
    intervals: dict[str, stats.Estimate] = field(default_factory=dict)
    null_kind: str = NULL_BLOCKS

    @property
    def beats_constant(self) -> bool:
        """Whether the narrations beat the constant-narration control: the block-bootstrap CI of the paired
        difference (matched minus constant, per narration) lies wholly above 0. A subset's narration counts
        as beating its null only when this holds too (`neurrator.decode.decoding.apply_fdr`)."""
        est = self.intervals.get("matched_minus_constant")
        return bool(est is not None and np.isfinite(est.lo) and est.lo > 0)

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of each score (``matched_mean``, ``matched_std``, ...), plus the
        null (``null_mean``, ``null_std``, ``p_value``, ``n_perm``), the CI (``ci_lo``, ``ci_hi``) and each
        interval in ``intervals`` as ``<name>_ci_lo`` / ``<name>_ci_hi``."""
        out: dict[str, float] = {}
        parts = {"matched": self.matched, "shuffled": self.shuffled, "floor": self.floor}
        if self.constant is not None:
            parts["constant"] = self.constant
        if self.clip_score is not None:
            parts["clip_score"] = self.clip_score
        for name, values in parts.items():
            out[f"{name}_mean"] = float(np.mean(values)) if len(values) else float("nan")
            out[f"{name}_std"] = float(np.std(values)) if len(values) else float("nan")
        out.update(null_mean=self.null_mean, null_std=self.null_std, p_value=self.p_value, ci_lo=self.ci_lo,
                   ci_hi=self.ci_hi, n_perm=float(self.n_perm))
        for name, est in self.intervals.items():
            if name.startswith("matched_minus"):
                out[f"{name}_mean"] = est.value
            out[f"{name}_ci_lo"], out[f"{name}_ci_hi"] = est.lo, est.hi
        return out


def shuffled_index(frame_ids: Sequence[int] | np.ndarray, *, seed: int) -> np.ndarray:
    """A seeded permutation ``p`` with ``frame_ids[p[i]] != frame_ids[i]`` wherever that is possible.

    `neurrator.stats.resampling.block_permutation` with each frame as its own block. When one frame makes up more
    than half of the items a full derangement does not exist and some same-frame pairs remain.

    Examples
    --------
    >>> p = shuffled_index([0, 1, 2, 3], seed=0)
    >>> bool(np.all(p != np.arange(4)))
    True
    """
    ids = np.asarray(frame_ids)
    return stats.block_permutation(len(ids), ids, seed=seed)


def most_frequent_text(texts: Sequence[str]) -> str:
    """The most frequent string of ``texts`` (ties: the one seen first); the constant narration control.

    >>> most_frequent_text(["a", "b", "b", "a", "c"])
    'a'
    """
    if not len(texts):
        raise ValueError("no texts to choose a constant narration from")
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    return max(counts, key=counts.get)  # max keeps the first of equal counts (insertion order)


def score_narrations(narrations: Sequence[str], references: Sequence[str], *, embedder: SentenceEmbedder,
                     seed: int, frame_ids: Sequence[int] | np.ndarray | None = None,
                     salad: Sequence[str] = WORD_SALAD, clip_score: np.ndarray | None = None,
                     constant: str | None = None, blocks: Sequence[int] | np.ndarray | None = None,
                     block_frames: int = 30, n_perm: int = N_PERM, n_boot: int = N_BOOT,
                     level: float = 0.95, rotate: Sequence[int] | np.ndarray | None = None) -> NarrationScores:
    """Score narrations against their frames' references, with a paired null, CIs and controls.

    Parameters
    ----------
    narrations, references
        B strings each; ``references[i]`` is the reference (oracle narration or caption) of the frame
        narration i was decoded for.
    embedder
        From `load_sentence_embedder`.
    seed
        Seeds the shuffled pairing, the null's permutations and the bootstrap.
    frame_ids
        (B,) movie frame of each narration; it defines the scene blocks (``frame // block_frames``).
        Default: every narration is its own frame and its own block.
    salad
        Word-salad sentences for the floor.
    clip_score
        Optional precomputed (B,) CLIP scores (see `clip_scores`) to carry along.
    constant
        The constant narration scored against every reference (default `GENERIC_NARRATION`; the
        pipeline should pass ``most_frequent_text(training references)``).
    blocks
        (B,) scene block per narration, overriding ``frame_ids // block_frames`` (e.g. true scene ids).
    block_frames
        Block length in movie frames when blocks come from ``frame_ids`` (30 = 1 s at 30 Hz).
    n_perm, n_boot, level
        Permutations (or rotations) of the paired null, block-bootstrap resamples, and the CI's coverage.
    rotate
        (B,) test repeat of each narration, for a movie whose narrated windows sit evenly round it in
        each repeat, in time order: the p-value is then against the circular shift (exact). None: the
        block permutation (flashed images, or items without a movie).

    Returns
    -------
    NarrationScores
        ``matched``/``shuffled``/``floor``/``constant`` per narration and the null, p-value and CIs.
    """
    if len(narrations) != len(references):
        raise ValueError(f"{len(narrations)} narrations but {len(references)} references")
    n = len(narrations)
    ids = np.arange(n) if frame_ids is None else np.asarray(frame_ids)
    if len(ids) != n:
        raise ValueError(f"frame_ids has {len(ids)} entries for {n} narrations")
    blk = item_blocks(n, frame_ids=frame_ids, blocks=blocks, block_frames=block_frames)
    constant = GENERIC_NARRATION if constant is None else str(constant)
    if n == 0:
        empty = np.zeros(0, np.float32)
        return NarrationScores(empty, empty, empty, np.zeros(0, np.int64), clip_score, embedder.model_id,
                               constant=empty, constant_text=constant, blocks=blk)
    # the null's permutations; the first one is also the single "shuffled" pairing
    perms = block_permutations(blk, n_perm=max(1, n_perm), seed=seed)
    perm = perms[0]
    # embed every distinct string once
    uniq = list(dict.fromkeys([*narrations, *references, *salad, constant]))
    pos = {s: i for i, s in enumerate(uniq)}
    emb = embedder.encode(uniq).astype(np.float64)
    nar = emb[[pos[s] for s in narrations]]
    ref = emb[[pos[s] for s in references]]
    sal = emb[[pos[s] for s in salad]]
    con = emb[pos[constant]]
    M = nar @ ref.T  # (B, B) narration i vs reference j
    matched = np.diag(M).copy()
    shuffled = M[np.arange(n), perm]
    floor = (nar @ sal.T).mean(axis=1)
    const = ref @ con
    kw = dict(n_boot=n_boot, seed=seed, level=level)
    n_blocks = len(np.unique(blk))
    null_kind = NULL_BLOCKS
    if rotate is not None and n >= 2 and n_perm >= 1:
        if len(rotate) != n:
            raise ValueError(f"rotate has {len(rotate)} entries for {n} narrations")
        partners, _ = shift_pairings(np.asarray(rotate), min_lag=0, n_perm=n_perm, seed=seed)
        null, null_kind = M[np.arange(n)[None, :], partners].mean(axis=1), NULL_SHIFT
        p = float(stats.permutation_pvalue(float(matched.mean()), null, alternative="greater"))
        null_mean, null_std, n_perm = float(np.mean(null)), float(np.std(null)), len(null)
    elif n >= 2 and n_blocks >= 2 and n_perm >= 1:
        null = paired_null(M, blk, perms=perms)
        p = float(stats.permutation_pvalue(float(matched.mean()), null, alternative="greater"))
        null_mean, null_std = float(np.mean(null)), float(np.std(null))
    else:
        p, null_mean, null_std, n_perm = float("nan"), float("nan"), float("nan"), 0
    expect = off_block_mean(M, blk)
    intervals = {name: stats.block_bootstrap(v, blk, **kw) for name, v in (
        ("matched", matched), ("shuffled", shuffled), ("constant", const), ("floor", floor))}
    finite = np.isfinite(expect)
    intervals["matched_minus_null"] = (stats.block_bootstrap((matched - expect)[finite], blk[finite], **kw)
                                       if finite.any() else stats.Estimate(float("nan"), float("nan"),
                                                                           float("nan"), 0))
    intervals["matched_minus_constant"] = stats.block_bootstrap(matched - const, blk, **kw)
    m = intervals["matched"]
    f32 = np.float32
    return NarrationScores(matched=matched.astype(f32), shuffled=shuffled.astype(f32), floor=floor.astype(f32),
                           shuffle_index=perm, clip_score=clip_score, model_id=embedder.model_id,
                           constant=const.astype(f32), constant_text=constant, null_mean=null_mean,
                           null_std=null_std, p_value=p, ci_lo=m.lo, ci_hi=m.hi, n_perm=int(n_perm),
                           n_boot=m.n_boot, blocks=blk, intervals=intervals, null_kind=null_kind)


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
