"""decode_subsets and its helpers (narrated windows, scoring context, metric pairs, FDR across subsets) on
tiny hand-made inputs with hand-computed answers, and on a tiny encoder trained for one epoch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _tiny_run import FPS, Embedder, Narrator, fake_subset_result, references, tiny_session, tiny_split, tiny_trained

from neurrator.decode.decoding import (
    EVAL_METRICS,
    NULL_TESTED,
    apply_fdr,
    decode_subsets,
    metric_pairs,
    narrated_presentations,
    scoring_context,
)
from neurrator.decode.fidelity import patch_cosines
from neurrator.decode.subsets import UnitSubset
from neurrator.models.prediction import predict

# ------------------------------------------------------------------------------ narrated windows


def test_narrated_windows_are_spread_over_the_first_test_repeat_only():
    b = SimpleNamespace(repeat=np.repeat([0, 1, 2], 10), frame=np.tile(np.arange(10), 3))
    split = SimpleNamespace(test=np.arange(10, 30))  # repeats 1 and 2 are test
    # linspace(0, 9, 3) = 0, 4.5, 9 -> rounded to even: 0, 4, 9 of repeat 1 (presentations 10..19)
    assert narrated_presentations(b, split, 3).tolist() == [10, 14, 19]
    assert narrated_presentations(b, split, 1).tolist() == [10]
    # more windows asked for than the repeat holds: all of it, never the second test repeat
    assert narrated_presentations(b, split, 50).tolist() == list(range(10, 20))


def test_narrated_windows_follow_the_test_repeat_not_repeat_zero():
    b = SimpleNamespace(repeat=np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2]), frame=np.array([0, 1, 2] * 2 + [0, 1, 2, 3]))
    assert narrated_presentations(b, SimpleNamespace(test=np.array([6, 7, 8, 9])), 2).tolist() == [6, 9]
    assert narrated_presentations(b, SimpleNamespace(test=np.array([0, 1, 2])), 2).tolist() == [0, 2]


def test_spread_narrations_sit_evenly_round_the_movie_in_every_test_repeat():
    b = SimpleNamespace(repeat=np.repeat([0, 1, 2], 12), frame=np.tile(np.arange(12), 3))
    split = SimpleNamespace(test=np.arange(12, 36))  # repeats 1 and 2 are test
    got = narrated_presentations(b, split, 6, spread=True)
    # frames m * 12 / 6 = 0, 2, 4, ..., 10 taking turns: repeat 1 gets 0, 4, 8 and repeat 2 gets 2, 6, 10,
    # each evenly round the 12-frame circle (spacing 4 across the wrap too), as the rotation null needs
    assert b.repeat[got].tolist() == [1, 1, 1, 2, 2, 2] and b.frame[got].tolist() == [0, 4, 8, 2, 6, 10]
    # k rounded down to a multiple of the test repeats
    assert len(narrated_presentations(b, split, 7, spread=True)) == 6
    # more than a repeat holds: every frame once, half in each repeat
    many = narrated_presentations(b, split, 100, spread=True)
    assert sorted(b.frame[many].tolist()) == list(range(12)) and np.sum(b.repeat[many] == 1) == 6


# ------------------------------------------------------------------------------- scoring context


def test_scoring_context_by_hand():
    rng = np.random.default_rng(3)
    targets = rng.normal(size=(6, 2, 3)).astype(np.float32)
    targets[4] = targets[1]  # a duplicate frame shares its group
    ctx = scoring_context(targets, np.array([0, 1, 1, 2, 3]), bank_texts=["b", "a", "b", "c"], fps=29.97,
                          holdout_frames=np.array([3]), n_boot=7, n_perm=11)
    # frame 3 is held out of training: the mean map is over frames 0, 1, 2 (each once)
    np.testing.assert_allclose(ctx.train_mean, targets[[0, 1, 2]].mean(axis=0), rtol=1e-6)
    assert ctx.groups.tolist() == [0, 1, 2, 3, 1, 4]
    assert ctx.constant == "b"
    assert ctx.block_frames == 30 and ctx.n_boot == 7 and ctx.n_perm == 11
    kw = ctx.kwargs(5)
    assert kw["seed"] == 5 and kw["block_frames"] == 30 and kw["train_mean"] is ctx.train_mean


def test_scoring_context_blocks_are_at_least_one_frame():
    targets = np.arange(12, dtype=np.float32).reshape(4, 1, 3)
    ctx = scoring_context(targets, np.arange(4), bank_texts=["x"], fps=0.4)
    assert ctx.block_frames == 1
    np.testing.assert_allclose(ctx.train_mean, targets.mean(axis=0))


# --------------------------------------------------------------------------------- metric pairs


def test_metric_pairs_take_value_chance_ci_and_p_and_leave_the_rest_nan():
    scores = {}
    for i, m in enumerate(EVAL_METRICS):
        scores[m], scores[f"chance_{m}"] = 0.5 + i, 0.1 * i
        scores[f"{m}_ci_lo"], scores[f"{m}_ci_hi"] = 0.4 + i, 0.6 + i
    scores["p_top1"] = 0.02
    out = metric_pairs(scores)
    assert list(out) == list(EVAL_METRICS)
    top1 = out["top1"]
    i = EVAL_METRICS.index("top1")
    assert (top1.value, top1.chance, top1.lo, top1.hi, top1.p) == pytest.approx((0.5 + i, 0.1 * i, 0.4 + i, 0.6 + i,
                                                                                 0.02))
    assert np.isnan(out["top5"].p) and np.isnan(out["centred_patch_cosine"].p)
    del scores["patch_cosine_ci_lo"]
    assert np.isnan(metric_pairs(scores)["patch_cosine"].lo)


# ----------------------------------------------------------------------------- FDR across subsets


def test_fdr_is_across_subsets_with_hand_computed_q_values():
    ps = [0.01, 0.04, 0.03, 0.5]
    results = [fake_subset_result(f"random:5:seed{i}", "random", [i], p=p, narration_p=p) for i, p in enumerate(ps)]
    apply_fdr(results)
    # Benjamini-Hochberg by hand: sorted p 0.01, 0.03, 0.04, 0.5 -> p * 4 / rank = 0.04, 0.06, 0.0533, 0.5,
    # then the running minimum from the largest p down: 0.04, 0.0533, 0.0533, 0.5 (in sorted order)
    expect_q = [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5]
    for name in (*NULL_TESTED, "narration_similarity"):
        assert [r.q[name] for r in results] == pytest.approx(expect_q)
        assert [r.beats_null[name] for r in results] == [True, False, False, False]
    # the same p = 0.04 on its own passes: the correction counts the other subsets
    alone = [fake_subset_result("all", "all", [0], p=0.04, narration_p=0.04)]
    apply_fdr(alone)
    assert alone[0].q["top1"] == pytest.approx(0.04) and alone[0].beats_null["top1"]


def test_a_narration_beats_its_null_only_when_it_also_beats_the_constant_narration():
    """Issue 31: a narration far above its paired null but not above one constant sentence is no finding."""
    results = [fake_subset_result("all", "all", [0], narration_p=0.001),
               fake_subset_result("region:VISp", "region", [1], narration_p=0.001, beats_constant=False)]
    apply_fdr(results)
    assert [r.q["narration_similarity"] for r in results] == pytest.approx([0.001, 0.001])
    assert [r.beats_null["narration_similarity"] for r in results] == [True, False]


def test_cosines_beat_chance_only_when_their_ci_is_above_it():
    above = fake_subset_result("all", "all", [0], chance=0.1, lo=0.15)
    touching = fake_subset_result("region:VISp", "region", [1], chance=0.1, lo=0.05)
    no_ci = fake_subset_result("unit:1", "single_unit", [2], chance=0.1, lo=float("nan"))
    apply_fdr([above, touching, no_ci])
    for name in EVAL_METRICS:
        if name not in NULL_TESTED:
            assert (above.beats_null[name], touching.beats_null[name], no_ci.beats_null[name]) == (True, False, False)
            assert name not in above.q  # without a shift null (flashed images) the cosines get no q


def test_cosines_with_a_shift_null_need_their_fdr_and_to_be_above_chance():
    """A movie's cosines carry a circular-shift p: the CI alone no longer makes them beat the null."""
    strong = fake_subset_result("all", "all", [0], chance=0.1, lo=0.15, cosine_p=0.001)
    weak = fake_subset_result("region:VISp", "region", [1], chance=0.1, lo=0.15, cosine_p=0.4)
    below = fake_subset_result("region:CA1", "region", [2], value=0.05, chance=0.1, lo=0.15, cosine_p=0.001)
    apply_fdr([strong, weak, below])
    for name in EVAL_METRICS:
        if name not in NULL_TESTED:
            assert (strong.beats_null[name], weak.beats_null[name], below.beats_null[name]) == (True, False, False)
            assert strong.q[name] == pytest.approx(0.0015) and weak.q[name] == pytest.approx(0.4)


