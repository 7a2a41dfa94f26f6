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
5. ``ValidationError`` for ids Amplitude refuses: on ``INVALID_IDS`` (compared case-insensitively) or
   shorter than ``min_id_length`` (default 5).

Mapped like Segment's defaults (see ``segment_exposure.delivery.coerce`` for how odd values are read):
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
``device_model`` and ``device_type`` where the context gives none (``.useragent``).

Repairs, never refusals: a secondary field Segment would coerce is coerced; one that cannot be read is left
out; lone surrogates become U+FFFD and NaN/Infinity become null, so the result always encodes as strict
JSON in UTF-8. Each repair is logged at DEBUG and can be collected with ``repairs=[]``.

RudderStack: events RudderStack delivers are mapped as RudderStack's own Amplitude destination maps them
(``source="auto"`` tells them apart, :func:`segment_exposure.delivery.sources.detect_source`; ``"segment"`` or
``"rudderstack"`` forces one mapping). Where the two differ is one table,
:data:`segment_exposure.delivery.sources.SOURCE_DIFFERENCES`: device_id (``anonymousId`` first), session_id
(``context.sessionId``), ip (``context.ip``, else ``request_ip``), platform ("Web" for the web channel),
library ("rudderstack"), and the user agent (os_name/os_version on the web channel only).

``[Experiment]`` user properties: Amplitude sets ``[Experiment] <flag_key>`` itself from the exposure; one set
by hand corrupts the experiment. Such keys (any case) are *stripped* from ``user_properties`` (also inside
``$set``-style operation objects) rather than rejecting the event.

The result may share nested values (e.g. a nested property object) with the input; the input itself is
never modified.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from typing import Any

from segment_exposure.delivery.coerce import (
    kind_of,
    parse_time_ms,
    read_number,
    read_session_id,
    read_string,
    read_time_ms,
    show,
)
from segment_exposure.delivery.errors import EventNotSupported, InvalidEventPayload, ValidationError
from segment_exposure.delivery.sanitize import (
    EXPERIMENT_PROPERTY_PREFIX,
    SURROGATE,
    scrub,
    strip_experiment,
    unsafe_event,
)
from segment_exposure.delivery.sources import RUDDERSTACK, check_source, detect_source
from segment_exposure.delivery.useragent import user_agent_fields
from segment_exposure.exposure import EXPOSURE_EVENT
from segment_exposure.identity.id_rules import (
    DEFAULT_MIN_ID_LENGTH,
    INVALID_IDS,
    effective_min_id_length,
    id_problem,
    id_problem_for_minimum,
)

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


#: Event names treated as exposures unless the caller says otherwise.
DEFAULT_EXPOSURE_EVENTS: tuple[str, ...] = (EXPOSURE_EVENT,)


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
_RUDDERSTACK_LIBRARY = "rudderstack"  # what RudderStack's Amplitude destination sends as ``library``
_RUDDERSTACK_UA_FIELDS = frozenset({"os_name", "os_version"})  # all it derives from a (web) user agent
_MAX_SAFE_INTEGER = 2**53 - 1
_log = logging.getLogger(__name__)


def validate_id(value: str, *, field: str = "user_id", min_id_length: int | None = None) -> str:
    """Return ``value`` if Amplitude accepts it as an id, else raise ``ValidationError`` naming ``field``."""
    problem = id_problem(value, min_id_length=min_id_length)
    if problem is not None:
        raise ValidationError(f"{field} {problem}")
    return value


def _identity_value(value: Any, field: str, notes: list[str]) -> str | None:
    """An id as Segment reads it: numbers and booleans in their string form; null, "" and objects absent."""
    if value.__class__ is str:
        return value or None
    if value is None:
        return None
    text = read_string(value)
    if text is None:
        notes.append(f"{field} left out: {kind_of(value)} is not an id")
        return None
    notes.append(f"{field} {show(value)} sent as the string {show(text)}")
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
        notes.append(f"{where} left out: {kind_of(value)} where a string belongs")
    elif text:
        out[target] = text


