"""Targets: once per unique frame, cached by content + backbone + preprocessing; PCA round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurrator.models.backbones import load_backbone
from neurrator.models.targets import compute_targets, fit_pca, frames_hash, from_pca, to_pca

torch.set_num_threads(1)


class CountingBackbone:
    """Wraps a backbone and counts the frames it embeds."""

    def __init__(self, inner):
        self.inner, self.spec, self.calls, self.frames = inner, inner.spec, 0, 0

    def embed(self, images):
        self.calls += 1
        self.frames += len(images)
        return self.inner.embed(images)

    def to(self, device):
        self.inner.to(device)
        return self


@pytest.fixture
def frames():
    f = np.random.default_rng(0).integers(0, 256, (7, 20, 40), dtype=np.uint8)
    f[5] = f[1]  # a repeated frame
    return f


def test_targets_once_per_unique_frame_batched(frames):
    bb = CountingBackbone(load_backbone("tiny"))
    t = compute_targets(frames, bb, batch_size=4)
    assert t.shape == (7, 64, 64) and t.dtype == np.float32
    assert bb.frames == 6 and bb.calls == 2  # 6 unique frames in batches of 4
    np.testing.assert_array_equal(t[5], t[1])
    np.testing.assert_allclose(t[:3], bb.inner.embed(frames[:3]), atol=1e-6)


def test_second_run_computes_nothing_and_key_tracks_inputs(frames, tmp_path):
    bb = CountingBackbone(load_backbone("tiny"))
    t1 = compute_targets(frames, bb, batch_size=8, cache_dir=tmp_path)
    assert bb.frames == 6 and len(list(tmp_path.glob("targets-*.safetensors"))) == 1
    t2 = compute_targets(frames, bb, batch_size=8, cache_dir=tmp_path)
    assert bb.frames == 6  # nothing computed
    np.testing.assert_array_equal(t1, t2)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pt"))
    # other content, other preprocessing, other weights -> new entries
    f2 = frames.copy()
    f2[0, 0, 0] ^= 1
    compute_targets(f2, bb, cache_dir=tmp_path)
    assert bb.frames == 12
    crop = CountingBackbone(load_backbone("tiny", preprocessing="crop"))
    compute_targets(frames, crop, cache_dir=tmp_path)
    seed1 = CountingBackbone(load_backbone("tiny", seed=1))
    t_seed1 = compute_targets(frames, seed1, cache_dir=tmp_path)
    assert crop.frames == 6 and seed1.frames == 6
    assert len(list(tmp_path.glob("targets-*.safetensors"))) == 4
    assert not np.allclose(t_seed1, t1)


def test_corrupt_cache_is_recomputed(frames, tmp_path):
    bb = CountingBackbone(load_backbone("tiny"))
    t1 = compute_targets(frames, bb, cache_dir=tmp_path)
    (path,) = tmp_path.glob("targets-*.safetensors")
    path.write_bytes(b"garbage")
    t2 = compute_targets(frames, bb, cache_dir=tmp_path)
    assert bb.frames == 12
    np.testing.assert_array_equal(t1, t2)


def test_frames_hash_is_content_based(frames):
    assert frames_hash(frames) == frames_hash(frames.copy())
    assert frames_hash(frames) != frames_hash(frames[::-1])
    assert frames_hash(frames) != frames_hash(frames.reshape(7, 40, 20))


def test_pca_basis_recovers_low_rank_tokens():
    rng = np.random.default_rng(0)
    basis_true = np.linalg.qr(rng.normal(size=(16, 3)))[0].T  # (3, 16) orthonormal
    coeffs = rng.normal(size=(10, 5, 3)) * np.array([3.0, 2.0, 1.0])
    x = (coeffs @ basis_true + 0.5).astype(np.float32)
    pca = fit_pca(x, n_components=3)
    assert pca.components.shape == (3, 16)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(pca.explained.sum(), 1.0, atol=1e-5)
    assert pca.explained[0] > pca.explained[1] > pca.explained[2]
    np.testing.assert_allclose(from_pca(to_pca(x, pca), pca), x, atol=1e-4)
    low = fit_pca(x, n_components=1)
    assert np.abs(from_pca(to_pca(x, low), low) - x).max() > 0.1
    with pytest.raises(ValueError):
        fit_pca(x, n_components=17)
