"""Kept import path: the provider's counters lives in :mod:`segment_exposure.tracking.stats`."""

from segment_exposure.tracking.stats import (
    DROP_REASONS,
    Counter,
    ProviderStats,
)

__all__ = [
    "DROP_REASONS",
    "Counter",
    "ProviderStats",
]
