"""A local stand-in for Segment's tracking API (``POST /v1/batch``), with fault injection.

It enforces what the real API enforces and a client can trip over (the write key, as Basic auth
or as the body's ``writeKey``; 32 KB per message, 500 KB per batch) and records what it accepted,
so tests assert on what really crossed the wire rather than on what a mock was called with. For
analytics.js in a real browser it also takes single events (``/v1/t``, ``/v1/p``, ``/v1/i`` ..., as
analytics.js sends them, with CORS) and serves the CDN settings
(``GET /v1/projects/<write key>/settings``) that send them here.

``RudderStackCollector`` is the same server with RudderStack's data-plane rules (:data:`RUDDERSTACK`): the
write key only as Basic auth, 4000 KiB per request, and 413 for anything larger. The rules are a value
(:class:`CollectorRules`) rather than a subclass hook, so both collectors share every line of handling.
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

__all__ = [
    "RUDDERSTACK",
    "SEGMENT",
    "CollectorFault",
    "CollectorRules",
    "RudderStackCollector",
    "SegmentCollector",
]

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
#: rudder-server's default ``Gateway.maxReqSizeInKB`` (4000) times 1024. rudder-sdk-python's own checks are
#: 4 MiB (4 << 20), a little more: a message or batch between the two passes the SDK and is refused here.
RUDDERSTACK_MAX_REQUEST_BYTES = 4000 * 1024
#: The single-event paths analytics.js posts to (``/v1/<first letter of the type>``), and their long names.
SINGLE_EVENT_PATHS = frozenset(
    f"/v1/{name}" for t in ("track", "page", "identify", "group", "alias", "screen") for name in (t, t[0])
)


@dataclass(frozen=True)
class CollectorRules:
    """What a collector refuses, and how it says so: the part where Segment and RudderStack differ.

    Attributes:
        name: the service imitated, for messages.
        max_message_bytes: the largest message (its JSON, in UTF-8) accepted.
        max_batch_bytes: the largest request body accepted, after gzip is undone.
        too_large_status: the status for a message or batch over its limit.
        too_large_message: the message answered with it (``{limit}`` is filled in).
        body_write_key: whether the body's ``writeKey`` authenticates too (Segment), or only Basic auth
            with the write key as the user does (RudderStack).
    """

    name: str
    max_message_bytes: int
    max_batch_bytes: int
    too_large_status: int
    too_large_message: str
    body_write_key: bool


#: Segment's tracking API: 32 KB per message, 500 KB per batch, 400 for either; write key in auth or body.
SEGMENT = CollectorRules(
    "Segment",
    max_message_bytes=MAX_MESSAGE_BYTES,
    max_batch_bytes=MAX_BATCH_BYTES,
    too_large_status=400,
    too_large_message="{what} over {limit}KB",
    body_write_key=True,
)

#: RudderStack's data plane (rudder-server's gateway): one 4000 KiB limit, 413 "Request size exceeds max
#: limit", and the write key only as Basic auth ("Failed to read writeKey from header" without it).
RUDDERSTACK = CollectorRules(
    "RudderStack",
    max_message_bytes=RUDDERSTACK_MAX_REQUEST_BYTES,
    max_batch_bytes=RUDDERSTACK_MAX_REQUEST_BYTES,
    too_large_status=413,
    too_large_message="Request size exceeds max limit",
    body_write_key=False,
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
    the collector answers 500, so the sender retries, as it would if Segment itself failed. ``rules``
    selects whose limits and authentication it enforces (:data:`SEGMENT` by default, :data:`RUDDERSTACK`).
    """

    thread_name = "segment-collector"

    def __init__(
        self,
        write_key: str | None = None,
        *,
        on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        port: int = 0,
        rules: CollectorRules = SEGMENT,
    ) -> None:
        self.write_key = write_key
        self.on_batch = on_batch
        self.rules = rules
        self.batches: list[list[dict[str, Any]]] = []
        self.requests = 0
        #: Requests whose body came gzipped (``Content-Encoding: gzip``), accepted or not.
        self.gzipped_requests = 0
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
            self.gzipped_requests = 0

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
        body_key = message.get("writeKey") if self.rules.body_write_key else None
        if self.write_key is not None and body_key != self.write_key and not self._authorized(headers):
            return self._unauthorized(headers)
        batch = json.dumps({"batch": [message]}).encode()
        return self._accept(headers, batch, authorized=True)

    def _authorized(self, headers: Any) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        return bool(headers.get("Authorization") == expected)

    def _unauthorized(self, headers: Any) -> tuple[int, dict[str, Any]]:
        if not self.rules.body_write_key and not headers.get("Authorization"):
            return 401, {"code": "unauthorized", "message": "Failed to read writeKey from header"}
        return 401, {"code": "unauthorized", "message": "invalid write key"}

    def _too_large(self, what: str, limit: int) -> tuple[int, dict[str, Any]]:
        message = self.rules.too_large_message.format(what=what, limit=limit // 1024)
        return self.rules.too_large_status, {"code": "invalid_request", "message": message}

    def _accept(self, headers: Any, raw: bytes, *, authorized: bool = False) -> tuple[int, dict[str, Any]]:
        # Segment takes the write key as Basic auth or as the body's ``writeKey`` (which
        # segment-analytics-python 2.3.x relies on: it sends no Authorization header); RudderStack only
        # as Basic auth.
        rules = self.rules
        authorized = authorized or self.write_key is None or self._authorized(headers)
        if not authorized and not rules.body_write_key:
            return self._unauthorized(headers)
        if headers.get("Content-Encoding") == "gzip":
            with self._cond:
                self.gzipped_requests += 1
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return _invalid("bad gzip body") if authorized else self._unauthorized(headers)
        if len(raw) > rules.max_batch_bytes:
            return (
                self._too_large("batch", rules.max_batch_bytes) if authorized else self._unauthorized(headers)
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return _invalid("body is not JSON") if authorized else self._unauthorized(headers)
        if not authorized and not (isinstance(body, dict) and body.get("writeKey") == self.write_key):
            return self._unauthorized(headers)
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list):
            return 400, {"code": "invalid_request", "message": "no batch"}
        for message in batch:
            if not isinstance(message, dict):
                return 400, {"code": "invalid_request", "message": "message is not an object"}
            if len(json.dumps(message).encode()) > rules.max_message_bytes:
                return self._too_large("message", rules.max_message_bytes)
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


class RudderStackCollector(SegmentCollector):
    """A local stand-in for RudderStack's data plane (``POST /v1/batch``): :class:`SegmentCollector` with
    :data:`RUDDERSTACK`'s rules.

    Point ``rudderstack.analytics.Client(write_key, host=collector.url)`` at it. It takes gzipped bodies
    (the SDK gzips by default), wants the write key as Basic auth, and answers 413 to a request whose body
    is over 4000 KiB once unzipped, as rudder-server's gateway does by default.
    """

    thread_name = "rudderstack-collector"

    def __init__(
        self,
        write_key: str | None = None,
        *,
        on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(write_key, on_batch=on_batch, port=port, rules=RUDDERSTACK)


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
