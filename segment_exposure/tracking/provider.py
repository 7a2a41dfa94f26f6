"""``SegmentExposureTrackingProvider``: Experiment exposures into Segment, from inside web requests.

Only the cheap part runs on the caller's thread: identity, validation, the dedupe decision and a put on
an in-memory queue. Building the Segment message (context, message id, timestamp), Segment's own
cleaning and JSON size check, and the HTTP upload all happen on background threads, so ``track()``
costs a fraction of a direct ``Client.track()`` and never waits on the network.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from time import time as _time
from typing import Any

from segment_exposure._fork import after_fork_in_child
from segment_exposure.exposure import Exposure
from segment_exposure.identity.ids import as_id
from segment_exposure.identity.user import _bound, _request_context
from segment_exposure.tracking import deployment, invocation_batch, segment_check, segment_client
from segment_exposure.tracking.dedupe import _UNSET, Decision, DedupeCache, dedupe_key
from segment_exposure.tracking.message_id import hash_key
from segment_exposure.tracking.stats import ProviderStats
from segment_exposure.tracking.worker import _MAX_MESSAGE_BYTES, _STOP, ExposureWorker, _Pending, run_worker

__all__ = ["SegmentExposureTrackingProvider"]

log = logging.getLogger(__name__)

#: Segment rejects a message over 32 KB of JSON. Exposures whose own strings stay under this many
#: characters cannot reach it, so only larger ones pay for an exact check on the caller's thread.
_CHEAP_SIZE_BOUND = 4_000

#: Listeners every new provider starts with (``testing.capture_exposures`` adds one for its block); read
#: once per provider, in ``__init__``, never on the hot path.
_default_listeners: list[Callable[[dict[str, Any]], object]] = []

_redactor = segment_client.RedactingFilter()

#: A free-threaded Python (3.13t, GIL off) runs C calls such as ``OrderedDict.move_to_end`` concurrently,
#: so track()'s fast path then only reads the dedupe cache (see DedupeCache.touch).
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()


def _install_process_hooks() -> None:
    """What every provider needs once per process, done by the first one rather than at import.

    The write-key redactor goes on Segment's logger and on each of ours on the path to Segment (a
    logger's filters see only its own records, not its children's); the at-fork hook resets providers
    in a forked child. Adding the same filter or hook again does nothing.
    """
    for name in (
        "segment",
        __name__,
        segment_client.__name__,
        deployment.__name__,
        invocation_batch.__name__,
        ExposureWorker.__module__,
        f"{__package__}.serverless",  # not imported here: it imports this module
    ):
        logging.getLogger(name).addFilter(_redactor)
    after_fork_in_child(_after_fork_in_child)


_live: weakref.WeakSet[SegmentExposureTrackingProvider] = weakref.WeakSet()

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


def _exit_hook(provider: weakref.ref[SegmentExposureTrackingProvider]) -> None:
    live = provider()
    if live is not None:
        live._at_exit()


def _weakly(method: Callable[..., None]) -> Callable[..., None]:
    """``method``, called only while its object is alive, without keeping it alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args)

    return call


