"""The provider's worker thread: builds each accepted exposure's Segment message and hands it to Segment.

Everything slow happens here, off the caller's thread: the message (context, message id, timestamp), the
32 KB check, waiting for room on Segment's queue, and counting the final outcome of every exposure, which
Segment's consumer thread reports back (delivered, or given up). A base class of
:class:`~segment_exposure.tracking.provider.SegmentExposureTrackingProvider`, which owns the state it uses.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from segment_exposure.exposure import EXPOSURE_EVENT, Exposure
from segment_exposure.identity.user import context_from_user
from segment_exposure.tracking import segment_check, segment_client
from segment_exposure.tracking.dedupe import Decision
from segment_exposure.tracking.invocation_batch import InvocationBatch
from segment_exposure.tracking.message_id import MESSAGE_ID_PREFIX, exposure_message_id
from segment_exposure.tracking.stats import ProviderStats

__all__ = ["ExposureWorker"]

log = logging.getLogger(__name__)

#: Segment rejects a message over 32 KB of JSON.
_MAX_MESSAGE_BYTES = 32 << 10

_STOP = object()


def run_worker(
    provider: weakref.ref[ExposureWorker], q: queue.SimpleQueue[Any], stopped: threading.Event
) -> None:
    """The worker thread's loop. It holds the provider only while handling an item, never while waiting,
    so a provider nobody references can be garbage-collected; its finalizer then puts ``_STOP``.

    ``stopped`` is set as it ends: shutdown waits on that rather than ``Thread.join()``, which on
    Python 3.13 crashed a child forked by C ``fork()`` (uWSGI) that had restarted its worker.
    """
    try:
        while True:
            item = q.get()
            worker = provider()
            if worker is None:
                return
            worker._handle(item)
            del worker
            if item is _STOP:
                return
            item = None
    finally:
        stopped.set()


def _json_safe(value: Mapping[str, Any]) -> Any:
    """Plain JSON data for ``value``: other objects as text, NaN and infinities as null.

    Messages go onto Segment's queue without its cleaning step, and its consumer thread silently loses
    (and never marks done) a message it cannot encode; the real API refuses NaN.
    """
    return json.loads(json.dumps(dict(value), default=str), parse_constant=lambda _: None)


class _Pending:
    """An accepted exposure waiting for the worker thread."""

    __slots__ = ("decision", "device_id", "exposure", "now", "request_context", "user", "user_id")

    def __init__(
        self,
        exposure: Exposure,
        user: object,
        user_id: str | None,
        device_id: str | None,
        now: float,
        decision: Decision,
        request_context: Mapping[str, Any] | None = None,
    ) -> None:
        self.exposure = exposure
        self.request_context = request_context
        self.user = user
        self.user_id = user_id
        self.device_id = device_id
        self.now = now
        self.decision = decision


def _weakly(method: Callable[..., None]) -> Callable[..., None]:
    """``method``, called only while its object is alive, without keeping it alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args)

    return call


