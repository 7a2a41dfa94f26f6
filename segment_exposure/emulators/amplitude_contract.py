"""What Amplitude's ingestion API does with a request: the contract the emulator keeps, apart from HTTP.

Each request is checked in this order, the first failure answering:

1. size of the (decompressed) body over the endpoint's limit -> 413;
2. body not a JSON object -> 400 ``Invalid JSON request body``;
3. ``api_key`` missing -> 400 with ``missing_field: "api_key"``; not in ``api_keys`` (when given) -> 400
   ``Invalid API key: <key>`` (the key is echoed, as Amplitude does: clients must redact it);
4. ``events`` missing, empty or not a list -> 400 ``missing_field: "events"``; ``options.min_id_length`` not a
   positive integer -> 400;
5. more than ``max_events_per_request`` events -> 413;
6. per event, all reported together (or only the first ``index_map_limit`` bad events) in a 400 with index
   maps: ``events_with_missing_fields`` (``event_type``; ``user_id or device_id``),
   ``events_with_invalid_fields`` (not an object; ``time`` not a non-negative integer of milliseconds;
   wrongly typed known fields; ids on Amplitude's invalid list, compared case-insensitively) and
   ``events_with_invalid_id_lengths`` (ids shorter than ``options.min_id_length``, default 5);
7. per-id sliding window: when ingesting would put a user or device over ``eps_threshold`` events per second
   over ``throttle_window`` seconds (or past ``daily_quota`` events), the whole request is refused with 429,
   ``throttled_events`` listing the events over the limit (the first ones of an id still fit);
8. otherwise 200: the events are ingested, dropping duplicates of ``(insert_id, device_id)`` (events without
   ``insert_id`` are never duplicates) and counting them in `AmplitudeEmulator.duplicates_dropped`.

Nothing here touches a socket.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
import time
from collections import deque
from collections.abc import Collection
from typing import Any

from segment_exposure.identity.id_rules import INVALID_IDS

__all__ = ["AmplitudeContract"]

# Amplitude's invalid-id list is one documented fact: the translator's copy is the one source.
_INVALID_IDS = INVALID_IDS
_STR_FIELDS = (
    "event_type",
    "insert_id",
    "app_version",
    "platform",
    "os_name",
    "os_version",
    "device_brand",
    "device_manufacturer",
    "device_model",
    "carrier",
    "country",
    "region",
    "city",
    "dma",
    "language",
    "ip",
    "idfa",
    "idfv",
    "adid",
    "android_id",
    "library",
    "productId",
    "revenueType",
)
_INT_FIELDS = ("session_id", "event_id", "quantity")
_NUMBER_FIELDS = ("price", "revenue", "location_lat", "location_lng")
_OBJECT_FIELDS = ("event_properties", "user_properties", "groups", "plan")


def _is_int(value: Any) -> bool:
    return value.__class__ is int


def _is_number(value: Any) -> bool:
    return value.__class__ is int or value.__class__ is float


class AmplitudeContract:
    """Amplitude's ingestion rules and what it has ingested; the settings are plain attributes.

    All methods are thread-safe.
    """

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        eps_threshold: float = 30,
        throttle_window: float = 1.0,
        batch_eps_threshold: float = 1000,
        batch_throttle_window: float = 30.0,
        daily_quota: int | None = None,
        max_events_per_request: int = 2000,
        http_max_body_bytes: int = 999_999,
        batch_max_body_bytes: int = 20_000_000,
        index_map_limit: int | None = None,
    ) -> None:
        self.api_keys: frozenset[str] | None = frozenset(api_keys) if api_keys is not None else None
        self.eps_threshold = eps_threshold
        self.throttle_window = throttle_window
        self.batch_eps_threshold = batch_eps_threshold
        self.batch_throttle_window = batch_throttle_window
        self.daily_quota = daily_quota
        self.max_events_per_request = max_events_per_request
        self.http_max_body_bytes = http_max_body_bytes
        self.batch_max_body_bytes = batch_max_body_bytes
        self.index_map_limit = index_map_limit
        self._cond = threading.Condition()
        self._ingested: list[dict[str, Any]] = []
        self._seen: set[tuple[str, Any]] = set()
        self._duplicates = 0
        self._windows: dict[tuple[str, str, str], deque[float]] = {}
        self._daily: dict[tuple[str, str], int] = {}

    # -- observations --------------------------------------------------------------------------------

    @property
    def ingested(self) -> list[dict[str, Any]]:
        """A snapshot of the ingested events, duplicates excluded, in ingestion order."""
        with self._cond:
            return list(self._ingested)

    @property
    def ingested_count(self) -> int:
        with self._cond:
            return len(self._ingested)

    @property
    def duplicates_dropped(self) -> int:
        """Events refused as duplicates of an ingested ``(insert_id, device_id)``."""
        with self._cond:
            return self._duplicates

    def experiment_properties(self, *, order: str = "time") -> dict[tuple[str, str], str | None]:
        """Each user's ``[Experiment] <flag>`` property as Amplitude would end up with it.

        Replays the ingested ``$exposure`` events in event-time order (``order="time"``; ingestion order
        breaks ties) or in ingestion order (``order="ingestion"``: what Amplitude does for a backfill, whose
        historical values overwrite current ones): a variant sets the property, an exposure without one
        unsets it (``None``). An event with ``"$skip_user_properties_sync": true`` changes nothing (Amplitude
        leaves the user properties table alone for it). Keys are ``(user_id or device_id, flag_key)``.
        """
        if order not in ("time", "ingestion"):
            raise ValueError(f"order must be 'time' or 'ingestion', got {order!r}")
        ordered = list(enumerate(self.ingested))
        if order == "time":
            ordered.sort(key=lambda item: (item[1].get("time", 0), item[0]))
        state: dict[tuple[str, str], str | None] = {}
        for _, event in ordered:
            if event.get("$skip_user_properties_sync") is True:
                continue
            props = event.get("event_properties") or {}
            flag = props.get("flag_key")
            who = event.get("user_id") or event.get("device_id")
            if event.get("event_type") == "$exposure" and isinstance(flag, str) and isinstance(who, str):
                variant = props.get("variant")
                state[(who, flag)] = variant if isinstance(variant, str) else None
        return state

    def wait_for_ingested(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` events are ingested; False if ``timeout`` passes first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ingested) >= count, timeout)

    # -- the contract --------------------------------------------------------------------------------

    @staticmethod
    def _decode(raw: bytes, encoding: str) -> bytes:
        return gzip.decompress(raw) if encoding.lower() == "gzip" else raw

    def _process(self, api: str, raw: bytes, encoding: str) -> tuple[int, dict[str, Any], int]:
        """Validate in the documented order and ingest: ``(status, JSON answer, number of events)``."""
        try:
            data = self._decode(raw, encoding)
        except (OSError, EOFError, ValueError):
            return 400, {"code": 400, "error": "Invalid gzip body"}, 0
        max_bytes = self.http_max_body_bytes if api == "http" else self.batch_max_body_bytes
        if len(data) > max_bytes:
            return 413, {"code": 413, "error": "Payload too large"}, 0
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return 400, {"code": 400, "error": "Invalid JSON request body"}, 0
        api_key = body.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            missing = {"code": 400, "error": "Request missing required field", "missing_field": "api_key"}
            return 400, missing, 0
        if self.api_keys is not None and api_key not in self.api_keys:
            return 400, {"code": 400, "error": f"Invalid API key: {api_key}"}, 0
        events = body.get("events")
        if not isinstance(events, list) or not events:
            missing = {"code": 400, "error": "Request missing required field", "missing_field": "events"}
            return 400, missing, 0
        options = body.get("options")
        min_id_length = 5
        if options is not None:
            value: Any = options.get("min_id_length") if isinstance(options, dict) else "invalid"
            if value is not None:
                if not _is_int(value) or value < 1:
                    error = {
                        "code": 400,
                        "error": "Invalid field: options.min_id_length must be a positive int",
                    }
                    return 400, error, len(events)
                min_id_length = int(value)
        if len(events) > self.max_events_per_request:
            return 413, {"code": 413, "error": "Payload too large"}, len(events)
        invalid = self._validate(events, min_id_length)
        if invalid is not None:
            return 400, invalid, len(events)
        with self._cond:
            throttled = self._throttle(api, events)
            if throttled is not None:
                return 429, throttled, len(events)
            self._ingest(api, events)
        answer = {
            "code": 200,
            "events_ingested": len(events),
            "payload_size_bytes": len(data),
            "server_upload_time": int(time.time() * 1000),
        }
        return 200, answer, len(events)

    def _validate(self, events: list[Any], min_id_length: int) -> dict[str, Any] | None:
        missing: dict[str, list[int]] = {}
        invalid: dict[str, list[int]] = {}
        lengths: dict[str, list[int]] = {}
        bad = 0
        limit = self.index_map_limit
        for index, event in enumerate(events):
            problems = self._event_problems(event, min_id_length)
            if not problems:
                continue
            for kind, field in problems:
                target = missing if kind == "missing" else lengths if kind == "length" else invalid
                target.setdefault(field, []).append(index)
            bad += 1
            if limit is not None and bad >= limit:
                break
        if not bad:
            return None
        return {
            "code": 400,
            "error": "Request has events with missing or invalid fields",
            "events_with_missing_fields": missing,
            "events_with_invalid_fields": invalid,
            "events_with_invalid_id_lengths": lengths,
            "silenced_devices": [],
            "silenced_events": [],
        }

    @staticmethod
    def _event_problems(event: Any, min_id_length: int) -> list[tuple[str, str]]:
        if not isinstance(event, dict):
            return [("invalid", "event")]
        problems: list[tuple[str, str]] = []
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            problems.append(("missing", "event_type"))
        user_id = event.get("user_id")
        device_id = event.get("device_id")
        if user_id is None and device_id is None:
            problems.append(("missing", "user_id or device_id"))
        for name, value in (("user_id", user_id), ("device_id", device_id)):
            if value is None:
                continue
            if not isinstance(value, str) or value.lower() in _INVALID_IDS:
                problems.append(("invalid", name))
            elif len(value) < min_id_length:
                problems.append(("length", name))
        event_time = event.get("time")
        if event_time is not None and (not _is_int(event_time) or event_time < 0):
            problems.append(("invalid", "time"))
        for name in _STR_FIELDS:
            value = event.get(name)
            if value is not None and not isinstance(value, str) and name != "event_type":
                problems.append(("invalid", name))
        for name in _INT_FIELDS:
            value = event.get(name)
            if value is not None and not _is_int(value):
                problems.append(("invalid", name))
        for name in _NUMBER_FIELDS:
            value = event.get(name)
            if value is not None and not _is_number(value):
                problems.append(("invalid", name))
        for name in _OBJECT_FIELDS:
            value = event.get(name)
            if value is not None and not isinstance(value, dict):
                problems.append(("invalid", name))
        return problems

    def _ids(self, event: dict[str, Any]) -> list[tuple[str, str]]:
        ids: list[tuple[str, str]] = []
        user_id = event.get("user_id")
        if isinstance(user_id, str):
            ids.append(("user", user_id))
        device_id = event.get("device_id")
        if isinstance(device_id, str):
            ids.append(("device", device_id))
        return ids

    def _throttle(self, api: str, events: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The 429 answer if ingesting ``events`` would exceed a window or quota; caller holds the lock."""
        eps, window = (
            (self.eps_threshold, self.throttle_window)
            if api == "http"
            else (self.batch_eps_threshold, self.batch_throttle_window)
        )
        limit = max(1, math.floor(eps * window))
        quota = self.daily_quota
        now = time.monotonic()
        counts: dict[tuple[str, str], int] = {}
        daily: dict[tuple[str, str], int] = {}
        throttled_events: list[int] = []
        throttled: dict[str, dict[str, int]] = {"user": {}, "device": {}}
        exceeded: dict[str, dict[str, int]] = {"user": {}, "device": {}}
        for index, event in enumerate(events):
            ids = self._ids(event)
            over = False
            for key in ids:
                count = counts.get(key)
                if count is None:
                    count = self._window_count((api, *key), now, window)
                    counts[key] = count
                if count + 1 > limit:
                    over = True
                    throttled[key[0]][key[1]] = count + 1
                if quota is not None:
                    used = daily.get(key)
                    if used is None:
                        used = self._daily.get(key, 0)
                        daily[key] = used
                    if used + 1 > quota:
                        over = True
                        exceeded[key[0]][key[1]] = used + 1
            if over:
                throttled_events.append(index)
                continue
            for key in ids:
                counts[key] += 1
                if quota is not None:
                    daily[key] += 1
        if not throttled_events:
            return None
        return {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": eps,
            "throttled_devices": throttled["device"],
            "throttled_users": throttled["user"],
            "throttled_events": throttled_events,
            "exceeded_daily_quota_users": exceeded["user"],
            "exceeded_daily_quota_devices": exceeded["device"],
        }

    def _window_count(self, key: tuple[str, str, str], now: float, window: float) -> int:
        stamps = self._windows.get(key)
        if stamps is None:
            return 0
        horizon = now - window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        return len(stamps)

    def _ingest(self, api: str, events: list[dict[str, Any]]) -> None:
        """Record the events (caller holds the lock), dropping ``(insert_id, device_id)`` duplicates."""
        now = time.monotonic()
        for event in events:
            for key in self._ids(event):
                self._windows.setdefault((api, *key), deque()).append(now)
                self._daily[key] = self._daily.get(key, 0) + 1
            insert_id = event.get("insert_id")
            if isinstance(insert_id, str):
                dedupe_key = (insert_id, event.get("device_id"))
                if dedupe_key in self._seen:
                    self._duplicates += 1
                    continue
                self._seen.add(dedupe_key)
            self._ingested.append(event)
        self._cond.notify_all()