def _add_context(
    out: dict[str, Any],
    context: dict[str, Any],
    device: dict[str, Any],
    notes: list[str],
    user_agent_parsing: bool,
    rudderstack: dict[str, Any] | None,
) -> None:
    """Segment's default context mapping: strings as given, numbers/booleans as strings, others left out.

    ``rudderstack`` is the event when RudderStack's mapping applies (``None`` for Segment's): it changes the
    user-agent fields, ip, platform and library (``sources.SOURCE_DIFFERENCES``).
    """
    web = rudderstack is not None and rudderstack.get("channel") == "web"
    user_agent = context.get("userAgent")
    if user_agent_parsing and user_agent.__class__ is str and user_agent and (rudderstack is None or web):
        ua_data = context.get("userAgentData")
        if ua_data.__class__ is dict:
            model = read_string(ua_data.get("model"))
            derived = user_agent_fields(user_agent, model, read_string(ua_data.get("platformVersion")))
        else:
            derived = user_agent_fields(user_agent)
        if rudderstack is not None:
            derived = tuple(pair for pair in derived if pair[0] in _RUDDERSTACK_UA_FIELDS)
        out.update(derived)
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
                notes.append(f"context.location.{source_key} {show(value)} left out: not a number")
            else:
                if number.__class__ is not value.__class__:
                    notes.append(f"context.location.{source_key} {show(value)} read as the number {number}")
                out[target] = number
    platform = device.get("type")
    if platform is not None:
        _add_string(out, "platform", platform, "context.device.type", notes)
    platform = out.get("platform")
    if web:
        out["platform"] = "Web"
    elif platform is not None:
        out["platform"] = _ANDROID.sub("Android", _IOS.sub("iOS", platform, 1), 1)
    elif rudderstack is None and out.get("library") == "analytics.js":
        out["platform"] = "Web"
    if rudderstack is not None:
        out["library"] = _RUDDERSTACK_LIBRARY
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
        notes.append(f"context.ip {show(ip)} left out: an IP address is a string")
    if rudderstack is not None and "ip" not in out:
        _add_request_ip(out, rudderstack, notes)


def _add_request_ip(out: dict[str, Any], event: dict[str, Any], notes: list[str]) -> None:
    """RudderStack's fallback when ``context.ip`` gives none: the IP its data plane saw (``request_ip``)."""
    ip = event.get("request_ip")
    if ip.__class__ is str:
        if ip:
            out["ip"] = ip
    elif ip is not None:
        notes.append(f"request_ip {show(ip)} left out: an IP address is a string")


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
            notes.append(f"context.{where}.{source_key} left out: {kind_of(value)} where a string belongs")
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
        user_properties = strip_experiment(traits)
    elif traits is not None:
        notes.append(f"traits left out: {kind_of(traits)}, not an object")
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
        notes.append(f"{field} {show(raw)} cannot be read as a time")
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
        notes.append(f"session_id {show(raw)} left out: no session start can be read from it")
    elif raw.__class__ is not int and not (raw.__class__ is str and raw.isdigit()):
        notes.append(f"session_id {show(raw)} read as {session_id}")
    return session_id


def _rudderstack_session_id(context: dict[str, Any], notes: list[str]) -> int | None:
    """``context.sessionId`` (RudderStack's SDKs: the session start in ms) if a positive whole number."""
    raw = context.get("sessionId")
    if raw is None:
        return None
    value = raw
    digits = raw.__class__ is str and raw.isdigit() and raw.isascii() and len(raw) <= 16
    if digits or (raw.__class__ is float and raw.is_integer()):
        value = int(raw)
    if value.__class__ is int and 0 < value <= _MAX_SAFE_INTEGER:
        if value is not raw:
            notes.append(f"context.sessionId {show(raw)} read as {value}")
        return int(value)
    if raw != -1:  # -1 is RudderStack's "no session": nothing to repair
        notes.append(f"context.sessionId {show(raw)} left out: not a positive whole number")
    return None


