"""A local stand-in for DANDI and plain file hosting, for tests that must never reach the network.

`DandiStandin` runs a threaded HTTP server on 127.0.0.1 (random free port) that

* serves files under ``/files/<path>`` with HTTP Range support (206 partial content), counting the
  file bytes it sent (``bytes_served``) and the requests (``file_requests``);
* can be told to fail: ``fail_next(n)`` makes the next n file requests fail, ``fail_always(True)``
  every file request, in one of the `FAIL_MODES`: HTTP 503 (``"status"``), a dropped connection
  (``"drop"``), the right length of bytes from 1000 bytes further on with a Content-Range that says so
  (``"shift"``), an HTML page with status 200 (``"html"``), the whole file with status 200 whatever
  the Range (``"ignore-range"``), or no answer at all until the stand-in stops (``"hang"``);
  ``hang_api(True)`` makes every DANDI API request hang;
* answers the DANDI API endpoints that dandi-cli's ``DandiAPIClient`` calls for
  ``get_dandiset(id, version)``, ``.get_assets()``, ``.get_asset_by_path(path)`` and
  ``asset.get_content_url(follow_redirects=1, strip_query=True)``:
  ``/server-info``, ``/api/info/``, ``/api/dandisets/<id>/``, ``/api/dandisets/<id>/versions/<v>/info/``,
  ``/api/dandisets/<id>/versions/<v>/assets/[?path=<prefix>]``,
  ``/api/dandisets/<id>/versions/<v>/assets/<asset_id>/[info/]`` (metadata with ``contentUrl``) and
  ``/api/assets/<asset_id>/download/`` (302 to ``/files/<path>``);
* answers the Allen warehouse's RMA query for stimulus templates the way AllenSDK's
  ``EcephysProjectWarehouseApi._list_stimulus_templates`` sends it (``/api/v2/data/query.json`` with
  ``criteria=model::WellKnownFile,...well_known_file_type[name$eq'Stimulus'][attachable_type$eq'Product']
  [attachable_id$eq714914585],rma::options[start_row$eq..][num_rows$eq..]``, paged) with records
  ``{id, path, download_link, ...}`` for ``warehouse_files``, and serves
  ``/api/v2/well_known_file_download/<id>`` (counted as file requests; ``warehouse_queries`` counts queries).

Example
-------
>>> with DandiStandin(files={"sub-1/sub-1_ses-1.nwb": path}, dandiset_id="000999") as s:  # doctest: +SKIP
...     s.api_url                      # http://127.0.0.1:PORT/api  (pass as api_url=...)
...     s.dandi_url("sub-1/sub-1_ses-1.nwb")   # dandi://000999/sub-1/sub-1_ses-1.nwb
...     s.url_for("sub-1/sub-1_ses-1.nwb")     # http://127.0.0.1:PORT/files/sub-1/sub-1_ses-1.nwb
...     s.bytes_served
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["DandiStandin"]

_TS = "2026-01-01T00:00:00.000000Z"
FAIL_MODES = ("status", "drop", "shift", "html", "ignore-range", "hang")
_SHIFT = 1000


# The server runs in the test's own process, whose main thread reads the served file through h5py while
# holding h5py's global lock. A cyclic garbage collection that starts in a server thread runs the
# finalizers of earlier h5py/hdmf objects, which need that lock: the server thread waits for the client
# and the client for the server (seen as a read timeout, about one run in 30). While a stand-in runs,
# automatic cyclic collection is paused; reference counting still frees everything else, and one
# collection runs on the main thread when the last stand-in stops.
_GC_LOCK = threading.Lock()
_GC_PAUSES = [0, True]  # running stand-ins, whether collection was enabled before the first


def _pause_cyclic_gc() -> None:
    with _GC_LOCK:
        if _GC_PAUSES[0] == 0:
            _GC_PAUSES[1] = gc.isenabled()
            gc.disable()
        _GC_PAUSES[0] += 1


def _resume_cyclic_gc() -> None:
    with _GC_LOCK:
        _GC_PAUSES[0] -= 1
        if _GC_PAUSES[0] == 0 and _GC_PAUSES[1]:
            gc.enable()
            gc.collect()


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (it refused an HTML page or a whole file) is not an error here."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class DandiStandin:
    """Local HTTP server: Range file hosting with byte counting and failure injection, plus a DANDI API stand-in.

    Parameters
    ----------
    files
        Asset path in the dandiset -> local file. Served at ``/files/<asset path>`` and listed as assets.
    dandiset_id
        The dandiset's id.
    versions
        Versions that exist; "draft" always exists. A non-draft one is the most recent published.
    extra_files
        URL path under ``/files/`` -> local file, served but not listed as assets (e.g. a movie).
    warehouse_files
        Allen warehouse record path (e.g. ``/external/.../natural_movie_1.npy``) -> local file.
    """

    def __init__(
        self,
        files: dict[str, str | Path] | None = None,
        *,
        dandiset_id: str = "000999",
        versions: tuple[str, ...] = ("draft",),
        extra_files: dict[str, str | Path] | None = None,
        warehouse_files: dict[str, str | Path] | None = None,
        product_id: int = 714914585,
    ) -> None:
        self.dandiset_id = dandiset_id
        self.versions = tuple(dict.fromkeys(("draft", *versions)))
        self.assets: dict[str, Path] = {k.strip("/"): Path(v) for k, v in (files or {}).items()}
        self.hosted: dict[str, Path] = dict(self.assets)
        self.hosted.update({k.strip("/"): Path(v) for k, v in (extra_files or {}).items()})
        self.product_id = int(product_id)
        self.warehouse: list[dict] = []
        for i, (rec_path, local) in enumerate(sorted((warehouse_files or {}).items())):
            wkf_id = 900000 + i
            self.warehouse.append({"id": wkf_id, "attachable_id": self.product_id, "attachable_type": "Product",
                                   "path": rec_path, "download_link": f"/api/v2/well_known_file_download/{wkf_id}",
                                   "well_known_file_type_id": 1, "file_size": Path(local).stat().st_size})
            self.hosted[f"warehouse/{wkf_id}"] = Path(local)
        self.warehouse_queries = 0
        self._lock = threading.Lock()
        self.bytes_served = 0
        self.file_requests = 0
        self.api_requests = 0
        self.log: list[tuple[str, str, str]] = []  # (method, path, range header)
        self._fail_remaining = 0
        self._fail_always = False
        self._fail_mode = "status"
        self._api_hang = False
        self._released = threading.Event()  # set on stop: hanging handlers return
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DandiStandin:
        standin = self

        class Handler(_Handler):
            owner = standin

        _pause_cyclic_gc()
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            _resume_cyclic_gc()

    def __enter__(self) -> DandiStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    def url_for(self, path: str) -> str:
        return f"{self.base_url}/files/{quote(path.strip('/'))}"

    def dandi_url(self, path: str = "", version: str | None = None) -> str:
        v = f"@{version}" if version else ""
        return f"dandi://{self.dandiset_id}{v}/{path}" if path else f"dandi://{self.dandiset_id}{v}"

    def add_file(self, url_path: str, local: str | Path, *, asset: bool = False) -> None:
        with self._lock:
            self.hosted[url_path.strip("/")] = Path(local)
            if asset:
                self.assets[url_path.strip("/")] = Path(local)

    # ------------------------------------------------------------------ failures and counters
    def fail_next(self, n: int, *, mode: str = "status") -> None:
        """The next ``n`` file requests fail in ``mode`` (one of `FAIL_MODES`)."""
        assert mode in FAIL_MODES, mode
        with self._lock:
            self._fail_remaining, self._fail_mode = int(n), mode

    def fail_always(self, on: bool = True, *, mode: str = "status") -> None:
        assert mode in FAIL_MODES, mode
        with self._lock:
            self._fail_always, self._fail_mode = bool(on), mode

    def hang_api(self, on: bool = True) -> None:
        """Every DANDI API request (not file requests) gets no answer until the stand-in stops."""
        with self._lock:
            self._api_hang = bool(on)

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_served = self.file_requests = self.api_requests = 0
            self.log.clear()

    def _should_fail(self) -> str | None:
        with self._lock:
            if self._fail_always:
                return self._fail_mode
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_mode
        return None

    # ------------------------------------------------------------------ API records
    @staticmethod
    def asset_id(path: str) -> str:
        h = hashlib.sha1(path.encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def _asset_record(self, path: str) -> dict:
        return {
            "asset_id": self.asset_id(path), "blob": hashlib.md5(path.encode()).hexdigest(), "zarr": None,
            "path": path, "size": self.assets[path].stat().st_size, "created": _TS, "modified": _TS,
        }

    def _version_record(self, v: str) -> dict:
        return {
            "version": v, "name": "stand-in dandiset", "asset_count": len(self.assets),
            "size": sum(p.stat().st_size for p in self.assets.values()), "created": _TS, "modified": _TS,
            "status": "Published" if v != "draft" else "Valid",
        }

    def _dandiset_record(self) -> dict:
        published = [v for v in self.versions if v != "draft"]
        return {
            "identifier": self.dandiset_id, "created": _TS, "modified": _TS, "contact_person": "Stand-in",
            "embargo_status": "OPEN",
            "most_recent_published_version": self._version_record(published[-1]) if published else None,
            "draft_version": self._version_record("draft"),
        }

    def _asset_metadata(self, path: str) -> dict:
        aid = self.asset_id(path)
        return {
            "id": f"dandiasset:{aid}", "identifier": aid, "path": path,
            "contentSize": self.assets[path].stat().st_size, "encodingFormat": "application/x-nwb",
            "contentUrl": [f"{self.api_url}/assets/{aid}/download/", self.url_for(path)],
        }


class _Handler(BaseHTTPRequestHandler):
    owner: DandiStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # ------------------------------------------------------------------ helpers
    def _json(self, obj, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self) -> None:
        self._json({"detail": "Not found."}, 404)

    # ------------------------------------------------------------------ routing
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        o = self.owner
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with o._lock:
            o.log.append((self.command, self.path, self.headers.get("Range", "")))
        if path.startswith("/files/"):
            return self._file(path[len("/files/") :])
        m = re.fullmatch(r"/api/v2/well_known_file_download/(\d+)", path)
        if m:
            return self._file(f"warehouse/{m.group(1)}")
        if path == "/api/v2/data/query.json":
            return self._rma(unquote(url.query))
        with o._lock:
            o.api_requests += 1
            hang = o._api_hang
        if hang:
            o._released.wait(120)
            return None
        if path in ("/server-info", "/api/info/", "/api/info"):
            return self._json({
                "version": "0.0.0-standin", "cli-minimal-version": "0.0.0", "cli-bad-versions": [],
                "services": {"api": {"url": o.api_url}, "webui": {"url": o.base_url}, "jupyterhub": None},
            })
        m = re.fullmatch(r"/api/assets/([^/]+)/download/?", path)
        if m:
            for p in o.assets:
                if o.asset_id(p) == m.group(1):
                    self.send_response(302)
                    self.send_header("Location", o.url_for(p))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
            return self._not_found()
        m = re.fullmatch(r"/api/dandisets/([^/]+)/?(.*)", path)
        if not m or m.group(1) != o.dandiset_id:
            return self._not_found()
        rest = m.group(2).strip("/")
        if rest == "":
            return self._json(o._dandiset_record())
        m = re.fullmatch(r"versions/([^/]+)(?:/(.*))?", rest)
        if not m or m.group(1) not in o.versions:
            return self._not_found()
        version, tail = m.group(1), (m.group(2) or "").strip("/")
        if tail in ("", "info"):
            rec = o._version_record(version)
            if tail == "info":
                rec.update(asset_validation_errors=[], version_validation_errors=[])
            return self._json(rec)
        if tail == "assets":
            prefix = query.get("path", "")
            results = [o._asset_record(p) for p in sorted(o.assets) if p.startswith(prefix)]
            return self._json({"count": len(results), "next": None, "previous": None, "results": results})
        m = re.fullmatch(r"assets/([^/]+)(/info)?", tail)
        if m:
            for p in o.assets:
                if o.asset_id(p) == m.group(1):
                    if m.group(2):
                        rec = o._asset_record(p)
                        rec["metadata"] = o._asset_metadata(p)
                        return self._json(rec)
                    return self._json(o._asset_metadata(p))
        return self._not_found()

    def _rma(self, query: str) -> None:
        """The Allen RMA query: the stimulus-template records of the product, paged like the warehouse."""
        o = self.owner
        with o._lock:
            o.warehouse_queries += 1
        wanted = ("criteria=model::WellKnownFile,rma::criteria,well_known_file_type[name$eq'Stimulus']"
                  f"[attachable_type$eq'Product'][attachable_id$eq{o.product_id}]")
        rows = o.warehouse if query.startswith(wanted) else []
        start = re.search(r"\[start_row\$eq(\d+)\]", query)
        count = re.search(r"\[num_rows\$eq(\d+)\]", query)
        a = int(start.group(1)) if start else 0
        page = rows[a: a + int(count.group(1))] if count else rows[a:]
        return self._json({"success": True, "id": 0, "start_row": a, "num_rows": len(page),
                           "total_rows": len(rows), "msg": page})

    def _file(self, rel: str) -> None:
        o = self.owner
        with o._lock:
            o.file_requests += 1
            local = o.hosted.get(rel.strip("/"))
        mode = o._should_fail()
        if mode == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if mode == "status":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "hang":
            o._released.wait(120)
            return
        if mode == "html":
            page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if local is None or not local.exists():
            return self._not_found()
        size = local.stat().st_size
        rng = None if mode == "ignore-range" else self.headers.get("Range")
        start, end = 0, size - 1
        status = 200
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if m.group(1) == "":  # suffix range
                start, end = max(0, size - int(m.group(2))), size - 1
            else:
                start = int(m.group(1))
                end = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
            if mode == "shift" and end + _SHIFT < size:
                start, end = start + _SHIFT, end + _SHIFT
        length = end - start + 1
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(local, "rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                chunk = fh.read(min(left, 256 * 1024))
                if not chunk:
                    break
                # Counted before the write: once the client has the last byte it may read
                # the counter before this thread runs again (a race CI hit).
                with o._lock:
                    o.bytes_served += len(chunk)
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                left -= len(chunk)
