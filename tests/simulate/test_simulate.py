"""Simulator: determinism, shared movie, captions vs features, Allen layout readable by pynwb alone, truth."""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.simulate import (
    FEATURE_GROUPS,
    FEATURE_NAMES,
    FEATURE_SYNONYMS,
    TYPE_PREFERENCES,
    SimulationTruth,
    load_truth,
    make_movie,
    mentioned_features,
    mentions_feature,
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


def test_same_seeds_same_session_population_seed_keeps_the_movie():
    a = simulate_session(seed=3, **SMALL)
    b = simulate_session(seed=3, **SMALL)
    c = simulate_session(seed=4, **SMALL)
    d = simulate_session(seed=3, movie_seed=1, **SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.truth.caption_variants, b.truth.caption_variants)
    for x, y in zip(a.spike_times, b.spike_times, strict=True):
        np.testing.assert_array_equal(x, y)
    # another population seed: another population, the same movie (a pseudo-mouse watches one stimulus)
    np.testing.assert_array_equal(a.frames, c.frames)
    np.testing.assert_array_equal(a.truth.caption_variants, c.truth.caption_variants)
    np.testing.assert_array_equal(a.truth.frame_features, c.truth.frame_features)
    assert sum(x.size for x in a.spike_times) != sum(x.size for x in c.spike_times)
    assert not np.array_equal(a.truth.tuning, c.truth.tuning)
    # another movie seed: another movie, the same population parameters
    assert not np.array_equal(a.frames, d.frames)
    np.testing.assert_array_equal(a.truth.tuning, d.truth.tuning)
    np.testing.assert_array_equal(a.truth.cell_type, d.truth.cell_type)


def test_pseudo_mouse_of_three_cre_lines_tags_every_class():
    sims = [simulate_session(seed=s, cre_line=c, **SMALL) for s, c in enumerate(("SST", "PV", "VIP"))]
    for s, c in zip(sims, ("SST", "PV", "VIP"), strict=True):
        assert set(s.truth.cell_type[s.truth.opto_responsive]) == {c}
        assert s.truth.params["cre_line"] == c and s.truth.params["movie_seed"] == 0
    assert sims[1].truth.genotype.startswith("Pvalb-IRES-Cre") and sims[2].truth.genotype.startswith("Vip-IRES-Cre")
    for s in sims[1:]:
        np.testing.assert_array_equal(s.frames, sims[0].frames)


def test_default_size_has_at_least_30_units_of_each_class():
    """The class counts depend on n_units only (1 repeat of 30 frames keeps the test fast)."""
    for cre in ("SST", "PV", "VIP"):
        t = simulate_session(n_repeats=1, n_frames=30, n_pulses=4, cre_line=cre, seed=11).truth
        assert t.unit_ids.size == 300
        for c in ("PV", "SST", "VIP"):
            assert (t.cell_type == c).sum() >= 30
        assert t.opto_responsive.sum() >= 30
        assert set(np.unique(t.region[np.isin(t.cell_type, ["PV", "SST", "VIP"])])) <= {"VISp", "VISl", "VISal"}


def test_captions_name_exactly_the_present_features(sim):
    t = sim.truth
    assert t.feature_names == list(FEATURE_NAMES)
    assert t.frame_features.shape == (sim.frames.shape[0], len(FEATURE_NAMES))
    assert t.frame_features.dtype == np.float32
    assert t.caption_variants.shape == (sim.frames.shape[0], 5)
    assert list(t.caption_variants[:, 0]) == t.captions
    for f in range(sim.frames.shape[0]):
        expected = {name for k, name in enumerate(t.feature_names) if t.frame_features[f, k] == 1}
        assert len(expected) == 5  # one value per axis: object, position, brightness, motion, lighting
        assert {name for name in t.feature_names if name in t.captions[f]} == expected, t.captions[f]
        for cap in t.caption_variants[f]:
            assert set(mentioned_features(cap)) == expected, cap
    assert len(set(t.captions)) > 5  # the scene changes
    assert len(set(t.caption_variants[:, 1:].ravel())) > 3 * len(set(t.captions))  # paraphrases differ


def test_synonyms_name_one_feature_each():
    for feature, words in FEATURE_SYNONYMS.items():
        assert words[0] == feature
        for w in words:
            assert mentioned_features(f"there is {w} here") == [feature], w
            assert mentions_feature(feature, w.upper())
    assert not mentions_feature("car", "a scar on the carpet")
    assert not mentions_feature("on the left", "a car moving left")
    assert not mentions_feature("bright", "in sunshine") and not mentions_feature("dark", "in dim light")
    with pytest.raises(ValueError, match="unknown feature"):
        mentions_feature("tree", "a tree")


def test_scene_axes_are_independent_and_classes_use_different_axes():
    m = make_movie(n_frames=9000, height=16, width=32, seed=2, n_variants=1)
    axis_of = {f: g for g, fs in FEATURE_GROUPS.items() for f in fs}
    prefs = {c: list(p) for c, p in TYPE_PREFERENCES.items()}
    assert all(len(p) == 1 for p in prefs.values())
    axes = [axis_of[p[0]] for p in prefs.values()]
    assert len(set(axes)) == 3  # PV, SST, VIP: disjoint features on three different axes
    x = m.frame_features[:, [FEATURE_NAMES.index(p[0]) for p in prefs.values()]]
    _, first = np.unique(m.scene, return_index=True)
    r = np.corrcoef(x[first].T)  # per scene, the three class features are drawn independently
    assert np.abs(r[np.triu_indices(3, 1)]).max() < 0.2, r
    assert 0.1 < x.mean(0).min() and x.mean(0).max() < 0.6


def test_captions_describe_the_pixels(sim):
    """Bright objects raise the frame's maximum, dark ones lower its minimum; positions match mass;
    sunlit scenes have a lighter background than dim ones."""
    t = sim.truth
    fr = sim.frames.astype(np.float32)
    col = {n: k for k, n in enumerate(t.feature_names)}
    bright = t.frame_features[:, col["bright"]] == 1
    dark = t.frame_features[:, col["dark"]] == 1
    assert fr[bright].max(axis=(1, 2)).mean() > 200
    assert fr[dark].min(axis=(1, 2)).mean() < 60
    left = t.frame_features[:, col["on the left"]] == 1
    right = t.frame_features[:, col["on the right"]] == 1
    dev = np.abs(fr - np.median(fr, axis=(1, 2), keepdims=True))  # against the lit background
    w = fr.shape[2]
    x_mass = (dev * np.arange(w)).sum(axis=(1, 2)) / dev.sum(axis=(1, 2))
    assert x_mass[left].mean() < w / 2 < x_mass[right].mean()
    bg = np.median(fr, axis=(1, 2))
    assert bg[t.frame_features[:, col["sunlit"]] == 1].min() > bg[t.frame_features[:, col["dim"]] == 1].max() + 30


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
    """Feature-driven units (VISl, VISal) fire more on frames that show their most preferred feature
    (the ground truth is consistent); VISp units mix in their pixel fields, so not all of them do."""
    t = sim.truth
    rows = np.flatnonzero(np.isin(t.region, ["VISl", "VISal"]) & (t.tuning.max(1) > 0.5))
    ratios = []
    for i in rows:
        k = int(t.tuning[i].argmax())
        on = t.frame_features[:, k] == 1
        if on.any() and not on.all():
            ratios.append(sim.expected_rate[on, i].mean() / sim.expected_rate[~on, i].mean())
        assert t.drives(t.feature_names[k])[i]
    assert len(ratios) >= 10
    assert np.median(ratios) > 1.5 and np.mean(np.asarray(ratios) > 1.0) >= 0.9, ratios


def test_interneuron_classes_and_opto_responders(sim):
    t = sim.truth
    assert {"PV", "SST", "VIP", "excitatory"} <= set(t.cell_type.tolist())
    assert set(t.cell_type[t.opto_responsive]) == {"SST"}
    assert t.genotype.startswith("Sst-IRES-Cre")
    col = {n: k for k, n in enumerate(t.feature_names)}
    for c, feature in (("PV", "car"), ("SST", "sunlit"), ("VIP", "dark")):
        rows = t.tuning[t.cell_type == c]
        assert (rows[:, col[feature]] > 0.5).all()
        assert (np.delete(rows, col[feature], axis=1) == 0).all()  # nothing else
        assert t.preferred_features(c) == [feature]
        assert (t.strongest_feature[t.cell_type == c] == feature).all()
        # the noise-free rate follows the preferred feature: higher on frames that show it
        on = t.frame_features[:, col[feature]] == 1
        r = t.rate[t.cell_type == c]
        assert (r[:, on].mean(1) > 1.3 * r[:, ~on].mean(1)).all()


def test_noise_free_rates_and_clear_strongest_features(sim):
    t = sim.truth
    n, f = t.unit_ids.size, sim.frames.shape[0]
    assert t.rate.shape == (n, f) and t.rate.dtype == np.float32
    np.testing.assert_array_equal(t.rate, sim.expected_rate.T)
    ca1 = t.region == "CA1"
    np.testing.assert_allclose(t.rate[ca1], np.broadcast_to(t.base_rate[ca1, None], (ca1.sum(), f)))
    assert not t.visually_driven[ca1].any() and t.visually_driven[~ca1].all()
    assert not t.clear_strongest[ca1 | (t.region == "LGd")].any()  # no feature tuning there
    # the mean rate over frames is the base rate (the drive is normalised), and spikes follow the rate
    unclipped = ~ca1 & (t.rate.max(1) < 150.0)  # (rates are capped at 150 Hz)
    assert unclipped.sum() > 0.8 * n - ca1.sum()
    np.testing.assert_allclose(t.rate[unclipped].mean(1), t.base_rate[unclipped], rtol=1e-3)
    clear = np.flatnonzero(t.clear_strongest)
    assert clear.size >= 0.3 * n
    corr = t.feature_correlation()
    k = np.asarray([t.feature_names.index(s) for s in t.strongest_feature[clear]])
    assert (corr[clear].argmax(1) == k).all()
    # hand-made case for the rule: a tie in tuning is never clear, a dominant weight with a matching rate is
    from neurrator.simulate.truth import strongest_features

    ff = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    tuning = np.array([[1.0, 0.2], [0.5, 0.45], [0.0, 0.0]], np.float32)
    rate = np.array([[9, 1, 9, 1], [5, 4, 5, 4], [2, 2, 2, 2]], np.float32)
    strongest, clear2 = strongest_features(tuning, rate, ff, ["a", "b"])
    assert strongest.tolist() == ["a", "a", ""] and clear2.tolist() == [True, False, False]


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
        frame, variant = caps["frame"].data[:], caps["variant"].data[:]
        text = np.asarray(caps["caption"].data[:], dtype=str)
        assert len(caps) == SMALL["n_frames"] * 5
        np.testing.assert_array_equal(text, truth.caption_variants[frame, variant])
        # each frame's last row is its canonical caption, so a last-row-wins reader still gets variant 0
        last = {int(f): str(c) for f, c in zip(frame, text, strict=True)}
        assert [last[f] for f in range(SMALL["n_frames"])] == truth.captions
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
    for name in ("rate", "scene", "caption_variants", "strongest_feature", "clear_strongest", "visually_driven"):
        np.testing.assert_array_equal(getattr(back, name), getattr(truth, name))
    assert back.params["n_units"] == SMALL["n_units"] and back.seed == 1 and back.params["movie_seed"] == 0
    with np.load(truth_path(path), allow_pickle=False) as z:  # plain arrays, readable without neurrator
        assert z["rate"].shape == (SMALL["n_units"], SMALL["n_frames"])
        assert z["caption_variants"].dtype.kind == "U"


def test_session_reader_gets_canonical_captions_and_variants(written):
    from neurrator.data.session import load_session

    path, truth, _ = written
    s = load_session(path)
    assert s.captions == truth.captions
    assert s.caption_variants == [list(v) for v in truth.caption_variants]
    assert all(v[0] == c for v, c in zip(s.caption_variants, s.captions, strict=True))


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
    from neurrator.data.binning import bin_spikes, window_index
    from neurrator.data.splits import split_repeats

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
    for group in FEATURE_GROUPS.values():  # object, position, brightness, motion, lighting
        cols = [FEATURE_NAMES.index(f) for f in group]
        truth = y[sp.test][:, cols]
        out.append(((pred[:, cols].argmax(1) == truth.argmax(1)).mean(), truth.mean(0).max()))
    return out


def test_captions_are_decodable_from_visual_units_not_from_ca1():
    """The ground truth is in the spikes: held-out-repeat decoding of every caption group is far above the
    majority baseline from all units, and at baseline from CA1 alone."""
    sim = simulate_session(n_units=80, n_repeats=6, n_frames=300, seed=3, n_pulses=10)
    for acc, majority in _ridge_accuracy(sim, np.arange(80)):
        assert acc > majority + 0.15, (acc, majority)
    for acc, majority in _ridge_accuracy(sim, np.flatnonzero(sim.truth.region == "CA1")):
        assert acc < majority + 0.08, (acc, majority)


@pytest.mark.slow
def test_paraphrases_give_sentence_scores_a_range():
    """With the real all-MiniLM-L6-v2: a frame's paraphrases score clearly closer to its canonical caption
    than other scenes' paraphrases do, and captions of different scenes score below the old single
    template's ~0.61."""
    from neurrator.models.embedder import load_sentence_embedder

    m = make_movie(n_frames=150, height=16, width=32, seed=0, n_variants=3)
    emb = load_sentence_embedder(device="cpu")
    e = emb.encode(m.caption_variants.ravel().tolist()).reshape(150, 3, -1)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 150, 600), rng.integers(0, 150, 600)
    other = m.scene[a] != m.scene[b]
    a, b = a[other], b[other]
    same = (e[:, 0] * e[:, 1]).sum(-1)             # canonical vs its own paraphrase
    cross = (e[a, 0] * e[b, 1]).sum(-1)            # canonical vs another scene's paraphrase
    cross_para = (e[a, 1] * e[b, 2]).sum(-1)       # paraphrases of two scenes
    assert same.mean() > cross.mean() + 0.1, (same.mean(), cross.mean())
    assert cross_para.mean() < 0.55 and cross.mean() < 0.58, (cross_para.mean(), cross.mean())


def test_a_session_without_opto_tagging_writes_and_reads(tmp_path):
    """n_pulses=0 (a wild-type mouse): no optotagging module instead of an empty table hdmf cannot type."""
    from neurrator.data.session import load_session
    from neurrator.simulate import write_simulated_session

    path = tmp_path / "wt.nwb"
    write_simulated_session(path, n_units=10, n_repeats=3, n_frames=30, n_pulses=0, seed=0)
    session = load_session(path)
    assert session.opto is None and len(session.units.ids) > 0
