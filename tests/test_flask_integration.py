"""The Flask integration through Flask's test client, a real provider and a local Segment collector."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from amplitude_experiment import User
from flask import Flask, Request, current_app, g, jsonify, session

from segment_exposure import (
    Exposure,
    SegmentCollector,
    SegmentExposure,
    SegmentExposureTrackingProvider,
    bound_user,
    identity_from_user,
    request_scope,
)
from segment_exposure.integrations.flask import default_identify

from .conftest import WRITE_KEY, reused_collector

CHECKOUT = Exposure("checkout", "treatment", "exp-1")

MakeApp = Callable[..., Flask]


def identify_from_header(req: Request) -> User:
    """A custom resolver: ids from headers, plus a field that lands in the Segment context."""
    return User(user_id=req.headers.get("X-User"), device_id=req.headers.get("X-Device"), country="NL")


@pytest.fixture
def collector(module_collector: SegmentCollector) -> SegmentCollector:
    """One collector for the module (stopping one costs half a second), emptied for each test.

    Every test's providers are flushed or shut down before it ends, so nothing arrives late.
    """
    return reused_collector(module_collector)


@pytest.fixture
def make_app(collector: SegmentCollector) -> Iterator[MakeApp]:
    """Flask apps whose extension owns a real provider sending to ``collector``; shut down afterwards."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY="test-only",
            SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY,
            SEGMENT_EXPOSURE_HOST=collector.url,
            SEGMENT_EXPOSURE_CLIENT_OPTIONS={"upload_interval": 0.05},
        )
        for key, value in config.items():
            if value is None:
                app.config.pop(key, None)
            else:
                app.config[key] = value

        @app.before_request
        def load_user() -> None:  # the flaskr pattern: g.user from the session
            user_id = session.get("user_id")
            g.user = {"id": user_id, "email": f"{user_id}@example.com"} if user_id else None

        SegmentExposure(app)
        apps.append(app)

        @app.post("/login/<user_id>")
        def login(user_id: str) -> Any:
            session["user_id"] = user_id
            return "ok"

        @app.get("/checkout")
        def checkout() -> Any:
            provider = current_app.extensions["segment_exposure"].provider
            first = provider.track(CHECKOUT)
            repeat = provider.track(CHECKOUT)  # the page reads the flag twice
            user_id, device_id = identity_from_user(bound_user())
            return jsonify(tracked=[first, repeat], user_id=user_id, device_id=device_id)

        @app.get("/boom")
        def boom() -> Any:
            assert bound_user() is not None
            raise RuntimeError("the view failed")

        return app

    yield make
    for app in apps:
        with app.app_context():
            app.extensions["segment_exposure"].shutdown(5)


def delivered(app: Flask, collector: SegmentCollector) -> list[dict[str, Any]]:
    """Every exposure the app's provider sent, once it says all of them were delivered."""
    assert app.extensions["segment_exposure"].provider.flush(10)
    return collector.events()


