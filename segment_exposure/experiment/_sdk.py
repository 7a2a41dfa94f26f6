"""The one place that imports amplitude-experiment and knows which of its versions were tested.

The package's core must import without the ``experiment`` extra, so the SDK is imported on first use
and a missing install says which extra to add instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from segment_exposure.delivery.errors import ExposureError

__all__ = [
    "MISSING_SDK_MESSAGE",
    "TESTED_SDK_VERSIONS",
    "UntestedSDKVersionError",
    "as_sdk_user",
    "check_tested_sdk_version",
    "require_sdk",
    "sdk_version",
]

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


_user_fields: frozenset[str] | None = None


def _sdk_user_fields() -> frozenset[str]:
    global _user_fields
    if _user_fields is None:
        from amplitude_experiment import User

        _user_fields = frozenset(inspect.signature(User.__init__).parameters) - {"self"}
    return _user_fields


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
