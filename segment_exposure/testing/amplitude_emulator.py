"""A local emulator of Amplitude's ingestion APIs (HTTP V2 and Batch), with fault injection.

Why: delivery code is only as good as its behaviour when Amplitude says no, says nothing, or says yes and
then fails. This server implements the documented contract on ``127.0.0.1`` so that every answer can be
produced on demand, in any test suite, without an account or the internet. Standard library only.

Endpoints: ``POST /2/httpapi`` and ``POST /batch``, body ``{"api_key", "events", "options"}``, optionally
``Content-Encoding: gzip``. Each request is checked in this order, the first failure answering:

1. size of the (decompressed) body over the endpoint's limit -> 413;
2. body not a JSON object -> 400 ``Invalid JSON request body``;
3. ``api_key`` missing -> 400 with ``missing_field: "api_key"``; not in ``api_keys`` (when given) -> 400
   ``Invalid API key: <key>`` (the key is echoed, as Amplitude does: clients must redact it);
4. ``events`` missing, empty or not a list -> 400 ``missing_field: "events"``; ``options.min_id_length`` not a
   positive integer -> 400;
5. more than ``max_events_per_request`` events -> 413;
6. per event, all reported together (or only the first ``index_map_limit`` bad events) in a 400 with index
   maps: ``events_with_missing_fields`` (``event_type``; ``user_id or device_id``),
   ``events_with_invalid_fields`` (not an object; ``time`` not a non-negative integer of milliseconds;
   wrongly typed known fields; ids on Amplitude's invalid list, compared case-insensitively) and
   ``events_with_invalid_id_lengths`` (ids shorter than ``options.min_id_length``, default 5);
7. per-id sliding window: when ingesting would put a user or device over ``eps_threshold`` events per second
   over ``throttle_window`` seconds (or past ``daily_quota`` events), the whole request is refused with 429,
   ``throttled_events`` listing the events over the limit (the first ones of an id still fit);
8. otherwise 200: the events are ingested, dropping duplicates of ``(insert_id, device_id)`` (events without
   ``insert_id`` are never duplicates) and counting them in :attr:`AmplitudeEmulator.duplicates_dropped`.

Faults (:meth:`AmplitudeEmulator.inject`) apply to the next requests in order, one per request:

``ok`` (a normal answer: use it to build a schedule), ``500``/``502``/``504``/``503`` (that status, nothing
ingested), ``500_after_ingest`` (ingests, then answers 500 or ``status``: the client's retry makes
duplicates the dedupe must drop), ``reset`` and ``reset_after_ingest`` (the connection is aborted with a
TCP RST, before or after ingesting), ``slow`` (waits ``delay`` seconds, then answers normally), ``non_json``
(an HTML body with ``status``, default 200; ingested when the status is 2xx unless ``ingest`` says
otherwise), ``403``, ``413`` and ``429`` (every event throttled). Any fault accepts ``delay``, and
``retry_after`` (a ``Retry-After`` header value sent with the answer).

A request in absolute form (``POST http://host/2/httpapi``, as a client sends it to an HTTP proxy) is served
as if the emulator were that proxy and the host: :attr:`RecordedRequest.proxied` tells it apart.
"""

from __future__ import annotations

import gzip
import json
import math
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from segment_exposure.delivery.id_rules import INVALID_IDS

__all__ = ["FAULTS", "AmplitudeEmulator", "RecordedRequest"]

#: The fault names :meth:`AmplitudeEmulator.inject` accepts.
FAULTS: frozenset[str] = frozenset(
    {
        "ok",
        "500",
        "502",
        "503",
        "504",
        "500_after_ingest",
        "reset",
        "reset_after_ingest",
        "slow",
        "non_json",
        "403",
        "413",
        "429",
    }
)

# Amplitude's invalid-id list is one documented fact: the translator's copy is the one source.
_INVALID_IDS = INVALID_IDS
_STR_FIELDS = (
    "event_type",
    "insert_id",
    "app_version",
    "platform",
    "os_name",
    "os_version",
    "device_brand",
    "device_manufacturer",
    "device_model",
    "carrier",
    "country",
    "region",
    "city",
    "dma",
    "language",
    "ip",
    "idfa",
    "idfv",
    "adid",
    "android_id",
    "library",
    "productId",
    "revenueType",
)
_INT_FIELDS = ("session_id", "event_id", "quantity")
_NUMBER_FIELDS = ("price", "revenue", "location_lat", "location_lng")
_OBJECT_FIELDS = ("event_properties", "user_properties", "groups", "plan")
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


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: str
    status: int
    delay: float
    ingest: bool
    retry_after: str | None = None


