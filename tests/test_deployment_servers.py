"""The deployment-server matrix: every server and mode apps really run under.

Each row starts a real server process (or a Celery worker) whose app creates its provider at import
time (``tests/servers/exposure_app.py``), sends it real requests (or tasks), and checks, against the
real Segment client posting to a local ``SegmentCollector``: every exposure delivered while the server
runs, and after SIGTERM a stop within ``flush_timeout`` + 5 s with nothing lost. A mode where delivery
cannot work instead shows the one warning and counts every exposure as dropped.

The fork-sensitive rows (gunicorn with preload, uWSGI's default, Celery's prefork pool) run a second time
(``<row>-rudderstack``) with RudderStack's client in the provider, posting to a ``RudderStackCollector``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pytest

from segment_exposure import RudderStackCollector, SegmentCollector

from .conftest import WRITE_KEY, wait_until
from .prerequisites import LEGACY_PYUWSGI, LEGACY_PYUWSGI_VERSION, require

ROOT = Path(__file__).resolve().parent.parent
SERVERS = Path(__file__).resolve().parent / "servers"
STACKS_SIGNAL = signal.SIGRTMIN + 1  # tests/servers/exposure_app.py prints every thread's stack on it

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]  # starts processes: outside the fast inner loop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                pass
    return pids


Sdk = Literal["segment", "rudderstack"]
COLLECTORS: dict[Sdk, type[SegmentCollector]] = {
    "segment": SegmentCollector,
    "rudderstack": RudderStackCollector,
}


@dataclass
class Row:
    """One server and mode: the command (``{port}`` filled in) and what must happen under it."""

    argv: list[str]
    supported: bool = True
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    #: Sent to the process group (the whole tree), as a terminal or container runtime would.
    signal_group: bool = False
    #: A prerequisite (tests/prerequisites.py) installed before the run: a skip when unavailable, a failure
    #: under CI.
    requires: str | None = None
    pythonpath: list[str] = field(default_factory=list)  # ahead of everything else on sys.path
    celery: bool = False  # a Celery worker: tasks instead of HTTP requests
    #: Seconds the server itself may take to stop, on top of flush_timeout (the issue's bound: 5).
    server_stop: float = 5.0
    flush_timeout: float = 3.0
    #: Segment's consumer gathers each batch this long: exposures tracked right before SIGTERM are
    #: still waiting when it arrives, so only the exit flush can deliver them.
    upload_interval: float = 1.5
    running: int = 12  # exposures tracked, then waited for while the server runs (at least)
    #: The warning this mode logs (``warnings`` times: once per process that made a provider) because
    #: its stop loses what is still queued; the last exposures are then not checked.
    warning: str | None = None
    warnings: int = 1
    at_stop: int = 6  # more exposures tracked right before SIGTERM: the exit flush must send them
    #: Whose client the provider builds (``sdk=``), and so which collector the row posts to.
    sdk: Sdk = "segment"


PY = sys.executable
GUNICORN = [PY, "-m", "gunicorn", "--chdir", str(SERVERS), "--bind", "127.0.0.1:{port}", "--workers", "2"]
GUNICORN.append("--no-control-socket")  # gunicorn >= 24 would share one socket in $HOME between tests
PYUWSGI = [PY, "-c", "import sys, pyuwsgi; sys.exit(pyuwsgi.run())"]
UWSGI_COMMON = [
    "--master",
    "--processes",
    "2",
    # uWSGI's graceful stop on SIGTERM (its own SIGTERM reloads; --die-on-term kills workers mid-request).
    "--hook-master-start",
    "unix_signal:15 gracefully_kill_them_all",
    "--http-socket",
    "127.0.0.1:{port}",
    "--chdir",
    str(SERVERS),
    "--wsgi-file",
    str(SERVERS / "wsgi_app.py"),
    "--disable-logging",
]


def _gunicorn(worker: str, preload: bool) -> Row:
    argv = [*GUNICORN, "--worker-class", worker]
    if worker == "gthread":
        argv += ["--threads", "4"]
    if preload:
        argv.append("--preload")
    return Row([*argv, "wsgi_app:application"])


UVICORN = [PY, "-m", "uvicorn", "--app-dir", str(SERVERS), "--host", "127.0.0.1", "--port", "{port}"]
UVICORN += ["--workers", "2", "--no-access-log", "asgi_app:app"]

RUNSERVER = [PY, "-m", "django", "runserver", "127.0.0.1:{port}", "--settings", "django_site"]
CELERY = [PY, "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "2"]
CELERY += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]

ROWS: dict[str, Row] = {
    **{
        f"gunicorn-{worker}-{'preload' if preload else 'no-preload'}": _gunicorn(worker, preload)
        for worker in ("sync", "gthread", "gevent")
        for preload in (False, True)
    },
    # flush_on_sigterm under gevent: its hub runs the handler, where nothing may block (the flush failed with
    # BlockingSwitchOutError before); the handler hands the flush to a greenlet.
    "gunicorn-gevent-flush-on-sigterm": Row(
        [*GUNICORN, "--worker-class", "gevent", "wsgi_app:application"], env={"FLUSH_ON_SIGTERM": "1"}
    ),
    "uwsgi-default": Row([*PYUWSGI, *UWSGI_COMMON]),
    "uwsgi-enable-threads": Row([*PYUWSGI, *UWSGI_COMMON, "--enable-threads"]),
    "uwsgi-lazy-apps": Row([*PYUWSGI, *UWSGI_COMMON, "--lazy-apps"]),
    "uwsgi-fork-hooks": Row([*PYUWSGI, *UWSGI_COMMON, "--py-call-uwsgi-fork-hooks"]),
    # uvicorn starts its workers with multiprocessing's spawn: each imports the app itself. After its
    # graceful shutdown a worker re-raises SIGTERM and dies of it, skipping exit hooks: hence
    # flush_on_sigterm (without it the exposures tracked last are lost; see the next row).
    "uvicorn-workers-2": Row(UVICORN, env={"FLUSH_ON_SIGTERM": "1"}),
    # The prefork pool forks its processes with os.fork(); billiard ends them with os._exit().
    "celery-prefork": Row(
        CELERY,
        celery=True,
        # With a broker it cannot wait on (the filesystem transport) Celery's loop looks for the stop
        # only every 2 s and takes about 4 s before it closes the pool: 5.3-5.8 s to stop when idle.
        server_stop=8.0,
    ),
    # Each pool process ends (os._exit) right after its one task, its exposure still in Segment's
    # batch window: only the flush on Celery's worker_process_shutdown can deliver it.
    "celery-prefork-max-tasks-per-child-1": Row(
        [*CELERY, "--max-tasks-per-child", "1"],
        celery=True,
        server_stop=8.0,
        upload_interval=0.5,
        running=4,
        at_stop=2,
    ),
    "uvicorn-workers-2-no-flush-on-sigterm": Row(
        UVICORN, warning="uvicorn workers die of SIGTERM after their graceful shutdown", warnings=2
    ),
    # Django's development server: the autoreloader's parent process runs the serving child, turns
    # SIGTERM into sys.exit(0) in both, and kills the child with SIGKILL as it exits itself.
    "django-runserver-autoreload": Row(
        RUNSERVER, workers=1, signal_group=True, warning="Django's autoreloader kills this runserver"
    ),
    "django-runserver-noreload": Row([*RUNSERVER, "--noreload"], workers=1, env={"FLUSH_ON_SIGTERM": "1"}),
    "uwsgi-2.0.26-no-threads": Row(
        [*PYUWSGI, *UWSGI_COMMON],
        supported=False,
        # uWSGI before 2.0.27 runs Python without threads unless --enable-threads is given (later
        # versions always enable them): its extension for this interpreter, installed on first need
        # (2.0.26 has no wheel for 3.13; there another pyuwsgi, with threads, would be imported instead).
        requires=f"pyuwsgi-{LEGACY_PYUWSGI_VERSION}",
        pythonpath=[str(LEGACY_PYUWSGI)],
    ),
}
#: The rows where the provider is made before a fork, run again with RudderStack's client: its consumer
#: thread, queue and HTTP session must be revived in each child as Segment's are.
FORK_SENSITIVE = [
    *(f"gunicorn-{worker}-preload" for worker in ("sync", "gthread", "gevent")),
    "uwsgi-default",
    "celery-prefork",
]
ROWS.update({f"{name}-rudderstack": replace(ROWS[name], sdk="rudderstack") for name in FORK_SENSITIVE})


class Server:
    """A server process in its own session, its output in a file, answering ``/track``."""

    def __init__(self, row: Row, collector: SegmentCollector, log: Path) -> None:
        self.row = row
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "DJANGO_", "EXPOSURE_"))}
        env.update(
            SEGMENT_WRITE_KEY=WRITE_KEY,
            SEGMENT_HOST=collector.url,
            EXPOSURE_SDK=row.sdk,
            FLUSH_TIMEOUT=str(row.flush_timeout),
            UPLOAD_INTERVAL=str(row.upload_interval),
            PYTHONPATH=os.pathsep.join([*row.pythonpath, str(ROOT), str(SERVERS), env.get("PYTHONPATH", "")]),
            PYTHONUNBUFFERED="1",
            PYTHONFAULTHANDLER="1",
            **row.env,
        )
        self.log_path = log
        self._log = log.open("w")
        argv = [part.replace("{port}", str(self.port)) for part in row.argv]
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=SERVERS,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 20) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            body: dict[str, Any] = json.load(response)
            return body

    def track(self, users: list[str]) -> list[dict[str, Any]]:
        """One exposure per user, each in its own request, all at once (a fresh worker's first
        requests race to restart its threads); what the serving workers answered."""
        with ThreadPoolExecutor(len(users)) as pool:
            return list(pool.map(lambda user: self.get(f"/track?user={user}"), users))

    def wait_ready(self, timeout: float = 60) -> None:
        def up() -> bool:
            assert self.process.poll() is None, f"the server exited:\n{self.output()}"
            try:
                self.get("/", timeout=2)
            except (OSError, urllib.error.URLError):
                return False
            return True

        assert wait_until(up, timeout, interval=0.1), f"the server never answered:\n{self.output()}"

    def stop(self, group: bool) -> float:
        """SIGTERM, then the seconds until the process (or, for ``group``, the whole group) is gone."""
        start = time.monotonic()
        if group:
            os.killpg(self.process.pid, signal.SIGTERM)
        else:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(self.row.flush_timeout + 20)
        except subprocess.TimeoutExpired:
            self._dump_stacks()
        finally:
            elapsed = time.monotonic() - start
            self.kill()
        return elapsed

    def _dump_stacks(self) -> None:
        """A stuck stop: every process of the group prints its threads' stacks (PYTHONFAULTHANDLER)."""
        for pid in _group_pids(self.process.pid):
            try:
                os.kill(pid, STACKS_SIGNAL)
            except ProcessLookupError:
                pass
        wait_until(lambda: self.process.poll() is not None, 5)

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(30)
        self._log.close()


