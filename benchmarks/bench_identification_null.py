"""Calibration of the frame-identification null (issue 26.1): the circular-shift null beside the old
block-permutation null, on the demo's simulated session and on its global nulls.

Usage::

    .venv/bin/python benchmarks/bench_identification_null.py             # demo session + 2 null seeds
    .venv/bin/python benchmarks/bench_identification_null.py --nulls 1 --no-append

The demo session (300 units, 12 repeats of a 900-frame movie, 2 test repeats) and its global nulls
(`neurrator.simulate.global_null_session`: every unit's spikes circularly shifted by its own lag within
every movie repeat; rates and autocorrelation kept, stimulus locking gone) go through the pipeline's own
steps up to decoding with the demo's configuration (tiny backbone, 2 epochs): binning, split, targets,
encoder training, the unit subsets; then every subset's predictions on the test repeats are scored twice
on the same windows (`neurrator.decode.fidelity.score_predictions`): with the pipeline's null (frame labels
circularly shifted within each test repeat, lag >= 1 s, 2,000 shifts) and with the old one (each window
paired with the true frame of a window of another 1-s block), and FDR across subsets as the pipeline does
(`neurrator.decode.decoding.apply_fdr` rules: q <= 0.05 and above chance). Narration, SAE and the analyses
are skipped: they do not touch this null. On a null session the fraction of subsets with p < 0.05 should
sit near 0.05 and none should beat the null after FDR; on the real session the ``all`` and VISp subsets
should still beat it (power).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from neurrator.config import NarrateConfig
from neurrator.data.binning import bin_session
from neurrator.data.responses import unit_reliability_for
from neurrator.decode.decoding import scoring_context
from neurrator.decode.fidelity import score_predictions
from neurrator.decode.subsets import build_subsets
from neurrator.models.prediction import predict
from neurrator.models.targets import compute_targets
from neurrator.pipeline import _read, _train, _Clock
from neurrator.simulate import global_null_session, write_simulated_session
from neurrator.stats.resampling import benjamini_hochberg

from _hardware import append_results, hardware

METRICS = ("top1", "top5", "within_1s")


def score_session(session, config: NarrateConfig, models) -> tuple[list[dict], float]:
    """Each subset's identification p under the shift null and the old block null (same predictions)."""
    t0 = time.perf_counter()
    kind = config.kind
    binned = bin_session(session, kind=kind.name, bins_per_frame=config.bins_per_frame,
                         window_bins=config.train.window_bins)
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, offset_bins=kind.offset_bins(config.train.offset_bins)))
    split = kind.split(binned.frame, binned.repeat, n_val_repeats=config.n_val_repeats,
                       n_test_repeats=config.n_test_repeats, n_val_images=config.n_val_images,
                       n_test_images=config.n_test_images, seed=config.seed, label=session.path_label)
    targets = compute_targets(session.frames, models.backbone, device="cpu", cache_dir=config.cache_path / "targets",
                              progress=False)
    trained = _train(binned, targets, split, config=config, device="cpu", backbone=models.backbone,
                     stimulus=session.stimulus)
    fps = kind.fps(session.frame_rate)
    _, reliability = unit_reliability_for(binned, split, offset_bins=config.train.offset_bins, seed=config.seed,
                                          flashed=False, min_shift=max(1, round(fps)))
    units = session.units
    subsets, _ = build_subsets(units.region, units.cell_type, units.probe, units.depth, units.n_spikes(),
                               unit_ids=units.ids, plan=config.subsets,
                               reliability=None if reliability is None else
                               np.where(reliability.driven, reliability.value, np.nan))
    ctx = scoring_context(targets, np.unique(binned.frame[split.train]), bank_texts=["a"], fps=fps,
                          holdout_frames=trained.holdout_frames)
    frames, repeats = binned.frame[split.test], binned.repeat[split.test]
    rows = []
    for sub in subsets:
        pred = predict(trained, binned, split.test, unit_idx=sub.unit_idx, device="cpu")
        kw = dict(fps=fps, train_mean=ctx.train_mean, groups=ctx.groups, block_frames=ctx.block_frames, n_boot=0,
                  n_perm=ctx.n_perm, seed=config.seed)
        new = score_predictions(pred, frames, targets, repeats=repeats, **kw)
        old = score_predictions(pred, frames, targets, **kw)
        rows.append({"label": sub.label,
                     "value": {m: new[m] for m in METRICS}, "chance": {m: new[f"chance_{m}"] for m in METRICS},
                     "null_mean": {m: new[f"{m}_null_mean"] for m in METRICS},
                     "new": {m: new[f"p_{m}"] for m in METRICS}, "old": {m: old[f"p_{m}"] for m in METRICS}})
    return rows, time.perf_counter() - t0


