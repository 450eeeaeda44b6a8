"""Evaluation: ranks and chance levels on constructed predictions; baselines on known mappings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurrator.binning import Binned, split_repeats
from neurrator.evaluation import (
    evaluate_encoder,
    fidelity_rows,
    frame_identification,
    knn_baseline,
    ridge_baseline,
    score_predictions,
    shuffled_control,
    window_features,
)

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
    assert r["chance_top1"] == 0.1 and r["chance_top5"] == 0.5
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
    s = score_predictions(t[[1, 2, 3]], np.array([1, 2, 3]), t, fps=1)
    assert s["patch_cosine"] == pytest.approx(1.0) and s["mse"] == 0 and s["top1"] == 1.0
    assert s["chance_patch_cosine"] < 0.5
    sh = shuffled_control(t, np.arange(10), t, fps=1)
    assert sh["top1"] < 0.5
    rows = fidelity_rows(s, method="encoder", n_units=5)
    assert [r["metric"] for r in rows] == ["patch_cosine", "top1", "top5", "within_1s"]
    assert rows[1] == {"metric": "top1", "value": 1.0, "chance": 0.1, "split": "test", "n": 3,
                       "method": "encoder", "n_units": 5}


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
    from neurrator.encoder import EncoderConfig
    from neurrator.training import TrainConfig, train_encoder

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
