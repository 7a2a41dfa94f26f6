"""Where a browser keeps the identity its analytics events carry: Segment's and Amplitude's cookies.

A server-side exposure joins the user's browser events in Amplitude only if it carries the same ids.
Segment's analytics.js sends ``anonymousId`` (Amplitude's device_id for web events) and keeps it in the
``ajs_anonymous_id`` cookie; Amplitude's Browser SDK keeps its ids in ``AMP_<key[:10]>`` (SDK 2.x) or
``amp_<key[:6]>`` (amplitude-js 8). Cookies come from the client, so every value is parsed defensively:
anything malformed, oversized or unacceptable to Amplitude is ignored (debug log), never raised.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from segment_exposure.counter import Counter
from segment_exposure.identity.ids import browser_id

__all__ = [
    "DEFAULT_COOKIE_SOURCES",
    "MAX_COOKIE_LENGTH",
    "SEGMENT_ANONYMOUS_ID_COOKIE",
    "SEGMENT_USER_ID_COOKIE",
    "amplitude_cookie_names",
    "amplitude_ids",
    "from_cookies",
    "ignored_cookie_values",
    "segment_ids",
]

log = logging.getLogger(__name__)

SEGMENT_ANONYMOUS_ID_COOKIE = "ajs_anonymous_id"
SEGMENT_USER_ID_COOKIE = "ajs_user_id"
#: Browsers keep a cookie to 4096 bytes; a longer value did not come from an SDK.
MAX_COOKIE_LENGTH = 4096
#: The cookie sources ``from_cookies`` reads, in order: the first with an id wins, per id.
DEFAULT_COOKIE_SOURCES: tuple[str, ...] = ("segment", "amplitude")
_SOURCES = frozenset(DEFAULT_COOKIE_SOURCES)

Ids = dict[str, str]

_ignored = Counter()
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def ignored_cookie_values() -> int:
    """How many cookie values (or fields of one) this process ignored as malformed or unacceptable."""
    return _ignored.value


def from_cookies(
    cookies: Mapping[str, str],
    *,
    amplitude_api_key: str | None = None,
    sources: Iterable[str] = DEFAULT_COOKIE_SOURCES,
) -> dict[str, str] | None:
    """``{"user_id": ..., "device_id": ...}`` from a request's cookies (keys only when found), or None.

    ``cookies`` maps names to raw values, as frameworks give them (``request.cookies``,
    ``request.COOKIES``). ``sources`` orders ``"segment"`` (``ajs_anonymous_id`` / ``ajs_user_id``)
    and ``"amplitude"`` (``AMP_<key[:10]>``, then ``amp_<key[:6]>``; only with ``amplitude_api_key``);
    each id comes from the first source that has an acceptable one. Never raises.
    """
    try:
        found: Ids = {}
        for source in sources:
            if source not in _SOURCES:
                log.debug("segment-exposure: unknown identity source %r ignored", source)
                continue
            ids = segment_ids(cookies) if source == "segment" else amplitude_ids(cookies, amplitude_api_key)
            for key, value in ids.items():
                found.setdefault(key, value)
            if len(found) == 2:
                break
        return found or None
    except Exception:  # a cookie mapping that misbehaves must not fail the request
        log.debug("segment-exposure: reading identity cookies failed", exc_info=True)
        return None


def segment_ids(cookies: Mapping[str, str]) -> Ids:
    """The ids in analytics.js's cookies: URL-encoded JSON strings (classic) or plain (analytics-next)."""
    found: Ids = {}
    for key, name in (("device_id", SEGMENT_ANONYMOUS_ID_COOKIE), ("user_id", SEGMENT_USER_ID_COOKIE)):
        raw = cookies.get(name)
        if raw is None or raw == "":
            continue
        value = _segment_value(raw, name)
        if value is not None:
            found[key] = value
    return found


def _segment_value(raw: object, name: str) -> str | None:
    text = _cookie_text(raw, name)
    if text is None:
        return None
    if text[:1] == '"':
        # analytics.js classic: JSON.stringify(id); a JSON null, number or object is no id.
        try:
            text = json.loads(text)
        except ValueError:
            _ignore(name, "not valid JSON")
            return None
    elif text[:1] in ("{", "["):
        _ignore(name, "a JSON object or array, not an id")
        return None
    return _accept(text, name)


