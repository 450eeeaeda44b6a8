"""Benchmark the spike encoder: fidelity vs baselines, window alignment, unseen scenes, batching speed.

Usage
-----
    python benchmarks/bench_encoder.py                 # CPU: simulated session, tiny targets (~10 min on 2 cores)
    python benchmarks/bench_encoder.py --quick         # smaller, for a smoke run
    python benchmarks/bench_encoder.py --gpu           # full size on CUDA: 2,000 units, 18 train repeats x 900
                                                       # frames, 576 x 1024 targets, bf16 (speed only)
    python benchmarks/bench_encoder.py --seeds 5 --units 120 --repeats 8 --frames 300 --epochs 4
                                                       # (d) only: encoder vs ridge / kNN over 5 seeds, with CIs
    add --no-append to print without appending to benchmarks/RESULTS.md

(a) On a simulated session (`neurrator.simulate.simulate_session`: LNP units driven by the pixels and
    the caption features of a procedural movie), targets from the ``tiny`` backbone, split by whole
    repeats: encoder vs ridge vs kNN vs shuffled-frame control on the held-out test repeats; centred vs
    lagged windows; a contiguous block of frames held out from training (unseen scenes).
(b) Training samples/s of device-indexed batching vs a per-item `Dataset` + `DataLoader` feeding the
    same model, in the same run (and the batch-building cost alone).
(c) ``--gpu``: wall time of a full-size training run (fixed number of epochs) in bf16.
(d) ``--seeds N``: the encoder's gains over ridge and kNN (headline metrics: centred patch cosine,
    top-1, top-5, within 1 s; chance from the targets' duplicate structure) over N independent seeds
    (simulated population, movie, split and training all re-seeded), mean with a 95% t interval over
    seeds, and the per-seed block-bootstrap CIs of the encoder's own scores.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurrator.models.backbones import load_backbone
from neurrator.data.binning import Binned, bin_spikes
from neurrator.data.splits import split_repeats
from neurrator.models.encoder import EncoderConfig, SpikeEncoder
from neurrator.decode.fidelity import score_predictions
from neurrator.decode.baselines import evaluate_encoder, ridge_baseline
from neurrator.models.targets import compute_targets
from neurrator.models.training import TrainConfig, _DeviceData, patch_loss, train_encoder

from _hardware import append_results
from _hardware import hardware as _hardware_line


def hardware() -> str:
    return f"{_hardware_line('cuda' if torch.cuda.is_available() else 'cpu')}; python {platform.python_version()}"


def simulated(n_units: int, n_repeats: int, n_frames: int, seed: int, movie_seed: int = 0,
              null_seed: int | None = None):
    """A simulated session and its binned counts; with ``null_seed``, every unit's spikes circularly shifted
    within every repeat by its own uniform lag (`neurrator.simulate.null.circular_shift_spikes`: a global null
    with no stimulus information)."""
    from neurrator.simulate import simulate_session

    sim = simulate_session(n_units=n_units, n_repeats=n_repeats, n_frames=n_frames, seed=seed, movie_seed=movie_seed)
    spikes = sim.spike_times
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in spikes])]).astype(np.int64)
    pres = sim.presentations
    times = np.concatenate(spikes)
    if null_seed is not None:
        from neurrator.data.stimuli import Presentations
        from neurrator.simulate.null import circular_shift_spikes, repeat_spans

        spans = repeat_spans(Presentations(frame=np.asarray(pres["frame"]), start=np.asarray(pres["start"]),
                                           stop=np.asarray(pres["stop"]), repeat=np.asarray(pres["repeat"])))
        times, _ = circular_shift_spikes(times, offsets, spans, seed=null_seed)
    order = np.lexsort((pres["start"], pres["repeat"]))
    counts = bin_spikes(times, offsets, pres["start"][order], pres["stop"][order], bins_per_interval=4)
    binned = Binned(counts=counts, frame=np.asarray(pres["frame"][order], np.int64),
                    repeat=np.asarray(pres["repeat"][order], np.int64), bins_per_frame=4,
                    unit_ids=np.asarray(sim.truth.unit_ids, np.int64))
    return sim, binned


def epochs(tr) -> int:
    return int(tr.history[-1]["epoch"]) + 1 if tr.history else 0


def fmt_scores(name: str, s: dict) -> str:
    return (f"| {name} | {s['patch_cosine']:.3f} ({s['chance_patch_cosine']:.3f}) | {s['mse']:.4f} | "
            f"{s['top1']:.3f} ({s['chance_top1']:.3f}) | {s['top5']:.3f} ({s['chance_top5']:.3f}) | "
            f"{s['within_1s']:.3f} ({s['chance_within_1s']:.3f}) | {s['median_rank']:.0f} |")


HEADER = ("| method | patch cosine (chance) | MSE | top-1 (chance) | top-5 (chance) | within 1 s (chance) | "
          "median rank |\n|---|---|---|---|---|---|---|")


def part_a(args, out: list[str]) -> None:
    t0 = time.perf_counter()
    sim, binned = simulated(args.units, args.repeats, args.frames, args.seed)
    bb = load_backbone("tiny", seed=0)
    targets = compute_targets(sim.frames, bb, batch_size=64)
    split = split_repeats(binned.repeat, n_val=2, n_test=2, seed=args.seed)
    print(f"simulated + binned + targets: {time.perf_counter() - t0:.1f} s; counts {binned.counts.shape}, "
          f"targets {targets.shape}", flush=True)
    enc_kw = dict(d_model=args.d_model, n_latents=args.latents, depth=args.depth, n_heads=4)
    hold = np.arange(args.frames * 2 // 3, args.frames * 2 // 3 + args.frames // 10)
    rows_align = []
    main = None
    for offset in args.offsets:
        cfg = TrainConfig(offset_bins=offset, max_epochs=args.epochs, batch_size=64, lr=args.lr, patience=args.patience,
                          warmup_steps=100, full_set_prob=args.full_set_prob, infonce_weight=args.infonce)
        enc = EncoderConfig(n_units=binned.n_units, n_patches=targets.shape[1], dim=targets.shape[2],
                            window_bins=cfg.window_bins, **enc_kw)
        t1 = time.perf_counter()
        tr = train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=args.seed, progress=False,
                           holdout_frames=hold, target_spec=bb.spec, stimulus="natural_movie_one")
        t_train = time.perf_counter() - t1
        rep = evaluate_encoder(tr, binned, targets, split, fps=30.0, baselines=True,
                               ridge_kwargs={"temporal_pool": args.ridge_pool})
        if offset == args.offsets[0]:  # the un-pooled ridge too (the exact windows the encoder sees)
            p1, _ = ridge_baseline(binned, targets, split, window_bins=cfg.window_bins, offset_bins=offset,
                                   holdout_frames=hold, temporal_pool=1)
            te = np.asarray(split.test)
            seen = ~np.isin(binned.frame[te], hold)
            rep["ridge_pool1"] = {k: v for k, v in score_predictions(p1[seen], binned.frame[te][seen], targets).items()
                                  if not isinstance(v, np.ndarray)}
        print(f"offset {offset}: trained {epochs(tr)} epochs in {t_train:.0f} s; encoder top1 "
              f"{rep['encoder']['top1']:.3f} ridge {rep['ridge']['top1']:.3f}", flush=True)
        rows_align.append((offset, rep, t_train, tr))
        if offset == args.offsets[0]:
            main = (rep, tr, t_train)
    rep, tr, t_train = main
    n_par = tr.model.n_parameters()
    out.append(f"Simulated session (`simulate_session(n_units={args.units}, n_repeats={args.repeats}, "
               f"n_frames={args.frames}, seed={args.seed})`), 120 Hz bins, 20-bin windows; targets: `tiny` "
               f"backbone (64 x 64 tokens, random CLIP ViT, pad preprocessing); split by repeats: "
               f"{len(np.unique(binned.repeat[split.train]))} train / 2 val / 2 test. Frames "
               f"{hold[0]}-{hold[-1]} ({len(hold)} frames, {len(hold) / 30:.0f} s) held out of training and "
               f"validation entirely. Encoder: d_model {args.d_model}, {args.latents} latents, depth {args.depth}, "
               f"linear path rank {tr.encoder_config.linear_rank} (pool {tr.encoder_config.linear_pool} bins, started "
               f"at the closed-form ridge solution), {n_par / 1e3:.0f} k parameters, {epochs(tr)} epochs of "
               f"{math.ceil(len(split.train) / 64)} steps (best step {tr.best_step}; step 0 = the ridge start), "
               f"{t_train:.0f} s training on CPU ({torch.get_num_threads()} thread); loss 0.5 MSE + 0.5 (1 - cos) + "
               f"{args.infonce} InfoNCE (centred, T=0.05); unit subsets: all units with p={args.full_set_prob}, else "
               f"log-uniform 1..{binned.n_units}; lr {args.lr}. Ridge: closed form on the same windows"
               f"{'' if args.ridge_pool == 1 else f' (bins summed in groups of {args.ridge_pool})'}, "
               f"{rep['info']['ridge']['n_features']} features -> {rep['info']['ridge']['n_components']} PCA "
               f"components of the flattened targets, alpha {rep['info']['ridge']['alpha']:g} (chosen on val); "
               f"kNN k={rep['info']['knn']['k']} (chosen on val).\n")
    out.append(f"Test repeats, frames seen in training (offset_bins={args.offsets[0]}):\n\n{HEADER}")
    for name in ("encoder", "ridge", "ridge_pool1", "knn", "shuffled"):
        label = "ridge (bins unpooled)" if name == "ridge_pool1" else name
        out.append(fmt_scores(label, rep[name]))
    e, r = rep["encoder"], rep["ridge"]
    out.append(f"\nEncoder - ridge: patch cosine {e['patch_cosine'] - r['patch_cosine']:+.3f}, top-1 "
               f"{e['top1'] - r['top1']:+.3f}, top-5 {e['top5'] - r['top5']:+.3f}, within 1 s "
               f"{e['within_1s'] - r['within_1s']:+.3f}.\n")
    if "unseen" in rep:
        out.append(f"Unseen scenes (test repeats, held-out frames only; ranked among all {args.frames} frames):"
                   f"\n\n{HEADER}")
        for name in ("encoder", "ridge", "knn", "shuffled"):
            out.append(fmt_scores(name, rep["unseen"][name]))
        out.append("")
    out.append("Window alignment (encoder, seen frames of the test repeats; latencies in the simulation are "
               "30-50 ms = 4-6 bins):\n\n| offset_bins | window (bins rel. to frame onset) | patch cosine | "
               "top-1 | top-5 | within 1 s | ridge top-1 |\n|---|---|---|---|---|---|---|")
    for offset, rp, _, _ in rows_align:
        lo = 4 // 2 - 20 // 2 + offset
        s = rp["encoder"]
        out.append(f"| {offset} | {lo}..{lo + 19} | {s['patch_cosine']:.3f} | {s['top1']:.3f} | {s['top5']:.3f} | "
                   f"{s['within_1s']:.3f} | {rp['ridge']['top1']:.3f} |")
    out.append("")
    args._sim = (binned, targets, split)


class PerItemDataset(torch.utils.data.Dataset):
    """The obvious baseline: one (window, target) pair per __getitem__, from numpy arrays."""

    def __init__(self, binned, targets, idx, window_bins, offset_bins):
        from neurrator.data.binning import window_index

        self.counts = np.asarray(binned.counts)
        self.widx = window_index(binned.frame, binned.repeat, bins_per_frame=binned.bins_per_frame,
                                 window_bins=window_bins, offset_bins=offset_bins)
        self.frame, self.targets, self.idx = binned.frame, targets, idx

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        p = self.idx[i]
        rows = self.widx[p]
        x = np.zeros((len(rows), self.counts.shape[1]), np.float32)
        ok = rows >= 0
        x[ok] = self.counts[rows[ok]]
        return torch.from_numpy(x), torch.from_numpy(self.targets[self.frame[p]])


def part_b(args, out: list[str], device: torch.device, binned=None, targets=None, split=None, steps=40,
           batch=64, enc_kw=None, precision="float32") -> None:
    if binned is None:
        binned, targets, split = args._sim
    enc_kw = enc_kw or dict(d_model=args.d_model, n_latents=args.latents, depth=args.depth, n_heads=4)
    cfg = TrainConfig(batch_size=batch, precision=precision)
    N = binned.n_units
    model = SpikeEncoder(config=EncoderConfig(n_units=N, n_patches=targets.shape[1], dim=targets.shape[2],
                                              window_bins=20, **enc_kw)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tstd = torch.ones(targets.shape[2], device=device)
    units = torch.arange(N, device=device)
    from neurrator.models.training import autocast

    def step(x, y):
        with autocast(device, precision):
            pred = model(x, units)
        loss, _ = patch_loss(pred, y, target_std=tstd, config=cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    data = _DeviceData(binned.counts, binned.frame, binned.repeat, 4, targets, window_bins=20, offset_bins=0,
                       device=device)
    tr = torch.from_numpy(np.asarray(split.train)).to(device)
    g = torch.Generator().manual_seed(0)

    def device_batches():
        while True:
            perm = tr[torch.randperm(len(tr), generator=g).to(device)]
            for i in range(0, len(perm) - batch + 1, batch):
                pres = perm[i : i + batch]
                yield data.windows(pres, units), data.targets[data.frame[pres]]

    loader = torch.utils.data.DataLoader(PerItemDataset(binned, targets, np.asarray(split.train), 20, 0),
                                         batch_size=batch, shuffle=True, num_workers=0, drop_last=True,
                                         pin_memory=device.type == "cuda")

    def loader_batches():
        while True:
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    res = {}
    for name, gen in (("device-indexed", device_batches), ("Dataset+DataLoader", loader_batches)):
        it = gen()
        for _ in range(3):  # warm-up
            step(*next(it))
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            step(*next(it))
        sync()
        train_sps = steps * batch / (time.perf_counter() - t)
        it = gen()
        next(it)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)
        sync()
        build_sps = steps * batch / (time.perf_counter() - t)
        res[name] = (train_sps, build_sps)
        print(f"{name}: train {train_sps:.0f} samples/s, batch building alone {build_sps:.0f} samples/s", flush=True)
    d, l_ = res["device-indexed"], res["Dataset+DataLoader"]
    out.append(f"Batching ({device.type}, {N} units, batch {batch}, {steps} steps, targets "
               f"{targets.shape[1]} x {targets.shape[2]}, same model and optimiser, same run):\n\n"
               "| batches | training samples/s | batch building alone, samples/s |\n|---|---|---|")
    for name, (a, b) in res.items():
        out.append(f"| {name} | {a:.0f} | {b:.0f} |")
    out.append(f"\nDevice-indexed / DataLoader: training x{d[0] / l_[0]:.2f}, batch building x{d[1] / l_[1]:.1f}.\n")


def part_gpu(args, out: list[str]) -> None:
    smoke = args.gpu_smoke
    if not torch.cuda.is_available() and not smoke:
        raise SystemExit("--gpu needs a CUDA device (--gpu-smoke runs a tiny version on the CPU)")
    device = torch.device("cpu" if smoke else "cuda")
    rng = np.random.default_rng(0)
    N, F, R, b = (50, 30, 5, 4) if smoke else (2000, 900, 20, 4)
    P_, D_ = (16, 32) if smoke else (576, 1024)
    rates = rng.gamma(2.0, 0.05, size=(F, N)).astype(np.float32)
    t0 = time.perf_counter()
    counts = rng.poisson(np.repeat(np.tile(rates, (R, 1)), b, 0)).astype(np.uint16)
    binned = Binned(counts=counts, frame=np.tile(np.arange(F), R), repeat=np.repeat(np.arange(R), F),
                    bins_per_frame=b, unit_ids=np.arange(N))
    targets = rng.standard_normal((F, P_, D_), dtype=np.float32)
    split = split_repeats(binned.repeat, n_val=2, n_test=0, seed=0)
    print(f"data built in {time.perf_counter() - t0:.0f} s", flush=True)
    enc_kw = dict(d_model=args.gpu_d_model, n_latents=64, depth=2, n_heads=8)
    cfg = TrainConfig(max_epochs=args.gpu_epochs, batch_size=args.gpu_batch, precision="bfloat16", patience=100,
                      lr=1e-3)
    enc = EncoderConfig(n_units=N, n_patches=P_, dim=D_, window_bins=20, **enc_kw)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    tr = train_encoder(binned, targets, split, config=cfg, encoder=enc, device=device, seed=0, progress=True)
    sync()
    wall = time.perf_counter() - t
    n_train = len(split.train)
    name = "CPU smoke run (not a result)" if smoke else torch.cuda.get_device_name(0)
    out.append(f"Full size on {name}: {N} units, {len(np.unique(binned.repeat[split.train]))} "
               f"training repeats x {F} frames ({n_train} windows), 2 validation repeats, "
               f"{P_} x {D_} targets, bf16 autocast, batch {cfg.batch_size}, encoder d_model {enc.d_model} ({tr.model.n_parameters() / 1e6:.1f} M "
               f"parameters): {epochs(tr)} epochs (validation every epoch) in {wall:.0f} s = "
               f"{wall / max(1, epochs(tr)):.1f} s/epoch, {n_train * epochs(tr) / wall:.0f} training samples/s "
               f"(paper's code: ~10 min per session; target < 2 min).\n")
    part_b(args, out, device, binned, targets, split, steps=30, batch=args.gpu_batch, enc_kw=enc_kw,
           precision="bfloat16")


SEED_METRICS = ("centred_patch_cosine", "top1", "top5", "within_1s")


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x`` over seeds and its Student-t interval."""
    from scipy import stats as sps

    x = np.asarray(x, dtype=np.float64)
    m = float(np.mean(x))
    if len(x) < 2:
        return m, float("nan"), float("nan")
    h = float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x)))
    return m, m - h, m + h


