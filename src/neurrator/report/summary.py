"""A finished run (`NarrateResult`) -> the plain-text summary printed by `neurrator narrate` and `demo`."""

from __future__ import annotations

import numpy as np

from neurrator.stats.nulls import NULL_BLOCKS, NULL_SHIFT

__all__ = ["format_summary", "narration_counts"]


def format_summary(result, *, examples: int = 3) -> str:
    """A few narrations beside their references, fidelity and scores against the baselines.

    Parameters
    ----------
    result
        `neurrator.pipeline.NarrateResult`.
    examples
        Narrations shown from the ``all`` subset (0: none).
    """
    lines = [f"session {result.session_label}: {result.n_units} units, {len(result.subsets)} unit subsets "
             f"({result.seconds:.0f} s)"]
    best = next((r for r in result.subsets if r.subset.label == "all"), None) or result.subsets[0]
    if examples:
        lines.append(f"\nnarrations from {best.subset.label} ({best.subset.n_units} units), held-out test windows:")
        for i in range(min(examples, len(best.narrations))):
            lines.append(f"  frame {int(best.frames[i]):4d}  narration: {best.narrations[i]}")
            lines.append(f"              reference: {best.references[i]}   (similarity {best.similarity[i]:.2f})")
    within = any("within_1s" in r.metrics for r in result.subsets)  # not for flashed images (independent items)
    lines.append("\nsubset                         units  centred cos [95% CI]   top1 (chance|null)    "
                 + ("within_1s (chance|null)   " if within else "") + "narration [95% CI] / null / constant / floor")
    for r in result.subsets:
        m = r.metrics
        c, t1, w = m["centred_patch_cosine"], m["top1"], m.get("within_1s")  # no within_1s for flashed images
        nar = r.narration_metric() if r.scores is not None else None
        flag = {k: "*" if r.beats_null.get(k) else " " for k in ("centred_patch_cosine", "top1", "within_1s",
                                                                  "narration_similarity")}
        narr = (f"{nar.value:5.3f}{flag['narration_similarity']}[{nar.lo:4.2f},{nar.hi:4.2f}] / {nar.chance:5.3f} / "
                f"{np.mean(r.scores.constant):5.3f} / {r.floor.mean():5.3f}") if nar else ""
        lines.append(
            f"  {r.subset.label:<28.28s} {r.subset.n_units:5d}  {c.value:6.3f}{flag['centred_patch_cosine']}"
            f"[{c.lo:6.3f},{c.hi:6.3f}]  {t1.value:5.3f}{flag['top1']}({t1.chance:.3f}|{t1.null_mean:.3f})  "
            + (f"{w.value:5.3f}{flag['within_1s']}({w.chance:.3f}|{w.null_mean:.3f})     " if w else "")
            + narr)
    for name, metrics in result.baselines.items():
        c, t1, w = metrics["centred_patch_cosine"], metrics["top1"], metrics.get("within_1s")
        lines.append(f"  baseline {name:<19.19s} {'':5s}  {c.value:6.3f} [{c.lo:6.3f},{c.hi:6.3f}]  "
                     f"{t1.value:5.3f} ({t1.chance:.3f})" + (f"        {w.value:5.3f} ({w.chance:.3f})" if w else ""))
    lines.append(f"* beats its permutation null after FDR (q < 0.05) across subsets and lies above chance (never a "
                 f"control); identification: {getattr(best, 'rank_null', 'a permutation null')}, its "
                 f"mean shown beside the analytic chance; cosines: the same shift for a movie (CI above chance for "
                 f"flashed images). {narration_counts(result.subsets)}")
    lines.extend(_neurration_lines(getattr(result, "neurration", None)))
    if result.skipped:
        shown = ", ".join(f"{lab} ({n})" for lab, n, _ in result.skipped[:8])
        more = f", and {len(result.skipped) - 8} more" if len(result.skipped) > 8 else ""
        lines.append(f"skipped {len(result.skipped)} groups with too few units: {shown}{more}")
    if result.timings:
        lines.append("time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items()))
    lines.append(f"\nwrote {result.output}")
    if getattr(result, "report", None):
        lines.append(f"wrote {result.report} (open it in a browser)")
    return "\n".join(lines)


def narration_counts(subsets) -> str:
    """How many subsets' narrations beat each control: the paired null (FDR, above its mean; a movie's is the
    circular shift, flashed images' the block permutation) and
    the constant narration (paired CI above 0); only both together earn the '*'."""
    n = len(subsets)
    null = [r.q.get("narration_similarity", np.nan) < 0.05 and r.narration_metric().value > r.narration_metric().chance
            if r.scores is not None else False for r in subsets]
    const = [bool(r.scores is not None and r.scores.beats_constant) for r in subsets]
    both = sum(bool(r.beats_null.get("narration_similarity")) for r in subsets)
    kinds = {getattr(r.scores, "null_kind", NULL_BLOCKS) for r in subsets if r.scores is not None}
    what = "narrations rotated round the movie" if kinds == {NULL_SHIFT} else "shuffled references"
    return (f"Narration beats its paired null ({what}) in {sum(null)} of {n} subsets, the "
            f"constant narration in {sum(const)} of {n}, and both ('*') in {both} of {n}.")


def _neurration_lines(neur) -> list[str]:
    """A few lines on the single-unit, group and scaling analyses (the full tables are in the file)."""
    if neur is None:
        return []
    u = neur.units
    driven = np.asarray(u["visually_driven"], dtype=bool)
    with_concept = [c for c, d in zip(u["top_concept"], driven) if d and c]
    lines = [f"\nsingle units: {int(driven.sum())} of {len(driven)} visually driven (split-half reliability, "
             f"FDR); {len(with_concept)} with a significant concept"]
    if with_concept:
        names, counts = np.unique(with_concept, return_counts=True)
        top = sorted(zip(counts, names), reverse=True)[:6]
        lines.append("  top concepts of single units: " + ", ".join(f"{n} ({c})" for c, n in top))
    for comp in neur.comparisons:
        if not len(comp.group) or str(comp.source[0]) != "tuning":
            continue
        sig = np.nan_to_num(np.asarray(comp.q, dtype=float), nan=1.0) < 0.05
        for g in dict.fromkeys(comp.group.astype(str)):
            pick = (comp.group.astype(str) == g) & sig
            if pick.any():
                order = np.argsort(-comp.effect[pick])[:3]
                shown = ", ".join(f"{comp.concept[pick][i]} {comp.effect[pick][i]:+.2f}" for i in order)
                lines.append(f"  {comp.group_kind[0]} {g}: enriched in tuning (q < 0.05): {shown}")
    for sep in neur.separations:
        status = sep.status if sep.status is not None else [""] * len(sep.analysis)
        for a, g, v, c, p, st in zip(sep.analysis, sep.group, sep.value, sep.chance_level, sep.p, status):
            if str(a).startswith("text_classifier_accuracy"):
                what = ("its units' preferred-stimulus narrations" if str(a).endswith(":preferred_stimulus")
                        else "narration text alone")
                lines.append(f"  {sep.group_kind[0]} from {what}: accuracy {v:.2f} (matched pools {c:.2f}, "
                             f"p {p:.3f}){': ' + str(st) if st else ''}")
            elif str(g) != "all" and str(st) in ("distinctive", "not interpretable"):
                lines.append(f"  {sep.group_kind[0]} {g}: narrations {st} (separation {v:+.3f}, p {p:.3f})")
    for curve in neur.scaling:
        if str(curve.metric[0]) != "centred_patch_cosine":
            continue
        n, lo, hi = curve.crossing_n[0], curve.crossing_lo[0], curve.crossing_hi[0]
        note = str(getattr(curve, "crossing_note", ["estimated" if np.isfinite(n) else "never"])[0])
        if note.startswith("not estimable"):
            text = f"crossing of the shuffled baseline not estimable ({note.split(': ', 1)[-1]})"
        elif np.isfinite(n):
            text = f"beats the shuffled baseline from {n:.0f} units [95% CI {lo:.0f}, {hi:.0f}]"
        else:
            text = "never beats the shuffled baseline (sizes tested)"
        lines.append(f"  {curve.region[0]}: {text} (centred patch cosine, {int(np.max(curve.n_draws))} draws per "
                     f"size)")
    return lines
