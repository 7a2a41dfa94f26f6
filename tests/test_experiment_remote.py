"""ExposureTrackingClient around a real RemoteEvaluationClient fetching from the local vardata server."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from amplitude_experiment import RemoteEvaluationClient, RemoteEvaluationConfig

from segment_exposure import ExposureTrackingClient, FlagConfigServer, SegmentCollector, bind_user
from segment_exposure.emulators.flag_server import VARDATA_PATH

from .experiment_fixtures import ALICE, BOB, CAROL, ERIN, EXPERIMENT_KEY, by_user


@pytest.mark.slow
def test_remote_variants_reach_segment_and_amplitude_tracks_nothing(
    collector: SegmentCollector, make_provider: Any, remote_client: Any, flag_server: FlagConfigServer
) -> None:
    experiment = ExposureTrackingClient(remote_client, make_provider())
    keys = {u.user_id: experiment.variant(u, "checkout-flow").key for u in (ALICE, BOB, CAROL, ERIN)}
    assert keys == {
        "alice-0001": "treatment",
        "bob-00002": "control",
        "carol-0003": "treatment",
        "erin-00005": "off",
    }
    assert experiment.variant(ALICE, "quiet-flag").key == "on"  # trackExposure: false
    assert experiment.provider.flush(10)

    events = by_user(collector)
    assert set(events) == set(keys)
    for user_id, key in keys.items():
        expected = {"flag_key": "checkout-flow", "experiment_key": EXPERIMENT_KEY}
        if key != "off":
            expected["variant"] = key
        assert events[user_id]["properties"] == expected
    assert events["alice-0001"]["anonymousId"] == "device-alice-1"

    requests = flag_server.requests(VARDATA_PATH)
    assert len(requests) == 5
    for request in requests:
        # Amplitude's servers track an assignment unless told not to: each fetch says no-track, twice.
        assert request.header("X-Amp-Exp-Track") == "no-track"
        assert request.header("X-Amp-Exp-Exposure-Track") == "no-track"
        assert request.header("Authorization") == f"Api-Key {flag_server.deployment_key}"
    # Without a request scope to cache in, each call fetches only the flag it needs.
    assert [r.flag_keys for r in requests] == [["checkout-flow"]] * 4 + [["quiet-flag"]]
    assert requests[0].json()["user_id"] == "alice-0001"


def test_the_sdk_alone_would_let_the_server_track(remote_client: Any, flag_server: FlagConfigServer) -> None:
    """Why the options matter: a plain fetch_v2 sends no tracking header, so the server's default applies."""
    remote_client.fetch_v2(ALICE)
    [request] = flag_server.requests(VARDATA_PATH)
    assert request.header("X-Amp-Exp-Track") is None and request.header("X-Amp-Exp-Exposure-Track") is None


