"""Amplitude events as the JSON bytes of a request body: encoded once each, fast, and checked.

An event that is not JSON, not an object, or larger than any one request may hold is rejected here with
the reason, before anything is sent.
"""

from __future__ import annotations

import gzip as gzip_module
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from segment_exposure.delivery.outcomes import EventOutcome, Status

__all__ = ["BodyEncoder", "RequestLimits", "compact_dumps", "encode_event"]


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What one request may hold: at most ``max_events`` events and ``max_bytes`` bytes of JSON body."""

    max_events: int
    max_bytes: int


class BodyEncoder:
    """Joins encoded events into one request body: the key and options around them, gzipped if asked.

    Args:
        api_key: The Amplitude project's key; it goes in the body, never in a ``repr``.
        min_id_length: Sent as ``options.min_id_length`` (None: left out).
        gzip: Compress the body (the client then sends ``Content-Encoding: gzip``).
    """

    __slots__ = ("_gzip", "_head", "_tail", "overhead")

    def __init__(self, api_key: str, *, min_id_length: int | None, gzip: bool) -> None:
        options = b""
        if min_id_length is not None:
            options = b',"options":{"min_id_length":%d}' % min_id_length
        self._head = b'{"api_key":' + json.dumps(api_key).encode() + b',"events":['
        self._tail = b"]" + options + b"}"
        self._gzip = gzip
        #: Bytes of a body besides its events and the commas between them.
        self.overhead = len(self._head) + len(self._tail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_key='***', gzip={self._gzip!r})"

    def encode(self, parts: list[bytes]) -> bytes:
        """The request body holding ``parts``, each an event's JSON bytes, in order."""
        body = self._head + b",".join(parts) + self._tail
        if self._gzip:
            body = gzip_module.compress(body, compresslevel=5)
        return body


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def compact_dumps() -> Any:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))``, with C's encoder
    made once per send rather than once per event as ``JSONEncoder.encode`` does (a fifth of the cost of
    encoding a small event). Without the circular-reference check: a cycle raises ``RecursionError``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # no C accelerator (e.g. PyPy)
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
    encode = make(None, _not_serializable, basestring, None, ":", ",", False, False, False)

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


def encode_event(
    dumps: Callable[[Any], str], event: Mapping[str, Any], max_bytes: int, overhead: int, api: str
) -> bytes | EventOutcome:
    """``event``'s JSON bytes, or why it can never be sent: ``max_bytes`` per request, ``overhead`` of
    them taken by the rest of the body."""
    try:
        data = dumps(event).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        return EventOutcome(
            Status.REJECTED,
            "not_json",
            f"the event cannot be sent as JSON ({exc}); only JSON values, no NaN or Infinity",
        )
    if not data.startswith(b"{"):
        return EventOutcome(
            Status.REJECTED,
            "not_json",
            "the event is not a JSON object; Amplitude events are objects",
        )
    if len(data) > max_bytes - overhead:
        return EventOutcome(
            Status.REJECTED,
            "too_large",
            f"the event is {len(data)} bytes of JSON, more than one {api} request may "
            f"hold ({max_bytes} bytes); shrink its properties",
        )
    return data
