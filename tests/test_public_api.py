"""Every name the public surface (shared/API.md) documents imports from the package top, listed in its
``__all__``, and from the subpackage that defines it; the two are the same object.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import segment_exposure

#: (the subpackage or module that defines it, name), as the public surface documents them.
DOCUMENTED = [
    ("segment_exposure.exposure", "Exposure"),
    ("segment_exposure.exposure", "EXPOSURE_EVENT"),
    ("segment_exposure.tracking", "SegmentExposureTrackingProvider"),
    ("segment_exposure.tracking", "ProviderStats"),
    ("segment_exposure.tracking", "flush_after"),
    ("segment_exposure.tracking", "flush_each_request"),
    ("segment_exposure.identity", "bind_user"),
    ("segment_exposure.identity", "bound_user"),
    ("segment_exposure.identity", "from_cookies"),
    ("segment_exposure.experiment", "ExposureTrackingClient"),
    ("segment_exposure.delivery", "to_amplitude_event"),
    ("segment_exposure.delivery", "AmplitudeExposureDestination"),
    ("segment_exposure.delivery", "EventNotSupported"),
    ("segment_exposure.delivery", "InvalidEventPayload"),
    ("segment_exposure.delivery", "ValidationError"),
    ("segment_exposure.delivery", "RetryError"),
    ("segment_exposure.delivery", "AmplitudeClient"),
    ("segment_exposure.server", "create_app"),
    ("segment_exposure.server", "lambda_handler"),
    ("segment_exposure.integrations.flask", "SegmentExposure"),
    ("segment_exposure.integrations.django", "ExposureMiddleware"),
    ("segment_exposure.integrations.asgi", "SegmentExposureMiddleware"),
    ("segment_exposure.metrics", "register"),
    ("segment_exposure.openfeature", "ExposureHook"),
    ("segment_exposure.openfeature", "AmplitudeExperimentProvider"),
    ("segment_exposure.testing", "capture_exposures"),
    ("segment_exposure.testing", "InMemorySegmentClient"),
    ("segment_exposure.testing", "SegmentCollector"),
    ("segment_exposure.testing", "RudderStackCollector"),
    ("segment_exposure.testing", "AmplitudeEmulator"),
    ("segment_exposure.testing", "FlagConfigServer"),
]

#: Import paths that were thin re-exports before 0.2.0 and are gone (nothing had been released).
REMOVED = [
    "segment_exposure.translate",
    "segment_exposure.destination",
    "segment_exposure.errors",
    "segment_exposure.amplitude",
    "segment_exposure.serverless",
    "segment_exposure.stats",
]


@pytest.mark.parametrize(("home", "name"), DOCUMENTED, ids=[f"{m}.{n}" for m, n in DOCUMENTED])
def test_documented_name_imports_from_the_top_and_from_its_home(home: str, name: str) -> None:
    assert name in segment_exposure.__all__
    module = importlib.import_module(home)
    assert name in module.__all__
    assert getattr(segment_exposure, name) is getattr(module, name)


def test_every_name_of_the_top_all_resolves_to_the_object_of_its_home() -> None:
    names = set(segment_exposure.__all__) - {"__version__"}
    assert len(names) >= 40
    namespace: dict[str, object] = {}
    exec("from segment_exposure import *", namespace)  # what a star import gives
    for name in names:
        value = getattr(segment_exposure, name)
        assert namespace[name] is value, name
        assert name in dir(segment_exposure)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        segment_exposure.nope  # noqa: B018


@pytest.mark.parametrize("path", REMOVED)
def test_the_old_flat_paths_are_gone(path: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(path)


def test_importing_the_package_imports_no_optional_framework_or_sdk() -> None:
    code = (
        "import sys, segment_exposure\n"
        "heavy = {'flask', 'django', 'starlette', 'fastapi', 'amplitude_experiment', 'prometheus_client',"
        " 'segment', 'requests', 'openfeature'}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
