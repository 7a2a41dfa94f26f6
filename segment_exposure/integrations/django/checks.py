"""System checks: a misconfiguration is reported by ``manage.py check`` (and before ``runserver``,
``migrate`` and ``test``) with an id, instead of surfacing as exposures that silently never arrive.

Ids: ``E001`` no write key, ``E002`` ``SEGMENT_EXPOSURE`` is not a dict, ``E003`` an option of the wrong
type or value, ``E004`` a dotted path that cannot be imported, ``E005`` more than one of ``WRITE_KEY`` /
``PROVIDER`` / ``ANALYTICS``; ``W001`` an unknown option, ``W002`` options ignored, ``W003`` the middleware
is not installed, ``W004`` it runs before ``AuthenticationMiddleware`` while the default resolver reads
``request.user``. All prefixed ``segment_exposure.``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings  # type: ignore[import-untyped]
from django.core import checks  # type: ignore[import-untyped]

from .._common import Problem, check_options

__all__ = ["MIDDLEWARE_PATHS", "SETTING", "check_settings", "settings_problems", "spell"]

#: The name of the Django setting (a dict of options).
SETTING = "SEGMENT_EXPOSURE"


def spell(name: str) -> str:
    """How an option is written in settings, for messages."""
    return f'{SETTING}["{name}"]'


def settings_problems() -> list[Problem]:
    """Every problem with ``settings.SEGMENT_EXPOSURE`` (the system checks add the middleware's)."""
    raw = getattr(settings, SETTING, None)
    if raw is not None and not isinstance(raw, Mapping):
        return [
            Problem(
                "segment_exposure.E002",
                f"settings.{SETTING} must be a dict of options, got {type(raw).__name__}",
                f'for example {SETTING} = {{"WRITE_KEY": "..."}}',
            )
        ]
    return check_options(raw or {}, spell)


#: The ways ``ExposureMiddleware`` can be listed in ``settings.MIDDLEWARE``.
MIDDLEWARE_PATHS = (
    "segment_exposure.integrations.django.ExposureMiddleware",
    "segment_exposure.integrations.django.middleware.ExposureMiddleware",
)
_AUTHENTICATION_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The ``segment_exposure`` system checks (registered by the app's ``ready()``)."""
    messages: list[Any] = []
    problems = settings_problems()
    for problem in problems:
        kind = checks.Error if problem.is_error else checks.Warning
        messages.append(kind(problem.msg, hint=problem.hint, id=problem.id))
    messages.extend(_check_middleware(any(p.id == "segment_exposure.E002" for p in problems)))
    return messages


def _check_middleware(bad_setting: bool) -> list[Any]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = [i for i, path in enumerate(middleware) if path in MIDDLEWARE_PATHS]
    if not ours:
        return [
            checks.Warning(
                "ExposureMiddleware is not in settings.MIDDLEWARE: requests get no identity, so "
                "provider.track(exposure) without a user drops the exposure",
                hint=f"add {MIDDLEWARE_PATHS[0]!r} after AuthenticationMiddleware",
                id="segment_exposure.W003",
            )
        ]
    options = {} if bad_setting else (getattr(settings, SETTING, None) or {})
    uses_request_user = options.get("IDENTIFY") is None
    if (
        uses_request_user
        and _AUTHENTICATION_MIDDLEWARE in middleware
        and ours[0] < middleware.index(_AUTHENTICATION_MIDDLEWARE)
    ):
        return [
            checks.Warning(
                "ExposureMiddleware runs before AuthenticationMiddleware, so request.user is not set "
                "yet and logged-in users are tracked by device id only",
                hint="move it below django.contrib.auth.middleware.AuthenticationMiddleware",
                id="segment_exposure.W004",
            )
        ]
    return []
