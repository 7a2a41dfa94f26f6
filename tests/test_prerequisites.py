"""tests/prerequisites.py: a fresh clone's ``python -m pytest`` installs what the tests run beyond Python,
or skips them with the command to run, and under CI fails them instead.

The decision is checked with ``PATH`` stripped (this machine has every package, and uninstalling Debian
packages on a shared machine is not a test); the npm and pip installs run for real into temporary folders.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from . import prerequisites
from .prerequisites import (
    NAMES,
    NPM_DIRS,
    Prerequisites,
    Unavailable,
    apt_decision,
    in_ci,
    legacy_pyuwsgi_extension,
    npm_installed,
)

ROOT = Path(__file__).resolve().parent.parent
SUDO = "" if os.geteuid() == 0 else "sudo "


@pytest.fixture
def bare_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A ``PATH`` with nothing on it: a machine without node, chromium, prometheus or apt-get."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("SEGMENT_EXPOSURE_TEST_INSTALL", raising=False)
    return empty


def test_without_apt_get_the_packages_are_left_to_the_user_with_the_command(bare_path: Path) -> None:
    decision = apt_decision(["node", "chromium", "prometheus"])
    assert decision.packages == ["nodejs", "chromium", "prometheus"]
    assert decision.blocker == "apt-get is not available"
    assert decision.command == f"{SUDO}apt-get update && {SUDO}apt-get install -y nodejs chromium prometheus"


def test_as_root_with_apt_get_the_packages_are_installed(bare_path: Path) -> None:
    apt_get = shutil.which("apt-get", path=os.defpath + ":/usr/bin:/usr/sbin")
    if apt_get is None or os.geteuid() != 0:
        pytest.skip("needs root and apt-get: the decision to install is only taken there")
    (bare_path / "apt-get").symlink_to(apt_get)
    decision = apt_decision(["prometheus"])
    assert decision.packages == ["prometheus"]
    assert decision.blocker is None  # Prerequisites would run apt-get update, then apt-get install


def test_installing_can_be_turned_off(bare_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENT_EXPOSURE_TEST_INSTALL", "0")
    assert apt_decision(["chromium"]).blocker == "installing is turned off (SEGMENT_EXPOSURE_TEST_INSTALL=0)"


def test_nothing_is_decided_for_what_is_installed() -> None:
    for name in ("node", "chromium", "prometheus"):
        if prerequisites.satisfied(name):
            assert apt_decision([name]).packages == []
            assert apt_decision([name]).blocker is None


def test_a_missing_package_skips_with_the_command_and_fails_under_ci(
    bare_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prerequisites, "PREREQUISITES", Prerequisites())
    command = f"{SUDO}apt-get update && {SUDO}apt-get install -y prometheus"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI: prometheus not installed") as failed:
        prerequisites.require_binary("promtool")
    assert command in str(failed.value)
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception) as skipped:
        prerequisites.require("prometheus")  # remembered: apt-get is not asked twice
    assert str(skipped.value).endswith(f"run `{command}`")


def test_an_unknown_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown prerequisite 'npm:nope'"):
        Prerequisites().ensure("npm:nope")


def test_the_marker_is_registered_with_every_name() -> None:
    tomllib = pytest.importorskip("tomllib")
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["pytest"]["ini_options"]
    (line,) = [m for m in markers["markers"] if m.startswith("requires(")]
    assert all(name.split(":")[0] in line for name in NAMES)


def _copy_npm_folder(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(source / name, target / name)
    return target


def test_npm_folders_are_installed_only_at_the_locked_versions(tmp_path: Path) -> None:
    folder = _copy_npm_folder(NPM_DIRS["experiment-client"], tmp_path / "client")
    assert not npm_installed(folder)
    locked = json.loads((folder / "package-lock.json").read_text("utf-8"))["packages"]
    package = folder / "node_modules" / "@amplitude" / "experiment-js-client"
    package.mkdir(parents=True)
    version = locked["node_modules/@amplitude/experiment-js-client"]["version"]
    (package / "package.json").write_text(json.dumps({"version": "0.0.1"}), "utf-8")
    assert not npm_installed(folder), "an older install is reinstalled, not tested"
    (package / "package.json").write_text(json.dumps({"version": version}), "utf-8")
    assert npm_installed(folder)


@pytest.mark.slow
@pytest.mark.requires("node")
def test_npm_ci_runs_the_first_time_a_folder_is_needed(tmp_path: Path) -> None:
    folder = _copy_npm_folder(NPM_DIRS["experiment-client"], tmp_path / "client")
    node = prerequisites.require_npm_dir(folder)
    assert npm_installed(folder)
    assert Path(node).name == "node"


@pytest.mark.requires("node")
def test_a_stale_linked_install_is_not_overwritten(tmp_path: Path) -> None:
    """A worktree's node_modules linked to another checkout's: npm ci would empty the other's install."""
    folder = _copy_npm_folder(NPM_DIRS["experiment-client"], tmp_path / "client")
    (tmp_path / "elsewhere").mkdir()
    (folder / "node_modules").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Unavailable, match="is a stale link") as unavailable:
        Prerequisites().npm_dir(folder)
    assert unavailable.value.command == f"npm ci --prefix {folder} --no-audit --no-fund"
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.slow
def test_pyuwsgi_is_installed_for_this_interpreter_on_first_need(tmp_path: Path) -> None:
    target = tmp_path / "pyuwsgi-2.0.26"
    try:
        found = Prerequisites(legacy_pyuwsgi=target).legacy_pyuwsgi()
    except Unavailable as exc:  # 2.0.26 has no wheel for every Python (none for 3.13)
        if in_ci():
            raise
        pytest.skip(str(exc))
    assert found == target
    assert (target / legacy_pyuwsgi_extension()).is_file()
    assert (target / "pyuwsgi-2.0.26.dist-info").is_dir()
    assert not list(tmp_path.glob("*.installing-*")), "the staging folder is renamed, not left behind"
