"""One interface over the two Experiment clients: evaluate some flags for a user, or raise.

The wrapper needs "these variants, or an error"; the SDK clients differ in how they say either, and the
remote one often logs a failure and returns nothing instead of raising. The evaluators here turn each
into the same contract, and ask nothing of Amplitude beyond the variants.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ._sdk import FetchWatch, as_sdk_user, has_assignment_service, require_sdk

__all__ = ["EvaluationError", "Evaluator", "LocalEvaluator", "RemoteEvaluator", "evaluator_for"]

log = logging.getLogger(__name__)


class EvaluationError(Exception):
    """The Experiment client could not evaluate: the caller's fallback applies."""


class Evaluator(Protocol):
    """Evaluates flags for a user; ``flag_keys=None`` means every flag."""

    #: True when one call for every flag costs about what one call for a single flag does.
    prefers_all: bool

    def evaluate(self, user: object, flag_keys: list[str] | None) -> dict[str, Any]: ...


class LocalEvaluator:
    """``LocalEvaluationClient.evaluate_v2`` with no options, so the SDK tracks nothing itself."""

    prefers_all = False  # evaluation is CPU work per flag: evaluate only what is asked for

    def __init__(self, client: Any) -> None:
        self.client = client
        if has_assignment_service(client):
            log.warning(
                "segment-exposure: this LocalEvaluationClient has an assignment_config, so the SDK sends "
                "[Experiment] Assignment events to Amplitude on every evaluation besides these $exposure "
                "events; remove assignment_config to send exposures through Segment only"
            )

    def evaluate(self, user: object, flag_keys: list[str] | None) -> dict[str, Any]:
        result = self.client.evaluate_v2(as_sdk_user(user), set(flag_keys) if flag_keys else None)
        if not isinstance(result, dict):
            raise EvaluationError(f"evaluate_v2 returned {type(result).__name__}, not a dict")
        return result


class RemoteEvaluator:
    """``RemoteEvaluationClient.fetch_v2`` asking Amplitude's servers to track nothing.

    ``FetchOptions(tracksAssignment=False, tracksExposure=False)`` makes the SDK send
    ``X-Amp-Exp-Track: no-track`` and ``X-Amp-Exp-Exposure-Track: no-track``; without them the server
    tracks an assignment event for every fetch, which would count the user a second time.
    """

    prefers_all = True  # the round trip dominates: one fetch can serve a whole request

    def __init__(self, client: Any) -> None:
        self.client = client
        from amplitude_experiment.remote.fetch_options import FetchOptions

        self._options = FetchOptions
        self._watch = FetchWatch(client)
        if not self._watch.usable:
            log.warning(
                "segment-exposure: this RemoteEvaluationClient has no _connection_pool with acquire/release "
                "(an amplitude-experiment version not checked here): a fetch that fails with no retries "
                "left returns {} and reads as 'no flags' (fallbacks) instead of as an error"
            )

    def evaluate(self, user: object, flag_keys: list[str] | None) -> dict[str, Any]:
        options = self._options(tracksAssignment=False, tracksExposure=False, flagKeys=flag_keys or None)
        watch = self._watch
        watch.start()
        result = self.client.fetch_v2(as_sdk_user(user), options)
        if result is None:
            raise EvaluationError("fetch_v2 failed (the server rejected the request)")
        if not isinstance(result, dict):
            raise EvaluationError(f"fetch_v2 returned {type(result).__name__}, not a dict")
        if not result and watch.usable:
            failure = watch.failure()
            if failure is not None:
                raise EvaluationError(f"fetch_v2 failed: {failure}")
        return result


def evaluator_for(client: object) -> LocalEvaluator | RemoteEvaluator:
    """The evaluator for a ``LocalEvaluationClient`` or ``RemoteEvaluationClient`` (or a look-alike)."""
    sdk = require_sdk()
    if isinstance(client, sdk.LocalEvaluationClient):
        return LocalEvaluator(client)
    if isinstance(client, sdk.RemoteEvaluationClient):
        return RemoteEvaluator(client)
    if callable(getattr(client, "evaluate_v2", None)):
        return LocalEvaluator(client)
    if callable(getattr(client, "fetch_v2", None)):
        return RemoteEvaluator(client)
    raise TypeError(
        "client must be an amplitude_experiment LocalEvaluationClient or RemoteEvaluationClient, "
        f"got {type(client).__name__}"
    )
