"""Metrics: the provider's collector, the webhook's counts and the Lambda's EMF line, with real parts.

The provider sends through the real Segment client to the local collector, the destination through the
real Amplitude client to the AmplitudeEmulator; every number read from a metric is compared with what the
emulators recorded or with ``stats()``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from segment_exposure import (
    DROP_REASONS,
    AmplitudeEmulator,
    AmplitudeExposureDestination,
    Exposure,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    create_app,
    lambda_handler,
    register,
)
from segment_exposure.metrics import register_from_setting, unregister
from segment_exposure.metrics.emf import emf_document, emit
from segment_exposure.metrics.webhook import (
    EVENT_OUTCOMES,
    CountingDestination,
    InvocationCounts,
    MetricsMiddleware,
    PrometheusRecorder,
)
from segment_exposure.server import reset_cache, sign

from . import test_django_integration  # noqa: F401  (configures Django, as for its own tests)
from .amplitude_cases import FAST, segment_event
from .serve_process import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "amp-metrics-key-7c6b5a4d3e"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(registry: CollectorRegistry) -> Samples:
    """Every sample the registry exposes, parsed back from the text format Prometheus scrapes."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def exposure(i: int) -> Exposure:
    return Exposure(flag_key="checkout", variant="treatment", experiment_key="exp-1", metadata=None)


def users(n: int, prefix: str = "u") -> list[dict[str, str]]:
    return [{"user_id": f"{prefix}-{i:05d}"} for i in range(n)]


# -- the provider ------------------------------------------------------------------------------------------


def test_provider_metrics_equal_stats_and_the_collector(
    make_provider: Callable[..., SegmentExposureTrackingProvider], collector: SegmentCollector
) -> None:
    registry = CollectorRegistry()
    provider = make_provider(max_queue_size=500)
    register(provider, registry)
    for user in users(30):
        provider.track(exposure(0), user)
    for user in users(5):  # the same user and flag again: deduplicated
        provider.track(exposure(0), user)
    provider.track(exposure(0), {})  # no identity: dropped
    assert provider.flush(10)
    found = samples(registry)
    stats = provider.stats()
    assert len(collector.events()) == 30
    for outcome, expected in (("tracked", 30), ("deduplicated", 5), ("delivered", 30)):
        got = value(found, "segment_exposure_provider_exposures_total", provider="default", outcome=outcome)
        assert got == stats[outcome] == expected, outcome
    for reason in DROP_REASONS:  # every reason is exposed, at 0 until it happens
        expected = 1 if reason == "no_identity" else 0
        got = value(found, "segment_exposure_provider_dropped_total", provider="default", reason=reason)
        assert got == stats["dropped"][reason] == expected, reason
    assert value(found, "segment_exposure_provider_queue_size", provider="default") == 0
    assert value(found, "segment_exposure_provider_queue_capacity", provider="default") == 500


def test_delivery_failures_are_scraped_as_dropped(
    make_provider: Callable[..., SegmentExposureTrackingProvider], collector: SegmentCollector
) -> None:
    registry = CollectorRegistry()
    provider = make_provider(client_options={"max_retries": 0})
    register(provider, registry)
    collector.fail(400, count=1000)  # Segment's client does not retry a 400: it gives up on the batch
    for user in users(12):
        provider.track(exposure(0), user)
    provider.flush(10)
    collector.up()
    found = samples(registry)
    dropped = value(
        found, "segment_exposure_provider_dropped_total", provider="default", reason="delivery_failed"
    )
    delivered = value(
        found, "segment_exposure_provider_exposures_total", provider="default", outcome="delivered"
    )
    assert dropped == 12
    assert delivered == len(collector.events()) == 0


