"""Security review (issue 9), one test per finding.

1. The Amplitude API key, the Segment write key and the webhook secret never appear in logs (every logger
   at DEBUG, including Segment's ``segment`` logger and gunicorn's output), exceptions, reprs, HTTP error
   bodies (webhook and Lambda) or the command line's stderr, even when a server echoes the key back.
2. With a shared secret configured, a signature is required; it is checked with ``hmac.compare_digest``,
   which alone decides, and wrong signatures of every prefix length are all refused.
3. Body size caps and JSON depth limits hold, in the WSGI app and in the Lambda.
4. Nothing in an event (``endpoint``, ``url``, ``host``, ``api_key``, ``writeKey``, ``integrations``,
   ``context.*``, ``options``) nor in a request's headers changes where events go or which key is used,
   on either hop.
5. The locked dependencies (``requirements.lock``) cover the whole runtime closure, and ``pip-audit`` finds
   no known vulnerability in them (skipped, with the reason, where PyPI's JSON API cannot be reached).
"""

from __future__ import annotations

import base64
import hmac
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import subprocess
import sys
import wsgiref.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from segment_exposure import (
    AmplitudeClient,
    AmplitudeEmulator,
    AmplitudeExposureDestination,
    Exposure,
    RetryError,
    SegmentCollector,
    SegmentExposureTrackingProvider,
    create_app,
    lambda_handler,
)
from segment_exposure.delivery._http import RequestsPoster
from segment_exposure.delivery.amplitude import LIMITS
from segment_exposure.delivery.encoding import BodyEncoder
from segment_exposure.delivery.send_link import Backoff, SendLink, SendSettings
from segment_exposure.delivery.transport import Redactor, Transport
from segment_exposure.server import ConfigError, ServerSettings, WebhookHandler, reset_cache, sign

from .hardening_lock import closure
from .hardening_support import LogCapture, ServeProcess, call_wsgi, segment_event

API_KEY = "amp-sec-key-9f8e7d6c5b4a"
WRITE_KEY = "wk-sec-key-1a2b3c4d5e6f"
SECRET = "whsec-sec-0a9b8c7d6e5f"
SECRETS = (API_KEY, WRITE_KEY, SECRET, base64.b64encode(f"{WRITE_KEY}:".encode()).decode())
ROOT = Path(__file__).resolve().parent.parent


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret ({secret[:6]}...) appears in {where}"


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}, eps_threshold=1e9) as emulator:
        yield emulator


