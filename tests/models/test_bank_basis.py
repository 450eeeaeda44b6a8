"""The blend at real dimensions (issue 28): when the training frames' full maps exceed the bank's byte cap
(CLIP ViT-L/14-336: 900 x 576 x 1024 float32 = 2.1 GB), the encoder keeps their coefficients in the linear
path's basis, and evenly spaced training windows when all of them do not fit. Forced here on small data by
lowering the caps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _helpers import driven_session
from neurrator.data.splits import split_repeats
from neurrator.models import readout
from neurrator.models.backbones import load_backbone
from neurrator.models.encoder import EncoderConfig
from neurrator.models.training import TrainConfig, _DeviceData, train_encoder

torch.set_num_threads(1)
NF, R, N, NP, D = 24, 5, 40, 16, 32
SPEC = dataclasses.replace(load_backbone("tiny").spec, n_patches=NP, dim=D)  # what the checkpoint must name


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    binned, drive = driven_session(NF, R, N, 0.5, rng)
    targets = (drive @ rng.normal(size=(N, NP * D)) / 4).reshape(NF, NP, D).astype(np.float32)
    return binned, targets, split_repeats(binned.repeat, n_val=1, n_test=1, seed=0)


def _train(data, rank: int, cap: int | None, min_windows: int | None = None):
    binned, targets, split = data
    enc = EncoderConfig(n_units=N, n_patches=NP, dim=D, window_bins=20, d_model=16, n_heads=2, n_latents=4, depth=1,
                        linear_rank=rank)
    with pytest.MonkeyPatch.context() as mp:
        if cap is not None:  # full maps: 24 x 16 x 32 x 4 = 48 kB; training windows: 72 x 40 x 5 x 1 = 14.4 kB
            mp.setattr(readout, "MAX_BANK_BYTES", cap)
        if min_windows is not None:
            mp.setattr(readout, "MIN_WINDOW_BANK", min_windows)
        return train_encoder(binned, targets, split, config=TrainConfig(max_epochs=1, batch_size=32), encoder=enc,
                             seed=0, progress=False, target_spec=SPEC)


@pytest.fixture(scope="module")
def coef(data):
    """Rank 16 < 24 training frames (the maps are projected, as at real dimensions) and a cap of 8 kB:
    the maps are kept as coefficients and 40 of the 72 training windows (uint8 counts), evenly spaced."""
    return _train(data, 16, 8 * 1024, min_windows=8)


def test_bank_plan_falls_back_to_coefficients_then_to_evenly_spaced_windows(coef, data):
    binned, targets, split = data
    m, cfg = coef.model, coef.encoder_config
    assert (cfg.bank_frames, cfg.bank_rank, cfg.window_bank) == (NF, 16, 8 * 1024 // (N * 5))
    assert m.bank.shape == (NF, 16) and m.win_counts.shape == (40, N, 5)
    assert cfg.window_dtype == "uint8" and m.win_counts.dtype == torch.uint8  # counts <= 255 / 4 per bin here
    train = np.asarray(split.train)
    kept = train[np.linspace(0, len(train) - 1, 40).round().astype(int)]
    np.testing.assert_array_equal(m.win_row.numpy(), binned.frame[kept])  # all 24 frames train: row = frame
    b = coef.extra["blend"]
    assert b["centred_patch_cosine"] >= b["ridge"][0] - 1e-6 and b["identification"] >= b["ridge"][1] - 1e-6
    assert readout.bank_plan(NF, NP, D, 16, 72, 200) == (NF, 0, 72)  # full maps fit the default cap
    assert readout.bank_plan(NF, NP, D, 0, 72, 200) == (NF, 0, 0)  # no linear path: no window kNN
    assert readout.bank_plan(10**6, NP, D, 0, 72, 200) == (0, 0, 0)  # too large and no basis: no bank


def test_coefficient_bank_stands_for_the_maps_projected_onto_the_linear_basis(coef, data):
    _, targets, _ = data
    m = coef.model
    z = ((torch.from_numpy(targets) - m.target_mean) / m.target_std).flatten(1)
    basis = m.lin_basis[:16]
    projected = ((z @ basis.T) @ basis).view(NF, NP, D) * m.target_std + m.target_mean
    torch.testing.assert_close(m.bank_maps(), projected, atol=1e-5, rtol=1e-5)
    assert float((m.bank_maps() - torch.from_numpy(targets)).abs().max()) > 1e-2  # rank 16 of 24 frames: lossy


def test_coefficient_retrieval_and_knn_equal_the_same_on_expanded_maps(coef, data):
    """The soft retrieval computed in coefficient space (cosines through the basis's Gram matrix) and the kNN's
    mean map are those of the expanded maps, computed as the full-map bank computes them."""
    binned, targets, split = data
    m = coef.model
    maps = m.bank_maps()
    y0 = torch.randn(4, NP, D, generator=torch.Generator().manual_seed(0)) + m.target_mean
    x = torch.from_numpy(binned.counts[:80].astype(np.float32)).view(4, 20, N)
    units = torch.arange(N)
    bank = (maps - m.target_mean).flatten(1)
    for tau in (0.003, 0.03):
        sim = F.normalize((y0 - m.target_mean).flatten(1), dim=1) @ F.normalize(bank, dim=1).T
        want = (torch.softmax(sim / tau, dim=1) @ bank).view_as(y0) + m.target_mean
        got = m.blend_output(y0, x, units, beta=1.0, gamma=1.0, tau=tau, knn_w=0.0)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    rows = torch.tensor([[0, 3, 5], [7, 7, 1]])
    torch.testing.assert_close(m.bank_mean(rows), maps[rows].mean(1), atol=1e-5, rtol=1e-5)
    d = _DeviceData(binned.counts, binned.frame, binned.repeat, 4, targets, window_bins=20, offset_bins=0,
                    device=torch.device("cpu"))
    sub = torch.arange(0, N, 3)
    xs = d.windows(torch.from_numpy(np.asarray(split.test[:6])), sub)
    near = m.win_row[m.window_neighbours(xs, sub, 5)]
    torch.testing.assert_close(m.window_knn(xs, sub, 5), maps[near].mean(1), atol=1e-5, rtol=1e-5)


def test_coefficient_bank_survives_a_checkpoint(coef, data, tmp_path):
    from neurrator.models.checkpoint import load_checkpoint, save_checkpoint

    binned, _, _ = data
    x = torch.from_numpy(binned.counts[:160].astype(np.float32)).view(8, 20, N)
    back = load_checkpoint(save_checkpoint(coef, tmp_path / "ckpt"))
    assert back.encoder_config.bank_rank == 16 and back.model.bank.shape == (NF, 16)
    with torch.no_grad():
        for sub in (torch.arange(N), torch.arange(0, N, 4)):
            torch.testing.assert_close(back.model(x[..., sub], sub), coef.model(x[..., sub], sub), rtol=0, atol=0)
    # a config whose bank rank the weights do not hold: one line naming the folder and the bank, no traceback
    import json

    from neurrator.errors import NeurratorError

    folder = tmp_path / "ckpt"
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["bank_rank"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NeurratorError) as ei:
        load_checkpoint(folder)
    msg = str(ei.value)
    assert msg.startswith(str(folder)) and "bank" in msg and "\n" not in msg, msg


def test_a_basis_spanning_the_frames_decodes_as_the_full_maps(data):
    """Rank 32 >= 24 training frames: the basis spans every centred training map, so the coefficient bank
    (cap 32 kB: maps do not fit, all 72 windows do) decodes as the full-map bank, on all units and on subsets."""
    binned, _, split = data
    full, basis = _train(data, 32, None), _train(data, 32, 32 * 1024)
    assert full.encoder_config.bank_rank == 0 and full.model.bank.shape == (NF, NP, D)
    assert basis.encoder_config.bank_rank == 32 and basis.encoder_config.window_bank == full.encoder_config.window_bank
    torch.testing.assert_close(basis.model.blend_table, full.model.blend_table)
    d = _DeviceData(binned.counts, binned.frame, binned.repeat, 4, np.zeros((NF, NP, D), np.float32), window_bins=20,
                    offset_bins=0, device=torch.device("cpu"))
    te = torch.from_numpy(np.asarray(split.test))
    with torch.no_grad():
        for sub in (torch.arange(N), torch.arange(0, N, 4), torch.arange(0, N, 2)):
            x = d.windows(te, sub)
            torch.testing.assert_close(basis.model(x, sub), full.model(x, sub), atol=2e-4, rtol=1e-4)


def test_blend_grid_on_coefficients_equals_the_grid_on_the_maps_they_stand_for(coef, data):
    """The choice's grid never expands a coefficient bank (at 576 x 1024 the maps and their normalised copy
    would be 2 x 2.1 GB); its scores equal those of the expanded maps."""
    from neurrator.models.readout import _grid

    binned, targets, split = data
    m = coef.model
    d = _DeviceData(binned.counts, binned.frame, binned.repeat, 4, targets, window_bins=20, offset_bins=0,
                    device=torch.device("cpu"))
    va = torch.from_numpy(np.asarray(split.val))
    units = torch.arange(N)
    x = d.windows(va, units)
    with torch.no_grad():
        y = m(x, units, blend=False)
        r = m.ridge_tokens(x, units)
    T, frame = torch.from_numpy(targets), torch.from_numpy(binned.frame[np.asarray(split.val)])
    maps = _grid(y, r, frame, T, m.target_mean, m.bank_maps(), (0.0, 0.5, 1.0))
    coefs = _grid(y, r, frame, T, m.target_mean, m.bank, (0.0, 0.5, 1.0), basis=m.bank_basis())
    assert maps.keys() == coefs.keys() and len(maps) == 3 * (1 + 2 * 4)
    for key, sc in maps.items():
        assert coefs[key] == pytest.approx(sc, abs=1e-5), key


def test_wide_counts_keep_int16_windows_and_checkpoints_without_window_dtype_load_as_int16(data, tmp_path):
    """uint8 window counts only when no pooled count can exceed 255; a checkpoint written before
    ``window_dtype`` existed (its config has no such key, its bank is int16) loads and decodes unchanged."""
    import json

    from neurrator.models.checkpoint import load_checkpoint, save_checkpoint

    binned, targets, split = data
    counts = binned.counts.copy()
    counts[:, 3] += 64  # >= 64 x 4 pooled bins = 256: uint8 would saturate
    wide = dataclasses.replace(binned, counts=counts)
    tr = _train((wide, targets, split), 16, None)
    assert tr.encoder_config.window_dtype == "int16" and tr.model.win_counts.dtype == torch.int16
    assert int(tr.model.win_counts.max()) >= 256  # kept exactly, not clamped at 255
    folder = save_checkpoint(tr, tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["encoder"]["window_dtype"]
    (folder / "config.json").write_text(json.dumps(config))
    back = load_checkpoint(folder)
    assert back.encoder_config.window_dtype == "int16"
    x = torch.from_numpy(counts[:160].astype(np.float32)).view(8, 20, N)
    with torch.no_grad():
        for sub in (torch.arange(N), torch.arange(0, N, 4)):
            torch.testing.assert_close(back.model(x[..., sub], sub), tr.model(x[..., sub], sub), rtol=0, atol=0)