class ExposureWorker:
    """The worker's half of the provider: what runs on its thread, and what Segment's consumer reports."""

    # State the provider sets up (see SegmentExposureTrackingProvider.__init__ and _init_runtime).
    _analytics: Any
    _direct: bool
    _synchronous: bool
    _hash_key: bytes
    _integrations: dict[str, Any] | None
    _stats: ProviderStats
    _queue: queue.SimpleQueue[Any]
    _idle: threading.Condition
    _processed: int
    _settle_lock: threading.Lock
    _settled: int
    _final: bool
    _full_warned: float
    _full_drops: int
    _worker: threading.Thread
    _worker_stopped: threading.Event
    _closed: bool
    _internals: segment_check.Internals
    _drain_lock: threading.Lock
    # Without consumer hooks (segment_check): our exposures put on Segment's queue so far, and how many
    # of them have a known outcome (failed through on_error, or delivered once a flush saw the queue
    # drained). Both are reset with the runtime (after fork).
    _on_client_queue: int
    _client_outcomes: int
    include_metadata: bool

    # Per-invocation delivery (segment_exposure.serverless): exposures held for the flushing thread to
    # post, instead of Segment's consumer thread; and the serverless platform still to be warned about.
    _invocation_batch: InvocationBatch | None = None
    _unflushed_platform: str | None = None
    # Per invocation without the hand-built wire message: Client.track()'s own message, not queued.
    _build_wire: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def _settle(self, outcome: str, n: int = 1) -> None:
        """Count the final outcome of ``n`` tracked exposures (``"delivered"`` or a drop reason).

        After ``shutdown()`` has counted everything unsettled as ``shutdown``, later outcomes are not
        counted again: every tracked exposure is counted exactly once.
        """
        counter = self._stats.delivered if outcome == "delivered" else self._stats.dropped[outcome]
        with self._settle_lock:
            if self._final:
                return
            counter.incr(n)
            self._settled += n

    # -- on the worker thread ------------------------------------------------------------------------

    def build_message(self, pending: _Pending) -> dict[str, Any]:
        """The keyword arguments for Segment's ``Client.track()`` for one accepted exposure."""
        exposure = pending.exposure
        properties = exposure.properties()
        if self.include_metadata and exposure.metadata:
            properties["metadata"] = _json_safe(exposure.metadata)
        metadata = exposure.metadata
        flag_version = metadata.get("flagVersion") if metadata else None
        decision = pending.decision
        message_id = exposure_message_id(
            self._hash_key,
            pending.user_id,
            pending.device_id,
            exposure.flag_key,
            exposure.variant,
            exposure.experiment_key,
            flag_version,
            decision.window,
            decision.generation,
        )
        context = context_from_user(pending.user)
        if pending.request_context:
            for key, value in pending.request_context.items():
                context.setdefault(key, value)  # the user's own fields win
        message: dict[str, Any] = {
            "event": EXPOSURE_EVENT,
            "user_id": pending.user_id,
            "anonymous_id": pending.device_id,
            "properties": properties,
            "context": context,
            "timestamp": datetime.fromtimestamp(
                (decision.at_ms or int(pending.now * 1000)) / 1000, timezone.utc
            ),
            "message_id": message_id,
        }
        if self._integrations:
            message["integrations"] = dict(self._integrations)
        return message

    def _handle(self, item: object) -> None:
        """One item from the queue, on the worker thread: an exposure to send, or the stop marker."""
        if item is _STOP:
            with self._idle:
                self._idle.notify_all()
            return
        try:
            self._send(item)  # type: ignore[arg-type]
        except Exception:
            log.exception("segment-exposure: unexpected error handing an exposure to Segment")
            self._settle("error")
        self._mark_processed()

    def _mark_processed(self) -> None:
        self._processed += 1
        if self._queue.empty():
            with self._idle:
                self._idle.notify_all()

    def _send(self, pending: _Pending) -> None:
        if self._unflushed_platform is not None:
            self._warn_unflushed_platform()
        message = self.build_message(pending)
        if self._direct:
            self._send_direct(pending, segment_client.wire_message(message))
            return
        batch, build_wire = self._invocation_batch, self._build_wire
        analytics = self._analytics
        while True:
            try:
                if batch is not None and build_wire is not None:
                    # Per invocation (public API): the message Client.track() builds, held for the flush.
                    try:
                        wire = build_wire(message)
                    except TypeError as exc:
                        log.warning("segment-exposure: %s; exposures go through Segment's queue instead", exc)
                        self._build_wire = build_wire = None
                        continue
                    batch.add(wire, client=analytics)
                    self._stats.enqueued.incr()
                    return
                ok, _ = analytics.track(**message)
            except RuntimeError:
                # Segment's 32 KB check, made on this thread rather than the caller's.
                self._set_aside_too_large(pending)
                return
            except AssertionError as exc:
                self._settle("invalid")
                log.warning("segment-exposure: Segment's client rejected an exposure: %s", exc)
                return
            except Exception as exc:
                if not self._synchronous:
                    raise
                # A synchronous client sends on this thread and raises when the upload fails.
                self._settle("delivery_failed")
                log.error("segment-exposure: Segment rejected an exposure: %s", exc)
                return
            if ok:
                self._stats.enqueued.incr()
                if self._synchronous:
                    self._settle("delivered")  # an in-memory or synchronous client has delivered it
                else:
                    self._on_client_queue += 1  # this worker thread is its only writer
                return
            if not self._room_or_give_up():
                return

    def _send_direct(self, pending: _Pending, wire: dict[str, Any]) -> None:
        # repr() is C-fast and never shorter than the message's characters; one JSON character costs at
        # most 12 bytes (an escaped surrogate pair), so only a message near the limit pays for an exact check.
        if len(repr(wire)) * 12 > _MAX_MESSAGE_BYTES and len(json.dumps(wire).encode()) > _MAX_MESSAGE_BYTES:
            self._set_aside_too_large(pending)
            return
        batch = self._invocation_batch
        if batch is not None:
            batch.add(wire)
        else:
            while not segment_client.enqueue(self._analytics, wire):
                if not self._room_or_give_up():
                    return
        self._stats.enqueued.incr()

    def _set_aside_too_large(self, pending: _Pending) -> None:
        self._settle("too_large")
        log.warning(
            "segment-exposure: exposure over Segment's 32 KB limit set aside (flag %r)",
            pending.exposure.flag_key,
        )

    def _room_or_give_up(self) -> bool:
        """Segment's queue is full: wait for room on this thread (never the caller's).

        The provider's own bounded queue keeps absorbing meanwhile, and drops there are counted. Once
        the provider is closed, giving up is counted by ``shutdown()``, not here.
        """
        if self._closed:
            return False
        if self._wait_for_room():
            return True
        self._settle("queue_full")
        now = time.monotonic()
        self._full_drops += 1
        if now - self._full_warned >= 10.0:  # one line per 10 s, not one per exposure, in an outage
            log.warning(
                "segment-exposure: Segment's queue stayed full; %d exposure(s) set aside", self._full_drops
            )
            self._full_warned, self._full_drops = now, 0
        return False

    def _wait_for_room(self) -> bool:
        return segment_client.wait_for_room(
            self._analytics,
            time.monotonic() + 60.0,
            lambda: self._closed,
            conditions=self._internals.queue_conditions,
        )

    # -- Segment's consumer thread reports here ------------------------------------------------------

    @staticmethod
    def _ours(batch: list[dict[str, Any]]) -> int:
        return sum(
            1
            for m in batch
            if m.get("event") == EXPOSURE_EVENT and str(m.get("messageId", "")).startswith(MESSAGE_ID_PREFIX)
        )

    def _on_delivered(self, batch: list[dict[str, Any]]) -> None:
        n = self._ours(batch)
        if n:
            self._settle("delivered", n)

    def _on_failed(self, exc: BaseException, batch: list[dict[str, Any]]) -> None:
        n = self._ours(batch)
        if n:
            with self._drain_lock:
                self._client_outcomes += n
            self._settle("delivery_failed", n)
            log.error("segment-exposure: Segment gave up delivering %d exposure(s): %s", n, exc)

    def _settle_drained(self, queued: int) -> None:
        """Without consumer hooks: of the first ``queued`` exposures put on Segment's queue, those whose
        outcome is not known yet were delivered, once a flush has seen the queue drained.

        Segment's consumer calls ``on_error`` before it marks a failed batch done, so once the queue has
        drained every failure among those messages has been counted. Exposures posted per invocation
        (``InvocationBatch``) are counted by the batch and never enter this tally.
        """
        if self._internals.consumer_hooks or self._synchronous:
            return
        with self._drain_lock:
            n = queued - self._client_outcomes
            if n <= 0:
                return
            self._client_outcomes += n
        self._settle("delivered", n)

    # -- flushing ------------------------------------------------------------------------------------

    def _wait_worker(self, deadline: float) -> bool:
        target = self._stats.tracked.value
        with self._idle:
            while self._processed < target and self._worker.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.1))
        return self._processed >= target

    # -- per-invocation delivery (segment_exposure.serverless) ---------------------------------------

    def _deliver_per_invocation(self) -> None:
        """From now on ``flush()`` posts what was tracked at once, as one request, on the flushing thread.

        Called by ``serverless.flush_after`` and the integrations' per-request flush. With a client that
        does not queue for Segment's consumer (in-memory, ``sync_mode``), ``flush()`` is already immediate.
        """
        self._unflushed_platform = None
        if self._invocation_batch is not None or self._synchronous:
            return
        if self._direct:
            self._invocation_batch = InvocationBatch(self._analytics, _weakly(self._settle))
        elif segment_client.accepts_direct_enqueue(self._analytics):
            # The public API (segment_check): Client.track() on a send=False twin builds each message;
            # the batch posts it with Segment's default upload_size (the consumer's is not read).
            self._build_wire = segment_check.message_builder(self._analytics)
            self._invocation_batch = InvocationBatch(
                self._analytics, _weakly(self._settle), upload_size=segment_client.DEFAULT_UPLOAD_SIZE
            )

    def _warn_unflushed_platform(self) -> None:
        platform, self._unflushed_platform = self._unflushed_platform, None
        if platform is not None and self._invocation_batch is None:
            log.warning(
                "segment-exposure: running on %s, which can freeze the process after each response and "
                "end it without notice, and nothing flushes exposures per invocation: queued ones can be "
                "lost. Wrap the handler with "
                "segment_exposure.serverless.flush_after(provider), or turn on FLUSH_EACH_REQUEST in the "
                "Flask/Django/ASGI integration (see README, Serverless)",
                platform,
            )
