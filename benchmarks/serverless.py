"""S1: the latency a per-invocation flush adds to a serverless handler, against Segment's own flush().

Each invocation tracks a few new exposures and must have delivered them before it returns (the
platform freezes the process right after). Measured is the time from the end of the handler's own
work to its return: ``flush_after``'s flush for ours, ``Client.flush()`` after ``Client.track()`` for
the peer (what Segment's library offers for this). The collector runs in a child process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from segment.analytics import Client

from segment_exposure import Exposure, SegmentExposureTrackingProvider, flush_after

from .common import Result, percentile, spread
from .delivery import ServerHost

WRITE_KEY = "bench-write-key"
EXPOSURE = Exposure("checkout-flow", "treatment", "exp-1")
PER_INVOCATION = 3


class _Context:
    """A Lambda context with plenty of time left: the flush is bounded by the provider's flush_timeout."""

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _ours(provider: SegmentExposureTrackingProvider) -> Callable[[list[str]], float]:
    """A ``flush_after`` handler; each call returns the seconds added after the handler's own work."""
    body_done = 0.0

    @flush_after(provider)
    def handler(event: dict[str, Any], context: Any) -> None:
        nonlocal body_done
        for user in event["users"]:
            provider.track(EXPOSURE, {"user_id": user})
        body_done = time.perf_counter()

    def invoke(users: list[str]) -> float:
        handler({"users": users}, _Context())
        return time.perf_counter() - body_done

    return invoke


def _peer(client: Client) -> Callable[[list[str]], float]:
    """The same with Segment's client alone: track, then its ``flush()`` before returning."""

    def invoke(users: list[str]) -> float:
        for user in users:
            client.track(user_id=user, event="$exposure", properties=EXPOSURE.properties(), context={})
        started = time.perf_counter()
        client.flush()
        return time.perf_counter() - started

    return invoke


def _naive(provider: SegmentExposureTrackingProvider) -> Callable[[list[str]], float]:
    """The provider without ``flush_after``: track, then ``provider.flush()`` through Segment's consumer."""

    def invoke(users: list[str]) -> float:
        for user in users:
            provider.track(EXPOSURE, {"user_id": user})
        started = time.perf_counter()
        provider.flush(30)
        return time.perf_counter() - started

    return invoke


def bench_flush_latency(servers: ServerHost, invocations: int, reps: int) -> list[Result]:
    url = servers.urls["collector"]
    provider = SegmentExposureTrackingProvider(WRITE_KEY, host=url)
    naive_provider = SegmentExposureTrackingProvider(WRITE_KEY, host=url)
    client = Client(WRITE_KEY, host=url)
    ours, peer, naive = _ours(provider), _peer(client), _naive(naive_provider)
    ours_ms: list[float] = []
    peer_ms: list[float] = []
    naive_ms: list[float] = []
    empty_us: list[float] = []
    p50s_ours: list[float] = []
    p50s_peer: list[float] = []
    requests = 0
    try:
        for i in range(3):  # warm-up: connections, imports
            ours([f"warm-{i}"])
            peer([f"warm-{i}"])
        for r in range(reps):
            rep_ours: list[float] = []
            rep_peer: list[float] = []
            for i in range(invocations):
                users = [f"r{r}-i{i}-u{j}" for j in range(PER_INVOCATION)]
                before = servers.collector.get("requests")
                rep_ours.append(ours([f"ours-{u}" for u in users]) * 1e3)
                requests += servers.collector.get("requests") - before
                empty_us.append(ours([]) * 1e6)
                rep_peer.append(peer([f"peer-{u}" for u in users]) * 1e3)
                if r == 0 and i < max(3, invocations // 2):
                    naive_ms.append(naive([f"naive-{u}" for u in users]) * 1e3)
            ours_ms += rep_ours
            peer_ms += rep_peer
            p50s_ours.append(percentile(rep_ours, 0.5))
            p50s_peer.append(percentile(rep_peer, 0.5))
        stats = provider.stats()
    finally:
        provider.shutdown(10)
        naive_provider.shutdown(10)
        client.shutdown()
    ours_p50, peer_p50 = percentile(ours_ms, 0.5), percentile(peer_ms, 0.5)
    return [
        Result(
            "S1",
            f"latency a flush adds per invocation, {PER_INVOCATION} new exposures (p50 ms)",
            ours_p50,
            peer_p50,
            "ms",
            "segment Client.track() + flush()",
            "<= 0.1x",
            ours_p50 / peer_p50 <= 0.1,
            {
                "p99_ours_ms": percentile(ours_ms, 0.99),
                "p99_peer_ms": percentile(peer_ms, 0.99),
                "p50_provider_flush_without_flush_after_ms": percentile(naive_ms, 0.5),
                "p50_nothing_tracked_us": percentile(empty_us, 0.5),
                "p99_nothing_tracked_us": percentile(empty_us, 0.99),
                "requests_per_invocation": requests / (invocations * reps),
                "lost": stats["tracked"] - stats["delivered"],
                "invocations": invocations * reps,
                "spread_ours": spread(p50s_ours),
                "spread_peer": spread(p50s_peer),
            },
        )
    ]


def run(quick: bool) -> list[Result]:
    invocations, reps = (6, 1) if quick else (100, 2)
    with ServerHost() as servers:
        return bench_flush_latency(servers, invocations, reps)
