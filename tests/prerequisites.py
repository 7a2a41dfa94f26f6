"""What the tests run beyond Python, installed the first time a test needs it: ``python -m pytest`` passes
on a fresh clone with no other step.

Why here and not in a set-up script: a script only CI knows about left a new user with failures and skips.
Each prerequisite has a name (``requires`` marker, tests/conftest.py):

- ``node``, ``chromium``, ``prometheus`` (with ``promtool``): Debian packages, installed with apt-get when
  the tests run as root on a machine that has it (``apt-get update`` once, then ``apt-get install``);
- ``npm:<folder>``: ``npm ci`` in ``tests/js/<folder>``, or ``scripts/function-build`` (after ``node``);
- ``pyuwsgi-2.0.26``: the thread-less uWSGI of the server matrix, ``pip install --target`` into
  ``.ci/cache/pyuwsgi-2.0.26`` (git-ignored), apart from the dev extra's current pyuwsgi.

Installs run under a file lock (parallel pytest processes wait for the first one) and at most once per
process, successful or not. What cannot be installed here (not root, no apt-get, no network, or
``SEGMENT_EXPOSURE_TEST_INSTALL=0``) skips the tests that need it with the exact command to run; under CI
(``CI=true``) it fails them instead, so a missing reference never hides behind a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

__all__ = [
    "DEBIAN",
    "LEGACY_PYUWSGI",
    "LEGACY_PYUWSGI_VERSION",
    "NAMES",
    "NPM_DIRS",
    "PREREQUISITES",
    "AptDecision",
    "Prerequisites",
    "Unavailable",
    "apt_blocker",
    "apt_command",
    "apt_decision",
    "in_ci",
    "install_blocker",
    "legacy_pyuwsgi_extension",
    "missing_packages",
    "npm_command",
    "npm_installed",
    "require",
    "require_binary",
    "require_chromium",
    "require_legacy_pyuwsgi",
    "require_node",
    "require_npm_dir",
    "satisfied",
]

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".ci" / "cache"
JS = ROOT / "tests" / "js"
NPM_DIRS = {
    **{name: JS / name for name in ("segment-actions", "browser", "experiment-client")},
    # The build of the Segment Function's bundled user-agent parser (scripts/function-build/build.mjs).
    "function-build": JS.parent.parent / "scripts" / "function-build",
}
#: uWSGI before 2.0.27 runs Python without threads unless --enable-threads is given (later versions always
#: enable them). PYUWSGI_LEGACY overrides the folder.
LEGACY_PYUWSGI_VERSION = "2.0.26"
LEGACY_PYUWSGI = Path(os.environ.get("PYUWSGI_LEGACY", CACHE / f"pyuwsgi-{LEGACY_PYUWSGI_VERSION}"))
#: Seconds an install may take before it counts as failed (a slow mirror, a stalled download).
INSTALL_TIMEOUT = 900.0

T = TypeVar("T")


@dataclass(frozen=True)
class Debian:
    """A Debian package and the executables the tests need from it (each: any one of the names)."""

    package: str
    executables: tuple[tuple[str, ...], ...]


DEBIAN = {
    "node": Debian("nodejs", (("node",),)),
    "npm": Debian("npm", (("npm",),)),
    # tests/cdp.py's find_chromium() looks for the same names.
    "chromium": Debian("chromium", (("chromium", "chromium-browser", "google-chrome"),)),
    "prometheus": Debian("prometheus", (("prometheus",), ("promtool",))),
}
NAMES = (
    "node",
    "chromium",
    "prometheus",
    *(f"npm:{name}" for name in NPM_DIRS),
    f"pyuwsgi-{LEGACY_PYUWSGI_VERSION}",
)


class Unavailable(Exception):
    """A prerequisite that is missing and could not be installed here: why, and the command that would."""

    def __init__(self, what: str, command: str) -> None:
        super().__init__(f"{what}: run `{command}`")
        self.what = what
        self.command = command


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def install_blocker() -> str | None:
    """Why the tests may not install anything here, or ``None`` when they may."""
    if os.environ.get("SEGMENT_EXPOSURE_TEST_INSTALL", "1").lower() in ("0", "false", "no"):
        return "installing is turned off (SEGMENT_EXPOSURE_TEST_INSTALL=0)"
    return None


def apt_blocker() -> str | None:
    """Why the tests cannot install Debian packages here, or ``None`` when they can (root with apt-get)."""
    blocker = install_blocker()
    if blocker is not None:
        return blocker
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "the tests do not run as root"
    return None


def apt_command(packages: Iterable[str]) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    names = " ".join(packages)
    return f"{sudo}apt-get update && {sudo}apt-get install -y {names}"


def missing_packages(names: Iterable[str]) -> list[str]:
    """The Debian packages of ``names`` (keys of ``DEBIAN``) with an executable not on ``PATH``."""
    return [
        DEBIAN[name].package
        for name in names
        if any(all(shutil.which(n) is None for n in choice) for choice in DEBIAN[name].executables)
    ]


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """One holder at a time across processes: the ``filelock`` package where installed, else ``fcntl``."""
    locks = CACHE / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{name}.lock"
    try:
        from filelock import FileLock
    except ImportError:
        import fcntl

        with path.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        with FileLock(str(path)):
            yield


def _run(argv: list[str], cwd: Path | None = None) -> str | None:
    """Run an install command: ``None`` when it succeeded, else the end of its output."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
            env=env,
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    return f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-1500:]}"


