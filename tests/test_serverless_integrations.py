"""``FLUSH_EACH_REQUEST`` in the Flask and Django integrations: exposures delivered before the response.

Segment's consumer is given a 30 s ``upload_interval``, so an exposure at the collector by the time the
test client has the response can only have been posted by the request's own flush.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import django  # type: ignore[import-untyped]
import pytest
import requests
from django.conf import settings as django_conf  # type: ignore[import-untyped]
from flask import Flask

from segment_exposure import Exposure, SegmentCollector

from . import django_settings
from .conftest import WRITE_KEY, reused_collector
from .serverless_runtime import LambdaContext

if not django_conf.configured:  # as tests/test_django_integration.py does, whichever runs first
    django_conf.configure(
        **{name: getattr(django_settings, name) for name in dir(django_settings) if name.isupper()}
    )
    django.setup()

from django.core import checks  # type: ignore[import-untyped]
from django.test import AsyncClient, Client  # type: ignore[import-untyped]

from segment_exposure import SegmentExposure
from segment_exposure.integrations.django import get_provider

PLATFORM_VARIABLES = ("AWS_LAMBDA_FUNCTION_NAME", "FUNCTION_TARGET", "FUNCTION_NAME", "K_SERVICE")
SLOW_CONSUMER = {"upload_interval": 30.0}
CHECKOUT = Exposure("checkout", "treatment", "exp-1")


@pytest.fixture(autouse=True)
def off_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PLATFORM_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def collector(module_collector: SegmentCollector) -> SegmentCollector:
    return reused_collector(module_collector)


# -- Flask -----------------------------------------------------------------------------------------


@pytest.fixture
def flask_app(collector: SegmentCollector) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(
            SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY,
            SEGMENT_EXPOSURE_HOST=collector.url,
            SEGMENT_EXPOSURE_CLIENT_OPTIONS=SLOW_CONSUMER,
            SEGMENT_EXPOSURE_IDENTIFY=lambda request: {"user_id": request.args.get("user")},
            **config,
        )
        ext = SegmentExposure(app)
        apps.append(app)

        @app.get("/checkout")
        def checkout() -> str:
            ext.provider.track(CHECKOUT)
            return "ok"

        @app.get("/boom")
        def boom() -> str:
            ext.provider.track(CHECKOUT)
            raise RuntimeError("the view failed")

        return app

    yield make
    for app in apps:
        app.extensions["segment_exposure"].provider.shutdown(0.1)


def test_flask_flush_each_request_delivers_before_the_response(
    flask_app: Any, collector: SegmentCollector
) -> None:
    client = flask_app(SEGMENT_EXPOSURE_FLUSH_EACH_REQUEST=True).test_client()
    assert client.get("/checkout?user=alice").status_code == 200
    assert [m["userId"] for m in collector.events()] == ["alice"]  # already there, no waiting
    assert client.get("/boom?user=bob").status_code == 500  # the view raised: still delivered
    assert [m["userId"] for m in collector.events()] == ["alice", "bob"]
    requests = collector.requests
    client.get("/checkout?user=alice")  # a repeat: nothing to send, no request
    assert collector.requests == requests


def test_flask_flush_is_bounded_by_a_lambda_context_in_the_environ(
    flask_app: Any, collector: SegmentCollector
) -> None:
    app = flask_app(SEGMENT_EXPOSURE_FLUSH_EACH_REQUEST=True)
    # As serverless-wsgi passes it: 0.3 s left, less than the 0.5 s margin, so no attempt is made.
    environ = {"serverless.context": LambdaContext(300)}
    assert app.test_client().get("/checkout?user=alice", environ_overrides=environ).status_code == 200
    assert collector.requests == 0
    assert app.extensions["segment_exposure"].provider.stats()["dropped"]["flush_deadline"] == 1


def test_flask_flush_each_request_defaults_to_the_platform(
    flask_app: Any, collector: SegmentCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    flask_app().test_client().get("/checkout?user=alice")
    assert collector.events() == []  # off the platform: left to the background thread
    monkeypatch.setenv("K_SERVICE", "checkout-web")
    flask_app().test_client().get("/checkout?user=bob")
    assert [m["userId"] for m in collector.events()] == ["bob"]


def test_flask_flush_each_request_must_be_a_bool(flask_app: Any) -> None:
    with pytest.raises(RuntimeError, match="SEGMENT_EXPOSURE_FLUSH_EACH_REQUEST must be a bool"):
        flask_app(SEGMENT_EXPOSURE_FLUSH_EACH_REQUEST="yes")


# -- Django ----------------------------------------------------------------------------------------


@pytest.fixture
def configure(settings: Any, collector: SegmentCollector) -> Any:
    def set_options(**extra: Any) -> None:
        settings.SEGMENT_EXPOSURE = {
            "WRITE_KEY": WRITE_KEY,
            "HOST": collector.url,
            "CLIENT_OPTIONS": SLOW_CONSUMER,
            "FLUSH_TIMEOUT": 0.1,  # the shutdown when the setting is restored: its consumer idles 30 s
            "IDENTIFY": "tests.django_settings.identify_from_header",
            **extra,
        }

    return set_options


def test_django_flush_each_request_delivers_before_the_response(
    configure: Any, collector: SegmentCollector
) -> None:
    configure(FLUSH_EACH_REQUEST=True)
    response = Client().get("/checkout", headers={"X-User": "alice"})
    assert response.json()["tracked"] == [True, True]
    assert [m["userId"] for m in collector.events()] == ["alice"]
    assert get_provider().stats()["delivered"] == 1


def test_django_flush_each_request_in_async_views(configure: Any, collector: SegmentCollector) -> None:
    from asgiref.sync import async_to_sync

    configure(FLUSH_EACH_REQUEST=True)
    response = async_to_sync(AsyncClient().get)("/checkout-async", headers={"X-User": "carol"})
    assert response.json()["tracked"] == [True]
    assert [m["userId"] for m in collector.events()] == ["carol"]


def test_django_flush_each_request_defaults_to_the_platform(
    configure: Any, collector: SegmentCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure()
    Client().get("/checkout", headers={"X-User": "alice"})
    assert collector.events() == []
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "checkout-api")
    configure(IDENTIFY="tests.django_settings.identify_from_header")  # a new configuration: re-read
    Client().get("/checkout", headers={"X-User": "bob"})
    assert [m["userId"] for m in collector.events()] == ["bob"]


def test_django_check_reports_a_flush_each_request_that_is_not_a_bool(configure: Any) -> None:
    configure(FLUSH_EACH_REQUEST="yes")
    ids = {m.id for m in checks.run_checks(tags=["segment_exposure"])}
    assert "segment_exposure.E003" in ids


# -- ASGI ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def asgi_app(collector: SegmentCollector, **options: Any) -> Iterator[Callable[[str], Any]]:
    """A Starlette app behind the middleware, served by a real uvicorn: a function that GETs a path."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from segment_exposure import SegmentExposureTrackingProvider
    from segment_exposure.integrations.asgi import SegmentExposureMiddleware

    from .uvicorn_support import UvicornThread

    provider = SegmentExposureTrackingProvider(
        write_key=WRITE_KEY, host=collector.url, client_options=SLOW_CONSUMER
    )

    async def checkout(request: Request) -> PlainTextResponse:
        provider.track(CHECKOUT)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/checkout", checkout)])
    app.add_middleware(
        SegmentExposureMiddleware,
        provider=provider,
        identify=lambda connection: {"user_id": connection.query_params.get("user")},
        **options,
    )
    try:
        with UvicornThread(app) as server, requests.Session() as session:
            yield lambda path: session.get(server.url + path, timeout=10)
    finally:
        provider.shutdown(0.1)


def test_asgi_flush_each_request_delivers_before_the_response(collector: SegmentCollector) -> None:
    with asgi_app(collector, flush_each_request=True) as get:
        assert get("/checkout?user=alice").status_code == 200
        assert [m["userId"] for m in collector.events()] == ["alice"]  # already there, no waiting
        requests_before = collector.requests
        assert get("/checkout?user=alice").status_code == 200  # a repeat: nothing to send, no request
        assert collector.requests == requests_before


@pytest.mark.slow
def test_asgi_flush_each_request_defaults_to_the_platform(
    collector: SegmentCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    with asgi_app(collector) as get:
        assert get("/checkout?user=alice").status_code == 200
        assert collector.events() == []  # off the platform: left to the background thread
    collector.clear()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "checkout-api")
    with asgi_app(collector) as get:
        assert get("/checkout?user=bob").status_code == 200
        assert [m["userId"] for m in collector.events()] == ["bob"]
