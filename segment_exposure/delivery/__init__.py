"""Exposures from Segment to Amplitude: translation, the destination and the Amplitude HTTP client."""

from __future__ import annotations

from segment_exposure.delivery.amplitude import (
    ENDPOINTS,
    LIMITS,
    AmplitudeClient,
    DeliveryResult,
    EventOutcome,
    RequestLimits,
    Status,
)
from segment_exposure.delivery.destination import DEFAULT_DEADLINE, AmplitudeExposureDestination
from segment_exposure.delivery.errors import (
    EventNotSupported,
    ExposureError,
    InvalidEventPayload,
    PermanentError,
    RetryError,
    ValidationError,
)
from segment_exposure.delivery.translate import (
    DEFAULT_EXPOSURE_EVENTS,
    DEFAULT_MIN_ID_LENGTH,
    EXPERIMENT_PROPERTY_PREFIX,
    INVALID_IDS,
    id_problem,
    parse_time_ms,
    to_amplitude_event,
    validate_id,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_EXPOSURE_EVENTS",
    "DEFAULT_MIN_ID_LENGTH",
    "ENDPOINTS",
    "EXPERIMENT_PROPERTY_PREFIX",
    "INVALID_IDS",
    "LIMITS",
    "AmplitudeClient",
    "AmplitudeExposureDestination",
    "DeliveryResult",
    "EventNotSupported",
    "EventOutcome",
    "ExposureError",
    "InvalidEventPayload",
    "PermanentError",
    "RequestLimits",
    "RetryError",
    "Status",
    "ValidationError",
    "id_problem",
    "parse_time_ms",
    "to_amplitude_event",
    "validate_id",
]
