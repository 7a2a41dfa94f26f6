"""What the server hosting this process allows the provider to do, detected once at start-up.

The provider sends from background threads. Some servers run Python in ways where those threads
cannot work, and exposures would then wait in a queue that nothing ever sends, silently. Each check
here returns the one warning to log (saying what to change), or None when all is well.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "PLATFORM_VARIABLES",
    "THREADS_DISABLED",
    "detect_platform",
    "on_pool_process_exit",
    "stop_skips_exit_hooks",
    "threads_unavailable",
    "warn_once",
]

log = logging.getLogger(__name__)

#: Environment variables each platform sets, checked in this order.
PLATFORM_VARIABLES: tuple[tuple[str, str], ...] = (
    ("AWS_LAMBDA_FUNCTION_NAME", "AWS Lambda"),
    ("FUNCTION_TARGET", "Google Cloud Functions"),  # every Python runtime, gen1 and gen2
    ("FUNCTION_NAME", "Google Cloud Functions"),  # the oldest (Python 3.7) runtime
    ("K_SERVICE", "Google Cloud Run"),  # Cloud Run, and Cloud Functions gen2 (set with FUNCTION_TARGET)
)


def detect_platform(environ: Mapping[str, str] | None = None) -> str | None:
    """The serverless platform this process runs on, from its environment; None elsewhere."""
    env = os.environ if environ is None else environ
    for variable, platform in PLATFORM_VARIABLES:
        if env.get(variable):
            return platform
    return None


#: The drop reason for exposures that cannot be sent because the server gives Python no threads.
THREADS_DISABLED = "threads_disabled"

_warned: set[str] = set()
_warned_lock = threading.Lock()


def threads_unavailable() -> str | None:
    """Why background threads can never run in this process, as a warning, or None.

    uWSGI runs Python without thread support unless started with ``--enable-threads`` (or
    ``--threads N``): it never releases the GIL while it waits for requests, so a background thread
    does not get to send. Its ``uwsgi`` module says so in ``has_threads``. (pyuwsgi, uWSGI packaged as
    a Python wheel, always enables threads.)
    """
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        try:
            uwsgi = importlib.import_module("uwsgi")  # exists only inside uWSGI
        except ImportError:
            return None
    if getattr(uwsgi, "has_threads", True):
        return None
    return (
        "segment-exposure: uWSGI is running without Python threads, so exposures can never be sent. "
        "Start uWSGI with --enable-threads (or --threads N). Until then every exposure is dropped and "
        f"counted in stats()['dropped']['{THREADS_DISABLED}']."
    )


def stop_skips_exit_hooks(flush_on_sigterm: bool) -> str | None:
    """Why this process will end without its exit hooks when stopped, as a warning, or None.

    - uvicorn (0.29 and later) finishes its graceful shutdown and then raises SIGTERM again with
      Python's default action, which ends the process without exit hooks. It loads the app while its
      own SIGTERM handler is installed, which is how it is recognised here.
    - Django's autoreloader (``runserver``) runs the server in a child process (``RUN_MAIN=true``) and,
      when it is stopped itself, kills that child with SIGKILL.
    """
    if not flush_on_sigterm and _uvicorn_handles_sigterm():
        return (
            "segment-exposure: uvicorn workers die of SIGTERM after their graceful shutdown, which skips "
            "exit hooks, so exposures tracked last would be lost. Pass flush_on_sigterm=True to "
            "SegmentExposureTrackingProvider to flush them first."
        )
    if "django" in sys.modules and os.environ.get("RUN_MAIN") == "true":
        return (
            "segment-exposure: Django's autoreloader kills this runserver process with SIGKILL when it "
            "stops, so exposures tracked in its last moments are lost. For a stop that delivers them, "
            "run 'runserver --noreload' (and pass flush_on_sigterm=True to stop it with SIGTERM)."
        )
    return None


def _uvicorn_handles_sigterm() -> bool:
    handler = signal.getsignal(signal.SIGTERM)
    owner = getattr(handler, "__self__", None)
    return type(owner).__module__ == "uvicorn.server"


def on_pool_process_exit(callback: Callable[[], object], key: str) -> None:
    """Also run ``callback`` when a Celery prefork pool process ends.

    The pool (billiard) ends its child processes with ``os._exit()``, which skips exit hooks; Celery
    sends ``worker_process_shutdown`` in the child just before. Nothing happens outside Celery.
    """
    signals = sys.modules.get("celery.signals")
    if signals is None:
        return

    def on_shutdown(**_: Any) -> None:
        callback()

    signals.worker_process_shutdown.connect(on_shutdown, weak=False, dispatch_uid=key)


def warn_once(message: str) -> None:
    """Log ``message`` as a warning once per process, however many providers meet the same problem."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)
