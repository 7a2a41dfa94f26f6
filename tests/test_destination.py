"""The destination with Segment Functions' semantics, against the real emulator over HTTP.

Segment retries what on_track raises as RetryError and what on_batch marks 429/500, so the tests do the same
and then count: every valid event ingested exactly once, every invalid one answered 400 with a reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from segment_exposure import (
    AmplitudeEmulator,
    AmplitudeExposureDestination,
    EventNotSupported,
    InvalidEventPayload,
    PermanentError,
    RetryError,
    ValidationError,
)

from .amplitude_cases import FAST, FAULT_IDS, FAULT_MATRIX, SIZES, assert_ingested_once, segment_event

API_KEY = "amp-dest-key-5e8d1c0b77"


@pytest.fixture
def emulator() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as server:
        yield server


def make_destination(emulator: AmplitudeEmulator, **options: Any) -> AmplitudeExposureDestination:
    settings = {**FAST, **options}
    return AmplitudeExposureDestination(
        API_KEY, endpoint=settings.pop("endpoint", emulator.http_api_url), **settings
    )


#: Events each destination must refuse with 400: (fields, error name that must appear in errormessage).
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"type": "identify"}, "EventNotSupported"),
    ({"event": "Order Completed"}, "EventNotSupported"),
    ({"properties": {"variant": "on"}}, "InvalidEventPayload"),
    ({"userId": None, "anonymousId": None}, "InvalidEventPayload"),
    ({"userId": "null"}, "ValidationError"),
    ({"anonymousId": "abc", "userId": None}, "ValidationError"),
    # Valid for the translator (and Segment), refused by Amplitude (a time before 1970): only it can tell.
    ({"timestamp": "1969-12-31T23:59:59.000Z"}, "ValidationError"),
]


def make_batch(size: int) -> tuple[list[Any], dict[int, str]]:
    events: list[Any] = [segment_event(i) for i in range(size)]
    bad: dict[int, str] = {}
    if size >= 20:
        for n, i in enumerate(range(3, size, 10)):
            fields, error = INVALID[n % len(INVALID)]
            events[i] = segment_event(i, **fields)
            bad[i] = error
    return events, bad


def settle_batch(
    destination: AmplitudeExposureDestination, events: list[Any], rounds: int = 4
) -> tuple[dict[int, dict[str, Any]], list[list[dict[str, Any]]]]:
    """Call on_batch and resend the 429/500 events as Segment does; return each event's final answer."""
    final: dict[int, dict[str, Any]] = {}
    pending = list(range(len(events)))
    answers = []
    for _ in range(rounds):
        answer = destination.on_batch([events[i] for i in pending])
        answers.append(answer)
        assert len(answer) == len(pending)
        retry = []
        for position, item in enumerate(answer):
            assert set(item) == {"status", "errormessage"}
            assert item["status"] in {200, 400, 429, 500}
            assert (item["status"] == 200) == (item["errormessage"] == "")
            if item["status"] in (429, 500):
                retry.append(pending[position])
            else:
                final[pending[position]] = item
        pending = retry
        if not pending:
            break
    assert not pending, f"still retried after {rounds} rounds: {answers[-1]}"
    return final, answers


def assert_exactly_once(emulator: AmplitudeEmulator, events: list[Any], bad: set[int]) -> None:
    assert_ingested_once(emulator, {events[i]["messageId"] for i in range(len(events)) if i not in bad})


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("fault", "fault_options"),
    FAULT_MATRIX,
    ids=FAULT_IDS,
)
def test_on_batch_fault_matrix(
    emulator: AmplitudeEmulator, fault: str | None, fault_options: dict[str, Any], size: int
) -> None:
    events, bad = make_batch(size)
    if fault is not None:
        emulator.inject(fault, **fault_options)
    with make_destination(emulator) as destination:
        final, answers = settle_batch(destination, events)
    if fault == "413" and size == 1:
        bad = {0: "ValidationError"}  # a lone event that still gets 413 is set aside with the reason
    assert emulator.pending_faults == 0
    assert len(final) == len(events), "zero events lost: each has a final answer"
    for i, item in final.items():
        if i in bad:
            assert item["status"] == 400
            assert item["errormessage"].startswith(bad[i])
        else:
            assert item["status"] == 200, item
    assert_exactly_once(emulator, events, set(bad))
    if fault == "403":
        assert {a["status"] for a in answers[0]} == {500} | ({400} if bad else set())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "fault_options"),
    FAULT_MATRIX,
    ids=FAULT_IDS,
)
def test_on_track_fault_matrix(
    emulator: AmplitudeEmulator, fault: str | None, fault_options: dict[str, Any]
) -> None:
    events = [segment_event(i) for i in range(3)]
    if fault is not None:
        emulator.inject(fault, **fault_options)
    rejected = 0
    with make_destination(emulator) as destination:
        for event in events:
            for _attempt in range(3):  # Segment retries a RetryError
                try:
                    destination.on_track(event)
                    break
                except RetryError as exc:
                    assert API_KEY not in str(exc)
                except ValidationError as exc:
                    assert fault == "413" and "413" in str(exc)
                    rejected += 1
                    break
            else:
                pytest.fail(f"{event['messageId']} still retried after 3 attempts")
    assert emulator.pending_faults == 0
    assert emulator.wait_for_ingested(len(events) - rejected, timeout=10)
    assert sorted(e["insert_id"] for e in emulator.ingested) == [e["messageId"] for e in events][rejected:]


