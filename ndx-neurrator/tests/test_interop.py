"""Issue 15: a derived file in the pipeline's layout reads in pynapple and round-trips through hdmf-zarr,
in processes where neither ``neurrator`` nor ``ndx_neurrator`` can be imported (cached namespace only).

The file is built with the mocks in the layout the pipeline writes (``mock_neurrator_nwbfile(legacy=False)``:
one NarrationsTable per unit subset in a NarrationsCollection, compact predictions, analysis tables).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pynwb import NWBHDF5IO

import ndx_neurrator as ndx
from ndx_neurrator.testing import MOCK_DERIVED_CONTAINERS, mock_neurrator_nwbfile

BLOCK = r'''
import importlib.abc, sys


class Block(importlib.abc.MetaPathFinder):
    """Nothing in this process can import neurrator or the extension package."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("neurrator", "ndx_neurrator"):
            raise ImportError(f"{name} is blocked in this reader")
        return None


sys.meta_path.insert(0, Block())
'''

PYNAPPLE = r'''
import json, warnings
import numpy as np
import pynapple as nap

with warnings.catch_warnings(record=True) as old_warnings:  # control: the old single-table layout
    warnings.simplefilter("always")
    old = nap.load_file(sys.argv[3])
    old_result = {"n_intervals": len(old["narrations"]),
                  "warned": any("merg" in str(w.message).lower() or "overlap" in str(w.message).lower()
                                or "precede" in str(w.message).lower() for w in old_warnings)}
with warnings.catch_warnings():
    warnings.simplefilter("error", UserWarning)  # pynapple warns (and merges) when intervals overlap
    data = nap.load_file(sys.argv[1])
    keys = sorted(data.keys())
    out = {"keys": keys, "types": {k: type(data[k]).__name__ for k in keys}}
    iv = data["narrations_all"]
    out["n_intervals"] = len(iv)
    out["starts"] = [float(x) for x in iv.start]
    out["metadata"] = sorted(iv.metadata_columns)
    out["text"] = [str(x) for x in iv["text"]]
    out["subset"] = sorted(set(str(x) for x in data["narrations_random_2_seed3"]["subset"]))
    out["similarity"] = [float(x) for x in iv["similarity"]]
    units = data["units"]
    out["units"] = {"n": len(units), "region": [str(x) for x in units["region"]],
                    "cell_type": [str(x) for x in units["cell_type"]]}
out["old"] = old_result
'''

ZARR = r'''
from pynwb import NWBHDF5IO
from hdmf_zarr.nwb import NWBZarrIO

src_path, zarr_path = sys.argv[1], sys.argv[2]
with NWBHDF5IO(src_path, "r") as src:
    with NWBZarrIO(zarr_path, mode="w") as zout:
        zout.export(src_io=src, write_args=dict(link_data=False))
with NWBHDF5IO(src_path, "r") as io_h5, NWBZarrIO(zarr_path, "r") as io_z:
    h5, z = io_h5.read().processing["neurrator"], io_z.read().processing["neurrator"]
    result = {"containers": {k: type(v).__name__ for k, v in z.data_interfaces.items()}}
    p, basis = z["predictions"], z["predictions"].basis
    coef, comps, mean = p.coefficients[:], basis.components[:], basis.mean[:]
    patches = (coef @ comps.reshape(len(comps), -1) + mean.reshape(-1)).reshape(len(coef), *mean.shape)
    p5 = h5["predictions"]
    ref = (p5.coefficients[:] @ p5.basis.components[:].reshape(len(comps), -1) + p5.basis.mean[:].reshape(-1))
    result["patches_equal"] = bool(np.array_equal(patches.reshape(len(coef), -1), ref))
    result["full_window_exact"] = bool(np.array_equal(p.full_data[0], p5.full_data[0]))
    result["lazy"] = type(p.coefficients).__module__.split(".")[0]
    tables = {}
    for name in ("unit_neurration", "concept_tuning", "group_comparison", "group_separation", "scaling",
                 "decoding_fidelity", "sae_validation"):
        a, b = h5[name].to_dataframe(index=True), z[name].to_dataframe(index=True)
        tables[name] = bool(a.astype(str).equals(b.astype(str)))
    result["tables_equal"] = tables
    narr_h5, narr_z = h5["narrations"].narrations_tables, z["narrations"].narrations_tables
    result["narrations_equal"] = sorted(narr_h5) == sorted(narr_z) and all(
        narr_h5[k].to_dataframe(index=True).astype(str).equals(narr_z[k].to_dataframe(index=True).astype(str))
        for k in narr_h5)