def amplitude_cookie_names(api_key: str) -> tuple[str | None, str | None]:
    """``(AMP_<key[:10]>, amp_<key[:6]>)``, each None when the key is too short for it."""
    return (
        "AMP_" + api_key[:10] if len(api_key) >= 10 else None,
        "amp_" + api_key[:6] if len(api_key) >= 6 else None,
    )


def amplitude_ids(cookies: Mapping[str, str], api_key: str | None) -> Ids:
    """The ids in Amplitude's Browser SDK cookies, read as ``AmplitudeCookie.parse`` reads them."""
    if not api_key or not isinstance(api_key, str):
        return {}
    new_name, legacy_name = amplitude_cookie_names(api_key)
    found: Ids = {}
    if new_name is not None:
        raw = cookies.get(new_name)
        if raw:
            for key, value in _amplitude_new(raw, new_name).items():
                found.setdefault(key, value)
    if legacy_name is not None and len(found) < 2:
        raw = cookies.get(legacy_name)
        if raw:
            for key, value in _amplitude_legacy(raw, legacy_name).items():
                found.setdefault(key, value)
    return found


def _amplitude_new(raw: object, name: str) -> Ids:
    # SDK 2.x: base64(encodeURIComponent(JSON.stringify({deviceId, userId, sessionId, ...}))).
    text = _cookie_text(raw, name)
    if text is None:
        return {}
    decoded = _b64_text(text)
    if decoded is None:
        _ignore(name, "not base64 of UTF-8")
        return {}
    try:
        session: Any = json.loads(unquote(decoded, errors="strict"))
    except (ValueError, UnicodeDecodeError):
        _ignore(name, "not URL-encoded JSON")
        return {}
    if not isinstance(session, dict):
        _ignore(name, "not a JSON object")
        return {}
    found: Ids = {}
    for key, field in (("device_id", "deviceId"), ("user_id", "userId")):
        value = session.get(field)
        if value is not None:
            accepted = _accept(value, f"{name}.{field}")
            if accepted is not None:
                found[key] = accepted
    return found


def _amplitude_legacy(raw: object, name: str) -> Ids:
    # amplitude-js 8: deviceId.base64(userId).optOut.sessionId.lastEventTime.eventId.sequenceNumber
    text = _cookie_text(raw, name)
    if text is None:
        return {}
    fields = text.split(".")
    found: Ids = {}
    if fields[0]:
        device_id = _accept(fields[0], f"{name}.deviceId")
        if device_id is not None:
            found["device_id"] = device_id
    if len(fields) > 1 and fields[1]:
        user_id = _b64_text(fields[1])
        if user_id is None:
            _ignore(f"{name}.userId", "not base64 of UTF-8")
        else:
            accepted = _accept(user_id, f"{name}.userId")
            if accepted is not None:
                found["user_id"] = accepted
    return found


def _cookie_text(raw: object, name: str) -> str | None:
    """The cookie's value URL-decoded (as cookie libraries in other languages hand it over)."""
    if not isinstance(raw, str):
        _ignore(name, f"not a string ({type(raw).__name__})")
        return None
    if len(raw) > MAX_COOKIE_LENGTH:
        _ignore(name, f"longer than {MAX_COOKIE_LENGTH} characters")
        return None
    if "%" not in raw:
        return raw
    if _BAD_ESCAPE.search(raw):
        _ignore(name, "not valid URL-encoding")
        return None
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        _ignore(name, "URL-encodes bytes that are not UTF-8")
        return None


def _b64_text(text: str) -> str | None:
    """Decode base64 (standard or URL-safe, padding optional) to UTF-8 text; None if it is not that."""
    data = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _accept(value: object, name: str) -> str | None:
    accepted, why = browser_id(value)
    if accepted is None:
        _ignore(name, why or "unacceptable")
    return accepted


def _ignore(name: str, why: str) -> None:
    # The value itself is never logged: it came from the client and may be anything.
    _ignored.incr()
    log.debug("segment-exposure: cookie %s ignored: %s", name, why)
