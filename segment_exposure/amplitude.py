"""Delivery of Amplitude events over HTTP V2 or the Batch API, accounting for every event.

Why not amplitude-analytics: it drops events after a short outage, on a 2xx with a non-JSON body, on a
connection reset and in its final flush. :class:`AmplitudeClient` instead answers, for every event it was
given, one of three things (:class:`Status`): delivered, rejected (Amplitude will never accept it as it is,
with the reason), or retry later (nothing is known to be wrong with the event; send it again, with the same
``insert_id``). Nothing else can happen to an event, whatever the server or the network does.

How each answer of Amplitude is handled (the table in ``shared/reference/amplitude.md``):

* 200 with a JSON body: delivered.
* 400 naming events (``events_with_invalid_fields``, ``events_with_missing_fields``,
  ``events_with_invalid_id_lengths``, ``silenced_events``, ``silenced_devices``): those are rejected with
  the reason, the rest are resent at once; repeated, since a map may name only the first bad event.
* 400 naming no event (missing or invalid API key, ...), 401, 403, 404 and other 4xx: a configuration
  error. Logged at ERROR (never with the key); every event not yet delivered comes back as retry later.
* 413: the request is split in two and each half resent; one event still too large is rejected.
* 429: events of exceeded daily quotas come back as retry later; throttled ones are held for
  ``throttle_wait`` (30 s, or ``Retry-After`` if longer) and resent if the deadline allows, else they come
  back as retry later; the others are resent at once.
* 408, 5xx, timeouts, connection errors and non-JSON bodies: retried with exponential backoff and jitter,
  with the same body, so the same ``insert_id`` values. When the attempts or the deadline run out, the
  request's events and those not yet sent come back as retry later.

A ``deadline`` bounds a whole :meth:`AmplitudeClient.send`, including every wait; what is unfinished when it
passes comes back as retry later.

A send keeps up to ``max_in_flight`` requests in flight at once (threads of one pool per client, sharing
one HTTP connection pool), so a batch of many requests fits in the deadline even when Amplitude is slow to
answer each: 17 requests of 1 MB at 1 s each take about 3 s with 8 in flight, 17 s one after another, and a
retry that resends the same batch would otherwise run out of time at the same point every time. A request
that failed waits for its retry time while the others go ahead, and the send sleeps only when nothing can
go. The first request of a send goes alone, so that a wrong key, a smaller size limit or an outage is
learnt from one request, not eight; so that an outage does not cost a request per batch and per attempt,
only one request is in flight again after two failures in a row, and new chunks wait while a retry is
pending after one failure before Amplitude has answered in this send, or two failures in a row after it
has: the retry probes Amplitude for all of them.

``Retry-After`` (seconds or an HTTP date) is honoured on 429 and on 503: the retry waits at least that
long, and if that is past the deadline the events come back as retry later at once.

Proxy settings (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``, ...) are read from the environment
once, when the client is built, rather than by ``requests`` on every request (a third of the CPU time per
event at large batches).
"""

from __future__ import annotations

import email.utils
import enum
import gzip as gzip_module
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests

from ._http import HttpFailure, HttpTimeout, Poster, RequestsPoster, Urllib3Poster

__all__ = [
    "ENDPOINTS",
    "LIMITS",
    "AmplitudeClient",
    "DeliveryResult",
    "EventOutcome",
    "RequestLimits",
    "Status",
]

logger = logging.getLogger(__name__)

Api = Literal["http", "batch"]

#: Ingestion URLs by (region, api).
ENDPOINTS: Mapping[tuple[str, str], str] = {
    ("US", "http"): "https://api2.amplitude.com/2/httpapi",
    ("US", "batch"): "https://api2.amplitude.com/batch",
    ("EU", "http"): "https://api.eu.amplitude.com/2/httpapi",
    ("EU", "batch"): "https://api.eu.amplitude.com/batch",
}


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What one request may hold: at most ``max_events`` events and ``max_bytes`` bytes of JSON body."""

    max_events: int
    max_bytes: int


#: Amplitude's documented limits: HTTP V2 bodies must stay under 1 MB, Batch under 20 MB; 2000 events each.
LIMITS: Mapping[str, RequestLimits] = {
    "http": RequestLimits(max_events=2000, max_bytes=999_999),
    "batch": RequestLimits(max_events=2000, max_bytes=20_000_000),
}


class Status(str, enum.Enum):
    """What happened to one event."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    RETRY_LATER = "retry_later"


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """The fate of one event: ``status``, a machine-readable ``code`` and a ``reason`` for people.

    Codes: ``ok``; rejected: ``invalid_fields``, ``missing_fields``, ``invalid_id``, ``silenced``,
    ``too_large``, ``not_json``; retry later: ``throttled``, ``daily_quota``, ``configuration``,
    ``server_error`` (5xx: may have been ingested), ``unavailable`` (503), ``timeout``, ``network``,
    ``bad_response`` (non-JSON body), ``deadline``, ``closed``.
    """

    status: Status
    code: str = "ok"
    reason: str = ""

    @property
    def delivered(self) -> bool:
        return self.status is Status.DELIVERED


