"""A local emulator of Amplitude's ingestion APIs (HTTP V2 and Batch), with fault injection.

Why: delivery code is only as good as its behaviour when Amplitude says no, says nothing, or says yes and
then fails. This server implements the documented contract on ``127.0.0.1`` so that every answer can be
produced on demand, in any test suite, without an account or the internet. Standard library only.

Endpoints: ``POST /2/httpapi`` and ``POST /batch``, body ``{"api_key", "events", "options"}``, optionally
``Content-Encoding: gzip``. Each request is checked, throttled and ingested as
`segment_exposure.emulators.amplitude_contract` describes.

Faults (`AmplitudeEmulator.inject`) apply to the next requests in order, one per request:

``ok`` (a normal answer: use it to build a schedule), ``500``/``502``/``504``/``503`` (that status, nothing
ingested), ``500_after_ingest`` (ingests, then answers 500 or ``status``: the client's retry makes
duplicates the dedupe must drop), ``reset`` and ``reset_after_ingest`` (the connection is aborted with a
TCP RST, before or after ingesting), ``slow`` (waits ``delay`` seconds, then answers normally), ``non_json``
(an HTML body with ``status``, default 200; ingested when the status is 2xx unless ``ingest`` says
otherwise), ``403``, ``413`` and ``429`` (every event throttled). Any fault accepts ``delay``, and
``retry_after`` (a ``Retry-After`` header value sent with the answer).

A request in absolute form (``POST http://host/2/httpapi``, as a client sends it to an HTTP proxy) is served
as if the emulator were that proxy and the host: `RecordedRequest.proxied` tells it apart.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from segment_exposure.emulators._loopback import JSONHandler
from segment_exposure.emulators.amplitude_contract import AmplitudeContract
from segment_exposure.emulators.amplitude_faults import FAULTS, Fault, Queued, make_fault

__all__ = ["FAULTS", "AmplitudeEmulator", "RecordedRequest"]

_PATHS = {"/2/httpapi": "http", "/batch": "batch"}
_HTML = "<html><head><title>{0}</title></head><body><h1>{0}</h1><p>upstream error</p></body></html>"
_STATUS_TEXT = {
    403: "Forbidden",
    413: "Payload too large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the emulator answered: ``status`` 0 means the connection was reset."""

    path: str
    status: int
    events: int
    fault: str | None
    client_port: int
    gzip: bool
    proxied: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: AmplitudeEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are part of the tests; don't print tracebacks for them."""


class _Handler(JSONHandler):
    server_version = "AmplitudeEmulator/1"
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track_connection(self.connection, add=False)

    def do_POST(self) -> None:
        self.server.emulator._serve(self)

    def do_GET(self) -> None:
        self.server.emulator._send(self, 404, {"code": 404, "error": "Not Found"})


