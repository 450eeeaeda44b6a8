"""Spike counts of any subset of units -> predicted patch tokens: the `SpikeEncoder` torch module.

Architecture (a Perceiver/POYO-style set encoder; no fixed-width neuron axis, so dropping units is
native and costs nothing):

1. unit tokens: each unit's window of counts (W bins) is log1p-transformed, standardised with that
   unit's training statistics, projected by a shared ``Linear(W, d)`` and scaled by the unit's own
   gain vector; the unit's identity embedding (a row of a table of all known units) and its session
   embedding are added, then a residual MLP mixes them -> (B, n, d).
2. attention pooling: ``n_latents`` learned latent queries cross-attend to the unit tokens (padding
   masked), then ``depth`` self-attention blocks over the latents. Attention over units is a weighted
   average, so the output does not depend on the order of the units and any n >= 1 works.
3. each patch starts from its own learned query plus its own mixture of the latents (per-channel
   gain), cross-attends to the latents, and a shared linear head (zero-initialised: an untrained
   encoder predicts the training mean) gives each token, de-standardised with the training targets'
   mean (per patch) and std (per dim), or (with ``out_components``) PCA coefficients expanded through
   a fixed basis to full tokens.

Pooled units from several sessions ("pseudo-mouse") are just more rows of the unit table, each with
a ``session`` tag (`SpikeEncoder.set_unit_sessions`).
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from neurrator.component_config import WINDOW_DTYPES, EncoderConfig
from neurrator.models.readout import retrieval_keys
from neurrator.models.subset_ridge import FactoredGram, subset_weights

__all__ = ["BLEND_KEYS", "BLEND_SIZES", "EncoderConfig", "SpikeEncoder"]

#: Subset sizes (besides all units) the blend is chosen for when the encoder keeps its training windows.
BLEND_SIZES = (10, 30, 100)
#: The blend's parameters (`SpikeEncoder.blend_output`), in `SpikeEncoder.blend_params`'s order.
BLEND_KEYS = ("beta", "gamma", "tau", "knn_k", "knn_w")


class _MLP(nn.Module):
    def __init__(self, d: int, ratio: float, dropout: float) -> None:
        super().__init__()
        h = max(1, int(round(d * ratio)))
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout), nn.Linear(h, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class _CrossBlock(nn.Module):
    """x <- x + Attn(LN(x), LN(ctx)); x <- x + MLP(x). ``mask``: (B, L) bool, True = attend."""

    def __init__(self, d: int, heads: int, ratio: float, dropout: float) -> None:
        super().__init__()
        self.h = heads
        self.nq, self.nkv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.kv, self.o = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)
        self.mlp = _MLP(d, ratio, dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, Lq, d = x.shape
        Lk = ctx.shape[1]
        dh = d // self.h
        q = self.q(self.nq(x)).view(B, Lq, self.h, dh).transpose(1, 2)
        k, v = self.kv(self.nkv(ctx)).view(B, Lk, 2, self.h, dh).permute(2, 0, 3, 1, 4)
        am = None if mask is None else mask[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=am)
        x = x + self.drop(self.o(a.transpose(1, 2).reshape(B, Lq, d)))
        return self.mlp(x)


class SpikeEncoder(nn.Module):
    """Counts of any unit subset -> (B, n_patches, dim) patch tokens.

    Examples
    --------
    >>> enc = SpikeEncoder(config=EncoderConfig(n_units=10, n_patches=4, dim=8, window_bins=5, d_model=16))
    >>> enc(torch.zeros(2, 5, 3), torch.tensor([0, 4, 9])).shape
    torch.Size([2, 4, 8])
    """

    def __init__(self, *, config: EncoderConfig) -> None:
        super().__init__()
        if None in (config.n_units, config.n_patches, config.dim):
            raise ValueError("EncoderConfig needs n_units, n_patches and dim to build a model (see for_data)")
        c = self.config = config
        d = c.d_model
        self.unit_emb = nn.Embedding(c.n_units, d)
        self.unit_gain = nn.Embedding(c.n_units, d)
        self.session_emb = nn.Embedding(c.n_sessions, d)
        self.temporal = nn.Linear(c.window_bins, d)
        self.unit_mlp = _MLP(d, c.mlp_ratio, c.dropout)
        self.latents = nn.Parameter(torch.randn(c.n_latents, d))
        self.pool = _CrossBlock(d, c.n_heads, c.mlp_ratio, c.dropout)
        self.blocks = nn.ModuleList(_CrossBlock(d, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.depth))
        self.patch_queries = nn.Parameter(torch.randn(c.n_patches, d) * 0.02)
        # each patch reads its own mixture of latents with its own per-channel gain, so frame-dependent
        # information reaches every patch differently from the first step (a shared head on a shared
        # pooled vector could only predict the same change for every patch)
        self.patch_mix = nn.Parameter(torch.randn(c.n_patches, c.n_latents) / math.sqrt(c.n_latents))
        self.patch_gain = nn.Parameter(torch.randn(c.n_patches, d))
        self.readout = _CrossBlock(d, c.n_heads, c.mlp_ratio, c.dropout)
        k = c.out_components if c.out_components is not None else c.dim
        self.head = nn.Linear(d, k)
        nn.init.zeros_(self.head.weight)  # start at the training mean; no input-dependent noise to unlearn
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.unit_emb.weight, std=1.0)
        nn.init.normal_(self.unit_gain.weight, std=1.0)
        nn.init.zeros_(self.session_emb.weight)
        # statistics set from the training data (identity until then); saved with the weights
        self.register_buffer("unit_session", torch.zeros(c.n_units, dtype=torch.long))
        self.register_buffer("count_mean", torch.zeros(c.n_units))
        self.register_buffer("count_std", torch.ones(c.n_units))
        self.register_buffer("target_mean", torch.zeros(c.n_patches, c.dim))
        self.register_buffer("target_std", torch.ones(c.dim))
        if c.linear_rank:
            # linear readout path (what ridge regression can represent), zero-initialised
            T = -(-c.window_bins // c.linear_pool)
            self.lin_weight = nn.Parameter(torch.zeros(c.n_units, T, c.linear_rank))
            self.lin_bias = nn.Parameter(torch.zeros(c.linear_rank))
            # gain as a function of log(n / n_units): shrinks subset predictions toward the mean
            self.lin_gain = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
            nn.init.zeros_(self.lin_gain[2].weight)
            nn.init.zeros_(self.lin_gain[2].bias)
            self.register_buffer("lin_basis", torch.zeros(c.linear_rank, c.n_patches * c.dim))
            self.register_buffer("lin_scale", torch.ones(c.linear_rank))
            self.register_buffer("lin_mean", torch.zeros(c.n_units, T))
            self.register_buffer("lin_std", torch.ones(c.n_units, T))
            if c.subset_ridge and c.n_units * T <= c.subset_ridge:
                # the closed-form ridge's sufficient statistics: a unit subset gets its own ridge solution
                self.register_buffer("lin_gram", torch.zeros(c.n_units * T, c.n_units * T))
            elif c.subset_ridge and c.gram_rank:  # too many features: the factored Gram (`subset_ridge`)
                self.register_buffer("lin_gvec", torch.zeros(c.n_units * T, c.gram_rank))
                self.register_buffer("lin_gval", torch.zeros(c.gram_rank))
                self.register_buffer("lin_gblock", torch.zeros(c.n_units, T, T))
                self.register_buffer("lin_gwhole", torch.zeros(c.n_units * T, c.linear_rank))
            if c.subset_ridge and (c.n_units * T <= c.subset_ridge or c.gram_rank):
                self.register_buffer("lin_xty", torch.zeros(c.n_units * T, c.linear_rank))
                self.register_buffer("lin_alpha", torch.zeros(()))
        self._subset_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        if c.blend:
            # output blend chosen on validation after training (`neurrator.models.readout`); identity until then
            self.register_buffer("blend_beta", torch.ones(()))
            self.register_buffer("blend_gamma", torch.zeros(()))
            self.register_buffer("blend_tau", torch.full((), 0.01))
            if c.bank_frames:  # full maps, or their coefficients in the linear basis (`set_bank`)
                shape = (c.bank_frames, c.bank_rank) if c.bank_rank else (c.bank_frames, c.n_patches, c.dim)
                self.register_buffer("bank", torch.zeros(shape))
            if c.bank_frames and c.window_bank and c.linear_rank:
                # kNN over the training windows (`window_knn`): their pooled counts and their frames' bank rows
                T = -(-c.window_bins // c.linear_pool)
                self.register_buffer("win_counts", torch.zeros(c.window_bank, c.n_units, T,
                                                               dtype=getattr(torch, c.window_dtype)))
                self.register_buffer("win_row", torch.zeros(c.window_bank, dtype=torch.long))
                # the blend chosen per subset size (`BLEND_SIZES` and all units): rows of (log n, beta, gamma,
                # tau, knn_k, knn_w); a subset decodes through the row nearest its size in log n
                sizes = [min(k, c.n_units) for k in BLEND_SIZES] + [c.n_units]
                table = torch.tensor([[math.log(n), 1.0, 0.0, 0.01, 0.0, 0.0] for n in sizes])
                self.register_buffer("blend_table", table)
        if c.out_components is not None:
            self.register_buffer("out_basis", torch.eye(c.out_components, c.dim))
            self.register_buffer("out_scale", torch.ones(c.out_components))

    # ---------------------------------------------------------------------------------- set-up
    @torch.no_grad()
    def set_unit_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-unit mean/std of log1p(counts) over training bins, (n_units,) each."""
        self.count_mean.copy_(mean)
        self.count_std.copy_(std.clamp_min(1e-3))

    @torch.no_grad()
    def set_unit_sessions(self, session: torch.Tensor) -> None:
        """(n_units,) long session tag of each unit-table row (pooled "pseudo-mouse" units)."""
        if session.min() < 0 or session.max() >= self.config.n_sessions:
            raise ValueError(f"session tags must be in 0..{self.config.n_sessions - 1}")
        self.unit_session.copy_(session)

    @torch.no_grad()
    def set_target_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Training targets' mean (n_patches, dim) and per-dimension std (dim,)."""
        self.target_mean.copy_(mean)
        self.target_std.copy_(std.clamp_min(1e-6))

    @torch.no_grad()
    def set_output_basis(self, components: torch.Tensor, scale: torch.Tensor) -> None:
        """PCA basis (k, dim) orthonormal rows and coefficient scale (k,) for ``out_components``."""
        if self.config.out_components is None:
            raise ValueError("this encoder predicts full tokens (out_components=None)")
        self.out_basis.copy_(components)
        self.out_scale.copy_(scale.clamp_min(1e-6))

    @torch.no_grad()
    def set_linear_basis(self, components: torch.Tensor, scale: torch.Tensor) -> None:
        """Basis of the linear path: (k, n_patches * dim) orthonormal rows over flattened standardised
        token maps, and coefficient scale (k,); k <= ``linear_rank`` (unused rows stay zero)."""
        if not self.config.linear_rank:
            raise ValueError("this encoder has no linear path (linear_rank=0)")
        k = components.shape[0]
        if k > self.config.linear_rank:
            raise ValueError(f"{k} components but linear_rank is {self.config.linear_rank}")
        self.lin_basis.zero_()
        self.lin_basis[:k].copy_(components)
        self.lin_scale.fill_(1.0)
        self.lin_scale[:k].copy_(scale.clamp_min(1e-6))

    @property
    def has_subset_ridge(self) -> bool:
        """True when this encoder keeps the linear path's Gram matrix, full or factored
        (`EncoderConfig.subset_ridge`, `EncoderConfig.gram_rank`)."""
        return hasattr(self, "lin_xty")

    @torch.no_grad()
    def set_subset_ridge(self, gram: torch.Tensor | FactoredGram, xty: torch.Tensor, alpha: float) -> None:
        """Training statistics of the linear path's z-scored features X (n, n_units * T), unit-major:
        ``gram`` = X'X (or, with ``gram_rank``, its `neurrator.models.subset_ridge.FactoredGram`), ``xty`` =
        X'Y (Y: centred basis coefficients, (n, k <= linear_rank)) and the ridge penalty ``alpha``; a subset
        S of units then decodes through ``(X_S'X_S + alpha I)^-1 X_S'Y``, exactly (full Gram) or nearly
        (factored) the ridge a retraining on S would start from."""
        if not self.has_subset_ridge:
            raise ValueError("this encoder keeps no Gram matrix (EncoderConfig.subset_ridge)")
        if hasattr(self, "lin_gram") != (not isinstance(gram, FactoredGram)):
            raise ValueError("a full Gram matrix needs gram_rank 0, a factored one gram_rank > 0")
        kept = (zip((self.lin_gvec, self.lin_gval, self.lin_gblock, self.lin_gwhole), gram)
                if isinstance(gram, FactoredGram) else [(self.lin_gram, gram)])
        for buf, t in [*kept, (self.lin_xty, xty)]:
            buf.zero_()
            buf[..., : t.shape[-1]].copy_(t)  # zero-padded along the last axis (rank, coefficients)
        self.lin_alpha.fill_(float(alpha))
        self._subset_cache = None

    def _subset_weights(self, unit_idx: torch.Tensor) -> torch.Tensor:
        """(n,) unit rows -> (n * T, K) closed-form ridge weights of that subset (cached for the last subset)."""
        c = self._subset_cache
        if (c is not None and c[0].shape == unit_idx.shape and c[0].device == unit_idx.device
                and c[1].device == self.lin_xty.device and torch.equal(c[0], unit_idx)):
            return c[1]
        gram = (self.lin_gram if hasattr(self, "lin_gram")
                else FactoredGram(self.lin_gvec, self.lin_gval, self.lin_gblock, self.lin_gwhole))
        w = subset_weights(unit_idx, self.lin_mean.shape[1], self.lin_xty, float(self.lin_alpha), gram)
        self._subset_cache = (unit_idx.detach().clone(), w)
        return w

    @torch.no_grad()
    def set_linear_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Mean/std (n_units, W / linear_pool) of the linear path's features over training windows."""
        self.lin_mean.copy_(mean)
        self.lin_std.copy_(std.clamp_min(1e-3))

    def pooled_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """(B, W, n) counts -> (B, n, W / linear_pool) counts summed in groups of ``linear_pool`` bins."""
        B, W, n = counts.shape
        p = self.config.linear_pool
        T = -(-W // p)
        x = counts.float().clamp_min(0)
        if T * p != W:
            x = F.pad(x, (0, 0, 0, T * p - W))
        return x.reshape(B, T, p, n).sum(2).transpose(1, 2)

    def linear_features(self, counts: torch.Tensor) -> torch.Tensor:
        """(B, W, n) counts -> (B, n, W / linear_pool) log1p of counts summed in groups (not z-scored)."""
        return torch.log1p(self.pooled_counts(counts))

    def _linear(self, counts: torch.Tensor, unit_idx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, W, n) counts -> (B, n_patches, dim) standardised tokens."""
        B, _, n = counts.shape
        if (self.has_subset_ridge and unit_idx.dim() == 1 and mask is None and n < self.config.n_units
                and float(self.lin_alpha) > 0):
            return self._ridge(counts, unit_idx)
        x = (self.linear_features(counts) - self.lin_mean[unit_idx]) / self.lin_std[unit_idx]  # (B, n, T)
        w = self.lin_weight[unit_idx]  # (n, W, K) or (B, n, W, K)
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)
            m = mask.sum(1).clamp_min(1).to(x.dtype)  # (B,)
        else:
            m = torch.full((B,), float(n), dtype=x.dtype, device=x.device)
        coef = torch.einsum("bnw,nwk->bk", x, w) if w.dim() == 3 else torch.einsum("bnw,bnwk->bk", x, w)
        frac = (m / self.config.n_units).clamp_max(1.0)
        gain = torch.exp(self.lin_gain(frac.log()[:, None]))  # (B, 1)
        coef = coef * (gain / frac[:, None]) + self.lin_bias
        flat = (coef * self.lin_scale) @ self.lin_basis
        return flat.view(B, self.config.n_patches, self.config.dim)

    # ---------------------------------------------------------------------------------- forward
    def forward(self, counts: torch.Tensor, unit_idx: torch.Tensor, mask: torch.Tensor | None = None,
                blend: bool | dict = True) -> torch.Tensor:
        """Predict patch tokens.

        Parameters
        ----------
        counts
            (B, W, n) float32 spike counts of the n units in each window.
        unit_idx
            (n,) or (B, n) long, rows of the unit table (which unit each column is).
        mask
            Optional (B, n) bool, True for real units, False for padding (only needed when the
            samples of a batch have different numbers of units).
        blend
            False: the encoder's own output, without the output blend (`blend_output`); True: through the
            fitted blend of this subset's size; a dict (``beta``, ``gamma``, ``tau``, ``knn_k``, ``knn_w``, e.g.
            `neurrator.models.subset_blend.BlendChoice.params`): through that blend.

        Returns
        -------
        tokens : (B, n_patches, dim), in the dtype of the computation.
        """
        B, W, n = counts.shape
        if W != self.config.window_bins:
            raise ValueError(f"counts have {W} bins per window, the encoder expects {self.config.window_bins}")
        if unit_idx.shape[-1] != n:
            raise ValueError(f"unit_idx has {unit_idx.shape[-1]} units, counts have {n}")
        one = unit_idx.dim() == 1 and mask is None  # the blend reads one unit subset shared by the batch
        if isinstance(blend, dict) and not (self.config.blend and one):
            raise ValueError("a blend was given, but this encoder was trained without the output blend"
                             if not self.config.blend else "a blend reads one unit subset shared by the batch")
        use = bool(blend) and self.config.blend and one
        params = (blend if isinstance(blend, dict) else dict(zip(BLEND_KEYS, self.blend_params(n)))) if use else None
        if use:  # blends that do not read the encoder's own output skip computing it (same numbers)
            if params["knn_k"] > 0 and params["knn_w"] >= 1.0 and self.has_window_bank:
                return self.window_knn(counts, unit_idx, int(params["knn_k"]))
            if params["beta"] == 0.0 and self.has_subset_ridge and float(self.lin_alpha) > 0:
                return self.blend_output(self.ridge_tokens(counts, unit_idx), counts, unit_idx, **{**params, "beta": 1.0})
        x = torch.log1p(counts.float().clamp_min(0)).transpose(1, 2)  # (B, n, W)
        mu, sd = self.count_mean[unit_idx], self.count_std[unit_idx]  # (n,) or (B, n)
        x = (x - mu.unsqueeze(-1)) / sd.unsqueeze(-1)
        ident = self.unit_emb(unit_idx) + self.session_emb(self.unit_session[unit_idx])
        # the unit's own gain on its temporal features: pooling then starts as a per-unit linear readout
        temporal = self.temporal(x.to(self.temporal.weight.dtype)) * self.unit_gain(unit_idx)
        tok = self.unit_mlp(temporal + ident)  # (B, n, d)
        lat = self.pool(self.latents.expand(B, -1, -1), tok, mask)
        for blk in self.blocks:
            lat = blk(lat, lat)
        mixed = torch.einsum("pl,bld->bpd", self.patch_mix.to(lat.dtype), lat) * self.patch_gain.to(lat.dtype)
        z = self.readout(self.patch_queries + mixed, lat)
        out = self.head(z)
        lin = self._linear(counts, unit_idx, mask) if self.config.linear_rank else 0.0
        if self.config.out_components is not None:
            y = (out * self.out_scale) @ self.out_basis + lin * self.target_std + self.target_mean
        else:
            y = (out + lin) * self.target_std + self.target_mean
        if use:
            y = self.blend_output(y, counts, unit_idx, **params)
        return y

    def _ridge(self, counts: torch.Tensor, unit_idx: torch.Tensor) -> torch.Tensor:
        """(B, W, n) counts -> (B, n_patches, dim) standardised tokens of the closed-form ridge on these units."""
        x = (self.linear_features(counts) - self.lin_mean[unit_idx]) / self.lin_std[unit_idx]  # (B, n, T)
        coef = x.reshape(len(x), -1) @ self._subset_weights(unit_idx) + self.lin_bias
        flat = (coef * self.lin_scale) @ self.lin_basis
        return flat.view(len(x), self.config.n_patches, self.config.dim)

    def ridge_tokens(self, counts: torch.Tensor, unit_idx: torch.Tensor) -> torch.Tensor:
        """(B, W, n) counts of the units ``unit_idx`` (n,) -> (B, n_patches, dim) tokens of the closed-form
        ridge regression on exactly these units (from the kept Gram matrix; `set_subset_ridge`)."""
        return self._ridge(counts, unit_idx) * self.target_std + self.target_mean

    @torch.no_grad()
    def set_bank(self, maps: torch.Tensor) -> None:
        """Keep (bank_frames, n_patches, dim) training frames' target maps for the blend: as they are, or with
        ``bank_rank`` their coefficients in the linear path's basis (`set_linear_basis`; set that and
        `set_target_stats` first): ``c = ((map - mean) / std) @ basis[:bank_rank].T``, the best rank-r
        approximation of the standardised maps when the basis is their principal components."""
        r = self.config.bank_rank
        if not r:
            self.bank.copy_(maps)
            return
        z = ((maps.to(self.target_mean) - self.target_mean) / self.target_std).flatten(1)
        self.bank.copy_(z @ self.lin_basis[:r].T)

    def _expand(self, coef: torch.Tensor) -> torch.Tensor:
        """(B, bank_rank) coefficients -> (B, n_patches, dim) centred maps (without ``target_mean``)."""
        flat = coef.to(self.lin_basis.dtype) @ self.lin_basis[: self.config.bank_rank]
        return flat.view(len(coef), self.config.n_patches, self.config.dim) * self.target_std

    def bank_basis(self) -> torch.Tensor:
        """(bank_rank, n_patches * dim) rows whose combination ``coef @ rows`` is the centred map a row of
        coefficients stands for (the linear basis rescaled by the targets' std)."""
        r, c = self.config.bank_rank, self.config
        return (self.lin_basis[:r].view(r, c.n_patches, c.dim) * self.target_std).flatten(1)

    def bank_maps(self) -> torch.Tensor:
        """(bank_frames, n_patches, dim) maps the blend retrieves: ``bank`` itself, or the maps its
        coefficients stand for (``bank_rank``)."""
        if not self.config.bank_rank:
            return self.bank
        return self._expand(self.bank) + self.target_mean

    def _centred_bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, keys) of the soft retrieval over ``bank`` (`neurrator.models.readout.retrieval_keys`; with
        ``bank_rank`` in coefficient space, met by a query projected as in `_soft_retrieval`). Computed once per
        state of ``bank`` and the target statistics (every forward pass used to recompute them: a third of the
        soft retrieval's time, ~18 s of the demo)."""
        key = (self.bank.data_ptr(), self.bank._version, self.target_mean.data_ptr(), self.target_mean._version,
               self.target_std._version, self.bank.device, self.bank.dtype)
        cached = getattr(self, "_bank_cache", None)
        if cached is None or cached[0] != key:
            cached = self._bank_cache = (key, *retrieval_keys(self.bank, self.target_mean,
                                                              self.bank_basis() if self.config.bank_rank else None))
        return cached[1], cached[2]

    def _soft_retrieval(self, y: torch.Tensor, tau: float) -> torch.Tensor:
        """(B, n_patches, dim) outputs -> ``softmax(cos(y - mean, bank - mean) / tau) @ bank``, float32."""
        values, keys = self._centred_bank()
        q = F.normalize((y - self.target_mean).flatten(1).float(), dim=1)
        if self.config.bank_rank:  # cos with a map c @ basis * std: project q * std onto the basis
            r = self.config.bank_rank
            q = (q.view_as(y) * self.target_std).flatten(1) @ self.lin_basis[:r].T
            return self._expand(torch.softmax((q @ keys.T) / tau, dim=1) @ values) + self.target_mean
        return (torch.softmax((q @ keys.T) / tau, dim=1) @ values).view_as(y) + self.target_mean

    @property
    def has_window_bank(self) -> bool:
        """True when this encoder keeps its training windows for the blend's kNN (`EncoderConfig.window_bank`)."""
        return hasattr(self, "win_counts")

    @torch.no_grad()
    def set_window_bank(self, pooled: torch.Tensor, rows: torch.Tensor) -> None:
        """(window_bank, n_units, T) pooled counts of the training windows (`pooled_counts`) and (window_bank,)
        the row of ``bank`` (their frame's map) of each."""
        self.win_counts.copy_(pooled.round().clamp(0, WINDOW_DTYPES[self.config.window_dtype]))
        self.win_row.copy_(rows)
        self._knn_cache = self._knn_full = None

    def _window_keys(self, unit_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(window_bank, n * T) z-scored features of the kept training windows on these units and (window_bank,)
        their norms. The z-scored features of all units and each unit's squared norm are computed once per
        state of the bank; a subset's keys are a column selection of them (cached for the last subset)."""
        key = (self.win_counts._version, self.lin_mean._version, self.lin_std._version, self.win_counts.device)
        full = getattr(self, "_knn_full", None)
        if full is None or full[0] != key:
            z = (torch.log1p(self.win_counts.float()) - self.lin_mean) / self.lin_std  # (W, N, T)
            full = self._knn_full = (key, z, (z * z).sum(-1))
            self._knn_cache = None
        c = getattr(self, "_knn_cache", None)
        if (c is not None and c[0].shape == unit_idx.shape and c[0].device == unit_idx.device
                and torch.equal(c[0], unit_idx)):
            return c[1], c[2]
        keys = full[1].index_select(1, unit_idx).flatten(1)
        norms = full[2].index_select(1, unit_idx).sum(1).sqrt().clamp_min(1e-12)
        self._knn_cache = (unit_idx.detach().clone(), keys, norms)
        return keys, norms

    def window_neighbours(self, counts: torch.Tensor, unit_idx: torch.Tensor, k: int) -> torch.Tensor:
        """(B, W, n) counts of the units ``unit_idx`` (n,) -> (B, k) rows of the ``k`` kept training windows
        nearest by cosine of z-scored features on exactly these units, nearest first."""
        x = (self.linear_features(counts) - self.lin_mean[unit_idx]) / self.lin_std[unit_idx]
        keys, norms = self._window_keys(unit_idx)
        sim = (F.normalize(x.flatten(1).float(), dim=1) @ keys.T) / norms
        return sim.topk(min(int(k), len(keys)), dim=1).indices

    def window_knn(self, counts: torch.Tensor, unit_idx: torch.Tensor, k: int) -> torch.Tensor:
        """(B, W, n) counts of the units ``unit_idx`` (n,) -> (B, n_patches, dim): the mean map of the frames of
        the ``k`` nearest kept training windows (`window_neighbours`)."""
        return self.bank_mean(self.win_row[self.window_neighbours(counts, unit_idx, k)])

    def bank_mean(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, k) rows of ``bank`` -> (B, n_patches, dim) the mean of their maps (an embedding bag: the (B, k)
        maps are never materialised, 15x faster than gathering them in the demo)."""
        mean = F.embedding_bag(rows, self.bank.flatten(1), mode="mean")
        if self.config.bank_rank:
            return self._expand(mean) + self.target_mean
        return mean.view(len(rows), *self.bank.shape[1:]).to(self.bank.dtype)

    def blend_output(self, y: torch.Tensor, counts: torch.Tensor, unit_idx: torch.Tensor,
                     beta: float | None = None, gamma: float | None = None, tau: float | None = None,
                     knn_k: int | None = None, knn_w: float | None = None) -> torch.Tensor:
        """The blended output: ``r + beta (y - r)`` (r: `ridge_tokens` of the same units), then a share
        ``gamma`` of the soft retrieval ``softmax(cos(. - mean, bank - mean) / tau) @ bank`` over the training
        frames' maps, then a share ``knn_w`` of `window_knn` with ``knn_k`` neighbours. Arguments default to the
        fitted buffers (`neurrator.models.readout.fit_blend`): with a window bank the ``blend_table`` row of
        this subset's size (`blend_row`), else the scalars ``blend_beta`` / ``blend_gamma`` / ``blend_tau``."""
        given, fitted = (beta, gamma, tau, knn_k, knn_w), self.blend_params(len(unit_idx))
        beta, gamma, tau, knn_k, knn_w = (f if v is None else v for v, f in zip(given, fitted))
        if beta != 1.0 and self.has_subset_ridge and float(self.lin_alpha) > 0:
            r = self.ridge_tokens(counts, unit_idx).to(y.dtype)
            y = r + beta * (y - r)
        if gamma > 0 and self.config.bank_frames:
            y = (1 - gamma) * y + gamma * self._soft_retrieval(y, tau).to(y.dtype)
        if knn_k > 0 and knn_w > 0 and self.has_window_bank:
            y = (1 - knn_w) * y + knn_w * self.window_knn(counts, unit_idx, knn_k).to(y.dtype)
        return y

    def blend_params(self, n: int) -> tuple[float, float, float, int, float]:
        """(beta, gamma, tau, knn_k, knn_w) of the fitted blend for a subset of ``n`` units: its ``blend_table``
        row (`blend_row`) with a window bank, else the scalars ``blend_beta`` / ``blend_gamma`` / ``blend_tau``."""
        if self.has_window_bank:
            b0, g0, t0, k0, w0 = (float(v) for v in self.blend_table[self.blend_row(n), 1:])
            return b0, g0, t0, int(k0), w0
        return float(self.blend_beta), float(self.blend_gamma), float(self.blend_tau), 0, 0.0

    def blend_row(self, n: int) -> int:
        """The row of ``blend_table`` a subset of ``n`` units decodes through (nearest in log n)."""
        return int((self.blend_table[:, 0] - math.log(max(int(n), 1))).abs().argmin())

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