def test_untested_subsets_get_nan_q_and_do_not_shift_the_others():
    results = [fake_subset_result("a", "random", [0], p=0.01), fake_subset_result("b", "random", [1], p=float("nan"))]
    apply_fdr(results)
    assert results[0].q["top1"] == pytest.approx(0.01) and results[0].beats_null["top1"]
    assert np.isnan(results[1].q["top1"]) and not results[1].beats_null["top1"]


# ------------------------------------------------------------------------------ decode_subsets


@pytest.fixture(scope="module")
def tiny():
    binned, targets = tiny_session()
    split = tiny_split(binned)
    trained = tiny_trained(binned, targets, split)
    refs = references()
    ctx = scoring_context(targets, binned.frame[split.train], bank_texts=list(refs.values()), fps=FPS,
                          holdout_frames=trained.holdout_frames, n_boot=50, n_perm=50)
    return SimpleNamespace(binned=binned, targets=targets, split=split, trained=trained, refs=refs, ctx=ctx,
                           narrated=narrated_presentations(binned, split, 5))


SUBSETS = [UnitSubset("all", "all", np.arange(12)), UnitSubset("region:VISp", "region", np.arange(6), group="VISp"),
           UnitSubset("unit:500", "single_unit", np.array([0]))]


def _decode(tiny, subsets, narrator, seen=None):
    def progress(items):
        if seen is not None:
            seen.extend(items)
        return items

    return decode_subsets(subsets, trained=tiny.trained, binned=tiny.binned, split=tiny.split, targets=tiny.targets,
                          narrated=tiny.narrated, narrate=narrator, references=tiny.refs, embedder=Embedder(),
                          fps=FPS, device="cpu", seed=0, context=tiny.ctx, progress=progress)


