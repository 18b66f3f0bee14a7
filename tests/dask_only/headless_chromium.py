"""A headless Chromium for the dashboard tests, driven over the Chrome DevTools protocol.

``Chromium`` starts Debian's ``chromium`` (found on PATH) headless with its DevTools
endpoint on 127.0.0.1, and stops it and its helper processes by pid. ``Page`` speaks
the protocol to one tab over a websocket (tornado's client, which Dask already brings):
navigate, evaluate JavaScript in the page, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Optional

from tornado.websocket import websocket_connect

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]


def find() -> Optional[str]:
    """The chromium binary, or None."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser process (with its user data dir in ``tmp``)."""

    def __init__(self, binary: str, tmp: Path, window=(1280, 860)):
        self.log = tmp / "chromium.log"
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--window-size={window[0]},{window[1]}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), stdin=subprocess.DEVNULL,
            start_new_session=True,  # its zygote/renderer/utility helpers share its group
        )
        self.port = self._devtools_port(timeout=60)

    def _devtools_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self.log.read_text(errors="replace"))
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"chromium did not open its DevTools port:\n{self.log.read_text(errors='replace')[-3000:]}")

    def page_ws_url(self) -> str:
        """The websocket of the browser's first tab."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=30) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
            with urllib.request.urlopen(req, timeout=30) as r:
                pages = [json.load(r)]
        return pages[0]["webSocketDebuggerUrl"]

    def stop(self) -> None:
        """Stop the browser, then any helper process left in its process group (by the
        group the browser's pid leads)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Page:
    """The DevTools protocol on one tab (use inside ``async with``)."""

    def __init__(self, ws_url: str):
        self.ws_url = ws_url
        self.ids = itertools.count(1)

    async def __aenter__(self):
        self.ws = await websocket_connect(self.ws_url, max_message_size=64 * 1024 * 1024)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def __aexit__(self, *exc):
        self.ws.close()

    async def send(self, method: str, **params):
        msg_id = next(self.ids)
        await self.ws.write_message(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                raise ConnectionError("the DevTools websocket closed")
            msg = json.loads(raw)
            if msg.get("id") == msg_id:  # events (no id) and other replies are not ours
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && location.href === %s" % json.dumps(url))

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0):
        """Evaluate ``expression`` until it is truthy; return it (None after ``timeout``:
        a guard against hanging, not a performance goal)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.2)

    async def screenshot(self) -> bytes:
        result = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])
