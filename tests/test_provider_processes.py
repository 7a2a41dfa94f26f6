"""The provider across process boundaries: interpreter exit, two processes, fork()."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_exposure import SegmentCollector, SegmentExposureTrackingProvider
from segment_exposure.tracking.segment_check import FORCE_PUBLIC_API_ENV

from .conftest import WRITE_KEY

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow


def run_python(
    code: str, *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


TRACK_N = """
import sys
from segment_exposure import Exposure, SegmentExposureTrackingProvider
host, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sdk = sys.argv[4] if len(sys.argv) > 4 else "segment"  # tests/test_rudderstack_provider.py: "rudderstack"
provider = SegmentExposureTrackingProvider(key, host=host, sdk=sdk)
for i in range(n):
    provider.track(Exposure("checkout", "treatment", "exp-1"), {"user_id": f"user-{i:06d}"})
# no flush(): the exit hook must deliver what is queued
"""


def test_normal_exit_delivers_everything_queued(collector: SegmentCollector) -> None:
    done = run_python(TRACK_N, collector.url, WRITE_KEY, "2000")
    assert done.returncode == 0, done.stderr
    # The process has exited: whatever it delivered is already at the collector.
    events = collector.events()
    assert len(events) == 2000
    assert {m["userId"] for m in events} == {f"user-{i:06d}" for i in range(2000)}


def test_two_processes_give_the_same_exposure_the_same_message_id(collector: SegmentCollector) -> None:
    for _ in range(2):
        done = run_python(TRACK_N, collector.url, WRITE_KEY, "50")
        assert done.returncode == 0, done.stderr
    assert len(collector.messages) == 100  # both processes sent...
    assert len(collector.events()) == 50  # ...and Segment's messageId dedupe keeps one of each


FORK = """
import importlib, os, sys, json
from segment_exposure import Exposure, SegmentExposureTrackingProvider
host, key = sys.argv[1], sys.argv[2]
sdk = sys.argv[3] if len(sys.argv) > 3 else "segment"  # tests/test_rudderstack_provider.py: "rudderstack"
provider = SegmentExposureTrackingProvider(
    key, host=host, sdk=sdk, client_options={"upload_interval": 0.05}
)
# The SDK's module-level HTTP session: its pool holds the warm-up's keep-alive connection.
request_module = importlib.import_module(f"{sdk}.analytics.request")
provider.track(Exposure("warmup", "on"), {"user_id": "parent-000"})
assert provider.flush(10)
parent_session = request_module._session
# Queue parent exposures and fork before they can be sent (the worker is busy only briefly, so a
# fraction may be out already; none may be sent twice either way).
for i in range(200):
    provider.track(Exposure("checkout", "parent"), {"user_id": f"parent-{i:03d}"})
pid = os.fork()
if pid == 0:
    for i in range(100):
        provider.track(Exposure("checkout", "child"), {"user_id": f"child-{i:03d}"})
    ok = provider.flush(10)
    own_session = request_module._session is not parent_session
    print(
        json.dumps({"child_flushed": ok, "child_stats": provider.stats(), "child_own_session": own_session}),
        flush=True,
    )
    sys.exit(0)  # a normal exit: atexit hooks run in the child too
