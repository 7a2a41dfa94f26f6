"""The Segment Function's sending part against a slow Amplitude, under Node (tests/js/harness.mjs).

The same 16 MB batch as tests/test_slow_amplitude.py, with the function's production timing (a 4.5 s
deadline inside Segment's 5 s limit): with up to 8 fetches in flight it is delivered whole when Amplitude
takes 0.3 s or 1 s per request. Segment retries the events answered 429/500, at most 5 attempts here;
every event must be ingested exactly once. Also: ``Retry-After`` on a 503 is waited for.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from segment_exposure import AmplitudeEmulator

from .amplitude_cases import assert_ingested_once
from .test_function_js import API_KEY, JS_FAST, make_batch, run_js
from .test_slow_amplitude import ATTEMPTS, big_batch

# Runs Node: outside the fast inner loop.
pytestmark = [pytest.mark.slow, pytest.mark.requires("node")]


@pytest.fixture
def emulator() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as server:
        yield server


def settle(emulator: AmplitudeEmulator, events: list[dict[str, Any]]) -> list[list[int]]:
    """onBatch as Segment drives it: resend the 429/500 events; the statuses of each attempt."""
    settings = {"apiKey": API_KEY, "endpoint": emulator.http_api_url}
    pending = list(range(len(events)))
    attempts: list[list[int]] = []
    while pending and len(attempts) < ATTEMPTS:
        (result,) = run_js(
            [{"op": "onBatch", "events": [events[i] for i in pending], "settings": settings}], timeout=120
        )
        assert "ok" in result, result
        statuses = [item["status"] for item in result["ok"]]
        attempts.append(statuses)
        assert result["elapsed_ms"] < 5000, "inside Segment's 5 s limit"
        pending = [i for i, status in zip(pending, statuses, strict=True) if status in (429, 500)]
    assert not pending, f"{len(pending)} events still not delivered after {len(attempts)} attempts"
    return attempts


@pytest.mark.parametrize("latency", [0.3, 1.0])
def test_a_16_mb_batch_reaches_a_slow_amplitude_from_the_function(
    emulator: AmplitudeEmulator, latency: float
) -> None:
    events, _ = big_batch()
    emulator.inject("slow", count=None, delay=latency)
    settle(emulator, events)
    assert_ingested_once(emulator, {e["messageId"] for e in events})
    assert max(r.events for r in emulator.requests) < len(events) / 10, "the batch went in many requests"


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_503_retry_after_is_waited_for_by_the_function(emulator: AmplitudeEmulator, form: str) -> None:
    # An HTTP date has whole seconds: from the next whole second on, so the wait left when the 503 comes
    # (after Node has started) is still over a second, whatever fraction of a second it is now.
    value = "1" if form == "seconds" else email.utils.formatdate(math.ceil(time.time()) + 3, usegmt=True)
    emulator.inject("503", retry_after=value)
    settings = {"apiKey": API_KEY, "endpoint": emulator.http_api_url}
    (result,) = run_js(
        [{"op": "onBatch", "events": make_batch(), "settings": settings}],
        timing={**JS_FAST, "deadlineMs": 4500},
    )
    statuses = [item["status"] for item in result["ok"]]
    assert statuses.count(200) == 16, statuses
    assert result["elapsed_ms"] >= 950, "the retry waited for Retry-After, not the 10 ms backoff"
    assert emulator.requests[0].status == 503
    assert emulator.ingested_count == 16
