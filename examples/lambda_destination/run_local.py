"""Invoke the Lambda handler on this machine with a function-URL event, as Segment's webhook would call it.

Without ``AMPLITUDE_API_KEY`` in the environment, a local AmplitudeEmulator stands in for Amplitude and the
events it ingested are printed: no account needed. With a real key (and ``AMPLITUDE_ENDPOINT`` unset), the
exposures go to your Amplitude project.

    python examples/lambda_destination/run_local.py
"""

from __future__ import annotations

import base64
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from handler import lambda_handler

from segment_exposure import AmplitudeEmulator
from segment_exposure.server import sign

LOCAL_KEY = "local-amplitude-key"
LOCAL_SECRET = "local-shared-secret"


def function_url_event(body: bytes, signature: str | None) -> dict[str, Any]:
    """A Lambda function URL request (payload format 2.0), as AWS delivers it."""
    headers = {"content-type": "application/json", "user-agent": "Segment.io/1.0"}
    if signature is not None:
        headers["x-signature"] = signature
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "52.25.130.38"},
            "routeKey": "$default",
            "stage": "$default",
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def segment_events() -> list[dict[str, Any]]:
    """A webhook batch as Segment sends it: exposures, plus an event that is not one (it is ignored)."""
    events: list[dict[str, Any]] = []
    for n, (user, variant) in enumerate([("alice-0001", "treatment"), ("bob-00002", "control")]):
        events.append(
            {
                "type": "track",
                "event": "$exposure",
                "userId": user,
                "anonymousId": f"device-{n:04d}",
                "messageId": f"run-local-{n}",
                "timestamp": "2026-11-24T10:00:00.123Z",
                "properties": {"flag_key": "checkout-flow", "variant": variant, "experiment_key": "exp-1"},
                "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
            }
        )
    events.append({"type": "identify", "userId": "alice-0001", "traits": {"plan": "pro"}})
    return events


def main() -> int:
    with ExitStack() as stack:
        emulator = None
        if not os.environ.get("AMPLITUDE_API_KEY"):
            emulator = stack.enter_context(AmplitudeEmulator(api_keys={LOCAL_KEY}))
            os.environ["AMPLITUDE_API_KEY"] = LOCAL_KEY
            os.environ["AMPLITUDE_ENDPOINT"] = emulator.http_api_url
            os.environ.setdefault("SEGMENT_SHARED_SECRET", LOCAL_SECRET)
            print(f"no AMPLITUDE_API_KEY: using a local Amplitude emulator at {emulator.url}")
        body = json.dumps(segment_events()).encode()
        secret = os.environ.get("SEGMENT_SHARED_SECRET")
        response = lambda_handler(function_url_event(body, sign(body, secret) if secret else None), None)
        print(f"Lambda answered {response['statusCode']}: {response['body']}")
        if emulator is not None:
            for event in emulator.ingested:
                print("ingested:", json.dumps(event, sort_keys=True))
        return 0 if response["statusCode"] == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
