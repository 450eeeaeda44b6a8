"""SAE validation on a hand-built SAE with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurrator.sae import Concepts, SAEConfig, SparseAutoencoder
from neurrator.validation import mentions, validate_narrations, validation_columns



@pytest.fixture
def axis_sae() -> SparseAutoencoder:
    """4 latents = the 4 coordinate axes, k=1, no biases: latent j fires on x_j (the largest coordinate)."""
    sae = SparseAutoencoder(SAEConfig(d_in=4, n_latents=4, k=1))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4))
        sae.W_dec.copy_(torch.eye(4))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.concepts = Concepts(names=["dog", "grass", "on the left", ""], scores=[2.0, 2.0, 2.0, 0.0],
                            methods=["caption-enrichment:log-odds:top16-frames-sep30"] * 3 + ["unnamed:dead"])
    return sae


def _frame(*axes_weights) -> np.ndarray:
    """A 4-patch frame whose patches lie on the given (axis, weight) pairs."""
    f = np.zeros((4, 4), np.float32)
    for p, (axis, w) in enumerate(axes_weights):
        f[p, axis] = w
    return f


def test_hand_computed_scores(axis_sae):
    dog_grass = _frame((0, 2.0), (0, 2.0), (1, 1.0), (1, 1.0))       # dog > grass
    left = _frame((2, 1.0), (2, 1.0), (2, 1.0), (2, 1.0))
    pred = np.stack([dog_grass, dog_grass, dog_grass, left])
    true = np.stack([dog_grass, left, dog_grass, left])
    narr = ["Two dogs on the grass.", "a dog on the left", "a red car", "something moving left"]
    rows = validate_narrations(narr, pred, true, sae=axis_sae)
    assert [r.active_concepts for r in rows] == [["dog", "grass"]] * 3 + [["on the left"]]
    assert rows[0].concept_agreement == pytest.approx(1.0)
    assert rows[0].supporting_concepts == ["dog", "grass"]
    # mentions {dog, on the left}, active {dog, grass}: P = R = 1/2
    assert rows[1].concept_agreement == pytest.approx(0.5)
    assert rows[1].supporting_concepts == ["dog"]
    assert rows[2].concept_agreement == 0.0 and rows[2].supporting_concepts == []
    assert rows[3].mentioned_concepts == [] and rows[3].concept_agreement == 0.0
    # profiles: identical frames -> 1, disjoint latents -> 0
    assert rows[0].latent_profile_similarity == pytest.approx(1.0)
    assert rows[1].latent_profile_similarity == pytest.approx(0.0)
    # every patch lies on one axis: perfectly reconstructed
    assert all(r.reconstruction_score == pytest.approx(1.0) for r in rows)


def test_reconstruction_score_off_manifold(axis_sae):
    on = _frame((0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0))
    off = np.full((1, 4, 4), 0.0, np.float32)
    off[0, :, :2] = 1.0          # every patch (1, 1, 0, 0): k=1 keeps one axis, FVU = 1/2
    rows = validate_narrations(["x"], off, on[None], sae=axis_sae)
    assert rows[0].reconstruction_score == pytest.approx(0.5)
    assert rows[0].reconstruction_score_true == pytest.approx(1.0)


def test_no_active_named_concept_is_nan(axis_sae):
    only_unnamed = _frame((3, 1.0), (3, 1.0), (3, 1.0), (3, 1.0))[None]
    rows = validate_narrations(["a dog"], only_unnamed, only_unnamed, sae=axis_sae)
    assert math.isnan(rows[0].concept_agreement) and rows[0].active_concepts == []


def test_columns_for_the_nwb_table(axis_sae):
    f = _frame((0, 1.0), (1, 0.5), (0, 1.0), (0, 1.0))[None].repeat(2, 0)
    cols = validation_columns(validate_narrations(["a dog", "grass"], f, f, sae=axis_sae))
    assert set(cols) >= {"concept_agreement", "latent_profile_similarity", "reconstruction_score",
                         "supporting_concepts"}
    assert cols["supporting_concepts"] == [["dog"], ["grass"]]
    assert all(len(v) == 2 for v in cols.values())


def test_bad_inputs(axis_sae):
    f = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ValueError):
        validate_narrations(["a"], f, f, sae=axis_sae)
    with pytest.raises(ValueError):
        validate_narrations(["a", "b"], f, f[:, :3], sae=axis_sae)
    bare = SparseAutoencoder(SAEConfig(d_in=4, n_latents=4, k=1))
    with pytest.raises(ValueError, match="concept names"):
        validate_narrations(["a", "b"], f, f, sae=bare)


def test_mentions():
    assert mentions("on the left", "A circle on the left.")
    assert not mentions("moving left", "a bar on the left")
    assert mentions("dog", "Dogs everywhere")
    assert not mentions("", "anything")
