"""What native subsets lose when the linear path's Gram matrix is kept factored (issue 28, real sizes).

A strict unit subset decodes through its own closed-form ridge, from the training Gram matrix the encoder keeps
(`EncoderConfig.subset_ridge`: up to 4,096 features, 64 MB). A real session has more: 2,000 units x 5 pooled
bins = 10,000 features, 400 MB. Before, such an encoder kept no Gram at all: subsets decoded through the
all-unit ridge weights rescaled, and the blend had no ridge to anchor on. Now training keeps the Gram factored
(`EncoderConfig.gram_rank`, `neurrator.models.subset_ridge`): its top eigenvectors in about the same bytes
(1,024 of 10,000 there, 10%) plus each unit's exact residual block. This benchmark forces both fall-backs on
the simulated sessions of bench_peers.py (120 units x 5 bins = 600 features) by lowering ``subset_ridge``:

- ``full Gram``: the library default at these sizes;
- ``factored, 10% rank``: 61 of 600 eigenvectors, the share real sizes keep;
- ``factored, 3% rank``: 18 of 600, a harsher cut;
- ``no Gram``: what real sizes got before.

All units and native subsets of 10 and 30 units (3 draws each); paired differences over sessions.

    .venv/bin/python benchmarks/bench_gram_rank.py              # 5 sessions, appends RESULTS.md
    .venv/bin/python benchmarks/bench_gram_rank.py --real-dims  # time subset solves at 2,000 units
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bank_rank import run, scored_conditions  # noqa: E402
from bench_peers import encoder_configs  # noqa: E402

from neurrator.models.subset_ridge import FactoredGram, gram_rank_plan, subset_weights  # noqa: E402
from neurrator.models.training import train_encoder  # noqa: E402

#: name -> EncoderConfig.subset_ridge (features the full Gram may have): 192^2 / 600 -> rank 61, 104^2 / 600 -> 18
CONDITIONS = {"full Gram": 4096, "factored, 10% rank": 192, "factored, 3% rank": 104, "no Gram": 0}


def session(seed: int, args, bb) -> dict:
    def train(cap, binned, targets, split):
        cfg, enc = encoder_configs(args, binned.n_units, targets)
        return train_encoder(binned, targets, split, config=cfg, encoder=dataclasses.replace(enc, subset_ridge=cap),
                             seed=seed, progress=False)

    return scored_conditions(seed, args, bb, CONDITIONS, train)


def real_dims(args) -> list[str]:
    """Subset solves with 2,000 units x 5 bins and the rank training keeps there; random factors (the time is
    what is measured: the eigen-decomposition itself is the one the all-unit ridge already computes)."""
    N, T, K = 2000, 5, 64
    d = N * T
    r = gram_rank_plan(d, 18 * 900, 4096)
    g = torch.Generator().manual_seed(0)
    vecs = torch.linalg.qr(torch.randn(d, r, generator=g))[0]
    xty = torch.randn(d, K, generator=g)
    fg = FactoredGram(vecs, torch.rand(r, generator=g) * 1e4, torch.eye(T).expand(N, T, T) * 50, xty)
    lines = [f"Full size: 2,000 units x 5 bins = {d:,} features (full Gram {4 * d * d / 2**20:.0f} MB); factored at "
             f"rank {r} ({4 * (d * r + r + N * T * T) / 2**20:.0f} MB). Time of one subset's ridge weights "
             "(cached per subset while it decodes):", ""]
    for k in (10, 30, 100, 1000, 1999):
        units = torch.randperm(N, generator=g)[:k].sort().values
        t0 = time.perf_counter()
        subset_weights(units, T, xty, 100.0, fg)
        lines.append(f"- {k} units: {time.perf_counter() - t0:.2f} s")
    return lines


if __name__ == "__main__":
    run(__doc__, "Subset ridge from a factored Gram matrix", session, ((1, 0), (2, 0), (1, 3), (2, 3), (0, 3)),
        real_dims, "Factored Gram at full size", "only time subset solves at full size")
