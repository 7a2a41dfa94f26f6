"""What Amplitude made of each event, and of each request: the answers a send is built from.

Every event given to ``AmplitudeClient.send``
ends as exactly one ``EventOutcome``: delivered, rejected (with the reason), or retry later.
"""

from __future__ import annotations

import email.utils
import enum
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLOSED_BEFORE_RETRY",
    "DELIVERED",
    "THROTTLED_PAST_DEADLINE",
    "DeliveryResult",
    "EventOutcome",
    "Reply",
    "Status",
    "TransientFailure",
    "retry_after_seconds",
]


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


DELIVERED = EventOutcome(Status.DELIVERED)
THROTTLED_PAST_DEADLINE = EventOutcome(
    Status.RETRY_LATER,
    "throttled",
    "Amplitude throttled this event (HTTP 429: too many events for its user or device) and it must wait "
    "longer than the deadline allows; retry later with the same insert_id",
)
CLOSED_BEFORE_RETRY = "the client was closed before the request was sent; retry later with the same insert_id"


@dataclass(slots=True)
class DeliveryResult:
    """One ``EventOutcome`` per input event, in input order, plus what it cost."""

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


class TransientFailure(Exception):
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
class Reply:
    """A definitive JSON answer (2xx or 4xx) to one request."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None
