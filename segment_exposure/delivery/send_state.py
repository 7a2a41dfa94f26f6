"""The state of one `AmplitudeClient.send <segment_exposure.delivery.amplitude.AmplitudeClient.send>`:
what each event came to so far, where the others wait, and the events encoded and packed into requests as
they are needed.

`Send <segment_exposure.delivery.send_scheduler.Send>` owns one and runs the send with it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segment_exposure.delivery.encoding import RequestLimits, compact_dumps, encode_event
from segment_exposure.delivery.outcomes import (
    CLOSED_BEFORE_RETRY,
    THROTTLED_PAST_DEADLINE,
    EventOutcome,
    Status,
    TransientFailure,
)

__all__ = ["Held", "Request", "SendState"]


@dataclass(slots=True)
class Held:
    """Throttled events waiting for ``not_before`` (a ``time.monotonic()`` value)."""

    not_before: float
    indices: list[int] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Request:
    """One request's events and body; after a transient failure, when it may be retried and why it failed.

    The body is kept for every retry, so a retry carries the same ``insert_id`` values.
    """

    chunk: list[int]
    body: bytes
    attempts: int = 0
    not_before: float = 0.0
    failure: TransientFailure | None = None


class SendState:
    """The events of one send and where each stands.

    Events wait in ``ready`` (chunks to send now, in order), ``held`` (throttled events, until their time) or
    ``retries`` (requests that failed transiently, until their time), until they have an outcome.

    Args:
        events: The events of the send, in order.
        limits: What one request may hold (a 413 may lower ``max_events`` and ``max_bytes`` below it).
        overhead: Bytes of a request body besides its events and their commas.
        api: "http" or "batch": the API the events go to.
    """

    def __init__(
        self, events: Sequence[Mapping[str, Any]], *, limits: RequestLimits, overhead: int, api: str
    ) -> None:
        self.events = events
        self.limits = limits
        self.api = api
        self.outcomes: list[EventOutcome | None] = [None] * len(events)
        self.encoded: list[bytes] = [b""] * len(events)
        self.holds = [0] * len(events)
        self.held: list[Held] = []
        self.max_events = limits.max_events
        self.max_bytes = limits.max_bytes
        self.lowered_limits = False  # a 413 lowered them: chunks packed before may now be too large
        self.overhead = overhead
        self.ready: deque[list[int]] = deque()
        self.retries: list[Request] = []
        self.stopped = False  # the send gave up: nothing more is sent
        self.stop_code = ""
        self.stop_reason = ""
        # Events are encoded and packed a request at a time, as requests are needed, so the first request
        # leaves at once and the rest are encoded while it is in flight.
        self.cursor = 0  # the next event to encode
        self.carry: int | None = None  # encoded, did not fit the last chunk: starts the next one
        self.dumps = compact_dumps()

    # Outcomes ---------------------------------------------------------------------------------------

    def set(self, indices: Sequence[int], outcome: EventOutcome) -> None:
        """Give ``outcome`` to those of ``indices`` that have none yet (an event's first outcome stands)."""
        for i in indices:
            if self.outcomes[i] is None:
                self.outcomes[i] = outcome

    def retry_later_everything(self, code: str, reason: str) -> None:
        """Stop sending: mark everything not finished as retry later.

        Held events keep their own reason, and requests waiting for a retry the failure they had (or
        ``closed``, as if the retry had been tried). Requests in flight are counted when they come back.
        """
        if not self.stopped:
            self.stopped = True
            self.stop_code, self.stop_reason = code, reason
        while self.produce():  # events not encoded yet: rejected if they cannot be sent, else these
            pass
        while self.ready:
            self.set(self.ready.popleft(), EventOutcome(Status.RETRY_LATER, code, reason))
        for request in self.retries:
            if code == "closed":
                outcome = EventOutcome(Status.RETRY_LATER, code, CLOSED_BEFORE_RETRY)
            else:
                failure = request.failure or TransientFailure(code, reason)
                outcome = EventOutcome(
                    Status.RETRY_LATER, failure.code, f"{failure.reason}; retry later with the same insert_id"
                )
            self.set(request.chunk, outcome)
        self.retries.clear()
        self.release_held_as_retry_later()

    def release_held_as_retry_later(self) -> None:
        """Give up on the throttled events: their hold outlasts the deadline."""
        for held in self.held:
            self.set(held.indices, THROTTLED_PAST_DEADLINE)
        self.held.clear()

    def pending(self) -> int:
        """Events with no outcome yet that are not in flight: ready, held, awaiting a retry, not encoded."""
        return (
            sum(len(c) for c in self.ready)
            + sum(len(h.indices) for h in self.held)
            + sum(len(r.chunk) for r in self.retries)
            + len(self.events)
            - self.cursor
        )

    def finish(self) -> list[EventOutcome]:
        """One outcome per event, in order; one left without (which cannot happen) as retry later."""
        lost = EventOutcome(Status.RETRY_LATER, "internal", "not sent (internal error); retry later")
        return [o if o is not None else lost for o in self.outcomes]

    # Packing ----------------------------------------------------------------------------------------

    def pack(self, indices: Sequence[int]) -> list[list[int]]:
        """``indices`` (encoded already) in chunks that fit ``max_events`` and ``max_bytes``, in order."""
        chunks: list[list[int]] = []
        current: list[int] = []
        empty = self.overhead - 1  # every event adds its bytes and a comma, but n events have n - 1 commas
        size = empty
        max_events, max_bytes = self.max_events, self.max_bytes
        encoded = self.encoded
        for i in indices:
            add = len(encoded[i]) + 1
            if current and (len(current) >= max_events or size + add > max_bytes):
                chunks.append(current)
                current = []
                size = empty
            current.append(i)
            size += add
        if current:
            chunks.append(current)
        return chunks

    @property
    def more(self) -> bool:
        """Whether events remain to be encoded and packed."""
        return self.carry is not None or self.cursor < len(self.events)

    def _encode_one(self, i: int) -> bool:
        """Encode event ``i`` once; an event no request could hold is rejected here (False)."""
        data = encode_event(self.dumps, self.events[i], self.limits.max_bytes, self.overhead, self.api)
        if isinstance(data, EventOutcome):
            self.outcomes[i] = data
            return False
        self.encoded[i] = data
        return True

    def produce(self) -> bool:
        """Encode the next events into one more chunk in ``ready`` (packed as ``pack`` would);
        False when there was nothing left to encode."""
        chunk: list[int] = []
        size = self.overhead - 1
        max_events, max_bytes = self.max_events, self.max_bytes
        if self.carry is not None:
            chunk.append(self.carry)
            size += len(self.encoded[self.carry]) + 1
            self.carry = None
        events = len(self.events)
        while self.cursor < events:
            i = self.cursor
            self.cursor += 1
            if not self._encode_one(i):
                continue
            add = len(self.encoded[i]) + 1
            if chunk and (len(chunk) >= max_events or size + add > max_bytes):
                self.carry = i
                break
            chunk.append(i)
            size += add
        if chunk:
            self.ready.append(chunk)
            return True
        return False

    def size(self, chunk: list[int]) -> int:
        """Bytes of the request body for ``chunk`` before compression."""
        return self.overhead + sum(len(self.encoded[i]) for i in chunk) + len(chunk) - 1
