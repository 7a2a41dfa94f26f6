"""The per-invocation flush's deadline is hard: whatever Segment does, the flush returns by it.

``requests`` bounds each connect and each read, not the exchange: a Segment that trickles its answer a
byte at a time held a 1 s flush for as long as it trickled. Real HTTP to the local collector, whose
``trickle`` and ``hang`` faults play the slow server; each test sets a deadline and measures the flush
against it. Run also with ``SEGMENT_EXPOSURE_FORCE_PUBLIC_API=1`` (the public-API fallback posts per
invocation through the same path).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3

from segment_exposure import (
    Exposure,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    flush_after,
    flush_each_request,
    flush_request,
)
from segment_exposure.tracking.hard_deadline import hard_deadline

from .conftest import WRITE_KEY, reused_collector, wait_until
from .serverless_runtime import LambdaContext

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

EXPOSURE = Exposure("checkout", "treatment", "exp-1")
#: What the README promises past the deadline: the timer's wake-up, the cut, counting and logging.
SLACK = 0.2
DEADLINE = 1.0
#: A trickle this slow would hold the flush 20 s (a byte every 0.1 s, 200 bytes) without the cut.
INTERVAL, SIZE = 0.1, 200
#: urllib3 2 checks a body against its Content-Length; urllib3 1.26 returns a cut body as complete.
ENFORCES_LENGTH = int(urllib3.__version__.split(".")[0]) >= 2


@pytest.fixture
def collector(module_collector: SegmentCollector) -> SegmentCollector:
    return reused_collector(module_collector)


@pytest.fixture
def provider(collector: SegmentCollector) -> Iterator[SegmentExposureTrackingProvider]:
    made = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, client_options={"upload_interval": 0.05}
    )
    flush_each_request(made, True)
    yield made
    collector.up()
    made.shutdown(5)


def timed_flush(provider: SegmentExposureTrackingProvider, *users: str) -> tuple[bool, float]:
    for user in users:
        provider.track(EXPOSURE, {"user_id": user})
    started = time.monotonic()
    delivered = flush_request(provider, timeout=DEADLINE)
    return delivered, time.monotonic() - started


def outcomes(provider: SegmentExposureTrackingProvider) -> tuple[int, int, int]:
    """(delivered, flush_deadline, every other drop), after checking each tracked exposure is counted once."""
    stats = provider.stats()
    assert stats["tracked"] == stats["delivered"] + stats["dropped_total"]
    missed = stats["dropped"]["flush_deadline"]
    return stats["delivered"], missed, stats["dropped_total"] - missed


def deadline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "segment-exposure-deadline"]


def test_an_answer_trickled_from_its_status_line_is_cut_at_the_deadline(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    collector.trickle(INTERVAL, size=SIZE, whole=True)
    delivered, elapsed = timed_flush(provider, "user-a", "user-b")
    assert DEADLINE - 0.05 <= elapsed <= DEADLINE + SLACK, elapsed
    assert not delivered
    assert outcomes(provider) == (0, 2, 0)
    # Segment had the batch before it began answering: counted as missed, it may still arrive.
    assert {m["userId"] for m in collector.events()} == {"user-a", "user-b"}

    delivered, elapsed = timed_flush(provider, "user-c")  # the next flush is not held by the last
    assert delivered and elapsed < DEADLINE
    assert outcomes(provider) == (1, 2, 0)


def test_a_body_trickled_after_the_headers_is_cut_at_the_deadline(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    collector.trickle(INTERVAL, size=SIZE)
    delivered, elapsed = timed_flush(provider, "user-a")
    assert elapsed <= DEADLINE + SLACK, elapsed
    # The status (200) came in time; urllib3 2 then fails the cut body, urllib3 1.26 returns it as is.
    # Either way exactly one outcome is counted, and the flush says which.
    expected = (0, 1, 0) if ENFORCES_LENGTH else (1, 0, 0)
    assert outcomes(provider) == expected
    assert delivered == (expected[0] == 1)
    assert timed_flush(provider, "user-b")[0]
    assert outcomes(provider) == (expected[0] + 1, expected[1], 0)


def test_an_answer_that_never_comes_is_counted_once_and_nothing_arrives(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    collector.hang()
    delivered, elapsed = timed_flush(provider, "user-a", "user-b", "user-c")
    assert elapsed <= DEADLINE + SLACK, elapsed
    assert not delivered
    assert outcomes(provider) == (0, 3, 0)
    collector.up()  # the hanging request's connection closes unanswered: its batch was never accepted
    assert timed_flush(provider, "user-d")[0]
    assert outcomes(provider) == (1, 3, 0)
    assert [m["userId"] for m in collector.events()] == ["user-d"]


def test_flush_after_returns_within_the_lambda_contexts_remaining_time(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    @flush_after(provider, margin=0.5)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        provider.track(EXPOSURE, {"user_id": event["user"]})
        return {"statusCode": 200}

    collector.trickle(INTERVAL, size=SIZE, whole=True)
    context = LambdaContext(1_500)  # the flush may take what is left minus 0.5 s: about 1 s
    started = time.monotonic()
    assert handler({"user": "user-a"}, context) == {"statusCode": 200}
    elapsed = time.monotonic() - started
    assert elapsed <= 1.0 + SLACK, elapsed
    assert context.get_remaining_time_in_millis() >= 500 - SLACK * 1000  # the margin is left
    assert outcomes(provider) == (0, 1, 0)
    assert handler({"user": "user-b"}, LambdaContext(1_500)) == {"statusCode": 200}
    assert outcomes(provider) == (1, 1, 0)


def test_abandoned_posts_leave_no_thread_behind(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    before = {t.ident for t in threading.enumerate()}
    collector.trickle(INTERVAL, size=SIZE, whole=True, count=None)
    for i in range(4):
        delivered, elapsed = timed_flush(provider, f"user-{i}")
        assert not delivered and elapsed <= 0.5 + DEADLINE + SLACK
        assert len(deadline_threads()) <= 1  # at most the one just cancelled, on its way out
    assert outcomes(provider) == (0, 4, 0)
    assert wait_until(lambda: not deadline_threads(), timeout=5)
    # The provider kept its own threads; the flushes added none (the collector's trickling handlers
    # end when they find the connection gone, and are the collector's).
    ours = [t for t in threading.enumerate() if t.ident not in before and not t.name.startswith("Thread-")]
    assert ours == []


def test_a_connect_that_hangs_is_bounded_too(collector: SegmentCollector) -> None:
    # A listening socket whose accept queue is full: the kernel drops further SYNs, so connect() waits.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        host, port = full.getsockname()
        fillers = []
        try:
            for _ in range(8):  # more than the queue holds, whatever the kernel rounds the backlog to
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex((host, port))
                fillers.append(filler)
            provider = SegmentExposureTrackingProvider(WRITE_KEY, host=f"http://{host}:{port}")
            flush_each_request(provider, True)
            try:
                delivered, elapsed = timed_flush(provider, "user-a")
                assert not delivered and elapsed <= DEADLINE + SLACK, elapsed
                assert outcomes(provider) == (0, 1, 0)
            finally:
                provider.shutdown(0.5)
        finally:
            for filler in fillers:
                filler.close()


def test_hard_deadline_cuts_only_inside_its_block(collector: SegmentCollector) -> None:
    session = requests.Session()
    url, body = f"{collector.url}/v1/batch", {"batch": [], "writeKey": WRITE_KEY}
    collector.trickle(INTERVAL, size=SIZE, whole=True)
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError), hard_deadline(started + 0.5) as watch:
        session.post(url, json=body, timeout=5)
    assert watch.expired and time.monotonic() - started <= 0.5 + SLACK
    # A connection used inside a block that ended in time stays usable after its deadline passes.
    with hard_deadline(time.monotonic() + 0.3) as watch:
        assert session.post(url, json=body, timeout=5).ok
    assert wait_until(lambda: not deadline_threads(), timeout=5)
    assert not watch.expired
    assert session.post(url, json=body, timeout=5).ok
