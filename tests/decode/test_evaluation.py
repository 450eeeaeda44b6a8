"""Evaluation: ranks and chance levels on constructed predictions; baselines on known mappings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurrator.data.binning import Binned
from neurrator.data.splits import split_repeats
from neurrator.decode.chance import duplicate_groups, rank_chance, window_chance
from neurrator.decode.fidelity import fidelity_rows, frame_identification, score_predictions, shuffled_control, training_mean_map
from neurrator.decode.baselines import evaluate_encoder, knn_baseline, ridge_baseline, window_features

torch.set_num_threads(1)


def onehot_targets(F=10, P=2):
    t = np.zeros((F, P, F), np.float32)
    t[np.arange(F), :, np.arange(F)] = 1.0
    return t


def test_ranks_top_k_and_within_1s_on_constructed_predictions():
    t = onehot_targets(10)
    # predictions: exact frame 3; frame 5 predicted as frame 6 (rank 1, within 1 frame);
    # frame 0 predicted as a 0.6/0.4 mix of frames 9 and 0 (rank 1, far away)
    p = np.stack([t[3], t[6], 0.6 * t[9] + 0.4 * t[0]])
    r = frame_identification(p, np.array([3, 5, 0]), t, fps=1, center=False)
    assert r["rank"].tolist() == [0, 1, 1]
    assert r["best"].tolist() == [3, 6, 9]
    assert r["top1"] == pytest.approx(1 / 3) and r["top5"] == 1.0
    assert r["within_1s"] == pytest.approx(2 / 3)
    assert r["chance_top1"] == pytest.approx(0.1) and r["chance_top5"] == pytest.approx(0.5)
    # within +/- 1 frame: frame 3 -> {2,3,4}, frame 5 -> {4,5,6}, frame 0 -> {0,1} (edge)
    assert r["chance_within_1s"] == pytest.approx(np.mean([3, 3, 2]) / 10)
    # the worst possible prediction: anti-correlated with the true frame
    worst = frame_identification(-t[[4]], np.array([4]), t, fps=1, center=False)
    assert worst["rank"].tolist() == [9]


def test_centering_uses_the_movie_mean():
    rng = np.random.default_rng(0)
    t = (rng.normal(size=(20, 3, 4)) * 0.1 + 10).astype(np.float32)  # a large shared mean
    p = t[[7]] + 0.01 * rng.normal(size=(1, 3, 4)).astype(np.float32)
    assert frame_identification(p, np.array([7]), t, center=True)["rank"][0] == 0


def test_score_predictions_and_rows():
    t = onehot_targets(10)
    s = score_predictions(t[[1, 2, 3]], np.array([1, 2, 3]), t, fps=1, block_frames=1)
    assert np.isnan(score_predictions(t[[1, 2, 3]], np.array([1, 2, 3]), t, fps=1)["top1_ci_lo"])  # one block
    assert s["patch_cosine"] == pytest.approx(1.0) and s["mse"] == 0 and s["top1"] == 1.0
    assert s["chance_patch_cosine"] < 0.5
    sh = shuffled_control(t, np.arange(10), t, fps=1)
    assert sh["top1"] < 0.5
    rows = fidelity_rows(s, method="encoder", n_units=5)
    assert [r["metric"] for r in rows] == ["patch_cosine", "top1", "top5", "within_1s"]  # no train mean
    assert rows[1] == {"metric": "top1", "value": 1.0, "chance": pytest.approx(0.1), "split": "test", "n": 3,
                       "ci_lo": 1.0, "ci_hi": 1.0, "method": "encoder", "n_units": 5}
    s = score_predictions(t[[1, 2, 3]], np.array([1, 2, 3]), t, fps=1, train_mean=t.mean(0))
    assert [r["metric"] for r in fidelity_rows(s)][-1] == "centred_patch_cosine"


def test_chance_from_a_hand_made_duplicate_structure():
    # 4 frames, frames 0 and 1 pixel-identical: groups {0, 1}, {2}, {3}
    t = onehot_targets(4)
    t[1] = t[0]
    groups = duplicate_groups(t)
    assert groups.tolist() == [0, 0, 1, 2]
    # by hand; the null prediction is the map of a random frame u (its group first), the rest in random order.
    # top-1: u lands in frame 0's group with p 2/4, in frame 2's with 1/4
    # top-2 (rank < 2), true frame 0: u in {0, 1} (2/4) hits; u = 2 (1/4) gives rank 1 + 1 if {3} comes
    #   before {0, 1} (p 1/2), so hits with 1/2; u = 3 likewise: 2/4 + 1/8 + 1/8 = 3/4
    #   true frame 2: u = 2 (1/4) hits; u in {0, 1} (2/4) gives rank >= 2; u = 3 (1/4) hits if {0, 1}
    #   comes after {2} (1/2): 1/4 + 1/8 = 3/8
    # within +/- 1 frame: frame 0 -> window {0, 1} = group {0, 1}: 2/4; frame 2 -> {1, 2, 3}: all 4/4
    np.testing.assert_allclose(rank_chance(groups, np.array([0, 2]), k=1), [0.5, 0.25])
    np.testing.assert_allclose(rank_chance(groups, np.array([0, 2]), k=2), [3 / 4, 3 / 8])
    np.testing.assert_allclose(window_chance(groups, np.array([0, 2]), half=1), [0.5, 1.0])
    r = frame_identification(t[[1, 2]], np.array([0, 2]), t, fps=1, center=False)
    assert r["chance_top1"] == pytest.approx(0.375) and r["naive_chance_top1"] == 0.25
    assert r["chance_within_1s"] == pytest.approx(0.75)
    assert r["top1"] == 1.0 and r["rank"].tolist() == [0, 0]  # the duplicate ties: counted as a hit
    assert r["best"].tolist() == [0, 2]  # among tied frames, the one nearest the true frame


def test_top5_chance_matches_enumeration_of_all_orders():
    import itertools

    groups = np.array([0, 0, 0, 1, 2, 3, 3, 4])  # sizes 3, 1, 1, 2, 1
    sizes = np.bincount(groups)
    hits, n = np.zeros((8, 7)), 0
    for u in range(8):  # the null prediction: frame u's map; the other groups in every order
        others = [h for h in range(5) if h != groups[u]]
        for order in itertools.permutations(others):
            order = [groups[u], *order]
            n += 1
            for f in range(8):
                rank = sum(sizes[h] for h in order[: order.index(groups[f])])
                hits[f] += [rank < k for k in range(1, 8)]
    hits /= n
    for k in range(1, 8):
        np.testing.assert_allclose(rank_chance(groups, np.arange(8), k=k), hits[:, k - 1], atol=1e-12)


def test_shuffled_control_scores_at_the_duplicate_aware_chance():
    # 200 frames: a static stretch of 37 identical frames, three of 10, the rest unique; 3 test repeats
    rng = np.random.default_rng(0)
    sizes = [37, 10, 10, 10] + [1] * 133
    groups = np.repeat(np.arange(len(sizes)), sizes)
    maps = rng.normal(size=(len(sizes), 4, 8)).astype(np.float32)
    t = maps[groups]
    frames = np.tile(np.arange(200), 3)
    pred = t[frames] + 0.01 * rng.normal(size=(600, 4, 8)).astype(np.float32)  # a near-perfect decoder
    good = score_predictions(pred, frames, t, fps=2, block_frames=10, n_boot=500, n_perm=300)
    assert good["top1"] == 1.0
    assert good["p_top1"] == pytest.approx(1 / 301) and good["p_within_1s"] == pytest.approx(1 / 301)
    # the paired null pairs windows of different 10-frame blocks: only the static stretch (frames 0-36,
    # four blocks) still "identifies" across blocks
    g, b = groups[frames], frames // 10
    other = b[:, None] != b[None, :]
    expected = np.mean((other & (g[:, None] == g[None, :])).sum(1) / other.sum(1))  # uniform off-block pairing
    assert good["top1_null_mean"] == pytest.approx(expected, rel=0.15)
    sh = shuffled_control(pred, frames, t, fps=2, block_frames=10, n_boot=500, seed=1, n_perm=300)
    assert sh["p_top1"] > 0.05 and sh["p_top5"] > 0.05  # a control that knows nothing does not beat the null
    expected_top1 = np.sum(np.square(sizes)) / 200 ** 2  # mean over frames of g(f) / F
    assert sh["chance_top1"] == pytest.approx(expected_top1)
    for m in ("top1", "top5", "within_1s"):
        assert sh[f"{m}_ci_lo"] <= sh[f"chance_{m}"] <= sh[f"{m}_ci_hi"], m
    assert sh["top1_ci_lo"] > sh["naive_chance_top1"]  # 1/F would call this chance-level control a decoder


def test_centred_patch_cosine_subtracts_the_training_mean():
    rng = np.random.default_rng(1)
    shared = 10 * rng.normal(size=(3, 6)).astype(np.float32)  # the large component every map shares
    t = shared + rng.normal(size=(40, 3, 6)).astype(np.float32)
    train = np.arange(30)
    mean = training_mean_map(t, np.concatenate([train, train]))  # duplicates in the list do not weigh
    np.testing.assert_allclose(mean, t[:30].mean(0), rtol=1e-5)
    frames = np.arange(30, 40)
    noise = shared + rng.normal(size=(10, 3, 6)).astype(np.float32)  # no frame information at all
    s = score_predictions(noise, frames, t, fps=1, train_mean=mean, block_frames=2, n_boot=200)
    assert s["patch_cosine"] > 0.9 and abs(s["centred_patch_cosine"]) < 0.3  # raw cosine flatters
    assert abs(s["chance_centred_patch_cosine"]) < 0.3
    ok = score_predictions(t[frames], frames, t, fps=1, train_mean=mean, block_frames=2, n_boot=200)
    assert ok["centred_patch_cosine"] == pytest.approx(1.0, abs=1e-5)
    # by hand for one patch: cos(a - m, b - m)
    a, b, m = np.array([[[1.0, 2.0]]]), np.array([[[2.0, 1.0]]]), np.array([[1.0, 0.0]])
    from neurrator.decode.fidelity import patch_cosines

    assert patch_cosines(a, b, mean_map=m)[0] == pytest.approx(np.dot([0, 2], [1, 1]) / (2 * np.sqrt(2)))
    assert ok["centred_patch_cosine_ci_lo"] <= ok["centred_patch_cosine"] <= ok["centred_patch_cosine_ci_hi"]
    assert ok["n_blocks"] == 5


def linear_session(seed=0, F=40, R=6, N=15, b=2, P=2, D=3):
    """Noiseless counts per frame (identical in every repeat); targets linear in log1p(counts)."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 12, size=(F, N))
    counts = np.repeat(np.tile(c, (R, 1)), b, 0).astype(np.uint16)
    targets = (np.log1p(c) @ rng.normal(size=(N, P * D))).reshape(F, P, D).astype(np.float32)
    binned = Binned(counts=counts, frame=np.tile(np.arange(F), R), repeat=np.repeat(np.arange(R), F),
                    bins_per_frame=b, unit_ids=np.arange(N))
    return binned, targets


