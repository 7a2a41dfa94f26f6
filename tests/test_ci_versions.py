""".ci/lowest-constraints.txt pins exactly the floors pyproject.toml declares, so raising a floor in one
place without the other fails here rather than leaving CI testing a version users can no longer get."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

# A check of the repository's files, for the main interpreter (tomllib is new in 3.11).
tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
#: The extras .ci/versions installs besides the runtime dependencies.
TESTED_EXTRAS = ("experiment", "useragent", "openfeature", "rudderstack")


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in TESTED_EXTRAS:
        lines += project["optional-dependencies"][extra]
    return {(req := Requirement(line)).name: req for line in lines}


def _pinned() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / ".ci" / "lowest-constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip()] = Version(version.strip())
    return pins


def test_lowest_constraints_pin_each_declared_floor() -> None:
    declared, pinned = _declared(), _pinned()
    assert set(pinned) == set(declared)
    for name, req in declared.items():
        [floor] = [Version(spec.version) for spec in req.specifier if spec.operator == ">="]
        version = pinned[name]
        assert version in req.specifier, f"{name}=={version} is outside {req.specifier}"
        # The lowest release of the floor's series: 2.3 -> 2.3.x, 1.0.37 -> 1.0.37.
        assert version.release[: len(floor.release)] == floor.release, f"{name}: {version} vs >={floor}"
