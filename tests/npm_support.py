"""Running the npm folders of real JavaScript references (tests/js/*): installed on first need by
tests/prerequisites.py; unavailable ones skip locally and fail in CI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .prerequisites import NPM_DIRS, require_npm_dir

__all__ = ["BROWSER_DIR", "require_npm_dir", "run_node"]

BROWSER_DIR = NPM_DIRS["browser"]


def run_node(directory: Path, script: str, stdin: str, timeout: float = 120) -> str:
    node = require_npm_dir(directory)
    done = subprocess.run(
        [node, str(directory / script)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