def test_several_providers_get_a_provider_label(
    make_provider: Callable[..., SegmentExposureTrackingProvider],
) -> None:
    registry = CollectorRegistry()
    first, second = make_provider(), make_provider()
    register(first, registry)
    register(first, registry)  # again: nothing changes
    with pytest.raises(ValueError, match="name="):
        register(second, registry)
    register(second, registry, name="billing")
    first.track(exposure(0), {"user_id": "a-1"})
    for user in users(3, "b"):
        second.track(exposure(0), user)
    found = samples(registry)
    tracked = "segment_exposure_provider_exposures_total"
    assert value(found, tracked, provider="default", outcome="tracked") == 1
    assert value(found, tracked, provider="billing", outcome="tracked") == 3
    assert unregister(second, registry)
    assert not unregister(second, registry)
    assert not any(dict(labels).get("provider") == "billing" for _, labels in samples(registry))


def test_a_shut_down_provider_can_be_replaced_under_its_name(
    make_provider: Callable[..., SegmentExposureTrackingProvider],
) -> None:
    registry = CollectorRegistry()
    old = make_provider()
    register(old, registry)
    old.shutdown(5)
    new = make_provider()
    register(new, registry)  # an app reloaded in the same process
    new.track(exposure(0), {"user_id": "n-1"})
    found = samples(registry)
    assert (
        value(found, "segment_exposure_provider_exposures_total", provider="default", outcome="tracked") == 1
    )


@pytest.mark.slow
def test_the_flask_setting_registers_the_provider(collector: SegmentCollector) -> None:
    from flask import Flask
    from prometheus_client import REGISTRY

    from segment_exposure.integrations.flask import SegmentExposure

    from .conftest import WRITE_KEY

    app = Flask("metrics_app")
    app.config.update(
        SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY,
        SEGMENT_EXPOSURE_HOST=collector.url,
        SEGMENT_EXPOSURE_METRICS="flask-metrics-test",
    )
    ext = SegmentExposure(app)
    try:
        ext.provider.track(exposure(0), {"user_id": "f-1"})
        found = samples(REGISTRY)
        tracked = ("segment_exposure_provider_exposures_total", "flask-metrics-test")
        assert value(found, tracked[0], provider=tracked[1], outcome="tracked") == 1
    finally:
        assert unregister(ext.provider)
        ext.provider.shutdown(5)


@pytest.mark.slow
def test_the_django_setting_registers_the_provider(collector: SegmentCollector, settings: Any) -> None:
    from prometheus_client import REGISTRY

    from segment_exposure.integrations.django import get_provider

    from .conftest import WRITE_KEY

    settings.SEGMENT_EXPOSURE = {"WRITE_KEY": WRITE_KEY, "HOST": collector.url, "METRICS": "django-metrics"}
    provider = get_provider()
    try:
        provider.track(exposure(0), {"user_id": "d-1"})
        provider.track(exposure(0), {"user_id": "d-1"})
        found = samples(REGISTRY)
        name = "segment_exposure_provider_exposures_total"
        assert value(found, name, provider="django-metrics", outcome="deduplicated") == 1
        assert provider.flush(10)
    finally:
        assert unregister(provider)


@pytest.mark.slow
def test_the_asgi_option_registers_the_provider(collector: SegmentCollector) -> None:
    from prometheus_client import REGISTRY
    from starlette.applications import Starlette

    from segment_exposure.integrations.asgi import SegmentExposureMiddleware

    from .conftest import WRITE_KEY

    provider = SegmentExposureTrackingProvider(write_key=WRITE_KEY, host=collector.url)
    SegmentExposureMiddleware(Starlette(), provider=provider, metrics="asgi-metrics")
    try:
        provider.track(exposure(0), {"user_id": "a-1"})
        found = samples(REGISTRY)
        name = "segment_exposure_provider_exposures_total"
        assert value(found, name, provider="asgi-metrics", outcome="tracked") == 1
    finally:
        assert unregister(provider)
        provider.shutdown(5)


def test_the_metrics_setting_is_checked() -> None:
    from segment_exposure.integrations._common import check_options

    problems = check_options({"WRITE_KEY": "k", "METRICS": 3}, lambda n: n)
    assert [p.id for p in problems] == ["segment_exposure.E003"]
    assert "METRICS must be True, False or a provider label" in str(problems[0])
    assert not check_options({"WRITE_KEY": "k", "METRICS": True}, lambda n: n)
    with pytest.raises(ValueError, match="METRICS"):
        register_from_setting(object(), 3)
    assert register_from_setting(object(), False) is False


