"""A FastAPI app whose exposures land on the browser's own Segment/Amplitude identity.

    pip install 'segment-exposure[fastapi,experiment]' uvicorn
    uvicorn --app-dir examples/fastapi_app app:app        # serve on http://127.0.0.1:8000
    python examples/fastapi_app/app.py --demo             # a free port, a few requests, a summary

No identity set-up: the middleware reads the ``ajs_anonymous_id`` / ``ajs_user_id`` cookies analytics.js
sets (and Amplitude's, with ``amplitude_api_key``). The endpoint gets the Experiment client from a
FastAPI dependency, and asks for a variant with no user: the request's. When uvicorn stops, the
lifespan shutdown flushes what is queued. With SEGMENT_WRITE_KEY set exposures go to Segment
(SEGMENT_HOST overrides the API host), with AMPLITUDE_DEPLOYMENT_KEY flags come from Amplitude;
without them, local stand-ins are used.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any

from amplitude_experiment import LocalEvaluationClient, LocalEvaluationConfig
from fastapi import FastAPI

from segment_exposure import (
    ExposureTrackingClient,
    FlagConfigServer,
    SegmentCollector,
    SegmentExposureMiddleware,
    SegmentExposureTrackingProvider,
    bound_user,
    demo_flags,
    identity_from_user,
)
from segment_exposure.integrations.fastapi import ExperimentClient

FLAG = "checkout-flow"
LOCAL_WRITE_KEY = "local-write-key"

collector: SegmentCollector | None = None
write_key, host = os.environ.get("SEGMENT_WRITE_KEY"), os.environ.get("SEGMENT_HOST")
if not write_key:
    collector = SegmentCollector(LOCAL_WRITE_KEY).start()
    write_key, host = LOCAL_WRITE_KEY, collector.url
deployment_key = os.environ.get("AMPLITUDE_DEPLOYMENT_KEY")
if deployment_key:
    flags = LocalEvaluationClient(deployment_key, LocalEvaluationConfig())
else:
    flag_server = FlagConfigServer(flags=demo_flags()).start()
    flags = LocalEvaluationClient(
        flag_server.deployment_key, LocalEvaluationConfig(server_url=flag_server.url)
    )
flags.start()

provider = SegmentExposureTrackingProvider(write_key, host)
experiment = ExposureTrackingClient(flags, provider)

app = FastAPI()
app.add_middleware(SegmentExposureMiddleware, provider=provider, experiment=experiment)


@app.get("/")
async def checkout(experiment: ExperimentClient) -> dict[str, Any]:
    # No user: the request's identity, from the browser's cookies. Read twice, tracked once.
    variant = experiment.variant(None, FLAG, fallback="off")
    experiment.variant(None, FLAG, fallback="off")
    user_id, device_id = identity_from_user(bound_user())
    return {"user_id": user_id, "device_id": device_id, "variant": variant.key}


def demo() -> dict[str, Any]:
    """Serve under uvicorn on a free port, send browser-like requests, stop (flushing), and summarise."""
    import httpx
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn has no event to wait on
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    visitors = {
        "analytics.js classic, logged out": "ajs_anonymous_id=%22a1f0c9e2-0000-4000-8000-000000000001%22",
        "analytics-next, logged in": (
            "ajs_anonymous_id=b2e1d8f3-0000-4000-8000-000000000002; ajs_user_id=alice-0001"
        ),
    }
    answers = {name: httpx.get(url, headers={"Cookie": cookie}).json() for name, cookie in visitors.items()}
    server.should_exit = True  # as on SIGTERM: the lifespan shutdown flushes the provider
    thread.join(30)
    summary: dict[str, Any] = {"responses": answers, "stats": provider.stats()}
    if collector is not None:
        summary["received"] = [
            {
                "userId": m["userId"],
                "anonymousId": m["anonymousId"],
                "variant": m["properties"].get("variant"),
            }
            for m in collector.events()
        ]
    return summary


if __name__ == "__main__":
    import sys

    if "--demo" in sys.argv[1:]:
        print(json.dumps(demo(), indent=2, default=str))
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
