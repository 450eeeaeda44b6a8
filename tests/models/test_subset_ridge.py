"""Native subset decoding (the linear path's kept Gram matrix) and the validation-chosen output blend (issue 28)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from _helpers import driven_session
from neurrator.data.splits import split_repeats
from neurrator.models.encoder import EncoderConfig
from neurrator.models.training import TrainConfig, train_encoder

torch.set_num_threads(1)
F, R, N = 24, 5, 10


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    binned, drive = driven_session(F, R, N, 0.8, rng)
    targets = (drive @ rng.normal(size=(N, 16 * 8))).reshape(F, 16, 8).astype(np.float32)
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    return binned, targets, split


def _train(binned, targets, split, **enc_kw):
    enc = EncoderConfig(n_units=binned.n_units, n_patches=16, dim=8, window_bins=20, d_model=16, n_heads=2,
                        n_latents=4, depth=1, **enc_kw)
    return train_encoder(binned, targets, split, config=TrainConfig(max_epochs=1, batch_size=32), encoder=enc,
                         seed=0, progress=False)


def test_subset_statistics_are_those_of_a_retraining(data):
    binned, targets, split = data
    full = _train(binned, targets, split)
    cols = np.array([1, 4, 5, 8])
    sub = _train(dataclasses.replace(binned, counts=binned.counts[:, cols], unit_ids=binned.unit_ids[cols]),
                 targets, split)
    T = full.model.lin_mean.shape[1]
    idx = (torch.from_numpy(cols)[:, None] * T + torch.arange(T)).reshape(-1)
    g_full = full.model.lin_gram[idx][:, idx]
    torch.testing.assert_close(g_full, sub.model.lin_gram, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(full.model.lin_xty[idx], sub.model.lin_xty, rtol=1e-4, atol=1e-3)
    # the subset's weights solve its own ridge normal equations
    w = full.model._subset_weights(torch.from_numpy(cols))
    lhs = (g_full.double() + float(full.model.lin_alpha) * torch.eye(len(idx), dtype=torch.float64)) @ w.double()
    torch.testing.assert_close(lhs, full.model.lin_xty[idx].double(), rtol=1e-3, atol=1e-2)


def test_old_path_without_gram(data):
    binned, targets, split = data
    tr = _train(binned, targets, split, subset_ridge=0, blend=False)
    assert not tr.model.has_subset_ridge and "blend" not in tr.extra


def test_blend_never_below_ridge_on_validation(data):
    binned, targets, split = data
    tr = _train(binned, targets, split)
    b = tr.extra["blend"]
    assert b["centred_patch_cosine"] >= b["ridge"][0] - 1e-6
    assert b["identification"] >= b["ridge"][1] - 1e-6
    assert tr.encoder_config.bank_frames == F and tr.model.bank.shape == (F, 16, 8)
    m = tr.model
    x = torch.from_numpy(binned.counts[:80].astype(np.float32)).view(4, 20, N)
    units = torch.arange(N)
    y = m.blend_output(torch.zeros(4, 16, 8), x, units, beta=0.0, gamma=0.0, knn_w=0.0)
    torch.testing.assert_close(y, m.ridge_tokens(x, units))  # beta 0: the closed-form ridge itself


def test_blend_grid_equals_scoring_each_output(data):
    from neurrator.models.readout import _grid, _scores

    binned, targets, split = data
    m = _train(binned, targets, split).model
    x = torch.from_numpy(binned.counts[: 24 * 20].astype(np.float32)).view(24, 20, N)
    units = torch.arange(N)
    frame = torch.arange(24)
    T = torch.from_numpy(targets)
    with torch.no_grad():
        y = m(x, units, blend=False)
    grid = _grid(y, m.ridge_tokens(x, units), frame, T, m.target_mean, m.bank, (0.0, 0.5, 1.0))
    for beta, gamma, tau in ((0.0, 0.0, 0.001), (0.5, 0.5, 0.003), (1.0, 1.0, 0.03), (0.5, 1.0, 0.01)):
        direct = _scores(m.blend_output(y, x, units, beta=beta, gamma=gamma, tau=tau, knn_w=0.0), frame, T,
                         m.target_mean)
        assert grid[(beta, gamma, tau)] == pytest.approx(direct, abs=1e-4)


def test_soft_retrieval_reuses_its_bank_until_the_bank_changes(data):
    """The centred, normalised retrieval bank is computed once per state of ``bank`` and ``target_mean``
    (speed); a changed bank (a loaded checkpoint, an in-place copy) is never served stale."""
    import torch.nn.functional as F

    binned, targets, split = data
    m = _train(binned, targets, split).model
    x = torch.from_numpy(binned.counts[:80].astype(np.float32)).view(4, 20, N)
    units, y0 = torch.arange(N), torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(0))

    def by_hand():
        bank = (m.bank - m.target_mean).flatten(1)
        sim = F.normalize((y0 - m.target_mean).flatten(1), dim=1) @ F.normalize(bank, dim=1).T
        return (torch.softmax(sim / 0.01, dim=1) @ bank).view_as(y0) + m.target_mean

    for _ in range(2):  # computed, then served from the cache
        torch.testing.assert_close(m.blend_output(y0, x, units, beta=1.0, gamma=1.0, tau=0.01, knn_w=0.0), by_hand())
    with torch.no_grad():
        m.bank.mul_(-1.0)  # in place: same storage, new version
    torch.testing.assert_close(m.blend_output(y0, x, units, beta=1.0, gamma=1.0, tau=0.01, knn_w=0.0), by_hand())


@pytest.fixture(scope="module")
def wide():
    """40 units: the per-size blend table has distinct rows for 10, 30 and all units."""
    rng = np.random.default_rng(1)
    n = 40
    binned, drive = driven_session(F, R, n, 0.5, rng)
    targets = (drive @ rng.normal(size=(n, 16 * 8)) / 4).reshape(F, 16, 8).astype(np.float32)
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    return binned, targets, split, _train(binned, targets, split, window_knn=True)


def test_window_knn_votes_with_the_nearest_training_windows_on_the_units_given(wide):
    """`window_knn` on a subset = by hand: log1p of the windows' 4-bin sums, z-scored with the training
    windows' statistics of those units only, cosine to every training window, mean map of the k nearest."""
    from neurrator.decode.baselines import window_features

    binned, targets, split, tr = wide
    m = tr.model
    assert m.has_window_bank and m.win_counts.shape == (len(split.train), 40, 5)
    cols = np.array([1, 4, 7, 20, 33])
    te = np.asarray(split.test)
    feats = lambda idx: window_features(binned, idx, window_bins=20, temporal_pool=4, unit_idx=cols).reshape(
        len(idx), 5, len(cols)).transpose(0, 2, 1)  # (P, n, T)
    mu, sd = m.lin_mean[cols].numpy(), m.lin_std[cols].numpy()
    z = lambda f: (f - mu) / sd
    q, keys = z(feats(te)).reshape(len(te), -1), z(feats(np.asarray(split.train))).reshape(len(split.train), -1)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (keys / np.linalg.norm(keys, axis=1, keepdims=True)).T
    near = np.argsort(-cos, axis=1)[:, :3]
    expected = targets[binned.frame[np.asarray(split.train)][near]].mean(1)
    from neurrator.models.training import _DeviceData

    d = _DeviceData(binned.counts, binned.frame, binned.repeat, 4, targets, window_bins=20, offset_bins=0,
                    device=torch.device("cpu"))
    sub = torch.from_numpy(cols)
    got = m.window_knn(d.windows(torch.from_numpy(te), sub), sub, 3)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_each_subset_size_decodes_through_its_own_blend(wide):
    binned, targets, split, tr = wide
    m = tr.model
    by_size = tr.extra["blend"]["by_size"]
    assert set(by_size) == {"10", "30", "40"}
    for choice in by_size.values():  # every per-size choice keeps at least ridge's validation cosine
        assert choice["centred_patch_cosine"] >= choice["ridge"][0] - 1e-6
    assert [m.blend_row(n) for n in (1, 10, 17, 18, 30, 34, 35, 40)] == [0, 0, 0, 1, 1, 1, 2, 2]
    x = torch.from_numpy(np.asarray(binned.counts)[:80].astype(np.float32)).view(4, 20, 40)
    sub = torch.arange(0, 40, 4)  # 10 units: row 0
    beta, gamma, tau, k, w = (float(v) for v in m.blend_table[0, 1:])
    raw = m(x[..., sub], sub, blend=False)
    want = m.blend_output(raw, x[..., sub], sub, beta=beta, gamma=gamma, tau=tau, knn_k=int(k), knn_w=w)
    torch.testing.assert_close(m(x[..., sub], sub), want)
    assert (beta, gamma, tau, int(k), w) == pytest.approx(tuple(by_size["10"][key] for key in
                                                                ("beta", "gamma", "tau", "knn_k", "knn_w")))


