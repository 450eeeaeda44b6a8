"""Seed -> a simulated Allen-layout NWB session (procedural captioned movie, LNP units, opto-tagging) + ground truth.

The generative model
--------------------
* **Movie**: ``n_frames`` grayscale uint8 frames (default 900 x 64 x 128 at 30 Hz, the aspect of the
  Allen 304 x 608 movies at about a fifth of the size). Scenes of 15-45 frames show ONE object
  (``circle``, ``square``, ``bar``, ``grating``), ``bright`` or ``dark`` on a grey background, ``still``
  or ``moving left``/``moving right``; its position phrase (``on the left``, ``on the right``, ``at the
  top``, ``at the bottom``, ``in the centre``) is recomputed per frame from where it is. Every frame has
  a caption built from that fixed vocabulary, e.g. ``"a bright circle on the left, moving right"``; each
  of `FEATURE_NAMES` occurs as a substring of a caption exactly when the feature is present.
* **Units**: linear-nonlinear Poisson. Drive = a pixel receptive field (Gaussian, ON/OFF; centre-surround
  in LGd) applied to the frame contrast, plus a weighted sum of the frame's caption features (the
  "tuning", ground truth of which features drive which unit), z-scored, then ``rate = base *
  exp(gain * drive)`` normalised to the unit's base rate, lagged by the unit's visual latency
  (30-50 ms) at 1/240 s resolution, with per-repeat noise. Regions: VISp (small fields, reliable),
  VISl/VISal (broad fields, feature-driven, noisier), LGd (small centre-surround fields, pixel-driven),
  CA1 (ignores the movie: slow random rate fluctuations). Cortical units include PV, SST and VIP
  interneurons with type-specific feature preferences; the units of the Cre line named in the genotype
  (SST by default) fire at 1.5-3 ms latency during the opto-tagging light pulses.
* **Layout** (as the Allen Visual Coding files): units (spike_times, quality, amplitude_cutoff,
  presence_ratio, isi_violations, firing_rate, snr, peak_channel_id, and -- simulation only -- a
  ``cell_type`` column unless ``cell_type_column=False``), electrodes (location, group,
  probe_vertical_position, ...), ``intervals/<stimulus>_presentations`` (start_time, stop_time,
  stimulus_name, stimulus_block, frame; repeats back to back, no repeat column, like Allen),
  ``intervals/spontaneous_presentations``, ``processing/optotagging/optogenetic_stimulation``
  (condition, level, duration), the movie as ``stimulus/templates/<stimulus>`` (ImageSeries (F, H, W)
  uint8), and the captions as ``processing/stimulus/<stimulus>_captions`` (DynamicTable: frame,
  caption).

Defaults (the demo's data): 300 units, 12 back-to-back repeats of a 900-frame movie (with
`neurrator.binning.split_repeats` defaults: 8 train / 2 validation / 2 test repeats), 60 opto pulses;
a ~450 s session, ~14 MB file, written in a few seconds. Tests use e.g. 40 units x 4 repeats x 90 frames.

Deterministic for a seed (``np.random.default_rng(seed)``). Ground truth is a `SimulationTruth`,
saved next to the NWB file as ``<name>.truth.npz`` (see `truth_path`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = [
    "FEATURE_NAMES",
    "REGIONS",
    "SimulatedSession",
    "SimulationTruth",
    "load_truth",
    "simulate_movie",
    "simulate_session",
    "truth_path",
    "write_simulated_session",
]

OBJECTS = ("circle", "square", "bar", "grating")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the centre")
BRIGHTNESS = ("bright", "dark")
MOTIONS = ("moving left", "moving right", "still")
#: The fixed caption vocabulary; column order of `SimulationTruth.frame_features`.
FEATURE_NAMES: tuple[str, ...] = OBJECTS + POSITIONS + BRIGHTNESS + MOTIONS
REGIONS = ("VISp", "VISl", "VISal", "LGd", "CA1")
_REGION_FRACTIONS = (0.35, 0.15, 0.15, 0.15, 0.20)
_CRE = {"SST": "Sst-IRES-Cre", "PV": "Pvalb-IRES-Cre", "VIP": "Vip-IRES-Cre"}
_REPORTER = "Ai32(RCL-ChR2(H134R)_EYFP)/wt"
#: per region: (rf sigma as a fraction of frame height, rf weight, feature weight, gain, repeat noise,
#: latency mean s, latency sd s)
_REGION_PARAMS = {
    "VISp": (0.06, 0.8, 0.45, 1.0, 0.15, 0.035, 0.004),
    "VISl": (0.20, 0.35, 0.9, 0.8, 0.40, 0.045, 0.005),
    "VISal": (0.22, 0.3, 0.9, 0.8, 0.45, 0.048, 0.005),
    "LGd": (0.04, 1.0, 0.0, 1.0, 0.12, 0.030, 0.003),
    "CA1": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}
_TYPE_PREFS = {  # feature preferences of the interneuron classes
    "PV": {"bright": 1.0, "moving left": 0.6, "moving right": 0.6},
    "SST": {"grating": 1.0, "still": 0.7, "bar": 0.5},
    "VIP": {"dark": 1.0, "circle": 0.8},
}
_TYPE_FRACTIONS = {"PV": 0.12, "SST": 0.10, "VIP": 0.08}  # of cortical units
_BG = 128
_DT_DIV = 8  # rate segments per frame (1/240 s at 30 Hz)


@dataclass
class SimulationTruth:
    """Ground truth of a simulated session (saved as ``<name>.truth.npz``).

    Attributes
    ----------
    feature_names
        K caption features (words/phrases that occur in the captions).
    frame_features
        (F, K) float32, 1.0 where feature k is present in frame f.
    captions
        F captions, one per movie frame.
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
        Scalars; ``params`` the keyword arguments of the simulation (JSON-able).
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

    def drives(self, feature: str, *, threshold: float = 0.3) -> np.ndarray:
        """(N,) bool: units whose tuning weight for ``feature`` exceeds ``threshold``."""
        k = self.feature_names.index(feature)
        return self.tuning[:, k] > threshold

    def save(self, path: str | Path) -> Path:
        """Write to an ``.npz`` file (strings as unicode arrays, params as JSON)."""
        path = Path(path)
        arrays = {
            name: np.asarray(getattr(self, name))
            for name in (
                "frame_features", "unit_ids", "region", "cell_type", "tuning", "rf_center", "rf_sigma",
                "rf_polarity", "rf_weight", "feature_weight", "latency", "base_rate", "opto_responsive",
                "passes_quality",
            )
        }
        arrays["feature_names"] = np.asarray(self.feature_names, dtype=str)
        arrays["captions"] = np.asarray(self.captions, dtype=str)
        meta = {
            "stimulus": self.stimulus, "frame_rate": self.frame_rate, "seed": self.seed,
            "genotype": self.genotype, "params": self.params,
        }
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


