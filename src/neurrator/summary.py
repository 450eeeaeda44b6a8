"""A finished run (`NarrateResult`) -> the plain-text summary printed by `neurrator narrate` and `demo`."""

from __future__ import annotations

__all__ = ["format_summary"]


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
        lines.append(f"\nnarrations from {best.subset.label} ({best.subset.n_units} units), held-out repeats:")
        for i in range(min(examples, len(best.narrations))):
            lines.append(f"  frame {int(best.frames[i]):4d}  narration: {best.narrations[i]}")
            lines.append(f"              reference: {best.references[i]}   (similarity {best.similarity[i]:.2f})")
    lines.append("\nsubset                           units  patch_cos   top1 (chance)  within_1s (chance)  "
                 "narration: matched / shuffled / floor")
    for r in result.subsets:
        m = r.metrics
        lines.append(
            f"  {r.subset.label:<30.30s} {r.subset.n_units:5d}  {m['patch_cosine'][0]:9.3f}  "
            f"{m['top1'][0]:5.3f} ({m['top1'][1]:.3f})  {m['within_1s'][0]:9.3f} ({m['within_1s'][1]:.3f})  "
            f"{r.similarity.mean():6.3f} / {r.shuffled.mean():6.3f} / {r.floor.mean():6.3f}")
    for name, metrics in result.baselines.items():
        lines.append(f"  baseline {name:<21.21s} {'':5s}  {metrics['patch_cosine'][0]:9.3f}  "
                     f"{metrics['top1'][0]:5.3f} ({metrics['top1'][1]:.3f})  "
                     f"{metrics['within_1s'][0]:9.3f} ({metrics['within_1s'][1]:.3f})")
    if result.skipped:
        shown = ", ".join(f"{lab} ({n})" for lab, n, _ in result.skipped[:8])
        more = f", and {len(result.skipped) - 8} more" if len(result.skipped) > 8 else ""
        lines.append(f"skipped {len(result.skipped)} groups with too few units: {shown}{more}")
    if result.timings:
        lines.append("time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items()))
    lines.append(f"\nwrote {result.output}")
    return "\n".join(lines)
