"""Seeds -> a simulated Allen natural_scenes block in memory: N flashed images x R repeats, 250 ms each.

The images are one frame from each of the first N scenes of the procedural movie (`make_movie`, so each
image has its own caption and features); they are flashed back to back in random order, each shown
``n_repeats`` times, with a few blank presentations (``frame = -1``, grey screen at the base rate) as in
the Allen ``natural_scenes_presentations`` table. The population (`make_population`) is the same LNP
model as the movie sessions: after its visual latency each unit fires at the image's noise-free rate
times a per-presentation lognormal gain, Poisson spikes. Opto-tagging pulses, quality metrics and
electrodes as in `neurrator.simulate.recording`.
"""

from __future__ import annotations

import numpy as np

from neurrator.simulate.captions import FEATURE_NAMES
from neurrator.simulate.movie import make_movie
from neurrator.simulate.population import make_population, noise_free_drive
from neurrator.simulate.recording import (
    _MAX_RATE,
    _REPORTER,
    CRE_LINES,
    SimulatedSession,
    _electrodes,
    opto_pulse_schedule,
    _quality_metrics,
    unit_id_base,
)
from neurrator.simulate.truth import SimulationTruth

__all__ = ["IMAGE_S", "simulate_natural_scenes"]

#: Allen natural_scenes: each image (or blank) is shown for 250 ms
IMAGE_S = 0.25


