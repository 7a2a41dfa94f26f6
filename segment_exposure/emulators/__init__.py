"""Local stand-ins for the services around the package: Segment's collector, Amplitude's HTTP API and
Experiment's flag-config server, each a real HTTP server on 127.0.0.1, and ``LocalPipeline``, which wires
them to the real provider and destination.

They live here rather than in ``segment_exposure.testing`` because ``segment-exposure demo`` runs on them,
and the package itself never imports its test helpers; ``segment_exposure.testing`` hands them on to test
suites under the names it always had.
"""

from __future__ import annotations

from segment_exposure.emulators.amplitude_emulator import FAULTS, AmplitudeEmulator, RecordedRequest
from segment_exposure.emulators.collector import (
    RUDDERSTACK,
    SEGMENT,
    CollectorFault,
    CollectorRules,
    RudderStackCollector,
    SegmentCollector,
)
from segment_exposure.emulators.flag_server import ExperimentRequest, FlagConfigServer, demo_flags
from segment_exposure.emulators.pipeline import DestinationUnfinished, LocalPipeline

__all__ = [
    "FAULTS",
    "RUDDERSTACK",
    "SEGMENT",
    "AmplitudeEmulator",
    "CollectorFault",
    "CollectorRules",
    "DestinationUnfinished",
    "ExperimentRequest",
    "FlagConfigServer",
    "LocalPipeline",
    "RecordedRequest",
    "RudderStackCollector",
    "SegmentCollector",
    "demo_flags",
]
