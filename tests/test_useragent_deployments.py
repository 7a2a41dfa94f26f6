"""User-agent parsing in every deployment of the destination, held to Segment's own destination.

``segment-exposure serve`` (a real gunicorn, with ua-parser-py installed as the ``server`` extra brings it)
receives the parity corpus (tests/fixtures/segment_corpus.json) as Segment's webhook would send it; the events
the local Amplitude ingests are compared, field by field on the user-agent-derived fields, with what Segment's
destination (tests/js/segment-actions) sends for the same events. The Segment Function's agreement is in
tests/test_segment_parity.py (all fields equal). Without the parser, ``serve`` and the Lambda handler say so
once at start-up.

Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from segment_exposure.delivery.useragent import available
from segment_exposure.testing import AmplitudeEmulator

from .segment_oracle import require_oracle, run_oracle
from .serve_process import ServeProcess
from .test_segment_parity import MIN_UA_AGREEMENT, ua_derived_fields

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CORPUS = json.loads((ROOT / "tests" / "fixtures" / "segment_corpus.json").read_text(encoding="utf-8"))
API_KEY = "amp-ua-key-51c0b7e2aa"
MISSING = "ua-parser-py is not installed"
#: The corpus's fields on which ua-parser-py answers differently from @amplitude/ua-parser-js 0.7.33 (in-app
#: iOS user agents, a Xiaomi model code, a Fire TV): the known cost of a Python port of a newer parser.
KNOWN_DISAGREEMENTS = 6


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}) as emulator:
        yield emulator


def _serve(amplitude: AmplitudeEmulator, **env: str) -> ServeProcess:
    return ServeProcess(
        {"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_ENDPOINT": amplitude.http_api_url, **env}, workers=1
    )


@pytest.fixture
def blocked_parser(tmp_path: Path) -> str:
    """A PYTHONPATH on which ``import uaparser`` fails, as where ua-parser-py is not installed."""
    package = tmp_path / "uaparser"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('ua-parser-py is not installed here')\n")
    return os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", str(ROOT))])


def test_served_webhook_derives_segments_user_agent_fields(amplitude: AmplitudeEmulator) -> None:
    assert available(), "the server extra brings ua-parser-py"
    require_oracle()
    events = [item["event"] for item in CORPUS]
    segment = run_oracle(events)
    server = _serve(amplitude)
    try:
        answer = requests.post(f"{server.url}/", json=events, timeout=30)
        assert answer.status_code == 200, answer.text
        assert MISSING not in server.log()
    finally:
        assert server.stop() == 0
    ingested = {e["insert_id"]: e for e in amplitude.ingested}
    total = agree = parsed = 0
    disagreements: list[str] = []
    for event, reference in zip(events, segment, strict=True):
        if reference["outcome"] != "sent" or event["messageId"] not in ingested:
            continue
        ours = ingested[event["messageId"]]
        derived = ua_derived_fields(event)
        parsed += bool(derived)
        for field in derived:
            total += 1
            if ours.get(field) == reference["event"].get(field):
                agree += 1
            else:
                disagreements.append(
                    f"{field}: Segment {reference['event'].get(field)!r}, ours {ours.get(field)!r}"
                )
    print(f"\nserve: user-agent-derived fields agreeing with Segment's destination: {agree}/{total}")
    assert parsed >= 60, "the corpus's web events went through the served webhook"
    assert agree >= MIN_UA_AGREEMENT * total
    assert len(disagreements) <= KNOWN_DISAGREEMENTS, disagreements


def test_serve_warns_once_without_the_parser(amplitude: AmplitudeEmulator, blocked_parser: str) -> None:
    server = _serve(amplitude, PYTHONPATH=blocked_parser)
    try:
        web = next(item["event"] for item in CORPUS if ua_derived_fields(item["event"]))
        for _ in range(2):
            assert requests.post(f"{server.url}/", json=[web], timeout=30).status_code == 200
    finally:
        assert server.stop() == 0
    assert server.log().count(MISSING) == 1, server.output()
    (ingested,) = {e["insert_id"]: e for e in amplitude.ingested}.values()
    assert not set(ua_derived_fields(web)) & set(ingested), "no parser, so no user-agent-derived field"


LAMBDA_SCRIPT = """
import json, logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
from segment_exposure.server import lambda_handler
event = {"version": "2.0", "rawPath": "/", "headers": {"content-type": "application/json"},
         "requestContext": {"http": {"method": "POST", "path": "/"}}, "isBase64Encoded": False,
         "body": sys.argv[1]}
for _ in range(2):
    print("STATUS", lambda_handler(event, None)["statusCode"])
"""


def test_lambda_warns_once_per_container_without_the_parser(
    amplitude: AmplitudeEmulator, blocked_parser: str
) -> None:
    web: dict[str, Any] = next(item["event"] for item in CORPUS if ua_derived_fields(item["event"]))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "SEGMENT_"))},
        "AMPLITUDE_API_KEY": API_KEY,
        "AMPLITUDE_ENDPOINT": amplitude.http_api_url,
        "PYTHONPATH": blocked_parser,
    }
    done = subprocess.run(
        [sys.executable, "-c", LAMBDA_SCRIPT, json.dumps([web])],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("STATUS 200") == 2, done.stdout + done.stderr
    assert done.stdout.count(MISSING) == 1, done.stdout
