"""Counting what the webhook does: events by outcome, its answers, Amplitude's answers, request time.

Why a wrapper and a hook rather than counters inside the destination: the destination and the Amplitude
client stay free of any metrics library. `CountingDestination` reads the per-event statuses
``on_batch`` returns anyway, and the Amplitude client reports each answer's code to its ``observer``.
The same counts feed Prometheus (``segment-exposure serve --metrics-port``) and CloudWatch's embedded
metric format (the Lambda handler), through a `Recorder`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ._prom import prometheus

__all__ = [
    "EVENT_OUTCOMES",
    "WEBHOOK_METRICS",
    "ASGIMetricsMiddleware",
    "CountingDestination",
    "InvocationCounts",
    "MetricsMiddleware",
    "PrometheusRecorder",
    "Recorder",
    "outcome_of",
]

#: The ``outcome`` label values of ``segment_exposure_destination_events_total``.
EVENT_OUTCOMES = ("delivered", "rejected", "retry", "not_exposure")

EVENTS = "segment_exposure_destination_events_total"
REQUESTS = "segment_exposure_destination_requests_total"
AMPLITUDE = "segment_exposure_amplitude_requests_total"
SECONDS = "segment_exposure_destination_request_seconds"

#: Name (as exposed) -> help text of every webhook metric.
WEBHOOK_METRICS = {
    EVENTS: "Segment events the webhook handled, by outcome (retry: Segment is asked to send them again).",
    REQUESTS: "The webhook's answers to Segment, by HTTP status.",
    AMPLITUDE: "Amplitude's answers to the webhook's requests, by HTTP status (reset, timeout: no answer).",
    SECONDS: "Time to answer one webhook request, in seconds.",
}

#: Request durations: the delivery deadline is 4.5 s by default.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Recorder(Protocol):
    """Where the counts go."""

    def events(self, outcome: str, count: int) -> None: ...

    def amplitude(self, code: str) -> None: ...

    def response(self, status: int, seconds: float) -> None: ...


def outcome_of(result: dict[str, Any]) -> str:
    """The outcome of one ``on_batch`` result: 200 delivered; a 400 for ``EventNotSupported`` is not an
    exposure; another 400 rejected for good; anything else (429, 5xx) will be retried by Segment."""
    status = result.get("status")
    if status == 200:
        return "delivered"
    if status == 400:
        message = result.get("errormessage")
        if isinstance(message, str) and message.startswith("EventNotSupported"):
            return "not_exposure"
        return "rejected"
    return "retry"


class CountingDestination:
    """Wraps a destination: counts each event's outcome and observes its Amplitude client's answers.

    Everything else (``deadline``, ``close()``, ...) is the wrapped destination's.
    """

    def __init__(self, destination: Any, recorder: Recorder) -> None:
        self.destination = destination
        self.recorder = recorder
        client = getattr(destination, "client", None)
        if client is not None and hasattr(client, "observer"):
            previous: Callable[[str], None] | None = client.observer
            if previous is None:
                client.observer = recorder.amplitude
            else:

                def both(code: str) -> None:
                    previous(code)
                    recorder.amplitude(code)

                client.observer = both

    def __getattr__(self, name: str) -> Any:
        return getattr(self.destination, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.destination!r})"

    def on_batch(self, events: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            results: list[dict[str, Any]] = self.destination.on_batch(events)
        except Exception:
            self.recorder.events("retry", len(events))  # the webhook answers 500: Segment resends them all
            raise
        for outcome, count in Counter(map(outcome_of, results)).items():
            self.recorder.events(outcome, count)
        return results


class PrometheusRecorder:
    """The webhook's counts as prometheus-client metrics (multiprocess mode under ``serve``)."""

    def __init__(self, registry: Any = None) -> None:
        prom = prometheus()
        target = prom.REGISTRY if registry is None else registry
        self._events = prom.Counter(
            EVENTS.removesuffix("_total"), WEBHOOK_METRICS[EVENTS], ["outcome"], registry=target
        )
        self._requests = prom.Counter(
            REQUESTS.removesuffix("_total"), WEBHOOK_METRICS[REQUESTS], ["status"], registry=target
        )
        self._amplitude = prom.Counter(
            AMPLITUDE.removesuffix("_total"), WEBHOOK_METRICS[AMPLITUDE], ["code"], registry=target
        )
        self._seconds = prom.Histogram(
            SECONDS, WEBHOOK_METRICS[SECONDS], buckets=SECONDS_BUCKETS, registry=target
        )
        for outcome in EVENT_OUTCOMES:
            self._events.labels(outcome)  # every outcome exists from the start, at 0

    def events(self, outcome: str, count: int) -> None:
        self._events.labels(outcome).inc(count)

    def amplitude(self, code: str) -> None:
        self._amplitude.labels(code).inc()

    def response(self, status: int, seconds: float) -> None:
        self._requests.labels(str(status)).inc()
        self._seconds.observe(seconds)


class InvocationCounts:
    """A `Recorder` into plain counters, for one unit of work (a Lambda invocation)."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.amplitude_codes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.seconds = 0.0

    def events(self, outcome: str, count: int) -> None:
        self.outcomes[outcome] += count

    def amplitude(self, code: str) -> None:
        self.amplitude_codes[code] += 1

    def response(self, status: int, seconds: float) -> None:
        self.statuses[status] += 1
        self.seconds += seconds

    def clear(self) -> None:
        self.outcomes.clear()
        self.amplitude_codes.clear()
        self.statuses.clear()
        self.seconds = 0.0


StartResponse = Callable[..., Any]


class MetricsMiddleware:
    """WSGI middleware: each answer's status and time (``/healthz`` probes are not counted)."""

    def __init__(
        self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], recorder: Recorder
    ) -> None:
        self.app = app
        self.recorder = recorder

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r})"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            return self.app(environ, start_response)
        started = time.perf_counter()
        status = [500]

        def counting_start_response(line: str, headers: Any, *exc_info: Any) -> Any:
            try:
                status[0] = int(line.split(" ", 1)[0])
            except ValueError:
                pass
            return start_response(line, headers, *exc_info)

        try:
            return self.app(environ, counting_start_response)
        finally:
            self.recorder.response(status[0], time.perf_counter() - started)


class ASGIMetricsMiddleware:
    """ASGI middleware (what ``serve`` runs): each answer's status and time (``/healthz`` probes and
    lifespan messages are not counted; a client that left before its answer is not counted either)."""

    def __init__(self, app: Callable[..., Any], recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r})"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") == "/healthz":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def counting_send(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status.append(int(message.get("status", 500)))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if status:
                self.recorder.response(status[0], time.perf_counter() - started)