def test_logged_in_user_is_tracked_with_user_and_device_id(
    make_app: MakeApp, collector: SegmentCollector
) -> None:
    app = make_app()
    client = app.test_client()
    client.set_cookie("amp_device_id", "device-alice")
    client.post("/login/alice-0001")
    response = client.get("/checkout")
    assert response.get_json() == {
        "tracked": [True, True],
        "user_id": "alice-0001",
        "device_id": "device-alice",
    }
    [event] = delivered(app, collector)
    assert event["userId"] == "alice-0001"
    assert event["anonymousId"] == "device-alice"
    assert event["properties"] == {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"}
    stats = app.extensions["segment_exposure"].provider.stats()
    assert (stats["tracked"], stats["deduplicated"]) == (1, 1)


def test_device_cookie_only_is_tracked_anonymously(make_app: MakeApp, collector: SegmentCollector) -> None:
    app = make_app()
    client = app.test_client()
    client.set_cookie("amp_device_id", "device-anon-7")
    assert client.get("/checkout").get_json()["tracked"] == [True, True]
    [event] = delivered(app, collector)
    assert event["userId"] is None
    assert event["anonymousId"] == "device-anon-7"


def test_no_identity_at_all_drops_the_exposure_and_sets_no_cookie(
    make_app: MakeApp, collector: SegmentCollector
) -> None:
    app = make_app()
    response = app.test_client().get("/checkout")
    assert response.get_json()["tracked"] == [False, False]
    assert "Set-Cookie" not in response.headers  # no cookie unless asked for
    assert delivered(app, collector) == []
    assert app.extensions["segment_exposure"].provider.stats()["dropped"]["no_identity"] == 2


def test_set_device_id_cookie_gives_anonymous_visitors_a_stable_id(
    make_app: MakeApp, collector: SegmentCollector
) -> None:
    app = make_app(SEGMENT_EXPOSURE_SET_DEVICE_ID_COOKIE=True)
    client = app.test_client()
    first = client.get("/checkout")
    device_id = first.get_json()["device_id"]
    assert device_id and len(device_id) == 36
    cookie = client.get_cookie("amp_device_id")
    assert cookie is not None and cookie.value == device_id
    assert "SameSite=Lax" in first.headers["Set-Cookie"]
    second = client.get("/checkout")
    assert second.get_json()["device_id"] == device_id
    assert "Set-Cookie" not in second.headers
    [event] = delivered(app, collector)  # the second request repeated the first: deduplicated
    assert (event["userId"], event["anonymousId"]) == (None, device_id)


def test_identity_is_unbound_after_each_request_even_when_the_view_raises(make_app: MakeApp) -> None:
    app = make_app()
    client = app.test_client()
    client.set_cookie("amp_device_id", "device-1")
    assert client.get("/boom").status_code == 500
    assert bound_user() is None
    app.testing = True  # the exception now propagates out of the client, after teardown
    with pytest.raises(RuntimeError, match="the view failed"):
        client.get("/boom")
    assert bound_user() is None
    assert request_scope() is None
    client.get("/checkout")
    assert bound_user() is None


def test_requests_inside_an_app_context_share_g_but_not_identity(
    make_app: MakeApp, collector: SegmentCollector
) -> None:
    # Flask reuses an app context the caller pushed, so g outlives each request: nothing may leak.
    app = make_app(SEGMENT_EXPOSURE_SET_DEVICE_ID_COOKIE=True)
    with app.app_context():
        ids = []
        for _ in range(2):
            ids.append(app.test_client().get("/checkout").get_json()["device_id"])
            assert bound_user() is None
        assert ids[0] != ids[1]  # each new visitor gets an id of its own
        returning = app.test_client()
        returning.set_cookie("amp_device_id", "device-back")
        response = returning.get("/checkout")
        assert response.get_json()["device_id"] == "device-back"
        assert "Set-Cookie" not in response.headers  # no id of an earlier request is handed out
        received = sorted(m["anonymousId"] for m in delivered(app, collector))
        assert received == sorted([*ids, "device-back"])


def test_each_request_gets_a_fresh_request_scope(make_app: MakeApp) -> None:
    app = make_app()

    @app.get("/scope")
    def scope() -> Any:
        current = request_scope()
        assert current is not None
        before = dict(current)
        current["visits"] = current.get("visits", 0) + 1
        return jsonify(before=before)

    client = app.test_client()
    client.set_cookie("amp_device_id", "device-1")
    assert client.get("/scope").get_json() == {"before": {}}
    assert client.get("/scope").get_json() == {"before": {}}


def test_concurrent_requests_keep_their_own_identity(make_app: MakeApp, collector: SegmentCollector) -> None:
    app = make_app()
    both_inside = threading.Barrier(2, timeout=10)

    @app.get("/together")
    def together() -> Any:
        both_inside.wait()  # both requests are bound at the same time before either tracks
        current_app.extensions["segment_exposure"].provider.track(CHECKOUT)
        return jsonify(identity_from_user(bound_user()))

    answers: dict[str, Any] = {}

    def visit(device_id: str) -> None:
        client = app.test_client()
        client.set_cookie("amp_device_id", device_id)
        answers[device_id] = client.get("/together").get_json()

    threads = [threading.Thread(target=visit, args=(f"device-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert answers == {"device-0": [None, "device-0"], "device-1": [None, "device-1"]}
    assert sorted(m["anonymousId"] for m in delivered(app, collector)) == ["device-0", "device-1"]


def test_identify_callable_and_dotted_path(make_app: MakeApp, collector: SegmentCollector) -> None:
    for identify in (identify_from_header, f"{__name__}.identify_from_header"):
        collector.clear()
        app = make_app(SEGMENT_EXPOSURE_IDENTIFY=identify)
        headers = {"X-User": f"user-{len(str(identify))}", "X-Device": "device-h"}
        app.test_client().get("/checkout", headers=headers)
        [event] = delivered(app, collector)
        assert (event["userId"], event["anonymousId"]) == (headers["X-User"], "device-h")
        assert event["context"]["location"] == {"country": "NL"}


def test_default_identify_can_be_extended(make_app: MakeApp, collector: SegmentCollector) -> None:
    def with_language(req: Request) -> object:
        user = default_identify(req)
        assert isinstance(user, User)
        user.language = req.headers.get("Accept-Language")
        return user

    app = make_app(SEGMENT_EXPOSURE_IDENTIFY=with_language)
    client = app.test_client()
    client.set_cookie("amp_device_id", "device-g")
    client.post("/login/grace")
    client.get("/checkout", headers={"Accept-Language": "nl-NL"})
    [event] = delivered(app, collector)
    assert (event["userId"], event["anonymousId"]) == ("grace", "device-g")
    assert event["context"]["locale"] == "nl-NL"


def test_user_id_attribute_picks_the_id_from_g_user(make_app: MakeApp, collector: SegmentCollector) -> None:
    app = make_app(SEGMENT_EXPOSURE_USER_ID_ATTRIBUTE="email")
    client = app.test_client()
    client.post("/login/grace")
    assert client.get("/checkout").get_json()["user_id"] == "grace@example.com"
    [event] = delivered(app, collector)
    assert (event["userId"], event["anonymousId"]) == ("grace@example.com", None)


def test_a_raising_identify_leaves_the_request_working_without_identity(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req: Request) -> object:
        raise KeyError("no such header")

    app = make_app(SEGMENT_EXPOSURE_IDENTIFY=broken)
    response = app.test_client().get("/checkout")
    assert response.status_code == 200
    assert response.get_json()["tracked"] == [False, False]
    assert "IDENTIFY resolver raised" in caplog.text


def test_extension_and_provider_are_reachable_the_usual_way(
    make_app: MakeApp, make_provider: Callable[..., SegmentExposureTrackingProvider]
) -> None:
    provider = make_provider()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is ignored: no warning
        app = make_app(
            SEGMENT_EXPOSURE_WRITE_KEY=None,
            SEGMENT_EXPOSURE_HOST=None,
            SEGMENT_EXPOSURE_CLIENT_OPTIONS=None,
            SEGMENT_EXPOSURE_PROVIDER=provider,
        )
    ext = app.extensions["segment_exposure"]
    assert isinstance(ext, SegmentExposure)
    assert ext.provider is provider  # outside an app context: the only app's
    with app.app_context():
        assert current_app.extensions["segment_exposure"].provider is provider


def test_one_extension_serves_several_apps(collector: SegmentCollector) -> None:
    ext = SegmentExposure()
    apps = [Flask(f"app{i}") for i in range(2)]
    for app in apps:
        app.config.update(
            SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY,
            SEGMENT_EXPOSURE_HOST=collector.url,
            SEGMENT_EXPOSURE_CLIENT_OPTIONS={"upload_interval": 0.05},
        )
        ext.init_app(app)
    try:
        providers = []
        for app in apps:
            with app.app_context():
                providers.append(ext.provider)
        assert providers[0] is not providers[1]
        with pytest.raises(RuntimeError, match="serves 2 apps"):
            _ = ext.provider
        with pytest.raises(RuntimeError, match="already set up"):
            ext.init_app(apps[0])
    finally:
        for app in apps:
            with app.app_context():
                ext.shutdown(5)
    assert all(provider.track(CHECKOUT, {"user_id": "user-00001"}) is False for provider in providers)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"SEGMENT_EXPOSURE_WRITE_KEY": None}, "segment_exposure.E001"),
        ({"SEGMENT_EXPOSURE_WRITE_KEY": ""}, "segment_exposure.E003"),
        ({"SEGMENT_EXPOSURE_DEDUPE_TTL": "1h"}, "segment_exposure.E003"),
        ({"SEGMENT_EXPOSURE_HOST": "api.segment.io"}, "segment_exposure.E003"),
        ({"SEGMENT_EXPOSURE_IDENTIFY": "no_such_module.identify"}, "segment_exposure.E004"),
        ({"SEGMENT_EXPOSURE_ANALYTICS": "segment_exposure.testing.capture.InMemorySegmentClient"}, "E003"),
    ],
)
def test_configuration_errors_stop_init_app(config: dict[str, Any], problem: str) -> None:
    app = Flask(__name__)
    app.config.update(SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY, SEGMENT_EXPOSURE_HOST="http://127.0.0.1:9")
    for key, value in config.items():
        app.config[key] = value
    with pytest.raises(RuntimeError, match=re.escape(problem)):
        SegmentExposure(app)
    assert "segment_exposure" not in app.extensions