class CeleryWorker(Server):
    """``celery worker`` (prefork pool) on kombu's filesystem transport, results in files."""

    def __init__(self, row: Row, collector: SegmentCollector, log: Path) -> None:
        from celery import Celery

        self.folder = log.parent / f"{log.stem}-celery"
        (self.folder / "results").mkdir(parents=True)
        super().__init__(replace(row, env={**row.env, "CELERY_FOLDER": str(self.folder)}), collector, log)
        self.client = Celery("matrix-client")
        self.client.conf.update(
            broker_url="filesystem://",
            broker_transport_options={
                "data_folder_in": str(self.folder),
                "data_folder_out": str(self.folder),
                "control_folder": str(self.folder / "control"),
            },
            result_backend=f"file://{self.folder}/results",
        )

    def track(self, users: list[str]) -> list[dict[str, Any]]:
        """One task per user, all sent at once (so both pool processes get some)."""
        results = [self.client.send_task("track_exposure", args=[user]) for user in users]
        return [r.get(timeout=60) for r in results]

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"the worker exited:\n{self.output()}"
            return " ready." in self.output()

        assert wait_until(ready, timeout, interval=0.1), f"the worker never got ready:\n{self.output()}"


@pytest.fixture
def collector(name: str) -> Iterator[SegmentCollector]:
    """The row's collector: a ``RudderStackCollector`` for a RudderStack row (conftest's is Segment's)."""
    with COLLECTORS[ROWS[name].sdk](WRITE_KEY) as server:
        yield server


