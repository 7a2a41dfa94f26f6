"""The webhook served by a real gunicorn (``python -m segment_exposure serve``) on 127.0.0.1.

Segment is played by this test: it signs bodies, sends single events and batches, and resends what was not
acknowledged with 200. Amplitude is the real AmplitudeEmulator in this process, reached through
``AMPLITUDE_ENDPOINT``. Nothing is mocked: what runs is what a user deploys.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from segment_exposure import AmplitudeEmulator, cli
from segment_exposure.server import DEFAULT_MAX_BODY_BYTES, sign

from .amplitude_cases import segment_event as sample_event
from .serve_process import ServeProcess

API_KEY = "amp-serve-key-4b2e9d0c31"
SECRET = "whsec-3a7d1f0b9c8e"
DEADLINE = 1.0  # AMPLITUDE_DEADLINE for these servers: the slow-Amplitude test waits for it
WORKERS = 2


@pytest.fixture(scope="module")
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def server(amplitude: AmplitudeEmulator) -> Iterator[ServeProcess]:
    env = {
        "AMPLITUDE_API_KEY": API_KEY,
        "SEGMENT_SHARED_SECRET": SECRET,
        "AMPLITUDE_ENDPOINT": amplitude.http_api_url,
        "AMPLITUDE_DEADLINE": str(DEADLINE),
    }
    running = ServeProcess(env, workers=WORKERS)
    yield running
    assert running.stop() == 0


@pytest.fixture(autouse=True)
def fresh_amplitude(amplitude: AmplitudeEmulator) -> None:
    amplitude.reset()


#: A full mobile context, so the webhook's output carries every mapped field.
MOBILE_CONTEXT: dict[str, Any] = {
    "library": {"name": "analytics.js", "version": "next-1.70.0"},
    "device": {"type": "ios", "manufacturer": "Apple", "model": "iPhone15,2"},
    "os": {"name": "iOS", "version": "17.1"},
    "app": {"version": "4.2.0"},
    "location": {"country": "US", "region": "CA", "city": "San Francisco"},
    "locale": "en-US",
    "ip": "203.0.113.7",
    "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15",
}


def segment_event(i: int, prefix: str = "msg", **fields: Any) -> dict[str, Any]:
    return sample_event(i, prefix, **{"context": copy.deepcopy(MOBILE_CONTEXT), **fields})


def post(
    server: ServeProcess, payload: Any, *, secret: str | None = SECRET, **headers: str
) -> requests.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if secret is not None:
        headers.setdefault("X-Signature", sign(body, secret))
    headers.setdefault("Content-Type", "application/json")
    return requests.post(server.url + "/", data=body, headers=headers, timeout=30)


def ingested_ids(amplitude: AmplitudeEmulator) -> list[str]:
    return sorted(e["insert_id"] for e in amplitude.ingested)


# -- routes and signatures --------------------------------------------------------------------------------


@pytest.mark.slow
def test_healthz_and_routes(server: ServeProcess) -> None:
    health = requests.get(server.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "signature_required": True}
    assert requests.post(server.url + "/healthz", timeout=5).status_code == 405
    wrong_method = requests.get(server.url + "/", timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert requests.post(server.url + "/elsewhere", data=b"{}", timeout=5).status_code == 404


def test_each_worker_builds_its_destination_after_the_fork(server: ServeProcess) -> None:
    pids = {
        int(m.group(1))
        for m in re.finditer(r"\[(\d+)\] \[INFO\] segment_exposure[\w.]*: worker ready", server.log())
    }
    assert len(pids) == WORKERS
    assert server.master_pid not in pids


def test_signed_event_is_delivered(server: ServeProcess, amplitude: AmplitudeEmulator) -> None:
    response = post(server, segment_event(1))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "received": 1,
        "delivered": 1,
        "ignored": 0,
        "rejected": [],
        "retry": [],
    }
    assert ingested_ids(amplitude) == ["msg-000001"]
    (ingested,) = amplitude.ingested
    assert ingested["platform"] == "iOS" and ingested["time"] == 1795514400123


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("unsigned", {}),
        ("signed with another secret", {"X-Signature": sign(b"x", "other-secret")}),
        ("signature of another body", {"X-Signature": sign(b'{"type": "track"}', SECRET)}),
        ("not hex", {"X-Signature": "\u00e9t\u00e9"}),
        ("empty", {"X-Signature": ""}),
    ],
)
def test_unsigned_and_mis_signed_bodies_get_401_and_nothing_is_delivered(
    server: ServeProcess, amplitude: AmplitudeEmulator, case: str, headers: dict[str, str]
) -> None:
    body = json.dumps(segment_event(2)).encode()
    response = requests.post(
        server.url + "/", data=body, headers={k: v.encode() for k, v in headers.items()}, timeout=10
    )
    assert response.status_code == 401, case
    assert "X-Signature" in response.json()["error"]
    assert amplitude.request_count == 0, "nothing reaches Amplitude"


def test_signature_is_checked_on_the_raw_bytes(server: ServeProcess, amplitude: AmplitudeEmulator) -> None:
    body = b'{ "type":"track", "event":"$exposure", "userId":"user-raw-01", "messageId":"raw-1",\n'
    body += b' "timestamp":"2026-11-24T10:00:00Z", "properties":{"flag_key":"checkout"} }'
    response = post(server, body, **{"X-Signature": sign(body, SECRET).upper()})
    assert response.status_code == 200, response.text
    assert ingested_ids(amplitude) == ["raw-1"]


# -- batches ----------------------------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"properties": {"variant": "on"}}, "InvalidEventPayload"),
    ({"userId": None, "anonymousId": None}, "InvalidEventPayload"),
    ({"userId": "null"}, "ValidationError"),
    ({"timestamp": "1969-12-31T23:59:59.000Z"}, "ValidationError"),  # only Amplitude can tell
]


def test_batch_with_rejections_is_acknowledged_with_the_reasons(
    server: ServeProcess, amplitude: AmplitudeEmulator
) -> None:
    events: list[Any] = [segment_event(i, "batch") for i in range(1000)]
    rejected: dict[int, str] = {}
    for n, i in enumerate(range(5, 1000, 50)):
        fields, error = INVALID[n % len(INVALID)]
        events[i] = segment_event(i, "batch", **fields)
        rejected[i] = error
    not_exposures = {
        i: {"type": "identify", "userId": f"user-{i:06d}", "traits": {}} for i in range(7, 1000, 100)
    }
    for i, event in not_exposures.items():
        events[i] = event
    response = post(server, events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["received"] == 1000
    assert body["ignored"] == len(not_exposures)
    assert body["delivered"] == 1000 - len(rejected) - len(not_exposures)
    assert {r["index"]: r["error"].split(":")[0] for r in body["rejected"]} == rejected
    assert all(r["messageId"] == f"batch-{r['index']:06d}" for r in body["rejected"])
    expected = sorted(
        e["messageId"] for i, e in enumerate(events) if i not in rejected and i not in not_exposures
    )
    assert ingested_ids(amplitude) == expected


@pytest.mark.slow
def test_a_4000_event_batch_fits_the_default_cap(server: ServeProcess, amplitude: AmplitudeEmulator) -> None:
    events = [segment_event(i, "big", traits={"plan": "pro", "company": "Example Inc."}) for i in range(4000)]
    body = json.dumps(events).encode()
    assert len(body) * 2 < DEFAULT_MAX_BODY_BYTES, "room for events twice this size"
    # The servers here give Amplitude a 1 s deadline (for the slow-Amplitude test); on a loaded machine
    # a batch this size may miss it and get 503, which Segment retries: so does this test, up to 5 times.
    for _ in range(5):
        response = post(server, body)
        if response.status_code != 503:
            break
    assert response.status_code == 200, response.text
    assert response.json()["delivered"] == 4000
    assert amplitude.ingested_count == 4000  # each exactly once (Amplitude drops a resent insert_id)


def test_empty_batch_and_non_event_elements(server: ServeProcess, amplitude: AmplitudeEmulator) -> None:
    assert post(server, []).json()["received"] == 0
    response = post(server, [1, "x", segment_event(3, "mixed")])
    assert response.status_code == 200
    body = response.json()
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert body["rejected"][0]["error"].startswith("InvalidEventPayload")
    assert ingested_ids(amplitude) == ["mixed-000003"]


# -- bodies that are refused ------------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{nope", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b'{"type": "track", "x": NaN}', "not JSON"),
        (b'"hello"', "not events"),
        (b"42", "not events"),
        (b"[" * 100 + b"]" * 100, "nests deeper"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
        (json.dumps([{"properties": nested(70)}]).encode(), "nests deeper"),
    ],
    ids=["truncated", "empty", "binary", "NaN", "string", "number", "deep", "very deep", "deep in an event"],
)
def test_bodies_that_are_not_events_get_400(
    server: ServeProcess, amplitude: AmplitudeEmulator, body: bytes, words: str
) -> None:
    response = post(server, body)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert amplitude.request_count == 0


def test_body_over_the_cap_is_refused_before_it_is_read(
    server: ServeProcess, amplitude: AmplitudeEmulator
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        head = (
            f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {DEFAULT_MAX_BODY_BYTES + 1}\r\nX-Signature: 00\r\n\r\n"
        )
        conn.sendall(head.encode() + b"[")
        status_line = conn.makefile("rb").readline()
    assert status_line.startswith(b"HTTP/1.1 413")
    assert amplitude.request_count == 0


def test_chunked_body_over_the_cap_gets_413(server: ServeProcess, amplitude: AmplitudeEmulator) -> None:
    piece = b" " * (1 << 20)

    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(DEFAULT_MAX_BODY_BYTES // len(piece) + 1):
            yield piece
        yield b"]"

    response = requests.post(server.url + "/", data=chunks(), headers={"X-Signature": "00"}, timeout=30)
    assert response.status_code == 413
    assert "limit" in response.json()["error"]
    assert amplitude.request_count == 0


# -- Amplitude's failures: Segment retries, nothing is lost or doubled ------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["503", "500_after_ingest", "reset_after_ingest"])
def test_amplitude_down_then_recovery_ingests_every_event_exactly_once(
    server: ServeProcess, amplitude: AmplitudeEmulator, fault: str
) -> None:
    events: list[Any] = [segment_event(i, f"down-{fault}") for i in range(50)]
    events[10] = segment_event(10, f"down-{fault}", userId="undefined")
    body = json.dumps(events).encode()
    amplitude.inject(fault, count=None)
    first = post(server, body)
    assert first.status_code == 503, "not acknowledged: Segment keeps the batch and retries it"
    answer = first.json()
    assert answer["status"] == "retry" and len(answer["retry"]) == 49
    assert {r["status"] for r in answer["retry"]} == {500}
    assert [r["index"] for r in answer["rejected"]] == [10], "a permanent rejection is final already"
    amplitude.clear_faults()
    second = post(server, body)  # Segment's retry: the same body, the same messageIds
    assert second.status_code == 200, second.text
    expected = sorted(e["messageId"] for i, e in enumerate(events) if i != 10)
    assert ingested_ids(amplitude) == expected, "every event exactly once"
    if fault != "503":
        assert amplitude.duplicates_dropped >= 49, "the resends were deduplicated by insert_id"


@pytest.mark.slow
def test_slow_amplitude_hits_the_deadline_and_asks_for_a_retry(
    server: ServeProcess, amplitude: AmplitudeEmulator
) -> None:
    events = [segment_event(i, "slow") for i in range(20)]
    body = json.dumps(events).encode()
    amplitude.inject("slow", count=1, delay=DEADLINE + 1.0)
    started = time.monotonic()
    first = post(server, body)
    elapsed = time.monotonic() - started
    assert first.status_code == 503
    assert elapsed < DEADLINE + 0.6, f"answered at the deadline, not with Amplitude, took {elapsed:.2f} s"
    assert "within" in first.json()["retry"][0]["error"] or "deadline" in first.json()["retry"][0]["error"]
    second = post(server, body)
    assert second.status_code == 200
    assert amplitude.wait_for_requests(2, timeout=5), "the slow request finishes late"
    assert ingested_ids(amplitude) == sorted(e["messageId"] for e in events)


def test_throttled_batch_gets_429_with_retry_after(
    server: ServeProcess, amplitude: AmplitudeEmulator
) -> None:
    amplitude.inject("429")
    response = post(server, [segment_event(i, "hot") for i in range(3)])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    assert response.json()["status"] == "throttled"
    assert amplitude.ingested_count == 0


def test_logs_go_to_stdout_and_never_show_the_secrets(server: ServeProcess) -> None:
    post(server, segment_event(1, "log"))
    server.wait_for(r'"POST / HTTP/1\.1" 200')
    log = server.log()
    assert "segment-exposure webhook ready" in log
    assert API_KEY not in log and SECRET not in log
    assert not [line for line in server.stderr if line.strip()], server.stderr


# -- an unsigned server with the wrong API key ------------------------------------------------------------


@pytest.mark.slow
def test_without_a_secret_requests_are_accepted_and_a_wrong_key_is_retried(
    amplitude: AmplitudeEmulator,
) -> None:
    wrong_key = "amp-wrong-key-77aa66bb55"
    unsigned = ServeProcess(
        {"AMPLITUDE_API_KEY": wrong_key, "AMPLITUDE_ENDPOINT": amplitude.http_api_url}, workers=WORKERS
    )
    try:
        assert requests.get(unsigned.url + "/healthz", timeout=5).json()["signature_required"] is False
        response = post(unsigned, [segment_event(1, "wrong")], secret=None)
        assert response.status_code == 503, "a configuration error keeps the events: Segment retries"
        assert "Invalid API key" in response.json()["retry"][0]["error"]
        assert wrong_key not in response.text
        unsigned.wait_for(r"Amplitude refused the request \(HTTP 400")
        log = unsigned.log()
        assert "SEGMENT_SHARED_SECRET is not set" in log
        assert wrong_key not in log
    finally:
        assert unsigned.stop() == 0
    assert amplitude.ingested_count == 0


# -- the command line ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_without_an_api_key_is_one_line_and_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "SEGMENT_"))}
    done = subprocess.run(
        [sys.executable, "-m", "segment_exposure", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "AMPLITUDE_API_KEY" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "argv", "words"),
    [
        ({"AMPLITUDE_REGION": "mars"}, [], "AMPLITUDE_REGION"),
        ({"AMPLITUDE_ENDPOINT": "ftp://user:pw@host"}, [], "AMPLITUDE_ENDPOINT"),
        ({"PORT": "eighty"}, [], "PORT"),
        ({}, ["--workers", "0"], "WORKERS"),
        ({"AMPLITUDE_DEADLINE": "-1"}, [], "AMPLITUDE_DEADLINE"),
    ],
)
def test_serve_rejects_bad_settings(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    argv: list[str],
    words: str,
) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and API_KEY not in err and "pw" not in err


def test_serve_without_gunicorn_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.setitem(sys.modules, "gunicorn", None)
    monkeypatch.setitem(sys.modules, "gunicorn.app", None)
    monkeypatch.setitem(sys.modules, "gunicorn.app.base", None)
    assert cli.main(["serve"]) == 2
    assert "pip install 'segment-exposure[server]'" in capsys.readouterr().err


def test_serve_worker_freezes_what_it_holds_once_the_app_is_loaded() -> None:
    """Each large batch's parsed and translated events set off full collections: the modules, the app and
    its pools, held for the worker's whole life, are frozen out of them (``gc.freeze``) once loaded."""
    from segment_exposure.cli import serve
    from segment_exposure.server import ServerSettings

    settings = ServerSettings(api_key="k" * 32, endpoint="http://127.0.0.1:9/2/httpapi")
    application = serve._application(settings, serve.gunicorn_options(settings, "127.0.0.1", 0, 1))
    gc.unfreeze()
    app = application.load()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        app.close()


