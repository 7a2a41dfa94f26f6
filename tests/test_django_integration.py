"""The Django integration through Django's test client (pytest-django), a real provider and a local
Segment collector; the system checks; and the example project under Django's own test runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django  # type: ignore[import-untyped]
import pytest
from django.conf import settings as django_conf  # type: ignore[import-untyped]

from . import django_settings

if not django_conf.configured:
    # configure() rather than DJANGO_SETTINGS_MODULE: the environment of other tests' subprocesses
    # (the examples run their own settings) stays untouched.
    django_conf.configure(
        **{name: getattr(django_settings, name) for name in dir(django_settings) if name.isupper()}
    )
    django.setup()

from asgiref.sync import async_to_sync
from django.apps import apps  # type: ignore[import-untyped]
from django.core import checks  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.management import call_command  # type: ignore[import-untyped]
from django.core.management.base import SystemCheckError  # type: ignore[import-untyped]
from django.test import AsyncClient, Client  # type: ignore[import-untyped]

from segment_exposure import (
    ExposureMiddleware,
    InMemorySegmentClient,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    bound_user,
    request_scope,
)
from segment_exposure.integrations.django import get_provider

from .conftest import WRITE_KEY, reused_collector

ROOT = Path(__file__).resolve().parent.parent

Configure = Callable[..., dict[str, Any]]


@pytest.fixture
def collector(module_collector: SegmentCollector) -> SegmentCollector:
    """One collector for the module (stopping one costs half a second), emptied for each test."""
    return reused_collector(module_collector)


@pytest.fixture
def configure(settings: Any, collector: SegmentCollector) -> Configure:
    """Set ``SEGMENT_EXPOSURE`` for one test (pytest-django restores it, which shuts the provider down)."""

    def set_options(**extra: Any) -> dict[str, Any]:
        options = {
            "WRITE_KEY": WRITE_KEY,
            "HOST": collector.url,
            "CLIENT_OPTIONS": {"upload_interval": 0.05},
            **extra,
        }
        settings.SEGMENT_EXPOSURE = {k: v for k, v in options.items() if v is not None}
        return options

    set_options()
    return set_options


def delivered(collector: SegmentCollector) -> list[dict[str, Any]]:
    """Every exposure the provider sent, once it says all of them were delivered."""
    assert get_provider().flush(10)
    return collector.events()


# -- requests --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_logged_in_user_is_tracked_with_user_and_device_id(
    configure: Configure, collector: SegmentCollector, client: Client, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("alice")
    client.force_login(user)
    client.cookies["amp_device_id"] = "device-alice"
    body = client.get("/checkout").json()
    assert body == {"tracked": [True, True], "user_id": str(user.pk), "device_id": "device-alice"}
    [event] = delivered(collector)
    assert (event["userId"], event["anonymousId"]) == (str(user.pk), "device-alice")
    assert event["properties"] == {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"}
    stats = get_provider().stats()
    assert (stats["tracked"], stats["deduplicated"]) == (1, 1)


def test_device_cookie_only_is_tracked_anonymously_without_touching_the_database(
    configure: Configure, collector: SegmentCollector, client: Client
) -> None:
    client.cookies["amp_device_id"] = "device-anon-7"
    assert client.get("/checkout").json()["tracked"] == [True, True]
    [event] = delivered(collector)
    assert (event["userId"], event["anonymousId"]) == (None, "device-anon-7")


@pytest.mark.django_db
def test_user_id_attribute(
    configure: Configure, collector: SegmentCollector, client: Client, django_user_model: Any
) -> None:
    configure(USER_ID_ATTRIBUTE="username")
    client.force_login(django_user_model.objects.create_user("grace"))
    assert client.get("/checkout").json()["user_id"] == "grace"
    [event] = delivered(collector)
    assert (event["userId"], event["anonymousId"]) == ("grace", None)


def test_no_identity_drops_and_sets_no_cookie_by_default(
    configure: Configure, collector: SegmentCollector, client: Client
) -> None:
    response = client.get("/checkout")
    assert response.json()["tracked"] == [False, False]
    assert "amp_device_id" not in response.cookies
    assert delivered(collector) == []
    assert get_provider().stats()["dropped"]["no_identity"] == 2


def test_set_device_id_cookie_gives_anonymous_visitors_a_stable_id(
    configure: Configure, collector: SegmentCollector, client: Client
) -> None:
    configure(SET_DEVICE_ID_COOKIE=True, DEVICE_ID_COOKIE="did")
    first = client.get("/checkout")
    device_id = first.json()["device_id"]
    assert first.cookies["did"].value == device_id and len(device_id) == 36
    assert first.cookies["did"]["samesite"] == "Lax"
    second = client.get("/checkout")
    assert second.json()["device_id"] == device_id
    assert "did" not in second.cookies
    [event] = delivered(collector)
    assert (event["userId"], event["anonymousId"]) == (None, device_id)


def test_identify_dotted_path(configure: Configure, collector: SegmentCollector, client: Client) -> None:
    configure(IDENTIFY="tests.django_settings.identify_from_header")
    client.get("/checkout", headers={"X-User": "user-h", "X-Device": "device-h"})
    [event] = delivered(collector)
    assert (event["userId"], event["anonymousId"]) == ("user-h", "device-h")


def test_a_raising_identify_leaves_the_request_working_without_identity(
    configure: Configure, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Any) -> object:
        raise KeyError("missing")

    configure(IDENTIFY=broken)
    response = client.get("/checkout")
    assert response.status_code == 200
    assert response.json()["tracked"] == [False, False]
    assert "IDENTIFY resolver raised" in caplog.text


def test_identity_is_unbound_after_each_request_even_when_the_view_raises(
    configure: Configure, client: Client
) -> None:
    client.cookies["amp_device_id"] = "device-1"
    with pytest.raises(RuntimeError, match="the view failed"):
        client.get("/boom")
    assert bound_user() is None
    assert request_scope() is None
    assert client.get("/scope").json() == {"before": {}}
    assert client.get("/scope").json() == {"before": {}}  # a fresh request scope each time
    assert bound_user() is None


@pytest.mark.django_db
def test_async_views_get_the_identity_too(
    configure: Configure, collector: SegmentCollector, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("carol")

    async def visit() -> list[Any]:
        logged_in, anonymous = AsyncClient(), AsyncClient()
        await logged_in.aforce_login(user)
        logged_in.cookies["amp_device_id"] = "device-carol"
        anonymous.cookies["amp_device_id"] = "device-anon"
        return [(await c.get("/checkout-async")).json() for c in (logged_in, anonymous)]

    # async_to_sync: the database calls auser() makes run on this thread, inside the test transaction.
    assert async_to_sync(visit)() == [
        {"tracked": [True], "user_id": str(user.pk), "device_id": "device-carol"},
        {"tracked": [True], "user_id": None, "device_id": "device-anon"},
    ]
    events = delivered(collector)
    assert sorted((m["anonymousId"], m["userId"]) for m in events) == [
        ("device-anon", None),
        ("device-carol", str(user.pk)),
    ]


def test_async_identify(configure: Configure, collector: SegmentCollector) -> None:
    configure(IDENTIFY="tests.django_settings.identify_from_header_async")

    async def visit() -> Any:
        return (await AsyncClient().get("/checkout-async", headers={"X-User": "user-a"})).json()

    assert async_to_sync(visit)()["user_id"] == "user-a"
    [event] = delivered(collector)
    assert event["userId"] == "user-a"


# -- the provider ----------------------------------------------------------------------------------


def test_one_provider_per_configuration(settings: Any, configure: Configure) -> None:
    provider = get_provider()
    assert get_provider() is provider
    assert apps.get_app_config("segment_exposure").provider is provider
    configure(DEDUPE_TTL=60)  # a settings change rebuilds it, and shuts the old one down
    assert get_provider() is not provider
    assert provider.stats()["dropped"]["shutdown"] == 0
    assert provider.track(django_settings.checkout_exposure, {"user_id": "u"}) is False


def test_an_existing_provider_is_used_as_is_and_not_shut_down(
    settings: Any, make_provider: Callable[..., SegmentExposureTrackingProvider]
) -> None:
    provider = make_provider()
    settings.SEGMENT_EXPOSURE = {"PROVIDER": provider}
    assert get_provider() is provider
    settings.SEGMENT_EXPOSURE = {"ANALYTICS": InMemorySegmentClient()}
    assert get_provider() is not provider
    assert provider.track(django_settings.checkout_exposure, {"user_id": "u"}) is True


def test_an_unusable_configuration_fails_loudly_where_it_is_used(settings: Any) -> None:
    settings.SEGMENT_EXPOSURE = {"HOST": "http://127.0.0.1:9"}
    with pytest.raises(ImproperlyConfigured, match=r"segment_exposure\.E001"):
        get_provider()
    with pytest.raises(ImproperlyConfigured, match=r"segment_exposure\.E001"):
        ExposureMiddleware(lambda request: None)  # at start-up, like any middleware


# -- system checks ---------------------------------------------------------------------------------


def ours() -> dict[str, str]:
    return {m.id: m.msg for m in checks.run_checks() if str(m.id).startswith("segment_exposure.")}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"WRITE_KEY": "wk", "HOST": "http://127.0.0.1:9"}, set()),
        ({}, {"segment_exposure.E001"}),
        (None, {"segment_exposure.E001"}),
        (["WRITE_KEY", "wk"], {"segment_exposure.E002"}),
        ({"WRITE_KEY": 42}, {"segment_exposure.E003"}),
        ({"WRITE_KEY": "wk", "DEDUPE_TTL": "1 day"}, {"segment_exposure.E003"}),
        ({"WRITE_KEY": "wk", "IDENTIFY": "tests.django_settings.no_such_name"}, {"segment_exposure.E004"}),
        ({"WRITE_KEY": "wk", "IDENTIFY": "tests.django_settings.SECRET_KEY"}, {"segment_exposure.E003"}),
        ({"WRITE_KEY": "wk", "ANALYTICS": InMemorySegmentClient()}, {"segment_exposure.E005"}),
        ({"WRITE_KEY": "wk", "DEDUP_TTL": 60}, {"segment_exposure.W001"}),
        ({"ANALYTICS": InMemorySegmentClient(), "HOST": "http://127.0.0.1:9"}, {"segment_exposure.W002"}),
    ],
)
def test_checks_report_bad_options(settings: Any, options: Any, expected: set[str]) -> None:
    if options is None:
        del settings.SEGMENT_EXPOSURE
    else:
        settings.SEGMENT_EXPOSURE = options
    assert set(ours()) == expected


def test_unknown_option_check_suggests_the_right_name(settings: Any) -> None:
    settings.SEGMENT_EXPOSURE = {"WRITE_KEY": "wk", "DEDUP_TTL": 60}
    [message] = [m for m in checks.run_checks() if m.id == "segment_exposure.W001"]
    assert 'SEGMENT_EXPOSURE["DEDUP_TTL"]' in message.msg
    assert message.hint == 'did you mean SEGMENT_EXPOSURE["DEDUPE_TTL"]?'


def test_checks_keep_the_write_key_out_of_messages(settings: Any) -> None:
    settings.SEGMENT_EXPOSURE = {"WRITE_KEY": ["wk-secret-123"]}
    assert "wk-secret-123" not in str(ours())


def test_checks_report_a_missing_or_misplaced_middleware(settings: Any) -> None:
    session, auth, exposure = django_settings.MIDDLEWARE
    settings.MIDDLEWARE = [session, auth]
    assert set(ours()) == {"segment_exposure.W003"}
    settings.MIDDLEWARE = [session, exposure, auth]
    assert set(ours()) == {"segment_exposure.W004"}
    settings.SEGMENT_EXPOSURE = {
        **settings.SEGMENT_EXPOSURE,
        "IDENTIFY": django_settings.identify_from_header,
    }
    assert ours() == {}  # a resolver of one's own does not need request.user


def test_manage_py_check_fails_on_errors(settings: Any) -> None:
    settings.SEGMENT_EXPOSURE = {}
    with pytest.raises(SystemCheckError, match=r"segment_exposure\.E001"):
        call_command("check")


# -- outside this process --------------------------------------------------------------------------


@pytest.mark.slow
def test_example_project_passes_under_djangos_own_test_runner() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "DJANGO_"))}
    done = subprocess.run(
        [sys.executable, "manage.py", "test", "--noinput", "-v", "2"],
        cwd=ROOT / "examples" / "django_project",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ran 2 tests" in done.stderr and "OK" in done.stderr
    assert "System check identified no issues" in done.stdout + done.stderr


# -- identity from the browser's own cookies, and the request's context ----------------------------

ANON = "38c9a8e2-5a1f-4d6b-9c3e-1f2a3b4c5d6e"
FIREFOX_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.mark.parametrize(
    ("anonymous_id", "user_id"),
    [("%22" + ANON + "%22", "%22user-4242%22"), (ANON, "user-4242")],
    ids=["analytics.js classic", "analytics-next"],
)
def test_segment_cookies_give_the_browser_ids(
    configure: Configure, collector: SegmentCollector, client: Client, anonymous_id: str, user_id: str
) -> None:
    client.cookies["ajs_anonymous_id"] = anonymous_id
    client.cookies["ajs_user_id"] = user_id
    client.cookies["amp_device_id"] = "device-older-cookie"  # read last: Segment's id wins
    assert client.get("/checkout").json()["device_id"] == ANON
    [event] = delivered(collector)
    assert (event["userId"], event["anonymousId"]) == ("user-4242", ANON)


@pytest.mark.django_db
def test_the_logged_in_user_wins_for_user_id(
    configure: Configure, collector: SegmentCollector, client: Client, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("dora")
    client.force_login(user)
    client.cookies["ajs_anonymous_id"] = ANON
    client.cookies["ajs_user_id"] = "someone-else"
    client.get("/checkout")
    [event] = delivered(collector)
    assert (event["userId"], event["anonymousId"]) == (str(user.pk), ANON)


def test_set_device_id_cookie_only_without_a_browser_id(
    configure: Configure, collector: SegmentCollector, client: Client
) -> None:
    configure(SET_DEVICE_ID_COOKIE=True)
    client.cookies["ajs_anonymous_id"] = ANON
    response = client.get("/checkout")
    assert response.json()["device_id"] == ANON and "amp_device_id" not in response.cookies


def test_request_context_from_meta(configure: Configure, collector: SegmentCollector, client: Client) -> None:
    client.cookies["ajs_anonymous_id"] = ANON
    client.get(
        "/checkout",
        headers={
            "User-Agent": FIREFOX_UA,
            "Accept-Language": "nl-BE,nl;q=0.9",
            "X-Forwarded-For": "192.0.2.1",
        },
        REMOTE_ADDR="203.0.113.44",
    )
    [event] = delivered(collector)
    context = event["context"]
    assert (context["userAgent"], context["ip"], context["locale"]) == (FIREFOX_UA, "203.0.113.44", "nl-BE")


def test_request_context_switches(configure: Configure, collector: SegmentCollector, client: Client) -> None:
    configure(SEND_IP=False, SEND_LOCALE=False)
    client.cookies["ajs_anonymous_id"] = ANON
    client.get("/checkout", headers={"User-Agent": FIREFOX_UA, "Accept-Language": "nl-BE"})
    [event] = delivered(collector)
    assert event["context"]["userAgent"] == FIREFOX_UA
    assert not {"ip", "locale"} & set(event["context"])


def test_async_views_get_the_request_context(configure: Configure, collector: SegmentCollector) -> None:
    async def visit() -> Any:
        client = AsyncClient()
        client.cookies["ajs_anonymous_id"] = ANON
        return (await client.get("/checkout-async", headers={"User-Agent": FIREFOX_UA})).json()

    assert async_to_sync(visit)()["device_id"] == ANON
    [event] = delivered(collector)
    assert event["context"]["userAgent"] == FIREFOX_UA and event["anonymousId"] == ANON


def test_shutdown_stops_the_provider_built_from_settings(
    settings: Any, configure: Configure, collector: SegmentCollector
) -> None:
    from segment_exposure.integrations.django import shutdown

    provider = get_provider()
    assert provider.track(django_settings.checkout_exposure, {"user_id": "user-00001"}) is True
    assert shutdown() is True  # flushed within the provider's flush_timeout
    assert [e["userId"] for e in collector.events()] == ["user-00001"]
    assert provider.track(django_settings.checkout_exposure, {"user_id": "user-00002"}) is False
    provider.worker.thread.join(10)  # shutdown waits for the worker's stop signal; the thread ends after
    assert not provider.worker.is_alive()
    assert shutdown(1) is True  # nothing built: nothing to do
    assert get_provider() is not provider  # the next use builds a new one


def test_shutdown_leaves_a_given_provider_running(
    settings: Any, make_provider: Callable[..., SegmentExposureTrackingProvider]
) -> None:
    from segment_exposure.integrations.django import shutdown

    provider = make_provider()
    settings.SEGMENT_EXPOSURE = {"PROVIDER": provider}
    assert get_provider() is provider
    assert shutdown(1) is True
    assert provider.track(django_settings.checkout_exposure, {"user_id": "u"}) is True
