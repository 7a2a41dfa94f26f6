"""ASGI integration (FastAPI, Starlette): ``app.add_middleware(SegmentExposureMiddleware, provider=...)``.

A pure ASGI middleware (no ``BaseHTTPMiddleware``, so streaming responses and background tasks keep
the identity, and nothing is buffered): for each HTTP or WebSocket connection it binds the request's
identity and context in a contextvar for the whole of the app's handling of it, so inside an endpoint
``provider.track(exposure)`` and ``ExposureTrackingClient.variant(None, flag)`` need no user. On
lifespan shutdown it flushes the provider within its deadline before the server exits.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from functools import partial
from typing import Any

from segment_exposure.identity import bind_user
from segment_exposure.tracking import serverless

from ._common import field, make_user, missing_framework
from ._request import DEFAULT_IDENTITY_SOURCES, RequestIdentity, valid_sources

try:
    import anyio.to_thread
    from starlette.requests import HTTPConnection
except ImportError as exc:
    raise ImportError(missing_framework("Starlette", "fastapi")) from exc

__all__ = [
    "SCOPE_KEY",
    "SegmentExposureMiddleware",
    "default_identify",
    "get_experiment",
    "get_provider",
]

log = logging.getLogger(__name__)

#: The ASGI scope key under which the middleware leaves itself for ``get_provider``/``get_experiment``.
SCOPE_KEY = "segment_exposure"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Identify = Callable[[HTTPConnection], object]


class SegmentExposureMiddleware:
    """Binds each connection's identity for the provider; flushes it on lifespan shutdown.

    ``identify``: a callable (or coroutine function) from the ``starlette.requests.HTTPConnection``
    (headers, cookies, client, scope; not the body) to an Experiment user or a mapping with
    ``user_id``/``device_id``; the default, ``default_identify``, reads ``identity_sources`` in order:
    the authenticated ``scope["user"]`` (Starlette's AuthenticationMiddleware; its ``user_id_attribute``),
    Segment's
    ``ajs_*`` cookies, Amplitude's ``AMP_``/``amp_`` cookies (given ``amplitude_api_key``), and the
    ``amp_device_id`` cookie. A sync ``identify`` runs on the event loop: keep it cheap or make it async.
    ``send_user_agent``/``send_ip``/``send_locale`` switch the request context off; the IP is the ASGI
    ``client`` (what the server made of proxy headers, e.g. uvicorn ``--proxy-headers``).
    ``experiment``: an ``ExposureTrackingClient`` handed to endpoints by ``get_experiment``.
    ``flush_timeout``: the shutdown flush's deadline (default: the provider's ``flush_timeout``).
    ``flush_each_request``: deliver each HTTP request's exposures before its last response chunk is sent
    (``segment_exposure.tracking.serverless``); ``None`` means on when a serverless platform is detected.
    ``metrics``: True or a provider label exports the provider's stats to Prometheus
    (``segment_exposure.metrics.register``; needs the ``metrics`` extra).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        provider: Any,
        identify: Identify | None = None,
        amplitude_api_key: str | None = None,
        identity_sources: Sequence[str] = DEFAULT_IDENTITY_SOURCES,
        user_id_attribute: str = "identity",
        send_user_agent: bool = True,
        send_ip: bool = True,
        send_locale: bool = True,
        experiment: Any = None,
        flush_timeout: float | None = None,
        flush_each_request: bool | None = None,
        metrics: bool | str | None = None,
    ) -> None:
        if isinstance(provider, type) or not callable(getattr(provider, "track", None)):
            raise TypeError("provider must be a SegmentExposureTrackingProvider (something with track())")
        if identify is not None and not callable(identify):
            raise TypeError("identify must be a callable from the connection to an Experiment user")
        if not valid_sources(list(identity_sources)):
            raise ValueError(f"identity_sources must be distinct names from {list(DEFAULT_IDENTITY_SOURCES)}")
        if amplitude_api_key is not None and (
            not isinstance(amplitude_api_key, str) or len(amplitude_api_key) < 10
        ):
            raise ValueError("amplitude_api_key must be your Amplitude project's API key (10+ characters)")
        if flush_timeout is not None and flush_timeout < 0:
            raise ValueError("flush_timeout must be >= 0")
        self.app = app
        self.provider = provider
        self.experiment = experiment
        self.identify = identify
        self.user_id_attribute = user_id_attribute
        self.identity = RequestIdentity(
            sources=tuple(identity_sources),
            amplitude_api_key=amplitude_api_key,
            send_user_agent=send_user_agent,
            send_ip=send_ip,
            send_locale=send_locale,
        )
        self.flush_timeout = flush_timeout
        # Resolved once, before anything is tracked: on by default where a serverless platform is detected.
        self.flush_each_request = serverless.flush_each_request(provider, flush_each_request)
        if metrics:
            from ..metrics import register_from_setting

            register_from_setting(provider, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, partial(self._lifespan_send, send))
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = self
        connection = HTTPConnection(scope)
        user = await self._identify(connection)
        client = scope.get("client")
        context = self.identity.context(
            user_agent=connection.headers.get("user-agent"),
            ip=client[0] if client else None,
            accept_language=connection.headers.get("accept-language"),
        )
        with bind_user(user, context=context):
            if kind == "http" and self.flush_each_request:
                await self._call_flushing(scope, receive, send)
            else:
                await self.app(scope, receive, send)

    async def _call_flushing(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The flush goes before the response's last body chunk: once it is sent the server (uvicorn,
        # Cloud Run) ends the request and the platform may freeze the process; Mangum returns only
        # after the app, so a flush there is in time too.
        context = serverless.lambda_context(scope)
        flushed = False

        async def send_flushing(message: Message) -> None:
            nonlocal flushed
            if not flushed and message["type"] == "http.response.body" and not message.get("more_body"):
                flushed = True
                await serverless.flush_request_async(self.provider, True, context=context)
            await send(message)

        try:
            await self.app(scope, receive, send_flushing)
        finally:
            if not flushed:
                await serverless.flush_request_async(self.provider, True, context=context)

    async def _identify(self, connection: HTTPConnection) -> object:
        if self.identify is None:
            return _default_identify(self, connection)
        try:
            user = self.identify(connection)
            if inspect.isawaitable(user):
                user = await user
            return user
        except Exception:
            log.exception("segment-exposure: the identify resolver raised; this request has no identity")
            return None

    async def _lifespan_send(self, send: Send, message: Message) -> None:
        # The app has run its own shutdown; exposures it or its last requests tracked go out now.
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await self.flush()
        await send(message)

    async def flush(self) -> bool:
        """Flush the provider from a worker thread (the event loop keeps running), within the deadline."""
        timeout = self.flush_timeout
        if timeout is None:
            timeout = float(getattr(self.provider, "flush_timeout", 5.0))
        flush = getattr(self.provider, "flush", None)
        if flush is None:
            return True
        try:
            done = bool(await anyio.to_thread.run_sync(flush, timeout))
        except Exception:
            log.exception("segment-exposure: flushing at shutdown failed")
            return False
        if not done:
            log.warning(
                "segment-exposure: not every exposure was delivered within %.1fs of shutdown", timeout
            )
        return done

    def __repr__(self) -> str:
        return f"<SegmentExposureMiddleware provider={self.provider!r} identity={self.identity!r}>"


def default_identify(connection: HTTPConnection) -> object:
    """The default ``identify``: an Experiment user with the browser's own ids (see the middleware)."""
    middleware = connection.scope.get(SCOPE_KEY)
    if not isinstance(middleware, SegmentExposureMiddleware):
        raise RuntimeError("default_identify needs SegmentExposureMiddleware on the app")
    return _default_identify(middleware, connection)


def _default_identify(middleware: SegmentExposureMiddleware, connection: HTTPConnection) -> object:
    ids = middleware.identity.ids(
        connection.cookies, _logged_in_user_id(connection, middleware.user_id_attribute)
    )
    return make_user(ids.get("user_id"), ids.get("device_id"))


def _logged_in_user_id(connection: HTTPConnection, attribute: str) -> str | None:
    from segment_exposure.identity.ids import as_id

    user = connection.scope.get("user")  # set by Starlette's AuthenticationMiddleware, when present
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        return as_id(field(user, attribute))
    except Exception:  # BaseUser.identity raises NotImplementedError unless the app's user defines it
        return None


def _middleware(connection: HTTPConnection) -> SegmentExposureMiddleware:
    middleware = connection.scope.get(SCOPE_KEY)
    if not isinstance(middleware, SegmentExposureMiddleware):
        raise RuntimeError(
            "SegmentExposureMiddleware is not on this app: app.add_middleware(SegmentExposureMiddleware, "
            "provider=provider)"
        )
    return middleware


def get_provider(connection: HTTPConnection) -> Any:
    """A FastAPI dependency: the middleware's provider (``Depends(get_provider)``)."""
    return _middleware(connection).provider


def get_experiment(connection: HTTPConnection) -> Any:
    """A FastAPI dependency: the ``ExposureTrackingClient`` given to the middleware as ``experiment=``."""
    experiment = _middleware(connection).experiment
    if experiment is None:
        raise RuntimeError(
            "no Experiment client: pass experiment=ExposureTrackingClient(...) to the middleware"
        )
    return experiment
