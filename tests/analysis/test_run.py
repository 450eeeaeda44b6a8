"""neurrator.analysis.run: evaluation windows, concept columns, the prediction cache, and the unit, group and
scaling analyses on a tiny encoder trained for one epoch (shapes, which groups and sizes are analysed,
cached predictions, hand-computed scaling values)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from _tiny_run import N, Embedder, Narrator, fake_subset_result, references, tiny_session, tiny_split, tiny_trained, \
    tiny_units

from neurrator.analysis import run
from neurrator.analysis.run import (
    AnalysisInputs,
    PredictionCache,
    concept_activations,
    evaluation_windows,
    group_analyses,
    neurrate_session,
    scaling_analyses,
    unit_analyses,
)
from neurrator.analysis.scaling import population_draws
from neurrator.component_config import AnalysisConfig, SAEConfig
from neurrator.data.responses import trial_responses
from neurrator.decode.fidelity import patch_cosines
from neurrator.models.prediction import predict
from neurrator.sae.autoencoder import train_sae
from neurrator.sae.concepts import Concepts

# ------------------------------------------------------------------------------------- windows


def test_evaluation_windows_by_hand():
    test = np.arange(100, 110)
    assert evaluation_windows(test, 4).tolist() == [100, 103, 106, 109]
    assert evaluation_windows(test, 2).tolist() == [100, 109]
    assert evaluation_windows(test, 1).tolist() == [100]
    assert evaluation_windows(test, 10).tolist() == test.tolist()
    assert evaluation_windows(test, 99).tolist() == test.tolist()  # never more than there are
    # the test windows need not be contiguous: positions are spread, values kept
    assert evaluation_windows(np.array([3, 5, 8, 13, 21]), 3).tolist() == [3, 8, 21]


def test_concept_activations_average_latents_sharing_a_name():
    lat = np.array([[1.0, 2.0, 9.0, 3.0], [4.0, 0.0, 9.0, 8.0]], np.float32)
    acts, names = concept_activations(lat, ["car", "bar", "", "car"])
    assert names == ["bar", "car"]  # sorted, unnamed latents dropped
    np.testing.assert_allclose(acts, [[2.0, 2.0], [0.0, 6.0]])
    assert acts.dtype == np.float32
    none, no_names = concept_activations(lat, ["", "", "", ""])
    assert none.shape == (2, 0) and no_names == []


# -------------------------------------------------------------------------------- the cache


def test_prediction_cache_computes_each_subset_and_window_set_once(monkeypatch):
    calls = []

    def fake_predict(trained, binned, windows, *, unit_idx, device):
        calls.append((tuple(unit_idx), tuple(windows)))
        return np.full((len(windows), 1, 1), float(np.sum(unit_idx)), np.float32)

    monkeypatch.setattr(run, "predict", fake_predict)
    cache = PredictionCache(trained=None, binned=None, device="cpu", limit=8)
    a = cache(np.array([1, 2]), np.array([5, 6, 7]))
    assert a.shape == (3, 1, 1) and float(a[0, 0, 0]) == 3.0
    assert cache([1, 2], [5, 6, 7]) is a, "the same units and windows (any integer sequence) are not recomputed"
    assert len(calls) == 1
    cache(np.array([1, 2]), np.array([5, 6]))  # other windows
    cache(np.array([2, 1]), np.array([5, 6, 7]))  # other order of units: another subset for the encoder
    assert len(calls) == 3
    cache.clear()
    cache(np.array([1, 2]), np.array([5, 6, 7]))
    assert len(calls) == 4, "cleared entries are computed again"


def test_prediction_cache_keeps_at_most_limit_entries(monkeypatch):
    monkeypatch.setattr(run, "predict", lambda trained, binned, w, *, unit_idx, device: np.zeros((len(w), 1, 1)))
    cache = PredictionCache(trained=None, binned=None, device="cpu", limit=3)
    for i in range(10):
        cache(np.array([i]), np.array([0]))
        assert 1 <= len(cache._store) <= 3


@pytest.fixture(scope="module")
def tiny():
    """A tiny trained run and everything the analyses read from it."""
    binned, targets = tiny_session()
    split = tiny_split(binned)
    trained = tiny_trained(binned, targets, split)
    sae, _ = train_sae(targets, config=SAEConfig(d_in=targets.shape[2], n_latents=8, k=2), epochs=1, device="cpu",
                       seed=0)
    names = ["bright", "", "dark", "bright", "", "edge", "", ""]
    concepts = Concepts(names=names, scores=[1.0 if n else 0.0 for n in names], methods=["test"] * 8)
    units = tiny_units()
    narrator = Narrator()
    narrated = np.array([int(split.test[0]), int(split.test[12]), int(split.test[24]), int(split.test[36])])
    subset_results = [fake_subset_result("region:VISp", "region", np.arange(6), group="VISp"),
                      fake_subset_result("region:LGd", "region", np.arange(6, 10), group="LGd"),
                      fake_subset_result("cell_type:PV", "cell_type", np.arange(0, N, 2), group="PV")]
    for r in subset_results:
        r.presentations, r.frames = narrated, binned.frame[narrated]
        r.narrations = ["a bright scene", "a dark scene", "a dark scene", "a bright scene"]
    inputs = AnalysisInputs(
        responses=trial_responses(binned, split.train), trained=trained, binned=binned, split=split, targets=targets,
        sae=sae, concepts=concepts, units=units, narrate=narrator, embed=Embedder().encode,
        subset_results=subset_results, references=references(), block_frames=4,
        train_mean=targets[np.unique(binned.frame[split.train])].mean(axis=0))
    return SimpleNamespace(inputs=inputs, narrator=narrator, narrated=narrated, trained=trained, binned=binned,
                           split=split, targets=targets)


CONFIG = AnalysisConfig(eval_windows=24, probe_windows=12, null_pools=4, n_boot=30, n_perm=30, drive_null=20,
                        scaling_sizes=(1, 3, 10), scaling_draws=2, contributions=False)


def test_prediction_cache_returns_the_encoders_prediction(tiny):
    cache = PredictionCache(tiny.trained, tiny.binned, device="cpu")
    idx, win = np.array([0, 3, 7]), tiny.split.test[:5]
    np.testing.assert_allclose(cache(idx, win), predict(tiny.trained, tiny.binned, win, unit_idx=idx), atol=1e-6)


def test_windows_are_evenly_spread_test_windows_and_their_probe_subset(tiny):
    w = run._Windows.of(tiny.inputs, CONFIG)
    test = tiny.split.test
    assert w.win.tolist() == evaluation_windows(test, 24).tolist() and len(w.win) == 24
    assert set(w.win.tolist()) <= set(test.tolist())
    assert w.pwin.tolist() == evaluation_windows(w.win, 12).tolist() and set(w.pwin) <= set(w.win)
    np.testing.assert_array_equal(w.truth, tiny.targets[tiny.binned.frame[w.win]])
    np.testing.assert_array_equal(w.ptruth, tiny.targets[tiny.binned.frame[w.pwin]])
    assert w.mean_map is tiny.inputs.train_mean
    assert len(w.blocks) == 24 and len(w.pblocks) == 12


# --------------------------------------------------------------------------- scaling analyses


def test_scaling_curves_per_region_with_sizes_that_fit_and_hand_computed_fidelity(tiny):
    w = run._Windows.of(tiny.inputs, CONFIG)
    cache = PredictionCache(tiny.trained, tiny.binned, device="cpu")
    regions = {"VISp": np.arange(6), "CA1": np.array([10, 11])}
    curves = scaling_analyses(tiny.inputs, config=CONFIG, cache=cache, windows=w, regions=regions, device="cpu",
                              seed=0)
    got = [(str(c.region[0]), str(c.metric[0]), c.n_units.tolist()) for c in curves]
    # size 10 exceeds both regions; CA1's two units give size 1 only (no size 2 was asked for)
    assert got == [("VISp", "centred_patch_cosine", [1, 3]), ("VISp", "narration_similarity", [1, 3]),
                   ("CA1", "centred_patch_cosine", [1]), ("CA1", "narration_similarity", [1])]
    draws = population_draws(regions["VISp"], [1, 3], n_draws=CONFIG.scaling_draws, seed=0)
    cos_curve = curves[0]
    for i, size in enumerate([1, 3]):
        by_hand = np.mean([patch_cosines(predict(tiny.trained, tiny.binned, w.win, unit_idx=d), w.truth,
                                         mean_map=w.mean_map) for d in draws[size]])
        assert cos_curve.value[i] == pytest.approx(by_hand, abs=1e-5)
        assert cos_curve.n_draws[i] == len(draws[size])
    # narration similarity of the bag-of-words stand-ins is 1 (same text) or 2/3 (bright vs dark)
    for c in curves:
        if c.metric[0] == "narration_similarity":
            assert np.all((c.value >= 2 / 3 - 1e-6) & (c.value <= 1 + 1e-6))
    assert cache._store == {}, "each size's predictions are dropped once scored"


def test_scaling_narrates_the_first_subsets_narrated_windows(tiny):
    w = run._Windows.of(tiny.inputs, CONFIG)
    tiny.narrator.calls.clear()
    scaling_analyses(tiny.inputs, config=CONFIG, cache=PredictionCache(tiny.trained, tiny.binned, device="cpu"),
                     windows=w, regions={"LGd": np.arange(6, 10)}, device="cpu", seed=0)
    draws = population_draws(np.arange(6, 10), [1, 3], n_draws=CONFIG.scaling_draws, seed=0)
    expect = [predict(tiny.trained, tiny.binned, tiny.narrated, unit_idx=d) for s in sorted(draws) for d in draws[s]]
    assert len(tiny.narrator.calls) == len(expect)
    for got, want in zip(tiny.narrator.calls, expect):
        np.testing.assert_allclose(got, want, atol=1e-6)


# ------------------------------------------------------------------------ unit and group analyses


def test_unit_analyses_give_one_row_per_unit_and_probe_contributions_only_when_asked(tiny):
    w = run._Windows.of(tiny.inputs, CONFIG)
    lat = np.random.default_rng(0).random((tiny.targets.shape[0], 8)).astype(np.float32)
    acts, names = concept_activations(lat, tiny.inputs.concepts.names)
    regions = {"VISp": np.arange(6), "LGd": np.arange(6, 10)}
    kw = dict(windows=w, regions=regions, acts=acts, names=names, device="cpu", seed=0)
    _, table = unit_analyses(tiny.inputs, config=CONFIG, cache=PredictionCache(tiny.trained, tiny.binned,
                                                                               device="cpu"), **kw)
    for name, col in table.items():
        assert len(col) == N, name
    assert list(table["unit"]) == list(range(N))
    assert np.all(np.isnan(table["loo_delta"])) and table["drive_text"] == [""] * N

    with_probes = dataclasses.replace(CONFIG, contributions=True)
    _, table = unit_analyses(tiny.inputs, config=with_probes, cache=PredictionCache(tiny.trained, tiny.binned,
                                                                                   device="cpu"), **kw)
    tested = np.isfinite(table["loo_delta"])
    # leave-one-out within each region: the 10 units of VISp and LGd, not the CA1 pair outside ``regions``
    assert tested.tolist() == [True] * 10 + [False] * 2


def test_group_analyses_cover_groups_of_min_units_and_kinds_with_two_subsets(tiny):
    w = run._Windows.of(tiny.inputs, CONFIG)
    names = ["bright", "dark", "edge"]
    result = run.NeurrationResult(units={"preferred_text": [""] * N}, tuning={}, concept_names=names)
    regions = {"VISp": np.arange(6), "LGd": np.arange(6, 10), "CA1": np.array([10, 11])}
    tuning_r = np.random.default_rng(1).normal(0, 0.2, size=(N, len(names)))
    group_analyses(tiny.inputs, result, config=CONFIG, cache=PredictionCache(tiny.trained, tiny.binned, device="cpu"),
                   windows=w, regions=regions, tuning_r=tuning_r, min_units=5, device="cpu", seed=0)
    analysed = {(str(k), str(g), str(s)) for c in result.comparisons
                for k, g, s in zip(c.group_kind, c.group, c.source)}
    # min_units 5: VISp (6 units) but not LGd (4) or CA1 (2); both cell types (6 each)
    assert {(k, g) for k, g, _ in analysed} == {("region", "VISp"), ("cell_type", "PV"), ("cell_type", "SST")}
    assert {s for _, _, s in analysed} == {"tuning", "decoded"}
    for c in result.comparisons:  # every concept for every group analysed
        for g in set(c.group.tolist()):
            assert sorted(c.concept[c.group == g].tolist()) == names
    # narration separation needs two subsets of a kind: two regions were narrated, one cell type
    kinds = {str(k) for s in result.separations for k in s.group_kind}
    assert kinds == {"region"}
    assert {str(g) for s in result.separations for g in s.group} >= {"VISp", "LGd"}


# ------------------------------------------------------------------------------ the whole session


def test_neurrate_session_runs_the_three_parts_on_the_configured_windows(tiny, monkeypatch, caplog):
    import logging

    from neurrator.io import progress

    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.0)  # a heartbeat line at every step (30 s on a real run)
    with caplog.at_level(logging.INFO, logger="neurrator"):
        out = neurrate_session(tiny.inputs, config=CONFIG, min_units=5, device="cpu", seed=0)
    beats = [r.getMessage() for r in caplog.records if r.name == "neurrator.progress"]
    assert [b.split(" (")[0] for b in beats if b.startswith("neurration: ")][:3] == [
        "neurration: 1/3 parts", "neurration: 2/3 parts", "neurration: 3/3 parts"]
    assert any(b.startswith("scaling: 1/3 regions") and "left" in b for b in beats), beats
    assert out.concept_names == ["bright", "dark", "edge"]
    assert out.notes["eval_windows"] == 24 and out.notes["probe_windows"] == 12
    assert out.notes["n_perm"] == CONFIG.n_perm and out.notes["scaling_draws"] == CONFIG.scaling_draws
    for name, col in out.units.items():
        assert len(col) == N, name
    # every region with two or more units gets its curves: VISp and LGd sizes 1 and 3, CA1 size 1
    got = {(str(c.region[0]), str(c.metric[0])): c.n_units.tolist() for c in out.scaling}
    assert got == {("CA1", "centred_patch_cosine"): [1], ("CA1", "narration_similarity"): [1],
                   ("LGd", "centred_patch_cosine"): [1, 3], ("LGd", "narration_similarity"): [1, 3],
                   ("VISp", "centred_patch_cosine"): [1, 3], ("VISp", "narration_similarity"): [1, 3]}
    assert {str(g) for c in out.comparisons for g in c.group} == {"VISp", "PV", "SST"}
    # the same inputs and seed give the same results
    again = neurrate_session(tiny.inputs, config=CONFIG, min_units=5, device="cpu", seed=0)
    np.testing.assert_array_equal(np.asarray(out.units["reliability"]), np.asarray(again.units["reliability"]))
    for a, b in zip(out.scaling, again.scaling):
        np.testing.assert_array_equal(a.value, b.value)
