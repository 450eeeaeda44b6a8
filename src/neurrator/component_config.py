"""Settings of the pipeline's components: encoder training (`TrainConfig`), architecture
(`EncoderConfig`), the validating SAE (`SAEConfig`), the issue-9 analyses (`AnalysisConfig`) and the
decoded unit subsets (`SubsetPlan`).

Each is a frozen, JSON-able record nested in `neurrator.config.NarrateConfig` (which re-exports them).
Every field is documented by the string under it (an attribute docstring, as Sphinx autodoc reads it);
tests/test_config_docs.py keeps it so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

PRECISIONS = ("float32", "bfloat16")
#: How the blend's window bank may store pooled counts, and each one's largest count.
WINDOW_DTYPES = {"uint8": 255, "int16": 32767}


@dataclass(frozen=True)
class TrainConfig:
    """How an encoder is trained (JSON-able; stored in checkpoints).

    Each field is documented under it.

    Examples
    --------
    >>> TrainConfig(max_epochs=3).to_dict()["max_epochs"]
    3
    >>> TrainConfig(min_units=5, max_units=2)
    Traceback (most recent call last):
    ...
    ValueError: max_units (2) < min_units (5)
    """

    window_bins: int = 20
    """W, bins in each input window (20 at 120 Hz: 167 ms)."""
    offset_bins: int = 0
    """Window alignment: 0 centres it on the frame (the paper); > 0 lags it (visual latency)."""
    batch_size: int = 64
    """Presentations per step."""
    max_epochs: int = 30
    """Upper bound on passes over the training presentations."""
    lr: float = 3e-3
    """AdamW learning rate (the peak, reached at the end of the warm-up)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warm-up (at most a tenth of all steps), then cosine decay to ``lr * min_lr_ratio`` at the
    last step."""
    min_lr_ratio: float = 0.02
    """Final learning rate as a fraction of ``lr``."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 disables clipping)."""
    eval_every: int = 0
    """Steps between validations (0: once per epoch)."""
    patience: int = 2
    """Stop after this many validations without improvement of the validation loss."""
    min_units: int = 1
    """Lower end of the log-uniform unit-subset size of the batches that do not use all units."""
    max_units: int | None = None
    """Upper end of the log-uniform unit-subset size (None: all units)."""
    full_set_prob: float = 0.8
    """Probability that a batch uses all units."""
    val_subsets: tuple[int, ...] = ()
    """Sizes of extra validation unit subsets (one fixed random draw per size; sizes >= the unit count
    skipped): early stopping reads the validation loss averaged over all units and these subsets, so the
    kept weights are the best for subsets too (all units alone stop while subsets still improve)."""
    mse_weight: float = 0.5
    """Weight of the MSE term; the loss is ``mse_weight * MSE(standardised tokens) + cos_weight * (1 - patch
    cosine) + infonce_weight * InfoNCE(flattened frames, in-batch negatives)``."""
    cos_weight: float = 0.5
    """Weight of the ``1 - patch cosine`` term of the loss (see ``mse_weight``)."""
    infonce_weight: float = 1.0
    """Weight of the InfoNCE term of the loss (flattened frames, in-batch negatives; see ``mse_weight``)."""
    temperature: float = 0.05
    """InfoNCE temperature."""
    centred_cosine: bool = False
    """Take the loss's patch cosine on tokens minus the training mean map (the centred patch cosine the
    decoding is scored on) instead of on raw tokens, whose cosine the shared mean map holds near 1."""
    pca_components: int | None = None
    """Train through a per-token PCA basis of this many components (``EncoderConfig.out_components``);
    predictions are always expanded back to full tokens. None: full tokens."""
    linear_init: bool = True
    """Start the encoder's linear path (`EncoderConfig.linear_rank`) at the closed-form ridge solution on
    all units (alpha chosen by validation MSE from `neurrator.models.linear_init.RIDGE_ALPHAS`), so training
    starts from ridge and the attention path learns what is left."""
    linear_l2: float | None = None
    """Ridge penalty on the linear path during training, as ridge's alpha per training window:
    ``mse_weight * linear_l2 * sum_k scale_k^2 |w_k|^2 / (n_patches * dim)``. None: the alpha of the
    closed-form initialisation / training windows (1.0 without it)."""
    linear_lr_scale: float = 0.1
    """Learning rate of the linear path's per-unit weights relative to ``lr`` (Adam's normalised steps at
    the full rate drive the many weak per-unit weights into noise within a few epochs)."""
    precision: str = "float32"
    """``float32`` or ``bfloat16`` (autocast; CUDA only, CPU always runs float32)."""

    def __post_init__(self) -> None:
        for name in ("window_bins", "batch_size", "max_epochs", "patience", "min_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "weight_decay", "grad_clip", "mse_weight", "cos_weight",
                     "infonce_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if self.lr <= 0 or self.temperature <= 0 or self.linear_lr_scale <= 0:
            raise ValueError("lr, linear_lr_scale and temperature must be > 0")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 <= self.full_set_prob <= 1:
            raise ValueError("min_lr_ratio and full_set_prob must be in [0, 1]")
        if self.max_units is not None and self.max_units < self.min_units:
            raise ValueError(f"max_units ({self.max_units}) < min_units ({self.min_units})")
        if self.mse_weight + self.cos_weight + self.infonce_weight == 0:
            raise ValueError("at least one loss weight must be > 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.linear_l2 is not None and self.linear_l2 < 0:
            raise ValueError(f"linear_l2 must be >= 0 or None, not {self.linear_l2}")
        if self.pca_components is not None and self.pca_components < 1:
            raise ValueError("pca_components must be >= 1 or None")
        object.__setattr__(self, "val_subsets", tuple(int(k) for k in self.val_subsets))
        if any(k < 1 for k in self.val_subsets):
            raise ValueError("val_subsets must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a `SpikeEncoder` (JSON-able; stored in checkpoints).

    Each field is documented under it.

    Examples
    --------
    >>> EncoderConfig(d_model=64).for_data(n_units=300, n_patches=576, dim=1024).n_units
    300
    """

    n_units: int | None = None
    """Rows of the unit identity table (all units the encoder knows, over all pooled sessions). From the
    data: None in a run configuration (`for_data` fills it); a model needs it."""
    n_patches: int | None = None
    """Output tokens per frame (64 for ``tiny``, 576 for LLaVA-1.5). From the data: None in a run
    configuration (`for_data` fills it); a model needs it."""
    dim: int | None = None
    """Width of each output token (64 for ``tiny``, 1024 for LLaVA-1.5). From the data: None in a run
    configuration (`for_data` fills it); a model needs it."""
    window_bins: int = 20
    """W, bins in each unit's input window."""
    n_sessions: int = 1
    """Rows of the session embedding table (1 for a single session)."""
    d_model: int = 128
    """Width of unit tokens, latents and patch queries."""
    n_heads: int = 4
    """Attention heads (must divide d_model)."""
    n_latents: int = 32
    """Latent queries that pool the unit tokens."""
    depth: int = 2
    """Self-attention blocks over the latents."""
    mlp_ratio: float = 2.0
    """Hidden width of every MLP, as a multiple of d_model."""
    dropout: float = 0.0
    """Dropout in MLPs and on attention outputs (training only)."""
    out_components: int | None = None
    """If set, the head predicts this many PCA coefficients per token, expanded to ``dim`` by a fixed basis
    (`neurrator.models.encoder.SpikeEncoder.set_output_basis`); None predicts full tokens directly."""
    linear_rank: int = 256
    """K, width of the linear readout path: each unit's window, summed in groups of ``linear_pool`` bins,
    log1p-transformed and z-scored per (unit, group), is mapped by the unit's own ``(W / linear_pool, K)``
    matrix to K coefficients of a fixed basis of whole standardised token maps
    (`neurrator.models.encoder.SpikeEncoder.set_linear_basis`: top principal components of the training
    frames), summed over the units present, rescaled by n_units / n and a learned gain of n for subsets.
    On all units this is exactly a ridge regression (training initialises it with the closed-form ridge
    solution). 0 disables the path. A run caps it (`linear_rank_for`)."""
    linear_pool: int = 4
    """Bins summed per input feature of the linear path (4 = one movie frame at 120 Hz); the last group is
    shorter when it does not divide ``window_bins``."""
    subset_ridge: int = 4096
    """Keep the linear path's training Gram matrix when it has at most this many features
    (``n_units * window_bins / linear_pool``; a float32 buffer of features^2, 64 MB at 4096, stored with
    the weights), so that a strict subset of the units decodes through its own closed-form ridge solution
    (`neurrator.models.encoder.SpikeEncoder.set_subset_ridge`) instead of the all-unit weights rescaled;
    0 never keeps it."""
    gram_rank: int = 0
    """0: a strict subset's ridge needs the full Gram matrix (``subset_ridge``). Otherwise, when the features
    exceed ``subset_ridge``, the encoder keeps a factored Gram instead: its top ``gram_rank`` eigenvectors and
    each unit's exact residual block (`neurrator.models.subset_ridge`), in about the same bytes, so that
    subsets decode through a near-exact ridge at real sizes (2,000 units x 5 pooled bins: 10,000 features,
    400 MB in full); training chooses it (`neurrator.models.subset_ridge.gram_rank_plan`)."""
    blend: bool = True
    """After training, choose on the validation repeats an output blend (`neurrator.models.readout`):
    ``ridge + beta (encoder - ridge)`` (ridge: the closed-form ridge of the same units, needs
    ``subset_ridge``), then a share ``gamma`` of a soft retrieval over the training frames' maps
    (``bank_frames``), then a share of a kNN over the training windows (``window_knn``), chosen per subset
    size; the choice keeps the validation centred patch cosine at least ridge's and maximises
    identification (mean of top-1, top-5, top-30) under that; beta = 1, gamma = 0 is the plain encoder."""
    bank_frames: int = 0
    """Training frames whose target maps the encoder keeps for the blend's soft retrieval (filled by
    training when they fit `neurrator.models.readout.MAX_BANK_BYTES`; 0: no retrieval)."""
    bank_rank: int = 0
    """0: ``bank_frames`` full target maps. Otherwise the bank holds each frame's first ``bank_rank``
    coefficients in the linear path's basis (`neurrator.models.encoder.SpikeEncoder.set_bank`; at most
    ``linear_rank``): what training chooses when the full maps exceed
    `neurrator.models.readout.MAX_BANK_BYTES` (900 frames of CLIP ViT-L/14-336's 576 x 1024 are 2.1 GB;
    rank 64 of them, 230 kB), so the blend's retrieval and kNN run at real dimensions on the maps'
    projections onto that basis, the space the ridge path predicts in."""
    window_knn: bool = True
    """With ``blend``, keep the training windows (``window_bank``) so the blend adds a kNN over input windows
    and is chosen per subset size (`neurrator.models.readout`); it wins every decoding metric against ridge
    and kNN, and top-1, top-5 and the cosine against CEBRA, in benchmarks/bench_peers.py (RESULTS.md, issue
    28). False: the blend without it (one choice for every subset size)."""
    window_bank: int = 0
    """Training windows whose pooled counts (``window_dtype``, as the linear path pools them) the encoder
    keeps for the blend's kNN over input windows: the k training windows most similar (cosine of z-scored
    features, on the units given) vote with their frames' maps (filled by training when ``bank_frames`` is
    kept: every training window, or as many evenly spaced ones as fit
    `neurrator.models.readout.MAX_BANK_BYTES`; 0: no kNN)."""
    window_dtype: str = "uint8"
    """How the window bank stores its pooled counts: ``"uint8"`` (one byte, twice the windows in the same bytes;
    what training picks when no pooled count can exceed 255: the largest bin count times ``linear_pool``) or
    ``"int16"`` (what every checkpoint written before this field holds)."""

    def __post_init__(self) -> None:
        for name in ("n_units", "n_patches", "dim", "window_bins", "n_sessions", "d_model", "n_heads", "n_latents"):
            if getattr(self, name) is None and name in ("n_units", "n_patches", "dim"):
                continue
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0, not {self.depth}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, not {self.mlp_ratio}")
        if self.linear_rank < 0:
            raise ValueError(f"linear_rank must be >= 0, not {self.linear_rank}")
        if self.linear_pool < 1:
            raise ValueError(f"linear_pool must be >= 1, not {self.linear_pool}")
        if self.bank_frames < 0 or self.window_bank < 0:
            raise ValueError(f"bank_frames and window_bank must be >= 0, not {self.bank_frames}, {self.window_bank}")
        if self.bank_rank < 0 or (self.bank_rank and self.bank_rank > self.linear_rank):
            raise ValueError(f"bank_rank must be in 0..linear_rank ({self.linear_rank}), not {self.bank_rank}")
        if self.window_dtype not in WINDOW_DTYPES:
            raise ValueError(f"window_dtype must be one of {', '.join(WINDOW_DTYPES)}, not {self.window_dtype!r}")
        if self.subset_ridge < 0:
            raise ValueError(f"subset_ridge must be >= 0, not {self.subset_ridge}")
        T = -(-self.window_bins // self.linear_pool)
        if self.gram_rank < 0 or (self.gram_rank and self.n_units is not None and self.gram_rank > self.n_units * T):
            raise ValueError(f"gram_rank must be in 0..n_units * window_bins / linear_pool, not {self.gram_rank}")
        if self.out_components is not None and self.dim is not None and not 1 <= self.out_components <= self.dim:
            raise ValueError(f"out_components must be in 1..dim ({self.dim}), not {self.out_components}")

    def to_dict(self) -> dict:
        return asdict(self)

    def for_data(self, *, n_units: int, n_patches: int, dim: int, window_bins: int | None = None) -> EncoderConfig:
        """This architecture with the data's sizes filled in (and the window, when given)."""
        return replace(self, n_units=int(n_units), n_patches=int(n_patches), dim=int(dim),
                       window_bins=int(window_bins if window_bins is not None else self.window_bins))


#: The encoder's linear readout basis is stored in every checkpoint and derived file: at most this many
#: bytes of it (rank 64 at CLIP ViT-L/14-336's 576 x 1024; rank 256 would be 604 MB).
MAX_LINEAR_BASIS_BYTES = 160 * 10**6


def linear_rank_for(requested: int, *, n_patches: int, dim: int, n_frames: int) -> int:
    """The linear path's rank: ``requested``, at most the distinct training frames, and (in steps of 16,
    at least 16) within `MAX_LINEAR_BASIS_BYTES` of float32 basis.

    >>> linear_rank_for(256, n_patches=576, dim=1024, n_frames=900), linear_rank_for(256, n_patches=16,
    ...                 dim=64, n_frames=120)
    (64, 120)
    """
    if requested <= 0:
        return 0
    cap = max(16, MAX_LINEAR_BASIS_BYTES // (4 * int(n_patches) * int(dim)) // 16 * 16)
    return int(min(requested, n_frames, cap))


@dataclass(frozen=True)
class SAEConfig:
    """Architecture of a TopK SAE.

    Each field is documented under it.

    Examples
    --------
    >>> SAEConfig(n_latents=1024, k=16).for_data(64).aux_k
    32
    """

    d_in: int | None = None
    """Width of the patch tokens (64 for the tiny backbone, 1024 for CLIP ViT-L/14); None in a run
    configuration, filled from the data by `for_data`."""
    n_latents: int = 1024
    """Dictionary size."""
    k: int = 16
    """Latents kept per token."""
    aux_k: int | None = None
    """Dead latents used by the AuxK loss (Gao et al.: 512; default ``min(512, d_in // 2)``)."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss (Gao et al.: 1/32)."""
    dead_tokens: int = 1_000_000
    """A latent is dead when it has not fired for this many training tokens."""

    def __post_init__(self) -> None:
        for name in ("d_in", "n_latents", "k", "dead_tokens"):
            if name == "d_in" and self.d_in is None:
                continue
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.k > self.n_latents:
            raise ValueError(f"k ({self.k}) cannot exceed n_latents ({self.n_latents})")
        if self.aux_k is None and self.d_in is not None:
            object.__setattr__(self, "aux_k", max(1, min(512, self.d_in // 2, self.n_latents)))
        if self.aux_k is not None and not 1 <= self.aux_k <= self.n_latents:
            raise ValueError(f"aux_k must be in [1, n_latents], not {self.aux_k}")
        if self.aux_coef < 0:
            raise ValueError(f"aux_coef must be >= 0, not {self.aux_coef}")

    def for_data(self, d_in: int) -> SAEConfig:
        """This configuration for tokens of width ``d_in`` (AuxK width recomputed unless set)."""
        return replace(self, d_in=int(d_in))


@dataclass(frozen=True)
class AnalysisConfig:
    """The single-neuron, group and scaling analyses (`neurrator.analysis.run`).

    Each field is documented under it.

    Examples
    --------
    >>> AnalysisConfig(scaling_sizes=[1, 10]).scaling_sizes
    (1, 10)
    """

    enabled: bool = True
    """Run them (they need named SAE concepts)."""
    contributions: bool = True
    """Also run the leave-one-out and drive probes (one encoder pass per unit)."""
    eval_windows: int = 300
    """Held-out test windows (evenly spaced) the scaling curves are evaluated on."""
    probe_windows: int = 120
    """The subset of the ``eval_windows`` windows used by the per-unit leave-one-out and the
    decoded-enrichment pools (one encoder pass per unit and per pool)."""
    null_pools: int = 25
    """Random pools per group for decoded enrichment (as large as the group; cell types: from the same
    regions), each one encoder pass on the probe windows; the group is tested against the pools regressed
    on their decoding fidelity (Student's t on null_pools - 2 df, so at least 4)."""
    separation_pools: int = 10
    """Draws of matched random pools for narration separation and the text classifier: per draw one pool
    per group (disjoint, as large as the group; cell types: from the same regions), each one encoder pass
    and narration of the narrated windows; t on separation_pools - 2 df (at least 4)."""
    n_boot: int = 200
    """Bootstrap resamples of the analyses (>= 200 for the group CIs)."""
    n_perm: int = 1000
    """Permutations of the analyses."""
    scaling_sizes: tuple[int, ...] = (1, 3, 10, 30, 100, 300)
    """Population sizes per region of the scaling curves (sizes above a region's unit count are
    skipped)."""
    scaling_draws: int = 10
    """Random draws per population size of the scaling curves: the unit of replication of their tests
    (a sign-flip test over draws, exact over all 2^D sign patterns, so p can reach 1/1024 with 10 draws;
    fewer than 5 draws can never reach p < 0.05)."""
    drive_null: int = 1000
    """Most spiking-noise inputs narrated per region for the drive probe's null (p resolution
    1/(1 + drive_null); the pool stops early where no unit stands out)."""

    def __post_init__(self) -> None:
        for name in ("eval_windows", "probe_windows", "null_pools", "n_boot", "n_perm", "scaling_draws",
                     "drive_null"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        for name in ("null_pools", "separation_pools"):  # a regression on the pools' fidelity needs n - 2 >= 2
            if getattr(self, name) < 4:
                raise ValueError(f"{name} must be >= 4, not {getattr(self, name)}")
        if any(int(n) < 1 for n in self.scaling_sizes):
            raise ValueError("scaling_sizes must be >= 1")
        object.__setattr__(self, "scaling_sizes", tuple(int(n) for n in self.scaling_sizes))


@dataclass(frozen=True)
class SubsetPlan:
    """Which subsets to build (`neurrator.decode.subsets.build_subsets`).

    Each field is documented under it.
    """

    min_units: int = 10
    """Region, cell-type and local-population groups smaller than this are skipped (and reported)."""
    local_span_um: float = 200.0
    """Width of a local population along the probe, in micrometres."""
    population_sizes: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000)
    """Sizes of the random draws for the fidelity-vs-population-size curve (sizes above the session's unit
    count are dropped)."""
    draws_per_size: int = 3
    """Random draws (seeds 0..draws-1) per size."""
    single_units: int = 3
    """How many single units to narrate from: the most reliable units, spread round-robin over the
    (region, cell type) groups (see `neurrator.decode.subsets.pick_single_units`)."""

    def __post_init__(self) -> None:
        if self.min_units < 1:
            raise ValueError("min_units must be >= 1")
        if self.local_span_um <= 0:
            raise ValueError("local_span_um must be > 0")
        if self.draws_per_size < 0 or self.single_units < 0:
            raise ValueError("draws_per_size and single_units must be >= 0")
        if any(n < 1 for n in self.population_sizes):
            raise ValueError("population_sizes must be >= 1")


__all__ = ["AnalysisConfig", "EncoderConfig", "PRECISIONS", "SAEConfig", "SubsetPlan", "TrainConfig"]
