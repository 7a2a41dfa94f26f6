"""The webhook as a plain WSGI application: any WSGI server can run it (``segment-exposure serve`` uses
gunicorn), and no web framework is needed for two routes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import IO, Any

from .settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DEPTH
from .webhook import BatchDestination, WebhookHandler, WebhookResponse, error_response

__all__ = ["StartResponse", "WebhookApp", "create_app"]

StartResponse = Callable[..., Any]

_READ_SIZE = 1 << 20


def create_app(
    destination: BatchDestination,
    shared_secret: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> WebhookApp:
    """A WSGI app: ``POST /`` delivers one Segment event or an array of them; ``GET /healthz`` is liveness.

    With ``shared_secret``, ``POST`` bodies must carry Segment's ``X-Signature`` (401 otherwise). Bodies
    over ``max_body_bytes`` get 413, bodies that are not JSON events 400. The other statuses are those of
    `segment_exposure.server.webhook.WebhookHandler`.
    """
    handler = WebhookHandler(destination, shared_secret, max_body_bytes=max_body_bytes, max_depth=max_depth)
    return WebhookApp(handler)


def _read(stream: IO[bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes, in pieces, so a slow client cannot make one huge read allocation."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        data = stream.read(min(remaining, _READ_SIZE))
        if not data:
            break
        chunks.append(data)
        remaining -= len(data)
    return b"".join(chunks)


class WebhookApp:
    """The WSGI callable returned by `create_app`; ``handler`` holds the destination and settings."""

    def __init__(self, handler: WebhookHandler) -> None:
        self.handler = handler

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.handler!r})"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        response = self._route(method, environ.get("PATH_INFO") or "/", environ)
        payload = response.payload()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            *response.headers,
        ]
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [] if method == "HEAD" else [payload]

    def _route(self, method: str, path: str, environ: dict[str, Any]) -> WebhookResponse:
        early = self.handler.route(method, path)
        if early is not None:
            return early
        body_or_error = self._body(environ)
        if isinstance(body_or_error, WebhookResponse):
            return body_or_error
        return self.handler.handle(body_or_error, environ.get("HTTP_X_SIGNATURE"))

    def _body(self, environ: dict[str, Any]) -> bytes | WebhookResponse:
        stream: IO[bytes] = environ["wsgi.input"]
        cap = self.handler.max_body_bytes
        length_text = (environ.get("CONTENT_LENGTH") or "").strip()
        if length_text:
            if not (length_text.isascii() and length_text.isdigit()):
                return error_response(400, "Content-Length is not a number")
            length = int(length_text)
            oversized = self.handler.too_large(length)
            if oversized is not None:
                return oversized  # refused before reading a byte of it
            body = _read(stream, length)
            if len(body) < length:
                return error_response(400, "the body ended before Content-Length bytes arrived")
            return body
        if not environ.get("wsgi.input_terminated"):
            # Without a length, only a server that ends the stream (gunicorn does) can be read safely.
            return error_response(411, "send Content-Length")
        body = _read(stream, cap + 1)
        return self.handler.too_large(len(body)) or body
