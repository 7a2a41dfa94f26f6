"""Run Segment's own Amplitude (Actions) destination (``tests/js/segment-actions/oracle.mjs``) from Python.

Why: the parity test, the vector regeneration and the JS Function test all ask the same question, "what
would Segment's destination POST for these events?", and one Node process per batch keeps that fast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .prerequisites import npm_installed, require_npm_dir

ORACLE_DIR = Path(__file__).resolve().parent / "js" / "segment-actions"
ORACLE = ORACLE_DIR / "oracle.mjs"
INSTALL_HINT = "npm ci --prefix tests/js/segment-actions --no-audit --no-fund"


def oracle_missing() -> str | None:
    """Why the oracle cannot run here, or ``None`` when it can."""
    if shutil.which("node") is None:
        return "node is not installed (CI installs Node 20)"
    if not npm_installed(ORACLE_DIR):
        return f"Segment's destination code is not installed: run `{INSTALL_HINT}`"
    return None


def require_oracle() -> None:
    """Install Segment's destination code on first need (tests/prerequisites.py); when it cannot be, skip
    locally but fail in CI (``CI=true``), where it must run."""
    require_npm_dir(ORACLE_DIR)


def run_oracle(events: list[Any], *, timeout: float = 120.0) -> list[dict[str, Any]]:
    """One result per event, in order: ``{"outcome": "sent"|"error"|"not_subscribed"|"not_an_event", ...}``.

    ``sent`` results carry ``event`` (the Amplitude event Segment would POST) and ``body`` (the whole
    request body); ``error`` results carry ``error`` ``{"name", "message", "status"}``.
    """
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    done = subprocess.run(
        [node, str(ORACLE)],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ORACLE_DIR,
    )
    assert done.returncode == 0, f"oracle failed ({done.returncode}):\n{done.stderr[-3000:]}"
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    results = [line for line in lines if "index" in line]
    assert [r["index"] for r in results] == list(range(len(events))), "oracle output out of step with input"
    return results


def oracle_versions() -> dict[str, Any]:
    """The package versions and preset the oracle runs (its first output line)."""
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    done = subprocess.run(
        [node, str(ORACLE)],
        input="[]",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ORACLE_DIR,
    )
    first: dict[str, Any] = json.loads(done.stdout.splitlines()[0])["oracle"]
    return first
