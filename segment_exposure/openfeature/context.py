"""Who an OpenFeature evaluation is for: its evaluation context, completed by the request's identity.

The hook and the provider read identity here alike, so an exposure is attributed to the same user the
flag was evaluated for. ``targeting_key`` is the user_id (a ``user_id`` attribute when it is unset) and
the ``device_id`` attribute the device_id;
inside a request bound by the Flask, Django or ASGI integration (``bind_user``), the request's identity
fills what the context leaves out, unless the context names someone else (an id that differs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openfeature.evaluation_context import EvaluationContext

from segment_exposure.identity import bound_user, identity_from_user

__all__ = ["DEVICE_ID_ATTRIBUTE", "context_identity", "experiment_user"]

#: The evaluation-context attribute read as the Amplitude device_id.
DEVICE_ID_ATTRIBUTE = "device_id"


def context_identity(evaluation_context: EvaluationContext | None) -> object | None:
    """The user to track for ``evaluation_context``: the bound request user itself, a dict, or None.

    Returns the bound user object when the context adds nothing to it (or is empty), so the provider
    attaches the request's own Segment context (userAgent, ip); a ``{"user_id", "device_id"}`` dict when
    the context names ids of its own; None when there is no identity at all (the provider then counts
    the exposure as dropped for ``no_identity``).
    """
    user_id: str | None = None
    device_id: str | None = None
    if evaluation_context is not None:
        attributes = evaluation_context.attributes
        user_id, device_id = identity_from_user(
            {
                "user_id": evaluation_context.targeting_key
                or (attributes.get("user_id") if attributes else None),
                "device_id": attributes.get(DEVICE_ID_ATTRIBUTE) if attributes else None,
            }
        )
    bound = bound_user()
    if bound is not None:
        if user_id is None and device_id is None:
            return bound
        bound_user_id, bound_device_id = identity_from_user(bound)
        if _same_person(user_id, bound_user_id) and _same_person(device_id, bound_device_id):
            merged = (user_id or bound_user_id, device_id or bound_device_id)
            if merged == (bound_user_id, bound_device_id):
                return bound
            user_id, device_id = merged
    if user_id is None and device_id is None:
        return None
    return {"user_id": user_id, "device_id": device_id}


def _same_person(ours: str | None, bound: str | None) -> bool:
    """Nothing contradicts: either id is missing, or both are the same."""
    return ours is None or bound is None or ours == bound


def experiment_user(evaluation_context: EvaluationContext | None, user_fields: frozenset[str]) -> Any:
    """The user to evaluate for, as a mapping of ``amplitude_experiment.User`` fields (or None).

    Attributes named like a ``User`` field (``country``, ``platform``, ``user_properties``, ...) set it;
    every other attribute becomes a user property, which Amplitude's targeting reads. The ids come from
    ``context_identity``; the bound user's own fields apply under the context's when it is that user.
    """
    identity = context_identity(evaluation_context)
    if identity is None:
        return None
    fields: dict[str, Any] = {}
    if identity is bound_user():
        fields.update(_user_fields(identity, user_fields))
    else:
        assert isinstance(identity, dict)
        fields.update(identity)
    attributes = evaluation_context.attributes if evaluation_context is not None else None
    if attributes:
        properties = dict(fields.get("user_properties") or {})
        for name, value in attributes.items():
            if name in ("user_id", DEVICE_ID_ATTRIBUTE):
                continue  # the ids were settled above
            if name == "user_properties" and isinstance(value, Mapping):
                properties.update(value)
            elif name in user_fields:
                fields[name] = value
            else:
                properties[name] = value
        if properties:
            fields["user_properties"] = properties
    return fields


def _user_fields(user: object, names: frozenset[str]) -> dict[str, Any]:
    """The ``User`` fields of a bound user (an ``amplitude_experiment.User``, a mapping, or any object)."""
    if isinstance(user, Mapping):
        return {k: v for k, v in user.items() if k in names and v is not None}
    found = {}
    for name in names:
        value = getattr(user, name, None)
        if value is not None:
            found[name] = value
    return found
