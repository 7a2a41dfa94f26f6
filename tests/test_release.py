"""The release: ``python -m build`` makes an sdist and a wheel (the wheel built from the sdist, as PyPI's
users get it), ``twine check --strict`` accepts both, and the wheel holds the whole package
(tests/release_check.py). .ci/run also installs that wheel into a fresh virtualenv and runs the demo."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from .release_check import ROOT, source_files, wheel_problems

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text("utf-8"), re.MULTILINE)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_both_carry_the_version_of_pyproject(dist: dict[str, Path]) -> None:
    assert VERSION is not None
    assert dist["wheel"].name == f"segment_exposure-{VERSION[1]}-py3-none-any.whl"
    assert dist["sdist"].name == f"segment_exposure-{VERSION[1]}.tar.gz"


def test_twine_check_strict_passes(dist: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist["sdist"]), str(dist["wheel"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2


def test_the_wheel_is_complete(dist: dict[str, Path]) -> None:
    assert wheel_problems(dist["wheel"]) == []


def test_the_sdist_rebuilds_the_package(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "LICENSE"} <= names
    assert source_files() - names == set()


def test_the_check_finds_what_a_wheel_lacks(dist: dict[str, Path], tmp_path: Path) -> None:
    """The check itself: a wheel without the Segment Function, a subpackage or the console script fails."""
    broken = tmp_path / dist["wheel"].name
    dropped = ("segment_exposure/functions/amplitude_exposure.js", "segment_exposure/emulators/__init__.py")
    with zipfile.ZipFile(dist["wheel"]) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            if item.filename in dropped:
                continue
            data = source.read(item)
            if item.filename.endswith("entry_points.txt"):
                data = data.replace(b"segment-exposure = segment_exposure.cli:main\n", b"")
            target.writestr(item, data)
    problems = wheel_problems(broken)
    assert "package data missing: segment_exposure/functions/amplitude_exposure.js" in problems
    assert "subpackage missing: segment_exposure/emulators" in problems
    assert "entry point missing: [console_scripts] segment-exposure = segment_exposure.cli:main" in problems
