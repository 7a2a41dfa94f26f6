"""Settings of the example project: Django's defaults, plus the three segment-exposure lines.

With SEGMENT_WRITE_KEY set, exposures go to Segment (SEGMENT_HOST overrides the API host); without it,
to a local collector (segment_exposure.testing.SegmentCollector) started in this process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "segment_exposure.integrations.django",  # 1. the app: settings, system checks
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "segment_exposure.integrations.django.ExposureMiddleware",  # 2. after authentication
]

# 3. the options (all optional but the write key); `python manage.py check` reports mistakes.
SEGMENT_EXPOSURE: dict[str, Any] = {"SET_DEVICE_ID_COOKIE": True}
if os.environ.get("SEGMENT_WRITE_KEY"):
    SEGMENT_EXPOSURE["WRITE_KEY"] = os.environ["SEGMENT_WRITE_KEY"]
    if os.environ.get("SEGMENT_HOST"):
        SEGMENT_EXPOSURE["HOST"] = os.environ["SEGMENT_HOST"]
else:
    from project import local_segment

    SEGMENT_EXPOSURE.update(WRITE_KEY=local_segment.WRITE_KEY, HOST=local_segment.collector().url)
