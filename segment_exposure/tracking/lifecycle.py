"""The provider's life in a process: its threads, fork, exit, SIGTERM, flush and shutdown.

Kept apart from the hot path (``provider.py``) because none of it runs per exposure: it starts the
worker, notices a fork (by hooks or by process id) and rebuilds what the child needs, and bounds every
wait on the way out. A provider nobody references is collected: the exit hook and the finalizer hold it
weakly, and the finalizer stops its thread.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import pkgutil
import queue
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from segment_exposure._fork import after_fork_in_child
from segment_exposure._signals import main_thread_signals
from segment_exposure.tracking import deployment, segment_check, segment_client
from segment_exposure.tracking.dedupe import DedupeCache
from segment_exposure.tracking.worker import _STOP, ExposureWorker, _weakly, run_worker

__all__ = ["ProviderLifecycle", "live_providers"]

log = logging.getLogger(__name__)

#: Takes write keys out of log records on the way to Segment's logger and ours (see RedactingFilter).
_redactor = segment_client.RedactingFilter()


def _install_process_hooks() -> None:
    """What every provider needs once per process, done by the first one rather than at import.

    The write-key redactor goes on Segment's logger and on each of ours on the path to Segment (a
    logger's filters see only its own records, not its children's); the at-fork hook resets providers
    in a forked child. Adding the same filter or hook again does nothing.
    """
    # Every module of segment_exposure.tracking is on the path to Segment (listed, not imported: some
    # import this one).
    package = sys.modules[__package__]
    modules = [f"{__package__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    for name in ("segment", *modules):
        logging.getLogger(name).addFilter(_redactor)
    after_fork_in_child(_after_fork_in_child)


_live: weakref.WeakSet[ProviderLifecycle] = weakref.WeakSet()

_getpid = os.getpid
# One lock per process id, made in that process when first needed: a lock inherited through fork() may
# be held by a thread that does not exist in the child, and one made in an at-fork hook would predate
# gevent's monkey-patching (a real lock held by a greenlet that yields blocks the whole worker).
_pid_locks: dict[int, threading.RLock] = {}


def _process_lock() -> threading.RLock:
    pid = _getpid()
    lock = _pid_locks.get(pid)
    if lock is None:
        lock = _pid_locks.setdefault(pid, threading.RLock())  # setdefault: one winner among threads
        for other in [p for p in _pid_locks if p != pid]:
            _pid_locks.pop(other, None)
    return lock


def live_providers() -> list[ProviderLifecycle]:
    """Every provider alive in this process (``testing.capture_exposures`` attaches to them)."""
    return list(_live)


def _after_fork_in_child() -> None:
    for provider in list(_live):
        provider._reset_after_fork()


class _Lifecycle:
    """What a provider's finalizer needs, kept apart from the provider so that it can be collected."""

    queue: queue.SimpleQueue[Any] | None = None
    exit_hook: Callable[[], object] | None = None
    owned_client: Any = None
    closed = False  # shut down: what was left is counted already


def _release(life: _Lifecycle) -> None:
    """A provider was garbage-collected: stop its worker thread and the Segment client it owned."""
    if life.exit_hook is not None:
        atexit.unregister(life.exit_hook)
    if life.queue is None:
        return
    left = life.queue.qsize()
    life.queue.put(_STOP)
    client = life.owned_client
    if client is not None:
        left += getattr(getattr(client, "queue", None), "unfinished_tasks", 0) or 0
        try:
            segment_client.stop_consumers(client, 0.0)  # asks them to stop; waits for nothing
        except RuntimeError:
            pass  # collected on a consumer thread itself, which cannot join itself; it stops anyway
    if left and not life.closed:
        log.warning(
            "segment-exposure: a provider was garbage-collected without shutdown(); "
            "up to %d queued exposure(s) were not sent",
            left,
        )


def _exit_hook(provider: weakref.ref[ProviderLifecycle]) -> None:
    live = provider()
    if live is not None:
        live._at_exit()