_DELIVERED = EventOutcome(Status.DELIVERED)
_THROTTLED_PAST_DEADLINE = EventOutcome(
    Status.RETRY_LATER,
    "throttled",
    "Amplitude throttled this event (HTTP 429: too many events for its user or device) and it must wait "
    "longer than the deadline allows; retry later with the same insert_id",
)
_CLOSED_BEFORE_RETRY = (
    "the client was closed before the request was sent; retry later with the same insert_id"
)


@dataclass(slots=True)
class DeliveryResult:
    """One :class:`EventOutcome` per input event, in input order, plus what it cost."""

    outcomes: list[EventOutcome]
    requests: int = 0
    elapsed: float = 0.0

    def __len__(self) -> int:
        return len(self.outcomes)

    def __iter__(self) -> Iterator[EventOutcome]:
        return iter(self.outcomes)

    def __getitem__(self, index: int) -> EventOutcome:
        return self.outcomes[index]

    @property
    def delivered(self) -> list[int]:
        """Indices of the delivered events."""
        return [i for i, o in enumerate(self.outcomes) if o.status is Status.DELIVERED]

    @property
    def rejected(self) -> dict[int, str]:
        """Index -> reason, for events Amplitude will never accept as they are."""
        return {i: o.reason for i, o in enumerate(self.outcomes) if o.status is Status.REJECTED}

    @property
    def retry_later(self) -> dict[int, str]:
        """Index -> reason, for events to send again later (same ``insert_id``)."""
        return {i: o.reason for i, o in enumerate(self.outcomes) if o.status is Status.RETRY_LATER}

    @property
    def all_delivered(self) -> bool:
        return all(o.status is Status.DELIVERED for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        """Number of events per status value (``delivered``, ``rejected``, ``retry_later``)."""
        counts = dict.fromkeys((s.value for s in Status), 0)
        for outcome in self.outcomes:
            counts[outcome.status.value] += 1
        return counts


class _Transient(Exception):
    """A failure worth retrying after a pause: 5xx, a timeout, a reset, a non-JSON body.

    ``retry_after``: seconds the server asked us to wait (``Retry-After`` on a 503), if it did.
    """

    def __init__(self, code: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(slots=True)
class _Reply:
    """A definitive JSON answer (2xx or 4xx) to one request."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


@dataclass(slots=True)
class _Held:
    """Throttled events waiting for ``not_before`` (a ``time.monotonic()`` value)."""

    not_before: float
    indices: list[int] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Request:
    """One request's events and body; after a transient failure, when it may be retried and why it failed.

    The body is kept for every retry, so a retry carries the same ``insert_id`` values.
    """

    chunk: list[int]
    body: bytes
    attempts: int = 0
    not_before: float = 0.0
    failure: _Transient | None = None


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _compact_dumps() -> Any:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))``, with C's encoder
    made once per send rather than once per event as ``JSONEncoder.encode`` does (a fifth of the cost of
    encoding a small event). Without the circular-reference check: a cycle raises ``RecursionError``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # no C accelerator (e.g. PyPy)
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
    encode = make(None, _not_serializable, basestring, None, ":", ",", False, False, False)

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


def _redact_url(url: str) -> str:
    """``url`` without user info, so credentials in an endpoint never reach a log or a repr."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    return [v for v in value if v.__class__ is int]


def _str_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {k for k in value if isinstance(k, str)}
    if isinstance(value, list):
        return {k for k in value if isinstance(k, str)}
    return set()


class AmplitudeClient:
    """A pooled, retrying client for Amplitude's HTTP V2 or Batch ingestion API.

    ``region`` ("US" or "EU") and ``api`` ("http" or "batch") pick the URL; ``endpoint``, a full URL,
    overrides both (``api`` is then inferred from a path ending in ``/batch`` unless given). Events never
    choose where they go. ``min_id_length`` is sent as ``options.min_id_length``. ``deadline`` is the
    default time budget of :meth:`send` in seconds (``None``: bounded only by ``max_attempts`` and
    ``max_throttle_holds``). ``timeout`` is the per-request (connect, read) timeout, always cut to what is
    left of the deadline. ``throttle_wait`` is how long throttled events are held after a 429 (Amplitude asks
    for at least 30 s). Retries wait ``backoff_initial * 2**n`` (capped at ``backoff_max``) plus a random
    jitter of up to ``backoff_jitter`` seconds.

    The API key appears in request bodies only: never in logs, exception messages, reasons or ``repr``.
    """

    #: Called with the code of each request's answer: its HTTP status ("200", "503", ...), or "timeout" or
    #: "reset" when none came. For metrics (segment_exposure.metrics): it must be quick; errors are logged.
    observer: Callable[[str], None] | None = None

    def __init__(
        self,
        api_key: str,
        *,
        region: str = "US",
        api: Api | None = None,
        endpoint: str | None = None,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        gzip: bool = False,
        session: requests.Session | None = None,
        min_id_length: int | None = None,
        deadline: float | None = 60.0,
        max_attempts: int = 8,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        backoff_jitter: float = 0.5,
        throttle_wait: float = 30.0,
        max_throttle_holds: int = 10,
        max_events_per_request: int | None = None,
        max_request_bytes: int | None = None,
        pool_maxsize: int = 8,
        max_in_flight: int = 8,
        user_agent: str = "segment-exposure",
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string (the Amplitude project's API key)")
        region_key = region.upper() if isinstance(region, str) else ""
        if region_key not in ("US", "EU"):
            raise ValueError(f"region must be 'US' or 'EU', got {region!r}")
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"endpoint must be a full http(s) URL such as "
                    f"'http://127.0.0.1:8080/2/httpapi', got {_redact_url(str(endpoint))!r}"
                )
            if api is None:
                api = "batch" if parts.path.rstrip("/").endswith("/batch") else "http"
        if api is None:
            api = "http"
        if api not in LIMITS:
            raise ValueError(f"api must be 'http' or 'batch', got {api!r}")
        if min_id_length is not None and (min_id_length.__class__ is not int or min_id_length < 1):
            raise ValueError(f"min_id_length must be a positive int or None, got {min_id_length!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_in_flight.__class__ is not int or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive int, got {max_in_flight!r}")
        limits = LIMITS[api]
        self._api_key = api_key
        self.region = region_key
        self.api: Api = api
        self.endpoint = endpoint if endpoint is not None else ENDPOINTS[(region_key, api)]
        self.timeout: tuple[float, float] = (
            (float(timeout), float(timeout)) if isinstance(timeout, (int, float)) else timeout
        )
        self.gzip = gzip
        self.min_id_length = min_id_length
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_jitter = backoff_jitter
        self.throttle_wait = throttle_wait
        self.max_throttle_holds = max_throttle_holds
        self.limits = RequestLimits(
            max_events=max_events_per_request or limits.max_events,
            max_bytes=max_request_bytes or limits.max_bytes,
        )
        self.max_in_flight = max_in_flight
        self._proxies: dict[str, str] = {}
        self._poster: Poster
        if session is None:
            # The environment's proxy and CA settings, read once, here (requests would read them, and
            # ~/.netrc, again on every request), for our own urllib3 pool. Sends that post on the calling
            # thread and those on the pool's threads can overlap: room for both.
            with requests.Session() as reader:
                environment = reader.merge_environment_settings(self.endpoint, {}, None, None, None)
            self._proxies = dict(environment["proxies"] or {})
            self._poster = Urllib3Poster(
                self.endpoint,
                maxsize=max(pool_maxsize, max_in_flight) * 2,
                proxies=self._proxies,
                verify=environment["verify"],
            )
        else:
            self._poster = RequestsPoster(session)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        options = b""
        if min_id_length is not None:
            options = b',"options":{"min_id_length":%d}' % min_id_length
        self._head = b'{"api_key":' + json.dumps(api_key).encode() + b',"events":['
        self._tail = b"]" + options + b"}"
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={_redact_url(self.endpoint)!r}, api={self.api!r}, "
            f"api_key='***', gzip={self.gzip!r}, min_id_length={self.min_id_length!r})"
        )

    __str__ = __repr__

    def __enter__(self) -> AmplitudeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Abort waits of sends in progress (their events come back as retry later); close our session."""
        self._closed.set()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        self._poster.close()

    @property
    def proxies(self) -> dict[str, str]:
        """The proxies read from the environment when the client was built (empty with a caller's session)."""
        return dict(self._proxies)

    # -- public ----------------------------------------------------------------------------------------

    def send(self, events: Sequence[Mapping[str, Any]], *, deadline: float | None = None) -> DeliveryResult:
        """Deliver ``events`` (Amplitude events, e.g. from ``to_amplitude_event``); never raises for them.

        ``deadline`` is a budget in seconds for the whole call (default: the client's ``deadline``).
        The result holds one outcome per event, in order.
        """
        started = time.monotonic()
        budget = self.deadline if deadline is None else deadline
        end = math.inf if budget is None else started + budget
        run = _Send(self, events, end)
        run.run()
        result = DeliveryResult(run.finish(), requests=run.requests, elapsed=time.monotonic() - started)
        self._log_summary(result)
        return result

    # -- internals used by _Send ---------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key in text else text

    def _body(self, parts: list[bytes]) -> bytes:
        body = self._head + b",".join(parts) + self._tail
        if self.gzip:
            body = gzip_module.compress(body, compresslevel=5)
        return body

    def _post(self, body: bytes, end: float) -> _Reply:
        """One POST; a definitive answer is returned, anything worth retrying raises ``_Transient``."""
        if self._closed.is_set():
            raise _Transient("closed", "the client was closed before the request was sent")
        remaining = end - time.monotonic()
        if remaining <= 0.001:
            raise _Transient("deadline", "the deadline passed before the request could be sent")
        timeout = (min(self.timeout[0], remaining), min(self.timeout[1], remaining))
        try:
            response = self._poster.post(self.endpoint, body, self._headers, timeout)
        except HttpTimeout as exc:
            self._observe("timeout")
            code = "deadline" if time.monotonic() >= end - 0.001 else "timeout"
            raise _Transient(code, f"no answer from Amplitude within {timeout[1]:.3g} s ({exc})") from None
        except HttpFailure as exc:
            self._observe("reset")
            reason = f"network error talking to Amplitude: {self._redact(str(exc))[:300]}"
            raise _Transient("network", reason) from None
        status = response.status
        self._observe(str(status))
        content = response.content
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = None
        if status >= 500 or status == 408:
            code = "unavailable" if status == 503 else "server_error"
            detail = parsed.get("error", "") if isinstance(parsed, dict) else "non-JSON body"
            wait_for = retry_after_seconds(response.retry_after) if status == 503 else None
            raise _Transient(
                code, f"Amplitude answered HTTP {status} ({self._redact(str(detail))[:200]})", wait_for
            )
        if not isinstance(parsed, dict):
            if 400 <= status < 500:
                # A proxy's HTML page still says what happened; act on the status.
                parsed = {"code": status, "error": f"HTTP {status} with a non-JSON body"}
            else:
                raise _Transient(
                    "bad_response",
                    f"Amplitude answered HTTP {status} with a body that is not a JSON object; it may or may "
                    "not have ingested the events",
                )
        return _Reply(status, parsed, retry_after_seconds(response.retry_after))

    def _submit(self, body: bytes, end: float) -> Future[_Reply]:
        """Post ``body`` on the client's pool of ``max_in_flight`` threads (made on first use)."""
        with self._pool_lock:
            if self._pool is None:
                if self._closed.is_set():
                    raise RuntimeError("the client is closed")
                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="amplitude-post")
            return self._pool.submit(self._post, body, end)

    def _observe(self, code: str) -> None:
        if self.observer is not None:
            try:
                self.observer(code)
            except Exception:
                logger.exception("the Amplitude client's observer failed")

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): exponential, with jitter.

        Plain arithmetic, not tenacity: its retry loop would sleep on this thread and stall every other
        chunk of the send, whose scheduler owns the retrying; only the delay formula would be left to use.
        """
        delay = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt - 1, 64))
        return max(0.0, delay) + random.uniform(0.0, self.backoff_jitter)

    def _sleep(self, seconds: float) -> None:
        self._closed.wait(seconds)

    def _log_summary(self, result: DeliveryResult) -> None:
        counts = result.counts()
        if counts["rejected"]:
            first = next(o for o in result.outcomes if o.status is Status.REJECTED)
            logger.warning(
                "Amplitude rejected %d of %d events for good (first: %s)",
                counts["rejected"],
                len(result),
                first.reason,
            )
        if counts["retry_later"]:
            first = next(o for o in result.outcomes if o.status is Status.RETRY_LATER)
            logger.warning(
                "%d of %d events must be retried later (first: %s)",
                counts["retry_later"],
                len(result),
                first.reason,
            )
        logger.debug(
            "sent %d events to Amplitude in %d requests, %.3f s: %s",
            len(result),
            result.requests,
            result.elapsed,
            counts,
        )


class _Send:
    """The state of one :meth:`AmplitudeClient.send`.

    Events wait in ``ready`` (chunks to send now, in order), ``held`` (throttled events, until their time) or
    ``retries`` (requests that failed transiently, until their time).
    """

    def __init__(self, client: AmplitudeClient, events: Sequence[Mapping[str, Any]], end: float) -> None:
        self.client = client
        self.events = events
        self.end = end
        self.requests = 0
        self.outcomes: list[EventOutcome | None] = [None] * len(events)
        self.encoded: list[bytes] = [b""] * len(events)
        self.holds = [0] * len(events)
        self.held: list[_Held] = []
        self.max_events = client.limits.max_events
        self.max_bytes = client.limits.max_bytes
        self.overhead = len(client._head) + len(client._tail)
        self.ready: deque[list[int]] = deque()
        self.retries: list[_Request] = []
        self.answered = False  # Amplitude gave a definitive answer (2xx or 4xx) in this send
        self.failures = 0  # transient failures since Amplitude last answered
        self.stopped = False  # the send gave up: nothing more is sent
        self.fan_out = False  # more than one request may fly: Amplitude answered, and not with a 413
        self.stop_code = ""
        self.stop_reason = ""
        # Events are encoded and packed a request at a time, as requests are needed, so the first request
        # leaves at once and the rest are encoded while it is in flight.
        self.cursor = 0  # the next event to encode
        self.carry: int | None = None  # encoded, did not fit the last chunk: starts the next one
        self.dumps = _compact_dumps()

    # Outcomes ---------------------------------------------------------------------------------------

    def _set(self, indices: Sequence[int], outcome: EventOutcome) -> None:
        for i in indices:
            if self.outcomes[i] is None:
                self.outcomes[i] = outcome

    def _retry_later_everything(self, code: str, reason: str) -> None:
        """Stop sending: mark everything not finished as retry later.

        Held events keep their own reason, and requests waiting for a retry the failure they had (or
        ``closed``, as if the retry had been tried). Requests in flight are counted when they come back.
        """
        if not self.stopped:
            self.stopped = True
            self.stop_code, self.stop_reason = code, reason
        while self._produce():  # events not encoded yet: rejected if they cannot be sent, else these
            pass
        while self.ready:
            self._set(self.ready.popleft(), EventOutcome(Status.RETRY_LATER, code, reason))
        for request in self.retries:
            if code == "closed":
                outcome = EventOutcome(Status.RETRY_LATER, code, _CLOSED_BEFORE_RETRY)
            else:
                failure = request.failure or _Transient(code, reason)
                outcome = EventOutcome(
                    Status.RETRY_LATER, failure.code, f"{failure.reason}; retry later with the same insert_id"
                )
            self._set(request.chunk, outcome)
        self.retries.clear()
        self._release_held_as_retry_later()

    def _release_held_as_retry_later(self) -> None:
        for held in self.held:
            self._set(held.indices, _THROTTLED_PAST_DEADLINE)
        self.held.clear()

    def finish(self) -> list[EventOutcome]:
        lost = EventOutcome(Status.RETRY_LATER, "internal", "not sent (internal error); retry later")
        return [o if o is not None else lost for o in self.outcomes]

    # Packing ----------------------------------------------------------------------------------------

    def _pack(self, indices: Sequence[int]) -> list[list[int]]:
        chunks: list[list[int]] = []
        current: list[int] = []
        empty = self.overhead - 1  # every event adds its bytes and a comma, but n events have n - 1 commas
        size = empty
        max_events, max_bytes = self.max_events, self.max_bytes
        encoded = self.encoded
        for i in indices:
            add = len(encoded[i]) + 1
            if current and (len(current) >= max_events or size + add > max_bytes):
                chunks.append(current)
                current = []
                size = empty
            current.append(i)
            size += add
        if current:
            chunks.append(current)
        return chunks

    @property
    def more(self) -> bool:
        """Whether events remain to be encoded and packed."""
        return self.carry is not None or self.cursor < len(self.events)

    def _encode_one(self, i: int) -> bool:
        """Encode event ``i`` once; an event no request could hold is rejected here (False)."""
        try:
            data = self.dumps(self.events[i]).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            self.outcomes[i] = EventOutcome(
                Status.REJECTED,
                "not_json",
                f"the event cannot be sent as JSON ({exc}); only JSON values, no NaN or Infinity",
            )
            return False
        if not data.startswith(b"{"):
            self.outcomes[i] = EventOutcome(
                Status.REJECTED,
                "not_json",
                "the event is not a JSON object; Amplitude events are objects",
            )
            return False
        max_bytes = self.client.limits.max_bytes
        if len(data) > max_bytes - self.overhead:
            self.outcomes[i] = EventOutcome(
                Status.REJECTED,
                "too_large",
                f"the event is {len(data)} bytes of JSON, more than one {self.client.api} request may "
                f"hold ({max_bytes} bytes); shrink its properties",
            )
            return False
        self.encoded[i] = data
        return True

    def _produce(self) -> bool:
        """Encode the next events into one more chunk in ``ready`` (packed as :meth:`_pack` would);
        False when there was nothing left to encode."""
        chunk: list[int] = []
        size = self.overhead - 1
        max_events, max_bytes = self.max_events, self.max_bytes
        if self.carry is not None:
            chunk.append(self.carry)
            size += len(self.encoded[self.carry]) + 1
            self.carry = None
        events = len(self.events)
        while self.cursor < events:
            i = self.cursor
            self.cursor += 1
            if not self._encode_one(i):
                continue
            add = len(self.encoded[i]) + 1
            if chunk and (len(chunk) >= max_events or size + add > max_bytes):
                self.carry = i
                break
            chunk.append(i)
            size += add
        if chunk:
            self.ready.append(chunk)
            return True
        return False

    # The loop ---------------------------------------------------------------------------------------

    def run(self) -> None:
        client = self.client
        in_flight: dict[Future[_Reply], _Request] = {}
        while self.ready or self.held or self.retries or in_flight or self.more:
            now = time.monotonic()
            if not self.stopped:
                if client._closed.is_set():
                    self._retry_later_everything("closed", "the client was closed; retry later")
                elif now >= self.end:
                    self._retry_later_everything(
                        "deadline", "the deadline passed before this event was sent; retry later"
                    )
            if self.stopped:
                # Nothing new goes out; what is in flight is still counted when it comes back.
                self._retry_later_everything(self.stop_code, self.stop_reason)
                if in_flight:
                    self._collect(in_flight, None)
                continue
            launch = self._launchable(now, len(in_flight))
            alone = not self.ready and not self.more
            if len(launch) == 1 and not in_flight and (alone or client.max_in_flight == 1):
                self._send(launch[0])  # a lone request: on this thread, no hand-over to the pool
                continue
            for request in launch:
                request.attempts += 1
                self.requests += 1
                try:
                    future = client._submit(request.body, self.end)
                except RuntimeError:  # closed meanwhile
                    self._failed(request, _Transient("closed", "the client was closed"))
                    continue
                in_flight[future] = request
            if in_flight and self.more:
                # Encode the next request while these fly, then take in what came back meanwhile.
                self._produce()
                self._collect(in_flight, 0)
                continue
            wake = min([r.not_before for r in self.retries] + [h.not_before for h in self.held], default=None)
            if in_flight:
                # Until the first one comes back, or a retry or hold falls due (if any can start then).
                timeout = None if wake is None or wake <= now else min(wake, self.end) - now
                self._collect(in_flight, timeout)
            elif not launch and wake is not None:
                # Nothing may go now: sleep until the first retry or hold is due.
                if wake >= self.end:
                    # Only holds can end there: a retry is scheduled only if it starts before the deadline.
                    self._release_held_as_retry_later()
                else:
                    client._sleep(wake - now)

    def _launchable(self, now: float, flying: int) -> list[_Request]:
        """The requests to start now: at most ``max_in_flight`` fly (one while Amplitude looks down)."""
        limit = self.client.max_in_flight
        launch: list[_Request] = []
        while flying + len(launch) < limit:
            if (not self.fan_out or self.failures >= 2) and (flying or launch):
                # Until Amplitude has answered in this send, or while it looks down, one request probes it
                # for all: a wrong key or a smaller size limit is learnt from one request, not eight.
                break
            request = self._next(now)
            if request is None:
                break
            launch.append(request)
        return launch

    def _collect(self, in_flight: dict[Future[_Reply], _Request], timeout: float | None) -> None:
        """Wait (up to ``timeout``) for requests in flight and act on those that came back."""
        done, _ = wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            request = in_flight.pop(future)
            try:
                reply = future.result()
            except _Transient as exc:
                self._failed(request, exc)
                continue
            except Exception as exc:  # e.g. the pool shut down by close(): never lose the events
                self._failed(request, _Transient("closed", f"not sent ({type(exc).__name__})"))
                continue
            self.answered = True
            self.failures = 0
            self._answer(request.chunk, reply)

    def _next(self, now: float) -> _Request | None:
        """The request to make now: a retry that is due, else the next ready chunk, else None.

        While a retry is pending after one failure before Amplitude has answered in this send, or two
        failures in a row after it has, new chunks wait: Amplitude looks down, and the retry probes it.
        """
        if self.held and any(h.not_before <= now for h in self.held):
            due = [h for h in self.held if h.not_before <= now]
            self.held = [h for h in self.held if h.not_before > now]
            for h in due:
                self.ready.extend(self._pack(h.indices))
        if self.retries:
            request = min(self.retries, key=lambda r: r.not_before)
            if request.not_before <= now:
                self.retries.remove(request)
                return request
            if self.failures >= (2 if self.answered else 1):
                return None
        if not self.ready and not self._produce():
            return None
        chunk = self.ready.popleft()
        if len(chunk) > self.max_events or self._size(chunk) > self.max_bytes:
            # Packed before a 413 taught us a smaller limit: repack to the limit we know now.
            self.ready.extendleft(reversed(self._pack(chunk)))
            chunk = self.ready.popleft()
        return _Request(chunk, self.client._body([self.encoded[i] for i in chunk]))

    def _send(self, request: _Request) -> None:
        """Make one request on this thread and act on the answer."""
        request.attempts += 1
        self.requests += 1
        try:
            reply = self.client._post(request.body, self.end)
        except _Transient as exc:
            self._failed(request, exc)
            return
        self.answered = True
        self.failures = 0
        self._answer(request.chunk, reply)

    def _failed(self, request: _Request, exc: _Transient) -> None:
        """Schedule a retry after a backoff (at least ``Retry-After``), unless the attempts or the deadline
        ran out or we were closed.

        Giving up on one request ends the send: Amplitude has been failing all that time.
        """
        self.failures += 1
        client = self.client
        wait_for = max(client._backoff(request.attempts), exc.retry_after or 0.0)
        not_before = time.monotonic() + wait_for
        if (
            self.stopped
            or request.attempts >= client.max_attempts
            or client._closed.is_set()
            or not_before >= self.end
        ):
            reason = f"{exc.reason}; retry later with the same insert_id"
            self._set(request.chunk, EventOutcome(Status.RETRY_LATER, exc.code, reason))
            self._retry_later_everything(exc.code, f"not sent: {exc.reason}; retry later")
            return
        logger.info(
            "Amplitude request of %d events failed (attempt %d): %s; retrying in %.2f s",
            len(request.chunk),
            request.attempts,
            exc,
            wait_for,
        )
        request.not_before = not_before
        request.failure = exc
        self.retries.append(request)

    def _answer(self, chunk: list[int], reply: _Reply) -> None:
        status = reply.status
        # After a 413, one request at a time again until the smaller size is known to pass.
        self.fan_out = status != 413
        if 200 <= status < 300:
            self._set(chunk, _DELIVERED)
        elif status == 413:
            self._split(chunk)
        elif status == 429:
            self._throttled(chunk, reply)
        elif status == 400 and self._index_maps(chunk, reply.body):
            rest = [i for i in chunk if self.outcomes[i] is None]
            if rest:
                self.ready.appendleft(rest)  # at once: loop, since a map may name only the first bad event
        else:
            self._configuration_error(chunk, reply)

    def _size(self, chunk: list[int]) -> int:
        """Bytes of the request body for ``chunk`` before compression."""
        return self.overhead + sum(len(self.encoded[i]) for i in chunk) + len(chunk) - 1

    def _split(self, chunk: list[int]) -> None:
        if len(chunk) == 1:
            self._set(
                chunk,
                EventOutcome(
                    Status.REJECTED,
                    "too_large",
                    f"Amplitude answered 413 (payload too large) for this event alone "
                    f"({len(self.encoded[chunk[0]])} bytes of JSON); shrink its properties",
                ),
            )
            return
        half = (len(chunk) + 1) // 2
        # Learn from it: later requests of this send are packed at most half as large.
        self.max_events = max(1, min(self.max_events, half))
        self.max_bytes = min(self.max_bytes, max(self._size(chunk[:half]), self._size(chunk[half:])))
        self.ready.appendleft(chunk[half:])
        self.ready.appendleft(chunk[:half])
        logger.info("Amplitude answered 413 for %d events; splitting into halves", len(chunk))

    def _throttled(self, chunk: list[int], reply: _Reply) -> None:
        body = reply.body
        # ``throttled_events`` names the events precisely; the id maps are the fallback without it.
        listed = body.get("throttled_events")
        positions = set(_int_list(listed))
        users = _str_keys(body.get("throttled_users"))
        devices = _str_keys(body.get("throttled_devices"))
        quota_users = _str_keys(body.get("exceeded_daily_quota_users"))
        quota_devices = _str_keys(body.get("exceeded_daily_quota_devices"))
        now_ok: list[int] = []
        hold: list[int] = []
        quota: list[int] = []
        for pos, i in enumerate(chunk):
            event = self.events[i]
            uid = event.get("user_id")
            did = event.get("device_id")
            uid = uid if isinstance(uid, str) else None
            did = did if isinstance(did, str) else None
            if isinstance(listed, list):
                throttled = pos in positions
            else:
                throttled = (uid is not None and (uid in users or uid in quota_users)) or (
                    did is not None and (did in devices or did in quota_devices)
                )
            if not throttled:
                now_ok.append(i)
            elif (uid is not None and uid in quota_users) or (did is not None and did in quota_devices):
                quota.append(i)
            else:
                hold.append(i)
        if not hold and not quota:
            hold, now_ok = now_ok, []  # the answer names no one: hold them all
        if quota:
            self._set(
                quota,
                EventOutcome(
                    Status.RETRY_LATER,
                    "daily_quota",
                    "Amplitude's daily event quota for this user or device is used up (HTTP 429); "
                    "retry later with the same insert_id",
                ),
            )
        wait = max(self.client.throttle_wait, reply.retry_after or 0.0)
        not_before = time.monotonic() + wait
        keep: list[int] = []
        for i in hold:
            self.holds[i] += 1
            if self.holds[i] > self.client.max_throttle_holds:
                self._set(
                    [i],
                    EventOutcome(
                        Status.RETRY_LATER,
                        "throttled",
                        f"Amplitude throttled this event {self.holds[i]} times (HTTP 429); retry later",
                    ),
                )
            else:
                keep.append(i)
        if keep:
            if not_before >= self.end:
                self._set(keep, _THROTTLED_PAST_DEADLINE)
            else:
                self.held.append(_Held(not_before, keep))
        if now_ok:
            self.ready.appendleft(now_ok)
        logger.info(
            "Amplitude throttled %d of %d events (429); holding them %.1f s, %d over daily quota",
            len(hold),
            len(chunk),
            wait,
            len(quota),
        )

    def _index_maps(self, chunk: list[int], body: dict[str, Any]) -> int:
        """Reject the events a 400 names; returns how many of this chunk's events were named."""
        error = self.client._redact(str(body.get("error", "")))[:200]
        size = len(chunk)
        named: dict[int, EventOutcome] = {}

        def name(pos: int, code: str, reason: str) -> None:
            if 0 <= pos < size and pos not in named:
                named[pos] = EventOutcome(Status.REJECTED, code, f"{reason} (HTTP 400: {error})")

        for map_key, code, what in (
            ("events_with_invalid_fields", "invalid_fields", "Amplitude found an invalid value in field"),
            ("events_with_missing_fields", "missing_fields", "Amplitude found a required field missing:"),
            (
                "events_with_invalid_id_lengths",
                "invalid_id",
                "Amplitude refused the id (too short for min_id_length, or on its invalid list) in",
            ),
        ):
            fields = body.get(map_key)
            if isinstance(fields, dict):
                for field_name, positions in fields.items():
                    for pos in _int_list(positions):
                        name(pos, code, f"{what} {field_name!r}; fix the event, it will never be accepted")
        for pos in _int_list(body.get("silenced_events")):
            name(pos, "silenced", "Amplitude silenced this event (its device sent too many events)")
        silenced_devices = _str_keys(body.get("silenced_devices"))
        if silenced_devices:
            for pos, i in enumerate(chunk):
                did = self.events[i].get("device_id")
                if isinstance(did, str) and did in silenced_devices:
                    name(pos, "silenced", "Amplitude silenced this event's device (too many events)")
        for pos, outcome in named.items():
            self._set([chunk[pos]], outcome)
        return len(named)

    def _configuration_error(self, chunk: list[int], reply: _Reply) -> None:
        client = self.client
        body = reply.body
        detail = client._redact(str(body.get("error", "")))[:200]
        missing = body.get("missing_field")
        if missing:
            detail += f" (missing field {client._redact(str(missing))[:50]})"
        pending = (
            len(chunk)
            + sum(len(c) for c in self.ready)
            + sum(len(h.indices) for h in self.held)
            + sum(len(r.chunk) for r in self.retries)
            + len(self.events)
            - self.cursor
        )
        logger.error(
            "Amplitude refused the request (HTTP %d: %s): check the API key, the region and the endpoint "
            "(%s); %d events kept as retry later, none dropped",
            reply.status,
            detail,
            _redact_url(client.endpoint),
            pending,
        )
        reason = (
            f"configuration error: Amplitude answered HTTP {reply.status} ({detail}); check the API key, "
            "region and endpoint, then retry"
        )
        self._set(chunk, EventOutcome(Status.RETRY_LATER, "configuration", reason))
        self._retry_later_everything("configuration", reason)
