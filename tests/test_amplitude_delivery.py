"""The Amplitude delivery client against the real emulator over HTTP: the contract and the fault matrix.

Every test accounts for every event: delivered (ingested exactly once, after the emulator's insert_id
dedupe), rejected with a reason, or retry later, which a second send (as Segment would) delivers.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from segment_exposure import AmplitudeClient, AmplitudeEmulator, DeliveryResult, Status
from segment_exposure.delivery.amplitude import ENDPOINTS

from .amplitude_cases import FAST as CASES_FAST
from .amplitude_cases import FAULT_IDS, FAULT_MATRIX, SIZES, assert_ingested_once

API_KEY = "amp-test-key-7f3c2a9e51"
T0 = 1795514400123
FAST: dict[str, Any] = {**CASES_FAST, "deadline": 20.0}


@pytest.fixture
def emulator() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as server:
        yield server


def make_client(emulator: AmplitudeEmulator, **options: Any) -> AmplitudeClient:
    settings = {**FAST, **options}
    return AmplitudeClient(API_KEY, endpoint=settings.pop("endpoint", emulator.http_api_url), **settings)


def event(i: int, **fields: Any) -> dict[str, Any]:
    base = {
        "event_type": "$exposure",
        "user_id": f"user-{i:06d}",
        "device_id": f"device-{i:06d}",
        "insert_id": f"insert-{i:06d}",
        "time": T0 + i,
        "event_properties": {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"},
        "platform": "iOS",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


INVALID_KINDS: list[tuple[dict[str, Any], str]] = [
    ({"time": "2026-11-24T10:00:00Z"}, "time"),
    ({"user_id": "null"}, "user_id"),
    ({"event_type": None}, "event_type"),
    ({"device_id": "dev"}, "device_id"),
    ({"location_lat": "37.7"}, "location_lat"),
]


def make_batch(size: int, *, invalid: bool = True) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """``size`` events; for sizes of 20 and more about 5% are invalid in ways only Amplitude can tell."""
    events = [event(i) for i in range(size)]
    bad: dict[int, str] = {}
    if invalid and size >= 20:
        for n, i in enumerate(range(7, size, 20)):
            fields, field = INVALID_KINDS[n % len(INVALID_KINDS)]
            events[i] = event(i, **fields)
            bad[i] = field
    return events, bad


def settle(
    client: AmplitudeClient, events: list[dict[str, Any]], rounds: int = 4
) -> tuple[dict[int, str], list[DeliveryResult]]:
    """Send, then resend what came back as retry later, as Segment would; return final rejections."""
    pending = list(range(len(events)))
    rejected: dict[int, str] = {}
    results = []
    for _ in range(rounds):
        result = client.send([events[i] for i in pending])
        results.append(result)
        assert len(result) == len(pending)
        counts = result.counts()
        assert sum(counts.values()) == len(pending), "every event has exactly one outcome"
        for position, outcome in enumerate(result):
            if outcome.status is Status.REJECTED:
                rejected[pending[position]] = outcome.reason
            assert (outcome.status is Status.DELIVERED) == (outcome.reason == "")
        pending = [pending[position] for position in result.retry_later]
        if not pending:
            break
    assert not pending, f"still retry later after {rounds} rounds: {results[-1].retry_later}"
    return rejected, results


def assert_exactly_once(emulator: AmplitudeEmulator, events: list[dict[str, Any]], bad: set[int]) -> None:
    assert_ingested_once(emulator, {events[i]["insert_id"] for i in range(len(events)) if i not in bad})


# -- the fault matrix -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("fault", "fault_options"),
    FAULT_MATRIX,
    ids=FAULT_IDS,
)
def test_fault_matrix(
    emulator: AmplitudeEmulator, fault: str | None, fault_options: dict[str, Any], size: int
) -> None:
    events, bad = make_batch(size)
    if fault is not None:
        emulator.inject(fault, **fault_options)
    with make_client(emulator) as client:
        rejected, results = settle(client, events)
    assert emulator.pending_faults == 0, "the fault was exercised"
    if fault == "413" and size == 1:
        bad = {0: "413"}  # one event that still gets 413 on its own is set aside with the reason
    assert set(rejected) == set(bad), "every invalid event is rejected, and only those"
    for i, field in bad.items():
        assert field in rejected[i]
    assert_exactly_once(emulator, events, set(bad))
    if fault == "403":
        first = results[0]
        assert first.counts()["delivered"] == 0
        # A request already in flight alongside the refused one keeps Amplitude's own answer to it (here:
        # its invalid events rejected); everything else waits for the configuration to be fixed.
        assert {o.code for o in first if o.status is not Status.REJECTED} == {"configuration"}
    lost = len(events) - len(rejected) - sum(len(r.delivered) for r in results)
    assert lost == 0


@pytest.mark.parametrize("fault", ["500_after_ingest", "reset_after_ingest", "non_json"])
def test_ingested_then_failed_requests_are_deduplicated(emulator: AmplitudeEmulator, fault: str) -> None:
    events, _ = make_batch(50, invalid=False)
    emulator.inject(fault)
    with make_client(emulator) as client:
        result = client.send(events)
    assert result.all_delivered
    assert result.requests == 2
    assert emulator.duplicates_dropped == 50, "the retry reused the insert_ids"
    assert_exactly_once(emulator, events, set())


# -- each row of the response table ---------------------------------------------------------------------


def test_index_maps_naming_one_event_at_a_time_are_followed_in_a_loop(emulator: AmplitudeEmulator) -> None:
    emulator.index_map_limit = 1
    events, bad = make_batch(60)
    with make_client(emulator) as client:
        result = client.send(events)
    assert set(result.rejected) == set(bad)
    assert result.requests == len(bad) + 1
    assert {result[i].code for i in bad} <= {"invalid_fields", "missing_fields", "invalid_id"}
    assert_exactly_once(emulator, events, set(bad))


def test_413_splits_until_requests_fit(emulator: AmplitudeEmulator) -> None:
    emulator.max_events_per_request = 100
    events, _ = make_batch(1000, invalid=False)
    with make_client(emulator, max_events_per_request=2000) as client:
        result = client.send(events)
    assert result.all_delivered
    statuses = [r.status for r in emulator.requests]
    assert 413 in statuses
    assert max(r.events for r in emulator.requests if r.status == 200) <= 100
    assert statuses.count(413) < 10, "the client learns the limit instead of splitting every request"
    assert_exactly_once(emulator, events, set())


def test_413_for_a_single_event_rejects_it_with_a_reason(emulator: AmplitudeEmulator) -> None:
    emulator.http_max_body_bytes = 4000
    events = [event(i) for i in range(10)]
    events[3] = event(3, event_properties={"flag_key": "f", "blob": "x" * 5000})
    with make_client(emulator) as client:
        result = client.send(events)
    assert result.rejected.keys() == {3}
    assert result[3].code == "too_large"
    assert "413" in result[3].reason
    assert_exactly_once(emulator, events, {3})


def test_an_event_over_the_documented_limit_is_rejected_without_a_request(
    emulator: AmplitudeEmulator,
) -> None:
    huge = event(0, event_properties={"flag_key": "f", "blob": "x" * 1_000_000})
    with make_client(emulator) as client:
        result = client.send([huge, event(1)])
    assert result[0].code == "too_large"
    assert result[1].delivered
    assert [r.events for r in emulator.requests] == [1]


def test_packing_stays_under_one_megabyte(emulator: AmplitudeEmulator) -> None:
    events = [event(i, event_properties={"flag_key": "f", "pad": "p" * 900}) for i in range(3000)]
    with make_client(emulator) as client:
        result = client.send(events)
    assert result.all_delivered
    assert all(r.status == 200 for r in emulator.requests)
    assert len(emulator.requests) >= 3


def test_packing_fills_requests_to_the_byte_exactly(emulator: AmplitudeEmulator) -> None:
    emulator.http_max_body_bytes = 5000
    events, _ = make_batch(300, invalid=False)
    with make_client(emulator, max_request_bytes=5000) as client:
        assert client.send(events).all_delivered
    assert {r.status for r in emulator.requests} == {200}, "no request over the limit"
    assert len(emulator.requests) <= 300 // 20 + 1, "and requests are full"


@pytest.mark.slow
def test_429_resends_the_others_now_and_holds_the_throttled(emulator: AmplitudeEmulator) -> None:
    emulator.eps_threshold = 50
    emulator.throttle_window = 0.2  # 10 events per device per 0.2 s
    events = [event(i, device_id="device-hot-1", user_id=None) for i in range(25)]
    events += [event(100 + i) for i in range(10)]
    with make_client(emulator, throttle_wait=0.25) as client:
        started = time.monotonic()
        result = client.send(events)
        elapsed = time.monotonic() - started
    assert result.all_delivered
    assert elapsed >= 0.25 * 2, "throttled events waited before each resend"
    first_ok = next(r for r in emulator.requests if r.status == 200)
    assert first_ok.events == 20, "the 10 that fit and the 10 other events went at once"
    assert_exactly_once(emulator, events, set())


def test_429_beyond_the_deadline_comes_back_as_retry_later(emulator: AmplitudeEmulator) -> None:
    emulator.eps_threshold = 10
    emulator.throttle_window = 1.0
    events = [event(i, device_id="device-hot-2", user_id=None) for i in range(15)]
    with make_client(emulator, throttle_wait=30.0) as client:
        started = time.monotonic()
        result = client.send(events, deadline=2.0)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5, "it does not sit out a 30 s hold it cannot finish"
    assert len(result.delivered) == 10
    assert {result[i].code for i in result.retry_later} == {"throttled"}
    assert len(result.retry_later) == 5


def test_daily_quota_comes_back_as_retry_later_without_waiting(emulator: AmplitudeEmulator) -> None:
    emulator.daily_quota = 3
    events = [event(i, device_id="device-quota-1", user_id=None) for i in range(5)]
    with make_client(emulator, throttle_wait=30.0) as client:
        started = time.monotonic()
        result = client.send(events)
        assert time.monotonic() - started < 2
    assert len(result.delivered) == 3
    assert {result[i].code for i in result.retry_later} == {"daily_quota"}


@pytest.mark.parametrize("trigger", ["wrong_key", "403"])
def test_configuration_errors_keep_events_and_log_loudly_without_the_key(
    emulator: AmplitudeEmulator, trigger: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = API_KEY if trigger == "403" else "amp-wrong-key-0c1d2e3f4a"
    if trigger == "403":
        emulator.inject("403")
    events, _ = make_batch(4000, invalid=False)
    caplog.set_level(logging.DEBUG, logger="segment_exposure")
    with AmplitudeClient(key, endpoint=emulator.http_api_url, **FAST) as client:
        result = client.send(events)
        text = repr(client) + str(client)
    assert result.counts() == {"delivered": 0, "rejected": 0, "retry_later": 4000}
    assert {o.code for o in result} == {"configuration"}
    assert len(emulator.requests) == 1, "no point hammering Amplitude with a bad configuration"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "a configuration error is reported loudly"
    everything = text + " ".join(r.getMessage() for r in caplog.records) + " ".join(o.reason for o in result)
    assert key not in everything
    assert "***" in text


def test_5xx_until_attempts_run_out_keeps_everything(emulator: AmplitudeEmulator) -> None:
    emulator.inject("503", count=None)
    events, _ = make_batch(4000, invalid=False)
    with make_client(emulator, max_attempts=3) as client:
        result = client.send(events)
        assert result.counts()["retry_later"] == 4000
        assert len(emulator.requests) == 3, "one request retried 3 times, the rest not attempted"
        assert {o.code for o in result} == {"unavailable"}
        emulator.clear_faults()
        again = client.send(events)
    assert again.all_delivered
    assert_exactly_once(emulator, events, set())


def test_connection_refused_is_retry_later() -> None:
    server = AmplitudeEmulator().start()
    url = server.http_api_url
    server.stop()
    with AmplitudeClient(API_KEY, endpoint=url, **{**FAST, "max_attempts": 2}) as client:
        result = client.send([event(1)])
    assert result[0].status is Status.RETRY_LATER
    assert result[0].code == "network"


@pytest.mark.slow
def test_slow_server_and_a_deadline(emulator: AmplitudeEmulator) -> None:
    emulator.inject("slow", count=None, delay=1.0)
    events, _ = make_batch(1000, invalid=False)
    with make_client(emulator) as client:
        started = time.monotonic()
        result = client.send(events, deadline=0.5)
        elapsed = time.monotonic() - started
        assert elapsed < 0.9
        assert result.counts()["retry_later"] == 1000
        assert {o.code for o in result} <= {"deadline", "timeout"}
        emulator.clear_faults()
        again = client.send(events)
    assert again.all_delivered
    assert emulator.wait_for_requests(2, timeout=5), "the slow request finished and ingested late"
    assert emulator.duplicates_dropped == 1000, "the late copy was dropped as a duplicate"
    assert_exactly_once(emulator, events, set())


def test_close_interrupts_a_throttle_hold(emulator: AmplitudeEmulator) -> None:
    emulator.inject("429")
    client = make_client(emulator, throttle_wait=5.0)
    results: list[DeliveryResult] = []
    thread = threading.Thread(target=lambda: results.append(client.send([event(1)], deadline=10)))
    thread.start()
    assert emulator.wait_for_requests(1, timeout=5)
    started = time.monotonic()
    client.close()
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1
    assert results[0][0].status is Status.RETRY_LATER
    assert results[0][0].code in {"closed", "throttled"}


# -- encoding, pooling, endpoints ---------------------------------------------------------------------


def test_events_that_are_not_json_are_rejected_alone(emulator: AmplitudeEmulator) -> None:
    events: list[Any] = [
        event(0),
        event(1, price=math.nan),
        event(2, user_properties={"o": object()}),
        event(3),
    ]
    with make_client(emulator) as client:
        result = client.send(events)
    assert result.delivered == [0, 3]
    assert {result[1].code, result[2].code} == {"not_json"}


def test_connections_are_pooled(emulator: AmplitudeEmulator) -> None:
    with make_client(emulator) as client:
        for i in range(5):
            assert client.send([event(i)]).all_delivered
    assert len({r.client_port for r in emulator.requests}) == 1


def test_gzip(emulator: AmplitudeEmulator) -> None:
    events, _ = make_batch(500, invalid=False)
    with make_client(emulator, gzip=True) as client:
        assert client.send(events).all_delivered
    assert all(r.gzip for r in emulator.requests)
    assert_exactly_once(emulator, events, set())


def test_batch_api(emulator: AmplitudeEmulator) -> None:
    events, bad = make_batch(4000)
    with make_client(emulator, endpoint=emulator.batch_url) as client:
        assert client.api == "batch"
        assert client.limits.max_bytes == 20_000_000
        rejected, _ = settle(client, events)
    assert set(rejected) == set(bad)
    assert {r.path for r in emulator.requests} == {"/batch"}
    assert_exactly_once(emulator, events, set(bad))


def test_min_id_length_is_sent_as_an_option(emulator: AmplitudeEmulator) -> None:
    events = [event(0, user_id="abc", device_id=None), event(1, user_id="ab", device_id=None)]
    with make_client(emulator, min_id_length=3) as client:
        result = client.send(events)
    assert result.delivered == [0]
    assert result[1].code == "invalid_id"


@pytest.mark.parametrize(
    ("region", "api", "url"),
    [
        ("US", "http", "https://api2.amplitude.com/2/httpapi"),
        ("US", "batch", "https://api2.amplitude.com/batch"),
        ("eu", "http", "https://api.eu.amplitude.com/2/httpapi"),
        ("EU", "batch", "https://api.eu.amplitude.com/batch"),
    ],
)
def test_endpoints_come_from_configuration(region: str, api: Any, url: str) -> None:
    client = AmplitudeClient(API_KEY, region=region, api=api)
    assert client.endpoint == url == ENDPOINTS[(region.upper(), api)]
    client.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"region": "APAC"},
        {"api": "grpc"},
        {"endpoint": "api2.amplitude.com/2/httpapi"},
        {"min_id_length": 0},
        {"max_attempts": 0},
    ],
)
def test_bad_configuration_is_refused_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as raised:
        AmplitudeClient(API_KEY, **kwargs)
    assert API_KEY not in str(raised.value)


def test_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        AmplitudeClient("")


def test_repr_redacts_the_key_and_endpoint_credentials() -> None:
    client = AmplitudeClient(API_KEY, endpoint="https://user:secret@proxy.example/2/httpapi")
    assert API_KEY not in repr(client)
    assert "secret" not in repr(client)
    client.close()


def test_empty_send() -> None:
    with AmplitudeClient(API_KEY) as client:
        result = client.send([])
    assert len(result) == 0
    assert result.requests == 0


# -- the emulator's own contract ------------------------------------------------------------------------


def post(url: str, body: Any, **kwargs: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=5, **kwargs)


def test_emulator_validates_in_the_documented_order(emulator: AmplitudeEmulator) -> None:
    url = emulator.http_api_url
    assert post(url, b"{not json").json()["error"] == "Invalid JSON request body"
    assert post(url, {"events": [event(1)]}).json()["missing_field"] == "api_key"
    answer = post(url, {"api_key": "nope-key", "events": [event(1)]}).json()
    assert answer == {"code": 400, "error": "Invalid API key: nope-key"}
    assert post(url, {"api_key": API_KEY}).json()["missing_field"] == "events"
    assert post(url, {"api_key": API_KEY, "events": []}).json()["missing_field"] == "events"
    too_many = post(url, {"api_key": API_KEY, "events": [event(i) for i in range(2001)]})
    assert too_many.status_code == 413
    big = post(url, {"api_key": API_KEY, "events": [event(1, event_properties={"x": "y" * 1_000_000})]})
    assert big.status_code == 413
    bad = post(url, {"api_key": API_KEY, "events": [event(0), event(1, time=1.5, user_id="NULL"), {}, "x"]})
    assert bad.status_code == 400
    maps = bad.json()
    assert maps["events_with_invalid_fields"] == {"user_id": [1], "time": [1], "event": [3]}
    assert maps["events_with_missing_fields"] == {"event_type": [2], "user_id or device_id": [2]}
    short = post(url, {"api_key": API_KEY, "events": [event(0, user_id="abcd")]})
    assert short.json()["events_with_invalid_id_lengths"] == {"user_id": [0]}
    allowed = post(
        url, {"api_key": API_KEY, "events": [event(0, user_id="abcd")], "options": {"min_id_length": 4}}
    )
    assert allowed.status_code == 200
    assert allowed.json()["events_ingested"] == 1
    assert (
        post(url, {"api_key": API_KEY, "events": [event(1)], "options": {"min_id_length": "3"}}).status_code
        == 400
    )
    assert emulator.ingested_count == 1, "nothing from refused requests was ingested"
    assert requests.get(emulator.url + "/2/httpapi", timeout=5).status_code == 404
    assert post(emulator.url + "/elsewhere", {"api_key": API_KEY}).status_code == 404


def test_emulator_gzip_and_batch(emulator: AmplitudeEmulator) -> None:
    body = gzip.compress(json.dumps({"api_key": API_KEY, "events": [event(1)]}).encode())
    answer = requests.post(emulator.batch_url, data=body, headers={"Content-Encoding": "gzip"}, timeout=5)
    assert answer.json()["code"] == 200
    bad = requests.post(emulator.batch_url, data=b"nope", headers={"Content-Encoding": "gzip"}, timeout=5)
    assert bad.status_code == 400


def test_emulator_dedupes_on_insert_id_and_device_id(emulator: AmplitudeEmulator) -> None:
    url = emulator.http_api_url
    same = event(1)
    other_device = event(1, device_id="device-other")
    no_insert_id = event(2, insert_id=None)
    for _ in range(2):
        assert (
            post(url, {"api_key": API_KEY, "events": [same, other_device, no_insert_id]}).status_code == 200
        )
    assert emulator.ingested_count == 4
    assert emulator.duplicates_dropped == 2


def test_emulator_throttles_per_id_in_a_sliding_window(emulator: AmplitudeEmulator) -> None:
    emulator.eps_threshold = 3
    url = emulator.http_api_url
    hot = [event(i, device_id="device-hot", user_id=None) for i in range(5)]
    answer = post(url, {"api_key": API_KEY, "events": [*hot, event(9)]})
    assert answer.status_code == 429
    body = answer.json()
    assert body["throttled_events"] == [3, 4]
    assert body["throttled_devices"] == {"device-hot": 4}
    assert body["eps_threshold"] == 3
    assert emulator.ingested_count == 0


def test_emulator_faults_and_schedule(emulator: AmplitudeEmulator) -> None:
    url = emulator.http_api_url
    good = {"api_key": API_KEY, "events": [event(1)]}
    emulator.schedule([None, "503", "non_json"])
    assert emulator.pending_faults == 3
    assert post(url, good).status_code == 200
    assert post(url, good).status_code == 503
    html = post(url, good)
    assert html.status_code == 200
    assert html.headers["Content-Type"].startswith("text/html")
    emulator.inject("reset")
    with pytest.raises(requests.ConnectionError):
        post(url, good)
    assert [r.status for r in emulator.requests] == [200, 503, 200, 0]
    assert emulator.duplicates_dropped == 1
    with pytest.raises(ValueError, match="unknown fault"):
        emulator.inject("boom")
    emulator.inject("503", count=None)
    assert emulator.pending_faults is None
    assert post(url, good).status_code == 503
    assert post(url, good).status_code == 503
    emulator.clear_faults()
    assert post(url, good).status_code == 200


def test_emulator_waits_with_a_deadline(emulator: AmplitudeEmulator) -> None:
    started = time.monotonic()
    assert emulator.wait_for_ingested(1, timeout=0.1) is False
    assert time.monotonic() - started < 1
    emulator.reset()
    assert "ingested=0" in repr(emulator)
