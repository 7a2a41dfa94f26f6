"""Amplitude Experiment exposure tracking through Segment, without losing data.

Every public name of the package can be imported from here: ``from segment_exposure import
SegmentExposureTrackingProvider, to_amplitude_event``. Each also stays importable from the subpackage that
defines it (``segment_exposure.tracking``, ``.delivery``, ``.experiment``, ``.identity``, ``.server``,
``.metrics``, ``.integrations.*``, ``.testing``).

Names are loaded on first use, so ``import segment_exposure`` stays cheap and never imports an optional
framework or SDK: ``from segment_exposure import SegmentExposure`` needs Flask, and raises an ImportError
naming the extra to install when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time, __getattr__ below imports each name when first used
    from segment_exposure.delivery import (
        AmplitudeClient,
        AmplitudeExposureDestination,
        DeliveryResult,
        EventNotSupported,
        EventOutcome,
        ExposureError,
        InvalidEventPayload,
        PermanentError,
        RetryError,
        Status,
        ValidationError,
        to_amplitude_event,
    )
    from segment_exposure.experiment import ExposureTrackingClient, route_sdk_exposures
    from segment_exposure.exposure import EXPOSURE_EVENT, Exposure
    from segment_exposure.identity import (
        Identity,
        bind_user,
        bound_user,
        from_cookies,
        identity_from_user,
        request_scope,
    )
    from segment_exposure.integrations.asgi import SegmentExposureMiddleware
    from segment_exposure.integrations.django import ExposureMiddleware
    from segment_exposure.integrations.flask import SegmentExposure
    from segment_exposure.metrics import register
    from segment_exposure.openfeature import AmplitudeExperimentProvider, ExposureHook
    from segment_exposure.server import create_app, lambda_handler
    from segment_exposure.testing import (
        AmplitudeEmulator,
        CapturedExposures,
        FlagConfigServer,
        InMemorySegmentClient,
        LocalPipeline,
        RudderStackCollector,
        SegmentCollector,
        capture_exposures,
        demo_flags,
    )
    from segment_exposure.tracking import (
        DROP_REASONS,
        ProviderStats,
        SegmentExposureTrackingProvider,
        flush_after,
        flush_each_request,
        flush_request,
        flush_request_async,
        invocation_timeout,
        lambda_context,
    )

#: Where each public name lives: the subpackage (or, for the framework integrations, the module) that
#: defines it.
_HOMES: dict[str, str] = {
    "EXPOSURE_EVENT": "segment_exposure.exposure",
    "Exposure": "segment_exposure.exposure",
    # into Segment
    "SegmentExposureTrackingProvider": "segment_exposure.tracking",
    "ProviderStats": "segment_exposure.tracking",
    "DROP_REASONS": "segment_exposure.tracking",
    "flush_after": "segment_exposure.tracking",
    "flush_each_request": "segment_exposure.tracking",
    "flush_request": "segment_exposure.tracking",
    "flush_request_async": "segment_exposure.tracking",
    "invocation_timeout": "segment_exposure.tracking",
    "lambda_context": "segment_exposure.tracking",
    "ExposureTrackingClient": "segment_exposure.experiment",
    "route_sdk_exposures": "segment_exposure.experiment",
    # who an exposure belongs to
    "Identity": "segment_exposure.identity",
    "bind_user": "segment_exposure.identity",
    "bound_user": "segment_exposure.identity",
    "from_cookies": "segment_exposure.identity",
    "identity_from_user": "segment_exposure.identity",
    "request_scope": "segment_exposure.identity",
    # from Segment into Amplitude
    "to_amplitude_event": "segment_exposure.delivery",
    "AmplitudeExposureDestination": "segment_exposure.delivery",
    "AmplitudeClient": "segment_exposure.delivery",
    "DeliveryResult": "segment_exposure.delivery",
    "EventOutcome": "segment_exposure.delivery",
    "Status": "segment_exposure.delivery",
    "ExposureError": "segment_exposure.delivery",
    "PermanentError": "segment_exposure.delivery",
    "EventNotSupported": "segment_exposure.delivery",
    "InvalidEventPayload": "segment_exposure.delivery",
    "ValidationError": "segment_exposure.delivery",
    "RetryError": "segment_exposure.delivery",
    "create_app": "segment_exposure.server",
    "lambda_handler": "segment_exposure.server",
    # frameworks and operations
    "SegmentExposure": "segment_exposure.integrations.flask",
    "ExposureMiddleware": "segment_exposure.integrations.django",
    "SegmentExposureMiddleware": "segment_exposure.integrations.asgi",
    "register": "segment_exposure.metrics",
    "ExposureHook": "segment_exposure.openfeature",
    "AmplitudeExperimentProvider": "segment_exposure.openfeature",
    # test helpers, for users' own suites
    "capture_exposures": "segment_exposure.testing",
    "CapturedExposures": "segment_exposure.testing",
    "InMemorySegmentClient": "segment_exposure.testing",
    "SegmentCollector": "segment_exposure.testing",
    "RudderStackCollector": "segment_exposure.testing",
    "AmplitudeEmulator": "segment_exposure.testing",
    "FlagConfigServer": "segment_exposure.testing",
    "LocalPipeline": "segment_exposure.testing",
    "demo_flags": "segment_exposure.testing",
}

__all__ = [
    "DROP_REASONS",
    "EXPOSURE_EVENT",
    "AmplitudeClient",
    "AmplitudeEmulator",
    "AmplitudeExperimentProvider",
    "AmplitudeExposureDestination",
    "CapturedExposures",
    "DeliveryResult",
    "EventNotSupported",
    "EventOutcome",
    "Exposure",
    "ExposureError",
    "ExposureHook",
    "ExposureMiddleware",
    "ExposureTrackingClient",
    "FlagConfigServer",
    "Identity",
    "InMemorySegmentClient",
    "InvalidEventPayload",
    "LocalPipeline",
    "PermanentError",
    "ProviderStats",
    "RetryError",
    "RudderStackCollector",
    "SegmentCollector",
    "SegmentExposure",
    "SegmentExposureMiddleware",
    "SegmentExposureTrackingProvider",
    "Status",
    "ValidationError",
    "__version__",
    "bind_user",
    "bound_user",
    "capture_exposures",
    "create_app",
    "demo_flags",
    "flush_after",
    "flush_each_request",
    "flush_request",
    "flush_request_async",
    "from_cookies",
    "identity_from_user",
    "invocation_timeout",
    "lambda_context",
    "lambda_handler",
    "register",
    "request_scope",
    "route_sdk_exposures",
    "to_amplitude_event",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its home on first use (PEP 562), and keep it here for the next."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'segment_exposure' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    """pyproject.toml holds the version; this reads what was installed from it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("segment-exposure")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()
