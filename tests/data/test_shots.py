"""Shot detection from frame differences: synthetic cuts with motion inside shots, and real footage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurrator.data.shots import detect_shots, frame_differences
from neurrator.simulate import make_movie

BIKES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "video" / "bikes.mp4"


def test_synthetic_cuts_between_moving_shots():
    rng = np.random.default_rng(0)
    F, H, W = 120, 32, 48
    cuts = [0, 25, 60, 61, 90]  # a one-frame shot at 60
    frames = np.empty((F, H, W, 3), np.uint8)
    for s, start in enumerate(cuts):
        stop = cuts[s + 1] if s + 1 < len(cuts) else F
        bg = rng.integers(20, 230)
        for t in range(start, stop):  # a bright square moving 1 px per frame, plus sensor noise
            img = np.full((H, W), bg, np.float64) + rng.normal(0, 2, size=(H, W))
            x = (t - start) % (W - 8)
            img[10:18, x:x + 8] = 255 - bg
            frames[t] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    shots = detect_shots(frames)
    assert shots.tolist() == np.repeat(np.arange(5), np.diff(cuts + [F])).tolist()


def test_static_movie_and_single_frame():
    still = np.full((10, 8, 8), 7, np.uint8)
    assert detect_shots(still).tolist() == [0] * 10
    assert detect_shots(still[:1]).tolist() == [0]
    assert frame_differences(still[:1]).shape == (0,)
    with pytest.raises(ValueError, match="frames must be"):
        frame_differences(np.zeros((3, 4)))


def test_every_scene_change_of_the_simulated_movie_is_a_cut():
    """The simulator's scenes can differ only in a small object over the same background (a cut of ~5
    grey levels, inside-scene motion ~2): the local baseline finds them all."""
    for seed in (0, 1):
        m = make_movie(n_frames=900, seed=seed)
        assert np.array_equal(np.diff(detect_shots(m.frames)) > 0, np.diff(m.scene) > 0)


def test_real_footage_with_cuts_and_fast_motion():
    """bikes.mp4 (250 frames, 640 x 272, 25 fps): cuts before frames 30, 76, 137, 187 and 242 (checked by
    eye); frames 66-75 and 96-105 are fast motion inside a shot and must not be cut."""
    av = pytest.importorskip("av", reason="PyAV is not installed: the real-footage check needs it to decode mp4")
    if not BIKES.is_file():
        pytest.skip(f"{BIKES} is not there (shared fixtures not checked out)")
    with av.open(str(BIKES)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    shots = detect_shots(frames)
    assert (np.flatnonzero(np.diff(shots)) + 1).tolist() == [30, 76, 137, 187, 242]
