"""HTTP Range reads that check what the server sent: `CachedHTTPFile`, the size probe and the retry policy.

`CachedHTTPFile` is a small read-only file object that h5py reads like a local file: only the byte
ranges HDF5 asks for are fetched, in blocks kept in an on-disk cache, so a second run reads nothing
from the network. (remfile does the same job but retries a fixed 8 times, about 25 s, and probes the
size with a full GET; this reader makes the retry policy, the cache and the byte accounting explicit
and testable.)

Every response is checked before a byte of it reaches the cache or HDF5:

* a 206 must carry ``Content-Range: bytes A-B/SIZE`` with exactly the range asked for and the file's
  size (a server that shifts ranges would otherwise yield "not an HDF5 file" or silently wrong data);
* a 200 that is an HTML page (``Content-Type: text/html`` or a body that starts like one: a login
  page, a proxy's error page) is reported as such;
* a 200 with the whole file is a server that ignores Range: refused (streaming it would download
  everything at every read);
* 4xx answers are final; 5xx answers, dropped connections and short bodies are retried with
  exponential backoff.

``timeout`` is the most seconds to wait for the server to connect or to send the next bytes (requests'
connect and read timeouts). A timeout is final, not retried: a server that hangs costs ``timeout``
seconds once, not once per retry. The CLI's ``--timeout`` sets it (default `DEFAULT_TIMEOUT_S`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

from neurrator.errors import NeurratorError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "CachedHTTPFile",
    "check_range_response",
    "is_timeout",
    "probe_size",
    "retrying",
    "timeout_message",
    "unique_suffix",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_HTML_START = (b"<!doctype html", b"<html", b"<head", b"<?xml")


class _Final(Exception):
    """A failure that retrying cannot fix; `retrying` turns it into a NeurratorError at once."""


def unique_suffix() -> str:
    """A name part no other process or thread of this machine uses now (for atomic temporary files)."""
    return f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"


def timeout_message(timeout: float, what: str) -> str:
    return (f"no answer from the server within {timeout:g} s while {what} (the server may be down or "
            "overloaded; raise the limit with --timeout SECONDS)")


def retrying(what: str, label: str, fn, *, retries: int, backoff: float, permanent=(), timeout: float | None = None):
    """Call ``fn`` with up to ``retries`` retries and exponential backoff; then NeurratorError.

    ``permanent`` exceptions are re-raised at once; a requests timeout is final (one line naming
    ``timeout``), as is any NeurratorError ``fn`` raises.
    """
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return fn()
        except permanent:
            raise
        except NeurratorError:
            raise
        except _Final as err:
            raise NeurratorError(label, str(err)) from None
        except Exception as err:
            if is_timeout(err):
                raise NeurratorError(label, timeout_message(timeout if timeout is not None else DEFAULT_TIMEOUT_S,
                                                            what)) from err
            last = err
            if attempt < retries:
                delay = backoff * (2**attempt)
                log.warning("%s: %s failed (%s); retrying in %.2f s", label, what, err, delay)
                time.sleep(delay)
    raise NeurratorError(
        label, f"network failure while {what} after {retries + 1} attempts: {type(last).__name__}: {last}"
    )


def is_timeout(err: BaseException) -> bool:
    """A connect or read timeout, also the one requests wraps in ConnectionError while streaming a body."""
    import requests

    if isinstance(err, requests.exceptions.Timeout):
        return True
    from urllib3.exceptions import ReadTimeoutError

    return isinstance(err, requests.exceptions.ConnectionError) and any(
        isinstance(a, ReadTimeoutError) for a in err.args)


def _looks_like_html(content_type: str, head: bytes) -> bool:
    if "html" in content_type.lower():
        return True
    return head.lstrip()[:16].lower().startswith(_HTML_START)


def _shown_url(url: str, label: str) -> str:
    """The URL for error messages: "" when the message's label is the URL already (https sources)."""
    return "" if label == url else url


def _at(url: str) -> str:
    return f" at {url}" if url else ""


