"""gunicorn settings for the Flask example with ``--preload``: fork safety in practice.

    gunicorn -c examples/gunicorn_preload/gunicorn.conf.py

``preload_app`` imports the app, and so builds its provider and starts the Segment client's thread, in
the master before it forks the workers. Threads do not survive ``fork()``: a worker that tracked through
the master's copy would queue exposures that no thread ever sends. The provider notices the fork and
rebuilds its queue, worker thread, Segment consumer and HTTP session on the worker's first ``track()``.
At exit each worker's provider flushes what it holds, within its ``flush_timeout``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

wsgi_app = "app:create_app()"
pythonpath = str(Path(__file__).resolve().parent.parent / "flask_app")
bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = 2
preload_app = True
# gunicorn >= 24 opens a control socket in the home directory; two demos at once would share it.
control_socket_disable = True


def post_fork(server: Any, worker: Any) -> None:
    server.log.info(
        "worker %s forked from the preloaded app; its provider revives on first track()", worker.pid
    )


def worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    extension = getattr(app, "extensions", {}).get("segment_exposure")
    if extension is not None:
        stats = extension.provider.stats()
        server.log.info(
            "worker %s exiting: %d exposure(s) tracked, %d delivered; the exit flush sends the rest",
            worker.pid,
            stats["tracked"],
            stats["delivered"],
        )
