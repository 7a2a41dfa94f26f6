"""B3: the whole cost of tracking an exposure from an Experiment evaluation, ours against Amplitude's own.

Both sides evaluate the same flag for the same users with a real ``LocalEvaluationClient`` fed by the same
local FlagConfigServer, and deliver to local servers in a child process (see ``ServerHost``), so the CPU
time of this process (``time.process_time``: every thread, including the background senders) is the
client's alone. Evaluation is measured on its own and subtracted from both, so the figure compares exposure
tracking: deciding, deduplicating, building, queueing, serialising and sending each exposure.
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

from segment_exposure import ExposureTrackingClient, SegmentExposureTrackingProvider, route_sdk_exposures

from .common import Result, spread
from .delivery import (
    API_KEY,
    DEPLOYMENT_KEY,
    NO_THROTTLE,
    WRITE_KEY,
    ServerHost,
    quiet_logger,
    stop_amplitude,
)

FLAG = "bench-checkout"

#: An experiment that puts every user in control or treatment, so each new user makes exactly one exposure
#: on both sides (amplitude-experiment sends nothing for a default variant; we would send an unset).
BENCH_FLAG: dict[str, Any] = {
    "key": FLAG,
    "metadata": {
        "deployed": True,
        "evaluationMode": "local",
        "flagType": "experiment",
        "flagVersion": 1,
        "experimentKey": "exp-bench-1",
    },
    "segments": [
        {
            "bucket": {
                "selector": ["context", "user", "user_id"],
                "salt": "bench-checkout-7c1e",
                "allocations": [
                    {
                        "range": [0, 100],
                        "distributions": [
                            {"variant": "control", "range": [0, 21474837]},
                            {"variant": "treatment", "range": [21474837, 42949673]},
                        ],
                    }
                ],
            },
            "metadata": {"segmentName": "All Other Users"},
            "variant": "off",
        }
    ],
    "variants": {
        "off": {"key": "off", "metadata": {"default": True}},
        "control": {"key": "control", "value": "control"},
        "treatment": {"key": "treatment", "value": "treatment"},
    },
}


def _users(n: int, tag: str) -> list[Any]:
    from amplitude_experiment import User

    return [User(user_id=f"b3-{tag}-{i:07d}", device_id=f"b3dev-{tag}-{i:07d}") for i in range(n)]


def _cpu_us(work: Callable[[], object], n: int) -> float:
    """CPU time of the whole process (all threads) for ``work``, in microseconds per item."""
    gc.collect()
    start = time.process_time_ns()
    work()
    return (time.process_time_ns() - start) / n / 1000


def bench_exposure_cost(host: ServerHost, n: int, reps: int, warm: int) -> list[Result]:
    from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig
    from amplitude_experiment.exposure import ExposureConfig
    from amplitude_experiment.local.evaluate_options import EvaluateOptions

    logger = quiet_logger("bench.amplitude-experiment")
    tracks = EvaluateOptions(tracks_exposure=True)
    keys = {FLAG}
    big = (n * (reps + 1) + warm * 2) * 2 + 100

    # Ours: one LocalEvaluationClient, wrapped (ExposureTrackingClient) and also routed (evaluate_v2 with
    # tracks_exposure=True through route_sdk_exposures), with a provider and its real Segment client.
    local = LocalEvaluationClient(
        DEPLOYMENT_KEY, LocalEvaluationConfig(server_url=host.urls["flags"], logger=logger)
    )
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, host=host.urls["collector"], max_queue_size=big, client_options={"max_queue_size": big}
    )
    ours_client = ExposureTrackingClient(local, provider)
    route_sdk_exposures(local, provider)
    # The peer: amplitude-experiment's own ExposureService, sending with amplitude-analytics 1.3.0.
    peer = LocalEvaluationClient(
        DEPLOYMENT_KEY,
        LocalEvaluationConfig(
            server_url=host.urls["flags"],
            logger=logger,
            exposure_config=ExposureConfig(
                api_key=API_KEY,
                server_url=host.urls["amplitude"],
                logger=quiet_logger("bench.amplitude-analytics"),
            ),
        ),
    )
    local.start()
    peer.start()
    peer_amplitude = peer.exposure_service.amplitude

    def evaluate_only(users: list[Any]) -> None:
        for user in users:
            local.evaluate_v2(user, keys)

    def ours(users: list[Any]) -> None:
        host.collector.call("clear")
        for user in users:
            ours_client.variant(user, FLAG)
        provider.flush(60)
        if not host.collector.call("wait_for", len(users), 60):
            raise RuntimeError("ours: the collector did not receive every exposure")

    def ours_sdk_native(users: list[Any]) -> None:
        host.collector.call("clear")
        for user in users:
            local.evaluate_v2(user, keys, tracks)
        provider.flush(60)
        if not host.collector.call("wait_for", len(users), 60):
            raise RuntimeError("ours (SDK-native route): the collector did not receive every exposure")

    def amplitude_own(users: list[Any]) -> None:
        host.amplitude.call("reset")
        for user in users:
            peer.evaluate_v2(user, keys, tracks)
        futures: list[Future[Any]] = [f for f in peer_amplitude.flush() if f is not None]
        wait(futures, timeout=60)
        if not host.amplitude.call("wait_for_ingested", len(users), 60):
            raise RuntimeError("amplitude-experiment: the emulator did not ingest every exposure")

    paths: dict[str, Callable[[list[Any]], None]] = {
        "evaluate": evaluate_only,
        "ours": ours,
        "ours_sdk_native": ours_sdk_native,
        "peer": amplitude_own,
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for name, path in paths.items():  # warm-up
            path(_users(warm, f"warm-{name}"))
        for r in range(reps):  # interleaved, so machine noise hits every path alike
            for name, path in paths.items():
                users = _users(n, f"r{r}-{name}")
                samples[name].append(_cpu_us(functools.partial(path, users), n))
        provider_stats = provider.stats()
    finally:
        peer.stop(10)
        stop_amplitude(peer_amplitude)
        local.stop(10)
        provider.shutdown(10)
    tracking = {
        name: [total - ev for total, ev in zip(samples[name], samples["evaluate"], strict=True)]
        for name in ("ours", "ours_sdk_native", "peer")
    }
    med = statistics.median
    ours_us, peer_us = med(tracking["ours"]), med(tracking["peer"])
    return [
        Result(
            "B3",
            "CPU per new exposure, evaluation subtracted (us, all threads)",
            ours_us,
            peer_us,
            "us/exposure",
            "amplitude-experiment ExposureService",
            "<= 0.33x",
            ours_us / peer_us <= 1 / 3,
            {
                "exposures": n,
                "reps": reps,
                "measured": "process_time over N new users (one exposure each) from the first evaluation "
                "until the local server has every exposure, minus the same N evaluate_v2() calls alone",
                "ours_path": "ExposureTrackingClient.variant() -> provider -> Segment client -> collector",
                "peer_path": "evaluate_v2(tracks_exposure=True) -> ExposureService -> amplitude-analytics "
                "(ExposureConfig defaults, flushed at the end) -> Amplitude emulator",
                "evaluate_us": med(samples["evaluate"]),
                "total_ours_us": med(samples["ours"]),
                "total_peer_us": med(samples["peer"]),
                "total_ratio": med(samples["ours"]) / med(samples["peer"]),
                "ours_sdk_native_us": med(tracking["ours_sdk_native"]),
                "ours_sdk_native_ratio": med(tracking["ours_sdk_native"]) / peer_us,
                "ours_dropped": sum(provider_stats["dropped"].values()),
                "spread_ours": spread(tracking["ours"]),
                "spread_peer": spread(tracking["peer"]),
            },
        )
    ]


def run(quick: bool) -> list[Result]:
    with ServerHost(amplitude_options={"eps_threshold": NO_THROTTLE}, flags=[BENCH_FLAG]) as host:
        return bench_exposure_cost(host, *((1_000, 1, 200) if quick else (10_000, 5, 1_000)))
