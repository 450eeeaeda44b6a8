"""Patch tokens -> a trained TopK sparse autoencoder (SAE) and a concept name per latent.

The SAE follows Gao et al. 2024 ("Scaling and evaluating sparse autoencoders"): a pre-bias
``b_dec`` subtracted before encoding and added after decoding; ``z = TopK(W_enc (x - b_dec) + b_enc)``
(ReLU on the k kept values); ``x_hat = z W_dec + b_dec`` with unit-norm decoder rows (renormalised
after every step, and the gradient component parallel to each row removed first); the loss is the
fraction of variance unexplained (FVU) plus ``aux_coef`` times the AuxK loss: the top ``aux_k`` dead
latents (not fired for ``dead_tokens`` tokens) reconstruct the residual ``x - x_hat``.

Training touches only the k selected latents per token in the backward pass: the encoder's gradient
is a sparse (latents x tokens) matrix times the tokens, the decoder is an ``embedding_bag``; the
dense part is one (tokens x d) @ (d x latents) product per step.

Concept naming: a latent's frame activation is its mean over the frame's patches; the name is the word
most enriched (smoothed log-odds) in the captions / reference narrations of its top-activating frames
relative to all frames. The method string is recorded per latent.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurrator.errors import NeurratorError

SAE_FORMAT = "neurrator-topk-sae/1"


@dataclass(frozen=True)
class SAEConfig:
    """Architecture of a TopK SAE.

    Attributes
    ----------
    d_in
        Width of the patch tokens (64 for the tiny backbone, 1024 for CLIP ViT-L/14).
    n_latents
        Dictionary size.
    k
        Latents kept per token.
    aux_k
        Dead latents used by the AuxK loss (Gao et al.: 512; default ``min(512, d_in // 2)``).
    aux_coef
        Weight of the AuxK loss (Gao et al.: 1/32).
    dead_tokens
        A latent is dead when it has not fired for this many training tokens.
    """

    d_in: int
    n_latents: int
    k: int
    aux_k: int | None = None
    aux_coef: float = 1 / 32
    dead_tokens: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("d_in", "n_latents", "k", "dead_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.k > self.n_latents:
            raise ValueError(f"k ({self.k}) cannot exceed n_latents ({self.n_latents})")
        if self.aux_k is None:
            object.__setattr__(self, "aux_k", max(1, min(512, self.d_in // 2, self.n_latents)))
        if not 1 <= self.aux_k <= self.n_latents:
            raise ValueError(f"aux_k must be in [1, n_latents], not {self.aux_k}")
        if self.aux_coef < 0:
            raise ValueError(f"aux_coef must be >= 0, not {self.aux_coef}")


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


class SparseAutoencoder(nn.Module):
    """TopK SAE over patch tokens.

    Parameters
    ----------
    config
        Architecture; see `SAEConfig`.

    Attributes
    ----------
    W_enc : (n_latents, d_in)   encoder rows
    b_enc : (n_latents,)
    W_dec : (n_latents, d_in)   unit-norm decoder rows (dictionary atoms)
    b_dec : (d_in,)             pre-bias (initialised to the data mean)
    concepts : Concepts | None  set by `name_concepts`
    """

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.config = config
        d, n = config.d_in, config.n_latents
        self.W_dec = nn.Parameter(F.normalize(torch.randn(n, d), dim=1))
        self.W_enc = nn.Parameter(self.W_dec.detach().clone())
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.concepts: Concepts | None = None
        self.stats: dict[str, float] = {}

    # -- encoding -------------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, d_in) -> (B, n_latents) dense pre-activations."""
        return F.linear(x - self.b_dec, self.W_enc, self.b_enc)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, d_in) -> (values (B, k) >= 0, indices (B, k) int64) of the kept latents."""
        vals, idx = self.pre_acts(x).topk(self.config.k, dim=-1, sorted=False)
        return F.relu(vals), idx

    def decode(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, k) values and indices -> (B, d_in) reconstruction."""
        return F.embedding_bag(idx, self.W_dec, per_sample_weights=vals.to(self.W_dec.dtype), mode="sum") + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, d_in) -> reconstruction (B, d_in)."""
        return self.decode(*self.encode(x))

    def dense_latents(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, d_in) -> (B, n_latents) latent activations (zeros outside the top k)."""
        vals, idx = self.encode(x)
        return torch.zeros(x.shape[0], self.config.n_latents, dtype=vals.dtype, device=x.device).scatter_(1, idx, vals)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.data = F.normalize(self.W_dec.data, dim=1)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the decoder gradient's component along each (unit-norm) row."""
        if self.W_dec.grad is not None:
            g, w = self.W_dec.grad, self.W_dec.data
            g -= (g * w).sum(1, keepdim=True) * w


