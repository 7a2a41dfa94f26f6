"""``segment-exposure demo``: the whole pipeline on this machine, with counts that must reconcile.

Simulated users make requests to a pretend web app. Each request evaluates flags with the real
``LocalEvaluationClient`` (against a local flag server) through ``ExposureTrackingClient``, so
exposures flow: provider -> Segment client -> local collector -> destination -> Amplitude emulator.
Halfway, the checkout experiment is widened, so some users move from "off" into a variant. At the
end every count is checked against the others, and every user's ``[Experiment] <flag>`` property at
Amplitude against the last variant the app served them.
"""

from __future__ import annotations

import copy
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from segment_exposure.identity import bind_user

from .output import console, print_table

__all__ = ["run_demo"]

FLAGS_PER_REQUEST = ("checkout-flow", "search-ranking", "new-nav", "pricing-banner")
COUNTRIES = ("US", "CA", "GB", "DE", "FR", "JP")
THREADS = 4  # like a small web server's worker threads


@dataclass
class _Served:
    """What the app served: the last variant per (user, flag), as Amplitude should end up with it."""

    last: dict[tuple[str, str], str | None] = field(default_factory=dict)
    calls: int = 0


def _widened(flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mid-run change: checkout-flow's experiment takes 100% of users instead of 80%."""
    changed = copy.deepcopy(flags)
    for flag in changed:
        if flag["key"] == "checkout-flow":
            flag["metadata"]["flagVersion"] += 1
            for segment in flag["segments"]:
                for allocation in (segment.get("bucket") or {}).get("allocations", []):
                    allocation["range"] = [0, 100]
    return changed


def _users(n: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "user_id": f"demo-user-{i:06d}",
            "device_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "country": rng.choice(COUNTRIES),
            "platform": "Web",
        }
        for i in range(n)
    ]


def run_demo(
    *, users: int = 1000, requests: int = 4, faults: bool = False, seed: int = 7, quiet: bool = False
) -> int:
    """Run the simulation; 0 if every count reconciles, 1 if anything was lost or is wrong."""
    try:
        from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig, User
    except ImportError:
        raise ImportError(
            "the demo needs the Amplitude Experiment SDK: pip install 'segment-exposure[experiment,cli]'"
        ) from None
    from ..emulators.pipeline import LocalPipeline
    from ..experiment import ExposureTrackingClient

    rng = random.Random(seed)
    people = _users(users, rng)
    started = time.monotonic()
    with LocalPipeline() as pipeline:
        if faults:
            _inject_faults(pipeline)
        provider = pipeline.provider()
        config = LocalEvaluationConfig(
            server_url=pipeline.flag_server.url, flag_config_polling_interval_millis=100
        )
        local = LocalEvaluationClient(pipeline.flag_server.deployment_key, config)
        local.start()
        try:
            experiment = ExposureTrackingClient(local, provider)
            served = _Served()

            def one_request(person: dict[str, Any]) -> None:
                user = User(**person)
                with bind_user(user):
                    for flag in FLAGS_PER_REQUEST:
                        variant = experiment.variant(None, flag)
                        experiment.variant(None, flag)  # a repeat inside the request: evaluated once
                        served.calls += 2
                        if flag == "pricing-banner":
                            continue  # trackExposure: false, so Amplitude never hears of it
                        key = getattr(variant, "key", None)
                        is_default = (getattr(variant, "metadata", None) or {}).get("default") is True
                        served.last[(person["user_id"], flag)] = None if is_default else key

            plan = [[p for p in people] for _ in range(requests)]
            for r in plan:
                rng.shuffle(r)
            half = requests // 2 or 1
            with _progress(quiet, users * requests) as advance, ThreadPoolExecutor(THREADS) as pool:
                for index, round_people in enumerate(plan):
                    if index == half:
                        generation = pipeline.flag_server.set_flags(_widened(pipeline.flag_server.flags))
                        pipeline.flag_server.wait_for_generation_served(generation, timeout=10)
                        _wait_for_client_to_see(local, generation, pipeline)
                    for _ in pool.map(one_request, round_people):
                        advance()
            delivered = provider.flush(timeout=45)
        finally:
            local.stop()
        return _report(pipeline, provider, experiment, served, delivered, time.monotonic() - started, faults)


