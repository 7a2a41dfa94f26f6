"""Helpers for test suites: local emulators of Segment and Amplitude, and exposure capture.

Everything here listens on 127.0.0.1 only and is public API, so users can test their own
integration against the same fakes this project's tests use.
"""

from __future__ import annotations

from segment_exposure.emulators import (
    AmplitudeEmulator,
    CollectorFault,
    CollectorRules,
    ExperimentRequest,
    FlagConfigServer,
    LocalPipeline,
    RudderStackCollector,
    SegmentCollector,
    demo_flags,
)
from segment_exposure.testing.capture import CapturedExposures, InMemorySegmentClient, capture_exposures

__all__ = [
    "AmplitudeEmulator",
    "CapturedExposures",
    "CollectorFault",
    "CollectorRules",
    "ExperimentRequest",
    "FlagConfigServer",
    "InMemorySegmentClient",
    "LocalPipeline",
    "RudderStackCollector",
    "SegmentCollector",
    "capture_exposures",
    "demo_flags",
]
