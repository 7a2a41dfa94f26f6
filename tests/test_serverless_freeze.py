"""The provider in an environment frozen after every response and killed without notice, as on Lambda.

A child process (tests/serverless_runtime.py) serves one invocation at a time over a pipe and is stopped
with SIGSTOP right after each response, thawed with SIGCONT for the next one and SIGKILLed at the end.
With ``flush_after`` every exposure of every invocation is at the local collector by the time the
response is out, in one request per invocation that tracked something; without it, exposures are not
there when the process is frozen, and the ones still queued at SIGKILL are lost.

Each case runs with Segment's client posting to a ``SegmentCollector`` and again (``<style>-rudderstack``)
with RudderStack's client (the provider's ``sdk="rudderstack"``) posting to a ``RudderStackCollector``.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segment_exposure import RudderStackCollector, SegmentCollector

from .conftest import WRITE_KEY

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: Exposures per invocation: one invocation tracks nothing (and must send nothing).
PLAN = (3, 0, 2, 4, 1, 3)
WARNING = "freeze the process after each response"
#: (style, sdk) for every case: Segment's ids stay the style alone, RudderStack's get ``-rudderstack``.
CASES = [
    pytest.param(style, sdk, id=style if sdk == "segment" else f"{style}-{sdk}")
    for sdk in ("segment", "rudderstack")
    for style in ("plain", "mangum")
]
COLLECTORS: dict[str, type[SegmentCollector]] = {
    "segment": SegmentCollector,
    "rudderstack": RudderStackCollector,
}


@pytest.fixture
def collector(sdk: str) -> Iterator[SegmentCollector]:
    """The case's collector: a ``RudderStackCollector`` for RudderStack's client (conftest's is Segment's)."""
    with COLLECTORS[sdk](WRITE_KEY) as server:
        yield server


class FrozenEnvironment:
    """One execution environment: a child process driven over pipes, frozen between invocations."""

    def __init__(self, style: str, flush: str, collector: SegmentCollector, sdk: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "AWS_LAMBDA_FUNCTION_NAME": "checkout-api",
        }
        self.style = style
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.serverless_runtime", style, flush, collector.url, WRITE_KEY, sdk],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.invocations = 0

    def event(self, index: int, users: list[str]) -> dict[str, Any]:
        if self.style == "plain":
            return {"users": users}
        path = "/sync" if index % 2 else "/async"  # an API Gateway HTTP API (v2) event, as Mangum takes it
        return {
            "version": "2.0",
            "routeKey": f"POST {path}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"content-type": "application/json", "host": "abc123.execute-api.localhost"},
            "requestContext": {
                "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
                "requestId": f"req-{index}",
                "stage": "$default",
            },
            "body": json.dumps({"users": users}),
            "isBase64Encoded": False,
        }

    def invoke(self, index: int, users: list[str]) -> dict[str, Any]:
        """Thaw (after the first), send one event, read the response, and wait until frozen again."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.invocations:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.stdin.write(json.dumps({"event": self.event(index, users), "timeout_ms": 10_000}) + "\n")
        self.proc.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=60), "no response within 60 s"
        line = self.proc.stdout.readline()
        assert line, f"the environment died: {self.kill()}"
        _, status = os.waitpid(self.proc.pid, os.WUNTRACED)  # the freeze, right after the response
        assert os.WIFSTOPPED(status), status
        self.invocations += 1
        reply: dict[str, Any] = json.loads(line)
        if self.style == "mangum":
            assert reply["response"]["statusCode"] == 200, reply
            reply["tracked"] = json.loads(reply["response"]["body"])["tracked"]
        else:
            reply["tracked"] = reply["response"]["tracked"]
        return reply

    def kill(self) -> str:
        """SIGKILL, as the platform ends an environment: no exit hook runs. Returns the child's stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        _, stderr = self.proc.communicate(timeout=30)
        return stderr


def users_of(style: str, index: int, n: int) -> list[str]:
    return [f"{style}-{index}-{j}" for j in range(n)]


def delivered_users(collector: SegmentCollector) -> set[str]:
    return {m["userId"] for m in collector.events()}


def assert_posted_by_rudderstack(collector: SegmentCollector) -> None:
    """RudderStack's client, not Segment's, posted every request: it gzips every body (Segment's, as the
    provider makes it, does not) and sends ``channel: "server"``."""
    assert collector.gzipped_requests == collector.requests, (collector.gzipped_requests, collector.requests)
    assert {m.get("channel") for m in collector.events()} <= {"server"}


@pytest.mark.parametrize(("style", "sdk"), CASES)
def test_flush_after_delivers_every_exposure_before_each_freeze(
    collector: SegmentCollector, style: str, sdk: str
) -> None:
    environment = FrozenEnvironment(style, "flush", collector, sdk)
    tracked: set[str] = set()
    requests = 0
    try:
        for index, n in enumerate(PLAN):
            users = users_of(style, index, n)
            reply = environment.invoke(index, users)
            assert reply["tracked"] == n
            tracked.update(users)
            requests += 1 if n else 0
            # Frozen now: nothing of the child runs. Everything tracked so far is already there...
            assert delivered_users(collector) == tracked
            # ...in one request per invocation that tracked something, and none for the one that did not.
            assert collector.requests == requests
            assert reply["stats"]["delivered"] == len(tracked) and reply["stats"]["dropped_total"] == 0
    finally:
        stderr = environment.kill()
    everyone = {u for i, n in enumerate(PLAN) for u in users_of(style, i, n)}
    assert delivered_users(collector) == tracked == everyone
    assert len(collector.messages) == len(tracked)  # each exactly once
    assert WARNING not in stderr, stderr
    if sdk == "rudderstack":
        assert_posted_by_rudderstack(collector)


@pytest.mark.parametrize(("style", "sdk"), CASES)
def test_without_the_flush_exposures_are_lost(collector: SegmentCollector, style: str, sdk: str) -> None:
    environment = FrozenEnvironment(style, "none", collector, sdk)
    tracked: set[str] = set()
    missing: set[str] = set()
    try:
        # Invoke until the environment is frozen with exposures not delivered. That is the usual case
        # (Segment's consumer, like RudderStack's, waits 0.5 s for more before posting, and the process gets
        # no CPU while frozen); now and then its wait happens to end during an invocation and it catches up.
        for index, n in enumerate(PLAN):
            users = users_of(style, index, n)
            assert environment.invoke(index, users)["tracked"] == n
            tracked.update(users)
            missing = tracked - delivered_users(collector)
            if missing:
                break
    finally:
        stderr = environment.kill()  # the platform ends the environment while it is frozen
    assert missing, "every freeze found everything delivered"
    # Killed while frozen: they never arrive (a request sent just before the freeze would have had a
    # second to reach the collector).
    assert not collector.wait_for(len(tracked), timeout=1.0)
    assert tracked - delivered_users(collector) == missing
    # The provider warns once, from its worker thread when it sends its first exposure (if the freeze
    # left it the time: tests/test_serverless.py checks the warning itself).
    assert stderr.count(WARNING) <= 1, stderr
    if sdk == "rudderstack":
        assert_posted_by_rudderstack(collector)
