"""Builders of the neurration analysis tables (per unit, per unit x concept, per group, separation, scaling).

Each ``create_<table>`` takes one value per row for every column (scalars broadcast to all rows) and
raises ``ValueError`` naming the table and the problem. Nothing here opens a file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hdmf.common import DynamicTable, DynamicTableRegion, VectorData, VectorIndex

import ndx_neurrator as _ndx
from ndx_neurrator.build import _column, _descriptions, _ids, _rows

Floats = float | np.ndarray | Sequence[float]
Ints = int | np.ndarray | Sequence[int]
Texts = str | Sequence[str]
Bools = bool | np.ndarray | Sequence[bool]

GROUP_KINDS = ("region", "cell_type", "local_population")
COMPARISON_SOURCES = ("tuning", "decoded")
SEPARATION_STATUSES = ("distinctive", "not distinctive", "not interpretable", "")


def _n_rows(what: str, first: str, values) -> int:
    if isinstance(values, str) or np.ndim(values) == 0:
        raise ValueError(f"{what}: {first} must hold one value per row, not a scalar")
    return len(values)


def _build(cls, *, what: str, name: str, description: str, n: int, given: dict, kinds: dict, lead=()):
    desc = _descriptions(cls)
    columns = list(lead)
    for col, kind in kinds.items():
        columns.append(VectorData(name=col, description=desc[col], data=_column(what, col, given[col], n, kind)))
    return cls(name=name, description=description, id=_ids(n), columns=columns)


def _choices(what: str, field: str, values: list[str], allowed: tuple[str, ...]) -> None:
    bad = sorted(set(values) - set(allowed))
    if bad:
        raise ValueError(f"{what}: {field} holds {bad}; allowed: {', '.join(allowed)}")


def create_unit_neurration(
    *,
    units_table: DynamicTable,
    unit_rows: np.ndarray | Sequence[int],
    reliability: Floats,
    reliability_p: Floats,
    visually_driven: Bools,
    preferred_text: Texts,
    top_frames: Sequence[Sequence[int]],
    top_concept: Texts,
    top_concept_r: Floats,
    top_concept_q: Floats,
    loo_delta: Floats,
    loo_ci_lo: Floats,
    loo_ci_hi: Floats,
    loo_p: Floats,
    drive_text: Texts,
    baseline_text: Texts,
    drive_shift: Floats,
    drive_p: Floats,
    drive_q: Floats | None = None,
    name: str = "unit_neurration",
    description: str = "single-neuron neurration: reliability, preferred stimulus, tuning and contribution",
):
    """A ``UnitNeurrationTable``, one row per unit (``unit_rows`` are rows of ``units_table``).

    ``preferred_text`` must be '' for units that are not ``visually_driven``; ``top_frames`` is one list
    of frame indices per unit (strongest first, may be empty). ``drive_q`` (optional: files written before
    it have no such column) is the FDR q of ``drive_p``.
    """
    what = f"UnitNeurrationTable '{name}'"
    rows = _rows(what, "unit_rows", units_table, unit_rows)
    n = len(rows)
    if isinstance(top_frames, str) or len(top_frames) != n:
        raise ValueError(f"{what}: top_frames must be one list of frames per unit ({n} units)")
    frames = [np.asarray(f) for f in top_frames]
    if any(f.ndim != 1 or (f.size and f.dtype.kind not in "iu") for f in frames):
        raise ValueError(f"{what}: each top_frames entry must be a 1-D list of integer frame indices")
    driven = _column(what, "visually_driven", visually_driven, n, "bool")
    texts = _column(what, "preferred_text", preferred_text, n, "text")
    wrong = [i for i in range(n) if not driven[i] and texts[i] != ""]
    if wrong:
        raise ValueError(f"{what}: preferred_text must be '' for units not visually driven (rows {wrong[:5]})")
    desc = _descriptions(_ndx.UnitNeurrationTable)
    flat = VectorData(name="top_frames", description=desc["top_frames"],
                      data=np.concatenate([f.astype(np.int64) for f in frames] or [np.zeros(0, np.int64)]))
    ends = np.cumsum([len(f) for f in frames]).astype(np.int64) if n else np.zeros(0, np.int64)
    lead = [
        DynamicTableRegion(name="unit", description=desc["unit"], data=rows, table=units_table),
        VectorIndex(name="top_frames_index", data=ends, target=flat),
        flat,
    ]
    given = dict(
        reliability=reliability, reliability_p=reliability_p, visually_driven=driven, preferred_text=texts,
        top_concept=top_concept, top_concept_r=top_concept_r, top_concept_q=top_concept_q, loo_delta=loo_delta,
        loo_ci_lo=loo_ci_lo, loo_ci_hi=loo_ci_hi, loo_p=loo_p, drive_text=drive_text, baseline_text=baseline_text,
        drive_shift=drive_shift, drive_p=drive_p,
    )
    kinds = dict(
        reliability="float", reliability_p="float", visually_driven="bool", preferred_text="text",
        top_concept="text", top_concept_r="float", top_concept_q="float", loo_delta="float", loo_ci_lo="float",
        loo_ci_hi="float", loo_p="float", drive_text="text", baseline_text="text", drive_shift="float",
        drive_p="float",
    )
    if drive_q is not None:
        given["drive_q"], kinds["drive_q"] = drive_q, "float"
    return _build(_ndx.UnitNeurrationTable, what=what, name=name, description=description, n=n, given=given,
                  kinds=kinds, lead=lead)


def create_concept_tuning(
    *,
    units_table: DynamicTable,
    unit_rows: np.ndarray | Sequence[int],
    concept: Texts,
    r: Floats,
    p: Floats,
    q: Floats,
    significant: Bools,
    name: str = "concept_tuning",
    description: str = "concept tuning of each unit (long format), circular-shift permutation tests and FDR",
):
    """A ``ConceptTuningTable`` in long format: one row per (unit, concept)."""
    what = f"ConceptTuningTable '{name}'"
    rows = _rows(what, "unit_rows", units_table, unit_rows)
    desc = _descriptions(_ndx.ConceptTuningTable)
    lead = [DynamicTableRegion(name="unit", description=desc["unit"], data=rows, table=units_table)]
    return _build(_ndx.ConceptTuningTable, what=what, name=name, description=description, n=len(rows),
                  given=dict(concept=concept, r=r, p=p, q=q, significant=significant),
                  kinds=dict(concept="text", r="float", p="float", q="float", significant="bool"), lead=lead)


def create_group_comparison(
    *,
    group_kind: Texts,
    group: Sequence[str],
    source: Texts,
    concept: Texts,
    effect: Floats,
    ci_lo: Floats,
    ci_hi: Floats,
    p: Floats,
    q: Floats,
    n_units: Ints,
    n_null_draws: Ints,
    name: str = "group_comparison",
    description: str = "concepts enriched in groups of units against size-matched random pools",
):
    """A ``GroupComparisonTable``: one row per (group, source, concept); ``group`` sets the row count."""
    what = f"GroupComparisonTable '{name}'"
    n = _n_rows(what, "group", group)
    given = dict(group_kind=group_kind, group=group, source=source, concept=concept, effect=effect, ci_lo=ci_lo,
                 ci_hi=ci_hi, p=p, q=q, n_units=n_units, n_null_draws=n_null_draws)
    _choices(what, "group_kind", _column(what, "group_kind", group_kind, n, "text"), GROUP_KINDS)
    _choices(what, "source", _column(what, "source", source, n, "text"), COMPARISON_SOURCES)
    kinds = dict(group_kind="text", group="text", source="text", concept="text", effect="float", ci_lo="float",
                 ci_hi="float", p="float", q="float", n_units="int", n_null_draws="int")
    return _build(_ndx.GroupComparisonTable, what=what, name=name, description=description, n=n, given=given,
                  kinds=kinds)


def create_group_separation(
    *,
    analysis: Sequence[str],
    group_kind: Texts,
    group: Texts,
    value: Floats,
    ci_lo: Floats,
    ci_hi: Floats,
    chance_level: Floats,
    p: Floats,
    n: Ints,
    fidelity: Floats | None = None,
    fidelity_q: Floats | None = None,
    status: Texts | None = None,
    null_kind: Texts | None = None,
    name: str = "group_separation",
    description: str = "narration similarity within/between groups and text classification of the source group",
):
    """A ``GroupSeparationTable``: one row per (analysis, group); ``analysis`` sets the row count.

    Optional (files written before them have no such columns): ``fidelity`` and ``fidelity_q`` (the group's
    decoding fidelity and its FDR q), ``status`` (one of `SEPARATION_STATUSES`) and ``null_kind``.
    """
    what = f"GroupSeparationTable '{name}'"
    rows = _n_rows(what, "analysis", analysis)
    _choices(what, "group_kind", _column(what, "group_kind", group_kind, rows, "text"), GROUP_KINDS)
    given = dict(analysis=analysis, group_kind=group_kind, group=group, value=value, ci_lo=ci_lo, ci_hi=ci_hi,
                 chance_level=chance_level, p=p, n=n)
    kinds = dict(analysis="text", group_kind="text", group="text", value="float", ci_lo="float", ci_hi="float",
                 chance_level="float", p="float", n="int")
    for col, values, kind in (("fidelity", fidelity, "float"), ("fidelity_q", fidelity_q, "float"),
                              ("status", status, "text"), ("null_kind", null_kind, "text")):
        if values is not None:
            given[col], kinds[col] = values, kind
    if status is not None:
        _choices(what, "status", _column(what, "status", status, rows, "text"), SEPARATION_STATUSES)
    return _build(_ndx.GroupSeparationTable, what=what, name=name, description=description, n=rows, given=given,
                  kinds=kinds)


def create_scaling(
    *,
    region: Texts,
    n_units: Ints,
    metric: Texts,
    value: Floats,
    ci_lo: Floats,
    ci_hi: Floats,
    n_draws: Ints,
    baseline: Floats,
    crossing_n: Floats,
    crossing_lo: Floats,
    crossing_hi: Floats,
    crossing_note: Texts | None = None,
    name: str = "scaling",
    description: str = "fidelity versus population size per region, with the shuffled-baseline crossing",
):
    """A ``ScalingTable``: one row per (region, metric, population size); ``n_units`` sets the row count.

    ``crossing_n``/``crossing_lo``/``crossing_hi`` are NaN where the region never exceeds ``baseline`` (and
    where the crossing is not estimable), and must be the same on every row of one (region, metric).
    ``crossing_note`` (optional) says which: 'estimated', 'never' or 'not estimable: <why>'.
    """
    what = f"ScalingTable '{name}'"
    rows = _n_rows(what, "n_units", n_units)
    reg = _column(what, "region", region, rows, "text")
    met = _column(what, "metric", metric, rows, "text")
    for col, values in (("crossing_n", crossing_n), ("crossing_lo", crossing_lo), ("crossing_hi", crossing_hi)):
        arr = _column(what, col, values, rows, "float")
        for key in set(zip(reg, met)):
            sel = arr[[i for i in range(rows) if (reg[i], met[i]) == key]]
            if not (np.all(np.isnan(sel)) or (np.all(sel == sel[0]))):
                raise ValueError(f"{what}: {col} differs between rows of region {key[0]!r}, metric {key[1]!r}")
    given = dict(region=reg, n_units=n_units, metric=met, value=value, ci_lo=ci_lo, ci_hi=ci_hi, n_draws=n_draws,
                 baseline=baseline, crossing_n=crossing_n, crossing_lo=crossing_lo, crossing_hi=crossing_hi)
    kinds = dict(region="text", n_units="int", metric="text", value="float", ci_lo="float", ci_hi="float",
                 n_draws="int", baseline="float", crossing_n="float", crossing_lo="float", crossing_hi="float")
    if crossing_note is not None:
        given["crossing_note"], kinds["crossing_note"] = crossing_note, "text"
    return _build(_ndx.ScalingTable, what=what, name=name, description=description, n=rows, given=given, kinds=kinds)


__all__ = [
    "GROUP_KINDS",
    "COMPARISON_SOURCES",
    "SEPARATION_STATUSES",
    "create_unit_neurration",
    "create_concept_tuning",
    "create_group_comparison",
    "create_group_separation",
    "create_scaling",
]
