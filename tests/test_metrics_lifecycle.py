"""Issue 16, lifecycle: a provider registered for Prometheus metrics is still garbage-collected.

Both ways ``segment_exposure.metrics.register`` exports a provider are covered, each in a fresh interpreter
(prometheus-client picks its multiprocess mode when first imported): a collector on the default registry,
and the multiprocess mirror (``PROMETHEUS_MULTIPROC_DIR``), whose copying thread must end once no
registered provider is left. Real prometheus-client, real Segment client, the local collector.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segment_exposure import SegmentCollector

from .conftest import WRITE_KEY

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = 40

_PROBE = """
import gc, json, queue, sys, threading, weakref

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from segment.analytics.client import Client

from segment_exposure import Exposure, SegmentExposureTrackingProvider
from segment_exposure.metrics import exposition_registry, register
from tests.conftest import wait_until

write_key, host, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
EXPOSURES = "segment_exposure_provider_exposures_total"

def scrape():
    text = generate_latest(exposition_registry()).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "provider" in s.labels:
                labels = dict(s.labels)
                found[(s.name, labels.pop("provider"), tuple(sorted(labels.values())))] = s.value
    return found

def counted(name, outcome):
    return scrape().get((EXPOSURES, name, (outcome,)))

def threads():
    return {t for t in threading.enumerate() if t is not threading.current_thread()}

def queues():  # the providers' own (a Segment Client the user made stays: Segment's exit hook holds it)
    return sum(1 for o in gc.get_objects() if type(o) is queue.SimpleQueue)

gc.collect()
threads_before, queues_before = threads(), queues()
refs, wrapped, seen = [], [], []
for i in range(count):
    if i % 2:
        client = Client(write_key, host=host, upload_interval=0.05)
        wrapped.append(client)
        provider = SegmentExposureTrackingProvider(analytics=client)
    else:
        provider = SegmentExposureTrackingProvider(write_key, host, client_options={"upload_interval": 0.05})
    name = f"p{i:03}"
    register(provider, name=name, sync_interval=0.05)
    assert provider.track(Exposure("flag", "on"), {"user_id": f"user-{i:05}"})
    assert provider.flush(30)
    # registered for real: its counts reach the scrape (the mirror copies them within its interval)
    seen.append(wait_until(lambda: counted(name, "delivered") == 1, timeout=30))
    refs.append(weakref.ref(provider))
    del provider
metrics_threads = sorted({t.name for t in threads()} & {"segment-exposure-metrics"})
for client in wrapped:
    client.shutdown()  # the user's own client: stopping it is the user's part
del wrapped, client
gc.collect()
alive = sum(1 for ref in refs if ref() is not None)
threads_ended = wait_until(lambda: threads() <= threads_before, timeout=60)
threads_left = sorted(t.name for t in threads() - threads_before)
queues_left = queues() - queues_before
left = scrape()
gauges = sorted({v for (metric, _, _), v in left.items() if metric.endswith(("_size", "_capacity"))})
tracked = sum(v for (metric, _, labels), v in left.items() if metric == EXPOSURES and labels == ("tracked",))

gc.collect()
kept = SegmentExposureTrackingProvider(write_key, host, client_options={"upload_interval": 0.05})
register(kept, sync_interval=0.05)  # "default": a label no collected provider holds on to
kept.track(Exposure("flag", "on"), {"user_id": "user-kept"})
kept_counted = wait_until(lambda: counted("default", "tracked") == 1, timeout=30)
print(json.dumps({
    "seen": seen.count(True),
    "alive": alive,
    "threads_during": metrics_threads,
    "threads_ended": threads_ended,
    "threads_left": threads_left,
    "queues_left": queues_left,
    "tracked_after": tracked,
    "gauges_after": gauges,
    "kept_counted": kept_counted,
    "threads_with_kept": sorted({t.name for t in threads()} & {"segment-exposure-metrics"}),
}))
kept.shutdown(10)
"""


@pytest.mark.parametrize("mode", ["registry", "multiprocess"])
def test_registered_providers_are_collected_and_leave_no_thread_or_queue(
    mode: str, collector: SegmentCollector, tmp_path: Path
) -> None:
    """40 providers, half owning a Segment client, half wrapping one: each registered, tracks, is dropped."""
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    if mode == "multiprocess":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, WRITE_KEY, collector.url, str(PROVIDERS)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    mirror = mode == "multiprocess"
    assert report["seen"] == PROVIDERS  # each provider was exported before it was dropped
    assert report["alive"] == 0
    assert report["threads_during"] == (["segment-exposure-metrics"] if mirror else [])
    assert report["threads_ended"], report["threads_left"]
    assert report["queues_left"] <= 0
    # The default registry forgets a collected provider; multiprocess counters are totals (their files
    # outlive even the process), while the gauges of a provider that is gone fall to 0.
    assert report["tracked_after"] == (PROVIDERS if mirror else 0)
    assert report["gauges_after"] == ([0.0] if mirror else [])
    assert report["kept_counted"]
    assert report["threads_with_kept"] == (["segment-exposure-metrics"] if mirror else [])
    assert len(collector.events()) == PROVIDERS + 1


_REPLACE_PROBE = """
import json

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from segment_exposure import Exposure, SegmentExposureTrackingProvider
from segment_exposure.metrics import exposition_registry, register
from segment_exposure.testing import InMemorySegmentClient

def tracked():
    text = generate_latest(exposition_registry()).decode()
    return [s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "segment_exposure_provider_exposures_total" and s.labels["outcome"] == "tracked"]

old = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
register(old, sync_interval=60)  # no copy in between: only register() and exit copy
old.track(Exposure("flag", "on"), {"user_id": "user-1"})
old.shutdown(10)
new = SegmentExposureTrackingProvider(analytics=InMemorySegmentClient())
for i in range(3):
    new.track(Exposure("flag", "on"), {"user_id": f"user-{i + 10}"})
register(new, sync_interval=60)  # an app reloaded in the same worker, under the same label
print(json.dumps(tracked()))
new.shutdown(10)
"""


def test_a_provider_replacing_a_closed_one_counts_from_zero_in_multiprocess_mode(tmp_path: Path) -> None:
    """The mirror copies by difference: the new provider's 3 are not offset against the old one's 1."""
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", _REPLACE_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [4.0]
