"""Small NWB files built in code for the tests (import with `from _nwbfiles import ...`)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurrator.data.session import load_session
from neurrator.errors import NeurratorError


def make_nwb(
    path: Path,
    *,
    spikes: list | None = ([0.1, 0.5, 1.2], [0.3, 0.9]),
    pres: tuple | None = None,
    template: np.ndarray | None = None,
    stimulus: str = "natural_movie_one",
    extra_table: str | None = None,
) -> Path:
    """A minimal NWB file with optional units, presentation table and stimulus template."""
    from hdmf.common import VectorData
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.image import ImageSeries

    nwb = NWBFile(session_description="test", identifier="t1", session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
                  session_id="s1")
    if spikes is not None:
        for i, st in enumerate(spikes):
            nwb.add_unit(id=100 + i, spike_times=np.asarray(st, dtype=np.float64))
    if pres is None:
        n = 10
        start = np.arange(2 * n) / 30.0
        pres = (start, start + 1 / 30, np.tile(np.arange(n), 2))
    if pres is not False:
        start, stop, frame = (np.asarray(x) for x in pres)
        nwb.add_time_intervals(TimeIntervals(
            name=f"{stimulus}_presentations", description="movie",
            id=np.arange(start.size),
            columns=[VectorData(name="start_time", description="s", data=start.astype(float)),
                     VectorData(name="stop_time", description="s", data=stop.astype(float)),
                     VectorData(name="frame", description="f", data=frame.astype(float))],
        ))
    if extra_table:
        t = TimeIntervals(name=extra_table, description="x")
        t.add_interval(start_time=0.0, stop_time=1.0)
        nwb.add_time_intervals(t)
    if template is not None:
        nwb.add_stimulus_template(ImageSeries(name=stimulus, data=template, unit="NA", format="raw", rate=30.0))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path




SPIKES = "/units/spike_times"


def small_nwb(path: Path) -> Path:
    """Two units with spikes and a 20-row natural_movie_one presentation table."""
    from hdmf.common import VectorData
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals

    nwb = NWBFile(session_description="t", identifier="t", session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    nwb.add_unit(id=1, spike_times=np.array([0.1, 0.2, 0.5]))
    nwb.add_unit(id=2, spike_times=np.array([0.3, 0.4]))
    start = np.arange(20) / 30.0
    nwb.add_time_intervals(TimeIntervals(
        name="natural_movie_one_presentations", description="movie", id=np.arange(20),
        columns=[VectorData(name="start_time", description="s", data=start),
                 VectorData(name="stop_time", description="s", data=start + 1 / 30),
                 VectorData(name="frame", description="f", data=np.tile(np.arange(10), 2).astype(float))]))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def replace_dataset(path: Path, name: str, make) -> None:
    """Delete dataset ``name`` and let ``make(file, name)`` put something else there (attributes kept)."""
    with h5py.File(path, "r+") as f:
        attrs = dict(f[name].attrs)
        del f[name]
        make(f, name)
        obj = f.get(name)
        if obj is not None:
            for k, v in attrs.items():
                obj.attrs[k] = v


def refused(path: Path, *words: str) -> str:
    with pytest.raises(NeurratorError) as ei:
        load_session(path, fetch_movie=False)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:"), msg
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