def test_decode_subsets_narrates_each_subsets_own_prediction(tiny):
    narrator, seen = Narrator(), []
    results, baselines = _decode(tiny, SUBSETS, narrator, seen)
    assert [s.label for s in seen] == [s.label for s in SUBSETS], "progress wraps the subsets"
    assert [r.subset.label for r in results] == ["all", "region:VISp", "unit:500"]
    frames = tiny.binned.frame[tiny.narrated]
    assert len(narrator.calls) == 3
    for r, s, patches in zip(results, SUBSETS, narrator.calls):
        # the narrator reads exactly this subset's prediction of the narrated windows, and it is kept
        direct = predict(tiny.trained, tiny.binned, tiny.narrated, unit_idx=s.unit_idx)
        np.testing.assert_allclose(patches, direct, atol=1e-5)
        np.testing.assert_allclose(r.predicted, direct, atol=1e-5)
        assert r.presentations.tolist() == tiny.narrated.tolist() and r.frames.tolist() == frames.tolist()
        assert r.references == [tiny.refs[int(f)] for f in frames]
        assert r.narrations == ["a bright scene" if p.mean() > 0 else "a dark scene" for p in direct]
        # bag-of-words cosine by hand: the same text 1, "a bright scene" vs "a dark scene" 2/3
        expect = [1.0 if n == ref else 2 / 3 for n, ref in zip(r.narrations, r.references)]
        np.testing.assert_allclose(r.similarity, expect, atol=1e-6)
        assert set(r.metrics) == set(EVAL_METRICS)
        # FDR is applied before returning; a movie's cosines have a shift null, so they get a q too
        assert set(r.q) == {*EVAL_METRICS, "narration_similarity"}, "FDR is applied before returning"
    # the pipeline's two groups of baselines come with the "all" subset: ridge, kNN and the shuffled control
    assert set(baselines) == {"ridge", "knn", "shuffled"}
    assert all(set(m) == set(EVAL_METRICS) for m in baselines.values())


def test_decode_subsets_scores_the_whole_test_repeat_against_the_training_mean(tiny):
    results, _ = _decode(tiny, SUBSETS, Narrator())
    test_frames = tiny.binned.frame[tiny.split.test]
    cos = []
    for r, s in zip(results, SUBSETS):
        pred = predict(tiny.trained, tiny.binned, tiny.split.test, unit_idx=s.unit_idx)
        c = float(np.mean(patch_cosines(pred, tiny.targets[test_frames], mean_map=tiny.ctx.train_mean)))
        assert r.metrics["centred_patch_cosine"].value == pytest.approx(c, abs=1e-5)
        cos.append(c)
    # twelve units read the latent better than one
    assert cos[0] > cos[2] + 0.1, cos
    assert results[0].metrics["top1"].value > results[0].metrics["top1"].chance


def test_decode_subsets_without_the_all_subset_fits_no_baselines(tiny):
    results, baselines = _decode(tiny, SUBSETS[1:], Narrator())
    assert baselines == {}
    assert [r.subset.label for r in results] == ["region:VISp", "unit:500"]
