"""Video files as --movie: real footage (bikes.mp4) decoded through PyAV, rate and length checked against the
presentations, the decompression limit applied before and during decoding, one-line errors naming the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from neurrator.errors import NeurratorError

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'neurrator[video]')")

from neurrator.io import video_files  # noqa: E402
from neurrator.io.movie_files import load_movie_file, read_movie_file  # noqa: E402

BIKES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "video" / "bikes.mp4"


@pytest.fixture
def bikes() -> Path:
    if not BIKES.is_file():
        pytest.skip(f"{BIKES} is not there (shared fixtures not checked out)")
    return BIKES


def _write_video(path: Path, n: int, *, codec: str, rate: int = 10) -> np.ndarray:
    """n frames of 16 x 32 with a known grey level each (i * 30), encoded with ``codec``."""
    levels = np.arange(n) * 30
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        for v in levels:
            for pk in s.encode(av.VideoFrame.from_ndarray(np.full((16, 32, 3), v, np.uint8), format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return levels


@pytest.mark.slow
def test_bikes_mp4_decodes_every_frame_at_its_rate(bikes):
    video = video_files.read_video(bikes)
    assert video.frames.shape == (250, 272, 640, 3) and video.frames.dtype == np.uint8
    assert video.fps == 25.0
    # real colour footage: the channels differ
    assert np.abs(video.frames[..., 0].astype(int) - video.frames[..., 2]).mean() > 1.0
    frames, fps = read_movie_file(bikes)
    assert frames.shape[:3] == (250, 272, 640) and fps == 25.0
    # distinct frames, and consecutive frames of one shot alike (it is a movie, not noise)
    g = frames.reshape(250, -1).astype(np.float32)
    step = np.abs(np.diff(g, axis=0)).mean(axis=1)
    assert np.median(step) < 10 and step.max() > 3 * np.median(step)


@pytest.mark.parametrize(("suffix", "codec"), [(".avi", "mpeg4"), (".mov", "mpeg4"), (".mkv", "ffv1")])
def test_other_containers_round_trip(tmp_path, suffix, codec):
    levels = _write_video(tmp_path / f"m{suffix}", 7, codec=codec)
    frames = load_movie_file(tmp_path / f"m{suffix}")
    assert frames.shape[0] == 7
    np.testing.assert_allclose(frames.reshape(7, -1).mean(axis=1), levels, atol=3)


def test_declared_size_over_the_limit_is_refused_before_decoding(bikes, monkeypatch):
    monkeypatch.setenv("NEURRATOR_MAX_ARRAY_BYTES", str(10 * 2**20))  # bikes declares 250 x 272 x 640 x 3 = 125 MiB
    decoded = []
    monkeypatch.setattr(av.container.InputContainer, "decode", lambda *a, **k: decoded.append(1) or iter(()))
    with pytest.raises(NeurratorError) as err:
        load_movie_file(bikes)
    assert str(err.value).startswith(str(bikes)) and "declares shape (250, 272, 640, 3)" in str(err.value)
    assert decoded == []  # refused on the header alone


def test_under_declared_video_is_stopped_while_decoding(tmp_path, monkeypatch):
    _write_video(tmp_path / "m.mkv", 7, codec="ffv1")
    monkeypatch.setattr(video_files, "_declared_frames", lambda container, stream: 1)  # a lying header
    with pytest.raises(NeurratorError, match=r"the 4 first decoded frames declares shape \(6144,\)"):
        video_files.read_video(tmp_path / "m.mkv", limit=3 * 16 * 32 * 3)


def test_not_a_video_and_missing_pyav_are_one_line_errors(tmp_path, monkeypatch):
    bad = tmp_path / "m.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(NeurratorError) as err:
        load_movie_file(bad)
    assert str(err.value).startswith(str(bad)) and "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(NeurratorError, match=r"needs PyAV.*pip install 'neurrator\[video\]'") as err:
        load_movie_file(bad)
    assert isinstance(err.value.__cause__, ImportError)


def _session_file(tmp_path: Path, n_frames: int, rate: float, repeats: int = 2) -> Path:
    from _nwbfiles import make_nwb

    start = np.tile(np.arange(n_frames), repeats) / rate + np.repeat(20.0 * np.arange(repeats), n_frames)
    return make_nwb(tmp_path / "s.nwb", spikes=[[0.5, 1.0, 21.0]], pres=(start, start + 1 / rate,
                                                                          np.tile(np.arange(n_frames), repeats)))


@pytest.mark.slow
def test_session_reads_bikes_and_checks_rate_and_length(bikes, tmp_path):
    from neurrator.data.session import load_session

    s = load_session(_session_file(tmp_path, 250, 25.0), movie=bikes, fetch_movie=False, quality_filter=False)
    assert s.frames.shape[0] == 250 and s.frame_rate == 25.0 and s.frames_source == str(bikes)
    with pytest.raises(NeurratorError, match=r"declares 25 frames/s but the presentations show 30 frames/s"):
        load_session(_session_file(tmp_path, 250, 30.0), movie=bikes, fetch_movie=False, quality_filter=False)
    with pytest.raises(NeurratorError, match=r"frame index 299, beyond the movie's 250 frames"):
        load_session(_session_file(tmp_path, 300, 25.0), movie=bikes, fetch_movie=False, quality_filter=False)


@pytest.mark.slow
def test_narrate_cli_refuses_a_wrong_video_in_one_line(bikes, tmp_path):
    from _helpers import assert_one_line_error, run_cli

    src = _session_file(tmp_path, 250, 30.0, repeats=5)
    proc = run_cli("narrate", str(src), "--out", str(tmp_path / "out"), "--movie", str(bikes), "--reference-narrator", "tiny")
    assert_one_line_error(proc, "bikes.mp4", "25 frames/s")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.nwb"))
