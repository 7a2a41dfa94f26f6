"""The state of one :meth:`AmplitudeClient.send <segment_exposure.delivery.amplitude.AmplitudeClient.send>`:
what each event came to so far, and the events encoded and packed into requests as they are needed.

:class:`~segment_exposure.delivery.send_scheduler.Send` runs the send on top of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segment_exposure.delivery.encoding import compact_dumps, encode_event
from segment_exposure.delivery.outcomes import (
    _CLOSED_BEFORE_RETRY,
    _THROTTLED_PAST_DEADLINE,
    EventOutcome,
    Status,
    _Transient,
)

if TYPE_CHECKING:  # annotations only: the client imports this module
    from segment_exposure.delivery.amplitude import AmplitudeClient

__all__ = ["SendState"]


@dataclass(slots=True)
class _Held:
    """Throttled events waiting for ``not_before`` (a ``time.monotonic()`` value)."""

    not_before: float
    indices: list[int] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Request:
    """One request's events and body; after a transient failure, when it may be retried and why it failed.

    The body is kept for every retry, so a retry carries the same ``insert_id`` values.
    """

    chunk: list[int]
    body: bytes
    attempts: int = 0
    not_before: float = 0.0
    failure: _Transient | None = None


class SendState:
    """The state of one :meth:`AmplitudeClient.send`.

    Events wait in ``ready`` (chunks to send now, in order), ``held`` (throttled events, until their time) or
    ``retries`` (requests that failed transiently, until their time).
    """

    def __init__(self, client: AmplitudeClient, events: Sequence[Mapping[str, Any]], end: float) -> None:
        self.client = client
        self.events = events
        self.end = end
        self.requests = 0
        self.outcomes: list[EventOutcome | None] = [None] * len(events)
        self.encoded: list[bytes] = [b""] * len(events)
        self.holds = [0] * len(events)
        self.held: list[_Held] = []
        self.max_events = client.limits.max_events
        self.max_bytes = client.limits.max_bytes
        self.lowered_limits = False  # a 413 lowered them: chunks packed before may now be too large
        self.overhead = len(client._head) + len(client._tail)
        self.ready: deque[list[int]] = deque()
        self.retries: list[_Request] = []
        self.answered = False  # Amplitude gave a definitive answer (2xx or 4xx) in this send
        self.failures = 0  # transient failures since Amplitude last answered
        self.stopped = False  # the send gave up: nothing more is sent
        self.fan_out = False  # more than one request may fly: Amplitude answered, and not with a 413
        self.stop_code = ""
        self.stop_reason = ""
        # Events are encoded and packed a request at a time, as requests are needed, so the first request
        # leaves at once and the rest are encoded while it is in flight.
        self.cursor = 0  # the next event to encode
        self.carry: int | None = None  # encoded, did not fit the last chunk: starts the next one
        self.dumps = compact_dumps()

    # Outcomes ---------------------------------------------------------------------------------------

    def _set(self, indices: Sequence[int], outcome: EventOutcome) -> None:
        for i in indices:
            if self.outcomes[i] is None:
                self.outcomes[i] = outcome

    def _retry_later_everything(self, code: str, reason: str) -> None:
        """Stop sending: mark everything not finished as retry later.

        Held events keep their own reason, and requests waiting for a retry the failure they had (or
        ``closed``, as if the retry had been tried). Requests in flight are counted when they come back.
        """
        if not self.stopped:
            self.stopped = True
            self.stop_code, self.stop_reason = code, reason
        while self._produce():  # events not encoded yet: rejected if they cannot be sent, else these
            pass
        while self.ready:
            self._set(self.ready.popleft(), EventOutcome(Status.RETRY_LATER, code, reason))
        for request in self.retries:
            if code == "closed":
                outcome = EventOutcome(Status.RETRY_LATER, code, _CLOSED_BEFORE_RETRY)
            else:
                failure = request.failure or _Transient(code, reason)
                outcome = EventOutcome(
                    Status.RETRY_LATER, failure.code, f"{failure.reason}; retry later with the same insert_id"
                )
            self._set(request.chunk, outcome)
        self.retries.clear()
        self._release_held_as_retry_later()

    def _release_held_as_retry_later(self) -> None:
        for held in self.held:
            self._set(held.indices, _THROTTLED_PAST_DEADLINE)
        self.held.clear()

    def finish(self) -> list[EventOutcome]:
        lost = EventOutcome(Status.RETRY_LATER, "internal", "not sent (internal error); retry later")
        return [o if o is not None else lost for o in self.outcomes]

    # Packing ----------------------------------------------------------------------------------------

    def _pack(self, indices: Sequence[int]) -> list[list[int]]:
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
        data = encode_event(
            self.dumps, self.events[i], self.client.limits.max_bytes, self.overhead, self.client.api
        )
        if isinstance(data, EventOutcome):
            self.outcomes[i] = data
            return False
        self.encoded[i] = data
        return True

    def _produce(self) -> bool:
        """Encode the next events into one more chunk in ``ready`` (packed as :meth:`_pack` would);
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

    def _size(self, chunk: list[int]) -> int:
        """Bytes of the request body for ``chunk`` before compression."""
        return self.overhead + sum(len(self.encoded[i]) for i in chunk) + len(chunk) - 1