def test_blends_that_ignore_the_encoder_output_skip_it_with_the_same_numbers(wide):
    """A pure kNN row (share 1) or a ridge-only row (beta 0) never reads the attention path's output, so
    `forward` skips it; the result must equal the full blend of the raw output exactly."""
    binned, targets, split, tr = wide
    m = tr.model
    x = torch.from_numpy(np.asarray(binned.counts)[:80].astype(np.float32)).view(4, 20, 40)
    sub = torch.arange(0, 40, 4)
    saved = m.blend_table.clone()
    try:
        for beta, gamma, k, w in ((0.5, 0.5, 5, 1.0), (0.0, 0.5, 5, 0.5), (0.0, 0.0, 0, 0.0), (0.25, 0.5, 5, 0.5)):
            m.blend_table[0, 1:] = torch.tensor([beta, gamma, 0.01, k, w])
            want = m.blend_output(m(x[..., sub], sub, blend=False), x[..., sub], sub)
            torch.testing.assert_close(m(x[..., sub], sub), want, rtol=0, atol=0)
    finally:
        m.blend_table.copy_(saved)


def test_without_window_knn_the_blend_is_one_choice_for_every_subset(data):
    binned, targets, split = data
    tr = _train(binned, targets, split, window_knn=False)
    assert not tr.model.has_window_bank and tr.encoder_config.window_bank == 0
    assert "by_size" not in tr.extra["blend"] and tr.extra["blend"]["knn_w"] == 0.0


