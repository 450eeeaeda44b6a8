"""Movie frames: user files of each supported format, the registry fetched (once, verified) from a local server."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
from standin import DandiStandin

from neurrator.io import movies
from neurrator.errors import NeurratorError
from neurrator.io.movies import (
    MovieEntry,
    check_frames,
    fetch_known_movie,
    load_movie_file,
    to_gray_uint8,
)

FRAMES = np.random.default_rng(0).integers(0, 256, size=(5, 6, 8), dtype=np.uint8)


def test_npy_npz_h5(tmp_path):
    np.save(tmp_path / "m.npy", FRAMES)
    np.savez(tmp_path / "m.npz", frames=FRAMES, other=np.zeros(2))
    np.savez(tmp_path / "one.npz", FRAMES)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["data"] = FRAMES
    for name in ("m.npy", "m.npz", "one.npz", "m.h5"):
        np.testing.assert_array_equal(load_movie_file(tmp_path / name), FRAMES)


def test_tif_stack_and_png_folder(tmp_path):
    from PIL import Image

    pages = [Image.fromarray(f) for f in FRAMES]
    pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
    np.testing.assert_array_equal(load_movie_file(tmp_path / "m.tif"), FRAMES)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, f in enumerate(FRAMES):
        Image.fromarray(f).save(folder / f"frame_{i:04d}.png")
    np.testing.assert_array_equal(load_movie_file(folder), FRAMES)


def test_colour_and_float_frames_become_gray_uint8():
    rgb = np.zeros((2, 3, 4, 3), np.uint8)
    rgb[..., 1] = 200
    g = to_gray_uint8(rgb, label="x")
    assert g.dtype == np.uint8 and g.shape == (2, 3, 4) and int(g[0, 0, 0]) == round(0.587 * 200)
    np.testing.assert_array_equal(to_gray_uint8(np.full((1, 2, 2), 0.5), label="x"), np.full((1, 2, 2), 128))
    with pytest.raises(NeurratorError, match="shape"):
        to_gray_uint8(np.zeros((4, 4)), label="x")
    with pytest.raises(NeurratorError, match="lie in"):
        to_gray_uint8(np.full((1, 2, 2), 300.0), label="x")


def test_unsupported_and_missing_movie_files(tmp_path):
    (tmp_path / "m.gif").write_bytes(b"\x00" * 10)
    with pytest.raises(NeurratorError, match=r"unsupported movie format '\.gif'.*\.mp4"):
        load_movie_file(tmp_path / "m.gif")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(NeurratorError, match="unsupported movie format"):
        load_movie_file(tmp_path / "m.txt")
    with pytest.raises(NeurratorError, match="not found"):
        load_movie_file(tmp_path / "nope.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(NeurratorError, match="cannot read movie"):
        load_movie_file(tmp_path / "bad.npy")


def test_check_frames():
    check_frames(FRAMES, np.array([0, 4, 2]), label="f")
    with pytest.raises(NeurratorError, match="frame index 5, beyond"):
        check_frames(FRAMES, np.array([0, 5]), label="f")
    with pytest.raises(NeurratorError, match="inconsistent"):
        check_frames(FRAMES, np.array([0, 1, 2]), label="f")


def test_allen_movies_are_registered_without_invented_checksums(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURRATOR_OFFLINE", "1")
    for name, n, k in (("natural_movie_one", 900, 1), ("natural_movie_three", 3600, 3)):
        e = movies.KNOWN_MOVIES[name]
        assert e.n_frames == n and e.shape == (304, 608) and e.allen_movie_number == k
        assert e.sha256 is None or len(e.sha256) == 64
    target = tmp_path / "natural_movie_one.npy"
    with pytest.raises(NeurratorError, match=r"offline .*get_natural_movie_template\(1\).* to "
                                             + str(target).replace(".", r"\.") + r", or pass --movie"):
        fetch_known_movie("natural_movie_one", cache_dir=tmp_path)
    with pytest.raises(NeurratorError, match="not a registered movie"):
        fetch_known_movie("natural_movie_nine")


@pytest.fixture
def served_movie(tmp_path, monkeypatch):
    """A movie file on the local stand-in server; downloads from it are allowed (every other test runs with
    NEURRATOR_OFFLINE set by conftest)."""
    monkeypatch.delenv("NEURRATOR_OFFLINE", raising=False)
    movie = tmp_path / "movie.npy"
    np.save(movie, FRAMES)
    digest = hashlib.sha256(movie.read_bytes()).hexdigest()
    with DandiStandin(extra_files={"templates/movie.npy": movie}) as s:
        yield s, digest


def _register(monkeypatch, tmp_path, url, sha):
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"test_movie": {"n_frames": 5, "shape": [6, 8], "url": url, "sha256": sha}}))
    monkeypatch.setenv("NEURRATOR_MOVIE_REGISTRY", str(reg))


def test_registry_fetch_once_with_checksum(served_movie, tmp_path, monkeypatch):
    s, digest = served_movie
    _register(monkeypatch, tmp_path, s.url_for("templates/movie.npy"), digest)
    cache = tmp_path / "cache"
    np.testing.assert_array_equal(fetch_known_movie("test_movie", cache_dir=cache), FRAMES)
    served = s.bytes_served
    assert served > 0
    np.testing.assert_array_equal(fetch_known_movie("test_movie", cache_dir=cache), FRAMES)
    assert s.bytes_served == served  # second call: from the cache


def test_registry_checksum_mismatch_is_refused(served_movie, tmp_path, monkeypatch):
    s, _ = served_movie
    _register(monkeypatch, tmp_path, s.url_for("templates/movie.npy"), "0" * 64)
    with pytest.raises(NeurratorError, match="checksum mismatch"):
        fetch_known_movie("test_movie", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "test_movie.npy").exists()


def test_registry_unknown_checksum_is_an_explicit_state(served_movie, tmp_path, monkeypatch):
    s, digest = served_movie
    _register(monkeypatch, tmp_path, s.url_for("templates/movie.npy"), None)
    with pytest.raises(NeurratorError, match=f"sha256 {digest}"):
        fetch_known_movie("test_movie", cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match="no checksum is registered"):
        frames = fetch_known_movie("test_movie", cache_dir=tmp_path / "cache", allow_unverified=True)
    np.testing.assert_array_equal(frames, FRAMES)


def test_registry_download_failure_is_clear(served_movie, tmp_path, monkeypatch):
    s, digest = served_movie
    _register(monkeypatch, tmp_path, s.url_for("templates/missing.npy"), digest)
    with pytest.raises(NeurratorError, match="cannot download movie test_movie"):
        fetch_known_movie("test_movie", cache_dir=tmp_path / "cache")


def test_read_session_uses_the_registry_when_the_file_has_no_frames(served_movie, tmp_path, monkeypatch):
    from _nwbfiles import make_nwb

    from neurrator.data.session import load_session

    s, digest = served_movie
    _register(monkeypatch, tmp_path, s.url_for("templates/movie.npy"), digest)
    start = np.arange(10) / 30.0
    p = make_nwb(tmp_path / "reg.nwb", stimulus="test_movie", pres=(start, start + 1 / 30, np.tile(np.arange(5), 2)))
    ses = load_session(p, stimulus="test_movie", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(ses.frames, FRAMES)
    assert ses.frames_source == (f"registry:test_movie sha256:{digest} (pinned) from "
                                 f"{s.url_for('templates/movie.npy')}")
    # without fetching, frames stay None: never guessed
    assert load_session(p, stimulus="test_movie", fetch_movie=False).frames is None


WAREHOUSE = {"/external/neuropixels/stimulus_templates/natural_movie_1.npy": "movie",
             "/external/neuropixels/stimulus_templates/natural_movie_3.npy": "other",
             "/external/neuropixels/stimulus_templates/natural_scenes/5.tiff": "other"}


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """The stand-in Allen warehouse with natural_movie_1.npy = FRAMES; natural_movie_one shrunk to 5 frames."""
    import dataclasses

    np.save(tmp_path / "served.npy", FRAMES)
    (tmp_path / "other").write_bytes(b"x")
    files = {k: tmp_path / ("served.npy" if v == "movie" else "other") for k, v in WAREHOUSE.items()}
    small = dataclasses.replace(movies.KNOWN_MOVIES["natural_movie_one"], n_frames=5, shape=(6, 8))
    monkeypatch.setitem(movies.KNOWN_MOVIES, "natural_movie_one", small)
    monkeypatch.delenv("NEURRATOR_OFFLINE", raising=False)
    with DandiStandin(warehouse_files=files) as s:
        monkeypatch.setenv("NEURRATOR_ALLEN_API_URL", s.base_url)
        yield s, hashlib.sha256((tmp_path / "served.npy").read_bytes()).hexdigest()


def test_warehouse_lists_templates_in_pages(warehouse):
    from neurrator.io.allen_warehouse import (
        list_stimulus_templates,
        movie_download_url,
        scene_download_urls,
    )

    s, _ = warehouse
    rows = list_stimulus_templates(page_size=1)
    assert s.warehouse_queries == 3 and len(rows) == 3
    assert sorted((r["movie_number"], r["scene_number"]) for r in rows if r["movie_number"]) == [(1, None), (3, None)]
    assert movie_download_url(1) == f"{s.base_url}/api/v2/well_known_file_download/900000"
    assert list(scene_download_urls()) == [5]
    with pytest.raises(NeurratorError, match="exactly one natural_movie_2 template, found 0"):
        movie_download_url(2)


def test_allen_movie_via_warehouse_trusted_on_first_use(warehouse, tmp_path):
    from neurrator.io.movies import fetch_movie

    s, digest = warehouse
    got = fetch_movie("natural_movie_one", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(got.frames, FRAMES)
    assert got.sha256 == digest and got.trust == "first use"
    assert got.source == f"registry:natural_movie_one sha256:{digest} (first use) from {s.base_url}/api/v2/well_known_file_download/900000"
    assert (tmp_path / "c" / "natural_movie_one.npy.sha256").read_text().startswith(digest)
    queries, served = s.warehouse_queries, s.bytes_served
    again = fetch_movie("natural_movie_one", cache_dir=tmp_path / "c")
    assert again.trust == "recorded" and again.sha256 == digest and again.url == got.url
    assert (s.warehouse_queries, s.bytes_served) == (queries, served)  # from the cache, no lookup
    cached = tmp_path / "c" / "natural_movie_one.npy"
    np.save(cached, FRAMES[::-1])  # the cached copy changes: refused
    with pytest.raises(NeurratorError, match="differs from .* recorded at first use"):
        fetch_movie("natural_movie_one", cache_dir=tmp_path / "c")


def test_pinned_sha256_is_verified(warehouse, tmp_path, monkeypatch):
    import dataclasses

    from neurrator.io.movies import fetch_movie

    _, digest = warehouse
    entry = movies.KNOWN_MOVIES["natural_movie_one"]
    monkeypatch.setitem(movies.KNOWN_MOVIES, "natural_movie_one", dataclasses.replace(entry, sha256=digest))
    assert fetch_movie("natural_movie_one", cache_dir=tmp_path / "a").trust == "pinned"
    monkeypatch.setitem(movies.KNOWN_MOVIES, "natural_movie_one", dataclasses.replace(entry, sha256="1" * 64))
    with pytest.raises(NeurratorError, match="checksum mismatch"):
        fetch_movie("natural_movie_one", cache_dir=tmp_path / "b")
    assert not (tmp_path / "b" / "natural_movie_one.npy").exists()


def test_unreachable_warehouse_and_offline_say_what_to_download(warehouse, tmp_path, monkeypatch):
    from neurrator.io.movies import fetch_movie

    monkeypatch.setenv("NEURRATOR_ALLEN_API_URL", "http://127.0.0.1:9")  # nothing listens there
    target = tmp_path / "natural_movie_one.npy"
    with pytest.raises(NeurratorError) as err:
        fetch_movie("natural_movie_one", cache_dir=tmp_path)
    text = str(err.value)
    assert "\n" not in text and "Allen warehouse query failed" in text
    assert "download natural_movie_one (AllenSDK EcephysProjectCache.get_natural_movie_template(1)" in text
    assert f"to {target}, or pass --movie FRAMES.npy" in text
    monkeypatch.setenv("NEURRATOR_OFFLINE", "1")
    np.save(target, FRAMES)  # placed by hand where the message said: used offline, its hash recorded
    got = fetch_movie("natural_movie_one", cache_dir=tmp_path)
    assert got.trust == "first use" and got.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()


def test_read_session_records_the_fetched_movie_sha256(warehouse, tmp_path):
    from _nwbfiles import make_nwb

    from neurrator.data.session import load_session

    s, digest = warehouse
    start = np.arange(10) / 30.0
    p = make_nwb(tmp_path / "allen.nwb", pres=(start, start + 1 / 30, np.tile(np.arange(5), 2)))
    ses = load_session(p, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(ses.frames, FRAMES)
    assert ses.frames_source.startswith(f"registry:natural_movie_one sha256:{digest} (first use) from http://127.0.0.1")


def test_register_movie_adds_an_entry(monkeypatch):
    monkeypatch.setattr(movies, "KNOWN_MOVIES", dict(movies.KNOWN_MOVIES))
    movies.register_movie(MovieEntry("my_movie", 10, (4, 4), url=None, sha256=None))
    with pytest.raises(NeurratorError, match="no verified download address"):
        fetch_known_movie("my_movie")


def test_allen_movie_without_frames_reads_but_frames_are_required_later(tmp_path, monkeypatch):
    from _nwbfiles import make_nwb

    from neurrator.io.movies import require_frames
    from neurrator.data.session import load_session

    p = make_nwb(tmp_path / "allen_like.nwb")  # natural_movie_one presentations, no template
    monkeypatch.setenv("NEURRATOR_OFFLINE", "1")  # the registry fetch fails without reaching the network
    s = load_session(p, cache_dir=tmp_path / "cache")
    assert s.frames is None
    with pytest.raises(NeurratorError, match="no movie frames for stimulus 'natural_movie_one'.*offline.*--movie"):
        require_frames(s)


def test_template_without_frames_falls_back_to_the_movie_argument(tmp_path):
    """An ImageSeries that points to an external file holds no frames: the --movie file is used."""
    from pynwb import NWBHDF5IO
    from pynwb.image import ImageSeries
    from _nwbfiles import make_nwb

    from neurrator.data.session import load_session

    p = make_nwb(tmp_path / "ext.nwb", pres=(np.arange(5) / 30, np.arange(1, 6) / 30, np.arange(5)))
    with NWBHDF5IO(str(p), "a") as io:
        nwb = io.read()
        nwb.add_stimulus_template(ImageSeries(name="natural_movie_one", external_file=["movie.avi"],
                                              starting_frame=[0], format="external", rate=30.0, unit="NA",
                                              num_samples=5))
        io.write(nwb)
    np.save(tmp_path / "m.npy", FRAMES)
    s = load_session(p, movie=tmp_path / "m.npy")
    np.testing.assert_array_equal(s.frames, FRAMES)
