"""Concept naming against the simulator's ground truth: which SAE size and naming method recovers each
clearly tuned unit's true strongest feature as its top significant concept (issue 9's >= 70%).

Usage::

    .venv/bin/python benchmarks/bench_concepts.py                       # seeds 0-4, appends to RESULTS.md
    .venv/bin/python benchmarks/bench_concepts.py --seeds 0 --sae 1024x16 --no-append   # quick look

Per seed: the demo's simulated session (`write_simulated_session(seed=s)`: 300 units, 12 repeats of 900
frames) is read, binned and split as the pipeline does (8 training repeats); the tiny backbone's true
patch tokens are the SAE's data; trial responses and the reliability gate come from the training
repeats. For each SAE size (trained once, seed s) both naming methods name the latents from the
training frames' captions (none within 5 frames of a narrated test window, as in the pipeline), each
distinct name's activation is the mean of its latents, and `neurrate_units` (circular-shift tuning test,
hierarchical FDR) gives every unit its top significant concept. "Recovered" is the fraction of clearly
tuned units (`SimulationTruth.clear_strongest`) whose top concept is their true strongest feature;
units without a significant concept count as misses. "Oracle" uses the truth's 0/1 feature presence per
frame as the concepts (the ceiling the statistics allow).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from neurrator.analysis.run import concept_activations
from neurrator.data.responses import unit_reliability_for
from neurrator.data.binning import bin_session
from neurrator.data.splits import split_repeats
from neurrator.sae.concepts import name_concepts, name_concepts_correlation
from neurrator.config import NarrateConfig, SAEConfig
from neurrator.decode.decoding import narrated_presentations
from neurrator.analysis.single_units import neurrate_units
from neurrator.models.loading import load_models
from neurrator.decode.references import session_references
from neurrator.sae.autoencoder import frame_latents, naming_frames, train_sae
from neurrator.data.session import read_session
from neurrator.simulate import FEATURE_NAMES, load_truth, truth_path, write_simulated_session
from neurrator.io.sources import open_source
from neurrator.models.targets import compute_targets

from _hardware import append_results, hardware

METHODS = {"correlation": name_concepts_correlation, "log-odds": name_concepts}


def session_inputs(seed: int, root: Path):
    """The pipeline's inputs to naming and tuning for the demo session of ``seed``."""
    src = root / f"sim{seed}.nwb"
    write_simulated_session(src, seed=seed)
    cfg = NarrateConfig.from_options(backbone="tiny", narrator="retrieval", device="cpu", seed=seed,
                                     cache_dir=str(root / "cache"), progress=False)
    with open_source(str(src), cache_dir=cfg.cache_path) as nwb:
        s = read_session(nwb, source=str(src), path_label=str(src), stimulus=cfg.stimulus, movie=None,
                         quality_filter=cfg.quality_filter, movie_cache_dir=cfg.cache_path / "movies")
    b = bin_session(s, bins_per_frame=cfg.bins_per_frame)
    split = split_repeats(b.repeat, n_val=cfg.n_val_repeats, n_test=cfg.n_test_repeats)
    models = load_models(cfg, device="cpu", needs_reference=False)
    targets = compute_targets(s.frames, models.backbone, device="cpu", cache_dir=None, progress=False)
    narrated = narrated_presentations(b, split, cfg.narrations_per_subset)
    refs = session_references(s, targets, np.unique(b.frame[split.train]), b.frame[narrated], generator=None)
    responses, _ = unit_reliability_for(b, split, offset_bins=cfg.train.offset_bins, seed=seed)
    named, _ = naming_frames(refs.naming_texts, b.frame[narrated], fps=30.0)
    truth = load_truth(truth_path(src))
    row = {int(u): i for i, u in enumerate(truth.unit_ids)}
    idx = np.array([row[int(u)] for u in s.units.ids])
    return dict(targets=targets, responses=responses, named=named, texts=[refs.naming_texts[int(f)] for f in named],
                strongest=np.asarray(truth.strongest_feature)[idx], clear=np.asarray(truth.clear_strongest, bool)[idx],
                features=truth.frame_features.astype(np.float32))


def recovered(inp, acts: np.ndarray, names: list[str], seed: int) -> tuple[float, int]:
    neur = neurrate_units(inp["responses"], inp["targets"], acts, names, narrate=None, n_perm=1000, seed=seed)
    top, clear = np.asarray(neur.top_concept), inp["clear"]
    return float(np.mean(top[clear] == inp["strongest"][clear])), len(names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--sae", nargs="+", default=["256x8", "512x8", "1024x8", "1024x16"],
                    help="SAE sizes as LATENTSxK")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sae]
    rows: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            inp = session_inputs(seed, Path(tmp))
            acc, _ = recovered(inp, inp["features"], list(FEATURE_NAMES), seed)
            rows.setdefault("oracle (true features)", []).append(acc)
            for n_latents, k in sizes:
                sae, _ = train_sae(inp["targets"], config=SAEConfig(n_latents=n_latents, k=k).for_data(
                    inp["targets"].shape[2]), epochs=5, device="cpu", seed=seed)
                lat_named = frame_latents(sae, inp["targets"][inp["named"]], device="cpu")
                lat_all = frame_latents(sae, inp["targets"], device="cpu")
                for method, fn in METHODS.items():
                    concepts = fn(lat_named, inp["texts"], vocabulary=list(FEATURE_NAMES))
                    acts, names = concept_activations(lat_all, concepts.names)
                    acc, n = recovered(inp, acts, names, seed)
                    key = f"SAE {n_latents}/k{k}, {method}"
                    rows.setdefault(key, []).append(acc)
                    print(f"seed {seed} {key}: {n} concepts, recovered {acc:.2f}", flush=True)
    seconds = time.perf_counter() - t0
    lines = ["| concepts | " + " | ".join(f"seed {s}" for s in args.seeds) + " | min | mean |",
             "|---|" + "---|" * (len(args.seeds) + 2)]
    for key, vals in rows.items():
        cells = " | ".join(f"{v:.2f}" for v in vals)
        lines.append(f"| {key} | {cells} | {min(vals):.2f} | {np.mean(vals):.2f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(
            f"\n## Concept naming\n\n`benchmarks/bench_concepts.py` ({when}; {hardware()}; {seconds:.0f} s). "
            "Fraction of the clearly tuned units whose top significant concept is their true strongest "
            "feature (no significant concept = a miss), on the demo's simulated session for each seed; the "
            "SAE is trained on the tiny backbone's true patch tokens and named from training-frame captions "
            "only. Issue 9's acceptance is >= 0.70.\n\n" + table + "\n")


if __name__ == "__main__":
    main()
