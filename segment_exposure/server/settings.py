"""Configuration of the served destination, from the environment and command-line flags.

Why one place: ``segment-exposure serve`` and the Lambda handler must read the same variables the same way,
and both must fail with one clear line (never echoing a secret) when something is missing or malformed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from segment_exposure.delivery.destination import DEFAULT_DEADLINE, AmplitudeExposureDestination
from segment_exposure.delivery.sources import SOURCES
from segment_exposure.delivery.translate import DEFAULT_EXPOSURE_EVENTS

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DEPTH",
    "ENVIRONMENT",
    "ConfigError",
    "ServerSettings",
    "user_agent_parser_missing",
]

#: Segment's Actions webhooks send up to 4000 events per request; at 4 KB per event that is 16 MB.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

#: Seconds a request's body may take to arrive once its headers have (``serve``): Segment sends it at once,
#: so only a stalled or hostile client hits this. The connection is then answered 408 and closed.
DEFAULT_BODY_TIMEOUT = 10.0

#: Deepest JSON nesting accepted in a request body (a batch array counts as one level). Amplitude itself
#: refuses objects nested more than 40 levels, so real events stay far below this.
DEFAULT_MAX_DEPTH = 64

#: Setting name -> environment variable.
ENVIRONMENT: Mapping[str, str] = {
    "api_key": "AMPLITUDE_API_KEY",
    "shared_secret": "SEGMENT_SHARED_SECRET",
    "region": "AMPLITUDE_REGION",
    "endpoint": "AMPLITUDE_ENDPOINT",
    "min_id_length": "AMPLITUDE_MIN_ID_LENGTH",
    "exposure_events": "AMPLITUDE_EXPOSURE_EVENTS",
    "deadline": "AMPLITUDE_DEADLINE",
    "max_body_bytes": "WEBHOOK_MAX_BODY_BYTES",
    "body_timeout": "WEBHOOK_BODY_TIMEOUT",
    # auto (default), segment or rudderstack: whose Amplitude mapping the events get (delivery/sources.py)
    "source": "EVENT_SOURCE",
}


def user_agent_parser_missing() -> str | None:
    """The start-up warning when ua-parser-py is not installed, else None.

    Why: Segment's own Amplitude destination fills os_name, os_version, device_manufacturer, device_model and
    device_type from the user agent of web events; without the parser the served destination sends them
    without those fields, and nothing else would say so.
    """
    from segment_exposure.delivery.useragent import available

    if available():
        return None
    return (
        "ua-parser-py is not installed: web events reach Amplitude without os_name, os_version, "
        "device_manufacturer, device_model and device_type, which Segment's own destination derives from the "
        "user agent; pip install 'segment-exposure[server]' (or [useragent] for a Lambda package)"
    )


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line and never contains a secret."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything needed to build and serve the destination. Secrets are left out of ``repr``."""

    api_key: str = field(repr=False)
    shared_secret: str | None = field(default=None, repr=False)
    region: str = "US"
    endpoint: str | None = None
    min_id_length: int | None = None
    exposure_events: tuple[str, ...] = DEFAULT_EXPOSURE_EVENTS
    deadline: float = DEFAULT_DEADLINE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    source: str = "auto"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: Any) -> ServerSettings:
        """Settings from ``environ`` (see `ENVIRONMENT`); ``overrides`` that are not None win.

        Raises `ConfigError` for a missing API key or any malformed value.
        """
        unknown = set(overrides) - set(ENVIRONMENT)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")

        def raw(name: str) -> Any:
            value = overrides.get(name)
            if value is None:
                value = environ.get(ENVIRONMENT[name], "").strip() or None
            return value

        api_key = raw("api_key")
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError(f"the Amplitude API key is not set: set {ENVIRONMENT['api_key']}")
        secret = raw("shared_secret")
        return cls(
            api_key=api_key.strip(),
            shared_secret=secret if secret else None,
            region=_region(raw("region")),
            endpoint=_endpoint(raw("endpoint")),
            min_id_length=_positive_int("min_id_length", raw("min_id_length")),
            exposure_events=_names(raw("exposure_events")),
            deadline=_deadline(raw("deadline")),
            max_body_bytes=_positive_int("max_body_bytes", raw("max_body_bytes")) or DEFAULT_MAX_BODY_BYTES,
            body_timeout=_seconds("body_timeout", raw("body_timeout"), DEFAULT_BODY_TIMEOUT),
            source=_source(raw("source")),
        )

    def build_destination(self) -> AmplitudeExposureDestination:
        """A new destination (it owns an HTTP connection pool: build one per process, after forking)."""
        return AmplitudeExposureDestination(
            self.api_key,
            region=self.region,
            endpoint=self.endpoint,
            min_id_length=self.min_id_length,
            exposure_events=self.exposure_events,
            deadline=self.deadline,
            source=self.source,
        )


def _region(value: Any) -> str:
    if value is None:
        return "US"
    region = str(value).strip().upper()
    if region not in ("US", "EU"):
        raise ConfigError(f"{ENVIRONMENT['region']} must be US or EU, got {str(value)[:20]!r}")
    return region


def _endpoint(value: Any) -> str | None:
    if value is None:
        return None
    parts = urlsplit(str(value).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value is not echoed: an endpoint may carry credentials.
        raise ConfigError(
            f"{ENVIRONMENT['endpoint']} must be a full http(s) URL such as https://api2.amplitude.com/2/httpapi"
        )
    return str(value).strip()


def _positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ConfigError(f"{ENVIRONMENT[name]} must be a whole number, got {str(value)[:20]!r}")
    if number < 1:
        raise ConfigError(f"{ENVIRONMENT[name]} must be at least 1, got {number}")
    return number


def _seconds(name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{ENVIRONMENT[name]} must be a number of seconds, got {str(value)[:20]!r}"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 3600:
        raise ConfigError(f"{ENVIRONMENT[name]} must be between 0 and 3600 seconds, got {seconds}")
    return seconds


def _deadline(value: Any) -> float:
    if value is None:
        return DEFAULT_DEADLINE
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{ENVIRONMENT['deadline']} must be a number of seconds, got {str(value)[:20]!r}"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 300:
        raise ConfigError(f"{ENVIRONMENT['deadline']} must be between 0 and 300 seconds, got {seconds}")
    return seconds


def _source(value: Any) -> str:
    if value is None:
        return "auto"
    source = str(value).strip().lower()
    if source not in SOURCES:
        raise ConfigError(
            f"{ENVIRONMENT['source']} must be one of {', '.join(SOURCES)}, got {str(value)[:20]!r}"
        )
    return source


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_EXPOSURE_EVENTS
    names = value.split(",") if isinstance(value, str) else list(value)
    cleaned = tuple(n.strip() for n in names if isinstance(n, str) and n.strip())
    return cleaned or DEFAULT_EXPOSURE_EVENTS
