"""How one :meth:`AmplitudeClient.send` schedules its requests around backoffs.

A request that failed waits for its retry while the other requests go ahead; an outage is probed by the
failed requests' retries instead of costing every chunk its attempts. A session that records what each
request carried tells the requests apart (the emulator records counts, not insert_ids).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from segment_exposure import AmplitudeClient, AmplitudeEmulator, DeliveryResult, Status

from .conftest import wait_until

API_KEY = "amp-test-key-5b1e0c7d42"
T0 = 1795514400123
CHUNK = 10


class RecordingSession(requests.Session):
    """A session that notes the insert_ids of every request body it posts, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[list[str]] = []

    def post(self, url: Any, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        self.sent.append([e["insert_id"] for e in _loads(data)["events"]])
        return super().post(url, data=data, json=json, **kwargs)


def _loads(data: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(data)
    return loaded


@pytest.fixture
def emulator() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as server:
        yield server


@pytest.fixture
def session() -> Iterator[RecordingSession]:
    with RecordingSession() as recording:
        yield recording


def make_client(emulator: AmplitudeEmulator, session: requests.Session, **options: Any) -> AmplitudeClient:
    """One request in flight at a time (unless ``max_in_flight`` is given), so the order is deterministic."""
    settings: dict[str, Any] = {
        "max_in_flight": 1,
        "max_events_per_request": CHUNK,
        "backoff_initial": 0.05,
        "backoff_max": 5.0,
        "backoff_jitter": 0.0,
        "timeout": (2.0, 3.0),
        "deadline": 20.0,
        **options,
    }
    return AmplitudeClient(API_KEY, endpoint=emulator.http_api_url, session=session, **settings)


def events(count: int) -> list[dict[str, Any]]:
    return [
        {
            "event_type": "$exposure",
            "user_id": f"user-{i:06d}",
            "device_id": f"device-{i:06d}",
            "insert_id": f"insert-{i:06d}",
            "time": T0 + i,
            "event_properties": {"flag_key": "checkout", "variant": "treatment"},
        }
        for i in range(count)
    ]


def chunks(batch: list[dict[str, Any]]) -> list[list[str]]:
    """The insert_ids of each request the batch is packed into, in order."""
    ids = [e["insert_id"] for e in batch]
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def assert_exactly_once(emulator: AmplitudeEmulator, batch: list[dict[str, Any]]) -> None:
    assert emulator.wait_for_ingested(len(batch), timeout=10)
    ingested = [e["insert_id"] for e in emulator.ingested]
    assert sorted(ingested) == sorted(e["insert_id"] for e in batch)


@pytest.mark.slow
def test_a_backoff_does_not_hold_up_the_other_requests(
    emulator: AmplitudeEmulator, session: RecordingSession
) -> None:
    batch = events(5 * CHUNK)
    c = chunks(batch)
    emulator.schedule([None, "503"])
    with make_client(emulator, session, backoff_initial=1.0) as client:
        result = client.send(batch)
    assert result.all_delivered
    assert session.sent == [c[0], c[1], c[2], c[3], c[4], c[1]], "the others went during the backoff"
    assert result.requests == 6
    assert_exactly_once(emulator, batch)


def test_a_failure_before_any_answer_holds_new_requests_until_the_retry(
    emulator: AmplitudeEmulator, session: RecordingSession
) -> None:
    batch = events(5 * CHUNK)
    c = chunks(batch)
    emulator.schedule(["503"])
    with make_client(emulator, session) as client:
        result = client.send(batch)
    assert result.all_delivered
    assert session.sent == [c[0], c[0], c[1], c[2], c[3], c[4]], "Amplitude may be down: probe first"


@pytest.mark.slow
def test_two_failures_in_a_row_hold_new_requests_until_a_retry_is_answered(
    emulator: AmplitudeEmulator, session: RecordingSession
) -> None:
    batch = events(5 * CHUNK)
    c = chunks(batch)
    emulator.schedule([None, "503", "503"])
    with make_client(emulator, session, backoff_initial=0.3) as client:
        result = client.send(batch)
    assert result.all_delivered
    assert session.sent[:4] == [c[0], c[1], c[2], c[1]]
    assert sorted(session.sent[4:]) == [c[2], c[3], c[4]]


def test_an_outage_is_probed_by_the_failed_requests_only(
    emulator: AmplitudeEmulator, session: RecordingSession
) -> None:
    batch = events(5 * CHUNK)
    c = chunks(batch)
    emulator.schedule([None])
    emulator.inject("503", count=None)
    with make_client(emulator, session, max_attempts=3) as client:
        result = client.send(batch)
        assert session.sent == [c[0], c[1], c[2], c[1], c[2], c[1]], "the third attempt of c1 ends the send"
        assert result.delivered == list(range(CHUNK))
        assert len(result.retry_later) == 4 * CHUNK
        assert {o.code for o in result if o.status is Status.RETRY_LATER} == {"unavailable"}
        assert all("not sent" in result[i].reason for i in range(3 * CHUNK, 5 * CHUNK))
        assert "not sent" not in result[2 * CHUNK].reason, "c2 was sent: it keeps its own failure"
        emulator.clear_faults()
        again = client.send([batch[i] for i in sorted(result.retry_later)])
    assert again.all_delivered
    assert_exactly_once(emulator, batch)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["500_after_ingest", "reset_after_ingest", "non_json"])
def test_retries_between_other_requests_keep_their_insert_ids(
    emulator: AmplitudeEmulator, session: RecordingSession, fault: str
) -> None:
    batch = events(5 * CHUNK)
    emulator.schedule([None, fault, None, fault])
    with make_client(emulator, session) as client:
        result = client.send(batch)
    assert result.all_delivered
    assert result.requests == 7
    assert emulator.duplicates_dropped == 2 * CHUNK, "each retry carried the same insert_ids"
    assert_exactly_once(emulator, batch)


def test_a_retry_past_the_deadline_ends_the_send(
    emulator: AmplitudeEmulator, session: RecordingSession
) -> None:
    batch = events(5 * CHUNK)
    c = chunks(batch)
    emulator.schedule([None, "503"])
    with make_client(emulator, session, backoff_initial=5.0) as client:
        started = time.monotonic()
        result = client.send(batch, deadline=2.0)
        assert time.monotonic() - started < 1.5, "no waiting for a retry that cannot start in time"
    assert session.sent == [c[0], c[1]]
    assert result.delivered == list(range(CHUNK))
    assert {o.code for o in result if o.status is Status.RETRY_LATER} == {"unavailable"}


def test_close_interrupts_a_backoff(
    emulator: AmplitudeEmulator, session: RecordingSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="segment_exposure")
    emulator.inject("503", count=None)
    client = make_client(emulator, session, backoff_initial=5.0)
    results: list[DeliveryResult] = []
    thread = threading.Thread(target=lambda: results.append(client.send(events(3 * CHUNK), deadline=15)))
    thread.start()
    assert wait_until(lambda: any("retrying in" in r.getMessage() for r in caplog.records), timeout=5)
    started = time.monotonic()
    client.close()
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1
    (result,) = results
    assert result.counts() == {"delivered": 0, "rejected": 0, "retry_later": 3 * CHUNK}
    assert {o.code for o in result} == {"closed"}
    assert len(session.sent) == 1, "nothing was sent after close"
