"""A provider app for the real-Prometheus test, run by gunicorn in multiprocess mode (2 workers).

``POST /track?n=N&prefix=P`` tracks N exposures for users ``P-0`` ... ``P-(N-1)`` and answers with the
worker's pid; ``GET /metrics`` serves every worker's provider metrics, summed. Each worker builds its own
provider at import (no ``--preload``), as examples/monitoring/gunicorn_conf.py describes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from segment_exposure import Exposure, SegmentExposureTrackingProvider, register
from segment_exposure.metrics import exposition_registry

provider = SegmentExposureTrackingProvider(
    os.environ["SEGMENT_WRITE_KEY"],
    os.environ["SEGMENT_HOST"],
    client_options={"upload_interval": 0.05, "max_retries": 2},
)
register(provider, sync_interval=0.2)
EXPOSURE = Exposure(flag_key="checkout", variant="treatment", experiment_key="exp-1", metadata=None)
print(f"worker ready: provider app {os.getpid()}", flush=True)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/metrics":
        body = generate_latest(exposition_registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    n, prefix = int(query["n"][0]), query["prefix"][0]
    accepted = sum(provider.track(EXPOSURE, {"user_id": f"{prefix}-{i}"}) for i in range(n))
    body = json.dumps({"pid": os.getpid(), "accepted": accepted}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
