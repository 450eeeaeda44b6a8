"""``neurrator report``: one self-contained HTML page of a derived file's results (no network, no torch).

Everything comes from the derived NWB file (``neurrator.report.data.read_derived``); figures are embedded as
base64 PNG, the page is rendered with jinja2 from ``neurrator/report/templates/report.html.j2`` and needs nothing
but a browser. Each section renders from whatever containers the file holds and says when one is absent.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurrator.report import figures
from neurrator.errors import MAX_SHOWN_CHARS, NeurratorError, escape_controls, shorten
from neurrator.io.folders import check_output_file
from neurrator.report.concept_cards import concept_cards_context
from neurrator.report.data import DerivedFile, read_derived
from neurrator.report.tables import unit_id_tables
from neurrator.nwb.derived import temporary_name

__all__ = ["EXAMPLE_KINDS", "FIG_METRICS", "MAX_CARDS", "card_order", "build_context", "fmt", "fmt_ci", "render_context", "render_report", "write_report"]

#: The report's figures lead with the headline (centred patch cosine, frame identification), narration beside.
FIG_METRICS = ("centred_patch_cosine", "top1", "narration_similarity")
#: Unit cards shown on the page (the interesting units first); the full table is embedded as a CSV download.
MAX_CARDS = 24
#: The provenance record is shown whole up to this many characters (it quotes the run's configuration).
MAX_PROVENANCE_CHARS = 100_000
EXAMPLE_KINDS = ("all", "region", "cell_type", "local_population", "single_unit", "random")


def fmt(value: Any, digits: int = 3) -> str:
    """A number for people: ``digits`` significant digits, '—' for missing/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "—" if not math.isfinite(v) else f"{v:.{digits}g}"


def fmt_ci(lo: Any, hi: Any) -> str:
    return "" if fmt(lo) == "—" or fmt(hi) == "—" else f"[{fmt(lo)}, {fmt(hi)}]"


def _figure(fig_id: str, fig, caption: str) -> dict | None:
    if fig is None:
        return None
    return {"id": fig_id, "src": figures.data_uri(figures.fig_png(fig)), "caption": caption}


def _thumb(data: DerivedFile, frame: int, cache: dict[int, str | None] | None = None) -> str | None:
    """The frame's thumbnail as a data URI; with ``cache``, rendered once per frame (units share top frames)."""
    if cache is not None and int(frame) in cache:
        return cache[int(frame)]
    img = data.thumbnails.get(int(frame))
    uri = None if img is None else figures.data_uri(figures.image_png(img))
    if cache is not None:
        cache[int(frame)] = uri
    return uri


def _session(data: DerivedFile) -> dict:
    prov, enc = data.provenance, data.encoder or {}
    facts = [("file", data.session["file"]), ("session", data.session["session_id"]),
             ("subject", data.session["subject_id"]), ("species", data.session["species"]),
             ("genotype", data.session["genotype"] or "not given"), ("sex / age",
             f"{data.session['sex'] or '?'} / {data.session['age'] or '?'}"),
             ("stimulus", enc.get("stimulus") or "not recorded (no EncoderCheckpoint)")]
    if data.fidelity is not None and "split" in data.fidelity:
        facts.append(("scores computed on", ", ".join(sorted(set(map(str, data.fidelity["split"])))) +
                      " split (held-out movie repeats)"))
    config = prov.get("config", {}) if isinstance(prov.get("config"), dict) else {}
    split = {k: v for k, v in config.items() if any(s in k for s in ("test", "val", "repeat", "split"))}
    if split:
        facts.append(("split settings", ", ".join(f"{k}={v}" for k, v in sorted(split.items()))))
    models = []
    if enc:
        models.append(f"encoder {enc['architecture']} -> {enc['backbone_id']} layer {enc['backbone_layer']} "
                      f"({enc['n_patches']} patches x {enc['dim']}); {enc['n_units']} units")
    if data.narrations is not None and "narrator_model" in data.narrations:
        models.append("narrator " + ", ".join(sorted(set(map(str, data.narrations["narrator_model"])))))
    if data.sae:
        models.append(f"sparse autoencoder {data.sae['architecture']} ({len(data.sae['labels'])} latents)")
    for key in ("references", "reference_narrator", "scorer", "narrator"):
        if key in prov and not isinstance(prov[key], (dict, list)):
            models.append(f"{key}: {prov[key]}")
    facts.append(("models", "; ".join(models) or "none recorded"))
    versions = prov.get("versions", {})
    facts.append(("provenance", f"source {prov.get('source', '?')}; neurrator {versions.get('neurrator', '?')}"))
    units = None
    if data.units is not None:
        tab = pd.crosstab(data.units["_region"], data.units["_cell_type"], margins=True, margins_name="total")
        units = {"columns": list(map(str, tab.columns)), "rows": [(str(i), [int(v) for v in r])
                                                                  for i, r in zip(tab.index, tab.values)]}
    return {"facts": facts, "units": units,
            "provenance_json": json.dumps(prov, indent=1, default=str, sort_keys=True)}


