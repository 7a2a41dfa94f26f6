"""Exposures held for a per-invocation flush, posted at once as one request on the flushing thread.

On a platform that freezes the process as soon as a response is returned (AWS Lambda, Cloud Functions,
Cloud Run with CPU only during requests), an exposure is safe only once its HTTP request has completed
before the handler returns. Segment's consumer thread waits up to ``upload_interval`` (0.5 s) for more
messages before it posts, so flushing through it costs up to half a second per invocation, and its
retries run for hours. Here the flushing thread itself posts everything the invocation produced, in one
request (more only past Segment's batch limits), with retries bounded by the invocation's deadline.
The deadline is hard (``hard_deadline``): a Segment that answers too slowly, even a byte at a time,
has its connection shut down when it passes.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential, wait_random

from segment_exposure._fork import after_fork_in_child
from segment_exposure.tracking import segment_client
from segment_exposure.tracking.hard_deadline import Watch, hard_deadline
from segment_exposure.tracking.segment_client import SEGMENT, AnalyticsSdk

__all__ = ["InvocationBatch"]

log = logging.getLogger(__name__)

#: The least time worth starting another attempt with.
_MIN_ATTEMPT = 0.05
#: Statuses Segment's client retries (as segment-analytics-python does).
_RETRYABLE_4XX = frozenset({408, 410, 429, 460})
_NOT_RETRYABLE_5XX = frozenset({501, 505})

Settle = Callable[[str, int], None]

_live: weakref.WeakSet[InvocationBatch] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # What the parent held is the parent's to send; a lock held at fork() would never be released here.
    for batch in list(_live):
        batch._reset_after_fork()


class _OutOfTime(Exception):
    """The deadline passed before an attempt could start."""


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _retryable(exc: BaseException, sdk: AnalyticsSdk = SEGMENT) -> bool:
    """What Segment's own client would retry: network errors, 408/410/429/460 and 5xx but 501/505,
    and nothing the SDK itself calls final."""
    if isinstance(exc, _OutOfTime) or sdk.is_fatal(exc):
        return False
    status = _status(exc)
    if status is None:
        return True  # a network error or a timeout
    if 400 <= status < 500:
        return status in _RETRYABLE_4XX
    return 500 <= status < 600 and status not in _NOT_RETRYABLE_5XX


def _retry_after(state: RetryCallState, sdk: AnalyticsSdk) -> float:
    """The seconds a 429/503 asked for (``Retry-After``), 0 when it asked for none."""
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None and outcome.failed else None
    return 0.0 if exc is None else sdk.retry_after_seconds(exc)


class InvocationBatch:
    """Wire messages waiting for the next flush, and the bounded post that delivers them.

    ``add()`` is called by the provider's worker thread; ``post()`` by whichever thread flushes. Posts
    are serialised, so concurrent requests' flushes (Cloud Run serves many at once) never send one
    message twice. Every message taken for a post ends counted through ``settle``: ``delivered``,
    ``delivery_failed`` (Segment refused it for good) or ``flush_deadline`` (not delivered in time).
    """

    def __init__(
        self, client: Any, settle: Settle, *, upload_size: int | None = None, sdk: AnalyticsSdk = SEGMENT
    ) -> None:
        self._client = client
        self._sdk = sdk
        self._max_batch_bytes = sdk.max_batch_bytes
        self._max_message_bytes = sdk.max_message_bytes
        self._settle = settle
        self._messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._post_lock = threading.Lock()
        # The client's consumer's setting unless given (the public-API fallback does not read it).
        self._upload_size = upload_size or segment_client.upload_size(client)
        self._wait = wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.02)
        after_fork_in_child(_after_fork_in_child)
        _live.add(self)

    def _reset_after_fork(self) -> None:
        self._messages = []
        self._lock = threading.Lock()
        self._post_lock = threading.Lock()

    def add(self, message: dict[str, Any], *, client: Any = None) -> None:
        """Hold ``message`` for the next post; ``client``: the one to post with from now on, when the
        provider has a new one (a forked child's, in the public-API fallback)."""
        with self._lock:
            if client is not None:
                self._client = client
            self._messages.append(message)

    def post(self, deadline: float) -> bool:
        """Post everything held, finishing by ``deadline`` (``time.monotonic()``); True if all delivered.

        False also when another thread's post held the line past the deadline: what this one would have
        sent then stays held for the next flush. Returns by the deadline whatever Segment does: a request
        still unanswered then is cut, and its messages counted as ``flush_deadline`` (Segment may have
        received them; they are not sent again).
        """
        if not self._messages:
            return True
        if not self._post_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            with self._lock:
                messages, self._messages = self._messages, []
            delivered = True
            with hard_deadline(deadline) as watch:
                for chunk in self._chunks(messages):
                    delivered = self._post_chunk(chunk, deadline, watch) and delivered
            return delivered
        finally:
            self._post_lock.release()

    def _chunks(self, messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Split only where the SDK's limits force it: ``upload_size`` messages or its batch bytes
        (Segment: 475 KB) per request."""
        limit = self._max_batch_bytes
        if len(messages) <= self._upload_size and len(messages) * self._max_message_bytes <= limit:
            return [messages]  # cannot reach the byte limit: every message is under the message limit
        return segment_client.split_batch(messages, limit, self._upload_size)

    def _post_chunk(self, chunk: list[dict[str, Any]], deadline: float, watch: Watch) -> bool:
        client = self._client

        def stop(state: RetryCallState) -> bool:
            # Give up when the next attempt could not start (after its wait) before the deadline.
            return time.monotonic() + self._pause(state) + _MIN_ATTEMPT >= deadline

        def wait(state: RetryCallState) -> float:
            return min(self._pause(state), max(0.0, deadline - time.monotonic() - _MIN_ATTEMPT))

        sdk = self._sdk

        def retryable(exc: BaseException) -> bool:
            return _retryable(exc, sdk)

        retrying = Retrying(stop=stop, wait=wait, retry=retry_if_exception(retryable), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or watch.expired:
                        raise _OutOfTime()
                    sdk.post_batch(
                        client, chunk, timeout=remaining, retry_count=attempt.retry_state.attempt_number - 1
                    )
        except Exception as exc:
            reason = "flush_deadline" if retryable(exc) or isinstance(exc, _OutOfTime) else "delivery_failed"
            self._settle(reason, len(chunk))
            log.error(
                "segment-exposure: %d exposure(s) not delivered by the flush (%s): %s",
                len(chunk),
                reason,
                "no time left"
                if isinstance(exc, _OutOfTime)
                else f"cut at the deadline ({exc})"
                if watch.expired
                else exc,
            )
            return False
        self._settle("delivered", len(chunk))
        return True

    def _pause(self, state: RetryCallState) -> float:
        return max(float(self._wait(state)), _retry_after(state, self._sdk))
