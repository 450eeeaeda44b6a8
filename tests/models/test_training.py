"""train_encoder / predict on a small synthetic session with a known stimulus -> rate mapping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurrator.data.binning import Binned
from neurrator.data.splits import split_repeats
from neurrator.models.encoder import EncoderConfig
from neurrator.errors import NeurratorError
from neurrator.models.training import TrainConfig, _lr_at, train_encoder
from neurrator.models.prediction import predict

torch.set_num_threads(1)


def synthetic(seed=0, F=60, R=8, N=40, b=4, P=8, D=12, L=4):
    """Latent z per frame (smooth in time); Poisson rates exp(z A); targets tanh(z B)."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.normal(size=(F, L)), 0)
    z = (z - z.mean(0)) / z.std(0)
    rates = np.exp(0.8 * z @ rng.normal(size=(L, N)) / np.sqrt(L) - 1.0)
    counts = rng.poisson(np.repeat(np.tile(rates, (R, 1)), b, 0)).astype(np.uint16)
    targets = np.tanh(z @ rng.normal(size=(L, P * D))).reshape(F, P, D).astype(np.float32)
    binned = Binned(counts=counts, frame=np.tile(np.arange(F), R), repeat=np.repeat(np.arange(R), F),
                    bins_per_frame=b, unit_ids=np.arange(N, dtype=np.int64) + 100)
    return binned, targets


# from scratch (no closed-form start of the linear path), so that the test sees training learn
CFG = TrainConfig(window_bins=8, batch_size=32, max_epochs=15, lr=5e-3, warmup_steps=5, linear_init=False,
                  patience=5)
ENC = EncoderConfig(n_units=40, n_patches=8, dim=12, window_bins=8, d_model=16, n_heads=2, n_latents=4, depth=1)


def _cos(a, b):
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).mean())


@pytest.mark.slow
def test_training_is_deterministic_and_learns():
    binned, targets = synthetic()
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    a = train_encoder(binned, targets, split, config=CFG, encoder=ENC, seed=1, progress=False)
    b = train_encoder(binned, targets, split, config=CFG, encoder=ENC, seed=1, progress=False)
    c = train_encoder(binned, targets, split, config=CFG, encoder=ENC, seed=2, progress=False)
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["latents"], sc["latents"])
    # history[0] is the starting point (step 0); the first trained validation must be beaten
    assert a.history[0]["step"] == 0 and len(a.history) >= 6
    assert a.history[-1]["val_loss"] < a.history[1]["val_loss"]
    assert a.best_step == min(a.history, key=lambda h: h["val_loss"])["step"]
    pred = predict(a, binned, split.test, unit_idx=np.arange(40))
    y = targets[binned.frame[split.test]]
    assert pred.shape == (60, 8, 12) and pred.dtype == np.float32
    shuffled = y[np.random.default_rng(0).permutation(len(y))]
    assert _cos(pred, y) > _cos(pred, shuffled) + 0.1
    np.testing.assert_array_equal(a.unit_ids, np.arange(40) + 100)


def test_linear_path_starts_at_the_ridge_solution():
    binned, targets = synthetic()
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    cfg = TrainConfig(window_bins=8, batch_size=32, max_epochs=1, lr=1e-6, warmup_steps=1, mse_weight=1.0,
                      cos_weight=0.0, infonce_weight=0.0)
    ridge = train_encoder(binned, targets, split, config=cfg, encoder=ENC, seed=0, progress=False)
    scratch = train_encoder(binned, targets, split, config=dataclasses.replace(cfg, linear_init=False),
                            encoder=ENC, seed=0, progress=False)
    # validation MSE at step 0: closed-form start vs the untrained encoder (the training mean)
    assert ridge.history[0]["val_loss"] < 0.6 * scratch.history[0]["val_loss"]
    assert ridge.model.lin_weight.abs().sum() > 100 * scratch.model.lin_weight.abs().sum()
    pred = predict(ridge, binned, split.test)
    y = targets[binned.frame[split.test]]
    assert _cos(pred, y) > _cos(pred, y[np.random.default_rng(0).permutation(len(y))]) + 0.1
    # a subset decodes, through the same path, and stays finite
    sub = predict(ridge, binned, split.test, unit_idx=np.arange(3))
    assert np.isfinite(sub).all()