@pytest.fixture
def start(collector: SegmentCollector, tmp_path: Path) -> Iterator[Callable[[Row], Server]]:
    started: list[Server] = []

    def run(row: Row) -> Server:
        if row.requires:
            require(row.requires)
        kind = CeleryWorker if row.celery else Server
        server = kind(row, collector, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield run
    for server in started:
        if server.process.poll() is None:
            server.kill()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.requires(row.requires) if row.requires else ())
        for name, row in ROWS.items()
    ],
)
def test_server(name: str, start: Callable[[Row], Server], collector: SegmentCollector) -> None:
    row = ROWS[name]
    server = start(row)
    server.wait_ready()
    answers = _until_every_worker_served(server, name, row)
    pids = {a["pid"] for a in answers}
    assert server.process.pid not in pids or row.workers == 1, "the master must not serve requests"

    if not row.supported:
        _assert_unsupported(server, answers)
        return

    assert all(a["accepted"] for a in answers), answers
    arrived = collector.wait_for(len(answers), timeout=30)
    assert arrived, f"{len(collector.events())} of {len(answers)} arrived while running:\n{server.output()}"
    if row.warning is not None:
        server.stop(row.signal_group)
        assert server.output().count(row.warning) == row.warnings, server.output()
        return
    late = server.track([f"{name}-late-{i:03d}" for i in range(row.at_stop)])
    assert all(a["accepted"] for a in late), late
    elapsed = server.stop(row.signal_group)
    output = server.output()
    assert elapsed < row.flush_timeout + row.server_stop, f"stopped after {elapsed:.1f} s:\n{output}"
    assert "Traceback" not in output, output
    # The server has exited: whatever its workers delivered is already at the collector.
    users = {m["userId"] for m in collector.events()}
    expected = {f"{name}-{i:03d}" for i in range(len(answers))}
    expected |= {f"{name}-late-{i:03d}" for i in range(row.at_stop)}
    assert users == expected, f"missing {sorted(expected - users)}:\n{output}"
    if row.sdk == "rudderstack":
        _assert_posted_by_rudderstack(collector)


