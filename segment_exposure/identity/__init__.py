"""Who an exposure belongs to: the bound request user, browser cookies, one id normalisation."""

from __future__ import annotations

from segment_exposure.identity.user import (
    Identity,
    bind_user,
    bound_request_context,
    bound_user,
    context_from_user,
    from_cookies,
    identity_from_user,
    request_scope,
)

__all__ = [
    "Identity",
    "bind_user",
    "bound_request_context",
    "bound_user",
    "context_from_user",
    "from_cookies",
    "identity_from_user",
    "request_scope",
]
