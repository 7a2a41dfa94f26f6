"""What a replay has delivered, in SQLite, so a rerun or a resume after a crash sends each event once.

Why SQLite (standard library, one file): a replay of a billion events cannot hold every ``insert_id`` in
memory, and a lookup of a few hundred ids per query costs about a microsecond an id. Each id has one row:
``status`` 1 delivered, 2 rejected by Amplitude for good, 0 claimed by a run (``run``) but not confirmed.
A claim by an earlier run that never confirmed (it crashed, or was killed, with the request in flight) counts
as not delivered, so the event is sent again with the same ``insert_id`` (Amplitude drops a repeat within
7 days). A claim by the current run marks a repeat of an event the run already holds (Segment delivers at
least once, so archives repeat events across files). Each batch's answer is committed before the next batch
is sent: a kill loses at most the batches in flight. WAL journal with ``synchronous=NORMAL``: a committed
batch survives the process being killed (not, in the worst case, the machine losing power mid-write).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_STATE_FILE", "Claim", "DeliveryState", "StateError"]

#: In the working directory, named for what it is: a second replay from the same place resumes the first.
DEFAULT_STATE_FILE = "segment-exposure-replay.sqlite3"

_CLAIMED, _DELIVERED, _REJECTED = 0, 1, 2
#: Ids per query: well under SQLite's limit of bound parameters (32766 since 3.32, 999 before).
_PER_QUERY = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    insert_id TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    run INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    pid INTEGER NOT NULL
);
"""


class StateError(Exception):
    """The state file cannot be opened or is not a replay state: one line for the user."""


@dataclass(slots=True)
class Claim:
    """Which of a batch's ids to send (``fresh``) and why the others are not sent."""

    fresh: list[int]
    delivered_before: int = 0
    rejected_before: int = 0
    repeated: int = 0


class DeliveryState:
    """The state file of one replay run (a new run id each time it is opened)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            cursor = self._db.execute(
                "INSERT INTO runs (started, pid) VALUES (?, ?)", (time.time(), os.getpid())
            )
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot use {path} as the replay state file: {exc}") from None
        self.run = int(cursor.lastrowid or 0)
        self._db.execute("BEGIN")

    def __repr__(self) -> str:
        return f"DeliveryState({self.path!r}, run={self.run})"

    def claim(self, ids: Sequence[str]) -> Claim:
        """Claim the ids (in order) for this run; those delivered, rejected or held already are left out.

        An id repeated within ``ids`` is fresh once, then counted as repeated.
        """
        known: dict[str, tuple[int, int]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _PER_QUERY):
            part = unique[start : start + _PER_QUERY]
            marks = ",".join("?" * len(part))
            for insert_id, status, run in self._db.execute(
                f"SELECT insert_id, status, run FROM events WHERE insert_id IN ({marks})", part
            ):
                known[insert_id] = (status, run)
        claim = Claim(fresh=[])
        taken: list[tuple[str, int]] = []
        seen: set[str] = set()
        for index, insert_id in enumerate(ids):
            if insert_id in seen:
                claim.repeated += 1
                continue
            seen.add(insert_id)
            status, run = known.get(insert_id, (_CLAIMED, -1))
            if status == _DELIVERED:
                claim.delivered_before += 1
            elif status == _REJECTED:
                claim.rejected_before += 1
            elif run == self.run:
                claim.repeated += 1
            else:
                claim.fresh.append(index)
                taken.append((insert_id, self.run))
        self._db.executemany("INSERT OR REPLACE INTO events (insert_id, status, run) VALUES (?, 0, ?)", taken)
        return claim

    def record(self, delivered: Iterable[str], rejected: Iterable[str] = ()) -> None:
        """Remember Amplitude's answers and commit (with the claims made since the last commit)."""
        self._db.executemany("UPDATE events SET status = 1 WHERE insert_id = ?", ((i,) for i in delivered))
        self._db.executemany("UPDATE events SET status = 2 WHERE insert_id = ?", ((i,) for i in rejected))
        self.commit()

    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def close(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            pass
        self._db.close()
