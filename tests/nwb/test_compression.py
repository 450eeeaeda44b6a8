"""neurrator.nwb.compression: PCA basis, encoder-readout basis, coefficients and measured error (issue 10.1)."""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.nwb.compression import (
    compress_windows,
    encoder_readout_basis,
    fit_pca_basis,
    reconstruct,
    reconstruction_error,
)
from neurrator.errors import NeurratorError


def _low_rank(n=12, p=3, d=5, r=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, r)) @ rng.standard_normal((r, p * d)) + rng.standard_normal(p * d)
    return x.reshape(n, p, d).astype(np.float32)


def test_hand_computed_one_component():
    x = np.array([[[0.0, 0.0]], [[2.0, 2.0]]], np.float32)  # 2 windows, 1 patch, dim 2
    comps, mean = fit_pca_basis(x, rank=1)
    np.testing.assert_allclose(mean, [[1.0, 1.0]])
    np.testing.assert_allclose(comps, [[[2 ** -0.5, 2 ** -0.5]]], rtol=1e-6)  # sign: largest entry positive
    packed = compress_windows(x, components=comps, mean=mean)
    np.testing.assert_allclose(packed.coefficients[:, 0], [-(2 ** 0.5), 2 ** 0.5], rtol=1e-6)
    np.testing.assert_allclose(packed.relative_mse, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(reconstruct(packed.coefficients, components=comps, mean=mean), x, atol=1e-6)


def test_pca_of_low_rank_windows_is_lossless_and_orthonormal():
    x = _low_rank(r=2)
    comps, mean = fit_pca_basis(x, rank=2)
    flat = comps.reshape(2, -1).astype(np.float64)
    np.testing.assert_allclose(flat @ flat.T, np.eye(2), atol=1e-5)
    packed = compress_windows(x, components=comps, mean=mean)
    assert packed.coefficients.dtype == np.float32 and packed.coefficients.shape == (12, 2)
    assert packed.relative_mse.max() < 1e-10 and packed.cosine.min() > 1 - 1e-10


def test_lossy_rank_reports_the_error_it_makes():
    x = _low_rank(r=4, seed=1)
    comps, mean = fit_pca_basis(x, rank=2)
    packed = compress_windows(x, components=comps, mean=mean)
    recon = reconstruct(packed.coefficients, components=comps, mean=mean)
    flat, m = x.reshape(12, -1).astype(np.float64), mean.reshape(-1)
    expected = ((recon.reshape(12, -1) - flat) ** 2).sum(1) / ((flat - m) ** 2).sum(1)
    np.testing.assert_allclose(packed.relative_mse, expected, rtol=1e-5)
    assert 0.0 < packed.relative_mse.mean() < 1.0
    # total error = the variance outside the top 2 components (PCA optimality, hand-checkable via SVD)
    s = np.linalg.svd(flat - flat.mean(0), compute_uv=False)
    np.testing.assert_allclose(((recon.reshape(12, -1) - flat) ** 2).sum(), (s[2:] ** 2).sum(), rtol=1e-4)


def test_non_orthonormal_basis_recovers_the_coefficients():
    rng = np.random.default_rng(2)
    comps = rng.standard_normal((3, 4, 6)).astype(np.float32)
    mean = rng.standard_normal((4, 6)).astype(np.float32)
    coef = rng.standard_normal((7, 3)).astype(np.float32)
    x = reconstruct(coef, components=comps, mean=mean)
    packed = compress_windows(x, components=comps, mean=mean, batch=2)
    np.testing.assert_allclose(packed.coefficients, coef, atol=1e-4)
    assert packed.relative_mse.max() < 1e-9


def test_encoder_readout_basis_matches_the_encoder_formula():
    rng = np.random.default_rng(3)
    k, p, d = 3, 4, 5
    lin_basis = np.vstack([rng.standard_normal((k, p * d)), np.zeros((1, p * d))])  # one unused row
    lin_scale = np.array([2.0, 0.5, 1.5, 1.0])
    tmean, tstd = rng.standard_normal((p, d)), rng.uniform(0.5, 2, d)
    comps, mean = encoder_readout_basis(lin_basis, lin_scale, tmean, tstd)
    assert comps.shape == (k, p, d) and comps.dtype == np.float32
    c = rng.standard_normal((2, k))
    encoder_out = tmean + tstd * ((c * lin_scale[:k]) @ lin_basis[:k]).reshape(2, p, d)
    np.testing.assert_allclose(reconstruct(c, components=comps, mean=mean), encoder_out, rtol=1e-4, atol=1e-4)


def test_error_metric_edge_cases():
    rel, cos = reconstruction_error(np.ones((1, 3)), np.ones((1, 3)), mean=np.ones(3))
    assert np.isnan(rel[0]) and cos[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fit_pca_basis(np.zeros((4, 2, 2), np.float16), rank=1), "float16"),
        (lambda: fit_pca_basis(np.zeros((4, 2, 2), np.float32), rank=4), "rank must be"),
        (lambda: compress_windows(np.zeros((2, 3), np.float32), components=np.zeros((1, 4)), mean=np.zeros(4)),
         "features"),
        (lambda: compress_windows(np.zeros((2, 2), np.float32), components=np.ones((2, 2)), mean=np.zeros(2)),
         "linearly dependent"),
    ],
)
def test_bad_input_is_one_line_error(call, message):
    with pytest.raises(NeurratorError, match=message):
        call()


