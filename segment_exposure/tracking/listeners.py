"""Listeners: callables that see each exposure a provider accepts, on the caller's thread.

Each provider has its own ``ExposureListeners``; a new provider starts with the process's default
listeners (``add_default_listener``), which is how ``testing.capture_exposures()`` also sees providers
created inside its block.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "ExposureListeners",
    "Listener",
    "add_default_listener",
    "default_listeners",
    "remove_default_listener",
]

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], object]
"""Called with the keyword arguments handed to Segment's ``Client.track()`` for one accepted exposure."""

_defaults: tuple[Listener, ...] = ()
_defaults_lock = threading.Lock()


def add_default_listener(listener: Listener) -> None:
    """Give every provider created from now on ``listener`` (providers that exist are not changed).

    Raises:
        TypeError: ``listener`` is not callable.
    """
    if not callable(listener):
        raise TypeError("listener must be callable")
    global _defaults
    with _defaults_lock:
        _defaults = (*_defaults, listener)


def remove_default_listener(listener: Listener) -> None:
    """Stop giving new providers ``listener``; removing one that was never added does nothing."""
    global _defaults
    with _defaults_lock:
        _defaults = _without(_defaults, listener)


def default_listeners() -> tuple[Listener, ...]:
    """The listeners a provider created now starts with."""
    return _defaults


def _without(listeners: tuple[Listener, ...], listener: Listener) -> tuple[Listener, ...]:
    remaining = list(listeners)
    if listener in remaining:
        remaining.remove(listener)
    return tuple(remaining)


class ExposureListeners:
    """One provider's listeners. Changing them swaps a tuple, so notifying takes no lock.

    Args:
        listeners: The listeners to start with (by default, ``default_listeners()``).
        lock: Serialises changes; a fork-safe lock factory (a lock held at fork time by another thread
            would never be released in the child).

    Attributes:
        current: The listeners now, as a tuple (empty: nothing to notify; read on the hot path).
    """

    __slots__ = ("_lock", "current")

    def __init__(
        self, listeners: tuple[Listener, ...] | None = None, *, lock: Callable[[], threading.RLock]
    ) -> None:
        self.current: tuple[Listener, ...] = default_listeners() if listeners is None else tuple(listeners)
        self._lock = lock

    def add(self, listener: Listener) -> None:
        """Call ``listener`` with each exposure accepted from now on.

        Raises:
            TypeError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise TypeError("listener must be callable")
        with self._lock():
            self.current = (*self.current, listener)

    def remove(self, listener: Listener) -> None:
        """Stop calling ``listener``; removing one that was never added does nothing."""
        with self._lock():
            self.current = _without(self.current, listener)

    def notify(self, message: dict[str, Any]) -> None:
        """Give each listener its own copy of ``message``; one that raises is logged and skipped."""
        for listener in self.current:
            try:
                listener(dict(message))
            except Exception:
                log.exception("segment-exposure: exposure listener %r failed", listener)
