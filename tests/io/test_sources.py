"""Streaming sources against the local stand-in: partial reads, the on-disk cache, DANDI resolution, failures."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import requests
from standin import DandiStandin

from neurrator.errors import NeurratorError
from neurrator.data.session import load_session
from neurrator.simulate import write_simulated_session
from neurrator.io.httpfile import CachedHTTPFile
from neurrator.io.sources import AssetInfo, list_assets, open_source, parse_dandi_url

ASSET = "sub-sim1/sub-sim1_ses-sim1.nwb"


@pytest.fixture(scope="module")
def bigfile(tmp_path_factory) -> Path:
    """A small simulated session plus a 20 MB acquisition dataset that reading a session never needs."""
    from pynwb import NWBHDF5IO
    from pynwb.base import TimeSeries

    p = tmp_path_factory.mktemp("stream") / "big.nwb"
    write_simulated_session(p, n_units=30, n_repeats=3, n_frames=60, n_pulses=20, seed=4)
    with NWBHDF5IO(str(p), "a") as io:
        nwb = io.read()
        raw = np.random.default_rng(0).standard_normal(5_000_000).astype(np.float32)
        nwb.add_acquisition(TimeSeries(name="raw_voltage", data=raw, unit="V", rate=30000.0))
        io.write(nwb)
    assert p.stat().st_size > 20_000_000
    return p


@pytest.fixture
def standin(bigfile, tmp_path):
    notes = tmp_path / "dataset_description.json"
    notes.write_text("{}")
    with DandiStandin(files={ASSET: bigfile, "dataset_description.json": notes}, dandiset_id="000999",
                      versions=("0.260101.1200",)) as s:
        yield s


def test_https_stream_reads_a_fraction_and_then_only_the_cache(standin, bigfile, tmp_path):
    size = bigfile.stat().st_size
    local = load_session(bigfile)
    s1 = load_session(standin.url_for(ASSET), cache_dir=tmp_path / "cache")
    assert 0 < standin.bytes_served < size / 5
    np.testing.assert_array_equal(s1.units.spike_times, local.units.spike_times)
    np.testing.assert_array_equal(s1.frames, local.frames)
    served, reqs = standin.bytes_served, standin.file_requests
    s2 = load_session(standin.url_for(ASSET), cache_dir=tmp_path / "cache")
    assert (standin.bytes_served, standin.file_requests) == (served, reqs)  # nothing from the network
    np.testing.assert_array_equal(s2.units.ids, s1.units.ids)


def test_dandi_source_resolves_streams_and_caches(standin, bigfile, tmp_path):
    src = standin.dandi_url(ASSET)
    s = load_session(src, api_url=standin.api_url, cache_dir=tmp_path / "c")
    assert s.source == src and s.path_label == src
    assert len(s.units) > 0 and standin.bytes_served < bigfile.stat().st_size / 5
    before = (standin.bytes_served, standin.file_requests, standin.api_requests)
    load_session(src, api_url=standin.api_url, cache_dir=tmp_path / "c")
    assert (standin.bytes_served, standin.file_requests, standin.api_requests) == before


def test_dandi_api_url_from_environment(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURRATOR_DANDI_API_URL", standin.api_url)
    s = load_session(standin.dandi_url(ASSET, version="0.260101.1200"), cache_dir=tmp_path / "c")
    assert len(s.units) > 0


def test_list_assets_lists_nwb_assets_with_sizes(standin, bigfile, monkeypatch):
    assets = list_assets("000999", api_url=standin.api_url)
    assert assets == [AssetInfo(ASSET, bigfile.stat().st_size)]
    monkeypatch.setenv("NEURRATOR_DANDI_API_URL", standin.api_url)
    assert list_assets("dandi://000999@0.260101.1200") == assets


def test_list_assets_unknown_dandiset(standin):
    with pytest.raises(NeurratorError, match="dandi://000123: not found"):
        list_assets("000123", api_url=standin.api_url)


def test_missing_dandi_asset_is_a_clear_error(standin, tmp_path):
    src = standin.dandi_url("sub-x/sub-x_ses-y.nwb")
    with pytest.raises(NeurratorError, match="no such asset") as ei:
        load_session(src, api_url=standin.api_url, cache_dir=tmp_path / "c")
    assert str(ei.value).startswith(src) and "\n" not in str(ei.value)


def test_dandiset_without_asset_path(standin, tmp_path):
    with pytest.raises(NeurratorError, match="not an asset"):
        load_session(standin.dandi_url(), api_url=standin.api_url, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("mode", ["status", "drop"])
def test_transient_failures_are_retried(standin, tmp_path, mode):
    standin.fail_next(2, mode=mode)
    s = load_session(standin.url_for(ASSET), cache_dir=tmp_path / "c", retries=3, backoff=0.01)
    assert len(s.units) > 0


def test_persistent_failure_gives_a_clear_error(standin, tmp_path, bigfile):
    # open once (size probe and the file's metadata cached), then the network fails while streaming data
    url = standin.url_for(ASSET)
    with open_source(url, cache_dir=tmp_path / "c", retries=0):
        pass
    standin.fail_always(True)
    before = hashlib.sha256(bigfile.read_bytes()).hexdigest()
    with pytest.raises(NeurratorError, match="network failure while reading bytes .* after 3 attempts") as ei:
        load_session(url, cache_dir=tmp_path / "c", retries=2, backoff=0.01)
    assert str(ei.value).startswith(url) and "\n" not in str(ei.value)
    assert hashlib.sha256(bigfile.read_bytes()).hexdigest() == before


def test_unreachable_server(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NeurratorError, match="network failure"):
        load_session(f"http://127.0.0.1:{port}/x.nwb", cache_dir=tmp_path, retries=1, backoff=0.01)


def test_missing_https_file_is_not_retried(standin, tmp_path):
    with pytest.raises(NeurratorError, match="404"):
        load_session(standin.url_for("nope.nwb"), cache_dir=tmp_path, retries=5, backoff=1.0)
    assert standin.file_requests == 1


def test_cached_http_file_reads_like_a_local_file(standin, bigfile, tmp_path):
    data = bigfile.read_bytes()
    f = CachedHTTPFile(standin.url_for(ASSET), len(data), cache_dir=tmp_path, block_size=1000)
    f.seek(12_345)
    assert f.read(5000) == data[12_345:17_345]
    f.seek(-10, 2)
    assert f.read(100) == data[-10:]
    assert f.read(1) == b""
    assert f.bytes_fetched == 6000 + (len(data) % 1000 or 1000)  # 6 blocks, then the last (partial) block
    g = CachedHTTPFile(standin.url_for(ASSET), len(data), cache_dir=tmp_path, block_size=1000)
    reqs = standin.file_requests
    g.seek(13_000)
    assert g.read(2000) == data[13_000:15_000]
    assert standin.file_requests == reqs and g.bytes_fetched == 0  # from the disk cache


def test_standin_range_semantics(standin, bigfile):
    url = standin.url_for(ASSET)
    data = bigfile.read_bytes()
    r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = requests.get(url, headers={"Range": "bytes=-5"}, timeout=5)
    assert r.content == data[-5:]
    r = requests.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=5)
    assert r.status_code == 416


def test_parse_dandi_url():
    assert parse_dandi_url("dandi://000021@0.210720.1839/sub-1/x.nwb") == ("000021", "0.210720.1839", "sub-1/x.nwb")
    assert parse_dandi_url("dandi://000713") == ("000713", None, "")
    with pytest.raises(NeurratorError):
        parse_dandi_url("dandi:/000021")


def test_unreachable_dandi_api_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    with pytest.raises(NeurratorError, match="dandi://000999: network failure while listing assets"):
        list_assets("000999", api_url=api, backoff=0.01)
    with pytest.raises(NeurratorError, match="network failure while resolving the DANDI asset"):
        load_session("dandi://000999/sub-1/sub-1_ses-1.nwb", api_url=api, cache_dir=tmp_path, backoff=0.01)


# -- answers that lie, pages instead of files, servers that hang (issue 18) --------------------------------


def _resolved_then(standin, tmp_path, mode: str) -> tuple[str, Path]:
    """The size probe answered honestly (cached in the index); then every file request misbehaves."""
    from neurrator.io.sources import resolve_source

    url, cache = standin.url_for(ASSET), tmp_path / "c"
    resolve_source(url, cache_dir=cache)
    standin.reset_counters()
    standin.fail_always(True, mode=mode)
    return url, cache


def _misbehaving(standin, tmp_path, mode: str, probe: bool) -> tuple[str, Path]:
    """Every file request misbehaves in ``mode``, from the size probe on, or only once the probe is cached."""
    if not probe:
        return _resolved_then(standin, tmp_path, mode)
    standin.fail_always(True, mode=mode)
    return standin.url_for(ASSET), tmp_path / "c"


def _one_line(err: pytest.ExceptionInfo, url: str) -> str:
    text = str(err.value)
    assert text.startswith(url) and "\n" not in text
    return text


def test_shifted_range_is_refused_naming_both_ranges_and_not_retried(standin, bigfile, tmp_path):
    before = hashlib.sha256(bigfile.read_bytes()).hexdigest()
    url, cache = _resolved_then(standin, tmp_path, "shift")
    with pytest.raises(NeurratorError, match="returned bytes") as ei:
        load_session(url, cache_dir=cache, retries=3, backoff=0.01)
    text = _one_line(ei, url)
    import re

    got0, got1, ask0, ask1 = map(int, re.search(r"returned bytes (\d+)-(\d+) when bytes (\d+)-(\d+) were asked",
                                                 text).groups())
    assert (got0 - ask0, got1 - ask1) == (1000, 1000)
    assert "not an HDF5 file" not in text
    assert standin.file_requests == 1  # refused at once: retrying a lying server does not help
    assert not [p for p in (cache / "blocks").rglob("*") if p.is_file()]  # nothing of the shifted bytes cached
    assert hashlib.sha256(bigfile.read_bytes()).hexdigest() == before


def test_shifted_range_at_the_size_probe(standin, tmp_path):
    standin.fail_always(True, mode="shift")
    url = standin.url_for(ASSET)
    with pytest.raises(NeurratorError, match="returned bytes 1000-1000 when bytes 0-0 were asked for") as ei:
        load_session(url, cache_dir=tmp_path, backoff=0.01)
    _one_line(ei, url)


@pytest.mark.parametrize("probe", [True, False], ids=["at-probe", "while-reading"])
def test_html_page_with_status_200_is_reported_as_such(standin, tmp_path, probe):
    url, cache = _misbehaving(standin, tmp_path, "html", probe)
    with pytest.raises(NeurratorError, match="returned an HTML page") as ei:
        load_session(url, cache_dir=cache, retries=3, backoff=0.01)
    text = _one_line(ei, url)
    assert "Range" not in text and "HDF5" not in text
    assert standin.file_requests == 1


@pytest.mark.parametrize("probe", [True, False], ids=["at-probe", "while-reading"])
def test_server_ignoring_range_is_refused_at_once(standin, tmp_path, probe):
    url, cache = _misbehaving(standin, tmp_path, "ignore-range", probe)
    with pytest.raises(NeurratorError, match="does not support HTTP Range|ignored the Range header") as ei:
        load_session(url, cache_dir=cache, retries=3, backoff=0.01)
    _one_line(ei, url)
    assert standin.file_requests == 1


@pytest.mark.parametrize("probe", [True, False], ids=["at-probe", "while-reading"])
def test_hanging_server_gives_up_after_the_timeout_once(standin, tmp_path, probe):
    import time

    url, cache = _misbehaving(standin, tmp_path, "hang", probe)
    t0 = time.monotonic()
    with pytest.raises(NeurratorError, match=r"no answer from the server within 1 s .*--timeout") as ei:
        load_session(url, cache_dir=cache, retries=4, backoff=0.01, timeout=1.0)
    elapsed = time.monotonic() - t0
    _one_line(ei, url)
    assert 0.9 < elapsed < 6, elapsed  # one timeout, not one per retry
    assert standin.file_requests == 1


def test_hanging_dandi_api_gives_up_after_the_timeout(standin, tmp_path):
    import time

    standin.hang_api(True)
    t0 = time.monotonic()
    with pytest.raises(NeurratorError, match=r"within 1 s while resolving the DANDI asset"):
        load_session(standin.dandi_url(ASSET), api_url=standin.api_url, cache_dir=tmp_path, timeout=1.0)
    with pytest.raises(NeurratorError, match=r"^dandi://000999: no answer .* within 1 s while listing assets"):
        list_assets("000999", api_url=standin.api_url, timeout=1.0)
    assert time.monotonic() - t0 < 8


def test_range_checks_accept_honest_answers():
    from neurrator.io.httpfile import check_range_response

    ok = {"Content-Range": "bytes 10-19/100", "Content-Type": "application/octet-stream"}
    check_range_response(206, ok, b"\x00" * 10, url="u", start=10, end=19, size=100)
    check_range_response(206, {"Content-Range": "bytes 10-19/*"}, b"x", url="u", start=10, end=19, size=100)
    check_range_response(200, {}, b"\x89HDF\r\n", url="u", start=0, end=99, size=100)  # whole small file
    for status, headers, why in [
        (206, {"Content-Range": "bytes 10-19/101"}, "file has 101 bytes"),
        (206, {}, "without a valid Content-Range"),
        (206, {"Content-Range": "bytes 11-20/100"}, "returned bytes 11-20 when bytes 10-19"),
        (403, {}, "refuses access"),
        (416, {}, "outside the file"),
    ]:
        with pytest.raises(Exception, match=why):
            check_range_response(status, headers, b"", url="u", start=10, end=19, size=100)
    with pytest.raises(OSError, match="HTTP 503"):  # transient: retried by the caller
        check_range_response(503, {}, b"", url="u", start=10, end=19, size=100)
