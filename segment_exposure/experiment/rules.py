"""Which exposure, if any, an evaluated variant produces: Amplitude's client-SDK rules in one function.

Both the wrapping client and the SDK-native route decide here, so the two paths cannot drift apart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from segment_exposure.counter import Counter

from ..exposure import Exposure

__all__ = [
    "SUPPRESS_REASONS",
    "ExposureTrackingProvider",
    "TrackingStats",
    "Verdict",
    "decide",
    "is_default_variant",
    "track_flag",
    "variant_label",
]

log = logging.getLogger(__name__)


class ExposureTrackingProvider(Protocol):
    """Where exposures go, as in the JS client's config: ``SegmentExposureTrackingProvider`` is one."""

    def track(self, exposure: Exposure, user: object = None) -> bool: ...


#: Why an evaluated flag produced no exposure; each reason has its own counter.
SUPPRESS_REASONS = (
    "fallback",  # no variant for the flag (missing, or evaluation failed): never tracked
    "default_variant",  # the flag's default variant, with track_default_variants=False
    "track_exposure_false",  # the flag says metadata.trackExposure == false
    "group_flag",  # a mutual-exclusion group: its user property would mean nothing (see decide)
)

# Mutual-exclusion groups only slot users into one of their experiments; Amplitude's Python SDK never
# sets their user property, and a ``$exposure`` always would. Holdout groups are not here: a held-out
# user is exposed to the holdout, which the JS client tracks and the Python SDK records as a property.
_UNTRACKED_FLAG_TYPES = frozenset({"mutual-exclusion-group"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """The exposure to send for one flag, or None with the reason it is not sent."""

    exposure: Exposure | None
    reason: str  # "variant" or "unset" when sent; one of SUPPRESS_REASONS otherwise


def _metadata(variant: Any) -> Mapping[str, Any]:
    metadata = getattr(variant, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}


def is_default_variant(variant: Any) -> bool:
    """True for the flag's default variant (``metadata.default``), e.g. "off" outside the experiment."""
    return _metadata(variant).get("default") is True


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    # Local evaluation passes JSON values through as they are; remote fetches turn them into JSON text.
    return json.dumps(value, separators=(",", ":"))


def variant_label(variant: Any) -> str | None:
    """The variant's key, or its value only when it has no key."""
    return _text(getattr(variant, "key", None)) or _text(getattr(variant, "value", None))


def decide(flag_key: str, variant: Any, *, track_default_variants: bool = True) -> Verdict:
    """Apply the client-SDK rules to one evaluated flag; ``variant=None`` means a fallback.

    A fallback is never tracked; ``trackExposure: false`` is never tracked; a mutual-exclusion group is
    never tracked (a holdout group is); a default variant is tracked as an unset (no ``variant``) so the
    user leaves the experiment, or skipped when configured. Only the served variant's metadata counts:
    a caller's fallback returned in place of a default variant changes nothing here.
    """
    if variant is None:
        return Verdict(None, "fallback")
    metadata = _metadata(variant)
    if metadata.get("trackExposure") is False:
        return Verdict(None, "track_exposure_false")
    if metadata.get("flagType") in _UNTRACKED_FLAG_TYPES:
        return Verdict(None, "group_flag")
    default = metadata.get("default") is True
    if default and not track_default_variants:
        return Verdict(None, "default_variant")
    experiment_key = metadata.get("experimentKey")
    exposure = Exposure(
        flag_key=flag_key,
        variant=None if default else variant_label(variant),
        experiment_key=_text(experiment_key),
        metadata=metadata or None,
    )
    return Verdict(exposure, "unset" if exposure.variant is None else "variant")


class TrackingStats:
    """Counters of what was handed to the provider and what was held back, and why."""

    def __init__(self) -> None:
        self.tracked = Counter()  # accepted by the provider (sent, or a repeat it deduplicated)
        self.tracked_unset = Counter()  # of those, exposures without a variant (default variants)
        self.not_accepted = Counter()  # the provider set it aside; see provider.stats()["dropped"]
        self.errors = Counter()
        self.suppressed = {reason: Counter() for reason in SUPPRESS_REASONS}

    def count(self, verdict: Verdict, accepted: bool) -> None:
        if verdict.exposure is None:
            self.suppressed[verdict.reason].incr()
        elif accepted:
            self.tracked.incr()
            if verdict.reason == "unset":
                self.tracked_unset.incr()
        else:
            self.not_accepted.incr()

    def snapshot(self, **extra: int) -> dict[str, Any]:
        suppressed = {reason: c.value for reason, c in self.suppressed.items()}
        return {
            **extra,
            "tracked": self.tracked.value,
            "tracked_unset": self.tracked_unset.value,
            "not_accepted": self.not_accepted.value,
            "errors": self.errors.value,
            "suppressed": suppressed,
            "suppressed_total": sum(suppressed.values()),
        }


def track_flag(
    provider: ExposureTrackingProvider,
    stats: TrackingStats,
    flag_key: str,
    variant: Any,
    user: object,
    *,
    track_default_variants: bool,
) -> bool:
    """Decide, send to ``provider`` and count; True if the provider accepted it. Never raises."""
    try:
        verdict = decide(flag_key, variant, track_default_variants=track_default_variants)
        accepted = verdict.exposure is not None and bool(provider.track(verdict.exposure, user))
    except Exception:
        stats.errors.incr()
        log.exception("segment-exposure: tracking the exposure of flag %r failed", flag_key)
        return False
    stats.count(verdict, accepted)
    return accepted
