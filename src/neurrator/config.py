"""Run configuration: what `neurrator narrate` does to one session, as one frozen, JSON-able record.

The per-component settings (`TrainConfig`, `EncoderConfig`, `SAEConfig`, `AnalysisConfig`, `SubsetPlan` in
`neurrator.component_config`, re-exported here) are nested here, one source of truth per field; this record
names the choices of a whole run and is stored verbatim (nested, as JSON) in the output's provenance. Every
field is documented by the string under it (an attribute docstring, as Sphinx autodoc reads it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurrator.component_config import (  # noqa: F401  (re-exported: one import place for run settings)
    PRECISIONS,
    AnalysisConfig,
    EncoderConfig,
    SAEConfig,
    SubsetPlan,
    TrainConfig,
)
from neurrator.data.stimuli import STIMULUS_KINDS, StimulusKind, stimulus_kind
from neurrator.io.httpfile import DEFAULT_TIMEOUT_S
from neurrator.errors import NeurratorError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
#: `NarrateConfig.predictions` values: how the predicted patches are stored (`neurrator.nwb.results`)
PREDICTION_STORAGE = ("auto", "full", "compact", "compact-pca")

#: Flat option name (CLI) -> the component fields it sets; the one place the flat names are defined.
OPTION_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "window_bins": (("train", "window_bins"), ("model", "window_bins")),
    "offset_bins": (("train", "offset_bins"),),
    "epochs": (("train", "max_epochs"),),
    "d_model": (("model", "d_model"),),
    "n_latents": (("model", "n_latents"),),
    "depth": (("model", "depth"),),
    "linear_rank": (("model", "linear_rank"),),
    "sae_latents": (("sae", "n_latents"),),
    "sae_k": (("sae", "k"),),
    "min_units": (("subsets", "min_units"),),
    "population_sizes": (("subsets", "population_sizes"),),
    "draws_per_size": (("subsets", "draws_per_size"),),
    "single_units": (("subsets", "single_units"),),
    "neurration": (("analyses", "enabled"),),
    "contributions": (("analyses", "contributions"),),
    "eval_windows": (("analyses", "eval_windows"),),
    "null_pools": (("analyses", "null_pools"),),
    "scaling_draws": (("analyses", "scaling_draws"),),
}


@dataclass(frozen=True)
class NarrateConfig:
    """Everything `narrate_session` needs besides the source.

    Each field is documented under it. The components' settings are nested records (``train``,
    ``model``, ``sae``, ``subsets``, ``analyses``); `from_options` sets them from the CLI's flat names.

    Examples
    --------
    >>> config = NarrateConfig(stimulus_kind="flashed_images")
    >>> config.stimulus, config.kind.name
    ('natural_scenes', 'flashed_images')
    >>> NarrateConfig(train=TrainConfig(window_bins=8)).model.window_bins
    8
    """

    stimulus: str = "natural_movie_one"
    """Name of the stimulus (Allen: ``natural_movie_one``, ``natural_movie_three``, ``natural_scenes``);
    with ``stimulus_kind="flashed_images"`` the default becomes ``natural_scenes``."""
    stimulus_kind: str | None = None
    """A kind of the stimulus registry (`neurrator.data.stimuli.STIMULUS_KINDS`): ``movie`` (whole repeats
    held out) or ``flashed_images`` (windows aligned to image onsets, a repeat is an image's n-th showing,
    whole images held out); None (the default) takes it from the stimulus name
    (`neurrator.data.stimuli.KNOWN_STIMULI`: ``natural_scenes`` is flashed images, other names are
    movies). ``natural_scenes`` is accepted for ``flashed_images``."""
    image_window_s: float = 0.25
    """Flashed images: the length of each presentation's window, in seconds: the window is
    ``[onset + image_latency_s, onset + image_latency_s + image_window_s)`` in ``train.window_bins`` bins."""
    image_latency_s: float = 0.05
    """Flashed images: the delay of each presentation's window after the image onset, in seconds (see
    ``image_window_s``)."""
    allow_overlap: bool = False
    """Flashed images: accept a response window (``image_window_s``) longer than the time to the next
    presentation, which counts the next image's response too; refused by default
    (`neurrator.data.stimuli.FlashedImagesKind.check_window`)."""
    n_val_images: int = 6
    """Flashed images: images held out entirely for validation (early stopping)."""
    n_test_images: int = 12
    """Flashed images: images held out entirely for the unseen-image test (every reported score)."""
    movie: str | None = None
    """Optional file with the movie frames (.npy/.npz/image stack/video) when the NWB has none."""
    backbone: str = "tiny"
    """Backbone id from the registry in :mod:`neurrator.models.backbones` (``tiny``, ``llava``,
    ``open_clip:...``)."""
    preprocessing: str = "pad"
    """``pad`` (pad to square, LLaVA-1.5) or ``crop`` (centre crop, llava-hf processor)."""
    narrator: str = "retrieval"
    """Narrator id from the registry in :mod:`neurrator.models.narrators` (``retrieval``, ``tiny``,
    ``llava``)."""
    reference_narrator: str = "llava"
    """Generative narrator whose narrations of the TRUE frames are the references (and the retrieval
    narrator's bank) when the narrator is ``retrieval`` and the session has no captions; simulated
    sessions use their captions, and a generative narrator writes its own references
    (`neurrator.models.loading.needs_reference`)."""
    encoder: str | None = None
    """Optional encoder to reuse instead of training one: a checkpoint folder, or a neurrator NWB file
    (its ``processing/neurrator/encoder``)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    seed: int = 0
    """Seeds everything random in the run (unit draws, training, shuffles)."""
    quality_filter: bool = True
    """Apply the Allen default unit quality filter when the quality columns exist."""
    bins_per_frame: int = 4
    """Bins per movie frame (4 at 120 Hz for a 30 Hz movie)."""
    n_val_repeats: int = 2
    """Movies: whole repeats held out for validation (early stopping); flashed images hold out whole images
    instead (``n_val_images``)."""
    n_test_repeats: int = 2
    """Movies: whole repeats held out for test (all reported fidelity); flashed images hold out whole
    images instead (``n_test_images``)."""
    narrations_per_subset: int = 30
    """Test windows narrated per unit subset, spread evenly over one held-out repeat."""
    sae_epochs: int = 5
    """Training epochs of the validating SAE."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_epochs=3))
    """Encoder training (`neurrator.models.training.TrainConfig`): window (``window_bins``, ``offset_bins``:
    0 = centred on the frame as in the paper, > 0 lags it for visual latency; flashed images ignore
    ``offset_bins``, their window is aligned by ``image_latency_s``) and ``max_epochs``
    (early stopping may end sooner; the linear path starts at the closed-form ridge solution, so few
    epochs suffice)."""
    model: EncoderConfig = field(default_factory=lambda: EncoderConfig(d_model=64, n_latents=16, depth=1,
                                                                       linear_rank=256))
    """Encoder architecture (`neurrator.models.encoder.EncoderConfig`, its data sizes filled at training;
    its ``window_bins`` follows ``train.window_bins``): the defaults (d_model 64, 16 latents, depth 1,
    linear rank 256) train in about a minute on 2 CPU cores at 300 units x 7,200 training windows. The
    linear rank is capped so its basis, stored in every checkpoint and derived file, stays under 160 MB
    (rank 64 at 576 x 1024 targets, where 256 would be 604 MB; `component_config.linear_rank_for`)."""
    sae: SAEConfig = field(default_factory=lambda: SAEConfig(n_latents=1024, k=16))
    """The validating TopK SAE (`neurrator.sae.autoencoder.SAEConfig`; ``d_in`` from the data). 1024
    latents, k 16: on 5 simulated sessions its correlation-named concepts recover the true strongest
    feature of 0.79-0.83 of the clearly tuned units (256/k8: 0.62-0.77; benchmarks/RESULTS.md, "Concept
    naming")."""
    subsets: SubsetPlan = field(default_factory=lambda: SubsetPlan(
        population_sizes=(1, 3, 10, 30, 100, 300, 1000, 3000), draws_per_size=2, single_units=2))
    """Which unit subsets are decoded (`neurrator.component_config.SubsetPlan`, used by
    `neurrator.decode.subsets.build_subsets`: minimum group size, random draws per population size,
    single units picked by reliability)."""
    analyses: AnalysisConfig = field(default_factory=AnalysisConfig)
    """The single-neuron, group and scaling analyses (`AnalysisConfig`)."""
    cache_dir: str | None = None
    """Where targets and streamed files are cached (default: ``~/.cache/neurrator``)."""
    timeout: float = DEFAULT_TIMEOUT_S
    """Seconds to wait for a server to connect or send the next bytes (streamed files, the DANDI API,
    movie downloads); a timeout is final, not retried (`neurrator.io.httpfile`)."""
    predictions: str = "auto"
    """How the predicted patches of the narrated windows are stored (`PREDICTION_STORAGE`,
    `neurrator.nwb.results`): ``full`` float32, ``compact`` (coefficients in the encoder's own linear
    readout, which the file holds once anyway, or in a PCA basis for an encoder without one; the error of
    every window measured and stored, the windows above 5% relative error also in full, within 64 MB),
    ``compact-pca`` (the same in a PCA basis of rank ``predictions_rank`` fitted to the windows: more
    accurate per coefficient, but the basis is stored too, 2.4 MB per rank at 576 x 1024), or ``auto``
    (``compact`` when the full predictions would exceed 256 MB, i.e. at real CLIP dimensions)."""
    predictions_rank: int = 64
    """Rank of the PCA basis of ``predictions="compact-pca"`` (2.4 MB of stored basis per rank at
    576 x 1024)."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.preprocessing not in ("pad", "crop"):
            raise ValueError(f"preprocessing must be 'pad' or 'crop', not {self.preprocessing!r}")
        for name in ("bins_per_frame", "narrations_per_subset", "sae_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.n_val_repeats < 1 or self.n_test_repeats < 1:
            raise ValueError("n_val_repeats and n_test_repeats must be >= 1")
        if self.stimulus_kind == "natural_scenes":
            object.__setattr__(self, "stimulus_kind", "flashed_images")
        if self.stimulus_kind is not None and self.stimulus_kind not in STIMULUS_KINDS:
            raise ValueError(f"stimulus_kind must be one of {', '.join(STIMULUS_KINDS)}, not {self.stimulus_kind!r}")
        if self.image_window_s <= 0 or self.image_latency_s < 0:
            raise ValueError("image_window_s must be > 0 and image_latency_s >= 0")
        if self.predictions not in PREDICTION_STORAGE:
            raise ValueError(f"predictions must be one of {', '.join(PREDICTION_STORAGE)}, not {self.predictions!r}")
        if self.predictions_rank < 1:
            raise ValueError(f"predictions_rank must be >= 1, not {self.predictions_rank}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {self.timeout!r}")
        if self.n_val_images < 1 or self.n_test_images < 1:
            raise ValueError("n_val_images and n_test_images must be >= 1")
        if self.stimulus_kind == "flashed_images" and self.stimulus == "natural_movie_one":
            object.__setattr__(self, "stimulus", "natural_scenes")
        if self.model.window_bins != self.train.window_bins:
            object.__setattr__(self, "model", dataclasses.replace(self.model, window_bins=self.train.window_bins))

    @classmethod
    def from_options(cls, **options: Any) -> NarrateConfig:
        """A configuration from flat option names (the CLI's): run-level fields by their own names, the
        components' fields by the names in `OPTION_FIELDS` (e.g. ``epochs`` -> ``train.max_epochs``).

        Examples
        --------
        >>> NarrateConfig.from_options(epochs=2, d_model=32, seed=1).train.max_epochs
        2
        """
        base = cls()
        parts: dict[str, dict[str, Any]] = {}
        run: dict[str, Any] = {}
        for key, value in options.items():
            if key in OPTION_FIELDS:
                for part, name in OPTION_FIELDS[key]:
                    parts.setdefault(part, {})[name] = value
            else:
                run[key] = value
        for part, changes in parts.items():
            run[part] = dataclasses.replace(getattr(base, part), **changes)
        return cls(**run)

    def with_kind(self, kind: str) -> NarrateConfig:
        """This configuration with the stimulus kind read from the file (``kind``, e.g. from the table's
        layout) when none was given; itself when a kind was given or the name already implies ``kind``."""
        if self.stimulus_kind is not None or self.kind.name == kind:
            return self
        log.info("stimulus %s: its presentation table is laid out as %s (set --stimulus-kind to override)",
                 self.stimulus, kind)
        return dataclasses.replace(self, stimulus_kind=kind)

    @property
    def kind(self) -> StimulusKind:
        """The stimulus kind of the run (`neurrator.data.stimuli.stimulus_kind` of ``stimulus``)."""
        return stimulus_kind(self.stimulus, kind=self.stimulus_kind)

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else Path.home() / ".cache" / "neurrator"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; ``cuda`` without one raises."""
    import torch


    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise NeurratorError("--device", "cuda was requested but no CUDA device is available; use --device cpu")
    return device
