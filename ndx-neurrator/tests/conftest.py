"""Shared fixtures of the ndx-neurrator tests: a file holding one of each type, written once."""

from __future__ import annotations

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from ndx_neurrator.testing import mock_neurrator_nwbfile



@pytest.fixture(autouse=True)
def _seed() -> None:
    np.random.seed(0)


@pytest.fixture(scope="session")
def all_types_file(tmp_path_factory):
    """(path, in-memory NWBFile) of a DANDI-named file holding one of each ndx-neurrator type."""
    folder = tmp_path_factory.mktemp("dandiset") / "sub-mouse1"
    folder.mkdir()
    path = folder / "sub-mouse1_ses-session1_desc-neurrator.nwb"
    nwbfile = mock_neurrator_nwbfile(subject_id="mouse1", session_id="session1")
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    return path, nwbfile