@pytest.fixture
def echoing_amplitude() -> Iterator[AmplitudeEmulator]:
    """Amplitude that does not know our key: it answers ``Invalid API key: <the key>``, as Amplitude does."""
    with AmplitudeEmulator(api_keys={"some-other-project-key"}) as emulator:
        yield emulator


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Configure the Lambda's environment (a fresh container each time)."""
    for name in (
        "AMPLITUDE_REGION",
        "AMPLITUDE_MIN_ID_LENGTH",
        "WEBHOOK_MAX_BODY_BYTES",
        "AMPLITUDE_DEADLINE",
    ):
        monkeypatch.delenv(name, raising=False)

    def configure(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_cache()

    yield configure
    reset_cache()


def lambda_call(body: bytes, signature: str | None, *, b64: bool = False, **headers: str) -> dict[str, Any]:
    if signature is not None:
        headers["x-signature"] = signature
    event = {
        "version": "2.0",
        "rawPath": "/",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": base64.b64encode(body).decode() if b64 else body.decode(),
        "isBase64Encoded": b64,
    }
    return lambda_handler(event, None)


def signed(body: bytes) -> dict[str, str]:
    return {"X-Signature": sign(body, SECRET)}


# -- 1. secrets stay secret -------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_secret_in_any_log_record_at_debug(
    amplitude: AmplitudeEmulator, echoing_amplitude: AmplitudeEmulator, lambda_env: Callable[..., None]
) -> None:
    capture = LogCapture().install(["segment", "segment_exposure", "urllib3", "requests"])
    try:
        # Segment's client at DEBUG logs every request body, writeKey included; and errors on failures.
        with SegmentCollector(WRITE_KEY) as collector:
            collector.fail(503, count=1)
            collector.reset(count=1)
            provider = SegmentExposureTrackingProvider(
                WRITE_KEY, host=collector.url, client_options={"upload_interval": 0.02}
            )
            provider.track(Exposure("checkout", "on", "exp-1"), {"user_id": "user-sec-0001"})
            provider.track(Exposure("checkout", "on"), {})  # no identity: a DEBUG record with the exposure
            assert provider.flush(15)
            provider.shutdown(5)
        with SegmentCollector("a-different-write-key") as refusing:  # 401: our key is not this one
            provider = SegmentExposureTrackingProvider(
                WRITE_KEY, host=refusing.url, client_options={"upload_interval": 0.02, "max_retries": 0}
            )
            provider.track(Exposure("checkout", "on"), {"user_id": "user-sec-0002"})
            provider.flush(5)
            provider.shutdown(5)
        # The destination, served as a webhook, against an Amplitude that echoes the key it was sent.
        destination = AmplitudeExposureDestination(API_KEY, endpoint=echoing_amplitude.http_api_url)
        app = create_app(destination, SECRET)
        body = json.dumps([segment_event(1, "sec")]).encode()
        assert call_wsgi(app, body, headers=signed(body)).status == 503
        assert call_wsgi(app, body, headers={"X-Signature": "0" * 40}).status == 401
        with pytest.raises(RetryError):
            destination.on_track(segment_event(2, "sec"))
        destination.close()
        # The Lambda, configured from the environment, against the same Amplitude.
        lambda_env(
            AMPLITUDE_API_KEY=API_KEY,
            SEGMENT_SHARED_SECRET=SECRET,
            AMPLITUDE_ENDPOINT=echoing_amplitude.http_api_url,
            AMPLITUDE_DEADLINE="2",
        )
        assert lambda_call(body, sign(body, SECRET))["statusCode"] == 503
    finally:
        capture.uninstall()
    text = capture.text()
    assert "making request" in text and "[redacted]" in text, "Segment's DEBUG body log was exercised"
    assert "Invalid API key" in text, "Amplitude's echo of the key was exercised"
    assert_no_secret(text, "the logs")


def test_the_write_key_is_redacted_on_every_logger_on_the_way_to_segment() -> None:
    """Each module logs on its own logger (``__name__``); a logger's filters miss its children's records."""
    tracking = ROOT / "segment_exposure" / "tracking"
    names = ["segment"] + [
        f"segment_exposure.tracking.{path.stem}"
        for path in sorted(tracking.glob("*.py"))
        if "getLogger(__name__)" in path.read_text()
    ]
    assert len(names) >= 8, names
    capture = LogCapture().install(names)
    try:
        with SegmentCollector(WRITE_KEY) as collector:
            tracker = SegmentExposureTrackingProvider(WRITE_KEY, host=collector.url)
            try:
                for name in names:
                    logging.getLogger(name).error("the key is %s, really", WRITE_KEY)
            finally:
                tracker.shutdown(5)
    finally:
        capture.uninstall()
    text = capture.text()
    assert text.count("the key is [redacted], really") == len(names), text
    assert_no_secret(text, "the logs")


def test_every_module_logs_under_its_own_name() -> None:
    """``logging.getLogger(__name__)``: all under ``segment_exposure``, so one logger configures them all."""
    for path in sorted((ROOT / "segment_exposure").rglob("*.py")):
        calls = re.findall(r"logging\.getLogger\(([^)]*)\)", path.read_text(encoding="utf-8"))
        odd = [c for c in calls if c not in ("__name__", '"segment"', "name")]  # name: the redactor's loop
        assert not odd, f"{path.relative_to(ROOT)}: getLogger({odd[0]}); use __name__"


