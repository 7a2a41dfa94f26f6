"""A local stand-in for Segment's tracking API (``POST /v1/batch``), with fault injection.

It enforces what the real API enforces and a client can trip over (the write key, as Basic auth
or as the body's ``writeKey``; 32 KB per message, 500 KB per batch) and records what it accepted,
so tests assert on what really crossed the wire rather than on what a mock was called with. For
analytics.js in a real browser it also takes single events (``/v1/t``, ``/v1/p``, ``/v1/i`` ..., as
analytics.js sends them, with CORS) and serves the CDN settings
(``GET /v1/projects/<write key>/settings``) that send them here.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._loopback import JSONHandler, LoopbackServer

__all__ = ["CollectorFault", "SegmentCollector"]

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
#: The single-event paths analytics.js posts to (``/v1/<first letter of the type>``), and their long names.
SINGLE_EVENT_PATHS = frozenset(
    f"/v1/{name}" for t in ("track", "page", "identify", "group", "alias", "screen") for name in (t, t[0])
)


@dataclass
class CollectorFault:
    """One injected fault: ``kind`` is ``"status"``, ``"reset"``, ``"slow"``, ``"trickle"`` or ``"hang"``.

    It applies to the next ``count`` requests (``None``: until ``until`` passes or it is cleared).
    """

    kind: str
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    count: int | None = 1
    until: float | None = None
    #: ``"trickle"``: the answer's body is padded with spaces to this many bytes.
    size: int = 0
    #: ``"trickle"``: the status line and headers are trickled too, not sent at once.
    whole: bool = False


class SegmentCollector(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 that speaks Segment's ``/v1/batch``.

    Use it as a context manager, point a Segment client's ``host`` at ``collector.url`` and assert on
    ``collector.messages``. ``on_batch`` (optional) receives each accepted batch's messages; if it raises
    the collector answers 500, so the sender retries, as it would if Segment itself failed.
    """

    thread_name = "segment-collector"

    def __init__(
        self,
        write_key: str | None = None,
        *,
        on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        port: int = 0,
    ) -> None:
        self.write_key = write_key
        self.on_batch = on_batch
        self.batches: list[list[dict[str, Any]]] = []
        self.requests = 0
        self.rejected: list[tuple[int, str]] = []
        self._faults: list[CollectorFault] = []
        self._cond = threading.Condition()
        self._released = threading.Event()  # ends every "hang" (up(), stop())
        self._bind(_handler_for(self), port)

    # -- faults --------------------------------------------------------------------------------------

    def fail(
        self,
        status: int = 503,
        *,
        count: int | None = 1,
        seconds: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer ``status`` to the next ``count`` requests, or to every request for ``seconds``."""
        self._add(
            CollectorFault(
                "status",
                status=status,
                retry_after=retry_after,
                count=None if seconds else count,
                until=self._until(seconds),
            )
        )

    def rate_limit(self, retry_after: float = 1, *, count: int | None = 1) -> None:
        """Answer 429 with ``Retry-After`` to the next ``count`` requests."""
        self.fail(429, count=count, retry_after=retry_after)

    def reset(self, *, count: int | None = 1, seconds: float | None = None) -> None:
        """Abort the next ``count`` connections with a TCP reset, before answering."""
        self._add(CollectorFault("reset", count=None if seconds else count, until=self._until(seconds)))

    def slow(self, delay: float, *, count: int | None = 1, seconds: float | None = None) -> None:
        """Delay the next ``count`` responses by ``delay`` seconds (the batch is still accepted)."""
        self._add(
            CollectorFault("slow", delay=delay, count=None if seconds else count, until=self._until(seconds))
        )

    def trickle(self, interval: float, *, size: int = 64, whole: bool = False, count: int | None = 1) -> None:
        """Accept the next ``count`` batches, then answer them one byte every ``interval`` seconds.

        The body is padded to ``size`` bytes; with ``whole`` the status line and headers are trickled
        too. A client's per-read timeout restarts with every byte, so only a deadline on the whole
        exchange ends it before ``size * interval`` seconds.
        """
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._add(CollectorFault("trickle", delay=interval, size=size, whole=whole, count=count))

    def hang(self, *, count: int | None = 1) -> None:
        """Read the next ``count`` requests and never answer them (nor accept their batches) until
        ``up()`` or ``stop()``, which close their connections unanswered."""
        self._released.clear()
        self._add(CollectorFault("hang", count=count))

    def down(self) -> None:
        """Answer 503 to everything until ``up()``: an outage of unknown length."""
        self._add(CollectorFault("status", status=503, count=None))

    def up(self) -> None:
        """End every injected fault (a hanging request's connection is closed unanswered)."""
        with self._cond:
            self._faults.clear()
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        super().stop()

    @staticmethod
    def _until(seconds: float | None) -> float | None:
        return None if seconds is None else time.monotonic() + seconds

    def _add(self, fault: CollectorFault) -> None:
        with self._cond:
            self._faults.append(fault)

    def _take_fault(self) -> CollectorFault | None:
        with self._cond:
            now = time.monotonic()
            self._faults = [f for f in self._faults if f.until is None or f.until > now]
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.pop(0)
            return fault

    # -- what was received ---------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, in arrival order (a resent batch appears again)."""
        with self._cond:
            return [m for batch in self.batches for m in batch]

    def unique_messages(self) -> dict[str, dict[str, Any]]:
        """Accepted messages by ``messageId``, first copy kept: what Segment passes downstream."""
        unique: dict[str, dict[str, Any]] = {}
        for message in self.messages:
            unique.setdefault(message.get("messageId", ""), message)
        return unique

    def events(self, name: str = "$exposure") -> list[dict[str, Any]]:
        """Accepted track messages named ``name``, duplicates by ``messageId`` removed."""
        return [m for m in self.unique_messages().values() if m.get("event") == name]

    def wait_for(self, count: int, timeout: float = 10.0, *, unique: bool = True) -> bool:
        """Wait until at least ``count`` messages were accepted; False if ``timeout`` passes first."""
        deadline = time.monotonic() + timeout

        def have() -> int:
            if unique:
                return len({m.get("messageId") for batch in self.batches for m in batch})
            return sum(len(b) for b in self.batches)

        with self._cond:
            while have() < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def clear(self) -> None:
        with self._cond:
            self.batches.clear()
            self.rejected.clear()
            self.requests = 0

    # -- request handling ----------------------------------------------------------------------------

    def cdn_settings(self) -> dict[str, Any]:
        """What Segment's CDN serves analytics.js for this source: send everything to this collector."""
        host, port = self._httpd.server_address[:2]
        everything = {"__default": {"enabled": True, "integrations": {}}}
        return {
            "integrations": {
                "Segment.io": {
                    "apiKey": self.write_key or "",
                    "apiHost": f"{host!s}:{port}/v1",
                    "protocol": "http",
                    "unbundledIntegrations": [],
                    "addBundledMetadata": True,
                    "maybeBundledConfigIds": {},
                }
            },
            "plan": {"track": everything, "identify": everything, "group": everything},
            "edgeFunction": {},
            "analyticsNextEnabled": True,
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "metrics": {"sampleRate": 0},  # analytics.js would report its own metrics to Segment's host
            "legacyVideoPluginsEnabled": False,
            "remotePlugins": [],
        }

    def _accept_single(self, headers: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
        """One analytics.js event: its type is in the path; the write key in a header or the body."""
        try:
            message = json.loads(raw)
        except ValueError:
            return 400, {"code": "invalid_request", "message": "body is not JSON"}
        if not isinstance(message, dict):
            return 400, {"code": "invalid_request", "message": "message is not an object"}
        body_key = message.get("writeKey")
        if self.write_key is not None and body_key != self.write_key and not self._authorized(headers):
            return 401, {"code": "unauthorized", "message": "invalid write key"}
        batch = json.dumps({"batch": [message]}).encode()
        return self._accept(headers, batch, authorized=True)

    def _authorized(self, headers: Any) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        return bool(headers.get("Authorization") == expected)

    def _accept(self, headers: Any, raw: bytes, *, authorized: bool = False) -> tuple[int, dict[str, Any]]:
        # The real API takes the write key as Basic auth or as the body's ``writeKey`` (which
        # segment-analytics-python 2.3.x relies on: it sends no Authorization header).
        authorized = authorized or self.write_key is None or self._authorized(headers)
        if headers.get("Content-Encoding") == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return _invalid("bad gzip body") if authorized else _unauthorized()
        if len(raw) > MAX_BATCH_BYTES:
            return _invalid("batch over 500KB") if authorized else _unauthorized()
        try:
            body = json.loads(raw)
        except ValueError:
            return _invalid("body is not JSON") if authorized else _unauthorized()
        if not authorized and not (isinstance(body, dict) and body.get("writeKey") == self.write_key):
            return _unauthorized()
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list):
            return 400, {"code": "invalid_request", "message": "no batch"}
        for message in batch:
            if not isinstance(message, dict):
                return 400, {"code": "invalid_request", "message": "message is not an object"}
            if len(json.dumps(message).encode()) > MAX_MESSAGE_BYTES:
                return 400, {"code": "invalid_request", "message": "message over 32KB"}
        if self.on_batch is not None:
            try:
                self.on_batch(batch)
            except Exception as exc:
                return 500, {"code": "downstream", "message": type(exc).__name__}
        with self._cond:
            self.batches.append(batch)
            self._cond.notify_all()
        return 200, {"success": True}


def _invalid(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"code": "invalid_request", "message": message}


def _unauthorized() -> tuple[int, dict[str, Any]]:
    return 401, {"code": "unauthorized", "message": "invalid write key"}


def _handler_for(collector: SegmentCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        def _cors(self) -> dict[str, str]:
            # Segment's API answers browsers from any origin; so does this stand-in.
            origin = self.headers.get("Origin")
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}

        def send_json(
            self, status: int, payload: Any, headers: dict[str, str] | None = None, *, close: bool = False
        ) -> None:
            super().send_json(status, payload, {**self._cors(), **(headers or {})}, close=close)

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            for name, value in self._cors().items():
                self.send_header(name, value)
            self.send_header("Access-Control-Allow-Methods", "GET, POST")
            requested = self.headers.get("Access-Control-Request-Headers")
            if requested:
                self.send_header("Access-Control-Allow-Headers", requested)
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == f"/v1/projects/{collector.write_key}/settings":
                self.send_json(200, collector.cdn_settings())
            else:
                self.send_json(404, {"code": "not_found", "message": path})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with collector._cond:
                collector.requests += 1
            path = self.path.split("?", 1)[0].rstrip("/")
            single = path in SINGLE_EVENT_PATHS
            if path != "/v1/batch" and not single:
                self.send_json(404, {"code": "not_found", "message": self.path})
                return
            fault = collector._take_fault()
            if fault is not None and fault.kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if fault is not None and fault.kind == "status":
                headers = (
                    {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else {}
                )
                self.send_json(
                    fault.status, {"code": "injected", "message": f"injected {fault.status}"}, headers
                )
                return
            if fault is not None and fault.kind == "hang":
                collector._released.wait()
                self.close_connection = True
                return
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay)
            if single:
                status, payload = collector._accept_single(self.headers, raw)
            else:
                status, payload = collector._accept(self.headers, raw)
            if status != 200:
                with collector._cond:
                    collector.rejected.append((status, payload.get("message", "")))
            if fault is not None and fault.kind == "trickle":
                self._trickle(status, payload, fault)
                return
            self.send_json(status, payload)

        def _trickle(self, status: int, payload: dict[str, Any], fault: CollectorFault) -> None:
            """Answer a byte every ``fault.delay`` seconds; stop when the client has gone."""
            body = json.dumps(payload).encode().ljust(fault.size)
            head = (
                f"HTTP/1.1 {status} {self.responses[status][0]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            self.close_connection = True
            try:
                if not fault.whole:
                    self.wfile.write(head)
                    self.wfile.flush()
                rest = head + body if fault.whole else body
                for i in range(len(rest)):
                    time.sleep(fault.delay)  # the fault is this pace: each byte alone on the wire
                    self.wfile.write(rest[i : i + 1])
                    self.wfile.flush()
            except OSError:
                pass  # the client gave up (its deadline): nothing more to trickle

    return Handler