def test_compact_predictions_round_trip_through_nwb(tmp_path):
    """compress -> ndx PatchPredictions (compact) -> file -> pynwb read; reconstruction within the stored error."""
    import ndx_neurrator as ndx
    from ndx_neurrator.testing import mock_EncoderCheckpoint, mock_NWBFile, mock_UnitSubsetsTable, mock_Units
    from pynwb import NWBHDF5IO

    nwbfile = mock_NWBFile()
    mock_Units(nwbfile=nwbfile)
    subsets = mock_UnitSubsetsTable(nwbfile=nwbfile)
    enc = mock_EncoderCheckpoint(nwbfile=nwbfile)
    x = _low_rank(n=9, p=4, d=8, r=3, seed=4) + np.float32(0.01) * np.random.default_rng(5).standard_normal(
        (9, 4, 8)).astype(np.float32)
    comps, mean = fit_pca_basis(x, rank=3)
    packed = compress_windows(x, components=comps, mean=mean)
    module = ndx.get_neurrator_module(nwbfile)
    basis = ndx.create_patch_basis(comps, mean=mean, name="patch_basis", kind="pca")
    module.add(basis)
    module.add(ndx.create_patch_predictions(
        name="predictions", timestamps=np.arange(9) / 30, frame=np.arange(9), unit_subsets=subsets,
        unit_subset_rows=0, encoder=enc, coefficients=packed.coefficients, basis=basis,
        relative_mse=packed.relative_mse, cosine=packed.cosine, full_windows=[4], full_data=x[[4]],
    ))
    with NWBHDF5IO(tmp_path / "c.nwb", "w") as io:
        io.write(nwbfile)
    with NWBHDF5IO(tmp_path / "c.nwb", "r") as io:
        p = io.read().processing["neurrator"]["predictions"]
        got = p.get_windows()
        np.testing.assert_array_equal(got[4], x[4])  # kept exactly
        _, cos = reconstruction_error(x, p.get_windows(exact=False), mean=mean)
        np.testing.assert_allclose(cos, p.cosine[:], rtol=1e-6)
        assert 0 < p.relative_mse[:].max() < 0.05


def test_orthogonal_rows_of_very_different_scale_are_not_called_dependent():
    """An encoder readout folds coefficient scales into its rows (here 1 to 1e-7): orthogonal rows whose
    raw Gram matrix is ill-conditioned still give exact coefficients (a flashed-image run hit this)."""
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((24, 4)))
    comps = (q.T * np.array([1.0, 1e-2, 1e-5, 1e-7])[:, None]).reshape(4, 4, 6).astype(np.float32)
    mean = np.zeros((4, 6), np.float32)
    coef = rng.standard_normal((3, 4)).astype(np.float32)
    x = reconstruct(coef, components=comps, mean=mean)
    packed = compress_windows(x, components=comps, mean=mean)
    np.testing.assert_allclose(reconstruct(packed.coefficients, components=comps, mean=mean), x, atol=1e-6)
    assert packed.relative_mse.max() < 1e-9
