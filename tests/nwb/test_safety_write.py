"""Interrupted writes: SIGKILL mid-write, a full disk / file-size limit, two writers on one path.

The output path must hold nothing, the previous complete file, or the new complete file; a rerun
must succeed (and clear the killed run's temporary file). The writers are real processes (forked,
so they start without re-importing pynwb) killed with a real SIGKILL; the files are about 1 MB.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pynwb  # noqa: F401 - imported before forking, so writers start at once
import pytest

from neurrator.errors import NeurratorError
from neurrator.nwb.derived import write_nwbfile_atomic


def small(ident: str):
    from pynwb import NWBFile

    return NWBFile(session_description="t", identifier=ident, session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))


def _child(out: str, ident: str, mode: str, flag: str, other: str | None, result: str) -> None:
    """Body of the writer process: write 8 series; ``mode`` slows it down or limits the file size."""
    import resource

    import numpy as np
    from hdmf.backends.hdf5 import h5tools
    from pynwb.base import TimeSeries

    nwb = small(ident)
    for i in range(8):
        nwb.add_acquisition(TimeSeries(name=f"x{i}", data=np.arange(20000.0) + i, unit="V", rate=1.0))
    if mode in ("slow", "slow-rename", "race"):
        real = os.fsync if mode == "slow-rename" else h5tools.HDF5IO.write_dataset

        def slowed(*a, **k):
            got = real(*a, **k)
            Path(flag).touch()
            if other is None:
                time.sleep(0.3)  # the parent kills us now
            else:  # both writers are mid-write at the same time
                t0 = time.monotonic()
                while not Path(other).exists() and time.monotonic() - t0 < 60:
                    time.sleep(0.01)
            return got

        if mode == "slow-rename":  # the file is fully written; killed before the rename
            os.fsync = slowed
        else:
            h5tools.HDF5IO.write_dataset = slowed
    if mode == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # the file needs about 1.3 MB
    try:
        write_nwbfile_atomic(nwb, Path(out))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        Path(result).write_text(f"{type(e).__name__}: {e}")
        os._exit(3)
    Path(result).write_text("done")
    os._exit(0)


class Writer:
    """A real forked process running `_child`."""

    def __init__(self, out: Path, ident: str, mode: str, flag: Path, other: Path | None = None) -> None:
        self.result_file = flag.with_name(flag.name + ".result")
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            try:
                _child(str(out), ident, mode, str(flag), None if other is None else str(other), str(self.result_file))
            finally:
                os._exit(4)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError("writer timed out")
            time.sleep(0.02)
        return self.returncode

    @property
    def result(self) -> str:
        return self.result_file.read_text() if self.result_file.exists() else ""


def identifier(path: Path) -> str:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert len(nwb.acquisition) == 8  # complete
        return nwb.identifier


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp.nwb"))


def kill_mid_write(proc: Writer, flag: Path) -> None:
    """SIGKILL ``proc`` once it has touched ``flag`` (it is writing)."""
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None, proc.result
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


@pytest.mark.parametrize("mode, previous", [("slow", True), ("slow-rename", False)])  # mid-write / before rename
def test_sigkill_leaves_nothing_or_the_previous_file_and_a_rerun_succeeds(tmp_path, mode, previous):
    out = tmp_path / "out" / "ses.nwb"
    out.parent.mkdir()
    if previous:
        write_nwbfile_atomic(small("old"), out)
        before = out.read_bytes()
    flag = tmp_path / "writing"
    proc = Writer(out, "new", mode, flag)
    kill_mid_write(proc, flag)
    if previous:
        assert out.read_bytes() == before  # untouched, still the complete old file
    else:
        assert not out.exists()
    assert len(temporaries(out.parent)) == 1  # the killed run's partial temporary file, hidden beside it
    write_nwbfile_atomic(small("rerun"), out)  # a rerun succeeds ...
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out), "r") as io:
        assert io.read().identifier == "rerun"
    assert temporaries(out.parent) == []  # ... and removes the dead run's temporary file


def test_file_size_limit_removes_the_partial_file_and_says_so(tmp_path):
    """RLIMIT_FSIZE makes HDF5's writes fail like a full disk (EFBIG instead of ENOSPC), in C, mid-file."""
    out = tmp_path / "ses.nwb"
    write_nwbfile_atomic(small("old"), out)
    before = out.read_bytes()
    proc = Writer(out, "new", "fsize", tmp_path / "flag")
    assert proc.wait() == 3, proc.result
    line = proc.result
    assert line.startswith(f"NeurratorError: {out}: could not write the output file"), line
    assert "the previous file was kept" in line and "\n" not in line
    assert out.read_bytes() == before
    assert temporaries(tmp_path) == []


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from pynwb import NWBHDF5IO

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(NWBHDF5IO, "write", full)
    out = tmp_path / "ses.nwb"
    with pytest.raises(NeurratorError, match=rf"^{out}: could not write the output file \(No space left on device\); "
                                             "nothing was written$"):
        write_nwbfile_atomic(small("x"), out)
    assert not out.exists() and temporaries(tmp_path) == []


