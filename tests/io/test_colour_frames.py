"""Colour images keep their colour from the file's template to the backbone and the thumbnails (issue 27.2)."""

from __future__ import annotations

import numpy as np
from _nwbfiles import make_nwb

from neurrator.data.session import load_session
from neurrator.io.movie_files import to_gray_uint8, to_uint8
from neurrator.nwb.results import thumbnail


def _rgb(n: int = 10, size: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    frames[0, ..., 0], frames[0, ..., 1:] = 255, 0  # frame 0 pure red: its grey would be 76
    return frames


def test_a_colour_template_is_read_in_colour(tmp_path):
    rgb = _rgb()
    session = load_session(make_nwb(tmp_path / "rgb.nwb", template=rgb), fetch_movie=False)
    assert session.frames.shape == (10, 8, 8, 3)
    np.testing.assert_array_equal(session.frames, rgb)


def test_grey_stays_grey_and_alpha_is_dropped():
    grey = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.testing.assert_array_equal(to_uint8(grey, label="x"), grey)
    rgba = np.concatenate([_rgb(2, 4), np.full((2, 4, 4, 1), 9, np.uint8)], axis=-1)
    np.testing.assert_array_equal(to_uint8(rgba, label="x"), rgba[..., :3])
    assert to_gray_uint8(rgba, label="x")[0, 0, 0] == 76  # the luma of pure red


def test_colour_reaches_the_backbone_and_the_thumbnails():
    from neurrator.models.backbones import load_backbone

    rgb = _rgb(2, 16)
    backbone = load_backbone("tiny", device="cpu")
    colour, grey = backbone.embed(rgb), backbone.embed(to_gray_uint8(rgb, label="x"))
    assert colour.shape == grey.shape and not np.allclose(colour, grey)
    small = thumbnail(rgb[0], height=8)
    assert small.shape == (8, 8, 3) and small[0, 0].tolist() == [255, 0, 0]
