"""Measuring side by side: every figure is a ratio against a peer measured in the same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Result", "per_call_ns", "percentile", "spread"]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def spread(values: Sequence[float]) -> float:
    """Relative spread of repetitions: (max - min) / median."""
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


def per_call_ns(call: Callable[[int], object], n: int) -> list[float]:
    """Time each of ``n`` calls on the caller's thread, in nanoseconds."""
    clock = time.perf_counter_ns
    samples = [0.0] * n
    for i in range(n):
        start = clock()
        call(i)
        samples[i] = clock() - start
    return samples


@dataclass
class Result:
    """One benchmark row: our figure, the peer's, their ratio and the goal it is held to."""

    id: str
    what: str
    ours: float
    peer: float
    unit: str
    peer_name: str
    goal: str
    met: bool | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "what": self.what,
            "ours": self.ours,
            "peer": self.peer,
            "unit": self.unit,
            "peer_name": self.peer_name,
            "ratio": self.ratio,
            "goal": self.goal,
            "met": self.met,
            **self.detail,
        }
