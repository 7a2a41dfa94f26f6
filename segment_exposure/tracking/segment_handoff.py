"""Handing accepted exposures to Segment's client, on the provider's worker thread.

Three routes, picked once: straight onto a real asynchronous client's queue (the wire message built here,
``segment_client.enqueue``); through the public ``Client.track()``; or, per invocation (serverless), held
in an ``InvocationBatch`` for the flushing thread to post. On the way it makes Segment's 32 KB check,
waits for room on a full queue (never on the caller's thread), and counts what it sets aside.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from segment_exposure.tracking import segment_check, segment_client
from segment_exposure.tracking.invocation_batch import InvocationBatch
from segment_exposure.tracking.outcome_ledger import OutcomeLedger
from segment_exposure.tracking.segment_client import SEGMENT, AnalyticsSdk
from segment_exposure.tracking.segment_message import PendingExposure, SegmentMessageBuilder
from segment_exposure.tracking.stats import ProviderStats
from segment_exposure.tracking.weak_callback import weakly

__all__ = ["SegmentHandoff"]

log = logging.getLogger(__name__)

#: How long the worker waits for room on Segment's full queue before setting an exposure aside.
ROOM_WAIT = 60.0


class SegmentHandoff:
    """Puts each accepted exposure's message on Segment's client, and knows how it will be delivered.

    Args:
        client: Segment's client (or one like it: in-memory, RudderStack's).
        messages: Builds each exposure's message.
        ledger: Where final outcomes known here are counted.
        stats: The provider's counters (``enqueued``).
        direct: Put wire messages straight on the client's queue (segment-analytics-python internals).
        synchronous: The client delivers inside ``track()`` (in memory, ``sync_mode``, ``send=False``).
        queue_conditions: Wait for room through the queue's own conditions (internals) or by polling.
        unflushed_platform: The serverless platform detected, to warn about once if nothing flushes
            per invocation.
        sdk: Whose client it is (Segment's unless told): its wire message, limits and POST.

    Attributes:
        client: The client messages go to (a forked child may get a new one, see ``use_client``).
        direct: Whether messages go straight onto the client's queue.
        synchronous: Whether ``track()`` returning is the delivery.
        build_wire: Per invocation without internals: ``Client.track()``'s own message builder.
        batch: Per invocation: what the next flush posts (None otherwise).
    """

    def __init__(
        self,
        client: Any,
        messages: SegmentMessageBuilder,
        ledger: OutcomeLedger,
        stats: ProviderStats,
        *,
        direct: bool,
        synchronous: bool,
        queue_conditions: bool,
        unflushed_platform: str | None,
        sdk: AnalyticsSdk = SEGMENT,
    ) -> None:
        self.client = client
        self.sdk = sdk
        self.messages = messages
        self.direct = direct
        self.synchronous = synchronous
        self.build_wire: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.batch: InvocationBatch | None = None
        self._ledger = ledger
        self._stats = stats
        self._queue_conditions = queue_conditions
        self._unflushed_platform = unflushed_platform
        self._closed = False
        self._full_warned = 0.0
        self._full_drops = 0

    # -- set-up ------------------------------------------------------------------------------------

    def use_client(self, client: Any) -> None:
        """Send through ``client`` from now on (a forked child's new client, in the public-API fallback)."""
        self.client = client

    def reset(self) -> None:
        """After fork: the rate limit of the "queue full" warning starts over."""
        self._full_warned = 0.0
        self._full_drops = 0

    def close(self) -> None:
        """The provider is shut down: stop waiting for room; what is given up is counted at shutdown."""
        self._closed = True

    def deliver_per_invocation(self) -> None:
        """From now on hold messages for ``post_invocation``, posted on the flushing thread.

        With a client that does not queue for Segment's consumer (in memory, ``sync_mode``), delivery is
        already immediate and nothing changes.
        """
        self._unflushed_platform = None
        if self.batch is not None or self.synchronous:
            return
        sdk = self.sdk
        if self.direct:
            self.batch = InvocationBatch(self.client, weakly(self._ledger.settle), sdk=sdk)
        elif sdk.accepts_direct_enqueue(self.client):
            # The public API (segment_check): Client.track() on a send=False twin builds each message;
            # the batch posts it with the SDK's default upload_size (the consumer's is not read).
            self.build_wire = segment_check.message_builder(self.client)
            self.batch = InvocationBatch(
                self.client, weakly(self._ledger.settle), upload_size=sdk.default_upload_size, sdk=sdk
            )

    @property
    def per_invocation(self) -> bool:
        """Whether a flush posts what was tracked itself (``deliver_per_invocation`` took effect)."""
        return self.batch is not None

    def post_invocation(self, deadline: float) -> bool:
        """Post what the invocation produced, by ``deadline``; True when all of it was delivered."""
        batch = self.batch
        return True if batch is None else batch.post(deadline)

    def silence_platform_warning(self) -> None:
        """Do not warn about the detected serverless platform (per-request flushing is off on purpose)."""
        self._unflushed_platform = None

    # -- on the worker thread ----------------------------------------------------------------------

    def hand_over(self, pending: PendingExposure) -> None:
        """Give one accepted exposure to Segment's client. Never raises: an unexpected error is logged and
        counted (``error``)."""
        try:
            self._send(pending)
        except Exception:
            log.exception("segment-exposure: unexpected error handing an exposure to Segment")
            self._ledger.settle("error")

    def _send(self, pending: PendingExposure) -> None:
        if self._unflushed_platform is not None:
            self._warn_unflushed_platform()
        message = self.messages.build(pending)
        if self.direct:
            self._send_direct(pending, self.sdk.wire_message(message))
            return
        # The SDK's own check may be looser than its API's limit (RudderStack's: 4 MiB against 4000 KiB).
        limit = self.messages.max_message_bytes
        if len(repr(message)) * 12 > limit and len(json.dumps(message, default=str).encode()) > limit:
            self._set_aside_too_large(pending)
            return
        batch, build_wire = self.batch, self.build_wire
        client = self.client
        while True:
            try:
                if batch is not None and build_wire is not None:
                    # Per invocation (public API): the message Client.track() builds, held for the flush.
                    try:
                        wire = build_wire(message)
                    except TypeError as exc:
                        log.warning("segment-exposure: %s; exposures go through Segment's queue instead", exc)
                        self.build_wire = build_wire = None
                        continue
                    batch.add(wire, client=client)
                    self._stats.enqueued.incr()
                    return
                ok, _ = client.track(**message)
            except RuntimeError:
                # The client's size check (Segment: 32 KB), made on this thread rather than the caller's.
                self._set_aside_too_large(pending)
                return
            except AssertionError as exc:
                self._ledger.settle("invalid")
                log.warning("segment-exposure: Segment's client rejected an exposure: %s", exc)
                return
            except Exception as exc:
                if not self.synchronous:
                    raise
                # A synchronous client sends on this thread and raises when the upload fails.
                self._ledger.settle("delivery_failed")
                log.error("segment-exposure: Segment rejected an exposure: %s", exc)
                return
            if ok:
                self._stats.enqueued.incr()
                if self.synchronous:
                    self._ledger.settle("delivered")  # an in-memory or synchronous client has delivered it
                else:
                    self._ledger.handed_to_client()
                return
            if not self._room_or_give_up():
                return

    def _send_direct(self, pending: PendingExposure, wire: dict[str, Any]) -> None:
        # repr() is C-fast and never shorter than the message's characters; one JSON character costs at
        # most 12 bytes (an escaped surrogate pair), so only a message near the limit pays for an exact check.
        limit = self.messages.max_message_bytes
        if len(repr(wire)) * 12 > limit and len(json.dumps(wire).encode()) > limit:
            self._set_aside_too_large(pending)
            return
        batch = self.batch
        if batch is not None:
            batch.add(wire)
        else:
            while not segment_client.enqueue(self.client, wire):
                if not self._room_or_give_up():
                    return
        self._stats.enqueued.incr()

    def _set_aside_too_large(self, pending: PendingExposure) -> None:
        self._ledger.settle("too_large")
        log.warning(
            "segment-exposure: exposure over %s's %d KB message limit set aside (flag %r)",
            self.sdk.label,
            self.messages.max_message_bytes >> 10,
            pending.exposure.flag_key,
        )

    def _room_or_give_up(self) -> bool:
        """Segment's queue is full: wait for room on this thread (never the caller's).

        The provider's own bounded queue keeps absorbing meanwhile, and drops there are counted. Once
        the provider is closed, giving up is counted by its shutdown, not here.
        """
        if self._closed:
            return False
        if segment_client.wait_for_room(
            self.client,
            time.monotonic() + ROOM_WAIT,
            lambda: self._closed,
            conditions=self._queue_conditions,
        ):
            return True
        self._ledger.settle("queue_full")
        now = time.monotonic()
        self._full_drops += 1
        if now - self._full_warned >= 10.0:  # one line per 10 s, not one per exposure, in an outage
            log.warning(
                "segment-exposure: %s's queue stayed full; %d exposure(s) set aside",
                self.sdk.label,
                self._full_drops,
            )
            self._full_warned, self._full_drops = now, 0
        return False

    def _warn_unflushed_platform(self) -> None:
        platform, self._unflushed_platform = self._unflushed_platform, None
        if platform is not None and self.batch is None:
            log.warning(
                "segment-exposure: running on %s, which can freeze the process after each response and "
                "end it without notice, and nothing flushes exposures per invocation: queued ones can be "
                "lost. Wrap the handler with "
                "segment_exposure.flush_after(provider), or turn on FLUSH_EACH_REQUEST in the "
                "Flask/Django/ASGI integration (see README, Serverless)",
                platform,
            )
