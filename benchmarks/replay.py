"""R1: ``segment-exposure replay`` into the Amplitude emulator: events/s, and CPU per event against a floor.

The floor is the least any replayer in Python must do per archived event, measured on the same files in
the same run: gunzip, ``json.loads`` of the Segment event, ``json.dumps`` of something of its size. Ours is
the whole replay (read, translate, dedupe in the SQLite state, pace, send over HTTP, record), CPU time of
this process (the emulator runs in a child process, :class:`benchmarks.delivery.ServerHost`, as Amplitude
runs elsewhere). Goal: at most 2x the floor's CPU per event.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import random
import statistics
import tempfile
import time
import zlib
from pathlib import Path

from segment_exposure import AmplitudeClient, to_amplitude_event
from segment_exposure.replay import Catalog, DeliveryState, Replay, ReplayOptions, Shard, TimeWindow

from .common import Result, spread
from .delivery import API_KEY, NO_THROTTLE, ServerHost

__all__ = ["floor_cpu", "run", "translator_cpu", "write_archive"]

DAY_MS = 86_400_000
START_DAY = 1714521600000  # 2024-05-01
AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
)


def _template() -> str:
    """One archived Segment ``$exposure`` (analytics.js through Segment), with %-placeholders."""
    event = {
        "anonymousId": "anon-%(user)08d-4b1c-9f7e-3a2d5c6b7e8f",
        "userId": "user-%(user)08d",
        "messageId": "ajs-next-%(n)012d-%(salt)016x",
        "type": "track",
        "event": "$exposure",
        "properties": {"flag_key": "flag-%(flag)d", "variant": "%(variant)s"},
        "context": {
            "library": {"name": "analytics.js", "version": "next-1.64.0"},
            "page": {"path": "/checkout", "url": "https://shop.example.com/checkout", "title": "Checkout"},
            "userAgent": "%(agent)s",
            "locale": "en-US",
            "ip": "203.0.113.%(ip)d",
        },
        "integrations": {"Actions Amplitude": False},
        "originalTimestamp": "%(stamp)s",
        "sentAt": "%(stamp)s",
        "receivedAt": "%(stamp)s",
        "timestamp": "%(stamp)s",
        "version": 2,
    }
    return json.dumps(event, separators=(",", ":")) + "\n"


def write_archive(root: Path, events: int, *, per_file: int = 20_000, seed: int = 27) -> list[Path]:
    """``events`` exposures in Segment's S3 layout under ``root``, five files per received-day folder."""
    rng = random.Random(seed)
    template = _template()
    paths = []
    for start in range(0, events, per_file):
        day = START_DAY + (start // (per_file * 5)) * DAY_MS
        folder = root / "segment-logs" / "bench-source" / str(day)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{start // per_file:06d}.gz"
        lines = []
        for n in range(start, min(events, start + per_file)):
            when = day + (n * 37) % DAY_MS
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when // 1000)) + f".{when % 1000:03d}Z"
            values = {
                "user": rng.randrange(1, 50_000),
                "n": n,
                "salt": rng.getrandbits(64),
                "flag": n % 12,
                "variant": ("control", "treatment")[n % 2],
                "agent": AGENTS[n % len(AGENTS)],
                "ip": n % 250,
                "stamp": stamp,
            }
            lines.append(template % values)
        path.write_bytes(gzip.compress("".join(lines).encode(), compresslevel=1))
        paths.append(path)
    return paths


def floor_cpu(paths: list[Path]) -> tuple[float, int]:
    """CPU seconds to gunzip, ``json.loads`` and ``json.dumps`` every line; and the number of lines."""
    started = time.process_time()
    count = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for path in paths:
        with open(path, "rb") as handle:
            decompressor = zlib.decompressobj(31)
            pending = b""
            while chunk := handle.read(1 << 18):
                lines = (pending + decompressor.decompress(chunk)).split(b"\n")
                pending = lines.pop()
                for text in lines:
                    dumps(json.loads(text))
                    count += 1
    return time.process_time() - started, count


def translator_cpu(paths: list[Path]) -> float:
    """CPU microseconds per event of ``to_amplitude_event`` alone (part of ours, not of the floor)."""
    events = []
    for path in paths[:2]:
        for text in zlib.decompressobj(31).decompress(path.read_bytes()).split(b"\n")[:-1]:
            events.append(json.loads(text))
    started = time.process_time()
    for event in events:
        to_amplitude_event(event)
    return (time.process_time() - started) / len(events) * 1e6


def _ours(paths_root: Path, batch_url: str, work: Path) -> tuple[float, float, int]:
    """CPU seconds and wall seconds of one replay of the archive; and the events delivered."""
    state = DeliveryState(str(work / f"state-{time.monotonic_ns()}.sqlite3"))
    client = AmplitudeClient(API_KEY, api="batch", endpoint=batch_url, deadline=300)
    files = list(Catalog(TimeWindow(), Shard()).files([str(paths_root)]))
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        report = Replay(ReplayOptions(), state, client).run(files)
    finally:
        state.close()
        client.close()
    return time.process_time() - cpu, time.perf_counter() - wall, report.delivered


def run(quick: bool) -> list[Result]:
    # The collector settings the command uses (segment_exposure/cli/replay_cmd.py), for both sides.
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        return _run(quick)
    finally:
        gc.set_threshold(*thresholds)


def _run(quick: bool) -> list[Result]:
    events, repeats = (5_000, 1) if quick else (200_000, 3)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as scratch:
        work = Path(scratch)
        paths = write_archive(work / "archive", events)
        options = {"eps_threshold": NO_THROTTLE, "batch_eps_threshold": NO_THROTTLE}
        with ServerHost(amplitude_options=options) as host:
            batch_url = host.urls["amplitude"].replace("/2/httpapi", "/batch")
            floors, cpus, walls = [], [], []
            for _ in range(repeats):
                floor, lines = floor_cpu(paths)
                floors.append(floor / lines * 1e6)
                host.amplitude.call("reset")
                cpu, wall, delivered = _ours(work / "archive", batch_url, work)
                if delivered != events or host.amplitude.get("ingested_count") != events:
                    raise RuntimeError(f"R1: {delivered} of {events} delivered")
                cpus.append(cpu / events * 1e6)
                walls.append(events / wall)
        size = sum(os.path.getsize(p) for p in paths)
        translator = translator_cpu(paths)
    ours, peer = statistics.median(cpus), statistics.median(floors)
    return [
        Result(
            id="R1",
            what="replay CPU per event vs gunzip+json.loads+json.dumps (us)",
            ours=ours,
            peer=peer,
            unit="us/event",
            peer_name="floor: gunzip + json.loads + json.dumps",
            goal="<= 2x",
            met=ours <= 2 * peer,
            detail={
                "events": events,
                "events_per_s": statistics.median(walls),
                "archive_bytes": size,
                "translator_us": translator,
                "spread_ours": spread(cpus),
                "spread_floor": spread(floors),
            },
        )
    ]
