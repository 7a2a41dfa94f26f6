"""The self-check of segment-analytics-python's internals, and the public-API fallback it chooses."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from segment_exposure import Exposure
from segment_exposure.tracking import segment_check, segment_client
from segment_exposure.tracking.segment_check import FORCE_PUBLIC_API_ENV, check_internals

from .conftest import WRITE_KEY, wait_until


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
    assert not provider.handoff.direct and not check_internals().consumer_hooks

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


def _flush_helpers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "segment-exposure-flush"}


@pytest.mark.slow
def test_without_queue_conditions_flushes_in_an_outage_share_one_helper_thread(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch, make_provider: Any, collector: Any
) -> None:
    """The public Client.flush() has no timeout: each flush past its deadline used to leave a thread
    blocked for the rest of the outage (one per request with a per-request flush)."""
    monkeypatch.setenv(FORCE_PUBLIC_API_ENV, "1")
    before = _flush_helpers()
    provider = make_provider()
    collector.down()
    provider.track(Exposure("f", "on"), {"user_id": "user-00001"})
    for _ in range(5):
        assert provider.flush(0.2) is False
    assert len(_flush_helpers() - before) == 1
    collector.up()
    assert provider.flush(30) is True  # Segment's consumer retries it
    assert provider.stats()["delivered"] == 1
    assert wait_until(lambda: not _flush_helpers() - before)


@pytest.mark.slow
def test_without_queue_conditions_concurrent_flushes_each_see_their_own_exposures_delivered(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch, make_provider: Any, collector: Any
) -> None:
    monkeypatch.setenv(FORCE_PUBLIC_API_ENV, "1")
    provider = make_provider()
    results: list[bool] = []
    missing: list[str] = []

    def request(worker: int) -> None:
        for i in range(10):
            user = f"user-{worker}-{i:03d}"
            provider.track(Exposure("f", "on"), {"user_id": user})
            results.append(provider.flush(30))
            if user not in {m["userId"] for m in collector.events()}:
                missing.append(user)  # its flush returned before its own exposure was delivered

    threads = [threading.Thread(target=request, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(results) and len(results) == 80 and not missing
    stats = provider.stats()
    assert stats["delivered"] == stats["tracked"] == 80 and stats["dropped_total"] == 0
    assert len(collector.events()) == 80


def test_a_release_without_a_module_level_session_gets_a_new_client_after_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fresh consumers on the same client are safe only while fresh_http_sessions() can give the child
    its own connections; without a module-level session there, a new Client is the safe way."""
    from segment.analytics import request as segment_request

    monkeypatch.delattr(segment_request, "_session")
    internals = segment_check._probe()
    assert not internals.revive_in_place and internals.direct_enqueue and internals.consumer_hooks
    assert internals.missing == ("a module-level requests.Session in segment.analytics.request",)


def test_fresh_http_sessions_replaces_segments_module_level_sessions_by_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import requests
    from segment.analytics import oauth_manager
    from segment.analytics import request as segment_request

    for module in (segment_request, oauth_manager):  # restored afterwards
        monkeypatch.setattr(module, "_session", module._session)
    monkeypatch.setattr(segment_request, "renamed_session", requests.Session(), raising=False)
    old = segment_request._session
    # RudderStack's session (when another test imported its SDK): test_rudderstack_provider.py.
    replaced = {n for n in segment_client.fresh_http_sessions() if n.startswith("segment.")}
    assert replaced == {
        "segment.analytics.request._session",
        "segment.analytics.request.renamed_session",
        "segment.analytics.oauth_manager._session",
    }
    assert isinstance(segment_request._session, requests.Session) and segment_request._session is not old
