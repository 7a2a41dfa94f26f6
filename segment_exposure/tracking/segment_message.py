"""The Segment message of one accepted exposure: what ``Client.track()`` is given for it.

Built on the worker thread (or on the caller's thread for listeners and the exact size check of a
large exposure): the context from the user and the request, the deterministic message id, the timestamp.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from segment_exposure.exposure import EXPOSURE_EVENT, Exposure
from segment_exposure.identity.user import context_from_user
from segment_exposure.tracking.dedupe import Decision
from segment_exposure.tracking.message_id import exposure_message_id

__all__ = ["MAX_MESSAGE_BYTES", "PendingExposure", "SegmentMessageBuilder", "json_safe"]

#: Segment rejects a message over 32 KB of JSON.
MAX_MESSAGE_BYTES = 32 << 10


def json_safe(value: Mapping[str, Any]) -> Any:
    """Plain JSON data for ``value``: other objects as text, NaN and infinities as null.

    Messages go onto Segment's queue without its cleaning step, and its consumer thread silently loses
    (and never marks done) a message it cannot encode; the real API refuses NaN.
    """
    return json.loads(json.dumps(dict(value), default=str), parse_constant=lambda _: None)


class PendingExposure:
    """An accepted exposure waiting for the worker thread: what its message is built from."""

    __slots__ = ("decision", "device_id", "exposure", "now", "request_context", "user", "user_id")

    def __init__(
        self,
        exposure: Exposure,
        user: object,
        user_id: str | None,
        device_id: str | None,
        now: float,
        decision: Decision,
        request_context: Mapping[str, Any] | None = None,
    ) -> None:
        self.exposure = exposure
        self.request_context = request_context
        self.user = user
        self.user_id = user_id
        self.device_id = device_id
        self.now = now
        self.decision = decision


class SegmentMessageBuilder:
    """Builds the keyword arguments for Segment's ``Client.track()`` of accepted exposures.

    Holds what every message of one provider shares: the write key's hash (message ids), whether the
    exposure's metadata is sent, the ``integrations`` option, and the SDK's message size limit.
    """

    __slots__ = ("hash_key", "include_metadata", "integrations", "max_message_bytes")

    def __init__(
        self,
        hash_key: bytes,
        *,
        include_metadata: bool,
        integrations: Mapping[str, Any] | None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.hash_key = hash_key
        self.include_metadata = include_metadata
        self.integrations = dict(integrations) if integrations else None
        #: The SDK's limit on one message's JSON (Segment's 32 KB unless told).
        self.max_message_bytes = max_message_bytes

    def build(self, pending: PendingExposure) -> dict[str, Any]:
        """The keyword arguments for Segment's ``Client.track()`` for one accepted exposure."""
        exposure = pending.exposure
        properties = exposure.properties()
        if self.include_metadata and exposure.metadata:
            properties["metadata"] = json_safe(exposure.metadata)
        metadata = exposure.metadata
        flag_version = metadata.get("flagVersion") if metadata else None
        decision = pending.decision
        message_id = exposure_message_id(
            self.hash_key,
            pending.user_id,
            pending.device_id,
            exposure.flag_key,
            exposure.variant,
            exposure.experiment_key,
            flag_version,
            decision.window,
            decision.generation,
        )
        context = context_from_user(pending.user)
        if pending.request_context:
            for key, value in pending.request_context.items():
                context.setdefault(key, value)  # the user's own fields win
        message: dict[str, Any] = {
            "event": EXPOSURE_EVENT,
            "user_id": pending.user_id,
            "anonymous_id": pending.device_id,
            "properties": properties,
            "context": context,
            "timestamp": datetime.fromtimestamp(
                (decision.at_ms or int(pending.now * 1000)) / 1000, timezone.utc
            ),
            "message_id": message_id,
        }
        if self.integrations:
            message["integrations"] = dict(self.integrations)
        return message

    def too_large(self, exposure: Exposure, user: object, user_id: str | None, device_id: str | None) -> bool:
        """Whether this exposure's message would exceed the SDK's limit (with room for the SDK's own fields).

        The exact check, on the caller's thread: only for exposures whose own strings are long.
        """
        message = self.build(
            PendingExposure(exposure, user, user_id, device_id, time.time(), Decision(True, 0, 0))
        )
        message["type"] = "track"
        return len(json.dumps(message, default=str).encode()) > self.max_message_bytes - 512
