"""The application side of tests/test_soak.py: a web-app-like process tracking exposures for a while.

    python tests/hardening_soak_app.py SEGMENT_HOST WRITE_KEY SECONDS SEED

Four threads (a small web server's workers) each own 250 users and track exposures to four flags at a
paced rate for SECONDS: mostly repeats of the variant a user already has (deduplicated), sometimes a new
variant or an unset (``variant=None``). Each second the process samples its own memory (RSS, and the
Python heap through tracemalloc). It prints one JSON line when the load is done, waits for a line on stdin
(the test's "faults are over"), flushes, and prints a final JSON line with the counts, the last variant
sent per (user, flag), and the memory samples. Then it exits normally (the provider's exit hook runs).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import tracemalloc
from typing import Any

from segment_exposure import Exposure, SegmentExposureTrackingProvider

THREADS = 4
USERS_PER_THREAD = 250
CALLS_PER_SECOND_PER_THREAD = 250
FLAGS = ("checkout", "search", "nav", "pricing")
VARIANTS: tuple[str | None, ...] = ("control", "treatment", "treatment-b", None)
CHANGE_PROBABILITY = 0.1


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str]) -> int:
    host, write_key, seconds, seed = argv[1], argv[2], float(argv[3]), int(argv[4])
    tracemalloc.start()
    provider = SegmentExposureTrackingProvider(
        write_key, host=host, flush_timeout=30, client_options={"upload_interval": 0.05, "upload_size": 100}
    )
    started = time.monotonic()
    end = started + seconds
    samples: list[dict[str, Any]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        current, peak = tracemalloc.get_traced_memory()
        stats = provider.stats()
        samples.append(
            {
                "t": round(time.monotonic() - started, 2),
                "rss": _rss(),
                "heap": current,
                "heap_peak": peak,
                "tracked": stats["tracked"],
                "pending": stats["pending"],
                "segment_queue": provider.analytics.queue.qsize(),
            }
        )

    def sampler() -> None:
        while not stop_sampling.wait(1.0):
            sample()

    results: list[dict[str, Any]] = [{} for _ in range(THREADS)]

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        current: dict[tuple[str, str], str | None] = {}
        last: dict[tuple[str, str], str | None] = {}
        calls = accepted = 0
        interval = 1.0 / CALLS_PER_SECOND_PER_THREAD
        next_at = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if next_at > now:
                time.sleep(next_at - now)  # pacing the load, not waiting for a condition
            next_at += interval
            user = f"soak-{index}-{rng.randrange(USERS_PER_THREAD):04d}"
            flag = rng.choice(FLAGS)
            key = (user, flag)
            if key not in current or rng.random() < CHANGE_PROBABILITY:
                current[key] = rng.choice(VARIANTS)
            variant = current[key]
            exposure = Exposure(flag, variant, f"exp-{flag}")
            ok = provider.track(exposure, {"user_id": user, "device_id": f"device-{user}"})
            calls += 1
            if ok:
                accepted += 1
                last[key] = variant
        results[index] = {"calls": calls, "accepted": accepted, "last": last}

    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop_sampling.set()
    sampling.join()
    sample()
    load_seconds = time.monotonic() - started
    calls = sum(r["calls"] for r in results)
    accepted = sum(r["accepted"] for r in results)
    print(json.dumps({"phase": "load-done", "seconds": load_seconds, "calls": calls}), flush=True)

    sys.stdin.readline()  # the test has stopped injecting faults
    flush_started = time.monotonic()
    flushed = provider.flush(60)
    flush_seconds = time.monotonic() - flush_started
    last = [[user, flag, variant] for r in results for (user, flag), variant in r["last"].items()]
    print(
        json.dumps(
            {
                "phase": "final",
                "load_seconds": load_seconds,
                "flush_seconds": flush_seconds,
                "flushed": flushed,
                "calls": calls,
                "accepted": accepted,
                "stats": provider.stats(),
                "last": last,
                "samples": samples,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