def test_window_features_are_the_encoder_windows():
    binned, _ = linear_session()
    x = window_features(binned, np.array([0, 41]), window_bins=4, offset_bins=0)
    # presentation 0 (first of its repeat): rows -1, 0, 1, 2 -> first bin zeros
    assert x.shape == (2, 4 * 15)
    np.testing.assert_array_equal(x[0, :15], 0)
    np.testing.assert_allclose(x[0, 15:30], np.log1p(binned.counts[0]))
    # presentation 41: rows 41*2 + 1 - 2 = 81 .. 84
    pooled = window_features(binned, np.array([41]), window_bins=4, temporal_pool=2)
    np.testing.assert_allclose(pooled[0, :15], np.log1p(binned.counts[81:83].astype(np.float32).sum(0)))


def test_ridge_and_knn_recover_a_clean_mapping():
    binned, targets = linear_session()
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    y = targets[binned.frame[split.test]]
    pred, info = ridge_baseline(binned, targets, split, window_bins=2, n_components=6)
    assert pred.shape == y.shape and info["n_components"] == 6
    assert score_predictions(pred, binned.frame[split.test], targets)["top1"] == 1.0
    assert info["alpha"] <= 10 and np.abs(pred - y).max() < 0.05 * np.abs(y).max()
    kp, kinfo = knn_baseline(binned, targets, split, window_bins=2)
    assert kinfo["k"] == 1  # repeats are identical: the nearest window is the same frame
    np.testing.assert_allclose(kp, y, atol=1e-6)


def test_evaluate_encoder_reports_seen_unseen_and_baselines():
    from neurrator.models.encoder import EncoderConfig
    from neurrator.models.training import TrainConfig, train_encoder

    binned, targets = linear_session()
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    tr = train_encoder(binned, targets, split, config=TrainConfig(window_bins=4, max_epochs=2, batch_size=32,
                       warmup_steps=1), encoder=EncoderConfig(n_units=15, n_patches=2, dim=3, window_bins=4,
                       d_model=8, n_heads=2, n_latents=2, depth=0), progress=False, holdout_frames=np.arange(30, 40))
    rep = evaluate_encoder(tr, binned, targets, split, fps=2, ridge_kwargs={"n_components": 6})
    for name in ("encoder", "ridge", "knn", "shuffled"):
        assert rep[name]["n"] == 30 and rep["unseen"][name]["n"] == 10
    # ridge extrapolates the linear map to unseen frames; kNN can only return training frames
    assert rep["unseen"]["ridge"]["top1"] > 0.5
    assert rep["unseen"]["knn"]["top1"] == 0.0
