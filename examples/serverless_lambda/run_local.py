"""Invoke both Lambda handlers on this machine and show each invocation's exposures delivered on return.

Without ``SEGMENT_WRITE_KEY`` in the environment, a local Segment collector stands in for Segment: no
account needed. ``AWS_LAMBDA_FUNCTION_NAME`` is set as Lambda sets it, so the provider knows where it runs.

    python examples/serverless_lambda/run_local.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segment_exposure import SegmentCollector

LOCAL_KEY = "local-write-key"


class LambdaContext:
    """What Lambda passes as ``context``: here, only the countdown to the function's timeout."""

    def __init__(self, timeout_s: float) -> None:
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def http_api_event(path: str) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) request, as Mangum receives it."""
    return {
        "version": "2.0",
        "routeKey": "GET /checkout/{user_id}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abcdefghij.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def main() -> int:
    with ExitStack() as stack:
        collector = None
        if not os.environ.get("SEGMENT_WRITE_KEY"):
            collector = stack.enter_context(SegmentCollector(LOCAL_KEY))
            os.environ["SEGMENT_WRITE_KEY"] = LOCAL_KEY
            os.environ["SEGMENT_HOST"] = collector.url
            print(f"no SEGMENT_WRITE_KEY: using a local Segment collector at {collector.url}")
        os.environ.setdefault("AWS_LAMBDA_FUNCTION_NAME", "checkout-api")

        import app
        import handler

        def at_collector() -> int:
            return len(collector.events()) if collector is not None else -1

        for n, user in enumerate(["alice-0001", "bob-00002", "carol-003"], start=1):
            handler.lambda_handler({"user_id": user}, LambdaContext(3.0))
            print(f"invocation {n} (plain handler): 1 tracked, {at_collector()} at the collector on return")
        for n, user in enumerate(["dave-0004", "erin-0005"], start=4):
            response = app.handler(http_api_event(f"/checkout/{user}"), LambdaContext(3.0))
            variant = json.loads(response["body"])["variant"]
            print(
                f"invocation {n} (FastAPI + Mangum, {variant}): {at_collector()} at the collector on return"
            )
        if collector is not None:
            print(f"requests to Segment: {collector.requests}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
