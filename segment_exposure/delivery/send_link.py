"""Everything one send needs from the client that runs it, handed over as one explicit value.

`AmplitudeClient <segment_exposure.delivery.amplitude.AmplitudeClient>` builds a `SendLink` for each
``send()`` and gives it to `Send <segment_exposure.delivery.send_scheduler.Send>`: the send loop then
depends on these types, never on the client, so the modules that run a send never import the client.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from segment_exposure.delivery.encoding import BodyEncoder, RequestLimits
from segment_exposure.delivery.transport import Redactor, Transport

__all__ = ["Backoff", "SendLink", "SendSettings"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retries wait ``initial * 2**n`` seconds (capped at ``cap``) plus a random jitter up to ``jitter``.

    Plain arithmetic, not tenacity: its retry loop would sleep on the sending thread and stall every other
    request of the send, whose scheduler owns the retrying; only the delay formula would be left to use.
    """

    initial: float
    cap: float
    jitter: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...)."""
        delay = min(self.cap, self.initial * 2.0 ** min(attempt - 1, 64))
        return max(0.0, delay) + random.uniform(0.0, self.jitter)


@dataclass(frozen=True, slots=True)
class SendSettings:
    """The client's settings a send reads, taken when the send starts.

    ``endpoint`` is left out of the ``repr``: it may hold credentials (a send logs it redacted).
    """

    limits: RequestLimits
    api: str
    endpoint: str = field(repr=False)
    max_in_flight: int
    max_attempts: int
    throttle_wait: float
    max_throttle_holds: int


@dataclass(frozen=True, slots=True)
class SendLink:
    """What a send may use: post bodies (``transport``: on this thread or the pool; closed; sleep), make
    bodies (``encoder``), pace retries (``backoff``), hide the key (``redactor``), read ``settings``,
    and tell the time (``clock``, ``time.monotonic`` values, as ``end`` is)."""

    transport: Transport
    encoder: BodyEncoder
    backoff: Backoff
    redactor: Redactor
    settings: SendSettings
    clock: Callable[[], float] = field(default=time.monotonic)
