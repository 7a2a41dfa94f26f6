"""The provider against the real segment-analytics-python client and a local collector over HTTP."""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from amplitude_experiment import User
from segment.analytics import Client

from segment_exposure import (
    Exposure,
    InMemorySegmentClient,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    bind_user,
    capture_exposures,
)
from segment_exposure.tracking.message_id import MESSAGE_ID_PREFIX
from segment_exposure.tracking.segment_check import check_internals

from .conftest import WRITE_KEY, wait_until

FULL_USER = User(
    user_id="alice-0001",
    device_id="device-abc-123",
    ip_address="203.0.113.7",
    language="en-US",
    os="iOS 17.1",
    platform="iOS",
    device_brand="Apple",
    device_manufacturer="Apple",
    device_model="iPhone15,2",
    version="4.2.0",
    country="US",
    region="CA",
    city="San Francisco",
    carrier="T-Mobile",
    user_properties={"plan": "pro"},
)


def test_shape_and_identity_field_by_field(collector: SegmentCollector, make_provider: Any) -> None:
    provider = make_provider()
    before = time.time()
    assert provider.track(Exposure("checkout", "treatment", "exp-1"), FULL_USER) is True
    assert provider.flush(10) is True
    [msg] = collector.events()
    assert msg["type"] == "track"
    assert msg["event"] == "$exposure"
    assert msg["userId"] == "alice-0001"
    assert msg["anonymousId"] == "device-abc-123"
    assert msg["properties"] == {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"}
    ctx = msg["context"]
    assert ctx["ip"] == "203.0.113.7"
    assert ctx["locale"] == "en-US"
    assert ctx["os"] == {"name": "iOS 17.1"}
    assert ctx["device"] == {"type": "iOS", "brand": "Apple", "manufacturer": "Apple", "model": "iPhone15,2"}
    assert "id" not in ctx["device"]  # only the Experiment device_id may identify the device: anonymousId
    assert ctx["app"] == {"version": "4.2.0"}
    assert ctx["location"] == {"country": "US", "region": "CA", "city": "San Francisco"}
    assert ctx["network"] == {"carrier": "T-Mobile"}
    assert ctx["library"]["name"] == "analytics-python"
    assert "traits" not in ctx and "plan" not in str(msg)  # user properties are not exposure data
    sent = datetime.fromisoformat(msg["timestamp"])
    assert sent.utcoffset() is not None and sent.utcoffset().total_seconds() == 0  # aware UTC
    assert before - 0.01 <= sent.timestamp() <= time.time() + 0.01
    assert msg["messageId"].startswith(MESSAGE_ID_PREFIX) and len(msg["messageId"]) <= 100
    assert "alice" not in msg["messageId"] and "device" not in msg["messageId"]


def test_unset_variant_and_optional_fields_are_left_out(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider()
    assert provider.track(Exposure("checkout"), {"device_id": "device-only-1"})
    assert provider.flush(10)
    [msg] = collector.events()
    assert msg["properties"] == {"flag_key": "checkout"}
    assert msg["anonymousId"] == "device-only-1"
    assert msg.get("userId") is None
    assert set(msg["context"]) == {"library"}


def test_metadata_only_when_opted_in(collector: SegmentCollector, make_provider: Any) -> None:
    meta = {"flagVersion": 3, "segmentName": "All Other Users"}
    plain = make_provider()
    plain.track(Exposure("f1", "on", metadata=meta), {"user_id": "user-00001"})
    opted = make_provider(include_metadata=True)
    opted.track(Exposure("f2", "on", metadata=meta), {"user_id": "user-00001"})
    assert plain.flush(10) and opted.flush(10)
    by_flag = {m["properties"]["flag_key"]: m for m in collector.events()}
    assert "metadata" not in by_flag["f1"]["properties"]
    assert by_flag["f2"]["properties"]["metadata"] == meta


def test_repeat_is_deduplicated_and_variant_change_is_sent(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider()
    user = {"user_id": "user-00042", "device_id": "device-00042"}
    results = [provider.track(Exposure("flag", v, "exp"), user) for v in ["A", "A", "B", "B", "A", "A"]]
    assert results == [True] * 6
    assert provider.flush(10)
    events = collector.events()
    assert [m["properties"]["variant"] for m in events] == ["A", "B", "A"]
    assert len({m["messageId"] for m in events}) == 3
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in events]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # Amplitude applies them in time order
    stats = provider.stats()
    assert (stats["tracked"], stats["deduplicated"], stats["delivered"]) == (3, 3, 3)


def test_dedupe_is_per_identity_flag_and_experiment(collector: SegmentCollector, make_provider: Any) -> None:
    provider = make_provider()
    provider.track(Exposure("flag", "A"), {"user_id": "user-00001"})
    provider.track(Exposure("flag", "A"), {"user_id": "user-00002"})
    provider.track(Exposure("other", "A"), {"user_id": "user-00001"})
    provider.track(Exposure("flag", "A", "exp-2"), {"user_id": "user-00001"})
    provider.track(Exposure("flag", "A"), {"user_id": "user-00001", "device_id": "device-1"})
    provider.track(Exposure("flag", "A"), {"user_id": "user-00001"})  # the only repeat
    assert provider.flush(10)
    assert len(collector.events()) == 5
    assert provider.stats()["deduplicated"] == 1


def test_dedupe_window_expiry_sends_again_with_a_new_id(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider(dedupe_ttl=0.2)
    user = {"user_id": "user-00077"}
    provider.track(Exposure("flag", "A"), user)
    window = int(time.time() // 0.2)
    assert wait_until(lambda: int(time.time() // 0.2) != window, timeout=2)
    provider.track(Exposure("flag", "A"), user)
    assert provider.flush(10)
    events = collector.events()
    assert len(events) == 2 and events[0]["messageId"] != events[1]["messageId"]


def test_dedupe_capacity_is_bounded(make_provider: Any) -> None:
    provider = make_provider(dedupe_capacity=100)
    for i in range(250):
        provider.track(Exposure("flag", "A"), {"user_id": f"user-{i:05d}"})
    stats = provider.stats()
    assert stats["dedupe_entries"] == 100 and stats["dedupe_evictions"] == 150


def test_bound_user_is_used_when_no_user_is_passed(collector: SegmentCollector, make_provider: Any) -> None:
    provider = make_provider()
    with bind_user(User(user_id="bound-user-1", device_id="bound-device-1")):
        assert provider.track(Exposure("flag", "on"))
    assert provider.track(Exposure("flag", "on")) is False  # nothing bound any more
    assert provider.flush(10)
    [msg] = collector.events()
    assert (msg["userId"], msg["anonymousId"]) == ("bound-user-1", "bound-device-1")
    assert provider.stats()["dropped"]["no_identity"] == 1


class _Exploding:
    @property
    def user_id(self) -> str:
        raise RuntimeError("boom")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("exposure", "user", "reason"),
    [
        (Exposure("f", "a"), None, "no_identity"),
        (Exposure("f", "a"), {}, "no_identity"),
        (Exposure("f", "a"), {"user_id": "", "device_id": ""}, "no_identity"),
        (Exposure("f", "a"), {"user_id": "   "}, "no_identity"),
        (Exposure("f", "a"), {"user_id": None, "device_id": 3.5}, "no_identity"),
        (Exposure("f", "a"), User(), "no_identity"),
        ({"flag_key": "f"}, {"user_id": "user-1"}, "invalid"),
        ("f", {"user_id": "user-1"}, "invalid"),
        (None, {"user_id": "user-1"}, "invalid"),
        (Exposure("f", "a" * 40_000), {"user_id": "user-1"}, "too_large"),
        (Exposure("f", "a"), {"user_id": "u" * 40_000}, "too_large"),
        (Exposure("f", "a"), _Exploding(), "error"),
    ],
)
def test_bad_input_returns_false_and_is_counted(
    make_provider: Any, exposure: Any, user: Any, reason: str
) -> None:
    provider = make_provider()
    assert provider.track(exposure, user) is False
    stats = provider.stats()
    assert stats["dropped"][reason] == 1
    assert stats["dropped_total"] == 1 and stats["tracked"] == 0


def test_exposure_with_types_forced_past_validation_is_invalid(make_provider: Any) -> None:
    provider = make_provider()
    cases = [("flag_key", ""), ("flag_key", 5), ("variant", 1), ("variant", ""), ("experiment_key", ["x"])]
    for field, value in cases:
        exposure = Exposure("f", "a")
        object.__setattr__(exposure, field, value)
        assert provider.track(exposure, {"user_id": "user-1"}) is False
    assert provider.stats()["dropped"]["invalid"] == 5


def test_exposure_validates_at_construction() -> None:
    with pytest.raises(ValueError, match="flag_key"):
        Exposure("")
    with pytest.raises(ValueError, match="variant"):
        Exposure("f", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="variant"):
        Exposure("f", "")  # an empty key is neither a variant nor an unset: Amplitude rejects it
    with pytest.raises(ValueError, match="metadata"):
        Exposure("f", "a", metadata=[1])  # type: ignore[arg-type]


def test_integer_and_uuid_ids_are_accepted_as_strings(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider()
    assert provider.track(Exposure("f", "a"), {"user_id": 123456})
    assert provider.track(Exposure("f", "a"), {"user_id": uuid.UUID(int=7)})
    assert provider.flush(10)
    assert [m["userId"] for m in collector.events()] == ["123456", str(uuid.UUID(int=7))]


def test_rejected_batch_is_counted_and_logged_without_the_write_key(
    collector: SegmentCollector, make_provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = make_provider()
    collector.fail(400, count=1)  # not retried by Segment's client: it calls on_error
    with caplog.at_level(logging.DEBUG):
        provider.track(Exposure("f", "a"), {"user_id": "user-00001"})
        assert provider.flush(10) is False
    stats = provider.stats()
    assert stats["dropped"]["delivery_failed"] == 1 and stats["delivered"] == 0
    assert any("gave up delivering 1 exposure" in r.getMessage() for r in caplog.records)
    assert all(WRITE_KEY not in r.getMessage() for r in caplog.records)
    assert WRITE_KEY not in caplog.text
    # The consumer thread survived: the next exposure is delivered.
    provider.track(Exposure("f", "b"), {"user_id": "user-00001"})
    assert provider.flush(10) is True
    assert [m["properties"]["variant"] for m in collector.events()] == ["b"]


@pytest.mark.skipif(
    not check_internals().consumer_hooks,
    reason="guarding a client you pass needs Segment's consumer hooks (public-API fallback in use)",
)
def test_raising_on_error_of_a_wrapped_client_cannot_kill_the_consumer(collector: SegmentCollector) -> None:
    seen: list[int] = []

    def on_error(exc: Exception, batch: list[Any]) -> None:
        seen.append(len(batch))
        raise ValueError("user callback bug")

    client = Client(WRITE_KEY, host=collector.url, on_error=on_error, upload_interval=0.05)
    provider = SegmentExposureTrackingProvider(analytics=client)
    try:
        collector.fail(400, count=1)
        provider.track(Exposure("f", "a"), {"user_id": "user-00001"})
        assert provider.flush(10) is False
        assert seen == [1]  # the user's callback still runs
        assert all(c.is_alive() for c in client.consumers)
        provider.track(Exposure("f", "b"), {"user_id": "user-00001"})
        assert provider.flush(10) is True
        assert len(collector.events()) == 1
        assert provider.stats()["dropped"]["delivery_failed"] == 1
    finally:
        provider.shutdown(5)
        client.shutdown()


@pytest.mark.slow
def test_outage_track_stays_fast_and_everything_is_delivered_after_recovery(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider()
    # A Segment that hangs 4 s on every request: a track() that waited on the network even once would
    # take that long, so the bound below (half of it) tells waiting from not waiting, under any load.
    hang = 4.0
    collector.slow(hang, count=None)
    slowest = 0.0
    for i in range(300):
        start = time.perf_counter()
        assert provider.track(Exposure("flag", "on"), {"user_id": f"user-{i:05d}"})
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < hang / 2, slowest
    assert provider.flush(0.5) is False  # bounded while Segment hangs
    collector.up()
    assert provider.flush(30) is True
    assert len(collector.events()) == 300
    stats = provider.stats()
    assert stats["delivered"] == 300 and stats["dropped_total"] == 0


def test_outage_with_overflow_counts_exactly_what_was_dropped(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider(max_queue_size=20, client_options={"max_queue_size": 20})
    collector.down()
    accepted = sum(provider.track(Exposure("flag", "on"), {"user_id": f"user-{i:05d}"}) for i in range(500))
    stats = provider.stats()
    assert stats["dropped"]["queue_full"] == 500 - accepted > 0
    collector.up()
    assert provider.flush(30) is True
    assert len(collector.events()) == accepted == provider.stats()["delivered"]


@pytest.mark.slow
def test_shutdown_is_bounded_and_counts_what_it_leaves(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider()
    collector.down()
    for i in range(50):
        provider.track(Exposure("flag", "on"), {"user_id": f"user-{i:05d}"})
    start = time.monotonic()
    assert provider.shutdown(1.0) is False
    assert time.monotonic() - start < 3.0
    stats = provider.stats()
    assert stats["delivered"] == 0
    assert stats["dropped"]["shutdown"] == 50  # every one accounted for, none silently lost
    assert provider.track(Exposure("flag", "on"), {"user_id": "late-user-1"}) is False
    assert provider.stats()["dropped"]["shutdown"] == stats["dropped"]["shutdown"] + 1


@pytest.mark.slow
def test_many_threads_nothing_lost_nothing_duplicated(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider(client_options={"upload_size": 100})
    threads, users, repeats = 8, 250, 3

    def work(t: int) -> None:
        for _ in range(repeats):
            for i in range(users):
                # Every thread touches every user: the same exposures race across threads.
                provider.track(Exposure("flag", "on" if i % 2 else "off"), {"user_id": f"user-{i:05d}"})
                provider.track(Exposure(f"flag-{t}", "on"), {"user_id": f"user-{i:05d}"})

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert provider.flush(30)
    expected = users + threads * users
    events = collector.events()
    assert len(events) == expected
    assert len(collector.messages) == expected  # not just unique: nothing was sent twice
    stats = provider.stats()
    assert stats["tracked"] == stats["delivered"] == expected
    assert stats["deduplicated"] == threads * repeats * users * 2 - expected


def test_capture_exposures_and_in_memory_client() -> None:
    client = InMemorySegmentClient()
    provider = SegmentExposureTrackingProvider(analytics=client)
    try:
        with capture_exposures() as captured:
            provider.track(Exposure("flag", "on", "exp"), {"user_id": "user-00001"})
            provider.track(Exposure("flag", "on", "exp"), {"user_id": "user-00001"})
        provider.track(Exposure("flag", "off", "exp"), {"user_id": "user-00001"})
        assert captured.properties() == [{"flag_key": "flag", "variant": "on", "experiment_key": "exp"}]
        assert provider.flush(5)
        assert [m["properties"]["variant"] for m in client.messages] == ["on", "off"]
        assert provider.stats()["delivered"] == 2
    finally:
        provider.shutdown(1)


def test_exposures_fixture_is_registered(exposures: Any) -> None:
    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
    try:
        provider.track(Exposure("flag", "on"), {"device_id": "device-0001"})
        assert len(exposures) == 1
        assert exposures.for_flag("flag")[0]["anonymous_id"] == "device-0001"
    finally:
        provider.shutdown(1)


def test_secrets_stay_out_of_reprs_and_segment_logs(
    collector: SegmentCollector, make_provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = make_provider()
    assert WRITE_KEY not in repr(provider)
    with caplog.at_level(logging.DEBUG, logger="segment"):
        provider.track(Exposure("f", "a"), {"user_id": "user-00001"})
        assert provider.flush(10)
    assert any("making request" in r.getMessage() for r in caplog.records)  # Segment logs the body...
    assert WRITE_KEY not in caplog.text  # ...with the write key redacted


def test_constructor_rejects_bad_configuration(collector: SegmentCollector) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SegmentExposureTrackingProvider()
    with pytest.raises(ValueError, match="exactly one"):
        SegmentExposureTrackingProvider("wk", analytics=InMemorySegmentClient())
    with pytest.raises(ValueError, match="sync_mode"):
        SegmentExposureTrackingProvider("wk", client_options={"sync_mode": True})
    with pytest.raises(ValueError, match="thread"):
        SegmentExposureTrackingProvider("wk", client_options={"thread": 2})


def test_direct_enqueue_queues_exactly_what_client_track_would() -> None:
    """The provider skips Client.track() on its worker thread; the message must not change because of it."""
    from segment_exposure.tracking import segment_client

    provider = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient(), include_metadata=True)
    try:
        with capture_exposures() as captured:
            provider.track(Exposure("flag", "on", "exp", metadata={"flagVersion": 2}), FULL_USER)
        [track_kwargs] = captured.messages
    finally:
        provider.shutdown(1)
    client = Client(WRITE_KEY, send=False)
    ok, expected = client.track(**copy.deepcopy(track_kwargs))
    assert ok
    assert segment_client.wire_message(copy.deepcopy(track_kwargs)) == expected
    assert segment_client.accepts_direct_enqueue(Client(WRITE_KEY, send=False)) is False
    assert segment_client.accepts_direct_enqueue(Client(WRITE_KEY, sync_mode=True)) is False
    assert segment_client.accepts_direct_enqueue(InMemorySegmentClient()) is False


def test_oversized_user_context_is_counted_off_the_callers_thread(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider()
    huge = User(user_id="user-00001", city="x" * 40_000)
    assert provider.track(Exposure("flag", "on"), huge) is True  # the context is sized on the worker
    provider.track(Exposure("flag", "on"), {"user_id": "user-00002"})
    assert provider.flush(10)
    stats = provider.stats()
    assert stats["dropped"]["too_large"] == 1 and stats["delivered"] == 1
    assert [m["userId"] for m in collector.events()] == ["user-00002"]


def test_oversized_opted_in_metadata_is_counted_off_the_callers_thread(
    collector: SegmentCollector, make_provider: Any
) -> None:
    provider = make_provider(include_metadata=True)
    assert provider.track(Exposure("flag", "on", metadata={"blob": "x" * 40_000}), {"user_id": "user-00001"})
    assert provider.flush(10)
    assert provider.stats()["dropped"]["too_large"] == 1
    assert collector.events() == []
