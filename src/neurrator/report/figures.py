"""Publication-grade figures of a derived file's results (matplotlib, Agg; no torch).

Figure functions take plain tables (see ``neurrator.report.data``) and return a ``matplotlib`` Figure,
or ``None`` when the table they need is absent; ``plot_fidelity`` is ``neurrator show --plot``.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from neurrator.errors import MAX_SHOWN_CHARS, NeurratorError
from neurrator.io.folders import check_output_file
from neurrator.report.data import read_derived

__all__ = ["BASELINE_NAMES", "BASELINE_STYLE", "CHANCE_STYLE", "CI_NOTE", "EFFECT_NAMES", "KIND_COLOURS", "KIND_NAMES", "METRIC_NAMES", "NARRATION_CONTROLS", "REGION_COLOURS", "baselines", "chance", "data_uri", "fig_png", "group_comparison_figure", "group_separation_figure", "image_png", "metric_name", "plot_fidelity", "present_metrics", "reliability_figure", "scaling_figure", "subset_bars_figure"]

METRIC_NAMES = {
    "patch_cosine": "patch cosine similarity",
    "centred_patch_cosine": "centred patch cosine",
    "top1": "frame identification, top-1 accuracy",
    "top5": "frame identification, top-5 accuracy",
    "within_1s": "frame identified within 1 s (fraction)",
    "narration_similarity": "narration similarity to oracle (cosine)",
}
BASELINE_NAMES = {"ridge": "ridge regression", "knn": "kNN", "shuffled": "shuffled baseline",
                  "constant": "constant narration", "floor": "word-salad floor", "word_salad": "word-salad floor"}
BASELINE_STYLE = {"ridge": ("tab:purple", "-."), "knn": ("tab:brown", "-."), "shuffled": ("tab:red", "--"),
                  "constant": ("tab:olive", ":"), "floor": ("black", (0, (1, 3))),
                  "word_salad": ("black", (0, (1, 3)))}
KIND_COLOURS = {"all": "0.25", "region": "tab:blue", "cell_type": "tab:orange",
                "local_population": "tab:green", "random": "tab:gray", "single_unit": "tab:pink"}
KIND_NAMES = {"all": "all units", "region": "region", "cell_type": "cell type",
              "local_population": "local population", "random": "random draw", "single_unit": "single unit"}
REGION_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
CI_NOTE = "error bars: 95% scene-block bootstrap CI"
CHANCE_STYLE = dict(color="0.45", ls=":", lw=1.4)


def _plt():
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # headless by default; a notebook's own backend (ipykernel sets MPLBACKEND) is kept
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _new(fig, figsize: tuple[float, float]):
    """``fig`` itself (a Figure or SubFigure to draw into), or a new constrained-layout figure."""
    return fig if fig is not None else _plt().figure(figsize=figsize, layout="constrained")


def _legend_below(ax, *, points: float = 34, ncol: int = 2) -> None:
    """The axis' legend under its x-axis label (a fixed offset in points, whatever the axis height)."""
    from matplotlib.transforms import offset_copy

    anchor = offset_copy(ax.transAxes, fig=ax.figure, y=-points, units="points")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=anchor, ncol=ncol, frameon=False,
              fontsize=7)