def part_seeds(args, out: list[str]) -> None:
    """(d) encoder - ridge and encoder - kNN over ``args.seeds`` seeds."""
    bb = load_backbone("tiny", seed=0)
    per_seed = []
    t_all = time.perf_counter()
    for seed in range(args.seed, args.seed + args.seeds):
        t0 = time.perf_counter()
        sim, binned = simulated(args.units, args.repeats, args.frames, seed, movie_seed=seed)
        targets = compute_targets(sim.frames, bb, batch_size=64)
        split = split_repeats(binned.repeat, n_val=2, n_test=2, seed=seed)
        cfg = TrainConfig(offset_bins=args.offsets[0], max_epochs=args.epochs, batch_size=64, lr=args.lr,
                          patience=args.patience, warmup_steps=100, full_set_prob=args.full_set_prob,
                          infonce_weight=args.infonce)
        enc = EncoderConfig(n_units=binned.n_units, n_patches=targets.shape[1], dim=targets.shape[2],
                            window_bins=cfg.window_bins, d_model=args.d_model, n_latents=args.latents,
                            depth=args.depth, n_heads=4)
        torch.manual_seed(seed)
        tr = train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=seed, progress=False,
                           target_spec=bb.spec, stimulus="natural_movie_one")
        rep = evaluate_encoder(tr, binned, targets, split, fps=30.0, baselines=True, seed=seed,
                               ridge_kwargs={"temporal_pool": args.ridge_pool}, n_boot=args.n_boot)
        per_seed.append(rep)
        e, r, k = rep["encoder"], rep["ridge"], rep["knn"]
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s, {epochs(tr)} epochs; top1 encoder {e['top1']:.3f} "
              f"ridge {r['top1']:.3f} knn {k['top1']:.3f} (chance {e['chance_top1']:.4f}); centred cosine "
              f"{e['centred_patch_cosine']:.3f} / {r['centred_patch_cosine']:.3f} / {k['centred_patch_cosine']:.3f}",
              flush=True)
    wall = time.perf_counter() - t_all
    n = len(per_seed)
    e0 = per_seed[0]["encoder"]
    out.append(f"Encoder vs ridge and kNN over {n} seeds (seeds {args.seed}..{args.seed + n - 1}; each seed "
               f"re-draws the simulated population and movie (`simulate_session(n_units={args.units}, "
               f"n_repeats={args.repeats}, n_frames={args.frames}, seed=s, movie_seed=s)`), the split by repeats "
               f"(2 val / 2 test) and the training; `tiny` backbone targets; encoder d_model {args.d_model}, "
               f"{args.latents} latents, depth {args.depth}, {args.epochs} epochs max (patience {args.patience}); "
               f"ridge bins pooled by {args.ridge_pool}; {wall:.0f} s for all seeds). Test repeats, "
               f"{e0['n']} windows per seed; centred patch cosine uses the training frames' mean map; chance "
               f"from the targets' duplicate structure (seed {args.seed}: {e0['n_groups']} distinct maps of "
               f"{args.frames} frames, top-1 chance {e0['chance_top1']:.4f} vs 1/F = {1 / args.frames:.4f}).\n")
    out.append("Per method, mean over seeds [95% t interval over seeds] (chance in parentheses, mean over seeds):\n")
    out.append("| method | " + " | ".join(SEED_METRICS) + " |\n|---|" + "---|" * len(SEED_METRICS))
    for name in ("encoder", "ridge", "knn", "shuffled"):
        cells = []
        for m in SEED_METRICS:
            v, lo, hi = t_interval([rp[name][m] for rp in per_seed])
            ch = np.mean([rp[name][f"chance_{m}"] for rp in per_seed])
            cells.append(f"{v:.3f} [{lo:.3f}, {hi:.3f}] ({ch:.3f})")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("\nGains, mean over seeds [95% t interval over seeds]; wins = seeds where the encoder is ahead:\n")
    out.append("| comparison | " + " | ".join(SEED_METRICS) + " |\n|---|" + "---|" * len(SEED_METRICS))
    for base in ("ridge", "knn"):
        cells = []
        for m in SEED_METRICS:
            d = np.array([rp["encoder"][m] - rp[base][m] for rp in per_seed])
            v, lo, hi = t_interval(d)
            cells.append(f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}], {int(np.sum(d > 0))}/{n} wins")
        out.append(f"| encoder - {base} | " + " | ".join(cells) + " |")
    out.append("\nPer seed, encoder top-1 and centred patch cosine with their block-bootstrap 95% CIs over test "
               "windows (1-s blocks):\n\n| seed | top-1 [CI] | ridge top-1 | centred cosine [CI] | ridge centred "
               "cosine |\n|---|---|---|---|---|")
    for seed, rp in zip(range(args.seed, args.seed + n), per_seed):
        e, r = rp["encoder"], rp["ridge"]
        out.append(f"| {seed} | {e['top1']:.3f} [{e['top1_ci_lo']:.3f}, {e['top1_ci_hi']:.3f}] | {r['top1']:.3f} | "
                   f"{e['centred_patch_cosine']:.3f} [{e['centred_patch_cosine_ci_lo']:.3f}, "
                   f"{e['centred_patch_cosine_ci_hi']:.3f}] | {r['centred_patch_cosine']:.3f} |")
    out.append("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--units", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--infonce", type=float, default=1.0)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--latents", type=int, default=16)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--ridge-pool", type=int, default=4, help="bins summed per ridge feature (4 is its best here)")
    ap.add_argument("--offsets", type=int, nargs="+", default=[0, 4, 8])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a contended machine)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--full-set-prob", type=float, default=0.8)
    ap.add_argument("--gpu-epochs", type=int, default=10)
    ap.add_argument("--gpu-batch", type=int, default=128)
    ap.add_argument("--gpu-d-model", type=int, default=256)
    ap.add_argument("--gpu-smoke", action="store_true", help="run the --gpu code path tiny on the CPU (no append)")
    ap.add_argument("--seeds", type=int, default=0, help="run only (d): encoder vs baselines over this many seeds")
    ap.add_argument("--n-boot", type=int, default=1000, help="block-bootstrap resamples per CI")
    args = ap.parse_args()
    if args.quick:
        args.units, args.repeats, args.frames, args.epochs, args.offsets = 60, 8, 300, 4, [0, 4]
    torch.manual_seed(args.seed)
    if not args.gpu:
        torch.set_num_threads(args.threads)
    out: list[str] = []
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    if args.gpu_smoke:
        args.gpu, args.no_append, args.gpu_epochs, args.gpu_batch, args.gpu_d_model = True, True, 2, 16, 32
    if args.gpu:
        part_gpu(args, out)
    elif args.seeds:
        part_seeds(args, out)
    else:
        part_a(args, out)
        part_b(args, out, torch.device("cpu"))
    title = "Encoder vs baselines over seeds" if args.seeds and not args.gpu else "Encoder"
    text = (f"\n## {title}\n\n`python benchmarks/bench_encoder.py {' '.join(sys.argv[1:])}`, {stamp}, "
            f"{time.perf_counter() - t0:.0f} s total. Hardware: {hardware()}.\n\n" + "\n".join(out) + "\n")
    print(text)
    if not args.no_append:
        append_results(text)


if __name__ == "__main__":
    main()
