"""K1: the provider over RudderStack's client, on the caller's thread, against that client's own track().

The same exposures through ``SegmentExposureTrackingProvider(sdk="rudderstack")`` and through a direct
``rudderstack.analytics.Client.track()`` (what a hand-written provider would call), interleaved in one run
so machine noise hits both alike, both posting to one local RudderStack data plane.
"""

from __future__ import annotations

import statistics
from typing import Any

from rudderstack.analytics import Client

from segment_exposure import Exposure, RudderStackCollector, SegmentExposureTrackingProvider

from .common import Result, per_call_ns, percentile, spread
from .provider import direct_track, users_for

WRITE_KEY = "bench-write-key"
EXPOSURE = Exposure("checkout-flow", "treatment", "exp-1")


def bench_track(collector: RudderStackCollector, n: int, reps: int) -> list[Result]:
    big = n * (reps + 1) * 2 + 10
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY,
        host=collector.url,
        sdk="rudderstack",
        max_queue_size=big,
        client_options={"max_queue_size": big},
    )
    client = Client(WRITE_KEY, host=collector.url, max_queue_size=big)

    def ours(user: dict[str, str]) -> object:
        return provider.track(EXPOSURE, user)

    direct = direct_track(client)

    def median_ns(call: Any, users: list[dict[str, str]]) -> float:
        return statistics.median(per_call_ns(lambda i: call(users[i]), len(users)))

    new_ours: list[float] = []
    new_direct: list[float] = []
    try:
        for u in users_for(200, "warm"):
            ours(u)
            direct(u)
        provider.flush(30)
        client.flush()
        for r in range(reps):
            new_ours.append(median_ns(ours, users_for(n, f"k1-{r}")))
            new_direct.append(median_ns(direct, users_for(n, f"k1d-{r}")))
            provider.flush(60)
            client.flush()
        ours_samples = per_call_ns(lambda i: ours(tail[i]), len(tail := users_for(n, "k1-p99")))
        direct_samples = per_call_ns(lambda i: direct(tail_d[i]), len(tail_d := users_for(n, "k1d-p99")))
        delivered = provider.flush(60)
        client.flush()
    finally:
        provider.shutdown(30)
        client.shutdown()
    ours_ns, direct_ns = statistics.median(new_ours), statistics.median(new_direct)
    return [
        Result(
            "K1",
            "track() over RudderStack's client on the caller's thread, new exposure (median ns)",
            ours_ns,
            direct_ns,
            "ns/call",
            "rudderstack Client.track()",
            "<= 0.5x",
            ours_ns / direct_ns <= 0.5,
            {
                "p99_ours": percentile(ours_samples, 0.99),
                "p99_peer": percentile(direct_samples, 0.99),
                "spread_ours": spread(new_ours),
                "spread_peer": spread(new_direct),
                "all_delivered": delivered,
            },
        )
    ]


def run(quick: bool) -> list[Result]:
    n, reps = (2_000, 2) if quick else (20_000, 5)
    with RudderStackCollector(WRITE_KEY) as collector:
        return bench_track(collector, n, reps)
