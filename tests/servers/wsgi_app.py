"""A plain WSGI app for the server matrix: ``GET /track?user=U`` tracks one exposure for U."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from exposure_app import track


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/track":
        body = track(parse_qs(environ.get("QUERY_STRING", ""))["user"][0])
    else:
        body = {"pid": os.getpid()}
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
