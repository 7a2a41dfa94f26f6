"""segment_exposure.counter: exact under threads, GIL or not, and reset in a forked child.

No free-threaded Python runs here, so the cell counter (the one a GIL-less Python gets) is built
directly; its design is what makes it exact there: every thread writes only its own cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from segment_exposure import ProviderStats
from segment_exposure import counter as counter_module
from segment_exposure.counter import FORCE_CELL_COUNTER_ENV, CellCounter, CountCounter, Counter

from .conftest import wait_until

IMPLEMENTATIONS = [CountCounter, CellCounter]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_exact_under_threads_and_reads_never_go_back(impl: type[Counter]) -> None:
    counter = impl()
    threads, per_thread = 8, 50_000
    start = threading.Barrier(threads + 1)
    stop = threading.Event()
    backwards: list[tuple[int, int]] = []
    reads = 0

    def work(i: int) -> None:
        incr_one = counter.incr_one
        start.wait()
        if i % 2:
            for _ in range(per_thread):
                incr_one()
        else:
            for _ in range(per_thread // 5):
                counter.incr(4)
                counter.incr()

    def read() -> None:
        nonlocal reads
        last = 0
        start.wait()
        while not stop.is_set():
            value = counter.value
            if value < last:
                backwards.append((last, value))
            last = value
            reads += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    reader = threading.Thread(target=read)
    for t in [*workers, reader]:
        t.start()
    for t in workers:
        t.join(120)
    stop.set()
    reader.join(30)
    assert not any(t.is_alive() for t in [*workers, reader])
    assert counter.value == threads * per_thread
    assert not backwards, backwards[:5]
    assert reads > 0


def test_cell_counter_gives_each_thread_its_own_cell() -> None:
    """What makes it exact without a GIL: no two threads ever write the same cell."""
    counter = CellCounter()
    threads, per_thread = 8, 1_000
    counted = threading.Barrier(threads + 1)
    release = threading.Event()

    def work(i: int) -> None:
        for _ in range(per_thread + i):
            counter.incr_one()
        counted.wait()
        release.wait(60)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    try:
        counted.wait(60)
        cells = sorted(cell[0] for cell in counter._state.cells.values())
        assert cells == [per_thread + i for i in range(threads)]
        assert len({id(cell) for cell in counter._state.cells.values()}) == threads
    finally:
        release.set()
        for t in workers:
            t.join(60)
    assert counter.value == sum(per_thread + i for i in range(threads))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_reset_starts_from_zero_and_a_bound_incr_one_stays_valid(impl: type[Counter]) -> None:
    counter = impl()
    incr_one = counter.incr_one  # bound once, as the provider does in __init__
    counter.incr(5)
    incr_one()
    assert counter.value == 6
    counter.reset()
    assert counter.value == 0
    incr_one()
    counter.incr(2)
    assert counter.value == 3

    # A thread that counted before the reset and goes on after it.
    before, after = threading.Event(), threading.Event()

    def work() -> None:
        for _ in range(4):
            incr_one()
        before.set()
        assert after.wait(60)
        incr_one()
        incr_one()

    t = threading.Thread(target=work)
    t.start()
    assert before.wait(60)
    assert counter.value == 7
    counter.reset()
    assert counter.value == 0
    after.set()
    t.join(60)
    assert counter.value == 2  # and still 2 once the ended thread's cell is folded
    counter.reset()
    counter.reset()
    assert counter.value == 0

    # A thread that counted and ended, not read since: reset() folds its cell and still ends at zero.
    ended = threading.Thread(target=lambda: [incr_one() for _ in range(3)])
    ended.start()
    ended.join(60)
    counter.reset()
    assert counter.value == 0
    incr_one()
    assert counter.value == 1


def test_cell_counter_memory_stays_bounded_with_thread_churn() -> None:
    counter = CellCounter()
    incr_one = counter.incr_one
    most_live = 0
    for _ in range(50):
        batch = [threading.Thread(target=lambda: [incr_one() for _ in range(7)]) for _ in range(20)]
        for t in batch:
            t.start()
        for t in batch:
            t.join(60)
        most_live = max(most_live, counter._live_cells())
    assert counter.value == 50 * 20 * 7
    # Ended threads' cells are folded into the base: none left (give a slow interpreter a moment).
    assert wait_until(lambda: counter._live_cells() == 0, timeout=10), counter._live_cells()
    assert most_live <= 20, most_live
    assert not counter._state.dead
    assert counter.value == 50 * 20 * 7


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_incr_rejects_what_a_counter_cannot_count(impl: type[Counter]) -> None:
    counter = impl()
    counter.incr(0)
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="only goes up"):
            counter.incr(bad)  # type: ignore[arg-type]
    assert counter.value == 0


def test_the_implementation_is_chosen_by_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORCE_CELL_COUNTER_ENV, raising=False)
    monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)
    assert counter_module._choose() is CountCounter  # before 3.13: always a GIL
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    assert counter_module._choose() is CountCounter
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert counter_module._choose() is CellCounter
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    monkeypatch.setenv(FORCE_CELL_COUNTER_ENV, "1")
    assert counter_module._choose() is CellCounter
    monkeypatch.setenv(FORCE_CELL_COUNTER_ENV, "0")
    assert counter_module._choose() is CountCounter
    # A Python whose count repr no longer reads "count(N)" gets the cell counter.
    monkeypatch.setattr(counter_module, "_repr_readable", lambda: False)
    assert counter_module._choose() is CellCounter


def test_counter_builds_the_chosen_implementation() -> None:
    chosen = counter_module._Default
    assert chosen is (
        CellCounter if os.environ.get(FORCE_CELL_COUNTER_ENV, "") not in ("", "0") else CountCounter
    )
    assert type(Counter()) is chosen
    assert isinstance(CellCounter(), Counter) and isinstance(CountCounter(), Counter)
    assert all(type(c) is chosen for c in [ProviderStats().deduplicated, *ProviderStats().dropped.values()])


def test_the_env_var_forces_the_cell_counter_everywhere() -> None:
    code = (
        "from segment_exposure.tracking.stats import ProviderStats\n"
        "from segment_exposure.identity import browser_cookies\n"
        "print(type(ProviderStats().deduplicated).__name__, type(browser_cookies._ignored).__name__)\n"
    )
    env = {**os.environ, FORCE_CELL_COUNTER_ENV: "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CellCounter", "CellCounter"]


FORK = r"""
import ctypes, json, os, sys, threading
from segment_exposure.counter import CellCounter, CountCounter

