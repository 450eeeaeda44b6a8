"""Run configuration: what `neurrator narrate` does to one session, as one frozen, JSON-able record.

The per-component settings (encoder architecture, training, SAE) live with their components; this
record names the choices of a whole run and is stored verbatim in the output's provenance.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class NarrateConfig:
    """Everything `narrate_session` needs besides the source.

    Attributes
    ----------
    stimulus
        Name of the movie stimulus (Allen: ``natural_movie_one``, ``natural_movie_three``).
    movie
        Optional file with the movie frames (.npy/.npz/image stack/video) when the NWB has none.
    backbone
        Backbone id from the registry in :mod:`neurrator.backbones` (``tiny``, ``llava``, ``open_clip:...``).
    preprocessing
        ``pad`` (pad to square, LLaVA-1.5) or ``crop`` (centre crop, llava-hf processor).
    narrator
        Narrator id from the registry in :mod:`neurrator.narrators` (``retrieval``, ``tiny``, ``llava``).
    reference_narrator
        Generative narrator whose narrations of the TRUE frames are the references (and the retrieval
        narrator's bank) when the session has no captions; simulated sessions use their captions.
    encoder
        Optional encoder checkpoint folder to reuse instead of training.
    device
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    seed
        Seeds everything random in the run (unit draws, training, shuffles).
    quality_filter
        Apply the Allen default unit quality filter when the quality columns exist.
    bins_per_frame
        Bins per movie frame (4 at 120 Hz for a 30 Hz movie).
    window_bins
        Bins in each encoder input window.
    offset_bins
        Window lag in bins (0 = centred on the frame as in the paper; > 0 lags for visual latency).
    n_val_repeats, n_test_repeats
        Whole repeats held out for validation (early stopping) and test (all reported fidelity).
    epochs
        Maximum training epochs (early stopping may end sooner). The encoder's linear path starts at the
        closed-form ridge solution, so few epochs suffice (the best validation step came in epoch 1-2 on
        the simulated session).
    d_model, n_latents, depth
        Size of the encoder's attention path (see `neurrator.encoder.EncoderConfig`); the defaults train
        in about a minute on 2 CPU cores at 300 units x 7,200 training windows.
    linear_rank
        Width of the encoder's linear (ridge-like) readout path; use ~64 for 576 x 1024 targets, where
        its basis is stored in every checkpoint (256 x 576 x 1024 float32 = 600 MB).
    narrations_per_subset
        Test windows narrated per unit subset, spread evenly over one held-out repeat.
    min_units
        Region, cell-type and local-population groups smaller than this are skipped and reported.
    population_sizes, draws_per_size
        Random unit draws for the fidelity-vs-population-size curve.
    single_units
        How many single units (the most active) are narrated from.
    sae_latents, sae_k, sae_epochs
        Width, sparsity and training epochs of the validating TopK SAE.
    cache_dir
        Where targets and streamed files are cached (default: ``~/.cache/neurrator``).
    progress
        Show progress bars.
    """

    stimulus: str = "natural_movie_one"
    movie: str | None = None
    backbone: str = "tiny"
    preprocessing: str = "pad"
    narrator: str = "retrieval"
    reference_narrator: str = "llava"
    encoder: str | None = None
    device: str = "auto"
    seed: int = 0
    quality_filter: bool = True
    bins_per_frame: int = 4
    window_bins: int = 20
    offset_bins: int = 0
    n_val_repeats: int = 2
    n_test_repeats: int = 2
    epochs: int = 3
    d_model: int = 64
    n_latents: int = 16
    depth: int = 1
    linear_rank: int = 256
    narrations_per_subset: int = 30
    min_units: int = 10
    population_sizes: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000, 3000)
    draws_per_size: int = 2
    single_units: int = 2
    sae_latents: int = 256
    sae_k: int = 8
    sae_epochs: int = 5
    cache_dir: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.preprocessing not in ("pad", "crop"):
            raise ValueError(f"preprocessing must be 'pad' or 'crop', not {self.preprocessing!r}")
        for name in ("bins_per_frame", "window_bins", "epochs", "d_model", "n_latents", "narrations_per_subset", "min_units",
                     "sae_latents", "sae_k", "sae_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.n_val_repeats < 1 or self.n_test_repeats < 1:
            raise ValueError("n_val_repeats and n_test_repeats must be >= 1")
        if self.sae_k > self.sae_latents:
            raise ValueError(f"sae_k ({self.sae_k}) cannot exceed sae_latents ({self.sae_latents})")
        object.__setattr__(self, "population_sizes", tuple(int(n) for n in self.population_sizes))

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else Path.home() / ".cache" / "neurrator"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; ``cuda`` without one raises."""
    import torch

    from neurrator.errors import NeurratorError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise NeurratorError("--device", "cuda was requested but no CUDA device is available; use --device cpu")
    return device
