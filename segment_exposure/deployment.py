"""What the server hosting this process allows the provider to do, detected once at start-up.

The provider sends from background threads. Some servers run Python in ways where those threads
cannot work, and exposures would then wait in a queue that nothing ever sends, silently. Each check
here returns the one warning to log (saying what to change), or None when all is well.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading

__all__ = ["THREADS_DISABLED", "threads_unavailable", "warn_once"]

log = logging.getLogger("segment_exposure")

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


def warn_once(message: str) -> None:
    """Log ``message`` as a warning once per process, however many providers meet the same problem."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)
