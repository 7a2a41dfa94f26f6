"""Kept import path: the translator lives in :mod:`segment_exposure.delivery.translate`."""

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
    "DEFAULT_EXPOSURE_EVENTS",
    "DEFAULT_MIN_ID_LENGTH",
    "EXPERIMENT_PROPERTY_PREFIX",
    "INVALID_IDS",
    "id_problem",
    "parse_time_ms",
    "to_amplitude_event",
    "validate_id",
]