def test_write_key_never_appears_in_configuration_errors() -> None:
    app = Flask(__name__)
    app.config.update(SEGMENT_EXPOSURE_WRITE_KEY=["wk-secret-123"])
    with pytest.raises(RuntimeError) as raised:
        SegmentExposure(app)
    assert "segment_exposure.E003" in str(raised.value)
    assert "wk-secret-123" not in str(raised.value)


def test_unknown_and_ignored_options_warn(collector: SegmentCollector) -> None:
    app = Flask(__name__)
    app.config.update(
        SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY,
        SEGMENT_EXPOSURE_HOST=collector.url,
        SEGMENT_EXPOSURE_CLIENT_OPTIONS={"upload_interval": 0.05},
        SEGMENT_EXPOSURE_DEDUP_TTL=60,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ext = SegmentExposure(app)
    ext.shutdown(5)
    [warning] = caught
    assert "segment_exposure.W001" in str(warning.message)
    assert "did you mean SEGMENT_EXPOSURE_DEDUPE_TTL?" in str(warning.message)


def test_conflicting_sources_are_an_error(
    make_provider: Callable[..., SegmentExposureTrackingProvider],
) -> None:
    app = Flask(__name__)
    app.config.update(SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY, SEGMENT_EXPOSURE_PROVIDER=make_provider())
    with pytest.raises(RuntimeError, match=r"segment_exposure\.E005"):
        SegmentExposure(app)


# -- identity from the browser's own cookies, and the request's context ----------------------------

ANON = "38c9a8e2-5a1f-4d6b-9c3e-1f2a3b4c5d6e"
AMPLITUDE_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("anonymous_id", "user_id"),
    [("%22" + ANON + "%22", "%22user-4242%22"), (ANON, "user-4242")],
    ids=["analytics.js classic", "analytics-next"],
)
def test_segment_cookies_give_the_browser_ids(
    make_app: MakeApp, collector: SegmentCollector, anonymous_id: str, user_id: str
) -> None:
    app = make_app()
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", anonymous_id)
    client.set_cookie("ajs_user_id", user_id)
    client.set_cookie("amp_device_id", "device-older-cookie")  # read last: Segment's id wins
    assert client.get("/checkout").get_json()["device_id"] == ANON
    [event] = delivered(app, collector)
    assert (event["userId"], event["anonymousId"]) == ("user-4242", ANON)


