"""The provider's counters: one per outcome and one per drop reason."""

from __future__ import annotations

from typing import Any

from segment_exposure.counter import Counter

__all__ = ["DROP_REASONS", "Counter", "ProviderStats"]

#: Every reason the provider can set an exposure aside for; each has its own counter.
DROP_REASONS = (
    "no_identity",  # neither user_id nor device_id
    "invalid",  # not an Exposure, bad flag_key/variant types
    "too_large",  # over Segment's 32 KB message limit
    "queue_full",  # the provider's or Segment's queue was full
    "delivery_failed",  # Segment's client gave up on the batch (on_error)
    "shutdown",  # still queued when the shutdown or exit deadline passed, or tracked after shutdown
    "flush_deadline",  # not delivered within a per-invocation/per-request flush's deadline (serverless)
    "threads_disabled",  # the server runs Python without threads (uWSGI without --enable-threads)
    "error",  # an unexpected exception, logged with its traceback
)


class ProviderStats:
    """The provider's counters; ``snapshot()`` is what ``provider.stats()`` returns."""

    def __init__(self) -> None:
        self.tracked = Counter()
        self.deduplicated = Counter()
        self.enqueued = Counter()
        self.delivered = Counter()
        self.dropped = {reason: Counter() for reason in DROP_REASONS}

    def reset(self) -> None:
        for counter in (
            self.tracked,
            self.deduplicated,
            self.enqueued,
            self.delivered,
            *self.dropped.values(),
        ):
            counter.reset()

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        dropped = {reason: c.value for reason, c in self.dropped.items()}
        return {
            "tracked": self.tracked.value,
            "deduplicated": self.deduplicated.value,
            "enqueued": self.enqueued.value,
            "delivered": self.delivered.value,
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            **extra,
        }
