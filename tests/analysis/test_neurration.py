"""Per-unit neurration and decoder contributions on tiny hand-made data with planted answers."""

from __future__ import annotations

import numpy as np
import pytest

from neurrator.data.binning import Binned
from neurrator.analysis.contribution import drive_narrations, leave_one_out
from neurrator.analysis.single_units import concept_tuning, neurrate_units, preferred_stimuli
from neurrator.data.responses import trial_responses, unit_reliability
from neurrator.stats.resampling import scene_blocks


def test_trial_responses_by_hand():
    # 2 repeats x 3 frames, 2 bins per frame, one unit; window = the next frame's 2 bins (default lag)
    counts = np.array([1, 0, 2, 1, 0, 3, 4, 4, 0, 0, 1, 1], dtype=np.uint16)[:, None]
    b = Binned(counts=counts, frame=np.array([0, 1, 2, 0, 1, 2]), repeat=np.array([0, 0, 0, 1, 1, 1]),
               bins_per_frame=2, unit_ids=np.array([7]))
    tr = trial_responses(b, np.arange(6))
    raw = np.array([[3, 3, 0], [0, 2, 0]], dtype=float)  # frame p reads bins of p+1; the last frame leaves the repeat
    assert tr.baseline[0] == pytest.approx(raw.mean())
    assert np.allclose(tr.values[:, :, 0], raw - raw.mean(), atol=1e-5)
    assert tr.frames.tolist() == [0, 1, 2] and tr.repeats.tolist() == [0, 1]
    assert tr.bin_mean[0] == pytest.approx(counts.mean())
    # no lag, the frame's own bins
    tr0 = trial_responses(b, np.arange(6), offset_bins=0)
    own = np.array([[1, 3, 3], [8, 0, 2]], dtype=float)
    assert np.allclose(tr0.values[:, :, 0] + tr0.baseline[0], own, atol=1e-5)


def test_trial_responses_drop_an_incomplete_repeat_rather_than_most_images():
    """Flashed images shown 3 or 4 times: the 4th "repeat" holds one image only; dropping that repeat keeps
    all images (dropping the images it lacks would keep one); each presentation is one 2-bin window."""
    frame = np.array([0, 1, 2, 1, 2, 0, 0, 2, 1, 2])
    repeat = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    counts = np.arange(20, dtype=np.uint16)[:, None] % 5
    b = Binned(counts=counts, frame=frame, repeat=repeat, bins_per_frame=2, unit_ids=np.array([7]))
    tr = trial_responses(b, np.arange(10), offset_bins=0)
    assert tr.frames.tolist() == [0, 1, 2] and tr.repeats.tolist() == [0, 1, 2]
    own = counts[:, 0].reshape(10, 2).sum(1).astype(float)  # each presentation's own window
    expect = np.zeros((3, 3))
    expect[repeat[:9], frame[:9]] = own[:9]
    assert np.allclose(tr.values[:, :, 0] + tr.baseline[0], expect, atol=1e-5)


def test_preferred_stimulus_is_the_positive_response_weighted_mean():
    targets = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    resp = np.array([[2.0, -1.0], [-1.0, -1.0], [1.0, -2.0]])  # unit 1 never exceeds baseline
    out = preferred_stimuli(resp, targets)
    assert np.allclose(out[0], (2 * targets[0] + targets[2]) / 3)
    assert np.allclose(out[1], targets.mean(axis=0))