# -- the webhook's counts ----------------------------------------------------------------------------------


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as emulator:
        yield emulator


def test_webhook_counts_equal_the_emulators(amplitude: AmplitudeEmulator) -> None:
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry)
    destination = AmplitudeExposureDestination(
        API_KEY, endpoint=amplitude.http_api_url, deadline=5.0, max_attempts=3, **FAST
    )
    app = MetricsMiddleware(create_app(CountingDestination(destination, recorder), "s3cret"), recorder)
    client = Client(app)

    def call(body: bytes, signature: str) -> int:
        response = client.post("/", data=body, headers={"X-Signature": signature})
        return response.status_code

    amplitude.schedule(["503", "reset", None])
    batch = [segment_event(i, "m") for i in range(6)]
    batch.append(segment_event(6, "m", event="Page Viewed"))  # not an exposure
    batch.append(segment_event(7, "m", userId="x", anonymousId=None))  # too short an id: rejected
    body = json.dumps(batch).encode()
    assert call(body, sign(body, "s3cret")) == 200
    amplitude.inject("503", count=None)  # an outage: the next batch must be retried
    body = json.dumps([segment_event(i, "r") for i in range(4)]).encode()
    assert call(body, sign(body, "s3cret")) == 503
    assert call(b"[]", "wrong") == 401
    assert client.get("/healthz").status_code == 200  # probes are not counted
    destination.close()

    found = samples(registry)
    events = {o: value(found, "segment_exposure_destination_events_total", outcome=o) for o in EVENT_OUTCOMES}
    assert events == {"delivered": 6, "rejected": 1, "retry": 4, "not_exposure": 1}
    assert amplitude.ingested_count == 6
    codes: dict[str, int] = {}
    for request in amplitude.requests:
        code = "reset" if request.status == 0 else str(request.status)
        codes[code] = codes.get(code, 0) + 1
    scraped = {
        dict(labels)["code"]: v
        for (name, labels), v in found.items()
        if name == "segment_exposure_amplitude_requests_total"
    }
    assert scraped == codes and codes["503"] >= 2 and codes["reset"] == 1 and codes["200"] == 1
    statuses = {
        dict(labels)["status"]: v
        for (name, labels), v in found.items()
        if name == "segment_exposure_destination_requests_total"
    }
    assert statuses == {"200": 1, "503": 1, "401": 1}
    assert value(found, "segment_exposure_destination_request_seconds_count") == 3


# -- the Lambda's EMF line ---------------------------------------------------------------------------------


SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "emf_schema.json").read_text())


def check_emf(line: str) -> dict[str, Any]:
    """One EMF document on one line, valid against the specification, every target member present."""
    assert "\n" not in line and len(line.encode()) < 256 * 1024
    document: dict[str, Any] = json.loads(line)
    jsonschema.validate(document, SCHEMA)
    timestamp = document["_aws"]["Timestamp"]
    assert abs(timestamp - time.time() * 1000) < 60_000, "milliseconds since the epoch, now"
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(document[name], str) and 0 < len(document[name]) <= 1024, name
        for metric in directive["Metrics"]:
            target = document[metric["Name"]]
            assert isinstance(target, (int, float)) and not isinstance(target, bool), metric["Name"]
    return document


def test_the_emf_document_without_traffic() -> None:
    document = check_emf(json.dumps(emf_document(InvocationCounts())))
    assert document["Requests"] == 0 and document["Status"] == "none"


@pytest.fixture
def emf_lambda(monkeypatch: pytest.MonkeyPatch, amplitude: AmplitudeEmulator) -> Iterator[None]:
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.delenv("SEGMENT_SHARED_SECRET", raising=False)
    monkeypatch.setenv("AMPLITUDE_ENDPOINT", amplitude.http_api_url)
    monkeypatch.setenv("AMPLITUDE_DEADLINE", "3.0")
    monkeypatch.setenv("SEGMENT_EXPOSURE_EMF", "1")
    monkeypatch.setenv("SEGMENT_EXPOSURE_EMF_NAMESPACE", "Test/SegmentExposure")
    reset_cache()
    yield
    reset_cache()


