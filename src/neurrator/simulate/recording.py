"""Population seed + movie seed -> a simulated recording in memory: spikes, presentations, opto pulses, metrics.

`simulate_session` renders the movie (`make_movie`, from ``movie_seed``), draws the population
(`make_population`, from ``seed``), and turns the noise-free rates into spikes: per repeat, a
lognormal gain and Gaussian drive noise (per region), lagged by the unit's visual latency (30-50 ms) at
1/240 s resolution, Poisson counts in piecewise-constant segments. CA1 units follow a slow AR(1)
log-rate fluctuation (1.5 s time constant) that ignores the movie. After the movie, opto-tagging
pulses (5 ms / 10 ms) make the units of the genotype's Cre line fire at 1.5-3 ms latency. Quality
metrics (Allen columns; ~10% of units fail the default filter), probes and electrodes follow the Allen
Visual Coding layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurrator.simulate.captions import FEATURE_NAMES
from neurrator.simulate.movie import make_movie
from neurrator.simulate.population import make_population, noise_free_drive
from neurrator.simulate.truth import SimulationTruth

__all__ = ["CRE_LINES", "SimulatedSession", "simulate_session", "unit_id_base"]

#: Cre line per taggable class (as in Allen ``subject.genotype``).
CRE_LINES = {"SST": "Sst-IRES-Cre", "PV": "Pvalb-IRES-Cre", "VIP": "Vip-IRES-Cre"}
_REPORTER = "Ai32(RCL-ChR2(H134R)_EYFP)/wt"
_DT_DIV = 8  # rate segments per frame (1/240 s at 30 Hz)
_MAX_RATE = 150.0


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
    #: (F, N) float32 noise-free rate (Hz) each frame evokes, before the latency (= ``truth.rate.T``)
    expected_rate: np.ndarray


def unit_id_base(seed: int) -> int:
    """First unit id of a simulated session: ids are ``base + 7 * i``, and sessions of different seeds
    never share an id (1,000,000 apart; Allen's unit ids are unique across sessions too), so that they
    can be pooled into a pseudo-mouse.

    Examples
    --------
    >>> unit_id_base(0), unit_id_base(2)
    (950900000, 952900000)
    """
    return 950_900_000 + 1_000_000 * int(seed)


def opto_pulse_schedule(rng: np.random.Generator, n_pulses: int, stimulus_end: float):
    """Opto-tagging pulses after the stimulus: (start, stop, pulse duration, level, session duration).

    Pulses of 5 or 10 ms at three light levels, 1-1.5 s apart, from 5 s after the stimulus ends;
    the session ends 2 s after the last pulse.
    """
    durations = np.where(np.arange(n_pulses) % 2 == 0, 0.005, 0.010)[rng.permutation(n_pulses)]
    levels = rng.choice((1.0, 1.5, 2.0), size=n_pulses)
    isi = rng.uniform(1.0, 1.5, size=n_pulses)
    opto_start = stimulus_end + 5.0 + np.cumsum(isi) - (isi[0] if n_pulses else 0.0)
    opto_stop = opto_start + durations
    duration = float((opto_stop[-1] if n_pulses else stimulus_end + 5.0) + 2.0)
    return opto_start, opto_stop, durations, levels, duration

def _quality_metrics(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
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
    return {"quality": quality.astype(str), "amplitude_cutoff": amp, "presence_ratio": pres_ratio,
            "isi_violations": isi_v, "snr": rng.uniform(1.5, 6.0, size=n)}


def _electrodes(region: np.ndarray, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Probes A (VISp/CA1/LGd), B (VISl/CA1), C (VISal/CA1) of 384 channels; a peak channel per unit."""
    layout = {
        "probeA": [("VISp", 2800, 3840), ("CA1", 1800, 2800), ("LGd", 200, 1200)],
        "probeB": [("VISl", 2800, 3840), ("CA1", 1800, 2800)],
        "probeC": [("VISal", 2800, 3840), ("CA1", 1800, 2800)],
    }
    e_id, e_loc, e_probe, e_vert, e_horz = [], [], [], [], []
    for p, (probe, spans) in enumerate(layout.items()):
        for ch in range(384):
            vert = 20.0 * (ch // 2) + 20.0
            e_id.append(850_000_000 + 1000 * p + ch)
            e_loc.append(next((reg for reg, lo, hi in spans if lo <= vert < hi), "grey"))
            e_probe.append(probe)
            e_vert.append(vert)
            e_horz.append((11.0, 59.0, 27.0, 43.0)[ch % 4])
    el = {"id": np.asarray(e_id, np.int64), "location": np.asarray(e_loc), "probe": np.asarray(e_probe),
          "probe_vertical_position": np.asarray(e_vert), "probe_horizontal_position": np.asarray(e_horz)}
    choices = {"VISp": ["probeA"], "VISl": ["probeB"], "VISal": ["probeC"], "LGd": ["probeA"],
               "CA1": ["probeA", "probeB", "probeC"]}
    peak = np.empty(region.size, np.int64)
    for i, reg in enumerate(region):
        probe = choices[reg][int(rng.integers(len(choices[reg])))]
        cands = np.flatnonzero((el["probe"] == probe) & (el["location"] == reg))
        peak[i] = el["id"][cands[int(rng.integers(cands.size))]]
    return el, peak


def simulate_session(
    *,
    n_units: int = 300,
    n_repeats: int = 12,
    n_frames: int = 900,
    frame_shape: tuple[int, int] = (64, 128),
    frame_rate: float = 30.0,
    seed: int = 0,
    movie_seed: int = 0,
    n_variants: int = 5,
    stimulus: str = "natural_movie_one",
    cre_line: str = "SST",
    n_pulses: int = 60,
    empty_units: int = 0,
) -> SimulatedSession:
    """Simulate a session in memory (see `neurrator.simulate` for the model).

    Parameters
    ----------
    n_units
        Units with spikes (``empty_units`` silent units are added after them).
    n_repeats
        Back-to-back repeats of the movie.
    n_frames, frame_shape, frame_rate
        Movie length, (height, width) and frames per second.
    seed
        Population seed (`numpy.random.default_rng`): units, spikes, metrics, opto pulses.
    movie_seed
        Movie seed: sessions with the same ``movie_seed`` (and movie sizes) watch the same movie with the
        same captions, whatever their population seed (the pseudo-mouse).
    n_variants
        Captions per frame (the canonical caption + ``n_variants - 1`` paraphrases).
    stimulus
        Name of the movie stimulus (presentation table ``<stimulus>_presentations``).
    cre_line
        "SST", "PV" or "VIP": the Cre line in the genotype; that class's units respond to light.
    n_pulses
        Opto-tagging pulses (half 5 ms, half 10 ms square pulses) after the movie.
    empty_units
        Extra units without any spike (to exercise readers' skipping).

    Examples
    --------
    >>> a = simulate_session(n_units=20, n_repeats=2, n_frames=30, seed=1, cre_line="PV")
    >>> b = simulate_session(n_units=20, n_repeats=2, n_frames=30, seed=2, cre_line="VIP")
    >>> bool((a.frames == b.frames).all()), a.truth.rate.shape
    (True, (20, 30))
    """
    if n_units < 1 or n_repeats < 1 or n_frames < 1:
        raise ValueError("n_units, n_repeats and n_frames must be >= 1")
    if cre_line not in CRE_LINES:
        raise ValueError(f"unknown cre_line {cre_line!r}; valid: {sorted(CRE_LINES)}")
    params = dict(
        n_units=n_units, n_repeats=n_repeats, n_frames=n_frames, frame_shape=list(frame_shape),
        frame_rate=frame_rate, seed=seed, movie_seed=movie_seed, n_variants=n_variants, stimulus=stimulus,
        cre_line=cre_line, n_pulses=n_pulses, empty_units=empty_units,
    )
    h, w = frame_shape
    movie = make_movie(n_frames=n_frames, height=h, width=w, seed=movie_seed, n_variants=n_variants)
    rng = np.random.default_rng(seed)
    pop = make_population(n_units, frame_shape=(h, w), rng=rng)
    n, region, base = n_units, pop.region, pop.base_rate
    ca1 = region == "CA1"
    drive = noise_free_drive(pop, movie.frames, movie.frame_features)
    norm = np.exp(drive).mean(axis=0, keepdims=True)
    expected = np.minimum(np.exp(drive) / norm * base, _MAX_RATE).astype(np.float32)
    expected[:, ca1] = base[ca1]

    # ---- timeline: 10 s grey screen, the repeats back to back, 5 s, the opto pulses, 2 s
    dt_frame = 1.0 / frame_rate
    t_movie = 10.0
    p_total = n_repeats * n_frames
    pres_start = t_movie + np.arange(p_total) * dt_frame
    pres_frame = np.tile(np.arange(n_frames), n_repeats)
    pres_repeat = np.repeat(np.arange(n_repeats), n_frames)
    t_movie_end = t_movie + p_total * dt_frame
    opto_start, opto_stop, durations, levels, duration = opto_pulse_schedule(rng, n_pulses, t_movie_end)

    # ---- spikes: (unit, time) pairs from Poisson counts in piecewise-constant segments
    pieces_u: list[np.ndarray] = []
    pieces_t: list[np.ndarray] = []

    def emit(counts_tn: np.ndarray, seg_start: np.ndarray, seg_len: float, units: np.ndarray) -> None:
        ti, ui = np.nonzero(counts_tn)
        c = counts_tn[ti, ui]
        ti, ui = np.repeat(ti, c), np.repeat(ui, c)
        pieces_t.append(seg_start[ti] + rng.random(ti.size) * seg_len)
        pieces_u.append(units[ui])

    all_units = np.arange(n)
    for a, b in ((0.0, t_movie), (t_movie_end, duration)):  # homogeneous baseline outside the movie
        emit(rng.poisson(base * (b - a))[None, :], np.array([a]), b - a, all_units)

    seg = 1.0 / (frame_rate * _DT_DIV)
    ar = np.exp(-dt_frame / 1.5)
    x_ca1 = rng.normal(size=int(ca1.sum())).astype(np.float32)
    seg_t = (np.arange(n_frames * _DT_DIV) + 0.5) * seg  # segment centres within a repeat
    fidx = np.floor((seg_t[:, None] / dt_frame) - (pop.latency / dt_frame)[None, :]).astype(np.int64) + n_frames
    prev = np.broadcast_to(base, (n_frames, n))  # grey screen before the first repeat
    for r in range(n_repeats):
        gain_r = rng.lognormal(0.0, 0.5 * pop.noise + 1e-6).astype(np.float32)
        d = drive * gain_r + rng.normal(0.0, 1.0, size=drive.shape).astype(np.float32) * pop.noise
        rate_f = np.minimum(np.exp(d) / norm * base, _MAX_RATE).astype(np.float32)  # (F, N) Hz
        if ca1.any():
            z = np.empty((n_frames, int(ca1.sum())), np.float32)
            eps = rng.normal(size=z.shape).astype(np.float32) * np.sqrt(1 - ar**2)
            for f in range(n_frames):
                x_ca1 = ar * x_ca1 + eps[f]
                z[f] = x_ca1
            rate_f[:, ca1] = base[ca1] * np.exp(0.6 * z - 0.18)
        rate_seg = np.take_along_axis(np.concatenate([prev, rate_f], axis=0), fidx, axis=0)  # (T, N)
        emit(rng.poisson(rate_seg * seg), t_movie + r * n_frames * dt_frame + seg_t - 0.5 * seg, seg, all_units)
        prev = rate_f

    opto_resp = pop.cell_type == cre_line  # the Cre line's units fire at short latency during each pulse
    tagged = np.flatnonzero(opto_resp)
    if tagged.size and n_pulses:
        lat = rng.uniform(0.0015, 0.003, size=tagged.size)
        evoked = rng.uniform(150.0, 300.0, size=tagged.size)
        cnt = rng.poisson(evoked[None, :] * durations[:, None] * (levels[:, None] / 2.0))
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
    spike_times = [times[bounds[i]: bounds[i + 1]].copy() for i in range(n)]

    metrics = _quality_metrics(n, rng)
    passes = ((metrics["amplitude_cutoff"] <= 0.1) & (metrics["presence_ratio"] >= 0.95)
              & (metrics["isi_violations"] <= 0.5) & (metrics["quality"] == "good"))
    electrodes, peak = _electrodes(region, rng)

    cols = {
        "region": region, "cell_type": pop.cell_type, "tuning": pop.tuning, "rf_center": pop.rf_center,
        "rf_sigma": pop.rf_sigma, "rf_polarity": pop.rf_polarity, "rf_weight": pop.rf_weight,
        "feature_weight": pop.feature_weight, "latency": pop.latency, "base_rate": base,
        "opto_responsive": opto_resp, "passes_quality": passes, "visually_driven": ~ca1,
    }
    if empty_units:  # silent units after the others: no tuning, no rate, VISp channels, good metrics
        fills = {"region": "VISp", "cell_type": "excitatory", "opto_responsive": False, "passes_quality": True,
                 "visually_driven": False}
        cols = {k: np.concatenate([v, np.full((empty_units,) + v.shape[1:], fills.get(k, 0), dtype=v.dtype)])
                for k, v in cols.items()}
        metric_fill = {"quality": "good", "amplitude_cutoff": 0.01, "presence_ratio": 0.99, "isi_violations": 0.0,
                       "snr": 3.0}
        metrics = {k: np.concatenate([v, np.full(empty_units, metric_fill[k], dtype=v.dtype)])
                   for k, v in metrics.items()}
        visp = np.flatnonzero(electrodes["location"] == "VISp")
        peak = np.concatenate([peak, electrodes["id"][visp[np.arange(empty_units) % visp.size]]])
        spike_times = spike_times + [np.zeros(0) for _ in range(empty_units)]
        expected = np.concatenate([expected, np.zeros((n_frames, empty_units), np.float32)], axis=1)

    truth = SimulationTruth(
        feature_names=list(FEATURE_NAMES), frame_features=movie.frame_features, captions=movie.captions,
        unit_ids=unit_id_base(seed) + np.arange(n + empty_units, dtype=np.int64) * 7,
        **{k: np.asarray(v, dtype=str) if v.dtype.kind in "UO" else v for k, v in cols.items()},
        stimulus=stimulus, frame_rate=float(frame_rate), seed=seed, genotype=f"{CRE_LINES[cre_line]}/wt;{_REPORTER}",
        params=params, rate=np.ascontiguousarray(expected.T), scene=movie.scene,
        caption_variants=movie.caption_variants,
    )
    return SimulatedSession(
        frames=movie.frames,
        truth=truth,
        spike_times=spike_times,
        presentations={"start": pres_start, "stop": pres_start + dt_frame, "frame": pres_frame,
                       "repeat": pres_repeat},
        spontaneous=(0.0, t_movie),
        opto={"start": opto_start, "stop": opto_stop, "duration": durations, "level": levels,
              "condition": np.asarray([f"a single square pulse {int(round(d * 1000))} ms" for d in durations],
                                      dtype=str)},
        metrics=metrics,
        peak_channel_id=peak,
        electrodes=electrodes,
        duration=duration,
        expected_rate=expected,
    )
