"""Simulator: determinism, captions vs features, Allen layout readable by pynwb alone, recoverable truth."""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.simulate import (
    FEATURE_NAMES,
    SimulationTruth,
    load_truth,
    simulate_session,
    truth_path,
    write_simulated_session,
)

SMALL = dict(n_units=40, n_repeats=4, n_frames=90, n_pulses=30)


@pytest.fixture(scope="module")
def sim():
    return simulate_session(n_units=60, n_repeats=6, n_frames=240, seed=5, n_pulses=30)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    path = d / "sim.nwb"
    truth = write_simulated_session(path, seed=1, movie_out=d / "movie.npy", **SMALL)
    return path, truth, d


def test_same_seed_same_session_other_seed_differs():
    a = simulate_session(seed=3, **SMALL)
    b = simulate_session(seed=3, **SMALL)
    c = simulate_session(seed=4, **SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.truth.captions == b.truth.captions
    for x, y in zip(a.spike_times, b.spike_times, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.frames, c.frames)
    assert sum(x.size for x in a.spike_times) != sum(x.size for x in c.spike_times)


def test_captions_name_exactly_the_present_features(sim):
    t = sim.truth
    assert t.feature_names == list(FEATURE_NAMES)
    assert t.frame_features.shape == (sim.frames.shape[0], len(FEATURE_NAMES))
    assert t.frame_features.dtype == np.float32
    for f in range(0, sim.frames.shape[0], 7):
        cap = t.captions[f]
        present = {name for name in t.feature_names if name in cap}
        expected = {name for k, name in enumerate(t.feature_names) if t.frame_features[f, k] == 1}
        assert present == expected, cap
        assert t.frame_features[f].sum() == 4  # one object, position, brightness, motion
    assert len(set(t.captions)) > 5  # the scene changes


def test_captions_describe_the_pixels(sim):
    """Bright objects raise the frame's maximum, dark ones lower its minimum; positions match mass."""
    t = sim.truth
    fr = sim.frames.astype(np.float32)
    col = {n: k for k, n in enumerate(t.feature_names)}
    bright = t.frame_features[:, col["bright"]] == 1
    dark = t.frame_features[:, col["dark"]] == 1
    assert fr[bright].max(axis=(1, 2)).mean() > 200
    assert fr[dark].min(axis=(1, 2)).mean() < 60
    left = t.frame_features[:, col["on the left"]] == 1
    right = t.frame_features[:, col["on the right"]] == 1
    dev = np.abs(fr - 128)
    w = fr.shape[2]
    x_mass = (dev * np.arange(w)).sum(axis=(1, 2)) / dev.sum(axis=(1, 2))
    assert x_mass[left].mean() < w / 2 < x_mass[right].mean()


def test_regions_differ_in_reliability_and_ca1_ignores_the_movie(sim):
    fps, n_frames = 30.0, sim.frames.shape[0]
    start = sim.presentations["start"][0]
    reps = sim.presentations["repeat"].max() + 1
    counts = np.zeros((reps, n_frames, len(sim.spike_times)))
    for i, st in enumerate(sim.spike_times):
        k = np.floor((st - start) * fps).astype(int)
        k = k[(k >= 0) & (k < reps * n_frames)]
        counts[:, :, i] = np.bincount(k, minlength=reps * n_frames).reshape(reps, n_frames)
    a, b = counts[::2].mean(0), counts[1::2].mean(0)
    rel = np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])
    region = sim.truth.region
    visp = np.nanmean(rel[region == "VISp"])
    higher = np.nanmean(rel[np.isin(region, ["VISl", "VISal"])])
    ca1 = np.nanmean(rel[region == "CA1"])
    assert visp > 0.5  # (0.84 with the default 900 frames x 12 repeats)
    assert visp > higher + 0.1
    assert abs(ca1) < 0.15


def test_visual_latency_is_in_the_spikes(sim):
    """Repeat-averaged VISp/LGd counts correlate best with the expected rate lagged by the unit's latency."""
    fps, div = 30.0, 8
    n_frames = sim.frames.shape[0]
    reps = int(sim.presentations["repeat"].max() + 1)
    start = sim.presentations["start"][0]
    vis = np.flatnonzero(np.isin(sim.truth.region, ["VISp", "LGd"]))
    errs = []
    for i in vis[:12]:
        st = sim.spike_times[i]
        k = np.floor((st - start) * fps * div).astype(int)
        k = k[(k >= 0) & (k < reps * n_frames * div)]
        psth = np.bincount(k % (n_frames * div), minlength=n_frames * div).astype(float)
        rate = np.repeat(sim.expected_rate[:, i], div)
        lags = np.arange(0, 24)  # 0..100 ms in 1/240 s steps
        cc = [np.corrcoef(psth[lag:], rate[: rate.size - lag])[0, 1] for lag in lags]
        best = lags[int(np.nanargmax(cc))] / (fps * div)
        errs.append(abs(best - sim.truth.latency[i]))
    assert np.median(errs) <= 1 / fps  # within a frame


def test_feature_tuning_drives_the_units(sim):
    """Units tuned to a feature fire more on frames that show it (ground truth is consistent)."""
    t = sim.truth
    k = t.feature_names.index("bright")
    tuned = np.flatnonzero(t.tuning[:, k] > 0.5)
    assert tuned.size > 0
    on = t.frame_features[:, k] == 1
    ratio = sim.expected_rate[on][:, tuned].mean(0) / sim.expected_rate[~on][:, tuned].mean(0)
    assert np.median(ratio) > 1.2
    assert t.drives("bright").sum() >= tuned.size


