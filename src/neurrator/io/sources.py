"""SOURCE string (local path, https URL, ``dandi://<id>[@<version>]/<path>``) -> opened NWB file.

Remote files are streamed with HTTP Range requests through `CachedHTTPFile`, a small read-only
file object that h5py reads like a local file: only the byte ranges HDF5 asks for are fetched (the
units, electrodes, subject and stimulus tables; not the large acquisition data), in blocks kept in an
on-disk cache, so a second run reads nothing from the network. Failed requests are retried with
exponential backoff, then raise `NeurratorError`. (remfile does the same job but retries a fixed 8 times,
about 25 s, and probes the size with a full GET; this reader makes the retry policy, the cache and the
byte accounting explicit and testable.)

Cached blocks are keyed by (URL, size, block size): DANDI blob URLs are immutable, but a plain https
file replaced by another of the same size at the same URL would be served stale from the cache
(clear ``cache_dir`` then). Several processes may share one cache (files are written atomically).

DANDI assets are resolved with dandi-cli's `DandiAPIClient` (``get_dandiset(id, version)
.get_asset_by_path(path).get_content_url(follow_redirects=1, strip_query=True)``); the resolution is
cached too. The API base URL comes from the ``api_url`` argument, else ``$NEURRATOR_DANDI_API_URL``, else
DANDI's public API.

Every file, local or remote, is checked by `neurrator.io.h5safety.check_hdf5_file` before pynwb reads it:
external links, virtual or externally stored datasets, link cycles, deep nesting and datasets declaring
more data than the file could hold are refused with one line naming the file and the object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from neurrator.errors import NeurratorError
from neurrator.io.h5safety import check_hdf5_file
from neurrator.io.httpfile import (
    DEFAULT_TIMEOUT_S,
    CachedHTTPFile,
    probe_size,
    retrying,
    timeout_message,
    unique_suffix,
)

__all__ = [
    "DEFAULT_DANDI_API_URL",
    "AssetInfo",
    "default_cache_dir",
    "list_assets",
    "open_source",
    "parse_dandi_url",
    "resolve_source",
    "source_label",
]

log = logging.getLogger(__name__)

DEFAULT_DANDI_API_URL = "https://api.dandiarchive.org/api"
_DANDI_RE = re.compile(r"^dandi://(?P<id>[^/@]+)(?:@(?P<version>[^/]+))?(?:/(?P<path>.*))?$")


@dataclass(frozen=True)
class AssetInfo:
    """One asset of a dandiset: its path and size in bytes."""

    path: str
    size: int


@dataclass(frozen=True)
class RemoteTarget:
    """A resolved remote file: the URL to stream and its size."""

    url: str
    size: int
    label: str


def default_cache_dir() -> Path:
    """``$NEURRATOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurrator``, else ``~/.cache/neurrator``."""
    env = os.environ.get("NEURRATOR_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neurrator"


def _api_url(api_url: str | None) -> str:
    return (api_url or os.environ.get("NEURRATOR_DANDI_API_URL") or DEFAULT_DANDI_API_URL).rstrip("/")


def parse_dandi_url(source: str) -> tuple[str, str | None, str]:
    """``dandi://000021@0.210720.1839/sub-1/x.nwb`` -> ("000021", "0.210720.1839", "sub-1/x.nwb")."""
    m = _DANDI_RE.match(source)
    if not m:
        raise NeurratorError(source, "not a dandi:// address; use dandi://<dandiset>[@<version>]/<asset path>")
    return m.group("id"), m.group("version"), (m.group("path") or "")


def source_label(source: str) -> str:
    """What error messages call the source: the file name for paths, the address for remote sources."""
    if source.startswith(("dandi://", "http://", "https://")):
        return source
    return str(source)


def _client(api_url: str | None, timeout: float):
    os.environ.setdefault("DANDI_NO_ET", "1")  # no version-check call to the internet from dandi-cli
    try:
        from dandi.dandiapi import DandiAPIClient
    except ImportError as err:
        raise ImportError("streaming from DANDI needs the 'dandi' package: pip install dandi") from err
    # dandi-cli logs failed requests with tracebacks; neurrator reports them in one line instead
    logging.getLogger("dandi").setLevel(logging.CRITICAL)
    client = DandiAPIClient(api_url=_api_url(api_url))
    client.session = _TimeoutSession(timeout, client.session)  # dandi-cli sets no timeout of its own
    return client