def _planted(seed=0, F=360, R=6, K=4, n_tuned=12, n_noise=12):
    rng = np.random.default_rng(seed)
    # concept activations piecewise constant over 12-frame scenes (autocorrelated, like a movie)
    acts = np.repeat(rng.random((F // 12, K)), 12, axis=0)
    planted = np.arange(n_tuned) % K
    resp = rng.normal(0, 1.0, size=(R, F, n_tuned + n_noise))
    resp[:, :, :n_tuned] += 3.0 * acts[:, planted][None]
    return acts, planted, resp - resp.mean(axis=(0, 1))


def test_planted_concept_is_the_top_significant_one_and_noise_units_get_no_words():
    acts, planted, resp = _planted()
    R, F, N = resp.shape
    from neurrator.data.responses import TrialResponses

    tr = TrialResponses(resp.astype(np.float32), np.arange(F), np.arange(R), np.zeros(N), np.ones(N), np.ones(N))
    targets = np.zeros((F, 2, 3), np.float32)
    called = []

    def narrate(p):
        called.append(len(p))
        return ["a scene"] * len(p)

    out = neurrate_units(tr, targets, acts, ["car", "sunlit", "dark", "tree"], narrate=narrate, n_perm=500,
                         n_null=500, min_shift=24, seed=1)
    tuned = slice(0, len(planted))
    assert out.visually_driven[tuned].all()
    assert out.top_concept[: len(planted)] == [["car", "sunlit", "dark", "tree"][k] for k in planted]
    noise = np.arange(len(planted), N)
    assert out.visually_driven[noise].sum() <= 1  # ~alpha: the gate rejects pure noise
    assert all(out.top_concept[i] == "" for i in noise if not out.visually_driven[i])
    sig_noise = out.tuning.significant(0.05)[noise].any(axis=1)
    assert sig_noise.sum() <= 1
    assert sum(called) == int(out.visually_driven.sum())
    assert all((t == "") != bool(d) for t, d in zip(out.preferred_text, out.visually_driven))
    rows = out.tuning_rows()
    assert len(rows["unit"]) == N * 4 and rows["concept"][:4].tolist() == ["car", "sunlit", "dark", "tree"]
    assert all(len(f) <= 5 for f in out.top_frames)


def test_tuning_p_values_are_uniform_for_noise():
    rng = np.random.default_rng(3)
    F = 300
    acts = np.repeat(rng.random((F // 10, 3)), 10, axis=0)
    x = np.zeros((F, 40))  # AR(1) noise, rho 0.9: strongly autocorrelated, so a naive p would be anti-conservative
    e = rng.normal(size=(F, 40))
    for t in range(1, F):
        x[t] = 0.9 * x[t - 1] + e[t]
    tun = concept_tuning(x, acts, n_perm=300, min_shift=30, seed=0)
    assert 0.0 < np.mean(tun.p < 0.05) < 0.15
    assert not tun.significant(0.05).any()


def test_reliability_gate():
    rng = np.random.default_rng(0)
    signal = np.repeat(rng.normal(size=30), 6)  # (180,)
    resp = np.stack([signal[None] + 0.5 * rng.normal(size=(8, 180)), rng.normal(size=(8, 180))], axis=2)
    rel = unit_reliability(resp, n_null=300, min_shift=20)
    assert rel.driven.tolist() == [True, False]
    assert rel.value[0] > 0.8 and abs(rel.value[1]) < 0.5


def test_leave_one_out_finds_the_unit_the_model_uses():
    rng = np.random.default_rng(0)
    W = 120
    noise = rng.normal(0, 0.05, size=W)
    gain = np.zeros((4, W))
    gain[0] = 0.1 + rng.normal(0, 0.02, size=W)  # unit 0 helps in every window; units 1-3 do nothing

    def fidelity(idx):
        return 0.3 + noise + gain[idx].sum(axis=0)

    loo = leave_one_out({"VISp": np.arange(4)}, fidelity, blocks=scene_blocks(np.arange(W), block_frames=10),
                        n_boot=200, n_perm=500)
    assert loo.unit_idx.tolist() == [0, 1, 2, 3]
    assert loo.loo_delta[0] == pytest.approx(gain[0].mean())
    assert loo.loo_ci_lo[0] > 0 and loo.loo_p[0] < 0.01
    assert np.allclose(loo.loo_delta[1:], 0) and (loo.loo_p[1:] == 1).all()


def test_drive_is_significant_only_for_a_unit_that_changes_the_words():
    w = np.array([5.0, 0.0, 0.0])  # only unit 0 moves the predicted patches

    def predict_windows(x, idx):
        s = (x.mean(axis=1) * w[idx]).sum(axis=1)  # (B,)
        return np.broadcast_to(s[:, None, None], (len(x), 2, 2)).astype(np.float32)

    def narrate(p):
        return ["a bright car" if v > 8.0 else "a dark street" for v in p[:, 0, 0]]

    vocab = {"a bright car": 0, "a dark street": 1}

    def embed(texts):
        return np.eye(2)[[vocab[t] for t in texts]]

    d = drive_narrations({"VISp": np.arange(3)}, np.array([1.0, 1.0, 1.0]), np.array([0.2, 0.2, 0.2]),
                         predict_windows=predict_windows, narrate=narrate, embed=embed, window_bins=20,
                         drive_sd=3.0, n_null=40, seed=0)  # noise: mean of 20 Poisson(1) bins rarely > 1.6
    assert d.baseline_text == ["a dark street"] * 3
    assert d.drive_text == ["a bright car", "a dark street", "a dark street"]
    assert d.drive_shift.tolist() == [1.0, 0.0, 0.0]
    assert d.drive_p[0] < 0.05 and (d.drive_p[1:] == 1).all()
    # onto the UnitNeurrationTable columns, next to a per-unit neurration of 4 units (unit 3 not driven)
    from neurrator.analysis.contribution import unit_table
    from neurrator.analysis.single_units import ConceptTuning, UnitNeurration

    z = np.zeros((4, 1))
    neur = UnitNeurration(np.arange(10, 14), np.ones(4), np.zeros(4), np.zeros(4), np.ones(4, bool), [""] * 4,
                          [np.zeros(0, np.int64)] * 4, [""] * 4, np.full(4, np.nan), np.full(4, np.nan),
                          ConceptTuning(z, z, z, z, np.zeros(4), z), ["car"])
    cols = unit_table(neur, drive=d)
    assert cols["drive_text"] == ["a bright car", "a dark street", "a dark street", ""]
    assert cols["drive_shift"][:3].tolist() == [1.0, 0.0, 0.0] and np.isnan(cols["drive_shift"][3])
    assert np.isnan(cols["loo_delta"]).all() and cols["unit"].tolist() == [10, 11, 12, 13]
    assert cols["drive_q"][:3].tolist() == d.drive_q.tolist() and np.isnan(cols["drive_q"][3])


def test_drive_null_resolves_p_for_fdr_and_stops_early_when_nothing_stands_out():
    """Null: noise inputs (Poisson at each unit's mean) narrated once per group and shared by its units.
    With 1,000 of them the one unit that changes the words gets p = 1/1001, which survives BH over 40
    units (50 draws floored p at 1/51 and q at 40/51); a group in which no unit moves the words stops
    after the first round of 100 noise narrations (every unit has >= 10 noise shifts as large as its own)."""
    w = np.zeros(40)
    w[0] = 5.0
    calls = []

    def predict_windows(x, idx):
        calls.append(len(x))
        s = (x.mean(axis=1) * w[idx]).sum(axis=1)
        return np.broadcast_to(s[:, None, None], (len(x), 2, 2)).astype(np.float32)

    def narrate(p):
        return ["a bright car" if v > 9.0 else "a dark street" for v in p[:, 0, 0]]  # noise: mean of 50
        # Poisson(1) bins > 1.8 (5.7 sd): never; the drive: 1 + 1 spikes per bin

    vocab = {"a bright car": 0, "a dark street": 1}

    def embed(texts):
        return np.eye(2)[[vocab[t] for t in texts]]

    kw = dict(predict_windows=predict_windows, narrate=narrate, embed=embed, window_bins=50, drive_sd=3.0, seed=0,
              batch_size=256)
    d = drive_narrations({"VISp": np.arange(40)}, np.ones(40), np.full(40, 0.2), **kw)
    assert len(d.null_shift["VISp"]) == 1000 and d.drive_p[0] == pytest.approx(1 / 1001)
    assert d.drive_q[0] < 0.05 and (d.drive_q[1:] == 1).all()
    calls.clear()
    quiet = drive_narrations({"CA1": np.arange(1, 40)}, np.ones(40), np.full(40, 0.2), **kw)
    assert len(quiet.null_shift["CA1"]) == 100 and (quiet.drive_p == 1).all()
    assert sum(calls) == 1 + 39 + 100  # baseline, one drive per unit, one round of noise


def test_predict_windows_matches_predict_on_recorded_windows():
    torch = pytest.importorskip("torch")
    from neurrator.data.binning import window_index
    from neurrator.data.splits import split_repeats
    from neurrator.models.encoder import EncoderConfig
    from neurrator.models.training import TrainConfig, train_encoder
    from neurrator.models.prediction import predict, predict_windows

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    F, R, N, b = 20, 4, 6, 2
    counts = rng.poisson(1.0, size=(F * R * b, N)).astype(np.uint16)
    binned = Binned(counts=counts, frame=np.tile(np.arange(F), R), repeat=np.repeat(np.arange(R), F),
                    bins_per_frame=b, unit_ids=np.arange(N, dtype=np.int64) + 50)
    targets = rng.normal(size=(F, 3, 4)).astype(np.float32)
    split = split_repeats(binned.repeat, n_val=1, n_test=1)
    cfg = TrainConfig(window_bins=4, batch_size=16, max_epochs=1, linear_init=False)
    enc = EncoderConfig(n_units=N, n_patches=3, dim=4, window_bins=4, d_model=8, n_heads=2, n_latents=2, depth=1)
    tr = train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=0, progress=False)
    pres, cols = split.test[:5], np.array([4, 1, 2])
    rows = window_index(binned.frame, binned.repeat, bins_per_frame=b, window_bins=4, offset_bins=cfg.offset_bins)[pres]
    win = np.where(rows[:, :, None] >= 0, counts[np.maximum(rows, 0)][:, :, cols], 0).astype(np.float32)
    got = predict_windows(tr, win, binned.unit_ids[cols], batch_size=2)
    np.testing.assert_allclose(got, predict(tr, binned, pres, unit_idx=cols), atol=1e-5)
    with pytest.raises(ValueError, match="bins"):
        predict_windows(tr, win[:, :3], binned.unit_ids[cols])


def test_hierarchical_fdr_tests_concepts_only_in_selected_units():
    from neurrator.analysis.single_units import hierarchical_fdr

    p = np.array([[0.001, 0.02, 0.9], [0.001, 0.8, 0.9], [0.3, 0.5, 0.9]])
    # unit 1 is not selected (e.g. fails the reliability gate): none of its concepts is significant
    q, uq = hierarchical_fdr(p, unit_q=np.array([0.01, 0.2, 0.01]), selected=np.array([True, False, True]))
    assert (q <= 0.05).tolist() == [[True, True, False], [False, False, False], [False, False, False]]
    # by hand: unit 0's within-unit BH q = [0.003, 0.03, 0.9], times N / R = 3 / 2, at least its unit q 0.01
    assert np.allclose(q[0], [0.01, 0.045, 1.0])
    assert uq.tolist() == [0.01, 0.2, 0.01]
