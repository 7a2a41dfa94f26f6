"""O1: what ExposureHook adds to an OpenFeature evaluation, on the caller's thread.

The same InMemoryProvider flag is evaluated through two OpenFeature clients in one run, one with the hook
and one without (and a third with a hook that does nothing: the SDK's own cost of running a hook),
interleaved so machine noise hits them alike. Every hooked evaluation is by a new user,
so each is a new exposure handed to a real SegmentExposureTrackingProvider (the worst case); repeats,
which the provider deduplicates, and ``after()`` called on its own are reported beside it.
"""

from __future__ import annotations

import statistics
from typing import Any

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagType, Reason
from openfeature.hook import Hook, HookContext
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from segment_exposure import SegmentExposureTrackingProvider
from segment_exposure.openfeature import ExposureHook
from segment_exposure.testing import SegmentCollector

from .common import Result, per_call_ns, spread

WRITE_KEY = "bench-write-key"
FLAG = "checkout-flow"
METADATA = {"experimentKey": "exp-bench-1", "flagType": "experiment", "flagVersion": 3}


def _contexts(n: int, tag: str) -> list[EvaluationContext]:
    return [EvaluationContext(f"o1-{tag}-{i:07d}", {"device_id": f"o1dev-{tag}-{i:07d}"}) for i in range(n)]


def bench_hook(collector: SegmentCollector, n: int, reps: int) -> list[Result]:
    big = n * (reps + 1) * 4 + 100
    provider = SegmentExposureTrackingProvider(
        WRITE_KEY, host=collector.url, max_queue_size=big, client_options={"max_queue_size": big}
    )
    hook = ExposureHook(provider)
    flags = {FLAG: InMemoryFlag("treatment", {"control": "control", "treatment": "treatment"}, METADATA)}
    in_memory = InMemoryProvider(flags)
    set_provider = getattr(api, "set_provider_and_wait", api.set_provider)  # 0.9 sets synchronously
    set_provider(in_memory, "o1-plain")
    set_provider(in_memory, "o1-hooked")
    set_provider(in_memory, "o1-noop")
    plain, hooked, noop = api.get_client("o1-plain"), api.get_client("o1-hooked"), api.get_client("o1-noop")
    hooked.add_hooks([hook])
    noop.add_hooks([Hook()])  # the SDK's own cost of running any hook: part of what the hook adds

    def evaluate(client: Any, contexts: list[EvaluationContext]) -> list[float]:
        get = client.get_string_value
        return per_call_ns(lambda i: get(FLAG, "off", contexts[i]), len(contexts))

    def after_alone(contexts: list[EvaluationContext]) -> list[float]:
        details = FlagEvaluationDetails(
            flag_key=FLAG,
            value="treatment",
            variant="treatment",
            flag_metadata=METADATA,
            reason=Reason.STATIC,
        )
        hook_contexts = [HookContext(FLAG, FlagType.STRING, "off", c) for c in contexts]
        return per_call_ns(lambda i: hook.after(hook_contexts[i], details, {}), len(contexts))

    samples: dict[str, list[float]] = {
        "plain": [],
        "noop": [],
        "hooked": [],
        "hooked_repeat": [],
        "after": [],
    }
    try:
        evaluate(plain, _contexts(n // 4 + 1, "warm-plain"))
        evaluate(hooked, _contexts(n // 4 + 1, "warm-hooked"))
        repeat = _contexts(1, "repeat") * n
        for r in range(reps):  # interleaved
            samples["plain"].append(statistics.median(evaluate(plain, _contexts(n, f"r{r}-plain"))))
            samples["noop"].append(statistics.median(evaluate(noop, _contexts(n, f"r{r}-noop"))))
            samples["hooked"].append(statistics.median(evaluate(hooked, _contexts(n, f"r{r}-hooked"))))
            samples["hooked_repeat"].append(statistics.median(evaluate(hooked, repeat)))
            samples["after"].append(statistics.median(after_alone(_contexts(n, f"r{r}-after"))))
        delivered = provider.flush(60)
        stats = provider.stats()
    finally:
        api.clear_providers()
        provider.shutdown(10)
    med = statistics.median
    plain_ns, hooked_ns = med(samples["plain"]), med(samples["hooked"])
    return [
        Result(
            "O1",
            "OpenFeature evaluation with ExposureHook vs without (ns, median)",
            hooked_ns,
            plain_ns,
            "ns/evaluation",
            "the same evaluation without the hook (InMemoryProvider)",
            "<= 3x",
            hooked_ns <= 3 * plain_ns,
            {
                "evaluations": n,
                "reps": reps,
                "measured": "per-call wall time on the caller's thread; each hooked evaluation a new user "
                "(a new $exposure through a real provider to the local collector)",
                "added_ns": hooked_ns - plain_ns,
                "hook_after_ns": med(samples["after"]),
                "noop_hook_ns": med(samples["noop"]),
                "sdk_hook_machinery_ns": med(samples["noop"]) - plain_ns,
                "hooked_repeat_ns": med(samples["hooked_repeat"]),
                "hook_stats_tracked": hook.stats()["tracked"],
                "provider_dropped": sum(stats["dropped"].values()),
                "delivered": delivered,
                "spread_hooked": spread(samples["hooked"]),
                "spread_plain": spread(samples["plain"]),
            },
        )
    ]


def run(quick: bool) -> list[Result]:
    with SegmentCollector(WRITE_KEY) as collector:
        return bench_hook(collector, *((2_000, 1) if quick else (20_000, 5)))
