"""User-agent parsing as Segment's Amplitude (Actions) destination does it (the ``useragent`` extra).

Why: for web traffic Segment's destination fills ``os_name``, ``os_version``, ``device_manufacturer``,
``device_model`` and ``device_type`` from ``context.userAgent`` with ``@amplitude/ua-parser-js``. The extra
installs ``ua-parser-py``, a Python port of the same parser family (ua-parser-js), which agreed with
Segment's parser on 97% of fields over the reference corpus; the maintained uap-python (``ua-parser``)
agreed on far fewer (different names, no device type). Without the extra those fields are not derived.

Segment's rule, kept here: os_name = os.name or browser.name; os_version = userAgentData.platformVersion or
browser.major; device_manufacturer = device.vendor; device_model = userAgentData.model or device.model or
os.name; device_type = device.type. Parses are cached by user-agent string (one site sees few of them).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

__all__ = ["available", "parse_user_agent", "user_agent_fields"]

_log = logging.getLogger(__name__)
_CACHE_SIZE = 4096
_MAX_UA_LENGTH = 350  # @amplitude/ua-parser-js reads at most this much (leading white space cut first)
_missing_logged = False


def available() -> bool:
    """True when the ``useragent`` extra (ua-parser-py) is installed."""
    return _parser() is not None


@lru_cache(maxsize=1)
def _parser() -> Any:
    try:
        from uaparser import UAParser
    except ImportError:
        return None
    return UAParser


@lru_cache(maxsize=_CACHE_SIZE)
def _parse(user_agent: str) -> tuple[str | None, str | None, str | None, str | None, str | None, str | None]:
    """(browser name, browser major, os name, vendor, model, type) of one user agent."""
    parser = _parser()(user_agent)
    browser = parser.browser
    os = parser.os
    device = parser.device
    return (browser["name"], browser["major"], os["name"], device["vendor"], device["model"], device["type"])


def parse_user_agent(user_agent: str, ua_data: dict[str, Any] | None = None) -> dict[str, str]:
    """The fields Segment's destination derives from a user agent (absent ones left out).

    ``ua_data`` is ``context.userAgentData`` with string (or absent) ``model`` and ``platformVersion``.
    Returns ``{}`` when the ``useragent`` extra is not installed (logged once at INFO).
    """
    ua_data = ua_data or {}
    return dict(user_agent_fields(user_agent, ua_data.get("model"), ua_data.get("platformVersion")))


def user_agent_fields(
    user_agent: str, ua_model: str | None = None, platform_version: str | None = None
) -> tuple[tuple[str, str], ...]:
    """``parse_user_agent`` as (field, value) pairs, for ``dict.update``: the translator's fast path."""
    global _missing_logged
    if not user_agent:
        return ()
    if _parser() is None:
        if not _missing_logged:
            _missing_logged = True
            _log.info(
                "context.userAgent is not parsed: pip install 'segment-exposure[useragent]' to derive "
                "os_name, os_version, device_manufacturer, device_model and device_type, as Segment does"
            )
        return ()
    if len(user_agent) > _MAX_UA_LENGTH:
        user_agent = user_agent.lstrip()[:_MAX_UA_LENGTH]
    return _derive(user_agent, ua_model, platform_version)


@lru_cache(maxsize=_CACHE_SIZE)
def _derive(
    user_agent: str, ua_model: str | None, platform_version: str | None
) -> tuple[tuple[str, str], ...]:
    """Segment's rule over one parse, as (field, value) pairs without the absent ones; cached."""
    browser_name, browser_major, os_name, vendor, model, kind = _parse(user_agent)
    derived = (
        ("os_name", os_name if os_name is not None else browser_name),
        ("os_version", platform_version if platform_version is not None else browser_major),
        ("device_manufacturer", vendor),
        ("device_model", ua_model if ua_model is not None else model if model is not None else os_name),
        ("device_type", kind),
    )
    return tuple((key, value) for key, value in derived if value is not None)
