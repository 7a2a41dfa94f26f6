"""One :meth:`AmplitudeClient.send <segment_exposure.delivery.amplitude.AmplitudeClient.send>`: packing
events into requests, keeping several in flight, and acting on each answer until every event has an outcome.

The send's state, and how events are encoded and packed, is in :mod:`segment_exposure.delivery.send_state`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from segment_exposure.delivery._http import redact_url
from segment_exposure.delivery.answers import rejected_by_400, sort_throttled
from segment_exposure.delivery.outcomes import (
    _DELIVERED,
    _THROTTLED_PAST_DEADLINE,
    EventOutcome,
    Status,
    _Reply,
    _Transient,
)
from segment_exposure.delivery.send_state import SendState, _Held, _Request

__all__ = ["Send"]

logger = logging.getLogger(__name__)


class Send(SendState):
    """Runs one :meth:`AmplitudeClient.send`: starts requests, waits for them, and acts on each answer."""

    # The loop ---------------------------------------------------------------------------------------

    def run(self) -> None:
        client = self.client
        in_flight: dict[Future[_Reply], _Request] = {}
        while self.ready or self.held or self.retries or in_flight or self.more:
            now = time.monotonic()
            if not self.stopped:
                if client._closed.is_set():
                    self._retry_later_everything("closed", "the client was closed; retry later")
                elif now >= self.end:
                    self._retry_later_everything(
                        "deadline", "the deadline passed before this event was sent; retry later"
                    )
            if self.stopped:
                # Nothing new goes out; what is in flight is still counted when it comes back.
                self._retry_later_everything(self.stop_code, self.stop_reason)
                if in_flight:
                    self._collect(in_flight, None)
                continue
            launch = self._launchable(now, len(in_flight))
            alone = not self.ready and not self.more
            if len(launch) == 1 and not in_flight and (alone or client.max_in_flight == 1):
                self._send(launch[0])  # a lone request: on this thread, no hand-over to the pool
                continue
            for request in launch:
                request.attempts += 1
                self.requests += 1
                try:
                    future = client._submit(request.body, self.end)
                except RuntimeError:  # closed meanwhile
                    self._failed(request, _Transient("closed", "the client was closed"))
                    continue
                in_flight[future] = request
            if in_flight and self.more:
                # Encode the next request while these fly, then take in what came back meanwhile.
                self._produce()
                self._collect(in_flight, 0)
                continue
            wake = min([r.not_before for r in self.retries] + [h.not_before for h in self.held], default=None)
            if in_flight:
                # Until the first one comes back, or a retry or hold falls due (if any can start then).
                timeout = None if wake is None or wake <= now else min(wake, self.end) - now
                self._collect(in_flight, timeout)
            elif not launch and wake is not None:
                # Nothing may go now: sleep until the first retry or hold is due.
                if wake >= self.end:
                    # Only holds can end there: a retry is scheduled only if it starts before the deadline.
                    self._release_held_as_retry_later()
                else:
                    client._sleep(wake - now)

    def _launchable(self, now: float, flying: int) -> list[_Request]:
        """The requests to start now: at most ``max_in_flight`` fly (one while Amplitude looks down)."""
        limit = self.client.max_in_flight
        launch: list[_Request] = []
        while flying + len(launch) < limit:
            if (not self.fan_out or self.failures >= 2) and (flying or launch):
                # Until Amplitude has answered in this send, or while it looks down, one request probes it
                # for all: a wrong key or a smaller size limit is learnt from one request, not eight.
                break
            request = self._next(now)
            if request is None:
                break
            launch.append(request)
        return launch

    def _collect(self, in_flight: dict[Future[_Reply], _Request], timeout: float | None) -> None:
        """Wait (up to ``timeout``) for requests in flight and act on those that came back."""
        done, _ = wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            request = in_flight.pop(future)
            try:
                reply = future.result()
            except _Transient as exc:
                self._failed(request, exc)
                continue
            except Exception as exc:  # e.g. the pool shut down by close(): never lose the events
                self._failed(request, _Transient("closed", f"not sent ({type(exc).__name__})"))
                continue
            self.answered = True
            self.failures = 0
            self._answer(request.chunk, reply)

    def _next(self, now: float) -> _Request | None:
        """The request to make now: a retry that is due, else the next ready chunk, else None.

        While a retry is pending after one failure before Amplitude has answered in this send, or two
        failures in a row after it has, new chunks wait: Amplitude looks down, and the retry probes it.
        """
        if self.held and any(h.not_before <= now for h in self.held):
            due = [h for h in self.held if h.not_before <= now]
            self.held = [h for h in self.held if h.not_before > now]
            for h in due:
                self.ready.extend(self._pack(h.indices))
        if self.retries:
            request = min(self.retries, key=lambda r: r.not_before)
            if request.not_before <= now:
                self.retries.remove(request)
                return request
            if self.failures >= (2 if self.answered else 1):
                return None
        if not self.ready and not self._produce():
            return None
        chunk = self.ready.popleft()
        if self.lowered_limits and (len(chunk) > self.max_events or self._size(chunk) > self.max_bytes):
            # Packed before a 413 taught us a smaller limit: repack to the limit we know now.
            self.ready.extendleft(reversed(self._pack(chunk)))
            chunk = self.ready.popleft()
        return _Request(chunk, self.client._body([self.encoded[i] for i in chunk]))

    def _send(self, request: _Request) -> None:
        """Make one request on this thread and act on the answer."""
        request.attempts += 1
        self.requests += 1
        try:
            reply = self.client._post(request.body, self.end)
        except _Transient as exc:
            self._failed(request, exc)
            return
        self.answered = True
        self.failures = 0
        self._answer(request.chunk, reply)

    def _failed(self, request: _Request, exc: _Transient) -> None:
        """Schedule a retry after a backoff (at least ``Retry-After``), unless the attempts or the deadline
        ran out or we were closed.

        Giving up on one request ends the send: Amplitude has been failing all that time.
        """
        self.failures += 1
        client = self.client
        wait_for = max(client._backoff(request.attempts), exc.retry_after or 0.0)
        not_before = time.monotonic() + wait_for
        if (
            self.stopped
            or request.attempts >= client.max_attempts
            or client._closed.is_set()
            or not_before >= self.end
        ):
            reason = f"{exc.reason}; retry later with the same insert_id"
            self._set(request.chunk, EventOutcome(Status.RETRY_LATER, exc.code, reason))
            self._retry_later_everything(exc.code, f"not sent: {exc.reason}; retry later")
            return
        logger.info(
            "Amplitude request of %d events failed (attempt %d): %s; retrying in %.2f s",
            len(request.chunk),
            request.attempts,
            exc,
            wait_for,
        )
        request.not_before = not_before
        request.failure = exc
        self.retries.append(request)

    def _answer(self, chunk: list[int], reply: _Reply) -> None:
        status = reply.status
        # After a 413, one request at a time again until the smaller size is known to pass.
        self.fan_out = status != 413
        if 200 <= status < 300:
            self._set(chunk, _DELIVERED)
        elif status == 413:
            self._split(chunk)
        elif status == 429:
            self._throttled(chunk, reply)
        elif status == 400 and self._index_maps(chunk, reply.body):
            rest = [i for i in chunk if self.outcomes[i] is None]
            if rest:
                self.ready.appendleft(rest)  # at once: loop, since a map may name only the first bad event
        else:
            self._configuration_error(chunk, reply)

    def _split(self, chunk: list[int]) -> None:
        if len(chunk) == 1:
            self._set(
                chunk,
                EventOutcome(
                    Status.REJECTED,
                    "too_large",
                    f"Amplitude answered 413 (payload too large) for this event alone "
                    f"({len(self.encoded[chunk[0]])} bytes of JSON); shrink its properties",
                ),
            )
            return
        half = (len(chunk) + 1) // 2
        # Learn from it: later requests of this send are packed at most half as large.
        self.lowered_limits = True
        self.max_events = max(1, min(self.max_events, half))
        self.max_bytes = min(self.max_bytes, max(self._size(chunk[:half]), self._size(chunk[half:])))
        self.ready.appendleft(chunk[half:])
        self.ready.appendleft(chunk[:half])
        logger.info("Amplitude answered 413 for %d events; splitting into halves", len(chunk))

    def _throttled(self, chunk: list[int], reply: _Reply) -> None:
        body = reply.body
        now_ok, hold, quota = sort_throttled(chunk, self.events, body)
        if quota:
            self._set(
                quota,
                EventOutcome(
                    Status.RETRY_LATER,
                    "daily_quota",
                    "Amplitude's daily event quota for this user or device is used up (HTTP 429); "
                    "retry later with the same insert_id",
                ),
            )
        wait = max(self.client.throttle_wait, reply.retry_after or 0.0)
        not_before = time.monotonic() + wait
        keep: list[int] = []
        for i in hold:
            self.holds[i] += 1
            if self.holds[i] > self.client.max_throttle_holds:
                self._set(
                    [i],
                    EventOutcome(
                        Status.RETRY_LATER,
                        "throttled",
                        f"Amplitude throttled this event {self.holds[i]} times (HTTP 429); retry later",
                    ),
                )
            else:
                keep.append(i)
        if keep:
            if not_before >= self.end:
                self._set(keep, _THROTTLED_PAST_DEADLINE)
            else:
                self.held.append(_Held(not_before, keep))
        if now_ok:
            self.ready.appendleft(now_ok)
        logger.info(
            "Amplitude throttled %d of %d events (429); holding them %.1f s, %d over daily quota",
            len(hold),
            len(chunk),
            wait,
            len(quota),
        )

    def _index_maps(self, chunk: list[int], body: dict[str, Any]) -> int:
        """Reject the events a 400 names; returns how many of this chunk's events were named."""
        error = self.client._redact(str(body.get("error", "")))[:200]
        named = rejected_by_400(chunk, self.events, body, error)
        for pos, outcome in named.items():
            self._set([chunk[pos]], outcome)
        return len(named)

    def _configuration_error(self, chunk: list[int], reply: _Reply) -> None:
        client = self.client
        body = reply.body
        detail = client._redact(str(body.get("error", "")))[:200]
        missing = body.get("missing_field")
        if missing:
            detail += f" (missing field {client._redact(str(missing))[:50]})"
        pending = (
            len(chunk)
            + sum(len(c) for c in self.ready)
            + sum(len(h.indices) for h in self.held)
            + sum(len(r.chunk) for r in self.retries)
            + len(self.events)
            - self.cursor
        )
        logger.error(
            "Amplitude refused the request (HTTP %d: %s): check the API key, the region and the endpoint "
            "(%s); %d events kept as retry later, none dropped",
            reply.status,
            detail,
            redact_url(client.endpoint),
            pending,
        )
        reason = (
            f"configuration error: Amplitude answered HTTP {reply.status} ({detail}); check the API key, "
            "region and endpoint, then retry"
        )
        self._set(chunk, EventOutcome(Status.RETRY_LATER, "configuration", reason))
        self._retry_later_everything("configuration", reason)
