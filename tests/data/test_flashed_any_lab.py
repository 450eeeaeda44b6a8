"""Flashed images from any lab (issue 27.2): any presentation table name, the kind from the table's layout,
the response window checked against the inter-onset interval, one showing per image still analysed, and no
within_1s for independent images."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from _helpers import FAST, run_cli, sha256

from neurrator.config import NarrateConfig
from neurrator.pipeline import narrate_session


@pytest.fixture(scope="module")
def flashes(tmp_path_factory):
    """A simulated natural_scenes block of 60 images shown ONCE each, renamed as a lab would name it:
    intervals/flashes, stimulus/templates/flashes."""
    from neurrator.simulate import write_simulated_session

    path = tmp_path_factory.mktemp("flashes") / "sub-sim0_ses-flashes.nwb"
    write_simulated_session(path, natural_scenes=60, n_repeats=1, n_units=60, seed=0, n_pulses=10)
    with h5py.File(path, "r+") as f:
        f.move("intervals/natural_scenes_presentations", "intervals/flashes")
        f.move("stimulus/templates/natural_scenes", "stimulus/templates/flashes")
        for name in list(f["processing/stimulus"]):
            f.move(f"processing/stimulus/{name}", f"processing/stimulus/{name.replace('natural_scenes', 'flashes')}")
    return path


@pytest.mark.slow
def test_a_window_longer_than_the_inter_onset_interval_is_refused_in_one_line(flashes, tmp_path):
    before = sha256(flashes)
    out = tmp_path / "out"
    proc = run_cli("narrate", str(flashes), "--out", str(out), "--stimulus", "flashes", "--response-window", "0.3",
                   "--device", "cpu", "--quiet")
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert "--allow-overlap" in err and "--response-window" in err and "0.05 to 0.35 s" in err, err
    assert sha256(flashes) == before and not out.exists()


@pytest.mark.slow
def test_stimulus_kind_overrides_the_layout(flashes, tmp_path):
    """Forced to a movie, the table's blank rows (-1) are refused in one line that names the kind to use."""
    proc = run_cli("narrate", str(flashes), "--out", str(tmp_path / "out"), "--stimulus", "flashes",
                   "--stimulus-kind", "movie", "--device", "cpu", "--quiet")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "negative frame indices (-1)" in proc.stderr and "--stimulus-kind flashed_images" in proc.stderr


@pytest.mark.slow
def test_any_table_name_one_showing_per_image_gets_the_analyses_without_within_1s(flashes, tmp_path):
    config = NarrateConfig.from_options(cache_dir=str(tmp_path / "cache"), stimulus="flashes", **FAST)
    result = narrate_session(flashes, out=tmp_path / "out.nwb", config=config)
    assert config.stimulus_kind is None  # the kind came from the table's layout
    assert all("within_1s" not in r.metrics for r in result.subsets)
    assert all("within_1s" not in m for m in result.baselines.values())
    assert "independent items" in result.subsets[0].rank_null
    neur = result.neurration
    assert neur is not None and neur.scaling
    # reliability split over images (odd vs even): defined for every unit, some units pass the gate
    assert np.isfinite(neur.units["reliability"]).all() and np.asarray(neur.units["visually_driven"]).any()
    with h5py.File(result.output, "r") as f:
        metrics = {m.decode() if isinstance(m, bytes) else m for m in f["processing/neurrator/decoding_fidelity/metric"][:]}
    assert not any("within_1s" in m for m in metrics) and "top1" in metrics
    assert "within_1s" not in result.summary()
    from nwbinspector import Importance, inspect_nwbfile, load_config

    messages = list(inspect_nwbfile(nwbfile_path=str(result.output), config=load_config("dandi")))
    bad = [m for m in messages if m.importance in (Importance.ERROR, Importance.CRITICAL)]
    assert bad == [], [m.message[:300] for m in bad]
