"""Settings, URLs and views of the small Django project the integration tests run.

``tests/test_django_integration.py`` configures Django from this module's upper-case names with
``settings.configure()`` rather than ``DJANGO_SETTINGS_MODULE``, so nothing leaks into the environment
of other tests' subprocesses. The SEGMENT_EXPOSURE below never sends: each test points it at its own
local collector.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]

from segment_exposure import Exposure, bound_user, identity_from_user, request_scope
from segment_exposure.integrations.django import get_provider

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "segment_exposure.integrations.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "segment_exposure.integrations.django.ExposureMiddleware",
]
ROOT_URLCONF = __name__
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, for tests only
SEGMENT_EXPOSURE: dict[str, Any] = {"WRITE_KEY": "wk-unused", "HOST": "http://127.0.0.1:9"}

checkout_exposure = Exposure("checkout", "treatment", "exp-1")


def checkout(request: HttpRequest) -> HttpResponse:
    provider = get_provider()
    first = provider.track(checkout_exposure)
    repeat = provider.track(checkout_exposure)  # the page reads the flag twice
    user_id, device_id = identity_from_user(bound_user())
    return JsonResponse({"tracked": [first, repeat], "user_id": user_id, "device_id": device_id})


async def checkout_async(request: HttpRequest) -> HttpResponse:
    provider = get_provider()
    tracked = provider.track(checkout_exposure)
    user_id, device_id = identity_from_user(bound_user())
    return JsonResponse({"tracked": [tracked], "user_id": user_id, "device_id": device_id})


def scope(request: HttpRequest) -> HttpResponse:
    current = request_scope()
    assert current is not None
    before = dict(current)
    current["visits"] = 1
    return JsonResponse({"before": before})


def boom(request: HttpRequest) -> HttpResponse:
    assert bound_user() is not None
    raise RuntimeError("the view failed")


def identify_from_header(request: HttpRequest) -> dict[str, str | None]:
    """A custom resolver, named by dotted path in the tests."""
    return {"user_id": request.headers.get("X-User"), "device_id": request.headers.get("X-Device")}


async def identify_from_header_async(request: HttpRequest) -> dict[str, str | None]:
    return identify_from_header(request)


urlpatterns = [
    path("checkout", checkout),
    path("checkout-async", checkout_async),
    path("scope", scope),
    path("boom", boom),
]