def _assert_posted_by_rudderstack(collector: SegmentCollector) -> None:
    """RudderStack's client, not Segment's, posted every request: it gzips every body (Segment's, as the
    provider makes it, does not) and sends ``channel: "server"``."""
    assert collector.gzipped_requests == collector.requests > 0, (
        collector.gzipped_requests,
        collector.requests,
    )
    assert {m.get("channel") for m in collector.events()} == {"server"}


def _until_every_worker_served(server: Server, name: str, row: Row) -> list[dict[str, Any]]:
    """At least ``row.running`` exposures, and on until every worker has served one (and so has
    booted: gunicorn ignores a SIGTERM that reaches a worker still booting)."""
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    workers = row.workers
    while len(answers) < row.running or len({a["pid"] for a in answers}) < workers:
        assert time.monotonic() < deadline, f"{workers} workers never all served:\n{server.output()}"
        answers += server.track([f"{name}-{len(answers) + i:03d}" for i in range(4)])
    return answers


def _assert_unsupported(server: Server, answers: list[dict[str, Any]]) -> None:
    assert not any(a["accepted"] for a in answers), answers
    # Every exposure is counted, in the worker that served it (each answer carries its worker's stats).
    dropped: dict[int, int] = {}
    for a in answers:
        dropped[a["pid"]] = max(dropped.get(a["pid"], 0), a["stats"]["dropped"]["threads_disabled"])
    assert sum(dropped.values()) == len(answers), answers
    elapsed = server.stop(group=False)
    output = server.output()
    assert elapsed < server.row.flush_timeout + 5, f"stopped after {elapsed:.1f} s:\n{output}"
    # Exactly one warning (the master made the provider; its forked workers do not repeat it).
    assert output.count("uWSGI is running without Python threads") == 1, output
    assert "Start uWSGI with --enable-threads" in output, output
