"""SpikeEncoder: any unit subset, order-free, padding, pooled sessions, config validation."""

from __future__ import annotations

import pytest
import torch

from neurrator.models.encoder import EncoderConfig, SpikeEncoder

torch.set_num_threads(1)


@pytest.fixture
def enc():
    torch.manual_seed(0)
    m = SpikeEncoder(config=EncoderConfig(n_units=30, n_patches=6, dim=10, window_bins=5, d_model=16,
                                          n_heads=2, n_latents=4, depth=1)).eval()
    with torch.no_grad():  # non-trivial unit embeddings and stats so the tests can fail
        m.unit_emb.weight.normal_()
        m.head.weight.normal_()  # the head starts at zero (predicting the mean); give it weights
        m.lin_weight.normal_()  # so does the linear path
        m.set_linear_basis(torch.linalg.qr(torch.randn(60, 8))[0].T, torch.rand(8) + 0.5)
        m.set_linear_stats(torch.rand(30, 2), torch.rand(30, 2) + 0.5)
        m.set_unit_stats(torch.rand(30), torch.rand(30) + 0.5)
        m.set_target_stats(torch.randn(6, 10), torch.rand(10) + 0.5)
    return m


def test_permuting_units_gives_the_same_output(enc):
    x = torch.poisson(torch.full((3, 5, 12), 2.0))
    idx = torch.randperm(30)[:12]
    perm = torch.randperm(12)
    with torch.no_grad():
        a = enc(x, idx)
        b = enc(x[:, :, perm], idx[perm])
        c = enc(x, idx[perm])  # same counts, other identities -> different output
    assert a.shape == (3, 6, 10)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (a - c).abs().max() > 1e-3


def test_untrained_encoder_predicts_the_target_mean():
    m = SpikeEncoder(config=EncoderConfig(n_units=5, n_patches=3, dim=4, window_bins=2, d_model=8, n_heads=2))
    mean = torch.randn(3, 4)
    m.set_target_stats(mean, torch.ones(4))
    out = m(torch.rand(2, 2, 5), torch.arange(5))
    torch.testing.assert_close(out, mean.expand(2, 3, 4))


def test_any_subset_size_runs_and_padding_is_ignored(enc):
    for n in (1, 2, 7, 30):
        out = enc(torch.ones(2, 5, n), torch.arange(n))
        assert out.shape == (2, 6, 10) and torch.isfinite(out).all()
    x = torch.poisson(torch.full((2, 5, 4), 1.5))
    idx = torch.tensor([[1, 5, 9, 0], [2, 3, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    with torch.no_grad():
        padded = enc(x, idx, mask)
        first = enc(x[:1, :, :3], idx[0, :3])
        second = enc(x[1:, :, :2], idx[1, :2])
    torch.testing.assert_close(padded[0], first[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[1], second[0], atol=1e-5, rtol=1e-5)


def test_session_tags_change_the_unit_tokens():
    torch.manual_seed(0)
    m = SpikeEncoder(config=EncoderConfig(n_units=8, n_patches=2, dim=4, window_bins=3, d_model=8, n_heads=2,
                                          n_sessions=2)).eval()
    with torch.no_grad():
        m.session_emb.weight.normal_()
        m.head.weight.normal_()
    x = torch.rand(1, 3, 8)
    with torch.no_grad():
        a = m(x, torch.arange(8))
        m.set_unit_sessions(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
        b = m(x, torch.arange(8))
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(ValueError):
        m.set_unit_sessions(torch.full((8,), 2))


def test_output_basis_expands_coefficients_to_full_tokens():
    torch.manual_seed(0)
    m = SpikeEncoder(config=EncoderConfig(n_units=4, n_patches=3, dim=6, window_bins=2, d_model=8, n_heads=2,
                                          out_components=2)).eval()
    basis = torch.zeros(2, 6)
    basis[0, 0] = basis[1, 5] = 1.0
    m.set_output_basis(basis, torch.ones(2))
    with torch.no_grad():
        m.head.weight.normal_()
    out = m(torch.rand(2, 2, 4), torch.arange(4))
    assert out.shape == (2, 3, 6)
    assert out[..., 1:5].abs().max() == 0  # only the two basis directions (target_mean is zero)
    assert out[..., 0].abs().max() > 0


@pytest.mark.parametrize("bad", [dict(n_units=0), dict(n_heads=3), dict(dropout=1.0), dict(depth=-1),
                                 dict(out_components=11)])
def test_config_validation(bad):
    kw = dict(n_units=4, n_patches=2, dim=10, d_model=8, n_heads=2) | bad
    with pytest.raises(ValueError):
        EncoderConfig(**kw)


def test_wrong_window_or_unit_count_raises(enc):
    with pytest.raises(ValueError, match="bins per window"):
        enc(torch.ones(1, 4, 3), torch.arange(3))
    with pytest.raises(ValueError, match="unit_idx"):
        enc(torch.ones(1, 5, 3), torch.arange(4))


def test_linear_rank_is_capped_so_the_stored_basis_stays_small():
    from neurrator.component_config import MAX_LINEAR_BASIS_BYTES, linear_rank_for

    real = linear_rank_for(256, n_patches=576, dim=1024, n_frames=900)
    assert real == 64 and real * 576 * 1024 * 4 <= MAX_LINEAR_BASIS_BYTES < 80 * 576 * 1024 * 4
    assert linear_rank_for(256, n_patches=16, dim=64, n_frames=120) == 120  # the frames bound it first
    assert linear_rank_for(32, n_patches=576, dim=1024, n_frames=900) == 32  # a smaller request is kept
    assert linear_rank_for(256, n_patches=5000, dim=4096, n_frames=900) == 16  # never below 16
    assert linear_rank_for(0, n_patches=576, dim=1024, n_frames=900) == 0  # no linear path stays none
