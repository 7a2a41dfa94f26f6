"""Settings, URLs and a view in one module, for ``django-admin runserver`` in the server matrix.

``GET /track?user=U`` tracks one exposure for U. Importing the settings creates the provider, so it
exists in the autoreloader's parent process as well as in the child process that serves.
"""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from exposure_app import track

SECRET_KEY = "matrix-only-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "django_site"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True


def track_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(track(request.GET["user"]))


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})


urlpatterns = [path("track", track_view), path("", index)]
