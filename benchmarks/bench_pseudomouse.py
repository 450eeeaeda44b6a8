"""A simulated pseudo-mouse of 3 sessions through the pipeline's analysis: does the narration-text
classifier tell the opto-tagged cell types apart (issue 9), and is it at chance on shuffled labels? Do
the SAE concepts enriched in each class include its true preferred feature, and how often does a
size-matched random pool show an enriched concept?

Usage::

    .venv/bin/python benchmarks/bench_pseudomouse.py              # 3 sessions, appends to RESULTS.md
    .venv/bin/python benchmarks/bench_pseudomouse.py --no-append --units 150

What runs: three simulated mice (population seeds 0-2, one movie, Cre lines SST, PV, VIP; written
WITHOUT a cell_type column, so, as in real Allen files, each session knows only its own opto-tagged
class) are read, binned and pooled by (repeat, frame) (`neurrator.data.pseudomouse.pool_sessions`); one
encoder is trained over all their units with a per-session tag (`neurrator.pipeline.analyse`, the
demo's settings: tiny backbone, retrieval narrator, 2 epochs); the cell-type subsets pool each class
across sessions. The classifier is `groups.classify_groups` on the narrations of the cell-type subsets
(5-fold, folds by narrated window), with its label-permutation chance and p; the control reruns it 20
times with the narrations' labels shuffled.

Caveat printed with the figures: in a pseudo-mouse each tagged class comes from its own session, so
"cell type" is also "session"; a classifier above chance separates the pooled groups' narrations, and
the session of origin is one thing that can separate them. The simulator's classes differ in their
true preferred features (PV car, SST sunlit, VIP dark), which is what the narrations should carry.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from neurrator.data.binning import bin_session
from neurrator.config import NarrateConfig
from neurrator.analysis.groups import classify_groups, null_pool_false_positive_rate
from neurrator.pipeline import analyse
from neurrator.models.loading import load_models
from neurrator.data.pseudomouse import pool_sessions
from neurrator.data.session import load_session
from neurrator.simulate import TYPE_PREFERENCES, write_simulated_session

from _hardware import append_results, hardware

CRE = ("SST", "PV", "VIP")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=300, help="units per session")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sessions = []
        for s, cre in enumerate(CRE):
            path = root / f"sim{s}.nwb"
            write_simulated_session(path, n_units=args.units, seed=s, movie_seed=0, cre_line=cre,
                                    cell_type_column=False)
            sessions.append(load_session(path))
        config = NarrateConfig.from_options(backbone="tiny", narrator="retrieval", device="cpu", seed=0,
                                            progress=False, cache_dir=str(root / "cache"), epochs=2)
        binned = [bin_session(s, bins_per_frame=config.bins_per_frame) for s in sessions]
        session, pooled = pool_sessions(sessions, binned)
        models = load_models(config, device="cpu", needs_reference=False)
        a = analyse(session, pooled.binned, config=config, device="cpu", models=models,
                    unit_session=pooled.unit_session)
    rows = [r for r in a.results if r.subset.kind == "cell_type"]
    per_type = {r.subset.group: (len(r.subset.unit_idx),
                                 sorted({int(pooled.unit_session[i]) for i in r.subset.unit_idx})) for r in rows}
    cell_type = np.asarray(session.units.cell_type, str)
    preferred = list(a.neurration.units["preferred_text"])
    sets = {  # which narrations: the cell-type subsets' decoded windows, or each driven unit's preferred stimulus
        "subset narrations": ([t for r in rows for t in r.narrations],
                              np.concatenate([[r.subset.group] * len(r.narrations) for r in rows]),
                              np.concatenate([np.arange(len(r.narrations)) for r in rows])),
        "preferred-stimulus narrations": (
            [preferred[i] for i in range(len(preferred)) if preferred[i] and cell_type[i] in per_type],
            np.array([cell_type[i] for i in range(len(preferred)) if preferred[i] and cell_type[i] in per_type]),
            None),
    }
    lines = [f"cell types (units, sessions): {per_type}"]
    rng = np.random.default_rng(1)
    for what, (texts, labels, strata) in sets.items():
        emb = np.asarray(models.embedder.encode(texts), dtype=np.float64)
        real = classify_groups(emb, labels, group_kind="cell_type", strata=strata, seed=0)
        shuffled = [classify_groups(emb, labels[rng.permutation(len(labels))], group_kind="cell_type",
                                    strata=strata, n_perm=50, seed=k).value[0] for k in range(20)]
        counts = {str(g): int(n) for g, n in zip(*np.unique(labels, return_counts=True))}
        lines.append(f"{what} ({counts}): accuracy {real.value[0]:.2f} [{real.ci_lo[0]:.2f}, {real.ci_hi[0]:.2f}], "
                     f"chance {real.chance_level[0]:.2f}, permutation p {real.p[0]:.3f}; shuffled labels: accuracy "
                     f"{np.mean(shuffled):.2f} (range {min(shuffled):.2f}-{max(shuffled):.2f} over 20 shuffles)")
    # the concepts enriched in each class (SAE concepts, as the pipeline computed them) vs the truth, and
    # how often a size-matched random pool of cortical units shows any enriched concept
    for comp in a.neurration.comparisons:
        if not len(comp.group) or comp.group_kind[0] != "cell_type":
            continue
        for c in sorted(set(comp.group.astype(str))):
            want = list(TYPE_PREFERENCES.get(c, ()))
            got = comp.enriched(c)
            lines.append(f"{comp.source[0]} enrichment, {c}: enriched (q < 0.05) {got}; true {want} -> "
                         f"{'includes' if set(want) <= set(got) else 'MISSES'}")
    t = a.neurration.tuning
    names = list(a.neurration.concept_names)
    r = np.full((len(session.units), len(names)), np.nan)
    r[np.asarray(t["unit"], np.int64), [names.index(str(c)) for c in t["concept"]]] = t["r"]
    region = np.asarray(session.units.region, str)
    size = int(round(np.mean([v[0] for v in per_type.values()])))
    fpr, n_draws = null_pool_false_positive_rate(r, size, n_draws=200, n_null=1000, strata=region, seed=1,
                                                 exclude=np.flatnonzero(~np.isin(region, ("VISp", "VISl", "VISal"))))
    lines.append(f"random pools of {size} cortical units with any enriched concept: {fpr:.1%} of {n_draws} draws")
    seconds = time.perf_counter() - t0
    print("\n".join(lines))
    if not args.no_append:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(
            f"\n## Pseudo-mouse: narration-text classifier and enrichment of cell types\n\n`benchmarks/bench_pseudomouse.py` "
            f"({when}; {hardware()}; {seconds:.0f} s; {args.units} units per session). Three simulated sessions "
            "(SST, PV, VIP Cre lines; no cell_type column, so each class is its session's opto-tagged units) "
            "pooled by (repeat, frame), one encoder over all units with a session tag, the cell-type subsets "
            "pooled across sessions, narrated by retrieval; classifier: 5-fold nearest centroid on MiniLM "
            "embeddings of the narrations. Caveat: each class comes from one session, so the classifier's "
            "groups are also sessions.\n\n" + "".join(f"- {x}\n" for x in lines))


if __name__ == "__main__":
    main()
