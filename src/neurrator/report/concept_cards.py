"""A derived file's concept cards and skipped analyses -> what the report shows of them (plain dicts, no torch).

The cards (`neurrator.analysis.concept_cards`) are the SAE latents the run could not name: their top frames
as thumbnails and the units whose responses follow them, so that a person can name them. The skipped
analyses say which analyses a run did not do and why (e.g. concept tuning without concept names).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["concept_cards_context"]


def _items(value: Any) -> list:
    """A ragged cell as a list (NaN or None for a column the file lacks: [])."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    return []


def concept_cards_context(data, *, thumb: Callable[[int], str | None]) -> dict:
    """``{"cards": [...], "skipped": [(analysis, reason), ...]}`` of a `neurrator.report.data.DerivedFile`;
    ``thumb(frame)`` gives a frame's thumbnail data URI (or None)."""
    cards = []
    df = data.concept_cards
    units = data.units
    if df is not None:
        for _, row in df.iterrows():
            frames = [int(f) for f in _items(row.get("top_frames"))]
            tops = []
            for u, r in zip(_items(row.get("top_units")), _items(row.get("top_unit_r"))):
                u = int(u)
                inside = units is not None and 0 <= u < len(units)
                tops.append({"unit": int(units.index[u]) if inside else u,
                             "region": str(units["_region"].iloc[u]) if inside else "unknown",
                             "r": f"{float(r):.2f}"})
            cards.append({"latent": int(row["latent"]), "why": str(row.get("why_unnamed", "")),
                          "active": int(row.get("frames_active", 0)), "frames": [(f, thumb(f)) for f in frames],
                          "units": tops})
    return {"cards": cards, "skipped": sorted(data.skipped.items())}
