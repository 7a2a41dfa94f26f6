"""The ASGI middleware under a real uvicorn (real HTTP and lifespan), with FastAPI and Starlette apps,
a real provider and the local Segment collector."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets.sync.client
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from segment_exposure import (
    Exposure,
    SegmentCollector,
    SegmentExposureMiddleware,
    SegmentExposureTrackingProvider,
    bound_user,
    identity_from_user,
)
from segment_exposure.integrations.fastapi import ExperimentClient, ExposureProvider

from .uvicorn_support import UvicornThread

CHECKOUT = Exposure("checkout", "treatment", "exp-1")
ANON = "38c9a8e2-5a1f-4d6b-9c3e-1f2a3b4c5d6e"

MakeProvider = Callable[..., SegmentExposureTrackingProvider]


def identity() -> dict[str, str | None]:
    user_id, device_id = identity_from_user(bound_user())
    return {"user_id": user_id, "device_id": device_id}


def fastapi_app(provider: SegmentExposureTrackingProvider, **options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SegmentExposureMiddleware, provider=provider, **options)
    in_flight = {"now": 0, "max": 0}

    @app.get("/async")
    async def checkout_async(provider: ExposureProvider) -> dict[str, Any]:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        try:
            await asyncio.sleep(random.uniform(0, 0.02))  # interleave with the other requests
            return {"tracked": provider.track(CHECKOUT), **identity()}
        finally:
            in_flight["now"] -= 1

    @app.get("/sync")
    def checkout_sync(provider: ExposureProvider) -> dict[str, Any]:  # runs in the thread pool
        return {"tracked": provider.track(CHECKOUT), **identity()}

    @app.get("/stream")
    def stream(provider: ExposureProvider) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            yield "start "
            await asyncio.sleep(0)
            yield json.dumps({"tracked": provider.track(CHECKOUT), **identity()})

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/background")
    def background(tasks: BackgroundTasks, provider: ExposureProvider) -> dict[str, str]:
        tasks.add_task(provider.track, Exposure("after-response", "on"))
        return {"ok": "queued"}

    @app.get("/experiment")
    def experiment(client: ExperimentClient) -> dict[str, Any]:
        return {"variant": client.variant(None, "device-flag").key}

    app.state.in_flight = in_flight
    return app


@pytest.fixture
def provider(make_provider: MakeProvider) -> SegmentExposureTrackingProvider:
    return make_provider()


def delivered(provider: SegmentExposureTrackingProvider, collector: SegmentCollector) -> list[dict[str, Any]]:
    assert provider.flush(30)
    return collector.events()


# -- identity per request --------------------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_concurrent_requests_each_carry_their_own_identity(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    app = fastapi_app(provider)
    n = 200

    async def hit_all(url: str) -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

            async def one(i: int) -> dict[str, Any]:
                headers = {
                    "Cookie": f"ajs_anonymous_id=anon-{i:04d}-device; ajs_user_id=%22user-{i:04d}%22",
                    "User-Agent": f"agent-{i:04d}",
                }
                response = await client.get("/async" if i % 2 else "/sync", headers=headers)
                assert response.status_code == 200
                return {"i": i, **response.json()}

            return await asyncio.gather(*(one(i) for i in range(n)))

    with UvicornThread(app) as server:
        answers = asyncio.run(hit_all(server.url))
    for answer in answers:
        i = answer["i"]
        assert answer == {
            "i": i,
            "tracked": True,
            "user_id": f"user-{i:04d}",
            "device_id": f"anon-{i:04d}-device",
        }
    events = delivered(provider, collector)
    assert len(events) == n
    for event in events:
        i = int(event["anonymousId"].split("-")[1])
        assert event["userId"] == f"user-{i:04d}"
        assert event["context"]["userAgent"] == f"agent-{i:04d}"
        assert event["context"]["ip"] == "127.0.0.1"
    assert app.state.in_flight["max"] > 1  # the async requests really overlapped


@pytest.mark.slow
def test_streaming_bodies_and_background_tasks_keep_the_identity(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    app = fastapi_app(provider)
    cookies = {"Cookie": f"ajs_anonymous_id={ANON}"}
    with UvicornThread(app) as server:
        body = httpx.get(server.url + "/stream", headers=cookies).text
        assert json.loads(body.removeprefix("start ")) == {
            "tracked": True,
            "user_id": None,
            "device_id": ANON,
        }
        assert httpx.get(server.url + "/background", headers=cookies).status_code == 200
    events = delivered(provider, collector)
    assert sorted(e["properties"]["flag_key"] for e in events) == ["after-response", "checkout"]
    assert {e["anonymousId"] for e in events} == {ANON}


@pytest.mark.slow
def test_amplitude_cookie_and_identity_order(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    import base64
    from urllib.parse import quote

    key = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    value = base64.b64encode(quote(json.dumps({"deviceId": "amp-device-9", "userId": "amp-user-9"})).encode())
    app = fastapi_app(provider, amplitude_api_key=key, identity_sources=["amplitude", "segment"])
    headers = {"Cookie": f"ajs_anonymous_id={ANON}; AMP_{key[:10]}={value.decode()}"}
    with UvicornThread(app) as server:
        assert httpx.get(server.url + "/sync", headers=headers).json()["device_id"] == "amp-device-9"
    [event] = delivered(provider, collector)
    assert (event["userId"], event["anonymousId"]) == ("amp-user-9", "amp-device-9")


@pytest.mark.slow
@pytest.mark.parametrize("proxy_headers", [False, True])
def test_client_ip_is_what_uvicorn_made_of_proxy_headers(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector, proxy_headers: bool
) -> None:
    app = fastapi_app(provider)
    headers = {"Cookie": f"ajs_anonymous_id={ANON}", "X-Forwarded-For": "198.51.100.23"}
    with UvicornThread(app, proxy_headers=proxy_headers, forwarded_allow_ips="127.0.0.1") as server:
        httpx.get(server.url + "/sync", headers=headers)
    [event] = delivered(provider, collector)
    assert event["context"]["ip"] == ("198.51.100.23" if proxy_headers else "127.0.0.1")


@pytest.mark.slow
def test_privacy_switches(provider: SegmentExposureTrackingProvider, collector: SegmentCollector) -> None:
    app = fastapi_app(provider, send_user_agent=False, send_ip=False, send_locale=False)
    headers = {"Cookie": f"ajs_anonymous_id={ANON}", "Accept-Language": "sv-SE", "User-Agent": "agent-x"}
    with UvicornThread(app) as server:
        httpx.get(server.url + "/sync", headers=headers)
    [event] = delivered(provider, collector)
    assert not {"userAgent", "ip", "locale"} & set(event["context"])


@pytest.mark.slow
def test_experiment_dependency_buckets_by_the_browser_device_id(
    provider: SegmentExposureTrackingProvider,
    collector: SegmentCollector,
    flag_server: Any,
    make_local_client: Any,
) -> None:
    from segment_exposure.experiment import ExposureTrackingClient

    flag_server.set_flags(
        [
            {
                "key": "device-flag",
                "metadata": {"deployed": True, "evaluationMode": "local", "flagType": "experiment"},
                "segments": [
                    {
                        "conditions": [
                            [{"op": "is", "selector": ["context", "user", "device_id"], "values": [ANON]}]
                        ],
                        "variant": "treatment",
                    },
                    {"variant": "off"},
                ],
                "variants": {
                    "off": {"key": "off", "metadata": {"default": True}},
                    "treatment": {"key": "treatment"},
                },
            }
        ]
    )
    experiment = ExposureTrackingClient(make_local_client(), provider)
    app = fastapi_app(provider, experiment=experiment)
    with UvicornThread(app) as server:
        mine = httpx.get(server.url + "/experiment", headers={"Cookie": f"ajs_anonymous_id={ANON}"})
        other = httpx.get(server.url + "/experiment", headers={"Cookie": "ajs_anonymous_id=other-device-1"})
    assert (mine.json(), other.json()) == ({"variant": "treatment"}, {"variant": "off"})
    [event] = [e for e in delivered(provider, collector) if e["anonymousId"] == ANON]
    assert event["properties"]["variant"] == "treatment"


# -- Starlette: its authentication, websockets, custom identify ------------------------------------


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


def starlette_app(provider: SegmentExposureTrackingProvider, **options: Any) -> Starlette:
    async def checkout(request: Request) -> JSONResponse:
        return JSONResponse({"tracked": provider.track(CHECKOUT), **identity()})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"tracked": provider.track(CHECKOUT), **identity()})
        await websocket.close()

    return Starlette(
        routes=[Route("/checkout", checkout), WebSocketRoute("/ws", socket)],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),  # outer: runs first
            Middleware(SegmentExposureMiddleware, provider=provider, **options),
        ],
    )


@pytest.mark.slow
def test_starlette_authenticated_user_wins_for_user_id_and_websockets_are_bound(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector
) -> None:
    app = starlette_app(provider, user_id_attribute="username")
    headers = {"Cookie": f"ajs_anonymous_id={ANON}; ajs_user_id=cookie-user-1", "X-User": "grace-hopper"}
    with UvicornThread(app) as server:
        answer = httpx.get(server.url + "/checkout", headers=headers).json()
        with websockets.sync.client.connect(
            server.url.replace("http", "ws") + "/ws",
            additional_headers={"Cookie": "ajs_anonymous_id=ws-device-1"},
        ) as ws:
            over_socket = json.loads(ws.recv(timeout=30))
    assert answer == {"tracked": True, "user_id": "grace-hopper", "device_id": ANON}
    assert over_socket == {"tracked": True, "user_id": None, "device_id": "ws-device-1"}
    assert len(delivered(provider, collector)) == 2


@pytest.mark.slow
def test_custom_async_identify_and_one_that_raises(
    provider: SegmentExposureTrackingProvider, collector: SegmentCollector, caplog: pytest.LogCaptureFixture
) -> None:
    async def identify(conn: HTTPConnection) -> dict[str, str | None]:
        if conn.headers.get("x-fail"):
            raise KeyError("no such session")
        return {"user_id": conn.headers.get("x-account"), "device_id": None}

    app = starlette_app(provider, identify=identify)
    with UvicornThread(app) as server:
        ok = httpx.get(server.url + "/checkout", headers={"X-Account": "account-77"}).json()
        failed = httpx.get(server.url + "/checkout", headers={"X-Fail": "1"})
    assert ok == {"tracked": True, "user_id": "account-77", "device_id": None}
    assert failed.status_code == 200 and failed.json()["tracked"] is False
    assert "identify resolver raised" in caplog.text


def test_dependencies_without_the_middleware_say_what_is_missing() -> None:
    from segment_exposure.integrations.asgi import get_experiment, get_provider

    bare = HTTPConnection({"type": "http", "headers": []})
    with pytest.raises(RuntimeError, match="SegmentExposureMiddleware is not on this app"):
        get_provider(bare)
    provider_like = type("P", (), {"track": lambda self, *a: True})()
    middleware = SegmentExposureMiddleware(FastAPI(), provider=provider_like)
    with pytest.raises(RuntimeError, match="no Experiment client"):
        get_experiment(HTTPConnection({"type": "http", "headers": [], "segment_exposure": middleware}))


def test_bad_arguments_are_refused() -> None:
    app = FastAPI()
    with pytest.raises(TypeError, match="provider must be"):
        SegmentExposureMiddleware(app, provider=object())
    provider_like = type("P", (), {"track": lambda self, *a: True})()
    with pytest.raises(ValueError, match="identity_sources"):
        SegmentExposureMiddleware(app, provider=provider_like, identity_sources=["cookies"])
    with pytest.raises(ValueError, match="amplitude_api_key") as refused:
        SegmentExposureMiddleware(app, provider=provider_like, amplitude_api_key="k-secret")
    assert "k-secret" not in str(refused.value)


# -- lifespan: the shutdown flush ------------------------------------------------------------------


@pytest.mark.slow
def test_shutdown_flushes_what_the_last_requests_tracked(
    make_provider: MakeProvider, collector: SegmentCollector
) -> None:
    provider = make_provider()
    collector.slow(1.0, count=None)  # each delivery takes a second: in flight when shutdown starts
    app = fastapi_app(provider)
    with UvicornThread(app) as server:
        for i in range(3):
            httpx.get(server.url + "/sync", headers={"Cookie": f"ajs_anonymous_id=last-device-{i}"})
    # The lifespan shutdown returned only once the provider had delivered everything.
    stats = provider.stats()
    assert (stats["tracked"], stats["delivered"]) == (3, 3)
    assert {e["anonymousId"] for e in collector.events()} == {f"last-device-{i}" for i in range(3)}
    assert server.shutdown_seconds is not None and server.shutdown_seconds >= 0.5


@pytest.mark.slow
def test_shutdown_flush_keeps_to_its_deadline_when_segment_is_down(
    make_provider: MakeProvider, collector: SegmentCollector
) -> None:
    provider = make_provider()
    collector.down()
    app = fastapi_app(provider, flush_timeout=1.0)
    with UvicornThread(app) as server:
        httpx.get(server.url + "/sync", headers={"Cookie": f"ajs_anonymous_id={ANON}"})
        started = time.monotonic()
    assert time.monotonic() - started < 10  # the flush's 1 s deadline, plus uvicorn's own shutdown
    assert provider.stats()["delivered"] == 0
