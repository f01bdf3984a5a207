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
    from coverage_runtime.report.objects import parse_key
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim.environment import EnvironmentIdentity
    from coverage_runtime.shim.s3_upload import object_key

    settings = load_settings({"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_S3_PREFIX": "team/cov"})
    identity = EnvironmentIdentity.detect(
        {"AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_LAMBDA_FUNCTION_VERSION": "7"}
    )
    key = object_key(settings, identity)
    parsed = parse_key(settings.prefix, key)
    assert parsed == layout.ObjectKey("orders", "7", identity.init_date, identity.environment_id)
    assert parsed.format(settings.prefix) == key
    assert (
        layout.ObjectKey.parse(settings.prefix, layout.shard_key(settings.prefix, "r", "s")) is None
    )
    combined = layout.combined_scope(settings.prefix, "orders", "7") + layout.MERGED_DATA_NAME
    assert layout.ObjectKey.parse(settings.prefix, combined) is None
