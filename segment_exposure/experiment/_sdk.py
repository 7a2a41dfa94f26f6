"""The one place that imports amplitude-experiment and knows its inside (checked against 1.12.0-1.13.0).

The package's core must import without the ``experiment`` extra, so the SDK is imported on first use
and a missing install says which extra to add instead of a bare ``ModuleNotFoundError``.

Internals relied on, each checked where it is used, with a public-API fallback and one warning:
``User.__dict__`` (copied in ``as_sdk_user``), ``RemoteEvaluationClient._connection_pool`` with
``acquire()``/``release()`` and connections whose ``request()`` returns an ``http.client.HTTPResponse``
(watched by ``FetchWatch``), ``LocalEvaluationClient.assignment_service`` (read), and the
``exposure_service`` swapped by ``sdk_native``, and ``LocalEvaluationClient.flag_config_storage`` (read by
``flag_configs`` for the OpenFeature provider's readiness and change events).
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from segment_exposure.delivery.errors import ExposureError

__all__ = [
    "MISSING_SDK_MESSAGE",
    "TESTED_SDK_VERSIONS",
    "FetchWatch",
    "UntestedSDKVersionError",
    "as_sdk_user",
    "check_tested_sdk_version",
    "exposure_service",
    "flag_configs",
    "has_assignment_service",
    "require_sdk",
    "sdk_user_fields",
    "sdk_version",
    "set_exposure_service",
]

log = logging.getLogger(__name__)

MISSING_SDK_MESSAGE = (
    "segment_exposure.experiment needs the Amplitude Experiment SDK: "
    "pip install 'segment-exposure[experiment]'"
)

#: ``(major, minor)`` series of amplitude-experiment whose internals ``route_sdk_exposures`` was tested on.
TESTED_SDK_VERSIONS: tuple[tuple[int, int], ...] = ((1, 13),)


class UntestedSDKVersionError(ExposureError, RuntimeError):
    """The installed amplitude-experiment is a version whose internals this package has not tested."""


def require_sdk() -> ModuleType:
    """Import ``amplitude_experiment``, or raise ImportError naming the extra to install."""
    try:
        import amplitude_experiment
    except ImportError as exc:
        raise ImportError(MISSING_SDK_MESSAGE) from exc
    module: ModuleType = amplitude_experiment
    return module


def sdk_version() -> str:
    """The installed amplitude-experiment version string."""
    require_sdk()
    from amplitude_experiment.version import __version__

    return str(__version__)


def _series(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_tested_sdk_version(version: str | None = None) -> str:
    """Raise ``UntestedSDKVersionError`` unless ``version`` (default: the installed one) was tested."""
    version = sdk_version() if version is None else version
    if _series(version) not in TESTED_SDK_VERSIONS:
        tested = ", ".join(f"{major}.{minor}.x" for major, minor in TESTED_SDK_VERSIONS)
        raise UntestedSDKVersionError(
            f"route_sdk_exposures() replaces internals of amplitude-experiment and was tested with {tested}; "
            f"{version} is installed. Pin amplitude-experiment to a tested version, or use "
            "segment_exposure.experiment.ExposureTrackingClient, which relies on public API only."
        )
    return version


def exposure_service(client: Any) -> Any:
    """``LocalEvaluationClient.exposure_service``, which ``evaluate_v2`` hands tracked exposures to."""
    if not hasattr(client, "exposure_service"):
        raise UntestedSDKVersionError(
            "this amplitude-experiment LocalEvaluationClient has no exposure_service attribute to replace"
        )
    return client.exposure_service


def set_exposure_service(client: Any, service: Any) -> None:
    """Put ``service`` where ``evaluate_v2`` looks for the exposure service."""
    client.exposure_service = service


def has_assignment_service(client: Any) -> bool:
    """True when a ``LocalEvaluationClient`` was given an ``assignment_config`` (it sends assignments)."""
    return getattr(client, "assignment_service", None) is not None


def flag_configs(client: Any) -> dict[str, Any] | None:
    """The flag configs a ``LocalEvaluationClient`` holds now (key -> config), or None when unreadable.

    None means this client has no ``flag_config_storage`` with ``get_flag_configs()`` (a remote client,
    or an SDK version not checked here): the caller cannot tell "not loaded yet" from "no flags" then.
    An empty dict means nothing is loaded: the first fetch has not succeeded (or no flag is deployed).
    """
    storage = getattr(client, "flag_config_storage", None)
    read = getattr(storage, "get_flag_configs", None)
    if not callable(read):
        return None
    configs = read()
    return dict(configs) if isinstance(configs, Mapping) else None


_user_fields: frozenset[str] | None = None


def _sdk_user_fields() -> frozenset[str]:
    global _user_fields
    if _user_fields is None:
        from amplitude_experiment import User

        _user_fields = frozenset(inspect.signature(User.__init__).parameters) - {"self"}
    return _user_fields


def sdk_user_fields() -> frozenset[str]:
    """The keyword arguments ``amplitude_experiment.User`` takes (user_id, device_id, country, ...)."""
    return _sdk_user_fields()


def as_sdk_user(user: object) -> Any:
    """An ``amplitude_experiment.User`` for evaluation that the SDK may mutate without touching ``user``.

    The SDK writes into the user it evaluates (``library`` on remote fetches, cohort ids on local ones);
    a shallow copy keeps the caller's object, which may be shared between threads, unchanged.
    """
    from amplitude_experiment import User

    if user is None:
        return User()
    if isinstance(user, User):
        # A plain attribute copy: copy.copy goes through __reduce_ex__ and costs several times more.
        clone = User.__new__(type(user))
        clone.__dict__.update(user.__dict__)
        return clone
    if isinstance(user, Mapping):
        fields = _sdk_user_fields()
        return User(**{k: v for k, v in user.items() if k in fields})
    raise TypeError(
        "user must be an amplitude_experiment.User, a mapping of its fields, or None; "
        f"got {type(user).__name__}"
    )


class _Outcome(threading.local):
    """What the calling thread's last fetch got: an HTTP status and body, or the exception raised."""

    status: int | None = None
    body: bytes | None = None
    error: str | None = None


