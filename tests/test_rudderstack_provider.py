"""The provider over RudderStack's client (rudder-sdk-python), against a local RudderStack data plane.

The same guarantees as with Segment's client: dedupe, deterministic message ids, every outcome counted,
the per-invocation flush, fork, the exit hook and SIGTERM; and RudderStack's own limits (4000 KiB per
request at the data plane, where Segment takes 32 KB per message). Real client, real HTTP, 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from segment_exposure import (
    Exposure,
    RudderStackCollector,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    flush_after,
)
from segment_exposure.integrations._common import build_provider, check_options
from segment_exposure.tracking import segment_check, segment_client
from segment_exposure.tracking.rudderstack_client import RUDDERSTACK, RUDDERSTACK_MAX_REQUEST_BYTES
from segment_exposure.tracking.segment_check import FORCE_PUBLIC_API_ENV

from .test_provider_processes import FORK, TRACK_N, assert_sigterm_delivers_everything, run_python

analytics = pytest.importorskip("rudderstack.analytics", reason="the rudderstack extra is not installed")

WRITE_KEY = "rudder-write-key-8c1d"
EXPOSURE = Exposure("checkout", "treatment", "exp-1")
FORCED = os.environ.get(FORCE_PUBLIC_API_ENV, "") not in ("", "0")


@pytest.fixture
def collector() -> Iterator[RudderStackCollector]:
    with RudderStackCollector(WRITE_KEY) as server:
        yield server


@pytest.fixture
def provider(collector: RudderStackCollector) -> Iterator[SegmentExposureTrackingProvider]:
    tracker = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, sdk="rudderstack", client_options={"upload_interval": 0.05}
    )
    yield tracker
    tracker.shutdown(5)


def test_sixty_exposures_tracked_twice_arrive_as_exactly_sixty(
    provider: SegmentExposureTrackingProvider, collector: RudderStackCollector
) -> None:
    for _ in range(2):
        for i in range(60):
            assert provider.track(EXPOSURE, {"user_id": f"user-{i:03d}"}) is True
    assert provider.flush(10) is True
    stats = provider.stats()
    assert (stats["tracked"], stats["deduplicated"], stats["delivered"]) == (60, 60, 60)
    assert stats["dropped_total"] == 0
    assert len(collector.messages) == 60  # not only 60 unique: nothing was posted twice
    assert sorted(m["userId"] for m in collector.events()) == [f"user-{i:03d}" for i in range(60)]
    assert collector.gzipped_requests == collector.requests > 0  # RudderStack's client gzips by default
    assert isinstance(provider.analytics, analytics.Client) and provider.sdk == "rudderstack"


def test_a_message_is_what_rudderstacks_client_would_send_with_segments_message_id(
    provider: SegmentExposureTrackingProvider, collector: RudderStackCollector
) -> None:
    user = {"user_id": "user-1", "device_id": "device-1"}
    provider.track(EXPOSURE, user)
    assert provider.flush(10)
    [sent] = collector.events()
    with SegmentCollector(WRITE_KEY) as segment:
        twin = SegmentExposureTrackingProvider(WRITE_KEY, host=segment.url)
        twin.track(EXPOSURE, user)
        assert twin.flush(10)
        twin.shutdown(5)
        [segments] = segment.events()
    # The same exposure, write key and window: the same deterministic id through either SDK.
    assert sent["messageId"] == segments["messageId"]
    assert sent["properties"] == segments["properties"]
    assert (sent["userId"], sent["anonymousId"]) == ("user-1", "device-1")
    # RudderStack's own fields, as its Client.track() sets them.
    assert sent["channel"] == "server" and sent["integrations"] == {"All": True}
    assert sent["context"]["library"] == {"name": "analytics-python", "version": analytics.VERSION}


def test_a_rudderstack_client_passed_in_is_recognised(collector: RudderStackCollector) -> None:
    errors: list[Any] = []
    client = analytics.Client(
        WRITE_KEY, host=collector.url, upload_interval=0.05, on_error=lambda e, b: errors.append(e)
    )
    tracker = SegmentExposureTrackingProvider(analytics=client)
    try:
        assert tracker.sdk == "rudderstack" and tracker.analytics is client
        for i in range(10):
            tracker.track(EXPOSURE, {"user_id": f"user-{i}"})
        assert tracker.flush(10)
        assert tracker.stats()["delivered"] == 10
        assert len(collector.events()) == 10 and errors == []
    finally:
        tracker.shutdown(5)
        client.shutdown()


def test_choosing_an_sdk_wrongly_is_a_clear_error(collector: RudderStackCollector) -> None:
    with pytest.raises(ValueError, match="sdk must be one of 'segment', 'rudderstack', not 'mparticle'"):
        SegmentExposureTrackingProvider(WRITE_KEY, host=collector.url, sdk="mparticle")
    with pytest.raises(ValueError, match="RudderStack needs host="):
        SegmentExposureTrackingProvider(WRITE_KEY, sdk="rudderstack")
    client = analytics.Client(WRITE_KEY, host=collector.url, send=False)
    with pytest.raises(ValueError, match="sdk='segment' but analytics= is RudderStack's client"):
        SegmentExposureTrackingProvider(analytics=client, sdk="segment")
    from segment.analytics import Client

    segments = Client(WRITE_KEY, send=False)
    with pytest.raises(ValueError, match="sdk='rudderstack' but analytics= is Segment's client"):
        SegmentExposureTrackingProvider(analytics=segments, sdk="rudderstack")
    with pytest.raises(ValueError, match="no OAuth options"):
        SegmentExposureTrackingProvider(
            WRITE_KEY, host=collector.url, sdk="rudderstack", client_options={"oauth_client_id": "x"}
        )


def test_the_self_check_holds_for_the_installed_rudderstack_client() -> None:
    """What the provider relies on inside rudder-sdk-python (the same checks as for Segment's client):
    the hand-built wire message equals what its ``Client.track()`` queues, its consumers can be hooked,
    its queue has the conditions, and its HTTP session is a module global that a fork can replace."""
    internals = segment_check._probe(RUDDERSTACK)
    assert internals.missing == ()
    assert internals.direct_enqueue and internals.consumer_hooks and internals.revive_in_place


def test_the_self_check_notices_a_wire_message_that_drifted(monkeypatch: pytest.MonkeyPatch) -> None:
    real = RUDDERSTACK.wire_message

    def drifted(track: dict[str, Any]) -> dict[str, Any]:
        return {**real(track), "channel": "sources"}

    monkeypatch.setattr(RUDDERSTACK, "wire_message", drifted)
    internals = segment_check._probe(RUDDERSTACK)
    assert not internals.direct_enqueue
    assert internals.missing == ("the hand-built wire message (it differs from what Client.track() queues)",)


def big(metadata_bytes: int) -> Exposure:
    return Exposure("checkout", "treatment", "exp-1", metadata={"pad": "x" * metadata_bytes})


def test_rudderstacks_limits_apply_not_segments(collector: RudderStackCollector) -> None:
    tracker = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, sdk="rudderstack", include_metadata=True
    )
    try:
        # 100 KB: three times Segment's 32 KB message limit, far under RudderStack's.
        assert tracker.track(big(100_000), {"user_id": "user-big"}) is True
        # Over the data plane's 4000 KiB request limit: set aside before it leaves, and counted.
        tracker.track(big(RUDDERSTACK_MAX_REQUEST_BYTES), {"user_id": "user-huge"})
        tracker.flush(10)
        stats = tracker.stats()
        assert stats["delivered"] == 1 and stats["dropped"]["too_large"] == 1
        assert [m["userId"] for m in collector.events()] == ["user-big"]
        assert collector.rejected == []  # nothing reached the data plane only to be refused
    finally:
        tracker.shutdown(5)
    with SegmentCollector(WRITE_KEY) as segment:
        twin = SegmentExposureTrackingProvider(WRITE_KEY, host=segment.url, include_metadata=True)
        twin.track(big(100_000), {"user_id": "user-big"})  # metadata is sized on the worker thread
        twin.flush(10)
        assert twin.stats()["dropped"]["too_large"] == 1 and segment.events() == []
        twin.shutdown(5)


@pytest.mark.skipif(FORCED, reason="splitting a batch hooks the SDK's consumer (internals)")
def test_a_batch_over_the_data_planes_limit_is_split_not_refused(collector: RudderStackCollector) -> None:
    """RudderStack's consumer closes a batch only after crossing 4 MiB, which the data plane refuses
    (413, and the SDK drops the whole batch): the provider posts such a batch in parts."""
    tracker = SegmentExposureTrackingProvider(
        WRITE_KEY,
        host=collector.url,
        sdk="rudderstack",
        include_metadata=True,
        # Long enough for the consumer to gather all three into one batch of about 4.5 MB.
        client_options={"upload_interval": 2.0},
    )
    try:
        for i in range(3):
            tracker.track(big(1_500_000), {"user_id": f"user-{i}"})
        assert tracker.flush(20) is True
        stats = tracker.stats()
        assert stats["delivered"] == 3 and stats["dropped_total"] == 0
        assert collector.rejected == []
        assert collector.requests >= 2
        assert sorted(m["userId"] for m in collector.events()) == ["user-0", "user-1", "user-2"]
    finally:
        tracker.shutdown(5)


def test_split_batch_keeps_order_and_each_part_under_the_limit() -> None:
    batch = [{"n": i, "pad": "x" * 300} for i in range(10)]
    parts = segment_client.split_batch(batch, 1000)
    assert [m for part in parts for m in part] == batch
    assert all(sum(len(json.dumps(m)) + 1 for m in part) <= 1000 for part in parts)
    assert len(parts) == 4  # three ~320-byte messages fit in 1000 bytes
    assert segment_client.split_batch([{"pad": "x" * 5000}], 1000) == [[{"pad": "x" * 5000}]]


def test_a_refused_write_key_is_counted_as_delivery_failed(collector: RudderStackCollector) -> None:
    tracker = SegmentExposureTrackingProvider(
        "not-the-write-key", host=collector.url, sdk="rudderstack", client_options={"upload_interval": 0.05}
    )
    try:
        for i in range(5):
            tracker.track(EXPOSURE, {"user_id": f"user-{i}"})
        assert tracker.flush(10) is False
        stats = tracker.stats()
        assert stats["delivered"] == 0
        assert stats["dropped"]["delivery_failed"] == 5
        assert collector.events() == [] and collector.rejected
    finally:
        tracker.shutdown(5)


def test_the_per_invocation_flush_posts_before_the_handler_returns(collector: RudderStackCollector) -> None:
    tracker = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, sdk="rudderstack", flush_timeout=5
    )  # upload_interval stays 0.5 s: only the per-invocation flush can deliver in time

    @flush_after(tracker)
    def handler(event: dict[str, Any], context: object) -> int:
        for i in range(event["n"]):
            tracker.track(EXPOSURE, {"user_id": f"user-{event['call']}-{i}"})
        return event["n"]

    try:
        for call in range(3):
            before = collector.requests
            assert handler({"n": 5, "call": call}, None) == 5
            # Already delivered when the handler returned, in one request.
            assert len(collector.events()) == 5 * (call + 1)
            assert collector.requests == before + 1
        assert tracker.stats()["delivered"] == 15
    finally:
        tracker.shutdown(5)


def test_the_write_key_redactor_covers_rudderstacks_logger(provider: SegmentExposureTrackingProvider) -> None:
    filters = logging.getLogger("rudderstack").filters
    assert any(isinstance(f, segment_client.RedactingFilter) for f in filters)
    record = logging.LogRecord("rudderstack", logging.ERROR, __file__, 1, "key %s", (WRITE_KEY,), None)
    for f in filters:
        f.filter(record)
    assert WRITE_KEY not in record.getMessage()
    assert WRITE_KEY not in repr(provider)


def test_the_integrations_take_an_sdk_option(collector: RudderStackCollector) -> None:
    assert check_options({"WRITE_KEY": WRITE_KEY, "SDK": "rudderstack", "HOST": collector.url}, str) == []
    [problem] = check_options({"WRITE_KEY": WRITE_KEY, "SDK": "mparticle"}, str)
    assert problem.id == "segment_exposure.E003" and "SDK must be 'segment'" in problem.msg
    tracker, owned = build_provider({"WRITE_KEY": WRITE_KEY, "SDK": "rudderstack", "HOST": collector.url})
    try:
        assert owned and tracker.sdk == "rudderstack"
        tracker.track(EXPOSURE, {"user_id": "user-1"})
        assert tracker.flush(10) and len(collector.events()) == 1
    finally:
        tracker.shutdown(5)


# -- processes: fork, exit, SIGTERM (test_provider_processes.py's scripts, with RudderStack's client) -----


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_childs_and_the_parents_exposures_arrive_once_each(collector: RudderStackCollector) -> None:
    done = run_python(FORK, collector.url, WRITE_KEY, "rudderstack")
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    assert child["child_flushed"] is True and child["child_own_session"] is True
    assert child["child_stats"]["delivered"] == 100
    assert parent["parent_flushed"] is True and parent["child_status"] == 0
    events = collector.events()
    for variant, count in (("parent", 200), ("child", 100)):
        assert len([m for m in events if m["properties"]["variant"] == variant]) == count
    assert len(collector.messages) == 301  # warm-up + 200 + 100: nothing was sent twice


@pytest.mark.slow
def test_the_exit_hook_delivers_everything_queued(collector: RudderStackCollector) -> None:
    done = run_python(TRACK_N, collector.url, WRITE_KEY, "2000", "rudderstack")
    assert done.returncode == 0, done.stderr
    assert len(collector.events()) == 2000


@pytest.mark.slow
def test_sigterm_delivers_every_queued_exposure_within_the_deadline(collector: RudderStackCollector) -> None:
    assert_sigterm_delivers_everything(collector, WRITE_KEY, "rudderstack")
