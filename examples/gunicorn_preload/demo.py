"""Run the Flask example under ``gunicorn --preload`` with 2 workers and show both workers' exposures
arriving, then stop gunicorn and show that nothing was lost at exit.

    python examples/gunicorn_preload/demo.py

It starts a local Segment collector (segment_exposure.testing) and points the app at it; with
SEGMENT_WRITE_KEY set it sends to Segment instead and can only report what the workers answered.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from segment_exposure import SegmentCollector

HERE = Path(__file__).resolve().parent
DEMO_WRITE_KEY = "demo-write-key"


def get(port: int, device_id: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/", headers={"Cookie": f"amp_device_id={device_id}"}
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        result: dict[str, object] = json.load(response)
        return result


def main() -> int:
    real_key = os.environ.get("SEGMENT_WRITE_KEY")
    collector = None if real_key else SegmentCollector(DEMO_WRITE_KEY).start()
    env = dict(os.environ)
    if collector is not None:
        env.update(SEGMENT_WRITE_KEY=DEMO_WRITE_KEY, SEGMENT_HOST=collector.url)
    listener = socket.create_server(("127.0.0.1", 0))  # handed to gunicorn: no port race
    port = listener.getsockname()[1]
    gunicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(HERE / "gunicorn.conf.py"),
            "--bind",
            f"fd://{listener.fileno()}",
        ],
        env=env,
        pass_fds=[listener.fileno()],
    )
    listener.close()
    served: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 30
        while (len(set(served.values())) < 2 or len(served) < 10) and time.monotonic() < deadline:
            device_id = f"device-{len(served):04d}"
            served[device_id] = int(str(get(port, device_id)["pid"]))
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(30)
    pids = sorted(set(served.values()))
    print(f"{len(served)} requests served by worker pids {pids}")
    if collector is None:
        return 0 if len(pids) == 2 else 1
    received = {m["anonymousId"] for m in collector.events()}
    for pid in pids:
        mine = [d for d, p in served.items() if p == pid]
        arrived = len(received.intersection(mine))
        print(f"worker {pid}: {len(mine)} exposure(s) tracked, {arrived} at the collector")
    collector.stop()
    return 0 if len(pids) == 2 and received >= set(served) and gunicorn.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
