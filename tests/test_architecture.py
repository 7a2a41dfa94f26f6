"""The package's structure, checked: layers and independence (import-linter, configured in pyproject.toml),
no import cycle between its modules, and no module reading or writing another module's private names.

Objects talk to each other through public methods; a private name (``_x``) belongs to the module that
defines it. Two modules are adapters over other libraries' internals, where such reaches are their whole
point, and a few underscore names are documented APIs of the standard library or a framework.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "segment_exposure"

#: Adapters over other libraries' internals: segment-analytics-python's and amplitude-experiment's.
ADAPTERS = {"tracking/segment_client.py", "experiment/_sdk.py"}

#: Underscore names that are documented public APIs of the standard library or a framework.
DOCUMENTED_UNDERSCORE_APIS = {
    "_is_gil_enabled",  # sys._is_gil_enabled(), Python 3.13's documented check for a free-threaded build
    "_get_current_object",  # werkzeug's LocalProxy._get_current_object(), documented by Flask
    "_exit",  # os._exit()
    "_replace",  # namedtuple._replace()
    "_asdict",  # namedtuple._asdict()
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.Module) -> set[str]:
    """The private names a module defines itself: functions, classes, assignments, attributes it sets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return {n for n in names if isinstance(n, str) and _private(n)}


def reaches(path: Path) -> list[str]:
    """Where the module at ``path`` reads or writes a private name that another module defines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                # A private module of the importer's own package (``from . import _sdk``) is that package's.
                sibling = node.level == 1 and not node.module and (path.parent / f"{alias.name}.py").exists()
                if _private(alias.name) and not sibling:
                    source = "." * node.level + (node.module or "")
                    found.append(f"{node.lineno}: from {source} import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if node.attr not in own and node.attr not in DOCUMENTED_UNDERSCORE_APIS:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and node.args[1].value not in own
            and node.args[1].value not in DOCUMENTED_UNDERSCORE_APIS
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50  # the package, not an empty folder
    found = {
        rel: hits
        for path in modules
        if (rel := path.relative_to(PACKAGE).as_posix()) not in ADAPTERS and (hits := reaches(path))
    }
    assert found == {}


def test_the_reach_check_finds_a_reach(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from pkg.mod import _hidden\n"
        "def f(provider):\n"
        "    provider._closed = True\n"
        "    return getattr(provider, '_size')\n"
        "class Own:\n"
        "    def g(self, other: 'Own'):\n"
        "        self._mine = 1\n"
        "        return other._mine\n"
    )
    assert reaches(sample) == [
        "1: from pkg.mod import _hidden",
        "3: provider._closed",
        "4: getattr(provider, '_size')",
    ]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_the_packages_modules() -> None:
    """Counting every import: at module level, inside functions, and under ``TYPE_CHECKING``."""
    graph = grimp.build_graph("segment_exposure", cache_dir=None)
    assert len(graph.modules) > 50
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cyclic import a\n"  # type-only counts
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyclic", cache_dir=None)) == [["cyclic.a", "cyclic.b"]]


def test_import_contracts_hold() -> None:
    """The layers and independence contracts of pyproject.toml ([tool.importlinter]), as CI runs them."""
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run(
        [lint_imports, "--no-cache"], capture_output=True, text=True, cwd=PACKAGE.parent, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
