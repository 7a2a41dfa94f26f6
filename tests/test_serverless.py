"""``segment_exposure.tracking.serverless``: the per-invocation flush, its deadline, its cost, detection.

Everything goes through the real Segment client over real HTTP to the local collector. The Lambda
context is the runtime's plain object (ids and a countdown), as in tests/serverless_runtime.py.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from segment.analytics import Client

from segment_exposure import (
    Exposure,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    flush_after,
    flush_each_request,
    flush_request,
    flush_request_async,
    invocation_timeout,
    lambda_context,
)
from segment_exposure.tracking import segment_check
from segment_exposure.tracking.message_id import MESSAGE_ID_PREFIX
from segment_exposure.tracking.segment_check import FORCE_PUBLIC_API_ENV
from segment_exposure.tracking.serverless import detect_platform

from .conftest import WRITE_KEY, wait_until
from .serverless_runtime import LambdaContext

EXPOSURE = Exposure("checkout", "treatment", "exp-1")
PLATFORM_VARIABLES = ("AWS_LAMBDA_FUNCTION_NAME", "FUNCTION_TARGET", "FUNCTION_NAME", "K_SERVICE")


@pytest.fixture(autouse=True)
def off_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PLATFORM_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def provider(collector: SegmentCollector) -> Iterator[SegmentExposureTrackingProvider]:
    made = SegmentExposureTrackingProvider(WRITE_KEY, host=collector.url)
    yield made
    collector.up()
    made.shutdown(5)


def tracking_handler(
    provider: SegmentExposureTrackingProvider, **options: Any
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    @flush_after(provider, **options)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        for user in event["users"]:
            provider.track(EXPOSURE, {"user_id": user})
        if event.get("raise"):
            raise RuntimeError("the handler failed")
        return {"statusCode": 200}

    return handler


def accounted(stats: dict[str, Any]) -> bool:
    """Every tracked exposure is delivered or dropped under a reason."""
    return bool(stats["tracked"] == stats["delivered"] + stats["dropped_total"])


def test_each_invocation_is_delivered_before_it_returns_in_one_request(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    handler = tracking_handler(provider)
    for i, n in enumerate((3, 0, 1, 5, 0)):
        users = [f"user-{i}-{j}" for j in range(n)]
        before = collector.requests
        assert handler({"users": users}, LambdaContext(3_000)) == {"statusCode": 200}
        # No waiting: returning is the delivery.
        assert {m["userId"] for m in collector.events()} >= set(users)
        assert collector.requests - before == (1 if n else 0)
    assert len(collector.events()) == 9
    stats = provider.stats()
    assert stats["delivered"] == 9 and stats["dropped_total"] == 0


def test_the_flush_posts_at_once_without_segments_upload_interval(collector: SegmentCollector) -> None:
    # Segment's consumer waits upload_interval for more messages before it posts: with 30 s, a flush
    # through it would take up to 30 s. The per-invocation flush does not go through it.
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, client_options={"upload_interval": 30.0}
    )
    try:
        handler = tracking_handler(provider)
        started = time.monotonic()
        for i in range(3):
            handler({"users": [f"user-{i}"]}, LambdaContext(60_000))
        assert time.monotonic() - started < 10.0
        assert len(collector.events()) == 3 and collector.requests == 3
    finally:
        provider.shutdown(0.1)  # its idle consumer sits in a 30 s wait: not worth joining


def test_a_failing_handler_still_delivers_and_raises(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    handler = tracking_handler(provider)
    with pytest.raises(RuntimeError, match="the handler failed"):
        handler({"users": ["user-a", "user-b"], "raise": True}, LambdaContext(3_000))
    assert {m["userId"] for m in collector.events()} == {"user-a", "user-b"}


def test_repeats_send_nothing(provider: SegmentExposureTrackingProvider, collector: SegmentCollector) -> None:
    handler = tracking_handler(provider)
    handler({"users": ["user-a"]}, LambdaContext(3_000))
    requests = collector.requests
    handler({"users": ["user-a", "user-a"]}, LambdaContext(3_000))  # deduplicated: nothing new
    assert collector.requests == requests
    assert provider.stats()["deduplicated"] == 2


@pytest.mark.slow
def test_the_deadline_comes_from_the_context_and_misses_are_counted(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    collector.down()
    handler = tracking_handler(provider, margin=0.2)
    started = time.monotonic()
    handler({"users": ["user-a", "user-b", "user-c"]}, LambdaContext(900))
    elapsed = time.monotonic() - started
    # Returned before the function's timeout, leaving the margin (generous slack for a busy machine).
    assert elapsed < 0.9, elapsed
    assert collector.requests >= 2  # it retried while there was time
    stats = provider.stats()
    assert stats["dropped"]["flush_deadline"] == 3 and stats["delivered"] == 0
    assert accounted(stats)


def test_transient_failures_are_retried_within_the_deadline(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    collector.fail(503, count=2)
    handler = tracking_handler(provider)
    handler({"users": ["user-a", "user-b"]}, LambdaContext(5_000))
    assert {m["userId"] for m in collector.events()} == {"user-a", "user-b"}
    assert collector.requests == 3
    assert provider.stats()["delivered"] == 2


def test_a_retry_after_beyond_the_deadline_gives_up_at_once(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    collector.rate_limit(retry_after=60)
    handler = tracking_handler(provider)
    started = time.monotonic()
    handler({"users": ["user-a"]}, LambdaContext(3_000))
    assert time.monotonic() - started < 2.0  # did not sleep toward a retry it could not make
    if _segment_errors_carry_the_response():
        assert collector.requests == 1
        assert provider.stats()["dropped"]["flush_deadline"] == 1
    else:  # segment-analytics-python 2.3.x: Retry-After cannot be read; retried on the flush's own backoff
        assert collector.requests == 2
        assert provider.stats()["delivered"] == 1


def _segment_errors_carry_the_response() -> bool:
    from segment.analytics.request import APIError

    return "response" in inspect.signature(APIError.__init__).parameters


def test_a_permanent_rejection_is_counted_as_delivery_failed(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    collector.fail(400)
    handler = tracking_handler(provider)
    handler({"users": ["user-a"]}, LambdaContext(3_000))
    assert collector.requests == 1  # a 400 is not retried
    stats = provider.stats()
    assert stats["dropped"]["delivery_failed"] == 1 and accounted(stats)


def test_without_remaining_time_nothing_is_attempted(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    handler = tracking_handler(provider)  # margin 0.5 s, and the context has 0.3 s left
    handler({"users": ["user-a"]}, LambdaContext(300))
    assert collector.requests == 0
    assert provider.stats()["dropped"]["flush_deadline"] == 1


def test_invocation_timeout(provider: SegmentExposureTrackingProvider) -> None:
    assert invocation_timeout(provider) == provider.flush_timeout == 5.0
    assert invocation_timeout(provider, timeout=2.0) == 2.0
    assert 1.3 < invocation_timeout(provider, LambdaContext(2_000), margin=0.5) <= 1.5
    assert invocation_timeout(provider, LambdaContext(60_000)) == 5.0  # the timeout still bounds it
    assert invocation_timeout(provider, LambdaContext(100)) == 0.0
    assert invocation_timeout(provider, object()) == 5.0  # not a Lambda context


def test_bad_options_are_refused(provider: SegmentExposureTrackingProvider) -> None:
    with pytest.raises(ValueError, match="margin"):
        flush_after(provider, margin=-1)
    with pytest.raises(ValueError, match="timeout"):
        flush_after(provider, timeout=-1)
    with pytest.raises(TypeError, match="handler"):
        flush_after(provider)(42)  # type: ignore[type-var]


def test_an_invocation_too_big_for_one_request_is_split_at_segments_limits(
    collector: SegmentCollector,
) -> None:
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, client_options={"upload_size": 100}
    )
    try:
        handler = tracking_handler(provider)
        handler({"users": [f"user-{i}" for i in range(250)]}, LambdaContext(10_000))
        assert len(collector.events()) == 250
        assert [len(b) for b in collector.batches] == [100, 100, 50]
    finally:
        provider.shutdown(5)


@pytest.mark.slow
def test_async_handlers_are_flushed_off_the_event_loop(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    ticks = 0

    @flush_after(provider)
    async def handler(event: dict[str, Any], context: Any) -> str:
        for user in event["users"]:
            provider.track(EXPOSURE, {"user_id": user})
        return "done"

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> str:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        collector.slow(0.3)  # the flush's request takes a while: the loop keeps running meanwhile
        result = await handler({"users": ["user-a"]}, LambdaContext(3_000))
        stop.set()
        await task
        return result

    assert asyncio.run(main()) == "done"
    assert [m["userId"] for m in collector.events()] == ["user-a"]
    assert ticks > 10


def test_your_own_events_on_a_shared_client_are_flushed_too(collector: SegmentCollector) -> None:
    client = Client(WRITE_KEY, host=collector.url, upload_interval=0.05)
    provider = SegmentExposureTrackingProvider(analytics=client)
    try:

        @flush_after(provider)
        def handler(event: dict[str, Any], context: Any) -> None:
            client.track(user_id="user-a", event="Checkout Started")
            provider.track(EXPOSURE, {"user_id": "user-a"})

        handler({}, LambdaContext(3_000))
        assert {m["event"] for m in collector.messages} == {"$exposure", "Checkout Started"}
    finally:
        provider.shutdown(5)
        client.shutdown()


def test_concurrent_request_flushes_send_each_exposure_once(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    assert flush_each_request(provider, True)
    results: list[bool] = []

    def request(worker: int) -> None:
        for i in range(10):
            provider.track(EXPOSURE, {"user_id": f"user-{worker}-{i}"})
            results.append(flush_request(provider, True))

    threads = [threading.Thread(target=request, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(results) and len(results) == 80
    assert len(collector.messages) == len(collector.events()) == 80  # none missing, none twice
    assert provider.stats()["delivered"] == 80


def test_flush_request_async_and_disabled(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    assert flush_each_request(provider, True)
    provider.track(EXPOSURE, {"user_id": "user-a"})
    assert asyncio.run(flush_request_async(provider, False))  # off: nothing sent
    assert collector.requests == 0
    assert asyncio.run(flush_request_async(provider, True, context=LambdaContext(3_000)))
    assert [m["userId"] for m in collector.events()] == ["user-a"]
    assert asyncio.run(flush_request_async(provider)) and collector.requests == 1  # idle: nothing


@pytest.fixture
def public_api_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """segment-analytics-python's public API only (segment_check's fallback), forced for one test."""
    segment_check._checked.cache_clear()  # the verdict is cached per process
    monkeypatch.setenv(FORCE_PUBLIC_API_ENV, "1")
    yield
    segment_check._checked.cache_clear()


@pytest.mark.slow
def test_without_segments_internals_each_invocation_is_still_posted_at_once_and_counted(
    public_api_only: None, collector: SegmentCollector
) -> None:
    # upload_interval 30 s: a flush that went through Segment's consumer would take up to 30 s.
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, client_options={"upload_interval": 30.0}
    )
    try:
        handler = tracking_handler(provider, margin=0.2)
        assert not provider.handoff.direct and provider.handoff.build_wire is not None  # the public-API route
        started = time.monotonic()
        for i, n in enumerate((3, 0, 2)):
            users = [f"user-{i}-{j}" for j in range(n)]
            before = collector.requests
            handler({"users": users}, LambdaContext(60_000))
            assert {m["userId"] for m in collector.events()} >= set(users)  # returning is the delivery
            assert collector.requests - before == (1 if n else 0)
            assert provider.stats()["delivered"] == provider.stats()["tracked"]
        assert time.monotonic() - started < 10.0
        events = collector.events()
        assert {m["context"]["library"]["name"] for m in events} == {"analytics-python"}  # Client.track()'s
        assert all(m["messageId"].startswith(MESSAGE_ID_PREFIX) for m in events)

        collector.fail(400)  # refused for good: counted, not retried
        handler({"users": ["user-refused"]}, LambdaContext(3_000))
        collector.down()  # an outage past the invocation's deadline
        handler({"users": ["user-late-1", "user-late-2"]}, LambdaContext(900))
        stats = provider.stats()
        assert (
            stats["delivered"],
            stats["dropped"]["delivery_failed"],
            stats["dropped"]["flush_deadline"],
        ) == (
            5,
            1,
            2,
        )
        assert accounted(stats) and segment_client_idle(provider)
    finally:
        collector.up()
        provider.shutdown(0.1)  # its idle consumer sits in a 30 s wait: not worth joining


def segment_client_idle(provider: SegmentExposureTrackingProvider) -> bool:
    """Nothing of ours went through Segment's own queue."""
    return bool(provider.analytics.queue.unfinished_tasks == 0 and provider.ledger.on_client_queue == 0)


