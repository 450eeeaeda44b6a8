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

Every file, local or remote, is checked by `neurrator.h5safety.check_hdf5_file` before pynwb reads it:
external links, virtual or externally stored datasets, link cycles, deep nesting and datasets declaring
more data than the file could hold are refused with one line naming the file and the object.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from neurrator.errors import NeurratorError
from neurrator.h5safety import check_hdf5_file

__all__ = [
    "DEFAULT_DANDI_API_URL",
    "AssetInfo",
    "CachedHTTPFile",
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


def _client(api_url: str | None):
    os.environ.setdefault("DANDI_NO_ET", "1")  # no version-check call to the internet from dandi-cli
    try:
        from dandi.dandiapi import DandiAPIClient
    except ImportError as err:
        raise ImportError("streaming from DANDI needs the 'dandi' package: pip install dandi") from err
    return DandiAPIClient(api_url=_api_url(api_url))


def _retrying(what: str, label: str, fn, *, retries: int, backoff: float, permanent=()):
    """Call ``fn`` with up to ``retries`` retries and exponential backoff; then NeurratorError."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return fn()
        except permanent:
            raise
        except NeurratorError:
            raise
        except Exception as err:  # noqa: BLE001 - network errors of every kind are retried
            last = err
            if attempt < retries:
                delay = backoff * (2**attempt)
                log.warning("%s: %s failed (%s); retrying in %.2f s", label, what, err, delay)
                time.sleep(delay)
    raise NeurratorError(
        label, f"network failure while {what} after {retries + 1} attempts: {type(last).__name__}: {last}"
    )


def list_assets(
    dandiset: str, *, api_url: str | None = None, retries: int = 1, backoff: float = 0.5
) -> list[AssetInfo]:
    """NWB assets (path, size) of a dandiset: ``"000021"``, ``"000021@0.210720.1839"`` or ``"dandi://000021"``.

    Raises NeurratorError when the dandiset or version does not exist or the API cannot be reached.
    """
    src = dandiset if dandiset.startswith("dandi://") else f"dandi://{dandiset}"
    did, version, prefix = parse_dandi_url(src)
    from dandi.exceptions import NotFoundError

    def fetch() -> list[AssetInfo]:
        client = _client(api_url)
        with client:
            ds = client.get_dandiset(did, version)
            assets = ds.get_assets_with_path_prefix(prefix) if prefix else ds.get_assets()
            return [AssetInfo(a.path, int(a.size)) for a in assets if a.path.endswith(".nwb")]

    try:
        # dandi-cli's client retries each API request itself; `retries` rounds on top of that
        return sorted(_retrying("listing assets", src, fetch, retries=retries, backoff=backoff,
                                permanent=(NotFoundError,)), key=lambda a: a.path)
    except NotFoundError as err:
        raise NeurratorError(src, f"not found on {_api_url(api_url)}: {err}") from err


class CachedHTTPFile(io.RawIOBase):
    """Read-only, seekable file over HTTP Range requests with an on-disk block cache.

    Parameters
    ----------
    url
        The file's address (must support Range requests).
    size
        Its length in bytes.
    cache_dir
        Folder for cached blocks (one file per block); None keeps blocks in memory only.
    block_size
        Bytes per cached block; contiguous missing blocks of one read are fetched in one request.
    retries, backoff, timeout
        Retry policy for each request: ``retries`` retries, sleeping ``backoff * 2**k`` seconds.
    """

    def __init__(
        self,
        url: str,
        size: int,
        *,
        cache_dir: str | Path | None,
        label: str | None = None,
        block_size: int = 64 * 1024,
        retries: int = 4,
        backoff: float = 0.25,
        timeout: float = 30.0,
        memory_blocks: int = 512,
    ) -> None:
        import requests

        super().__init__()
        self.url = url
        self.size = int(size)
        self.label = label or url
        self.block_size = int(block_size)
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self._pos = 0
        self._mem: OrderedDict[int, bytes] = OrderedDict()
        self._mem_max = memory_blocks
        self._session = requests.Session()
        self.bytes_fetched = 0
        self.requests_made = 0
        key = hashlib.sha256(f"{url}|{self.size}|{self.block_size}".encode()).hexdigest()[:32]
        self._dir = None if cache_dir is None else Path(cache_dir) / "blocks" / key
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)

    # io.RawIOBase interface -------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = int(offset)
        elif whence == 1:
            self._pos += int(offset)
        elif whence == 2:
            self._pos = self.size + int(offset)
        else:
            raise ValueError(f"invalid whence {whence}")
        return self._pos

    def readinto(self, b) -> int:
        mv = memoryview(b).cast("B")
        n = max(0, min(len(mv), self.size - self._pos))
        if n == 0:
            return 0
        first, last = self._pos // self.block_size, (self._pos + n - 1) // self.block_size
        blocks = self._blocks(first, last)
        data = b"".join(blocks)
        off = self._pos - first * self.block_size
        mv[:n] = data[off : off + n]
        self._pos += n
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._session.close()
        super().close()

    # blocks ----------------------------------------------------------------------------------------
    def _block_path(self, i: int) -> Path | None:
        return None if self._dir is None else self._dir / f"{i}"

    def _get_cached(self, i: int) -> bytes | None:
        if i in self._mem:
            self._mem.move_to_end(i)
            return self._mem[i]
        p = self._block_path(i)
        if p is not None and p.exists():
            data = p.read_bytes()
            self._remember(i, data)
            return data
        return None

    def _remember(self, i: int, data: bytes) -> None:
        self._mem[i] = data
        if len(self._mem) > self._mem_max:
            self._mem.popitem(last=False)

    def _blocks(self, first: int, last: int) -> list[bytes]:
        out: dict[int, bytes] = {}
        missing: list[int] = []
        for i in range(first, last + 1):
            got = self._get_cached(i)
            if got is None:
                missing.append(i)
            else:
                out[i] = got
        # fetch runs of consecutive missing blocks in one request each
        run: list[int] = []
        for i in missing + [None]:  # type: ignore[list-item]
            if run and (i is None or i != run[-1] + 1):
                self._fetch_run(run[0], run[-1], out)
                run = []
            if i is not None:
                run.append(i)
        return [out[i] for i in range(first, last + 1)]

    def _fetch_run(self, b0: int, b1: int, out: dict[int, bytes]) -> None:
        start = b0 * self.block_size
        end = min(self.size, (b1 + 1) * self.block_size) - 1

        def get() -> bytes:
            self.requests_made += 1
            r = self._session.get(self.url, headers={"Range": f"bytes={start}-{end}"}, timeout=self.timeout)
            try:
                if r.status_code == 404:
                    raise NeurratorError(self.label, f"the server says the file does not exist (404) at {self.url}")
                if r.status_code not in (200, 206):
                    raise OSError(f"HTTP {r.status_code} {r.reason} for bytes {start}-{end}")
                body = r.content
            finally:
                r.close()
            if len(body) != end - start + 1:
                if r.status_code == 200:
                    raise OSError("the server ignored the Range header")
                raise OSError(f"short read: got {len(body)} of {end - start + 1} bytes")
            return body

        body = _retrying(f"reading bytes {start}-{end}", self.label, get, retries=self.retries, backoff=self.backoff)
        self.bytes_fetched += len(body)
        for i in range(b0, b1 + 1):
            piece = body[(i - b0) * self.block_size : (i - b0 + 1) * self.block_size]
            p = self._block_path(i)
            if p is not None:
                tmp = p.with_name(f"{p.name}.{_unique()}.part")  # unique: workers may share the cache
                tmp.write_bytes(piece)
                tmp.replace(p)
            self._remember(i, piece)
            out[i] = piece


def _unique() -> str:
    return f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"


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
    tmp = _index_path(cache_dir).with_name(f"resolved.json.{_unique()}.part")
    tmp.write_text(json.dumps(idx, indent=1, sort_keys=True))
    tmp.replace(_index_path(cache_dir))


def _probe_size(url: str, label: str, *, retries: int, backoff: float, timeout: float) -> int:
    import requests

    def probe() -> int:
        r = requests.get(url, headers={"Range": "bytes=0-0"}, timeout=timeout, stream=True)
        try:
            if r.status_code == 404:
                raise NeurratorError(label, f"not found (HTTP 404) at {url}")
            if r.status_code == 206 and "/" in r.headers.get("Content-Range", ""):
                return int(r.headers["Content-Range"].rsplit("/", 1)[1])
            if r.status_code == 200:
                raise NeurratorError(label, "the server does not support HTTP Range requests; download the file first")
            raise OSError(f"HTTP {r.status_code} {r.reason}")
        finally:
            r.close()

    return _retrying("asking for the file size", label, probe, retries=retries, backoff=backoff)


def resolve_source(
    source: str,
    *,
    cache_dir: str | Path | None = None,
    api_url: str | None = None,
    retries: int = 4,
    backoff: float = 0.25,
    timeout: float = 30.0,
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
            client = _client(api_url)
            with client:
                asset = client.get_dandiset(did, version).get_asset_by_path(path)
                return asset.get_content_url(follow_redirects=1, strip_query=True), int(asset.size)

        try:
            # dandi-cli's client already retries API requests with backoff (12 attempts): one more round here
            url, size = _retrying("resolving the DANDI asset", source, resolve, retries=min(retries, 1),
                                  backoff=backoff, permanent=(NotFoundError,))
        except NotFoundError as err:
            raise NeurratorError(source, f"no such asset on {_api_url(api_url)}: {str(err).splitlines()[0]}") from err
    else:
        url = source
        size = _probe_size(url, source, retries=retries, backoff=backoff, timeout=timeout)
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
    except Exception as err:  # noqa: BLE001 - any failure to build the NWBFile is a bad input file
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
    timeout: float = 30.0,
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
