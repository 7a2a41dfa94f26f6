"""The start-up self-check of what ``segment_client`` relies on inside segment-analytics-python.

Checked against segment-analytics-python 2.3.1 and 2.4.0 (CI's ``.ci/versions`` runs both ends), and
the same checks against RudderStack's fork (rudder-sdk-python 2.1.4 and 2.1.9), each SDK once. Each
internal has a public-API fallback in the provider; when one is missing (a newer release), or when
``SEGMENT_EXPOSURE_FORCE_PUBLIC_API=1`` is set, the provider uses the fallback and logs one warning
naming what it could not use, instead of counters that silently stay at zero.
"""

from __future__ import annotations

import atexit
import copy
import functools
import inspect
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from segment_exposure._signals import main_thread_signals
from segment_exposure.tracking import segment_client
from segment_exposure.tracking.sdk_choice import sdk_named
from segment_exposure.tracking.segment_client import SEGMENT, AnalyticsSdk

__all__ = [
    "FORCE_PUBLIC_API_ENV",
    "Internals",
    "check_internals",
    "fallback_on_error",
    "message_builder",
    "new_client_after_fork",
    "wait_flushed",
]

log = logging.getLogger(__name__)

#: Set to 1 to use segment-analytics-python's public API only (what a failed self-check falls back to).
FORCE_PUBLIC_API_ENV = "SEGMENT_EXPOSURE_FORCE_PUBLIC_API"


@dataclass(frozen=True, slots=True)
class Internals:
    """Which of segment-analytics-python's internals the provider may use in this process."""

    #: The hand-built wire message on ``client.queue`` (else ``Client.track()`` on the worker thread;
    #: per invocation, on a ``send=False`` twin whose message the flush posts: ``message_builder``).
    direct_enqueue: bool
    #: ``Consumer.request``/``on_error`` wrapped on ``client.consumers`` (else the constructor's
    #: ``on_error``, and delivery counted once ``Client.flush()`` has drained the queue).
    consumer_hooks: bool
    #: ``queue.Queue``'s ``not_full``/``all_tasks_done`` conditions (else polling ``full()`` and a
    #: ``Client.flush()`` joined with a deadline).
    queue_conditions: bool
    #: A fresh queue and consumers on the same client after fork (else a new ``Client``). Either way,
    #: Segment's module-level HTTP sessions are replaced in the child (``fresh_http_sessions``).
    revive_in_place: bool
    #: What could not be used, for the one warning; empty when everything checked out.
    missing: tuple[str, ...]


_DUMMY_TRACK: dict[str, Any] = {
    "event": "$exposure",
    "user_id": "self-check-user",
    "anonymous_id": "self-check-device",
    "properties": {"flag_key": "self-check-flag", "variant": "on", "experiment_key": "exp-1"},
    "context": {"ip": "127.0.0.1", "page": {"url": "http://127.0.0.1/"}},
    "timestamp": datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
    "message_id": "self-check-message-id",
    "integrations": {"Amplitude": False},
}


def _wire_message_matches(client: Any, sdk: AnalyticsSdk) -> str | None:
    ok, queued = client.track(**copy.deepcopy(_DUMMY_TRACK))
    built = sdk.wire_message(copy.deepcopy(_DUMMY_TRACK))
    if not ok or not isinstance(queued, dict):
        return "Client.track() with send=False did not return the message"
    if json.loads(json.dumps(queued, default=str)) != json.loads(json.dumps(built)):
        return "the hand-built wire message (it differs from what Client.track() queues)"
    return None


def _consumer_problem(client: Any) -> str | None:
    consumers = getattr(client, "consumers", None)
    if not isinstance(consumers, list) or not consumers:
        return "Client.consumers"
    for consumer in consumers:
        if not callable(getattr(consumer, "request", None)) or not hasattr(consumer, "on_error"):
            return "Consumer.request/Consumer.on_error"
    return None


def _revive_problem(client: Any, sdk: AnalyticsSdk) -> str | None:
    import requests

    # Fresh consumers on the same client are safe only while the HTTP session is a module global, which
    # fresh_http_sessions() replaces; with a session anywhere else, a new Client is the safe way.
    request_module = segment_client.request_module(sdk)
    if not any(isinstance(value, requests.Session) for value in vars(request_module).values()):
        return f"a module-level requests.Session in {request_module.__name__}"
    parameters = inspect.signature(segment_client.consumer_class(sdk)).parameters
    wanted = {"queue", "write_key", "on_error", "upload_size", "host"}
    if not wanted <= set(parameters):
        return f"Consumer({', '.join(sorted(wanted - set(parameters)))})"
    return _consumer_problem(client)


def _probe(sdk: AnalyticsSdk = SEGMENT) -> Internals:
    # send=False: nothing is sent, no consumer thread starts, no exit hook is registered.
    client = sdk.probe_client()
    try:
        q = client.queue
        wire = None if segment_client.is_task_queue(q) else "Client.queue (a queue.Queue)"
        wire = wire or _wire_message_matches(client, sdk)
        hooks = _consumer_problem(client)
        conditions = next(
            (
                f"queue.Queue.{name}"
                for name in ("not_full", "all_tasks_done", "mutex")
                if not hasattr(q, name)
            ),
            None,
        )
        revive = _revive_problem(client, sdk)
    finally:
        atexit.unregister(client.join)
    missing = tuple(dict.fromkeys(p for p in (wire, hooks, conditions, revive) if p is not None))
    return Internals(wire is None, hooks is None, conditions is None, revive is None, missing)


