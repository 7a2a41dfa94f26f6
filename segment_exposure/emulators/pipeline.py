"""The whole exposure pipeline on one machine: Experiment flags, Segment, the destination, Amplitude.

``LocalPipeline`` wires the real parts together over loopback HTTP, the way production wires them over
the internet: a provider's Segment client posts to a local collector, the collector hands each batch
to ``AmplitudeExposureDestination``, and the destination delivers to a local Amplitude emulator. A batch
the destination cannot finish is answered 500, so Segment's client sends it again: the retry Segment
itself would make, kept honest by insert_id dedupe at the emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from segment_exposure.delivery.destination import AmplitudeExposureDestination
from segment_exposure.tracking.provider import SegmentExposureTrackingProvider

from .amplitude_emulator import AmplitudeEmulator
from .collector import SegmentCollector
from .flag_server import FlagConfigServer, demo_flags

__all__ = ["DestinationUnfinished", "LocalPipeline"]

WRITE_KEY = "local-pipeline-write-key"
API_KEY = "local-pipeline-amplitude-key"


class DestinationUnfinished(Exception):
    """Some events of a batch must be retried: the collector answers 500 so Segment's client resends."""


class LocalPipeline:
    """Flag server, Segment collector, destination and Amplitude emulator, started together.

    ``provider(**options)`` makes a ``SegmentExposureTrackingProvider`` that sends into the pipeline;
    ``rejected`` lists the events the destination refused for good, with the reason.
    """

    def __init__(
        self,
        flags: Iterable[Mapping[str, Any]] | None = None,
        *,
        destination_options: Mapping[str, Any] | None = None,
        emulator_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.amplitude = AmplitudeEmulator(api_keys={API_KEY}, **dict(emulator_options or {}))
        self.flag_server = FlagConfigServer(flags=demo_flags() if flags is None else flags)
        self.collector = SegmentCollector(WRITE_KEY, on_batch=self._forward)
        self._destination_options = dict(destination_options or {})
        self.destination: AmplitudeExposureDestination | None = None
        self.rejected: list[tuple[dict[str, Any], str]] = []
        self.retried_batches = 0
        self._lock = threading.Lock()
        self._providers: list[SegmentExposureTrackingProvider] = []

    def start(self) -> LocalPipeline:
        self.amplitude.start()
        self.destination = AmplitudeExposureDestination(
            API_KEY, endpoint=self.amplitude.http_api_url, **self._destination_options
        )
        self.flag_server.start()
        self.collector.start()
        return self

    def stop(self) -> None:
        for provider in self._providers:
            provider.shutdown(5)
        self.collector.stop()
        self.flag_server.stop()
        if self.destination is not None:
            self.destination.close()
        self.amplitude.stop()

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def write_key(self) -> str:
        return WRITE_KEY

    def provider(self, **options: Any) -> SegmentExposureTrackingProvider:
        """A provider whose own Segment client sends to this pipeline's collector."""
        client_options = {"upload_interval": 0.05, **options.pop("client_options", {})}
        provider = SegmentExposureTrackingProvider(
            WRITE_KEY, host=self.collector.url, client_options=client_options, **options
        )
        self._providers.append(provider)
        return provider

    def _forward(self, batch: list[dict[str, Any]]) -> None:
        assert self.destination is not None
        results = self.destination.on_batch(batch)
        retry = [r for r in results if r["status"] != 200 and r["status"] != 400]
        with self._lock:
            if retry:
                self.retried_batches += 1
            else:
                self.rejected.extend(
                    (event, r["errormessage"])
                    for event, r in zip(batch, results, strict=True)
                    if r["status"] == 400
                )
        if retry:
            raise DestinationUnfinished(f"{len(retry)} of {len(batch)} events must be retried")
