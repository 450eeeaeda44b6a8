"""Malformed tables: wrong dtypes, duplicate or too many unit ids, corrupt chunks; each one line naming the file."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from _nwbfiles import SPIKES, refused, replace_dataset, small_nwb

from neurrator.data import session_checks
from neurrator.data.session import load_session

FRAME = "/intervals/natural_movie_one_presentations/frame"


@pytest.fixture
def nwb(tmp_path):
    return small_nwb(tmp_path / "ses.nwb")


def test_string_spike_times_are_refused(nwb):
    """Numeric-looking strings would convert silently with numpy; they are refused by dtype."""
    replace_dataset(nwb, SPIKES, lambda f, n: f.create_dataset(
        n, data=np.array(["0.1", "0.2", "0.5", "0.3", "0.4"], dtype=h5py.string_dtype())))
    refused(nwb, "units/spike_times holds string values")


def test_non_integer_spike_index_is_refused(nwb):
    replace_dataset(nwb, "/units/spike_times_index", lambda f, n: f.create_dataset(n, data=np.array([3.0, 5.0])))
    refused(nwb, "units/spike_times_index holds float64 values, not integer")


def test_string_frame_indices_are_refused(nwb):
    frames = np.tile(np.arange(10), 2).astype(str).astype(object)
    replace_dataset(nwb, FRAME, lambda f, n: f.create_dataset(n, data=frames, dtype=h5py.string_dtype()))
    refused(nwb, "natural_movie_one_presentations.frame (frame indices) holds string values")


def test_non_numeric_frame_indices_are_one_line(nwb):
    frames = np.array(["a"] * 20, dtype=object)
    replace_dataset(nwb, FRAME, lambda f, n: f.create_dataset(n, data=frames, dtype=h5py.string_dtype()))
    refused(nwb)  # refused by the dtype check or the conversion, always naming the file


def test_duplicate_unit_ids_are_refused(nwb):
    replace_dataset(nwb, "/units/id", lambda f, n: f.create_dataset(n, data=np.array([4, 4])))
    refused(nwb, "duplicate unit ids", "id 4 appears 2 times")


def test_float_unit_ids_are_refused(nwb):
    replace_dataset(nwb, "/units/id", lambda f, n: f.create_dataset(n, data=np.array([1.5, 2.5])))
    refused(nwb, "must contain integers")  # hdmf refuses these itself; check_unit_ids is the backstop


def _many_units(path, n_units: int):
    """A Units table of ``n_units`` rows of which only the first two have spikes."""
    ends = np.full(n_units, 5, dtype=np.int64)
    ends[0] = 3
    replace_dataset(path, "/units/id", lambda f, n: f.create_dataset(n, data=np.arange(n_units), compression="gzip"))
    replace_dataset(path, "/units/spike_times_index",
                    lambda f, n: f.create_dataset(n, data=ends, compression="gzip"))


def test_millions_of_units_are_refused_before_reading_columns(nwb):
    _many_units(nwb, 2_000_000)
    refused(nwb, "2000000 rows", f"{session_checks.MAX_UNITS}")


def test_many_empty_units_are_dropped_with_a_warning(nwb):
    _many_units(nwb, 20_000)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        s = load_session(nwb, fetch_movie=False)
    assert s.units.ids.tolist() == [0, 1]
    assert s.dropped_units["no_spikes"].size == 19_998
    assert any("19998 unit(s) without spikes" in str(w.message) for w in got)


def test_hdf5_read_error_in_a_dataset_names_the_file(tmp_path):
    """A corrupt compressed chunk fails inside h5py's read; the message still starts with the file."""
    p = small_nwb(tmp_path / "ses.nwb")
    replace_dataset(p, SPIKES, lambda f, n: f.create_dataset(n, data=np.array([0.1, 0.2, 0.5, 0.3, 0.4]),
                                                             chunks=(5,), compression="gzip"))
    with h5py.File(p, "r") as f:
        info = f[SPIKES].id.get_chunk_info(0)
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    msg = refused(p, "cannot read the file")
    assert "internal error" not in msg