@pytest.mark.slow
def test_without_segments_internals_queued_and_per_invocation_exposures_are_each_counted_once(
    public_api_only: None, make_provider: Callable[..., SegmentExposureTrackingProvider], collector: Any
) -> None:
    """Exposures tracked before the per-invocation set-up went through Segment's queue, and are counted
    when a flush sees it drained; those the batch missed by the deadline are not counted again."""
    provider = make_provider()
    collector.down()
    provider.track(EXPOSURE, {"user_id": "user-queued-1"})
    provider.track(EXPOSURE, {"user_id": "user-queued-2"})
    assert wait_until(lambda: provider.ledger.on_client_queue == 2)  # handed to Segment's queue by the worker
    handler = tracking_handler(provider, margin=0.2)
    handler({"users": ["user-a", "user-b", "user-c"]}, LambdaContext(900))  # the outage outlasts it
    assert provider.stats()["dropped"]["flush_deadline"] == 3
    collector.up()
    assert provider.flush(30) is True  # Segment's consumer retries the queued two
    stats = provider.stats()
    assert stats["delivered"] == 2 and stats["dropped"]["flush_deadline"] == 3 and accounted(stats)
    assert {m["userId"] for m in collector.events()} == {"user-queued-1", "user-queued-2"}


def test_lambda_context_is_found_where_adapters_put_it() -> None:
    context = LambdaContext(1_000)
    assert lambda_context({"aws.context": context, "type": "http"}) is context  # Mangum's ASGI scope
    assert lambda_context({"serverless.context": context}) is context  # serverless-wsgi's environ
    assert lambda_context({"aws.context": {"not": "a context"}}) is None
    assert lambda_context({}) is None