@pytest.mark.slow
def test_predict_maps_columns_by_unit_id_and_accepts_subsets():
    binned, targets = synthetic()
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    tr = train_encoder(binned, targets, split, config=CFG, encoder=ENC, seed=0, progress=False)
    sub = predict(tr, binned, split.test[:10], unit_idx=np.array([3, 17, 30]))
    # the same units in another column order of another Binned object give the same answer
    order = np.array([30, 3, 17] + [i for i in range(40) if i not in (3, 17, 30)])
    perm = Binned(counts=binned.counts[:, order], frame=binned.frame, repeat=binned.repeat,
                  bins_per_frame=4, unit_ids=binned.unit_ids[order])
    sub2 = predict(tr, perm, split.test[:10], unit_idx=np.array([0, 1, 2]))
    np.testing.assert_allclose(sub, sub2, atol=1e-5)
    single = predict(tr, binned, split.test[:10], unit_idx=np.array([5]))
    assert single.shape == (10, 8, 12) and np.isfinite(single).all()
    alien = Binned(counts=binned.counts, frame=binned.frame, repeat=binned.repeat, bins_per_frame=4,
                   unit_ids=binned.unit_ids + 1000)
    with pytest.raises(NeurratorError, match="unit id 1100"):
        predict(tr, alien, split.test[:2], unit_idx=np.array([0]))
    with pytest.raises(ValueError, match="empty"):
        predict(tr, binned, split.test[:2], unit_idx=np.array([], dtype=np.int64))


def test_holdout_frames_never_reach_training_and_offset_changes_windows():
    binned, targets = synthetic()
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    cfg = TrainConfig(window_bins=8, batch_size=32, max_epochs=1, warmup_steps=1, offset_bins=4)
    tr = train_encoder(binned, targets, split, config=cfg, encoder=ENC, seed=0, progress=False,
                       holdout_frames=np.arange(20, 30))
    np.testing.assert_array_equal(tr.holdout_frames, np.arange(20, 30))
    # target statistics come from training frames only: held-out targets changed -> same model
    t2 = targets.copy()
    t2[20:30] += 5.0
    tr2 = train_encoder(binned, t2, split, config=cfg, encoder=ENC, seed=0, progress=False,
                        holdout_frames=np.arange(20, 30))
    assert [k for k, v in tr.model.state_dict().items() if not torch.equal(v, tr2.model.state_dict()[k])] == []
    centred = train_encoder(binned, targets, split, config=TrainConfig(window_bins=8, batch_size=32, max_epochs=1,
                            warmup_steps=1), encoder=ENC, seed=0, progress=False, holdout_frames=np.arange(20, 30))
    assert not torch.equal(centred.model.state_dict()["temporal.weight"], tr.model.state_dict()["temporal.weight"])


def test_infonce_pca_and_mismatch_validation():
    binned, targets = synthetic()
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    cfg = TrainConfig(window_bins=8, batch_size=32, max_epochs=1, warmup_steps=1, infonce_weight=0.5, pca_components=4)
    tr = train_encoder(binned, targets, split, config=cfg, seed=0, progress=False)
    assert tr.encoder_config.out_components == 4 and tr.encoder_config.d_model == 128
    assert predict(tr, binned, split.test[:3]).shape == (3, 8, 12)
    with pytest.raises(ValueError, match="does not match the data"):
        train_encoder(binned, targets, split, config=TrainConfig(window_bins=10), encoder=ENC, progress=False)
    with pytest.raises(ValueError):
        TrainConfig(max_units=0)
    with pytest.raises(ValueError):
        TrainConfig(precision="float16")


def test_learning_rate_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [_lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.1, abs=1e-3)
