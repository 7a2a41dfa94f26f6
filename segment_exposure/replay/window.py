"""Which events a replay selects by time, and which of Segment's day folders can hold any of them.

Segment's S3 destination files each event under the UTC day it *received* it
(``segment-logs/SOURCE/RECEIVED_DAY_MS/``). An event's own time (``timestamp``, which Segment already
corrects for the device's clock) is at most a little after it was received, but can be long before: a
phone queues events while offline and sends them days later. So a day folder D (received in
``[D, D + 1 day)``) can hold event times in ``[D - max_lateness, D + 1 day + CLOCK_SKEW)``, and it is
skipped, unread, only when that range misses the window ``[since, until)`` entirely. ``max_lateness``
defaults to :data:`DEFAULT_MAX_LATENESS_DAYS` days; events later than that in a skipped folder would be
missed, so it is a command-line setting (``--max-lateness``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["CLOCK_SKEW_MS", "DAY_MS", "DEFAULT_MAX_LATENESS_DAYS", "TimeWindow", "parse_time"]

DAY_MS = 86_400_000
#: How far an event's time may be after its receipt (clock correction leaves network latency and rounding).
CLOCK_SKEW_MS = 3_600_000
#: How long after it happened an event may still reach Segment, by default (mobile offline queues).
DEFAULT_MAX_LATENESS_DAYS = 7.0


def parse_time(text: str) -> int:
    """Epoch milliseconds from ``2024-05-01``, ``2024-05-01T12:00:00Z`` (or an offset; naive is UTC).

    Raises:
        ValueError: with a message that says what is accepted.
    """
    value = text.strip()
    try:
        when = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date or time: use ISO 8601, e.g. 2024-05-01 or 2024-05-01T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Event times ``[since, until)`` in epoch ms (None: unbounded), and how late events may arrive."""

    since: int | None = None
    until: int | None = None
    max_lateness_ms: int = int(DEFAULT_MAX_LATENESS_DAYS * DAY_MS)

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("--since must be before --until")
        if self.max_lateness_ms < 0:
            raise ValueError("--max-lateness must not be negative")

    @classmethod
    def from_text(
        cls, since: str | None, until: str | None, max_lateness_days: float = DEFAULT_MAX_LATENESS_DAYS
    ) -> TimeWindow:
        """Raises ValueError for an unreadable time, an empty window or a negative lateness."""
        if not math.isfinite(max_lateness_days):
            raise ValueError("--max-lateness must be a number of days")
        return cls(
            since=parse_time(since) if since is not None else None,
            until=parse_time(until) if until is not None else None,
            max_lateness_ms=int(max_lateness_days * DAY_MS),
        )

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def contains(self, time_ms: int | None) -> bool:
        """Whether an event at ``time_ms`` is selected; one without a time only when nothing is bounded."""
        if time_ms is None:
            return not self.bounded
        if self.since is not None and time_ms < self.since:
            return False
        return self.until is None or time_ms < self.until

    def may_hold(self, received_day_ms: int) -> bool:
        """Whether a folder of events received on that UTC day may hold an event in the window."""
        earliest = received_day_ms - self.max_lateness_ms
        latest = received_day_ms + DAY_MS + CLOCK_SKEW_MS  # exclusive
        if self.since is not None and latest <= self.since:
            return False
        return self.until is None or earliest < self.until