def to_amplitude_event(
    event: Any,
    *,
    min_id_length: int | None = None,
    exposure_events: Collection[str] = DEFAULT_EXPOSURE_EVENTS,
    user_agent_parsing: bool = True,
    source: str = "auto",
    repairs: list[str] | None = None,
) -> dict[str, Any]:
    """Translate one Segment (or RudderStack) track event into the Amplitude ``$exposure`` event to ingest.

    Raises ``EventNotSupported`` (not a track or not an exposure), ``InvalidEventPayload`` (no flag_key or
    no identity) or ``ValidationError`` (ids Amplitude refuses); none of them is worth retrying. Odd
    secondary fields are repaired or left out instead: each repair is logged at DEBUG on this module's
    logger and, when ``repairs`` is a list, appended to it. ``min_id_length`` must match the
    ``options.min_id_length`` sent to Amplitude (None means Amplitude's default, 5).
    ``user_agent_parsing`` is Segment's "User Agent Parsing" setting (on by default, needs the ``useragent``
    extra, which the ``server`` extra includes). ``source`` picks the mapping: ``"auto"`` (RudderStack's for
    events RudderStack delivered, see :mod:`segment_exposure.delivery.sources`), ``"segment"`` or
    ``"rudderstack"``; any other value raises ``ValueError``.
    """
    check_source(source)
    if not isinstance(event, dict):
        raise InvalidEventPayload(
            f"expected a Segment event as a JSON object, got {kind_of(event)}: pass one parsed event"
        )
    kind = event.get("type")
    if kind != "track":
        raise EventNotSupported(
            f"only track events are exposures, this is type {show(kind)}: route only track events here"
        )
    if isinstance(exposure_events, str):
        exposure_events = (exposure_events,)
    name = event.get("event")
    if name.__class__ is not str or name not in exposure_events:
        expected = show(sorted(exposure_events))
        raise EventNotSupported(
            f"event {show(name)} is not an exposure event (expected one of {expected}); "
            "filter other events out, or add the name to exposure_events"
        )

    props = event.get("properties")
    if props.__class__ is not dict:
        raise InvalidEventPayload(
            f"properties is {kind_of(props)}, so there is no flag_key: an exposure needs "
            'properties {"flag_key": ..., "variant": ...}'
        )
    flag_key = props.get("flag_key")
    if flag_key.__class__ is not str or not flag_key:
        raise InvalidEventPayload(
            f"properties.flag_key is {show(flag_key)}: an exposure needs the flag key as a non-empty string"
        )

    notes: list[str] = []
    context = event.get("context")
    if context.__class__ is not dict:
        if context is not None:
            notes.append(f"context left out: {kind_of(context)}, not an object")
        context = _EMPTY
    device = context.get("device")
    if device.__class__ is not dict:
        device = _EMPTY
    rudderstack = event if (source if source != "auto" else detect_source(event)) == RUDDERSTACK else None
    user_id = _identity_value(event.get("userId"), "userId", notes)
    # Segment's destination reads context.device.id first, RudderStack's anonymousId; each falls back on the
    # other (also for "": Segment would send no device_id at all, a deliberate deviation).
    sources = (("anonymousId", event), ("context.device.id", device))
    if rudderstack is None:
        sources = sources[::-1]
    device_source, device_id = "anonymousId", None
    for device_source, holder in sources:
        device_id = _identity_value(holder.get(device_source.rsplit(".", 1)[-1]), device_source, notes)
        if device_id is not None:
            break
    if user_id is None and device_id is None:
        raise InvalidEventPayload(
            "the event has no identity: set userId, anonymousId or context.device.id so Amplitude "
            "knows who was exposed"
        )
    minimum = effective_min_id_length(min_id_length)
    if user_id is not None:
        problem = id_problem_for_minimum(user_id, minimum)
        if problem is not None:
            raise ValidationError(f"userId {problem}")
    if device_id is not None:
        problem = id_problem_for_minimum(device_id, minimum)
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
            notes.append(f"messageId {show(message_id)} is not an id: no insert_id")
        else:
            notes.append(f"messageId {show(message_id)} sent as the insert_id {show(insert_id)}")
            out["insert_id"] = insert_id
    time_ms = _time(event, notes)
    if time_ms is not None:
        out["time"] = time_ms
    out["event_properties"] = dict(props)
    user_properties = _user_properties(event, context, notes)
    if user_properties is not None:
        out["user_properties"] = user_properties
    session_id = _session_id(event, notes) if rudderstack is None else _rudderstack_session_id(context, notes)
    if session_id is not None:
        out["session_id"] = session_id
    if context:
        _add_context(out, context, device, notes, user_agent_parsing, rudderstack)
    elif rudderstack is not None:
        _add_request_ip(out, rudderstack, notes)
        out["library"] = _RUDDERSTACK_LIBRARY
        if rudderstack.get("channel") == "web":
            out["platform"] = "Web"

    try:
        if unsafe_event(out):  # NaN / Infinity (Python's json reads them) or a lone surrogate (half an emoji)
            out = scrub(out)
            notes.append(
                "lone surrogates replaced by U+FFFD and NaN/Infinity by null: the event is valid JSON"
            )
    except RecursionError:
        raise InvalidEventPayload(
            "the event is nested too deeply to send as JSON (Amplitude accepts at most 40 levels)"
        ) from None
    if notes:
        # The notes quote the odd values: no lone surrogate may reach a log handler that writes UTF-8.
        notes = [SURROGATE.sub("\ufffd", note) for note in notes]
        if repairs is not None:
            repairs.extend(notes)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "exposure %s repaired: %s", SURROGATE.sub("\ufffd", show(message_id)), "; ".join(notes)
            )
    return out
