"""Exposures from AWS Lambda, Cloud Functions and Cloud Run: delivered before each response returns.

These platforms freeze the process as soon as a response is returned and later kill it without notice:
a background thread gets no CPU to send what was queued, and exit hooks never run. ``flush_after``
wraps an ``(event, context)`` handler, and ``flush_request`` ends a web request, so that what the
invocation tracked is posted to Segment (one request, at once) before the response goes out, within
the time the platform leaves. What does not make it in time is counted as ``flush_deadline``; the bound
is hard (``tracking.hard_deadline``): a Segment answering too slowly has its connection cut at the deadline.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from segment_exposure.tracking import segment_client
from segment_exposure.tracking.deployment import PLATFORM_VARIABLES, detect_platform

if TYPE_CHECKING:  # annotations only
    from segment_exposure.tracking.provider import SegmentExposureTrackingProvider

__all__ = [
    "DEFAULT_MARGIN",
    "PLATFORM_VARIABLES",
    "detect_platform",
    "flush_after",
    "flush_each_request",
    "flush_request",
    "flush_request_async",
    "invocation_timeout",
    "lambda_context",
]

log = logging.getLogger(__name__)

#: Seconds left for the platform's own work after the flush, when the context says how long remains.
DEFAULT_MARGIN = 0.5

#: Where adapters put the Lambda context: Mangum in the ASGI scope; Zappa, serverless-wsgi and
#: apig-wsgi in the WSGI environ.
_CONTEXT_KEYS = ("aws.context", "lambda.context", "serverless.context", "apig_wsgi.context")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _remaining_seconds(context: object) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        millis = remaining()
    except Exception:
        return None
    return float(millis) / 1000.0 if isinstance(millis, int | float) else None


def invocation_timeout(
    provider: SegmentExposureTrackingProvider,
    context: object = None,
    *,
    timeout: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> float:
    """Seconds a flush may take: ``timeout`` (default ``provider.flush_timeout``), and, when ``context``
    is a Lambda context, never past its remaining time minus ``margin``, so the handler still returns
    before the platform's timeout.
    """
    seconds = provider.flush_timeout if timeout is None else timeout
    remaining = _remaining_seconds(context)
    if remaining is not None:
        seconds = min(seconds, remaining - margin)
    return max(0.0, seconds)


def lambda_context(scope_or_environ: Mapping[str, Any]) -> object | None:
    """The Lambda context an adapter put into an ASGI scope or a WSGI environ, if any."""
    for key in _CONTEXT_KEYS:
        context: object = scope_or_environ.get(key)
        if context is not None and _remaining_seconds(context) is not None:
            return context
    return None


def _idle(provider: SegmentExposureTrackingProvider) -> bool:
    """True when nothing tracked awaits delivery: a flush would send nothing and need no thread hop."""
    return provider.outstanding() <= 0 and not segment_client.unfinished(provider.analytics)


def _flush(provider: SegmentExposureTrackingProvider, seconds: float) -> bool:
    if _idle(provider):
        return True
    started = time.monotonic()
    delivered = provider.flush(seconds)
    if not delivered:
        log.warning(
            "segment-exposure: exposures not all delivered within the %.2f s this flush had (%.2f s spent); "
            "see provider.stats()['dropped']['flush_deadline']",
            seconds,
            time.monotonic() - started,
        )
    return delivered


def flush_after(
    provider: SegmentExposureTrackingProvider,
    *,
    timeout: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> Callable[[Handler], Handler]:
    """Decorate an ``(event, context)`` handler (sync or ``async``) so what it tracked is delivered
    before it returns, or raises.

    The flush posts everything the invocation tracked as one request, at once, and waits at most
    ``timeout`` seconds (default ``provider.flush_timeout``), never past the Lambda context's
    remaining time minus ``margin``, however slowly Segment answers. An invocation that tracked
    nothing sends nothing. Wrap the outermost handler, e.g. ``handler = flush_after(provider)(Mangum(app))``.
    """
    if margin < 0:
        raise ValueError("margin must be >= 0")
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be >= 0")

    def decorate(handler: Handler) -> Handler:
        if not callable(handler):
            raise TypeError(f"flush_after() wraps a handler (event, context), got {type(handler).__name__}")
        provider.deliver_per_invocation()

        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def async_handler(event: Any, context: Any = None) -> Any:
                try:
                    return await handler(event, context)
                finally:
                    seconds = invocation_timeout(provider, context, timeout=timeout, margin=margin)
                    if not _idle(provider):
                        await asyncio.to_thread(_flush, provider, seconds)

            return cast(Handler, async_handler)

        @functools.wraps(handler)
        def sync_handler(event: Any, context: Any = None) -> Any:
            try:
                return handler(event, context)
            finally:
                _flush(provider, invocation_timeout(provider, context, timeout=timeout, margin=margin))

        return cast(Handler, sync_handler)

    return decorate


def flush_each_request(provider: SegmentExposureTrackingProvider, setting: object = None) -> bool:
    """Resolve an integration's ``FLUSH_EACH_REQUEST`` setting and prepare ``provider`` for it.

    ``None`` (unset) means on when a serverless platform is detected. When on, the provider's flush
    posts at once on the flushing thread; call ``flush_request`` at the end of each request. Call this
    once, when the integration is set up, before anything is tracked.
    """
    enabled = detect_platform() is not None if setting is None else bool(setting)
    if enabled:
        provider.deliver_per_invocation()
    elif setting is not None:
        provider.silence_platform_warning()  # turned off on purpose (e.g. Cloud Run, CPU always on)
    return enabled


def flush_request(
    provider: SegmentExposureTrackingProvider,
    enabled: bool = True,
    *,
    context: object = None,
    timeout: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> bool:
    """End a request: deliver what was tracked, bounded as in ``flush_after``. Sync; never raises.

    Call it after the response is built and before it is handed back to the server or adapter (on
    Lambda nothing of the process runs afterwards). ``enabled`` is what ``flush_each_request``
    returned; ``context`` a Lambda context, if the adapter exposes one (see ``lambda_context``).
    Returns True when everything was delivered (or there was nothing to deliver).
    """
    if not enabled:
        return True
    try:
        return _flush(provider, invocation_timeout(provider, context, timeout=timeout, margin=margin))
    except Exception:  # pragma: no cover - provider.flush() never raises; a request must not fail here
        log.exception("segment-exposure: the per-request flush failed")
        return False


async def flush_request_async(
    provider: SegmentExposureTrackingProvider,
    enabled: bool = True,
    *,
    context: object = None,
    timeout: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> bool:
    """``flush_request`` for async code: the waiting happens in a worker thread, not on the event loop,
    and only when something awaits delivery.
    """
    if not enabled or _idle(provider):
        return True
    call: Callable[[], bool] = functools.partial(
        flush_request, provider, True, context=context, timeout=timeout, margin=margin
    )
    result: Awaitable[bool] = asyncio.to_thread(call)
    return await result
