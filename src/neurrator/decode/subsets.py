"""Session units -> the unit subsets narrated and scored: all, regions, local populations, cell types,
random draws of n units (population-size curves), single units.

Every subset is a set of column indices into the binned counts (= rows of ``Session.units``); the
encoder decodes any of them without retraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurrator.component_config import SubsetPlan

__all__ = ["KINDS", "Skipped", "UnitSubset", "build_subsets", "pick_single_units"]

KINDS = ("all", "region", "local_population", "cell_type", "random", "single_unit")


@dataclass(frozen=True)
class UnitSubset:
    """One group of units that predictions and narrations come from.

    Attributes
    ----------
    label
        Human-readable, unique within a run: ``"all"``, ``"region:VISp"``, ``"cell_type:SST"``,
        ``"local:probeA:1200-1400um"``, ``"random:50:seed3"``, ``"unit:951"``.
    kind
        One of :data:`KINDS`.
    unit_idx
        ``(n,) int64`` column indices into ``Binned.counts`` (rows of ``Session.units``).
    seed
        The seed of a random draw, else ``None``.
    group
        The region, cell type or probe span a subset stands for ("" for all / random).
    decoded_units
        How many units the predictions were decoded from when ``unit_idx`` holds only some of them (a
        pseudo-mouse session's own units of a pooled subset, `neurrator.data.pseudomouse.member_view`); 0:
        all of ``unit_idx``.
    """

    label: str
    kind: str
    unit_idx: np.ndarray
    seed: int | None = None
    group: str = ""
    decoded_units: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown subset kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if len(self.unit_idx) == 0:
            raise ValueError(f"subset {self.label!r} has no units")

    @property
    def n_units(self) -> int:
        """Units the predictions were decoded from."""
        return int(self.decoded_units or len(self.unit_idx))


class Skipped(tuple):
    """(label, n_units, reason) of a group too small to narrate from."""

    __slots__ = ()

    def __new__(cls, label: str, n_units: int, reason: str) -> Skipped:
        return super().__new__(cls, (label, n_units, reason))


def _known(values: np.ndarray) -> list[str]:
    return sorted({str(v) for v in values if str(v) not in ("", "unknown", "nan", "None")})


def build_subsets(
    region: np.ndarray,
    cell_type: np.ndarray,
    probe: np.ndarray,
    depth: np.ndarray,
    spike_counts: np.ndarray,
    *,
    unit_ids: np.ndarray | None = None,
    plan: SubsetPlan = SubsetPlan(),
    reliability: np.ndarray | None = None,
) -> tuple[list[UnitSubset], list[Skipped]]:
    """All subsets of a session's units, plus the groups skipped as too small.

    Parameters
    ----------
    region, cell_type, probe
        ``(N,) str`` per unit ("unknown" / "" where absent).
    depth
        ``(N,) float`` position along the probe in um (NaN where absent: no local populations).
    spike_counts
        ``(N,) int`` total spikes per unit; only used to rank single units when ``reliability`` is None
        (units without spikes are never picked).
    unit_ids
        ``(N,)`` unit ids as in the file, used in single-unit labels (default: the row index).
    reliability
        ``(N,) float`` split-half reliability per unit (`neurrator.data.responses.unit_reliability`; NaN for
        units that cannot be assessed): single units are the most reliable ones, spread over regions
        and cell types. Pass it: spike count favours fast-spiking PV cells and says nothing about
        whether a unit follows the movie.

    Examples
    --------
    >>> import numpy as np
    >>> subs, skipped = build_subsets(np.array(["VISp"] * 12 + ["CA1"] * 2), np.array(["unknown"] * 14),
    ...     np.array([""] * 14), np.full(14, np.nan), np.arange(14), plan=SubsetPlan(
    ...     population_sizes=(5,), draws_per_size=1, single_units=1))
    >>> [s.label for s in subs]
    ['all', 'region:VISp', 'random:5:seed0', 'unit:13']
    >>> skipped[0][0]
    'region:CA1'
    """
    n = len(region)
    subsets = [UnitSubset("all", "all", np.arange(n, dtype=np.int64))]
    skipped: list[Skipped] = []

    def add_group(label: str, kind: str, idx: np.ndarray, group: str) -> None:
        if len(idx) < plan.min_units:
            skipped.append(Skipped(label, len(idx), f"fewer than {plan.min_units} units"))
        else:
            subsets.append(UnitSubset(label, kind, idx.astype(np.int64), group=group))

    for name in _known(region):
        add_group(f"region:{name}", "region", np.flatnonzero(region.astype(str) == name), name)
    for name in _known(cell_type):
        add_group(f"cell_type:{name}", "cell_type", np.flatnonzero(cell_type.astype(str) == name), name)

    depth = np.asarray(depth, dtype=np.float64)
    probe = probe.astype(str)
    for p in sorted(set(probe[np.isfinite(depth)])):
        on_probe = np.flatnonzero((probe == p) & np.isfinite(depth))
        lo = np.floor(depth[on_probe].min() / plan.local_span_um) * plan.local_span_um
        bins = np.floor((depth[on_probe] - lo) / plan.local_span_um).astype(np.int64)
        for b in np.unique(bins):
            a, z = lo + b * plan.local_span_um, lo + (b + 1) * plan.local_span_um
            name = f"{p or 'probe'}:{a:.0f}-{z:.0f}um"
            add_group(f"local:{name}", "local_population", on_probe[bins == b], name)

    for size in plan.population_sizes:
        if size > n:
            continue
        for seed in range(plan.draws_per_size):
            rng = np.random.default_rng([size, seed])
            idx = np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
            subsets.append(UnitSubset(f"random:{size}:seed{seed}", "random", idx, seed=seed))

    order = pick_single_units(region, cell_type, spike_counts if reliability is None else reliability,
                              n=plan.single_units)
    ids = np.arange(n) if unit_ids is None else np.asarray(unit_ids)
    for i in order:
        subsets.append(UnitSubset(f"unit:{ids[i]}", "single_unit", np.array([i], dtype=np.int64)))
    return subsets, skipped


def pick_single_units(region: np.ndarray, cell_type: np.ndarray, score: np.ndarray, *, n: int) -> np.ndarray:
    """Up to ``n`` unit indices, spread over (region, cell type) groups, the best ``score`` first in each.

    Groups are visited round-robin, ordered by their best unit's score; each visit takes the group's
    best unit not taken yet. Units with a non-finite or non-positive score are never picked (an
    unreliable unit has nothing to narrate; a unit without spikes neither).

    Examples
    --------
    >>> import numpy as np
    >>> pick_single_units(np.array(["V1", "V1", "V1", "LGd"]), np.array(["PV", "PV", "SST", "PV"]),
    ...                   np.array([0.9, 0.8, 0.3, 0.5]), n=3).tolist()
    [0, 3, 2]
    """
    score = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(score) & (score > 0)
    key = np.char.add(np.char.add(np.asarray(region).astype(str), "|"), np.asarray(cell_type).astype(str))
    queues = []
    for k in np.unique(key[ok]):
        members = np.flatnonzero(ok & (key == k))
        queues.append(list(members[np.argsort(-score[members], kind="stable")]))
    queues.sort(key=lambda qu: (-score[qu[0]], qu[0]))
    out: list[int] = []
    while len(out) < n and any(queues):
        for qu in queues:
            if qu and len(out) < n:
                out.append(int(qu.pop(0)))
    return np.asarray(out, dtype=np.int64)
