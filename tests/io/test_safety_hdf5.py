"""Hostile HDF5 structure: external links, virtual and external data, memory bombs, cycles, deep nesting.

Each test generates a small valid NWB file, then edits it with h5py the way an attacker would, and
checks that opening it gives one `NeurratorError` line naming the file and the object, before pynwb
reads anything (the secret file's values never reach the session).
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from _nwbfiles import SPIKES, refused, replace_dataset, small_nwb

from neurrator.errors import NeurratorError
from neurrator.io.h5safety import check_hdf5_file, check_numeric_dataset
from neurrator.data.session import load_session
from neurrator.io.sources import open_source

@pytest.fixture
def nwb(tmp_path) -> Path:
    return small_nwb(tmp_path / "ses.nwb")


@pytest.fixture
def secret(tmp_path) -> Path:
    p = tmp_path / "secret.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.array([7.0, 8.0, 9.0, 10.0, 11.0])
    return p


def test_the_unmodified_file_loads(nwb):
    s = load_session(nwb, fetch_movie=False)
    assert s.units.ids.tolist() == [1, 2]


def test_external_link_in_a_read_dataset_is_refused(nwb, secret):
    replace_dataset(nwb, SPIKES, lambda f, n: f.__setitem__(n, h5py.ExternalLink(str(secret), "/x")))
    refused(nwb, SPIKES, "external link", str(secret))


def test_external_link_to_a_system_file_anywhere_is_refused(nwb):
    with h5py.File(nwb, "r+") as f:
        f["acquisition/passwd"] = h5py.ExternalLink("/etc/passwd", "/")
    refused(nwb, "/acquisition/passwd", "/etc/passwd")


def test_virtual_dataset_reading_another_file_is_refused(nwb, secret):
    def make(f, name):
        layout = h5py.VirtualLayout(shape=(5,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(secret), "x", shape=(5,))
        f.create_virtual_dataset(name, layout)

    replace_dataset(nwb, SPIKES, make)
    refused(nwb, SPIKES, "virtual dataset", "secret.h5")


def test_virtual_dataset_inside_the_file_is_allowed(tmp_path):
    p = tmp_path / "v.h5"
    with h5py.File(p, "w") as f:
        f["a"] = np.arange(4.0)
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource(".", "a", shape=(4,))
        f.create_virtual_dataset("v", layout)
    with h5py.File(p, "r") as f:
        assert check_hdf5_file(f, label=str(p), file_size=p.stat().st_size).datasets == 2


def test_dataset_with_external_raw_storage_is_refused(nwb, tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(5, dtype="<f8").tobytes())
    replace_dataset(nwb, SPIKES, lambda f, n: f.create_dataset(n, shape=(5,), dtype="<f8",
                                                               external=[(str(raw), 0, 40)]))
    refused(nwb, SPIKES, "external file", "raw.bin")


def test_compressed_memory_bomb_is_refused_before_allocating(nwb):
    """A gzip-chunked spike_times claiming 2e9 float64 (16 GB) in a file of about 100 kB."""
    replace_dataset(nwb, SPIKES, lambda f, n: f.create_dataset(n, shape=(2 * 10**9,), dtype="f8",
                                                               chunks=(2**16,), compression="gzip"))
    assert nwb.stat().st_size < 10**6
    t0 = time.perf_counter()
    msg = refused(nwb, SPIKES, "memory bomb")
    assert time.perf_counter() - t0 < 10
    assert "14.9 GiB" in msg  # 2e9 * 8 bytes


def test_absolute_size_limit_applies_to_every_dataset(nwb, monkeypatch):
    monkeypatch.setenv("NEURRATOR_MAX_DATASET_BYTES", "16")  # the 5 spike times are 40 bytes
    refused(nwb, SPIKES, "limit")


def test_contiguous_data_beyond_the_end_of_the_file_is_refused(tmp_path):
    p = tmp_path / "c.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("big", data=np.zeros(1000), chunks=None)
    with h5py.File(p, "r") as f:
        assert check_hdf5_file(f, label="x", file_size=p.stat().st_size).datasets == 1
        offset = f["big"].id.get_offset()
        with pytest.raises(NeurratorError, match="^x: dataset /big declares 8000 bytes .* beyond the end"):
            check_hdf5_file(f, label="x", file_size=offset + 8)  # as if the file had been cut there


def test_hard_link_cycle_is_one_line(nwb):
    with h5py.File(nwb, "r+") as f:
        f["acquisition/loop"] = f["/"]
    refused(nwb, "/acquisition/loop", "cycle")


def test_soft_link_cycle_is_one_line(nwb):
    with h5py.File(nwb, "r+") as f:
        f.create_group("acquisition/a/b")
        f["acquisition/a/b/up"] = h5py.SoftLink("/acquisition/a")
    refused(nwb, "/acquisition/a/b/up is a soft link to /acquisition/a", "cycle")


def test_soft_link_through_an_external_link_is_refused(nwb, secret):
    with h5py.File(nwb, "r+") as f:
        f["acquisition/ext"] = h5py.ExternalLink(str(secret), "/")
        f["aaa_first"] = h5py.SoftLink("/acquisition/ext/x")  # checked before or after the external link
    refused(nwb, "external link", str(secret))


def test_deep_nesting_is_one_line(nwb):
    with h5py.File(nwb, "r+") as f:
        f.create_group("acquisition/" + "/".join(["d"] * 100))
    refused(nwb, "nested", "levels deep")


def test_check_runs_before_pynwb_reads(nwb, secret, monkeypatch):
    """pynwb's reader is never reached for a refused file."""
    import pynwb

    replace_dataset(nwb, SPIKES, lambda f, n: f.__setitem__(n, h5py.ExternalLink(str(secret), "/x")))
    calls = []
    monkeypatch.setattr(pynwb.NWBHDF5IO, "read", lambda self: calls.append(1))
    with pytest.raises(NeurratorError, match="external link"), open_source(nwb):
        pass
    assert calls == []


def test_check_numeric_dataset():
    check_numeric_dataset(np.zeros(3), label="f", what="x")
    with pytest.raises(NeurratorError, match="x holds string values"):
        check_numeric_dataset(np.array(["1.5"]), label="f", what="x")
    with pytest.raises(NeurratorError, match="4 elements, more than the 3"):
        check_numeric_dataset(np.zeros(4), label="f", what="x", max_elements=3)


def test_real_files_pass_the_structural_check(real_fixtures):
    for p in sorted(real_fixtures.glob("*.nwb")):
        with h5py.File(p, "r") as f:
            report = check_hdf5_file(f, label=str(p), file_size=p.stat().st_size)
        assert report.datasets > 10
