"""Process-level faults (issue 9): real processes, real signals, loopback only.

* SIGKILL of the whole gunicorn destination (``python -m segment_exposure serve``: master and worker) while
  a batch is in flight to Amplitude; Segment's retry (played here: resend what was not acknowledged) to a
  restarted server then leaves every event in Amplitude exactly once.
* Segment's collector down for a whole app run: the app keeps answering fast, every exposure is counted
  exactly once as deduplicated or dropped (with its reason), including those still queued at exit
  (``shutdown``), and the process exits within its flush deadline.
* A burst beyond Segment's queue with Segment up: everything is delivered or counted, and the process exits.

SIGTERM with 10,000 queued exposures is covered by tests/test_provider_processes.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from segment_exposure import AmplitudeEmulator, SegmentCollector
from segment_exposure.server import sign

from .conftest import WRITE_KEY, wait_until
from .hardening_support import ServeProcess, segment_event

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

API_KEY = "amp-faults-key-7e6d5c4b3a"
SECRET = "faults-secret-2b3c4d5e6f"

# -- SIGKILL of the destination in the middle of a batch --------------------------------------------------


def post_batch(url: str, events: list[dict[str, Any]], timeout: float = 30) -> int | None:
    """Segment's webhook delivery: the status, or None when no answer came (connection lost)."""
    body = json.dumps(events).encode()
    headers = {"Content-Type": "application/json", "X-Signature": sign(body, SECRET)}
    try:
        return requests.post(url + "/", data=body, headers=headers, timeout=timeout).status_code
    except requests.RequestException:
        return None


def test_sigkill_mid_batch_then_segments_retry_leaves_every_event_once() -> None:
    with AmplitudeEmulator(api_keys={API_KEY}, eps_threshold=1e9) as amplitude:
        env = {
            "AMPLITUDE_API_KEY": API_KEY,
            "SEGMENT_SHARED_SECRET": SECRET,
            "AMPLITUDE_ENDPOINT": amplitude.http_api_url,
            "AMPLITUDE_DEADLINE": "20",  # the slow request below stays in flight, well inside the deadline
        }
        before = [segment_event(i, "before") for i in range(100)]
        in_flight = [segment_event(i, "inflight") for i in range(300)]
        after = [segment_event(i, "after") for i in range(100)]
        server = ServeProcess(env)
        try:
            assert post_batch(server.url, before) == 200  # acknowledged: Segment is done with it
            amplitude.inject("slow", count=1, delay=2.0)
            answer: dict[str, int | None] = {}
            sender = threading.Thread(
                target=lambda: answer.setdefault("status", post_batch(server.url, in_flight)), daemon=True
            )
            sender.start()
            # The slow fault is taken when the request reaches Amplitude: the batch is then in flight.
            assert wait_until(lambda: amplitude.pending_faults == 0, timeout=15), "the batch never left"
            killed_at = time.monotonic()
            server.kill()  # SIGKILL to master and worker: no graceful anything
            sender.join(timeout=30)
            assert not sender.is_alive()
            assert answer["status"] is None, "the killed server cannot have acknowledged the batch"
            assert time.monotonic() - killed_at < 2.0, "the sender learned of the death at once"
        finally:
            server.kill()

        # Segment retries what was not acknowledged, to the restarted destination, then sends on.
        restarted = ServeProcess(env)
        try:
            assert post_batch(restarted.url, in_flight) == 200
            assert post_batch(restarted.url, after) == 200
        finally:
            assert restarted.stop() == 0
        # Amplitude answers the killed server's request too (after its delay): wait for that answer, so
        # the copy it ingested is part of what is counted. Requests: before, in flight, resend, after.
        assert amplitude.wait_for_requests(4, timeout=15), amplitude.requests
        ids = [e["insert_id"] for e in amplitude.ingested]
        expected = {e["messageId"] for e in before + in_flight + after}
        assert len(ids) == len(set(ids)), "no event twice"
        assert set(ids) == expected, "no event lost"
        # The in-flight batch reached Amplitude twice (the killed server's request and the retry): one
        # copy of each of its events was dropped by insert_id.
        assert amplitude.duplicates_dropped == len(in_flight)


# -- an app whose Segment is down for the whole run -------------------------------------------------------

COLLECTOR_DOWN_APP = """
import atexit, json, sys, time
from segment_exposure import Exposure, SegmentExposureTrackingProvider

host, key, rounds, per_round, queue_size = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
made = []
# Registered before the provider exists, so it runs after the provider's own exit hook (atexit is LIFO).
atexit.register(lambda: print(json.dumps({"final": made[0].stats()}), flush=True))
provider = SegmentExposureTrackingProvider(
    key, host=host, max_queue_size=queue_size, flush_timeout=1.0, client_options={"upload_interval": 0.05}
)
made.append(provider)
latencies, answers, calls = [], {"true": 0, "false": 0}, 0
started = time.monotonic()
for r in range(rounds):
    for i in range(per_round):
        user = {"user_id": f"user-{(r * per_round + i) % (rounds * per_round // 2):06d}"}  # half repeat
        t0 = time.perf_counter()
        ok = provider.track(Exposure("checkout", "treatment", "exp-1"), user)
        latencies.append(time.perf_counter() - t0)
        answers["true" if ok else "false"] += 1
        calls += 1
    time.sleep(0.05)  # request pacing of a web app: Segment's client retries meanwhile
latencies.sort()
print(json.dumps({
    "calls": calls, "answers": answers, "running": provider.stats(),
    "seconds": time.monotonic() - started,
    "p50_us": latencies[len(latencies) // 2] * 1e6,
    "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    "max_ms": latencies[-1] * 1e3,
}), flush=True)
# A normal exit: the provider's exit hook flushes within flush_timeout, then counts what is left.
"""


