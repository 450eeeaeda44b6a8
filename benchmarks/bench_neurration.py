"""Issue-9 acceptance numbers for single-unit and cell-type neurration on simulated sessions, checked
against the simulator's ground truth.

Usage::

    .venv/bin/python benchmarks/bench_neurration.py               # 3 movies x 3-session pseudo-mice, appends
    .venv/bin/python benchmarks/bench_neurration.py --sessions 1 --movies 1 --no-append   # quick look

What runs, per movie (movie seeds 0.. ``--movies``; one column of the table each): ``--sessions`` simulated
mice (population seeds 0.., that movie, Cre lines SST, PV, VIP in turn) -> spikes binned at 120 Hz -> training repeats (``split_repeats``, 2 val + 2 test held out) ->
`trial_responses` -> `neurrate_units` -> `tuning_enrichment` over the OPTO-TAGGED units of each class
pooled across sessions (the pseudo-mouse) -> `null_pool_false_positive_rate`.

STAND-IN: the concept activations are the truth's ``frame_features`` (0/1 presence of each caption
feature per frame), not SAE concepts of the true patch tokens: the pipeline's SAE concepts are not wired
into this analysis yet. The numbers therefore test the statistics (reliability gate, circular-shift
tuning test, FDR, pools), not the SAE's naming. No narrator runs (the acceptance numbers do not need one).
The same analysis runs again with an OPEN vocabulary: the concepts are the 0/1 presence of every content
word of the canonical captions (``car``, ``top``, ``left``, ``moving``, ...), not the simulator's feature
list; a word counts as a feature only when its caption presence follows that feature's (r >= 0.8,
`_vocab.open_term_features`; ``left``, ``right``, ``moving`` stand for no single feature: misses).

Units: "clearly tuned" (`SimulationTruth.clear_strongest`) are selected with the NOISE-FREE rate (largest
tuning weight >= 1.5 x the second, and the feature the noise-free rate follows best); "all tuned" are all
visually driven units with any tuning weight, a selection that does not look at the rates.

Acceptance (issue 9): top significant concept = true strongest feature for >= 70% of the clearly tuned
units (`SimulationTruth.clear_strongest`); CA1: "not visually driven" >= 90% and no significant concept
>= 95%; the enriched concepts (q < 0.05) of each interneuron class include its true preferred features;
size-matched random pools significant in <= 5% of draws.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

import numpy as np

from neurrator.data.binning import Binned, bin_spikes
from neurrator.data.splits import split_repeats
from neurrator.analysis.groups import null_pool_false_positive_rate, tuning_enrichment
from neurrator.analysis.single_units import hierarchical_fdr, neurrate_units
from neurrator.data.responses import trial_responses
from neurrator.analysis.scaling import collect_scores, population_draws, scaling_curve
from neurrator.stats.resampling import block_permutation, scene_blocks
from neurrator.simulate import simulate_session

from neurrator.sae.concepts import term_occurrence

from _hardware import append_results, hardware
from _vocab import as_features, open_term_features

CRE = ("SST", "PV", "VIP")


def binned_of(sim) -> Binned:
    lens = [len(s) for s in sim.spike_times]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    spikes = np.concatenate(sim.spike_times) if sum(lens) else np.zeros(0)
    pres = sim.presentations
    counts = bin_spikes(spikes, offsets, pres["start"], pres["stop"], bins_per_interval=4)
    return Binned(counts=counts, frame=np.asarray(pres["frame"], np.int64), repeat=np.asarray(pres["repeat"], np.int64),
                  bins_per_frame=4, unit_ids=np.asarray(sim.truth.unit_ids, np.int64))


def scaling_lines(sim, b: Binned, split, *, sizes=(1, 3, 10, 30, 100), n_draws=5, seed=0) -> dict[str, str]:
    """Ridge stand-in for the encoder: window counts of a unit pool -> the frame's feature vector; per test
    window the centred cosine with the true vector, against the same prediction scored on block-permuted
    frames (the shuffled baseline)."""
    truth = sim.truth
    Y = truth.frame_features.astype(np.float64)
    ym = Y[b.frame[split.train]].mean(axis=0)
    bpf = b.bins_per_frame
    rows = np.arange(len(b.frame))[:, None] * bpf + bpf + np.arange(bpf)[None, :]  # next frame's bins (latency)
    rows = np.minimum(rows, b.counts.shape[0] - 1)
    X_all = b.counts[rows].sum(axis=1).astype(np.float64)  # (P, N)
    test = split.test
    blocks = scene_blocks(b.frame[test], block_frames=30)
    perm = block_permutation(len(test), blocks, seed=seed)
    tgt = Y[b.frame[test]] - ym

    def cos(a, c):
        return (a * c).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1) + 1e-12)

    def score(idx, shuffled=False):
        X = X_all[:, idx]
        mu, sd = X[split.train].mean(0), X[split.train].std(0) + 1e-6
        Xt = (X[split.train] - mu) / sd
        W = np.linalg.solve(Xt.T @ Xt + 10.0 * np.eye(len(idx)), Xt.T @ (Y[b.frame[split.train]] - ym))
        pred = ((X[test] - mu) / sd) @ W
        return cos(pred, tgt[perm] if shuffled else tgt)

    out = {}
    for reg in ("VISp", "VISl", "VISal", "LGd", "CA1"):
        units = np.flatnonzero(truth.region == reg)
        draws = population_draws(units, sizes, n_draws=n_draws, seed=seed)
        sz, sc = collect_scores(draws, score)
        _, base = collect_scores(draws, lambda i: score(i, shuffled=True))
        curve = scaling_curve(sc, base, sizes=sz, blocks=blocks, region=reg, metric="feature_cosine",
                              n_boot=300, n_perm=1000, seed=seed)
        c = curve.crossing_n[0]
        vals = " ".join(f"{n}:{v:.2f}" for n, v in zip(curve.n_units, curve.value))
        out[f"scaling {reg} (ridge stand-in) crossing n [CI]"] = (
            f"{c:.0f} [{curve.crossing_lo[0]:.0f}, {curve.crossing_hi[0]:.0f}]  (score by n: {vals}; "
            f"baseline {np.mean(curve.baseline):.2f}; q at largest n {curve.q[-1]:.3g})")
    return out


def movie_lines(args, movie_seed: int) -> tuple[dict[str, str], str]:
    """The acceptance lines of one pseudo-mouse watching the movie of ``movie_seed``, and its timing."""
    t0 = time.perf_counter()
    values, truths, tagged = [], [], []
    scaling = {}
    for s in range(args.sessions):
        sim = simulate_session(n_units=args.units, n_repeats=args.repeats, n_frames=args.frames, seed=s,
                               movie_seed=movie_seed, cre_line=CRE[s % 3])
        b = binned_of(sim)
        split = split_repeats(b.repeat, n_val=2, n_test=2)
        tr = trial_responses(b, split.train)
        if s == 0:
            scaling = scaling_lines(sim, b, split)
        values.append(tr)
        truths.append(sim.truth)
        tagged.append(sim.truth.opto_responsive & (sim.truth.cell_type == CRE[s % 3]))
    t_sim = time.perf_counter() - t0
    tr0 = values[0]
    frames = tr0.frames
    assert all(np.array_equal(v.frames, frames) for v in values), "sessions must share the movie frames"
    resp = tr0._replace(values=np.concatenate([v.values for v in values], axis=2),
                        baseline=np.concatenate([v.baseline for v in values]),
                        bin_mean=np.concatenate([v.bin_mean for v in values]),
                        bin_sd=np.concatenate([v.bin_sd for v in values]))
    truth = truths[0]
    names = list(truth.feature_names)
    acts = truth.frame_features  # STAND-IN for the SAE concepts (see the module docstring)
    cat = lambda f: np.concatenate([getattr(t, f) for t in truths])  # noqa: E731
    region, cell, strongest, clear = cat("region"), cat("cell_type"), cat("strongest_feature"), cat("clear_strongest")
    t1 = time.perf_counter()
    out = neurrate_units(resp, np.zeros((len(acts), 1, 1), np.float32), acts, names, narrate=None,
                         n_perm=args.n_perm, n_null=1000, min_shift=30, seed=0)
    t_unit = time.perf_counter() - t1
    sig_any = out.tuning.significant(0.05).any(axis=1)
    simes_any = (np.nan_to_num(hierarchical_fdr(out.tuning.p)[0], nan=1.0) <= 0.05).any(axis=1)
    flat_any = (np.nan_to_num(out.tuning.q_flat, nan=1.0) <= 0.05).any(axis=1)
    top = np.asarray(out.top_concept)
    ca1 = region == "CA1"
    visual = ~ca1 & (resp.values.std(axis=(0, 1)) > 0)
    clear_v = clear & visual
    hit = top[clear_v] == strongest[clear_v]
    tuned_v = (strongest != "") & visual
    hit_t = top[tuned_v] == strongest[tuned_v]
    # the open vocabulary: every caption word's presence as a concept, words scored by the feature they follow
    occ, words = term_occurrence(list(truth.captions), None)
    t_open = time.perf_counter()
    out_open = neurrate_units(resp, np.zeros((len(occ), 1, 1), np.float32), occ.astype(np.float32), words,
                              narrate=None, n_perm=args.n_perm, n_null=1000, min_shift=30, seed=0)
    t_open = time.perf_counter() - t_open
    top_open = as_features(out_open.top_concept, open_term_features(truth.captions, truth.frame_features, names))
    lines = {
        "clearly tuned units: top significant concept = true strongest": f"{hit.mean():.1%} of {clear_v.sum()} (>= 70%)",
        "  (of those, visually driven)": f"{out.visually_driven[clear_v].mean():.1%}",
        "  all tuned units, closed vocabulary": f"{hit_t.mean():.1%} of {tuned_v.sum()}",
        "  clearly tuned units, open vocabulary": f"{np.mean(top_open[clear_v] == strongest[clear_v]):.1%}",
        "  all tuned units, open vocabulary": f"{np.mean(top_open[tuned_v] == strongest[tuned_v]):.1%}",
        "CA1 units 'not visually driven'": f"{(~out.visually_driven[ca1]).mean():.1%} of {ca1.sum()} (>= 90%)",
        "CA1 units with no significant concept (FDR 0.05, gated)": f"{(~sig_any[ca1]).mean():.1%} (>= 95%)",
        "  same, units selected by their own tuning (Simes), no gate": f"{(~simes_any[ca1]).mean():.1%}",
        "  same, flat BH over units x concepts": f"{(~flat_any[ca1]).mean():.1%}",
        "visual-region units driven": f"{out.visually_driven[visual].mean():.1%} of {visual.sum()}",
    }
    tag = np.concatenate(tagged)
    groups = {c: np.flatnonzero(tag & (cell == c)) for c in CRE}
    groups = {c: g for c, g in groups.items() if g.size}
    t2 = time.perf_counter()
    # region-matched pools: a cortical cell type against other units of the same regions
    enr = tuning_enrichment(out.tuning.r, groups, names, group_kind="cell_type", strata=region, n_null=2000,
                            n_boot=500, seed=0)
    for c, g in groups.items():
        want = truth.preferred_features(c)
        got = enr.enriched(c)
        row = (enr.group == c) & (enr.concept == (want[0] if want else ""))
        eff = f"effect {enr.effect[row][0]:+.3f} [{enr.ci_lo[row][0]:+.3f}, {enr.ci_hi[row][0]:+.3f}]" if row.any() else ""
        lines[f"{c} (n={g.size} tagged): enriched"] = (f"{got} ; true {want} -> "
                                                      f"{'includes' if set(want) <= set(got) else 'MISSES'}; {eff}")
    size = int(round(np.mean([g.size for g in groups.values()]))) if groups else 20
    # test pools from the cortical units (where the tagged classes live), nulls region-matched as above; the
    # pool must come from the same population as its nulls (excluding the tagged units would select units
    # that differ from the nulls by construction: measured 32% "enriched" pools that way)
    not_cortex = np.flatnonzero(~np.isin(region, ("VISp", "VISl", "VISal")))
    fpr, n_draws = null_pool_false_positive_rate(out.tuning.r, size, n_draws=200, n_null=1000, strata=region,
                                                 exclude=not_cortex, seed=1)
    lines[f"random pools of {size} cortical units with any enriched concept"] = f"{fpr:.1%} of {n_draws} draws (<= 5%)"
    t_grp = time.perf_counter() - t2
    lines.update(scaling)
    timing = (f"movie {movie_seed}: simulate+bin {t_sim:.1f} s, per-unit analyses of {resp.values.shape[2]} units "
              f"{t_unit:.1f} s (open vocabulary {t_open:.1f} s), group analyses {t_grp:.1f} s")
    return lines, timing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--movies", type=int, default=3, help="movie seeds 0..MOVIES-1, one pseudo-mouse each")
    ap.add_argument("--units", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--n-perm", type=int, default=2000)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    per_movie, timings = [], []
    for m in range(args.movies):
        lines, timing = movie_lines(args, m)
        per_movie.append(lines), timings.append(timing)
        print(timing, flush=True)
    keys = list(dict.fromkeys(k for lines in per_movie for k in lines))
    width = max(len(k) for k in keys)
    table = "\n".join(f"{k:<{width}}  " + "  |  ".join(f"movie {m}: {lines.get(k, '-')}"
                                                          for m, lines in enumerate(per_movie)) for k in keys)
    timing = "; ".join(timings)
    print(table)
    if not args.no_append:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        append_results(
            f"\n## Neurration acceptance on simulated sessions (bench_neurration.py, {stamp})\n\n"
            f"{args.movies} movie(s) (movie seeds 0..{args.movies - 1}), each a pseudo-mouse of "
            f"{args.sessions} session(s) x {args.units} units, {args.repeats} repeats x {args.frames} frames, "
            f"train repeats only; concepts = truth frame_features (stand-in for SAE concepts); "
            f"{args.n_perm} circular shifts per unit.\n{hardware()}\n\n```\n{table}\n{timing}\n```\n")


if __name__ == "__main__":
    main()
