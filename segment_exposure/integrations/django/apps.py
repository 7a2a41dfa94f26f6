"""The app config, and the one provider per process that ``settings.SEGMENT_EXPOSURE`` describes.

The provider is built on first use, not in ``ready()``: management commands (``migrate``, ``check``)
then start no Segment threads, and a bad configuration is reported by the system checks instead of
crashing start-up. Under gunicorn ``--preload`` it does not matter which side of the fork builds it:
the provider is fork-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import AppConfig  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.signals import setting_changed  # type: ignore[import-untyped]

from segment_exposure._fork import after_fork_in_child
from segment_exposure.tracking.provider import SegmentExposureTrackingProvider
from segment_exposure.tracking.serverless import detect_platform, flush_each_request

from .._common import USER_ID_ATTRIBUTES, build_provider, resolve
from .._request import RequestIdentity
from .checks import SETTING, check_settings, settings_problems

__all__ = ["SETTING", "Conf", "SegmentExposureConfig", "conf", "get_provider", "reset", "settings_problems"]


@dataclass(frozen=True)
class Conf:
    """``settings.SEGMENT_EXPOSURE`` checked and resolved: what the middleware reads on every request."""

    options: dict[str, Any]
    identify: Callable[[Any], object] | None  # None: the default resolver
    identity: RequestIdentity
    set_device_id_cookie: bool
    user_id_attribute: str
    flush_each_request: bool = False  # deliver each request's exposures before returning its response


_lock = threading.Lock()
_conf: Conf | None = None
_built: tuple[SegmentExposureTrackingProvider, bool] | None = None  # (provider, owned by us)


def conf() -> Conf:
    """The current configuration, cached until the setting changes; ImproperlyConfigured if unusable."""
    global _conf
    current = _conf
    if current is None:
        errors = [p for p in settings_problems() if p.is_error]
        if errors:
            raise ImproperlyConfigured(
                "segment-exposure is misconfigured (see `manage.py check`):\n"
                + "\n".join(f"  {p}" for p in errors)
            )
        options = dict(getattr(settings, SETTING, None) or {})
        current = _conf = Conf(
            options=options,
            identify=resolve(options.get("IDENTIFY")),
            identity=RequestIdentity.from_options(options),
            set_device_id_cookie=bool(options.get("SET_DEVICE_ID_COOKIE")),
            user_id_attribute=options.get("USER_ID_ATTRIBUTE") or USER_ID_ATTRIBUTES["django"],
            flush_each_request=_flush_each_request(options.get("FLUSH_EACH_REQUEST")),
        )
    return current


def _flush_each_request(setting: object) -> bool:
    return detect_platform() is not None if setting is None else bool(setting)


def get_provider() -> SegmentExposureTrackingProvider:
    """The process's provider, built from settings once, on first use."""
    global _built
    built = _built
    if built is None:
        after_fork_in_child(_after_fork_in_child)
        with _lock:
            built = _built
            if built is None:
                options = conf().options
                built = _built = build_provider(options)
                if options.get("METRICS"):
                    from ...metrics import register_from_setting

                    register_from_setting(built[0], options["METRICS"])
                flush_each_request(built[0], options.get("FLUSH_EACH_REQUEST"))
    return built[0]


def reset() -> None:
    """Forget the configuration and the provider (shutting it down if it was built from settings).

    Called when ``SEGMENT_EXPOSURE`` changes (``override_settings``, pytest-django's ``settings``), so
    tests can point the integration at their own collector.
    """
    global _conf, _built
    after_fork_in_child(_after_fork_in_child)
    with _lock:
        built, _built, _conf = _built, None, None
    if built is not None and built[1]:
        built[0].shutdown(built[0].flush_timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop the provider built from settings, and forget it: the next ``get_provider()`` builds
    a new one. For tests and process teardown (without it, the exit hook flushes at exit).

    ``timeout`` defaults to the provider's ``flush_timeout``. A ``PROVIDER`` given in the settings is left
    running (whoever made it shuts it down). Returns False when something queued was not delivered.
    """
    global _built
    after_fork_in_child(_after_fork_in_child)
    with _lock:
        built, _built = _built, None
    if built is None or not built[1]:
        return True
    provider = built[0]
    return provider.shutdown(provider.flush_timeout if timeout is None else timeout)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        reset()


def _after_fork_in_child() -> None:
    # A lock some other thread held at fork() would never be released in the child.
    global _lock
    _lock = threading.Lock()


class SegmentExposureConfig(AppConfig):  # type: ignore[misc]
    """Registers the system checks and follows changes to ``settings.SEGMENT_EXPOSURE``."""

    name = "segment_exposure.integrations.django"
    label = "segment_exposure"
    verbose_name = "Segment exposure tracking"

    def ready(self) -> None:
        from django.core import checks  # type: ignore[import-untyped]

        checks.register(check_settings, "segment_exposure")
        setting_changed.connect(_on_setting_changed, dispatch_uid="segment_exposure.setting_changed")

    @property
    def provider(self) -> SegmentExposureTrackingProvider:
        """The process's provider (``get_provider()``)."""
        return get_provider()
