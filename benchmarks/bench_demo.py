"""Time `neurrator demo` end to end and per stage, with the machine it ran on and that machine's load.

Runs the demo as a user does (a subprocess into a fresh output folder, so nothing is cached) and appends
to benchmarks/RESULTS.md under "## Demo": the wall time, the time per pipeline stage, the headline
scores, the hardware (CPU model, usable cores, memory, GPU, torch) and the 1-minute load average before,
at most during, and after each run. Everything in the section is measured by this script; the README's
demo time is quoted from it.

    python benchmarks/bench_demo.py [--runs 1] [--no-write]
    python benchmarks/bench_demo.py --smoke    # checks this script in a minute or two: a small simulated
                                               # session through `neurrator narrate`; never written
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from _hardware import append_results, cpu_model

SMOKE_NARRATE = ["--epochs", "1", "--narrations", "3", "--val-repeats", "1", "--test-repeats", "1", "--device", "cpu"]


class LoadSampler:
    """The 1-minute load average before, at most during (sampled every ``every`` s), and after a block."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.before = self.after = self.peak = float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.before = self.peak = os.getloadavg()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = os.getloadavg()[0]
        self.peak = max(self.peak, self.after)


def machine() -> dict[str, str]:
    """What the run ran on, read from the machine (never typed)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = "unknown"
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        mem = f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        torch_line = f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads by default)"
    except ImportError:
        gpu, torch_line = "unknown", "torch not importable"
    return {"cpu": cpu_model(), "cores": f"{usable} usable of {os.cpu_count()}", "memory": mem, "gpu": gpu,
            "torch": torch_line, "python": platform.python_version(), "os": platform.platform(terse=True)}


def _run_once(tmp: str, *, smoke: bool) -> tuple[float, str, LoadSampler]:
    neurrator = [sys.executable, "-m", "neurrator", "--quiet"]
    if smoke:
        source = Path(tmp) / "sim.nwb"
        subprocess.run([*neurrator, "simulate", str(source), "--units", "60", "--repeats", "4"], check=True,
                       capture_output=True, text=True)
        command = [*neurrator, "narrate", str(source), "--out", str(Path(tmp) / "out"), *SMOKE_NARRATE,
                   "--cache-dir", str(Path(tmp) / "cache")]
    else:
        command = [*neurrator, "demo", "--out", tmp]
    with LoadSampler() as load:
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[2:])} failed (exit {proc.returncode}):\n{proc.stderr}")
    return wall, proc.stdout, load


def _parse(stdout: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The stage times, the ``all`` row (centred cosine and CI, top-1 and chance, within 1 s and chance,
    narration and CI / null / constant / floor) and the ridge row of the run summary."""
    num = r"(-?[\d.]+)"
    stages = re.search(r"time per stage: (.*)", stdout)
    null = r"(?:\|[-\d.na]+)?"  # the identification null's mean beside the chance (since issue 26)
    all_row = re.search(rf"^  all +(\d+) +{num}\*?\[ *{num}, *{num}\] +{num}\*?\({num}{null}\) +{num}\*?\({num}{null}\) +"
                        rf"{num}\*? ?\[{num},{num}\] / {num} / {num} / {num}", stdout, re.M)
    ridge = re.search(rf"baseline ridge +{num} \[ *{num}, *{num}\] +{num}", stdout)
    if not (stages and all_row and ridge):
        sys.exit(f"could not read the run's summary (has its format changed?):\n{stdout}")
    return stages.group(1), all_row.groups(), ridge.groups()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print the section, do not append to RESULTS.md")
    parser.add_argument("--smoke", action="store_true", help="a small session through `narrate` (checks the "
                        "script; implies --no-write)")
    args = parser.parse_args()

    hw = machine()
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            wall, stdout, load = _run_once(tmp, smoke=args.smoke)
        stages, a, ridge = _parse(stdout)
        rows.append((run + 1, wall, load, stages, a, ridge))
        print(f"run {run + 1}: {wall:.1f} s, load average {load.before:.1f} before / {load.peak:.1f} max / "
              f"{load.after:.1f} after ({stages})")

    what = ("`neurrator narrate` on a 60-unit, 4-repeat simulated session (--smoke)" if args.smoke else
            "`neurrator demo` as a subprocess into a fresh folder (simulation, tiny CLIP targets, encoder training, "
            "unit subsets, retrieval narration, MiniLM scoring, SAE, validation, NWB write)")
    lines = [
        "",
        "## Demo" + (" (smoke check, not a measurement)" if args.smoke else ""),
        "",
        f"`benchmarks/bench_demo.py` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC): {what}."
        + ("" if args.smoke else " Target: under 3 minutes on 2 CPU cores."),
        "",
        f"Hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']} memory, GPU: {hw['gpu']}; {hw['torch']}; "
        f"Python {hw['python']}, {hw['os']}.",
        "",
        "Load = the 1-minute load average before / at most during / after the run (other jobs on the machine "
        "show there; a load above the core count slows every stage).",
        "",
        "| run | wall (s) | load before / max / after | time per stage | all units: centred cosine [95% CI], "
        "top-1 (chance) | ridge: centred cosine, top-1 | all units: narration [95% CI] / null / constant / floor |",
        "|---:|---:|---|---|---|---|---|",
    ]
    for run, wall, load, stages, a, ridge in rows:
        lines.append(f"| {run} | {wall:.1f} | {load.before:.1f} / {load.peak:.1f} / {load.after:.1f} | {stages} | "
                     f"{a[1]} [{a[2]}, {a[3]}], {a[4]} ({a[5]}) | {ridge[0]}, {ridge[3]} | "
                     f"{a[8]} [{a[9]}, {a[10]}] / {a[11]} / {a[12]} / {a[13]} |")
    best = min(rows, key=lambda r: r[1])
    lines += ["", f"README line: the demo took {best[1]:.0f} s on {hw['cpu']} ({hw['cores']} cores, load average "
                  f"{best[2].before:.1f} before, {best[2].peak:.1f} at most during the run)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not (args.no_write or args.smoke):
        append_results(text)


if __name__ == "__main__":
    main()
