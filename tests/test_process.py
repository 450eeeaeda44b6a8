"""`neurrator process`: a stand-in dandiset on 127.0.0.1, one broken session, a resumed second run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from standin import DandiStandin

from neurrator.errors import NeurratorError
from neurrator.process import (
    ProcessReport,
    SkippedAsset,
    classify_asset,
    dandiset_prefix,
    derived_path,
)

#: Asset names of dandiset 000021 (Allen Visual Coding Neuropixels) and of other layouts.
ALLEN_NAMES = {
    "sub-699733573/sub-699733573_ses-715093703.nwb": None,
    "sub-699733573/sub-699733573_ses-715093703_probe-810755797_ecephys.nwb": "lfp",
    "sub-699733573/sub-699733573_ses-715093703_probe-810755801_ecephys.nwb": "lfp",
    "sub-1/sub-1_ses-2_ecephys.nwb": None,
    "sub-1/sub-1_ses-2_behavior+ecephys.nwb": None,
    "sub-1/sub-1_ses-2_desc-neurrator.nwb": "derived",
    "sub-1/sub-1_ses-2_desc-processed_ecephys.nwb": "derived_other",
    "sub-1/sub-1_ses-2_ophys.nwb": "modality",
    "sub-1/sub-1_ses-2_behavior.nwb": "modality",
    "sub-1/sub-1_ses-2_image.nwb": "modality",
    "sub-1/notes.txt": "not_nwb",
}


def test_classify_asset_picks_session_files():
    assert {p: classify_asset(p) for p in ALLEN_NAMES} == ALLEN_NAMES


def test_summary_reports_ignored_assets_grouped_by_reason():
    report = ProcessReport("dandi://000021", ignored=[
        SkippedAsset("sub-1/sub-1_ses-2_probe-3_ecephys.nwb", "lfp"),
        SkippedAsset("sub-1/sub-1_ses-2_probe-4_ecephys.nwb", "lfp"),
        SkippedAsset("sub-1/sub-1_ses-2_desc-neurrator.nwb", "derived")])
    text = report.summary()
    assert "ignored 3 assets that are not sessions" in text
    assert "2 per-probe LFP file" in text and "e.g. sub-1/sub-1_ses-2_probe-3_ecephys.nwb" in text
    assert "1 a derived file of neurrator" in text


def test_only_lfp_assets_is_a_clear_error(tmp_path, monkeypatch):
    from neurrator.config import NarrateConfig
    from neurrator.process import process_dandiset

    lfp = tmp_path / "lfp.nwb"
    lfp.write_bytes(b"not opened")
    files = {"sub-1/sub-1_ses-2_probe-3_ecephys.nwb": lfp, "sub-1/sub-1_ses-2_probe-4_ecephys.nwb": lfp}
    with DandiStandin(files=files, dandiset_id="000998") as server:
        monkeypatch.setenv("NEURRATOR_DANDI_API_URL", server.api_url)
        with pytest.raises(NeurratorError, match=r"no NWB session files \(ignored: 2 per-probe LFP"):
            process_dandiset("000998", out=tmp_path / "out", config=NarrateConfig())
        assert server.file_requests == 0  # classified by name, never downloaded


def test_derived_path_and_prefix():
    assert derived_path("sub-1/sub-1_ses-2.nwb", Path("o")) == Path("o/sub-1/sub-1_ses-2_desc-neurrator.nwb")
    assert dandiset_prefix("000021") == "dandi://000021"
    assert dandiset_prefix("dandi://000021@0.1.0") == "dandi://000021@0.1.0"
    with pytest.raises(NeurratorError, match="dandiset id"):
        dandiset_prefix("dandi://000021/sub-1/x.nwb")


def test_a_session_without_an_outcome_after_ctrl_c_is_cancelled_unless_its_output_is_complete(tmp_path):
    from neurrator.process import _after_interrupt

    missing = _after_interrupt("dandi://000999/sub-1/sub-1_ses-1.nwb", str(tmp_path / "none.nwb"))
    cut = tmp_path / "cut.nwb"
    cut.write_bytes(b"\x89HDF\r\n\x1a\n but cut short")
    partial = _after_interrupt("dandi://000999/sub-1/sub-1_ses-1.nwb", str(cut))
    assert (missing.status, partial.status) == ("cancelled", "cancelled")
    # the complete case ("done": it finished while its result was on the way) is the Ctrl-C test below


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
    # a per-probe LFP file (here unreadable: processing it would fail the run visibly) is ignored by name
    files["sub-sim1/sub-sim1_ses-1_probe-7_ecephys.nwb"] = broken
    with DandiStandin(files=files, dandiset_id="000999") as server:
        yield server


def _process(server: DandiStandin, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEURRATOR_DANDI_API_URL": server.api_url, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "neurrator", "process", "000999", "--out", str(out), "--workers", "2", "--quiet",
         "--epochs", "1", "--narrations", "2", "--device", "cpu", "--cache-dir", str(out.parent / "cache")],
        capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.slow
def test_process_runs_all_reports_failures_and_resumes(dandiset, tmp_path):
    out = tmp_path / "derived"
    first = _process(dandiset, out)
    assert first.returncode == 1, first.stdout + first.stderr  # the broken session fails the run ...
    assert "2 done" in first.stdout and "1 failed" in first.stdout
    assert "FAILED dandi://000999/sub-broken/sub-broken_ses-9.nwb" in first.stdout
    assert "ignored 1 assets that are not sessions" in first.stdout
    assert "1 per-probe LFP file" in first.stdout and "probe-7" in first.stdout and "probe-7" not in "".join(
        line for line in first.stdout.splitlines() if "FAILED" in line)
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nwb"))
    assert done == ["sub-sim1/sub-sim1_ses-1_desc-neurrator.nwb", "sub-sim2/sub-sim2_ses-2_desc-neurrator.nwb"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.nwb")}

    second = _process(dandiset, out)  # ... and a second run skips the finished ones
    assert second.returncode == 1
    assert "2 skipped" in second.stdout and "1 failed" in second.stdout and "0 done" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nwb")} == stamps


@pytest.mark.slow
def test_ctrl_c_cancels_the_rest_exits_130_and_a_rerun_resumes(dandiset, tmp_path):
    """A real SIGINT once the first session's output exists: nothing else is finished, one summary line,
    exit 130, no traceback, no Dask INFO logging under --quiet, and a rerun skips the finished session."""
    import signal
    import time

    out = tmp_path / "derived"
    env = {**os.environ, "NEURRATOR_DANDI_API_URL": dandiset.api_url, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "neurrator", "process", "000999", "--out", str(out), "--workers", "1", "--quiet",
           "--epochs", "1", "--narrations", "2", "--device", "cpu", "--no-neurration",
           "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not list(out.rglob("*_desc-neurrator.html")):  # the first session is finished (report written last)
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no session finished"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert time.monotonic() - stopped < 30  # the running session was not waited for
    assert "Traceback" not in stderr and "INFO" not in stderr, stderr
    [line] = stdout.splitlines()
    assert line.startswith("dandi://000999: interrupted: 1 done, 0 skipped") and "cancelled of 3 sessions" in line
    finished = [p for p in out.rglob("*.nwb")]
    assert len(finished) == 1  # nothing else was finished, and no partial file at any output path
    assert not [p for p in out.rglob(".*") if p.is_file()], "the killed worker's temporary file was removed"
    subject = finished[0].parent.name
    rerun = subprocess.run([*cmd, "--match", subject], capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 sessions: 0 done, 1 skipped (already complete), 0 failed" in rerun.stdout