def _log_units_axis(ax, sizes) -> None:
    """Log-scaled population-size axis labelled with plain unit counts."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    ticks = sorted({int(v) for v in sizes if v > 0})
    if len(ticks) > 8:  # keep about 8 labelled sizes, always the largest
        ticks = sorted(set(ticks[:: int(np.ceil(len(ticks) / 8))] + [ticks[-1]]))
    kept: list[int] = []
    for t in reversed(ticks):  # labels at least 0.2 decades apart (30 and 39 would overlap), the largest kept
        if not kept or np.log10(kept[-1] / t) >= 0.2:
            kept.append(t)
    ticks = kept[::-1]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def present_metrics(fidelity: pd.DataFrame | None, scaling: pd.DataFrame | None, metrics: tuple[str, ...]) -> tuple:
    """The ``metrics`` that either table holds, in order."""
    have = set()
    for df in (fidelity, scaling):
        if df is not None:
            have |= set(map(str, df["metric"]))
    return tuple(m for m in metrics if m in have)


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


#: The narration controls stored per subset as their own metric rows (`neurrator.nwb.results`).
NARRATION_CONTROLS = {"narration_shuffled": "shuffled", "narration_constant": "constant", "narration_floor": "floor"}


def baselines(fidelity: pd.DataFrame, metric: str) -> dict[str, float]:
    """Baseline levels of ``metric`` stored as ``<baseline>:<metric>`` rows (first such row each); for
    narration similarity also its controls (shuffled references, constant narration, word-salad floor),
    stored per subset as ``narration_<control>`` rows: the ``all`` subset's level, else the median."""
    out: dict[str, float] = {}
    for m, v in zip(fidelity["metric"], fidelity["value"]):
        base, _, name = str(m).partition(":")
        if name == metric and base not in out and np.isfinite(v):
            out[base] = float(v)
    if metric == "narration_similarity":
        for row_metric, base in NARRATION_CONTROLS.items():
            rows = fidelity[(fidelity["metric"] == row_metric) & np.isfinite(fidelity["value"].astype(float))]
            if base in out or not len(rows):
                continue
            everything = rows[rows["kind"] == "all"] if "kind" in rows else rows[:0]
            out[base] = float((everything if len(everything) else rows)["value"].astype(float).median())
    return out


def chance(fidelity: pd.DataFrame, metric: str) -> float:
    rows = fidelity.loc[fidelity["metric"] == metric, "chance_level"].astype(float).dropna()
    return float(rows.median()) if len(rows) else float("nan")


def _ci(values: pd.Series, lo: pd.Series, hi: pd.Series) -> np.ndarray | None:
    lo, hi, v = (np.asarray(x, dtype=float) for x in (lo, hi, values))
    if not np.isfinite(lo).any():
        return None
    return np.vstack([np.where(np.isfinite(lo), v - lo, 0), np.where(np.isfinite(hi), hi - v, 0)]).clip(0)


def _reference_lines(ax, fidelity: pd.DataFrame, metric: str, *, vertical: bool, scaling_baseline=None) -> None:
    line = ax.axvline if vertical else ax.axhline
    c = chance(fidelity, metric) if fidelity is not None else float("nan")
    if np.isfinite(c):
        line(c, label=f"chance ({c:.3g})", **CHANCE_STYLE)
    bases = baselines(fidelity, metric) if fidelity is not None else {}
    if scaling_baseline is not None and np.isfinite(scaling_baseline):
        bases.setdefault("shuffled", float(scaling_baseline))
    for base, value in bases.items():
        colour, ls = BASELINE_STYLE.get(base, ("tab:cyan", "-."))
        line(value, color=colour, ls=ls, lw=1.2, label=f"{BASELINE_NAMES.get(base, base)} ({value:.3g})")


