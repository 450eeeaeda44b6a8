"""The blend chosen for one unit subset (issue 28.1, `neurrator.models.subset_blend`): the same choice as
training's for all units, the decode it gives, its rule (cosine at least the subset's ridge's) and its
refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers import driven_session
from neurrator.data.splits import split_repeats
from neurrator.models import readout
from neurrator.models.encoder import EncoderConfig
from neurrator.models.prediction import PresentationWindows, predict
from neurrator.models.subset_blend import BlendChoice, calibrate_blend
from neurrator.models.training import TrainConfig, train_encoder

torch.set_num_threads(1)
NF, R, N, NP, D = 30, 5, 40, 8, 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    binned, drive = driven_session(NF, R, N, 0.5, rng)
    targets = (drive @ rng.normal(size=(N, NP * D)) / 4).reshape(NF, NP, D).astype(np.float32)
    split = split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)
    enc = EncoderConfig(n_units=N, n_patches=NP, dim=D, window_bins=20, d_model=16, n_heads=2, n_latents=4, depth=1,
                        linear_rank=16)
    trained = train_encoder(binned, targets, split, config=TrainConfig(max_epochs=1, batch_size=32,
                                                                       val_subsets=(10,)),
                            encoder=enc, seed=0, progress=False)
    return binned, targets, split, trained


def _row(trained, n):
    m = trained.model
    b, g, t, k, w = (float(v) for v in m.blend_table[m.blend_row(n), 1:])
    return b, g, t, int(k), w


def test_all_units_choose_what_training_chose(data):
    """Training's all-unit choice reads the same validation windows by the same rule: the same five numbers."""
    binned, targets, split, trained = data
    assert trained.model.has_window_bank and trained.model.has_subset_ridge
    choice = calibrate_blend(trained, binned, targets, split.val)
    assert (choice.beta, choice.gamma, choice.tau, choice.knn_k, choice.knn_w) == pytest.approx(_row(trained, N))
    assert choice.n_units == N and choice.n_windows == len(split.val)
    by_size = trained.extra["blend"]["by_size"][str(N)]
    assert choice.identification == pytest.approx(by_size["identification"])
    assert choice.centred_patch_cosine == pytest.approx(by_size["centred_patch_cosine"], abs=1e-5)


def test_the_size_row_given_as_a_choice_decodes_as_the_default(data):
    binned, targets, split, trained = data
    cols = np.arange(0, N, 4)  # 10 units
    row = BlendChoice(*_row(trained, len(cols)))
    np.testing.assert_allclose(predict(trained, binned, split.test, unit_idx=cols, blend=row),
                               predict(trained, binned, split.test, unit_idx=cols), rtol=1e-5, atol=1e-6)


def test_a_subset_choice_is_on_the_grid_keeps_the_ridge_floor_and_decodes_through_it(data):
    binned, targets, split, trained = data
    cols = np.arange(1, N, 4)
    choice = calibrate_blend(trained, binned, targets, split.val, unit_idx=cols)
    assert choice.beta in readout.BETAS and choice.gamma in readout.GAMMAS and choice.tau in readout.TAUS
    assert choice.knn_k in (0, *readout.KNN_KS) and choice.knn_w in (0.0, *readout.KNN_WEIGHTS)
    # the rule: its validation cosine at least the subset's ridge's on the same windows, and that floor is
    # the cosine of the ridge's own decode of the validation windows, computed here apart
    assert choice.centred_patch_cosine >= choice.ridge_centred_patch_cosine - 1e-9
    val = np.asarray(split.val)
    floor = predict(trained, binned, val, unit_idx=cols, blend=BlendChoice(0.0, 0.0, readout.TAUS[0], 0, 0.0))
    mean = trained.model.target_mean.numpy()
    p, t = floor - mean, targets[binned.frame[val]] - mean
    ccos = (p * t).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(t, axis=-1))
    assert choice.ridge_centred_patch_cosine == pytest.approx(float(ccos.mean()), abs=1e-4)
    # decoding with the choice is the model's blend_output with these numbers
    mine = predict(trained, binned, split.test, unit_idx=cols, blend=choice)
    other = predict(trained, binned, split.test, unit_idx=cols,
                    blend=BlendChoice(1.0, 0.0, readout.TAUS[0], 0, 0.0))  # the plain encoder
    assert mine.shape == (len(split.test), NP, D)
    assert choice.params() == {"beta": choice.beta, "gamma": choice.gamma, "tau": choice.tau,
                               "knn_k": choice.knn_k, "knn_w": choice.knn_w}
    if (choice.beta, choice.gamma, choice.knn_w) != (1.0, 0.0, 0.0):
        assert not np.allclose(mine, other)


