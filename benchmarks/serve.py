"""B7: worker CPU per delivered event through the real ``segment-exposure serve``, against a floor.

``serve`` runs as users run it (gunicorn, its default worker class), with one worker so that its CPU time can
be read from ``/proc``; the Amplitude emulator runs in its own process (:class:`ServerHost`). Signed webhook
batches of 1, 100 and 1000 Segment events are posted one after another over one keep-alive connection;
the worker's user + system CPU time over the run, divided by the events delivered, is compared with a floor
measured in this process on the same bodies: ``json.loads`` of the request body + ``json.dumps`` of the
Amplitude events + the HMAC-SHA1 of the body. Goal: at most 2x the floor at batch 1000. Linux only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import statistics
import time
from typing import Any

import requests

from segment_exposure import to_amplitude_event
from segment_exposure.server import sign

from .common import Result
from .delivery import API_KEY, NO_THROTTLE, ServerHost, segment_events
from .hostile import Serve

SECRET = "whsec-bench-b7-5e4d3c2b1a"
#: Batch size -> requests per repetition (full run).
LOADS = {1: 1500, 100: 60, 1000: 12}
QUICK_LOADS = {1: 100, 100: 10, 1000: 3}
GOAL = 2.0


def _worker_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bodies(batch: int, count: int, tag: str) -> list[tuple[bytes, list[dict[str, Any]]]]:
    out = []
    for n in range(count):
        events = segment_events(batch, f"{tag}{n}")
        out.append((json.dumps(events).encode(), [to_amplitude_event(e) for e in events]))
    return out


def _floor(bodies: list[tuple[bytes, list[dict[str, Any]]]]) -> float:
    """CPU seconds of json.loads(body) + json.dumps(Amplitude events) + HMAC, for all ``bodies``."""
    key = SECRET.encode()
    started = time.process_time()
    for body, amplitude in bodies:
        json.loads(body)
        json.dumps(amplitude).encode()
        hmac.new(key, body, hashlib.sha1).hexdigest()
    return time.process_time() - started


def _run(
    server: Serve, pid: int, host: ServerHost, bodies: list[tuple[bytes, list[dict[str, Any]]]]
) -> float:
    """Worker CPU seconds to deliver ``bodies``; every answer must be 200 and every event ingested."""
    signed = [
        (body, {"Content-Type": "application/json", "X-Signature": sign(body, SECRET)}) for body, _ in bodies
    ]
    expected = sum(len(amplitude) for _, amplitude in bodies)
    host.amplitude.call("reset")
    with requests.Session() as session:
        session.trust_env = False
        before = _worker_cpu(pid)
        for body, headers in signed:
            response = session.post(server.url + "/", data=body, headers=headers, timeout=60)
            if response.status_code != 200:
                raise RuntimeError(f"B7: HTTP {response.status_code}: {response.text[:300]}")
        used = _worker_cpu(pid) - before
    if not host.amplitude.call("wait_for_ingested", expected, 60):
        raise RuntimeError("B7: not every event was ingested")
    return used


def bench_serve(quick: bool) -> list[Result]:
    loads = QUICK_LOADS if quick else LOADS
    reps = 1 if quick else 3
    figures: dict[int, dict[str, float]] = {}
    with ServerHost(amplitude_options={"eps_threshold": NO_THROTTLE}) as host:
        server = Serve(host.urls["amplitude"], workers=1, api_key=API_KEY, secret=SECRET)
        try:
            (pid,) = server.worker_pids()
            _run(server, pid, host, _bodies(100, 5, "warm"))
            for batch, count in loads.items():
                ours: list[float] = []
                floors: list[float] = []
                for r in range(reps):
                    bodies = _bodies(batch, count, f"b7-{batch}-{r}-")
                    events = batch * count
                    ours.append(_run(server, pid, host, bodies) / events)
                    floors.append(_floor(bodies) / events)
                us, floor = statistics.median(ours) * 1e6, statistics.median(floors) * 1e6
                figures[batch] = {
                    "us_per_event": us,
                    "floor_us_per_event": floor,
                    "ratio": us / floor if floor else float("nan"),
                    "events_per_s_per_core": 1e6 / us if us else float("nan"),
                }
        finally:
            server.stop()
    top = figures[1000]
    detail: dict[str, Any] = {
        "server": "segment-exposure serve, 1 gunicorn worker (default worker class), keep-alive client",
        "clock": f"/proc/<worker>/stat, {os.sysconf('SC_CLK_TCK')} ticks/s",
    }
    for batch, values in figures.items():
        for key, value in values.items():
            detail[f"batch{batch}_{key}"] = round(value, 2)
    return [
        Result(
            "B7",
            "serve: worker CPU per delivered event, batch 1000 (us)",
            top["us_per_event"],
            top["floor_us_per_event"],
            "us/event",
            "floor: json.loads(body) + json.dumps(amplitude events) + HMAC",
            f"<= {GOAL:g}x",
            top["ratio"] <= GOAL,
            detail,
        )
    ]


def run(quick: bool) -> list[Result]:
    return bench_serve(quick)
