"""The SDK-native path: ``evaluate_v2(..., EvaluateOptions(tracks_exposure=True))`` into Segment.

``LocalEvaluationClient`` hands each tracked evaluation to ``client.exposure_service.track(exposure)``,
whose stock implementation sends ``[Experiment] Exposure`` straight to Amplitude through
amplitude-analytics (and skips default variants). ``route_sdk_exposures`` puts a service with the same
shape in its place that sends ``$exposure`` through the provider instead, so the exposure reaches
Amplitude once, through Segment. That attribute and its call are SDK internals, so the installed
version is checked when the route is set up, never at evaluation time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from . import _sdk
from ._sdk import check_tested_sdk_version, require_sdk
from .rules import ExposureTrackingProvider, TrackingStats, track_flag

__all__ = ["SegmentExposureService", "route_sdk_exposures"]

log = logging.getLogger(__name__)


class _ProviderFlush:
    """Stands in for the amplitude-analytics client ``LocalEvaluationClient.stop()`` flushes.

    ``stop(timeout)`` waits on the futures ``flush()`` returns, so the provider is flushed on a helper
    thread and the SDK's own timeout bounds the wait.
    """

    def __init__(self, provider: object) -> None:
        self._provider: Any = provider

    def flush(self) -> list[Future[bool]]:
        if not callable(getattr(self._provider, "flush", None)):
            return []
        future: Future[bool] = Future()

        def run() -> None:
            try:
                timeout = float(getattr(self._provider, "flush_timeout", 5.0))
                future.set_result(bool(self._provider.flush(timeout)))
            except Exception as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="segment-exposure-sdk-flush", daemon=True).start()
        return [future]

    def shutdown(self) -> None:
        """Nothing to release: the provider belongs to the caller."""


class SegmentExposureService:
    """Replaces amplitude-experiment's ``ExposureService``: every tracked evaluation becomes ``$exposure``.

    Each evaluated flag goes through the same rules as ``ExposureTrackingClient``; ``track()`` never
    raises into ``evaluate_v2``.
    """

    def __init__(
        self, provider: ExposureTrackingProvider, *, track_default_variants: bool = True, replaced: Any = None
    ) -> None:
        self.provider = provider
        self.track_default_variants = track_default_variants
        self.replaced = replaced  # the service this one stands in for, for restore()
        self.amplitude = _ProviderFlush(provider)
        self._stats = TrackingStats()
        self._client: Any = None

    def track(self, exposure: Any) -> None:
        """Called by ``evaluate_v2`` with the SDK's ``Exposure(user, results)``."""
        try:
            user = exposure.user
            results = exposure.results
            if not isinstance(results, Mapping):
                raise TypeError(f"Exposure.results is {type(results).__name__}, not a mapping")
            items = list(results.items())
        except Exception:
            self._stats.errors.incr()
            log.exception("segment-exposure: unreadable exposure from amplitude-experiment; not tracked")
            return
        for flag_key, variant in items:
            track_flag(
                self.provider,
                self._stats,
                flag_key,
                variant,
                user,
                track_default_variants=self.track_default_variants,
            )

    def restore(self) -> None:
        """Put the SDK's own exposure service back on the client this service was installed on."""
        if self._client is not None and _sdk.exposure_service(self._client) is self:
            _sdk.set_exposure_service(self._client, self.replaced)
        self._client = None

    def stats(self) -> dict[str, Any]:
        """Counters: tracked, tracked_unset, not_accepted, errors, and suppressed exposures by reason."""
        return self._stats.snapshot()


def route_sdk_exposures(
    client: Any, provider: ExposureTrackingProvider, *, track_default_variants: bool = True
) -> SegmentExposureService:
    """Send the exposures a ``LocalEvaluationClient`` tracks itself through ``provider`` as ``$exposure``.

    After this, ``client.evaluate_v2(user, keys, EvaluateOptions(tracks_exposure=True))`` sends nothing
    to Amplitude through amplitude-analytics; each evaluated flag is tracked through Segment with the
    client-SDK rules. Raises ``UntestedSDKVersionError`` on an amplitude-experiment version these
    internals were not tested with, and TypeError for anything but a ``LocalEvaluationClient``.
    """
    sdk = require_sdk()
    check_tested_sdk_version()
    if not isinstance(client, sdk.LocalEvaluationClient):
        raise TypeError(
            "route_sdk_exposures() needs an amplitude_experiment.LocalEvaluationClient "
            f"(got {type(client).__name__}); wrap other clients with ExposureTrackingClient"
        )
    current = _sdk.exposure_service(client)
    if not callable(getattr(provider, "track", None)):
        raise TypeError("provider must have a track(exposure, user) method")
    if isinstance(current, SegmentExposureService):
        current.restore()
        current = _sdk.exposure_service(client)
    if _sdk.has_assignment_service(client):
        log.warning(
            "segment-exposure: this LocalEvaluationClient has an assignment_config: the SDK still sends "
            "[Experiment] Assignment events to Amplitude directly; remove it to use Segment only"
        )
    service = SegmentExposureService(
        provider, track_default_variants=track_default_variants, replaced=current
    )
    service._client = client
    _sdk.set_exposure_service(client, service)
    return service
