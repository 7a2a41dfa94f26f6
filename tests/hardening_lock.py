"""``requirements.lock``: the pinned closure of what
``pip install -e '.[experiment,flask,django,fastapi,server,cli,metrics,useragent,openfeature]'`` installs,
taken from the environment the tests ran in (the installed distributions and their metadata).

Regenerate after changing dependencies (from the repository root, in the tested environment):

    python -m tests.hardening_lock > requirements.lock

Environment markers are evaluated for the running interpreter and platform (CPython 3.11 on Linux here),
so the lock describes that environment; the test suite checks that it still covers every dependency.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["EXTRAS", "HEADER", "closure", "render"]

EXTRAS = (
    "experiment",
    "flask",
    "django",
    "fastapi",
    "server",
    "cli",
    "metrics",
    "useragent",
    "openfeature",
    "rudderstack",
)
PROJECT = "segment-exposure"

_PY = f"{sys.version_info.major}.{sys.version_info.minor}"
HEADER = f"""\
# requirements.lock: the runtime and extras dependencies of segment-exposure, pinned.
# What `pip install -e '.[{",".join(EXTRAS)}]'` installs, as installed where the tests ran
# (CPython {_PY}, Linux), read from the installed distributions' metadata by
#     python -m tests.hardening_lock > requirements.lock
# Audit it with: pip-audit -r requirements.lock --no-deps --disable-pip
# (tests/test_security.py runs that when pip-audit is installed and PyPI's JSON API is reachable).
"""


def closure(project: str = PROJECT, extras: Iterable[str] = EXTRAS) -> dict[str, str]:
    """``{canonical name: installed version}`` of every distribution ``project[extras]`` depends on."""
    found: dict[str, str] = {}
    visited: dict[str, set[str]] = {}

    def visit(name: str, wanted: set[str]) -> None:
        key = canonicalize_name(name)
        seen = visited.setdefault(key, set())
        if key in found and wanted <= seen:
            return
        seen.update(wanted)
        dist = metadata.distribution(name)
        if key != canonicalize_name(project):
            found[key] = dist.version
        environments = [{"extra": extra} for extra in (wanted or {""})]
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate(env) for env in environments):
                continue
            visit(requirement.name, set(requirement.extras))

    visit(project, set(extras))
    return dict(sorted(found.items()))


def render() -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in closure().items())


if __name__ == "__main__":
    sys.stdout.write(render())
