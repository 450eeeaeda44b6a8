"""A reader with pynwb alone (no ndx_neurrator, cached namespace) gets every type back with its data."""

from __future__ import annotations

import json
import subprocess
import sys

from ndx_neurrator.testing import MOCK_CONTAINERS

# Runs in the subprocess and, on the in-memory file, in this process: a JSON-able summary of every
# field of every container in processing/neurrator (tables column by column, links by name).
SUMMARIZE = r'''
import numpy as np
from hdmf.container import AbstractContainer, Data
from hdmf.common import DynamicTable
from hdmf.data_utils import DataIO


def to_py(value):
    while isinstance(value, (DataIO, Data)):
        value = value.data
    if isinstance(value, AbstractContainer):
        return {"ref": value.name, "type": value.neurodata_type}
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.asarray(value[()])
        if arr.dtype.kind in "SO":
            return [x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel().tolist()]
        values = ["nan" if v != v else v for v in arr.ravel().tolist()]  # NaN != NaN
        return {"dtype": str(arr.dtype), "shape": list(arr.shape), "values": values}
    if isinstance(value, dict):  # children of a multi-container type (NarrationsCollection)
        return {key: summarize(child) for key, child in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        items = [to_py(v) for v in value]
        if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return {"dtype": "list", "shape": [len(items)], "values": ["nan" if v != v else float(v) for v in items]}
        return items
    return value


def summarize(container):
    out = {"neurodata_type": container.neurodata_type}
    if isinstance(container, DynamicTable):
        out["id"] = to_py(container.id.data)
        for col in container.columns:
            entry = {"values": to_py(col.data)}
            if hasattr(col, "table"):
                entry["table"] = col.table.name
            out[col.name] = entry
        return out
    for key, value in container.fields.items():
        if key in ("weights",):
            out[key] = {"bytes": to_py(value.data), "sha256": value.sha256, "format": value.format}
        elif key in ("units", "unit_subset") and hasattr(value, "table"):
            out[key] = {"rows": to_py(value.data), "table": value.table.name}
        else:
            out[key] = to_py(value)
    return out
'''

READER = SUMMARIZE + r'''
import importlib.abc
import json
import sys


class Block(importlib.abc.MetaPathFinder):
    """Make sure nothing can import the extension package in this process."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ndx_neurrator":
            raise ImportError("ndx_neurrator is blocked in this reader")
        return None


sys.meta_path.insert(0, Block())
from pynwb import NWBHDF5IO

with NWBHDF5IO(sys.argv[1], "r") as io:  # load_namespaces=True is the default: uses the cached schema
    nwbfile = io.read()
    module = nwbfile.processing["neurrator"]
    result = {
        name: dict(summarize(obj), python_class=type(obj).__name__, python_module=type(obj).__module__)
        for name, obj in module.data_interfaces.items()
    }
assert "ndx_neurrator" not in sys.modules
print(json.dumps(result))
'''


def test_file_reads_with_pynwb_alone(all_types_file, tmp_path):
    path, written = all_types_file
    proc = subprocess.run(
        [sys.executable, "-c", READER, str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    read = json.loads(proc.stdout.strip().splitlines()[-1])

    namespace: dict = {}
    exec(SUMMARIZE, namespace)
    module = written.processing["neurrator"]
    assert set(read) == set(MOCK_CONTAINERS)
    for name, neurodata_type in MOCK_CONTAINERS.items():
        got = read[name]
        assert got.pop("python_class") == neurodata_type
        assert not got.pop("python_module").startswith("ndx_neurrator")
        expected = namespace["summarize"](module[name])
        assert got == expected, name
    # spot checks that the comparison is about real data
    assert read["predictions"]["data"]["dtype"] == "float32"
    assert read["predictions"]["data"]["shape"] == [5, 4, 8]
    assert read["predictions"]["encoder"] == {"ref": "encoder", "type": "EncoderCheckpoint"}
    assert len(read["encoder"]["weights"]["bytes"]["values"]) > 100
    assert read["narrations"]["text"]["values"][0] == "a mouse watches scene 0"
    tables = read["narrations_by_subset"]["narrations_tables"]
    assert sorted(tables) == ["narrations_all", "narrations_random_2_seed3", "narrations_unit_0"]
    assert tables["narrations_all"]["text"]["values"][0] == "all sees a tree in scene 0"
    assert read["predictions_compact"]["coefficients"]["shape"] == [5, 3]
    assert read["predictions_compact"]["basis"] == {"ref": "patch_basis", "type": "PatchBasis"}
    assert read["unit_neurration"]["visually_driven"]["values"]["values"][:3] == [True, True, False]
