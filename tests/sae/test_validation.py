"""SAE validation on a hand-built SAE with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurrator.sae.autoencoder import Concepts, SAEConfig, SparseAutoencoder
from neurrator.sae.validation import mentions, validate_narrations, validation_columns



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


def _one_concept(axis: int) -> np.ndarray:
    return _frame((axis, 1.0), (axis, 1.0), (axis, 1.0), (axis, 1.0))


def test_chance_columns_by_hand(axis_sae):
    pred = np.stack([_one_concept(0), _one_concept(1), _one_concept(2), _one_concept(0)])  # dog grass left dog
    narr = ["a dog", "grass", "on the left", "a dog"]
    rows = validate_narrations(narr, pred, pred, sae=axis_sae, frame_ids=np.array([0, 30, 60, 90]))
    assert [r.concept_agreement for r in rows] == [1.0] * 4
    # row 0 (dog) against the narrations and true frames of rows 1, 2, 3: F1 0, 0, 1 -> 1/3
    assert [r.concept_agreement_chance for r in rows] == pytest.approx([1 / 3, 0, 0, 1 / 3])
    assert [r.latent_profile_similarity_chance for r in rows] == pytest.approx([1 / 3, 0, 0, 1 / 3])
    # the two dog rows in one scene block are never paired with each other
    same = validate_narrations(narr, pred, pred, sae=axis_sae, frame_ids=np.array([0, 30, 60, 5]))
    assert [r.concept_agreement_chance for r in same] == pytest.approx([0, 0, 0, 0])
    assert [r.block for r in same] == [0, 1, 2, 0]
    # groups (unit subsets) are never mixed: row 0's only partner is row 1
    grouped = validate_narrations(narr, pred, pred, sae=axis_sae, frame_ids=np.array([0, 30, 60, 90]),
                                  groups=np.array(["a", "a", "b", "b"]))
    assert [r.latent_profile_similarity_chance for r in grouped] == pytest.approx([0, 0, 0, 0])
    cols = validation_columns(rows)
    assert cols["concept_agreement_chance"] == pytest.approx([1 / 3, 0, 0, 1 / 3])
    assert all(math.isnan(v) for v in cols["reconstruction_score_chance"])


def test_summary_null_separates_matched_from_mismatched(axis_sae):
    from neurrator.sae.validation import validation_summary

    axes = np.arange(12) % 3  # dog, grass, left, dog, ...
    pred = np.stack([_one_concept(a) for a in axes])
    words = ["a dog", "grass", "on the left"]
    frames = np.arange(12) * 30
    rows, summ = validation_summary([words[a] for a in axes], pred, pred, sae=axis_sae, frame_ids=frames,
                                    n_perm=500, n_boot=200)
    ca = summ[0]["concept_agreement"]
    assert ca["mean"] == 1.0 and ca["n"] == 12 and ca["n_perm"] == 500
    assert ca["p_value"] < 0.01
    assert ca["chance"] == pytest.approx(3 / 11, abs=0.05)  # a random other block has the same concept 3/11
    # narrations that describe the next window's concept: at chance level, not significant
    rows, summ = validation_summary([words[(a + 1) % 3] for a in axes], pred, pred, sae=axis_sae,
                                    frame_ids=frames, n_perm=500, n_boot=200)
    assert summ[0]["concept_agreement"]["mean"] == 0.0 and summ[0]["concept_agreement"]["p_value"] > 0.5
    lp = summ[0]["latent_profile_similarity"]  # the patches still match their true frames
    assert lp["mean"] == pytest.approx(1.0) and lp["p_value"] < 0.01 and lp["ci_lo"] == pytest.approx(1.0)


def test_summary_pairs_agree_with_the_rows(axis_sae):
    from neurrator.sae.validation import validation_summary

    dog_grass = _frame((0, 2.0), (0, 2.0), (1, 1.0), (1, 1.0))
    left = _frame((2, 1.0), (2, 1.0), (2, 1.0), (2, 1.0))
    pred = np.stack([dog_grass, dog_grass, dog_grass, left, _one_concept(3)])
    true = np.stack([dog_grass, left, dog_grass, left, left])
    narr = ["Two dogs on the grass.", "a dog on the left", "a red car", "something moving left", "a dog"]
    rows, summ = validation_summary(narr, pred, true, sae=axis_sae, frame_ids=np.arange(5) * 30, n_perm=50)
    ca = [r.concept_agreement for r in rows]  # 1, 0.5, 0, 0, NaN (no active named concept)
    assert math.isnan(ca[4])
    assert summ[0]["concept_agreement"]["mean"] == pytest.approx(np.nanmean(ca)) and summ[0]["concept_agreement"]["n"] == 4
    assert summ[0]["latent_profile_similarity"]["mean"] == pytest.approx(np.mean([r.latent_profile_similarity for r in rows]))


def test_summary_with_rotate_uses_the_circular_shift_of_the_partners(axis_sae):
    """A movie's narrated windows (12 evenly round one repeat): the null pairs each prediction with the
    narration / true frame of the window ``lag`` places later, every lag enumerated. The concepts repeat
    every 3 windows, so lags 3, 6 and 9 match as well as the truth: p = 4 / 12, however many
    permutations the block null would have claimed beaten."""
    from neurrator.sae.validation import validation_summary

    axes = np.arange(12) % 3
    pred = np.stack([_one_concept(a) for a in axes])
    words = ["a dog", "grass", "on the left"]
    kw = dict(sae=axis_sae, frame_ids=np.arange(12) * 30, n_perm=500, n_boot=50)
    _, rot = validation_summary([words[a] for a in axes], pred, pred, rotate=np.zeros(12, int), **kw)
    _, blk = validation_summary([words[a] for a in axes], pred, pred, **kw)
    for score in ("concept_agreement", "latent_profile_similarity"):
        r = rot[0][score]
        assert r["n_perm"] == 11 and r["p_value"] == pytest.approx(4 / 12)
        assert r["chance"] == pytest.approx(3 / 11)  # 3 of the 11 lags line the concepts up
        assert blk[0][score]["p_value"] < 0.01
    # two repeats rotate independently: 6 x 6 - 1 alignments
    _, two = validation_summary([words[a] for a in axes], pred, pred, rotate=np.repeat([1, 2], 6), **kw)
    assert two[0]["concept_agreement"]["n_perm"] == 35