class _WatchedResponse:
    """An ``HTTPResponse`` whose body, once the SDK reads it, is kept for ``FetchWatch.failure``."""

    def __init__(self, response: Any, outcome: _Outcome) -> None:
        self._response = response
        self._outcome = outcome

    def read(self, *args: Any) -> Any:
        body = self._response.read(*args)
        self._outcome.body = body
        return body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)


class _WatchedConnection:
    def __init__(self, connection: Any, outcome: _Outcome) -> None:
        self.connection = connection
        self._outcome = outcome

    def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = self.connection.request(*args, **kwargs)
        except BaseException as exc:
            self._outcome.error = f"{type(exc).__name__}: {exc}"
            raise
        self._outcome.status = getattr(response, "status", None)
        return _WatchedResponse(response, self._outcome)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


class _WatchedPool:
    """The SDK's connection pool, handing out connections that note what each fetch got."""

    def __init__(self, pool: Any, outcome: _Outcome) -> None:
        self.pool = pool
        self._outcome = outcome

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        try:
            connection = self.pool.acquire(*args, **kwargs)
        except BaseException as exc:
            self._outcome.error = f"{type(exc).__name__}: {exc}"
            raise
        return _WatchedConnection(connection, self._outcome)

    def release(self, connection: Any) -> None:
        self.pool.release(getattr(connection, "connection", connection))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


class FetchWatch:
    """Tells a failed ``RemoteEvaluationClient.fetch_v2`` from an answer with no flags, without logs.

    With ``fetch_retries=0`` the SDK logs a failed fetch and returns ``{}``, exactly what an answer
    with no flags gives. The client's connection pool is wrapped so each thread's last fetch leaves its
    outcome (HTTP status and body, or the exception); an empty result counts as a success only when
    that outcome was a 200 whose body is a JSON object. ``usable`` is False when the client has no
    such pool (a future SDK): the caller then warns once, and an empty result reads as "no flags".
    """

    def __init__(self, client: Any) -> None:
        self._outcome = _Outcome()
        pool = getattr(client, "_connection_pool", None)
        self.usable = isinstance(pool, _WatchedPool) or all(
            callable(getattr(pool, name, None)) for name in ("acquire", "release")
        )
        if isinstance(pool, _WatchedPool):
            self._outcome = pool._outcome
        elif self.usable:
            client._connection_pool = _WatchedPool(pool, self._outcome)

    def start(self) -> None:
        """Forget the calling thread's previous fetch: call just before ``fetch_v2``."""
        outcome = self._outcome
        outcome.status = outcome.body = outcome.error = None

    def failure(self) -> str | None:
        """Why the calling thread's last fetch failed, or None when it got a valid answer."""
        outcome = self._outcome
        if outcome.error is not None:
            return outcome.error
        if outcome.status is None:
            return "no request was made"
        if outcome.status != 200:
            return f"HTTP {outcome.status}"
        try:
            parsed = json.loads(outcome.body or b"")
        except ValueError:
            return "the answer is not JSON"
        return None if isinstance(parsed, dict) else "the answer is not a JSON object"
