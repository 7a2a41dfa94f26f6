"""Everything that knows the inside of segment-analytics-python's ``Client`` (checked: 2.3.1-2.4.0).

RudderStack's ``rudder-sdk-python`` is a fork of the same client: the queue, consumer and session helpers
here serve both, and what differs between them (the client class, the wire message, limits, the POST)
is an ``AnalyticsSdk``: ``SEGMENT`` here, ``tracking.rudderstack_client.RUDDERSTACK`` for the fork.

The provider relies on a few facts about it (pinned by tests):
``client.queue`` is a ``queue.Queue``, ``client.consumers`` are threads that call ``self.request(batch)``
and ``self.on_error(exc, batch)``, and the module ``segment.analytics.request`` posts through one global
``requests.Session``. Keeping that knowledge here means one place to change when the library does;
``segment_check`` verifies it at start-up, and the provider uses the public API where it does not hold.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import inspect
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, TypeGuard

from segment_exposure._signals import main_thread_signals

__all__ = [
    "DEFAULT_UPLOAD_SIZE",
    "SEGMENT",
    "AnalyticsSdk",
    "RedactingFilter",
    "SegmentSdk",
    "accepts_direct_enqueue",
    "check_async_options",
    "consumer_class",
    "enqueue",
    "forget_parent_threads",
    "fresh_http_sessions",
    "instrument",
    "is_fatal",
    "is_task_queue",
    "make_client",
    "post_batch",
    "request_module",
    "retry_after_seconds",
    "revive_after_fork",
    "split_batch",
    "stop_consumers",
    "unfinished",
    "upload_size",
    "wait_drained",
    "wait_for_room",
    "wire_message",
]

log = logging.getLogger(__name__)

BatchCallback = Callable[[list[dict[str, Any]]], None]
ErrorCallback = Callable[[BaseException, list[dict[str, Any]]], None]

_INSTRUMENTED = "_segment_exposure_instrumented"
_HOOKS = "_segment_exposure_hooks"
_CONSUMER_SETTINGS = (
    "upload_size",
    "host",
    "upload_interval",
    "gzip",
    "retries",
    "timeout",
    "proxies",
    "oauth_manager",
    "max_total_backoff_duration",
    "max_rate_limit_duration",
)


def make_client(write_key: str, host: str | None, **options: Any) -> Any:
    """A Segment client in the one mode that is safe here: asynchronous, one consumer thread."""
    from segment.analytics import Client

    check_async_options(options, "segment-analytics-python")
    # 500 exposures (~350 KB) per request instead of 100: a request's fixed cost in requests is ~0.75 ms
    # of CPU, and Segment's consumer still caps each batch at 475 KB.
    options.setdefault("upload_size", 500)
    with main_thread_signals():  # its consumer thread starts in the constructor
        return Client(write_key, host=host, **options)


def check_async_options(options: dict[str, Any], library: str) -> None:
    """Refuse the client options that would block the caller or lose a thread (``library`` names the SDK)."""
    if options.get("sync_mode"):
        raise ValueError("sync_mode=True would send on the caller's thread; the provider never blocks it")
    if options.get("thread", 1) != 1:
        raise ValueError(f"{library}'s thread>1 is broken (join stops only one thread): use 1")


def chained_on_error(on_failed: ErrorCallback, user_on_error: ErrorCallback | None) -> ErrorCallback:
    """An ``on_error`` that counts the failure, then calls the user's own; no exception escapes it.

    Upstream, one exception in the consumer thread kills it for good while ``track()`` keeps answering True.
    """

    def on_error(exc: BaseException, batch: list[dict[str, Any]]) -> None:
        try:
            on_failed(exc, batch)
        except Exception:  # pragma: no cover - our own callback is defensive already
            log.exception("segment-exposure: failure accounting raised")
        if user_on_error is not None:
            try:
                user_on_error(exc, batch)
            except Exception:
                log.exception("segment-exposure: the Segment client's on_error callback raised; ignored")

    return on_error


def instrument(
    client: Any,
    on_delivered: BatchCallback,
    on_failed: ErrorCallback,
    *,
    max_batch_bytes: int | None = None,
) -> None:
    """Hook the client's consumers so delivery and failure of each batch are reported.

    ``on_error`` is wrapped so that no exception, ours or the user's callback's, can escape into the
    consumer thread: upstream, one exception there kills the thread for good and ``track()`` keeps
    answering True while nothing is sent. ``max_batch_bytes``: split a batch the consumer gathered
    that is larger (RudderStack's consumer stops only after crossing 4 MiB, while its data plane
    refuses a request over 4000 KiB, and a 413 loses the whole batch).
    """
    user_on_error = getattr(client, "on_error", None)
    if getattr(user_on_error, _INSTRUMENTED, False):
        user_on_error = getattr(user_on_error, "wrapped", None)

    safe_on_error = chained_on_error(on_failed, user_on_error)
    safe_on_error.wrapped = user_on_error  # type: ignore[attr-defined]
    setattr(safe_on_error, _INSTRUMENTED, True)
    client.on_error = safe_on_error

    setattr(client, _HOOKS, (on_delivered, safe_on_error, max_batch_bytes))
    for consumer in getattr(client, "consumers", None) or ():
        _instrument_consumer(consumer, on_delivered, safe_on_error, max_batch_bytes)


def split_batch(
    batch: list[dict[str, Any]], max_bytes: int, max_count: int | None = None
) -> list[list[dict[str, Any]]]:
    """``batch`` in order, cut so each part's messages total at most ``max_bytes`` of JSON (a message
    larger on its own is a part of its own), and hold at most ``max_count`` messages."""
    parts: list[list[dict[str, Any]]] = [[]]
    size = 0
    for message in batch:
        length = len(json.dumps(message, default=str).encode()) + 1
        if parts[-1] and (
            size + length > max_bytes or (max_count is not None and len(parts[-1]) >= max_count)
        ):
            parts.append([])
            size = 0
        parts[-1].append(message)
        size += length
    return parts


def _instrument_consumer(
    consumer: Any, on_delivered: BatchCallback, on_error: ErrorCallback, max_batch_bytes: int | None = None
) -> None:
    consumer.on_error = on_error
    original = getattr(consumer, "_segment_exposure_request", None) or consumer.request

    def deliver(batch: list[dict[str, Any]]) -> Any:
        response = original(batch)  # raises on failure: upload() then calls on_error
        try:
            on_delivered(batch)
        except Exception:  # pragma: no cover - defensive: never break the consumer
            log.exception("segment-exposure: delivery accounting raised")
        return response

    def request(batch: list[dict[str, Any]]) -> Any:
        if max_batch_bytes is None or len(batch) < 2:
            return deliver(batch)
        parts = split_batch(batch, max_batch_bytes)
        if len(parts) == 1:
            return deliver(batch)
        # Each part's outcome is reported here; the consumer sees success, so nothing is counted twice.
        for part in parts:
            try:
                deliver(part)
            except Exception as exc:
                log.error("segment-exposure: error uploading part of a batch: %s", exc)
                on_error(exc, part)
        return None

    consumer._segment_exposure_request = original
    consumer.request = request


def is_task_queue(q: object) -> TypeGuard[Any]:
    """True for a ``queue.Queue``, including gevent's, which monkey-patching puts in its place.

    A client made before ``monkey.patch_all()`` (an app preloaded by gunicorn's master) holds the
    standard class while ``queue.Queue`` names gevent's afterwards, and the reverse: so not isinstance.
    """
    return isinstance(q, queue.Queue) or all(
        hasattr(q, name) for name in ("put", "get", "task_done", "unfinished_tasks", "maxsize", "full")
    )


def accepts_direct_enqueue(client: Any, client_class: type | None = None) -> bool:
    """True for a ``client_class`` (segment-analytics-python's ``Client`` unless given) that queues for its
    consumer threads."""
    if client_class is None:
        from segment.analytics import Client

        client_class = Client
    return (
        isinstance(client, client_class)
        and is_task_queue(getattr(client, "queue", None))
        and not getattr(client, "sync_mode", True)
        and bool(getattr(client, "send", False))
    )


def wire_message(track: dict[str, Any]) -> dict[str, Any]:
    """The message ``Client.track(**track)`` would queue, built directly.

    ``Client.track()`` re-validates, deep-"cleans" and JSON-encodes every message on the calling thread
    (about two thirds of the provider's background cost); an exposure is already plain str/dict data,
    validated and size-checked, so the provider builds the same dict itself. A test pins it to what
    ``track()`` produces.
    """
    from segment.analytics.version import VERSION

    context = track["context"]
    context["library"] = {"name": "analytics-python", "version": VERSION}
    return {
        "integrations": track.get("integrations") or {},
        "anonymousId": track["anonymous_id"],
        "properties": track["properties"],
        "timestamp": track["timestamp"].isoformat(timespec="milliseconds"),
        "context": context,
        "userId": track["user_id"],
        "type": "track",
        "event": track["event"],
        "messageId": track["message_id"],
    }


def enqueue(client: Any, message: dict[str, Any]) -> bool:
    """Put a wire message on the client's queue without blocking; False when the queue is full."""
    try:
        client.queue.put(message, block=False)
    except queue.Full:
        return False
    return True


def wait_drained(client: Any, deadline: float) -> bool:
    """Wait until the client's queue has no unfinished messages, or ``deadline`` (monotonic) passes.

    ``Client.flush()`` is ``queue.join()`` with no timeout, which can block for minutes during an outage;
    this waits on the same condition with a deadline (without it: ``segment_check.wait_flushed``).
    """
    q = getattr(client, "queue", None)
    if not is_task_queue(q):
        flush = getattr(client, "flush", None)
        if flush is not None:
            flush()
        return True
    all_tasks_done = getattr(q, "all_tasks_done", None)
    if all_tasks_done is None:
        # gevent's monkey-patched queue.Queue has no condition to wait on: poll (its sleep yields).
        while q.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True
    with all_tasks_done:
        while q.unfinished_tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            all_tasks_done.wait(remaining)
    return True


def wait_for_room(
    client: Any, deadline: float, stopped: Callable[[], bool], *, conditions: bool = True
) -> bool:
    """Wait until the client's queue has room, ``deadline`` (monotonic) passes or ``stopped()``.

    Waits on ``queue.Queue``'s ``not_full`` condition; polls the public ``full()`` with ``conditions=False``
    and for gevent's queue, which has no condition (its sleep yields).
    """
    q = getattr(client, "queue", None)
    if not is_task_queue(q):
        return False
    if not conditions or not hasattr(q, "not_full"):
        while q.full():
            if time.monotonic() >= deadline or stopped():
                return False
            time.sleep(0.05)
        return True
    with q.not_full:
        # len(q.queue), not q.qsize(): qsize() takes q.mutex, which not_full already holds.
        while q.maxsize > 0 and len(q.queue) >= q.maxsize:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stopped():
                return False
            q.not_full.wait(min(remaining, 0.25))
    return True


def unfinished(client: Any) -> int:
    """Messages on the client's queue not yet done by its consumer (0 for a client without a queue)."""
    return int(getattr(getattr(client, "queue", None), "unfinished_tasks", 0) or 0)


#: segment-analytics-python's own default ``upload_size`` (messages per request).
DEFAULT_UPLOAD_SIZE = 100


def upload_size(client: Any) -> int:
    """The most messages the client's consumer puts in one request (its ``upload_size``, default 100)."""
    consumers = getattr(client, "consumers", None) or ()
    default = DEFAULT_UPLOAD_SIZE
    return max(1, int(getattr(consumers[0], "upload_size", default) if consumers else default))


def is_fatal(exc: BaseException) -> bool:
    """True for the error Segment's consumer raises for what no retry can fix (``FatalError``)."""
    from segment.analytics.consumer import FatalError

    return isinstance(exc, FatalError)


def retry_after_seconds(response: Any) -> float:
    """The seconds a 429/503 response asked for (``Retry-After``), 0 when it asked for none."""
    from segment.analytics.request import parse_retry_after

    try:
        return float(parse_retry_after(response) or 0.0)
    except Exception:
        return 0.0


def post_batch(client: Any, batch: list[dict[str, Any]], *, timeout: float, retry_count: int) -> None:
    """POST ``batch`` with the client's settings through Segment's own ``request.post``; raises on failure."""
    from segment.analytics.request import post

    # retry_count is a parameter from 2.4.0; before it, post() would send it as a field of the body.
    extra = {"retry_count": retry_count} if _takes_retry_count(post) else {}
    post(
        client.write_key,
        getattr(client, "host", None),
        gzip=bool(getattr(client, "gzip", False)),
        timeout=min(float(getattr(client, "timeout", 15) or 15), timeout),
        proxies=getattr(client, "proxies", None),
        oauth_manager=getattr(client, "oauth_manager", None),
        batch=batch,
        **extra,
    )


@functools.cache
def _takes_retry_count(post: Callable[..., Any]) -> bool:
    return "retry_count" in inspect.signature(post).parameters


def stop_consumers(client: Any, deadline: float) -> None:
    """Ask the consumer threads to stop and join them, bounded by ``deadline``."""
    consumers = getattr(client, "consumers", None) or ()
    for consumer in consumers:
        consumer.pause()
    # Paused, a consumer still waits out its upload_interval for messages; with none queued or in flight
    # it holds nothing, so it is left to end on its own.
    if getattr(getattr(client, "queue", None), "unfinished_tasks", None) != 0:
        for consumer in consumers:
            if consumer.is_alive():
                consumer.join(max(0.0, deadline - time.monotonic()))
    # The client's own exit hook joins the same threads with no timeout: the stop is done, and bounded.
    join = getattr(client, "join", None)
    if join is not None:
        atexit.unregister(join)


_rebased: dict[tuple[type, type], type] = {}


def _thread_class_now(cls: type) -> type:
    """``cls`` on top of today's ``threading.Thread``.

    gevent's monkey-patching replaces ``threading.Thread`` with a subclass whose ``join()`` works for a
    thread that is a greenlet. A class defined before the patch (Segment's ``Consumer``, imported by an
    app that gunicorn preloads in its master) keeps the original base, and joining it then waits forever.
    """
    thread = threading.Thread
    if issubclass(cls, thread):
        return cls
    key = (cls, thread)
    if key not in _rebased:
        _rebased[key] = type(cls.__name__, (cls, thread), {})
    return _rebased[key]


def revive_after_fork(client: Any, consumer_class: type | None = None) -> None:
    """Give a forked child a working client: a fresh queue, fresh consumer threads, a fresh session.

    The parent's queued messages are discarded in the child (the parent still sends them), and the
    parent's pooled HTTP connections are not shared with it. ``consumer_class``: the SDK's ``Consumer``
    (Segment's by default); each new consumer gets the settings of the one it replaces that its
    constructor takes.
    """
    if consumer_class is None:
        from segment.analytics.consumer import Consumer

        consumer_class = Consumer
    fresh_http_sessions()
    old_queue = client.queue
    client.queue = queue.Queue(old_queue.maxsize)
    hooks = getattr(client, _HOOKS, None)
    accepted = set(inspect.signature(consumer_class).parameters)
    thread_class = _thread_class_now(consumer_class)
    consumers = []
    for old in getattr(client, "consumers", None) or ():
        settings = {
            name: getattr(old, name) for name in _CONSUMER_SETTINGS if name in accepted and hasattr(old, name)
        }
        consumer = thread_class(client.queue, old.write_key, on_error=old.on_error, **settings)
        if hooks is not None:
            _instrument_consumer(consumer, *hooks)
        consumers.append(consumer)
        if getattr(client, "send", True):
            with main_thread_signals():
                consumer.start()
    client.consumers = consumers


#: Where segment-analytics-python (and RudderStack's fork) keep module-level ``requests`` sessions that
#: every client posts through.
_SESSION_MODULES = (
    "segment.analytics.request",
    "segment.analytics.oauth_manager",
    "rudderstack.analytics.request",
)


def fresh_http_sessions() -> list[str]:
    """In a forked child: replace Segment's module-level HTTP sessions with new ones; returns their names.

    Every client posts through one global ``requests.Session`` whose pool keeps the parent's keep-alive
    connections. A child that reused one would write on the parent's TCP connection, and the two
    processes would read each other's responses: one of them then waits out the request timeout (15 s)
    with its batch unfinished. No public API gives a client its own session, so this reach is kept
    even without the other internals; the sessions are found by type, not by name, so a renamed
    attribute is still found, and a release without module-level sessions needs none of this.
    """
    import requests

    replaced = []
    for module_name in _SESSION_MODULES:
        module = sys.modules.get(module_name)
        for name, value in list(vars(module).items()) if module is not None else ():
            if isinstance(value, requests.Session):
                setattr(module, name, requests.Session())
                replaced.append(f"{module_name}.{name}")
    return replaced


def forget_parent_threads(client: Any) -> None:
    """In a forked child that never sends: drop the parent's consumer threads from the client.

    They do not exist in this process. After a C ``fork()`` (uWSGI) Python still believes they are
    alive, and the client's own exit hook, ``join()`` with no timeout, would wait for them forever.
    """
    if getattr(client, "consumers", None):
        client.consumers = []


class RedactingFilter(logging.Filter):
    """Replaces secrets in log records, including those of Segment's own ``segment`` logger.

    Segment's client logs whole request bodies (with ``writeKey``) at debug level and whole messages
    on some errors; a secret in a log file is a leak.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret:
            with self._lock:
                self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        if any(s in message for s in secrets):
            for s in secrets:
                message = message.replace(s, "[redacted]")
            record.msg = message
            record.args = None
        return True


class AnalyticsSdk(Protocol):
    """What differs between the analytics SDKs the provider sends through (Segment's and its forks).

    The rest of this module (queue, consumers, sessions, flush) serves every one of them alike.
    """

    #: The name ``SegmentExposureTrackingProvider(sdk=...)`` takes: ``segment`` or ``rudderstack``.
    name: str
    #: The SDK's package; both lay it out alike (``.consumer.Consumer``, ``.request.post``).
    package: str
    #: For people: log lines and errors.
    label: str
    #: The largest message (JSON bytes) its API takes; larger exposures are set aside as ``too_large``.
    max_message_bytes: int
    #: The most message bytes one request of a per-invocation flush carries.
    max_batch_bytes: int
    #: The SDK's own default ``upload_size`` (messages per request).
    default_upload_size: int
    #: Split a batch its consumer gathered past this many bytes (None: the consumer keeps to the limit).
    consumer_batch_limit: int | None
    #: The loggers the SDK writes request bodies and messages to (the write-key redactor goes on them).
    logger_names: tuple[str, ...]

    def owns(self, client: object) -> bool:
        """True when ``client`` is this SDK's ``Client`` (checked without importing the SDK)."""
        ...

    def make_client(self, write_key: str, host: str | None, **options: Any) -> Any:
        """A client in the one mode that is safe here: asynchronous, one consumer thread."""
        ...

    def probe_client(self) -> Any:
        """A ``send=False`` client for the start-up self-check (no thread, no exit hook)."""
        ...

    def accepts_direct_enqueue(self, client: Any) -> bool:
        """True for this SDK's ``Client`` queuing for its consumer threads."""
        ...

    def wire_message(self, track: dict[str, Any]) -> dict[str, Any]:
        """The message ``Client.track(**track)`` would queue, built directly."""
        ...

    def is_fatal(self, exc: BaseException) -> bool:
        """True for an error no retry can fix."""
        ...

    def retry_after_seconds(self, exc: BaseException) -> float:
        """The seconds a 429/503 asked for (``Retry-After``), 0 when it asked for none or cannot say."""
        ...

    def post_batch(
        self, client: Any, batch: list[dict[str, Any]], *, timeout: float, retry_count: int
    ) -> None:
        """POST ``batch`` with the client's settings through the SDK's own ``post``; raises on failure."""
        ...


def request_module(sdk: AnalyticsSdk) -> ModuleType:
    """The SDK's module whose ``post`` sends a batch (it holds the SDK's shared HTTP session)."""
    return importlib.import_module(f"{sdk.package}.request")


def consumer_class(sdk: AnalyticsSdk) -> type:
    """The SDK's consumer thread class (a forked child's new consumers are made from it)."""
    consumer: type = importlib.import_module(f"{sdk.package}.consumer").Consumer
    return consumer


#: Segment rejects a message over 32 KB of JSON.
SEGMENT_MAX_MESSAGE_BYTES = 32 << 10
#: Segment's API takes batches up to 500 KB; its own client stops at this many bytes of messages.
SEGMENT_MAX_BATCH_BYTES = 475_000


class SegmentSdk:
    """segment-analytics-python, as an ``AnalyticsSdk``."""

    name = "segment"
    package = "segment.analytics"
    label = "Segment"
    max_message_bytes = SEGMENT_MAX_MESSAGE_BYTES
    max_batch_bytes = SEGMENT_MAX_BATCH_BYTES
    default_upload_size = DEFAULT_UPLOAD_SIZE
    #: Segment's consumer closes a batch before it passes 475 KB.
    consumer_batch_limit: int | None = None
    logger_names: tuple[str, ...] = ("segment",)

    def owns(self, client: object) -> bool:
        return type(client).__module__.startswith(self.package)

    def make_client(self, write_key: str, host: str | None, **options: Any) -> Any:
        return make_client(write_key, host, **options)

    def probe_client(self) -> Any:
        from segment.analytics import Client

        return Client("self-check-write-key", send=False, max_queue_size=1)

    def accepts_direct_enqueue(self, client: Any) -> bool:
        return accepts_direct_enqueue(client)

    def wire_message(self, track: dict[str, Any]) -> dict[str, Any]:
        return wire_message(track)

    def is_fatal(self, exc: BaseException) -> bool:
        return is_fatal(exc)

    def retry_after_seconds(self, exc: BaseException) -> float:
        response = getattr(exc, "response", None)
        return 0.0 if response is None else retry_after_seconds(response)

    def post_batch(
        self, client: Any, batch: list[dict[str, Any]], *, timeout: float, retry_count: int
    ) -> None:
        post_batch(client, batch, timeout=timeout, retry_count=retry_count)

    def __repr__(self) -> str:
        return "<AnalyticsSdk segment>"


#: segment-analytics-python: the default SDK.
SEGMENT: AnalyticsSdk = SegmentSdk()
