"""The tree shows the architecture: the shim (in Lambda) and the report tooling are two
rooms that share only the top level (the public API, errors, settings)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness import REPO_ROOT

PACKAGE = REPO_ROOT / "coverage_runtime"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_report_tooling_never_imports_the_shim():
    for path in sorted((PACKAGE / "report").glob("*.py")):
        wrong = {m for m in imported_modules(path) if m.startswith("coverage_runtime.shim")}
        assert wrong == set(), f"{path.name} imports {wrong}"


def test_the_shim_never_imports_the_report_tooling():
    for path in sorted((PACKAGE / "shim").glob("*.py")):
        wrong = {m for m in imported_modules(path) if m.startswith("coverage_runtime.report")}
        assert wrong == set(), f"{path.name} imports {wrong}"


def test_the_top_level_holds_only_what_both_rooms_share():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "errors.py", "settings.py"}
