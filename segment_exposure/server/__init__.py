"""Serving the destination to Segment: a WSGI webhook app and an AWS Lambda handler.

``create_app(destination, shared_secret=None)`` is a plain WSGI app (``segment-exposure serve`` runs it under
gunicorn); ``lambda_handler(event, context)`` serves function URL and API Gateway events, configured from
the environment. Both answer with the same statuses (see `segment_exposure.server.webhook`).
"""

from __future__ import annotations

from .aws_lambda import lambda_handler, reset_cache
from .settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DEPTH, ENVIRONMENT, ConfigError, ServerSettings
from .webhook import (
    SIGNATURE_HEADER,
    BatchDestination,
    BodyError,
    WebhookHandler,
    WebhookResponse,
    parse_events,
    sign,
)
from .wsgi import WebhookApp, create_app

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DEPTH",
    "ENVIRONMENT",
    "SIGNATURE_HEADER",
    "BatchDestination",
    "BodyError",
    "ConfigError",
    "ServerSettings",
    "WebhookApp",
    "WebhookHandler",
    "WebhookResponse",
    "create_app",
    "lambda_handler",
    "parse_events",
    "reset_cache",
    "sign",
]