def check_range_response(status: int, headers, head: bytes, *, url: str, start: int, end: int,
                         size: int | None) -> None:
    """Raise `_Final` unless an answer to ``Range: bytes=start-end`` is the bytes asked for.

    ``head`` is the start of the body (to recognise an HTML page); ``size`` the file's known size,
    or None while probing for it; ``url`` is named in the messages (pass "" when the label is the
    URL). A 5xx or other unexpected status raises OSError (retried).
    """
    at = _at(url)
    ctype = headers.get("Content-Type", "") or ""
    if status == 404:
        raise _Final(f"the server says the file does not exist (HTTP 404){at}")
    if status in (401, 403):
        raise _Final(f"the server refuses access (HTTP {status}){at}")
    if status == 416:
        raise _Final(f"the server says bytes {start}-{end} are outside the file (HTTP 416){at}; "
                     "the file may have changed since it was first read: clear the cache")
    if status == 200:
        if _looks_like_html(ctype, head):
            raise _Final(f"the server returned an HTML page (HTTP 200, {ctype or 'no Content-Type'}), "
                         f"not the file{at}")
        if not (start == 0 and size is not None and end == size - 1):
            raise _Final(f"the server ignored the Range header (HTTP 200 with the whole file for bytes "
                         f"{start}-{end}){at}; it does not support streaming: download the file first")
        return
    if status != 206:
        if 400 <= status < 500:
            raise _Final(f"the server answered HTTP {status} for bytes {start}-{end}{at}")
        raise OSError(f"HTTP {status} for bytes {start}-{end}")
    cr = headers.get("Content-Range")
    m = _CONTENT_RANGE.match(cr or "")
    if m is None:
        raise _Final(f"the server answered 206 without a valid Content-Range ({cr!r}) for bytes {start}-{end}{at}")
    got0, got1, total = int(m.group(1)), int(m.group(2)), m.group(3)
    if (got0, got1) != (start, end):
        raise _Final(f"the server returned bytes {got0}-{got1} when bytes {start}-{end} were asked for "
                     f"(Content-Range {cr.strip()}){at}")
    if size is not None and total != "*" and int(total) != size:
        raise _Final(f"the server says the file has {total} bytes, not the {size} it had when first read "
                     f"(Content-Range {cr.strip()}){at}; the file changed: clear the cache")
    if start == 0 and _looks_like_html("", head):
        raise _Final(f"the server returned an HTML page, not the file{at}")


def probe_size(url: str, label: str, *, retries: int, backoff: float, timeout: float) -> int:
    """The file's size from a one-byte Range request (``Content-Range: bytes 0-0/SIZE``)."""
    import requests

    shown = _shown_url(url, label)

    def probe() -> int:
        r = requests.get(url, headers={"Range": "bytes=0-0"}, timeout=timeout, stream=True)
        try:
            head = next(r.iter_content(512), b"")
            check_range_response(r.status_code, r.headers, head, url=shown, start=0, end=0, size=None)
            total = _CONTENT_RANGE.match(r.headers["Content-Range"]).group(3)
            if total == "*":
                raise _Final(f"the server does not say the file's size (Content-Range bytes 0-0/*){_at(shown)}")
            if len(head) != 1:
                raise OSError(f"short read: got {len(head)} of 1 byte")
            return int(total)
        finally:
            r.close()

    return retrying("asking for the file size", label, probe, retries=retries, backoff=backoff, timeout=timeout)


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
    retries, backoff
        Each request is retried ``retries`` times, sleeping ``backoff * 2**k`` seconds.
    timeout
        Seconds to wait for the server to connect or send the next bytes; a timeout is final.
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
        timeout: float = DEFAULT_TIMEOUT_S,
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
        data = b"".join(self._blocks(first, last))
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

        shown = _shown_url(self.url, self.label)

        def get() -> bytes:
            self.requests_made += 1
            r = self._session.get(self.url, headers={"Range": f"bytes={start}-{end}"}, timeout=self.timeout,
                                  stream=True)
            try:
                chunks = r.iter_content(64 * 1024)
                head = next(chunks, b"") if r.status_code in (200, 206) else b""
                # headers and the first bytes are checked before the rest is read: an HTML page, or
                # the whole file in answer to a small range, is refused without downloading it
                check_range_response(r.status_code, r.headers, head, url=shown, start=start, end=end,
                                     size=self.size)
                body = head + b"".join(chunks)
            finally:
                r.close()
            if len(body) != end - start + 1:
                raise OSError(f"short read: got {len(body)} of {end - start + 1} bytes")
            return body

        body = retrying(f"reading bytes {start}-{end}", self.label, get, retries=self.retries, backoff=self.backoff,
                        timeout=self.timeout)
        self.bytes_fetched += len(body)
        for i in range(b0, b1 + 1):
            piece = body[(i - b0) * self.block_size : (i - b0 + 1) * self.block_size]
            p = self._block_path(i)
            if p is not None:
                tmp = p.with_name(f"{p.name}.{unique_suffix()}.part")  # unique: workers may share the cache
                tmp.write_bytes(piece)
                tmp.replace(p)
            self._remember(i, piece)
            out[i] = piece
