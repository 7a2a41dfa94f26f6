"""B1, B1', B2, M1: the provider on the caller's thread, its throughput, and its dedupe memory."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from segment.analytics import Client

from segment_exposure import Exposure, SegmentCollector, SegmentExposureTrackingProvider
from segment_exposure.tracking.dedupe import DedupeCache, dedupe_key

from .common import Result, per_call_ns, percentile, spread

WRITE_KEY = "bench-write-key"
EXPOSURE = Exposure("checkout-flow", "treatment", "exp-1")
PROPS = EXPOSURE.properties()


def users_for(n: int, prefix: str) -> list[dict[str, str]]:
    return [{"user_id": f"{prefix}-{i:07d}", "device_id": str(uuid.UUID(int=i))} for i in range(n)]


def direct_track(client: Any) -> Any:
    """A direct ``Client.track()`` with what the provider would send for the same exposure (Segment's
    client, or RudderStack's: the same signature)."""

    def call(user: dict[str, str]) -> None:
        client.track(
            user_id=user["user_id"],
            anonymous_id=user["device_id"],
            event="$exposure",
            properties=dict(PROPS),
            context={},
        )

    return call


def _samples(call: Callable[[Any], object], items: list[Any]) -> list[float]:
    return per_call_ns(lambda i: call(items[i]), len(items))


def _median_ns(call: Callable[[Any], object], items: list[Any]) -> float:
    return statistics.median(_samples(call, items))


def bench_track(collector: SegmentCollector, n: int, reps: int) -> list[Result]:
    big = n * reps * 4 + 10
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, max_queue_size=big, client_options={"max_queue_size": big}
    )
    client = Client(WRITE_KEY, host=collector.url, max_queue_size=big)
    direct = direct_track(client)

    def ours(user: dict[str, str]) -> object:
        return provider.track(EXPOSURE, user)

    new_ours: list[float] = []
    new_direct: list[float] = []
    rep_ours: list[float] = []
    rep_direct: list[float] = []
    rep_floor: list[float] = []
    med = statistics.median
    try:
        # Warm-up, then interleave ours and the peer so machine noise hits both alike.
        for u in users_for(200, "warm"):
            ours(u)
            direct(u)
        provider.flush(30)
        client.flush()
        for r in range(reps):
            users = users_for(n, f"rep{r}")
            new_ours.append(_median_ns(ours, users))
            new_direct.append(_median_ns(direct, users))
            provider.flush(60)
            client.flush()
            rep_ours.append(_median_ns(ours, users))  # every call now a dedupe hit
            rep_direct.append(_median_ns(direct, users))
            keys = [dedupe_key(u["user_id"], u["device_id"], "checkout-flow", "exp-1") for u in users]
            rep_floor.append(_median_ns(dict.fromkeys(keys, 1).get, keys))
            provider.flush(60)
            client.flush()
        # Tail latency of a new exposure, from one more interleaved pair.
        ours_samples = _samples(ours, users_for(n, "p99"))
        direct_samples = _samples(direct, users_for(n, "p99d"))
    finally:
        provider.shutdown(30)
        client.shutdown()
    b1 = Result(
        "B1",
        "track() on the caller's thread, new exposure (median ns)",
        med(new_ours),
        med(new_direct),
        "ns/call",
        "segment Client.track()",
        "<= 0.5x",
        med(new_ours) / med(new_direct) <= 0.5,
        {
            "p99_ours": percentile(ours_samples, 0.99),
            "p99_peer": percentile(direct_samples, 0.99),
            "spread_ours": spread(new_ours),
            "spread_peer": spread(new_direct),
        },
    )
    b1r = Result(
        "B1'",
        "track() on the caller's thread, repeat (dedupe hit, median ns)",
        med(rep_ours),
        med(rep_direct),
        "ns/call",
        "segment Client.track()",
        "<= 0.05x",
        med(rep_ours) / med(rep_direct) <= 0.05,
        {"floor_dict_lookup_ns": med(rep_floor), "spread_ours": spread(rep_ours)},
    )
    return [b1, b1r]


def bench_throughput(collector: SegmentCollector, n: int, reps: int) -> list[Result]:
    ours_rates: list[float] = []
    raw_rates: list[float] = []
    for r in range(reps):
        for which in ("ours", "raw"):
            collector.clear()
            users = users_for(n, f"tp{r}{which}")
            if which == "ours":
                provider = SegmentExposureTrackingProvider(
                    WRITE_KEY,
                    host=collector.url,
                    max_queue_size=n + 10,
                    client_options={"max_queue_size": n + 10},
                )
                start = time.perf_counter()
                for u in users:
                    provider.track(EXPOSURE, u)
                assert collector.wait_for(n, timeout=120)
                ours_rates.append(n / (time.perf_counter() - start))
                provider.shutdown(10)
            else:
                client = Client(WRITE_KEY, host=collector.url, max_queue_size=n + 10)
                direct = direct_track(client)
                start = time.perf_counter()
                for u in users:
                    direct(u)
                assert collector.wait_for(n, timeout=120)
                raw_rates.append(n / (time.perf_counter() - start))
                client.shutdown()
    ours, raw = statistics.median(ours_rates), statistics.median(raw_rates)
    return [
        Result(
            "B2",
            "exposures/s delivered to the local collector",
            ours,
            raw,
            "events/s",
            "raw segment Client",
            ">= 0.9x",
            ours / raw >= 0.9,
            {"spread_ours": spread(ours_rates), "spread_peer": spread(raw_rates)},
        )
    ]


def bench_dedupe_memory(capacity: int = 65_536) -> list[Result]:
    users = users_for(capacity, "mem")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = DedupeCache(capacity)
    now = time.time()
    for u in users:
        cache.decide(dedupe_key(u["user_id"], u["device_id"], "checkout-flow", "exp-1"), "treatment", now)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    mb = used / 1e6
    return [
        Result(
            "M1",
            f"dedupe cache memory at capacity ({capacity:,} entries)",
            mb,
            20.0,
            "MB",
            "goal ceiling",
            "<= 20 MB",
            mb <= 20.0,
            {"bytes_per_entry": used / capacity},
        )
    ]


def run(quick: bool) -> list[Result]:
    n, reps = (2_000, 2) if quick else (20_000, 5)
    with SegmentCollector(WRITE_KEY) as collector:
        results = bench_track(collector, n, reps)
        results += bench_throughput(collector, 2_000 if quick else 20_000, 1 if quick else 3)
    results += bench_dedupe_memory()
    return results
