"""What the Flask and Django integrations share: the options, their checks, the provider, identities.

Both frameworks take the same option names (Flask as ``SEGMENT_EXPOSURE_<NAME>`` config keys, Django as
keys of the ``SEGMENT_EXPOSURE`` setting), so one table here keeps their meaning, their checks and their
problem ids (``segment_exposure.E001`` ...) the same in both.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from segment_exposure.identity.ids import as_id
from segment_exposure.tracking.provider import SegmentExposureTrackingProvider

from ._request import IDENTITY_SOURCES, LEGACY_DEVICE_ID_COOKIE, valid_sources

__all__ = [
    "DEVICE_ID_COOKIE",
    "DEVICE_ID_COOKIE_MAX_AGE",
    "OPTIONS",
    "OPTION_VALUES",
    "PROVIDER_OPTIONS",
    "USER_ID_ATTRIBUTES",
    "Problem",
    "as_id",
    "build_provider",
    "check_options",
    "field",
    "identify_safely",
    "import_object",
    "make_user",
    "missing_framework",
    "new_device_id",
    "resolve",
]

log = logging.getLogger(__name__)

#: The integration's own device-id cookie: read last by the default resolvers, set by SET_DEVICE_ID_COOKIE.
DEVICE_ID_COOKIE = LEGACY_DEVICE_ID_COOKIE
#: How long a device-id cookie set by an integration lives: a year, as Amplitude's browser SDK does.
DEVICE_ID_COOKIE_MAX_AGE = 365 * 24 * 3600
#: The default ``USER_ID_ATTRIBUTE`` of each framework's user object.
USER_ID_ATTRIBUTES = {"flask": "id", "django": "pk"}

#: Options that choose where exposures go; exactly one of them must be set.
_SOURCES = ("WRITE_KEY", "PROVIDER", "ANALYTICS")
#: Options passed to ``SegmentExposureTrackingProvider`` when the integration builds it.
_PROVIDER_KWARGS = {
    "DEDUPE_TTL": "dedupe_ttl",
    "DEDUPE_CAPACITY": "dedupe_capacity",
    "MAX_QUEUE_SIZE": "max_queue_size",
    "FLUSH_TIMEOUT": "flush_timeout",
    "INCLUDE_METADATA": "include_metadata",
    "INTEGRATIONS": "integrations",
    "CLIENT_OPTIONS": "client_options",
    "SDK": "sdk",
}
#: Options that only configure a Segment client the provider creates itself.
_OWNED_CLIENT_ONLY = ("HOST", "CLIENT_OPTIONS")
#: Options that may be given as a dotted import path instead of the object.
_IMPORTABLE = ("IDENTIFY", "PROVIDER", "ANALYTICS")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_track(value: object) -> bool:
    # An instance, not its class: a class has a track() function too, but it is not a client.
    return not isinstance(value, type) and callable(getattr(value, "track", None))


# name -> (is the value right, what it must be). None always means "not set".
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "WRITE_KEY": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty str"),
    "HOST": (
        lambda v: isinstance(v, str) and v.startswith(("http://", "https://")),
        "an http(s) URL such as 'https://api.segment.io'",
    ),
    "IDENTIFY": (lambda v: callable(v) or isinstance(v, str), "a callable or its dotted import path"),
    "PROVIDER": (
        lambda v: _has_track(v) or isinstance(v, str),
        "a SegmentExposureTrackingProvider or its dotted import path",
    ),
    "ANALYTICS": (
        lambda v: _has_track(v) or isinstance(v, str),
        "a Segment client (segment.analytics.Client) or its dotted import path",
    ),
    "DEDUPE_TTL": (lambda v: _is_number(v) and v > 0, "a number of seconds > 0"),
    "DEDUPE_CAPACITY": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "MAX_QUEUE_SIZE": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "FLUSH_TIMEOUT": (lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
    "INCLUDE_METADATA": (lambda v: isinstance(v, bool), "a bool"),
    "INTEGRATIONS": (lambda v: isinstance(v, Mapping), "a dict"),
    "CLIENT_OPTIONS": (lambda v: isinstance(v, Mapping), "a dict of segment.analytics.Client arguments"),
    "SDK": (
        lambda v: v in ("segment", "rudderstack"),
        "'segment' (segment-analytics-python, the default) or 'rudderstack' (rudder-sdk-python)",
    ),
    "DEVICE_ID_COOKIE": (lambda v: isinstance(v, str) and bool(v), "a non-empty str (a cookie name)"),
    "SET_DEVICE_ID_COOKIE": (lambda v: isinstance(v, bool), "a bool"),
    "USER_ID_ATTRIBUTE": (lambda v: isinstance(v, str) and bool(v), "a non-empty str (an attribute name)"),
    "METRICS": (
        lambda v: isinstance(v, bool) or (isinstance(v, str) and bool(v)),
        "True, False or a provider label (segment_exposure.metrics.register; needs the metrics extra)",
    ),
    "IDENTITY_SOURCES": (
        valid_sources,
        f"a list of distinct identity sources, in order, from {list(IDENTITY_SOURCES)}",
    ),
    "AMPLITUDE_API_KEY": (
        lambda v: isinstance(v, str) and len(v) >= 10,
        "your Amplitude project's API key (a str of at least 10 characters)",
    ),
    "SEND_USER_AGENT": (lambda v: isinstance(v, bool), "a bool"),
    "SEND_IP": (lambda v: isinstance(v, bool), "a bool"),
    "SEND_LOCALE": (lambda v: isinstance(v, bool), "a bool"),
    # Deliver each request's exposures before its response is returned (segment_exposure.tracking.serverless).
    "FLUSH_EACH_REQUEST": (lambda v: isinstance(v, bool), "a bool"),
}

#: Every option name both integrations accept.
OPTIONS = frozenset(_CHECKS)
#: What each option's value must be, by name, in the words the configuration checks use (the docs'
#: configuration tables are generated from it).
OPTION_VALUES: Mapping[str, str] = MappingProxyType({name: rule[1] for name, rule in _CHECKS.items()})
#: The options handed on to ``SegmentExposureTrackingProvider`` when the integration builds it: option name ->
#: keyword argument.
PROVIDER_OPTIONS: Mapping[str, str] = MappingProxyType(_PROVIDER_KWARGS)


@dataclass(frozen=True)
class Problem:
    """One configuration problem, with a Django-style id (``segment_exposure.E001``)."""

    id: str
    msg: str
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return ".E" in self.id

    def __str__(self) -> str:
        text = f"{self.id}: {self.msg}"
        return f"{text} ({self.hint})" if self.hint else text


def _shown(name: str, value: object) -> str:
    if name in ("WRITE_KEY", "AMPLITUDE_API_KEY"):
        return type(value).__name__  # never put a secret into an error message
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _metrics_installed() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def check_options(options: Mapping[str, Any], spell: Callable[[str], str]) -> list[Problem]:
    """Every problem with ``options`` (names without prefix); ``spell`` says how the user wrote a name.

    Errors (``E``) make the integration unusable; warnings (``W``) mean part of the set-up is ignored.
    """
    problems: list[Problem] = []
    for name in options:
        if name not in OPTIONS:
            close = difflib.get_close_matches(str(name), sorted(OPTIONS), n=1)
            problems.append(
                Problem(
                    "segment_exposure.W001",
                    f"unknown option {spell(str(name))}; it is ignored",
                    f"did you mean {spell(close[0])}?" if close else f"known: {', '.join(sorted(OPTIONS))}",
                )
            )
    for name, (ok, expected) in _CHECKS.items():
        value = options.get(name)
        if value is None:
            continue
        if not ok(value):
            message = f"{spell(name)} must be {expected}, got {_shown(name, value)}"
            problems.append(Problem("segment_exposure.E003", message))
        elif name in _IMPORTABLE and isinstance(value, str):
            try:
                target = import_object(value)
            except (ImportError, AttributeError, ValueError) as exc:
                problems.append(
                    Problem("segment_exposure.E004", f"{spell(name)} = {value!r} cannot be imported: {exc}")
                )
                continue
            if name == "IDENTIFY" and not callable(target):
                problems.append(
                    Problem("segment_exposure.E003", f"{spell(name)} = {value!r} is not callable")
                )
            elif name != "IDENTIFY" and not _has_track(target):
                problems.append(
                    Problem("segment_exposure.E003", f"{spell(name)} = {value!r} has no track() method")
                )
    if options.get("METRICS") and not _metrics_installed():
        problems.append(
            Problem(
                "segment_exposure.E006",
                f"{spell('METRICS')} is on but prometheus-client is not installed",
                "pip install 'segment-exposure[metrics]'",
            )
        )
    given = [name for name in _SOURCES if options.get(name) is not None]
    if not given:
        problems.append(
            Problem(
                "segment_exposure.E001",
                f"no Segment write key: {spell('WRITE_KEY')} is not set",
                f"set it to your Segment source's write key, or pass {spell('PROVIDER')} "
                f"or {spell('ANALYTICS')}",
            )
        )
    elif len(given) > 1:
        problems.append(
            Problem(
                "segment_exposure.E005",
                f"{' and '.join(spell(n) for n in given)} are all set; exposures can go one way only",
                "keep exactly one of them",
            )
        )
    elif given == ["PROVIDER"]:
        ignored = [n for n in (*_PROVIDER_KWARGS, "HOST") if options.get(n) is not None]
        if ignored:
            problems.append(
                Problem(
                    "segment_exposure.W002",
                    f"{', '.join(spell(n) for n in ignored)} ignored: {spell('PROVIDER')} is already built",
                    "pass these to SegmentExposureTrackingProvider() instead",
                )
            )
    elif given == ["ANALYTICS"]:
        ignored = [n for n in _OWNED_CLIENT_ONLY if options.get(n) is not None]
        if ignored:
            problems.append(
                Problem(
                    "segment_exposure.W002",
                    f"{', '.join(spell(n) for n in ignored)} ignored: "
                    f"{spell('ANALYTICS')} is a client of your own",
                    "configure that client instead",
                )
            )
    return problems


def import_object(path: str) -> Any:
    """Import ``"package.module.attr"`` or ``"package.module:attr"``."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not a dotted path to an object")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def resolve(value: Any) -> Any:
    """The object an option names: itself, or what its dotted path imports."""
    return import_object(value) if isinstance(value, str) else value