@pytest.mark.slow
@pytest.mark.parametrize("limit", [2, 3, 64])
@pytest.mark.parametrize("inner", ["dict", "list"])
def test_depth_limit_is_exact_wherever_in_a_batch_the_deep_event_is(limit: int, inner: str) -> None:
    """A batch is checked event by event: the limit counts the batch's own level, and one deep event
    among shallow ones, first or last, is found."""
    from segment_exposure.server.webhook import BodyError, parse_events

    def levels(depth: int) -> Any:  # exactly ``depth`` nested containers
        value: Any = "x"
        for _ in range(depth):
            value = {"a": value} if inner == "dict" else [value]
        return value

    shallow = [{"type": "track"}] * 3
    for position in (0, 3):
        fits, too_deep = list(shallow), list(shallow)
        fits.insert(position, levels(limit - 1))
        too_deep.insert(position, levels(limit))
        assert len(parse_events(json.dumps(fits).encode(), max_depth=limit)) == 4
        with pytest.raises(BodyError, match=f"nests deeper than {limit} levels"):
            parse_events(json.dumps(too_deep).encode(), max_depth=limit)
    assert parse_events(json.dumps(levels(limit)).encode(), max_depth=limit)  # one event (or array)
    with pytest.raises(BodyError, match="nests deeper"):
        parse_events(json.dumps(levels(limit + 1)).encode(), max_depth=limit)
