"""An annotated NWB file -> a text report for a person (`neurrator show`).

The figures live in ``neurrator.report.figures`` (``plot_fidelity`` is re-exported here for ``show --plot``) and the
HTML page in ``neurrator.report.html`` (``write_report``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from neurrator.errors import MAX_SHOWN_CHARS, NeurratorError, escape_controls, shorten
from neurrator.report.figures import plot_fidelity
from neurrator.report.data import check_derived_tables, open_nwb

__all__ = ["SHOW_METRICS", "format_file", "plot_fidelity"]

#: The fidelity columns of `neurrator show`, headline metrics first, the raw (uninformative) cosine last.
SHOW_METRICS = ("centred_patch_cosine", "top1", "top5", "within_1s", "narration_similarity", "patch_cosine")


def _open(path: Path):
    return open_nwb(path)


def _by_type(module) -> dict[str, object]:
    return {type(c).__name__: c for c in module.data_interfaces.values()}


def _line(line: str) -> str:
    """One line of the report, safe on a terminal: a leading blank line kept, the rest one line with control
    characters escaped and cut (with its length stated) at 8 x `MAX_SHOWN_CHARS`."""
    lead = "\n" if line.startswith("\n") else ""
    return lead + escape_controls(shorten(line[len(lead):], 8 * MAX_SHOWN_CHARS))


def format_file(path: Path, *, show_all: bool = False, per_subset: int = 3) -> str:
    """The narrations, unit subsets, fidelity and validation scores of a neurrator output file -> text for a terminal.

    The file is untrusted: its tables' sizes and index columns are checked before they are read
    (`neurrator.report.data.check_derived_tables`), each text from it is cut to `MAX_SHOWN_CHARS` with its
    length stated, and control characters are escaped (`neurrator.errors.escape_controls`).
    """
    path = Path(path)
    io, nwbfile = _open(path)
    try:
        module = nwbfile.processing.get("neurrator")
        if module is None:
            raise NeurratorError(path, "has no neurrator results (no processing/neurrator module)")
        check_derived_tables(nwbfile, label=str(path))
        found = _by_type(module)
        lines: list[str] = []
        subject = nwbfile.subject
        lines.append(f"{path.name}: session {shorten(nwbfile.session_id)}, subject "
                     f"{shorten(getattr(subject, 'subject_id', '?'))} ({shorten(getattr(subject, 'species', '?'))}, "
                     f"{shorten(getattr(subject, 'genotype', None) or 'no genotype')})")
        try:
            prov = json.loads(nwbfile.source_script or "{}")
        except json.JSONDecodeError:
            prov = {}
        if prov:
            lines.append(f"source: {shorten(prov.get('source'))}  ({str(prov.get('source_checksum', ''))[:80]})")
            lines.append(f"neurrator {prov.get('versions', {}).get('neurrator', '?')}, references: "
                         f"{prov.get('references', '?')}")
        enc = found.get("EncoderCheckpoint")
        if enc is not None:
            lines.append(f"encoder: {enc.architecture} on {enc.backbone_id} layer {enc.backbone_layer} "
                         f"({enc.n_patches} x {enc.dim}, {enc.preprocessing}); stimulus {enc.stimulus}; "
                         f"{len(enc.units.data)} units")

        subsets = found.get("UnitSubsetsTable")
        labels: list[str] = []
        if subsets is not None:
            sub_df = subsets.to_dataframe(index=True)
            labels = [shorten(x) for x in sub_df["label"]]

        fid = found.get("DecodingFidelityTable")
        if fid is not None:
            lines.append("\ndecoding fidelity on held-out repeats (value, chance):")
            table: dict[int, dict[str, tuple[float, float]]] = defaultdict(dict)
            subset_rows = np.asarray(fid["unit_subset"].data[:])
            for r, m, v, c in zip(subset_rows, fid["metric"].data[:], fid["value"].data[:], fid["chance_level"].data[:]):
                table[int(r)][str(m)] = (float(v), float(c))
            # the headline first (centred cosine, frame identification); the raw cosine last: it is
            # dominated by what every frame shares and is high even for a decoder that knows nothing
            names = [n for n in SHOW_METRICS if any(n in row for row in table.values())]
            lines.append(f"  {'subset':<34s} " + " ".join(f"{n:>20s}" for n in names))
            if "patch_cosine" in names:
                lines.append("  (patch_cosine, the raw cosine, is high for any decoder: read centred_patch_cosine)")
            for r in sorted(table):
                cells = []
                for n in names:
                    v, c = table[r].get(n, (np.nan, np.nan))
                    cells.append(f"{v:9.3f} ({c:7.3f})" if np.isfinite(c) else f"{v:9.3f}{'':10s}")
                lab = labels[r] if 0 <= r < len(labels) else str(r)
                lines.append(f"  {lab:<34s} " + " ".join(f"{x:>20s}" for x in cells))
                for n in sorted(k for k in table[r] if ":" in k and k.endswith("top1")):
                    v, c = table[r][n]
                    lines.append(f"    baseline {n:<24s} {v:.3f} (chance {c:.3f})")

        if subsets is not None:
            lines.append(f"\nunit subsets ({len(sub_df)}):")
            for label, kind, members in zip(labels, sub_df["kind"], sub_df["units"]):
                lines.append(f"  {label:<34s} {shorten(kind):<17s} {len(members):5d} units")

        if "NarrationsCollection" in found or "NarrationsTable" in found:
            import ndx_neurrator as ndx

            df = ndx.narrations_dataframe(module)
            model = df["narrator_model"].iloc[0] if len(df) else "?"
            lines.append(f"\nnarrations ({len(df)}, narrator {model}):")
            for subset, part in df.groupby("subset", sort=False):
                part = part.sort_values("start_time")
                for _, row in (part if show_all else part.head(per_subset)).iterrows():
                    lines.append(f"  [{shorten(subset)}] t={row['start_time']:.2f}s frame {int(row['frame'])}: "
                                 f"{shorten(row['text'])}")
                    if "reference_text" in part:
                        lines.append(f"      reference: {shorten(row['reference_text'])}  (similarity "
                                     f"{row['similarity']:.2f})")

        val = found.get("SAEValidationTable")
        if val is not None and len(val):
            lines.append("\nSAE validation (mean over narrations):")
            for col in ("concept_agreement", "latent_profile_similarity", "reconstruction_score"):
                v = np.asarray(val[col].data[:], dtype=float)
                lines.append(f"  {col:<28s} " + (f"{v[np.isfinite(v)].mean():.3f}" if np.isfinite(v).any() else "n/a"))
            concepts = val["supporting_concepts"][0] if "supporting_concepts" in val.colnames else []
            lines.append(f"  supporting concepts of the first narration: {', '.join(concepts) or '(none)'}")
        sae = found.get("SparseAutoencoder")
        if sae is not None:
            names = [shorten(x, 200) for x in sae.concept_labels[:]]
            named = sorted({n for n in names if n})
            lines.append(f"SAE: {len(names)} latents, {sum(bool(n) for n in names)} named; concepts: "
                         f"{', '.join(named[:30])}")
        lines.extend(_neurration_lines(found, show_all=show_all))
        lines.extend(_unnamed_lines(module))
        return "\n".join(_line(line) for line in lines)
    finally:
        io.close()


def _unnamed_lines(module) -> list[str]:
    """The analyses the run skipped (and why) and the concept cards of the unnamed concepts, briefly."""
    lines: list[str] = []
    tables = module.data_interfaces if module is not None else {}
    skipped = tables.get("skipped_analyses")
    if skipped is not None and {"analysis", "reason"} <= set(skipped.colnames):
        for name, reason in zip(skipped["analysis"].data[:], skipped["reason"].data[:]):
            lines.append(f"skipped {shorten(str(name))}: {shorten(str(reason))}")
    cards = tables.get("concept_cards")
    if cards is not None and "latent" in cards.colnames and len(cards):
        lines.append(f"\nunnamed concepts ({len(cards)} cards, to be named by looking at their top frames):")
        for i in range(min(len(cards), 8)):
            frames = list(cards["top_frames"][i]) if "top_frames" in cards.colnames else []
            lines.append(f"  latent {int(cards['latent'].data[i])}: top frames "
                         f"{', '.join(str(int(f)) for f in frames[:5]) or '(none)'}")
    return lines


def _neurration_lines(found: dict[str, object], *, show_all: bool) -> list[str]:
    """The single-unit, group and scaling tables, briefly (all units with --all)."""
    lines: list[str] = []
    units = found.get("UnitNeurrationTable")
    if units is not None and len(units):
        df = units.to_dataframe(index=True)
        unit_ids = np.asarray(units["unit"].table.id.data[:]) if units["unit"].table is not None else None
        df = df.set_axis([int(unit_ids[r]) if unit_ids is not None else int(r) for r in df["unit"]])
        driven = df["visually_driven"].astype(bool)
        lines.append(f"\nsingle units ({len(df)}; {int(driven.sum())} visually driven; words only for those):")
        shown = df if show_all else df[driven].sort_values("reliability", ascending=False).head(8)
        for unit_id, row in shown.iterrows():
            if not row["visually_driven"]:
                lines.append(f"  unit {unit_id}: not visually driven (reliability {row['reliability']:.2f})")
                continue
            concept = (f"{row['top_concept']} (r {row['top_concept_r']:.2f}, q {row['top_concept_q']:.3f})"
                       if row["top_concept"] else "no significant concept")
            lines.append(f"  unit {unit_id}: reliability {row['reliability']:.2f}; {shorten(concept)}; prefers: "
                         f"{shorten(row['preferred_text'])}")
    comp = found.get("GroupComparisonTable")
    if comp is not None and len(comp):
        df = comp.to_dataframe()
        sig = df[df["q"] < 0.05].sort_values("effect", ascending=False)
        lines.append(f"\ngroup concepts enriched against size-matched random pools (q < 0.05): {len(sig)} of {len(df)}")
        for (kind, group, source), part in sig.groupby(["group_kind", "group", "source"], sort=False):
            shown = ", ".join(f"{c} {e:+.2f} [{lo:+.2f}, {hi:+.2f}]" for c, e, lo, hi in
                              zip(part["concept"][:4], part["effect"][:4], part["ci_lo"][:4], part["ci_hi"][:4]))
            lines.append(f"  {kind} {group} ({source}): {shown}")
    sep = found.get("GroupSeparationTable")
    if sep is not None and len(sep):
        lines.append("\nnarrations by group (value [95% CI], chance, p; status against matched pools):")
        for _, row in sep.to_dataframe().iterrows():
            status = f"  {row['status']}" if row.get("status") else ""  # files before the status column have none
            lines.append(f"  {row['group_kind']:<10s} {row['analysis']:<32s} {row['group'] or '':<12s} "
                         f"{row['value']:.3f} [{row['ci_lo']:.3f}, {row['ci_hi']:.3f}]  chance {row['chance_level']:.3f}"
                         f"  p {row['p']:.3f}{status}")
    scal = found.get("ScalingTable")
    if scal is not None and len(scal):
        df = scal.to_dataframe()
        lines.append("\nsmallest population beating the shuffled baseline (95% CI), per region:")
        for (region, metric), part in df.groupby(["region", "metric"], sort=False):
            n, lo, hi = part["crossing_n"].iloc[0], part["crossing_lo"].iloc[0], part["crossing_hi"].iloc[0]
            note = str(part["crossing_note"].iloc[0]) if "crossing_note" in part else ""
            upper = f"{hi:.0f}" if np.isfinite(hi) else "not reached in every resample"
            text = (note if note.startswith("not estimable") else f"{n:.0f} units [{lo:.0f}, {upper}]"
                    if np.isfinite(n) else "never (within the sizes tested)")
            lines.append(f"  {region:<8s} {metric:<22s} {text}")
    return lines
