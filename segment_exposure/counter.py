"""A counter that is exact under threads, GIL or not, without taking a lock on the hot path.

Shared by the provider's statistics and the identity module's count of ignored cookie values.

``Counter()`` builds one of two implementations, chosen once at import:

- `CountCounter` when the GIL is on (every CPython but a free-threaded build running with it off):
  ``next()`` on an ``itertools.count`` is one C call, atomic under the GIL and several times cheaper
  than a lock or a per-thread cell. It is read by parsing ``repr()``, ``"count(N)"``, which does not
  advance it: ``count.__reduce__`` (the only other read) is deprecated since 3.12 and gone in 3.14,
  while the repr has kept its form since 2.x and is checked here at import.
- `CellCounter` when the GIL is off (``sys._is_gil_enabled()`` false, Python 3.13t and later),
  where ``count.__next__`` is not atomic: each thread adds to its own cell, so no increment is lost and
  no lock is taken on the hot path; a read sums the cells under a lock.

Choosing once is safe: a free-threaded Python that has the GIL on at import (``PYTHON_GIL=1``, or an
extension module without free-threading support imported earlier) keeps it on, and the cell counter
stays exact if the GIL comes on later.

``SEGMENT_EXPOSURE_FORCE_CELL_COUNTER=1`` (read at import) forces the cell counter with the GIL on, for
the tests: no free-threaded Python is needed to exercise it.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from collections.abc import Callable

__all__ = ["FORCE_CELL_COUNTER_ENV", "CellCounter", "CountCounter", "Counter"]

FORCE_CELL_COUNTER_ENV = "SEGMENT_EXPOSURE_FORCE_CELL_COUNTER"


class Counter:
    """A monotonically increasing counter; ``Counter()`` builds the implementation this process needs.

    ``reset()`` starts it again from zero (the provider's stats in a forked child). ``incr_one`` is a
    zero-argument callable for the hottest paths, bound once and valid across ``reset()``.
    """

    __slots__ = ()

    def __new__(cls) -> Counter:
        return object.__new__(_Default if cls is Counter else cls)

    def incr(self, n: int = 1) -> None:
        raise NotImplementedError

    @property
    def value(self) -> int:
        raise NotImplementedError

    @property
    def incr_one(self) -> Callable[[], object]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


def _check_count(n: int) -> None:
    if n.__class__ is not int or n < 0:
        raise ValueError(f"a counter only goes up: incr() takes an int >= 0, not {n!r}")


class CountCounter(Counter):
    """``itertools.count`` under the GIL: ``next()`` is one atomic C call."""

    __slots__ = ("_base", "_count")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._base = 0

    def incr(self, n: int = 1) -> None:
        if n == 1:
            next(self._count)
            return
        _check_count(n)
        for _ in range(n):  # rare and small: a batch of settled exposures
            next(self._count)

    @property
    def value(self) -> int:
        # count's repr is "count(N)": reading it does not advance it.
        return int(repr(self._count)[6:-1]) - self._base

    @property
    def incr_one(self) -> Callable[[], object]:
        return self._count.__next__

    def reset(self) -> None:
        self._base += self.value


class _Owner:
    """Lives in one thread's ``threading.local``; when the thread ends it dies and folds the cell."""

    __slots__ = ("__weakref__",)


class _Cells:
    """A cell counter's state, apart from the counter so that ``incr_one`` holds no cycle back to it."""

    __slots__ = ("base", "cells", "dead", "local", "locks")

    def __init__(self) -> None:
        self.local = threading.local()
        self.locks: dict[int, threading.Lock] = {}
        self.cells: dict[weakref.ref[_Owner], list[int]] = {}
        self.dead: list[weakref.ref[_Owner]] = []
        self.base = 0

    def lock(self) -> threading.Lock:
        pid = os.getpid()
        lock = self.locks.get(pid)
        if lock is None:  # first use, or the first in a forked child: setdefault picks one winner
            lock = self.locks.setdefault(pid, threading.Lock())
            for other in [p for p in self.locks if p != pid]:
                self.locks.pop(other, None)
        return lock

    def new_cell(self) -> list[int]:
        cell = [0]
        owner = _Owner()
        ref = weakref.ref(owner, self.dead.append)
        with self.lock():
            self.fold()
            self.cells[ref] = cell
        self.local.cell = cell
        self.local.owner = owner
        return cell

    def fold(self) -> None:
        """Move the cells of finished threads into ``base``; the caller holds the lock."""
        dead, cells = self.dead, self.cells
        while dead:
            cell = cells.pop(dead.pop(), None)
            if cell is not None:
                self.base += cell[0]

    def total(self) -> int:
        """``base`` plus every live cell; the caller holds the lock."""
        self.fold()
        return self.base + sum(cell[0] for cell in self.cells.values())


class CellCounter(Counter):
    """One cell per thread: only its thread writes it, so ``cell[0] += n`` loses nothing without a GIL.

    ``value`` sums the cells and a base under a lock, so reads are exact and never go back (short of a
    ``reset()``). When a thread ends, its ``threading.local`` entry (an ``_Owner``) dies and a weakref
    callback queues its cell; the next read or new cell folds it into the base under the lock, so memory
    stays bounded however many threads come and go. The callback itself only appends to a list (one
    atomic operation): it can run anywhere, even in a forked child while the lock's holder is gone.

    The lock is per process: a forked child (``os.fork()`` or a C ``fork()`` that runs no at-fork hook,
    as uWSGI does) takes a fresh one, since a parent's thread that held the old one does not exist there.
    """

    __slots__ = ("_incr_one", "_state")

    def __init__(self) -> None:
        self._state = state = _Cells()
        local, new_cell = state.local, state.new_cell

        def incr_one() -> None:
            try:
                cell: list[int] = local.cell
            except AttributeError:
                cell = new_cell()
            cell[0] += 1

        self._incr_one = incr_one

    def incr(self, n: int = 1) -> None:
        if n != 1:
            _check_count(n)
        try:
            cell: list[int] = self._state.local.cell
        except AttributeError:
            cell = self._state.new_cell()
        cell[0] += n

    @property
    def value(self) -> int:
        state = self._state
        with state.lock():
            return state.total()

    @property
    def incr_one(self) -> Callable[[], object]:
        return self._incr_one

    def reset(self) -> None:
        # Cells are written only by their threads, so reset moves the zero instead of clearing them.
        state = self._state
        with state.lock():
            total = state.total()  # folds ended threads' cells into base first: read base after it
            state.base -= total

    def _live_cells(self) -> int:
        """Cells not folded yet (for the tests: bounded by the threads alive plus those just ended)."""
        state = self._state
        with state.lock():
            state.fold()
            return len(state.cells)


def _repr_readable() -> bool:
    """Whether ``repr(itertools.count)`` still reads as ``count(N)``; if not, the cell counter is used."""
    probe = itertools.count(41)
    next(probe)
    return repr(probe) == "count(42)"


def _choose() -> type[Counter]:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    forced = os.environ.get(FORCE_CELL_COUNTER_ENV, "") not in ("", "0")
    return CountCounter if gil and not forced and _repr_readable() else CellCounter


_Default: type[Counter] = _choose()