'''

# One process for both readers (imports dominate the run time on a shared machine).
READERS = BLOCK + PYNAPPLE + ZARR + r'''
assert not any(m.split(".")[0] in ("neurrator", "ndx_neurrator") for m in sys.modules)
print(json.dumps({"pynapple": out, "zarr": result}))
'''


@pytest.fixture(scope="module")
def derived_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("derived") / "sub-mouse1_ses-session1_desc-neurrator.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(mock_neurrator_nwbfile(legacy=False))
    return path


def _old_layout_file(path):
    """The old layout: all subsets' windows in one table, so intervals overlap (issue 15's report)."""
    from ndx_neurrator.testing import mock_NWBFile, mock_UnitSubsetsTable, mock_Units

    nwbfile = mock_NWBFile()
    mock_Units(nwbfile=nwbfile)
    subsets = mock_UnitSubsetsTable(nwbfile=nwbfile)
    start = [1.0, 1.5, 1.0, 1.5]  # two subsets, the same two windows
    ndx.get_neurrator_module(nwbfile).add(ndx.create_narrations(
        start_time=start, stop_time=[s + 0.25 for s in start], text=list("abcd"), frame=[0, 15, 0, 15],
        unit_subsets=subsets, unit_subset_rows=[0, 0, 1, 1], narrator_model="tiny", prompt="p",
    ))
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    return path


@pytest.fixture(scope="module")
def readers(derived_file, tmp_path_factory):
    """pynapple and hdmf-zarr results, from one subprocess that cannot import neurrator or ndx_neurrator."""
    pytest.importorskip("pynapple")
    pytest.importorskip("hdmf_zarr")
    tmp = tmp_path_factory.mktemp("readers")
    old = _old_layout_file(tmp / "old.nwb")
    proc = subprocess.run([sys.executable, "-c", READERS, str(derived_file), str(tmp / "derived.zarr"), str(old)],
                          capture_output=True, text=True, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pynapple_reads_narrations_per_subset_and_units(readers):
    got = readers["pynapple"]
    assert got["types"]["units"] == "TsGroup"
    narration_keys = [k for k in got["keys"] if k.startswith("narrations_")]
    assert narration_keys == ["narrations_all", "narrations_random_2_seed3", "narrations_unit_0"]
    assert all(got["types"][k] == "IntervalSet" for k in narration_keys)
    assert got["n_intervals"] == 4 and got["starts"] == [1.0, 1.5, 2.0, 2.5]  # nothing merged, no warning
    assert {"text", "frame", "subset", "similarity", "reference_text"} <= set(got["metadata"])
    assert got["text"] == [f"all sees a tree in scene {i}" for i in range(4)]
    assert got["subset"] == ["random:2:seed3"]  # the exact label, ':' included
    assert got["similarity"] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert got["units"] == {"n": 6, "region": ["VISp", "VISl", "CA1"] * 2, "cell_type": ["PV"] * 3 + ["SST"] * 3}


def test_pynapple_merges_the_old_single_table(readers):
    """Control: the old layout (4 rows over 2 distinct windows) is merged by pynapple, with a warning."""
    assert readers["pynapple"]["old"] == {"n_intervals": 2, "warned": True}


def test_hdmf_zarr_round_trip_without_neurrator(readers):
    got = readers["zarr"]
    assert got["containers"] == MOCK_DERIVED_CONTAINERS
    assert got["patches_equal"] and got["full_window_exact"]
    assert got["lazy"] == "zarr"  # coefficients stay on disk until sliced
    assert got["tables_equal"] == dict.fromkeys(got["tables_equal"], True) and len(got["tables_equal"]) == 7
    assert got["narrations_equal"] is True


def test_tidy_view_across_subsets(derived_file):
    with NWBHDF5IO(derived_file, "r") as io:
        df = ndx.narrations_dataframe(io.read())
    assert len(df) == 12  # 3 subsets x 4 windows
    assert sorted(set(df["subset"])) == ["all", "random:2:seed3", "unit:0"]
    assert list(df.columns[:4]) == ["table", "row", "subset", "subset_kind"]
    first = df[df["subset"] == "unit:0"].iloc[2]
    assert first["row"] == 2 and first["text"] == "unit:0 sees a tree in scene 2" and first["frame"] == 30
    assert first["similarity"] == pytest.approx(0.6 / 3)