def test_mixed_scores_from_inner_products_equal_scoring_each_mixture():
    """`_mix` (the blend grid's and the kNN stage's shortcut) = `_scores` of every mixture computed in full."""
    import torch.nn.functional as F

    from neurrator.models.readout import _mix, _scores

    g = torch.Generator().manual_seed(5)
    targets, mean = torch.randn(30, 6, 4, generator=g), torch.randn(6, 4, generator=g)
    frame = torch.randint(0, 30, (50,), generator=g)
    a = targets[frame] + 0.8 * torch.randn(50, 6, 4, generator=g)  # two noisy predictions of the frames
    b = targets[frame] + 1.5 * torch.randn(50, 6, 4, generator=g)
    cand = F.normalize((targets - mean).flatten(1), dim=1)
    t = targets[frame] - mean
    ac, bc = a - mean, b - mean
    got = _mix(ac, bc, t, (t * t).sum(-1), ac.flatten(1) @ cand.T, bc.flatten(1) @ cand.T, frame, (0.0, 0.3, 0.75, 1.0))
    for s, sc in got.items():
        assert sc == pytest.approx(_scores((1 - s) * a + s * b, frame, targets, mean), abs=1e-5)
    assert len({v for v in got.values()}) > 1  # the shares give different scores: the comparison has teeth
