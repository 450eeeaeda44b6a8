"""Plain helpers shared by the tests (import with `from _helpers import ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def sha256(path: Path) -> str:
    """Content hash of a file (or of every file below a folder), to prove an input untouched."""
    import hashlib

    h = hashlib.sha256()
    paths = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


#: A quick pipeline configuration for tests (the CLI flags that give the same run are in FAST_FLAGS).
FAST = dict(epochs=2, narrations_per_subset=3, n_val_repeats=1, n_test_repeats=1, population_sizes=(5, 30),
            draws_per_size=1, single_units=1, sae_latents=64, sae_k=4, device="cpu", progress=False)
FAST_FLAGS = ["--epochs", "2", "--narrations", "3", "--device", "cpu", "--quiet"]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`neurrator ARGS` as a real subprocess, offline."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "neurrator", *args], capture_output=True, text=True, timeout=600,
                          env=full_env)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1, exactly one "Error:" line on stderr holding every needle, no traceback; returns the line."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def dandi_validate(files, tmp_path: Path) -> subprocess.CompletedProcess:
    """`dandi validate` on a DANDI-style dandiset folder holding ``files`` (each keeps its
    ``sub-*/<name>`` layout), offline, with its state and cache under ``tmp_path``."""
    import shutil

    ds = Path(tmp_path) / "000999"
    for f in files:
        f = Path(f)
        (ds / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, ds / f.parent.name / f.name)
    (ds / "dandiset.yaml").write_text("identifier: DANDI:000999\nname: neurrator test\ndescription: test\n")
    return subprocess.run([str(Path(sys.executable).parent / "dandi"), "validate", str(ds)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DANDI_NO_ET": "1", "XDG_STATE_HOME": str(Path(tmp_path) / "state"),
                               "XDG_CACHE_HOME": str(Path(tmp_path) / "cache")})


def tiny_open_clip_visual(seed: int):
    """A small open_clip vision tower with non-trivial biases and norms (random, seeded)."""
    import torch

    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    torch.manual_seed(seed)
    cfg = CLIPVisionCfg(layers=3, width=64, head_width=16, patch_size=14, image_size=56)
    visual = _build_vision_tower(32, cfg, quick_gelu=True)
    # give the (zero-initialised) biases and norms non-trivial values so the comparison can fail
    with torch.no_grad():
        for name, p in visual.named_parameters():
            if name.endswith("bias") or "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return visual.eval()


def driven_session(n_frames: int, n_repeats: int, n_units: int, gain: float, rng):
    """A tiny movie session for encoder tests: each unit's rate is exp(gain x its drive) in the frame on
    screen (4 bins a frame), counts are Poisson in every repeat. Returns (binned, drive (n_frames, n_units));
    ``rng`` (a numpy Generator) goes on to draw whatever targets the test builds from the drive."""
    import numpy as np

    from neurrator.data.binning import Binned

    drive = rng.normal(size=(n_frames, n_units))
    rate = np.exp(gain * np.repeat(drive, 4, axis=0))  # (n_frames * 4, n_units) per bin
    counts = rng.poisson(np.tile(rate, (n_repeats, 1))).astype(np.uint16)
    binned = Binned(counts=counts, frame=np.tile(np.arange(n_frames), n_repeats),
                    repeat=np.repeat(np.arange(n_repeats), n_frames), bins_per_frame=4,
                    unit_ids=np.arange(n_units, dtype=np.int64))
    return binned, drive
