"""``ExposureHook``: one ``$exposure`` per OpenFeature evaluation, by any provider, through Segment.

OpenFeature has no exposure concept; its ``after`` hook sees every successful evaluation with the
variant and flag metadata, which is what an Amplitude exposure needs. Which evaluations produce one is
decided by ``segment_exposure.experiment.decide``, the rule ``ExposureTrackingClient`` uses, so both
paths treat defaults, ``trackExposure: false`` and mutual-exclusion groups alike.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from openfeature.flag_evaluation import FlagEvaluationDetails, FlagValueType, Reason
from openfeature.hook import Hook, HookContext, HookHints

from segment_exposure.counter import Counter
from segment_exposure.experiment import SUPPRESS_REASONS, decide

from .context import context_identity

if TYPE_CHECKING:
    from segment_exposure.tracking.provider import SegmentExposureTrackingProvider

__all__ = ["HOOK_SKIP_REASONS", "ExposureHook"]

log = logging.getLogger(__name__)

#: Why an evaluation produced no exposure: the hook's own reasons, then ``decide``'s.
HOOK_SKIP_REASONS = (
    "error",  # the evaluation failed (the error stage ran, or error_code set): the caller got its default
    "disabled",  # reason DISABLED: the flag is off, no experiment ran
    "no_variant",  # a successful evaluation without a variant (or an empty one): nothing to attribute
    *SUPPRESS_REASONS,
)


class _Served:
    """The served variant as ``decide`` reads an Amplitude ``Variant``: key and metadata."""

    __slots__ = ("key", "metadata", "value")

    def __init__(self, key: str | None, metadata: dict[str, Any]) -> None:
        self.key = key
        self.value = None
        self.metadata = metadata


class ExposureHook(Hook):
    """An OpenFeature hook whose ``after()`` tracks the evaluation's exposure through ``provider``.

    flag_key is the evaluated flag, variant ``details.variant``, experiment_key the flag metadata's
    ``experimentKey``; the user is the evaluation context's (``targeting_key``, ``device_id``
    attribute), completed by the request's identity inside a bound request. An error tracks nothing,
    nor does ``trackExposure: false``; a default (reason DEFAULT, or ``default: true`` in the metadata)
    tracks an unset, or nothing with ``track_default_variants=False``. Repeats are the provider's to
    deduplicate. ``after()`` never raises into the evaluation and never waits on the network.

    Args:
        provider: where exposures go: a ``SegmentExposureTrackingProvider`` (anything with a
            non-blocking ``track(exposure, user) -> bool``).
        track_default_variants: False sends nothing for a default instead of an unset.
    """

    def __init__(
        self, provider: SegmentExposureTrackingProvider, *, track_default_variants: bool = True
    ) -> None:
        if not callable(getattr(provider, "track", None)):
            raise TypeError("provider must have a track(exposure, user) method")
        self.provider = provider
        self.track_default_variants = track_default_variants
        self._tracked = Counter()
        self._tracked_unset = Counter()
        self._not_accepted = Counter()
        self._errors = Counter()
        self._skipped = {reason: Counter() for reason in HOOK_SKIP_REASONS}

    def after(
        self,
        hook_context: HookContext,
        details: FlagEvaluationDetails[FlagValueType],
        hints: HookHints,
    ) -> None:
        """Track this evaluation's exposure (see the class docstring). Never raises."""
        try:
            self._after(hook_context, details)
        except Exception:
            try:
                self._errors.incr()
                log.exception("segment-exposure: the exposure of flag %r was not tracked", details.flag_key)
            except Exception:
                pass

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        """Count a failed evaluation: the caller got its default, so there is nothing to track."""
        self._skipped["error"].incr()

    def _after(self, hook_context: HookContext, details: FlagEvaluationDetails[FlagValueType]) -> None:
        reason = details.reason
        if details.error_code is not None or reason == Reason.ERROR:
            self._skipped["error"].incr()
            return
        if reason == Reason.DISABLED:
            self._skipped["disabled"].incr()
            return
        flag_metadata = details.flag_metadata
        metadata = dict(flag_metadata) if flag_metadata else {}
        if reason == Reason.DEFAULT:
            metadata["default"] = True
        elif not details.variant and metadata.get("default") is not True:
            self._skipped["no_variant"].incr()
            return
        verdict = decide(
            details.flag_key or hook_context.flag_key,
            _Served(details.variant, metadata),
            track_default_variants=self.track_default_variants,
        )
        exposure = verdict.exposure
        if exposure is None:
            self._skipped[verdict.reason].incr()
            return
        if self.provider.track(exposure, context_identity(hook_context.evaluation_context)):
            self._tracked.incr()
            if exposure.variant is None:
                self._tracked_unset.incr()
        else:
            self._not_accepted.incr()  # the provider counts why in its stats()["dropped"]

    def stats(self) -> dict[str, Any]:
        """Counters: tracked (accepted by the provider, repeats included), tracked_unset, not_accepted,
        errors, and skipped evaluations by reason (``HOOK_SKIP_REASONS``)."""
        skipped = {reason: counter.value for reason, counter in self._skipped.items()}
        return {
            "tracked": self._tracked.value,
            "tracked_unset": self._tracked_unset.value,
            "not_accepted": self._not_accepted.value,
            "errors": self._errors.value,
            "skipped": skipped,
            "skipped_total": sum(skipped.values()),
        }

    def __repr__(self) -> str:
        return (
            f"<ExposureHook provider={self.provider!r} track_default_variants={self.track_default_variants}>"
        )