def _fidelity_rows(fid: pd.DataFrame) -> list[dict]:
    rows = []
    main = fid[~fid["metric"].astype(str).str.contains(":")]
    for _, r in main.iterrows():
        if r["kind"] == "random":
            continue
        rows.append({"label": r["label"], "kind": figures.KIND_NAMES.get(r["kind"], r["kind"]),
                     "n": fmt(r["n_units"]), "metric": r["metric"], "value": fmt(r["value"]),
                     "ci": fmt_ci(r["ci_lo"], r["ci_hi"]), "chance": fmt(r["chance_level"]),
                     "p": fmt(r["p_value"]), "q": fmt(r["q_value"]),
                     "beats": fmt(r["beats_null"]) if "beats_null" in r else "—",
                     "null": str(r.get("null_kind", "") or "")})
    return rows


def _baseline_rows(fid: pd.DataFrame) -> list[dict]:
    rows = []
    for _, r in fid[fid["metric"].astype(str).str.contains(":")].drop_duplicates("metric").iterrows():
        base, _, metric = str(r["metric"]).partition(":")
        rows.append({"baseline": figures.BASELINE_NAMES.get(base, base), "metric": metric,
                     "value": fmt(r["value"]), "ci": fmt_ci(r["ci_lo"], r["ci_hi"]), "chance": fmt(r["chance_level"])})
    return rows


def _crossings(scaling: pd.DataFrame | None) -> list[dict]:
    if scaling is None:
        return []
    out = []
    for (region, metric), g in scaling.groupby(["region", "metric"], sort=True):
        c = g.iloc[0]
        note = str(c.get("crossing_note", "") or "")
        never = "not estimable (CI open within the sizes tried)" if note.startswith("not estimable") else \
            "never (within sizes tried)"
        out.append({"region": region, "metric": metric, "baseline": fmt(c["baseline"]),
                    "n": fmt(c["crossing_n"]) if fmt(c["crossing_n"]) != "—" else never,
                    "ci": fmt_ci(c["crossing_lo"], c["crossing_hi"]),
                    "max_n": fmt(g["n_units"].max()), "draws": fmt(g["n_draws"].max()) if "n_draws" in g else "—"})
    return out


def _examples(data: DerivedFile, *, n_examples: int = 4) -> list[dict]:
    narr = data.narrations
    if narr is None or not len(narr):
        return []
    # frames narrated by the most subsets first, spread over the movie
    coverage = narr.groupby("frame")["label"].nunique().sort_values(ascending=False, kind="stable")
    best = coverage[coverage == coverage.iloc[0]].index.to_numpy()
    picks = best[np.linspace(0, len(best) - 1, min(n_examples, len(best))).astype(int)]
    out = []
    for frame in picks:
        rows = narr[narr["frame"] == frame].copy()
        rows["_k"] = [EXAMPLE_KINDS.index(k) if k in EXAMPLE_KINDS else 99 for k in rows["kind"]]
        rows = rows.sort_values(["_k", "label"]).drop_duplicates("label")
        ref = next((t for t in rows.get("reference_text", []) if isinstance(t, str) and t), None)
        out.append({"frame": int(frame), "time": fmt(rows["start_time"].min(), 4), "reference": ref,
                    "thumb": _thumb(data, frame),
                    "narrations": [{"label": r["label"], "kind": figures.KIND_NAMES.get(r["kind"], r["kind"]),
                                    "text": r["text"], "similarity": fmt(r.get("similarity"))}
                                   for _, r in rows.iterrows()]})
    return out


