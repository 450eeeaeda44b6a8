"""`neurrator process`: a stand-in dandiset on 127.0.0.1, one broken session, a resumed second run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from standin import DandiStandin

from neurrator.process import dandiset_prefix, derived_path
from neurrator.errors import NeurratorError

pytestmark = pytest.mark.slow


def test_derived_path_and_prefix():
    assert derived_path("sub-1/sub-1_ses-2.nwb", Path("o")) == Path("o/sub-1/sub-1_ses-2_desc-neurrator.nwb")
    assert dandiset_prefix("000021") == "dandi://000021"
    assert dandiset_prefix("dandi://000021@0.1.0") == "dandi://000021@0.1.0"
    with pytest.raises(NeurratorError, match="dandiset id"):
        dandiset_prefix("dandi://000021/sub-1/x.nwb")


@pytest.fixture(scope="module")
def dandiset(tmp_path_factory):
    from neurrator.simulate import write_simulated_session

    folder = tmp_path_factory.mktemp("dandiset")
    files = {}
    for seed in (1, 2):
        path = folder / f"sim{seed}.nwb"
        write_simulated_session(path, n_units=24, n_repeats=5, n_frames=120, seed=seed)
        files[f"sub-sim{seed}/sub-sim{seed}_ses-{seed}.nwb"] = path
    broken = folder / "broken.nwb"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n but cut short")
    files["sub-broken/sub-broken_ses-9.nwb"] = broken
    with DandiStandin(files=files, dandiset_id="000999") as server:
        yield server


def _process(server: DandiStandin, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEURRATOR_DANDI_API_URL": server.api_url, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "neurrator", "process", "000999", "--out", str(out), "--workers", "2", "--quiet",
         "--epochs", "1", "--narrations", "2", "--device", "cpu", "--cache-dir", str(out.parent / "cache")],
        capture_output=True, text=True, timeout=900, env=env)


def test_process_runs_all_reports_failures_and_resumes(dandiset, tmp_path):
    out = tmp_path / "derived"
    first = _process(dandiset, out)
    assert first.returncode == 1, first.stdout + first.stderr  # the broken session fails the run ...
    assert "2 done" in first.stdout and "1 failed" in first.stdout
    assert "FAILED dandi://000999/sub-broken/sub-broken_ses-9.nwb" in first.stdout
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nwb"))
    assert done == ["sub-sim1/sub-sim1_ses-1_desc-neurrator.nwb", "sub-sim2/sub-sim2_ses-2_desc-neurrator.nwb"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.nwb")}

    second = _process(dandiset, out)  # ... and a second run skips the finished ones
    assert second.returncode == 1
    assert "2 skipped" in second.stdout and "1 failed" in second.stdout and "0 done" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nwb")} == stamps