def scaling_figure(fidelity: pd.DataFrame | None, scaling: pd.DataFrame | None, *,
                   metrics: tuple[str, ...] = ("centred_patch_cosine", "top1", "narration_similarity"), fig=None):
    """Fidelity versus population size, one panel per metric in the order given (the headline first): per
    region from the ``ScalingTable`` where it holds the metric, else over the random draws from all units of
    the ``DecodingFidelityTable``; chance, shuffled baseline and the crossing points drawn separately. The
    crossing of each region is stated in its legend entry (no text on the axes, so nothing overlaps)."""
    if fidelity is None and scaling is None:
        return None

    def held(df, m) -> bool:
        return df is not None and bool((df["metric"] == m).any())

    chosen = tuple(m for m in metrics if held(scaling, m) or held(fidelity, m))
    source = scaling if scaling is not None else fidelity
    metrics = chosen or tuple(m for m in dict.fromkeys(source["metric"]) if ":" not in str(m))[:3]
    if not metrics:
        return None
    _plt()
    fig = _new(fig, (4.4 * len(metrics), 4.3))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        base = None
        per_region = held(scaling, metric)
        src = scaling if per_region else fidelity
        sizes = src.loc[src["metric"] == metric, "n_units"]
        if per_region:
            base = _scaling_panel(ax, scaling[scaling["metric"] == metric])
        else:
            _draws_panel(ax, fidelity, metric)
        _reference_lines(ax, fidelity, metric, vertical=False, scaling_baseline=base)
        _log_units_axis(ax, sizes)
        ax.set_xlabel("population size (units, log scale)")
        ax.set_ylabel(metric_name(metric))
        ax.set_title(metric_name(metric).split(",")[0] + ("" if per_region else " (random draws, all units)"))
        _legend_below(ax, ncol=1)
    note = ("per region: mean over draws, shaded 95% bootstrap CI over draws, diamond: smallest population beating "
            "the shuffled baseline (bar: its 95% CI); random draws from all units: mean ± sd over draws")
    fig.suptitle("Decoding fidelity vs population size (held-out repeats)", fontsize=10)
    fig.supxlabel(note, fontsize=7, color="0.35")
    return fig


def _scaling_panel(ax, rows: pd.DataFrame) -> float | None:
    """One metric of the ScalingTable: a line and CI band per region, its crossing as a diamond; returns the
    shuffled baseline (median over regions)."""
    for i, (region, grp) in enumerate(rows.groupby("region", sort=True)):
        grp = grp.sort_values("n_units")
        colour = REGION_COLOURS[i % len(REGION_COLOURS)]
        note = str(grp["crossing_note"].iloc[0]) if "crossing_note" in grp else ""
        cross = grp["crossing_n"].astype(float).dropna()
        label = (f"{region}: crossing not estimable" if note.startswith("not estimable") else
                 f"{region}: beats shuffled from n = {float(cross.iloc[0]):.0f}" if len(cross) else
                 f"{region}: never beats shuffled")
        ax.plot(grp["n_units"], grp["value"], marker="o", ms=3.5, color=colour, label=label)
        if np.isfinite(grp["ci_lo"].astype(float)).any():
            ax.fill_between(grp["n_units"], grp["ci_lo"], grp["ci_hi"], color=colour, alpha=0.10, lw=0)
        if len(cross):
            x = float(cross.iloc[0])
            y = float(np.interp(x, grp["n_units"], grp["value"]))
            lo, hi = float(grp["crossing_lo"].iloc[0]), float(grp["crossing_hi"].iloc[0])
            xerr = [[x - lo], [hi - x]] if np.isfinite(lo) and np.isfinite(hi) else None
            ax.errorbar([x], [y], xerr=xerr, marker="D", ms=6, mfc="white", mec=colour, color=colour,
                        capsize=3, zorder=4, ls="none")
    b = rows["baseline"].astype(float).dropna()
    return float(b.median()) if len(b) else None


