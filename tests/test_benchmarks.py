"""``python -m benchmarks --quick --json`` runs every benchmark and reports finite numbers.

A smoke test of the benchmarks themselves (the CI use of ``--quick``), not of the timings: noisy machines
make those meaningless in a test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

#: Starts processes, servers, browsers, npm or Prometheus: outside the fast inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
IDS = {"B1", "B1'", "B2", "B3", "B4", "B5", "B5'", "B6", "B7", "M1", "S1", "O1", "R1", "K1"}


@pytest.fixture(scope="module")
def quick_run() -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    report["_seconds"] = time.monotonic() - started
    return report


def test_every_benchmark_reports(quick_run: dict[str, Any]) -> None:
    ids = [r["id"] for r in quick_run["results"]]
    assert set(ids) == IDS
    assert len(ids) == len(IDS)
    assert quick_run["quick"] is True
    assert quick_run["machine"]["cpus"]


@pytest.mark.parametrize("key", ["ours", "peer", "ratio"])
def test_figures_are_finite_and_positive(quick_run: dict[str, Any], key: str) -> None:
    for result in quick_run["results"]:
        value = result[key]
        assert isinstance(value, (int, float)), (result["id"], key, value)
        assert math.isfinite(value) and value > 0, (result["id"], key, value)


def test_rows_say_what_and_against_what(quick_run: dict[str, Any]) -> None:
    for result in quick_run["results"]:
        assert result["what"] and result["peer_name"] and result["goal"] and result["unit"], result["id"]
        assert result["met"] in (True, False), result["id"]


def test_delivery_under_faults_loses_nothing_of_ours(quick_run: dict[str, Any]) -> None:
    b6 = next(r for r in quick_run["results"] if r["id"] == "B6")
    assert b6["ours_lost"] == 0
    assert all(isinstance(n, int) and n >= 0 for n in b6["peer_lost_per_run"])


def test_quick_is_quick(quick_run: dict[str, Any]) -> None:
    assert quick_run["_seconds"] < 60, f"--quick took {quick_run['_seconds']:.0f} s"
