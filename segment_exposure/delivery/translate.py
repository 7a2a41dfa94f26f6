"""Segment ``$exposure`` track events into Amplitude HTTP API events.

The reference is Segment's own Amplitude (Actions) destination, "Track Calls" preset (``logEventV2`` with
its default mapping), run side by side with this module in tests/test_segment_parity.py. Everything it
sends is sent the same way here, except the deliberate deviations listed in the README (insert_id,
``[Experiment]`` traits, merged ``$set``, ``context.device.id: ""``, lenient time reading, repairs instead of
refusals). The module is pure (no I/O; a cache of parsed user agents) so the webhook, the Lambda, the CLI
and the JavaScript Segment Function can all agree with it; the golden vectors in ``tests/vectors/translate``
pin every rule below.

Refusals (the first failing rule decides the error); nothing else refuses an event:

1. The event must be a JSON object (a ``dict``), else ``InvalidEventPayload``.
2. ``type`` must be ``"track"`` and ``event`` one of ``exposure_events`` (default ``("$exposure",)``), else
   ``EventNotSupported``. ``event_type`` is always ``"$exposure"``: Amplitude only counts that exact name,
   so an alias configured in ``exposure_events`` is renamed on the way through.
3. ``properties.flag_key`` must be a non-empty string (else it is not an exposure: ``InvalidEventPayload``).
   Properties otherwise pass through as given, ``variant`` and ``experiment_key`` included.
4. Identity: ``user_id`` from ``userId``; ``device_id`` from ``context.device.id``, else ``anonymousId``.
   Numbers and booleans become their JavaScript string form (as Segment's validator makes them); null,
   empty strings and objects count as absent. No id at all: ``InvalidEventPayload``.
5. ``ValidationError`` for ids Amplitude refuses: on :data:`INVALID_IDS` (compared case-insensitively) or
   shorter than ``min_id_length`` (default 5).

Mapped like Segment's defaults (see :mod:`segment_exposure.delivery.coerce` for how odd values are read):
``insert_id`` (``messageId``: ours, Segment sends none), ``time`` (``timestamp``; when it is missing or
unreadable ``originalTimestamp``, then ``receivedAt``; none readable: no ``time``), ``session_id``
(``integrations["Actions Amplitude"].session_id``: digits as a number, a date as its epoch ms, a fraction
cut; left out when nothing meaningful remains), ``app_version``, ``platform`` (``context.device.type`` with
the first ``ios``/``android`` in any case replaced by ``iOS``/``Android``; ``"Web"`` for analytics.js
without a device type), ``os_name``, ``os_version``, ``device_brand``, ``device_manufacturer``,
``device_model``, ``carrier``, ``country``, ``region``, ``city``, ``location_lat``/``location_lng``
(numbers, numeric strings read), ``language`` (``context.locale``), ``ip`` (strings only), ``idfa`` and
``adid`` (``context.device.advertisingId``, else ``context.device.idfa``), ``idfv`` (``context.device.id``),
``library`` (``context.library.name``), ``user_properties`` (``traits``, plus ``$setOnce``
{initial_referrer, initial_utm_*} and ``$set`` {referrer, utm_*} from ``context.page.referrer`` and
``context.campaign``, merged into a ``$set``/``$setOnce`` the traits carry). With the ``useragent`` extra,
``context.userAgent`` (and ``userAgentData``) fill ``os_name``, ``os_version``, ``device_manufacturer``,
``device_model`` and ``device_type`` where the context gives none (:mod:`.useragent`).

Repairs, never refusals: a secondary field Segment would coerce is coerced; one that cannot be read is left
out; lone surrogates become U+FFFD and NaN/Infinity become null, so the result always encodes as strict
JSON in UTF-8. Each repair is logged at DEBUG and can be collected with ``repairs=[]``.

``[Experiment]`` user properties: Amplitude sets ``[Experiment] <flag_key>`` itself from the exposure; one set
by hand corrupts the experiment. Such keys (any case) are *stripped* from ``user_properties`` (also inside
``$set``-style operation objects) rather than rejecting the event.

The result may share nested values (e.g. a nested property object) with the input; the input itself is
never modified.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection
from typing import Any

from segment_exposure.delivery.coerce import read_number, read_session_id, read_string, read_time_ms
from segment_exposure.delivery.errors import EventNotSupported, InvalidEventPayload, ValidationError
from segment_exposure.delivery.useragent import user_agent_fields
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
    ("location", (("country", "country"), ("region", "region"), ("city", "city"))),
    ("library", (("name", "library"),)),
)
_CAMPAIGN_FIELDS = (
    ("source", "utm_source"),
    ("medium", "utm_medium"),
    ("name", "utm_campaign"),
    ("term", "utm_term"),
    ("content", "utm_content"),
)
_INITIAL = {name: "initial_" + name for name in ("referrer", *(n for _, n in _CAMPAIGN_FIELDS))}
_IOS = re.compile("ios", re.IGNORECASE | re.ASCII)  # ASCII case only, as JavaScript's /ios/i
_ANDROID = re.compile("android", re.IGNORECASE | re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")
_log = logging.getLogger("segment_exposure.translate")  # the documented name, kept when the module moved

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


def _unsafe(obj: dict[Any, Any] | list[Any]) -> bool:
    """True when ``obj`` holds a lone surrogate or NaN/Infinity, which strict JSON in UTF-8 cannot carry.

    A walk, not a trial ``json.dumps``: it skips ASCII strings at once and costs a third as much.
    """
    items: Any = obj.items() if obj.__class__ is dict else enumerate(obj)
    for key, value in items:
        if key.__class__ is str and not key.isascii() and _SURROGATE.search(key):
            return True
        cls = value.__class__
        if cls is str:
            if not value.isascii() and _SURROGATE.search(value):
                return True
        elif cls is float:
            if value - value:  # inf - inf and nan - nan are NaN, which is truthy; finite gives 0.0
                return True
        elif (cls is dict or cls is list) and _unsafe(value):
            return True
    return False


def _unsafe_event(out: dict[str, Any]) -> bool:
    """:func:`_unsafe` for the translated event: its own keys are ASCII, its numbers already finite."""
    for value in out.values():
        cls = value.__class__
        if cls is str:
            if not value.isascii() and _SURROGATE.search(value):
                return True
        elif cls is dict and value and _unsafe(value):
            return True
    return False


def _scrub(value: Any) -> Any:
    """``value`` with lone surrogates as U+FFFD and NaN/infinities as null (as JavaScript writes them)."""
    cls = value.__class__
    if cls is str:
        return _SURROGATE.sub("\ufffd", value)
    if cls is float:
        return value if math.isfinite(value) else None
    if cls is dict:
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if cls is list:
        return [_scrub(v) for v in value]
    return value


def _identity_value(value: Any, field: str, notes: list[str]) -> str | None:
    """An id as Segment reads it: numbers and booleans in their string form; null, "" and objects absent."""
    if value.__class__ is str:
        return value or None
    if value is None:
        return None
    text = read_string(value)
    if text is None:
        notes.append(f"{field} left out: {_kind(value)} is not an id")
        return None
    notes.append(f"{field} {_show(value)} sent as the string {_show(text)}")
    return text or None


def _add_string(out: dict[str, Any], target: str, value: Any, where: str, notes: list[str]) -> None:
    if value.__class__ is str:
        if value:
            out[target] = value
        return
    if value is None:
        return
    text = read_string(value)
    if text is None:
        notes.append(f"{where} left out: {_kind(value)} where a string belongs")
    elif text:
        out[target] = text


def _add_context(
    out: dict[str, Any],
    context: dict[str, Any],
    device: dict[str, Any],
    notes: list[str],
    user_agent_parsing: bool,
) -> None:
    """Segment's default context mapping: strings as given, numbers/booleans as strings, others left out."""
    user_agent = context.get("userAgent")
    if user_agent_parsing and user_agent.__class__ is str and user_agent:
        ua_data = context.get("userAgentData")
        if ua_data.__class__ is dict:
            model = read_string(ua_data.get("model"))
            out.update(user_agent_fields(user_agent, model, read_string(ua_data.get("platformVersion"))))
        else:
            out.update(user_agent_fields(user_agent))
    for section, pairs in _CONTEXT_FIELDS:
        sub = device if section == "device" else context.get(section)
        if sub.__class__ is dict:
            for source_key, target in pairs:
                value = sub.get(source_key)
                if value.__class__ is str:  # the common case, inline
                    if value:
                        out[target] = value
                elif value is not None:
                    _add_string(out, target, value, f"context.{section}.{source_key}", notes)
    location = context.get("location")
    if location.__class__ is dict:
        for source_key, target in (("latitude", "location_lat"), ("longitude", "location_lng")):
            value = location.get(source_key)
            if value is None or value == "":
                continue
            if (value.__class__ is float or value.__class__ is int) and value - value == 0:  # finite
                out[target] = value
                continue
            number = read_number(value)
            if number is None:
                notes.append(f"context.location.{source_key} {_show(value)} left out: not a number")
            else:
                if number.__class__ is not value.__class__:
                    notes.append(f"context.location.{source_key} {_show(value)} read as the number {number}")
                out[target] = number
    platform = device.get("type")
    if platform is not None:
        _add_string(out, "platform", platform, "context.device.type", notes)
    platform = out.get("platform")
    if platform is not None:
        out["platform"] = _ANDROID.sub("Android", _IOS.sub("iOS", platform, 1), 1)
    elif out.get("library") == "analytics.js":
        out["platform"] = "Web"
    ad_id = device.get("advertisingId")
    if ad_id is None:  # as in Segment, "" counts as given (and then leaves idfa/adid out)
        ad_id = device.get("idfa")
    if ad_id is not None:
        _add_string(out, "idfa", ad_id, "context.device.advertisingId", notes)
        if "idfa" in out:
            out["adid"] = out["idfa"]
    locale = context.get("locale")
    if locale is not None:
        _add_string(out, "language", locale, "context.locale", notes)
    ip = context.get("ip")
    if ip.__class__ is str:
        if ip:
            out["ip"] = ip
    elif ip is not None:
        notes.append(f"context.ip {_show(ip)} left out: an IP address is a string")