def card_order(un: pd.DataFrame) -> np.ndarray:
    """Row positions of ``un`` (a UnitNeurrationTable), the interesting units first: visually driven with a
    significant concept (q < 0.05), a significant drive probe (q, else p < 0.05) or a significant
    leave-one-out loss (p < 0.05) lead, by reliability; then the other driven units, then the rest."""
    def col(name: str, default: float = np.nan) -> np.ndarray:
        return un[name].astype(float).to_numpy() if name in un else np.full(len(un), default)

    driven = un["visually_driven"].astype(bool).to_numpy() if "visually_driven" in un else np.zeros(len(un), bool)
    drive = col("drive_q") if "drive_q" in un else col("drive_p")
    found = (col("top_concept_q") < 0.05) | (drive < 0.05) | ((col("loo_p") < 0.05) & (col("loo_delta") > 0))
    tier = np.where(driven & found, 0, np.where(driven, 1, 2))
    return np.lexsort((-np.nan_to_num(col("reliability"), nan=-np.inf), tier))


def _cards_csv(data: DerivedFile) -> str | None:
    """The whole per-unit table (by unit id) as a CSV data URI, for the page's download link."""
    if data.unit_neurration is None:
        return None
    table = unit_id_tables(data)["unit_neurration"]
    csv = table.to_csv(index=True).encode("utf-8")
    return "data:text/csv;base64," + base64.b64encode(csv).decode("ascii")


def _neuron_cards(data: DerivedFile, *, limit: int | None = None) -> list[dict]:
    """Cards of the first `MAX_CARDS` units in `card_order` (``limit`` overrides)."""
    un = data.unit_neurration
    if un is None:
        return []
    limit = MAX_CARDS if limit is None else limit
    units = data.units
    tuning = data.concept_tuning
    cards, thumbs = [], {}
    for _, r in un.iloc[card_order(un)[:limit]].iterrows():
        row = int(r["unit"])
        uid = int(units.index[row]) if units is not None and 0 <= row < len(units) else row
        region = str(units["_region"].iloc[row]) if units is not None and 0 <= row < len(units) else "unknown"
        cell = str(units["_cell_type"].iloc[row]) if units is not None and 0 <= row < len(units) else "unknown"
        concepts = []
        if tuning is not None:
            sig = tuning[(tuning["unit"] == row) & tuning.get("significant", tuning["q"] < 0.05).astype(bool)]
            concepts = [{"concept": c["concept"], "r": fmt(c["r"]), "q": fmt(c["q"])}
                        for _, c in sig.sort_values("r", key=abs, ascending=False).head(6).iterrows()]
        top = [int(f) for f in (r.get("top_frames") if isinstance(r.get("top_frames"), (list, np.ndarray)) else [])][:5]
        cards.append({
            "unit": uid, "region": region, "cell_type": cell, "reliability": fmt(r.get("reliability")),
            "reliability_p": fmt(r.get("reliability_p")), "driven": bool(r.get("visually_driven", False)),
            "preferred": r.get("preferred_text") or "", "top_frames": [(f, _thumb(data, f, thumbs)) for f in top],
            "top_concept": r.get("top_concept") or "", "top_concept_r": fmt(r.get("top_concept_r")),
            "top_concept_q": fmt(r.get("top_concept_q")), "concepts": concepts,
            "loo": fmt(r.get("loo_delta")), "loo_ci": fmt_ci(r.get("loo_ci_lo"), r.get("loo_ci_hi")),
            "loo_p": fmt(r.get("loo_p")), "drive": r.get("drive_text") or "", "baseline": r.get("baseline_text") or "",
            "drive_shift": fmt(r.get("drive_shift")), "drive_p": fmt(r.get("drive_p")),
            "drive_q": fmt(r.get("drive_q")),
        })
    return cards


