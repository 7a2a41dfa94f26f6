"""Is a built wheel complete? Every module and data file of the source package, the console script, the
pytest plugin and the metadata pyproject.toml declares (version, extras, URLs, classifiers, license).

Why: setuptools packs only what ``packages.find`` and ``package-data`` name, so a new subpackage or data
file can be left out of the wheel while every test, run from the source tree, still passes. Used by
tests/test_release.py and by ``.ci/run`` on the wheel it installs::

    python -m tests.release_check dist/segment_exposure-*.whl
"""

from __future__ import annotations

import configparser
import email.parser
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "source_files", "wheel_problems"]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "segment_exposure"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject(root: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    data: dict[str, Any] = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    return data


def source_files(root: Path = ROOT) -> set[str]:
    """The package's files in the source tree, as wheel paths: modules and data alike."""
    package = root / PACKAGE
    return {
        path.relative_to(root).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    }


def wheel_problems(wheel: Path, root: Path = ROOT) -> list[str]:
    """What the wheel lacks or gets wrong against the source tree at ``root``; empty when complete."""
    project = _pyproject(root)["project"]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"{PACKAGE}-{project['version']}.dist-info"
        read = {
            name: archive.read(f"{dist_info}/{name}").decode("utf-8")
            for name in ("METADATA", "entry_points.txt")
            if f"{dist_info}/{name}" in names
        }
    problems: list[str] = []

    packed = {n for n in names if n.startswith(f"{PACKAGE}/")}
    expected = source_files(root)
    problems += [f"missing from the wheel: {n}" for n in sorted(expected - packed)]
    problems += [f"in the wheel but not in the source tree: {n}" for n in sorted(packed - expected)]
    for data in ("py.typed", "functions/amplitude_exposure.js"):
        if f"{PACKAGE}/{data}" not in packed:
            problems.append(f"package data missing: {PACKAGE}/{data}")
    if not any(re.fullmatch(rf"{PACKAGE}/data/[^/]+\.json", n) for n in packed):
        problems.append(f"package data missing: {PACKAGE}/data/*.json")
    subpackages = {p.parent.relative_to(root).as_posix() for p in (root / PACKAGE).rglob("__init__.py")}
    problems += [f"subpackage missing: {p}" for p in sorted(subpackages) if f"{p}/__init__.py" not in packed]
    strays = {n.split("/", 1)[0] for n in names} - {PACKAGE, dist_info}
    problems += [f"not part of the package: {n}/" for n in sorted(strays)]

    if "METADATA" not in read:
        return [*problems, f"no {dist_info}/METADATA (is the version {project['version']}?)"]
    metadata = email.parser.Parser().parsestr(read["METADATA"])

    def single(field: str, want: str) -> None:
        if metadata.get(field) != want:
            problems.append(f"metadata {field}: {metadata.get(field)!r}, pyproject says {want!r}")

    single("Name", project["name"])
    single("Version", project["version"])
    single("Requires-Python", project["requires-python"])
    single("License-Expression", project["license"])
    single("Description-Content-Type", "text/markdown")
    extras = sorted(metadata.get_all("Provides-Extra") or [])
    if extras != sorted(_normalize(e) for e in project["optional-dependencies"]):
        declared = sorted(project["optional-dependencies"])
        problems.append(f"metadata extras {extras} are not pyproject's {declared}")
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    if urls != project["urls"]:
        problems.append(f"metadata URLs {urls} are not pyproject's {project['urls']}")
    for required in ("Documentation", "Changelog", "Source"):
        if not urls.get(required, "").startswith("https://"):
            problems.append(f"no https {required} URL")
    if (metadata.get_all("Classifier") or []) != project["classifiers"]:
        problems.append("metadata classifiers are not pyproject's")
    requires = set(metadata.get_all("Requires-Dist") or [])
    problems += [
        f"dependency missing: {d}"
        for d in project["dependencies"]
        if not any(_normalize(r).startswith(_normalize(re.split(r"[<>=!~ \[]", d)[0])) for r in requires)
    ]
    if len(metadata.get_payload()) < 1000:
        problems.append("the long description (README.md) is missing")
    if f"{dist_info}/licenses/LICENSE" not in names:
        problems.append("LICENSE is not in the wheel")

    entry_points = configparser.ConfigParser(delimiters=("=",))
    entry_points.optionxform = str  # type: ignore[assignment,method-assign]  (names keep their case)
    entry_points.read_string(read.get("entry_points.txt", ""))
    declared_points = {"console_scripts": project["scripts"], **project["entry-points"]}
    for group, entries in declared_points.items():
        for name, target in entries.items():
            if entry_points.get(group, name, fallback=None) != target:
                problems.append(f"entry point missing: [{group}] {name} = {target}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.release_check WHEEL", file=sys.stderr)
        return 2
    problems = wheel_problems(Path(argv[0]))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{Path(argv[0]).name}: complete ({len(source_files())} package files, metadata as pyproject.toml)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