SERVE_AT_DEBUG = """
import sys
from segment_exposure import cli
from segment_exposure.cli import serve

quiet_config, quiet_options = serve._logging_config, serve.gunicorn_options

def debug_config():
    config = quiet_config()
    config["root"]["level"] = "DEBUG"
    for logger in config["loggers"].values():
        logger["level"] = "DEBUG"
    for name in ("segment", "urllib3", "requests"):
        config["loggers"][name] = {"level": "DEBUG", "handlers": ["stdout"], "propagate": False}
    return config

def debug_options(*args, **kwargs):
    options = quiet_options(*args, **kwargs)
    options["loglevel"] = "debug"
    options["logconfig_dict"] = debug_config()
    return options

serve._logging_config, serve.gunicorn_options = debug_config, debug_options
raise SystemExit(cli.main(sys.argv[1:]))
"""


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_no_secret_in_gunicorn_output_at_debug(echoing_amplitude: AmplitudeEmulator) -> None:
    env = {
        "AMPLITUDE_API_KEY": API_KEY,
        "SEGMENT_SHARED_SECRET": SECRET,
        "AMPLITUDE_ENDPOINT": echoing_amplitude.http_api_url,
        "AMPLITUDE_DEADLINE": "2",
    }
    server = ServeProcess(env, argv=[sys.executable, "-c", SERVE_AT_DEBUG, "serve"])
    try:
        body = json.dumps([segment_event(1, "gun")]).encode()
        refused = requests.post(server.url + "/", data=body, headers=signed(body), timeout=30)
        assert refused.status_code == 503  # a configuration error: Segment keeps the events and retries
        assert "Invalid API key: ***" in refused.text
        assert requests.post(server.url + "/", data=body, timeout=30).status_code == 401
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
        server.wait_for(re.compile(r"Amplitude refused the request"))
        # Secrets passed in the environment are on no command line (`ps` shows those to every user).
        processes = [server.master_pid, *children(server.master_pid)]
        assert len(processes) >= 2, "the master and its worker"
        for pid in processes:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert_no_secret(cmdline, f"the command line of process {pid}")
    finally:
        assert server.stop() == 0
    output = server.output()
    assert "[DEBUG]" in output, "gunicorn and the package really logged at DEBUG"
    assert_no_secret(output, "gunicorn's stdout and stderr")


def test_no_secret_in_http_error_bodies(
    echoing_amplitude: AmplitudeEmulator, lambda_env: Callable[..., None]
) -> None:
    destination = AmplitudeExposureDestination(API_KEY, endpoint=echoing_amplitude.http_api_url, deadline=2)
    app = create_app(destination, SECRET, max_body_bytes=10_000)
    body = json.dumps([segment_event(i, "body") for i in range(3)]).encode()
    answers = [
        call_wsgi(app, body, headers=signed(body)),  # 503: Amplitude refused the key (and echoed it)
        call_wsgi(app, body, headers={"X-Signature": sign(body, "guess")}),  # 401
        call_wsgi(app, b"x" * 10_001, headers=signed(b"x" * 10_001)),  # 413
        call_wsgi(app, b"{nope", headers=signed(b"{nope")),  # 400
        call_wsgi(app, b"", method="GET"),  # 405
    ]
    assert [a.status for a in answers] == [503, 401, 413, 400, 405]
    for answer in answers:
        assert_no_secret(answer.body.decode(), f"a {answer.status} answer of the webhook")
    destination.close()

    lambda_env(
        AMPLITUDE_API_KEY=API_KEY,
        SEGMENT_SHARED_SECRET=SECRET,
        AMPLITUDE_ENDPOINT=echoing_amplitude.http_api_url,
        AMPLITUDE_DEADLINE="2",
    )
    responses = [lambda_call(body, sign(body, SECRET)), lambda_call(body, None), lambda_call(b"[", None)]
    # A malformed setting that carries credentials: the 500 says what is wrong without echoing it.
    lambda_env(AMPLITUDE_API_KEY=API_KEY, AMPLITUDE_ENDPOINT=f"ftp://user:{API_KEY}@amplitude.invalid/x")
    responses.append(lambda_call(body, sign(body, SECRET)))
    assert [r["statusCode"] for r in responses] == [503, 401, 401, 500]
    for response in responses:
        assert_no_secret(json.dumps(response), f"a {response['statusCode']} answer of the Lambda")


