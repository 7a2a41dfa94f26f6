"""A provider's ties to its process: fork, exit, SIGTERM, and the pool-process exit of Celery.

``ProcessBinding`` notices a fork (``os.register_at_fork`` hooks, or a changed process id when a C
``fork()`` ran no hooks) and has its owner reset and revive; flushes the owner at exit (``atexit``) and
stops what it left running when it is garbage-collected (a ``weakref.finalize``); and, when asked,
shuts it down on SIGTERM. It holds its owner weakly, and talks to it only through ``ProcessOwner``.

Also here, once per process: the write-key redactor on the loggers on the way to Segment, and the lock
that is safe to take across forks (``process_lock``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import pkgutil
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from segment_exposure._fork import after_fork_in_child
from segment_exposure._signals import main_thread_signals
from segment_exposure.tracking import deployment, segment_client

__all__ = [
    "SIGTERM_GRACE",
    "ProcessBinding",
    "ProcessOwner",
    "hide_secret",
    "install_process_hooks",
    "live_owners",
    "on_sigterm",
    "process_lock",
    "sigterm_owners",
]

log = logging.getLogger(__name__)


class ProcessOwner(Protocol):
    """What a ``ProcessBinding`` needs of its owner (the provider)."""

    #: Seconds the exit hook and the SIGTERM handler give ``shutdown``.
    flush_timeout: float

    @property
    def forked(self) -> bool:
        """True between a fork's reset and the revival in the child."""
        ...

    def reset_after_fork(self) -> None:
        """In a forked child: drop what belongs to the parent (counts, locks). Only this thread exists."""
        ...

    def revive(self) -> None:
        """In a forked child: rebuild what sending needs (threads, client); then ``adopt`` the process."""
        ...

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush within ``timeout`` and stop."""
        ...


# -- once per process ------------------------------------------------------------------------------

#: Takes write keys out of log records on the way to Segment's logger and ours (see RedactingFilter).
_redactor = segment_client.RedactingFilter()


def hide_secret(secret: str | None) -> None:
    """Redact ``secret`` (a write key) from every log record on the way to Segment's logger and ours."""
    _redactor.add(secret)


