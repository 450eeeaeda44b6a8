"""TopK SAE: training on synthetic sparse data with a known dictionary, sparse gradients, payloads, naming."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurrator.sae.concepts import (
    Concepts,
    content_words,
    name_concepts,
    name_concepts_correlation,
    top_frames_separated,
)
from neurrator.errors import NeurratorError
from neurrator.sae.autoencoder import (
    SAEConfig,
    SparseAutoencoder,
    _SparsePreAct,
    evaluate_sae,
    frame_latents,
    load_sae,
    sae_from_payload,
    sae_payload,
    save_sae,
    train_sae,
)


def _sparse_data(n: int = 8000, d: int = 32, m: int = 64, active: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(m, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    codes = np.zeros((n, m))
    for i in range(n):
        codes[i, rng.choice(m, active, replace=False)] = rng.uniform(0.5, 2.0, active)
    return (codes @ D + 0.3).astype(np.float32), D


@pytest.mark.slow
def test_fvu_decreases_and_dictionary_is_recovered():
    X, D = _sparse_data()
    cfg = SAEConfig(d_in=32, n_latents=128, k=4)
    sae, st = train_sae(X, config=cfg, epochs=12, batch_size=512, lr=3e-3, device="cpu", seed=0)
    assert st.fvu[-1] < 0.5 * st.fvu[0]
    ev = evaluate_sae(sae, X, device="cpu")
    assert ev.fvu < 0.15
    assert ev.l0 <= 4.0 + 1e-9 and ev.l0 > 3.5          # exactly k kept (ReLU may drop a few)
    W = sae.W_dec.detach().numpy()
    assert np.allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-5)
    assert (np.abs(D @ W.T).max(1) > 0.9).mean() > 0.9  # the known atoms are found
    # an untrained SAE explains far less
    fresh = SparseAutoencoder(cfg)
    fresh.b_dec.data = torch.as_tensor(X.mean(0))
    assert evaluate_sae(fresh, X, device="cpu").fvu > 2 * ev.fvu
    # the same seed reproduces the same weights
    sae2, _ = train_sae(X[:1000], config=cfg, epochs=1, batch_size=512, device="cpu", seed=5)
    sae3, _ = train_sae(X[:1000], config=cfg, epochs=1, batch_size=512, device="cpu", seed=5)
    assert torch.equal(sae2.W_enc, sae3.W_enc)


def test_k_active_latents():
    cfg = SAEConfig(d_in=8, n_latents=20, k=3)
    sae = SparseAutoencoder(cfg)
    x = torch.randn(5, 8)
    z = sae.dense_latents(x)
    assert z.shape == (5, 20)
    assert torch.all((z != 0).sum(1) <= 3)
    vals, idx = sae.encode(x)
    pre = sae.pre_acts(x)
    assert torch.equal(torch.sort(idx, 1).values, torch.sort(pre.topk(3, dim=1).indices, 1).values)
    assert torch.allclose(sae(x), z @ sae.W_dec + sae.b_dec, atol=1e-5)


def test_sparse_backward_matches_dense_autograd():
    torch.manual_seed(1)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    W = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 9, (6, 3))
    w = torch.randn(6, 3, dtype=torch.float64)
    dense = (F.linear(x, W, b).gather(1, idx) * w).sum()
    gd = torch.autograd.grad(dense, (x, W, b))
    with torch.no_grad():
        vals0 = F.linear(x, W, b).gather(1, idx)
    sparse = (_SparsePreAct.apply(x, W, b, idx, vals0) * w).sum()
    gs = torch.autograd.grad(sparse, (x, W, b))
    for a, c in zip(gd, gs):
        assert torch.allclose(a, c)


def _aux_fvu(sae: SparseAutoencoder, X: np.ndarray, dead: torch.Tensor, aux_k: int) -> float:
    """How well the top ``aux_k`` dead latents reconstruct the main path's residual (lower is better)."""
    x = torch.as_tensor(X)
    with torch.no_grad():
        pre = sae.pre_acts(x)
        e = x - sae(x)
        av, ai = pre.masked_fill(~dead, float("-inf")).topk(aux_k, dim=-1)
        e_hat = F.embedding_bag(ai, sae.W_dec, per_sample_weights=F.relu(av), mode="sum")
        return float((e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum())


def test_auxk_trains_dead_latents_to_reconstruct_the_residual():
    # 4 atoms, 64 latents, k=1: most latents never win the top-1 and are dead. Without AuxK their
    # decoder rows never move; with AuxK they are trained to reconstruct the main path's residual.
    X, _ = _sparse_data(n=3000, d=16, m=4, active=2)
    init = SparseAutoencoder(SAEConfig(d_in=16, n_latents=64, k=1))
    init.b_dec.data = torch.as_tensor(X.mean(0))
    trained = {}
    for coef in (0.0, 1 / 32):
        cfg = SAEConfig(d_in=16, n_latents=64, k=1, dead_tokens=400, aux_coef=coef)
        sae = SparseAutoencoder(cfg)
        sae.load_state_dict(init.state_dict())
        trained[coef], _ = train_sae(X, config=cfg, sae=sae, epochs=4, batch_size=200, lr=3e-3, device="cpu",
                                     seed=0)
    W0 = init.W_dec.detach().numpy()
    for coef, sae in trained.items():
        dead = ~(sae.dense_latents(torch.as_tensor(X)) > 0).any(0)
        assert dead.sum() > 32
        moved = ~np.all(np.isclose(sae.W_dec.detach().numpy(), W0, atol=1e-7), axis=1)
        if coef == 0.0:
            assert moved[dead.numpy()].mean() < 0.2     # never-fired latents get no gradient without AuxK
            fvu_off = _aux_fvu(sae, X, dead, 8)
        else:
            assert moved[dead.numpy()].mean() > 0.9
            fvu_on = _aux_fvu(sae, X, dead, 8)
    assert fvu_on < 0.5 * fvu_off


def test_payload_roundtrip_and_sha_refusal(tmp_path):
    cfg = SAEConfig(d_in=8, n_latents=16, k=2)
    sae = SparseAutoencoder(cfg)
    sae.concepts = Concepts(names=["dog"] + [""] * 15, scores=[2.0] + [0.0] * 15,
                            methods=["caption-enrichment:log-odds:top16-frames"] + ["unnamed:dead"] * 15)
    cfg_json, weights, sha = sae_payload(sae)
    back = sae_from_payload(cfg_json, weights, sha)
    x = torch.randn(4, 8)
    assert torch.allclose(back(x), sae(x))
    assert back.config == cfg and back.concepts.names[0] == "dog"
    bad = bytearray(weights)
    bad[-1] ^= 1
    with pytest.raises(NeurratorError, match="sha256 mismatch"):
        sae_from_payload(cfg_json, bytes(bad), sha)
    folder = save_sae(sae, tmp_path / "sae")
    assert torch.allclose(load_sae(folder)(x), sae(x))
    (folder / "sae.safetensors").write_bytes(bytes(bad))
    with pytest.raises(NeurratorError, match="sae.safetensors"):
        load_sae(folder)


def test_config_validation():
    with pytest.raises(ValueError):
        SAEConfig(d_in=8, n_latents=4, k=5)
    assert SAEConfig(d_in=1024, n_latents=16384, k=32).aux_k == 512


def test_content_words():
    assert content_words("Two dogs are running on the grass.") == ["dog", "running", "grass"]
    assert content_words("A glass of water") == ["glass", "water"]


def test_name_concepts_on_constructed_frames():
    # 40 frames; latent 0 fires on frames whose caption has "tree", latent 1 on "car", latent 2 never,
    # latent 3 fires everywhere equally (no enriched word)
    rng = np.random.default_rng(0)
    has_tree = rng.random(40) < 0.3
    has_car = rng.random(40) < 0.3
    texts = [" ".join(["a", "tree" if t else "", "car" if c else "", "road"]) for t, c in zip(has_tree, has_car)]
    lat = np.zeros((40, 4))
    lat[:, 0] = has_tree * rng.uniform(1, 2, 40)
    lat[:, 1] = has_car * rng.uniform(1, 2, 40)
    lat[:, 3] = 1.0
    c = name_concepts(lat, texts, top_frames=8, min_separation=0)
    assert c.names[:3] == ["tree", "car", ""]
    assert c.names[3] == ""
    assert c.methods[0] == "caption-enrichment:log-odds:top8-frames"
    assert c.methods[2] == "unnamed:dead" and c.methods[3] == "unnamed:no-enriched-word"
    assert c.named() == [0, 1]
    # the vocabulary restriction removes names outside it
    assert name_concepts(lat, texts, top_frames=8, min_separation=0, vocabulary=["car"]).names[:2] == ["", "car"]


def test_name_concepts_correlation_on_constructed_frames():
    # "tree" and "car" are balanced and independent (r = 0 between them by construction): latent 0
    # follows "tree", latent 1 "car", latent 2 never fires, latent 3 fires everywhere equally (r = 0 with
    # every word), latent 4 fires on 2 frames only (rare), latent 5 follows "tree" weakly under noise
    f = np.arange(80)
    has_tree, has_car = f % 4 < 2, f % 2 == 0
    texts = [" ".join(["a", "tree" if t else "", "car" if c else "", "road"]) for t, c in zip(has_tree, has_car)]
    lat = np.zeros((80, 6))
    lat[:, 0] = has_tree * 1.5
    lat[:, 1] = has_car * 1.5 + 0.1
    lat[:, 3] = 1.0
    lat[:2, 4] = 1.0
    lat[:, 5] = 1.0 + 0.05 * has_tree + np.random.default_rng(0).normal(0, 0.5, 80).clip(-0.9, 0.9)
    c = name_concepts_correlation(lat, texts)
    assert c.names == ["tree", "car", "", "", "", ""]
    assert c.methods[:2] == ["caption-correlation:pearson:r>=0.2"] * 2
    assert c.methods[2:] == ["unnamed:dead", "unnamed:no-correlated-word", "unnamed:rare",
                             "unnamed:no-correlated-word"]
    assert c.scores[0] == pytest.approx(np.corrcoef(lat[:, 0], has_tree)[0, 1])
    assert c.named() == [0, 1]
    # the vocabulary restriction removes names outside it; a phrase is matched as whole words
    assert name_concepts_correlation(lat, texts, vocabulary=["car"]).names[:2] == ["", "car"]
    assert name_concepts_correlation(lat[:, :1], ["x tree road" if t else "x" for t in has_tree],
                                     vocabulary=["tree road"]).names == ["tree road"]
    with pytest.raises(ValueError, match="80 texts"):
        name_concepts_correlation(lat[:10], texts)


def test_frame_latents_shape_and_mean():
    sae = SparseAutoencoder(SAEConfig(d_in=6, n_latents=10, k=2))
    p = torch.randn(3, 5, 6)
    fl = frame_latents(sae, p, device="cpu")
    assert fl.shape == (3, 10)
    expect = sae.dense_latents(p.reshape(-1, 6)).reshape(3, 5, 10).mean(1).detach().numpy()
    assert np.allclose(fl, expect, atol=1e-6)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the binary ``label`` (ties count one half)."""
    pos, neg = score[label > 0], score[label <= 0]
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["log-odds", "correlation"])
def test_concept_names_on_simulated_movie_match_ground_truth(method):
    """Named latents on the simulated movie come from its caption vocabulary, the name agrees with the
    simulator's ground truth in sample (log-odds: the feature is present in most of the latent's top
    frames; correlation: the activation correlates with the feature's presence), and on an independent movie of
    the same simulator the latent's activation predicts the named feature (AUC), far more often than it
    predicts a randomly assigned feature."""
    from neurrator.models.backbones import load_backbone
    from neurrator.simulate import FEATURE_NAMES, simulate_movie

    frames_a, captions_a, feats_a = simulate_movie(n_frames=900, rng=np.random.default_rng(0))
    frames_b, _, feats_b = simulate_movie(n_frames=600, rng=np.random.default_rng(1))
    bb = load_backbone("tiny", seed=0)
    tok_a, tok_b = bb.embed(frames_a), bb.embed(frames_b)          # (F, 64, 64) true patch tokens
    sae, _ = train_sae(tok_a, config=SAEConfig(d_in=64, n_latents=64, k=8), epochs=5, batch_size=1024, lr=2e-3,
                       device="cpu", seed=0)
    lat_a = frame_latents(sae, tok_a, device="cpu")
    lat_b = frame_latents(sae, tok_b, device="cpu")
    if method == "log-odds":
        concepts = name_concepts(lat_a, captions_a, vocabulary=FEATURE_NAMES)
        expected = "caption-enrichment:log-odds:top16-frames-sep30"
    else:
        concepts = name_concepts_correlation(lat_a, captions_a, vocabulary=FEATURE_NAMES)
        expected = "caption-correlation:pearson:r>=0.2"
    named = concepts.named()
    assert len(named) >= 5
    assert {concepts.names[j] for j in named} <= set(FEATURE_NAMES)
    assert all(concepts.methods[j] == expected for j in named)
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    rng = np.random.default_rng(0)
    in_sample, held_out, control, held_names = [], [], [], set()
    for j in named:
        k = col[concepts.names[j]]
        if method == "log-odds":  # the named feature is present in most of the latent's top frames
            top_a = top_frames_separated(lat_a[:, j], n=16, min_separation=30)
            in_sample.append(feats_a[top_a, k].mean() >= 0.5)
        else:  # the latent's activation correlates with the named feature's true presence
            in_sample.append(np.corrcoef(lat_a[:, j], feats_a[:, k])[0, 1] >= 0.2)
        ok = _auc(lat_b[:, j], feats_b[:, k]) > 0.6
        held_out.append(ok)
        held_names |= {concepts.names[j]} if ok else set()
        other = rng.choice([i for i in range(len(FEATURE_NAMES)) if i != k])
        control.append(_auc(lat_b[:, j], feats_b[:, other]) > 0.6)
    assert all(in_sample)
    assert np.mean(held_out) >= 0.6
    assert np.mean(held_out) > np.mean(control) + 0.3
    assert len(held_names) >= 2
