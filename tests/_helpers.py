"""Plain helpers shared by the tests (import with `from _helpers import ...`)."""

from __future__ import annotations

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
