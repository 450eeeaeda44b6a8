"""A small derived file for the report tests: known subsets, scores, baselines, narrations and frames,
written with ndx_neurrator's own builders (no pipeline, no torch), in well under a second."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
from pynwb import NWBHDF5IO

REGIONS = ["VISp", "VISp", "VISp", "VISl", "VISl", "VISl"]
CELL_TYPES = ["SST", "PV", "unlabelled", "SST", "PV", "unlabelled"]
METRICS = ("top1", "within_1s", "narration_similarity")
SUBSETS = [  # label, kind, unit rows, seed
    ("all", "all", [0, 1, 2, 3, 4, 5], None),
    ("region:VISp", "region", [0, 1, 2], None),
    ("region:VISl", "region", [3, 4, 5], None),
    ("cell_type:SST", "cell_type", [0, 3], None),
    ("cell_type:PV", "cell_type", [1, 4], None),
    ("local_population:VISp:probeA:ch10-40", "local_population", [0, 1], None),
    ("local_population:VISl:probeB:ch5-35", "local_population", [3, 4], None),
    ("random:2:seed0", "random", [0, 4], 0),
    ("random:2:seed1", "random", [2, 5], 1),
    ("random:4:seed0", "random", [0, 1, 3, 5], 0),
    ("random:4:seed1", "random", [1, 2, 3, 4], 1),
    ("unit:0", "single_unit", [0], None),
]
CHANCE = {"top1": 1 / 900, "within_1s": 61 / 900, "narration_similarity": 0.21}
# value of subset i on metric m: 0.1 * (i + 1) scaled per metric, CI +/- 0.02
BASELINES = {"ridge:top1": 0.05, "knn:top1": 0.04, "shuffled:top1": 0.002, "shuffled:within_1s": 0.07,
             "shuffled:narration_similarity": 0.22, "constant:narration_similarity": 0.25,
             "floor:narration_similarity": 0.08}
N_FRAMES = 5


def value(i: int, metric: str) -> float:
    return round({"top1": 0.02, "within_1s": 0.05, "narration_similarity": 0.03}[metric] * (i + 1) + 0.1, 6)


def add_new_types(module, units=None) -> list[str]:
    """Add the analyses' all-VectorData tables of ``new_tables()`` as their ndx-neurrator types, for those
    types the installed extension defines, and (given the ``units`` table) the per-unit tables; returns the
    types added."""
    from hdmf.common import VectorData
    from pynwb import get_class

    added, tables = [], new_tables()
    if units is not None:
        from ndx_neurrator import analysis

        u = tables["unit_neurration"]
        module.add(analysis.create_unit_neurration(
            units_table=units, unit_rows=u["unit"].tolist(),
            **{c: (u[c].tolist() if u[c].dtype == object else u[c].to_numpy()) for c in u.columns if c != "unit"}))
        t = tables["concept_tuning"]
        module.add(analysis.create_concept_tuning(
            units_table=units, unit_rows=t["unit"].tolist(), concept=t["concept"].tolist(), r=t["r"].to_numpy(),
            p=t["p"].to_numpy(), q=t["q"].to_numpy(), significant=t["significant"].to_numpy()))
        added += ["UnitNeurrationTable", "ConceptTuningTable"]
    for type_name, key in (("ScalingTable", "scaling"), ("GroupComparisonTable", "group_comparison"),
                           ("GroupSeparationTable", "group_separation")):
        try:
            cls = get_class(type_name, "ndx-neurrator")
        except Exception:  # noqa: BLE001 - the installed extension predates the type
            continue
        df = tables[key]
        cols = [VectorData(name=c, description=c, data=df[c].tolist()) for c in df.columns]
        module.add(cls(name=key, description=f"fixture {key}", columns=cols))
        added.append(type_name)
    return added


def make_derived(path: Path, *, thumbnails: bool = True, new_types: bool = False) -> Path:
    """Write the fixture file to ``path`` and return it; ``new_types`` adds the analyses' tables whose
    types the installed extension has (see ``add_new_types``)."""
    from ndx_neurrator import build
    from ndx_neurrator.testing import mock_EncoderCheckpoint, mock_NWBFile, mock_SparseAutoencoder
    from pynwb.misc import Units
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage

    nwbfile = mock_NWBFile(subject_id="m7", session_id="s3")
    units = Units(name="units", description="fixture units", resolution=1 / 30000)
    units.add_column("region", "brain region of the unit")
    units.add_column("cell_type", "cell type of the unit")
    for i, (region, cell) in enumerate(zip(REGIONS, CELL_TYPES)):
        units.add_unit(id=100 + i, spike_times=np.sort(np.random.default_rng(i).uniform(0, 10, 20)),
                       region=region, cell_type=cell)
    nwbfile.units = units
    module = build.get_neurrator_module(nwbfile)
    subsets = build.create_unit_subsets(
        [{"label": lab, "kind": kind, "unit_idx": np.array(rows), "seed": seed} for lab, kind, rows, seed in SUBSETS],
        units_table=units)
    module.add(subsets)
    mock_EncoderCheckpoint(nwbfile=nwbfile, units_table=units)
    mock_SparseAutoencoder(nwbfile=nwbfile)

    rows, metric, val, chance = [], [], [], []
    for i, _ in enumerate(SUBSETS):
        for m in METRICS:
            rows.append(i), metric.append(m), val.append(value(i, m)), chance.append(CHANCE[m])
    for name, v in BASELINES.items():
        rows.append(0), metric.append(name), val.append(v), chance.append(CHANCE[name.split(":")[1]])
    val = np.asarray(val)
    ci = {"ci_lo": val - 0.02, "ci_hi": val + 0.02}
    kwargs = dict(unit_subsets=subsets, unit_subset_rows=rows, n_units=[len(SUBSETS[r][2]) for r in rows],
                  region="all", cell_type="all", seed=[-1 if SUBSETS[r][3] is None else SUBSETS[r][3] for r in rows],
                  split="test", metric=metric, value=val, chance_level=chance)
    if "ci_lo" in inspect.signature(build.create_decoding_fidelity).parameters:
        table = build.create_decoding_fidelity(**kwargs, **ci)
    else:  # the extension before CI columns: extra columns on the same type
        table = build.create_decoding_fidelity(**kwargs)
        for k, v in ci.items():
            table.add_column(name=k, description=k, data=list(v))
    module.add(table)

    narr_rows = [i for i, s in enumerate(SUBSETS) if s[1] != "random"]
    frames = np.repeat(np.arange(N_FRAMES), len(narr_rows))
    subset_rows = np.tile(narr_rows, N_FRAMES)
    start = frames / 30.0
    module.add(build.create_narrations(
        start_time=start, stop_time=start + 1 / 6, frame=frames, unit_subsets=subsets, unit_subset_rows=subset_rows,
        text=[f"{SUBSETS[r][0]} sees thing {f}" for f, r in zip(frames, subset_rows)],
        narrator_model="tiny-narrator", prompt="Describe the scene.",
        reference_text=[f"oracle thing {f}" for f in frames], similarity=np.full(len(frames), 0.5)))
    if thumbnails:
        imgs = [GrayscaleImage(name=f"frame_{f}", data=np.full((8, 12), 40 * f, dtype=np.uint8),
                               description=f"stimulus frame {f}") for f in range(N_FRAMES)]
        module.add(Images(name="frame_thumbnails", images=imgs, description="narrated stimulus frames"))
    if new_types:
        add_new_types(module, units)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return Path(path)


def new_tables() -> dict[str, pd.DataFrame]:
    """The analyses' tables (UnitNeurration, ConceptTuning, GroupComparison, GroupSeparation, Scaling) as
    the report reads them, with known values."""
    sizes = [2, 4, 8, 16]
    scaling = []
    for region, offset in (("VISp", 0.0), ("VISl", -0.05)):
        for m in ("top1", "narration_similarity"):
            for n in sizes:
                v = 0.05 * np.log2(n) + offset + (0.2 if m == "narration_similarity" else 0)
                cross = (4.0 if region == "VISp" else np.nan)
                scaling.append({"region": region, "metric": m, "n_units": n, "value": v, "ci_lo": v - 0.02,
                                "ci_hi": v + 0.02, "n_draws": 5, "baseline": BASELINES.get(f"shuffled:{m}"),
                                "crossing_n": cross, "crossing_lo": cross - 1, "crossing_hi": cross + 2})
    units = pd.DataFrame({
        "unit": [0, 1, 3], "reliability": [0.61, 0.05, 0.42], "reliability_p": [0.001, 0.6, 0.01],
        "visually_driven": [True, False, True], "preferred_text": ["a bright grating", "", "a dark corridor"],
        "top_frames": [[3, 1, 0], [], [4, 2]], "top_concept": ["stripes", "", "darkness"],
        "top_concept_r": [0.5, np.nan, -0.4], "top_concept_q": [0.01, np.nan, 0.03],
        "loo_delta": [0.012, 0.0, 0.004], "loo_ci_lo": [0.002, -0.01, -0.001], "loo_ci_hi": [0.02, 0.01, 0.009],
        "loo_p": [0.01, 0.9, 0.2], "drive_text": ["stripes everywhere", "", "a dark room"],
        "baseline_text": ["grey", "", "grey"], "drive_shift": [0.4, np.nan, 0.3], "drive_p": [0.02, np.nan, 0.04]})
    tuning = pd.DataFrame({"unit": [0, 0, 3], "concept": ["stripes", "sky", "darkness"], "r": [0.5, 0.1, -0.4],
                           "p": [0.001, 0.4, 0.002], "q": [0.01, 0.5, 0.03], "significant": [True, False, True]})
    comparison = pd.DataFrame({"group_kind": ["region", "region", "cell_type"], "group": ["VISp", "VISl", "SST"],
                               "source": ["tuning", "tuning", "decoded"], "concept": ["stripes", "sky", "darkness"],
                               "effect": [0.3, -0.1, 0.2], "ci_lo": [0.1, -0.3, 0.05], "ci_hi": [0.5, 0.1, 0.35],
                               "p": [0.002, 0.4, 0.01], "q": [0.01, 0.4, 0.03], "n_units": [3, 3, 2],
                               "n_null_draws": [200, 200, 200]})
    separation = pd.DataFrame({"analysis": ["text_classifier", "narration_similarity_within"],
                               "group_kind": ["region", "region"], "group": ["", "VISp"], "value": [0.7, 0.55],
                               "ci_lo": [0.6, 0.5], "ci_hi": [0.8, 0.6], "chance_level": [0.5, 0.45],
                               "p": [0.01, 0.02], "n": [40, 20]})
    return {"scaling": pd.DataFrame(scaling), "unit_neurration": units, "concept_tuning": tuning,
            "group_comparison": comparison, "group_separation": separation}