def install_process_hooks(sdk_loggers: tuple[str, ...] = ("segment",)) -> None:
    """What every provider needs once per process, done by the first one rather than at import.

    The write-key redactor goes on the SDK's loggers (``segment``, ``rudderstack``) and on each of ours
    on the path to it (a logger's filters see only its own records, not its children's); the at-fork
    hook resets providers in a forked child. Adding the same filter or hook again does nothing.
    """
    # Every module of segment_exposure.tracking is on the path to Segment (listed, not imported: some
    # import this one).
    package = sys.modules[__package__]
    modules = [f"{__package__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    for name in (*sdk_loggers, *modules):
        logging.getLogger(name).addFilter(_redactor)
    after_fork_in_child(_after_fork_in_child)


_live: weakref.WeakSet[ProcessOwner] = weakref.WeakSet()

_getpid = os.getpid
# One lock per process id, made in that process when first needed: a lock inherited through fork() may
# be held by a thread that does not exist in the child, and one made in an at-fork hook would predate
# gevent's monkey-patching (a real lock held by a greenlet that yields blocks the whole worker).
_pid_locks: dict[int, threading.RLock] = {}


def process_lock() -> threading.RLock:
    """This process's own re-entrant lock, for changes that a fork must never find half done."""
    pid = _getpid()
    lock = _pid_locks.get(pid)
    if lock is None:
        lock = _pid_locks.setdefault(pid, threading.RLock())  # setdefault: one winner among threads
        for other in [p for p in _pid_locks if p != pid]:
            _pid_locks.pop(other, None)
    return lock


def live_owners() -> list[ProcessOwner]:
    """Every owner (provider) bound to this process and still alive."""
    return list(_live)


def _after_fork_in_child() -> None:
    for owner in list(_live):
        owner.reset_after_fork()


# -- exit and collection ---------------------------------------------------------------------------


def _exit_hook(owner: weakref.ref[ProcessOwner]) -> None:
    live = owner()
    if live is not None:
        live.shutdown(live.flush_timeout)  # checks the process first; does nothing once closed


def _collected(exit_hook: Callable[[], None], on_collected: Callable[[], None]) -> None:
    """The owner was garbage-collected: its exit hook goes, and what it left running is stopped."""
    atexit.unregister(exit_hook)
    on_collected()


# -- SIGTERM ---------------------------------------------------------------------------------------

#: Owners made with ``flush_on_sigterm=True``, held weakly, and what SIGTERM did before our handler.
_sigterm_flushed: weakref.WeakSet[ProcessOwner] = weakref.WeakSet()
_sigterm_before: Any = signal.SIG_DFL

#: How long past the longest ``flush_timeout`` the handler waits for the shutdowns' last steps.
SIGTERM_GRACE = 1.0


def sigterm_owners() -> list[ProcessOwner]:
    """The live owners that SIGTERM shuts down (those made with ``flush_on_sigterm=True``)."""
    return list(_sigterm_flushed)


def on_sigterm(signum: int, frame: Any) -> None:
    """The SIGTERM handler (one per process): shut down every owner that asked (each within its
    ``flush_timeout``), then do what SIGTERM did before."""
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
    owners = list(_sigterm_flushed)
    if owners:
        _shut_down_aside(owners)
    previous = _sigterm_before
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _shut_down_aside(owners: list[ProcessOwner]) -> None:
    """Shut the owners down on threads of their own, all at once, waiting until the longest deadline.

    The handler runs on the main thread wherever the signal found it, possibly inside the provider's own
    bookkeeping with one of its locks held (a flush settling its counts): a shutdown on that thread would
    wait for the lock forever, and the process would hang until SIGKILL. Off the thread, such a shutdown
    only runs out of time.
    """
    deadline = time.monotonic() + max(o.flush_timeout for o in owners) + SIGTERM_GRACE
    finished: list[threading.Event] = []
    for owner in owners:
        done = threading.Event()
        try:
            with main_thread_signals():
                threading.Thread(
                    target=_shut_down, args=(owner, done), name="segment-exposure-sigterm", daemon=True
                ).start()
        except RuntimeError:  # no new threads (the interpreter is finalising): on this thread, then
            _shut_down(owner, done)
        finished.append(done)
    left = sum(not done.wait(max(0.0, deadline - time.monotonic())) for done in finished)
    if left:
        log.warning("segment-exposure: %d provider(s) did not finish shutting down on SIGTERM in time", left)


def _shut_down(owner: ProcessOwner, done: threading.Event) -> None:
    try:
        owner.shutdown(owner.flush_timeout)
    finally:
        done.set()


# -- the binding -----------------------------------------------------------------------------------


class ProcessBinding:
    """One owner's ties to the process it runs in: fork detection, the exit hook, collection, SIGTERM.

    Registers for the at-fork reset, the exit flush and collection, each without a strong reference to
    the owner: one nobody references is collected, and ``on_collected`` then stops what it left running.

    Args:
        owner: The provider; held weakly.
        on_collected: Runs when ``owner`` is garbage-collected (not at exit: the exit hook flushes
            there). It must not reference ``owner``.
        flush_on_sigterm: Shut ``owner`` down on SIGTERM (see ``install_sigterm_flush``).

    Attributes:
        pid: The process the owner's runtime (threads, client) belongs to; ``adopt`` sets it.
    """

    __slots__ = ("__weakref__", "_exit_hook", "_owner", "pid")

    def __init__(
        self, owner: ProcessOwner, *, on_collected: Callable[[], None], flush_on_sigterm: bool = False
    ) -> None:
        self.pid = _getpid()
        self._owner = weakref.ref(owner)
        _live.add(owner)
        # The exit hook and the finalizer hold the owner weakly: one nobody references is collected.
        self._exit_hook: Callable[[], None] = functools.partial(_exit_hook, self._owner)
        # Not at exit: there the exit hook flushes, and a finalizer run first would stop the worker.
        weakref.finalize(owner, _collected, self._exit_hook, on_collected).atexit = False
        atexit.register(self._exit_hook)
        if flush_on_sigterm:
            self.install_sigterm_flush()

    def adopt(self) -> None:
        """The owner's runtime now belongs to this process (it was just built here)."""
        self.pid = _getpid()

    def check(self, *, revive: bool) -> None:
        """Notice a fork that ``os.register_at_fork`` hooks never saw, and adopt this process.

        uWSGI forks its workers with C ``fork()``, which runs no Python hooks: the parent's threads are
        gone, yet look alive, and locks they held stay locked. So the process id is compared where it
        is cheap to (new exposures, flush, shutdown, the exit hook), as sentry-python does.

        Args:
            revive: Also rebuild the owner's runtime in this process (before sending), not only reset it.
        """
        pid = _getpid()
        if self.pid == pid:
            return
        owner = self._owner()
        if owner is None:
            return
        with process_lock():
            if self.pid == pid:
                return
            if not owner.forked:
                owner.reset_after_fork()
            if revive:
                owner.revive()

    def unregister_exit_hook(self) -> None:
        """The owner shut down: nothing left for the exit hook to do."""
        atexit.unregister(self._exit_hook)

    def hook_pool_process_exit(self) -> None:
        """A pool process that ends with ``os._exit()`` runs no exit hook: flush on its own exit signal."""
        deployment.on_pool_process_exit(self._exit_hook, f"segment-exposure-{id(self._owner())}")

    def install_sigterm_flush(self) -> None:
        """Shut the owner down (within its ``flush_timeout``) on SIGTERM, then do what SIGTERM did before.

        Python's default SIGTERM ends the process without running atexit hooks, so a container stop or
        ``kill`` would lose what is queued. Servers that turn SIGTERM into a clean exit (gunicorn,
        uWSGI) need none of this: the exit hook flushes.
        """
        owner = self._owner()
        if owner is None:
            return
        if threading.current_thread() is not threading.main_thread():
            log.warning("segment-exposure: flush_on_sigterm needs the main thread; SIGTERM not handled")
            return
        _sigterm_flushed.add(owner)
        current = signal.getsignal(signal.SIGTERM)
        if current is not on_sigterm:  # one handler per process, however many providers ask for it
            global _sigterm_before
            _sigterm_before = current
            signal.signal(signal.SIGTERM, on_sigterm)
