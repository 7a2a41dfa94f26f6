"""The part every local stand-in server shares: serving a handler on 127.0.0.1 from a thread."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["JSONHandler", "LoopbackServer"]

_S = TypeVar("_S", bound="LoopbackServer")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is part of the tests; anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON, keeps quiet, and ignores clients that hang up."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY every reply waits ~40 ms on the
    # client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # tests read what the server recorded
        return

    def send_json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, *, close: bool = False
    ) -> None:
        self.send_raw(status, json.dumps(payload).encode(), headers, close=close)

    def send_raw(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, *, close: bool = False
    ) -> None:
        """Answer ``body`` as given (labelled JSON: a server that breaks its own contract)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass


class LoopbackServer:
    """Start/stop and a context manager around a ``ThreadingHTTPServer`` bound to loopback only."""

    thread_name = "loopback-server"

    def _bind(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self._httpd = _QuietServer(("127.0.0.1", port), handler)
        self._serving: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self: _S) -> _S:
        if self._serving is None:
            self._serving = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() waits up to one interval
                name=self.thread_name,
                daemon=True,
            )
            self._serving.start()
        return self

    def stop(self) -> None:
        if self._serving is not None:
            self._httpd.shutdown()
            self._serving.join()
            self._serving = None
        self._httpd.server_close()

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
