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

Concept naming (one name per latent, from texts of frames) lives in `neurrator.sae.concepts`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurrator.sae.concepts import Concepts
from neurrator.component_config import SAEConfig
from neurrator.errors import NeurratorError
from neurrator.sae.concepts import name_concepts_correlation

SAE_FORMAT = "neurrator-topk-sae/1"


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
        if config.d_in is None:
            raise ValueError("SAEConfig needs d_in to build an SAE (see for_data)")
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


def naming_frames(naming_texts: dict[int, str], exclude_frames: np.ndarray, *, fps: float) -> tuple[np.ndarray, int]:
    """Frames that may name concepts: those with a text, none within ``guard`` = a sixth of a second of
    a frame in ``exclude_frames`` (5 frames at 30 Hz; 0 below 6 Hz, e.g. ``fps=1`` for flashed images,
    whose neighbours by index are other images); returns (sorted frames, guard)."""
    guard = int(round(fps)) // 6
    held_out = set((np.asarray(exclude_frames)[:, None] + np.arange(-guard, guard + 1)[None]).ravel().tolist())
    return np.array([f for f in sorted(naming_texts) if f not in held_out], dtype=np.int64), guard


def train_named_sae(targets: np.ndarray, naming_texts: dict[int, str], *, naming_kind: str,
                    exclude_frames: np.ndarray, config: SAEConfig, epochs: int, vocabulary: Sequence[str] | None,
                    fps: float, device: str, seed: int) -> tuple[SparseAutoencoder, Concepts, str]:
    """An SAE over all patch tokens of the stimulus, its latents named from training frames only.

    Each latent is named by the term whose presence in the naming texts correlates best with its frame
    activation (`neurrator.sae.concepts.name_concepts_correlation`): on simulated sessions this recovers the
    true strongest feature of 0.79-0.83 of the clearly tuned units over 5 seeds, against 0.51-0.91 for
    top-frame log-odds enrichment (`name_concepts`), whose top frames in a movie come from a few shots.

    The frames in ``exclude_frames`` (the narrated test windows) and their neighbours (a sixth of a second
    each side: near-identical frames) never name a concept, since validation checks narrations of those
    frames against the concepts; excluding whole 1-s blocks would leave nothing, as the narrated windows
    span the movie.

    Parameters
    ----------
    targets
        ``(F, n_patches, dim)`` true patch tokens.
    naming_texts
        Frame -> text that may name concepts (captions variant 0, or oracle texts of bank frames).
    naming_kind
        Where those texts come from (recorded in the returned naming split).
    config, epochs
        `SAEConfig` (``d_in`` filled from the data) and training epochs.
    vocabulary
        Restrict names to these terms (the simulator's feature vocabulary), or None.

    Returns
    -------
    sae, concepts, naming_split
        The trained SAE (``sae.concepts`` set), its `Concepts` and a sentence on which frames named them.
    """
    sae, _stats = train_sae(targets, config=config.for_data(targets.shape[2]), epochs=epochs, device=device,
                            seed=seed)
    named, guard = naming_frames(naming_texts, exclude_frames, fps=fps)
    latents = frame_latents(sae, targets[named], device=device)
    concepts = name_concepts_correlation(latents, [naming_texts[int(f)] for f in named], vocabulary=vocabulary)
    sae.concepts = concepts
    split = (f"train: {len(named)} training frames, none within {guard} frames of the {len(exclude_frames)} "
             f"narrated test frames; texts: {naming_kind}")
    return sae, concepts, split


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


__all__ = ["SAEConfig", "SparseAutoencoder", "TrainStats", "SAEEval", "train_sae", "evaluate_sae",
           "frame_latents", "naming_frames", "sae_payload", "train_named_sae",
           "sae_from_payload", "save_sae", "load_sae"]