def _draws_panel(ax, fidelity: pd.DataFrame, metric: str) -> None:
    """One metric of the DecodingFidelityTable's random draws from all units (mean ± sd per size), the
    all-units subset and each region at its size (95% CI)."""
    rows = fidelity[(fidelity["metric"] == metric) & (fidelity["kind"] == "random")]
    grp = rows.groupby("n_units")["value"]
    mean, sd, n = grp.mean(), grp.std().fillna(0), grp.count()
    ax.errorbar(mean.index, mean.values, yerr=sd.values, marker="o", ms=3.5, capsize=2, color="0.25",
                label=f"random draws (mean ± sd, ≤{int(n.max()) if len(n) else 0} per size)")
    everything = fidelity[(fidelity["metric"] == metric) & (fidelity["kind"] == "all")]
    if len(everything):
        ax.errorbar(everything["n_units"], everything["value"],
                    yerr=_ci(everything["value"], everything["ci_lo"], everything["ci_hi"]), ls="none",
                    marker="*", ms=9, capsize=2, color="black", label="all units (95% CI)")
    regions = fidelity[(fidelity["metric"] == metric) & (fidelity["kind"] == "region")]
    for i, (_, r) in enumerate(regions.sort_values("label").iterrows()):  # legend, never overlapping labels
        err = _ci(pd.Series([r["value"]]), pd.Series([r["ci_lo"]]), pd.Series([r["ci_hi"]]))
        ax.errorbar([r["n_units"]], [r["value"]], yerr=err, ls="none", marker="s", ms=5, capsize=2,
                    color=REGION_COLOURS[i % len(REGION_COLOURS)],
                    label=f"{str(r['label']).split(':', 1)[-1]} (region, 95% CI)")


def _subset_rows(fidelity: pd.DataFrame, metric: str) -> pd.DataFrame:
    order = ["all", "region", "cell_type", "local_population"]
    rows = fidelity[(fidelity["metric"] == metric) & fidelity["kind"].isin(order)].copy()
    rows["_k"] = [order.index(k) for k in rows["kind"]]
    return rows.sort_values(["_k", "label"]).drop_duplicates("label")


def subset_bars_figure(fidelity: pd.DataFrame | None, *,
                       metrics: tuple[str, ...] = ("centred_patch_cosine", "top1", "narration_similarity"), fig=None):
    """Per-subset fidelity as horizontal bars grouped and coloured by subset kind, with 95% CIs, chance,
    and every stored baseline (ridge, kNN, shuffled, constant, word-salad floor) as its own line."""
    if fidelity is None:
        return None
    metrics = tuple(m for m in metrics if len(_subset_rows(fidelity, m)))
    if not metrics:
        return None
    _plt()
    n = max(len(_subset_rows(fidelity, m)) for m in metrics)
    fig = _new(fig, (4.6 * len(metrics), 1.8 + 0.24 * n))
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)
    for j, (ax, metric) in enumerate(zip(axes[0], metrics)):
        rows = _subset_rows(fidelity, metric)
        y = np.arange(len(rows))[::-1]
        colours = [KIND_COLOURS.get(k, "tab:gray") for k in rows["kind"]]
        err = _ci(rows["value"], rows["ci_lo"], rows["ci_hi"])
        ax.barh(y, rows["value"], color=colours, xerr=err, capsize=2, error_kw={"lw": 0.8}, height=0.7)
        if "beats_null" in rows:  # the star right of the CI's upper end, clear of the error bar
            for yy, v, hi, beat in zip(y, rows["value"], rows["ci_hi"].astype(float), rows["beats_null"]):
                if bool(beat) and beat is not None and not (isinstance(beat, float) and np.isnan(beat)):
                    ax.annotate("*", (max(v, hi) if np.isfinite(hi) else v, yy), xytext=(3, -3),
                                textcoords="offset points", fontsize=9)
        if j == 0:
            ax.set_yticks(y, [str(lab).split(":", 1)[-1] if k != "all" else "all units"
                              for lab, k in zip(rows["label"], rows["kind"])])
        _reference_lines(ax, fidelity, metric, vertical=True)
        ax.set_xlabel(metric_name(metric))
        ax.set_title(metric_name(metric).split(",")[0])
        _legend_below(ax)
    from matplotlib.patches import Patch

    kinds = [k for k in KIND_COLOURS if (fidelity["kind"] == k).any() and k not in ("random", "single_unit")]
    fig.legend(handles=[Patch(color=KIND_COLOURS[k], label=KIND_NAMES[k]) for k in kinds],
               loc="outside upper center", ncol=len(kinds), frameon=False, title="subset kind")
    fig.supxlabel(CI_NOTE + "; * beats the null (BH-FDR q < 0.05)", fontsize=7, color="0.35")
    return fig