@pytest.mark.parametrize("numbers", [(0.5, 0.5, readout.TAUS[0], readout.KNN_KS[0], 0.5),  # reads every part
                                     (0.0, 0.5, readout.TAUS[0], readout.KNN_KS[0], 0.5),  # ridge, no encoder
                                     (1.0, 0.0, readout.TAUS[0], readout.KNN_KS[0], 1.0)])  # kNN alone
def test_a_choice_decodes_as_blend_output_and_skips_the_encoder_it_does_not_read(data, numbers):
    """`predict(..., blend=choice)` passes the choice into the forward pass: the same numbers as `blend_output`
    of the encoder's own output, and (like the size's row) the encoder's own pass only when the choice reads it."""
    binned, targets, split, trained = data
    cols, choice, m = np.arange(2, N, 3), BlendChoice(*numbers), trained.model.eval()
    calls = []
    hook = m.head.register_forward_hook(lambda *a: calls.append(1))
    try:
        got = predict(trained, binned, split.test, unit_idx=cols, blend=choice)
    finally:
        hook.remove()
    wins = PresentationWindows(trained, binned, split.test, cols, torch.device("cpu"))
    x = wins(torch.arange(len(wins)))
    with torch.no_grad():
        want = m.blend_output(m(x, wins.unit_rows, blend=False), x, wins.unit_rows, **choice.params())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    reads_encoder = choice.beta != 0.0 and choice.knn_w < 1.0
    assert bool(calls) == reads_encoder
    with pytest.raises(ValueError, match="one unit subset shared by the batch"):
        m(x[:2], wins.unit_rows.expand(2, -1), blend=choice.params())


def test_refusals(data):
    binned, targets, split, trained = data
    with pytest.raises(ValueError, match="unit_idx is empty"):
        calibrate_blend(trained, binned, targets, split.val, unit_idx=np.array([], np.int64))
    with pytest.raises(ValueError, match="are not the maps of this session's frames"):
        calibrate_blend(trained, binned, targets[:, :, :4], split.val)
    with pytest.raises(ValueError, match="are not the maps of this session's frames"):
        calibrate_blend(trained, binned, targets[:5], split.val)
    with pytest.raises(ValueError, match="repeats the encoder trained on"):
        calibrate_blend(trained, binned, targets, split.train[:50])
    with pytest.raises(ValueError, match="no validation presentations"):
        calibrate_blend(trained, binned, targets, np.array([], np.int64))
    plain = train_encoder(binned, targets, split, config=TrainConfig(max_epochs=1, batch_size=32),
                          encoder=EncoderConfig(n_units=N, n_patches=NP, dim=D, window_bins=20, d_model=16, n_heads=2,
                                                n_latents=4, depth=1, blend=False),
                          seed=0, progress=False)
    with pytest.raises(ValueError, match="without the output blend"):
        calibrate_blend(plain, binned, targets, split.val)
    with pytest.raises(ValueError, match="without the output blend"):
        predict(plain, binned, split.test, blend=BlendChoice(0.0, 0.0, 0.01, 0, 0.0))
    with pytest.raises(ValueError, match="without the output blend"):
        plain.model(torch.zeros(2, 20, N), torch.arange(N), blend=BlendChoice(0.0, 0.0, 0.01, 0, 0.0).params())


def test_the_candidates_are_every_frame_but_the_held_out_ones():
    """Training's choice and `calibrate_blend` rank among the same frames: all but the held-out ones."""
    cand, pos = readout.candidate_rows(6, [1, 4], torch.tensor([0, 2, 5, 3]))
    assert cand.tolist() == [0, 2, 3, 5] and pos.tolist() == [0, 1, 3, 2]
