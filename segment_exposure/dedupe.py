"""The in-process dedupe cache: which variant each identity last saw for each flag.

Bounded (least recently used entries go first) and windowed: an entry is valid inside one window of
``ttl`` seconds aligned to the epoch (UTC days by default). Aligned windows mean that two processes
re-send a user's exposure in the same window and so give it the same message id.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Decision", "DedupeCache"]

_UNSET = "\x00unset"  # stands for variant=None; cannot collide with a real variant key


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one exposure: send it (with its generation) or not."""

    send: bool
    window: int
    generation: int
    previous: _Entry | None = None
    recorded: _Entry | None = None
    at_ms: int = 0


_Entry = tuple[int, str, int, int]  # (window, variant marker, generation, last sent time in ms)
_SKIP = Decision(False, 0, 0)


class DedupeCache:
    """Thread-safe record of ``(identity, flag) -> (window, variant, generation, time)``.

    ``generation`` counts variant changes inside a window, so A -> B -> A gives three distinct message ids
    while a repeat of the current variant is suppressed. ``at_ms`` is strictly increasing per key, so
    Amplitude, which applies user properties in event-time order, ends on the last variant sent even
    when the changes came within one millisecond.
    """

    __slots__ = ("_entries", "_lock", "capacity", "evictions", "ttl")

    def __init__(self, capacity: int = 65_536, ttl: float = 86_400.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.capacity = capacity
        self.ttl = float(ttl)
        self.evictions = 0
        self._entries: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def decide(self, key: tuple[object, ...], variant: str | None, now: float) -> Decision:
        """Record ``variant`` for ``key`` and say whether it must be sent."""
        window = int(now // self.ttl)
        marker = _UNSET if variant is None else variant
        entries = self._entries
        # Lock-free fast path for a repeat, the common case: single dict operations are atomic under
        # the GIL, and a racing eviction only costs the recency update.
        entry = entries.get(key)
        if entry is not None and entry[0] == window and entry[1] == marker:
            try:
                entries.move_to_end(key)
            except KeyError:
                pass
            return _SKIP
        at_ms = int(now * 1000)
        with self._lock:
            entry = entries.get(key)
            if entry is not None and entry[0] == window:
                if entry[1] == marker:
                    entries.move_to_end(key)
                    return _SKIP
                generation = entry[2] + 1
                if at_ms <= entry[3]:
                    at_ms = entry[3] + 1
            else:
                generation = 0
            entries[key] = new = (window, marker, generation, at_ms)
            entries.move_to_end(key)
            if len(entries) > self.capacity:
                entries.popitem(last=False)
                self.evictions += 1
        return Decision(True, window, generation, entry, new, at_ms)

    def undo(self, key: tuple[object, ...], decision: Decision) -> None:
        """Take back a send decision whose exposure could not be queued, so a retry is not suppressed."""
        with self._lock:
            if self._entries.get(key) != decision.recorded:
                return  # a later exposure for this key has been recorded since: keep it
            if decision.previous is None:
                del self._entries[key]
            else:
                self._entries[key] = decision.previous

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