def test_no_secret_in_reprs_or_exceptions(echoing_amplitude: AmplitudeEmulator) -> None:
    texts: list[str] = []
    with SegmentCollector(WRITE_KEY) as collector:
        provider = SegmentExposureTrackingProvider(WRITE_KEY, host=collector.url)
        texts += [repr(provider), str(provider), repr(provider.stats())]
        provider.shutdown(2)
    client = AmplitudeClient(API_KEY, endpoint=echoing_amplitude.http_api_url, deadline=2)
    destination = AmplitudeExposureDestination(client=client)
    app = create_app(destination, SECRET)
    settings = ServerSettings.from_environ({"AMPLITUDE_API_KEY": API_KEY, "SEGMENT_SHARED_SECRET": SECRET})
    texts += [repr(client), str(client), repr(destination), repr(app), repr(app.handler), repr(settings)]
    result = client.send([{"event_type": "$exposure", "user_id": "user-repr-1", "time": 1}])
    texts += [repr(result), *result.retry_later.values()]
    with pytest.raises(RetryError) as retry:
        destination.on_track(segment_event(1, "repr"))
    texts += [str(retry.value), repr(retry.value)]
    destination.close()
    # Errors raised for bad configuration that carries the secrets.
    attempts: list[Callable[[], Any]] = [
        lambda: AmplitudeClient(API_KEY, endpoint=f"ftp://user:{API_KEY}@example.invalid/2/httpapi"),
        lambda: ServerSettings.from_environ(
            {"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_ENDPOINT": f"ftp://x:{API_KEY}@host"}
        ),
        lambda: ServerSettings.from_environ({"AMPLITUDE_API_KEY": " "}),
        lambda: SegmentExposureTrackingProvider(WRITE_KEY, analytics=object()),
    ]
    for attempt in attempts:
        with pytest.raises((ValueError, ConfigError)) as raised:
            attempt()
        texts += [str(raised.value), repr(raised.value)]
    assert texts and all(texts)
    for text in texts:
        assert_no_secret(text, f"{text[:60]!r}")


