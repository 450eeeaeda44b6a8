"""Preflight: the repeat split, every model and the session's outline are checked before any data is read."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurrator.config import NarrateConfig
from neurrator.errors import NeurratorError
from neurrator.models.loading import load_models, narrator_dim, needs_reference
from neurrator.io.folders import CreatedDirs
from neurrator.data.outline import outline_nwbfile
from neurrator.data.splits import check_split, split_problem

# -- the split ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, val, test", [(3, 1, 1), (5, 2, 2), (4, 1, 2), (12, 2, 2), (20, 2, 16)])
def test_split_that_leaves_a_training_repeat_passes(n, val, test):
    assert split_problem(n, n_val=val, n_test=test) is None
    check_split(n, n_val=val, n_test=test, source="ses.nwb")


def test_simulate_repeats_4_with_the_default_split_names_the_real_options():
    """`simulate --repeats 4` then `narrate`: 2 + 2 held out leaves no training repeat."""
    with pytest.raises(NeurratorError) as err:
        check_split(4, n_val=2, n_test=2, source="sim.nwb")
    msg = str(err.value)
    assert msg.startswith("sim.nwb: 4 repeats cannot give 2 validation + 2 test repeats")
    assert "--val-repeats 1 --test-repeats 1" in msg and "at most 3" in msg
    assert "n_val" not in msg and "n_test" not in msg and "\n" not in msg


def test_too_few_repeats_for_any_split():
    assert "at least 3 repeats" in split_problem(2, n_val=1, n_test=1)
    assert "at least 3 repeats" in split_problem(1, n_val=1, n_test=1)
    assert "--val-repeats and --test-repeats must be at least 1" == split_problem(9, n_val=0, n_test=1)


def test_split_problem_agrees_with_split_repeats():
    """The preflight answer is exactly whether splits.split_repeats can split (every small case)."""
    from neurrator.data.splits import split_repeats

    for n in range(1, 8):
        repeat = np.repeat(np.arange(n), 3)
        for val in range(1, 5):
            for test in range(1, 5):
                problem = split_problem(n, n_val=val, n_test=test)
                try:
                    split = split_repeats(repeat, n_val=val, n_test=test)
                except ValueError:
                    assert problem is not None, (n, val, test)
                    continue
                assert problem is None, (n, val, test, problem)
                assert len(split.train) > 0


# -- the outline -------------------------------------------------------------------------------------


def _outline(path: Path):
    from neurrator.io.sources import open_source

    with open_source(str(path)) as nwbfile:
        return outline_nwbfile(nwbfile, stimulus="natural_movie_one", label=path.name)


def test_outline_of_a_simulated_session(small_sim):
    """small_sim: 5 repeats, captions, spike times at 1/30000 s, subject and session ids sim0."""
    outline = _outline(small_sim)
    assert outline.n_repeats == 5
    assert outline.has_captions is True
    assert outline.units_resolution == pytest.approx(1 / 30000)
    assert outline.presentation_table == "intervals/natural_movie_one_presentations"
    assert (outline.subject_id, outline.session_id) == ("sim0", "sim0")


def test_outline_without_captions_and_resolution(small_sim, tmp_path):
    bare = shutil.copy(small_sim, tmp_path / "bare.nwb")
    with h5py.File(bare, "r+") as f:
        del f["processing/stimulus/natural_movie_one_captions"]
        f["units/spike_times"].attrs["resolution"] = -1.0  # pynwb's "unknown"
    outline = _outline(Path(bare))
    assert outline.has_captions is False and outline.units_resolution is None and outline.n_repeats == 5


def test_outline_names_the_tables_when_the_stimulus_is_missing(small_sim):
    from neurrator.io.sources import open_source

    with open_source(str(small_sim)) as nwbfile, pytest.raises(NeurratorError, match="natural_movie_one"):
        outline_nwbfile(nwbfile, stimulus="natural_movie_three", label=small_sim.name)


# -- the models --------------------------------------------------------------------------------------


@pytest.fixture
def no_llava(monkeypatch):
    """Fail the test if the LLaVA loader is ever called (the refusal must come before loading)."""
    from neurrator.models import narrators

    def refuse(**kwargs):
        raise AssertionError("the llava narrator was loaded")

    monkeypatch.setitem(narrators.NARRATORS, "llava", refuse)


def test_default_config_without_captions_is_refused_before_loading_llava(no_llava):
    """Issue 14.3: tiny backbone + retrieval + llava reference narrator cannot work without captions."""
    config = NarrateConfig(device="cpu")
    assert needs_reference(config, has_captions=False)
    with pytest.raises(NeurratorError) as err:
        load_models(config, device="cpu", needs_reference=True)
    msg = str(err.value)
    assert msg.startswith("--reference-narrator llava: the session has no captions")
    assert "1024-d" in msg and "64-d" in msg and "--reference-narrator tiny with --backbone tiny" in msg
    with pytest.raises(NeurratorError, match="may have no captions"):
        load_models(config, device="cpu", needs_reference=None)


def test_progress_false_loads_every_model_without_a_bar(no_llava, capfd, monkeypatch):
    """Issue 31.4: from Python, progress=False silences transformers' "Loading weights" bar too (the sentence
    embedder loads through from_pretrained); progress=True leaves it drawn."""
    from transformers.utils import logging as tf_logging

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    tf_logging.enable_progress_bar()
    load_models(NarrateConfig(device="cpu", progress=False), device="cpu", needs_reference=False)
    quiet = capfd.readouterr().err
    assert "Loading weights" not in quiet and "%|" not in quiet, quiet
    assert tf_logging.is_progress_bar_enabled()  # given back afterwards
    load_models(NarrateConfig(device="cpu", progress=True), device="cpu", needs_reference=False)
    assert "Loading weights" in capfd.readouterr().err


def test_default_config_with_captions_loads_no_narrator(no_llava):
    models = load_models(NarrateConfig(device="cpu"), device="cpu", needs_reference=False)
    assert models.backbone.spec.dim == 64
    assert models.generator is None and models.reference is None and models.trained is None
    assert models.embedder is not None


def test_tiny_reference_narrator_for_retrieval_without_captions(no_llava):
    models = load_models(NarrateConfig(device="cpu", reference_narrator="tiny"), device="cpu", needs_reference=True)
    assert models.generator is None
    assert models.reference.dim == models.backbone.spec.dim == 64


def test_generative_narrator_writes_its_own_references(no_llava):
    models = load_models(NarrateConfig(device="cpu", narrator="tiny"), device="cpu", needs_reference=True)
    assert models.reference is models.generator and models.generator.dim == 64
    models = load_models(NarrateConfig(device="cpu", narrator="tiny"), device="cpu", needs_reference=False)
    assert models.reference is None and models.generator is not None


def test_llava_narrator_on_the_tiny_backbone_is_refused_before_loading(no_llava):
    with pytest.raises(NeurratorError, match=r"^--narrator llava: it reads 1024-d patch tokens but --backbone tiny"):
        load_models(NarrateConfig(device="cpu", narrator="llava"), device="cpu", needs_reference=False)


def test_retrieval_cannot_be_the_reference_narrator():
    with pytest.raises(NeurratorError, match="must be generative"):
        load_models(NarrateConfig(device="cpu", reference_narrator="retrieval"), device="cpu", needs_reference=True)


def test_narrator_width_from_a_checkpoint_folder(tmp_path):
    folder = tmp_path / "llava-small"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"vision_config": {"hidden_size": 768}}))
    assert narrator_dim(f"llava:{folder}") == 768
    (folder / "config.json").write_text(json.dumps({"vision_config": {}, "vision_feature_layer": [-2, -5]}))
    assert narrator_dim(f"llava:{folder}") == 2048  # two CLIP-L layers concatenated
    assert narrator_dim("llava") == 1024 and narrator_dim("tiny") == 64 and narrator_dim("retrieval") is None


def test_a_matching_width_goes_on_to_the_loader_and_its_error(tmp_path):
    """A llava folder whose tower is 64 wide passes the width check; the loader then reports the weights."""
    folder = tmp_path / "llava-tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"vision_config": {"hidden_size": 64}}))
    with pytest.raises(NeurratorError) as err:
        load_models(NarrateConfig(device="cpu", reference_narrator=f"llava:{folder}"), device="cpu",
                    needs_reference=True)
    assert "reads" not in str(err.value) and str(folder) in str(err.value)


def test_missing_encoder_checkpoint(tmp_path):
    missing = tmp_path / "nothere"
    with pytest.raises(NeurratorError, match="encoder not found") as err:
        load_models(NarrateConfig(device="cpu", encoder=str(missing)), device="cpu", needs_reference=False)
    assert str(err.value).startswith(str(missing)) and "neurrator NWB file" in str(err.value)


def test_encoder_trained_on_other_targets_is_refused(monkeypatch, tmp_path):
    from neurrator.models import loading as preflight
    from neurrator.models.backbones import TargetSpec

    spec = TargetSpec("llava:llava-hf/llava-1.5-7b-hf", -2, 576, 1024, "pad-to-square(mean)|resize=336")
    monkeypatch.setattr(preflight, "load_encoder", lambda path, device: types.SimpleNamespace(target_spec=spec))
    with pytest.raises(NeurratorError) as err:
        load_models(NarrateConfig(device="cpu", encoder=str(tmp_path)), device="cpu", needs_reference=False)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path)) and "576 x 1024" in msg
    assert "--backbone llava:llava-hf/llava-1.5-7b-hf --preprocessing pad" in msg


def test_encoder_targets_must_match_layer_and_random_weights():
    from neurrator.models.backbones import TargetSpec
    from neurrator.models.loading import check_encoder_targets

    run = TargetSpec("tiny", -2, 64, 64, "pad|resize=112", "random:seed=1")
    check_encoder_targets(run, run, encoder="ckpt", preprocessing="pad")  # the same targets pass
    with pytest.raises(NeurratorError, match=r"^ckpt: encoder was trained on hidden state -1 of tiny"):
        check_encoder_targets(TargetSpec("tiny", -1, 64, 64, "pad|resize=112", "random:seed=1"), run, encoder="ckpt",
                              preprocessing="pad")
    with pytest.raises(NeurratorError, match=r"^ckpt: .*random:seed=0.*random:seed=1.*pass --seed 0"):
        check_encoder_targets(TargetSpec("tiny", -2, 64, 64, "pad|resize=112", "random:seed=0"), run, encoder="ckpt",
                              preprocessing="pad")
    with pytest.raises(NeurratorError, match=r"^ckpt: the encoder records no target spec"):
        check_encoder_targets(None, run, encoder="ckpt", preprocessing="pad")
    # real weights are named by where they were found: another folder holding the same model is not refused
    llava = TargetSpec("llava:x", -2, 576, 1024, "pad", "/home/a/models/llava")
    check_encoder_targets(llava, TargetSpec("llava:x", -2, 576, 1024, "pad", "/scratch/b/llava"), encoder="ckpt",
                          preprocessing="pad")


def test_encoder_must_know_the_sessions_units_and_frames():
    from neurrator.models.loading import check_encoder_session

    enc = types.SimpleNamespace(unit_ids=np.arange(10, 20), holdout_frames=np.array([0, 5, 299]))
    check_encoder_session(enc, np.array([10, 12, 19]), 300, encoder="ckpt")  # a subset of its units is fine
    with pytest.raises(NeurratorError, match=r"^ckpt: none of the session's 3 units are among the encoder's 10 "
                                             r"training units \(unit ids 1, 2, 3\)"):
        check_encoder_session(enc, np.array([1, 2, 3]), 300, encoder="ckpt")
    with pytest.raises(NeurratorError, match=r"^ckpt: 7 of the session's 9 units are not among .*ids 1, 2, 3, 4, 5, "
                                             r"\.\.\.\)"):
        check_encoder_session(enc, np.array([10, 11, 1, 2, 3, 4, 5, 6, 7]), 300, encoder="ckpt")
    with pytest.raises(NeurratorError, match=r"held-out frames go up to 299, but the movie has 120 frames"):
        check_encoder_session(enc, np.array([10]), 120, encoder="ckpt")


# -- output folders ----------------------------------------------------------------------------------


def test_created_folders_are_removed_and_nothing_else(tmp_path):
    existing = tmp_path / "derived"
    (existing / "sub-1").mkdir(parents=True)
    (existing / "sub-1" / "old.nwb").write_text("keep")
    (existing / "empty-before").mkdir()
    dirs = CreatedDirs()
    dirs.watch(existing)
    dirs.watch(tmp_path / "new" / "deeper" / "out")
    (existing / "sub-2").mkdir()  # created by the run, left empty
    (existing / "sub-3").mkdir()  # created by the run, holds a file
    (existing / "sub-3" / "partial.txt").write_text("x")
    (tmp_path / "new" / "deeper" / "out" / "sub-9").mkdir(parents=True)
    removed = dirs.remove_empty()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "derived/sub-2", "new", "new/deeper", "new/deeper/out", "new/deeper/out/sub-9"]
    assert (existing / "sub-1" / "old.nwb").read_text() == "keep"
    assert (existing / "empty-before").is_dir() and (existing / "sub-3" / "partial.txt").is_file()
    assert not (tmp_path / "new").exists()
