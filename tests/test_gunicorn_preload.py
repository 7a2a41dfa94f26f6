"""The Flask example under a real ``gunicorn --preload`` with 2 workers: both workers' exposures arrive.

The master imports the app (and builds its provider) before forking, which is exactly the set-up that
loses everything with a thread-based client that is not fork-aware.
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

import pytest

from segment_exposure import SegmentCollector

from .conftest import WRITE_KEY

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "gunicorn_preload" / "gunicorn.conf.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]  # starts processes: outside the fast inner loop


def _get(port: int, device_id: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/", headers={"Cookie": f"amp_device_id={device_id}"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200
        body: dict[str, object] = json.load(response)
        return body


def test_preloaded_app_delivers_exposures_from_both_workers(
    collector: SegmentCollector, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "DJANGO_"))}
    env.update(SEGMENT_WRITE_KEY=WRITE_KEY, SEGMENT_HOST=collector.url)
    # The test owns the listening socket and hands it over: no window in which another process
    # could take a "free" port, and requests queue in its backlog until a worker is ready.
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    log = (tmp_path / "gunicorn.log").open("w")
    gunicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(CONFIG),
            "--preload",
            "--workers",
            "2",
            "--bind",
            f"fd://{listener.fileno()}",
        ],
        env=env,
        pass_fds=[listener.fileno()],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    listener.close()
    served: dict[str, int] = {}  # device id -> pid of the worker that served it
    variants: dict[str, str] = {}  # device id -> the variant the worker showed
    try:
        deadline = time.monotonic() + 40
        while len(set(served.values())) < 2:
            assert time.monotonic() < deadline, f"one worker served all {len(served)} requests"
            device_id = f"device-{len(served):04d}"
            body = _get(port, device_id)
            assert body["device_id"] == device_id
            served[device_id] = int(str(body["pid"]))
            variants[device_id] = str(body["variant"])
        assert gunicorn.pid not in served.values(), "the master must not serve requests"

        # Delivered while gunicorn runs: the workers' revived providers send on their own threads.
        assert collector.wait_for(len(served), timeout=15), (
            f"{len(collector.events())} of {len(served)} exposures arrived"
        )

        # One more request per worker, then stop at once: the exit flush must send those too.
        last: dict[str, int] = {}
        while set(last.values()) != set(served.values()):
            assert time.monotonic() < deadline, "could not reach both workers again"
            device_id = f"late-{len(last):04d}"
            body = _get(port, device_id)
            last[device_id] = int(str(body["pid"]))
            variants[device_id] = str(body["variant"])
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        try:
            code = gunicorn.wait(30)
        finally:
            log.close()
    output = (tmp_path / "gunicorn.log").read_text()
    assert code == 0, output
    assert "Traceback" not in output, output

    # gunicorn has exited, so whatever its workers delivered is already here: no waiting.
    events = collector.events()
    by_device = {m["anonymousId"]: m for m in events}
    assert set(by_device) == set(served) | set(last)
    assert len(events) == len(served) + len(last), "each request's repeat exposure was deduplicated"
    for device_id, message in by_device.items():
        assert message["userId"] is None
        expected = {"flag_key": "checkout-flow", "experiment_key": "exp-checkout-1"}
        if variants[device_id] != "off":  # the default variant is sent without one: an unset
            expected["variant"] = variants[device_id]
        assert message["properties"] == expected
