"""Population seed + movie -> simulated units: regions, cell classes, tuning, receptive fields, noise-free rates.

Units are linear-nonlinear Poisson. Drive = a pixel receptive field (Gaussian, ON/OFF; centre-surround
in LGd) applied to the frame's contrast against its own background grey (light adaptation: the scene
lighting alone does not drive the fields), plus a weighted sum of the frame's features (the "tuning"),
z-scored, then ``rate = base * exp(gain * drive)`` normalised to the unit's base rate. Regions: VISp
(small fields, reliable), VISl/VISal (broad fields, feature-driven, noisier), LGd (small
centre-surround fields, pixel-driven, no feature tuning), CA1 (ignores the movie: slow random rate
fluctuations, the hippocampus-style control).

Cell classes (cortex only, exact counts): `TYPE_FRACTIONS` of the cortical units are PV, SST and VIP
interneurons; the rest are excitatory. Each interneuron class prefers ONE feature, on an axis that no
other class uses, so the three preferences are statistically independent in the movie
(`TYPE_PREFERENCES`): PV the object ``car``, SST the scene lighting ``sunlit``, VIP the object polarity
``dark``. Excitatory units prefer one static feature (drawn uniformly from `STATIC_FEATURES`, weight
0.7-1.0) plus 0-2 weaker ones (0.15-0.45) from any feature, so each has a clear strongest feature by
its tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurrator.simulate.captions import FEATURE_GROUPS, FEATURE_NAMES, STATIC_FEATURES

__all__ = ["REGIONS", "TYPE_FRACTIONS", "TYPE_PREFERENCES", "Population", "make_population", "noise_free_drive"]

REGIONS = ("VISp", "VISl", "VISal", "LGd", "CA1")
CORTEX = ("VISp", "VISl", "VISal")
_REGION_FRACTIONS = (0.40, 0.15, 0.15, 0.12, 0.18)
#: per region: (rf sigma as a fraction of frame height, rf weight, feature weight, gain, repeat noise,
#: latency mean s, latency sd s)
_REGION_PARAMS = {
    "VISp": (0.06, 0.8, 0.45, 1.0, 0.15, 0.035, 0.004),
    "VISl": (0.20, 0.35, 0.9, 0.8, 0.40, 0.045, 0.005),
    "VISal": (0.22, 0.3, 0.9, 0.8, 0.45, 0.048, 0.005),
    "LGd": (0.04, 1.0, 0.0, 1.0, 0.12, 0.030, 0.003),
    "CA1": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}
#: The feature preference of each interneuron class: one feature each, on three different axes.
TYPE_PREFERENCES: dict[str, dict[str, float]] = {
    "PV": {"car": 1.0},      # object identity
    "SST": {"sunlit": 1.0},  # global scene lighting
    "VIP": {"dark": 1.0},    # object polarity
}
#: Fraction of the cortical units in each interneuron class (300 units -> 210 cortical -> 38 per class).
TYPE_FRACTIONS: dict[str, float] = {"PV": 0.18, "SST": 0.18, "VIP": 0.18}


def _check_preferences() -> None:
    axis = {f: g for g, fs in FEATURE_GROUPS.items() for f in fs}
    used = [axis[f] for prefs in TYPE_PREFERENCES.values() for f in prefs]
    assert len(used) == len(set(used)), "interneuron classes must not share a feature axis"


_check_preferences()


@dataclass(frozen=True)
class Population:
    """The simulated units' parameters (N units; see the module docstring)."""

    region: np.ndarray         # (N,) str
    cell_type: np.ndarray      # (N,) str
    tuning: np.ndarray         # (N, K) float32
    rf_center: np.ndarray      # (N, 2) float32 (x, y) pixels
    rf_sigma: np.ndarray       # (N,) float32 pixels
    rf_polarity: np.ndarray    # (N,) float32 +1 ON / -1 OFF / 0 none
    rf_weight: np.ndarray      # (N,) float32
    feature_weight: np.ndarray  # (N,) float32
    gain: np.ndarray           # (N,) float32
    noise: np.ndarray          # (N,) float32 per-repeat noise
    latency: np.ndarray        # (N,) float32 s
    base_rate: np.ndarray      # (N,) float32 Hz


