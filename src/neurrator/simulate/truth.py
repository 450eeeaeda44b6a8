"""Simulated population + movie -> `SimulationTruth`, the ground truth saved next to a simulated NWB file.

The truth file ``<name>.truth.npz`` holds plain arrays only (strings as unicode arrays, scalars and
parameters as one JSON string), so ``np.load(path, allow_pickle=False)`` reads it without neurrator.
Files written before the paraphrases, the noise-free rates and the strongest features existed still load
(those fields are then None or recomputed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SimulationTruth", "feature_correlation", "load_truth", "strongest_features", "truth_path"]

_ARRAYS = (
    "frame_features", "unit_ids", "region", "cell_type", "tuning", "rf_center", "rf_sigma", "rf_polarity",
    "rf_weight", "feature_weight", "latency", "base_rate", "opto_responsive", "passes_quality",
)
_OPTIONAL = ("rate", "scene", "caption_variants", "strongest_feature", "clear_strongest", "visually_driven")


def feature_correlation(rate: np.ndarray, frame_features: np.ndarray) -> np.ndarray:
    """(N, K) float32 Pearson correlation over frames of each unit's rate with each feature's presence.

    Parameters
    ----------
    rate
        (N, F) noise-free rate per unit and frame.
    frame_features
        (F, K) 0/1 feature presence per frame.

    Returns
    -------
    (N, K) float32; 0 where a unit's rate or a feature is constant over frames.
    """
    r = np.asarray(rate, np.float64)
    x = np.asarray(frame_features, np.float64)
    rc = r - r.mean(axis=1, keepdims=True)
    xc = x - x.mean(axis=0, keepdims=True)
    den = np.sqrt((rc**2).sum(axis=1))[:, None] * np.sqrt((xc**2).sum(axis=0))[None, :]
    out = np.divide(rc @ xc, den, out=np.zeros((r.shape[0], x.shape[1])), where=den > 1e-12)
    return out.astype(np.float32)


def strongest_features(tuning: np.ndarray, rate: np.ndarray, frame_features: np.ndarray,
                       feature_names: list[str] | tuple[str, ...], *, ratio: float = 1.5,
                       min_corr: float = 0.2, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's strongest tuned feature, and whether it is clearly the strongest.

    A unit has a CLEAR strongest feature when (a) its largest tuning weight is at least ``ratio`` times
    its second largest, and (b) in its noise-free rate that feature is also the one it follows best:
    the rate's correlation with that feature's presence (`feature_correlation`) is at least ``min_corr``
    and exceeds every other feature's by ``margin``. (b) rules out units whose response is dominated by
    their pixel receptive field (VISp, LGd) or by a feature they are not tuned to.

    Parameters
    ----------
    tuning
        (N, K) feature weights.
    rate
        (N, F) noise-free rates.
    frame_features
        (F, K) feature presence.
    feature_names
        K names.

    Returns
    -------
    strongest : (N,) str, the feature with the largest tuning weight ("" when the unit has no tuning)
    clear : (N,) bool
    """
    t = np.asarray(tuning, np.float64)
    names = np.asarray(list(feature_names), dtype=str)
    n = t.shape[0]
    order = np.argsort(-t, axis=1, kind="stable")
    top = t[np.arange(n), order[:, 0]]
    second = t[np.arange(n), order[:, 1]] if t.shape[1] > 1 else np.zeros(n)
    strongest = np.where(top > 0, names[order[:, 0]], "").astype(str)
    corr = feature_correlation(rate, frame_features).astype(np.float64)
    mine = corr[np.arange(n), order[:, 0]]
    others = corr.copy()
    others[np.arange(n), order[:, 0]] = -np.inf
    clear = (top > 0) & (top >= ratio * second) & (mine >= min_corr) & (mine >= others.max(axis=1) + margin)
    return strongest, clear