def test_no_secret_in_what_a_send_is_handed() -> None:
    """The parts a send gets from its client hold the key (and an endpoint may): no ``repr`` shows it."""
    endpoint = f"http://user:{API_KEY}@127.0.0.1:9/2/httpapi"
    redactor = Redactor(API_KEY)
    encoder = BodyEncoder(API_KEY, min_id_length=3, gzip=False)
    with requests.Session() as session:
        transport = Transport(
            RequestsPoster(session),
            endpoint,
            headers={"Content-Type": "application/json"},
            timeout=(1.0, 1.0),
            max_in_flight=2,
            redactor=redactor,
        )
        settings = SendSettings(
            limits=LIMITS["http"],
            api="http",
            endpoint=endpoint,
            max_in_flight=2,
            max_attempts=3,
            throttle_wait=30.0,
            max_throttle_holds=10,
        )
        link = SendLink(transport, encoder, Backoff(0.5, 10.0, 0.5), redactor, settings)
        texts = [repr(link), repr(transport), repr(encoder), repr(redactor), repr(settings)]
        transport.close()
    assert API_KEY.encode() in encoder.encode([b"{}"])  # the key is there, in the body only
    assert redactor.redact(f"bad key {API_KEY}") == "bad key ***"
    for text in texts:
        assert_no_secret(text, f"{text[:60]!r}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["serve", "--api-key", API_KEY, "--shared-secret", SECRET, "--region", "mars"], {}),
        (["serve", "--endpoint", f"ftp://u:{API_KEY}@host/x"], {"AMPLITUDE_API_KEY": API_KEY}),
        (["serve", "--port", "eighty"], {"AMPLITUDE_API_KEY": API_KEY, "SEGMENT_SHARED_SECRET": SECRET}),
        (["serve"], {"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_DEADLINE": "soon"}),
    ],
    ids=["bad region", "bad endpoint", "bad port", "bad deadline"],
)
def test_no_secret_on_the_command_lines_stderr(argv: list[str], env: dict[str, str]) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "SEGMENT_", "WEBHOOK_"))}
    done = subprocess.run(
        [sys.executable, "-m", "segment_exposure", *argv],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert_no_secret(done.stdout + done.stderr, "the command line's output")


# -- 2. signatures ----------------------------------------------------------------------------------------


def test_a_signature_is_required_when_a_secret_is_configured(
    amplitude: AmplitudeEmulator, lambda_env: Callable[..., None]
) -> None:
    destination = AmplitudeExposureDestination(API_KEY, endpoint=amplitude.http_api_url)
    app = create_app(destination, SECRET)
    body = json.dumps([segment_event(1, "sig")]).encode()
    for headers in ({}, {"X-Signature": ""}, {"X-Signature": " "}, {"X-Signature-256": sign(body, SECRET)}):
        assert call_wsgi(app, body, headers=headers).status == 401, headers
    lambda_env(
        AMPLITUDE_API_KEY=API_KEY, SEGMENT_SHARED_SECRET=SECRET, AMPLITUDE_ENDPOINT=amplitude.http_api_url
    )
    assert lambda_call(body, None)["statusCode"] == 401
    assert lambda_call(body, "")["statusCode"] == 401
    assert amplitude.request_count == 0, "nothing unsigned reached Amplitude"
    assert call_wsgi(app, body, headers=signed(body)).status == 200
    assert lambda_call(body, sign(body, SECRET))["statusCode"] == 200
    destination.close()


def test_wrong_signatures_of_every_prefix_length_are_refused(amplitude: AmplitudeEmulator) -> None:
    destination = AmplitudeExposureDestination(API_KEY, endpoint=amplitude.http_api_url)
    app = create_app(destination, SECRET)
    body = json.dumps([segment_event(1, "prefix")]).encode()
    right = sign(body, SECRET)
    flip = {c: "0" if c != "0" else "1" for c in "0123456789abcdef"}
    wrong: list[str] = []
    for k in range(len(right) + 1):
        wrong.append(right[:k])  # a prefix alone
        if k < len(right):
            # The right first k characters, then a wrong one, then the right rest: full length.
            wrong.append(right[:k] + flip[right[k]] + right[k + 1 :])
    wrong.remove(right)
    wrong += [right + "0", right + right, right[1:], "sha1=" + right]
    statuses = {call_wsgi(app, body, headers={"X-Signature": w}).status for w in wrong}
    assert statuses == {401}, statuses
    assert amplitude.request_count == 0
    assert call_wsgi(app, body, headers={"X-Signature": right}).status == 200
    destination.close()


def test_compare_digest_alone_decides_the_signature(
    amplitude: AmplitudeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = inspect.getsource(WebhookHandler.verify)
    assert "hmac.compare_digest(" in source
    assert "==" not in source and "!=" not in source, "no short-circuiting comparison of the signature"
    destination = AmplitudeExposureDestination(API_KEY, endpoint=amplitude.http_api_url)
    app = create_app(destination, SECRET)
    body = json.dumps([segment_event(1, "digest")]).encode()
    right = sign(body, SECRET)
    real = hmac.compare_digest
    calls: list[tuple[Any, Any]] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert call_wsgi(app, body, headers={"X-Signature": right}).status == 200
    assert calls == [(right.encode(), right.encode())], "one constant-time comparison per request"
    # Whatever compare_digest answers is the verdict: nothing else looks at the signature.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: True)
    assert call_wsgi(app, body, headers={"X-Signature": "f" * 40}).status == 200
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    assert call_wsgi(app, body, headers={"X-Signature": right}).status == 401
    destination.close()


# -- 3. size and depth limits -----------------------------------------------------------------------------


class Unreadable(io.RawIOBase):
    """A request body that must not be read."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body of an oversized request was read")


def test_body_size_cap_and_json_depth_limit(
    amplitude: AmplitudeEmulator, lambda_env: Callable[..., None]
) -> None:
    destination = AmplitudeExposureDestination(API_KEY, endpoint=amplitude.http_api_url)
    app = create_app(destination, SECRET, max_body_bytes=2_000, max_depth=8)

    def post(body: bytes) -> int:
        return call_wsgi(app, body, headers=signed(body)).status

    event = json.dumps([segment_event(1, "cap")]).encode()
    padded = event[:-1] + b" " * (2_000 - len(event)) + b"]"
    assert len(padded) == 2_000 and post(padded) == 200
    assert post(padded[:-1] + b" ]") == 413  # one byte over
    assert post(b"[" * 8 + b"]" * 8) == 200  # depth 8: parsed (its one element is refused as an event)
    assert post(b"[" * 9 + b"]" * 9) == 400
    assert post(b"[" * 200_000 + b"]" * 200_000) == 413
    # Refused on Content-Length alone, before a byte is read.
    environ: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/",
            "CONTENT_LENGTH": "999999999",
            "wsgi.input": Unreadable(),
        }
    )
    status: list[str] = []
    app(environ, lambda s, h, e=None: status.append(s))
    assert status[0].startswith("413")
    destination.close()

    # The Lambda: the cap applies to the decoded body; the default depth limit is 64.
    lambda_env(
        AMPLITUDE_API_KEY=API_KEY,
        SEGMENT_SHARED_SECRET=SECRET,
        AMPLITUDE_ENDPOINT=amplitude.http_api_url,
        WEBHOOK_MAX_BODY_BYTES="2000",
    )
    assert lambda_call(padded, sign(padded, SECRET))["statusCode"] == 200
    over = padded[:-1] + b" ]"
    assert lambda_call(over, sign(over, SECRET), b64=True)["statusCode"] == 413
    for depth, expected in ((64, 200), (65, 400)):
        deep = b"[" * depth + b"]" * depth
        assert lambda_call(deep, sign(deep, SECRET))["statusCode"] == expected, depth
    # Only the padded event (sent to both, deduplicated by insert_id) got through; nothing refused did.
    assert [e["insert_id"] for e in amplitude.ingested] == ["cap-000001"]


# -- 4. events cannot steer -------------------------------------------------------------------------------

STEERING_FIELDS: dict[str, Any] = {
    "endpoint": "{decoy}/2/httpapi",
    "url": "{decoy}/2/httpapi",
    "host": "{decoy}",
    "api_key": "decoy-key-0000",
    "apiKey": "decoy-key-0000",
    "writeKey": "decoy-write-key",
    "region": "EU",
    "options": {"min_id_length": 1, "endpoint": "{decoy}"},
    "integrations": {
        "Actions Amplitude": {"endpoint": "{decoy}/2/httpapi", "api_key": "decoy-key-0000", "session_id": 7},
        "Webhooks": {"url": "{decoy}"},
        "All": True,
    },
    "context": {
        "endpoint": "{decoy}",
        "host": "{decoy}",
        "url": "{decoy}",
        "api_key": "decoy-key-0000",
        "library": {"name": "{decoy}"},
        "app": {"endpoint": "{decoy}", "version": "1.0"},
        "device": {"type": "ios"},
    },
    "properties": {
        "flag_key": "checkout",
        "variant": "on",
        "endpoint": "{decoy}",
        "api_key": "decoy-key-0000",
    },
}


def steering_events(decoy: str, count: int) -> list[dict[str, Any]]:
    fields = json.loads(json.dumps(STEERING_FIELDS).replace("{decoy}", decoy))
    return [segment_event(i, "steer", **fields) for i in range(count)]


def test_event_content_never_changes_where_events_go_or_the_key(
    amplitude: AmplitudeEmulator, lambda_env: Callable[..., None]
) -> None:
    with AmplitudeEmulator() as decoy, SegmentCollector(WRITE_KEY) as collector, SegmentCollector() as other:
        events = steering_events(decoy.url, 5)
        # The webhook, with request headers that try to steer as well.
        destination = AmplitudeExposureDestination(API_KEY, endpoint=amplitude.http_api_url)
        app = create_app(destination, SECRET)
        body = json.dumps(events).encode()
        headers = {
            **signed(body),
            "Host": decoy.url.removeprefix("http://"),
            "X-Forwarded-Host": decoy.url.removeprefix("http://"),
            "X-Amplitude-Endpoint": decoy.url,
            "X-Api-Key": "decoy-key-0000",
        }
        response = call_wsgi(app, body, headers=headers)
        assert response.status == 200 and response.json()["delivered"] == 5
        # A short id stays refused: an event's "options" cannot lower min_id_length either.
        short = [segment_event(9, "steer", userId="abc", anonymousId=None, options={"min_id_length": 1})]
        short_body = json.dumps(short).encode()
        assert call_wsgi(app, short_body, headers=signed(short_body)).json()["rejected"]
        destination.close()
        # The Lambda.
        lambda_env(
            AMPLITUDE_API_KEY=API_KEY, SEGMENT_SHARED_SECRET=SECRET, AMPLITUDE_ENDPOINT=amplitude.http_api_url
        )
        lambda_events = [dict(e, messageId=f"lambda-{i}") for i, e in enumerate(events)]
        lambda_body = json.dumps(lambda_events).encode()
        assert lambda_call(lambda_body, sign(lambda_body, SECRET), host=decoy.url)["statusCode"] == 200
        # The provider: metadata and user fields named like settings change nothing either.
        provider = SegmentExposureTrackingProvider(
            WRITE_KEY, host=collector.url, include_metadata=True, client_options={"upload_interval": 0.02}
        )
        metadata = {"host": other.url, "writeKey": "decoy-write-key", "endpoint": other.url}
        user = {"user_id": "user-steer-1", "host": other.url, "writeKey": "decoy-write-key"}
        assert provider.track(Exposure("checkout", "on", "exp-1", metadata=metadata), user)
        assert provider.flush(10)
        provider.shutdown(5)
        assert len(collector.events()) == 1, "sent with the configured write key (the collector checks it)"
        assert other.requests == 0
        assert decoy.request_count == 0, "the decoy Amplitude received nothing"
    # Everything reached the configured Amplitude (which accepts only the configured key).
    assert amplitude.ingested_count == 10
    assert {e["insert_id"] for e in amplitude.ingested} == {
        *(e["messageId"] for e in events),
        *(e["messageId"] for e in lambda_events),
    }


# -- 5. dependencies --------------------------------------------------------------------------------------

LOCK = ROOT / "requirements.lock"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned with ==: {line!r}"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    header = re.search(r"\(CPython (\d+)\.(\d+)", LOCK.read_text(encoding="utf-8"))
    assert header is not None, "requirements.lock names the Python it was resolved for"
    locked = (int(header[1]), int(header[2]))
    if sys.version_info[:2] != locked:  # environment markers pull in other packages elsewhere
        pytest.skip(f"requirements.lock is resolved for CPython {locked[0]}.{locked[1]}")
    pins = _pins()
    missing = sorted(set(closure()) - set(pins))
    assert not missing, f"not in requirements.lock: {missing}; regenerate: python -m tests.hardening_lock"
    for name in ("segment-analytics-python", "requests", "tenacity", "gunicorn", "flask", "django"):
        assert name in pins


@pytest.mark.slow
def test_pip_audit_finds_no_known_vulnerability(tmp_path: Path) -> None:
    if importlib.util.find_spec("pip_audit") is None:
        pytest.skip("pip-audit is not installed (pip install pip-audit)")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_audit",
            "--requirement",
            str(LOCK),
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--cache-dir",
            str(tmp_path),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = None
    if report is None:
        if re.search(r"ConnectionError|Max retries|Name or service|timed out|Network", done.stderr):
            pytest.skip(f"pip-audit cannot reach its vulnerability service: {done.stderr.strip()[-300:]}")
        pytest.fail(f"pip-audit failed (exit {done.returncode}): {done.stderr[-1500:]}")
    unaudited = [d for d in report["dependencies"] if d.get("skip_reason")]
    if unaudited:
        pytest.skip(
            f"pip-audit could not audit {len(unaudited)} of {len(report['dependencies'])} locked "
            f"dependencies, e.g. {unaudited[0]['skip_reason']!r}: PyPI's JSON API is unreachable from here"
        )
    vulnerable = {d["name"]: d["vulns"] for d in report["dependencies"] if d.get("vulns")}
    assert not vulnerable, json.dumps(vulnerable, indent=2)[:3000]