impl, how = {"cell": CellCounter, "count": CountCounter}[sys.argv[1]], sys.argv[2]
counter = impl()
incr_one = counter.incr_one
counted, release, holding = threading.Event(), threading.Event(), threading.Event()

def counting():  # alive at the fork, with a cell of its own
    for _ in range(10):
        incr_one()
    counted.set()
    release.wait()

def hold_the_lock():  # holds the read lock at the fork: the child must not wait for it
    with counter._state.lock():
        holding.set()
        release.wait()

counter.incr(5)  # the main thread's cell, made before the lock is taken
threads = [threading.Thread(target=counting)]
if impl is CellCounter:
    threads.append(threading.Thread(target=hold_the_lock))
for t in threads:
    t.start()
assert counted.wait(60) and (impl is CountCounter or holding.wait(60))
pid = os.fork() if how == "os" else ctypes.CDLL(None, use_errno=True).fork()
if pid == 0:
    try:
        seen = {"inherited": counter.value}
        counter.reset()
        seen["after_reset"] = counter.value
        incr_one()
        child = threading.Thread(target=lambda: [incr_one() for _ in range(5)])
        child.start()
        child.join()
        seen["counted"] = counter.value
        print(json.dumps(seen), flush=True)
    finally:
        os._exit(0)
_, status = os.waitpid(pid, 0)
release.set()
for t in threads:
    t.join()
print(json.dumps({"status": status, "parent": counter.value}), flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("how", ["os", "c"])
@pytest.mark.parametrize("impl", ["cell", "count"])
def test_a_forked_child_resets_without_waiting_for_the_parents_threads(impl: str, how: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", FORK, impl, how], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    assert child == {"inherited": 15, "after_reset": 0, "counted": 6}
    assert parent == {"status": 0, "parent": 15}
