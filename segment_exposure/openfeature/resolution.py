"""An Amplitude ``Variant`` as an OpenFeature resolution: its typed value, reason and flag metadata.

Amplitude variants are untyped (a string key, an optional value and JSON payload); OpenFeature asks for
a boolean, string, number or object. The rules here are the provider's whole contract for that mapping.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.exception import TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagType, Reason

__all__ = ["CATCH_ALL_SEGMENT", "flag_metadata", "reason_of", "resolve_variant"]

#: Amplitude's name for a flag's last segment, which every user reaches: its variants come from the
#: allocation (a percentage split), where a named segment is a targeting rule that matched.
CATCH_ALL_SEGMENT = "All Other Users"

_TRUE = frozenset({"on", "true"})
_FALSE = frozenset({"off", "false"})


def reason_of(metadata: Mapping[str, Any]) -> Reason:
    """DEFAULT for the flag's default variant, SPLIT for the catch-all segment's allocation,
    TARGETING_MATCH for any other (targeted) segment, UNKNOWN when the variant names no segment."""
    if metadata.get("default") is True:
        return Reason.DEFAULT
    segment = metadata.get("segmentName")
    if not isinstance(segment, str):
        return Reason.UNKNOWN
    return Reason.SPLIT if segment == CATCH_ALL_SEGMENT else Reason.TARGETING_MATCH


def flag_metadata(metadata: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The variant's scalar metadata (experimentKey, flagType, flagVersion, default, trackExposure,
    segmentName, ...): OpenFeature flag metadata holds scalars only, so anything else is left out."""
    return {
        k: v for k, v in metadata.items() if isinstance(k, str) and isinstance(v, bool | int | float | str)
    }


def resolve_variant(variant: Any, flag_type: FlagType, default_value: Any) -> FlagResolutionDetails[Any]:
    """The resolution of one evaluated ``amplitude_experiment.Variant`` for a flag of ``flag_type``.

    A default variant with nothing of the asked type (e.g. "off" read as a number) resolves to the
    caller's ``default_value`` with reason DEFAULT; any other variant of the wrong type raises.

    Raises:
        TypeMismatchError: the variant holds nothing readable as ``flag_type``.
    """
    metadata = variant.metadata if isinstance(variant.metadata, Mapping) else {}
    reason = reason_of(metadata)
    key = variant.key if isinstance(variant.key, str) and variant.key else None
    try:
        value = _typed(variant, key, flag_type)
    except TypeMismatchError:
        if reason != Reason.DEFAULT:
            raise
        value = default_value
    return FlagResolutionDetails(
        value=value, variant=key, reason=reason, flag_metadata=flag_metadata(metadata)
    )


def _typed(variant: Any, key: str | None, flag_type: FlagType) -> Any:
    value, payload = variant.value, variant.payload
    if flag_type == FlagType.STRING:
        if isinstance(value, str) and value:
            return value
        if value in (None, "") and key is not None:
            return key
    elif flag_type == FlagType.BOOLEAN:
        read = _boolean(value if value not in (None, "") else key)
        if read is not None:
            return read
    elif flag_type == FlagType.INTEGER:
        for candidate in (payload, value):
            number = _integer(candidate)
            if number is not None:
                return number
    elif flag_type == FlagType.FLOAT:
        for candidate in (payload, value):
            real = _float(candidate)
            if real is not None:
                return real
    elif flag_type == FlagType.OBJECT:
        for candidate in (payload, value):
            found = _object(candidate)
            if found is not None:
                return found
    raise TypeMismatchError(f"variant {key!r} of this flag holds no {flag_type.value.lower()} value")


def _boolean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            real = float(value.strip())
        except ValueError:
            return None
        return real if math.isfinite(real) else None
    return None


def _object(value: object) -> Any:
    if isinstance(value, Mapping):
        return dict(value)  # OpenFeature's type check wants a dict or a list
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    if isinstance(value, str):
        # A remote fetch turns a JSON value into its text.
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict | list) else None
    return None