@dataclass
class SimulationTruth:
    """Ground truth of a simulated session (saved as ``<name>.truth.npz``).

    Attributes
    ----------
    feature_names
        K caption features (`FEATURE_NAMES`: words/phrases of the canonical captions).
    frame_features
        (F, K) float32, 1.0 where feature k is present in frame f.
    captions
        F canonical captions (variant 0), one per movie frame.
    unit_ids
        (N,) int64 unit ids as written to the file.
    region, cell_type
        (N,) str; cell_type is "PV", "SST", "VIP" or "excitatory".
    tuning
        (N, K) float32 feature weights: which features drive which unit (0 = not driven).
    rf_center, rf_sigma, rf_polarity
        (N, 2) float32 (x, y) pixel centres, (N,) sigma in pixels, (N,) +1 ON / -1 OFF (0 = no field).
    rf_weight, feature_weight
        (N,) float32 mixing weights of the pixel field and the feature drive.
    latency
        (N,) float32 visual latency in seconds (0 for CA1).
    base_rate
        (N,) float32 mean rate in Hz.
    opto_responsive
        (N,) bool, units that fire to the light pulses (the Cre line's cell type).
    passes_quality
        (N,) bool, units passing the Allen default quality filter by their written metrics.
    stimulus, frame_rate, seed, genotype, params
        Scalars; ``seed`` the population seed, ``params`` the keyword arguments of the simulation
        (JSON-able; ``params["movie_seed"]`` the movie's seed, ``params["cre_line"]`` the tagged class).
    rate
        (N, F) float32 noise-free rate (Hz) that frame f evokes in unit i (no per-repeat noise; spikes
        follow it after the unit's latency). CA1 units: their mean rate (their fluctuations ignore the
        movie); units without spikes: 0.
    scene
        (F,) int64 scene index of each frame (object, brightness, motion and lighting fixed in a scene).
    caption_variants
        (F, V) str captions per frame; column 0 equals ``captions``, columns 1.. are paraphrases.
    strongest_feature, clear_strongest
        (N,) str and (N,) bool from `strongest_features` (tuning + noise-free rate).
    visually_driven
        (N,) bool: the rate follows the movie (False for CA1 and units without spikes).
    """

    feature_names: list[str]
    frame_features: np.ndarray
    captions: list[str]
    unit_ids: np.ndarray
    region: np.ndarray
    cell_type: np.ndarray
    tuning: np.ndarray
    rf_center: np.ndarray
    rf_sigma: np.ndarray
    rf_polarity: np.ndarray
    rf_weight: np.ndarray
    feature_weight: np.ndarray
    latency: np.ndarray
    base_rate: np.ndarray
    opto_responsive: np.ndarray
    passes_quality: np.ndarray
    stimulus: str = "natural_movie_one"
    frame_rate: float = 30.0
    seed: int = 0
    genotype: str = ""
    params: dict = field(default_factory=dict)
    rate: np.ndarray | None = None
    scene: np.ndarray | None = None
    caption_variants: np.ndarray | None = None
    strongest_feature: np.ndarray | None = None
    clear_strongest: np.ndarray | None = None
    visually_driven: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.strongest_feature is None and self.rate is not None:
            self.strongest_feature, self.clear_strongest = strongest_features(
                self.tuning, self.rate, self.frame_features, self.feature_names)

    def drives(self, feature: str, *, threshold: float = 0.3) -> np.ndarray:
        """(N,) bool: units whose tuning weight for ``feature`` exceeds ``threshold``."""
        k = self.feature_names.index(feature)
        return self.tuning[:, k] > threshold

    def preferred_features(self, cell_type: str, *, threshold: float = 0.3) -> list[str]:
        """The features that every unit of ``cell_type`` is tuned to above ``threshold`` (by weight)."""
        rows = self.tuning[self.cell_type == cell_type]
        if rows.size == 0:
            return []
        common = (rows > threshold).all(axis=0)
        ks = [int(k) for k in np.argsort(-rows.mean(axis=0)) if common[k]]
        return [self.feature_names[k] for k in ks]

    def feature_correlation(self) -> np.ndarray:
        """(N, K) correlation of each unit's noise-free rate with each feature (see `feature_correlation`)."""
        if self.rate is None:
            raise ValueError("this truth has no noise-free rates (written by an older neurrator)")
        return feature_correlation(self.rate, self.frame_features)

    def save(self, path: str | Path) -> Path:
        """Write to an ``.npz`` file (strings as unicode arrays, scalars and params as JSON)."""
        path = Path(path)
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value, dtype=str) if value.dtype.kind in "UO" else np.asarray(value)
        arrays["feature_names"] = np.asarray(self.feature_names, dtype=str)
        arrays["captions"] = np.asarray(self.captions, dtype=str)
        meta = {"stimulus": self.stimulus, "frame_rate": self.frame_rate, "seed": self.seed,
                "genotype": self.genotype, "params": self.params}
        arrays["meta"] = np.asarray(json.dumps(meta))
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SimulationTruth:
        """Read a truth file written by `save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            kw = {k: z[k] for k in z.files if k not in ("meta", "feature_names", "captions")}
            return cls(
                feature_names=[str(s) for s in z["feature_names"]],
                captions=[str(s) for s in z["captions"]],
                **kw,
                stimulus=meta["stimulus"],
                frame_rate=float(meta["frame_rate"]),
                seed=int(meta["seed"]),
                genotype=meta["genotype"],
                params=meta["params"],
            )


def truth_path(nwb_path: str | Path) -> Path:
    """Where `write_simulated_session` puts the ground truth: ``sim.nwb`` -> ``sim.truth.npz``."""
    p = Path(nwb_path)
    return p.with_name(p.stem + ".truth.npz")


def load_truth(path: str | Path) -> SimulationTruth:
    """Load the ground truth of a simulated NWB file (give the ``.nwb`` or the ``.truth.npz`` path)."""
    p = Path(path)
    return SimulationTruth.load(p if p.name.endswith(".truth.npz") else truth_path(p))
