"""Segment ``$exposure`` track events into Amplitude HTTP API events.

Why our own translator: Segment's Amplitude (Actions) destination maps the fields well but sends no
``insert_id``, so a Segment retry can count one exposure twice, and it knows nothing about exposures. This
module keeps Segment's default field mapping and adds what exposures need. It is pure (no I/O, no global
state) so the webhook, the Lambda, the CLI and the JavaScript Segment Function can all agree with it; the
golden vectors in ``tests/vectors/translate`` pin every rule below.

Rules, checked in this order (the first failing rule decides the error):

1. The event must be a JSON object (a ``dict``), else ``InvalidEventPayload``.
2. ``type`` must be ``"track"`` and ``event`` one of ``exposure_events`` (default ``("$exposure",)``), else
   ``EventNotSupported``. ``event_type`` is always ``"$exposure"``: Amplitude only counts that exact name,
   so an alias configured in ``exposure_events`` is renamed on the way through.
3. ``properties.flag_key`` must be a non-empty string; ``variant`` and ``experiment_key`` must be non-empty
   strings when present. A null or missing ``variant`` is left out (it *unsets* the user's variant); a null
   ``experiment_key`` is left out too. Other properties pass through as they are.
4. Identity: ``user_id`` from ``userId``; ``device_id`` from ``context.device.id``, else ``anonymousId``.
   Null and empty strings count as absent. Ids must be strings. At least one id is required.
5. ``messageId`` (a string when present) becomes ``insert_id``: retries are then idempotent end to end.
6. ``time``: the first present of ``timestamp``, ``originalTimestamp``, ``receivedAt``, parsed as ISO 8601
   with ``Z`` or an offset (see :func:`parse_time_ms`); a present but unreadable one is an error, not skipped.
7. ``ValidationError`` for values Amplitude rejects: ids on :data:`INVALID_IDS` (compared case-insensitively)
   or shorter than ``min_id_length`` (default 5); a ``session_id`` that is not an integer.

Mapped like Segment's defaults (null and empty-string values are left out; other values pass as given):
``app_version``, ``platform`` (``ios`` -> ``iOS``, ``android`` -> ``Android``, any case), ``os_name``,
``os_version``, ``device_brand``, ``device_manufacturer``, ``device_model``, ``carrier``, ``country``,
``region``, ``city``, ``location_lat``, ``location_lng``, ``language`` (``context.locale``), ``ip``,
``idfa`` and ``adid`` (``context.device.advertisingId``, else ``context.device.idfa``), ``idfv``
(``context.device.id``), ``library`` (``context.library.name``), ``session_id``
(``integrations["Actions Amplitude"].session_id``; an all-digit string becomes a number) and
``user_properties`` (``traits``).

``[Experiment]`` user properties: Amplitude sets ``[Experiment] <flag_key>`` itself from the exposure; one set
by hand corrupts the experiment. Such keys (any case) are *stripped* from ``user_properties`` (also inside
``$set``-style operation objects) rather than rejecting the event, because losing the exposure would be
worse than losing a property that must not be sent anyway.

The result may share nested values (e.g. a nested property object) with the input; the input itself is
never modified.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from segment_exposure.errors import EventNotSupported, InvalidEventPayload, ValidationError
from segment_exposure.exposure import EXPOSURE_EVENT

__all__ = [
    "DEFAULT_EXPOSURE_EVENTS",
    "DEFAULT_MIN_ID_LENGTH",
    "EXPERIMENT_PROPERTY_PREFIX",
    "INVALID_IDS",
    "id_problem",
    "parse_time_ms",
    "to_amplitude_event",
    "validate_id",
]

#: Amplitude's minimum id length when the request carries no ``options.min_id_length``.
DEFAULT_MIN_ID_LENGTH = 5

#: Event names treated as exposures unless the caller says otherwise.
DEFAULT_EXPOSURE_EVENTS: tuple[str, ...] = (EXPOSURE_EVENT,)

#: Ids Amplitude refuses, whatever ``min_id_length`` says (compare lower-cased).
INVALID_IDS: frozenset[str] = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)

#: User properties with this prefix belong to Amplitude Experiment and are never sent by hand.
EXPERIMENT_PROPERTY_PREFIX = "[Experiment]"

_PREFIX_LOWER = EXPERIMENT_PROPERTY_PREFIX.lower()
_PREFIX_LEN = len(EXPERIMENT_PROPERTY_PREFIX)
_SEGMENT_INTEGRATION = "Actions Amplitude"
_MAX_SAFE_INTEGER = 2**53 - 1
_TIME_FIELDS = ("timestamp", "originalTimestamp", "receivedAt")
_EMPTY: dict[str, Any] = {}

# (context section, ((source key, Amplitude field), ...)): Segment's default mapping, table-driven.
_CONTEXT_FIELDS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("app", (("version", "app_version"),)),
    ("os", (("name", "os_name"), ("version", "os_version"))),
    (
        "device",
        (
            ("brand", "device_brand"),
            ("manufacturer", "device_manufacturer"),
            ("model", "device_model"),
            ("id", "idfv"),
        ),
    ),
    ("network", (("carrier", "carrier"),)),
    (
        "location",
        (
            ("country", "country"),
            ("region", "region"),
            ("city", "city"),
            ("latitude", "location_lat"),
            ("longitude", "location_lng"),
        ),
    ),
    ("library", (("name", "library"),)),
)

_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _show(value: Any) -> str:
    """A value as JSON (the sender's language) for error messages, cut so it cannot flood the logs."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    except RecursionError:
        text = f"{_kind(value)} nested too deeply to show"
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages read by people who write JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm: no datetime objects)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time_ms(value: str) -> int:
    """Epoch milliseconds of an ISO 8601 / RFC 3339 date-time with a zone; raises ``ValueError``.

    Accepted: ``YYYY-MM-DDTHH:MM:SS`` (``T``, ``t`` or a space), an optional fraction of any number of
    digits after ``.`` or ``,`` (cut, not rounded, to milliseconds, as JavaScript's ``Date`` does), then
    ``Z``/``z`` or an offset ``+HH:MM``, ``+HHMM`` or ``+HH``. A time without a zone is refused: Segment
    always sends one, and guessing local time is how exposures land on the wrong day. Hand-written because
    it runs for every event and ``datetime.fromisoformat`` in 3.10 rejects ``Z`` and long fractions.
    """
    if value.__class__ is not str:
        raise ValueError(f"expected an ISO 8601 string, got {_kind(value)}")
    s = value
    n = len(s)
    if (
        n < 20
        or s[4] != "-"
        or s[7] != "-"
        or s[10] not in "Tt "
        or s[13] != ":"
        or s[16] != ":"
        or not s.isascii()
    ):
        raise ValueError(f"{_show(value)} is not YYYY-MM-DDTHH:MM:SS followed by Z or an offset")
    digits = s[0:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19]
    if not digits.isdigit():
        raise ValueError(f"{_show(value)} has a non-digit in its date or time")
    rest_digits, second = divmod(int(digits), 100)
    rest_digits, minute = divmod(rest_digits, 100)
    rest_digits, hour = divmod(rest_digits, 100)
    rest_digits, day = divmod(rest_digits, 100)
    year, month = divmod(rest_digits, 100)

    rest = s[19:]
    millis = 0
    if rest[0] in ".,":
        last = rest[-1]
        if last in "Zz":
            cut = len(rest) - 1
        else:
            cut = max(rest.rfind("+"), rest.rfind("-"))
            if cut < 0:
                raise ValueError(f"{_show(value)} has no zone: add Z (UTC) or an offset such as +02:00")
        fraction = rest[1:cut]
        if not fraction.isdigit():
            raise ValueError(f"{_show(value)} has a malformed fraction of a second")
        millis = int((fraction + "00")[:3])
        rest = rest[cut:]

    offset_minutes = 0
    if rest == "Z" or rest == "z":
        pass
    elif rest and rest[0] in "+-":
        zone = rest[1:]
        if len(zone) == 5 and zone[2] == ":":
            zone = zone[:2] + zone[3:]
        if len(zone) == 2:
            zone += "00"
        if len(zone) != 4 or not zone.isdigit():
            raise ValueError(f"{_show(value)} has a malformed offset: use Z, +HH:MM, +HHMM or +HH")
        off_h = int(zone[:2])
        off_m = int(zone[2:])
        if off_h > 23 or off_m > 59:
            raise ValueError(f"{_show(value)} has an offset out of range")
        offset_minutes = off_h * 60 + off_m
        if rest[0] == "-":
            offset_minutes = -offset_minutes
    elif not rest:
        raise ValueError(f"{_show(value)} has no zone: add Z (UTC) or an offset such as +02:00")
    else:
        raise ValueError(f"{_show(value)} has unexpected text after the seconds")

    if year < 1 or not 1 <= month <= 12:
        raise ValueError(f"{_show(value)} has a year or month out of range")
    dim = _DAYS_IN_MONTH[month]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        dim = 29
    if not 1 <= day <= dim or hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{_show(value)} has a day, hour, minute or second out of range")

    days = _days_from_civil(year, month, day)
    return (((days * 24 + hour) * 60 + minute - offset_minutes) * 60 + second) * 1000 + millis


