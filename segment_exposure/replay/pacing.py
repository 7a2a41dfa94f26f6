"""Keeping a replay within Amplitude's limits: per device and user, and overall (``--rate``).

Why pace per id rather than per request: Amplitude throttles each device and user separately (Batch API:
1000 events/s each; its backfill guide asks for at most about 300/s per device). An archive replays
months of one device's events in minutes, so without pacing a busy device would be throttled on every
request. :class:`IdPacer` is a generic cell rate algorithm (one "theoretical arrival time" per id): an
event gets the earliest time at which every id it carries is within its rate, allowing a burst of
``burst`` seconds' worth. Ids whose time has passed are forgotten, so memory is bounded by the ids seen in
the last ``burst`` seconds, not by the archive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

__all__ = ["DEFAULT_PER_ID_RATE", "PRUNE_AT", "IdPacer", "RateLimiter"]

#: Amplitude's backfill guidance: at most about 300 events per second per device.
DEFAULT_PER_ID_RATE = 300.0
#: Forget ids whose time has passed once this many are remembered.
PRUNE_AT = 100_000


class IdPacer:
    """When each event may be sent so that no id exceeds ``rate`` events/s (bursts of ``burst`` s)."""

    def __init__(self, rate: float = DEFAULT_PER_ID_RATE, burst: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError("the per-id rate must be positive")
        self.interval = 1.0 / rate
        self.burst = burst
        self._tat: dict[str, float] = {}
        self._prune_at = PRUNE_AT

    def __len__(self) -> int:
        return len(self._tat)

    def schedule(self, ids: Sequence[str], now: float) -> float:
        """Reserve a slot for an event carrying ``ids``; returns when it may go (``now`` or later)."""
        tat = self._tat
        start = now
        for key in ids:
            due = tat.get(key, now) - self.burst
            if due > start:
                start = due
        interval = self.interval
        for key in ids:
            previous = tat.get(key, now)
            tat[key] = (previous if previous > start else start) + interval
        if len(tat) > self._prune_at:
            self._prune(now)
        return start

    def _prune(self, now: float) -> None:
        self._tat = {key: t for key, t in self._tat.items() if t > now}
        self._prune_at = max(PRUNE_AT, 2 * len(self._tat))


class RateLimiter:
    """An overall cap of ``rate`` events/s (None: none): :meth:`wait` before sending each batch."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("--rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def wait(self, events: int) -> None:
        """Block until ``events`` more may go without exceeding the rate since the first batch."""
        if self.rate is None:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + events / self.rate
