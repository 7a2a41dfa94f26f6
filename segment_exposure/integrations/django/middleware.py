"""``ExposureMiddleware``: binds each request's identity for the provider, sync or async.

Place it after ``AuthenticationMiddleware`` (the default resolver reads ``request.user``). Everything
after it in ``MIDDLEWARE``, and the view, runs with the identity bound; the binding is undone when the
response leaves it, whatever happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from ...identity import bind_user
from ...serverless import flush_request, flush_request_async, lambda_context
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
        with bind_user(user):
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
        with bind_user(user):
            response = await self.get_response(request)
        if current.flush_each_request:
            await flush_request_async(get_provider(), context=lambda_context(request.META))
        if new_id is not None:
            _set_device_id_cookie(current, request, response, new_id)
        return response


def default_identify(request: Any) -> object:
    """The default resolver: an Experiment user from ``request.user`` and the device-id cookie.

    ``user_id``: ``str(request.user.pk)`` (``SEGMENT_EXPOSURE["USER_ID_ATTRIBUTE"]`` names another
    attribute) when the user is authenticated. ``device_id``: the ``amp_device_id`` cookie
    (``SEGMENT_EXPOSURE["DEVICE_ID_COOKIE"]``). Call it from your own resolver to add fields.
    """
    return _identity(conf(), request, getattr(request, "user", None))


def _identity(current: Conf, request: Any, user: Any) -> object:
    user_id = None
    if user is not None and getattr(user, "is_authenticated", False):
        user_id = as_id(getattr(user, current.user_id_attribute, None))
    return make_user(user_id, as_id(request.COOKIES.get(current.device_id_cookie)))


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
    if not current.set_device_id_cookie or request.COOKIES.get(current.device_id_cookie):
        return None
    device_id = new_device_id()
    request.COOKIES[current.device_id_cookie] = device_id
    return device_id


def _set_device_id_cookie(current: Conf, request: Any, response: Any, device_id: str) -> None:
    response.set_cookie(
        current.device_id_cookie,
        device_id,
        max_age=DEVICE_ID_COOKIE_MAX_AGE,
        secure=request.is_secure(),
        httponly=False,  # an id, not a credential: Amplitude's browser SDK may be given it too
        samesite="Lax",
    )
