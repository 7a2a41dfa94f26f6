"""The webhook as an ASGI application: what ``segment-exposure serve`` runs, under gunicorn's ``asgi`` worker.

Why ASGI and not the WSGI app under threads: a WSGI server hands a connection to a worker thread before its
body has arrived, so a handful of clients that send headers and then nothing hold every thread, and signed
requests from Segment wait behind them. Here the body is read by the event loop: a stalled or slow client
costs a coroutine and its buffer, not a thread, and the body must arrive within ``body_timeout`` seconds
(else 408 and the connection is closed). Only a request whose whole body is in memory goes to a thread,
where the same `WebhookHandler` as in the WSGI app and the Lambda
verifies, parses and delivers it. The routes and statuses are those of `create_app`.

Bodies in memory are bounded per worker (``max_buffered_bytes``, default 4 bodies of the maximum size):
bytes are charged as they arrive and released when the request is answered, and a request that would go
over is answered 503 with ``Retry-After`` (Segment retries), so many clients sending large bodies slowly
cannot make a worker run out of memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .settings import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DEPTH
from .webhook import BatchDestination, WebhookHandler, WebhookResponse, error_response

__all__ = ["DEFAULT_DELIVERY_THREADS", "WebhookASGIApp", "create_asgi_app"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Deliveries one worker process runs at once; more requests with a whole body wait (as coroutines).
#: As many as gthread workers had threads: each may hold a parsed batch of up to the body limit.
DEFAULT_DELIVERY_THREADS = 4
#: Bodies of the maximum size a worker holds in memory at once, receiving or waiting for a thread.
BUFFERED_BODIES = 4
#: Seconds Segment is asked to wait when a worker holds too many bodies.
BUSY_RETRY_AFTER = "1"


class _Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


class _Busy(Exception):
    """Taking this request's next bytes would put the worker over its budget of buffered bodies."""


class _Charge:
    """Bytes one request holds against the app's budget (touched on the event loop only)."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


def create_asgi_app(
    destination: BatchDestination,
    shared_secret: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    delivery_threads: int = DEFAULT_DELIVERY_THREADS,
    max_buffered_bytes: int | None = None,
) -> WebhookASGIApp:
    """An ASGI app with the routes and statuses of `segment_exposure.server.create_app`, plus 408
    when a body does not arrive within ``body_timeout`` seconds and 503 (``Retry-After``) when the worker
    already holds ``max_buffered_bytes`` of bodies (default: 4 bodies of ``max_body_bytes``)."""
    handler = WebhookHandler(destination, shared_secret, max_body_bytes=max_body_bytes, max_depth=max_depth)
    return WebhookASGIApp(
        handler,
        body_timeout=body_timeout,
        delivery_threads=delivery_threads,
        max_buffered_bytes=max_buffered_bytes,
    )


class WebhookASGIApp:
    """The ASGI callable returned by `create_asgi_app`; ``handler`` holds the destination."""

    def __init__(
        self,
        handler: WebhookHandler,
        *,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        delivery_threads: int = DEFAULT_DELIVERY_THREADS,
        max_buffered_bytes: int | None = None,
    ) -> None:
        if max_buffered_bytes is None:
            max_buffered_bytes = BUFFERED_BODIES * handler.max_body_bytes
        if not body_timeout > 0 or delivery_threads < 1 or max_buffered_bytes < 1:
            raise ValueError("body_timeout, delivery_threads and max_buffered_bytes must be positive")
        self.handler = handler
        self.body_timeout = body_timeout
        self.delivery_threads = delivery_threads
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered_bytes = 0  # bodies held now, receiving or waiting for a delivery thread
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.handler!r}, body_timeout={self.body_timeout}, "
            f"delivery_threads={self.delivery_threads})"
        )

    def close(self) -> None:
        """Stop the delivery threads (after the deliveries in progress) and close the destination."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        close = getattr(self.handler.destination, "close", None)
        if callable(close):
            close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope.get("method", "GET")).upper()
        headers = {bytes(k).lower(): bytes(v) for k, v in scope.get("headers", ())}
        charge = _Charge()
        try:
            response = await self._route(method, str(scope.get("path") or "/"), headers, receive, charge)
        except _Disconnected:
            return
        finally:
            self.buffered_bytes -= charge.bytes
        payload = response.payload()
        out = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
        ]
        if response.status in (408, 411, 413) or (response.status in (400, 503) and method == "POST"):
            out.append((b"connection", b"close"))  # the rest of the body (if any) is not read
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})

    async def _route(
        self, method: str, path: str, headers: dict[bytes, bytes], receive: Receive, charge: _Charge
    ) -> WebhookResponse:
        early = self.handler.route(method, path)
        if early is not None:
            return early
        body = await self._body(headers, receive, charge)
        if isinstance(body, WebhookResponse):
            return body
        signature = headers.get(b"x-signature")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool(),
            self.handler.handle,
            body,
            None if signature is None else signature.decode("latin-1"),
        )

    async def _read(self, receive: Receive, limit: int, charge: _Charge) -> bytes:
        """The body, up to ``limit`` bytes (the server de-chunks), each chunk charged to the budget;
        raises ``_Disconnected`` if the client left, ``_Busy`` if the budget is used up."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            if chunk:
                if self.buffered_bytes + len(chunk) > self.max_buffered_bytes:
                    raise _Busy
                self.buffered_bytes += len(chunk)
                charge.bytes += len(chunk)
                chunks.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.delivery_threads, thread_name_prefix="webhook")
        return self._executor

    async def _body(
        self, headers: dict[bytes, bytes], receive: Receive, charge: _Charge
    ) -> bytes | WebhookResponse:
        cap = self.handler.max_body_bytes
        length_text = headers.get(b"content-length", b"").strip()
        limit = cap + 1
        if length_text:
            if not length_text.isdigit():
                return error_response(400, "Content-Length is not a number")
            length = int(length_text)
            oversized = self.handler.too_large(length)
            if oversized is not None:
                return oversized  # refused before reading a byte of it
            limit = length
        try:
            body = await asyncio.wait_for(self._read(receive, limit, charge), self.body_timeout)
        except _Busy:
            logger.warning(
                "webhook: %d bytes of request bodies held (the limit); asking for a retry",
                self.buffered_bytes,
            )
            return error_response(
                503, "the server holds too many request bodies; retry", ("Retry-After", BUSY_RETRY_AFTER)
            )
        except asyncio.TimeoutError:
            logger.warning("webhook: a request body did not arrive within %.1f s; closing", self.body_timeout)
            return error_response(
                408, f"the body did not arrive within {self.body_timeout:g} s; send it without pauses"
            )
        if length_text and len(body) < limit:
            return error_response(400, "the body ended before Content-Length bytes arrived")
        return self.handler.too_large(len(body)) or body