class SegmentExposureTrackingProvider(ExposureWorker):
    """Sends Amplitude Experiment exposures as Segment ``$exposure`` track events.

    Give it a ``write_key`` (it then owns a Segment client) or an existing ``analytics`` client.
    ``track()`` never raises and never blocks; every exposure it does not send is counted in
    ``stats()["dropped"]`` under its reason.
    """

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        *,
        analytics: Any = None,
        dedupe_capacity: int = 65_536,
        dedupe_ttl: float = 86_400.0,
        max_queue_size: int = 10_000,
        flush_timeout: float = 5.0,
        include_metadata: bool = False,
        integrations: Mapping[str, Any] | None = None,
        client_options: Mapping[str, Any] | None = None,
        flush_on_sigterm: bool = False,
    ) -> None:
        if (write_key is None) == (analytics is None):
            raise ValueError("pass exactly one of write_key= (a new Segment client) or analytics= (yours)")
        if write_key is not None and (not isinstance(write_key, str) or not write_key):
            raise ValueError("write_key must be a non-empty str")
        if max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        if flush_timeout < 0:
            raise ValueError("flush_timeout must be >= 0")
        self._owns_client = analytics is None
        # What of segment-analytics-python's inside may be used; the public API where not (segment_check).
        self._internals = segment_check.check_internals()
        if analytics is None:
            options = {"max_queue_size": max_queue_size, **(client_options or {})}
            if not self._internals.consumer_hooks:
                options["on_error"] = segment_check.fallback_on_error(
                    self._on_failed, options.get("on_error")
                )
            self._client_args: tuple[str, str | None, dict[str, Any]] = (write_key or "", host, options)
            analytics = segment_client.make_client(write_key or "", host, **options)
        self._analytics = analytics
        if not self._internals.consumer_hooks and not self._owns_client:
            deployment.warn_once(
                "segment-exposure: without segment-analytics-python internals (see the warning above), "
                "failures of the Segment client you passed reach only its own on_error: the provider "
                "counts what a flush drains as delivered; pass write_key= so failures are counted too"
            )
        # A real asynchronous Segment client: messages go straight onto its queue (see wire_message).
        self._direct = segment_client.accepts_direct_enqueue(analytics) and self._internals.direct_enqueue
        # An in-memory, sync_mode or send=False client: track() returning is the delivery.
        self._synchronous = (
            not segment_client.is_task_queue(getattr(analytics, "queue", None))
            or bool(getattr(analytics, "sync_mode", False))
            or getattr(analytics, "send", True) is False
        )
        _install_process_hooks()
        secret = getattr(analytics, "write_key", None)
        _redactor.add(secret if isinstance(secret, str) else None)
        self._hash_key = hash_key(secret if isinstance(secret, str) else None)
        self._dedupe = DedupeCache(dedupe_capacity, dedupe_ttl)
        self._dedupe_entries = self._dedupe._entries
        self._dedupe_touch = self._dedupe.touch
        self._dedupe_ttl = self._dedupe.ttl
        self._max_queue_size = max_queue_size
        self.flush_timeout = flush_timeout
        self.include_metadata = include_metadata
        self._integrations = dict(integrations) if integrations else None
        self._lifecycle = _Lifecycle()
        self._stats = ProviderStats()
        self._count_deduplicated = self._stats.deduplicated.incr_one
        self._unflushed_platform = deployment.detect_platform()
        self._init_runtime()
        problem = deployment.threads_unavailable()
        if problem is not None:
            self._threadless = True
            deployment.warn_once(problem)
        if (problem := deployment.stop_skips_exit_hooks(flush_on_sigterm)) is not None:
            deployment.warn_once(problem)
        self._listeners: tuple[Callable[[dict[str, Any]], object], ...] = tuple(_default_listeners)
        _live.add(self)
        # The exit hook and the finalizer hold the provider weakly: one nobody references is collected,
        # and its finalizer stops its thread (and the Segment client it owns).
        self._exit_hook = functools.partial(_exit_hook, weakref.ref(self))
        self._lifecycle.exit_hook = self._exit_hook
        self._lifecycle.owned_client = analytics if self._owns_client else None
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
        self._full_warned = 0.0
        self._full_drops = 0
        if self._internals.consumer_hooks:
            # Weakly: Segment's consumer thread holds these, and must not keep a dropped provider alive.
            segment_client.instrument(self._analytics, _weakly(self._on_delivered), _weakly(self._on_failed))
        self._lifecycle.queue = self._queue
        self._worker = threading.Thread(
            target=run_worker,
            args=(weakref.ref(self), self._queue),
            name="segment-exposure-worker",
            daemon=True,
        )
        with segment_client.main_thread_signals():
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
                segment_client.forget_parent_threads(self._analytics)
                atexit.unregister(self._analytics.join)
                key, host, options = self._client_args
                self._analytics = segment_client.make_client(key, host, **options)
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
        previous = signal.getsignal(signal.SIGTERM)
        provider = weakref.ref(self)

        def on_sigterm(signum: int, frame: Any) -> None:
            live = provider()
            if live is not None:
                live.shutdown(live.flush_timeout)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)

    # -- the hot path --------------------------------------------------------------------------------

    def track(self, exposure: Exposure, user: object = None) -> bool:
        """Send ``exposure`` for ``user``, or for the user bound to this request when ``user`` is None.

        Returns True when the exposure was accepted or was a repeat (deduplicated), False when it was
        set aside; the reason is counted in ``stats()``. Never raises.
        """
        try:
            if self._unusual:
                if self._forked:
                    self._revive()
                if self._closed:
                    self._stats.dropped["shutdown"].incr()
                    return False
            if user is None:
                user = _bound.get()
                if user is None:
                    return self._drop("no_identity", exposure)
            # The fast path, for a repeat: raw fields, one hash, one lock-free lookup. Everything it
            # can match was validated when first recorded, so validation is for the send path only.
            if user.__class__ is dict:
                user_id = user.get("user_id")
                device_id = user.get("device_id")
            else:
                user_id = getattr(user, "user_id", None)
                device_id = getattr(user, "device_id", None)
            # An int id (a primary key) is sent as its text, and recorded under it: hash that here too.
            if user_id.__class__ is int:
                user_id = str(user_id)
            if device_id.__class__ is int:
                device_id = str(device_id)
            now = _time()
            try:
                # dedupe_key() and DedupeCache.is_repeat(), inlined: each call would cost a tenth of
                # this whole path.
                variant = exposure.variant
                key = hash((user_id, device_id, exposure.flag_key, exposure.experiment_key))
            except (AttributeError, TypeError):
                return self._drop("invalid", exposure)
            entry = self._dedupe_entries.get(key)
            if (
                entry is not None
                and entry[0] == (_UNSET if variant is None else variant)
                and entry[1] == int(now // self._dedupe_ttl)
            ):
                if _GIL:
                    # One C call, atomic under the GIL: least recently used order kept exactly.
                    try:
                        self._dedupe_entries.move_to_end(key)
                    except KeyError:
                        pass
                else:
                    self._dedupe_touch(key)  # no GIL: only mark it used; eviction reads the mark
                self._count_deduplicated()
                return True
            return self._track_new(exposure, user, now, key, user_id, device_id)
        except Exception:
            try:
                log.exception("segment-exposure: unexpected error in track(); exposure set aside")
                self._stats.dropped["error"].incr()
            except Exception:
                pass
            return False

    def _track_new(
        self,
        exposure: Exposure,
        user: object,
        now: float,
        key: int,
        raw_user_id: object,
        raw_device_id: object,
    ) -> bool:
        """The send path: validate, size-check, record in the dedupe cache and queue for the worker."""
        if self._pid != _getpid():
            self._check_process(revive=True)
        # identity.identity_from_user(), inlined on the ids track() has read already.
        user_id, device_id = raw_user_id, raw_device_id
        if user.__class__ is not dict and isinstance(user, Mapping):  # track() read its attributes
            user_id, device_id = user.get("user_id"), user.get("device_id")
        if user_id.__class__ is not str or not user_id or user_id.isspace():
            user_id = as_id(user_id)
        if device_id.__class__ is not str or not device_id or device_id.isspace():
            device_id = as_id(device_id)
        if user_id is None and device_id is None:
            return self._drop("no_identity", exposure)
        if exposure.__class__ is not Exposure and not isinstance(exposure, Exposure):
            return self._drop("invalid", exposure)
        flag_key = exposure.flag_key
        variant = exposure.variant
        experiment_key = exposure.experiment_key
        if (
            flag_key.__class__ is not str
            or not flag_key
            or (variant is not None and (variant.__class__ is not str or not variant))
            or (experiment_key is not None and experiment_key.__class__ is not str)
        ):
            return self._drop("invalid", exposure)
        size = len(flag_key) + len(variant or "") + len(experiment_key or "")
        size += len(user_id or "") + len(device_id or "")
        # Only an exposure whose own strings are long pays for an exact check here; the user context and
        # opted-in metadata are sized exactly on the worker thread (counted as too_large there).
        if size > _CHEAP_SIZE_BOUND and self._too_large(exposure, user, user_id, device_id):
            return self._drop("too_large", exposure)
        if self._threadless:
            return self._drop(deployment.THREADS_DISABLED, exposure)
        if user_id is not raw_user_id or device_id is not raw_device_id:
            key = dedupe_key(user_id, device_id, flag_key, experiment_key)  # normalised: hash again
        decision = self._dedupe.decide(key, variant, now)
        if not decision.send:
            self._stats.deduplicated.incr()
            return True
        if self._queue.qsize() >= self._max_queue_size:
            self._dedupe.undo(key, decision)
            return self._drop("queue_full", exposure)
        # The request's context (userAgent, ip, locale) belongs to the request's own user only.
        request_context = _request_context.get() if user is _bound.get() else None
        pending = _Pending(exposure, user, user_id, device_id, now, decision, request_context)
        self._queue.put(pending)
        self._stats.tracked.incr()
        if self._listeners:
            self._notify_listeners(pending)
        return True

    def _drop(self, reason: str, exposure: object) -> bool:
        self._stats.dropped[reason].incr()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("segment-exposure: exposure set aside (%s): %r", reason, exposure)
        return False

    def _too_large(
        self, exposure: Exposure, user: object, user_id: str | None, device_id: str | None
    ) -> bool:

        message = self.build_message(
            _Pending(exposure, user, user_id, device_id, time.time(), Decision(True, 0, 0))
        )
        message["type"] = "track"
        return len(json.dumps(message, default=str).encode()) > _MAX_MESSAGE_BYTES - 512

    def _notify_listeners(self, pending: _Pending) -> None:
        message = self.build_message(pending)
        for listener in self._listeners:
            try:
                listener(dict(message))
            except Exception:
                log.exception("segment-exposure: exposure listener %r failed", listener)

    # -- listeners -----------------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[dict[str, Any]], object]) -> None:
        """Call ``listener`` with each exposure this provider accepts (after dedupe), on the caller's thread.

        It gets the keyword arguments handed to Segment's ``Client.track()`` (``event``, ``user_id``,
        ``anonymous_id``, ``properties``, ``context``, ``timestamp``, ``message_id``). Meant for tests and
        auditing: building that message costs the caller's thread what the worker would otherwise do.
        A listener that raises is logged and does not affect tracking.
        """
        if not callable(listener):
            raise TypeError("listener must be callable")
        with _process_lock():
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Callable[[dict[str, Any]], object]) -> None:
        """Stop calling ``listener``; removing one that was never added does nothing."""
        with _process_lock():
            listeners = list(self._listeners)
            if listener in listeners:
                listeners.remove(listener)
            self._listeners = tuple(listeners)

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
            enqueued = self._stats.enqueued.value
            drained = drained and segment_client.wait_drained(
                self._analytics, deadline, conditions=self._internals.queue_conditions
            )
            if drained:
                self._settle_drained(enqueued)
            return drained and self._stats.dropped["delivery_failed"].value == failures_before
        except Exception:
            log.exception("segment-exposure: flush failed")
            return False

    def _settle_drained(self, enqueued: int) -> None:
        """Without consumer hooks: what was enqueued before a drain, and did not fail, was delivered.

        Segment's consumer calls ``on_error`` before it marks a failed batch done, so once the queue has
        drained every failure among those messages has been counted.
        """
        if self._internals.consumer_hooks or self._synchronous:
            return
        with self._drain_lock:
            stats = self._stats
            known = stats.delivered.value + stats.dropped["delivery_failed"].value
            if enqueued > known:
                self._settle("delivered", enqueued - known)

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
            self._worker.join(max(0.0, deadline - time.monotonic()))
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

    # -- introspection -------------------------------------------------------------------------------

    @property
    def analytics(self) -> Any:
        """The Segment client this provider sends through."""
        return self._analytics

    def stats(self) -> dict[str, Any]:
        """Counters: tracked, deduplicated, enqueued, delivered, and dropped by reason."""
        self._check_process(revive=False)
        pending = self._queue.qsize()
        return self._stats.snapshot(
            pending=pending, dedupe_entries=len(self._dedupe), dedupe_evictions=self._dedupe.evictions
        )

    def __repr__(self) -> str:
        host = getattr(self._analytics, "host", None)
        return f"<SegmentExposureTrackingProvider host={host!r} owns_client={self._owns_client}>"
