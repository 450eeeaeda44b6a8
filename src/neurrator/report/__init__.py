"""A derived file -> tables, figures, the HTML report and the text summary (torch-free).

The face of `neurrator.report`: every public name of its modules, imported on first use
(`from neurrator.report import ...`), so that files can move without breaking a notebook.
"""

from neurrator._lazy import lazy_face

_WHERE = {
    "data": (
        "CELL_TYPE_COLUMNS", "DerivedFile", "READ_TYPES", "REGION_COLUMNS", "TABLES", "by_type",
        "check_derived_tables", "open_nwb", "read_derived",
    ),
    "figures": (
        "BASELINE_NAMES", "BASELINE_STYLE", "CHANCE_STYLE", "CI_NOTE", "EFFECT_NAMES", "KIND_COLOURS", "KIND_NAMES",
        "METRIC_NAMES", "NARRATION_CONTROLS", "REGION_COLOURS", "baselines", "chance", "data_uri", "fig_png",
        "group_comparison_figure", "group_separation_figure", "image_png", "metric_name", "plot_fidelity",
        "present_metrics", "reliability_figure", "scaling_figure", "subset_bars_figure",
    ),
    "html": (
        "EXAMPLE_KINDS", "FIG_METRICS", "build_context", "fmt", "fmt_ci", "render_context", "render_report",
        "write_report",
    ),
    "summary": (
        "format_summary", "narration_counts",
    ),
    "tables": (
        "NARRATION_COLUMNS", "to_pynapple", "unit_id_tables",
    ),
    "text": (
        "format_file",
    ),
}

__getattr__, __dir__, __all__ = lazy_face(__name__, _WHERE)
