"""Kept import path: the Amplitude delivery client lives in :mod:`segment_exposure.delivery.amplitude`."""

from segment_exposure.delivery.amplitude import (
    ENDPOINTS,
    LIMITS,
    AmplitudeClient,
    DeliveryResult,
    EventOutcome,
    RequestLimits,
    Status,
)

__all__ = [
    "ENDPOINTS",
    "LIMITS",
    "AmplitudeClient",
    "DeliveryResult",
    "EventOutcome",
    "RequestLimits",
    "Status",
]