def _utm_properties(context: dict[str, Any], notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Segment's ``$setOnce`` {initial_referrer, initial_utm_*} and ``$set`` {referrer, utm_*} defaults."""
    set_once: dict[str, Any] = {}
    always: dict[str, Any] = {}
    page = context.get("page")
    campaign = context.get("campaign")
    sources: list[tuple[dict[str, Any], str, str, str]] = []
    if page.__class__ is dict:
        sources.append((page, "referrer", "referrer", "page"))
    if campaign.__class__ is dict:
        sources.extend((campaign, key, name, "campaign") for key, name in _CAMPAIGN_FIELDS)
    for section, source_key, name, where in sources:
        value = section.get(source_key)
        if value is None:
            continue
        text = value if value.__class__ is str else read_string(value)
        if text is None:
            notes.append(f"context.{where}.{source_key} left out: {_kind(value)} where a string belongs")
            continue
        set_once[_INITIAL[name]] = text
        always[name] = text
    if not any(always.values()):  # Segment sends neither when every value is empty
        return _EMPTY, _EMPTY
    return set_once, always


def _user_properties(
    event: dict[str, Any], context: dict[str, Any], notes: list[str]
) -> dict[str, Any] | None:
    """``traits`` (also ``{}``, as Segment sends it) with the utm/referrer operations; None if neither."""
    traits = event.get("traits")
    user_properties: dict[str, Any] | None = None
    if traits.__class__ is dict:
        user_properties = _strip_experiment(traits)
    elif traits is not None:
        notes.append(f"traits left out: {_kind(traits)}, not an object")
    if context:
        set_once, always = _utm_properties(context, notes)
        if always:
            user_properties = dict(user_properties or _EMPTY)
            for operation, values in (("$setOnce", set_once), ("$set", always)):
                given = user_properties.get(operation)
                # Segment replaces a $set / $setOnce the traits carry; merging keeps the sender's values.
                user_properties[operation] = {**given, **values} if given.__class__ is dict else values
    return user_properties


def _time(event: dict[str, Any], notes: list[str]) -> int | None:
    """``timestamp`` read as Segment reads it; when missing or unreadable, originalTimestamp, receivedAt."""
    for field in _TIME_FIELDS:
        raw = event.get(field)
        if raw is None:
            continue
        ms = read_time_ms(raw)
        if ms is not None:
            return ms
        notes.append(f"{field} {_show(raw)} cannot be read as a time")
    notes.append("no readable time: Amplitude will use the upload time")
    return None


def _session_id(event: dict[str, Any], notes: list[str]) -> int | None:
    """``integrations["Actions Amplitude"].session_id`` converted as Segment converts it."""
    integrations = event.get("integrations")
    if integrations.__class__ is not dict:
        return None
    settings = integrations.get(_SEGMENT_INTEGRATION)
    if settings.__class__ is not dict:
        return None
    raw = settings.get("session_id")
    if raw is None:
        return None
    session_id = read_session_id(raw)
    if session_id is None:
        notes.append(f"session_id {_show(raw)} left out: no session start can be read from it")
    elif raw.__class__ is not int and not (raw.__class__ is str and raw.isdigit()):
        notes.append(f"session_id {_show(raw)} read as {session_id}")
    return session_id


def to_amplitude_event(
    event: Any,
    *,
    min_id_length: int | None = None,
    exposure_events: Collection[str] = DEFAULT_EXPOSURE_EVENTS,
    user_agent_parsing: bool = True,
    repairs: list[str] | None = None,
) -> dict[str, Any]:
    """Translate one Segment track event into the Amplitude ``$exposure`` event to ingest.

    Raises ``EventNotSupported`` (not a track or not an exposure), ``InvalidEventPayload`` (no flag_key or
    no identity) or ``ValidationError`` (ids Amplitude refuses); none of them is worth retrying. Odd
    secondary fields are repaired or left out instead: each repair is logged at DEBUG on this module's
    logger and, when ``repairs`` is a list, appended to it. ``min_id_length`` must match the
    ``options.min_id_length`` sent to Amplitude (None means Amplitude's default, 5).
    ``user_agent_parsing`` is Segment's "User Agent Parsing" setting (on by default, needs the ``useragent``
    extra); the Segment Function cannot parse user agents, so its output equals this with it off.
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

    notes: list[str] = []
    context = event.get("context")
    if context.__class__ is not dict:
        if context is not None:
            notes.append(f"context left out: {_kind(context)}, not an object")
        context = _EMPTY
    device = context.get("device")
    if device.__class__ is not dict:
        device = _EMPTY
    user_id = _identity_value(event.get("userId"), "userId", notes)
    device_source = "context.device.id"
    device_id = _identity_value(device.get("id"), device_source, notes)
    if device_id is None:  # also for "": Segment would send no device_id at all (a deliberate deviation)
        device_source = "anonymousId"
        device_id = _identity_value(event.get("anonymousId"), device_source, notes)
    if user_id is None and device_id is None:
        raise InvalidEventPayload(
            "the event has no identity: set userId, anonymousId or context.device.id so Amplitude "
            "knows who was exposed"
        )
    minimum = _check_min_id_length(min_id_length)
    if user_id is not None:
        problem = _id_problem(user_id, minimum)
        if problem is not None:
            raise ValidationError(f"userId {problem}")
    if device_id is not None:
        problem = _id_problem(device_id, minimum)
        if problem is not None:
            raise ValidationError(f"{device_source} {problem}")

    out: dict[str, Any] = {"event_type": EXPOSURE_EVENT}
    if user_id is not None:
        out["user_id"] = user_id
    if device_id is not None:
        out["device_id"] = device_id
    message_id = event.get("messageId")
    if message_id.__class__ is str:
        if message_id:
            out["insert_id"] = message_id
    elif message_id is not None:
        insert_id = read_string(message_id) if message_id.__class__ is not bool else None
        if insert_id is None:
            notes.append(f"messageId {_show(message_id)} is not an id: no insert_id")
        else:
            notes.append(f"messageId {_show(message_id)} sent as the insert_id {_show(insert_id)}")
            out["insert_id"] = insert_id
    time_ms = _time(event, notes)
    if time_ms is not None:
        out["time"] = time_ms
    out["event_properties"] = dict(props)
    user_properties = _user_properties(event, context, notes)
    if user_properties is not None:
        out["user_properties"] = user_properties
    session_id = _session_id(event, notes)
    if session_id is not None:
        out["session_id"] = session_id
    if context:
        _add_context(out, context, device, notes, user_agent_parsing)

    try:
        if _unsafe_event(
            out
        ):  # NaN / Infinity (Python's json reads them) or a lone surrogate (half an emoji)
            out = _scrub(out)
            notes.append(
                "lone surrogates replaced by U+FFFD and NaN/Infinity by null: the event is valid JSON"
            )
    except RecursionError:
        raise InvalidEventPayload(
            "the event is nested too deeply to send as JSON (Amplitude accepts at most 40 levels)"
        ) from None
    if notes:
        # The notes quote the odd values: no lone surrogate may reach a log handler that writes UTF-8.
        notes = [_SURROGATE.sub("\ufffd", note) for note in notes]
        if repairs is not None:
            repairs.extend(notes)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "exposure %s repaired: %s", _SURROGATE.sub("\ufffd", _show(message_id)), "; ".join(notes)
            )
    return out
