"""A file holding one of each type passes `nwbinspector --config dandi` and `dandi validate`, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from ndx_neurrator import create_narrations
from ndx_neurrator.testing import mock_neurrator_nwbfile


def _inspect(path: Path) -> list:
    from nwbinspector import inspect_nwbfile, load_config

    return list(inspect_nwbfile(nwbfile_path=str(path), config=load_config("dandi")))


def test_nwbinspector_dandi_config_finds_nothing_critical(all_types_file):
    pytest.importorskip("nwbinspector")
    path, _ = all_types_file
    messages = _inspect(path)
    serious = [m for m in messages if m.importance.name in ("CRITICAL", "PYNWB_VALIDATION", "ERROR")]
    assert serious == [], [f"{m.importance.name} {m.check_function_name}: {m.message}" for m in serious]


def test_nwbinspector_sees_inside_the_extension_types(tmp_path):
    """Control: a narration table with constant start times is reported CRITICAL, so the check above can fail."""
    pytest.importorskip("nwbinspector")
    nwbfile = mock_neurrator_nwbfile()
    module = nwbfile.processing["neurrator"]
    bad = create_narrations(
        start_time=[1.0, 1.0, 1.0], stop_time=[1.5, 1.5, 1.5], text=["a", "b", "c"], frame=[0, 1, 2],
        unit_subsets=module["unit_subsets"], unit_subset_rows=0, narrator_model="tiny", prompt="p",
        name="bad_narrations",
    )
    module.add(bad)
    path = tmp_path / "bad.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    critical = [m for m in _inspect(path) if m.importance.name == "CRITICAL"]
    assert [m.object_name for m in critical] == ["bad_narrations"], [m.message for m in critical]


def _dandi_executable() -> str:
    exe = Path(sys.executable).with_name("dandi")
    if exe.is_file():
        return str(exe)
    found = shutil.which("dandi")
    if found is None:
        pytest.skip("dandi CLI not installed (pip install dandi)")
    return found


@pytest.mark.slow
def test_dandi_validate_in_a_dandiset_layout(all_types_file, tmp_path):
    """`dandi validate` on a dandiset folder: our file has no errors; a control file lacking subject metadata does.

    dandi validate needs no network for NWB files; DANDI_NO_ET=1 skips its only network call (the
    version check), so the test runs offline.
    """
    dandi = _dandi_executable()
    path, _ = all_types_file
    root = tmp_path / "dandiset"
    good = root / "sub-mouse1" / "sub-mouse1_ses-session1_desc-neurrator.nwb"
    good.parent.mkdir(parents=True)
    shutil.copy(path, good)
    (root / "dandiset.yaml").write_text("identifier: DANDI:000000\nname: neurrator test\ndescription: test\n")
    control = root / "sub-mouse2" / "sub-mouse2_ses-session1_desc-neurrator.nwb"
    control.parent.mkdir()
    nwbfile = mock_neurrator_nwbfile(subject_id="mouse2", species=None)  # dandi requires species
    with NWBHDF5IO(control, "w") as io:
        io.write(nwbfile)
    env = dict(os.environ, DANDI_NO_ET="1", XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run(
        [dandi, "validate", "--format", "json", "--min-severity", "ERROR", str(root)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.stdout.strip(), proc.stderr
    results = json.loads(proc.stdout)
    by_path: dict[str, list[str]] = {}
    for result in results:
        by_path.setdefault(Path(result.get("path") or "").name, []).append(f"{result['id']}: {result['message']}")
    assert good.name not in by_path, by_path[good.name]
    assert control.name in by_path and any("species" in msg.lower() for msg in by_path[control.name]), by_path
    assert proc.returncode != 0  # because of the control file


def test_pynwb_validation_passes_and_enforces_the_schema(all_types_file, tmp_path):
    """pynwb's validator (against the cached namespace) accepts the file and refuses a tampered copy."""
    import h5py
    from pynwb import validate

    path, _ = all_types_file
    assert validate(path=str(path)) == []
    tampered = tmp_path / "tampered.nwb"
    tampered.write_bytes(path.read_bytes())
    with h5py.File(tampered, "r+") as f:
        del f["processing/neurrator/predictions/frame"]
        f["processing/neurrator/predictions/frame"] = np.arange(5) + 0.5
        del f["processing/neurrator/encoder/weights"].attrs["sha256"]
    errors = [str(e) for e in validate(path=str(tampered))]
    assert any("PatchPredictions/frame" in e and "int64" in e for e in errors), errors
    assert any("SafetensorsWeights/sha256" in e for e in errors), errors
