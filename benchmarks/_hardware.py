"""What a benchmark ran on, in one line for benchmarks/RESULTS.md (shared by the bench_*.py scripts)."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware(device: str = "cpu") -> str:
    """GPU name on CUDA; else CPU model, cores, torch threads and the load average (others' jobs show there)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - numpy-only benchmarks
        torch = None
    if torch is not None and device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = f", torch {torch.__version__} with {torch.get_num_threads()} intra-op thread(s)" if torch else ""
    return f"{cpu_model()}, {os.cpu_count()} CPUs{threads}; load average {load:.1f} at the end"


def append_results(text: str) -> None:
    """Append a section to benchmarks/RESULTS.md (created with its title when missing)."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmarks\n")
    with RESULTS.open("a") as fh:
        fh.write(text)


def publish(title: str, lines: list[str], append: bool = True) -> str:
    """A RESULTS.md section: ``## title (UTC now)``, the hardware line, then ``lines``; printed, and appended
    when ``append``."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([f"\n## {title} ({now})\n", f"Hardware: {hardware('cpu')}.", ""] + list(lines)) + "\n"
    print(text)
    if append:
        append_results(text)
    return text


class PeakRSS:
    """Peak resident set size of this process during a `with` block (sampled every 20 ms)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