class AmplitudeEmulator(AmplitudeContract):
    """Amplitude's ``/2/httpapi`` and ``/batch`` on ``127.0.0.1``, with dedupe, throttling and faults.

    Use it as a context manager (or call `start` and `stop`):

        with AmplitudeEmulator(api_keys={"test-key"}) as amplitude:
            client = AmplitudeClient("test-key", endpoint=amplitude.http_api_url)
            amplitude.inject("503", count=2)
            client.send(events)
            assert amplitude.wait_for_ingested(len(events), timeout=5)

    ``api_keys``: the valid keys (``None`` accepts any non-empty key). ``eps_threshold`` and
    ``throttle_window`` (and ``batch_*`` for ``/batch``) set the per-user and per-device sliding window,
    ``daily_quota`` a per-id total (``None``: unlimited). ``index_map_limit`` makes 400 answers name only the
    first N bad events, as Amplitude may. ``ssl_context`` (a server context with a certificate) serves HTTPS.
    The settings are plain attributes and may be changed while running.
    All methods are thread-safe.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Collection[str] | None = None,
        eps_threshold: float = 30,
        throttle_window: float = 1.0,
        batch_eps_threshold: float = 1000,
        batch_throttle_window: float = 30.0,
        daily_quota: int | None = None,
        max_events_per_request: int = 2000,
        http_max_body_bytes: int = 999_999,
        batch_max_body_bytes: int = 20_000_000,
        index_map_limit: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            api_keys=api_keys,
            eps_threshold=eps_threshold,
            throttle_window=throttle_window,
            batch_eps_threshold=batch_eps_threshold,
            batch_throttle_window=batch_throttle_window,
            daily_quota=daily_quota,
            max_events_per_request=max_events_per_request,
            http_max_body_bytes=http_max_body_bytes,
            batch_max_body_bytes=batch_max_body_bytes,
            index_map_limit=index_map_limit,
        )
        self.host = host
        self.ssl_context = ssl_context
        self.port = port
        self._faults: deque[Queued] = deque()
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> AmplitudeEmulator:
        """Bind (port 0 picks a free port) and serve on a background thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        server = _Server((self.host, self.port), self)
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="amplitude-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, interrupt slow faults and close open connections."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> AmplitudeEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"AmplitudeEmulator(url={self.url!r}, {state}, ingested={self.ingested_count})"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` with an ``ssl_context``)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def http_api_url(self) -> str:
        """The HTTP V2 endpoint, ``<url>/2/httpapi``."""
        return self.url + "/2/httpapi"

    @property
    def batch_url(self) -> str:
        """The Batch endpoint, ``<url>/batch``."""
        return self.url + "/batch"

    # -- faults --------------------------------------------------------------------------------------

    def inject(
        self,
        fault: str,
        count: int | None = 1,
        *,
        status: int | None = None,
        delay: float | None = None,
        ingest: bool | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``count`` requests, after the faults injected before it.

        ``count=None`` applies it to every request until `clear_faults` (an outage). ``status``
        overrides the answer's status, ``delay`` waits first, ``ingest`` says whether the events are
        ingested before the fault (defaults: see the module's documentation), ``retry_after`` is sent as
        the answer's ``Retry-After`` header.
        """
        spec = make_fault(fault, status=status, delay=delay, ingest=ingest, retry_after=retry_after)
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        with self._cond:
            if count is None or count:
                self._faults.append(Queued(spec, count))

    def schedule(self, faults: Iterable[str | None]) -> None:
        """One fault per coming request, in order; ``None`` or ``"ok"`` is a normal answer."""
        for fault in faults:
            self.inject(fault or "ok")

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    @property
    def pending_faults(self) -> int | None:
        """Requests still to be faulted; ``None`` while a ``count=None`` fault is queued."""
        with self._cond:
            total = 0
            for entry in self._faults:
                if entry.remaining is None:
                    return None
                total += entry.remaining
            return total

    # -- observations --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request answered (or reset), in order."""
        with self._cond:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._cond:
            return len(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were answered; False if ``timeout`` passes first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= count, timeout)

    def reset(self) -> None:
        """Forget ingested events, duplicates, windows, quotas, requests and pending faults."""
        with self._cond:
            self._ingested.clear()
            self._seen.clear()
            self._duplicates = 0
            self._windows.clear()
            self._daily.clear()
            self._faults.clear()
            self._requests.clear()

    # -- serving -------------------------------------------------------------------------------------

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._cond:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, handler: _Handler, path: str, status: int, events: int, fault: Fault | None) -> None:
        record = RecordedRequest(
            path=path,
            status=status,
            events=events,
            fault=fault.kind if fault is not None else None,
            client_port=int(handler.client_address[1]),
            gzip=handler.headers.get("Content-Encoding", "").lower() == "gzip",
            proxied=handler.path.startswith(("http://", "https://")),
        )
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()

    def _send(
        self,
        handler: _Handler,
        status: int,
        payload: dict[str, Any] | str,
        *,
        html: bool = False,
        retry_after: str | None = None,
    ) -> None:
        if isinstance(payload, str):
            data = payload.encode()
            content_type = "text/html; charset=utf-8" if html else "text/plain"
        else:
            data = json.dumps(payload).encode()
            content_type = "application/json"
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                handler.send_header("Retry-After", retry_after)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            handler.close_connection = True  # the client gave up (e.g. timed out): nothing to answer

    @staticmethod
    def _abort(handler: _Handler) -> None:
        """Reset the connection: SO_LINGER 0 makes close() send RST instead of FIN."""
        handler.close_connection = True
        conn = handler.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        conn.close()
        handler.rfile.close()

    def _take_fault(self) -> Fault | None:
        with self._cond:
            if not self._faults:
                return None
            entry = self._faults[0]
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    self._faults.popleft()
            return entry.fault

    def _serve(self, handler: _Handler) -> None:
        """Answer one POST. Each request is recorded before its answer leaves, so a client that has its
        answer can already see the request in `requests`."""
        path = handler.path.split("?", 1)[0]
        if path.startswith(("http://", "https://")):
            path = "/" + path.split("://", 1)[1].partition("/")[2]  # absolute form: as a proxy gets it
        length_header = handler.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            handler.close_connection = True
            self._record(handler, path, 411, 0, None)
            self._send(handler, 411, {"code": 411, "error": "Length Required"})
            return
        raw = handler.rfile.read(int(length_header))
        api = _PATHS.get(path)
        if api is None:
            self._record(handler, path, 404, 0, None)
            self._send(handler, 404, {"code": 404, "error": "Not Found"})
            return
        encoding = handler.headers.get("Content-Encoding", "")
        fault = self._take_fault()
        if fault is not None and fault.delay > 0:
            self._stopping.wait(fault.delay)
        if fault is None or fault.kind in ("ok", "slow"):
            status, payload, events = self._process(api, raw, encoding)
            self._record(handler, path, status, events, fault)
            self._send(handler, status, payload)
            return
        events = 0
        if fault.ingest:
            _, _, events = self._process(api, raw, encoding)
        kind = fault.kind
        if kind in ("reset", "reset_after_ingest"):
            self._record(handler, path, 0, events, fault)
            self._abort(handler)
        elif kind == "non_json":
            self._record(handler, path, fault.status, events, fault)
            text = _HTML.format(f"{fault.status} {_STATUS_TEXT.get(fault.status, '')}")
            self._send(handler, fault.status, text, html=True, retry_after=fault.retry_after)
        elif kind == "429":
            count = self._count_events(raw, encoding)
            self._record(handler, path, 429, count, fault)
            answer = {
                "code": 429,
                "error": "Too many requests for some devices and users",
                "eps_threshold": self.eps_threshold,
                "throttled_devices": {},
                "throttled_users": {},
                "throttled_events": list(range(count)),
                "exceeded_daily_quota_users": {},
                "exceeded_daily_quota_devices": {},
            }
            self._send(handler, 429, answer, retry_after=fault.retry_after)
        else:
            status = fault.status
            self._record(handler, path, status, events, fault)
            error = {"code": status, "error": _STATUS_TEXT.get(status, "Error")}
            self._send(handler, status, error, retry_after=fault.retry_after)

    def _count_events(self, raw: bytes, encoding: str) -> int:
        try:
            body = json.loads(self._decode(raw, encoding))
            events = body.get("events") if isinstance(body, dict) else None
        except (ValueError, OSError, EOFError):
            return 0
        return len(events) if isinstance(events, list) else 0
