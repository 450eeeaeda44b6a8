"""Reading sessions: simulated Allen-layout files, and every bad input giving one clear line."""

from __future__ import annotations

import hashlib
import logging
import warnings
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest

from _nwbfiles import make_nwb

from neurrator.errors import NeurratorError
from neurrator.data.session import Session, load_session
from neurrator.simulate import load_truth, simulate_session, write_simulated_session

SMALL = dict(n_units=40, n_repeats=4, n_frames=90, n_pulses=40)


@pytest.fixture(scope="module")
def simfile(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("sim") / "sim.nwb"
    write_simulated_session(p, seed=2, **SMALL)
    return p


@pytest.fixture(scope="module")
def simfile_no_celltype(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("sim") / "sim_opto.nwb"
    write_simulated_session(p, seed=7, cell_type_column=False, n_units=80, n_repeats=2, n_frames=60, n_pulses=60)
    return p


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_clear_error(path: Path, match: str, **kwargs) -> NeurratorError:
    before = sha(path)
    with pytest.raises(NeurratorError, match=match) as ei:
        load_session(path, fetch_movie=False, **kwargs)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    assert sha(path) == before  # the input is left byte-identical
    return ei.value


# ------------------------------------------------------------------------------------- simulated


def test_simulated_session_reads_back(simfile):
    truth = load_truth(simfile)
    s = load_session(simfile)
    assert isinstance(s, Session)
    keep = truth.passes_quality
    np.testing.assert_array_equal(s.units.ids, truth.unit_ids[keep])
    np.testing.assert_array_equal(s.units.region, truth.region[keep])
    np.testing.assert_array_equal(s.units.cell_type, truth.cell_type[keep])
    assert s.units.offsets[-1] == s.units.spike_times.size
    assert set(s.units.probe) <= {"probeA", "probeB", "probeC"}
    assert np.isfinite(s.units.depth).all()
    assert {"amplitude_cutoff", "presence_ratio", "isi_violations", "quality", "firing_rate"} <= set(s.units.metrics)
    p = s.presentations
    assert len(p) == SMALL["n_repeats"] * SMALL["n_frames"]
    assert p.n_repeats == SMALL["n_repeats"]
    np.testing.assert_array_equal(p.frame, np.tile(np.arange(SMALL["n_frames"]), SMALL["n_repeats"]))
    np.testing.assert_array_equal(p.repeat, np.repeat(np.arange(SMALL["n_repeats"]), SMALL["n_frames"]))
    assert np.all(np.diff(p.start) > 0)
    assert s.frames.shape == (SMALL["n_frames"], 64, 128) and s.frames.dtype == np.uint8
    assert s.frames_source == "template:natural_movie_one"
    assert s.frame_rate == 30.0
    assert s.captions == truth.captions
    assert s.subject["species"] == "Mus musculus" and "genotype" in s.subject
    assert s.session_id == "sim2" and s.stimulus == "natural_movie_one"
    assert s.presentation_table == "intervals/natural_movie_one_presentations"


def test_spike_times_are_the_simulated_ones(simfile):
    sim = simulate_session(seed=2, **SMALL)
    s = load_session(simfile, quality_filter=False)
    assert len(s.units) == SMALL["n_units"]
    for i in (0, 5, 39):
        np.testing.assert_array_equal(s.units.spikes(i), sim.spike_times[i])


def test_quality_filter_uses_allen_thresholds(simfile):
    s_all = load_session(simfile, quality_filter=False)
    s = load_session(simfile)
    m = s_all.units.metrics
    ok = ((m["amplitude_cutoff"] <= 0.1) & (m["presence_ratio"] >= 0.95) & (m["isi_violations"] <= 0.5)
          & (m["quality"] == "good"))
    np.testing.assert_array_equal(s.units.ids, s_all.units.ids[ok])
    assert set(s.dropped_units["quality"]) == set(s_all.units.ids[~ok])
    assert 0 < ok.sum() < ok.size


def test_quality_filter_says_how_many_units_it_excludes_and_why(simfile, caplog):
    """One console line accounts for every excluded unit, with the count per failed criterion."""
    s_all = load_session(simfile, quality_filter=False)
    m = s_all.units.metrics
    with caplog.at_level(logging.INFO, logger="neurrator"):
        s = load_session(simfile)
    lines = [r.getMessage() for r in caplog.records if "quality filter excludes" in r.getMessage()]
    assert len(lines) == 1, lines
    n_out = len(s.dropped_units["quality"])
    assert f"excludes {n_out} of {len(s_all.units)} units" in lines[0]
    n_isi = int((~(m["isi_violations"] <= 0.5)).sum())
    n_amp = int((~(m["amplitude_cutoff"] <= 0.1)).sum())
    for why, count in (("isi_violations > 0.5 or NaN", n_isi), ("amplitude_cutoff > 0.1 or NaN", n_amp)):
        assert (f"{why}: {count}" in lines[0]) == (count > 0), lines[0]


def test_opto_tagging_finds_the_cre_line_units(simfile_no_celltype):
    truth = load_truth(simfile_no_celltype)
    s = load_session(simfile_no_celltype, quality_filter=False)
    assert s.opto is not None and s.opto["cell_type"] == "SST"
    assert s.opto["thresholds"]["window_s"] == [0.001, 0.01]
    tagged = set(s.opto["tagged_ids"])
    true_sst = set(truth.unit_ids[truth.cell_type == "SST"].tolist())
    assert len(true_sst) >= 3
    assert tagged == true_sst
    assert set(s.units.cell_type) == {"SST", "unknown"}
    np.testing.assert_array_equal(s.units.cell_type == "SST", np.isin(s.units.ids, list(true_sst)))


def test_units_without_spikes_are_skipped_with_a_warning(tmp_path):
    p = make_nwb(tmp_path / "empty.nwb", spikes=[[0.1, 0.2], [], [0.4]])
    with pytest.warns(UserWarning, match="without spikes"):
        s = load_session(p, fetch_movie=False)
    assert s.units.ids.tolist() == [100, 102]
    assert s.dropped_units["no_spikes"].tolist() == [101]


def test_visual_behavior_columns_and_repeat_column(tmp_path):
    """movie_frame_index / movie_repeat (Visual Behavior) are understood."""
    from hdmf.common import VectorData
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals

    nwb = NWBFile(session_description="vb", identifier="vb", session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    nwb.add_unit(spike_times=[0.05, 0.5])
    start = np.arange(12) / 30.0
    rep = np.repeat([3, 4, 5], 4)  # repeat numbers need not start at 0
    nwb.add_time_intervals(TimeIntervals(
        name="natural_movie_one_presentations", description="vb", id=np.arange(12),
        columns=[VectorData(name="start_time", description="", data=start),
                 VectorData(name="stop_time", description="", data=start + 1 / 30),
                 VectorData(name="movie_frame_index", description="", data=np.tile(np.arange(4), 3)),
                 VectorData(name="movie_repeat", description="", data=rep)]))
    p = tmp_path / "vb.nwb"
    with NWBHDF5IO(str(p), "w") as io:
        io.write(nwb)
    s = load_session(p, fetch_movie=False)
    assert s.presentations.repeat.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert s.frames is None and s.frames_source == ""


def test_movie_argument_supplies_frames(tmp_path):
    p = make_nwb(tmp_path / "m.nwb")
    movie = np.random.default_rng(0).integers(0, 255, size=(10, 6, 8), dtype=np.uint8)
    np.save(tmp_path / "frames.npy", movie)
    s = load_session(p, movie=tmp_path / "frames.npy")
    np.testing.assert_array_equal(s.frames, movie)
    assert s.frames_source.endswith("frames.npy")


# ------------------------------------------------------------------------------------- bad input


def test_not_hdf5(tmp_path):
    p = tmp_path / "text.nwb"
    p.write_text("this is not an HDF5 file\n" * 10)
    assert_clear_error(p, "not an HDF5 file")


def test_truncated(tmp_path, simfile):
    p = tmp_path / "cut.nwb"
    data = simfile.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert_clear_error(p, "truncated")


def test_hdf5_not_nwb(tmp_path):
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    assert_clear_error(p, "not NWB")


def test_no_units_table(tmp_path):
    assert_clear_error(make_nwb(tmp_path / "nounits.nwb", spikes=None), "no Units table")


def test_missing_file(tmp_path):
    with pytest.raises(NeurratorError, match="file not found"):
        load_session(tmp_path / "nope.nwb")


def test_no_presentation_table_lists_existing(tmp_path, simfile):
    err = assert_clear_error(simfile, "no presentation table for stimulus 'natural_movie_three'",
                             stimulus="natural_movie_three")
    assert "natural_movie_one_presentations" in str(err) and "spontaneous_presentations" in str(err)


@pytest.mark.parametrize(
    ("spikes", "match"),
    [
        ([[0.1, np.nan, 0.3]], "unit 100 has non-finite"),
        ([[0.1, 0.2], [-0.5, 0.3]], "unit 101 has negative spike times"),
        ([[0.1, 0.2], [0.5, 0.3, 0.9]], "unit 101 has unsorted spike times"),
    ],
    ids=["nan", "negative", "unsorted"],
)
def test_bad_spike_times(tmp_path, spikes, match):
    assert_clear_error(make_nwb(tmp_path / "bad.nwb", spikes=spikes), match)


def test_unsorted_detection_ignores_unit_boundaries(tmp_path):
    """A later unit starting before the previous one ended is fine (each block is sorted)."""
    p = make_nwb(tmp_path / "ok.nwb", spikes=[[0.5, 0.9], [0.1, 0.2]])
    assert load_session(p, fetch_movie=False).units.ids.tolist() == [100, 101]


def test_frame_index_beyond_the_movie(tmp_path):
    p = make_nwb(tmp_path / "beyond.nwb", template=np.zeros((6, 4, 4), np.uint8))  # presentations show 0..9
    assert_clear_error(p, "frame index 9, beyond the movie's 6 frames")


def test_movie_frame_count_inconsistent(tmp_path):
    p = make_nwb(tmp_path / "long.nwb")
    movie = tmp_path / "long.npy"
    np.save(movie, np.zeros((25, 4, 4), np.uint8))
    assert_clear_error(p, "movie has 25 frames .* inconsistent", movie=movie)


def test_stop_before_start(tmp_path):
    start = np.arange(4) / 30.0
    stop = start + 1 / 30
    stop[2] = start[2] - 0.01
    p = make_nwb(tmp_path / "stop.nwb", pres=(start, stop, np.arange(4)))
    assert_clear_error(p, "row 2: stop_time .* before start_time")


def test_negative_frame_index(tmp_path):
    start = np.arange(3) / 30.0
    p = make_nwb(tmp_path / "negf.nwb", pres=(start, start + 0.03, np.array([0, -1, 1])))
    assert_clear_error(p, "negative frame indices")


def test_all_units_filtered_is_clear(tmp_path):
    p = make_nwb(tmp_path / "none.nwb", spikes=[[], []])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_clear_error(p, "no units with spikes")


def test_region_and_probe_from_units_electrodes(tmp_path):
    """units.electrodes -> electrodes.location / group_name; a units.location column wins where set."""
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(session_description="e", identifier="e", session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    dev = nwb.create_device(name="probeX")
    grp = nwb.create_electrode_group(name="probeX", description="", location="", device=dev)
    for loc in ("VISp", "LGd", "CA1"):
        nwb.add_electrode(location=loc, group=grp)
    nwb.add_unit_column("location", "override")
    nwb.add_unit(spike_times=[0.1], electrodes=[1], location="")
    nwb.add_unit(spike_times=[0.2], electrodes=[0], location="VISl")
    nwb.add_unit(spike_times=[0.3], electrodes=[2], location="")
    start = np.arange(4) / 30
    from hdmf.common import VectorData
    from pynwb.epoch import TimeIntervals

    nwb.add_time_intervals(TimeIntervals(
        name="natural_movie_one_presentations", description="", id=np.arange(4),
        columns=[VectorData(name="start_time", description="", data=start),
                 VectorData(name="stop_time", description="", data=start + 1 / 30),
                 VectorData(name="frame", description="", data=np.arange(4))]))
    p = tmp_path / "el.nwb"
    with NWBHDF5IO(str(p), "w") as io:
        io.write(nwb)
    s = load_session(p, fetch_movie=False)
    assert s.units.region.tolist() == ["LGd", "VISl", "CA1"]
    assert s.units.probe.tolist() == ["probeX"] * 3
