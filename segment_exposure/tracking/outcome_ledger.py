"""Counting each tracked exposure's final outcome exactly once.

An exposure ends delivered or set aside (a drop reason), reported by whoever learns it: the worker thread,
Segment's consumer thread, a per-invocation post, a flush that saw Segment's queue drained. At shutdown,
everything tracked without an outcome yet is counted as ``shutdown``, once; outcomes learned later are
not counted again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from segment_exposure.exposure import EXPOSURE_EVENT
from segment_exposure.tracking.message_id import MESSAGE_ID_PREFIX
from segment_exposure.tracking.stats import ProviderStats

__all__ = ["OutcomeLedger", "count_ours"]

log = logging.getLogger(__name__)


def count_ours(batch: list[dict[str, Any]]) -> int:
    """How many messages of a Segment batch are exposures a provider sent (other events may share it)."""
    return sum(
        1
        for m in batch
        if m.get("event") == EXPOSURE_EVENT and str(m.get("messageId", "")).startswith(MESSAGE_ID_PREFIX)
    )


class OutcomeLedger:
    """Final outcomes counted into a provider's ``ProviderStats``, each tracked exposure exactly once.

    Args:
        stats: The counters outcomes go to (``delivered``, ``dropped[reason]``); ``tracked`` is what
            the ledger balances against.

    Attributes:
        lock: Held while an outcome is counted; holding it holds every count still (the SIGTERM test
            lands a signal while it is held).
    """

    def __init__(self, stats: ProviderStats) -> None:
        self.stats = stats
        self.lock = threading.Lock()
        self._settled = 0
        self._final = False
        # Without consumer hooks: our exposures put on Segment's queue so far, and how many of them have a
        # known outcome (failed through on_error, or delivered once a flush saw the queue drained).
        self._on_client_queue = 0
        self._client_outcomes = 0
        self._drain_lock = threading.Lock()

    def reset(self) -> None:
        """Start over in a forked child: nothing of its own is settled yet, and a lock held by a thread
        of the parent would never be released here."""
        self.lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._settled = 0
        self._final = False
        self._on_client_queue = self._client_outcomes = 0

    # -- outcomes ----------------------------------------------------------------------------------

    def settle(self, outcome: str, n: int = 1) -> None:
        """Count the final outcome of ``n`` tracked exposures (``"delivered"`` or a drop reason).

        After ``close_books()`` has counted everything unsettled as ``shutdown``, later outcomes are not
        counted again: every tracked exposure is counted exactly once.
        """
        stats = self.stats
        counter = stats.delivered if outcome == "delivered" else stats.dropped[outcome]
        with self.lock:
            if self._final:
                return
            counter.incr(n)
            self._settled += n

    def outstanding(self) -> int:
        """Tracked exposures whose final outcome is not known yet."""
        return self.stats.tracked.value - self._settled

    def close_books(self) -> int:
        """At shutdown: count every tracked exposure without an outcome as ``shutdown``, exactly once.

        Returns:
            How many were counted so (0 when called again).
        """
        with self.lock:
            if self._final:
                return 0
            self._final = True
            left = self.stats.tracked.value - self._settled
        if left > 0:
            self.stats.dropped["shutdown"].incr(left)
            return left
        return 0

    # -- what Segment's client reports -------------------------------------------------------------

    @property
    def on_client_queue(self) -> int:
        """Our exposures put on Segment's queue so far (by the worker thread)."""
        return self._on_client_queue

    def handed_to_client(self) -> None:
        """One exposure went onto Segment's queue; its outcome comes later. Worker thread only."""
        self._on_client_queue += 1  # the worker thread is its only writer

    def on_delivered(self, batch: list[dict[str, Any]]) -> None:
        """Segment's consumer posted ``batch``: count our exposures in it as delivered."""
        n = count_ours(batch)
        if n:
            self.settle("delivered", n)

    def on_failed(self, exc: BaseException, batch: list[dict[str, Any]]) -> None:
        """Segment's client gave up on ``batch``: count our exposures in it as ``delivery_failed``."""
        n = count_ours(batch)
        if n:
            with self._drain_lock:
                self._client_outcomes += n
            self.settle("delivery_failed", n)
            log.error("segment-exposure: the analytics client gave up delivering %d exposure(s): %s", n, exc)

    def settle_drained(self, queued: int) -> None:
        """When Segment's client reports no deliveries (no consumer hooks): of the first ``queued``
        exposures put on Segment's queue, those whose outcome is not known yet were delivered, once a
        flush has seen the queue drained.

        Segment's consumer calls ``on_error`` before it marks a failed batch done, so once the queue has
        drained every failure among those messages has been counted. Exposures posted per invocation
        (``InvocationBatch``) are counted by the batch and never enter this tally.
        """
        with self._drain_lock:
            n = queued - self._client_outcomes
            if n <= 0:
                return
            self._client_outcomes += n
        self.settle("delivered", n)
