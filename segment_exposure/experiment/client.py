"""``ExposureTrackingClient``: Amplitude's server-side Experiment clients with client-SDK exposure tracking.

amplitude-experiment has no pluggable tracking provider, so this wraps its clients instead and sends
each exposure through a ``SegmentExposureTrackingProvider`` with the rules of Amplitude's JS, Android
and iOS clients (see ``rules.decide``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from segment_exposure.counter import Counter
from segment_exposure.identity import bound_user, identity_from_user, request_scope

from .evaluation import EvaluationError, evaluator_for
from .rules import ExposureTrackingProvider, TrackingStats, is_default_variant, track_flag

__all__ = ["ExposureTrackingClient"]

log = logging.getLogger(__name__)


class _RequestVariants:
    """What one request has seen for one identity: flag -> variant (None: the fallback applied)."""

    __slots__ = ("complete", "variants")

    def __init__(self) -> None:
        self.variants: dict[str, Any] = {}
        self.complete = False  # every flag was evaluated: a flag not in ``variants`` does not exist


class ExposureTrackingClient:
    """Evaluates flags with a ``LocalEvaluationClient`` or ``RemoteEvaluationClient`` and tracks exposures.

    ``variant()`` tracks when ``automatic_exposure_tracking`` is on, ``exposure()`` always does, ``all()``
    never does. Inside a request bound with ``bind_user`` the variants are cached for the request, so it
    evaluates each flag once and sees one variant per flag even if the flag changes meanwhile.

    ``track_default_variants``: True tracks the flag's default variant as an exposure without a variant,
    which unsets the user property (the user leaves the experiment), as Amplitude's client SDKs do; False
    sends nothing for it.

    ``fallback_variant``: what ``variant()`` returns when the caller passes no fallback and the flag has
    no variant or serves its default (the JS client's ``fallbackVariant``): a ``Variant``, a str, or a
    mapping of ``Variant`` fields. Fallbacks never change what is tracked.
    """

    def __init__(
        self,
        client: Any,
        provider: ExposureTrackingProvider,
        automatic_exposure_tracking: bool = True,
        track_default_variants: bool = True,
        fallback_variant: Any = None,
    ) -> None:
        self._evaluator = evaluator_for(client)
        self.fallback_variant = _client_fallback(fallback_variant)
        if not callable(getattr(provider, "track", None)):
            raise TypeError("provider must have a track(exposure, user) method")
        self.client = client
        self.provider = provider
        self.automatic_exposure_tracking = automatic_exposure_tracking
        self.track_default_variants = track_default_variants
        self._stats = TrackingStats()
        self._evaluations = Counter()
        self._cache_hits = Counter()
        self._fallbacks = Counter()

    # -- public API ----------------------------------------------------------------------------------

    def variant(self, user: object, flag_key: str, fallback: Any = None) -> Any:
        """The user's variant of ``flag_key`` (an ``amplitude_experiment.Variant``); tracks its exposure.

        ``user`` None means the user bound to the current request. ``fallback`` (a ``Variant``, a str,
        or a mapping of ``Variant`` fields) comes first, then the client's ``fallback_variant``. When
        there is no variant (the flag does not exist, or evaluation failed) the fallback is returned (an
        empty ``Variant`` when there is none) and nothing is tracked. When the user gets the flag's
        default variant and there is a fallback, the fallback is returned and the default is still
        tracked as an unset, as in Amplitude's client SDKs. Evaluation errors never propagate.
        """
        _check_flag_key(flag_key)
        chosen = _as_fallback(fallback) if fallback is not None else self.fallback_variant
        user = _resolve(user)
        variant = self._lookup(user, flag_key)
        if self.automatic_exposure_tracking:
            self._track(user, flag_key, variant)
        if variant is None:
            self._fallbacks.incr()
            return _empty_variant() if chosen is None else chosen
        if chosen is not None and is_default_variant(variant):
            return chosen
        return variant

    def exposure(self, user: object, flag_key: str, fallback: Any = None) -> bool:
        """Track the exposure of ``user`` to ``flag_key`` explicitly; True if the provider accepted it.

        Tracks what ``variant(user, flag_key, fallback)`` would: ``fallback`` is accepted as there and
        checked, but what is tracked depends only on the served variant (a default is an unset with
        its flag's experiment key, with or without a fallback). Uses the variant this request already
        saw for the flag, if any, so a later explicit exposure matches what was shown.
        """
        _check_flag_key(flag_key)
        if fallback is not None:
            _as_fallback(fallback)
        user = _resolve(user)
        return self._track(user, flag_key, self._lookup(user, flag_key))

    def all(self, user: object) -> dict[str, Any]:
        """Every flag's variant for ``user`` (default variants included); tracks nothing.

        On an evaluation error returns what this request has already seen (often nothing).
        """
        user = _resolve(user)
        return self._all(user, self._entry(user))

    def stats(self) -> dict[str, Any]:
        """Counters: evaluations (calls into the SDK), cache_hits, fallbacks, errors, tracked,
        tracked_unset, not_accepted, and suppressed exposures by reason."""
        return self._stats.snapshot(
            evaluations=self._evaluations.value,
            cache_hits=self._cache_hits.value,
            fallbacks=self._fallbacks.value,
        )

    def __repr__(self) -> str:
        return (
            f"<ExposureTrackingClient client={type(self.client).__name__} "
            f"automatic_exposure_tracking={self.automatic_exposure_tracking} "
            f"track_default_variants={self.track_default_variants}>"
        )

    # -- evaluation, cached per request --------------------------------------------------------------

    def _entry(self, user: object) -> _RequestVariants | None:
        scope = request_scope()
        if scope is None:
            return None
        key = (self, *identity_from_user(user))
        entry: _RequestVariants | None = scope.get(key)
        if entry is None:
            entry = scope[key] = _RequestVariants()
        return entry

    def _lookup(self, user: object, flag_key: str) -> Any:
        """The flag's variant, or None when the fallback applies."""
        entry = self._entry(user)
        if entry is not None:
            if flag_key in entry.variants or entry.complete:
                self._cache_hits.incr()
                return entry.variants.get(flag_key)
            if self._evaluator.prefers_all:
                self._all(user, entry)
                # Recorded even after a failed fetch, so the request keeps one answer for the flag.
                return entry.variants.setdefault(flag_key, None)
        result = self._evaluate(user, [flag_key])
        variant = result.get(flag_key) if result is not None else None
        if entry is not None:
            entry.variants[flag_key] = variant
        return variant

    def _all(self, user: object, entry: _RequestVariants | None) -> dict[str, Any]:
        if entry is None:
            return self._evaluate(user, None) or {}
        if entry.complete:
            self._cache_hits.incr()
        else:
            result = self._evaluate(user, None)
            if result is not None:
                for flag_key, variant in result.items():
                    entry.variants.setdefault(flag_key, variant)  # what the request saw first wins
                entry.complete = True
        return {k: v for k, v in entry.variants.items() if v is not None}

    def _evaluate(self, user: object, flag_keys: list[str] | None) -> dict[str, Any] | None:
        self._evaluations.incr()
        try:
            return dict(self._evaluator.evaluate(user, flag_keys))
        except Exception as exc:
            self._stats.errors.incr()
            what = "every flag" if flag_keys is None else f"flag {flag_keys[0]!r}"
            detail = exc if isinstance(exc, EvaluationError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "segment-exposure: evaluating %s failed; the fallback applies: %s",
                what,
                detail,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return None

    # -- tracking ------------------------------------------------------------------------------------

    def _track(self, user: object, flag_key: str, variant: Any) -> bool:
        return track_flag(
            self.provider,
            self._stats,
            flag_key,
            variant,
            user,
            track_default_variants=self.track_default_variants,
        )


def _check_flag_key(flag_key: object) -> None:
    if not isinstance(flag_key, str):
        raise TypeError(f"flag_key must be a str, got {type(flag_key).__name__}")


def _resolve(user: object) -> object:
    if user is None:
        user = bound_user()
    if user is not None and not isinstance(user, Mapping) and not hasattr(user, "user_id"):
        raise TypeError(
            f"user must be an amplitude_experiment.User, a mapping of its fields, or None; "
            f"got {type(user).__name__}"
        )
    return user


_VARIANT_FIELDS = ("key", "value", "payload", "metadata")


def _empty_variant() -> Any:
    from amplitude_experiment import Variant

    return Variant()


def _as_fallback(fallback: object) -> Any:
    """A caller's fallback as a ``Variant``: a str is its key and value, as in the JS client."""
    from amplitude_experiment import Variant

    if isinstance(fallback, Variant):
        return fallback
    if isinstance(fallback, str):
        return Variant(value=fallback, key=fallback)
    if isinstance(fallback, Mapping):
        unknown = set(fallback) - set(_VARIANT_FIELDS)
        if unknown:
            raise ValueError(
                f"a fallback mapping may hold {', '.join(_VARIANT_FIELDS)}; got {sorted(unknown)}"
            )
        return Variant(**{name: fallback.get(name) for name in _VARIANT_FIELDS})
    raise TypeError(
        f"fallback must be an amplitude_experiment.Variant, a str or a mapping, got {type(fallback).__name__}"
    )


def _client_fallback(fallback: object) -> Any:
    """The client-level fallback, or None when absent or empty (the JS client ignores an empty one)."""
    if fallback is None:
        return None
    variant = _as_fallback(fallback)
    if all(getattr(variant, name, None) in (None, "", {}) for name in _VARIANT_FIELDS):
        return None
    return variant
