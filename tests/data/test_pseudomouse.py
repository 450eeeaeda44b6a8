"""Pooling sessions of one stimulus into a pseudo-mouse (neurrator.data.pseudomouse)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurrator.data.binning import bin_session
from neurrator.errors import NeurratorError
from neurrator.data.pseudomouse import (
    check_same_stimulus,
    member_units,
    pool_binned,
    pool_units,
)
from neurrator.data.session import load_session
from neurrator.simulate import write_simulated_session

CRE = ("SST", "PV", "VIP")


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """Three mice (population seeds 0-2, one Cre line each) that watched the same movie; the third has
    one repeat fewer."""
    root = tmp_path_factory.mktemp("pseudo")
    sessions = []
    for s, cre in enumerate(CRE):
        path = root / f"sim{s}.nwb"
        write_simulated_session(path, n_units=30, n_repeats=4 if s < 2 else 3, n_frames=60, seed=s, movie_seed=0,
                                cre_line=cre, n_pulses=10)
        sessions.append(load_session(path))
    return root, sessions


def test_pool_aligns_every_session_by_repeat_and_frame(three):
    _, sessions = three
    check_same_stimulus(sessions)
    binned = [bin_session(s, bins_per_frame=2) for s in sessions]
    pooled = pool_binned(binned, [s.path_label for s in sessions])
    b = pooled.binned
    # the third session has 3 repeats: the pool keeps the 3 x 60 presentations all three have
    assert b.n_presentations == 3 * 60 and pooled.rows.shape == (3, 180)
    assert b.n_units == sum(x.n_units for x in binned)
    assert np.array_equal(pooled.unit_session, np.repeat([0, 1, 2], [x.n_units for x in binned]))
    assert len(set(b.unit_ids.tolist())) == b.n_units  # the simulator's ids differ between seeds
    for s, x in enumerate(binned):
        cols = member_units(pooled, s)
        assert np.array_equal(b.unit_ids[cols], x.unit_ids)
        assert np.array_equal(x.frame[pooled.rows[s]], b.frame) and np.array_equal(x.repeat[pooled.rows[s]], b.repeat)
        for p in (0, 61, 179):  # a presentation's bins are that session's bins of the same repeat and frame
            r = pooled.rows[s, p]
            assert np.array_equal(b.counts[2 * p:2 * p + 2, cols], x.counts[2 * r:2 * r + 2])
    assert b.counts.sum() > 0


def test_pool_units_keeps_order_and_separates_probes(three):
    _, sessions = three
    units = pool_units([s.units for s in sessions], ["s0", "s1", "s2"])
    n = [len(s.units) for s in sessions]
    assert len(units) == sum(n)
    assert units.probe[0].startswith("s0/") and units.probe[-1].startswith("s2/")
    # each unit's spikes are its own session's (on that session's clock)
    j = n[0] + 3
    assert np.array_equal(units.spikes(j), sessions[1].units.spikes(3))
    assert set(units.cell_type) >= {"PV", "SST", "VIP"}


def test_refuses_sessions_that_did_not_see_the_same_stimulus(three, tmp_path):
    root, sessions = three
    other = tmp_path / "other_movie.nwb"
    write_simulated_session(other, n_units=30, n_repeats=4, n_frames=60, seed=5, movie_seed=1, n_pulses=10)
    with pytest.raises(NeurratorError, match="frames of natural_movie_one differ") as e:
        check_same_stimulus([sessions[0], load_session(other)])
    assert "other_movie.nwb" in str(e.value)
    with pytest.raises(NeurratorError, match="the same session as"):
        check_same_stimulus([sessions[0], sessions[1], sessions[0]])
    renamed = dataclasses.replace(sessions[1], stimulus="natural_movie_three")
    with pytest.raises(NeurratorError, match="stimulus 'natural_movie_three' differs"):
        check_same_stimulus([sessions[0], renamed])
    clash = dataclasses.replace(sessions[1], units=dataclasses.replace(sessions[1].units, ids=sessions[0].units.ids))
    with pytest.raises(NeurratorError, match="unit id .* is also a unit of"):
        check_same_stimulus([sessions[0], clash])
    shorter = dataclasses.replace(sessions[1], frames=sessions[1].frames[:30])
    with pytest.raises(NeurratorError, match="30 frames"):
        check_same_stimulus([sessions[0], shorter])
    with pytest.raises(ValueError):
        check_same_stimulus(sessions[:1])


def test_pool_binned_refuses_mismatched_bins_and_disjoint_presentations(three):
    _, sessions = three
    a, b = bin_session(sessions[0], bins_per_frame=2), bin_session(sessions[1], bins_per_frame=4)
    with pytest.raises(NeurratorError, match="4 bins per presentation"):
        pool_binned([a, b], ["a", "b"])
    b2 = bin_session(sessions[1], bins_per_frame=2)
    disjoint = dataclasses.replace(b2, repeat=b2.repeat + 10)
    with pytest.raises(NeurratorError, match="no \\(repeat, frame\\) presentation in common"):
        pool_binned([a, disjoint], ["a", "b"])


# -- neurrator narrate with several sessions --------------------------------------------------------------

@pytest.fixture(scope="module")
def pseudo_run(tmp_path_factory):
    """Three small sessions of one movie (cell types known in each) through `narrate_sessions`."""
    from _helpers import FAST

    from neurrator.config import NarrateConfig
    from neurrator.pipeline import narrate_sessions

    root = tmp_path_factory.mktemp("pseudo_run")
    sources = []
    for s, cre in enumerate(CRE):
        path = root / "src" / f"sim{s}.nwb"
        path.parent.mkdir(exist_ok=True)
        write_simulated_session(path, n_units=40, n_repeats=4, n_frames=90, seed=s, movie_seed=0, cre_line=cre,
                                n_pulses=20)
        sources.append(path)
    config = NarrateConfig.from_options(backbone="tiny", narrator="retrieval", seed=0, cache_dir=str(root / "cache"),
                                        **FAST)
    results = narrate_sessions(sources, out=root / "derived", config=config)
    return root, sources, results


@pytest.mark.slow
def test_pseudo_mouse_writes_one_file_per_session_with_its_own_units(pseudo_run):
    from pynwb import NWBHDF5IO

    from neurrator.nwb.derived import read_provenance

    _, sources, results = pseudo_run
    assert len(results) == 3 and len({r.output for r in results}) == 3
    for i, (src, r) in enumerate(zip(sources, results)):
        own = load_session(src).units.ids
        with NWBHDF5IO(str(r.output), "r") as io:
            nwb = io.read()
            assert np.array_equal(np.asarray(nwb.units.id.data[:]), own)
            pm = read_provenance(nwb)["pseudo_mouse"]
            assert pm["this_session"] == i and [s["source"] for s in pm["sessions"]] == [str(s) for s in sources]
            assert pm["pooled_units"] == sum(s["n_units"] for s in pm["sessions"])
            m = nwb.processing["neurrator"]
            subsets = m["unit_subsets"]
            labels = list(subsets["label"].data[:])
            ends = np.asarray(subsets["units"].data[:])  # the ragged column's index
            rows = np.asarray(subsets["units"].target.data[:])  # rows of this file's Units table
            assert rows.max() < len(own)
            members = np.split(rows, ends[:-1])
            fid = m["decoding_fidelity"]
            fid_row = np.asarray(fid["unit_subset"].data[:])
            fid_n = np.asarray(fid["n_units"].data[:])
            # a cell-type subset pools three sessions: this file references its own units of it, and its
            # fidelity rows say how many units the prediction was decoded from (all three sessions' units)
            sst = labels.index("cell_type:SST")
            assert 0 < len(members[sst]) < set(fid_n[fid_row == sst]).pop()
            allrow = labels.index("all")
            assert len(members[allrow]) == len(own) and set(fid_n[fid_row == allrow]) == {pm["pooled_units"]}
            assert len(m["unit_neurration"]) == len(own)
            for name in ("concept_tuning", "group_comparison", "group_separation", "scaling", "encoder"):
                assert name in m.data_interfaces, name


@pytest.mark.slow
def test_pseudo_mouse_cli_refuses_a_file_output_and_another_movie(three, tmp_path):
    from _helpers import FAST_FLAGS, assert_one_line_error, run_cli, sha256

    root, _ = three
    a, b = root / "sim0.nwb", root / "sim1.nwb"
    before = sha256(a), sha256(b)
    assert_one_line_error(run_cli("narrate", str(a), str(b), "--out", str(tmp_path / "x.nwb"), *FAST_FLAGS),
                          "x.nwb", "give a folder")
    other = tmp_path / "other.nwb"
    write_simulated_session(other, n_units=30, n_repeats=4, n_frames=60, seed=7, movie_seed=3, n_pulses=10)
    out = tmp_path / "out"
    assert_one_line_error(run_cli("narrate", str(a), str(other), "--out", str(out), "--val-repeats", "1",
                                  "--test-repeats", "1", *FAST_FLAGS),
                          "other.nwb", "differ from those of")
    assert not out.exists() and (sha256(a), sha256(b)) == before


@pytest.mark.slow
def test_pseudo_mouse_files_pass_dandi_validate_and_nwbinspector(pseudo_run, tmp_path):
    from _helpers import dandi_validate
    from nwbinspector import Importance, inspect_nwbfile, load_config

    _, _, results = pseudo_run
    proc = dandi_validate([r.output for r in results], tmp_path)
    assert proc.returncode == 0 and "ERROR" not in proc.stdout, proc.stdout + proc.stderr
    for r in results:
        critical = [m.message for m in inspect_nwbfile(nwbfile_path=str(r.output), config=load_config("dandi"))
                    if m.importance == Importance.CRITICAL]
        assert critical == [], critical
