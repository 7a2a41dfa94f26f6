"""What every integration reads from a request: the identity (in a configurable order) and its context.

One implementation for Flask, Django and ASGI, so a request from the same browser gives the same
exposure in each: ids from the logged-in user and the browser's analytics cookies, and the Segment
``context`` fields (``userAgent``, ``ip``, ``locale``) a browser event of the same user would carry.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segment_exposure.identity.browser_cookies import from_cookies
from segment_exposure.identity.ids import browser_id

__all__ = [
    "DEFAULT_IDENTITY_SOURCES",
    "IDENTITY_SOURCES",
    "LEGACY_DEVICE_ID_COOKIE",
    "MAX_USER_AGENT_LENGTH",
    "RequestIdentity",
    "locale_from_accept_language",
]

log = logging.getLogger(__name__)

#: The cookie the integrations read (and with ``SET_DEVICE_ID_COOKIE``, set) before 0.2: still read, last.
LEGACY_DEVICE_ID_COOKIE = "amp_device_id"
#: Every identity source, by name: the framework's logged-in user (user_id only), Segment's
#: analytics.js cookies, Amplitude's Browser SDK cookies, and the integration's own device-id cookie.
IDENTITY_SOURCES = ("user", "segment", "amplitude", "device_id_cookie")
#: The default order: each id comes from the first source that has an acceptable one.
DEFAULT_IDENTITY_SOURCES = IDENTITY_SOURCES
#: A longer User-Agent header is not sent: no browser sends one, and it would bloat every exposure.
MAX_USER_AGENT_LENGTH = 1024
_MAX_ACCEPT_LANGUAGE_LENGTH = 1024
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def valid_sources(value: object) -> bool:
    """True for a non-empty list or tuple of distinct known source names."""
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(s, str) and s in IDENTITY_SOURCES for s in value)
        and len(set(value)) == len(value)
    )


@dataclass(frozen=True)
class RequestIdentity:
    """How an integration reads identity and context from a request (built once, from its options)."""

    sources: tuple[str, ...] = DEFAULT_IDENTITY_SOURCES
    amplitude_api_key: str | None = None
    device_id_cookie: str = LEGACY_DEVICE_ID_COOKIE
    send_user_agent: bool = True
    send_ip: bool = True
    send_locale: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RequestIdentity:
        """From integration options (already checked): ``IDENTITY_SOURCES``, ``AMPLITUDE_API_KEY`` ..."""

        def flag(name: str) -> bool:
            value = options.get(name)
            return True if value is None else bool(value)

        return cls(
            sources=tuple(options.get("IDENTITY_SOURCES") or DEFAULT_IDENTITY_SOURCES),
            amplitude_api_key=options.get("AMPLITUDE_API_KEY") or None,
            device_id_cookie=options.get("DEVICE_ID_COOKIE") or LEGACY_DEVICE_ID_COOKIE,
            send_user_agent=flag("SEND_USER_AGENT"),
            send_ip=flag("SEND_IP"),
            send_locale=flag("SEND_LOCALE"),
        )

    def __repr__(self) -> str:  # the Amplitude key stays out of reprs and logs
        key = "set" if self.amplitude_api_key else None
        return f"RequestIdentity(sources={self.sources!r}, amplitude_api_key={key!r})"

    # -- identity ------------------------------------------------------------------------------------

    def ids(self, cookies: Mapping[str, str], logged_in_user_id: str | None = None) -> dict[str, str]:
        """``user_id`` and ``device_id``, each from the first source in ``sources`` that has one.

        The ``"user"`` source is ``logged_in_user_id`` (the framework's user) and gives user_id only.
        """
        found: dict[str, str] = {}
        for source in self.sources:
            if source == "user":
                if logged_in_user_id is not None:
                    found.setdefault("user_id", logged_in_user_id)
            elif source == "device_id_cookie":
                if "device_id" not in found:
                    device_id = self.legacy_device_id(cookies)
                    if device_id is not None:
                        found["device_id"] = device_id
            else:
                ids = from_cookies(cookies, amplitude_api_key=self.amplitude_api_key, sources=(source,))
                for key, value in (ids or {}).items():
                    found.setdefault(key, value)
        return found

    def legacy_device_id(self, cookies: Mapping[str, str]) -> str | None:
        """The integration's own device-id cookie (``DEVICE_ID_COOKIE``), if it holds an acceptable id."""
        try:
            raw = cookies.get(self.device_id_cookie)
        except Exception:
            return None
        if not raw:
            return None
        device_id, why = browser_id(raw)
        if device_id is None:
            log.debug("segment-exposure: cookie %s ignored: %s", self.device_id_cookie, why)
        return device_id

    # -- context -------------------------------------------------------------------------------------

    def context(
        self, *, user_agent: str | None, ip: str | None, accept_language: str | None
    ) -> dict[str, str] | None:
        """The Segment context a browser event of this request would carry, minus what is switched off."""
        context: dict[str, str] = {}
        if self.send_user_agent and user_agent:
            if len(user_agent) <= MAX_USER_AGENT_LENGTH and user_agent.isprintable():
                context["userAgent"] = user_agent
            else:
                log.debug("segment-exposure: User-Agent header not sent: oversized or control characters")
        if self.send_ip and ip:
            address = _ip(ip)
            if address is not None:
                context["ip"] = address
        if self.send_locale and accept_language:
            locale = locale_from_accept_language(accept_language)
            if locale is not None:
                context["locale"] = locale
        return context or None


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        log.debug("segment-exposure: client address is not an IP address; context.ip not sent")
        return None


def locale_from_accept_language(header: str) -> str | None:
    """The preferred language tag of an ``Accept-Language`` header (``"en-US"``), as ``context.locale``.

    The highest q wins, the first of equals; ``*`` and malformed entries are skipped.
    """
    if len(header) > _MAX_ACCEPT_LANGUAGE_LENGTH:
        return None
    best: tuple[float, str] | None = None
    for entry in header.split(","):
        tag, _, params = entry.strip().partition(";")
        tag = tag.strip()
        if not _LANGUAGE_TAG.fullmatch(tag):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = -1.0
        if 0 < q <= 1 and (best is None or q > best[0]):
            best = (q, tag)
    return best[1] if best else None
