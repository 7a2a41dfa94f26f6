"""Capturing exposures in a user's own tests, the way ``structlog.testing`` captures log entries."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from segment_exposure.tracking.listeners import add_default_listener, remove_default_listener
from segment_exposure.tracking.provider import SegmentExposureTrackingProvider, live_providers

__all__ = ["CapturedExposures", "InMemorySegmentClient", "capture_exposures"]


class CapturedExposures:
    """The exposures every provider accepted (after dedupe) while the capture was active.

    Each entry is the keyword arguments handed to Segment's ``Client.track()``: ``event``, ``user_id``,
    ``anonymous_id``, ``properties``, ``context``, ``timestamp`` and ``message_id``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []

    def __call__(self, message: dict[str, Any]) -> None:
        """The provider listener: record one accepted exposure."""
        with self._lock:
            self.messages.append(message)

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.messages))

    def properties(self) -> list[dict[str, Any]]:
        """Just the ``$exposure`` properties, for compact assertions."""
        return [m["properties"] for m in self]

    def for_flag(self, flag_key: str) -> list[dict[str, Any]]:
        return [m for m in self if m["properties"].get("flag_key") == flag_key]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


@contextlib.contextmanager
def capture_exposures(*providers: SegmentExposureTrackingProvider) -> Iterator[CapturedExposures]:
    """Record every exposure the given providers (by default, every provider in this process) accept.

    Works through ``provider.add_listener``: recording happens on the caller's thread at ``track()``
    time, so assertions need no waiting; delivery to Segment goes on as usual. Without arguments,
    providers created inside the block are captured too.
    """
    captured = CapturedExposures()
    targets = list(providers) if providers else live_providers()
    for target in targets:
        target.add_listener(captured)
    if not providers:
        add_default_listener(captured)
    try:
        yield captured
    finally:
        if not providers:
            remove_default_listener(captured)
            targets = live_providers()
        for target in targets:
            target.remove_listener(captured)


class InMemorySegmentClient:
    """A stand-in for ``segment.analytics.Client`` that keeps messages in memory.

    Give it to ``SegmentExposureTrackingProvider(analytics=...)`` in tests that need no HTTP at all.
    It validates like Segment's client (an id is required, properties must be a dict) and records the
    message Segment would send.
    """

    def __init__(self, write_key: str = "in-memory") -> None:
        self.write_key = write_key
        self.host = None
        self.on_error = None
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def track(
        self,
        user_id: str | None = None,
        event: str | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
        anonymous_id: str | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> tuple[bool, dict[str, Any]]:
        if not (user_id or anonymous_id):
            raise AssertionError("user_id or anonymous_id is required")
        if not isinstance(event, str):
            raise AssertionError("event must be a str")
        when = timestamp or datetime.now(timezone.utc)
        message = {
            "type": "track",
            "event": event,
            "userId": user_id,
            "anonymousId": anonymous_id,
            "properties": dict(properties or {}),
            "context": {**(context or {}), "library": {"name": "analytics-python", "version": "in-memory"}},
            "integrations": dict(integrations or {}),
            "timestamp": when.isoformat(timespec="milliseconds"),
            "messageId": message_id,
        }
        with self._lock:
            self.messages.append(message)
        return True, message

    def flush(self) -> None:
        return None

    def shutdown(self) -> None:
        return None
