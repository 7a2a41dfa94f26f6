"""The exposure value: what a user was shown, independent of any analytics library."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EXPOSURE_EVENT", "Exposure"]

#: The event name Amplitude recognises as an exposure; any other name is not counted in analysis.
EXPOSURE_EVENT = "$exposure"


@dataclass(frozen=True, slots=True)
class Exposure:
    """An exposure of one user to one flag's variant.

    ``variant=None`` means "unset": Amplitude removes the user from the experiment. Validation happens at
    construction so a bad exposure fails where it was made, not later inside a background thread.
    """

    flag_key: str
    variant: str | None = None
    experiment_key: str | None = None
    metadata: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if (
            self.flag_key.__class__ is str
            and self.flag_key
            and (self.variant is None or (self.variant.__class__ is str and self.variant))
            and (self.experiment_key is None or self.experiment_key.__class__ is str)
            and (self.metadata is None or self.metadata.__class__ is dict)
        ):
            return  # the common case, checked cheaply: exposures are made on request paths
        if not isinstance(self.flag_key, str) or not self.flag_key:
            raise ValueError(f"flag_key must be a non-empty str, got {self.flag_key!r}")
        if self.variant is not None and (not isinstance(self.variant, str) or not self.variant):
            raise ValueError(f"variant must be a non-empty str, or None to unset, got {self.variant!r}")
        if self.experiment_key is not None and not isinstance(self.experiment_key, str):
            raise ValueError(
                f"experiment_key must be a str or None, got {type(self.experiment_key).__name__}"
            )
        if self.metadata is not None and not isinstance(self.metadata, Mapping):
            raise ValueError(f"metadata must be a mapping or None, got {type(self.metadata).__name__}")

    def properties(self) -> dict[str, Any]:
        """The ``$exposure`` event properties: ``variant`` is left out when unset, as Amplitude expects."""
        props: dict[str, Any] = {"flag_key": self.flag_key}
        if self.variant is not None:
            props["variant"] = self.variant
        if self.experiment_key is not None:
            props["experiment_key"] = self.experiment_key
        return props
