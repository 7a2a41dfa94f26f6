"""The webhook's logic, independent of how requests arrive (WSGI or AWS Lambda).

Why this shape: Segment's retry is the only durable buffer between Segment and Amplitude. So a request is
answered only after Amplitude accepted or permanently rejected every event in it, and the status tells
Segment exactly what to do: 200 (done: delivered or never deliverable), 429 (retry later: throttled), 5xx
(retry: anything else unfinished). Resending a whole batch is safe because ``insert_id`` is the event's
``messageId``, which Amplitude deduplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DEPTH

__all__ = [
    "SIGNATURE_HEADER",
    "BatchDestination",
    "BodyError",
    "WebhookHandler",
    "WebhookResponse",
    "error_response",
    "parse_events",
    "sign",
    "summarize",
]

logger = logging.getLogger(__name__)

#: Segment's webhook signature header: hex HMAC-SHA1 of the raw body with the shared secret.
SIGNATURE_HEADER = "X-Signature"

#: Seconds Segment is asked to wait after a 429 (Amplitude asks for at least 30 s after throttling).
THROTTLE_RETRY_AFTER = "30"


class BatchDestination(Protocol):
    """What the webhook needs: ``on_batch`` with Segment Functions' per-event statuses."""

    def on_batch(self, events: Sequence[Any]) -> list[dict[str, Any]]: ...


class BodyError(ValueError):
    """The request body is not JSON, or not one Segment event or an array of them."""


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """A status, a JSON body and extra headers; ``payload()`` is what goes on the wire."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def payload(self) -> bytes:
        # ASCII escapes: a lone surrogate echoed from an event (valid JSON "\\ud800") must not fail the reply.
        return json.dumps(self.body, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """The ``X-Signature`` Segment sends for ``body``: hex HMAC-SHA1 with the shared secret."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (a container alone is one level).

    A batch is walked one event at a time: ``json.loads`` makes each event's objects one after another in
    memory, so a walk over one event stays in the CPU's cache, where a level of the whole batch at once
    does not.
    """
    if value.__class__ is not list or limit < 1:
        return _nests_deeper(value, limit)
    for event in value:
        cls = event.__class__
        if (cls is dict or cls is list) and _nests_deeper(event, limit - 1):
            return True
    return False


def _nests_deeper(value: Any, limit: int) -> bool:
    """`_too_deep` for one container, level by level, so no recursion limit applies.

    Only containers are kept for the next level, and ``json.loads`` makes exact ``dict`` and ``list``
    objects, so a class identity check does (half the time of ``isinstance`` on every value).
    """
    level = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        deeper: list[Any] = []
        keep = deeper.append
        for node in level:
            for child in node.values() if node.__class__ is dict else node:
                cls = child.__class__
                if cls is dict or cls is list:
                    keep(child)
        level = deeper
        depth += 1
    return False


def parse_events(body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> list[Any]:
    """One event (a JSON object) or a batch (a JSON array) as a list; raises `BodyError`.

    Elements of a batch are not checked here: one that is not an event is answered per event (a permanent
    rejection), so a single bad element cannot make Segment drop or retry the whole batch.
    """
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise BodyError(f"the body nests deeper than {max_depth} levels") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise BodyError(f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, (dict, list)):
        raise BodyError(
            "the body is JSON but not events: send one Segment event (an object) or an array of them"
        )
    if _too_deep(data, max_depth):
        raise BodyError(f"the body nests deeper than {max_depth} levels")
    return [data] if isinstance(data, dict) else data


def _message_id(event: Any) -> Any:
    return event.get("messageId") if isinstance(event, dict) else None


def error_response(status: int, message: str, *headers: tuple[str, str]) -> WebhookResponse:
    """A response whose body says what is wrong with the request, for the sender's logs."""
    return WebhookResponse(status, {"status": "error", "error": message}, headers)


