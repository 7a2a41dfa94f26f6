"""Kept import path: the destination's errors lives in :mod:`segment_exposure.delivery.errors`."""

from segment_exposure.delivery.errors import (
    EventNotSupported,
    ExposureError,
    InvalidEventPayload,
    PermanentError,
    RetryError,
    ValidationError,
)

__all__ = [
    "EventNotSupported",
    "ExposureError",
    "InvalidEventPayload",
    "PermanentError",
    "RetryError",
    "ValidationError",
]
