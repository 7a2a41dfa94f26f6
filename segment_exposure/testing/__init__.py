"""Helpers for test suites: local emulators of Segment and Amplitude, and exposure capture.

Everything here listens on 127.0.0.1 only and is public API, so users can test their own
integration against the same fakes this project's tests use.
"""

from __future__ import annotations

from .amplitude_emulator import AmplitudeEmulator
from .capture import CapturedExposures, InMemorySegmentClient, capture_exposures
from .collector import CollectorFault, SegmentCollector
from .flag_server import ExperimentRequest, FlagConfigServer, demo_flags

__all__ = [
    "AmplitudeEmulator",
    "CapturedExposures",
    "CollectorFault",
    "ExperimentRequest",
    "FlagConfigServer",
    "InMemorySegmentClient",
    "SegmentCollector",
    "capture_exposures",
    "demo_flags",
]
