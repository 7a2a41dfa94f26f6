"""OpenFeature for Amplitude Experiment, with exposures through Segment.

- ``ExposureHook(provider)``: an OpenFeature hook that sends one ``$exposure`` per evaluation, by any
  OpenFeature provider, through a ``SegmentExposureTrackingProvider``.
- ``AmplitudeExperimentProvider(client)``: an OpenFeature provider over amplitude-experiment's
  ``LocalEvaluationClient`` or ``RemoteEvaluationClient``; it tracks nothing itself (the hook does).

Needs openfeature-sdk: ``pip install 'segment-exposure[openfeature]'``; importing this package without
it raises an ImportError naming that extra.
"""

from __future__ import annotations

MISSING_OPENFEATURE_MESSAGE = (
    "segment_exposure.openfeature needs the OpenFeature SDK: pip install 'segment-exposure[openfeature]'"
)

try:
    import openfeature.hook  # noqa: F401  (the SDK itself, not this package)
except ImportError as exc:
    raise ImportError(MISSING_OPENFEATURE_MESSAGE) from exc

from .hook import ExposureHook  # noqa: E402
from .provider import AmplitudeExperimentProvider  # noqa: E402

__all__ = ["MISSING_OPENFEATURE_MESSAGE", "AmplitudeExperimentProvider", "ExposureHook"]
