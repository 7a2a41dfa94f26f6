"""The faults `AmplitudeEmulator.inject` can
apply to coming requests, and what each one does by default (its status, delay and whether it ingests)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAULTS", "Fault", "Queued", "make_fault"]

#: The fault names `AmplitudeEmulator.inject` accepts.
FAULTS: frozenset[str] = frozenset(
    {
        "ok",
        "500",
        "502",
        "503",
        "504",
        "500_after_ingest",
        "reset",
        "reset_after_ingest",
        "slow",
        "non_json",
        "403",
        "413",
        "429",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault, its defaults filled in by `make_fault`."""

    kind: str
    status: int
    delay: float
    ingest: bool
    retry_after: str | None = None


@dataclass(slots=True)
class Queued:
    """A fault and how many coming requests it still applies to (``None``: until cleared)."""

    fault: Fault
    remaining: int | None


def make_fault(
    fault: str,
    *,
    status: int | None = None,
    delay: float | None = None,
    ingest: bool | None = None,
    retry_after: str | None = None,
) -> Fault:
    """``fault`` with its defaults filled in; ``ValueError`` for a name not in `FAULTS`."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
    if fault in ("500", "502", "503", "504", "403", "413", "429"):
        default_status = int(fault)
    elif fault == "500_after_ingest":
        default_status = 500
    elif fault == "non_json":
        default_status = 200
    else:
        default_status = 0
    code = default_status if status is None else status
    if ingest is None:
        ingest = fault in ("500_after_ingest", "reset_after_ingest") or (
            fault == "non_json" and 200 <= code < 300
        )
    wait = delay if delay is not None else (1.0 if fault == "slow" else 0.0)
    return Fault(fault, code, wait, ingest, retry_after)