@dataclass(slots=True)
class _Queued:
    fault: _Fault
    remaining: int | None


def _is_int(value: Any) -> bool:
    return value.__class__ is int


def _is_number(value: Any) -> bool:
    return value.__class__ is int or value.__class__ is float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: AmplitudeEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are part of the tests; don't print tracebacks for them."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmplitudeEmulator/1"
    timeout = 30
    disable_nagle_algorithm = True  # headers and body are written apart: avoid 40 ms delayed-ACK stalls
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

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`AmplitudeEmulator.requests` instead of stderr."""


class AmplitudeEmulator:
    """Amplitude's ``/2/httpapi`` and ``/batch`` on ``127.0.0.1``, with dedupe, throttling and faults.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

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
        self.host = host
        self.ssl_context = ssl_context
        self.port = port
        self.api_keys: frozenset[str] | None = frozenset(api_keys) if api_keys is not None else None
        self.eps_threshold = eps_threshold
        self.throttle_window = throttle_window
        self.batch_eps_threshold = batch_eps_threshold
        self.batch_throttle_window = batch_throttle_window
        self.daily_quota = daily_quota
        self.max_events_per_request = max_events_per_request
        self.http_max_body_bytes = http_max_body_bytes
        self.batch_max_body_bytes = batch_max_body_bytes
        self.index_map_limit = index_map_limit
        self._cond = threading.Condition()
        self._ingested: list[dict[str, Any]] = []
        self._seen: set[tuple[str, Any]] = set()
        self._duplicates = 0
        self._windows: dict[tuple[str, str, str], deque[float]] = {}
        self._daily: dict[tuple[str, str], int] = {}
        self._faults: deque[_Queued] = deque()
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

        ``count=None`` applies it to every request until :meth:`clear_faults` (an outage). ``status``
        overrides the answer's status, ``delay`` waits first, ``ingest`` says whether the events are
        ingested before the fault (defaults: see the module's documentation), ``retry_after`` is sent as
        the answer's ``Retry-After`` header.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        if fault in ("500", "502", "503", "504", "403", "413", "429"):
            default_status = int(fault)
        elif fault == "500_after_ingest":
            default_status = 500
        elif fault == "non_json":
            default_status = 200
        else:
            default_status = 0
        code = default_status if status is None else status
        if ingest is None:
            ingest = fault in ("500_after_ingest", "reset_after_ingest") or (
                fault == "non_json" and 200 <= code < 300
            )
        wait = delay if delay is not None else (1.0 if fault == "slow" else 0.0)
        spec = _Fault(fault, code, wait, ingest, retry_after)
        with self._cond:
            if count is None or count:
                self._faults.append(_Queued(spec, count))

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
    def ingested(self) -> list[dict[str, Any]]:
        """A snapshot of the ingested events, duplicates excluded, in ingestion order."""
        with self._cond:
            return list(self._ingested)

    @property
    def ingested_count(self) -> int:
        with self._cond:
            return len(self._ingested)

    @property
    def duplicates_dropped(self) -> int:
        """Events refused as duplicates of an ingested ``(insert_id, device_id)``."""
        with self._cond:
            return self._duplicates

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request answered (or reset), in order."""
        with self._cond:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._cond:
            return len(self._requests)

    def experiment_properties(self) -> dict[tuple[str, str], str | None]:
        """Each user's ``[Experiment] <flag>`` property as Amplitude would end up with it.

        Replays the ingested ``$exposure`` events in event-time order (ingestion order breaks ties):
        a variant sets the property, an exposure without one unsets it (``None``). Keys are
        ``(user_id or device_id, flag_key)``.
        """
        ordered = sorted(enumerate(self.ingested), key=lambda item: (item[1].get("time", 0), item[0]))
        state: dict[tuple[str, str], str | None] = {}
        for _, event in ordered:
            props = event.get("event_properties") or {}
            flag = props.get("flag_key")
            who = event.get("user_id") or event.get("device_id")
            if event.get("event_type") == "$exposure" and isinstance(flag, str) and isinstance(who, str):
                variant = props.get("variant")
                state[(who, flag)] = variant if isinstance(variant, str) else None
        return state

    def wait_for_ingested(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` events are ingested; False if ``timeout`` passes first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ingested) >= count, timeout)

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

    def _record(self, handler: _Handler, path: str, status: int, events: int, fault: _Fault | None) -> None:
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

    def _take_fault(self) -> _Fault | None:
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
        answer can already see the request in :attr:`requests`."""
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

    @staticmethod
    def _decode(raw: bytes, encoding: str) -> bytes:
        return gzip.decompress(raw) if encoding.lower() == "gzip" else raw

    def _count_events(self, raw: bytes, encoding: str) -> int:
        try:
            body = json.loads(self._decode(raw, encoding))
            events = body.get("events") if isinstance(body, dict) else None
        except (ValueError, OSError, EOFError):
            return 0
        return len(events) if isinstance(events, list) else 0

    # -- the contract --------------------------------------------------------------------------------

    def _process(self, api: str, raw: bytes, encoding: str) -> tuple[int, dict[str, Any], int]:
        """Validate in the documented order and ingest: ``(status, JSON answer, number of events)``."""
        try:
            data = self._decode(raw, encoding)
        except (OSError, EOFError, ValueError):
            return 400, {"code": 400, "error": "Invalid gzip body"}, 0
        max_bytes = self.http_max_body_bytes if api == "http" else self.batch_max_body_bytes
        if len(data) > max_bytes:
            return 413, {"code": 413, "error": "Payload too large"}, 0
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return 400, {"code": 400, "error": "Invalid JSON request body"}, 0
        api_key = body.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            missing = {"code": 400, "error": "Request missing required field", "missing_field": "api_key"}
            return 400, missing, 0
        if self.api_keys is not None and api_key not in self.api_keys:
            return 400, {"code": 400, "error": f"Invalid API key: {api_key}"}, 0
        events = body.get("events")
        if not isinstance(events, list) or not events:
            missing = {"code": 400, "error": "Request missing required field", "missing_field": "events"}
            return 400, missing, 0
        options = body.get("options")
        min_id_length = 5
        if options is not None:
            value: Any = options.get("min_id_length") if isinstance(options, dict) else "invalid"
            if value is not None:
                if not _is_int(value) or value < 1:
                    error = {
                        "code": 400,
                        "error": "Invalid field: options.min_id_length must be a positive int",
                    }
                    return 400, error, len(events)
                min_id_length = int(value)
        if len(events) > self.max_events_per_request:
            return 413, {"code": 413, "error": "Payload too large"}, len(events)
        invalid = self._validate(events, min_id_length)
        if invalid is not None:
            return 400, invalid, len(events)
        with self._cond:
            throttled = self._throttle(api, events)
            if throttled is not None:
                return 429, throttled, len(events)
            self._ingest(api, events)
        answer = {
            "code": 200,
            "events_ingested": len(events),
            "payload_size_bytes": len(data),
            "server_upload_time": int(time.time() * 1000),
        }
        return 200, answer, len(events)

    def _validate(self, events: list[Any], min_id_length: int) -> dict[str, Any] | None:
        missing: dict[str, list[int]] = {}
        invalid: dict[str, list[int]] = {}
        lengths: dict[str, list[int]] = {}
        bad = 0
        limit = self.index_map_limit
        for index, event in enumerate(events):
            problems = self._event_problems(event, min_id_length)
            if not problems:
                continue
            for kind, field in problems:
                target = missing if kind == "missing" else lengths if kind == "length" else invalid
                target.setdefault(field, []).append(index)
            bad += 1
            if limit is not None and bad >= limit:
                break
        if not bad:
            return None
        return {
            "code": 400,
            "error": "Request has events with missing or invalid fields",
            "events_with_missing_fields": missing,
            "events_with_invalid_fields": invalid,
            "events_with_invalid_id_lengths": lengths,
            "silenced_devices": [],
            "silenced_events": [],
        }

    @staticmethod
    def _event_problems(event: Any, min_id_length: int) -> list[tuple[str, str]]:
        if not isinstance(event, dict):
            return [("invalid", "event")]
        problems: list[tuple[str, str]] = []
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            problems.append(("missing", "event_type"))
        user_id = event.get("user_id")
        device_id = event.get("device_id")
        if user_id is None and device_id is None:
            problems.append(("missing", "user_id or device_id"))
        for name, value in (("user_id", user_id), ("device_id", device_id)):
            if value is None:
                continue
            if not isinstance(value, str) or value.lower() in _INVALID_IDS:
                problems.append(("invalid", name))
            elif len(value) < min_id_length:
                problems.append(("length", name))
        event_time = event.get("time")
        if event_time is not None and (not _is_int(event_time) or event_time < 0):
            problems.append(("invalid", "time"))
        for name in _STR_FIELDS:
            value = event.get(name)
            if value is not None and not isinstance(value, str) and name != "event_type":
                problems.append(("invalid", name))
        for name in _INT_FIELDS:
            value = event.get(name)
            if value is not None and not _is_int(value):
                problems.append(("invalid", name))
        for name in _NUMBER_FIELDS:
            value = event.get(name)
            if value is not None and not _is_number(value):
                problems.append(("invalid", name))
        for name in _OBJECT_FIELDS:
            value = event.get(name)
            if value is not None and not isinstance(value, dict):
                problems.append(("invalid", name))
        return problems

    def _ids(self, event: dict[str, Any]) -> list[tuple[str, str]]:
        ids: list[tuple[str, str]] = []
        user_id = event.get("user_id")
        if isinstance(user_id, str):
            ids.append(("user", user_id))
        device_id = event.get("device_id")
        if isinstance(device_id, str):
            ids.append(("device", device_id))
        return ids

    def _throttle(self, api: str, events: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The 429 answer if ingesting ``events`` would exceed a window or quota; caller holds the lock."""
        eps, window = (
            (self.eps_threshold, self.throttle_window)
            if api == "http"
            else (self.batch_eps_threshold, self.batch_throttle_window)
        )
        limit = max(1, math.floor(eps * window))
        quota = self.daily_quota
        now = time.monotonic()
        counts: dict[tuple[str, str], int] = {}
        daily: dict[tuple[str, str], int] = {}
        throttled_events: list[int] = []
        throttled: dict[str, dict[str, int]] = {"user": {}, "device": {}}
        exceeded: dict[str, dict[str, int]] = {"user": {}, "device": {}}
        for index, event in enumerate(events):
            ids = self._ids(event)
            over = False
            for key in ids:
                count = counts.get(key)
                if count is None:
                    count = self._window_count((api, *key), now, window)
                    counts[key] = count
                if count + 1 > limit:
                    over = True
                    throttled[key[0]][key[1]] = count + 1
                if quota is not None:
                    used = daily.get(key)
                    if used is None:
                        used = self._daily.get(key, 0)
                        daily[key] = used
                    if used + 1 > quota:
                        over = True
                        exceeded[key[0]][key[1]] = used + 1
            if over:
                throttled_events.append(index)
                continue
            for key in ids:
                counts[key] += 1
                if quota is not None:
                    daily[key] += 1
        if not throttled_events:
            return None
        return {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": eps,
            "throttled_devices": throttled["device"],
            "throttled_users": throttled["user"],
            "throttled_events": throttled_events,
            "exceeded_daily_quota_users": exceeded["user"],
            "exceeded_daily_quota_devices": exceeded["device"],
        }

    def _window_count(self, key: tuple[str, str, str], now: float, window: float) -> int:
        stamps = self._windows.get(key)
        if stamps is None:
            return 0
        horizon = now - window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        return len(stamps)

    def _ingest(self, api: str, events: list[dict[str, Any]]) -> None:
        """Record the events (caller holds the lock), dropping ``(insert_id, device_id)`` duplicates."""
        now = time.monotonic()
        for event in events:
            for key in self._ids(event):
                self._windows.setdefault((api, *key), deque()).append(now)
                self._daily[key] = self._daily.get(key, 0) + 1
            insert_id = event.get("insert_id")
            if isinstance(insert_id, str):
                dedupe_key = (insert_id, event.get("device_id"))
                if dedupe_key in self._seen:
                    self._duplicates += 1
                    continue
                self._seen.add(dedupe_key)
            self._ingested.append(event)
        self._cond.notify_all()
