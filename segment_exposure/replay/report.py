"""What a replay read, skipped, sent and delivered: every event accounted for, problems with file and line.

The counts reconcile: each exposure read is exactly one of refused, outside the window, without an
insert_id, repeated, delivered (before or now), rejected (before or now) or left undelivered. Users are
counted exactly up to :data:`EXACT_USERS` distinct ids, then estimated (HyperLogLog, about 1% error), so
the count costs bounded memory on any archive.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EXACT_USERS", "MAX_FLAG_ROWS", "SAMPLES", "DistinctCounter", "Problem", "ReplayReport"]

#: Problems shown with file and line, per kind.
SAMPLES = 5
#: Distinct users counted exactly before switching to an estimate.
EXACT_USERS = 100_000
#: (flag, variant) rows kept; the rest are summed under one row.
MAX_FLAG_ROWS = 10_000
_OTHER_FLAGS = ("(other flags)", "")
_HLL_BITS = 14


@dataclass(frozen=True, slots=True)
class Problem:
    """One reported problem: where (file and line) and what."""

    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class DistinctCounter:
    """Distinct strings: exact in a set up to ``exact`` of them, then a HyperLogLog estimate."""

    def __init__(self, exact: int = EXACT_USERS) -> None:
        self._exact = exact
        self._set: set[str] | None = set()
        self._registers = bytearray()

    @property
    def estimated(self) -> bool:
        return self._set is None

    def add(self, value: str) -> None:
        if self._set is not None:
            self._set.add(value)
            if len(self._set) <= self._exact:
                return
            values, self._set = self._set, None
            self._registers = bytearray(1 << _HLL_BITS)
            for known in values:
                self._hll_add(known)
            return
        self._hll_add(value)

    def _hll_add(self, value: str) -> None:
        digest = int.from_bytes(
            hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
        )
        index = digest >> (64 - _HLL_BITS)
        rest = (digest << _HLL_BITS) & ((1 << 64) - 1)
        rank = (64 - _HLL_BITS + 1) if rest == 0 else (64 - rest.bit_length() + 1)
        if rank > self._registers[index]:
            self._registers[index] = rank

    def __len__(self) -> int:
        if self._set is not None:
            return len(self._set)
        m = len(self._registers)
        alpha = 0.7213 / (1 + 1.079 / m)
        estimate = alpha * m * m / sum(2.0**-r for r in self._registers)
        zeros = self._registers.count(0)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return round(estimate)


@dataclass
class ReplayReport:
    """Counters of one run; ``problems`` keeps the first :data:`SAMPLES` of each kind."""

    files: int = 0
    lines: int = 0
    broken_lines: int = 0
    truncated_files: int = 0
    unreadable_files: int = 0
    other_events: int = 0
    exposures: int = 0
    refused: int = 0
    outside_window: int = 0
    no_insert_id: int = 0
    repeated: int = 0
    delivered_before: int = 0
    rejected_before: int = 0
    selected: int = 0
    delivered: int = 0
    rejected: int = 0
    undelivered: int = 0
    requests: int = 0
    first_time: int | None = None
    last_time: int | None = None
    flags: Counter[tuple[str, str]] = field(default_factory=Counter)
    delivered_flags: Counter[tuple[str, str]] = field(default_factory=Counter)
    users: DistinctCounter = field(default_factory=DistinctCounter)
    problem_counts: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, kind: str, where: str, message: str) -> None:
        """Count a problem and keep it if it is among the first of its kind."""
        self.problem_counts[kind] += 1
        if self.problem_counts[kind] <= SAMPLES:
            self.problems.append(Problem(kind, where, message))

    def selected_event(self, flag: str, variant: str, user: str, time_ms: int | None) -> None:
        """An exposure this run sends (or, dry, would send)."""
        self.selected += 1
        key = (flag, variant)
        if key not in self.flags and len(self.flags) >= MAX_FLAG_ROWS:
            key = _OTHER_FLAGS
        self.flags[key] += 1
        self.users.add(user)
        if time_ms is not None:
            if self.first_time is None or time_ms < self.first_time:
                self.first_time = time_ms
            if self.last_time is None or time_ms > self.last_time:
                self.last_time = time_ms

    def delivered_event(self, flag: str, variant: str) -> None:
        self.delivered += 1
        key = (flag, variant) if (flag, variant) in self.flags else _OTHER_FLAGS
        self.delivered_flags[key] += 1

    @property
    def accounted(self) -> int:
        """Exposures accounted for by an outcome: equals :attr:`exposures` once a run has finished."""
        return (
            self.refused
            + self.outside_window
            + self.no_insert_id
            + self.repeated
            + self.delivered_before
            + self.rejected_before
            + self.selected
        )

    def complete(self, *, dry_run: bool = False) -> bool:
        """Everything selected was delivered (dry: would be sent) and nothing was broken or refused."""
        return not (
            self.broken_lines
            or self.truncated_files
            or self.unreadable_files
            or self.refused
            or self.no_insert_id
            or self.rejected
            or self.rejected_before
            or self.undelivered
            or (not dry_run and self.selected != self.delivered)
        )
