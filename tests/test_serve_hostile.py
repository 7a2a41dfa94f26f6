"""``segment-exposure serve`` on a hostile network: stalled bodies, slow readers, idle keep-alives.

The real ``serve`` (gunicorn, 2 workers, its default process model) runs against the AmplitudeEmulator; the
hostile clients are raw sockets on 127.0.0.1, and Segment is played by signed batches sent meanwhile. Each
signed batch must be answered 200 within 2 s of its latency on a quiet server, and the server must close
the hostile connections itself within the documented timeouts (the body timeout, set to 3 s here to keep
the test short, and the 5 s keep-alive).
"""

from __future__ import annotations

import re
import socket
import statistics
from collections.abc import Iterator

import pytest
import requests

from benchmarks.hostile import (
    Hostiles,
    Serve,
    idle_keepalive,
    serving,
    signed_batch,
    slow_reader,
    stalled_body,
    timed_batches,
)
from segment_exposure import AmplitudeEmulator
from segment_exposure.cli.serve import KEEPALIVE
from segment_exposure.server import ConfigError, ServerSettings

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

BODY_TIMEOUT = 3.0
#: Seconds of scheduling noise allowed on top of a documented timeout (2 shared cores).
SLACK = 6.0
#: Signed batches may take this much longer than on a quiet server.
ALLOWED_EXTRA = 2.0
BATCH = 100
METRICS_URL = re.compile(r"metrics: serving Prometheus metrics at (http://\S+/metrics)")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Serve, AmplitudeEmulator]]:
    with serving(env={"WEBHOOK_BODY_TIMEOUT": str(BODY_TIMEOUT)}) as (server, amplitude):
        yield server, amplitude


@pytest.fixture(scope="module")
def quiet_latency(served: tuple[Serve, AmplitudeEmulator]) -> float:
    server, _ = served
    return statistics.median(timed_batches(server.url, 5, BATCH, "quiet"))


@pytest.fixture
def hostiles() -> Iterator[Hostiles]:
    opened = Hostiles()
    yield opened
    opened.close()


def assert_prompt(latencies: list[float], quiet: float) -> None:
    slowest = max(latencies)
    assert slowest <= quiet + ALLOWED_EXTRA, f"a signed batch took {slowest:.2f} s (quiet: {quiet:.3f} s)"


def test_200_stalled_bodies_neither_block_signed_batches_nor_stay_open(
    served: tuple[Serve, AmplitudeEmulator], quiet_latency: float, hostiles: Hostiles
) -> None:
    server, amplitude = served
    for _ in range(200):
        hostiles.add(stalled_body("127.0.0.1", server.port))
    latencies = timed_batches(server.url, 10, BATCH, "stalled")
    assert_prompt(latencies, quiet_latency)
    closes, answers = hostiles.closed_after(BODY_TIMEOUT + SLACK)
    assert max(closes) <= BODY_TIMEOUT + SLACK, "every stalled connection is closed by the server"
    assert min(closes) >= BODY_TIMEOUT - 0.5, "not before the body timeout"
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), "each is told why (408)"
    assert amplitude.wait_for_ingested(10 * BATCH, timeout=10)


def test_slow_readers_do_not_block_signed_batches(
    served: tuple[Serve, AmplitudeEmulator], quiet_latency: float, hostiles: Hostiles
) -> None:
    server, amplitude = served
    amplitude.reset()
    for n in range(50):
        body, headers = signed_batch(10, f"slow-reader{n}")
        hostiles.add(slow_reader("127.0.0.1", server.port, body, headers))
    latencies = timed_batches(server.url, 10, BATCH, "readers")
    assert_prompt(latencies, quiet_latency)
    # Their requests were whole and signed: they are delivered even though no one reads the answers.
    assert amplitude.wait_for_ingested(50 * 10 + 10 * BATCH, timeout=30)
    closes, answers = hostiles.closed_after(KEEPALIVE + SLACK + 5)
    assert max(closes) <= KEEPALIVE + SLACK + 5, "an unread connection is closed once it idles"
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)