def reliability_figure(unit_neurration: pd.DataFrame | None, *, fig=None):
    """Split-half reliability of the analysed units, visually driven ones (passing the gate) coloured."""
    if unit_neurration is None or "reliability" not in unit_neurration or not len(unit_neurration):
        return None
    _plt()
    fig = _new(fig, (5, 3.2))
    ax = fig.subplots()
    rel = unit_neurration["reliability"].astype(float)
    driven = unit_neurration.get("visually_driven", pd.Series(False, index=rel.index)).astype(bool)
    bins = np.linspace(min(-0.2, np.nanmin(rel)), max(1.0, np.nanmax(rel)), 25)
    ax.hist([rel[driven].dropna(), rel[~driven].dropna()], bins=bins, stacked=True,
            color=["tab:blue", "0.7"], label=[f"visually driven ({int(driven.sum())})",
                                             f"not driven ({int((~driven).sum())})"])
    ax.set_xlabel("split-half reliability (Spearman-Brown corrected r)")
    ax.set_ylabel("units (count)")
    ax.legend(frameon=False)
    ax.set_title("Unit reliability gate")
    return fig


#: What a group-comparison effect measures, per source (each source on its own axis: the scales differ).
EFFECT_NAMES = {"tuning": "units' mean tuning r, group minus size-matched pools",
                "decoded": "decoded-vs-true concept correlation, group minus fidelity-matched pools"}


def group_comparison_figure(comparison: pd.DataFrame | None, *, per_group: int = 4, fig=None):
    """Concept enrichment per group against size-matched random pools: effect with 95% CI, top concepts;
    one panel per source (``tuning``, ``decoded``), each with its own effect axis."""
    if comparison is None or not len(comparison):
        return None
    _plt()
    df = comparison.copy()
    df["_abs"] = df["effect"].astype(float).abs()
    top = df.sort_values("_abs", ascending=False).groupby(["group_kind", "group", "source"], sort=True).head(per_group)
    parts = [(src, part.sort_values(["group_kind", "group", "effect"])) for src, part in top.groupby("source", sort=True)]
    fig = _new(fig, (6.5, 1.0 + sum(0.8 + 0.22 * len(p) for _, p in parts)))
    axes = fig.subplots(len(parts), 1, squeeze=False, height_ratios=[0.8 + 0.22 * len(p) for _, p in parts])[:, 0]
    for ax, (src, part) in zip(axes, parts):
        y = np.arange(len(part))[::-1]
        sig = (part["q"].astype(float) < 0.05).to_numpy()
        err = _ci(part["effect"], part["ci_lo"], part["ci_hi"])
        ax.errorbar(part["effect"], y, xerr=err, ls="none", marker="o", ms=4, capsize=2, color="0.5")
        ax.scatter(part["effect"][sig], y[sig], color="tab:red", zorder=3, s=22, label="q < 0.05 (BH-FDR)")
        ax.axvline(0, **CHANCE_STYLE, label="random pools (null mean)")
        ax.set_yticks(y, [f"{g}: {c}" for g, c in zip(part["group"], part["concept"])], fontsize=7)
        ax.set_xlabel("effect, " + EFFECT_NAMES.get(str(src), f"{src}: group minus size-matched random pools"))
        ax.set_title(f"Concepts enriched per group ({src})")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=2, frameon=False, fontsize=7)
    fig.supxlabel("error bars: 95% bootstrap CI; each panel has its own effect scale", fontsize=7, color="0.35")
    return fig


