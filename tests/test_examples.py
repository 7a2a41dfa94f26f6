"""Every example runs, as a user would run it, against the local emulators, and does what it says.

The Django example's own test suite (``manage.py test``) and the gunicorn ``--preload`` demo are run
here too; tests/test_django_integration.py and tests/test_gunicorn_preload.py check them more deeply.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SECRETS = (
    "SEGMENT_WRITE_KEY",
    "SEGMENT_HOST",
    "AMPLITUDE_API_KEY",
    "AMPLITUDE_DEPLOYMENT_KEY",
    "AMPLITUDE_ENDPOINT",
)


def run(*args: str, cwd: Path = EXAMPLES, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(*args: str, cwd: Path = EXAMPLES) -> dict[str, Any]:
    done = run(*args, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_provider_quickstart() -> None:
    done = run("provider_quickstart.py")
    assert done.returncode == 0, done.stderr
    assert "the local collector received 20 $exposure events" in done.stdout


def test_experiment_local() -> None:
    out = run_json("experiment_local.py")
    received = {m["userId"]: m["properties"] for m in out["received"]}
    assert set(received) == set(out["served"])  # one exposure per user: repeats and the fallback not sent
    for user_id, key in out["served"].items():
        expected = {"flag_key": "checkout-flow", "experiment_key": "exp-checkout-1"}
        if key != "off":  # the default variant is sent without one: an unset
            expected["variant"] = key
        assert received[user_id] == expected
    assert out["experiment"]["fallbacks"] == 1 and out["provider"]["delivered"] == 10


def test_experiment_remote_asks_amplitude_to_track_nothing() -> None:
    out = run_json("experiment_remote.py")
    assert out["fetches"] == 5  # one per request, serving both flags
    assert out["tracking_headers"] == ["no-track/no-track"]
    sent = {
        (m["userId"], m["properties"]["flag_key"]): m["properties"].get("variant") for m in out["received"]
    }
    for user_id, flags in out["served"].items():
        for flag, key in flags.items():
            assert sent[(user_id, flag)] == (None if key == "off" else key)


@pytest.mark.slow
def test_openfeature_example() -> None:
    """Requirement 4.3.6 (the hook's after stage) and Condition 2.7.1 (provider tracking), end to end."""
    out = run_json("openfeature/app.py")
    exposures = {m["userId"]: m["properties"] for m in out["received"] if m["event"] == "$exposure"}
    assert set(exposures) == set(out["served"])  # one per user: repeats deduplicated, the banner not sent
    for user_id, served in out["served"].items():
        variant, reason = served["checkout-flow"]
        expected = {"flag_key": "checkout-flow", "experiment_key": "exp-checkout-1"}
        if reason != "DEFAULT":  # the default variant is sent without one: an unset
            expected["variant"] = variant
        assert exposures[user_id] == expected
        assert served["banner"] == {"headline": "20% off annual plans"}
    orders = [m for m in out["received"] if m["event"] == "Order Completed"]
    assert len(orders) == len(out["served"]) and all(m["properties"]["plan"] == "pro" for m in orders)
    assert out["missing_flag_error"] == "FLAG_NOT_FOUND"
    assert out["hook"]["skipped"]["track_exposure_false"] == len(out["served"])


def test_flask_app_demo() -> None:
    out = run_json("flask_app/app.py", "--demo")
    received = out["received"]
    assert [m["userId"] for m in received].count("alice-0001") == 1  # two views, one exposure
    anonymous = [m for m in received if m["userId"] is None]
    assert len(anonymous) == 1 and anonymous[0]["anonymousId"]
    assert all(m["properties"]["flag_key"] == "checkout-flow" for m in received)


def test_fastapi_app_demo() -> None:
    out = run_json("fastapi_app/app.py", "--demo")
    received = {m["anonymousId"]: m for m in out["received"]}
    for answer in out["responses"].values():  # each request's own cookies, on its own exposure
        assert received[answer["device_id"]]["userId"] == answer["user_id"]
    assert received["b2e1d8f3-0000-4000-8000-000000000002"]["userId"] == "alice-0001"
    assert out["stats"]["delivered"] == out["stats"]["tracked"] == 2  # flushed by the lifespan shutdown


@pytest.mark.requires("npm:browser", "chromium")
def test_browser_identity_demo() -> None:
    # Headless Chromium, the SDKs from tests/js/browser (both installed before the run: requires);
    # tests/test_browser_identity.py checks the same page in depth.
    out = run_json("browser_identity/app.py", "--demo")
    anonymous_id = out["browser"]["anonymousId"]
    assert out["page_event"] == [{"anonymousId": anonymous_id, "userId": None}]
    assert sorted((e["flag"], e["anonymousId"], e["userId"]) for e in out["exposures"]) == [
        ("checkout-anonymous", anonymous_id, None),
        ("checkout-identified", anonymous_id, out["browser"]["userId"]),
    ]
    assert out["amplitude_cookie"]["device_id"] == out["browser"]["amplitudeDeviceId"]


def test_django_project_test_suite() -> None:
    done = run("manage.py", "test", "--noinput", cwd=EXAMPLES / "django_project")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stderr


def test_gunicorn_preload_demo() -> None:
    done = run("gunicorn_preload/demo.py")
    assert done.returncode == 0, done.stdout + done.stderr
    workers = [line for line in done.stdout.splitlines() if line.startswith("worker ")]
    assert len(workers) == 2
    for line in workers:  # "worker PID: N exposure(s) tracked, N at the collector"
        tracked = int(line.split(": ")[1].split()[0])
        arrived = int(line.split(", ")[1].split()[0])
        assert tracked == arrived > 0


def test_lambda_destination_runs_locally() -> None:
    done = run("lambda_destination/run_local.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Lambda answered 200" in done.stdout
    ingested = [
        json.loads(line.split(": ", 1)[1])
        for line in done.stdout.splitlines()
        if line.startswith("ingested:")
    ]
    assert len(ingested) == 2 and all(e["event_type"] == "$exposure" and e["insert_id"] for e in ingested)


def test_serverless_lambda_delivers_each_invocation_before_it_returns() -> None:
    done = run("serverless_lambda/run_local.py")
    assert done.returncode == 0, done.stdout + done.stderr
    arrived = [int(n) for n in re.findall(r"(\d+) at the collector on return", done.stdout)]
    assert arrived == [1, 2, 3, 4, 5]  # each invocation's exposure was there when its handler returned
    assert "requests to Segment: 5" in done.stdout  # one request per invocation
    assert "freeze the process after each response" not in done.stderr  # the flush is set up: no warning


def test_segment_function_source_is_what_the_command_prints() -> None:
    printed = run("-m", "segment_exposure", "function")
    assert printed.returncode == 0
    bundled = (EXAMPLES.parent / "segment_exposure" / "functions" / "amplitude_exposure.js").read_text()
    assert printed.stdout == bundled
    assert "async function onBatch (" in bundled and "async function onTrack (" in bundled
    readme = (EXAMPLES / "segment_function" / "README.md").read_text()
    assert "segment-exposure function" in readme and "apiKey" in readme
