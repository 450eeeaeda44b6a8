"""Sessions without caption vocabulary (issue 27.1): every analysis that needs no concept names runs; only
concept tuning and enrichment are skipped, with the reason in the file and the report; unnamed concepts get
concept cards; no empty table is written and DANDI's inspector finds no ERROR or CRITICAL message."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from _helpers import FAST

from neurrator.config import NarrateConfig
from neurrator.pipeline import narrate_session

pytestmark = pytest.mark.slow

#: FAST, with the analyses' resampling cut down (the point here is which analyses run, not their power).
CHEAP = dict(FAST, null_pools=4, scaling_draws=4, eval_windows=60)


def _run(source, out):
    config = NarrateConfig.from_options(cache_dir=str(out.parent / "cache"), reference_narrator="tiny", **CHEAP)
    return narrate_session(source, out=out, config=config)


@pytest.fixture(scope="module")
def unnamed_run(small_sim, tmp_path_factory):
    """The simulated session whose caption terms occur in no caption: the SAE can name no concept."""
    d = tmp_path_factory.mktemp("unnamed")
    source = shutil.copy(small_sim, d / "sub-sim0_ses-unnamed.nwb")
    with h5py.File(source, "r+") as f:
        terms = f["processing/stimulus/natural_movie_one_caption_terms/term"]
        terms[...] = ["zzqx"] * terms.shape[0]
    return _run(source, d / "out" / "unnamed.nwb")


@pytest.fixture(scope="module")
def captionless_run(small_sim, tmp_path_factory):
    """The simulated session without its captions table, as real sessions come: the offline tiny narrator
    writes the references and names the concepts."""
    d = tmp_path_factory.mktemp("captionless")
    source = shutil.copy(small_sim, d / "sub-sim0_ses-bare.nwb")
    with h5py.File(source, "r+") as f:
        del f["processing/stimulus/natural_movie_one_captions"]
        del f["processing/stimulus/natural_movie_one_caption_terms"]
    return _run(source, d / "out" / "bare.nwb")


def _module(path):
    with h5py.File(path, "r") as f:
        return {name: dict(f["processing/neurrator"][name].attrs) for name in f["processing/neurrator"]}


def test_unnamed_concepts_skip_only_tuning_and_enrichment(unnamed_run):
    assert unnamed_run.neurration is not None
    assert unnamed_run.neurration.concept_names == []
    module = _module(unnamed_run.output)
    # (group separation needs two regions of min_units units: this small session has one)
    for present in ("unit_neurration", "scaling", "concept_cards", "skipped_analyses"):
        assert present in module, present
    for absent in ("concept_tuning", "group_comparison"):
        assert absent not in module, absent
    assert set(unnamed_run.neurration.skipped) == {"concept_tuning", "concept_enrichment"}
    with h5py.File(unnamed_run.output, "r") as f:
        un = f["processing/neurrator/unit_neurration"]
        assert len(un["reliability"]) == unnamed_run.n_units
        # leave-one-out and the drive probe ran on units of the regions large enough
        assert np.isfinite(un["loo_delta"][:]).any() and np.isfinite(un["drive_shift"][:]).any()
        reasons = [r.decode() if isinstance(r, bytes) else r
                   for r in f["processing/neurrator/skipped_analyses/reason"][:]]
        assert all("named no concept" in r for r in reasons)


def test_unnamed_concepts_get_cards_with_thumbnails_in_the_file_and_report(unnamed_run):
    from neurrator.report.data import read_derived

    data = read_derived(unnamed_run.output)
    cards = data.concept_cards
    assert cards is not None and len(cards) >= 1
    assert all(int(f) in data.thumbnails for frames in cards["top_frames"] for f in frames)
    assert "concept_tuning" in data.skipped
    html = unnamed_run.report.read_text()
    assert 'id="concept-cards"' in html and html.count("concept-card\"") == len(cards)
    assert "named no concept" in html


@pytest.mark.parametrize("which", ["unnamed_run", "captionless_run"])
def test_no_empty_dataset_and_nwbinspector_finds_no_error(which, request):
    from nwbinspector import Importance, inspect_nwbfile, load_config

    run = request.getfixturevalue(which)
    empty = []
    with h5py.File(run.output, "r") as f:
        f.visititems(lambda name, obj: empty.append(name) if isinstance(obj, h5py.Dataset) and 0 in obj.shape
                     else None)
    assert empty == []
    messages = list(inspect_nwbfile(nwbfile_path=str(run.output), config=load_config("dandi")))
    bad = [m for m in messages if m.importance in (Importance.ERROR, Importance.CRITICAL)]
    assert bad == [], [m.message[:300] for m in bad]


def test_captionless_session_runs_every_analysis(captionless_run):
    module = _module(captionless_run.output)
    for present in ("unit_neurration", "scaling"):
        assert present in module, present
