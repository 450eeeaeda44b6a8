"""Load a local HTML page in headless Chromium over the DevTools protocol (pipe transport, no network, no
extra packages): console errors, uncaught exceptions, failed loads, a JavaScript probe and a screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Pipe:
    def __init__(self, exe: str, profile: str) -> None:
        to_r, to_w = os.pipe()  # we write, chromium reads on fd 3
        from_r, from_w = os.pipe()  # chromium writes on fd 4, we read
        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "about:blank"]

        def fds() -> None:
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True)
        os.close(to_r), os.close(from_w)
        self.w, self.r = to_w, from_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def _read(self, deadline: float) -> dict:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            os.write(self.w, json.dumps({"id": 10**6, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w), os.close(self.r)


def load_page(html: Path, *, probe: str, screenshot: Path, width: int = 1280, timeout: float = 120) -> dict:
    """Open ``html`` from disk, run the JavaScript expression ``probe`` (its JSON-able value is returned as
    ``probe``), save a full-page PNG screenshot; ``errors`` lists console errors, uncaught exceptions and
    failed requests (the page must need no network)."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("no chromium")
    with tempfile.TemporaryDirectory() as profile:
        pipe = _Pipe(exe, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            sid = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.send(f"{domain}.enable", session=sid)
            pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                             "mobile": False}, session=sid)
            pipe.send("Page.navigate", {"url": Path(html).resolve().as_uri()}, session=sid)
            pipe.wait_event("Page.loadEventFired", timeout=timeout)
            value = pipe.send("Runtime.evaluate", {"expression": f"JSON.stringify({probe})", "returnByValue": True},
                              session=sid)["result"].get("value")
            shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                             session=sid, timeout=timeout)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            errors = []
            for ev in pipe.events:
                m, p = ev.get("method"), ev.get("params", {})
                if m == "Runtime.exceptionThrown":
                    errors.append(p["exceptionDetails"].get("exception", {}).get("description")
                                  or p["exceptionDetails"].get("text"))
                elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
                elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                    errors.append(p["entry"].get("text"))
                elif m == "Network.loadingFailed":
                    errors.append(f"request failed: {p.get('errorText')}")
            requests = [ev["params"]["request"]["url"] for ev in pipe.events
                        if ev.get("method") == "Network.requestWillBeSent"
                        and not ev["params"]["request"]["url"].startswith("data:")]
            return {"probe": json.loads(value) if value else None, "errors": errors, "requests": requests}
        finally:
            pipe.close()