class _SparsePreAct(torch.autograd.Function):
    """out[b, j] = x[b] . W[idx[b, j]] + bias[idx[b, j]], values given; sparse backward."""

    @staticmethod
    def forward(ctx, x, W, bias, idx, vals):  # type: ignore[override]
        ctx.save_for_backward(x, W, idx)
        return vals.clone()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, W, idx = ctx.saved_tensors
        B, k = idx.shape
        n = W.shape[0]
        gx = gW = gb = None
        if ctx.needs_input_grad[0]:
            gx = F.embedding_bag(idx, W, per_sample_weights=g.to(W.dtype), mode="sum")
        rows = idx.reshape(-1)
        flat = g.reshape(-1).to(W.dtype)
        if ctx.needs_input_grad[1]:
            cols = torch.arange(B, device=idx.device).repeat_interleave(k)
            S = torch.sparse_coo_tensor(torch.stack([rows, cols]), flat, (n, B), check_invariants=False)
            gW = torch.sparse.mm(S, x.to(W.dtype))
        if ctx.needs_input_grad[2]:
            gb = torch.zeros(n, dtype=W.dtype, device=W.device).index_add_(0, rows, flat)
        return gx, gW, gb, None, None


class TrainStats(NamedTuple):
    """Per-epoch training record: FVU (on the epoch's batches), dead fraction, seconds."""

    fvu: list[float]
    dead_fraction: list[float]
    seconds: list[float]


