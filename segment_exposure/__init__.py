"""Amplitude Experiment exposure tracking through Segment, without losing data.

``SegmentExposureTrackingProvider`` sends exposures into Segment; ``segment_exposure.experiment`` wraps
Amplitude's Experiment clients; ``segment_exposure.delivery`` delivers Segment's ``$exposure`` events
to Amplitude; ``segment_exposure.testing`` has local emulators and capture helpers for test suites.
"""

from __future__ import annotations

from segment_exposure.exposure import EXPOSURE_EVENT, Exposure
from segment_exposure.identity import bind_user, bound_user
from segment_exposure.tracking.provider import SegmentExposureTrackingProvider

__all__ = [
    "EXPOSURE_EVENT",
    "Exposure",
    "SegmentExposureTrackingProvider",
    "__version__",
    "bind_user",
    "bound_user",
]


def _version() -> str:
    """pyproject.toml holds the version; this reads what was installed from it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("segment-exposure")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()
