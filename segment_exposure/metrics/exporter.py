"""``/metrics`` for a pre-fork server (``segment-exposure serve``): summed over its worker processes.

Why multiprocess mode served from the master: gunicorn hands each request to any worker, so a ``/metrics``
route in the app would show one worker's counts. Instead every worker writes its counters to files in a
private directory (prometheus-client's multiprocess mode), and a small HTTP server in the master process,
on its own loopback port, sums the files at scrape time. Counts of workers that exited stay in the sum
(their gauges are dropped by `MultiprocessExporter.worker_exited`). The directory is created at
start and removed at stop.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from ._prom import MULTIPROC_ENV, prometheus
from .webhook import ASGIMetricsMiddleware, CountingDestination, MetricsMiddleware, PrometheusRecorder

__all__ = ["MultiprocessExporter"]

logger = logging.getLogger(__name__)


def _multiprocess_values() -> None:
    """Make sure this process's metrics are written to files, even if prometheus-client was imported
    before the directory was set (it picks its value class at import)."""
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class MultiprocessExporter:
    """The master's ``/metrics`` server and the workers' counting, for ``serve --metrics-port``.

    In the master: `start` (before any worker starts), `worker_exited` for each worker that
    exits, `stop`. In each worker: `count` wraps the destination, `wrap` the WSGI app.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.directory: str | None = None
        self._previous_env: str | None = None
        self._server: Any = None
        self._recorder: tuple[int, PrometheusRecorder] | None = None
        self._master_pid: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r}, port={self.port!r})"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    # -- master ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory, point workers at it (environment) and serve ``/metrics``.

        Raises OSError when the port cannot be bound.
        """
        self._master_pid = os.getpid()
        self.directory = tempfile.mkdtemp(prefix="segment-exposure-metrics-")
        self._previous_env = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = self.directory  # before prometheus-client is imported, if it can be
        try:
            prom = prometheus()
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
            self._server, _ = prom.start_http_server(self.port, addr=self.host, registry=registry)
        except BaseException:
            self._clean()
            raise
        self.port = int(self._server.server_port)

    def after_fork(self) -> None:
        """In a new worker: close the inherited listening socket (only the master serves it)."""
        if self._server is not None:
            self._server.socket.close()
            self._server = None

    def worker_exited(self, pid: int) -> None:
        """Drop the live gauges of a worker that exited; its counters stay in the sums."""
        if self.directory is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        """Stop serving and remove the directory (in the master only: a worker's exit unwinds through the
        same code, after the fork)."""
        if os.getpid() != self._master_pid:
            return
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        self._clean()

    def _clean(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        if self._previous_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = self._previous_env

    def gunicorn_hooks(self) -> dict[str, Callable[..., None]]:
        """gunicorn server hooks: ``on_starting`` (logs where metrics are served, once gunicorn's logging
        is set up), ``post_fork`` and ``child_exit``."""

        def on_starting(server: Any) -> None:
            logger.info(
                "metrics: serving Prometheus metrics at %s (summed over workers; their files in %s)",
                self.url,
                self.directory,
            )

        def post_fork(server: Any, worker: Any) -> None:
            self.after_fork()

        def child_exit(server: Any, worker: Any) -> None:
            self.worker_exited(worker.pid)

        return {"on_starting": on_starting, "post_fork": post_fork, "child_exit": child_exit}

    # -- workers ---------------------------------------------------------------------------------------

    def recorder(self) -> PrometheusRecorder:
        """This worker's recorder, made once per process."""
        pid = os.getpid()
        if self._recorder is None or self._recorder[0] != pid:
            _multiprocess_values()
            # A registry of its own: nothing is exposed from a worker, the files are what counts.
            self._recorder = (pid, PrometheusRecorder(prometheus().CollectorRegistry()))
        return self._recorder[1]

    def count(self, destination: Any) -> CountingDestination:
        """``destination`` with its events and Amplitude's answers counted."""
        return CountingDestination(destination, self.recorder())

    def wrap(self, app: Callable[[dict[str, Any], Any], Iterable[bytes]]) -> MetricsMiddleware:
        """``app`` with its answers and their time counted."""
        return MetricsMiddleware(app, self.recorder())

    def wrap_asgi(self, app: Callable[..., Any]) -> ASGIMetricsMiddleware:
        """The ASGI ``app`` (what ``serve`` runs) with its answers and their time counted."""
        return ASGIMetricsMiddleware(app, self.recorder())