def _flatten_tokens(tokens: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(tokens)
    if t.ndim == 3:
        t = t.reshape(-1, t.shape[-1])
    if t.ndim != 2:
        raise ValueError(f"tokens must be (N, d) or (F, n_patches, d), not {tuple(t.shape)}")
    return t.float()


def train_sae(tokens: np.ndarray | torch.Tensor, *, config: SAEConfig, epochs: int = 10, batch_size: int = 4096,
              lr: float | None = None, device: str, seed: int, sae: SparseAutoencoder | None = None,
              progress: Callable[[int, float], None] | None = None) -> tuple[SparseAutoencoder, TrainStats]:
    """Train a TopK SAE on patch tokens.

    Parameters
    ----------
    tokens
        (N, d_in) or (F, n_patches, d_in) float32 patch tokens (the targets' frames, plus any extra images).
    config
        Architecture (``d_in`` must match).
    epochs, batch_size
        Passes over the tokens (shuffled each epoch) and tokens per step.
    lr
        Adam learning rate; default Gao et al.'s ``2e-4 / sqrt(n_latents / 16384)`` (capped at 1e-3).
    device, seed
        Torch device; seed for initialisation and shuffling.
    sae
        Continue training this SAE instead of a fresh one.
    progress
        Called as ``progress(epoch, fvu)`` after every epoch.

    Returns
    -------
    (SparseAutoencoder in eval mode on ``device``, TrainStats)
    """
    import time

    x_all = _flatten_tokens(tokens)
    if x_all.shape[1] != config.d_in:
        raise ValueError(f"tokens have width {x_all.shape[1]} but config.d_in is {config.d_in}")
    gen = torch.Generator().manual_seed(seed)
    if sae is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sae = SparseAutoencoder(config)
        with torch.no_grad():
            sae.b_dec.data = x_all.mean(0)
    sae = sae.to(device).train()
    if lr is None:
        lr = min(1e-3, 2e-4 / math.sqrt(config.n_latents / 16384))
    opt = torch.optim.Adam(sae.parameters(), lr=lr, eps=6.25e-10)
    n = x_all.shape[0]
    data_var = float(((x_all - x_all.mean(0)) ** 2).sum(1).mean())
    since_fired = torch.zeros(config.n_latents, dtype=torch.long, device=device)
    dead_after = min(config.dead_tokens, n)
    stats = TrainStats([], [], [])
    for epoch in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        se = 0.0
        for s in range(0, n, batch_size):
            x = x_all[perm[s:s + batch_size]].to(device, non_blocking=True)
            B = x.shape[0]
            xc = x - sae.b_dec
            with torch.no_grad():
                pre = F.linear(xc, sae.W_enc, sae.b_enc)
                vals0, idx = pre.topk(config.k, dim=-1, sorted=False)
            vals = F.relu(_SparsePreAct.apply(xc, sae.W_enc, sae.b_enc, idx, vals0))
            x_hat = F.embedding_bag(idx, sae.W_dec, per_sample_weights=vals, mode="sum") + sae.b_dec
            err = x - x_hat
            total_var = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
            loss = err.pow(2).sum() / total_var
            se += float(err.detach().pow(2).sum())
            with torch.no_grad():
                fired = torch.zeros(config.n_latents, dtype=torch.bool, device=device)
                fired[idx[vals0 > 0]] = True
                since_fired += B
                since_fired[fired] = 0
                dead = since_fired >= dead_after
            n_dead = int(dead.sum())
            if n_dead and config.aux_coef > 0:
                ka = min(config.aux_k, n_dead)
                with torch.no_grad():
                    aux_pre = pre.masked_fill(~dead, float("-inf"))
                    aux_vals0, aux_idx = aux_pre.topk(ka, dim=-1, sorted=False)
                aux_vals = F.relu(_SparsePreAct.apply(xc, sae.W_enc, sae.b_enc, aux_idx, aux_vals0))
                e_hat = F.embedding_bag(aux_idx, sae.W_dec, per_sample_weights=aux_vals, mode="sum")
                e = err.detach()
                aux = (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum().clamp_min(1e-12)
                loss = loss + config.aux_coef * torch.nan_to_num(aux, nan=0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_parallel_grad()
            opt.step()
            sae.normalize_decoder()
        stats.fvu.append(se / max(n, 1) / max(data_var, 1e-12))
        stats.dead_fraction.append(float((since_fired >= dead_after).float().mean()))
        stats.seconds.append(time.perf_counter() - t0)
        if progress is not None:
            progress(epoch, stats.fvu[-1])
    sae.eval()
    sae.stats = {"train_fvu": stats.fvu[-1] if stats.fvu else float("nan"), "train_tokens": float(n),
                 "epochs": float(epochs), "dead_fraction": stats.dead_fraction[-1] if stats.fvu else float("nan")}
    return sae, stats


class SAEEval(NamedTuple):
    """FVU and mean L0 of an SAE on a set of tokens."""

    fvu: float
    l0: float


@torch.no_grad()
def evaluate_sae(sae: SparseAutoencoder, tokens: np.ndarray | torch.Tensor, *, device: str,
                 batch_size: int = 8192) -> SAEEval:
    """FVU (``sum |x - x_hat|^2 / sum |x - mean(x)|^2``) and mean L0 (nonzero latents per token)."""
    x_all = _flatten_tokens(tokens)
    mean = x_all.mean(0).to(device)
    se = tv = l0 = 0.0
    sae = sae.to(device)
    for s in range(0, x_all.shape[0], batch_size):
        x = x_all[s:s + batch_size].to(device)
        vals, idx = sae.encode(x)
        se += float((x - sae.decode(vals, idx)).pow(2).sum())
        tv += float((x - mean).pow(2).sum())
        l0 += float((vals > 0).sum())
    return SAEEval(fvu=se / max(tv, 1e-12), l0=l0 / max(x_all.shape[0], 1))


@torch.no_grad()
def frame_latents(sae: SparseAutoencoder, patches: np.ndarray | torch.Tensor, *, device: str,
                  batch_frames: int = 64) -> np.ndarray:
    """patches: (F, n_patches, d_in) -> (F, n_latents) float32 latent profile (mean over patches)."""
    p = torch.as_tensor(patches).float()
    if p.ndim != 3:
        raise ValueError(f"patches must be (F, n_patches, d), not {tuple(p.shape)}")
    sae = sae.to(device)
    out = []
    for s in range(0, p.shape[0], batch_frames):
        chunk = p[s:s + batch_frames].to(device)
        f, n, d = chunk.shape
        out.append(sae.dense_latents(chunk.reshape(-1, d)).reshape(f, n, -1).mean(1).cpu())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, sae.config.n_latents), np.float32)


# -- concept naming ------------------------------------------------------------------------------

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
    if vocabulary is None:
        docs = [set(content_words(t)) for t in texts]
    else:
        pats = {v: re.compile(r"\b" + re.escape(v.lower()) + r"\b") for v in dict.fromkeys(vocabulary)}
        docs = [{v for v, pat in pats.items() if pat.search(t.lower())} for t in texts]
    vocab = sorted(set().union(*docs)) if docs else []
    col = {w: i for i, w in enumerate(vocab)}
    occ = np.zeros((n_frames, len(vocab)), dtype=np.float64)  # (F, V) word present in frame's text
    for f, d in enumerate(docs):
        for w in d:
            occ[f, col[w]] = 1.0
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


# -- serialisation -------------------------------------------------------------------------------

def sae_payload(sae: SparseAutoencoder) -> tuple[str, bytes, str]:
    """SAE -> (config JSON, safetensors bytes of the weights, sha256 hex of those bytes).

    The JSON carries the format tag, the architecture, training statistics and the concepts.
    """
    from safetensors.torch import save

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in sae.state_dict().items()}
    weights = save(tensors, metadata={"format": SAE_FORMAT})
    sha = hashlib.sha256(weights).hexdigest()
    meta = {"format": SAE_FORMAT, "config": asdict(sae.config), "stats": sae.stats, "weights_sha256": sha,
            "concepts": asdict(sae.concepts) if sae.concepts is not None else None}
    return json.dumps(meta, sort_keys=True), weights, sha


