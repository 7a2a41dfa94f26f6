"""Which CDP delivered an event (Segment or RudderStack), and where the two translations differ.

Why: RudderStack sends the Segment spec plus its own fields (``rudderId``, ``request_ip``, ``channel``,
``context.sessionId``), and its own Amplitude destination maps some fields differently from Segment's. A
user who moves from one to the other expects Amplitude to receive what that CDP's own destination would
send, so the translator follows the delivering CDP's mapping, told apart by :func:`detect_source` or forced
by the ``source`` setting. :data:`SOURCE_DIFFERENCES` lists every difference; the docs render it
(:func:`differences_table`) and tests/test_rudderstack_translate.py checks each row against the translator
and the Segment Function.

The rule (``source="auto"``): an event is RudderStack's when it carries ``rudderId`` or ``request_ip`` (the
data plane stamps both on every event it receives) or was sent by RudderStack's JavaScript SDK
(``context.library.name == "RudderLabs JavaScript SDK"``). ``channel`` alone decides nothing, since Segment
sets a ``channel`` too ("server", "client", ...), and the library name of RudderStack's Python SDK is
``analytics-python``, the same as Segment's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "RUDDERSTACK",
    "RUDDERSTACK_JS_LIBRARY",
    "SEGMENT",
    "SOURCES",
    "SOURCE_DIFFERENCES",
    "SourceDifference",
    "check_source",
    "detect_source",
    "differences_table",
]

SEGMENT = "segment"
RUDDERSTACK = "rudderstack"
#: The values the ``source`` setting takes: ``"auto"`` tells them apart per event.
SOURCES = ("auto", SEGMENT, RUDDERSTACK)
RUDDERSTACK_JS_LIBRARY = "RudderLabs JavaScript SDK"
_RUDDERSTACK_KEYS = ("rudderId", "request_ip")


class SourceDifference(NamedTuple):
    """One Amplitude field that Segment's and RudderStack's Amplitude destinations fill differently."""

    field: str
    segment: str
    rudderstack: str


#: Every field the two mappings fill differently; the rest (insert_id = messageId, time = timestamp,
#: event_properties, user_id, the other context fields, the refusals) is the same for both.
SOURCE_DIFFERENCES: tuple[SourceDifference, ...] = (
    SourceDifference(
        "device_id",
        "`context.device.id`, else `anonymousId`",
        "`anonymousId`, else `context.device.id`",
    ),
    SourceDifference(
        "session_id",
        '`integrations["Actions Amplitude"].session_id`',
        "`context.sessionId` (a positive whole number; RudderStack's -1, no session, is left out)",
    ),
    SourceDifference("ip", "`context.ip`", "`context.ip`, else `request_ip` (the IP the data plane saw)"),
    SourceDifference(
        "platform",
        '`context.device.type` (iOS/Android spelled so); "Web" for analytics.js without a device type',
        '"Web" for `channel: "web"`; else `context.device.type` (iOS/Android spelled so)',
    ),
    SourceDifference("library", "`context.library.name`", '"rudderstack"'),
    SourceDifference(
        "os_name, os_version",
        "from `context.userAgent` (when the context gives none) on every event that has one",
        'from `context.userAgent` only on the web channel (`channel: "web"`)',
    ),
    SourceDifference(
        "device_manufacturer, device_model, device_type",
        "from `context.userAgent` (when the context gives none) on every event that has one",
        "never from the user agent (`context.device.*` still maps)",
    ),
)


def check_source(source: str) -> str:
    """``source`` if it is one of :data:`SOURCES`; raises ``ValueError`` naming them otherwise."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {str(source)[:40]!r}")
    return source


def detect_source(event: dict[str, Any]) -> str:
    """``"rudderstack"`` for an event RudderStack delivered or its JavaScript SDK sent, else ``"segment"``."""
    for key in _RUDDERSTACK_KEYS:
        if event.get(key) is not None:
            return RUDDERSTACK
    context = event.get("context")
    if context.__class__ is dict:
        library = context.get("library")
        if library.__class__ is dict and library.get("name") == RUDDERSTACK_JS_LIBRARY:
            return RUDDERSTACK
    return SEGMENT


def differences_table() -> str:
    """:data:`SOURCE_DIFFERENCES` as a Markdown table, for the docs."""
    lines = ["| Amplitude field | Segment's mapping | RudderStack's mapping |", "|---|---|---|"]
    for row in SOURCE_DIFFERENCES:
        fields = ", ".join(f"`{name.strip()}`" for name in row.field.split(","))
        lines.append(f"| {fields} | {row.segment} | {row.rudderstack} |")
    return "\n".join(lines)
