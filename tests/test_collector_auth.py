"""The local Segment collector authenticates as Segment's API does: Basic auth or the body's writeKey.

segment-analytics-python 2.3.x (the floor pyproject allows) sends only the body key; 2.4 sends both.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import requests

from segment_exposure import SegmentCollector

KEY = "collector-auth-key"
MESSAGE = {"type": "track", "event": "$exposure", "userId": "user-auth-0001", "messageId": "m-1"}


def _post(collector: SegmentCollector, body: Any, headers: dict[str, str] | None = None) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = requests.post(f"{collector.url}/v1/batch", data=data, headers=headers or {}, timeout=10)
    return response.status_code


def test_body_key_or_basic_auth_is_accepted_anything_else_is_401() -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    with SegmentCollector(KEY) as collector:
        assert _post(collector, {"batch": [MESSAGE], "writeKey": KEY}) == 200
        assert _post(collector, {"batch": [MESSAGE]}, basic) == 200
        zipped = gzip.compress(json.dumps({"batch": [MESSAGE], "writeKey": KEY}).encode())
        assert _post(collector, zipped, {"Content-Encoding": "gzip"}) == 200
        assert _post(collector, {"batch": [MESSAGE]}) == 401
        assert _post(collector, {"batch": [MESSAGE], "writeKey": "another-key"}) == 401
        assert _post(collector, b"not json") == 401  # unauthenticated: refused before it is read
        assert _post(collector, b"not json", basic) == 400
        assert len(collector.batches) == 3
