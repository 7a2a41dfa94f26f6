"""Amplitude's rules for user and device ids: the invalid-id list and the minimum length.

One place, so the translator, the id normalisation of the tracking side, ``doctor`` and the local
Amplitude emulator refuse exactly the ids Amplitude refuses. It sits with the ids, below both halves of
the package; the translator raises its own ``ValidationError`` from what ``id_problem`` says.
"""

from __future__ import annotations

import json

__all__ = [
    "DEFAULT_MIN_ID_LENGTH",
    "INVALID_IDS",
    "effective_min_id_length",
    "id_problem",
    "id_problem_for_minimum",
]

#: Amplitude's minimum id length when the request carries no ``options.min_id_length``.
DEFAULT_MIN_ID_LENGTH = 5

#: Ids Amplitude refuses, whatever ``min_id_length`` says (compare lower-cased).
INVALID_IDS: frozenset[str] = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)


def effective_min_id_length(min_id_length: int | None) -> int:
    """The effective minimum; a bad setting is the caller's bug, so ``ValueError``, not an event error."""
    if min_id_length is None:
        return DEFAULT_MIN_ID_LENGTH
    if min_id_length.__class__ is not int or min_id_length < 1:
        raise ValueError(f"min_id_length must be a positive int or None, got {min_id_length!r}")
    return min_id_length


def id_problem(value: str, *, min_id_length: int | None = None) -> str | None:
    """Why Amplitude would reject ``value`` as a user or device id, or ``None`` when it is fine."""
    return id_problem_for_minimum(value, effective_min_id_length(min_id_length))


def id_problem_for_minimum(value: str, minimum: int) -> str | None:
    """As ``id_problem``, with the minimum already checked (``effective_min_id_length``): for callers that
    check many ids against one setting, so the setting is validated once."""
    if value.lower() in INVALID_IDS:
        return (
            f"{_shown(value)} is on Amplitude's list of invalid ids (anonymous, null, unknown, 0, -1, ...); "
            "send the real id, or leave the field out"
        )
    if len(value) < minimum:
        return (
            f"{_shown(value)} has {len(value)} characters, fewer than Amplitude's minimum of {minimum}; "
            "use longer ids, or set min_id_length (Amplitude's options.min_id_length) to accept shorter ones"
        )
    return None


def _shown(value: str) -> str:
    """An id as JSON (the sender's language), cut so that a long one cannot flood a message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
