"""Exposures into Segment: the provider and what it is made of, and delivery per serverless invocation."""

from __future__ import annotations

from segment_exposure.tracking.provider import SegmentExposureTrackingProvider
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
from segment_exposure.tracking.stats import DROP_REASONS, ProviderStats

__all__ = [
    "DEFAULT_MARGIN",
    "DROP_REASONS",
    "PLATFORM_VARIABLES",
    "ProviderStats",
    "SegmentExposureTrackingProvider",
    "detect_platform",
    "flush_after",
    "flush_each_request",
    "flush_request",
    "flush_request_async",
    "invocation_timeout",
    "lambda_context",
]
