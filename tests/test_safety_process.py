"""Paths built from untrusted metadata stay inside the output folder: `process` asset paths (a stand-in DANDI API on
127.0.0.1, never the network) and derived file names from a session's ids (DANDI's characters only, length checked
before any work). An asset whose output would escape fails alone, with the reason; the others still run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from standin import DandiStandin

from neurrator.errors import NeurratorError
from neurrator.io.folders import path_inside
from neurrator.nwb.derived import derived_file_name
from neurrator.process import derived_path

#: asset path -> words of the refusal
ESCAPES = {
    "../../escape/sub-e_ses-1.nwb": "a '..' component",
    "sub-x/../../../escape/sub-x_ses-1.nwb": "a '..' component",
    "/abs/sub-a_ses-1.nwb": "an absolute path",
    "sub-c/sub-c\x1b[2J_ses-1.nwb": "control characters",
    "sub-b\\..\\..\\x/sub-b_ses-1.nwb": "backslash",
    "sub-l/" + "l" * 300 + ".nwb": "more than the 255",
}


@pytest.mark.parametrize("asset", list(ESCAPES))
def test_asset_paths_that_leave_the_output_folder_are_refused(asset, tmp_path):
    with pytest.raises(NeurratorError) as err:
        derived_path(asset, tmp_path / "out")
    assert ESCAPES[asset] in str(err.value), str(err.value)
    assert str(err.value).isprintable()


def test_asset_paths_are_normalised(tmp_path):
    out = tmp_path / "out"
    assert derived_path("sub-1//./sub-1_ses-2.nwb", out) == out / "sub-1" / "sub-1_ses-2_desc-neurrator.nwb"


def test_a_symbolic_link_leading_out_is_refused_and_one_inside_is_not(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / "sub-in").mkdir(parents=True)
    outside.mkdir()
    (out / "sub-link").symlink_to(outside)
    (out / "sub-alias").symlink_to(out / "sub-in")
    with pytest.raises(NeurratorError, match="symbolic link on the way"):
        derived_path("sub-link/sub-link_ses-1.nwb", out)
    assert derived_path("sub-alias/sub-alias_ses-1.nwb", out).parent == out / "sub-alias"
    (out / "sub-in" / "sub-in_ses-1_desc-neurrator.nwb").symlink_to(outside / "x.nwb")
    with pytest.raises(NeurratorError, match="is a symbolic link"):
        derived_path("sub-in/sub-in_ses-1.nwb", out)


def test_derived_file_names_keep_dandis_characters_only():
    from dandi.organize import ORGANIZED_FILENAME_REGEX, ORGANIZED_FOLDER_REGEX

    name = derived_file_name("m\x1b]0;x\x07\u202e/../..", "s\u2066 1.a_b\x00")
    folder, file = name.split("/")
    assert re.fullmatch(ORGANIZED_FOLDER_REGEX, folder) and re.fullmatch(ORGANIZED_FILENAME_REGEX, file), name
    assert name.isprintable() and ".." not in name
    assert path_inside("out", name, label="x") == Path("out") / name


def test_an_overlong_identifier_is_refused_with_the_source_named():
    with pytest.raises(NeurratorError, match=r"^ses\.nwb: the name sub-1_ses-iiii.*is 3\d\d bytes"):
        derived_file_name("1", "i" * 300, label="ses.nwb")


def test_an_overlong_session_id_fails_before_any_work(small_sim, tmp_path, monkeypatch):
    """Today's failure came after the whole pipeline; now it comes before the models are loaded or data read."""
    import h5py

    from neurrator import pipeline
    from neurrator.config import NarrateConfig

    source = tmp_path / "long.nwb"
    shutil.copy(small_sim, source)
    with h5py.File(source, "a") as f:
        del f["general/session_id"]
        f["general/session_id"] = "s" * 300

    def no_work(*a, **k):
        raise AssertionError("work started before the output name was checked")

    monkeypatch.setattr(pipeline, "load_models", no_work)
    monkeypatch.setattr(pipeline, "read_session", no_work)
    out = tmp_path / "out"
    with pytest.raises(NeurratorError, match=r"long\.nwb: the name .* is 3\d\d bytes, more than the 255"):
        pipeline.narrate_session(source, out=out, config=NarrateConfig(device="cpu", progress=False))
    assert not out.exists()


@pytest.mark.slow
def test_process_fails_escaping_assets_alone_and_writes_nothing_outside(tmp_path):
    """A dandiset whose listing holds escaping asset paths: each fails with its reason, the plain asset runs."""
    broken = tmp_path / "broken.nwb"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n but cut short")
    plain = "sub-ok/sub-ok_ses-1.nwb"
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "sub-link").symlink_to(outside)
    hostile = ["../../escape/sub-e_ses-1.nwb", "/abs/sub-a_ses-1.nwb", "sub-link/sub-link_ses-1.nwb"]
    with DandiStandin(files={plain: broken}, dandiset_id="000997") as server:
        for asset in hostile:
            server.assets[asset] = broken  # as a hostile server lists them (the constructor strips a leading /)
        env = {**os.environ, "NEURRATOR_DANDI_API_URL": server.api_url, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "neurrator", "process", "000997", "--out", str(out), "--workers", "1", "--quiet",
             "--epochs", "1", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")],
            capture_output=True, text=True, timeout=600, env=env)
        requested = [path for _, path, _ in server.log]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stdout + proc.stderr
    assert "4 sessions: 0 done, 0 skipped (already complete), 4 failed" in proc.stdout, proc.stdout
    failed = {line.split(": ", 1)[0].removeprefix("  FAILED "): line for line in proc.stdout.splitlines()
              if line.startswith("  FAILED ")}
    assert "leads out of the output folder" in failed["dandi://000997/../../escape/sub-e_ses-1.nwb"]
    assert "absolute path" in failed["dandi://000997//abs/sub-a_ses-1.nwb"]
    assert "symbolic link on the way" in failed["dandi://000997/sub-link/sub-link_ses-1.nwb"]
    assert "cannot open as HDF5" in failed[f"dandi://000997/{plain}"]  # it ran, and failed on its own content
    assert not any("escape" in p or "abs" in p or "sub-link" in p for p in requested if "/files/" in p), requested
    assert not any(outside.iterdir()) and not (tmp_path / "escape").exists()
    assert not any(p.suffix == ".nwb" for p in out.rglob("*"))