class WebhookHandler:
    """Verifies, parses and delivers one webhook request; see the module documentation for the statuses.

    ``shared_secret``: when set, every POST must carry a valid ``X-Signature`` (else 401, nothing delivered).
    ``max_body_bytes`` caps the body (413 above it); ``max_depth`` caps JSON nesting (400 above it).
    """

    def __init__(
        self,
        destination: BatchDestination,
        shared_secret: str | None = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if max_body_bytes < 1 or max_depth < 1:
            raise ValueError("max_body_bytes and max_depth must be positive")
        self.destination = destination
        self._secret = shared_secret.encode() if shared_secret else None
        self.max_body_bytes = max_body_bytes
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(destination={self.destination!r}, signed={self.signed}, "
            f"max_body_bytes={self.max_body_bytes})"
        )

    @property
    def signed(self) -> bool:
        """Whether requests must carry a valid signature."""
        return self._secret is not None

    def health(self) -> WebhookResponse:
        """Liveness only: Amplitude is not called, so a health check can never spend its quota."""
        return WebhookResponse(200, {"status": "ok", "signature_required": self.signed})

    def route(self, method: str, path: str) -> WebhookResponse | None:
        """The answer to any request that is not ``POST /`` (health, 404, 405); None for ``POST /``."""
        if path == "/healthz":
            if method in ("GET", "HEAD"):
                return self.health()
            return error_response(405, "use GET /healthz", ("Allow", "GET, HEAD"))
        if path != "/":
            return error_response(404, "not found: POST Segment events to /")
        if method != "POST":
            return error_response(405, "POST Segment events to /", ("Allow", "POST"))
        return None

    def too_large(self, length: int) -> WebhookResponse | None:
        """The 413 answer when a body of ``length`` bytes is over the cap, checked before reading it."""
        if length <= self.max_body_bytes:
            return None
        return error_response(
            413, f"the body is {length} bytes, more than the limit of {self.max_body_bytes}"
        )

    def verify(self, body: bytes, signature: str | None) -> bool:
        """Constant-time check of ``signature`` against ``body``; True when no secret is configured."""
        if self._secret is None:
            return True
        if not signature:
            return False
        expected = hmac.new(self._secret, body, hashlib.sha1).hexdigest().encode()
        return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))

    def handle(self, body: bytes, signature: str | None) -> WebhookResponse:
        """Answer one ``POST`` whose raw body is ``body``."""
        oversized = self.too_large(len(body))
        if oversized is not None:
            return oversized
        if not self.verify(body, signature):
            missing = "missing" if not signature else "wrong"
            logger.warning("webhook: refused a request with a %s %s header", missing, SIGNATURE_HEADER)
            return error_response(401, f"{missing} {SIGNATURE_HEADER}: sign the body with the shared secret")
        try:
            events = parse_events(body, max_depth=self.max_depth)
        except BodyError as exc:
            return error_response(400, str(exc))
        if not events:
            return WebhookResponse(200, _summary("ok", 0, 0, 0, [], []))
        try:
            results = self.destination.on_batch(events)
        except Exception:
            logger.exception(
                "webhook: delivering %d events failed unexpectedly; asking Segment to retry", len(events)
            )
            return error_response(500, "internal error while delivering; retry later")
        return summarize(events, results)


def _summary(
    status: str, received: int, delivered: int, ignored: int, rejected: list[Any], retry: list[Any]
) -> dict[str, Any]:
    return {
        "status": status,
        "received": received,
        "delivered": delivered,
        "ignored": ignored,
        "rejected": rejected,
        "retry": retry,
    }


def summarize(events: Sequence[Any], results: Sequence[dict[str, Any]]) -> WebhookResponse:
    """The response for ``on_batch`` results: 503 if anything must be retried for a reason other than
    throttling, else 429 if anything was throttled, else 200.

    The body counts delivered events and events that are not exposures (``ignored``: a webhook receives
    every event of its source) and lists each rejected or unfinished event with its index, ``messageId``
    and reason.
    """
    delivered = ignored = 0
    rejected: list[dict[str, Any]] = []
    retry: list[dict[str, Any]] = []
    for index, (event, result) in enumerate(zip(events, results, strict=True)):
        status = result["status"]
        message = result["errormessage"]
        if status == 200:
            delivered += 1
        elif status == 400 and message.startswith("EventNotSupported"):
            ignored += 1
        elif status == 400:
            rejected.append({"index": index, "messageId": _message_id(event), "error": message})
        else:
            retry.append(
                {"index": index, "messageId": _message_id(event), "status": status, "error": message}
            )
    headers: tuple[tuple[str, str], ...] = ()
    if any(item["status"] != 429 for item in retry):
        code, label = 503, "retry"
    elif retry:
        code, label, headers = 429, "throttled", (("Retry-After", THROTTLE_RETRY_AFTER),)
    else:
        code, label = 200, "ok"
    logger.info(
        "webhook: %d events: %d delivered, %d rejected, %d not exposures, %d to retry -> %d",
        len(events),
        delivered,
        len(rejected),
        ignored,
        len(retry),
        code,
    )
    return WebhookResponse(code, _summary(label, len(events), delivered, ignored, rejected, retry), headers)