def function_url_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": json.dumps(events),
        "isBase64Encoded": False,
    }


@pytest.mark.slow
def test_the_lambda_logs_one_emf_line_per_invocation(
    emf_lambda: None,
    amplitude: AmplitudeEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    amplitude.inject("503")
    batch = [segment_event(i, "l") for i in range(3)] + [segment_event(3, "l", event="Signed Up")]
    response = lambda_handler(function_url_event(batch))
    assert response["statusCode"] == 200
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(lines) == 1
    document = check_emf(lines[0])
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Test/SegmentExposure"
    assert (
        (document["EventsDelivered"], document["EventsNotExposure"])
        == (3, 1)
        == (
            amplitude.ingested_count,
            1,
        )
    )
    assert (document["EventsRejected"], document["EventsRetry"]) == (0, 0)
    assert document["AmplitudeCodes"] == {"200": 1, "503": 1}
    assert (document["AmplitudeRequests"], document["Amplitude5xx"], document["Amplitude2xx"]) == (2, 1, 1)
    assert (document["Status"], document["Requests"]) == ("200", 1)
    assert document["RequestSeconds"] > 0

    # The next invocation starts from zero: an outage asks Segment to retry.
    amplitude.inject("503", count=None)
    monkeypatch.setenv("AMPLITUDE_DEADLINE", "0.5")  # a new configuration: a new container, new counts
    response = lambda_handler(function_url_event([segment_event(9, "l")]))
    assert response["statusCode"] == 503
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    document = check_emf(lines[-1])
    assert (document["EventsDelivered"], document["EventsRetry"], document["Status"]) == (0, 1, "503")
    assert (
        document["AmplitudeRequests"]
        == document["Amplitude5xx"]
        == sum(1 for r in amplitude.requests[2:] if r.status == 503)
    )


def test_no_emf_line_unless_asked(
    emf_lambda: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SEGMENT_EXPOSURE_EMF")
    assert lambda_handler(function_url_event([segment_event(1, "n")]))["statusCode"] == 200
    assert '"_aws"' not in capsys.readouterr().out


def test_emit_writes_and_resets() -> None:
    counts = InvocationCounts()
    counts.events("delivered", 2)
    counts.amplitude("timeout")
    stream = io.StringIO()
    emit(counts, 200, 0.25, {}, stream)
    document = check_emf(stream.getvalue().rstrip("\n"))
    assert (document["EventsDelivered"], document["AmplitudeNoAnswer"]) == (2, 1)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "SegmentExposure"
    assert not counts.outcomes and not counts.amplitude_codes and not counts.statuses


# -- serve's flags -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_metrics_bind_to_loopback_and_their_directory_is_removed(amplitude: AmplitudeEmulator) -> None:
    server = ServeProcess(
        {"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_ENDPOINT": amplitude.http_api_url, "METRICS_PORT": "0"}
    )
    try:
        found = server.wait_for(r"metrics: serving Prometheus metrics at (http://\S+) \(.*files in (\S+)\)")
        url, directory = found.group(1), Path(found.group(2))
        assert url.startswith("http://127.0.0.1:") and directory.is_dir()
        body = json.dumps([segment_event(1, "d")])
        assert requests.post(server.url + "/", data=body, timeout=10).status_code == 200
        assert any(directory.glob("counter_*.db")), "the worker writes its counters there"
        text = requests.get(url, timeout=10).text
        assert 'segment_exposure_destination_events_total{outcome="delivered"} 1.0' in text
    finally:
        assert server.stop() == 0
    assert not directory.exists()


@pytest.mark.slow
def test_serve_refuses_a_bad_metrics_port() -> None:
    env = {**os.environ, "AMPLITUDE_API_KEY": API_KEY, "METRICS_PORT": "eighty"}
    done = subprocess.run(
        [sys.executable, "-m", "segment_exposure", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "METRICS_PORT must be a whole number" in done.stderr and "Traceback" not in done.stderr