@dataclass(frozen=True)
class AptDecision:
    """What the tests would do about the Debian packages of some prerequisites, decided from ``PATH``,
    the user and the environment: nothing (``packages`` empty), install them (``blocker`` is ``None``),
    or leave them to the user, who runs ``command``."""

    packages: list[str]
    command: str
    blocker: str | None


def apt_decision(names: Iterable[str]) -> AptDecision:
    """The decision for the Debian packages of ``names`` (keys of ``DEBIAN``)."""
    packages = missing_packages(names)
    return AptDecision(packages, apt_command(packages), apt_blocker() if packages else None)


def npm_command(directory: Path) -> str:
    try:
        shown = directory.relative_to(ROOT)
    except ValueError:
        shown = directory
    return f"npm ci --prefix {shown} --no-audit --no-fund"


def npm_installed(directory: Path) -> bool:
    """Whether ``directory``'s node_modules hold the versions its package-lock.json pins for its direct
    dependencies (so a version bump in package.json reinstalls instead of testing the old package)."""
    try:
        manifest = json.loads((directory / "package.json").read_text("utf-8"))
        locked = json.loads((directory / "package-lock.json").read_text("utf-8"))["packages"]
        for name in manifest.get("dependencies", {}):
            wanted = locked[f"node_modules/{name}"]["version"]
            installed = json.loads((directory / "node_modules" / name / "package.json").read_text("utf-8"))
            if installed.get("version") != wanted:
                return False
    except (OSError, ValueError, KeyError):
        return False
    return True


class Prerequisites:
    """The prerequisites of one test process: each installed at most once, the outcome (a path, or why it
    is unavailable) remembered, since a second apt-get or npm ci would fail the same way."""

    def __init__(self, legacy_pyuwsgi: Path = LEGACY_PYUWSGI) -> None:
        self._outcomes: dict[str, object] = {}
        self._apt_updated = False
        self._legacy_pyuwsgi_dir = legacy_pyuwsgi

    def ensure(self, name: str) -> object:
        """The prerequisite ``name`` (one of ``NAMES``), installed if needed.

        Raises:
            Unavailable: it is missing and cannot be installed here.
            ValueError: ``name`` is not a prerequisite.
        """
        if name in DEBIAN:
            return self.binary(name)
        if name.startswith("npm:") and name[4:] in NPM_DIRS:
            return self.npm_dir(NPM_DIRS[name[4:]])
        if name == f"pyuwsgi-{LEGACY_PYUWSGI_VERSION}":
            return self.legacy_pyuwsgi()
        raise ValueError(f"unknown prerequisite {name!r}: one of {', '.join(NAMES)}")

    def binary(self, name: str) -> str:
        """The path of the main executable of ``DEBIAN[name]``, installed if needed."""

        def ensure() -> str:
            self._apt_install([name])
            for choice in DEBIAN[name].executables:
                for executable in choice:
                    path = shutil.which(executable)
                    if path is not None:
                        return path
            raise AssertionError("unreachable: _apt_install checked PATH")

        return self._once(name, ensure)

    def npm_dir(self, directory: Path) -> str:
        """The node executable, once ``directory``'s npm packages are installed."""
        return self._once(f"npm:{directory}", lambda: self._npm_ci(directory))

    def legacy_pyuwsgi(self) -> Path:
        """The folder holding pyuwsgi 2.0.26 for this interpreter."""
        return self._once(f"pyuwsgi:{self._legacy_pyuwsgi_dir}", self._legacy_pyuwsgi)

    def prepare(self, names: Iterable[str], say: Callable[[str], None]) -> None:
        """Install ``names`` before the first test runs, so that no test's timeout pays for a download.

        Failures are only reported here: each test needing what failed skips (or fails in CI) on its own.
        """
        wanted = set(names)
        for name in [n for n in NAMES if n in wanted]:
            if not satisfied(name):
                say(f"prerequisites: installing {name} (tests/prerequisites.py)")
            try:
                self.ensure(name)
            except Unavailable as exc:
                say(f"prerequisites: {name} unavailable: {exc}")

    def _once(self, key: str, ensure: Callable[[], T]) -> T:
        if key not in self._outcomes:
            try:
                self._outcomes[key] = ensure()
            except Unavailable as exc:
                self._outcomes[key] = exc
        outcome = self._outcomes[key]
        if isinstance(outcome, Unavailable):
            raise outcome
        return outcome  # type: ignore[return-value]

    def _apt_install(self, names: list[str]) -> None:
        decision = apt_decision(names)
        if not decision.packages:
            return
        if decision.blocker is not None:
            raise Unavailable(
                f"{' and '.join(decision.packages)} not installed ({decision.blocker})", decision.command
            )
        with _lock("apt"):
            packages = missing_packages(names)  # another process may have installed them meanwhile
            if not packages:
                return
            if not self._apt_updated:
                failed = _run(["apt-get", "update", "-qq"])
                if failed is not None:
                    raise Unavailable(f"apt-get update failed ({failed})", decision.command)
                self._apt_updated = True
            failed = _run(["apt-get", "install", "-y", "-qq", *packages])
            if failed is not None:
                raise Unavailable(f"apt-get install {' '.join(packages)} failed ({failed})", decision.command)
        still = missing_packages(names)
        if still:
            raise Unavailable(f"{' and '.join(still)} installed but not on PATH", decision.command)

    def _npm_ci(self, directory: Path) -> str:
        node = self.binary("node")
        if npm_installed(directory):
            return node
        command = npm_command(directory)
        blocker = install_blocker()
        if blocker is not None:
            raise Unavailable(f"{directory.name}'s npm packages are not installed ({blocker})", command)
        npm = self.binary("npm")
        with _lock(f"npm-{directory.name}"):
            if npm_installed(directory):
                return node
            if (directory / "node_modules").is_symlink():  # a worktree sharing another checkout's install
                raise Unavailable(f"{directory / 'node_modules'} is a stale link", command)
            failed = _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory)
            if failed is not None or not npm_installed(directory):
                raise Unavailable(f"npm ci in {directory.name} failed ({failed})", command)
        return node

    def _legacy_pyuwsgi(self) -> Path:
        target = self._legacy_pyuwsgi_dir
        extension = target / legacy_pyuwsgi_extension()
        if extension.exists():
            return target
        requirement = f"pyuwsgi=={LEGACY_PYUWSGI_VERSION}"
        command = f"{sys.executable} -m pip install --no-deps --target {target} '{requirement}'"
        blocker = install_blocker()
        if blocker is not None:
            raise Unavailable(f"{extension.name} is missing ({blocker})", command)
        with _lock(target.name):
            if extension.exists():
                return target
            # Into a fresh folder, then renamed: a half-installed target is never taken for a whole one.
            staging = target.with_name(f"{target.name}.installing-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            pip = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
            ]
            failed = _run([*pip, "--target", str(staging), requirement])
            if failed is not None or not (staging / extension.name).exists():
                shutil.rmtree(staging, ignore_errors=True)
                raise Unavailable(f"pip could not install {requirement} for this Python ({failed})", command)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        return target


