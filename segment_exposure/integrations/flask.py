"""Flask integration: ``SegmentExposure(app)`` gives every request its identity for the provider.

The extension builds one provider per app from ``SEGMENT_EXPOSURE_*`` config keys and binds each
request's identity (see ``segment_exposure.bind_user``), so inside a request
``provider.track(exposure)`` and the Experiment integration's ``variant(None, flag)`` need no user.
Nothing is sent on the request path: the provider delivers from its own threads and flushes, bounded
by ``SEGMENT_EXPOSURE_FLUSH_TIMEOUT``, when the process exits.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segment_exposure.identity import bind_user
from segment_exposure.tracking.provider import SegmentExposureTrackingProvider
from segment_exposure.tracking.serverless import flush_each_request, flush_request, lambda_context

from ._common import (
    DEVICE_ID_COOKIE_MAX_AGE,
    USER_ID_ATTRIBUTES,
    as_id,
    build_provider,
    check_options,
    field,
    identify_safely,
    make_user,
    missing_framework,
    new_device_id,
    resolve,
)
from ._request import RequestIdentity

try:
    from flask import Flask, Request, Response, current_app, g, has_app_context, request
except ImportError as exc:
    raise ImportError(missing_framework("Flask", "flask")) from exc

__all__ = ["CONFIG_PREFIX", "EXTENSION_NAME", "SegmentExposure", "default_identify"]

#: Every config key of this extension starts with this.
CONFIG_PREFIX = "SEGMENT_EXPOSURE_"
#: The key in ``app.extensions``.
EXTENSION_NAME = "segment_exposure"

_G_BINDING = "_segment_exposure_binding"
_G_NEW_DEVICE_ID = "_segment_exposure_new_device_id"

Identify = Callable[[Request], object]


@dataclass(frozen=True)
class _AppState:
    """What one app's configuration resolved to; read on every request, never changed."""

    provider: SegmentExposureTrackingProvider
    owns_provider: bool  # built from config, so shutdown() stops it; a _PROVIDER given is yours
    identify: Identify
    identity: RequestIdentity
    set_device_id_cookie: bool
    user_id_attribute: str


