"""Real NWB files written by other projects: each gives a Session or one clear line, and stays untouched."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from neurrator.errors import NeurratorError
from neurrator.data.session import load_session, read_units
from neurrator.io.sources import open_source

# file -> what opening it for natural_movie_one must say (none of them holds a movie stimulus)
EXPECTED = {
    "neuroconv_ecephys_tutorial_v2.5.0.nwb": "no presentation table for stimulus 'natural_movie_one'.*: none",
    "pynapple_A8604-211122.nwb": "no presentation table for stimulus 'natural_movie_one'.*: epochs",
    # its one unit's spike times are not in ascending order in the file
    "dandi_sub-anm369963_ses-20170228.nwb": "unit 1001 has unsorted spike times",
}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_file_gives_a_session_or_one_clear_line(real_fixtures, name):
    path = real_fixtures / name
    if not path.exists():
        pytest.skip(f"{name} not in {real_fixtures}")
    before = _sha(path)
    with pytest.raises(NeurratorError) as ei:  # none of the three holds a movie stimulus
        load_session(path)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(path))
    assert re.search(EXPECTED[name], msg), msg
    assert _sha(path) == before


@pytest.mark.parametrize(
    ("name", "n_units", "metrics"),
    [("neuroconv_ecephys_tutorial_v2.5.0.nwb", 10, {"quality"}), ("pynapple_A8604-211122.nwb", 3, set())],
)
def test_real_units_are_read(real_fixtures, name, n_units, metrics):
    path = real_fixtures / name
    if not path.exists():
        pytest.skip(f"{name} not in {real_fixtures}")
    with open_source(path) as nwb:
        units, dropped = read_units(nwb, label=str(path))
    assert len(units) == n_units and set(units.metrics) == metrics
    assert (units.n_spikes() > 0).all() and set(units.region) == {"unknown"}
    if name.startswith("pynapple"):
        assert units.n_spikes()[0] == 11_020


def test_real_non_allen_quality_labels_are_not_filtered(real_fixtures):
    """The dandi file labels its unit 'Excellent': the Allen quality filter must not drop it."""
    path = real_fixtures / "dandi_sub-anm369963_ses-20170228.nwb"
    if not path.exists():
        pytest.skip("file absent")
    with open_source(path) as nwb, pytest.raises(NeurratorError, match="unsorted"):
        read_units(nwb, label=str(path))  # reaches the spike check: not emptied by the filter