@dataclass
class AppRun:
    lines: list[dict[str, Any]]
    returncode: int | None
    seconds_after_loop: float
    collector_requests: int
    collector_messages: int
    stderr: str

    def line(self, key: str) -> dict[str, Any]:
        found = [line for line in self.lines if key in line]
        assert found, f"no {key!r} line; the process printed {self.lines} and:\n{self.stderr[-3000:]}"
        return found[0]


def run_app(
    code: str, collector: SegmentCollector, *args: str, exit_deadline: float
) -> tuple[subprocess.Popen[str], AppRun]:
    """Run ``code``; wait for its first line, then at most ``exit_deadline`` s for it to exit (else kill)."""
    app = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), collector.url, WRITE_KEY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert app.stdout is not None and app.stderr is not None
    stderr: list[str] = []
    err_reader = threading.Thread(target=lambda: stderr.extend(app.stderr), daemon=True)  # type: ignore[arg-type]
    err_reader.start()
    lines: list[dict[str, Any]] = []
    first = app.stdout.readline()
    loop_done = time.monotonic()
    if first:
        lines.append(json.loads(first))
    rest: list[str] = []
    out_reader = threading.Thread(target=lambda: rest.extend(app.stdout), daemon=True)  # type: ignore[arg-type]
    out_reader.start()
    try:
        code_ = app.wait(timeout=exit_deadline)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait(timeout=10)
        code_ = None
    seconds = time.monotonic() - loop_done
    out_reader.join(timeout=5)
    err_reader.join(timeout=5)
    lines.extend(json.loads(line) for line in rest if line.strip())
    run = AppRun(lines, code_, seconds, collector.requests, len(collector.messages), "".join(stderr))
    return app, run


ROUNDS, PER_ROUND, QUEUE = 20, 250, 500  # 5,000 calls over ~1 s, against queues of 500


@pytest.fixture(scope="module")
def collector_down_run() -> Iterator[AppRun]:
    with SegmentCollector(WRITE_KEY) as collector:
        collector.down()
        _, run = run_app(
            COLLECTOR_DOWN_APP, collector, str(ROUNDS), str(PER_ROUND), str(QUEUE), exit_deadline=8.0
        )
        yield run


def test_collector_down_the_app_stays_fast_and_counts_every_drop(collector_down_run: AppRun) -> None:
    run = collector_down_run
    report = run.line("running")
    stats, answers, calls = report["running"], report["answers"], report["calls"]
    assert calls == ROUNDS * PER_ROUND
    # Responsive: track() never waits on Segment, however long it is down.
    assert report["p99_us"] < 2_000, report
    assert report["max_ms"] < 500, report
    # Every call is accounted for, exactly once, on the caller's thread.
    assert answers["true"] == stats["tracked"] + stats["deduplicated"]
    assert answers["false"] == stats["dropped_total"] == stats["dropped"]["queue_full"] > 0
    assert stats["tracked"] + stats["deduplicated"] + stats["dropped_total"] == calls
    assert stats["delivered"] == 0
    assert run.collector_requests > 0, "Segment's client kept trying"
    assert run.collector_messages == 0, "and nothing arrived"


def test_collector_down_the_process_exits_within_its_flush_deadline(collector_down_run: AppRun) -> None:
    run = collector_down_run
    assert run.returncode == 0, f"still running {run.seconds_after_loop:.1f} s after its work:\n{run.stderr}"
    assert run.seconds_after_loop < 6.0  # flush_timeout is 1 s
    run.line("final")


def test_collector_down_every_exposure_is_counted_once_at_exit(collector_down_run: AppRun) -> None:
    run = collector_down_run
    calls = run.line("running")["calls"]
    final = run.line("final")["final"]
    assert final["delivered"] == 0
    assert final["dropped"]["shutdown"] > 0, "what was still queued at exit is counted as shutdown"
    assert final["deduplicated"] + final["dropped_total"] == calls, final
    assert run.collector_messages == 0


BURST_APP = """
import json, sys
from segment_exposure import Exposure, SegmentExposureTrackingProvider

host, key, n, queue_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
provider = SegmentExposureTrackingProvider(
    key, host=host, max_queue_size=queue_size, client_options={"upload_interval": 0.05}
)
answers = [provider.track(Exposure("checkout", "treatment"), {"user_id": f"user-{i:06d}"}) for i in range(n)]
flushed = provider.flush(3.0)
print(json.dumps({"flushed": flushed, "accepted": sum(answers), "stats": provider.stats()}), flush=True)
"""


def test_a_burst_beyond_segments_queue_is_delivered_or_counted_and_the_process_exits() -> None:
    n, queue_size = 5_000, 200
    with SegmentCollector(WRITE_KEY) as collector:
        collector.slow(0.5, count=1)  # Segment's queue fills while its first upload is answered slowly
        _, run = run_app(BURST_APP, collector, str(n), str(queue_size), exit_deadline=4.0)
        delivered_ids = len(collector.events())
    report = run.line("flushed")
    stats = report["stats"]
    assert report["flushed"], stats
    assert stats["tracked"] == report["accepted"] == stats["delivered"] == delivered_ids
    assert stats["tracked"] + stats["dropped"]["queue_full"] == n
    assert stats["dropped_total"] == stats["dropped"]["queue_full"]
    assert run.returncode == 0, f"the process did not exit:\n{run.stderr[-2000:]}"
