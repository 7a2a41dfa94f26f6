"""``AmplitudeExperimentProvider``: amplitude-experiment's server-side clients as an OpenFeature provider.

Evaluation goes through the same evaluators as ``ExposureTrackingClient`` (``experiment.evaluation``):
a local client is asked with no tracking options and a remote fetch asks Amplitude to track nothing, so
evaluating never makes Amplitude's SDK or servers record an exposure or assignment of their own. The
provider tracks no exposures either; register ``ExposureHook`` for that.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import (
    FlagNotFoundError,
    GeneralError,
    OpenFeatureError,
    ProviderNotReadyError,
)
from openfeature.flag_evaluation import FlagResolutionDetails, FlagType, FlagValueType
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from segment_exposure.counter import Counter
from segment_exposure.experiment._sdk import flag_configs, sdk_user_fields
from segment_exposure.experiment.evaluation import EvaluationError, LocalEvaluator, evaluator_for
from segment_exposure.identity import bound_request_context, bound_user, context_from_user, identity_from_user

from .context import context_identity, experiment_user
from .resolution import resolve_variant
from .watch import ConfigWatch

if TYPE_CHECKING:
    from segment_exposure.tracking.provider import SegmentExposureTrackingProvider

__all__ = ["PROVIDER_NAME", "AmplitudeExperimentProvider"]

log = logging.getLogger(__name__)

PROVIDER_NAME = "amplitude-experiment"


class AmplitudeExperimentProvider(AbstractProvider):
    """An OpenFeature provider over a ``LocalEvaluationClient`` or ``RemoteEvaluationClient``.

    ``variant`` is the Amplitude variant key; a string flag's value is the variant's value (its key
    when it has none); a boolean flag reads "on"/"true" as True and "off"/"false" as False; number and
    object flags read the payload, then the value. Reasons: DEFAULT for the flag's default variant,
    SPLIT for the catch-all segment's allocation, TARGETING_MATCH for a targeted segment. Errors:
    FLAG_NOT_FOUND, TYPE_MISMATCH, PROVIDER_NOT_READY (a local client with no flag configs yet),
    GENERAL (a failed remote fetch). ``flag_metadata`` is the variant's scalar metadata.

    ``initialize()`` starts a local client (retrying in the background if its first fetch fails, then
    emitting PROVIDER_READY) and watches its configs, emitting PROVIDER_CONFIGURATION_CHANGED with the
    changed keys; ``shutdown()`` stops both. A remote client is used as given and left open.

    Args:
        client: an amplitude-experiment ``LocalEvaluationClient`` or ``RemoteEvaluationClient``.
        tracking_provider: where OpenFeature's ``client.track(name, context, details)`` goes, as a
            Segment ``track`` event; without one, tracking calls are counted and ignored.
        watch_interval: seconds between looks at a local client's flag configs.
    """

    def __init__(
        self,
        client: Any,
        *,
        tracking_provider: SegmentExposureTrackingProvider | None = None,
        watch_interval: float = 1.0,
    ) -> None:
        super().__init__()
        self._evaluator = evaluator_for(client)
        if tracking_provider is not None and getattr(tracking_provider, "analytics", None) is None:
            raise TypeError("tracking_provider must be a SegmentExposureTrackingProvider (it has .analytics)")
        self.client = client
        self.tracking_provider = tracking_provider
        self._local = isinstance(self._evaluator, LocalEvaluator)
        self._watch = ConfigWatch(client, watch_interval, self._ready, self._changed) if self._local else None
        self._evaluations = Counter()
        self._errors = {
            code: Counter() for code in ("FLAG_NOT_FOUND", "TYPE_MISMATCH", "PROVIDER_NOT_READY", "GENERAL")
        }
        self._config_changes = Counter()
        self._events_sent = Counter()
        self._events_dropped = Counter()

    # -- lifecycle -----------------------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Start a local client and its config watch; raise ``ProviderNotReadyError`` if it cannot start.

        The SDK then marks the provider ERROR; the watch keeps starting the client and emits
        PROVIDER_READY once it has.
        """
        if self._watch is None:
            return
        try:
            self.client.start()
        except Exception as exc:
            self._watch.start(client_started=False)
            raise ProviderNotReadyError(
                f"the Experiment client could not fetch flag configs ({type(exc).__name__}: {exc}); "
                "retrying in the background"
            ) from exc
        self._watch.start(client_started=True)
        if flag_configs(self.client) is None:
            log.warning(
                "segment-exposure: this LocalEvaluationClient has no flag_config_storage (an "
                "amplitude-experiment version not checked here): no PROVIDER_CONFIGURATION_CHANGED events"
            )

    def shutdown(self) -> None:
        """Stop the config watch and the local client."""
        if self._watch is not None:
            self._watch.stop()
            self.client.stop()

    def _ready(self) -> None:
        self.emit_provider_ready(ProviderEventDetails(message="the Experiment client has flag configs"))

    def _changed(self, flag_keys: list[str]) -> None:
        self._config_changes.incr()
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=flag_keys))

    # -- evaluation ----------------------------------------------------------------------------------

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, FlagType.BOOLEAN, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, FlagType.STRING, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, FlagType.INTEGER, default_value, evaluation_context)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, FlagType.FLOAT, default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, FlagType.OBJECT, default_value, evaluation_context)

    def _resolve(
        self,
        flag_key: str,
        flag_type: FlagType,
        default_value: Any,
        evaluation_context: EvaluationContext | None,
    ) -> FlagResolutionDetails[Any]:
        self._evaluations.incr()
        try:
            variant = self._variant(flag_key, evaluation_context)
            return resolve_variant(variant, flag_type, default_value)
        except OpenFeatureError as exc:
            code = getattr(exc.error_code, "value", str(exc.error_code))
            self._errors.get(code, self._errors["GENERAL"]).incr()
            raise

    def _variant(self, flag_key: str, evaluation_context: EvaluationContext | None) -> Any:
        user = experiment_user(evaluation_context, sdk_user_fields())
        try:
            variants = self._evaluator.evaluate(user, [flag_key])
        except EvaluationError as exc:
            raise GeneralError(str(exc)) from exc
        except Exception as exc:
            raise GeneralError(f"evaluating {flag_key!r} failed: {type(exc).__name__}: {exc}") from exc
        variant = variants.get(flag_key)
        if variant is not None:
            return variant
        if self._local and flag_configs(self.client) == {}:
            raise ProviderNotReadyError("the Experiment client has no flag configs yet")
        raise FlagNotFoundError(f"no flag {flag_key!r} in this Amplitude deployment")

    # -- tracking ------------------------------------------------------------------------------------

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """Send a Segment ``track(tracking_event_name, properties)`` for the context's user.

        ``properties`` are the details' attributes, plus ``value`` when it is set. Goes through the
        Segment client of ``tracking_provider`` (its public ``analytics``), so it shares its queue and
        its flush; never waits on the network. Without a tracking provider or an identity, the event is
        counted as dropped (``stats()["tracking_events_dropped"]``) and logged at debug level.

        Raises:
            ValueError: ``tracking_event_name`` is not a non-empty str.
        """
        if not isinstance(tracking_event_name, str) or not tracking_event_name:
            raise ValueError(f"tracking_event_name must be a non-empty str, got {tracking_event_name!r}")
        try:
            self._send_event(tracking_event_name, evaluation_context, tracking_event_details)
        except Exception:
            self._events_dropped.incr()
            log.exception("segment-exposure: the tracking event %r was not sent", tracking_event_name)

    def _send_event(
        self, name: str, evaluation_context: EvaluationContext | None, details: TrackingEventDetails | None
    ) -> None:
        provider = self.tracking_provider
        user = context_identity(evaluation_context)
        if provider is None or user is None:
            self._events_dropped.incr()
            why = "no tracking_provider was given" if provider is None else "the context has no identity"
            log.debug("segment-exposure: tracking event %r not sent: %s", name, why)
            return
        user_id, device_id = identity_from_user(user)
        context = context_from_user(user)
        if user is bound_user():
            for key, value in (bound_request_context() or {}).items():
                context.setdefault(key, value)  # the user's own fields win
        properties: dict[str, Any] = dict(details.attributes) if details is not None else {}
        if details is not None and details.value is not None:
            properties["value"] = details.value
        accepted = provider.analytics.track(
            user_id=user_id, anonymous_id=device_id, event=name, properties=properties, context=context
        )
        # segment-analytics-python answers (success, message); a full queue is success False.
        if isinstance(accepted, tuple) and accepted and accepted[0] is False:
            self._events_dropped.incr()
        else:
            self._events_sent.incr()

    # -- introspection -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: evaluations, errors by OpenFeature error code, config_changes, and tracking events
        sent to / dropped before the Segment client."""
        return {
            "evaluations": self._evaluations.value,
            "errors": {code: counter.value for code, counter in self._errors.items()},
            "config_changes": self._config_changes.value,
            "tracking_events_sent": self._events_sent.value,
            "tracking_events_dropped": self._events_dropped.value,
        }

    def __repr__(self) -> str:
        return f"<AmplitudeExperimentProvider client={type(self.client).__name__}>"