def test_the_logged_in_user_wins_for_user_id(make_app: MakeApp, collector: SegmentCollector) -> None:
    app = make_app()
    client = app.test_client()
    client.post("/login/alice-0001")
    client.set_cookie("ajs_anonymous_id", ANON)
    client.set_cookie("ajs_user_id", "someone-else")
    client.get("/checkout")
    [event] = delivered(app, collector)
    assert (event["userId"], event["anonymousId"]) == ("alice-0001", ANON)


def test_amplitude_browser_cookie_with_the_api_key(make_app: MakeApp, collector: SegmentCollector) -> None:
    import base64
    import json
    from urllib.parse import quote

    session_json = quote(json.dumps({"deviceId": "amp-device-77", "userId": "amp-user-77"}))
    app = make_app(SEGMENT_EXPOSURE_AMPLITUDE_API_KEY=AMPLITUDE_KEY)
    client = app.test_client()
    client.set_cookie("AMP_" + AMPLITUDE_KEY[:10], base64.b64encode(session_json.encode()).decode())
    client.get("/checkout")
    [event] = delivered(app, collector)
    assert (event["userId"], event["anonymousId"]) == ("amp-user-77", "amp-device-77")


def test_identity_sources_order_is_configurable(make_app: MakeApp, collector: SegmentCollector) -> None:
    app = make_app(SEGMENT_EXPOSURE_IDENTITY_SOURCES=["device_id_cookie", "segment"])
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ANON)
    client.set_cookie("amp_device_id", "device-own-cookie")
    client.post("/login/alice-0001")  # "user" is not a source here
    client.get("/checkout")
    [event] = delivered(app, collector)
    assert (event["userId"], event["anonymousId"]) == (None, "device-own-cookie")