def _check_min_id_length(min_id_length: int | None) -> int:
    """The effective minimum; a bad setting is the caller's bug, so ``ValueError``, not an event error."""
    if min_id_length is None:
        return DEFAULT_MIN_ID_LENGTH
    if min_id_length.__class__ is not int or min_id_length < 1:
        raise ValueError(f"min_id_length must be a positive int or None, got {min_id_length!r}")
    return min_id_length


def id_problem(value: str, *, min_id_length: int | None = None) -> str | None:
    """Why Amplitude would reject ``value`` as a user or device id, or ``None`` when it is fine."""
    return _id_problem(value, _check_min_id_length(min_id_length))


def _id_problem(value: str, minimum: int) -> str | None:
    if value.lower() in INVALID_IDS:
        return (
            f"{_show(value)} is on Amplitude's list of invalid ids (anonymous, null, unknown, 0, -1, ...); "
            "send the real id, or leave the field out"
        )
    if len(value) < minimum:
        return (
            f"{_show(value)} has {len(value)} characters, fewer than Amplitude's minimum of {minimum}; "
            "use longer ids, or set min_id_length (Amplitude's options.min_id_length) to accept shorter ones"
        )
    return None


def validate_id(value: str, *, field: str = "user_id", min_id_length: int | None = None) -> str:
    """Return ``value`` if Amplitude accepts it as an id, else raise ``ValidationError`` naming ``field``."""
    problem = id_problem(value, min_id_length=min_id_length)
    if problem is not None:
        raise ValidationError(f"{field} {problem}")
    return value