@functools.cache
def _checked(forced: bool, sdk_name: str = SEGMENT.name) -> Internals:
    sdk = sdk_named(sdk_name)
    if forced:
        internals = Internals(False, False, False, False, (f"forced by {FORCE_PUBLIC_API_ENV}=1",))
    else:
        try:
            internals = _probe(sdk)
        except Exception as exc:  # anything unexpected: use none of the internals
            internals = Internals(False, False, False, False, (f"the self-check itself ({exc!r})",))
    if internals.missing:
        log.warning(
            "segment-exposure: not using %s client internals (%s); using its public API "
            "instead: Client.track() on the worker thread, the client's on_error for failures, delivery "
            "counted when a flush drains the queue, a new Client after fork",
            sdk.label,
            "; ".join(internals.missing),
        )
    return internals


def check_internals(sdk: AnalyticsSdk = SEGMENT) -> Internals:
    """The self-check's verdict for ``sdk``, computed (and warned about) once per process."""
    return _checked(os.environ.get(FORCE_PUBLIC_API_ENV, "") not in ("", "0"), sdk.name)


ErrorCallback = Callable[[BaseException, list[dict[str, Any]]], None]


def fallback_on_error(on_failed: ErrorCallback, user_on_error: ErrorCallback | None) -> ErrorCallback:
    """The ``on_error`` given to a new ``Client`` when consumer hooks cannot be used: failures still count.

    ``on_failed`` (a provider's bound method) is held weakly, so the client does not keep the provider
    alive; no exception escapes into Segment's consumer thread, where one would end it for good.
    """
    ref = weakref.WeakMethod(on_failed)

    def count_failure(exc: BaseException, batch: list[dict[str, Any]]) -> None:
        failed = ref()
        if failed is not None:
            failed(exc, batch)

    return segment_client.chained_on_error(count_failure, user_on_error)


# -- the public-API fallback's own steps ------------------------------------------------------------


def message_builder(client: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``Client.track()``'s own message building, without queuing: for the public-API fallback.

    ``track()`` returns ``(success, message)``; a twin of ``client`` made with ``send=False`` (no
    consumer thread, no exit hook) only validates, cleans and size-checks, so what it returns is
    exactly what ``client`` would have queued. Raises as ``track()`` does (``RuntimeError`` over
    32 KB, ``AssertionError`` for a bad field), and ``TypeError`` if a release stops returning it.
    """
    twin = type(client)(client.write_key, host=getattr(client, "host", None), send=False, max_queue_size=1)
    atexit.unregister(twin.join)  # none with send=False; older releases registered one regardless

    def build(track: dict[str, Any]) -> dict[str, Any]:
        ok, message = twin.track(**track)
        if not ok or not isinstance(message, dict):
            raise TypeError("Client.track() with send=False did not return the message")
        return message

    return build


def new_client_after_fork(client: Any, make: Callable[[], Any]) -> Any:
    """In a forked child, the public way: a new client from ``make()``, with fresh HTTP sessions.

    The parent's client is dropped: its consumer threads do not exist here, and its exit hook (a
    ``join()`` with no timeout) would wait for them forever. A new ``Client`` alone is not enough:
    it would post through the parent's pooled connections (see ``segment_client.fresh_http_sessions``).
    """
    segment_client.forget_parent_threads(client)
    join = getattr(client, "join", None)
    if join is not None:
        atexit.unregister(join)
    segment_client.fresh_http_sessions()
    return make()


class _Drainer:
    """The public ``Client.flush()`` on one helper thread per client, shared by every waiting flush.

    ``Client.flush()`` (``queue.join()``) has no timeout: a flush whose deadline passes in an outage
    leaves its helper blocked until the queue drains. Shared, an outage costs one thread, not one per
    request. A waiter takes a ticket; a round of the helper covers every ticket taken before it started
    (their messages were queued before they asked), so a waiter whose ticket came later gets a new round.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child's helper does not exist: a new drainer there
        self.cond = threading.Condition()
        self.requested = 0  # tickets taken
        self.finished = 0  # tickets covered by a completed round
        self.succeeded = 0  # tickets covered by a round whose flush() returned normally
        self.running = False

    def wait(self, client: Any, deadline: float) -> bool:
        with self.cond:
            self.requested += 1
            ticket = self.requested
            if not self.running:
                self.running = True
                with main_thread_signals():
                    threading.Thread(
                        target=self._run, args=(client,), name="segment-exposure-flush", daemon=True
                    ).start()
            while self.finished < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return self.succeeded >= ticket

    def _run(self, client: Any) -> None:
        while True:
            with self.cond:
                target = self.requested
            ok = True
            try:
                client.flush()
            except Exception:
                ok = False
                log.exception("segment-exposure: the Segment client's flush() raised")
            with self.cond:
                self.finished = target
                if ok:
                    self.succeeded = target
                self.cond.notify_all()
                if self.requested == target:
                    self.running = False
                    return


#: Each client's drainer, held weakly: a dropped client takes its drainer with it. No lock (one taken
#: here could be inherited held through fork): two threads racing at the first flush may each start a
#: drainer, which costs one thread and loses nothing.
_drainers: weakref.WeakKeyDictionary[Any, _Drainer] = weakref.WeakKeyDictionary()


def _drainer(client: Any) -> _Drainer:
    try:
        drainer = _drainers.get(client)
        if drainer is None or drainer.pid != os.getpid():
            drainer = _drainers[client] = _Drainer()
    except TypeError:  # a client that cannot be weakly referenced: a drainer per call
        return _Drainer()
    return drainer


def wait_flushed(client: Any, deadline: float) -> bool:
    """Without ``queue.Queue``'s conditions: True once the public ``Client.flush()`` has returned, run
    on the client's one shared helper thread, or False when ``deadline`` (monotonic) passes first."""
    return _drainer(client).wait(client, deadline)