def flagged(rows: list[dict], which: str, m: str) -> np.ndarray:
    """The pipeline's star: BH q <= 0.05 across subsets and the value above its chance (and null mean)."""
    q = benjamini_hochberg(np.array([r[which][m] for r in rows]))
    above = np.array([r["value"][m] > r["chance"][m] and (which == "old" or r["value"][m] > r["null_mean"][m])
                      for r in rows])
    return (q <= 0.05) & above


def summarise(label: str, rows: list[dict]) -> list[str]:
    out = []
    for m in METRICS:
        new = np.array([r["new"][m] for r in rows])
        old = np.array([r["old"][m] for r in rows])
        out.append(f"| {label} | {m} | {len(rows)} | {np.mean(new < 0.05):.3f} | {np.mean(old < 0.05):.3f} | "
                   f"{int(flagged(rows, 'new', m).sum())} | {int(flagged(rows, 'old', m).sum())} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nulls", type=int, default=2, help="global-null seeds")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    lines, power, seconds, pooled = [], [], [], {"new": [], "old": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "real.nwb"
        write_simulated_session(src, seed=0)
        config = NarrateConfig.from_options(backbone="tiny", narrator="retrieval", device="cpu", seed=0,
                                            progress=False, cache_dir=str(tmp / "cache"), epochs=2)
        session, _, models = _read(str(src), config=config, device="cpu", clock=_Clock())
        sessions = [("real", session)] + [(f"null{s}", global_null_session(session, seed=100 + s))
                                          for s in range(args.nulls)]
        for label, sess in sessions:
            rows, sec = score_session(sess, config, models)
            seconds.append(sec)
            lines += summarise(label, rows)
            print("\n".join(lines[-3:]), flush=True)
            if label == "real":
                for r in rows:
                    if r["label"] == "all" or r["label"].startswith("region:VISp"):
                        power.append(f"{r['label']}: " + ", ".join(
                            f"{m} {r['value'][m]:.3f} (chance {r['chance'][m]:.3f}, null mean {r['null_mean'][m]:.3f})"
                            f" p {r['new'][m]:.4f} (old {r['old'][m]:.4f})" for m in METRICS))
            else:
                for w in ("new", "old"):
                    pooled[w] += [r[w][m] for r in rows for m in METRICS]
    head = ("| session | metric | subsets | p < 0.05, circular shift | p < 0.05, old block null | "
            "starred after FDR (shift) | starred after FDR (old) |\n|---|---|---|---|---|---|---|")
    pool = {w: np.array(v) for w, v in pooled.items()}
    text = (f"\n## Frame-identification null: circular shift vs block permutation (issue 26.1)\n\n"
            f"{hardware()}; no GPU. Demo session (300 units, 12 repeats, 2 test repeats, tiny backbone, 2 epochs) "
            f"and {args.nulls} global nulls (`global_null_session`, seeds 100+); {np.mean(seconds):.0f} s per "
            f"session (train + score every subset twice). bench_identification_null.py\n\n{head}\n" + "\n".join(lines)
            + f"\n\nPooled over the null sessions and the three metrics: p < 0.05 in {np.mean(pool['new'] < 0.05):.3f} "
            f"(shift) vs {np.mean(pool['old'] < 0.05):.3f} (old); p < 0.2 in {np.mean(pool['new'] < 0.2):.3f} vs "
            f"{np.mean(pool['old'] < 0.2):.3f}. Power on the real session:\n\n" + "\n".join(f"- {p}" for p in power)
            + "\n")
    print(text)
    if not args.no_append:
        append_results(text)


if __name__ == "__main__":
    main()
