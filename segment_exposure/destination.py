"""Kept import path: the Amplitude destination lives in :mod:`segment_exposure.delivery.destination`."""

from segment_exposure.delivery.destination import (
    DEFAULT_DEADLINE,
    AmplitudeExposureDestination,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "AmplitudeExposureDestination",
]