def _wait_for_client_to_see(local: Any, generation: int, pipeline: Any) -> None:
    """Poll until the local client evaluates with the new config (its poller fetched it)."""
    from amplitude_experiment import User

    probe = User(user_id="demo-probe-widened-0000")
    deadline = time.monotonic() + 10
    widened_version = next(
        f["metadata"]["flagVersion"] for f in pipeline.flag_server.flags if f["key"] == "checkout-flow"
    )
    while time.monotonic() < deadline:
        variants = local.evaluate_v2(probe, {"checkout-flow"})
        version = (getattr(variants.get("checkout-flow"), "metadata", None) or {}).get("flagVersion")
        if version == widened_version:
            return
        time.sleep(0.02)
    raise RuntimeError("the local Experiment client did not pick up the changed flags within 10 s")


def _inject_faults(pipeline: Any) -> None:
    """Faults on both hops: Segment's collector, and Amplitude behind the destination."""
    pipeline.collector.fail(503, count=3)
    pipeline.collector.reset(count=2)
    pipeline.collector.rate_limit(retry_after=1, count=1)
    pipeline.collector.slow(0.3, count=2)
    amplitude = pipeline.amplitude
    for fault in (
        "503",
        "500_after_ingest",
        "reset",
        "429",
        "non_json",
        "500_after_ingest",
        "502",
        "reset_after_ingest",
    ):
        amplitude.inject(fault, count=1)


class _progress:
    """A rich progress bar, or nothing when quiet or rich is missing."""

    def __init__(self, quiet: bool, total: int) -> None:
        self.total = total
        self.bar: Any = None
        out = None if quiet else console()
        if out is not None:
            from rich.progress import Progress

            self.bar = Progress(console=out, transient=True)

    def __enter__(self) -> Callable[[], None]:
        if self.bar is None:
            return lambda: None
        self.bar.start()
        task = self.bar.add_task("simulating requests", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _report(
    pipeline: Any,
    provider: Any,
    experiment: Any,
    served: _Served,
    flushed: bool,
    elapsed: float,
    faults: bool,
) -> int:
    p = provider.stats()
    e = experiment.stats()
    collector_unique = len(pipeline.collector.events())
    ingested = pipeline.amplitude.ingested
    state = pipeline.amplitude.experiment_properties()
    mismatches = [key for key, value in served.last.items() if state.get(key, "<never tracked>") != value]
    counts = [
        ("variant() calls", served.calls),
        ("flag evaluations (SDK)", e.get("evaluations", 0)),
        ("exposures tracked (sent to Segment)", p["tracked"]),
        ("exposures deduplicated by the provider", p["deduplicated"]),
        ("not tracked: trackExposure false", e.get("suppressed", {}).get("track_exposure_false", 0)),
        ("delivered to Segment (unique messageIds)", collector_unique),
        ("Segment batches retried after a destination failure", pipeline.retried_batches),
        ("events ingested by Amplitude", len(ingested)),
        ("duplicates removed by insert_id", pipeline.amplitude.duplicates_dropped),
        ("rejected by the destination", len(pipeline.rejected)),
        ("dropped by the provider", p["dropped_total"]),
        ("users whose Amplitude property differs from what they were served", len(mismatches)),
    ]
    print_table(
        f"segment-exposure demo ({'with faults, ' if faults else ''}{elapsed:.1f} s)",
        ("count", "value"),
        counts,
    )
    per_flag: dict[str, Counter[str]] = {}
    for (_, flag), value in state.items():
        per_flag.setdefault(flag, Counter())[value or "(unset: left the experiment)"] += 1
    rows = [(flag, variant, n) for flag in sorted(per_flag) for variant, n in sorted(per_flag[flag].items())]
    print_table("[Experiment] <flag> user property at Amplitude", ("flag", "state", "users"), rows)
    checks = {
        "everything queued was delivered": flushed,
        "tracked == delivered to Segment": p["tracked"] == p["delivered"] == collector_unique,
        "delivered to Segment == ingested by Amplitude": collector_unique == len(ingested),
        "nothing dropped or rejected": p["dropped_total"] == 0 and not pipeline.rejected,
        "every user's property matches what was served": not mismatches,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        print("RECONCILIATION FAILED: " + "; ".join(failed))
        return 1
    print("reconciled: every exposure delivered exactly once; nothing lost")
    return 0
