"""Derived file names: the DANDI layout, what `dandi organize` does to them, and the way that keeps them.

`dandi organize` names a file from its metadata (subject, session when several differ, modalities) and
uses ``_desc-`` only to break ties, so it cannot keep ``_desc-neurrator``. The tests record that, and test
the documented way instead: organise the raw files with ``--required-field session_id``, put the derived
files (already in the DANDI layout) beside them, run ``dandi validate``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neurrator.nwb.derived import _entity, derived_file_name

DANDI_ENV_KEYS = ("DANDI_NO_ET", "XDG_STATE_HOME", "XDG_CACHE_HOME")


def test_derived_file_name_by_hand():
    assert derived_file_name("408021", "758798717") == "sub-408021/sub-408021_ses-758798717_desc-neurrator.nwb"
    assert derived_file_name("sim0", "sim0", desc=None) == "sub-sim0/sub-sim0_ses-sim0.nwb"
    assert derived_file_name("mouse_1", "2024.01.02 am") == "sub-mouse-1/sub-mouse-1_ses-2024-01-02-am_desc-neurrator.nwb"
    assert derived_file_name("", "") == "sub-unknown/sub-unknown_ses-unknown_desc-neurrator.nwb"


@pytest.mark.parametrize("value", ["408021", "mouse_1", "a/b:c", "2024.01.02 am", "x*y?z", "Ab-9", "tab\there", "é1"])
def test_entities_are_sanitised_as_dandi_organize_does(value):
    from dandi.organize import _sanitize_value

    assert _entity(value) == _sanitize_value(value, "subject_id") == _sanitize_value(value, "session_id")


@pytest.mark.parametrize("subject, session", [("408021", "758798717"), ("mouse_1", "a.b c"), ("sim0", "sim0")])
def test_derived_names_pass_dandis_layout_check(subject, session, tmp_path):
    from dandi.organize import ORGANIZED_FILENAME_REGEX, validate_organized_path

    rel = derived_file_name(subject, session)
    assert re.fullmatch(ORGANIZED_FILENAME_REGEX, Path(rel).name)
    assert validate_organized_path(rel, tmp_path / rel, tmp_path) == []


def _derived_file(source: Path, folder: Path) -> Path:
    """A derived file as neurrator writes it (subject, session, Units with the source's resolution)."""
    from neurrator.nwb.derived import add_units_to_nwbfile, new_derived_nwbfile, stimulus_epochs, write_nwbfile_atomic
    from neurrator.data.outline import outline_nwbfile
    from neurrator.data.session import read_session
    from neurrator.io.sources import open_source

    with open_source(str(source)) as nwbfile:
        outline = outline_nwbfile(nwbfile, stimulus="natural_movie_one", label=source.name)
        session = read_session(nwbfile, source=str(source), fetch_movie=False, opto_tagging=False)
    nwbfile = new_derived_nwbfile(session, provenance="{}")
    add_units_to_nwbfile(nwbfile, session.units, epochs=stimulus_epochs(session.presentations),
                         resolution=outline.units_resolution)
    path = folder / derived_file_name(outline.subject_id, outline.session_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_nwbfile_atomic(nwbfile, path)


@pytest.fixture(scope="module")
def derived(small_sim, tmp_path_factory) -> Path:
    return _derived_file(small_sim, tmp_path_factory.mktemp("derived"))


def test_units_resolution_is_copied_from_the_source(derived):
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(derived), "r") as io:
        assert io.read().units.resolution == pytest.approx(1 / 30000)


def test_simulated_source_and_derived_file_share_subject_and_session(small_sim, derived):
    """The derived name comes from the file's own ids, the ones `dandi organize` names the source from."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(small_sim), "r") as io:
        nwb = io.read()
        source_name = derived_file_name(nwb.subject.subject_id, nwb.session_id, desc=None)
    assert source_name == "sub-sim0/sub-sim0_ses-sim0.nwb"
    assert derived.relative_to(derived.parents[1]).as_posix() == source_name.replace(".nwb", "_desc-neurrator.nwb")


def _dandi_paths(paths: list[Path], required: tuple[str, ...] = ()) -> list[str]:
    """The paths `dandi organize` would give these files (its own metadata reader and namer, in-process)."""
    from dandi.metadata.nwb import get_metadata
    from dandi.organize import create_unique_filenames_from_metadata

    metadata = [dict(get_metadata(str(p)), path=str(p)) for p in paths]
    return [r["dandi_path"] for r in create_unique_filenames_from_metadata(metadata, required_fields=list(required))]


def test_dandi_organize_drops_desc_neurrator(small_sim, derived):
    """Why the README says not to run `dandi organize` on derived files (fails if dandi starts keeping it)."""
    alone = _dandi_paths([derived])[0]
    assert alone == "sub-sim0/sub-sim0.nwb"  # no _ses-, no _desc-
    kept = _dandi_paths([derived], required=("session_id", "description"))[0]
    assert kept == "sub-sim0/sub-sim0_ses-sim0.nwb"  # session kept on request; desc has no metadata source
    raw, der = _dandi_paths([small_sim, derived], required=("session_id",))
    assert raw.startswith("sub-sim0/sub-sim0_ses-sim0_") and "desc-neurrator" not in der


@pytest.mark.slow
def test_documented_way_organize_raw_then_add_derived_then_validate(small_sim, derived, tmp_path):
    """README recipe: `dandi organize --required-field session_id` the raw file, copy the derived file in,
    `dandi validate` the dandiset: no errors, the derived name kept, next to its source."""
    dandi = str(Path(sys.executable).parent / "dandi")
    env = {**os.environ, "DANDI_NO_ET": "1", "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    ds = tmp_path / "000999"
    ds.mkdir()
    (ds / "dandiset.yaml").write_text("identifier: DANDI:000999\nname: neurrator test\ndescription: test\n")
    raw = tmp_path / "raw" / "recording.nwb"  # any raw name: dandi organize renames it
    raw.parent.mkdir()
    shutil.copy(small_sim, raw)
    proc = subprocess.run([dandi, "organize", "--files-mode", "copy", "--required-field", "session_id", "-d", str(ds),
                           str(raw)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rel = derived.relative_to(derived.parents[1])
    (ds / rel.parent).mkdir(exist_ok=True)
    shutil.copy(derived, ds / rel)
    names = sorted(p.relative_to(ds).as_posix() for p in ds.rglob("*.nwb"))
    assert len(names) == 2 and "sub-sim0/sub-sim0_ses-sim0_desc-neurrator.nwb" in names, names
    assert all(n.startswith("sub-sim0/sub-sim0_ses-sim0_") for n in names), names
    proc = subprocess.run([dandi, "validate", str(ds)], capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "No errors found" in out, out
    assert "check_units_resolution_is_set" not in out, out


def test_demo_source_is_named_from_its_own_ids(monkeypatch, tmp_path):
    """The demo's source file and its derived file carry the same sub-/ses- ids (issue 16)."""
    from neurrator import pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "write_simulated_session", lambda path, **kw: seen.setdefault("source", Path(path)))
    monkeypatch.setattr(pipeline, "narrate_session", lambda source, **kw: seen.setdefault("narrated", Path(source)))
    pipeline.run_demo(tmp_path / "demo", seed=3)
    assert seen["narrated"] == seen["source"]
    assert seen["source"].name == Path(derived_file_name("sim3", "sim3", desc=None)).name
