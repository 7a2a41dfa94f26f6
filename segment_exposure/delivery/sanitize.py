"""What must never reach Amplitude as sent: ``[Experiment]`` user properties, lone surrogates, NaN.

Amplitude sets ``[Experiment] <flag_key>`` itself from the exposure, so such keys set by hand are stripped;
strict JSON in UTF-8 carries no lone surrogate and no NaN/Infinity, so those are found and scrubbed.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["EXPERIMENT_PROPERTY_PREFIX", "SURROGATE", "scrub", "strip_experiment", "unsafe_event"]

#: User properties with this prefix belong to Amplitude Experiment and are never sent by hand.
EXPERIMENT_PROPERTY_PREFIX = "[Experiment]"

_PREFIX_LOWER = EXPERIMENT_PROPERTY_PREFIX.lower()
_PREFIX_LEN = len(EXPERIMENT_PROPERTY_PREFIX)
SURROGATE = re.compile("[\ud800-\udfff]")


def strip_experiment(traits: dict[str, Any]) -> dict[str, Any]:
    """``traits`` without ``[Experiment] ...`` keys; copies only when something must go."""
    for key, value in traits.items():
        if _is_experiment_key(key) or (
            key.__class__ is str and key[:1] == "$" and value.__class__ is dict and _has_experiment_key(value)
        ):
            break
    else:
        return traits
    cleaned: dict[str, Any] = {}
    for key, value in traits.items():
        if _is_experiment_key(key):
            continue
        if key.__class__ is str and key[:1] == "$" and value.__class__ is dict and _has_experiment_key(value):
            value = {k: v for k, v in value.items() if not _is_experiment_key(k)}
            if not value:
                continue
        cleaned[key] = value
    return cleaned


def _is_experiment_key(key: Any) -> bool:
    return key.__class__ is str and key[:_PREFIX_LEN].lower() == _PREFIX_LOWER


def _has_experiment_key(obj: dict[str, Any]) -> bool:
    return any(_is_experiment_key(k) for k in obj)


def _unsafe(obj: dict[Any, Any] | list[Any]) -> bool:
    """True when ``obj`` holds a lone surrogate or NaN/Infinity, which strict JSON in UTF-8 cannot carry.

    A walk, not a trial ``json.dumps``: it skips ASCII strings at once and costs a third as much.
    """
    items: Any = obj.items() if obj.__class__ is dict else enumerate(obj)
    for key, value in items:
        if key.__class__ is str and not key.isascii() and SURROGATE.search(key):
            return True
        cls = value.__class__
        if cls is str:
            if not value.isascii() and SURROGATE.search(value):
                return True
        elif cls is float:
            if value - value:  # inf - inf and nan - nan are NaN, which is truthy; finite gives 0.0
                return True
        elif (cls is dict or cls is list) and _unsafe(value):
            return True
    return False


def unsafe_event(out: dict[str, Any]) -> bool:
    """``_unsafe`` for the translated event: its own keys are ASCII, its numbers already finite."""
    for value in out.values():
        cls = value.__class__
        if cls is str:
            if not value.isascii() and SURROGATE.search(value):
                return True
        elif cls is dict and value and _unsafe(value):
            return True
    return False


def scrub(value: Any) -> Any:
    """``value`` with lone surrogates as U+FFFD and NaN/infinities as null (as JavaScript writes them)."""
    cls = value.__class__
    if cls is str:
        return SURROGATE.sub("\ufffd", value)
    if cls is float:
        return value if math.isfinite(value) else None
    if cls is dict:
        return {scrub(k): scrub(v) for k, v in value.items()}
    if cls is list:
        return [scrub(v) for v in value]
    return value
