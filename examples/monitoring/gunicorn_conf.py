"""gunicorn settings for an app that exports its provider's metrics in prometheus-client's multiprocess mode.

Run: ``PROMETHEUS_MULTIPROC_DIR=/tmp/segment-exposure-metrics gunicorn -c gunicorn_conf.py app:app``.
In the app: ``register(provider)`` once per worker (e.g. at import, without ``--preload``) and a
``/metrics`` route that serves ``generate_latest(exposition_registry())``: whichever worker answers,
it sums the files of every worker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_DIRECTORY = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _DIRECTORY:
    raise RuntimeError("set PROMETHEUS_MULTIPROC_DIR to an empty directory before starting gunicorn")


def on_starting(server: Any) -> None:
    """Start from zero: files left by an earlier run would be summed in (counters of dead workers stay)."""
    directory = Path(str(_DIRECTORY))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its live gauges (queue size); its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
