"""Locating the npm directories of real JavaScript references; missing ones fail in CI, skip elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent / "js"
BROWSER_DIR = JS / "browser"


def require_npm_dir(directory: Path) -> str:
    """The node executable, once ``directory``'s npm packages are installed (``npm ci``)."""
    node = shutil.which("node")
    missing = (
        "node is not installed"
        if node is None
        else (f"run: npm ci --prefix {directory.relative_to(JS.parent.parent)} --no-audit --no-fund")
        if not (directory / "node_modules").is_dir()
        else None
    )
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the JavaScript reference is not installed: {missing} (.ci/run does this)")
        pytest.skip(missing)
    assert node is not None
    return node


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
