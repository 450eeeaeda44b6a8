"""Benchmark spike binning: neurrator's `bin_spikes` against a per-unit `np.histogram` loop.

Default problem (issue 3): 2,000 units at ~20 Hz over 3,000 s (~120 M spikes, float64), 20 repeats of
a 900-frame 30 Hz movie binned at 4 bins per frame (72,000 rows). Times are the best of ``--runs``
runs; peak memory is the tracemalloc peak of one call (numpy reports its allocations to tracemalloc),
i.e. the memory the method needs on top of the spike-time array it reads. All methods must give the
same counts (checked).

    .venv/bin/python benchmarks/bench_binning.py            # full size, appends to benchmarks/RESULTS.md
    .venv/bin/python benchmarks/bench_binning.py --quick    # 200 units, 300 s: a smoke run, no append
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from neurrator.data.binning import bin_spikes

from _hardware import cpu_model


def make_spikes(n_units: int, rate: float, duration: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * duration, size=n_units)
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    times = np.empty(int(offsets[-1]), dtype=np.float64)
    for i in range(n_units):  # generation only; sorted per unit as in a Units table
        block = times[offsets[i] : offsets[i + 1]]
        block[:] = rng.random(n[i]) * duration
        block.sort()
    return times, offsets


def histogram_loop(times: np.ndarray, offsets: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Baseline: one np.histogram per unit over all bin edges (contiguous presentations)."""
    n_units = offsets.size - 1
    counts = np.zeros((edges.size - 1, n_units), dtype=np.uint16)
    for i in range(n_units):
        h, _ = np.histogram(times[offsets[i] : offsets[i + 1]], bins=edges)
        counts[:, i] = np.minimum(h, 65535)
    return counts


def timed(fn, runs: int) -> tuple[float, float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        if _ < runs - 1:
            del out
    tracemalloc.start()
    tracemalloc.reset_peak()
    res = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del res
    return best, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=3000.0)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--bins-per-frame", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="200 units over 300 s; implies --no-append")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--note", default="machine shared with 4 other engineers' jobs during the run")
    args = ap.parse_args()
    if args.quick:
        args.units, args.duration, args.repeats, args.no_append = 200, 300.0, 4, True

    t0 = time.perf_counter()
    times, offsets = make_spikes(args.units, args.rate, args.duration, args.seed)
    gen_s = time.perf_counter() - t0
    fps = 30.0
    n_pres = args.repeats * args.frames
    movie_start = 0.3 * args.duration
    starts = movie_start + np.arange(n_pres) / fps
    stops = np.append(starts[1:], starts[-1] + 1 / fps)  # frames back to back, as in the Allen tables
    b = args.bins_per_frame
    edges = np.concatenate([(starts[:, None] + (stops - starts)[:, None] * (np.arange(b) / b)).ravel(), stops[-1:]])
    spike_mb = times.nbytes / 2**20
    print(f"{times.size / 1e6:.1f} M spikes ({spike_mb:.0f} MiB float64), {args.units} units, {n_pres} presentations "
          f"x {b} bins; generated in {gen_s:.1f} s")

    t0 = time.perf_counter()
    float(times.sum())
    read_s = time.perf_counter() - t0

    methods = {
        "neurrator bin_spikes (spikes inside the windows; default)": lambda: bin_spikes(
            times, offsets, starts, stops, bins_per_interval=b, method="windows"),
        "neurrator bin_spikes (edges into each unit's spikes)": lambda: bin_spikes(
            times, offsets, starts, stops, bins_per_interval=b, method="edges"),
        "per-unit np.histogram loop (baseline)": lambda: histogram_loop(times, offsets, edges),
    }
    rows, outs = [], {}
    for name, fn in methods.items():
        best, peak, out = timed(fn, args.runs)
        outs[name] = out
        rows.append((name, best, peak / 2**20))
        print(f"{name:60s} {best:7.2f} s  peak {peak / 2**20:8.0f} MiB")
    ref = outs["per-unit np.histogram loop (baseline)"]
    for name, out in outs.items():
        mism = int(np.count_nonzero(out != ref))
        assert mism == 0, f"{name}: {mism} counts differ from the histogram baseline"
    base = rows[-1][1]
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10

    lines = [
        "",
        "## Binning",
        "",
        f"`benchmarks/bench_binning.py` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC): {args.units} units at "
        f"{args.rate:g} Hz over {args.duration:g} s = {times.size / 1e6:.1f} M spikes ({spike_mb:.0f} MiB float64), "
        f"{args.repeats} repeats x {args.frames} frames x {b} bins = {n_pres * b:,} rows; output (rows, units) uint16 "
        f"= {n_pres * b * args.units * 2 / 2**20:.0f} MiB. Best of {args.runs} runs; peak = tracemalloc peak of one "
        f"call (memory on top of the spike array). All methods give identical counts.",
        "",
        f"Hardware: {cpu_model()}; numpy {np.__version__}; {args.note}.",
        "",
        "| method | time (s) | vs histogram loop | peak memory (MiB) | peak / spike array |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t, peak in rows:
        lines.append(f"| {name} | {t:.2f} | {base / t:.1f}x | {peak:.0f} | {peak / spike_mb:.2f} |")
    lines += [
        f"| reading every spike time once (lower bound) | {read_s:.2f} | | | |",
        "",
        f"Process max RSS {maxrss:.0f} MiB (spike array and three outputs included). Targets: >= 2x faster than "
        f"the loop ({'met' if base / rows[0][1] >= 2 else 'NOT met'}: {base / rows[0][1]:.1f}x), peak memory < 2x "
        f"the spike array ({'met' if rows[0][2] < 2 * spike_mb else 'NOT met'}: {rows[0][2] / spike_mb:.2f}x).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        results = Path(__file__).resolve().parent / "RESULTS.md"
        if not results.exists():
            results.write_text("# Benchmarks\n")
        with open(results, "a") as fh:
            fh.write(text)
        print(f"appended to {results}")


if __name__ == "__main__":
    main()