def test_bad_identity_options_fail_at_start_up(make_app: MakeApp) -> None:
    with pytest.raises(RuntimeError, match="SEGMENT_EXPOSURE_IDENTITY_SOURCES must be"):
        make_app(SEGMENT_EXPOSURE_IDENTITY_SOURCES=["segment", "cookies"])
    with pytest.raises(RuntimeError, match="SEGMENT_EXPOSURE_AMPLITUDE_API_KEY must be") as failed:
        make_app(SEGMENT_EXPOSURE_AMPLITUDE_API_KEY="short-key")
    assert "short-key" not in str(failed.value)  # never echoed


def test_hostile_cookies_are_ignored_and_the_request_still_works(
    make_app: MakeApp, collector: SegmentCollector
) -> None:
    app = make_app()
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", "%22null%22")
    client.set_cookie("ajs_user_id", "x" * 3000)
    response = client.get("/checkout")
    assert response.status_code == 200
    assert response.get_json() == {"tracked": [False, False], "user_id": None, "device_id": None}
    assert app.extensions["segment_exposure"].provider.stats()["dropped"]["no_identity"] == 2


def test_request_context_user_agent_ip_and_locale(make_app: MakeApp, collector: SegmentCollector) -> None:
    app = make_app()
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ANON)
    headers = {
        "User-Agent": CHROME_UA,
        "Accept-Language": "de-CH;q=0.8, fr-CH, *;q=0.1",
        "X-Forwarded-For": "198.51.100.9",  # no ProxyFix: not trusted, not read
    }
    client.get("/checkout", headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    [event] = delivered(app, collector)
    context = event["context"]
    assert (context["userAgent"], context["ip"], context["locale"]) == (CHROME_UA, "203.0.113.5", "fr-CH")


def test_request_context_honours_proxy_fix(make_app: MakeApp, collector: SegmentCollector) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = make_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ANON)
    client.get(
        "/checkout",
        headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.9"},  # the proxy appended the real peer
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    [event] = delivered(app, collector)
    assert event["context"]["ip"] == "198.51.100.9"


def test_request_context_switches(make_app: MakeApp, collector: SegmentCollector) -> None:
    app = make_app(
        SEGMENT_EXPOSURE_SEND_USER_AGENT=False,
        SEGMENT_EXPOSURE_SEND_IP=False,
        SEGMENT_EXPOSURE_SEND_LOCALE=False,
    )
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ANON)
    client.get("/checkout", headers={"User-Agent": CHROME_UA, "Accept-Language": "en-GB"})
    [event] = delivered(app, collector)
    assert not {"userAgent", "ip", "locale"} & set(event["context"])


