"""Exposures from Amplitude Experiment's Python clients, sent through Segment.

amplitude-experiment has no pluggable tracking provider; this gives Python what the JS client's
``exposureTrackingProvider`` gives the browser:

- ``ExposureTrackingClient(client, provider)`` wraps a ``LocalEvaluationClient`` or
  ``RemoteEvaluationClient``: ``variant()`` tracks, ``exposure()`` tracks explicitly, ``all()`` does not.
- ``route_sdk_exposures(local_client, provider)`` for code that already calls
  ``evaluate_v2(..., EvaluateOptions(tracks_exposure=True))``.

Importing this module does not import amplitude-experiment; using it without the SDK raises an
ImportError naming the extra to install: ``pip install 'segment-exposure[experiment]'``.
"""

from __future__ import annotations

from ._sdk import MISSING_SDK_MESSAGE, TESTED_SDK_VERSIONS, UntestedSDKVersionError, check_tested_sdk_version
from .client import ExposureTrackingClient
from .rules import SUPPRESS_REASONS, ExposureTrackingProvider, Verdict, decide
from .sdk_native import SegmentExposureService, route_sdk_exposures

__all__ = [
    "MISSING_SDK_MESSAGE",
    "SUPPRESS_REASONS",
    "TESTED_SDK_VERSIONS",
    "ExposureTrackingClient",
    "ExposureTrackingProvider",
    "SegmentExposureService",
    "UntestedSDKVersionError",
    "Verdict",
    "check_tested_sdk_version",
    "decide",
    "route_sdk_exposures",
]
