"""Errors with Segment Functions' meanings.

Segment discards an event whose handler raises ``EventNotSupported``, ``InvalidEventPayload`` or
``ValidationError``, and retries one that raises ``RetryError``. Using the same four names in Python keeps
the webhook, the Lambda and the JavaScript function in agreement about what is retried.
"""

from __future__ import annotations

__all__ = [
    "EventNotSupported",
    "ExposureError",
    "InvalidEventPayload",
    "PermanentError",
    "RetryError",
    "ValidationError",
]


class ExposureError(Exception):
    """Base class of every error this package raises on purpose."""


class PermanentError(ExposureError):
    """The event can never be delivered as it is: do not retry it."""


class EventNotSupported(PermanentError):
    """The event is not one this destination handles (not a track event, or not an exposure)."""


class InvalidEventPayload(PermanentError):
    """The event is malformed: not an object, no ``flag_key``, no identity, an unreadable time."""


class ValidationError(PermanentError):
    """The event is well formed but holds values Amplitude would reject (ids on its invalid list, ...)."""


class RetryError(ExposureError):
    """Delivery failed for a reason that may pass: try again later with the same event."""