@dataclass
class SimulatedSession:
    """The in-memory pieces of a simulated session (what `write_simulated_session` writes)."""

    frames: np.ndarray  # (F, H, W) uint8
    truth: SimulationTruth
    spike_times: list[np.ndarray]  # N sorted float64 arrays
    presentations: dict[str, np.ndarray]  # start, stop, frame, repeat (P,)
    spontaneous: tuple[float, float]
    opto: dict[str, np.ndarray]  # start, stop, condition, level, duration (n_pulses,)
    metrics: dict[str, np.ndarray]  # quality, amplitude_cutoff, presence_ratio, isi_violations, snr
    peak_channel_id: np.ndarray  # (N,) int64
    electrodes: dict[str, np.ndarray]  # id, location, probe, probe_vertical_position, ...
    duration: float
    #: (F, N) float32 noise-free rate (Hz) each frame evokes, before the latency (0 for CA1 and empty units)
    expected_rate: np.ndarray


def truth_path(nwb_path: str | Path) -> Path:
    """Where `write_simulated_session` puts the ground truth: ``sim.nwb`` -> ``sim.truth.npz``."""
    p = Path(nwb_path)
    return p.with_name(p.stem + ".truth.npz")


def load_truth(path: str | Path) -> SimulationTruth:
    """Load the ground truth of a simulated NWB file (give the ``.nwb`` or the ``.truth.npz`` path)."""
    p = Path(path)
    return SimulationTruth.load(p if p.name.endswith(".truth.npz") else truth_path(p))


# --------------------------------------------------------------------------------------------- movie


def _position_label(x: float, y: float, w: int, h: int) -> str:
    if x < w / 3:
        return "on the left"
    if x > 2 * w / 3:
        return "on the right"
    if y < h / 3:
        return "at the top"
    if y > 2 * h / 3:
        return "at the bottom"
    return "in the centre"


