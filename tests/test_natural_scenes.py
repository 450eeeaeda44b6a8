"""Allen natural_scenes (flashed images) through `neurrator narrate`: onset-aligned windows, whole images
held out of training (the unseen-image test), narration of the unseen images."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import FAST, assert_one_line_error, run_cli

from neurrator.config import NarrateConfig
from neurrator.pipeline import narrate_session
from neurrator.simulate import write_simulated_session


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    src = root / "scenes.nwb"
    write_simulated_session(src, natural_scenes=24, n_repeats=8, n_units=60, seed=0, n_pulses=10)
    config = NarrateConfig.from_options(stimulus="natural_scenes", n_val_images=3, n_test_images=5,
                                        cache_dir=str(root / "cache"), **FAST)
    return src, config, narrate_session(src, out=root / "scenes-derived.nwb", config=config)


def test_unseen_images_are_narrated_and_never_trained_on(scenes_run):
    from pynwb import NWBHDF5IO

    from neurrator.binning import split_by_image
    from neurrator.session import load_session

    src, config, result = scenes_run
    session = load_session(src, stimulus="natural_scenes")
    assert (session.presentations.frame >= 0).all()  # blanks dropped
    split = split_by_image(session.presentations.frame, n_val_images=3, n_test_images=5, seed=config.seed)
    test_images = set(session.presentations.frame[split.test].tolist())
    train_images = set(session.presentations.frame[split.train].tolist())
    assert len(test_images) == 5 and not test_images & train_images
    with NWBHDF5IO(str(result.output), "r") as io:
        m = io.read().processing["neurrator"]
        narrated = np.asarray(m["narrations"]["narrations_all"]["frame"].data[:])
        predicted = np.asarray(m["patch_predictions"].frame[:])
        texts = list(m["narrations"]["narrations_all"]["text"].data[:])
    # unseen images only, each once (its first showing): 3 narrations per subset in the FAST settings
    assert set(narrated.tolist()) <= test_images and len(set(narrated.tolist())) == len(narrated) == 3
    assert set(predicted.tolist()) <= test_images and all(texts)
    # the retrieval narrator's bank holds training images only: the unseen images' own captions are not in it
    own = {session.captions[f] for f in test_images}
    assert not own & set(texts)


def test_natural_scenes_decoding_beats_the_shuffled_baseline(scenes_run):
    _, _, result = scenes_run
    top = result.subsets[0]
    assert top.subset.label == "all"
    cos = top.metrics["centred_patch_cosine"]
    assert cos.lo > cos.chance, cos
    assert result.neurration is None  # the single-unit analyses are not defined for flashed images yet


def test_too_many_held_out_images_is_one_line(scenes_run, tmp_path):
    src, _, _ = scenes_run
    proc = run_cli("narrate", str(src), "--out", str(tmp_path / "x.nwb"), "--stimulus", "natural_scenes",
                   "--val-images", "10", "--test-images", "14", "--epochs", "1", "--device", "cpu", "--quiet")
    assert_one_line_error(proc, "scenes.nwb", "cannot hold out 10 + 14 of 24 images", "--test-images")
    assert not (tmp_path / "x.nwb").exists()
