"""Who an exposure belongs to, and the Segment context that describes them.

An exposure attached to the wrong user spoils an experiment silently, so identity comes from one place:
the user passed to ``track()``, or the one an integration bound to the current request.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

from segment_exposure.identity.browser_cookies import from_cookies
from segment_exposure.identity.ids import as_id

__all__ = [
    "Identity",
    "bind_user",
    "bound_request_context",
    "bound_user",
    "bound_user_var",
    "context_from_user",
    "from_cookies",
    "identity_from_user",
    "request_context_var",
    "request_scope",
]

Identity = tuple[str | None, str | None]
"""``(user_id, device_id)``: the pair Amplitude resolves a user by."""

#: The user bound to the current request (or task) by ``bind_user``. Read it with ``.get()`` (the provider's
#: hot path does, to save a call); bind only through ``bind_user``.
bound_user_var: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "segment_exposure_user", default=None
)
_scope: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "segment_exposure_scope", default=None
)
#: The request's own Segment context (userAgent, ip, locale), for exposures of the bound user. Read it
#: with ``.get()``; bind only through ``bind_user``.
request_context_var: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "segment_exposure_request_context", default=None
)


def bound_user() -> object | None:
    """The user bound to the current request (or task) by an integration, if any."""
    return bound_user_var.get()


def request_scope() -> dict[Any, Any] | None:
    """A dict that lives as long as the current ``bind_user`` block (one request), or None outside one.

    The Experiment integration caches evaluated variants here, so one request sees one variant per flag.
    """
    return _scope.get()


def bound_request_context() -> Mapping[str, Any] | None:
    """The Segment context (``userAgent``, ``ip``, ``locale``) an integration bound for this request."""
    return request_context_var.get()


@contextlib.contextmanager
def bind_user(user: object | None, *, context: Mapping[str, Any] | None = None) -> Iterator[dict[Any, Any]]:
    """Bind ``user`` as the identity for ``track(exposure)`` calls made inside the block.

    A contextvar keeps concurrent requests apart, in threads and in asyncio tasks alike. The block
    gets a fresh request scope (see ``request_scope``), which it also yields. ``context`` (top-level
    Segment context keys such as ``userAgent``, ``ip``, ``locale``) goes into exposures of this user,
    under whatever the user's own fields set.
    """
    scope: dict[Any, Any] = {}
    token = bound_user_var.set(user)
    scope_token = _scope.set(scope)
    context_token = request_context_var.set(context or None)
    try:
        yield scope
    finally:
        request_context_var.reset(context_token)
        _scope.reset(scope_token)
        bound_user_var.reset(token)


def identity_from_user(user: object) -> Identity:
    """Return ``(user_id, device_id)``; ints and UUIDs become strings, blank or other values are absent."""
    if user.__class__ is dict or isinstance(user, Mapping):
        uid = user.get("user_id")
        did = user.get("device_id")
    else:
        uid = getattr(user, "user_id", None)
        did = getattr(user, "device_id", None)
    # Inlined checks: this runs on every track() call.
    if uid.__class__ is not str or not uid or uid.isspace():
        uid = as_id(uid)
    if did.__class__ is not str or not did or did.isspace():
        did = as_id(did)
    return uid, did


# Experiment user field -> (Segment context section, key). Sections None are top-level context keys.
_CONTEXT_FIELDS: tuple[tuple[str, str | None, str], ...] = (
    ("ip_address", None, "ip"),
    ("language", None, "locale"),
    ("os", "os", "name"),
    ("platform", "device", "type"),
    ("device_brand", "device", "brand"),
    ("device_manufacturer", "device", "manufacturer"),
    ("device_model", "device", "model"),
    ("version", "app", "version"),
    ("country", "location", "country"),
    ("region", "location", "region"),
    ("city", "location", "city"),
    ("carrier", "network", "carrier"),
)


def context_from_user(user: object) -> dict[str, Any]:
    """Build a fresh Segment ``context`` from an Experiment user's predefined fields.

    A new dict every call, because Segment's client writes ``context.library`` into what it is given.
    ``context.device.id`` is never set: Segment's Amplitude destination prefers it over ``anonymousId``,
    so anything but the Experiment device_id there would re-attribute the exposure.
    """
    context: dict[str, Any] = {}
    # One type check, not one per field: this runs for every exposure sent.
    get = user.get if isinstance(user, Mapping) else partial(getattr, user)
    for attr, section, key in _CONTEXT_FIELDS:
        value = get(attr, None)
        if value is None or value == "":
            continue
        if not isinstance(value, str | int | float):
            value = str(value)
        if section is None:
            context[key] = value
        else:
            context.setdefault(section, {})[key] = value
    return context