def group_separation_figure(separation: pd.DataFrame | None, *, fig=None):
    """Within/between-group narration similarity and the text classifier, with 95% CIs and chance; one panel
    per statistic (a similarity difference and a classifier accuracy are not on one scale)."""
    if separation is None or not len(separation):
        return None
    _plt()
    df = separation.reset_index(drop=True)
    stat = df["analysis"].astype(str).str.split(":").str[0]
    parts = [(name, df[stat == name].reset_index(drop=True)) for name in dict.fromkeys(stat)]
    fig = _new(fig, (6.5, 1.0 + sum(0.9 + 0.25 * len(p) for _, p in parts)))
    axes = fig.subplots(len(parts), 1, squeeze=False, height_ratios=[0.9 + 0.25 * len(p) for _, p in parts])[:, 0]
    for ax, (name, part) in zip(axes, parts):
        y = np.arange(len(part))[::-1]
        ax.barh(y, part["value"], xerr=_ci(part["value"], part["ci_lo"], part["ci_hi"]), capsize=2,
                color=[KIND_COLOURS.get(k, "tab:gray") for k in part["group_kind"]], height=0.7)
        ch = part["chance_level"].astype(float)
        ax.scatter(ch[np.isfinite(ch)], y[np.isfinite(ch)], marker="|", s=120, color="black", zorder=3)
        ax.set_yticks(y, [_separation_label(a, k, g) for a, k, g in
                          zip(part["analysis"], part["group_kind"], part["group"])], fontsize=7)
        ax.set_xlabel(name.replace("_", " "))
    fig.suptitle("How well narrations separate groups", fontsize=10)
    fig.supxlabel("black ticks: chance (matched pools); error bars: 95% CI; each panel has its own scale", fontsize=7,
                  color="0.35")
    return fig


def _separation_label(analysis: str, kind: str, group: str) -> str:
    """``"region: VISp"``, ``"cell_type"``, ``"region (preferred stimulus)"`` for one separation row."""
    label = f"{kind}: {group}" if group else str(kind)
    _, _, variant = str(analysis).partition(":")
    return f"{label} ({variant.replace('_', ' ')})" if variant else label


def fig_png(fig, *, dpi: int = 130) -> bytes:
    """PNG bytes of a figure (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def image_png(image: np.ndarray) -> bytes:
    """PNG bytes of a (H, W) or (H, W, 3/4) image array (uint8 or float in [0, 1])."""
    from matplotlib.image import imsave

    buf = io.BytesIO()
    img = np.asarray(image)
    top = 255 if img.dtype == np.uint8 else 1.0  # absolute scale: a uniform frame keeps its brightness
    if img.ndim == 2:
        imsave(buf, img, format="png", cmap="gray", vmin=0, vmax=top)
    else:
        imsave(buf, img if img.dtype == np.uint8 else np.clip(img, 0, 1), format="png")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def plot_fidelity(path: Path, png: Path, *,
                  metrics: tuple[str, ...] = ("within_1s", "top1", "narration_similarity")) -> Path:
    """``neurrator show --plot``: fidelity vs population size (top) and per-subset fidelity with 95% CIs,
    chance and baselines (bottom), written to ``png``."""
    path, png = Path(path), Path(png)
    check_output_file(png, inputs=[path], what="plot")
    data = read_derived(path, max_chars=MAX_SHOWN_CHARS)
    if data.fidelity is None and data.scaling is None:
        raise NeurratorError(path, "has no neurrator decoding-fidelity results to plot")
    plt = _plt()
    metrics = present_metrics(data.fidelity, data.scaling, metrics)
    if not metrics:
        raise NeurratorError(path, "has none of the metrics within_1s, top1, narration_similarity to plot")
    n = max([len(_subset_rows(data.fidelity, m)) for m in metrics] if data.fidelity is not None else [0])
    fig = plt.figure(figsize=(4.6 * len(metrics), 3.9 + 1.8 + 0.24 * n), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.9, 1.8 + 0.24 * n])
    drawn = [scaling_figure(data.fidelity, data.scaling, metrics=metrics, fig=top),
             subset_bars_figure(data.fidelity, metrics=metrics, fig=bottom)]
    if all(d is None for d in drawn):
        plt.close(fig)
        raise NeurratorError(path, f"has none of the metrics {', '.join(metrics)} to plot")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=150)
    plt.close(fig)
    return png
