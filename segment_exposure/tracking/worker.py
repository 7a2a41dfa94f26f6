"""The provider's worker thread: it takes accepted exposures off the caller's thread.

``track()`` only puts an item on this worker's queue; the thread hands each item to a handler (the
provider's Segment hand-off), counts it processed, and wakes whoever waits for it to catch up (a flush).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from segment_exposure._signals import main_thread_signals

__all__ = ["WORKER_THREAD_NAME", "ExposureWorker"]

log = logging.getLogger(__name__)

#: The name of every provider's worker thread.
WORKER_THREAD_NAME = "segment-exposure-worker"

_STOP = object()


def _run(
    handle: weakref.WeakMethod[Callable[[Any], None]],
    items: queue.SimpleQueue[Any],
    done: Callable[[], None],
    idle: threading.Condition,
    stopped: threading.Event,
) -> None:
    """The thread's loop. It holds the handler only while handling an item, never while waiting, so a
    provider nobody references (which alone holds the handler's object) can be garbage-collected; its
    finalizer then stops the worker.

    ``stopped`` is set as it ends: ``wait_stopped`` waits on that rather than ``Thread.join()``, which on
    Python 3.13 crashed a child forked by C ``fork()`` (uWSGI) that had restarted its worker.
    """
    try:
        while True:
            item = items.get()
            if item is _STOP:
                with idle:
                    idle.notify_all()
                return
            handler = handle()
            if handler is None:
                return
            try:
                handler(item)
            except Exception:  # the handler counts its own failures; this only keeps the thread alive
                log.exception("segment-exposure: unexpected error in the worker thread")
            del handler
            item = None
            done()
    finally:
        stopped.set()


class ExposureWorker:
    """One thread and its queue: ``handle(item)`` runs on the thread for each item ``put``, in order.

    Args:
        handle: A bound method, called on the worker thread for each item; it should not raise. Held
            weakly: once its object is collected, the thread ends.

    Attributes:
        put: Put an item on the queue (the queue's own method: no call in between on the hot path).
        qsize: How many items wait on the queue.
    """

    def __init__(self, handle: Callable[[Any], None]) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.put = self._queue.put
        self.qsize = self._queue.qsize
        self._idle = threading.Condition()
        self._processed = 0  # written by the worker thread only
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=_run,
            args=(weakref.WeakMethod(handle), self._queue, self._mark_processed, self._idle, self._stopped),
            name=WORKER_THREAD_NAME,
            daemon=True,
        )
        with main_thread_signals():
            self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        """The worker thread (for diagnostics: its id, whether it is alive)."""
        return self._thread

    @property
    def processed(self) -> int:
        """Items the thread has handled so far."""
        return self._processed

    def is_alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    def _mark_processed(self) -> None:
        self._processed += 1
        if self._queue.empty():
            with self._idle:
                self._idle.notify_all()

    def wait_processed(self, target: int, deadline: float) -> bool:
        """Wait until the thread has handled ``target`` items in all, or it ended, or ``deadline`` passed.

        Args:
            target: The processed count to reach (items put since the worker started).
            deadline: A ``time.monotonic()`` time.

        Returns:
            True when ``target`` items were handled.
        """
        with self._idle:
            while self._processed < target and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.1))
        return self._processed >= target

    def stop(self) -> None:
        """Ask the thread to end once it has handled what is queued before this call; waits for nothing."""
        self._queue.put(_STOP)

    def wait_stopped(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the thread to end; True if it has."""
        return self._stopped.wait(max(0.0, timeout))