#: Providers made with ``flush_on_sigterm=True``, held weakly, and what SIGTERM did before our handler.
_sigterm_flushed: weakref.WeakSet[ProviderLifecycle] = weakref.WeakSet()
_sigterm_before: Any = signal.SIG_DFL


#: How long past the longest ``flush_timeout`` the handler waits for the shutdowns' last steps.
_SIGTERM_GRACE = 1.0


def _on_sigterm(signum: int, frame: Any) -> None:
    """Shut down every provider that asked (each within its ``flush_timeout``), then do what SIGTERM did."""
    spawn = _greenlet_spawn_if_in_hub()
    if spawn is not None:  # gevent runs this inside its event loop, where nothing may block: hand it over
        spawn(_stop_then_previous, signum, frame)
        return
    _stop_then_previous(signum, frame)


def _greenlet_spawn_if_in_hub() -> Callable[..., Any] | None:
    """``gevent.spawn`` when this runs in gevent's hub (its signal callbacks do), else None."""
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return None
    try:
        in_hub = gevent.getcurrent() is gevent.get_hub()
    except Exception:
        return None
    return gevent.spawn if in_hub else None


def _stop_then_previous(signum: int, frame: Any) -> None:
    providers = list(_sigterm_flushed)
    if providers:
        _shut_down_aside(providers)
    previous = _sigterm_before
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _shut_down_aside(providers: list[ProviderLifecycle]) -> None:
    """Shut the providers down on threads of their own, all at once, waiting until the longest deadline.

    The handler runs on the main thread wherever the signal found it, possibly inside the provider's own
    bookkeeping with one of its locks held (a flush settling its counts): a shutdown on that thread would
    wait for the lock forever, and the process would hang until SIGKILL. Off the thread, such a shutdown
    only runs out of time.
    """
    deadline = time.monotonic() + max(p.flush_timeout for p in providers) + _SIGTERM_GRACE
    finished: list[threading.Event] = []
    for provider in providers:
        done = threading.Event()
        try:
            with main_thread_signals():
                threading.Thread(
                    target=_shut_down, args=(provider, done), name="segment-exposure-sigterm", daemon=True
                ).start()
        except RuntimeError:  # no new threads (the interpreter is finalising): on this thread, then
            _shut_down(provider, done)
        finished.append(done)
    left = sum(not done.wait(max(0.0, deadline - time.monotonic())) for done in finished)
    if left:
        log.warning("segment-exposure: %d provider(s) did not finish shutting down on SIGTERM in time", left)


def _shut_down(provider: ProviderLifecycle, done: threading.Event) -> None:
    try:
        provider.shutdown(provider.flush_timeout)
    finally:
        done.set()


