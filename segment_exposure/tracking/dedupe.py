"""The in-process dedupe cache: which variant each identity last saw for each flag.

Bounded (least recently used entries go first; without the GIL, by CLOCK's second chance: a repeat on
the provider's fast path only marks its key as used, without the lock) and windowed: an entry is valid
inside one window of ``ttl`` seconds aligned to the epoch (UTC days by default). Aligned windows mean
that two processes re-send a user's exposure in the same window and so give it the same message id.

Keys are the 64-bit ``hash()`` of ``(user_id, device_id, flag_key, experiment_key)``: an int costs a
tenth of the strings' memory, keeps no user ids in memory, and at 65,536 entries the chance of any
collision is about 1 in 10^10.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["UNSET", "Decision", "DedupeCache", "Entry", "dedupe_key"]

#: The variant marker recorded for ``variant=None``; cannot collide with a real variant key.
UNSET = "\x00unset"
_GEN_BITS = 20
_GEN_MASK = (1 << _GEN_BITS) - 1

Entry = tuple[str, int, int]
"""(variant marker, window, last sent time in ms << 20 | generation): three objects, one of them shared."""


def dedupe_key(user_id: object, device_id: object, flag_key: object, experiment_key: object) -> int:
    """The cache key of one identity and flag (raises TypeError for unhashable fields)."""
    return hash((user_id, device_id, flag_key, experiment_key))


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one exposure: send it (with its window, generation and time) or not."""

    send: bool
    window: int
    generation: int
    previous: Entry | None = None
    recorded: Entry | None = None
    at_ms: int = 0


_SKIP = Decision(False, 0, 0)


class DedupeCache:
    """Thread-safe, GIL or not: ``hash(identity, flag) -> (variant, window, time and generation)``.

    ``generation`` counts variant changes inside a window, so A -> B -> A gives three distinct message ids
    while a repeat of the current variant is suppressed. ``at_ms`` is strictly increasing per key, so
    Amplitude, which applies user properties in event-time order, ends on the last variant sent even
    when the changes came within one millisecond.

    Attributes:
        entries: ``key -> Entry`` (``(variant or UNSET, window, time and generation)``), least recently
            used first. Public for the provider's fast path, which looks a repeat up here with no call in
            between; only ``decide``, ``undo`` and ``clear`` change it.
        touch: Mark a key as just used, without the lock (it gets a second chance before eviction).
    """

    __slots__ = ("_lock", "_recent", "_window", "capacity", "entries", "evictions", "touch", "ttl")

    def __init__(self, capacity: int = 65_536, ttl: float = 86_400.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.capacity = capacity
        self.ttl = float(ttl)
        self.evictions = 0
        #: ``key -> Entry``, least recently used first. Changed only under the lock; the provider's fast
        #: path reads it directly (a dict lookup, safe alongside a writer even without the GIL; with the
        #: GIL also ``move_to_end``, one atomic C call), and otherwise marks a hit with ``touch``.
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self._recent: set[int] = set()
        #: Mark ``key`` as just used, without the lock: it gets a second chance before eviction.
        self.touch = self._recent.add
        self._lock = threading.Lock()
        self._window = -1  # one int object shared by every entry of the current window

    def decide(self, key: int, variant: str | None, now: float) -> Decision:
        """Record ``variant`` for ``key`` and say whether it must be sent."""
        window = int(now // self.ttl)
        marker = UNSET if variant is None else variant
        entries = self.entries
        at_ms = int(now * 1000)
        with self._lock:
            if window != self._window:
                self._window = window
            window = self._window
            entry = entries.get(key)
            if entry is not None and entry[1] == window:
                if entry[0] == marker:
                    entries.move_to_end(key)
                    return _SKIP
                generation = ((entry[2] & _GEN_MASK) + 1) & _GEN_MASK
                last_ms = entry[2] >> _GEN_BITS
                if at_ms <= last_ms:
                    at_ms = last_ms + 1
            else:
                generation = 0
            entries[key] = new = (marker, window, (at_ms << _GEN_BITS) | generation)
            entries.move_to_end(key)
            if len(entries) > self.capacity:
                self._evict(key)
        return Decision(True, window, generation, entry, new, at_ms)

    def _evict(self, keep: int) -> None:
        """Drop the least recently used entry (under the lock): the oldest not touched since last considered;
        a touched one is moved to the end instead (the "second chance" of the CLOCK policy)."""
        entries, recent = self.entries, self._recent
        while len(entries) > self.capacity:
            key, entry = entries.popitem(last=False)
            if key in recent and key != keep:
                recent.discard(key)
                entries[key] = entry
                continue
            recent.discard(key)
            self.evictions += 1
        if len(recent) > len(entries):  # a touch that raced an eviction: keep the set to live keys
            recent.intersection_update(entries)

    def undo(self, key: int, decision: Decision) -> None:
        """Take back a send decision whose exposure could not be queued, so a retry is not suppressed."""
        with self._lock:
            if self.entries.get(key) != decision.recorded:
                return  # a later exposure for this key has been recorded since: keep it
            if decision.previous is None:
                del self.entries[key]
                self._recent.discard(key)
            else:
                self.entries[key] = decision.previous

    def reset_lock(self) -> None:
        """Replace the lock: after fork() a lock held by another thread would never be released."""
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
            self._recent.clear()

    def __len__(self) -> int:
        return len(self.entries)