def _single_unit_fallback(data: DerivedFile) -> list[dict]:
    """Without a UnitNeurrationTable: what the file says about single-unit subsets."""
    if data.fidelity is None:
        return []
    su = data.fidelity[(data.fidelity["kind"] == "single_unit") & ~data.fidelity["metric"].astype(str).str.contains(":")]
    out = []
    for label, g in su.groupby("label", sort=True):
        out.append({"label": label, "metrics": [(m, fmt(v), fmt(c)) for m, v, c in
                                                zip(g["metric"], g["value"], g["chance_level"])]})
    return out


def _concepts(data: DerivedFile) -> dict | None:
    if not data.sae:
        return None
    labels, sources, split = data.sae["labels"], data.sae["sources"], data.sae["naming_split"]
    rows = [{"i": i, "label": lab or "(unnamed)", "source": sources[i] if i < len(sources) else
             (sources[0] if len(sources) == 1 else "not recorded"),
             "split": split[i] if i < len(split) else "not recorded"} for i, lab in enumerate(labels)]
    validation = []
    if data.sae_validation is not None and len(data.sae_validation):
        for col in ("concept_agreement", "latent_profile_similarity", "reconstruction_score"):
            if col in data.sae_validation:
                v = data.sae_validation[col].astype(float)
                validation.append((col.replace("_", " "), fmt(v.mean()), len(v.dropna())))
        counts = Counter(c for cs in data.sae_validation.get("supporting_concepts", []) for c in cs)
        validation_concepts = counts.most_common(12)
    else:
        validation_concepts = []
    named = sum(bool(lab) for lab in labels)
    return {"rows": rows, "named": named, "n": len(labels), "validation": validation,
            "supporting": validation_concepts}


def _table(df: pd.DataFrame | None, columns: list[str]) -> dict | None:
    if df is None or not len(df):
        return None
    cols = [c for c in columns if c in df]
    return {"columns": cols, "rows": [[fmt(v) if not isinstance(v, str) else v for v in r]
                                      for r in df[cols].itertuples(index=False)]}