def build_provider(options: Mapping[str, Any]) -> tuple[SegmentExposureTrackingProvider, bool]:
    """The provider ``options`` describe (already checked), and whether the integration owns it."""
    provider = options.get("PROVIDER")
    if provider is not None:
        return resolve(provider), False
    kwargs = {kw: options[name] for name, kw in _PROVIDER_KWARGS.items() if options.get(name) is not None}
    analytics = options.get("ANALYTICS")
    if analytics is not None:
        kwargs.pop("client_options", None)
        return SegmentExposureTrackingProvider(analytics=resolve(analytics), **kwargs), True
    return SegmentExposureTrackingProvider(options["WRITE_KEY"], options.get("HOST"), **kwargs), True


@functools.cache
def _user_factory() -> Callable[..., object]:
    try:
        from amplitude_experiment import User
    except ImportError:  # the experiment extra is not installed: a mapping serves the provider as well
        return dict
    return User  # type: ignore[no-any-return]


def make_user(user_id: str | None, device_id: str | None) -> object:
    """An Experiment ``User`` (a plain dict without the experiment extra) for the two ids."""
    return _user_factory()(user_id=user_id, device_id=device_id)


def field(obj: object, name: str) -> object:
    """``obj[name]`` for mappings and rows (``sqlite3.Row``), ``obj.name`` otherwise; None if absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None and hasattr(obj, "keys") and hasattr(obj, "__getitem__"):
        try:
            value = obj[name]
        except (LookupError, TypeError):
            return None
    return value


def new_device_id() -> str:
    """A fresh device id, in the UUID form Amplitude's SDKs use."""
    return str(uuid.uuid4())


def identify_safely(identify: Callable[[Any], object], request: object) -> object:
    """Run a resolver; one that raises leaves the request without identity instead of failing it."""
    try:
        return identify(request)
    except Exception:
        log.exception("segment-exposure: the IDENTIFY resolver raised; this request has no identity")
        return None


def missing_framework(framework: str, extra: str) -> str:
    """The message for an integration imported without its framework: it names the extra to install."""
    return (
        f"segment_exposure.integrations.{extra} needs {framework}, which is not installed: "
        f"pip install 'segment-exposure[{extra}]'"
    )
