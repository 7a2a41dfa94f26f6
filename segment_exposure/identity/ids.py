"""The one normalisation of user and device ids, for ids from code and ids from the browser.

Ids from code (``track(exposure, user)``, a framework's user) are trusted: a non-blank str passes, ints
and UUIDs become their text. Ids read from a request (cookies) are not: they must also be something
Amplitude accepts, or an exposure would carry an id that Amplitude refuses.
"""

from __future__ import annotations

import uuid

from segment_exposure.identity.id_rules import id_problem  # Amplitude's own rules

__all__ = ["MAX_ID_LENGTH", "as_id", "browser_id"]

#: Longer ids from a request are ignored: no real SDK makes them, and they would bloat every message.
MAX_ID_LENGTH = 256


def as_id(value: object) -> str | None:
    """A user or device id as Segment wants it: a non-blank str; ints and UUIDs become strs; else None."""
    if value.__class__ is str:
        return value if value and not value.isspace() else None
    if isinstance(value, str):
        return str(value) if value.strip() else None
    # Integer and UUID primary keys are common user ids: send their text rather than drop them.
    if value.__class__ is int or isinstance(value, uuid.UUID):
        return str(value)
    return None


def browser_id(value: object) -> tuple[str | None, str | None]:
    """``(id, None)`` if ``value``, read from a request, is an id Amplitude accepts, else ``(None, why)``."""
    if not isinstance(value, str):
        return None, f"not a string ({type(value).__name__})"
    if len(value) > MAX_ID_LENGTH:
        return None, f"longer than {MAX_ID_LENGTH} characters"
    if not value.isprintable() or value != value.strip():
        return None, "control characters or surrounding whitespace"
    if "\ufffd" in value:
        return None, "a replacement character: bytes that were not text, decoded anyway"
    problem = id_problem(value)
    if problem is not None:
        return None, "refused by Amplitude"
    return value, None