_, status = os.waitpid(pid, 0)
ok = provider.flush(10)
result = {"parent_flushed": ok, "child_status": status, "parent_stats": provider.stats()}
print(json.dumps(result), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_delivers_and_parent_events_are_not_sent_twice(collector: SegmentCollector) -> None:
    done = run_python(FORK, collector.url, WRITE_KEY)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    child, parent = lines[0], lines[1]
    assert child["child_flushed"] is True and parent["parent_flushed"] is True
    assert parent["child_status"] == 0
    assert child["child_stats"]["delivered"] == 100
    assert child["child_own_session"] is True
    events = collector.events()
    by_variant = {v: [m for m in events if m["properties"].get("variant") == v] for v in ("parent", "child")}
    assert len(by_variant["child"]) == 100
    assert len(by_variant["parent"]) == 200
    assert len(collector.messages) == 301  # nothing at all was sent twice (warm-up + 200 + 100)


FORK_SESSION = """
import os, sys, json
import segment.analytics.request as segment_request
from segment_exposure import Exposure, SegmentExposureTrackingProvider
host, key = sys.argv[1], sys.argv[2]
provider = SegmentExposureTrackingProvider(key, host=host, client_options={"upload_interval": 0.05})
provider.track(Exposure("warmup", "on"), {"user_id": "parent-000"})
assert provider.flush(10)
parent_session = segment_request._session  # its pool holds the warm-up's keep-alive connection
pid = os.fork()
if pid == 0:
    provider.track(Exposure("checkout", "child"), {"user_id": "child-000"})
    ok = provider.flush(10)
    print(json.dumps({"flushed": ok, "own_session": segment_request._session is not parent_session}))
    sys.exit(0)
_, status = os.waitpid(pid, 0)
provider.track(Exposure("checkout", "parent"), {"user_id": "parent-001"})
print(json.dumps({"flushed": provider.flush(10), "own_session": segment_request._session is parent_session}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("force_public_api", ["0", "1"])
def test_a_forked_child_never_posts_on_the_parents_connections(
    collector: SegmentCollector, force_public_api: str
) -> None:
    """Segment posts through one module-level session: a child that kept it would write on the
    parent's pooled TCP connection, and each process could read the other's response (the parent
    then waits out the 15 s request timeout). With or without Segment's internals, the child gets its own.
    """
    done = run_python(FORK_SESSION, collector.url, WRITE_KEY, env={FORCE_PUBLIC_API_ENV: force_public_api})
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    assert child == {"flushed": True, "own_session": True}
    assert parent == {"flushed": True, "own_session": True}
    assert sorted(m["userId"] for m in collector.events()) == ["child-000", "parent-000", "parent-001"]


#: A server's main loop, blocked until it is stopped. The signal wakes it through a pipe
#: (``signal.set_wakeup_fd``): ``signal.pause()`` never returns for a signal handled just before it is
#: called, a window that a busy process hit about one run in four on Python 3.13.
SERVE_UNTIL_SIGNALLED = """
import os
import signal
_wake_read, _wake_write = os.pipe()
os.set_blocking(_wake_write, False)
signal.set_wakeup_fd(_wake_write)

def serve_until_signalled():
    while True:  # the handler runs as soon as a read returns
        os.read(_wake_read, 1)
"""


SIGTERM_APP = """
import signal
import sys
from segment_exposure import Exposure, SegmentExposureTrackingProvider
host, key = sys.argv[1], sys.argv[2]
sdk = sys.argv[3] if len(sys.argv) > 3 else "segment"  # tests/test_rudderstack_provider.py: "rudderstack"
provider = SegmentExposureTrackingProvider(key, host=host, sdk=sdk, flush_on_sigterm=True, flush_timeout=10)
for i in range(10_000):
    provider.track(Exposure("checkout", "treatment"), {"user_id": f"user-{i:06d}"})
print(provider.stats()["pending"], flush=True)  # still queued when the signal comes
serve_until_signalled()
"""


def test_sigterm_delivers_every_queued_exposure_within_the_deadline(collector: SegmentCollector) -> None:
    assert_sigterm_delivers_everything(collector)


def assert_sigterm_delivers_everything(
    collector: SegmentCollector, write_key: str = WRITE_KEY, sdk: str = "segment"
) -> None:
    """SIGTERM_APP with ``sdk``'s client: every queued exposure delivered within ``flush_timeout``, and the
    process still dies of SIGTERM."""
    app = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNTIL_SIGNALLED + SIGTERM_APP, collector.url, write_key, sdk],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert app.stdout is not None
    pending = int(app.stdout.readline())
    assert pending > 0
    start = time.monotonic()
    app.send_signal(signal.SIGTERM)
    code = app.wait(30)
    elapsed = time.monotonic() - start
    assert code == -signal.SIGTERM  # it still dies of SIGTERM, as its supervisor expects
    assert elapsed < 10  # within flush_timeout
    assert len(collector.events()) == 10_000
    app.stdin.close()  # type: ignore[union-attr]
    app.stdout.close()
    app.stderr.close()  # type: ignore[union-attr]


SIGTERM_MANY = """
import gc
import signal
import sys
from segment_exposure import Exposure, SegmentExposureTrackingProvider
from segment_exposure.tracking import process_binding
host, key = sys.argv[1], sys.argv[2]

def before(signum, frame):  # the application's own handler, installed first
    print("previous handler ran", flush=True)
    sys.exit(3)

signal.signal(signal.SIGTERM, before)
first = SegmentExposureTrackingProvider(key, host=host, flush_on_sigterm=True, flush_timeout=10)
for _ in range(6):  # providers that come and go must not pile up handlers or references
    SegmentExposureTrackingProvider(key, host=host, flush_on_sigterm=True).shutdown(2)
gc.collect()
second = SegmentExposureTrackingProvider(key, host=host, flush_on_sigterm=True, flush_timeout=10)
assert signal.getsignal(signal.SIGTERM) is process_binding.on_sigterm
assert set(process_binding.sigterm_owners()) == {first, second}, len(process_binding.sigterm_owners())
for i in range(3_000):
    first.track(Exposure("checkout", "treatment"), {"user_id": f"first-{i:05d}"})
    second.track(Exposure("search", "on"), {"user_id": f"second-{i:05d}"})
print("ready", flush=True)
serve_until_signalled()
"""


@contextlib.contextmanager
def ready_app(code: str, collector: SegmentCollector) -> Iterator[subprocess.Popen[str]]:
    """An app (``code`` after ``SERVE_UNTIL_SIGNALLED``) that has printed "ready"; killed if still running."""
    app = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNTIL_SIGNALLED + code, collector.url, WRITE_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None and app.stderr is not None
        assert app.stdout.readline() == "ready\n", app.stderr.read() if app.poll() is not None else ""
        yield app
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        for stream in (app.stdout, app.stderr):
            if stream is not None:
                stream.close()


def test_one_sigterm_handler_shuts_down_every_provider_that_asked_then_runs_the_previous_one(
    collector: SegmentCollector,
) -> None:
    with ready_app(SIGTERM_MANY, collector) as app:
        app.send_signal(signal.SIGTERM)
        out, err = app.communicate(timeout=30)
        assert out == "previous handler ran\n"
        assert app.returncode == 3, err
    users = [m["userId"] for m in collector.events()]
    assert len(users) == len(set(users)) == 6_000


SIGTERM_MID_BOOKKEEPING = """
import sys
from segment_exposure import Exposure, SegmentExposureTrackingProvider
host, key = sys.argv[1], sys.argv[2]
provider = SegmentExposureTrackingProvider(key, host=host, flush_on_sigterm=True, flush_timeout=2)
for i in range(100):
    provider.track(Exposure("checkout", "treatment"), {"user_id": f"user-{i:03d}"})
# The signal lands while this thread is inside the provider's bookkeeping, holding the lock that settles
# counts (as a flush on this thread does for a moment). A shutdown run right here would wait for it forever.
with provider.ledger.lock:
    print("ready", flush=True)
    serve_until_signalled()
"""


def test_sigterm_in_the_middle_of_the_providers_own_code_still_ends_the_process(
    collector: SegmentCollector,
) -> None:
    with ready_app(SIGTERM_MID_BOOKKEEPING, collector) as app:
        start = time.monotonic()
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=30)
        elapsed = time.monotonic() - start
        assert app.returncode == -signal.SIGTERM, err
        assert elapsed < 2 + 1 + 2, elapsed  # flush_timeout, the handler's grace, scheduling slack
        assert "did not finish shutting down on SIGTERM in time" in err


def _blocked_signals(native_id: int | None) -> int:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)


def test_background_threads_leave_process_signals_to_the_main_thread(collector: SegmentCollector) -> None:
    """A SIGTERM delivered to a background thread would not interrupt the main thread's blocking call."""
    provider = SegmentExposureTrackingProvider(WRITE_KEY, host=collector.url)
    try:
        for thread in [provider.worker.thread, *provider.analytics.consumers]:
            for sig in (signal.SIGTERM, signal.SIGINT):
                assert _blocked_signals(thread.native_id) & (1 << (sig - 1)), (
                    f"{thread.name} takes {sig.name}"
                )
        assert not _blocked_signals(threading.main_thread().native_id) & (1 << (signal.SIGTERM - 1))
    finally:
        provider.shutdown(2)


C_FORK = """
import ctypes, json, os, signal, sys, time
from segment_exposure import Exposure, SegmentExposureTrackingProvider
host, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
provider = SegmentExposureTrackingProvider(
    key, host=host, flush_timeout=5, client_options={"upload_interval": 0.05}
)
provider.track(Exposure("warmup", "on"), {"user_id": "parent-000"})
assert provider.flush(10)
# C fork(), as uWSGI forks its workers: Python's os.register_at_fork hooks do not run.
pid = ctypes.CDLL(None, use_errno=True).fork()
if pid == 0:
    if mode == "track":
        for i in range(50):
            provider.track(Exposure("checkout", "child"), {"user_id": f"child-{i:03d}"})
        print(json.dumps({"flushed": provider.flush(10), "stats": provider.stats()}), flush=True)
    sys.exit(0)  # the exit hooks must not wait for the parent's threads, which do not exist here
start = time.monotonic()
while time.monotonic() - start < 20:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.02)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    status = -1
print(json.dumps({"child_status": status, "child_exit_seconds": time.monotonic() - start}), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("mode", ["track", "idle"])
def test_c_forked_child_notices_by_pid_delivers_and_exits_promptly(
    collector: SegmentCollector, mode: str
) -> None:
    done = run_python(C_FORK, collector.url, WRITE_KEY, mode)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    result = lines[-1]
    assert result["child_status"] == 0, done.stderr
    # Bounded by flush_timeout, not waiting forever on the parent's Segment consumer thread.
    assert result["child_exit_seconds"] < 5, result
    if mode == "track":
        child = lines[0]
        assert child["flushed"] is True
        assert child["stats"]["tracked"] == 50 and child["stats"]["delivered"] == 50
        assert len([m for m in collector.events() if m["userId"].startswith("child-")]) == 50
