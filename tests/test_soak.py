"""Soak (issue 9): the whole pipeline for a bounded time under recurring faults on both hops.

An app process (tests/hardening_soak_app.py: four threads, 1,000 users, four flags, ~1,000 track() calls a
second, variants changing and unset now and then) sends through its real Segment client to the local
Segment collector of ``LocalPipeline``, which hands every batch to ``AmplitudeExposureDestination``, which
delivers to the Amplitude emulator. Meanwhile this test injects a fault into one in every
``SOAK_FAULT_PERIOD`` (3) requests on each hop: Segment answers 503/500/429 or resets or stalls;
Amplitude answers 5xx (some after ingesting), resets (some after ingesting), throttles, answers non-JSON,
413, or stalls.

At the end the counts reconcile to zero lost: every exposure the app tracked was ingested by Amplitude
exactly once, and each user's final ``[Experiment] <flag>`` property at Amplitude is the last variant the
app sent. The app's memory stays flat: the growth over the second half of the run is bounded.

``SOAK_SECONDS`` (default 25) sets the load's duration; e.g. ``SOAK_SECONDS=300`` for five minutes. The
figures are printed (``pytest -s``), attached to the JUnit report, and written as JSON to ``SOAK_REPORT``
when that is set.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segment_exposure import AmplitudeEmulator, LocalPipeline, SegmentCollector

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "25"))
FAULT_PERIOD = int(os.environ.get("SOAK_FAULT_PERIOD", "3"))  # one request in this many is faulted
SEED = 9
APP = Path(__file__).with_name("hardening_soak_app.py")

#: Bounds on the app's growth between the middle and the end of the load (after warm-up every user and
#: flag is in the dedupe cache, so nothing should grow with the number of exposures sent).
MAX_HEAP_GROWTH = 1536 * 1024
MAX_RSS_GROWTH = 8 * 1024 * 1024

COLLECTOR_FAULTS: dict[str, Callable[[SegmentCollector], None]] = {
    "503": lambda c: c.fail(503),
    "500": lambda c: c.fail(500),
    "429": lambda c: c.rate_limit(retry_after=1),
    "reset": lambda c: c.reset(),
    "slow": lambda c: c.slow(0.3),
}


def _amplitude_fault(name: str) -> Callable[[AmplitudeEmulator], None]:
    def inject(amplitude: AmplitudeEmulator) -> None:
        amplitude.inject(name, count=1)

    return inject


AMPLITUDE_FAULTS: dict[str, Callable[[AmplitudeEmulator], None]] = {
    name: _amplitude_fault(name)
    for name in (
        "500",
        "502",
        "503",
        "504",
        "500_after_ingest",
        "reset",
        "reset_after_ingest",
        "429",
        "non_json",
        "413",
    )
}
AMPLITUDE_FAULTS["slow"] = lambda a: a.inject("slow", count=1, delay=0.5)


class FaultInjector(threading.Thread):
    """Faults in proportion to traffic: one in every ``period`` requests on each hop, chosen by seed.

    A new fault is queued on a hop only once ``period`` more requests have reached it since the last one
    (and, on Amplitude's side, the last one was used), so the faults keep pace with the traffic instead of
    piling up while Segment's client is backing off.
    """

    def __init__(self, pipeline: LocalPipeline, period: int, seed: int) -> None:
        super().__init__(name="soak-faults", daemon=True)
        self.pipeline = pipeline
        self.period = period
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.injected: Counter[str] = Counter()

    def run(self) -> None:
        collector, amplitude = self.pipeline.collector, self.pipeline.amplitude
        segment_bag: list[str] = []
        amplitude_bag: list[str] = []
        segment_mark = amplitude_mark = 0
        while not self.stop.wait(0.05):
            if collector.requests >= segment_mark + self.period:
                segment_mark = collector.requests
                name = self._draw(segment_bag, COLLECTOR_FAULTS)
                COLLECTOR_FAULTS[name](collector)
                self.injected[f"segment {name}"] += 1
            if amplitude.request_count >= amplitude_mark + self.period and amplitude.pending_faults == 0:
                amplitude_mark = amplitude.request_count
                name = self._draw(amplitude_bag, AMPLITUDE_FAULTS)
                AMPLITUDE_FAULTS[name](amplitude)
                self.injected[f"amplitude {name}"] += 1

    def _draw(self, bag: list[str], kinds: dict[str, Any]) -> str:
        """The next fault from a seeded shuffle of every kind, refilled when empty.

        Drawing each kind once per round (not independently at random) means every kind is injected once
        the run has seen as many faults as there are kinds: an independent draw once went a whole CI run
        without Amplitude's 429, the one fault that outlasts the destination's deadline and so makes
        Segment retry a batch.
        """
        if not bag:
            bag.extend(sorted(kinds))
            self.rng.shuffle(bag)
        return bag.pop()

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        self.pipeline.collector.up()
        self.pipeline.amplitude.clear_faults()


def _middle_and_end(samples: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """Median of the samples around the middle of the load, and of the last three."""
    values = [s[key] for s in samples]
    mid = len(values) // 2
    return statistics.median(values[max(0, mid - 1) : mid + 2]), statistics.median(values[-3:])


def test_soak_under_recurring_faults_reconciles_and_memory_stays_flat(
    record_property: Callable[[str, Any], None],
) -> None:
    started = time.monotonic()
    with LocalPipeline() as pipeline:
        app = subprocess.Popen(
            [
                sys.executable,
                str(APP),
                pipeline.collector.url,
                pipeline.write_key,
                str(SOAK_SECONDS),
                str(SEED),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert app.stdin is not None and app.stdout is not None and app.stderr is not None
        stderr: list[str] = []
        reader = threading.Thread(target=lambda: stderr.extend(app.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        faults = FaultInjector(pipeline, FAULT_PERIOD, SEED)
        faults.start()
        try:
            load_line = app.stdout.readline()
            faults.finish()
            assert load_line, "".join(stderr)[-3000:]
            app.stdin.write("faults over\n")
            app.stdin.flush()
            final = json.loads(app.stdout.readline() or "{}")
            assert app.wait(timeout=60) == 0, "".join(stderr)[-3000:]
        finally:
            faults.finish()
            if app.poll() is None:
                app.kill()
                app.wait(timeout=10)
            reader.join(timeout=5)
        ingested = pipeline.amplitude.ingested
        state = pipeline.amplitude.experiment_properties()
        collector_unique = pipeline.collector.events()
        figures = {
            "load_seconds": round(final["load_seconds"], 1),
            "drain_seconds": round(final["flush_seconds"], 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "track_calls": final["calls"],
            "tracked": final["stats"]["tracked"],
            "deduplicated": final["stats"]["deduplicated"],
            "dropped": final["stats"]["dropped_total"],
            "ingested_by_amplitude": len(ingested),
            "duplicates_dropped_by_insert_id": pipeline.amplitude.duplicates_dropped,
            "segment_batches_retried_after_a_destination_failure": pipeline.retried_batches,
            "amplitude_requests": pipeline.amplitude.request_count,
            "segment_requests": pipeline.collector.requests,
            "faults_injected": sum(faults.injected.values()),
            "faults_by_kind": dict(sorted(faults.injected.items())),
            "users_x_flags_checked": len(final["last"]),
        }

    samples = final["samples"]
    heap_mid, heap_end = _middle_and_end(samples, "heap")
    rss_mid, rss_end = _middle_and_end(samples, "rss")
    figures.update(
        {
            "memory_samples": len(samples),
            "heap_mid_mb": round(heap_mid / 2**20, 2),
            "heap_end_mb": round(heap_end / 2**20, 2),
            "heap_peak_mb": round(max(s["heap_peak"] for s in samples) / 2**20, 2),
            "heap_growth_second_half_kb": round((heap_end - heap_mid) / 1024, 1),
            "rss_mid_mb": round(rss_mid / 2**20, 1),
            "rss_end_mb": round(rss_end / 2**20, 1),
            "rss_peak_mb": round(max(s["rss"] for s in samples) / 2**20, 1),
            "rss_growth_second_half_mb": round((rss_end - rss_mid) / 2**20, 2),
        }
    )
    print("\nsoak figures: " + json.dumps(figures, indent=2))
    for name, value in figures.items():
        record_property(f"soak_{name}", value)
    if os.environ.get("SOAK_REPORT"):
        Path(os.environ["SOAK_REPORT"]).write_text(json.dumps(figures, indent=2), encoding="utf-8")

    stats = final["stats"]
    # The faults happened, and were survived.
    kinds = {f"segment {k}" for k in COLLECTOR_FAULTS} | {f"amplitude {k}" for k in AMPLITUDE_FAULTS}
    missing = sorted(kinds - set(faults.injected))
    assert not missing, f"not every kind of fault was injected: {missing}"
    assert figures["duplicates_dropped_by_insert_id"] > 0
    assert figures["segment_batches_retried_after_a_destination_failure"] > 0
    # The app: every call accepted (tracked or deduplicated), nothing dropped, everything delivered.
    assert final["flushed"] is True
    assert final["accepted"] == final["calls"] == stats["tracked"] + stats["deduplicated"]
    assert stats["dropped_total"] == 0, stats["dropped"]
    assert stats["delivered"] == stats["tracked"]
    # Segment -> destination -> Amplitude: each tracked exposure ingested exactly once.
    insert_ids = [e["insert_id"] for e in ingested]
    assert len(insert_ids) == len(set(insert_ids)), "no exposure ingested twice"
    assert len(ingested) == stats["tracked"] == len(collector_unique), "no exposure lost"
    assert set(insert_ids) == {m["messageId"] for m in collector_unique}
    assert pipeline.rejected == []
    # Each user's [Experiment] property at Amplitude is the last variant the app sent them.
    expected = {(user, flag): variant for user, flag, variant in final["last"]}
    assert state == expected
    # Memory: flat over the second half.
    assert heap_end - heap_mid < MAX_HEAP_GROWTH, figures
    assert rss_end - rss_mid < MAX_RSS_GROWTH, figures


# Starts processes: outside the fast inner loop.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(300, int(SOAK_SECONDS * 3 + 120)))]
