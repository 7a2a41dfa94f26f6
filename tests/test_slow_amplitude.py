"""A large webhook batch against a slow Amplitude: every retry must make progress.

4,000 Segment events of about 4 KB (about 16 MB, under the default body limit) need 16 HTTP V2 requests of
about 1 MB. With Amplitude answering each in 0.3 s or 1 s, one request after another runs out of the 4.5 s
deadline at the same point on every retry, and the tail of the batch is never delivered. Sent with up to
8 requests in flight, the whole batch fits in the deadline. Segment's retries are played out here as Segment
does them (the whole request again while the answer is not 200), at most 5 attempts, against the real
emulator; every event must end up in Amplitude exactly once by insert_id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from segment_exposure import AmplitudeEmulator, AmplitudeExposureDestination, lambda_handler
from segment_exposure.delivery.destination import DEFAULT_DEADLINE
from segment_exposure.server import DEFAULT_MAX_BODY_BYTES, reset_cache, sign
from segment_exposure.server.webhook import WebhookHandler, WebhookResponse

from .amplitude_cases import assert_ingested_once, segment_event

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

API_KEY = "amp-slow-key-7c1d2e3f4a"
SECRET = "slow-secret-0a9b8c7d6e"
EVENTS = 4000
#: Segment's attempts at one webhook request, at most.
ATTEMPTS = 5
PADDING = "p" * 3700


def big_batch() -> tuple[list[dict[str, Any]], bytes]:
    events = [
        segment_event(
            i,
            "slow",
            properties={
                "flag_key": "checkout",
                "variant": "treatment",
                "experiment_key": "exp-1",
                "note": PADDING,
            },
        )
        for i in range(EVENTS)
    ]
    body = json.dumps(events).encode()
    assert 15_000_000 < len(body) <= DEFAULT_MAX_BODY_BYTES
    return events, body


@pytest.fixture(scope="module")
def batch() -> tuple[list[dict[str, Any]], bytes]:
    return big_batch()


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as emulator:
        yield emulator


def retry_like_segment(attempt: Callable[[], int]) -> list[int]:
    """Statuses of up to ``ATTEMPTS`` attempts, stopping at the first 200."""
    statuses: list[int] = []
    while len(statuses) < ATTEMPTS:
        statuses.append(attempt())
        if statuses[-1] == 200:
            break
    return statuses


@pytest.mark.parametrize("latency", [0.3, 1.0])
def test_a_16_mb_batch_reaches_a_slow_amplitude_through_the_webhook(
    amplitude: AmplitudeEmulator, batch: tuple[list[dict[str, Any]], bytes], latency: float
) -> None:
    events, body = batch
    amplitude.inject("slow", count=None, delay=latency)
    destination = AmplitudeExposureDestination(API_KEY, endpoint=amplitude.http_api_url)
    handler = WebhookHandler(destination, SECRET)
    signature = sign(body, SECRET)
    answers: list[WebhookResponse] = []

    def attempt() -> int:
        answers.append(handler.handle(body, signature))
        return answers[-1].status

    with destination:
        statuses = retry_like_segment(attempt)
    assert statuses[-1] == 200, f"not delivered within {ATTEMPTS} attempts: {statuses}"
    assert answers[-1].body["delivered"] == EVENTS
    assert_ingested_once(amplitude, {e["messageId"] for e in events})
    requests = amplitude.requests
    assert max(r.events for r in requests) < EVENTS / 10, "the batch went in many requests"
    assert destination.deadline == DEFAULT_DEADLINE


@pytest.mark.parametrize("latency", [0.3, 1.0])
def test_a_16_mb_batch_reaches_a_slow_amplitude_through_the_lambda(
    amplitude: AmplitudeEmulator,
    batch: tuple[list[dict[str, Any]], bytes],
    latency: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, body = batch
    amplitude.inject("slow", count=None, delay=latency)
    for name in (
        "AMPLITUDE_REGION",
        "AMPLITUDE_MIN_ID_LENGTH",
        "AMPLITUDE_DEADLINE",
        "WEBHOOK_MAX_BODY_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.setenv("SEGMENT_SHARED_SECRET", SECRET)
    monkeypatch.setenv("AMPLITUDE_ENDPOINT", amplitude.http_api_url)
    event = {
        "version": "2.0",
        "rawPath": "/",
        "headers": {"content-type": "application/json", "x-signature": sign(body, SECRET)},
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }
    reset_cache()
    try:
        statuses = retry_like_segment(lambda: int(lambda_handler(event, None)["statusCode"]))
    finally:
        reset_cache()
    assert statuses[-1] == 200, f"not delivered within {ATTEMPTS} attempts: {statuses}"
    assert_ingested_once(amplitude, {e["messageId"] for e in events})
