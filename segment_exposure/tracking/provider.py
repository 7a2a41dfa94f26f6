"""``SegmentExposureTrackingProvider``: Experiment exposures into Segment, from inside web requests.

Only the cheap part runs on the caller's thread: identity, validation, the dedupe decision and a put on
an in-memory queue. Building the Segment message (context, message id, timestamp), Segment's own
cleaning and JSON size check, and the HTTP upload all happen on background threads, so ``track()``
costs a fraction of a direct ``Client.track()`` and never waits on the network.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from time import time as _time
from typing import Any

from segment_exposure.exposure import Exposure
from segment_exposure.identity.ids import as_id
from segment_exposure.identity.user import _bound, _request_context
from segment_exposure.tracking import deployment, segment_check, segment_client
from segment_exposure.tracking.dedupe import _UNSET, Decision, DedupeCache, dedupe_key
from segment_exposure.tracking.lifecycle import (
    ProviderLifecycle,
    _getpid,
    _install_process_hooks,
    _Lifecycle,
    _process_lock,
    _redactor,
)
from segment_exposure.tracking.message_id import hash_key
from segment_exposure.tracking.stats import ProviderStats
from segment_exposure.tracking.worker import _MAX_MESSAGE_BYTES, _Pending

__all__ = ["SegmentExposureTrackingProvider"]

log = logging.getLogger(__name__)

#: Segment rejects a message over 32 KB of JSON. Exposures whose own strings stay under this many
#: characters cannot reach it, so only larger ones pay for an exact check on the caller's thread.
_CHEAP_SIZE_BOUND = 4_000

#: Listeners every new provider starts with (``testing.capture_exposures`` adds one for its block); read
#: once per provider, in ``__init__``, never on the hot path.
_default_listeners: list[Callable[[dict[str, Any]], object]] = []

#: A free-threaded Python (3.13t, GIL off) runs C calls such as ``OrderedDict.move_to_end`` concurrently,
#: so track()'s fast path then only reads the dedupe cache (see DedupeCache.touch).
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()


class SegmentExposureTrackingProvider(ProviderLifecycle):
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
        self._start_lifecycle(flush_on_sigterm)

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