class ProviderLifecycle(ExposureWorker):
    """Start, fork, flush and stop: the half of the provider that runs outside ``track()``."""

    # State the provider's constructor sets up (see SegmentExposureTrackingProvider.__init__).
    _owns_client: bool
    _client_args: tuple[str, str | None, dict[str, Any]]
    _lifecycle: _Lifecycle
    _dedupe: DedupeCache
    _exit_hook: Callable[[], None]
    _drain_lock: threading.Lock
    _pid: int
    flush_timeout: float

    def _start_lifecycle(self, flush_on_sigterm: bool) -> None:
        """Register for the at-fork reset, the exit flush and collection, each without a strong reference."""
        _live.add(self)
        # The exit hook and the finalizer hold the provider weakly: one nobody references is collected,
        # and its finalizer stops its thread (and the Segment client it owns).
        self._exit_hook = functools.partial(_exit_hook, weakref.ref(self))
        self._lifecycle.exit_hook = self._exit_hook
        self._lifecycle.owned_client = self._analytics if self._owns_client else None
        # Not at exit: there the exit hook flushes, and a finalizer run first would stop the worker.
        weakref.finalize(self, _release, self._lifecycle).atexit = False
        atexit.register(self._exit_hook)
        if flush_on_sigterm:
            self._install_sigterm_flush()

    # -- lifecycle -----------------------------------------------------------------------------------

    # Forked or closed: one attribute for track() to check instead of two.
    _unusual = False
    _forked = False
    _closed = False
    # The server gives Python no threads (uWSGI without --enable-threads): nothing could ever be sent.
    _threadless = False

    def _set_state(self, *, forked: bool | None = None, closed: bool | None = None) -> None:
        if forked is not None:
            self._forked = forked
        if closed is not None:
            self._closed = closed
        self._unusual = self._forked or self._closed

    def _init_runtime(self) -> None:
        """Queue, worker thread and Segment hooks: the parts a forked child must rebuild."""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._processed = 0  # written by the worker thread only; compared with stats.tracked by flush()
        # Final outcomes counted so far (see _settle); shutdown() counts the rest as lost, once.
        self._settle_lock = threading.Lock()
        self._settled = 0
        self._final = False
        self._on_client_queue = self._client_outcomes = 0  # see ExposureWorker._settle_drained
        self._full_warned = 0.0
        self._full_drops = 0
        if self._internals.consumer_hooks:
            # Weakly: Segment's consumer thread holds these, and must not keep a dropped provider alive.
            segment_client.instrument(self._analytics, _weakly(self._on_delivered), _weakly(self._on_failed))
        self._lifecycle.queue = self._queue
        self._worker_stopped = threading.Event()
        self._worker = threading.Thread(
            target=run_worker,
            args=(weakref.ref(self), self._queue, self._worker_stopped),
            name="segment-exposure-worker",
            daemon=True,
        )
        with main_thread_signals():
            self._worker.start()
        self._drain_lock = threading.Lock()
        self._pid = _getpid()  # last: a process-id match means this runtime is ready

    def _check_process(self, *, revive: bool) -> None:
        """Notice a fork that ``os.register_at_fork`` hooks never saw, and adopt this process.

        uWSGI forks its workers with C ``fork()``, which runs no Python hooks: the parent's threads are
        gone, yet look alive, and locks they held stay locked. So the process id is compared where it
        is cheap to (new exposures, flush, shutdown, the exit hook), as sentry-python does.
        """
        pid = _getpid()
        if self._pid == pid:
            return
        with _process_lock():
            if self._pid == pid:
                return
            if not self._forked:
                self._reset_after_fork()
            if revive:
                self._revive()

    def _reset_after_fork(self) -> None:
        # Runs in the child right after fork(), when only this thread exists. Locks that another thread
        # held at fork time would never be released here, so every lock is replaced.
        self._dedupe.reset_lock()
        self._stats.reset()
        self._set_state(forked=True)

    def _revive(self) -> None:
        with _process_lock():
            if not self._forked or self._threadless:
                return  # thread-less: stay forked, so flush() and shutdown() wait for nothing
            if self._closed:
                self._set_state(forked=False)
                return
            self._revive_runtime()
            self._set_state(forked=False)

    def _revive_runtime(self) -> None:
        if hasattr(self._analytics, "consumers") and segment_client.is_task_queue(
            getattr(self._analytics, "queue", None)
        ):
            if self._internals.revive_in_place:
                segment_client.revive_after_fork(self._analytics)
            elif self._owns_client:
                # The public way: a new client (the parent's, whose threads do not exist here, is dropped).
                key, host, options = self._client_args
                self._analytics = segment_check.new_client_after_fork(
                    self._analytics, lambda: segment_client.make_client(key, host, **options)
                )
            else:
                deployment.warn_once(
                    "segment-exposure: after fork, the Segment client you passed cannot be given new "
                    "consumer threads without segment-analytics-python internals (see the warning above): "
                    "exposures from this process stay queued; pass write_key= so the provider owns its client"
                )
        self._init_runtime()
        # A pool process that ends with os._exit() runs no exit hook: flush on its own exit signal.
        deployment.on_pool_process_exit(self._exit_hook, f"segment-exposure-{id(self)}")

    def _at_exit(self) -> None:
        self._check_process(revive=False)
        if not self._closed:
            self.shutdown(self.flush_timeout)

    def _install_sigterm_flush(self) -> None:
        """Flush (within ``flush_timeout``) on SIGTERM, then do what SIGTERM did before.

        Python's default SIGTERM ends the process without running atexit hooks, so a container stop or
        ``kill`` would lose what is queued. Servers that turn SIGTERM into a clean exit (gunicorn,
        uWSGI) need none of this: the exit hook flushes.
        """
        if threading.current_thread() is not threading.main_thread():
            log.warning("segment-exposure: flush_on_sigterm needs the main thread; SIGTERM not handled")
            return
        _sigterm_flushed.add(self)
        current = signal.getsignal(signal.SIGTERM)
        if current is not _on_sigterm:  # one handler per process, however many providers ask for it
            global _sigterm_before
            _sigterm_before = current
            signal.signal(signal.SIGTERM, _on_sigterm)

    # -- flushing ------------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver everything queued, waiting at most ``timeout`` seconds.

        Returns True when everything queued was delivered; False when the deadline passed first or
        Segment gave up on some of it (counted as ``delivery_failed``). Never raises.
        """
        try:
            deadline = time.monotonic() + max(0.0, timeout)
            self._check_process(revive=False)
            failures_before = self._stats.dropped["delivery_failed"].value
            if self._forked:
                return True  # nothing of this process's own is queued yet
            batch = self._invocation_batch
            # Per invocation, the worker (CPU only, no network) gets a moment even past a spent deadline:
            # what it has not handed over cannot be posted, nor counted as missing the deadline.
            drained = self._wait_worker(deadline if batch is None else max(deadline, time.monotonic() + 0.1))
            if batch is not None:
                drained = batch.post(deadline) and drained
                if not segment_client.unfinished(self._analytics):
                    return drained  # nothing on Segment's queue (your own events would be): no wait on it
            queued = self._on_client_queue
            wait = (
                segment_client.wait_drained
                if self._internals.queue_conditions
                else segment_check.wait_flushed
            )
            drained = drained and wait(self._analytics, deadline)
            if drained:
                self._settle_drained(queued)
            return drained and self._stats.dropped["delivery_failed"].value == failures_before
        except Exception:
            log.exception("segment-exposure: flush failed")
            return False

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush within ``timeout``, then stop the worker (and the Segment client, if owned).

        What is still queued at the deadline is counted as dropped with reason ``shutdown``.
        """
        self._check_process(revive=False)
        if self._closed:
            return True
        if self._forked:
            # A forked child that never tracked: what is queued belongs to the parent, which sends it,
            # and the parent's threads do not exist here (Segment's own exit hook would wait for them).
            self._set_state(closed=True)
            segment_client.forget_parent_threads(self._analytics)
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        delivered = self.flush(timeout)
        self._set_state(closed=True)
        self._lifecycle.closed = True
        try:
            atexit.unregister(self._exit_hook)
            self._queue.put(_STOP)
            self._worker_stopped.wait(max(0.0, deadline - time.monotonic()))
            if self._owns_client:
                segment_client.stop_consumers(self._analytics, deadline)
            # Everything tracked whose outcome is not known yet (queued here, in the worker's hands, or
            # held by Segment's client) is counted as lost to the shutdown, exactly once.
            with self._settle_lock:
                self._final = True
                left = self._stats.tracked.value - self._settled
            if left > 0:
                self._stats.dropped["shutdown"].incr(left)
                log.warning("segment-exposure: %d exposure(s) not delivered by the shutdown deadline", left)
        except Exception:
            log.exception("segment-exposure: shutdown failed")
            return False
        return delivered
