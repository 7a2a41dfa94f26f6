"""The webhook as an AWS Lambda behind a function URL or API Gateway (REST v1 or HTTP API v2).

Why a module-level cache: a Lambda container serves many invocations one at a time, so the destination
(and its HTTP connection pool to Amplitude) is built once per container, on first use, from the
environment. It is rebuilt only if the environment changes (as it does between tests).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segment_exposure.delivery.destination import AmplitudeExposureDestination

from .settings import ENVIRONMENT, ConfigError, ServerSettings, user_agent_parser_missing
from .webhook import WebhookHandler, WebhookResponse, error_response

__all__ = ["lambda_handler", "reset_cache"]

logger = logging.getLogger(__name__)

#: Seconds kept back from the Lambda's remaining time, so the answer is sent before the Lambda is stopped.
_MARGIN = 0.5


@dataclass(slots=True)
class _Built:
    key: tuple[str, ...]
    settings: ServerSettings
    destination: AmplitudeExposureDestination
    handler: WebhookHandler
    counts: Any = None  # segment_exposure.metrics.webhook.InvocationCounts when SEGMENT_EXPOSURE_EMF is on


_built: _Built | None = None
_parser_checked = False  # the missing-parser warning is logged once per container (its cold start)


def reset_cache() -> None:
    """Forget (and close) the cached destination; the next invocation builds a new one."""
    global _built
    if _built is not None:
        _built.destination.close()
        _built = None


def _handler(environ: Mapping[str, str]) -> _Built:
    global _built
    key = tuple(environ.get(name, "") for name in (*ENVIRONMENT.values(), "SEGMENT_EXPOSURE_EMF"))
    if _built is not None and _built.key == key:
        return _built
    settings = ServerSettings.from_environ(environ)
    reset_cache()
    destination = settings.build_destination()
    counts, counted = _emf_counts(environ, destination)
    handler = WebhookHandler(counted, settings.shared_secret, max_body_bytes=settings.max_body_bytes)
    _built = _Built(key, settings, destination, handler, counts)
    if not settings.shared_secret:
        logger.warning("%s is not set: requests are not authenticated", ENVIRONMENT["shared_secret"])
    _warn_once_without_parser()
    return _built


def _warn_once_without_parser() -> None:
    global _parser_checked
    if _parser_checked:
        return
    _parser_checked = True
    missing = user_agent_parser_missing()
    if missing:
        logger.warning("%s", missing)


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Header names lower-cased: API Gateway v1 keeps the client's case, v2 and function URLs lower it."""
    headers: dict[str, str] = {}
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name, values in multi.items():
            if isinstance(values, list) and values:
                headers[str(name).lower()] = str(values[-1])
    single = event.get("headers")
    if isinstance(single, dict):
        for name, value in single.items():
            if value is not None:
                headers[str(name).lower()] = str(value)
    return headers


def _request(event: Mapping[str, Any]) -> _Request:
    """The request in an API Gateway v1, v2 or function URL event; raises ``ValueError`` for anything else."""
    if not isinstance(event, Mapping):
        raise ValueError("the event is not an API Gateway or function URL request")
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    if isinstance(http, dict):  # HTTP API (v2) and function URLs
        method = http.get("method")
        path = event.get("rawPath") or http.get("path") or "/"
    else:  # REST API (v1)
        method = event.get("httpMethod")
        path = event.get("path") or "/"
    if not isinstance(method, str):
        raise ValueError("the event is not an API Gateway or function URL request (no HTTP method)")
    raw = event.get("body")
    if raw is None:
        body = b""
    elif not isinstance(raw, str):
        raise ValueError("the event's body is not a string")
    elif event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the body is marked base64 but is not valid base64") from None
    else:
        body = raw.encode("utf-8", "surrogatepass")
    return _Request(method.upper(), str(path), _headers(event), body)


def _proxy_response(response: WebhookResponse) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **dict(response.headers)}
    return {
        "statusCode": response.status,
        "headers": headers,
        "body": response.payload().decode(),
        "isBase64Encoded": False,
    }


def _fit_deadline(built: _Built, context: Any) -> None:
    """Finish before the Lambda's own timeout; a Lambda serves one request at a time, so this is safe."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    deadline = built.settings.deadline
    if callable(remaining):
        deadline = min(deadline, max(0.1, remaining() / 1000.0 - _MARGIN))
    built.destination.deadline = deadline


def lambda_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Handle one function URL or API Gateway proxy event; returns the proxy response.

    ``POST`` (any path) delivers the body as `segment_exposure.server.create_app` does, with the same
    statuses; ``GET .../healthz`` is liveness. Configured from the environment (``AMPLITUDE_API_KEY``,
    ``SEGMENT_SHARED_SECRET``, ``AMPLITUDE_REGION``, ``AMPLITUDE_ENDPOINT``, ``AMPLITUDE_MIN_ID_LENGTH``,
    ...); a configuration error answers 500 so Segment keeps retrying while it is fixed.
    """
    try:
        request = _request(event)
    except ValueError as exc:
        return _proxy_response(error_response(400, str(exc)))
    try:
        built = _handler(os.environ)
    except ConfigError as exc:
        logger.error("segment-exposure Lambda is not configured: %s", exc)
        return _proxy_response(error_response(500, f"the function is not configured: {exc}"))
    handler = built.handler
    if request.method in ("GET", "HEAD") and request.path.rstrip("/").endswith("/healthz"):
        return _proxy_response(handler.health())
    if request.method != "POST":
        return _proxy_response(error_response(405, "POST Segment events", ("Allow", "POST")))
    _fit_deadline(built, context)
    started = time.perf_counter()
    response = handler.handle(request.body, request.headers.get("x-signature"))
    if built.counts is not None:
        from segment_exposure.metrics.emf import emit

        emit(built.counts, response.status, time.perf_counter() - started, os.environ)
    return _proxy_response(response)


def _emf_counts(environ: Mapping[str, str], destination: Any) -> tuple[Any, Any]:
    """With ``SEGMENT_EXPOSURE_EMF`` on: per-invocation counts, and the destination counting into them."""
    from segment_exposure.metrics.emf import enabled

    if not enabled(environ):
        return None, destination
    from segment_exposure.metrics.webhook import CountingDestination, InvocationCounts

    counts = InvocationCounts()
    return counts, CountingDestination(destination, counts)