def _shown(value: Any, key: str = "") -> Any:
    """Every string of a context, cut to `MAX_SHOWN_CHARS` with its length stated and control characters escaped
    (the file's texts are untrusted); data URIs stay whole, the provenance keeps its line breaks."""
    if isinstance(value, dict):
        return {k: _shown(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_shown(v, key) for v in value)
    if isinstance(value, str):
        if value.startswith(("data:image/png;base64,", "data:text/csv;base64,")):
            return value
        if key == "provenance_json":
            return escape_controls(shorten(value, MAX_PROVENANCE_CHARS), keep_newlines=True)
        return escape_controls(shorten(value, MAX_SHOWN_CHARS))
    return value


def build_context(data: DerivedFile) -> dict:
    """Everything the template shows, as plain strings, numbers and data URIs (untrusted texts cut and
    escaped by `_shown`)."""
    return _shown(_context(data))


def _context(data: DerivedFile) -> dict:
    fid = data.fidelity
    figs = {
        "scaling": _figure("fig-scaling", figures.scaling_figure(fid, data.scaling, metrics=FIG_METRICS),
                           "Fidelity vs population size on held-out repeats. Grey dotted: chance level; red "
                           "dashed: shuffled baseline; other lines: baselines named in the legend."
                           + (" Shaded: 95% bootstrap CI over random draws; diamonds: crossing points with their CI."
                              if data.scaling is not None else " Points: mean over random draws from all units, "
                              "bars: sd over draws; squares: regions with their 95% CI.")),
        "subsets": _figure("fig-subsets", figures.subset_bars_figure(fid, metrics=FIG_METRICS),
                           "Per-subset fidelity and narration similarity. Bars coloured by subset kind; error bars: "
                           "95% scene-block bootstrap CI where stored; vertical lines: chance and each baseline; "
                           "* beats the null after BH-FDR."),
        "reliability": _figure("fig-reliability", figures.reliability_figure(data.unit_neurration),
                               "Split-half reliability of each analysed unit; the gate decides which units are "
                               "narrated."),
        "comparison": _figure("fig-comparison", figures.group_comparison_figure(data.group_comparison),
                              "Concepts enriched per group against size-matched random pools (top 4 per group); "
                              "error bars: 95% bootstrap CI; red: q < 0.05."),
        "separation": _figure("fig-separation", figures.group_separation_figure(data.group_separation),
                              "Narration separation of groups; error bars: 95% CI; black ticks: chance."),
    }
    cards = _neuron_cards(data)
    n_units = 0 if data.unit_neurration is None else len(data.unit_neurration)
    return {
        "title": f"neurrator report: {data.session['file']}",
        "session": _session(data),
        "figures": figs,
        "has": {k: getattr(data, k) is not None for k in ("fidelity", "scaling", "narrations", "unit_neurration",
                                                           "concept_tuning", "group_comparison", "group_separation",
                                                           "sae", "sae_validation")},
        "fidelity_rows": _fidelity_rows(fid) if fid is not None else [],
        "baseline_rows": _baseline_rows(fid) if fid is not None else [],
        "crossings": _crossings(data.scaling),
        "examples": _examples(data),
        "has_thumbnails": bool(data.thumbnails),
        "cards": cards,
        "cards_total": n_units,
        "cards_csv": _cards_csv(data),
        "cards_file": Path(str(data.session["file"])).stem + "_units.csv",
        "card_regions": sorted({c["region"] for c in cards}),
        "card_cell_types": sorted({c["cell_type"] for c in cards}),
        "single_units": _single_unit_fallback(data) if not cards else [],
        "concepts": _concepts(data),
        "unnamed": concept_cards_context(data, thumb=lambda frame: _thumb(data, frame)),
        "comparison_table": _table(data.group_comparison, ["group_kind", "group", "source", "concept", "effect",
                                                           "ci_lo", "ci_hi", "p", "q", "n_units", "n_null_draws"]),
        "separation_table": _table(data.group_separation, ["analysis", "group_kind", "group", "value", "ci_lo",
                                                           "ci_hi", "chance_level", "p", "n", "fidelity", "fidelity_q",
                                                           "status"]),
        "types_found": [t for t in data.types_found if t not in ("VectorData", "VectorIndex", "ElementIdentifiers",
                                                                  "DynamicTableRegion")],
    }


def render_report(data: DerivedFile) -> str:
    """The HTML page (a string) for a read derived file."""
    return render_context(build_context(data))


def render_context(context: dict) -> str:
    """The HTML page for a ``build_context`` result."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("neurrator.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    return env.get_template("report.html.j2").render(**context)


def write_report(derived_path: Path, out_html: Path | None = None) -> Path:
    """Write the self-contained HTML report of a derived file.

    Parameters
    ----------
    derived_path
        The derived NWB file (``*_desc-neurrator.nwb``).
    out_html
        Where to write; default: next to the file, same name with ``.html``.

    Returns
    -------
    Path
        The written page.

    Raises
    ------
    NeurratorError
        The input is named ``*.html``, or ``out_html`` is the input, ends in ``.nwb``, is an HDF5 file or a
        folder (checked before anything is read), or the file cannot be read or the page written.
    """
    derived_path = Path(derived_path)
    if derived_path.suffix.lower() in (".html", ".htm"):
        raise NeurratorError(derived_path, "is an HTML page, not a derived NWB file; give the .nwb file (the report "
                             "would be written over its input)")
    out = Path(out_html) if out_html is not None else derived_path.with_suffix(".html")
    check_output_file(out, inputs=[derived_path], what="HTML report")
    page = render_report(read_derived(derived_path, max_chars=MAX_SHOWN_CHARS))
    import os
    import tempfile


    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = temporary_name(out, ".html")  # a killed write's leftover is removed by later runs
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=prefix, suffix=suffix)
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o666 & ~_umask())
        tmp.replace(out)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise NeurratorError(out, f"cannot write the report ({err.strerror or err})") from None
        raise
    return out


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
