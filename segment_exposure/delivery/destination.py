"""Segment's ``$exposure`` events into Amplitude, with Segment Functions' semantics.

Why this shape: Segment retries an event only when the destination says so (``RetryError``, or a 429/5xx
status in ``onBatch``) and discards it on any other error. So the destination must say, for each event,
exactly one of: delivered, never deliverable (with the reason), or try again later. It translates with
``to_amplitude_event`` and delivers with ``AmplitudeClient``, inside a deadline that fits Segment
Functions' 5 s limit.

``on_batch`` statuses, one per event, in order:

* 200: delivered (``errormessage`` is empty);
* 400: never deliverable: the translator refused it (``EventNotSupported``, ``InvalidEventPayload``,
  ``ValidationError``; a non-exposure event is a 400 too, so Segment does not retry it) or Amplitude rejected
  it (invalid fields, silenced device, too large). ``errormessage`` starts with the error's name;
* 429: retry later because Amplitude throttled it or its daily quota is used up;
* 500: retry later for any other reason (outage, timeout, deadline, configuration error such as a wrong
  API key: the events are kept so nothing is lost while the setting is fixed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

from segment_exposure.delivery.amplitude import AmplitudeClient, EventOutcome, Status
from segment_exposure.delivery.errors import PermanentError, RetryError, ValidationError
from segment_exposure.delivery.sources import check_source
from segment_exposure.delivery.translate import DEFAULT_EXPOSURE_EVENTS, to_amplitude_event

__all__ = ["DEFAULT_DEADLINE", "AmplitudeExposureDestination"]

#: Seconds one ``on_track``/``on_batch`` may take: Segment Functions stop a handler after 5 s.
DEFAULT_DEADLINE = 4.5

logger = logging.getLogger(__name__)

_THROTTLE_CODES = frozenset({"throttled", "daily_quota"})


class AmplitudeExposureDestination:
    """A Segment destination that delivers ``$exposure`` track events to Amplitude.

    ``endpoint`` is a full ingestion URL (e.g. ``"http://127.0.0.1:8080/2/httpapi"``) and overrides
    ``region``. ``min_id_length`` applies both to the translator's checks and to Amplitude's
    ``options.min_id_length``. ``exposure_events`` are the event names accepted as exposures (each is sent as
    ``$exposure``). ``source`` is ``"auto"`` (Segment's or RudderStack's mapping, per event: see
    ``segment_exposure.delivery.sources``), ``"segment"`` or ``"rudderstack"``. ``deadline`` bounds each
    call in seconds. Other keyword arguments go to ``AmplitudeClient`` (``api``, ``timeout``, ``gzip``,
    ``session``, backoff settings, ...); or pass a ready ``client``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        region: str = "US",
        endpoint: str | None = None,
        *,
        min_id_length: int | None = None,
        exposure_events: Collection[str] = DEFAULT_EXPOSURE_EVENTS,
        deadline: float = DEFAULT_DEADLINE,
        source: str = "auto",
        client: AmplitudeClient | None = None,
        **client_options: Any,
    ) -> None:
        check_source(source)
        if client is None:
            if api_key is None:
                raise ValueError("api_key is required (the Amplitude project's API key), or pass client=")
            client = AmplitudeClient(
                api_key,
                region=region,
                endpoint=endpoint,
                min_id_length=min_id_length,
                deadline=deadline,
                **client_options,
            )
        elif client_options:
            raise ValueError(f"pass client options to the client, not here: {sorted(client_options)}")
        if isinstance(exposure_events, str):
            exposure_events = (exposure_events,)
        self.client = client
        self.min_id_length = min_id_length
        self.exposure_events: tuple[str, ...] = tuple(exposure_events)
        self.deadline = deadline
        self.source = source

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(client={self.client!r}, exposure_events={self.exposure_events!r}, "
            f"deadline={self.deadline!r}, source={self.source!r})"
        )

    def __enter__(self) -> AmplitudeExposureDestination:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def translate(self, event: Any) -> dict[str, Any]:
        """The Amplitude event for ``event`` with this destination's settings; raises like ``on_track``."""
        return to_amplitude_event(
            event, min_id_length=self.min_id_length, exposure_events=self.exposure_events, source=self.source
        )

    def on_track(self, event: Any) -> None:
        """Deliver one event, or raise: ``EventNotSupported``, ``InvalidEventPayload`` or
        ``ValidationError`` (never retry; Amplitude's own rejections are ``ValidationError``) or
        ``RetryError`` (try again later, e.g. throttled, outage, deadline, configuration error)."""
        started = time.monotonic()
        amplitude_event = self.translate(event)
        remaining = max(0.0, self.deadline - (time.monotonic() - started))
        outcome = self.client.send([amplitude_event], deadline=remaining)[0]
        if outcome.status is Status.DELIVERED:
            return
        if outcome.status is Status.REJECTED:
            raise ValidationError(outcome.reason)
        raise RetryError(outcome.reason)

    def on_batch(self, events: Sequence[Any]) -> list[dict[str, Any]]:
        """One ``{"status", "errormessage"}`` per event, in order (see the module's documentation)."""
        started = time.monotonic()
        if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
            raise TypeError(f"on_batch takes a list of Segment events, got {type(events).__name__}")
        results: list[dict[str, Any] | None] = [None] * len(events)
        translated: list[dict[str, Any]] = []
        positions: list[int] = []
        for index, event in enumerate(events):
            try:
                translated.append(self.translate(event))
            except PermanentError as exc:
                results[index] = {"status": 400, "errormessage": f"{type(exc).__name__}: {exc}"}
                continue
            except Exception as exc:  # a bug must not fail the other events, nor lose this one
                logger.exception("translating event %d failed unexpectedly", index)
                message = f"RetryError: unexpected {type(exc).__name__} while translating; retry later"
                results[index] = {"status": 500, "errormessage": message}
                continue
            positions.append(index)
        if translated:
            remaining = max(0.0, self.deadline - (time.monotonic() - started))
            delivery = self.client.send(translated, deadline=remaining)
            for index, outcome in zip(positions, delivery.outcomes, strict=True):
                results[index] = _status(outcome)
        return [r if r is not None else _INTERNAL for r in results]


_INTERNAL = {"status": 500, "errormessage": "RetryError: not processed (internal error); retry later"}


def _status(outcome: EventOutcome) -> dict[str, Any]:
    if outcome.status is Status.DELIVERED:
        return {"status": 200, "errormessage": ""}
    if outcome.status is Status.REJECTED:
        return {"status": 400, "errormessage": f"ValidationError: {outcome.reason}"}
    status = 429 if outcome.code in _THROTTLE_CODES else 500
    return {"status": status, "errormessage": f"RetryError: {outcome.reason}"}
