"""Kept import path: per-invocation flushing lives in :mod:`segment_exposure.tracking.serverless`."""

from segment_exposure.tracking.serverless import (
    DEFAULT_MARGIN,
    PLATFORM_VARIABLES,
    detect_platform,
    flush_after,
    flush_each_request,
    flush_request,
    flush_request_async,
    invocation_timeout,
    lambda_context,
)

__all__ = [
    "DEFAULT_MARGIN",
    "PLATFORM_VARIABLES",
    "detect_platform",
    "flush_after",
    "flush_each_request",
    "flush_request",
    "flush_request_async",
    "invocation_timeout",
    "lambda_context",
]
