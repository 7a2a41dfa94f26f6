"""The client reads proxy settings from the environment once, when it is built, and honours them; and it
honours ``Retry-After`` on 503 as on 429, in both of its forms, within the deadline.

The proxy is the real emulator: a request in absolute form (what a client sends to an HTTP proxy) is served
and recorded as proxied, so an endpoint on a host that does not resolve is reached only through it.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from segment_exposure import AmplitudeClient, AmplitudeEmulator, Status
from segment_exposure.delivery.outcomes import retry_after_seconds

from .amplitude_cases import assert_ingested_once

API_KEY = "amp-env-key-3c4d5e6f70"
#: A host that never resolves (RFC 6761): reaching it proves the proxy was used.
UNREACHABLE = "http://amplitude.invalid/2/httpapi"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
PROXY_VARIABLES += ("ALL_PROXY", "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def emulator() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as server:
        yield server


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def events(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "event_type": "$exposure",
            "user_id": f"user-{tag}-{i:04d}",
            "device_id": f"device-{tag}-{i:04d}",
            "insert_id": f"{tag}-{i:04d}",
            "time": 1795514400123 + i,
            "event_properties": {"flag_key": "checkout", "variant": "treatment"},
        }
        for i in range(n)
    ]


# -- proxies --------------------------------------------------------------------------------------------


def test_a_proxy_in_the_environment_is_honoured(
    emulator: AmplitudeEmulator, clean_environment: pytest.MonkeyPatch
) -> None:
    clean_environment.setenv("HTTP_PROXY", emulator.url)
    clean_environment.setenv("http_proxy", emulator.url)
    batch = events(30, "proxied")
    with AmplitudeClient(API_KEY, endpoint=UNREACHABLE, timeout=(2.0, 5.0)) as client:
        assert client.proxies.get("http") == emulator.url
        result = client.send(batch)
    assert result.all_delivered, result.retry_later
    assert all(r.proxied for r in emulator.requests)
    assert_ingested_once(emulator, {e["insert_id"] for e in batch})


def test_the_environment_is_read_once_when_the_client_is_built(
    emulator: AmplitudeEmulator, clean_environment: pytest.MonkeyPatch
) -> None:
    with AmplitudeClient(API_KEY, endpoint=emulator.http_api_url, timeout=(2.0, 5.0)) as client:
        # A proxy that appears later (here: a port nothing listens on) is not picked up per request.
        clean_environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        clean_environment.setenv("http_proxy", "http://127.0.0.1:9")
        result = client.send(events(5, "once"))
    assert result.all_delivered, result.retry_later
    assert not any(r.proxied for r in emulator.requests)


def test_no_proxy_is_honoured(emulator: AmplitudeEmulator, clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    clean_environment.setenv("http_proxy", "http://127.0.0.1:9")
    clean_environment.setenv("NO_PROXY", "127.0.0.1")
    clean_environment.setenv("no_proxy", "127.0.0.1")
    with AmplitudeClient(API_KEY, endpoint=emulator.http_api_url, timeout=(2.0, 5.0)) as client:
        result = client.send(events(5, "direct"))
    assert result.all_delivered, result.retry_later
    assert not any(r.proxied for r in emulator.requests)


def test_https_is_verified_with_the_environments_ca_bundle(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HTTPS through the client's own pool: REQUESTS_CA_BUNDLE is honoured, and without it an unknown
    certificate authority is refused (nothing sent, the events kept as retry later)."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    with AmplitudeEmulator(api_keys={API_KEY}, ssl_context=context) as secure:
        assert secure.http_api_url.startswith("https://127.0.0.1:")
        clean_environment.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        with AmplitudeClient(API_KEY, endpoint=secure.http_api_url, timeout=(2.0, 5.0)) as client:
            trusted = client.send(events(5, "tls"))
        assert trusted.all_delivered, trusted.retry_later
        clean_environment.delenv("REQUESTS_CA_BUNDLE")
        with AmplitudeClient(
            API_KEY, endpoint=secure.http_api_url, timeout=(2.0, 5.0), max_attempts=1
        ) as client:
            refused = client.send(events(5, "untrusted"))
        assert {o.code for o in refused} == {"network"}
        assert "certificate" in refused[0].reason.lower()
        assert secure.ingested_count == 5


# -- Retry-After on 503 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: no wait
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = time.time()
    value = email.utils.formatdate(now + 120, usegmt=True)
    seconds = retry_after_seconds(value, now=now)
    assert seconds is not None and 119 <= seconds <= 120


def fast_client(emulator: AmplitudeEmulator, deadline: float) -> AmplitudeClient:
    return AmplitudeClient(
        API_KEY,
        endpoint=emulator.http_api_url,
        deadline=deadline,
        backoff_initial=0.01,
        backoff_max=0.05,
        backoff_jitter=0.0,
        timeout=(2.0, 5.0),
    )


@pytest.mark.slow
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_503_retry_after_is_waited_for(emulator: AmplitudeEmulator, form: str) -> None:
    value = "1" if form == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
    emulator.inject("503", retry_after=value)
    batch = events(10, f"after-{form}")
    with fast_client(emulator, deadline=10.0) as client:
        started = time.monotonic()
        result = client.send(batch)
        elapsed = time.monotonic() - started
    assert result.all_delivered, result.retry_later
    assert result.requests == 2
    # The backoff alone is 10 ms; an HTTP date has whole seconds, so 2 s ahead is at least 1 s away.
    assert elapsed >= 0.95, f"retried after {elapsed:.2f} s, before Retry-After"
    assert_ingested_once(emulator, {e["insert_id"] for e in batch})


def test_503_retry_after_past_the_deadline_comes_back_at_once(emulator: AmplitudeEmulator) -> None:
    emulator.inject("503", retry_after="30")
    with fast_client(emulator, deadline=3.0) as client:
        started = time.monotonic()
        result = client.send(events(10, "late"))
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, "no point waiting for a retry the deadline does not allow"
    assert result.requests == 1
    assert {o.status for o in result} == {Status.RETRY_LATER}
    assert {o.code for o in result} == {"unavailable"}
    assert emulator.ingested_count == 0