def test_one_fetch_per_request(
    collector: SegmentCollector, make_provider: Any, remote_client: Any, flag_server: FlagConfigServer
) -> None:
    experiment = ExposureTrackingClient(remote_client, make_provider())
    with bind_user(ALICE):
        assert experiment.variant(None, "checkout-flow").key == "treatment"
        assert experiment.variant(None, "value-only").value == "enabled-value"
        assert experiment.variant(None, "no-such-flag", fallback="x").key == "x"
        assert experiment.exposure(None, "checkout-flow") is True
        assert set(experiment.all(None)) == {"checkout-flow", "quiet-flag", "value-only"}
    [request] = flag_server.requests(VARDATA_PATH)
    assert request.flag_keys is None  # every flag, once, for the whole request
    assert request.header("X-Amp-Exp-Track") == "no-track"
    assert request.header("X-Amp-Exp-Exposure-Track") == "no-track"
    assert experiment.provider.flush(10)
    assert sorted(m["properties"]["flag_key"] for m in collector.events()) == ["checkout-flow", "value-only"]
    stats = experiment.stats()
    assert (stats["evaluations"], stats["cache_hits"], stats["fallbacks"]) == (1, 4, 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("status", "retries"),
    [(503, 0), (400, 0), (503, 1)],
    ids=["logged-and-empty", "none-returned", "raised-after-retries"],
)
def test_fetch_errors_return_the_fallback(
    status: int,
    retries: int,
    collector: SegmentCollector,
    make_provider: Any,
    flag_server: FlagConfigServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """fetch_v2 reports a failure three ways (returns {}, returns None, raises): each is an error here."""
    client = RemoteEvaluationClient(
        flag_server.deployment_key,
        RemoteEvaluationConfig(
            server_url=flag_server.url, fetch_retries=retries, fetch_retry_backoff_min_millis=1
        ),
    )
    try:
        experiment = ExposureTrackingClient(client, make_provider())
        flag_server.fail(status, count=retries + 1, path=VARDATA_PATH)
        with caplog.at_level(logging.WARNING, logger="segment_exposure"):
            variant = experiment.variant(ALICE, "checkout-flow", fallback="safe")
        assert variant.key == "safe"
        assert "checkout-flow" in caplog.text
        assert experiment.variant(BOB, "checkout-flow").key == "control"  # the server is back
    finally:
        client.close()
    assert experiment.provider.flush(10)
    assert list(by_user(collector)) == ["bob-00002"]
    stats = experiment.stats()
    assert (stats["errors"], stats["fallbacks"], stats["suppressed"]["fallback"]) == (1, 1, 1)


def test_a_missing_flag_is_a_fallback_not_an_error(
    collector: SegmentCollector, make_provider: Any, remote_client: Any
) -> None:
    experiment = ExposureTrackingClient(remote_client, make_provider())
    assert experiment.variant(ALICE, "no-such-flag", fallback="safe").key == "safe"
    experiment.variant(BOB, "checkout-flow")
    assert experiment.provider.flush(10)
    assert [m["properties"]["flag_key"] for m in collector.events()] == ["checkout-flow"]
    stats = experiment.stats()
    assert (stats["errors"], stats["fallbacks"]) == (0, 1)


def test_sdk_stale_connection_after_an_error_is_contained(
    collector: SegmentCollector,
    make_provider: Any,
    remote_client: Any,
    flag_server: FlagConfigServer,
) -> None:
    """Pins an amplitude-experiment 1.13.0 bug the wrapper must survive.

    On a non-200 answer fetch_v2 returns the pooled connection with the response unread, so the next
    fetch on it fails with ResponseNotReady even though the server answered it; the one after works.
    """
    experiment = ExposureTrackingClient(remote_client, make_provider())
    flag_server.fail(503, path=VARDATA_PATH, close_connection=False)
    assert experiment.variant(ALICE, "checkout-flow", fallback="safe").key == "safe"  # the 503
    assert experiment.variant(BOB, "checkout-flow", fallback="safe").key == "safe"  # the stale connection
    assert experiment.variant(CAROL, "checkout-flow", fallback="safe").key == "treatment"
    assert flag_server.wait_for_requests(3, VARDATA_PATH, timeout=10)  # the server did answer all three
    assert [r.status for r in flag_server.requests(VARDATA_PATH)] == [503, 200, 200]
    assert experiment.provider.flush(10)
    assert list(by_user(collector)) == ["carol-0003"]
    assert experiment.stats()["errors"] == 2


def _closed_port() -> int:
    """A loopback port nobody listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["server-500", "connection-refused", "timeout", "not-json"])
def test_each_kind_of_fetch_failure_is_an_error_without_reading_logs(
    fault: str, collector: SegmentCollector, make_provider: Any, flag_server: FlagConfigServer
) -> None:
    """A failed fetch returns {} like an answer with no flags: told apart with the SDK's logger silent."""
    silent = logging.getLogger(f"test-silent-amplitude-{fault}")
    silent.disabled = True  # nothing the SDK logs can be read
    url = f"http://127.0.0.1:{_closed_port()}" if fault == "connection-refused" else flag_server.url
    client = RemoteEvaluationClient(
        flag_server.deployment_key,
        RemoteEvaluationConfig(server_url=url, fetch_timeout_millis=300, fetch_retries=0, logger=silent),
    )
    try:
        experiment = ExposureTrackingClient(client, make_provider())
        if fault == "server-500":
            flag_server.fail(500, path=VARDATA_PATH)
        elif fault == "timeout":
            flag_server.fail(200, path=VARDATA_PATH, delay=2.0, body=b"{}")
        elif fault == "not-json":
            flag_server.fail(200, path=VARDATA_PATH, body=b"<html>proxy error</html>")
        assert experiment.variant(ALICE, "checkout-flow", fallback="safe").key == "safe"
        stats = experiment.stats()
        assert (stats["errors"], stats["fallbacks"]) == (1, 1)
        if fault != "connection-refused":
            # The same client, the server answering again: a real answer, and an empty one, are no errors.
            assert experiment.variant(BOB, "checkout-flow").key == "control"
            flag_server.set_flags([])
            assert experiment.variant(CAROL, "checkout-flow", fallback="safe").key == "safe"
            stats = experiment.stats()
            assert (stats["errors"], stats["fallbacks"]) == (1, 2)
    finally:
        client.close()
    assert experiment.provider.flush(10)
    assert list(by_user(collector)) == ([] if fault == "connection-refused" else ["bob-00002"])
