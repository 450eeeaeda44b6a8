"""Is the global null a null? The lag distribution of `neurrator.simulate.null` against a decoder trained on
the other repeats (issue 26: the all-units centred cosine beat its shift null on the null session).

Usage::

    .venv/bin/python benchmarks/bench_null_lags.py              # 40 null seeds per lag rule, appends to RESULTS.md
    .venv/bin/python benchmarks/bench_null_lags.py --seeds 10   # prints only

One simulated session (100 units, 6 repeats of a 300-frame movie, population seed 5, movie seed 2: the
session of tests/test_null_session.py) and, per lag rule and null seed, its global null
(`global_null_session(min_lag_s=...)`). On each, a ridge decoder (closed form, lambda 1e3, z-scored counts of
the 6 frames from each frame's onset, 200 ms) is fitted on repeats 0-4 and predicts repeat 5's frames (every
7th pixel of the movie frame as the target, centred on the training mean). The statistic is the centred
cosine of the test frames, tested against its circular-shift null (the test repeat's targets shifted against
the predictions by every lag round the circle, as `neurrator.decode.fidelity.cosine_shift_null` does since
issue 26: an exact test when the null session is a null); z is (observed - null mean) / null SD.

A null whose lags avoid 0 (the old rule: lags uniform in [1 s, span - 1 s]) leaves every repeat's lag in the
same arc, so the repeats stay partly aligned with each other and the decoder trained on some of them decodes
the last; lags uniform over the whole span make every (unit, repeat) a uniformly random rotation, independent
of the frames. A calibrated null gives p < 0.05 in about 5% of seeds and a mean z near 0.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _hardware import append_results, hardware

from neurrator.data.binning import bin_session
from neurrator.decode.chance import shift_pairings
from neurrator.decode.fidelity import cosine_shift_null, patch_cosines
from neurrator.data.session import load_session
from neurrator.simulate import global_null_session, write_simulated_session
from neurrator.stats.resampling import permutation_pvalue

WINDOW = 6  # frames of counts after each frame's onset


def _features(session):
    b = bin_session(session, bins_per_frame=4)
    counts = b.counts.reshape(b.n_presentations, 4, -1).sum(1).astype(np.float64)
    return np.concatenate([np.roll(counts, -k, axis=0) for k in range(WINDOW)], axis=1), b.frame, b.repeat


def decode_and_test(session, targets, *, lam: float = 1e3):
    """Session -> (centred cosine of the last repeat, shift-null p, shift-null z)."""
    x, frame, repeat = _features(session)
    train, test = repeat < repeat.max(), repeat == repeat.max()
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    xs = (x - mu) / sd
    y = targets[frame]
    y_mean = y[train].mean(0)
    w = np.linalg.solve(xs[train].T @ xs[train] + lam * np.eye(xs.shape[1]), xs[train].T @ (y[train] - y_mean))
    pred, truth = xs[test] @ w, y[test] - y_mean
    # the centred cosine as one "patch" per frame, against the pipeline's own whole-circle shift null
    pred, truth = (pred - pred.mean(0))[:, None], (truth - truth.mean(0))[:, None]
    observed = float(patch_cosines(pred, truth).mean())
    reps = np.zeros(len(truth), dtype=np.int64)
    partners, _ = shift_pairings(reps, min_lag=0, n_perm=len(truth))  # every lag but 0: exact
    null = cosine_shift_null(pred, truth, partners, reps)
    p = permutation_pvalue(observed, null)
    return observed, float(p), float((observed - null.mean()) / null.std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=40, help="null seeds per lag rule")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "real.nwb"
        write_simulated_session(path, n_units=100, n_repeats=6, n_frames=300, seed=5, movie_seed=2)
        session = load_session(path)
    frames = np.asarray(session.frames, dtype=np.float64)
    targets = frames.reshape(len(frames), -1)[:, ::7]
    real = decode_and_test(session, targets)
    rows = []
    for min_lag in (1.0, 0.0):
        res = np.array([decode_and_test(global_null_session(session, seed=s, min_lag_s=min_lag), targets)
                        for s in range(args.seeds)])
        z = res[:, 2]
        se = z.std(ddof=1) / np.sqrt(len(z))
        rows.append((min_lag, res[:, 0].mean(), np.mean(res[:, 1] < 0.05), z.mean(), z.mean() - 1.96 * se,
                     z.mean() + 1.96 * se))
    minutes = (time.perf_counter() - t0) / 60
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"\n## Global-null lags: is the null a null? ({datetime.now(timezone.utc):%Y-%m-%d}, commit {commit})\n",
        f"`benchmarks/bench_null_lags.py`: {args.seeds} null seeds per lag rule of one simulated session (100 units, "
        "6 repeats x 300 frames, seeds 5/2: the session of tests/test_null_session.py); a ridge decoder trained "
        "on repeats 0-4 predicts repeat 5 (pixels as targets); its centred cosine against the circular-shift null "
        f"(every lag). Real session: cosine {real[0]:.3f}, p = {real[1]:.4f}, z = {real[2]:.1f}. "
        f"{hardware()}; {minutes:.1f} min.\n",
        "| null lags | mean centred cosine | p < 0.05 (expected 0.05) | mean z [95% CI] (expected 0) |",
        "|---|---|---|---|",
    ]
    for min_lag, cos, frac, z, lo, hi in rows:
        rule = "uniform in [1 s, span - 1 s] (before)" if min_lag else "uniform over the whole span (now)"
        lines.append(f"| {rule} | {cos:.3f} | {frac:.3f} | {z:+.2f} [{lo:+.2f}, {hi:+.2f}] |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append and args.seeds >= 40:
        append_results(text)


if __name__ == "__main__":
    main()
