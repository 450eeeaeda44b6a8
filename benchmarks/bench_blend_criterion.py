"""The blend's choice with a term for temporal closeness in its criterion, against the library's (issue 28).

The blend (`neurrator.models.readout.fit_blend`) is chosen for the best identification, the mean of
top-1, top-5 and top-30 ranks. CEBRA ties the encoder on within 1 s and mean frame error, which
reward a decode that lands near the true moment of the movie rather than on it. This benchmark trains
the encoder twice on each of bench_peers' simulated sessions (same configuration, same seed, so the
networks are identical): once as the library does, once with the criterion
``(3 * identification + within 30 frames) / 4`` (the validation windows' best candidate within 30 frames
of the true one, i.e. within 1 s at 30 fps; the candidates are the movie's frames in order). The criterion is
swapped in by replacing `readout._ranks` and `readout._ident` for the second training only; the library
is not changed.

Test-repeat metrics of the all-unit decode, and their paired differences over sessions.

    python benchmarks/bench_blend_criterion.py [--seeds 10] [--no-append]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers as bp  # noqa: E402
from _hardware import publish  # noqa: E402

from neurrator.models import readout  # noqa: E402

FRAMES_1S = 30


def closeness_criterion():
    """(ranks, ident) replacements for readout's: ident becomes (3 * identification + within 1 s) / 4."""
    ranks, ident = readout._ranks, readout._ident
    last = {}

    def ranks_w(sim, frame):
        last["within"] = float(((sim.argmax(1) - frame).abs() <= FRAMES_1S).float().mean())
        return ranks(sim, frame)

    return ranks_w, lambda rank: (3 * ident(rank) + last["within"]) / 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    args = bp.bench_args()  # bench_peers' sessions and encoder
    bb = bp.load_backbone("tiny", seed=0)
    library = (readout._ranks, readout._ident)
    variants = {"library": library, "closeness": closeness_criterion()}
    scores = {v: [] for v in variants}
    for seed in range(a.seeds):
        binned, targets, split, te, sc = bp.movie_data(seed, args, bb)
        cfg, enc = bp.encoder_configs(args, binned.n_units, targets)
        for name, (ranks, ident) in variants.items():
            readout._ranks, readout._ident = ranks, ident
            try:
                tr = bp.train_encoder(binned, targets, split, config=cfg, encoder=enc, seed=seed, progress=False)
            finally:
                readout._ranks, readout._ident = library
            scores[name].append(sc(bp.predict(tr, binned, te)))
            b = tr.extra["blend"]
            print(f"session {seed} {name}: within 1 s {scores[name][-1]['within_1s']:.3f} top-1 "
                  f"{scores[name][-1]['top1']:.3f} (beta {b['beta']}, gamma {b['gamma']}, kNN {b['knn_k']} x "
                  f"{b['knn_w']})", flush=True)
    lines = [f"`python benchmarks/bench_blend_criterion.py {' '.join(sys.argv[1:])}`: {a.seeds} of bench_peers' "
             "sessions and its encoder configuration, trained twice each (identical networks), test repeats, all "
             "units. Closeness criterion - library criterion, mean [95% t over sessions], sessions changed:", "",
             "| " + " | ".join(bp.MOVIE_METRICS) + " |", "|---" * len(bp.MOVIE_METRICS) + "|"]
    cells = []
    for m in bp.MOVIE_METRICS:
        d = np.array([c[m] - lib[m] for c, lib in zip(scores["closeness"], scores["library"])])
        mean, lo, hi = bp.t_interval(d)
        cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}], {int((d != 0).sum())}/{len(d)}")
    publish("The blend's criterion with temporal closeness (bench_blend_criterion.py)",
            lines + ["| " + " | ".join(cells) + " |"], append=not a.no_append)


if __name__ == "__main__":
    main()
