"""One `AmplitudeClient.send <segment_exposure.delivery.amplitude.AmplitudeClient.send>`: packing events
into requests, keeping several in flight, and acting on each answer until every event has an outcome.

The send's state, and how events are encoded and packed, is in `segment_exposure.delivery.send_state`;
all it uses of the client comes in a `SendLink <segment_exposure.delivery.send_link.SendLink>`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from segment_exposure.delivery._http import redact_url
from segment_exposure.delivery.answers import rejected_by_400, sort_throttled
from segment_exposure.delivery.outcomes import (
    DELIVERED,
    THROTTLED_PAST_DEADLINE,
    EventOutcome,
    Reply,
    Status,
    TransientFailure,
)
from segment_exposure.delivery.send_link import SendLink
from segment_exposure.delivery.send_state import Held, Request, SendState

__all__ = ["Send"]

logger = logging.getLogger(__name__)


class Send:
    """Runs one send: starts requests, waits for them, and acts on each answer.

    Args:
        link: What the send uses of its client: posting, bodies, backoff, redaction, settings, the clock.
        events: The events to deliver, in order.
        end: The deadline, a ``link.clock()`` value (``math.inf``: none).
    """

    def __init__(self, link: SendLink, events: Sequence[Mapping[str, Any]], end: float) -> None:
        self.link = link
        self.end = end
        settings = link.settings
        self.state = SendState(
            events, limits=settings.limits, overhead=link.encoder.overhead, api=settings.api
        )
        self.requests = 0
        self.answered = False  # Amplitude gave a definitive answer (2xx or 4xx) in this send
        self.failures = 0  # transient failures since Amplitude last answered
        self.fan_out = False  # more than one request may fly: Amplitude answered, and not with a 413

    def finish(self) -> list[EventOutcome]:
        """One outcome per event, in order."""
        return self.state.finish()

    # The loop ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Send until every event has an outcome."""
        state = self.state
        transport = self.link.transport
        clock = self.link.clock
        max_in_flight = self.link.settings.max_in_flight
        in_flight: dict[Future[Reply], Request] = {}
        while state.ready or state.held or state.retries or in_flight or state.more:
            now = clock()
            if not state.stopped:
                if transport.closed:
                    state.retry_later_everything("closed", "the client was closed; retry later")
                elif now >= self.end:
                    state.retry_later_everything(
                        "deadline", "the deadline passed before this event was sent; retry later"
                    )
            if state.stopped:
                # Nothing new goes out; what is in flight is still counted when it comes back.
                state.retry_later_everything(state.stop_code, state.stop_reason)
                if in_flight:
                    self._collect(in_flight, None)
                continue
            launch = self._launchable(now, len(in_flight))
            alone = not state.ready and not state.more
            if len(launch) == 1 and not in_flight and (alone or max_in_flight == 1):
                self._send(launch[0])  # a lone request: on this thread, no hand-over to the pool
                continue
            for request in launch:
                request.attempts += 1
                self.requests += 1
                try:
                    future = transport.submit(request.body, self.end)
                except RuntimeError:  # closed meanwhile
                    self._failed(request, TransientFailure("closed", "the client was closed"))
                    continue
                in_flight[future] = request
            if in_flight and state.more:
                # Encode the next request while these fly, then take in what came back meanwhile.
                state.produce()
                self._collect(in_flight, 0)
                continue
            wake = min(
                [r.not_before for r in state.retries] + [h.not_before for h in state.held], default=None
            )
            if in_flight:
                # Until the first one comes back, or a retry or hold falls due (if any can start then).
                timeout = None if wake is None or wake <= now else min(wake, self.end) - now
                self._collect(in_flight, timeout)
            elif not launch and wake is not None:
                # Nothing may go now: sleep until the first retry or hold is due.
                if wake >= self.end:
                    # Only holds can end there: a retry is scheduled only if it starts before the deadline.
                    state.release_held_as_retry_later()
                else:
                    transport.sleep(wake - now)

    def _launchable(self, now: float, flying: int) -> list[Request]:
        """The requests to start now: at most ``max_in_flight`` fly (one while Amplitude looks down)."""
        limit = self.link.settings.max_in_flight
        launch: list[Request] = []
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

    def _collect(self, in_flight: dict[Future[Reply], Request], timeout: float | None) -> None:
        """Wait (up to ``timeout``) for requests in flight and act on those that came back."""
        done, _ = wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            request = in_flight.pop(future)
            try:
                reply = future.result()
            except TransientFailure as exc:
                self._failed(request, exc)
                continue
            except Exception as exc:  # e.g. the pool shut down by close(): never lose the events
                self._failed(request, TransientFailure("closed", f"not sent ({type(exc).__name__})"))
                continue
            self.answered = True
            self.failures = 0
            self._answer(request.chunk, reply)

    def _next(self, now: float) -> Request | None:
        """The request to make now: a retry that is due, else the next ready chunk, else None.

        While a retry is pending after one failure before Amplitude has answered in this send, or two
        failures in a row after it has, new chunks wait: Amplitude looks down, and the retry probes it.
        """
        state = self.state
        if state.held and any(h.not_before <= now for h in state.held):
            due = [h for h in state.held if h.not_before <= now]
            state.held = [h for h in state.held if h.not_before > now]
            for h in due:
                state.ready.extend(state.pack(h.indices))
        if state.retries:
            request = min(state.retries, key=lambda r: r.not_before)
            if request.not_before <= now:
                state.retries.remove(request)
                return request
            if self.failures >= (2 if self.answered else 1):
                return None
        if not state.ready and not state.produce():
            return None
        chunk = state.ready.popleft()
        if state.lowered_limits and (len(chunk) > state.max_events or state.size(chunk) > state.max_bytes):
            # Packed before a 413 taught us a smaller limit: repack to the limit we know now.
            state.ready.extendleft(reversed(state.pack(chunk)))
            chunk = state.ready.popleft()
        encoded = state.encoded
        return Request(chunk, self.link.encoder.encode([encoded[i] for i in chunk]))

    def _send(self, request: Request) -> None:
        """Make one request on this thread and act on the answer."""
        request.attempts += 1
        self.requests += 1
        try:
            reply = self.link.transport.post(request.body, self.end)
        except TransientFailure as exc:
            self._failed(request, exc)
            return
        self.answered = True
        self.failures = 0
        self._answer(request.chunk, reply)

    def _failed(self, request: Request, exc: TransientFailure) -> None:
        """Schedule a retry after a backoff (at least ``Retry-After``), unless the attempts or the deadline
        ran out or we were closed.

        Giving up on one request ends the send: Amplitude has been failing all that time.
        """
        self.failures += 1
        link = self.link
        state = self.state
        wait_for = max(link.backoff.delay(request.attempts), exc.retry_after or 0.0)
        not_before = link.clock() + wait_for
        if (
            state.stopped
            or request.attempts >= link.settings.max_attempts
            or link.transport.closed
            or not_before >= self.end
        ):
            reason = f"{exc.reason}; retry later with the same insert_id"
            state.set(request.chunk, EventOutcome(Status.RETRY_LATER, exc.code, reason))
            state.retry_later_everything(exc.code, f"not sent: {exc.reason}; retry later")
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
        state.retries.append(request)

    def _answer(self, chunk: list[int], reply: Reply) -> None:
        status = reply.status
        # After a 413, one request at a time again until the smaller size is known to pass.
        self.fan_out = status != 413
        if 200 <= status < 300:
            self.state.set(chunk, DELIVERED)
        elif status == 413:
            self._split(chunk)
        elif status == 429:
            self._throttled(chunk, reply)
        elif status == 400 and self._index_maps(chunk, reply.body):
            rest = [i for i in chunk if self.state.outcomes[i] is None]
            if rest:  # at once: loop, since a map may name only the first bad event
                self.state.ready.appendleft(rest)
        else:
            self._configuration_error(chunk, reply)

    def _split(self, chunk: list[int]) -> None:
        state = self.state
        if len(chunk) == 1:
            state.set(
                chunk,
                EventOutcome(
                    Status.REJECTED,
                    "too_large",
                    f"Amplitude answered 413 (payload too large) for this event alone "
                    f"({len(state.encoded[chunk[0]])} bytes of JSON); shrink its properties",
                ),
            )
            return
        half = (len(chunk) + 1) // 2
        # Learn from it: later requests of this send are packed at most half as large.
        state.lowered_limits = True
        state.max_events = max(1, min(state.max_events, half))
        state.max_bytes = min(state.max_bytes, max(state.size(chunk[:half]), state.size(chunk[half:])))
        state.ready.appendleft(chunk[half:])
        state.ready.appendleft(chunk[:half])
        logger.info("Amplitude answered 413 for %d events; splitting into halves", len(chunk))

    def _throttled(self, chunk: list[int], reply: Reply) -> None:
        state = self.state
        settings = self.link.settings
        body = reply.body
        now_ok, hold, quota = sort_throttled(chunk, state.events, body)
        if quota:
            state.set(
                quota,
                EventOutcome(
                    Status.RETRY_LATER,
                    "daily_quota",
                    "Amplitude's daily event quota for this user or device is used up (HTTP 429); "
                    "retry later with the same insert_id",
                ),
            )
        wait = max(settings.throttle_wait, reply.retry_after or 0.0)
        not_before = self.link.clock() + wait
        keep: list[int] = []
        holds = state.holds
        for i in hold:
            holds[i] += 1
            if holds[i] > settings.max_throttle_holds:
                state.set(
                    [i],
                    EventOutcome(
                        Status.RETRY_LATER,
                        "throttled",
                        f"Amplitude throttled this event {holds[i]} times (HTTP 429); retry later",
                    ),
                )
            else:
                keep.append(i)
        if keep:
            if not_before >= self.end:
                state.set(keep, THROTTLED_PAST_DEADLINE)
            else:
                state.held.append(Held(not_before, keep))
        if now_ok:
            state.ready.appendleft(now_ok)
        logger.info(
            "Amplitude throttled %d of %d events (429); holding them %.1f s, %d over daily quota",
            len(hold),
            len(chunk),
            wait,
            len(quota),
        )

    def _index_maps(self, chunk: list[int], body: dict[str, Any]) -> int:
        """Reject the events a 400 names; returns how many of this chunk's events were named."""
        state = self.state
        error = self.link.redactor.redact(str(body.get("error", "")))[:200]
        named = rejected_by_400(chunk, state.events, body, error)
        for pos, outcome in named.items():
            state.set([chunk[pos]], outcome)
        return len(named)

    def _configuration_error(self, chunk: list[int], reply: Reply) -> None:
        redact = self.link.redactor.redact
        body = reply.body
        detail = redact(str(body.get("error", "")))[:200]
        missing = body.get("missing_field")
        if missing:
            detail += f" (missing field {redact(str(missing))[:50]})"
        pending = len(chunk) + self.state.pending()
        logger.error(
            "Amplitude refused the request (HTTP %d: %s): check the API key, the region and the endpoint "
            "(%s); %d events kept as retry later, none dropped",
            reply.status,
            detail,
            redact_url(self.link.settings.endpoint),
            pending,
        )
        reason = (
            f"configuration error: Amplitude answered HTTP {reply.status} ({detail}); check the API key, "
            "region and endpoint, then retry"
        )
        self.state.set(chunk, EventOutcome(Status.RETRY_LATER, "configuration", reason))
        self.state.retry_later_everything("configuration", reason)
