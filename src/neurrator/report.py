"""An annotated NWB file -> a text report for a person (`neurrator show`)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from neurrator.errors import NeurratorError


def _open(path: Path):
    import h5py
    from pynwb import NWBHDF5IO

    if not path.is_file():
        raise NeurratorError(path, "no such file")
    if not h5py.is_hdf5(str(path)):
        raise NeurratorError(path, "not an HDF5/NWB file")
    try:
        io = NWBHDF5IO(str(path), mode="r")
        return io, io.read()
    except Exception as err:  # noqa: BLE001 - unreadable input is the user's problem, said in one line
        raise NeurratorError(path, f"not a readable NWB file ({type(err).__name__}: {err})") from None


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


def plot_fidelity(path: Path, png: Path, *, metrics: tuple[str, ...] = ("within_1s", "top1", "narration_similarity")) -> Path:
    """Fidelity vs population size (random draws, mean +/- sd over seeds), with regions and cell types
    as labelled points and each metric's chance level dashed; written to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path, png = Path(path), Path(png)
    io, nwbfile = _open(path)
    try:
        module = nwbfile.processing.get("neurrator")
        found = _by_type(module) if module is not None else {}
        if "DecodingFidelityTable" not in found or "UnitSubsetsTable" not in found:
            raise NeurratorError(path, "has no neurrator decoding-fidelity results to plot")
        fid = found["DecodingFidelityTable"].to_dataframe(index=True)
        subsets = found["UnitSubsetsTable"].to_dataframe(index=True)
    finally:
        io.close()
    fid["subset_row"] = [int(r) if np.ndim(r) == 0 else int(r.index[0]) for r in fid["unit_subset"]]
    fid["kind"] = [str(subsets["kind"].iloc[r]) for r in fid["subset_row"]]
    fid["label"] = [str(subsets["label"].iloc[r]) for r in fid["subset_row"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = fid[fid["metric"] == metric]
        rand = rows[rows["kind"].isin(["random", "all", "single_unit"])].groupby("n_units")["value"]
        if len(rand):
            mean, sd = rand.mean(), rand.std().fillna(0)
            ax.errorbar(mean.index, mean.values, yerr=sd.values, marker="o", label="random draws / all units")
        groups = rows[rows["kind"].isin(["region", "cell_type", "local_population"])]
        for _, r in groups.iterrows():
            ax.scatter(r["n_units"], r["value"], marker="s" if r["kind"] == "region" else "^", zorder=3)
            ax.annotate(r["label"].split(":", 1)[-1], (r["n_units"], r["value"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        chance = rows["chance_level"].dropna()
        if len(chance):
            ax.axhline(float(chance.mean()), ls="--", c="grey", lw=1, label="chance / shuffled")
        ax.set_xscale("log")
        ax.set_xlabel("units")
        ax.set_title(metric)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{path.name}: decoding fidelity on held-out repeats", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
