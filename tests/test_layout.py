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
    assert top == {
        "__init__.py",
        "__main__.py",
        "env.py",
        "errors.py",
        "layout.py",
        "s3.py",
        "settings.py",
    }


def test_the_s3_key_the_shim_writes_is_the_key_the_report_reads():
    from coverage_runtime import layout
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim.identity import EnvironmentIdentity
    from coverage_runtime.shim.uploader import object_key

    settings = load_settings({"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_S3_PREFIX": "team/cov"})
    identity = EnvironmentIdentity.detect(
        {"AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_LAMBDA_FUNCTION_VERSION": "7"}
    )
    key = object_key(settings, identity)
    parsed = layout.ObjectKey.parse(settings.prefix, key)
    assert parsed == layout.ObjectKey("orders", "7", identity.init_date, identity.environment_id)
    assert parsed.format(settings.prefix) == key
    assert (
        layout.ObjectKey.parse(settings.prefix, layout.shard_key(settings.prefix, "r", "s")) is None
    )
    combined = layout.combined_scope(settings.prefix, "orders", "7") + layout.MERGED_DATA_NAME
    assert layout.ObjectKey.parse(settings.prefix, combined) is None


def _log_calls(path: Path) -> list[tuple[int, str, set[str]]]:
    """(line, logger call, keyword names) of every log record written in ``path``:
    the shim's `structured_log` calls and Powertools' ``extra={...}`` dicts."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id == "structured_log":
            names = {k.arg for k in node.keywords if k.arg}
            calls.append((node.lineno, f"structured_log.{node.func.attr}", names))
        for keyword in node.keywords:
            if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                names = {k.value for k in keyword.value.keys if isinstance(k, ast.Constant)}
                calls.append((node.lineno, "extra", {str(n) for n in names}))
    return calls


def test_log_records_name_their_fields_one_way():
    """One naming for every record of ours, the shim's and the example's: snake_case
    keys, and an error as ``error_type`` (its class or code) and ``error_message``."""
    import re

    snake = re.compile(r"^[a-z][a-z0-9_]*$")
    found = 0
    for path in sorted([*PACKAGE.rglob("*.py"), *(REPO_ROOT / "app").glob("*.py")]):
        for line, call, names in _log_calls(path):
            found += 1
            where = f"{path.relative_to(REPO_ROOT)}:{line} {call}"
            assert all(snake.match(n) for n in names), f"{where}: {sorted(names)}"
            assert "error" not in names, f"{where}: an error is error_message (and error_type)"
    assert found > 20, "the scan finds the records"
