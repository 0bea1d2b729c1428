"""A real headless Chromium driven over the DevTools protocol, for tests of served pages.

The report's tests only need ``--dump-dom`` of a file; the viewer's need a
user's actions (choose a filter and submit the form, follow "next"), so this
speaks the DevTools protocol over its WebSocket (``websockets``, installed
with Prefect) instead of adding a browser-automation package. Page scripts
are switched off (``Emulation.setScriptExecutionDisabled``) so every check is
of the page as a user without JavaScript gets it; the protocol's own
``Runtime.evaluate`` still reads the DOM and clicks, as a person would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--remote-debugging-port=0"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _cannot_install_chromium() -> str | None:
    """Why Debian's chromium cannot be installed on this machine, or None when it can (as ``make test`` does)."""
    if shutil.which("apt-get") is None or shutil.which("apt-cache") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install packages"
    policy = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True, text=True, timeout=60).stdout
    candidate = re.search(r"Candidate:\s*(\S+)", policy)
    if candidate is None or candidate.group(1) == "(none)":
        return "apt's package index has no chromium (apt-get update failed or no Debian repository)"
    return None


def required_chromium() -> str:
    """The headless browser for a test that needs one. Its absence fails the test wherever it could have been
    installed (``make test`` installs it), so a browser test never skips unseen; it skips, saying why, only
    where it cannot be installed."""
    found = chromium()
    if found is not None:
        return found
    why = _cannot_install_chromium()
    if why is None:
        pytest.fail("chromium is not installed, but this machine can install it: run `make test` (it installs "
                    "Debian's chromium package) or `apt-get install chromium`")
    pytest.skip(f"chromium is not installed and cannot be installed here: {why}")


class Browser:
    def __init__(self, profile: Path, scripts: bool = False, timeout: float = 60) -> None:
        binary = required_chromium()
        profile.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout)
        self._id, self.events = 0, []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method, session=True)
        if not scripts:
            self.call("Emulation.setScriptExecutionDisabled", {"value": True}, session=True)

    def call(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=self.timeout))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _loads(self) -> int:
        return sum(e.get("method") == "Page.loadEventFired" for e in self.events)

    def _wait_load(self, before: int) -> None:
        deadline = time.monotonic() + self.timeout
        while self._loads() <= before:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("page did not load")
            self.events.append(json.loads(self.ws.recv(timeout=remaining)))

    def goto(self, url: str) -> None:
        before = self._loads()
        self.call("Page.navigate", {"url": url}, session=True)
        self._wait_load(before)

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def act(self, expression: str) -> None:
        """Run a user action that navigates (a click, a form submission) and wait for the new page."""
        before = self._loads()
        self.eval(expression)
        self._wait_load(before)

    def url(self) -> str:
        return self.eval("location.href")

    def texts(self, selector: str) -> list[str]:
        return self.eval(f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent)")

    def problems(self) -> list[str]:
        """Console errors, CSP violations and page exceptions seen so far."""
        out = []
        for e in self.events:
            if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"):
                out.append(e["params"]["entry"]["text"])
            if e.get("method") in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled"):
                out.append(json.dumps(e["params"])[:300])
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # closing: the socket may already be gone
            pass
        try:
            self.ws.close()
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
