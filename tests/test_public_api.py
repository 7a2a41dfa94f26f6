"""Every name the public surface documents imports from the path it is documented under.

The package is laid out by its two halves (``tracking``, ``delivery``); the older flat paths are kept as
thin re-exports, and this test keeps them from breaking when modules move.
"""

from __future__ import annotations

import importlib

import pytest

DOCUMENTED = [
    ("segment_exposure", "Exposure"),
    ("segment_exposure", "SegmentExposureTrackingProvider"),
    ("segment_exposure", "EXPOSURE_EVENT"),
    ("segment_exposure", "bind_user"),
    ("segment_exposure", "bound_user"),
    ("segment_exposure.experiment", "ExposureTrackingClient"),
    ("segment_exposure.translate", "to_amplitude_event"),
    ("segment_exposure.destination", "AmplitudeExposureDestination"),
    ("segment_exposure.errors", "EventNotSupported"),
    ("segment_exposure.errors", "InvalidEventPayload"),
    ("segment_exposure.errors", "ValidationError"),
    ("segment_exposure.errors", "RetryError"),
    ("segment_exposure.amplitude", "AmplitudeClient"),
    ("segment_exposure.stats", "ProviderStats"),
    ("segment_exposure.server", "create_app"),
    ("segment_exposure.server", "lambda_handler"),
    ("segment_exposure.integrations.flask", "SegmentExposure"),
    ("segment_exposure.integrations.django", "ExposureMiddleware"),
    ("segment_exposure.integrations.asgi", "SegmentExposureMiddleware"),
    ("segment_exposure.identity", "from_cookies"),
    ("segment_exposure.identity.browser_cookies", "ignored_cookie_values"),
    ("segment_exposure.serverless", "flush_after"),
    ("segment_exposure.serverless", "flush_each_request"),
    ("segment_exposure.metrics", "register"),
    ("segment_exposure.testing", "capture_exposures"),
    ("segment_exposure.testing", "SegmentCollector"),
    ("segment_exposure.testing", "AmplitudeEmulator"),
    ("segment_exposure.testing", "FlagConfigServer"),
    ("segment_exposure.cli", "main"),
]

#: The kept flat paths hand on the very objects of the modules that now hold them.
KEPT = {
    "segment_exposure.translate": "segment_exposure.delivery.translate",
    "segment_exposure.destination": "segment_exposure.delivery.destination",
    "segment_exposure.errors": "segment_exposure.delivery.errors",
    "segment_exposure.amplitude": "segment_exposure.delivery.amplitude",
    "segment_exposure.serverless": "segment_exposure.tracking.serverless",
    "segment_exposure.stats": "segment_exposure.tracking.stats",
}


@pytest.mark.parametrize(("module", "name"), DOCUMENTED, ids=[f"{m}.{n}" for m, n in DOCUMENTED])
def test_documented_name_imports(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is not None


@pytest.mark.parametrize(("old", "new"), sorted(KEPT.items()))
def test_kept_path_hands_on_the_same_objects(old: str, new: str) -> None:
    kept, home = importlib.import_module(old), importlib.import_module(new)
    assert kept.__all__ == home.__all__
    for name in home.__all__:
        assert getattr(kept, name) is getattr(home, name), name
