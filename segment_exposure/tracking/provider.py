"""``SegmentExposureTrackingProvider``: Experiment exposures into Segment, from inside web requests.

Only the cheap part runs on the caller's thread: identity, validation, the dedupe decision and a put on
an in-memory queue. Building the Segment message (context, message id, timestamp), Segment's own
cleaning and JSON size check, and the HTTP upload all happen on background threads, so ``track()``
costs a fraction of a direct ``Client.track()`` and never waits on the network.

The provider is a facade over parts, each owning its state: the dedupe cache (``DedupeCache``), the
counters (``ProviderStats``) and the ``OutcomeLedger`` that counts each exposure's final outcome once,
the worker thread (``ExposureWorker``), the ``SegmentHandoff`` that puts messages on Segment's client
(built by ``SegmentMessageBuilder``), the ``ExposureListeners``, and the ``ProcessBinding`` that ties the
provider to its process (fork, exit, SIGTERM).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from time import time as _time
from typing import Any

from segment_exposure.exposure import Exposure
from segment_exposure.identity.ids import as_id
from segment_exposure.identity.user import bound_user_var, request_context_var
from segment_exposure.tracking import deployment, segment_check, segment_client
from segment_exposure.tracking.dedupe import UNSET, DedupeCache, dedupe_key
from segment_exposure.tracking.leftovers import Leftovers
from segment_exposure.tracking.listeners import ExposureListeners, Listener
from segment_exposure.tracking.message_id import hash_key
from segment_exposure.tracking.outcome_ledger import OutcomeLedger
from segment_exposure.tracking.process_binding import (
    ProcessBinding,
    hide_secret,
    install_process_hooks,
    live_owners,
    process_lock,
)
from segment_exposure.tracking.sdk_choice import choose_sdk
from segment_exposure.tracking.segment_handoff import SegmentHandoff
from segment_exposure.tracking.segment_message import PendingExposure, SegmentMessageBuilder
from segment_exposure.tracking.stats import ProviderStats
from segment_exposure.tracking.weak_callback import weakly
from segment_exposure.tracking.worker import ExposureWorker

__all__ = ["GIL_ENABLED", "SegmentExposureTrackingProvider", "live_providers"]

log = logging.getLogger(__name__)

#: Segment rejects a message over 32 KB of JSON. Exposures whose own strings stay under this many
#: characters cannot reach it, so only larger ones pay for an exact check on the caller's thread.
_CHEAP_SIZE_BOUND = 4_000

#: Whether the GIL is on. A free-threaded Python (3.13t, GIL off) runs C calls such as
#: ``OrderedDict.move_to_end`` concurrently, so track()'s fast path then only marks a repeat's key
#: (``DedupeCache.touch``). Read on every repeat; tests set it to exercise either path.
GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()

_getpid = os.getpid


def live_providers() -> list[SegmentExposureTrackingProvider]:
    """Every provider alive in this process (``testing.capture_exposures`` attaches to them)."""
    return [p for p in live_owners() if isinstance(p, SegmentExposureTrackingProvider)]


class SegmentExposureTrackingProvider:
    """Sends Amplitude Experiment exposures as Segment ``$exposure`` track events.

    Give it a ``write_key`` (it then owns a Segment client) or an existing ``analytics`` client.
    ``track()`` never raises and never blocks; every exposure it does not send is counted in
    ``stats()["dropped"]`` under its reason.

    ``sdk="rudderstack"`` sends through RudderStack's ``rudder-sdk-python`` instead (``host=`` is then your
    data plane URL); a ``rudderstack.analytics.Client`` passed as ``analytics=`` is recognised on its own.
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
        sdk: str | None = None,
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
        # Segment's client or RudderStack's fork: what differs between them (sdk_choice).
        self._sdk = chosen = choose_sdk(sdk, analytics)
        # What of the client's inside may be used; the public API where not (segment_check).
        self._internals = internals = segment_check.check_internals(chosen)
        self._stats = stats = ProviderStats()
        self._ledger = ledger = OutcomeLedger(stats)
        if analytics is None:
            options = {"max_queue_size": max_queue_size, **(client_options or {})}
            if not internals.consumer_hooks:
                options["on_error"] = segment_check.fallback_on_error(
                    ledger.on_failed, options.get("on_error")
                )
            self._client_args: tuple[str, str | None, dict[str, Any]] = (write_key or "", host, options)
            analytics = chosen.make_client(write_key or "", host, **options)
        if not internals.consumer_hooks and not self._owns_client:
            deployment.warn_once(
                "segment-exposure: without segment-analytics-python internals (see the warning above), "
                "failures of the Segment client you passed reach only its own on_error: the provider "
                "counts what a flush drains as delivered; pass write_key= so failures are counted too"
            )
        # An in-memory, sync_mode or send=False client: track() returning is the delivery.
        synchronous = (
            not segment_client.is_task_queue(getattr(analytics, "queue", None))
            or bool(getattr(analytics, "sync_mode", False))
            or getattr(analytics, "send", True) is False
        )
        # Without consumer hooks, a flush that saw Segment's queue drained counts what it delivered.
        self._counts_on_drain = not internals.consumer_hooks and not synchronous
        install_process_hooks(chosen.logger_names)
        secret = getattr(analytics, "write_key", None)
        secret = secret if isinstance(secret, str) else None
        hide_secret(secret)
        self._dedupe = dedupe = DedupeCache(dedupe_capacity, dedupe_ttl)
        # The hot path's reads, cached: the cache's mapping itself, not a method that looks it up.
        self._dedupe_entries = dedupe.entries
        self._dedupe_touch = dedupe.touch
        self._dedupe_ttl = dedupe.ttl
        self._decide = dedupe.decide
        self._count_deduplicated = stats.deduplicated.incr_one
        self._count_tracked = stats.tracked.incr_one
        self._max_queue_size = max_queue_size
        self.flush_timeout = flush_timeout
        self._messages = SegmentMessageBuilder(
            hash_key(secret),
            include_metadata=include_metadata,
            integrations=integrations,
            max_message_bytes=chosen.max_message_bytes,
        )
        self._handoff = SegmentHandoff(
            analytics,
            self._messages,
            ledger,
            stats,
            # A real asynchronous Segment client: messages go straight onto its queue (see wire_message).
            direct=chosen.accepts_direct_enqueue(analytics) and internals.direct_enqueue,
            synchronous=synchronous,
            queue_conditions=internals.queue_conditions,
            unflushed_platform=deployment.detect_platform(),
            sdk=chosen,
        )
        self._forked = self._closed = self._unusual = False
        self._start_runtime()
        self._leftovers = Leftovers(self._worker, analytics if self._owns_client else None)
        # The server gives Python no threads (uWSGI without --enable-threads): nothing could ever be sent.
        self._threadless = False
        problem = deployment.threads_unavailable()
        if problem is not None:
            self._threadless = True
            deployment.warn_once(problem)
        if (problem := deployment.stop_skips_exit_hooks(flush_on_sigterm)) is not None:
            deployment.warn_once(problem)
        self._listeners = ExposureListeners(lock=process_lock)
        self._process = ProcessBinding(
            self, on_collected=self._leftovers.release, flush_on_sigterm=flush_on_sigterm
        )

    def _start_runtime(self) -> None:
        """The worker thread and Segment's hooks: the parts a forked child must rebuild."""
        self._ledger.reset()
        self._handoff.reset()
        if self._internals.consumer_hooks:
            # Weakly: Segment's consumer thread holds these, and must not keep a dropped provider alive.
            segment_client.instrument(
                self._handoff.client,
                weakly(self._ledger.on_delivered),
                weakly(self._ledger.on_failed),
                max_batch_bytes=self._sdk.consumer_batch_limit,
            )
        self._worker = ExposureWorker(self._handoff.hand_over)
        self._put = self._worker.put
        self._queued = self._worker.qsize

    # -- the hot path --------------------------------------------------------------------------------

    def track(self, exposure: Exposure, user: object = None) -> bool:
        """Send ``exposure`` for ``user``, or for the user bound to this request when ``user`` is None.

        Returns True when the exposure was accepted or was a repeat (deduplicated), False when it was
        set aside; the reason is counted in ``stats()``. Never raises.
        """
        try:
            if self._unusual:
                if self._forked:
                    self.revive()
                if self._closed:
                    self._stats.dropped["shutdown"].incr()
                    return False
            if user is None:
                user = bound_user_var.get()
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
                # dedupe_key() and DedupeCache.decide()'s repeat test, inlined: each call would cost a
                # tenth of this whole path.
                variant = exposure.variant
                key = hash((user_id, device_id, exposure.flag_key, exposure.experiment_key))
            except (AttributeError, TypeError):
                return self._drop("invalid", exposure)
            entry = self._dedupe_entries.get(key)
            if (
                entry is not None
                and entry[0] == (UNSET if variant is None else variant)
                and entry[1] == int(now // self._dedupe_ttl)
            ):
                if GIL_ENABLED:
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
        if self._process.pid != _getpid():
            self._process.check(revive=True)
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
        if size > _CHEAP_SIZE_BOUND and self._messages.too_large(exposure, user, user_id, device_id):
            return self._drop("too_large", exposure)
        if self._threadless:
            return self._drop(deployment.THREADS_DISABLED, exposure)
        if user_id is not raw_user_id or device_id is not raw_device_id:
            key = dedupe_key(user_id, device_id, flag_key, experiment_key)  # normalised: hash again
        decision = self._decide(key, variant, now)
        if not decision.send:
            self._stats.deduplicated.incr()
            return True
        if self._queued() >= self._max_queue_size:
            self._dedupe.undo(key, decision)
            return self._drop("queue_full", exposure)
        # The request's context (userAgent, ip, locale) belongs to the request's own user only.
        request_context = request_context_var.get() if user is bound_user_var.get() else None
        pending = PendingExposure(exposure, user, user_id, device_id, now, decision, request_context)
        self._put(pending)
        self._count_tracked()
        if self._listeners.current:
            self._listeners.notify(self._messages.build(pending))
        return True

    def _drop(self, reason: str, exposure: object) -> bool:
        self._stats.dropped[reason].incr()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("segment-exposure: exposure set aside (%s): %r", reason, exposure)
        return False

    # -- listeners -----------------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[dict[str, Any]], object]) -> None:
        """Call ``listener`` with each exposure this provider accepts (after dedupe), on the caller's thread.

        It gets the keyword arguments handed to Segment's ``Client.track()`` (``event``, ``user_id``,
        ``anonymous_id``, ``properties``, ``context``, ``timestamp``, ``message_id``). Meant for tests and
        auditing: building that message costs the caller's thread what the worker would otherwise do.
        A listener that raises is logged and does not affect tracking.
        """
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[dict[str, Any]], object]) -> None:
        """Stop calling ``listener``; removing one that was never added does nothing."""
        self._listeners.remove(listener)

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """The listeners called now (see ``add_listener``; a new provider starts with the defaults of
        ``tracking.listeners.add_default_listener``)."""
        return self._listeners.current

    # -- state ---------------------------------------------------------------------------------------

    def _set_state(self, *, forked: bool | None = None, closed: bool | None = None) -> None:
        if forked is not None:
            self._forked = forked
        if closed is not None:
            self._closed = closed
            if closed:
                self._handoff.close()
        self._unusual = self._forked or self._closed  # one attribute for track() to check, not two

    @property
    def closed(self) -> bool:
        """True once ``shutdown()`` ran: ``track()`` then sets exposures aside (``shutdown``)."""
        return self._closed

    @property
    def forked(self) -> bool:
        """True in a forked child until the provider has revived there (its first new exposure or flush)."""
        return self._forked

    @property
    def max_queue_size(self) -> int:
        """How many accepted exposures the provider's own queue holds at most (more count ``queue_full``)."""
        return self._max_queue_size

    @property
    def include_metadata(self) -> bool:
        """Whether an exposure's metadata is sent (as ``properties.metadata``)."""
        return self._messages.include_metadata

    @include_metadata.setter
    def include_metadata(self, value: bool) -> None:
        self._messages.include_metadata = value

    # -- the process (called by ProcessBinding) ------------------------------------------------------

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's counts and locks (called by the provider's
        ``ProcessBinding``; runs right after fork(), when only this thread exists).

        Locks that another thread held at fork time would never be released here, so every lock is
        replaced.
        """
        self._dedupe.reset_lock()
        self._stats.reset()
        self._set_state(forked=True)

    def revive(self) -> None:
        """In a forked child: rebuild the worker thread (and Segment's consumers) so exposures are sent.

        Called on the first new exposure after a fork; does nothing in the parent, in a thread-less
        server, or once shut down.
        """
        with process_lock():
            if not self._forked or self._threadless:
                return  # thread-less: stay forked, so flush() and shutdown() wait for nothing
            if self._closed:
                self._set_state(forked=False)
                return
            self._revive_runtime()
            self._set_state(forked=False)

    def _revive_runtime(self) -> None:
        client = self._handoff.client
        if hasattr(client, "consumers") and segment_client.is_task_queue(getattr(client, "queue", None)):
            if self._internals.revive_in_place:
                segment_client.revive_after_fork(client, segment_client.consumer_class(self._sdk))
            elif self._owns_client:
                # The public way: a new client (the parent's, whose threads do not exist here, is dropped).
                key, host, options = self._client_args
                make = self._sdk.make_client
                self._handoff.use_client(
                    segment_check.new_client_after_fork(client, lambda: make(key, host, **options))
                )
            else:
                deployment.warn_once(
                    "segment-exposure: after fork, the Segment client you passed cannot be given new "
                    "consumer threads without segment-analytics-python internals (see the warning above): "
                    "exposures from this process stay queued; pass write_key= so the provider owns its client"
                )
        self._start_runtime()
        self._leftovers.worker = self._worker
        self._process.adopt()  # last: a process-id match means this runtime is ready
        self._process.hook_pool_process_exit()

    # -- per-invocation delivery (tracking.serverless) -----------------------------------------------

    def deliver_per_invocation(self) -> None:
        """From now on ``flush()`` posts what was tracked at once, as one request, on the flushing thread.

        Called by ``serverless.flush_after`` and the integrations' per-request flush. With a client that
        does not queue for Segment's consumer (in-memory, ``sync_mode``), ``flush()`` is already immediate.
        """
        self._handoff.deliver_per_invocation()

    @property
    def delivers_per_invocation(self) -> bool:
        """Whether ``flush()`` posts what was tracked itself (``deliver_per_invocation`` took effect)."""
        return self._handoff.per_invocation

    def silence_platform_warning(self) -> None:
        """Do not warn that a serverless platform was detected with nothing flushing per invocation
        (an integration's ``FLUSH_EACH_REQUEST`` turned off on purpose, e.g. Cloud Run with CPU always on)."""
        self._handoff.silence_platform_warning()

    def outstanding(self) -> int:
        """Tracked exposures whose final outcome (delivered or a drop reason) is not known yet."""
        return self._ledger.outstanding()

    # -- flushing ------------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver everything queued, waiting at most ``timeout`` seconds.

        Returns True when everything queued was delivered; False when the deadline passed first or
        Segment gave up on some of it (counted as ``delivery_failed``). Never raises.
        """
        try:
            deadline = time.monotonic() + max(0.0, timeout)
            self._process.check(revive=False)
            failures_before = self._stats.dropped["delivery_failed"].value
            if self._forked:
                return True  # nothing of this process's own is queued yet
            handoff = self._handoff
            per_invocation = handoff.per_invocation
            # Per invocation, the worker (CPU only, no network) gets a moment even past a spent deadline:
            # what it has not handed over cannot be posted, nor counted as missing the deadline.
            drained = self._worker.wait_processed(
                self._stats.tracked.value,
                max(deadline, time.monotonic() + 0.1) if per_invocation else deadline,
            )
            if per_invocation:
                drained = handoff.post_invocation(deadline) and drained
                if not segment_client.unfinished(handoff.client):
                    return drained  # nothing on Segment's queue (your own events would be): no wait on it
            queued = self._ledger.on_client_queue
            wait = (
                segment_client.wait_drained
                if self._internals.queue_conditions
                else segment_check.wait_flushed
            )
            drained = drained and wait(handoff.client, deadline)
            if drained and self._counts_on_drain:
                self._ledger.settle_drained(queued)
            return drained and self._stats.dropped["delivery_failed"].value == failures_before
        except Exception:
            log.exception("segment-exposure: flush failed")
            return False

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush within ``timeout``, then stop the worker (and the Segment client, if owned).

        What is still queued at the deadline is counted as dropped with reason ``shutdown``.
        """
        self._process.check(revive=False)
        if self._closed:
            return True
        client = self._handoff.client
        if self._forked:
            # A forked child that never tracked: what is queued belongs to the parent, which sends it,
            # and the parent's threads do not exist here (Segment's own exit hook would wait for them).
            self._set_state(closed=True)
            segment_client.forget_parent_threads(client)
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        delivered = self.flush(timeout)
        self._set_state(closed=True)
        self._leftovers.closed = True
        try:
            self._process.unregister_exit_hook()
            self._worker.stop()
            self._worker.wait_stopped(deadline - time.monotonic())
            if self._owns_client:
                segment_client.stop_consumers(client, deadline)
            # Everything tracked whose outcome is not known yet (queued here, in the worker's hands, or
            # held by Segment's client) is counted as lost to the shutdown, exactly once.
            left = self._ledger.close_books()
            if left > 0:
                log.warning("segment-exposure: %d exposure(s) not delivered by the shutdown deadline", left)
        except Exception:
            log.exception("segment-exposure: shutdown failed")
            return False
        return delivered

    # -- introspection -------------------------------------------------------------------------------

    @property
    def analytics(self) -> Any:
        """The client this provider sends through (Segment's, or RudderStack's: see ``sdk``)."""
        return self._handoff.client

    @property
    def sdk(self) -> str:
        """Whose client the provider sends through: ``"segment"`` or ``"rudderstack"``."""
        return self._sdk.name

    def stats(self) -> dict[str, Any]:
        """Counters: tracked, deduplicated, enqueued, delivered, and dropped by reason."""
        self._process.check(revive=False)
        pending = self._worker.qsize()
        return self._stats.snapshot(
            pending=pending, dedupe_entries=len(self._dedupe), dedupe_evictions=self._dedupe.evictions
        )

    def build_message(self, pending: PendingExposure) -> dict[str, Any]:
        """The keyword arguments for Segment's ``Client.track()`` for one accepted exposure."""
        return self._messages.build(pending)

    # The parts, read-only, for diagnostics and tests: tracking needs none of them.

    @property
    def worker(self) -> ExposureWorker:
        """The worker thread's part: its queue and thread (a forked child gets a new one)."""
        return self._worker

    @property
    def handoff(self) -> SegmentHandoff:
        """The part that puts messages on Segment's client (its route: direct, ``Client.track()``, per
        invocation)."""
        return self._handoff

    @property
    def ledger(self) -> OutcomeLedger:
        """The part that counts each tracked exposure's final outcome once."""
        return self._ledger

    def __repr__(self) -> str:
        host = getattr(self._handoff.client, "host", None)
        return (
            f"<SegmentExposureTrackingProvider sdk={self._sdk.name!r} host={host!r} "
            f"owns_client={self._owns_client}>"
        )