def legacy_pyuwsgi_extension() -> str:
    """The file name of pyuwsgi's extension module for this interpreter."""
    return f"pyuwsgi{sysconfig.get_config_var('EXT_SUFFIX')}"


def satisfied(name: str) -> bool:
    """Whether the prerequisite ``name`` is installed already (a look, no install)."""
    if name in DEBIAN:
        return not missing_packages([name])
    if name.startswith("npm:"):
        return not missing_packages(["node"]) and npm_installed(NPM_DIRS[name[4:]])
    return (LEGACY_PYUWSGI / legacy_pyuwsgi_extension()).exists()


#: This process's prerequisites (the ``require*`` functions and tests/conftest.py use it).
PREREQUISITES = Prerequisites()


def _unavailable(exc: Unavailable) -> NoReturn:
    """Skip the test outside CI; fail it under CI, where everything must be installed."""
    if in_ci():
        pytest.fail(f"required in CI: {exc}")
    pytest.skip(str(exc))


def require(name: str) -> object:
    """The prerequisite ``name`` (one of ``NAMES``): installed if needed, else a skip (a failure in CI)."""
    try:
        return PREREQUISITES.ensure(name)
    except Unavailable as exc:
        _unavailable(exc)


def require_binary(name: str) -> str:
    """The path of ``node``, ``chromium``, ``prometheus`` or ``promtool``, installed if needed."""
    try:
        if name == "promtool":
            PREREQUISITES.ensure("prometheus")
            path = shutil.which("promtool")
            assert path is not None
            return path
        return PREREQUISITES.binary(name)
    except Unavailable as exc:
        _unavailable(exc)


def require_node() -> str:
    return require_binary("node")


def require_chromium() -> str:
    return require_binary("chromium")


def require_npm_dir(directory: Path) -> str:
    """The node executable, once ``directory``'s npm packages are installed (``npm ci``)."""
    try:
        return PREREQUISITES.npm_dir(directory)
    except Unavailable as exc:
        _unavailable(exc)


def require_legacy_pyuwsgi() -> Path:
    """The folder holding pyuwsgi 2.0.26 for this interpreter (put first on the server's sys.path)."""
    try:
        return PREREQUISITES.legacy_pyuwsgi()
    except Unavailable as exc:
        _unavailable(exc)