def test_interneuron_classes_and_opto_responders(sim):
    t = sim.truth
    assert {"PV", "SST", "VIP", "excitatory"} <= set(t.cell_type.tolist())
    assert set(t.cell_type[t.opto_responsive]) == {"SST"}
    assert t.genotype.startswith("Sst-IRES-Cre")
    # interneuron classes prefer their features
    col = {n: k for k, n in enumerate(t.feature_names)}
    assert (t.tuning[t.cell_type == "SST", col["grating"]] > 0.5).all()
    assert (t.tuning[t.cell_type == "VIP", col["dark"]] > 0.5).all()


def test_written_file_has_the_allen_layout(written):
    from pynwb import NWBHDF5IO

    path, truth, d = written
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        units = nwb.units
        for c in ("spike_times", "quality", "amplitude_cutoff", "presence_ratio", "isi_violations",
                  "firing_rate", "peak_channel_id"):
            assert c in units.colnames
        assert len(units) == SMALL["n_units"]
        np.testing.assert_array_equal(units.id.data[:], truth.unit_ids)
        assert {"location", "probe_vertical_position"} <= set(nwb.electrodes.colnames)
        assert set(units["peak_channel_id"].data[:]) <= set(nwb.electrodes.id.data[:])
        pres = nwb.intervals["natural_movie_one_presentations"]
        assert {"start_time", "stop_time", "stimulus_name", "frame"} <= set(pres.colnames)
        assert len(pres) == SMALL["n_repeats"] * SMALL["n_frames"]
        tmpl = nwb.stimulus_template["natural_movie_one"]
        assert tmpl.data.shape == (SMALL["n_frames"], 64, 128) and tmpl.data.dtype == np.uint8
        np.testing.assert_array_equal(tmpl.data[:], np.load(d / "movie.npy"))
        caps = nwb.processing["stimulus"]["natural_movie_one_captions"]
        assert list(caps["caption"].data[:]) == truth.captions
        opto = nwb.processing["optotagging"]["optogenetic_stimulation"]
        assert {"condition", "level", "duration"} <= set(opto.colnames)
        s = nwb.subject
        assert s.species == "Mus musculus" and s.sex in ("M", "F") and s.age.startswith("P")
        assert "Cre" in s.genotype
        assert "/" not in nwb.session_id


def test_truth_round_trip(written):
    path, truth, _ = written
    assert truth_path(path).exists()
    back = load_truth(path)
    assert isinstance(back, SimulationTruth)
    assert back.feature_names == truth.feature_names and back.captions == truth.captions
    np.testing.assert_array_equal(back.tuning, truth.tuning)
    np.testing.assert_array_equal(back.cell_type, truth.cell_type)
    assert back.params["n_units"] == SMALL["n_units"] and back.seed == 1


def test_empty_units_are_written_without_spikes(tmp_path):
    from pynwb import NWBHDF5IO

    p = tmp_path / "e.nwb"
    truth = write_simulated_session(p, empty_units=2, **SMALL)
    with NWBHDF5IO(str(p), "r") as io:
        units = io.read().units
        assert len(units) == SMALL["n_units"] + 2
        assert len(units["spike_times"][len(units) - 1]) == 0
    assert truth.unit_ids.size == SMALL["n_units"] + 2


def _ridge_accuracy(sim, unit_rows: np.ndarray) -> list[tuple[float, float]]:
    """Per caption group: (test-repeat accuracy of a ridge decoder from lagged counts, majority baseline)."""
    from neurrator.binning import bin_spikes, split_repeats, window_index

    st = [sim.spike_times[i] for i in unit_rows]
    times = np.concatenate(st)
    off = np.concatenate([[0], np.cumsum([s.size for s in st])])
    pr = sim.presentations
    counts = bin_spikes(times, off, pr["start"], pr["stop"], bins_per_interval=4).astype(np.float32)
    rows = window_index(pr["frame"], pr["repeat"], bins_per_frame=4, window_bins=8, offset_bins=4)
    x = np.sqrt(np.where(rows[..., None] >= 0, counts[np.maximum(rows, 0)], 0).reshape(rows.shape[0], -1))
    y = sim.truth.frame_features[pr["frame"]]
    sp = split_repeats(pr["repeat"], n_val=1, n_test=1)
    mu, ym = x[sp.train].mean(0), y[sp.train].mean(0)
    xc = x[sp.train] - mu
    w = np.linalg.solve(xc.T @ xc + 50 * np.eye(x.shape[1]), xc.T @ (y[sp.train] - ym))
    pred = (x[sp.test] - mu) @ w + ym
    out = []
    for a, b in ((0, 4), (4, 9), (9, 11), (11, 14)):  # object, position, brightness, motion
        truth = y[sp.test][:, a:b]
        out.append(((pred[:, a:b].argmax(1) == truth.argmax(1)).mean(), truth.mean(0).max()))
    return out


def test_captions_are_decodable_from_visual_units_not_from_ca1():
    """The ground truth is in the spikes: held-out-repeat decoding of every caption group is far above the
    majority baseline from all units, and at baseline from CA1 alone."""
    sim = simulate_session(n_units=80, n_repeats=6, n_frames=300, seed=3, n_pulses=10)
    for acc, majority in _ridge_accuracy(sim, np.arange(80)):
        assert acc > majority + 0.3, (acc, majority)
    for acc, majority in _ridge_accuracy(sim, np.flatnonzero(sim.truth.region == "CA1")):
        assert acc < majority + 0.15, (acc, majority)
