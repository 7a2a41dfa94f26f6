"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol: the lightest way that
works offline (no browser download, no driver binary), with a view of every request the page makes.

``--host-resolver-rules`` makes every host name but 127.0.0.1 unresolvable, so nothing leaves the
machine even if a script tried; ``Chromium.requests`` lists what the page asked for, to assert it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from types import TracebackType
from typing import Any

from websockets.sync.client import ClientConnection, connect

__all__ = ["Chromium", "ChromiumError", "find_chromium"]


class ChromiumError(RuntimeError):
    """Chromium could not start, or the page failed: the message says why."""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """``with Chromium() as browser: browser.open(url); browser.evaluate("...")``"""

    def __init__(self, executable: str | None = None, *, start_timeout: float = 60.0) -> None:
        found = executable or find_chromium()
        if found is None:
            raise ChromiumError("chromium is not installed (apt-get install chromium)")
        self.executable = found
        self.start_timeout = start_timeout
        self.requests: list[str] = []
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self._ids = itertools.count(1)
        self._profile = tempfile.mkdtemp(prefix="segment-exposure-chromium-")
        self._process: subprocess.Popen[str] | None = None
        self._ws: ClientConnection | None = None
        self._stderr: list[str] = []
        self._stack = contextlib.ExitStack()
        self._events: list[str] = []

    def __enter__(self) -> Chromium:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        command = [
            self.executable,
            "--headless=new",
            "--no-sandbox",  # root in a container: Chromium's sandbox cannot start there
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--metrics-recording-only",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={self._profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        found = threading.Event()
        endpoint: list[str] = []

        def read_stderr() -> None:
            assert self._process is not None and self._process.stderr is not None
            for line in self._process.stderr:
                self._stderr.append(line.rstrip())
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                if match and not endpoint:
                    endpoint.append(match.group(1))
                    found.set()
            found.set()  # the process ended

        threading.Thread(target=read_stderr, name="chromium-stderr", daemon=True).start()
        if not found.wait(self.start_timeout) or not endpoint:
            code = self._process.poll()
            tail = "\n".join(self._stderr[-15:])
            state = (
                f"exited with {code}"
                if code is not None
                else f"gave no DevTools endpoint in {self.start_timeout}s"
            )
            raise ChromiumError(f"chromium could not start ({self.executable} {state}):\n{tail}")
        port = int(endpoint[0].split(":")[2].split("/")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        )
        self.call("Network.enable")
        self.call("Runtime.enable")
        self.call("Page.enable")

    # -- the protocol --------------------------------------------------------------------------------

    def call(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer, recording the events that arrive meanwhile."""
        assert self._ws is not None
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChromiumError(f"no answer to {method} within {timeout}s")
            message = json.loads(self._ws.recv(timeout=remaining))
            if message.get("id") == message_id:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._on_event(message)

    def _on_event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        self._events.append(str(method))
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled":
            texts = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self.console.append(f"{params.get('type')}: {' '.join(texts)}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.exceptions.append(
                str(details.get("exception", {}).get("description") or details.get("text"))
            )

    def wait_event(self, method: str, timeout: float = 60.0) -> None:
        """Wait until the page reports ``method`` (an event), recording the others meanwhile."""
        assert self._ws is not None
        deadline = time.monotonic() + timeout
        while method not in self._events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChromiumError(f"no {method} within {timeout}s; console: {self.console[-10:]}")
            self._on_event(json.loads(self._ws.recv(timeout=remaining)))

    def open(self, url: str, timeout: float = 60.0) -> None:
        """Navigate to ``url`` and wait for its load event."""
        self._events.clear()
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise ChromiumError(f"could not open {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of ``expression`` in the page (awaited if it is a promise), as JSON data."""
        result = self.call(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ChromiumError(f"the page failed: {text}\nconsole: {self.console[-10:]}")
        return result["result"].get("value")

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._stack.close()
            except Exception:
                pass
            self._ws = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(15)
            self._process = None
        shutil.rmtree(self._profile, ignore_errors=True)
