"""A Lambda-like execution environment in a child process, for tests/test_serverless_freeze.py.

``python -m tests.serverless_runtime STYLE FLUSH COLLECTOR_URL WRITE_KEY [SDK]``: STYLE is ``plain`` (an
``(event, context)`` handler) or ``mangum`` (a FastAPI app behind Mangum); FLUSH is ``flush`` (the
handler wrapped with ``flush_after``) or ``none``; SDK is whose client the provider builds (its ``sdk=``):
``segment`` (the default) or ``rudderstack``. Like Lambda's runtime loop, it takes one event at a
time (a JSON line on stdin, the stand-in for the Runtime API's ``/next``), calls the handler with a
context that counts down to the function's timeout, writes the response (a JSON line on stdout) and is
frozen right after: it stops itself with SIGSTOP at the point where Lambda freezes the environment, so
no thread of it gets CPU that the platform would not give it. The test thaws it with SIGCONT for the
next event and ends it with SIGKILL, as Lambda does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import uuid
from typing import Any

from segment_exposure import Exposure, SegmentExposureTrackingProvider, flush_after

EXPOSURE = Exposure("checkout", "treatment", "exp-1")


class LambdaContext:
    """What Lambda's Python runtime passes as ``context``: ids, and the time left before the timeout."""

    def __init__(self, timeout_ms: int) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 128
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def track_all(provider: SegmentExposureTrackingProvider, users: list[str]) -> int:
    return sum(provider.track(EXPOSURE, {"user_id": user}) for user in users)


def plain_handler(provider: SegmentExposureTrackingProvider) -> Any:
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return {"statusCode": 200, "tracked": track_all(provider, event["users"])}

    return handler


def mangum_handler(provider: SegmentExposureTrackingProvider) -> Any:
    from fastapi import FastAPI
    from mangum import Mangum

    app = FastAPI()

    @app.post("/sync")  # a plain def endpoint: FastAPI runs it in its thread pool
    def sync_endpoint(body: dict[str, Any]) -> dict[str, int]:
        return {"tracked": track_all(provider, body["users"])}

    @app.post("/async")  # an async endpoint: on the event loop Mangum runs for the invocation
    async def async_endpoint(body: dict[str, Any]) -> dict[str, int]:
        return {"tracked": track_all(provider, body["users"])}

    return Mangum(app, lifespan="off")


def main(argv: list[str]) -> None:
    style, flush, host, write_key, *rest = argv
    sdk = rest[0] if rest else "segment"
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(message)s")
    provider = SegmentExposureTrackingProvider(write_key, host=host, sdk=sdk)
    handler = plain_handler(provider) if style == "plain" else mangum_handler(provider)
    if flush == "flush":
        handler = flush_after(provider)(handler)
    out = sys.stdout
    while line := sys.stdin.readline():
        request = json.loads(line)
        response = handler(request["event"], LambdaContext(request["timeout_ms"]))
        out.write(json.dumps({"response": response, "stats": provider.stats()}) + "\n")
        out.flush()
        os.kill(os.getpid(), signal.SIGSTOP)  # frozen: the response is out, the next event is not in


if __name__ == "__main__":
    main(sys.argv[1:])