def _strip_experiment(traits: dict[str, Any]) -> dict[str, Any]:
    """``traits`` without ``[Experiment] ...`` keys; copies only when something must go."""
    for key, value in traits.items():
        if _is_experiment_key(key) or (
            key.__class__ is str and key[:1] == "$" and value.__class__ is dict and _has_experiment_key(value)
        ):
            break
    else:
        return traits
    cleaned: dict[str, Any] = {}
    for key, value in traits.items():
        if _is_experiment_key(key):
            continue
        if key.__class__ is str and key[:1] == "$" and value.__class__ is dict and _has_experiment_key(value):
            value = {k: v for k, v in value.items() if not _is_experiment_key(k)}
            if not value:
                continue
        cleaned[key] = value
    return cleaned


def _is_experiment_key(key: Any) -> bool:
    return key.__class__ is str and key[:_PREFIX_LEN].lower() == _PREFIX_LOWER


def _has_experiment_key(obj: dict[str, Any]) -> bool:
    return any(_is_experiment_key(k) for k in obj)


def _session_id(event: dict[str, Any]) -> int | None:
    """``integrations["Actions Amplitude"].session_id`` as Amplitude wants it: an integer."""
    integrations = event.get("integrations")
    if integrations.__class__ is not dict:
        return None
    settings = integrations.get(_SEGMENT_INTEGRATION)
    if settings.__class__ is not dict:
        return None
    raw = settings.get("session_id")
    if raw is None:
        return None
    number: int | None = None
    if (
        raw.__class__ is int
        or (raw.__class__ is str and raw.isdigit() and raw.isascii() and len(raw) <= 16)
        or (raw.__class__ is float and raw.is_integer())
    ):
        number = int(raw)
    # An epoch-ms session start is far below 2**53, the largest integer JavaScript (the Segment Function)
    # holds exactly; outside it the two implementations could not agree.
    if number is not None and -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER:
        return number
    raise ValidationError(
        f'integrations["{_SEGMENT_INTEGRATION}"].session_id is {_show(raw)}; Amplitude needs an integer '
        "(the session start in epoch milliseconds) or an all-digit string: fix the sender, or remove it"
    )


