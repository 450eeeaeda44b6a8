"""Native subset decodes that need no retraining, against the size's row of the blend table (issue 28.1).

For each of bench_peers' simulated sessions the encoder is trained once on all units (bench_peers'
configuration, so the native model and the random draws are bench_peers' own, draw for draw), and every
draw of k units is decoded four ways:

- ``row``: the library's decode (the blend row chosen for subsets of about this size);
- ``subset``: the blend chosen for exactly these units on the validation repeats (`calibrate_blend`);
- ``average``: the mean of the two outputs above (one more way to damp the per-subset choice's noise);
- ``impute``: the missing units' counts replaced by their ridge prediction from the subset's counts (4 pools
  of 4 bins around each bin, fitted on the training repeats), then decoded as if all units were recorded.

Within 1 s on the test repeats; each variant's paired difference from ``row`` with a t interval over the
sessions' mean differences (draws of one session share its model and test repeats). Variants that need no
retraining only: the gap to retraining is bench_peers' subset curve.

    python benchmarks/bench_subset_variants.py [--seeds 5] [--sizes 10 30 60 100] [--draws 3] [--no-append]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers as bp  # noqa: E402
from _hardware import publish  # noqa: E402

VARIANTS = ("subset", "average", "impute")


def impute(binned, cols: np.ndarray, train_pres, pools=((-8, -4), (-4, 0), (0, 4), (4, 8)), ridge: float = 1e-2):
    """``binned`` with every column not in ``cols`` replaced by its ridge prediction (float32, >= 0) from the
    counts of ``cols`` summed over ``pools`` (bin offsets around each bin), fitted on ``train_pres``'s bins."""
    C = np.asarray(binned.counts, np.float64)
    n = len(C)
    cum = np.vstack([np.zeros((1, C.shape[1])), np.cumsum(C, 0)])
    at = np.arange(n)
    X = np.hstack([cum[np.clip(at + b, 0, n)][:, cols] - cum[np.clip(at + a, 0, n)][:, cols] for a, b in pools]
                  + [np.ones((n, 1))])
    miss = np.setdiff1d(np.arange(C.shape[1]), cols)
    b = binned.bins_per_frame
    rows = (np.asarray(train_pres)[:, None] * b + np.arange(b)).ravel()
    G = X[rows].T @ X[rows]
    G += ridge * np.trace(G) / len(G) * np.eye(len(G))
    out = C.astype(np.float32)
    out[:, miss] = np.clip(X @ np.linalg.solve(G, X[rows].T @ C[rows][:, miss]), 0, None)
    return dataclasses.replace(binned, counts=out)


def session(seed: int, args, bb) -> list[tuple]:
    binned, targets, split, te, sc = bp.movie_data(seed, args, bb)
    w1s = lambda p: sc(p)["within_1s"]  # noqa: E731
    cfg, enc = bp.encoder_configs(args, binned.n_units, targets)
    tr = bp.train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=seed, progress=False)
    rng = np.random.default_rng(1000 + seed)  # bench_peers.subset_curve's draws
    rows = []
    for k in args.sizes:
        for d in range(args.draws):
            cols = np.sort(rng.choice(binned.n_units, k, replace=False))
            row = bp.predict(tr, binned, te, unit_idx=cols)
            sub = bp.predict(tr, binned, te, unit_idx=cols,
                             blend=bp.calibrate_blend(tr, binned, targets, split.val, unit_idx=cols))
            imp = bp.predict(tr, impute(binned, cols, split.train), te)
            rows.append((seed, k, w1s(row), w1s(sub), w1s((row + sub) / 2), w1s(imp)))
            print(f"session {seed} k={k} draw {d}: within 1 s row {rows[-1][2]:.3f} " +
                  " ".join(f"{v} {x:.3f}" for v, x in zip(VARIANTS, rows[-1][3:])), flush=True)
    return rows


def table(rows) -> list[str]:
    out = ["| k units | sessions x draws | row within 1 s | " + " | ".join(
        f"{v} - row [95% t over sessions], draws ahead" for v in VARIANTS) + " |", "|---" * (3 + len(VARIANTS)) + "|"]
    r = np.array(rows)
    for k in sorted(set(r[:, 1].astype(int))):
        rk = r[r[:, 1] == k]
        seeds = np.unique(rk[:, 0])
        cells = []
        for j in range(len(VARIANTS)):
            diff = rk[:, 3 + j] - rk[:, 2]
            mean, lo, hi = bp.t_interval([diff[rk[:, 0] == s].mean() for s in seeds])
            cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}], {int((diff > 0).sum())}/{len(diff)}")
        out.append(f"| {k} | {len(seeds)} x {len(rk) // len(seeds)} | {rk[:, 2].mean():.3f} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 60, 100])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    args = bp.bench_args(sizes=a.sizes, draws=a.draws)  # bench_peers' sessions, encoder and draws
    bb = bp.load_backbone("tiny", seed=0)
    rows = [row for s in range(a.seeds) for row in session(s, args, bb)]
    publish("Native subset decodes without retraining (bench_subset_variants.py)",
            [f"`python benchmarks/bench_subset_variants.py {' '.join(sys.argv[1:])}`: {a.seeds} of bench_peers' "
             "sessions, its encoder configuration and its draws; within 1 s on the test repeats.", ""] + table(rows),
            append=not a.no_append)


if __name__ == "__main__":
    main()