def simulate_movie(
    *, n_frames: int = 900, height: int = 64, width: int = 128, rng: np.random.Generator
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Render the procedural movie.

    Returns
    -------
    frames : (F, H, W) uint8
    captions : list of F str
    frame_features : (F, K) float32 over `FEATURE_NAMES`
    """
    h, w = int(height), int(width)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    texture = rng.normal(0.0, 5.0, size=(h, w)).astype(np.float32)
    frames = np.empty((n_frames, h, w), dtype=np.uint8)
    captions: list[str] = []
    feats = np.zeros((n_frames, len(FEATURE_NAMES)), dtype=np.float32)
    col = {name: k for k, name in enumerate(FEATURE_NAMES)}
    anchors = {  # (x, y) in fractions of the frame for the still positions
        "on the left": (1 / 6, 0.5), "on the right": (5 / 6, 0.5), "at the top": (0.5, 0.17),
        "at the bottom": (0.5, 0.83), "in the centre": (0.5, 0.5),
    }
    size = 0.17 * h
    f = 0
    while f < n_frames:
        length = int(min(n_frames - f, rng.integers(15, 46)))
        obj = OBJECTS[rng.integers(len(OBJECTS))]
        bright = BRIGHTNESS[rng.integers(2)]
        motion = MOTIONS[rng.integers(len(MOTIONS))]
        ax, ay = anchors[POSITIONS[rng.integers(len(POSITIONS))]]
        x0, y0 = ax * w, ay * h
        speed = 0.0
        if motion != "still":
            direction = -1.0 if motion == "moving left" else 1.0
            speed = direction * rng.uniform(0.8, 1.6) * w / 90.0  # pixels per frame
            x0 = (0.8 if direction < 0 else 0.2) * w + rng.uniform(-0.1, 0.1) * w
        phase = rng.uniform(0, 2 * np.pi)
        for i in range(length):
            x = float(np.clip(x0 + speed * i, 0.05 * w, 0.95 * w))
            y = y0
            dx, dy = xx - x, yy - y
            if obj == "circle":
                mask = dx**2 + dy**2 <= size**2
                lum = np.float32(225 if bright == "bright" else 30)
            elif obj == "square":
                mask = (np.abs(dx) <= size * 0.9) & (np.abs(dy) <= size * 0.9)
                lum = np.float32(225 if bright == "bright" else 30)
            elif obj == "bar":
                mask = (np.abs(dx) <= size * 0.35) & (np.abs(dy) <= size * 1.8)
                lum = np.float32(225 if bright == "bright" else 30)
            else:  # grating: drifting sinusoid inside a disk
                mask = dx**2 + dy**2 <= (1.3 * size) ** 2
                mean, amp = (175.0, 75.0) if bright == "bright" else (75.0, 55.0)
                lum = (mean + amp * np.sin(2 * np.pi * xx / (0.45 * size) + phase + 0.4 * i)).astype(np.float32)
            img = _BG + texture
            img = np.where(mask, lum, img)
            frames[f + i] = np.clip(img, 0, 255).astype(np.uint8)
            pos = _position_label(x, y, w, h)
            captions.append(f"a {bright} {obj} {pos}, {motion}")
            for name in (obj, pos, bright, motion):
                feats[f + i, col[name]] = 1.0
        f += length
    return frames, captions, feats


# --------------------------------------------------------------------------------------------- units


def _zscore(x: np.ndarray, axis: int = 0) -> np.ndarray:
    sd = x.std(axis=axis, keepdims=True)
    return (x - x.mean(axis=axis, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def simulate_session(
    *,
    n_units: int = 300,
    n_repeats: int = 12,
    n_frames: int = 900,
    frame_shape: tuple[int, int] = (64, 128),
    frame_rate: float = 30.0,
    seed: int = 0,
    stimulus: str = "natural_movie_one",
    cre_line: str = "SST",
    n_pulses: int = 60,
    empty_units: int = 0,
) -> SimulatedSession:
    """Simulate a session in memory (see the module docstring for the model).

    Parameters
    ----------
    n_units
        Units with spikes (``empty_units`` silent units are added after them).
    n_repeats
        Back-to-back repeats of the movie.
    n_frames, frame_shape, frame_rate
        Movie length, (height, width) and frames per second.
    seed
        Seed of `numpy.random.default_rng`; the whole session is a function of the arguments.
    stimulus
        Name of the movie stimulus (presentation table ``<stimulus>_presentations``).
    cre_line
        "SST", "PV" or "VIP": the Cre line in the genotype; that class's units respond to light.
    n_pulses
        Opto-tagging pulses (half 5 ms, half 10 ms square pulses) after the movie.
    empty_units
        Extra units without any spike (to exercise readers' skipping).
    """
    if n_units < 1 or n_repeats < 1 or n_frames < 1:
        raise ValueError("n_units, n_repeats and n_frames must be >= 1")
    if cre_line not in _CRE:
        raise ValueError(f"unknown cre_line {cre_line!r}; valid: {sorted(_CRE)}")
    params = dict(
        n_units=n_units, n_repeats=n_repeats, n_frames=n_frames, frame_shape=list(frame_shape),
        frame_rate=frame_rate, seed=seed, stimulus=stimulus, cre_line=cre_line, n_pulses=n_pulses,
        empty_units=empty_units,
    )
    rng = np.random.default_rng(seed)
    h, w = frame_shape
    frames, captions, feats = simulate_movie(n_frames=n_frames, height=h, width=w, rng=rng)
    k_feat = len(FEATURE_NAMES)
    col = {name: k for k, name in enumerate(FEATURE_NAMES)}

    # ---- populations
    n = n_units
    counts = np.floor(np.asarray(_REGION_FRACTIONS) * n).astype(int)
    counts[0] += n - counts.sum()
    region = np.repeat(np.asarray(REGIONS), counts)
    region = region[rng.permutation(n)]
    cortical = np.isin(region, ("VISp", "VISl", "VISal"))
    cell_type = np.full(n, "excitatory", dtype=object)
    cort_idx = np.flatnonzero(cortical)
    u = rng.random(cort_idx.size)
    edges = np.cumsum([0.0] + [_TYPE_FRACTIONS[t] for t in ("PV", "SST", "VIP")])
    for t, lo, hi in zip(("PV", "SST", "VIP"), edges[:-1], edges[1:], strict=True):
        cell_type[cort_idx[(u >= lo) & (u < hi)]] = t
    cell_type = cell_type.astype(str)

    rf_center = np.zeros((n, 2), np.float32)
    rf_sigma = np.zeros(n, np.float32)
    rf_pol = np.zeros(n, np.float32)
    rf_w = np.zeros(n, np.float32)
    feat_w = np.zeros(n, np.float32)
    gain = np.zeros(n, np.float32)
    noise = np.zeros(n, np.float32)
    latency = np.zeros(n, np.float32)
    tuning = np.zeros((n, k_feat), np.float32)
    base = rng.lognormal(np.log(4.0), 0.5, size=n).astype(np.float32)
    base[cell_type == "PV"] *= 3.0
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
        if t in _TYPE_PREFS:
            for name, v in _TYPE_PREFS[t].items():
                tuning[i, col[name]] = v * rng.uniform(0.8, 1.2)
            feat_w[i] = max(a_ft, 0.7)
            rf_w[i] = min(a_rf, 0.3)
        elif a_ft > 0:
            picks = rng.choice(k_feat, size=int(rng.integers(1, 4)), replace=False)
            tuning[i, picks] = rng.uniform(0.5, 1.0, size=picks.size).astype(np.float32)
    # pixel drive (F, N): Gaussian (LGd: difference of Gaussians) fields on the frame contrast
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    contrast = (frames.reshape(n_frames, -1).astype(np.float32) - _BG) / _BG
    vis = np.flatnonzero(region != "CA1")
    rf = np.zeros((h * w, n), np.float32)
    for i in vis:
        d2 = ((xx - rf_center[i, 0]) ** 2 + (yy - rf_center[i, 1]) ** 2).ravel()
        g1 = np.exp(-d2 / (2 * rf_sigma[i] ** 2))
        field_ = g1 / g1.sum()
        if region[i] == "LGd":
            g2 = np.exp(-d2 / (2 * (3 * rf_sigma[i]) ** 2))
            field_ = field_ - 0.7 * g2 / g2.sum()
        rf[:, i] = rf_pol[i] * field_
    lin = contrast @ rf  # (F, N)
    pix = _zscore(0.5 * lin + 0.5 * np.abs(lin))
    fdr = _zscore(feats @ tuning.T)  # (F, N)
    drive = _zscore(rf_w * pix + feat_w * fdr) * gain  # CA1 columns are 0
    expected = (np.exp(drive) / np.exp(drive).mean(axis=0, keepdims=True) * base).astype(np.float32)
    expected[:, region == "CA1"] = 0.0

    # ---- timeline
    dt_frame = 1.0 / frame_rate
    t_movie = 10.0  # 10 s of grey screen first (spontaneous)
    p_total = n_repeats * n_frames
    pres_start = t_movie + np.arange(p_total) * dt_frame
    pres_stop = pres_start + dt_frame
    pres_frame = np.tile(np.arange(n_frames), n_repeats)
    pres_repeat = np.repeat(np.arange(n_repeats), n_frames)
    t_movie_end = t_movie + p_total * dt_frame
    t_opto = t_movie_end + 5.0
    durations = np.where(np.arange(n_pulses) % 2 == 0, 0.005, 0.010)
    durations = durations[rng.permutation(n_pulses)]
    levels = rng.choice((1.0, 1.5, 2.0), size=n_pulses)
    isi = rng.uniform(1.0, 1.5, size=n_pulses)
    opto_start = t_opto + np.cumsum(isi) - isi[0]
    opto_stop = opto_start + durations
    duration = float((opto_stop[-1] if n_pulses else t_opto) + 2.0)

    # ---- spikes: (unit, time) pairs from Poisson counts in piecewise-constant segments
    pieces_u: list[np.ndarray] = []
    pieces_t: list[np.ndarray] = []

    def emit(counts_tn: np.ndarray, seg_start: np.ndarray, seg_len: float | np.ndarray, units: np.ndarray):
        ti, ui = np.nonzero(counts_tn)
        c = counts_tn[ti, ui]
        ti, ui = np.repeat(ti, c), np.repeat(ui, c)
        lens = seg_len if np.isscalar(seg_len) else np.asarray(seg_len)[ti]
        pieces_t.append(seg_start[ti] + rng.random(ti.size) * lens)
        pieces_u.append(units[ui])

    all_units = np.arange(n)
    # homogeneous baseline outside the movie: [0, t_movie) and [t_movie_end, duration)
    for a, b in ((0.0, t_movie), (t_movie_end, duration)):
        cnt = rng.poisson(base * (b - a))[None, :]
        emit(cnt, np.array([a]), b - a, all_units)

    seg = 1.0 / (frame_rate * _DT_DIV)
    ca1 = region == "CA1"
    ar = np.exp(-dt_frame / 1.5)  # CA1: AR(1) log-rate fluctuation with a 1.5 s time constant
    x_ca1 = rng.normal(size=int(ca1.sum())).astype(np.float32)
    lag_frames = latency / dt_frame  # (N,)
    prev = np.zeros((n_frames, n), np.float32)  # drive of the previous repeat (grey before the 1st)
    for r in range(n_repeats):
        gain_r = rng.lognormal(0.0, 0.5 * noise + 1e-6).astype(np.float32)
        d = drive * gain_r + rng.normal(0.0, 1.0, size=drive.shape).astype(np.float32) * noise
        rate_f = np.exp(d)
        rate_f /= np.exp(drive).mean(axis=0, keepdims=True)
        rate_f = np.minimum(rate_f * base, 150.0).astype(np.float32)  # (F, N) Hz
        if ca1.any():
            z = np.empty((n_frames, int(ca1.sum())), np.float32)
            eps = rng.normal(size=z.shape).astype(np.float32) * np.sqrt(1 - ar**2)
            for f in range(n_frames):
                x_ca1 = ar * x_ca1 + eps[f]
                z[f] = x_ca1
            rate_f[:, ca1] = base[ca1] * np.exp(0.6 * z - 0.18)
        both = np.concatenate([prev, rate_f], axis=0) if r > 0 else np.concatenate(
            [np.broadcast_to(base, (n_frames, n)), rate_f], axis=0
        )
        seg_t = (np.arange(n_frames * _DT_DIV) + 0.5) * seg  # segment centres within the repeat
        fidx = np.floor((seg_t[:, None] / dt_frame) - lag_frames[None, :]).astype(np.int64) + n_frames
        rate_seg = np.take_along_axis(both, fidx, axis=0)  # (T, N)
        cnt = rng.poisson(rate_seg * seg)
        seg_start = t_movie + r * n_frames * dt_frame + np.arange(n_frames * _DT_DIV) * seg
        emit(cnt, seg_start, seg, all_units)
        prev = rate_f

    # opto-tagging: the Cre line's units fire at short latency during each pulse
    opto_resp = cell_type == cre_line
    tagged = np.flatnonzero(opto_resp)
    if tagged.size and n_pulses:
        lat = rng.uniform(0.0015, 0.003, size=tagged.size)
        evoked = rng.uniform(150.0, 300.0, size=tagged.size)
        lam = evoked[None, :] * durations[:, None] * (levels[:, None] / 2.0)
        cnt = rng.poisson(lam)
        pi, ui = np.nonzero(cnt)
        c = cnt[pi, ui]
        pi, ui = np.repeat(pi, c), np.repeat(ui, c)
        pieces_t.append(opto_start[pi] + lat[ui] + rng.random(pi.size) * durations[pi])
        pieces_u.append(tagged[ui])

    unit_of = np.concatenate(pieces_u)
    times = np.concatenate(pieces_t)
    order = np.lexsort((times, unit_of))
    unit_of, times = unit_of[order], times[order]
    bounds = np.searchsorted(unit_of, np.arange(n + 1))
    spike_times = [times[bounds[i] : bounds[i + 1]].copy() for i in range(n)]

    # ---- quality metrics (Allen columns); ~15% of units fail the default filter
    amp = rng.beta(1.2, 45.0, size=n)
    pres_ratio = np.clip(1.0 - rng.beta(1.0, 200.0, size=n), 0, 1)
    isi_v = rng.exponential(0.08, size=n)
    quality = np.full(n, "good", dtype=object)
    bad = rng.random(n) < 0.10
    which = rng.integers(0, 4, size=n)
    amp[bad & (which == 0)] = rng.uniform(0.15, 0.5, size=int((bad & (which == 0)).sum()))
    pres_ratio[bad & (which == 1)] = rng.uniform(0.6, 0.9, size=int((bad & (which == 1)).sum()))
    isi_v[bad & (which == 2)] = rng.uniform(0.6, 3.0, size=int((bad & (which == 2)).sum()))
    quality[bad & (which == 3)] = "noise"
    passes = (amp <= 0.1) & (pres_ratio >= 0.95) & (isi_v <= 0.5) & (quality == "good")
    snr = rng.uniform(1.5, 6.0, size=n)

    # ---- probes and electrodes: probeA VISp/CA1/LGd, probeB VISl/CA1, probeC VISal/CA1
    layout = {
        "probeA": [("VISp", 2800, 3840), ("CA1", 1800, 2800), ("LGd", 200, 1200)],
        "probeB": [("VISl", 2800, 3840), ("CA1", 1800, 2800)],
        "probeC": [("VISal", 2800, 3840), ("CA1", 1800, 2800)],
    }
    n_ch = 384
    e_id, e_loc, e_probe, e_vert, e_horz = [], [], [], [], []
    for p, (probe, spans) in enumerate(layout.items()):
        for ch in range(n_ch):
            vert = 20.0 * (ch // 2) + 20.0
            loc = next((reg for reg, lo, hi in spans if lo <= vert < hi), "grey")
            e_id.append(850_000_000 + 1000 * p + ch)
            e_loc.append(loc)
            e_probe.append(probe)
            e_vert.append(vert)
            e_horz.append((11.0, 59.0, 27.0, 43.0)[ch % 4])
    e_id = np.asarray(e_id, np.int64)
    e_loc = np.asarray(e_loc)
    e_probe = np.asarray(e_probe)
    peak = np.empty(n, np.int64)
    probe_choices = {"VISp": ["probeA"], "VISl": ["probeB"], "VISal": ["probeC"], "LGd": ["probeA"],
                     "CA1": ["probeA", "probeB", "probeC"]}
    for i in range(n):
        probe = probe_choices[region[i]][int(rng.integers(len(probe_choices[region[i]])))]
        cands = np.flatnonzero((e_probe == probe) & (e_loc == region[i]))
        peak[i] = e_id[cands[int(rng.integers(cands.size))]]

    unit_ids = 950_900_000 + np.arange(n + empty_units, dtype=np.int64) * 7
    if empty_units:
        extra = np.arange(empty_units)

        def pad(a, fill):
            return np.concatenate([a, np.full((empty_units,) + a.shape[1:], fill, dtype=a.dtype)])

        region, cell_type = pad(region, "VISp"), pad(cell_type, "excitatory")
        tuning, rf_center = pad(tuning, 0), pad(rf_center, 0)
        rf_sigma, rf_pol, rf_w, feat_w = pad(rf_sigma, 0), pad(rf_pol, 0), pad(rf_w, 0), pad(feat_w, 0)
        latency, base = pad(latency, 0), pad(base, 0)
        opto_resp, passes = pad(opto_resp, False), pad(passes, True)
        amp, pres_ratio, isi_v, snr = pad(amp, 0.01), pad(pres_ratio, 0.99), pad(isi_v, 0.0), pad(snr, 3.0)
        quality = pad(quality, "good")
        visp = np.flatnonzero(e_loc == "VISp")
        peak = np.concatenate([peak, e_id[visp[extra % visp.size]]])
        spike_times = spike_times + [np.zeros(0) for _ in extra]
        expected = np.concatenate([expected, np.zeros((n_frames, empty_units), np.float32)], axis=1)

    genotype = f"{_CRE[cre_line]}/wt;{_REPORTER}"
    truth = SimulationTruth(
        feature_names=list(FEATURE_NAMES), frame_features=feats, captions=captions, unit_ids=unit_ids,
        region=np.asarray(region, dtype=str), cell_type=np.asarray(cell_type, dtype=str), tuning=tuning,
        rf_center=rf_center, rf_sigma=rf_sigma, rf_polarity=rf_pol, rf_weight=rf_w, feature_weight=feat_w,
        latency=latency, base_rate=base, opto_responsive=np.asarray(opto_resp, bool),
        passes_quality=np.asarray(passes, bool), stimulus=stimulus, frame_rate=float(frame_rate), seed=seed,
        genotype=genotype, params=params,
    )
    return SimulatedSession(
        frames=frames,
        truth=truth,
        spike_times=spike_times,
        presentations={"start": pres_start, "stop": pres_stop, "frame": pres_frame, "repeat": pres_repeat},
        spontaneous=(0.0, t_movie),
        opto={
            "start": opto_start, "stop": opto_stop, "duration": durations, "level": levels,
            "condition": np.asarray(
                [f"a single square pulse {int(round(d * 1000))} ms" for d in durations], dtype=str
            ),
        },
        metrics={
            "quality": np.asarray(quality, dtype=str), "amplitude_cutoff": amp, "presence_ratio": pres_ratio,
            "isi_violations": isi_v, "snr": snr,
        },
        peak_channel_id=peak,
        electrodes={
            "id": e_id, "location": e_loc, "probe": e_probe, "probe_vertical_position": np.asarray(e_vert),
            "probe_horizontal_position": np.asarray(e_horz),
        },
        duration=duration,
        expected_rate=expected,
    )


# --------------------------------------------------------------------------------------------- NWB


def write_simulated_session(
    path: str | Path,
    *,
    n_units: int = 300,
    n_repeats: int = 12,
    seed: int = 0,
    movie_out: str | Path | None = None,
    cell_type_column: bool = True,
    **kwargs,
) -> SimulationTruth:
    """Simulate a session and write it as an Allen-layout NWB file, with its truth next to it.

    Parameters
    ----------
    path
        Output ``.nwb`` path (overwritten). The truth goes to `truth_path(path)`.
    n_units, n_repeats, seed
        See `simulate_session`; further keyword arguments are passed on to it.
    movie_out
        Also save the movie frames, (F, H, W) uint8, as a ``.npy`` file there.
    cell_type_column
        Write the simulated cell classes as a units ``cell_type`` column (Allen files have none; set
        False to make readers rely on opto-tagging, as for real Allen files).

    Returns
    -------
    SimulationTruth

    Examples
    --------
    >>> truth = write_simulated_session("sim.nwb", n_units=20, n_repeats=2, n_frames=60)  # doctest: +SKIP
    """
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from hdmf.common import DynamicTable, VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectrodesTable
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.image import ImageSeries
    from pynwb.misc import Units

    from neurrator import __version__

    sim = simulate_session(n_units=n_units, n_repeats=n_repeats, seed=seed, **kwargs)
    truth = sim.truth
    stim = truth.stimulus
    path = Path(path)
    ident = str(uuid.uuid5(uuid.NAMESPACE_URL, "neurrator-sim:" + json.dumps(truth.params, sort_keys=True)))
    nwb = NWBFile(
        session_description=(
            f"Simulated Allen-layout Neuropixels session (neurrator {__version__} simulator, seed {seed}): "
            f"{len(truth.unit_ids)} units, {n_repeats} repeats of a procedural captioned movie '{stim}', "
            "opto-tagging pulses."
        ),
        identifier=ident,
        session_start_time=datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc),
        session_id=f"sim{seed}",
        institution="neurrator simulator",
        experiment_description="Simulated Allen Brain Observatory-style Neuropixels recording with a captioned "
        "procedural movie and known ground truth (neurrator.simulate).",
        keywords=["simulation", "Neuropixels", "visual cortex", "natural movie", "opto-tagging"],
        stimulus_notes=f"procedural movie {stim}: {truth.frame_features.shape[0]} frames at {truth.frame_rate} Hz",
        subject=Subject(
            subject_id=f"sim{seed}", species="Mus musculus", sex="M", age="P100D", genotype=truth.genotype,
            strain="C57BL/6J", description="simulated mouse",
        ),
    )
    # electrodes
    el = sim.electrodes
    groups = {}
    for probe in dict.fromkeys(el["probe"].tolist()):
        dev = nwb.create_device(name=probe, description="simulated Neuropixels 1.0 probe")
        groups[probe] = nwb.create_electrode_group(
            name=probe, description=f"simulated {probe}", location="see electrodes.location", device=dev
        )
    n_el = el["id"].size
    nwb.electrodes = ElectrodesTable(
        id=el["id"],
        columns=[
            VectorData(name="location", description="brain area of the channel", data=el["location"].tolist()),
            VectorData(name="group", description="the probe's ElectrodeGroup",
                       data=[groups[str(p)] for p in el["probe"]]),
            VectorData(name="group_name", description="probe name", data=el["probe"].tolist()),
            VectorData(name="probe_vertical_position", description="position along the probe shank (um)",
                       data=el["probe_vertical_position"]),
            VectorData(name="probe_horizontal_position", description="position across the shank (um)",
                       data=el["probe_horizontal_position"]),
            VectorData(name="valid_data", description="whether the channel is usable", data=np.ones(n_el, bool)),
        ],
    )
    # units, built column-wise (add_unit per unit makes hdmf convert every spike time separately)
    m = sim.metrics
    lens = np.asarray([st.size for st in sim.spike_times], dtype=np.int64)
    all_spikes = np.concatenate(sim.spike_times) if lens.sum() else np.zeros(0)
    spike_data = VectorData(name="spike_times", description="spike times (s), sorted per unit", data=all_spikes)
    cols = [
        spike_data,
        VectorIndex(name="spike_times_index", data=np.cumsum(lens), target=spike_data),
        VectorData(name="quality", description="sorting quality label (good / noise)", data=m["quality"].tolist()),
        VectorData(name="amplitude_cutoff", description="estimated fraction of missed spikes",
                   data=m["amplitude_cutoff"]),
        VectorData(name="presence_ratio", description="fraction of the session with spikes", data=m["presence_ratio"]),
        VectorData(name="isi_violations", description="refractory-period violation rate", data=m["isi_violations"]),
        VectorData(name="firing_rate", description="mean firing rate (Hz)", data=lens / sim.duration),
        VectorData(name="snr", description="waveform signal-to-noise ratio", data=m["snr"]),
        VectorData(name="peak_channel_id", description="id of the electrode with the largest waveform",
                   data=sim.peak_channel_id),
    ]
    if cell_type_column:
        cols.append(VectorData(name="cell_type", data=truth.cell_type.tolist(),
                               description="simulated cell class (PV, SST, VIP, excitatory); not in Allen files"))
    nwb.units = Units(name="units", description="simulated sorted units", id=truth.unit_ids, columns=cols,
                      resolution=1 / 30000.0)
    # stimulus presentations
    pr = sim.presentations
    n_p = pr["start"].size
    nwb.add_time_intervals(
        TimeIntervals(
            name=f"{stim}_presentations",
            description=f"presentations of the movie frames of {stim}",
            id=np.arange(n_p),
            columns=[
                VectorData(name="start_time", description="start (s)", data=pr["start"]),
                VectorData(name="stop_time", description="stop (s)", data=pr["stop"]),
                VectorData(name="stimulus_name", description="stimulus", data=[stim] * n_p),
                VectorData(name="stimulus_block", description="block", data=np.full(n_p, 2.0)),
                VectorData(name="frame", description="movie frame index", data=pr["frame"].astype(np.float64)),
            ],
        )
    )
    spont = TimeIntervals(name="spontaneous_presentations", description="grey screen")
    spont.add_column("stimulus_name", "stimulus")
    spont.add_interval(start_time=sim.spontaneous[0], stop_time=sim.spontaneous[1], stimulus_name="spontaneous")
    nwb.add_time_intervals(spont)
    # the movie and its captions
    nwb.add_stimulus_template(
        ImageSeries(
            name=stim, data=H5DataIO(sim.frames, compression="gzip", chunks=(1,) + sim.frames.shape[1:]),
            unit="NA", format="raw", rate=float(truth.frame_rate), starting_time=0.0,
            description=f"procedural movie (F, H, W) uint8; captions in processing/stimulus/{stim}_captions",
        )
    )
    stim_mod = nwb.create_processing_module("stimulus", "annotations of the stimuli")
    stim_mod.add(
        DynamicTable(
            name=f"{stim}_captions",
            description=f"caption of each frame of the stimulus template {stim} (fixed vocabulary)",
            id=np.arange(len(truth.captions)),
            columns=[
                VectorData(name="frame", description="movie frame index", data=np.arange(len(truth.captions))),
                VectorData(name="caption", description="what the frame shows", data=list(truth.captions)),
            ],
        )
    )
    # opto-tagging
    op = sim.opto
    opto_mod = nwb.create_processing_module("optotagging", "opto-tagging light pulses")
    ot = TimeIntervals(name="optogenetic_stimulation", description="blue light pulses (ChR2)")
    for name, desc in (("stimulus_name", "stimulus"), ("condition", "pulse shape"),
                       ("level", "light level"), ("duration", "pulse duration (s)")):
        ot.add_column(name, desc)
    for i in range(op["start"].size):
        ot.add_interval(
            start_time=float(op["start"][i]), stop_time=float(op["stop"][i]), stimulus_name="pulse",
            condition=str(op["condition"][i]), level=float(op["level"][i]), duration=float(op["duration"][i]),
        )
    opto_mod.add(ot)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.nwb")
    with NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwb)
    tmp.replace(path)
    truth.save(truth_path(path))
    if movie_out is not None:
        np.save(Path(movie_out), sim.frames)
    return truth