@pytest.mark.parametrize(
    ("variable", "platform"),
    [
        ("AWS_LAMBDA_FUNCTION_NAME", "AWS Lambda"),
        ("FUNCTION_TARGET", "Google Cloud Functions"),
        ("FUNCTION_NAME", "Google Cloud Functions"),
        ("K_SERVICE", "Google Cloud Run"),
    ],
)
def test_platforms_are_detected(variable: str, platform: str) -> None:
    assert detect_platform({variable: "checkout"}) == platform
    assert detect_platform({variable: ""}) is None
    assert detect_platform({}) is None


def test_flush_each_request_is_on_by_default_only_on_a_platform(
    provider: SegmentExposureTrackingProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert flush_each_request(provider, None) is False
    assert flush_each_request(provider, False) is False
    monkeypatch.setenv("K_SERVICE", "checkout")
    assert flush_each_request(provider, None) is True
    assert flush_each_request(provider, False) is False


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if "freeze the process after each response" in r.getMessage()
    ]


@pytest.mark.slow
def test_a_provider_on_a_platform_without_the_flush_warns_once(
    collector: SegmentCollector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "checkout-api")
    caplog.set_level(logging.WARNING, logger="segment_exposure")
    provider = SegmentExposureTrackingProvider(WRITE_KEY, host=collector.url)
    try:
        assert not _warnings(caplog)  # building it says nothing: a flush may still be set up
        for i in range(3):
            provider.track(EXPOSURE, {"user_id": f"user-{i}"})
        provider.flush(10)
        (warning,) = _warnings(caplog)
        assert "AWS Lambda" in warning and "flush_after" in warning
    finally:
        provider.shutdown(5)


@pytest.mark.slow
@pytest.mark.parametrize("set_up", ["flush_after", "flush_each_request", "turned_off"])
def test_no_warning_once_a_flush_is_set_up_or_turned_off(
    collector: SegmentCollector,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    set_up: str,
) -> None:
    monkeypatch.setenv("K_SERVICE", "checkout")
    caplog.set_level(logging.WARNING, logger="segment_exposure")
    provider = SegmentExposureTrackingProvider(WRITE_KEY, host=collector.url)
    try:
        if set_up == "flush_after":
            tracking_handler(provider)({"users": ["user-a"]}, None)
        elif set_up == "flush_each_request":
            assert flush_each_request(provider)
            provider.track(EXPOSURE, {"user_id": "user-a"})
            assert flush_request(provider)
        else:  # e.g. Cloud Run with CPU always allocated: the background thread does send
            assert not flush_each_request(provider, False)
            provider.track(EXPOSURE, {"user_id": "user-a"})
            assert provider.flush(10)
        assert len(collector.events()) == 1
        assert not _warnings(caplog)
    finally:
        provider.shutdown(5)