def test_an_explicit_other_user_gets_no_request_context(
    make_app: MakeApp, collector: SegmentCollector
) -> None:
    app = make_app()

    @app.get("/for-other")
    def for_other() -> Any:
        provider = current_app.extensions["segment_exposure"].provider
        return jsonify(tracked=provider.track(CHECKOUT, {"user_id": "other-user-1"}))

    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ANON)
    client.get("/for-other", headers={"User-Agent": CHROME_UA})
    [event] = delivered(app, collector)
    assert event["userId"] == "other-user-1" and "userAgent" not in event["context"]


def test_experiment_buckets_by_the_browser_device_id(
    make_app: MakeApp, collector: SegmentCollector, flag_server: Any, make_local_client: Any
) -> None:
    from segment_exposure.experiment import ExposureTrackingClient

    flag = {
        "key": "device-flag",
        "metadata": {"deployed": True, "evaluationMode": "local", "flagType": "experiment", "flagVersion": 1},
        "segments": [
            {
                "conditions": [
                    [{"op": "is", "selector": ["context", "user", "device_id"], "values": [ANON]}]
                ],
                "variant": "treatment",
            },
            {"variant": "off"},
        ],
        "variants": {"off": {"key": "off", "metadata": {"default": True}}, "treatment": {"key": "treatment"}},
    }
    flag_server.set_flags([flag])
    app = make_app()
    experiment = ExposureTrackingClient(make_local_client(), app.extensions["segment_exposure"].provider)

    @app.get("/flag")
    def flag_view() -> Any:
        return jsonify(variant=experiment.variant(None, "device-flag").key)

    browser = app.test_client()
    browser.set_cookie("ajs_anonymous_id", ANON)
    assert browser.get("/flag").get_json() == {"variant": "treatment"}
    other = app.test_client()
    other.set_cookie("ajs_anonymous_id", "another-browser-1")
    assert other.get("/flag").get_json() == {"variant": "off"}
    events = {m["anonymousId"]: m["properties"] for m in delivered(app, collector)}
    assert events[ANON]["variant"] == "treatment"


def test_shutdown_stops_the_provider_it_built_but_not_one_given(
    collector: SegmentCollector, make_provider: Any
) -> None:
    app = Flask(__name__)
    app.config.update(
        SEGMENT_EXPOSURE_WRITE_KEY=WRITE_KEY,
        SEGMENT_EXPOSURE_HOST=collector.url,
        SEGMENT_EXPOSURE_CLIENT_OPTIONS={"upload_interval": 0.05},
    )
    ext = SegmentExposure(app)
    built = ext.provider
    assert built.track(CHECKOUT, {"user_id": "user-00001"}) is True
    assert ext.shutdown() is True  # flushed within the provider's flush_timeout
    assert [e["userId"] for e in collector.events()] == ["user-00001"]
    assert built.track(CHECKOUT, {"user_id": "user-00002"}) is False
    assert built.stats()["dropped"]["shutdown"] == 1
    built.worker.thread.join(10)  # shutdown waits for the worker's stop signal; the thread ends right after
    assert not built.worker.is_alive()

    given = make_provider()
    other = Flask("given")
    other.config.update(SEGMENT_EXPOSURE_PROVIDER=given)
    ext = SegmentExposure(other)
    assert ext.shutdown(1) is True
    assert given.track(CHECKOUT, {"user_id": "user-00003"}) is True  # still running: the fixture owns it
