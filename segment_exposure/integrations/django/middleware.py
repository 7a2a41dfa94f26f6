"""``ExposureMiddleware``: binds each request's identity for the provider, sync or async.

Place it after ``AuthenticationMiddleware`` (the default resolver reads ``request.user``). Everything
after it in ``MIDDLEWARE``, and the view, runs with the identity bound; the binding is undone when the
response leaves it, whatever happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from segment_exposure.identity import bind_user
from segment_exposure.tracking.serverless import flush_request, flush_request_async, lambda_context

from .._common import DEVICE_ID_COOKIE_MAX_AGE, as_id, identify_safely, log, make_user, new_device_id
from .apps import Conf, conf, get_provider

__all__ = ["ExposureMiddleware", "default_identify"]


class ExposureMiddleware:
    """Binds ``SEGMENT_EXPOSURE["IDENTIFY"](request)`` (default: ``default_identify``) for the request.

    With ``SEGMENT_EXPOSURE["SET_DEVICE_ID_COOKIE"] = True`` a request without the device-id cookie gets
    a fresh id, visible to resolvers in ``request.COOKIES`` and set on the response for a year.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        conf()  # an unusable configuration fails at start-up, like any middleware's

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        current = conf()
        new_id = _give_device_id(current, request)
        if current.identify is None:
            user = _identity(current, request, getattr(request, "user", None))
        else:
            user = identify_safely(current.identify, request)
        with bind_user(user, context=_context(current, request)):
            response = self.get_response(request)
        if current.flush_each_request:  # before the response goes back: on Lambda nothing runs after
            flush_request(get_provider(), context=lambda_context(request.META))
        if new_id is not None:
            _set_device_id_cookie(current, request, response, new_id)
        return response

    async def __acall__(self, request: Any) -> Any:
        current = conf()
        new_id = _give_device_id(current, request)
        if current.identify is None:
            user = _identity(current, request, await _auser(request))
        elif iscoroutinefunction(current.identify):
            user = await _identify_async(current.identify, request)
        else:
            user = await sync_to_async(identify_safely)(current.identify, request)
        with bind_user(user, context=_context(current, request)):
            response = await self.get_response(request)
        if current.flush_each_request:
            await flush_request_async(get_provider(), context=lambda_context(request.META))
        if new_id is not None:
            _set_device_id_cookie(current, request, response, new_id)
        return response


def default_identify(request: Any) -> object:
    """The default resolver: an Experiment user with the browser's own ids.

    Each id comes from the first of ``SEGMENT_EXPOSURE["IDENTITY_SOURCES"]`` that has one (default: the
    logged-in ``request.user``, whose ``pk`` or ``USER_ID_ATTRIBUTE`` is the user_id; Segment's
    ``ajs_user_id`` / ``ajs_anonymous_id`` cookies; Amplitude's ``AMP_`` / ``amp_`` cookies given
    ``AMPLITUDE_API_KEY``; then ``amp_device_id``). Call it from your own resolver to add fields.
    """
    return _identity(conf(), request, getattr(request, "user", None))


def _identity(current: Conf, request: Any, user: Any) -> object:
    user_id = None
    if user is not None and getattr(user, "is_authenticated", False):
        user_id = as_id(getattr(user, current.user_id_attribute, None))
    ids = current.identity.ids(request.COOKIES, user_id)
    return make_user(ids.get("user_id"), ids.get("device_id"))


def _context(current: Conf, request: Any) -> dict[str, str] | None:
    # REMOTE_ADDR as the app's stack left it (a proxy middleware placed before this one may rewrite
    # it); X-Forwarded-For is never read here.
    meta = request.META
    return current.identity.context(
        user_agent=meta.get("HTTP_USER_AGENT"),
        ip=meta.get("REMOTE_ADDR"),
        accept_language=meta.get("HTTP_ACCEPT_LANGUAGE"),
    )


async def _auser(request: Any) -> Any:
    # request.user would query the database from the event loop; auser() (Django >= 5.0) does not.
    auser = getattr(request, "auser", None)
    if auser is not None:
        return await auser()
    if not hasattr(request, "user"):
        return None
    return await sync_to_async(lambda: request.user if request.user.is_authenticated else None)()


async def _identify_async(identify: Callable[[Any], Awaitable[object]], request: Any) -> object:
    try:
        return await identify(request)
    except Exception:
        log.exception("segment-exposure: the IDENTIFY resolver raised; this request has no identity")
        return None


def _give_device_id(current: Conf, request: Any) -> str | None:
    identity = current.identity
    if not current.set_device_id_cookie:
        return None
    if "device_id" in identity.ids(request.COOKIES) or identity.legacy_device_id(request.COOKIES):
        return None
    device_id = new_device_id()
    request.COOKIES[identity.device_id_cookie] = device_id
    return device_id


def _set_device_id_cookie(current: Conf, request: Any, response: Any, device_id: str) -> None:
    response.set_cookie(
        current.identity.device_id_cookie,
        device_id,
        max_age=DEVICE_ID_COOKIE_MAX_AGE,
        secure=request.is_secure(),
        httponly=False,  # an id, not a credential: Amplitude's browser SDK may be given it too
        samesite="Lax",
    )
