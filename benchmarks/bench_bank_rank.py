"""What the blend loses when its bank is kept as coefficients (issue 28, real dimensions).

At CLIP ViT-L/14-336's 576 x 1024 the training frames' maps (2.1 GB for 900 frames) exceed the bank's cap
(`neurrator.models.readout.MAX_BANK_BYTES`), so training keeps their coefficients in the linear path's basis
(``EncoderConfig.bank_rank``: rank 64, the pipeline's cap at those dimensions) and, when the training windows
do not fit either, evenly spaced ones (`neurrator.models.readout.bank_plan`). This benchmark reproduces both
fall-backs on the simulated sessions of bench_peers.py (300 frames, so rank 64 is lossy as 64 of 900 is) by
forcing them, and scores the test repeats under six configurations trained with the same seed:

- ``rank 256, maps``: the library default at these dimensions (linear rank 256, full-map bank, every window);
- ``rank 64, maps``: the linear rank of real dimensions, full-map bank (what a larger cap would keep);
- ``rank 64, coefficients``: the bank as rank-64 coefficients, every training window;
- ``rank 64, coefficients, windows cut 2.4x``: also only 1 in 2.4 training windows, as at real dimensions with
  uint8 counts (`EncoderConfig.window_dtype`: 6,710 of 16,200 for 2,000 units and 18 training repeats; run
  with ``--repeats 20`` for as many windows per frame as there: 7.5);
- ``rank 64, coefficients, windows cut 4.7x``: 1 in 4.7, as at real dimensions with the int16 counts kept
  before (3,355 of 16,200: 3.4 windows per frame at ``--repeats 20``; with the default 8 repeats 255 windows
  are left, under `MIN_WINDOW_BANK`: none kept);
- ``rank 64, no bank``: no retrieval and no kNN, what real dimensions got before (blend: encoder only).

All units and native subsets of 10 and 30 units (3 draws each); paired differences over sessions.

    .venv/bin/python benchmarks/bench_bank_rank.py                         # 5 sessions, appends RESULTS.md
    .venv/bin/python benchmarks/bench_bank_rank.py --repeats 20 --seeds 3  # windows per frame as at real size
    .venv/bin/python benchmarks/bench_bank_rank.py --real-dims             # time fit_blend at full size, and
                                                                           # one 30-unit subset's choice
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hardware import PeakRSS, append_results, hardware, publish  # noqa: E402
from bench_encoder import simulated, t_interval  # noqa: E402
from bench_peers import encoder_configs, score  # noqa: E402

from neurrator.data.splits import split_repeats  # noqa: E402
from neurrator.decode.chance import duplicate_groups  # noqa: E402
from neurrator.models import readout  # noqa: E402
from neurrator.models.backbones import load_backbone  # noqa: E402
from neurrator.models.prediction import predict  # noqa: E402
from neurrator.models.targets import compute_targets  # noqa: E402
from neurrator.models.subset_ridge import FactoredGram, gram_rank_plan  # noqa: E402
from neurrator.models.training import train_encoder  # noqa: E402

#: name -> (linear rank, maps kept as coefficients, bank cap in bytes given (training windows, bytes per window);
#: None = the library's)
CONDITIONS = {
    "rank 256, maps": (256, False, None),
    "rank 64, maps": (64, False, None),
    "rank 64, coefficients": (64, True, None),
    "rank 64, coefficients, windows cut 2.4x": (64, True, lambda n, b: int(n / 2.4) * b),
    "rank 64, coefficients, windows cut 4.7x": (64, True, lambda n, b: int(n / 4.7) * b),
    "rank 64, no bank": (64, True, lambda n, b: 1024),
}
METRICS = ("top1", "top5", "within_1s", "centred_patch_cosine", "w1s_30", "w1s_10")


def scored_conditions(seed: int, args, bb, conditions: dict, train) -> dict:
    """One simulated session: ``train(value, binned, targets, split)`` -> TrainedEncoder for each condition
    (name -> value), scored on the test repeats with all units and native 10- and 30-unit subsets (3 draws)."""
    sim, binned = simulated(args.units, args.repeats, args.frames, seed, movie_seed=seed)
    targets = compute_targets(sim.frames, bb, batch_size=64)
    split = split_repeats(binned.repeat, n_val=2, n_test=2, seed=seed)
    te = np.asarray(split.test)
    train_frames = np.unique(binned.frame[np.asarray(split.train)])
    groups = duplicate_groups(targets)
    sc = lambda p: score(p, binned.frame[te], targets, train_frames, groups, 30.0)  # noqa: E731
    rng = np.random.default_rng(1000 + seed)
    subsets = {k: [np.sort(rng.choice(binned.n_units, k, replace=False)) for _ in range(3)] for k in (30, 10)}
    out = {}
    for name, value in conditions.items():
        t0 = time.perf_counter()
        tr = train(value, binned, targets, split)
        secs = time.perf_counter() - t0
        e = tr.encoder_config
        r = {k: v for k, v in sc(predict(tr, binned, te)).items() if k in METRICS}
        for k, draws in subsets.items():
            r[f"w1s_{k}"] = float(np.mean([sc(predict(tr, binned, te, unit_idx=c))["within_1s"] for c in draws]))
        r["kept"] = (f"bank {e.bank_frames} x {e.bank_rank or 'map'}, {e.window_bank} windows, Gram "
                     + (f"rank {e.gram_rank}" if e.gram_rank else "full" if tr.model.has_subset_ridge else "none"))
        r["secs"] = secs
        out[name] = r
        print(f"session {seed} {name}: " + ", ".join(f"{m} {r[m]:.3f}" for m in METRICS) + f" ({r['kept']}, "
              f"{secs:.0f} s)", flush=True)
    return out


def session(seed: int, args, bb) -> dict:
    def train(cond, binned, targets, split):
        rank, coef, cap = cond
        cfg, enc = encoder_configs(args, binned.n_units, targets, linear_rank=rank)
        saved = readout.MAX_BANK_BYTES, readout.bank_fits
        if cap is not None:
            readout.MAX_BANK_BYTES = cap(len(split.train), binned.n_units * 5)  # uint8 counts (all < 64 here)
        if coef:  # as at 576 x 1024: the full maps do not fit (bank_plan reads bank_fits)
            readout.bank_fits = lambda *a: False
        try:
            return train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=seed, progress=False)
        finally:
            readout.MAX_BANK_BYTES, readout.bank_fits = saved

    return scored_conditions(seed, args, bb, CONDITIONS, train)


def tables(runs: list[dict], pairs) -> list[str]:
    """Mean [95% t] per condition over sessions, then the paired differences ``(a, b)`` of ``pairs``."""
    names = list(runs[0])
    out = ["| configuration | " + " | ".join(METRICS) + " | train s |", "|---" * (len(METRICS) + 2) + "|"]
    for n in names:
        cells = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in (t_interval([r[n][k] for r in runs]) for k in METRICS)]
        out.append(f"| {n} | " + " | ".join(cells) + f" | {np.mean([r[n]['secs'] for r in runs]):.1f} |")
    out += ["", "Paired difference, mean [95% t interval over sessions], sessions ahead:", "",
            "| comparison | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for a, b in pairs:
        cells = []
        for k in METRICS:
            d = np.array([r[a][k] - r[b][k] for r in runs])
            m, lo, hi = t_interval(d)
            cells.append(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}], {int(np.sum(d > 0))}/{len(d)}")
        out.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
    return out


def setup(args) -> None:
    """bench_peers.py's encoder: library defaults except these (encoder_configs reads them); 1 torch thread."""
    torch.set_num_threads(1)
    args.enc, args.val_subsets, args.no_window_knn = dict(d_model=64, n_latents=16, depth=1), [10, 30, 100], False