def test_many_idle_keepalives_are_closed_and_cost_nothing(
    served: tuple[Serve, AmplitudeEmulator], quiet_latency: float, hostiles: Hostiles
) -> None:
    server, _ = served
    for _ in range(500):
        hostiles.add(idle_keepalive("127.0.0.1", server.port))
    latencies = timed_batches(server.url, 10, BATCH, "idle")
    assert_prompt(latencies, quiet_latency)
    closes, _ = hostiles.closed_after(KEEPALIVE + SLACK + 5)
    assert max(closes) <= KEEPALIVE + SLACK + 5, f"idle keep-alives are closed after {KEEPALIVE} s"


def test_the_server_survives_and_still_delivers(
    served: tuple[Serve, AmplitudeEmulator], quiet_latency: float
) -> None:
    server, _ = served
    assert server.process.poll() is None
    latencies = timed_batches(server.url, 3, BATCH, "after")
    assert_prompt(latencies, quiet_latency)
    assert not [line for line in server.lines if "Traceback" in line or "[CRITICAL]" in line], "\n".join(
        server.lines[-20:]
    )


@pytest.mark.parametrize(("value", "expected"), [(None, 10.0), ("2.5", 2.5), ("30", 30.0)])
def test_body_timeout_setting(value: str | None, expected: float) -> None:
    environ = {"AMPLITUDE_API_KEY": "amp-key-0001", **({"WEBHOOK_BODY_TIMEOUT": value} if value else {})}
    assert ServerSettings.from_environ(environ).body_timeout == expected


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "99999"])
def test_bad_body_timeouts_are_one_line_errors(value: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_BODY_TIMEOUT"):
        ServerSettings.from_environ({"AMPLITUDE_API_KEY": "amp-key-0001", "WEBHOOK_BODY_TIMEOUT": value})


def test_bodies_held_in_memory_are_bounded_per_worker() -> None:
    """Bodies are charged as they arrive: with a 20 KB body limit a worker holds at most 80 KB; a client
    that would go over is answered 503 with Retry-After at once, and the budget frees up again."""
    limit = 20_000
    env = {"WEBHOOK_MAX_BODY_BYTES": str(limit), "WEBHOOK_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with serving(workers=1, env=env) as (server, amplitude):
        opened = Hostiles()
        try:
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(
                    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % limit
                    + b"["
                    + b" " * (limit - 1_001)
                )
                opened.add(sock)
            closes, answers = opened.closed_after(BODY_TIMEOUT + SLACK)
        finally:
            opened.close()
        statuses = sorted(a[9:12] for a in answers)
        assert statuses == [b"408"] * 4 + [b"503"], answers
        busy = answers[[a[9:12] for a in answers].index(b"503")]
        assert b"\r\nretry-after: 1\r\n" in busy.lower()
        assert min(closes) < BODY_TIMEOUT, "the one over the budget is answered at once"
        assert timed_batches(server.url, 2, 10, "after-budget")
        assert amplitude.wait_for_ingested(20, timeout=10)


def test_serve_metrics_count_every_answer_including_408() -> None:
    """With --metrics-port, serve's ASGI app is counted: answers by status, 408s of stalled bodies too."""
    env = {"WEBHOOK_BODY_TIMEOUT": "1", "METRICS_PORT": "0"}
    with serving(workers=1, env=env) as (server, amplitude):
        found = next(m for m in map(METRICS_URL.search, server.lines) if m)
        timed_batches(server.url, 2, 5, "metrics")
        stalled = Hostiles()
        try:
            stalled.add(stalled_body("127.0.0.1", server.port))
            _, answers = stalled.closed_after(1 + SLACK)
        finally:
            stalled.close()
        assert answers[0].startswith(b"HTTP/1.1 408")
        text = requests.get(found.group(1), timeout=10).text
        assert 'segment_exposure_destination_requests_total{status="200"} 2.0' in text
        assert 'segment_exposure_destination_requests_total{status="408"} 1.0' in text
        assert 'segment_exposure_destination_events_total{outcome="delivered"} 10.0' in text
        assert amplitude.ingested_count == 10
