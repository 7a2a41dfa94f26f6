"""The start-up self-check of what ``segment_client`` relies on inside segment-analytics-python.

Checked against segment-analytics-python 2.3.1 and 2.4.0 (CI's ``.ci/versions`` runs both ends). Each
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
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from segment_exposure.tracking import segment_client

__all__ = ["FORCE_PUBLIC_API_ENV", "Internals", "check_internals", "fallback_on_error"]

log = logging.getLogger(__name__)

#: Set to 1 to use segment-analytics-python's public API only (what a failed self-check falls back to).
FORCE_PUBLIC_API_ENV = "SEGMENT_EXPOSURE_FORCE_PUBLIC_API"


@dataclass(frozen=True, slots=True)
class Internals:
    """Which of segment-analytics-python's internals the provider may use in this process."""

    #: The hand-built wire message on ``client.queue`` (else ``Client.track()`` on the worker thread).
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


def _wire_message_matches(client: Any) -> str | None:
    ok, queued = client.track(**copy.deepcopy(_DUMMY_TRACK))
    built = segment_client.wire_message(copy.deepcopy(_DUMMY_TRACK))
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


def _revive_problem(client: Any) -> str | None:
    import requests
    from segment.analytics import request as segment_request
    from segment.analytics.consumer import Consumer

    # Fresh consumers on the same client are safe only while the HTTP session is a module global, which
    # fresh_http_sessions() replaces; with a session anywhere else, a new Client is the safe way.
    if not any(isinstance(value, requests.Session) for value in vars(segment_request).values()):
        return "a module-level requests.Session in segment.analytics.request"
    parameters = inspect.signature(Consumer.__init__).parameters
    wanted = {"queue", "write_key", "on_error", "upload_size", "host"}
    if not wanted <= set(parameters):
        return f"Consumer({', '.join(sorted(wanted - set(parameters)))})"
    return _consumer_problem(client)


def _probe() -> Internals:
    from segment.analytics import Client

    # send=False: nothing is sent, no consumer thread starts, no exit hook is registered.
    client = Client("self-check-write-key", send=False, max_queue_size=1)
    try:
        q = client.queue
        wire = None if segment_client.is_task_queue(q) else "Client.queue (a queue.Queue)"
        wire = wire or _wire_message_matches(client)
        hooks = _consumer_problem(client)
        conditions = next(
            (
                f"queue.Queue.{name}"
                for name in ("not_full", "all_tasks_done", "mutex")
                if not hasattr(q, name)
            ),
            None,
        )
        revive = _revive_problem(client)
    finally:
        atexit.unregister(client.join)
    missing = tuple(dict.fromkeys(p for p in (wire, hooks, conditions, revive) if p is not None))
    return Internals(wire is None, hooks is None, conditions is None, revive is None, missing)


@functools.cache
def _checked(forced: bool) -> Internals:
    if forced:
        internals = Internals(False, False, False, False, (f"forced by {FORCE_PUBLIC_API_ENV}=1",))
    else:
        try:
            internals = _probe()
        except Exception as exc:  # anything unexpected: use none of the internals
            internals = Internals(False, False, False, False, (f"the self-check itself ({exc!r})",))
    if internals.missing:
        log.warning(
            "segment-exposure: not using segment-analytics-python internals (%s); using its public API "
            "instead: Client.track() on the worker thread, the client's on_error for failures, delivery "
            "counted when a flush drains the queue, a new Client after fork",
            "; ".join(internals.missing),
        )
    return internals


def check_internals() -> Internals:
    """The self-check's verdict, computed (and warned about) once per process."""
    return _checked(os.environ.get(FORCE_PUBLIC_API_ENV, "") not in ("", "0"))


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