class SegmentExposure:
    """The Flask extension: ``SegmentExposure(app)``, or ``SegmentExposure()`` then ``init_app(app)``.

    Config keys (read once, by ``init_app``): ``SEGMENT_EXPOSURE_WRITE_KEY`` (or ``_PROVIDER``, an existing
    provider, or ``_ANALYTICS``, an existing Segment client), ``_HOST``, ``_IDENTIFY`` (a callable or dotted
    path: request -> Experiment user or mapping; default ``default_identify``), ``_DEDUPE_TTL``,
    ``_DEDUPE_CAPACITY``, ``_MAX_QUEUE_SIZE``, ``_FLUSH_TIMEOUT``, ``_INCLUDE_METADATA``, ``_INTEGRATIONS``,
    ``_CLIENT_OPTIONS``, ``_DEVICE_ID_COOKIE`` (``"amp_device_id"``), ``_SET_DEVICE_ID_COOKIE`` (False),
    ``_USER_ID_ATTRIBUTE`` (``"id"``), ``_IDENTITY_SOURCES`` (the order ``default_identify`` reads ids
    in), ``_AMPLITUDE_API_KEY`` (to read Amplitude's browser cookies), and the request-context switches
    ``_SEND_USER_AGENT``, ``_SEND_IP``, ``_SEND_LOCALE`` (all True), and ``_METRICS`` (True or a label:
    export the provider's stats to Prometheus; see ``segment_exposure.metrics.register``).
    """

    def __init__(self, app: Flask | None = None) -> None:
        # One extension object may serve several apps (the app-factory pattern): state is per app.
        self._states: weakref.WeakKeyDictionary[Flask, _AppState] = weakref.WeakKeyDictionary()
        if app is not None:
            self._set_up(app)

    def init_app(self, app: Flask) -> None:
        """Read ``app.config``, build the app's provider and register the per-request identity hooks.

        Raises RuntimeError on a configuration error (the same ids as the Django system checks) and
        warns about what it ignores, such as an unknown ``SEGMENT_EXPOSURE_*`` key.
        """
        self._set_up(app)

    def _set_up(self, app: Flask) -> None:
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError("SegmentExposure is already set up on this app; call init_app() once per app")
        options = {
            key[len(CONFIG_PREFIX) :]: value
            for key, value in app.config.items()
            if key.startswith(CONFIG_PREFIX)
        }
        problems = check_options(options, lambda name: CONFIG_PREFIX + name)
        errors = [p for p in problems if p.is_error]
        if errors:
            raise RuntimeError("segment-exposure is misconfigured:\n" + "\n".join(f"  {p}" for p in errors))
        for problem in problems:
            warnings.warn(str(problem), UserWarning, stacklevel=3)  # the caller's line
        provider, owned = build_provider(options)
        if options.get("METRICS"):
            from ..metrics import register_from_setting

            register_from_setting(provider, options["METRICS"])
        state = _AppState(
            provider=provider,
            owns_provider=owned,
            identify=resolve(options.get("IDENTIFY")) or default_identify,
            identity=RequestIdentity.from_options(options),
            set_device_id_cookie=bool(options.get("SET_DEVICE_ID_COOKIE")),
            user_id_attribute=options.get("USER_ID_ATTRIBUTE") or USER_ID_ATTRIBUTES["flask"],
        )
        self._states[app] = state
        app.extensions[EXTENSION_NAME] = self
        if flush_each_request(provider, options.get("FLUSH_EACH_REQUEST")):
            # teardown_request runs whatever happened, before wsgi_app() hands the response back.
            app.teardown_request(lambda exc: _flush_request_end(state))

        def bind_request_identity() -> None:
            _bind(state)

        app.before_request(bind_request_identity)
        app.teardown_request(_unbind)
        if state.set_device_id_cookie:

            def set_device_id_cookie(response: Response) -> Response:
                return _set_device_id_cookie(state, response)

            app.after_request(set_device_id_cookie)

    @property
    def provider(self) -> SegmentExposureTrackingProvider:
        """The current app's provider (outside an app context: the only app's)."""
        return self._state().provider

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop the current app's provider (see ``provider.shutdown``), for tests and app teardown.

        ``timeout`` defaults to the provider's ``flush_timeout``. A provider given as
        ``SEGMENT_EXPOSURE_PROVIDER`` is left running: whoever made it shuts it down. Without this call
        the exit hook flushes when the process ends. Returns False when something queued was not delivered.
        """
        state = self._state()
        if not state.owns_provider:
            return True
        provider = state.provider
        return provider.shutdown(provider.flush_timeout if timeout is None else timeout)

    def _state(self) -> _AppState:
        if has_app_context():
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
            state = self._states.get(app)
            if state is None:
                raise RuntimeError("SegmentExposure was not set up on the current app: call init_app(app)")
            return state
        if len(self._states) == 1:
            return next(iter(self._states.values()))
        raise RuntimeError(
            f"SegmentExposure serves {len(self._states)} apps: use it inside an app context "
            "(current_app.extensions['segment_exposure'].provider)"
        )

    def __repr__(self) -> str:
        return f"<SegmentExposure apps={len(self._states)}>"


def _bind(state: _AppState) -> None:
    # Runs as a before_request function, so it sees what hooks registered before init_app() set (g.user).
    g.pop(_G_NEW_DEVICE_ID, None)
    if state.set_device_id_cookie and not _has_device_id(state.identity):
        setattr(g, _G_NEW_DEVICE_ID, new_device_id())
    user = identify_safely(state.identify, request)
    # remote_addr is what the app's WSGI stack made of the peer (ProxyFix rewrites it); never raw XFF.
    context = state.identity.context(
        user_agent=request.headers.get("User-Agent"),
        ip=request.remote_addr,
        accept_language=request.headers.get("Accept-Language"),
    )
    binding = contextlib.ExitStack()
    binding.enter_context(bind_user(user, context=context))
    setattr(g, _G_BINDING, binding)


def _unbind(exc: BaseException | None) -> None:
    # teardown_request runs whatever happened (an exception, a before_request that answered first),
    # in the context the request was bound in, so the contextvar never outlives the request. ``g`` can
    # (an app context pushed around several requests, as test suites do), so it is emptied here too.
    g.pop(_G_NEW_DEVICE_ID, None)
    binding = g.pop(_G_BINDING, None)
    if binding is not None:
        binding.close()


def _has_device_id(identity: RequestIdentity) -> bool:
    cookies = request.cookies
    return "device_id" in identity.ids(cookies) or identity.legacy_device_id(cookies) is not None


def _flush_request_end(state: _AppState) -> None:
    flush_request(state.provider, context=lambda_context(request.environ))


def _set_device_id_cookie(state: _AppState, response: Response) -> Response:
    device_id = g.get(_G_NEW_DEVICE_ID)
    if device_id:
        response.set_cookie(
            state.identity.device_id_cookie,
            device_id,
            max_age=DEVICE_ID_COOKIE_MAX_AGE,
            secure=request.is_secure,
            httponly=False,  # an id, not a credential: Amplitude's browser SDK may be given it too
            samesite="Lax",
        )
    return response


def default_identify(req: Request) -> object:
    """The default ``SEGMENT_EXPOSURE_IDENTIFY``: an Experiment user with the browser's own ids.

    Each id comes from the first of ``SEGMENT_EXPOSURE_IDENTITY_SOURCES`` that has one (default: the
    logged-in user, Segment's ``ajs_user_id`` / ``ajs_anonymous_id`` cookies, Amplitude's ``AMP_`` /
    ``amp_`` cookies given ``SEGMENT_EXPOSURE_AMPLITUDE_API_KEY``, then ``amp_device_id``). The logged-in
    user is ``g.user``'s ``SEGMENT_EXPOSURE_USER_ID_ATTRIBUTE`` (``id``; an attribute or a key, so a
    ``sqlite3.Row`` works), else Flask-Login's ``current_user.get_id()`` when the app uses Flask-Login.
    Without any device id, the one generated for this request when ``SEGMENT_EXPOSURE_SET_DEVICE_ID_COOKIE``
    is on. Call it from your own resolver to add fields.
    """
    ext = current_app.extensions.get(EXTENSION_NAME)
    state = ext._state() if isinstance(ext, SegmentExposure) else None
    identity = state.identity if state else RequestIdentity()
    attribute = state.user_id_attribute if state else USER_ID_ATTRIBUTES["flask"]
    ids = identity.ids(req.cookies, _logged_in_user_id(attribute))
    return make_user(ids.get("user_id"), ids.get("device_id") or g.get(_G_NEW_DEVICE_ID))


def _logged_in_user_id(attribute: str) -> str | None:
    user = g.get("user")
    if user is not None:
        return as_id(field(user, attribute))
    flask_login = sys.modules.get("flask_login")  # only if the app imported it: never imported here
    if flask_login is not None and getattr(current_app, "login_manager", None) is not None:
        current_user: Any = flask_login.current_user
        if getattr(current_user, "is_authenticated", False):
            return as_id(current_user.get_id())
    return None
