"""An annotated NWB file -> a text report for a person (`neurrator show`).

The figures live in ``neurrator.figures`` (``plot_fidelity`` is re-exported here for ``show --plot``) and the
HTML page in ``neurrator.html_report`` (``write_report``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.figures import plot_fidelity
from neurrator.report_data import open_nwb

__all__ = ["format_file", "plot_fidelity"]


def _open(path: Path):
    return open_nwb(path)


def _by_type(module) -> dict[str, object]:
    return {type(c).__name__: c for c in module.data_interfaces.values()}


def format_file(path: Path, *, show_all: bool = False, per_subset: int = 3) -> str:
    """The narrations, unit subsets, fidelity and validation scores of a neurrator output file."""
    path = Path(path)
    io, nwbfile = _open(path)
    try:
        module = nwbfile.processing.get("neurrator")
        if module is None:
            raise NeurratorError(path, "has no neurrator results (no processing/neurrator module)")
        found = _by_type(module)
        lines: list[str] = []
        subject = nwbfile.subject
        lines.append(f"{path.name}: session {nwbfile.session_id}, subject "
                     f"{getattr(subject, 'subject_id', '?')} ({getattr(subject, 'species', '?')}, "
                     f"{getattr(subject, 'genotype', None) or 'no genotype'})")
        try:
            prov = json.loads(nwbfile.source_script or "{}")
        except json.JSONDecodeError:
            prov = {}
        if prov:
            lines.append(f"source: {prov.get('source')}  ({prov.get('source_checksum', '')[:80]})")
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
            df = subsets.to_dataframe(index=True)
            labels = [str(x) for x in df["label"]]
            lines.append(f"\nunit subsets ({len(df)}):")
            for label, kind, members in zip(df["label"], df["kind"], df["units"]):
                lines.append(f"  {label:<34s} {kind:<17s} {len(members):5d} units")

        fid = found.get("DecodingFidelityTable")
        if fid is not None:
            lines.append("\ndecoding fidelity on held-out repeats (value, chance):")
            table: dict[int, dict[str, tuple[float, float]]] = defaultdict(dict)
            subset_rows = np.asarray(fid["unit_subset"].data[:])
            for r, m, v, c in zip(subset_rows, fid["metric"].data[:], fid["value"].data[:], fid["chance_level"].data[:]):
                table[int(r)][str(m)] = (float(v), float(c))
            names = ["patch_cosine", "top1", "top5", "within_1s", "narration_similarity"]
            lines.append(f"  {'subset':<34s} " + " ".join(f"{n:>20s}" for n in names))
            for r in sorted(table):
                cells = []
                for n in names:
                    v, c = table[r].get(n, (np.nan, np.nan))
                    cells.append(f"{v:9.3f} ({c:7.3f})" if np.isfinite(c) else f"{v:9.3f}{'':10s}")
                lab = labels[r] if r < len(labels) else str(r)
                lines.append(f"  {lab:<34s} " + " ".join(f"{x:>20s}" for x in cells))
                for n in sorted(k for k in table[r] if ":" in k and k.endswith("top1")):
                    v, c = table[r][n]
                    lines.append(f"    baseline {n:<24s} {v:.3f} (chance {c:.3f})")

        narr = found.get("NarrationsTable")
        if narr is not None:
            df = narr.to_dataframe(index=True)
            rows = np.asarray(narr["unit_subset"].data[:])
            lines.append(f"\nnarrations ({len(df)}, narrator {df['narrator_model'].iloc[0] if len(df) else '?'}):")
            shown: dict[int, int] = defaultdict(int)
            for i in np.lexsort((np.asarray(df["start_time"]), rows)):  # grouped by subset, then in time
                r = int(rows[i])
                if not show_all and shown[r] >= per_subset:
                    continue
                shown[r] += 1
                lab = labels[r] if r < len(labels) else str(r)
                sim = df["similarity"].iloc[i] if "similarity" in df else np.nan
                lines.append(f"  [{lab}] t={df['start_time'].iloc[i]:.2f}s frame {int(df['frame'].iloc[i])}: "
                             f"{df['text'].iloc[i]}")
                if "reference_text" in df:
                    lines.append(f"      reference: {df['reference_text'].iloc[i]}  (similarity {sim:.2f})")

        val = found.get("SAEValidationTable")
        if val is not None and len(val):
            lines.append("\nSAE validation (mean over narrations):")
            for col in ("concept_agreement", "latent_profile_similarity", "reconstruction_score"):
                lines.append(f"  {col:<28s} {np.nanmean(np.asarray(val[col].data[:], dtype=float)):.3f}")
            concepts = val["supporting_concepts"][0]
            lines.append(f"  supporting concepts of the first narration: {', '.join(concepts) or '(none)'}")
        sae = found.get("SparseAutoencoder")
        if sae is not None:
            names = [str(x) for x in sae.concept_labels[:]]
            named = sorted({n for n in names if n})
            lines.append(f"SAE: {len(names)} latents, {sum(bool(n) for n in names)} named; concepts: "
                         f"{', '.join(named[:30])}")
        return "\n".join(lines)
    finally:
        io.close()