def sae_from_payload(config_json: str, weights: bytes, sha256: str | None = None, *,
                     source: str = "<payload>") -> SparseAutoencoder:
    """Inverse of `sae_payload`; a sha256 mismatch raises `NeurratorError` naming ``source``."""
    from safetensors.torch import load

    got = hashlib.sha256(weights).hexdigest()
    meta = json.loads(config_json)
    expected = sha256 or meta.get("weights_sha256")
    if expected is not None and got != expected:
        raise NeurratorError(source, f"SAE weights sha256 mismatch: expected {expected}, found {got}")
    if meta.get("format") != SAE_FORMAT:
        raise NeurratorError(source, f"not a neurrator SAE (format {meta.get('format')!r}, expected {SAE_FORMAT!r})")
    sae = SparseAutoencoder(SAEConfig(**meta["config"]))
    sae.load_state_dict(load(weights))
    sae.stats = dict(meta.get("stats") or {})
    if meta.get("concepts"):
        sae.concepts = Concepts(**meta["concepts"])
    return sae.eval()


def save_sae(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write ``config.json`` + ``sae.safetensors`` (sha256 inside config.json) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg, weights, _ = sae_payload(sae)
    (folder / "sae.safetensors").write_bytes(weights)
    (folder / "config.json").write_text(cfg)
    return folder


def load_sae(folder: str | Path) -> SparseAutoencoder:
    """Read an SAE written by `save_sae`, checking the weights' sha256."""
    folder = Path(folder)
    for name in ("config.json", "sae.safetensors"):
        if not (folder / name).is_file():
            raise NeurratorError(folder / name, "missing: not an SAE folder written by neurrator")
    return sae_from_payload((folder / "config.json").read_text(), (folder / "sae.safetensors").read_bytes(),
                            source=str(folder / "sae.safetensors"))


__all__ = ["SAEConfig", "Concepts", "SparseAutoencoder", "TrainStats", "SAEEval", "train_sae", "evaluate_sae",
           "frame_latents", "content_words", "name_concepts", "top_frames_separated", "sae_payload",
           "sae_from_payload", "save_sae", "load_sae", "STOPWORDS"]
