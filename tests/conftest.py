"""Shared fixtures: a real local Segment collector and providers that are always shut down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from segment_exposure import SegmentCollector, SegmentExposureTrackingProvider

from . import prerequisites

# The Experiment fixtures (flag server, clients) for every module that asks for them.
pytest_plugins = ["tests.experiment_fixtures"]

WRITE_KEY = "wk-test-3f9a1c77e2"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install what the selected tests need beyond Python (``requires`` marks) before the first one runs,
    so that a fresh clone needs no set-up step and no test's timeout pays for a download."""
    names = {name for item in session.items for mark in item.iter_markers("requires") for name in mark.args}
    if not names:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    prerequisites.PREREQUISITES.prepare(names, say)


@pytest.fixture(autouse=True)
def _required(request: pytest.FixtureRequest) -> None:
    """A test marked ``requires(...)`` skips (fails under CI) when something it names is unavailable."""
    for mark in request.node.iter_markers("requires"):
        for name in mark.args:
            prerequisites.require(name)


@pytest.fixture
def collector() -> Iterator[SegmentCollector]:
    with SegmentCollector(WRITE_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def module_collector() -> Iterator[SegmentCollector]:
    """One collector per test module (stopping one costs half a second); see ``reused_collector``."""
    with SegmentCollector(WRITE_KEY) as server:
        yield server


def reused_collector(module_collector: SegmentCollector) -> SegmentCollector:
    """The module's collector, up and emptied: what a module's own ``collector`` fixture returns."""
    module_collector.up()
    module_collector.clear()
    return module_collector


@pytest.fixture
def make_provider(collector: SegmentCollector) -> Iterator[Callable[..., SegmentExposureTrackingProvider]]:
    """Providers with a real Segment client that sends to ``collector`` quickly."""
    made: list[SegmentExposureTrackingProvider] = []

    def make(**kwargs: Any) -> SegmentExposureTrackingProvider:
        options = {"upload_interval": 0.05, **kwargs.pop("client_options", {})}
        if "analytics" not in kwargs:
            kwargs.setdefault("write_key", WRITE_KEY)
            kwargs.setdefault("host", collector.url)
        provider = SegmentExposureTrackingProvider(client_options=options, **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        collector.up()
        provider.shutdown(5)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout``: for conditions that have no event to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
