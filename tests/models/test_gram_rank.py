"""Subset ridge at real sizes (issue 28): when the linear path's Gram matrix exceeds ``subset_ridge`` features
(2,000 units x 5 pooled bins = 10,000 features, 400 MB), the encoder keeps it factored (top eigenvectors plus
each unit's exact residual block) and solves a subset's ridge through the Woodbury identity. Forced here on
small data by lowering ``subset_ridge``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from _helpers import driven_session
from neurrator.data.splits import split_repeats
from neurrator.errors import NeurratorError
from neurrator.models.backbones import load_backbone
from neurrator.models.encoder import EncoderConfig
from neurrator.models.subset_ridge import MAX_GRAM_RANK, factor_gram, gram_rank_plan, subset_weights
from neurrator.models.training import TrainConfig, train_encoder

torch.set_num_threads(1)
NF, R, N, T = 24, 5, 12, 5
SPEC = dataclasses.replace(load_backbone("tiny").spec, n_patches=16, dim=8)  # what the checkpoint must name


def _features(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = (torch.randn(n, 3, generator=g, dtype=torch.float64) @ torch.randn(3, d, generator=g, dtype=torch.float64)
         + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64))
    return (X - X.mean(0)) / X.std(0)


def test_plan_keeps_the_full_gram_when_it_fits_and_the_same_bytes_otherwise():
    assert gram_rank_plan(4096, 16_200, 4096) == 0 and gram_rank_plan(10_000, 16_200, 0) == 0
    assert gram_rank_plan(10_000, 16_200, 4096) == MAX_GRAM_RANK  # 4096^2 / 10,000 = 1,677 floats per row
    assert gram_rank_plan(60_000, 16_200, 4096) == 4096 * 4096 // 60_000  # bytes bind: 279
    assert gram_rank_plan(10_000, 300, 4096) == 300  # no more eigenvectors than windows


@pytest.mark.parametrize("n", [300, 40])  # eigenvectors of X'X (features <= windows), of XX' (more features)
def test_full_rank_factoring_is_the_exact_ridge_and_one_unit_is_exact_at_any_rank(n):
    X = _features(n, N * T)
    Y = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = N * T
    eig = torch.linalg.eigh(X.T @ X) if d <= n else torch.linalg.eigh(X @ X.T)
    G, xty = (X.T @ X).float(), (X.T @ Y).float()
    whole = subset_weights(torch.arange(N), T, xty, 10.0, G)  # the all-unit ridge training hands over
    fact = lambda r: factor_gram(X, T, r, eig, whole)  # noqa: E731
    units = torch.tensor([0, 3, 4, 9, 11])
    exact = subset_weights(units, T, xty, 10.0, G)
    full = subset_weights(units, T, xty, 10.0, fact(d))
    torch.testing.assert_close(full, exact, rtol=1e-4, atol=1e-5)
    # the exact ridge solves the subset's own normal equations
    idx = (units[:, None] * T + torch.arange(T)).reshape(-1)
    lhs = (G[idx][:, idx].double() + 10.0 * torch.eye(len(idx), dtype=torch.float64)) @ exact.double()
    torch.testing.assert_close(lhs, xty[idx].double(), rtol=1e-4, atol=1e-3)
    # a unit's own block is kept exactly, so a one-unit subset is exact at any rank
    for r in (1, 3):
        one = subset_weights(torch.tensor([7]), T, xty, 10.0, fact(r))
        torch.testing.assert_close(one, subset_weights(torch.tensor([7]), T, xty, 10.0, G), rtol=1e-4, atol=1e-5)
    # dropping components costs accuracy but stays a ridge-like solution (not the all-unit weights)
    low = subset_weights(units, T, xty, 10.0, fact(4))
    err = float((low - exact).norm() / exact.norm())
    assert 1e-4 < err < 0.5, err
    # all units (in any order) keep their exact ridge at any rank: the blend's floor is the true ridge's
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(subset_weights(perm, T, xty, 10.0, fact(4)), subset_weights(perm, T, xty, 10.0, G),
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    binned, drive = driven_session(NF, R, N, 0.6, rng)
    targets = (drive @ rng.normal(size=(N, 16 * 8))).reshape(NF, 16, 8).astype(np.float32)
    return binned, targets, split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)


def _train(data, subset_ridge: int):
    binned, targets, split = data
    enc = EncoderConfig(n_units=N, n_patches=16, dim=8, window_bins=20, d_model=16, n_heads=2, n_latents=4, depth=1,
                        subset_ridge=subset_ridge)
    return train_encoder(binned, targets, split, config=TrainConfig(max_epochs=1, batch_size=32), encoder=enc,
                         seed=0, progress=False, target_spec=SPEC)


@pytest.fixture(scope="module")
def pair(data):
    """The same training with the full Gram (60 features fit 4,096) and forced to factor it (cap 20
    features: 20^2 / 60 = 6 eigenvectors of 60)."""
    return _train(data, 4096), _train(data, 20)


def test_training_factors_the_gram_when_it_does_not_fit(pair, data):
    full, fact = pair
    assert full.encoder_config.gram_rank == 0 and hasattr(full.model, "lin_gram")
    assert fact.encoder_config.gram_rank == 6 and not hasattr(fact.model, "lin_gram")
    m = fact.model
    assert m.has_subset_ridge and m.lin_gvec.shape == (N * T, 6) and m.lin_gblock.shape == (N, T, T)
    # the factored Gram's unit blocks are the full Gram's (the same features, the same ridge penalty)
    assert float(m.lin_alpha) == float(full.model.lin_alpha)
    V, s = m.lin_gvec.double(), m.lin_gval.double()
    approx = (V * s) @ V.T
    for u in (0, 5, 11):
        sl = slice(u * T, (u + 1) * T)
        torch.testing.assert_close(approx[sl, sl] + m.lin_gblock[u].double(), full.model.lin_gram[sl, sl].double(),
                                   rtol=1e-4, atol=1e-3)
    # subsets decode through their (near-exact) ridge: closer to the exact subset ridge than the rescaled
    # all-unit weights are
    binned, _, _ = data
    x = torch.from_numpy(binned.counts[:400].astype(np.float32)).view(20, 20, N)
    sub = torch.tensor([0, 2, 3, 7, 10])
    with torch.no_grad():
        exact = full.model.ridge_tokens(x[..., sub], sub)
        near = m.ridge_tokens(x[..., sub], sub)
        rescaled = m._linear(x[..., sub], sub, torch.ones(20, len(sub), dtype=torch.bool)) * m.target_std + m.target_mean
    assert float((near - exact).norm()) < 0.75 * float((rescaled - exact).norm())  # 0.58 here
    # all units keep the exact ridge (what the blend's floor on all units is measured against)
    with torch.no_grad():
        allu = torch.arange(N)
        torch.testing.assert_close(m.ridge_tokens(x, allu), full.model.ridge_tokens(x, allu), rtol=1e-4, atol=1e-4)


def test_factored_gram_survives_a_checkpoint_and_a_bad_rank_is_refused(pair, data, tmp_path):
    from neurrator.models.checkpoint import load_checkpoint, save_checkpoint

    _, fact = pair
    binned, _, _ = data
    x = torch.from_numpy(binned.counts[:160].astype(np.float32)).view(8, 20, N)
    folder = save_checkpoint(fact, tmp_path / "ckpt")
    back = load_checkpoint(folder)
    assert back.encoder_config.gram_rank == 6
    with torch.no_grad():
        for sub in (torch.arange(N), torch.arange(0, N, 3)):
            torch.testing.assert_close(back.model(x[..., sub], sub), fact.model(x[..., sub], sub), rtol=0, atol=0)
    config = json.loads((folder / "config.json").read_text())
    for rank, words in ((N * T + 1, "gram_rank must be in"), (4, "lin_gv")):
        config["encoder"]["gram_rank"] = rank
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(NeurratorError) as ei:
            load_checkpoint(folder)
        msg = str(ei.value)
        assert msg.startswith(str(folder)) and words in msg and "\n" not in msg, msg
