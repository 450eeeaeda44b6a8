"""Binned counts + patch targets + a repeat split -> a trained `SpikeEncoder` (`TrainedEncoder`).

All training data sit on the device before the first step: the counts ``(P*b + 1, N)`` float32 (last
row zeros, read where a window leaves its repeat), the window row index ``(P, W)`` and the targets
``(F, n_patches, dim)``. A batch is two index operations (rows, then the batch's unit subset) and a
gather of targets by frame: no per-sample Python work, no DataLoader.

Each batch draws one unit subset: with probability ``full_set_prob`` all N units, otherwise a size k
log-uniform in ``[min_units, max_units]`` and k units uniformly at random, so 10 units and 2,000
units are both in distribution. Validation (for early stopping) uses all units.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurrator.models.backbones import TargetSpec
from neurrator.component_config import WINDOW_DTYPES, EncoderConfig, TrainConfig
from neurrator.models.encoder import SpikeEncoder
from neurrator.errors import NeurratorError
from neurrator.data.binning import window_index
from neurrator.models.targets import fit_pca
from neurrator.models.readout import bank_plan, candidate_rows, fit_blend
from neurrator.models.linear_init import flat_pca, init_linear, linear_penalty
from neurrator.models.subset_ridge import gram_rank_plan
from neurrator.io.progress import Progress

__all__ = ["TrainConfig", "TrainedEncoder", "patch_loss", "train_encoder"]

@dataclass
class TrainedEncoder:
    """A trained encoder and everything needed to use, save and cite it.

    Attributes
    ----------
    model
        The `SpikeEncoder` (eval mode, best validation weights).
    encoder_config, train_config
    history
        One dict per validation: step, epoch, train_loss, val_loss, val_cosine, lr, seconds.
    unit_ids
        (n_units,) int64 unit id of each row of the unit table (= ``Binned.unit_ids`` it was trained on).
    target_spec
        What the targets are (backbone, layer, preprocessing), when given.
    stimulus
        Movie name, when given.
    seed
    best_step
        Step of the kept weights.
    holdout_frames
        (k,) int64 movie frames excluded from training entirely (unseen-scene evaluation).
    extra
        Free-form JSON-able metadata (e.g. session ids of pooled units).
    """

    model: SpikeEncoder
    encoder_config: EncoderConfig
    train_config: TrainConfig
    history: list[dict[str, float]]
    unit_ids: np.ndarray
    target_spec: TargetSpec | None = None
    stimulus: str | None = None
    seed: int = 0
    best_step: int = 0
    holdout_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    extra: dict[str, Any] = field(default_factory=dict)

    def unit_rows(self, unit_ids: np.ndarray) -> np.ndarray:
        """Unit ids -> rows of the unit table; NeurratorError for units the encoder never saw."""
        lookup = {int(u): i for i, u in enumerate(self.unit_ids)}
        try:
            return np.array([lookup[int(u)] for u in np.asarray(unit_ids).ravel()], dtype=np.int64)
        except KeyError as e:
            raise NeurratorError(None, f"unit id {e.args[0]} is not one of the encoder's {len(lookup)} "
                                 "training units; an encoder decodes only units it was trained with") from None


# ------------------------------------------------------------------------------------------- loss


def patch_loss(pred: torch.Tensor, target: torch.Tensor, *, target_std: torch.Tensor, config: TrainConfig,
               frame: torch.Tensor | None = None,
               target_mean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training loss on (B, n_patches, dim) tokens; returns (loss, mean patch cosine).

    MSE is taken on tokens divided by the per-dimension std of the training targets (so CLIP's few
    large-magnitude dimensions do not dominate); cosine per patch, on raw tokens or (``centred_cosine``)
    on tokens minus ``target_mean`` (the reported centred patch cosine); the returned cosine is the raw one. InfoNCE compares
    flattened predictions with the batch's targets, both centred by ``target_mean`` (the training
    mean map; without it the shared mean map dominates every cosine) and standardised; ``frame`` (B,) marks repeats of the same
    frame in a batch as positives too.
    """
    pred, target = pred.float(), target.float()
    cos = F.cosine_similarity(pred, target, dim=-1).mean()
    if config.centred_cosine and target_mean is not None:
        ccos = F.cosine_similarity(pred - target_mean, target - target_mean, dim=-1).mean()
        loss = config.cos_weight * (1.0 - ccos)
    else:
        loss = config.cos_weight * (1.0 - cos)
    if config.mse_weight:
        loss = loss + config.mse_weight * ((pred - target) / target_std).pow(2).mean()
    if config.infonce_weight:
        m = 0.0 if target_mean is None else target_mean
        p = F.normalize(((pred - m) / target_std).flatten(1), dim=-1)
        t = F.normalize(((target - m) / target_std).flatten(1), dim=-1)
        logits = p @ t.T / config.temperature
        if frame is None:
            pos = torch.eye(len(p), device=p.device)
        else:
            pos = (frame[:, None] == frame[None, :]).float()
        nce = -(F.log_softmax(logits, dim=1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
        loss = loss + config.infonce_weight * nce
    return loss, cos


# ------------------------------------------------------------------------------------------- data


class _DeviceData:
    """Counts, window index and targets on the device; batches by indexing."""

    def __init__(self, counts: np.ndarray, frame: np.ndarray, repeat: np.ndarray, bins_per_frame: int,
                 targets: np.ndarray | None, *, window_bins: int, offset_bins: int, device) -> None:
        counts = np.asarray(counts)
        R, N = counts.shape
        # float32 (exact for counts < 2**24): column gathers of int16 are ~10x slower on CPU
        c = np.zeros((R + 1, N), dtype=np.float32)
        c[:R] = counts
        self.counts = torch.from_numpy(c).to(device)
        widx = window_index(frame, repeat, bins_per_frame=bins_per_frame, window_bins=window_bins,
                            offset_bins=offset_bins)
        widx = np.where(widx < 0, R, widx)
        self.widx = torch.from_numpy(widx).to(device)
        self.frame = torch.from_numpy(np.asarray(frame, dtype=np.int64)).to(device)
        self.targets = None if targets is None else torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(device)
        self.W = window_bins

    def windows(self, pres: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """(B,) presentations, (k,) columns -> (B, W, k) float32 counts."""
        rows = self.widx[pres].reshape(-1)
        x = self.counts.index_select(0, rows).index_select(1, units)
        return x.view(len(pres), self.W, len(units))


def _unit_stats(data: _DeviceData, pres: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of log1p(counts) per unit over the bins of the given presentations."""
    rows = (pres[:, None] * b + torch.arange(b, device=pres.device)[None, :]).reshape(-1)
    N = data.counts.shape[1]
    s = torch.zeros(N, dtype=torch.float64, device=rows.device)
    s2 = torch.zeros_like(s)
    for i in range(0, len(rows), 16384):
        x = torch.log1p(data.counts.index_select(0, rows[i : i + 16384]).double())
        s += x.sum(0)
        s2 += (x * x).sum(0)
    n = max(1, len(rows))
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float().clamp_min(0.05)


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = min(cfg.warmup_steps, max(1, total // 10))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def autocast(device: torch.device, precision: str):
    import contextlib

    if precision == "bfloat16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------- training


def train_encoder(
    binned,
    targets: np.ndarray,
    split,
    *,
    config: TrainConfig,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
    encoder: EncoderConfig | None = None,
    target_spec: TargetSpec | None = None,
    stimulus: str | None = None,
    holdout_frames: np.ndarray | None = None,
    unit_session: np.ndarray | None = None,
) -> TrainedEncoder:
    """Train a `SpikeEncoder` on the training repeats, early-stopped on the validation repeats.

    Parameters
    ----------
    binned
        `neurrator.data.binning.Binned`: counts (P*b, N) uint16, frame (P,), repeat (P,), bins_per_frame, unit_ids (N,).
    targets
        (F, n_patches, dim) float32 patch tokens per movie frame (``binned.frame`` indexes it).
    split
        `Split` (train, val, test presentation indices); test is never touched here.
    config
        `TrainConfig`.
    device, seed
        Where to train; the seed fixes initialisation, batch order, unit subsets and dropout.
    progress
        tqdm bar over steps with the running loss (False: heartbeat log lines, `neurrator.io.progress`).
    encoder
        Architecture; None builds ``EncoderConfig(n_units=N, n_patches, dim, window_bins)`` with defaults.
        Its n_units / n_patches / dim / window_bins must match the data.
    target_spec, stimulus
        Recorded in the result (and checkpoints).
    holdout_frames
        Movie frames whose presentations are dropped from training and validation (unseen scenes).
    unit_session
        (N,) int session tag per unit for pooled multi-session units (default: all 0).

    Returns
    -------
    TrainedEncoder
    """
    device = torch.device(device)
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 3:
        raise ValueError(f"targets must be (F, n_patches, dim), got {targets.shape}")
    N = int(binned.counts.shape[1])
    F_, n_patches, dim = targets.shape
    if len(binned.frame) and int(np.max(binned.frame)) >= F_:
        raise ValueError(f"binned.frame goes up to {int(np.max(binned.frame))} but there are {F_} targets")
    if encoder is None:
        encoder = EncoderConfig(n_units=N, n_patches=n_patches, dim=dim, window_bins=config.window_bins,
                                n_sessions=1 if unit_session is None else int(np.max(unit_session)) + 1,
                                out_components=config.pca_components)
    if (encoder.n_units, encoder.n_patches, encoder.dim, encoder.window_bins) != (N, n_patches, dim, config.window_bins):
        raise ValueError(f"encoder config (n_units={encoder.n_units}, n_patches={encoder.n_patches}, dim={encoder.dim}, "
                         f"window_bins={encoder.window_bins}) does not match the data ({N}, {n_patches}, {dim}, "
                         f"{config.window_bins})")
    holdout = np.unique(np.asarray(holdout_frames if holdout_frames is not None else [], dtype=np.int64))
    train_idx = np.asarray(split.train, dtype=np.int64)
    val_idx = np.asarray(split.val, dtype=np.int64)
    if holdout.size:
        train_idx = train_idx[~np.isin(binned.frame[train_idx], holdout)]
        val_idx = val_idx[~np.isin(binned.frame[val_idx], holdout)]
    if train_idx.size == 0 or val_idx.size == 0:
        raise ValueError("the split leaves no training or no validation presentations")
    train_frames = np.unique(binned.frame[train_idx])

    T = -(-config.window_bins // encoder.linear_pool)
    if encoder.linear_rank and not encoder.gram_rank:  # too many features for the full Gram: factor it
        encoder = replace(encoder, gram_rank=gram_rank_plan(N * T, len(train_idx), encoder.subset_ridge))
    if encoder.blend:  # uint8 window counts when no pooled count can exceed 255 (lossless), else int16
        wide = int(binned.counts.max(initial=0)) * encoder.linear_pool > WINDOW_DTYPES["uint8"]
        bank, rank, wins = bank_plan(len(train_frames), n_patches, dim, encoder.linear_rank, len(train_idx), N * T,
                                     knn=encoder.window_knn, count_bytes=2 if wide else 1)
        encoder = replace(encoder, bank_frames=bank, bank_rank=rank, window_bank=wins,
                          window_dtype="int16" if wide else "uint8")
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = SpikeEncoder(config=encoder).to(device)
        data = _DeviceData(binned.counts, binned.frame, binned.repeat, binned.bins_per_frame, targets,
                           window_bins=config.window_bins, offset_bins=config.offset_bins, device=device)
        tr = torch.from_numpy(train_idx).to(device)
        va = torch.from_numpy(val_idx).to(device)
        # statistics from training data only
        model.set_unit_stats(*_unit_stats(data, tr, binned.bins_per_frame))
        tf = torch.from_numpy(train_frames).to(device)
        tmean = data.targets[tf].mean(0)
        tstd = (data.targets[tf] - tmean).reshape(-1, dim).std(0)
        model.set_target_stats(tmean, tstd)
        if encoder.linear_rank:
            model.set_linear_basis(*flat_pca((data.targets[tf] - tmean) / tstd.clamp_min(1e-6), encoder.linear_rank))
            lin_l2 = init_linear(model, data, tr, va, config)
        else:
            lin_l2 = 0.0
        if config.linear_l2 is not None:
            lin_l2 = config.linear_l2
        if encoder.out_components is not None:
            basis = fit_pca(targets[train_frames] - tmean.cpu().numpy(), n_components=encoder.out_components)
            coef_std = np.sqrt(np.maximum(basis.explained, 1e-12) *
                               float(((targets[train_frames] - tmean.cpu().numpy()) ** 2).sum(-1).mean()))
            model.set_output_basis(torch.from_numpy(basis.components), torch.from_numpy(coef_std.astype(np.float32)))
        if unit_session is not None:
            model.set_unit_sessions(torch.as_tensor(np.asarray(unit_session, dtype=np.int64), device=device))

        history, best_step = _fit(model, data, tr, va, N, tstd, config, device, seed, progress, lin_l2)
        best_state, best_step = best_step
    model.load_state_dict(best_state)
    model.eval()
    rep = np.asarray(binned.repeat)  # the repeats fitted and validated on (`calibrate_blend` refuses the former)
    extra = {"repeats": {"train": np.unique(rep[train_idx]).tolist(), "val": np.unique(rep[val_idx]).tolist()}}
    if encoder.blend:
        units = torch.arange(N, device=device)
        if model.has_window_bank:  # every training window, or evenly spaced ones (`bank_plan`)
            kept = tr[torch.linspace(0, len(tr) - 1, encoder.window_bank, device=tr.device).round().long()]
            with torch.no_grad():
                pooled = torch.cat([model.pooled_counts(data.windows(kept[i : i + 256], units))
                                    for i in range(0, len(kept), 256)])
            model.set_window_bank(pooled, torch.searchsorted(tf, data.frame[kept]))
        cand, pos = candidate_rows(F_, holdout, data.frame[va])
        extra["blend"] = fit_blend(model, lambda rows: (data.windows(va[rows], units), units), pos, data.targets[cand],
                                   data.targets[tf] if encoder.bank_frames else None, seed=seed)
    return TrainedEncoder(model=model, encoder_config=encoder, train_config=config, history=history,
                          unit_ids=np.asarray(binned.unit_ids, dtype=np.int64).copy(), target_spec=target_spec,
                          stimulus=stimulus, seed=int(seed), best_step=best_step, holdout_frames=holdout,
                          extra=extra)


def _fit(model, data, tr, va, N, tstd, cfg: TrainConfig, device, seed, progress, lin_l2: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    lin = [p for n, p in model.named_parameters() if n.startswith("lin_")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("lin_")]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if lin:  # the penalty is the linear path's regulariser; no decoupled decay on top
        groups.append({"params": lin, "lr_scale": cfg.linear_lr_scale, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(tr) / cfg.batch_size)
    total = steps_per_epoch * cfg.max_epochs
    eval_every = cfg.eval_every or steps_per_epoch
    kmax = N if cfg.max_units is None else min(N, cfg.max_units)
    kmin = min(cfg.min_units, kmax)
    all_units = torch.arange(N, device=device)
    # early stopping reads all units and one fixed random draw per size of cfg.val_subsets
    vgen = torch.Generator().manual_seed(seed + 7919)
    val_sets = [all_units] + [torch.randperm(N, generator=vgen)[:k].sort().values.to(device)
                              for k in cfg.val_subsets if k < N]
    history: list[dict[str, float]] = []
    # the starting point (the closed-form linear path) is a candidate too
    val_loss, val_cos = _validate(model, data, va, val_sets, tstd, cfg, device)
    history.append({"step": 0, "epoch": -1, "val_loss": val_loss, "val_cosine": val_cos,
                    "lr": 0.0, "seconds": 0.0})
    best = (val_loss, copy.deepcopy(model.state_dict()), 0)
    bad = 0
    running = None
    t0 = time.perf_counter()
    bar = Progress(total, desc="encoder", bars=progress, unit="steps")
    step = 0
    stop = False
    for epoch in range(cfg.max_epochs):
        perm = tr[torch.randperm(len(tr), generator=gen).to(device)]
        model.train()
        for i in range(steps_per_epoch):
            pres = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            if kmax == N and (kmin == N or rng.random() < cfg.full_set_prob):
                units = all_units
            else:
                k = int(round(math.exp(rng.uniform(math.log(kmin), math.log(kmax)))))
                units = torch.randperm(N, generator=gen)[: max(kmin, min(kmax, k))].to(device)
            x = data.windows(pres, units)
            frame = data.frame[pres]
            y = data.targets[frame]
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg) * g["lr_scale"]
            with autocast(device, cfg.precision):
                pred = model(x, units)
            loss, _ = patch_loss(pred, y, target_std=tstd, config=cfg, frame=frame, target_mean=model.target_mean)
            if lin_l2 and model.config.linear_rank:
                loss = loss + linear_penalty(model, cfg, lin_l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            ld = loss.detach()
            running = ld if running is None else 0.95 * running + 0.05 * ld
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(running):.4f}")
            if step % eval_every == 0 or step == total:
                val_loss, val_cos = _validate(model, data, va, val_sets, tstd, cfg, device)
                history.append({"step": step, "epoch": epoch, "train_loss": float(running), "val_loss": val_loss,
                                "val_cosine": val_cos, "lr": opt.param_groups[0]["lr"],
                                "seconds": time.perf_counter() - t0})
                bar.set_postfix(loss=f"{float(running):.4f}", val=f"{val_loss:.4f}")
                if val_loss < best[0] - 1e-6:
                    best = (val_loss, copy.deepcopy(model.state_dict()), step)
                    bad = 0
                else:
                    bad += 1
                    if bad >= cfg.patience:
                        stop = True
                        break
                model.train()
        if stop:
            break
    bar.close()
    return history, (best[1], best[2])


@torch.no_grad()
def _validate(model, data, va, unit_sets, tstd, cfg, device, batch: int = 256) -> tuple[float, float]:
    """Validation loss averaged over the unit sets (all units first) and the patch cosine of all units."""
    model.eval()
    losses = []
    for j, units in enumerate(unit_sets):
        tot_loss = tot_cos = 0.0
        for i in range(0, len(va), batch):
            pres = va[i : i + batch]
            with autocast(device, cfg.precision):
                pred = model(data.windows(pres, units), units)
            frame = data.frame[pres]
            loss, cos = patch_loss(pred, data.targets[frame], target_std=tstd, config=cfg, frame=frame,
                                   target_mean=model.target_mean)
            tot_loss += float(loss) * len(pres)
            tot_cos += float(cos) * len(pres)
        losses.append(tot_loss / len(va))
        if j == 0:
            cos_all = tot_cos / len(va)
    return float(np.mean(losses)), cos_all