def test_two_writers_at_once_leave_one_complete_file(tmp_path):
    out = tmp_path / "ses.nwb"
    flags = {"a": tmp_path / "flag_a", "b": tmp_path / "flag_b"}
    procs = [Writer(out, "a", "race", flags["a"], flags["b"]), Writer(out, "b", "race", flags["b"], flags["a"])]
    for p in procs:
        assert p.wait() == 0, p.result
    assert identifier(out) in {"a", "b"}
    assert temporaries(tmp_path) == []


def test_a_live_writers_temporary_file_is_not_removed(tmp_path):
    """Stale-file cleanup only removes files of processes that are gone."""
    import platform
    import re

    out = tmp_path / "ses.nwb"
    host = re.sub(r"[^A-Za-z0-9-]+", "-", platform.node()) or "host"
    live = tmp_path / f".ses.{host}.{os.getppid()}.abc.tmp.nwb"  # our parent process is alive
    live.write_bytes(b"partial")
    write_nwbfile_atomic(small("x"), out)
    assert live.exists()


@pytest.mark.slow
def test_a_killed_writers_stale_temporary_file_is_removed_by_the_next_run(tmp_path):
    """SIGKILL mid-write leaves ``.ses.<host>.<pid>.*.tmp.nwb``; the next `neurrator` run on that folder removes it
    once it is older than STALE_TEMPORARY_AGE_S, says so, and leaves fresh temporaries and other files alone."""
    import subprocess
    import sys

    from neurrator.nwb.derived import STALE_TEMPORARY_AGE_S

    out = tmp_path / "out" / "sub-1" / "ses.nwb"
    out.parent.mkdir(parents=True)
    flag = tmp_path / "writing"
    proc = Writer(out, "new", "slow", flag)
    kill_mid_write(proc, flag)
    [stale] = temporaries(out.parent)
    old = time.time() - STALE_TEMPORARY_AGE_S - 60
    os.utime(stale, (old, old))
    report_tmp = out.parent / ".ses.otherhost.12.abcd_123.tmp.html"  # a killed report write on another host
    report_tmp.write_text("<html")
    os.utime(report_tmp, (old, old))
    fresh = out.parent / ".ses.otherhost.12.abcdefgh.tmp.nwb"  # a live writer elsewhere: recent, kept
    fresh.write_bytes(b"partial")
    foreign = out.parent / ".ses.nwb.tmp"  # not this tool's name: kept however old
    foreign.write_bytes(b"x")
    os.utime(foreign, (old, old))
    run = subprocess.run([sys.executable, "-m", "neurrator", "narrate", str(tmp_path / "missing.nwb"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "missing.nwb" in run.stderr  # the run itself fails on its missing source ...
    assert not stale.exists() and not report_tmp.exists()  # ... after removing the killed writes' leftovers
    assert fresh.exists() and foreign.exists()
    assert f"removed {stale}: a temporary file left by an interrupted run" in run.stderr


@pytest.mark.slow
def test_ctrl_c_during_narrate_exits_130_with_one_line_and_leaves_no_output(tmp_path):
    """A real SIGINT while `neurrator narrate` trains: exit 130, one line, no traceback, no file at the output
    path and no temporary file beside it."""
    import subprocess
    import sys

    from neurrator.simulate import write_simulated_session

    source = tmp_path / "ses.nwb"
    write_simulated_session(source, n_units=24, n_repeats=5, n_frames=120, seed=1)
    out = tmp_path / "out" / "derived.nwb"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "neurrator", "narrate", str(source), "--out", str(out),
                                 "--epochs", "50", "--device", "cpu", "--no-neurration"],
                                stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + 120
        while "reading" not in log.read_text():  # past the checks, into the long part of the run
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert text.splitlines()[-1] == ("Interrupted: no partial output was left (output files are written whole or "
                                     "not at all)")
    assert not out.parent.exists()  # no output, no temporary file, and the folder the run created is removed
