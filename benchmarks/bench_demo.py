"""Time `neurrator demo` end to end (target: under 3 minutes on 2 CPU cores) and per pipeline stage.

Runs the demo as a user does (a fresh output folder, so nothing is cached), then appends the wall time,
the time per stage and the headline scores to benchmarks/RESULTS.md under "## Demo".

    python benchmarks/bench_demo.py [--runs 1] [--no-write]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from _hardware import append_results, hardware


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not append to RESULTS.md")
    args = parser.parse_args()

    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "neurrator", "demo", "--out", tmp, "--quiet"],
                                  capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
        stages = re.search(r"time per stage: (.*)", proc.stdout).group(1)
        all_row = re.search(r"^  all +(\d+) +([\d.]+) +([\d.]+) \(([\d.]+)\) +([\d.]+) \(([\d.]+)\) +([\d.]+) / +([\d.]+) / +([\d.]+)",
                            proc.stdout, re.M)
        ridge = re.search(r"baseline ridge +([\d.]+) +([\d.]+)", proc.stdout)
        rows.append((run + 1, wall, stages, all_row.groups(), ridge.groups()))
        print(f"run {run + 1}: {wall:.1f} s ({stages})")

    lines = [
        "",
        "## Demo",
        "",
        f"`benchmarks/bench_demo.py` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC): `neurrator demo` as a "
        "subprocess into a fresh folder (simulation, tiny CLIP targets, encoder training, 32 unit subsets, "
        "retrieval narration, MiniLM scoring, SAE, validation, NWB write). Target: under 3 minutes on 2 CPU cores.",
        "",
        f"Hardware: {hardware('cpu')}.",
        "",
        "| run | wall (s) | time per stage | all units: top-1 (chance) | ridge top-1 | narration matched / shuffled / floor |",
        "|---:|---:|---|---|---:|---|",
    ]
    for run, wall, stages, a, ridge in rows:
        lines.append(f"| {run} | {wall:.1f} | {stages} | {a[2]} ({a[3]}) | {ridge[1]} | {a[6]} / {a[7]} / {a[8]} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        append_results(text)


if __name__ == "__main__":
    main()