def make_population(n_units: int, *, frame_shape: tuple[int, int], rng: np.random.Generator) -> Population:
    """Draw ``n_units`` units (regions by `_REGION_FRACTIONS`, classes by `TYPE_FRACTIONS`, exact counts)."""
    n = int(n_units)
    h, w = frame_shape
    k_feat = len(FEATURE_NAMES)
    col = {name: k for k, name in enumerate(FEATURE_NAMES)}
    counts = np.floor(np.asarray(_REGION_FRACTIONS) * n).astype(int)
    counts[0] += n - counts.sum()
    region = np.repeat(np.asarray(REGIONS), counts)[rng.permutation(n)]
    cort_idx = np.flatnonzero(np.isin(region, CORTEX))
    cell_type = np.full(n, "excitatory", dtype=object)
    per_class = np.floor(np.asarray(list(TYPE_FRACTIONS.values())) * cort_idx.size + 0.5).astype(int)
    order = cort_idx[rng.permutation(cort_idx.size)]
    start = 0
    for t, c in zip(TYPE_FRACTIONS, per_class, strict=True):
        cell_type[order[start:start + c]] = t
        start += c
    cell_type = cell_type.astype(str)

    rf_center = np.zeros((n, 2), np.float32)
    rf_sigma, rf_pol, rf_w, feat_w, gain, noise, latency = (np.zeros(n, np.float32) for _ in range(7))
    tuning = np.zeros((n, k_feat), np.float32)
    base = rng.lognormal(np.log(4.0), 0.5, size=n).astype(np.float32)
    base[cell_type == "PV"] *= 3.0  # fast-spiking
    static = np.asarray([col[f] for f in STATIC_FEATURES])
    for i in range(n):
        sig, a_rf, a_ft, g, nz, lat_m, lat_s = _REGION_PARAMS[region[i]]
        if region[i] == "CA1":
            continue
        rf_center[i] = (rng.uniform(0.1, 0.9) * w, rng.uniform(0.15, 0.85) * h)
        rf_sigma[i] = sig * h * rng.uniform(0.8, 1.25)
        rf_pol[i] = rng.choice((-1.0, 1.0))
        rf_w[i], feat_w[i], gain[i], noise[i] = a_rf, a_ft, g, nz
        latency[i] = max(0.02, rng.normal(lat_m, lat_s))
        t = cell_type[i]
        if t in TYPE_PREFERENCES:
            for name, v in TYPE_PREFERENCES[t].items():
                tuning[i, col[name]] = v * rng.uniform(0.8, 1.2)
            feat_w[i] = max(a_ft, 0.7)
            rf_w[i] = min(a_rf, 0.3)
        elif a_ft > 0:
            primary = int(static[rng.integers(static.size)])
            others = rng.choice([k for k in range(k_feat) if k != primary], size=int(rng.integers(0, 3)),
                                replace=False)
            tuning[i, primary] = rng.uniform(0.7, 1.0)
            tuning[i, others] = rng.uniform(0.15, 0.45, size=others.size).astype(np.float32)
    return Population(region=region.astype(str), cell_type=cell_type, tuning=tuning, rf_center=rf_center,
                      rf_sigma=rf_sigma, rf_polarity=rf_pol, rf_weight=rf_w, feature_weight=feat_w, gain=gain,
                      noise=noise, latency=latency, base_rate=base)


def _zscore(x: np.ndarray, axis: int = 0) -> np.ndarray:
    sd = x.std(axis=axis, keepdims=True)
    return (x - x.mean(axis=axis, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def noise_free_drive(pop: Population, frames: np.ndarray, frame_features: np.ndarray) -> np.ndarray:
    """(F, N) float32 drive of each unit by each frame (already times the unit's gain; 0 for CA1).

    The noise-free rate is ``base_rate * exp(drive) / mean_f(exp(drive))``.
    """
    n_frames, h, w = frames.shape
    n = pop.region.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pixels = frames.reshape(n_frames, -1).astype(np.float32)
    adapted = np.median(pixels, axis=1, keepdims=True)  # light adaptation: contrast against the frame's background
    contrast = (pixels - adapted) / np.maximum(adapted, 1.0)
    rf = np.zeros((h * w, n), np.float32)
    for i in np.flatnonzero(pop.region != "CA1"):
        d2 = ((xx - pop.rf_center[i, 0]) ** 2 + (yy - pop.rf_center[i, 1]) ** 2).ravel()
        g1 = np.exp(-d2 / (2 * pop.rf_sigma[i] ** 2))
        field_ = g1 / g1.sum()
        if pop.region[i] == "LGd":
            g2 = np.exp(-d2 / (2 * (3 * pop.rf_sigma[i]) ** 2))
            field_ = field_ - 0.7 * g2 / g2.sum()
        rf[:, i] = pop.rf_polarity[i] * field_
    lin = contrast @ rf  # (F, N)
    pix = _zscore(0.5 * lin + 0.5 * np.abs(lin))
    fdr = _zscore(frame_features @ pop.tuning.T)  # (F, N)
    drive = _zscore(pop.rf_weight * pix + pop.feature_weight * fdr) * pop.gain
    return drive.astype(np.float32)
