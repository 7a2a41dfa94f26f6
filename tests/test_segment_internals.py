"""The self-check of segment-analytics-python's internals, and the public-API fallback it chooses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from segment_exposure import Exposure
from segment_exposure.tracking import segment_check, segment_client
from segment_exposure.tracking.segment_check import FORCE_PUBLIC_API_ENV, check_internals

from .conftest import WRITE_KEY


@pytest.fixture
def fresh_check() -> Iterator[None]:
    """The verdict is cached per process: start and end each test with none."""
    segment_check._checked.cache_clear()
    yield
    segment_check._checked.cache_clear()


def test_the_installed_version_passes_the_self_check() -> None:
    internals = segment_check._probe()
    assert internals == segment_check.Internals(True, True, True, True, ())


def test_a_wire_message_that_drifts_from_track_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upstream release that changes what track() queues: the hand-built message is not used."""
    real = segment_client.wire_message

    def drifted(track: dict[str, Any]) -> dict[str, Any]:
        message = real(track)
        message.pop("integrations")
        return message

    monkeypatch.setattr(segment_client, "wire_message", drifted)
    internals = segment_check._probe()
    assert not internals.direct_enqueue
    assert (internals.consumer_hooks, internals.queue_conditions, internals.revive_in_place) == (
        True,
        True,
        True,
    )
    assert internals.missing == ("the hand-built wire message (it differs from what Client.track() queues)",)


def test_forced_public_api_delivers_and_counts_everything(
    fresh_check: None,
    monkeypatch: pytest.MonkeyPatch,
    make_provider: Any,
    collector: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(FORCE_PUBLIC_API_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="segment_exposure"):
        provider = make_provider()
        make_provider()
    warnings = [r.getMessage() for r in caplog.records if "public API" in r.getMessage()]
    assert len(warnings) == 1 and FORCE_PUBLIC_API_ENV in warnings[0]  # one warning, naming why
    assert not provider._direct and not check_internals().consumer_hooks

    for user in ("user-00001", "user-00002", "user-00003"):
        provider.track(Exposure("f", "on"), {"user_id": user})
    assert provider.flush(10) is True
    assert provider.stats()["delivered"] == 3
    events = collector.events()
    assert sorted(m["userId"] for m in events) == ["user-00001", "user-00002", "user-00003"]
    assert {m["context"]["library"]["name"] for m in events} == {"analytics-python"}

    collector.fail(400, count=1)  # not retried by Segment's client: it calls the constructor's on_error
    provider.track(Exposure("f", "on"), {"user_id": "user-00004"})
    assert provider.flush(10) is False
    stats = provider.stats()
    assert (stats["delivered"], stats["dropped"]["delivery_failed"]) == (3, 1)
    assert WRITE_KEY not in caplog.text
