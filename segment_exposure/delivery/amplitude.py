"""Delivery of Amplitude events over HTTP V2 or the Batch API, accounting for every event.

Why not amplitude-analytics: it drops events after a short outage, on a 2xx with a non-JSON body, on a
connection reset and in its final flush. ``AmplitudeClient`` instead answers, for every event it was
given, one of three things (``Status``): delivered, rejected (Amplitude will never accept it as it is,
with the reason), or retry later (nothing is known to be wrong with the event; send it again, with the same
``insert_id``). Nothing else can happen to an event, whatever the server or the network does.

How each answer of Amplitude is handled :

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

A ``deadline`` bounds a whole ``AmplitudeClient.send``, including every wait; what is unfinished when it
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

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from segment_exposure.delivery._http import Poster, RequestsPoster, Urllib3Poster, redact_url
from segment_exposure.delivery.encoding import BodyEncoder, RequestLimits
from segment_exposure.delivery.outcomes import DeliveryResult, EventOutcome, Status
from segment_exposure.delivery.send_link import Backoff, SendLink, SendSettings
from segment_exposure.delivery.send_scheduler import Send
from segment_exposure.delivery.transport import Redactor, Transport

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


#: Amplitude's documented limits: HTTP V2 bodies must stay under 1 MB, Batch under 20 MB; 2000 events each.
LIMITS: Mapping[str, RequestLimits] = {
    "http": RequestLimits(max_events=2000, max_bytes=999_999),
    "batch": RequestLimits(max_events=2000, max_bytes=20_000_000),
}


class AmplitudeClient:
    """A pooled, retrying client for Amplitude's HTTP V2 or Batch ingestion API.

    ``region`` ("US" or "EU") and ``api`` ("http" or "batch") pick the URL; ``endpoint``, a full URL,
    overrides both (``api`` is then inferred from a path ending in ``/batch`` unless given). Events never
    choose where they go. ``min_id_length`` is sent as ``options.min_id_length``. ``deadline`` is the
    default time budget of ``send`` in seconds (``None``: bounded only by ``max_attempts`` and
    ``max_throttle_holds``). ``timeout`` is the per-request (connect, read) timeout, always cut to what is
    left of the deadline. ``throttle_wait`` is how long throttled events are held after a 429 (Amplitude asks
    for at least 30 s). Retries wait ``backoff_initial * 2**n`` (capped at ``backoff_max``) plus a random
    jitter of up to ``backoff_jitter`` seconds.

    The API key appears in request bodies only: never in logs, exception messages, reasons or ``repr``.
    """

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
                    f"'http://127.0.0.1:8080/2/httpapi', got {redact_url(str(endpoint))!r}"
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
        url = endpoint if endpoint is not None else ENDPOINTS[(region_key, api)]
        self.region = region_key
        self.api: Api = api
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
        poster: Poster
        if session is None:
            # The environment's proxy and CA settings, read once, here (requests would read them, and
            # ~/.netrc, again on every request), for our own urllib3 pool. Sends that post on the calling
            # thread and those on the pool's threads can overlap: room for both.
            with requests.Session() as reader:
                environment = reader.merge_environment_settings(url, {}, None, None, None)
            self._proxies = dict(environment["proxies"] or {})
            poster = Urllib3Poster(
                url,
                maxsize=max(pool_maxsize, max_in_flight) * 2,
                proxies=self._proxies,
                verify=environment["verify"],
            )
        else:
            poster = RequestsPoster(session)
        headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        self._redactor = Redactor(api_key)
        self._encoder = BodyEncoder(api_key, min_id_length=min_id_length, gzip=gzip)
        self._transport = Transport(
            poster,
            url,
            headers=headers,
            timeout=(float(timeout), float(timeout)) if isinstance(timeout, (int, float)) else timeout,
            max_in_flight=max_in_flight,
            redactor=self._redactor,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={redact_url(self.endpoint)!r}, api={self.api!r}, "
            f"api_key='***', gzip={self.gzip!r}, min_id_length={self.min_id_length!r})"
        )

    __str__ = __repr__

    def __enter__(self) -> AmplitudeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Abort waits of sends in progress (their events come back as retry later); close our session."""
        self._transport.close()

    @property
    def proxies(self) -> dict[str, str]:
        """The proxies read from the environment when the client was built (empty with a caller's session)."""
        return dict(self._proxies)

    @property
    def observer(self) -> Callable[[str], None] | None:
        """Called with the code of each request's answer: its HTTP status ("200", "503", ...), or "timeout"
        or "reset" when none came. For metrics (segment_exposure.metrics): it must be quick; errors are
        logged."""
        return self._transport.observer

    @observer.setter
    def observer(self, observer: Callable[[str], None] | None) -> None:
        self._transport.observer = observer

    @property
    def endpoint(self) -> str:
        """The URL every request goes to."""
        return self._transport.endpoint

    @endpoint.setter
    def endpoint(self, endpoint: str) -> None:
        self._transport.endpoint = endpoint

    @property
    def timeout(self) -> tuple[float, float]:
        """The per-request (connect, read) timeout in seconds."""
        return self._transport.timeout

    @timeout.setter
    def timeout(self, timeout: tuple[float, float]) -> None:
        self._transport.timeout = timeout

    # -- public ----------------------------------------------------------------------------------------

    def send(self, events: Sequence[Mapping[str, Any]], *, deadline: float | None = None) -> DeliveryResult:
        """Deliver ``events`` (Amplitude events, e.g. from ``to_amplitude_event``); never raises for them.

        ``deadline`` is a budget in seconds for the whole call (default: the client's ``deadline``).
        The result holds one outcome per event, in order.
        """
        started = time.monotonic()
        budget = self.deadline if deadline is None else deadline
        end = math.inf if budget is None else started + budget
        run = Send(self._send_link(), events, end)
        run.run()
        result = DeliveryResult(run.finish(), requests=run.requests, elapsed=time.monotonic() - started)
        self._log_summary(result)
        return result

    # -- internals --------------------------------------------------------------------------------------

    def _send_link(self) -> SendLink:
        """What a send uses of this client, with the settings as they are now."""
        return SendLink(
            transport=self._transport,
            encoder=self._encoder,
            backoff=Backoff(self.backoff_initial, self.backoff_max, self.backoff_jitter),
            redactor=self._redactor,
            settings=SendSettings(
                limits=self.limits,
                api=self.api,
                endpoint=self.endpoint,
                max_in_flight=self.max_in_flight,
                max_attempts=self.max_attempts,
                throttle_wait=self.throttle_wait,
                max_throttle_holds=self.max_throttle_holds,
            ),
        )

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
