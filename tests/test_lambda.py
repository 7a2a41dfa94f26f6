"""``lambda_handler`` with the event shapes AWS delivers: API Gateway REST (v1), HTTP API (v2) and function
URLs, against the real AmplitudeEmulator. Configuration comes from the environment, as in Lambda."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from segment_exposure import AmplitudeEmulator, lambda_handler
from segment_exposure.server import (
    DEFAULT_MAX_BODY_BYTES,
    ConfigError,
    ServerSettings,
    aws_lambda,
    reset_cache,
    sign,
)

from .amplitude_cases import segment_event

API_KEY = "amp-lambda-key-1d2c3b4a59"
SECRET = "lambda-secret-6e5f4d3c2b"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def lambda_environment(monkeypatch: pytest.MonkeyPatch, amplitude: AmplitudeEmulator) -> Iterator[None]:
    """A fresh container for each test: the module-level cache is dropped before and after."""
    amplitude.reset()
    for name in (
        "AMPLITUDE_REGION",
        "AMPLITUDE_MIN_ID_LENGTH",
        "AMPLITUDE_EXPOSURE_EVENTS",
        "WEBHOOK_MAX_BODY_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.setenv("SEGMENT_SHARED_SECRET", SECRET)
    monkeypatch.setenv("AMPLITUDE_ENDPOINT", amplitude.http_api_url)
    monkeypatch.setenv("AMPLITUDE_DEADLINE", "1.0")
    reset_cache()
    yield
    reset_cache()


class LambdaContext:
    """The attributes of AWS's context object the handler reads (the real one exists only inside Lambda)."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms
        self.function_name = "segment-exposure"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def rest_v1(
    body: bytes, headers: dict[str, str], *, b64: bool = False, method: str = "POST", path: str = "/"
) -> Any:
    """API Gateway REST API proxy event (payload 1.0): headers keep their case, plus multiValueHeaders."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "stage": "prod", "requestId": "req-1"},
        "body": base64.b64encode(body).decode() if b64 else body.decode(),
        "isBase64Encoded": b64,
    }


def _v2(
    body: bytes, headers: dict[str, str], b64: bool, method: str, path: str, domain: str, route: str
) -> Any:
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "domainName": domain,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "52.25.130.38"},
            "routeKey": route,
            "stage": "$default",
        },
        "body": base64.b64encode(body).decode() if b64 else body.decode(),
        "isBase64Encoded": b64,
    }


def http_v2(
    body: bytes, headers: dict[str, str], *, b64: bool = False, method: str = "POST", path: str = "/"
) -> Any:
    """API Gateway HTTP API event (payload 2.0): header names lower-cased."""
    return _v2(
        body, headers, b64, method, path, "abc123.execute-api.us-east-1.amazonaws.com", f"{method} {path}"
    )


def function_url(
    body: bytes, headers: dict[str, str], *, b64: bool = False, method: str = "POST", path: str = "/"
) -> Any:
    """Lambda function URL event: payload 2.0 with route ``$default``."""
    return _v2(body, headers, b64, method, path, "abcdefghij.lambda-url.us-east-1.on.aws", "$default")


Shape = Callable[..., Any]
SHAPES: list[Shape] = [rest_v1, http_v2, function_url]
SHAPE_IDS = ["rest_v1", "http_v2", "function_url"]


def invoke(
    shape: Shape, payload: Any, *, secret: str | None = SECRET, context: Any = None, **options: Any
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Signature"] = sign(body, secret)
    response = lambda_handler(shape(body, headers, **options), context)
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["Content-Type"] == "application/json"
    response["json"] = json.loads(response["body"])
    return response


def ingested_ids(amplitude: AmplitudeEmulator) -> list[str]:
    return sorted(e["insert_id"] for e in amplitude.ingested)


@pytest.mark.parametrize("b64", [False, True], ids=["text", "base64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_each_event_shape_delivers_a_signed_batch(
    amplitude: AmplitudeEmulator, shape: Shape, b64: bool
) -> None:
    events = [segment_event(i, "shape") for i in range(5)] + [{"type": "page", "name": "Home"}]
    response = invoke(shape, events, b64=b64)
    assert response["statusCode"] == 200, response["body"]
    assert response["json"]["delivered"] == 5 and response["json"]["ignored"] == 1
    assert ingested_ids(amplitude) == [f"shape-{i:06d}" for i in range(5)]


@pytest.mark.parametrize("name", ["X-Signature", "x-signature", "X-SIGNATURE", "x-Signature"])
def test_signature_header_name_is_case_insensitive(amplitude: AmplitudeEmulator, name: str) -> None:
    body = json.dumps(segment_event(1)).encode()
    event = rest_v1(body, {name: sign(body, SECRET)})
    event["multiValueHeaders"] = {}
    assert lambda_handler(event, None)["statusCode"] == 200
    only_multi = rest_v1(body, {name: sign(body, SECRET)})
    only_multi["headers"] = None  # API Gateway may send only multiValueHeaders
    assert lambda_handler(only_multi, None)["statusCode"] == 200
    assert amplitude.ingested_count == 1, "the second delivery was deduplicated by insert_id"


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("signature", [None, "wrong"], ids=["unsigned", "mis-signed"])
def test_missing_or_wrong_signature_is_401(
    amplitude: AmplitudeEmulator, shape: Shape, signature: str | None
) -> None:
    response = invoke(shape, segment_event(1), secret=None if signature is None else "not-the-secret")
    assert response["statusCode"] == 401
    assert amplitude.request_count == 0


def test_base64_signature_covers_the_decoded_bytes(amplitude: AmplitudeEmulator) -> None:
    body = json.dumps(segment_event(1, "b64"), ensure_ascii=False).encode()
    wrong = function_url(body, {"x-signature": sign(base64.b64encode(body), SECRET)}, b64=True)
    assert lambda_handler(wrong, None)["statusCode"] == 401
    right = function_url(body, {"x-signature": sign(body, SECRET)}, b64=True)
    assert lambda_handler(right, None)["statusCode"] == 200


@pytest.mark.parametrize(
    ("event", "status", "words"),
    [
        (function_url(b"{nope", {"x-signature": sign(b"{nope", SECRET)}), 400, "not JSON"),
        (function_url(b"42", {"x-signature": sign(b"42", SECRET)}), 400, "not events"),
        ({**function_url(b"", {}), "body": "%%%", "isBase64Encoded": True}, 400, "base64"),
        ({"type": "track", "event": "$exposure"}, 400, "not an API Gateway"),
        (http_v2(b"", {}, method="PUT"), 405, "POST"),
        (rest_v1(b"", {}, method="DELETE"), 405, "POST"),
    ],
    ids=["not JSON", "not events", "bad base64", "not a proxy event", "PUT v2", "DELETE v1"],
)
def test_bad_requests(amplitude: AmplitudeEmulator, event: Any, status: int, words: str) -> None:
    response = lambda_handler(event, None)
    assert response["statusCode"] == status
    assert words in json.loads(response["body"])["error"]
    assert amplitude.request_count == 0


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_healthz(shape: Shape) -> None:
    response = lambda_handler(shape(b"", {}, method="GET", path="/prod/healthz"), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok", "signature_required": True}


def test_body_over_the_cap_is_413(monkeypatch: pytest.MonkeyPatch, amplitude: AmplitudeEmulator) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", "2000")
    response = invoke(function_url, [segment_event(i) for i in range(20)], b64=True)
    assert response["statusCode"] == 413
    assert amplitude.request_count == 0
    assert DEFAULT_MAX_BODY_BYTES >= 16 * 1024 * 1024


@pytest.mark.slow
def test_outage_then_segments_retry_ingests_each_event_once(amplitude: AmplitudeEmulator) -> None:
    events = [segment_event(i, "outage") for i in range(30)]
    amplitude.inject("500_after_ingest", count=None)
    first = invoke(http_v2, events)
    assert first["statusCode"] == 503
    assert first["json"]["status"] == "retry" and len(first["json"]["retry"]) == 30
    amplitude.clear_faults()
    second = invoke(http_v2, events)
    assert second["statusCode"] == 200
    assert ingested_ids(amplitude) == sorted(e["messageId"] for e in events)


def test_throttling_is_429_and_rejections_are_listed(amplitude: AmplitudeEmulator) -> None:
    amplitude.inject("429")
    throttled = invoke(rest_v1, [segment_event(1, "hot"), segment_event(2, "hot", userId="n/a")])
    assert throttled["statusCode"] == 429
    assert throttled["headers"]["Retry-After"] == "30"
    assert [r["index"] for r in throttled["json"]["rejected"]] == [1]
    assert throttled["json"]["rejected"][0]["error"].startswith("ValidationError")


@pytest.mark.slow
def test_the_deadline_fits_the_lambdas_remaining_time(amplitude: AmplitudeEmulator) -> None:
    amplitude.inject("slow", count=1, delay=1.0)
    started = time.monotonic()
    response = invoke(function_url, [segment_event(1, "late")], context=LambdaContext(remaining_ms=900))
    elapsed = time.monotonic() - started
    assert response["statusCode"] == 503
    assert elapsed < 0.8, f"finished before the Lambda would be stopped, took {elapsed:.2f} s"
    assert aws_lambda._built is not None and aws_lambda._built.destination.deadline == pytest.approx(0.4)
    assert amplitude.wait_for_requests(1, timeout=5)


def test_the_destination_is_built_once_per_container(
    monkeypatch: pytest.MonkeyPatch, amplitude: AmplitudeEmulator
) -> None:
    for i in range(3):
        assert invoke(function_url, segment_event(i, "warm"))["statusCode"] == 200
    ports = {r.client_port for r in amplitude.requests}
    assert len(ports) == 1, "one destination, one pooled connection to Amplitude"
    built = aws_lambda._built
    monkeypatch.setenv("AMPLITUDE_MIN_ID_LENGTH", "3")  # a new configuration: a new destination
    assert invoke(function_url, segment_event(9, "warm", userId="abc", anonymousId=None))["statusCode"] == 200
    assert aws_lambda._built is not built
    assert ingested_ids(amplitude) == ["warm-000000", "warm-000001", "warm-000002", "warm-000009"]


def test_missing_configuration_is_500_so_segment_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY")
    response = invoke(function_url, segment_event(1))
    assert response["statusCode"] == 500
    assert "AMPLITUDE_API_KEY" in response["json"]["error"]
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.setenv("AMPLITUDE_REGION", "APAC")
    response = invoke(function_url, segment_event(1))
    assert response["statusCode"] == 500 and "AMPLITUDE_REGION" in response["json"]["error"]
    assert API_KEY not in response["body"] and SECRET not in response["body"]


def test_unsigned_requests_are_accepted_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, amplitude: AmplitudeEmulator
) -> None:
    monkeypatch.delenv("SEGMENT_SHARED_SECRET")
    assert invoke(http_v2, segment_event(1, "open"), secret=None)["statusCode"] == 200
    assert ingested_ids(amplitude) == ["open-000001"]


def test_settings_from_the_environment() -> None:
    env = {
        "AMPLITUDE_API_KEY": f" {API_KEY} ",
        "SEGMENT_SHARED_SECRET": SECRET,
        "AMPLITUDE_REGION": "eu",
        "AMPLITUDE_MIN_ID_LENGTH": "3",
        "AMPLITUDE_EXPOSURE_EVENTS": "$exposure, Experiment Exposure",
        "AMPLITUDE_DEADLINE": "2.5",
        "WEBHOOK_MAX_BODY_BYTES": "1000000",
    }
    settings = ServerSettings.from_environ(env)
    assert (settings.api_key, settings.region, settings.min_id_length) == (API_KEY, "EU", 3)
    assert settings.exposure_events == ("$exposure", "Experiment Exposure")
    assert (settings.deadline, settings.max_body_bytes) == (2.5, 1_000_000)
    assert API_KEY not in repr(settings) and SECRET not in repr(settings)
    with settings.build_destination() as destination:
        assert destination.client.endpoint == "https://api.eu.amplitude.com/2/httpapi"
    assert ServerSettings.from_environ(env, region="US", api_key="flag-key-123").region == "US"
    for name, value in [
        ("AMPLITUDE_API_KEY", " "),
        ("AMPLITUDE_MIN_ID_LENGTH", "0"),
        ("AMPLITUDE_ENDPOINT", "not a url"),
        ("AMPLITUDE_DEADLINE", "soon"),
        ("WEBHOOK_MAX_BODY_BYTES", "-5"),
    ]:
        with pytest.raises(ConfigError, match=name):
            ServerSettings.from_environ({**env, name: value})


@pytest.mark.slow
def test_example_runs_against_a_local_emulator() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lambda_destination" / "run_local.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Lambda answered 200" in done.stdout
    assert done.stdout.count("ingested:") == 2
