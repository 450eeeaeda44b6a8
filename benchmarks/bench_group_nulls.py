"""Issue 26 (items 2-4): calibration of the group and tuning nulls on a global-null session, and their power
on the matching real simulated session.

Usage::

    .venv/bin/python benchmarks/bench_group_nulls.py                 # appends to RESULTS.md
    .venv/bin/python benchmarks/bench_group_nulls.py --no-append --label before   # e.g. on an older checkout

What runs: a simulated session (``--units`` units, 6 repeats of a 300-frame movie, seeds 5 / movie 2, as
tests/test_null_session.py) and its global null (`neurrator.simulate.write_global_null`: every unit's
spikes circularly shifted by its own lag within every repeat), each through `narrate_session` with the
test's reduced configuration. Printed per session: the share of separation / classifier p-values below
0.05 and their statuses, the decoded and tuning enrichment findings (q < 0.05), the share of concept-tuning
p-values below 0.05 in units that are not visually driven... and whether the tagged classes recover their
true features (PV car, SST sunlit, VIP dark). Works on checkouts before the issue-26 nulls too (their
rows have no status).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _helpers import FAST  # noqa: E402

from neurrator.config import NarrateConfig  # noqa: E402
from neurrator.pipeline import narrate_session  # noqa: E402
from neurrator.simulate import write_simulated_session  # noqa: E402

from _hardware import append_results, hardware  # noqa: E402

WANT = {"PV": "car", "SST": "sunlit", "VIP": "dark"}


def run(path: Path, root: Path, *, overrides: dict):
    config = NarrateConfig.from_options(cache_dir=str(root / "cache"), **{**FAST, **overrides})
    t0 = time.perf_counter()
    result = narrate_session(path, out=root / f"{path.stem}.out.nwb", config=config)
    return result, time.perf_counter() - t0


def summarise(result) -> dict:
    n = result.neurration
    seps = n.separations
    rows = [(str(s.analysis[i]), str(s.group_kind[i]), str(s.group[i]), float(s.p[i]),
             str(s.status[i]) if getattr(s, "status", None) is not None else "-") for s in seps for i in range(len(s.p))]
    p = np.array([r[3] for r in rows if np.isfinite(r[3])])
    enriched = {}
    for c in n.comparisons:
        for i in range(len(c.q)):
            if np.nan_to_num(c.q[i], nan=1.0) <= 0.05 and c.effect[i] > 0:
                enriched.setdefault((str(c.source[i]), str(c.group_kind[i]), str(c.group[i])), []).append(str(c.concept[i]))
    tun = n.tuning
    tp = np.asarray(tun["p"], float)
    return {"rows": rows, "sep_low": float(np.mean(p < 0.05)) if p.size else float("nan"), "n_sep": int(p.size),
            "enriched": enriched, "tuning_p_low": float(np.nanmean(tp < 0.05)),
            "tuning_sig": int(np.sum(np.asarray(tun["significant"], bool)))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--label", default="after")
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--sessions", type=Path, default=None,
                    help="folder holding (or to receive) the two sessions, so an older checkout runs on the same files")
    args = ap.parse_args()
    overrides = dict(epochs=3, narrations_per_subset=8, population_sizes=(5, 20), draws_per_size=2, min_units=6,
                     eval_windows=120, null_pools=20, scaling_draws=2)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        where = args.sessions or root
        where.mkdir(parents=True, exist_ok=True)
        real, null = where / "sub-sim5_ses-real.nwb", where / "sub-sim5_ses-null.nwb"
        if not (real.is_file() and null.is_file()):
            from neurrator.simulate import write_global_null

            write_simulated_session(real, n_units=args.units, n_repeats=6, n_frames=300, seed=5, movie_seed=2)
            write_global_null(real, null, seed=11)
        for name, path in (("null", null), ("real", real)):
            res, secs = run(Path(path), root, overrides=overrides)
            out[name] = summarise(res) | {"secs": secs}
    lines = [f"## Group and tuning nulls on a global-null session and its real twin (bench_group_nulls.py, "
             f"{args.label})", "", f"Hardware: {hardware('cpu')}", "",
             "| session | wall (s) | separation/classifier rows p < 0.05 | enriched (q < 0.05, effect > 0) | "
             "tuning p < 0.05 | tuning q < 0.05 |", "|---|---:|---|---|---:|---:|"]
    for name, s in out.items():
        enr = "; ".join(f"{k[0]} {k[2]}: {', '.join(v)}" for k, v in s["enriched"].items()) or "none"
        lines.append(f"| {name} | {s['secs']:.0f} | {s['sep_low']:.2f} of {s['n_sep']} | {enr} | "
                     f"{s['tuning_p_low']:.3f} | {s['tuning_sig']} |")
    for name, s in out.items():
        lines.append(f"\n{name}: separation and classifier rows (analysis, kind, group, p, status)")
        lines += [f"- {a} {k} {g}: p {p:.3f} {st}" for a, k, g, p, st in s["rows"]]
    real = out["real"]["enriched"]
    rec = {t: any(f == WANT[t] for (src, kind, g), v in real.items() if g == t for f in v) for t in WANT}
    lines.append(f"\nreal: tagged classes recover their feature (any source): {rec}")
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        append_results(text)


if __name__ == "__main__":
    main()