def header(title: str, args, runs: list[dict], secs: float) -> list[str]:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    script = Path(sys.argv[0]).name
    return [f"\n## {title} ({script}, {now})\n",
            f"`python benchmarks/{script} {' '.join(sys.argv[1:])}`, {secs:.0f} s. Hardware: {hardware('cpu')}.", "",
            f"{args.seeds} x `simulate_session(n_units={args.units}, n_repeats={args.repeats}, n_frames={args.frames}, "
            f"seed=s, movie_seed=s)`, `tiny` targets (64 x 64), {args.repeats - 4} train / 2 val / 2 test repeats, "
            "bench_peers.py's "
            f"encoder (d_model 64, 16 latents, depth 1, max {args.epochs} epochs), same seed in every configuration. "
            "Test repeats; w1s_k: within 1 s of native k-unit subsets (mean of 3 draws). Kept: "
            + "; ".join(f"{n}: {runs[0][n]['kept']}" for n in runs[0]) + " (session 0).", ""]


def arguments(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--units", type=int, default=120)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--no-append", action="store_true")
    return ap


def real_dims(args) -> list[str]:
    """`fit_blend` at full size: 2,000 units, 900 bank frames of 576 x 1024 kept as rank-64 coefficients, as many
    training windows as fit, the validation windows capped by `MAX_GRID_BYTES`; random weights and data (the
    choice means nothing, its time and memory are what is measured)."""
    import psutil

    from neurrator.models.encoder import EncoderConfig, SpikeEncoder

    N, F_, P_, D_, T = 2000, 900, 576, 1024, 5
    g = torch.Generator().manual_seed(0)
    frames, rank, wins = readout.bank_plan(F_, P_, D_, 64, 18 * F_, N * T)
    g_rank = gram_rank_plan(N * T, 18 * F_, 4096)  # the factored Gram training keeps (subset ridge, blend floor)
    enc = EncoderConfig(linear_rank=64, bank_frames=frames, bank_rank=rank, window_bank=wins, gram_rank=g_rank).for_data(
        n_units=N, n_patches=P_, dim=D_)
    model = SpikeEncoder(config=enc).eval()
    basis = torch.linalg.qr(torch.randn(P_ * D_, 64, generator=g))[0].T.contiguous()
    model.set_linear_basis(basis, torch.ones(64))
    with torch.no_grad():
        model.lin_weight.normal_(0, 0.05, generator=g)
        model.set_window_bank(torch.poisson(torch.full((wins, N, T), 0.8), generator=g),
                              torch.randint(0, F_, (wins,), generator=g))
        xty = torch.randn(N * T, 64, generator=g)
        model.set_subset_ridge(FactoredGram(torch.linalg.qr(torch.randn(N * T, g_rank, generator=g))[0],
                                            torch.rand(g_rank, generator=g) * 1e4, torch.eye(T).expand(N, T, T) * 50,
                                            xty * 1e-3), xty, 100.0)
    targets = torch.randn(F_, P_, D_, generator=g)
    n_val = F_ * 2
    frame = torch.arange(n_val) % F_
    counts = torch.poisson(torch.full((256, 20, N), 0.2), generator=g)  # validation windows, reused in turn
    units = torch.arange(N)
    rss0 = psutil.Process().memory_info().rss
    with torch.no_grad():
        model.set_bank(targets)  # as after training (fit_blend sets it again, inside its time)
    sub = torch.arange(0, N, N // 30)[:30]  # one 30-unit subset: `calibrate_blend`'s choice, as one row of fit_blend
    one, sub_secs, sub_peak = _timed(lambda: readout.fit_subset_blend(  # first, so that its peak is its own
        model, lambda rows: (counts[rows % len(counts)][..., sub], sub), frame, targets))
    out, secs, peak = _timed(lambda: readout.fit_blend(model, lambda rows: (counts[rows % len(counts)], units), frame,
                                                       targets, targets))
    n_keep = min(n_val, readout.MAX_WINDOWS, max(64, readout.MAX_GRID_BYTES // (4 * P_ * D_)))
    return [f"Full size: `fit_blend` with 2,000 units, a bank of {frames} frames of {P_} x {D_} as {rank} coefficients "
            f"({4 * frames * rank / 1e3:.0f} kB), {wins} training windows, {n_keep} of {n_val} validation windows "
            f"(`MAX_GRID_BYTES`), {len(model.blend_table)} subset sizes, 900 identification candidates, the Gram "
            f"matrix of 2,000 x 5 features factored at rank {g_rank} (so the grid has every beta): {secs:.0f} s, peak resident memory {peak / 2**30:.1f} GiB "
            f"({rss0 / 2**30:.1f} GiB before: model, targets and windows). Random weights and data; choice "
            f"(all units) beta {out['beta']}, gamma {out['gamma']}, kNN k {out['knn_k']} share {out['knn_w']}.",
            "",
            f"One 30-unit subset's choice (`fit_subset_blend`, what `calibrate_blend` runs; run first), same model and "
            f"windows ({one['n_windows']} validation windows): {sub_secs:.0f} s, peak resident memory "
            f"{sub_peak / 2**30:.1f} GiB; "
            f"choice beta {one['beta']}, gamma {one['gamma']}, kNN k {one['knn_k']} share {one['knn_w']}."]


def _timed(fn):
    """(fn(), seconds, peak resident bytes while it ran)."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
    return out, time.perf_counter() - t0, mem.peak


def run(doc: str, title: str, session, pairs, real_dims, real_title: str, real_help: str) -> None:
    """A conditions benchmark's command line: ``--real-dims`` publishes ``real_dims(args)`` under ``real_title``;
    otherwise every
    session's conditions (``session(seed, args, backbone)``), the tables with the paired differences ``pairs``
    (of condition indices) and, unless ``--no-append``, RESULTS.md."""
    ap = arguments(doc)
    ap.add_argument("--real-dims", action="store_true", help=real_help)
    args = ap.parse_args()
    setup(args)
    script = Path(sys.argv[0]).name
    if args.real_dims:
        publish(f"{real_title} ({script} --real-dims)", real_dims(args), append=not args.no_append)
        return
    t_all = time.perf_counter()
    bb = load_backbone("tiny", seed=0)
    runs = [session(s, args, bb) for s in range(args.seeds)]
    names = list(runs[0])
    text = "\n".join(header(title, args, runs, time.perf_counter() - t_all)
                     + tables(runs, [(names[a], names[b]) for a, b in pairs])) + "\n"
    print(text)
    if not args.no_append:
        append_results(text)


if __name__ == "__main__":
    run(__doc__, "Blend bank as basis coefficients", session, ((2, 1), (3, 2), (4, 2), (3, 4), (3, 5), (1, 0)),
        real_dims,
        "The blend's choice at full size", "only time fit_blend at full size (~12 GB of memory)")