def test_on_track_raises_the_translator_errors(emulator: AmplitudeEmulator) -> None:
    with make_destination(emulator) as destination:
        with pytest.raises(EventNotSupported):
            destination.on_track(segment_event(1, type="page"))
        with pytest.raises(InvalidEventPayload):
            destination.on_track(segment_event(1, properties={}))
        with pytest.raises(ValidationError, match="min_id_length"):
            destination.on_track(segment_event(1, userId="abcd"))
        with pytest.raises(ValidationError, match="'time'"):
            destination.on_track(segment_event(1, timestamp="1969-12-31T23:59:59.000Z"))
    assert emulator.ingested_count == 0


def test_on_track_delivers_with_insert_id_and_options(emulator: AmplitudeEmulator) -> None:
    with make_destination(emulator, min_id_length=3) as destination:
        destination.on_track(segment_event(1, userId="abc", anonymousId=None))
    (ingested,) = emulator.ingested
    assert ingested["insert_id"] == "msg-000001"
    assert ingested["user_id"] == "abc"
    assert ingested["event_type"] == "$exposure"


def test_on_batch_keeps_order_with_mixed_types(emulator: AmplitudeEmulator) -> None:
    events: list[Any] = [
        segment_event(0),
        {"type": "identify", "userId": "user-1", "traits": {}},
        "not an event",
        segment_event(3, event="Experiment Exposure"),
        segment_event(4),
    ]
    with make_destination(emulator, exposure_events=("$exposure", "Experiment Exposure")) as destination:
        answer = destination.on_batch(events)
    assert [a["status"] for a in answer] == [200, 400, 400, 200, 200]
    assert answer[1]["errormessage"].startswith("EventNotSupported")
    assert answer[2]["errormessage"].startswith("InvalidEventPayload")
    assert {e["event_type"] for e in emulator.ingested} == {"$exposure"}


@pytest.mark.slow
def test_on_batch_with_a_slow_amplitude_returns_within_the_deadline(emulator: AmplitudeEmulator) -> None:
    emulator.inject("slow", count=None, delay=1.0)
    events, bad = make_batch(1000)
    with make_destination(emulator, deadline=0.5) as destination:
        started = time.monotonic()
        answer = destination.on_batch(events)
        elapsed = time.monotonic() - started
        assert elapsed < 0.9, "Segment Functions would have killed a slower handler"
        reaches_amplitude = {
            i for i in range(len(events)) if i not in bad or str(events[i]["timestamp"]).startswith("1969")
        }
        for i, item in enumerate(answer):
            if i in reaches_amplitude:
                assert item["status"] == 500, "unfinished: retry later"
                assert "deadline" in item["errormessage"] or "within" in item["errormessage"]
            else:
                assert item["status"] == 400, "known-bad events are final already"
        emulator.clear_faults()
        final, _ = settle_batch(destination, events)
    assert {i for i, item in final.items() if item["status"] == 400} == set(bad)
    assert_exactly_once(emulator, events, set(bad))


def test_throttled_events_are_answered_429(emulator: AmplitudeEmulator) -> None:
    emulator.eps_threshold = 5
    events = [segment_event(i, anonymousId="anon-hot-device", userId=None) for i in range(8)]
    with make_destination(emulator, throttle_wait=30.0, deadline=1.0) as destination:
        answer = destination.on_batch(events)
        with pytest.raises(RetryError, match="429"):
            destination.on_track(segment_event(99, anonymousId="anon-hot-device", userId=None))
    assert [a["status"] for a in answer] == [200] * 5 + [429] * 3


def test_configuration_error_is_500_and_never_shows_the_key(
    emulator: AmplitudeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="segment_exposure")
    wrong = "amp-wrong-key-99aa88bb77"
    destination = AmplitudeExposureDestination(wrong, endpoint=emulator.http_api_url, **FAST)
    answer = destination.on_batch([segment_event(1), segment_event(2)])
    assert [a["status"] for a in answer] == [500, 500]
    with pytest.raises(RetryError) as raised:
        destination.on_track(segment_event(3))
    text = " ".join([str(raised.value), repr(destination), *(a["errormessage"] for a in answer)])
    text += " ".join(r.getMessage() for r in caplog.records)
    assert wrong not in text
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    destination.close()


def test_construction() -> None:
    with pytest.raises(ValueError, match="api_key"):
        AmplitudeExposureDestination()
    eu = AmplitudeExposureDestination(API_KEY, region="EU")
    assert eu.client.endpoint == "https://api.eu.amplitude.com/2/httpapi"
    assert eu.deadline == 4.5
    assert API_KEY not in repr(eu)
    eu.close()
    single = AmplitudeExposureDestination(API_KEY, exposure_events="Exposure")
    assert single.exposure_events == ("Exposure",)
    single.close()


def test_errors_are_segment_function_errors() -> None:
    for error in (EventNotSupported, InvalidEventPayload, ValidationError):
        assert issubclass(error, PermanentError)
    assert not issubclass(RetryError, PermanentError)