def _identity(event: dict[str, Any], device: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """``(user_id, device_id, device_id_source)`` with absent values as ``None``; raises on non-strings."""
    user_id = event.get("userId")
    if user_id is not None and user_id.__class__ is not str:
        raise InvalidEventPayload(f"userId must be a string, got {_kind(user_id)}: send ids as strings")
    source = "context.device.id"
    device_id = device.get("id")
    if device_id is None or device_id == "":
        source = "anonymousId"
        device_id = event.get("anonymousId")
    if device_id is not None and device_id.__class__ is not str:
        raise InvalidEventPayload(f"{source} must be a string, got {_kind(device_id)}: send ids as strings")
    return user_id or None, device_id or None, source


def to_amplitude_event(
    event: Any,
    *,
    min_id_length: int | None = None,
    exposure_events: Collection[str] = DEFAULT_EXPOSURE_EVENTS,
) -> dict[str, Any]:
    """Translate one Segment track event into the Amplitude ``$exposure`` event to ingest.

    Raises ``EventNotSupported`` (not a track or not an exposure), ``InvalidEventPayload`` (malformed) or
    ``ValidationError`` (Amplitude would reject it); none of them is worth retrying. ``min_id_length``
    must match the ``options.min_id_length`` sent to Amplitude (None means Amplitude's default, 5).
    """
    if not isinstance(event, dict):
        raise InvalidEventPayload(
            f"expected a Segment event as a JSON object, got {_kind(event)}: pass one parsed event"
        )
    kind = event.get("type")
    if kind != "track":
        raise EventNotSupported(
            f"only track events are exposures, this is type {_show(kind)}: route only track events here"
        )
    if isinstance(exposure_events, str):
        exposure_events = (exposure_events,)
    name = event.get("event")
    if name.__class__ is not str or name not in exposure_events:
        expected = _show(sorted(exposure_events))
        raise EventNotSupported(
            f"event {_show(name)} is not an exposure event (expected one of {expected}); "
            "filter other events out, or add the name to exposure_events"
        )

    props = event.get("properties")
    if props.__class__ is not dict:
        raise InvalidEventPayload(
            f"properties is {_kind(props)}, so there is no flag_key: an exposure needs "
            'properties {"flag_key": ..., "variant": ...}'
        )
    flag_key = props.get("flag_key")
    if flag_key.__class__ is not str or not flag_key:
        raise InvalidEventPayload(
            f"properties.flag_key is {_show(flag_key)}: an exposure needs the flag key as a non-empty string"
        )
    event_properties = dict(props)
    variant = props.get("variant")
    if variant is None:
        event_properties.pop("variant", None)
    elif variant.__class__ is not str or not variant:
        raise InvalidEventPayload(
            f"properties.variant is {_show(variant)}: send the variant key as a non-empty string, "
            "or null/leave it out to unset the user's variant"
        )
    experiment_key = props.get("experiment_key")
    if experiment_key is None:
        event_properties.pop("experiment_key", None)
    elif experiment_key.__class__ is not str or not experiment_key:
        raise InvalidEventPayload(
            f"properties.experiment_key is {_show(experiment_key)}: send a non-empty string or leave it out"
        )

    context = event.get("context")
    if context.__class__ is not dict:
        context = _EMPTY
    device = context.get("device")
    if device.__class__ is not dict:
        device = _EMPTY
    user_id, device_id, device_source = _identity(event, device)
    if user_id is None and device_id is None:
        raise InvalidEventPayload(
            "the event has no identity: set userId, anonymousId or context.device.id so Amplitude "
            "knows who was exposed"
        )

    out: dict[str, Any] = {"event_type": EXPOSURE_EVENT}
    if user_id is not None:
        out["user_id"] = user_id
    if device_id is not None:
        out["device_id"] = device_id

    message_id = event.get("messageId")
    if message_id is not None and message_id.__class__ is not str:
        raise InvalidEventPayload(f"messageId must be a string, got {_kind(message_id)}")
    if message_id:
        out["insert_id"] = message_id

    for field in _TIME_FIELDS:
        raw_time = event.get(field)
        if raw_time is not None:
            break
    else:
        raise InvalidEventPayload(
            "the event has no time: set timestamp (or originalTimestamp / receivedAt) to an ISO 8601 "
            "string with a zone"
        )
    try:
        out["time"] = parse_time_ms(raw_time)
    except ValueError as exc:
        raise InvalidEventPayload(f"{field} cannot be read: {exc}") from None

    minimum = _check_min_id_length(min_id_length)
    if user_id is not None:
        problem = _id_problem(user_id, minimum)
        if problem is not None:
            raise ValidationError(f"userId {problem}")
    if device_id is not None:
        problem = _id_problem(device_id, minimum)
        if problem is not None:
            raise ValidationError(f"{device_source} {problem}")
    session_id = _session_id(event)

    out["event_properties"] = event_properties
    traits = event.get("traits")
    if traits.__class__ is dict and traits:
        user_properties = _strip_experiment(traits)
        if user_properties:
            out["user_properties"] = user_properties
    if session_id is not None:
        out["session_id"] = session_id

    if context is not _EMPTY:
        for section, pairs in _CONTEXT_FIELDS:
            sub = context.get(section)
            if sub.__class__ is dict:
                for source_key, target in pairs:
                    value = sub.get(source_key)
                    if value is not None and value != "":
                        out[target] = value
        platform = device.get("type")
        if platform is not None and platform != "":
            if platform.__class__ is str:
                lowered = platform.lower()
                if lowered == "ios":
                    platform = "iOS"
                elif lowered == "android":
                    platform = "Android"
            out["platform"] = platform
        ad_id = device.get("advertisingId")
        if ad_id is None or ad_id == "":
            ad_id = device.get("idfa")
        if ad_id is not None and ad_id != "":
            out["idfa"] = ad_id
            out["adid"] = ad_id
        locale = context.get("locale")
        if locale is not None and locale != "":
            out["language"] = locale
        ip = context.get("ip")
        if ip is not None and ip != "":
            out["ip"] = ip
    return out