def simulate_natural_scenes(*, n_images: int = 118, n_repeats: int = 50, n_units: int = 300,
                            frame_shape: tuple[int, int] = (64, 128), seed: int = 0, movie_seed: int = 0,
                            n_variants: int = 5, cre_line: str = "SST", n_pulses: int = 60,
                            blank_fraction: float = 0.02) -> SimulatedSession:
    """Simulate a natural_scenes session in memory (presentations sorted by time; blanks are ``-1``).

    Examples
    --------
    >>> s = simulate_natural_scenes(n_images=6, n_repeats=3, n_units=20, n_pulses=0)
    >>> s.frames.shape[0], int((s.presentations["frame"] >= 0).sum()), s.truth.stimulus
    (6, 18, 'natural_scenes')
    """
    if n_images < 2 or n_repeats < 1 or n_units < 1:
        raise ValueError("n_images must be >= 2, n_repeats and n_units >= 1")
    if cre_line not in CRE_LINES:
        raise ValueError(f"unknown cre_line {cre_line!r}; valid: {sorted(CRE_LINES)}")
    params = dict(kind="natural_scenes", n_images=n_images, n_repeats=n_repeats, n_units=n_units,
                  frame_shape=list(frame_shape), seed=seed, movie_seed=movie_seed, n_variants=n_variants,
                  cre_line=cre_line, n_pulses=n_pulses, blank_fraction=blank_fraction)
    h, w = frame_shape
    movie = make_movie(n_frames=46 * n_images, height=h, width=w, seed=movie_seed, n_variants=n_variants)
    scenes = np.unique(movie.scene)
    if scenes.size < n_images:
        raise ValueError(f"the procedural movie has {scenes.size} scenes, fewer than {n_images} images")
    pick = np.asarray([np.flatnonzero(movie.scene == s)[(movie.scene == s).sum() // 2] for s in scenes[:n_images]])
    frames, features = movie.frames[pick], movie.frame_features[pick]
    rng = np.random.default_rng(seed)
    pop = make_population(n_units, frame_shape=(h, w), rng=rng)
    base, ca1 = pop.base_rate, pop.region == "CA1"
    drive = noise_free_drive(pop, frames, features)  # (n_images, N)
    norm = np.exp(drive).mean(axis=0, keepdims=True)
    expected = np.minimum(np.exp(drive) / norm * base, _MAX_RATE).astype(np.float32)
    expected[:, ca1] = base[ca1]

    # ---- timeline: 10 s grey, the flashes back to back (images shuffled per repeat, blanks mixed in), 5 s, opto
    order = np.concatenate([rng.permutation(n_images) for _ in range(n_repeats)])
    n_blank = int(round(blank_fraction * order.size))
    if n_blank:
        order = np.insert(order, rng.integers(0, order.size, size=n_blank), -1)
    t0 = 10.0
    start = t0 + np.arange(order.size) * IMAGE_S
    t_end = t0 + order.size * IMAGE_S
    opto_start, opto_stop, durations, levels, duration = opto_pulse_schedule(rng, n_pulses, t_end)

    # rate per presentation (blank: base); each unit switches to it at onset + its latency
    rate_p = np.where((order >= 0)[:, None], expected[np.maximum(order, 0)], base[None, :])
    gain = rng.lognormal(0.0, 0.5 * pop.noise + 1e-6, size=rate_p.shape)
    rate_p = np.minimum(rate_p * np.where(ca1[None, :], 1.0, gain), _MAX_RATE)
    times_u: list[list[np.ndarray]] = [[] for _ in range(n_units)]
    prev = np.concatenate([base[None, :], rate_p[:-1]])  # what each unit still responds to before its latency
    for u in range(n_units):
        lat = float(pop.latency[u])
        for a, b, r in ((start, start + lat, prev[:, u]), (start + lat, start + IMAGE_S, rate_p[:, u])):
            c = rng.poisson(r * (b - a))
            times_u[u].append(np.repeat(a, c) + rng.random(int(c.sum())) * np.repeat(b - a, c))
        for a, b in ((0.0, t0), (t_end, duration)):
            c = int(rng.poisson(base[u] * (b - a)))
            times_u[u].append(a + rng.random(c) * (b - a))
    tagged = np.flatnonzero(pop.cell_type == cre_line)
    if tagged.size and n_pulses:
        lat = rng.uniform(0.0015, 0.003, size=tagged.size)
        evoked = rng.uniform(150.0, 300.0, size=tagged.size)
        for j, u in enumerate(tagged):
            c = rng.poisson(evoked[j] * durations * levels / 2.0)
            times_u[u].append(np.repeat(opto_start + lat[j], c) + rng.random(int(c.sum())) * np.repeat(durations, c))
    spike_times = [np.sort(np.concatenate(t)) for t in times_u]

    metrics = _quality_metrics(n_units, rng)
    passes = ((metrics["amplitude_cutoff"] <= 0.1) & (metrics["presence_ratio"] >= 0.95)
              & (metrics["isi_violations"] <= 0.5) & (metrics["quality"] == "good"))
    electrodes, peak = _electrodes(pop.region, rng)
    truth = SimulationTruth(
        feature_names=list(FEATURE_NAMES), frame_features=features, captions=[movie.captions[i] for i in pick],
        unit_ids=unit_id_base(seed) + np.arange(n_units, dtype=np.int64) * 7, region=np.asarray(pop.region, str),
        cell_type=np.asarray(pop.cell_type, str), tuning=pop.tuning, rf_center=pop.rf_center,
        rf_sigma=pop.rf_sigma, rf_polarity=pop.rf_polarity, rf_weight=pop.rf_weight,
        feature_weight=pop.feature_weight, latency=pop.latency, base_rate=base,
        opto_responsive=pop.cell_type == cre_line, passes_quality=passes, visually_driven=~ca1,
        stimulus="natural_scenes", frame_rate=1.0 / IMAGE_S, seed=seed,
        genotype=f"{CRE_LINES[cre_line]}/wt;{_REPORTER}", params=params, rate=np.ascontiguousarray(expected.T),
        scene=np.arange(n_images, dtype=np.int64), caption_variants=movie.caption_variants[pick],
    )
    return SimulatedSession(
        frames=frames, truth=truth, spike_times=spike_times,
        presentations={"start": start, "stop": start + IMAGE_S, "frame": order.astype(np.int64),
                       "repeat": np.zeros(order.size, np.int64)},
        spontaneous=(0.0, t0),
        opto={"start": opto_start, "stop": opto_stop, "duration": durations, "level": levels,
              "condition": np.asarray([f"a single square pulse {int(round(d * 1000))} ms" for d in durations],
                                      dtype=str)},
        metrics=metrics, peak_channel_id=peak, electrodes=electrodes, duration=duration, expected_rate=expected,
    )