class _TimeoutSession:
    """A requests.Session whose requests wait at most ``timeout`` s unless told otherwise."""

    def __init__(self, timeout: float, session) -> None:
        self._timeout, self._session = timeout, session

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        return self._session.request(method, url, **kwargs)

    def __getattr__(self, name):
        return getattr(self._session, name)


def _dandi_call(fn, *, label: str, what: str, timeout: float):
    """``fn()`` (dandi-cli calls) under an overall deadline of ``timeout`` seconds.

    dandi-cli asks the server for its info without a timeout and retries failed requests 12 times
    (about 50 s): the deadline bounds all of it. A call that runs past it is left to finish in a
    daemon thread (it holds no file of ours) and the lookup fails with one line naming the limit.
    """
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, name="neurrator-dandi-api", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise NeurratorError(label, timeout_message(timeout, what))
    if "error" in box:
        raise box["error"]
    return box["value"]


def list_assets(
    dandiset: str,
    *,
    api_url: str | None = None,
    retries: int = 1,
    backoff: float = 0.5,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[AssetInfo]:
    """NWB assets (path, size) of a dandiset: ``"000021"``, ``"000021@0.210720.1839"`` or ``"dandi://000021"``.

    Raises NeurratorError when the dandiset or version does not exist, or the API cannot be reached
    or does not answer within ``timeout`` seconds.
    """
    src = dandiset if dandiset.startswith("dandi://") else f"dandi://{dandiset}"
    did, version, prefix = parse_dandi_url(src)
    from dandi.exceptions import NotFoundError

    def fetch() -> list[AssetInfo]:
        client = _client(api_url, timeout)
        with client:
            ds = client.get_dandiset(did, version)
            assets = ds.get_assets_with_path_prefix(prefix) if prefix else ds.get_assets()
            return [AssetInfo(a.path, int(a.size)) for a in assets if a.path.endswith(".nwb")]

    try:
        # dandi-cli's client retries each API request itself; `retries` rounds on top of that
        listed = retrying("listing assets", src,
                          lambda: _dandi_call(fetch, label=src, what="listing assets", timeout=timeout),
                          retries=retries, backoff=backoff, permanent=(NotFoundError,), timeout=timeout)
        return sorted(listed, key=lambda a: a.path)
    except NotFoundError as err:
        raise NeurratorError(src, f"not found on {_api_url(api_url)}: {err}") from err


def _index_path(cache_dir: Path) -> Path:
    return cache_dir / "resolved.json"


def _load_index(cache_dir: Path) -> dict:
    p = _index_path(cache_dir)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _save_index(cache_dir: Path, key: str, value: dict) -> None:
    idx = _load_index(cache_dir)
    idx[key] = value
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = _index_path(cache_dir).with_name(f"resolved.json.{unique_suffix()}.part")
    tmp.write_text(json.dumps(idx, indent=1, sort_keys=True))
    tmp.replace(_index_path(cache_dir))


def resolve_source(
    source: str,
    *,
    cache_dir: str | Path | None = None,
    api_url: str | None = None,
    retries: int = 4,
    backoff: float = 0.25,
    timeout: float = DEFAULT_TIMEOUT_S,
    refresh: bool = False,
) -> RemoteTarget:
    """Resolve an https or dandi:// source to (url, size), using and filling the on-disk index."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = f"{_api_url(api_url)}|{source}" if source.startswith("dandi://") else source
    if not refresh:
        hit = _load_index(cache).get(key)
        if hit:
            return RemoteTarget(hit["url"], int(hit["size"]), source)
    if source.startswith("dandi://"):
        did, version, path = parse_dandi_url(source)
        if not path:
            raise NeurratorError(source, "names a dandiset, not an asset; add /<asset path> (see `neurrator ls`)")
        from dandi.exceptions import NotFoundError

        def resolve() -> tuple[str, int]:
            client = _client(api_url, timeout)
            with client:
                asset = client.get_dandiset(did, version).get_asset_by_path(path)
                return asset.get_content_url(follow_redirects=1, strip_query=True), int(asset.size)

        try:
            # dandi-cli's client already retries API requests with backoff (12 attempts): one more round here
            what = "resolving the DANDI asset"
            url, size = retrying(what, source, lambda: _dandi_call(resolve, label=source, what=what, timeout=timeout),
                                 retries=min(retries, 1), backoff=backoff, permanent=(NotFoundError,),
                                 timeout=timeout)
        except NotFoundError as err:
            raise NeurratorError(source, f"no such asset on {_api_url(api_url)}: {str(err).splitlines()[0]}") from err
    else:
        url = source
        size = probe_size(url, source, retries=retries, backoff=backoff, timeout=timeout)
    _save_index(cache, key, {"url": url, "size": size})
    return RemoteTarget(url, size, source)


def _open_h5(fileobj_or_path, label: str):
    import h5py

    try:
        return h5py.File(fileobj_or_path, "r")
    except NeurratorError:
        raise
    except OSError as err:
        msg = str(err)
        if "truncated" in msg.lower():
            raise NeurratorError(label, f"truncated HDF5 file ({msg.split(':')[-1].strip()})") from err
        if "signature" in msg.lower() or "not an hdf5" in msg.lower():
            raise NeurratorError(label, "not an HDF5 file (NWB files are HDF5)") from err
        raise NeurratorError(label, f"cannot open as HDF5: {msg.splitlines()[0]}") from err


def _read_nwb(h5file, label: str):
    from pynwb import NWBHDF5IO

    attrs = h5file.attrs
    if "nwb_version" not in attrs and attrs.get("neurodata_type") not in (b"NWBFile", "NWBFile"):
        raise NeurratorError(label, "HDF5 file but not NWB (no nwb_version attribute at the root)")
    try:
        io_ = NWBHDF5IO(file=h5file, mode="r", load_namespaces=True)
        return io_, io_.read()
    except NeurratorError:
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "truncated" in first.lower() or "eof" in first.lower():
            raise NeurratorError(label, f"truncated or corrupt file: {first}") from err
        raise NeurratorError(label, f"cannot read as NWB: {type(err).__name__}: {first}") from err


@contextlib.contextmanager
def open_source(
    source: str | Path,
    *,
    cache_dir: str | Path | None = None,
    api_url: str | None = None,
    retries: int = 4,
    backoff: float = 0.25,
    timeout: float = DEFAULT_TIMEOUT_S,
    block_size: int = 64 * 1024,
) -> Iterator:
    """Open a local path, https URL or ``dandi://`` asset and yield the `pynwb.NWBFile` (read-only).

    Remote sources are streamed (only the byte ranges read are fetched) through an on-disk cache in
    ``cache_dir`` (default `default_cache_dir`). Errors are `NeurratorError` naming the source.

    Examples
    --------
    >>> with open_source("sim.nwb") as nwbfile:  # doctest: +SKIP
    ...     print(len(nwbfile.units))
    """
    source = str(source)
    label = source_label(source)
    fileobj = None
    if source.startswith(("http://", "https://", "dandi://")):
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target = resolve_source(source, cache_dir=cache, api_url=api_url, retries=retries, backoff=backoff,
                                timeout=timeout)
        fileobj = CachedHTTPFile(target.url, target.size, cache_dir=cache, label=label, block_size=block_size,
                                 retries=retries, backoff=backoff, timeout=timeout)
        h5 = _open_h5(fileobj, label)
        size = target.size
    else:
        p = Path(source)
        if not p.exists():
            raise NeurratorError(label, "file not found")
        if p.is_dir():
            raise NeurratorError(label, "is a folder, not an NWB file")
        h5 = _open_h5(str(p), label)
        size = p.stat().st_size
    try:
        # before pynwb reads anything: no external links / virtual or external data, no memory bombs
        check_hdf5_file(h5, label=label, file_size=size)
        io_, nwbfile = _read_nwb(h5, label)
        try:
            yield nwbfile
        finally:
            with contextlib.suppress(Exception):
                io_.close()
    finally:
        with contextlib.suppress(Exception):
            h5.close()
        if fileobj is not None:
            fileobj.close()
